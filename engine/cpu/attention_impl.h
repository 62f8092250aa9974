/* attention_impl.h: the type-generic body of attention.c, included once per element type with R,
 * SUF(name) and ISFIN defined.  Not a header to use elsewhere. */

typedef struct {
  const R *q, *k, *v, *go, *P;
  R *o, *Pout, *gq, *gk, *gv;
  const ddpm_tensor *mask;
  att_geom g;
  int failed;
} SUF(att_ctx);

/* the matrices of one (batch, head) pair: q, k, v with their row strides, go, and the outputs
 * (o, or gq, gk, gv) contiguous; att_mats_of points them into the tensors, the bf16 path of
 * attention.c into float32 staging */
typedef struct {
  const R *q, *k, *v, *go;
  int64_t qld, kld, vld;
  R *o, *gq, *gk, *gv;
} SUF(att_mats);

static void SUF(att_mats_of)(const SUF(att_ctx) *c, int64_t b, SUF(att_mats) *m) {
  const att_geom *g = &c->g;
  m->q = c->q + att_off(&g->q, b, g->B1);
  m->k = c->k + att_off(&g->k, b, g->B1);
  m->v = c->v + att_off(&g->v, b, g->B1);
  m->qld = g->q.ld, m->kld = g->k.ld, m->vld = g->v.ld;
  m->go = c->go ? c->go + b * g->Lq * g->Ev : NULL;
  m->o = c->o ? c->o + b * g->Lq * g->Ev : NULL;
  m->gq = c->gq ? c->gq + b * g->Lq * g->E : NULL;
  m->gk = c->gk ? c->gk + b * g->Lk * g->E : NULL;
  m->gv = c->gv ? c->gv + b * g->Lk * g->Ev : NULL;
}

/* additive mask value of (b, i, j): 0, -inf for dropped positions, or the float mask entry */
static inline R SUF(mask_at)(const att_geom *g, const ddpm_tensor *mask, int64_t b, int64_t i, int64_t j) {
  R m = 0;
  if (g->causal && j > i) return -INFINITY;
  if (mask) {
    int64_t off = mask->offset + (b / g->B1) * mask->strides[0] + (b % g->B1) * mask->strides[1] +
                  i * mask->strides[2] + j * mask->strides[3];
    if (mask->dtype == DDPM_BOOL) m = ((const uint8_t *)mask->storage->data)[off] ? (R)0 : (R)-INFINITY;
    else m = ((const R *)mask->storage->data)[off];
  }
  return m;
}

/* Pd = P with dropout applied (zero with probability p, else scaled by 1/(1-p)) */
static void SUF(apply_dropout)(const att_geom *g, int64_t b, const R *P, R *Pd) {
  R scale = (R)(1.0 / (1.0 - g->p));
  int64_t n = g->Lq * g->Lk;
  for (int64_t e = 0; e < n; e++)
    Pd[e] = att_keep(g, (uint64_t)(b * n + e)) ? P[e] * scale : (R)0;
}

/* P[b] = softmax(scale q k^T + mask) for Lk > 1: the forward's probabilities, and the backward's
 * when they were not kept (the CPU recomputes them: a [Lq, Lk] GEMM per (batch, head) is cheaper
 * than holding every attention matrix of a network until its backward) */
static void SUF(probs)(const SUF(att_ctx) *c, int64_t b, const SUF(att_mats) *m, R *Pb) {
  const att_geom *g = &c->g;
  int64_t Lq = g->Lq, Lk = g->Lk, E = g->E;
  SUF(gemm)(false, true, Lq, Lk, E, (R)g->scale, m->q, m->qld, m->k, m->kld, 0, Pb, Lk);
  for (int64_t i = 0; i < Lq; i++) {
    R *row = Pb + i * Lk;
    if (g->causal || c->mask)
      for (int64_t j = 0; j < Lk; j++) row[j] += SUF(mask_at)(g, c->mask, b, i, j);
    SUF(cpu_softmax_row)(row, row, Lk, false);
  }
}

static void SUF(att_fwd_one)(SUF(att_ctx) *c, int64_t b, const SUF(att_mats) *m) {
  const att_geom *g = &c->g;
  int64_t Lq = g->Lq, Lk = g->Lk, Ev = g->Ev;
  const R *vb = m->v;
  R *ob = m->o;
  R *Pb = c->Pout ? c->Pout + b * Lq * Lk : cpu_scratch(0, sizeof(R) * (size_t)(Lq * Lk));
  R *Pd = g->p > 0 ? cpu_scratch(1, sizeof(R) * (size_t)(Lq * Lk)) : Pb;
  if (!Pb || !Pd) {
#pragma omp atomic write
    c->failed = 1;
    return;
  }
  if (Lk == 1) { /* one key: the softmax is 1 wherever the score is finite, so o = v broadcast */
    for (int64_t i = 0; i < Lq; i++) {
      R m = (g->causal || c->mask) ? SUF(mask_at)(g, c->mask, b, i, 0) : (R)0;
      Pb[i] = ISFIN(m) ? (R)1 : (R)NAN;
    }
    if (g->p > 0) SUF(apply_dropout)(g, b, Pb, Pd);
    for (int64_t i = 0; i < Lq; i++) {
      R *orow = ob + i * Ev;
      if (Pd[i] == (R)1) memcpy(orow, vb, sizeof(R) * (size_t)Ev);
      else
        for (int64_t d = 0; d < Ev; d++) orow[d] = Pd[i] * vb[d];
    }
    return;
  }
  SUF(probs)(c, b, m, Pb);
  if (g->p > 0) SUF(apply_dropout)(g, b, Pb, Pd);
  SUF(gemm)(false, false, Lq, Ev, Lk, 1, Pd, Lk, vb, m->vld, 0, ob, Ev);
}

/* gv = Pd^T go; dPd = go v^T; dP = dPd * drop; dS = P (dP - rowsum(dP P)); gq = s dS k; gk = s dS^T q */
static void SUF(att_bwd_one)(SUF(att_ctx) *c, int64_t b, const SUF(att_mats) *m) {
  const att_geom *g = &c->g;
  int64_t Lq = g->Lq, Lk = g->Lk, E = g->E, Ev = g->Ev;
  const R *qb = m->q, *kb = m->k, *vb = m->v, *gob = m->go;
  R *gqb = m->gq, *gkb = m->gk, *gvb = m->gv;
  R *dS = cpu_scratch(0, sizeof(R) * (size_t)(Lq * Lk));
  R *Pw = c->P ? NULL : cpu_scratch(2, sizeof(R) * (size_t)(Lq * Lk));
  const R *Pb = c->P ? c->P + b * Lq * Lk : Pw;
  R *Pd = g->p > 0 ? cpu_scratch(1, sizeof(R) * (size_t)(Lq * Lk)) : (R *)Pb;
  if (!dS || !Pd || !Pb) {
#pragma omp atomic write
    c->failed = 1;
    return;
  }
  if (Pw) { /* recompute the probabilities the forward did not keep */
    if (Lk == 1)
      for (int64_t i = 0; i < Lq; i++) {
        R m = (g->causal || c->mask) ? SUF(mask_at)(g, c->mask, b, i, 0) : (R)0;
        Pw[i] = ISFIN(m) ? (R)1 : (R)NAN;
      }
    else
      SUF(probs)(c, b, m, Pw);
  }
  if (g->p > 0) SUF(apply_dropout)(g, b, Pb, Pd);
  SUF(gemm)(true, false, Lk, Ev, Lq, 1, Pd, Lk, gob, Ev, 0, gvb, Ev);
  if (Lk == 1 && g->p == 0) {
    /* softmax over one key is constant (P = 1): no gradient reaches the scores, so none reaches
     * q or k; rows made NaN by a mask keep the general path's NaN */
    bool ones = true;
    for (int64_t i = 0; ones && i < Lq; i++) ones = Pb[i] == (R)1;
    if (ones) {
      memset(gqb, 0, sizeof(R) * (size_t)(Lq * E));
      memset(gkb, 0, sizeof(R) * (size_t)(Lk * E));
      return;
    }
  }
  SUF(gemm)(false, true, Lq, Lk, Ev, 1, gob, Ev, vb, m->vld, 0, dS, Lk);
  R dscale = (R)(1.0 / (1.0 - g->p));
  for (int64_t i = 0; i < Lq; i++) {
    R *row = dS + i * Lk;
    const R *prow = Pb + i * Lk;
    if (g->p > 0) {
      const R *pdrow = Pd + i * Lk;
      for (int64_t j = 0; j < Lk; j++) row[j] = pdrow[j] != 0 ? row[j] * dscale : (R)0;
    }
    double dot = 0;
    for (int64_t j = 0; j < Lk; j++) dot += (double)row[j] * prow[j];
    R dr = (R)dot;
    for (int64_t j = 0; j < Lk; j++) row[j] = prow[j] * (row[j] - dr);
  }
  SUF(gemm)(false, false, Lq, E, Lk, (R)g->scale, dS, Lk, kb, m->kld, 0, gqb, E);
  SUF(gemm)(true, false, Lk, E, Lq, (R)g->scale, dS, Lk, qb, m->qld, 0, gkb, E);
}

static void SUF(att_range)(int64_t lo, int64_t hi, void *vctx) {
  SUF(att_ctx) *c = vctx;
  for (int64_t b = lo; b < hi; b++) {
    SUF(att_mats) m;
    SUF(att_mats_of)(c, b, &m);
    if (c->go) SUF(att_bwd_one)(c, b, &m);
    else SUF(att_fwd_one)(c, b, &m);
  }
}
