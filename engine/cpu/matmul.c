/* matmul.c: batched GEMM and linear layers through OpenBLAS (cblas), or float32 on AVX-512 CPUs
 * through the engine's GEMM (gemm_avx512.c); bfloat16 through the engine's bfloat16 GEMM
 * (gemm_bf16.c: float32 sums, bfloat16 result, as PyTorch's CPU autocast).  float16 goes through
 * float32 copies; many small matrices run one per thread with single-threaded GEMM calls. */
#include "cpu.h"
#include "gemm_avx512.h"
#include "bf16_convert.h"
#include "gemm_bf16.h"
#include "nn_cpu.h"
#include <cblas.h>
#include <omp.h>

/* Describe a [rows, cols] matrix view for cblas: row-major with leading dim, or transposed. */
typedef struct {
  bool trans;
  int64_t ld;
} mat_layout;

static bool layout_of(int64_t rows, int64_t cols, int64_t srow, int64_t scol, mat_layout *l) {
  if ((scol == 1 || cols == 1) && (srow >= (cols > 1 ? cols : 1) || rows == 1)) {
    l->trans = false;
    l->ld = rows == 1 ? (cols > 1 ? cols : 1) : srow;
    if (l->ld < cols) l->ld = cols;
    return true;
  }
  if ((srow == 1 || rows == 1) && (scol >= (rows > 1 ? rows : 1) || cols == 1)) {
    l->trans = true;
    l->ld = cols == 1 ? (rows > 1 ? rows : 1) : scol;
    if (l->ld < rows) l->ld = rows;
    return true;
  }
  return false;
}

/* float32 (or float64) copy of a half tensor, or of a matrix cblas cannot address */
static int as_gemm_operand(ddpm_tensor **out, ddpm_tensor *t, int dt) {
  ddpm_tensor *c;
  DDPM_TRY(ddpm_tensor_new(&c, t->ndim, t->shape, dt, DDPM_CPU));
  cpu_copy_strided(c, t);
  *out = c;
  return DDPM_OK;
}

static bool gemm_ok(const ddpm_tensor *t, int64_t r, int64_t c) {
  mat_layout l;
  return layout_of(r, c, t->strides[1], t->strides[2], &l);
}

typedef struct {
  const ddpm_tensor *a, *b;
  ddpm_tensor *o;
  int64_t M, N, K;
  mat_layout la, lb;
  bool dbl, fast;
} bmm_ctx;

/* float32 on AVX-512: the engine's own GEMM reads A in any layout and B with unit column stride
 * (a B stored transposed stays on OpenBLAS: transposing it per call measured no faster). Its
 * K-chunked sums also carry about half the float32 error of one long sum. */
static void bmm_fast_one(bmm_ctx *c, int64_t i) {
  const float *A = (const float *)ddpm_ptr(c->a) + i * c->a->strides[0];
  const float *B = (const float *)ddpm_ptr(c->b) + i * c->b->strides[0];
  float *O = (float *)ddpm_ptr(c->o) + i * c->M * c->N;
  cpu_sgemm_args g = {c->M, c->N, c->K, A, c->la.trans ? 1 : c->la.ld, c->la.trans ? c->la.ld : 1, B, c->lb.ld, O, c->N,
                      0, NULL};
  cpu_sgemm_f32(&g);
}

static void bmm_range(int64_t lo, int64_t hi, void *vctx) {
  bmm_ctx *c = vctx;
  for (int64_t i = lo; i < hi; i++) {
    if (c->fast) {
      bmm_fast_one(c, i);
      continue;
    }
    if (c->dbl) {
      const double *A = (const double *)ddpm_ptr(c->a) + i * c->a->strides[0];
      const double *B = (const double *)ddpm_ptr(c->b) + i * c->b->strides[0];
      double *O = (double *)ddpm_ptr(c->o) + i * c->M * c->N;
      cblas_dgemm(CblasRowMajor, c->la.trans ? CblasTrans : CblasNoTrans, c->lb.trans ? CblasTrans : CblasNoTrans,
                  (int)c->M, (int)c->N, (int)c->K, 1.0, A, (int)c->la.ld, B, (int)c->lb.ld, 0.0, O, (int)c->N);
    } else {
      const float *A = (const float *)ddpm_ptr(c->a) + i * c->a->strides[0];
      const float *B = (const float *)ddpm_ptr(c->b) + i * c->b->strides[0];
      float *O = (float *)ddpm_ptr(c->o) + i * c->M * c->N;
      cblas_sgemm(CblasRowMajor, c->la.trans ? CblasTrans : CblasNoTrans, c->lb.trans ? CblasTrans : CblasNoTrans,
                  (int)c->M, (int)c->N, (int)c->K, 1.0f, A, (int)c->la.ld, B, (int)c->lb.ld, 0.0f, O, (int)c->N);
    }
  }
}

/* bfloat16: the GEMM reads any strides, so operands are never copied */
typedef struct {
  const ddpm_tensor *a, *b;
  ddpm_tensor *o;
  int64_t M, N, K;
  int failed;
} bmm_bf16_ctx;

static void bmm_bf16_range(int64_t lo, int64_t hi, void *vctx) {
  bmm_bf16_ctx *c = vctx;
  const uint16_t *A = (const uint16_t *)ddpm_ptr(c->a), *B = (const uint16_t *)ddpm_ptr(c->b);
  for (int64_t i = lo; i < hi; i++) {
    cpu_gemm_bf16_args g = {c->M, c->N, c->K, A + i * c->a->strides[0], c->a->strides[1], c->a->strides[2],
                            B + i * c->b->strides[0], c->b->strides[1], c->b->strides[2], NULL,
                            (uint16_t *)ddpm_ptr(c->o) + i * c->M * c->N, c->N, 0, NULL, NULL};
    if (cpu_gemm_bf16(&g)) __atomic_store_n(&c->failed, 1, __ATOMIC_RELAXED);
  }
}

static int bmm_bf16(ddpm_tensor *a, ddpm_tensor *b, ddpm_tensor *o) {
  int64_t B = a->shape[0];
  bmm_bf16_ctx ctx = {a, b, o, a->shape[1], b->shape[2], a->shape[2], 0};
  if (B > 1 && (double)ctx.M * ctx.N * ctx.K < 262144.0) cpu_parallel_for(B, 1, bmm_bf16_range, &ctx);
  else bmm_bf16_range(0, B, &ctx);
  return ctx.failed ? DDPM_FAIL(DDPM_ERR_OOM, "bmm: out of memory for bfloat16 packing buffers") : DDPM_OK;
}

/* in[0] a [B,M,K], in[1] b [B,K,N] (batch stride may be 0); out [B,M,N] contiguous */
int cpu_BMM(ddpm_call *c) {
  ddpm_tensor *a = c->in[0], *b = c->in[1], *o = c->out[0];
  int64_t B = a->shape[0], M = a->shape[1], K = a->shape[2], N = b->shape[2];
  if (a->dtype == DDPM_BFLOAT16 && b->dtype == DDPM_BFLOAT16 && o->dtype == DDPM_BFLOAT16) return bmm_bf16(a, b, o);
  int dt = o->dtype == DDPM_FLOAT64 ? DDPM_FLOAT64 : DDPM_FLOAT32;
  ddpm_tensor *ta = NULL, *tb = NULL, *to = NULL;
  int st = DDPM_OK;
  if (a->dtype != dt || !gemm_ok(a, M, K)) DDPM_CHECK(as_gemm_operand(&ta, a, dt));
  if (b->dtype != dt || !gemm_ok(b, K, N)) DDPM_CHECK(as_gemm_operand(&tb, b, dt));
  if (o->dtype != dt) DDPM_CHECK(ddpm_tensor_new(&to, o->ndim, o->shape, dt, DDPM_CPU));
  bmm_ctx ctx = {ta ? ta : a, tb ? tb : b, to ? to : o, M, N, K, {0}, {0}, dt == DDPM_FLOAT64, false};
  layout_of(M, K, ctx.a->strides[1], ctx.a->strides[2], &ctx.la);
  layout_of(K, N, ctx.b->strides[1], ctx.b->strides[2], &ctx.lb);
  ctx.fast = dt == DDPM_FLOAT32 && !ctx.lb.trans && cpu_fast_kernels();
  if (K == 0) {
    memset(ddpm_ptr(ctx.o), 0, (size_t)(B * M * N * ddpm_dsize(dt)));
  } else if (B > 1 && (double)M * N * K < 262144.0) {
    /* small matrices: one per thread (OpenMP OpenBLAS runs single-threaded inside a region) */
    cpu_parallel_for(B, 1, bmm_range, &ctx);
  } else {
    bmm_range(0, B, &ctx);
  }
  if (to) cpu_copy_strided(o, to);
done:
  ddpm_tensor_release(ta);
  ddpm_tensor_release(tb);
  ddpm_tensor_release(to);
  return st;
}

/* out = x w^T + bias with bfloat16 x, w (read in place: w^T is w with its strides swapped) and
 * the bias added in float32 before the one rounding */
static int linear_bf16(ddpm_tensor *x, ddpm_tensor *w, ddpm_tensor *bias, ddpm_tensor *o) {
  int64_t M = x->shape[0], K = x->shape[1], N = w->shape[0];
  float *bf = NULL;
  if (bias) {
    bf = cpu_scratch(3, sizeof(float) * (size_t)N);
    if (!bf) return DDPM_FAIL(DDPM_ERR_OOM, "linear: out of memory for a bias of %lld floats", (long long)N);
    if (bias->strides[0] == 1) cpu_bf16_to_f32((const uint16_t *)ddpm_ptr(bias), bf, N);
    else
      for (int64_t j = 0; j < N; j++) bf[j] = ddpm_bf16_to_f32(((const uint16_t *)ddpm_ptr(bias))[j * bias->strides[0]]);
  }
  cpu_gemm_bf16_args g = {M, N, K, (const uint16_t *)ddpm_ptr(x), x->strides[0], x->strides[1],
                          (const uint16_t *)ddpm_ptr(w), w->strides[1], w->strides[0], NULL,
                          (uint16_t *)ddpm_ptr(o), N, 0, bf, NULL};
  return cpu_gemm_bf16(&g);
}

/* in[0] x [M,K] (rows contiguous), in[1] w [N,K], in[2] bias [N] or NULL; out [M,N] */
int cpu_LINEAR(ddpm_call *c) {
  ddpm_tensor *x = c->in[0], *w = c->in[1], *bias = c->in[2], *o = c->out[0];
  int64_t M = x->shape[0], K = x->shape[1], N = w->shape[0];
  if (x->dtype == DDPM_BFLOAT16 && w->dtype == DDPM_BFLOAT16 && o->dtype == DDPM_BFLOAT16 &&
      (!bias || bias->dtype == DDPM_BFLOAT16))
    return linear_bf16(x, w, bias, o);
  int dt = o->dtype == DDPM_FLOAT64 ? DDPM_FLOAT64 : DDPM_FLOAT32;
  ddpm_tensor *tx = NULL, *tw = NULL, *tb = NULL, *to = NULL;
  int st = DDPM_OK;
  mat_layout lx = {0}, lw = {0};
  if (x->dtype != dt || !layout_of(M, K, x->strides[0], x->strides[1], &lx)) {
    DDPM_CHECK(as_gemm_operand(&tx, x, dt));
    layout_of(M, K, tx->strides[0], tx->strides[1], &lx);
  }
  if (w->dtype != dt || !layout_of(N, K, w->strides[0], w->strides[1], &lw)) {
    DDPM_CHECK(as_gemm_operand(&tw, w, dt));
    layout_of(N, K, tw->strides[0], tw->strides[1], &lw);
  }
  if (bias && (bias->dtype != dt || bias->strides[0] != 1)) DDPM_CHECK(as_gemm_operand(&tb, bias, dt));
  if (o->dtype != dt) DDPM_CHECK(ddpm_tensor_new(&to, o->ndim, o->shape, dt, DDPM_CPU));
  if (dt == DDPM_FLOAT32 && cpu_fast_kernels() && K > 0) {
    /* out = x w^T + b on the engine's GEMM: w^T is the [K, N] operand; w as stored ([N, K] rows)
     * is transposed into scratch (N K floats: small next to M N K multiply-adds) */
    const ddpm_tensor *X = tx ? tx : x, *W = tw ? tw : w, *Bv = tb ? tb : bias;
    const float *wp = (const float *)ddpm_ptr(W), *Bt = wp;
    int64_t ldb = lw.ld;
    if (!lw.trans) {
      float *t = cpu_scratch(3, sizeof(float) * (size_t)(K * N));
      if (!t) DDPM_CHECK(DDPM_FAIL(DDPM_ERR_OOM, "linear: out of memory for a %lld x %lld buffer", (long long)K,
                                   (long long)N));
      for (int64_t j0 = 0; j0 < N; j0 += 64)
        for (int64_t k = 0; k < K; k++)
          for (int64_t j = j0; j < N && j < j0 + 64; j++) t[k * N + j] = wp[j * lw.ld + k];
      Bt = t;
      ldb = N;
    }
    ddpm_tensor *O = to ? to : o;
    cpu_sgemm_args g = {M, N, K, (const float *)ddpm_ptr(X), lx.trans ? 1 : lx.ld, lx.trans ? lx.ld : 1, Bt, ldb,
                        (float *)ddpm_ptr(O), N, 0, Bv ? (const float *)ddpm_ptr(Bv) : NULL};
    cpu_sgemm_f32(&g);
    if (to) cpu_copy_strided(o, to);
  } else {
    const ddpm_tensor *X = tx ? tx : x, *W = tw ? tw : w, *Bv = tb ? tb : bias;
    ddpm_tensor *O = to ? to : o;
    /* out = x @ w^T: w is [N,K]; its transpose as a [K,N] operand flips the layout flag */
    bool wt = !lw.trans;
    double beta = 0.0;
    if (Bv) { /* seed every row with the bias, then accumulate the product onto it */
      for (int64_t i = 0; i < M; i++) {
        if (dt == DDPM_FLOAT32) memcpy((float *)ddpm_ptr(O) + i * N, ddpm_ptr(Bv), (size_t)N * 4);
        else memcpy((double *)ddpm_ptr(O) + i * N, ddpm_ptr(Bv), (size_t)N * 8);
      }
      beta = 1.0;
    }
    if (K == 0) {
      if (!Bv) memset(ddpm_ptr(O), 0, (size_t)(M * N * ddpm_dsize(dt)));
    } else if (dt == DDPM_FLOAT32) {
      cblas_sgemm(CblasRowMajor, lx.trans ? CblasTrans : CblasNoTrans, wt ? CblasTrans : CblasNoTrans, (int)M,
                  (int)N, (int)K, 1.0f, (const float *)ddpm_ptr(X), (int)lx.ld, (const float *)ddpm_ptr(W),
                  (int)lw.ld, (float)beta, (float *)ddpm_ptr(O), (int)N);
    } else {
      cblas_dgemm(CblasRowMajor, lx.trans ? CblasTrans : CblasNoTrans, wt ? CblasTrans : CblasNoTrans, (int)M,
                  (int)N, (int)K, 1.0, (const double *)ddpm_ptr(X), (int)lx.ld, (const double *)ddpm_ptr(W),
                  (int)lw.ld, beta, (double *)ddpm_ptr(O), (int)N);
    }
    if (to) cpu_copy_strided(o, to);
  }
done:
  ddpm_tensor_release(tx);
  ddpm_tensor_release(tw);
  ddpm_tensor_release(tb);
  ddpm_tensor_release(to);
  return st;
}
