// matmul.cu: bmm and linear through cuBLAS / cuBLASLt.
//
// cuBLAS is column-major, our tensors row-major: C = A @ B (row-major) is computed as
// C^T = B^T @ A^T (column-major), so the row-major operands are passed as they lie, B first.  An
// operand whose rows or columns are contiguous is used in place (transposed views cost nothing,
// a batch stride of 0 broadcasts); anything else is copied contiguous first.  float32 computes in
// float32, or TF32 when ddpm.backends.cuda.matmul.allow_tf32 is set; float16/bfloat16 multiply on
// tensor cores and accumulate in float32; float64 is exact.  linear with a bias uses cuBLASLt's
// bias epilogue (one kernel), falling back to seeding the output with the bias.
#include "cuda_common.cuh"
#include <cublasLt.h>
#include <cublas_v2.h>
#include <map>
#include <mutex>
#include <tuple>

using namespace ddpm_cu;

namespace {

const size_t kWorkspace = (size_t)32 << 20; // what cuBLAS recommends for Hopper

struct Handles {
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t lt = nullptr;
};
thread_local Handles tl_handles[DDPM_CU_MAX_DEVICES];

std::mutex g_ws_mu;
std::map<std::pair<int, cudaStream_t>, void *> g_ws; // workspace per (device, stream), kept

int blas_fail(cublasStatus_t s, const char *what, const char *file, int line) {
  int code = s == CUBLAS_STATUS_ALLOC_FAILED ? DDPM_ERR_OOM : DDPM_ERR_BACKEND;
  return ddpm_fail_at(code, file, line, "%s: cuBLAS error %s: %s", what, cublasGetStatusName(s),
                      cublasGetStatusString(s));
}
#define BLAS_TRY(expr, what)                                                  \
  do {                                                                        \
    cublasStatus_t s_ = (expr);                                               \
    if (s_ != CUBLAS_STATUS_SUCCESS) return blas_fail(s_, (what), __FILE__, __LINE__); \
  } while (0)

int workspace(int ord, cudaStream_t s, void **out) {
  std::lock_guard<std::mutex> lk(g_ws_mu);
  auto it = g_ws.find({ord, s});
  if (it != g_ws.end()) {
    *out = it->second;
    return DDPM_OK;
  }
  void *p = nullptr;
  CU_TRY(cudaMalloc(&p, kWorkspace), "allocating the cuBLAS workspace");
  g_ws[{ord, s}] = p;
  *out = p;
  return DDPM_OK;
}

int handles(int ord, cudaStream_t s, Handles **out, void **ws) {
  Handles &h = tl_handles[ord];
  if (!h.blas) BLAS_TRY(cublasCreate(&h.blas), "creating the cuBLAS handle");
  if (!h.lt) BLAS_TRY(cublasLtCreate(&h.lt), "creating the cuBLASLt handle");
  DDPM_TRY(workspace(ord, s, ws));
  BLAS_TRY(cublasSetStream(h.blas, s), "cublasSetStream");
  BLAS_TRY(cublasSetWorkspace(h.blas, *ws, kWorkspace), "cublasSetWorkspace");
  *out = &h;
  return DDPM_OK;
}

// A row-major [R, C] operand with strides (sr, sc) as a column-major BLAS operand: untransposed
// (the column-major C x R matrix, ld = sr) or transposed (the column-major R x C matrix, ld = sc).
bool blas_layout(int64_t R, int64_t C, int64_t sr, int64_t sc, bool *trans, int64_t *ld) {
  int64_t c1 = C > 1 ? C : 1, r1 = R > 1 ? R : 1;
  if ((sc == 1 || C == 1) && (sr >= c1 || R == 1)) {
    *trans = false;
    *ld = R == 1 ? c1 : sr;
    if (*ld < c1) *ld = c1;
    return true;
  }
  if ((sr == 1 || R == 1) && (sc >= r1 || C == 1)) {
    *trans = true;
    *ld = C == 1 ? r1 : sc;
    if (*ld < r1) *ld = r1;
    return true;
  }
  return false;
}

struct Operand {
  const char *ptr;
  int64_t batch_stride; // elements
  bool trans;
  int64_t ld;
};

// Keeps a packed copy alive until the GEMM that reads it is enqueued (stream order then
// protects its memory when it returns to the allocator).
struct Packed {
  ddpm_tensor *t = nullptr;
  ~Packed() { ddpm_tensor_release(t); }
};

// Describe t's [R, C] matrices (batch stride sb, row stride sr, column stride sc) as a BLAS
// operand; when that layout is not addressable, pack a contiguous [batches, R, C] copy.
int operand(const ddpm_call *c, const ddpm_tensor *t, int64_t R, int64_t C, int64_t sb, int64_t sr, int64_t sc,
            int64_t batches, Packed &tmp, Operand *op) {
  op->ptr = ddpm_ptr(t);
  op->batch_stride = sb;
  if (blas_layout(R, C, sr, sc, &op->trans, &op->ld)) return DDPM_OK;
  int64_t shape[3] = {batches, R, C}, strides[3] = {sb, sr, sc};
  ddpm_tensor *view = nullptr;
  DDPM_TRY(ddpm_tensor_alias(&view, t, 3, shape, strides, t->offset));
  int st = ddpm_tensor_new(&tmp.t, 3, shape, t->dtype, t->device);
  if (!st) st = copy_strided(tmp.t, view, c);
  ddpm_tensor_release(view);
  DDPM_TRY(st);
  op->ptr = ddpm_ptr(tmp.t);
  op->batch_stride = R * C;
  op->trans = false;
  op->ld = C > 1 ? C : 1;
  return DDPM_OK;
}

cudaDataType_t blas_type(int dt) {
  switch (dt) {
  case DDPM_FLOAT64: return CUDA_R_64F;
  case DDPM_FLOAT16: return CUDA_R_16F;
  case DDPM_BFLOAT16: return CUDA_R_16BF;
  default: return CUDA_R_32F;
  }
}
cublasComputeType_t compute_type(int dt) {
  if (dt == DDPM_FLOAT64) return CUBLAS_COMPUTE_64F;
  if (dt == DDPM_FLOAT32 && ddpm_cuda_get_flag(DDPM_CUDA_FLAG_MATMUL_TF32)) return CUBLAS_COMPUTE_32F_FAST_TF32;
  return CUBLAS_COMPUTE_32F;
}

bool too_big(int64_t v) { return v > INT32_MAX; }

// out[b] (row-major [M, N], contiguous) = beta * out[b] + a[b] @ bop[b]; a is [M, K], bop is [K, N].
int gemm(const char *what, int dt, int64_t B, int64_t M, int64_t N, int64_t K, const Operand &a,
         const Operand &bop, void *out, bool accumulate) {
  if (too_big(M) || too_big(N) || too_big(K) || too_big(B) || too_big(a.ld) || too_big(bop.ld))
    return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: sizes above 2^31 are not supported by the CUDA matmul (M %lld, N %lld, K %lld)",
                     what, (long long)M, (long long)N, (long long)K);
  int ord = current_ordinal();
  cudaStream_t s = stream();
  Handles *h;
  void *ws;
  DDPM_TRY(handles(ord, s, &h, &ws));
  double alpha_d = 1.0, beta_d = accumulate ? 1.0 : 0.0;
  float alpha_f = 1.0f, beta_f = accumulate ? 1.0f : 0.0f;
  const void *alpha = dt == DDPM_FLOAT64 ? (const void *)&alpha_d : (const void *)&alpha_f;
  const void *beta = dt == DDPM_FLOAT64 ? (const void *)&beta_d : (const void *)&beta_f;
  cudaDataType_t ty = blas_type(dt);
  // column-major: C^T (N x M) = op(bop) (N x K) * op(a) (K x M)
  BLAS_TRY(cublasGemmStridedBatchedEx(h->blas, bop.trans ? CUBLAS_OP_T : CUBLAS_OP_N, a.trans ? CUBLAS_OP_T : CUBLAS_OP_N,
                                      (int)N, (int)M, (int)K, alpha, bop.ptr, ty, (int)bop.ld, bop.batch_stride, a.ptr, ty,
                                      (int)a.ld, a.batch_stride, beta, out, ty, (int)N, M * N, (int)B,
                                      compute_type(dt), CUBLAS_GEMM_DEFAULT),
           what);
  return DDPM_OK;
}

// ---- cuBLASLt with the bias epilogue ------------------------------------------------------------------
struct LtKey {
  int ord, dt, tf32;
  bool ta, tb;
  int64_t m, n, k, lda, ldb;
  int align;
  bool operator<(const LtKey &o) const {
    return std::tie(ord, dt, tf32, ta, tb, m, n, k, lda, ldb, align) <
           std::tie(o.ord, o.dt, o.tf32, o.ta, o.tb, o.m, o.n, o.k, o.lda, o.ldb, o.align);
  }
};
struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t A = nullptr, B = nullptr, D = nullptr;
  cublasLtMatmulAlgo_t algo;
  bool ok = false;
};
std::mutex g_lt_mu;
std::map<LtKey, LtPlan> g_lt; // the chosen algorithm depends on the device: keyed by it

int alignment(const void *p) {
  uintptr_t v = (uintptr_t)p;
  int a = 256;
  while (a > 1 && (v % a)) a >>= 1;
  return a;
}

// Returns 1 when the Lt path ran, 0 when no algorithm fits (caller falls back), or an error.
int lt_linear(int dt, int64_t M, int64_t N, int64_t K, const Operand &x, const Operand &w, const void *bias, void *out,
              int *ran) {
  *ran = 0;
  if (too_big(M) || too_big(N) || too_big(K)) return DDPM_OK;
  int ord = current_ordinal();
  cudaStream_t s = stream();
  Handles *h;
  void *ws;
  DDPM_TRY(handles(ord, s, &h, &ws));
  int al = alignment(x.ptr);
  int a2 = alignment(w.ptr), a3 = alignment(out), a4 = alignment(bias);
  if (a2 < al) al = a2;
  if (a3 < al) al = a3;
  if (a4 < al) al = a4;
  LtKey key{ord, dt, dt == DDPM_FLOAT32 && ddpm_cuda_get_flag(DDPM_CUDA_FLAG_MATMUL_TF32), w.trans, x.trans, N, M, K,
            w.ld, x.ld, al};
  LtPlan plan;
  {
    std::lock_guard<std::mutex> lk(g_lt_mu);
    auto it = g_lt.find(key);
    if (it != g_lt.end()) plan = it->second;
  }
  if (!plan.desc) {
    cudaDataType_t ty = blas_type(dt);
    cublasComputeType_t ct = key.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    BLAS_TRY(cublasLtMatmulDescCreate(&plan.desc, ct, CUDA_R_32F), "linear (cuBLASLt)");
    cublasOperation_t ta = w.trans ? CUBLAS_OP_T : CUBLAS_OP_N, tb = x.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cudaDataType_t bty = ty;
    cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bty, sizeof bty);
    // stored (pre-op) shapes, column-major: A = w part (N x K, or K x N when transposed)
    BLAS_TRY(cublasLtMatrixLayoutCreate(&plan.A, ty, w.trans ? K : N, w.trans ? N : K, w.ld), "linear (cuBLASLt)");
    BLAS_TRY(cublasLtMatrixLayoutCreate(&plan.B, ty, x.trans ? M : K, x.trans ? K : M, x.ld), "linear (cuBLASLt)");
    BLAS_TRY(cublasLtMatrixLayoutCreate(&plan.D, ty, N, M, N), "linear (cuBLASLt)");
    cublasLtMatmulPreference_t pref;
    BLAS_TRY(cublasLtMatmulPreferenceCreate(&pref), "linear (cuBLASLt)");
    uint64_t wsz = kWorkspace;
    uint32_t a32 = (uint32_t)al;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a32, sizeof a32);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &a32, sizeof a32);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &a32, sizeof a32);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &a32, sizeof a32);
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    cublasStatus_t hs =
        cublasLtMatmulAlgoGetHeuristic(h->lt, plan.desc, plan.A, plan.B, plan.D, plan.D, pref, 1, &res, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    plan.ok = hs == CUBLAS_STATUS_SUCCESS && nres > 0;
    if (plan.ok) plan.algo = res.algo;
    std::lock_guard<std::mutex> lk(g_lt_mu);
    auto ins = g_lt.insert({key, plan});
    if (!ins.second) { // another thread won: keep its plan
      cublasLtMatmulDescDestroy(plan.desc);
      cublasLtMatrixLayoutDestroy(plan.A);
      cublasLtMatrixLayoutDestroy(plan.B);
      cublasLtMatrixLayoutDestroy(plan.D);
      plan = ins.first->second;
    }
  }
  if (!plan.ok) return DDPM_OK;
  cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
  float alpha = 1.0f, beta = 0.0f;
  BLAS_TRY(cublasLtMatmul(h->lt, plan.desc, &alpha, w.ptr, plan.A, x.ptr, plan.B, &beta, out, plan.D, out, plan.D,
                          &plan.algo, ws, kWorkspace, s),
           "linear (cuBLASLt)");
  *ran = 1;
  return DDPM_OK;
}

bool float_dtype(int dt) { return dt == DDPM_FLOAT32 || dt == DDPM_FLOAT64 || dt == DDPM_FLOAT16 || dt == DDPM_BFLOAT16; }

} // namespace

namespace ddpm_cu {
// Create the handles and the workspace of a stream before a graph captures on it (neither may be
// created during capture).
int blas_prepare(int ord, cudaStream_t s) {
  Handles *h;
  void *ws;
  return handles(ord, s, &h, &ws);
}
// The cuBLAS handle of this thread and device, bound to the current stream and its workspace
// (attention.cu runs its batched GEMMs through it).
int blas_handle(cublasHandle_t *out) {
  Handles *h;
  void *ws;
  DDPM_TRY(handles(current_ordinal(), stream(), &h, &ws));
  *out = h->blas;
  return DDPM_OK;
}
int blas_error(int status, const char *what, const char *file, int line) {
  return blas_fail((cublasStatus_t)status, what, file, line);
}
} // namespace ddpm_cu

// in[0] a [B,M,K], in[1] b [B,K,N] (batch strides may be 0); out [B,M,N] contiguous
DDPM_CU_KERNEL(BMM) {
  ddpm_tensor *a = c->in[0], *b = c->in[1], *o = c->out[0];
  int dt = o->dtype;
  if (!float_dtype(dt) || a->dtype != dt || b->dtype != dt) return no_dtype(c, a->dtype);
  int64_t B = o->shape[0], M = a->shape[1], K = a->shape[2], N = b->shape[2];
  if (B == 0 || M == 0 || N == 0) return DDPM_OK;
  if (K == 0) {
    CU_TRY(cudaMemsetAsync(ddpm_ptr(o), 0, (size_t)(B * M * N) * ddpm_dsize(dt), stream()), "bmm");
    return DDPM_OK;
  }
  Packed ta, tb;
  Operand oa, ob;
  DDPM_TRY(operand(c, a, M, K, a->strides[0], a->strides[1], a->strides[2], B, ta, &oa));
  DDPM_TRY(operand(c, b, K, N, b->strides[0], b->strides[1], b->strides[2], B, tb, &ob));
  return gemm("bmm", dt, B, M, N, K, oa, ob, ddpm_ptr(o), false);
}

// in[0] x [M,K], in[1] w [N,K], in[2] bias [N] or NULL; out [M,N] contiguous
DDPM_CU_KERNEL(LINEAR) {
  ddpm_tensor *x = c->in[0], *w = c->in[1], *bias = c->in[2], *o = c->out[0];
  int dt = o->dtype;
  if (!float_dtype(dt) || x->dtype != dt || w->dtype != dt || (bias && bias->dtype != dt)) return no_dtype(c, x->dtype);
  int64_t M = x->shape[0], K = x->shape[1], N = w->shape[0];
  if (M == 0 || N == 0) return DDPM_OK;
  cudaStream_t s = stream();
  if (K == 0) { // the product is empty: the output is the bias (or zeros)
    if (!bias) {
      CU_TRY(cudaMemsetAsync(ddpm_ptr(o), 0, (size_t)(M * N) * ddpm_dsize(dt), s), "linear");
      return DDPM_OK;
    }
  }
  Packed tx, tw;
  Operand ox, ow;
  if (K > 0) {
    DDPM_TRY(operand(c, x, M, K, 0, x->strides[0], x->strides[1], 1, tx, &ox));
    // w^T as a row-major [K, N] operand: strides swapped
    DDPM_TRY(operand(c, w, K, N, 0, w->strides[1], w->strides[0], 1, tw, &ow));
  }
  if (bias && K > 0 && dt != DDPM_FLOAT64 && bias->strides[0] == 1) {
    int ran = 0;
    DDPM_TRY(lt_linear(dt, M, N, K, ox, ow, ddpm_ptr(bias), ddpm_ptr(o), &ran));
    if (ran) return DDPM_OK;
  }
  if (bias) { // seed every row with the bias, then accumulate the product onto it
    int64_t shape[2] = {M, N}, strides[2] = {0, bias->strides[0]};
    ddpm_tensor *bv = nullptr;
    DDPM_TRY(ddpm_tensor_alias(&bv, bias, 2, shape, strides, bias->offset));
    int st = copy_strided(o, bv, c);
    ddpm_tensor_release(bv);
    DDPM_TRY(st);
    if (K == 0) return DDPM_OK;
  }
  return gemm("linear", dt, 1, M, N, K, ox, ow, ddpm_ptr(o), bias != nullptr);
}
