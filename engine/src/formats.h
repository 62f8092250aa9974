/* formats.h: private helpers shared by the file-format readers and writers (JSON, atomic files,
 * read-only file mappings, tensors over mapped memory). */
#ifndef DDPM_FORMATS_H
#define DDPM_FORMATS_H

#include "internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- strict JSON (RFC 8259) --------------------------------------------------------------------- */
enum { DDPM_JSON_NULL, DDPM_JSON_BOOL, DDPM_JSON_NUMBER, DDPM_JSON_STRING, DDPM_JSON_ARRAY, DDPM_JSON_OBJECT };

typedef struct ddpm_json ddpm_json;
struct ddpm_json {
  int type;
  bool boolean;
  const char *str;   /* STRING: decoded UTF-8, NUL-terminated; NUMBER: the literal (not terminated) */
  size_t len;        /* byte length of str */
  const char *key;   /* member name when this node sits in an object (decoded, NUL-terminated) */
  size_t keylen;
  int64_t count;     /* ARRAY/OBJECT: number of children */
  ddpm_json *child;  /* first child */
  ddpm_json *next;   /* next sibling */
};

typedef struct ddpm_json_doc ddpm_json_doc;
/* Parse text[0..len) as one JSON value (surrounding whitespace allowed).  On failure returns
 * non-zero and writes a message with the byte offset into err. */
DDPM_INTERNAL int ddpm_json_parse(ddpm_json_doc **out, const char *text, size_t len, char *err,
                                  size_t errlen);
DDPM_INTERNAL const ddpm_json *ddpm_json_root(const ddpm_json_doc *doc);
DDPM_INTERNAL void ddpm_json_free(ddpm_json_doc *doc);
/* Member of an object by name (first match), or NULL. */
DDPM_INTERNAL const ddpm_json *ddpm_json_get(const ddpm_json *obj, const char *key);
/* An integral number literal (no fraction, no exponent) within int64; false otherwise. */
DDPM_INTERNAL bool ddpm_json_int64(const ddpm_json *v, int64_t *out);
DDPM_INTERNAL bool ddpm_utf8_valid(const char *s, size_t n);
DDPM_INTERNAL const char *ddpm_json_type_name(int type);

/* ---- atomic file writes: temp file in the target's directory, fsync, rename ---------------------- */
typedef struct {
  int fd;
  char *tmp;     /* temporary path */
  char *path;    /* final path */
  const char *op;
  char *buf;     /* write-behind buffer */
  size_t used, cap;
} ddpm_afile;
DDPM_INTERNAL int ddpm_afile_open(ddpm_afile *f, const char *path, const char *op);
DDPM_INTERNAL int ddpm_afile_write(ddpm_afile *f, const void *p, size_t n);
/* fsync, close and rename over path; on failure the temp file is removed and path untouched. */
DDPM_INTERNAL int ddpm_afile_commit(ddpm_afile *f);
DDPM_INTERNAL void ddpm_afile_abort(ddpm_afile *f);

/* ---- read-only file mappings shared by the tensors cut from them ----------------------------------- */
typedef struct ddpm_fmap ddpm_fmap;
struct ddpm_fmap {
  int refcount;
  void *base; /* private copy-on-write mapping: tensors over it may be written in place */
  size_t len;
};
/* Map a whole regular file; messages name op and path. size 0 files map to base == NULL. */
DDPM_INTERNAL int ddpm_fmap_open(ddpm_fmap **out, const char *path, const char *op);
DDPM_INTERNAL void ddpm_fmap_retain(ddpm_fmap *m);
DDPM_INTERNAL void ddpm_fmap_release(ddpm_fmap *m);
/* A contiguous CPU tensor viewing [data, data + numel*dsize) of the mapping (a new reference; the
 * mapping lives until its last tensor is released). data must be aligned to the dtype size. */
DDPM_INTERNAL int ddpm_fmap_tensor(ddpm_tensor **out, ddpm_fmap *m, void *data, int dtype, int ndim,
                                   const int64_t *shape);
/* A contiguous CPU tensor that owns a copy of the bytes (for unaligned or converted data). */
DDPM_INTERNAL int ddpm_tensor_from_host(ddpm_tensor **out, const void *data, int dtype, int ndim,
                                        const int64_t *shape);
/* CPU, contiguous version of t (a new reference; t itself when it already is). */
DDPM_INTERNAL int ddpm_host_contiguous(ddpm_tensor **out, ddpm_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
