/* nn_common.h: small helpers shared by the nn entry points (ops_conv.c, ops_norm.c, ...). */
#ifndef DDPM_NN_COMMON_H
#define DDPM_NN_COMMON_H
#include "internal.h"

/* A contiguous version of t (new reference; t itself when already contiguous), made without
 * recording autograd: entry points record their own node against the caller's tensor, and the
 * kernels of the nn ops read contiguous operands only. NULL stays NULL. */
static inline int nn_contig(ddpm_tensor **out, ddpm_tensor *t) {
  *out = NULL;
  if (!t) return DDPM_OK;
  if (ddpm_tensor_is_contiguous(t)) {
    ddpm_tensor_retain(t);
    *out = t;
    return DDPM_OK;
  }
  ddpm_tensor *c = NULL;
  DDPM_TRY(ddpm_tensor_new(&c, t->ndim, t->shape, t->dtype, t->device));
  ddpm_call k = {.op = DDPM_OP_COPY, .nin = 1, .nout = 1, .in = {t}, .out = {c}};
  int st = ddpm_dispatch(&k);
  if (st) {
    ddpm_tensor_release(c);
    return st;
  }
  *out = c;
  return DDPM_OK;
}

/* The nn ops compute in floating point only; integers are refused rather than silently cast,
 * as in PyTorch ("expected scalar type Float but found Long"). */
static inline int nn_need_float(const char *op, const char *what, const ddpm_tensor *t) {
  if (!ddpm_is_float(t->dtype))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: %s must be a floating point tensor, got %s (convert with :float())", op,
                     what, ddpm_fmt_tensor(t));
  return DDPM_OK;
}

/* An optional parameter tensor (weight, bias) must share the input's dtype and device. */
static inline int nn_need_like(const char *op, const char *what, const ddpm_tensor *t, const ddpm_tensor *x) {
  if (!t) return DDPM_OK;
  DDPM_TRY(ddpm_check_same_device(op, x, t));
  if (t->dtype != x->dtype)
    return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: %s %s must have the dtype of the input %s", op, what, ddpm_fmt_tensor(t),
                     ddpm_fmt_tensor(x));
  return DDPM_OK;
}

/* Half types (bfloat16, float16) on the CPU: the CPU nn kernels compute in float32/float64, so an
 * op given half tensors runs on float32 copies and rounds its output back to the input's dtype
 * (PyTorch's CPU kernels compute half types in float too).  The casts are differentiable COPY
 * nodes, so gradients reach the half tensors in their own dtype. */
static inline bool nn_half_on_cpu(const ddpm_tensor *x) {
  return x && x->device == DDPM_CPU && (x->dtype == DDPM_BFLOAT16 || x->dtype == DDPM_FLOAT16);
}
/* wide[k]: a float32 copy of in[k] when that is a half tensor, else in[k] retained (NULL stays NULL);
 * release with nn_release */
static inline int nn_widen(int n, ddpm_tensor *const *in, ddpm_tensor **wide) {
  for (int k = 0; k < n; k++) wide[k] = NULL;
  for (int k = 0; k < n; k++) {
    if (nn_half_on_cpu(in[k])) {
      int st = ddpm_cast(&wide[k], in[k], DDPM_FLOAT32);
      if (st) {
        for (int j = 0; j < k; j++) ddpm_tensor_release(wide[j]);
        return st;
      }
    } else if (in[k]) {
      ddpm_tensor_retain(in[k]);
      wide[k] = in[k];
    }
  }
  return DDPM_OK;
}

/* Attach node n to out after saving the given tensors (NULL entries keep their slot). */
static inline int nn_record(ddpm_node *n, ddpm_tensor *out, int nsave, ddpm_tensor *const *save) {
  if (!n) return DDPM_OK;
  for (int k = 0; k < nsave; k++) {
    int st = ddpm_ag_save(n, save[k]);
    if (st) {
      ddpm_node_release(n);
      return st;
    }
  }
  ddpm_ag_finish(n, out);
  return DDPM_OK;
}

/* Release a list of tensors (NULLs allowed). */
static inline void nn_release(int n, ddpm_tensor **ts) {
  for (int k = 0; k < n; k++) {
    ddpm_tensor_release(ts[k]);
    ts[k] = NULL;
  }
}
#endif
