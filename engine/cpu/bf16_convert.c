/* bf16_convert.c: float32 <-> bfloat16 over arrays.  The AVX-512 path rounds with integer
 * arithmetic (AVX-512F/BW only, no avx512bf16 needed), the same steps as ddpm_f32_to_bf16: a NaN
 * keeps its top bits with the quiet bit set, everything else (denormals and infinities included)
 * adds 0x7fff plus the lowest kept bit and truncates; so both paths agree bit for bit, and
 * DDPM_CPU_ISA=generic (cpu_fast_kernels) gives the same results. */
#include "bf16_convert.h"
#include "gemm_avx512.h"

__attribute__((target("avx512f,avx512bw,avx512vl"))) static void to_bf16_fast(const float *src, uint16_t *dst,
                                                                             int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
    _mm256_mask_storeu_epi16(dst + i, m, cpu_bf16_pack16(_mm512_maskz_loadu_ps(m, src + i)));
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) static void to_f32_fast(const uint16_t *src, float *dst,
                                                                            int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(dst + i, m, cpu_bf16_unpack16(_mm256_maskz_loadu_epi16(m, src + i)));
  }
}

void cpu_f32_to_bf16(const float *src, uint16_t *dst, int64_t n) {
  if (n >= 16 && cpu_fast_kernels()) {
    to_bf16_fast(src, dst, n);
    return;
  }
  for (int64_t i = 0; i < n; i++) dst[i] = ddpm_f32_to_bf16(src[i]);
}

void cpu_bf16_to_f32(const uint16_t *src, float *dst, int64_t n) {
  if (n >= 16 && cpu_fast_kernels()) {
    to_f32_fast(src, dst, n);
    return;
  }
  for (int64_t i = 0; i < n; i++) dst[i] = ddpm_bf16_to_f32(src[i]);
}
