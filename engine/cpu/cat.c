/* cat.c: concatenation: each input is copied into its slice of the output. */
#include "cpu.h"

int cpu_CAT(ddpm_call *c) {
  ddpm_tensor *out = c->out[0];
  int dim = (int)c->i[0];
  int64_t off = 0;
  for (int k = 0; k < c->nlist; k++) {
    ddpm_tensor *t = c->list[k];
    if (t->ndim == 1 && t->shape[0] == 0 && out->ndim != 1) continue; /* legacy empty tensors */
    ddpm_tensor *slot = NULL;
    int64_t shape[DDPM_MAX_DIMS];
    memcpy(shape, out->shape, sizeof shape);
    shape[dim] = t->shape[dim];
    DDPM_TRY(ddpm_tensor_alias(&slot, out, out->ndim, shape, out->strides, out->offset + off * out->strides[dim]));
    cpu_copy_strided(slot, t);
    ddpm_tensor_release(slot);
    off += t->shape[dim];
  }
  return DDPM_OK;
}
