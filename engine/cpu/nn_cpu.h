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
/* a 64-byte aligned buffer that only grows (kept between calls; the caller owns the struct,
 * usually _Thread_local): at least nbytes, or NULL when out of memory */
typedef struct {
  void *p;
  size_t n;
} cpu_buf;
DDPM_INTERNAL void *cpu_buf_reserve(cpu_buf *b, size_t nbytes);
DDPM_INTERNAL void *cpu_scratch(int slot, size_t nbytes);

/* Softmax (log = log_softmax) over n contiguous values, y may alias x; and its backward from the
 * forward output y (softmax.c, shared with attention.c). */
DDPM_INTERNAL void cpu_softmax_row_f32(const float *x, float *y, int64_t n, bool log);
DDPM_INTERNAL void cpu_softmax_row_f64(const double *x, double *y, int64_t n, bool log);
DDPM_INTERNAL void cpu_softmax_row_bwd_f32(const float *gy, const float *y, float *gx, int64_t n, bool log);
DDPM_INTERNAL void cpu_softmax_row_bwd_f64(const double *gy, const double *y, double *gx, int64_t n, bool log);

/* y[k] = exp(x[k]) for float32 arrays (y may alias x), 4 lanes at a time through GCC vector
 * extensions (plain SSE2): exp(x) = 2^n e^r, |r| <= ln2/2, e^r by a
 * degree-6 polynomial (Cephes expf), within 2 ulp of libm.  Inputs below -87.3 give exactly 0 (so
 * -inf scores get probability 0), above 88.72 +inf, NaN stays NaN.  Softmax uses it; silu/gelu keep libm's expf so
 * their fused and unfused forms agree bit for bit. */
typedef float cpu_v4f __attribute__((vector_size(16)));
typedef int32_t cpu_v4i __attribute__((vector_size(16)));
static inline cpu_v4f cpu_exp4(cpu_v4f x) {
  const cpu_v4f lo = (cpu_v4f){0} - 87.33654475f, hi = (cpu_v4f){0} + 88.72283905f;
  cpu_v4i under = (cpu_v4i)(x < lo), over = (cpu_v4i)(x > hi);
  cpu_v4f xc = (cpu_v4f)((under & (cpu_v4i)lo) | (~under & (cpu_v4i)x));
  xc = (cpu_v4f)((over & (cpu_v4i)hi) | (~over & (cpu_v4i)xc));
  const cpu_v4f magic = (cpu_v4f){0} + 12582912.0f; /* 1.5 * 2^23: rounds to nearest integer */
  cpu_v4f n = (xc * 1.44269504088896341f + magic) - magic;
  cpu_v4f r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  cpu_v4f p = (cpu_v4f){0} + 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.0f;
  /* 2^n in two halves, so n = 128 (x just below the overflow bound) stays finite */
  cpu_v4i ni = __builtin_convertvector(n, cpu_v4i), h = ni >> 1;
  cpu_v4f y = p * (cpu_v4f)((h + 127) << 23) * (cpu_v4f)((ni - h + 127) << 23);
  cpu_v4i inf = (cpu_v4i)((cpu_v4f){0} + __builtin_inff());
  y = (cpu_v4f)((over & inf) | (~over & (cpu_v4i)y));
  return (cpu_v4f)(~under & (cpu_v4i)y);
}
static inline void cpu_exp_f32(const float *x, float *y, int64_t n) {
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    cpu_v4f v;
    memcpy(&v, x + k, sizeof v);
    v = cpu_exp4(v);
    memcpy(y + k, &v, sizeof v);
  }
  if (k < n) {
    cpu_v4f v = {0};
    memcpy(&v, x + k, sizeof(float) * (size_t)(n - k));
    v = cpu_exp4(v);
    memcpy(y + k, &v, sizeof(float) * (size_t)(n - k));
  }
}

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
