/* conv_winograd.c: 3x3 stride-1 "same" float32 convolutions by Winograd F(2x2, 3x3), for the
 * forward pass and the input gradient (a 3x3 convolution with the kernel flipped and its channel
 * axes swapped).  Each 2x2 output tile comes from a 4x4 input tile:
 *     Y = A^T [ sum_c (G g_oc G^T) (.) (B^T d_c B) ] A,
 * so the 9 multiply-adds per output and input channel of a direct convolution become 4: the
 * channel sums are 16 independent GEMMs (one per position xi of the 4x4 transformed tile),
 * M_xi[o, tile] = sum_c U_xi[o, c] V_xi[c, tile], on AVX-512 micro-kernels.  The transforms only
 * add and subtract (G has halves), so the float32 error stays that of a direct convolution with
 * 1/9 of the summation length (measured against float64 in tests/c/test_nn_conv.c).
 * Layout: NCHW in and out, no padded copies.  Tiles are numbered image by image, row by row; a
 * thread takes a block of TB tiles at a time (dynamic schedule: a preempted thread leaves its
 * blocks to the other), transforms their input into V[16][C][TB], runs the 16 GEMMs into
 * M[16][O][TB] and transforms back into the output, so V and M stay in its L2 and nothing is
 * allocated in steady state (per-thread scratch). */
#include "conv_winograd.h"
#include "gemm_avx512.h"
#include "nn_cpu.h"

#define SEG 8 /* tiles per row segment: one 16-lane vector of input or output columns */

typedef struct {
  int64_t N, C, H, W, O, Op; /* Op: O rounded up to the 8-row panels of U */
  int64_t th, tw, tpi, T, TB, nblk;
} wg_geom;

static void wg_init(wg_geom *g, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int nthreads) {
  g->N = N; g->C = C; g->H = H; g->W = W; g->O = O;
  g->Op = (O + 7) / 8 * 8;
  g->th = (H + 1) / 2;
  g->tw = (W + 1) / 2;
  g->tpi = g->th * g->tw;
  g->T = N * g->tpi;
  /* V and M of one block within ~1.25 MB of a 2 MB L2; at least ~4 blocks per thread when the
   * batch is small, so the dynamic schedule can balance */
  int64_t tb = (int64_t)(1280 * 1024) / (16 * 4 * (C + O));
  int64_t per = g->T / (4 * (nthreads > 0 ? nthreads : 1));
  if (per < tb) tb = per;
  tb = tb / 32 * 32;
  if (tb < 32) tb = 32;
  if (tb > 256) tb = 256;
  g->TB = tb;
  g->nblk = (g->T + tb - 1) / tb;
}

/* the segment of tile t: image n, tile row ty, first tile column tx0, length L (<= SEG) */
static inline int64_t wg_segment(const wg_geom *g, int64_t t, int64_t end, int64_t *n, int64_t *ty, int64_t *tx0) {
  *n = t / g->tpi;
  int64_t r = t % g->tpi;
  *ty = r / g->tw;
  *tx0 = r % g->tw;
  int64_t L = g->tw - *tx0;
  if (L > end - t) L = end - t;
  if (L > SEG) L = SEG;
  return L;
}

DDPM_AVX512_BEGIN

/* V[xi][c][col..col+L) = B^T d B for a segment of L <= 8 tiles, B^T = [1 0 -1 0; 0 1 1 0;
 * 0 -1 1 0; 0 1 0 -1].  The segment reads input columns x0 = 2 tx0 - 1 .. x0 + 2L + 1 of 4 rows:
 * 16 lanes from x0 in one masked load (lanes outside the image read as 0, without touching
 * memory) and 2 more in a second; the vertical transform runs on whole rows, the horizontal one
 * picks each tile's 4 columns with lane permutes. */
static void wg_input_segment(const wg_geom *g, const float *x, int64_t n, int64_t ty, int64_t tx0, int64_t L,
                             int64_t col, float *V) {
  const int64_t C = g->C, H = g->H, W = g->W, TB = g->TB, plane = C * TB;
  const int64_t x0 = 2 * tx0 - 1;
  __mmask16 ma = 0, mb = 0, ms = (__mmask16)((1u << L) - 1u);
  for (int k = 0; k < 16; k++)
    if (x0 + k >= 0 && x0 + k < W) ma |= (__mmask16)(1u << k);
  for (int k = 0; k < 2; k++)
    if (x0 + 16 + k < W) mb |= (__mmask16)(1u << k);
  const __m512i ia = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i ib = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i ie = _mm512_setr_epi32(2, 4, 6, 8, 10, 12, 14, 16, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i iff = _mm512_setr_epi32(3, 5, 7, 9, 11, 13, 15, 17, 0, 0, 0, 0, 0, 0, 0, 0);
  bool rowok[4];
  for (int i = 0; i < 4; i++) rowok[i] = 2 * ty - 1 + i >= 0 && 2 * ty - 1 + i < H;
  for (int64_t c = 0; c < C; c++) {
    const float *base = x + ((n * C + c) * H + 2 * ty - 1) * W + x0;
    __m512 da[4], db[4];
    for (int i = 0; i < 4; i++) {
      if (rowok[i]) {
        da[i] = _mm512_maskz_loadu_ps(ma, base + i * W);
        db[i] = _mm512_maskz_loadu_ps(mb, base + i * W + 16);
      } else {
        da[i] = db[i] = _mm512_setzero_ps();
      }
    }
    __m512 va[4] = {_mm512_sub_ps(da[0], da[2]), _mm512_add_ps(da[1], da[2]), _mm512_sub_ps(da[2], da[1]),
                    _mm512_sub_ps(da[1], da[3])};
    __m512 vb[4] = {_mm512_sub_ps(db[0], db[2]), _mm512_add_ps(db[1], db[2]), _mm512_sub_ps(db[2], db[1]),
                    _mm512_sub_ps(db[1], db[3])};
    float *Vc = V + c * TB + col;
    for (int i = 0; i < 4; i++) {
      __m512 a = _mm512_permutex2var_ps(va[i], ia, vb[i]), b = _mm512_permutex2var_ps(va[i], ib, vb[i]);
      __m512 e = _mm512_permutex2var_ps(va[i], ie, vb[i]), f = _mm512_permutex2var_ps(va[i], iff, vb[i]);
      _mm512_mask_storeu_ps(Vc + (4 * i + 0) * plane, ms, _mm512_sub_ps(a, e));
      _mm512_mask_storeu_ps(Vc + (4 * i + 1) * plane, ms, _mm512_add_ps(b, e));
      _mm512_mask_storeu_ps(Vc + (4 * i + 2) * plane, ms, _mm512_sub_ps(e, b));
      _mm512_mask_storeu_ps(Vc + (4 * i + 3) * plane, ms, _mm512_sub_ps(b, f));
    }
  }
}

/* y tile rows from M: Y = A^T m A + bias, A^T = [1 1 1 0; 0 1 -1 -1], for a segment of L <= 8
 * tiles; the two output columns of each tile are interleaved by one permute per output row. */
static void wg_output_segment(const wg_geom *g, const float *M, const float *bias, int64_t n, int64_t ty,
                              int64_t tx0, int64_t L, int64_t col, float *y) {
  const int64_t O = g->O, H = g->H, W = g->W, TB = g->TB, plane = O * TB;
  const int64_t y0 = 2 * ty, xs = 2 * tx0;
  const int64_t wcols = W - xs < 2 * L ? W - xs : 2 * L;
  const __mmask16 mw = (__mmask16)((1u << wcols) - 1u), ml = (__mmask16)((1u << L) - 1u);
  const bool row1 = y0 + 1 < H;
  const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  for (int64_t o = 0; o < O; o++) {
    const float *m = M + o * TB + col;
    const __m512 bo = _mm512_set1_ps(bias ? bias[o] : 0.0f);
    __m512 s0[4], s1[4];
    for (int j = 0; j < 4; j++) {
      __m512 m0 = _mm512_maskz_loadu_ps(ml, m + (0 + j) * plane), m1 = _mm512_maskz_loadu_ps(ml, m + (4 + j) * plane);
      __m512 m2 = _mm512_maskz_loadu_ps(ml, m + (8 + j) * plane), m3 = _mm512_maskz_loadu_ps(ml, m + (12 + j) * plane);
      s0[j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
      s1[j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
    }
    __m512 y00 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0[0], s0[1]), s0[2]), bo);
    __m512 y01 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s0[1], s0[2]), s0[3]), bo);
    float *yo = y + ((n * O + o) * H + y0) * W + xs;
    _mm512_mask_storeu_ps(yo, mw, _mm512_permutex2var_ps(y00, il, y01));
    if (row1) {
      __m512 y10 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s1[0], s1[1]), s1[2]), bo);
      __m512 y11 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s1[1], s1[2]), s1[3]), bo);
      _mm512_mask_storeu_ps(yo + W, mw, _mm512_permutex2var_ps(y10, il, y11));
    }
  }
}

/* Whole 8x8 planes: the 16 tiles of an image are one vector.  Rows come in pairs per register;
 * the 4 input rows of tile rows (0, 1) and (2, 3) are rearranged by 128-bit lane shuffles, then
 * each horizontal column pick takes 8 lanes from each pair. */
static void wg_input_plane8(const wg_geom *g, const float *x, int64_t n, int64_t col, float *V) {
  const int64_t C = g->C, TB = g->TB, plane = C * TB;
  const __m512i ia = _mm512_setr_epi32(0, 1, 3, 5, 0, 9, 11, 13, 0, 17, 19, 21, 0, 25, 27, 29);
  const __m512i ib = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i ie = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i iff = _mm512_setr_epi32(2, 4, 6, 0, 10, 12, 14, 0, 18, 20, 22, 0, 26, 28, 30, 0);
  const __mmask16 ma = 0xEEEE, mf = 0x7777;
  for (int64_t c = 0; c < C; c++) {
    const float *p = x + (n * C + c) * 64;
    __m512 P0 = _mm512_loadu_ps(p), P1 = _mm512_loadu_ps(p + 16), P2 = _mm512_loadu_ps(p + 32),
           P3 = _mm512_loadu_ps(p + 48);
    /* d_i of tile rows (0 | 1) and (2 | 3): rows 2ty - 1 + i */
    __m512 d0 = _mm512_maskz_mov_ps(0xFF00, P0), d1 = _mm512_shuffle_f32x4(P0, P1, 0x44);
    __m512 d2 = _mm512_shuffle_f32x4(P0, P1, 0xEE), d3 = _mm512_shuffle_f32x4(P1, P2, 0x44);
    __m512 e0 = _mm512_shuffle_f32x4(P1, P2, 0xEE), e1 = _mm512_shuffle_f32x4(P2, P3, 0x44);
    __m512 e2 = _mm512_shuffle_f32x4(P2, P3, 0xEE), e3 = _mm512_maskz_mov_ps(0x00FF, P3);
    __m512 va[4] = {_mm512_sub_ps(d0, d2), _mm512_add_ps(d1, d2), _mm512_sub_ps(d2, d1), _mm512_sub_ps(d1, d3)};
    __m512 vb[4] = {_mm512_sub_ps(e0, e2), _mm512_add_ps(e1, e2), _mm512_sub_ps(e2, e1), _mm512_sub_ps(e1, e3)};
    float *Vc = V + c * TB + col;
    for (int i = 0; i < 4; i++) {
      __m512 a = _mm512_maskz_permutex2var_ps(ma, va[i], ia, vb[i]), b = _mm512_permutex2var_ps(va[i], ib, vb[i]);
      __m512 e = _mm512_permutex2var_ps(va[i], ie, vb[i]), f = _mm512_maskz_permutex2var_ps(mf, va[i], iff, vb[i]);
      _mm512_storeu_ps(Vc + (4 * i + 0) * plane, _mm512_sub_ps(a, e));
      _mm512_storeu_ps(Vc + (4 * i + 1) * plane, _mm512_add_ps(b, e));
      _mm512_storeu_ps(Vc + (4 * i + 2) * plane, _mm512_sub_ps(e, b));
      _mm512_storeu_ps(Vc + (4 * i + 3) * plane, _mm512_sub_ps(b, f));
    }
  }
}

/* 16-wide images: two tile rows (16 tiles) per vector, one register per input row. */
static void wg_input_rows16(const wg_geom *g, const float *x, int64_t n, int64_t ty, int64_t col, float *V) {
  const int64_t C = g->C, H = g->H, TB = g->TB, plane = C * TB;
  const __m512i ia = _mm512_setr_epi32(0, 1, 3, 5, 7, 9, 11, 13, 0, 17, 19, 21, 23, 25, 27, 29);
  const __m512i ib = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i ie = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i iff = _mm512_setr_epi32(2, 4, 6, 8, 10, 12, 14, 0, 18, 20, 22, 24, 26, 28, 30, 0);
  const __mmask16 ma = 0xFEFE, mf = 0x7F7F;
  bool ok[6];
  for (int r = 0; r < 6; r++) ok[r] = 2 * ty - 1 + r >= 0 && 2 * ty - 1 + r < H;
  for (int64_t c = 0; c < C; c++) {
    const float *p = x + ((n * C + c) * H + 2 * ty - 1) * 16;
    __m512 r[6];
    for (int k = 0; k < 6; k++) r[k] = ok[k] ? _mm512_loadu_ps(p + 16 * k) : _mm512_setzero_ps();
    __m512 va[4] = {_mm512_sub_ps(r[0], r[2]), _mm512_add_ps(r[1], r[2]), _mm512_sub_ps(r[2], r[1]),
                    _mm512_sub_ps(r[1], r[3])};
    __m512 vb[4] = {_mm512_sub_ps(r[2], r[4]), _mm512_add_ps(r[3], r[4]), _mm512_sub_ps(r[4], r[3]),
                    _mm512_sub_ps(r[3], r[5])};
    float *Vc = V + c * TB + col;
    for (int i = 0; i < 4; i++) {
      __m512 a = _mm512_maskz_permutex2var_ps(ma, va[i], ia, vb[i]), b = _mm512_permutex2var_ps(va[i], ib, vb[i]);
      __m512 e = _mm512_permutex2var_ps(va[i], ie, vb[i]), f = _mm512_maskz_permutex2var_ps(mf, va[i], iff, vb[i]);
      _mm512_storeu_ps(Vc + (4 * i + 0) * plane, _mm512_sub_ps(a, e));
      _mm512_storeu_ps(Vc + (4 * i + 1) * plane, _mm512_add_ps(b, e));
      _mm512_storeu_ps(Vc + (4 * i + 2) * plane, _mm512_sub_ps(e, b));
      _mm512_storeu_ps(Vc + (4 * i + 3) * plane, _mm512_sub_ps(b, f));
    }
  }
}

/* Y = A^T m A + bias for 16 tiles (one vector per m_xi); out4 receives the four output vectors
 * y00, y01, y10, y11 (tile lanes). */
static inline __attribute__((always_inline)) void wg_out16(const float *m, int64_t plane, __m512 bo, __m512 *y) {
  __m512 s0[4], s1[4];
  for (int j = 0; j < 4; j++) {
    __m512 m0 = _mm512_loadu_ps(m + (0 + j) * plane), m1 = _mm512_loadu_ps(m + (4 + j) * plane);
    __m512 m2 = _mm512_loadu_ps(m + (8 + j) * plane), m3 = _mm512_loadu_ps(m + (12 + j) * plane);
    s0[j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
    s1[j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
  }
  y[0] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0[0], s0[1]), s0[2]), bo);
  y[1] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s0[1], s0[2]), s0[3]), bo);
  y[2] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s1[0], s1[1]), s1[2]), bo);
  y[3] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s1[1], s1[2]), s1[3]), bo);
}

/* an 8x8 output plane from the 16 tiles of one image */
static void wg_output_plane8(const wg_geom *g, const float *M, const float *bias, int64_t n, int64_t col, float *y) {
  const int64_t O = g->O, TB = g->TB, plane = O * TB;
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (int64_t o = 0; o < O; o++) {
    __m512 v[4];
    wg_out16(M + o * TB + col, plane, _mm512_set1_ps(bias ? bias[o] : 0.0f), v);
    /* A: rows 0 | 2, A2: rows 4 | 6, B: rows 1 | 3, B2: rows 5 | 7 */
    __m512 A = _mm512_permutex2var_ps(v[0], lo, v[1]), A2 = _mm512_permutex2var_ps(v[0], hi, v[1]);
    __m512 B = _mm512_permutex2var_ps(v[2], lo, v[3]), B2 = _mm512_permutex2var_ps(v[2], hi, v[3]);
    float *yo = y + (n * O + o) * 64;
    _mm512_storeu_ps(yo, _mm512_shuffle_f32x4(A, B, 0x44));
    _mm512_storeu_ps(yo + 16, _mm512_shuffle_f32x4(A, B, 0xEE));
    _mm512_storeu_ps(yo + 32, _mm512_shuffle_f32x4(A2, B2, 0x44));
    _mm512_storeu_ps(yo + 48, _mm512_shuffle_f32x4(A2, B2, 0xEE));
  }
}

/* four 16-wide output rows from the 16 tiles of tile rows ty, ty + 1 */
static void wg_output_rows16(const wg_geom *g, const float *M, const float *bias, int64_t n, int64_t ty, int64_t col,
                             float *y) {
  const int64_t O = g->O, H = g->H, TB = g->TB, plane = O * TB;
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (int64_t o = 0; o < O; o++) {
    __m512 v[4];
    wg_out16(M + o * TB + col, plane, _mm512_set1_ps(bias ? bias[o] : 0.0f), v);
    float *yo = y + ((n * O + o) * H + 2 * ty) * 16;
    _mm512_storeu_ps(yo, _mm512_permutex2var_ps(v[0], lo, v[1]));
    _mm512_storeu_ps(yo + 16, _mm512_permutex2var_ps(v[2], lo, v[3]));
    _mm512_storeu_ps(yo + 32, _mm512_permutex2var_ps(v[0], hi, v[1]));
    _mm512_storeu_ps(yo + 48, _mm512_permutex2var_ps(v[2], hi, v[3]));
  }
}

/* U for output channels o0 .. o0 + 7 and input channels c, c + 1 at once: each lane gathers
 * its 3x3 kernel (lane l: o0 + l % 8, c + l / 8), so the two 8-lane halves land next to each
 * other in U[xi][panel][c][8]. */
static void wg_weights_pair(const wg_geom *g, const float *w, bool flip, float *U, int64_t o0, int64_t c) {
  const int64_t C = g->C, O = g->O;
  int32_t off[16];
  __mmask16 mk = 0;
  for (int l = 0; l < 16; l++) {
    int64_t o = o0 + l % 8, ci = c + l / 8;
    off[l] = 0;
    if (o < O && ci < C) {
      mk |= (__mmask16)(1u << l);
      off[l] = (int32_t)(flip ? (ci * O + o) * 9 + 8 : (o * C + ci) * 9);
    }
  }
  const __m512i vo = _mm512_loadu_si512(off);
  __m512 k[9];
  for (int t = 0; t < 9; t++)
    k[t] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, _mm512_add_epi32(vo, _mm512_set1_epi32(flip ? -t : t)),
                                    w, 4);
  const __m512 h = _mm512_set1_ps(0.5f);
  __m512 t[4][3];
  for (int j = 0; j < 3; j++) {
    t[0][j] = k[j];
    t[1][j] = _mm512_mul_ps(h, _mm512_add_ps(_mm512_add_ps(k[j], k[3 + j]), k[6 + j]));
    t[2][j] = _mm512_mul_ps(h, _mm512_add_ps(_mm512_sub_ps(k[j], k[3 + j]), k[6 + j]));
    t[3][j] = k[6 + j];
  }
  float *dst = U + ((o0 / 8) * C + c) * 8;
  const int64_t xstride = (g->Op / 8) * C * 8;
  const __mmask16 ms = c + 1 < C ? 0xFFFF : 0x00FF;
  for (int i = 0; i < 4; i++) {
    __m512 u[4] = {t[i][0], _mm512_mul_ps(h, _mm512_add_ps(_mm512_add_ps(t[i][0], t[i][1]), t[i][2])),
                   _mm512_mul_ps(h, _mm512_add_ps(_mm512_sub_ps(t[i][0], t[i][1]), t[i][2])), t[i][2]};
    for (int j = 0; j < 4; j++) _mm512_mask_storeu_ps(dst + (4 * i + j) * xstride, ms, u[j]);
  }
}
DDPM_AVX512_END

static void wg_block(const wg_geom *g, const float *x, const float *U, const float *bias, float *y, int64_t b,
                     float *V, float *M) {
  const int64_t t0 = b * g->TB, t1 = t0 + g->TB < g->T ? t0 + g->TB : g->T, nt = t1 - t0;
  const int64_t ncol = (nt + 15) / 16 * 16; /* GEMM columns: whole vectors, the tail zeroed */
  const bool p8 = g->W == 8 && g->H == 8, r16 = g->W == 16 && g->H % 4 == 0;
  int64_t n, ty, tx0;
  /* (blocks start at multiples of 32 tiles, so 8x8 images and 16-wide row pairs never straddle) */
  for (int64_t t = t0; t < t1;) {
    if (p8) {
      wg_input_plane8(g, x, t / 16, t - t0, V);
      t += 16;
    } else if (r16) {
      wg_input_rows16(g, x, t / g->tpi, (t % g->tpi) / 8, t - t0, V);
      t += 16;
    } else {
      int64_t L = wg_segment(g, t, t1, &n, &ty, &tx0);
      wg_input_segment(g, x, n, ty, tx0, L, t - t0, V);
      t += L;
    }
  }
  if (ncol > nt)
    for (int64_t r = 0; r < 16 * g->C; r++) memset(V + r * g->TB + nt, 0, sizeof(float) * (size_t)(ncol - nt));
  for (int xi = 0; xi < 16; xi++)
    cpu_gemm_pa8_f32(g->O, ncol, g->C, U + (int64_t)xi * g->Op * g->C, V + xi * g->C * g->TB, g->TB,
                     M + xi * g->O * g->TB, g->TB, 0);
  for (int64_t t = t0; t < t1;) {
    if (p8) {
      wg_output_plane8(g, M, bias, t / 16, t - t0, y);
      t += 16;
    } else if (r16) {
      wg_output_rows16(g, M, bias, t / g->tpi, (t % g->tpi) / 8, t - t0, y);
      t += 16;
    } else {
      int64_t L = wg_segment(g, t, t1, &n, &ty, &tx0);
      wg_output_segment(g, M, bias, n, ty, tx0, L, t - t0, y);
      t += L;
    }
  }
}

int cpu_winograd_conv_f32(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, const float *x, const float *w,
                          bool flip, const float *bias, float *y) {
  int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  wg_geom g;
  wg_init(&g, N, C, H, W, O, nt);
  float *U = cpu_scratch(3, sizeof(float) * (size_t)(16 * g.Op * C));
  if (!U) return DDPM_FAIL(DDPM_ERR_OOM, "conv2d: out of memory for %lld transformed 3x3 kernels", (long long)(O * C));
  if (nt > g.nblk) nt = (int)g.nblk;
  if (nt < 1) nt = 1;
  int failed = 0;
  size_t vb = sizeof(float) * (size_t)(16 * C * g.TB), mb = sizeof(float) * (size_t)(16 * O * g.TB);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#pragma omp for schedule(static)
    for (int64_t k = 0; k < (g.Op / 8) * ((C + 1) / 2); k++) wg_weights_pair(&g, w, flip, U, k / ((C + 1) / 2) * 8, k % ((C + 1) / 2) * 2);
    float *V = cpu_scratch(0, vb), *M = cpu_scratch(1, mb);
    if (!V || !M) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < g.nblk; b++)
      if (V && M) wg_block(&g, x, U, bias, y, b, V, M);
  }
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "conv2d: out of memory for Winograd tile buffers") : DDPM_OK;
}
