/* attention.c: CPU scaled dot-product attention, forward and backward, one (batch, head) pair at a
 * time across the threads: S = scale q k^T + mask, P = softmax(S) (saved), o = dropout(P) v, all
 * through single-threaded GEMMs on per-thread scratch.  The forward does not keep P for the backward
 * (the op passes no P on the CPU): the backward recomputes it per (batch, head), which costs one
 * more score GEMM and saves a [B, heads, Lq, Lk] tensor per attention layer until its backward.  q, k, v are read in place through their
 * strides (heads split off a [B, L, H*D] projection need no copy).  A single key (the UNet's
 * cross-attention on one label token) skips the GEMMs: P is 1 and o is v broadcast. */
#include "nn_cpu.h"
#include "bf16_convert.h"
#include "random_map.h"
#include <math.h>

typedef struct {
  int64_t s0, s1, ld; /* batch strides (dims 0, 1) and row stride, in elements */
  int64_t offset;
} att_operand;

typedef struct {
  int64_t B, B1, Lq, Lk, E, Ev;
  att_operand q, k, v;
  double scale, p;
  uint64_t seed, base;
  bool causal;
} att_geom;

static void operand_of(att_operand *o, const ddpm_tensor *t, int64_t cols) {
  o->s0 = t->strides[0];
  o->s1 = t->strides[1];
  o->ld = t->shape[2] <= 1 ? (cols > 0 ? cols : 1) : t->strides[2];
  o->offset = t->offset;
}
static inline int64_t att_off(const att_operand *o, int64_t b, int64_t B1) {
  return (b / B1) * o->s0 + (b % B1) * o->s1;
}
/* element e of the [B, Lq, Lk] score tensor survives dropout iff its uniform draw is >= p */
static inline bool att_keep(const att_geom *g, uint64_t e) {
  uint32_t r[4];
  ddpm_philox(g->seed, g->base + e, r);
  return ddpm_rand_u53(r) >= g->p;
}

#define R float
#define SUF(n) n##_f32
#define ISFIN(x) isfinite(x)
#include "attention_impl.h"
#undef R
#undef SUF
#undef ISFIN
#define R double
#define SUF(n) n##_f64
#define ISFIN(x) isfinite(x)
#include "attention_impl.h"
#undef R
#undef SUF
#undef ISFIN

static void geom_of(att_geom *g, ddpm_call *c, const ddpm_tensor *q, const ddpm_tensor *k, const ddpm_tensor *v) {
  g->B1 = q->shape[1];
  g->B = q->shape[0] * q->shape[1];
  g->Lq = q->shape[2];
  g->E = q->shape[3];
  g->Lk = k->shape[2];
  g->Ev = v->shape[3];
  operand_of(&g->q, q, g->E);
  operand_of(&g->k, k, g->E);
  operand_of(&g->v, v, g->Ev);
  g->causal = c->i[0] != 0;
  g->seed = (uint64_t)c->i[1];
  g->base = (uint64_t)c->i[2];
  g->scale = c->f[0];
  g->p = c->f[1];
}

/* base pointers exclude the offset so att_off can add batch offsets to the storage start */
#define BASE(t, T) ((t) ? (T *)(t)->storage->data + (t)->offset : NULL)

/* bfloat16 q, k, v (and go; outputs bf16 too, a float mask float32): each (batch, head) pair's
 * matrices are widened into float32 staging, the float32 code runs on them, and the outputs are
 * rounded back, so the attention computes exactly as on float32 copies of the operands */
typedef struct {
  att_ctx_f32 c; /* geometry, mask, failure flag (its tensor pointers stay NULL) */
  const uint16_t *q, *k, *v, *go;
  uint16_t *o, *gq, *gk, *gv;
} att_bf16_ctx;

static void rows_f32(const uint16_t *src, int64_t ld, int64_t rows, int64_t cols, float *dst) {
  for (int64_t r = 0; r < rows; r++) cpu_bf16_to_f32(src + r * ld, dst + r * cols, cols);
}

static void att_range_bf16(int64_t lo, int64_t hi, void *vctx) {
  att_bf16_ctx *x = vctx;
  const att_geom *g = &x->c.g;
  int64_t Lq = g->Lq, Lk = g->Lk, E = g->E, Ev = g->Ev;
  bool bwd = x->go != NULL;
  size_t nf = (size_t)(Lq * E + Lk * E + Lk * Ev + Lq * Ev + (bwd ? Lq * E + Lk * E + Lk * Ev : 0));
  float *buf = cpu_scratch(3, sizeof(float) * (nf ? nf : 1));
  if (!buf) {
#pragma omp atomic write
    x->c.failed = 1;
    return;
  }
  float *q = buf, *k = q + Lq * E, *v = k + Lk * E, *og = v + Lk * Ev; /* og: o, or go */
  float *gq = og + Lq * Ev, *gk = gq + Lq * E, *gv = gk + Lk * E;
  for (int64_t b = lo; b < hi; b++) {
    rows_f32(x->q + att_off(&g->q, b, g->B1), g->q.ld, Lq, E, q);
    rows_f32(x->k + att_off(&g->k, b, g->B1), g->k.ld, Lk, E, k);
    rows_f32(x->v + att_off(&g->v, b, g->B1), g->v.ld, Lk, Ev, v);
    att_mats_f32 m = {q, k, v, NULL, E, E, Ev, NULL, NULL, NULL, NULL};
    if (bwd) {
      cpu_bf16_to_f32(x->go + b * Lq * Ev, og, Lq * Ev);
      m.go = og, m.gq = gq, m.gk = gk, m.gv = gv;
      att_bwd_one_f32(&x->c, b, &m);
      cpu_f32_to_bf16(gq, x->gq + b * Lq * E, Lq * E);
      cpu_f32_to_bf16(gk, x->gk + b * Lk * E, Lk * E);
      cpu_f32_to_bf16(gv, x->gv + b * Lk * Ev, Lk * Ev);
    } else {
      m.o = og;
      att_fwd_one_f32(&x->c, b, &m);
      cpu_f32_to_bf16(og, x->o + b * Lq * Ev, Lq * Ev);
    }
  }
}

static int run_bf16(ddpm_call *c, bool bwd, att_geom *g) {
  ddpm_tensor *q = c->in[bwd], *k = c->in[bwd + 1], *v = c->in[bwd + 2];
  att_bf16_ctx x = {{NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, *g, 0},
                    BASE(q, const uint16_t), BASE(k, const uint16_t), BASE(v, const uint16_t), NULL, NULL, NULL, NULL,
                    NULL};
  if (bwd) {
    x.go = BASE(c->in[0], const uint16_t);
    x.gq = BASE(c->out[0], uint16_t);
    x.gk = BASE(c->out[1], uint16_t);
    x.gv = BASE(c->out[2], uint16_t);
  } else {
    x.o = BASE(c->out[0], uint16_t);
  }
  x.c.mask = bwd ? (c->nin > 5 ? c->in[5] : NULL) : c->in[3];
  if (x.c.mask && x.c.mask->dtype != DDPM_BOOL && x.c.mask->dtype != DDPM_FLOAT32)
    return DDPM_FAIL(DDPM_ERR_DTYPE, "scaled_dot_product_attention: a bfloat16 attention takes a bool or float32 "
                     "mask, got %s", ddpm_fmt_tensor(x.c.mask));
  if ((bwd ? NULL : c->out[1]) || (bwd && c->in[4]))
    return DDPM_FAIL(DDPM_ERR_INTERNAL, "scaled_dot_product_attention: the CPU keeps no probabilities");
  if (cpu_nn_split(g->B)) cpu_parallel_for(g->B, 1, att_range_bf16, &x);
  else att_range_bf16(0, g->B, &x);
  return x.c.failed ? DDPM_FAIL(DDPM_ERR_OOM, "scaled_dot_product_attention: out of memory for staging buffers")
                    : DDPM_OK;
}

static int run(ddpm_call *c, bool bwd) {
  ddpm_tensor *q = c->in[bwd], *k = c->in[bwd + 1], *v = c->in[bwd + 2];
  if (q->dtype == DDPM_BFLOAT16) {
    att_geom g;
    geom_of(&g, c, q, k, v);
    return run_bf16(c, bwd, &g);
  }
  DDPM_TRY(cpu_nn_dtype("scaled_dot_product_attention", q->dtype));
  att_geom g;
  geom_of(&g, c, q, k, v);
  int64_t grain = 1;
  int failed = 0;
  if (q->dtype == DDPM_FLOAT32) {
    att_ctx_f32 x = {BASE(q, const float), BASE(k, const float), BASE(v, const float), NULL, NULL, NULL, NULL,
                     NULL, NULL, NULL, NULL, g, 0};
    if (bwd) {
      x.go = BASE(c->in[0], const float);
      x.P = BASE(c->in[4], const float);
      x.gq = BASE(c->out[0], float);
      x.gk = BASE(c->out[1], float);
      x.gv = BASE(c->out[2], float);
    } else {
      x.o = BASE(c->out[0], float);
      x.Pout = BASE(c->out[1], float);
    }
    x.mask = bwd ? (c->nin > 5 ? c->in[5] : NULL) : c->in[3];
    if (cpu_nn_split(g.B)) cpu_parallel_for(g.B, grain, att_range_f32, &x);
    else att_range_f32(0, g.B, &x);
    failed = x.failed;
  } else {
    att_ctx_f64 x = {BASE(q, const double), BASE(k, const double), BASE(v, const double), NULL, NULL, NULL, NULL,
                     NULL, NULL, NULL, NULL, g, 0};
    if (bwd) {
      x.go = BASE(c->in[0], const double);
      x.P = BASE(c->in[4], const double);
      x.gq = BASE(c->out[0], double);
      x.gk = BASE(c->out[1], double);
      x.gv = BASE(c->out[2], double);
    } else {
      x.o = BASE(c->out[0], double);
      x.Pout = BASE(c->out[1], double);
    }
    x.mask = bwd ? (c->nin > 5 ? c->in[5] : NULL) : c->in[3];
    if (cpu_nn_split(g.B)) cpu_parallel_for(g.B, grain, att_range_f64, &x);
    else att_range_f64(0, g.B, &x);
    failed = x.failed;
  }
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "scaled_dot_product_attention: out of memory for score buffers") : DDPM_OK;
}

int cpu_SDPA(ddpm_call *c) { return run(c, false); }
int cpu_SDPA_BWD(ddpm_call *c) { return run(c, true); }
