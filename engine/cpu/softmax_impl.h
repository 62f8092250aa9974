/* softmax_impl.h: the type-generic rows of softmax.c, included once per element type with R, SUF(name),
 * EXP, LOG, ROW_MAX and EXP_SHIFTED defined.  Not a header to use elsewhere. */

/* y = softmax(x) (or log_softmax) over n contiguous values; y may alias x.  Max-shifted, so large
 * logits do not overflow; a row of all -inf gives NaN, as in PyTorch.  EXP_SHIFTED(y, n, s) turns
 * y[k] into exp(y[k]) (keep = 1) or only sums them (keep = 0), adding the sum to the double s. */
void SUF(cpu_softmax_row)(const R *x, R *y, int64_t n, bool is_log) {
  if (FAST_ROW(x, y, n, is_log)) return;
  R mx = ROW_MAX(x, n);
  if (mx != mx) mx = 0; /* only NaNs: let them propagate through the arithmetic below */
  for (int64_t k = 0; k < n; k++) y[k] = x[k] - mx;
  double s = 0;
  if (is_log) {
    EXP_SHIFTED(y, n, s, 0);
    R ls = (R)LOG(s);
    for (int64_t k = 0; k < n; k++) y[k] -= ls;
  } else {
    EXP_SHIFTED(y, n, s, 1);
    R inv = (R)(1.0 / s);
    for (int64_t k = 0; k < n; k++) y[k] *= inv;
  }
}

/* gx from gy and the forward output y over n values: softmax gx = y (gy - sum gy y);
 * log_softmax gx = gy - exp(y) sum gy */
void SUF(cpu_softmax_row_bwd)(const R *gy, const R *y, R *gx, int64_t n, bool is_log) {
  double s = 0;
  if (is_log) {
    for (int64_t k = 0; k < n; k++) s += gy[k];
    R sr = (R)s;
    for (int64_t k = 0; k < n; k++) gx[k] = gy[k] - EXP(y[k]) * sr;
  } else {
    for (int64_t k = 0; k < n; k++) s += (double)gy[k] * y[k];
    R sr = (R)s;
    for (int64_t k = 0; k < n; k++) gx[k] = y[k] * (gy[k] - sr);
  }
}

typedef struct {
  const R *x, *gy;
  R *y;
  int64_t D, inner;
  bool is_log, bwd;
  int failed;
} SUF(sm_ctx);

/* rows [lo, hi) of the [outer*inner] rows; strided rows go through a contiguous buffer */
static void SUF(sm_range)(int64_t lo, int64_t hi, void *vctx) {
  SUF(sm_ctx) *c = vctx;
  int64_t D = c->D, inner = c->inner;
  if (inner == 1) {
    for (int64_t r = lo; r < hi; r++) {
      if (c->bwd) SUF(cpu_softmax_row_bwd)(c->gy + r * D, c->x + r * D, c->y + r * D, D, c->is_log);
      else SUF(cpu_softmax_row)(c->x + r * D, c->y + r * D, D, c->is_log);
    }
    return;
  }
  R *buf = cpu_scratch(0, sizeof(R) * (size_t)(3 * D + 1));
  if (!buf) {
#pragma omp atomic write
    c->failed = 1;
    return;
  }
  R *a = buf, *g = buf + D, *o = buf + 2 * D;
  for (int64_t r = lo; r < hi; r++) {
    int64_t base = (r / inner) * D * inner + r % inner;
    for (int64_t k = 0; k < D; k++) a[k] = c->x[base + k * inner];
    if (c->bwd) {
      for (int64_t k = 0; k < D; k++) g[k] = c->gy[base + k * inner];
      SUF(cpu_softmax_row_bwd)(g, a, o, D, c->is_log);
    } else {
      SUF(cpu_softmax_row)(a, o, D, c->is_log);
    }
    for (int64_t k = 0; k < D; k++) c->y[base + k * inner] = o[k];
  }
}
