/* ops_elementwise.c: unary, scalar, binary, comparison, where and in-place entry points, with
 * PyTorch's broadcasting and type promotion, and their gradients. */
#include "internal.h"
#include <math.h>

/* ---- shared helpers --------------------------------------------------------------------------- */
static bool float_only(int op) {
  switch (op) {
  case DDPM_OP_EXP: case DDPM_OP_LOG: case DDPM_OP_SQRT: case DDPM_OP_RSQRT: case DDPM_OP_SIN:
  case DDPM_OP_COS: case DDPM_OP_TANH: case DDPM_OP_SIGMOID: case DDPM_OP_SILU: case DDPM_OP_GELU:
  case DDPM_OP_DIV_SCALAR: case DDPM_OP_RDIV_SCALAR: case DDPM_OP_RPOW_SCALAR: case DDPM_OP_DIV:
    return true;
  default: return false;
  }
}

/* Integer inputs to float-only ops compute in float32, as torch does with its default dtype. */
static int maybe_float(ddpm_tensor **out, ddpm_tensor *x, bool need_float) {
  if (need_float && !ddpm_is_float(x->dtype)) return ddpm_cast(out, x, DDPM_FLOAT32);
  ddpm_tensor_retain(x);
  *out = x;
  return DDPM_OK;
}

int ddpm_reduce_to(ddpm_tensor **out, ddpm_tensor *g, const ddpm_meta *m) {
  uint32_t mask = 0;
  int lead = g->ndim - m->ndim;
  for (int d = 0; d < g->ndim; d++) {
    int md = d - lead;
    if (md < 0 || (m->shape[md] == 1 && g->shape[d] != 1)) mask |= 1u << d;
  }
  ddpm_tensor *r = NULL, *v = NULL;
  if (mask) {
    DDPM_TRY(ddpm_sum_dims(&r, g, mask, 1));
    int st = ddpm_view(&v, r, m->ndim, m->shape);
    ddpm_tensor_release(r);
    DDPM_TRY(st);
  } else {
    ddpm_tensor_retain(g);
    v = g;
  }
  if (v->dtype != m->dtype) {
    int st = ddpm_cast(out, v, m->dtype);
    ddpm_tensor_release(v);
    return st;
  }
  *out = v;
  return DDPM_OK;
}

/* ---- unary -------------------------------------------------------------------------------------- */
int ddpm_unary_op(ddpm_tensor **out, int op, ddpm_tensor *x, double p0) {
  DDPM_TRY(ddpm_check_out(ddpm_opname(op), out));
  const char *name = ddpm_opname(op);
  DDPM_TRY(ddpm_check_tensor(name, "input", x));
  if (x->dtype == DDPM_BOOL && (op == DDPM_OP_NEG))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "neg: negation is not supported on bool tensors; use logical not (x:eq(0))");
  /* rounding an integer is the identity; PyTorch still returns a new tensor */
  if (!ddpm_is_float(x->dtype) && (op == DDPM_OP_FLOOR || op == DDPM_OP_CEIL || op == DDPM_OP_ROUND))
    return ddpm_clone(out, x);
  ddpm_tensor *src = NULL, *o = NULL;
  DDPM_TRY(maybe_float(&src, x, float_only(op)));
  int st = ddpm_tensor_new(&o, src->ndim, src->shape, src->dtype, src->device);
  if (!st) {
    ddpm_call c = {.op = op, .nin = 1, .nout = 1, .in = {src}, .out = {o}, .f = {p0}, .i = {(int64_t)p0}};
    st = ddpm_dispatch(&c);
  }
  if (!st && ddpm_is_float(o->dtype)) {
    ddpm_node *n = ddpm_ag_begin(op, 1, &x);
    if (n) {
      n->f[0] = p0;
      n->i[0] = (int64_t)p0;
      switch (op) {
      case DDPM_OP_EXP: case DDPM_OP_SQRT: case DDPM_OP_RSQRT: case DDPM_OP_TANH: case DDPM_OP_SIGMOID:
      case DDPM_OP_RELU:
        st = ddpm_ag_save(n, o);
        break;
      case DDPM_OP_NEG: case DDPM_OP_SIGN: case DDPM_OP_FLOOR: case DDPM_OP_CEIL: case DDPM_OP_ROUND: break;
      default: st = ddpm_ag_save(n, src);
      }
      if (st) ddpm_node_release(n);
      else ddpm_ag_finish(n, o);
    }
  }
  ddpm_tensor_release(src);
  if (st) {
    ddpm_tensor_release(o);
    return st;
  }
  *out = o;
  return DDPM_OK;
}

#define UNARY_API(fn, OP) \
  int ddpm_##fn(ddpm_tensor **out, ddpm_tensor *x) { return ddpm_unary_op(out, DDPM_OP_##OP, x, 0); }
UNARY_API(neg, NEG)
UNARY_API(abs, ABS)
UNARY_API(sign, SIGN)
UNARY_API(exp, EXP)
UNARY_API(log, LOG)
UNARY_API(sqrt, SQRT)
UNARY_API(rsqrt, RSQRT)
UNARY_API(sin, SIN)
UNARY_API(cos, COS)
UNARY_API(tanh, TANH)
UNARY_API(sigmoid, SIGMOID)
UNARY_API(relu, RELU)
UNARY_API(silu, SILU)
UNARY_API(floor, FLOOR)
UNARY_API(ceil, CEIL)
UNARY_API(round, ROUND)
int ddpm_gelu(ddpm_tensor **out, ddpm_tensor *x, int tanh_approx) {
  return ddpm_unary_op(out, DDPM_OP_GELU, x, tanh_approx ? 1 : 0);
}

int ddpm_act_backward(ddpm_tensor **out, int fwd_op, ddpm_tensor *g, ddpm_tensor *x, double p0) {
  ddpm_tensor *o;
  DDPM_TRY(ddpm_tensor_new(&o, g->ndim, g->shape, g->dtype, g->device));
  ddpm_tensor *xx = x;
  ddpm_tensor *cx = NULL;
  if (x->dtype != g->dtype) {
    int st = ddpm_cast(&cx, x, g->dtype);
    if (st) {
      ddpm_tensor_release(o);
      return st;
    }
    xx = cx;
  }
  ddpm_call c = {.op = DDPM_OP_ACT_BWD, .nin = 2, .nout = 1, .in = {g, xx}, .out = {o},
                 .i = {fwd_op, (int64_t)p0}};
  int st = ddpm_dispatch(&c);
  ddpm_tensor_release(cx);
  if (st) {
    ddpm_tensor_release(o);
    return st;
  }
  *out = o;
  return DDPM_OK;
}

/* backward of activations: one fused kernel computing g * f'(saved) */
#define ACT_BW(OP)                                                             \
  int bw_##OP(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {               \
    return ddpm_act_backward(&gin[0], DDPM_OP_##OP, g, n->saved[0], n->f[0]);  \
  }
ACT_BW(ABS)
ACT_BW(LOG)
ACT_BW(SQRT)
ACT_BW(RSQRT)
ACT_BW(SIN)
ACT_BW(COS)
ACT_BW(TANH)
ACT_BW(SIGMOID)
ACT_BW(RELU)
ACT_BW(SILU)
ACT_BW(GELU)
int bw_NEG(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return ddpm_neg(&gin[0], g); }
/* step functions: zero gradient almost everywhere, as PyTorch defines it */
static int zero_grad_like(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  return ddpm_full(&gin[0], g->ndim, g->shape, 0.0, g->dtype, g->device);
}
int bw_SIGN(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return zero_grad_like(n, g, gin); }
int bw_FLOOR(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return zero_grad_like(n, g, gin); }
int bw_CEIL(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return zero_grad_like(n, g, gin); }
int bw_ROUND(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return zero_grad_like(n, g, gin); }
int bw_EXP(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  return ddpm_binary_op(&gin[0], DDPM_OP_MUL, g, n->saved[0]);
}

/* ---- scalar ops --------------------------------------------------------------------------------- */
int ddpm_scalar_op(ddpm_tensor **out, int op, ddpm_tensor *x, double s, double s2) {
  DDPM_TRY(ddpm_check_out(ddpm_opname(op), out));
  const char *name = ddpm_opname(op);
  DDPM_TRY(ddpm_check_tensor(name, "input", x));
  if (op == DDPM_OP_CLAMP && s > s2)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "clamp: min %g is greater than max %g", s, s2);
  bool need_float = float_only(op) || (!ddpm_is_float(x->dtype) && s != floor(s) && isfinite(s)) ||
                    (op == DDPM_OP_POW_SCALAR && s < 0);
  if (op == DDPM_OP_CLAMP) need_float = need_float || (s2 != floor(s2) && isfinite(s2));
  ddpm_tensor *src = NULL, *o = NULL;
  if (!need_float && x->dtype == DDPM_BOOL) /* bool arithmetic with a number counts in int64, as torch */
    DDPM_TRY(ddpm_cast(&src, x, DDPM_INT64));
  else
    DDPM_TRY(maybe_float(&src, x, need_float));
  int st = ddpm_tensor_new(&o, src->ndim, src->shape, src->dtype, src->device);
  if (!st) {
    ddpm_call c = {.op = op, .nin = 1, .nout = 1, .in = {src}, .out = {o}, .f = {s, s2}};
    st = ddpm_dispatch(&c);
  }
  if (!st && ddpm_is_float(o->dtype)) {
    ddpm_node *n = ddpm_ag_begin(op, 1, &x);
    if (n) {
      n->f[0] = s;
      n->f[1] = s2;
      if (op == DDPM_OP_RDIV_SCALAR || op == DDPM_OP_POW_SCALAR || op == DDPM_OP_CLAMP) st = ddpm_ag_save(n, src);
      else if (op == DDPM_OP_RPOW_SCALAR) st = ddpm_ag_save(n, o);
      if (st) ddpm_node_release(n);
      else ddpm_ag_finish(n, o);
    }
  }
  ddpm_tensor_release(src);
  if (st) {
    ddpm_tensor_release(o);
    return st;
  }
  *out = o;
  return DDPM_OK;
}

int ddpm_add_scalar(ddpm_tensor **out, ddpm_tensor *x, double s) { return ddpm_scalar_op(out, DDPM_OP_ADD_SCALAR, x, s, 0); }
int ddpm_mul_scalar(ddpm_tensor **out, ddpm_tensor *x, double s) { return ddpm_scalar_op(out, DDPM_OP_MUL_SCALAR, x, s, 0); }
int ddpm_div_scalar(ddpm_tensor **out, ddpm_tensor *x, double s) { return ddpm_scalar_op(out, DDPM_OP_DIV_SCALAR, x, s, 0); }
int ddpm_rdiv_scalar(ddpm_tensor **out, ddpm_tensor *x, double s) { return ddpm_scalar_op(out, DDPM_OP_RDIV_SCALAR, x, s, 0); }
int ddpm_pow_scalar(ddpm_tensor **out, ddpm_tensor *x, double s) { return ddpm_scalar_op(out, DDPM_OP_POW_SCALAR, x, s, 0); }
int ddpm_rpow_scalar(ddpm_tensor **out, ddpm_tensor *x, double s) { return ddpm_scalar_op(out, DDPM_OP_RPOW_SCALAR, x, s, 0); }
int ddpm_clamp(ddpm_tensor **out, ddpm_tensor *x, double lo, double hi) {
  if (isnan(lo)) lo = -INFINITY;
  if (isnan(hi)) hi = INFINITY;
  return ddpm_scalar_op(out, DDPM_OP_CLAMP, x, lo, hi);
}

int bw_ADD_SCALAR(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  ddpm_tensor_retain(g);
  gin[0] = g;
  return DDPM_OK;
}
int bw_MUL_SCALAR(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return ddpm_mul_scalar(&gin[0], g, n->f[0]); }
int bw_DIV_SCALAR(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return ddpm_div_scalar(&gin[0], g, n->f[0]); }
int bw_RDIV_SCALAR(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { /* d(s/x) = -s/x^2 */
  ddpm_tensor *x2 = NULL, *t = NULL;
  DDPM_TRY(ddpm_binary_op(&x2, DDPM_OP_MUL, n->saved[0], n->saved[0]));
  int st = ddpm_binary_op(&t, DDPM_OP_DIV, g, x2);
  ddpm_tensor_release(x2);
  DDPM_TRY(st);
  st = ddpm_mul_scalar(&gin[0], t, -n->f[0]);
  ddpm_tensor_release(t);
  return st;
}
int bw_POW_SCALAR(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { /* s * x^(s-1) */
  double s = n->f[0];
  if (s == 0) return ddpm_full(&gin[0], g->ndim, g->shape, 0.0, g->dtype, g->device);
  ddpm_tensor *p = NULL, *t = NULL;
  if (s == 1) {
    ddpm_tensor_retain(g);
    gin[0] = g;
    return DDPM_OK;
  }
  if (s == 2) {
    DDPM_TRY(ddpm_binary_op(&t, DDPM_OP_MUL, g, n->saved[0]));
    int st = ddpm_mul_scalar(&gin[0], t, 2.0);
    ddpm_tensor_release(t);
    return st;
  }
  DDPM_TRY(ddpm_pow_scalar(&p, n->saved[0], s - 1));
  int st = ddpm_binary_op(&t, DDPM_OP_MUL, g, p);
  ddpm_tensor_release(p);
  DDPM_TRY(st);
  st = ddpm_mul_scalar(&gin[0], t, s);
  ddpm_tensor_release(t);
  return st;
}
int bw_RPOW_SCALAR(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { /* s^x * ln s */
  ddpm_tensor *t = NULL;
  DDPM_TRY(ddpm_binary_op(&t, DDPM_OP_MUL, g, n->saved[0]));
  int st = ddpm_mul_scalar(&gin[0], t, log(n->f[0]));
  ddpm_tensor_release(t);
  return st;
}
int bw_CLAMP(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  /* gradient passes where lo <= x <= hi (PyTorch's convention at the bounds) */
  ddpm_tensor *x = n->saved[0], *lo = NULL, *hi = NULL, *m1 = NULL, *m2 = NULL, *m = NULL, *z = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(ddpm_full(&lo, 0, NULL, n->f[0], x->dtype, x->device));
  DDPM_CHECK(ddpm_full(&hi, 0, NULL, n->f[1], x->dtype, x->device));
  DDPM_CHECK(ddpm_ge(&m1, x, lo));
  DDPM_CHECK(ddpm_le(&m2, x, hi));
  DDPM_CHECK(ddpm_binary_op(&m, DDPM_OP_MUL, m1, m2));
  DDPM_CHECK(ddpm_full(&z, 0, NULL, 0.0, g->dtype, g->device));
  st = ddpm_where(&gin[0], m, g, z);
done:
  ddpm_tensor_release(lo);
  ddpm_tensor_release(hi);
  ddpm_tensor_release(m1);
  ddpm_tensor_release(m2);
  ddpm_tensor_release(m);
  ddpm_tensor_release(z);
  return st;
}

/* ---- binary ---------------------------------------------------------------------------------------- */
static bool is_cmp(int op) { return op >= DDPM_OP_EQ && op <= DDPM_OP_GE; }

int ddpm_binary_op(ddpm_tensor **out, int op, ddpm_tensor *a, ddpm_tensor *b) {
  DDPM_TRY(ddpm_check_out(ddpm_opname(op), out));
  const char *name = ddpm_opname(op);
  DDPM_TRY(ddpm_check_tensor(name, "first argument", a));
  DDPM_TRY(ddpm_check_tensor(name, "second argument", b));
  DDPM_TRY(ddpm_check_same_device(name, a, b));
  int nd;
  int64_t shape[DDPM_MAX_DIMS];
  DDPM_TRY(ddpm_broadcast_shapes(name, a->ndim, a->shape, b->ndim, b->shape, &nd, shape));
  int dt = ddpm_promote_types(a->dtype, b->dtype);
  if (float_only(op) && !ddpm_is_float(dt)) dt = DDPM_FLOAT32;
  if (dt == DDPM_BOOL && (op == DDPM_OP_SUB))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "sub: subtraction of bool tensors is not supported");
  ddpm_tensor *ca = NULL, *cb = NULL, *o = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(ddpm_cast(&ca, a, dt));
  DDPM_CHECK(ddpm_cast(&cb, b, dt));
  DDPM_CHECK(ddpm_tensor_new(&o, nd, shape, is_cmp(op) ? DDPM_BOOL : dt, a->device));
  {
    ddpm_call c = {.op = op, .nin = 2, .nout = 1, .in = {ca, cb}, .out = {o}};
    DDPM_CHECK(ddpm_dispatch(&c));
  }
  if (!is_cmp(op) && ddpm_is_float(dt)) {
    ddpm_tensor *ins[2] = {a, b};
    ddpm_node *n = ddpm_ag_begin(op, 2, ins);
    if (n) {
      bool na = ddpm_node_needs(n, 0), nb = ddpm_node_needs(n, 1);
      switch (op) {
      case DDPM_OP_MUL:
        st = ddpm_ag_save(n, nb ? ca : NULL);
        if (!st) st = ddpm_ag_save(n, na ? cb : NULL);
        break;
      case DDPM_OP_DIV:
        st = ddpm_ag_save(n, cb);
        if (!st) st = ddpm_ag_save(n, nb ? o : NULL);
        break;
      case DDPM_OP_POW:
      case DDPM_OP_MAXIMUM:
      case DDPM_OP_MINIMUM:
        st = ddpm_ag_save(n, ca);
        if (!st) st = ddpm_ag_save(n, cb);
        if (!st && op == DDPM_OP_POW) st = ddpm_ag_save(n, nb ? o : NULL);
        break;
      default: break;
      }
      if (st) ddpm_node_release(n);
      else ddpm_ag_finish(n, o);
    }
  }
done:
  ddpm_tensor_release(ca);
  ddpm_tensor_release(cb);
  if (st) {
    ddpm_tensor_release(o);
    return st;
  }
  *out = o;
  return DDPM_OK;
}

#define BINARY_API(fn, OP) \
  int ddpm_##fn(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b) { return ddpm_binary_op(out, DDPM_OP_##OP, a, b); }
BINARY_API(add, ADD)
BINARY_API(sub, SUB)
BINARY_API(mul, MUL)
BINARY_API(div, DIV)
BINARY_API(pow, POW)
BINARY_API(maximum, MAXIMUM)
BINARY_API(minimum, MINIMUM)
BINARY_API(eq, EQ)
BINARY_API(ne, NE)
BINARY_API(lt, LT)
BINARY_API(le, LE)
BINARY_API(gt, GT)
BINARY_API(ge, GE)

/* gin[k] = reduce_to(t, input k) and release t */
static int give(ddpm_node *n, int k, ddpm_tensor *t, ddpm_tensor **gin) {
  int st = ddpm_reduce_to(&gin[k], t, &n->in_meta[k]);
  ddpm_tensor_release(t);
  return st;
}

int bw_ADD(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  if (ddpm_node_needs(n, 0)) DDPM_TRY(ddpm_reduce_to(&gin[0], g, &n->in_meta[0]));
  if (ddpm_node_needs(n, 1)) DDPM_TRY(ddpm_reduce_to(&gin[1], g, &n->in_meta[1]));
  return DDPM_OK;
}
int bw_SUB(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  if (ddpm_node_needs(n, 0)) DDPM_TRY(ddpm_reduce_to(&gin[0], g, &n->in_meta[0]));
  if (ddpm_node_needs(n, 1)) {
    ddpm_tensor *t = NULL;
    DDPM_TRY(ddpm_neg(&t, g));
    DDPM_TRY(give(n, 1, t, gin));
  }
  return DDPM_OK;
}
int bw_MUL(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  ddpm_tensor *t = NULL;
  if (ddpm_node_needs(n, 0)) {
    DDPM_TRY(ddpm_binary_op(&t, DDPM_OP_MUL, g, n->saved[1]));
    DDPM_TRY(give(n, 0, t, gin));
  }
  if (ddpm_node_needs(n, 1)) {
    DDPM_TRY(ddpm_binary_op(&t, DDPM_OP_MUL, g, n->saved[0]));
    DDPM_TRY(give(n, 1, t, gin));
  }
  return DDPM_OK;
}
int bw_DIV(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { /* a/b: g/b, -g*out/b */
  ddpm_tensor *t = NULL, *u = NULL;
  DDPM_TRY(ddpm_binary_op(&t, DDPM_OP_DIV, g, n->saved[0]));
  if (ddpm_node_needs(n, 1)) {
    int st = ddpm_binary_op(&u, DDPM_OP_MUL, t, n->saved[1]);
    if (!st) {
      ddpm_tensor *v = NULL;
      st = ddpm_neg(&v, u);
      ddpm_tensor_release(u);
      if (!st) st = give(n, 1, v, gin);
    }
    if (st) {
      ddpm_tensor_release(t);
      return st;
    }
  }
  if (ddpm_node_needs(n, 0)) return give(n, 0, t, gin);
  ddpm_tensor_release(t);
  return DDPM_OK;
}
int bw_POW(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { /* a^b: g*b*a^(b-1), g*out*ln a */
  ddpm_tensor *a = n->saved[0], *b = n->saved[1], *t = NULL, *u = NULL, *v = NULL;
  int st = DDPM_OK;
  if (ddpm_node_needs(n, 0)) {
    DDPM_CHECK(ddpm_add_scalar(&t, b, -1.0));
    DDPM_CHECK(ddpm_binary_op(&u, DDPM_OP_POW, a, t));
    ddpm_tensor_release(t);
    t = NULL;
    DDPM_CHECK(ddpm_binary_op(&v, DDPM_OP_MUL, u, b));
    ddpm_tensor_release(u);
    u = NULL;
    DDPM_CHECK(ddpm_binary_op(&t, DDPM_OP_MUL, g, v));
    st = give(n, 0, t, gin);
    t = NULL;
    if (st) goto done;
  }
  if (ddpm_node_needs(n, 1)) {
    DDPM_CHECK(ddpm_log(&u, a));
    DDPM_CHECK(ddpm_binary_op(&v, DDPM_OP_MUL, u, n->saved[2]));
    ddpm_tensor_release(u);
    u = NULL;
    DDPM_CHECK(ddpm_binary_op(&t, DDPM_OP_MUL, g, v));
    st = give(n, 1, t, gin);
    t = NULL;
  }
done:
  ddpm_tensor_release(t);
  ddpm_tensor_release(u);
  ddpm_tensor_release(v);
  return st;
}
/* max/min: the winner gets g; ties split it in half, as PyTorch does */
static int bw_extreme(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin, int win_op) {
  ddpm_tensor *a = n->saved[0], *b = n->saved[1], *wa = NULL, *eq = NULL, *w = NULL, *h = NULL, *t = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(ddpm_binary_op(&wa, win_op, a, b));
  DDPM_CHECK(ddpm_binary_op(&eq, DDPM_OP_EQ, a, b));
  DDPM_CHECK(ddpm_cast(&w, wa, g->dtype));
  DDPM_CHECK(ddpm_cast(&h, eq, g->dtype));
  {
    ddpm_tensor *hh = NULL, *wa2 = NULL;
    DDPM_CHECK(ddpm_mul_scalar(&hh, h, 0.5));
    st = ddpm_binary_op(&wa2, DDPM_OP_ADD, w, hh); /* weight of a: 1 if it wins, 0.5 on ties */
    ddpm_tensor_release(hh);
    if (st) goto done;
    if (ddpm_node_needs(n, 0)) {
      st = ddpm_binary_op(&t, DDPM_OP_MUL, g, wa2);
      if (!st) st = give(n, 0, t, gin);
      t = NULL;
    }
    if (!st && ddpm_node_needs(n, 1)) {
      ddpm_tensor *wb = NULL;
      st = ddpm_mul_scalar(&wb, wa2, -1.0);
      ddpm_tensor *wb1 = NULL;
      if (!st) st = ddpm_add_scalar(&wb1, wb, 1.0); /* 1 - weight of a */
      ddpm_tensor_release(wb);
      if (!st) st = ddpm_binary_op(&t, DDPM_OP_MUL, g, wb1);
      ddpm_tensor_release(wb1);
      if (!st) st = give(n, 1, t, gin);
      t = NULL;
    }
    ddpm_tensor_release(wa2);
  }
done:
  ddpm_tensor_release(wa);
  ddpm_tensor_release(eq);
  ddpm_tensor_release(w);
  ddpm_tensor_release(h);
  ddpm_tensor_release(t);
  return st;
}
int bw_MAXIMUM(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return bw_extreme(n, g, gin, DDPM_OP_GT); }
int bw_MINIMUM(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return bw_extreme(n, g, gin, DDPM_OP_LT); }

/* ---- where ---------------------------------------------------------------------------------------------- */
int ddpm_where(ddpm_tensor **out, ddpm_tensor *cond, ddpm_tensor *a, ddpm_tensor *b) {
  DDPM_TRY(ddpm_check_out("where", out));
  DDPM_TRY(ddpm_check_tensor("where", "condition", cond));
  DDPM_TRY(ddpm_check_tensor("where", "input", a));
  DDPM_TRY(ddpm_check_tensor("where", "other", b));
  DDPM_TRY(ddpm_check_same_device("where", cond, a));
  DDPM_TRY(ddpm_check_same_device("where", a, b));
  if (cond->dtype != DDPM_BOOL && cond->dtype != DDPM_UINT8)
    return DDPM_FAIL(DDPM_ERR_DTYPE, "where: condition must be a bool tensor, got %s", ddpm_fmt_tensor(cond));
  int n1, nd;
  int64_t s1[DDPM_MAX_DIMS], shape[DDPM_MAX_DIMS];
  DDPM_TRY(ddpm_broadcast_shapes("where", cond->ndim, cond->shape, a->ndim, a->shape, &n1, s1));
  DDPM_TRY(ddpm_broadcast_shapes("where", n1, s1, b->ndim, b->shape, &nd, shape));
  int dt = ddpm_promote_types(a->dtype, b->dtype);
  ddpm_tensor *ca = NULL, *cb = NULL, *o = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(ddpm_cast(&ca, a, dt));
  DDPM_CHECK(ddpm_cast(&cb, b, dt));
  DDPM_CHECK(ddpm_tensor_new(&o, nd, shape, dt, a->device));
  {
    ddpm_call c = {.op = DDPM_OP_WHERE, .nin = 3, .nout = 1, .in = {cond, ca, cb}, .out = {o}};
    DDPM_CHECK(ddpm_dispatch(&c));
  }
  if (ddpm_is_float(dt)) {
    ddpm_tensor *ins[3] = {cond, a, b};
    ddpm_node *n = ddpm_ag_begin(DDPM_OP_WHERE, 3, ins);
    if (n) {
      st = ddpm_ag_save(n, cond);
      if (st) ddpm_node_release(n);
      else ddpm_ag_finish(n, o);
    }
  }
done:
  ddpm_tensor_release(ca);
  ddpm_tensor_release(cb);
  if (st) {
    ddpm_tensor_release(o);
    return st;
  }
  *out = o;
  return DDPM_OK;
}

int bw_WHERE(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  ddpm_tensor *z = NULL, *t = NULL;
  DDPM_TRY(ddpm_full(&z, 0, NULL, 0.0, g->dtype, g->device));
  int st = DDPM_OK;
  if (ddpm_node_needs(n, 1)) {
    DDPM_CHECK(ddpm_where(&t, n->saved[0], g, z));
    st = give(n, 1, t, gin);
    if (st) goto done;
  }
  if (ddpm_node_needs(n, 2)) {
    DDPM_CHECK(ddpm_where(&t, n->saved[0], z, g));
    st = give(n, 2, t, gin);
  }
done:
  ddpm_tensor_release(z);
  return st;
}

/* ---- in place ------------------------------------------------------------------------------------------------ */
static int inplace_binary(const char *name, int op, ddpm_tensor *a, ddpm_tensor *b) {
  DDPM_TRY(ddpm_check_tensor(name, "self", a));
  DDPM_TRY(ddpm_check_tensor(name, "other", b));
  DDPM_TRY(ddpm_check_same_device(name, a, b));
  DDPM_TRY(ddpm_check_inplace(name, a));
  if (ddpm_grad_enabled() && b->requires_grad)
    return DDPM_FAIL(DDPM_ERR_AUTOGRAD, "%s: other (%s) requires grad; in-place ops are not differentiable here, "
                     "use the out-of-place form", name, ddpm_fmt_tensor(b));
  int nd;
  int64_t shape[DDPM_MAX_DIMS];
  DDPM_TRY(ddpm_broadcast_shapes(name, a->ndim, a->shape, b->ndim, b->shape, &nd, shape));
  if (nd != a->ndim || memcmp(shape, a->shape, sizeof(int64_t) * (size_t)nd))
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: the result of shape %s does not fit self %s", name,
                     ddpm_fmt_shape(nd, shape), ddpm_fmt_tensor(a));
  if (op == DDPM_OP_DIV && !ddpm_is_float(a->dtype))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: true division into an integer tensor %s; convert it with :float() first",
                     name, ddpm_fmt_tensor(a));
  ddpm_tensor *cb = NULL;
  DDPM_TRY(ddpm_cast(&cb, b, a->dtype));
  ddpm_call c = {.op = op, .nin = 2, .nout = 1, .in = {a, cb}, .out = {a}};
  int st = ddpm_dispatch(&c);
  ddpm_tensor_release(cb);
  if (!st) ddpm_bump_version(a);
  return st;
}

int ddpm_add_(ddpm_tensor *a, ddpm_tensor *b, double alpha) {
  if (alpha == 1.0) return inplace_binary("add_", DDPM_OP_ADD, a, b);
  DDPM_TRY(ddpm_check_tensor("add_", "other", b));
  ddpm_tensor *sb = NULL;
  bool saved = ddpm_grad_enabled();
  if (saved && b->requires_grad)
    return DDPM_FAIL(DDPM_ERR_AUTOGRAD, "add_: other (%s) requires grad; in-place ops are not differentiable here",
                     ddpm_fmt_tensor(b));
  DDPM_TRY(ddpm_mul_scalar(&sb, b, alpha));
  int st = inplace_binary("add_", DDPM_OP_ADD, a, sb);
  ddpm_tensor_release(sb);
  return st;
}
int ddpm_mul_(ddpm_tensor *a, ddpm_tensor *b) { return inplace_binary("mul_", DDPM_OP_MUL, a, b); }
int ddpm_div_(ddpm_tensor *a, ddpm_tensor *b) { return inplace_binary("div_", DDPM_OP_DIV, a, b); }

static int inplace_scalar(const char *name, int op, ddpm_tensor *a, double s, double s2) {
  DDPM_TRY(ddpm_check_tensor(name, "self", a));
  DDPM_TRY(ddpm_check_inplace(name, a));
  ddpm_call c = {.op = op, .nin = 1, .nout = 1, .in = {a}, .out = {a}, .f = {s, s2}};
  DDPM_TRY(ddpm_dispatch(&c));
  ddpm_bump_version(a);
  return DDPM_OK;
}
int ddpm_add_scalar_(ddpm_tensor *a, double s) { return inplace_scalar("add_", DDPM_OP_ADD_SCALAR, a, s, 0); }
int ddpm_mul_scalar_(ddpm_tensor *a, double s) { return inplace_scalar("mul_", DDPM_OP_MUL_SCALAR, a, s, 0); }
int ddpm_clamp_(ddpm_tensor *a, double lo, double hi) {
  if (isnan(lo)) lo = -INFINITY;
  if (isnan(hi)) hi = INFINITY;
  if (lo > hi) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "clamp_: min %g is greater than max %g", lo, hi);
  return inplace_scalar("clamp_", DDPM_OP_CLAMP, a, lo, hi);
}
