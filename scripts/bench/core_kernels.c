/* core_kernels.c: the float32 kernels of scripts/bench/core_kernels.lua timed from C (no Lua
 * garbage collector in the loop), for each thread count given.  Not a test: no thresholds.
 * build: gcc -O2 -Iengine/include scripts/bench/core_kernels.c -Lbuild -lddpm -Wl,-rpath,build
 * usage: ./a.out [threads...]      e.g. ./a.out 1 2 4 8 16 */
#include "ddpm.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  int64_t s[4] = {128, 64, 16, 16}, sc[4] = {1, 64, 1, 1}, d023[3] = {0, 2, 3}, d3 = 3, d0 = 0;
  ddpm_tensor *x, *y, *c, *z, *o;
  ddpm_empty(&x, 4, s, DDPM_FLOAT32, DDPM_CPU);
  ddpm_empty(&y, 4, s, DDPM_FLOAT32, DDPM_CPU);
  ddpm_empty(&c, 4, sc, DDPM_FLOAT32, DDPM_CPU);
  ddpm_full(&z, 0, NULL, 2.5, DDPM_FLOAT32, DDPM_CPU);
  ddpm_normal_(x, 0, 1, NULL);
  ddpm_normal_(y, 0, 1, NULL);
  ddpm_normal_(c, 0, 1, NULL);
  double mb = 128.0 * 64 * 16 * 16 * 4 / 1e6;
  for (int a = 1; a < (argc > 1 ? argc : 2); a++) {
    int nt = argc > 1 ? atoi(argv[a]) : 1;
    ddpm_set_num_threads(nt);
    printf("%d thread%s\n", nt, nt == 1 ? "" : "s");
    const int R = 30;
#define B(name, traffic, expr)                                                                    \
  do {                                                                                            \
    expr;                                                                                         \
    ddpm_tensor_release(o);                                                                       \
    double t0 = now();                                                                            \
    for (int i = 0; i < R; i++) {                                                                 \
      expr;                                                                                       \
      ddpm_tensor_release(o);                                                                     \
    }                                                                                             \
    double dt = (now() - t0) / R;                                                                 \
    printf("  %-28s %8.3f ms %7.1f GB/s\n", name, dt * 1e3, (traffic) * mb / 1e3 / dt);          \
  } while (0)
    B("x + y", 3, ddpm_add(&o, x, y));
    B("x * 2.5", 2, ddpm_mul_scalar(&o, x, 2.5));
    B("x * z (0-d)", 2, ddpm_mul(&o, x, z));
    B("x + c [1,C,1,1]", 2, ddpm_add(&o, x, c));
    B("x.exp()", 2, ddpm_exp(&o, x));
    B("x.sum()", 1, ddpm_sum(&o, x, 0, NULL, 0));
    B("x.sum((0,2,3))", 1, ddpm_sum(&o, x, 3, d023, 0));
    B("x.sum(3)", 1, ddpm_sum(&o, x, 1, &d3, 0));
    B("x.sum(0)", 1, ddpm_sum(&o, x, 1, &d0, 0));
    B("x.amax()", 1, ddpm_amax(&o, x, 0, NULL, 0));
  }
  return 0;
}
