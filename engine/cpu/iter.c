/* iter.c: broadcasting N-d iteration with coalesced dims, split across OpenMP threads. */
#include "cpu.h"
#include <omp.h>

void cpu_iter_init(cpu_iter *it, int nops, ddpm_tensor *const *ops) {
  const ddpm_tensor *o = ops[0];
  int nd = o->ndim;
  it->nops = nops;
  it->numel = ddpm_shape_numel(nd, o->shape);
  int64_t shape[DDPM_MAX_DIMS], st[DDPM_MAX_IN + 1][DDPM_MAX_DIMS];
  for (int d = 0; d < nd; d++) shape[d] = o->shape[d];
  for (int k = 0; k < nops; k++) {
    const ddpm_tensor *t = ops[k];
    int es = ddpm_dsize(t->dtype), off = nd - t->ndim;
    for (int d = 0; d < nd; d++) {
      int td = d - off;
      st[k][d] = (td < 0 || t->shape[td] == 1) ? 0 : t->strides[td] * es;
    }
    it->base[k] = ddpm_ptr(t);
  }
  /* drop size-1 dims, then merge neighbours that are contiguous for every operand */
  int n = 0;
  for (int d = 0; d < nd; d++) {
    if (shape[d] == 1) continue;
    if (n > 0) {
      bool merge = true;
      for (int k = 0; k < nops; k++)
        if (it->stride[k][n - 1] != st[k][d] * shape[d]) merge = false;
      if (merge) {
        it->shape[n - 1] *= shape[d];
        for (int k = 0; k < nops; k++) it->stride[k][n - 1] = st[k][d];
        continue;
      }
    }
    it->shape[n] = shape[d];
    for (int k = 0; k < nops; k++) it->stride[k][n] = st[k][d];
    n++;
  }
  it->ndim = n;
}

/* Run outer indices [o0, o1) of the iteration, each an inner loop over the last dim. */
static void run_range(const cpu_iter *it, cpu_loop_fn fn, const void *ctx, int64_t o0, int64_t o1,
                      int64_t i0, int64_t i1) {
  int nd = it->ndim, nops = it->nops;
  int64_t idx[DDPM_MAX_DIMS] = {0};
  int64_t rem = o0;
  for (int d = nd - 2; d >= 0; d--) {
    idx[d] = rem % it->shape[d];
    rem /= it->shape[d];
  }
  char *p[DDPM_MAX_IN + 1];
  int64_t s[DDPM_MAX_IN + 1];
  for (int k = 0; k < nops; k++) s[k] = nd ? it->stride[k][nd - 1] : 0;
  for (int64_t o = o0; o < o1; o++) {
    for (int k = 0; k < nops; k++) {
      char *q = it->base[k];
      for (int d = 0; d < nd - 1; d++) q += idx[d] * it->stride[k][d];
      p[k] = q + i0 * s[k];
    }
    fn(p, s, i1 - i0, ctx);
    for (int d = nd - 2; d >= 0; d--) {
      if (++idx[d] < it->shape[d]) break;
      idx[d] = 0;
    }
  }
}

void cpu_iter_run(const cpu_iter *it, cpu_loop_fn fn, const void *ctx) {
  if (it->numel == 0) return;
  int64_t inner = it->ndim ? it->shape[it->ndim - 1] : 1;
  int64_t outer = it->numel / inner;
  int nt = omp_get_max_threads();
  if (it->numel < CPU_PAR_GRAIN || nt <= 1 || omp_in_parallel()) {
    run_range(it, fn, ctx, 0, outer, 0, inner);
    return;
  }
  if (outer >= nt) {
#pragma omp parallel num_threads(nt)
    {
      int t = omp_get_thread_num(), T = omp_get_num_threads();
      int64_t a = outer * t / T, b = outer * (t + 1) / T;
      if (a < b) run_range(it, fn, ctx, a, b, 0, inner);
    }
  } else { /* few long rows: split each row */
    for (int64_t o = 0; o < outer; o++) {
#pragma omp parallel num_threads(nt)
      {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int64_t a = inner * t / T, b = inner * (t + 1) / T;
        if (a < b) run_range(it, fn, ctx, o, o + 1, a, b);
      }
    }
  }
}

void cpu_parallel_for(int64_t n, int64_t grain, void (*body)(int64_t, int64_t, void *), void *ctx) {
  int nt = omp_get_max_threads();
  if (n <= grain || nt <= 1 || omp_in_parallel()) {
    if (n > 0) body(0, n, ctx);
    return;
  }
  int64_t chunks = (n + grain - 1) / grain;
  if (chunks < nt) nt = (int)chunks;
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    int64_t a = n * t / T, b = n * (t + 1) / T;
    if (a < b) body(a, b, ctx);
  }
}

int ddpm_threads(void) { return omp_get_max_threads(); }
