/* autocast.c: thread-local autocast state and the cast policy (compiled in every build; autocast
 * on 'cpu' works too, as torch.autocast('cpu', bfloat16) does). */
#include "autocast.h"

_Thread_local unsigned ddpm_autocast_mask;       /* bit k: device type k enabled */
static _Thread_local int autocast_dtype[2] = {-1, -1}; /* -1: the device type's default */

/* PyTorch's defaults: float16 on CUDA, bfloat16 on the CPU */
static int dtype_of(int kind) {
  int d = autocast_dtype[kind];
  if (d >= 0) return d;
  return kind == 1 ? DDPM_FLOAT16 : DDPM_BFLOAT16;
}

int ddpm_autocast_set(int device_type, int enabled, int dtype) {
  if (device_type != 0 && device_type != 1)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "autocast: device_type %d; expected 0 (cpu) or 1 (cuda)", device_type);
  if (dtype >= 0 && dtype != DDPM_FLOAT16 && dtype != DDPM_BFLOAT16 && dtype != DDPM_FLOAT32)
    return DDPM_FAIL(DDPM_ERR_DTYPE, "autocast: dtype %s is not supported; expected bfloat16 or float16",
                     ddpm_dname(dtype));
  if (enabled) ddpm_autocast_mask |= 1u << device_type;
  else ddpm_autocast_mask &= ~(1u << device_type);
  autocast_dtype[device_type] = dtype;
  return DDPM_OK;
}

int ddpm_autocast_enabled(int device_type) {
  return (device_type == 0 || device_type == 1) && ((ddpm_autocast_mask >> device_type) & 1u);
}

int ddpm_autocast_dtype(int device_type) {
  if (device_type != 0 && device_type != 1) return -1;
  return dtype_of(device_type);
}

static int target_of(int policy, const ddpm_tensor *t) {
  if (!t || !ddpm_is_float(t->dtype) || t->dtype == DDPM_FLOAT64) return -1;
  int kind = t->device == DDPM_CPU ? 0 : 1;
  if (!((ddpm_autocast_mask >> kind) & 1u)) return -1;
  if (policy == DDPM_AUTOCAST_LOWER_GPU && kind == 0) return -1;
  if (policy == DDPM_AUTOCAST_LOWER_BF16_CPU && kind == 0 && dtype_of(0) != DDPM_BFLOAT16) return -1;
  int to = policy == DDPM_AUTOCAST_FP32 ? DDPM_FLOAT32 : dtype_of(kind);
  return to == t->dtype ? -1 : to;
}

/* the target of t under policy, FP32_GPU resolved per device */
static int target_for(int policy, const ddpm_tensor *t) {
  if (policy == DDPM_AUTOCAST_FP32_GPU) return t && t->device != DDPM_CPU ? target_of(DDPM_AUTOCAST_FP32, t) : -1;
  return target_of(policy, t);
}

int ddpm_autocast_inputs(int policy, int n, ddpm_tensor *const *in, ddpm_tensor **cast, int *ncast) {
  *ncast = 0;
  int any = 0;
  for (int k = 0; k < n; k++) any |= target_for(policy, in[k]) >= 0;
  if (!any) return DDPM_OK;
  for (int k = 0; k < n; k++) cast[k] = NULL;
  for (int k = 0; k < n; k++) {
    int to = target_for(policy, in[k]);
    if (to < 0) {
      if (in[k]) ddpm_tensor_retain(in[k]);
      cast[k] = in[k];
      continue;
    }
    int st = ddpm_cast(&cast[k], in[k], to);
    if (st) {
      ddpm_autocast_release(k, cast);
      return st;
    }
  }
  *ncast = n;
  return DDPM_OK;
}

void ddpm_autocast_release(int n, ddpm_tensor **cast) {
  for (int k = 0; k < n; k++) ddpm_tensor_release(cast[k]);
}
