/* reduce.c: CPU reductions (sum, amax, amin, argmax, argmin) over any set of dims.
 * Floats accumulate in double, integers in int64; the output arrives in keepdim shape.
 * Two paths: "inner" (for each output, walk its reduced sub-space) and "columns" (contiguous
 * input reduced over leading dims, e.g. bias gradients: accumulate whole rows at once). */
#include "cpu.h"
#include <math.h>
#include <omp.h>

typedef struct {
  const ddpm_tensor *x;
  ddpm_tensor *out;
  int op;
  int nk, nr;                       /* kept and reduced dims after coalescing */
  int64_t kshape[DDPM_MAX_DIMS], kstride[DDPM_MAX_DIMS];
  int64_t rshape[DDPM_MAX_DIMS], rstride[DDPM_MAX_DIMS];
  int64_t rcount;
} red_plan;

static inline double ld(const char *p, int dt) {
  switch (dt) {
  case DDPM_FLOAT32: return *(const float *)p;
  case DDPM_FLOAT64: return *(const double *)p;
  default: return ddpm_load_as_double(p, dt);
  }
}

/* Walk the reduced sub-space of one output starting at element pointer base. */
static void reduce_one(const red_plan *pl, const char *base, char *dst) {
  int dt = pl->x->dtype, es = ddpm_dsize(dt);
  int64_t idx[DDPM_MAX_DIMS] = {0};
  int nr = pl->nr;
  int64_t inner = nr ? pl->rshape[nr - 1] : 1, istr = nr ? pl->rstride[nr - 1] * es : 0;
  int64_t outer = pl->rcount / (inner ? inner : 1);
  bool isint = !ddpm_is_float(dt);
  double acc = 0, best = 0;
  int64_t iacc = 0, besti = -1, pos = 0;
  bool first = true;
  if (pl->op == DDPM_OP_AMAX || pl->op == DDPM_OP_ARGMAX) best = -INFINITY;
  if (pl->op == DDPM_OP_AMIN || pl->op == DDPM_OP_ARGMIN) best = INFINITY;
  for (int64_t o = 0; o < outer && inner; o++) {
    const char *p = base;
    for (int d = 0; d < nr - 1; d++) p += idx[d] * pl->rstride[d] * es;
    switch (pl->op) {
    case DDPM_OP_SUM:
      if (dt == DDPM_FLOAT32 && istr == 4) {
        const float *f = (const float *)p;
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        int64_t i = 0;
        for (; i + 4 <= inner; i += 4) {
          a0 += f[i];
          a1 += f[i + 1];
          a2 += f[i + 2];
          a3 += f[i + 3];
        }
        for (; i < inner; i++) a0 += f[i];
        acc += (a0 + a1) + (a2 + a3);
      } else if (isint) {
        for (int64_t i = 0; i < inner; i++) iacc += (int64_t)ld(p + i * istr, dt);
      } else {
        for (int64_t i = 0; i < inner; i++) acc += ld(p + i * istr, dt);
      }
      break;
    default: /* extrema: NaN wins, as in PyTorch; ties keep the first index */
      for (int64_t i = 0; i < inner; i++, pos++) {
        double v = ld(p + i * istr, dt);
        bool better;
        if (first) better = true;
        else if (best != best) better = false;
        else if (v != v) better = true;
        else if (pl->op == DDPM_OP_AMAX || pl->op == DDPM_OP_ARGMAX) better = v > best;
        else better = v < best;
        if (better) {
          best = v;
          besti = pos;
        }
        first = false;
      }
    }
    for (int d = nr - 2; d >= 0; d--) {
      if (++idx[d] < pl->rshape[d]) break;
      idx[d] = 0;
    }
  }
  int odt = pl->out->dtype;
  switch (pl->op) {
  case DDPM_OP_SUM:
    if (isint) *(int64_t *)dst = iacc;
    else ddpm_store_from_double(dst, odt, acc);
    break;
  case DDPM_OP_ARGMAX:
  case DDPM_OP_ARGMIN: *(int64_t *)dst = besti < 0 ? 0 : besti; break;
  default: ddpm_store_from_double(dst, odt, best); break;
  }
}

typedef struct {
  const red_plan *pl;
} job;

static void inner_body(int64_t lo, int64_t hi, void *ctx) {
  const red_plan *pl = ((job *)ctx)->pl;
  int es = ddpm_dsize(pl->x->dtype), oes = ddpm_dsize(pl->out->dtype);
  const char *xb = ddpm_ptr(pl->x);
  char *ob = ddpm_ptr(pl->out);
  int64_t idx[DDPM_MAX_DIMS];
  int64_t rem = lo;
  for (int d = pl->nk - 1; d >= 0; d--) {
    idx[d] = rem % pl->kshape[d];
    rem /= pl->kshape[d];
  }
  for (int64_t o = lo; o < hi; o++) {
    const char *p = xb;
    for (int d = 0; d < pl->nk; d++) p += idx[d] * pl->kstride[d] * es;
    reduce_one(pl, p, ob + o * oes);
    for (int d = pl->nk - 1; d >= 0; d--) {
      if (++idx[d] < pl->kshape[d]) break;
      idx[d] = 0;
    }
  }
}

/* Column sums of a contiguous [rows, cols] float32/float64 block. */
typedef struct {
  const char *x;
  char *out;
  int dt;
  int64_t rows, cols;
} colsum_ctx;

static void colsum_body(int64_t lo, int64_t hi, void *vctx) {
  colsum_ctx *c = vctx;
  int64_t w = hi - lo;
  double *acc = calloc((size_t)w, sizeof(double));
  if (!acc) return;
  for (int64_t r = 0; r < c->rows; r++) {
    if (c->dt == DDPM_FLOAT32) {
      const float *row = (const float *)c->x + r * c->cols + lo;
      for (int64_t j = 0; j < w; j++) acc[j] += row[j];
    } else {
      const double *row = (const double *)c->x + r * c->cols + lo;
      for (int64_t j = 0; j < w; j++) acc[j] += row[j];
    }
  }
  for (int64_t j = 0; j < w; j++) {
    if (c->dt == DDPM_FLOAT32) ((float *)c->out)[lo + j] = (float)acc[j];
    else ((double *)c->out)[lo + j] = acc[j];
  }
  free(acc);
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
  if (pl.rcount == 0 && (c->op != DDPM_OP_SUM))
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: cannot reduce over an empty dimension of %s", ddpm_opname(c->op),
                     ddpm_fmt_tensor(x));
  /* columns path: contiguous x, reduced dims form a prefix */
  if (c->op == DDPM_OP_SUM && (x->dtype == DDPM_FLOAT32 || x->dtype == DDPM_FLOAT64) &&
      ddpm_tensor_is_contiguous(x) && pl.nk == 1 && pl.kstride[0] == 1 && pl.rcount > 1) {
    int lastred = -1, firstkept = x->ndim;
    for (int d = 0; d < x->ndim; d++) {
      if (x->shape[d] == 1) continue;
      if ((mask >> d) & 1u) lastred = d;
      else if (d < firstkept) firstkept = d;
    }
    if (lastred < firstkept) {
      colsum_ctx cc = {ddpm_ptr(x), ddpm_ptr(out), x->dtype, pl.rcount, pl.kshape[0]};
      cpu_parallel_for(cc.cols, cc.rows * cc.cols > CPU_PAR_GRAIN ? 64 : cc.cols + 1, colsum_body, &cc);
      return DDPM_OK;
    }
  }
  job j = {&pl};
  int64_t grain = pl.rcount > 0 ? CPU_PAR_GRAIN / pl.rcount + 1 : nout + 1;
  cpu_parallel_for(nout, grain, inner_body, &j);
  return DDPM_OK;
}

int cpu_SUM(ddpm_call *c) { return run_reduce(c); }
int cpu_AMAX(ddpm_call *c) { return run_reduce(c); }
int cpu_AMIN(ddpm_call *c) { return run_reduce(c); }
int cpu_ARGMAX(ddpm_call *c) { return run_reduce(c); }
int cpu_ARGMIN(ddpm_call *c) { return run_reduce(c); }
