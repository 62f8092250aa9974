/* random.c: CPU random fills.  Element i of a draw uses Philox counter (base + i), so the CUDA
 * kernels, which compute the same function per element, produce identical streams. */
#include "cpu.h"
#include "gemm_avx512.h"
#include <immintrin.h>
#include <math.h>

/* The per-element mappings live in random_map.h so CPU and CUDA share them verbatim. */
#include "random_map.h"

typedef struct {
  ddpm_tensor *out;
  const ddpm_tensor *probs;
  uint64_t seed, base;
  double a, b;
  int op;
} rnd_ctx;

/* float32 uniforms of counters first .. first + n - 1 (n a multiple of 16), sixteen Philox
 * streams per vector: the same integer function as ddpm_philox, mapped as
 * ddpm_rand_uniform_f32 (a + u * (b - a), no fused multiply-add), so the values are identical to
 * the scalar path's.  Parameter initialisation draws millions of these at start-up. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#define NO_CONTRACT
#else
#define NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#endif
DDPM_AVX512_BEGIN
NO_CONTRACT
static void uniform_f32_avx512(uint64_t seed, uint64_t first, int64_t n, float a, float b, float *o) {
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u), m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
  const __m512 va = _mm512_set1_ps(a), vbma = _mm512_set1_ps(b - a), scale = _mm512_set1_ps(5.9604644775390625e-08f);
  for (int64_t i = 0; i < n; i += 16) {
    uint64_t ctr = first + (uint64_t)i;
    __m512i base_lo = _mm512_set1_epi32((int)(uint32_t)ctr);
    __m512i c0 = _mm512_add_epi32(base_lo, iota);
    /* lanes whose low word wrapped carry into the high word */
    __mmask16 wrap = _mm512_cmplt_epu32_mask(c0, base_lo);
    __m512i hi = _mm512_set1_epi32((int)(uint32_t)(ctr >> 32));
    __m512i c1 = _mm512_mask_add_epi32(hi, wrap, hi, _mm512_set1_epi32(1));
    __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
      /* 32x32->64 products of the even lanes, then of the odd lanes shifted down */
      __m512i e0 = _mm512_mul_epu32(c0, m0), o0 = _mm512_mul_epu32(_mm512_srli_epi64(c0, 32), m0);
      __m512i e1 = _mm512_mul_epu32(c2, m1), o1 = _mm512_mul_epu32(_mm512_srli_epi64(c2, 32), m1);
      __m512i lo0 = _mm512_mask_blend_epi32(0xAAAA, e0, _mm512_slli_epi64(o0, 32));
      __m512i hi0 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e0, 32), o0);
      __m512i lo1 = _mm512_mask_blend_epi32(0xAAAA, e1, _mm512_slli_epi64(o1, 32));
      __m512i hi1 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e1, 32), o1);
      __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32((int)k0));
      __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32((int)k1));
      c1 = lo1;
      c3 = lo0;
      c0 = n0;
      c2 = n2;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    __m512 u = _mm512_mul_ps(_mm512_cvtepu32_ps(_mm512_srli_epi32(c0, 8)), scale);
    _mm512_storeu_ps(o + i, _mm512_add_ps(va, _mm512_mul_ps(u, vbma)));
  }
}
DDPM_AVX512_END

static void rnd_body(int64_t lo, int64_t hi, void *vctx) {
  rnd_ctx *c = vctx;
  if (c->op == DDPM_OP_UNIFORM && c->out->dtype == DDPM_FLOAT32 && hi - lo >= 16 && cpu_fast_kernels()) {
    int64_t n = (hi - lo) & ~(int64_t)15;
    uniform_f32_avx512(c->seed, c->base + (uint64_t)lo, n, (float)c->a, (float)c->b, (float *)ddpm_ptr(c->out) + lo);
    lo += n;
  }
  char *o = ddpm_ptr(c->out);
  int dt = c->out->dtype, es = ddpm_dsize(dt);
  for (int64_t i = lo; i < hi; i++) {
    uint32_t r[4];
    ddpm_philox(c->seed, c->base + (uint64_t)i, r);
    double v;
    switch (c->op) {
    case DDPM_OP_UNIFORM:
      if (dt == DDPM_FLOAT32) {
        *(float *)(o + i * 4) = ddpm_rand_uniform_f32(r, (float)c->a, (float)c->b);
        continue;
      }
      v = ddpm_rand_uniform_f64(r, c->a, c->b);
      break;
    case DDPM_OP_NORMAL:
      v = dt == DDPM_FLOAT64 ? ddpm_rand_normal_f64(r) : ddpm_rand_normal(r);
      v = c->a + c->b * v;
      break;
    case DDPM_OP_RANDINT: v = (double)ddpm_rand_int(r, (int64_t)c->a, (int64_t)c->b); break;
    default: { /* bernoulli */
      double p = ddpm_load_as_double(ddpm_ptr(c->probs) + i * ddpm_dsize(c->probs->dtype), c->probs->dtype);
      v = ddpm_rand_u53(r) < p ? 1.0 : 0.0;
    }
    }
    if (dt == DDPM_INT64 && c->op == DDPM_OP_RANDINT)
      *(int64_t *)(o + i * 8) = ddpm_rand_int(r, (int64_t)c->a, (int64_t)c->b);
    else
      ddpm_store_from_double(o + i * es, dt, v);
  }
}

/* out contiguous; i[0] seed, i[1] base counter; f[0], f[1] parameters; in[0] probs (bernoulli) */
static int run_random(ddpm_call *c) {
  rnd_ctx ctx = {c->out[0], c->in[0], (uint64_t)c->i[0], (uint64_t)c->i[1], c->f[0], c->f[1], c->op};
  cpu_parallel_for(ddpm_tensor_numel(c->out[0]), 16384, rnd_body, &ctx);
  return DDPM_OK;
}
int cpu_UNIFORM(ddpm_call *c) { return run_random(c); }
int cpu_NORMAL(ddpm_call *c) { return run_random(c); }
int cpu_RANDINT(ddpm_call *c) { return run_random(c); }
int cpu_BERNOULLI(ddpm_call *c) { return run_random(c); }
