/* autocast.h: the autocast cast policy, called from the entry points of the ops it covers
 * (matmul, bmm, linear lower their float32 inputs; sum/mean raise half inputs to float32).
 * The state is thread-local and set from Lua through ddpm_autocast_set (lua/ddpm/autocast.lua). */
#ifndef DDPM_AUTOCAST_H
#define DDPM_AUTOCAST_H
#include "internal.h"

enum { DDPM_AUTOCAST_LOWER = 1, DDPM_AUTOCAST_FP32 = 2 };

/* nonzero when autocast is enabled for some device on this thread (cheap test for hooks) */
DDPM_INTERNAL extern _Thread_local unsigned ddpm_autocast_mask;
static inline bool ddpm_autocast_on(void) { return ddpm_autocast_mask != 0; }

/* For in[0..n) (entries may be NULL): tensors on an autocast-enabled device are cast, under
 * policy LOWER, from float32/float16/bfloat16 to the autocast dtype (float64 stays, as in
 * PyTorch), and under policy FP32 from half types to float32.  When at least one cast applies,
 * *ncast > 0 and cast[k] holds a new reference for every k (release with ddpm_autocast_release);
 * otherwise *ncast == 0 and cast[] is untouched.  Casts are differentiable (COPY nodes), so
 * gradients flow back to float32 master weights in float32. */
DDPM_INTERNAL int ddpm_autocast_inputs(int policy, int n, ddpm_tensor *const *in, ddpm_tensor **cast, int *ncast);
DDPM_INTERNAL void ddpm_autocast_release(int n, ddpm_tensor **cast);
#endif
