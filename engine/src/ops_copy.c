/* ops_copy.c: contiguous, clone, to (dtype/device), detach, copy_, and their gradients. */
#include "internal.h"

/* A raw converting copy dst <- src (same shape after broadcasting), any devices, no autograd. */
static int raw_copy(ddpm_tensor *dst, ddpm_tensor *src) {
  if (dst->device == src->device) {
    ddpm_call c = {.op = DDPM_OP_COPY, .nin = 1, .nout = 1, .in = {src}, .out = {dst}};
    return ddpm_dispatch(&c);
  }
  /* across devices: convert on the source side into a contiguous block, move the bytes,
   * then scatter on the destination side if dst is strided */
  int st = DDPM_OK;
  ddpm_tensor *packed = NULL, *landing = NULL;
  DDPM_CHECK(ddpm_tensor_new(&packed, dst->ndim, dst->shape, dst->dtype, src->device));
  {
    ddpm_tensor *ex = NULL;
    DDPM_CHECK(ddpm_tensor_alias(&ex, src, src->ndim, src->shape, src->strides, src->offset));
    ddpm_call c = {.op = DDPM_OP_COPY, .nin = 1, .nout = 1, .in = {ex}, .out = {packed}};
    st = ddpm_dispatch(&c);
    ddpm_tensor_release(ex);
    if (st) goto done;
  }
  size_t nbytes = (size_t)ddpm_tensor_numel(dst) * (size_t)ddpm_dsize(dst->dtype);
  const ddpm_backend *be = ddpm_backend_for(dst->device != DDPM_CPU ? dst->device : src->device);
  if (!be) {
    st = DDPM_FAIL(DDPM_ERR_DEVICE, "copy: device %s is not available",
                   ddpm_fmt_device(dst->device != DDPM_CPU ? dst->device : src->device));
    goto done;
  }
  if (ddpm_tensor_is_contiguous(dst)) {
    st = be->memcpy(ddpm_ptr(dst), dst->device, ddpm_ptr(packed), src->device, nbytes);
  } else {
    DDPM_CHECK(ddpm_tensor_new(&landing, dst->ndim, dst->shape, dst->dtype, dst->device));
    DDPM_CHECK(be->memcpy(ddpm_ptr(landing), dst->device, ddpm_ptr(packed), src->device, nbytes));
    ddpm_call c = {.op = DDPM_OP_COPY, .nin = 1, .nout = 1, .in = {landing}, .out = {dst}};
    st = ddpm_dispatch(&c);
  }
done:
  ddpm_tensor_release(packed);
  ddpm_tensor_release(landing);
  return st;
}

/* New tensor of the given dtype/device holding t's values; recorded as COPY for autograd. */
static int copy_to_new(ddpm_tensor **out, ddpm_tensor *t, int dtype, int device) {
  ddpm_tensor *o;
  DDPM_TRY(ddpm_tensor_new(&o, t->ndim, t->shape, dtype, device));
  int st = raw_copy(o, t);
  if (st) {
    ddpm_tensor_release(o);
    return st;
  }
  if (ddpm_is_float(dtype)) {
    ddpm_node *n = ddpm_ag_begin(DDPM_OP_COPY, 1, &t);
    if (n) ddpm_ag_finish(n, o);
  }
  *out = o;
  return DDPM_OK;
}

int bw_COPY(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  const ddpm_meta *m = &n->in_meta[0];
  return ddpm_to(&gin[0], g, m->dtype, m->device);
}

int ddpm_contiguous(ddpm_tensor **out, ddpm_tensor *t) {
  DDPM_TRY(ddpm_check_out("contiguous", out));
  DDPM_TRY(ddpm_check_tensor("contiguous", "self", t));
  if (ddpm_tensor_is_contiguous(t)) {
    ddpm_tensor_retain(t);
    *out = t;
    return DDPM_OK;
  }
  return copy_to_new(out, t, t->dtype, t->device);
}

int ddpm_clone(ddpm_tensor **out, ddpm_tensor *t) {
  DDPM_TRY(ddpm_check_out("clone", out));
  DDPM_TRY(ddpm_check_tensor("clone", "self", t));
  return copy_to_new(out, t, t->dtype, t->device);
}

int ddpm_to(ddpm_tensor **out, ddpm_tensor *t, int dtype, int device) {
  DDPM_TRY(ddpm_check_out("to", out));
  DDPM_TRY(ddpm_check_tensor("to", "self", t));
  if (!ddpm_valid_dtype(dtype)) return DDPM_FAIL(DDPM_ERR_DTYPE, "to: invalid dtype id %d", dtype);
  if (!ddpm_backend_for(device)) return ddpm_check_move("to", t, device);
  if (dtype == t->dtype && device == t->device) {
    ddpm_tensor_retain(t);
    *out = t;
    return DDPM_OK;
  }
  return copy_to_new(out, t, dtype, device);
}

int ddpm_cast(ddpm_tensor **out, ddpm_tensor *t, int dtype) { return ddpm_to(out, t, dtype, t->device); }

int ddpm_detach(ddpm_tensor **out, ddpm_tensor *t) {
  DDPM_TRY(ddpm_check_out("detach", out));
  DDPM_TRY(ddpm_check_tensor("detach", "self", t));
  return ddpm_tensor_alias(out, t, t->ndim, t->shape, t->strides, t->offset);
}

int ddpm_copy_(ddpm_tensor *dst, ddpm_tensor *src) {
  DDPM_TRY(ddpm_check_tensor("copy_", "self", dst));
  DDPM_TRY(ddpm_check_tensor("copy_", "src", src));
  DDPM_TRY(ddpm_check_inplace("copy_", dst));
  if (ddpm_grad_enabled() && src->requires_grad)
    return DDPM_FAIL(DDPM_ERR_AUTOGRAD,
                     "copy_: src %s requires grad; an in-place copy is not differentiable here (use :clone(), or "
                     "copy under ddpm.no_grad)",
                     ddpm_fmt_tensor(src));
  int nb;
  int64_t bs[DDPM_MAX_DIMS];
  DDPM_TRY(ddpm_broadcast_shapes("copy_", dst->ndim, dst->shape, src->ndim, src->shape, &nb, bs));
  if (nb != dst->ndim || memcmp(bs, dst->shape, sizeof(int64_t) * (size_t)nb))
    return DDPM_FAIL(DDPM_ERR_SHAPE, "copy_: source %s cannot be broadcast to destination %s",
                     ddpm_fmt_tensor(src), ddpm_fmt_tensor(dst));
  /* expand src explicitly so every backend sees operands of the destination's shape */
  ddpm_tensor *ex = NULL;
  int64_t es[DDPM_MAX_DIMS];
  int off = dst->ndim - src->ndim;
  for (int d = 0; d < dst->ndim; d++) {
    int sd = d - off;
    es[d] = (sd < 0 || src->shape[sd] == 1) ? 0 : src->strides[sd];
  }
  DDPM_TRY(ddpm_tensor_alias(&ex, src, dst->ndim, dst->shape, es, src->offset));
  int st = raw_copy(dst, ex);
  ddpm_tensor_release(ex);
  if (!st) ddpm_bump_version(dst);
  return st;
}
