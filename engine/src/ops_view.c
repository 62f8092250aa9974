/* ops_view.c: zero-copy views (view/reshape, permute, expand, slice/narrow, select, (un)squeeze)
 * and their gradients. */
#include "internal.h"

/* Make the view tensor and record the node; i[] carries what the backward needs. */
static int finish_view(ddpm_tensor **out, ddpm_tensor *t, int op, int ndim, const int64_t *shape,
                       const int64_t *strides, int64_t offset, const int64_t *iparams, int nparams) {
  ddpm_tensor *v;
  DDPM_TRY(ddpm_tensor_alias(&v, t, ndim, shape, strides, offset));
  ddpm_node *n = ddpm_ag_begin(op, 1, &t);
  if (n) {
    for (int k = 0; k < nparams; k++) n->i[k] = iparams[k];
    ddpm_ag_finish(n, v);
  }
  *out = v;
  return DDPM_OK;
}

/* PyTorch's rule for whether a view with a new shape can share t's memory. */
static bool view_strides(const ddpm_tensor *t, int ndim, const int64_t *shape, int64_t *strides) {
  int64_t numel = ddpm_tensor_numel(t);
  if (numel == 0 || t->ndim == 0) {
    ddpm_contiguous_strides(ndim, shape, strides);
    return true;
  }
  int view_d = ndim - 1;
  int64_t chunk_base_stride = t->strides[t->ndim - 1], tensor_numel = 1, view_numel = 1;
  for (int tensor_d = t->ndim - 1; tensor_d >= 0; tensor_d--) {
    tensor_numel *= t->shape[tensor_d];
    if (tensor_d == 0 ||
        (t->shape[tensor_d - 1] != 1 && t->strides[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        strides[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (tensor_d > 0) {
        chunk_base_stride = t->strides[tensor_d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

static int infer_shape(const char *op, const ddpm_tensor *t, int ndim, const int64_t *shape, int64_t *res) {
  if (ndim < 0 || ndim > DDPM_MAX_DIMS)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: %d dims requested, tensors have at most %d", op, ndim, DDPM_MAX_DIMS);
  if (ndim > 0 && !shape) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: shape is NULL", op);
  int infer = -1;
  int64_t prod = 1, numel = ddpm_tensor_numel(t);
  for (int d = 0; d < ndim; d++) {
    if (shape[d] == -1) {
      if (infer >= 0) return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: only one dimension can be -1 in %s", op, ddpm_fmt_shape(ndim, shape));
      infer = d;
    } else if (shape[d] < 0) {
      return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: invalid size %lld in %s", op, (long long)shape[d], ddpm_fmt_shape(ndim, shape));
    } else {
      prod *= shape[d];
    }
    res[d] = shape[d];
  }
  if (infer >= 0) {
    if (prod == 0 || numel % prod)
      return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: shape %s is invalid for input of size %lld (%s)", op,
                       ddpm_fmt_shape(ndim, shape), (long long)numel, ddpm_fmt_tensor(t));
    res[infer] = numel / prod;
  } else if (prod != numel) {
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: shape %s is invalid for input of size %lld (%s)", op,
                     ddpm_fmt_shape(ndim, shape), (long long)numel, ddpm_fmt_tensor(t));
  }
  return DDPM_OK;
}

int ddpm_view(ddpm_tensor **out, ddpm_tensor *t, int ndim, const int64_t *shape) {
  DDPM_TRY(ddpm_check_out("view", out));
  DDPM_TRY(ddpm_check_tensor("view", "self", t));
  int64_t s[DDPM_MAX_DIMS], st[DDPM_MAX_DIMS];
  DDPM_TRY(infer_shape("view", t, ndim, shape, s));
  if (!view_strides(t, ndim, s, st))
    return DDPM_FAIL(DDPM_ERR_SHAPE,
                     "view: shape %s is not compatible with the strides of %s (at least one dimension spans "
                     "two contiguous subspaces); use :reshape(...) instead",
                     ddpm_fmt_shape(ndim, s), ddpm_fmt_tensor(t));
  return finish_view(out, t, DDPM_OP_VIEW, ndim, s, st, t->offset, NULL, 0);
}

int ddpm_reshape(ddpm_tensor **out, ddpm_tensor *t, int ndim, const int64_t *shape) {
  DDPM_TRY(ddpm_check_out("reshape", out));
  DDPM_TRY(ddpm_check_tensor("reshape", "self", t));
  int64_t s[DDPM_MAX_DIMS], st[DDPM_MAX_DIMS];
  DDPM_TRY(infer_shape("reshape", t, ndim, shape, s));
  if (view_strides(t, ndim, s, st)) return finish_view(out, t, DDPM_OP_VIEW, ndim, s, st, t->offset, NULL, 0);
  ddpm_tensor *c = NULL;
  DDPM_TRY(ddpm_clone(&c, t));
  int r = ddpm_view(out, c, ndim, s);
  ddpm_tensor_release(c);
  return r;
}

int bw_VIEW(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  return ddpm_reshape(&gin[0], g, n->in_meta[0].ndim, n->in_meta[0].shape);
}

int ddpm_unsqueeze(ddpm_tensor **out, ddpm_tensor *t, int dim) {
  DDPM_TRY(ddpm_check_out("unsqueeze", out));
  DDPM_TRY(ddpm_check_tensor("unsqueeze", "self", t));
  if (t->ndim >= DDPM_MAX_DIMS)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "unsqueeze: %s already has the maximum of %d dims", ddpm_fmt_tensor(t), DDPM_MAX_DIMS);
  int d;
  if (dim < -(t->ndim + 1) || dim > t->ndim)
    return DDPM_FAIL(DDPM_ERR_INDEX, "unsqueeze: dim %d out of range for a tensor with %d dims (expected %d..%d)", dim,
                     t->ndim, -(t->ndim + 1), t->ndim);
  d = dim < 0 ? dim + t->ndim + 1 : dim;
  int64_t s[DDPM_MAX_DIMS], st[DDPM_MAX_DIMS];
  for (int i = 0, j = 0; i <= t->ndim; i++) {
    if (i == d) {
      s[i] = 1;
      st[i] = j < t->ndim ? t->strides[j] * t->shape[j] : 1;
    } else {
      s[i] = t->shape[j];
      st[i] = t->strides[j];
      j++;
    }
  }
  return finish_view(out, t, DDPM_OP_VIEW, t->ndim + 1, s, st, t->offset, NULL, 0);
}

int ddpm_squeeze(ddpm_tensor **out, ddpm_tensor *t, int dim) {
  DDPM_TRY(ddpm_check_out("squeeze", out));
  DDPM_TRY(ddpm_check_tensor("squeeze", "self", t));
  int d;
  DDPM_TRY(ddpm_wrap_dim("squeeze", dim, t->ndim, &d));
  int64_t s[DDPM_MAX_DIMS], st[DDPM_MAX_DIMS];
  int n = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (i == d && t->shape[i] == 1) continue;
    s[n] = t->shape[i];
    st[n] = t->strides[i];
    n++;
  }
  return finish_view(out, t, DDPM_OP_VIEW, n, s, st, t->offset, NULL, 0);
}

int ddpm_squeeze_all(ddpm_tensor **out, ddpm_tensor *t) {
  DDPM_TRY(ddpm_check_out("squeeze_all", out));
  DDPM_TRY(ddpm_check_tensor("squeeze", "self", t));
  int64_t s[DDPM_MAX_DIMS], st[DDPM_MAX_DIMS];
  int n = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (t->shape[i] == 1) continue;
    s[n] = t->shape[i];
    st[n] = t->strides[i];
    n++;
  }
  return finish_view(out, t, DDPM_OP_VIEW, n, s, st, t->offset, NULL, 0);
}

int ddpm_permute(ddpm_tensor **out, ddpm_tensor *t, int ndim, const int64_t *dims) {
  DDPM_TRY(ddpm_check_out("permute", out));
  DDPM_TRY(ddpm_check_tensor("permute", "self", t));
  if (ndim > 0 && !dims) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "permute: dims is NULL");
  if (ndim != t->ndim)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "permute: %d dims given for %s; expected a permutation of all %d dims", ndim,
                     ddpm_fmt_tensor(t), t->ndim);
  int64_t s[DDPM_MAX_DIMS], st[DDPM_MAX_DIMS], p[DDPM_MAX_DIMS];
  bool seen[DDPM_MAX_DIMS] = {0};
  for (int i = 0; i < ndim; i++) {
    int d;
    DDPM_TRY(ddpm_wrap_dim("permute", (int)dims[i], t->ndim, &d));
    if (seen[d])
      return DDPM_FAIL(DDPM_ERR_ARGUMENT, "permute: dim %d repeats in %s", d, ddpm_fmt_shape(ndim, dims));
    seen[d] = true;
    p[i] = d;
    s[i] = t->shape[d];
    st[i] = t->strides[d];
  }
  return finish_view(out, t, DDPM_OP_PERMUTE, ndim, s, st, t->offset, p, ndim);
}

int bw_PERMUTE(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  int64_t inv[DDPM_MAX_DIMS];
  for (int i = 0; i < g->ndim; i++) inv[n->i[i]] = i;
  return ddpm_permute(&gin[0], g, g->ndim, inv);
}

int ddpm_transpose(ddpm_tensor **out, ddpm_tensor *t, int dim0, int dim1) {
  DDPM_TRY(ddpm_check_out("transpose", out));
  DDPM_TRY(ddpm_check_tensor("transpose", "self", t));
  int a, b;
  DDPM_TRY(ddpm_wrap_dim("transpose", dim0, t->ndim, &a));
  DDPM_TRY(ddpm_wrap_dim("transpose", dim1, t->ndim, &b));
  int64_t p[DDPM_MAX_DIMS];
  for (int i = 0; i < t->ndim; i++) p[i] = i;
  if (t->ndim == 0) {
    ddpm_tensor_retain(t);
    *out = t;
    return DDPM_OK;
  }
  p[a] = b;
  p[b] = a;
  return ddpm_permute(out, t, t->ndim, p);
}

int ddpm_expand(ddpm_tensor **out, ddpm_tensor *t, int ndim, const int64_t *shape) {
  DDPM_TRY(ddpm_check_out("expand", out));
  DDPM_TRY(ddpm_check_tensor("expand", "self", t));
  if (ndim < t->ndim || ndim > DDPM_MAX_DIMS)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "expand: the number of sizes (%d) must be at least the tensor's dims (%s)", ndim,
                     ddpm_fmt_tensor(t));
  if (ndim > 0 && !shape) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "expand: shape is NULL");
  int64_t s[DDPM_MAX_DIMS], st[DDPM_MAX_DIMS];
  int off = ndim - t->ndim;
  for (int d = 0; d < ndim; d++) {
    int td = d - off;
    int64_t want = shape[d];
    if (td < 0) {
      if (want < 0)
        return DDPM_FAIL(DDPM_ERR_SHAPE, "expand: -1 is not allowed for the new leading dim %d in %s", d,
                         ddpm_fmt_shape(ndim, shape));
      s[d] = want;
      st[d] = 0;
    } else {
      int64_t have = t->shape[td];
      if (want == -1) want = have;
      if (want < 0)
        return DDPM_FAIL(DDPM_ERR_SHAPE, "expand: invalid size %lld in %s", (long long)want, ddpm_fmt_shape(ndim, shape));
      if (have == want) {
        s[d] = have;
        st[d] = t->strides[td];
      } else if (have == 1) {
        s[d] = want;
        st[d] = 0;
      } else {
        return DDPM_FAIL(DDPM_ERR_SHAPE, "expand: %s cannot be expanded to %s (dim %d has size %lld, not 1)",
                         ddpm_fmt_tensor(t), ddpm_fmt_shape(ndim, shape), d, (long long)have);
      }
    }
  }
  return finish_view(out, t, DDPM_OP_EXPAND, ndim, s, st, t->offset, NULL, 0);
}

int bw_EXPAND(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return ddpm_reduce_to(&gin[0], g, &n->in_meta[0]); }

int ddpm_slice(ddpm_tensor **out, ddpm_tensor *t, int dim, int64_t start, int64_t end, int64_t step) {
  DDPM_TRY(ddpm_check_out("slice", out));
  DDPM_TRY(ddpm_check_tensor("slice", "self", t));
  if (t->ndim == 0) return DDPM_FAIL(DDPM_ERR_SHAPE, "slice: cannot slice a 0-dim tensor");
  int d;
  DDPM_TRY(ddpm_wrap_dim("slice", dim, t->ndim, &d));
  if (step <= 0) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "slice: step must be positive, got %lld", (long long)step);
  int64_t n = t->shape[d];
  /* Python slice semantics: negative indices wrap, out-of-range bounds clamp */
  if (start < 0) start += n;
  if (end < 0) end += n;
  if (start < 0) start = 0;
  if (start > n) start = n;
  if (end > n) end = n;
  if (end < start) end = start;
  int64_t s[DDPM_MAX_DIMS], st[DDPM_MAX_DIMS];
  memcpy(s, t->shape, sizeof s);
  memcpy(st, t->strides, sizeof st);
  s[d] = end == start ? 0 : (end - start - 1) / step + 1; /* no overflow for a huge step */
  st[d] = t->strides[d] * step;
  int64_t p[4] = {d, start, end, step};
  return finish_view(out, t, DDPM_OP_SLICE, t->ndim, s, st, t->offset + start * t->strides[d], p, 4);
}

int ddpm_narrow(ddpm_tensor **out, ddpm_tensor *t, int dim, int64_t start, int64_t length) {
  DDPM_TRY(ddpm_check_out("narrow", out));
  DDPM_TRY(ddpm_check_tensor("narrow", "self", t));
  int d;
  DDPM_TRY(ddpm_wrap_dim("narrow", dim, t->ndim, &d));
  int64_t n = t->ndim ? t->shape[d] : 1;
  if (start < 0) start += n;
  if (start < 0 || length < 0 || start > n || length > n - start)
    return DDPM_FAIL(DDPM_ERR_INDEX, "narrow: start %lld with length %lld exceeds dim %d of size %lld (%s)",
                     (long long)start, (long long)length, d, (long long)n, ddpm_fmt_tensor(t));
  return ddpm_slice(out, t, d, start, start + length, 1);
}

/* gradient of a slice/select: zeros of the input's shape with g written into the same window */
static int scatter_into_zeros(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin, bool select) {
  ddpm_tensor *z = NULL, *win = NULL;
  DDPM_TRY(ddpm_zeros(&z, &n->in_meta[0]));
  int st = select ? ddpm_select(&win, z, (int)n->i[0], n->i[1])
                  : ddpm_slice(&win, z, (int)n->i[0], n->i[1], n->i[2], n->i[3]);
  if (!st) st = ddpm_copy_(win, g);
  ddpm_tensor_release(win);
  if (st) {
    ddpm_tensor_release(z);
    return st;
  }
  gin[0] = z;
  return DDPM_OK;
}
int bw_SLICE(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return scatter_into_zeros(n, g, gin, false); }

int ddpm_select(ddpm_tensor **out, ddpm_tensor *t, int dim, int64_t index) {
  DDPM_TRY(ddpm_check_out("select", out));
  DDPM_TRY(ddpm_check_tensor("select", "self", t));
  if (t->ndim == 0) return DDPM_FAIL(DDPM_ERR_SHAPE, "select: cannot index a 0-dim tensor");
  int d;
  DDPM_TRY(ddpm_wrap_dim("select", dim, t->ndim, &d));
  int64_t n = t->shape[d];
  if (index < -n || index >= n)
    return DDPM_FAIL(DDPM_ERR_INDEX, "select: index %lld is out of bounds for dim %d with size %lld (%s)",
                     (long long)index, d, (long long)n, ddpm_fmt_tensor(t));
  if (index < 0) index += n;
  int64_t s[DDPM_MAX_DIMS], st[DDPM_MAX_DIMS];
  int k = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (i == d) continue;
    s[k] = t->shape[i];
    st[k] = t->strides[i];
    k++;
  }
  int64_t p[2] = {d, index};
  return finish_view(out, t, DDPM_OP_SELECT, k, s, st, t->offset + index * t->strides[d], p, 2);
}
int bw_SELECT(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return scatter_into_zeros(n, g, gin, true); }
