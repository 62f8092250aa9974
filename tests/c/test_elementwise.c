/* test_elementwise.c: every unary, scalar, binary, comparison, where, in-place, copy/convert and
 * fill kernel against a naive double-precision loop, over all dtypes, broadcast shapes and
 * non-contiguous (permuted, sliced, expanded) inputs. */
#include "tref.h"

/* ---- unary ---------------------------------------------------------------------------------- */
static double r_neg(double x) { return -x; }
static double r_abs(double x) { return fabs(x); }
static double r_sign(double x) { return (x > 0) - (x < 0); }
static double r_rsqrt(double x) { return 1 / sqrt(x); }
static double r_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double r_relu(double x) { return x < 0 ? 0 : x; }
static double r_silu(double x) { return x / (1 + exp(-x)); }
static double r_gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double r_gelu_tanh(double x) {
  return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
static int gelu_tanh(ddpm_tensor **o, ddpm_tensor *x) { return ddpm_gelu(o, x, 1); }
static int gelu_erf(ddpm_tensor **o, ddpm_tensor *x) { return ddpm_gelu(o, x, 0); }

typedef struct {
  const char *name;
  int (*fn)(ddpm_tensor **, ddpm_tensor *);
  double (*ref)(double);
  double lo, hi;
  int float_only;
} unop;

static const unop unops[] = {
    {"neg", ddpm_neg, r_neg, -5, 5, 0},
    {"abs", ddpm_abs, r_abs, -5, 5, 0},
    {"sign", ddpm_sign, r_sign, -3, 3, 0},
    {"exp", ddpm_exp, exp, -5, 5, 1},
    {"log", ddpm_log, log, 0.1, 20, 1},
    {"sqrt", ddpm_sqrt, sqrt, 0.1, 20, 1},
    {"rsqrt", ddpm_rsqrt, r_rsqrt, 0.1, 20, 1},
    {"sin", ddpm_sin, sin, -5, 5, 1},
    {"cos", ddpm_cos, cos, -5, 5, 1},
    {"tanh", ddpm_tanh, tanh, -4, 4, 1},
    {"sigmoid", ddpm_sigmoid, r_sigmoid, -6, 6, 1},
    {"relu", ddpm_relu, r_relu, -5, 5, 0},
    {"silu", ddpm_silu, r_silu, -6, 6, 1},
    {"gelu", gelu_erf, r_gelu, -5, 5, 1},
    {"gelu_tanh", gelu_tanh, r_gelu_tanh, -5, 5, 1},
    {"floor", ddpm_floor, floor, -5, 5, 0},
    {"ceil", ddpm_ceil, ceil, -5, 5, 0},
    {"round", ddpm_round, nearbyint, -5, 5, 0},
};

static void test_unary(void) {
  trng r = {11};
  int64_t shape[3] = {3, 4, 5};
  for (size_t k = 0; k < sizeof unops / sizeof unops[0]; k++) {
    const unop *u = &unops[k];
    for (int di = 0; di < 8; di++) {
      int dt = all_dtypes[di];
      if (dt == DDPM_BOOL && u->fn == ddpm_neg) {
        ddpm_tensor *b = trand(dt, 3, shape, 0, 1, &r, 0), *o = NULL;
        CHECK(ddpm_neg(&o, b) == DDPM_ERR_DTYPE);
        ddpm_tensor_release(b);
        continue;
      }
      double lo = u->lo, hi = u->hi;
      if (!is_fdt(dt) && lo > 0) lo = 1;
      int odt = (u->float_only && !is_fdt(dt)) ? DDPM_FLOAT32 : dt;
      for (int lay = 0; lay < LAYOUT_COUNT; lay++) {
        ddpm_tensor *x = trand(dt, 3, shape, lo, hi, &r, lay), *o = NULL;
        int st = u->fn(&o, x);
        CHECK_OK(st);
        if (st) {
          ddpm_tensor_release(x);
          continue;
        }
        CHECK(ddpm_tensor_dtype(o) == odt && same_shape_as(o, 3, shape) && ddpm_tensor_is_contiguous(o));
        int64_t idx[3] = {0};
        int bad = 0;
        do {
          double xv = tget(x, idx), want = ref_store(odt, u->ref(xv));
          ELEM(bad, tget(o, idx), want, dtype_tol(odt, want), "%s(%g) %s %s", u->name, xv, dt_name(dt),
               layout_name[lay]);
        } while (next_index(3, shape, idx));
        CHECK_CASE(bad, "%s %s %s", u->name, dt_name(dt), layout_name[lay]);
        ddpm_tensor_release(o);
        ddpm_tensor_release(x);
      }
    }
  }
  /* a 0-d input and an empty input */
  ddpm_tensor *s = NULL, *o = NULL, *e = NULL;
  CHECK_OK(ddpm_full(&s, 0, NULL, -2.0, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_abs(&o, s));
  double v = 0;
  CHECK_OK(ddpm_tensor_item(o, &v));
  CHECK(v == 2.0 && ddpm_tensor_ndim(o) == 0);
  ddpm_tensor_release(o);
  int64_t z[2] = {0, 3};
  CHECK_OK(ddpm_empty(&e, 2, z, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_exp(&o, e));
  CHECK(same_shape_as(o, 2, z));
  ddpm_tensor_release(o);
  ddpm_tensor_release(e);
  ddpm_tensor_release(s);
}

/* ---- tensor-scalar ops ----------------------------------------------------------------------------- */
typedef struct {
  const char *name;
  int (*fn)(ddpm_tensor **, ddpm_tensor *, double);
  double s;
  double lo, hi;
  int float_only;
} scop;
static int clamp_m1_2(ddpm_tensor **o, ddpm_tensor *x, double s) { return ddpm_clamp(o, x, -1, 2); }
static double scalar_ref(const scop *c, double x) {
  double s = c->s;
  if (c->fn == ddpm_add_scalar) return x + s;
  if (c->fn == ddpm_mul_scalar) return x * s;
  if (c->fn == ddpm_div_scalar) return x / s;
  if (c->fn == ddpm_rdiv_scalar) return s / x;
  if (c->fn == ddpm_pow_scalar) return pow(x, s);
  if (c->fn == ddpm_rpow_scalar) return pow(s, x);
  return x < -1 ? -1 : (x > 2 ? 2 : x);
}
static const scop scops[] = {
    {"add 2.5", ddpm_add_scalar, 2.5, -5, 5, 0},   {"add 3", ddpm_add_scalar, 3, -5, 5, 0},
    {"mul -1.5", ddpm_mul_scalar, -1.5, -5, 5, 0}, {"mul 3", ddpm_mul_scalar, 3, -5, 5, 0},
    {"div 4", ddpm_div_scalar, 4, -5, 5, 1},       {"rdiv 2", ddpm_rdiv_scalar, 2, 0.5, 5, 1},
    {"pow 2", ddpm_pow_scalar, 2, -4, 4, 0},       {"pow 3", ddpm_pow_scalar, 3, -3, 3, 0},
    {"pow 0.5", ddpm_pow_scalar, 0.5, 0.1, 9, 0},  {"pow -1", ddpm_pow_scalar, -1, 0.5, 4, 0},
    {"pow -0.5", ddpm_pow_scalar, -0.5, 0.5, 4, 0}, {"pow 1.7", ddpm_pow_scalar, 1.7, 0.1, 4, 0},
    {"rpow 2", ddpm_rpow_scalar, 2, -4, 4, 1},     {"clamp", clamp_m1_2, 0, -4, 4, 0},
};

static void test_scalar(void) {
  trng r = {12};
  int64_t shape[2] = {6, 7};
  for (size_t k = 0; k < sizeof scops / sizeof scops[0]; k++) {
    const scop *c = &scops[k];
    for (int di = 0; di < 8; di++) {
      int dt = all_dtypes[di];
      if (dt == DDPM_BOOL && c->fn != ddpm_add_scalar && c->fn != ddpm_mul_scalar) continue;
      double lo = c->lo, hi = c->hi;
      if (!is_fdt(dt) && lo > 0) lo = 1;
      int needf = c->float_only || c->s != floor(c->s) || (c->fn == ddpm_pow_scalar && c->s < 0);
      int odt = is_fdt(dt) ? dt : needf ? DDPM_FLOAT32 : dt == DDPM_BOOL ? DDPM_INT64 : dt;
      for (int lay = 0; lay < LAYOUT_COUNT; lay++) {
        ddpm_tensor *x = trand(dt, 2, shape, lo, hi, &r, lay), *o = NULL;
        int st = c->fn(&o, x, c->s);
        CHECK_OK(st);
        if (st) {
          ddpm_tensor_release(x);
          continue;
        }
        CHECK(ddpm_tensor_dtype(o) == odt);
        int64_t idx[2] = {0};
        int bad = 0;
        do {
          double xv = tget(x, idx), want = ref_store(odt, scalar_ref(c, xv));
          ELEM(bad, tget(o, idx), want, dtype_tol(odt, want), "%s x=%g %s %s", c->name, xv, dt_name(dt),
               layout_name[lay]);
        } while (next_index(2, shape, idx));
        CHECK_CASE(bad, "%s %s %s", c->name, dt_name(dt), layout_name[lay]);
        ddpm_tensor_release(o);
        ddpm_tensor_release(x);
      }
    }
  }
}

/* ---- binary ops, comparisons ------------------------------------------------------------------------ */
enum { B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MAX, B_MIN, B_EQ, B_NE, B_LT, B_LE, B_GT, B_GE, B_COUNT };
static const char *bnames[B_COUNT] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum",
                                      "eq",  "ne",  "lt",  "le",  "gt",  "ge"};
static int (*const bfns[B_COUNT])(ddpm_tensor **, ddpm_tensor *, ddpm_tensor *) = {
    ddpm_add, ddpm_sub, ddpm_mul, ddpm_div, ddpm_pow, ddpm_maximum, ddpm_minimum,
    ddpm_eq,  ddpm_ne,  ddpm_lt,  ddpm_le,  ddpm_gt,  ddpm_ge};
static double bref(int op, double x, double y) {
  switch (op) {
  case B_ADD: return x + y;
  case B_SUB: return x - y;
  case B_MUL: return x * y;
  case B_DIV: return x / y;
  case B_POW: return pow(x, y);
  case B_MAX: return x != x || y != y ? NAN : fmax(x, y);
  case B_MIN: return x != x || y != y ? NAN : fmin(x, y);
  case B_EQ: return x == y;
  case B_NE: return x != y;
  case B_LT: return x < y;
  case B_LE: return x <= y;
  case B_GT: return x > y;
  default: return x >= y;
  }
}

typedef struct {
  int na, nb;
  int64_t sa[4], sb[4];
} bshape;
static const bshape bshapes[] = {
    {3, 3, {3, 4, 5}, {3, 4, 5}},       /* same shape */
    {3, 2, {3, 1, 5}, {4, 1}},           /* both sides broadcast */
    {3, 0, {2, 3, 4}, {0}},              /* tensor with a 0-d tensor */
    {1, 2, {1}, {2, 3}},                 /* 1-element against a matrix */
    {4, 4, {2, 3, 4, 5}, {1, 3, 1, 1}}, /* per-channel, as [N,C,H,W] + [1,C,1,1] */
};

static void check_binary_case(int op, int da, int db, const bshape *bs, int la, int lb, trng *r) {
  double lo_a = -4, hi_a = 4, lo_b = -4, hi_b = 4;
  if (op == B_DIV) lo_b = 0.5;
  if (op == B_POW) {
    if (is_fdt(da) || is_fdt(db)) lo_a = 0.5, hi_a = 3, lo_b = -2, hi_b = 2;
    else lo_a = -3, hi_a = 3, lo_b = 0, hi_b = 3;
  }
  if (op >= B_EQ) lo_a = lo_b = -2, hi_a = hi_b = 2; /* many ties */
  ddpm_tensor *a = trand(da, bs->na, bs->sa, lo_a, hi_a, r, la);
  ddpm_tensor *b = trand(db, bs->nb, bs->sb, lo_b, hi_b, r, lb);
  ddpm_tensor *o = NULL;
  int pd = ddpm_promote_types(da, db);
  int odt = op >= B_EQ ? DDPM_BOOL : (op == B_DIV && !is_fdt(pd)) ? DDPM_FLOAT32 : pd;
  int st = bfns[op](&o, a, b);
  if (pd == DDPM_BOOL && op == B_SUB) {
    CHECK(st == DDPM_ERR_DTYPE);
  } else {
    CHECK_OK(st);
    if (!st) {
      int nd = bs->na > bs->nb ? bs->na : bs->nb;
      int64_t shape[8], idx[8] = {0};
      for (int d = 0; d < nd; d++) {
        int ia = d - (nd - bs->na), ib = d - (nd - bs->nb);
        int64_t x = ia >= 0 ? bs->sa[ia] : 1, y = ib >= 0 ? bs->sb[ib] : 1;
        shape[d] = x > y ? x : y;
      }
      CHECK(ddpm_tensor_dtype(o) == odt && same_shape_as(o, nd, shape));
      int bad = 0;
      do {
        double x = ref_store(pd, tget_b(a, nd, idx)), y = ref_store(pd, tget_b(b, nd, idx));
        double want = ref_store(odt, bref(op, x, y));
        ELEM(bad, tget(o, idx), want, dtype_tol(odt, want), "%s(%g, %g) %s,%s %s,%s", bnames[op], x, y, dt_name(da),
             dt_name(db), layout_name[la], layout_name[lb]);
      } while (nd && next_index(nd, shape, idx));
      CHECK_CASE(bad, "%s %s,%s shapes %s/%s layouts %s,%s", bnames[op], dt_name(da), dt_name(db),
                 ddpm_tensor_ndim(a) ? "nd" : "0d", ddpm_tensor_ndim(b) ? "nd" : "0d", layout_name[la],
                 layout_name[lb]);
    }
  }
  ddpm_tensor_release(o);
  ddpm_tensor_release(a);
  ddpm_tensor_release(b);
}

static void test_binary(void) {
  trng r = {13};
  for (int op = 0; op < B_COUNT; op++)
    for (int di = 0; di < 8; di++) {
      int dt = all_dtypes[di];
      if (op == B_POW && dt == DDPM_BOOL) continue;
      for (size_t s = 0; s < sizeof bshapes / sizeof bshapes[0]; s++)
        for (int la = 0; la < LAYOUT_COUNT; la++) {
          int lb = (la + (int)s) % LAYOUT_COUNT;
          check_binary_case(op, dt, dt, &bshapes[s], la, lb, &r);
        }
    }
  /* type promotion between different dtypes */
  static const int pairs[][3] = {
      {DDPM_FLOAT32, DDPM_FLOAT64, DDPM_FLOAT64}, {DDPM_FLOAT16, DDPM_BFLOAT16, DDPM_FLOAT32},
      {DDPM_INT32, DDPM_INT64, DDPM_INT64},       {DDPM_UINT8, DDPM_INT32, DDPM_INT32},
      {DDPM_BOOL, DDPM_UINT8, DDPM_UINT8},        {DDPM_INT64, DDPM_FLOAT16, DDPM_FLOAT16},
      {DDPM_BOOL, DDPM_FLOAT32, DDPM_FLOAT32},    {DDPM_BFLOAT16, DDPM_FLOAT32, DDPM_FLOAT32},
      {DDPM_INT64, DDPM_FLOAT64, DDPM_FLOAT64},   {DDPM_UINT8, DDPM_BFLOAT16, DDPM_BFLOAT16},
  };
  for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
    CHECK(ddpm_promote_types(pairs[p][0], pairs[p][1]) == pairs[p][2]);
    CHECK(ddpm_promote_types(pairs[p][1], pairs[p][0]) == pairs[p][2]);
    for (int op = 0; op < B_COUNT; op++) {
      if (op == B_POW && (pairs[p][0] == DDPM_BOOL || pairs[p][1] == DDPM_BOOL)) continue;
      check_binary_case(op, pairs[p][0], pairs[p][1], &bshapes[1], 1, 2, &r);
      check_binary_case(op, pairs[p][1], pairs[p][0], &bshapes[4], 3, 0, &r);
    }
  }
  /* NaN propagates through maximum/minimum, as in PyTorch */
  double nanv[2] = {NAN, 1}, one[2] = {0, 2};
  int64_t two = 2;
  ddpm_tensor *a = NULL, *b = NULL, *o = NULL;
  CHECK_OK(ddpm_from_doubles(&a, nanv, 1, &two, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_from_doubles(&b, one, 1, &two, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_maximum(&o, b, a));
  double out[2];
  CHECK_OK(ddpm_tensor_to_doubles(o, out, 2));
  CHECK(isnan(out[0]) && out[1] == 2);
  ddpm_tensor_release(o);
  ddpm_tensor_release(a);
  ddpm_tensor_release(b);
}

/* ---- where ---------------------------------------------------------------------------------------------- */
static void test_where(void) {
  trng r = {14};
  int64_t sc[2] = {3, 1}, sa[2] = {1, 4}, sb[1] = {4}, so[2] = {3, 4};
  static const int combos[][2] = {{DDPM_FLOAT32, DDPM_FLOAT32}, {DDPM_FLOAT32, DDPM_FLOAT64},
                                  {DDPM_INT64, DDPM_INT32},     {DDPM_FLOAT16, DDPM_FLOAT16},
                                  {DDPM_BFLOAT16, DDPM_UINT8},  {DDPM_BOOL, DDPM_BOOL}};
  for (size_t k = 0; k < sizeof combos / sizeof combos[0]; k++)
    for (int lay = 0; lay < LAYOUT_COUNT; lay++) {
      int da = combos[k][0], db = combos[k][1], odt = ddpm_promote_types(da, db);
      ddpm_tensor *c = trand(DDPM_BOOL, 2, sc, 0, 1, &r, lay), *a = trand(da, 2, sa, -5, 5, &r, lay);
      ddpm_tensor *b = trand(db, 1, sb, -5, 5, &r, lay), *o = NULL;
      CHECK_OK(ddpm_where(&o, c, a, b));
      if (o) {
        CHECK(ddpm_tensor_dtype(o) == odt && same_shape_as(o, 2, so));
        int64_t idx[2] = {0};
        int bad = 0;
        do {
          double want = ref_store(odt, tget_b(c, 2, idx) ? tget_b(a, 2, idx) : tget_b(b, 2, idx));
          ELEM(bad, tget(o, idx), want, 0, "where %s/%s", dt_name(da), dt_name(db));
        } while (next_index(2, so, idx));
        CHECK_CASE(bad, "where %s,%s %s", dt_name(da), dt_name(db), layout_name[lay]);
      }
      ddpm_tensor_release(o);
      ddpm_tensor_release(a);
      ddpm_tensor_release(b);
      ddpm_tensor_release(c);
    }
  /* a non-bool condition is refused; a uint8 mask is accepted as in old PyTorch */
  ddpm_tensor *f = trand(DDPM_FLOAT32, 2, so, -1, 1, &r, 0), *o = NULL;
  CHECK(ddpm_where(&o, f, f, f) == DDPM_ERR_DTYPE);
  ddpm_tensor_release(f);
}

/* ---- copy / convert between every pair of dtypes --------------------------------------------------- */
static void test_convert(void) {
  static const double fvals[] = {0, 1, -1, 2.5, -3.75, 100, 200.5, 0.1, -0.0, 65504, 1e-3, 42};
  static const double ivals[] = {0, 1, -1, 2, -3, 100, 127, 5, 0, 77, 9, 42};
  static const double uvals[] = {0, 1, 255, 2, 3, 100, 200, 5, 0, 77, 9, 42};
  static const double bvals[] = {0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1};
  int64_t shape[2] = {3, 4}, tshape[2] = {4, 3};
  for (int si = 0; si < 8; si++)
    for (int di = 0; di < 8; di++) {
      int sdt = all_dtypes[si], ddt = all_dtypes[di];
      const double *vals = is_fdt(sdt) ? fvals : sdt == DDPM_UINT8 ? uvals : sdt == DDPM_BOOL ? bvals : ivals;
      ddpm_tensor *s = NULL, *o = NULL, *st = NULL;
      CHECK_OK(ddpm_from_doubles(&s, vals, 2, shape, sdt, DDPM_CPU));
      /* contiguous conversion */
      CHECK_OK(ddpm_to(&o, s, ddt, DDPM_CPU));
      int bad = 0;
      int64_t idx[2] = {0};
      if (o) {
        CHECK(ddpm_tensor_dtype(o) == ddt);
        do {
          double sv = tget(s, idx), want = ref_store(ddt, sv);
          ELEM(bad, tget(o, idx), want, 0, "convert %g %s -> %s", sv, dt_name(sdt), dt_name(ddt));
        } while (next_index(2, shape, idx));
        CHECK_CASE(bad, "convert %s -> %s", dt_name(sdt), dt_name(ddt));
      }
      /* a transposed source copied into a transposed destination of another dtype */
      ddpm_tensor *d = NULL, *dt_view = NULL;
      CHECK_OK(ddpm_transpose(&st, s, 0, 1));
      CHECK_OK(ddpm_empty(&d, 2, shape, ddt, DDPM_CPU));
      CHECK_OK(ddpm_transpose(&dt_view, d, 0, 1));
      CHECK_OK(ddpm_copy_(dt_view, st));
      bad = 0;
      memset(idx, 0, sizeof idx);
      do {
        double want = ref_store(ddt, tget(s, idx));
        ELEM(bad, tget(d, idx), want, 0, "copy_ transposed %s -> %s", dt_name(sdt), dt_name(ddt));
      } while (next_index(2, shape, idx));
      CHECK_CASE(bad, "copy_ transposed %s -> %s", dt_name(sdt), dt_name(ddt));
      (void)tshape;
      ddpm_tensor_release(dt_view);
      ddpm_tensor_release(d);
      ddpm_tensor_release(st);
      ddpm_tensor_release(o);
      ddpm_tensor_release(s);
    }
  /* copy_ broadcasts the source; a wrong shape is refused */
  ddpm_tensor *row = NULL, *m = NULL, *bad3 = NULL;
  double rv[4] = {1, 2, 3, 4};
  int64_t four = 4, three = 3;
  CHECK_OK(ddpm_from_doubles(&row, rv, 1, &four, DDPM_FLOAT64, DDPM_CPU));
  CHECK_OK(ddpm_empty(&m, 2, shape, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_copy_(m, row));
  double out[12];
  CHECK_OK(ddpm_tensor_to_doubles(m, out, 12));
  CHECK(out[0] == 1 && out[7] == 4 && out[9] == 2);
  CHECK_OK(ddpm_empty(&bad3, 1, &three, DDPM_FLOAT32, DDPM_CPU));
  CHECK(ddpm_copy_(m, bad3) == DDPM_ERR_SHAPE);
  ddpm_tensor_release(bad3);
  ddpm_tensor_release(m);
  ddpm_tensor_release(row);
  /* contiguous() of a contiguous tensor is the same tensor; clone() never is */
  ddpm_tensor *c = NULL, *c2 = NULL, *c3 = NULL;
  CHECK_OK(ddpm_empty(&c, 2, shape, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_contiguous(&c2, c));
  CHECK(c2 == c);
  CHECK_OK(ddpm_clone(&c3, c));
  CHECK(c3 != c && !ddpm_tensor_same_storage(c3, c));
  ddpm_tensor_release(c3);
  ddpm_tensor_release(c2);
  ddpm_tensor_release(c);
}

/* ---- fill ------------------------------------------------------------------------------------------------ */
static void test_fill(void) {
  static const double values[] = {0, 1, -2.5, 3, 300};
  int64_t shape[2] = {4, 6};
  for (int di = 0; di < 8; di++)
    for (size_t k = 0; k < sizeof values / sizeof values[0]; k++) {
      int dt = all_dtypes[di];
      double v = values[k];
      ddpm_tensor *t = NULL, *win = NULL;
      CHECK_OK(ddpm_full(&t, 2, shape, 7, dt, DDPM_CPU));
      /* fill a strided window: column 1 onwards, every other column */
      CHECK_OK(ddpm_slice(&win, t, 1, 1, 6, 2));
      CHECK_OK(ddpm_fill_(win, v));
      int64_t idx[2] = {0};
      int bad = 0;
      do {
        double want = (idx[1] % 2 == 1) ? ref_store(dt, v) : ref_store(dt, 7);
        ELEM(bad, tget(t, idx), want, 0, "fill %g %s", v, dt_name(dt));
      } while (next_index(2, shape, idx));
      CHECK_CASE(bad, "fill %g %s", v, dt_name(dt));
      ddpm_tensor_release(win);
      ddpm_tensor_release(t);
    }
  /* filling an expanded view would write one element many times: refused */
  ddpm_tensor *one = NULL, *ex = NULL;
  int64_t s1[1] = {1}, s4[1] = {4};
  CHECK_OK(ddpm_empty(&one, 1, s1, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_expand(&ex, one, 1, s4));
  CHECK(ddpm_fill_(ex, 1) == DDPM_ERR_ARGUMENT);
  ddpm_tensor_release(ex);
  ddpm_tensor_release(one);
}

/* ---- in-place ops ------------------------------------------------------------------------------------------ */
static void test_inplace(void) {
  trng r = {15};
  int64_t shape[2] = {5, 6}, row[1] = {6};
  static const int dts[] = {DDPM_FLOAT32, DDPM_FLOAT64, DDPM_FLOAT16, DDPM_BFLOAT16, DDPM_INT64, DDPM_INT32};
  for (size_t k = 0; k < sizeof dts / sizeof dts[0]; k++)
    for (int op = 0; op < 6; op++) {
      int dt = dts[k];
      if (op == 2 && !is_fdt(dt)) continue; /* div_ into an integer tensor is refused below */
      ddpm_tensor *x = trand(dt, 2, shape, -4, 4, &r, LAYOUT_PERMUTED);
      ddpm_tensor *b = trand(DDPM_FLOAT64, 1, row, 0.5, 3, &r, LAYOUT_SLICED);
      if (!is_fdt(dt)) {
        ddpm_tensor *bi = NULL;
        CHECK_OK(ddpm_to(&bi, b, dt, DDPM_CPU));
        ddpm_tensor_release(b);
        b = bi;
      }
      double before[30], after[30];
      int64_t idx[2] = {0};
      int i = 0;
      do before[i++] = tget(x, idx);
      while (next_index(2, shape, idx));
      switch (op) {
      case 0: CHECK_OK(ddpm_add_(x, b, is_fdt(dt) ? 0.5 : 2)); break;
      case 1: CHECK_OK(ddpm_mul_(x, b)); break;
      case 2: CHECK_OK(ddpm_div_(x, b)); break;
      case 3: CHECK_OK(ddpm_add_scalar_(x, 3)); break;
      case 4: CHECK_OK(ddpm_mul_scalar_(x, -2)); break;
      default: CHECK_OK(ddpm_clamp_(x, -1, 2)); break;
      }
      memset(idx, 0, sizeof idx);
      i = 0;
      do after[i++] = tget(x, idx);
      while (next_index(2, shape, idx));
      int bad = 0;
      for (i = 0; i < 30; i++) {
        int64_t ix[1] = {i % 6};
        double bv = ref_store(dt, tget(b, ix)), x0 = before[i], want;
        switch (op) {
        case 0: want = x0 + (is_fdt(dt) ? ref_store(dt, 0.5 * bv) : 2 * bv); break;
        case 1: want = x0 * bv; break;
        case 2: want = x0 / bv; break;
        case 3: want = x0 + 3; break;
        case 4: want = x0 * -2; break;
        default: want = x0 < -1 ? -1 : x0 > 2 ? 2 : x0; break;
        }
        want = ref_store(dt, want);
        ELEM(bad, after[i], want, dtype_tol(dt, want), "in-place op %d %s", op, dt_name(dt));
      }
      CHECK_CASE(bad, "in-place op %d %s", op, dt_name(dt));
      ddpm_tensor_release(b);
      ddpm_tensor_release(x);
    }
  /* in-place with a result shape that does not fit self; integer true division */
  ddpm_tensor *x = trand(DDPM_FLOAT32, 1, row, 0, 1, &r, 0), *m = trand(DDPM_FLOAT32, 2, shape, 0, 1, &r, 0);
  ddpm_tensor *xi = trand(DDPM_INT64, 1, row, 1, 3, &r, 0);
  CHECK(ddpm_add_(x, m, 1) == DDPM_ERR_SHAPE);
  CHECK(ddpm_div_(xi, xi) == DDPM_ERR_DTYPE);
  CHECK(ddpm_clamp_(x, 2, 1) == DDPM_ERR_ARGUMENT);
  ddpm_tensor_release(x);
  ddpm_tensor_release(xi);
  ddpm_tensor_release(m);
}

/* shapes big enough for the threaded iteration: one long row split across threads, many
 * short rows, a few long rows, and strided operands, with several thread counts */
static void test_threaded(void) {
  trng r = {16};
  static const bshape big[] = {
      {1, 1, {300000}, {300000}},
      {4, 4, {8, 64, 16, 16}, {1, 64, 1, 1}},
      {2, 2, {3, 70000}, {3, 1}},
      {3, 1, {40, 50, 30}, {30}},
  };
  for (int nt = 1; nt <= 5; nt += 2) {
    ddpm_set_num_threads(nt);
    for (size_t k = 0; k < sizeof big / sizeof big[0]; k++) {
      check_binary_case(B_ADD, DDPM_FLOAT32, DDPM_FLOAT32, &big[k], 0, 0, &r);
      check_binary_case(B_MUL, DDPM_FLOAT32, DDPM_FLOAT32, &big[k], (int)k % 3, 1, &r);
      check_binary_case(B_MAX, DDPM_FLOAT64, DDPM_FLOAT64, &big[k], 1, 2, &r);
    }
    ddpm_tensor *x = trand(DDPM_FLOAT32, 4, big[1].sa, -3, 3, &r, LAYOUT_PERMUTED), *o = NULL;
    CHECK_OK(ddpm_exp(&o, x));
    int64_t idx[4] = {0};
    int bad = 0;
    do ELEM(bad, tget(o, idx), ref_store(DDPM_FLOAT32, exp(tget(x, idx))), dtype_tol(DDPM_FLOAT32, exp(tget(x, idx))), "exp");
    while (next_index(4, big[1].sa, idx));
    CHECK_CASE(bad, "threaded exp of a permuted tensor, %d threads", nt);
    ddpm_tensor_release(o);
    ddpm_tensor_release(x);
  }
  ddpm_set_num_threads(2);
}

int main(void) {
  ddpm_set_num_threads(2);
  test_threaded();
  test_unary();
  test_scalar();
  test_binary();
  test_where();
  test_convert();
  test_fill();
  test_inplace();
  return tcheck_summary("test_elementwise");
}
