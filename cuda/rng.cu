// rng.cu: random fills.  Element i of a draw uses Philox4x32-10 at counter (base + i) and the
// per-distribution mappings of engine/src/random_map.h (shared verbatim with the CPU kernels), so
// a seed gives the same numbers on both devices.  This file is compiled with --fmad=false: a
// fused multiply-add would round differently from the CPU's separate multiply and add.
//
// Inside CUDA graph capture the seed and base counter are read from device memory that every
// replay refreshes from the generator (graph.cu), so each replay draws fresh numbers, exactly
// those an eager run at that generator state would draw.
#include "cuda_common.cuh"
#include "philox.cuh"
#include "random_map.h"

using namespace ddpm_cu;

namespace ddpm_cu {
// graph.cu: device state for generator g inside the capture in progress
int graph_rng_slot(ddpm_generator *g, uint64_t base, const uint64_t **state, uint64_t *rel);
} // namespace ddpm_cu

namespace {
// ddpm_store_from_double on the device
__device__ __forceinline__ void store_d(char *p, int dt, double v) {
  switch (dt) {
  case DDPM_FLOAT32: *(float *)p = (float)v; break;
  case DDPM_FLOAT64: *(double *)p = v; break;
  case DDPM_FLOAT16: *(__half *)p = __float2half_rn((float)v); break;
  case DDPM_BFLOAT16: *(__nv_bfloat16 *)p = __float2bfloat16_rn((float)v); break;
  case DDPM_INT64: *(int64_t *)p = isfinite(v) ? (int64_t)v : 0; break;
  case DDPM_INT32: *(int32_t *)p = isfinite(v) ? (int32_t)(int64_t)v : 0; break;
  case DDPM_UINT8: *(uint8_t *)p = isfinite(v) ? (uint8_t)(int64_t)v : 0; break;
  default: *(uint8_t *)p = v != 0; break;
  }
}
__device__ __forceinline__ double load_d(const char *p, int dt) {
  switch (dt) {
  case DDPM_FLOAT32: return *(const float *)p;
  case DDPM_FLOAT64: return *(const double *)p;
  case DDPM_FLOAT16: return __half2float(*(const __half *)p);
  case DDPM_BFLOAT16: return __bfloat162float(*(const __nv_bfloat16 *)p);
  case DDPM_INT64: return (double)*(const int64_t *)p;
  case DDPM_INT32: return *(const int32_t *)p;
  case DDPM_UINT8: return *(const uint8_t *)p;
  default: return *(const uint8_t *)p ? 1.0 : 0.0;
  }
}

__global__ void k_random(int op, int64_t n, char *out, int dt, const char *probs, int pdt, uint64_t seed_arg,
                         uint64_t base_arg, const uint64_t *gstate, uint64_t rel, double a, double b) {
  const uint64_t seed = gstate ? gstate[0] : seed_arg;
  const uint64_t base = gstate ? gstate[1] + rel : base_arg;
  const int es = dt == DDPM_FLOAT64 || dt == DDPM_INT64 ? 8 : (dt == DDPM_FLOAT32 || dt == DDPM_INT32 ? 4 : (dt <= DDPM_BFLOAT16 ? 2 : 1));
  const int pes = pdt == DDPM_FLOAT64 ? 8 : (pdt == DDPM_FLOAT32 ? 4 : 2);
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    uint32_t r[4];
    ddpm_cu_philox(seed, base + (uint64_t)i, r);
    double v;
    switch (op) {
    case DDPM_OP_UNIFORM:
      if (dt == DDPM_FLOAT32) {
        *(float *)(out + i * 4) = ddpm_rand_uniform_f32(r, (float)a, (float)b);
        continue;
      }
      v = ddpm_rand_uniform_f64(r, a, b);
      break;
    case DDPM_OP_NORMAL:
      v = dt == DDPM_FLOAT64 ? ddpm_rand_normal_f64(r) : ddpm_rand_normal(r);
      v = a + b * v;
      break;
    case DDPM_OP_RANDINT:
      if (dt == DDPM_INT64) {
        *(int64_t *)(out + i * 8) = ddpm_rand_int(r, (int64_t)a, (int64_t)b);
        continue;
      }
      v = (double)ddpm_rand_int(r, (int64_t)a, (int64_t)b);
      break;
    default: { // bernoulli
      double p = load_d(probs + i * pes, pdt);
      v = ddpm_rand_u53(r) < p ? 1.0 : 0.0;
    }
    }
    store_d(out + i * es, dt, v);
  }
}

// out contiguous; i[0] seed, i[1] base counter, i[2] the generator; f[0], f[1] parameters;
// in[0] probabilities (bernoulli, contiguous)
int run_random(ddpm_call *c) {
  ddpm_tensor *o = c->out[0];
  int64_t n = ddpm_tensor_numel(o);
  if (n == 0) return DDPM_OK;
  const ddpm_tensor *probs = c->nin > 0 ? c->in[0] : nullptr;
  cudaStream_t s = stream();
  const uint64_t *gstate = nullptr;
  uint64_t rel = 0;
  if (stream_capturing(s)) {
    ddpm_generator *g = (ddpm_generator *)(intptr_t)c->i[2];
    if (!g)
      return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "%s: this random draw cannot be captured in a CUDA graph (no generator)",
                       ddpm_opname(c->op));
    DDPM_TRY(graph_rng_slot(g, (uint64_t)c->i[1], &gstate, &rel));
  }
  int threads = 256;
  unsigned blocks = blocks_for(n, threads, (int64_t)device_sm_count(current_ordinal()) * 8);
  k_random<<<blocks, threads, 0, s>>>(c->op, n, ddpm_ptr(o), o->dtype, probs ? ddpm_ptr(probs) : nullptr,
                                      probs ? probs->dtype : DDPM_FLOAT32, (uint64_t)c->i[0], (uint64_t)c->i[1],
                                      gstate, rel, c->f[0], c->f[1]);
  return DDPM_OK;
}
} // namespace

DDPM_CU_KERNEL(UNIFORM) { return run_random(c); }
DDPM_CU_KERNEL(NORMAL) { return run_random(c); }
DDPM_CU_KERNEL(RANDINT) { return run_random(c); }
DDPM_CU_KERNEL(BERNOULLI) { return run_random(c); }
