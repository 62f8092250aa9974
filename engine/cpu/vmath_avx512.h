/* vmath_avx512.h: float32 exp and erf on 16 lanes, and the activations built on them (SiLU,
 * exact GELU and their derivatives), for kernels compiled for AVX-512.  libm's expf/erff cost
 * ~15-25 cycles per element and kept group_norm+SiLU and GELU at 1-2 GB/s; these run at a few
 * cycles per 16 elements.
 *   exp: x = n ln2 + r, |r| <= ln2/2 (Cody-Waite, two-part ln2), e^r by a degree-6 polynomial
 *        (Cephes expf), 2^n in two halves so n = 128 stays finite; <= 2 ulp from the correctly
 *        rounded value; x < -87.34 gives +0 (so -inf gives 0), x > 88.72 +inf, NaN stays NaN.
 *   erf: odd; |x| < 1: x P6(x^2); 1 <= |x| < 2.2 and 2.2 <= |x| < 3.93: 1 - Q11(|x| - mid)
 *        (least-squares fits of erf(x)/x and erfc on 40001 points, errors 4e-9, 2.5e-10, 6e-10),
 *        beyond 3.93 +-1 (erf rounds to 1 there); within 2 ulp of erf's float value away from 0
 *        (tests/c/test_vmath.c checks the exhaustive maximum error in ulps).
 * Every kernel that needs one of these functions in float32 uses these same definitions (fused
 * group_norm+SiLU and silu() agree bit for bit), and the portable path uses libm for all of them.
 * Include from a translation unit; the functions carry the AVX-512 target themselves. */
#ifndef DDPM_VMATH_AVX512_H
#define DDPM_VMATH_AVX512_H
#include <immintrin.h>

#define VM_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"), always_inline)) static inline

VM_TARGET __m512 vm_exp(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.33654475f), hi = _mm512_set1_ps(88.72283905f);
  __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), over = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
  __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi); /* NaN: max/min return the second operand... */
  xc = _mm512_mask_mov_ps(xc, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x); /* ...so put NaN back */
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  __m512i ni = _mm512_cvtps_epi32(n), h = _mm512_srai_epi32(ni, 1);
  __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(h, _mm512_set1_epi32(127)), 23));
  __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(ni, h), _mm512_set1_epi32(127)), 23));
  __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
  y = _mm512_mask_mov_ps(y, over, _mm512_set1_ps(__builtin_inff()));
  return _mm512_maskz_mov_ps((__mmask16)~under, y);
}

VM_TARGET __m512 vm_erf(__m512 x) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  __m512 a = _mm512_andnot_ps(sign, x), s = _mm512_and_ps(sign, x);
  /* |x| < 1: x P(x^2) */
  __m512 t = _mm512_mul_ps(a, a);
  __m512 p = _mm512_set1_ps(8.006942555e-05f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-8.053768617e-04f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(5.192959500e-03f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-2.685607024e-02f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.128363465e-01f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-3.761262977e-01f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.128379166e+00f));
  __m512 r1 = _mm512_mul_ps(a, p);
  /* 1 <= |x| < 2.2: 1 - erfc by Q(|x| - 1.6) */
  __m512 u = _mm512_sub_ps(a, _mm512_set1_ps(1.6f));
  __m512 q = _mm512_set1_ps(1.508251552e-04f);
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(2.336639342e-04f));
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-1.494218907e-03f));
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(9.350938276e-04f));
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(6.036368581e-03f));
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-1.549054402e-02f));
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(4.377756703e-03f));
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(4.931392626e-02f));
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-1.197945748e-01f));
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(1.395664815e-01f));
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-8.722905862e-02f));
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(2.365161671e-02f));
  __m512 r2 = _mm512_sub_ps(_mm512_set1_ps(1.0f), q);
  /* 2.2 <= |x| < 3.93 */
  __m512 v = _mm512_sub_ps(a, _mm512_set1_ps(3.065f));
  __m512 w = _mm512_set1_ps(8.467820009e-06f);
  w = _mm512_fmadd_ps(w, v, _mm512_set1_ps(-1.421954780e-05f));
  w = _mm512_fmadd_ps(w, v, _mm512_set1_ps(-2.163238776e-05f));
  w = _mm512_fmadd_ps(w, v, _mm512_set1_ps(1.282686071e-04f));
  w = _mm512_fmadd_ps(w, v, _mm512_set1_ps(-3.231276161e-04f));
  w = _mm512_fmadd_ps(w, v, _mm512_set1_ps(5.744292684e-04f));
  w = _mm512_fmadd_ps(w, v, _mm512_set1_ps(-7.613093613e-04f));
  w = _mm512_fmadd_ps(w, v, _mm512_set1_ps(7.574436715e-04f));
  w = _mm512_fmadd_ps(w, v, _mm512_set1_ps(-5.566897537e-04f));
  w = _mm512_fmadd_ps(w, v, _mm512_set1_ps(2.877426361e-04f));
  w = _mm512_fmadd_ps(w, v, _mm512_set1_ps(-9.388468590e-05f));
  w = _mm512_fmadd_ps(w, v, _mm512_set1_ps(1.460502546e-05f));
  __m512 r3 = _mm512_sub_ps(_mm512_set1_ps(1.0f), w);
  __m512 r = r1;
  r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(a, _mm512_set1_ps(1.0f), _CMP_GE_OQ), r2);
  r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(a, _mm512_set1_ps(2.2f), _CMP_GE_OQ), r3);
  r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(a, _mm512_set1_ps(3.93f), _CMP_GE_OQ), _mm512_set1_ps(1.0f));
  return _mm512_or_ps(r, s); /* NaN: every branch computed NaN and no compare selected another */
}

/* silu(x) = x / (1 + e^-x) */
VM_TARGET __m512 vm_silu(__m512 x) {
  return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), vm_exp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}
/* silu'(x) = s (1 + x (1 - s)), s = 1 / (1 + e^-x) */
VM_TARGET __m512 vm_silu_d(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, vm_exp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
  return _mm512_mul_ps(s, _mm512_fmadd_ps(x, _mm512_sub_ps(one, s), one));
}
/* gelu(x) = x/2 (1 + erf(x / sqrt 2)) */
VM_TARGET __m512 vm_gelu(__m512 x) {
  __m512 e = vm_erf(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f)));
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}
/* gelu'(x) = Phi(x) + x phi(x) */
VM_TARGET __m512 vm_gelu_d(__m512 x) {
  __m512 cdf = _mm512_mul_ps(_mm512_set1_ps(0.5f),
                             _mm512_add_ps(_mm512_set1_ps(1.0f), vm_erf(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f)))));
  __m512 pdf = _mm512_mul_ps(vm_exp(_mm512_mul_ps(_mm512_set1_ps(-0.5f), _mm512_mul_ps(x, x))),
                             _mm512_set1_ps(0.3989422804014327f));
  return _mm512_fmadd_ps(x, pdf, cdf);
}
#endif
