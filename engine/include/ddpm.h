/* ddpm.h: the one public header of libddpm, read by the C compiler and (its FFI region) by LuaJIT. */
#ifndef DDPM_H
#define DDPM_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Only the declarations between the markers below are exported and fed to ffi.cdef verbatim,
 * so the region holds plain C that LuaJIT accepts: no macros, no #if, no structs by value,
 * enums with explicit append-only values.
 *
 * Conventions (DESIGN.md section 3):
 *  - every fallible function returns a status (DDPM_OK == 0) and writes results through out;
 *  - a tensor written through an out-parameter is a new reference the caller releases once;
 *    tensor arguments are borrowed;
 *  - ddpm_last_error() describes the last failure of this thread: what, shapes/dtypes/devices,
 *    and the library file:line that refused;
 *  - dims are 0-based, negative dims count from the end; shapes are int64 arrays;
 *  - devices are ints: 0 = cpu, 1 + k = cuda:k.                                             */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* DDPM_FFI_BEGIN */
typedef struct ddpm_tensor ddpm_tensor;
typedef struct ddpm_generator ddpm_generator;

enum ddpm_status {
  DDPM_OK = 0, DDPM_ERR_ARGUMENT = 1, DDPM_ERR_SHAPE = 2, DDPM_ERR_DTYPE = 3, DDPM_ERR_DEVICE = 4,
  DDPM_ERR_OOM = 5, DDPM_ERR_UNSUPPORTED = 6, DDPM_ERR_IO = 7, DDPM_ERR_FORMAT = 8,
  DDPM_ERR_AUTOGRAD = 9, DDPM_ERR_BACKEND = 10, DDPM_ERR_INDEX = 11, DDPM_ERR_INTERNAL = 12
};
enum ddpm_dtype {
  DDPM_FLOAT32 = 0, DDPM_FLOAT64 = 1, DDPM_FLOAT16 = 2, DDPM_BFLOAT16 = 3,
  DDPM_INT64 = 4, DDPM_INT32 = 5, DDPM_UINT8 = 6, DDPM_BOOL = 7
};
enum ddpm_device_kind { DDPM_CPU = 0, DDPM_CUDA0 = 1 };

/* ---- library ---------------------------------------------------------------------------- */
int ddpm_abi_version(void);
const char *ddpm_version(void);
const char *ddpm_last_error(void);
int ddpm_last_status(void);
void ddpm_clear_error(void);
int ddpm_cuda_built(void);
int ddpm_set_num_threads(int n);
int ddpm_get_num_threads(void);
int ddpm_op_count(void);
const char *ddpm_op_name(int op);
const char *ddpm_dtype_name(int dtype);
int ddpm_dtype_size(int dtype);
int ddpm_dtype_is_floating(int dtype);
int ddpm_promote_types(int a, int b);
/* per-op profiler (engine/src/profile.c; also on with DDPM_PROFILE=1): calls and self seconds of
 * each op's kernels; enable returns the previous state, wall the seconds profiled so far */
int ddpm_profile_enable(int on);
void ddpm_profile_reset(void);
int ddpm_profile_read(int op, int64_t *calls, double *seconds);
double ddpm_profile_wall(void);

/* ---- memory accounting (bytes; device 0 = host) ------------------------------------------ */
int64_t ddpm_memory_allocated(int device);
int64_t ddpm_memory_peak(int device);
void ddpm_memory_reset_peak(int device);
int64_t ddpm_memory_allocs_since_mark(void);
void ddpm_memory_mark(void);

/* ---- tensor lifetime and metadata ----------------------------------------------------- */
void ddpm_tensor_retain(ddpm_tensor *t);
void ddpm_tensor_release(ddpm_tensor *t);
int ddpm_tensor_ndim(const ddpm_tensor *t);
int ddpm_tensor_shape(const ddpm_tensor *t, int64_t *shape);
int ddpm_tensor_strides(const ddpm_tensor *t, int64_t *strides);
int64_t ddpm_tensor_numel(const ddpm_tensor *t);
int64_t ddpm_tensor_offset(const ddpm_tensor *t);
int ddpm_tensor_dtype(const ddpm_tensor *t);
int ddpm_tensor_device(const ddpm_tensor *t);
int ddpm_tensor_is_contiguous(const ddpm_tensor *t);
void *ddpm_tensor_data(const ddpm_tensor *t);
int64_t ddpm_tensor_version(const ddpm_tensor *t);
int ddpm_tensor_same_storage(const ddpm_tensor *a, const ddpm_tensor *b);
int ddpm_tensor_item(const ddpm_tensor *t, double *out);
int ddpm_tensor_to_doubles(const ddpm_tensor *t, double *dst, int64_t n);
int ddpm_tensor_to_bytes(const ddpm_tensor *t, void *dst, int64_t nbytes);

/* ---- autograd ------------------------------------------------------------------------------ */
int ddpm_tensor_requires_grad(const ddpm_tensor *t);
int ddpm_tensor_set_requires_grad(ddpm_tensor *t, int flag);
int ddpm_tensor_is_leaf(const ddpm_tensor *t);
int ddpm_tensor_get_grad(ddpm_tensor *t, ddpm_tensor **out);
int ddpm_tensor_set_grad(ddpm_tensor *t, ddpm_tensor *grad);
const char *ddpm_tensor_grad_fn_name(const ddpm_tensor *t);
int ddpm_grad_enabled(void);
void ddpm_set_grad_enabled(int enabled);
int ddpm_backward(ddpm_tensor *root, ddpm_tensor *grad, int retain_graph);
/* one backward pass from several roots (grads may be NULL, or hold NULL for scalar roots) */
int ddpm_autograd_backward(int n, ddpm_tensor *const *roots, ddpm_tensor *const *grads, int retain_graph);
int ddpm_autograd_grad(int noutputs, ddpm_tensor *const *outputs, ddpm_tensor *const *grad_outputs,
                       int ninputs, ddpm_tensor *const *inputs, ddpm_tensor **grads,
                       int retain_graph, int allow_unused);

/* ---- creation -------------------------------------------------------------------------------- */
int ddpm_empty(ddpm_tensor **out, int ndim, const int64_t *shape, int dtype, int device);
int ddpm_full(ddpm_tensor **out, int ndim, const int64_t *shape, double value, int dtype, int device);
int ddpm_arange(ddpm_tensor **out, double start, double end, double step, int dtype, int device);
int ddpm_linspace(ddpm_tensor **out, double start, double end, int64_t steps, int dtype, int device);
int ddpm_from_doubles(ddpm_tensor **out, const double *values, int ndim, const int64_t *shape,
                      int dtype, int device);
int ddpm_from_bytes(ddpm_tensor **out, const void *data, int64_t nbytes, int ndim,
                    const int64_t *shape, int dtype, int device);

/* ---- copies, conversion --------------------------------------------------------------------- */
int ddpm_contiguous(ddpm_tensor **out, ddpm_tensor *t);
int ddpm_clone(ddpm_tensor **out, ddpm_tensor *t);
int ddpm_to(ddpm_tensor **out, ddpm_tensor *t, int dtype, int device);
int ddpm_detach(ddpm_tensor **out, ddpm_tensor *t);
int ddpm_copy_(ddpm_tensor *dst, ddpm_tensor *src);
int ddpm_fill_(ddpm_tensor *t, double value);

/* ---- views (zero-copy) ---------------------------------------------------------------------- */
int ddpm_view(ddpm_tensor **out, ddpm_tensor *t, int ndim, const int64_t *shape);
int ddpm_reshape(ddpm_tensor **out, ddpm_tensor *t, int ndim, const int64_t *shape);
int ddpm_permute(ddpm_tensor **out, ddpm_tensor *t, int ndim, const int64_t *dims);
int ddpm_transpose(ddpm_tensor **out, ddpm_tensor *t, int dim0, int dim1);
int ddpm_expand(ddpm_tensor **out, ddpm_tensor *t, int ndim, const int64_t *shape);
int ddpm_slice(ddpm_tensor **out, ddpm_tensor *t, int dim, int64_t start, int64_t end, int64_t step);
int ddpm_narrow(ddpm_tensor **out, ddpm_tensor *t, int dim, int64_t start, int64_t length);
int ddpm_select(ddpm_tensor **out, ddpm_tensor *t, int dim, int64_t index);
int ddpm_unsqueeze(ddpm_tensor **out, ddpm_tensor *t, int dim);
int ddpm_squeeze(ddpm_tensor **out, ddpm_tensor *t, int dim);
int ddpm_squeeze_all(ddpm_tensor **out, ddpm_tensor *t);

/* ---- elementwise (PyTorch broadcasting and type promotion) -------------------------------- */
int ddpm_add(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_sub(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_mul(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_div(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_pow(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_maximum(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_minimum(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_eq(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_ne(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_lt(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_le(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_gt(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_ge(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_where(ddpm_tensor **out, ddpm_tensor *cond, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_add_scalar(ddpm_tensor **out, ddpm_tensor *x, double s);
int ddpm_mul_scalar(ddpm_tensor **out, ddpm_tensor *x, double s);
int ddpm_div_scalar(ddpm_tensor **out, ddpm_tensor *x, double s);
int ddpm_rdiv_scalar(ddpm_tensor **out, ddpm_tensor *x, double s);
int ddpm_pow_scalar(ddpm_tensor **out, ddpm_tensor *x, double s);
int ddpm_rpow_scalar(ddpm_tensor **out, ddpm_tensor *x, double s);
int ddpm_clamp(ddpm_tensor **out, ddpm_tensor *x, double lo, double hi);
int ddpm_neg(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_abs(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_sign(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_exp(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_log(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_sqrt(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_rsqrt(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_sin(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_cos(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_tanh(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_sigmoid(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_relu(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_silu(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_gelu(ddpm_tensor **out, ddpm_tensor *x, int tanh_approx);
int ddpm_floor(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_ceil(ddpm_tensor **out, ddpm_tensor *x);
int ddpm_round(ddpm_tensor **out, ddpm_tensor *x);
/* in place: a op= b, refused on tensors a live graph needs */
int ddpm_add_(ddpm_tensor *a, ddpm_tensor *b, double alpha);
int ddpm_mul_(ddpm_tensor *a, ddpm_tensor *b);
int ddpm_div_(ddpm_tensor *a, ddpm_tensor *b);
int ddpm_add_scalar_(ddpm_tensor *a, double s);
int ddpm_mul_scalar_(ddpm_tensor *a, double s);
int ddpm_clamp_(ddpm_tensor *a, double lo, double hi);

/* ---- reductions (ndims == 0: all dims) ------------------------------------------------------- */
int ddpm_sum(ddpm_tensor **out, ddpm_tensor *x, int ndims, const int64_t *dims, int keepdim);
int ddpm_mean(ddpm_tensor **out, ddpm_tensor *x, int ndims, const int64_t *dims, int keepdim);
int ddpm_var(ddpm_tensor **out, ddpm_tensor *x, int ndims, const int64_t *dims, double correction,
             int keepdim);
int ddpm_amax(ddpm_tensor **out, ddpm_tensor *x, int ndims, const int64_t *dims, int keepdim);
int ddpm_amin(ddpm_tensor **out, ddpm_tensor *x, int ndims, const int64_t *dims, int keepdim);
int ddpm_max_dim(ddpm_tensor **values, ddpm_tensor **indices, ddpm_tensor *x, int dim, int keepdim);
int ddpm_min_dim(ddpm_tensor **values, ddpm_tensor **indices, ddpm_tensor *x, int dim, int keepdim);
int ddpm_argmax(ddpm_tensor **out, ddpm_tensor *x, int dim, int keepdim, int all);
int ddpm_argmin(ddpm_tensor **out, ddpm_tensor *x, int dim, int keepdim, int all);

/* ---- linear algebra --------------------------------------------------------------------------- */
int ddpm_matmul(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_bmm(ddpm_tensor **out, ddpm_tensor *a, ddpm_tensor *b);
int ddpm_linear(ddpm_tensor **out, ddpm_tensor *x, ddpm_tensor *weight, ddpm_tensor *bias);
/* the CPU's bfloat16 GEMM path of this process: "amx", "avx512_bf16" or "generic" (DDPM_CPU_ISA=
 * avx512 skips AMX, DDPM_CPU_ISA=generic forces the portable path) */
const char *ddpm_cpu_bf16_kernel(void);

/* ---- joining ----------------------------------------------------------------------------------- */
int ddpm_cat(ddpm_tensor **out, int n, ddpm_tensor *const *tensors, int dim);
int ddpm_stack(ddpm_tensor **out, int n, ddpm_tensor *const *tensors, int dim);

/* ---- random numbers: counter-based Philox4x32-10, identical streams on every device -------- */
int ddpm_generator_new(ddpm_generator **out, uint64_t seed);
void ddpm_generator_free(ddpm_generator *g);
ddpm_generator *ddpm_default_generator(void);
void ddpm_generator_manual_seed(ddpm_generator *g, uint64_t seed);
uint64_t ddpm_generator_seed(const ddpm_generator *g);
uint64_t ddpm_generator_offset(const ddpm_generator *g);
void ddpm_generator_set_state(ddpm_generator *g, uint64_t seed, uint64_t offset);
int ddpm_uniform_(ddpm_tensor *t, double lo, double hi, ddpm_generator *g);
int ddpm_normal_(ddpm_tensor *t, double mean, double std, ddpm_generator *g);
int ddpm_randint_(ddpm_tensor *t, int64_t lo, int64_t hi, ddpm_generator *g);
int ddpm_bernoulli(ddpm_tensor **out, ddpm_tensor *probs, ddpm_generator *g);
int ddpm_randperm(ddpm_tensor **out, int64_t n, int dtype, int device, ddpm_generator *g);
int ddpm_multinomial(ddpm_tensor **out, ddpm_tensor *probs, int64_t num_samples, int replacement,
                     ddpm_generator *g);

/* ---- indexing ---------------------------------------------------------------------------------- */
int ddpm_index_select(ddpm_tensor **out, ddpm_tensor *x, int dim, ddpm_tensor *index);
int ddpm_index_add_(ddpm_tensor *x, int dim, ddpm_tensor *index, ddpm_tensor *src);

/* ---- nn: convolution, normalisation, activations, attention, resampling, losses --------------- */
enum ddpm_reduction { DDPM_REDUCTION_NONE = 0, DDPM_REDUCTION_MEAN = 1, DDPM_REDUCTION_SUM = 2 };
enum ddpm_pad_mode { DDPM_PAD_CONSTANT = 0, DDPM_PAD_REFLECT = 1, DDPM_PAD_REPLICATE = 2, DDPM_PAD_CIRCULAR = 3 };
/* DDPM_INTERP_LINEAR is linear, bilinear or trilinear by the number of resized dims */
enum ddpm_interp_mode { DDPM_INTERP_NEAREST = 0, DDPM_INTERP_NEAREST_EXACT = 1, DDPM_INTERP_LINEAR = 2 };
/* x [N, C, H, W], weight [O, C/groups, kh, kw], bias [O] or NULL; stride, padding, dilation hold
 * (height, width) */
int ddpm_conv2d(ddpm_tensor **out, ddpm_tensor *x, ddpm_tensor *weight, ddpm_tensor *bias, const int64_t *stride,
                const int64_t *padding, const int64_t *dilation, int64_t groups);
/* x [N, C, *]; weight, bias [C] or NULL.  group_norm_silu = silu(group_norm(...)) in one pass */
int ddpm_group_norm(ddpm_tensor **out, ddpm_tensor *x, int64_t num_groups, ddpm_tensor *weight, ddpm_tensor *bias,
                    double eps);
int ddpm_group_norm_silu(ddpm_tensor **out, ddpm_tensor *x, int64_t num_groups, ddpm_tensor *weight,
                         ddpm_tensor *bias, double eps);
/* normalises over the trailing nnorm dims, which must equal normalized_shape; weight, bias of that shape or NULL */
int ddpm_layer_norm(ddpm_tensor **out, ddpm_tensor *x, int nnorm, const int64_t *normalized_shape,
                    ddpm_tensor *weight, ddpm_tensor *bias, double eps);
int ddpm_softmax(ddpm_tensor **out, ddpm_tensor *x, int dim);
int ddpm_log_softmax(ddpm_tensor **out, ddpm_tensor *x, int dim);
/* q [..., Lq, E], k [..., Lk, E], v [..., Lk, Ev] with the same leading dims (3-D or 4-D);
 * attn_mask NULL, bool (true = take part) or float (added), broadcastable to [..., Lq, Lk];
 * scale NaN = 1/sqrt(E); g NULL = the default generator (used only when dropout_p > 0) */
int ddpm_scaled_dot_product_attention(ddpm_tensor **out, ddpm_tensor *q, ddpm_tensor *k, ddpm_tensor *v,
                                      ddpm_tensor *attn_mask, double dropout_p, int is_causal, double scale,
                                      ddpm_generator *g);
/* resize the trailing nsize dims of x [N, C, ...] to size; scale_factor (NULL or nsize values, 0 =
 * unset) is what PyTorch uses for the source index when the caller gave scale factors */
int ddpm_interpolate(ddpm_tensor **out, ddpm_tensor *x, int nsize, const int64_t *size, const double *scale_factor,
                     int mode, int align_corners);
/* pad holds (left, right) pairs from the last dim backwards, as torch.nn.functional.pad */
int ddpm_pad(ddpm_tensor **out, ddpm_tensor *x, int npad, const int64_t *pad, int mode, double value);
int ddpm_dropout(ddpm_tensor **out, ddpm_tensor *x, double p, int training, ddpm_generator *g);
int ddpm_mse_loss(ddpm_tensor **out, ddpm_tensor *input, ddpm_tensor *target, int reduction);
int ddpm_l1_loss(ddpm_tensor **out, ddpm_tensor *input, ddpm_tensor *target, int reduction);
int ddpm_smooth_l1_loss(ddpm_tensor **out, ddpm_tensor *input, ddpm_tensor *target, int reduction, double beta);
/* input [N, C] or [N, C, d...] (log-probabilities), target int64 [N] or [N, d...]; weight [C] or NULL */
int ddpm_nll_loss(ddpm_tensor **out, ddpm_tensor *input, ddpm_tensor *target, ddpm_tensor *weight,
                  int64_t ignore_index, int reduction);
/* int64 [..., num_classes]; num_classes < 0: max(index) + 1 */
int ddpm_one_hot(ddpm_tensor **out, ddpm_tensor *index, int64_t num_classes);

/* ---- optimizers ----------------------------------------------------------------------------------- */
/* Fused in-place updates, one call over n parameters (an optimizer's param group).  The arrays
 * are parallel (params[k], grads[k], state[k]...); grads are read, params and state written.
 * Parameters must be contiguous float32/float64 leaves; grads and state match them in shape,
 * dtype and device.  Formulas and rounding follow PyTorch 1.13's single-tensor path (with the
 * fused multiply-adds of its vectorised CPU kernels).
 * adam flags: 1 amsgrad, 2 maximize, 4 decoupled weight decay (AdamW); steps[k] is parameter
 * k's step count after this update (1 on the first); max_exp_avg_sqs may be NULL without amsgrad. */
int ddpm_adam_step_(int n, ddpm_tensor *const *params, ddpm_tensor *const *grads, ddpm_tensor *const *exp_avgs,
                    ddpm_tensor *const *exp_avg_sqs, ddpm_tensor *const *max_exp_avg_sqs, const double *steps,
                    double lr, double beta1, double beta2, double eps, double weight_decay, int flags);
/* sgd flags: 1 nesterov, 2 maximize.  With momentum != 0, momentum_buffers[k] is required and
 * fresh[k] != 0 makes it start as the (decayed) gradient, as PyTorch's first step does. */
int ddpm_sgd_step_(int n, ddpm_tensor *const *params, ddpm_tensor *const *grads,
                   ddpm_tensor *const *momentum_buffers, const int32_t *fresh, double lr, double momentum,
                   double dampening, double weight_decay, int flags);
/* EMA: shadow[k] -= (1 - decay) * (shadow[k] - params[k]) */
int ddpm_ema_update_(int n, ddpm_tensor *const *shadow, ddpm_tensor *const *params, double decay);
/* Loss-scaler unscale: tensors[k] *= inv_scale; found_inf (a float tensor of one element on the
 * same device) is set to 1 when any value, before scaling, is inf or NaN. */
int ddpm_amp_unscale_(int n, ddpm_tensor *const *tensors, ddpm_tensor *found_inf, double inv_scale);
/* The norm of the per-tensor norms (as torch.nn.utils.clip_grad_norm_): a 0-d tensor of the
 * tensors' dtype; norm_type may be inf. */
int ddpm_total_norm(ddpm_tensor **out, int n, ddpm_tensor *const *tensors, double norm_type);
/* tensors[k] *= s for every k */
int ddpm_foreach_mul_scalar_(int n, ddpm_tensor *const *tensors, double s);

/* ---- formats: safetensors, npy, png --------------------------------------------------------------- */
typedef struct ddpm_safetensors ddpm_safetensors;
/* Open and validate a safetensors file (memory-mapped; tensors cut from it share the mapping,
 * copy-on-write, which is unmapped when the handle and the last such tensor are gone). */
int ddpm_safetensors_open(ddpm_safetensors **out, const char *path);
void ddpm_safetensors_close(ddpm_safetensors *f);
int64_t ddpm_safetensors_count(const ddpm_safetensors *f);
const char *ddpm_safetensors_name(const ddpm_safetensors *f, int64_t i);      /* sorted by name */
int64_t ddpm_safetensors_find(const ddpm_safetensors *f, const char *name);   /* -1 if absent */
const char *ddpm_safetensors_dtype_name(const ddpm_safetensors *f, int64_t i); /* "F32", ... */
int ddpm_safetensors_shape(const ddpm_safetensors *f, int64_t i, int64_t *shape); /* returns ndim */
int ddpm_safetensors_get(ddpm_tensor **out, ddpm_safetensors *f, int64_t i);
int ddpm_safetensors_get_by_name(ddpm_tensor **out, ddpm_safetensors *f, const char *name);
int64_t ddpm_safetensors_metadata_count(const ddpm_safetensors *f);
const char *ddpm_safetensors_metadata_key(const ddpm_safetensors *f, int64_t i);   /* sorted */
const char *ddpm_safetensors_metadata_value(const ddpm_safetensors *f, int64_t i);
int64_t ddpm_safetensors_metadata_value_len(const ddpm_safetensors *f, int64_t i);
/* Write tensors (any layout/device) and string metadata atomically (temp file, fsync, rename). */
int ddpm_safetensors_save(const char *path, int64_t n, const char *const *names, ddpm_tensor *const *tensors,
                          int64_t nmeta, const char *const *meta_keys, const char *const *meta_values);
/* NumPy .npy: versions 1-3, little-endian, C order (memory-mapped); written exactly as numpy does. */
int ddpm_npy_load(ddpm_tensor **out, const char *path);
int ddpm_npy_save(const char *path, ddpm_tensor *t);
/* PNG (libpng): load as uint8 [H, W, C]; channels 3 = RGB with alpha composited on white, 4 = RGBA,
 * 0 = as stored (grey 1, grey+alpha 2, 3 or 4); 16-bit keeps the high byte; palettes expand.
 * save takes uint8 [H, W] or [H, W, 1..4] (any layout/device) and writes atomically. */
int ddpm_png_load(ddpm_tensor **out, const char *path, int channels);
int ddpm_png_save(const char *path, ddpm_tensor *img);
/* Replace path with the bytes atomically (temp file in the same directory, fsync, rename). */
int ddpm_write_file_atomic(const char *path, const void *data, int64_t nbytes);

/* ---- data ------------------------------------------------------------------------------------------- */
/* uint8 [H, W, 3|4] -> [H/k, W/k, 3]: composite on white and box-average k x k blocks, rounding half up */
int ddpm_image_composite_box(ddpm_tensor **out, ddpm_tensor *img, int k);
/* Entries of a directory (no . and ..), sorted bytewise, as "kname\0kname\0..." where k is the type:
 * 'd' directory, 'f' regular file, 'o' other; free the buffer with ddpm_free_buffer. */
int ddpm_list_dir(const char *path, char **out, int64_t *nbytes);
void ddpm_free_buffer(void *p);

/* ---- CUDA: devices, memory, streams, graphs, autocast ----------------------------------------------- */
/* Every function below exists in every build (same ABI with and without CUDA).  Without CUDA,
 * or without a device, the status-returning ones answer DDPM_ERR_UNSUPPORTED (built without CUDA)
 * or DDPM_ERR_DEVICE (no such device), and the plain queries answer 0.  Device indices are CUDA
 * ordinals (0 = cuda:0; -1 = the current device).  A NULL stream means the device's default
 * stream; kernels always run on the calling thread's current stream of their device.        */
typedef struct ddpm_cuda_stream ddpm_cuda_stream;
typedef struct ddpm_cuda_event ddpm_cuda_event;
typedef struct ddpm_cuda_graph ddpm_cuda_graph;
enum ddpm_cuda_stat {
  DDPM_CUDA_STAT_ALLOCATED = 0, DDPM_CUDA_STAT_RESERVED = 1, DDPM_CUDA_STAT_PEAK_ALLOCATED = 2,
  DDPM_CUDA_STAT_PEAK_RESERVED = 3, DDPM_CUDA_STAT_ACTIVE_BLOCKS = 4, DDPM_CUDA_STAT_SEGMENTS = 5,
  DDPM_CUDA_STAT_ALLOC_CALLS = 6, DDPM_CUDA_STAT_DEVICE_MALLOCS = 7, DDPM_CUDA_STAT_CACHE_FLUSHES = 8,
  DDPM_CUDA_STAT_OOMS = 9, DDPM_CUDA_STAT_LIMIT = 10, DDPM_CUDA_STAT_COUNT = 11
};
enum ddpm_cuda_flag {
  DDPM_CUDA_FLAG_MATMUL_TF32 = 0, DDPM_CUDA_FLAG_CUDNN_TF32 = 1, DDPM_CUDA_FLAG_CUDNN_BENCHMARK = 2,
  DDPM_CUDA_FLAG_SYNC = 3, DDPM_CUDA_FLAG_COUNT = 4
};
int ddpm_cuda_is_available(void);
int ddpm_cuda_device_count(void);
int ddpm_cuda_get_device_name(int index, char *buf, int len);
int ddpm_cuda_get_device_capability(int index, int *major, int *minor);
int ddpm_cuda_get_device_properties(int index, int64_t *total_memory, int *multi_processor_count);
int ddpm_cuda_current_device(int *index);
int ddpm_cuda_set_device(int index);
int ddpm_cuda_synchronize(int index);
int ddpm_cuda_mem_get_info(int index, int64_t *free_bytes, int64_t *total_bytes);
/* caching allocator: stats[] receives min(n, DDPM_CUDA_STAT_COUNT) values in ddpm_cuda_stat order */
int ddpm_cuda_memory_stats(int index, int64_t *stats, int n);
int ddpm_cuda_reset_peak_memory_stats(int index);
int ddpm_cuda_empty_cache(void);
int ddpm_cuda_set_memory_limit(int index, int64_t bytes);
/* switches (TF32 matmul, cuDNN TF32/benchmark, DDPM_SYNC): settable in every build */
int ddpm_cuda_set_flag(int flag, int value);
int ddpm_cuda_get_flag(int flag);
int ddpm_cuda_has_kernel(int op);
/* streams and events */
int ddpm_cuda_stream_new(ddpm_cuda_stream **out, int index, int priority);
void ddpm_cuda_stream_free(ddpm_cuda_stream *s);
int ddpm_cuda_stream_device(const ddpm_cuda_stream *s);
int ddpm_cuda_stream_synchronize(ddpm_cuda_stream *s);
int ddpm_cuda_stream_query(ddpm_cuda_stream *s, int *done);
int ddpm_cuda_stream_wait_event(ddpm_cuda_stream *s, ddpm_cuda_event *e);
int ddpm_cuda_stream_wait_stream(ddpm_cuda_stream *s, ddpm_cuda_stream *other);
int ddpm_cuda_set_stream(ddpm_cuda_stream *s);
int ddpm_cuda_current_stream(int index, ddpm_cuda_stream **out);
int ddpm_cuda_event_new(ddpm_cuda_event **out, int enable_timing);
void ddpm_cuda_event_free(ddpm_cuda_event *e);
int ddpm_cuda_event_record(ddpm_cuda_event *e, ddpm_cuda_stream *s);
int ddpm_cuda_event_synchronize(ddpm_cuda_event *e);
int ddpm_cuda_event_query(ddpm_cuda_event *e, int *done);
int ddpm_cuda_event_elapsed_ms(ddpm_cuda_event *start, ddpm_cuda_event *end, double *ms);
int ddpm_tensor_record_stream(ddpm_tensor *t, ddpm_cuda_stream *s);
/* page-locked host memory: a CPU tensor whose copies to and from the GPU go by DMA */
int ddpm_pin_memory(ddpm_tensor **out, ddpm_tensor *t);
int ddpm_tensor_is_pinned(const ddpm_tensor *t);
/* CUDA graphs: capture the kernels launched between begin and end on the current device, replay
 * them with the same memory; allocations during capture come from the graph's private pool */
int ddpm_cuda_graph_new(ddpm_cuda_graph **out);
void ddpm_cuda_graph_free(ddpm_cuda_graph *g);
int ddpm_cuda_graph_capture_begin(ddpm_cuda_graph *g);
int ddpm_cuda_graph_capture_end(ddpm_cuda_graph *g);
int ddpm_cuda_graph_replay(ddpm_cuda_graph *g);
int ddpm_cuda_graph_reset(ddpm_cuda_graph *g);
int ddpm_cuda_is_capturing(void);
/* autocast (thread-local): device_type 0 = cpu, 1 = cuda; dtype a half type (bfloat16, float16) */
int ddpm_autocast_set(int device_type, int enabled, int dtype);
int ddpm_autocast_enabled(int device_type);
int ddpm_autocast_dtype(int device_type);
/* DDPM_FFI_END */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* DDPM_H */
