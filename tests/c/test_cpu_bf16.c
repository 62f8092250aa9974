/* test_cpu_bf16.c: bfloat16 matmul, linear and conv2d (forward and both gradients) on the CPU
 * against float64 on the same bfloat16 values, for odd sizes and every operand layout.  The
 * binary runs itself again with DDPM_CPU_ISA=avx512 and =generic, so each GEMM path this CPU has
 * (AMX, AVX512-BF16, portable) is checked, and under the sanitizers so is its packing code. */
#include "tref.h"

static ddpm_tensor *as_f64(ddpm_tensor *t) {
  ddpm_tensor *o = NULL;
  CHECK_OK(ddpm_to(&o, t, DDPM_FLOAT64, DDPM_CPU));
  return o;
}

/* max |got - want| <= tol * max |want| (a float32 sum rounded once to bfloat16: tol ~ 2^-8) */
static void check_rel(const char *what, ddpm_tensor *got, ddpm_tensor *want, double tol) {
  int64_t n = ddpm_tensor_numel(want);
  CHECK(ddpm_tensor_numel(got) == n);
  if (ddpm_tensor_numel(got) != n) return;
  double *g = malloc(sizeof(double) * (size_t)(n ? n : 1)), *w = malloc(sizeof(double) * (size_t)(n ? n : 1));
  CHECK_OK(ddpm_tensor_to_doubles(got, g, n));
  CHECK_OK(ddpm_tensor_to_doubles(want, w, n));
  double err = 0, scale = 0;
  for (int64_t i = 0; i < n; i++) {
    err = fmax(err, fabs(g[i] - w[i]));
    scale = fmax(scale, fabs(w[i]));
  }
  if (err > tol * scale + 1e-30) {
    tc_fail++;
    fprintf(stderr, "%s: max |diff| %.4g of max %.4g (rel %.3g > %.3g)\n", what, err, scale, err / scale, tol);
  } else
    tc_pass++;
  free(g);
  free(w);
}

static void check_matmul(int64_t M, int64_t K, int64_t N, int la, int lb, trng *r) {
  int64_t sa[2] = {M, K}, sb[2] = {K, N};
  ddpm_tensor *a = trand(DDPM_BFLOAT16, 2, sa, -1, 1, r, la), *b = trand(DDPM_BFLOAT16, 2, sb, -1, 1, r, lb);
  ddpm_tensor *o = NULL, *a64 = as_f64(a), *b64 = as_f64(b), *ref = NULL;
  CHECK_OK(ddpm_matmul(&o, a, b));
  CHECK_OK(ddpm_matmul(&ref, a64, b64));
  if (o && ref) {
    char what[128];
    snprintf(what, sizeof what, "matmul %lldx%lldx%lld %s x %s", (long long)M, (long long)K, (long long)N,
             layout_name[la], layout_name[lb]);
    CHECK(ddpm_tensor_dtype(o) == DDPM_BFLOAT16);
    check_rel(what, o, ref, 1.0 / 256);
  }
  ddpm_tensor_release(a);
  ddpm_tensor_release(b);
  ddpm_tensor_release(a64);
  ddpm_tensor_release(b64);
  ddpm_tensor_release(o);
  ddpm_tensor_release(ref);
}

static void check_linear(int64_t M, int64_t K, int64_t N, int with_bias, trng *r) {
  int64_t sx[2] = {M, K}, sw[2] = {N, K}, sb[1] = {N};
  ddpm_tensor *x = trand(DDPM_BFLOAT16, 2, sx, -1, 1, r, LAYOUT_CONTIG);
  ddpm_tensor *w = trand(DDPM_BFLOAT16, 2, sw, -1, 1, r, LAYOUT_CONTIG);
  ddpm_tensor *b = with_bias ? trand(DDPM_BFLOAT16, 1, sb, -1, 1, r, LAYOUT_CONTIG) : NULL;
  ddpm_tensor *x64 = as_f64(x), *w64 = as_f64(w), *b64 = b ? as_f64(b) : NULL, *o = NULL, *ref = NULL;
  CHECK_OK(ddpm_linear(&o, x, w, b));
  CHECK_OK(ddpm_linear(&ref, x64, w64, b64));
  if (o && ref) check_rel("linear", o, ref, 1.0 / 256);
  ddpm_tensor *ts[] = {x, w, b, x64, w64, b64, o, ref};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) ddpm_tensor_release(ts[i]);
}

/* y = conv2d(x, w, b), then gradients of sum(y * g) for x, w, b; float64 on the same values */
static void check_conv(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t k, int64_t s, int64_t p,
                       trng *r) {
  int64_t sx[4] = {N, C, H, W}, sw[4] = {O, C, k, k}, sb[1] = {O}, st[2] = {s, s}, pd[2] = {p, p};
  ddpm_tensor *x[2], *w[2], *b[2], *y[2] = {NULL, NULL}, *gy[2], *gx[2] = {NULL, NULL}, *gw[2] = {NULL, NULL},
                                    *gb[2] = {NULL, NULL};
  x[0] = trand(DDPM_BFLOAT16, 4, sx, -1, 1, r, LAYOUT_CONTIG);
  w[0] = trand(DDPM_BFLOAT16, 4, sw, -0.3, 0.3, r, LAYOUT_CONTIG);
  b[0] = trand(DDPM_BFLOAT16, 1, sb, -1, 1, r, LAYOUT_CONTIG);
  x[1] = as_f64(x[0]);
  w[1] = as_f64(w[0]);
  b[1] = as_f64(b[0]);
  for (int v = 0; v < 2; v++) {
    ddpm_tensor_set_requires_grad(x[v], 1);
    ddpm_tensor_set_requires_grad(w[v], 1);
    ddpm_tensor_set_requires_grad(b[v], 1);
    CHECK_OK(ddpm_conv2d(&y[v], x[v], w[v], b[v], st, pd, NULL, 1));
  }
  if (!y[0] || !y[1]) return;
  int64_t sy[4];
  ddpm_tensor_shape(y[0], sy);
  gy[0] = trand(DDPM_BFLOAT16, 4, sy, -1, 1, r, LAYOUT_CONTIG);
  gy[1] = as_f64(gy[0]);
  for (int v = 0; v < 2; v++) {
    CHECK_OK(ddpm_backward(y[v], gy[v], 0));
    CHECK_OK(ddpm_tensor_get_grad(x[v], &gx[v]));
    CHECK_OK(ddpm_tensor_get_grad(w[v], &gw[v]));
    CHECK_OK(ddpm_tensor_get_grad(b[v], &gb[v]));
  }
  char what[160];
  snprintf(what, sizeof what, "conv2d %lldx%lldx%lldx%lld -> %lld, k%lld s%lld p%lld", (long long)N, (long long)C,
           (long long)H, (long long)W, (long long)O, (long long)k, (long long)s, (long long)p);
  check_rel(what, y[0], y[1], 1e-2);
  if (gx[0] && gw[0] && gb[0]) {
    CHECK(ddpm_tensor_dtype(gx[0]) == DDPM_BFLOAT16 && ddpm_tensor_dtype(gw[0]) == DDPM_BFLOAT16);
    check_rel("conv2d input gradient", gx[0], gx[1], 1e-2);
    check_rel("conv2d weight gradient", gw[0], gw[1], 1e-2);
    check_rel("conv2d bias gradient", gb[0], gb[1], 1e-2);
  }
  for (int v = 0; v < 2; v++) {
    ddpm_tensor *ts[] = {x[v], w[v], b[v], y[v], gy[v], gx[v], gw[v], gb[v]};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) ddpm_tensor_release(ts[i]);
  }
}

int main(int argc, char **argv) {
  (void)argc;
  trng r = {20261125};
  const char *path = ddpm_cpu_bf16_kernel(), *want = getenv("TEST_CPU_BF16_EXPECT");
  printf("bfloat16 GEMM path: %s\n", path);
  if (want) CHECK(strcmp(path, want) == 0);
  static const int64_t sizes[][3] = {{1, 1, 1}, {7, 1, 5}, {33, 17, 45}, {100, 70, 37}, {40, 2400, 19}, {2, 3, 130}};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
    for (int la = 0; la < LAYOUT_COUNT; la++)
      for (int lb = 0; lb < LAYOUT_COUNT; lb++) check_matmul(sizes[s][0], sizes[s][1], sizes[s][2], la, lb, &r);
  check_linear(37, 29, 19, 1, &r);
  check_linear(130, 64, 70, 0, &r);
  check_conv(2, 16, 8, 8, 16, 3, 1, 1, &r); /* "same": the shifted-plane packing */
  check_conv(2, 8, 9, 11, 6, 3, 2, 1, &r);  /* stride 2, odd sizes: columns and col2im */
  check_conv(3, 5, 7, 9, 3, 3, 1, 1, &r);
  check_conv(2, 12, 6, 6, 10, 1, 1, 0, &r); /* 1x1: a plain GEMM */
  check_conv(1, 3, 20, 20, 4, 3, 1, 0, &r); /* stride 1, no padding: the input gradient pads by 2 */
  if (!getenv("TEST_CPU_BF16_CHILD") && strcmp(path, "generic") != 0) {
    /* the other paths, each in a fresh process (the path is chosen once per process) */
    static const char *isa[][2] = {{"avx512", "avx512_bf16"}, {"generic", "generic"}};
    for (int i = 0; i < 2; i++) {
      if (!strcmp(isa[i][1], path)) continue;
      char cmd[4096];
      snprintf(cmd, sizeof cmd, "TEST_CPU_BF16_CHILD=1 DDPM_CPU_ISA=%s TEST_CPU_BF16_EXPECT=%s '%s'", isa[i][0],
               isa[i][1], argv[0]);
      fflush(stdout);
      int rc = system(cmd);
      if (rc != 0) fprintf(stderr, "the DDPM_CPU_ISA=%s run failed (status %d)\n", isa[i][0], rc);
      CHECK(rc == 0);
    }
  }
  return tcheck_summary(getenv("TEST_CPU_BF16_CHILD") ? "test_cpu_bf16 (child)" : "test_cpu_bf16");
}
