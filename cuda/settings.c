/* settings.c: the CUDA backend's switches (TF32 matmul, cuDNN TF32/benchmark, DDPM_SYNC).  Plain
 * C compiled in every build, so scripts may set them whether or not this libddpm has CUDA. */
#include "internal.h"
#include <stdlib.h>

/* PyTorch's defaults: TF32 off for matmul, on for cuDNN convolutions; benchmark off. */
static int flags[DDPM_CUDA_FLAG_COUNT] = {0, 1, 0, -1};

int ddpm_cuda_get_flag(int flag) {
  if (flag < 0 || flag >= DDPM_CUDA_FLAG_COUNT) return 0;
  if (flag == DDPM_CUDA_FLAG_SYNC && flags[flag] < 0) {
    const char *e = getenv("DDPM_SYNC"); /* synchronise and check after every op (debugging) */
    flags[flag] = e && *e && strcmp(e, "0") != 0;
  }
  return flags[flag];
}

int ddpm_cuda_set_flag(int flag, int value) {
  if (flag < 0 || flag >= DDPM_CUDA_FLAG_COUNT)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "cuda flag %d does not exist (expected 0..%d)", flag,
                     DDPM_CUDA_FLAG_COUNT - 1);
  flags[flag] = value != 0;
  return DDPM_OK;
}
