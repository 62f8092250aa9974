/* test_cuda_device.c: the CUDA backend through the C API: transfers, a few kernels against host
 * loops, error statuses (mixed devices, OOM, bad device) and the memory statistics.  Without a GPU
 * it prints why it skipped and counts nothing as passed (DDPM_REQUIRE_GPU=1 makes that a failure). */
#include "tcheck.h"
#include <stdlib.h>

static ddpm_tensor *upload(const double *v, int n, int device) {
  int64_t shape[1] = {n};
  ddpm_tensor *t = NULL;
  CHECK_OK(ddpm_from_doubles(&t, v, 1, shape, DDPM_FLOAT32, device));
  return t;
}

int main(void) {
  if (!ddpm_cuda_is_available()) {
    const char *req = getenv("DDPM_REQUIRE_GPU");
    if (req && strcmp(req, "1") == 0) {
      fprintf(stderr, "test_cuda_device: DDPM_REQUIRE_GPU=1 but no CUDA GPU is usable (CUDA built: %d)\n",
              ddpm_cuda_built());
      tc_fail++;
      return tcheck_summary("test_cuda_device");
    }
    printf("test_cuda_device: skipped: needs a CUDA GPU (CUDA built: %s)\n", ddpm_cuda_built() ? "yes" : "no");
    /* (the answers of a machine without a GPU are checked by tests/lua/cuda_errors_spec.lua) */
    return tcheck_summary("test_cuda_device");
  }
  enum { N = 1000 };
  double a[N], b[N], out[N];
  for (int i = 0; i < N; i++) {
    a[i] = i * 0.5 - 100;
    b[i] = (i % 7) - 3;
  }
  ddpm_tensor *ga = upload(a, N, DDPM_CUDA0), *gb = upload(b, N, DDPM_CUDA0), *gc = NULL, *s = NULL;
  CHECK(ddpm_tensor_device(ga) == DDPM_CUDA0);
  CHECK(ddpm_tensor_data(ga) == NULL); /* no host pointer for device memory */
  CHECK_OK(ddpm_mul(&gc, ga, gb));
  CHECK_OK(ddpm_tensor_to_doubles(gc, out, N));
  int bad = 0;
  for (int i = 0; i < N; i++) bad += out[i] != (double)(float)(a[i] * b[i]);
  CHECK(bad == 0);
  CHECK_OK(ddpm_sum(&s, gc, 0, NULL, 0));
  double v = 0, ref = 0;
  for (int i = 0; i < N; i++) ref += (float)(a[i] * b[i]);
  CHECK_OK(ddpm_tensor_item(s, &v));
  CHECK_NEAR(v, ref, 1e-3);
  /* mixing devices names both */
  ddpm_tensor *ha = upload(a, N, DDPM_CPU), *bad_t = NULL;
  CHECK(ddpm_add(&bad_t, ha, ga) == DDPM_ERR_DEVICE);
  CHECK(strstr(ddpm_last_error(), "cuda:0") && strstr(ddpm_last_error(), "cpu"));
  /* a device that does not exist */
  CHECK(ddpm_to(&bad_t, ha, DDPM_FLOAT32, DDPM_CUDA0 + ddpm_cuda_device_count()) == DDPM_ERR_DEVICE);
  /* out of memory: a status and a message with the sizes, and the library carries on */
  int64_t huge[1] = {(int64_t)1 << 42};
  CHECK(ddpm_empty(&bad_t, 1, huge, DDPM_FLOAT32, DDPM_CUDA0) == DDPM_ERR_OOM);
  CHECK(strstr(ddpm_last_error(), "CUDA out of memory: tried to allocate") != NULL);
  int64_t st[DDPM_CUDA_STAT_COUNT];
  CHECK_OK(ddpm_cuda_memory_stats(0, st, DDPM_CUDA_STAT_COUNT));
  CHECK(st[DDPM_CUDA_STAT_ALLOCATED] >= 3 * N * 4);
  CHECK(st[DDPM_CUDA_STAT_RESERVED] >= st[DDPM_CUDA_STAT_ALLOCATED]);
  CHECK(st[DDPM_CUDA_STAT_OOMS] >= 1);
  ddpm_tensor_release(ga);
  ddpm_tensor_release(gb);
  ddpm_tensor_release(gc);
  ddpm_tensor_release(s);
  ddpm_tensor_release(ha);
  CHECK_OK(ddpm_cuda_synchronize(-1));
  CHECK_OK(ddpm_cuda_empty_cache());
  return tcheck_summary("test_cuda_device");
}
