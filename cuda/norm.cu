// norm.cu: group_norm (optionally fused with SiLU) and layer_norm, forward and backward, with the
// CPU kernels' math (engine/cpu/norm_impl.h): per group/row mean and rstd = 1/sqrt(var + eps) from
// two passes accumulated in double, y = x * scale + shift; backward in closed form,
//   dx = rstd w dz + c2 x + c3,  c2 = (B mean - A) rstd^3 / M,  c3 = -c2 mean - B rstd / M,
// A = sum w dz x, B = sum w dz (dz = dy, or dy silu'(z) for the fused op, z recomputed).
// One block per (sample, group); one warp per layer_norm row.  Weight and bias gradients are
// reduced from per-sample (group norm) or per-row-range (layer norm) double partials in a fixed
// order, so results are deterministic.  float16/bfloat16 inputs compute in float.
#include "cuda_common.cuh"
#include <type_traits>

using namespace ddpm_cu;

namespace {

template <typename T> using RT = typename std::conditional<std::is_same<T, double>::value, double, float>::type;
template <typename T> __device__ __forceinline__ RT<T> ld(const T *p, int64_t i) { return (RT<T>)Traits<T>::load(p[i]); }
template <typename T> __device__ __forceinline__ void st(T *p, int64_t i, RT<T> v) { p[i] = Traits<T>::store(v); }

__device__ __forceinline__ float expR(float x) { return expf(x); }
__device__ __forceinline__ double expR(double x) { return exp(x); }
template <typename R> __device__ __forceinline__ R silu(R z) { return z / ((R)1 + expR(-z)); }
template <typename R> __device__ __forceinline__ R silu_d(R z) {
  R s = (R)1 / ((R)1 + expR(-z));
  return s * ((R)1 + z * ((R)1 - s));
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ double block_sum(double v, double *sm) {
  v = warp_sum(v);
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads(); // sm may still be read by a previous call
  if (lane == 0) sm[wid] = v;
  __syncthreads();
  double t = 0;
  for (int k = 0; k < nw; k++) t += sm[k]; // fixed order: deterministic
  return t;
}

// ---- group norm ----------------------------------------------------------------------------------------
template <typename T, bool SILU>
__global__ void k_gn_fwd(const T *x, const T *w, const T *b, T *y, T *mean, T *rstd, int64_t C, int64_t S, int64_t G,
                         double eps) {
  using R = RT<T>;
  __shared__ double sm[32];
  const int64_t t = blockIdx.x, n = t / G, g = t % G, Cg = C / G, M = Cg * S;
  const int64_t base = (n * C + g * Cg) * S;
  double s = 0;
  for (int64_t e = threadIdx.x; e < M; e += blockDim.x) s += (double)ld(x, base + e);
  double m = M ? block_sum(s, sm) / (double)M : 0.0;
  double v = 0;
  for (int64_t e = threadIdx.x; e < M; e += blockDim.x) {
    double d = (double)ld(x, base + e) - m;
    v += d * d;
  }
  v = M ? block_sum(v, sm) / (double)M : 0.0;
  R mr = (R)m, rr = (R)(1.0 / sqrt(v + eps));
  if (threadIdx.x == 0) {
    st(mean, t, mr);
    st(rstd, t, rr);
  }
  for (int64_t ci = 0; ci < Cg; ci++) {
    int64_t ch = g * Cg + ci;
    R scale = w ? rr * ld(w, ch) : rr;
    R shift = (b ? ld(b, ch) : (R)0) - mr * scale;
    const int64_t row = base + ci * S;
    for (int64_t k = threadIdx.x; k < S; k += blockDim.x) {
      R z = ld(x, row + k) * scale + shift;
      st(y, row + k, SILU ? silu(z) : z);
    }
  }
}

template <typename T, bool SILU>
__global__ void k_gn_bwd(const T *gy, const T *x, const T *mean, const T *rstd, const T *w, const T *b, T *gx,
                         double *pdw, double *pdb, int64_t C, int64_t S, int64_t G) {
  using R = RT<T>;
  __shared__ double sm[32];
  const int64_t t = blockIdx.x, n = t / G, g = t % G, Cg = C / G, M = Cg * S;
  const int64_t base = (n * C + g * Cg) * S;
  const R mr = ld(mean, t), rr = ld(rstd, t);
  double A = 0, B = 0;
  for (int64_t ci = 0; ci < Cg; ci++) {
    int64_t ch = g * Cg + ci, row = base + ci * S;
    R scale = w ? rr * ld(w, ch) : rr;
    R shift = (b ? ld(b, ch) : (R)0) - mr * scale;
    double sdy = 0, sdyx = 0;
    for (int64_t k = threadIdx.x; k < S; k += blockDim.x) {
      R xv = ld(x, row + k), dz = ld(gy, row + k);
      if (SILU) dz = dz * silu_d(xv * scale + shift);
      sdy += dz;
      sdyx += (double)dz * xv;
    }
    sdy = block_sum(sdy, sm);
    sdyx = block_sum(sdyx, sm);
    double wc = w ? (double)ld(w, ch) : 1.0;
    A += wc * sdyx;
    B += wc * sdy;
    if (threadIdx.x == 0) {
      if (pdw) pdw[n * C + ch] = (sdyx - (double)mr * sdy) * (double)rr;
      if (pdb) pdb[n * C + ch] = sdy;
    }
  }
  if (!gx) return;
  double r = rr, c2 = (B * (double)mr - A) * r * r * r / (double)M, c3 = -c2 * (double)mr - B * r / (double)M;
  R b2 = (R)c2, b3 = (R)c3;
  for (int64_t ci = 0; ci < Cg; ci++) {
    int64_t ch = g * Cg + ci, row = base + ci * S;
    R a = (R)(r * (w ? (double)ld(w, ch) : 1.0));
    R scale = w ? rr * ld(w, ch) : rr;
    R shift = (b ? ld(b, ch) : (R)0) - mr * scale;
    for (int64_t k = threadIdx.x; k < S; k += blockDim.x) {
      R xv = ld(x, row + k), dz = ld(gy, row + k);
      if (SILU) dz = dz * silu_d(xv * scale + shift);
      st(gx, row + k, a * dz + b2 * xv + b3);
    }
  }
}

// out[c] = sum over rows r of p[r * C + c], in row order
template <typename T> __global__ void k_colsum(const double *p, int64_t rows, int64_t C, T *out) {
  for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < C; c += (int64_t)gridDim.x * blockDim.x) {
    double s = 0;
    for (int64_t r = 0; r < rows; r++) s += p[r * C + c];
    st(out, c, (RT<T>)s);
  }
}

int gn_threads(int64_t S, int64_t M) {
  int64_t want = S < M ? M : S;
  int th = 32;
  while (th < 256 && th < want) th <<= 1;
  return th;
}

template <typename T> int gn_fwd(ddpm_call *c, bool silu) {
  ddpm_tensor *x = c->in[0];
  int64_t N = x->shape[0], C = x->shape[1], G = c->i[0];
  int64_t S = N * C ? ddpm_tensor_numel(x) / (N * C) : 0;
  if (N * G == 0) return DDPM_OK;
  const T *w = c->in[1] ? (const T *)ddpm_ptr(c->in[1]) : nullptr, *b = c->in[2] ? (const T *)ddpm_ptr(c->in[2]) : nullptr;
  int th = gn_threads(S, C / G * S);
  const T *xp = (const T *)ddpm_ptr(x);
  T *y = (T *)ddpm_ptr(c->out[0]), *mean = (T *)ddpm_ptr(c->out[1]), *rstd = (T *)ddpm_ptr(c->out[2]);
  if (silu) k_gn_fwd<T, true><<<(unsigned)(N * G), th, 0, stream()>>>(xp, w, b, y, mean, rstd, C, S, G, c->f[0]);
  else k_gn_fwd<T, false><<<(unsigned)(N * G), th, 0, stream()>>>(xp, w, b, y, mean, rstd, C, S, G, c->f[0]);
  return DDPM_OK;
}

template <typename T> int gn_bwd(ddpm_call *c) {
  ddpm_tensor *gy = c->in[0], *x = c->in[1], *gx = c->out[0], *gw = c->out[1], *gb = c->out[2];
  int64_t N = x->shape[0], C = x->shape[1], G = c->i[0];
  int64_t S = N * C ? ddpm_tensor_numel(x) / (N * C) : 0;
  bool silu = c->i[1] != 0;
  cudaStream_t s = stream();
  Scratch pw, pb;
  if (gw) DDPM_TRY(pw.get(sizeof(double) * (size_t)(N * C + 1), current_ordinal()));
  if (gb) DDPM_TRY(pb.get(sizeof(double) * (size_t)(N * C + 1), current_ordinal()));
  const T *w = c->in[4] ? (const T *)ddpm_ptr(c->in[4]) : nullptr, *b = c->in[5] ? (const T *)ddpm_ptr(c->in[5]) : nullptr;
  if (N * G > 0) {
    int th = gn_threads(S, C / G * S);
    if (silu)
      k_gn_bwd<T, true><<<(unsigned)(N * G), th, 0, s>>>(
          (const T *)ddpm_ptr(gy), (const T *)ddpm_ptr(x), (const T *)ddpm_ptr(c->in[2]), (const T *)ddpm_ptr(c->in[3]),
          w, b, gx ? (T *)ddpm_ptr(gx) : nullptr, (double *)pw.p, (double *)pb.p, C, S, G);
    else
      k_gn_bwd<T, false><<<(unsigned)(N * G), th, 0, s>>>(
          (const T *)ddpm_ptr(gy), (const T *)ddpm_ptr(x), (const T *)ddpm_ptr(c->in[2]), (const T *)ddpm_ptr(c->in[3]),
          w, b, gx ? (T *)ddpm_ptr(gx) : nullptr, (double *)pw.p, (double *)pb.p, C, S, G);
  }
  if (gw) k_colsum<T><<<blocks_for(C, 128), 128, 0, s>>>((const double *)pw.p, N, C, (T *)ddpm_ptr(gw));
  if (gb) k_colsum<T><<<blocks_for(C, 128), 128, 0, s>>>((const double *)pb.p, N, C, (T *)ddpm_ptr(gb));
  return DDPM_OK;
}

// ---- layer norm ----------------------------------------------------------------------------------------
template <typename T>
__global__ void k_ln_fwd(const T *x, const T *w, const T *b, T *y, T *mean, T *rstd, int64_t rows, int64_t D,
                         double eps) {
  using R = RT<T>;
  const int lane = threadIdx.x & 31;
  const int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int64_t base = r * D;
  double s = 0;
  for (int64_t k = lane; k < D; k += 32) s += (double)ld(x, base + k);
  double m = D ? warp_sum(s) / (double)D : 0.0;
  double v = 0;
  for (int64_t k = lane; k < D; k += 32) {
    double d = (double)ld(x, base + k) - m;
    v += d * d;
  }
  v = D ? warp_sum(v) / (double)D : 0.0;
  R mr = (R)m, rr = (R)(1.0 / sqrt(v + eps));
  if (lane == 0) {
    st(mean, r, mr);
    st(rstd, r, rr);
  }
  R shift = -rr * mr;
  for (int64_t k = lane; k < D; k += 32) {
    R z = ld(x, base + k) * rr + shift;
    if (w) z = z * ld(w, k);
    if (b) z = z + ld(b, k);
    st(y, base + k, z);
  }
}

template <typename T>
__global__ void k_ln_bwd_dx(const T *gy, const T *x, const T *mean, const T *rstd, const T *w, T *gx, int64_t rows,
                            int64_t D) {
  using R = RT<T>;
  const int lane = threadIdx.x & 31;
  const int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int64_t base = r * D;
  const R mr = ld(mean, r), rr = ld(rstd, r);
  double A = 0, B = 0;
  for (int64_t k = lane; k < D; k += 32) {
    double wd = w ? (double)ld(w, k) * ld(gy, base + k) : (double)ld(gy, base + k);
    A += wd * ld(x, base + k);
    B += wd;
  }
  A = warp_sum(A);
  B = warp_sum(B);
  double rs = rr, c2 = (B * (double)mr - A) * rs * rs * rs / (double)D, c3 = -c2 * (double)mr - B * rs / (double)D;
  R b2 = (R)c2, b3 = (R)c3;
  for (int64_t k = lane; k < D; k += 32) {
    R g = ld(gy, base + k), xv = ld(x, base + k);
    R a = w ? (R)(rs * (double)ld(w, k)) : rr;
    st(gx, base + k, a * g + b2 * xv + b3);
  }
}

// partial[(chunk) * D + d] over the rows of one chunk: sum g (x - mean) rstd, and sum g
template <typename T>
__global__ void k_ln_bwd_wb(const T *gy, const T *x, const T *mean, const T *rstd, double *pw, double *pb,
                            int64_t rows, int64_t D, int64_t chunk) {
  const int64_t d = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= D) return;
  const int64_t r0 = (int64_t)blockIdx.y * chunk, r1 = min(rows, r0 + chunk);
  double sw = 0, sb = 0;
  for (int64_t r = r0; r < r1; r++) {
    double g = (double)ld(gy, r * D + d);
    if (pw) sw += g * (((double)ld(x, r * D + d) - (double)ld(mean, r)) * (double)ld(rstd, r));
    sb += g;
  }
  if (pw) pw[blockIdx.y * D + d] = sw;
  if (pb) pb[blockIdx.y * D + d] = sb;
}

template <typename T> int ln_fwd(ddpm_call *c) {
  ddpm_tensor *x = c->in[0];
  int64_t D = c->i[0], rows = D ? ddpm_tensor_numel(x) / D : 0;
  if (rows == 0) return DDPM_OK;
  const T *w = c->in[1] ? (const T *)ddpm_ptr(c->in[1]) : nullptr, *b = c->in[2] ? (const T *)ddpm_ptr(c->in[2]) : nullptr;
  k_ln_fwd<T><<<blocks_for(rows, 8, INT32_MAX), 256, 0, stream()>>>((const T *)ddpm_ptr(x), w, b, (T *)ddpm_ptr(c->out[0]),
                                                                    (T *)ddpm_ptr(c->out[1]), (T *)ddpm_ptr(c->out[2]),
                                                                    rows, D, c->f[0]);
  return DDPM_OK;
}

template <typename T> int ln_bwd(ddpm_call *c) {
  ddpm_tensor *gy = c->in[0], *x = c->in[1], *gx = c->out[0], *gw = c->out[1], *gb = c->out[2];
  int64_t D = c->i[0], rows = D ? ddpm_tensor_numel(x) / D : 0;
  cudaStream_t s = stream();
  const T *w = c->in[4] ? (const T *)ddpm_ptr(c->in[4]) : nullptr;
  const T *mp = (const T *)ddpm_ptr(c->in[2]), *rp = (const T *)ddpm_ptr(c->in[3]);
  if (gx && rows)
    k_ln_bwd_dx<T><<<blocks_for(rows, 8, INT32_MAX), 256, 0, s>>>((const T *)ddpm_ptr(gy), (const T *)ddpm_ptr(x), mp, rp,
                                                                  w, (T *)ddpm_ptr(gx), rows, D);
  if (gw || gb) {
    // enough row chunks to fill the GPU, at least 64 rows each
    int64_t cols_blocks = (D + 127) / 128, target = 4LL * device_sm_count(current_ordinal());
    int64_t chunks = target / (cols_blocks ? cols_blocks : 1);
    if (chunks > rows / 64) chunks = rows / 64;
    if (chunks < 1) chunks = 1;
    if (chunks > 65535) chunks = 65535;
    int64_t chunk = (rows + chunks - 1) / chunks;
    if (chunk < 1) chunk = 1;
    Scratch pw, pb;
    DDPM_TRY(pb.get(sizeof(double) * (size_t)(chunks * D + 1), current_ordinal()));
    if (gw) DDPM_TRY(pw.get(sizeof(double) * (size_t)(chunks * D + 1), current_ordinal()));
    if (D > 0) {
      dim3 grid((unsigned)cols_blocks, (unsigned)chunks);
      k_ln_bwd_wb<T><<<grid, 128, 0, s>>>((const T *)ddpm_ptr(gy), (const T *)ddpm_ptr(x), mp, rp, (double *)pw.p,
                                          (double *)pb.p, rows, D, chunk);
      if (gw) k_colsum<T><<<blocks_for(D, 128), 128, 0, s>>>((const double *)pw.p, chunks, D, (T *)ddpm_ptr(gw));
      if (gb) k_colsum<T><<<blocks_for(D, 128), 128, 0, s>>>((const double *)pb.p, chunks, D, (T *)ddpm_ptr(gb));
    }
  }
  return DDPM_OK;
}

#define FLOAT_DISPATCH(dt, call)                                   \
  switch (dt) {                                                    \
  case DDPM_FLOAT32: { using T = float; return call; }              \
  case DDPM_FLOAT64: { using T = double; return call; }             \
  case DDPM_FLOAT16: { using T = __half; return call; }             \
  case DDPM_BFLOAT16: { using T = __nv_bfloat16; return call; }     \
  default: return no_dtype(c, dt);                                 \
  }
} // namespace

DDPM_CU_KERNEL(GROUP_NORM) { FLOAT_DISPATCH(c->in[0]->dtype, gn_fwd<T>(c, false)) }
DDPM_CU_KERNEL(GROUP_NORM_SILU) { FLOAT_DISPATCH(c->in[0]->dtype, gn_fwd<T>(c, true)) }
DDPM_CU_KERNEL(GROUP_NORM_BWD) { FLOAT_DISPATCH(c->in[1]->dtype, gn_bwd<T>(c)) }
DDPM_CU_KERNEL(LAYER_NORM) { FLOAT_DISPATCH(c->in[0]->dtype, ln_fwd<T>(c)) }
DDPM_CU_KERNEL(LAYER_NORM_BWD) { FLOAT_DISPATCH(c->in[1]->dtype, ln_bwd<T>(c)) }
