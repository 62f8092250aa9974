/* dispatch.c: op names, backend selection by device, and the one place kernels are called. */
#include "internal.h"
#include <stdio.h>

static const char *op_names[DDPM_OP_COUNT] = {
#define DDPM_OP(n, s, kind) [DDPM_OP_##n] = s,
#include "ops.def"
#undef DDPM_OP
};

const char *ddpm_opname(int op) { return op >= 0 && op < DDPM_OP_COUNT ? op_names[op] : "unknown-op"; }
const char *ddpm_op_name(int op) { return op >= 0 && op < DDPM_OP_COUNT ? op_names[op] : NULL; }
int ddpm_op_count(void) { return DDPM_OP_COUNT; }

const ddpm_backend *ddpm_backend_for(int device) {
  if (device == DDPM_CPU) return &ddpm_cpu_backend;
  if (device >= DDPM_CUDA0) {
    const ddpm_backend *cu = ddpm_cuda_backend();
    if (cu && device - DDPM_CUDA0 < ddpm_cuda_device_count_internal()) return cu;
  }
  return NULL;
}

int ddpm_cuda_built(void) { return ddpm_cuda_backend() != NULL; }

/* Why a device cannot be used, as a status and a reason phrase (NULL reason when usable). */
static int device_problem(int device, char *why, size_t n) {
  if (ddpm_backend_for(device)) return DDPM_OK;
  if (device < 0 || device > 16) {
    snprintf(why, n, "invalid device id %d (0 is the cpu, 1 + k is cuda:k)", device);
    return DDPM_ERR_DEVICE;
  }
  if (!ddpm_cuda_backend()) {
    snprintf(why, n, "%s", ddpm_cuda_unavailable_reason());
    return DDPM_ERR_UNSUPPORTED;
  }
  int k = ddpm_cuda_device_count_internal();
  if (k == 0) snprintf(why, n, "no CUDA GPU is available on this machine");
  else snprintf(why, n, "this machine has %d CUDA device%s", k, k == 1 ? "" : "s");
  return DDPM_ERR_DEVICE;
}

int ddpm_check_device(const char *op, int device) {
  char why[128];
  int st = device_problem(device, why, sizeof why);
  if (st) return DDPM_FAIL(st, "%s: cannot use %s: %s", op, ddpm_fmt_device(device), why);
  return DDPM_OK;
}

int ddpm_check_move(const char *op, const ddpm_tensor *t, int device) {
  char why[128];
  int st = device_problem(device, why, sizeof why);
  if (st) return DDPM_FAIL(st, "%s: cannot move %s to %s: %s", op, ddpm_fmt_tensor(t), ddpm_fmt_device(device), why);
  return DDPM_OK;
}
/* engine/src/profile.c: per-op timing, a single well-predicted branch while it is off */
DDPM_INTERNAL extern int ddpm_profile_on;
DDPM_INTERNAL int ddpm_profile_call(ddpm_kernel_fn fn, ddpm_call *c);

int ddpm_dispatch(ddpm_call *c) {
  ddpm_tensor *first = c->nout ? c->out[0] : c->in[0];
  int device = first->device;
  for (int k = 0; k < c->nin; k++)
    if (c->in[k] && c->in[k]->device != device)
      return DDPM_FAIL(DDPM_ERR_DEVICE, "%s: expected all tensors on %s, but input %d is %s", ddpm_opname(c->op),
                       ddpm_fmt_device(device), k + 1, ddpm_fmt_tensor(c->in[k]));
  for (int k = 0; k < c->nlist; k++)
    if (c->list[k]->device != device)
      return DDPM_FAIL(DDPM_ERR_DEVICE, "%s: expected all tensors on %s, but tensor %d is %s", ddpm_opname(c->op),
                       ddpm_fmt_device(device), k + 1, ddpm_fmt_tensor(c->list[k]));
  const ddpm_backend *be = ddpm_backend_for(device);
  if (!be) return ddpm_check_device(ddpm_opname(c->op), device);
  ddpm_kernel_fn fn = be->kernels[c->op];
  if (!fn)
    return DDPM_FAIL(DDPM_ERR_UNSUPPORTED, "%s: no kernel on the %s backend", ddpm_opname(c->op), be->name);
  if (__builtin_expect(ddpm_profile_on, 0)) return ddpm_profile_call(fn, c);
  return fn(c);
}
