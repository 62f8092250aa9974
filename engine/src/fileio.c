/* fileio.c: the file plumbing of the format readers/writers: atomic writes (temp file in the same
 * directory, fsync, rename, so an interrupted save never destroys the previous file), shared
 * copy-on-write file mappings, and tensors over mapped or copied host bytes. */
#define _GNU_SOURCE
#include "formats.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- atomic writes ------------------------------------------------------------------------------ */
static char *dup_str(const char *s) {
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (d) memcpy(d, s, n + 1);
  return d;
}

static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return dup_str(".");
  if (slash == path) return dup_str("/");
  size_t n = (size_t)(slash - path);
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, path, n);
    d[n] = 0;
  }
  return d;
}

int ddpm_afile_open(ddpm_afile *f, const char *path, const char *op) {
  memset(f, 0, sizeof *f);
  f->fd = -1;
  f->op = op;
  if (!path || !*path) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: the file path is empty", op);
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return DDPM_FAIL(DDPM_ERR_IO, "%s: cannot write '%s': it is a directory (expected a file path)", op, path);
  char *dir = dir_of(path);
  if (!dir) return DDPM_FAIL(DDPM_ERR_OOM, "%s: out of memory", op);
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t cap = strlen(dir) + strlen(base) + 64;
  f->tmp = malloc(cap);
  f->path = dup_str(path);
  f->cap = 1 << 20;
  f->buf = malloc(f->cap);
  if (!f->tmp || !f->path || !f->buf) {
    free(dir);
    ddpm_afile_abort(f);
    return DDPM_FAIL(DDPM_ERR_OOM, "%s: out of memory", op);
  }
  /* A hidden sibling, so the rename stays within one file system; O_EXCL with a fresh name
   * keeps concurrent writers apart, and mode 0666 lets the umask decide as for any new file. */
  static unsigned counter;
  int err = 0;
  for (int attempt = 0; attempt < 100; attempt++) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned k = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    snprintf(f->tmp, cap, "%s/.%s.tmp-%ld-%u-%lx", dir, base, (long)getpid(), k, (unsigned long)ts.tv_nsec);
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (f->fd >= 0) break;
    err = errno;
    if (err != EEXIST) break;
  }
  if (f->fd < 0) {
    int st = DDPM_FAIL(DDPM_ERR_IO, "%s: cannot write '%s': cannot create a file in directory '%s': %s", op,
                       path, dir, strerror(err));
    free(dir);
    free(f->tmp);
    f->tmp = NULL;
    ddpm_afile_abort(f);
    return st;
  }
  free(dir);
  return DDPM_OK;
}

static int flush_buf(ddpm_afile *f) {
  size_t off = 0;
  while (off < f->used) {
    ssize_t w = write(f->fd, f->buf + off, f->used - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return DDPM_FAIL(DDPM_ERR_IO, "%s: writing '%s' failed: %s (the previous file, if any, is untouched)",
                       f->op, f->path, strerror(errno));
    }
    off += (size_t)w;
  }
  f->used = 0;
  return DDPM_OK;
}

int ddpm_afile_write(ddpm_afile *f, const void *p, size_t n) {
  const char *s = p;
  while (n) {
    if (f->used == f->cap) DDPM_TRY(flush_buf(f));
    size_t k = f->cap - f->used < n ? f->cap - f->used : n;
    memcpy(f->buf + f->used, s, k);
    f->used += k;
    s += k;
    n -= k;
  }
  return DDPM_OK;
}

void ddpm_afile_abort(ddpm_afile *f) {
  if (f->fd >= 0) close(f->fd);
  if (f->tmp) unlink(f->tmp);
  free(f->tmp);
  free(f->path);
  free(f->buf);
  f->fd = -1;
  f->tmp = f->path = f->buf = NULL;
}

int ddpm_afile_commit(ddpm_afile *f) {
  int st = flush_buf(f);
  if (st) {
    ddpm_afile_abort(f);
    return st;
  }
  if (fsync(f->fd) != 0) {
    st = DDPM_FAIL(DDPM_ERR_IO, "%s: fsync of '%s' failed: %s (the previous file, if any, is untouched)", f->op,
                   f->path, strerror(errno));
    ddpm_afile_abort(f);
    return st;
  }
  if (close(f->fd) != 0) {
    f->fd = -1;
    st = DDPM_FAIL(DDPM_ERR_IO, "%s: closing '%s' failed: %s", f->op, f->path, strerror(errno));
    ddpm_afile_abort(f);
    return st;
  }
  f->fd = -1;
  if (rename(f->tmp, f->path) != 0) {
    st = DDPM_FAIL(DDPM_ERR_IO, "%s: cannot replace '%s': %s", f->op, f->path, strerror(errno));
    ddpm_afile_abort(f);
    return st;
  }
  /* The rename itself is durable only once the directory is synced. */
  char *dir = dir_of(f->path);
  if (dir) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      fsync(dfd);
      close(dfd);
    }
    free(dir);
  }
  free(f->tmp);
  f->tmp = NULL;
  ddpm_afile_abort(f);
  return DDPM_OK;
}

int ddpm_write_file_atomic(const char *path, const void *data, int64_t nbytes) {
  if (nbytes < 0 || (nbytes > 0 && !data))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "write_file: invalid buffer (%lld bytes)", (long long)nbytes);
  ddpm_afile f;
  DDPM_TRY(ddpm_afile_open(&f, path, "write_file"));
  int st = ddpm_afile_write(&f, data, (size_t)nbytes);
  if (st) {
    ddpm_afile_abort(&f);
    return st;
  }
  return ddpm_afile_commit(&f);
}

/* ---- file mappings ------------------------------------------------------------------------------- */
int ddpm_fmap_open(ddpm_fmap **out, const char *path, const char *op) {
  *out = NULL;
  if (!path || !*path) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: the file path is empty", op);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return DDPM_FAIL(DDPM_ERR_IO, "%s: cannot open '%s': %s", op, path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return DDPM_FAIL(DDPM_ERR_IO, "%s: cannot stat '%s': %s", op, path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return DDPM_FAIL(DDPM_ERR_IO, "%s: '%s' is %s, expected a regular file", op, path,
                     S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
  }
  ddpm_fmap *m = calloc(1, sizeof *m);
  if (!m) {
    close(fd);
    return DDPM_FAIL(DDPM_ERR_OOM, "%s: out of memory", op);
  }
  m->refcount = 1;
  m->len = (size_t)st.st_size;
  if (m->len) {
    /* Private and writable: in-place ops on loaded tensors change pages of this process only. */
    m->base = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (m->base == MAP_FAILED) {
      int e = errno;
      close(fd);
      free(m);
      return DDPM_FAIL(DDPM_ERR_IO, "%s: cannot map '%s' (%zu bytes): %s", op, path, (size_t)st.st_size,
                       strerror(e));
    }
  }
  close(fd);
  *out = m;
  return DDPM_OK;
}

void ddpm_fmap_retain(ddpm_fmap *m) { __atomic_add_fetch(&m->refcount, 1, __ATOMIC_RELAXED); }

void ddpm_fmap_release(ddpm_fmap *m) {
  if (!m || __atomic_sub_fetch(&m->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
  if (m->base) munmap(m->base, m->len);
  free(m);
}

static void fmap_storage_release(ddpm_storage *s) { ddpm_fmap_release((ddpm_fmap *)s->release_ctx); }

static int tensor_over(ddpm_tensor **out, ddpm_storage *s, int dtype, int ndim, const int64_t *shape) {
  ddpm_tensor *t = calloc(1, sizeof *t);
  if (!t) {
    ddpm_storage_release(s);
    return DDPM_FAIL(DDPM_ERR_OOM, "out of host memory for a tensor header");
  }
  t->refcount = 1;
  t->dtype = dtype;
  t->device = DDPM_CPU;
  t->ndim = ndim;
  if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
  ddpm_contiguous_strides(ndim, shape, t->strides);
  t->storage = s;
  *out = t;
  return DDPM_OK;
}

int ddpm_fmap_tensor(ddpm_tensor **out, ddpm_fmap *m, void *data, int dtype, int ndim, const int64_t *shape) {
  DDPM_TRY(ddpm_check_shape("load", ndim, shape));
  size_t nbytes = (size_t)ddpm_shape_numel(ndim, shape) * (size_t)ddpm_dsize(dtype);
  if (nbytes == 0) return ddpm_tensor_new(out, ndim, shape, dtype, DDPM_CPU);
  ddpm_storage *s = NULL;
  DDPM_TRY(ddpm_storage_wrap(&s, data, nbytes, DDPM_CPU, fmap_storage_release, m));
  ddpm_fmap_retain(m);
  return tensor_over(out, s, dtype, ndim, shape);
}

int ddpm_tensor_from_host(ddpm_tensor **out, const void *data, int dtype, int ndim, const int64_t *shape) {
  ddpm_tensor *t = NULL;
  DDPM_TRY(ddpm_tensor_new(&t, ndim, shape, dtype, DDPM_CPU));
  size_t nbytes = (size_t)ddpm_shape_numel(ndim, shape) * (size_t)ddpm_dsize(dtype);
  if (nbytes) memcpy(t->storage->data, data, nbytes);
  *out = t;
  return DDPM_OK;
}

int ddpm_host_contiguous(ddpm_tensor **out, ddpm_tensor *t) {
  ddpm_tensor *h = NULL;
  DDPM_TRY(ddpm_to(&h, t, t->dtype, DDPM_CPU));
  int st = ddpm_contiguous(out, h);
  ddpm_tensor_release(h);
  return st;
}
