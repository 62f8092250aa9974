// pinned.cu: page-locked host tensors for data loading.  Copies from pinned memory go straight
// to the GPU by DMA (pageable memory is staged through a driver buffer first), and
// cudaHostAlloc/cudaFreeHost are slow and synchronising, so freed buffers are cached by
// power-of-two size and reused.
#include "cuda_common.cuh"
#include <mutex>
#include <vector>
#include <new>

namespace {
std::mutex g_mu;
std::vector<std::pair<size_t, void *>> g_cache; // (capacity, pointer) of free buffers
size_t g_cached_bytes;
const size_t kMaxCached = (size_t)1 << 30; // keep at most 1 GiB of idle pinned memory

size_t bucket(size_t n) {
  size_t b = 4096;
  while (b < n) b <<= 1;
  return b;
}

struct Pinned {
  void *p;
  size_t cap;
};

void pinned_release(ddpm_storage *s) {
  Pinned *pb = (Pinned *)s->release_ctx;
  ddpm_mem_account(DDPM_CPU, -(int64_t)pb->cap);
  std::lock_guard<std::mutex> lk(g_mu);
  // copies from it were synchronous (backend memcpy contract), so it is reusable at once
  if (g_cached_bytes + pb->cap <= kMaxCached) {
    g_cache.push_back({pb->cap, pb->p});
    g_cached_bytes += pb->cap;
  } else {
    cudaFreeHost(pb->p);
  }
  delete pb;
}

int pinned_alloc(size_t n, Pinned **out) {
  size_t cap = bucket(n);
  void *p = nullptr;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    for (size_t i = 0; i < g_cache.size(); i++)
      if (g_cache[i].first == cap) {
        p = g_cache[i].second;
        g_cache[i] = g_cache.back();
        g_cache.pop_back();
        g_cached_bytes -= cap;
        break;
      }
  }
  if (!p) {
    cudaError_t e = cudaHostAlloc(&p, cap, cudaHostAllocPortable);
    if (e != cudaSuccess) {
      // a full cache of other sizes may be what stands in the way: release it and retry once
      std::vector<std::pair<size_t, void *>> drop;
      {
        std::lock_guard<std::mutex> lk(g_mu);
        drop.swap(g_cache);
        g_cached_bytes = 0;
      }
      for (auto &d : drop) cudaFreeHost(d.second);
      cudaGetLastError();
      e = cudaHostAlloc(&p, cap, cudaHostAllocPortable);
    }
    if (e != cudaSuccess)
      return ddpm_cu::fail(e, "pin_memory: allocating page-locked host memory", __FILE__, __LINE__);
  }
  Pinned *pb = new (std::nothrow) Pinned{p, cap};
  if (!pb) {
    cudaFreeHost(p);
    return DDPM_FAIL(DDPM_ERR_OOM, "pin_memory: out of host memory");
  }
  *out = pb;
  return DDPM_OK;
}
} // namespace

extern "C" {
int ddpm_tensor_is_pinned(const ddpm_tensor *t) {
  return t && t->device == DDPM_CPU && t->storage && t->storage->release == pinned_release;
}

int ddpm_pin_memory(ddpm_tensor **out, ddpm_tensor *t) {
  DDPM_TRY(ddpm_check_tensor("pin_memory", "self", t));
  if (t->device != DDPM_CPU)
    return DDPM_FAIL(DDPM_ERR_DEVICE, "pin_memory: %s is not a CPU tensor (only host memory can be pinned)",
                     ddpm_fmt_tensor(t));
  if (ddpm_cuda_device_count_internal() == 0)
    return DDPM_FAIL(DDPM_ERR_DEVICE, "pin_memory: no CUDA device is available on this machine");
  if (ddpm_tensor_is_pinned(t)) {
    ddpm_tensor_retain(t);
    *out = t;
    return DDPM_OK;
  }
  size_t nbytes = (size_t)ddpm_tensor_numel(t) * (size_t)ddpm_dsize(t->dtype);
  Pinned *pb = nullptr;
  DDPM_TRY(pinned_alloc(nbytes, &pb));
  ddpm_storage *s = nullptr;
  int st = ddpm_storage_wrap(&s, pb->p, nbytes, DDPM_CPU, pinned_release, pb);
  if (st) {
    std::lock_guard<std::mutex> lk(g_mu);
    g_cache.push_back({pb->cap, pb->p});
    g_cached_bytes += pb->cap;
    delete pb;
    return st;
  }
  ddpm_mem_account(DDPM_CPU, (int64_t)pb->cap);
  ddpm_tensor *o = (ddpm_tensor *)calloc(1, sizeof *o);
  if (!o) {
    ddpm_storage_release(s);
    return DDPM_FAIL(DDPM_ERR_OOM, "pin_memory: out of host memory");
  }
  o->refcount = 1;
  o->dtype = t->dtype;
  o->device = DDPM_CPU;
  o->ndim = t->ndim;
  memcpy(o->shape, t->shape, sizeof o->shape);
  ddpm_contiguous_strides(t->ndim, t->shape, o->strides);
  o->storage = s;
  ddpm_call c = {};
  c.op = DDPM_OP_COPY;
  c.nin = 1;
  c.nout = 1;
  c.in[0] = t;
  c.out[0] = o;
  st = ddpm_dispatch(&c);
  if (st) {
    ddpm_tensor_release(o);
    return st;
  }
  *out = o;
  return DDPM_OK;
}
}
