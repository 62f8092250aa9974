/* ops_attention.c: softmax, log_softmax and scaled_dot_product_attention (torch.nn.functional
 * names and semantics), each with an explicit backward op.
 *
 * Kernel conventions (every backend implements exactly these):
 *   SOFTMAX, LOG_SOFTMAX  in[0] x (contiguous); out[0] y; i[0] dim (non-negative)
 *   SOFTMAX_BWD           in[0] gy, in[1] y (the forward output), both contiguous; out[0] gx;
 *                         i[0] dim; i[1] 1 for log_softmax
 *   SDPA   in[0] q [B0,B1,Lq,E], in[1] k [B0,B1,Lk,E], in[2] v [B0,B1,Lk,Ev]: any strides with a unit
 *          last-dim stride and a row stride >= the row length (per-(b0,b1) matrices are read in place);
 *          in[3] attn_mask NULL or [B0,B1,Lq,Lk] with any strides (0 where broadcast), bool (true =
 *          take part) or q's dtype (added to the scores);
 *          out[0] o [B0,B1,Lq,Ev] contiguous; out[1] P [B0,B1,Lq,Lk] contiguous softmax probabilities
 *          (before dropout) or NULL when no gradient is needed, and always NULL on the CPU (whose
 *          backward recomputes them: a score GEMM per head instead of holding every layer's P);
 *          i[0] is_causal (keep j <= i); i[1] dropout seed, i[2] dropout counter base;
 *          f[0] scale; f[1] dropout_p.  Score (b, i, j), b = b0 B1 + b1, is dropped iff the 53-bit
 *          uniform of Philox counter base + (b Lq + i) Lk + j is < p; kept ones are scaled by 1/(1-p).
 *   SDPA_BWD  in[0] go [B0,B1,Lq,Ev] contiguous, in[1] q, in[2] k, in[3] v (as SDPA), in[4] P (NULL:
 *          recompute it), in[5] the forward's attn_mask (as SDPA's in[3]; NULL for none);
 *          out[0] gq, out[1] gk, out[2] gv contiguous in q, k, v's shapes; i[], f[] as SDPA. */
#include "nn_common.h"
#include "autocast.h" /* cuda/autocast.h: the autocast cast policy */
#include <math.h>

/* ---- softmax / log_softmax ------------------------------------------------------------------------ */
static int softmax_impl(ddpm_tensor **out, int op, ddpm_tensor *x, int dim) {
  const char *name = ddpm_opname(op);
  DDPM_TRY(ddpm_check_tensor(name, "input", x));
  DDPM_AUTOCAST(DDPM_AUTOCAST_FP32_GPU, softmax_impl(out, op, ac_[0], dim), x); /* autocast hook (cuda/autocast.h) */
  if (nn_half_on_cpu(x)) { /* float32 inside (nn_common.h) */
    ddpm_tensor *wide = NULL, *y = NULL;
    DDPM_TRY(nn_widen(1, &x, &wide));
    int st = softmax_impl(&y, op, wide, dim);
    if (!st) st = ddpm_cast(out, y, x->dtype);
    ddpm_tensor_release(y);
    ddpm_tensor_release(wide);
    return st;
  }
  DDPM_TRY(nn_need_float(name, "input", x));
  int d;
  DDPM_TRY(ddpm_wrap_dim(name, dim, x->ndim, &d));
  ddpm_tensor *xc = NULL, *y = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&xc, x));
  DDPM_CHECK(ddpm_tensor_new(&y, x->ndim, x->shape, x->dtype, x->device));
  {
    ddpm_call c = {.op = op, .nin = 1, .nout = 1, .in = {xc}, .out = {y}, .i = {d}};
    DDPM_CHECK(ddpm_dispatch(&c));
    ddpm_node *n = ddpm_ag_begin(op, 1, &x);
    if (n) {
      n->i[0] = d;
      DDPM_CHECK(nn_record(n, y, 1, &y));
    }
  }
done:
  ddpm_tensor_release(xc);
  if (st) {
    ddpm_tensor_release(y);
    return st;
  }
  *out = y;
  return DDPM_OK;
}

int ddpm_softmax(ddpm_tensor **out, ddpm_tensor *x, int dim) { return softmax_impl(out, DDPM_OP_SOFTMAX, x, dim); }
int ddpm_log_softmax(ddpm_tensor **out, ddpm_tensor *x, int dim) {
  return softmax_impl(out, DDPM_OP_LOG_SOFTMAX, x, dim);
}

static int softmax_backward(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin, bool log) {
  ddpm_tensor *gc = NULL, *gx = NULL;
  const ddpm_meta *m = &n->in_meta[0];
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&gc, g));
  DDPM_CHECK(ddpm_tensor_new(&gx, m->ndim, m->shape, m->dtype, m->device));
  {
    ddpm_call c = {.op = DDPM_OP_SOFTMAX_BWD, .nin = 2, .nout = 1, .in = {gc, n->saved[0]}, .out = {gx},
                   .i = {n->i[0], log ? 1 : 0}};
    DDPM_CHECK(ddpm_dispatch(&c));
  }
  gin[0] = gx;
  gx = NULL;
done:
  ddpm_tensor_release(gc);
  ddpm_tensor_release(gx);
  return st;
}
int bw_SOFTMAX(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return softmax_backward(n, g, gin, false); }
int bw_LOG_SOFTMAX(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return softmax_backward(n, g, gin, true); }

/* ---- scaled dot-product attention ------------------------------------------------------------------- */
/* t [..., L, X] as 4-D [B0, B1, L, X] (views; a copy only when the leading dims cannot merge) */
static int as4d(ddpm_tensor **out, ddpm_tensor *t) {
  if (t->ndim == 4) {
    ddpm_tensor_retain(t);
    *out = t;
    return DDPM_OK;
  }
  int64_t s[4] = {1, 1, t->shape[t->ndim - 2], t->shape[t->ndim - 1]};
  if (t->ndim == 3) s[1] = t->shape[0];
  if (t->ndim > 4) {
    s[0] = ddpm_shape_numel(t->ndim - 3, t->shape);
    s[1] = t->shape[t->ndim - 3];
  }
  return ddpm_reshape(out, t, 4, s);
}

/* The kernels read q, k, v in place when each [L, X] matrix has unit column stride and rows that
 * do not overlap; anything else is copied (without autograd: the node records the view). */
static int gemm_ready(ddpm_tensor **out, ddpm_tensor *t) {
  bool ok = (t->strides[3] == 1 || t->shape[3] <= 1) && (t->shape[2] <= 1 || t->strides[2] >= t->shape[3]);
  if (ok) {
    ddpm_tensor_retain(t);
    *out = t;
    return DDPM_OK;
  }
  ddpm_tensor *c = NULL;
  DDPM_TRY(ddpm_tensor_new(&c, t->ndim, t->shape, t->dtype, t->device));
  ddpm_call k = {.op = DDPM_OP_COPY, .nin = 1, .nout = 1, .in = {t}, .out = {c}};
  int st = ddpm_dispatch(&k);
  if (st) {
    ddpm_tensor_release(c);
    return st;
  }
  *out = c;
  return DDPM_OK;
}

static int check_attention(ddpm_tensor *q, ddpm_tensor *k, ddpm_tensor *v) {
  const char *op = "scaled_dot_product_attention";
  DDPM_TRY(ddpm_check_tensor(op, "query", q));
  DDPM_TRY(ddpm_check_tensor(op, "key", k));
  DDPM_TRY(ddpm_check_tensor(op, "value", v));
  DDPM_TRY(nn_need_float(op, "query", q));
  DDPM_TRY(nn_need_like(op, "key", k, q));
  DDPM_TRY(nn_need_like(op, "value", v, q));
  if (q->ndim < 2 || q->ndim != k->ndim || q->ndim != v->ndim)
    return DDPM_FAIL(DDPM_ERR_SHAPE,
                     "%s: query %s, key %s and value %s must have the same number of dims (>= 2): [..., L, E]",
                     op, ddpm_fmt_tensor(q), ddpm_fmt_tensor(k), ddpm_fmt_tensor(v));
  int nd = q->ndim;
  bool lead = true;
  for (int d = 0; d < nd - 2; d++) lead = lead && q->shape[d] == k->shape[d] && q->shape[d] == v->shape[d];
  if (!lead)
    return DDPM_FAIL(DDPM_ERR_SHAPE,
                     "%s: query %s, key %s and value %s must agree in their leading (batch, head) dims", op,
                     ddpm_fmt_tensor(q), ddpm_fmt_tensor(k), ddpm_fmt_tensor(v));
  if (q->shape[nd - 1] != k->shape[nd - 1])
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: query %s and key %s must have the same embedding size E (last dim)", op,
                     ddpm_fmt_tensor(q), ddpm_fmt_tensor(k));
  if (k->shape[nd - 2] != v->shape[nd - 2])
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: key %s and value %s must have the same sequence length (dim %d)", op,
                     ddpm_fmt_tensor(k), ddpm_fmt_tensor(v), nd - 2);
  return DDPM_OK;
}

/* mask -> [B0, B1, Lq, Lk] view (bool, or float in q's dtype), detached: masks get no gradient */
static int prepare_mask(ddpm_tensor **out, ddpm_tensor *mask, ddpm_tensor *q, int64_t Lk) {
  const char *op = "scaled_dot_product_attention";
  *out = NULL;
  if (!mask) return DDPM_OK;
  DDPM_TRY(ddpm_check_same_device(op, q, mask));
  if (mask->dtype != DDPM_BOOL && !ddpm_is_float(mask->dtype))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: attn_mask %s must be bool (true = take part) or floating point (added)", op,
                     ddpm_fmt_tensor(mask));
  int nd = q->ndim;
  int64_t full[DDPM_MAX_DIMS];
  memcpy(full, q->shape, sizeof(int64_t) * (size_t)nd);
  full[nd - 1] = Lk;
  bool ok = mask->ndim <= nd;
  for (int d = 0; ok && d < mask->ndim; d++) {
    int64_t ms = mask->shape[mask->ndim - 1 - d], fs = full[nd - 1 - d];
    ok = ms == fs || ms == 1;
  }
  if (!ok)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: attn_mask %s does not broadcast to the attention scores %s", op,
                     ddpm_fmt_tensor(mask), ddpm_fmt_shape(nd, full));
  ddpm_tensor *m = NULL, *c = NULL, *e = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(ddpm_detach(&m, mask));
  /* a float mask takes q's dtype; bfloat16 on the CPU computes in float32, so float32 there */
  int mdt = q->dtype == DDPM_BFLOAT16 && q->device == DDPM_CPU ? DDPM_FLOAT32 : q->dtype;
  if (m->dtype != DDPM_BOOL && m->dtype != mdt) DDPM_CHECK(ddpm_cast(&c, m, mdt));
  else {
    c = m;
    m = NULL;
  }
  DDPM_CHECK(ddpm_expand(&e, c, nd, full));
  st = as4d(out, e);
done:
  ddpm_tensor_release(m);
  ddpm_tensor_release(c);
  ddpm_tensor_release(e);
  return st;
}

/* float16 on the CPU: the CPU kernels compute in float32 (as PyTorch's CPU attention does for half
 * types), so q, k, v are widened through differentiable casts and the output is rounded back; the
 * gradients reach q, k, v in their own dtype.  (bfloat16 needs no copies: the CPU kernel widens
 * each head's matrices into float32 staging itself, engine/cpu/attention.c.) */
static int sdpa_half_cpu(ddpm_tensor **out, ddpm_tensor *q, ddpm_tensor *k, ddpm_tensor *v, ddpm_tensor *mask,
                         double dropout_p, int is_causal, double scale, ddpm_generator *gen) {
  ddpm_tensor *q32 = NULL, *k32 = NULL, *v32 = NULL, *o32 = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(ddpm_cast(&q32, q, DDPM_FLOAT32));
  DDPM_CHECK(ddpm_cast(&k32, k, DDPM_FLOAT32));
  DDPM_CHECK(ddpm_cast(&v32, v, DDPM_FLOAT32));
  {
    /* autocast off inside, or it would lower the float32 copies straight back */
    unsigned ac = ddpm_autocast_mask;
    ddpm_autocast_mask = 0;
    st = ddpm_scaled_dot_product_attention(&o32, q32, k32, v32, mask, dropout_p, is_causal, scale, gen);
    ddpm_autocast_mask = ac;
    if (st) goto done;
  }
  DDPM_CHECK(ddpm_cast(out, o32, q->dtype));
done: {
  ddpm_tensor *all[4] = {q32, k32, v32, o32};
  nn_release(4, all);
}
  return st;
}

int ddpm_scaled_dot_product_attention(ddpm_tensor **out, ddpm_tensor *q, ddpm_tensor *k, ddpm_tensor *v,
                                      ddpm_tensor *mask, double dropout_p, int is_causal, double scale,
                                      ddpm_generator *gen) {
  const char *op = "scaled_dot_product_attention";
  DDPM_TRY(check_attention(q, k, v));
  /* lowered on every device, as PyTorch's CPU and CUDA autocast lists both name it; half types
   * on the CPU then take the float32 detour below */
  DDPM_AUTOCAST(DDPM_AUTOCAST_LOWER,
                ddpm_scaled_dot_product_attention(out, ac_[0], ac_[1], ac_[2], ac_[3], dropout_p, is_causal, scale, gen),
                q, k, v, mask); /* autocast hook (cuda/autocast.h) */
  if (!(dropout_p >= 0 && dropout_p < 1))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: dropout_p must be in [0, 1), got %g", op, dropout_p);
  if (is_causal && mask)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: pass either attn_mask or is_causal=true, not both", op);
  if (q->device == DDPM_CPU && q->dtype == DDPM_FLOAT16) /* bfloat16: the CPU kernel stages it itself */
    return sdpa_half_cpu(out, q, k, v, mask, dropout_p, is_causal, scale, gen);
  int nd = q->ndim;
  int64_t E = q->shape[nd - 1], Lq = q->shape[nd - 2], Lk = k->shape[nd - 2], Ev = v->shape[nd - 1];
  if (isnan(scale)) scale = E > 0 ? 1.0 / sqrt((double)E) : 1.0;
  ddpm_tensor *q4 = NULL, *k4 = NULL, *v4 = NULL, *qr = NULL, *kr = NULL, *vr = NULL, *m4 = NULL;
  ddpm_tensor *o = NULL, *o4 = NULL, *P = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(as4d(&q4, q));
  DDPM_CHECK(as4d(&k4, k));
  DDPM_CHECK(as4d(&v4, v));
  DDPM_CHECK(gemm_ready(&qr, q4));
  DDPM_CHECK(gemm_ready(&kr, k4));
  DDPM_CHECK(gemm_ready(&vr, v4));
  DDPM_CHECK(prepare_mask(&m4, mask, q, Lk));
  {
    int64_t B0 = q4->shape[0], B1 = q4->shape[1];
    int64_t os4[4] = {B0, B1, Lq, Ev}, ps[4] = {B0, B1, Lq, Lk}, os[DDPM_MAX_DIMS], ost[4];
    memcpy(os, q->shape, sizeof(int64_t) * (size_t)nd);
    os[nd - 1] = Ev;
    bool need = ddpm_ag_enabled() && (q->requires_grad || k->requires_grad || v->requires_grad);
    /* the output has the caller's shape (so the node sits on it); the kernel sees a 4-D alias */
    DDPM_CHECK(ddpm_tensor_new(&o, nd, os, q->dtype, q->device));
    ddpm_contiguous_strides(4, os4, ost);
    DDPM_CHECK(ddpm_tensor_alias(&o4, o, 4, os4, ost, 0));
    if (need && q->device != DDPM_CPU) DDPM_CHECK(ddpm_tensor_new(&P, 4, ps, q->dtype, q->device));
    uint64_t seed = 0, base = 0;
    if (dropout_p > 0) {
      if (!gen) gen = ddpm_default_generator();
      seed = gen->seed;
      base = ddpm_generator_reserve(gen, (uint64_t)(B0 * B1 * Lq * Lk));
    }
    ddpm_call c = {.op = DDPM_OP_SDPA, .nin = 4, .nout = 2, .in = {qr, kr, vr, m4}, .out = {o4, P},
                   .i = {is_causal ? 1 : 0, (int64_t)seed, (int64_t)base}, .f = {scale, dropout_p}};
    DDPM_CHECK(ddpm_dispatch(&c));
    ddpm_tensor *ins[3] = {q4, k4, v4};
    ddpm_node *n = ddpm_ag_begin(DDPM_OP_SDPA, 3, ins);
    if (n) {
      memcpy(n->i, c.i, 3 * sizeof(int64_t));
      n->f[0] = scale;
      n->f[1] = dropout_p;
      ddpm_tensor *save[5] = {qr, kr, vr, P, m4};
      DDPM_CHECK(nn_record(n, o, 5, save));
    }
    *out = o;
    o = NULL;
  }
done: {
  ddpm_tensor *all[10] = {q4, k4, v4, qr, kr, vr, m4, o, o4, P};
  nn_release(10, all);
}
  return st;
}

int bw_SDPA(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  ddpm_tensor *gc = NULL, *gs[3] = {NULL, NULL, NULL};
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&gc, g));
  for (int k = 0; k < 3; k++) {
    const ddpm_meta *m = &n->in_meta[k];
    DDPM_CHECK(ddpm_tensor_new(&gs[k], m->ndim, m->shape, m->dtype, m->device));
  }
  {
    ddpm_tensor **s = n->saved;
    ddpm_call c = {.op = DDPM_OP_SDPA_BWD, .nin = 6, .nout = 3, .in = {gc, s[0], s[1], s[2], s[3], s[4]},
                   .out = {gs[0], gs[1], gs[2]}, .f = {n->f[0], n->f[1]}};
    memcpy(c.i, n->i, 3 * sizeof(int64_t));
    DDPM_CHECK(ddpm_dispatch(&c));
  }
  for (int k = 0; k < 3; k++)
    if (ddpm_node_needs(n, k)) {
      gin[k] = gs[k];
      gs[k] = NULL;
    }
done:
  ddpm_tensor_release(gc);
  nn_release(3, gs);
  return st;
}
