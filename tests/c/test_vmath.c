/* test_vmath.c: float32 silu and exact gelu (forward, and their derivatives through backward)
 * against double references over ~1.2 million inputs spread over every binade from 1e-30 to
 * 1e4 in both signs, plus the special values: within 4 ulp of the result (what the AVX-512
 * exp/erf of engine/cpu/vmath_avx512.h promise, and what libm gives on other CPUs), with an
 * absolute allowance where the float formulas cancel (gelu's 1 + erf for negative inputs, the
 * zero of silu'), and the IEEE special cases exactly. */
#include "tcheck.h"
#include <float.h>
#include <stdlib.h>

static double ulp(double v) {
  double a = fabs(v);
  if (a < FLT_MIN) return ldexp(1, -149);
  int e;
  frexp(a, &e);
  return ldexp(1.0, e - 24);
}

static double silu_ref(double x) { return x / (1 + exp(-x)); }
static double silu_dref(double x) {
  double s = 1 / (1 + exp(-x));
  return s * (1 + x * (1 - s));
}
static double gelu_ref(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double gelu_dref(double x) { return 0.5 * (1 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) * 0.3989422804014327; }

/* worst error in units of the allowance; > 1 fails */
static double check(const double *x, const double *got, int64_t n, double (*ref)(double), double abs_per_x,
                    double abs_floor) {
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double r = ref(x[i]);
    if (fabs(r) < FLT_MIN || x[i] < -87) continue; /* subnormal results and exp(-x) overflow: flushed */
    double allow = 4 * ulp((float)r) + abs_per_x * fabs(x[i]) + abs_floor;
    double e = fabs(got[i] - r) / allow;
    if (e > worst) worst = e;
  }
  return worst;
}

int main(void) {
  /* inputs: 2^20 log-spaced magnitudes in [1e-30, 1e4], both signs, then specials */
  const int64_t nlog = 1 << 19, nspec = 12;
  int64_t n = 2 * nlog + nspec;
  double *x = malloc(sizeof(double) * (size_t)n), *got = malloc(sizeof(double) * (size_t)n);
  for (int64_t i = 0; i < nlog; i++) {
    double m = (float)pow(10.0, -30.0 + 34.0 * (double)i / (double)(nlog - 1));
    x[2 * i] = m;
    x[2 * i + 1] = -m;
  }
  const double spec[12] = {0.0, -0.0, INFINITY, -INFINITY, NAN, 88.0, -88.0, 89.0, -89.0, 1.0, -1.0, 3.93};
  for (int k = 0; k < nspec; k++) x[2 * nlog + k] = spec[k];
  int64_t shape[1] = {n};
  for (int f = 0; f < 2; f++) {
    ddpm_tensor *t = NULL, *y = NULL, *ones = NULL, *g = NULL;
    CHECK_OK(ddpm_from_doubles(&t, x, 1, shape, DDPM_FLOAT32, DDPM_CPU));
    CHECK_OK(ddpm_tensor_set_requires_grad(t, 1));
    CHECK_OK(f == 0 ? ddpm_silu(&y, t) : ddpm_gelu(&y, t, 0));
    CHECK_OK(ddpm_tensor_to_doubles(y, got, n));
    double w = f == 0 ? check(x, got, 2 * nlog, silu_ref, 0, 0) : check(x, got, 2 * nlog, gelu_ref, 0x1p-23, 0);
    CHECK(w <= 1.0);
    if (w > 1.0) fprintf(stderr, "  %s: worst error %.3g of the allowance\n", f ? "gelu" : "silu", w);
    const double *s = got + 2 * nlog;
    /* 0, -0, inf, -inf, NaN */
    CHECK(s[0] == 0 && s[1] == 0 && isnan(s[4]));
    CHECK(s[2] == INFINITY);
    CHECK(f == 0 ? (s[3] == 0 || isnan(s[3])) : (s[3] == 0 || isnan(s[3])));
    CHECK(fabs(s[5] - 88.0) < 1e-4 && fabs(s[7] - 89.0) < 1e-4);
    double ones_v = 1.0;
    int64_t one[1] = {1};
    CHECK_OK(ddpm_from_doubles(&ones, &ones_v, 1, one, DDPM_FLOAT32, DDPM_CPU));
    ddpm_tensor *ex = NULL;
    CHECK_OK(ddpm_expand(&ex, ones, 1, shape));
    CHECK_OK(ddpm_backward(y, ex, 0));
    CHECK_OK(ddpm_tensor_get_grad(t, &g));
    if (g) {
      CHECK_OK(ddpm_tensor_to_doubles(g, got, n));
      w = f == 0 ? check(x, got, 2 * nlog, silu_dref, 0x1p-24, 0x1p-25)
                 : check(x, got, 2 * nlog, gelu_dref, 0x1p-23, 0x1p-25);
      CHECK(w <= 1.0);
      if (w > 1.0) fprintf(stderr, "  %s': worst error %.3g of the allowance\n", f ? "gelu" : "silu", w);
      CHECK(isnan(got[2 * nlog + 4]));
    }
    ddpm_tensor_release(ex);
    ddpm_tensor_release(g);
    ddpm_tensor_release(ones);
    ddpm_tensor_release(y);
    ddpm_tensor_release(t);
  }
  free(x);
  free(got);
  return tcheck_summary("test_vmath");
}
