/* tensor.c: tensor headers over storages: creation, lifetime, metadata, shape helpers. */
#include "internal.h"
#include <math.h>

/* ---- shape helpers ------------------------------------------------------------------------- */
int64_t ddpm_shape_numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return n;
}

void ddpm_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i] > 0 ? shape[i] : 1;
  }
}

bool ddpm_same_shape(const ddpm_tensor *a, const ddpm_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

bool ddpm_has_internal_overlap(const ddpm_tensor *t) {
  for (int i = 0; i < t->ndim; i++)
    if (t->strides[i] == 0 && t->shape[i] > 1) return true;
  return false;
}

int ddpm_check_shape(const char *op, int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > DDPM_MAX_DIMS)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: %d dims requested, tensors have at most %d", op, ndim,
                     DDPM_MAX_DIMS);
  if (ndim > 0 && !shape) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: shape is NULL", op);
  double total = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: negative size %lld in shape %s", op,
                       (long long)shape[i], ddpm_fmt_shape(ndim, shape));
    total *= (double)shape[i];
  }
  if (total > 9.0e15)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: shape %s has too many elements", op,
                     ddpm_fmt_shape(ndim, shape));
  return DDPM_OK;
}

int ddpm_wrap_dim(const char *op, int dim, int ndim, int *out) {
  int n = ndim > 0 ? ndim : 1; /* a 0-d tensor accepts dim 0 and -1, as in PyTorch */
  if (dim < -n || dim >= n)
    return DDPM_FAIL(DDPM_ERR_INDEX, "%s: dim %d out of range for a tensor with %d dims (expected %d..%d)",
                     op, dim, ndim, -n, n - 1);
  *out = dim < 0 ? dim + n : dim;
  return DDPM_OK;
}

int ddpm_broadcast_shapes(const char *op, int na, const int64_t *sa, int nb, const int64_t *sb,
                          int *nout, int64_t *sout) {
  int n = na > nb ? na : nb;
  for (int i = 0; i < n; i++) {
    int ia = na - n + i, ib = nb - n + i;
    int64_t da = ia >= 0 ? sa[ia] : 1, db = ib >= 0 ? sb[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return DDPM_FAIL(DDPM_ERR_SHAPE,
                       "%s: shapes %s and %s do not broadcast (dim %d: %lld vs %lld; sizes must match or be 1)",
                       op, ddpm_fmt_shape(na, sa), ddpm_fmt_shape(nb, sb), i - n, (long long)da,
                       (long long)db);
    sout[i] = da == 1 ? db : da;
  }
  *nout = n;
  return DDPM_OK;
}

int ddpm_check_tensor(const char *op, const char *what, const ddpm_tensor *t) {
  if (!t) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: %s is nil, expected a tensor", op, what);
  return DDPM_OK;
}

int ddpm_check_out(const char *op, const void *out) {
  if (!out) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: the output pointer is NULL", op);
  return DDPM_OK;
}

int ddpm_check_same_device(const char *op, const ddpm_tensor *a, const ddpm_tensor *b) {
  if (a->device != b->device)
    return DDPM_FAIL(DDPM_ERR_DEVICE,
                     "%s: expected all tensors on the same device, got %s and %s (move one with :to())",
                     op, ddpm_fmt_tensor(a), ddpm_fmt_tensor(b));
  return DDPM_OK;
}

void ddpm_meta_of(ddpm_meta *m, const ddpm_tensor *t) {
  m->ndim = t->ndim;
  m->dtype = t->dtype;
  m->device = t->device;
  memcpy(m->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
}

void ddpm_bump_version(ddpm_tensor *t) { t->storage->version++; }

/* ---- lifetime ---------------------------------------------------------------------------------- */
int ddpm_tensor_new(ddpm_tensor **out, int ndim, const int64_t *shape, int dtype, int device) {
  DDPM_TRY(ddpm_check_shape("empty", ndim, shape));
  if (!ddpm_valid_dtype(dtype)) return DDPM_FAIL(DDPM_ERR_DTYPE, "empty: invalid dtype id %d", dtype);
  DDPM_TRY(ddpm_check_device("empty", device));
  ddpm_tensor *t = calloc(1, sizeof *t);
  if (!t) return DDPM_FAIL(DDPM_ERR_OOM, "out of host memory for a tensor header");
  int64_t n = ddpm_shape_numel(ndim, shape);
  int st = ddpm_storage_new(&t->storage, (size_t)n * (size_t)ddpm_dsize(dtype), device);
  if (st) {
    free(t);
    return st;
  }
  t->refcount = 1;
  t->dtype = dtype;
  t->device = device;
  t->ndim = ndim;
  if (ndim > 0 && ndim <= DDPM_MAX_DIMS) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
  ddpm_contiguous_strides(ndim, shape, t->strides);
  *out = t;
  return DDPM_OK;
}

int ddpm_tensor_new_like(ddpm_tensor **out, const ddpm_tensor *t) {
  return ddpm_tensor_new(out, t->ndim, t->shape, t->dtype, t->device);
}

int ddpm_tensor_alias(ddpm_tensor **out, const ddpm_tensor *t, int ndim, const int64_t *shape,
                      const int64_t *strides, int64_t offset) {
  ddpm_tensor *a = calloc(1, sizeof *a);
  if (!a) return DDPM_FAIL(DDPM_ERR_OOM, "out of host memory for a tensor header");
  a->refcount = 1;
  a->dtype = t->dtype;
  a->device = t->device;
  a->ndim = ndim;
  if (ndim) {
    memcpy(a->shape, shape, sizeof(int64_t) * (size_t)ndim);
    memcpy(a->strides, strides, sizeof(int64_t) * (size_t)ndim);
  }
  a->offset = offset;
  a->storage = t->storage;
  ddpm_storage_retain(t->storage);
  *out = a;
  return DDPM_OK;
}

void ddpm_tensor_retain(ddpm_tensor *t) {
  if (t) __atomic_add_fetch(&t->refcount, 1, __ATOMIC_RELAXED);
}

void ddpm_tensor_release(ddpm_tensor *t) {
  if (!t || __atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
  ddpm_storage_release(t->storage);
  ddpm_tensor_release(t->grad);
  ddpm_node_release(t->grad_fn);
  free(t);
}

/* ---- metadata ------------------------------------------------------------------------------------ */
/* The getters cannot report a status; on a NULL handle they answer -1 (or NULL/0) instead of
 * crashing. */
int ddpm_tensor_ndim(const ddpm_tensor *t) { return t ? t->ndim : -1; }
int ddpm_tensor_shape(const ddpm_tensor *t, int64_t *shape) {
  if (!t || !shape) return -1;
  memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
  return t->ndim;
}
int ddpm_tensor_strides(const ddpm_tensor *t, int64_t *strides) {
  if (!t || !strides) return -1;
  memcpy(strides, t->strides, sizeof(int64_t) * (size_t)t->ndim);
  return t->ndim;
}
int64_t ddpm_tensor_numel(const ddpm_tensor *t) { return t ? ddpm_shape_numel(t->ndim, t->shape) : -1; }
int64_t ddpm_tensor_offset(const ddpm_tensor *t) { return t ? t->offset : -1; }
int ddpm_tensor_dtype(const ddpm_tensor *t) { return t ? t->dtype : -1; }
int ddpm_tensor_device(const ddpm_tensor *t) { return t ? t->device : -1; }
int64_t ddpm_tensor_version(const ddpm_tensor *t) { return t ? t->storage->version : -1; }
int ddpm_tensor_same_storage(const ddpm_tensor *a, const ddpm_tensor *b) {
  return a && b && a->storage == b->storage;
}
void *ddpm_tensor_data(const ddpm_tensor *t) { return t && t->device == DDPM_CPU ? ddpm_ptr(t) : NULL; }

int ddpm_tensor_is_contiguous(const ddpm_tensor *t) {
  if (!t) return 0;
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] == 1) continue;
    if (t->strides[i] != s) return 0;
    s *= t->shape[i];
  }
  return 1;
}

/* Row-major read-out of any tensor to host memory, converting to double. */
int ddpm_tensor_to_doubles(const ddpm_tensor *t, double *dst, int64_t n) {
  DDPM_TRY(ddpm_check_tensor("to_doubles", "self", t));
  int64_t numel = ddpm_tensor_numel(t);
  if (n < numel)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "to_doubles: buffer of %lld for %lld elements", (long long)n,
                     (long long)numel);
  if (numel && !dst) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "to_doubles: the destination is NULL");
  ddpm_tensor *h = NULL;
  DDPM_TRY(ddpm_to(&h, (ddpm_tensor *)t, DDPM_FLOAT64, DDPM_CPU));
  ddpm_tensor *c = NULL;
  int st = ddpm_contiguous(&c, h);
  if (!st) memcpy(dst, ddpm_ptr(c), sizeof(double) * (size_t)numel);
  ddpm_tensor_release(c);
  ddpm_tensor_release(h);
  return st;
}

int ddpm_tensor_to_bytes(const ddpm_tensor *t, void *dst, int64_t nbytes) {
  DDPM_TRY(ddpm_check_tensor("to_bytes", "self", t));
  int64_t need = ddpm_tensor_numel(t) * ddpm_dsize(t->dtype);
  if (nbytes < need)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "to_bytes: buffer of %lld bytes, %s needs %lld",
                     (long long)nbytes, ddpm_fmt_tensor(t), (long long)need);
  if (need && !dst) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "to_bytes: the destination is NULL");
  ddpm_tensor *c = NULL;
  DDPM_TRY(ddpm_contiguous(&c, (ddpm_tensor *)t));
  const ddpm_backend *be = ddpm_backend_for(c->device);
  int st = be->memcpy(dst, DDPM_CPU, ddpm_ptr(c), c->device, (size_t)need);
  ddpm_tensor_release(c);
  return st;
}

int ddpm_tensor_item(const ddpm_tensor *t, double *out) {
  DDPM_TRY(ddpm_check_tensor("item", "self", t));
  DDPM_TRY(ddpm_check_out("item", out));
  if (ddpm_tensor_numel(t) != 1)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "item: a tensor with %lld elements (%s) cannot be converted to a number",
                     (long long)ddpm_tensor_numel(t), ddpm_fmt_tensor(t));
  return ddpm_tensor_to_doubles(t, out, 1);
}

/* ---- creation ------------------------------------------------------------------------------------------ */
int ddpm_empty(ddpm_tensor **out, int ndim, const int64_t *shape, int dtype, int device) {
  DDPM_TRY(ddpm_check_out("empty", out));
  return ddpm_tensor_new(out, ndim, shape, dtype, device);
}

int ddpm_fill_(ddpm_tensor *t, double value) {
  DDPM_TRY(ddpm_check_tensor("fill_", "self", t));
  DDPM_TRY(ddpm_check_inplace("fill_", t));
  ddpm_call c = {.op = DDPM_OP_FILL, .nout = 1, .out = {t}, .f = {value}};
  DDPM_TRY(ddpm_dispatch(&c));
  ddpm_bump_version(t);
  return DDPM_OK;
}

int ddpm_full(ddpm_tensor **out, int ndim, const int64_t *shape, double value, int dtype, int device) {
  DDPM_TRY(ddpm_check_out("full", out));
  ddpm_tensor *t = NULL;
  DDPM_TRY(ddpm_tensor_new(&t, ndim, shape, dtype, device));
  int st = ddpm_fill_(t, value);
  if (st) {
    ddpm_tensor_release(t);
    return st;
  }
  *out = t;
  return DDPM_OK;
}

int ddpm_zeros(ddpm_tensor **out, const ddpm_meta *m) {
  return ddpm_full(out, m->ndim, m->shape, 0.0, m->dtype, m->device);
}

/* Host-side construction then one upload: creation is never on a hot path. */
static int from_host_doubles(ddpm_tensor **out, const double *v, int64_t n, int ndim,
                             const int64_t *shape, int dtype, int device) {
  ddpm_tensor *h = NULL;
  DDPM_TRY(ddpm_tensor_new(&h, ndim, shape, dtype, DDPM_CPU));
  char *p = ddpm_ptr(h);
  int es = ddpm_dsize(dtype);
  for (int64_t i = 0; i < n; i++) ddpm_store_from_double(p + i * es, dtype, v[i]);
  if (device == DDPM_CPU) {
    *out = h;
    return DDPM_OK;
  }
  int st = ddpm_to(out, h, dtype, device);
  ddpm_tensor_release(h);
  return st;
}

int ddpm_from_doubles(ddpm_tensor **out, const double *values, int ndim, const int64_t *shape,
                      int dtype, int device) {
  DDPM_TRY(ddpm_check_out("from_doubles", out));
  DDPM_TRY(ddpm_check_shape("tensor", ndim, shape));
  if (!ddpm_valid_dtype(dtype)) return DDPM_FAIL(DDPM_ERR_DTYPE, "tensor: invalid dtype id %d", dtype);
  int64_t n = ddpm_shape_numel(ndim, shape);
  if (n && !values) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "tensor: values is NULL");
  return from_host_doubles(out, values, n, ndim, shape, dtype, device);
}

int ddpm_from_bytes(ddpm_tensor **out, const void *data, int64_t nbytes, int ndim,
                    const int64_t *shape, int dtype, int device) {
  DDPM_TRY(ddpm_check_out("from_bytes", out));
  DDPM_TRY(ddpm_check_shape("from_bytes", ndim, shape));
  if (!ddpm_valid_dtype(dtype)) return DDPM_FAIL(DDPM_ERR_DTYPE, "from_bytes: invalid dtype id %d", dtype);
  int64_t need = ddpm_shape_numel(ndim, shape) * ddpm_dsize(dtype);
  if (nbytes != need)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "from_bytes: %lld bytes given, %s%s needs %lld", (long long)nbytes,
                     ddpm_dname(dtype), ddpm_fmt_shape(ndim, shape), (long long)need);
  if (need && !data) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "from_bytes: data is NULL");
  ddpm_tensor *t;
  DDPM_TRY(ddpm_tensor_new(&t, ndim, shape, dtype, device));
  const ddpm_backend *be = ddpm_backend_for(device);
  int st = need ? be->memcpy(t->storage->data, device, data, DDPM_CPU, (size_t)need) : DDPM_OK;
  if (st) {
    ddpm_tensor_release(t);
    return st;
  }
  *out = t;
  return DDPM_OK;
}

int ddpm_arange(ddpm_tensor **out, double start, double end, double step, int dtype, int device) {
  DDPM_TRY(ddpm_check_out("arange", out));
  if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "arange: start %g, end %g, step %g: need finite values and step ~= 0",
                     start, end, step);
  if ((end - start) / step < 0)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "arange: step %g does not go from %g towards %g", step, start, end);
  int64_t n = (int64_t)ceil((end - start) / step);
  if (n > (int64_t)1 << 40) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "arange: %lld elements is too many", (long long)n);
  double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
  if (!v) return DDPM_FAIL(DDPM_ERR_OOM, "arange: out of memory");
  for (int64_t i = 0; i < n; i++) v[i] = start + (double)i * step;
  int st = from_host_doubles(out, v, n, 1, &n, dtype, device);
  free(v);
  return st;
}

int ddpm_linspace(ddpm_tensor **out, double start, double end, int64_t steps, int dtype, int device) {
  DDPM_TRY(ddpm_check_out("linspace", out));
  if (steps < 0) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "linspace: steps %lld must be >= 0", (long long)steps);
  double *v = malloc(sizeof(double) * (size_t)(steps ? steps : 1));
  if (!v) return DDPM_FAIL(DDPM_ERR_OOM, "linspace: out of memory");
  /* PyTorch fills the first half from start and the second half from end, so both ends are
   * exact and the values match torch.linspace bit for bit in float32. */
  double stepv = steps > 1 ? (end - start) / (double)(steps - 1) : 0;
  int64_t half = steps / 2;
  for (int64_t i = 0; i < steps; i++) v[i] = i < half ? start + stepv * (double)i : end - stepv * (double)(steps - i - 1);
  if (steps == 1) v[0] = start; /* torch.linspace(a, b, 1) is [a] */
  int st;
  if (dtype == DDPM_FLOAT32) { /* compute in float as torch does for float32 */
    float fs = (float)start, fe = (float)end, fst = steps > 1 ? (fe - fs) / (float)(steps - 1) : 0;
    for (int64_t i = 0; i < steps; i++) v[i] = i < half ? fs + fst * (float)i : fe - fst * (float)(steps - i - 1);
    if (steps == 1) v[0] = fs;
  }
  st = from_host_doubles(out, v, steps, 1, &steps, dtype, device);
  free(v);
  return st;
}
