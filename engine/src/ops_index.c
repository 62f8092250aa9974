/* ops_index.c: index_select (gather whole slices along a dim) and index_add_ (its adjoint):
 * DataLoader batches and embedding lookups are both gathers of rows. */
#include "internal.h"

static int check_index(const char *op, const ddpm_tensor *x, int d, const ddpm_tensor *index) {
  if (index->ndim > 1)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: index must be 0-D or 1-D, got %s", op, ddpm_fmt_tensor(index));
  if (index->dtype != DDPM_INT64 && index->dtype != DDPM_INT32)
    return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: index must be int64 or int32, got %s", op, ddpm_fmt_tensor(index));
  DDPM_TRY(ddpm_check_same_device(op, x, index));
  (void)d;
  return DDPM_OK;
}

int ddpm_index_select(ddpm_tensor **out, ddpm_tensor *x, int dim, ddpm_tensor *index) {
  DDPM_TRY(ddpm_check_tensor("index_select", "input", x));
  DDPM_TRY(ddpm_check_tensor("index_select", "index", index));
  if (x->ndim == 0) return DDPM_FAIL(DDPM_ERR_SHAPE, "index_select: input must have at least one dim");
  int d;
  DDPM_TRY(ddpm_wrap_dim("index_select", dim, x->ndim, &d));
  DDPM_TRY(check_index("index_select", x, d, index));
  int64_t shape[DDPM_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[d] = ddpm_tensor_numel(index);
  ddpm_tensor *o = NULL, *idx = NULL;
  DDPM_TRY(ddpm_contiguous(&idx, index));
  int st = ddpm_tensor_new(&o, x->ndim, shape, x->dtype, x->device);
  if (!st) {
    ddpm_call c = {.op = DDPM_OP_INDEX_SELECT, .nin = 2, .nout = 1, .in = {x, idx}, .out = {o}, .i = {d}};
    st = ddpm_dispatch(&c);
  }
  if (!st && ddpm_is_float(x->dtype)) {
    ddpm_tensor *ins[2] = {x, idx};
    ddpm_node *n = ddpm_ag_begin(DDPM_OP_INDEX_SELECT, 2, ins);
    if (n) {
      n->i[0] = d;
      st = ddpm_ag_save(n, idx);
      if (st) ddpm_node_release(n);
      else ddpm_ag_finish(n, o);
    }
  }
  ddpm_tensor_release(idx);
  if (st) {
    ddpm_tensor_release(o);
    return st;
  }
  *out = o;
  return DDPM_OK;
}

int bw_INDEX_SELECT(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  ddpm_tensor *z = NULL;
  DDPM_TRY(ddpm_zeros(&z, &n->in_meta[0]));
  ddpm_tensor *gc = NULL;
  int st = ddpm_cast(&gc, g, z->dtype);
  if (!st) st = ddpm_index_add_(z, (int)n->i[0], n->saved[0], gc);
  ddpm_tensor_release(gc);
  if (st) {
    ddpm_tensor_release(z);
    return st;
  }
  gin[0] = z;
  return DDPM_OK;
}

/* x[..., index[k], ...] += src[..., k, ...] along dim; repeated indices accumulate. */
int ddpm_index_add_(ddpm_tensor *x, int dim, ddpm_tensor *index, ddpm_tensor *src) {
  DDPM_TRY(ddpm_check_tensor("index_add_", "self", x));
  DDPM_TRY(ddpm_check_tensor("index_add_", "index", index));
  DDPM_TRY(ddpm_check_tensor("index_add_", "source", src));
  DDPM_TRY(ddpm_check_inplace("index_add_", x));
  if (x->ndim == 0) return DDPM_FAIL(DDPM_ERR_SHAPE, "index_add_: self must have at least one dim");
  int d;
  DDPM_TRY(ddpm_wrap_dim("index_add_", dim, x->ndim, &d));
  DDPM_TRY(check_index("index_add_", x, d, index));
  DDPM_TRY(ddpm_check_same_device("index_add_", x, src));
  if (src->dtype != x->dtype)
    return DDPM_FAIL(DDPM_ERR_DTYPE, "index_add_: source %s must have the dtype of self %s", ddpm_fmt_tensor(src),
                     ddpm_fmt_tensor(x));
  bool ok = src->ndim == x->ndim;
  for (int i = 0; ok && i < x->ndim; i++)
    ok = src->shape[i] == (i == d ? ddpm_tensor_numel(index) : x->shape[i]);
  if (!ok)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "index_add_: source %s must match self %s except in dim %d (of size %lld)",
                     ddpm_fmt_tensor(src), ddpm_fmt_tensor(x), d, (long long)ddpm_tensor_numel(index));
  ddpm_tensor *idx = NULL;
  DDPM_TRY(ddpm_contiguous(&idx, index));
  ddpm_call c = {.op = DDPM_OP_INDEX_ADD, .nin = 2, .nout = 1, .in = {idx, src}, .out = {x}, .i = {d}};
  int st = ddpm_dispatch(&c);
  ddpm_tensor_release(idx);
  if (!st) ddpm_bump_version(x);
  return st;
}
