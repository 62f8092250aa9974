/* tref.h: reference helpers for the C tests: random tensors of any dtype and layout (contiguous,
 * permuted, strided slice, expanded), element access through the public API only, an
 * independent model of what each dtype stores, and naive index iteration. */
#ifndef TREF_H
#define TREF_H
#include "tcheck.h"
#include <stdint.h>
#include <stdlib.h>

static const int all_dtypes[8] = {DDPM_FLOAT32, DDPM_FLOAT64, DDPM_FLOAT16, DDPM_BFLOAT16,
                                  DDPM_INT64,   DDPM_INT32,   DDPM_UINT8,   DDPM_BOOL};
static const char *dt_name(int dt) { return ddpm_dtype_name(dt); }
static int is_fdt(int dt) { return dt <= DDPM_BFLOAT16; }

/* ---- a small deterministic generator (independent of the engine's Philox) ---------------- */
typedef struct { uint64_t s; } trng;
static uint64_t trng_next(trng *r) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return r->s * 2685821657736338717ull;
}
static double trng_u(trng *r) { return (double)(trng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

/* ---- independent half-precision codecs ------------------------------------------------------ */
static double ref_f16_decode(uint16_t h) {
  int e = (h >> 10) & 31, m = h & 1023;
  double s = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 31) return m ? NAN : s * INFINITY;
  if (e == 0) return s * ldexp((double)m, -24);
  return s * ldexp(1024.0 + m, e - 25);
}
static uint16_t ref_f16_encode(float f) { /* the compiler's IEEE conversion: round to nearest even */
  _Float16 h = (_Float16)f;
  uint16_t b;
  memcpy(&b, &h, 2);
  return b;
}
static double ref_bf16_decode(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
/* nearest bf16 by comparing the two neighbours in double; ties go to the even pattern */
static uint16_t ref_bf16_encode(float f) {
  if (f != f) return 0x7fc0;
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
  double vf = f, vl = ref_bf16_decode(lo), vh = ref_bf16_decode(hi);
  if ((lo & 0x7fff) == 0x7f7f) { /* above the largest finite bf16: overflow to inf past the midpoint */
    double mid = vl + (vl - ref_bf16_decode((uint16_t)(lo - 1))) / 2;
    if (fabs(vf) >= fabs(mid)) return (uint16_t)((lo & 0x8000) | 0x7f80);
    return lo;
  }
  if ((lo & 0x7fff) == 0x7f80) return lo; /* inf */
  double dl = fabs(vf - vl), dh = fabs(vh - vf);
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1) ? hi : lo;
}

/* What storing double v into dtype dt yields, read back as double (floats go through float
 * first, as the engine and PyTorch do; integers truncate and wrap). */
static double ref_store(int dt, double v) {
  switch (dt) {
  case DDPM_FLOAT32: return (float)v;
  case DDPM_FLOAT64: return v;
  case DDPM_FLOAT16: return ref_f16_decode(ref_f16_encode((float)v));
  case DDPM_BFLOAT16: return ref_bf16_decode(ref_bf16_encode((float)v));
  case DDPM_INT64: return isfinite(v) ? (double)(int64_t)v : 0;
  case DDPM_INT32: return isfinite(v) ? (double)(int32_t)(int64_t)v : 0;
  case DDPM_UINT8: return isfinite(v) ? (double)(uint8_t)(int64_t)v : 0;
  case DDPM_BOOL: return v != 0;
  }
  return 0;
}

/* ---- element access through the public API ---------------------------------------------------- */
static double tget(const ddpm_tensor *t, const int64_t *idx) {
  int64_t st[8];
  int nd = ddpm_tensor_strides(t, st);
  int64_t off = 0;
  for (int d = 0; d < nd; d++) off += idx[d] * st[d];
  int dt = ddpm_tensor_dtype(t);
  const char *p = (const char *)ddpm_tensor_data(t) + off * ddpm_dtype_size(dt);
  switch (dt) {
  case DDPM_FLOAT32: return *(const float *)p;
  case DDPM_FLOAT64: return *(const double *)p;
  case DDPM_FLOAT16: return ref_f16_decode(*(const uint16_t *)p);
  case DDPM_BFLOAT16: return ref_bf16_decode(*(const uint16_t *)p);
  case DDPM_INT64: return (double)*(const int64_t *)p;
  case DDPM_INT32: return *(const int32_t *)p;
  case DDPM_UINT8: return *(const uint8_t *)p;
  case DDPM_BOOL: return *(const uint8_t *)p;
  }
  return NAN;
}
/* read t at an index of a (broadcast) output of ondim dims */
static double tget_b(const ddpm_tensor *t, int ondim, const int64_t *oidx) {
  int64_t sh[8], idx[8];
  int nd = ddpm_tensor_shape(t, sh);
  for (int d = 0; d < nd; d++) {
    int od = d + ondim - nd;
    idx[d] = sh[d] == 1 ? 0 : oidx[od];
  }
  return tget(t, idx);
}
/* advance a row-major multi-index; returns 0 after the last one */
static int next_index(int nd, const int64_t *shape, int64_t *idx) {
  for (int d = nd - 1; d >= 0; d--) {
    if (++idx[d] < shape[d]) return 1;
    idx[d] = 0;
  }
  return 0;
}
static int64_t numel_of(int nd, const int64_t *shape) {
  int64_t n = 1;
  for (int d = 0; d < nd; d++) n *= shape[d];
  return n;
}
static int same_shape_as(const ddpm_tensor *t, int nd, const int64_t *shape) {
  int64_t sh[8];
  if (ddpm_tensor_ndim(t) != nd) return 0;
  ddpm_tensor_shape(t, sh);
  for (int d = 0; d < nd; d++)
    if (sh[d] != shape[d]) return 0;
  return 1;
}

/* ---- random tensors in several layouts ----------------------------------------------------------- */
enum { LAYOUT_CONTIG, LAYOUT_PERMUTED, LAYOUT_SLICED, LAYOUT_EXPANDED, LAYOUT_COUNT };
static const char *layout_name[LAYOUT_COUNT] = {"contiguous", "permuted", "sliced", "expanded"};

static double rand_value(trng *r, int dt, double lo, double hi) {
  double v = lo + (hi - lo) * trng_u(r);
  if (dt == DDPM_BOOL) return trng_u(r) < 0.5;
  if (!is_fdt(dt)) {
    v = floor(v + 0.5);
    if (dt == DDPM_UINT8 && v < 0) v = -v;
  }
  return v;
}

static ddpm_tensor *fresh(int dt, int nd, const int64_t *shape, double lo, double hi, trng *r) {
  int64_t n = numel_of(nd, shape);
  double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) v[i] = rand_value(r, dt, lo, hi);
  ddpm_tensor *t = NULL;
  CHECK_OK(ddpm_from_doubles(&t, v, nd, shape, dt, DDPM_CPU));
  free(v);
  return t;
}

/* A tensor of the given logical shape with random values whose memory layout is `layout`. */
static ddpm_tensor *trand(int dt, int nd, const int64_t *shape, double lo, double hi, trng *r, int layout) {
  int64_t s2[8], perm[8];
  ddpm_tensor *base = NULL, *v = NULL;
  if (nd == 0) layout = LAYOUT_CONTIG;
  switch (layout) {
  case LAYOUT_PERMUTED: /* stored with dims reversed, viewed back */
    for (int d = 0; d < nd; d++) {
      s2[d] = shape[nd - 1 - d];
      perm[d] = nd - 1 - d;
    }
    base = fresh(dt, nd, s2, lo, hi, r);
    CHECK_OK(ddpm_permute(&v, base, nd, perm));
    break;
  case LAYOUT_SLICED: /* every other element of a wider last dim, starting at 1 */
    memcpy(s2, shape, sizeof(int64_t) * (size_t)nd);
    s2[nd - 1] = 2 * shape[nd - 1] + 1;
    base = fresh(dt, nd, s2, lo, hi, r);
    CHECK_OK(ddpm_slice(&v, base, nd - 1, 1, s2[nd - 1], 2));
    break;
  case LAYOUT_EXPANDED: /* the first dim broadcast from size 1 */
    memcpy(s2, shape, sizeof(int64_t) * (size_t)nd);
    s2[0] = 1;
    base = fresh(dt, nd, s2, lo, hi, r);
    CHECK_OK(ddpm_expand(&v, base, nd, shape));
    break;
  default: return fresh(dt, nd, shape, lo, hi, r);
  }
  ddpm_tensor_release(base);
  return v;
}

/* |got - want| within a tolerance suited to the dtype the value was stored in */
static double dtype_tol(int dt, double want) {
  double a = fabs(want);
  switch (dt) {
  case DDPM_FLOAT64: return 1e-12 * (1 + a);
  case DDPM_FLOAT32: return 4e-6 * (1 + a);
  case DDPM_FLOAT16: return 1.5e-3 * a + 1e-4;
  case DDPM_BFLOAT16: return 1.2e-2 * a + 1e-3;
  default: return 0;
  }
}
static int close_enough(double got, double want, double tol) {
  if (want != want) return got != got;
  if (isinf(want)) return got == want;
  return fabs(got - want) <= tol;
}

/* One check per case: count the mismatching elements (printing the first few) and pass the
 * case only when there are none, so the totals count cases rather than elements. */
#define ELEM(bad, got, want, tol, ...)                                                          \
  do {                                                                                          \
    double g_ = (got), w_ = (want);                                                             \
    if (!close_enough(g_, w_, (tol)) && (bad)++ < 3) {                                          \
      fprintf(stderr, "%s:%d: got %.9g, expected %.9g: ", __FILE__, __LINE__, g_, w_);          \
      fprintf(stderr, __VA_ARGS__);                                                             \
      fprintf(stderr, "\n");                                                                    \
    }                                                                                           \
  } while (0)
#define CHECK_CASE(bad, ...)                                                                    \
  do {                                                                                          \
    if ((bad) == 0) tc_pass++;                                                                  \
    else {                                                                                      \
      tc_fail++;                                                                                \
      fprintf(stderr, "%s:%d: %d mismatching elements in case: ", __FILE__, __LINE__, (int)(bad)); \
      fprintf(stderr, __VA_ARGS__);                                                             \
      fprintf(stderr, "\n");                                                                    \
    }                                                                                           \
  } while (0)

#endif
