/* softmax.c: CPU softmax and log_softmax along one dim, forward and backward (float32 exps four
 * lanes at a time).  The input is seen
 * as [outer, D, inner]; rows along a last dim are contiguous, other dims are gathered into a
 * per-thread buffer.  The row functions are shared with attention.c. */
#include "nn_cpu.h"
#include "gemm_avx512.h"
#include "vmath_avx512.h"
#include <math.h>

/* softmax of one float32 row on AVX-512: max and exp 16 lanes at a time (vm_exp, <= 2 ulp), the
 * sum in float lanes flushed to double every 64 values as below.  Attention runs one of these per
 * query row (a [64, 64] score matrix per head at the reference UNet's 8x8 level), where the
 * four-lane path cost most of the op. */
DDPM_AVX512_BEGIN
static void softmax_row_f32_avx512(const float *x, float *y, int64_t n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) m = _mm512_max_ps(_mm512_loadu_ps(x + k), m); /* NaN in x: keeps m */
  float mx = _mm512_reduce_max_ps(m);
  for (; k < n; k++) mx = x[k] > mx ? x[k] : mx;
  if (mx != mx) mx = 0; /* only NaNs: let them propagate through the arithmetic below */
  const __m512 vm = _mm512_set1_ps(mx);
  double total = 0;
  __m512 acc = _mm512_setzero_ps();
  for (k = 0; k + 16 <= n; k += 16) {
    __m512 e = vm_exp(_mm512_sub_ps(_mm512_loadu_ps(x + k), vm));
    _mm512_storeu_ps(y + k, e);
    acc = _mm512_add_ps(acc, e);
    if ((k & 63) == 48) {
      total += (double)_mm512_reduce_add_ps(acc);
      acc = _mm512_setzero_ps();
    }
  }
  __mmask16 tail = (__mmask16)((1u << (n - k)) - 1u);
  if (tail) {
    __m512 e = vm_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + k), vm));
    _mm512_mask_storeu_ps(y + k, tail, e);
    acc = _mm512_mask_add_ps(acc, tail, acc, e);
  }
  total += (double)_mm512_reduce_add_ps(acc);
  const __m512 inv = _mm512_set1_ps((float)(1.0 / total));
  for (k = 0; k + 16 <= n; k += 16) _mm512_storeu_ps(y + k, _mm512_mul_ps(_mm512_loadu_ps(y + k), inv));
  if (tail) _mm512_mask_storeu_ps(y + k, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, y + k), inv));
}
DDPM_AVX512_END

/* float32: exp and max four lanes at a time (nn_cpu.h); sums in float lanes flushed to double
 * every 64 values, so long rows keep double accuracy without a scalar dependency chain */
static inline void exp_shifted_f32(float *y, int64_t n, double *s, bool keep) {
  double total = 0;
  cpu_v4f a4 = {0};
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    cpu_v4f v;
    memcpy(&v, y + k, sizeof v);
    v = cpu_exp4(v);
    if (keep) memcpy(y + k, &v, sizeof v);
    a4 += v;
    if ((k & 63) == 60) {
      total += (double)a4[0] + a4[1] + a4[2] + a4[3];
      a4 = (cpu_v4f){0};
    }
  }
  if (k < n) {
    cpu_v4f v = {0};
    memcpy(&v, y + k, sizeof(float) * (size_t)(n - k));
    v = cpu_exp4(v);
    if (keep) memcpy(y + k, &v, sizeof(float) * (size_t)(n - k));
    for (int j = 0; j < n - k; j++) a4[j] += v[j];
  }
  *s += total + (double)a4[0] + a4[1] + a4[2] + a4[3];
}
/* the largest value, NaNs ignored (as the scalar x > m ? x : m) */
static inline float row_max_f32(const float *x, int64_t n) {
  cpu_v4f m4 = (cpu_v4f){0} - __builtin_inff();
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    cpu_v4f v;
    memcpy(&v, x + k, sizeof v);
    cpu_v4i gt = (cpu_v4i)(v > m4);
    m4 = (cpu_v4f)((gt & (cpu_v4i)v) | (~gt & (cpu_v4i)m4));
  }
  float m = -INFINITY;
  for (int j = 0; j < 4; j++) m = m4[j] > m ? m4[j] : m;
  for (; k < n; k++) m = x[k] > m ? x[k] : m;
  return m;
}
static inline double row_max_f64(const double *x, int64_t n) {
  double m = -INFINITY;
  for (int64_t k = 0; k < n; k++) m = x[k] > m ? x[k] : m;
  return m;
}
static inline void exp_shifted_f64(double *y, int64_t n, double *s, bool keep) {
  for (int64_t k = 0; k < n; k++) {
    double e = exp(y[k]);
    if (keep) y[k] = e;
    *s += e;
  }
}

#define R float
#define SUF(n) n##_f32
#define FAST_ROW(x, y, n, is_log) (!(is_log) && (n) >= 16 && cpu_fast_kernels() ? (softmax_row_f32_avx512(x, y, n), 1) : 0)
#define EXP expf
#define LOG log
#define EXP_SHIFTED(y, n, s, keep) exp_shifted_f32(y, n, &(s), keep)
#define ROW_MAX row_max_f32
#include "softmax_impl.h"
#undef EXP_SHIFTED
#undef ROW_MAX
#undef R
#undef SUF
#undef EXP
#undef LOG
#undef FAST_ROW
#define R double
#define SUF(n) n##_f64
#define FAST_ROW(x, y, n, is_log) 0
#define EXP exp
#define LOG log
#define EXP_SHIFTED(y, n, s, keep) exp_shifted_f64(y, n, &(s), keep)
#define ROW_MAX row_max_f64
#include "softmax_impl.h"
#undef EXP_SHIFTED
#undef ROW_MAX
#undef R
#undef SUF
#undef EXP
#undef LOG
#undef FAST_ROW

/* x viewed as [outer, D, inner] around dim d */
static void split_dims(const ddpm_tensor *x, int d, int64_t *D, int64_t *inner) {
  *D = x->ndim ? x->shape[d] : 1;
  int64_t in = 1;
  for (int k = d + 1; k < x->ndim; k++) in *= x->shape[k];
  *inner = in;
}

static int run(ddpm_call *c, bool log, bool bwd) {
  ddpm_tensor *x = bwd ? c->in[1] : c->in[0], *gy = bwd ? c->in[0] : NULL, *y = c->out[0];
  DDPM_TRY(cpu_nn_dtype(log ? "log_softmax" : "softmax", x->dtype));
  int64_t D, inner, n = ddpm_tensor_numel(x);
  split_dims(x, (int)c->i[0], &D, &inner);
  if (n == 0 || D == 0) return DDPM_OK;
  int64_t rows = n / D, grain = 32768 / D > 0 ? 32768 / D : 1;
  int failed;
  if (x->dtype == DDPM_FLOAT32) {
    sm_ctx_f32 k = {(const float *)ddpm_ptr(x), gy ? (const float *)ddpm_ptr(gy) : NULL, (float *)ddpm_ptr(y), D,
                    inner, log, bwd, 0};
    cpu_parallel_for(rows, grain, sm_range_f32, &k);
    failed = k.failed;
  } else {
    sm_ctx_f64 k = {(const double *)ddpm_ptr(x), gy ? (const double *)ddpm_ptr(gy) : NULL, (double *)ddpm_ptr(y), D,
                    inner, log, bwd, 0};
    cpu_parallel_for(rows, grain, sm_range_f64, &k);
    failed = k.failed;
  }
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "softmax: out of memory for a row buffer") : DDPM_OK;
}

int cpu_SOFTMAX(ddpm_call *c) { return run(c, false, false); }
int cpu_LOG_SOFTMAX(ddpm_call *c) { return run(c, true, false); }
int cpu_SOFTMAX_BWD(ddpm_call *c) { return run(c, c->i[1] != 0, true); }
