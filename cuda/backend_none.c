/* backend_none.c: the CUDA entry points of a CPU-only build (same ABI, DDPM_ERR_UNSUPPORTED). */
#include "internal.h"

const ddpm_backend *ddpm_cuda_backend(void) { return NULL; }
int ddpm_cuda_device_count_internal(void) { return 0; }
