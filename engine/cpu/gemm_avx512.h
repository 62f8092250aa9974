/* gemm_avx512.h: the CPU backend's own float32 GEMM micro-kernels (AVX-512), used where OpenBLAS
 * cannot see the structure: Winograd convolutions, implicit-im2col weight gradients, and fused
 * epilogues.  Compiled for AVX-512 with function attributes and chosen at run time, so the library
 * still loads and runs (through OpenBLAS) on CPUs without it. */
#ifndef DDPM_GEMM_AVX512_H
#define DDPM_GEMM_AVX512_H
#include "cpu.h"
#include <immintrin.h>

/* Functions between DDPM_AVX512_BEGIN and DDPM_AVX512_END are compiled for AVX-512 (the rest of
 * the library for plain x86-64); callers reach them only when cpu_fast_kernels() says so.
 * GCC and clang spell the region differently. */
#if defined(__clang__)
#define DDPM_AVX512_BEGIN                                                                                     \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512vl,avx512dq,fma\"))), apply_to = function)")
#define DDPM_AVX512_END _Pragma("clang attribute pop")
#else
#define DDPM_AVX512_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512vl,avx512dq,fma\")")
#define DDPM_AVX512_END _Pragma("GCC pop_options")
#endif

/* 1 when this CPU runs the AVX-512 kernels (F, BW, VL, DQ, FMA) and neither DDPM_CPU_ISA=generic
 * nor DDPM_CPU_KERNELS=reference forces the portable paths (for CI parity and A/B measurements). */
DDPM_INTERNAL int cpu_fast_kernels(void);

/* C[i, j] (= or +=) sum_k A[i*ai + k*ak] * B[k*ldb + j] (+ bias[j]) for i < mr (1..8) and
 * j < 16*nv (nv 1..4); the last 16-lane vector of each row is limited by the lane mask `last`
 * (0xffff = full).  accumulate != 0 adds the product to C; otherwise C = sum, plus bias if given.
 * The sum runs in chunks of 32 k, each added onto C. */
DDPM_INTERNAL void cpu_ukr_f32(int mr, int nv, int64_t K, const float *A, int64_t ai, int64_t ak, const float *B,
                               int64_t ldb, float *C, int64_t ldc, int accumulate, const float *bias, unsigned last);

/* C[M, N] = (accumulate ? C : bias (or 0)) + A B with A[i, k] = A[i*ai + k*ak] (any layout),
 * B and C row-major with unit column stride (ldb, ldc), over the threads when it pays. */
typedef struct {
  int64_t M, N, K;
  const float *A;
  int64_t ai, ak;
  const float *B;
  int64_t ldb;
  float *C;
  int64_t ldc;
  int accumulate;
  const float *bias; /* [N] or NULL */
} cpu_sgemm_args;
DDPM_INTERNAL void cpu_sgemm_f32(const cpu_sgemm_args *g);

/* C[M, N] (= or +=) A[M, K] B[K, N] with A packed in panels of 8 rows (cpu_pack_a8: [M/8][K][8],
 * the last panel zero-padded) and B, C row-major (ldb, ldc); N need not be a multiple of 16. */
DDPM_INTERNAL void cpu_gemm_pa8_f32(int64_t M, int64_t N, int64_t K, const float *Ap, const float *B, int64_t ldb,
                                    float *C, int64_t ldc, int accumulate);
/* Pack A (row-major [M, K] with row stride lda; or, with trans, A[m, k] = src[k*lda + m]) into
 * 8-row panels for cpu_gemm_pa8_f32: dst holds ceil(M/8)*8*K floats. */
DDPM_INTERNAL void cpu_pack_a8_f32(int64_t M, int64_t K, const float *src, int64_t lda, bool trans, float *dst);
#endif
