/* backward.c: the one backward table, indexed by op id and generated from ops.def; every K and
 * V op must define bw_NAME (a missing one fails the link), N ops have none. */
#include "internal.h"

#define BW_K(n) DDPM_INTERNAL int bw_##n(ddpm_node *, ddpm_tensor *, ddpm_tensor **);
#define BW_V(n) BW_K(n)
#define BW_N(n)
#define DDPM_OP(n, s, kind) BW_##kind(n)
#include "ops.def"
#undef DDPM_OP

#define BT_K(n) [DDPM_OP_##n] = bw_##n,
#define BT_V(n) BT_K(n)
#define BT_N(n) [DDPM_OP_##n] = NULL,
const ddpm_backward_fn ddpm_backward_table[DDPM_OP_COUNT] = {
#define DDPM_OP(n, s, kind) BT_##kind(n)
#include "ops.def"
#undef DDPM_OP
};
_Static_assert(sizeof ddpm_backward_table / sizeof ddpm_backward_table[0] == DDPM_OP_COUNT,
               "backward table must cover every op");
