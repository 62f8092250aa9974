/* bf16_convert.h: float32 <-> bfloat16 over contiguous arrays, the one conversion every bf16 CPU
 * kernel uses (copy/cast, the elementwise and activation loops, reductions).  Round to nearest
 * even with NaN kept quiet: bit for bit ddpm_f32_to_bf16, with or without AVX-512. */
#ifndef DDPM_BF16_CONVERT_H
#define DDPM_BF16_CONVERT_H
#include "cpu.h"

/* dst[i] = bf16(src[i]) */
DDPM_INTERNAL void cpu_f32_to_bf16(const float *src, uint16_t *dst, int64_t n);
/* dst[i] = float(src[i]) (exact) */
DDPM_INTERNAL void cpu_bf16_to_f32(const uint16_t *src, float *dst, int64_t n);
#endif
