// philox.cuh: Philox4x32-10 on the device, exactly as ddpm_philox in engine/src/internal.h
// (Random123's constants), for every kernel that draws random numbers (rng.cu, dropout,
// attention dropout): element e of a draw uses counter base + e on every device.
#ifndef DDPM_CUDA_PHILOX_CUH
#define DDPM_CUDA_PHILOX_CUH
#include <stdint.h>

__device__ __forceinline__ void ddpm_cu_philox(uint64_t seed, uint64_t counter, uint32_t out[4]) {
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
#pragma unroll
  for (int r = 0; r < 10; r++) {
    uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c1 = lo1;
    c3 = lo0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// 53-bit uniform in [0, 1) of the counter (ddpm_rand_u53 of random_map.h)
__device__ __forceinline__ double ddpm_cu_u53(uint64_t seed, uint64_t counter) {
  uint32_t r[4];
  ddpm_cu_philox(seed, counter, r);
  return ((double)(r[0] >> 5) * 67108864.0 + (double)(r[1] >> 6)) * 1.1102230246251565e-16;
}
#endif
