/* activation_f32.h: float32 SiLU and exact GELU, forward and derivative, over arrays: the one
 * definition every float32 kernel uses (elementwise silu/gelu, their backward, the fused
 * group_norm+SiLU), so fused and composite forms agree bit for bit. */
#ifndef DDPM_ACTIVATION_F32_H
#define DDPM_ACTIVATION_F32_H
#include "cpu.h"

enum { CPU_ACT_SILU = 0, CPU_ACT_GELU = 1 };
/* y[i] = f(x[i]) (y may alias x) */
DDPM_INTERNAL void cpu_act_f32(int kind, const float *x, float *y, int64_t n);
/* o[i] = g[i] * f'(x[i]) (o may alias g or x) */
DDPM_INTERNAL void cpu_act_bwd_f32(int kind, const float *g, const float *x, float *o, int64_t n);
#endif
