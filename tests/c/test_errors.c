/* test_errors.c: bad input gives a status and a message naming the op, never a crash: shapes
 * that do not broadcast, matmul inner mismatches, dtype mismatches, dims out of range, more
 * than 8 dims, NULL arguments, indices out of range, unavailable devices. */
#include "tref.h"

/* expr must fail with status code and a message containing text */
#define CHECK_ERR(expr, code, text)                                                                  \
  do {                                                                                               \
    ddpm_clear_error();                                                                              \
    int st_ = (expr);                                                                                \
    if (st_ == (code) && strstr(ddpm_last_error(), (text)) && ddpm_last_status() == (code)) tc_pass++; \
    else {                                                                                           \
      tc_fail++;                                                                                     \
      fprintf(stderr, "%s:%d: %s returned %d (expected %d) with message \"%s\" (expected to contain \"%s\")\n", \
              __FILE__, __LINE__, #expr, st_, (code), ddpm_last_error(), (text));                    \
    }                                                                                                \
  } while (0)

static ddpm_tensor *T(int dt, int nd, int64_t a, int64_t b, int64_t c) {
  int64_t s[3] = {a, b, c};
  ddpm_tensor *t = NULL;
  CHECK_OK(ddpm_full(&t, nd, s, 1, dt, DDPM_CPU));
  return t;
}

static void test_shapes(void) {
  ddpm_tensor *a = T(DDPM_FLOAT32, 2, 2, 3, 0), *b = T(DDPM_FLOAT32, 2, 4, 3, 0), *o = NULL;
  ddpm_tensor *c = T(DDPM_FLOAT32, 1, 4, 0, 0), *bl = T(DDPM_BOOL, 2, 2, 3, 0);
  CHECK_ERR(ddpm_add(&o, a, b), DDPM_ERR_SHAPE, "add: shapes [2, 3] and [4, 3] do not broadcast");
  CHECK_ERR(ddpm_mul(&o, a, c), DDPM_ERR_SHAPE, "mul: shapes [2, 3] and [4]");
  CHECK_ERR(ddpm_lt(&o, a, c), DDPM_ERR_SHAPE, "lt:");
  CHECK_ERR(ddpm_where(&o, bl, a, b), DDPM_ERR_SHAPE, "where:");
  CHECK_ERR(ddpm_copy_(a, b), DDPM_ERR_SHAPE, "copy_");
  int64_t e[2] = {4, 3};
  CHECK_ERR(ddpm_expand(&o, a, 2, e), DDPM_ERR_SHAPE, "expand:");
  int64_t neg[2] = {2, -3};
  CHECK_ERR(ddpm_expand(&o, a, 2, neg), DDPM_ERR_SHAPE, "expand: invalid size -3");
  CHECK_ERR(ddpm_add_(a, c, 1), DDPM_ERR_SHAPE, "add_");
  int64_t v5[1] = {5}, v2[2] = {-1, -1}, vneg[1] = {-2};
  CHECK_ERR(ddpm_view(&o, a, 1, v5), DDPM_ERR_SHAPE, "view: shape [5] is invalid for input of size 6");
  CHECK_ERR(ddpm_reshape(&o, a, 2, v2), DDPM_ERR_SHAPE, "only one dimension can be -1");
  CHECK_ERR(ddpm_reshape(&o, a, 1, vneg), DDPM_ERR_SHAPE, "invalid size -2");
  ddpm_tensor *at = NULL;
  CHECK_OK(ddpm_transpose(&at, a, 0, 1));
  int64_t v6[1] = {6};
  CHECK_ERR(ddpm_view(&o, at, 1, v6), DDPM_ERR_SHAPE, "use :reshape(...) instead");
  CHECK_OK(ddpm_reshape(&o, at, 1, v6)); /* reshape copies instead */
  ddpm_tensor_release(o);
  ddpm_tensor_release(at);
  int64_t p3[3] = {0, 1, 2}, p2[2] = {0, 0};
  CHECK_ERR(ddpm_permute(&o, a, 3, p3), DDPM_ERR_SHAPE, "permute: 3 dims given");
  CHECK_ERR(ddpm_permute(&o, a, 2, p2), DDPM_ERR_ARGUMENT, "permute: dim 0 repeats");
  CHECK_ERR(ddpm_narrow(&o, a, 1, 2, 2), DDPM_ERR_INDEX, "narrow: start 2 with length 2 exceeds");
  CHECK_ERR(ddpm_narrow(&o, a, 1, 1, INT64_MAX), DDPM_ERR_INDEX, "narrow:");
  CHECK_ERR(ddpm_slice(&o, a, 1, 0, 3, 0), DDPM_ERR_ARGUMENT, "step must be positive");
  CHECK_OK(ddpm_slice(&o, a, 1, 1, INT64_MAX, INT64_MAX)); /* a huge step leaves one element */
  CHECK(ddpm_tensor_numel(o) == 2);
  ddpm_tensor_release(o);
  ddpm_tensor_release(a);
  ddpm_tensor_release(b);
  ddpm_tensor_release(c);
  ddpm_tensor_release(bl);
}

static void test_linalg_errors(void) {
  ddpm_tensor *a = T(DDPM_FLOAT32, 2, 2, 3, 0), *b = T(DDPM_FLOAT32, 2, 4, 5, 0), *o = NULL;
  ddpm_tensor *d = T(DDPM_FLOAT64, 2, 3, 2, 0), *i = T(DDPM_INT64, 2, 3, 2, 0), *s = T(DDPM_FLOAT32, 0, 0, 0, 0);
  ddpm_tensor *b3 = T(DDPM_FLOAT32, 3, 2, 3, 4), *c3 = T(DDPM_FLOAT32, 3, 3, 4, 2), *w = T(DDPM_FLOAT32, 2, 5, 4, 0);
  CHECK_ERR(ddpm_matmul(&o, a, b), DDPM_ERR_SHAPE, "matmul: shapes [2, 3] and [4, 5] cannot be multiplied");
  CHECK_ERR(ddpm_matmul(&o, a, d), DDPM_ERR_DTYPE, "same dtype");
  CHECK_ERR(ddpm_matmul(&o, i, i), DDPM_ERR_DTYPE, "floating point");
  CHECK_ERR(ddpm_matmul(&o, s, a), DDPM_ERR_SHAPE, "at least 1 dim");
  CHECK_ERR(ddpm_bmm(&o, a, a), DDPM_ERR_SHAPE, "bmm: expected 3-D");
  CHECK_ERR(ddpm_bmm(&o, b3, c3), DDPM_ERR_SHAPE, "bmm: shapes [2, 3, 4] and [3, 4, 2]");
  CHECK_ERR(ddpm_linear(&o, a, w, NULL), DDPM_ERR_SHAPE, "linear: input float32[2, 3] on cpu does not match weight");
  ddpm_tensor *x4 = T(DDPM_FLOAT32, 2, 2, 4, 0), *bias = T(DDPM_FLOAT32, 1, 4, 0, 0), *bd = T(DDPM_FLOAT64, 1, 5, 0, 0);
  CHECK_ERR(ddpm_linear(&o, x4, w, bias), DDPM_ERR_SHAPE, "bias float32[4] on cpu does not match");
  CHECK_ERR(ddpm_linear(&o, x4, w, bd), DDPM_ERR_DTYPE, "linear:");
  CHECK_ERR(ddpm_linear(&o, x4, NULL, NULL), DDPM_ERR_ARGUMENT, "linear: weight is nil");
  ddpm_tensor *ts[] = {a, b, d, i, s, b3, c3, w, x4, bias, bd};
  for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) ddpm_tensor_release(ts[k]);
}

static void test_dims(void) {
  ddpm_tensor *a = T(DDPM_FLOAT32, 3, 2, 3, 4), *o = NULL, *o2 = NULL;
  int64_t d3 = 3, dm4 = -4;
  CHECK_ERR(ddpm_sum(&o, a, 1, &d3, 0), DDPM_ERR_INDEX, "sum: dim 3 out of range for a tensor with 3 dims (expected -3..2)");
  CHECK_ERR(ddpm_amax(&o, a, 1, &dm4, 0), DDPM_ERR_INDEX, "amax: dim -4 out of range");
  CHECK_ERR(ddpm_mean(&o, a, 1, &d3, 0), DDPM_ERR_INDEX, "mean:");
  CHECK_ERR(ddpm_var(&o, a, 1, &d3, 1, 0), DDPM_ERR_INDEX, "var:");
  CHECK_ERR(ddpm_argmax(&o, a, 3, 0, 0), DDPM_ERR_INDEX, "argmax:");
  CHECK_ERR(ddpm_max_dim(&o, &o2, a, -4, 0), DDPM_ERR_INDEX, "max:");
  CHECK_ERR(ddpm_transpose(&o, a, 0, 3), DDPM_ERR_INDEX, "transpose:");
  CHECK_ERR(ddpm_select(&o, a, 3, 0), DDPM_ERR_INDEX, "select:");
  CHECK_ERR(ddpm_select(&o, a, 0, 2), DDPM_ERR_INDEX, "select: index 2 is out of bounds for dim 0 with size 2");
  CHECK_ERR(ddpm_select(&o, a, 0, -3), DDPM_ERR_INDEX, "select:");
  CHECK_ERR(ddpm_unsqueeze(&o, a, 4), DDPM_ERR_INDEX, "unsqueeze:");
  CHECK_ERR(ddpm_unsqueeze(&o, a, -5), DDPM_ERR_INDEX, "unsqueeze:");
  CHECK_ERR(ddpm_squeeze(&o, a, 3), DDPM_ERR_INDEX, "squeeze:");
  CHECK_ERR(ddpm_slice(&o, a, -4, 0, 1, 1), DDPM_ERR_INDEX, "slice:");
  ddpm_tensor *l[2] = {a, a};
  CHECK_ERR(ddpm_cat(&o, 2, l, 3), DDPM_ERR_INDEX, "cat:");
  CHECK_ERR(ddpm_stack(&o, 2, l, 4), DDPM_ERR_INDEX, "stack:");
  /* more than 8 dims anywhere */
  int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  CHECK_ERR(ddpm_empty(&o, 9, nine, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_SHAPE, "at most 8");
  CHECK_ERR(ddpm_full(&o, 9, nine, 0, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_SHAPE, "at most 8");
  double v[1] = {0};
  CHECK_ERR(ddpm_from_doubles(&o, v, 9, nine, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_SHAPE, "at most 8");
  CHECK_ERR(ddpm_view(&o, a, 9, nine), DDPM_ERR_SHAPE, "at most 8");
  CHECK_ERR(ddpm_expand(&o, a, 9, nine), DDPM_ERR_SHAPE, "expand:");
  ddpm_tensor *e8 = NULL;
  CHECK_OK(ddpm_empty(&e8, 8, nine, DDPM_FLOAT32, DDPM_CPU));
  CHECK_ERR(ddpm_unsqueeze(&o, e8, 0), DDPM_ERR_SHAPE, "maximum of 8 dims");
  ddpm_tensor *l8[2] = {e8, e8};
  CHECK_ERR(ddpm_stack(&o, 2, l8, 0), DDPM_ERR_SHAPE, "8 dims");
  int64_t negs[1] = {-1};
  CHECK_ERR(ddpm_empty(&o, 1, negs, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_SHAPE, "negative size -1");
  ddpm_tensor_release(e8);
  ddpm_tensor_release(a);
}

static void test_dtypes(void) {
  ddpm_tensor *f = T(DDPM_FLOAT32, 1, 3, 0, 0), *i = T(DDPM_INT64, 1, 3, 0, 0), *b = T(DDPM_BOOL, 1, 3, 0, 0), *o = NULL;
  int64_t three = 3;
  CHECK_ERR(ddpm_empty(&o, 1, &three, 42, DDPM_CPU), DDPM_ERR_DTYPE, "invalid dtype id 42");
  CHECK_ERR(ddpm_to(&o, f, -1, DDPM_CPU), DDPM_ERR_DTYPE, "to: invalid dtype");
  CHECK_ERR(ddpm_neg(&o, b), DDPM_ERR_DTYPE, "neg:");
  CHECK_ERR(ddpm_sub(&o, b, b), DDPM_ERR_DTYPE, "sub:");
  CHECK_ERR(ddpm_where(&o, f, f, f), DDPM_ERR_DTYPE, "where: condition must be a bool tensor");
  CHECK_ERR(ddpm_mean(&o, i, 0, NULL, 0), DDPM_ERR_DTYPE, "mean: input must be floating point");
  CHECK_ERR(ddpm_div_(i, i), DDPM_ERR_DTYPE, "div_:");
  CHECK_ERR(ddpm_tensor_set_requires_grad(i, 1), DDPM_ERR_DTYPE, "only floating point tensors can require gradients");
  CHECK_ERR(ddpm_index_add_(f, 0, i, i), DDPM_ERR_DTYPE, "index_add_:");
  ddpm_tensor *g64 = T(DDPM_FLOAT64, 1, 3, 0, 0);
  CHECK_ERR(ddpm_tensor_set_grad(f, g64), DDPM_ERR_DTYPE, "set grad");
  CHECK(ddpm_promote_types(DDPM_FLOAT32, 99) == -1);
  CHECK(ddpm_dtype_size(99) == 0 && ddpm_dtype_is_floating(-1) == 0);
  CHECK(strcmp(ddpm_dtype_name(99), "invalid-dtype") == 0);
  ddpm_tensor_release(g64);
  ddpm_tensor_release(f);
  ddpm_tensor_release(i);
  ddpm_tensor_release(b);
}

/* NULL for any tensor, out-parameter, shape or buffer is an argument error */
static void test_nulls(void) {
  ddpm_tensor *a = T(DDPM_FLOAT32, 2, 2, 3, 0), *o = NULL, *o2 = NULL;
  int64_t s2[2] = {3, 2};
  double buf[6];
  CHECK_ERR(ddpm_add(NULL, a, a), DDPM_ERR_ARGUMENT, "add: the output pointer is NULL");
  CHECK_ERR(ddpm_add(&o, NULL, a), DDPM_ERR_ARGUMENT, "add: first argument is nil");
  CHECK_ERR(ddpm_mul(&o, a, NULL), DDPM_ERR_ARGUMENT, "mul: second argument is nil");
  CHECK_ERR(ddpm_exp(NULL, a), DDPM_ERR_ARGUMENT, "exp:");
  CHECK_ERR(ddpm_exp(&o, NULL), DDPM_ERR_ARGUMENT, "exp: input is nil");
  CHECK_ERR(ddpm_add_scalar(NULL, a, 1), DDPM_ERR_ARGUMENT, "add_scalar:");
  CHECK_ERR(ddpm_clamp(&o, NULL, 0, 1), DDPM_ERR_ARGUMENT, "clamp:");
  CHECK_ERR(ddpm_where(&o, NULL, a, a), DDPM_ERR_ARGUMENT, "where: condition is nil");
  CHECK_ERR(ddpm_where(NULL, a, a, a), DDPM_ERR_ARGUMENT, "where:");
  CHECK_ERR(ddpm_sum(NULL, a, 0, NULL, 0), DDPM_ERR_ARGUMENT, "sum:");
  CHECK_ERR(ddpm_sum(&o, NULL, 0, NULL, 0), DDPM_ERR_ARGUMENT, "sum:");
  CHECK_ERR(ddpm_sum(&o, a, 2, NULL, 0), DDPM_ERR_ARGUMENT, "sum:");
  CHECK_ERR(ddpm_max_dim(NULL, &o2, a, 0, 0), DDPM_ERR_ARGUMENT, "max:");
  CHECK_ERR(ddpm_max_dim(&o, NULL, a, 0, 0), DDPM_ERR_ARGUMENT, "max:");
  CHECK_ERR(ddpm_argmin(NULL, a, 0, 0, 0), DDPM_ERR_ARGUMENT, "argmin:");
  CHECK_ERR(ddpm_matmul(&o, a, NULL), DDPM_ERR_ARGUMENT, "matmul: other is nil");
  CHECK_ERR(ddpm_matmul(NULL, a, a), DDPM_ERR_ARGUMENT, "matmul:");
  CHECK_ERR(ddpm_bmm(&o, NULL, a), DDPM_ERR_ARGUMENT, "bmm:");
  CHECK_ERR(ddpm_linear(&o, NULL, a, NULL), DDPM_ERR_ARGUMENT, "linear: input is nil");
  CHECK_ERR(ddpm_view(&o, a, 2, NULL), DDPM_ERR_ARGUMENT, "view: shape is NULL");
  CHECK_ERR(ddpm_view(NULL, a, 2, s2), DDPM_ERR_ARGUMENT, "view:");
  CHECK_ERR(ddpm_view(&o, NULL, 2, s2), DDPM_ERR_ARGUMENT, "view: self is nil");
  CHECK_ERR(ddpm_reshape(&o, a, 2, NULL), DDPM_ERR_ARGUMENT, "reshape: shape is NULL");
  CHECK_ERR(ddpm_expand(&o, a, 2, NULL), DDPM_ERR_ARGUMENT, "expand: shape is NULL");
  CHECK_ERR(ddpm_permute(&o, a, 2, NULL), DDPM_ERR_ARGUMENT, "permute: dims is NULL");
  CHECK_ERR(ddpm_transpose(NULL, a, 0, 1), DDPM_ERR_ARGUMENT, "transpose:");
  CHECK_ERR(ddpm_select(&o, NULL, 0, 0), DDPM_ERR_ARGUMENT, "select:");
  CHECK_ERR(ddpm_slice(NULL, a, 0, 0, 1, 1), DDPM_ERR_ARGUMENT, "slice:");
  CHECK_ERR(ddpm_unsqueeze(&o, NULL, 0), DDPM_ERR_ARGUMENT, "unsqueeze:");
  CHECK_ERR(ddpm_squeeze_all(NULL, a), DDPM_ERR_ARGUMENT, "squeeze");
  CHECK_ERR(ddpm_contiguous(NULL, a), DDPM_ERR_ARGUMENT, "contiguous:");
  CHECK_ERR(ddpm_clone(&o, NULL), DDPM_ERR_ARGUMENT, "clone:");
  CHECK_ERR(ddpm_to(NULL, a, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_ARGUMENT, "to:");
  CHECK_ERR(ddpm_detach(&o, NULL), DDPM_ERR_ARGUMENT, "detach:");
  CHECK_ERR(ddpm_copy_(a, NULL), DDPM_ERR_ARGUMENT, "copy_: src is nil");
  CHECK_ERR(ddpm_copy_(NULL, a), DDPM_ERR_ARGUMENT, "copy_: self is nil");
  CHECK_ERR(ddpm_fill_(NULL, 1), DDPM_ERR_ARGUMENT, "fill_:");
  CHECK_ERR(ddpm_add_(NULL, a, 1), DDPM_ERR_ARGUMENT, "add_:");
  CHECK_ERR(ddpm_mul_scalar_(NULL, 2), DDPM_ERR_ARGUMENT, "mul_:");
  CHECK_ERR(ddpm_empty(NULL, 2, s2, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_ARGUMENT, "empty:");
  CHECK_ERR(ddpm_empty(&o, 2, NULL, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_ARGUMENT, "shape is NULL");
  CHECK_ERR(ddpm_full(NULL, 2, s2, 0, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_ARGUMENT, "full:");
  CHECK_ERR(ddpm_from_doubles(&o, NULL, 2, s2, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_ARGUMENT, "values is NULL");
  CHECK_ERR(ddpm_from_bytes(&o, NULL, 24, 2, s2, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_ARGUMENT, "data is NULL");
  CHECK_ERR(ddpm_from_bytes(&o, buf, 23, 2, s2, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_SHAPE, "23 bytes given");
  CHECK_ERR(ddpm_arange(NULL, 0, 3, 1, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_ARGUMENT, "arange:");
  CHECK_ERR(ddpm_arange(&o, 0, 3, 0, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_ARGUMENT, "arange:");
  CHECK_ERR(ddpm_arange(&o, 0, 3, -1, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_ARGUMENT, "arange:");
  CHECK_ERR(ddpm_linspace(&o, 0, 1, -1, DDPM_FLOAT32, DDPM_CPU), DDPM_ERR_ARGUMENT, "linspace:");
  CHECK_ERR(ddpm_cat(NULL, 1, &a, 0), DDPM_ERR_ARGUMENT, "cat:");
  CHECK_ERR(ddpm_cat(&o, 1, NULL, 0), DDPM_ERR_ARGUMENT, "cat:");
  CHECK_ERR(ddpm_stack(&o, 1, NULL, 0), DDPM_ERR_ARGUMENT, "stack:");
  CHECK_ERR(ddpm_index_select(&o, NULL, 0, a), DDPM_ERR_ARGUMENT, "index_select:");
  CHECK_ERR(ddpm_index_select(&o, a, 0, NULL), DDPM_ERR_ARGUMENT, "index_select:");
  CHECK_ERR(ddpm_tensor_item(NULL, buf), DDPM_ERR_ARGUMENT, "item:");
  CHECK_ERR(ddpm_tensor_item(a, buf), DDPM_ERR_SHAPE, "item: a tensor with 6 elements");
  CHECK_ERR(ddpm_tensor_to_doubles(a, NULL, 6), DDPM_ERR_ARGUMENT, "to_doubles:");
  CHECK_ERR(ddpm_tensor_to_doubles(a, buf, 5), DDPM_ERR_ARGUMENT, "to_doubles: buffer of 5 for 6 elements");
  CHECK_ERR(ddpm_tensor_to_bytes(NULL, buf, 24), DDPM_ERR_ARGUMENT, "to_bytes:");
  CHECK_ERR(ddpm_tensor_to_bytes(a, NULL, 24), DDPM_ERR_ARGUMENT, "to_bytes:");
  CHECK_ERR(ddpm_tensor_get_grad(NULL, &o), DDPM_ERR_ARGUMENT, "grad:");
  CHECK_ERR(ddpm_tensor_get_grad(a, NULL), DDPM_ERR_ARGUMENT, "grad:");
  CHECK_ERR(ddpm_tensor_set_grad(NULL, a), DDPM_ERR_ARGUMENT, "grad:");
  CHECK_ERR(ddpm_tensor_set_requires_grad(NULL, 1), DDPM_ERR_ARGUMENT, "requires_grad_:");
  CHECK_ERR(ddpm_backward(NULL, NULL, 0), DDPM_ERR_ARGUMENT, "backward: self is nil");
  CHECK_ERR(ddpm_autograd_grad(1, NULL, NULL, 1, &a, &o, 0, 0), DDPM_ERR_ARGUMENT, "autograd.grad:");
  CHECK_ERR(ddpm_generator_new(NULL, 1), DDPM_ERR_ARGUMENT, "generator_new:");
  CHECK_ERR(ddpm_bernoulli(NULL, a, NULL), DDPM_ERR_ARGUMENT, "bernoulli:");
  CHECK_ERR(ddpm_randperm(NULL, 3, DDPM_INT64, DDPM_CPU, NULL), DDPM_ERR_ARGUMENT, "randperm:");
  CHECK_ERR(ddpm_multinomial(&o, NULL, 1, 1, NULL), DDPM_ERR_ARGUMENT, "multinomial:");
  CHECK_ERR(ddpm_set_num_threads(0), DDPM_ERR_ARGUMENT, "set_num_threads:");
  /* the getters answer instead of crashing */
  int64_t sh[8];
  CHECK(ddpm_tensor_ndim(NULL) == -1 && ddpm_tensor_shape(NULL, sh) == -1 && ddpm_tensor_shape(a, NULL) == -1);
  CHECK(ddpm_tensor_numel(NULL) == -1 && ddpm_tensor_dtype(NULL) == -1 && ddpm_tensor_device(NULL) == -1);
  CHECK(ddpm_tensor_data(NULL) == NULL && ddpm_tensor_is_contiguous(NULL) == 0 && ddpm_tensor_requires_grad(NULL) == 0);
  CHECK(ddpm_tensor_grad_fn_name(NULL) == NULL && ddpm_tensor_same_storage(NULL, a) == 0);
  CHECK(ddpm_op_name(-1) == NULL && ddpm_op_name(ddpm_op_count()) == NULL && ddpm_op_name(0) != NULL);
  ddpm_tensor_retain(NULL);
  ddpm_tensor_release(NULL);
  ddpm_generator_free(NULL);
  ddpm_tensor_release(a);
}

static void test_devices(void) {
  int64_t two = 2;
  ddpm_tensor *a = NULL, *o = NULL;
  CHECK_OK(ddpm_empty(&a, 1, &two, DDPM_FLOAT32, DDPM_CPU));
  CHECK_ERR(ddpm_empty(&o, 1, &two, DDPM_FLOAT32, -3), DDPM_ERR_DEVICE, "invalid device id -3");
  CHECK_ERR(ddpm_to(&o, a, DDPM_FLOAT32, 40), DDPM_ERR_DEVICE, "invalid device id 40");
  /* cuda:7 never exists on the machines this runs on: the error says why it cannot be used */
  ddpm_clear_error();
  int st = ddpm_to(&o, a, DDPM_FLOAT32, DDPM_CUDA0 + 7);
  if (ddpm_cuda_built()) CHECK(st == DDPM_ERR_DEVICE && strstr(ddpm_last_error(), "to: cannot move"));
  else CHECK(st == DDPM_ERR_UNSUPPORTED && strstr(ddpm_last_error(), "built without CUDA"));
  ddpm_tensor_release(a);
}

/* the message carries the library location, and clear_error resets it */
static void test_messages(void) {
  int64_t two = 2;
  ddpm_tensor *o = NULL;
  ddpm_clear_error();
  CHECK(strcmp(ddpm_last_error(), "no error") == 0 && ddpm_last_status() == 0);
  CHECK(ddpm_empty(&o, 1, &two, 99, DDPM_CPU) == DDPM_ERR_DTYPE);
  CHECK(strstr(ddpm_last_error(), "(at engine/src/") != NULL);
  ddpm_clear_error();
  CHECK(ddpm_last_status() == DDPM_OK);
}

int main(void) {
  test_shapes();
  test_linalg_errors();
  test_dims();
  test_dtypes();
  test_nulls();
  test_devices();
  test_messages();
  return tcheck_summary("test_errors");
}
