/* internal.h: the engine's private structures and helpers, shared by core, CPU and CUDA code. */
#ifndef DDPM_INTERNAL_H
#define DDPM_INTERNAL_H

#include "ddpm.h"
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DDPM_MAX_DIMS 8
#define DDPM_MAX_IN 8
#define DDPM_MAX_OUT 4
#define DDPM_MAX_SAVED 6
#define DDPM_ABI_VERSION 1

#define DDPM_INTERNAL __attribute__((visibility("hidden")))
/* Internal, but exported: the engine functions the CUDA backend (libddpm_cuda.so, loaded on first
 * CUDA use, cuda/backend_lazy.c) calls back into, and the two entry points libddpm looks up in it. */
#define DDPM_BACKEND_API __attribute__((visibility("default")))

/* ---- op ids, generated from ops.def ---------------------------------------------------------- */
typedef enum {
#define DDPM_OP(name, str, kind) DDPM_OP_##name,
#include "ops.def"
#undef DDPM_OP
  DDPM_OP_COUNT
} ddpm_op_id;

/* ---- storage and tensors ---------------------------------------------------------------------- */
typedef struct ddpm_storage ddpm_storage;
struct ddpm_storage {
  int refcount;
  int device;
  void *data;
  size_t nbytes;
  int64_t version;            /* bumped by every in-place write; checked by saved tensors */
  void (*release)(ddpm_storage *s); /* non-NULL for memory the engine did not allocate (mmap) */
  void *release_ctx;
};

typedef struct ddpm_node ddpm_node;
struct ddpm_tensor {
  int refcount;
  int dtype;
  int device;
  int ndim;
  int64_t shape[DDPM_MAX_DIMS];
  int64_t strides[DDPM_MAX_DIMS]; /* in elements */
  int64_t offset;                 /* in elements */
  ddpm_storage *storage;
  bool requires_grad;
  ddpm_node *grad_fn;             /* NULL for leaves */
  ddpm_tensor *grad;              /* accumulated gradient of a leaf */
};

/* ---- autograd graph --------------------------------------------------------------------------- */
typedef struct {
  int ndim, dtype, device;
  int64_t shape[DDPM_MAX_DIMS];
} ddpm_meta;

typedef struct {
  ddpm_node *node;   /* the input's grad_fn, or NULL */
  ddpm_tensor *leaf; /* the input itself when it is a leaf that requires grad */
} ddpm_edge;

struct ddpm_node {
  int refcount;
  int op;
  uint64_t seq;          /* creation order: inputs always have smaller seq than users */
  int nin;
  ddpm_edge *next;       /* nin entries */
  ddpm_meta *in_meta;    /* nin entries: shape/dtype/device of each input */
  ddpm_meta out_meta;
  int nsaved;
  ddpm_tensor *saved[DDPM_MAX_SAVED];
  int64_t saved_version[DDPM_MAX_SAVED];
  struct ddpm_replay *replay[DDPM_MAX_SAVED]; /* set where saved[k] is NULL but can be rebuilt */
  double f[8];
  int64_t i[16];
  bool released;         /* saved tensors freed after a backward without retain_graph */
  /* scratch used by one backward pass */
  uint64_t pass;
  ddpm_tensor *grad;
};

/* gin[k] gets a new reference for every k with needs_grad(n, k); NULL elsewhere. */
typedef int (*ddpm_backward_fn)(ddpm_node *n, ddpm_tensor *grad_out, ddpm_tensor **gin);

static inline bool ddpm_node_needs(const ddpm_node *n, int k) {
  return n->next[k].node != NULL || n->next[k].leaf != NULL;
}

/* ---- kernel calls ------------------------------------------------------------------------------- */
typedef struct ddpm_call {
  int op;
  int nin, nout;
  ddpm_tensor *in[DDPM_MAX_IN];
  ddpm_tensor *out[DDPM_MAX_OUT];
  double f[8];
  int64_t i[16];
  ddpm_tensor *const *list; /* variable-length inputs (cat) */
  int nlist;
} ddpm_call;

typedef int (*ddpm_kernel_fn)(ddpm_call *c);

typedef struct ddpm_backend {
  const char *name;
  void *(*alloc)(size_t nbytes, int device);
  void (*free)(void *p, size_t nbytes, int device);
  /* memcpy between any two devices (host = 0); synchronous from the caller's view */
  int (*memcpy)(void *dst, int dst_device, const void *src, int src_device, size_t nbytes);
  const ddpm_kernel_fn *kernels;
} ddpm_backend;

DDPM_INTERNAL const ddpm_backend *ddpm_backend_for(int device);
DDPM_INTERNAL extern const ddpm_backend ddpm_cpu_backend;
DDPM_BACKEND_API const ddpm_backend *ddpm_cuda_backend(void); /* NULL in a CPU-only build */
DDPM_BACKEND_API int ddpm_cuda_device_count_internal(void);
/* Why ddpm_cuda_backend() is NULL: built without CUDA, or libddpm_cuda.so failed to load. */
DDPM_INTERNAL const char *ddpm_cuda_unavailable_reason(void);
DDPM_BACKEND_API int ddpm_dispatch(ddpm_call *c);
/* DDPM_OK when device can be used, else a status and a message saying why not. */
DDPM_INTERNAL int ddpm_check_move(const char *op, const ddpm_tensor *t, int device);
DDPM_INTERNAL int ddpm_check_device(const char *op, int device);

/* ---- errors --------------------------------------------------------------------------------------- */
DDPM_BACKEND_API int ddpm_fail_at(int code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define DDPM_FAIL(code, ...) ddpm_fail_at((code), __FILE__, __LINE__, __VA_ARGS__)
#define DDPM_TRY(expr)            \
  do {                            \
    int st_ = (expr);             \
    if (st_ != DDPM_OK) return st_; \
  } while (0)
/* run a cleanup label on failure */
#define DDPM_CHECK(expr) \
  do {                   \
    st = (expr);         \
    if (st != DDPM_OK) goto done; \
  } while (0)

/* Formatting helpers for messages: each returns a thread-local buffer valid for a few calls. */
DDPM_INTERNAL const char *ddpm_fmt_shape(int ndim, const int64_t *shape);
DDPM_BACKEND_API const char *ddpm_fmt_tensor(const ddpm_tensor *t); /* "float32[2, 3] on cpu" */
DDPM_BACKEND_API const char *ddpm_fmt_device(int device);

/* ---- dtypes ------------------------------------------------------------------------------------------ */
static inline int ddpm_dsize(int dtype) {
  static const int sz[8] = {4, 8, 2, 2, 8, 4, 1, 1};
  return (dtype >= 0 && dtype < 8) ? sz[dtype] : 0;
}
static inline bool ddpm_is_float(int dtype) { return dtype >= DDPM_FLOAT32 && dtype <= DDPM_BFLOAT16; }
static inline bool ddpm_valid_dtype(int dtype) { return dtype >= 0 && dtype < 8; }
DDPM_BACKEND_API const char *ddpm_dname(int dtype);

static inline float ddpm_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint16_t ddpm_f32_to_bf16(float f) { /* round to nearest even, NaN kept quiet */
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
DDPM_INTERNAL float ddpm_f16_to_f32(uint16_t h);
DDPM_INTERNAL uint16_t ddpm_f32_to_f16(float f);

/* Read/write one element of any dtype as double (slow paths, printing, tests). */
DDPM_INTERNAL double ddpm_load_as_double(const void *p, int dtype);
DDPM_BACKEND_API void ddpm_store_from_double(void *p, int dtype, double v);

/* ---- storage ------------------------------------------------------------------------------------------- */
DDPM_INTERNAL int ddpm_storage_new(ddpm_storage **out, size_t nbytes, int device);
DDPM_INTERNAL void ddpm_storage_retain(ddpm_storage *s);
DDPM_BACKEND_API void ddpm_storage_release(ddpm_storage *s);
/* Wrap memory the engine does not own (e.g. an mmap); release(s) is called at the last release. */
DDPM_BACKEND_API int ddpm_storage_wrap(ddpm_storage **out, void *data, size_t nbytes, int device,
                                    void (*release)(ddpm_storage *), void *ctx);
DDPM_BACKEND_API void ddpm_mem_account(int device, int64_t delta);

/* ---- tensors --------------------------------------------------------------------------------------------- */
/* A fresh contiguous tensor with uninitialised data. */
DDPM_BACKEND_API int ddpm_tensor_new(ddpm_tensor **out, int ndim, const int64_t *shape, int dtype,
                                  int device);
DDPM_INTERNAL int ddpm_tensor_new_like(ddpm_tensor **out, const ddpm_tensor *t);
/* A new tensor header over t's storage with the given geometry (no autograd metadata). */
DDPM_BACKEND_API int ddpm_tensor_alias(ddpm_tensor **out, const ddpm_tensor *t, int ndim,
                                    const int64_t *shape, const int64_t *strides, int64_t offset);
DDPM_BACKEND_API void ddpm_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
DDPM_BACKEND_API int64_t ddpm_shape_numel(int ndim, const int64_t *shape);
DDPM_INTERNAL bool ddpm_same_shape(const ddpm_tensor *a, const ddpm_tensor *b);
DDPM_INTERNAL bool ddpm_has_internal_overlap(const ddpm_tensor *t);
static inline char *ddpm_ptr(const ddpm_tensor *t) {
  return (char *)t->storage->data + t->offset * ddpm_dsize(t->dtype);
}
/* Normalise a possibly negative dim against ndim (ndim_plus for unsqueeze-like ops). */
DDPM_INTERNAL int ddpm_wrap_dim(const char *op, int dim, int ndim, int *out);
DDPM_INTERNAL int ddpm_broadcast_shapes(const char *op, int na, const int64_t *sa, int nb,
                                        const int64_t *sb, int *nout, int64_t *sout);
DDPM_INTERNAL int ddpm_check_shape(const char *op, int ndim, const int64_t *shape);
DDPM_INTERNAL int ddpm_check_same_device(const char *op, const ddpm_tensor *a, const ddpm_tensor *b);
DDPM_BACKEND_API int ddpm_check_tensor(const char *op, const char *what, const ddpm_tensor *t);
/* Refuse a NULL out-parameter before any work is done. */
DDPM_INTERNAL int ddpm_check_out(const char *op, const void *out);
DDPM_INTERNAL void ddpm_bump_version(ddpm_tensor *t);

/* ---- op plumbing ------------------------------------------------------------------------------------------ */
DDPM_BACKEND_API const char *ddpm_opname(int op);
/* Reduce a gradient to an input's shape by summing over broadcast dims (returns new ref). */
DDPM_INTERNAL int ddpm_reduce_to(ddpm_tensor **out, ddpm_tensor *g, const ddpm_meta *m);
/* Run a unary/binary/scalar op through the engine (used by entry points and backward code). */
DDPM_INTERNAL int ddpm_unary_op(ddpm_tensor **out, int op, ddpm_tensor *x, double p0);
DDPM_INTERNAL int ddpm_binary_op(ddpm_tensor **out, int op, ddpm_tensor *a, ddpm_tensor *b);
DDPM_INTERNAL int ddpm_scalar_op(ddpm_tensor **out, int op, ddpm_tensor *x, double s, double s2);
DDPM_INTERNAL int ddpm_act_backward(ddpm_tensor **out, int fwd_op, ddpm_tensor *g, ddpm_tensor *x,
                                    double p0);
DDPM_INTERNAL int ddpm_sum_dims(ddpm_tensor **out, ddpm_tensor *x, uint32_t mask, int keepdim);
DDPM_INTERNAL int ddpm_zeros(ddpm_tensor **out, const ddpm_meta *m);
DDPM_INTERNAL int ddpm_cast(ddpm_tensor **out, ddpm_tensor *t, int dtype);
DDPM_INTERNAL void ddpm_meta_of(ddpm_meta *m, const ddpm_tensor *t);

/* ---- autograd recording ---------------------------------------------------------------------------------- */
DDPM_INTERNAL bool ddpm_ag_enabled(void);
/* Start a node for an op whose inputs are in[0..nin); NULL when no input needs a gradient. */
DDPM_INTERNAL ddpm_node *ddpm_ag_begin(int op, int nin, ddpm_tensor *const *in);
/* Save a tensor for backward (a detached alias, so saving an output makes no cycle). */
DDPM_INTERNAL int ddpm_ag_save(ddpm_node *n, ddpm_tensor *t);
/* Save t like ddpm_ag_save when t is needed as is; when t is (a view of) the output of a norm
 * node, whose forward is cheap to replay from what that node saved anyway, keep only the recipe:
 * the activation is then freed with its last reference instead of living until this node's
 * backward (DDPM_SAVE_REPLAY=0 turns this off).  Read back with ddpm_ag_saved. */
DDPM_INTERNAL int ddpm_ag_save_replayable(ddpm_node *n, ddpm_tensor *t);
/* saved tensor k of n as a new reference: the saved one, or its replay (NULL if none saved) */
DDPM_INTERNAL int ddpm_ag_saved(ddpm_node *n, int k, ddpm_tensor **out);
/* Replay node p's forward output (a new contiguous tensor) from its saved tensors: the norms. */
DDPM_INTERNAL bool ddpm_norm_replayable(int op);
DDPM_INTERNAL int ddpm_norm_replay(ddpm_node *p, ddpm_tensor **y);
/* Attach the node to its output (takes over the reference to n). */
DDPM_INTERNAL void ddpm_ag_finish(ddpm_node *n, ddpm_tensor *out);
DDPM_INTERNAL void ddpm_node_release(ddpm_node *n);
DDPM_INTERNAL void ddpm_node_retain(ddpm_node *n);
/* Refuse an in-place write into a tensor a graph needs or a leaf requiring grad. */
DDPM_INTERNAL int ddpm_check_inplace(const char *op, const ddpm_tensor *t);
DDPM_INTERNAL extern const ddpm_backward_fn ddpm_backward_table[DDPM_OP_COUNT];

/* ---- threads ---------------------------------------------------------------------------------------------------- */
DDPM_INTERNAL int ddpm_threads(void);

/* ---- random ------------------------------------------------------------------------------------------------------ */
struct ddpm_generator {
  uint64_t seed;
  uint64_t offset; /* counters consumed so far */
};
/* Reserve n counters; the kernel draws element i from counter (base + i). */
DDPM_INTERNAL uint64_t ddpm_generator_reserve(ddpm_generator *g, uint64_t n);
/* Philox4x32-10: the shared definition of every random stream (CPU and CUDA). */
static inline void ddpm_philox(uint64_t seed, uint64_t counter, uint32_t out[4]) {
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

#ifdef __cplusplus
}
#endif
#endif
