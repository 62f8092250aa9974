/* norm_f32.h: the AVX-512 float32 group_norm (+SiLU) of norm_f32.c, used by norm.c when
 * cpu_fast_kernels(); its arguments mirror norm_impl.h's context.  With xh/yh set, the input or the
 * output side is bfloat16, widened and rounded in registers (the arithmetic stays float32). */
#ifndef DDPM_NORM_F32_H
#define DDPM_NORM_F32_H
#include "cpu.h"
#include <math.h>

typedef struct {
  const float *x, *w, *b, *gy;
  float *y, *mean, *rstd, *gx;
  double *pdw, *pdb; /* [N, C] partials of the weight and bias gradients */
  int64_t N, C, S, G;
  double eps;
  bool silu;
  bool xh, yh; /* x and gx (xh), y and gy (yh) hold bfloat16; w, b, mean, rstd stay float32 */
} cpu_gn_f32;

/* The group-norm backward's arithmetic, one copy for the portable (norm_impl.h) and the AVX-512
 * kernels.  Per channel: fold its sums of dy and dy*x (times the channel's weight wc) into the
 * group's A and B and write the weight/bias gradient partials (pdw, pdb may be NULL). */
static inline void cpu_gn_bwd_channel(double wc, double sdy, double sdyx, double mean, double rstd, double *A,
                                      double *B, double *pdw, double *pdb) {
  *A += wc * sdyx;
  *B += wc * sdy;
  if (pdw) *pdw = (sdyx - mean * sdy) * rstd;
  if (pdb) *pdb = sdy;
}
/* per group of M values: gx = rstd * w * dy + c2 * x + c3 */
static inline void cpu_gn_bwd_coeffs(double A, double B, double mean, double r, int64_t M, double *c2, double *c3) {
  *c2 = (B * mean - A) * r * r * r / (double)M;
  *c3 = -*c2 * mean - B * r / (double)M;
}

/* groups [lo, hi) of the flattened [N, G] */
DDPM_INTERNAL void cpu_gn_fwd_f32(const cpu_gn_f32 *c, int64_t lo, int64_t hi);
DDPM_INTERNAL void cpu_gn_bwd_f32(const cpu_gn_f32 *c, int64_t lo, int64_t hi, float *dzbuf);
#endif
