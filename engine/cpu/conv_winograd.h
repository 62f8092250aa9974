/* conv_winograd.h: the Winograd F(2x2, 3x3) float32 convolution of conv_winograd.c. */
#ifndef DDPM_CONV_WINOGRAD_H
#define DDPM_CONV_WINOGRAD_H
#include "cpu.h"

/* y [N, O, H, W] = conv3x3(x [N, C, H, W], stride 1, padding 1) + bias (or NULL), all contiguous
 * float32.  w is [O, C, 3, 3]; with flip it is the layer's [C, O, 3, 3] kernel of which this is the
 * input gradient (flipped 180 degrees, channel axes swapped).  Needs cpu_fast_kernels(). */
DDPM_INTERNAL int cpu_winograd_conv_f32(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, const float *x,
                                        const float *w, bool flip, const float *bias, float *y);
/* gw [O, C, 3, 3] = d loss / d w and gb [O] (or NULL) from x [N, C, H, W] and gy [N, O, H, W] of
 * the same convolution (contiguous float32); only where cpu_winograd_grad_ok(H, W). */
DDPM_INTERNAL bool cpu_winograd_grad_ok(int64_t H, int64_t W);
DDPM_INTERNAL int cpu_winograd_grad_f32(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, const float *x,
                                        const float *gy, float *gw, float *gb);
#endif
