/* conv2d.c: CPU convolution as im2col + one GEMM per image and group, images spread over the
 * threads (each running single-threaded BLAS on its own column buffer, reused between calls);
 * 1x1 stride-1 unpadded convolutions skip im2col, since x[n] already is the [C, H*W] column
 * matrix.  Backward: gx = col2im(w^T gy), gw = sum_n gy[n] col(x[n])^T with per-thread partials.
 * The layout is NCHW throughout, so every GEMM writes its result in place (no transposes). */
#include "nn_cpu.h"
#include "conv_winograd.h"
#include "gemm_avx512.h"

typedef struct {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo, sh, sw, ph, pw, dh, dw, G, Cg, Og;
  int64_t K, HW, OHW; /* K = Cg*kh*kw: rows of the column matrix */
  int64_t rows;       /* output rows per column block (the whole image for the UNet's maps) */
  bool direct;        /* 1x1, stride 1, no padding: no im2col */
} conv_geom;

/* x [N,C,H,W] and w [O,Cg,kh,kw] give the geometry; i[] holds stride, padding, dilation, groups */
static void geom_of(conv_geom *g, const ddpm_tensor *x, const ddpm_tensor *w, const ddpm_tensor *y,
                    const int64_t *i) {
  g->N = x->shape[0]; g->C = x->shape[1]; g->H = x->shape[2]; g->W = x->shape[3];
  g->O = w->shape[0]; g->kh = w->shape[2]; g->kw = w->shape[3];
  g->Ho = y->shape[2]; g->Wo = y->shape[3];
  g->sh = i[0]; g->sw = i[1]; g->ph = i[2]; g->pw = i[3]; g->dh = i[4]; g->dw = i[5]; g->G = i[6];
  g->Cg = g->C / g->G; g->Og = g->O / g->G;
  g->K = g->Cg * g->kh * g->kw;
  g->HW = g->H * g->W;
  g->OHW = g->Ho * g->Wo;
  g->direct = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
  /* a column block stays within ~1.5 MB (of a 2 MB L2), so large images need no huge buffer */
  int64_t per_row = g->K * (g->Wo > 0 ? g->Wo : 1) * (x->dtype == DDPM_FLOAT64 ? 8 : 4);
  g->rows = (int64_t)(1536 * 1024) / (per_row > 0 ? per_row : 1);
  if (g->rows < 1) g->rows = 1;
  if (g->rows > g->Ho) g->rows = g->Ho > 0 ? g->Ho : 1;
}

/* Output columns [lo, hi) whose input column ow*sw + xoff lies inside [0, W). */
static inline void col_range(const conv_geom *g, int64_t xoff, int64_t *lo, int64_t *hi) {
  int64_t l = xoff >= 0 ? 0 : (-xoff + g->sw - 1) / g->sw;
  int64_t h = g->W - 1 - xoff < 0 ? 0 : (g->W - 1 - xoff) / g->sw + 1;
  if (h > g->Wo) h = g->Wo;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

/* Output rows [r0, r1) whose input row oh*sh - ph + ki*dh lies inside [0, H). */
static inline void row_range(const conv_geom *g, int64_t ki, int64_t *r0, int64_t *r1) {
  int64_t yoff = ki * g->dh - g->ph;
  int64_t l = yoff >= 0 ? 0 : (-yoff + g->sh - 1) / g->sh;
  int64_t h = g->H - 1 - yoff < 0 ? 0 : (g->H - 1 - yoff) / g->sh + 1;
  if (h > g->Ho) h = g->Ho;
  if (l > h) l = h;
  *r0 = l;
  *r1 = h;
}

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

int cpu_CONV2D(ddpm_call *c) {
  ddpm_tensor *x = c->in[0], *w = c->in[1], *b = c->in[2], *y = c->out[0];
  DDPM_TRY(cpu_nn_dtype("conv2d", x->dtype));
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
  if (winograd_ok(&g, x->dtype))
    return cpu_winograd_conv_f32(g.N, g.C, g.H, g.W, g.O, F32(x), F32(w), false, F32(b), F32(y));
  if (x->dtype == DDPM_FLOAT32) return conv_forward_f32(&g, F32(x), F32(w), F32(b), F32(y));
  return conv_forward_f64(&g, F64(x), F64(w), F64(b), F64(y));
}

int cpu_CONV2D_BWD_INPUT(ddpm_call *c) {
  ddpm_tensor *gy = c->in[0], *w = c->in[1], *gx = c->out[0];
  DDPM_TRY(cpu_nn_dtype("conv2d backward", gy->dtype));
  conv_geom g;
  geom_of(&g, gx, w, gy, c->i);
  if (ddpm_tensor_numel(gx) == 0) return DDPM_OK;
  if (ddpm_tensor_numel(gy) == 0 || g.Og == 0 || g.K == 0) {
    memset(ddpm_ptr(gx), 0, (size_t)ddpm_tensor_numel(gx) * (size_t)ddpm_dsize(gx->dtype));
    return DDPM_OK;
  }
  if (winograd_ok(&g, gy->dtype))
    return cpu_winograd_conv_f32(g.N, g.O, g.H, g.W, g.C, F32(gy), F32(w), true, NULL, F32(gx));
  if (gy->dtype == DDPM_FLOAT32) return conv_backward_input_f32(&g, F32(gy), F32(w), F32(gx));
  return conv_backward_input_f64(&g, F64(gy), F64(w), F64(gx));
}

int cpu_CONV2D_BWD_WEIGHT(ddpm_call *c) {
  ddpm_tensor *gy = c->in[0], *x = c->in[1], *gw = c->out[0], *gb = c->out[1];
  DDPM_TRY(cpu_nn_dtype("conv2d backward", gy->dtype));
  conv_geom g;
  geom_of(&g, x, gw, gy, c->i);
  if (g.N == 0 || g.OHW == 0 || g.K == 0) { /* nothing flows: zero gradients */
    memset(ddpm_ptr(gw), 0, (size_t)ddpm_tensor_numel(gw) * (size_t)ddpm_dsize(gw->dtype));
    if (gb) memset(ddpm_ptr(gb), 0, (size_t)ddpm_tensor_numel(gb) * (size_t)ddpm_dsize(gb->dtype));
    if (g.K > 0 || !gb || g.N == 0 || g.OHW == 0) return DDPM_OK;
  }
  if (g.K && winograd_ok(&g, gy->dtype) && cpu_winograd_grad_ok(g.H, g.W))
    return cpu_winograd_grad_f32(g.N, g.C, g.H, g.W, g.O, F32(x), F32(gy), F32(gw), F32(gb));
  if (gy->dtype == DDPM_FLOAT32) return conv_backward_weight_f32(&g, F32(gy), F32(x), g.K ? F32(gw) : NULL, F32(gb));
  return conv_backward_weight_f64(&g, F64(gy), F64(x), g.K ? F64(gw) : NULL, F64(gb));
}
