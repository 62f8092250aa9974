// cuda_common.cuh: what every CUDA source of the backend shares: the kernel declarations
// generated from ops.def, the current device/stream, error reporting, scratch memory, dtype
// traits and dispatch.
#ifndef DDPM_CUDA_COMMON_CUH
#define DDPM_CUDA_COMMON_CUH
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>
extern "C" {
#include "internal.h"
}

// Every K/N op may have a CUDA kernel cuda_NAME.  The declarations are weak: an op whose kernel
// no file defines (ops other families add later) leaves a NULL table entry, which dispatch turns
// into DDPM_ERR_UNSUPPORTED naming the op.  tests/c/test_cuda_abi.c checks the core ops all have one.
#define DDPM_CU_DECL_K(n) extern "C" __attribute__((weak, visibility("hidden"))) int cuda_##n(ddpm_call *c);
#define DDPM_CU_DECL_N(n) DDPM_CU_DECL_K(n)
#define DDPM_CU_DECL_V(n)
#define DDPM_OP(n, s, kind) DDPM_CU_DECL_##kind(n)
#include "ops.def"
#undef DDPM_OP

// Definitions use this so the symbol is strong and hidden.
#define DDPM_CU_KERNEL(n) extern "C" __attribute__((visibility("hidden"))) int cuda_##n(ddpm_call *c)

#define DDPM_CU_MAX_DEVICES 16

namespace ddpm_cu {

// ---- devices and streams (backend_cuda.cu, stream.cu) ------------------------------------------
int ordinal_of(int device);                 // DDPM device id -> CUDA ordinal
int guard_device(int ordinal);              // make ordinal current for this thread (cached)
int current_ordinal();
cudaStream_t stream();                      // current stream of the current device
cudaStream_t stream_for(int ordinal);       // current stream of a given device
bool stream_capturing(cudaStream_t s);
int device_sm_count(int ordinal);
const cudaDeviceProp &props(int ordinal);

// ---- errors ---------------------------------------------------------------------------------------
// A CUDA failure as a status with the library's message and what was being done.
int fail(cudaError_t e, const char *what, const char *file, int line);
#define CU_TRY(expr, what)                                                   \
  do {                                                                       \
    cudaError_t e_ = (expr);                                                 \
    if (e_ != cudaSuccess) return ddpm_cu::fail(e_, (what), __FILE__, __LINE__); \
  } while (0)
// After launching kernels: report a launch failure (bad configuration, sticky errors).
#define CU_LAUNCHED(what) CU_TRY(cudaPeekAtLastError(), (what))

// Deferred device-side errors (an index out of range found by a kernel): kernels set a word in
// device memory; it is read at the next synchronisation point and turned into an error.
struct DevErr {
  int code;      // 0: none
  int op;        // op id
  long long a, b; // details (index, size)
};
DevErr *deverr_ptr(int ordinal);            // device pointer of this device's word
int deverr_check(int ordinal);              // read (after a sync), report and clear

// ---- memory (caching_allocator.cu) ----------------------------------------------------------------
void *alloc(size_t nbytes, int ordinal);    // NULL with the error set
void free(void *p, int ordinal);
// Scratch for one op, returned to the allocator when the scope ends (stream order keeps it safe).
struct Scratch {
  void *p = nullptr;
  int ord = 0;
  Scratch() = default;
  Scratch(const Scratch &) = delete;
  Scratch &operator=(const Scratch &) = delete;
  int get(size_t n, int ordinal) {
    ord = ordinal;
    p = alloc(n, ordinal);
    return p ? DDPM_OK : DDPM_ERR_OOM;
  }
  ~Scratch() {
    if (p) ddpm_cu::free(p, ord);
  }
};

// ---- launch geometry --------------------------------------------------------------------------------
static inline unsigned blocks_for(int64_t n, int threads, int64_t cap = 65535LL * 32) {
  int64_t b = (n + threads - 1) / threads;
  if (b > cap) b = cap;
  return (unsigned)(b < 1 ? 1 : b);
}

// ---- dtypes ------------------------------------------------------------------------------------------------
// Storage type -> compute type, exactly as the CPU kernels compute: half types in float, float64 in
// double, integers (and bool) in int64.
template <typename T> struct Traits;
template <> struct Traits<float> {
  using C = float;
  static __device__ __forceinline__ float load(float v) { return v; }
  static __device__ __forceinline__ float store(float v) { return v; }
};
template <> struct Traits<double> {
  using C = double;
  static __device__ __forceinline__ double load(double v) { return v; }
  static __device__ __forceinline__ double store(double v) { return v; }
};
template <> struct Traits<__half> {
  using C = float;
  static __device__ __forceinline__ float load(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half store(float v) { return __float2half_rn(v); }
};
template <> struct Traits<__nv_bfloat16> {
  using C = float;
  static __device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};
template <> struct Traits<int64_t> {
  using C = int64_t;
  static __device__ __forceinline__ int64_t load(int64_t v) { return v; }
  static __device__ __forceinline__ int64_t store(int64_t v) { return v; }
};
template <> struct Traits<int32_t> {
  using C = int64_t;
  static __device__ __forceinline__ int64_t load(int32_t v) { return v; }
  static __device__ __forceinline__ int32_t store(int64_t v) { return (int32_t)v; }
};
template <> struct Traits<uint8_t> {
  using C = int64_t;
  static __device__ __forceinline__ int64_t load(uint8_t v) { return v; }
  static __device__ __forceinline__ uint8_t store(int64_t v) { return (uint8_t)v; }
};
// bool shares uint8_t storage; a distinct tag type keeps its semantics (any nonzero is true)
struct Bool8 {
  uint8_t v;
};
template <> struct Traits<Bool8> {
  using C = int64_t;
  static __device__ __forceinline__ int64_t load(Bool8 v) { return v.v; }
  static __device__ __forceinline__ Bool8 store(int64_t v) { return Bool8{(uint8_t)(v != 0)}; }
};

// Parameter conversion as the CPU does it (CV_F, CV_D, CV_I): float for float types, double for
// float64, saturating int64 for integers.
template <typename C> __host__ __device__ inline C param_as(double v);
template <> __host__ __device__ inline float param_as<float>(double v) { return (float)v; }
template <> __host__ __device__ inline double param_as<double>(double v) { return v; }
template <> __host__ __device__ inline int64_t param_as<int64_t>(double v) {
  if (v != v) return 0;
  if (v >= 9.2e18) return INT64_MAX;
  if (v <= -9.2e18) return INT64_MIN;
  return (int64_t)v;
}

#define DDPM_CU_CASE(ID, TYPE, ...) \
  case ID: {                        \
    using T = TYPE;                 \
    __VA_ARGS__;                    \
  } break;
#define DDPM_CU_FLOAT_CASES(...)                          \
  DDPM_CU_CASE(DDPM_FLOAT32, float, __VA_ARGS__)          \
  DDPM_CU_CASE(DDPM_FLOAT64, double, __VA_ARGS__)         \
  DDPM_CU_CASE(DDPM_FLOAT16, __half, __VA_ARGS__)         \
  DDPM_CU_CASE(DDPM_BFLOAT16, __nv_bfloat16, __VA_ARGS__)
#define DDPM_CU_INT_CASES(...)                    \
  DDPM_CU_CASE(DDPM_INT64, int64_t, __VA_ARGS__)  \
  DDPM_CU_CASE(DDPM_INT32, int32_t, __VA_ARGS__)  \
  DDPM_CU_CASE(DDPM_UINT8, uint8_t, __VA_ARGS__)  \
  DDPM_CU_CASE(DDPM_BOOL, Bool8, __VA_ARGS__)

// The error for a dtype a kernel does not handle, naming the op.
int no_dtype(const ddpm_call *c, int dtype);

// dst <- src (same shape after broadcasting; any strides and dtypes), on the current stream
// (copy.cu); used by COPY, CAT and the matmul glue.  c names the op in errors.
int copy_strided(ddpm_tensor *dst, const ddpm_tensor *src, const ddpm_call *c);

}  // namespace ddpm_cu
#endif
