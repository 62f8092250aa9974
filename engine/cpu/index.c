/* index.c: CPU gather/scatter-add of whole slices along one dim, with bounds checks (an index
 * out of range is an error, never a wild read). */
#include "cpu.h"

static int64_t idx_at(const ddpm_tensor *index, int64_t k) {
  const char *p = ddpm_ptr(index);
  return index->dtype == DDPM_INT64 ? ((const int64_t *)p)[k] : ((const int32_t *)p)[k];
}

static int check_bounds(const char *op, const ddpm_tensor *index, int64_t n) {
  int64_t m = ddpm_tensor_numel(index);
  for (int64_t k = 0; k < m; k++) {
    int64_t v = idx_at(index, k);
    if (v < -n || v >= n)
      return DDPM_FAIL(DDPM_ERR_INDEX, "%s: index %lld is out of range for a dim of size %lld", op, (long long)v,
                       (long long)n);
  }
  return DDPM_OK;
}

int cpu_INDEX_SELECT(ddpm_call *c) {
  ddpm_tensor *x = c->in[0], *index = c->in[1], *o = c->out[0];
  int d = (int)c->i[0];
  DDPM_TRY(check_bounds("index_select", index, x->shape[d]));
  ddpm_tensor *xc = NULL;
  DDPM_TRY(ddpm_contiguous(&xc, x));
  int64_t outer = 1, inner = 1, n = x->shape[d], m = ddpm_tensor_numel(index);
  for (int i = 0; i < d; i++) outer *= x->shape[i];
  for (int i = d + 1; i < x->ndim; i++) inner *= x->shape[i];
  size_t es = (size_t)ddpm_dsize(x->dtype), row = (size_t)inner * es;
  const char *src = ddpm_ptr(xc);
  char *dst = ddpm_ptr(o);
  for (int64_t a = 0; a < outer; a++)
    for (int64_t k = 0; k < m; k++) {
      int64_t v = idx_at(index, k);
      if (v < 0) v += n;
      memcpy(dst + ((size_t)(a * m + k)) * row, src + ((size_t)(a * n + v)) * row, row);
    }
  ddpm_tensor_release(xc);
  return DDPM_OK;
}

int cpu_INDEX_ADD(ddpm_call *c) {
  ddpm_tensor *index = c->in[0], *src = c->in[1], *x = c->out[0];
  int d = (int)c->i[0];
  DDPM_TRY(check_bounds("index_add_", index, x->shape[d]));
  /* element-wise through the generic loaders keeps this correct for every dtype and layout;
   * it is only used for gradients of gathers, which are small */
  int64_t m = ddpm_tensor_numel(index), n = x->shape[d];
  int64_t total = ddpm_tensor_numel(src);
  int nd = src->ndim;
  int64_t idx[DDPM_MAX_DIMS] = {0};
  int es = ddpm_dsize(x->dtype);
  for (int64_t e = 0; e < total; e++) {
    int64_t so = src->offset, xo = x->offset;
    for (int i = 0; i < nd; i++) {
      so += idx[i] * src->strides[i];
      int64_t xi = idx[i];
      if (i == d) {
        xi = idx_at(index, idx[i]);
        if (xi < 0) xi += n;
      }
      xo += xi * x->strides[i];
    }
    char *xp = (char *)x->storage->data + xo * es;
    const char *sp = (const char *)src->storage->data + so * es;
    if (x->dtype == DDPM_FLOAT32) *(float *)xp += *(const float *)sp;
    else if (x->dtype == DDPM_FLOAT64) *(double *)xp += *(const double *)sp;
    else ddpm_store_from_double(xp, x->dtype, ddpm_load_as_double(xp, x->dtype) + ddpm_load_as_double(sp, x->dtype));
    for (int i = nd - 1; i >= 0; i--) {
      if (++idx[i] < src->shape[i]) break;
      idx[i] = 0;
    }
  }
  (void)m;
  return DDPM_OK;
}
