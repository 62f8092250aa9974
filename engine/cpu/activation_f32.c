/* activation_f32.c: float32 SiLU and exact GELU over arrays.  With AVX-512 the functions of
 * vmath_avx512.h, 16 lanes at a time (the tail through a masked vector, so every element takes
 * the same arithmetic); otherwise libm, as the generic elementwise kernels compute them. */
#include "activation_f32.h"
#include "gemm_avx512.h"
#include "vmath_avx512.h"
#include <math.h>

static inline float silu_s(float x) { return x / (1.0f + expf(-x)); }
static inline float silu_ds(float x) {
  float s = 1.0f / (1.0f + expf(-x));
  return s * (1.0f + x * (1.0f - s));
}
static inline float gelu_s(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }
static inline float gelu_ds(float x) {
  float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
  float pdf = expf(-0.5f * x * x) * 0.3989422804014327f;
  return cdf + x * pdf;
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"))) static void act_fast(int kind, const float *x,
                                                                                      float *y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
    __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    _mm512_mask_storeu_ps(y + i, m, kind == CPU_ACT_SILU ? vm_silu(v) : vm_gelu(v));
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"))) static void act_bwd_fast(int kind, const float *g,
                                                                                          const float *x, float *o,
                                                                                          int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
    __m512 v = _mm512_maskz_loadu_ps(m, x + i), gv = _mm512_maskz_loadu_ps(m, g + i);
    _mm512_mask_storeu_ps(o + i, m, _mm512_mul_ps(gv, kind == CPU_ACT_SILU ? vm_silu_d(v) : vm_gelu_d(v)));
  }
}

void cpu_act_f32(int kind, const float *x, float *y, int64_t n) {
  if (cpu_fast_kernels()) {
    act_fast(kind, x, y, n);
    return;
  }
  if (kind == CPU_ACT_SILU)
    for (int64_t i = 0; i < n; i++) y[i] = silu_s(x[i]);
  else
    for (int64_t i = 0; i < n; i++) y[i] = gelu_s(x[i]);
}

void cpu_act_bwd_f32(int kind, const float *g, const float *x, float *o, int64_t n) {
  if (cpu_fast_kernels()) {
    act_bwd_fast(kind, g, x, o, n);
    return;
  }
  if (kind == CPU_ACT_SILU)
    for (int64_t i = 0; i < n; i++) o[i] = g[i] * silu_ds(x[i]);
  else
    for (int64_t i = 0; i < n; i++) o[i] = g[i] * gelu_ds(x[i]);
}
