/* test_nn_conv.c: conv2d forward, input gradient and weight/bias gradients against naive loops
 * in double, at shapes big enough to take every kernel path (images across threads and one image
 * with threaded BLAS, the lockstep im2col of "same" 3x3 convolutions, strided/dilated/grouped
 * im2col, 1x1 convolutions without im2col; in float32 on AVX-512 the Winograd F(2x2, 3x3)
 * kernels: whole 8x8 planes, 16-wide row pairs, generic row segments, partial tile blocks,
 * channel counts that are not multiples of the 8/16-lane panels, and the weight gradient's
 * fallback for large images), in float32 and float64. */
#include "tcheck.h"
#include <stdlib.h>

static uint64_t rng = 88172645463325252ull;
static double urand(void) { /* xorshift: fixed values, no dependence on the engine's RNG */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static ddpm_tensor *make(int nd, const int64_t *shape, double *vals, int dtype, int grad) {
  int64_t n = 1;
  for (int i = 0; i < nd; i++) n *= shape[i];
  for (int64_t i = 0; i < n; i++) vals[i] = urand();
  ddpm_tensor *t = NULL;
  CHECK_OK(ddpm_from_doubles(&t, vals, nd, shape, dtype, DDPM_CPU));
  if (grad) CHECK_OK(ddpm_tensor_set_requires_grad(t, 1));
  return t;
}

typedef struct {
  int64_t N, C, H, W, O, kh, kw, s[2], p[2], d[2], g;
  int bias;
} conv_case;

static double max_rel_err(const double *a, const double *b, int64_t n) {
  double worst = 0, scale = 1e-30;
  for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
  for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]) / scale);
  return worst;
}

static void run_case(const conv_case *cs, int dtype) {
  int64_t Ho = (cs->H + 2 * cs->p[0] - cs->d[0] * (cs->kh - 1) - 1) / cs->s[0] + 1;
  int64_t Wo = (cs->W + 2 * cs->p[1] - cs->d[1] * (cs->kw - 1) - 1) / cs->s[1] + 1;
  int64_t Cg = cs->C / cs->g, Og = cs->O / cs->g;
  int64_t xs[4] = {cs->N, cs->C, cs->H, cs->W}, ws[4] = {cs->O, Cg, cs->kh, cs->kw}, bs[1] = {cs->O};
  int64_t ys[4] = {cs->N, cs->O, Ho, Wo};
  int64_t nx = cs->N * cs->C * cs->H * cs->W, nw = cs->O * Cg * cs->kh * cs->kw, ny = cs->N * cs->O * Ho * Wo;
  double *xv = malloc(sizeof(double) * nx), *wv = malloc(sizeof(double) * nw), *bv = malloc(sizeof(double) * cs->O);
  double *gv = malloc(sizeof(double) * ny), *yref = calloc(ny, sizeof(double));
  double *gxref = calloc(nx, sizeof(double)), *gwref = calloc(nw, sizeof(double)), *gbref = calloc(cs->O, sizeof(double));
  double *got = malloc(sizeof(double) * (nx > ny ? (nx > nw ? nx : nw) : (ny > nw ? ny : nw)));
  ddpm_tensor *x = make(4, xs, xv, dtype, 1), *w = make(4, ws, wv, dtype, 1);
  ddpm_tensor *b = cs->bias ? make(1, bs, bv, dtype, 1) : NULL, *g = make(4, ys, gv, dtype, 0), *y = NULL;
  for (int64_t n = 0; n < cs->N; n++)
    for (int64_t o = 0; o < cs->O; o++)
      for (int64_t oh = 0; oh < Ho; oh++)
        for (int64_t ow = 0; ow < Wo; ow++) {
          int64_t ye = ((n * cs->O + o) * Ho + oh) * Wo + ow;
          double acc = cs->bias ? bv[o] : 0, gy = gv[ye];
          gbref[o] += gy;
          for (int64_t ci = 0; ci < Cg; ci++) {
            int64_t c = (o / Og) * Cg + ci;
            for (int64_t ki = 0; ki < cs->kh; ki++) {
              int64_t ih = oh * cs->s[0] - cs->p[0] + ki * cs->d[0];
              if (ih < 0 || ih >= cs->H) continue;
              for (int64_t kj = 0; kj < cs->kw; kj++) {
                int64_t iw = ow * cs->s[1] - cs->p[1] + kj * cs->d[1];
                if (iw < 0 || iw >= cs->W) continue;
                int64_t xe = ((n * cs->C + c) * cs->H + ih) * cs->W + iw, we = ((o * Cg + ci) * cs->kh + ki) * cs->kw + kj;
                acc += xv[xe] * wv[we];
                gxref[xe] += gy * wv[we];
                gwref[we] += gy * xv[xe];
              }
            }
          }
          yref[ye] = acc;
        }
  double tol = dtype == DDPM_FLOAT32 ? 2e-5 : 1e-12;
  CHECK_OK(ddpm_conv2d(&y, x, w, b, cs->s, cs->p, cs->d, cs->g));
  if (y) {
    CHECK_OK(ddpm_tensor_to_doubles(y, got, ny));
    double e = max_rel_err(got, yref, ny);
    CHECK(e < tol);
    if (e >= tol) fprintf(stderr, "  forward N%lld C%lld O%lld: rel err %g\n", (long long)cs->N, (long long)cs->C, (long long)cs->O, e);
    CHECK_OK(ddpm_backward(y, g, 0));
    ddpm_tensor *gx = NULL, *gw = NULL, *gb = NULL;
    CHECK_OK(ddpm_tensor_get_grad(x, &gx));
    CHECK_OK(ddpm_tensor_get_grad(w, &gw));
    if (gx) {
      CHECK_OK(ddpm_tensor_to_doubles(gx, got, nx));
      e = max_rel_err(got, gxref, nx);
      CHECK(e < tol);
      if (e >= tol) fprintf(stderr, "  grad input: rel err %g\n", e);
    }
    if (gw) {
      CHECK_OK(ddpm_tensor_to_doubles(gw, got, nw));
      e = max_rel_err(got, gwref, nw);
      CHECK(e < tol);
      if (e >= tol) fprintf(stderr, "  grad weight: rel err %g\n", e);
    }
    CHECK(gx && gw);
    if (b) {
      CHECK_OK(ddpm_tensor_get_grad(b, &gb));
      CHECK(gb != NULL);
      if (gb) {
        CHECK_OK(ddpm_tensor_to_doubles(gb, got, cs->O));
        CHECK(max_rel_err(got, gbref, cs->O) < tol);
      }
    }
    ddpm_tensor_release(gx);
    ddpm_tensor_release(gw);
    ddpm_tensor_release(gb);
  }
  ddpm_tensor_release(y);
  ddpm_tensor_release(x);
  ddpm_tensor_release(w);
  ddpm_tensor_release(b);
  ddpm_tensor_release(g);
  free(xv); free(wv); free(bv); free(gv); free(yref); free(gxref); free(gwref); free(gbref); free(got);
}

static void test_errors(void) {
  int64_t xs[4] = {2, 3, 8, 8}, ws[4] = {4, 2, 3, 3}, one[2] = {1, 1}, zero[2] = {0, 0};
  double v[512];
  ddpm_tensor *x = make(4, xs, v, DDPM_FLOAT32, 0), *w = make(4, ws, v, DDPM_FLOAT32, 0), *y = NULL;
  CHECK(ddpm_conv2d(&y, x, w, NULL, one, zero, one, 1) == DDPM_ERR_SHAPE);
  CHECK(strstr(ddpm_last_error(), "has 3 channels") != NULL);
  CHECK(ddpm_conv2d(&y, x, w, NULL, one, zero, one, 2) == DDPM_ERR_ARGUMENT);
  CHECK(strstr(ddpm_last_error(), "groups=2 does not divide the 3 input channels") != NULL);
  CHECK(ddpm_conv2d(&y, x, NULL, NULL, one, zero, one, 1) == DDPM_ERR_ARGUMENT);
  CHECK(ddpm_conv2d(&y, x, w, NULL, zero, zero, one, 1) == DDPM_ERR_ARGUMENT);
  ddpm_tensor_release(x);
  ddpm_tensor_release(w);
}

int main(void) {
  conv_case cases[] = {
      {4, 16, 16, 16, 24, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 1}, /* "same" 3x3: lockstep im2col, images on threads */
      {1, 16, 16, 16, 24, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 1}, /* one image: threaded BLAS */
      {3, 12, 16, 16, 8, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, 1},  /* the UNet's downsampler */
      {2, 12, 9, 11, 6, 3, 2, {1, 2}, {2, 0}, {2, 1}, 3, 1},   /* strided, dilated, grouped */
      {3, 32, 8, 8, 16, 1, 1, {1, 1}, {0, 0}, {1, 1}, 1, 1},   /* 1x1: a plain GEMM */
      {2, 8, 8, 8, 8, 1, 1, {1, 1}, {0, 0}, {1, 1}, 2, 0},     /* grouped 1x1 */
      {2, 3, 16, 16, 16, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 1},  /* conv_in */
      {2, 16, 16, 16, 3, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 1},  /* conv_out */
      {2, 4, 5, 5, 4, 5, 5, {1, 1}, {4, 4}, {1, 1}, 1, 1},     /* padding larger than half the kernel */
      {1, 256, 40, 40, 3, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 1}, /* big image: several column blocks */
      {2, 160, 41, 37, 2, 3, 3, {2, 1}, {2, 1}, {2, 1}, 2, 1}, /* blocks with stride, dilation, groups */
      {5, 24, 8, 8, 40, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 1},   /* Winograd: 8x8 planes, a partial block */
      {33, 16, 8, 8, 16, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0},  /* many blocks across threads, no bias */
      {3, 24, 7, 5, 12, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 1},   /* odd sizes: row segments, half panel */
      {2, 16, 14, 16, 16, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 1}, /* 16 wide, rows not in pairs of tile rows */
      {2, 9, 6, 3, 17, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 1},    /* channels off the 8/16 lanes */
      {2, 16, 32, 32, 8, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 1},  /* 32x32: wide segments, largest gradient blocks */
      {1, 8, 34, 34, 8, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 1},   /* beyond the Winograd gradient's image size */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    run_case(&cases[i], DDPM_FLOAT32);
    run_case(&cases[i], DDPM_FLOAT64);
  }
  test_errors();
  return tcheck_summary("test_nn_conv");
}
