/* autocast.h: the autocast cast policy, called from the entry points of the ops it covers
 * (matmul, bmm, linear and scaled_dot_product_attention lower their float32 inputs on every device;
 * losses and sum/mean raise half inputs to float32, norms and softmax too on a GPU).
 * The state is thread-local and set from Lua through ddpm_autocast_set (lua/ddpm/autocast.lua). */
#ifndef DDPM_AUTOCAST_H
#define DDPM_AUTOCAST_H
#include "internal.h"

/* LOWER_GPU: lower only tensors on a GPU (CPU kernels that run in float32/float64 only, so
 * autocast('cpu') leaves them in float32).  LOWER_BF16_CPU: lower on a GPU as LOWER does, and on
 * the CPU only when its autocast dtype is bfloat16 (the CPU has bfloat16 kernels for these ops,
 * engine/cpu/gemm_bf16.c, but no float16 ones: autocast('cpu', float16) keeps them in float32). */
enum { DDPM_AUTOCAST_LOWER = 1, DDPM_AUTOCAST_FP32 = 2, DDPM_AUTOCAST_LOWER_GPU = 3, DDPM_AUTOCAST_LOWER_BF16_CPU = 4 };

/* FP32_GPU: float32 on a GPU (PyTorch's CUDA list); on the CPU the op takes its input's dtype,
 * as PyTorch's CPU autocast, which lists neither the norms nor softmax (a bfloat16 activation
 * stays bfloat16: the kernels compute in float32 and round once, where a float32 output would
 * only be rounded by the next lowered op) */
enum { DDPM_AUTOCAST_FP32_GPU = 5 };

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

/* The hook at the top of an entry point: when autocast applies to some of the listed tensor
 * arguments, re-enter the entry point with them cast (CALL names them ac_[0], ac_[1], ...) and
 * return its status; otherwise fall through.  The re-entered call sees nothing left to cast.
 *   DDPM_AUTOCAST(DDPM_AUTOCAST_LOWER, ddpm_bmm(out, ac_[0], ac_[1]), a, b); */
#define DDPM_AUTOCAST(policy, CALL, ...)                                                         \
  do {                                                                                          \
    if (ddpm_autocast_on()) {                                                                   \
      ddpm_tensor *ac_in_[] = {__VA_ARGS__};                                                    \
      enum { ac_n_ = sizeof ac_in_ / sizeof ac_in_[0] };                                        \
      ddpm_tensor *ac_[ac_n_];                                                                  \
      int ac_did_ = 0;                                                                          \
      DDPM_TRY(ddpm_autocast_inputs((policy), ac_n_, ac_in_, ac_, &ac_did_));                   \
      if (ac_did_) {                                                                            \
        int ac_st_ = (CALL);                                                                    \
        ddpm_autocast_release(ac_n_, ac_);                                                      \
        return ac_st_;                                                                          \
      }                                                                                         \
    }                                                                                           \
  } while (0)
#endif
