/* safetensors.c: read (memory-mapped, zero-copy, every header field validated before use) and
 * write (atomic, keys sorted, header padded to 8 bytes) the safetensors format:
 *   u64-LE N | N bytes of JSON {"__metadata__": {str: str}, name: {dtype, shape, data_offsets}} | data
 * Validation follows the reference implementation: the tensors tile the data section exactly (no
 * gaps, no overlaps), each byte range equals dtype size x element count, header at most 100 MB. */
#include "formats.h"
#include <stdio.h>

#define ST_MAX_HEADER 100000000ull

/* File dtypes: the engine's eight plus integer types we widen on load (lossless). */
enum { ST_F32, ST_F64, ST_F16, ST_BF16, ST_I64, ST_I32, ST_U8, ST_BOOL, ST_I8, ST_I16, ST_U16, ST_U32, ST_NTYPES };
static const char *st_names[ST_NTYPES] = {"F32", "F64", "F16", "BF16", "I64", "I32", "U8", "BOOL", "I8", "I16", "U16", "U32"};
static const int st_size[ST_NTYPES] = {4, 8, 2, 2, 8, 4, 1, 1, 1, 2, 2, 4};
/* engine dtype each file dtype loads as */
static const int st_engine[ST_NTYPES] = {DDPM_FLOAT32, DDPM_FLOAT64, DDPM_FLOAT16, DDPM_BFLOAT16, DDPM_INT64,
                                         DDPM_INT32,   DDPM_UINT8,   DDPM_BOOL,    DDPM_INT32,    DDPM_INT32,
                                         DDPM_INT32,   DDPM_INT64};
/* valid in the format, not loadable here */
static const char *st_known_unsupported[] = {"U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2",
                                              "C64", NULL};

typedef struct {
  const char *name;
  int st_dtype;
  int ndim;
  int64_t shape[DDPM_MAX_DIMS];
  uint64_t begin, end;
} st_entry;

struct ddpm_safetensors {
  ddpm_fmap *map;
  char *path;
  ddpm_json_doc *doc; /* owns the decoded names and metadata strings */
  const char *data;   /* start of the data section */
  uint64_t data_len;
  int64_t n;
  st_entry *entries;  /* sorted by name */
  int64_t nmeta;
  const ddpm_json **meta; /* sorted by key */
};

void ddpm_safetensors_close(ddpm_safetensors *f) {
  if (!f) return;
  ddpm_fmap_release(f->map);
  ddpm_json_free(f->doc);
  free(f->entries);
  free(f->meta);
  free(f->path);
  free(f);
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}
static int cmp_offset(const void *a, const void *b) {
  const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}
static int cmp_meta(const void *a, const void *b) {
  return strcmp((*(const ddpm_json *const *)a)->key, (*(const ddpm_json *const *)b)->key);
}

#define EXPECTED_FORM                                                                                     \
  "expected a safetensors file: 8-byte little-endian header length N, N bytes of JSON "                  \
  "{name: {\"dtype\", \"shape\", \"data_offsets\"}, \"__metadata__\": {str: str}}, then the tensor bytes"

static int bad(const ddpm_safetensors *f, const char *fmt, const char *a, const char *b) {
  char msg[600];
  snprintf(msg, sizeof msg, fmt, a, b);
  return DDPM_FAIL(DDPM_ERR_FORMAT, "load_safetensors: '%s': %s", f->path, msg);
}

static int parse_entry(ddpm_safetensors *f, const ddpm_json *v, st_entry *e) {
  char tmp[64];
  if (v->type != DDPM_JSON_OBJECT)
    return bad(f, "entry \"%s\" is a JSON %s, expected an object {\"dtype\", \"shape\", \"data_offsets\"}", v->key,
               ddpm_json_type_name(v->type));
  e->name = v->key;
  const ddpm_json *dt = ddpm_json_get(v, "dtype"), *sh = ddpm_json_get(v, "shape"),
                  *off = ddpm_json_get(v, "data_offsets");
  if (!dt || !sh || !off)
    return bad(f, "entry \"%s\" lacks \"%s\" (expected keys dtype, shape, data_offsets)", v->key,
               !dt ? "dtype" : !sh ? "shape" : "data_offsets");
  if (dt->type != DDPM_JSON_STRING) return bad(f, "entry \"%s\": dtype must be a string, got a JSON %s", v->key, ddpm_json_type_name(dt->type));
  e->st_dtype = -1;
  for (int k = 0; k < ST_NTYPES; k++)
    if (strcmp(dt->str, st_names[k]) == 0) e->st_dtype = k;
  if (e->st_dtype < 0) {
    for (int k = 0; st_known_unsupported[k]; k++)
      if (strcmp(dt->str, st_known_unsupported[k]) == 0)
        return DDPM_FAIL(DDPM_ERR_UNSUPPORTED,
                         "load_safetensors: '%s': tensor \"%s\" has dtype %s, which ddpm cannot hold (supported: "
                         "F32 F64 F16 BF16 I64 I32 U8 BOOL; I8 I16 U16 load as int32, U32 as int64)",
                         f->path, v->key, dt->str);
    return bad(f, "entry \"%s\" has unknown dtype \"%s\" (expected F32, F64, F16, BF16, I64, I32, U8, BOOL, ...)",
               v->key, dt->str);
  }
  if (sh->type != DDPM_JSON_ARRAY) return bad(f, "entry \"%s\": shape must be an array of integers, got a JSON %s", v->key, ddpm_json_type_name(sh->type));
  if (sh->count > DDPM_MAX_DIMS) {
    snprintf(tmp, sizeof tmp, "%lld", (long long)sh->count);
    return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "load_safetensors: '%s': tensor \"%s\" has %s dims, ddpm tensors have at most %d",
                     f->path, v->key, tmp, DDPM_MAX_DIMS);
  }
  e->ndim = (int)sh->count;
  uint64_t numel = 1;
  bool overflow = false;
  int k = 0;
  for (const ddpm_json *d = sh->child; d; d = d->next, k++) {
    int64_t x;
    if (!ddpm_json_int64(d, &x) || x < 0) return bad(f, "entry \"%s\": shape holds %s, expected non-negative integers", v->key, d->type == DDPM_JSON_NUMBER ? "a non-integral or negative number" : ddpm_json_type_name(d->type));
    e->shape[k] = x;
    if (__builtin_mul_overflow(numel, (uint64_t)x, &numel)) overflow = true;
  }
  if (off->type != DDPM_JSON_ARRAY || off->count != 2)
    return bad(f, "entry \"%s\": data_offsets must be an array of two integers [begin, end]%s", v->key, "");
  int64_t b, en;
  if (!ddpm_json_int64(off->child, &b) || !ddpm_json_int64(off->child->next, &en) || b < 0 || en < 0)
    return bad(f, "entry \"%s\": data_offsets must hold two non-negative integers [begin, end]%s", v->key, "");
  if (en < b) return bad(f, "entry \"%s\": data_offsets [begin, end] has end before begin%s", v->key, "");
  e->begin = (uint64_t)b;
  e->end = (uint64_t)en;
  if ((uint64_t)en > f->data_len) {
    char m[200];
    snprintf(m, sizeof m, "[%lld, %lld] reaches past the end of the data section (%llu bytes; file truncated?)",
             (long long)b, (long long)en, (unsigned long long)f->data_len);
    return bad(f, "entry \"%s\": data_offsets %s", v->key, m);
  }
  uint64_t nbytes;
  if (overflow || __builtin_mul_overflow(numel, (uint64_t)st_size[e->st_dtype], &nbytes) || nbytes != e->end - e->begin) {
    char m[300], cnt[40];
    if (overflow) snprintf(cnt, sizeof cnt, "an overflowing element count");
    else snprintf(cnt, sizeof cnt, "%llu elements", (unsigned long long)numel);
    snprintf(m, sizeof m, "%s%s holds %llu bytes, expected %s x %d bytes", dt->str, ddpm_fmt_shape(e->ndim, e->shape),
             (unsigned long long)(e->end - e->begin), cnt, st_size[e->st_dtype]);
    return bad(f, "entry \"%s\": %s", v->key, m);
  }
  return DDPM_OK;
}

int ddpm_safetensors_open(ddpm_safetensors **out, const char *path) {
  if (!out) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "load_safetensors: out is NULL");
  *out = NULL;
  ddpm_safetensors *f = calloc(1, sizeof *f);
  if (!f) return DDPM_FAIL(DDPM_ERR_OOM, "load_safetensors: out of memory");
  int st = ddpm_fmap_open(&f->map, path, "load_safetensors");
  if (st) {
    free(f);
    return st;
  }
  size_t n = strlen(path);
  f->path = malloc(n + 1);
  if (!f->path) {
    ddpm_safetensors_close(f);
    return DDPM_FAIL(DDPM_ERR_OOM, "load_safetensors: out of memory");
  }
  memcpy(f->path, path, n + 1);
  const unsigned char *base = f->map->base;
  uint64_t size = f->map->len;
  char num[2][32];
  if (size < 8) {
    snprintf(num[0], sizeof num[0], "%llu", (unsigned long long)size);
    st = bad(f, "the file is %s bytes, too short for the 8-byte header length (%s)", num[0], EXPECTED_FORM);
    goto fail;
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | base[i];
  if (hlen > ST_MAX_HEADER || hlen > size - 8) {
    snprintf(num[0], sizeof num[0], "%llu", (unsigned long long)hlen);
    snprintf(num[1], sizeof num[1], "%llu", (unsigned long long)size);
    st = bad(f, hlen > size - 8 ? "the header length %s exceeds the file size of %s bytes (truncated or not safetensors; " EXPECTED_FORM ")"
                                : "the header length %s is absurd (limit 100000000; file size %s; " EXPECTED_FORM ")",
             num[0], num[1]);
    goto fail;
  }
  if (hlen < 2 || base[8] != '{') {
    st = bad(f, "the header does not start with a JSON object '{' (%s)%s", EXPECTED_FORM, "");
    goto fail;
  }
  char err[200];
  if (ddpm_json_parse(&f->doc, (const char *)base + 8, hlen, err, sizeof err)) {
    st = bad(f, "the JSON header is invalid: %s%s", err, "");
    goto fail;
  }
  const ddpm_json *root = ddpm_json_root(f->doc);
  if (root->type != DDPM_JSON_OBJECT) {
    st = bad(f, "the JSON header is a %s, expected an object%s", ddpm_json_type_name(root->type), "");
    goto fail;
  }
  f->data = (const char *)base + 8 + hlen;
  f->data_len = size - 8 - hlen;
  f->entries = calloc((size_t)root->count + 1, sizeof *f->entries);
  f->meta = NULL;
  if (!f->entries) {
    st = DDPM_FAIL(DDPM_ERR_OOM, "load_safetensors: out of memory");
    goto fail;
  }
  bool seen_meta = false;
  for (const ddpm_json *v = root->child; v; v = v->next) {
    if (strcmp(v->key, "__metadata__") == 0) {
      if (seen_meta) {
        st = bad(f, "\"__metadata__\" appears twice%s%s", "", "");
        goto fail;
      }
      seen_meta = true;
      if (v->type != DDPM_JSON_OBJECT) {
        st = bad(f, "\"__metadata__\" is a JSON %s, expected an object of strings%s", ddpm_json_type_name(v->type), "");
        goto fail;
      }
      f->meta = calloc((size_t)v->count + 1, sizeof *f->meta);
      if (!f->meta) {
        st = DDPM_FAIL(DDPM_ERR_OOM, "load_safetensors: out of memory");
        goto fail;
      }
      for (const ddpm_json *m = v->child; m; m = m->next) {
        if (m->type != DDPM_JSON_STRING) {
          st = bad(f, "\"__metadata__\" value of \"%s\" is a JSON %s, expected a string", m->key, ddpm_json_type_name(m->type));
          goto fail;
        }
        f->meta[f->nmeta++] = m;
      }
      qsort(f->meta, (size_t)f->nmeta, sizeof *f->meta, cmp_meta);
      for (int64_t i = 1; i < f->nmeta; i++)
        if (strcmp(f->meta[i]->key, f->meta[i - 1]->key) == 0) {
          st = bad(f, "\"__metadata__\" key \"%s\" appears twice%s", f->meta[i]->key, "");
          goto fail;
        }
      continue;
    }
    st = parse_entry(f, v, &f->entries[f->n]);
    if (st) goto fail;
    f->n++;
  }
  qsort(f->entries, (size_t)f->n, sizeof *f->entries, cmp_name);
  for (int64_t i = 1; i < f->n; i++)
    if (strcmp(f->entries[i].name, f->entries[i - 1].name) == 0) {
      st = bad(f, "tensor \"%s\" appears twice in the header%s", f->entries[i].name, "");
      goto fail;
    }
  /* The tensors must tile the data section: sorted by offset, each starts where the last ended. */
  {
    st_entry **byoff = malloc(sizeof *byoff * (size_t)(f->n + 1));
    if (!byoff) {
      st = DDPM_FAIL(DDPM_ERR_OOM, "load_safetensors: out of memory");
      goto fail;
    }
    for (int64_t i = 0; i < f->n; i++) byoff[i] = &f->entries[i];
    qsort(byoff, (size_t)f->n, sizeof *byoff, cmp_offset);
    uint64_t pos = 0;
    const char *prev = NULL;
    for (int64_t i = 0; i < f->n && !st; i++) {
      char m[300];
      if (byoff[i]->begin < pos) {
        snprintf(m, sizeof m, "data_offsets [%llu, %llu] overlap those of \"%s\" (tensors must not share bytes)",
                 (unsigned long long)byoff[i]->begin, (unsigned long long)byoff[i]->end, prev);
        st = bad(f, "tensor \"%s\": %s", byoff[i]->name, m);
      } else if (byoff[i]->begin > pos) {
        snprintf(m, sizeof m, "data_offsets begin at %llu, leaving a gap after byte %llu (tensors must cover the data "
                 "section without holes)", (unsigned long long)byoff[i]->begin, (unsigned long long)pos);
        st = bad(f, "tensor \"%s\": %s", byoff[i]->name, m);
      }
      pos = byoff[i]->end;
      prev = byoff[i]->name;
    }
    free(byoff);
    if (st) goto fail;
    if (pos != f->data_len) {
      snprintf(num[0], sizeof num[0], "%llu", (unsigned long long)pos);
      snprintf(num[1], sizeof num[1], "%llu", (unsigned long long)f->data_len);
      st = bad(f, "the tensors cover %s bytes but the data section holds %s (trailing bytes or a wrong header)",
               num[0], num[1]);
      goto fail;
    }
  }
  *out = f;
  return DDPM_OK;
fail:
  ddpm_safetensors_close(f);
  return st;
}

int64_t ddpm_safetensors_count(const ddpm_safetensors *f) { return f ? f->n : 0; }

const char *ddpm_safetensors_name(const ddpm_safetensors *f, int64_t i) {
  return f && i >= 0 && i < f->n ? f->entries[i].name : NULL;
}

int64_t ddpm_safetensors_find(const ddpm_safetensors *f, const char *name) {
  if (!f || !name) return -1;
  int64_t lo = 0, hi = f->n - 1;
  while (lo <= hi) {
    int64_t mid = lo + (hi - lo) / 2;
    int c = strcmp(f->entries[mid].name, name);
    if (c == 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

const char *ddpm_safetensors_dtype_name(const ddpm_safetensors *f, int64_t i) {
  return f && i >= 0 && i < f->n ? st_names[f->entries[i].st_dtype] : NULL;
}

int ddpm_safetensors_shape(const ddpm_safetensors *f, int64_t i, int64_t *shape) {
  if (!f || i < 0 || i >= f->n) return -1;
  memcpy(shape, f->entries[i].shape, sizeof(int64_t) * (size_t)f->entries[i].ndim);
  return f->entries[i].ndim;
}

/* Widen the integer types the engine lacks. */
static void widen(void *dst, const unsigned char *src, int st_dtype, uint64_t numel) {
  for (uint64_t k = 0; k < numel; k++) {
    const unsigned char *p = src + k * (uint64_t)st_size[st_dtype];
    switch (st_dtype) {
    case ST_I8: ((int32_t *)dst)[k] = (int8_t)p[0]; break;
    case ST_I16: ((int32_t *)dst)[k] = (int16_t)(uint16_t)(p[0] | (p[1] << 8)); break;
    case ST_U16: ((int32_t *)dst)[k] = (uint16_t)(p[0] | (p[1] << 8)); break;
    case ST_U32: ((int64_t *)dst)[k] = (int64_t)((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24)); break;
    }
  }
}

int ddpm_safetensors_get(ddpm_tensor **out, ddpm_safetensors *f, int64_t i) {
  if (!out) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "safetensors_get: out is NULL");
  if (!f) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "safetensors_get: the file handle is NULL (closed?)");
  if (i < 0 || i >= f->n)
    return DDPM_FAIL(DDPM_ERR_INDEX, "safetensors_get: index %lld out of range for %lld tensors in '%s'",
                     (long long)i, (long long)f->n, f->path);
  const st_entry *e = &f->entries[i];
  const char *p = f->data + e->begin;
  int dtype = st_engine[e->st_dtype];
  if (e->st_dtype >= ST_I8) {
    ddpm_tensor *t = NULL;
    DDPM_TRY(ddpm_tensor_new(&t, e->ndim, e->shape, dtype, DDPM_CPU));
    widen(t->storage->data, (const unsigned char *)p, e->st_dtype, (uint64_t)ddpm_tensor_numel(t));
    *out = t;
    return DDPM_OK;
  }
  /* Zero-copy when aligned for the element type (the writer aligns; other writers may not). */
  if (((uintptr_t)p % (uintptr_t)ddpm_dsize(dtype)) == 0)
    return ddpm_fmap_tensor(out, f->map, (void *)p, dtype, e->ndim, e->shape);
  return ddpm_tensor_from_host(out, p, dtype, e->ndim, e->shape);
}

int ddpm_safetensors_get_by_name(ddpm_tensor **out, ddpm_safetensors *f, const char *name) {
  int64_t i = ddpm_safetensors_find(f, name);
  if (i < 0)
    return DDPM_FAIL(DDPM_ERR_INDEX, "safetensors_get: no tensor named \"%s\" in '%s'", name ? name : "(null)",
                     f ? f->path : "(closed)");
  return ddpm_safetensors_get(out, f, i);
}

int64_t ddpm_safetensors_metadata_count(const ddpm_safetensors *f) { return f ? f->nmeta : 0; }
const char *ddpm_safetensors_metadata_key(const ddpm_safetensors *f, int64_t i) {
  return f && i >= 0 && i < f->nmeta ? f->meta[i]->key : NULL;
}
const char *ddpm_safetensors_metadata_value(const ddpm_safetensors *f, int64_t i) {
  return f && i >= 0 && i < f->nmeta ? f->meta[i]->str : NULL;
}
int64_t ddpm_safetensors_metadata_value_len(const ddpm_safetensors *f, int64_t i) {
  return f && i >= 0 && i < f->nmeta ? (int64_t)f->meta[i]->len : -1;
}

/* ---- writing --------------------------------------------------------------------------------------- */
typedef struct {
  char *s;
  size_t n, cap;
  bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->s = p;
    b->cap = cap;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* JSON string as serde_json writes it: short escapes where they exist, \u00XX otherwise. */
static void sb_json_string(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char e[8];
    switch (*p) {
    case '"': sb_put(b, "\\\"", 2); break;
    case '\\': sb_put(b, "\\\\", 2); break;
    case '\n': sb_put(b, "\\n", 2); break;
    case '\r': sb_put(b, "\\r", 2); break;
    case '\t': sb_put(b, "\\t", 2); break;
    case '\b': sb_put(b, "\\b", 2); break;
    case '\f': sb_put(b, "\\f", 2); break;
    default:
      if (*p < 0x20) {
        snprintf(e, sizeof e, "\\u%04x", *p);
        sb_put(b, e, 6);
      } else {
        sb_put(b, (const char *)p, 1);
      }
    }
  }
  sb_put(b, "\"", 1);
}

typedef struct {
  const char *name;
  ddpm_tensor *t;
  int64_t nbytes;
  uint64_t begin;
} w_entry;

static int cmp_w_name(const void *a, const void *b) {
  return strcmp(((const w_entry *)a)->name, ((const w_entry *)b)->name);
}
/* Data order: widest element type first, then by name, so every tensor starts aligned to its
 * element size (the reference writer does the same). */
static int cmp_w_layout(const void *a, const void *b) {
  const w_entry *x = *(const w_entry *const *)a, *y = *(const w_entry *const *)b;
  int sx = ddpm_dsize(x->t->dtype), sy = ddpm_dsize(y->t->dtype);
  if (sx != sy) return sy - sx;
  return strcmp(x->name, y->name);
}
static int cmp_kv(const void *a, const void *b) {
  return strcmp(((const char *const *)a)[0], ((const char *const *)b)[0]);
}

static const char *engine_st_name(int dtype) {
  static const char *n[8] = {"F32", "F64", "F16", "BF16", "I64", "I32", "U8", "BOOL"};
  return n[dtype];
}

int ddpm_safetensors_save(const char *path, int64_t n, const char *const *names, ddpm_tensor *const *tensors,
                          int64_t nmeta, const char *const *meta_keys, const char *const *meta_values) {
  const char *op = "save_safetensors";
  if (!path) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: path is NULL", op);
  if (n < 0 || nmeta < 0 || (n > 0 && (!names || !tensors)) || (nmeta > 0 && (!meta_keys || !meta_values)))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: invalid tensor or metadata arrays", op);
  int st = DDPM_OK;
  w_entry *e = calloc((size_t)n + 1, sizeof *e);
  w_entry **lay = calloc((size_t)n + 1, sizeof *lay);
  const char **kv = calloc((size_t)nmeta * 2 + 2, sizeof *kv);
  sbuf h = {0};
  if (!e || !lay || !kv) {
    st = DDPM_FAIL(DDPM_ERR_OOM, "%s: out of memory", op);
    goto done;
  }
  for (int64_t i = 0; i < n; i++) {
    if (!names[i] || !tensors[i]) {
      st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: entry %lld has a NULL %s", op, (long long)i, !names[i] ? "name" : "tensor");
      goto done;
    }
    if (!ddpm_utf8_valid(names[i], strlen(names[i]))) {
      st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: tensor name %lld is not valid UTF-8 (JSON keys must be)", op, (long long)i);
      goto done;
    }
    if (strcmp(names[i], "__metadata__") == 0) {
      st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: \"__metadata__\" is reserved and cannot name a tensor", op);
      goto done;
    }
    e[i].name = names[i];
    e[i].t = tensors[i];
    e[i].nbytes = ddpm_tensor_numel(tensors[i]) * ddpm_dsize(tensors[i]->dtype);
  }
  qsort(e, (size_t)n, sizeof *e, cmp_w_name);
  for (int64_t i = 1; i < n; i++)
    if (strcmp(e[i].name, e[i - 1].name) == 0) {
      st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: tensor name \"%s\" given twice", op, e[i].name);
      goto done;
    }
  for (int64_t i = 0; i < nmeta; i++) {
    kv[2 * i] = meta_keys[i];
    kv[2 * i + 1] = meta_values[i];
    if (!meta_keys[i] || !meta_values[i]) {
      st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: metadata entry %lld is NULL", op, (long long)i);
      goto done;
    }
    if (!ddpm_utf8_valid(meta_keys[i], strlen(meta_keys[i])) || !ddpm_utf8_valid(meta_values[i], strlen(meta_values[i]))) {
      st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: metadata \"%s\" is not valid UTF-8 (JSON strings must be)", op,
                     meta_keys[i]);
      goto done;
    }
  }
  qsort(kv, (size_t)nmeta, 2 * sizeof *kv, cmp_kv);
  for (int64_t i = 1; i < nmeta; i++)
    if (strcmp(kv[2 * i], kv[2 * i - 2]) == 0) {
      st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: metadata key \"%s\" given twice", op, kv[2 * i]);
      goto done;
    }
  for (int64_t i = 0; i < n; i++) lay[i] = &e[i];
  qsort(lay, (size_t)n, sizeof *lay, cmp_w_layout);
  uint64_t pos = 0;
  for (int64_t i = 0; i < n; i++) {
    lay[i]->begin = pos;
    pos += (uint64_t)lay[i]->nbytes;
  }
  /* Header: metadata first, then the tensors sorted by name, compact as serde_json writes it. */
  sb_str(&h, "{");
  bool first = true;
  if (nmeta > 0) {
    sb_str(&h, "\"__metadata__\":{");
    for (int64_t i = 0; i < nmeta; i++) {
      if (i) sb_str(&h, ",");
      sb_json_string(&h, kv[2 * i]);
      sb_str(&h, ":");
      sb_json_string(&h, kv[2 * i + 1]);
    }
    sb_str(&h, "}");
    first = false;
  }
  for (int64_t i = 0; i < n; i++) {
    char num[64];
    if (!first) sb_str(&h, ",");
    first = false;
    sb_json_string(&h, e[i].name);
    sb_str(&h, ":{\"dtype\":\"");
    sb_str(&h, engine_st_name(e[i].t->dtype));
    sb_str(&h, "\",\"shape\":[");
    for (int d = 0; d < e[i].t->ndim; d++) {
      snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)e[i].t->shape[d]);
      sb_str(&h, num);
    }
    snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)e[i].begin,
             (unsigned long long)(e[i].begin + (uint64_t)e[i].nbytes));
    sb_str(&h, num);
  }
  sb_str(&h, "}");
  while (!h.oom && h.n % 8) sb_put(&h, " ", 1);
  if (h.oom) {
    st = DDPM_FAIL(DDPM_ERR_OOM, "%s: out of memory building the header", op);
    goto done;
  }
  if (h.n > ST_MAX_HEADER) {
    st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: the header would be %zu bytes (limit 100000000): too many tensors or too much metadata", op, h.n);
    goto done;
  }
  ddpm_afile af;
  st = ddpm_afile_open(&af, path, op);
  if (st) goto done;
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(((uint64_t)h.n >> (8 * i)) & 0xff);
  st = ddpm_afile_write(&af, len8, 8);
  if (!st) st = ddpm_afile_write(&af, h.s, h.n);
  /* One host copy at a time, so saving a model on the GPU never doubles its memory on the host. */
  for (int64_t i = 0; i < n && !st; i++) {
    ddpm_tensor *c = NULL;
    st = ddpm_host_contiguous(&c, lay[i]->t);
    if (!st && lay[i]->nbytes) st = ddpm_afile_write(&af, ddpm_ptr(c), (size_t)lay[i]->nbytes);
    ddpm_tensor_release(c);
  }
  if (st) ddpm_afile_abort(&af);
  else st = ddpm_afile_commit(&af);
done:
  free(h.s);
  free(e);
  free(lay);
  free(kv);
  return st;
}
