/* conv2d_cols.h: im2col and its adjoint col2im for one element type, included with R (the element
 *   type) and SUF(name) defined, by conv2d_impl.h and conv2d_bf16.c.  Not a header to use elsewhere. */

/* col [Cg*kh*kw, (oh1-oh0)*Wo] <- the patches of output rows [oh0, oh1) of one image's group
 * xg [Cg, H, W] (zeros where padded).  With unit strides and Wo == W ("same" width) a tap's rows
 * sit in lockstep with the input rows, so each tap is one contiguous copy plus a few zeroed edge
 * columns: the hot 3x3 convolutions copy 1 KB blocks instead of 64-byte rows. */
__attribute__((unused)) static void SUF(im2col)(const conv_geom *g, const R *restrict xg, R *restrict col, int64_t oh0, int64_t oh1) {
  const int64_t Wo = g->Wo, W = g->W, ncol = (oh1 - oh0) * Wo;
  for (int64_t c = 0; c < g->Cg; c++)
    for (int64_t ki = 0; ki < g->kh; ki++) {
      int64_t r0, r1; /* output rows of the block whose input row is inside the image */
      row_range(g, ki, &r0, &r1);
      r0 = r0 < oh0 ? oh0 : r0 > oh1 ? oh1 : r0;
      r1 = r1 > oh1 ? oh1 : r1 < r0 ? r0 : r1;
      for (int64_t kj = 0; kj < g->kw; kj++) {
        R *row = col + ((c * g->kh + ki) * g->kw + kj) * ncol - oh0 * Wo; /* indexed by absolute oh */
        int64_t xoff = kj * g->dw - g->pw, lo, hi;
        col_range(g, xoff, &lo, &hi);
        memset(row + oh0 * Wo, 0, sizeof(R) * (size_t)((r0 - oh0) * Wo));
        memset(row + r1 * Wo, 0, sizeof(R) * (size_t)((oh1 - r1) * Wo));
        if (r1 <= r0) continue;
        const R *src0 = xg + (c * g->H + r0 * g->sh - g->ph + ki * g->dh) * W + xoff;
        if (g->sw == 1 && g->sh == 1 && Wo == W && hi > lo) {
          memcpy(row + r0 * Wo + lo, src0 + lo, sizeof(R) * (size_t)((r1 - r0 - 1) * Wo + hi - lo));
          for (int64_t oh = r0; oh < r1; oh++) {
            R *d = row + oh * Wo;
            for (int64_t ow = 0; ow < lo; ow++) d[ow] = 0;
            for (int64_t ow = hi; ow < Wo; ow++) d[ow] = 0;
          }
          continue;
        }
        for (int64_t oh = r0; oh < r1; oh++) {
          R *d = row + oh * Wo;
          const R *sr = src0 + (oh - r0) * g->sh * W;
          for (int64_t ow = 0; ow < lo; ow++) d[ow] = 0;
          if (g->sw == 1)
            for (int64_t ow = lo; ow < hi; ow++) d[ow] = sr[ow];
          else
            for (int64_t ow = lo; ow < hi; ow++) d[ow] = sr[ow * g->sw];
          for (int64_t ow = hi; ow < Wo; ow++) d[ow] = 0;
        }
      }
    }
}

/* gxg [Cg, H, W] += the patches in col for output rows [oh0, oh1) (the adjoint of im2col) */
__attribute__((unused)) static void SUF(col2im)(const conv_geom *g, const R *restrict col, R *restrict gxg, int64_t oh0, int64_t oh1) {
  const int64_t Wo = g->Wo, W = g->W, ncol = (oh1 - oh0) * Wo;
  for (int64_t c = 0; c < g->Cg; c++)
    for (int64_t ki = 0; ki < g->kh; ki++) {
      int64_t r0, r1;
      row_range(g, ki, &r0, &r1);
      r0 = r0 < oh0 ? oh0 : r0;
      r1 = r1 > oh1 ? oh1 : r1;
      if (r1 <= r0) continue;
      for (int64_t kj = 0; kj < g->kw; kj++) {
        const R *row = col + ((c * g->kh + ki) * g->kw + kj) * ncol - oh0 * Wo;
        int64_t xoff = kj * g->dw - g->pw, lo, hi;
        col_range(g, xoff, &lo, &hi);
        R *dst0 = gxg + (c * g->H + r0 * g->sh - g->ph + ki * g->dh) * W + xoff;
        for (int64_t oh = r0; oh < r1; oh++) {
          const R *sr = row + oh * Wo;
          R *d = dst0 + (oh - r0) * g->sh * W;
          if (g->sw == 1)
            for (int64_t ow = lo; ow < hi; ow++) d[ow] += sr[ow];
          else
            for (int64_t ow = lo; ow < hi; ow++) d[ow * g->sw] += sr[ow];
        }
      }
    }
}

