/* rng.c: generators (seed + counter offset) and the random entry points.  A draw of n values
 * reserves n counters, so results depend only on (seed, offset), never on device or threads. */
#include "internal.h"
#include "random_map.h"
#include <math.h>

/* torch's default seed, so an unseeded program behaves like an unseeded PyTorch one would in
 * spirit (a fixed, documented start) */
static ddpm_generator default_gen = {67280421310721ull, 0};

ddpm_generator *ddpm_default_generator(void) { return &default_gen; }

int ddpm_generator_new(ddpm_generator **out, uint64_t seed) {
  DDPM_TRY(ddpm_check_out("generator_new", out));
  ddpm_generator *g = calloc(1, sizeof *g);
  if (!g) return DDPM_FAIL(DDPM_ERR_OOM, "Generator: out of memory");
  g->seed = seed;
  *out = g;
  return DDPM_OK;
}
void ddpm_generator_free(ddpm_generator *g) {
  if (g && g != &default_gen) free(g);
}
/* A NULL generator means the default one, here as in every random entry point. */
void ddpm_generator_manual_seed(ddpm_generator *g, uint64_t seed) {
  if (!g) g = &default_gen;
  g->seed = seed;
  g->offset = 0;
}
uint64_t ddpm_generator_seed(const ddpm_generator *g) { return (g ? g : &default_gen)->seed; }
uint64_t ddpm_generator_offset(const ddpm_generator *g) { return (g ? g : &default_gen)->offset; }
void ddpm_generator_set_state(ddpm_generator *g, uint64_t seed, uint64_t offset) {
  if (!g) g = &default_gen;
  g->seed = seed;
  g->offset = offset;
}
uint64_t ddpm_generator_reserve(ddpm_generator *g, uint64_t n) {
  uint64_t base = g->offset;
  g->offset += n;
  return base;
}

/* Fill t (any layout) by running op into a contiguous buffer when needed. */
static int random_fill(const char *name, int op, ddpm_tensor *t, ddpm_tensor *probs, double a, double b,
                       ddpm_generator *g) {
  DDPM_TRY(ddpm_check_tensor(name, "self", t));
  DDPM_TRY(ddpm_check_inplace(name, t));
  if (!g) g = &default_gen;
  int64_t n = ddpm_tensor_numel(t);
  ddpm_tensor *dst = t, *tmp = NULL;
  if (!ddpm_tensor_is_contiguous(t)) {
    DDPM_TRY(ddpm_tensor_new(&tmp, t->ndim, t->shape, t->dtype, t->device));
    dst = tmp;
  }
  uint64_t base = ddpm_generator_reserve(g, (uint64_t)n);
  ddpm_call c = {.op = op, .nin = probs ? 1 : 0, .nout = 1, .in = {probs}, .out = {dst}, .f = {a, b},
                 .i = {(int64_t)g->seed, (int64_t)base, (int64_t)(intptr_t)g}}; /* i[2]: CUDA graph replays advance g */
  int st = ddpm_dispatch(&c);
  if (!st && tmp) st = ddpm_copy_(t, tmp);
  ddpm_tensor_release(tmp);
  if (!st) ddpm_bump_version(t);
  return st;
}

int ddpm_uniform_(ddpm_tensor *t, double lo, double hi, ddpm_generator *g) {
  DDPM_TRY(ddpm_check_tensor("uniform_", "self", t));
  if (!ddpm_is_float(t->dtype))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "uniform_: expected a floating point tensor, got %s", ddpm_fmt_tensor(t));
  if (!(lo <= hi)) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "uniform_: expected from %g <= to %g", lo, hi);
  return random_fill("uniform_", DDPM_OP_UNIFORM, t, NULL, lo, hi, g);
}

int ddpm_normal_(ddpm_tensor *t, double mean, double std, ddpm_generator *g) {
  DDPM_TRY(ddpm_check_tensor("normal_", "self", t));
  if (!ddpm_is_float(t->dtype))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "normal_: expected a floating point tensor, got %s", ddpm_fmt_tensor(t));
  if (!(std >= 0)) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "normal_: std must be >= 0, got %g", std);
  return random_fill("normal_", DDPM_OP_NORMAL, t, NULL, mean, std, g);
}

int ddpm_randint_(ddpm_tensor *t, int64_t lo, int64_t hi, ddpm_generator *g) {
  DDPM_TRY(ddpm_check_tensor("randint", "self", t));
  if (lo >= hi)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "randint: expected low < high, got low %lld, high %lld", (long long)lo,
                     (long long)hi);
  return random_fill("randint", DDPM_OP_RANDINT, t, NULL, (double)lo, (double)hi, g);
}

int ddpm_bernoulli(ddpm_tensor **out, ddpm_tensor *probs, ddpm_generator *g) {
  DDPM_TRY(ddpm_check_out("bernoulli", out));
  DDPM_TRY(ddpm_check_tensor("bernoulli", "input", probs));
  if (!ddpm_is_float(probs->dtype))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "bernoulli: probabilities must be floating point, got %s", ddpm_fmt_tensor(probs));
  ddpm_tensor *p = NULL, *o = NULL;
  DDPM_TRY(ddpm_contiguous(&p, probs));
  int st = ddpm_tensor_new(&o, probs->ndim, probs->shape, probs->dtype, probs->device);
  if (!st) {
    bool saved = ddpm_grad_enabled();
    ddpm_set_grad_enabled(0);
    st = random_fill("bernoulli", DDPM_OP_BERNOULLI, o, p, 0, 0, g);
    ddpm_set_grad_enabled(saved);
  }
  ddpm_tensor_release(p);
  if (st) {
    ddpm_tensor_release(o);
    return st;
  }
  *out = o;
  return DDPM_OK;
}

/* Host-side algorithms: both are O(n) sequential by nature and never on a hot path. */
int ddpm_randperm(ddpm_tensor **out, int64_t n, int dtype, int device, ddpm_generator *g) {
  DDPM_TRY(ddpm_check_out("randperm", out));
  if (n < 0) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "randperm: n must be >= 0, got %lld", (long long)n);
  if (dtype != DDPM_INT64 && dtype != DDPM_INT32 && !ddpm_is_float(dtype))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "randperm: unsupported dtype %s", ddpm_dname(dtype));
  if (!g) g = &default_gen;
  ddpm_tensor *h = NULL;
  DDPM_TRY(ddpm_tensor_new(&h, 1, &n, DDPM_INT64, DDPM_CPU));
  int64_t *v = (int64_t *)ddpm_ptr(h);
  for (int64_t i = 0; i < n; i++) v[i] = i;
  uint64_t base = ddpm_generator_reserve(g, (uint64_t)n);
  for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates, counter per position */
    uint32_t r[4];
    ddpm_philox(g->seed, base + (uint64_t)i, r);
    int64_t j = ddpm_rand_int(r, 0, i + 1);
    int64_t tmp = v[i];
    v[i] = v[j];
    v[j] = tmp;
  }
  int st = ddpm_to(out, h, dtype, device);
  ddpm_tensor_release(h);
  return st;
}

int ddpm_multinomial(ddpm_tensor **out, ddpm_tensor *probs, int64_t num_samples, int replacement, ddpm_generator *g) {
  DDPM_TRY(ddpm_check_out("multinomial", out));
  DDPM_TRY(ddpm_check_tensor("multinomial", "input", probs));
  if (probs->ndim != 1 && probs->ndim != 2)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "multinomial: probabilities must be 1-D or 2-D, got %s", ddpm_fmt_tensor(probs));
  int64_t rows = probs->ndim == 2 ? probs->shape[0] : 1, n = probs->shape[probs->ndim - 1];
  if (n == 0) return DDPM_FAIL(DDPM_ERR_SHAPE, "multinomial: no categories in %s", ddpm_fmt_tensor(probs));
  if (num_samples <= 0) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "multinomial: num_samples must be positive");
  if (!replacement && num_samples > n)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "multinomial: cannot draw %lld samples without replacement from %lld categories",
                     (long long)num_samples, (long long)n);
  if (!g) g = &default_gen;
  double *w = malloc(sizeof(double) * (size_t)(rows * n));
  if (!w) return DDPM_FAIL(DDPM_ERR_OOM, "multinomial: out of memory");
  int st = ddpm_tensor_to_doubles(probs, w, rows * n);
  if (st) {
    free(w);
    return st;
  }
  for (int64_t i = 0; i < rows * n; i++)
    if (!(w[i] >= 0) || !isfinite(w[i])) {
      st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "multinomial: probabilities must be finite and >= 0 (found %g)", w[i]);
      free(w);
      return st;
    }
  int64_t shp[2] = {rows, num_samples};
  ddpm_tensor *h = NULL;
  st = ddpm_tensor_new(&h, probs->ndim, probs->ndim == 2 ? shp : &num_samples, DDPM_INT64, DDPM_CPU);
  if (st) {
    free(w);
    return st;
  }
  int64_t *res = (int64_t *)ddpm_ptr(h);
  uint64_t base = ddpm_generator_reserve(g, (uint64_t)(rows * num_samples));
  for (int64_t r = 0; r < rows && !st; r++) {
    double *row = w + r * n;
    for (int64_t s = 0; s < num_samples; s++) {
      double total = 0;
      for (int64_t i = 0; i < n; i++) total += row[i];
      if (total <= 0) {
        st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "multinomial: row %lld has no probability mass left", (long long)r);
        break;
      }
      uint32_t rr[4];
      ddpm_philox(g->seed, base + (uint64_t)(r * num_samples + s), rr);
      double u = ddpm_rand_u53(rr) * total, acc = 0;
      int64_t pick = n - 1;
      for (int64_t i = 0; i < n; i++) {
        acc += row[i];
        if (u < acc && row[i] > 0) {
          pick = i;
          break;
        }
      }
      while (pick > 0 && row[pick] == 0) pick--; /* guard against rounding at the top end */
      res[r * num_samples + s] = pick;
      if (!replacement) row[pick] = 0;
    }
  }
  free(w);
  if (!st) st = ddpm_to(out, h, DDPM_INT64, probs->device);
  ddpm_tensor_release(h);
  return st;
}
