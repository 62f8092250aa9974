/* status.c: thread-local error messages ("what, shapes/dtypes/devices, at file:line"). */
#include "internal.h"
#include <stdio.h>

static _Thread_local char last_msg[1024];
static _Thread_local int last_code;

int ddpm_fail_at(int code, const char *file, int line, const char *fmt, ...) {
  char msg[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* Keep the path relative to the repo so messages read the same on every machine. */
  const char *rel = strstr(file, "engine/");
  if (!rel) rel = strstr(file, "cuda/");
  snprintf(last_msg, sizeof last_msg, "%s (at %s:%d)", msg, rel ? rel : file, line);
  last_code = code;
  return code;
}

const char *ddpm_last_error(void) { return last_msg[0] ? last_msg : "no error"; }
int ddpm_last_status(void) { return last_code; }
void ddpm_clear_error(void) {
  last_msg[0] = 0;
  last_code = 0;
}

int ddpm_abi_version(void) { return DDPM_ABI_VERSION; }
const char *ddpm_version(void) { return "0.1.0"; }

/* A small ring of buffers so one message can format several shapes. */
static _Thread_local char fmt_ring[8][160];
static _Thread_local int fmt_next;
static char *fmt_buf(void) {
  char *b = fmt_ring[fmt_next];
  fmt_next = (fmt_next + 1) & 7;
  return b;
}

const char *ddpm_fmt_shape(int ndim, const int64_t *shape) {
  char *b = fmt_buf();
  int n = snprintf(b, 160, "[");
  for (int i = 0; i < ndim && n < 150; i++)
    n += snprintf(b + n, 160 - n, i ? ", %lld" : "%lld", (long long)shape[i]);
  snprintf(b + n, 160 - n, "]");
  return b;
}

const char *ddpm_fmt_device(int device) {
  if (device == 0) return "cpu";
  char *b = fmt_buf();
  snprintf(b, 160, "cuda:%d", device - 1);
  return b;
}

const char *ddpm_fmt_tensor(const ddpm_tensor *t) {
  if (!t) return "nil";
  char *b = fmt_buf();
  snprintf(b, 160, "%s%s on %s", ddpm_dname(t->dtype), ddpm_fmt_shape(t->ndim, t->shape),
           ddpm_fmt_device(t->device));
  return b;
}
