/* gemm_bf16.c: bfloat16 GEMM with float32 sums, three ways, chosen once at run time.
 *  - AMX-BF16: C in 16x16 float32 tiles, 2x2 of them per 32x32 block; each TDPBF16PS multiplies a
 *    16x32 bfloat16 A tile (rows as stored) by a 32x16 B tile stored as 16 rows of k-pairs (VNNI).
 *    Linux hands out the 8 KB tile state only on request (arch_prctl), and every thread loads its
 *    tile configuration before use.
 *  - AVX512-BF16: VDPBF16PS adds the products of a pair of k to each of 16 float32 lanes; a 6x64
 *    micro-tile of C lives in 24 zmm registers, A pairs are broadcast, B vectors read as packed.
 *  - portable C: B widened to float32 once, rows summed in float32.
 * Both fast paths share one packed B (strips of 16 columns of k-pairs), packed from B or from rows
 * a caller makes on demand (an implicit im2col); A is packed once per call when small (and kept for
 * the next call with the same A: a convolution's weight over its images), else per tile.  K
 * runs in blocks of 1152 (a 3x3 convolution of 128 channels in one block; 192 and 256 take two);
 * longer sums go through float32 C (or a float32 buffer when the output is bfloat16), so the
 * result is rounded to bfloat16 once, after the bias. */
#include "bf16_convert.h" /* cpu_bf16_pack16: rounding as ddpm_f32_to_bf16 (VCVTNEPS2BF16 would flush denormals) */
#include "gemm_bf16.h"
#include "gemm_avx512.h" /* cpu_fast_kernels */
#include "nn_cpu.h"        /* cpu_buf */
#include <cpuid.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#define MR 6      /* rows of the AVX512-BF16 micro-tile */
#define KC 2304   /* k per block: a multiple of 32 (one AMX tile depth) */

static int path_state = -1;

static int detect_path(void) {
  if (!cpu_fast_kernels()) return CPU_BF16_GENERIC; /* no AVX-512, or DDPM_CPU_ISA=generic */
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) return CPU_BF16_GENERIC;
  const char *isa = getenv("DDPM_CPU_ISA");
  if (isa && (!strcmp(isa, "avx512") || !strcmp(isa, "avx512_bf16"))) return CPU_BF16_AVX512;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24))) return CPU_BF16_AVX512;
#ifdef SYS_arch_prctl
  /* without this grant the first tile instruction kills the process (SIGILL) */
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return CPU_BF16_AVX512;
  return CPU_BF16_AMX;
#else
  return CPU_BF16_AVX512;
#endif
}

int cpu_bf16_path(void) {
  int s = __atomic_load_n(&path_state, __ATOMIC_RELAXED);
  if (s >= 0) return s;
  s = detect_path();
  __atomic_store_n(&path_state, s, __ATOMIC_RELAXED);
  return s;
}

const char *ddpm_cpu_bf16_kernel(void) {
  static const char *names[3] = {"generic", "avx512_bf16", "amx"};
  return names[cpu_bf16_path()];
}

/* per-thread packing buffers, kept between calls: 0 packed B (of the calling thread, shared by
 * its team), 1 packed A of one tile, 2 float32 sums of a bfloat16 result longer than one K block,
 * 3 the whole packed A (of the calling thread), 4 rows made by brow */
static _Thread_local cpu_buf scr[5];

/* what scratch 3 holds, for a_same */
static _Thread_local struct {
  const uint16_t *A;
  int64_t ai, ak, M, K;
  int path;
} a_key;

static void *scratch(int s, size_t n) { return cpu_buf_reserve(&scr[s], n); }

static inline float bf(uint16_t h) { return ddpm_bf16_to_f32(h); }

/* ---- portable path ------------------------------------------------------------------------- */

static int gemm_generic(const cpu_gemm_bf16_args *g) {
  const int64_t M = g->M, N = g->N, K = g->K > 0 ? g->K : 0;
  float *Bf = NULL;
  if (K > 0) {
    Bf = scratch(0, sizeof(float) * (size_t)(K * N));
    if (!Bf) return DDPM_FAIL(DDPM_ERR_OOM, "bfloat16 gemm: out of memory for a %lld x %lld buffer", (long long)K,
                              (long long)N);
    if (g->brow) { /* rows made on demand, one at a time */
      uint16_t *row = scratch(4, sizeof(uint16_t) * (size_t)(g->brow_is_k ? N : K));
      if (!row) return DDPM_FAIL(DDPM_ERR_OOM, "bfloat16 gemm: out of memory for a row of %lld", (long long)K);
      if (g->brow_is_k)
        for (int64_t k = 0; k < K; k++) {
          g->brow(g->brow_ctx, k, row);
          for (int64_t j = 0; j < N; j++) Bf[k * N + j] = bf(row[j]);
        }
      else
        for (int64_t j = 0; j < N; j++) {
          g->brow(g->brow_ctx, j, row);
          for (int64_t k = 0; k < K; k++) Bf[k * N + j] = bf(row[k]);
        }
    } else {
      for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < N; j++) Bf[k * N + j] = bf(g->B[k * g->bk + j * g->bj]);
    }
  }
  int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if ((double)M * (double)N * (double)K < 1e6) nt = 1;
  int failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    float *acc = scratch(1, sizeof(float) * (size_t)N);
    if (!acc) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t i = 0; i < M; i++) {
      if (!acc) continue;
      for (int64_t j = 0; j < N; j++) acc[j] = 0.0f;
      for (int64_t k = 0; k < K; k++) {
        const float a = bf(g->A[i * g->ai + k * g->ak]), *row = Bf + k * N;
        for (int64_t j = 0; j < N; j++) acc[j] += a * row[j];
      }
      for (int64_t j = 0; j < N; j++) {
        float v = acc[j];
        if (g->accumulate && g->C) v = g->C[i * g->ldc + j] + v;
        if (g->bias_n) v += g->bias_n[j];
        if (g->bias_m) v += g->bias_m[i];
        if (g->C) g->C[i * g->ldc + j] = v;
        else g->Cb[i * g->ldc + j] = ddpm_f32_to_bf16(v);
      }
    }
  }
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "bfloat16 gemm: out of memory for a row of %lld floats", (long long)N)
                : DDPM_OK;
}

/* ---- packing (plain C: both fast paths read these layouts) --------------------------------- */

/* strip s of the B block k in [k0, k0 + kc): Bp[(s*KP + kp)*16 + j] holds B[k0 + 2kp, 16s + j] in
 * its low half and B[k0 + 2kp + 1, 16s + j] in its high half, zeros past the edges: the operand
 * layout of VDPBF16PS and of an AMX B tile alike */
static int64_t strip_gather(const uint16_t *src0, int64_t bj, int64_t kpf, uint32_t *d);

/* one strip from a source whose k-pairs are adjacent: column j (< nj) of the strip at src + j*bj */
static void pack_strip_kpairs(const uint16_t *src0, int64_t bj, int64_t nj, int64_t kc, int64_t KP, uint32_t *d) {
  int64_t kpg = 0; /* k-pairs done by 16-lane gathers: whole strips of 4-byte aligned pairs */
  if (nj == 16 && bj % 2 == 0 && bj < ((int64_t)1 << 27) && ((uintptr_t)src0 & 3u) == 0)
    kpg = strip_gather(src0, bj, kc / 2, d);
  for (int64_t j = 0; j < 16; j++) {
    int64_t kp = kpg;
    if (j < nj) {
      const uint16_t *src = src0 + j * bj;
      for (; 2 * kp + 1 < kc; kp++) d[kp * 16 + j] = (uint32_t)src[2 * kp] | (uint32_t)src[2 * kp + 1] << 16;
      if (2 * kp < kc) {
        d[kp * 16 + j] = src[2 * kp];
        kp++;
      }
    }
    for (; kp < KP; kp++) d[kp * 16 + j] = 0;
  }
}

static void pack_b(const cpu_gemm_bf16_args *g, int64_t k0, int64_t kc, int64_t KP, int64_t s, uint32_t *Bp) {
  uint32_t *d = Bp + s * KP * 16;
  const int64_t j0 = 16 * s, nj = g->N - j0 < 16 ? g->N - j0 : 16;
  const uint16_t *B = g->B + k0 * g->bk + j0 * g->bj;
  if (g->bk == 1) { /* a B stored transposed: each k-pair is one 32-bit word already */
    pack_strip_kpairs(B, g->bj, nj, kc, KP, d);
    return;
  }
  for (int64_t kp = 0; kp < KP; kp++) {
    uint32_t *dr = d + kp * 16;
    const int64_t k = 2 * kp;
    const uint16_t *r0 = k < kc ? B + k * g->bk : NULL, *r1 = k + 1 < kc ? B + (k + 1) * g->bk : NULL;
    if (r0 && r1 && nj == 16 && g->bj == 1) {
      for (int j = 0; j < 16; j++) dr[j] = (uint32_t)r0[j] | (uint32_t)r1[j] << 16;
      continue;
    }
    for (int64_t j = 0; j < 16; j++) {
      uint32_t lo = r0 && j < nj ? r0[j * g->bj] : 0, hi = r1 && j < nj ? r1[j * g->bj] : 0;
      dr[j] = lo | hi << 16;
    }
  }
}

/* brow with rows along k: k-pairs [kp0, kp1) of the block, every strip; tmp holds 2 rows of ns*16 */
static void pack_b_rows_k(const cpu_gemm_bf16_args *g, int64_t k0, int64_t kc, int64_t KP, int64_t kp0, int64_t kp1,
                          int64_t ns, uint32_t *Bp, uint16_t *tmp) {
  const int64_t W = ns * 16;
  uint16_t *t0 = tmp, *t1 = tmp + W;
  memset(t0 + g->N, 0, sizeof(uint16_t) * (size_t)(W - g->N));
  memset(t1 + g->N, 0, sizeof(uint16_t) * (size_t)(W - g->N));
  for (int64_t kp = kp0; kp < kp1; kp++) {
    if (g->bpair && 2 * kp < kc) {
      g->bpair(g->brow_ctx, k0 + 2 * kp, 2 * kp + 1 < kc ? 2 : 1, Bp + kp * 16, KP * 16);
      continue;
    }
    if (2 * kp < kc) g->brow(g->brow_ctx, k0 + 2 * kp, t0);
    else memset(t0, 0, sizeof(uint16_t) * (size_t)g->N);
    if (2 * kp + 1 < kc) g->brow(g->brow_ctx, k0 + 2 * kp + 1, t1);
    else memset(t1, 0, sizeof(uint16_t) * (size_t)g->N);
    for (int64_t s = 0; s < ns; s++) {
      uint32_t *d = Bp + (s * KP + kp) * 16;
      const uint16_t *a = t0 + 16 * s, *b = t1 + 16 * s;
      for (int j = 0; j < 16; j++) d[j] = (uint32_t)a[j] | (uint32_t)b[j] << 16;
    }
  }
}

/* brow with rows along j: strip s from its 16 rows (tmp holds 16 rows of K) */
static void pack_b_rows_j(const cpu_gemm_bf16_args *g, int64_t k0, int64_t kc, int64_t KP, int64_t s, uint32_t *Bp,
                          uint16_t *tmp) {
  const int64_t j0 = 16 * s, nj = g->N - j0 < 16 ? g->N - j0 : 16;
  for (int64_t j = 0; j < nj; j++) g->brow(g->brow_ctx, j0 + j, tmp + j * g->K);
  pack_strip_kpairs(tmp + k0, g->K, nj, kc, KP, Bp + s * KP * 16);
}

/* rows [i0, i0 + m) of the A block for AVX512-BF16: panels of MR rows, Ap[(p*KP + kp)*MR + i] the
 * k-pair (A[., k0 + 2kp], A[., k0 + 2kp + 1]) of row p*MR + i (zero rows and k past the edges) */
static void pack_a_pairs(const cpu_gemm_bf16_args *g, int64_t i0, int64_t m, int64_t k0, int64_t kc, int64_t KP,
                         uint32_t *Ap) {
  for (int64_t p = 0; p * MR < m; p++) {
    uint32_t *d = Ap + p * KP * MR;
    for (int i = 0; i < MR; i++) {
      const int64_t r = p * MR + i;
      int64_t kp = 0;
      if (r < m) {
        const uint16_t *src = g->A + (i0 + r) * g->ai + k0 * g->ak;
        const int64_t ak = g->ak;
        for (; 2 * kp + 1 < kc; kp++)
          d[kp * MR + i] = (uint32_t)src[2 * kp * ak] | (uint32_t)src[(2 * kp + 1) * ak] << 16;
        if (2 * kp < kc) {
          d[kp * MR + i] = src[2 * kp * ak];
          kp++;
        }
      }
      for (; kp < KP; kp++) d[kp * MR + i] = 0;
    }
  }
}

/* rows [i0, i0 + m) of the A block for AMX, as stored: Ap[r*kpad + k], zero-padded to mpad rows
 * and kpad columns */
static void pack_a_rows(const cpu_gemm_bf16_args *g, int64_t i0, int64_t m, int64_t mpad, int64_t k0, int64_t kc,
                        int64_t kpad, uint16_t *Ap) {
  if (g->ak != 1 && g->ai == 1) { /* A stored transposed: read along its rows */
    for (int64_t k = 0; k < kc; k++) {
      const uint16_t *src = g->A + i0 + (k0 + k) * g->ak;
      for (int64_t r = 0; r < m; r++) Ap[r * kpad + k] = src[r];
    }
    for (int64_t r = 0; r < m; r++) memset(Ap + r * kpad + kc, 0, sizeof(uint16_t) * (size_t)(kpad - kc));
  } else {
    for (int64_t r = 0; r < m; r++) {
      const uint16_t *src = g->A + (i0 + r) * g->ai + k0 * g->ak;
      uint16_t *d = Ap + r * kpad;
      if (g->ak == 1) memcpy(d, src, sizeof(uint16_t) * (size_t)kc);
      else
        for (int64_t k = 0; k < kc; k++) d[k] = src[k * g->ak];
      memset(d + kc, 0, sizeof(uint16_t) * (size_t)(kpad - kc));
    }
  }
  for (int64_t r = m; r < mpad; r++) memset(Ap + r * kpad, 0, sizeof(uint16_t) * (size_t)kpad);
}

/* ---- AMX ----------------------------------------------------------------------------------- */

typedef struct {
  uint8_t palette_id, start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} amx_cfg;

/* tiles 0-3: C (16 x 16 float32), 4-5: A (16 x 32 bfloat16), 6-7: B (16 k-pairs x 16).  A static
 * object: GCC 12's _tile_loadconfig tells the compiler it reads only 8 bytes, so stores into a
 * local configuration just before it are dropped as dead. */
static const amx_cfg amx_tiles = {.palette_id = 1,
                                  .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
                                  .rows = {16, 16, 16, 16, 16, 16, 16, 16}};

__attribute__((target("amx-tile"))) static void amx_config(void) { _tile_loadconfig(&amx_tiles); }

__attribute__((target("amx-tile"))) static void amx_release(void) { _tile_release(); }

/* t[32][32] (row stride 32 floats) = the (16 mt) x (16 nt) block of A B over KT steps of 32 k;
 * A rows at Ap (lda bytes apart), B strips bs words apart */
__attribute__((target("amx-tile,amx-bf16"))) static void amx_block(int mt, int nt, int64_t KT, const uint16_t *Ap,
                                                                  int64_t lda, const uint32_t *Bp, int64_t bs,
                                                                  float *t) {
  const uint16_t *A1 = Ap + 16 * (lda / 2);
  const uint32_t *B1 = Bp + bs;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  if (mt == 2 && nt == 2) {
    for (int64_t kt = 0; kt < KT; kt++) {
      _tile_loadd(4, Ap + kt * 32, lda);
      _tile_loadd(6, Bp + kt * 256, 64);
      _tile_loadd(7, B1 + kt * 256, 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_loadd(5, A1 + kt * 32, lda);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  } else {
    for (int64_t kt = 0; kt < KT; kt++) {
      _tile_loadd(4, Ap + kt * 32, lda);
      _tile_loadd(6, Bp + kt * 256, 64);
      _tile_dpbf16ps(0, 4, 6);
      if (nt == 2) {
        _tile_loadd(7, B1 + kt * 256, 64);
        _tile_dpbf16ps(1, 4, 7);
      }
      if (mt == 2) {
        _tile_loadd(5, A1 + kt * 32, lda);
        _tile_dpbf16ps(2, 5, 6);
        if (nt == 2) _tile_dpbf16ps(3, 5, 7);
      }
    }
  }
  _tile_stored(0, t, 128);
  if (nt == 2) _tile_stored(1, t + 16, 128);
  if (mt == 2) _tile_stored(2, t + 16 * 32, 128);
  if (mt == 2 && nt == 2) _tile_stored(3, t + 16 * 32 + 16, 128);
}

/* ---- AVX512-BF16 --------------------------------------------------------------------------- */

#if defined(__clang__)
#define BF16_BEGIN                                                                                            \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma\"))), apply_to = function)")
#define BF16_END _Pragma("clang attribute pop")
#else
#define BF16_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma\")")
#define BF16_END _Pragma("GCC pop_options")
#endif

/* where a block's sums go: out = cin (if any) + t + bias_n[j] + bias_m[i], to float32 cf or
 * bfloat16 cb */
typedef struct {
  const float *cin;
  int64_t ldin;
  const float *bias_n, *bias_m;
  float *cf;
  uint16_t *cb;
  int64_t ldo;
} epi_t;

BF16_BEGIN

static int64_t strip_gather(const uint16_t *src0, int64_t bj, int64_t kpf, uint32_t *d) {
  const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                         _mm512_set1_epi32((int)(bj / 2)));
  const int *base = (const int *)(const void *)src0;
  for (int64_t kp = 0; kp < kpf; kp++) _mm512_storeu_si512((void *)(d + kp * 16), _mm512_i32gather_epi32(idx, base + kp, 4));
  return kpf;
}

/* rows [i0, i0 + mr) x columns [j0, j0 + nc) of C from t (row stride ldt, full 16-lane vectors) */
static void epilogue(const epi_t *e, const float *t, int64_t ldt, int64_t i0, int64_t j0, int64_t mr, int64_t nc) {
  for (int64_t r = 0; r < mr; r++) {
    const int64_t i = i0 + r;
    const __m512 bm = e->bias_m ? _mm512_set1_ps(e->bias_m[i]) : _mm512_setzero_ps();
    for (int64_t c = 0; c < nc; c += 16) {
      const __mmask16 m = nc - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nc - c)) - 1u);
      const int64_t j = j0 + c;
      __m512 v = _mm512_loadu_ps(t + r * ldt + c);
      if (e->cin) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, e->cin + i * e->ldin + j), v);
      if (e->bias_n) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, e->bias_n + j));
      if (e->bias_m) v = _mm512_add_ps(v, bm);
      if (e->cf) _mm512_mask_storeu_ps(e->cf + i * e->ldo + j, m, v);
      else _mm256_mask_storeu_epi16(e->cb + i * e->ldo + j, m, cpu_bf16_pack16(v));
    }
  }
}

/* t[MR][64] = A panel (MR rows of k-pairs) times NV strips of B, over KP k-pairs.  A macro so NV is
 * a literal and the 6 x NV accumulators stay in registers (as gemm_avx512.c's micro-kernels). */
#define UKR(NV)                                                                                              \
  static void ukr_bf16_##NV(int64_t KP, const uint32_t *restrict Ap, const uint32_t *restrict Bp, int64_t bs, \
                            float *restrict t) {                                                             \
    __m512 c[MR][NV];                                                                                        \
    _Pragma("GCC unroll 6") for (int i = 0; i < MR; i++)                                                     \
      _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) c[i][v] = _mm512_setzero_ps();                    \
    for (int64_t kp = 0; kp < KP; kp++) {                                                                    \
      __m512bh b[NV];                                                                                        \
      _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                                   \
        b[v] = (__m512bh)_mm512_loadu_si512((const void *)(Bp + v * bs + kp * 16));                          \
      _Pragma("GCC unroll 6") for (int i = 0; i < MR; i++) {                                                 \
        const __m512bh a = (__m512bh)_mm512_set1_epi32((int)Ap[kp * MR + i]);                               \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) c[i][v] = _mm512_dpbf16_ps(c[i][v], a, b[v]);   \
      }                                                                                                      \
    }                                                                                                        \
    _Pragma("GCC unroll 6") for (int i = 0; i < MR; i++)                                                     \
      _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) _mm512_storeu_ps(t + i * 64 + 16 * v, c[i][v]);   \
  }
UKR(1)
UKR(2)
UKR(3)
UKR(4)
typedef void (*ukr_fn)(int64_t, const uint32_t *, const uint32_t *, int64_t, float *);
static const ukr_fn ukr_bf16[4] = {ukr_bf16_1, ukr_bf16_2, ukr_bf16_3, ukr_bf16_4};

/* one tile: rows [i0, i1) x columns [j0, j1) (j0 a multiple of 16) over the packed B block; ap
 * holds the tile's packed A rows, packed here when pack is set */
static void run_tile(const cpu_gemm_bf16_args *g, int amx, const epi_t *e, int64_t i0, int64_t i1, int64_t j0,
                     int64_t j1, int64_t k0, int64_t kc, int64_t KP, const uint32_t *Bp, void *ap, int pack) {
  const int64_t m = i1 - i0, bs = KP * 16;
  if (amx) {
    const int64_t kpad = 2 * KP, mpad = (m + 15) / 16 * 16;
    float t[32 * 32] __attribute__((aligned(64)));
    if (pack) pack_a_rows(g, i0, m, mpad, k0, kc, kpad, ap);
    for (int64_t j = j0; j < j1; j += 32) {
      const int nt = j1 - j > 16 ? 2 : 1;
      for (int64_t i = 0; i < m; i += 32) {
        const int mt = m - i > 16 ? 2 : 1;
        amx_block(mt, nt, KP / 16, (const uint16_t *)ap + i * kpad, kpad * 2, Bp + (j / 16) * bs, bs, t);
        epilogue(e, t, 32, i0 + i, j, m - i < 32 ? m - i : 32, j1 - j < 32 ? j1 - j : 32);
      }
    }
    return;
  }
  float t[MR * 64] __attribute__((aligned(64)));
  if (pack) pack_a_pairs(g, i0, m, k0, kc, KP, ap);
  for (int64_t j = j0; j < j1; j += 64) {
    const int64_t nc = j1 - j < 64 ? j1 - j : 64;
    const int nv = (int)((nc + 15) / 16);
    for (int64_t p = 0; p * MR < m; p++) {
      ukr_bf16[nv - 1](KP, (const uint32_t *)ap + p * KP * MR, Bp + (j / 16) * bs, bs, t);
      epilogue(e, t, 64, i0 + p * MR, j, m - p * MR < MR ? m - p * MR : MR, nc);
    }
  }
}

BF16_END

/* ---- driver -------------------------------------------------------------------------------- */

/* the packed A of rows [i0, ...) inside a whole packed A (both layouts keep row panels in order) */
static void *a_at(void *Aall, int amx, int64_t i0, int64_t KP) {
  return amx ? (void *)((uint16_t *)Aall + i0 * 2 * KP) : (void *)((uint32_t *)Aall + i0 * KP);
}

int cpu_gemm_bf16(const cpu_gemm_bf16_args *g) {
  if (g->M <= 0 || g->N <= 0) return DDPM_OK;
  const int path = cpu_bf16_path();
  if (g->K <= 0 || path == CPU_BF16_GENERIC) return gemm_generic(g);
  const int amx = path == CPU_BF16_AMX;
  const int64_t M = g->M, N = g->N, K = g->K;
  const int64_t nkb = (K + KC - 1) / KC, kcmax = K < KC ? K : KC;
  const int64_t KPmax = amx ? (kcmax + 31) / 32 * 16 : (kcmax + 1) / 2, ns = (N + 15) / 16;
  /* rows padded to whole panels: 32 (two AMX tiles) or MR */
  const int64_t Mpad = amx ? (M + 31) / 32 * 32 : (M + MR - 1) / MR * MR;
  uint32_t *Bp = scratch(0, sizeof(uint32_t) * (size_t)(ns * KPmax * 16));
  float *T = NULL;
  if (!g->C && nkb > 1) T = scratch(2, sizeof(float) * (size_t)(M * N));
  int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if ((double)M * (double)N * (double)K < 2e6) nt = 1;
  /* A packed once per call (not once per tile) when it is small or the call has one thread (then
   * each tile would pack its own rows anyway), and reusable across calls (a_same) */
  void *Aall = NULL;
  const size_t Ab = sizeof(uint32_t) * (size_t)(Mpad * KPmax);
  const bool whole_a = (M <= 1024 || nt == 1) && Ab <= ((size_t)4 << 20);
  if (whole_a) Aall = scratch(3, Ab);
  if (!Bp || (!g->C && nkb > 1 && !T) || (whole_a && !Aall))
    return DDPM_FAIL(DDPM_ERR_OOM, "bfloat16 gemm: out of memory for the packed [%lld, %lld] operands",
                     (long long)kcmax, (long long)N);
  const bool reuse_a = whole_a && nkb == 1 && g->a_same && a_key.A == g->A && a_key.ai == g->ai &&
                       a_key.ak == g->ak && a_key.M == M && a_key.K == K && a_key.path == path;
  a_key.A = whole_a && nkb == 1 ? g->A : NULL;
  a_key.ai = g->ai;
  a_key.ak = g->ak;
  a_key.M = M;
  a_key.K = K;
  a_key.path = path;
  /* tiles: up to 96 (AVX) or 64 (AMX) rows by up to 512 columns, halved until each thread gets two */
  const int64_t unit = amx ? 32 : MR;
  int64_t MB = amx ? 64 : 16 * MR, NB = N <= 512 ? (N + 63) / 64 * 64 : 256;
  int64_t ntm = (M + MB - 1) / MB, ntn = (N + NB - 1) / NB;
  while (ntm * ntn < 2 * nt && MB > unit) {
    MB = (MB / 2 + unit - 1) / unit * unit;
    ntm = (M + MB - 1) / MB;
  }
  while (ntm * ntn < 2 * nt && NB > 64) {
    NB /= 2;
    ntn = (N + NB - 1) / NB;
  }
  const size_t apb = whole_a ? 0
                     : amx ? sizeof(uint16_t) * (size_t)(MB * 2 * KPmax)
                           : sizeof(uint32_t) * (size_t)((MB + MR - 1) / MR * MR * KPmax);
  const size_t rowb = !g->brow ? 0 : g->brow_is_k ? sizeof(uint16_t) * (size_t)(2 * ns * 16)
                                                  : sizeof(uint16_t) * (size_t)(16 * K);
  int failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    void *ap = apb ? scratch(1, apb) : NULL;
    uint16_t *rows = rowb ? scratch(4, rowb) : NULL;
    const bool ok = (!apb || ap) && (!rowb || rows);
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
    if (amx && ok) amx_config(); /* tile configuration is per thread */
    for (int64_t kb = 0; kb < nkb; kb++) {
      const int64_t k0 = kb * KC, kc = K - k0 < KC ? K - k0 : KC;
      const int64_t KP = amx ? (kc + 31) / 32 * 16 : (kc + 1) / 2;
      if (whole_a && !reuse_a) {
        const int64_t pr = amx ? 32 : MR, np = Mpad / pr;
#pragma omp for schedule(static) nowait
        for (int64_t p = 0; p < np; p++) {
          const int64_t i0 = p * pr, m = M - i0 < pr ? M - i0 : pr;
          if (amx) pack_a_rows(g, i0, m, pr, k0, kc, 2 * KP, a_at(Aall, amx, i0, KP));
          else pack_a_pairs(g, i0, m, k0, kc, KP, a_at(Aall, amx, i0, KP));
        }
      }
      if (!g->brow) {
#pragma omp for schedule(static)
        for (int64_t s = 0; s < ns; s++) pack_b(g, k0, kc, KP, s, Bp);
      } else if (g->brow_is_k) {
        const int64_t nch = 8, per = (KP + nch - 1) / nch;
#pragma omp for schedule(static)
        for (int64_t ch = 0; ch < nch; ch++) {
          const int64_t kp0 = ch * per, kp1 = kp0 + per < KP ? kp0 + per : KP;
          if (rows && kp0 < kp1) pack_b_rows_k(g, k0, kc, KP, kp0, kp1, ns, Bp, rows);
        }
      } else {
#pragma omp for schedule(static)
        for (int64_t s = 0; s < ns; s++)
          if (rows) pack_b_rows_j(g, k0, kc, KP, s, Bp, rows);
      }
      epi_t e = {0};
      if (kb == 0) {
        e.cin = g->accumulate && g->C ? g->C : NULL;
        e.ldin = g->ldc;
        e.bias_n = g->bias_n;
        e.bias_m = g->bias_m;
      } else {
        e.cin = T ? T : g->C;
        e.ldin = T ? N : g->ldc;
      }
      if (T && kb < nkb - 1) {
        e.cf = T;
        e.ldo = N;
      } else {
        e.cf = g->C;
        e.cb = g->Cb;
        e.ldo = g->ldc;
      }
#pragma omp for schedule(dynamic, 1)
      for (int64_t t = 0; t < ntm * ntn; t++) {
        if (!ok) continue;
        const int64_t i0 = (t / ntn) * MB, j0 = (t % ntn) * NB;
        run_tile(g, amx, &e, i0, i0 + MB < M ? i0 + MB : M, j0, j0 + NB < N ? j0 + NB : N, k0, kc, KP, Bp,
                 whole_a ? a_at(Aall, amx, i0, KP) : ap, !whole_a);
      }
    }
    if (amx && ok) amx_release();
  }
  if (failed) a_key.A = NULL;
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "bfloat16 gemm: out of memory for a packed A block or rows") : DDPM_OK;
}
