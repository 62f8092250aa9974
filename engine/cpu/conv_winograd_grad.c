/* conv_winograd_grad.c: the weight (and bias) gradient of 3x3 stride-1 "same" float32
 * convolutions by Winograd F(2x2, 3x3), the adjoint of conv_winograd.c's forward:
 *     M = sum_c U_c (.) V_c,  Y = A^T M A,  U = G g G^T   gives
 *     dM = A dY A^T,  dU_oc = sum_tiles dM_o (.) V_c,  dg_oc = G^T dU_oc G,
 * i.e. 16 GEMMs contracting over every tile of the batch, 4 multiply-adds per weight and output
 * position instead of 9.  For these GEMMs the channel axes must be contiguous (the tiles are the
 * contracted axis), so each block of images is first transposed to channels-last with 16x16
 * register transposes (zero borders included), and the transforms then run on 16 channels per
 * vector.  A thread takes a contiguous range of blocks (a fixed split: the gradient is the same
 * bits for a given thread count) and accumulates its own dU; the partials are added in thread
 * order at the end.  Only images of up to 32x32 take this path (the blocks must fit in L2). */
#include "conv_winograd.h"
#include "gemm_avx512.h"
#include "nn_cpu.h"

typedef struct {
  int64_t N, C, H, W, O, Cp, Opp; /* Cp, Opp: channels rounded up to 16 (vector lanes) */
  int64_t th, tw, tpi, Hp, Wp;    /* tiles; padded staging plane of x: rows/cols -1 .. 2 th */
  int64_t nb, nblk, TB;           /* images per block, blocks, tiles per full block */
} wgg_geom;

bool cpu_winograd_grad_ok(int64_t H, int64_t W) { return ((H + 1) / 2) * ((W + 1) / 2) <= 256; }

DDPM_AVX512_BEGIN

static inline void tr16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int h = 0; h < 2; h++)
    for (int i = 0; i < 4; i++) {
      t[8 * h + i] = _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + i + 4], 0x88);
      t[8 * h + i + 4] = _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + i + 4], 0xdd);
    }
  for (int i = 0; i < 8; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}

/* dst[(h + off) * dw + (w + off)][0 .. cs) <- src[c][h][w] for one image (channels-last, channel
 * stride cs, zero in channels >= C); with sum, also adds every pixel into sum[c] (float lanes). */
static void to_channels_last(const float *src, int64_t C, int64_t H, int64_t W, float *dst, int64_t cs,
                             int64_t dw, int64_t off, __m512 *sum) {
  const int64_t HW = H * W;
  for (int64_t c0 = 0; c0 < cs; c0 += 16) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t p0 = 0; p0 < HW; p0 += 16) {
      int64_t np = HW - p0 < 16 ? HW - p0 : 16;
      __mmask16 mp = (__mmask16)(np == 16 ? 0xffffu : (1u << np) - 1u);
      __m512 r[16];
      for (int k = 0; k < 16; k++)
        r[k] = c0 + k < C ? _mm512_maskz_loadu_ps(mp, src + (c0 + k) * HW + p0) : _mm512_setzero_ps();
      tr16(r);
      for (int64_t j = 0; j < np; j++) {
        int64_t p = p0 + j, h = p / W, w = p % W;
        _mm512_storeu_ps(dst + ((h + off) * dw + w + off) * cs + c0, r[j]);
        acc = _mm512_add_ps(acc, r[j]);
      }
    }
    if (sum) sum[c0 / 16] = _mm512_add_ps(sum[c0 / 16], acc);
  }
}

/* the transposed image block: x with a zero border (padded plane Hp x Wp), dy zero beyond H, W */
static void stage_block(const wgg_geom *g, const float *x, const float *gy, int64_t n0, int64_t nimg, float *Xs,
                        float *Gs, double *bsum) {
  const int64_t Cp = g->Cp, Opp = g->Opp, Hp = g->Hp, Wp = g->Wp, gh = 2 * g->th, gw = 2 * g->tw;
  for (int64_t i = 0; i < nimg; i++) {
    float *xs = Xs + i * Hp * Wp * Cp;
    /* zero border: the top row, the rows below the image and the columns left and right of it */
    memset(xs, 0, sizeof(float) * (size_t)(Wp * Cp));
    memset(xs + (g->H + 1) * Wp * Cp, 0, sizeof(float) * (size_t)((Hp - g->H - 1) * Wp * Cp));
    for (int64_t h = 1; h <= g->H; h++) {
      memset(xs + h * Wp * Cp, 0, sizeof(float) * (size_t)Cp);
      memset(xs + (h * Wp + g->W + 1) * Cp, 0, sizeof(float) * (size_t)((Wp - g->W - 1) * Cp));
    }
    to_channels_last(x + (n0 + i) * g->C * g->H * g->W, g->C, g->H, g->W, xs, Cp, Wp, 1, NULL);
    float *gs = Gs + i * gh * gw * Opp;
    if (gh != g->H || gw != g->W) memset(gs, 0, sizeof(float) * (size_t)(gh * gw * Opp));
    __m512 s[64];
    for (int64_t k = 0; k < Opp / 16; k++) s[k] = _mm512_setzero_ps();
    to_channels_last(gy + (n0 + i) * g->O * g->H * g->W, g->O, g->H, g->W, gs, Opp, gw, 0, bsum ? s : NULL);
    if (bsum) {
      float f[16];
      for (int64_t k = 0; k < Opp / 16; k++) {
        _mm512_storeu_ps(f, s[k]);
        for (int l = 0; l < 16 && 16 * k + l < g->O; l++) bsum[16 * k + l] += (double)f[l];
      }
    }
  }
}

/* Vt[xi][t][c] = (B^T d B) and dMt[xi][t][o] = (A dY A^T) for the tiles of the staged images */
static void transform_block(const wgg_geom *g, int64_t nimg, const float *Xs, const float *Gs, float *Vt,
                            float *Mt) {
  const int64_t Cp = g->Cp, Opp = g->Opp, Hp = g->Hp, Wp = g->Wp, gh = 2 * g->th, gw = 2 * g->tw;
  const int64_t TB = g->TB, vplane = TB * Cp, mplane = TB * Opp;
  for (int64_t i = 0; i < nimg; i++)
    for (int64_t ty = 0; ty < g->th; ty++)
      for (int64_t tx = 0; tx < g->tw; tx++) {
        int64_t t = (i * g->th + ty) * g->tw + tx;
        const float *xs = Xs + ((i * Hp + 2 * ty) * Wp + 2 * tx) * Cp;
        for (int64_t c0 = 0; c0 < Cp; c0 += 16) {
          __m512 v[4][4];
          for (int j = 0; j < 4; j++) {
            __m512 d0 = _mm512_loadu_ps(xs + (0 * Wp + j) * Cp + c0), d1 = _mm512_loadu_ps(xs + (1 * Wp + j) * Cp + c0);
            __m512 d2 = _mm512_loadu_ps(xs + (2 * Wp + j) * Cp + c0), d3 = _mm512_loadu_ps(xs + (3 * Wp + j) * Cp + c0);
            v[0][j] = _mm512_sub_ps(d0, d2);
            v[1][j] = _mm512_add_ps(d1, d2);
            v[2][j] = _mm512_sub_ps(d2, d1);
            v[3][j] = _mm512_sub_ps(d1, d3);
          }
          float *o = Vt + t * Cp + c0;
          for (int r = 0; r < 4; r++) {
            _mm512_storeu_ps(o + (4 * r + 0) * vplane, _mm512_sub_ps(v[r][0], v[r][2]));
            _mm512_storeu_ps(o + (4 * r + 1) * vplane, _mm512_add_ps(v[r][1], v[r][2]));
            _mm512_storeu_ps(o + (4 * r + 2) * vplane, _mm512_sub_ps(v[r][2], v[r][1]));
            _mm512_storeu_ps(o + (4 * r + 3) * vplane, _mm512_sub_ps(v[r][1], v[r][3]));
          }
        }
        const float *gs = Gs + ((i * gh + 2 * ty) * gw + 2 * tx) * Opp;
        for (int64_t o0 = 0; o0 < Opp; o0 += 16) {
          __m512 g00 = _mm512_loadu_ps(gs + o0), g01 = _mm512_loadu_ps(gs + Opp + o0);
          __m512 g10 = _mm512_loadu_ps(gs + gw * Opp + o0), g11 = _mm512_loadu_ps(gs + (gw + 1) * Opp + o0);
          __m512 z = _mm512_setzero_ps();
          __m512 R[4][2] = {{g00, g01},
                            {_mm512_add_ps(g00, g10), _mm512_add_ps(g01, g11)},
                            {_mm512_sub_ps(g00, g10), _mm512_sub_ps(g01, g11)},
                            {_mm512_sub_ps(z, g10), _mm512_sub_ps(z, g11)}};
          float *o = Mt + t * Opp + o0;
          for (int r = 0; r < 4; r++) {
            _mm512_storeu_ps(o + (4 * r + 0) * mplane, R[r][0]);
            _mm512_storeu_ps(o + (4 * r + 1) * mplane, _mm512_add_ps(R[r][0], R[r][1]));
            _mm512_storeu_ps(o + (4 * r + 2) * mplane, _mm512_sub_ps(R[r][0], R[r][1]));
            _mm512_storeu_ps(o + (4 * r + 3) * mplane, _mm512_sub_ps(z, R[r][1]));
          }
        }
      }
}

/* gw[o][c] = G^T dU_oc G for output channels [o0, o1), dU summed over the thread partials */
static void weights_out(const wgg_geom *g, float *const *part, int np, int64_t o0, int64_t o1, float *gw) {
  const int64_t C = g->C, Cp = g->Cp, xstride = g->O * Cp;
  const __m512 h = _mm512_set1_ps(0.5f);
  const __m512i sidx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(9));
  for (int64_t o = o0; o < o1; o++)
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      __m512 u[16];
      for (int xi = 0; xi < 16; xi++) {
        const int64_t e = xi * xstride + o * Cp + c0;
        u[xi] = _mm512_loadu_ps(part[0] + e);
        for (int k = 1; k < np; k++) u[xi] = _mm512_add_ps(u[xi], _mm512_loadu_ps(part[k] + e));
      }
      __m512 t[3][4];
      for (int b = 0; b < 4; b++) {
        __m512 s12 = _mm512_mul_ps(h, _mm512_add_ps(u[4 + b], u[8 + b]));
        t[0][b] = _mm512_add_ps(u[b], s12);
        t[1][b] = _mm512_mul_ps(h, _mm512_sub_ps(u[4 + b], u[8 + b]));
        t[2][b] = _mm512_add_ps(s12, u[12 + b]);
      }
      __mmask16 mc = (__mmask16)(C - c0 >= 16 ? 0xffffu : (1u << (C - c0)) - 1u);
      float *dst = gw + (o * C + c0) * 9;
      for (int i = 0; i < 3; i++) {
        __m512 s12 = _mm512_mul_ps(h, _mm512_add_ps(t[i][1], t[i][2]));
        __m512 r[3] = {_mm512_add_ps(t[i][0], s12), _mm512_mul_ps(h, _mm512_sub_ps(t[i][1], t[i][2])),
                       _mm512_add_ps(s12, t[i][3])};
        for (int j = 0; j < 3; j++) _mm512_mask_i32scatter_ps(dst + i * 3 + j, mc, sidx, r[j], 4);
      }
    }
}
DDPM_AVX512_END

/* dU[xi] (+)= dMt[xi]^T Vt[xi] over the nt tiles of a block: A = dMt (8 output channels per
 * broadcast row), B = Vt (32 input channels per row) */
static void block_gemm(const wgg_geom *g, int64_t nt, const float *Vt, const float *Mt, float *dU, bool first) {
  const int64_t Cp = g->Cp, Opp = g->Opp, TB = g->TB, C = g->C, O = g->O;
  for (int xi = 0; xi < 16; xi++) {
    const float *V = Vt + xi * TB * Cp, *M = Mt + xi * TB * Opp;
    float *U = dU + xi * O * Cp;
    for (int64_t c0 = 0; c0 < C; c0 += 32) {
      int64_t nc = C - c0 < 32 ? C - c0 : 32;
      int nv = (int)((nc + 15) / 16);
      int64_t tail = nc - 16 * (nv - 1);
      unsigned last = tail >= 16 ? 0xffffu : (1u << tail) - 1u;
      for (int64_t o0 = 0; o0 < O; o0 += 8) {
        int mr = (int)(O - o0 < 8 ? O - o0 : 8);
        cpu_ukr_f32(mr, nv, nt, M + o0, 1, Opp, V + c0, Cp, U + o0 * Cp + c0, Cp, !first, NULL, last);
      }
    }
  }
}

int cpu_winograd_grad_f32(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, const float *x, const float *gy,
                          float *gw, float *gb) {
  wgg_geom g = {.N = N, .C = C, .H = H, .W = W, .O = O};
  g.Cp = (C + 15) / 16 * 16;
  g.Opp = (O + 15) / 16 * 16;
  g.th = (H + 1) / 2;
  g.tw = (W + 1) / 2;
  g.tpi = g.th * g.tw;
  g.Hp = 2 * g.th + 2;
  g.Wp = 2 * g.tw + 2;
  g.nb = g.tpi >= 64 ? 1 : 64 / g.tpi;
  g.TB = g.nb * g.tpi;
  g.nblk = (N + g.nb - 1) / g.nb;
  if (g.Opp > 1024) return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "conv2d backward: %lld output channels", (long long)O);
  int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (nt > g.nblk) nt = (int)g.nblk;
  if (nt > 64) nt = 64;
  if (nt < 1) nt = 1;
  size_t vsz = sizeof(float) * (size_t)(16 * g.TB * g.Cp), msz = sizeof(float) * (size_t)(16 * g.TB * g.Opp);
  size_t usz = sizeof(float) * (size_t)(16 * O * g.Cp), bsz = sizeof(double) * (size_t)O;
  size_t xsz = sizeof(float) * (size_t)(g.nb * g.Hp * g.Wp * g.Cp);
  size_t gsz = sizeof(float) * (size_t)(g.nb * 4 * g.tpi * g.Opp);
  float *part[64] = {0};
  double *bpart[64] = {0};
  int failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    float *Vt = cpu_scratch(0, vsz), *Mt = cpu_scratch(1, msz);
    char *ub = cpu_scratch(2, usz + bsz);
    char *st = cpu_scratch(3, xsz + gsz);
    if (!Vt || !Mt || !ub || !st) {
#pragma omp atomic write
      failed = 1;
    } else {
      float *dU = (float *)(void *)ub;
      double *bs = gb ? (double *)(void *)(ub + usz) : NULL;
      if (bs) memset(bs, 0, bsz);
      int64_t b0 = g.nblk * t / T, b1 = g.nblk * (t + 1) / T;
      if (b0 == b1) memset(dU, 0, usz);
      for (int64_t b = b0; b < b1; b++) {
        int64_t n0 = b * g.nb, nimg = N - n0 < g.nb ? N - n0 : g.nb;
        float *Xs = (float *)(void *)st, *Gs = (float *)(void *)(st + xsz);
        stage_block(&g, x, gy, n0, nimg, Xs, Gs, bs);
        transform_block(&g, nimg, Xs, Gs, Vt, Mt);
        block_gemm(&g, nimg * g.tpi, Vt, Mt, dU, b == b0);
      }
      part[t] = dU;
      bpart[t] = bs;
    }
#pragma omp barrier
    int bad;
#pragma omp atomic read
    bad = failed;
    if (!bad) {
      weights_out(&g, part, T, O * t / T, O * (t + 1) / T, gw);
      if (gb && t == 0)
        for (int64_t o = 0; o < O; o++) {
          double s = 0;
          for (int k = 0; k < T; k++) s += bpart[k][o];
          gb[o] = (float)s;
        }
    }
  }
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "conv2d backward: out of memory for Winograd gradient buffers") : DDPM_OK;
}
