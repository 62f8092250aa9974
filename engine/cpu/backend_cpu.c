/* backend_cpu.c: the CPU backend: aligned host memory, host copies, and its kernel table. */
#include "cpu.h"
#include <cblas.h>
#include <omp.h>

/* 64-byte alignment (one cache line, what AVX-512 loads like), large blocks cached: host_alloc.c */
static void *cpu_alloc(size_t nbytes, int device) { return cpu_host_alloc(nbytes); }
static void cpu_free(void *p, size_t nbytes, int device) { cpu_host_free(p, nbytes); }
static int cpu_memcpy(void *dst, int dd, const void *src, int sd, size_t n) {
  if (dd != DDPM_CPU || sd != DDPM_CPU) {
    const ddpm_backend *cu = ddpm_cuda_backend();
    if (!cu) return DDPM_FAIL(DDPM_ERR_DEVICE, "copy between %s and %s: CUDA is not available",
                              ddpm_fmt_device(sd), ddpm_fmt_device(dd));
    return cu->memcpy(dst, dd, src, sd, n);
  }
  if (n) memmove(dst, src, n);
  return DDPM_OK;
}

#define KTAB_K(n) [DDPM_OP_##n] = cpu_##n,
#define KTAB_N(n) [DDPM_OP_##n] = cpu_##n,
#define KTAB_V(n)
#define DDPM_OP(n, s, kind) KTAB_##kind(n)
static const ddpm_kernel_fn cpu_kernels[DDPM_OP_COUNT] = {
#include "ops.def"
};
#undef DDPM_OP

const ddpm_backend ddpm_cpu_backend = {"cpu", cpu_alloc, cpu_free, cpu_memcpy, cpu_kernels};

extern void openblas_set_num_threads(int);
int ddpm_set_num_threads(int n) {
  if (n < 1) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "set_num_threads: %d threads; expected at least 1", n);
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  return DDPM_OK;
}
int ddpm_get_num_threads(void) { return omp_get_max_threads(); }
