// reduce.cu: sum, amax, amin, argmax, argmin over any set of dims (output in keepdim shape, as the
// CPU kernels produce it).  Floats accumulate in double and integers in int64, like the CPU, so
// sums agree closely; extrema follow PyTorch: NaN wins, ties keep the first index.
//
// The input is split into kept and reduced dims (size-1 dims dropped, contiguous runs merged).
// Two kernels cover the layouts:
//  - rows: when the reduced dims include the innermost contiguous one, a group of threads (a
//    warp, or a whole block for long rows) reduces each output with coalesced reads;
//  - cols: otherwise (e.g. a bias gradient, summing [N, C] over N) one thread per output walks the
//    reduced dims while neighbouring threads read neighbouring addresses.
// When there are too few outputs to fill the GPU, the reduced range is split over blockIdx.y
// and a second kernel combines the partial results.
#include "elementwise.cuh"
#include <cfloat>

using namespace ddpm_cu;

namespace {

// offsets of the elements of a row-major index space (kept or reduced dims)
struct Dims {
  int n;
  bool fast; // every index < 2^31: magic-number division
  int64_t shape[DDPM_MAX_DIMS], stride[DDPM_MAX_DIMS]; // innermost first
  FastDiv fd[DDPM_MAX_DIMS];
  __device__ __forceinline__ int64_t off(int64_t idx) const {
    if (n == 1) return idx * stride[0];
    int64_t o = 0;
    if (fast) {
      uint32_t i = (uint32_t)idx;
      for (int d = 0; d < n; d++) {
        uint32_t q = fd[d].div(i);
        o += (int64_t)(i - q * fd[d].d) * stride[d];
        i = q;
      }
    } else {
      for (int d = 0; d < n; d++) {
        o += (idx % shape[d]) * stride[d];
        idx /= shape[d];
      }
    }
    return o;
  }
};

template <typename T> struct AccOf { using type = double; };
template <> struct AccOf<int64_t> { using type = int64_t; };
template <> struct AccOf<int32_t> { using type = int64_t; };
template <> struct AccOf<uint8_t> { using type = int64_t; };
template <> struct AccOf<Bool8> { using type = int64_t; };

template <typename V> __device__ __forceinline__ bool is_nan(V v) { return v != v; }

template <typename V> __device__ __forceinline__ V shfl_down(V v, int d) { return __shfl_down_sync(0xffffffffu, v, d); }

struct SumR {
  template <typename A> __device__ __forceinline__ A ident() const { return (A)0; }
  template <typename A> __device__ __forceinline__ A comb(A a, A b) const { return a + b; }
};
struct ExtR {
  bool is_max;
  template <typename A> __device__ __forceinline__ A ident() const {
    if constexpr (std::is_same<A, double>::value) return is_max ? -INFINITY : INFINITY;
    else return is_max ? INT64_MIN : INT64_MAX;
  }
  template <typename A> __device__ __forceinline__ A comb(A a, A b) const {
    if (is_nan(a)) return a;
    if (is_nan(b)) return b;
    return is_max ? (b > a ? b : a) : (b < a ? b : a);
  }
};
template <typename V> struct Pair {
  V v;
  int64_t i; // -1: empty
};
template <typename V> __device__ __forceinline__ Pair<V> shfl_down(Pair<V> p, int d) {
  return Pair<V>{__shfl_down_sync(0xffffffffu, p.v, d), __shfl_down_sync(0xffffffffu, p.i, d)};
}
struct ArgR {
  bool is_max;
  template <typename A> __device__ __forceinline__ A ident() const { return A{0, -1}; }
  template <typename A> __device__ __forceinline__ A comb(A a, A b) const {
    if (a.i < 0) return b;
    if (b.i < 0) return a;
    bool an = is_nan(a.v), bn = is_nan(b.v);
    if (an || bn) {
      if (an && bn) return a.i <= b.i ? a : b;
      return an ? a : b;
    }
    if (a.v == b.v) return a.i <= b.i ? a : b;
    return (is_max ? a.v > b.v : a.v < b.v) ? a : b;
  }
};

// element -> accumulator
template <typename A, typename T> __device__ __forceinline__ A lift(T x, int64_t r) {
  if constexpr (std::is_same<A, double>::value || std::is_same<A, int64_t>::value) return (A)Traits<T>::load(x);
  else return A{(decltype(A::v))Traits<T>::load(x), r};
}
// accumulator -> output element
template <typename O, typename A> __device__ __forceinline__ O lower(A a) {
  if constexpr (std::is_same<A, double>::value) {
    if constexpr (std::is_same<O, double>::value) return a;
    else return Traits<O>::store((typename Traits<O>::C)(float)a); // as the CPU: (float)acc, then round
  } else if constexpr (std::is_same<A, int64_t>::value) {
    return Traits<O>::store(a);
  } else {
    return (O)(a.i < 0 ? 0 : a.i);
  }
}

template <int W, typename T, typename O, typename A, typename Red>
__global__ void k_rows(Dims kd, Dims rd, int64_t nout, int64_t R, int splits, const T *x, O *out, A *partial,
                       Red red) {
  constexpr int G = 256 / W; // outputs per block
  const int lane = threadIdx.x % W, grp = threadIdx.x / W;
  const int64_t o = (int64_t)blockIdx.x * G + grp;
  const int64_t chunk = (R + splits - 1) / splits;
  const int64_t r0 = (int64_t)blockIdx.y * chunk, r1 = min(R, r0 + chunk);
  A acc = red.template ident<A>();
  if (o < nout) {
    const T *base = x + kd.off(o);
    for (int64_t r = r0 + lane; r < r1; r += W) acc = red.comb(acc, lift<A>(base[rd.off(r)], r));
  }
  // warp level
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) {
    A other = shfl_down(acc, d);
    if ((threadIdx.x % 32) + d < 32) acc = red.comb(acc, other);
  }
  if constexpr (W > 32) {
    __shared__ A sm[256 / 32];
    if (threadIdx.x % 32 == 0) sm[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int k = 1; k < 256 / 32; k++) acc = red.comb(acc, sm[k]);
    }
  }
  if (lane == 0 && o < nout) {
    if (splits == 1) out[o] = lower<O>(acc);
    else partial[o * splits + blockIdx.y] = acc;
  }
}

template <typename T, typename O, typename A, typename Red>
__global__ void k_cols(Dims kd, Dims rd, int64_t nout, int64_t R, int splits, const T *x, O *out, A *partial,
                       Red red) {
  const int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= nout) return;
  const int64_t chunk = (R + splits - 1) / splits;
  const int64_t r0 = (int64_t)blockIdx.y * chunk, r1 = min(R, r0 + chunk);
  const T *base = x + kd.off(o);
  A acc = red.template ident<A>();
  for (int64_t r = r0; r < r1; r++) acc = red.comb(acc, lift<A>(base[rd.off(r)], r));
  if (splits == 1) out[o] = lower<O>(acc);
  else partial[o * splits + blockIdx.y] = acc;
}

template <typename O, typename A, typename Red>
__global__ void k_finish(int64_t nout, int splits, const A *partial, O *out, Red red) {
  for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < nout; o += (int64_t)gridDim.x * blockDim.x) {
    A acc = partial[o * splits];
    for (int s = 1; s < splits; s++) acc = red.comb(acc, partial[o * splits + s]);
    out[o] = lower<O>(acc);
  }
}

void make_dims(Dims *d, int n, const int64_t *shape_outer_first, const int64_t *stride_outer_first, int64_t total) {
  d->n = n;
  d->fast = total <= (int64_t)INT32_MAX;
  for (int j = 0; j < n; j++) {
    int k = n - 1 - j;
    d->shape[j] = shape_outer_first[k];
    d->stride[j] = stride_outer_first[k];
    if (d->fast) d->fd[j].init((uint32_t)shape_outer_first[k]);
  }
}

struct Plan {
  Dims kd, rd;
  int64_t nout, R;
  bool rows; // reduced dims hold the innermost contiguous run
};

template <typename T, typename O, typename A, typename Red> int launch(const Plan &p, const T *x, O *out, Red red) {
  cudaStream_t s = stream();
  int sms = device_sm_count(current_ordinal());
  int64_t target = 4LL * sms;
  if (p.nout == 0) return DDPM_OK;
  int W = p.R > 2048 ? 256 : 32;
  int64_t outs_per_block = p.rows ? 256 / W : 256;
  int64_t blocks = (p.nout + outs_per_block - 1) / outs_per_block;
  int splits = 1;
  int64_t min_chunk = p.rows ? 4096 : 64;
  if (blocks < target && p.R >= 2 * min_chunk) {
    int64_t sp = target / blocks;
    int64_t cap = p.R / min_chunk;
    if (sp > cap) sp = cap;
    if (sp > 1024) sp = 1024;
    splits = (int)(sp < 1 ? 1 : sp);
  }
  if (blocks > INT32_MAX) return DDPM_FAIL(DDPM_ERR_SHAPE, "reduction: too many outputs (%lld)", (long long)p.nout);
  Scratch ws;
  A *partial = nullptr;
  if (splits > 1) {
    DDPM_TRY(ws.get(sizeof(A) * (size_t)p.nout * (size_t)splits, current_ordinal()));
    partial = (A *)ws.p;
  }
  dim3 grid((unsigned)blocks, (unsigned)splits);
  if (p.rows) {
    if (W == 256) k_rows<256, T, O, A, Red><<<grid, 256, 0, s>>>(p.kd, p.rd, p.nout, p.R, splits, x, out, partial, red);
    else k_rows<32, T, O, A, Red><<<grid, 256, 0, s>>>(p.kd, p.rd, p.nout, p.R, splits, x, out, partial, red);
  } else {
    k_cols<T, O, A, Red><<<grid, 256, 0, s>>>(p.kd, p.rd, p.nout, p.R, splits, x, out, partial, red);
  }
  if (splits > 1)
    k_finish<O, A, Red><<<blocks_for(p.nout, 256), 256, 0, s>>>(p.nout, splits, partial, out, red);
  return DDPM_OK;
}

template <typename T> int reduce_typed(ddpm_call *c, const Plan &p) {
  using A = typename AccOf<T>::type;
  const T *x = (const T *)ddpm_ptr(c->in[0]);
  char *o = ddpm_ptr(c->out[0]);
  switch (c->op) {
  case DDPM_OP_SUM:
    if constexpr (std::is_same<A, double>::value) return launch<T, T, A>(p, x, (T *)o, SumR());
    else return launch<T, int64_t, A>(p, x, (int64_t *)o, SumR());
  case DDPM_OP_AMAX:
  case DDPM_OP_AMIN: return launch<T, T, A>(p, x, (T *)o, ExtR{c->op == DDPM_OP_AMAX});
  default: return launch<T, int64_t, Pair<A>>(p, x, (int64_t *)o, ArgR{c->op == DDPM_OP_ARGMAX});
  }
}

int run_reduce(ddpm_call *c) {
  const ddpm_tensor *x = c->in[0];
  uint32_t mask = (uint32_t)c->i[0];
  int64_t ks[DDPM_MAX_DIMS], kst[DDPM_MAX_DIMS], rs[DDPM_MAX_DIMS], rst[DDPM_MAX_DIMS];
  int nk = 0, nr = 0;
  int64_t R = 1, nout = 1;
  for (int d = 0; d < x->ndim; d++) {
    int64_t n = x->shape[d], st = x->strides[d];
    bool red = (mask >> d) & 1u;
    if (red) R *= n;
    else nout *= n;
    if (n == 1) continue;
    int64_t *sh = red ? rs : ks, *sd = red ? rst : kst;
    int *cnt = red ? &nr : &nk;
    if (*cnt > 0 && sd[*cnt - 1] == st * n) {
      sh[*cnt - 1] *= n;
      sd[*cnt - 1] = st;
    } else {
      sh[*cnt] = n;
      sd[*cnt] = st;
      (*cnt)++;
    }
  }
  if (R == 0 && c->op != DDPM_OP_SUM)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: cannot reduce over an empty dimension of %s", ddpm_opname(c->op),
                     ddpm_fmt_tensor(x));
  if (nout == 0) return DDPM_OK;
  if (R == 0) { // a sum over nothing: zeros (all-zero bits in every output dtype)
    CU_TRY(cudaMemsetAsync(ddpm_ptr(c->out[0]), 0, (size_t)nout * ddpm_dsize(c->out[0]->dtype), stream()),
           ddpm_opname(c->op));
    return DDPM_OK;
  }
  Plan p;
  p.nout = nout;
  p.R = R;
  // nothing to reduce over: a scalar range of one step keeps the kernels simple
  if (nr == 0) {
    rs[0] = 1;
    rst[0] = 0;
    nr = 1;
  }
  if (nk == 0) {
    ks[0] = 1;
    kst[0] = 0;
    nk = 1;
  }
  make_dims(&p.kd, nk, ks, kst, nout);
  make_dims(&p.rd, nr, rs, rst, R);
  // rows when the smallest stride among all dims belongs to a reduced dim
  p.rows = rst[nr - 1] <= kst[nk - 1] || nout == 1;
  if (nout == 1 && R == 1) p.rows = false;
  int dt = x->dtype;
  switch (dt) {
    DDPM_CU_FLOAT_CASES(return reduce_typed<T>(c, p))
    DDPM_CU_INT_CASES(return reduce_typed<T>(c, p))
  default: return no_dtype(c, dt);
  }
  return DDPM_OK;
}
} // namespace

DDPM_CU_KERNEL(SUM) { return run_reduce(c); }
DDPM_CU_KERNEL(AMAX) { return run_reduce(c); }
DDPM_CU_KERNEL(AMIN) { return run_reduce(c); }
DDPM_CU_KERNEL(ARGMAX) { return run_reduce(c); }
DDPM_CU_KERNEL(ARGMIN) { return run_reduce(c); }
