// elementwise.cu: the iteration setup shared by every elementwise kernel, and the unary and
// scalar ops (exp ... clamp).  Expressions follow engine/cpu/elementwise.c term for term, in the
// same compute types, so CUDA and CPU differ only by the last-ulp differences of the math
// libraries (and fused multiply-adds).
#include "elementwise.cuh"

namespace ddpm_cu {

void iter_init(ElemIter *it, int nops, ddpm_tensor *const *ops) {
  const ddpm_tensor *o = ops[0];
  int nd = o->ndim;
  it->nops = nops;
  it->numel = ddpm_shape_numel(nd, o->shape);
  int64_t st[EW_MAX_OPS][DDPM_MAX_DIMS];
  for (int k = 0; k < nops; k++) {
    const ddpm_tensor *t = ops[k];
    int off = nd - t->ndim;
    for (int d = 0; d < nd; d++) {
      int td = d - off;
      st[k][d] = (td < 0 || t->shape[td] == 1) ? 0 : t->strides[td];
    }
    it->base[k] = ddpm_ptr(t);
    it->esize[k] = ddpm_dsize(t->dtype);
  }
  // drop size-1 dims, merge neighbours contiguous for every operand
  int n = 0;
  for (int d = 0; d < nd; d++) {
    if (o->shape[d] == 1) continue;
    if (n > 0) {
      bool merge = true;
      for (int k = 0; k < nops; k++)
        if (it->stride[k][n - 1] != st[k][d] * o->shape[d]) merge = false;
      if (merge) {
        it->shape[n - 1] *= o->shape[d];
        for (int k = 0; k < nops; k++) it->stride[k][n - 1] = st[k][d];
        continue;
      }
    }
    it->shape[n] = o->shape[d];
    for (int k = 0; k < nops; k++) it->stride[k][n] = st[k][d];
    n++;
  }
  it->ndim = n;
}

bool iter_contiguous(const ElemIter &it) {
  if (it.ndim > 1) return false;
  if (it.ndim == 0) return true;
  for (int k = 0; k < it.nops; k++)
    if (it.stride[k][0] != 1) return false;
  return true;
}

} // namespace ddpm_cu

using namespace ddpm_cu;

#define UNARY_OP(NAME, EXPR)                                                     \
  struct NAME {                                                                  \
    template <typename C> __device__ __forceinline__ C operator()(C x, C p0, C p1) const { \
      return (C)(EXPR);                                                          \
    }                                                                            \
  };

// float-only ops (integer inputs are converted to float32 by the entry points)
UNARY_OP(OpExp, m::exp(x))
UNARY_OP(OpLog, m::log(x))
UNARY_OP(OpSqrt, m::sqrt(x))
UNARY_OP(OpRsqrt, (C)1 / m::sqrt(x))
UNARY_OP(OpSin, m::sin(x))
UNARY_OP(OpCos, m::cos(x))
UNARY_OP(OpTanh, m::tanh(x))
UNARY_OP(OpSigmoid, (C)1 / ((C)1 + m::exp(-x)))
UNARY_OP(OpSilu, x / ((C)1 + m::exp(-x)))
UNARY_OP(OpGeluErf, (C)0.5 * x * ((C)1 + m::erf(x * (C)0.70710678118654752440)))
UNARY_OP(OpGeluTanh, (C)0.5 * x * ((C)1 + m::tanh((C)0.7978845608028654 * (x + (C)0.044715 * x * x * x))))
UNARY_OP(OpFloor, m::floor(x))
UNARY_OP(OpCeil, m::ceil(x))
UNARY_OP(OpRound, m::rint(x))
UNARY_OP(OpDivS, x / p0)
UNARY_OP(OpRDivS, p0 / x)
UNARY_OP(OpRPowS, m::pow(p0, x))
// every dtype
UNARY_OP(OpNeg, -x)
UNARY_OP(OpAbs, x < 0 ? -x : x)
UNARY_OP(OpSign, (x > 0) - (x < 0))
UNARY_OP(OpRelu, x < 0 ? (C)0 : x)
UNARY_OP(OpAddS, x + p0)
UNARY_OP(OpMulS, x * p0)
UNARY_OP(OpPowS, m::pows(x, p0))
UNARY_OP(OpClamp, x < p0 ? p0 : (x > p1 ? p1 : x))

template <typename F> static int unary_float(ddpm_call *c, F f) {
  int dt = c->in[0]->dtype;
  switch (dt) {
    DDPM_CU_FLOAT_CASES(return run_unary<T, T>(c, f, c->f[0], c->f[1]))
  default: return no_dtype(c, dt);
  }
  return DDPM_OK;
}
template <typename F> static int unary_all(ddpm_call *c, F f) {
  int dt = c->in[0]->dtype;
  switch (dt) {
    DDPM_CU_FLOAT_CASES(return run_unary<T, T>(c, f, c->f[0], c->f[1]))
    DDPM_CU_INT_CASES(return run_unary<T, T>(c, f, c->f[0], c->f[1]))
  default: return no_dtype(c, dt);
  }
  return DDPM_OK;
}

DDPM_CU_KERNEL(EXP) { return unary_float(c, OpExp()); }
DDPM_CU_KERNEL(LOG) { return unary_float(c, OpLog()); }
DDPM_CU_KERNEL(SQRT) { return unary_float(c, OpSqrt()); }
DDPM_CU_KERNEL(RSQRT) { return unary_float(c, OpRsqrt()); }
DDPM_CU_KERNEL(SIN) { return unary_float(c, OpSin()); }
DDPM_CU_KERNEL(COS) { return unary_float(c, OpCos()); }
DDPM_CU_KERNEL(TANH) { return unary_float(c, OpTanh()); }
DDPM_CU_KERNEL(SIGMOID) { return unary_float(c, OpSigmoid()); }
DDPM_CU_KERNEL(SILU) { return unary_float(c, OpSilu()); }
DDPM_CU_KERNEL(GELU) { return c->i[0] ? unary_float(c, OpGeluTanh()) : unary_float(c, OpGeluErf()); }
DDPM_CU_KERNEL(FLOOR) { return unary_float(c, OpFloor()); }
DDPM_CU_KERNEL(CEIL) { return unary_float(c, OpCeil()); }
DDPM_CU_KERNEL(ROUND) { return unary_float(c, OpRound()); }
DDPM_CU_KERNEL(DIV_SCALAR) { return unary_float(c, OpDivS()); }
DDPM_CU_KERNEL(RDIV_SCALAR) { return unary_float(c, OpRDivS()); }
DDPM_CU_KERNEL(RPOW_SCALAR) { return unary_float(c, OpRPowS()); }
DDPM_CU_KERNEL(NEG) { return unary_all(c, OpNeg()); }
DDPM_CU_KERNEL(ABS) { return unary_all(c, OpAbs()); }
DDPM_CU_KERNEL(SIGN) { return unary_all(c, OpSign()); }
DDPM_CU_KERNEL(RELU) { return unary_all(c, OpRelu()); }
DDPM_CU_KERNEL(ADD_SCALAR) { return unary_all(c, OpAddS()); }
DDPM_CU_KERNEL(MUL_SCALAR) { return unary_all(c, OpMulS()); }
DDPM_CU_KERNEL(POW_SCALAR) { return unary_all(c, OpPowS()); }
DDPM_CU_KERNEL(CLAMP) { return unary_all(c, OpClamp()); }
