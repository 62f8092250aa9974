/* test_core.c: the C API end to end: creation, views, broadcasting arithmetic vs naive loops,
 * reductions, matmul, autograd, error statuses. */
#include "tcheck.h"
#include <math.h>

static ddpm_tensor *make(int n, const int64_t *shape, const double *v) {
  ddpm_tensor *t = NULL;
  CHECK_OK(ddpm_from_doubles(&t, v, n, shape, DDPM_FLOAT32, DDPM_CPU));
  return t;
}

static void test_add_broadcast(void) {
  int64_t sa[2] = {2, 3}, sb[1] = {3};
  double va[6] = {1, 2, 3, 4, 5, 6}, vb[3] = {10, 20, 30};
  ddpm_tensor *a = make(2, sa, va), *b = make(1, sb, vb), *c = NULL;
  CHECK_OK(ddpm_add(&c, a, b));
  double out[6];
  CHECK_OK(ddpm_tensor_to_doubles(c, out, 6));
  for (int i = 0; i < 6; i++) CHECK_NEAR(out[i], va[i] + vb[i % 3], 0);
  ddpm_tensor_release(c);
  /* non-contiguous: transpose a then add a column vector */
  ddpm_tensor *at = NULL, *col = NULL;
  CHECK_OK(ddpm_transpose(&at, a, 0, 1)); /* [3,2] */
  int64_t sc[2] = {3, 1};
  col = make(2, sc, vb);
  CHECK_OK(ddpm_mul(&c, at, col));
  CHECK_OK(ddpm_tensor_to_doubles(c, out, 6));
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 2; j++) CHECK_NEAR(out[i * 2 + j], va[j * 3 + i] * vb[i], 0);
  ddpm_tensor_release(c);
  ddpm_tensor_release(at);
  ddpm_tensor_release(col);
  ddpm_tensor_release(a);
  ddpm_tensor_release(b);
}

static void test_errors(void) {
  int64_t sa[1] = {3}, sb[1] = {4};
  double v[4] = {0};
  ddpm_tensor *a = make(1, sa, v), *b = make(1, sb, v), *c = NULL;
  CHECK(ddpm_add(&c, a, b) == DDPM_ERR_SHAPE);
  CHECK(strstr(ddpm_last_error(), "do not broadcast") != NULL);
  CHECK(ddpm_matmul(&c, a, b) == DDPM_ERR_SHAPE);
  int64_t big[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  CHECK(ddpm_empty(&c, 9, big, DDPM_FLOAT32, DDPM_CPU) == DDPM_ERR_SHAPE);
  CHECK(ddpm_add(&c, a, NULL) == DDPM_ERR_ARGUMENT);
  ddpm_tensor_release(a);
  ddpm_tensor_release(b);
}

static void test_sum_matmul_grad(void) {
  int64_t sa[2] = {2, 3}, sb[2] = {3, 2};
  double va[6] = {1, 2, 3, 4, 5, 6}, vb[6] = {1, 0, 0, 1, 1, 1};
  ddpm_tensor *a = make(2, sa, va), *b = make(2, sb, vb), *m = NULL, *s = NULL;
  CHECK_OK(ddpm_tensor_set_requires_grad(a, 1));
  CHECK_OK(ddpm_matmul(&m, a, b)); /* [[4,5],[10,11]] */
  double out[4];
  CHECK_OK(ddpm_tensor_to_doubles(m, out, 4));
  CHECK_NEAR(out[0], 4, 0);
  CHECK_NEAR(out[3], 11, 0);
  CHECK_OK(ddpm_sum(&s, m, 0, NULL, 0));
  double v;
  CHECK_OK(ddpm_tensor_item(s, &v));
  CHECK_NEAR(v, 30, 0);
  CHECK_OK(ddpm_backward(s, NULL, 0));
  ddpm_tensor *g = NULL;
  CHECK_OK(ddpm_tensor_get_grad(a, &g));
  CHECK(g != NULL);
  double gv[6];
  CHECK_OK(ddpm_tensor_to_doubles(g, gv, 6));
  /* d sum(a@b) / da[i,k] = sum_j b[k,j] */
  double rows[3] = {1, 1, 2};
  for (int i = 0; i < 6; i++) CHECK_NEAR(gv[i], rows[i % 3], 0);
  /* a second backward through freed saved tensors fails clearly */
  CHECK(ddpm_backward(s, NULL, 0) == DDPM_ERR_AUTOGRAD);
  ddpm_tensor_release(g);
  ddpm_tensor_release(s);
  ddpm_tensor_release(m);
  ddpm_tensor_release(a);
  ddpm_tensor_release(b);
}

static void test_philox_known(void) {
  /* Random123's published known-answer test for philox4x32-10, counter 0, key 0 */
  uint32_t r[4];
  ddpm_philox(0, 0, r);
  CHECK(r[0] == 0x6627e8d5u && r[1] == 0xe169c58du && r[2] == 0xbc57ac4cu && r[3] == 0x9b00dbd8u);
}

int main(void) {
  test_add_broadcast();
  test_errors();
  test_sum_matmul_grad();
  test_philox_known();
  return tcheck_summary("test_core");
}
