/* nn_misc.c: CPU kernels of the small nn ops (dropout, pointwise losses, nll_loss, one_hot) and
 * the per-thread scratch buffers the nn kernels share. */
#include "nn_cpu.h"
#include <math.h>

/* ---- scratch --------------------------------------------------------------------------------- */
void *cpu_buf_reserve(cpu_buf *b, size_t nbytes) {
  if (b->p && b->n >= nbytes) return b->p;
  free(b->p);
  b->p = NULL;
  b->n = 0;
  size_t n = (nbytes + 63) & ~(size_t)63;
  if (posix_memalign(&b->p, 64, n ? n : 64)) {
    b->p = NULL;
    return NULL;
  }
  b->n = n;
  return b->p;
}

static _Thread_local cpu_buf scratch[4];

void *cpu_scratch(int slot, size_t nbytes) {
  if (slot < 0 || slot > 3) return NULL;
  return cpu_buf_reserve(&scratch[slot], nbytes);
}

/* ---- dropout --------------------------------------------------------------------------------- */
typedef struct {
  const char *x, *mask;
  char *y;
  uint8_t *mout;
  uint64_t seed, base;
  double p;
  bool f32, bwd;
} drop_ctx;

#include "random_map.h"

static void drop_range(int64_t lo, int64_t hi, void *vctx) {
  drop_ctx *c = vctx;
  double sd = 1.0 / (1.0 - c->p);
  float sf = (float)sd;
  for (int64_t e = lo; e < hi; e++) {
    bool keep;
    if (c->bwd) keep = c->mask[e] != 0;
    else {
      uint32_t r[4];
      ddpm_philox(c->seed, c->base + (uint64_t)e, r);
      keep = ddpm_rand_u53(r) >= c->p;
      c->mout[e] = keep;
    }
    if (c->f32) ((float *)c->y)[e] = keep ? ((const float *)c->x)[e] * sf : 0.0f;
    else ((double *)c->y)[e] = keep ? ((const double *)c->x)[e] * sd : 0.0;
  }
}

/* DROPOUT: in[0] x; out[0] y, out[1] mask (bool); i[0] seed, i[1] base; f[0] p.
 * DROPOUT_BWD: in[0] gy, in[1] mask; out[0] gx; f[0] p. */
static int drop_run(ddpm_call *c, bool bwd) {
  ddpm_tensor *x = c->in[0];
  DDPM_TRY(cpu_nn_dtype("dropout", x->dtype));
  drop_ctx k = {ddpm_ptr(x), bwd ? ddpm_ptr(c->in[1]) : NULL, ddpm_ptr(c->out[0]),
                bwd ? NULL : (uint8_t *)ddpm_ptr(c->out[1]), (uint64_t)c->i[0], (uint64_t)c->i[1], c->f[0],
                x->dtype == DDPM_FLOAT32, bwd};
  cpu_parallel_for(ddpm_tensor_numel(x), 16384, drop_range, &k);
  return DDPM_OK;
}
int cpu_DROPOUT(ddpm_call *c) { return drop_run(c, false); }
int cpu_DROPOUT_BWD(ddpm_call *c) { return drop_run(c, true); }

/* ---- pointwise losses: mse, l1, smooth_l1 -------------------------------------------------------------- */
enum { LOSS_MSE = 0, LOSS_L1 = 1, LOSS_SMOOTH_L1 = 2 };

#define LOSS_OF(d, kind, beta)                                                       \
  ((kind) == LOSS_MSE  ? (d) * (d)                                                   \
   : (kind) == LOSS_L1 ? fabs(d)                                                     \
   : fabs(d) < (beta)  ? 0.5 * (d) * (d) / (beta)                                    \
                       : fabs(d) - 0.5 * (beta))
/* derivative of the loss in d (PyTorch: sign(0) = 0 for l1) */
#define DLOSS_OF(d, kind, beta)                                                      \
  ((kind) == LOSS_MSE  ? 2 * (d)                                                     \
   : (kind) == LOSS_L1 ? (double)(((d) > 0) - ((d) < 0))                             \
   : fabs(d) < (beta)  ? (d) / (beta)                                                \
                       : (double)(((d) > 0) - ((d) < 0)))

typedef struct {
  const char *x, *t, *g;
  char *y;
  int kind, red;
  double beta, n, *part; /* n: the element count ('mean' divides by it) */
  bool f32;
} loss_ctx;

/* forward: elementwise losses ('none') or per-thread double partial sums */
static void loss_range(int64_t lo, int64_t hi, void *vctx) {
  loss_ctx *c = vctx;
  double s = 0;
  if (c->f32) {
    const float *x = (const float *)c->x, *t = (const float *)c->t;
    for (int64_t e = lo; e < hi; e++) {
      float d = x[e] - t[e];
      float l = c->kind == LOSS_MSE ? d * d : (float)LOSS_OF((double)d, c->kind, c->beta);
      if (c->red == DDPM_REDUCTION_NONE) ((float *)c->y)[e] = l;
      else s += l;
    }
  } else {
    const double *x = (const double *)c->x, *t = (const double *)c->t;
    for (int64_t e = lo; e < hi; e++) {
      double d = x[e] - t[e], l = LOSS_OF(d, c->kind, c->beta);
      if (c->red == DDPM_REDUCTION_NONE) ((double *)c->y)[e] = l;
      else s += l;
    }
  }
  if (c->part) c->part[omp_get_thread_num()] += s;
}

static int loss_fwd(ddpm_call *c, int kind) {
  ddpm_tensor *x = c->in[0], *t = c->in[1], *y = c->out[0];
  DDPM_TRY(cpu_nn_dtype(ddpm_opname(c->op), x->dtype));
  int red = (int)c->i[0];
  int64_t n = ddpm_tensor_numel(x);
  double part[256] = {0};
  loss_ctx k = {ddpm_ptr(x), ddpm_ptr(t), NULL, ddpm_ptr(y), kind, red, c->f[0], (double)n,
                red == DDPM_REDUCTION_NONE ? NULL : part, x->dtype == DDPM_FLOAT32};
  if (omp_get_max_threads() > 256) loss_range(0, n, &k); /* partials are indexed by thread */
  else cpu_parallel_for(n, 32768, loss_range, &k);
  if (red != DDPM_REDUCTION_NONE) {
    double s = 0;
    for (int i = 0; i < 256; i++) s += part[i];
    if (red == DDPM_REDUCTION_MEAN) s = n ? s / (double)n : NAN;
    ddpm_store_from_double(ddpm_ptr(y), y->dtype, s);
  }
  return DDPM_OK;
}
int cpu_MSE_LOSS(ddpm_call *c) { return loss_fwd(c, LOSS_MSE); }
int cpu_L1_LOSS(ddpm_call *c) { return loss_fwd(c, LOSS_L1); }
int cpu_SMOOTH_L1_LOSS(ddpm_call *c) { return loss_fwd(c, LOSS_SMOOTH_L1); }

/* gx = loss'(x - t) * g (g one value for 'mean'/'sum', where 'mean' also divides by n) */
static void loss_bwd_range(int64_t lo, int64_t hi, void *vctx) {
  loss_ctx *c = vctx;
  double n = c->n, beta = c->beta;
  if (c->f32) {
    const float *x = (const float *)c->x, *t = (const float *)c->t, *g = (const float *)c->g;
    float *gx = (float *)c->y;
    float gs = c->red == DDPM_REDUCTION_NONE ? 0.0f : (float)(c->red == DDPM_REDUCTION_MEAN ? g[0] / n : g[0]);
    for (int64_t e = lo; e < hi; e++) {
      float d = x[e] - t[e], ge = c->red == DDPM_REDUCTION_NONE ? g[e] : gs;
      gx[e] = (c->kind == LOSS_MSE ? 2.0f * d : (float)DLOSS_OF((double)d, c->kind, beta)) * ge;
    }
  } else {
    const double *x = (const double *)c->x, *t = (const double *)c->t, *g = (const double *)c->g;
    double *gx = (double *)c->y;
    double gs = c->red == DDPM_REDUCTION_NONE ? 0.0 : (c->red == DDPM_REDUCTION_MEAN ? g[0] / n : g[0]);
    for (int64_t e = lo; e < hi; e++) {
      double d = x[e] - t[e], ge = c->red == DDPM_REDUCTION_NONE ? g[e] : gs;
      gx[e] = DLOSS_OF(d, c->kind, beta) * ge;
    }
  }
}

/* LOSS_BWD: in[0] gy, in[1] x, in[2] t; out[0] gx; i[0] reduction, i[1] kind; f[0] beta */
int cpu_LOSS_BWD(ddpm_call *c) {
  ddpm_tensor *x = c->in[1];
  DDPM_TRY(cpu_nn_dtype("loss backward", x->dtype));
  int64_t n = ddpm_tensor_numel(x);
  loss_ctx k = {ddpm_ptr(x), ddpm_ptr(c->in[2]), ddpm_ptr(c->in[0]), ddpm_ptr(c->out[0]), (int)c->i[1],
                (int)c->i[0], c->f[0], (double)n, NULL, x->dtype == DDPM_FLOAT32};
  cpu_parallel_for(n, 32768, loss_bwd_range, &k);
  return DDPM_OK;
}

/* ---- nll_loss ----------------------------------------------------------------------------------------------- */
/* input [N, C, S] (log-probabilities), target [N, S] int64, weight [C] or NULL */
static int nll_target(const int64_t *tg, int64_t e, int64_t C, int64_t ignore, int64_t *cls) {
  int64_t t = tg[e];
  *cls = t;
  if (t == ignore) return 0;
  if (t < 0 || t >= C)
    return DDPM_FAIL(DDPM_ERR_INDEX, "nll_loss: target %lld is out of bounds for %lld classes (expected 0..%lld or "
                     "ignore_index %lld)", (long long)t, (long long)C, (long long)(C - 1), (long long)ignore);
  return 1;
}

static void nll_dims(const ddpm_tensor *x, int64_t *N, int64_t *C, int64_t *S) {
  if (x->ndim == 1) {
    *N = 1;
    *C = x->shape[0];
    *S = 1;
    return;
  }
  *N = x->shape[0];
  *C = x->shape[1];
  *S = ddpm_shape_numel(x->ndim - 2, x->shape + 2);
}

/* NLL_LOSS: in[0] input, in[1] target, in[2] weight or NULL; out[0] y ([] or target's shape for
 * 'none'), out[1] total_weight []; i[0] reduction, i[1] ignore_index */
int cpu_NLL_LOSS(ddpm_call *c) {
  ddpm_tensor *x = c->in[0], *w = c->in[2], *y = c->out[0];
  DDPM_TRY(cpu_nn_dtype("nll_loss", x->dtype));
  const int64_t *tg = (const int64_t *)ddpm_ptr(c->in[1]);
  int64_t N, C, S, red = c->i[0], ignore = c->i[1];
  nll_dims(x, &N, &C, &S);
  const char *xp = ddpm_ptr(x), *wp = w ? ddpm_ptr(w) : NULL;
  bool f32 = x->dtype == DDPM_FLOAT32;
  double sum = 0, wsum = 0;
  for (int64_t n = 0; n < N; n++)
    for (int64_t s = 0; s < S; s++) {
      int64_t e = n * S + s, cls;
      int ok = nll_target(tg, e, C, ignore, &cls);
      if (ok < 0 || ok > 1) return ok;
      double l = 0, wt = 0;
      if (ok) {
        wt = wp ? (f32 ? ((const float *)wp)[cls] : ((const double *)wp)[cls]) : 1.0;
        int64_t xi = (n * C + cls) * S + s;
        l = -wt * (f32 ? ((const float *)xp)[xi] : ((const double *)xp)[xi]);
      }
      if (red == DDPM_REDUCTION_NONE) ddpm_store_from_double(ddpm_ptr(y) + e * ddpm_dsize(y->dtype), y->dtype, l);
      sum += l;
      wsum += wt;
    }
  if (red != DDPM_REDUCTION_NONE)
    ddpm_store_from_double(ddpm_ptr(y), y->dtype, red == DDPM_REDUCTION_MEAN ? sum / wsum : sum);
  if (c->out[1]) ddpm_store_from_double(ddpm_ptr(c->out[1]), c->out[1]->dtype, wsum);
  return DDPM_OK;
}

/* NLL_LOSS_BWD: in[0] gy, in[1] target, in[2] weight or NULL, in[3] total_weight; out[0] gx;
 * i[] as NLL_LOSS */
int cpu_NLL_LOSS_BWD(ddpm_call *c) {
  ddpm_tensor *gy = c->in[0], *w = c->in[2], *gx = c->out[0];
  DDPM_TRY(cpu_nn_dtype("nll_loss backward", gx->dtype));
  const int64_t *tg = (const int64_t *)ddpm_ptr(c->in[1]);
  int64_t N, C, S, red = c->i[0], ignore = c->i[1];
  nll_dims(gx, &N, &C, &S);
  int es = ddpm_dsize(gx->dtype);
  memset(ddpm_ptr(gx), 0, (size_t)(ddpm_tensor_numel(gx) * es));
  double tw = ddpm_load_as_double(ddpm_ptr(c->in[3]), c->in[3]->dtype);
  double g0 = red == DDPM_REDUCTION_NONE ? 0 : ddpm_load_as_double(ddpm_ptr(gy), gy->dtype);
  if (red == DDPM_REDUCTION_MEAN) g0 /= tw;
  for (int64_t n = 0; n < N; n++)
    for (int64_t s = 0; s < S; s++) {
      int64_t e = n * S + s, cls;
      int ok = nll_target(tg, e, C, ignore, &cls);
      if (ok < 0 || ok > 1) return ok;
      if (!ok) continue;
      double wt = w ? ddpm_load_as_double(ddpm_ptr(w) + cls * es, w->dtype) : 1.0;
      double g = red == DDPM_REDUCTION_NONE ? ddpm_load_as_double(ddpm_ptr(gy) + e * es, gy->dtype) : g0;
      ddpm_store_from_double(ddpm_ptr(gx) + ((n * C + cls) * S + s) * es, gx->dtype, -wt * g);
    }
  return DDPM_OK;
}

/* ---- one_hot ---------------------------------------------------------------------------------------------------- */
/* ONE_HOT: in[0] index int64 (contiguous); out[0] y int64 [..., num_classes]; i[0] num_classes */
int cpu_ONE_HOT(ddpm_call *c) {
  const int64_t *idx = (const int64_t *)ddpm_ptr(c->in[0]);
  int64_t *y = (int64_t *)ddpm_ptr(c->out[0]), n = ddpm_tensor_numel(c->in[0]), C = c->i[0];
  for (int64_t e = 0; e < n; e++) {
    if (idx[e] < 0) return DDPM_FAIL(DDPM_ERR_INDEX, "one_hot: class values must be non-negative, got %lld", (long long)idx[e]);
    if (idx[e] >= C)
      return DDPM_FAIL(DDPM_ERR_INDEX, "one_hot: class value %lld must be smaller than num_classes %lld",
                       (long long)idx[e], (long long)C);
  }
  memset(y, 0, sizeof(int64_t) * (size_t)(n * C));
  for (int64_t e = 0; e < n; e++) y[e * C + idx[e]] = 1;
  return DDPM_OK;
}
