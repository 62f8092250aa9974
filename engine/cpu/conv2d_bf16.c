/* conv2d_bf16.c: bfloat16 convolutions on the CPU (autocast('cpu')): im2col in bfloat16 and the
 * bfloat16 GEMM (gemm_bf16.c) with float32 sums, the bias added in float32 and the result rounded
 * once.  No Winograd here: its input and output transforms would round to bfloat16 values that are
 * sums of several taps, multiplying the rounding error.  The column matrix is never stored: the
 * GEMM asks for its rows while it packs its B operand (conv_row; for stride-1 "same" convolutions
 * conv_pair_same writes the packed k-pairs straight from the image).  The input gradient of a
 * stride-1 convolution is the forward convolution of gy with the flipped kernel; other strides go
 * through float32 columns and col2im (overlapping taps add in float32).  The weight gradient sums
 * its images in float32 per thread before one rounding to the weight's dtype.  Images spread over
 * the threads as in conv2d.c. */
#include "conv2d_geom.h"
#include "gemm_avx512.h"
#include "bf16_convert.h"
#include "gemm_bf16.h"

#define R float
#define SUF(n) n##_f32
#include "conv2d_cols.h"
#undef R
#undef SUF

/* the column matrix of output rows [oh0, oh1) of one image's group xg [Cg, H, W] */
typedef struct {
  const conv_geom *g;
  const uint16_t *xg;
  int64_t oh0, oh1;
  const uint32_t *masks; /* conv_row_same: per tap, which of 32 output pixels see the image */
} conv_rows;

/* The common case, stride 1 and "same" size (the UNet's 3x3 pad 1), whole image in one block: row
 * (c, ki, kj) is the channel plane shifted by (ki - ph) rows and (kj - pw) columns, with the pixels
 * whose source lies outside zeroed: masked 32-lane loads (masked lanes never touch memory). */
#define SAME_MAX_WORDS 4096
static bool same_ok(const conv_geom *g, int64_t oh0, int64_t oh1) {
  return g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 && g->Ho == g->H && g->Wo == g->W && oh0 == 0 &&
         oh1 == g->Ho && g->kh * g->kw * ((g->HW + 31) / 32) <= SAME_MAX_WORDS && cpu_fast_kernels();
}

static void same_masks(const conv_geom *g, uint32_t *m) {
  const int64_t nw = (g->HW + 31) / 32;
  for (int64_t ki = 0; ki < g->kh; ki++)
    for (int64_t kj = 0; kj < g->kw; kj++) {
      uint32_t *mt = m + (ki * g->kw + kj) * nw;
      memset(mt, 0, sizeof(uint32_t) * (size_t)nw);
      for (int64_t p = 0; p < g->HW; p++) {
        int64_t ih = p / g->W + ki - g->ph, iw = p % g->W + kj - g->pw;
        if (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W) mt[p / 32] |= 1u << (p % 32);
      }
    }
}

DDPM_AVX512_BEGIN
static void conv_row_same(const void *vctx, int64_t r, uint16_t *d) {
  const conv_rows *cr = vctx;
  const conv_geom *g = cr->g;
  const int64_t khw = g->kh * g->kw, c = r / khw, tap = r % khw, ki = tap / g->kw, kj = tap % g->kw;
  const int64_t nw = (g->HW + 31) / 32, HW = g->HW;
  const uint16_t *src = cr->xg + c * HW + (ki - g->ph) * g->W + (kj - g->pw);
  const uint32_t *m = cr->masks + tap * nw;
  for (int64_t w = 0; w < nw; w++) {
    const int64_t p = 32 * w;
    __m512i v = _mm512_maskz_loadu_epi16((__mmask32)m[w], (const void *)(src + p));
    if (p + 32 <= HW) _mm512_storeu_si512((void *)(d + p), v);
    else _mm512_mask_storeu_epi16(d + p, (__mmask32)((1u << (HW - p)) - 1u), v);
  }
}

/* conv_row_same for rows k and k+1 at once, interleaved into k-pairs (the GEMM's packed B) */
static void conv_pair_same(const void *vctx, int64_t k, int nvalid, uint32_t *dst, int64_t sstride) {
  const conv_rows *cr = vctx;
  const conv_geom *g = cr->g;
  const int64_t khw = g->kh * g->kw, nw = (g->HW + 31) / 32, HW = g->HW;
  const uint16_t *src[2] = {NULL, NULL};
  const uint32_t *m[2] = {NULL, NULL};
  for (int e = 0; e < nvalid; e++) {
    const int64_t r = k + e, c = r / khw, tap = r % khw, ki = tap / g->kw, kj = tap % g->kw;
    src[e] = cr->xg + c * HW + (ki - g->ph) * g->W + (kj - g->pw);
    m[e] = cr->masks + tap * nw;
  }
  static const uint16_t lo_idx[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                      8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  const __m512i ilo = _mm512_loadu_si512((const void *)lo_idx), ihi = _mm512_add_epi16(ilo, _mm512_set1_epi16(16));
  for (int64_t w = 0; w < nw; w++) {
    const int64_t p = 32 * w;
    const __m512i a = _mm512_maskz_loadu_epi16((__mmask32)m[0][w], (const void *)(src[0] + p));
    const __m512i b = nvalid > 1 ? _mm512_maskz_loadu_epi16((__mmask32)m[1][w], (const void *)(src[1] + p))
                                 : _mm512_setzero_si512();
    _mm512_storeu_si512((void *)(dst + 2 * w * sstride), _mm512_permutex2var_epi16(a, ilo, b));
    if (p + 16 < HW) _mm512_storeu_si512((void *)(dst + (2 * w + 1) * sstride), _mm512_permutex2var_epi16(a, ihi, b));
  }
}
DDPM_AVX512_END

/* row r = (c, ki, kj) of the column matrix: d[(oh - oh0)*Wo + ow] = xg[c, oh*sh - ph + ki*dh,
 * ow*sw - pw + kj*dw], zero where that is padding (im2col of conv2d_cols.h, one row) */
static void conv_row(const void *vctx, int64_t r, uint16_t *d) {
  const conv_rows *cr = vctx;
  const conv_geom *g = cr->g;
  const int64_t khw = g->kh * g->kw, c = r / khw, ki = (r % khw) / g->kw, kj = r % g->kw;
  const int64_t Wo = g->Wo, W = g->W, oh0 = cr->oh0, oh1 = cr->oh1;
  int64_t r0, r1, lo, hi, xoff = kj * g->dw - g->pw;
  row_range(g, ki, &r0, &r1);
  r0 = r0 < oh0 ? oh0 : r0 > oh1 ? oh1 : r0;
  r1 = r1 > oh1 ? oh1 : r1 < r0 ? r0 : r1;
  col_range(g, xoff, &lo, &hi);
  d -= oh0 * Wo; /* indexed by absolute oh */
  memset(d + oh0 * Wo, 0, sizeof(uint16_t) * (size_t)((r0 - oh0) * Wo));
  memset(d + r1 * Wo, 0, sizeof(uint16_t) * (size_t)((oh1 - r1) * Wo));
  if (r1 <= r0) return;
  const uint16_t *src0 = cr->xg + (c * g->H + r0 * g->sh - g->ph + ki * g->dh) * W + xoff;
  if (g->sw == 1 && g->sh == 1 && Wo == W && hi > lo) { /* rows in lockstep: one copy, then the edges */
    memcpy(d + r0 * Wo + lo, src0 + lo, sizeof(uint16_t) * (size_t)((r1 - r0 - 1) * Wo + hi - lo));
    for (int64_t oh = r0; oh < r1; oh++) {
      uint16_t *e = d + oh * Wo;
      for (int64_t ow = 0; ow < lo; ow++) e[ow] = 0;
      for (int64_t ow = hi; ow < Wo; ow++) e[ow] = 0;
    }
    return;
  }
  for (int64_t oh = r0; oh < r1; oh++) {
    uint16_t *e = d + oh * Wo;
    const uint16_t *sr = src0 + (oh - r0) * g->sh * W;
    for (int64_t ow = 0; ow < lo; ow++) e[ow] = 0;
    if (g->sw == 1)
      for (int64_t ow = lo; ow < hi; ow++) e[ow] = sr[ow];
    else
      for (int64_t ow = lo; ow < hi; ow++) e[ow] = sr[ow * g->sw];
    for (int64_t ow = hi; ow < Wo; ow++) e[ow] = 0;
  }
}

/* y[n] = w (*) x[n] + bias (bias_f: float32 [O] or NULL); same_w: w was packed by this thread's
 * previous GEMM (an earlier image of this call, one group) */
static int fwd_image(const conv_geom *g, const uint16_t *x, const uint16_t *w, const float *bias_f, uint16_t *y,
                     int64_t n, bool same_w, const uint32_t *masks) {
  for (int64_t grp = 0; grp < g->G; grp++) {
    const uint16_t *xg = x + (n * g->C + grp * g->Cg) * g->HW, *wg = w + grp * g->Og * g->K;
    uint16_t *yg = y + (n * g->O + grp * g->Og) * g->OHW;
    const float *bm = bias_f ? bias_f + grp * g->Og : NULL;
    const int same = same_w && g->G == 1;
    if (g->direct) {
      cpu_gemm_bf16_args a = {g->Og, g->OHW, g->K, wg, g->K, 1, xg, g->OHW, 1, NULL, yg, g->OHW, 0, NULL, bm,
                              NULL, NULL, 0, same};
      DDPM_TRY(cpu_gemm_bf16(&a));
      continue;
    }
    for (int64_t oh0 = 0; oh0 < g->Ho; oh0 += g->rows) {
      int64_t oh1 = oh0 + g->rows < g->Ho ? oh0 + g->rows : g->Ho, nc = (oh1 - oh0) * g->Wo;
      conv_rows cr = {g, xg, oh0, oh1, masks};
      cpu_gemm_bf16_args a = {g->Og, nc, g->K, wg, g->K, 1, NULL, 0, 0, NULL, yg + oh0 * g->Wo, g->OHW, 0, NULL, bm,
                              masks && same_ok(g, oh0, oh1) ? conv_row_same : conv_row, &cr, 1, same,
                              masks && same_ok(g, oh0, oh1) ? conv_pair_same : NULL};
      DDPM_TRY(cpu_gemm_bf16(&a));
    }
  }
  return DDPM_OK;
}

/* gx[n] = w^T gy[n] (columns and col2im in float32 unless the conv is a plain GEMM) */
static int bwd_input_image(const conv_geom *g, const uint16_t *gy, const uint16_t *w, uint16_t *gx, int64_t n,
                           float *col, float *gxf, bool same_w) {
  const int same = same_w && g->G == 1;
  for (int64_t grp = 0; grp < g->G; grp++) {
    const uint16_t *gyg = gy + (n * g->O + grp * g->Og) * g->OHW, *wg = w + grp * g->Og * g->K;
    uint16_t *gxg = gx + (n * g->C + grp * g->Cg) * g->HW;
    if (g->direct) {
      cpu_gemm_bf16_args a = {g->K, g->OHW, g->Og, wg, 1, g->K, gyg, g->OHW, 1, NULL, gxg, g->OHW, 0, NULL, NULL,
                              NULL, NULL, 0, same};
      DDPM_TRY(cpu_gemm_bf16(&a));
      continue;
    }
    memset(gxf, 0, sizeof(float) * (size_t)(g->Cg * g->HW));
    for (int64_t oh0 = 0; oh0 < g->Ho; oh0 += g->rows) {
      int64_t oh1 = oh0 + g->rows < g->Ho ? oh0 + g->rows : g->Ho, nc = (oh1 - oh0) * g->Wo;
      cpu_gemm_bf16_args a = {g->K, nc, g->Og, wg, 1, g->K, gyg + oh0 * g->Wo, g->OHW, 1, col, NULL, nc, 0, NULL, NULL,
                              NULL, NULL, 0, same && oh0 == 0};
      DDPM_TRY(cpu_gemm_bf16(&a));
      col2im_f32(g, col, gxf, oh0, oh1);
    }
    cpu_f32_to_bf16(gxf, gxg, g->Cg * g->HW);
  }
  return DDPM_OK;
}

/* acc [O, K] (+)= gy[n] col(x[n])^T in float32; bacc[o] += the sum of gy[n, o] */
static int bwd_weight_image(const conv_geom *g, const uint16_t *gy, const uint16_t *x, float *acc, double *bacc,
                            int64_t n, bool first, const uint32_t *masks) {
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
        conv_rows cr = {g, xg, oh0, oh1, masks};
        cpu_gemm_bf16_args a = {g->Og, g->K, nc, gyg + oh0 * g->Wo, g->OHW, 1, NULL, 0, 0, ag, NULL, g->K,
                                !(first && oh0 == 0), NULL, NULL,
                                masks && same_ok(g, oh0, oh1) ? conv_row_same : conv_row, &cr, 0, 0};
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

/* no column buffer to bound here: one block of output rows per image keeps the GEMMs large and
 * the shifted-plane packing (same_ok) usable */
static void whole_image_rows(conv_geom *g) { g->rows = g->Ho > 0 ? g->Ho : 1; }

/* run one(ctx, n, first, s0, s1) for every image n, the images split over the threads when that
 * pays (cpu_nn_split); s0/s1 are per-thread scratch buffers of s0b/s1b bytes (NULL when 0); first
 * is true for a thread's first image.  Returns nonzero when a buffer or a call failed. */
typedef int (*image_fn)(void *ctx, int64_t n, bool first, void *s0, void *s1);
static int each_image(const conv_geom *g, image_fn one, void *ctx, size_t s0b, size_t s1b) {
  int failed = 0;
  bool split = cpu_nn_split(g->N);
#pragma omp parallel if (split)
  {
    void *s0 = s0b ? cpu_scratch(0, s0b) : NULL, *s1 = s1b ? cpu_scratch(1, s1b) : NULL;
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
      if (bad || (s0b && !s0) || (s1b && !s1) || one(ctx, n, n > lo, s0, s1)) {
#pragma omp atomic write
        failed = 1;
        break;
      }
    }
  }
  return failed;
}

typedef struct {
  const conv_geom *g;
  const uint16_t *x, *w;
  const float *bias_f;
  uint16_t *y;
  const uint32_t *masks;
} fwd_ctx;
static int fwd_one(void *vc, int64_t n, bool later, void *s0, void *s1) {
  (void)s0, (void)s1;
  fwd_ctx *c = vc;
  return fwd_image(c->g, c->x, c->w, c->bias_f, c->y, n, later, c->masks);
}

typedef struct {
  const conv_geom *g;
  const uint16_t *gy, *w;
  uint16_t *gx;
} bwd_ctx;
static int bwd_one(void *vc, int64_t n, bool later, void *col, void *gxf) {
  bwd_ctx *c = vc;
  return bwd_input_image(c->g, c->gy, c->w, c->gx, n, col, gxf, later);
}

int cpu_conv2d_fwd_bf16(const conv_geom *g0, const uint16_t *x, const uint16_t *w, const uint16_t *b, uint16_t *y) {
  conv_geom gw = *g0, *g = &gw;
  whole_image_rows(g);
  float *bias_f = NULL;
  if (b) { /* the bias joins the float32 sums, before the one rounding */
    bias_f = cpu_scratch(3, sizeof(float) * (size_t)g->O);
    if (!bias_f) return DDPM_FAIL(DDPM_ERR_OOM, "conv2d: out of memory for a bias of %lld floats", (long long)g->O);
    cpu_bf16_to_f32(b, bias_f, g->O);
  }
  uint32_t mbuf[SAME_MAX_WORDS], *masks = NULL;
  if (!g->direct && same_ok(g, 0, g->rows < g->Ho ? g->rows : g->Ho)) same_masks(g, masks = mbuf);
  fwd_ctx c = {g, x, w, bias_f, y, masks};
  int failed = each_image(g, fwd_one, &c, 0, 0);
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "conv2d: out of memory for bfloat16 packing buffers") : DDPM_OK;
}

/* With stride 1 and no dilation the input gradient is itself a convolution: gy padded by k-1-p
 * against the kernel flipped in space with in/out channels swapped.  That runs on the forward
 * path (packed on the fly, bfloat16 straight out of the GEMM) instead of columns and col2im. */
static bool bwd_as_conv_ok(const conv_geom *g) {
  return g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 && g->G == 1 && g->ph <= g->kh - 1 &&
         g->pw <= g->kw - 1 && !g->direct;
}

static int bwd_input_as_conv(const conv_geom *g, const uint16_t *gy, const uint16_t *w, uint16_t *gx) {
  const int64_t khw = g->kh * g->kw;
  /* scratch slot 3 is also the forward's bias buffer: safe, the forward below has no bias */
  uint16_t *wt = cpu_scratch(3, sizeof(uint16_t) * (size_t)(g->O * g->C * khw));
  if (!wt) return DDPM_FAIL(DDPM_ERR_OOM, "conv2d backward: out of memory for a flipped weight");
  for (int64_t o = 0; o < g->O; o++)
    for (int64_t c = 0; c < g->C; c++)
      for (int64_t t = 0; t < khw; t++) wt[(c * g->O + o) * khw + khw - 1 - t] = w[(o * g->C + c) * khw + t];
  conv_geom t = *g;
  t.C = g->O; t.H = g->Ho; t.W = g->Wo; t.O = g->C; t.Ho = g->H; t.Wo = g->W;
  t.ph = g->kh - 1 - g->ph; t.pw = g->kw - 1 - g->pw;
  t.Cg = t.C; t.Og = t.O; t.K = t.Cg * g->kh * g->kw;
  t.HW = t.H * t.W; t.OHW = t.Ho * t.Wo;
  t.direct = false;
  int64_t per_row = t.K * (t.Wo > 0 ? t.Wo : 1) * 4;
  t.rows = (int64_t)(1536 * 1024) / (per_row > 0 ? per_row : 1);
  if (t.rows < 1) t.rows = 1;
  if (t.rows > t.Ho) t.rows = t.Ho > 0 ? t.Ho : 1;
  return cpu_conv2d_fwd_bf16(&t, gy, wt, NULL, gx);
}

int cpu_conv2d_bwd_input_bf16(const conv_geom *g, const uint16_t *gy, const uint16_t *w, uint16_t *gx) {
  if (bwd_as_conv_ok(g)) return bwd_input_as_conv(g, gy, w, gx);
  size_t colb = col_bytes(g, sizeof(float)), gxb = g->direct ? 0 : sizeof(float) * (size_t)(g->Cg * g->HW);
  bwd_ctx c = {g, gy, w, gx};
  int failed = each_image(g, bwd_one, &c, colb, gxb);
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "conv2d backward: out of memory for bfloat16 column buffers") : DDPM_OK;
}

/* Each thread sums a fixed range of images into its own float32 partial; the partials are added
 * in thread order (deterministic for a given thread count) and rounded once. */
int cpu_conv2d_bwd_weight_bf16(const conv_geom *g0, const uint16_t *gy, const uint16_t *x, uint16_t *gw, uint16_t *gb) {
  conv_geom gl = *g0, *g = &gl;
  whole_image_rows(g);
  int64_t wn = g->O * g->K;
  uint32_t mbuf[SAME_MAX_WORDS], *masks = NULL;
  if (!g->direct && same_ok(g, 0, g->rows < g->Ho ? g->rows : g->Ho)) same_masks(g, masks = mbuf);
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
    float *acc = gw ? cpu_scratch(1, sizeof(float) * (size_t)wn) : NULL;
    double *bacc = gb ? cpu_scratch(2, sizeof(double) * (size_t)g->O) : NULL;
    if ((gw && !acc) || (gb && !bacc)) {
#pragma omp atomic write
      failed = 1;
    } else {
      part[t] = acc;
      bpart[t] = bacc;
      if (bacc) memset(bacc, 0, sizeof(double) * (size_t)g->O);
      if (acc && hi == lo) memset(acc, 0, sizeof(float) * (size_t)wn);
      for (int64_t n = lo; n < hi; n++)
        if (bwd_weight_image(g, gy, x, acc, bacc, n, n == lo, masks)) {
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
        cpu_f32_to_bf16(sum, gw + a, b - a);
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
