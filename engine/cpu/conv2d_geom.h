/* conv2d_geom.h: the geometry of a CPU convolution (conv2d.c and its bfloat16 twin conv2d_bf16.c)
 * and which output rows and columns a kernel tap sees inside the image. */
#ifndef DDPM_CONV2D_GEOM_H
#define DDPM_CONV2D_GEOM_H
#include "nn_cpu.h"

typedef struct {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo, sh, sw, ph, pw, dh, dw, G, Cg, Og;
  int64_t K, HW, OHW; /* K = Cg*kh*kw: rows of the column matrix */
  int64_t rows;       /* output rows per column block (the whole image for the UNet's maps) */
  bool direct;        /* 1x1, stride 1, no padding: no im2col */
} conv_geom;

/* x [N,C,H,W] and w [O,Cg,kh,kw] give the geometry; i[] holds stride, padding, dilation, groups */
static inline void geom_of(conv_geom *g, const ddpm_tensor *x, const ddpm_tensor *w, const ddpm_tensor *y,
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

/* bfloat16 convolutions (conv2d_bf16.c): im2col + the bfloat16 GEMM, float32 sums, one rounding */
DDPM_INTERNAL int cpu_conv2d_fwd_bf16(const conv_geom *g, const uint16_t *x, const uint16_t *w, const uint16_t *b,
                                      uint16_t *y);
DDPM_INTERNAL int cpu_conv2d_bwd_input_bf16(const conv_geom *g, const uint16_t *gy, const uint16_t *w, uint16_t *gx);
DDPM_INTERNAL int cpu_conv2d_bwd_weight_bf16(const conv_geom *g, const uint16_t *gy, const uint16_t *x, uint16_t *gw,
                                             uint16_t *gb);
#endif
