/* ops_reduce.c: sum, mean, var, amax/amin, max/min over a dim, argmax/argmin, and gradients. */
#include "internal.h"
#include "autocast.h" /* cuda/autocast.h: sum/mean of half inputs run in float32 under autocast */
#include <math.h>

static int dims_mask(const char *op, const ddpm_tensor *x, int ndims, const int64_t *dims, uint32_t *mask) {
  *mask = 0;
  if (ndims == 0) {
    *mask = x->ndim ? (uint32_t)((1u << x->ndim) - 1) : 0;
    return DDPM_OK;
  }
  if (ndims < 0 || (ndims > 0 && !dims)) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: invalid dims list", op);
  for (int k = 0; k < ndims; k++) {
    int d;
    DDPM_TRY(ddpm_wrap_dim(op, (int)dims[k], x->ndim, &d));
    if (x->ndim == 0) continue;
    if (*mask & (1u << d)) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: dim %d appears twice", op, d);
    *mask |= 1u << d;
  }
  return DDPM_OK;
}

static void reduced_shape(const ddpm_tensor *x, uint32_t mask, int keepdim, int *nd, int64_t *shape) {
  int n = 0;
  for (int d = 0; d < x->ndim; d++) {
    if ((mask >> d) & 1u) {
      if (keepdim) shape[n++] = 1;
    } else {
      shape[n++] = x->shape[d];
    }
  }
  *nd = n;
}

/* Run a reduction kernel into a keepdim-shaped output, then drop the dims if asked. */
static int run_reduction(ddpm_tensor **out, int op, ddpm_tensor *x, uint32_t mask, int keepdim, int odt) {
  int nk;
  int64_t kshape[DDPM_MAX_DIMS];
  reduced_shape(x, mask, 1, &nk, kshape);
  ddpm_tensor *o = NULL;
  DDPM_TRY(ddpm_tensor_new(&o, nk, kshape, odt, x->device));
  ddpm_call c = {.op = op, .nin = 1, .nout = 1, .in = {x}, .out = {o}, .i = {mask}};
  int st = ddpm_dispatch(&c);
  if (st) {
    ddpm_tensor_release(o);
    return st;
  }
  if (!keepdim) {
    int nd;
    int64_t shape[DDPM_MAX_DIMS], strides[DDPM_MAX_DIMS];
    reduced_shape(x, mask, 0, &nd, shape);
    ddpm_contiguous_strides(nd, shape, strides);
    ddpm_tensor *v = NULL;
    st = ddpm_tensor_alias(&v, o, nd, shape, strides, 0);
    ddpm_tensor_release(o);
    if (st) return st;
    o = v;
  }
  *out = o;
  return DDPM_OK;
}

int ddpm_sum_dims(ddpm_tensor **out, ddpm_tensor *x, uint32_t mask, int keepdim) {
  DDPM_TRY(ddpm_check_tensor("sum", "input", x));
  int odt = ddpm_is_float(x->dtype) ? x->dtype : DDPM_INT64;
  ddpm_tensor *o = NULL;
  DDPM_TRY(run_reduction(&o, DDPM_OP_SUM, x, mask, keepdim, odt));
  ddpm_node *n = ddpm_ag_begin(DDPM_OP_SUM, 1, &x);
  if (n) {
    n->i[0] = mask;
    n->i[1] = keepdim;
    ddpm_ag_finish(n, o);
  }
  *out = o;
  return DDPM_OK;
}

/* g (reduced shape) -> the input's shape, by re-inserting the dims and expanding */
static int expand_back(ddpm_tensor **out, ddpm_tensor *g, const ddpm_meta *m, uint32_t mask, int keepdim) {
  ddpm_tensor *k = NULL;
  if (!keepdim) {
    int64_t ks[DDPM_MAX_DIMS];
    for (int d = 0; d < m->ndim; d++) ks[d] = ((mask >> d) & 1u) ? 1 : m->shape[d];
    DDPM_TRY(ddpm_reshape(&k, g, m->ndim, ks));
  } else {
    ddpm_tensor_retain(g);
    k = g;
  }
  int st = ddpm_expand(out, k, m->ndim, m->shape);
  ddpm_tensor_release(k);
  return st;
}

int bw_SUM(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  return expand_back(&gin[0], g, &n->in_meta[0], (uint32_t)n->i[0], (int)n->i[1]);
}

int ddpm_sum(ddpm_tensor **out, ddpm_tensor *x, int ndims, const int64_t *dims, int keepdim) {
  DDPM_TRY(ddpm_check_out("sum", out));
  DDPM_TRY(ddpm_check_tensor("sum", "input", x));
  DDPM_AUTOCAST(DDPM_AUTOCAST_FP32, ddpm_sum(out, ac_[0], ndims, dims, keepdim), x); /* autocast hook (cuda/autocast.h) */
  uint32_t mask;
  DDPM_TRY(dims_mask("sum", x, ndims, dims, &mask));
  return ddpm_sum_dims(out, x, mask, keepdim);
}

static int64_t mask_count(const ddpm_tensor *x, uint32_t mask) {
  int64_t c = 1;
  for (int d = 0; d < x->ndim; d++)
    if ((mask >> d) & 1u) c *= x->shape[d];
  return c;
}

int ddpm_mean(ddpm_tensor **out, ddpm_tensor *x, int ndims, const int64_t *dims, int keepdim) {
  DDPM_TRY(ddpm_check_out("mean", out));
  DDPM_TRY(ddpm_check_tensor("mean", "input", x));
  DDPM_AUTOCAST(DDPM_AUTOCAST_FP32, ddpm_mean(out, ac_[0], ndims, dims, keepdim), x); /* autocast hook (cuda/autocast.h) */
  if (!ddpm_is_float(x->dtype))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "mean: input must be floating point, got %s (use :float() first)",
                     ddpm_fmt_tensor(x));
  uint32_t mask;
  DDPM_TRY(dims_mask("mean", x, ndims, dims, &mask));
  ddpm_tensor *s = NULL;
  DDPM_TRY(ddpm_sum_dims(&s, x, mask, keepdim));
  int st = ddpm_div_scalar(out, s, (double)mask_count(x, mask));
  ddpm_tensor_release(s);
  return st;
}

int ddpm_var(ddpm_tensor **out, ddpm_tensor *x, int ndims, const int64_t *dims, double correction, int keepdim) {
  DDPM_TRY(ddpm_check_out("var", out));
  DDPM_TRY(ddpm_check_tensor("var", "input", x));
  if (!ddpm_is_float(x->dtype))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "var: input must be floating point, got %s", ddpm_fmt_tensor(x));
  uint32_t mask;
  DDPM_TRY(dims_mask("var", x, ndims, dims, &mask));
  double n = (double)mask_count(x, mask);
  ddpm_tensor *m = NULL, *d = NULL, *d2 = NULL, *s = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(ddpm_sum_dims(&s, x, mask, 1));
  DDPM_CHECK(ddpm_div_scalar(&m, s, n));
  ddpm_tensor_release(s);
  s = NULL;
  DDPM_CHECK(ddpm_sub(&d, x, m));
  DDPM_CHECK(ddpm_mul(&d2, d, d));
  DDPM_CHECK(ddpm_sum_dims(&s, d2, mask, keepdim));
  st = ddpm_div_scalar(out, s, n - correction > 0 ? n - correction : 0.0);
done:
  ddpm_tensor_release(m);
  ddpm_tensor_release(d);
  ddpm_tensor_release(d2);
  ddpm_tensor_release(s);
  return st;
}

static int extreme(ddpm_tensor **out, int op, ddpm_tensor *x, int ndims, const int64_t *dims, int keepdim) {
  const char *name = ddpm_opname(op);
  DDPM_TRY(ddpm_check_tensor(name, "input", x));
  uint32_t mask;
  DDPM_TRY(dims_mask(name, x, ndims, dims, &mask));
  if (ddpm_tensor_numel(x) == 0)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: cannot reduce an empty tensor %s", name, ddpm_fmt_tensor(x));
  ddpm_tensor *o = NULL;
  DDPM_TRY(run_reduction(&o, op, x, mask, keepdim, x->dtype));
  ddpm_node *n = ddpm_ag_begin(op, 1, &x);
  if (n) {
    n->i[0] = mask;
    n->i[1] = keepdim;
    int st = ddpm_ag_save(n, x);
    if (!st) st = ddpm_ag_save(n, o);
    if (st) {
      ddpm_node_release(n);
      ddpm_tensor_release(o);
      return st;
    }
    ddpm_ag_finish(n, o);
  }
  *out = o;
  return DDPM_OK;
}
int ddpm_amax(ddpm_tensor **out, ddpm_tensor *x, int ndims, const int64_t *dims, int keepdim) {
  DDPM_TRY(ddpm_check_out("amax", out));
  return extreme(out, DDPM_OP_AMAX, x, ndims, dims, keepdim);
}
int ddpm_amin(ddpm_tensor **out, ddpm_tensor *x, int ndims, const int64_t *dims, int keepdim) {
  DDPM_TRY(ddpm_check_out("amin", out));
  return extreme(out, DDPM_OP_AMIN, x, ndims, dims, keepdim);
}

/* amax/amin gradient: shared equally among the elements equal to the extreme */
static int bw_extreme_reduce(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  const ddpm_meta *m = &n->in_meta[0];
  uint32_t mask = (uint32_t)n->i[0];
  int keepdim = (int)n->i[1];
  ddpm_tensor *ob = NULL, *eq = NULL, *w = NULL, *cnt = NULL, *gb = NULL, *t = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(expand_back(&ob, n->saved[1], m, mask, keepdim));
  DDPM_CHECK(ddpm_eq(&eq, n->saved[0], ob));
  DDPM_CHECK(ddpm_cast(&w, eq, g->dtype));
  DDPM_CHECK(ddpm_sum_dims(&cnt, w, mask, 1));
  DDPM_CHECK(expand_back(&gb, g, m, mask, keepdim));
  DDPM_CHECK(ddpm_mul(&t, gb, w));
  st = ddpm_div(&gin[0], t, cnt);
done:
  ddpm_tensor_release(ob);
  ddpm_tensor_release(eq);
  ddpm_tensor_release(w);
  ddpm_tensor_release(cnt);
  ddpm_tensor_release(gb);
  ddpm_tensor_release(t);
  return st;
}
int bw_AMAX(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return bw_extreme_reduce(n, g, gin); }
int bw_AMIN(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return bw_extreme_reduce(n, g, gin); }

static int arg_extreme(ddpm_tensor **out, int op, ddpm_tensor *x, int dim, int keepdim, int all) {
  const char *name = ddpm_opname(op);
  DDPM_TRY(ddpm_check_tensor(name, "input", x));
  if (ddpm_tensor_numel(x) == 0)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: cannot reduce an empty tensor %s", name, ddpm_fmt_tensor(x));
  if (all) { /* over the flattened tensor */
    ddpm_tensor *f = NULL, *r = NULL;
    int64_t n = ddpm_tensor_numel(x);
    DDPM_TRY(ddpm_reshape(&f, x, 1, &n));
    int st = run_reduction(&r, op, f, 1u, 0, DDPM_INT64);
    ddpm_tensor_release(f);
    if (st || !keepdim) {
      *out = r;
      return st;
    }
    int64_t ones[DDPM_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) ones[d] = 1;
    st = ddpm_reshape(out, r, x->ndim, ones);
    ddpm_tensor_release(r);
    return st;
  }
  int d;
  DDPM_TRY(ddpm_wrap_dim(name, dim, x->ndim, &d));
  return run_reduction(out, op, x, x->ndim ? 1u << d : 0u, keepdim, DDPM_INT64);
}
int ddpm_argmax(ddpm_tensor **out, ddpm_tensor *x, int dim, int keepdim, int all) {
  DDPM_TRY(ddpm_check_out("argmax", out));
  return arg_extreme(out, DDPM_OP_ARGMAX, x, dim, keepdim, all);
}
int ddpm_argmin(ddpm_tensor **out, ddpm_tensor *x, int dim, int keepdim, int all) {
  DDPM_TRY(ddpm_check_out("argmin", out));
  return arg_extreme(out, DDPM_OP_ARGMIN, x, dim, keepdim, all);
}

/* max(x, dim) -> values, indices.  Values are gathered at the index (so ties send the whole
 * gradient to that one element, as PyTorch does): where(onehot(index), x, 0) summed over dim. */
static int extreme_dim(ddpm_tensor **values, ddpm_tensor **indices, int argop, ddpm_tensor *x, int dim, int keepdim) {
  const char *name = argop == DDPM_OP_ARGMAX ? "max" : "min";
  DDPM_TRY(ddpm_check_out(name, values));
  DDPM_TRY(ddpm_check_out(name, indices));
  DDPM_TRY(ddpm_check_tensor(name, "input", x));
  int d;
  DDPM_TRY(ddpm_wrap_dim(name, dim, x->ndim, &d));
  ddpm_tensor *idx = NULL, *ar = NULL, *arv = NULL, *hot = NULL, *z = NULL, *sel = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(arg_extreme(&idx, argop, x, d, 1, 0));
  if (!(ddpm_grad_enabled() && x->requires_grad)) {
    int op = argop == DDPM_OP_ARGMAX ? DDPM_OP_AMAX : DDPM_OP_AMIN;
    DDPM_CHECK(run_reduction(values, op, x, x->ndim ? 1u << d : 0u, keepdim, x->dtype));
  } else {
    int64_t shape[DDPM_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = k == d ? x->shape[d] : 1;
    DDPM_CHECK(ddpm_arange(&ar, 0, (double)x->shape[d], 1, DDPM_INT64, x->device));
    DDPM_CHECK(ddpm_reshape(&arv, ar, x->ndim, shape));
    DDPM_CHECK(ddpm_eq(&hot, arv, idx));
    DDPM_CHECK(ddpm_full(&z, 0, NULL, 0.0, x->dtype, x->device));
    DDPM_CHECK(ddpm_where(&sel, hot, x, z));
    DDPM_CHECK(ddpm_sum_dims(values, sel, 1u << d, keepdim));
  }
  if (!keepdim) {
    ddpm_tensor *s = NULL;
    st = ddpm_squeeze(&s, idx, d);
    if (st) {
      ddpm_tensor_release(*values);
      goto done;
    }
    ddpm_tensor_release(idx);
    idx = s;
  }
  *indices = idx;
  idx = NULL;
done:
  ddpm_tensor_release(idx);
  ddpm_tensor_release(ar);
  ddpm_tensor_release(arv);
  ddpm_tensor_release(hot);
  ddpm_tensor_release(z);
  ddpm_tensor_release(sel);
  return st;
}
int ddpm_max_dim(ddpm_tensor **values, ddpm_tensor **indices, ddpm_tensor *x, int dim, int keepdim) {
  return extreme_dim(values, indices, DDPM_OP_ARGMAX, x, dim, keepdim);
}
int ddpm_min_dim(ddpm_tensor **values, ddpm_tensor **indices, ddpm_tensor *x, int dim, int keepdim) {
  return extreme_dim(values, indices, DDPM_OP_ARGMIN, x, dim, keepdim);
}
