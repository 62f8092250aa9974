/* ops_optim.c: entry points of the fused optimizer ops (Adam/AdamW, SGD, EMA, loss-scaler
 * unscale, total gradient norm, foreach scaling): validate the parallel tensor arrays once, pack
 * them into one kernel call, and bump the versions of what was written.
 *
 * Kernel contract (shared by the CPU kernels in engine/cpu/optim.c and any other backend):
 * c->list holds the role arrays back to back (role r of tensor k at list[r * n + k]), c->i[0] = n,
 * c->i[1] = flags, c->i[2] = a host pointer (steps or fresh flags) cast to int64 or 0, and c->f
 * the hyper-parameters in the order each entry point documents.  c->in[0] is the first tensor,
 * only so the dispatcher knows the device. */
#include "internal.h"

#include <math.h>

/* Grads may be strided (e.g. set by the user); kernels read them flat, so such grads travel as
 * contiguous copies.  Everything written must already be contiguous. */
typedef struct {
  ddpm_tensor **list;
  ddpm_tensor **owned; /* contiguous copies made here, released at the end */
  int nowned;
} packed;

static void packed_free(packed *p, int n) {
  for (int k = 0; k < p->nowned; k++) ddpm_tensor_release(p->owned[k]);
  free(p->owned);
  free(p->list);
  (void)n;
}

static int packed_new(packed *p, const char *op, int n, int roles) {
  memset(p, 0, sizeof *p);
  if (n < 0) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: %d tensors; expected a non-negative count", op, n);
  p->list = calloc((size_t)(n > 0 ? n : 1) * (size_t)roles, sizeof *p->list);
  p->owned = calloc((size_t)(n > 0 ? n : 1), sizeof *p->owned);
  if (!p->list || !p->owned) {
    free(p->list);
    free(p->owned);
    return DDPM_FAIL(DDPM_ERR_OOM, "%s: out of host memory for %d tensor pointers", op, n);
  }
  return DDPM_OK;
}

static int check_param(const char *op, int k, const ddpm_tensor *p) {
  if (!p) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: parameter %d is nil, expected a tensor", op, k + 1);
  if (p->dtype != DDPM_FLOAT32 && p->dtype != DDPM_FLOAT64)
    return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: parameter %d is %s; expected float32 or float64", op, k + 1,
                     ddpm_fmt_tensor(p));
  if (p->grad_fn)
    return DDPM_FAIL(DDPM_ERR_AUTOGRAD,
                     "%s: parameter %d (%s) is not a leaf (it was made by %s); optimize leaf tensors only", op, k + 1,
                     ddpm_fmt_tensor(p), ddpm_opname(p->grad_fn->op));
  if (!ddpm_tensor_is_contiguous(p) || ddpm_has_internal_overlap(p))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: parameter %d (%s) must be contiguous to be updated in place", op,
                     k + 1, ddpm_fmt_tensor(p));
  return DDPM_OK;
}

/* A tensor that must match parameter k exactly; `writable` ones must also be contiguous. */
static int check_like(const char *op, const char *what, int k, const ddpm_tensor *t, const ddpm_tensor *p,
                      bool writable) {
  if (!t) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: %s %d is nil, expected a tensor", op, what, k + 1);
  if (t->dtype != p->dtype || t->device != p->device || !ddpm_same_shape(t, p))
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: %s %d is %s but its parameter is %s; expected the same shape, dtype and device",
                     op, what, k + 1, ddpm_fmt_tensor(t), ddpm_fmt_tensor(p));
  if (writable && (!ddpm_tensor_is_contiguous(t) || ddpm_has_internal_overlap(t)))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: %s %d (%s) must be contiguous", op, what, k + 1, ddpm_fmt_tensor(t));
  return DDPM_OK;
}

/* Put grad k into the pack, as a contiguous copy when it is strided. */
static int pack_grad(packed *p, int slot, ddpm_tensor *g) {
  if (ddpm_tensor_is_contiguous(g) && !ddpm_has_internal_overlap(g)) {
    p->list[slot] = g;
    return DDPM_OK;
  }
  ddpm_tensor *c = NULL;
  DDPM_TRY(ddpm_contiguous(&c, g));
  p->owned[p->nowned++] = c;
  p->list[slot] = c;
  return DDPM_OK;
}

static int run(int op, packed *p, int n, int roles, int64_t flags, int64_t hostptr, const double *f, int nf) {
  if (n == 0) return DDPM_OK;
  ddpm_call c = {.op = op, .nin = 1, .nout = 0, .in = {p->list[0]}, .list = p->list, .nlist = n * roles};
  c.i[0] = n;
  c.i[1] = flags;
  c.i[2] = hostptr;
  for (int k = 0; k < nf; k++) c.f[k] = f[k];
  return ddpm_dispatch(&c);
}

static int check_hyper(const char *op, const char *name, double v, double lo, double hi, bool hi_open) {
  if (!(v >= lo) || (hi_open ? !(v < hi) : !(v <= hi)))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: %s = %g; expected a value in [%g, %g%s", op, name, v, lo, hi,
                     hi_open ? ")" : "]");
  return DDPM_OK;
}

/* f: lr, beta1, beta2, eps, weight_decay */
int ddpm_adam_step_(int n, ddpm_tensor *const *params, ddpm_tensor *const *grads, ddpm_tensor *const *exp_avgs,
                    ddpm_tensor *const *exp_avg_sqs, ddpm_tensor *const *max_exp_avg_sqs, const double *steps,
                    double lr, double beta1, double beta2, double eps, double weight_decay, int flags) {
  const char *op = (flags & 4) ? "adamw_step" : "adam_step";
  bool amsgrad = flags & 1;
  DDPM_TRY(check_hyper(op, "lr", lr, 0, INFINITY, false));
  DDPM_TRY(check_hyper(op, "beta1", beta1, 0, 1, true));
  DDPM_TRY(check_hyper(op, "beta2", beta2, 0, 1, true));
  DDPM_TRY(check_hyper(op, "eps", eps, 0, INFINITY, false));
  DDPM_TRY(check_hyper(op, "weight_decay", weight_decay, 0, INFINITY, false));
  if (n > 0 && (!params || !grads || !exp_avgs || !exp_avg_sqs || !steps || (amsgrad && !max_exp_avg_sqs)))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: a tensor array or the step array is NULL", op);
  packed p;
  const int roles = 5;
  DDPM_TRY(packed_new(&p, op, n, roles));
  int st = DDPM_OK;
  for (int k = 0; k < n && !st; k++) {
    st = check_param(op, k, params[k]);
    if (!st) st = check_like(op, "grad", k, grads[k], params[k], false);
    if (!st) st = check_like(op, "exp_avg", k, exp_avgs[k], params[k], true);
    if (!st) st = check_like(op, "exp_avg_sq", k, exp_avg_sqs[k], params[k], true);
    if (!st && amsgrad) st = check_like(op, "max_exp_avg_sq", k, max_exp_avg_sqs[k], params[k], true);
    if (!st && !(steps[k] >= 1))
      st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: step %g for parameter %d; expected a count >= 1", op, steps[k], k + 1);
    if (st) break;
    p.list[k] = params[k];
    st = pack_grad(&p, n + k, grads[k]);
    p.list[2 * n + k] = exp_avgs[k];
    p.list[3 * n + k] = exp_avg_sqs[k];
    p.list[4 * n + k] = amsgrad ? max_exp_avg_sqs[k] : exp_avg_sqs[k];
  }
  if (!st) {
    double f[5] = {lr, beta1, beta2, eps, weight_decay};
    st = run(DDPM_OP_ADAM_STEP, &p, n, roles, flags, (int64_t)(intptr_t)steps, f, 5);
  }
  if (!st)
    for (int k = 0; k < n; k++) {
      ddpm_bump_version(params[k]);
      ddpm_bump_version(exp_avgs[k]);
      ddpm_bump_version(exp_avg_sqs[k]);
      if (amsgrad) ddpm_bump_version(max_exp_avg_sqs[k]);
    }
  packed_free(&p, n);
  return st;
}

/* f: lr, momentum, dampening, weight_decay */
int ddpm_sgd_step_(int n, ddpm_tensor *const *params, ddpm_tensor *const *grads,
                   ddpm_tensor *const *momentum_buffers, const int32_t *fresh, double lr, double momentum,
                   double dampening, double weight_decay, int flags) {
  const char *op = "sgd_step";
  DDPM_TRY(check_hyper(op, "lr", lr, 0, INFINITY, false));
  DDPM_TRY(check_hyper(op, "momentum", momentum, 0, INFINITY, false));
  DDPM_TRY(check_hyper(op, "weight_decay", weight_decay, 0, INFINITY, false));
  if (!isfinite(dampening)) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: dampening = %g; expected a finite value", op, dampening);
  if ((flags & 1) && (momentum <= 0 || dampening != 0))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: nesterov momentum requires a momentum > 0 and zero dampening", op);
  bool mom = momentum != 0;
  if (n > 0 && (!params || !grads || (mom && (!momentum_buffers || !fresh))))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: a tensor array or the fresh-buffer flags are NULL", op);
  packed p;
  const int roles = 3;
  DDPM_TRY(packed_new(&p, op, n, roles));
  int st = DDPM_OK;
  for (int k = 0; k < n && !st; k++) {
    st = check_param(op, k, params[k]);
    if (!st) st = check_like(op, "grad", k, grads[k], params[k], false);
    if (!st && mom) st = check_like(op, "momentum_buffer", k, momentum_buffers[k], params[k], true);
    if (st) break;
    p.list[k] = params[k];
    st = pack_grad(&p, n + k, grads[k]);
    p.list[2 * n + k] = mom ? momentum_buffers[k] : params[k];
  }
  if (!st) {
    double f[4] = {lr, momentum, dampening, weight_decay};
    st = run(DDPM_OP_SGD_STEP, &p, n, roles, flags, mom ? (int64_t)(intptr_t)fresh : 0, f, 4);
  }
  if (!st)
    for (int k = 0; k < n; k++) {
      ddpm_bump_version(params[k]);
      if (mom) ddpm_bump_version(momentum_buffers[k]);
    }
  packed_free(&p, n);
  return st;
}

/* f: decay */
int ddpm_ema_update_(int n, ddpm_tensor *const *shadow, ddpm_tensor *const *params, double decay) {
  const char *op = "ema_update";
  DDPM_TRY(check_hyper(op, "decay", decay, 0, 1, false));
  if (n > 0 && (!shadow || !params)) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: a tensor array is NULL", op);
  packed p;
  DDPM_TRY(packed_new(&p, op, n, 2));
  int st = DDPM_OK;
  for (int k = 0; k < n && !st; k++) {
    const ddpm_tensor *s = shadow[k];
    if (!s) {
      st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: shadow parameter %d is nil, expected a tensor", op, k + 1);
      break;
    }
    if (s->dtype != DDPM_FLOAT32 && s->dtype != DDPM_FLOAT64)
      st = DDPM_FAIL(DDPM_ERR_DTYPE, "%s: shadow parameter %d is %s; expected float32 or float64", op, k + 1,
                     ddpm_fmt_tensor(s));
    else if (!ddpm_tensor_is_contiguous(s) || ddpm_has_internal_overlap(s))
      st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: shadow parameter %d (%s) must be contiguous", op, k + 1,
                     ddpm_fmt_tensor(s));
    if (!st) st = check_like(op, "parameter", k, params[k], s, false);
    if (st) break;
    p.list[k] = shadow[k];
    st = pack_grad(&p, n + k, params[k]);
  }
  if (!st) {
    double f[1] = {decay};
    st = run(DDPM_OP_EMA_UPDATE, &p, n, 2, 0, 0, f, 1);
  }
  if (!st)
    for (int k = 0; k < n; k++) ddpm_bump_version(shadow[k]);
  packed_free(&p, n);
  return st;
}

static int check_floats(const char *op, int n, ddpm_tensor *const *ts, bool writable) {
  if (n > 0 && !ts) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: the tensor array is NULL", op);
  for (int k = 0; k < n; k++) {
    const ddpm_tensor *t = ts[k];
    if (!t) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: tensor %d is nil, expected a tensor", op, k + 1);
    if (t->dtype != DDPM_FLOAT32 && t->dtype != DDPM_FLOAT64)
      return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: tensor %d is %s; expected float32 or float64", op, k + 1,
                       ddpm_fmt_tensor(t));
    if (writable && (!ddpm_tensor_is_contiguous(t) || ddpm_has_internal_overlap(t)))
      return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: tensor %d (%s) must be contiguous to be updated in place", op, k + 1,
                       ddpm_fmt_tensor(t));
    if (writable && t->requires_grad && ddpm_grad_enabled() && t->grad_fn)
      return DDPM_FAIL(DDPM_ERR_AUTOGRAD, "%s: tensor %d (%s) is part of a live autograd graph", op, k + 1,
                       ddpm_fmt_tensor(t));
    if (k > 0 && t->device != ts[0]->device)
      return DDPM_FAIL(DDPM_ERR_DEVICE, "%s: tensor %d is %s but tensor 1 is %s; expected one device", op, k + 1,
                       ddpm_fmt_tensor(t), ddpm_fmt_tensor(ts[0]));
  }
  return DDPM_OK;
}

/* f: inv_scale.  found_inf is list[n]. */
int ddpm_amp_unscale_(int n, ddpm_tensor *const *tensors, ddpm_tensor *found_inf, double inv_scale) {
  const char *op = "amp_unscale";
  DDPM_TRY(check_floats(op, n, tensors, true));
  DDPM_TRY(ddpm_check_tensor(op, "found_inf", found_inf));
  if ((found_inf->dtype != DDPM_FLOAT32 && found_inf->dtype != DDPM_FLOAT64) || ddpm_tensor_numel(found_inf) != 1)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: found_inf is %s; expected a float32 or float64 tensor of one element", op,
                     ddpm_fmt_tensor(found_inf));
  if (n > 0 && found_inf->device != tensors[0]->device)
    return DDPM_FAIL(DDPM_ERR_DEVICE, "%s: found_inf is %s but the tensors are on %s", op,
                     ddpm_fmt_tensor(found_inf), ddpm_fmt_device(tensors[0]->device));
  packed p;
  DDPM_TRY(packed_new(&p, op, n + 1, 1));
  for (int k = 0; k < n; k++) p.list[k] = tensors[k];
  p.list[n] = found_inf;
  int st = DDPM_OK;
  if (n > 0) {
    ddpm_call c = {.op = DDPM_OP_AMP_UNSCALE, .nin = 1, .in = {found_inf}, .list = p.list, .nlist = n + 1};
    c.i[0] = n;
    c.f[0] = inv_scale;
    st = ddpm_dispatch(&c);
  }
  if (!st) {
    for (int k = 0; k < n; k++) ddpm_bump_version(tensors[k]);
    ddpm_bump_version(found_inf);
  }
  packed_free(&p, n);
  return st;
}

/* f: norm_type.  The 0-d result is list[n] (written by the kernel). */
int ddpm_total_norm(ddpm_tensor **out, int n, ddpm_tensor *const *tensors, double norm_type) {
  const char *op = "total_norm";
  if (!out) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: out is NULL", op);
  if (n < 1) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: no tensors; expected at least one", op);
  DDPM_TRY(check_floats(op, n, tensors, false));
  if (!(norm_type > 0) && !(norm_type == 0))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: norm_type = %g; expected a non-negative number or inf", op, norm_type);
  for (int k = 1; k < n; k++)
    if (tensors[k]->dtype != tensors[0]->dtype)
      return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: tensor %d is %s but tensor 1 is %s; expected one dtype", op, k + 1,
                       ddpm_fmt_tensor(tensors[k]), ddpm_fmt_tensor(tensors[0]));
  packed p;
  DDPM_TRY(packed_new(&p, op, n + 1, 1));
  int st = DDPM_OK;
  for (int k = 0; k < n && !st; k++) st = pack_grad(&p, k, tensors[k]);
  ddpm_tensor *o = NULL;
  if (!st) st = ddpm_tensor_new(&o, 0, NULL, tensors[0]->dtype, tensors[0]->device);
  if (!st) {
    p.list[n] = o;
    ddpm_call c = {.op = DDPM_OP_TOTAL_NORM, .nin = 1, .in = {p.list[0]}, .list = p.list, .nlist = n + 1};
    c.i[0] = n;
    c.f[0] = norm_type;
    st = ddpm_dispatch(&c);
  }
  packed_free(&p, n);
  if (st) {
    if (o) ddpm_tensor_release(o);
    return st;
  }
  *out = o;
  return DDPM_OK;
}

/* f: s */
int ddpm_foreach_mul_scalar_(int n, ddpm_tensor *const *tensors, double s) {
  const char *op = "foreach_mul_scalar_";
  DDPM_TRY(check_floats(op, n, tensors, true));
  if (n == 0) return DDPM_OK;
  ddpm_call c = {.op = DDPM_OP_FOREACH_MUL_SCALAR, .nin = 1, .in = {tensors[0]}, .list = tensors, .nlist = n};
  c.i[0] = n;
  c.f[0] = s;
  int st = ddpm_dispatch(&c);
  if (!st)
    for (int k = 0; k < n; k++) ddpm_bump_version(tensors[k]);
  return st;
}
