// copy.cu: strided copies with dtype conversion (the conversion rules of engine/cpu/elementwise.c:
// through double, with float->int truncating, non-finite -> 0, int->int wrapping, anything->bool
// meaning "nonzero") and fills.  Same-dtype contiguous copies and zero fills are plain
// cudaMemcpyAsync/cudaMemsetAsync.
#include "elementwise.cuh"

using namespace ddpm_cu;

namespace {
template <typename T> __device__ __forceinline__ double to_d(T v);
template <> __device__ __forceinline__ double to_d(float v) { return v; }
template <> __device__ __forceinline__ double to_d(double v) { return v; }
template <> __device__ __forceinline__ double to_d(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ double to_d(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ double to_d(int64_t v) { return (double)v; }
template <> __device__ __forceinline__ double to_d(int32_t v) { return v; }
template <> __device__ __forceinline__ double to_d(uint8_t v) { return v; }
template <> __device__ __forceinline__ double to_d(Bool8 v) { return v.v ? 1.0 : 0.0; }

template <typename T> __device__ __forceinline__ T from_d(double v);
template <> __device__ __forceinline__ float from_d(double v) { return (float)v; }
template <> __device__ __forceinline__ double from_d(double v) { return v; }
template <> __device__ __forceinline__ __half from_d(double v) { return __float2half_rn((float)v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_d(double v) { return __float2bfloat16_rn((float)v); }
template <> __device__ __forceinline__ int64_t from_d(double v) { return isfinite(v) ? (int64_t)v : 0; }
template <> __device__ __forceinline__ int32_t from_d(double v) { return isfinite(v) ? (int32_t)(int64_t)v : 0; }
template <> __device__ __forceinline__ uint8_t from_d(double v) { return isfinite(v) ? (uint8_t)(int64_t)v : 0; }

template <typename T> constexpr bool is_int() {
  return std::is_same<T, int64_t>::value || std::is_same<T, int32_t>::value || std::is_same<T, uint8_t>::value ||
         std::is_same<T, Bool8>::value;
}
template <typename T> __device__ __forceinline__ int64_t raw_int(T v) { return (int64_t)v; }
template <> __device__ __forceinline__ int64_t raw_int(Bool8 v) { return v.v; }
template <typename T> __device__ __forceinline__ T from_int(int64_t v) { return (T)v; }

template <typename TO, typename TI> __device__ __forceinline__ TO convert(TI v) {
  if constexpr (std::is_same<TO, Bool8>::value) return Bool8{(uint8_t)(to_d(v) != 0)}; // NaN -> true
  else if constexpr (is_int<TO>() && is_int<TI>()) return from_int<TO>(raw_int(v));   // exact, wrapping
  else return from_d<TO>(to_d(v));
}

template <typename TO, typename TI> __global__ void k_convert(OffCalc<2> oc, uint32_t n, TO *out, const TI *in) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int64_t off[2];
    oc.get(i, off);
    out[off[0]] = convert<TO, TI>(in[off[1]]);
  }
}
template <typename TO, typename TI> __global__ void k_convert_flat(int64_t n, TO *out, const TI *in) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = convert<TO, TI>(in[i]);
}
template <typename W> __global__ void k_move(OffCalc<2> oc, uint32_t n, W *out, const W *in) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int64_t off[2];
    oc.get(i, off);
    out[off[0]] = in[off[1]];
  }
}

template <typename TO, typename TI> int run_convert(const ElemIter &it, cudaStream_t s) {
  if (iter_contiguous(it)) {
    k_convert_flat<TO, TI><<<blocks_for(it.numel, EW_THREADS), EW_THREADS, 0, s>>>(it.numel, (TO *)it.base[0],
                                                                                     (const TI *)it.base[1]);
    return DDPM_OK;
  }
  return for_each_piece(it, [&](const ElemIter &p) {
    k_convert<TO, TI><<<blocks_for(p.numel, EW_THREADS), EW_THREADS, 0, s>>>(make_offcalc<2>(p), (uint32_t)p.numel,
                                                                               (TO *)p.base[0], (const TI *)p.base[1]);
    return DDPM_OK;
  });
}

template <typename TO> int convert_from(const ElemIter &it, int src, cudaStream_t s, const ddpm_call *c) {
  switch (src) {
    DDPM_CU_FLOAT_CASES(return run_convert<TO, T>(it, s))
    DDPM_CU_INT_CASES(return run_convert<TO, T>(it, s))
  default: return no_dtype(c, src);
  }
  return DDPM_OK;
}

template <typename W> int run_move(const ElemIter &it, cudaStream_t s) {
  return for_each_piece(it, [&](const ElemIter &p) {
    k_move<W><<<blocks_for(p.numel, EW_THREADS), EW_THREADS, 0, s>>>(make_offcalc<2>(p), (uint32_t)p.numel,
                                                                       (W *)p.base[0], (const W *)p.base[1]);
    return DDPM_OK;
  });
}
} // namespace

namespace ddpm_cu {
// dst <- src (same shape after broadcasting), converting; used by COPY, CAT and the matmul glue.
int copy_strided(ddpm_tensor *dst, const ddpm_tensor *src, const ddpm_call *c) {
  ddpm_tensor *ops[2] = {dst, (ddpm_tensor *)src};
  ElemIter it;
  iter_init(&it, 2, ops);
  if (it.numel == 0) return DDPM_OK;
  cudaStream_t s = stream();
  if (dst->dtype == src->dtype) {
    int es = ddpm_dsize(dst->dtype);
    if (iter_contiguous(it)) {
      CU_TRY(cudaMemcpyAsync(it.base[0], it.base[1], (size_t)it.numel * es, cudaMemcpyDeviceToDevice, s), "copy");
      return DDPM_OK;
    }
    switch (es) {
    case 1: return run_move<uint8_t>(it, s);
    case 2: return run_move<uint16_t>(it, s);
    case 4: return run_move<uint32_t>(it, s);
    default: return run_move<uint64_t>(it, s);
    }
  }
  switch (dst->dtype) {
    DDPM_CU_FLOAT_CASES(return convert_from<T>(it, src->dtype, s, c))
    DDPM_CU_INT_CASES(return convert_from<T>(it, src->dtype, s, c))
  default: return no_dtype(c, dst->dtype);
  }
  return DDPM_OK;
}
} // namespace ddpm_cu

DDPM_CU_KERNEL(COPY) { return copy_strided(c->out[0], c->in[0], c); }

template <typename W> __global__ void k_fill(OffCalc<1> oc, uint32_t n, W *out, W v) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int64_t off[1];
    oc.get(i, off);
    out[off[0]] = v;
  }
}
template <typename W> __global__ void k_fill_flat(int64_t n, W *out, W v) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = v;
}
template <typename W> static int run_fill(const ElemIter &it, uint64_t bits, cudaStream_t s) {
  W v = (W)bits;
  if (iter_contiguous(it)) {
    k_fill_flat<W><<<blocks_for(it.numel, EW_THREADS), EW_THREADS, 0, s>>>(it.numel, (W *)it.base[0], v);
    return DDPM_OK;
  }
  return for_each_piece(it, [&](const ElemIter &p) {
    k_fill<W><<<blocks_for(p.numel, EW_THREADS), EW_THREADS, 0, s>>>(make_offcalc<1>(p), (uint32_t)p.numel,
                                                                       (W *)p.base[0], v);
    return DDPM_OK;
  });
}

DDPM_CU_KERNEL(FILL) {
  ddpm_tensor *t = c->out[0];
  uint64_t bits = 0;
  ddpm_store_from_double(&bits, t->dtype, c->f[0]); // the host's conversion, bit for bit
  ElemIter it;
  iter_init(&it, 1, &t);
  if (it.numel == 0) return DDPM_OK;
  cudaStream_t s = stream();
  int es = ddpm_dsize(t->dtype);
  if (bits == 0 && iter_contiguous(it)) {
    CU_TRY(cudaMemsetAsync(it.base[0], 0, (size_t)it.numel * es, s), "fill");
    return DDPM_OK;
  }
  switch (es) {
  case 1: return run_fill<uint8_t>(it, bits, s);
  case 2: return run_fill<uint16_t>(it, bits, s);
  case 4: return run_fill<uint32_t>(it, bits, s);
  default: return run_fill<uint64_t>(it, bits, s);
  }
}
