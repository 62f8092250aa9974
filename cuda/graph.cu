// graph.cu: CUDA graph capture and replay.
//
// capture_begin switches the calling thread's current stream to a fresh capture stream (ordered
// after the work already queued), routes allocations on it to a private memory pool, and starts
// capturing; capture_end instantiates the graph.  Nothing runs during capture: replay() launches
// the recorded kernels on the current stream with the very same addresses.  Hence the rules
// (lua/ddpm/cuda.lua documents them for users):
//  - shapes, dtypes and control flow are frozen; host scalars are baked into the kernels;
//  - tensors created before capture and read inside must stay alive while the graph is used
//    (fill them with copy_ between replays);
//  - tensors created during capture live in the graph's pool: their memory is reused by nobody
//    else until the graph is reset or freed, so outputs stay valid and are overwritten by each
//    replay;
//  - no host<->device copies, synchronisation or item() while capturing (they fail clearly);
//  - random draws are captured with their generator: each replay refreshes the seed/offset on the
//    device and advances the generator as the eager code would have.
#include "cuda_common.cuh"
#include <new>
#include <vector>

namespace ddpm_cu {
ddpm_cuda_stream *stream_wrap(cudaStream_t s, int ordinal);
void stream_unwrap(ddpm_cuda_stream *w);
ddpm_cuda_stream *swap_current(int ordinal, ddpm_cuda_stream *s);
void *pool_new(int ord);
int pool_capture_begin(int ord, void *pool, cudaStream_t s);
void pool_capture_end(int ord, cudaStream_t s);
void pool_retire(int ord, void *pool);
int blas_prepare(int ord, cudaStream_t s);
int dnn_prepare();
} // namespace ddpm_cu

using namespace ddpm_cu;

struct RngSlot {
  ddpm_generator *gen;
  uint64_t start;    // generator offset at the first draw in the capture
  uint64_t consumed; // counters the captured work draws per replay
  uint64_t *dev;     // {seed, offset} read by the captured kernels
};

struct ddpm_cuda_graph {
  int ord = -1;
  cudaStream_t cap = nullptr;
  ddpm_cuda_stream *cap_wrap = nullptr, *prev = nullptr;
  void *pool = nullptr;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  bool capturing = false;
  std::vector<RngSlot> rng;
};

static thread_local ddpm_cuda_graph *tl_capture = nullptr;

__global__ void k_set_rng(uint64_t *dev, uint64_t seed, uint64_t offset) {
  dev[0] = seed;
  dev[1] = offset;
}

namespace ddpm_cu {
int graph_rng_slot(ddpm_generator *g, uint64_t base, const uint64_t **state, uint64_t *rel) {
  ddpm_cuda_graph *gr = tl_capture;
  if (!gr)
    return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "random draw: the stream is capturing, but not through ddpm.cuda.graph");
  for (RngSlot &s : gr->rng)
    if (s.gen == g) {
      *state = s.dev;
      *rel = base - s.start;
      return DDPM_OK;
    }
  uint64_t *dev = (uint64_t *)alloc(2 * sizeof(uint64_t), gr->ord);
  if (!dev) return DDPM_ERR_OOM;
  gr->rng.push_back({g, base, 0, dev});
  *state = dev;
  *rel = 0;
  return DDPM_OK;
}
} // namespace ddpm_cu

static void release_graph(ddpm_cuda_graph *g) {
  if (g->exec) cudaGraphExecDestroy(g->exec);
  if (g->graph) cudaGraphDestroy(g->graph);
  g->exec = nullptr;
  g->graph = nullptr;
  if (g->pool) {
    guard_device(g->ord);
    // replays may still run: the pool's memory joins the general cache only when they are done
    if (cudaDeviceSynchronize() != cudaSuccess) cudaGetLastError();
    for (RngSlot &s : g->rng) ddpm_cu::free(s.dev, g->ord);
    pool_retire(g->ord, g->pool);
    g->pool = nullptr;
  }
  g->rng.clear();
}

extern "C" {
int ddpm_cuda_is_capturing(void) { return tl_capture != nullptr; }

int ddpm_cuda_graph_new(ddpm_cuda_graph **out) {
  if (ddpm_cuda_device_count_internal() == 0)
    return DDPM_FAIL(DDPM_ERR_DEVICE, "CUDAGraph: no CUDA device is available on this machine");
  ddpm_cuda_graph *g = new (std::nothrow) ddpm_cuda_graph();
  if (!g) return DDPM_FAIL(DDPM_ERR_OOM, "CUDAGraph: out of host memory");
  *out = g;
  return DDPM_OK;
}

int ddpm_cuda_graph_capture_begin(ddpm_cuda_graph *g) {
  if (!g) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "CUDAGraph.capture_begin: graph is nil");
  if (tl_capture) return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "CUDAGraph.capture_begin: a capture is already in progress");
  if (g->exec || g->capturing)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "CUDAGraph.capture_begin: this graph already holds a capture (reset it first)");
  int ord = current_ordinal();
  DDPM_TRY(guard_device(ord));
  cudaStream_t prev = stream_for(ord);
  if (stream_capturing(prev))
    return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "CUDAGraph.capture_begin: the current stream is already capturing");
  cudaStream_t cap;
  CU_TRY(cudaStreamCreateWithFlags(&cap, cudaStreamNonBlocking), "CUDAGraph.capture_begin");
  int st = blas_prepare(ord, cap); // handles and workspace cannot be created while capturing
  if (!st) st = dnn_prepare();
  if (!st && !deverr_ptr(ord)) st = DDPM_FAIL(DDPM_ERR_BACKEND, "CUDAGraph.capture_begin: no error word");
  // captured work must follow what is already queued on the current stream
  cudaEvent_t ev = nullptr;
  if (!st) {
    cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventRecord(ev, prev);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(cap, ev, 0);
    if (ev) cudaEventDestroy(ev);
    if (e != cudaSuccess) st = fail(e, "CUDAGraph.capture_begin", __FILE__, __LINE__);
  }
  void *pool = nullptr;
  if (!st) {
    pool = pool_new(ord);
    if (!pool) st = DDPM_FAIL(DDPM_ERR_OOM, "CUDAGraph.capture_begin: out of host memory");
  }
  if (!st) st = pool_capture_begin(ord, pool, cap);
  ddpm_cuda_stream *w = nullptr;
  if (!st) {
    w = stream_wrap(cap, ord);
    if (!w) st = DDPM_FAIL(DDPM_ERR_OOM, "CUDAGraph.capture_begin: out of host memory");
  }
  if (st) {
    if (pool) {
      pool_capture_end(ord, cap);
      pool_retire(ord, pool);
    }
    cudaStreamDestroy(cap);
    return st;
  }
  g->ord = ord;
  g->cap = cap;
  g->cap_wrap = w;
  g->pool = pool;
  g->prev = swap_current(ord, w);
  // relaxed: the allocator may cudaMalloc new segments while capturing
  cudaError_t e = cudaStreamBeginCapture(cap, cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    swap_current(ord, g->prev);
    pool_capture_end(ord, cap);
    stream_unwrap(w);
    g->cap_wrap = nullptr;
    cudaStreamDestroy(cap);
    g->cap = nullptr;
    pool_retire(ord, pool);
    g->pool = nullptr;
    return fail(e, "CUDAGraph.capture_begin", __FILE__, __LINE__);
  }
  g->capturing = true;
  tl_capture = g;
  return DDPM_OK;
}

int ddpm_cuda_graph_capture_end(ddpm_cuda_graph *g) {
  if (!g || !g->capturing) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "CUDAGraph.capture_end: no capture in progress");
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(g->cap, &graph);
  swap_current(g->ord, g->prev);
  pool_capture_end(g->ord, g->cap);
  tl_capture = nullptr;
  g->capturing = false;
  stream_unwrap(g->cap_wrap);
  g->cap_wrap = nullptr;
  cudaStreamDestroy(g->cap);
  g->cap = nullptr;
  // capture ran nothing, so it consumes no random numbers: each replay draws what an eager run
  // at the generator's state would, starting with the state before the capture
  for (RngSlot &s : g->rng) {
    s.consumed = s.gen->offset - s.start;
    s.gen->offset = s.start;
  }
  if (e != cudaSuccess) {
    if (graph) cudaGraphDestroy(graph);
    int st = fail(e, "CUDAGraph.capture_end (the capture was invalidated by an operation that is not allowed "
                     "while capturing)",
                  __FILE__, __LINE__);
    release_graph(g);
    return st;
  }
  g->graph = graph;
  e = cudaGraphInstantiate(&g->exec, graph, 0);
  if (e != cudaSuccess) {
    int st = fail(e, "CUDAGraph.capture_end: instantiating the graph", __FILE__, __LINE__);
    release_graph(g);
    return st;
  }
  return DDPM_OK;
}

int ddpm_cuda_graph_replay(ddpm_cuda_graph *g) {
  if (!g || !g->exec) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "CUDAGraph.replay: nothing captured (capture first)");
  DDPM_TRY(guard_device(g->ord));
  cudaStream_t s = stream_for(g->ord);
  if (stream_capturing(s)) return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "CUDAGraph.replay: not while capturing");
  for (RngSlot &r : g->rng) {
    k_set_rng<<<1, 1, 0, s>>>(r.dev, r.gen->seed, r.gen->offset);
    r.gen->offset += r.consumed;
  }
  CU_TRY(cudaGetLastError(), "CUDAGraph.replay");
  CU_TRY(cudaGraphLaunch(g->exec, s), "CUDAGraph.replay");
  if (ddpm_cuda_get_flag(DDPM_CUDA_FLAG_SYNC)) {
    CU_TRY(cudaStreamSynchronize(s), "CUDAGraph.replay");
    return deverr_check(g->ord);
  }
  return DDPM_OK;
}

int ddpm_cuda_graph_reset(ddpm_cuda_graph *g) {
  if (!g) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "CUDAGraph.reset: graph is nil");
  if (g->capturing) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "CUDAGraph.reset: end the capture first");
  release_graph(g);
  return DDPM_OK;
}

void ddpm_cuda_graph_free(ddpm_cuda_graph *g) {
  if (!g) return;
  if (g->capturing) { // abandoned mid-capture (an error in the captured function): end it quietly
    cudaGraph_t graph = nullptr;
    if (cudaStreamEndCapture(g->cap, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    swap_current(g->ord, g->prev);
    pool_capture_end(g->ord, g->cap);
    if (tl_capture == g) tl_capture = nullptr;
    stream_unwrap(g->cap_wrap);
    cudaStreamDestroy(g->cap);
    g->capturing = false;
  }
  release_graph(g);
  delete g;
}
}
