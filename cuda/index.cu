// index.cu: cat (each input copied into its slice of the output), index_select (gather of slices
// along a dim) and index_add_ (its adjoint, with atomics so repeated indices accumulate).
// An index out of range never reads or writes out of bounds: the element is skipped (zero for a
// gather) and the kernel records the error, which the next synchronisation reports (see
// backend_cuda.cu; DDPM_SYNC=1 reports it at the op).
#include "elementwise.cuh"

using namespace ddpm_cu;

DDPM_CU_KERNEL(CAT) {
  ddpm_tensor *out = c->out[0];
  int dim = (int)c->i[0];
  int64_t off = 0;
  for (int k = 0; k < c->nlist; k++) {
    ddpm_tensor *t = c->list[k];
    if (t->ndim == 1 && t->shape[0] == 0 && out->ndim != 1) continue; // legacy empty tensors
    int64_t shape[DDPM_MAX_DIMS];
    memcpy(shape, out->shape, sizeof shape);
    shape[dim] = t->shape[dim];
    ddpm_tensor *slot = nullptr;
    DDPM_TRY(ddpm_tensor_alias(&slot, out, out->ndim, shape, out->strides, out->offset + off * out->strides[dim]));
    int st = copy_strided(slot, t, c);
    ddpm_tensor_release(slot);
    DDPM_TRY(st);
    off += t->shape[dim];
  }
  return DDPM_OK;
}

namespace {
// N-d coordinates of a row-major linear index (innermost first), 64-bit
struct Coords {
  int n;
  int64_t shape[DDPM_MAX_DIMS];
};

__device__ __forceinline__ void report(DevErr *err, int op, int64_t v, int64_t n) {
  if (err && atomicCAS(&err->code, 0, (int)DDPM_ERR_INDEX) == 0) {
    err->op = op;
    err->a = v;
    err->b = n;
  }
}

template <typename I> __device__ __forceinline__ bool fix_index(I raw, int64_t n, int64_t *v) {
  int64_t x = (int64_t)raw;
  if (x < -n || x >= n) return false;
  *v = x < 0 ? x + n : x;
  return true;
}

// atomic x += v for every dtype (bytes through a CAS on their aligned word)
__device__ __forceinline__ void atomic_add(float *p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double *p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(__half *p, __half v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(__nv_bfloat16 *p, __nv_bfloat16 v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(int64_t *p, int64_t v) {
  atomicAdd((unsigned long long *)p, (unsigned long long)v);
}
__device__ __forceinline__ void atomic_add(int32_t *p, int32_t v) { atomicAdd(p, v); }
template <bool IS_BOOL> __device__ __forceinline__ void atomic_add_byte(uint8_t *p, uint8_t v) {
  unsigned int *w = (unsigned int *)((uintptr_t)p & ~(uintptr_t)3);
  unsigned int sh = ((uintptr_t)p & 3) * 8, old = *w, assumed;
  do {
    assumed = old;
    unsigned int cur = (assumed >> sh) & 0xffu;
    unsigned int nv = IS_BOOL ? ((cur | v) != 0) : ((cur + v) & 0xffu);
    old = atomicCAS(w, assumed, (assumed & ~(0xffu << sh)) | (nv << sh));
  } while (old != assumed);
}
__device__ __forceinline__ void atomic_add(uint8_t *p, uint8_t v) { atomic_add_byte<false>(p, v); }
__device__ __forceinline__ void atomic_add(Bool8 *p, Bool8 v) { atomic_add_byte<true>(&p->v, v.v); }

// Strides travel in kernel-parameter structs (constant bank), not in device memory.
struct Strides2 {
  int64_t v[2 * DDPM_MAX_DIMS];
};
// x[.., index[k], ..] += src[.., k, ..]; src (strides st.v[0..8)) and x (st.v[8..16)) any layout
template <typename T, typename I>
__global__ void k_index_add(int64_t total, Coords sc, int d, int64_t n, Strides2 st, T *x, const T *src,
                            const I *index, DevErr *err, int op) {
  const int64_t *sst = st.v, *xst = st.v + DDPM_MAX_DIMS;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t rem = e, so = 0, xo = 0;
    bool ok = true;
    for (int j = sc.n - 1; j >= 0; j--) {
      int64_t q = rem / sc.shape[j], r = rem - q * sc.shape[j];
      rem = q;
      so += r * sst[j];
      if (j == d) {
        int64_t v;
        if (!fix_index(index[r], n, &v)) {
          report(err, op, (int64_t)index[r], n);
          ok = false;
          break;
        }
        r = v;
      }
      xo += r * xst[j];
    }
    if (ok) atomic_add(x + xo, src[so]);
  }
}
struct Strides1 {
  int64_t v[DDPM_MAX_DIMS];
};
// out (contiguous, x's shape with dim d of size m) gathers x along d at index[k]
template <typename W, typename I>
__global__ void k_index_select(int64_t total, Coords oc, int d, int64_t n, Strides1 xs, W *out, const W *x,
                                 const I *index, DevErr *err, int op) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t rem = e, off = 0;
    bool ok = true;
    for (int j = oc.n - 1; j >= 0; j--) {
      int64_t q = rem / oc.shape[j], r = rem - q * oc.shape[j];
      rem = q;
      if (j == d) {
        int64_t v;
        if (!fix_index(index[r], n, &v)) {
          report(err, op, (int64_t)index[r], n);
          ok = false;
          break;
        }
        r = v;
      }
      off += r * xs.v[j];
    }
    out[e] = ok ? x[off] : W(0);
  }
}

template <typename W, typename I> int select_typed(ddpm_call *c) {
  ddpm_tensor *x = c->in[0], *index = c->in[1], *o = c->out[0];
  int d = (int)c->i[0];
  int64_t total = ddpm_tensor_numel(o);
  if (total == 0) return DDPM_OK;
  Coords oc;
  oc.n = o->ndim;
  Strides1 xs;
  for (int j = 0; j < o->ndim; j++) {
    oc.shape[j] = o->shape[j];
    xs.v[j] = x->strides[j];
  }
  int ord = current_ordinal();
  k_index_select<W, I><<<blocks_for(total, 256), 256, 0, stream()>>>(
      total, oc, d, x->shape[d], xs, (W *)ddpm_ptr(o), (const W *)ddpm_ptr(x), (const I *)ddpm_ptr(index),
      deverr_ptr(ord), c->op);
  return DDPM_OK;
}

template <typename T, typename I> int add_typed(ddpm_call *c) {
  ddpm_tensor *index = c->in[0], *src = c->in[1], *x = c->out[0];
  int d = (int)c->i[0];
  int64_t total = ddpm_tensor_numel(src);
  if (total == 0) return DDPM_OK;
  Coords sc;
  sc.n = src->ndim;
  Strides2 st;
  for (int j = 0; j < src->ndim; j++) {
    sc.shape[j] = src->shape[j];
    st.v[j] = src->strides[j];
    st.v[DDPM_MAX_DIMS + j] = x->strides[j];
  }
  int ord = current_ordinal();
  k_index_add<T, I><<<blocks_for(total, 256), 256, 0, stream()>>>(total, sc, d, x->shape[d], st, (T *)ddpm_ptr(x),
                                                                     (const T *)ddpm_ptr(src),
                                                                     (const I *)ddpm_ptr(index), deverr_ptr(ord), c->op);
  return DDPM_OK;
}
} // namespace

DDPM_CU_KERNEL(INDEX_SELECT) {
  bool i64 = c->in[1]->dtype == DDPM_INT64;
  switch (ddpm_dsize(c->in[0]->dtype)) {
  case 1: return i64 ? select_typed<uint8_t, int64_t>(c) : select_typed<uint8_t, int32_t>(c);
  case 2: return i64 ? select_typed<uint16_t, int64_t>(c) : select_typed<uint16_t, int32_t>(c);
  case 4: return i64 ? select_typed<uint32_t, int64_t>(c) : select_typed<uint32_t, int32_t>(c);
  default: return i64 ? select_typed<uint64_t, int64_t>(c) : select_typed<uint64_t, int32_t>(c);
  }
}

DDPM_CU_KERNEL(INDEX_ADD) {
  bool i64 = c->in[0]->dtype == DDPM_INT64;
  int dt = c->out[0]->dtype;
  switch (dt) {
    DDPM_CU_FLOAT_CASES(return i64 ? add_typed<T, int64_t>(c) : add_typed<T, int32_t>(c))
    DDPM_CU_INT_CASES(return i64 ? add_typed<T, int64_t>(c) : add_typed<T, int32_t>(c))
  default: return no_dtype(c, dt);
  }
  return DDPM_OK;
}
