// caching_allocator.cu: device memory for tensors and scratch.  cudaMalloc/cudaFree synchronise
// and cost tens of microseconds, so freed blocks are cached and reused (bookkeeping in
// alloc_core.h); this file binds that core to CUDA: one allocator per device, its lock, events
// for cross-stream reuse, private pools for graph capture, statistics and OOM messages.
#include "cuda_common.cuh"
#include <atomic>
#include <mutex>
#include <stdio.h>
extern "C" {
#include "alloc_core.h"
}

namespace ddpm_cu {

struct DevAlloc {
  ac_alloc a;
  std::mutex mu;
  std::atomic<bool> ready{false};
  int ord = 0;
};
static DevAlloc g_dev[DDPM_CU_MAX_DEVICES];
static std::mutex g_init_mu;

static void *raw_alloc(size_t n, void *ctx) {
  void *p = nullptr;
  cudaError_t e = cudaMalloc(&p, n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return p;
}
static void raw_free(void *p, size_t, void *) {
  if (cudaFree(p) != cudaSuccess) cudaGetLastError();
}
static void *record_event(void *stream, void *) {
  cudaEvent_t e;
  if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  if (cudaEventRecord(e, (cudaStream_t)stream) != cudaSuccess) {
    cudaGetLastError();
    cudaEventDestroy(e);
    return nullptr;
  }
  return (void *)e;
}
static int query_event(void *e, void *) {
  cudaError_t r = cudaEventQuery((cudaEvent_t)e);
  if (r == cudaSuccess) return 1;
  cudaGetLastError();
  return 0;
}
static void destroy_event(void *e, void *) { cudaEventDestroy((cudaEvent_t)e); }
static void sync_all(void *) {
  if (cudaDeviceSynchronize() != cudaSuccess) cudaGetLastError();
}

static DevAlloc &dev(int ord) {
  DevAlloc &d = g_dev[ord];
  if (!d.ready) {
    std::lock_guard<std::mutex> lk(g_init_mu);
    if (!d.ready) {
      ac_backend be = {raw_alloc, raw_free, record_event, query_event, destroy_event, sync_all, nullptr};
      ac_init(&d.a, &be);
      d.ord = ord;
      d.ready = true;
    }
  }
  return d;
}

static double mib(double b) { return b / 1048576.0; }

void *alloc(size_t nbytes, int ord) {
  if (guard_device(ord)) return nullptr;
  DevAlloc &d = dev(ord);
  cudaStream_t s = stream_for(ord);
  void *p;
  ac_stats st;
  size_t limit;
  {
    std::lock_guard<std::mutex> lk(d.mu);
    p = ac_malloc(&d.a, nbytes, (void *)s);
    st = d.a.st;
    limit = d.a.limit;
  }
  if (p) return p;
  size_t fr = 0, tot = 0;
  if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) cudaGetLastError();
  char lim[64] = "";
  if (limit) snprintf(lim, sizeof lim, "; limit set by set_memory_limit %.2f MiB", mib((double)limit));
  ddpm_fail_at(DDPM_ERR_OOM, __FILE__, __LINE__,
               "CUDA out of memory: tried to allocate %.2f MiB on cuda:%d (%zu bytes); the device has %.2f MiB free "
               "of %.2f MiB; ddpm holds %.2f MiB in tensors and %.2f MiB reserved by its cache%s (the cache was "
               "released and the allocation retried)",
               mib((double)nbytes), ord, nbytes, mib((double)fr), mib((double)tot), mib((double)st.allocated),
               mib((double)st.reserved), lim);
  return nullptr;
}

void free(void *p, int ord) {
  if (!p) return;
  DevAlloc &d = dev(ord);
  std::lock_guard<std::mutex> lk(d.mu);
  if (ac_free(&d.a, p) != 0) { /* not ours: never happens for engine storage; be safe */
    if (cudaFree(p) != cudaSuccess) cudaGetLastError();
  }
}

int record_stream_use(void *ptr, int ord, cudaStream_t s) {
  DevAlloc &d = dev(ord);
  std::lock_guard<std::mutex> lk(d.mu);
  if (ac_record_stream(&d.a, ptr, (void *)s) != 0)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "record_stream: the tensor's memory does not come from the caching allocator");
  return DDPM_OK;
}

// ---- graph pools (graph.cu) ------------------------------------------------------------------------
void *pool_new(int ord) {
  DevAlloc &d = dev(ord);
  std::lock_guard<std::mutex> lk(d.mu);
  return ac_pool_new_private(&d.a);
}
int pool_capture_begin(int ord, void *pool, cudaStream_t s) {
  DevAlloc &d = dev(ord);
  std::lock_guard<std::mutex> lk(d.mu);
  if (ac_capture_begin(&d.a, (ac_pool *)pool, (void *)s))
    return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "CUDA graph: too many captures at once on cuda:%d", ord);
  return DDPM_OK;
}
void pool_capture_end(int ord, cudaStream_t s) {
  DevAlloc &d = dev(ord);
  std::lock_guard<std::mutex> lk(d.mu);
  ac_capture_end(&d.a, (void *)s);
}
// The caller synchronised the device: nothing in flight uses the pool any more.
void pool_retire(int ord, void *pool) {
  DevAlloc &d = dev(ord);
  std::lock_guard<std::mutex> lk(d.mu);
  ac_pool_retire(&d.a, (ac_pool *)pool, nullptr);
}

} // namespace ddpm_cu

using namespace ddpm_cu;

extern "C" void *ddpm_cu_backend_alloc(size_t nbytes, int device) { return alloc(nbytes, device - DDPM_CUDA0); }
extern "C" void ddpm_cu_backend_free(void *p, size_t, int device) { ddpm_cu::free(p, device - DDPM_CUDA0); }

static int resolve_dev(const char *what, int index, int *ord) {
  int n = ddpm_cuda_device_count_internal();
  if (n == 0) return DDPM_FAIL(DDPM_ERR_DEVICE, "%s: no CUDA device is available on this machine", what);
  if (index < 0) index = current_ordinal();
  if (index >= n) return DDPM_FAIL(DDPM_ERR_DEVICE, "%s: invalid device index %d", what, index);
  *ord = index;
  return DDPM_OK;
}

extern "C" {
int ddpm_cuda_memory_stats(int index, int64_t *stats, int n) {
  int o;
  DDPM_TRY(resolve_dev("memory_stats", index, &o));
  if (n > 0 && !stats) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "memory_stats: no output array");
  DevAlloc &d = dev(o);
  int64_t v[DDPM_CUDA_STAT_COUNT];
  {
    std::lock_guard<std::mutex> lk(d.mu);
    const ac_stats &s = d.a.st;
    v[DDPM_CUDA_STAT_ALLOCATED] = s.allocated;
    v[DDPM_CUDA_STAT_RESERVED] = s.reserved;
    v[DDPM_CUDA_STAT_PEAK_ALLOCATED] = s.peak_allocated;
    v[DDPM_CUDA_STAT_PEAK_RESERVED] = s.peak_reserved;
    v[DDPM_CUDA_STAT_ACTIVE_BLOCKS] = s.active_blocks;
    v[DDPM_CUDA_STAT_SEGMENTS] = s.segments;
    v[DDPM_CUDA_STAT_ALLOC_CALLS] = s.alloc_calls;
    v[DDPM_CUDA_STAT_DEVICE_MALLOCS] = s.device_mallocs;
    v[DDPM_CUDA_STAT_CACHE_FLUSHES] = s.cache_flushes;
    v[DDPM_CUDA_STAT_OOMS] = s.ooms;
    v[DDPM_CUDA_STAT_LIMIT] = (int64_t)d.a.limit;
  }
  for (int i = 0; i < n && i < DDPM_CUDA_STAT_COUNT; i++) stats[i] = v[i];
  return DDPM_OK;
}

int ddpm_cuda_reset_peak_memory_stats(int index) {
  int o;
  DDPM_TRY(resolve_dev("reset_peak_memory_stats", index, &o));
  DevAlloc &d = dev(o);
  std::lock_guard<std::mutex> lk(d.mu);
  d.a.st.peak_allocated = d.a.st.allocated;
  d.a.st.peak_reserved = d.a.st.reserved;
  return DDPM_OK;
}

int ddpm_cuda_empty_cache(void) {
  int n = ddpm_cuda_device_count_internal();
  if (n == 0) return DDPM_FAIL(DDPM_ERR_DEVICE, "empty_cache: no CUDA device is available on this machine");
  for (int o = 0; o < n; o++) {
    if (!g_dev[o].ready) continue;
    DDPM_TRY(guard_device(o));
    DevAlloc &d = dev(o);
    std::lock_guard<std::mutex> lk(d.mu);
    if (d.a.ncapture)
      return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "empty_cache: not allowed while a CUDA graph is being captured");
    ac_release_cached(&d.a);
  }
  return DDPM_OK;
}

int ddpm_cuda_set_memory_limit(int index, int64_t bytes) {
  int o;
  DDPM_TRY(resolve_dev("set_memory_limit", index, &o));
  if (bytes < 0) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "set_memory_limit: %lld bytes; expected >= 0 (0: no limit)",
                                  (long long)bytes);
  DevAlloc &d = dev(o);
  std::lock_guard<std::mutex> lk(d.mu);
  d.a.limit = (size_t)bytes;
  return DDPM_OK;
}
}
