/* nn_cpu.h: what the CPU nn kernels share: per-thread scratch buffers, BLAS wrappers per dtype and
 * the dtype guard (the nn kernels compute in float32 and float64). */
#ifndef DDPM_NN_CPU_H
#define DDPM_NN_CPU_H
#include "cpu.h"
#include <cblas.h>
#include <omp.h>

/* A per-thread buffer of at least nbytes (64-byte aligned), kept between calls so hot kernels
 * (im2col columns, weight-gradient partials) allocate nothing in steady state.  slot 0..3 lets one
 * kernel hold several at once.  NULL when out of memory. */
DDPM_INTERNAL void *cpu_scratch(int slot, size_t nbytes);

/* Softmax (log = log_softmax) over n contiguous values, y may alias x; and its backward from the
 * forward output y (softmax.c, shared with attention.c). */
DDPM_INTERNAL void cpu_softmax_row_f32(const float *x, float *y, int64_t n, bool log);
DDPM_INTERNAL void cpu_softmax_row_f64(const double *x, double *y, int64_t n, bool log);
DDPM_INTERNAL void cpu_softmax_row_bwd_f32(const float *gy, const float *y, float *gx, int64_t n, bool log);
DDPM_INTERNAL void cpu_softmax_row_bwd_f64(const double *gy, const double *y, double *gx, int64_t n, bool log);

/* Half types go through float32 on the GPU path (autocast); here they are refused clearly. */
static inline int cpu_nn_dtype(const char *op, int dtype) {
  if (dtype == DDPM_FLOAT32 || dtype == DDPM_FLOAT64) return DDPM_OK;
  return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "%s: %s is not supported on the CPU (use float32 or float64)", op,
                   ddpm_dname(dtype));
}

/* Run work per item across threads when there are enough items and we are not already inside a
 * parallel region; otherwise on this thread, where BLAS may use every core itself. */
static inline bool cpu_nn_split(int64_t items) {
  return items >= 2 && omp_get_max_threads() > 1 && !omp_in_parallel();
}

/* Row-major GEMM C = alpha op(A) op(B) + beta C for each element type; empty products are handled
 * here (BLAS rejects a zero leading dimension). */
static inline bool gemm_trivial(int64_t M, int64_t N, int64_t K) { return M <= 0 || N <= 0 || K <= 0; }
#define GEMM_EMPTY(T)                                                    \
  do {                                                                   \
    if (M > 0 && N > 0)                                                  \
      for (int64_t r = 0; r < M; r++)                                    \
        for (int64_t q = 0; q < N; q++) C[r * ldc + q] = beta == 0 ? (T)0 : C[r * ldc + q] * beta; \
  } while (0)
static inline void gemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                            int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (gemm_trivial(M, N, K)) {
    GEMM_EMPTY(float);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
              alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}
static inline void gemm_f64(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double *A,
                            int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc) {
  if (gemm_trivial(M, N, K)) {
    GEMM_EMPTY(double);
    return;
  }
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
              alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}
#endif
