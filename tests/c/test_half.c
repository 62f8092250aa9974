/* test_half.c: float16 and bfloat16 conversions through the public API against independent
 * codecs: every one of the 65536 patterns decoded, round-to-nearest-even on encode (halfway
 * cases, subnormals, overflow to inf, NaN), and round trips. */
#include "tref.h"

/* Convert n raw values of dtype `from` to dtype `to` with ddpm_to, returning the raw bytes. */
static int convert_bytes(const void *src, int64_t n, int from, int to, void *dst) {
  ddpm_tensor *a = NULL, *b = NULL;
  int st = ddpm_from_bytes(&a, src, n * ddpm_dtype_size(from), 1, &n, from, DDPM_CPU);
  if (!st) st = ddpm_to(&b, a, to, DDPM_CPU);
  if (!st) st = ddpm_tensor_to_bytes(b, dst, n * ddpm_dtype_size(to));
  ddpm_tensor_release(a);
  ddpm_tensor_release(b);
  return st;
}

static int same_float(float got, double want) {
  if (want != want) return got != got;
  return (double)got == want && !!signbit(got) == !!signbit(want);
}

static void test_decode_all(void) {
  enum { N = 65536 };
  static uint16_t pat[N];
  static float out[N];
  for (int i = 0; i < N; i++) pat[i] = (uint16_t)i;
  for (int half = 0; half < 2; half++) {
    int dt = half ? DDPM_BFLOAT16 : DDPM_FLOAT16;
    CHECK_OK(convert_bytes(pat, N, dt, DDPM_FLOAT32, out));
    int bad = 0;
    for (int i = 0; i < N; i++) {
      double want = half ? ref_bf16_decode(pat[i]) : ref_f16_decode(pat[i]);
      if (!same_float(out[i], want) && bad++ < 3)
        fprintf(stderr, "decode %s 0x%04x: got %.9g, expected %.9g\n", dt_name(dt), i, out[i], want);
    }
    CHECK_CASE(bad, "decode every %s pattern", dt_name(dt));
    /* and back: every non-NaN pattern survives a round trip exactly */
    static uint16_t back[N];
    CHECK_OK(convert_bytes(out, N, DDPM_FLOAT32, dt, back));
    bad = 0;
    for (int i = 0; i < N; i++) {
      int isnan16 = half ? ((i & 0x7f80) == 0x7f80 && (i & 0x7f)) : ((i & 0x7c00) == 0x7c00 && (i & 0x3ff));
      if (isnan16) {
        int backnan = half ? ((back[i] & 0x7f80) == 0x7f80 && (back[i] & 0x7f)) : ((back[i] & 0x7c00) == 0x7c00 && (back[i] & 0x3ff));
        if (!backnan && bad++ < 3) fprintf(stderr, "%s NaN 0x%04x came back as 0x%04x\n", dt_name(dt), i, back[i]);
      } else if (back[i] != i && bad++ < 3) {
        fprintf(stderr, "%s round trip 0x%04x -> 0x%04x\n", dt_name(dt), i, back[i]);
      }
    }
    CHECK_CASE(bad, "%s round trip through float32", dt_name(dt));
  }
}

/* float32 -> half: the exact midpoints between neighbours (ties to even), values just off the
 * midpoints, subnormals, the overflow threshold, and random bit patterns */
static void test_encode(void) {
  enum { M = 200000 };
  static float in[M];
  static uint16_t got[M];
  for (int half = 0; half < 2; half++) {
    int dt = half ? DDPM_BFLOAT16 : DDPM_FLOAT16, n = 0;
    trng r = {41 + (uint64_t)half};
    int limit = half ? 0x7f80 : 0x7c00; /* the +inf pattern */
    for (int i = 0; i + 1 < limit && n + 3 < M; i += 7) { /* neighbouring patterns i, i+1 */
      double lo = half ? ref_bf16_decode((uint16_t)i) : ref_f16_decode((uint16_t)i);
      double hi = half ? ref_bf16_decode((uint16_t)(i + 1)) : ref_f16_decode((uint16_t)(i + 1));
      float mid = (float)((lo + hi) / 2);
      in[n++] = mid;
      in[n++] = nextafterf(mid, INFINITY);
      in[n++] = -nextafterf(mid, 0);
    }
    static const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 65519.99f, 65520.0f, -65520.0f,
                                     5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, 1e-8f, 6.097555e-05f, 3.3895314e38f,
                                     3.4028235e38f, 1.0e-40f, -1.17549435e-38f, 1.0f, 1.0009766f, 1.00048828125f};
    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) in[n++] = specials[k];
    while (n < M) { /* random finite and non-finite bit patterns */
      uint32_t u = (uint32_t)trng_next(&r);
      memcpy(&in[n++], &u, 4);
    }
    CHECK_OK(convert_bytes(in, M, DDPM_FLOAT32, dt, got));
    int bad = 0;
    for (int i = 0; i < M; i++) {
      uint16_t want = half ? ref_bf16_encode(in[i]) : ref_f16_encode(in[i]);
      int wnan = half ? ((want & 0x7f80) == 0x7f80 && (want & 0x7f)) : ((want & 0x7c00) == 0x7c00 && (want & 0x3ff));
      int gnan = half ? ((got[i] & 0x7f80) == 0x7f80 && (got[i] & 0x7f)) : ((got[i] & 0x7c00) == 0x7c00 && (got[i] & 0x3ff));
      if ((wnan ? !gnan : got[i] != want) && bad++ < 5)
        fprintf(stderr, "encode %s %.9g (0x%08x): got 0x%04x, expected 0x%04x\n", dt_name(dt), in[i],
                *(uint32_t *)&in[i], got[i], want);
    }
    CHECK_CASE(bad, "encode float32 -> %s with round to nearest even", dt_name(dt));
  }
  /* float64 -> half goes through float32 first (as PyTorch's c10::Half(double) does) */
  double dv[4] = {1.0 / 3, 70000, -1e-9, 2.0009765625};
  uint16_t h[4];
  CHECK_OK(convert_bytes(dv, 4, DDPM_FLOAT64, DDPM_FLOAT16, h));
  for (int i = 0; i < 4; i++) CHECK(h[i] == ref_f16_encode((float)dv[i]));
}

/* arithmetic in half precision computes in float and rounds once per op */
static void test_half_arith(void) {
  uint16_t a[3] = {0x3c00, 0x3c01, 0x7bff}, b[3] = {0x1000, 0x3c00, 0x7bff}, o[3];
  int64_t three = 3;
  ddpm_tensor *ta = NULL, *tb = NULL, *to = NULL;
  CHECK_OK(ddpm_from_bytes(&ta, a, 6, 1, &three, DDPM_FLOAT16, DDPM_CPU));
  CHECK_OK(ddpm_from_bytes(&tb, b, 6, 1, &three, DDPM_FLOAT16, DDPM_CPU));
  CHECK_OK(ddpm_add(&to, ta, tb));
  CHECK_OK(ddpm_tensor_to_bytes(to, o, 6));
  for (int i = 0; i < 3; i++)
    CHECK(o[i] == ref_f16_encode((float)(ref_f16_decode(a[i]) + ref_f16_decode(b[i]))));
  CHECK(o[2] == 0x7c00); /* 65504 + 65504 overflows to inf */
  ddpm_tensor_release(ta);
  ddpm_tensor_release(tb);
  ddpm_tensor_release(to);
}

int main(void) {
  test_decode_all();
  test_encode();
  test_half_arith();
  return tcheck_summary("test_half");
}
