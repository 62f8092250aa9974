/* dtype.c: dtype names, sizes, promotion, and element conversion (incl. IEEE half). */
#include "internal.h"
#include <math.h>

static const char *names[8] = {"float32", "float64", "float16", "bfloat16",
                               "int64",   "int32",   "uint8",   "bool"};

const char *ddpm_dname(int dtype) { return ddpm_valid_dtype(dtype) ? names[dtype] : "invalid-dtype"; }
const char *ddpm_dtype_name(int dtype) { return ddpm_dname(dtype); }
int ddpm_dtype_size(int dtype) { return ddpm_dsize(dtype); }
int ddpm_dtype_is_floating(int dtype) { return ddpm_is_float(dtype); }

/* PyTorch's promotion lattice for tensor-tensor ops: bool < uint8 < int32 < int64 < floats;
 * among floats the wider wins, and float16 with bfloat16 gives float32. */
int ddpm_promote_types(int a, int b) {
  if (!ddpm_valid_dtype(a) || !ddpm_valid_dtype(b)) return -1;
  if (a == b) return a;
  static const int rank[8] = {/*f32*/ 12, /*f64*/ 13, /*f16*/ 10, /*bf16*/ 11,
                              /*i64*/ 4,  /*i32*/ 3,  /*u8*/ 2,   /*bool*/ 1};
  if ((a == DDPM_FLOAT16 && b == DDPM_BFLOAT16) || (a == DDPM_BFLOAT16 && b == DDPM_FLOAT16))
    return DDPM_FLOAT32;
  return rank[a] >= rank[b] ? a : b;
}

float ddpm_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: renormalise */
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) {
        man <<= 1;
        exp--;
      }
      man &= 0x3ff;
      u = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t ddpm_f32_to_f16(float f) { /* round to nearest even */
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);      /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);     /* overflow -> inf */
  if (a < 0x38800000u) {                                        /* subnormal or zero */
    if (a < 0x33000000u) return (uint16_t)sign;
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    int shift = 126 - (int)e; /* 14..24 */
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = ((a >> 13) - (112u << 10));
  uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
  return (uint16_t)(sign | r);
}

double ddpm_load_as_double(const void *p, int dtype) {
  switch (dtype) {
  case DDPM_FLOAT32: return *(const float *)p;
  case DDPM_FLOAT64: return *(const double *)p;
  case DDPM_FLOAT16: return ddpm_f16_to_f32(*(const uint16_t *)p);
  case DDPM_BFLOAT16: return ddpm_bf16_to_f32(*(const uint16_t *)p);
  case DDPM_INT64: return (double)*(const int64_t *)p;
  case DDPM_INT32: return *(const int32_t *)p;
  case DDPM_UINT8: return *(const uint8_t *)p;
  case DDPM_BOOL: return *(const uint8_t *)p ? 1.0 : 0.0;
  }
  return 0;
}

void ddpm_store_from_double(void *p, int dtype, double v) {
  switch (dtype) {
  case DDPM_FLOAT32: *(float *)p = (float)v; break;
  case DDPM_FLOAT64: *(double *)p = v; break;
  case DDPM_FLOAT16: *(uint16_t *)p = ddpm_f32_to_f16((float)v); break;
  case DDPM_BFLOAT16: *(uint16_t *)p = ddpm_f32_to_bf16((float)v); break;
  case DDPM_INT64: *(int64_t *)p = isfinite(v) ? (int64_t)v : 0; break;
  case DDPM_INT32: *(int32_t *)p = isfinite(v) ? (int32_t)(int64_t)v : 0; break;
  case DDPM_UINT8: *(uint8_t *)p = isfinite(v) ? (uint8_t)(int64_t)v : 0; break;
  case DDPM_BOOL: *(uint8_t *)p = v != 0; break;
  }
}
