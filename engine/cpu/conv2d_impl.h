/* conv2d_impl.h: the type-generic body of conv2d.c, included once per element type with
 *   R (float or double) and SUF(name) (name##_f32 / name##_f64) defined.  Not a header to use
 *   elsewhere. */

#include "conv2d_cols.h" /* im2col, col2im */

/* y[n] = w (*) x[n] + bias: per group and block of output rows, [Og, K] x [K, rows*Wo] */
static void SUF(fwd_image)(const conv_geom *g, const R *x, const R *w, const R *b, R *y, int64_t n, R *col) {
  for (int64_t grp = 0; grp < g->G; grp++) {
    const R *xg = x + (n * g->C + grp * g->Cg) * g->HW;
    const R *wg = w + grp * g->Og * g->K;
    R *yg = y + (n * g->O + grp * g->Og) * g->OHW;
    R beta = 0;
    if (b) { /* seed with the bias and let the GEMMs accumulate onto it */
      for (int64_t o = 0; o < g->Og; o++) {
        R v = b[grp * g->Og + o], *yr = yg + o * g->OHW;
        for (int64_t k = 0; k < g->OHW; k++) yr[k] = v;
      }
      beta = 1;
    }
    if (g->direct) {
      SUF(gemm)(false, false, g->Og, g->OHW, g->K, 1, wg, g->K, xg, g->OHW, beta, yg, g->OHW);
      continue;
    }
    for (int64_t oh0 = 0; oh0 < g->Ho; oh0 += g->rows) {
      int64_t oh1 = oh0 + g->rows < g->Ho ? oh0 + g->rows : g->Ho, nc = (oh1 - oh0) * g->Wo;
      SUF(im2col)(g, xg, col, oh0, oh1);
      SUF(gemm)(false, false, g->Og, nc, g->K, 1, wg, g->K, col, nc, beta, yg + oh0 * g->Wo, g->OHW);
    }
  }
}

/* gx[n] = w^T gy[n], through a column buffer and col2im unless the conv is a plain GEMM */
static void SUF(bwd_input_image)(const conv_geom *g, const R *gy, const R *w, R *gx, int64_t n, R *col) {
  for (int64_t grp = 0; grp < g->G; grp++) {
    const R *gyg = gy + (n * g->O + grp * g->Og) * g->OHW;
    const R *wg = w + grp * g->Og * g->K;
    R *gxg = gx + (n * g->C + grp * g->Cg) * g->HW;
    if (g->direct) {
      SUF(gemm)(true, false, g->K, g->OHW, g->Og, 1, wg, g->K, gyg, g->OHW, 0, gxg, g->OHW);
      continue;
    }
    memset(gxg, 0, sizeof(R) * (size_t)(g->Cg * g->HW));
    for (int64_t oh0 = 0; oh0 < g->Ho; oh0 += g->rows) {
      int64_t oh1 = oh0 + g->rows < g->Ho ? oh0 + g->rows : g->Ho, nc = (oh1 - oh0) * g->Wo;
      SUF(gemm)(true, false, g->K, nc, g->Og, 1, wg, g->K, gyg + oh0 * g->Wo, g->OHW, 0, col, nc);
      SUF(col2im)(g, col, gxg, oh0, oh1);
    }
  }
}

/* acc [O, K] (+)= gy[n] x col(x[n])^T; bacc[o] += sum of gy[n, o] (double, for accuracy) */
static void SUF(bwd_weight_image)(const conv_geom *g, const R *gy, const R *x, R *acc, double *bacc, int64_t n,
                                  R *col, bool first) {
  for (int64_t grp = 0; grp < g->G; grp++) {
    const R *gyg = gy + (n * g->O + grp * g->Og) * g->OHW;
    R *ag = acc ? acc + grp * g->Og * g->K : NULL;
    if (ag && g->direct) {
      const R *xg = x + (n * g->C + grp * g->Cg) * g->HW;
      SUF(gemm)(false, true, g->Og, g->K, g->OHW, 1, gyg, g->OHW, xg, g->OHW, first ? 0 : 1, ag, g->K);
    } else if (ag) {
      const R *xg = x + (n * g->C + grp * g->Cg) * g->HW;
      for (int64_t oh0 = 0; oh0 < g->Ho; oh0 += g->rows) {
        int64_t oh1 = oh0 + g->rows < g->Ho ? oh0 + g->rows : g->Ho, nc = (oh1 - oh0) * g->Wo;
        SUF(im2col)(g, xg, col, oh0, oh1);
        SUF(gemm)(false, true, g->Og, g->K, nc, 1, gyg + oh0 * g->Wo, g->OHW, col, nc, (first && oh0 == 0) ? 0 : 1,
                  ag, g->K);
      }
    }
    if (bacc)
      for (int64_t o = 0; o < g->Og; o++) {
        const R *r = gyg + o * g->OHW;
        R sum = 0;
        for (int64_t k = 0; k < g->OHW; k++) sum += r[k];
        bacc[grp * g->Og + o] += (double)sum;
      }
  }
}

static int SUF(conv_forward)(const conv_geom *g, const R *x, const R *w, const R *b, R *y) {
  size_t colb = g->direct ? 0 : sizeof(R) * (size_t)(g->K * g->rows * g->Wo);
  int failed = 0;
  if (cpu_nn_split(g->N)) {
#pragma omp parallel
    {
      R *col = colb ? cpu_scratch(0, colb) : NULL;
#pragma omp for schedule(static)
      for (int64_t n = 0; n < g->N; n++) {
        if (colb && !col) {
#pragma omp atomic write
          failed = 1;
        } else
          SUF(fwd_image)(g, x, w, b, y, n, col);
      }
    }
  } else {
    R *col = colb ? cpu_scratch(0, colb) : NULL;
    if (colb && !col) failed = 1;
    for (int64_t n = 0; !failed && n < g->N; n++) SUF(fwd_image)(g, x, w, b, y, n, col);
  }
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "conv2d: out of memory for a %lld x %lld column buffer", (long long)g->K,
                            (long long)(g->rows * g->Wo))
                : DDPM_OK;
}

static int SUF(conv_backward_input)(const conv_geom *g, const R *gy, const R *w, R *gx) {
  size_t colb = g->direct ? 0 : sizeof(R) * (size_t)(g->K * g->rows * g->Wo);
  int failed = 0;
  if (cpu_nn_split(g->N)) {
#pragma omp parallel
    {
      R *col = colb ? cpu_scratch(0, colb) : NULL;
#pragma omp for schedule(static)
      for (int64_t n = 0; n < g->N; n++) {
        if (colb && !col) {
#pragma omp atomic write
          failed = 1;
        } else
          SUF(bwd_input_image)(g, gy, w, gx, n, col);
      }
    }
  } else {
    R *col = colb ? cpu_scratch(0, colb) : NULL;
    if (colb && !col) failed = 1;
    for (int64_t n = 0; !failed && n < g->N; n++) SUF(bwd_input_image)(g, gy, w, gx, n, col);
  }
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "conv2d backward: out of memory for a column buffer") : DDPM_OK;
}

/* Each thread accumulates a fixed range of images into its own partial (thread 0 straight into
 * gw), then the partials are summed in thread order: deterministic for a given thread count. */
static int SUF(conv_backward_weight)(const conv_geom *g, const R *gy, const R *x, R *gw, R *gb) {
  size_t colb = g->direct ? 0 : sizeof(R) * (size_t)(g->K * g->rows * g->Wo);
  int64_t wn = g->O * g->K;
  int failed = 0;
  int nt = cpu_nn_split(g->N) ? omp_get_max_threads() : 1;
  if (nt > g->N) nt = (int)g->N;
  R *part[64] = {0};
  double *bpart[64] = {0};
  if (nt > 64) nt = 64;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    int64_t lo = g->N * t / T, hi = g->N * (t + 1) / T;
    R *col = colb ? cpu_scratch(0, colb) : NULL;
    R *acc = (t == 0 || !gw) ? gw : cpu_scratch(1, sizeof(R) * (size_t)wn);
    double *bacc = gb ? cpu_scratch(2, sizeof(double) * (size_t)g->O) : NULL;
    if ((colb && !col && gw) || (gw && !acc) || (gb && !bacc)) {
#pragma omp atomic write
      failed = 1;
    } else {
      part[t] = acc;
      bpart[t] = bacc;
      if (bacc) memset(bacc, 0, sizeof(double) * (size_t)g->O);
      if (acc && hi == lo) memset(acc, 0, sizeof(R) * (size_t)wn);
      for (int64_t n = lo; n < hi; n++) SUF(bwd_weight_image)(g, gy, gw ? x : NULL, acc, bacc, n, col, n == lo);
    }
#pragma omp barrier
    int ok;
#pragma omp atomic read
    ok = failed;
    ok = !ok;
    if (ok) {
      /* reduce the partials, each thread a slice of the weight gradient */
      int64_t a = wn * t / T, b = wn * (t + 1) / T;
      if (gw)
        for (int k = 1; k < T; k++)
          for (int64_t e = a; e < b; e++) gw[e] += part[k][e];
      if (gb && t == 0)
        for (int64_t o = 0; o < g->O; o++) {
          double s = 0;
          for (int k = 0; k < T; k++) s += bpart[k][o];
          gb[o] = (R)s;
        }
    }
  }
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "conv2d backward: out of memory for weight-gradient buffers") : DDPM_OK;
}
