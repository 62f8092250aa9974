/* softmax.c: CPU softmax and log_softmax along one dim, forward and backward.  The input is seen
 * as [outer, D, inner]; rows along a last dim are contiguous, other dims are gathered into a
 * per-thread buffer.  The row functions are shared with attention.c. */
#include "nn_cpu.h"
#include <math.h>

#define R float
#define SUF(n) n##_f32
#define EXP expf
#define LOG log
#include "softmax_impl.h"
#undef R
#undef SUF
#undef EXP
#undef LOG
#define R double
#define SUF(n) n##_f64
#define EXP exp
#define LOG log
#include "softmax_impl.h"
#undef R
#undef SUF
#undef EXP
#undef LOG

/* x viewed as [outer, D, inner] around dim d */
static void split_dims(const ddpm_tensor *x, int d, int64_t *D, int64_t *inner) {
  *D = x->ndim ? x->shape[d] : 1;
  int64_t in = 1;
  for (int k = d + 1; k < x->ndim; k++) in *= x->shape[k];
  *inner = in;
}

static int run(ddpm_call *c, bool log, bool bwd) {
  ddpm_tensor *x = bwd ? c->in[1] : c->in[0], *gy = bwd ? c->in[0] : NULL, *y = c->out[0];
  DDPM_TRY(cpu_nn_dtype(log ? "log_softmax" : "softmax", x->dtype));
  int64_t D, inner, n = ddpm_tensor_numel(x);
  split_dims(x, (int)c->i[0], &D, &inner);
  if (n == 0 || D == 0) return DDPM_OK;
  int64_t rows = n / D, grain = 32768 / D > 0 ? 32768 / D : 1;
  int failed;
  if (x->dtype == DDPM_FLOAT32) {
    sm_ctx_f32 k = {(const float *)ddpm_ptr(x), gy ? (const float *)ddpm_ptr(gy) : NULL, (float *)ddpm_ptr(y), D,
                    inner, log, bwd, 0};
    cpu_parallel_for(rows, grain, sm_range_f32, &k);
    failed = k.failed;
  } else {
    sm_ctx_f64 k = {(const double *)ddpm_ptr(x), gy ? (const double *)ddpm_ptr(gy) : NULL, (double *)ddpm_ptr(y), D,
                    inner, log, bwd, 0};
    cpu_parallel_for(rows, grain, sm_range_f64, &k);
    failed = k.failed;
  }
  return failed ? DDPM_FAIL(DDPM_ERR_OOM, "softmax: out of memory for a row buffer") : DDPM_OK;
}

int cpu_SOFTMAX(ddpm_call *c) { return run(c, false, false); }
int cpu_LOG_SOFTMAX(ddpm_call *c) { return run(c, true, false); }
int cpu_SOFTMAX_BWD(ddpm_call *c) { return run(c, c->i[1] != 0, true); }
