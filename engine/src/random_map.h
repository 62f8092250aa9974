/* random_map.h: how four Philox words become one value of each distribution.  Shared verbatim
 * by the CPU kernels and the CUDA kernels (hence the DDPM_HD qualifier), so both devices draw
 * the same numbers from the same seed. */
#ifndef DDPM_RANDOM_MAP_H
#define DDPM_RANDOM_MAP_H
#include <stdint.h>
#ifdef __CUDACC__
#define DDPM_HD __host__ __device__ __forceinline__
#else
#define DDPM_HD static inline
#include <math.h>
#endif

/* float32 uniform in [a, b): 24 random bits, exactly representable */
DDPM_HD float ddpm_rand_uniform_f32(const uint32_t r[4], float a, float b) {
  float u = (float)(r[0] >> 8) * 5.9604644775390625e-08f;
  return a + u * (b - a);
}
/* 53-bit uniform in [0, 1) */
DDPM_HD double ddpm_rand_u53(const uint32_t r[4]) {
  return ((double)(r[0] >> 5) * 67108864.0 + (double)(r[1] >> 6)) * 1.1102230246251565e-16;
}
DDPM_HD double ddpm_rand_uniform_f64(const uint32_t r[4], double a, double b) {
  return a + ddpm_rand_u53(r) * (b - a);
}
/* Box-Muller in double from words 0,1; rounded once to the output type by the caller, so the
 * few-ulp differences between libm implementations almost never reach a float32 result. */
DDPM_HD double ddpm_rand_normal(const uint32_t r[4]) {
  double u1 = ((double)r[0] + 1.0) * 2.3283064365386963e-10; /* (0, 1] */
  double u2 = (double)r[1] * 2.3283064365386963e-10;         /* [0, 1) */
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
/* float64 normals use 53-bit uniforms from all four words */
DDPM_HD double ddpm_rand_normal_f64(const uint32_t r[4]) {
  double u1 = 1.0 - ((double)(r[0] >> 5) * 67108864.0 + (double)(r[1] >> 6)) * 1.1102230246251565e-16;
  double u2 = ((double)(r[2] >> 5) * 67108864.0 + (double)(r[3] >> 6)) * 1.1102230246251565e-16;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
/* integer in [lo, hi) from 64 random bits (bias below 2^-40 for ranges under 2^24) */
DDPM_HD int64_t ddpm_rand_int(const uint32_t r[4], int64_t lo, int64_t hi) {
  uint64_t range = (uint64_t)(hi - lo);
  uint64_t bits = ((uint64_t)r[0] << 32) | r[1];
  return lo + (int64_t)(range ? bits % range : 0);
}
#endif
