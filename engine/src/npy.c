/* npy.c: NumPy .npy files.  Reading: format versions 1-3, little-endian (or byte-order-free)
 * bool/integer/float dtypes in C order, memory-mapped and zero-copy where the engine has the dtype
 * (int8/int16/uint16/uint32 are widened).  Writing reproduces numpy's bytes exactly (numpy >= 1.23
 * header: sorted dict repr, 21-digit growth padding, 64-byte alignment, version 1.0 when it fits). */
#include "formats.h"
#include <stdio.h>

#define NPY_GROWTH_DIGITS 21
#define NPY_ALIGN 64

enum { NPY_F4, NPY_F8, NPY_F2, NPY_I8, NPY_I4, NPY_U1, NPY_B1, NPY_I1, NPY_I2, NPY_U2, NPY_U4, NPY_NTYPES };
static const char npy_kind[NPY_NTYPES] = {'f', 'f', 'f', 'i', 'i', 'u', 'b', 'i', 'i', 'u', 'u'};
static const int npy_size[NPY_NTYPES] = {4, 8, 2, 8, 4, 1, 1, 1, 2, 2, 4};
static const int npy_engine[NPY_NTYPES] = {DDPM_FLOAT32, DDPM_FLOAT64, DDPM_FLOAT16, DDPM_INT64, DDPM_INT32, DDPM_UINT8,
                                           DDPM_BOOL,    DDPM_INT32,   DDPM_INT32,   DDPM_INT32, DDPM_INT64};

#define NPY_FORM "expected a .npy file: magic \\x93NUMPY, version 1.0/2.0/3.0, a header dict {'descr', 'fortran_order', 'shape'}, then the data"

typedef struct {
  const char *s;
  size_t n, pos;
} lit;

static void lws(lit *p) {
  while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
    p->pos++;
}
static bool lch(lit *p, char c) {
  lws(p);
  if (p->pos < p->n && p->s[p->pos] == c) {
    p->pos++;
    return true;
  }
  return false;
}
/* A Python string literal in ' or " without escapes (all numpy writes). */
static bool lstr(lit *p, char *out, size_t cap) {
  lws(p);
  if (p->pos >= p->n || (p->s[p->pos] != '\'' && p->s[p->pos] != '"')) return false;
  char q = p->s[p->pos++];
  size_t k = 0;
  while (p->pos < p->n && p->s[p->pos] != q) {
    if (p->s[p->pos] == '\\' || k + 1 >= cap) return false;
    out[k++] = p->s[p->pos++];
  }
  if (p->pos >= p->n) return false;
  p->pos++;
  out[k] = 0;
  return true;
}
static bool lword(lit *p, const char *w) {
  lws(p);
  size_t n = strlen(w);
  if (p->n - p->pos >= n && memcmp(p->s + p->pos, w, n) == 0) {
    p->pos += n;
    return true;
  }
  return false;
}
/* non-negative integer literal (an 'L' suffix from Python 2 writers is accepted) */
static bool lint(lit *p, int64_t *out) {
  lws(p);
  size_t start = p->pos;
  uint64_t v = 0;
  while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
    if (v > (uint64_t)INT64_MAX / 10) return false;
    v = v * 10 + (uint64_t)(p->s[p->pos++] - '0');
    if (v > (uint64_t)INT64_MAX) return false;
  }
  if (p->pos == start) return false;
  if (p->pos < p->n && p->s[p->pos] == 'L') p->pos++;
  *out = (int64_t)v;
  return true;
}

static int npy_bad(const char *path, const char *what) {
  return DDPM_FAIL(DDPM_ERR_FORMAT, "load_npy: '%s': %s (%s)", path, what, NPY_FORM);
}

/* Parse descr like '<f4' into a type id; *msg explains a refusal. */
static int parse_descr(const char *d, int *type, const char **msg) {
  char order = '=';
  if (*d == '<' || *d == '>' || *d == '|' || *d == '=') order = *d++;
  char kind = d[0];
  int size = 0;
  if (kind && d[1] >= '1' && d[1] <= '9' && d[2] == 0) size = d[1] - '0';
  *type = -1;
  for (int k = 0; k < NPY_NTYPES; k++)
    if (npy_kind[k] == kind && npy_size[k] == size) *type = k;
  if (*type < 0) {
    if (kind == 'O') *msg = "object arrays (pickled Python objects) are not supported";
    else if (kind == 'u' && size == 8) *msg = "uint64 is not supported (no lossless ddpm dtype; convert with arr.astype('<i8'))";
    else if (kind == 'c') *msg = "complex dtypes are not supported";
    else *msg = "unsupported dtype (supported: b1, u1, i1, i2, u2, i4, u4, i8, f2, f4, f8)";
    return -1;
  }
  if (order == '>' && size > 1) {
    *msg = "big-endian data is not supported (convert with arr.astype(arr.dtype.newbyteorder('<')))";
    return -1;
  }
  return 0;
}

static void widen(void *dst, const unsigned char *src, int type, uint64_t numel) {
  for (uint64_t k = 0; k < numel; k++) {
    const unsigned char *p = src + k * (uint64_t)npy_size[type];
    switch (type) {
    case NPY_I1: ((int32_t *)dst)[k] = (int8_t)p[0]; break;
    case NPY_I2: ((int32_t *)dst)[k] = (int16_t)(uint16_t)(p[0] | (p[1] << 8)); break;
    case NPY_U2: ((int32_t *)dst)[k] = (uint16_t)(p[0] | (p[1] << 8)); break;
    case NPY_U4: ((int64_t *)dst)[k] = (int64_t)((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24)); break;
    }
  }
}

int ddpm_npy_load(ddpm_tensor **out, const char *path) {
  if (!out) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "load_npy: out is NULL");
  *out = NULL;
  ddpm_fmap *m = NULL;
  DDPM_TRY(ddpm_fmap_open(&m, path, "load_npy"));
  const unsigned char *b = m->base;
  size_t size = m->len;
  int st = DDPM_OK;
  char msg[300];
  if (size < 10 || memcmp(b, "\x93NUMPY", 6) != 0) {
    st = npy_bad(path, size < 10 ? "the file is too short for a .npy header" : "the magic string \\x93NUMPY is missing");
    goto done;
  }
  int major = b[6], minor = b[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    snprintf(msg, sizeof msg, "format version %d.%d is not supported", major, minor);
    st = npy_bad(path, msg);
    goto done;
  }
  size_t start = major == 1 ? 10 : 12;
  if (size < start) {
    st = npy_bad(path, "the file is too short for a .npy header");
    goto done;
  }
  size_t hlen = major == 1 ? (size_t)(b[8] | (b[9] << 8))
                           : (size_t)b[8] | ((size_t)b[9] << 8) | ((size_t)b[10] << 16) | ((size_t)b[11] << 24);
  if (hlen > size - start) {
    snprintf(msg, sizeof msg, "the header length %zu exceeds the file size of %zu bytes (truncated?)", hlen, size);
    st = npy_bad(path, msg);
    goto done;
  }
  lit p = {(const char *)b + start, hlen, 0};
  char descr[32] = {0};
  int64_t shape[DDPM_MAX_DIMS];
  int ndim = -1, fortran = -1, type = -1;
  bool have_descr = false;
  if (!lch(&p, '{')) {
    st = npy_bad(path, "the header is not a Python dict literal");
    goto done;
  }
  while (!lch(&p, '}')) {
    char key[32];
    if (!lstr(&p, key, sizeof key) || !lch(&p, ':')) {
      st = npy_bad(path, "malformed header dict (expected 'key': value)");
      goto done;
    }
    if (strcmp(key, "descr") == 0 && !have_descr) {
      if (!lstr(&p, descr, sizeof descr)) {
        st = npy_bad(path, "'descr' must be a dtype string such as '<f4' (structured dtypes are not supported)");
        goto done;
      }
      have_descr = true;
    } else if (strcmp(key, "fortran_order") == 0 && fortran < 0) {
      if (lword(&p, "True")) fortran = 1;
      else if (lword(&p, "False")) fortran = 0;
      else {
        st = npy_bad(path, "'fortran_order' must be True or False");
        goto done;
      }
    } else if (strcmp(key, "shape") == 0 && ndim < 0) {
      if (!lch(&p, '(')) {
        st = npy_bad(path, "'shape' must be a tuple of integers");
        goto done;
      }
      ndim = 0;
      while (!lch(&p, ')')) {
        int64_t v;
        if (ndim >= DDPM_MAX_DIMS) {
          st = DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "load_npy: '%s': more than %d dims; ddpm tensors have at most %d", path,
                         DDPM_MAX_DIMS, DDPM_MAX_DIMS);
          goto done;
        }
        if (!lint(&p, &v)) {
          st = npy_bad(path, "'shape' must be a tuple of non-negative integers");
          goto done;
        }
        shape[ndim++] = v;
        if (!lch(&p, ',')) {
          if (!lch(&p, ')')) {
            st = npy_bad(path, "'shape' tuple is malformed");
            goto done;
          }
          break;
        }
      }
    } else {
      snprintf(msg, sizeof msg, "unexpected or repeated header key '%s'", key);
      st = npy_bad(path, msg);
      goto done;
    }
    if (!lch(&p, ',')) {
      if (!lch(&p, '}')) {
        st = npy_bad(path, "malformed header dict (expected ',' or '}')");
        goto done;
      }
      break;
    }
  }
  lws(&p);
  if (p.pos != p.n || !have_descr || fortran < 0 || ndim < 0) {
    st = npy_bad(path, p.pos != p.n ? "trailing characters after the header dict"
                                    : "the header lacks one of 'descr', 'fortran_order', 'shape'");
    goto done;
  }
  const char *why = NULL;
  if (parse_descr(descr, &type, &why)) {
    st = DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "load_npy: '%s': dtype '%s': %s", path, descr, why);
    goto done;
  }
  int big_dims = 0;
  for (int i = 0; i < ndim; i++) big_dims += shape[i] > 1;
  if (fortran && big_dims > 1) {
    st = DDPM_FAIL(DDPM_ERR_UNSUPPORTED,
                   "load_npy: '%s': Fortran-order arrays are not supported (save a C-order array: np.ascontiguousarray)", path);
    goto done;
  }
  uint64_t numel = 1, nbytes;
  bool ovf = false;
  for (int i = 0; i < ndim; i++) ovf |= __builtin_mul_overflow(numel, (uint64_t)shape[i], &numel);
  ovf |= __builtin_mul_overflow(numel, (uint64_t)npy_size[type], &nbytes);
  size_t data_off = start + hlen;
  if (ovf || nbytes != size - data_off) {
    if (ovf) snprintf(msg, sizeof msg, "shape %s overflows", ddpm_fmt_shape(ndim, shape));
    else snprintf(msg, sizeof msg, "shape %s of '%s' needs %llu data bytes but the file holds %zu (%s)",
                  ddpm_fmt_shape(ndim, shape), descr, (unsigned long long)nbytes, size - data_off,
                  nbytes > size - data_off ? "truncated" : "trailing bytes");
    st = npy_bad(path, msg);
    goto done;
  }
  const unsigned char *data = b + data_off;
  int dtype = npy_engine[type];
  if (type >= NPY_I1) {
    ddpm_tensor *t = NULL;
    st = ddpm_tensor_new(&t, ndim, shape, dtype, DDPM_CPU);
    if (!st) {
      widen(t->storage->data, data, type, numel);
      *out = t;
    }
  } else if ((uintptr_t)data % (uintptr_t)npy_size[type] == 0) {
    st = ddpm_fmap_tensor(out, m, (void *)data, dtype, ndim, shape);
  } else {
    st = ddpm_tensor_from_host(out, data, dtype, ndim, shape);
  }
done:
  ddpm_fmap_release(m);
  return st;
}

/* ---- writing, byte-identical to numpy.save ------------------------------------------------------ */
int ddpm_npy_save(const char *path, ddpm_tensor *t) {
  if (!t) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "save_npy: tensor is NULL");
  if (!path) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "save_npy: path is NULL");
  static const char *descr[8] = {"<f4", "<f8", "<f2", NULL, "<i8", "<i4", "|u1", "|b1"};
  if (!descr[t->dtype])
    return DDPM_FAIL(DDPM_ERR_DTYPE, "save_npy: numpy has no %s dtype; convert first (e.g. t:float())", ddpm_dname(t->dtype));
  char h[512];
  int n = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr[t->dtype]);
  for (int i = 0; i < t->ndim; i++) n += snprintf(h + n, sizeof h - (size_t)n, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  n += snprintf(h + n, sizeof h - (size_t)n, "%s), }", t->ndim == 1 ? "," : "");
  if (t->ndim > 0) {
    /* numpy leaves room to grow the first axis in place */
    char first[32];
    int digits = snprintf(first, sizeof first, "%lld", (long long)t->shape[0]);
    for (int k = digits; k < NPY_GROWTH_DIGITS; k++) h[n++] = ' ';
  }
  size_t hlen = (size_t)n + 1; /* + the final newline */
  size_t pad = NPY_ALIGN - ((8 + 2 + hlen) % NPY_ALIGN);
  for (size_t k = 0; k < pad; k++) h[n++] = ' ';
  h[n++] = '\n';
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(n & 0xff), (unsigned char)(n >> 8)};
  ddpm_tensor *c = NULL;
  DDPM_TRY(ddpm_host_contiguous(&c, t));
  ddpm_afile f;
  int st = ddpm_afile_open(&f, path, "save_npy");
  if (!st) {
    st = ddpm_afile_write(&f, pre, sizeof pre);
    if (!st) st = ddpm_afile_write(&f, h, (size_t)n);
    size_t nbytes = (size_t)ddpm_tensor_numel(c) * (size_t)ddpm_dsize(c->dtype);
    if (!st && nbytes) st = ddpm_afile_write(&f, ddpm_ptr(c), nbytes);
    if (st) ddpm_afile_abort(&f);
    else st = ddpm_afile_commit(&f);
  }
  ddpm_tensor_release(c);
  return st;
}
