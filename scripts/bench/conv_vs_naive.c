/* conv_vs_naive.c: ddpm_conv2d (forward, input and weight gradients) against a naive direct
 * convolution loop, in GFLOP/s, at the reference UNet's conv shapes; plus a large sgemm as the
 * BLAS ceiling.  Build and run from the repo root after building libddpm:
 *   gcc -O2 -fopenmp -I engine/include scripts/bench/conv_vs_naive.c -L build -lddpm -lm \
 *       -Wl,-rpath,$PWD/build -o build/conv_vs_naive && build/conv_vs_naive [batch] [reps] */
#include "ddpm.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
static ddpm_tensor *randn(int nd, const int64_t *s, int grad) {
  ddpm_tensor *t = NULL;
  ddpm_empty(&t, nd, s, DDPM_FLOAT32, 0);
  ddpm_normal_(t, 0, 1, NULL);
  if (grad) ddpm_tensor_set_requires_grad(t, 1);
  return t;
}

/* the textbook loop nest, as a compiler sees it without any blocking */
static void naive_conv(const float *x, const float *w, float *y, int N, int C, int H, int W, int O, int k, int s, int p,
                       int Ho, int Wo) {
  for (int n = 0; n < N; n++)
    for (int o = 0; o < O; o++)
      for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
          float acc = 0;
          for (int c = 0; c < C; c++)
            for (int i = 0; i < k; i++) {
              int ih = oh * s - p + i;
              if (ih < 0 || ih >= H) continue;
              for (int j = 0; j < k; j++) {
                int iw = ow * s - p + j;
                if (iw >= 0 && iw < W) acc += x[((n * C + c) * H + ih) * W + iw] * w[((o * C + c) * k + i) * k + j];
              }
            }
          y[((n * O + o) * Ho + oh) * Wo + ow] = acc;
        }
}

int main(int argc, char **argv) {
  int B = argc > 1 ? atoi(argv[1]) : 128, reps = argc > 2 ? atoi(argv[2]) : 5;
  printf("threads %d, batch %d (naive loop: batch 4, one thread)\n", ddpm_get_num_threads(), B);
  {
    int64_t ms[2] = {2048, 2048};
    ddpm_tensor *m = randn(2, ms, 0), *o = NULL;
    double best = 1e9;
    for (int r = 0; r <= reps; r++) {
      double t0 = now();
      ddpm_matmul(&o, m, m);
      ddpm_tensor_release(o);
      if (r) best = fmin(best, now() - t0);
    }
    printf("sgemm 2048^3 (ceiling): %.1f GFLOP/s\n", 2.0 * 2048 * 2048 * 2048 / best / 1e9);
    ddpm_tensor_release(m);
  }
  struct { const char *name; int ci, co, S, k, s, p; } cv[] = {
      {"conv_in 3->64 3x3 16x16", 3, 64, 16, 3, 1, 1},   {"64->64 3x3 16x16", 64, 64, 16, 3, 1, 1},
      {"64->64 3x3 s2 16x16", 64, 64, 16, 3, 2, 1},      {"128->128 3x3 16x16", 128, 128, 16, 3, 1, 1},
      {"192->64 3x3 16x16", 192, 64, 16, 3, 1, 1},       {"128->128 3x3 8x8", 128, 128, 8, 3, 1, 1},
      {"256->128 3x3 8x8", 256, 128, 8, 3, 1, 1},        {"1x1 192->64 16x16", 192, 64, 16, 1, 1, 0},
      {"1x1 256->128 8x8", 256, 128, 8, 1, 1, 0},        {"1x1 128->128 8x8", 128, 128, 8, 1, 1, 0},
      {"conv_out 64->3 3x3 16x16", 64, 3, 16, 3, 1, 1}};
  printf("%-26s %7s %7s %7s %8s %7s %8s\n", "GFLOP/s", "fwd", "bwd-in", "bwd-w", "ms/step", "naive", "speedup");
  for (size_t i = 0; i < sizeof cv / sizeof cv[0]; i++) {
    int k = cv[i].k, S = cv[i].S, So = (S + 2 * cv[i].p - k) / cv[i].s + 1;
    int64_t xs[4] = {B, cv[i].ci, S, S}, ws[4] = {cv[i].co, cv[i].ci, k, k}, bs[1] = {cv[i].co};
    int64_t ys[4] = {B, cv[i].co, So, So}, st[2] = {cv[i].s, cv[i].s}, pd[2] = {cv[i].p, cv[i].p}, dl[2] = {1, 1};
    ddpm_tensor *x = randn(4, xs, 0), *w = randn(4, ws, 0), *b = randn(1, bs, 0), *g = randn(4, ys, 0), *y = NULL;
    double flop = 2.0 * B * cv[i].co * So * So * cv[i].ci * k * k, t[3];
    for (int mode = 0; mode < 3; mode++) { /* 0 forward, 1 + input grad, 2 + weight grad */
      ddpm_tensor_set_requires_grad(x, mode == 1);
      ddpm_tensor_set_requires_grad(w, mode == 2);
      double best = 1e9;
      for (int r = 0; r <= reps; r++) {
        ddpm_tensor_set_grad(x, NULL);
        ddpm_tensor_set_grad(w, NULL);
        double t0 = now();
        ddpm_conv2d(&y, x, w, b, st, pd, dl, 1);
        if (mode) ddpm_backward(y, g, 0);
        ddpm_tensor_release(y);
        if (r) best = fmin(best, now() - t0);
      }
      t[mode] = mode ? best - t[0] : best;
    }
    /* the naive loop on 4 images, scaled */
    int nb = 4;
    float *yn = malloc(sizeof(float) * nb * cv[i].co * So * So);
    double t0 = now();
    naive_conv(ddpm_tensor_data(x), ddpm_tensor_data(w), yn, nb, cv[i].ci, S, S, cv[i].co, k, cv[i].s, cv[i].p, So, So);
    double tn = now() - t0, naive = flop * nb / B / tn / 1e9;
    printf("%-26s %7.1f %7.1f %7.1f %8.1f %7.2f %7.0fx\n", cv[i].name, flop / t[0] / 1e9, flop / t[1] / 1e9,
           flop / t[2] / 1e9, (t[0] + t[1] + t[2]) * 1e3, naive, flop / t[0] / 1e9 / naive);
    free(yn);
    ddpm_tensor_release(x);
    ddpm_tensor_release(w);
    ddpm_tensor_release(b);
    ddpm_tensor_release(g);
  }
  return 0;
}
