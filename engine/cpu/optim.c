/* optim.c: CPU kernels of the fused optimizer ops (Adam/AdamW, SGD, EMA, loss-scaler unscale,
 * total norm, foreach scaling).
 *
 * Work is split into chunks of at most CHUNK elements over all tensors of the call, so one
 * OpenMP loop balances a group of a few huge and many tiny parameters.
 *
 * Rounding follows PyTorch 1.13's single-tensor optimizers as its vectorised (AVX2/AVX-512)
 * CPU kernels compute them, step by step in the parameter's dtype:
 *   add(x, y, alpha=a)       -> fma(y, a, x)          (ufunc add uses vec::fmadd)
 *   mul_(b)                  -> x * b
 *   addcmul_(t1, t2, value)  -> x + (value * t1) * t2 (separate roundings)
 *   addcdiv_(t1, t2, value)  -> x + (value * t1) / t2
 * so fma() is explicit and implicit contraction is switched off for this file (CMakeLists.txt
 * compiles it with -ffp-contract=off -fno-math-errno; without errno, sqrt vectorises).  The loops are
 * cloned for Haswell-class CPUs, where fma is one instruction and the loops vectorise; the
 * default clone calls libm's correctly rounded fma, so every CPU gives the same bits. */
#include "cpu.h"
#include <math.h>
#include <omp.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define OPTIM_CLONES __attribute__((target_clones("default", "arch=haswell")))
#else
#define OPTIM_CLONES
#endif

#define CHUNK ((int64_t)1 << 15)

typedef struct {
  int t;          /* tensor index in the call */
  int64_t lo, hi; /* element range */
} chunk;

/* Chunks covering every tensor of role 0 (list[0..n)). */
static int make_chunks(ddpm_tensor *const *ts, int n, chunk **out, int64_t *nchunks, int64_t *total) {
  int64_t count = 0, sum = 0;
  for (int k = 0; k < n; k++) {
    int64_t e = ddpm_tensor_numel(ts[k]);
    count += (e + CHUNK - 1) / CHUNK;
    sum += e;
  }
  chunk *c = malloc((size_t)(count > 0 ? count : 1) * sizeof *c);
  if (!c) return DDPM_FAIL(DDPM_ERR_OOM, "optimizer: out of host memory for %lld work chunks", (long long)count);
  int64_t j = 0;
  for (int k = 0; k < n; k++) {
    int64_t e = ddpm_tensor_numel(ts[k]);
    for (int64_t lo = 0; lo < e; lo += CHUNK) c[j++] = (chunk){k, lo, lo + CHUNK < e ? lo + CHUNK : e};
  }
  *out = c;
  *nchunks = count;
  *total = sum;
  return DDPM_OK;
}

#define PTR(T, t, lo) ((T *)ddpm_ptr(t) + (lo))

/* ---- Adam / AdamW ------------------------------------------------------------------------------- */
typedef struct {
  double lr, beta1, beta2, eps, wd;
  int amsgrad, maximize, decoupled;
} adam_cfg;

#define NANMAX(a, b) (((a) != (a) || (a) > (b)) ? (a) : (b))

/* The mode flags are compile-time constants of each specialised loop (the body is inlined into
 * one call per combination), so every loop is branch-free and vectorises. */
#define DEFINE_ADAM(T, SFX, FMA, SQRT)                                                                    \
  static inline __attribute__((always_inline)) void adam_body_##SFX(                                     \
      T *restrict p, const T *restrict g, T *restrict m, T *restrict v, T *restrict vmax, int64_t n,      \
      const adam_cfg *c, double step, const int decoupled, const int l2, const int ams) {                \
    const T b1 = (T)c->beta1, omb1 = (T)(1 - c->beta1), b2 = (T)c->beta2, omb2 = (T)(1 - c->beta2);     \
    const T eps = (T)c->eps, wd = (T)c->wd, shrink = (T)(1 - c->lr * c->wd);                              \
    const double bc1 = 1 - pow(c->beta1, step), bc2 = 1 - pow(c->beta2, step);                           \
    const T neg_step = (T)(-(c->lr / bc1)), bc2s = (T)sqrt(bc2);                                         \
    const T sign = c->maximize ? (T)-1 : (T)1;                                                            \
    for (int64_t i = 0; i < n; i++) {                                                                     \
      T gi = sign * g[i], pi = p[i];                                                                      \
      if (decoupled) pi = pi * shrink;                                                                    \
      if (l2) gi = FMA(pi, wd, gi);                                                                       \
      T mi = FMA(gi, omb1, m[i] * b1);                                                                    \
      T vi = v[i] * b2 + (omb2 * gi) * gi;                                                                \
      m[i] = mi;                                                                                          \
      v[i] = vi;                                                                                          \
      if (ams) {                                                                                          \
        vi = NANMAX(vmax[i], vi);                                                                         \
        vmax[i] = vi;                                                                                     \
      }                                                                                                   \
      T denom = SQRT(vi) / bc2s + eps;                                                                    \
      p[i] = pi + (neg_step * mi) / denom;                                                                \
    }                                                                                                     \
  }                                                                                                       \
  OPTIM_CLONES static void adam_##SFX(T *restrict p, const T *restrict g, T *restrict m, T *restrict v,    \
                                      T *restrict vmax, int64_t n, const adam_cfg *c, double step) {      \
    const int dec = c->decoupled, l2 = !c->decoupled && c->wd != 0;                                       \
    if (c->amsgrad) {                                                                                     \
      if (dec) adam_body_##SFX(p, g, m, v, vmax, n, c, step, 1, 0, 1);                                   \
      else if (l2) adam_body_##SFX(p, g, m, v, vmax, n, c, step, 0, 1, 1);                               \
      else adam_body_##SFX(p, g, m, v, vmax, n, c, step, 0, 0, 1);                                       \
    } else {                                                                                              \
      if (dec) adam_body_##SFX(p, g, m, v, vmax, n, c, step, 1, 0, 0);                                   \
      else if (l2) adam_body_##SFX(p, g, m, v, vmax, n, c, step, 0, 1, 0);                               \
      else adam_body_##SFX(p, g, m, v, vmax, n, c, step, 0, 0, 0);                                       \
    }                                                                                                     \
  }
DEFINE_ADAM(float, f32, fmaf, sqrtf)
DEFINE_ADAM(double, f64, fma, sqrt)

int cpu_ADAM_STEP(ddpm_call *c) {
  int n = (int)c->i[0];
  ddpm_tensor *const *L = c->list;
  const double *steps = (const double *)(intptr_t)c->i[2];
  adam_cfg cfg = {c->f[0], c->f[1], c->f[2], c->f[3], c->f[4], (int)(c->i[1] & 1), (int)((c->i[1] >> 1) & 1),
                  (int)((c->i[1] >> 2) & 1)};
  chunk *ch;
  int64_t nch, total;
  DDPM_TRY(make_chunks(L, n, &ch, &nch, &total));
#pragma omp parallel for schedule(dynamic, 1) if (total > CPU_PAR_GRAIN && !omp_in_parallel())
  for (int64_t j = 0; j < nch; j++) {
    int k = ch[j].t;
    int64_t lo = ch[j].lo, len = ch[j].hi - ch[j].lo;
    if (L[k]->dtype == DDPM_FLOAT32)
      adam_f32(PTR(float, L[k], lo), PTR(float, L[n + k], lo), PTR(float, L[2 * n + k], lo),
               PTR(float, L[3 * n + k], lo), PTR(float, L[4 * n + k], lo), len, &cfg, steps[k]);
    else
      adam_f64(PTR(double, L[k], lo), PTR(double, L[n + k], lo), PTR(double, L[2 * n + k], lo),
               PTR(double, L[3 * n + k], lo), PTR(double, L[4 * n + k], lo), len, &cfg, steps[k]);
  }
  free(ch);
  return DDPM_OK;
}

/* ---- SGD ----------------------------------------------------------------------------------------------- */
typedef struct {
  double lr, momentum, dampening, wd;
  int nesterov, maximize;
} sgd_cfg;

#define DEFINE_SGD(T, SFX, FMA)                                                                            \
  static inline __attribute__((always_inline)) void sgd_body_##SFX(                                       \
      T *restrict p, const T *restrict g, T *restrict buf, int64_t n, const sgd_cfg *c, const int fresh,   \
      const int l2, const int use_mom, const int nesterov) {                                               \
    const T wd = (T)c->wd, mom = (T)c->momentum, omd = (T)(1 - c->dampening), neg_lr = (T)(-c->lr);      \
    const T sign = c->maximize ? (T)-1 : (T)1;                                                             \
    for (int64_t i = 0; i < n; i++) {                                                                      \
      T d = sign * g[i], pi = p[i];                                                                        \
      if (l2) d = FMA(pi, wd, d);                                                                          \
      if (use_mom) {                                                                                       \
        T b = fresh ? d : FMA(d, omd, buf[i] * mom);                                                       \
        buf[i] = b;                                                                                        \
        d = nesterov ? FMA(b, mom, d) : b;                                                                 \
      }                                                                                                    \
      p[i] = FMA(d, neg_lr, pi);                                                                           \
    }                                                                                                      \
  }                                                                                                        \
  OPTIM_CLONES static void sgd_##SFX(T *restrict p, const T *restrict g, T *restrict buf, int64_t n,      \
                                     const sgd_cfg *c, int fresh) {                                       \
    const int l2 = c->wd != 0;                                                                             \
    if (c->momentum == 0) {                                                                                \
      if (l2) sgd_body_##SFX(p, g, buf, n, c, 0, 1, 0, 0);                                                \
      else sgd_body_##SFX(p, g, buf, n, c, 0, 0, 0, 0);                                                   \
    } else if (fresh) {                                                                                    \
      if (c->nesterov) sgd_body_##SFX(p, g, buf, n, c, 1, l2, 1, 1);                                      \
      else sgd_body_##SFX(p, g, buf, n, c, 1, l2, 1, 0);                                                  \
    } else if (c->nesterov) {                                                                              \
      if (l2) sgd_body_##SFX(p, g, buf, n, c, 0, 1, 1, 1);                                                \
      else sgd_body_##SFX(p, g, buf, n, c, 0, 0, 1, 1);                                                   \
    } else {                                                                                               \
      if (l2) sgd_body_##SFX(p, g, buf, n, c, 0, 1, 1, 0);                                                \
      else sgd_body_##SFX(p, g, buf, n, c, 0, 0, 1, 0);                                                   \
    }                                                                                                      \
  }
DEFINE_SGD(float, f32, fmaf)
DEFINE_SGD(double, f64, fma)

int cpu_SGD_STEP(ddpm_call *c) {
  int n = (int)c->i[0];
  ddpm_tensor *const *L = c->list;
  const int32_t *fresh = (const int32_t *)(intptr_t)c->i[2];
  sgd_cfg cfg = {c->f[0], c->f[1], c->f[2], c->f[3], (int)(c->i[1] & 1), (int)((c->i[1] >> 1) & 1)};
  chunk *ch;
  int64_t nch, total;
  DDPM_TRY(make_chunks(L, n, &ch, &nch, &total));
#pragma omp parallel for schedule(dynamic, 1) if (total > CPU_PAR_GRAIN && !omp_in_parallel())
  for (int64_t j = 0; j < nch; j++) {
    int k = ch[j].t;
    int64_t lo = ch[j].lo, len = ch[j].hi - ch[j].lo;
    int f = fresh ? fresh[k] != 0 : 0;
    if (L[k]->dtype == DDPM_FLOAT32)
      sgd_f32(PTR(float, L[k], lo), PTR(float, L[n + k], lo), PTR(float, L[2 * n + k], lo), len, &cfg, f);
    else
      sgd_f64(PTR(double, L[k], lo), PTR(double, L[n + k], lo), PTR(double, L[2 * n + k], lo), len, &cfg, f);
  }
  free(ch);
  return DDPM_OK;
}

/* ---- EMA: s -= (1 - decay) * (s - p), as diffusers' EMAModel.step ---------------------------------- */
#define DEFINE_EMA(T, SFX)                                                                                   \
  OPTIM_CLONES static void ema_##SFX(T *restrict s, const T *restrict p, int64_t n, double decay) {       \
    const T omd = (T)(1 - decay);                                                                            \
    for (int64_t i = 0; i < n; i++) s[i] = s[i] - omd * (s[i] - p[i]);                                       \
  }
DEFINE_EMA(float, f32)
DEFINE_EMA(double, f64)

int cpu_EMA_UPDATE(ddpm_call *c) {
  int n = (int)c->i[0];
  ddpm_tensor *const *L = c->list;
  chunk *ch;
  int64_t nch, total;
  DDPM_TRY(make_chunks(L, n, &ch, &nch, &total));
#pragma omp parallel for schedule(dynamic, 1) if (total > CPU_PAR_GRAIN && !omp_in_parallel())
  for (int64_t j = 0; j < nch; j++) {
    int k = ch[j].t;
    int64_t lo = ch[j].lo, len = ch[j].hi - ch[j].lo;
    if (L[k]->dtype == DDPM_FLOAT32)
      ema_f32(PTR(float, L[k], lo), PTR(float, L[n + k], lo), len, c->f[0]);
    else
      ema_f64(PTR(double, L[k], lo), PTR(double, L[n + k], lo), len, c->f[0]);
  }
  free(ch);
  return DDPM_OK;
}

/* ---- loss-scaler unscale: x *= inv_scale, noting any inf/NaN ------------------------------------------ */
#define DEFINE_UNSCALE(T, SFX)                                                                              \
  OPTIM_CLONES static int unscale_##SFX(T *restrict x, int64_t n, double inv_scale) {                     \
    const T s = (T)inv_scale;                                                                                \
    int bad = 0;                                                                                             \
    for (int64_t i = 0; i < n; i++) {                                                                        \
      T v = x[i];                                                                                            \
      bad |= (v - v) != (v - v); /* inf - inf and NaN - NaN are NaN; finite - itself is 0 */               \
      x[i] = v * s;                                                                                          \
    }                                                                                                        \
    return bad;                                                                                              \
  }
DEFINE_UNSCALE(float, f32)
DEFINE_UNSCALE(double, f64)

int cpu_AMP_UNSCALE(ddpm_call *c) {
  int n = (int)c->i[0];
  ddpm_tensor *const *L = c->list;
  chunk *ch;
  int64_t nch, total;
  DDPM_TRY(make_chunks(L, n, &ch, &nch, &total));
  int found = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : found) if (total > CPU_PAR_GRAIN && !omp_in_parallel())
  for (int64_t j = 0; j < nch; j++) {
    int k = ch[j].t;
    int64_t lo = ch[j].lo, len = ch[j].hi - ch[j].lo;
    if (L[k]->dtype == DDPM_FLOAT32)
      found |= unscale_f32(PTR(float, L[k], lo), len, c->f[0]);
    else
      found |= unscale_f64(PTR(double, L[k], lo), len, c->f[0]);
  }
  free(ch);
  if (found) {
    ddpm_tensor *fi = L[n];
    if (fi->dtype == DDPM_FLOAT32) *(float *)ddpm_ptr(fi) = 1.0f;
    else *(double *)ddpm_ptr(fi) = 1.0;
  }
  return DDPM_OK;
}

/* ---- total norm: the norm of the per-tensor norms; partial sums per chunk keep it deterministic ----- */
#define DEFINE_PNORM(T, SFX)                                                                                \
  OPTIM_CLONES static double pnorm_##SFX(const T *restrict x, int64_t n, double p) {                     \
    double acc = 0;                                                                                          \
    if (p == 2) {                                                                                            \
      /* eight running sums in a fixed order: vectorisable, and the same result on every run */          \
      double a8[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                                 \
      int64_t i = 0;                                                                                         \
      for (; i + 8 <= n; i += 8)                                                                             \
        for (int l = 0; l < 8; l++) a8[l] += (double)x[i + l] * (double)x[i + l];                            \
      for (; i < n; i++) acc += (double)x[i] * (double)x[i];                                                 \
      for (int l = 0; l < 8; l++) acc += a8[l];                                                              \
    } else if (p == 1) {                                                                                     \
      for (int64_t i = 0; i < n; i++) acc += fabs((double)x[i]);                                             \
    } else if (isinf(p)) {                                                                                   \
      for (int64_t i = 0; i < n; i++) {                                                                      \
        double a = fabs((double)x[i]);                                                                       \
        acc = NANMAX(a, acc);                                                                                \
      }                                                                                                      \
    } else if (p == 0) {                                                                                     \
      for (int64_t i = 0; i < n; i++) acc += x[i] != 0;                                                      \
    } else {                                                                                                 \
      for (int64_t i = 0; i < n; i++) acc += pow(fabs((double)x[i]), p);                                     \
    }                                                                                                        \
    return acc;                                                                                              \
  }
DEFINE_PNORM(float, f32)
DEFINE_PNORM(double, f64)

/* combine partial results (sums, or maxima for inf) and finish one norm */
static double norm_finish(double acc, double p) {
  if (p == 2) return sqrt(acc);
  if (p == 1 || p == 0 || isinf(p)) return acc;
  return pow(acc, 1.0 / p);
}

int cpu_TOTAL_NORM(ddpm_call *c) {
  int n = (int)c->i[0];
  double p = c->f[0];
  ddpm_tensor *const *L = c->list;
  chunk *ch;
  int64_t nch, total;
  DDPM_TRY(make_chunks(L, n, &ch, &nch, &total));
  double *part = malloc((size_t)(nch > 0 ? nch : 1) * sizeof *part);
  if (!part) {
    free(ch);
    return DDPM_FAIL(DDPM_ERR_OOM, "total_norm: out of host memory");
  }
#pragma omp parallel for schedule(dynamic, 1) if (total > CPU_PAR_GRAIN && !omp_in_parallel())
  for (int64_t j = 0; j < nch; j++) {
    int k = ch[j].t;
    int64_t lo = ch[j].lo, len = ch[j].hi - ch[j].lo;
    part[j] = L[k]->dtype == DDPM_FLOAT32 ? pnorm_f32(PTR(float, L[k], lo), len, p)
                                          : pnorm_f64(PTR(double, L[k], lo), len, p);
  }
  /* per-tensor norms rounded to the tensors' dtype (as torch.norm returns them), then their norm */
  bool f32 = L[0]->dtype == DDPM_FLOAT32;
  double acc_all = 0;
  int64_t j = 0;
  for (int k = 0; k < n; k++) {
    double acc = 0;
    for (; j < nch && ch[j].t == k; j++) acc = isinf(p) ? NANMAX(part[j], acc) : acc + part[j];
    double nk = norm_finish(acc, p);
    if (f32) nk = (float)nk;
    if (isinf(p)) acc_all = NANMAX(nk, acc_all);
    else if (p == 2) acc_all += nk * nk;
    else if (p == 1) acc_all += fabs(nk);
    else if (p == 0) acc_all += nk != 0;
    else acc_all += pow(fabs(nk), p);
  }
  double tot = norm_finish(acc_all, p);
  free(part);
  free(ch);
  ddpm_tensor *o = L[n];
  if (f32) *(float *)ddpm_ptr(o) = (float)tot;
  else *(double *)ddpm_ptr(o) = tot;
  return DDPM_OK;
}

/* ---- foreach x *= s ------------------------------------------------------------------------------------ */
#define DEFINE_SCALE(T, SFX)                                                                                 \
  OPTIM_CLONES static void scale_##SFX(T *restrict x, int64_t n, double s) {                              \
    const T f = (T)s;                                                                                        \
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * f;                                                         \
  }
DEFINE_SCALE(float, f32)
DEFINE_SCALE(double, f64)

int cpu_FOREACH_MUL_SCALAR(ddpm_call *c) {
  int n = (int)c->i[0];
  ddpm_tensor *const *L = c->list;
  chunk *ch;
  int64_t nch, total;
  DDPM_TRY(make_chunks(L, n, &ch, &nch, &total));
#pragma omp parallel for schedule(dynamic, 1) if (total > CPU_PAR_GRAIN && !omp_in_parallel())
  for (int64_t j = 0; j < nch; j++) {
    int k = ch[j].t;
    int64_t lo = ch[j].lo, len = ch[j].hi - ch[j].lo;
    if (L[k]->dtype == DDPM_FLOAT32) scale_f32(PTR(float, L[k], lo), len, c->f[0]);
    else scale_f64(PTR(double, L[k], lo), len, c->f[0]);
  }
  free(ch);
  return DDPM_OK;
}
