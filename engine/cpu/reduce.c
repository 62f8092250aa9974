/* reduce.c: CPU reductions (sum, amax, amin, argmax, argmin) over any set of dims.
 * Floats accumulate in double, integers in int64; the output arrives in keepdim shape.
 * After coalescing, the plan has kept dims (one per output) and reduced dims (walked per
 * output as rows of a contiguous-or-strided inner run).  Paths, chosen per call:
 *   rows     contiguous [M, L] reduced over L (sum over the last dims): one tight loop per row;
 *   columns  contiguous input reduced over leading dims (bias gradients): whole rows at once;
 *   split    few outputs with long reductions (sum of everything): the reduced elements of
 *            each output are split across threads and the partial results combined in order;
 *   inner    otherwise: outputs split across threads, each walks its reduced sub-space.
 * Extrema follow PyTorch: NaN wins, ties keep the first index. */
#include "cpu.h"
#include <math.h>
#include <omp.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

typedef struct {
  const ddpm_tensor *x;
  ddpm_tensor *out;
  int op;
  int nk, nr;                       /* kept and reduced dims after coalescing */
  int64_t kshape[DDPM_MAX_DIMS], kstride[DDPM_MAX_DIMS];
  int64_t rshape[DDPM_MAX_DIMS], rstride[DDPM_MAX_DIMS];
  int64_t rcount;
  int64_t inner, outer;             /* the reduced sub-space as outer rows of inner elements */
} red_plan;

/* a partial result over some rows of one output's reduced sub-space */
typedef struct {
  double acc, best;
  int64_t iacc, besti;
  bool any;
} partial;

static inline bool is_max(int op) { return op == DDPM_OP_AMAX || op == DDPM_OP_ARGMAX; }

static inline int64_t ld_int(const char *p, int dt) {
  switch (dt) {
  case DDPM_INT64: return *(const int64_t *)p;
  case DDPM_INT32: return *(const int32_t *)p;
  default: return *(const uint8_t *)p;
  }
}

/* fold one candidate into an extremum (v at flat position pos) */
static inline void better(partial *r, double v, int64_t pos, bool mx) {
  if (!r->any) {
    r->best = v, r->besti = pos, r->any = true;
    return;
  }
  if (r->best != r->best) return; /* a NaN already won */
  if (v != v || (mx ? v > r->best : v < r->best)) r->best = v, r->besti = pos;
}

/* Sum of n floats at stride 1 in double, four accumulators (the float->double widening keeps
 * the result independent of summation order to well below float precision). */
static inline double sum_f32(const float *f, int64_t n) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a0 += f[i];
    a1 += f[i + 1];
    a2 += f[i + 2];
    a3 += f[i + 3];
  }
  for (; i < n; i++) a0 += f[i];
  return (a0 + a1) + (a2 + a3);
}
static inline double sum_f64(const double *f, int64_t n) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a0 += f[i];
    a1 += f[i + 1];
    a2 += f[i + 2];
    a3 += f[i + 3];
  }
  for (; i < n; i++) a0 += f[i];
  return (a0 + a1) + (a2 + a3);
}

/* bfloat16 widens exactly to float, so its sum takes the float32 arithmetic */
static inline double sum_bf16(const uint16_t *h, int64_t n) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a0 += ddpm_bf16_to_f32(h[i]);
    a1 += ddpm_bf16_to_f32(h[i + 1]);
    a2 += ddpm_bf16_to_f32(h[i + 2]);
    a3 += ddpm_bf16_to_f32(h[i + 3]);
  }
  for (; i < n; i++) a0 += ddpm_bf16_to_f32(h[i]);
  return (a0 + a1) + (a2 + a3);
}

/* Reduce elements [e0, e1) of the reduced sub-space that starts at base (in its row-major
 * order) into r; the range may start and end inside a row. */
static void reduce_range(const red_plan *pl, const char *base, int64_t e0, int64_t e1, partial *r) {
  int dt = pl->x->dtype, es = ddpm_dsize(dt), nr = pl->nr, op = pl->op;
  int64_t inner = pl->inner, istr = nr ? pl->rstride[nr - 1] * es : 0;
  if (e0 >= e1 || inner == 0) return;
  int64_t idx[DDPM_MAX_DIMS] = {0}, row = e0 / inner, i0 = e0 % inner;
  for (int d = nr - 2; d >= 0; d--) {
    idx[d] = row % pl->rshape[d];
    row /= pl->rshape[d];
  }
  bool isint = !ddpm_is_float(dt), mx = is_max(op);
  for (int64_t e = e0; e < e1;) {
    const char *p = base + i0 * istr;
    for (int d = 0; d < nr - 1; d++) p += idx[d] * pl->rstride[d] * es;
    int64_t n = inner - i0 < e1 - e ? inner - i0 : e1 - e;
    if (op == DDPM_OP_SUM) {
      if (dt == DDPM_FLOAT32 && istr == 4) r->acc += sum_f32((const float *)p, n);
      else if (dt == DDPM_FLOAT64 && istr == 8) r->acc += sum_f64((const double *)p, n);
      else if (dt == DDPM_BFLOAT16 && istr == 2) r->acc += sum_bf16((const uint16_t *)p, n);
      else if (isint)
        for (int64_t i = 0; i < n; i++) r->iacc += ld_int(p + i * istr, dt);
      else
        for (int64_t i = 0; i < n; i++) r->acc += ddpm_load_as_double(p + i * istr, dt);
    } else if (dt == DDPM_FLOAT32 && istr == 4 && (op == DDPM_OP_AMAX || op == DDPM_OP_AMIN) &&
               !(r->any && r->best != r->best)) {
      /* values only (no index): a branch-free loop the compiler vectorises; NaN is tracked on
       * the side and, when present, wins as in the exact path */
      const float *f = (const float *)p;
      float m = r->any ? (float)r->best : f[0];
      int nan = 0;
      int64_t i = 0;
#ifdef __SSE2__
      /* _mm_max_ps(a, b) is exactly "a > b ? a : b" (and min likewise), the scalar rule */
      __m128 l0 = _mm_set1_ps(m), l1 = l0, bad = _mm_setzero_ps();
      for (; i + 8 <= n; i += 8) {
        __m128 a = _mm_loadu_ps(f + i), b = _mm_loadu_ps(f + i + 4);
        bad = _mm_or_ps(bad, _mm_or_ps(_mm_cmpunord_ps(a, a), _mm_cmpunord_ps(b, b)));
        l0 = mx ? _mm_max_ps(a, l0) : _mm_min_ps(a, l0);
        l1 = mx ? _mm_max_ps(b, l1) : _mm_min_ps(b, l1);
      }
      float lanes[8];
      _mm_storeu_ps(lanes, l0);
      _mm_storeu_ps(lanes + 4, l1);
      for (int k = 0; k < 8; k++) m = (mx ? lanes[k] > m : lanes[k] < m) ? lanes[k] : m;
      nan = _mm_movemask_ps(bad) != 0;
#endif
      for (; i < n; i++) {
        nan |= f[i] != f[i];
        m = (mx ? f[i] > m : f[i] < m) ? f[i] : m;
      }
      r->best = nan ? NAN : m;
      r->any = true;
    } else if (dt == DDPM_FLOAT32) {
      for (int64_t i = 0; i < n; i++) better(r, *(const float *)(p + i * istr), e + i, mx);
    } else if (dt == DDPM_FLOAT64) {
      for (int64_t i = 0; i < n; i++) better(r, *(const double *)(p + i * istr), e + i, mx);
    } else {
      for (int64_t i = 0; i < n; i++) better(r, ddpm_load_as_double(p + i * istr, dt), e + i, mx);
    }
    e += n;
    i0 = 0;
    for (int d = nr - 2; d >= 0; d--) {
      if (++idx[d] < pl->rshape[d]) break;
      idx[d] = 0;
    }
  }
}

/* fold b (a later range of rows) into a */
static void combine(partial *a, const partial *b, int op) {
  a->acc += b->acc;
  a->iacc += b->iacc;
  if (b->any) better(a, b->best, b->besti, is_max(op));
}

static void store(const red_plan *pl, const partial *r, char *dst) {
  int odt = pl->out->dtype;
  switch (pl->op) {
  case DDPM_OP_SUM:
    if (!ddpm_is_float(pl->x->dtype)) *(int64_t *)dst = r->iacc;
    else if (odt == DDPM_FLOAT32) *(float *)dst = (float)r->acc;
    else ddpm_store_from_double(dst, odt, r->acc);
    break;
  case DDPM_OP_ARGMAX:
  case DDPM_OP_ARGMIN: *(int64_t *)dst = r->any ? r->besti : 0; break;
  default: ddpm_store_from_double(dst, odt, r->best); break;
  }
}

/* offset (in elements) of the reduced sub-space of output number o */
static int64_t out_base(const red_plan *pl, int64_t o) {
  int64_t off = 0;
  for (int d = pl->nk - 1; d >= 0; d--) {
    off += (o % pl->kshape[d]) * pl->kstride[d];
    o /= pl->kshape[d];
  }
  return off;
}

/* ---- inner: outputs split across threads ---------------------------------------------------- */
static void inner_body(int64_t lo, int64_t hi, void *ctx) {
  const red_plan *pl = ctx;
  int es = ddpm_dsize(pl->x->dtype), oes = ddpm_dsize(pl->out->dtype);
  const char *xb = ddpm_ptr(pl->x);
  char *ob = ddpm_ptr(pl->out);
  for (int64_t o = lo; o < hi; o++) {
    partial r = {0};
    reduce_range(pl, xb + out_base(pl, o) * es, 0, pl->rcount, &r);
    store(pl, &r, ob + o * oes);
  }
}

/* ---- rows: contiguous [M, L], reduced over L ---------------------------------------------------- */
static void rows_body(int64_t lo, int64_t hi, void *ctx) {
  const red_plan *pl = ctx;
  int64_t L = pl->inner;
  if (pl->op == DDPM_OP_SUM && pl->x->dtype == DDPM_FLOAT32 && pl->out->dtype == DDPM_FLOAT32) {
    const float *x = (const float *)ddpm_ptr(pl->x);
    float *o = (float *)ddpm_ptr(pl->out);
    for (int64_t m = lo; m < hi; m++) o[m] = (float)sum_f32(x + m * L, L);
    return;
  }
  inner_body(lo, hi, ctx);
}

/* ---- split: few outputs, long reductions ---------------------------------------------------------- */
typedef struct {
  const red_plan *pl;
  const char *base;
  partial *parts; /* one per thread */
  int nparts;
} split_ctx;

static void split_output(const red_plan *pl, int64_t o, int nt) {
  int es = ddpm_dsize(pl->x->dtype);
  const char *base = ddpm_ptr(pl->x) + out_base(pl, o) * es;
  partial parts[256] = {{0}};
  if (nt > 256) nt = 256;
  int64_t n = pl->rcount;
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    /* chunks of whole cache lines, so two threads never sum the same line */
    int64_t a = (n * t / T) & ~(int64_t)15, b = t == T - 1 ? n : (n * (t + 1) / T) & ~(int64_t)15;
    reduce_range(pl, base, a, b, &parts[t]);
  }
  partial r = parts[0];
  for (int t = 1; t < nt; t++) combine(&r, &parts[t], pl->op); /* in order: ties keep the first */
  store(pl, &r, ddpm_ptr(pl->out) + o * ddpm_dsize(pl->out->dtype));
}

/* ---- columns: contiguous input, reduced over leading dims --------------------------------------- */
typedef struct {
  const char *x;
  char *out;
  int dt;
  int64_t rows, cols;
} colsum_ctx;

static void colsum_body(int64_t lo, int64_t hi, void *vctx) {
  colsum_ctx *c = vctx;
  int64_t w = hi - lo;
  double stackacc[512];
  double *acc = w <= 512 ? stackacc : calloc((size_t)w, sizeof(double));
  if (!acc) return;
  memset(acc, 0, sizeof(double) * (size_t)w);
  for (int64_t r = 0; r < c->rows; r++) {
    if (c->dt == DDPM_FLOAT32) {
      const float *row = (const float *)c->x + r * c->cols + lo;
      for (int64_t j = 0; j < w; j++) acc[j] += row[j];
    } else if (c->dt == DDPM_BFLOAT16) { /* bias gradients under autocast('cpu') */
      const uint16_t *row = (const uint16_t *)c->x + r * c->cols + lo;
      for (int64_t j = 0; j < w; j++) acc[j] += ddpm_bf16_to_f32(row[j]);
    } else {
      const double *row = (const double *)c->x + r * c->cols + lo;
      for (int64_t j = 0; j < w; j++) acc[j] += row[j];
    }
  }
  for (int64_t j = 0; j < w; j++) {
    if (c->dt == DDPM_FLOAT32) ((float *)c->out)[lo + j] = (float)acc[j];
    else if (c->dt == DDPM_BFLOAT16) ((uint16_t *)c->out)[lo + j] = ddpm_f32_to_bf16((float)acc[j]);
    else ((double *)c->out)[lo + j] = acc[j];
  }
  if (acc != stackacc) free(acc);
}

static int run_reduce(ddpm_call *c) {
  const ddpm_tensor *x = c->in[0];
  ddpm_tensor *out = c->out[0];
  uint32_t mask = (uint32_t)c->i[0];
  red_plan pl = {.x = x, .out = out, .op = c->op, .rcount = 1};
  int64_t nout = ddpm_tensor_numel(out);
  /* split dims into kept / reduced, dropping size-1 dims and merging contiguous runs */
  for (int d = 0; d < x->ndim; d++) {
    int64_t n = x->shape[d], s = x->strides[d];
    bool red = (mask >> d) & 1u;
    if (red) pl.rcount *= n;
    if (n == 1) continue;
    int64_t *sh = red ? pl.rshape : pl.kshape, *st = red ? pl.rstride : pl.kstride;
    int *cnt = red ? &pl.nr : &pl.nk;
    if (*cnt > 0 && st[*cnt - 1] == s * n) {
      sh[*cnt - 1] *= n;
      st[*cnt - 1] = s;
    } else {
      sh[*cnt] = n;
      st[*cnt] = s;
      (*cnt)++;
    }
  }
  if (pl.rcount == 0 && c->op != DDPM_OP_SUM)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: cannot reduce over an empty dimension of %s", ddpm_opname(c->op),
                     ddpm_fmt_tensor(x));
  pl.inner = pl.nr ? pl.rshape[pl.nr - 1] : 1;
  pl.outer = pl.inner ? pl.rcount / pl.inner : 0;
  if (nout == 0) return DDPM_OK;
  int nt = ddpm_threads();
  int64_t total = nout * pl.rcount;
  bool contig = ddpm_tensor_is_contiguous(x);

  /* columns: contiguous x whose reduced dims all come before the kept ones */
  if (c->op == DDPM_OP_SUM &&
      (x->dtype == DDPM_FLOAT32 || x->dtype == DDPM_FLOAT64 || (x->dtype == DDPM_BFLOAT16 && out->dtype == x->dtype)) &&
      contig && pl.nk == 1 &&
      pl.kstride[0] == 1 && pl.rcount > 1) {
    int lastred = -1, firstkept = x->ndim;
    for (int d = 0; d < x->ndim; d++) {
      if (x->shape[d] == 1) continue;
      if ((mask >> d) & 1u) lastred = d;
      else if (d < firstkept) firstkept = d;
    }
    if (lastred < firstkept) {
      colsum_ctx cc = {ddpm_ptr(x), ddpm_ptr(out), x->dtype, pl.rcount, pl.kshape[0]};
      int64_t grain = total > CPU_PAR_GRAIN ? (cc.cols + nt - 1) / nt : cc.cols + 1;
      cpu_parallel_for(cc.cols, grain < 16 ? 16 : grain, colsum_body, &cc);
      return DDPM_OK;
    }
  }
  /* split: too few outputs to keep the threads busy, each with a long reduction */
  if (nt > 1 && nout < nt && total >= 4 * CPU_PAR_GRAIN && !omp_in_parallel()) {
    for (int64_t o = 0; o < nout; o++) split_output(&pl, o, nt);
    return DDPM_OK;
  }
  int64_t grain = pl.rcount > 0 ? CPU_PAR_GRAIN / pl.rcount + 1 : nout + 1;
  /* rows: each output a contiguous run of the input */
  if (pl.nr == 1 && pl.rstride[0] == 1 && pl.nk == 1 && pl.kstride[0] == pl.inner) {
    cpu_parallel_for(nout, grain, rows_body, &pl);
    return DDPM_OK;
  }
  cpu_parallel_for(nout, grain, inner_body, &pl);
  return DDPM_OK;
}

int cpu_SUM(ddpm_call *c) { return run_reduce(c); }
int cpu_AMAX(ddpm_call *c) { return run_reduce(c); }
int cpu_AMIN(ddpm_call *c) { return run_reduce(c); }
int cpu_ARGMAX(ddpm_call *c) { return run_reduce(c); }
int cpu_ARGMIN(ddpm_call *c) { return run_reduce(c); }
