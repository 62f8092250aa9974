/* png.c: PNG files through libpng.  Every libpng error longjmps back into this file only (custom
 * error handler + setjmp per call) and becomes a status with a message; reads come from a bounded
 * in-memory buffer so a truncated file is an error, never a crash.  Images are uint8 [H, W, C]. */
#include "formats.h"
#include <png.h>
#include <setjmp.h>
#include <stdio.h>

#define PNG_MAX_SIDE 65535u
#define PNG_MAX_BYTES ((uint64_t)1 << 32)

typedef struct {
  const unsigned char *data;
  size_t len, pos;
  ddpm_afile *out;
  char msg[256];
  char warn[160];   /* the last libpng warning often says why the following error happened */
  ddpm_tensor *t;   /* the image being filled (released on error) */
  png_bytep *rows;
} png_ctx;

static void on_error(png_structp p, png_const_charp msg) {
  png_ctx *c = png_get_error_ptr(p);
  if (c->warn[0]) snprintf(c->msg, sizeof c->msg, "%s; %s", msg, c->warn);
  else snprintf(c->msg, sizeof c->msg, "%s", msg);
  png_longjmp(p, 1);
}
static void on_warning(png_structp p, png_const_charp msg) {
  png_ctx *c = png_get_error_ptr(p);
  snprintf(c->warn, sizeof c->warn, "%s", msg);
}

static void read_fn(png_structp p, png_bytep out, size_t n) {
  png_ctx *c = png_get_io_ptr(p);
  if (n > c->len - c->pos) png_error(p, "unexpected end of file (truncated)");
  memcpy(out, c->data + c->pos, n);
  c->pos += n;
}

/* Alpha composited on white, rounding half up: out = floor((2(c a + 255 (255 - a)) + 255) / 510),
 * the k = 1 case of the data spec's formula. */
static void composite_rows(uint8_t *dst, const uint8_t *src, size_t npix) {
  for (size_t i = 0; i < npix; i++) {
    unsigned a = src[4 * i + 3];
    for (int ch = 0; ch < 3; ch++) {
      unsigned num = src[4 * i + ch] * a + 255u * (255u - a);
      dst[3 * i + ch] = (uint8_t)((2u * num + 255u) / 510u);
    }
  }
}

int ddpm_png_load(ddpm_tensor **out, const char *path, int channels) {
  if (!out) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "load_png: out is NULL");
  *out = NULL;
  if (channels != 0 && channels != 3 && channels != 4)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "load_png: channels must be 3 (RGB on white), 4 (RGBA) or 0 (as stored), got %d",
                     channels);
  ddpm_fmap *m = NULL;
  DDPM_TRY(ddpm_fmap_open(&m, path, "load_png"));
  png_ctx ctx = {.data = m->base, .len = m->len};
  png_ctx *volatile c = &ctx;
  int st = DDPM_OK;
  if (m->len < 8 || png_sig_cmp(m->base, 0, 8) != 0) {
    ddpm_fmap_release(m);
    return DDPM_FAIL(DDPM_ERR_FORMAT, "load_png: '%s' is not a PNG file (the 8-byte PNG signature is missing)", path);
  }
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!png || !info) {
    png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
    ddpm_fmap_release(m);
    return DDPM_FAIL(DDPM_ERR_OOM, "load_png: out of memory creating the PNG reader");
  }
  if (setjmp(png_jmpbuf(png))) {
    st = DDPM_FAIL(DDPM_ERR_FORMAT, "load_png: '%s': %s (corrupt or truncated PNG)", path, c->msg);
    goto done;
  }
  png_set_read_fn(png, c, read_fn);
  png_set_user_limits(png, PNG_MAX_SIDE, PNG_MAX_SIDE);
  png_set_chunk_malloc_max(png, 64u << 20);
  png_read_info(png, info);
  png_uint_32 w, h;
  int depth, color, interlace;
  png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (depth == 16) png_set_strip_16(png); /* high byte, as PIL's 8-bit conversion */
  bool grey = !(color & PNG_COLOR_MASK_COLOR);
  if (channels && grey) png_set_gray_to_rgb(png);
  if (channels == 4 && !(color & PNG_COLOR_MASK_ALPHA) && !png_get_valid(png, info, PNG_INFO_tRNS))
    png_set_filler(png, 0xff, PNG_FILLER_AFTER);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int ch = png_get_channels(png, info);
  size_t rowbytes = png_get_rowbytes(png, info);
  if (rowbytes != (size_t)w * (size_t)ch || (uint64_t)w * h * (uint64_t)ch > PNG_MAX_BYTES) {
    snprintf(c->msg, sizeof c->msg, "unsupported layout (%u x %u, %d channels, %zu bytes per row)", (unsigned)w,
             (unsigned)h, ch, rowbytes);
    png_longjmp(png, 1);
  }
  /* deflate expands at most ~1032:1, so a small file cannot hold a huge image: refuse before
   * allocating for what a corrupt header claims */
  if (((uint64_t)rowbytes + 1) * h > (uint64_t)c->len * 1100u + 65536u) {
    snprintf(c->msg, sizeof c->msg, "the header claims %u x %u pixels, more than %zu bytes of compressed data can hold",
             (unsigned)w, (unsigned)h, c->len);
    png_longjmp(png, 1);
  }
  int64_t shape[3] = {(int64_t)h, (int64_t)w, ch};
  ddpm_tensor *t = NULL;
  if (ddpm_tensor_new(&t, 3, shape, DDPM_UINT8, DDPM_CPU)) {
    snprintf(c->msg, sizeof c->msg, "out of memory for a %u x %u image", (unsigned)w, (unsigned)h);
    png_longjmp(png, 1);
  }
  c->t = t;
  c->rows = malloc(sizeof(png_bytep) * (h ? h : 1));
  if (!c->rows) {
    snprintf(c->msg, sizeof c->msg, "out of memory");
    png_longjmp(png, 1);
  }
  for (png_uint_32 y = 0; y < h; y++) c->rows[y] = (png_bytep)t->storage->data + (size_t)y * rowbytes;
  png_read_image(png, c->rows);
  png_read_end(png, NULL);
  if (channels == 3 && ch == 4) {
    int64_t s3[3] = {(int64_t)h, (int64_t)w, 3};
    ddpm_tensor *rgb = NULL;
    st = ddpm_tensor_new(&rgb, 3, s3, DDPM_UINT8, DDPM_CPU);
    if (!st) {
      composite_rows(rgb->storage->data, t->storage->data, (size_t)w * h);
      ddpm_tensor_release(c->t);
      c->t = rgb;
    }
  }
done:
  png_destroy_read_struct(&png, &info, NULL);
  free(c->rows);
  if (st) ddpm_tensor_release(c->t);
  else *out = c->t;
  ddpm_fmap_release(m);
  return st;
}

static void write_fn(png_structp p, png_bytep data, size_t n) {
  png_ctx *c = png_get_io_ptr(p);
  if (ddpm_afile_write(c->out, data, n)) {
    snprintf(c->msg, sizeof c->msg, "%s", ddpm_last_error());
    png_longjmp(p, 2);
  }
}
static void flush_fn(png_structp p) { (void)p; }

int ddpm_png_save(const char *path, ddpm_tensor *img) {
  if (!img) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "save_png: image is NULL");
  if (!path) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "save_png: path is NULL");
  int ch = img->ndim == 2 ? 1 : img->ndim == 3 ? (int)img->shape[2] : 0;
  if (img->dtype != DDPM_UINT8 || ch < 1 || ch > 4 || img->shape[0] < 1 || img->shape[1] < 1)
    return DDPM_FAIL(DDPM_ERR_SHAPE,
                     "save_png: expected a uint8 image [H, W], [H, W, 1], [H, W, 2], [H, W, 3] or [H, W, 4], got %s "
                     "(convert float images with ddpm.utils.to_uint8)", ddpm_fmt_tensor(img));
  if (img->shape[0] > PNG_MAX_SIDE || img->shape[1] > PNG_MAX_SIDE)
    return DDPM_FAIL(DDPM_ERR_SHAPE, "save_png: image %s is larger than %u pixels on a side", ddpm_fmt_tensor(img),
                     PNG_MAX_SIDE);
  ddpm_tensor *t = NULL;
  DDPM_TRY(ddpm_host_contiguous(&t, img));
  ddpm_afile f;
  int st = ddpm_afile_open(&f, path, "save_png");
  if (st) {
    ddpm_tensor_release(t);
    return st;
  }
  png_ctx ctx = {.out = &f};
  png_ctx *volatile c = &ctx;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, c, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!png || !info) {
    png_destroy_write_struct(png ? &png : NULL, NULL);
    ddpm_afile_abort(&f);
    ddpm_tensor_release(t);
    return DDPM_FAIL(DDPM_ERR_OOM, "save_png: out of memory creating the PNG writer");
  }
  if (setjmp(png_jmpbuf(png))) {
    st = DDPM_FAIL(DDPM_ERR_IO, "save_png: writing '%s' failed: %s", path, c->msg);
    goto done;
  }
  static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                               PNG_COLOR_TYPE_RGB_ALPHA};
  png_uint_32 h = (png_uint_32)t->shape[0], w = (png_uint_32)t->shape[1];
  png_set_write_fn(png, c, write_fn, flush_fn);
  png_set_IHDR(png, info, w, h, 8, types[ch], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  c->rows = malloc(sizeof(png_bytep) * h);
  if (!c->rows) {
    snprintf(c->msg, sizeof c->msg, "out of memory");
    png_longjmp(png, 1);
  }
  for (png_uint_32 y = 0; y < h; y++) c->rows[y] = (png_bytep)ddpm_ptr(t) + (size_t)y * w * (size_t)ch;
  png_write_image(png, c->rows);
  png_write_end(png, NULL);
done:
  png_destroy_write_struct(&png, &info);
  free(c->rows);
  ddpm_tensor_release(t);
  if (st) ddpm_afile_abort(&f);
  else st = ddpm_afile_commit(&f);
  return st;
}
