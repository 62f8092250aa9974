// optim.cu: the fused optimizer ops (Adam/AdamW, SGD, EMA, loss-scaler unscale, total norm,
// foreach scaling) over a whole parameter list in a few launches: each launch takes up to
// MT_MAX tensors through its kernel parameters (grid.y = tensor, grid.x = chunks of it), so it
// needs no host-to-device copy and can be captured in a CUDA graph.  The arithmetic is the CPU
// kernels' (engine/cpu/optim.c) operation for operation with round-to-nearest intrinsics
// (explicit fma where PyTorch's vectorised kernels fuse, no contraction elsewhere), so parameters
// match the CPU bit for bit.  Per-tensor constants (Adam's bias corrections from the host step
// counts) are computed on the host in double, as on the CPU.
#include "cuda_common.cuh"
#include <cmath>

using namespace ddpm_cu;

namespace {
const int MT_MAX = 40;
const int MT_ROLES = 5;
const int MT_THREADS = 256;
const int64_t MT_CHUNK = 32768; // elements per chunk (as the CPU, for total_norm partials)

template <typename T> struct MT {
  int n;
  T *p[MT_ROLES][MT_MAX];
  int64_t size[MT_MAX];
  double a[MT_MAX], b[MT_MAX]; // per-tensor constants
  int flag[MT_MAX];
  int part_base[MT_MAX]; // total_norm: first partial slot of the tensor
};

// arithmetic without contraction, per type
__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float dvd(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double dvd(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ float fmaT(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fmaT(double a, double b, double c) { return __fma_rn(a, b, c); }
__device__ __forceinline__ float sqrtT(float a) { return __fsqrt_rn(a); }
__device__ __forceinline__ double sqrtT(double a) { return __dsqrt_rn(a); }

struct AdamCfg {
  double lr, beta1, beta2, eps, wd;
  int amsgrad, maximize, decoupled;
};

// roles: 0 param, 1 grad, 2 exp_avg, 3 exp_avg_sq, 4 max_exp_avg_sq; a = -lr/bc1, b = sqrt(bc2)
template <typename T> __global__ void k_adam(MT<T> mt, AdamCfg c) {
  const int k = blockIdx.y;
  const int64_t n = mt.size[k];
  T *p = mt.p[0][k], *g = mt.p[1][k], *m = mt.p[2][k], *v = mt.p[3][k], *vmax = mt.p[4][k];
  const T b1 = (T)c.beta1, omb1 = (T)(1 - c.beta1), b2 = (T)c.beta2, omb2 = (T)(1 - c.beta2);
  const T eps = (T)c.eps, wd = (T)c.wd, shrink = (T)(1 - c.lr * c.wd);
  const T neg_step = (T)mt.a[k], bc2s = (T)mt.b[k], sign = c.maximize ? (T)-1 : (T)1;
  const bool dec = c.decoupled, l2 = !c.decoupled && c.wd != 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    T gi = mul(sign, g[i]), pi = p[i];
    if (dec) pi = mul(pi, shrink);
    if (l2) gi = fmaT(pi, wd, gi);
    T mi = fmaT(gi, omb1, mul(m[i], b1));
    T vi = add(mul(v[i], b2), mul(mul(omb2, gi), gi));
    m[i] = mi;
    v[i] = vi;
    if (c.amsgrad) {
      T vm = vmax[i];
      vi = (vm != vm || vm > vi) ? vm : vi;
      vmax[i] = vi;
    }
    T denom = add(dvd(sqrtT(vi), bc2s), eps);
    p[i] = add(pi, dvd(mul(neg_step, mi), denom));
  }
}

struct SgdCfg {
  double lr, momentum, dampening, wd;
  int nesterov, maximize;
};
// roles: 0 param, 1 grad, 2 momentum buffer; flag = fresh buffer
template <typename T> __global__ void k_sgd(MT<T> mt, SgdCfg c) {
  const int k = blockIdx.y;
  const int64_t n = mt.size[k];
  T *p = mt.p[0][k], *g = mt.p[1][k], *buf = mt.p[2][k];
  const T wd = (T)c.wd, mom = (T)c.momentum, omd = (T)(1 - c.dampening), neg_lr = (T)(-c.lr);
  const T sign = c.maximize ? (T)-1 : (T)1;
  const bool l2 = c.wd != 0, use_mom = c.momentum != 0, fresh = mt.flag[k] != 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    T d = mul(sign, g[i]), pi = p[i];
    if (l2) d = fmaT(pi, wd, d);
    if (use_mom) {
      T b = fresh ? d : fmaT(d, omd, mul(buf[i], mom));
      buf[i] = b;
      d = c.nesterov ? fmaT(b, mom, d) : b;
    }
    p[i] = fmaT(d, neg_lr, pi);
  }
}

// s -= (1 - decay) (s - p)
template <typename T> __global__ void k_ema(MT<T> mt, double decay) {
  const int k = blockIdx.y;
  const int64_t n = mt.size[k];
  T *s = mt.p[0][k], *p = mt.p[1][k];
  const T omd = (T)(1 - decay);
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    s[i] = sub(s[i], mul(omd, sub(s[i], p[i])));
}

// x *= s, flagging inf/NaN into found (a one-element tensor of the same dtype)
template <typename T> __global__ void k_unscale(MT<T> mt, double inv, void *found, bool found_f64) {
  const int k = blockIdx.y;
  const int64_t n = mt.size[k];
  T *x = mt.p[0][k];
  const T s = (T)inv;
  bool bad = false;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    T v = x[i];
    bad |= (v - v) != (v - v);
    x[i] = mul(v, s);
  }
  if (__syncthreads_or(bad) && threadIdx.x == 0) {
    if (found_f64) *(double *)found = 1.0;
    else *(float *)found = 1.0f;
  }
}

template <typename T> __global__ void k_scale(MT<T> mt, double sc) {
  const int k = blockIdx.y;
  const int64_t n = mt.size[k];
  T *x = mt.p[0][k];
  const T s = (T)sc;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    x[i] = mul(x[i], s);
}

// total norm, stage 1: one block per (tensor, chunk of MT_CHUNK elements): its p-norm accumulator
// (sum of |x|^p, or the max for inf) in double, into part[part_base + chunk]
__device__ __forceinline__ double nanmax(double a, double b) { return (a != a || a > b) ? a : b; }
// (flag[k] is the group's first global tensor index: base/nchunks are indexed globally)
template <typename T> __global__ void k_pnorm(MT<T> mt, double p, double *part, int *base, int *nchunks) {
  const int k = blockIdx.y;
  const int64_t n = mt.size[k], nch = (n + MT_CHUNK - 1) / MT_CHUNK;
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    nchunks[mt.flag[k] + k] = (int)nch;
    base[mt.flag[k] + k] = mt.part_base[k];
  }
  __shared__ double sm[MT_THREADS / 32];
  const bool isinf_p = isinf(p);
  for (int64_t ch = blockIdx.x; ch < nch; ch += gridDim.x) {
    const T *x = mt.p[0][k] + ch * MT_CHUNK;
    int64_t len = min(MT_CHUNK, n - ch * MT_CHUNK);
    double acc = 0;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
      double a = fabs((double)x[i]);
      if (p == 2) acc += a * a;
      else if (p == 1) acc += a;
      else if (isinf_p) acc = nanmax(a, acc);
      else if (p == 0) acc += a != 0;
      else acc += pow(a, p);
    }
#pragma unroll
    for (int d = 16; d > 0; d >>= 1) {
      double o = __shfl_xor_sync(0xffffffffu, acc, d);
      acc = isinf_p ? nanmax(o, acc) : acc + o;
    }
    if ((threadIdx.x & 31) == 0) sm[threadIdx.x >> 5] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      double t = 0;
      for (int w = 0; w < MT_THREADS / 32; w++) t = isinf_p ? nanmax(sm[w], t) : t + sm[w];
      part[mt.part_base[k] + ch] = t;
    }
    __syncthreads();
  }
}

__device__ __forceinline__ double norm_finish(double acc, double p) {
  if (p == 2) return sqrt(acc);
  if (p == 1 || p == 0 || isinf(p)) return acc;
  return pow(acc, 1.0 / p);
}
// stage 2: per-tensor norms (rounded to the tensors' dtype, as torch.norm returns them), then
// the norm of those, in tensor order
template <typename T>
__global__ void k_norm_finish(const double *part, const int *base, const int *nch, int n, double p, T *out) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double all = 0;
  for (int k = 0; k < n; k++) {
    double acc = 0;
    for (int j = 0; j < nch[k]; j++) acc = isinf(p) ? nanmax(part[base[k] + j], acc) : acc + part[base[k] + j];
    double nk = norm_finish(acc, p);
    if (sizeof(T) == 4) nk = (float)nk;
    if (isinf(p)) all = nanmax(nk, all);
    else if (p == 2) all += nk * nk;
    else if (p == 1) all += fabs(nk);
    else if (p == 0) all += nk != 0;
    else all += pow(fabs(nk), p);
  }
  *out = (T)norm_finish(all, p);
}

// Runs launch(mt) for groups of at most MT_MAX tensors; fill(k, slot) fills slot of tensor k.
template <typename T, typename Fill, typename Launch>
int over_groups(int n, Fill fill, Launch launch) {
  for (int k0 = 0; k0 < n; k0 += MT_MAX) {
    MT<T> mt;
    memset(&mt, 0, sizeof mt);
    mt.n = n - k0 < MT_MAX ? n - k0 : MT_MAX;
    int64_t maxn = 0;
    for (int j = 0; j < mt.n; j++) {
      fill(k0 + j, j, mt);
      if (mt.size[j] > maxn) maxn = mt.size[j];
    }
    if (maxn == 0) continue;
    int64_t bx = (maxn + MT_THREADS * 4 - 1) / (MT_THREADS * 4);
    if (bx > 1024) bx = 1024;
    dim3 grid((unsigned)(bx < 1 ? 1 : bx), (unsigned)mt.n);
    launch(mt, grid);
  }
  return DDPM_OK;
}

int dtype_of_list(const ddpm_call *c) { return c->list[0]->dtype; }

template <typename T> int adam(ddpm_call *c) {
  int n = (int)c->i[0];
  ddpm_tensor *const *L = c->list;
  const double *steps = (const double *)(intptr_t)c->i[2];
  AdamCfg cfg{c->f[0], c->f[1], c->f[2], c->f[3], c->f[4], (int)(c->i[1] & 1), (int)((c->i[1] >> 1) & 1),
              (int)((c->i[1] >> 2) & 1)};
  cudaStream_t s = stream();
  return over_groups<T>(
      n,
      [&](int k, int j, MT<T> &mt) {
        for (int r = 0; r < MT_ROLES; r++) mt.p[r][j] = (T *)ddpm_ptr(L[r * n + k]);
        mt.size[j] = ddpm_tensor_numel(L[k]);
        double bc1 = 1 - pow(cfg.beta1, steps[k]), bc2 = 1 - pow(cfg.beta2, steps[k]);
        mt.a[j] = -(cfg.lr / bc1);
        mt.b[j] = sqrt(bc2);
      },
      [&](const MT<T> &mt, dim3 grid) { k_adam<T><<<grid, MT_THREADS, 0, s>>>(mt, cfg); });
}

template <typename T> int sgd(ddpm_call *c) {
  int n = (int)c->i[0];
  ddpm_tensor *const *L = c->list;
  const int32_t *fresh = (const int32_t *)(intptr_t)c->i[2];
  SgdCfg cfg{c->f[0], c->f[1], c->f[2], c->f[3], (int)(c->i[1] & 1), (int)((c->i[1] >> 1) & 1)};
  cudaStream_t s = stream();
  return over_groups<T>(
      n,
      [&](int k, int j, MT<T> &mt) {
        for (int r = 0; r < 3; r++) mt.p[r][j] = (T *)ddpm_ptr(L[r * n + k]);
        mt.size[j] = ddpm_tensor_numel(L[k]);
        mt.flag[j] = fresh ? fresh[k] != 0 : 0;
      },
      [&](const MT<T> &mt, dim3 grid) { k_sgd<T><<<grid, MT_THREADS, 0, s>>>(mt, cfg); });
}

template <typename T> int ema(ddpm_call *c) {
  int n = (int)c->i[0];
  ddpm_tensor *const *L = c->list;
  cudaStream_t s = stream();
  double decay = c->f[0];
  return over_groups<T>(
      n,
      [&](int k, int j, MT<T> &mt) {
        mt.p[0][j] = (T *)ddpm_ptr(L[k]);
        mt.p[1][j] = (T *)ddpm_ptr(L[n + k]);
        mt.size[j] = ddpm_tensor_numel(L[k]);
      },
      [&](const MT<T> &mt, dim3 grid) { k_ema<T><<<grid, MT_THREADS, 0, s>>>(mt, decay); });
}

template <typename T> int unscale(ddpm_call *c) {
  int n = (int)c->i[0];
  ddpm_tensor *const *L = c->list;
  cudaStream_t s = stream();
  double inv = c->f[0];
  ddpm_tensor *found = L[n]; // float32 or float64, one element (checked by the entry point)
  void *fp = ddpm_ptr(found);
  bool f64 = found->dtype == DDPM_FLOAT64;
  return over_groups<T>(
      n,
      [&](int k, int j, MT<T> &mt) {
        mt.p[0][j] = (T *)ddpm_ptr(L[k]);
        mt.size[j] = ddpm_tensor_numel(L[k]);
      },
      [&](const MT<T> &mt, dim3 grid) { k_unscale<T><<<grid, MT_THREADS, 0, s>>>(mt, inv, fp, f64); });
}

template <typename T> int scale(ddpm_call *c) {
  int n = (int)c->i[0];
  ddpm_tensor *const *L = c->list;
  cudaStream_t s = stream();
  double sc = c->f[0];
  return over_groups<T>(
      n,
      [&](int k, int j, MT<T> &mt) {
        mt.p[0][j] = (T *)ddpm_ptr(L[k]);
        mt.size[j] = ddpm_tensor_numel(L[k]);
      },
      [&](const MT<T> &mt, dim3 grid) { k_scale<T><<<grid, MT_THREADS, 0, s>>>(mt, sc); });
}

template <typename T> int total_norm(ddpm_call *c) {
  int n = (int)c->i[0];
  ddpm_tensor *const *L = c->list;
  double p = c->f[0];
  cudaStream_t s = stream();
  // partial slots: the chunks of every tensor, in order; per-tensor base and count on the device
  int64_t slots = 0;
  for (int k = 0; k < n; k++) slots += (ddpm_tensor_numel(L[k]) + MT_CHUNK - 1) / MT_CHUNK;
  if (slots > INT32_MAX) return DDPM_FAIL(DDPM_ERR_SHAPE, "total_norm: too many elements");
  Scratch part, meta;
  DDPM_TRY(part.get(sizeof(double) * (size_t)(slots + 1), current_ordinal()));
  DDPM_TRY(meta.get(sizeof(int) * (size_t)(2 * n + 2), current_ordinal()));
  int *base = (int *)meta.p, *nch = base + n;
  CU_TRY(cudaMemsetAsync(nch, 0, sizeof(int) * (size_t)n, s), "total_norm");
  int64_t next = 0;
  int st = over_groups<T>(
      n,
      [&](int k, int j, MT<T> &mt) {
        mt.p[0][j] = (T *)ddpm_ptr(L[k]);
        mt.size[j] = ddpm_tensor_numel(L[k]);
        mt.part_base[j] = (int)next;
        mt.flag[j] = k - j; // the group's first global index
        next += (mt.size[j] + MT_CHUNK - 1) / MT_CHUNK;
      },
      [&](const MT<T> &mt, dim3 grid) {
        dim3 g2(grid.x < 64 ? grid.x : 64, grid.y);
        k_pnorm<T><<<g2, MT_THREADS, 0, s>>>(mt, p, (double *)part.p, base, nch);
      });
  DDPM_TRY(st);
  k_norm_finish<T><<<1, 32, 0, s>>>((const double *)part.p, base, nch, n, p, (T *)ddpm_ptr(L[n]));
  return DDPM_OK;
}

int f32_or_f64(const ddpm_call *c) {
  int dt = dtype_of_list(c);
  if (dt == DDPM_FLOAT32 || dt == DDPM_FLOAT64) return DDPM_OK;
  return no_dtype(c, dt);
}
} // namespace

#define OPT_KERNEL(NAME, fn)                                                        \
  DDPM_CU_KERNEL(NAME) {                                                            \
    if ((int)c->i[0] == 0) return DDPM_OK;                                          \
    DDPM_TRY(f32_or_f64(c));                                                        \
    return dtype_of_list(c) == DDPM_FLOAT32 ? fn<float>(c) : fn<double>(c);         \
  }
OPT_KERNEL(ADAM_STEP, adam)
OPT_KERNEL(SGD_STEP, sgd)
OPT_KERNEL(EMA_UPDATE, ema)
OPT_KERNEL(AMP_UNSCALE, unscale)
OPT_KERNEL(TOTAL_NORM, total_norm)
OPT_KERNEL(FOREACH_MUL_SCALAR, scale)
