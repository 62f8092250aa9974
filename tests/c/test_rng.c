/* test_rng.c: the Philox generators: determinism for a seed, independence of the thread count
 * and of the destination's layout, (seed, offset) state round trips, rough distribution checks
 * and error statuses. */
#include "tref.h"

enum { N = 200000 };

static ddpm_tensor *draw(int kind, int dt, int64_t n, ddpm_generator *g) {
  ddpm_tensor *t = NULL;
  CHECK_OK(ddpm_empty(&t, 1, &n, dt, DDPM_CPU));
  switch (kind) {
  case 0: CHECK_OK(ddpm_uniform_(t, 2, 5, g)); break;
  case 1: CHECK_OK(ddpm_normal_(t, 1, 2, g)); break;
  default: CHECK_OK(ddpm_randint_(t, -3, 7, g)); break;
  }
  return t;
}

static int same_bytes(const ddpm_tensor *a, const ddpm_tensor *b) {
  int64_t n = ddpm_tensor_numel(a);
  return n == ddpm_tensor_numel(b) && ddpm_tensor_dtype(a) == ddpm_tensor_dtype(b) &&
         memcmp(ddpm_tensor_data(a), ddpm_tensor_data(b), (size_t)(n * ddpm_dtype_size(ddpm_tensor_dtype(a)))) == 0;
}

static void moments(const ddpm_tensor *t, double *mean, double *var, double *mn, double *mx) {
  int64_t n = ddpm_tensor_numel(t);
  double s = 0, s2 = 0;
  *mn = INFINITY;
  *mx = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    double v = tget(t, &i);
    s += v;
    s2 += v * v;
    if (v < *mn) *mn = v;
    if (v > *mx) *mx = v;
  }
  *mean = s / n;
  *var = s2 / n - *mean * *mean;
}

static void test_determinism_and_threads(void) {
  static const int dts[] = {DDPM_FLOAT32, DDPM_FLOAT64, DDPM_FLOAT16, DDPM_BFLOAT16};
  for (int kind = 0; kind < 3; kind++)
    for (size_t k = 0; k < 4; k++) {
      int dt = kind == 2 ? (k < 2 ? DDPM_INT64 : DDPM_INT32) : dts[k];
      ddpm_generator *g1 = NULL, *g2 = NULL;
      CHECK_OK(ddpm_generator_new(&g1, 1234));
      CHECK_OK(ddpm_generator_new(&g2, 1234));
      ddpm_set_num_threads(1);
      ddpm_tensor *a = draw(kind, dt, N, g1);
      ddpm_set_num_threads(2);
      ddpm_tensor *b = draw(kind, dt, N, g2);
      CHECK(same_bytes(a, b)); /* same seed, different thread counts: the same stream */
      CHECK(ddpm_generator_offset(g1) == (uint64_t)N && ddpm_generator_offset(g2) == (uint64_t)N);
      ddpm_tensor *c = draw(kind, dt, N, g2);
      CHECK(!same_bytes(b, c)); /* the stream moves on */
      ddpm_generator_manual_seed(g1, 99);
      ddpm_tensor *d = draw(kind, dt, N, g1);
      CHECK(!same_bytes(a, d)); /* another seed, another stream */
      ddpm_tensor_release(a);
      ddpm_tensor_release(b);
      ddpm_tensor_release(c);
      ddpm_tensor_release(d);
      ddpm_generator_free(g1);
      ddpm_generator_free(g2);
    }
}

static void test_state(void) {
  ddpm_generator *g = NULL;
  CHECK_OK(ddpm_generator_new(&g, 7));
  ddpm_tensor *a = draw(1, DDPM_FLOAT32, 1000, g);
  uint64_t seed = ddpm_generator_seed(g), off = ddpm_generator_offset(g);
  CHECK(seed == 7 && off == 1000);
  ddpm_tensor *b = draw(1, DDPM_FLOAT32, 500, g);
  ddpm_tensor *c = draw(0, DDPM_FLOAT32, 10, g);
  ddpm_generator_set_state(g, seed, off); /* rewind to just after a */
  ddpm_tensor *b2 = draw(1, DDPM_FLOAT32, 500, g);
  ddpm_tensor *c2 = draw(0, DDPM_FLOAT32, 10, g);
  CHECK(same_bytes(b, b2) && same_bytes(c, c2));
  /* drawing 1000 then 500 equals the tail of one draw of 1500 */
  ddpm_generator_set_state(g, 7, 0);
  ddpm_tensor *all = draw(1, DDPM_FLOAT32, 1500, g), *tail = NULL;
  CHECK_OK(ddpm_slice(&tail, all, 0, 1000, 1500, 1));
  ddpm_tensor *tc = NULL;
  CHECK_OK(ddpm_contiguous(&tc, tail));
  CHECK(same_bytes(tc, b));
  /* the default generator follows manual_seed */
  ddpm_generator *dg = ddpm_default_generator();
  ddpm_generator_manual_seed(dg, 7);
  ddpm_tensor *a2 = draw(1, DDPM_FLOAT32, 1000, NULL);
  CHECK(same_bytes(a, a2));
  CHECK(ddpm_generator_offset(dg) == 1000);
  ddpm_tensor *ts[] = {a, b, c, b2, c2, all, tail, tc, a2};
  for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) ddpm_tensor_release(ts[k]);
  ddpm_generator_free(g);
  ddpm_generator_free(dg); /* a no-op for the default generator */
}

/* a strided destination receives the values a contiguous one would, in logical order */
static void test_layout(void) {
  ddpm_generator *g = NULL;
  CHECK_OK(ddpm_generator_new(&g, 5));
  int64_t s[2] = {30, 40};
  ddpm_tensor *c = NULL, *base = NULL, *v = NULL;
  CHECK_OK(ddpm_empty(&c, 2, s, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_normal_(c, 0, 1, g));
  int64_t bs[2] = {40, 30};
  CHECK_OK(ddpm_empty(&base, 2, bs, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_transpose(&v, base, 0, 1));
  ddpm_generator_set_state(g, 5, 0);
  CHECK_OK(ddpm_normal_(v, 0, 1, g));
  int64_t idx[2] = {0};
  int bad = 0;
  do ELEM(bad, tget(v, idx), tget(c, idx), 0, "normal_ into a transposed view");
  while (next_index(2, s, idx));
  CHECK_CASE(bad, "normal_ into a transposed view");
  ddpm_tensor_release(v);
  ddpm_tensor_release(base);
  ddpm_tensor_release(c);
  ddpm_generator_free(g);
}

static void test_distributions(void) {
  ddpm_generator *g = NULL;
  CHECK_OK(ddpm_generator_new(&g, 2024));
  double mean, var, mn, mx;
  static const int dts[] = {DDPM_FLOAT32, DDPM_FLOAT64, DDPM_FLOAT16, DDPM_BFLOAT16};
  for (int k = 0; k < 4; k++) {
    ddpm_tensor *u = draw(0, dts[k], N, g), *nrm = draw(1, dts[k], N, g);
    moments(u, &mean, &var, &mn, &mx);
    CHECK_NEAR(mean, 3.5, 0.02);
    CHECK_NEAR(var, 0.75, 0.02);
    CHECK(mn >= 2 && mx <= 5 && (dts[k] >= DDPM_FLOAT16 || mx < 5));
    moments(nrm, &mean, &var, &mn, &mx);
    CHECK_NEAR(mean, 1, 0.03);
    CHECK_NEAR(var, 4, 0.08);
    CHECK(mn < -5 && mx > 7); /* tails are there (about 3 sigma) */
    ddpm_tensor_release(u);
    ddpm_tensor_release(nrm);
  }
  /* randint: every value of [-3, 7) about equally often, nothing outside */
  ddpm_tensor *ri = draw(2, DDPM_INT64, N, g);
  int64_t counts[10] = {0}, outside = 0;
  for (int64_t i = 0; i < N; i++) {
    double v = tget(ri, &i);
    if (v < -3 || v >= 7 || v != floor(v)) outside++;
    else counts[(int)v + 3]++;
  }
  CHECK(outside == 0);
  for (int k = 0; k < 10; k++) CHECK_NEAR(counts[k] / (double)N, 0.1, 0.005);
  ddpm_tensor_release(ri);
  /* bernoulli with a per-element probability */
  int64_t n = N;
  ddpm_tensor *p = NULL, *b = NULL;
  CHECK_OK(ddpm_full(&p, 1, &n, 0.3, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_bernoulli(&b, p, g));
  moments(b, &mean, &var, &mn, &mx);
  CHECK_NEAR(mean, 0.3, 0.005);
  CHECK(mn == 0 && mx == 1 && ddpm_tensor_dtype(b) == DDPM_FLOAT32);
  ddpm_tensor_release(b);
  ddpm_tensor_release(p);
  double pv[4] = {0, 1, 0, 1};
  int64_t four = 4;
  CHECK_OK(ddpm_from_doubles(&p, pv, 1, &four, DDPM_FLOAT64, DDPM_CPU));
  CHECK_OK(ddpm_bernoulli(&b, p, g));
  double bv[4];
  CHECK_OK(ddpm_tensor_to_doubles(b, bv, 4));
  CHECK(bv[0] == 0 && bv[1] == 1 && bv[2] == 0 && bv[3] == 1);
  ddpm_tensor_release(b);
  ddpm_tensor_release(p);
  ddpm_generator_free(g);
}

static void test_randperm_multinomial(void) {
  ddpm_generator *g = NULL;
  CHECK_OK(ddpm_generator_new(&g, 3));
  for (int64_t n = 0; n <= 1000; n += 250) {
    ddpm_tensor *p = NULL;
    CHECK_OK(ddpm_randperm(&p, n, DDPM_INT64, DDPM_CPU, g));
    if (!p) continue;
    char seen[1001] = {0};
    int ok = ddpm_tensor_numel(p) == n;
    for (int64_t i = 0; ok && i < n; i++) {
      double v = tget(p, &i);
      if (v < 0 || v >= n || seen[(int)v]) ok = 0;
      else seen[(int)v] = 1;
    }
    CHECK(ok);
    ddpm_tensor_release(p);
  }
  ddpm_tensor *p1 = NULL, *p2 = NULL;
  ddpm_generator_set_state(g, 11, 0);
  CHECK_OK(ddpm_randperm(&p1, 50, DDPM_INT32, DDPM_CPU, g));
  ddpm_generator_set_state(g, 11, 0);
  CHECK_OK(ddpm_randperm(&p2, 50, DDPM_INT32, DDPM_CPU, g));
  CHECK(same_bytes(p1, p2) && ddpm_tensor_dtype(p1) == DDPM_INT32);
  ddpm_tensor_release(p1);
  ddpm_tensor_release(p2);

  /* with replacement: frequencies follow the (unnormalised) weights; zero weight never drawn */
  double w[4] = {1, 2, 0, 7};
  int64_t four = 4;
  ddpm_tensor *pr = NULL, *s = NULL;
  CHECK_OK(ddpm_from_doubles(&pr, w, 1, &four, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_multinomial(&s, pr, 50000, 1, g));
  int64_t cnt[4] = {0}, outside = 0;
  for (int64_t i = 0; s && i < 50000; i++) {
    double v = tget(s, &i);
    if (v < 0 || v > 3) outside++;
    else cnt[(int)v]++;
  }
  CHECK(outside == 0 && cnt[2] == 0);
  CHECK_NEAR(cnt[0] / 50000.0, 0.1, 0.01);
  CHECK_NEAR(cnt[1] / 50000.0, 0.2, 0.01);
  CHECK_NEAR(cnt[3] / 50000.0, 0.7, 0.01);
  ddpm_tensor_release(s);
  /* without replacement: distinct categories, only those with weight */
  CHECK_OK(ddpm_multinomial(&s, pr, 3, 0, g));
  double sv[3];
  CHECK_OK(ddpm_tensor_to_doubles(s, sv, 3));
  CHECK(sv[0] != sv[1] && sv[1] != sv[2] && sv[0] != sv[2] && sv[0] != 2 && sv[1] != 2 && sv[2] != 2);
  ddpm_tensor_release(s);
  ddpm_tensor *o = NULL;
  CHECK(ddpm_multinomial(&o, pr, 4, 0, g) == DDPM_ERR_ARGUMENT); /* only three categories have mass */
  CHECK(ddpm_multinomial(&o, pr, 5, 0, g) == DDPM_ERR_ARGUMENT);
  CHECK(ddpm_multinomial(&o, pr, 0, 1, g) == DDPM_ERR_ARGUMENT);
  ddpm_tensor_release(pr);
  /* rows of a 2-D weight matrix are sampled independently */
  double w2[6] = {1, 0, 0, 0, 0, 1};
  int64_t s23[2] = {2, 3};
  CHECK_OK(ddpm_from_doubles(&pr, w2, 2, s23, DDPM_FLOAT64, DDPM_CPU));
  CHECK_OK(ddpm_multinomial(&s, pr, 5, 1, g));
  double m[10];
  CHECK_OK(ddpm_tensor_to_doubles(s, m, 10));
  int rows_ok = 1;
  for (int i = 0; i < 5; i++) rows_ok &= m[i] == 0 && m[5 + i] == 2;
  CHECK(rows_ok && ddpm_tensor_dtype(s) == DDPM_INT64);
  ddpm_tensor_release(s);
  ddpm_tensor_release(pr);
  double neg[2] = {1, -1};
  int64_t two = 2;
  CHECK_OK(ddpm_from_doubles(&pr, neg, 1, &two, DDPM_FLOAT32, DDPM_CPU));
  CHECK(ddpm_multinomial(&o, pr, 1, 1, g) == DDPM_ERR_ARGUMENT);
  ddpm_tensor_release(pr);
  ddpm_generator_free(g);
}

static void test_errors(void) {
  int64_t n = 4;
  ddpm_tensor *i = NULL, *f = NULL, *o = NULL;
  CHECK_OK(ddpm_empty(&i, 1, &n, DDPM_INT64, DDPM_CPU));
  CHECK_OK(ddpm_empty(&f, 1, &n, DDPM_FLOAT32, DDPM_CPU));
  CHECK(ddpm_uniform_(i, 0, 1, NULL) == DDPM_ERR_DTYPE);
  CHECK(ddpm_normal_(i, 0, 1, NULL) == DDPM_ERR_DTYPE);
  CHECK(ddpm_uniform_(f, 2, 1, NULL) == DDPM_ERR_ARGUMENT);
  CHECK(ddpm_normal_(f, 0, -1, NULL) == DDPM_ERR_ARGUMENT);
  CHECK(ddpm_randint_(i, 5, 5, NULL) == DDPM_ERR_ARGUMENT);
  CHECK(ddpm_bernoulli(&o, i, NULL) == DDPM_ERR_DTYPE);
  CHECK(ddpm_randperm(&o, -1, DDPM_INT64, DDPM_CPU, NULL) == DDPM_ERR_ARGUMENT);
  CHECK(ddpm_uniform_(NULL, 0, 1, NULL) == DDPM_ERR_ARGUMENT);
  ddpm_tensor_release(i);
  ddpm_tensor_release(f);
}

int main(void) {
  test_determinism_and_threads();
  test_state();
  test_layout();
  test_distributions();
  test_randperm_multinomial();
  test_errors();
  return tcheck_summary("test_rng");
}
