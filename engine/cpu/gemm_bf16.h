/* gemm_bf16.h: the CPU backend's bfloat16 GEMM (bfloat16 operands, float32 sums), on AMX-BF16
 * tiles, AVX512-BF16 pair dot products or portable C, chosen at run time; and bfloat16 <-> float32
 * row conversions.  Used by matmul/bmm/linear and conv2d on bfloat16 CPU tensors (autocast('cpu')). */
#ifndef DDPM_GEMM_BF16_H
#define DDPM_GEMM_BF16_H
#include "cpu.h"

/* The path every bfloat16 GEMM of this process takes, chosen once: AMX when the CPU has AMX-BF16
 * and the kernel grants the tile state; else AVX512-BF16; else portable C.  DDPM_CPU_ISA=avx512
 * skips AMX, DDPM_CPU_ISA=generic (like every fast kernel) forces the portable path. */
enum { CPU_BF16_GENERIC = 0, CPU_BF16_AVX512 = 1, CPU_BF16_AMX = 2 };
DDPM_INTERNAL int cpu_bf16_path(void);

/* out[M, N] = (accumulate ? C : 0) + A B + bias_n[j] + bias_m[i], summed in float32.
 * A[i, k] = A[i*ai + k*ak] and B[k, j] = B[k*bk + j*bj] (any strides: row-major, transposed,
 * leading dims).  The result goes to the float32 C when C != NULL, else to the bfloat16 Cb
 * (rounded to nearest even once, after the bias).  accumulate needs the float32 C.
 * Threads over the tiles unless called inside a parallel region.  DDPM_OK, or DDPM_ERR_OOM when
 * a packing buffer cannot be had (buffers are per thread and kept between calls). */
typedef struct {
  int64_t M, N, K;
  const uint16_t *A;
  int64_t ai, ak;
  const uint16_t *B;
  int64_t bk, bj;
  float *C;
  uint16_t *Cb;
  int64_t ldc;
  int accumulate;
  const float *bias_n; /* [N] or NULL */
  const float *bias_m; /* [M] or NULL */
  /* optional: B produced row by row on demand instead of read from B (an implicit im2col):
   * brow(brow_ctx, r, dst) writes row r of a matrix whose rows are the k of B (brow_is_k: row k
   * holds B[k, 0..N)) or its columns (row j holds B[0..K, j]) */
  void (*brow)(const void *ctx, int64_t r, uint16_t *dst);
  const void *brow_ctx;
  int brow_is_k;
  /* nonzero: A (pointer, strides, M, K and values) is the A of this thread's previous call, so
   * its packed copy may be reused (a convolution's weight across the images of one call) */
  int a_same;
  /* optional with brow_is_k, for the fast paths: writes rows k and k+1 (only k when nvalid is 1)
   * already interleaved as k-pairs, strip s (16 columns, zero past N) at dst + s*sstride */
  void (*bpair)(const void *ctx, int64_t k, int nvalid, uint32_t *dst, int64_t sstride);
} cpu_gemm_bf16_args;
DDPM_INTERNAL int cpu_gemm_bf16(const cpu_gemm_bf16_args *g);

/* dst[k] = src[k] converted (bfloat16 rounded to nearest even, NaN kept quiet, as ddpm_f32_to_bf16) */
#endif
