// backend_cuda.cu: the CUDA backend: device selection and queries, copies between host and
// device, the kernel table generated from ops.def, CUDA error reporting, deferred device-side
// errors and the DDPM_SYNC debugging mode.
#include "cuda_common.cuh"
#include <mutex>
#include <stdio.h>

namespace ddpm_cu {

static int g_device_count = -1;
static std::once_flag g_count_once;
static cudaDeviceProp g_props[DDPM_CU_MAX_DEVICES];
static bool g_props_ok[DDPM_CU_MAX_DEVICES];
static std::mutex g_props_mu;
static thread_local int tl_ordinal = -1;

static int count_devices() {
  std::call_once(g_count_once, [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      n = 0;
      cudaGetLastError(); // "no device"/"no driver" is an answer here, not an error
    }
    g_device_count = n > DDPM_CU_MAX_DEVICES ? DDPM_CU_MAX_DEVICES : n;
  });
  return g_device_count;
}

int ordinal_of(int device) { return device - DDPM_CUDA0; }

int current_ordinal() {
  if (tl_ordinal < 0) {
    int d = 0;
    if (cudaGetDevice(&d) != cudaSuccess) {
      cudaGetLastError();
      d = 0;
    }
    tl_ordinal = d;
  }
  return tl_ordinal;
}

int guard_device(int ordinal) {
  if (ordinal == current_ordinal()) return DDPM_OK;
  if (ordinal < 0 || ordinal >= count_devices())
    return DDPM_FAIL(DDPM_ERR_DEVICE, "cuda:%d is not available (%d CUDA device%s)", ordinal, count_devices(),
                     count_devices() == 1 ? "" : "s");
  CU_TRY(cudaSetDevice(ordinal), "selecting the CUDA device");
  tl_ordinal = ordinal;
  return DDPM_OK;
}

const cudaDeviceProp &props(int ordinal) {
  std::lock_guard<std::mutex> lk(g_props_mu);
  if (!g_props_ok[ordinal]) {
    if (cudaGetDeviceProperties(&g_props[ordinal], ordinal) != cudaSuccess) {
      cudaGetLastError();
      memset(&g_props[ordinal], 0, sizeof g_props[ordinal]);
      snprintf(g_props[ordinal].name, sizeof g_props[ordinal].name, "unknown CUDA device");
    }
    g_props_ok[ordinal] = true;
  }
  return g_props[ordinal];
}

int device_sm_count(int ordinal) {
  int n = props(ordinal).multiProcessorCount;
  return n > 0 ? n : 1;
}

int fail(cudaError_t e, const char *what, const char *file, int line) {
  cudaGetLastError(); // clear a non-sticky error so the next op starts clean
  int code = e == cudaErrorMemoryAllocation ? DDPM_ERR_OOM : DDPM_ERR_BACKEND;
  const char *hint = "";
  switch (e) {
  case cudaErrorIllegalAddress:
  case cudaErrorLaunchFailure:
  case cudaErrorIllegalInstruction:
  case cudaErrorMisalignedAddress:
  case cudaErrorHardwareStackError:
    hint = " (the CUDA context is now unusable: restart the process; run with DDPM_SYNC=1 to find the op)";
    break;
  case cudaErrorStreamCaptureUnsupported:
  case cudaErrorStreamCaptureInvalidated:
  case cudaErrorStreamCaptureImplicit:
  case cudaErrorCapturedEvent:
    hint = " (inside CUDA graph capture: no host copies, synchronisation or item() while capturing)";
    break;
  case cudaErrorNoDevice:
  case cudaErrorInsufficientDriver:
    hint = " (no usable CUDA device or driver on this machine)";
    break;
  default: break;
  }
  return ddpm_fail_at(code, file, line, "%s: CUDA error %s: %s%s", what, cudaGetErrorName(e), cudaGetErrorString(e),
                      hint);
}

int no_dtype(const ddpm_call *c, int dtype) {
  return DDPM_FAIL(DDPM_ERR_DTYPE, "%s: no CUDA kernel for dtype %s", ddpm_opname(c->op), ddpm_dname(dtype));
}

// ---- deferred device-side errors -----------------------------------------------------------------------
// The word lives in mapped page-locked host memory: kernels write it through PCIe (only when
// something is wrong), and the host reads it after a synchronisation at no cost.
static DevErr *g_deverr_host[DDPM_CU_MAX_DEVICES];
static DevErr *g_deverr_dev[DDPM_CU_MAX_DEVICES];
static std::mutex g_deverr_mu;

DevErr *deverr_ptr(int ordinal) {
  std::lock_guard<std::mutex> lk(g_deverr_mu);
  if (!g_deverr_dev[ordinal]) {
    void *h = nullptr;
    if (cudaHostAlloc(&h, sizeof(DevErr), cudaHostAllocMapped) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    memset(h, 0, sizeof(DevErr));
    void *d = nullptr;
    if (cudaHostGetDevicePointer(&d, h, 0) != cudaSuccess) {
      cudaGetLastError();
      cudaFreeHost(h);
      return nullptr;
    }
    g_deverr_host[ordinal] = (DevErr *)h;
    g_deverr_dev[ordinal] = (DevErr *)d;
  }
  return g_deverr_dev[ordinal];
}

int deverr_check(int ordinal) {
  DevErr *h = g_deverr_host[ordinal];
  if (!h) return DDPM_OK;
  volatile DevErr *v = h;
  if (!v->code) return DDPM_OK;
  DevErr e = {v->code, v->op, v->a, v->b};
  v->code = 0;
  return ddpm_fail_at(e.code, __FILE__, __LINE__,
                      "%s: index %lld is out of range for a dim of size %lld (found on cuda:%d by the kernel; "
                      "reported at the next synchronisation, so the failing call may be earlier than this line; "
                      "DDPM_SYNC=1 reports it at the op)",
                      ddpm_opname(e.op), e.a, e.b, ordinal);
}

} // namespace ddpm_cu

using namespace ddpm_cu;

// ---- the kernel table ---------------------------------------------------------------------------------
static ddpm_kernel_fn g_raw[DDPM_OP_COUNT];
static ddpm_kernel_fn g_table[DDPM_OP_COUNT];

// Every CUDA kernel runs through here: the device of the call becomes current, launch failures
// are reported with the op's name, and DDPM_SYNC=1 makes every op synchronous and checked.
static int cuda_run(ddpm_call *c) {
  const ddpm_tensor *first = c->nout ? c->out[0] : (c->nin ? c->in[0] : c->list[0]);
  int ord = first->device - DDPM_CUDA0;
  DDPM_TRY(guard_device(ord));
  int st = g_raw[c->op](c);
  cudaError_t e = cudaGetLastError();
  if (st) return st;
  if (e != cudaSuccess) return fail(e, ddpm_opname(c->op), __FILE__, __LINE__);
  if (ddpm_cuda_get_flag(DDPM_CUDA_FLAG_SYNC)) {
    cudaStream_t s = stream();
    if (!stream_capturing(s)) {
      e = cudaStreamSynchronize(s);
      if (e != cudaSuccess) return fail(e, ddpm_opname(c->op), __FILE__, __LINE__);
      return deverr_check(ord);
    }
  }
  return DDPM_OK;
}

struct TableInit {
  TableInit() {
#define REG_K(n) g_raw[DDPM_OP_##n] = cuda_##n;
#define REG_N(n) REG_K(n)
#define REG_V(n)
#define DDPM_OP(n, s, kind) REG_##kind(n)
#include "ops.def"
#undef DDPM_OP
    for (int i = 0; i < DDPM_OP_COUNT; i++) g_table[i] = g_raw[i] ? cuda_run : nullptr;
  }
};
static TableInit g_table_init;

// ---- copies ------------------------------------------------------------------------------------------------
static int cuda_memcpy(void *dst, int dd, const void *src, int sd, size_t n) {
  if (!n) return DDPM_OK;
  if (dd == DDPM_CPU && sd == DDPM_CPU) {
    memmove(dst, src, n);
    return DDPM_OK;
  }
  int ord = ordinal_of(dd != DDPM_CPU ? dd : sd);
  DDPM_TRY(guard_device(ord));
  cudaStream_t s = stream();
  char what[96];
  snprintf(what, sizeof what, "copy of %zu bytes from %s to %s", n, ddpm_fmt_device(sd), ddpm_fmt_device(dd));
  if (dd != DDPM_CPU && sd != DDPM_CPU) {
    if (dd == sd) {
      CU_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, s), what);
      return DDPM_OK; // stream order makes it synchronous for every later op
    }
    if (stream_capturing(s))
      return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "%s: copies between GPUs cannot be captured in a CUDA graph", what);
    CU_TRY(cudaStreamSynchronize(stream_for(ordinal_of(sd))), what);
    CU_TRY(cudaMemcpyPeerAsync(dst, ordinal_of(dd), src, ordinal_of(sd), n, s), what);
    CU_TRY(cudaStreamSynchronize(s), what);
    return DDPM_OK;
  }
  if (stream_capturing(s))
    return DDPM_FAIL(DDPM_ERR_UNSUPPORTED,
                     "%s: host<->device copies cannot be captured in a CUDA graph (keep inputs in static GPU "
                     "tensors filled with :copy_() before replay; read results after replay)",
                     what);
  // synchronous from the caller's view: the host buffer may be reused as soon as we return
  CU_TRY(cudaMemcpyAsync(dst, src, n, dd == DDPM_CPU ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice, s), what);
  CU_TRY(cudaStreamSynchronize(s), what);
  return dd == DDPM_CPU ? deverr_check(ord) : DDPM_OK;
}

extern "C" void *ddpm_cu_backend_alloc(size_t nbytes, int device);
extern "C" void ddpm_cu_backend_free(void *p, size_t nbytes, int device);

static const ddpm_backend g_backend = {"cuda", ddpm_cu_backend_alloc, ddpm_cu_backend_free, cuda_memcpy, g_table};

extern "C" const ddpm_backend *ddpm_cuda_backend(void) { return &g_backend; }
extern "C" int ddpm_cuda_device_count_internal(void) { return count_devices(); }

// ---- public device API ------------------------------------------------------------------------------------
static int resolve(const char *what, int index, int *ord) {
  int n = count_devices();
  if (index < 0) index = current_ordinal();
  if (n == 0) return DDPM_FAIL(DDPM_ERR_DEVICE, "%s: no CUDA device is available on this machine", what);
  if (index >= n)
    return DDPM_FAIL(DDPM_ERR_DEVICE, "%s: invalid device index %d (%d CUDA device%s: 0..%d)", what, index, n,
                     n == 1 ? "" : "s", n - 1);
  *ord = index;
  return DDPM_OK;
}

extern "C" {
int ddpm_cuda_is_available(void) { return count_devices() > 0; }
int ddpm_cuda_device_count(void) { return count_devices(); }

int ddpm_cuda_get_device_name(int index, char *buf, int len) {
  int o;
  DDPM_TRY(resolve("get_device_name", index, &o));
  if (!buf || len <= 0) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "get_device_name: no buffer");
  snprintf(buf, (size_t)len, "%s", props(o).name);
  return DDPM_OK;
}

int ddpm_cuda_get_device_capability(int index, int *major, int *minor) {
  int o;
  DDPM_TRY(resolve("get_device_capability", index, &o));
  *major = props(o).major;
  *minor = props(o).minor;
  return DDPM_OK;
}

int ddpm_cuda_get_device_properties(int index, int64_t *total_memory, int *mp) {
  int o;
  DDPM_TRY(resolve("get_device_properties", index, &o));
  *total_memory = (int64_t)props(o).totalGlobalMem;
  *mp = props(o).multiProcessorCount;
  return DDPM_OK;
}

int ddpm_cuda_current_device(int *index) {
  if (count_devices() == 0) return DDPM_FAIL(DDPM_ERR_DEVICE, "current_device: no CUDA device is available");
  *index = current_ordinal();
  return DDPM_OK;
}

int ddpm_cuda_set_device(int index) {
  int o;
  if (index < 0) return DDPM_FAIL(DDPM_ERR_DEVICE, "set_device: invalid device index %d", index);
  DDPM_TRY(resolve("set_device", index, &o));
  return guard_device(o);
}

int ddpm_cuda_synchronize(int index) {
  int o;
  DDPM_TRY(resolve("synchronize", index, &o));
  DDPM_TRY(guard_device(o));
  if (stream_capturing(stream()))
    return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "synchronize: not allowed while a CUDA graph is being captured");
  CU_TRY(cudaDeviceSynchronize(), "synchronize");
  return deverr_check(o);
}

int ddpm_cuda_mem_get_info(int index, int64_t *free_bytes, int64_t *total_bytes) {
  int o;
  DDPM_TRY(resolve("mem_get_info", index, &o));
  DDPM_TRY(guard_device(o));
  size_t f = 0, t = 0;
  CU_TRY(cudaMemGetInfo(&f, &t), "mem_get_info");
  *free_bytes = (int64_t)f;
  *total_bytes = (int64_t)t;
  return DDPM_OK;
}

int ddpm_cuda_has_kernel(int op) { return op >= 0 && op < DDPM_OP_COUNT && g_raw[op] != nullptr; }
}
