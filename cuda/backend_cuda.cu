// backend_cuda.cu: the CUDA backend's device memory, copies and kernel table.
// (Kernels arrive family by family; ops without one report DDPM_ERR_UNSUPPORTED.)
#include <cuda_runtime.h>
extern "C" {
#include "internal.h"
}

static int g_device_count = -1;

extern "C" int ddpm_cuda_device_count_internal(void) {
  if (g_device_count < 0) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      n = 0;
      cudaGetLastError(); // clear the sticky "no device" error
    }
    g_device_count = n;
  }
  return g_device_count;
}

static void *cuda_alloc(size_t nbytes, int device) {
  void *p = nullptr;
  cudaSetDevice(device - DDPM_CUDA0);
  cudaError_t e = cudaMalloc(&p, nbytes ? nbytes : 256);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t freeb = 0, total = 0;
    cudaMemGetInfo(&freeb, &total);
    ddpm_fail_at(DDPM_ERR_OOM, __FILE__, __LINE__, "CUDA out of memory: requested %zu bytes, %zu free of %zu",
                 nbytes, freeb, total);
    return nullptr;
  }
  return p;
}

static void cuda_free(void *p, size_t, int) { cudaFree(p); }

static int cuda_memcpy(void *dst, int dd, const void *src, int sd, size_t n) {
  if (!n) return DDPM_OK;
  cudaMemcpyKind k = dd == DDPM_CPU ? (sd == DDPM_CPU ? cudaMemcpyHostToHost : cudaMemcpyDeviceToHost)
                                    : (sd == DDPM_CPU ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice);
  cudaError_t e = cudaMemcpy(dst, src, n, k);
  if (e != cudaSuccess)
    return ddpm_fail_at(DDPM_ERR_BACKEND, __FILE__, __LINE__, "CUDA copy of %zu bytes failed: %s", n,
                        cudaGetErrorString(e));
  return DDPM_OK;
}

static const ddpm_kernel_fn cuda_kernels[DDPM_OP_COUNT] = {};

static const ddpm_backend cuda_backend = {"cuda", cuda_alloc, cuda_free, cuda_memcpy, cuda_kernels};

extern "C" const ddpm_backend *ddpm_cuda_backend(void) { return &cuda_backend; }
