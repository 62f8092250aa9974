/* backend_none.c: the CUDA entry points of a CPU-only build (same ABI): every device call answers
 * DDPM_ERR_UNSUPPORTED with a message saying this libddpm was built without CUDA, and the plain
 * queries answer 0.  (Switches and autocast live in settings.c / autocast.c, common to both.) */
#include "internal.h"

const ddpm_backend *ddpm_cuda_backend(void) { return NULL; }
int ddpm_cuda_device_count_internal(void) { return 0; }
const char *ddpm_cuda_unavailable_reason(void) { return "this libddpm was built without CUDA"; }

#define NO_CUDA(what) DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "%s: CUDA is not available (this libddpm was built without CUDA)", what)

int ddpm_cuda_is_available(void) { return 0; }
int ddpm_cuda_device_count(void) { return 0; }
int ddpm_cuda_get_device_name(int index, char *buf, int len) {
  if (buf && len > 0) buf[0] = 0;
  return NO_CUDA("get_device_name");
}
int ddpm_cuda_get_device_capability(int index, int *major, int *minor) { return NO_CUDA("get_device_capability"); }
int ddpm_cuda_get_device_properties(int index, int64_t *total_memory, int *mp) { return NO_CUDA("get_device_properties"); }
int ddpm_cuda_current_device(int *index) { return NO_CUDA("current_device"); }
int ddpm_cuda_set_device(int index) { return NO_CUDA("set_device"); }
int ddpm_cuda_synchronize(int index) { return NO_CUDA("synchronize"); }
int ddpm_cuda_mem_get_info(int index, int64_t *f, int64_t *t) { return NO_CUDA("mem_get_info"); }
int ddpm_cuda_memory_stats(int index, int64_t *stats, int n) { return NO_CUDA("memory_stats"); }
int ddpm_cuda_reset_peak_memory_stats(int index) { return NO_CUDA("reset_peak_memory_stats"); }
int ddpm_cuda_empty_cache(void) { return NO_CUDA("empty_cache"); }
int ddpm_cuda_set_memory_limit(int index, int64_t bytes) { return NO_CUDA("set_memory_limit"); }
int ddpm_cuda_has_kernel(int op) { return 0; }

int ddpm_cuda_stream_new(ddpm_cuda_stream **out, int index, int priority) { return NO_CUDA("Stream"); }
void ddpm_cuda_stream_free(ddpm_cuda_stream *s) {}
int ddpm_cuda_stream_device(const ddpm_cuda_stream *s) { return -1; }
int ddpm_cuda_stream_synchronize(ddpm_cuda_stream *s) { return NO_CUDA("Stream.synchronize"); }
int ddpm_cuda_stream_query(ddpm_cuda_stream *s, int *done) { return NO_CUDA("Stream.query"); }
int ddpm_cuda_stream_wait_event(ddpm_cuda_stream *s, ddpm_cuda_event *e) { return NO_CUDA("Stream.wait_event"); }
int ddpm_cuda_stream_wait_stream(ddpm_cuda_stream *s, ddpm_cuda_stream *o) { return NO_CUDA("Stream.wait_stream"); }
int ddpm_cuda_set_stream(ddpm_cuda_stream *s) { return NO_CUDA("set_stream"); }
int ddpm_cuda_current_stream(int index, ddpm_cuda_stream **out) { return NO_CUDA("current_stream"); }
int ddpm_cuda_event_new(ddpm_cuda_event **out, int enable_timing) { return NO_CUDA("Event"); }
void ddpm_cuda_event_free(ddpm_cuda_event *e) {}
int ddpm_cuda_event_record(ddpm_cuda_event *e, ddpm_cuda_stream *s) { return NO_CUDA("Event.record"); }
int ddpm_cuda_event_synchronize(ddpm_cuda_event *e) { return NO_CUDA("Event.synchronize"); }
int ddpm_cuda_event_query(ddpm_cuda_event *e, int *done) { return NO_CUDA("Event.query"); }
int ddpm_cuda_event_elapsed_ms(ddpm_cuda_event *a, ddpm_cuda_event *b, double *ms) { return NO_CUDA("Event.elapsed_time"); }
int ddpm_tensor_record_stream(ddpm_tensor *t, ddpm_cuda_stream *s) { return NO_CUDA("record_stream"); }

int ddpm_pin_memory(ddpm_tensor **out, ddpm_tensor *t) { return NO_CUDA("pin_memory"); }
int ddpm_tensor_is_pinned(const ddpm_tensor *t) { return 0; }

int ddpm_cuda_graph_new(ddpm_cuda_graph **out) { return NO_CUDA("CUDAGraph"); }
void ddpm_cuda_graph_free(ddpm_cuda_graph *g) {}
int ddpm_cuda_graph_capture_begin(ddpm_cuda_graph *g) { return NO_CUDA("CUDAGraph.capture_begin"); }
int ddpm_cuda_graph_capture_end(ddpm_cuda_graph *g) { return NO_CUDA("CUDAGraph.capture_end"); }
int ddpm_cuda_graph_replay(ddpm_cuda_graph *g) { return NO_CUDA("CUDAGraph.replay"); }
int ddpm_cuda_graph_reset(ddpm_cuda_graph *g) { return NO_CUDA("CUDAGraph.reset"); }
int ddpm_cuda_is_capturing(void) { return 0; }
