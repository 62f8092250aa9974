// attention.cu: scaled_dot_product_attention forward and backward with the kernel contract of
// engine/src/ops_attention.c (the probabilities P are an output the backward reads).
//   S = scale q k^T (+ mask, causal -inf)    one batched cuBLAS GEMM over every (batch, head)
//   P = softmax(S) row by row; Pd = dropout(P) one kernel (writes P in place over S)
//   o = Pd v                                  one batched GEMM
// q, k, v are read through their strides (heads split off a [B, L, H*D] projection need no copy):
// per-matrix pointers are computed on the device, so every launch is graph-capturable.  A single
// key (the UNet's cross-attention on one label token) skips the GEMMs: P is 1 (NaN where masked
// out) and o is v broadcast, one small kernel.  Backward: gv = Pd^T go, dPd = go v^T,
// dS = P (dP - rowsum(dP P)) with dP = dPd scaled where kept, gq = scale dS k, gk = scale dS^T q.
// Dropout: score (b, i, j) is dropped iff the 53-bit uniform of Philox counter
// base + (b Lq + i) Lk + j is < p, kept ones scaled by 1/(1-p), as on the CPU.
#include "cuda_common.cuh"
#include "philox.cuh"
#include <cublas_v2.h>
#include <type_traits>

using namespace ddpm_cu;

namespace ddpm_cu {
int blas_handle(cublasHandle_t *out); // matmul.cu
int blas_error(int status, const char *what, const char *file, int line);
} // namespace ddpm_cu

namespace {
template <typename T> using RT = typename std::conditional<std::is_same<T, double>::value, double, float>::type;
template <typename T> __device__ __forceinline__ RT<T> ld(const T *p, int64_t i) { return (RT<T>)Traits<T>::load(p[i]); }
template <typename T> __device__ __forceinline__ void st(T *p, int64_t i, RT<T> v) { p[i] = Traits<T>::store(v); }
__device__ __forceinline__ float expR(float x) { return expf(x); }
__device__ __forceinline__ double expR(double x) { return exp(x); }

struct Op4 { // a [B0, B1, rows, cols] operand: element offsets
  int64_t off, s0, s1, ld;
};
struct Mask {
  const void *p; // NULL: none
  bool is_bool;
  int64_t off, s0, s1, s2, s3;
};
struct Geo {
  int64_t B, B1, Lq, Lk, E, Ev;
  bool causal;
  double scale, p;
  uint64_t seed, base;
};

__device__ __forceinline__ int64_t boff(const Op4 &o, int64_t b, int64_t B1) { return o.off + (b / B1) * o.s0 + (b % B1) * o.s1; }

template <typename T> __device__ __forceinline__ RT<T> mask_val(const Geo &g, const Mask &m, int64_t b, int64_t i, int64_t j) {
  using R = RT<T>;
  if (g.causal && j > i) return -INFINITY;
  if (!m.p) return 0;
  int64_t off = m.off + (b / g.B1) * m.s0 + (b % g.B1) * m.s1 + i * m.s2 + j * m.s3;
  if (m.is_bool) return ((const uint8_t *)m.p)[off] ? (R)0 : (R)-INFINITY;
  return ld((const T *)m.p, off);
}
__device__ __forceinline__ bool keep(const Geo &g, int64_t e) { return ddpm_cu_u53(g.seed, g.base + (uint64_t)e) >= g.p; }

// per-matrix pointers of the batched GEMMs
__global__ void k_ptrs(const char **out, int64_t B, int64_t B1, const char *base, Op4 o, int es) {
  for (int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; b < B; b += (int64_t)gridDim.x * blockDim.x)
    out[b] = base + boff(o, b, B1) * es;
}

// one key: P = 1 (NaN where the only key is masked out), o = Pd v broadcast
template <typename T> __global__ void k_one_key(const T *v, Op4 vo, T *o, T *P, Geo g, Mask m) {
  using R = RT<T>;
  const int64_t total = g.B * g.Lq * g.Ev;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t d = e % g.Ev, bi = e / g.Ev, i = bi % g.Lq, b = bi / g.Lq;
    R mv = mask_val<T>(g, m, b, i, 0);
    R p = isfinite((double)mv) ? (R)1 : (R)NAN;
    if (P && d == 0) st(P, bi, p);
    R pd = p;
    if (g.p > 0) pd = keep(g, bi) ? p * (R)(1.0 / (1.0 - g.p)) : (R)0;
    R vv = ld(v, boff(vo, b, g.B1) + d);
    st(o, e, pd == (R)1 ? vv : pd * vv);
  }
}

// rows of S [B, Lq, Lk] in place: add mask, softmax (as softmax.cu), write P; Pd = dropout(P)
template <typename T> __global__ void k_softmax_rows(T *S, T *Pd, Geo g, Mask m) {
  using R = RT<T>;
  const int lane = threadIdx.x & 31;
  const int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= g.B * g.Lq) return;
  const int64_t b = r / g.Lq, i = r % g.Lq, base = r * g.Lk;
  const bool masked = g.causal || m.p;
  R mx = -INFINITY;
  for (int64_t j = lane; j < g.Lk; j += 32) {
    R v = ld(S, base + j);
    if (masked) {
      v = v + mask_val<T>(g, m, b, i, j);
      st(S, base + j, v);
    }
    mx = v > mx ? v : mx;
  }
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) {
    R o = __shfl_xor_sync(0xffffffffu, mx, d);
    mx = o > mx ? o : mx;
  }
  double s = 0;
  for (int64_t j = lane; j < g.Lk; j += 32) s += (double)expR(ld(S, base + j) - mx);
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) s += __shfl_xor_sync(0xffffffffu, s, d);
  R inv = (R)(1.0 / s), dsc = (R)(1.0 / (1.0 - g.p));
  for (int64_t j = lane; j < g.Lk; j += 32) {
    R p = expR(ld(S, base + j) - mx) * inv;
    st(S, base + j, p);
    if (Pd) st(Pd, base + j, keep(g, base + j) ? p * dsc : (R)0);
  }
}

template <typename T> __global__ void k_dropout_of(const T *P, T *Pd, Geo g) {
  using R = RT<T>;
  const int64_t n = g.B * g.Lq * g.Lk;
  R dsc = (R)(1.0 / (1.0 - g.p));
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x)
    st(Pd, e, keep(g, e) ? ld(P, e) * dsc : (R)0);
}

// dS (holding dPd) -> P (dP - rowsum(dP P)), dP = dPd / (1 - p) where kept (0 where dropped)
template <typename T> __global__ void k_dscores(T *dS, const T *P, const T *Pd, Geo g) {
  using R = RT<T>;
  const int lane = threadIdx.x & 31;
  const int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= g.B * g.Lq) return;
  const int64_t base = r * g.Lk;
  R dsc = (R)(1.0 / (1.0 - g.p));
  double dot = 0;
  for (int64_t j = lane; j < g.Lk; j += 32) {
    R d = ld(dS, base + j);
    if (Pd) {
      d = ld(Pd, base + j) != (R)0 ? d * dsc : (R)0;
      st(dS, base + j, d);
    }
    dot += (double)d * ld(P, base + j);
  }
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, d);
  R dr = (R)dot;
  for (int64_t j = lane; j < g.Lk; j += 32) st(dS, base + j, ld(P, base + j) * (ld(dS, base + j) - dr));
}

template <typename T> cudaDataType_t cu_type() {
  if (std::is_same<T, double>::value) return CUDA_R_64F;
  if (std::is_same<T, __half>::value) return CUDA_R_16F;
  if (std::is_same<T, __nv_bfloat16>::value) return CUDA_R_16BF;
  return CUDA_R_32F;
}
template <typename T> cublasComputeType_t cu_compute() {
  if (std::is_same<T, double>::value) return CUBLAS_COMPUTE_64F;
  if (std::is_same<T, float>::value && ddpm_cuda_get_flag(DDPM_CUDA_FLAG_MATMUL_TF32)) return CUBLAS_COMPUTE_32F_FAST_TF32;
  return CUBLAS_COMPUTE_32F;
}

// Batched column-major GEMM over per-matrix pointer arrays: C_b = alpha op(A_b) op(B_b) + 0.
template <typename T>
int gemm(cublasHandle_t h, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const char **A, int64_t lda,
         const char **Bp, int64_t ldb, char **C, int64_t ldc, int64_t batch, const char *what) {
  float af = (float)alpha, bf = 0.0f;
  double ad = alpha, bd = 0.0;
  bool dbl = std::is_same<T, double>::value;
  cublasStatus_t s = cublasGemmBatchedEx(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, (int)m, (int)n,
                                         (int)k, dbl ? (const void *)&ad : (const void *)&af, (const void *const *)A,
                                         cu_type<T>(), (int)lda, (const void *const *)Bp, cu_type<T>(), (int)ldb,
                                         dbl ? (const void *)&bd : (const void *)&bf, (void *const *)C, cu_type<T>(),
                                         (int)ldc, (int)batch, cu_compute<T>(), CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) return blas_error((int)s, what, __FILE__, __LINE__);
  return DDPM_OK;
}

Op4 op_of(const ddpm_tensor *t, int64_t cols) {
  return Op4{t->offset, t->strides[0], t->strides[1], t->shape[2] <= 1 ? (cols > 0 ? cols : 1) : t->strides[2]};
}
Op4 contig(int64_t rows, int64_t cols, int64_t B1) { // a contiguous [B0, B1, rows, cols] tensor
  return Op4{0, B1 * rows * cols, rows * cols, cols > 0 ? cols : 1};
}
const char *store(const ddpm_tensor *t) { return (const char *)t->storage->data; }

Geo geo_of(const ddpm_call *c, const ddpm_tensor *q, const ddpm_tensor *k, const ddpm_tensor *v) {
  Geo g;
  g.B1 = q->shape[1];
  g.B = q->shape[0] * q->shape[1];
  g.Lq = q->shape[2];
  g.E = q->shape[3];
  g.Lk = k->shape[2];
  g.Ev = v->shape[3];
  g.causal = c->i[0] != 0;
  g.seed = (uint64_t)c->i[1];
  g.base = (uint64_t)c->i[2];
  g.scale = c->f[0];
  g.p = c->f[1];
  return g;
}

struct Ptrs { // device pointer arrays, kept alive for the launches of one call
  Scratch mem;
  const char **a[6];
  int make(int64_t B) {
    DDPM_TRY(mem.get(sizeof(char *) * (size_t)(6 * B), current_ordinal()));
    for (int k = 0; k < 6; k++) a[k] = (const char **)mem.p + k * B;
    return DDPM_OK;
  }
};

void fill(const char **dst, const Geo &g, const char *base, Op4 o, int es, cudaStream_t s) {
  k_ptrs<<<blocks_for(g.B, 128), 128, 0, s>>>(dst, g.B, g.B1, base, o, es);
}

template <typename T> int fwd(ddpm_call *c) {
  ddpm_tensor *q = c->in[0], *k = c->in[1], *v = c->in[2], *mt = c->in[3], *o = c->out[0], *P = c->out[1];
  Geo g = geo_of(c, q, k, v);
  if (g.B == 0 || g.Lq == 0 || g.Ev == 0) {
    if (P && ddpm_tensor_numel(P)) CU_TRY(cudaMemsetAsync(ddpm_ptr(P), 0, ddpm_tensor_numel(P) * sizeof(T), stream()), "sdpa");
    return DDPM_OK;
  }
  Mask m{nullptr, false, 0, 0, 0, 0, 0};
  if (mt) m = Mask{mt->storage->data, mt->dtype == DDPM_BOOL, mt->offset, mt->strides[0], mt->strides[1], mt->strides[2],
                   mt->strides[3]};
  cudaStream_t s = stream();
  const int es = sizeof(T);
  if (g.Lk == 1) {
    int64_t total = g.B * g.Lq * g.Ev;
    k_one_key<T><<<blocks_for(total, 256), 256, 0, s>>>((const T *)store(v), op_of(v, g.Ev), (T *)ddpm_ptr(o),
                                                        P ? (T *)ddpm_ptr(P) : nullptr, g, m);
    return DDPM_OK;
  }
  if (g.Lk == 0) { // softmax over nothing: NaN, like the CPU's 0/0
    // P stays empty; o is a sum over no keys
    CU_TRY(cudaMemsetAsync(ddpm_ptr(o), 0, ddpm_tensor_numel(o) * sizeof(T), s), "sdpa");
    return DDPM_OK;
  }
  Scratch sbuf, pdbuf;
  T *S = P ? (T *)ddpm_ptr(P) : nullptr;
  if (!S) {
    DDPM_TRY(sbuf.get(sizeof(T) * (size_t)(g.B * g.Lq * g.Lk), current_ordinal()));
    S = (T *)sbuf.p;
  }
  T *Pd = nullptr;
  if (g.p > 0) {
    DDPM_TRY(pdbuf.get(sizeof(T) * (size_t)(g.B * g.Lq * g.Lk), current_ordinal()));
    Pd = (T *)pdbuf.p;
  }
  Ptrs pa;
  DDPM_TRY(pa.make(g.B));
  fill(pa.a[0], g, store(q), op_of(q, g.E), es, s);
  fill(pa.a[1], g, store(k), op_of(k, g.E), es, s);
  fill(pa.a[2], g, store(v), op_of(v, g.Ev), es, s);
  fill(pa.a[3], g, (const char *)S, contig(g.Lq, g.Lk, g.B1), es, s);
  fill(pa.a[4], g, (const char *)(Pd ? Pd : S), contig(g.Lq, g.Lk, g.B1), es, s);
  fill(pa.a[5], g, (const char *)ddpm_ptr(o), contig(g.Lq, g.Ev, g.B1), es, s);
  cublasHandle_t h;
  DDPM_TRY(blas_handle(&h));
  Op4 qo = op_of(q, g.E), ko = op_of(k, g.E), vo = op_of(v, g.Ev);
  // S^T (Lk x Lq) = k (Lk x E) q^T: A = k^T stored E x Lk, transposed
  DDPM_TRY(gemm<T>(h, true, false, g.Lk, g.Lq, g.E, g.scale, pa.a[1], ko.ld, pa.a[0], qo.ld, (char **)pa.a[3], g.Lk, g.B,
                   "scaled_dot_product_attention (scores)"));
  k_softmax_rows<T><<<blocks_for(g.B * g.Lq, 8, INT32_MAX), 256, 0, s>>>(S, Pd, g, m);
  // o^T (Ev x Lq) = v^T (Ev x Lk) Pd^T (Lk x Lq)
  DDPM_TRY(gemm<T>(h, false, false, g.Ev, g.Lq, g.Lk, 1.0, pa.a[2], vo.ld, pa.a[4], g.Lk, (char **)pa.a[5], g.Ev, g.B,
                   "scaled_dot_product_attention (values)"));
  return DDPM_OK;
}

template <typename T> int bwd(ddpm_call *c) {
  ddpm_tensor *go = c->in[0], *q = c->in[1], *k = c->in[2], *v = c->in[3], *P = c->in[4];
  ddpm_tensor *gq = c->out[0], *gk = c->out[1], *gv = c->out[2];
  Geo g = geo_of(c, q, k, v);
  cudaStream_t s = stream();
  const int es = sizeof(T);
  if (g.B == 0) return DDPM_OK;
  if (g.Lq == 0 || g.Lk == 0) { // nothing flows
    for (ddpm_tensor *t : {gq, gk, gv})
      if (ddpm_tensor_numel(t)) CU_TRY(cudaMemsetAsync(ddpm_ptr(t), 0, ddpm_tensor_numel(t) * sizeof(T), s), "sdpa backward");
    return DDPM_OK;
  }
  Scratch pdbuf, dsbuf;
  const T *Pd = (const T *)ddpm_ptr(P);
  if (g.p > 0) {
    DDPM_TRY(pdbuf.get(sizeof(T) * (size_t)(g.B * g.Lq * g.Lk), current_ordinal()));
    k_dropout_of<T><<<blocks_for(g.B * g.Lq * g.Lk, 256), 256, 0, s>>>((const T *)ddpm_ptr(P), (T *)pdbuf.p, g);
    Pd = (const T *)pdbuf.p;
  }
  DDPM_TRY(dsbuf.get(sizeof(T) * (size_t)(g.B * g.Lq * g.Lk), current_ordinal()));
  T *dS = (T *)dsbuf.p;
  Ptrs pa, pb;
  DDPM_TRY(pa.make(g.B));
  DDPM_TRY(pb.make(g.B));
  Op4 qo = op_of(q, g.E), ko = op_of(k, g.E), vo = op_of(v, g.Ev);
  fill(pa.a[0], g, store(q), qo, es, s);
  fill(pa.a[1], g, store(k), ko, es, s);
  fill(pa.a[2], g, store(v), vo, es, s);
  fill(pa.a[3], g, (const char *)ddpm_ptr(go), contig(g.Lq, g.Ev, g.B1), es, s);
  fill(pa.a[4], g, (const char *)Pd, contig(g.Lq, g.Lk, g.B1), es, s);
  fill(pa.a[5], g, (const char *)dS, contig(g.Lq, g.Lk, g.B1), es, s);
  fill(pb.a[0], g, (const char *)ddpm_ptr(gq), contig(g.Lq, g.E, g.B1), es, s);
  fill(pb.a[1], g, (const char *)ddpm_ptr(gk), contig(g.Lk, g.E, g.B1), es, s);
  fill(pb.a[2], g, (const char *)ddpm_ptr(gv), contig(g.Lk, g.Ev, g.B1), es, s);
  cublasHandle_t h;
  DDPM_TRY(blas_handle(&h));
  // gv^T (Ev x Lk) = go^T (Ev x Lq) Pd (Lq x Lk)
  DDPM_TRY(gemm<T>(h, false, true, g.Ev, g.Lk, g.Lq, 1.0, pa.a[3], g.Ev, pa.a[4], g.Lk, (char **)pb.a[2], g.Ev, g.B,
                   "scaled_dot_product_attention backward (values)"));
  // dPd^T (Lk x Lq) = v (Lk x Ev) go^T (Ev x Lq)
  DDPM_TRY(gemm<T>(h, true, false, g.Lk, g.Lq, g.Ev, 1.0, pa.a[2], vo.ld, pa.a[3], g.Ev, (char **)pa.a[5], g.Lk, g.B,
                   "scaled_dot_product_attention backward (probabilities)"));
  k_dscores<T><<<blocks_for(g.B * g.Lq, 8, INT32_MAX), 256, 0, s>>>(dS, (const T *)ddpm_ptr(P),
                                                                    g.p > 0 ? Pd : nullptr, g);
  // gq^T (E x Lq) = scale k^T (E x Lk) dS^T (Lk x Lq)
  DDPM_TRY(gemm<T>(h, false, false, g.E, g.Lq, g.Lk, g.scale, pa.a[1], ko.ld, pa.a[5], g.Lk, (char **)pb.a[0], g.E, g.B,
                   "scaled_dot_product_attention backward (queries)"));
  // gk^T (E x Lk) = scale q^T (E x Lq) dS (Lq x Lk)
  DDPM_TRY(gemm<T>(h, false, true, g.E, g.Lk, g.Lq, g.scale, pa.a[0], qo.ld, pa.a[5], g.Lk, (char **)pb.a[1], g.E, g.B,
                   "scaled_dot_product_attention backward (keys)"));
  return DDPM_OK;
}

template <bool BWD> int dispatch(ddpm_call *c) {
  int dt = c->in[BWD ? 1 : 0]->dtype;
  switch (dt) {
  case DDPM_FLOAT32: return BWD ? bwd<float>(c) : fwd<float>(c);
  case DDPM_FLOAT64: return BWD ? bwd<double>(c) : fwd<double>(c);
  case DDPM_FLOAT16: return BWD ? bwd<__half>(c) : fwd<__half>(c);
  case DDPM_BFLOAT16: return BWD ? bwd<__nv_bfloat16>(c) : fwd<__nv_bfloat16>(c);
  default: return no_dtype(c, dt);
  }
}
} // namespace

DDPM_CU_KERNEL(SDPA) { return dispatch<false>(c); }
DDPM_CU_KERNEL(SDPA_BWD) { return dispatch<true>(c); }
