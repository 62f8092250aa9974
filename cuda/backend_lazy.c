/* backend_lazy.c: the CUDA entry points of libddpm in a CUDA build.  The backend itself (the .cu
 * files, cudart, cuBLAS, cuDNN) is libddpm_cuda.so beside libddpm, loaded on the first CUDA call:
 * mapping the CUDA libraries costs ~0.1 s and ~200 MB at start, which a CPU-only session (most
 * users, every test run on a machine without a GPU) should not pay.  Each public function here
 * forwards to its namesake in libddpm_cuda.so; when that library cannot be loaded (no CUDA
 * runtime on this machine, a broken install) they answer as a CPU-only build does, with the
 * loader's reason in the message. */
#define _GNU_SOURCE
#include "internal.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* name, return type, parameters, arguments, what to answer when the backend is missing */
#define DDPM_CUDA_FORWARDS(X)                                                                              \
  X(ddpm_cuda_is_available, int, (void), (), 0)                                                          \
  X(ddpm_cuda_device_count, int, (void), (), 0)                                                          \
  X(ddpm_cuda_get_device_name, int, (int i, char *buf, int len), (i, buf, len), no_name(buf, len))       \
  X(ddpm_cuda_get_device_capability, int, (int i, int *a, int *b), (i, a, b), no_cuda("get_device_capability")) \
  X(ddpm_cuda_get_device_properties, int, (int i, int64_t *m, int *p), (i, m, p), no_cuda("get_device_properties")) \
  X(ddpm_cuda_current_device, int, (int *i), (i), no_cuda("current_device"))                             \
  X(ddpm_cuda_set_device, int, (int i), (i), no_cuda("set_device"))                                      \
  X(ddpm_cuda_synchronize, int, (int i), (i), no_cuda("synchronize"))                                    \
  X(ddpm_cuda_mem_get_info, int, (int i, int64_t *f, int64_t *t), (i, f, t), no_cuda("mem_get_info"))    \
  X(ddpm_cuda_memory_stats, int, (int i, int64_t *s, int n), (i, s, n), no_cuda("memory_stats"))         \
  X(ddpm_cuda_reset_peak_memory_stats, int, (int i), (i), no_cuda("reset_peak_memory_stats"))            \
  X(ddpm_cuda_empty_cache, int, (void), (), no_cuda("empty_cache"))                                      \
  X(ddpm_cuda_set_memory_limit, int, (int i, int64_t b), (i, b), no_cuda("set_memory_limit"))            \
  X(ddpm_cuda_has_kernel, int, (int op), (op), 0)                                                        \
  X(ddpm_cuda_stream_new, int, (ddpm_cuda_stream **o, int i, int p), (o, i, p), no_cuda("Stream"))       \
  X(ddpm_cuda_stream_device, int, (const ddpm_cuda_stream *s), (s), -1)                                  \
  X(ddpm_cuda_stream_synchronize, int, (ddpm_cuda_stream *s), (s), no_cuda("Stream.synchronize"))        \
  X(ddpm_cuda_stream_query, int, (ddpm_cuda_stream *s, int *d), (s, d), no_cuda("Stream.query"))         \
  X(ddpm_cuda_stream_wait_event, int, (ddpm_cuda_stream *s, ddpm_cuda_event *e), (s, e), no_cuda("Stream.wait_event")) \
  X(ddpm_cuda_stream_wait_stream, int, (ddpm_cuda_stream *s, ddpm_cuda_stream *o), (s, o), no_cuda("Stream.wait_stream")) \
  X(ddpm_cuda_set_stream, int, (ddpm_cuda_stream *s), (s), no_cuda("set_stream"))                        \
  X(ddpm_cuda_current_stream, int, (int i, ddpm_cuda_stream **o), (i, o), no_cuda("current_stream"))     \
  X(ddpm_cuda_event_new, int, (ddpm_cuda_event **o, int t), (o, t), no_cuda("Event"))                    \
  X(ddpm_cuda_event_record, int, (ddpm_cuda_event *e, ddpm_cuda_stream *s), (e, s), no_cuda("Event.record")) \
  X(ddpm_cuda_event_synchronize, int, (ddpm_cuda_event *e), (e), no_cuda("Event.synchronize"))           \
  X(ddpm_cuda_event_query, int, (ddpm_cuda_event *e, int *d), (e, d), no_cuda("Event.query"))            \
  X(ddpm_cuda_event_elapsed_ms, int, (ddpm_cuda_event *a, ddpm_cuda_event *b, double *ms), (a, b, ms), no_cuda("Event.elapsed_time")) \
  X(ddpm_tensor_record_stream, int, (ddpm_tensor *t, ddpm_cuda_stream *s), (t, s), no_cuda("record_stream")) \
  X(ddpm_pin_memory, int, (ddpm_tensor **o, ddpm_tensor *t), (o, t), no_cuda("pin_memory"))              \
  X(ddpm_cuda_graph_new, int, (ddpm_cuda_graph **o), (o), no_cuda("CUDAGraph"))                          \
  X(ddpm_cuda_graph_capture_begin, int, (ddpm_cuda_graph *g), (g), no_cuda("CUDAGraph.capture_begin"))   \
  X(ddpm_cuda_graph_capture_end, int, (ddpm_cuda_graph *g), (g), no_cuda("CUDAGraph.capture_end"))       \
  X(ddpm_cuda_graph_replay, int, (ddpm_cuda_graph *g), (g), no_cuda("CUDAGraph.replay"))                 \
  X(ddpm_cuda_graph_reset, int, (ddpm_cuda_graph *g), (g), no_cuda("CUDAGraph.reset"))                   \
  X(ddpm_cuda_device_count_internal, int, (void), (), 0)                                                 \
  X(ddpm_cuda_backend, const ddpm_backend *, (void), (), NULL)

/* Objects that only the loaded backend can have made: nothing to do when it is not there. */
#define DDPM_CUDA_VOID_FORWARDS(X)                                                                         \
  X(ddpm_cuda_stream_free, (ddpm_cuda_stream *s), (s))                                                   \
  X(ddpm_cuda_event_free, (ddpm_cuda_event *e), (e))                                                     \
  X(ddpm_cuda_graph_free, (ddpm_cuda_graph *g), (g))

/* Queries that must not load the backend: nothing can be pinned or capturing before it is. */
#define DDPM_CUDA_IF_LOADED(X)                                                                             \
  X(ddpm_tensor_is_pinned, int, (const ddpm_tensor *t), (t), 0)                                          \
  X(ddpm_cuda_is_capturing, int, (void), (), 0)

static struct {
#define FIELD(name, ret, params, args, fallback) ret(*name) params;
#define VFIELD(name, params, args) void(*name) params;
  DDPM_CUDA_FORWARDS(FIELD)
  DDPM_CUDA_IF_LOADED(FIELD)
  DDPM_CUDA_VOID_FORWARDS(VFIELD)
#undef FIELD
#undef VFIELD
} fw;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int loaded;  /* set once under `once`; read atomically by the functions that never load */
static char why[8400] = "the CUDA backend was not loaded";

/* libddpm_cuda.so is looked for beside this libddpm (build tree and install alike); the CUDA
 * libraries it needs are found as the system finds them (ld.so.conf, LD_LIBRARY_PATH). */
static void load(void) {
  const char *env = getenv("DDPM_CUDA_LIBRARY");
  char path[4096];
  Dl_info info;
  if (env && *env) {
    snprintf(path, sizeof path, "%s", env);
  } else if (dladdr((void *)load, &info) && info.dli_fname && strrchr(info.dli_fname, '/')) {
    size_t dir = (size_t)(strrchr(info.dli_fname, '/') - info.dli_fname);
    snprintf(path, sizeof path, "%.*s/libddpm_cuda.so", (int)dir, info.dli_fname);
  } else {
    snprintf(path, sizeof path, "libddpm_cuda.so");
  }
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(why, sizeof why, "the CUDA backend could not be loaded (%s)", e ? e : path);
    return;
  }
  const char *missing = NULL;
#define RESOLVE(name, ...) \
  if (!missing && !(*(void **)&fw.name = dlsym(h, #name))) missing = #name;
#define VRESOLVE(name, params, args) RESOLVE(name)
  DDPM_CUDA_FORWARDS(RESOLVE)
  DDPM_CUDA_IF_LOADED(RESOLVE)
  DDPM_CUDA_VOID_FORWARDS(VRESOLVE)
#undef RESOLVE
#undef VRESOLVE
  if (missing) {
    snprintf(why, sizeof why, "the CUDA backend %s does not match this libddpm (no %s)", path, missing);
    memset(&fw, 0, sizeof fw);
    dlclose(h);
    return;
  }
  __atomic_store_n(&loaded, 1, __ATOMIC_RELEASE);
}

static int ensure(void) {
  pthread_once(&once, load);
  return loaded;
}

static int no_cuda(const char *what) {
  return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "%s: CUDA is not available: %s", what, why);
}
static int no_name(char *buf, int len) {
  if (buf && len > 0) buf[0] = 0;
  return no_cuda("get_device_name");
}

const char *ddpm_cuda_unavailable_reason(void) {
  ensure();
  return why;
}

#define FORWARD(name, ret, params, args, fallback) \
  ret name params { return ensure() ? fw.name args : (fallback); }
#define VFORWARD(name, params, args) \
  void name params { if (__atomic_load_n(&loaded, __ATOMIC_ACQUIRE)) fw.name args; }
#define IF_LOADED(name, ret, params, args, fallback) \
  ret name params { return __atomic_load_n(&loaded, __ATOMIC_ACQUIRE) ? fw.name args : (fallback); }
DDPM_CUDA_FORWARDS(FORWARD)
DDPM_CUDA_VOID_FORWARDS(VFORWARD)
DDPM_CUDA_IF_LOADED(IF_LOADED)
