/* norm.c: CPU group_norm (optionally fused with SiLU) and layer_norm, forward and backward.
 * Forward: per group (or row) mean and rstd = 1/sqrt(var + eps) from two passes in double, saved
 * for backward; y = x * scale + shift with scale = rstd * w, shift = b - mean * scale.
 * Backward: one pass of sums per group/row, then dx in closed form; weight and bias gradients
 * come from per-sample partials reduced in a fixed order (deterministic). */
#include "nn_cpu.h"
#include "gemm_avx512.h"
#include "norm_f32.h"
#include "bf16_convert.h"
#include <math.h>

#define R float
#define SUF(n) n##_f32
#define EXP expf
#include "norm_impl.h"
#undef R
#undef SUF
#undef EXP
#define R double
#define SUF(n) n##_f64
#define EXP exp
#include "norm_impl.h"
#undef R
#undef SUF
#undef EXP

#define PTR(t) ((t) ? (void *)ddpm_ptr(t) : NULL)

static int64_t grain_for(int64_t work_per_item) {
  int64_t g = 16384 / (work_per_item > 0 ? work_per_item : 1);
  return g > 0 ? g : 1;
}

static void gn_fwd_fast(int64_t lo, int64_t hi, void *vctx) { cpu_gn_fwd_f32(vctx, lo, hi); }
typedef struct {
  cpu_gn_f32 k;
  int failed;
} gn_bwd_fast_ctx;
static void gn_bwd_fast(int64_t lo, int64_t hi, void *vctx) {
  gn_bwd_fast_ctx *c = vctx;
  int64_t M = c->k.C / c->k.G * c->k.S;
  float *dz = c->k.silu ? cpu_scratch(0, sizeof(float) * (size_t)(M ? M : 1)) : NULL;
  if (c->k.silu && !dz) {
#pragma omp atomic write
    c->failed = 1;
    return;
  }
  cpu_gn_bwd_f32(&c->k, lo, hi, dz);
}

/* bfloat16 activations (float32 weights and statistics): x (and gx) and y (and gy) may each be
 * bfloat16 or float32 (float32 y: group_norm under autocast, which computes in float32).  The
 * AVX-512 kernel reads and writes them directly; the portable path widens the bf16 sides into
 * float32 scratch and rounds the results back. */
static float *widened(const ddpm_tensor *t, int64_t n) {
  float *f = malloc(sizeof(float) * (size_t)(n ? n : 1));
  if (f && t) cpu_bf16_to_f32((const uint16_t *)ddpm_ptr(t), f, n);
  return f;
}
static bool f32_or_bf16(int dt) { return dt == DDPM_FLOAT32 || dt == DDPM_BFLOAT16; }

static int group_norm_fwd(ddpm_call *c, bool silu) {
  ddpm_tensor *x = c->in[0], *y = c->out[0];
  bool xh = x->dtype == DDPM_BFLOAT16, yh = y->dtype == DDPM_BFLOAT16, half = xh || yh;
  if (half && !(f32_or_bf16(x->dtype) && f32_or_bf16(y->dtype)))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "group_norm: input %s and output %s: bfloat16 pairs with float32 only",
                     ddpm_fmt_tensor(x), ddpm_fmt_tensor(y));
  if (!half) DDPM_TRY(cpu_nn_dtype("group_norm", x->dtype));
  int64_t N = x->shape[0], C = x->shape[1], G = c->i[0];
  int64_t S = (N * C) != 0 ? ddpm_tensor_numel(x) / (N * C) : 0;
  int64_t M = C / G * S;
  if ((x->dtype == DDPM_FLOAT32 || half) && cpu_fast_kernels()) {
    cpu_gn_f32 k = {PTR(x), PTR(c->in[1]), PTR(c->in[2]), NULL, PTR(y), PTR(c->out[1]), PTR(c->out[2]),
                    NULL, NULL, NULL, N, C, S, G, c->f[0], silu, xh, yh};
    cpu_parallel_for(N * G, grain_for(M), gn_fwd_fast, &k);
  } else if (half) {
    int64_t n = ddpm_tensor_numel(x);
    float *xf = xh ? widened(x, n) : PTR(x), *yf = yh ? widened(NULL, n) : PTR(y);
    if (xf && yf) {
      gn_ctx_f32 k = {xf, PTR(c->in[1]), PTR(c->in[2]), NULL, yf, PTR(c->out[1]), PTR(c->out[2]),
                      NULL, NULL, NULL, N, C, S, G, c->f[0], silu, 0};
      cpu_parallel_for(N * G, grain_for(M), gn_fwd_range_f32, &k);
      if (yh) cpu_f32_to_bf16(yf, (uint16_t *)ddpm_ptr(y), n);
    }
    bool ok = xf && yf;
    if (xh) free(xf);
    if (yh) free(yf);
    if (!ok) return DDPM_FAIL(DDPM_ERR_OOM, "group_norm: out of memory for float32 copies of bfloat16 tensors");
  } else if (x->dtype == DDPM_FLOAT32) {
    gn_ctx_f32 k = {PTR(x), PTR(c->in[1]), PTR(c->in[2]), NULL, PTR(c->out[0]), PTR(c->out[1]), PTR(c->out[2]),
                    NULL, NULL, NULL, N, C, S, G, c->f[0], silu, 0};
    cpu_parallel_for(N * G, grain_for(M), gn_fwd_range_f32, &k);
  } else {
    gn_ctx_f64 k = {PTR(x), PTR(c->in[1]), PTR(c->in[2]), NULL, PTR(c->out[0]), PTR(c->out[1]), PTR(c->out[2]),
                    NULL, NULL, NULL, N, C, S, G, c->f[0], silu, 0};
    cpu_parallel_for(N * G, grain_for(M), gn_fwd_range_f64, &k);
  }
  return DDPM_OK;
}
int cpu_GROUP_NORM(ddpm_call *c) { return group_norm_fwd(c, false); }
int cpu_GROUP_NORM_SILU(ddpm_call *c) { return group_norm_fwd(c, true); }

/* sum the [N, C] partials over N into an output of the element type */
static void reduce_partials(const double *p, int64_t N, int64_t C, void *out, int dtype) {
  for (int64_t ch = 0; ch < C; ch++) {
    double s = 0;
    for (int64_t n = 0; n < N; n++) s += p[n * C + ch];
    if (dtype == DDPM_FLOAT32) ((float *)out)[ch] = (float)s;
    else ((double *)out)[ch] = s;
  }
}

int cpu_GROUP_NORM_BWD(ddpm_call *c) {
  ddpm_tensor *gy = c->in[0], *x = c->in[1], *gx = c->out[0], *gw = c->out[1], *gb = c->out[2];
  bool xh = x->dtype == DDPM_BFLOAT16, yh = gy->dtype == DDPM_BFLOAT16, half = xh || yh;
  if (gx->dtype != x->dtype || (half ? !f32_or_bf16(x->dtype) || !f32_or_bf16(gy->dtype) : gy->dtype != x->dtype))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "group_norm backward: gradient %s, input %s and input gradient %s: one dtype, "
                     "or bfloat16 with float32", ddpm_fmt_tensor(gy), ddpm_fmt_tensor(x), ddpm_fmt_tensor(gx));
  if (!half) DDPM_TRY(cpu_nn_dtype("group_norm backward", x->dtype));
  int64_t N = x->shape[0], C = x->shape[1], G = c->i[0];
  int64_t S = (N * C) != 0 ? ddpm_tensor_numel(x) / (N * C) : 0;
  int64_t M = C / G * S;
  bool silu = c->i[1] != 0;
  double *pdw = gw ? malloc(sizeof(double) * (size_t)(N * C + 1)) : NULL;
  double *pdb = gb ? malloc(sizeof(double) * (size_t)(N * C + 1)) : NULL;
  int failed = (gw && !pdw) || (gb && !pdb);
  if (!failed) {
    if ((x->dtype == DDPM_FLOAT32 || half) && cpu_fast_kernels()) {
      gn_bwd_fast_ctx k = {{PTR(x), PTR(c->in[4]), PTR(c->in[5]), PTR(gy), NULL, PTR(c->in[2]), PTR(c->in[3]),
                            PTR(gx), pdw, pdb, N, C, S, G, 0, silu, xh, yh},
                           0};
      cpu_parallel_for(N * G, grain_for(M), gn_bwd_fast, &k);
      failed = k.failed;
    } else if (half) {
      int64_t n = ddpm_tensor_numel(x);
      float *xf = xh ? widened(x, n) : PTR(x), *gf = yh ? widened(gy, n) : PTR(gy);
      float *gxf = xh ? widened(NULL, n) : PTR(gx);
      failed = !xf || !gf || !gxf;
      if (!failed) {
        gn_ctx_f32 k = {xf, PTR(c->in[4]), PTR(c->in[5]), gf, NULL, PTR(c->in[2]), PTR(c->in[3]),
                        gxf, pdw, pdb, N, C, S, G, 0, silu, 0};
        cpu_parallel_for(N * G, grain_for(M), gn_bwd_range_f32, &k);
        failed = k.failed;
        if (!failed && xh) cpu_f32_to_bf16(gxf, (uint16_t *)ddpm_ptr(gx), n);
      }
      if (xh) free(xf);
      if (yh) free(gf);
      if (xh) free(gxf);
    } else if (x->dtype == DDPM_FLOAT32) {
      gn_ctx_f32 k = {PTR(x), PTR(c->in[4]), PTR(c->in[5]), PTR(gy), NULL, PTR(c->in[2]), PTR(c->in[3]),
                      PTR(c->out[0]), pdw, pdb, N, C, S, G, 0, silu, 0};
      cpu_parallel_for(N * G, grain_for(M), gn_bwd_range_f32, &k);
      failed = k.failed;
    } else {
      gn_ctx_f64 k = {PTR(x), PTR(c->in[4]), PTR(c->in[5]), PTR(gy), NULL, PTR(c->in[2]), PTR(c->in[3]),
                      PTR(c->out[0]), pdw, pdb, N, C, S, G, 0, silu, 0};
      cpu_parallel_for(N * G, grain_for(M), gn_bwd_range_f64, &k);
      failed = k.failed;
    }
  }
  if (!failed) {
    if (gw) reduce_partials(pdw, N, C, ddpm_ptr(gw), gw->dtype);
    if (gb) reduce_partials(pdb, N, C, ddpm_ptr(gb), gb->dtype);
  }
  free(pdw);
  free(pdb);
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "group_norm backward: out of memory for gradient partials") : DDPM_OK;
}

/* bfloat16 layer_norm (float32 weights and statistics): blocks of rows are widened into per-thread
 * float32 staging, the float32 rows run on them, and the results are rounded back */
typedef struct {
  ln_ctx_f32 k; /* w, b, mean, rstd, rows, D, eps; x/y/gy/gx unused */
  const uint16_t *x, *gy;
  uint16_t *y, *gx;
  int failed;
} ln_bf16_ctx;

static int64_t ln_block(int64_t D) { return D >= 4096 ? 1 : 4096 / (D ? D : 1); }

static int ln_fwd_bf16(ln_bf16_ctx *c, int64_t lo, int64_t hi) {
  int64_t D = c->k.D, nb = ln_block(D);
  float *xs = cpu_scratch(3, sizeof(float) * (size_t)(2 * nb * D + 1));
  if (!xs) return 1;
  float *ys = xs + nb * D;
  for (int64_t r0 = lo; r0 < hi; r0 += nb) {
    int64_t n = hi - r0 < nb ? hi - r0 : nb;
    cpu_bf16_to_f32(c->x + r0 * D, xs, n * D);
    ln_ctx_f32 k = c->k;
    k.x = xs, k.y = ys, k.mean = c->k.mean + r0, k.rstd = c->k.rstd + r0;
    ln_fwd_range_f32(0, n, &k);
    cpu_f32_to_bf16(ys, c->y + r0 * D, n * D);
  }
  return 0;
}
static void ln_fwd_bf16_range(int64_t lo, int64_t hi, void *vctx) {
  ln_bf16_ctx *c = vctx;
  if (ln_fwd_bf16(c, lo, hi)) {
#pragma omp atomic write
    c->failed = 1;
  }
}
static int ln_bwd_bf16(ln_bf16_ctx *c, int64_t lo, int64_t hi, double *pw, double *pb) {
  int64_t D = c->k.D, nb = ln_block(D);
  float *xs = cpu_scratch(3, sizeof(float) * (size_t)(3 * nb * D + 1));
  if (!xs) return 1;
  float *gs = xs + nb * D, *gxs = gs + nb * D;
  for (int64_t r0 = lo; r0 < hi; r0 += nb) {
    int64_t n = hi - r0 < nb ? hi - r0 : nb;
    cpu_bf16_to_f32(c->x + r0 * D, xs, n * D);
    cpu_bf16_to_f32(c->gy + r0 * D, gs, n * D);
    ln_ctx_f32 k = c->k;
    k.x = xs, k.gy = gs, k.gx = c->gx ? gxs : NULL, k.mean = c->k.mean + r0, k.rstd = c->k.rstd + r0;
    ln_bwd_rows_f32(&k, 0, n, pw, pb);
    if (c->gx) cpu_f32_to_bf16(gxs, c->gx + r0 * D, n * D);
  }
  return 0;
}

int cpu_LAYER_NORM(ddpm_call *c) {
  ddpm_tensor *x = c->in[0];
  int64_t D = c->i[0], rows = D ? ddpm_tensor_numel(x) / D : 0;
  if (x->dtype == DDPM_BFLOAT16) {
    ln_bf16_ctx k = {{NULL, PTR(c->in[1]), PTR(c->in[2]), NULL, NULL, PTR(c->out[1]), PTR(c->out[2]), NULL, NULL,
                      NULL, rows, D, c->f[0]},
                     PTR(x), NULL, PTR(c->out[0]), NULL, 0};
    cpu_parallel_for(rows, grain_for(D), ln_fwd_bf16_range, &k);
    return k.failed ? DDPM_FAIL(DDPM_ERR_OOM, "layer_norm: out of memory for staging buffers") : DDPM_OK;
  }
  DDPM_TRY(cpu_nn_dtype("layer_norm", x->dtype));
  if (x->dtype == DDPM_FLOAT32) {
    ln_ctx_f32 k = {PTR(x), PTR(c->in[1]), PTR(c->in[2]), NULL, PTR(c->out[0]), PTR(c->out[1]), PTR(c->out[2]),
                    NULL, NULL, NULL, rows, D, c->f[0]};
    cpu_parallel_for(rows, grain_for(D), ln_fwd_range_f32, &k);
  } else {
    ln_ctx_f64 k = {PTR(x), PTR(c->in[1]), PTR(c->in[2]), NULL, PTR(c->out[0]), PTR(c->out[1]), PTR(c->out[2]),
                    NULL, NULL, NULL, rows, D, c->f[0]};
    cpu_parallel_for(rows, grain_for(D), ln_fwd_range_f64, &k);
  }
  return DDPM_OK;
}

/* Threads take fixed row ranges and keep [D] partials of the weight/bias gradients each; the
 * partials are summed in thread order afterwards. */
int cpu_LAYER_NORM_BWD(ddpm_call *c) {
  ddpm_tensor *gy = c->in[0], *x = c->in[1], *gw = c->out[1], *gb = c->out[2];
  bool half = x->dtype == DDPM_BFLOAT16;
  if (!half) DDPM_TRY(cpu_nn_dtype("layer_norm backward", x->dtype));
  if (gy->dtype != x->dtype || c->out[0]->dtype != x->dtype)
    return DDPM_FAIL(DDPM_ERR_DTYPE, "layer_norm backward: gradient %s and input %s must share a dtype",
                     ddpm_fmt_tensor(gy), ddpm_fmt_tensor(x));
  int64_t D = c->i[0], rows = D ? ddpm_tensor_numel(x) / D : 0;
  int T = cpu_nn_split(rows) && rows * D >= 16384 ? omp_get_max_threads() : 1;
  double *pdw = gw ? calloc((size_t)(T * D + 1), sizeof(double)) : NULL;
  double *pdb = gb ? calloc((size_t)(T * D + 1), sizeof(double)) : NULL;
  if ((gw && !pdw) || (gb && !pdb)) {
    free(pdw);
    free(pdb);
    return DDPM_FAIL(DDPM_ERR_OOM, "layer_norm backward: out of memory for gradient partials");
  }
  bool f32 = x->dtype == DDPM_FLOAT32;
  ln_ctx_f32 k32 = {PTR(x), PTR(c->in[4]), NULL, PTR(gy), NULL, PTR(c->in[2]), PTR(c->in[3]), PTR(c->out[0]),
                    pdw, pdb, rows, D, 0};
  ln_bf16_ctx kh = {{NULL, PTR(c->in[4]), NULL, NULL, NULL, PTR(c->in[2]), PTR(c->in[3]), NULL, NULL, NULL, rows, D, 0},
                    PTR(x), PTR(gy), NULL, PTR(c->out[0]), 0};
  int failed = 0;
  ln_ctx_f64 k64 = {PTR(x), PTR(c->in[4]), NULL, PTR(gy), NULL, PTR(c->in[2]), PTR(c->in[3]), PTR(c->out[0]),
                    pdw, pdb, rows, D, 0};
#pragma omp parallel num_threads(T) if (T > 1)
  {
    int t = omp_get_thread_num(), TT = omp_get_num_threads();
    int64_t lo = rows * t / TT, hi = rows * (t + 1) / TT;
    double *pw = pdw ? pdw + t * D : NULL, *pb = pdb ? pdb + t * D : NULL;
    if (half) {
      if (ln_bwd_bf16(&kh, lo, hi, pw, pb)) {
#pragma omp atomic write
        failed = 1;
      }
    } else if (f32) {
      ln_bwd_rows_f32(&k32, lo, hi, pw, pb);
    } else {
      ln_bwd_rows_f64(&k64, lo, hi, pw, pb);
    }
  }
  if (failed) {
    free(pdw);
    free(pdb);
    return DDPM_FAIL(DDPM_ERR_OOM, "layer_norm backward: out of memory for staging buffers");
  }
  if (gw) reduce_partials(pdw, T, D, ddpm_ptr(gw), gw->dtype);
  if (gb) reduce_partials(pdb, T, D, ddpm_ptr(gb), gb->dtype);
  free(pdw);
  free(pdb);
  return DDPM_OK;
}
