/* test_formats_safetensors.c: the safetensors reader/writer and the strict JSON parser: round
 * trips, zero-copy lifetime, widening, and a catalogue of corrupt files that must fail cleanly. */
#include "tcheck.h"
/* The JSON parser is internal to libddpm (hidden symbols): compile it into this test. */
#include "../../engine/src/json.c"
#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[256];

static void write_raw(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  fwrite(p, 1, n, f);
  fclose(f);
}

/* A file from a header string and a data section. */
static void write_st(const char *path, const char *header, const void *data, size_t ndata) {
  size_t h = strlen(header);
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h >> (8 * i));
  FILE *f = fopen(path, "wb");
  fwrite(len8, 1, 8, f);
  fwrite(header, 1, h, f);
  if (ndata) fwrite(data, 1, ndata, f);
  fclose(f);
}

static int open_status(const char *header, const void *data, size_t n) {
  char path[300];
  snprintf(path, sizeof path, "%s/bad.safetensors", dir);
  write_st(path, header, data, n);
  ddpm_safetensors *f = NULL;
  int st = ddpm_safetensors_open(&f, path);
  ddpm_safetensors_close(f);
  return st;
}

#define EXPECT_BAD(header, data, n, code, text)                                                    \
  do {                                                                                             \
    int st__ = open_status(header, data, n);                                                       \
    CHECK(st__ == (code));                                                                         \
    if (!strstr(ddpm_last_error(), text)) {                                                        \
      tc_fail++;                                                                                   \
      fprintf(stderr, "%s:%d: message lacks '%s': %s\n", __FILE__, __LINE__, text, ddpm_last_error()); \
    } else tc_pass++;                                                                              \
  } while (0)

static void test_json(void) {
  char err[200];
  ddpm_json_doc *d = NULL;
  const char *ok = " {\"a\": [1, -2, 3.5e2, true, false, null], \"b\\u00e9\\ud83d\\ude00\": \"x\\n\"} ";
  CHECK(ddpm_json_parse(&d, ok, strlen(ok), err, sizeof err) == 0);
  if (d) {
    const ddpm_json *r = ddpm_json_root(d);
    CHECK(r->type == DDPM_JSON_OBJECT && r->count == 2);
    const ddpm_json *a = ddpm_json_get(r, "a");
    int64_t v;
    CHECK(a && a->count == 6 && ddpm_json_int64(a->child->next, &v) && v == -2);
    CHECK(!ddpm_json_int64(a->child->next->next, &v)); /* 3.5e2 is not an integer literal */
    const ddpm_json *b = ddpm_json_get(r, "b\xc3\xa9\xf0\x9f\x98\x80");
    CHECK(b && strcmp(b->str, "x\n") == 0);
    ddpm_json_free(d);
  }
  const char *bad[] = {"{\"a\":1,}", "[1 2]", "{'a':1}", "01", "1.", "-", "\"\\x\"", "\"a", "{\"a\"}", "[1]x",
                       "\"\\ud800\"", "\"\x01\"", "\"\xff\"", "nul", "[", "", "{\"a\":1}{", "1e", "\"\\u0000\""};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    d = NULL;
    int r = ddpm_json_parse(&d, bad[i], strlen(bad[i]), err, sizeof err);
    CHECK(r != 0 && d == NULL && strstr(err, "at byte") != NULL);
    if (r == 0) fprintf(stderr, "accepted bad JSON: %s\n", bad[i]);
    ddpm_json_free(d);
  }
  /* nesting limit */
  char deep[300];
  memset(deep, '[', 200);
  deep[200] = 0;
  CHECK(ddpm_json_parse(&d, deep, 200, err, sizeof err) != 0 && strstr(err, "too deep"));
  int64_t big;
  ddpm_json n = {.type = DDPM_JSON_NUMBER, .str = "9223372036854775808", .len = 19};
  CHECK(!ddpm_json_int64(&n, &big));
  n.str = "-9223372036854775808";
  n.len = 20;
  CHECK(ddpm_json_int64(&n, &big) && big == INT64_MIN);
}

static void test_roundtrip(void) {
  char path[300];
  snprintf(path, sizeof path, "%s/rt.safetensors", dir);
  int64_t s23[2] = {2, 3}, s5[1] = {5}, s0[2] = {0, 4};
  double v[6] = {1, -2, 3.5, 4, 5, 6};
  ddpm_tensor *a = NULL, *b = NULL, *c = NULL, *e = NULL, *at = NULL;
  CHECK_OK(ddpm_from_doubles(&a, v, 2, s23, DDPM_FLOAT32, DDPM_CPU));
  CHECK_OK(ddpm_from_doubles(&b, v, 1, s5, DDPM_UINT8, DDPM_CPU));
  CHECK_OK(ddpm_from_doubles(&c, v, 1, s5, DDPM_INT64, DDPM_CPU));
  CHECK_OK(ddpm_empty(&e, 2, s0, DDPM_FLOAT16, DDPM_CPU));
  CHECK_OK(ddpm_transpose(&at, a, 0, 1)); /* non-contiguous */
  const char *names[5] = {"w.t", "bytes", "idx", "empty", "w"};
  ddpm_tensor *ts[5] = {at, b, c, e, a};
  const char *mk[2] = {"format", "note"}, *mv[2] = {"pt", "quote \" and\nnewline"};
  CHECK_OK(ddpm_safetensors_save(path, 5, names, ts, 2, mk, mv));
  ddpm_safetensors *f = NULL;
  CHECK_OK(ddpm_safetensors_open(&f, path));
  if (!f) return;
  CHECK(ddpm_safetensors_count(f) == 5);
  CHECK(strcmp(ddpm_safetensors_name(f, 0), "bytes") == 0); /* sorted */
  CHECK(ddpm_safetensors_metadata_count(f) == 2);
  CHECK(strcmp(ddpm_safetensors_metadata_value(f, 1), mv[1]) == 0);
  ddpm_tensor *r = NULL;
  CHECK_OK(ddpm_safetensors_get_by_name(&r, f, "w.t"));
  double out[6];
  CHECK(r && r->ndim == 2 && r->shape[0] == 3 && r->shape[1] == 2);
  CHECK_OK(ddpm_tensor_to_doubles(r, out, 6));
  CHECK(out[0] == 1 && out[1] == 4 && out[2] == -2 && out[5] == 6);
  ddpm_tensor *ri = NULL, *re = NULL;
  CHECK_OK(ddpm_safetensors_get_by_name(&ri, f, "idx"));
  CHECK(ri && ri->dtype == DDPM_INT64 && ((int64_t *)ddpm_tensor_data(ri))[2] == 3);
  CHECK_OK(ddpm_safetensors_get_by_name(&re, f, "empty"));
  CHECK(re && re->dtype == DDPM_FLOAT16 && ddpm_tensor_numel(re) == 0 && re->shape[1] == 4);
  CHECK(ddpm_safetensors_get_by_name(&r, f, "nope") == DDPM_ERR_INDEX);
  /* zero-copy: the tensor outlives the handle and stays readable and writable (private COW) */
  ddpm_safetensors_close(f);
  CHECK_OK(ddpm_fill_(ri, 7));
  CHECK(((int64_t *)ddpm_tensor_data(ri))[4] == 7);
  ddpm_tensor_release(re);
  ddpm_tensor_release(ri);
  /* the file itself was not changed by the in-place write */
  CHECK_OK(ddpm_safetensors_open(&f, path));
  CHECK_OK(ddpm_safetensors_get_by_name(&ri, f, "idx"));
  CHECK(ri && ((int64_t *)ddpm_tensor_data(ri))[4] == 5);
  /* alignment: every tensor offset is a multiple of its element size */
  for (int64_t i = 0; i < ddpm_safetensors_count(f); i++) {
    ddpm_tensor *t = NULL;
    CHECK_OK(ddpm_safetensors_get(&t, f, i));
    if (t && ddpm_tensor_numel(t)) CHECK(((uintptr_t)ddpm_tensor_data(t) % (uintptr_t)ddpm_dsize(t->dtype)) == 0);
    ddpm_tensor_release(t);
  }
  ddpm_safetensors_close(f);
  ddpm_tensor_release(ri);
  ddpm_tensor_release(r);
  ddpm_tensor_release(a);
  ddpm_tensor_release(b);
  ddpm_tensor_release(c);
  ddpm_tensor_release(e);
  ddpm_tensor_release(at);
  /* header length is a multiple of 8 */
  FILE *fp = fopen(path, "rb");
  unsigned char len8[8] = {0};
  CHECK(fread(len8, 1, 8, fp) == 8);
  fclose(fp);
  CHECK(len8[0] % 8 == 0);
}

static void test_widen_and_unaligned(void) {
  char path[300];
  snprintf(path, sizeof path, "%s/w.safetensors", dir);
  /* I8 [2] at 0..2, F32 [1] at 2..6 (unaligned), I16 [1] at 6..8 */
  unsigned char data[8] = {0xff, 0x05, 0, 0, 0x80, 0x3f, 0x00, 0x80};
  write_st(path,
           "{\"a\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2]},\"f\":{\"dtype\":\"F32\",\"shape\":[1],"
           "\"data_offsets\":[2,6]},\"s\":{\"dtype\":\"I16\",\"shape\":[],\"data_offsets\":[6,8]}}",
           data, 8);
  ddpm_safetensors *f = NULL;
  CHECK_OK(ddpm_safetensors_open(&f, path));
  if (!f) return;
  ddpm_tensor *a = NULL, *x = NULL, *s = NULL;
  CHECK_OK(ddpm_safetensors_get_by_name(&a, f, "a"));
  CHECK_OK(ddpm_safetensors_get_by_name(&x, f, "f"));
  CHECK_OK(ddpm_safetensors_get_by_name(&s, f, "s"));
  CHECK(a && a->dtype == DDPM_INT32 && ((int32_t *)ddpm_tensor_data(a))[0] == -1 && ((int32_t *)ddpm_tensor_data(a))[1] == 5);
  CHECK(x && x->dtype == DDPM_FLOAT32 && ((float *)ddpm_tensor_data(x))[0] == 1.0f);
  CHECK(s && s->ndim == 0 && ((int32_t *)ddpm_tensor_data(s))[0] == -32768);
  ddpm_tensor_release(a);
  ddpm_tensor_release(x);
  ddpm_tensor_release(s);
  ddpm_safetensors_close(f);
}

static void test_corrupt(void) {
  char path[300];
  float d4[4] = {1, 2, 3, 4};
  snprintf(path, sizeof path, "%s/short.safetensors", dir);
  write_raw(path, "\x10\0\0", 3);
  ddpm_safetensors *f = NULL;
  CHECK(ddpm_safetensors_open(&f, path) == DDPM_ERR_FORMAT && strstr(ddpm_last_error(), "too short"));
  CHECK(strstr(ddpm_last_error(), path) != NULL);
  /* header length past the end, absurd header length */
  write_raw(path, "\x40\0\0\0\0\0\0\0{}", 10);
  CHECK(ddpm_safetensors_open(&f, path) == DDPM_ERR_FORMAT && strstr(ddpm_last_error(), "exceeds the file size"));
  write_raw(path, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
  CHECK(ddpm_safetensors_open(&f, path) == DDPM_ERR_FORMAT && strstr(ddpm_last_error(), "exceeds the file size"));
  CHECK(ddpm_safetensors_open(&f, "/nonexistent/x.safetensors") == DDPM_ERR_IO &&
        strstr(ddpm_last_error(), "No such file"));
  CHECK(ddpm_safetensors_open(&f, dir) == DDPM_ERR_IO && strstr(ddpm_last_error(), "directory"));
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},}", d4, 16, DDPM_ERR_FORMAT, "JSON header is invalid");
  EXPECT_BAD("[1,2]   ", d4, 16, DDPM_ERR_FORMAT, "does not start with a JSON object");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,20]}}", d4, 16, DDPM_ERR_FORMAT, "past the end");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", d4, 16, DDPM_ERR_FORMAT, "expected 3 elements x 4 bytes");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
             d4, 16, DDPM_ERR_FORMAT, "overlap");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
             d4, 16, DDPM_ERR_FORMAT, "gap");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", d4, 16, DDPM_ERR_FORMAT, "trailing bytes");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,16]}}", d4, 16, DDPM_ERR_FORMAT, "overflowing");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", d4, 16, DDPM_ERR_FORMAT, "non-negative");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4.0],\"data_offsets\":[0,16]}}", d4, 16, DDPM_ERR_FORMAT, "non-negative");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", d4, 16, DDPM_ERR_FORMAT, "end before begin");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}}", d4, 16, DDPM_ERR_FORMAT, "two integers");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,99999999999999999999]}}", d4, 16, DDPM_ERR_FORMAT, "two non-negative integers");
  EXPECT_BAD("{\"a\":{\"dtype\":\"Q7\",\"shape\":[4],\"data_offsets\":[0,16]}}", d4, 16, DDPM_ERR_FORMAT, "unknown dtype");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[16],\"data_offsets\":[0,16]}}", d4, 16, DDPM_ERR_UNSUPPORTED, "cannot hold");
  EXPECT_BAD("{\"a\":{\"shape\":[4],\"data_offsets\":[0,16]}}", d4, 16, DDPM_ERR_FORMAT, "lacks \"dtype\"");
  EXPECT_BAD("{\"a\":[1]}", d4, 16, DDPM_ERR_FORMAT, "expected an object");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,4],\"data_offsets\":[0,16]}}", d4, 16, DDPM_ERR_UNSUPPORTED, "at most 8");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,16]}}",
             d4, 16, DDPM_ERR_FORMAT, "appears twice");
  EXPECT_BAD("{\"__metadata__\":{\"k\":1},\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d4, 16, DDPM_ERR_FORMAT, "expected a string");
  /* the valid counterpart of the cases above opens */
  CHECK(open_status("{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}  ", d4, 16) == DDPM_OK);
  /* every truncation of a valid file fails cleanly */
  char full[300];
  snprintf(full, sizeof full, "%s/rt.safetensors", dir);
  FILE *fp = fopen(full, "rb");
  static unsigned char buf[4096];
  size_t n = fp ? fread(buf, 1, sizeof buf, fp) : 0;
  if (fp) fclose(fp);
  CHECK(n > 100);
  int clean = 1;
  for (size_t k = 0; k < n; k += 7) {
    write_raw(path, buf, k);
    int st = ddpm_safetensors_open(&f, path);
    if (st != DDPM_ERR_FORMAT) clean = 0;
    if (!st) ddpm_safetensors_close(f);
  }
  CHECK(clean);
}

static void test_atomic(void) {
  char path[300], got[16] = {0};
  snprintf(path, sizeof path, "%s/keep.bin", dir);
  CHECK_OK(ddpm_write_file_atomic(path, "old", 3));
  FILE *fp;
  CHECK(ddpm_write_file_atomic("/nonexistent-dir/x.bin", "x", 1) == DDPM_ERR_IO &&
        strstr(ddpm_last_error(), "/nonexistent-dir"));
  CHECK(ddpm_write_file_atomic(dir, "x", 1) == DDPM_ERR_IO && strstr(ddpm_last_error(), "directory"));
  /* a failing save leaves the previous file alone */
  const char *names[1] = {"__metadata__"};
  int64_t s1[1] = {1};
  ddpm_tensor *t = NULL;
  CHECK_OK(ddpm_empty(&t, 1, s1, DDPM_FLOAT32, DDPM_CPU));
  CHECK(ddpm_safetensors_save(path, 1, names, &t, 0, NULL, NULL) == DDPM_ERR_ARGUMENT);
  const char *dup[2] = {"a", "a"};
  ddpm_tensor *tt[2] = {t, t};
  CHECK(ddpm_safetensors_save(path, 2, dup, tt, 0, NULL, NULL) == DDPM_ERR_ARGUMENT && strstr(ddpm_last_error(), "twice"));
  ddpm_tensor_release(t);
  fp = fopen(path, "rb");
  CHECK(fp && fread(got, 1, 16, fp) == 3);
  if (fp) fclose(fp);
}

static void test_fixture(void) {
  const char *shared = getenv("DDPM_SHARED");
  if (!shared) return;
  char path[512];
  snprintf(path, sizeof path, "%s/fixtures/tiny/unet/diffusion_pytorch_model.safetensors", shared);
  ddpm_safetensors *f = NULL;
  if (access(path, R_OK) != 0) return;
  CHECK_OK(ddpm_safetensors_open(&f, path));
  CHECK(ddpm_safetensors_count(f) == 210);
  CHECK(ddpm_safetensors_metadata_count(f) == 1 && strcmp(ddpm_safetensors_metadata_value(f, 0), "pt") == 0);
  int64_t shape[8];
  int64_t i = ddpm_safetensors_find(f, "conv_in.weight");
  CHECK(i >= 0 && ddpm_safetensors_shape(f, i, shape) == 4 && shape[0] == 32 && shape[1] == 3);
  ddpm_safetensors_close(f);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/ddpm_test_st_XXXXXX");
  if (!mkdtemp(dir)) return 1;
  test_json();
  test_roundtrip();
  test_widen_and_unaligned();
  test_corrupt();
  test_atomic();
  test_fixture();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return tcheck_summary("test_formats_safetensors");
}
