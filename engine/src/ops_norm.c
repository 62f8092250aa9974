/* ops_norm.c: group_norm, group_norm_silu (the norm -> SiLU pair of every ResnetBlock2D in one
 * pass) and layer_norm, with explicit backward ops.
 *
 * Kernel conventions (every backend implements exactly these; all tensors contiguous, one dtype,
 * except that the CPU's norms take bfloat16 x, y, gy, gx with float32 w, b, mean, rstd, gw, gb; its
 * group norm kernels also take one of the sides x/gx, y/gy in float32):
 *   GROUP_NORM, GROUP_NORM_SILU
 *       in[0] x [N, C, *], in[1] w [C] or NULL, in[2] b [C] or NULL;
 *       out[0] y (x's shape; silu(group_norm) for the fused op), out[1] mean [N, G], out[2] rstd [N, G]
 *       (rstd = 1/sqrt(biased var + eps)); i[0] G; f[0] eps
 *   GROUP_NORM_BWD
 *       in[0] gy, in[1] x, in[2] mean, in[3] rstd, in[4] w or NULL, in[5] b or NULL (read only when fused);
 *       out[0] gx, out[1] gw [C] or NULL, out[2] gb [C] or NULL (fully overwritten);
 *       i[0] G; i[1] 1 when gy is the gradient of the fused op's output (z is recomputed from x)
 *   LAYER_NORM
 *       in[0] x [rows, D] (any shape whose trailing dims multiply to D), in[1] w [D] or NULL, in[2] b or NULL;
 *       out[0] y, out[1] mean [rows], out[2] rstd [rows]; i[0] D; f[0] eps
 *   LAYER_NORM_BWD
 *       in[0] gy, in[1] x, in[2] mean, in[3] rstd, in[4] w or NULL;
 *       out[0] gx, out[1] gw or NULL, out[2] gb or NULL (fully overwritten); i[0] D */
#include "nn_common.h"
#include "autocast.h" /* cuda/autocast.h: the autocast cast policy */

/* mean/rstd: float32 for bfloat16 activations on the CPU (see the contract above), else x's dtype */
static int stat_dtype(const ddpm_tensor *x) {
  return x->dtype == DDPM_BFLOAT16 && x->device == DDPM_CPU ? DDPM_FLOAT32 : x->dtype;
}

/* The shared forward of the norms, after their checks: contiguous operands, y and the per-row (or
 * per-group) mean and rstd of shape stat_shape, one kernel call, and the autograd record (x, mean,
 * rstd, w, b saved; i[0] the group count or row length, f[0] eps). */
static int norm_forward(ddpm_tensor **out, int op, ddpm_tensor *x, ddpm_tensor *w, ddpm_tensor *b, int stat_ndim,
                        const int64_t *stat_shape, int64_t param, double eps) {
  ddpm_tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL, *mean = NULL, *rstd = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&xc, x));
  DDPM_CHECK(nn_contig(&wc, w));
  DDPM_CHECK(nn_contig(&bc, b));
  DDPM_CHECK(ddpm_tensor_new(&y, x->ndim, x->shape, x->dtype, x->device));
  DDPM_CHECK(ddpm_tensor_new(&mean, stat_ndim, stat_shape, stat_dtype(x), x->device));
  DDPM_CHECK(ddpm_tensor_new(&rstd, stat_ndim, stat_shape, stat_dtype(x), x->device));
  {
    ddpm_call c = {.op = op, .nin = 3, .nout = 3, .in = {xc, wc, bc}, .out = {y, mean, rstd}, .i = {param}, .f = {eps}};
    DDPM_CHECK(ddpm_dispatch(&c));
    ddpm_tensor *ins[3] = {x, w, b};
    ddpm_node *n = ddpm_ag_begin(op, 3, ins);
    if (n) {
      n->i[0] = param;
      n->f[0] = eps;
      ddpm_tensor *save[5] = {xc, mean, rstd, wc, bc};
      DDPM_CHECK(nn_record(n, y, 5, save));
    }
  }
done:
  ddpm_tensor_release(xc);
  ddpm_tensor_release(wc);
  ddpm_tensor_release(bc);
  ddpm_tensor_release(mean);
  ddpm_tensor_release(rstd);
  if (st) {
    ddpm_tensor_release(y);
    return st;
  }
  *out = y;
  return DDPM_OK;
}

/* a bfloat16 CPU input, which the norm kernels take with float32 weight and bias */
static bool norm_mixed(const ddpm_tensor *x) { return x->dtype == DDPM_BFLOAT16 && x->device == DDPM_CPU; }

/* weight or bias p of a norm: like x, or float32 beside a bfloat16 CPU x */
static int norm_param_like(const char *name, const char *what, ddpm_tensor *p, ddpm_tensor *x) {
  if (norm_mixed(x) && p->dtype == DDPM_FLOAT32) return ddpm_check_same_device(name, x, p);
  return nn_need_like(name, what, p, x);
}

/* Half types on the CPU, shared by the norms.  bfloat16 input: the kernels read and write it
 * directly with float32 weight and bias (the mixed types PyTorch's CPU norms take), so only half
 * weights are widened; float16 input: the whole op runs on float32 copies (nn_common.h) and the
 * result is cast back.  *done is false when none of this applies. */
typedef int (*norm_fn)(const void *args, ddpm_tensor **out, ddpm_tensor *x, ddpm_tensor *w, ddpm_tensor *b);
static int norm_half_cpu(ddpm_tensor **out, ddpm_tensor *x, ddpm_tensor *w, ddpm_tensor *b, norm_fn f,
                         const void *args, bool *done) {
  bool mixed = norm_mixed(x);
  *done = nn_half_on_cpu(x) && (!mixed || nn_half_on_cpu(w) || nn_half_on_cpu(b));
  if (!*done) return DDPM_OK;
  ddpm_tensor *in[3] = {x, w, b}, *wide[3], *y = NULL;
  DDPM_TRY(nn_widen(3, in, wide));
  int st;
  if (mixed) {
    st = f(args, out, x, wide[1], wide[2]);
  } else {
    st = f(args, &y, wide[0], wide[1], wide[2]);
    if (!st) st = ddpm_cast(out, y, x->dtype);
  }
  ddpm_tensor_release(y);
  nn_release(3, wide);
  return st;
}

/* ---- group norm --------------------------------------------------------------------------------------- */
static int group_norm_impl(ddpm_tensor **out, int op, ddpm_tensor *x, int64_t G, ddpm_tensor *w, ddpm_tensor *b,
                           double eps);
struct gn_args {
  int op;
  int64_t G;
  double eps;
};
static int gn_call(const void *p, ddpm_tensor **out, ddpm_tensor *x, ddpm_tensor *w, ddpm_tensor *b) {
  const struct gn_args *a = p;
  return group_norm_impl(out, a->op, x, a->G, w, b, a->eps);
}
static int group_norm_impl(ddpm_tensor **out, int op, ddpm_tensor *x, int64_t G, ddpm_tensor *w, ddpm_tensor *b,
                           double eps) {
  const char *name = ddpm_opname(op);
  DDPM_TRY(ddpm_check_tensor(name, "input", x));
  DDPM_AUTOCAST(DDPM_AUTOCAST_FP32_GPU, group_norm_impl(out, op, ac_[0], G, ac_[1], ac_[2], eps), x, w,
                b); /* autocast hook (cuda/autocast.h) */
  struct gn_args a = {op, G, eps};
  bool done = false;
  int st = norm_half_cpu(out, x, w, b, gn_call, &a, &done);
  if (done) return st;
  if (x->ndim < 2)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: expected an input [N, C, *] with at least 2 dims, got %s", name,
                     ddpm_fmt_tensor(x));
  DDPM_TRY(nn_need_float(name, "input", x));
  int64_t C = x->shape[1];
  if (G < 1) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: num_groups must be positive, got %lld", name, (long long)G);
  if (C % G != 0)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: num_groups=%lld does not divide the %lld channels of input %s", name,
                     (long long)G, (long long)C, ddpm_fmt_tensor(x));
  if (!(eps >= 0)) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: eps must be non-negative, got %g", name, eps);
  ddpm_tensor *pw[2] = {w, b};
  const char *pn[2] = {"weight", "bias"};
  for (int k = 0; k < 2; k++) {
    if (!pw[k]) continue;
    DDPM_TRY(norm_param_like(name, pn[k], pw[k], x));
    if (pw[k]->ndim != 1 || pw[k]->shape[0] != C)
      return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: %s %s must be [%lld] (one value per channel of input %s)", name, pn[k],
                       ddpm_fmt_tensor(pw[k]), (long long)C, ddpm_fmt_tensor(x));
  }
  int64_t ms[2] = {x->shape[0], G};
  return norm_forward(out, op, x, w, b, 2, ms, G, eps);
}

int ddpm_group_norm(ddpm_tensor **out, ddpm_tensor *x, int64_t G, ddpm_tensor *w, ddpm_tensor *b, double eps) {
  return group_norm_impl(out, DDPM_OP_GROUP_NORM, x, G, w, b, eps);
}
int ddpm_group_norm_silu(ddpm_tensor **out, ddpm_tensor *x, int64_t G, ddpm_tensor *w, ddpm_tensor *b,
                         double eps) {
  return group_norm_impl(out, DDPM_OP_GROUP_NORM_SILU, x, G, w, b, eps);
}

/* allocate gin[k] from the input's metadata when input k needs a gradient */
static int grad_slot(ddpm_node *n, int k, ddpm_tensor **gin) {
  if (!ddpm_node_needs(n, k)) return DDPM_OK;
  const ddpm_meta *m = &n->in_meta[k];
  return ddpm_tensor_new(&gin[k], m->ndim, m->shape, m->dtype, m->device);
}

static int norm_backward(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin, int bwd_op, bool silu) {
  ddpm_tensor *gc = NULL, *gx = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&gc, g));
  /* gx is always computed: the kernels' first output must exist, and the input almost always
   * needs it anyway */
  {
    const ddpm_meta *m = &n->in_meta[0];
    DDPM_CHECK(ddpm_tensor_new(&gx, m->ndim, m->shape, m->dtype, m->device));
  }
  DDPM_CHECK(grad_slot(n, 1, gin));
  DDPM_CHECK(grad_slot(n, 2, gin));
  {
    ddpm_tensor **s = n->saved;
    ddpm_call c = {.op = bwd_op, .nin = 6, .nout = 3, .in = {gc, s[0], s[1], s[2], s[3], s[4]},
                   .out = {gx, gin[1], gin[2]}, .i = {n->i[0], silu ? 1 : 0}};
    if (bwd_op == DDPM_OP_LAYER_NORM_BWD) c.nin = 5;
    DDPM_CHECK(ddpm_dispatch(&c));
  }
  if (ddpm_node_needs(n, 0)) {
    gin[0] = gx;
    gx = NULL;
  }
done:
  ddpm_tensor_release(gc);
  ddpm_tensor_release(gx);
  return st;
}

int bw_GROUP_NORM(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  return norm_backward(n, g, gin, DDPM_OP_GROUP_NORM_BWD, false);
}
int bw_GROUP_NORM_SILU(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  return norm_backward(n, g, gin, DDPM_OP_GROUP_NORM_BWD, true);
}

/* ---- layer norm ----------------------------------------------------------------------------------------- */
struct ln_args {
  int nnorm;
  const int64_t *nshape;
  double eps;
};
static int ln_call(const void *p, ddpm_tensor **out, ddpm_tensor *x, ddpm_tensor *w, ddpm_tensor *b) {
  const struct ln_args *a = p;
  return ddpm_layer_norm(out, x, a->nnorm, a->nshape, w, b, a->eps);
}
int ddpm_layer_norm(ddpm_tensor **out, ddpm_tensor *x, int nnorm, const int64_t *nshape, ddpm_tensor *w,
                    ddpm_tensor *b, double eps) {
  DDPM_TRY(ddpm_check_tensor("layer_norm", "input", x));
  DDPM_AUTOCAST(DDPM_AUTOCAST_FP32_GPU, ddpm_layer_norm(out, ac_[0], nnorm, nshape, ac_[1], ac_[2], eps), x, w,
                b); /* autocast hook (cuda/autocast.h) */
  struct ln_args a = {nnorm, nshape, eps};
  bool done = false;
  int st = norm_half_cpu(out, x, w, b, ln_call, &a, &done);
  if (done) return st;
  DDPM_TRY(nn_need_float("layer_norm", "input", x));
  if (nnorm < 1 || nnorm > DDPM_MAX_DIMS || !nshape)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "layer_norm: normalized_shape must list 1 to %d sizes, got %d", DDPM_MAX_DIMS,
                     nnorm);
  bool ok = x->ndim >= nnorm;
  for (int k = 0; ok && k < nnorm; k++) ok = x->shape[x->ndim - nnorm + k] == nshape[k];
  if (!ok)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "layer_norm: normalized_shape=%s expects an input [*, %s, got %s",
                     ddpm_fmt_shape(nnorm, nshape), ddpm_fmt_shape(nnorm, nshape) + 1, ddpm_fmt_tensor(x));
  if (!(eps >= 0)) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "layer_norm: eps must be non-negative, got %g", eps);
  ddpm_tensor *pw[2] = {w, b};
  const char *pn[2] = {"weight", "bias"};
  for (int k = 0; k < 2; k++) {
    if (!pw[k]) continue;
    DDPM_TRY(norm_param_like("layer_norm", pn[k], pw[k], x));
    bool same = pw[k]->ndim == nnorm;
    for (int d = 0; same && d < nnorm; d++) same = pw[k]->shape[d] == nshape[d];
    if (!same)
      return DDPM_FAIL(DDPM_ERR_SHAPE, "layer_norm: %s %s must have the normalized_shape %s", pn[k],
                       ddpm_fmt_tensor(pw[k]), ddpm_fmt_shape(nnorm, nshape));
  }
  int64_t D = ddpm_shape_numel(nnorm, nshape);
  int64_t rows = ddpm_shape_numel(x->ndim - nnorm, x->shape);
  return norm_forward(out, DDPM_OP_LAYER_NORM, x, w, b, 1, &rows, D, eps);
}

/* ---- replay ---------------------------------------------------------------------------------------------- */
/* A norm's output is rebuilt from what its node saves for its own backward (x, w, b; the bias is
 * kept for this, and eps): a consumer such as the convolution after a group_norm_silu then need
 * not keep the activation.  The same deterministic kernel runs, so the values are identical. */
bool ddpm_norm_replayable(int op) {
  return op == DDPM_OP_GROUP_NORM || op == DDPM_OP_GROUP_NORM_SILU || op == DDPM_OP_LAYER_NORM;
}

int ddpm_norm_replay(ddpm_node *p, ddpm_tensor **out) {
  ddpm_tensor *x = p->saved[0], *y = NULL, *mean = NULL, *rstd = NULL;
  if (!x) return DDPM_FAIL(DDPM_ERR_AUTOGRAD, "%s: nothing saved to replay the forward from", ddpm_opname(p->op));
  int st = DDPM_OK;
  const ddpm_meta *m = &p->out_meta;
  int64_t ms[2] = {x->shape[0], p->i[0]};
  int nm = p->op == DDPM_OP_LAYER_NORM ? 1 : 2;
  if (nm == 1) ms[0] = ddpm_tensor_numel(x) / (p->i[0] ? p->i[0] : 1);
  DDPM_CHECK(ddpm_tensor_new(&y, m->ndim, m->shape, m->dtype, m->device));
  DDPM_CHECK(ddpm_tensor_new(&mean, nm, ms, stat_dtype(x), x->device));
  DDPM_CHECK(ddpm_tensor_new(&rstd, nm, ms, stat_dtype(x), x->device));
  {
    ddpm_call c = {.op = p->op, .nin = 3, .nout = 3, .in = {x, p->saved[3], p->saved[4]}, .out = {y, mean, rstd},
                   .i = {p->i[0]}, .f = {p->f[0]}};
    DDPM_CHECK(ddpm_dispatch(&c));
  }
  *out = y;
  y = NULL;
done:
  ddpm_tensor_release(y);
  ddpm_tensor_release(mean);
  ddpm_tensor_release(rstd);
  return st;
}

int bw_LAYER_NORM(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  return norm_backward(n, g, gin, DDPM_OP_LAYER_NORM_BWD, false);
}
