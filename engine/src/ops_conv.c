/* ops_conv.c: conv2d (torch.nn.functional.conv2d) and its gradient through two explicit backward ops.
 *
 * Kernel conventions (every backend implements exactly these; all tensors contiguous, one dtype):
 *   CONV2D             in[0] x [N,C,H,W], in[1] w [O,C/g,kh,kw], in[2] bias [O] or NULL;
 *                      out[0] y [N,O,Ho,Wo];
 *                      i[0],i[1] stride (h,w); i[2],i[3] padding; i[4],i[5] dilation; i[6] groups
 *   CONV2D_BWD_INPUT   in[0] gy [N,O,Ho,Wo], in[1] w; out[0] gx [N,C,H,W] (fully overwritten); i[] as CONV2D
 *   CONV2D_BWD_WEIGHT  in[0] gy, in[1] x; out[0] gw [O,C/g,kh,kw], out[1] gbias [O] or NULL
 *                      (fully overwritten); i[] as CONV2D
 * Output size: Ho = (H + 2 ph - dh (kh - 1) - 1) / sh + 1, likewise Wo. */
#include "nn_common.h"
#include "autocast.h" /* cuda/autocast.h: the autocast cast policy */

typedef struct {
  int64_t stride[2], pad[2], dil[2], groups;
} conv_params;

static void params_to(const conv_params *p, int64_t *i) {
  i[0] = p->stride[0]; i[1] = p->stride[1];
  i[2] = p->pad[0]; i[3] = p->pad[1];
  i[4] = p->dil[0]; i[5] = p->dil[1];
  i[6] = p->groups;
}

static int check_conv(ddpm_tensor *x, ddpm_tensor *w, ddpm_tensor *b, const conv_params *p, int64_t *oh,
                      int64_t *ow) {
  DDPM_TRY(ddpm_check_tensor("conv2d", "input", x));
  DDPM_TRY(ddpm_check_tensor("conv2d", "weight", w));
  if (x->ndim != 4)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "conv2d: expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got %s",
                     ddpm_fmt_tensor(x));
  if (w->ndim != 4)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "conv2d: expected a 4-D weight [out_channels, in_channels/groups, kH, kW], got %s",
                     ddpm_fmt_tensor(w));
  DDPM_TRY(nn_need_float("conv2d", "input", x));
  DDPM_TRY(nn_need_like("conv2d", "weight", w, x));
  for (int d = 0; d < 2; d++) {
    if (p->stride[d] < 1)
      return DDPM_FAIL(DDPM_ERR_ARGUMENT, "conv2d: stride must be positive, got (%lld, %lld)",
                       (long long)p->stride[0], (long long)p->stride[1]);
    if (p->dil[d] < 1)
      return DDPM_FAIL(DDPM_ERR_ARGUMENT, "conv2d: dilation must be positive, got (%lld, %lld)",
                       (long long)p->dil[0], (long long)p->dil[1]);
    if (p->pad[d] < 0)
      return DDPM_FAIL(DDPM_ERR_ARGUMENT, "conv2d: padding must be non-negative, got (%lld, %lld)",
                       (long long)p->pad[0], (long long)p->pad[1]);
  }
  int64_t C = x->shape[1], O = w->shape[0], g = p->groups;
  if (g < 1) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "conv2d: groups must be positive, got %lld", (long long)g);
  if (C % g != 0)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "conv2d: groups=%lld does not divide the %lld input channels of %s",
                     (long long)g, (long long)C, ddpm_fmt_tensor(x));
  if (O % g != 0)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "conv2d: groups=%lld does not divide the %lld output channels of weight %s",
                     (long long)g, (long long)O, ddpm_fmt_tensor(w));
  if (w->shape[1] * g != C)
    return DDPM_FAIL(DDPM_ERR_SHAPE,
                     "conv2d: input %s has %lld channels, but weight %s with groups=%lld expects %lld "
                     "(in_channels/groups = %lld per group)",
                     ddpm_fmt_tensor(x), (long long)C, ddpm_fmt_tensor(w), (long long)g,
                     (long long)(w->shape[1] * g), (long long)w->shape[1]);
  if (b) {
    DDPM_TRY(nn_need_like("conv2d", "bias", b, x));
    if (b->ndim != 1 || b->shape[0] != O)
      return DDPM_FAIL(DDPM_ERR_SHAPE, "conv2d: bias %s must be [%lld] (one value per output channel)",
                       ddpm_fmt_tensor(b), (long long)O);
  }
  int64_t out[2];
  for (int d = 0; d < 2; d++) {
    int64_t span = p->dil[d] * (w->shape[2 + d] - 1) + 1, padded = x->shape[2 + d] + 2 * p->pad[d];
    if (padded < span)
      return DDPM_FAIL(DDPM_ERR_SHAPE,
                       "conv2d: padded input %lldx%lld of %s is smaller than the (dilated) kernel %lldx%lld of %s",
                       (long long)(x->shape[2] + 2 * p->pad[0]), (long long)(x->shape[3] + 2 * p->pad[1]),
                       ddpm_fmt_tensor(x), (long long)(p->dil[0] * (w->shape[2] - 1) + 1),
                       (long long)(p->dil[1] * (w->shape[3] - 1) + 1), ddpm_fmt_tensor(w));
    out[d] = (padded - span) / p->stride[d] + 1;
  }
  *oh = out[0];
  *ow = out[1];
  return DDPM_OK;
}

int ddpm_conv2d(ddpm_tensor **out, ddpm_tensor *x, ddpm_tensor *w, ddpm_tensor *b, const int64_t *stride,
                const int64_t *padding, const int64_t *dilation, int64_t groups) {
  DDPM_TRY(ddpm_check_tensor("conv2d", "input", x));
  DDPM_AUTOCAST(DDPM_AUTOCAST_LOWER_BF16_CPU, ddpm_conv2d(out, ac_[0], ac_[1], ac_[2], stride, padding, dilation, groups), x, w,
                b); /* autocast hook (cuda/autocast.h) */
  conv_params p = {{1, 1}, {0, 0}, {1, 1}, groups};
  for (int d = 0; d < 2; d++) {
    if (stride) p.stride[d] = stride[d];
    if (padding) p.pad[d] = padding[d];
    if (dilation) p.dil[d] = dilation[d];
  }
  if (x->ndim == 3) { /* unbatched [C, H, W], as PyTorch accepts */
    ddpm_tensor *xb = NULL, *yb = NULL;
    DDPM_TRY(ddpm_unsqueeze(&xb, x, 0));
    int st = ddpm_conv2d(&yb, xb, w, b, p.stride, p.pad, p.dil, groups);
    ddpm_tensor_release(xb);
    if (!st) st = ddpm_squeeze(out, yb, 0);
    ddpm_tensor_release(yb);
    return st;
  }
  int64_t oh = 0, ow = 0;
  DDPM_TRY(check_conv(x, w, b, &p, &oh, &ow));
  ddpm_tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&xc, x));
  DDPM_CHECK(nn_contig(&wc, w));
  DDPM_CHECK(nn_contig(&bc, b));
  {
    int64_t ys[4] = {x->shape[0], w->shape[0], oh, ow};
    DDPM_CHECK(ddpm_tensor_new(&y, 4, ys, x->dtype, x->device));
    ddpm_call c = {.op = DDPM_OP_CONV2D, .nin = 3, .nout = 1, .in = {xc, wc, bc}, .out = {y}};
    params_to(&p, c.i);
    DDPM_CHECK(ddpm_dispatch(&c));
    ddpm_tensor *ins[3] = {x, w, b};
    ddpm_node *n = ddpm_ag_begin(DDPM_OP_CONV2D, 3, ins);
    if (n) {
      params_to(&p, n->i);
      /* the input only for the weight gradient, and as a replay recipe when it is a norm's output */
      st = ddpm_ag_save_replayable(n, ddpm_node_needs(n, 1) ? xc : NULL);
      if (!st) st = ddpm_ag_save(n, ddpm_node_needs(n, 0) ? wc : NULL);
      if (st) {
        ddpm_node_release(n);
        goto done;
      }
      ddpm_ag_finish(n, y);
    }
  }
done:
  ddpm_tensor_release(xc);
  ddpm_tensor_release(wc);
  ddpm_tensor_release(bc);
  if (st) {
    ddpm_tensor_release(y);
    return st;
  }
  *out = y;
  return DDPM_OK;
}

int bw_CONV2D(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  ddpm_tensor *gc = NULL, *xs = NULL;
  DDPM_TRY(nn_contig(&gc, g));
  int st = DDPM_OK;
  if (ddpm_node_needs(n, 0)) {
    const ddpm_meta *m = &n->in_meta[0];
    DDPM_CHECK(ddpm_tensor_new(&gin[0], m->ndim, m->shape, m->dtype, m->device));
    ddpm_call c = {.op = DDPM_OP_CONV2D_BWD_INPUT, .nin = 2, .nout = 1, .in = {gc, n->saved[1]}, .out = {gin[0]}};
    memcpy(c.i, n->i, 7 * sizeof(int64_t));
    DDPM_CHECK(ddpm_dispatch(&c));
  }
  bool nw = ddpm_node_needs(n, 1), nb = ddpm_node_needs(n, 2);
  if (nw) { /* weight and bias gradients in one pass over gy */
    const ddpm_meta *mw = &n->in_meta[1], *mb = &n->in_meta[2];
    DDPM_CHECK(ddpm_tensor_new(&gin[1], mw->ndim, mw->shape, mw->dtype, mw->device));
    if (nb) DDPM_CHECK(ddpm_tensor_new(&gin[2], mb->ndim, mb->shape, mb->dtype, mb->device));
    DDPM_CHECK(ddpm_ag_saved(n, 0, &xs));
    ddpm_call c = {.op = DDPM_OP_CONV2D_BWD_WEIGHT, .nin = 2, .nout = 2, .in = {gc, xs}, .out = {gin[1], gin[2]}};
    memcpy(c.i, n->i, 7 * sizeof(int64_t));
    DDPM_CHECK(ddpm_dispatch(&c));
  } else if (nb) { /* x was not saved: the bias gradient alone is a plain sum */
    DDPM_CHECK(ddpm_sum_dims(&gin[2], gc, 1u | 4u | 8u, 0));
  }
done:
  ddpm_tensor_release(gc);
  ddpm_tensor_release(xs);
  return st; /* on failure the engine releases whatever gin holds */
}
