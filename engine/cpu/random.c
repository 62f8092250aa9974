/* random.c: CPU random fills.  Element i of a draw uses Philox counter (base + i), so the CUDA
 * kernels, which compute the same function per element, produce identical streams. */
#include "cpu.h"
#include <math.h>

/* The per-element mappings live in random_map.h so CPU and CUDA share them verbatim. */
#include "random_map.h"

typedef struct {
  ddpm_tensor *out;
  const ddpm_tensor *probs;
  uint64_t seed, base;
  double a, b;
  int op;
} rnd_ctx;

static void rnd_body(int64_t lo, int64_t hi, void *vctx) {
  rnd_ctx *c = vctx;
  char *o = ddpm_ptr(c->out);
  int dt = c->out->dtype, es = ddpm_dsize(dt);
  for (int64_t i = lo; i < hi; i++) {
    uint32_t r[4];
    ddpm_philox(c->seed, c->base + (uint64_t)i, r);
    double v;
    switch (c->op) {
    case DDPM_OP_UNIFORM:
      if (dt == DDPM_FLOAT32) {
        *(float *)(o + i * 4) = ddpm_rand_uniform_f32(r, (float)c->a, (float)c->b);
        continue;
      }
      v = ddpm_rand_uniform_f64(r, c->a, c->b);
      break;
    case DDPM_OP_NORMAL:
      v = dt == DDPM_FLOAT64 ? ddpm_rand_normal_f64(r) : ddpm_rand_normal(r);
      v = c->a + c->b * v;
      break;
    case DDPM_OP_RANDINT: v = (double)ddpm_rand_int(r, (int64_t)c->a, (int64_t)c->b); break;
    default: { /* bernoulli */
      double p = ddpm_load_as_double(ddpm_ptr(c->probs) + i * ddpm_dsize(c->probs->dtype), c->probs->dtype);
      v = ddpm_rand_u53(r) < p ? 1.0 : 0.0;
    }
    }
    if (dt == DDPM_INT64 && c->op == DDPM_OP_RANDINT)
      *(int64_t *)(o + i * 8) = ddpm_rand_int(r, (int64_t)c->a, (int64_t)c->b);
    else
      ddpm_store_from_double(o + i * es, dt, v);
  }
}

/* out contiguous; i[0] seed, i[1] base counter; f[0], f[1] parameters; in[0] probs (bernoulli) */
static int run_random(ddpm_call *c) {
  rnd_ctx ctx = {c->out[0], c->in[0], (uint64_t)c->i[0], (uint64_t)c->i[1], c->f[0], c->f[1], c->op};
  cpu_parallel_for(ddpm_tensor_numel(c->out[0]), 16384, rnd_body, &ctx);
  return DDPM_OK;
}
int cpu_UNIFORM(ddpm_call *c) { return run_random(c); }
int cpu_NORMAL(ddpm_call *c) { return run_random(c); }
int cpu_RANDINT(ddpm_call *c) { return run_random(c); }
int cpu_BERNOULLI(ddpm_call *c) { return run_random(c); }
