/* storage.c: refcounted byte buffers on a device, with per-device byte accounting. */
#include "internal.h"

#define MAX_DEV 17
static int64_t mem_now[MAX_DEV], mem_peak[MAX_DEV];
static int64_t allocs_since_mark;

void ddpm_mem_account(int device, int64_t delta) {
  if (device < 0 || device >= MAX_DEV) return;
  int64_t v = __atomic_add_fetch(&mem_now[device], delta, __ATOMIC_RELAXED);
  if (delta > 0) {
    __atomic_add_fetch(&allocs_since_mark, 1, __ATOMIC_RELAXED);
    int64_t p = __atomic_load_n(&mem_peak[device], __ATOMIC_RELAXED);
    while (v > p && !__atomic_compare_exchange_n(&mem_peak[device], &p, v, 1, __ATOMIC_RELAXED,
                                                 __ATOMIC_RELAXED)) {
    }
  }
}

int64_t ddpm_memory_allocated(int device) {
  return device >= 0 && device < MAX_DEV ? __atomic_load_n(&mem_now[device], __ATOMIC_RELAXED) : 0;
}
int64_t ddpm_memory_peak(int device) {
  return device >= 0 && device < MAX_DEV ? __atomic_load_n(&mem_peak[device], __ATOMIC_RELAXED) : 0;
}
void ddpm_memory_reset_peak(int device) {
  if (device >= 0 && device < MAX_DEV) mem_peak[device] = mem_now[device];
}
int64_t ddpm_memory_allocs_since_mark(void) { return allocs_since_mark; }
void ddpm_memory_mark(void) { allocs_since_mark = 0; }

int ddpm_storage_new(ddpm_storage **out, size_t nbytes, int device) {
  const ddpm_backend *be = ddpm_backend_for(device);
  if (!be) return ddpm_check_device("allocate", device);
  ddpm_storage *s = calloc(1, sizeof *s);
  if (!s) return DDPM_FAIL(DDPM_ERR_OOM, "out of host memory for a storage header");
  s->refcount = 1;
  s->device = device;
  s->nbytes = nbytes;
  if (nbytes) {
    s->data = be->alloc(nbytes, device);
    if (!s->data) {
      free(s);
      if (ddpm_last_status() == DDPM_ERR_OOM) return DDPM_ERR_OOM; /* backend said why */
      return DDPM_FAIL(DDPM_ERR_OOM, "out of memory allocating %zu bytes on %s", nbytes,
                       ddpm_fmt_device(device));
    }
    ddpm_mem_account(device, (int64_t)nbytes);
  }
  *out = s;
  return DDPM_OK;
}

int ddpm_storage_wrap(ddpm_storage **out, void *data, size_t nbytes, int device,
                      void (*release)(ddpm_storage *), void *ctx) {
  ddpm_storage *s = calloc(1, sizeof *s);
  if (!s) return DDPM_FAIL(DDPM_ERR_OOM, "out of host memory for a storage header");
  s->refcount = 1;
  s->device = device;
  s->data = data;
  s->nbytes = nbytes;
  s->release = release;
  s->release_ctx = ctx;
  *out = s;
  return DDPM_OK;
}

void ddpm_storage_retain(ddpm_storage *s) { __atomic_add_fetch(&s->refcount, 1, __ATOMIC_RELAXED); }

void ddpm_storage_release(ddpm_storage *s) {
  if (!s || __atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
  if (s->release) {
    s->release(s);
  } else if (s->data) {
    const ddpm_backend *be = ddpm_backend_for(s->device);
    if (be) be->free(s->data, s->nbytes, s->device);
    ddpm_mem_account(s->device, -(int64_t)s->nbytes);
  }
  free(s);
}
