/* cpu.h: the CPU backend's kernel declarations (generated from ops.def) and its strided iterator. */
#ifndef DDPM_CPU_H
#define DDPM_CPU_H
#include "internal.h"

#define DDPM_CPU_DECL_K(n) DDPM_INTERNAL int cpu_##n(ddpm_call *c);
#define DDPM_CPU_DECL_N(n) DDPM_INTERNAL int cpu_##n(ddpm_call *c);
#define DDPM_CPU_DECL_V(n)
#define DDPM_OP(n, s, kind) DDPM_CPU_DECL_##kind(n)
#include "ops.def"
#undef DDPM_OP

/* Elementwise work below this many elements stays on one thread: forking costs ~microseconds. */
#define CPU_PAR_GRAIN 32768

/* An iteration over up to 1 + DDPM_MAX_IN operands broadcast to operand 0's shape, with dims
 * coalesced; strides are in bytes. */
typedef struct {
  int nops, ndim;
  int64_t numel;
  int64_t shape[DDPM_MAX_DIMS];
  int64_t stride[DDPM_MAX_IN + 1][DDPM_MAX_DIMS];
  char *base[DDPM_MAX_IN + 1];
} cpu_iter;

/* inner loop: ptrs[k] point at the first element of operand k, s[k] its byte stride */
typedef void (*cpu_loop_fn)(char **ptrs, const int64_t *s, int64_t n, const void *ctx);

DDPM_INTERNAL void cpu_iter_init(cpu_iter *it, int nops, ddpm_tensor *const *ops);
DDPM_INTERNAL void cpu_iter_run(const cpu_iter *it, cpu_loop_fn fn, const void *ctx);
/* Parallel-for over [0, n) in chunks; body(lo, hi, ctx). */
DDPM_INTERNAL void cpu_parallel_for(int64_t n, int64_t grain, void (*body)(int64_t, int64_t, void *),
                                    void *ctx);
/* Host memory for tensors (64-byte aligned; large freed blocks cached for reuse). */
DDPM_INTERNAL void *cpu_host_alloc(size_t nbytes);
DDPM_INTERNAL void cpu_host_free(void *p, size_t nbytes);
DDPM_INTERNAL void cpu_host_cache_flush(void);
DDPM_INTERNAL size_t cpu_host_cached_bytes(void);
/* Elementwise add_ without any checks, used by optimizers and the engine. */
DDPM_INTERNAL void cpu_copy_strided(ddpm_tensor *dst, const ddpm_tensor *src);
#endif
