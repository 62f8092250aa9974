/* image.c: uint8 image helpers for data sets: composite RGBA on white and box-downscale by an
 * integer factor in one integer pass, exactly as the Angband data spec defines it
 * (num = sum(c a + 255 (255 - a)), den = 255 k k, out = floor((2 num + den) / (2 den))). */
#include "formats.h"

int ddpm_image_composite_box(ddpm_tensor **out, ddpm_tensor *img, int k) {
  if (!out) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "image_composite_box: out is NULL");
  DDPM_TRY(ddpm_check_tensor("image_composite_box", "image", img));
  int ch = img->ndim == 3 ? (int)img->shape[2] : 0;
  if (img->dtype != DDPM_UINT8 || (ch != 3 && ch != 4))
    return DDPM_FAIL(DDPM_ERR_SHAPE, "image_composite_box: expected a uint8 image [H, W, 3] or [H, W, 4], got %s",
                     ddpm_fmt_tensor(img));
  if (k < 1 || k > 4096 || img->shape[0] % k || img->shape[1] % k)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "image_composite_box: factor %d must be >= 1 and divide the image size %s", k,
                     ddpm_fmt_tensor(img));
  ddpm_tensor *src = NULL, *dst = NULL;
  DDPM_TRY(ddpm_host_contiguous(&src, img));
  int64_t H = img->shape[0] / k, W = img->shape[1] / k, sw = img->shape[1];
  int64_t shape[3] = {H, W, 3};
  int st = ddpm_tensor_new(&dst, 3, shape, DDPM_UINT8, DDPM_CPU);
  if (st) {
    ddpm_tensor_release(src);
    return st;
  }
  const uint8_t *s = (const uint8_t *)ddpm_ptr(src);
  uint8_t *d = (uint8_t *)ddpm_ptr(dst);
  uint64_t den = 255u * (uint64_t)k * (uint64_t)k;
#pragma omp parallel for if (H * W > 4096)
  for (int64_t y = 0; y < H; y++) {
    for (int64_t x = 0; x < W; x++) {
      uint64_t num[3] = {0, 0, 0};
      for (int dy = 0; dy < k; dy++) {
        const uint8_t *row = s + ((y * k + dy) * sw + x * k) * ch;
        for (int dx = 0; dx < k; dx++) {
          unsigned a = ch == 4 ? row[dx * ch + 3] : 255u;
          for (int c = 0; c < 3; c++) num[c] += (uint64_t)row[dx * ch + c] * a + 255u * (255u - a);
        }
      }
      for (int c = 0; c < 3; c++) d[(y * W + x) * 3 + c] = (uint8_t)((2 * num[c] + den) / (2 * den));
    }
  }
  ddpm_tensor_release(src);
  *out = dst;
  return DDPM_OK;
}
