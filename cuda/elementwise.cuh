// elementwise.cuh: the elementwise launch machinery.  Operands are broadcast to the output's
// shape and their dims coalesced on the host (as engine/cpu/iter.c does); then either
//  - every operand is one contiguous run: a vectorised kernel (4 elements per access), or
//  - a strided kernel maps each 32-bit linear index to per-operand offsets with precomputed
//    magic-number division (no 64-bit divides on the GPU).
// Iterations of 2^31 elements or more are split along their outermost dim until each piece fits
// 32-bit indexing.  Ops are functors over the compute type (float for f32/f16/bf16, double for
// f64, int64 for integers), mirroring the CPU kernels' expressions.
#ifndef DDPM_CUDA_ELEMENTWISE_CUH
#define DDPM_CUDA_ELEMENTWISE_CUH
#include "cuda_common.cuh"
#include <type_traits>

namespace ddpm_cu {

#define EW_MAX_OPS 4
#define EW_THREADS 256
#define EW_VEC 4

// n / d for n < 2^31 via multiply-high (Granlund-Montgomery), d >= 1
struct FastDiv {
  uint32_t d, m, s;
  __host__ void init(uint32_t div) {
    d = div ? div : 1; // empty dims never reach a kernel; keep the host arithmetic defined
    for (s = 0; s < 32; s++)
      if ((1ull << s) >= d) break;
    uint64_t one = 1;
    m = (uint32_t)(((one << 32) * ((one << s) - d)) / d + 1);
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const { return (__umulhi(n, m) + n) >> s; }
};

// Host view of a broadcast, coalesced iteration; dims outermost first, strides in elements.
struct ElemIter {
  int nops, ndim;
  int64_t numel;
  int64_t shape[DDPM_MAX_DIMS];
  int64_t stride[EW_MAX_OPS][DDPM_MAX_DIMS];
  char *base[EW_MAX_OPS];
  int esize[EW_MAX_OPS];
};

void iter_init(ElemIter *it, int nops, ddpm_tensor *const *ops);
bool iter_contiguous(const ElemIter &it);

template <int N> struct OffCalc {
  int ndim;
  FastDiv div[DDPM_MAX_DIMS];                 // innermost first
  int64_t stride[DDPM_MAX_DIMS][N];
  __device__ __forceinline__ void get(uint32_t i, int64_t *off) const {
#pragma unroll
    for (int k = 0; k < N; k++) off[k] = 0;
#pragma unroll
    for (int d = 0; d < DDPM_MAX_DIMS; d++) {
      if (d == ndim) break;
      uint32_t q = div[d].div(i), r = i - q * div[d].d;
      i = q;
#pragma unroll
      for (int k = 0; k < N; k++) off[k] += (int64_t)r * stride[d][k];
    }
  }
};

template <int N> OffCalc<N> make_offcalc(const ElemIter &it) {
  OffCalc<N> oc;
  oc.ndim = it.ndim;
  for (int j = 0; j < it.ndim; j++) {
    int d = it.ndim - 1 - j;
    oc.div[j].init((uint32_t)it.shape[d]);
    for (int k = 0; k < N; k++) oc.stride[j][k] = it.stride[k][d];
  }
  return oc;
}

// Call launch(piece) for pieces of it that each fit 32-bit indexing; stops at the first error.
template <typename Fn> int for_each_piece(const ElemIter &it, Fn &&launch) {
  if (it.numel == 0) return DDPM_OK;
  if (it.numel <= (int64_t)INT32_MAX) return launch(it);
  ElemIter a = it, b = it;
  int64_t S = it.shape[0], h = S / 2;
  a.shape[0] = h;
  b.shape[0] = S - h;
  for (int k = 0; k < it.nops; k++) b.base[k] += h * it.stride[k][0] * it.esize[k];
  a.numel = it.numel / S * h;
  b.numel = it.numel / S * (S - h);
  ElemIter *parts[2] = {&a, &b};
  for (ElemIter *p : parts) {
    if (p->shape[0] == 1) { // drop the exhausted dim
      for (int d = 1; d < p->ndim; d++) {
        p->shape[d - 1] = p->shape[d];
        for (int k = 0; k < p->nops; k++) p->stride[k][d - 1] = p->stride[k][d];
      }
      p->ndim--;
    }
    DDPM_TRY(for_each_piece(*p, launch));
  }
  return DDPM_OK;
}

template <typename T, int V> struct alignas(sizeof(T) * V) AVec {
  T v[V];
};

static inline bool aligned_for(const void *p, size_t bytes) { return ((uintptr_t)p % bytes) == 0; }

// ---- unary: out = f(x, p0, p1) ---------------------------------------------------------------------
template <typename TO, typename TI, typename F, typename P>
__global__ void k_unary_strided(OffCalc<2> oc, uint32_t n, TO *out, const TI *in, F f, P p0, P p1) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int64_t off[2];
    oc.get(i, off);
    out[off[0]] = Traits<TO>::store((typename Traits<TO>::C)f(Traits<TI>::load(in[off[1]]), p0, p1));
  }
}
template <typename TO, typename TI, typename F, typename P>
__global__ void k_unary_vec(int64_t n, TO *out, const TI *in, F f, P p0, P p1) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x * EW_VEC;
  for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * EW_VEC; i < n; i += stride) {
    if (i + EW_VEC <= n) {
      AVec<TI, EW_VEC> a = *reinterpret_cast<const AVec<TI, EW_VEC> *>(in + i);
      AVec<TO, EW_VEC> o;
#pragma unroll
      for (int k = 0; k < EW_VEC; k++)
        o.v[k] = Traits<TO>::store((typename Traits<TO>::C)f(Traits<TI>::load(a.v[k]), p0, p1));
      *reinterpret_cast<AVec<TO, EW_VEC> *>(out + i) = o;
    } else {
      for (int64_t j = i; j < n; j++)
        out[j] = Traits<TO>::store((typename Traits<TO>::C)f(Traits<TI>::load(in[j]), p0, p1));
    }
  }
}

// ---- binary: out = f(x, y) -------------------------------------------------------------------------
template <typename TO, typename TI, typename F>
__global__ void k_binary_strided(OffCalc<3> oc, uint32_t n, TO *out, const TI *a, const TI *b, F f) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int64_t off[3];
    oc.get(i, off);
    out[off[0]] = Traits<TO>::store(
        (typename Traits<TO>::C)f(Traits<TI>::load(a[off[1]]), Traits<TI>::load(b[off[2]])));
  }
}
template <typename TO, typename TI, typename F>
__global__ void k_binary_vec(int64_t n, TO *out, const TI *a, const TI *b, F f) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x * EW_VEC;
  for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * EW_VEC; i < n; i += stride) {
    if (i + EW_VEC <= n) {
      AVec<TI, EW_VEC> x = *reinterpret_cast<const AVec<TI, EW_VEC> *>(a + i);
      AVec<TI, EW_VEC> y = *reinterpret_cast<const AVec<TI, EW_VEC> *>(b + i);
      AVec<TO, EW_VEC> o;
#pragma unroll
      for (int k = 0; k < EW_VEC; k++)
        o.v[k] = Traits<TO>::store(
            (typename Traits<TO>::C)f(Traits<TI>::load(x.v[k]), Traits<TI>::load(y.v[k])));
      *reinterpret_cast<AVec<TO, EW_VEC> *>(out + i) = o;
    } else {
      for (int64_t j = i; j < n; j++)
        out[j] = Traits<TO>::store((typename Traits<TO>::C)f(Traits<TI>::load(a[j]), Traits<TI>::load(b[j])));
    }
  }
}

// Vectorised kernels only for the float types that carry training traffic: the strided kernel
// serves every other case (a contiguous operand coalesces to one dim there, which costs one
// multiply-high per element), keeping the number of instantiations and the build time down.
template <typename T> constexpr bool vec_worthy() {
  return std::is_same<T, float>::value || std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value;
}

template <typename TO, typename TI, typename F>
int run_unary(ddpm_call *c, F f, double p0d, double p1d) {
  using P = typename Traits<TI>::C;
  P p0 = param_as<P>(p0d), p1 = param_as<P>(p1d);
  ddpm_tensor *ops[2] = {c->out[0], c->in[0]};
  ElemIter it;
  iter_init(&it, 2, ops);
  cudaStream_t s = stream();
  if constexpr (vec_worthy<TI>()) {
    if (iter_contiguous(it) && aligned_for(it.base[0], sizeof(TO) * EW_VEC) &&
        aligned_for(it.base[1], sizeof(TI) * EW_VEC)) {
      int64_t n = it.numel;
      k_unary_vec<TO, TI, F, P><<<blocks_for((n + EW_VEC - 1) / EW_VEC, EW_THREADS), EW_THREADS, 0, s>>>(
          n, (TO *)it.base[0], (const TI *)it.base[1], f, p0, p1);
      return DDPM_OK;
    }
  }
  return for_each_piece(it, [&](const ElemIter &p) {
    k_unary_strided<TO, TI, F, P><<<blocks_for(p.numel, EW_THREADS), EW_THREADS, 0, s>>>(
        make_offcalc<2>(p), (uint32_t)p.numel, (TO *)p.base[0], (const TI *)p.base[1], f, p0, p1);
    return DDPM_OK;
  });
}

template <typename TO, typename TI, typename F> int run_binary(ddpm_call *c, F f) {
  ddpm_tensor *ops[3] = {c->out[0], c->in[0], c->in[1]};
  ElemIter it;
  iter_init(&it, 3, ops);
  cudaStream_t s = stream();
  if constexpr (vec_worthy<TI>()) {
    if (iter_contiguous(it) && aligned_for(it.base[0], sizeof(TO) * EW_VEC) &&
        aligned_for(it.base[1], sizeof(TI) * EW_VEC) && aligned_for(it.base[2], sizeof(TI) * EW_VEC)) {
      int64_t n = it.numel;
      k_binary_vec<TO, TI, F><<<blocks_for((n + EW_VEC - 1) / EW_VEC, EW_THREADS), EW_THREADS, 0, s>>>(
          n, (TO *)it.base[0], (const TI *)it.base[1], (const TI *)it.base[2], f);
      return DDPM_OK;
    }
  }
  return for_each_piece(it, [&](const ElemIter &p) {
    k_binary_strided<TO, TI, F><<<blocks_for(p.numel, EW_THREADS), EW_THREADS, 0, s>>>(
        make_offcalc<3>(p), (uint32_t)p.numel, (TO *)p.base[0], (const TI *)p.base[1], (const TI *)p.base[2], f);
    return DDPM_OK;
  });
}

// ---- math with the CPU kernels' semantics, overloaded on the compute type ---------------------------------
namespace m {
__device__ __forceinline__ float exp(float x) { return expf(x); }
__device__ __forceinline__ double exp(double x) { return ::exp(x); }
__device__ __forceinline__ float log(float x) { return logf(x); }
__device__ __forceinline__ double log(double x) { return ::log(x); }
__device__ __forceinline__ float sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt(double x) { return ::sqrt(x); }
__device__ __forceinline__ float sin(float x) { return sinf(x); }
__device__ __forceinline__ double sin(double x) { return ::sin(x); }
__device__ __forceinline__ float cos(float x) { return cosf(x); }
__device__ __forceinline__ double cos(double x) { return ::cos(x); }
__device__ __forceinline__ float tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh(double x) { return ::tanh(x); }
__device__ __forceinline__ float floor(float x) { return floorf(x); }
__device__ __forceinline__ double floor(double x) { return ::floor(x); }
__device__ __forceinline__ float ceil(float x) { return ceilf(x); }
__device__ __forceinline__ double ceil(double x) { return ::ceil(x); }
__device__ __forceinline__ float rint(float x) { return rintf(x); } // nearbyint: ties to even
__device__ __forceinline__ double rint(double x) { return ::rint(x); }
__device__ __forceinline__ float erf(float x) { return erff(x); }
__device__ __forceinline__ double erf(double x) { return ::erf(x); }
__device__ __forceinline__ float pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double pow(double x, double y) { return ::pow(x, y); }
__device__ __forceinline__ int64_t pow(int64_t x, int64_t e) {
  if (e < 0) return x == 1 ? 1 : (x == -1 ? ((e & 1) ? -1 : 1) : 0);
  int64_t r = 1;
  while (e) {
    if (e & 1) r *= x;
    x *= x;
    e >>= 1;
  }
  return r;
}
// pow with a scalar exponent, special-cased as the CPU (and PyTorch) do
template <typename C> __device__ __forceinline__ C pows(C x, C e) {
  if constexpr (std::is_same<C, int64_t>::value) {
    return pow(x, e);
  } else {
    if (e == (C)2) return x * x;
    if (e == (C)3) return x * x * x;
    if (e == (C)0.5) return sqrt(x);
    if (e == (C)-1) return (C)1 / x;
    if (e == (C)-2) return (C)1 / (x * x);
    if (e == (C)-0.5) return (C)1 / sqrt(x);
    return pow(x, e);
  }
}
} // namespace m

} // namespace ddpm_cu
#endif
