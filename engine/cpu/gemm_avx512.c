/* gemm_avx512.c: float32 GEMM micro-kernels with AVX-512.  A micro-kernel keeps an mr x 16*nv
 * tile of C in zmm registers (at most 8 x 64: 32 accumulators would leave no room, so 8 x 32 and
 * 6 x 64 are the workhorses) and walks K once: per step it loads nv vectors of a B row and
 * broadcasts mr values of A, so every loaded vector feeds mr FMAs and the two FMA ports stay busy
 * while the loads come from L1/L2.  Packing and loop order are the callers' business (the
 * Winograd convolution and the weight gradient pick layouts that need no packing at all). */
#include "gemm_avx512.h"
#include <stdlib.h>
#include <string.h>
#include <omp.h>

static int fast_state = -1;

/* Chosen once, at run time: the library is built for plain x86-64 and only these kernels carry
 * AVX-512 target attributes, so one binary runs on any x86-64 CPU.  DDPM_CPU_ISA=generic (or the
 * older DDPM_CPU_KERNELS=reference) forces the portable paths, so a machine with AVX-512 can
 * test what a CI machine without it runs. */
int cpu_fast_kernels(void) {
  int s = __atomic_load_n(&fast_state, __ATOMIC_RELAXED);
  if (s >= 0) return s;
  __builtin_cpu_init();
  s = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
  const char *isa = getenv("DDPM_CPU_ISA"), *k = getenv("DDPM_CPU_KERNELS");
  if ((isa && !strcmp(isa, "generic")) || (k && !strcmp(k, "reference"))) s = 0;
  __atomic_store_n(&fast_state, s, __ATOMIC_RELAXED);
  return s;
}

DDPM_AVX512_BEGIN

/* The body is a macro so that MR and NV are literal constants: the accumulator array then has a
 * fixed size and, with every loop over it unrolled, lives in registers (a VLA would be spilled).
 * K runs in chunks of KC whose register sums are added onto C: the float32 error of a sum of n
 * products grows with n, and chunks of 32 halve the error of whole 128..2304-long sums (the UNet
 * parity fixtures compare with PyTorch at 1.5e-6 of the largest activation) for ~3% more work. */
#define KC 32
#define UKR(MR, NV)                                                                                           \
  static void ukr_##MR##_##NV(int64_t K, const float *restrict A, int64_t ai, int64_t ak,                    \
                              const float *restrict B, int64_t ldb, float *restrict C, int64_t ldc, int acc, \
                              const float *bias, __mmask16 m) {                                              \
    for (int64_t k0 = 0; k0 < K; k0 += KC) {                                                                 \
      const int64_t kn = K - k0 < KC ? K - k0 : KC;                                                          \
      __m512 c[MR][NV];                                                                                      \
      _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                                                   \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) c[i][v] = _mm512_setzero_ps();                 \
      for (int64_t k = 0; k < kn; k++) {                                                                     \
        __m512 b[NV];                                                                                        \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                                 \
          b[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(m, B + 16 * v) : _mm512_loadu_ps(B + 16 * v);         \
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {                                               \
          __m512 a = _mm512_set1_ps(A[i * ai]);                                                              \
          _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) c[i][v] = _mm512_fmadd_ps(a, b[v], c[i][v]); \
        }                                                                                                    \
        A += ak;                                                                                             \
        B += ldb;                                                                                            \
      }                                                                                                      \
      const int add = acc || k0 > 0;                                                                         \
      _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                                                   \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                                               \
          float *p = C + i * ldc + 16 * v;                                                                   \
          __mmask16 mv = v == NV - 1 ? m : (__mmask16)0xffff;                                                \
          __m512 r = c[i][v];                                                                                \
          if (add) r = _mm512_add_ps(_mm512_maskz_loadu_ps(mv, p), r);                                       \
          else if (bias) r = _mm512_add_ps(_mm512_maskz_loadu_ps(mv, bias + 16 * v), r);                     \
          _mm512_mask_storeu_ps(p, mv, r);                                                                   \
        }                                                                                                    \
    }                                                                                                        \
  }
#define UKR_NV(NV) UKR(1, NV) UKR(2, NV) UKR(3, NV) UKR(4, NV) UKR(5, NV) UKR(6, NV) UKR(7, NV) UKR(8, NV)
UKR_NV(1)
UKR_NV(2)
UKR_NV(3)
UKR(1, 4) UKR(2, 4) UKR(3, 4) UKR(4, 4) UKR(5, 4) UKR(6, 4)

typedef void (*ukr_fn)(int64_t, const float *, int64_t, int64_t, const float *, int64_t, float *, int64_t, int,
                       const float *, __mmask16);
#define ROW(NV) {ukr_1_##NV, ukr_2_##NV, ukr_3_##NV, ukr_4_##NV, ukr_5_##NV, ukr_6_##NV, ukr_7_##NV, ukr_8_##NV}
static const ukr_fn ukr_table[4][8] = {ROW(1), ROW(2), ROW(3),
                                       {ukr_1_4, ukr_2_4, ukr_3_4, ukr_4_4, ukr_5_4, ukr_6_4, NULL, NULL}};

void cpu_ukr_f32(int mr, int nv, int64_t K, const float *A, int64_t ai, int64_t ak, const float *B, int64_t ldb,
                 float *C, int64_t ldc, int accumulate, const float *bias, unsigned last) {
  if (nv == 4 && mr > 6) { /* 7 or 8 rows of 64: two calls, 4 + the rest */
    ukr_table[3][3](K, A, ai, ak, B, ldb, C, ldc, accumulate, bias, (__mmask16)last);
    ukr_table[3][mr - 5](K, A + 4 * ai, ai, ak, B, ldb, C + 4 * ldc, ldc, accumulate, bias, (__mmask16)last);
    return;
  }
  ukr_table[nv - 1][mr - 1](K, A, ai, ak, B, ldb, C, ldc, accumulate, bias, (__mmask16)last);
}

/* the columns [j, j + nj) of a 32-column block: vectors and the mask of the last one */
static inline int col_block(int64_t nj, unsigned *last) {
  int nv = (int)((nj + 15) / 16);
  int64_t tail = nj - 16 * (nv - 1);
  *last = tail >= 16 ? 0xffffu : ((1u << tail) - 1u);
  return nv;
}

void cpu_gemm_pa8_f32(int64_t M, int64_t N, int64_t K, const float *Ap, const float *B, int64_t ldb, float *C,
                      int64_t ldc, int accumulate) {
  /* column blocks of 32 outer, so a [K, 32] slab of B stays in L1 across all row panels */
  for (int64_t j = 0; j < N; j += 32) {
    unsigned last;
    int nv = col_block(N - j < 32 ? N - j : 32, &last);
    for (int64_t i = 0; i < M; i += 8) {
      int mr = (int)(M - i < 8 ? M - i : 8);
      ukr_table[nv - 1][mr - 1](K, Ap + i * K, 1, 8, B + j, ldb, C + i * ldc + j, ldc, accumulate, NULL,
                                (__mmask16)last);
    }
  }
}

/* one macro tile [i0, i1) x [j0, j1) of cpu_sgemm_f32: K in blocks of 256 (a [256, 32] slab of B
 * is 32 KB: L1), 32-column blocks, 8-row panels */
static void sgemm_tile(const cpu_sgemm_args *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  for (int64_t k0 = 0; k0 < g->K; k0 += 256) {
    int64_t kn = g->K - k0 < 256 ? g->K - k0 : 256;
    int acc = g->accumulate || k0 > 0;
    for (int64_t j = j0; j < j1; j += 32) {
      unsigned last;
      int nv = col_block(j1 - j < 32 ? j1 - j : 32, &last);
      const float *bias = g->bias && k0 == 0 ? g->bias + j : NULL;
      for (int64_t i = i0; i < i1; i += 8) {
        int mr = (int)(i1 - i < 8 ? i1 - i : 8);
        ukr_table[nv - 1][mr - 1](kn, g->A + i * g->ai + k0 * g->ak, g->ai, g->ak, g->B + k0 * g->ldb + j, g->ldb,
                                  g->C + i * g->ldc + j, g->ldc, acc, bias, (__mmask16)last);
      }
    }
  }
}

DDPM_AVX512_END

void cpu_sgemm_f32(const cpu_sgemm_args *g) {
  if (g->M <= 0 || g->N <= 0) return;
  if (g->K <= 0) { /* an empty sum: C = bias (or 0), or unchanged when accumulating */
    if (!g->accumulate)
      for (int64_t i = 0; i < g->M; i++)
        for (int64_t j = 0; j < g->N; j++) g->C[i * g->ldc + j] = g->bias ? g->bias[j] : 0.0f;
    return;
  }
  /* macro tiles: rows in multiples of 8, enough tiles for every thread to get ~4 */
  int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  double work = (double)g->M * (double)g->N * (double)g->K;
  if (work < 2e6) nt = 1;
  int64_t nc = g->N > 512 ? 256 : g->N;
  int64_t ntj = (g->N + nc - 1) / nc;
  int64_t mc = g->M / (4 * nt) / 8 * 8;
  if (mc < 32) mc = 32;
  if (mc > 256) mc = 256;
  int64_t nti = (g->M + mc - 1) / mc, ntiles = nti * ntj;
  if (nt > ntiles) nt = (int)ntiles;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
  for (int64_t t = 0; t < ntiles; t++) {
    int64_t i0 = (t / ntj) * mc, j0 = (t % ntj) * nc;
    sgemm_tile(g, i0, i0 + mc < g->M ? i0 + mc : g->M, j0, j0 + nc < g->N ? j0 + nc : g->N);
  }
}


void cpu_pack_a8_f32(int64_t M, int64_t K, const float *src, int64_t lda, bool trans, float *dst) {
  for (int64_t i0 = 0; i0 < M; i0 += 8) {
    float *d = dst + i0 * K;
    int64_t mr = M - i0 < 8 ? M - i0 : 8;
    for (int64_t k = 0; k < K; k++) {
      for (int64_t i = 0; i < mr; i++) d[k * 8 + i] = trans ? src[k * lda + i0 + i] : src[(i0 + i) * lda + k];
      for (int64_t i = mr; i < 8; i++) d[k * 8 + i] = 0.0f;
    }
  }
}
