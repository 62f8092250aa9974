/* bf16_convert.h: float32 <-> bfloat16 over contiguous arrays, the one conversion every bf16 CPU
 * kernel uses (copy/cast, the elementwise and activation loops, reductions).  Round to nearest
 * even with NaN kept quiet: bit for bit ddpm_f32_to_bf16, with or without AVX-512. */
#ifndef DDPM_BF16_CONVERT_H
#define DDPM_BF16_CONVERT_H
#include "cpu.h"
#include <immintrin.h>

/* 16 lanes at a time, for AVX-512 kernels that read or write bfloat16 (callers carry at least
 * these target features): the same rounding as cpu_f32_to_bf16 */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static inline __m256i cpu_bf16_pack16(__m512 v) {
  __m512i u = _mm512_castps_si512(v);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
  __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                          _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x400000));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}
__attribute__((target("avx512f,avx512bw,avx512vl"))) static inline __m512 cpu_bf16_unpack16(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* dst[i] = bf16(src[i]) */
DDPM_INTERNAL void cpu_f32_to_bf16(const float *src, uint16_t *dst, int64_t n);
/* dst[i] = float(src[i]) (exact) */
DDPM_INTERNAL void cpu_bf16_to_f32(const uint16_t *src, float *dst, int64_t n);
#endif
