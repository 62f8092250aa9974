/* conv2d.c: CPU convolution as im2col + one GEMM per image and group (bfloat16: conv2d_bf16.c), images spread over the
 * threads (each running single-threaded BLAS on its own column buffer, reused between calls);
 * 1x1 stride-1 unpadded convolutions skip im2col, since x[n] already is the [C, H*W] column
 * matrix.  Backward: gx = col2im(w^T gy), gw = sum_n gy[n] col(x[n])^T with per-thread partials.
 * The layout is NCHW throughout, so every GEMM writes its result in place (no transposes). */
#include "nn_cpu.h"
#include "conv2d_geom.h"
#include "conv_winograd.h"
#include "gemm_avx512.h"

#define R float
#define SUF(n) n##_f32
#include "conv2d_impl.h"
#undef R
#undef SUF
#define R double
#define SUF(n) n##_f64
#include "conv2d_impl.h"
#undef R
#undef SUF

#define F32(t) ((float *)((t) ? (void *)ddpm_ptr(t) : NULL))

/* 3x3, stride 1, padding 1, no dilation or groups, enough channels on both sides: the shape of
 * nearly every convolution of a UNet, done by Winograd F(2x2, 3x3) in float32 */
static bool winograd_ok(const conv_geom *g, int dtype) {
  return dtype == DDPM_FLOAT32 && g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->ph == 1 &&
         g->pw == 1 && g->dh == 1 && g->dw == 1 && g->G == 1 && g->Ho == g->H && g->Wo == g->W && g->C >= 8 &&
         g->O >= 8 && cpu_fast_kernels();
}
#define F64(t) ((double *)((t) ? (void *)ddpm_ptr(t) : NULL))
#define BF(t) ((uint16_t *)((t) ? (void *)ddpm_ptr(t) : NULL))

int cpu_CONV2D(ddpm_call *c) {
  ddpm_tensor *x = c->in[0], *w = c->in[1], *b = c->in[2], *y = c->out[0];
  if (x->dtype != DDPM_BFLOAT16) DDPM_TRY(cpu_nn_dtype("conv2d", x->dtype));
  conv_geom g;
  geom_of(&g, x, w, y, c->i);
  if (ddpm_tensor_numel(y) == 0) return DDPM_OK;
  if (g.K == 0) { /* no input channels: the output is the bias (or zero) */
    for (int64_t n = 0; n < g.N; n++)
      for (int64_t o = 0; o < g.O; o++)
        for (int64_t k = 0; k < g.OHW; k++) {
          int64_t e = (n * g.O + o) * g.OHW + k;
          double v = b ? ddpm_load_as_double(ddpm_ptr(b) + o * ddpm_dsize(b->dtype), b->dtype) : 0.0;
          ddpm_store_from_double(ddpm_ptr(y) + e * ddpm_dsize(y->dtype), y->dtype, v);
        }
    return DDPM_OK;
  }
  if (x->dtype == DDPM_BFLOAT16) return cpu_conv2d_fwd_bf16(&g, BF(x), BF(w), BF(b), BF(y));
  if (winograd_ok(&g, x->dtype))
    return cpu_winograd_conv_f32(g.N, g.C, g.H, g.W, g.O, F32(x), F32(w), false, F32(b), F32(y));
  if (x->dtype == DDPM_FLOAT32) return conv_forward_f32(&g, F32(x), F32(w), F32(b), F32(y));
  return conv_forward_f64(&g, F64(x), F64(w), F64(b), F64(y));
}

int cpu_CONV2D_BWD_INPUT(ddpm_call *c) {
  ddpm_tensor *gy = c->in[0], *w = c->in[1], *gx = c->out[0];
  if (gy->dtype != DDPM_BFLOAT16) DDPM_TRY(cpu_nn_dtype("conv2d backward", gy->dtype));
  conv_geom g;
  geom_of(&g, gx, w, gy, c->i);
  if (ddpm_tensor_numel(gx) == 0) return DDPM_OK;
  if (ddpm_tensor_numel(gy) == 0 || g.Og == 0 || g.K == 0) {
    memset(ddpm_ptr(gx), 0, (size_t)ddpm_tensor_numel(gx) * (size_t)ddpm_dsize(gx->dtype));
    return DDPM_OK;
  }
  if (gy->dtype == DDPM_BFLOAT16) return cpu_conv2d_bwd_input_bf16(&g, BF(gy), BF(w), BF(gx));
  if (winograd_ok(&g, gy->dtype))
    return cpu_winograd_conv_f32(g.N, g.O, g.H, g.W, g.C, F32(gy), F32(w), true, NULL, F32(gx));
  if (gy->dtype == DDPM_FLOAT32) return conv_backward_input_f32(&g, F32(gy), F32(w), F32(gx));
  return conv_backward_input_f64(&g, F64(gy), F64(w), F64(gx));
}

int cpu_CONV2D_BWD_WEIGHT(ddpm_call *c) {
  ddpm_tensor *gy = c->in[0], *x = c->in[1], *gw = c->out[0], *gb = c->out[1];
  if (gy->dtype != DDPM_BFLOAT16) DDPM_TRY(cpu_nn_dtype("conv2d backward", gy->dtype));
  conv_geom g;
  geom_of(&g, x, gw, gy, c->i);
  if (g.N == 0 || g.OHW == 0 || g.K == 0) { /* nothing flows: zero gradients */
    memset(ddpm_ptr(gw), 0, (size_t)ddpm_tensor_numel(gw) * (size_t)ddpm_dsize(gw->dtype));
    if (gb) memset(ddpm_ptr(gb), 0, (size_t)ddpm_tensor_numel(gb) * (size_t)ddpm_dsize(gb->dtype));
    if (g.K > 0 || !gb || g.N == 0 || g.OHW == 0) return DDPM_OK;
  }
  if (gy->dtype == DDPM_BFLOAT16) return cpu_conv2d_bwd_weight_bf16(&g, BF(gy), BF(x), g.K ? BF(gw) : NULL, BF(gb));
  if (g.K && winograd_ok(&g, gy->dtype) && cpu_winograd_grad_ok(g.H, g.W))
    return cpu_winograd_grad_f32(g.N, g.C, g.H, g.W, g.O, F32(x), F32(gy), F32(gw), F32(gb));
  if (gy->dtype == DDPM_FLOAT32) return conv_backward_weight_f32(&g, F32(gy), F32(x), g.K ? F32(gw) : NULL, F32(gb));
  return conv_backward_weight_f64(&g, F64(gy), F64(x), g.K ? F64(gw) : NULL, F64(gb));
}
