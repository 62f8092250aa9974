// binary.cu: binary arithmetic, comparisons, where, and the fused activation backward
// (g * f'(x)), with the CPU kernels' expressions and NaN rules (maximum/minimum propagate NaN).
#include "elementwise.cuh"

using namespace ddpm_cu;

#define BINARY_OP(NAME, EXPR)                                                               \
  struct NAME {                                                                             \
    template <typename C> __device__ __forceinline__ C operator()(C x, C y) const { return (C)(EXPR); } \
  };
#define NANMAX(x, y) ((x) != (x) ? (x) : (y) != (y) ? (y) : (x) > (y) ? (x) : (y))
#define NANMIN(x, y) ((x) != (x) ? (x) : (y) != (y) ? (y) : (x) < (y) ? (x) : (y))
BINARY_OP(OpAdd, x + y)
BINARY_OP(OpSub, x - y)
BINARY_OP(OpMul, x * y)
BINARY_OP(OpDiv, x / y)
BINARY_OP(OpPow, m::pow(x, y))
BINARY_OP(OpMax, NANMAX(x, y))
BINARY_OP(OpMin, NANMIN(x, y))

#define CMP_OP(NAME, EXPR)                                                                   \
  struct NAME {                                                                              \
    template <typename C> __device__ __forceinline__ int64_t operator()(C x, C y) const { return (EXPR); } \
  };
CMP_OP(OpEq, x == y)
CMP_OP(OpNe, x != y)
CMP_OP(OpLt, x < y)
CMP_OP(OpLe, x <= y)
CMP_OP(OpGt, x > y)
CMP_OP(OpGe, x >= y)

template <typename F> static int binary_all(ddpm_call *c, F f) {
  int dt = c->in[0]->dtype;
  switch (dt) {
    DDPM_CU_FLOAT_CASES(return run_binary<T, T>(c, f))
    DDPM_CU_INT_CASES(return run_binary<T, T>(c, f))
  default: return no_dtype(c, dt);
  }
  return DDPM_OK;
}
template <typename F> static int binary_float(ddpm_call *c, F f) {
  int dt = c->in[0]->dtype;
  switch (dt) {
    DDPM_CU_FLOAT_CASES(return run_binary<T, T>(c, f))
  default: return no_dtype(c, dt);
  }
  return DDPM_OK;
}
template <typename F> static int compare(ddpm_call *c, F f) {
  int dt = c->in[0]->dtype;
  switch (dt) {
    DDPM_CU_FLOAT_CASES(return run_binary<Bool8, T>(c, f))
    DDPM_CU_INT_CASES(return run_binary<Bool8, T>(c, f))
  default: return no_dtype(c, dt);
  }
  return DDPM_OK;
}

DDPM_CU_KERNEL(ADD) { return binary_all(c, OpAdd()); }
DDPM_CU_KERNEL(SUB) { return binary_all(c, OpSub()); }
DDPM_CU_KERNEL(MUL) { return binary_all(c, OpMul()); }
DDPM_CU_KERNEL(DIV) { return binary_float(c, OpDiv()); }
DDPM_CU_KERNEL(POW) { return binary_all(c, OpPow()); }
DDPM_CU_KERNEL(MAXIMUM) { return binary_all(c, OpMax()); }
DDPM_CU_KERNEL(MINIMUM) { return binary_all(c, OpMin()); }
DDPM_CU_KERNEL(EQ) { return compare(c, OpEq()); }
DDPM_CU_KERNEL(NE) { return compare(c, OpNe()); }
DDPM_CU_KERNEL(LT) { return compare(c, OpLt()); }
DDPM_CU_KERNEL(LE) { return compare(c, OpLe()); }
DDPM_CU_KERNEL(GT) { return compare(c, OpGt()); }
DDPM_CU_KERNEL(GE) { return compare(c, OpGe()); }

// ---- where: out = cond ? a : b, moved as raw words of the element size -------------------------
template <typename W>
__global__ void k_where(OffCalc<4> oc, uint32_t n, W *out, const uint8_t *cond, const W *a, const W *b) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int64_t off[4];
    oc.get(i, off);
    out[off[0]] = cond[off[1]] ? a[off[2]] : b[off[3]];
  }
}

template <typename W> static int run_where(ddpm_call *c) {
  ddpm_tensor *ops[4] = {c->out[0], c->in[0], c->in[1], c->in[2]};
  ElemIter it;
  iter_init(&it, 4, ops);
  cudaStream_t s = stream();
  return for_each_piece(it, [&](const ElemIter &p) {
    k_where<W><<<blocks_for(p.numel, EW_THREADS), EW_THREADS, 0, s>>>(make_offcalc<4>(p), (uint32_t)p.numel,
                                                                       (W *)p.base[0], (const uint8_t *)p.base[1],
                                                                       (const W *)p.base[2], (const W *)p.base[3]);
    return DDPM_OK;
  });
}

DDPM_CU_KERNEL(WHERE) {
  switch (ddpm_dsize(c->out[0]->dtype)) {
  case 1: return run_where<uint8_t>(c);
  case 2: return run_where<uint16_t>(c);
  case 4: return run_where<uint32_t>(c);
  default: return run_where<uint64_t>(c);
  }
}

// ---- activation backward: out = g * f'(x), where x is the forward input for silu, gelu, log, sin,
// cos and abs, and the forward output for sigmoid, tanh, relu, sqrt and rsqrt (as on the CPU) ----
namespace {
template <typename C> __device__ __forceinline__ C silu_d(C x) {
  C s = (C)1 / ((C)1 + m::exp(-x));
  return s * ((C)1 + x * ((C)1 - s));
}
template <typename C> __device__ __forceinline__ C gelu_erf_d(C x) {
  C cdf = (C)0.5 * ((C)1 + m::erf(x * (C)0.70710678118654752440));
  C pdf = m::exp((C)-0.5 * x * x) * (C)0.3989422804014327;
  return cdf + x * pdf;
}
template <typename C> __device__ __forceinline__ C gelu_tanh_d(C x) {
  const C kb = (C)0.7978845608028654, kk = (C)0.044715;
  C xs = x * x, inner = kb * (x + kk * xs * x), t = m::tanh(inner);
  return (C)0.5 * ((C)1 + t) + (C)0.5 * x * ((C)1 - t * t) * kb * ((C)1 + (C)3 * kk * xs);
}
} // namespace
#define ACT_OP(NAME, EXPR)                                                                  \
  struct NAME {                                                                             \
    template <typename C> __device__ __forceinline__ C operator()(C g, C x) const { return (C)(EXPR); } \
  };
ACT_OP(BwSilu, g * silu_d(x))
ACT_OP(BwGeluErf, g * gelu_erf_d(x))
ACT_OP(BwGeluTanh, g * gelu_tanh_d(x))
ACT_OP(BwSigmoid, g * x * ((C)1 - x))
ACT_OP(BwTanh, g * ((C)1 - x * x))
ACT_OP(BwRelu, x > 0 ? g : (C)0)
ACT_OP(BwSqrt, g / (x + x))
ACT_OP(BwRsqrt, g * x * x * x * (C)(-0.5))
ACT_OP(BwLog, g / x)
ACT_OP(BwSin, g * m::cos(x))
ACT_OP(BwCos, -g * m::sin(x))
ACT_OP(BwAbs, x > 0 ? g : (x < 0 ? -g : (C)0))

DDPM_CU_KERNEL(ACT_BWD) {
  switch ((int)c->i[0]) {
  case DDPM_OP_SILU: return binary_float(c, BwSilu());
  case DDPM_OP_GELU: return c->i[1] ? binary_float(c, BwGeluTanh()) : binary_float(c, BwGeluErf());
  case DDPM_OP_SIGMOID: return binary_float(c, BwSigmoid());
  case DDPM_OP_TANH: return binary_float(c, BwTanh());
  case DDPM_OP_RELU: return binary_float(c, BwRelu());
  case DDPM_OP_SQRT: return binary_float(c, BwSqrt());
  case DDPM_OP_RSQRT: return binary_float(c, BwRsqrt());
  case DDPM_OP_LOG: return binary_float(c, BwLog());
  case DDPM_OP_SIN: return binary_float(c, BwSin());
  case DDPM_OP_COS: return binary_float(c, BwCos());
  case DDPM_OP_ABS: return binary_float(c, BwAbs());
  default:
    return DDPM_FAIL(DDPM_ERR_INTERNAL, "activation_backward: no derivative for %s", ddpm_opname((int)c->i[0]));
  }
}
