// nn_misc.cu: dropout, the pointwise losses (mse, l1, smooth_l1) and their backward, nll_loss and
// one_hot, with the semantics of engine/cpu/nn_misc.c.  Reductions to one value sum in double per
// block, then combine the block sums in a fixed order (deterministic).  Class indices out of
// range are reported like every device-side index error: at the next synchronisation (at once
// with DDPM_SYNC=1), the offending element skipped.
#include "cuda_common.cuh"
#include "philox.cuh"
#include <type_traits>

using namespace ddpm_cu;

namespace {
template <typename T> using RT = typename std::conditional<std::is_same<T, double>::value, double, float>::type;
template <typename T> __device__ __forceinline__ RT<T> ld(const T *p, int64_t i) { return (RT<T>)Traits<T>::load(p[i]); }
template <typename T> __device__ __forceinline__ void st(T *p, int64_t i, RT<T> v) { p[i] = Traits<T>::store(v); }

const int RB = 256;        // threads per reduction block
const int RMAX_BLOCKS = 512; // partial sums per reduction

__device__ __forceinline__ double block_sum(double v) {
  __shared__ double sm[RB / 32];
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  if ((threadIdx.x & 31) == 0) sm[threadIdx.x >> 5] = v;
  __syncthreads();
  double t = 0;
  if (threadIdx.x == 0)
    for (int k = 0; k < RB / 32; k++) t += sm[k];
  return t; // valid in thread 0
}

__device__ __forceinline__ void report(DevErr *err, int op, int64_t v, int64_t n) {
  if (err && atomicCAS(&err->code, 0, (int)DDPM_ERR_INDEX) == 0) {
    err->op = op;
    err->a = v;
    err->b = n;
  }
}

// ---- dropout ------------------------------------------------------------------------------------------
template <typename T>
__global__ void k_dropout(const T *x, T *y, uint8_t *mask, const uint8_t *mask_in, int64_t n, uint64_t seed,
                          uint64_t base, double p) {
  using R = RT<T>;
  const R sf = (R)(1.0 / (1.0 - p));
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    bool keep;
    if (mask_in) keep = mask_in[e] != 0;
    else {
      keep = ddpm_cu_u53(seed, base + (uint64_t)e) >= p;
      mask[e] = keep;
    }
    st(y, e, keep ? ld(x, e) * sf : (R)0);
  }
}

// ---- pointwise losses -------------------------------------------------------------------------------------
enum { LOSS_MSE = 0, LOSS_L1 = 1, LOSS_SMOOTH_L1 = 2 };

template <typename R> __device__ __forceinline__ R loss_of(R d, int kind, double beta) {
  if (kind == LOSS_MSE) return d * d;
  double dd = d, a = fabs(dd);
  double l = kind == LOSS_L1 ? a : (a < beta ? 0.5 * dd * dd / beta : a - 0.5 * beta);
  return (R)l;
}
template <typename R> __device__ __forceinline__ R dloss_of(R d, int kind, double beta) {
  if (kind == LOSS_MSE) return (R)2 * d;
  double dd = d, sg = (double)((dd > 0) - (dd < 0));
  double v = kind == LOSS_L1 ? sg : (fabs(dd) < beta ? dd / beta : sg);
  return (R)v;
}

template <typename T>
__global__ void k_loss(const T *x, const T *t, T *y, double *part, int64_t n, int kind, double beta, bool none) {
  using R = RT<T>;
  double s = 0;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    R l = loss_of<R>(ld(x, e) - ld(t, e), kind, beta);
    if (none) st(y, e, l);
    else s += (double)l;
  }
  if (none) return;
  s = block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// final = sum(part) (/ den for 'mean'; den from a device value when dev_den is given)
template <typename T>
__global__ void k_finish(const double *part, int nparts, T *out, int red, double den, const double *dev_den,
                         T *aux_out, const double *aux) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double s = 0;
  for (int k = 0; k < nparts; k++) s += part[k];
  double d = dev_den ? *dev_den : den;
  if (red == DDPM_REDUCTION_MEAN) s = d != 0 ? s / d : NAN;
  st(out, 0, (RT<T>)s);
  if (aux_out) st(aux_out, 0, (RT<T>)*aux);
}

template <typename T>
__global__ void k_loss_bwd(const T *g, const T *x, const T *t, T *gx, int64_t n, int kind, double beta, int red) {
  using R = RT<T>;
  R gs = red == DDPM_REDUCTION_NONE ? (R)0 : (R)(red == DDPM_REDUCTION_MEAN ? (double)ld(g, 0) / (double)n : (double)ld(g, 0));
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    R d = ld(x, e) - ld(t, e), ge = red == DDPM_REDUCTION_NONE ? ld(g, e) : gs;
    st(gx, e, dloss_of<R>(d, kind, beta) * ge);
  }
}

unsigned red_blocks(int64_t n) {
  int64_t b = (n + RB - 1) / RB;
  if (b > RMAX_BLOCKS) b = RMAX_BLOCKS;
  return (unsigned)(b < 1 ? 1 : b);
}

template <typename T> int loss_fwd(ddpm_call *c, int kind) {
  ddpm_tensor *x = c->in[0], *t = c->in[1], *y = c->out[0];
  int red = (int)c->i[0];
  int64_t n = ddpm_tensor_numel(x);
  cudaStream_t s = stream();
  unsigned nb = red_blocks(n);
  if (red == DDPM_REDUCTION_NONE) {
    if (n) k_loss<T><<<nb, RB, 0, s>>>((const T *)ddpm_ptr(x), (const T *)ddpm_ptr(t), (T *)ddpm_ptr(y), nullptr, n, kind,
                                       c->f[0], true);
    return DDPM_OK;
  }
  Scratch part;
  DDPM_TRY(part.get(sizeof(double) * nb, current_ordinal()));
  k_loss<T><<<nb, RB, 0, s>>>((const T *)ddpm_ptr(x), (const T *)ddpm_ptr(t), nullptr, (double *)part.p, n, kind, c->f[0],
                              false);
  k_finish<T><<<1, 32, 0, s>>>((const double *)part.p, (int)nb, (T *)ddpm_ptr(y), red, (double)n, nullptr, nullptr,
                               nullptr);
  return DDPM_OK;
}

// ---- nll_loss ------------------------------------------------------------------------------------------------
struct Nll {
  int64_t N, C, S, ignore;
  int red;
};

template <typename T>
__global__ void k_nll(const T *x, const int64_t *tg, const T *w, T *y, double *part, double *wpart, Nll g, DevErr *err,
                      int op) {
  double s = 0, ws = 0;
  const int64_t n = g.N * g.S;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t cls = tg[e], nn = e / g.S, ss = e % g.S;
    double l = 0, wt = 0;
    if (cls != g.ignore) {
      if (cls < 0 || cls >= g.C) {
        report(err, op, cls, g.C);
      } else {
        wt = w ? (double)ld(w, cls) : 1.0;
        l = -wt * (double)ld(x, (nn * g.C + cls) * g.S + ss);
      }
    }
    if (g.red == DDPM_REDUCTION_NONE) st(y, e, (RT<T>)l);
    s += l;
    ws += wt;
  }
  s = block_sum(s);
  __syncthreads();
  ws = block_sum(ws);
  if (threadIdx.x == 0) {
    part[blockIdx.x] = s;
    wpart[blockIdx.x] = ws;
  }
}

__global__ void k_sum_parts(const double *part, int nparts, double *out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    double s = 0;
    for (int k = 0; k < nparts; k++) s += part[k];
    *out = s;
  }
}

template <typename T> int nll_fwd(ddpm_call *c) {
  ddpm_tensor *x = c->in[0], *w = c->in[2], *y = c->out[0], *tw = c->out[1];
  Nll g;
  if (x->ndim == 1) {
    g.N = 1;
    g.C = x->shape[0];
    g.S = 1;
  } else {
    g.N = x->shape[0];
    g.C = x->shape[1];
    g.S = ddpm_shape_numel(x->ndim - 2, x->shape + 2);
  }
  g.red = (int)c->i[0];
  g.ignore = c->i[1];
  int64_t n = g.N * g.S;
  unsigned nb = red_blocks(n);
  cudaStream_t s = stream();
  Scratch part;
  DDPM_TRY(part.get(sizeof(double) * (2 * (size_t)nb + 1), current_ordinal()));
  double *p = (double *)part.p, *wp = p + nb, *wsum = p + 2 * nb;
  k_nll<T><<<nb, RB, 0, s>>>((const T *)ddpm_ptr(x), (const int64_t *)ddpm_ptr(c->in[1]), w ? (const T *)ddpm_ptr(w) : nullptr,
                             (T *)ddpm_ptr(y), p, wp, g, deverr_ptr(current_ordinal()), c->op);
  k_sum_parts<<<1, 32, 0, s>>>(wp, (int)nb, wsum);
  if (g.red != DDPM_REDUCTION_NONE)
    k_finish<T><<<1, 32, 0, s>>>(p, (int)nb, (T *)ddpm_ptr(y), g.red, 0.0, wsum, tw ? (T *)ddpm_ptr(tw) : nullptr, wsum);
  else if (tw)
    k_finish<T><<<1, 32, 0, s>>>(wp, (int)nb, (T *)ddpm_ptr(tw), DDPM_REDUCTION_SUM, 0.0, nullptr, nullptr, nullptr);
  return DDPM_OK;
}

template <typename T>
__global__ void k_nll_bwd(const T *gy, const int64_t *tg, const T *w, const T *tw, T *gx, Nll g, DevErr *err, int op) {
  using R = RT<T>;
  const int64_t n = g.N * g.S;
  double g0 = g.red == DDPM_REDUCTION_NONE ? 0 : (double)ld(gy, 0);
  if (g.red == DDPM_REDUCTION_MEAN) g0 /= (double)ld(tw, 0);
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t cls = tg[e], nn = e / g.S, ss = e % g.S;
    if (cls == g.ignore) continue;
    if (cls < 0 || cls >= g.C) {
      report(err, op, cls, g.C);
      continue;
    }
    double wt = w ? (double)ld(w, cls) : 1.0;
    double gg = g.red == DDPM_REDUCTION_NONE ? (double)ld(gy, e) : g0;
    st(gx, (nn * g.C + cls) * g.S + ss, (R)(-wt * gg));
  }
}

template <typename T> int nll_bwd(ddpm_call *c) {
  ddpm_tensor *gx = c->out[0];
  Nll g;
  if (gx->ndim == 1) {
    g.N = 1;
    g.C = gx->shape[0];
    g.S = 1;
  } else {
    g.N = gx->shape[0];
    g.C = gx->shape[1];
    g.S = ddpm_shape_numel(gx->ndim - 2, gx->shape + 2);
  }
  g.red = (int)c->i[0];
  g.ignore = c->i[1];
  cudaStream_t s = stream();
  if (ddpm_tensor_numel(gx)) CU_TRY(cudaMemsetAsync(ddpm_ptr(gx), 0, (size_t)ddpm_tensor_numel(gx) * sizeof(T), s), "nll_loss backward");
  int64_t n = g.N * g.S;
  if (n == 0) return DDPM_OK;
  k_nll_bwd<T><<<blocks_for(n, 256), 256, 0, s>>>((const T *)ddpm_ptr(c->in[0]), (const int64_t *)ddpm_ptr(c->in[1]),
                                                  c->in[2] ? (const T *)ddpm_ptr(c->in[2]) : nullptr,
                                                  (const T *)ddpm_ptr(c->in[3]), (T *)ddpm_ptr(gx), g,
                                                  deverr_ptr(current_ordinal()), c->op);
  return DDPM_OK;
}

__global__ void k_one_hot(const int64_t *idx, int64_t *y, int64_t n, int64_t C, DevErr *err, int op) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t v = idx[e];
    if (v < 0 || v >= C) report(err, op, v, C);
    else y[e * C + v] = 1;
  }
}

#define FLOATS(dt, call)                                           \
  switch (dt) {                                                    \
  case DDPM_FLOAT32: { using T = float; return call; }              \
  case DDPM_FLOAT64: { using T = double; return call; }             \
  case DDPM_FLOAT16: { using T = __half; return call; }             \
  case DDPM_BFLOAT16: { using T = __nv_bfloat16; return call; }     \
  default: return no_dtype(c, dt);                                 \
  }

template <typename T> int dropout(ddpm_call *c, bool bwd) {
  ddpm_tensor *x = c->in[0];
  int64_t n = ddpm_tensor_numel(x);
  if (n == 0) return DDPM_OK;
  k_dropout<T><<<blocks_for(n, 256), 256, 0, stream()>>>(
      (const T *)ddpm_ptr(x), (T *)ddpm_ptr(c->out[0]), bwd ? nullptr : (uint8_t *)ddpm_ptr(c->out[1]),
      bwd ? (const uint8_t *)ddpm_ptr(c->in[1]) : nullptr, n, (uint64_t)c->i[0], (uint64_t)c->i[1], c->f[0]);
  return DDPM_OK;
}
template <typename T> int loss_bwd(ddpm_call *c) {
  ddpm_tensor *x = c->in[1];
  int64_t n = ddpm_tensor_numel(x);
  if (n == 0) return DDPM_OK;
  k_loss_bwd<T><<<blocks_for(n, 256), 256, 0, stream()>>>((const T *)ddpm_ptr(c->in[0]), (const T *)ddpm_ptr(x),
                                                          (const T *)ddpm_ptr(c->in[2]), (T *)ddpm_ptr(c->out[0]), n,
                                                          (int)c->i[1], c->f[0], (int)c->i[0]);
  return DDPM_OK;
}
} // namespace

DDPM_CU_KERNEL(DROPOUT) { FLOATS(c->in[0]->dtype, dropout<T>(c, false)) }
DDPM_CU_KERNEL(DROPOUT_BWD) { FLOATS(c->in[0]->dtype, dropout<T>(c, true)) }
DDPM_CU_KERNEL(MSE_LOSS) { FLOATS(c->in[0]->dtype, loss_fwd<T>(c, LOSS_MSE)) }
DDPM_CU_KERNEL(L1_LOSS) { FLOATS(c->in[0]->dtype, loss_fwd<T>(c, LOSS_L1)) }
DDPM_CU_KERNEL(SMOOTH_L1_LOSS) { FLOATS(c->in[0]->dtype, loss_fwd<T>(c, LOSS_SMOOTH_L1)) }
DDPM_CU_KERNEL(LOSS_BWD) { FLOATS(c->in[1]->dtype, loss_bwd<T>(c)) }
DDPM_CU_KERNEL(NLL_LOSS) { FLOATS(c->in[0]->dtype, nll_fwd<T>(c)) }
DDPM_CU_KERNEL(NLL_LOSS_BWD) { FLOATS(c->out[0]->dtype, nll_bwd<T>(c)) }
DDPM_CU_KERNEL(ONE_HOT) {
  ddpm_tensor *idx = c->in[0], *y = c->out[0];
  int64_t n = ddpm_tensor_numel(idx), C = c->i[0];
  cudaStream_t s = stream();
  if (ddpm_tensor_numel(y)) CU_TRY(cudaMemsetAsync(ddpm_ptr(y), 0, (size_t)ddpm_tensor_numel(y) * 8, s), "one_hot");
  if (n == 0) return DDPM_OK;
  k_one_hot<<<blocks_for(n, 256), 256, 0, s>>>((const int64_t *)ddpm_ptr(idx), (int64_t *)ddpm_ptr(y), n, C,
                                               deverr_ptr(current_ordinal()), c->op);
  return DDPM_OK;
}
