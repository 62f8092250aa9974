/* norm_impl.h: the type-generic body of norm.c, included once per element type with R, SUF(name)
 * and EXP (expf or exp) defined.  Not a header to use elsewhere. */

/* silu and its derivative written exactly as elementwise.c computes them, so the fused
 * group_norm_silu matches group_norm followed by silu bit for bit */
static inline R SUF(silu)(R z) { return z / ((R)1 + EXP(-z)); }
static inline R SUF(silu_d)(R z) {
  R s = (R)1 / ((R)1 + EXP(-z));
  return s * ((R)1 + z * ((R)1 - s));
}

/* mean and 1/sqrt(var + eps) of n values (two passes in double: stable and cheap in cache) */
static inline void SUF(moments)(const R *x, int64_t n, double eps, R *mean, R *rstd) {
  double s = 0;
  for (int64_t k = 0; k < n; k++) s += x[k];
  double m = n ? s / (double)n : 0.0, v = 0;
  for (int64_t k = 0; k < n; k++) {
    double d = x[k] - m;
    v += d * d;
  }
  v = n ? v / (double)n : 0.0;
  *mean = (R)m;
  *rstd = (R)(1.0 / sqrt(v + eps));
}

typedef struct {
  const R *x, *w, *b, *gy;
  R *y, *mean, *rstd, *gx;
  double *pdw, *pdb; /* [N, C] partials of the weight and bias gradients */
  int64_t N, C, S, G;
  double eps;
  bool silu;
  int failed;
} SUF(gn_ctx);

static void SUF(gn_fwd_range)(int64_t lo, int64_t hi, void *vctx) {
  SUF(gn_ctx) *c = vctx;
  int64_t Cg = c->C / c->G, M = Cg * c->S;
  for (int64_t t = lo; t < hi; t++) {
    int64_t n = t / c->G, grp = t % c->G;
    const R *xg = c->x + (n * c->C + grp * Cg) * c->S;
    R *yg = c->y + (n * c->C + grp * Cg) * c->S;
    R mean, rstd;
    SUF(moments)(xg, M, c->eps, &mean, &rstd);
    c->mean[t] = mean;
    c->rstd[t] = rstd;
    for (int64_t ci = 0; ci < Cg; ci++) {
      int64_t ch = grp * Cg + ci;
      R scale = c->w ? rstd * c->w[ch] : rstd;
      R shift = (c->b ? c->b[ch] : (R)0) - mean * scale;
      const R *xr = xg + ci * c->S;
      R *yr = yg + ci * c->S;
      if (c->silu)
        for (int64_t k = 0; k < c->S; k++) yr[k] = SUF(silu)(xr[k] * scale + shift);
      else
        for (int64_t k = 0; k < c->S; k++) yr[k] = xr[k] * scale + shift;
    }
  }
}

/* dx = rstd w dz + c2 x + c3 with c2 = (B mean - A) rstd^3 / M, c3 = -c2 mean - B rstd / M,
 * A = sum w dz x, B = sum w dz over the group (dz = dy, or dy silu'(z) for the fused op) */
static void SUF(gn_bwd_range)(int64_t lo, int64_t hi, void *vctx) {
  SUF(gn_ctx) *c = vctx;
  int64_t Cg = c->C / c->G, M = Cg * c->S;
  R *dzbuf = c->silu ? cpu_scratch(0, sizeof(R) * (size_t)(M ? M : 1)) : NULL;
  if (c->silu && !dzbuf) {
#pragma omp atomic write
    c->failed = 1;
    return;
  }
  for (int64_t t = lo; t < hi; t++) {
    int64_t n = t / c->G, grp = t % c->G;
    int64_t base = (n * c->C + grp * Cg) * c->S;
    const R *xg = c->x + base, *dz = c->gy + base;
    R mean = c->mean[t], rstd = c->rstd[t];
    if (c->silu) { /* recompute z = group_norm(x) and form dz = dy silu'(z) */
      for (int64_t ci = 0; ci < Cg; ci++) {
        int64_t ch = grp * Cg + ci;
        R scale = c->w ? rstd * c->w[ch] : rstd;
        R shift = (c->b ? c->b[ch] : (R)0) - mean * scale;
        const R *xr = xg + ci * c->S, *gr = c->gy + base + ci * c->S;
        R *dr = dzbuf + ci * c->S;
        for (int64_t k = 0; k < c->S; k++) dr[k] = gr[k] * SUF(silu_d)(xr[k] * scale + shift);
      }
      dz = dzbuf;
    }
    double A = 0, B = 0;
    for (int64_t ci = 0; ci < Cg; ci++) {
      int64_t ch = grp * Cg + ci;
      const R *xr = xg + ci * c->S, *dr = dz + ci * c->S;
      double sdy = 0, sdyx = 0;
      for (int64_t k = 0; k < c->S; k++) {
        sdy += dr[k];
        sdyx += (double)dr[k] * xr[k];
      }
      cpu_gn_bwd_channel(c->w ? c->w[ch] : 1.0, sdy, sdyx, mean, rstd, &A, &B, c->pdw ? c->pdw + n * c->C + ch : NULL,
                         c->pdb ? c->pdb + n * c->C + ch : NULL);
    }
    if (!c->gx) continue;
    double r = rstd, c2, c3;
    cpu_gn_bwd_coeffs(A, B, mean, r, M, &c2, &c3);
    for (int64_t ci = 0; ci < Cg; ci++) {
      int64_t ch = grp * Cg + ci;
      R a = (R)(r * (c->w ? c->w[ch] : 1.0)), b2 = (R)c2, b3 = (R)c3;
      const R *xr = xg + ci * c->S, *dr = dz + ci * c->S;
      R *gr = c->gx + base + ci * c->S;
      for (int64_t k = 0; k < c->S; k++) gr[k] = a * dr[k] + b2 * xr[k] + b3;
    }
  }
}

typedef struct {
  const R *x, *w, *b, *gy;
  R *y, *mean, *rstd, *gx;
  double *pdw, *pdb; /* [threads, D] partials */
  int64_t rows, D;
  double eps;
} SUF(ln_ctx);

static void SUF(ln_fwd_range)(int64_t lo, int64_t hi, void *vctx) {
  SUF(ln_ctx) *c = vctx;
  for (int64_t r = lo; r < hi; r++) {
    const R *xr = c->x + r * c->D;
    R *yr = c->y + r * c->D;
    R mean, rstd;
    SUF(moments)(xr, c->D, c->eps, &mean, &rstd);
    c->mean[r] = mean;
    c->rstd[r] = rstd;
    R shift = -rstd * mean;
    if (c->w && c->b)
      for (int64_t k = 0; k < c->D; k++) yr[k] = (xr[k] * rstd + shift) * c->w[k] + c->b[k];
    else if (c->w)
      for (int64_t k = 0; k < c->D; k++) yr[k] = (xr[k] * rstd + shift) * c->w[k];
    else if (c->b)
      for (int64_t k = 0; k < c->D; k++) yr[k] = (xr[k] * rstd + shift) + c->b[k];
    else
      for (int64_t k = 0; k < c->D; k++) yr[k] = xr[k] * rstd + shift;
  }
}

/* rows [lo, hi) of one thread; its weight/bias partials go to row t of pdw/pdb */
static void SUF(ln_bwd_rows)(SUF(ln_ctx) *c, int64_t lo, int64_t hi, double *pdw, double *pdb) {
  int64_t D = c->D;
  for (int64_t r = lo; r < hi; r++) {
    const R *xr = c->x + r * D, *gr = c->gy + r * D;
    R mean = c->mean[r], rstd = c->rstd[r];
    double A = 0, B = 0;
    for (int64_t k = 0; k < D; k++) {
      double wd = c->w ? (double)c->w[k] * gr[k] : (double)gr[k];
      A += wd * xr[k];
      B += wd;
    }
    if (pdw)
      for (int64_t k = 0; k < D; k++) pdw[k] += (double)gr[k] * (((double)xr[k] - mean) * rstd);
    if (pdb)
      for (int64_t k = 0; k < D; k++) pdb[k] += gr[k];
    if (!c->gx) continue;
    double rs = rstd, c2 = (B * (double)mean - A) * rs * rs * rs / (double)D;
    double c3 = -c2 * (double)mean - B * rs / (double)D;
    R b2 = (R)c2, b3 = (R)c3;
    R *dx = c->gx + r * D;
    if (c->w)
      for (int64_t k = 0; k < D; k++) dx[k] = (R)(rs * c->w[k]) * gr[k] + b2 * xr[k] + b3;
    else
      for (int64_t k = 0; k < D; k++) dx[k] = rstd * gr[k] + b2 * xr[k] + b3;
  }
}
