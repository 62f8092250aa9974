// softmax.cu: softmax and log_softmax along one dim, forward and backward, as the CPU rows of
// engine/cpu/softmax_impl.h compute them: shift by the row max (NaNs ignored), exponentials in the
// compute type, their sum in double; softmax y = exp(x - max) * (1 / sum), log_softmax
// y = (x - max) - log(sum); backward gx = y (gy - sum gy y) or gx = gy - exp(y) sum gy.
// x is seen as [outer, D, inner]: rows along the last dim (inner == 1) take one warp each;
// otherwise one thread per (outer, inner) column walks D, neighbouring threads reading
// neighbouring addresses.
#include "cuda_common.cuh"
#include <type_traits>

using namespace ddpm_cu;

namespace {
template <typename T> using RT = typename std::conditional<std::is_same<T, double>::value, double, float>::type;
template <typename T> __device__ __forceinline__ RT<T> ld(const T *p, int64_t i) { return (RT<T>)Traits<T>::load(p[i]); }
template <typename T> __device__ __forceinline__ void st(T *p, int64_t i, RT<T> v) { p[i] = Traits<T>::store(v); }
__device__ __forceinline__ float expR(float x) { return expf(x); }
__device__ __forceinline__ double expR(double x) { return exp(x); }

__device__ __forceinline__ double wsum(double v) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  return v;
}
template <typename R> __device__ __forceinline__ R wmax(R v) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) {
    R o = __shfl_xor_sync(0xffffffffu, v, d);
    v = o > v ? o : v;
  }
  return v;
}

// element k of row r lives at r_outer * D * inner + k * inner + r_inner
struct Geo {
  int64_t rows, D, inner;
  __device__ __forceinline__ int64_t base(int64_t r) const { return (r / inner) * D * inner + r % inner; }
};

template <typename T, bool LOG> __global__ void k_fwd_warp(const T *x, T *y, Geo g) {
  using R = RT<T>;
  const int lane = threadIdx.x & 31;
  const int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= g.rows) return;
  const int64_t b = r * g.D;
  R m = -INFINITY;
  for (int64_t k = lane; k < g.D; k += 32) {
    R v = ld(x, b + k);
    m = v > m ? v : m;
  }
  m = wmax(m);
  double s = 0;
  for (int64_t k = lane; k < g.D; k += 32) s += (double)expR(ld(x, b + k) - m);
  s = wsum(s);
  if (LOG) {
    R ls = (R)log(s);
    for (int64_t k = lane; k < g.D; k += 32) st(y, b + k, (ld(x, b + k) - m) - ls);
  } else {
    R inv = (R)(1.0 / s);
    for (int64_t k = lane; k < g.D; k += 32) st(y, b + k, expR(ld(x, b + k) - m) * inv);
  }
}

template <typename T, bool LOG> __global__ void k_fwd_cols(const T *x, T *y, Geo g) {
  using R = RT<T>;
  for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < g.rows; r += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = g.base(r), in = g.inner;
    R m = -INFINITY;
    for (int64_t k = 0; k < g.D; k++) {
      R v = ld(x, b + k * in);
      m = v > m ? v : m;
    }
    double s = 0;
    for (int64_t k = 0; k < g.D; k++) s += (double)expR(ld(x, b + k * in) - m);
    if (LOG) {
      R ls = (R)log(s);
      for (int64_t k = 0; k < g.D; k++) st(y, b + k * in, (ld(x, b + k * in) - m) - ls);
    } else {
      R inv = (R)(1.0 / s);
      for (int64_t k = 0; k < g.D; k++) st(y, b + k * in, expR(ld(x, b + k * in) - m) * inv);
    }
  }
}

template <typename T, bool LOG> __global__ void k_bwd_warp(const T *gy, const T *y, T *gx, Geo g) {
  using R = RT<T>;
  const int lane = threadIdx.x & 31;
  const int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= g.rows) return;
  const int64_t b = r * g.D;
  double s = 0;
  for (int64_t k = lane; k < g.D; k += 32) s += LOG ? (double)ld(gy, b + k) : (double)ld(gy, b + k) * ld(y, b + k);
  R sr = (R)wsum(s);
  for (int64_t k = lane; k < g.D; k += 32) {
    R gv = ld(gy, b + k), yv = ld(y, b + k);
    st(gx, b + k, LOG ? gv - expR(yv) * sr : yv * (gv - sr));
  }
}

template <typename T, bool LOG> __global__ void k_bwd_cols(const T *gy, const T *y, T *gx, Geo g) {
  using R = RT<T>;
  for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < g.rows; r += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = g.base(r), in = g.inner;
    double s = 0;
    for (int64_t k = 0; k < g.D; k++)
      s += LOG ? (double)ld(gy, b + k * in) : (double)ld(gy, b + k * in) * ld(y, b + k * in);
    R sr = (R)s;
    for (int64_t k = 0; k < g.D; k++) {
      R gv = ld(gy, b + k * in), yv = ld(y, b + k * in);
      st(gx, b + k * in, LOG ? gv - expR(yv) * sr : yv * (gv - sr));
    }
  }
}

Geo geo_of(const ddpm_tensor *x, int d) {
  Geo g;
  g.D = x->ndim ? x->shape[d] : 1;
  g.inner = 1;
  for (int k = d + 1; k < x->ndim; k++) g.inner *= x->shape[k];
  int64_t n = ddpm_tensor_numel(x);
  g.rows = g.D ? n / g.D : 0;
  return g;
}

template <typename T> int run(ddpm_call *c, bool log, bool bwd) {
  const ddpm_tensor *x = bwd ? c->in[1] : c->in[0];
  Geo g = geo_of(x, (int)c->i[0]);
  if (g.rows == 0 || g.D == 0) return DDPM_OK;
  cudaStream_t s = stream();
  unsigned wb = blocks_for(g.rows, 8, INT32_MAX), cb = blocks_for(g.rows, 128);
  T *out = (T *)ddpm_ptr(c->out[0]);
  if (!bwd) {
    const T *xp = (const T *)ddpm_ptr(x);
    if (g.inner == 1) {
      if (log) k_fwd_warp<T, true><<<wb, 256, 0, s>>>(xp, out, g);
      else k_fwd_warp<T, false><<<wb, 256, 0, s>>>(xp, out, g);
    } else {
      if (log) k_fwd_cols<T, true><<<cb, 128, 0, s>>>(xp, out, g);
      else k_fwd_cols<T, false><<<cb, 128, 0, s>>>(xp, out, g);
    }
  } else {
    const T *gy = (const T *)ddpm_ptr(c->in[0]), *y = (const T *)ddpm_ptr(c->in[1]);
    if (g.inner == 1) {
      if (log) k_bwd_warp<T, true><<<wb, 256, 0, s>>>(gy, y, out, g);
      else k_bwd_warp<T, false><<<wb, 256, 0, s>>>(gy, y, out, g);
    } else {
      if (log) k_bwd_cols<T, true><<<cb, 128, 0, s>>>(gy, y, out, g);
      else k_bwd_cols<T, false><<<cb, 128, 0, s>>>(gy, y, out, g);
    }
  }
  return DDPM_OK;
}

int dispatch(ddpm_call *c, bool log, bool bwd) {
  int dt = (bwd ? c->in[1] : c->in[0])->dtype;
  switch (dt) {
  case DDPM_FLOAT32: return run<float>(c, log, bwd);
  case DDPM_FLOAT64: return run<double>(c, log, bwd);
  case DDPM_FLOAT16: return run<__half>(c, log, bwd);
  case DDPM_BFLOAT16: return run<__nv_bfloat16>(c, log, bwd);
  default: return no_dtype(c, dt);
  }
}
} // namespace

DDPM_CU_KERNEL(SOFTMAX) { return dispatch(c, false, false); }
DDPM_CU_KERNEL(LOG_SOFTMAX) { return dispatch(c, true, false); }
DDPM_CU_KERNEL(SOFTMAX_BWD) { return dispatch(c, c->i[1] != 0, true); }
