// conv_cudnn.cu: conv2d forward, backward-data and backward-filter through cuDNN (NCHW, groups,
// stride/padding/dilation as engine/src/ops_conv.c passes them).  The algorithm of each
// (shape, dtype, direction) is chosen once and cached: by measurement (cudnnFind*, when
// ddpm.backends.cudnn.benchmark is set) or by cuDNN's heuristics (the default); during CUDA graph
// capture nothing can be measured, so an uncached shape takes the heuristic choice.  Workspace
// comes from the caching allocator on the current stream.  float32 may use TF32 tensor cores
// (ddpm.backends.cudnn.allow_tf32, on by default as in PyTorch); half types accumulate in float32
// and run in NHWC (converted around the call), where cuDNN's fast tensor-core kernels are.
// (cuDNN 9 marks this descriptor API deprecated; it remains supported and is what every shape of
// the UNet needs.  The graph API would be the successor.)
#include "cuda_common.cuh"
#include <cudnn.h>
#include <array>
#include <map>
#include <mutex>
#include <tuple>

using namespace ddpm_cu;

namespace {

int dnn_fail(cudnnStatus_t s, const char *what, const char *file, int line) {
  int code = s == CUDNN_STATUS_ALLOC_FAILED ? DDPM_ERR_OOM : DDPM_ERR_BACKEND;
  return ddpm_fail_at(code, file, line, "%s: cuDNN error %s", what, cudnnGetErrorString(s));
}
#define DNN_TRY(expr, what)                                                      \
  do {                                                                           \
    cudnnStatus_t s_ = (expr);                                                   \
    if (s_ != CUDNN_STATUS_SUCCESS) return dnn_fail(s_, (what), __FILE__, __LINE__); \
  } while (0)

thread_local cudnnHandle_t tl_dnn[DDPM_CU_MAX_DEVICES];

int handle(cudnnHandle_t *out) {
  int ord = current_ordinal();
  if (!tl_dnn[ord]) DNN_TRY(cudnnCreate(&tl_dnn[ord]), "conv2d: creating the cuDNN handle");
  DNN_TRY(cudnnSetStream(tl_dnn[ord], stream()), "conv2d: cudnnSetStream");
  *out = tl_dnn[ord];
  return DDPM_OK;
}

cudnnDataType_t dnn_type(int dt) {
  switch (dt) {
  case DDPM_FLOAT64: return CUDNN_DATA_DOUBLE;
  case DDPM_FLOAT16: return CUDNN_DATA_HALF;
  case DDPM_BFLOAT16: return CUDNN_DATA_BFLOAT16;
  default: return CUDNN_DATA_FLOAT;
  }
}

enum Dir { FWD = 0, BWD_DATA = 1, BWD_FILTER = 2 };

struct Key {
  int ord, dir, dt, tf32;
  std::array<int64_t, 14> v; // N C H W O kh kw sh sw ph pw dh dw groups (an array compares by value)
  bool operator<(const Key &o) const { return std::tie(ord, dir, dt, tf32, v) < std::tie(o.ord, o.dir, o.dt, o.tf32, o.v); }
};
struct Choice {
  int algo;
  size_t ws;
  cudnnMathType_t math;
};
std::mutex g_mu;
std::map<Key, Choice> g_cache;

// The descriptors of one call; destroyed with it.
struct Descs {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  ~Descs() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

struct Geom {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo;
  const int64_t *i; // stride, padding, dilation, groups
};

bool fits_int(const Geom &g) {
  const int64_t m = INT32_MAX;
  return g.N * g.C * g.H * g.W < m && g.N * g.O * g.Ho * g.Wo < m && g.O * g.C * g.kh * g.kw < m;
}

// Half types run in NHWC, where cuDNN's tensor-core kernels live (NCHW half convolutions are
// several times slower than float32 ones); the callers convert layouts around the call.
bool use_nhwc(int dt) { return dt == DDPM_FLOAT16 || dt == DDPM_BFLOAT16; }

int make_descs(Descs &d, const Geom &g, int dt, cudnnMathType_t math) {
  cudnnDataType_t ty = dnn_type(dt);
  cudnnTensorFormat_t fmt = use_nhwc(dt) ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
  DNN_TRY(cudnnCreateTensorDescriptor(&d.x), "conv2d");
  DNN_TRY(cudnnCreateTensorDescriptor(&d.y), "conv2d");
  DNN_TRY(cudnnCreateFilterDescriptor(&d.w), "conv2d");
  DNN_TRY(cudnnCreateConvolutionDescriptor(&d.conv), "conv2d");
  DNN_TRY(cudnnSetTensor4dDescriptor(d.x, fmt, ty, (int)g.N, (int)g.C, (int)g.H, (int)g.W), "conv2d input");
  DNN_TRY(cudnnSetTensor4dDescriptor(d.y, fmt, ty, (int)g.N, (int)g.O, (int)g.Ho, (int)g.Wo), "conv2d output");
  DNN_TRY(cudnnSetFilter4dDescriptor(d.w, ty, fmt, (int)g.O, (int)(g.C / g.i[6]), (int)g.kh, (int)g.kw), "conv2d weight");
  cudnnDataType_t acc = dt == DDPM_FLOAT64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  DNN_TRY(cudnnSetConvolution2dDescriptor(d.conv, (int)g.i[2], (int)g.i[3], (int)g.i[0], (int)g.i[1], (int)g.i[4],
                                          (int)g.i[5], CUDNN_CROSS_CORRELATION, acc),
          "conv2d parameters");
  DNN_TRY(cudnnSetConvolutionGroupCount(d.conv, (int)g.i[6]), "conv2d groups");
  DNN_TRY(cudnnSetConvolutionMathType(d.conv, math), "conv2d math type");
  return DDPM_OK;
}

cudnnMathType_t math_for(int dt) {
  if (dt == DDPM_FLOAT16 || dt == DDPM_BFLOAT16) return CUDNN_TENSOR_OP_MATH;
  if (dt == DDPM_FLOAT32 && !ddpm_cuda_get_flag(DDPM_CUDA_FLAG_CUDNN_TF32)) return CUDNN_FMA_MATH;
  return CUDNN_DEFAULT_MATH;
}

// Find or choose the algorithm for (g, dir); the pointers are the call's real buffers (cudnnFind
// runs the candidates on them; outputs are overwritten by the real call afterwards).
int choose(cudnnHandle_t h, Descs &d, const Geom &g, int dt, Dir dir, const void *x, const void *w, void *y,
           Choice *out) {
  Key k{current_ordinal(), dir, dt, ddpm_cuda_get_flag(DDPM_CUDA_FLAG_CUDNN_TF32),
        {g.N, g.C, g.H, g.W, g.O, g.kh, g.kw, g.i[0], g.i[1], g.i[2], g.i[3], g.i[4], g.i[5], g.i[6]}};
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_cache.find(k);
    if (it != g_cache.end()) {
      *out = it->second;
      return DDPM_OK;
    }
  }
  bool measure = ddpm_cuda_get_flag(DDPM_CUDA_FLAG_CUDNN_BENCHMARK) && !stream_capturing(stream());
  const int MAXA = 16;
  int n = 0;
  Choice best{-1, 0, math_for(dt)};
  size_t ws_cap = (size_t)1 << 30; // never pick an algorithm needing more than 1 GiB of scratch
  if (dir == FWD) {
    cudnnConvolutionFwdAlgoPerf_t perf[MAXA];
    if (measure) {
      size_t ws = 0;
      Scratch s;
      // let cuDNN try everything that fits in the scratch it may use
      if (s.get(ws = (size_t)256 << 20, current_ordinal())) ws = 0;
      DNN_TRY(cudnnFindConvolutionForwardAlgorithmEx(h, d.x, x, d.w, w, d.conv, d.y, y, MAXA, &n, perf, s.p, ws),
              "conv2d: cudnnFind");
    } else {
      DNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, MAXA, &n, perf), "conv2d: heuristics");
    }
    for (int a = 0; a < n; a++)
      if (perf[a].status == CUDNN_STATUS_SUCCESS && perf[a].memory <= ws_cap) {
        best = {(int)perf[a].algo, perf[a].memory, perf[a].mathType};
        break;
      }
  } else if (dir == BWD_DATA) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[MAXA];
    if (measure) {
      size_t ws = 0;
      Scratch s;
      if (s.get(ws = (size_t)256 << 20, current_ordinal())) ws = 0;
      DNN_TRY(cudnnFindConvolutionBackwardDataAlgorithmEx(h, d.w, w, d.y, x, d.conv, d.x, y, MAXA, &n, perf, s.p, ws),
              "conv2d backward: cudnnFind");
    } else {
      DNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x, MAXA, &n, perf),
              "conv2d backward: heuristics");
    }
    for (int a = 0; a < n; a++)
      if (perf[a].status == CUDNN_STATUS_SUCCESS && perf[a].memory <= ws_cap) {
        best = {(int)perf[a].algo, perf[a].memory, perf[a].mathType};
        break;
      }
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[MAXA];
    if (measure) {
      size_t ws = 0;
      Scratch s;
      if (s.get(ws = (size_t)256 << 20, current_ordinal())) ws = 0;
      DNN_TRY(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, d.x, x, d.y, w, d.conv, d.w, y, MAXA, &n, perf, s.p, ws),
              "conv2d backward: cudnnFind");
    } else {
      DNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w, MAXA, &n, perf),
              "conv2d backward: heuristics");
    }
    for (int a = 0; a < n; a++)
      if (perf[a].status == CUDNN_STATUS_SUCCESS && perf[a].memory <= ws_cap) {
        best = {(int)perf[a].algo, perf[a].memory, perf[a].mathType};
        break;
      }
  }
  if (best.algo < 0)
    return DDPM_FAIL(DDPM_ERR_BACKEND, "conv2d: cuDNN offers no algorithm for input [%lld, %lld, %lld, %lld], weight "
                     "[%lld, %lld, %lld, %lld] in %s", (long long)g.N, (long long)g.C, (long long)g.H, (long long)g.W,
                     (long long)g.O, (long long)(g.C / g.i[6]), (long long)g.kh, (long long)g.kw, ddpm_dname(dt));
  std::lock_guard<std::mutex> lk(g_mu);
  g_cache[k] = best;
  *out = best;
  return DDPM_OK;
}

int float_dt(const ddpm_call *c, int dt) {
  if (dt == DDPM_FLOAT32 || dt == DDPM_FLOAT64 || dt == DDPM_FLOAT16 || dt == DDPM_BFLOAT16) return DDPM_OK;
  return no_dtype(c, dt);
}

// alpha/beta are float for float/half data and double for double data (cuDNN's rule)
struct Scale {
  float f0 = 0, f1 = 1;
  double d0 = 0, d1 = 1;
  bool dbl;
  explicit Scale(int dt) : dbl(dt == DDPM_FLOAT64) {}
  const void *one() const { return dbl ? (const void *)&d1 : (const void *)&f1; }
  const void *zero() const { return dbl ? (const void *)&d0 : (const void *)&f0; }
};

// out = bias broadcast over (n, h, w), or zero
int fill_bias(const ddpm_call *c, ddpm_tensor *y, const ddpm_tensor *b) {
  if (!b) {
    CU_TRY(cudaMemsetAsync(ddpm_ptr(y), 0, (size_t)ddpm_tensor_numel(y) * ddpm_dsize(y->dtype), stream()), "conv2d");
    return DDPM_OK;
  }
  int64_t st[4] = {0, 1, 0, 0};
  ddpm_tensor *bv = nullptr;
  DDPM_TRY(ddpm_tensor_alias(&bv, b, 4, y->shape, st, b->offset));
  int r = copy_strided(y, bv, c);
  ddpm_tensor_release(bv);
  return r;
}

// A contiguous NCHW tensor as NHWC, and back (temporaries held until the scope ends; the stream
// orders their reuse after the cuDNN call that reads them).
struct Held {
  ddpm_tensor *t = nullptr;
  ~Held() { ddpm_tensor_release(t); }
};
int nhwc_view(const ddpm_tensor *t, ddpm_tensor **view) { // t [A,B,C,D] seen as [A,C,D,B]
  int64_t A = t->shape[0], B = t->shape[1], C = t->shape[2], D = t->shape[3];
  int64_t shape[4] = {A, C, D, B}, st[4] = {B * C * D, D, 1, C * D};
  return ddpm_tensor_alias(view, t, 4, shape, st, t->offset);
}
int to_nhwc(const ddpm_call *c, const ddpm_tensor *t, Held &h) {
  ddpm_tensor *v = nullptr;
  DDPM_TRY(nhwc_view(t, &v));
  int st = ddpm_tensor_new(&h.t, 4, v->shape, t->dtype, t->device);
  if (!st) st = copy_strided(h.t, v, c);
  ddpm_tensor_release(v);
  return st;
}
int new_nhwc(const ddpm_tensor *like, Held &h) { // uninitialised NHWC twin of an NCHW tensor
  int64_t shape[4] = {like->shape[0], like->shape[2], like->shape[3], like->shape[1]};
  return ddpm_tensor_new(&h.t, 4, shape, like->dtype, like->device);
}
int from_nhwc(const ddpm_call *c, const ddpm_tensor *src, ddpm_tensor *dst) {
  ddpm_tensor *v = nullptr;
  DDPM_TRY(nhwc_view(dst, &v));
  int st = copy_strided(v, src, c);
  ddpm_tensor_release(v);
  return st;
}

// y += bias over (n, h, w), with the elementwise ADD kernel (every dtype, stream-ordered)
int add_bias(const ddpm_call *c, ddpm_tensor *y, const ddpm_tensor *b) {
  int64_t shape[4] = {1, b->shape[0], 1, 1}, st[4] = {0, b->strides[0], 0, 0};
  ddpm_tensor *bv = nullptr;
  DDPM_TRY(ddpm_tensor_alias(&bv, b, 4, shape, st, b->offset));
  ddpm_call a = {};
  a.op = DDPM_OP_ADD;
  a.nin = 2;
  a.nout = 1;
  a.in[0] = y;
  a.in[1] = bv;
  a.out[0] = y;
  int r = cuda_ADD(&a);
  ddpm_tensor_release(bv);
  return r;
}

// gb = sum of gy over (n, h, w), with the reduction kernel (double accumulation, as the CPU)
int bias_grad(const ddpm_call *c, ddpm_tensor *gy, ddpm_tensor *gb) {
  int64_t shape[4] = {1, gb->shape[0], 1, 1}, st[4] = {gb->shape[0], 1, 1, 1};
  ddpm_tensor *gv = nullptr;
  DDPM_TRY(ddpm_tensor_alias(&gv, gb, 4, shape, st, gb->offset));
  ddpm_call r = {};
  r.op = DDPM_OP_SUM;
  r.nin = 1;
  r.nout = 1;
  r.in[0] = gy;
  r.out[0] = gv;
  r.i[0] = 1 | 4 | 8;
  int rc = cuda_SUM(&r);
  ddpm_tensor_release(gv);
  return rc;
}

} // namespace

namespace ddpm_cu {
// graph.cu: the handle cannot be created while a graph captures
int dnn_prepare() {
  cudnnHandle_t h;
  return handle(&h);
}
} // namespace ddpm_cu

// in[0] x [N,C,H,W], in[1] w [O,C/g,kh,kw], in[2] bias [O] or NULL; out[0] y [N,O,Ho,Wo]
DDPM_CU_KERNEL(CONV2D) {
  ddpm_tensor *x = c->in[0], *w = c->in[1], *b = c->in[2], *y = c->out[0];
  DDPM_TRY(float_dt(c, x->dtype));
  Geom g{x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2], w->shape[3], y->shape[2],
         y->shape[3], c->i};
  if (ddpm_tensor_numel(y) == 0) return DDPM_OK;
  if (g.C == 0 || g.kh * g.kw == 0) return fill_bias(c, y, b);
  if (!fits_int(g)) return DDPM_FAIL(DDPM_ERR_SHAPE, "conv2d: tensors above 2^31 elements are not supported on CUDA");
  cudnnHandle_t h;
  DDPM_TRY(handle(&h));
  Descs d;
  DDPM_TRY(make_descs(d, g, x->dtype, math_for(x->dtype)));
  const void *xp = ddpm_ptr(x), *wp = ddpm_ptr(w);
  void *yp = ddpm_ptr(y);
  Held xh, wh, yh;
  if (use_nhwc(x->dtype)) {
    DDPM_TRY(to_nhwc(c, x, xh));
    DDPM_TRY(to_nhwc(c, w, wh));
    DDPM_TRY(new_nhwc(y, yh));
    xp = ddpm_ptr(xh.t);
    wp = ddpm_ptr(wh.t);
    yp = ddpm_ptr(yh.t);
  }
  Choice ch;
  DDPM_TRY(choose(h, d, g, x->dtype, FWD, xp, wp, yp, &ch));
  DNN_TRY(cudnnSetConvolutionMathType(d.conv, ch.math), "conv2d math type");
  Scratch ws;
  if (ch.ws) DDPM_TRY(ws.get(ch.ws, current_ordinal()));
  Scale s(x->dtype);
  DNN_TRY(cudnnConvolutionForward(h, s.one(), d.x, xp, d.w, wp, d.conv, (cudnnConvolutionFwdAlgo_t)ch.algo, ws.p, ch.ws,
                                  s.zero(), d.y, yp),
          "conv2d");
  if (yh.t) DDPM_TRY(from_nhwc(c, yh.t, y));
  if (b) return add_bias(c, y, b);
  return DDPM_OK;
}

// in[0] gy [N,O,Ho,Wo], in[1] w; out[0] gx [N,C,H,W]
DDPM_CU_KERNEL(CONV2D_BWD_INPUT) {
  ddpm_tensor *gy = c->in[0], *w = c->in[1], *gx = c->out[0];
  DDPM_TRY(float_dt(c, gy->dtype));
  Geom g{gx->shape[0], gx->shape[1], gx->shape[2], gx->shape[3], w->shape[0], w->shape[2], w->shape[3], gy->shape[2],
         gy->shape[3], c->i};
  if (ddpm_tensor_numel(gx) == 0) return DDPM_OK;
  if (ddpm_tensor_numel(gy) == 0 || g.O == 0 || g.kh * g.kw == 0) {
    CU_TRY(cudaMemsetAsync(ddpm_ptr(gx), 0, (size_t)ddpm_tensor_numel(gx) * ddpm_dsize(gx->dtype), stream()),
           "conv2d backward");
    return DDPM_OK;
  }
  if (!fits_int(g)) return DDPM_FAIL(DDPM_ERR_SHAPE, "conv2d backward: tensors above 2^31 elements are not supported on CUDA");
  cudnnHandle_t h;
  DDPM_TRY(handle(&h));
  Descs d;
  DDPM_TRY(make_descs(d, g, gy->dtype, math_for(gy->dtype)));
  const void *gyp = ddpm_ptr(gy), *wp = ddpm_ptr(w);
  void *gxp = ddpm_ptr(gx);
  Held gyh, wh, gxh;
  if (use_nhwc(gy->dtype)) {
    DDPM_TRY(to_nhwc(c, gy, gyh));
    DDPM_TRY(to_nhwc(c, w, wh));
    DDPM_TRY(new_nhwc(gx, gxh));
    gyp = ddpm_ptr(gyh.t);
    wp = ddpm_ptr(wh.t);
    gxp = ddpm_ptr(gxh.t);
  }
  Choice ch;
  DDPM_TRY(choose(h, d, g, gy->dtype, BWD_DATA, gyp, wp, gxp, &ch));
  DNN_TRY(cudnnSetConvolutionMathType(d.conv, ch.math), "conv2d backward math type");
  Scratch ws;
  if (ch.ws) DDPM_TRY(ws.get(ch.ws, current_ordinal()));
  Scale s(gy->dtype);
  DNN_TRY(cudnnConvolutionBackwardData(h, s.one(), d.w, wp, d.y, gyp, d.conv, (cudnnConvolutionBwdDataAlgo_t)ch.algo, ws.p,
                                       ch.ws, s.zero(), d.x, gxp),
          "conv2d backward (input)");
  if (gxh.t) DDPM_TRY(from_nhwc(c, gxh.t, gx));
  return DDPM_OK;
}

// in[0] gy, in[1] x; out[0] gw [O,C/g,kh,kw], out[1] gbias [O] or NULL
DDPM_CU_KERNEL(CONV2D_BWD_WEIGHT) {
  ddpm_tensor *gy = c->in[0], *x = c->in[1], *gw = c->out[0], *gb = c->out[1];
  DDPM_TRY(float_dt(c, gy->dtype));
  Geom g{x->shape[0], x->shape[1], x->shape[2], x->shape[3], gw->shape[0], gw->shape[2], gw->shape[3], gy->shape[2],
         gy->shape[3], c->i};
  cudaStream_t st = stream();
  bool empty = g.N == 0 || g.Ho * g.Wo == 0;
  if (empty || ddpm_tensor_numel(gw) == 0) {
    if (ddpm_tensor_numel(gw))
      CU_TRY(cudaMemsetAsync(ddpm_ptr(gw), 0, (size_t)ddpm_tensor_numel(gw) * ddpm_dsize(gw->dtype), st), "conv2d backward");
    if (gb && empty)
      CU_TRY(cudaMemsetAsync(ddpm_ptr(gb), 0, (size_t)ddpm_tensor_numel(gb) * ddpm_dsize(gb->dtype), st), "conv2d backward");
    if (empty || !gb) return DDPM_OK;
    return bias_grad(c, gy, gb); // no weights (no input channels): only the bias has a gradient
  }
  if (!fits_int(g)) return DDPM_FAIL(DDPM_ERR_SHAPE, "conv2d backward: tensors above 2^31 elements are not supported on CUDA");
  cudnnHandle_t h;
  DDPM_TRY(handle(&h));
  Descs d;
  DDPM_TRY(make_descs(d, g, gy->dtype, math_for(gy->dtype)));
  Scale s(gy->dtype);
  if (ddpm_tensor_numel(gw)) {
    const void *xp = ddpm_ptr(x), *gyp = ddpm_ptr(gy);
    void *gwp = ddpm_ptr(gw);
    Held xh, gyh, gwh;
    if (use_nhwc(gy->dtype)) {
      DDPM_TRY(to_nhwc(c, x, xh));
      DDPM_TRY(to_nhwc(c, gy, gyh));
      DDPM_TRY(new_nhwc(gw, gwh));
      xp = ddpm_ptr(xh.t);
      gyp = ddpm_ptr(gyh.t);
      gwp = ddpm_ptr(gwh.t);
    }
    Choice ch;
    DDPM_TRY(choose(h, d, g, gy->dtype, BWD_FILTER, xp, gyp, gwp, &ch));
    DNN_TRY(cudnnSetConvolutionMathType(d.conv, ch.math), "conv2d backward math type");
    Scratch ws;
    if (ch.ws) DDPM_TRY(ws.get(ch.ws, current_ordinal()));
    DNN_TRY(cudnnConvolutionBackwardFilter(h, s.one(), d.x, xp, d.y, gyp, d.conv, (cudnnConvolutionBwdFilterAlgo_t)ch.algo,
                                           ws.p, ch.ws, s.zero(), d.w, gwp),
            "conv2d backward (weight)");
    if (gwh.t) DDPM_TRY(from_nhwc(c, gwh.t, gw));
  }
  if (gb) return bias_grad(c, gy, gb);
  return DDPM_OK;
}
