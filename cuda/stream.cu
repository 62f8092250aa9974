// stream.cu: CUDA streams and events, and the calling thread's current stream per device, which
// every kernel, copy and library call of the backend uses (NULL = the legacy default stream).
#include "cuda_common.cuh"
#include <new>

struct ddpm_cuda_stream {
  cudaStream_t s;
  int ordinal;
  bool owned; // false for streams the backend lends (graph capture)
};
struct ddpm_cuda_event {
  cudaEvent_t e;
  int ordinal;
  bool timing;
  bool recorded;
};

namespace ddpm_cu {
static thread_local ddpm_cuda_stream *tl_current[DDPM_CU_MAX_DEVICES];

cudaStream_t stream_for(int ordinal) {
  ddpm_cuda_stream *s = tl_current[ordinal];
  return s ? s->s : (cudaStream_t)0;
}
cudaStream_t stream() { return stream_for(current_ordinal()); }

bool stream_capturing(cudaStream_t s) {
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &cs) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return cs != cudaStreamCaptureStatusNone;
}

// Used by graph.cu: lend a stream object for a raw stream, and swap the current one.
ddpm_cuda_stream *stream_wrap(cudaStream_t s, int ordinal) {
  ddpm_cuda_stream *w = new (std::nothrow) ddpm_cuda_stream{s, ordinal, false};
  return w;
}
void stream_unwrap(ddpm_cuda_stream *w) { delete w; }
ddpm_cuda_stream *swap_current(int ordinal, ddpm_cuda_stream *s) {
  ddpm_cuda_stream *old = tl_current[ordinal];
  tl_current[ordinal] = s;
  return old;
}
int record_stream_use(void *ptr, int ordinal, cudaStream_t s); // caching_allocator.cu
} // namespace ddpm_cu

using namespace ddpm_cu;

static int need_device(const char *what) {
  if (ddpm_cuda_device_count_internal() == 0)
    return DDPM_FAIL(DDPM_ERR_DEVICE, "%s: no CUDA device is available on this machine", what);
  return DDPM_OK;
}

extern "C" {
int ddpm_cuda_stream_new(ddpm_cuda_stream **out, int index, int priority) {
  DDPM_TRY(need_device("Stream"));
  int ord = index < 0 ? current_ordinal() : index;
  if (ord >= ddpm_cuda_device_count_internal())
    return DDPM_FAIL(DDPM_ERR_DEVICE, "Stream: invalid device index %d", index);
  DDPM_TRY(guard_device(ord));
  int lo = 0, hi = 0;
  CU_TRY(cudaDeviceGetStreamPriorityRange(&lo, &hi), "Stream");
  // PyTorch's convention: lower numbers are higher priority; clamp into the device's range
  int p = priority < hi ? hi : (priority > lo ? lo : priority);
  cudaStream_t s;
  CU_TRY(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, p), "Stream");
  ddpm_cuda_stream *w = new (std::nothrow) ddpm_cuda_stream{s, ord, true};
  if (!w) {
    cudaStreamDestroy(s);
    return DDPM_FAIL(DDPM_ERR_OOM, "Stream: out of host memory");
  }
  *out = w;
  return DDPM_OK;
}

void ddpm_cuda_stream_free(ddpm_cuda_stream *s) {
  if (!s) return;
  if (tl_current[s->ordinal] == s) tl_current[s->ordinal] = nullptr;
  if (s->owned) cudaStreamDestroy(s->s); // work already queued still completes
  delete s;
}

int ddpm_cuda_stream_device(const ddpm_cuda_stream *s) { return s ? s->ordinal : current_ordinal(); }

static cudaStream_t raw(ddpm_cuda_stream *s) { return s ? s->s : stream_for(current_ordinal()); }

int ddpm_cuda_stream_synchronize(ddpm_cuda_stream *s) {
  DDPM_TRY(need_device("Stream.synchronize"));
  int ord = s ? s->ordinal : current_ordinal();
  DDPM_TRY(guard_device(ord));
  CU_TRY(cudaStreamSynchronize(raw(s)), "Stream.synchronize");
  return deverr_check(ord);
}

int ddpm_cuda_stream_query(ddpm_cuda_stream *s, int *done) {
  DDPM_TRY(need_device("Stream.query"));
  cudaError_t e = cudaStreamQuery(raw(s));
  if (e == cudaErrorNotReady) {
    cudaGetLastError();
    *done = 0;
    return DDPM_OK;
  }
  CU_TRY(e, "Stream.query");
  *done = 1;
  return DDPM_OK;
}

int ddpm_cuda_stream_wait_event(ddpm_cuda_stream *s, ddpm_cuda_event *e) {
  DDPM_TRY(need_device("Stream.wait_event"));
  if (!e) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "Stream.wait_event: event is nil");
  CU_TRY(cudaStreamWaitEvent(raw(s), e->e, 0), "Stream.wait_event");
  return DDPM_OK;
}

int ddpm_cuda_stream_wait_stream(ddpm_cuda_stream *s, ddpm_cuda_stream *other) {
  DDPM_TRY(need_device("Stream.wait_stream"));
  cudaEvent_t ev;
  CU_TRY(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "Stream.wait_stream");
  cudaError_t e = cudaEventRecord(ev, raw(other));
  if (e == cudaSuccess) e = cudaStreamWaitEvent(raw(s), ev, 0);
  cudaEventDestroy(ev);
  CU_TRY(e, "Stream.wait_stream");
  return DDPM_OK;
}

int ddpm_cuda_set_stream(ddpm_cuda_stream *s) {
  DDPM_TRY(need_device("set_stream"));
  if (!s) {
    tl_current[current_ordinal()] = nullptr;
    return DDPM_OK;
  }
  if (stream_capturing(stream_for(s->ordinal)))
    return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "set_stream: cannot change streams while a CUDA graph is being captured");
  tl_current[s->ordinal] = s;
  return DDPM_OK;
}

int ddpm_cuda_current_stream(int index, ddpm_cuda_stream **out) {
  DDPM_TRY(need_device("current_stream"));
  int ord = index < 0 ? current_ordinal() : index;
  if (ord >= ddpm_cuda_device_count_internal())
    return DDPM_FAIL(DDPM_ERR_DEVICE, "current_stream: invalid device index %d", index);
  *out = tl_current[ord];
  return DDPM_OK;
}

int ddpm_cuda_event_new(ddpm_cuda_event **out, int enable_timing) {
  DDPM_TRY(need_device("Event"));
  cudaEvent_t e;
  CU_TRY(cudaEventCreateWithFlags(&e, enable_timing ? cudaEventDefault : cudaEventDisableTiming), "Event");
  ddpm_cuda_event *w = new (std::nothrow) ddpm_cuda_event{e, current_ordinal(), enable_timing != 0, false};
  if (!w) {
    cudaEventDestroy(e);
    return DDPM_FAIL(DDPM_ERR_OOM, "Event: out of host memory");
  }
  *out = w;
  return DDPM_OK;
}

void ddpm_cuda_event_free(ddpm_cuda_event *e) {
  if (!e) return;
  cudaEventDestroy(e->e);
  delete e;
}

int ddpm_cuda_event_record(ddpm_cuda_event *e, ddpm_cuda_stream *s) {
  if (!e) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "Event.record: event is nil");
  CU_TRY(cudaEventRecord(e->e, raw(s)), "Event.record");
  e->recorded = true;
  return DDPM_OK;
}

int ddpm_cuda_event_synchronize(ddpm_cuda_event *e) {
  if (!e) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "Event.synchronize: event is nil");
  CU_TRY(cudaEventSynchronize(e->e), "Event.synchronize");
  return deverr_check(e->ordinal);
}

int ddpm_cuda_event_query(ddpm_cuda_event *e, int *done) {
  if (!e) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "Event.query: event is nil");
  cudaError_t r = cudaEventQuery(e->e);
  if (r == cudaErrorNotReady) {
    cudaGetLastError();
    *done = 0;
    return DDPM_OK;
  }
  CU_TRY(r, "Event.query");
  *done = 1;
  return DDPM_OK;
}

int ddpm_cuda_event_elapsed_ms(ddpm_cuda_event *start, ddpm_cuda_event *end, double *ms) {
  if (!start || !end) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "Event.elapsed_time: event is nil");
  if (!start->timing || !end->timing)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "Event.elapsed_time: both events need enable_timing=true");
  if (!start->recorded || !end->recorded)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "Event.elapsed_time: both events must be recorded first");
  float f = 0;
  CU_TRY(cudaEventElapsedTime(&f, start->e, end->e), "Event.elapsed_time");
  *ms = f;
  return DDPM_OK;
}

int ddpm_tensor_record_stream(ddpm_tensor *t, ddpm_cuda_stream *s) {
  DDPM_TRY(ddpm_check_tensor("record_stream", "self", t));
  if (t->device == DDPM_CPU)
    return DDPM_FAIL(DDPM_ERR_DEVICE, "record_stream: %s is not a CUDA tensor", ddpm_fmt_tensor(t));
  if (!t->storage->data) return DDPM_OK;
  return record_stream_use(t->storage->data, t->device - DDPM_CUDA0, raw(s));
}
}
