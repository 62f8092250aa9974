/* ops_join.c: cat and stack, and the gradient of cat (slices of the incoming gradient). */
#include "internal.h"

int ddpm_cat(ddpm_tensor **out, int n, ddpm_tensor *const *ts, int dim) {
  DDPM_TRY(ddpm_check_out("cat", out));
  if (n <= 0 || !ts) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "cat: expected a non-empty list of tensors");
  for (int k = 0; k < n; k++)
    if (!ts[k]) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "cat: element %d of the list is nil, expected a tensor", k + 1);
  /* PyTorch skips legacy 1-D empty tensors when the others have more dims */
  const ddpm_tensor *ref = ts[0];
  for (int k = 0; k < n; k++)
    if (!(ts[k]->ndim == 1 && ts[k]->shape[0] == 0)) {
      ref = ts[k];
      break;
    }
  if (ref->ndim == 0) return DDPM_FAIL(DDPM_ERR_SHAPE, "cat: zero-dimensional tensors cannot be concatenated");
  int d;
  DDPM_TRY(ddpm_wrap_dim("cat", dim, ref->ndim, &d));
  int dt = ts[0]->dtype;
  int64_t total = 0;
  for (int k = 0; k < n; k++) {
    const ddpm_tensor *t = ts[k];
    dt = ddpm_promote_types(dt, t->dtype);
    if (t->device != ref->device)
      return DDPM_FAIL(DDPM_ERR_DEVICE, "cat: tensor %d is %s but tensor 1 is on %s", k + 1, ddpm_fmt_tensor(t),
                       ddpm_fmt_device(ref->device));
    if (t->ndim == 1 && t->shape[0] == 0 && ref->ndim != 1) continue;
    if (t->ndim != ref->ndim)
      return DDPM_FAIL(DDPM_ERR_SHAPE, "cat: tensors must have the same number of dims: tensor %d is %s, tensor 1 %s",
                       k + 1, ddpm_fmt_tensor(t), ddpm_fmt_tensor(ref));
    for (int i = 0; i < t->ndim; i++)
      if (i != d && t->shape[i] != ref->shape[i])
        return DDPM_FAIL(DDPM_ERR_SHAPE, "cat: sizes must match except in dim %d: tensor %d is %s, expected %s", d,
                         k + 1, ddpm_fmt_shape(t->ndim, t->shape), ddpm_fmt_shape(ref->ndim, ref->shape));
    total += t->shape[d];
  }
  ddpm_tensor **cast = calloc((size_t)n, sizeof *cast);
  if (!cast) return DDPM_FAIL(DDPM_ERR_OOM, "cat: out of memory");
  int st = DDPM_OK;
  ddpm_tensor *o = NULL;
  for (int k = 0; k < n && !st; k++) st = ddpm_cast(&cast[k], ts[k], dt);
  if (!st) {
    int64_t shape[DDPM_MAX_DIMS];
    memcpy(shape, ref->shape, sizeof(int64_t) * (size_t)ref->ndim);
    shape[d] = total;
    st = ddpm_tensor_new(&o, ref->ndim, shape, dt, ref->device);
  }
  if (!st) {
    ddpm_call c = {.op = DDPM_OP_CAT, .nout = 1, .out = {o}, .i = {d}, .list = cast, .nlist = n};
    st = ddpm_dispatch(&c);
  }
  if (!st && ddpm_is_float(dt)) {
    ddpm_node *nd = ddpm_ag_begin(DDPM_OP_CAT, n, ts);
    if (nd) {
      nd->i[0] = d;
      ddpm_ag_finish(nd, o);
    }
  }
  for (int k = 0; k < n; k++) ddpm_tensor_release(cast[k]);
  free(cast);
  if (st) {
    ddpm_tensor_release(o);
    return st;
  }
  *out = o;
  return DDPM_OK;
}

int bw_CAT(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  int d = (int)n->i[0];
  int64_t off = 0;
  for (int k = 0; k < n->nin; k++) {
    const ddpm_meta *m = &n->in_meta[k];
    if (m->ndim == 1 && m->shape[0] == 0 && g->ndim != 1) continue;
    int64_t len = m->shape[d];
    if (ddpm_node_needs(n, k)) {
      ddpm_tensor *s = NULL;
      DDPM_TRY(ddpm_narrow(&s, g, d, off, len));
      if (s->dtype != m->dtype) {
        int st = ddpm_cast(&gin[k], s, m->dtype);
        ddpm_tensor_release(s);
        DDPM_TRY(st);
      } else {
        gin[k] = s;
      }
    }
    off += len;
  }
  return DDPM_OK;
}

int ddpm_stack(ddpm_tensor **out, int n, ddpm_tensor *const *ts, int dim) {
  DDPM_TRY(ddpm_check_out("stack", out));
  if (n <= 0 || !ts) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "stack: expected a non-empty list of tensors");
  for (int k = 0; k < n; k++) {
    if (!ts[k]) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "stack: element %d of the list is nil, expected a tensor", k + 1);
    if (!ddpm_same_shape(ts[k], ts[0]))
      return DDPM_FAIL(DDPM_ERR_SHAPE, "stack: expects each tensor to be equal size, but got %s at entry 1 and %s at entry %d",
                       ddpm_fmt_shape(ts[0]->ndim, ts[0]->shape), ddpm_fmt_shape(ts[k]->ndim, ts[k]->shape), k + 1);
  }
  if (dim < -(ts[0]->ndim + 1) || dim > ts[0]->ndim)
    return DDPM_FAIL(DDPM_ERR_INDEX, "stack: dim %d out of range for tensors with %d dims", dim, ts[0]->ndim);
  ddpm_tensor **u = calloc((size_t)n, sizeof *u);
  if (!u) return DDPM_FAIL(DDPM_ERR_OOM, "stack: out of memory");
  int st = DDPM_OK;
  for (int k = 0; k < n && !st; k++) st = ddpm_unsqueeze(&u[k], ts[k], dim);
  if (!st) st = ddpm_cat(out, n, u, dim < 0 ? dim + ts[0]->ndim + 1 : dim);
  for (int k = 0; k < n; k++) ddpm_tensor_release(u[k]);
  free(u);
  return st;
}
