/* resample.c: CPU interpolate and pad, forward and backward.  Both are index maps computed once
 * per dim: interpolate gives each output index up to two source indices with weights (nearest:
 * one, weight 1), pad gives each output index one source index or -1 (the constant).  Backward
 * scatters the same map; planes are independent, so threads never collide. */
#include "nn_cpu.h"
#include <math.h>

/* ---- interpolate ------------------------------------------------------------------------------------ */
typedef struct {
  int64_t *i0, *i1;
  float *w0, *w1; /* PyTorch keeps the linear weights in float for float inputs */
  double *dw0, *dw1;
} dim_map;

/* PyTorch's area_pixel_compute_scale / nearest_idx / area_pixel_compute_source_index */
static void build_map(dim_map *m, int64_t in, int64_t out, double scale_factor, int mode, bool align) {
  for (int64_t o = 0; o < out; o++) {
    int64_t a, b;
    double l1;
    if (mode != DDPM_INTERP_LINEAR) {
      float sc = scale_factor > 0 ? (float)(1.0 / scale_factor) : (float)in / (float)out;
      if (out == in) a = o;
      else if (mode == DDPM_INTERP_NEAREST && out == 2 * in) a = o >> 1;
      else {
        float src = mode == DDPM_INTERP_NEAREST ? (float)o * sc : ((float)o + 0.5f) * sc;
        a = (int64_t)floorf(src);
        if (a > in - 1) a = in - 1;
      }
      b = a;
      l1 = 0;
    } else {
      double sc;
      if (align) sc = out > 1 ? (double)(in - 1) / (double)(out - 1) : 0.0;
      else sc = scale_factor > 0 ? 1.0 / scale_factor : (double)in / (double)out;
      float scf = (float)sc;
      float src = align ? scf * (float)o : scf * ((float)o + 0.5f) - 0.5f;
      if (!align && src < 0) src = 0;
      a = (int64_t)src;
      if (a > in - 1) a = in - 1;
      b = a + (a < in - 1 ? 1 : 0);
      l1 = (double)(src - (float)a);
      if (l1 < 0) l1 = 0;
    }
    m->i0[o] = a;
    m->i1[o] = b;
    m->w1[o] = (float)l1;
    m->w0[o] = 1.0f - (float)l1;
    m->dw1[o] = (double)m->w1[o];
    m->dw0[o] = (double)m->w0[o];
  }
}

typedef struct {
  const char *x;
  char *y;
  int64_t in[3], out[3]; /* spatial sizes padded to 3 dims with leading 1s */
  dim_map map[3];
  bool linear, f32, bwd;
} interp_ctx;

#define INTERP_BODY(R, W0, W1)                                                                       \
  do {                                                                                               \
    const dim_map *md = &c->map[0], *mh = &c->map[1], *mw = &c->map[2];                              \
    int64_t isz = c->in[0] * c->in[1] * c->in[2], osz = c->out[0] * c->out[1] * c->out[2];          \
    for (int64_t p = lo; p < hi; p++) {                                                              \
      const R *src = (const R *)c->x + p * (c->bwd ? osz : isz);                                     \
      R *dst = (R *)c->y + p * (c->bwd ? isz : osz);                                                 \
      if (c->bwd) memset(dst, 0, sizeof(R) * (size_t)isz);                                           \
      for (int64_t od = 0; od < c->out[0]; od++)                                                     \
        for (int64_t oh = 0; oh < c->out[1]; oh++) {                                                 \
          int64_t o_row = (od * c->out[1] + oh) * c->out[2];                                         \
          if (!c->linear) {                                                                          \
            int64_t i_row = (md->i0[od] * c->in[1] + mh->i0[oh]) * c->in[2];                         \
            if (c->bwd)                                                                              \
              for (int64_t ow = 0; ow < c->out[2]; ow++) dst[i_row + mw->i0[ow]] += src[o_row + ow]; \
            else                                                                                     \
              for (int64_t ow = 0; ow < c->out[2]; ow++) dst[o_row + ow] = src[i_row + mw->i0[ow]]; \
            continue;                                                                                \
          }                                                                                          \
          int64_t di[2] = {md->i0[od], md->i1[od]}, hi_[2] = {mh->i0[oh], mh->i1[oh]};              \
          R dwt[2] = {(R)md->W0[od], (R)md->W1[od]}, hwt[2] = {(R)mh->W0[oh], (R)mh->W1[oh]};     \
          for (int64_t ow = 0; ow < c->out[2]; ow++) {                                               \
            int64_t wi[2] = {mw->i0[ow], mw->i1[ow]};                                                \
            R wwt[2] = {(R)mw->W0[ow], (R)mw->W1[ow]};                                               \
            if (c->bwd) {                                                                            \
              R g = src[o_row + ow];                                                                 \
              for (int a = 0; a < 2; a++)                                                            \
                for (int b = 0; b < 2; b++)                                                          \
                  for (int e = 0; e < 2; e++)                                                        \
                    dst[(di[a] * c->in[1] + hi_[b]) * c->in[2] + wi[e]] += dwt[a] * hwt[b] * wwt[e] * g; \
            } else {                                                                                 \
              R acc_d = 0;                                                                           \
              for (int a = 0; a < 2; a++) {                                                          \
                R acc_h = 0;                                                                         \
                for (int b = 0; b < 2; b++) {                                                        \
                  const R *r = src + (di[a] * c->in[1] + hi_[b]) * c->in[2];                         \
                  acc_h += hwt[b] * (wwt[0] * r[wi[0]] + wwt[1] * r[wi[1]]);                         \
                }                                                                                    \
                acc_d += dwt[a] * acc_h;                                                             \
              }                                                                                      \
              dst[o_row + ow] = acc_d;                                                               \
            }                                                                                        \
          }                                                                                          \
        }                                                                                            \
    }                                                                                                \
  } while (0)

static void interp_range(int64_t lo, int64_t hi, void *vctx) {
  interp_ctx *c = vctx;
  if (c->f32) INTERP_BODY(float, w0, w1);
  else INTERP_BODY(double, dw0, dw1);
}

static int interp_run(ddpm_call *c, bool bwd);

/* bfloat16 (a UNet's upsampler under autocast('cpu')) through float32 copies: the op is cheap next
 * to the convolutions around it, and nearest copies values exactly */
static int interp_bf16(ddpm_call *c, bool bwd) {
  ddpm_tensor *fi = NULL, *fo = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(ddpm_tensor_new(&fi, c->in[0]->ndim, c->in[0]->shape, DDPM_FLOAT32, DDPM_CPU));
  DDPM_CHECK(ddpm_tensor_new(&fo, c->out[0]->ndim, c->out[0]->shape, DDPM_FLOAT32, DDPM_CPU));
  cpu_copy_strided(fi, c->in[0]);
  {
    ddpm_call c2 = *c;
    c2.in[0] = fi;
    c2.out[0] = fo;
    DDPM_CHECK(interp_run(&c2, bwd));
  }
  cpu_copy_strided(c->out[0], fo);
done:
  ddpm_tensor_release(fi);
  ddpm_tensor_release(fo);
  return st;
}

static int interp_run(ddpm_call *c, bool bwd) {
  ddpm_tensor *big = bwd ? c->out[0] : c->in[0], *small = bwd ? c->in[0] : c->out[0]; /* big = input side */
  if (big->dtype == DDPM_BFLOAT16 && c->in[0]->dtype == DDPM_BFLOAT16) return interp_bf16(c, bwd);
  DDPM_TRY(cpu_nn_dtype("interpolate", big->dtype));
  int ns = big->ndim - 2;
  interp_ctx k = {ddpm_ptr(c->in[0]), ddpm_ptr(c->out[0]), {1, 1, 1}, {1, 1, 1}, {{0}}, c->i[0] == DDPM_INTERP_LINEAR,
                  big->dtype == DDPM_FLOAT32, bwd};
  int64_t total = 0;
  for (int d = 0; d < ns; d++) {
    k.in[3 - ns + d] = big->shape[2 + d];
    k.out[3 - ns + d] = small->shape[2 + d];
  }
  for (int d = 0; d < 3; d++) total += k.out[d];
  /* one block for all the maps: 2 index and 4 weight arrays per output position */
  char *mem = malloc((size_t)(total ? total : 1) * (2 * sizeof(int64_t) + 2 * sizeof(float) + 2 * sizeof(double)));
  if (!mem) return DDPM_FAIL(DDPM_ERR_OOM, "interpolate: out of memory for index maps");
  int64_t *ip = (int64_t *)mem;
  double *dp = (double *)(ip + 2 * total);
  float *fp = (float *)(dp + 2 * total);
  for (int d = 0; d < 3; d++) {
    int64_t n = k.out[d];
    dim_map *m = &k.map[d];
    m->i0 = ip; m->i1 = ip + n; ip += 2 * n;
    m->dw0 = dp; m->dw1 = dp + n; dp += 2 * n;
    m->w0 = fp; m->w1 = fp + n; fp += 2 * n;
    int sd = d - (3 - ns);
    build_map(m, k.in[d], n, sd >= 0 ? c->f[sd] : 0, (int)c->i[0], c->i[1] != 0);
  }
  int64_t planes = big->shape[0] * big->shape[1];
  int64_t per = k.out[0] * k.out[1] * k.out[2];
  cpu_parallel_for(planes, per > 0 ? 16384 / per + 1 : 1, interp_range, &k);
  free(mem);
  return DDPM_OK;
}
int cpu_INTERPOLATE(ddpm_call *c) { return interp_run(c, false); }
int cpu_INTERPOLATE_BWD(ddpm_call *c) { return interp_run(c, true); }

/* ---- pad ------------------------------------------------------------------------------------------------------ */
typedef struct {
  const char *x;
  char *y;
  int es, k, nd;
  int64_t in[DDPM_MAX_DIMS], out[DDPM_MAX_DIMS]; /* the k padded (trailing) dims */
  int64_t *map[DDPM_MAX_DIMS];                   /* per padded dim: source index or -1 */
  char fill[8];
  int64_t isz, osz; /* elements per outer slice */
  bool bwd, f32;
} pad_ctx;

static int64_t pad_src(int64_t o, int64_t before, int64_t n, int mode) {
  int64_t s = o - before;
  switch (mode) {
  case DDPM_PAD_REFLECT:
    if (s < 0) s = -s;
    if (s >= n) s = 2 * (n - 1) - s;
    return s;
  case DDPM_PAD_REPLICATE: return s < 0 ? 0 : s >= n ? n - 1 : s;
  case DDPM_PAD_CIRCULAR: return ((s % n) + n) % n;
  default: return s >= 0 && s < n ? s : -1;
  }
}

static void pad_range(int64_t lo, int64_t hi, void *vctx) {
  pad_ctx *c = vctx;
  int k = c->k, es = c->es;
  int64_t last = c->out[k - 1], *lmap = c->map[k - 1];
  for (int64_t s = lo; s < hi; s++) {
    const char *x = c->x + s * (c->bwd ? c->osz : c->isz) * es;
    char *y = c->y + s * (c->bwd ? c->isz : c->osz) * es;
    if (c->bwd) memset(y, 0, (size_t)(c->isz * es));
    int64_t idx[DDPM_MAX_DIMS] = {0};
    int64_t rows = c->osz / (last ? last : 1);
    for (int64_t r = 0; r < rows && last > 0; r++) {
      /* source row offset, or -1 when the row lies in constant padding */
      int64_t src = 0;
      for (int d = 0; d < k - 1; d++) {
        int64_t m = c->map[d][idx[d]];
        if (m < 0) {
          src = -1;
          break;
        }
        src = src * c->in[d] + m;
      }
      int64_t orow = r * last;
      if (c->bwd) {
        if (src >= 0) {
          int64_t ib = src * c->in[k - 1];
          if (c->f32) {
            const float *g = (const float *)x + orow;
            float *gx = (float *)y + ib;
            for (int64_t o = 0; o < last; o++)
              if (lmap[o] >= 0) gx[lmap[o]] += g[o];
          } else {
            const double *g = (const double *)x + orow;
            double *gx = (double *)y + ib;
            for (int64_t o = 0; o < last; o++)
              if (lmap[o] >= 0) gx[lmap[o]] += g[o];
          }
        }
      } else {
        char *dst = y + orow * es;
        const char *srow = src >= 0 ? x + src * c->in[k - 1] * es : NULL;
        for (int64_t o = 0; o < last; o++) {
          int64_t m = srow ? lmap[o] : -1;
          memcpy(dst + o * es, m >= 0 ? srow + m * es : c->fill, (size_t)es);
        }
      }
      for (int d = k - 2; d >= 0; d--) {
        if (++idx[d] < c->out[d]) break;
        idx[d] = 0;
      }
    }
  }
}

static int pad_run(ddpm_call *c, bool bwd) {
  ddpm_tensor *x = bwd ? c->out[0] : c->in[0], *y = bwd ? c->in[0] : c->out[0]; /* x: unpadded side */
  if (bwd) DDPM_TRY(cpu_nn_dtype("pad backward", x->dtype));
  int k = (int)c->i[1], nd = x->ndim, mode = (int)c->i[0];
  if (k == 0) { /* nothing padded: a copy */
    ddpm_call cp = {.op = DDPM_OP_COPY, .nin = 1, .nout = 1, .in = {c->in[0]}, .out = {c->out[0]}};
    return cpu_COPY(&cp);
  }
  pad_ctx p = {ddpm_ptr(c->in[0]), ddpm_ptr(c->out[0]), ddpm_dsize(x->dtype), k, nd, {0}, {0}, {0}, {0}, 1, 1,
               bwd, x->dtype == DDPM_FLOAT32};
  ddpm_store_from_double(p.fill, x->dtype, c->f[0]);
  int64_t total = 0;
  for (int j = 0; j < k; j++) {
    p.in[j] = x->shape[nd - k + j];
    p.out[j] = y->shape[nd - k + j];
    p.isz *= p.in[j];
    p.osz *= p.out[j];
    total += p.out[j];
  }
  int64_t *mem = malloc(sizeof(int64_t) * (size_t)(total ? total : 1));
  if (!mem) return DDPM_FAIL(DDPM_ERR_OOM, "pad: out of memory for index maps");
  int64_t *q = mem;
  for (int j = 0; j < k; j++) {
    int pj = k - 1 - j; /* pad pairs run from the last dim backwards */
    p.map[j] = q;
    for (int64_t o = 0; o < p.out[j]; o++) q[o] = pad_src(o, c->i[2 + 2 * pj], p.in[j], mode);
    q += p.out[j];
  }
  int64_t outer = ddpm_shape_numel(nd - k, x->shape);
  if (p.osz > 0 && outer > 0) cpu_parallel_for(outer, 16384 / p.osz + 1, pad_range, &p);
  else if (bwd && ddpm_tensor_numel(x)) memset(ddpm_ptr(x), 0, (size_t)(ddpm_tensor_numel(x) * p.es));
  free(mem);
  return DDPM_OK;
}
int cpu_PAD(ddpm_call *c) { return pad_run(c, false); }
int cpu_PAD_BWD(ddpm_call *c) { return pad_run(c, true); }
