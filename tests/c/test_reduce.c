/* test_reduce.c: sum, amax, amin over every set of dims (keepdim or not), argmax/argmin,
 * max/min with indices, mean and var with corrections, against naive loops, over all dtypes and
 * non-contiguous inputs, plus the large shapes that take the multi-threaded paths. */
#include "tref.h"

enum { R_SUM, R_AMAX, R_AMIN, R_MEAN, R_VAR };

/* naive reduction of x over the dims in mask, for the output element at kept index oidx
 * (an index into the keepdim-shaped output) */
static double naive(int op, const ddpm_tensor *x, uint32_t mask, const int64_t *kidx, double correction) {
  int64_t shape[8], idx[8], rshape[8];
  int nd = ddpm_tensor_shape(x, shape);
  for (int d = 0; d < nd; d++) {
    rshape[d] = ((mask >> d) & 1) ? shape[d] : 1;
    idx[d] = ((mask >> d) & 1) ? 0 : kidx[d];
  }
  double acc = 0, best = op == R_AMAX ? -INFINITY : INFINITY, n = 0;
  int64_t r[8] = {0};
  int first = 1;
  do {
    for (int d = 0; d < nd; d++)
      if ((mask >> d) & 1) idx[d] = r[d];
    double v = tget(x, idx);
    acc += v;
    n++;
    if (first || (op == R_AMAX ? v > best : v < best) || v != v) {
      if (best == best) best = v;
    }
    first = 0;
  } while (nd && next_index(nd, rshape, r));
  if (op == R_SUM) return acc;
  if (op == R_MEAN) return acc / n;
  if (op == R_VAR) {
    double m = acc / n, s = 0;
    memset(r, 0, sizeof r);
    do {
      for (int d = 0; d < nd; d++)
        if ((mask >> d) & 1) idx[d] = r[d];
      double v = tget(x, idx) - m;
      s += v * v;
    } while (nd && next_index(nd, rshape, r));
    return s / (n - correction > 0 ? n - correction : 0);
  }
  return best;
}

static int red_out_dtype(int op, int dt) {
  if (op == R_SUM) return is_fdt(dt) ? dt : DDPM_INT64;
  return dt;
}

static double red_tol(int op, int odt, double want, double absum) {
  if (op == R_AMAX || op == R_AMIN) return 0;
  if (!is_fdt(odt)) return 0;
  double t = dtype_tol(odt, want) + dtype_tol(odt, absum) * (op == R_SUM ? 0.01 : 0);
  if (op == R_VAR && odt == DDPM_FLOAT16) t = 2e-2 * fabs(want) + 1e-2;
  if (op == R_VAR && odt == DDPM_BFLOAT16) t = 6e-2 * fabs(want) + 3e-2;
  if (op == R_MEAN && odt >= DDPM_FLOAT16) t *= 2;
  return t;
}

static void check_reduction(int op, ddpm_tensor *x, uint32_t mask, int keepdim, double correction, const char *what) {
  int64_t xs[8], dims[8];
  int nd = ddpm_tensor_shape(x, xs), ndims = 0, dt = ddpm_tensor_dtype(x);
  for (int d = 0; d < nd; d++)
    if ((mask >> d) & 1) dims[ndims++] = d - (d % 2) * nd; /* odd dims given as negative numbers */
  ddpm_tensor *o = NULL;
  int st;
  switch (op) {
  case R_SUM: st = ddpm_sum(&o, x, ndims, dims, keepdim); break;
  case R_AMAX: st = ddpm_amax(&o, x, ndims, dims, keepdim); break;
  case R_AMIN: st = ddpm_amin(&o, x, ndims, dims, keepdim); break;
  case R_MEAN: st = ddpm_mean(&o, x, ndims, dims, keepdim); break;
  default: st = ddpm_var(&o, x, ndims, dims, correction, keepdim); break;
  }
  if (ndims == 0) mask = (1u << nd) - 1; /* an empty list means every dim */
  CHECK_OK(st);
  if (st) return;
  int odt = red_out_dtype(op, dt);
  int64_t kshape[8], oshape[8];
  int on = 0;
  for (int d = 0; d < nd; d++) {
    kshape[d] = ((mask >> d) & 1) ? 1 : xs[d];
    if (keepdim || !((mask >> d) & 1)) oshape[on++] = kshape[d];
  }
  CHECK(ddpm_tensor_dtype(o) == odt && same_shape_as(o, on, oshape));
  int64_t k[8] = {0}, oi[8];
  int bad = 0;
  do {
    int j = 0;
    for (int d = 0; d < nd; d++)
      if (keepdim || !((mask >> d) & 1)) oi[j++] = k[d];
    double want = ref_store(odt, naive(op, x, mask, k, correction));
    double absum = op == R_SUM ? fabs(naive(R_SUM, x, mask, k, 0)) : 0;
    ELEM(bad, tget(o, oi), want, red_tol(op, odt, want, absum), "%s mask %x keepdim %d %s", what, mask, keepdim,
         dt_name(dt));
  } while (nd && next_index(nd, kshape, k));
  CHECK_CASE(bad, "%s mask %x keepdim %d %s", what, mask, keepdim, dt_name(dt));
  ddpm_tensor_release(o);
}

static void test_dim_sets(void) {
  trng r = {21};
  int64_t shape[4] = {3, 4, 2, 5};
  for (int di = 0; di < 8; di++) {
    int dt = all_dtypes[di];
    for (int lay = 0; lay < LAYOUT_COUNT; lay++) {
      ddpm_tensor *x = trand(dt, 4, shape, -3, 3, &r, lay);
      for (uint32_t mask = 0; mask < 16; mask++)
        for (int keep = 0; keep < 2; keep++) {
          check_reduction(R_SUM, x, mask, keep, 0, "sum");
          check_reduction(R_AMAX, x, mask, keep, 0, "amax");
          check_reduction(R_AMIN, x, mask, keep, 0, "amin");
          if (is_fdt(dt) && (mask % 3 == 0 || lay == 0)) {
            check_reduction(R_MEAN, x, mask, keep, 0, "mean");
            check_reduction(R_VAR, x, mask, keep, mask & 1 ? 0 : 1, "var");
          }
        }
      ddpm_tensor_release(x);
    }
  }
  /* var with a fractional correction; mean of an integer tensor is refused */
  ddpm_tensor *x = trand(DDPM_FLOAT64, 4, shape, -3, 3, &r, 0), *o = NULL;
  check_reduction(R_VAR, x, 0x5, 1, 2.5, "var correction 2.5");
  ddpm_tensor_release(x);
  x = trand(DDPM_INT64, 4, shape, -3, 3, &r, 0);
  CHECK(ddpm_mean(&o, x, 0, NULL, 0) == DDPM_ERR_DTYPE);
  CHECK(ddpm_var(&o, x, 0, NULL, 1, 0) == DDPM_ERR_DTYPE);
  ddpm_tensor_release(x);
}

/* argmax/argmin (first index of the extreme, NaN counts as the extreme), and max/min with dim */
static void test_arg(void) {
  trng r = {22};
  int64_t shape[3] = {4, 5, 6};
  for (int di = 0; di < 8; di++) {
    int dt = all_dtypes[di];
    for (int lay = 0; lay < LAYOUT_COUNT; lay++) {
      ddpm_tensor *x = trand(dt, 3, shape, -2, 2, &r, lay); /* small range: many ties */
      for (int ismax = 0; ismax < 2; ismax++)
        for (int d = 0; d < 3; d++)
          for (int keep = 0; keep < 2; keep++) {
            ddpm_tensor *ai = NULL, *v = NULL, *vi = NULL;
            CHECK_OK((ismax ? ddpm_argmax : ddpm_argmin)(&ai, x, d - (d == 2 ? 3 : 0), keep, 0));
            CHECK_OK((ismax ? ddpm_max_dim : ddpm_min_dim)(&v, &vi, x, d, keep));
            if (!ai || !v || !vi) continue;
            CHECK(ddpm_tensor_dtype(ai) == DDPM_INT64 && ddpm_tensor_dtype(vi) == DDPM_INT64 &&
                  ddpm_tensor_dtype(v) == dt);
            CHECK(ddpm_tensor_ndim(ai) == (keep ? 3 : 2) && ddpm_tensor_ndim(v) == (keep ? 3 : 2));
            int64_t k[3] = {0}, ks[3] = {4, 5, 6}, oi[3];
            ks[d] = 1;
            int bad = 0;
            do {
              int64_t idx[3] = {k[0], k[1], k[2]}, best = 0;
              double bv = 0;
              for (int64_t i = 0; i < shape[d]; i++) {
                idx[d] = i;
                double val = tget(x, idx);
                if (i == 0 || (ismax ? val > bv : val < bv)) bv = val, best = i;
              }
              int j = 0;
              for (int e = 0; e < 3; e++)
                if (keep || e != d) oi[j++] = k[e];
              ELEM(bad, tget(ai, oi), (double)best, 0, "arg%s dim %d %s", ismax ? "max" : "min", d, dt_name(dt));
              ELEM(bad, tget(vi, oi), (double)best, 0, "%s dim %d indices %s", ismax ? "max" : "min", d, dt_name(dt));
              ELEM(bad, tget(v, oi), bv, 0, "%s dim %d values %s", ismax ? "max" : "min", d, dt_name(dt));
            } while (next_index(3, ks, k));
            CHECK_CASE(bad, "arg%s dim %d keep %d %s %s", ismax ? "max" : "min", d, keep, dt_name(dt), layout_name[lay]);
            ddpm_tensor_release(ai);
            ddpm_tensor_release(v);
            ddpm_tensor_release(vi);
          }
      /* over the flattened tensor, with and without keepdim */
      for (int ismax = 0; ismax < 2; ismax++)
        for (int keep = 0; keep < 2; keep++) {
          ddpm_tensor *ai = NULL;
          CHECK_OK((ismax ? ddpm_argmax : ddpm_argmin)(&ai, x, 0, keep, 1));
          if (!ai) continue;
          CHECK(ddpm_tensor_ndim(ai) == (keep ? 3 : 0));
          int64_t k[3] = {0}, flat = 0, best = 0;
          double bv = 0;
          do {
            double val = tget(x, k);
            if (flat == 0 || (ismax ? val > bv : val < bv)) bv = val, best = flat;
            flat++;
          } while (next_index(3, shape, k));
          double got = 0;
          CHECK_OK(ddpm_tensor_item(ai, &got));
          CHECK(got == (double)best);
          ddpm_tensor_release(ai);
        }
      ddpm_tensor_release(x);
    }
  }
  /* NaN is the extreme for argmax, argmin, amax and amin alike */
  double v[5] = {1, NAN, 3, -2, 0};
  int64_t five = 5;
  ddpm_tensor *x = NULL, *o = NULL;
  CHECK_OK(ddpm_from_doubles(&x, v, 1, &five, DDPM_FLOAT32, DDPM_CPU));
  double got;
  CHECK_OK(ddpm_argmax(&o, x, 0, 0, 1));
  CHECK_OK(ddpm_tensor_item(o, &got));
  CHECK(got == 1);
  ddpm_tensor_release(o);
  CHECK_OK(ddpm_argmin(&o, x, 0, 0, 0));
  CHECK_OK(ddpm_tensor_item(o, &got));
  CHECK(got == 1);
  ddpm_tensor_release(o);
  CHECK_OK(ddpm_amin(&o, x, 0, NULL, 0));
  CHECK_OK(ddpm_tensor_item(o, &got));
  CHECK(isnan(got));
  ddpm_tensor_release(o);
  ddpm_tensor_release(x);
}

/* 0-d inputs, empty dims, and reductions of empty tensors */
static void test_edges(void) {
  ddpm_tensor *s = NULL, *o = NULL, *e = NULL;
  double got;
  CHECK_OK(ddpm_full(&s, 0, NULL, 4.5, DDPM_FLOAT32, DDPM_CPU));
  int64_t d0 = 0, dm1 = -1;
  CHECK_OK(ddpm_sum(&o, s, 1, &d0, 0));
  CHECK_OK(ddpm_tensor_item(o, &got));
  CHECK(got == 4.5 && ddpm_tensor_ndim(o) == 0);
  ddpm_tensor_release(o);
  CHECK_OK(ddpm_amax(&o, s, 1, &dm1, 1));
  CHECK(ddpm_tensor_ndim(o) == 0);
  ddpm_tensor_release(o);
  int64_t d1 = 1;
  CHECK(ddpm_sum(&o, s, 1, &d1, 0) == DDPM_ERR_INDEX);
  int64_t es[2] = {0, 3};
  CHECK_OK(ddpm_empty(&e, 2, es, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_sum(&o, e, 1, &d0, 0));
  double z[3] = {1, 1, 1};
  CHECK_OK(ddpm_tensor_to_doubles(o, z, 3));
  CHECK(z[0] == 0 && z[1] == 0 && z[2] == 0 && same_shape_as(o, 1, es + 1));
  ddpm_tensor_release(o);
  CHECK(ddpm_amax(&o, e, 1, &d0, 0) == DDPM_ERR_SHAPE);
  CHECK(ddpm_argmax(&o, e, 0, 0, 1) == DDPM_ERR_SHAPE);
  int64_t twice[2] = {1, -1};
  ddpm_tensor *m = NULL;
  int64_t ms[2] = {2, 3};
  CHECK_OK(ddpm_empty(&m, 2, ms, DDPM_FLOAT32, DDPM_CPU));
  CHECK(ddpm_sum(&o, m, 2, twice, 0) == DDPM_ERR_ARGUMENT); /* the same dim twice */
  ddpm_tensor_release(m);
  ddpm_tensor_release(e);
  ddpm_tensor_release(s);
  /* the vectorised extrema: NaN anywhere in a long run wins; infinities are ordinary values */
  int64_t n = 1003;
  double *v = malloc(sizeof(double) * (size_t)n);
  for (int64_t i = 0; i < n; i++) v[i] = sin((double)i);
  v[500] = INFINITY;
  v[501] = -INFINITY;
  ddpm_tensor *big = NULL;
  CHECK_OK(ddpm_from_doubles(&big, v, 1, &n, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_amax(&o, big, 0, NULL, 0));
  CHECK_OK(ddpm_tensor_item(o, &got));
  CHECK(got == INFINITY);
  ddpm_tensor_release(o);
  CHECK_OK(ddpm_amin(&o, big, 0, NULL, 0));
  CHECK_OK(ddpm_tensor_item(o, &got));
  CHECK(got == -INFINITY);
  ddpm_tensor_release(o);
  ddpm_tensor_release(big);
  v[777] = NAN;
  CHECK_OK(ddpm_from_doubles(&big, v, 1, &n, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_amax(&o, big, 0, NULL, 0));
  CHECK_OK(ddpm_tensor_item(o, &got));
  CHECK(isnan(got));
  ddpm_tensor_release(o);
  CHECK_OK(ddpm_amin(&o, big, 0, NULL, 0));
  CHECK_OK(ddpm_tensor_item(o, &got));
  CHECK(isnan(got));
  ddpm_tensor_release(o);
  ddpm_tensor_release(big);
  free(v);
}

/* shapes big enough for the threaded and column-sum paths */
static void test_large(void) {
  trng r = {23};
  int64_t shape[4] = {16, 3, 32, 32};
  static const uint32_t masks[] = {0xf, 0xd, 0x1, 0x8, 0xc, 0x3, 0x2};
  for (int di = 0; di < 2; di++)
    for (size_t k = 0; k < sizeof masks / sizeof masks[0]; k++)
      for (int lay = 0; lay < 2; lay++) {
        ddpm_tensor *x = trand(di ? DDPM_FLOAT64 : DDPM_FLOAT32, 4, shape, -1, 1, &r, lay);
        check_reduction(R_SUM, x, masks[k], k & 1, 0, "large sum");
        if (k < 3) {
          check_reduction(R_AMAX, x, masks[k], 0, 0, "large amax");
          check_reduction(R_MEAN, x, masks[k], 1, 0, "large mean");
          check_reduction(R_VAR, x, masks[k], 0, 1, "large var");
        }
        ddpm_tensor_release(x);
      }
  /* a long single row and many short rows */
  int64_t row[1] = {300001}, cols[2] = {70000, 3};
  ddpm_tensor *x = trand(DDPM_FLOAT32, 1, row, -1, 1, &r, 0);
  check_reduction(R_SUM, x, 1, 0, 0, "long row sum");
  check_reduction(R_AMIN, x, 1, 0, 0, "long row amin");
  ddpm_tensor_release(x);
  x = trand(DDPM_FLOAT32, 2, cols, -1, 1, &r, 0);
  check_reduction(R_SUM, x, 2, 0, 0, "short rows sum");
  check_reduction(R_SUM, x, 1, 0, 0, "column sum");
  ddpm_tensor_release(x);
}

int main(void) {
  ddpm_set_num_threads(2);
  test_dim_sets();
  test_arg();
  test_edges();
  /* the threaded paths (split rows, columns, rows) against the same naive loops */
  for (int nt = 1; nt <= 5; nt += 2) {
    ddpm_set_num_threads(nt);
    test_large();
  }
  return tcheck_summary("test_reduce");
}
