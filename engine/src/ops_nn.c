/* ops_nn.c: dropout, the pointwise losses (mse, l1, smooth_l1), nll_loss and one_hot, as
 * torch.nn.functional; cross_entropy and embedding are composed in Lua on top of these.
 *
 * Kernel conventions (every backend implements exactly these; all tensors contiguous):
 *   DROPOUT        in[0] x; out[0] y, out[1] mask (bool, x's shape); i[0] seed, i[1] counter base; f[0] p.
 *                  Element e is kept iff the 53-bit uniform of Philox counter base + e is >= p; kept
 *                  values are x * (1/(1-p)) (the factor rounded to x's dtype first, as PyTorch)
 *   DROPOUT_BWD    in[0] gy, in[1] mask; out[0] gx; f[0] p
 *   MSE_LOSS, L1_LOSS, SMOOTH_L1_LOSS
 *                  in[0] input, in[1] target (same shape and dtype); out[0] y ([] or input's shape for
 *                  reduction none); i[0] reduction (enum ddpm_reduction); f[0] beta (smooth_l1)
 *   LOSS_BWD       in[0] gy ([] or input's shape), in[1] input, in[2] target; out[0] gx (input's shape);
 *                  i[0] reduction, i[1] kind (0 mse, 1 l1, 2 smooth_l1); f[0] beta
 *   NLL_LOSS       in[0] input [N, C, *] or [C], in[1] target int64 [N, *] or [], in[2] weight [C] or NULL;
 *                  out[0] y ([] or target's shape for none), out[1] total_weight [] (sum of the weights of
 *                  the counted targets); i[0] reduction, i[1] ignore_index
 *   NLL_LOSS_BWD   in[0] gy, in[1] target, in[2] weight or NULL, in[3] total_weight; out[0] gx (input's
 *                  shape, fully overwritten); i[] as NLL_LOSS
 *   ONE_HOT        in[0] index int64; out[0] y int64 [*, num_classes]; i[0] num_classes */
#include "nn_common.h"
#include "autocast.h" /* cuda/autocast.h: the autocast cast policy */
#include <math.h>

/* ---- dropout -------------------------------------------------------------------------------------------- */
int ddpm_dropout(ddpm_tensor **out, ddpm_tensor *x, double p, int training, ddpm_generator *gen) {
  DDPM_TRY(ddpm_check_tensor("dropout", "input", x));
  DDPM_TRY(nn_need_float("dropout", "input", x));
  if (!(p >= 0 && p <= 1))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "dropout: probability has to be between 0 and 1, but got %g", p);
  if (!training || p == 0) { /* identity, as PyTorch returns the input itself */
    ddpm_tensor_retain(x);
    *out = x;
    return DDPM_OK;
  }
  if (!gen) gen = ddpm_default_generator();
  ddpm_tensor *xc = NULL, *y = NULL, *mask = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&xc, x));
  DDPM_CHECK(ddpm_tensor_new(&y, x->ndim, x->shape, x->dtype, x->device));
  DDPM_CHECK(ddpm_tensor_new(&mask, x->ndim, x->shape, DDPM_BOOL, x->device));
  {
    uint64_t seed = gen->seed, base = ddpm_generator_reserve(gen, (uint64_t)ddpm_tensor_numel(x));
    ddpm_call c = {.op = DDPM_OP_DROPOUT, .nin = 1, .nout = 2, .in = {xc}, .out = {y, mask},
                   .i = {(int64_t)seed, (int64_t)base}, .f = {p}};
    DDPM_CHECK(ddpm_dispatch(&c));
    ddpm_node *n = ddpm_ag_begin(DDPM_OP_DROPOUT, 1, &x);
    if (n) {
      n->f[0] = p;
      DDPM_CHECK(nn_record(n, y, 1, &mask));
    }
  }
done:
  ddpm_tensor_release(xc);
  ddpm_tensor_release(mask);
  if (st) {
    ddpm_tensor_release(y);
    return st;
  }
  *out = y;
  return DDPM_OK;
}

int bw_DROPOUT(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  ddpm_tensor *gc = NULL, *gx = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&gc, g));
  DDPM_CHECK(ddpm_tensor_new(&gx, g->ndim, g->shape, g->dtype, g->device));
  {
    ddpm_call c = {.op = DDPM_OP_DROPOUT_BWD, .nin = 2, .nout = 1, .in = {gc, n->saved[0]}, .out = {gx},
                   .f = {n->f[0]}};
    DDPM_CHECK(ddpm_dispatch(&c));
  }
  gin[0] = gx;
  gx = NULL;
done:
  ddpm_tensor_release(gc);
  ddpm_tensor_release(gx);
  return st;
}

/* ---- pointwise losses ----------------------------------------------------------------------------------------- */
static int check_reduction(const char *op, int reduction) {
  if (reduction < DDPM_REDUCTION_NONE || reduction > DDPM_REDUCTION_SUM)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: reduction must be none (0), mean (1) or sum (2), got %d", op, reduction);
  return DDPM_OK;
}

/* input and target broadcast to one shape (PyTorch warns and broadcasts), float target in input's dtype */
static int loss_operands(const char *op, ddpm_tensor *x, ddpm_tensor *t, ddpm_tensor **xc, ddpm_tensor **tc,
                         int *nd, int64_t *shape) {
  DDPM_TRY(ddpm_check_tensor(op, "input", x));
  DDPM_TRY(ddpm_check_tensor(op, "target", t));
  DDPM_TRY(nn_need_float(op, "input", x));
  DDPM_TRY(nn_need_float(op, "target", t));
  DDPM_TRY(ddpm_check_same_device(op, x, t));
  DDPM_TRY(ddpm_broadcast_shapes(op, x->ndim, x->shape, t->ndim, t->shape, nd, shape));
  ddpm_tensor *xe = NULL, *te = NULL, *tcast = NULL;
  int st = DDPM_OK;
  *xc = *tc = NULL;
  DDPM_CHECK(ddpm_expand(&xe, x, *nd, shape));
  if (t->dtype != x->dtype) DDPM_CHECK(ddpm_cast(&tcast, t, x->dtype));
  DDPM_CHECK(ddpm_expand(&te, tcast ? tcast : t, *nd, shape));
  DDPM_CHECK(nn_contig(xc, xe));
  DDPM_CHECK(nn_contig(tc, te));
done:
  ddpm_tensor_release(xe);
  ddpm_tensor_release(te);
  ddpm_tensor_release(tcast);
  if (st) {
    ddpm_tensor_release(*xc);
    ddpm_tensor_release(*tc);
    *xc = *tc = NULL;
  }
  return st;
}

static int pointwise_loss(ddpm_tensor **out, int op, int kind, ddpm_tensor *x, ddpm_tensor *t, int reduction,
                          double beta) {
  const char *name = ddpm_opname(op);
  DDPM_AUTOCAST(DDPM_AUTOCAST_FP32, pointwise_loss(out, op, kind, ac_[0], ac_[1], reduction, beta), x,
                t); /* autocast hook (cuda/autocast.h) */
  DDPM_TRY(check_reduction(name, reduction));
  if (!(beta >= 0))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: beta must be non-negative, got %g", name, beta);
  int nd;
  int64_t shape[DDPM_MAX_DIMS];
  ddpm_tensor *xc = NULL, *tc = NULL, *y = NULL;
  DDPM_TRY(loss_operands(name, x, t, &xc, &tc, &nd, shape));
  int st = DDPM_OK;
  if (reduction == DDPM_REDUCTION_NONE) DDPM_CHECK(ddpm_tensor_new(&y, nd, shape, x->dtype, x->device));
  else DDPM_CHECK(ddpm_tensor_new(&y, 0, NULL, x->dtype, x->device));
  {
    ddpm_call c = {.op = op, .nin = 2, .nout = 1, .in = {xc, tc}, .out = {y}, .i = {reduction}, .f = {beta}};
    DDPM_CHECK(ddpm_dispatch(&c));
    ddpm_tensor *ins[2] = {x, t};
    ddpm_node *n = ddpm_ag_begin(op, 2, ins);
    if (n) {
      n->i[0] = reduction;
      n->i[1] = kind;
      n->f[0] = beta;
      ddpm_tensor *save[2] = {xc, tc};
      DDPM_CHECK(nn_record(n, y, 2, save));
    }
  }
done:
  ddpm_tensor_release(xc);
  ddpm_tensor_release(tc);
  if (st) {
    ddpm_tensor_release(y);
    return st;
  }
  *out = y;
  return DDPM_OK;
}

int ddpm_mse_loss(ddpm_tensor **out, ddpm_tensor *x, ddpm_tensor *t, int reduction) {
  return pointwise_loss(out, DDPM_OP_MSE_LOSS, 0, x, t, reduction, 0);
}
int ddpm_l1_loss(ddpm_tensor **out, ddpm_tensor *x, ddpm_tensor *t, int reduction) {
  return pointwise_loss(out, DDPM_OP_L1_LOSS, 1, x, t, reduction, 0);
}
int ddpm_smooth_l1_loss(ddpm_tensor **out, ddpm_tensor *x, ddpm_tensor *t, int reduction, double beta) {
  return pointwise_loss(out, DDPM_OP_SMOOTH_L1_LOSS, 2, x, t, reduction, beta);
}

static int bw_pointwise_loss(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  ddpm_tensor *gc = NULL, *gx = NULL, *gt = NULL, *xc = n->saved[0];
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&gc, g));
  DDPM_CHECK(ddpm_tensor_new(&gx, xc->ndim, xc->shape, xc->dtype, xc->device));
  {
    ddpm_call c = {.op = DDPM_OP_LOSS_BWD, .nin = 3, .nout = 1, .in = {gc, xc, n->saved[1]}, .out = {gx},
                   .i = {n->i[0], n->i[1]}, .f = {n->f[0]}};
    DDPM_CHECK(ddpm_dispatch(&c));
  }
  if (ddpm_node_needs(n, 1)) {
    DDPM_CHECK(ddpm_neg(&gt, gx));
    DDPM_CHECK(ddpm_reduce_to(&gin[1], gt, &n->in_meta[1]));
  }
  if (ddpm_node_needs(n, 0)) DDPM_CHECK(ddpm_reduce_to(&gin[0], gx, &n->in_meta[0]));
done:
  ddpm_tensor_release(gc);
  ddpm_tensor_release(gx);
  ddpm_tensor_release(gt);
  return st;
}
int bw_MSE_LOSS(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return bw_pointwise_loss(n, g, gin); }
int bw_L1_LOSS(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return bw_pointwise_loss(n, g, gin); }
int bw_SMOOTH_L1_LOSS(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) { return bw_pointwise_loss(n, g, gin); }

/* ---- nll_loss ------------------------------------------------------------------------------------------------------ */
int ddpm_nll_loss(ddpm_tensor **out, ddpm_tensor *x, ddpm_tensor *target, ddpm_tensor *w, int64_t ignore_index,
                  int reduction) {
  const char *op = "nll_loss";
  DDPM_TRY(ddpm_check_tensor(op, "input", x));
  DDPM_TRY(ddpm_check_tensor(op, "target", target));
  DDPM_TRY(nn_need_float(op, "input", x));
  DDPM_TRY(check_reduction(op, reduction));
  DDPM_TRY(ddpm_check_same_device(op, x, target));
  if (target->dtype != DDPM_INT64 && target->dtype != DDPM_INT32)
    return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: target must hold class indices (int64), got %s", op,
                     ddpm_fmt_tensor(target));
  bool ok = x->ndim >= 1 && target->ndim == (x->ndim == 1 ? 0 : x->ndim - 1);
  if (ok && x->ndim >= 2) {
    ok = target->shape[0] == x->shape[0];
    for (int d = 2; ok && d < x->ndim; d++) ok = target->shape[d - 1] == x->shape[d];
  }
  if (!ok)
    return DDPM_FAIL(DDPM_ERR_SHAPE,
                     "%s: input %s and target %s do not match (expected input [N, C, d...] with target [N, d...], "
                     "or input [C] with a 0-d target)",
                     op, ddpm_fmt_tensor(x), ddpm_fmt_tensor(target));
  int64_t C = x->ndim == 1 ? x->shape[0] : x->shape[1];
  if (w) {
    DDPM_TRY(nn_need_like(op, "weight", w, x));
    if (w->ndim != 1 || w->shape[0] != C)
      return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: weight %s must be [%lld] (one value per class)", op, ddpm_fmt_tensor(w),
                       (long long)C);
  }
  ddpm_tensor *xc = NULL, *tc = NULL, *wc = NULL, *y = NULL, *tw = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&xc, x));
  if (target->dtype != DDPM_INT64) DDPM_CHECK(ddpm_cast(&tc, target, DDPM_INT64));
  else DDPM_CHECK(nn_contig(&tc, target));
  if (!ddpm_tensor_is_contiguous(tc)) {
    ddpm_tensor *t2 = NULL;
    DDPM_CHECK(nn_contig(&t2, tc));
    ddpm_tensor_release(tc);
    tc = t2;
  }
  DDPM_CHECK(nn_contig(&wc, w));
  if (reduction == DDPM_REDUCTION_NONE) DDPM_CHECK(ddpm_tensor_new(&y, target->ndim, target->shape, x->dtype, x->device));
  else DDPM_CHECK(ddpm_tensor_new(&y, 0, NULL, x->dtype, x->device));
  DDPM_CHECK(ddpm_tensor_new(&tw, 0, NULL, x->dtype, x->device));
  {
    ddpm_call c = {.op = DDPM_OP_NLL_LOSS, .nin = 3, .nout = 2, .in = {xc, tc, wc}, .out = {y, tw},
                   .i = {reduction, ignore_index}};
    DDPM_CHECK(ddpm_dispatch(&c));
    ddpm_node *n = ddpm_ag_begin(DDPM_OP_NLL_LOSS, 1, &x); /* no gradient for weight, as PyTorch */
    if (n) {
      n->i[0] = reduction;
      n->i[1] = ignore_index;
      ddpm_tensor *save[3] = {tc, wc, tw};
      DDPM_CHECK(nn_record(n, y, 3, save));
    }
  }
done:
  ddpm_tensor_release(xc);
  ddpm_tensor_release(tc);
  ddpm_tensor_release(wc);
  ddpm_tensor_release(tw);
  if (st) {
    ddpm_tensor_release(y);
    return st;
  }
  *out = y;
  return DDPM_OK;
}

int bw_NLL_LOSS(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  ddpm_tensor *gc = NULL, *gx = NULL;
  const ddpm_meta *m = &n->in_meta[0];
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&gc, g));
  DDPM_CHECK(ddpm_tensor_new(&gx, m->ndim, m->shape, m->dtype, m->device));
  {
    ddpm_call c = {.op = DDPM_OP_NLL_LOSS_BWD, .nin = 4, .nout = 1,
                   .in = {gc, n->saved[0], n->saved[1], n->saved[2]}, .out = {gx}, .i = {n->i[0], n->i[1]}};
    DDPM_CHECK(ddpm_dispatch(&c));
  }
  gin[0] = gx;
  gx = NULL;
done:
  ddpm_tensor_release(gc);
  ddpm_tensor_release(gx);
  return st;
}

/* ---- one_hot ---------------------------------------------------------------------------------------------------------- */
int ddpm_one_hot(ddpm_tensor **out, ddpm_tensor *index, int64_t num_classes) {
  const char *op = "one_hot";
  DDPM_TRY(ddpm_check_tensor(op, "input", index));
  if (index->dtype != DDPM_INT64)
    return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: expected an int64 tensor of class indices, got %s", op,
                     ddpm_fmt_tensor(index));
  if (index->ndim >= DDPM_MAX_DIMS)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: input %s already has the maximum number of dims", op, ddpm_fmt_tensor(index));
  ddpm_tensor *ic = NULL, *y = NULL;
  int st = DDPM_OK;
  DDPM_CHECK(nn_contig(&ic, index));
  if (num_classes < 0) { /* infer max + 1, as PyTorch's num_classes=-1 */
    if (ddpm_tensor_numel(index) == 0) {
      st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "%s: can not infer the number of classes from an empty tensor %s", op,
                     ddpm_fmt_tensor(index));
      goto done;
    }
    ddpm_tensor *mx = NULL;
    double v = 0;
    DDPM_CHECK(ddpm_amax(&mx, ic, 0, NULL, 0));
    st = ddpm_tensor_item(mx, &v);
    ddpm_tensor_release(mx);
    if (st) goto done;
    num_classes = (int64_t)v + 1;
  }
  {
    int64_t shape[DDPM_MAX_DIMS];
    memcpy(shape, index->shape, sizeof(int64_t) * (size_t)index->ndim);
    shape[index->ndim] = num_classes;
    DDPM_CHECK(ddpm_tensor_new(&y, index->ndim + 1, shape, DDPM_INT64, index->device));
    ddpm_call c = {.op = DDPM_OP_ONE_HOT, .nin = 1, .nout = 1, .in = {ic}, .out = {y}, .i = {num_classes}};
    DDPM_CHECK(ddpm_dispatch(&c));
  }
done:
  ddpm_tensor_release(ic);
  if (st) {
    ddpm_tensor_release(y);
    return st;
  }
  *out = y;
  return DDPM_OK;
}
