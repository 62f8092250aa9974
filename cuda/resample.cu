// resample.cu: interpolate (nearest, nearest-exact, (bi/tri)linear) and pad (constant, reflect,
// replicate, circular), forward and backward, with the index maps of engine/cpu/resample.c
// computed per output element (PyTorch's float arithmetic, written with round-to-nearest
// intrinsics so no fused multiply-add moves a source index).  Forward gathers; backward scatters
// the same map with atomic adds into a zeroed gradient (reflect/replicate padding and
// down-sampling send several outputs to one input).
#include "cuda_common.cuh"
#include <type_traits>

using namespace ddpm_cu;

namespace {
template <typename T> using RT = typename std::conditional<std::is_same<T, double>::value, double, float>::type;
template <typename T> __device__ __forceinline__ RT<T> ld(const T *p, int64_t i) { return (RT<T>)Traits<T>::load(p[i]); }

__device__ __forceinline__ void atomic_addT(float *p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_addT(double *p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_addT(__half *p, float v) { atomicAdd(p, __float2half_rn(v)); }
__device__ __forceinline__ void atomic_addT(__nv_bfloat16 *p, float v) { atomicAdd(p, __float2bfloat16_rn(v)); }

// ---- interpolate -------------------------------------------------------------------------------------
struct Dim {
  int64_t in, out;
  double scale; // the user's scale_factor, 0: none
};
struct Interp {
  Dim d[3]; // spatial dims, padded to 3 with leading size-1 dims
  int mode;
  bool align;
  int64_t planes;
};

// PyTorch's area_pixel_compute_scale / nearest_idx / area_pixel_compute_source_index for one
// output index: source indices a, b and the weight of b (float, as PyTorch keeps it)
__device__ __forceinline__ void map1(const Dim &d, int mode, bool align, int64_t o, int64_t *a, int64_t *b, float *w1) {
  int64_t in = d.in, out = d.out;
  if (mode != DDPM_INTERP_LINEAR) {
    float sc = d.scale > 0 ? (float)(1.0 / d.scale) : __fdiv_rn((float)in, (float)out);
    int64_t x;
    if (out == in) x = o;
    else if (mode == DDPM_INTERP_NEAREST && out == 2 * in) x = o >> 1;
    else {
      float src = mode == DDPM_INTERP_NEAREST ? __fmul_rn((float)o, sc) : __fmul_rn(__fadd_rn((float)o, 0.5f), sc);
      x = (int64_t)floorf(src);
      if (x > in - 1) x = in - 1;
    }
    *a = *b = x;
    *w1 = 0;
    return;
  }
  double sc;
  if (align) sc = out > 1 ? (double)(in - 1) / (double)(out - 1) : 0.0;
  else sc = d.scale > 0 ? 1.0 / d.scale : (double)in / (double)out;
  float scf = (float)sc;
  float src = align ? __fmul_rn(scf, (float)o) : __fsub_rn(__fmul_rn(scf, __fadd_rn((float)o, 0.5f)), 0.5f);
  if (!align && src < 0) src = 0;
  int64_t x = (int64_t)src;
  if (x > in - 1) x = in - 1;
  *a = x;
  *b = x + (x < in - 1 ? 1 : 0);
  float l1 = __fsub_rn(src, (float)x);
  *w1 = l1 < 0 ? 0.0f : l1;
}

template <typename T> __global__ void k_interp(const T *x, T *y, Interp g, bool bwd) {
  using R = RT<T>;
  const int64_t osz = g.d[0].out * g.d[1].out * g.d[2].out, isz = g.d[0].in * g.d[1].in * g.d[2].in;
  const int64_t total = g.planes * osz;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t p = e / osz, r = e % osz;
    int64_t ow = r % g.d[2].out, oh = (r / g.d[2].out) % g.d[1].out, od = r / (g.d[2].out * g.d[1].out);
    int64_t ia[3], ib[3];
    float w1[3];
    map1(g.d[0], g.mode, g.align, od, &ia[0], &ib[0], &w1[0]);
    map1(g.d[1], g.mode, g.align, oh, &ia[1], &ib[1], &w1[1]);
    map1(g.d[2], g.mode, g.align, ow, &ia[2], &ib[2], &w1[2]);
    const int64_t in1 = g.d[1].in, in2 = g.d[2].in;
    if (g.mode != DDPM_INTERP_LINEAR) {
      int64_t src = p * isz + (ia[0] * in1 + ia[1]) * in2 + ia[2];
      if (bwd) atomic_addT((T *)y + src, ld(x, e));
      else y[e] = x[src];
      continue;
    }
    // weights as the CPU keeps them: float, converted to double for float64 data
    R dw[2] = {(R)(1.0f - w1[0]), (R)w1[0]}, hw[2] = {(R)(1.0f - w1[1]), (R)w1[1]}, ww[2] = {(R)(1.0f - w1[2]), (R)w1[2]};
    int64_t di[2] = {ia[0], ib[0]}, hi[2] = {ia[1], ib[1]}, wi[2] = {ia[2], ib[2]};
    const int64_t pb = p * isz;
    if (bwd) {
      R gv = ld(x, e);
      for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
          for (int c = 0; c < 2; c++) {
            R wt = dw[a] * hw[b] * ww[c];
            if (wt != (R)0) atomic_addT((T *)y + pb + (di[a] * in1 + hi[b]) * in2 + wi[c], wt * gv);
          }
    } else {
      R acc_d = 0;
      for (int a = 0; a < 2; a++) {
        R acc_h = 0;
        for (int b = 0; b < 2; b++) {
          int64_t row = pb + (di[a] * in1 + hi[b]) * in2;
          acc_h += hw[b] * (ww[0] * ld(x, row + wi[0]) + ww[1] * ld(x, row + wi[1]));
        }
        acc_d += dw[a] * acc_h;
      }
      y[e] = Traits<T>::store(acc_d);
    }
  }
}

template <typename T> int interp_run(ddpm_call *c, bool bwd) {
  ddpm_tensor *big = bwd ? c->out[0] : c->in[0], *small = bwd ? c->in[0] : c->out[0];
  int ns = big->ndim - 2;
  Interp g;
  for (int d = 0; d < 3; d++) g.d[d] = Dim{1, 1, 0};
  for (int d = 0; d < ns; d++) {
    g.d[3 - ns + d].in = big->shape[2 + d];
    g.d[3 - ns + d].out = small->shape[2 + d];
    g.d[3 - ns + d].scale = c->f[d];
  }
  g.mode = (int)c->i[0];
  g.align = c->i[1] != 0;
  g.planes = big->shape[0] * big->shape[1];
  cudaStream_t s = stream();
  if (bwd && ddpm_tensor_numel(big))
    CU_TRY(cudaMemsetAsync(ddpm_ptr(big), 0, (size_t)ddpm_tensor_numel(big) * sizeof(T), s), "interpolate backward");
  int64_t total = ddpm_tensor_numel(small);
  if (total == 0) return DDPM_OK;
  k_interp<T><<<blocks_for(total, 256), 256, 0, s>>>((const T *)ddpm_ptr(c->in[0]), (T *)ddpm_ptr(c->out[0]), g, bwd);
  return DDPM_OK;
}

// ---- pad ------------------------------------------------------------------------------------------------
struct Pad {
  int k, mode;
  int64_t in[DDPM_MAX_DIMS], out[DDPM_MAX_DIMS], before[DDPM_MAX_DIMS]; // the k padded (trailing) dims
  int64_t isz, osz;
};

__device__ __forceinline__ int64_t pad_src(int64_t o, int64_t before, int64_t n, int mode) {
  int64_t s = o - before;
  switch (mode) {
  case DDPM_PAD_REFLECT:
    if (s < 0) s = -s;
    if (s >= n) s = 2 * (n - 1) - s;
    return s;
  case DDPM_PAD_REPLICATE: return s < 0 ? 0 : s >= n ? n - 1 : s;
  case DDPM_PAD_CIRCULAR: return ((s % n) + n) % n;
  default: return s >= 0 && s < n ? s : -1;
  }
}

// offset (within the outer slice) of the source of inner output index r, or -1 (constant)
__device__ __forceinline__ int64_t pad_map(const Pad &g, int64_t r) {
  int64_t src = 0, mul = 1;
  for (int d = g.k - 1; d >= 0; d--) {
    int64_t o = r % g.out[d];
    r /= g.out[d];
    int64_t m = pad_src(o, g.before[d], g.in[d], g.mode);
    if (m < 0) return -1;
    src += m * mul;
    mul *= g.in[d];
  }
  return src;
}

template <typename W> __global__ void k_pad(const W *x, W *y, Pad g, int64_t total, W fill) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t m = pad_map(g, e % g.osz);
    y[e] = m < 0 ? fill : x[(e / g.osz) * g.isz + m];
  }
}
template <typename T> __global__ void k_pad_bwd(const T *gy, T *gx, Pad g, int64_t total) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t m = pad_map(g, e % g.osz);
    if (m >= 0) atomic_addT(gx + (e / g.osz) * g.isz + m, ld(gy, e));
  }
}

int pad_setup(ddpm_call *c, bool bwd, Pad *g) {
  ddpm_tensor *x = bwd ? c->out[0] : c->in[0], *y = bwd ? c->in[0] : c->out[0];
  int k = (int)c->i[1], nd = x->ndim;
  g->k = k;
  g->mode = (int)c->i[0];
  g->isz = g->osz = 1;
  for (int j = 0; j < k; j++) {
    int pj = k - 1 - j; // pad pairs run from the last dim backwards
    g->in[j] = x->shape[nd - k + j];
    g->out[j] = y->shape[nd - k + j];
    g->before[j] = c->i[2 + 2 * pj];
    g->isz *= g->in[j];
    g->osz *= g->out[j];
  }
  return DDPM_OK;
}

template <typename W> int pad_fwd_typed(ddpm_call *c, const Pad &g) {
  ddpm_tensor *x = c->in[0], *y = c->out[0];
  int64_t total = ddpm_tensor_numel(y);
  if (total == 0) return DDPM_OK;
  uint64_t bits = 0;
  ddpm_store_from_double(&bits, x->dtype, c->f[0]);
  k_pad<W><<<blocks_for(total, 256), 256, 0, stream()>>>((const W *)ddpm_ptr(x), (W *)ddpm_ptr(y), g, total, (W)bits);
  return DDPM_OK;
}

template <typename T> int pad_bwd_typed(ddpm_call *c, const Pad &g) {
  ddpm_tensor *gy = c->in[0], *gx = c->out[0];
  cudaStream_t s = stream();
  if (ddpm_tensor_numel(gx))
    CU_TRY(cudaMemsetAsync(ddpm_ptr(gx), 0, (size_t)ddpm_tensor_numel(gx) * sizeof(T), s), "pad backward");
  int64_t total = ddpm_tensor_numel(gy);
  if (total == 0 || g.isz == 0) return DDPM_OK;
  k_pad_bwd<T><<<blocks_for(total, 256), 256, 0, s>>>((const T *)ddpm_ptr(gy), (T *)ddpm_ptr(gx), g, total);
  return DDPM_OK;
}
} // namespace

DDPM_CU_KERNEL(INTERPOLATE) {
  switch (c->in[0]->dtype) {
  case DDPM_FLOAT32: return interp_run<float>(c, false);
  case DDPM_FLOAT64: return interp_run<double>(c, false);
  case DDPM_FLOAT16: return interp_run<__half>(c, false);
  case DDPM_BFLOAT16: return interp_run<__nv_bfloat16>(c, false);
  default: return no_dtype(c, c->in[0]->dtype);
  }
}
DDPM_CU_KERNEL(INTERPOLATE_BWD) {
  switch (c->in[0]->dtype) {
  case DDPM_FLOAT32: return interp_run<float>(c, true);
  case DDPM_FLOAT64: return interp_run<double>(c, true);
  case DDPM_FLOAT16: return interp_run<__half>(c, true);
  case DDPM_BFLOAT16: return interp_run<__nv_bfloat16>(c, true);
  default: return no_dtype(c, c->in[0]->dtype);
  }
}
DDPM_CU_KERNEL(PAD) {
  if (c->i[1] == 0) return copy_strided(c->out[0], c->in[0], c); // nothing padded
  Pad g;
  DDPM_TRY(pad_setup(c, false, &g));
  switch (ddpm_dsize(c->in[0]->dtype)) {
  case 1: return pad_fwd_typed<uint8_t>(c, g);
  case 2: return pad_fwd_typed<uint16_t>(c, g);
  case 4: return pad_fwd_typed<uint32_t>(c, g);
  default: return pad_fwd_typed<uint64_t>(c, g);
  }
}
DDPM_CU_KERNEL(PAD_BWD) {
  if (c->i[1] == 0) return copy_strided(c->out[0], c->in[0], c);
  Pad g;
  DDPM_TRY(pad_setup(c, true, &g));
  switch (c->out[0]->dtype) {
  case DDPM_FLOAT32: return pad_bwd_typed<float>(c, g);
  case DDPM_FLOAT64: return pad_bwd_typed<double>(c, g);
  case DDPM_FLOAT16: return pad_bwd_typed<__half>(c, g);
  case DDPM_BFLOAT16: return pad_bwd_typed<__nv_bfloat16>(c, g);
  default: return no_dtype(c, c->out[0]->dtype);
  }
}
