/* norm_f32.c: float32 group_norm (+SiLU) forward and backward on AVX-512, the same math as
 * norm_impl.h (statistics and gradient sums in double, the per-element formulas in float) with
 * 16 lanes per step and the SiLU of activation_f32.c (vmath_avx512.h): the generic path spent
 * most of its time in scalar libm expf and scalar double sums (~1.5 GB/s).  The normalised value
 * is z = fma(x, scale, shift) in the plain and the fused op alike, so group_norm followed by silu
 * equals group_norm_silu bit for bit, forward and backward. */
#include "norm_f32.h"
#include "bf16_convert.h"
#include "vmath_avx512.h"

#define FAST __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

static inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

FAST static inline double hsum_pd(__m512d v) { return _mm512_reduce_add_pd(v); }

/* element i.. of a float32 or (half) bfloat16 array, masked lanes zero */
FAST static inline __m512 ld(const void *p, int64_t i, __mmask16 m, bool half) {
  if (half) return cpu_bf16_unpack16(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i));
  return _mm512_maskz_loadu_ps(m, (const float *)p + i);
}
FAST static inline void st(void *p, int64_t i, __mmask16 m, __m512 v, bool half) {
  if (half) _mm256_mask_storeu_epi16((uint16_t *)p + i, m, cpu_bf16_pack16(v));
  else _mm512_mask_storeu_ps((float *)p + i, m, v);
}

/* mean and 1/sqrt(var + eps) of n floats: two passes, sums in 8 double lanes */
FAST static void moments(const void *x, int64_t n, double eps, float *mean, float *rstd, bool half) {
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    __m512 v = ld(x, i, tail_mask(n - i), half);
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
  }
  double m = n ? hsum_pd(_mm512_add_pd(s0, s1)) / (double)n : 0.0;
  __m512d mv = _mm512_set1_pd(m), v0 = _mm512_setzero_pd(), v1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = tail_mask(n - i);
    __m512 v = ld(x, i, k, half);
    __m512d d0 = _mm512_maskz_sub_pd((__mmask8)k, _mm512_cvtps_pd(_mm512_castps512_ps256(v)), mv);
    __m512d d1 = _mm512_maskz_sub_pd((__mmask8)(k >> 8), _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), mv);
    v0 = _mm512_fmadd_pd(d0, d0, v0);
    v1 = _mm512_fmadd_pd(d1, d1, v1);
  }
  double var = n ? hsum_pd(_mm512_add_pd(v0, v1)) / (double)n : 0.0;
  *mean = (float)m;
  *rstd = (float)(1.0 / sqrt(var + eps));
}

FAST void cpu_gn_fwd_f32(const cpu_gn_f32 *c, int64_t lo, int64_t hi) {
  int64_t Cg = c->C / c->G, S = c->S, M = Cg * S;
  for (int64_t t = lo; t < hi; t++) {
    int64_t n = t / c->G, grp = t % c->G;
    const bool h = c->xh;
    const int64_t g0 = (n * c->C + grp * Cg) * S;
    float mean, rstd;
    moments(h ? (const void *)((const uint16_t *)(const void *)c->x + g0) : (const void *)(c->x + g0), M, c->eps,
            &mean, &rstd, h);
    c->mean[t] = mean;
    c->rstd[t] = rstd;
    for (int64_t ci = 0; ci < Cg; ci++) {
      int64_t ch = grp * Cg + ci;
      float scale = c->w ? rstd * c->w[ch] : rstd;
      float shift = (c->b ? c->b[ch] : 0.0f) - mean * scale;
      const __m512 sc = _mm512_set1_ps(scale), sh = _mm512_set1_ps(shift);
      const int64_t r0 = g0 + ci * S;
      for (int64_t k = 0; k < S; k += 16) {
        __mmask16 m = tail_mask(S - k);
        __m512 z = _mm512_fmadd_ps(ld(c->x, r0 + k, m, h), sc, sh);
        st(c->y, r0 + k, m, c->silu ? vm_silu(z) : z, c->yh);
      }
    }
  }
}

/* dx = rstd w dz + c2 x + c3 with c2 = (B mean - A) rstd^3 / M, c3 = -c2 mean - B rstd / M,
 * A = sum w dz x, B = sum w dz over the group (dz = dy, or dy silu'(z) for the fused op);
 * dzbuf holds M floats when fused. */
FAST void cpu_gn_bwd_f32(const cpu_gn_f32 *c, int64_t lo, int64_t hi, float *dzbuf) {
  int64_t Cg = c->C / c->G, S = c->S, M = Cg * S;
  for (int64_t t = lo; t < hi; t++) {
    int64_t n = t / c->G, grp = t % c->G;
    int64_t base = (n * c->C + grp * Cg) * S;
    const bool h = c->xh;
    /* dz: dy (at base in gy, bf16 when yh) or, fused, the float32 dzbuf (from 0) */
    const void *dz = c->gy;
    int64_t dz0 = base;
    bool dzh = c->yh;
    float mean = c->mean[t], rstd = c->rstd[t];
    if (c->silu) { /* recompute z = group_norm(x) and form dz = dy silu'(z) */
      for (int64_t ci = 0; ci < Cg; ci++) {
        int64_t ch = grp * Cg + ci;
        float scale = c->w ? rstd * c->w[ch] : rstd;
        float shift = (c->b ? c->b[ch] : 0.0f) - mean * scale;
        const __m512 sc = _mm512_set1_ps(scale), sh = _mm512_set1_ps(shift);
        const int64_t r0 = base + ci * S;
        float *dr = dzbuf + ci * S;
        for (int64_t k = 0; k < S; k += 16) {
          __mmask16 m = tail_mask(S - k);
          __m512 z = _mm512_fmadd_ps(ld(c->x, r0 + k, m, h), sc, sh);
          _mm512_mask_storeu_ps(dr + k, m, _mm512_mul_ps(ld(c->gy, r0 + k, m, c->yh), vm_silu_d(z)));
        }
      }
      dz = dzbuf;
      dz0 = 0;
      dzh = false;
    }
    double A = 0, B = 0;
    for (int64_t ci = 0; ci < Cg; ci++) {
      int64_t ch = grp * Cg + ci;
      const int64_t r0 = base + ci * S, d0i = dz0 + ci * S;
      __m512d sy0 = _mm512_setzero_pd(), sy1 = _mm512_setzero_pd(), sx0 = _mm512_setzero_pd(),
              sx1 = _mm512_setzero_pd();
      for (int64_t k = 0; k < S; k += 16) {
        __mmask16 m = tail_mask(S - k);
        __m512 d = ld(dz, d0i + k, m, dzh), x = ld(c->x, r0 + k, m, h);
        __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(d)), d1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(d, 1));
        sy0 = _mm512_add_pd(sy0, d0);
        sy1 = _mm512_add_pd(sy1, d1);
        sx0 = _mm512_fmadd_pd(d0, _mm512_cvtps_pd(_mm512_castps512_ps256(x)), sx0);
        sx1 = _mm512_fmadd_pd(d1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1)), sx1);
      }
      double sdy = hsum_pd(_mm512_add_pd(sy0, sy1)), sdyx = hsum_pd(_mm512_add_pd(sx0, sx1));
      cpu_gn_bwd_channel(c->w ? c->w[ch] : 1.0, sdy, sdyx, mean, rstd, &A, &B, c->pdw ? c->pdw + n * c->C + ch : NULL,
                         c->pdb ? c->pdb + n * c->C + ch : NULL);
    }
    if (!c->gx) continue;
    double r = rstd, c2, c3;
    cpu_gn_bwd_coeffs(A, B, mean, r, M, &c2, &c3);
    const __m512 b2 = _mm512_set1_ps((float)c2), b3 = _mm512_set1_ps((float)c3);
    for (int64_t ci = 0; ci < Cg; ci++) {
      int64_t ch = grp * Cg + ci;
      const __m512 a = _mm512_set1_ps((float)(r * (c->w ? c->w[ch] : 1.0)));
      const int64_t r0 = base + ci * S, d0i = dz0 + ci * S;
      for (int64_t k = 0; k < S; k += 16) {
        __mmask16 m = tail_mask(S - k);
        __m512 v = _mm512_fmadd_ps(b2, ld(c->x, r0 + k, m, h), b3);
        st(c->gx, r0 + k, m, _mm512_fmadd_ps(a, ld(dz, d0i + k, m, dzh), v), h);
      }
    }
  }
}
