/* conv2d_bf16.c: bfloat16 convolutions on the CPU (autocast('cpu')): im2col in bfloat16 and the
 * bfloat16 GEMM (gemm_bf16.c) with float32 sums, the bias added in float32 and the result rounded
 * once.  No Winograd here: its input and output transforms would round to bfloat16 values that are
 * sums of several taps, multiplying the rounding error.  The input gradient goes through float32
 * columns and col2im (overlapping taps add in float32); the weight gradient sums its images in
 * float32 per thread before one rounding to the weight's dtype.  Images spread over the threads
 * as in conv2d.c. */
#include "conv2d_geom.h"
#include "gemm_bf16.h"

#define R uint16_t
#define SUF(n) n##_bf16
#include "conv2d_cols.h"
#undef R
#undef SUF
#define R float
#define SUF(n) n##_f32
#include "conv2d_cols.h"
#undef R
#undef SUF

/* y[n] = w (*) x[n] + bias (bias_f: float32 [O] or NULL) */
static int fwd_image(const conv_geom *g, const uint16_t *x, const uint16_t *w, const float *bias_f, uint16_t *y,
                     int64_t n, uint16_t *col) {
  for (int64_t grp = 0; grp < g->G; grp++) {
    const uint16_t *xg = x + (n * g->C + grp * g->Cg) * g->HW, *wg = w + grp * g->Og * g->K;
    uint16_t *yg = y + (n * g->O + grp * g->Og) * g->OHW;
    const float *bm = bias_f ? bias_f + grp * g->Og : NULL;
    if (g->direct) {
      cpu_gemm_bf16_args a = {g->Og, g->OHW, g->K, wg, g->K, 1, xg, g->OHW, 1, NULL, yg, g->OHW, 0, NULL, bm};
      DDPM_TRY(cpu_gemm_bf16(&a));
      continue;
    }
    for (int64_t oh0 = 0; oh0 < g->Ho; oh0 += g->rows) {
      int64_t oh1 = oh0 + g->rows < g->Ho ? oh0 + g->rows : g->Ho, nc = (oh1 - oh0) * g->Wo;
      im2col_bf16(g, xg, col, oh0, oh1);
      cpu_gemm_bf16_args a = {g->Og, nc, g->K, wg, g->K, 1, col, nc, 1, NULL, yg + oh0 * g->Wo, g->OHW, 0, NULL, bm};
      DDPM_TRY(cpu_gemm_bf16(&a));
    }
  }
  return DDPM_OK;
}

/* gx[n] = w^T gy[n] (columns and col2im in float32 unless the conv is a plain GEMM) */
static int bwd_input_image(const conv_geom *g, const uint16_t *gy, const uint16_t *w, uint16_t *gx, int64_t n,
                           float *col, float *gxf) {
  for (int64_t grp = 0; grp < g->G; grp++) {
    const uint16_t *gyg = gy + (n * g->O + grp * g->Og) * g->OHW, *wg = w + grp * g->Og * g->K;
    uint16_t *gxg = gx + (n * g->C + grp * g->Cg) * g->HW;
    if (g->direct) {
      cpu_gemm_bf16_args a = {g->K, g->OHW, g->Og, wg, 1, g->K, gyg, g->OHW, 1, NULL, gxg, g->OHW, 0, NULL, NULL};
      DDPM_TRY(cpu_gemm_bf16(&a));
      continue;
    }
    memset(gxf, 0, sizeof(float) * (size_t)(g->Cg * g->HW));
    for (int64_t oh0 = 0; oh0 < g->Ho; oh0 += g->rows) {
      int64_t oh1 = oh0 + g->rows < g->Ho ? oh0 + g->rows : g->Ho, nc = (oh1 - oh0) * g->Wo;
      cpu_gemm_bf16_args a = {g->K, nc, g->Og, wg, 1, g->K, gyg + oh0 * g->Wo, g->OHW, 1, col, NULL, nc, 0, NULL, NULL};
      DDPM_TRY(cpu_gemm_bf16(&a));
      col2im_f32(g, col, gxf, oh0, oh1);
    }
    cpu_f32_to_bf16_row(gxf, gxg, g->Cg * g->HW);
  }
  return DDPM_OK;
}

/* acc [O, K] (+)= gy[n] col(x[n])^T in float32; bacc[o] += the sum of gy[n, o] */
static int bwd_weight_image(const conv_geom *g, const uint16_t *gy, const uint16_t *x, float *acc, double *bacc,
                            int64_t n, uint16_t *col, bool first) {
  for (int64_t grp = 0; grp < g->G; grp++) {
    const uint16_t *gyg = gy + (n * g->O + grp * g->Og) * g->OHW;
    float *ag = acc ? acc + grp * g->Og * g->K : NULL;
    const uint16_t *xg = x + (n * g->C + grp * g->Cg) * g->HW;
    if (ag && g->direct) {
      cpu_gemm_bf16_args a = {g->Og, g->K, g->OHW, gyg, g->OHW, 1, xg, 1, g->HW, ag, NULL, g->K, !first, NULL, NULL};
      DDPM_TRY(cpu_gemm_bf16(&a));
    } else if (ag) {
      for (int64_t oh0 = 0; oh0 < g->Ho; oh0 += g->rows) {
        int64_t oh1 = oh0 + g->rows < g->Ho ? oh0 + g->rows : g->Ho, nc = (oh1 - oh0) * g->Wo;
        im2col_bf16(g, xg, col, oh0, oh1);
        cpu_gemm_bf16_args a = {g->Og, g->K, nc, gyg + oh0 * g->Wo, g->OHW, 1, col, 1, nc, ag, NULL, g->K,
                                !(first && oh0 == 0), NULL, NULL};
        DDPM_TRY(cpu_gemm_bf16(&a));
      }
    }
    if (bacc)
      for (int64_t o = 0; o < g->Og; o++) {
        const uint16_t *r = gyg + o * g->OHW;
        float sum = 0;
        for (int64_t k = 0; k < g->OHW; k++) sum += ddpm_bf16_to_f32(r[k]);
        bacc[grp * g->Og + o] += (double)sum;
      }
  }
  return DDPM_OK;
}

static size_t col_bytes(const conv_geom *g, size_t elem) {
  return g->direct ? 0 : elem * (size_t)(g->K * g->rows * g->Wo);
}

int cpu_conv2d_fwd_bf16(const conv_geom *g, const uint16_t *x, const uint16_t *w, const uint16_t *b, uint16_t *y) {
  float *bias_f = NULL;
  if (b) { /* the bias joins the float32 sums, before the one rounding */
    bias_f = cpu_scratch(3, sizeof(float) * (size_t)g->O);
    if (!bias_f) return DDPM_FAIL(DDPM_ERR_OOM, "conv2d: out of memory for a bias of %lld floats", (long long)g->O);
    cpu_bf16_to_f32_row(b, bias_f, g->O);
  }
  size_t colb = col_bytes(g, sizeof(uint16_t));
  int failed = 0;
  bool split = cpu_nn_split(g->N);
#pragma omp parallel if (split)
  {
    uint16_t *col = colb ? cpu_scratch(0, colb) : NULL;
    int64_t lo = 0, hi = g->N;
    if (split) {
      int t = omp_get_thread_num(), T = omp_get_num_threads();
      lo = g->N * t / T;
      hi = g->N * (t + 1) / T;
    }
    for (int64_t n = lo; n < hi; n++) {
      int bad;
#pragma omp atomic read
      bad = failed;
      if (bad || (colb && !col) || fwd_image(g, x, w, bias_f, y, n, col)) {
#pragma omp atomic write
        failed = 1;
        break;
      }
    }
  }
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "conv2d: out of memory for bfloat16 column or packing buffers") : DDPM_OK;
}

int cpu_conv2d_bwd_input_bf16(const conv_geom *g, const uint16_t *gy, const uint16_t *w, uint16_t *gx) {
  size_t colb = col_bytes(g, sizeof(float)), gxb = g->direct ? 0 : sizeof(float) * (size_t)(g->Cg * g->HW);
  int failed = 0;
  bool split = cpu_nn_split(g->N);
#pragma omp parallel if (split)
  {
    float *col = colb ? cpu_scratch(0, colb) : NULL, *gxf = gxb ? cpu_scratch(1, gxb) : NULL;
    int64_t lo = 0, hi = g->N;
    if (split) {
      int t = omp_get_thread_num(), T = omp_get_num_threads();
      lo = g->N * t / T;
      hi = g->N * (t + 1) / T;
    }
    for (int64_t n = lo; n < hi; n++) {
      int bad;
#pragma omp atomic read
      bad = failed;
      if (bad || (colb && !col) || (gxb && !gxf) || bwd_input_image(g, gy, w, gx, n, col, gxf)) {
#pragma omp atomic write
        failed = 1;
        break;
      }
    }
  }
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "conv2d backward: out of memory for bfloat16 column buffers") : DDPM_OK;
}

/* Each thread sums a fixed range of images into its own float32 partial; the partials are added
 * in thread order (deterministic for a given thread count) and rounded once. */
int cpu_conv2d_bwd_weight_bf16(const conv_geom *g, const uint16_t *gy, const uint16_t *x, uint16_t *gw, uint16_t *gb) {
  size_t colb = col_bytes(g, sizeof(uint16_t));
  int64_t wn = g->O * g->K;
  int failed = 0;
  int nt = cpu_nn_split(g->N) ? omp_get_max_threads() : 1;
  if (nt > g->N) nt = (int)g->N;
  if (nt > 64) nt = 64;
  if (nt < 1) nt = 1;
  float *part[64] = {0};
  double *bpart[64] = {0};
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    int64_t lo = g->N * t / T, hi = g->N * (t + 1) / T;
    uint16_t *col = colb && gw ? cpu_scratch(0, colb) : NULL;
    float *acc = gw ? cpu_scratch(1, sizeof(float) * (size_t)wn) : NULL;
    double *bacc = gb ? cpu_scratch(2, sizeof(double) * (size_t)g->O) : NULL;
    if ((colb && gw && !col) || (gw && !acc) || (gb && !bacc)) {
#pragma omp atomic write
      failed = 1;
    } else {
      part[t] = acc;
      bpart[t] = bacc;
      if (bacc) memset(bacc, 0, sizeof(double) * (size_t)g->O);
      if (acc && hi == lo) memset(acc, 0, sizeof(float) * (size_t)wn);
      for (int64_t n = lo; n < hi; n++)
        if (bwd_weight_image(g, gy, x, acc, bacc, n, col, n == lo)) {
#pragma omp atomic write
          failed = 1;
          break;
        }
    }
#pragma omp barrier
    int bad;
#pragma omp atomic read
    bad = failed;
    if (!bad) {
      int64_t a = wn * t / T, b = wn * (t + 1) / T;
      if (gw && a < b) {
        float *sum = part[0] + a; /* thread 0's partial collects the others over this slice */
        for (int k = 1; k < T; k++)
          for (int64_t e = 0; e < b - a; e++) sum[e] += part[k][a + e];
        cpu_f32_to_bf16_row(sum, gw + a, b - a);
      }
      if (gb && t == 0)
        for (int64_t o = 0; o < g->O; o++) {
          double s = 0;
          for (int k = 0; k < T; k++) s += bpart[k][o];
          gb[o] = ddpm_f32_to_bf16((float)s);
        }
    }
  }
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "conv2d backward: out of memory for bfloat16 weight-gradient buffers")
                : DDPM_OK;
}
