/* ops_linalg.c: matmul (PyTorch's 1-D/2-D/batched rules), bmm, linear, and their gradients. */
#include "internal.h"
#include "autocast.h" /* cuda/autocast.h: lowers float32 operands under ddpm.autocast */

static int float_operands(const char *op, ddpm_tensor *a, ddpm_tensor *b) {
  if (!ddpm_is_float(a->dtype) || !ddpm_is_float(b->dtype))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: expected floating point tensors, got %s and %s", op, ddpm_fmt_tensor(a),
                     ddpm_fmt_tensor(b));
  if (a->dtype != b->dtype)
    return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: expected both operands to have the same dtype, got %s and %s", op,
                     ddpm_fmt_tensor(a), ddpm_fmt_tensor(b));
  return ddpm_check_same_device(op, a, b);
}

/* [B,M,K] x [B,K,N]; a batch dim of size 1 on one side broadcasts (stride 0 for the kernel). */
int ddpm_bmm(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b) {
  DDPM_TRY(ddpm_check_out("bmm", out));
  DDPM_TRY(ddpm_check_tensor("bmm", "input", a));
  DDPM_TRY(ddpm_check_tensor("bmm", "mat2", b));
  DDPM_AUTOCAST(DDPM_AUTOCAST_LOWER, ddpm_bmm(out, ac_[0], ac_[1]), a, b); /* autocast hook (cuda/autocast.h) */
  if (a->ndim != 3 || b->ndim != 3)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "bmm: expected 3-D tensors [B, M, K] and [B, K, N], got %s and %s",
                     ddpm_fmt_tensor(a), ddpm_fmt_tensor(b));
  DDPM_TRY(float_operands("bmm", a, b));
  int64_t B = a->shape[0] > b->shape[0] ? a->shape[0] : b->shape[0];
  if ((a->shape[0] != B && a->shape[0] != 1) || (b->shape[0] != B && b->shape[0] != 1) || a->shape[2] != b->shape[1])
    return DDPM_FAIL(DDPM_ERR_SHAPE, "bmm: shapes %s and %s cannot be multiplied (need [B, M, K] x [B, K, N])",
                     ddpm_fmt_shape(a->ndim, a->shape), ddpm_fmt_shape(b->ndim, b->shape));
  ddpm_tensor *ea = a, *eb = b, *o = NULL;
  int st = DDPM_OK;
  int64_t sa[3] = {B, a->shape[1], a->shape[2]}, sb[3] = {B, b->shape[1], b->shape[2]};
  if (a->shape[0] != B) DDPM_CHECK(ddpm_expand(&ea, a, 3, sa));
  if (b->shape[0] != B) DDPM_CHECK(ddpm_expand(&eb, b, 3, sb));
  {
    int64_t so[3] = {B, a->shape[1], b->shape[2]};
    DDPM_CHECK(ddpm_tensor_new(&o, 3, so, a->dtype, a->device));
    ddpm_call c = {.op = DDPM_OP_BMM, .nin = 2, .nout = 1, .in = {ea, eb}, .out = {o}};
    DDPM_CHECK(ddpm_dispatch(&c));
    ddpm_tensor *ins[2] = {ea, eb};
    ddpm_node *n = ddpm_ag_begin(DDPM_OP_BMM, 2, ins);
    if (n) {
      st = ddpm_ag_save(n, ddpm_node_needs(n, 1) ? ea : NULL);
      if (!st) st = ddpm_ag_save(n, ddpm_node_needs(n, 0) ? eb : NULL);
      if (st) ddpm_node_release(n);
      else ddpm_ag_finish(n, o);
    }
  }
done:
  if (ea != a) ddpm_tensor_release(ea);
  if (eb != b) ddpm_tensor_release(eb);
  if (st) {
    ddpm_tensor_release(o);
    return st;
  }
  *out = o;
  return DDPM_OK;
}

int bw_BMM(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  ddpm_tensor *t = NULL;
  if (ddpm_node_needs(n, 0)) { /* g @ b^T */
    DDPM_TRY(ddpm_transpose(&t, n->saved[1], 1, 2));
    int st = ddpm_bmm(&gin[0], g, t);
    ddpm_tensor_release(t);
    DDPM_TRY(st);
  }
  if (ddpm_node_needs(n, 1)) { /* a^T @ g */
    DDPM_TRY(ddpm_transpose(&t, n->saved[0], 1, 2));
    int st = ddpm_bmm(&gin[1], t, g);
    ddpm_tensor_release(t);
    DDPM_TRY(st);
  }
  return DDPM_OK;
}

int ddpm_matmul(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b) {
  DDPM_TRY(ddpm_check_out("matmul", out));
  DDPM_TRY(ddpm_check_tensor("matmul", "input", a));
  DDPM_TRY(ddpm_check_tensor("matmul", "other", b));
  DDPM_AUTOCAST(DDPM_AUTOCAST_LOWER, ddpm_matmul(out, ac_[0], ac_[1]), a, b); /* autocast hook (cuda/autocast.h) */
  if (a->ndim == 0 || b->ndim == 0)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "matmul: both arguments need at least 1 dim, got %s and %s", ddpm_fmt_tensor(a),
                     ddpm_fmt_tensor(b));
  DDPM_TRY(float_operands("matmul", a, b));
  int64_t K = a->shape[a->ndim - 1], Kb = b->ndim == 1 ? b->shape[0] : b->shape[b->ndim - 2];
  if (K != Kb)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "matmul: shapes %s and %s cannot be multiplied (%lld vs %lld inner elements)",
                     ddpm_fmt_shape(a->ndim, a->shape), ddpm_fmt_shape(b->ndim, b->shape), (long long)K, (long long)Kb);
  int st = DDPM_OK;
  ddpm_tensor *a3 = NULL, *b3 = NULL, *r = NULL;
  int64_t M = a->ndim == 1 ? 1 : a->shape[a->ndim - 2];
  int64_t N = b->ndim == 1 ? 1 : b->shape[b->ndim - 1];
  /* result shape, before dropping the dims a 1-D operand contributes */
  int nbatch_a = a->ndim > 2 ? a->ndim - 2 : 0, nbatch_b = b->ndim > 2 ? b->ndim - 2 : 0;
  int nbatch;
  int64_t batch[DDPM_MAX_DIMS];
  DDPM_TRY(ddpm_broadcast_shapes("matmul", nbatch_a, a->shape, nbatch_b, b->shape, &nbatch, batch));
  int64_t B = ddpm_shape_numel(nbatch, batch);
  if (nbatch_b == 0 && b->ndim == 2 && a->ndim >= 2) {
    /* [..., M, K] @ [K, N]: fold the batch into the rows, one GEMM */
    int64_t s2[2] = {B * M, K};
    DDPM_CHECK(ddpm_reshape(&a3, a, 2, s2));
    ddpm_tensor *a33 = NULL;
    DDPM_CHECK(ddpm_unsqueeze(&a33, a3, 0));
    ddpm_tensor_release(a3);
    a3 = a33;
    DDPM_CHECK(ddpm_unsqueeze(&b3, b, 0));
  } else {
    int64_t ea[DDPM_MAX_DIMS], eb[DDPM_MAX_DIMS];
    memcpy(ea, batch, sizeof(int64_t) * (size_t)nbatch);
    memcpy(eb, batch, sizeof(int64_t) * (size_t)nbatch);
    ea[nbatch] = M; ea[nbatch + 1] = K;
    eb[nbatch] = K; eb[nbatch + 1] = N;
    ddpm_tensor *ta = NULL, *tb = NULL, *xa = NULL, *xb = NULL;
    int64_t am[2] = {M, K}, bm[2] = {K, N};
    /* view 1-D operands as matrices, expand the batch, flatten it to one dim */
    if (a->ndim == 1) DDPM_CHECK(ddpm_reshape(&ta, a, 2, am));
    else { ddpm_tensor_retain(a); ta = a; }
    if (b->ndim == 1) st = ddpm_reshape(&tb, b, 2, bm);
    else { ddpm_tensor_retain(b); tb = b; }
    if (!st) st = ddpm_expand(&xa, ta, nbatch + 2, ea);
    if (!st) st = ddpm_expand(&xb, tb, nbatch + 2, eb);
    int64_t fa[3] = {B, M, K}, fb[3] = {B, K, N};
    if (!st) st = ddpm_reshape(&a3, xa, 3, fa);
    if (!st) st = ddpm_reshape(&b3, xb, 3, fb);
    ddpm_tensor_release(ta);
    ddpm_tensor_release(tb);
    ddpm_tensor_release(xa);
    ddpm_tensor_release(xb);
    if (st) goto done;
  }
  DDPM_CHECK(ddpm_bmm(&r, a3, b3));
  {
    int64_t shape[DDPM_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < nbatch; i++) shape[nd++] = batch[i];
    if (a->ndim > 1) shape[nd++] = M;
    if (b->ndim > 1) shape[nd++] = N;
    st = ddpm_reshape(out, r, nd, shape);
  }
done:
  ddpm_tensor_release(a3);
  ddpm_tensor_release(b3);
  ddpm_tensor_release(r);
  return st;
}

/* linear: x [..., K] @ w[N, K]^T + b[N] through one GEMM with the bias as its seed */
int ddpm_linear(ddpm_tensor **out, ddpm_tensor *x, ddpm_tensor *w, ddpm_tensor *bias) {
  DDPM_TRY(ddpm_check_out("linear", out));
  DDPM_TRY(ddpm_check_tensor("linear", "input", x));
  DDPM_TRY(ddpm_check_tensor("linear", "weight", w));
  DDPM_AUTOCAST(DDPM_AUTOCAST_LOWER, ddpm_linear(out, ac_[0], ac_[1], ac_[2]), x, w, bias); /* autocast hook (cuda/autocast.h) */
  if (w->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
    return DDPM_FAIL(DDPM_ERR_SHAPE, "linear: input %s does not match weight %s (expected input [..., %lld] and "
                     "weight [out_features, in_features])",
                     ddpm_fmt_tensor(x), ddpm_fmt_tensor(w), (long long)(w->ndim == 2 ? w->shape[1] : -1));
  DDPM_TRY(float_operands("linear", x, w));
  if (bias) {
    if (bias->ndim != 1 || bias->shape[0] != w->shape[0])
      return DDPM_FAIL(DDPM_ERR_SHAPE, "linear: bias %s does not match weight %s (expected [%lld])",
                       ddpm_fmt_tensor(bias), ddpm_fmt_tensor(w), (long long)w->shape[0]);
    DDPM_TRY(float_operands("linear", w, bias));
  }
  int64_t K = w->shape[1], N = w->shape[0], M = ddpm_tensor_numel(x) / (K ? K : 1);
  if (K == 0) M = ddpm_shape_numel(x->ndim - 1, x->shape);
  ddpm_tensor *x2 = NULL, *o = NULL;
  int st = DDPM_OK;
  int64_t s2[2] = {M, K};
  DDPM_CHECK(ddpm_reshape(&x2, x, 2, s2));
  {
    int64_t so[2] = {M, N};
    DDPM_CHECK(ddpm_tensor_new(&o, 2, so, x->dtype, x->device));
    ddpm_call c = {.op = DDPM_OP_LINEAR, .nin = 3, .nout = 1, .in = {x2, w, bias}, .out = {o}};
    DDPM_CHECK(ddpm_dispatch(&c));
    ddpm_tensor *ins[3] = {x2, w, bias};
    ddpm_node *n = ddpm_ag_begin(DDPM_OP_LINEAR, 3, ins);
    if (n) {
      st = ddpm_ag_save_replayable(n, ddpm_node_needs(n, 1) ? x2 : NULL);
      if (!st) st = ddpm_ag_save(n, ddpm_node_needs(n, 0) ? w : NULL);
      if (st) {
        ddpm_node_release(n);
        goto done;
      }
      ddpm_ag_finish(n, o);
    }
  }
  {
    int64_t shape[DDPM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = N;
    st = ddpm_view(out, o, x->ndim, shape);
  }
done:
  ddpm_tensor_release(x2);
  ddpm_tensor_release(o);
  return st;
}

int bw_LINEAR(ddpm_node *n, ddpm_tensor *g, ddpm_tensor **gin) {
  ddpm_tensor *t = NULL;
  if (ddpm_node_needs(n, 0)) DDPM_TRY(ddpm_matmul(&gin[0], g, n->saved[1])); /* [M,N]@[N,K] */
  if (ddpm_node_needs(n, 1)) {                                                 /* g^T @ x */
    ddpm_tensor *x = NULL;
    DDPM_TRY(ddpm_ag_saved(n, 0, &x));
    int st = ddpm_transpose(&t, g, 0, 1);
    if (!st) st = ddpm_matmul(&gin[1], t, x);
    ddpm_tensor_release(t);
    ddpm_tensor_release(x);
    DDPM_TRY(st);
  }
  if (n->nin > 2 && ddpm_node_needs(n, 2)) {
    uint32_t mask = 1u;
    DDPM_TRY(ddpm_sum_dims(&gin[2], g, mask, 0));
  }
  return DDPM_OK;
}
