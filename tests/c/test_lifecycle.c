/* test_lifecycle.c: reference counting end to end: create/view/op/backward/release cycles,
 * error paths included, must hand every byte back.  Checked here through the engine's own byte
 * accounting and, in the DDPM_SANITIZE build (ctest label asan), by LeakSanitizer, which also
 * sees leaked tensor headers and graph nodes. */
#include "tref.h"

static int64_t live(void) { return ddpm_memory_allocated(0); }

/* forward, backward, views of views, a saved-tensor version error, autograd.grad */
static void one_cycle(int k) {
  int64_t s[2] = {4, 5}, s3[3] = {2, 2, 5}, d1 = 1;
  ddpm_tensor *x = NULL, *w = NULL, *v = NULL, *t = NULL, *y = NULL, *loss = NULL, *g = NULL, *p = NULL;
  CHECK_OK(ddpm_full(&x, 2, s, 0.5 + k, DDPM_FLOAT64, DDPM_CPU));
  CHECK_OK(ddpm_full(&w, 2, s, 2.0, DDPM_FLOAT64, DDPM_CPU));
  CHECK_OK(ddpm_tensor_set_requires_grad(x, 1));
  CHECK_OK(ddpm_tensor_set_requires_grad(w, 1));
  CHECK_OK(ddpm_transpose(&t, x, 0, 1));
  CHECK_OK(ddpm_reshape(&v, t, 3, s3)); /* a copy: t is not viewable as [2,2,5] */
  CHECK_OK(ddpm_permute(&p, v, 3, (int64_t[]){2, 0, 1}));
  ddpm_tensor *e = NULL, *m = NULL, *sm = NULL, *wt = NULL, *mm = NULL;
  CHECK_OK(ddpm_exp(&e, p));
  CHECK_OK(ddpm_transpose(&wt, w, 0, 1));
  CHECK_OK(ddpm_matmul(&mm, x, wt));
  CHECK_OK(ddpm_mul(&m, e, e));
  CHECK_OK(ddpm_sum(&sm, m, 1, &d1, 0));
  CHECK_OK(ddpm_sum(&y, mm, 0, NULL, 0));
  ddpm_tensor *sy = NULL;
  CHECK_OK(ddpm_sum(&sy, sm, 0, NULL, 0));
  CHECK_OK(ddpm_add(&loss, sy, y));
  CHECK_OK(ddpm_backward(loss, NULL, k % 2)); /* retain the graph every other time */
  CHECK_OK(ddpm_tensor_get_grad(x, &g));
  CHECK(g != NULL);
  ddpm_tensor_release(g);
  if (k % 2) { /* retained: a second backward accumulates, then grads are reset */
    CHECK_OK(ddpm_backward(loss, NULL, 0));
    CHECK_OK(ddpm_tensor_set_grad(x, NULL));
    CHECK(ddpm_backward(loss, NULL, 0) == DDPM_ERR_AUTOGRAD); /* freed now */
  } else {
    CHECK(ddpm_backward(loss, NULL, 0) == DDPM_ERR_AUTOGRAD);
  }
  /* autograd.grad returns new references and leaves .grad alone */
  ddpm_tensor *y2 = NULL, *outs[1], *ins[2] = {x, w}, *grads[2] = {NULL, NULL};
  CHECK_OK(ddpm_mul(&y2, x, w));
  ddpm_tensor *l2 = NULL;
  CHECK_OK(ddpm_sum(&l2, y2, 0, NULL, 0));
  outs[0] = l2;
  CHECK_OK(ddpm_autograd_grad(1, outs, NULL, 2, ins, grads, 0, 0));
  CHECK(grads[0] && grads[1]);
  ddpm_tensor_release(grads[0]);
  ddpm_tensor_release(grads[1]);
  /* an in-place write to a saved tensor is caught at backward time, and nothing leaks */
  ddpm_tensor *c = NULL, *cx = NULL, *l3 = NULL;
  CHECK_OK(ddpm_full(&c, 2, s, 3.0, DDPM_FLOAT64, DDPM_CPU));
  CHECK_OK(ddpm_mul(&cx, c, x));
  CHECK_OK(ddpm_sum(&l3, cx, 0, NULL, 0));
  CHECK_OK(ddpm_add_scalar_(c, 1));
  CHECK(ddpm_backward(l3, NULL, 0) == DDPM_ERR_AUTOGRAD);
  ddpm_tensor *rel[] = {x, w, v, t, p, y, loss, e, m, sm, wt, mm, sy, y2, l2, c, cx, l3};
  for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) ddpm_tensor_release(rel[i]);
}

/* failing calls must not leak what they allocated before failing */
static void error_paths(void) {
  int64_t s[2] = {2, 3}, b[2] = {4, 3}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, bad_idx[1] = {7};
  ddpm_tensor *a = NULL, *c = NULL, *o = NULL, *i = NULL, *l[2];
  CHECK_OK(ddpm_full(&a, 2, s, 1, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_full(&c, 2, b, 1, DDPM_FLOAT32, DDPM_CPU));
  CHECK(ddpm_add(&o, a, c) != DDPM_OK);
  CHECK(ddpm_matmul(&o, a, a) != DDPM_OK);
  CHECK(ddpm_view(&o, a, 9, nine) != DDPM_OK);
  l[0] = a;
  l[1] = c;
  CHECK(ddpm_cat(&o, 2, l, 1) != DDPM_OK);
  CHECK(ddpm_stack(&o, 2, l, 0) != DDPM_OK);
  double iv[1] = {7};
  CHECK_OK(ddpm_from_doubles(&i, iv, 1, (int64_t[]){1}, DDPM_INT64, DDPM_CPU));
  CHECK(ddpm_index_select(&o, a, 0, i) == DDPM_ERR_INDEX); /* fails inside the kernel */
  CHECK(ddpm_multinomial(&o, a, 9, 0, NULL) != DDPM_OK);
  ddpm_tensor *neg = NULL;
  CHECK_OK(ddpm_full(&neg, 2, s, -1, DDPM_FLOAT32, DDPM_CPU));
  CHECK(ddpm_multinomial(&o, neg, 1, 1, NULL) != DDPM_OK);
  CHECK(ddpm_to(&o, a, DDPM_FLOAT32, DDPM_CUDA0 + 9) != DDPM_OK);
  /* a backward that fails half way (a leaf modified in place under no_grad after being saved) */
  ddpm_tensor *x = NULL, *y = NULL, *z = NULL, *lz = NULL;
  CHECK_OK(ddpm_full(&x, 2, s, 2, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_tensor_set_requires_grad(x, 1));
  CHECK_OK(ddpm_exp(&y, x));
  CHECK_OK(ddpm_mul(&z, y, x));
  CHECK_OK(ddpm_sum(&lz, z, 0, NULL, 0));
  ddpm_set_grad_enabled(0);
  CHECK_OK(ddpm_mul_scalar_(x, 2));
  ddpm_set_grad_enabled(1);
  CHECK(ddpm_backward(lz, NULL, 0) == DDPM_ERR_AUTOGRAD);
  (void)bad_idx;
  ddpm_tensor *rel[] = {a, c, i, neg, x, y, z, lz};
  for (size_t k = 0; k < sizeof rel / sizeof rel[0]; k++) ddpm_tensor_release(rel[k]);
}

/* a long chain of nodes is released iteratively (no deep recursion) */
static void long_chain(void) {
  int64_t n = 3;
  ddpm_tensor *x = NULL, *cur = NULL;
  CHECK_OK(ddpm_full(&x, 1, &n, 1, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_tensor_set_requires_grad(x, 1));
  cur = x;
  ddpm_tensor_retain(cur);
  int ok = 1;
  for (int i = 0; i < 200000 && ok; i++) {
    ddpm_tensor *nx = NULL;
    ok = ddpm_add_scalar(&nx, cur, 0.0) == DDPM_OK;
    ddpm_tensor_release(cur);
    cur = nx;
  }
  CHECK(ok);
  ddpm_tensor_release(cur); /* drops 200000 nodes */
  ddpm_tensor_release(x);
}

/* the value of a view outlives the tensor it came from; detach shares storage */
static void views_outlive(void) {
  int64_t s[2] = {3, 4};
  ddpm_tensor *a = NULL, *v = NULL, *d = NULL, *g = NULL;
  CHECK_OK(ddpm_full(&a, 2, s, 5, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_select(&v, a, 1, 2));
  CHECK_OK(ddpm_detach(&d, a));
  CHECK(ddpm_tensor_same_storage(d, a));
  ddpm_tensor_release(a);
  double out[3];
  CHECK_OK(ddpm_tensor_to_doubles(v, out, 3));
  CHECK(out[0] == 5 && out[2] == 5);
  ddpm_generator *gen = NULL;
  CHECK_OK(ddpm_generator_new(&gen, 1));
  CHECK_OK(ddpm_normal_(d, 0, 1, gen));
  ddpm_generator_free(gen);
  CHECK_OK(ddpm_tensor_set_requires_grad(d, 1));
  CHECK_OK(ddpm_full(&g, 2, s, 1, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_tensor_set_grad(d, g));
  ddpm_tensor_release(g);
  ddpm_tensor_release(v);
  ddpm_tensor_release(d); /* releases its .grad too */
}

int main(void) {
  int64_t base = live();
  for (int k = 0; k < 20; k++) one_cycle(k);
  CHECK(live() == base);
  error_paths();
  CHECK(live() == base);
  long_chain();
  CHECK(live() == base);
  views_outlive();
  CHECK(live() == base);
  if (live() != base) fprintf(stderr, "%lld bytes still allocated\n", (long long)(live() - base));
  return tcheck_summary("test_lifecycle");
}
