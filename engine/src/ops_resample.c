/* ops_resample.c: interpolate (nearest, nearest-exact, (bi/tri)linear) and pad (constant, reflect,
 * replicate, circular) as torch.nn.functional, with explicit backward ops.
 *
 * Kernel conventions (every backend implements exactly these; all tensors contiguous):
 *   INTERPOLATE      in[0] x [N, C, *in] (1 to 3 resized dims); out[0] y [N, C, *out];
 *                    i[0] mode (enum ddpm_interp_mode), i[1] align_corners;
 *                    f[0..2] PyTorch's per-dim "scales" (the user's scale_factor, 0 = none: in/out is used)
 *   INTERPOLATE_BWD  in[0] gy [N, C, *out]; out[0] gx [N, C, *in] (fully overwritten); i[], f[] as forward
 *   PAD              in[0] x (any dtype); out[0] y; i[0] mode (enum ddpm_pad_mode), i[1] k = number of padded
 *                    (trailing) dims, i[2 + 2j], i[3 + 2j] = (before, after) for dim ndim-1-j; f[0] value
 *   PAD_BWD          in[0] gy (padded shape); out[0] gx (input shape, fully overwritten, floating point);
 *                    i[] as PAD */
#include "nn_common.h"
#include <math.h>

/* ---- interpolate ------------------------------------------------------------------------------------- */
int ddpm_interpolate(ddpm_tensor **out, ddpm_tensor *x, int nsize, const int64_t *size, const double *scale_factor,
                     int mode, int align_corners) {
  const char *op = "interpolate";
  DDPM_TRY(ddpm_check_tensor(op, "input", x));
  DDPM_TRY(nn_need_float(op, "input", x));
  if (x->ndim < 3 || x->ndim > 5)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: expected a 3-D, 4-D or 5-D input [N, C, *spatial], got %s", op,
                     ddpm_fmt_tensor(x));
  if (nsize != x->ndim - 2 || !size)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: input %s has %d spatial dims, but %d output sizes were given", op,
                     ddpm_fmt_tensor(x), x->ndim - 2, nsize);
  if (mode < DDPM_INTERP_NEAREST || mode > DDPM_INTERP_LINEAR)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: unknown mode %d (expected nearest, nearest-exact or (bi/tri)linear)", op,
                     mode);
  int64_t shape[5] = {x->shape[0], x->shape[1], 1, 1, 1};
  for (int k = 0; k < nsize; k++) {
    if (size[k] < 1)
      return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: output sizes must be positive, got %s for input %s", op,
                       ddpm_fmt_shape(nsize, size), ddpm_fmt_tensor(x));
    if (x->shape[2 + k] < 1)
      return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: input %s has an empty spatial dim", op, ddpm_fmt_tensor(x));
    shape[2 + k] = size[k];
  }
  ddpm_tensor *xc = NULL, *y = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&xc, x));
  DDPM_CHECK(ddpm_tensor_new(&y, x->ndim, shape, x->dtype, x->device));
  {
    ddpm_call c = {.op = DDPM_OP_INTERPOLATE, .nin = 1, .nout = 1, .in = {xc}, .out = {y},
                   .i = {mode, align_corners ? 1 : 0}};
    for (int k = 0; k < nsize; k++) c.f[k] = scale_factor && scale_factor[k] > 0 ? scale_factor[k] : 0;
    DDPM_CHECK(ddpm_dispatch(&c));
    ddpm_node *n = ddpm_ag_begin(DDPM_OP_INTERPOLATE, 1, &x);
    if (n) {
      memcpy(n->i, c.i, 2 * sizeof(int64_t));
      memcpy(n->f, c.f, 3 * sizeof(double));
      DDPM_CHECK(nn_record(n, y, 0, NULL));
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

/* shared by both backward ops: gx = kernel(op, contiguous g) in input k's shape */
static int resample_backward(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin, int op, int ni, int nf) {
  ddpm_tensor *gc = NULL, *gx = NULL;
  const ddpm_meta *m = &n->in_meta[0];
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&gc, g));
  DDPM_CHECK(ddpm_tensor_new(&gx, m->ndim, m->shape, m->dtype, m->device));
  {
    ddpm_call c = {.op = op, .nin = 1, .nout = 1, .in = {gc}, .out = {gx}};
    memcpy(c.i, n->i, (size_t)ni * sizeof(int64_t));
    memcpy(c.f, n->f, (size_t)nf * sizeof(double));
    DDPM_CHECK(ddpm_dispatch(&c));
  }
  gin[0] = gx;
  gx = NULL;
done:
  ddpm_tensor_release(gc);
  ddpm_tensor_release(gx);
  return st;
}

int bw_INTERPOLATE(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  return resample_backward(n, g, gin, DDPM_OP_INTERPOLATE_BWD, 2, 3);
}

/* ---- pad ------------------------------------------------------------------------------------------------- */
int ddpm_pad(ddpm_tensor **out, ddpm_tensor *x, int npad, const int64_t *pad, int mode, double value) {
  const char *op = "pad";
  static const char *names[4] = {"constant", "reflect", "replicate", "circular"};
  DDPM_TRY(ddpm_check_tensor(op, "input", x));
  if (mode < DDPM_PAD_CONSTANT || mode > DDPM_PAD_CIRCULAR)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: unknown mode %d (expected constant, reflect, replicate or circular)", op,
                     mode);
  if (npad < 0 || npad % 2 || (npad && !pad))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: padding length must be even (pairs per dim), got %d values", op, npad);
  int k = npad / 2;
  if (k > x->ndim || k > 7)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: %d padding values pad %d dims, but input %s has only %d", op, npad, k,
                     ddpm_fmt_tensor(x), x->ndim);
  if (mode != DDPM_PAD_CONSTANT && !ddpm_is_float(x->dtype))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: %s padding needs a floating point input, got %s", op, names[mode],
                     ddpm_fmt_tensor(x));
  int64_t shape[DDPM_MAX_DIMS];
  memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
  for (int j = 0; j < k; j++) {
    int d = x->ndim - 1 - j;
    int64_t a = pad[2 * j], b = pad[2 * j + 1], sz = x->shape[d];
    if (mode != DDPM_PAD_CONSTANT) {
      if (a < 0 || b < 0)
        return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: %s padding must be non-negative, got (%lld, %lld) for dim %d", op,
                         names[mode], (long long)a, (long long)b, d);
      if (mode == DDPM_PAD_REFLECT && (a >= sz || b >= sz))
        return DDPM_FAIL(DDPM_ERR_ARGUMENT,
                         "%s: reflect padding (%lld, %lld) must be smaller than dim %d of input %s", op,
                         (long long)a, (long long)b, d, ddpm_fmt_tensor(x));
      if ((mode == DDPM_PAD_CIRCULAR && (a > sz || b > sz)) || sz == 0)
        return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: %s padding (%lld, %lld) does not fit dim %d of input %s", op,
                         names[mode], (long long)a, (long long)b, d, ddpm_fmt_tensor(x));
    }
    shape[d] = sz + a + b;
    if (shape[d] < 0)
      return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: padding (%lld, %lld) leaves dim %d of input %s with negative size", op,
                       (long long)a, (long long)b, d, ddpm_fmt_tensor(x));
  }
  ddpm_tensor *xc = NULL, *y = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&xc, x));
  DDPM_CHECK(ddpm_tensor_new(&y, x->ndim, shape, x->dtype, x->device));
  {
    ddpm_call c = {.op = DDPM_OP_PAD, .nin = 1, .nout = 1, .in = {xc}, .out = {y}, .i = {mode, k}, .f = {value}};
    for (int j = 0; j < 2 * k; j++) c.i[2 + j] = pad[j];
    DDPM_CHECK(ddpm_dispatch(&c));
    if (ddpm_is_float(x->dtype)) {
      ddpm_node *n = ddpm_ag_begin(DDPM_OP_PAD, 1, &x);
      if (n) {
        memcpy(n->i, c.i, sizeof(int64_t) * (size_t)(2 + 2 * k));
        DDPM_CHECK(nn_record(n, y, 0, NULL));
      }
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

int bw_PAD(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  return resample_backward(n, g, gin, DDPM_OP_PAD_BWD, (int)(2 + 2 * n->i[1]), 1);
}
