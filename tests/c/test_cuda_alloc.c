/* test_cuda_alloc.c: the caching allocator's bookkeeping (cuda/alloc_core.h) under a mock device
 * made of malloc'd memory, so it runs on every machine: many sizes, frees and reuse with a
 * byte-exact accounting check, splitting and merging, stream-aware reuse, events for blocks used
 * on other streams, private pools for graph capture, and out-of-memory with cache release and one
 * retry under an artificial limit. */
#include "tcheck.h"
#include "../../cuda/alloc_core.h"

typedef struct {
  int64_t live_bytes, mallocs, frees;
  size_t cap;         /* device capacity (0: unlimited) */
  int events_done;    /* mock events complete when this is set */
  int syncs;
} mock;

static void *m_alloc(size_t n, void *ctx) {
  mock *m = ctx;
  if (m->cap && (size_t)m->live_bytes + n > m->cap) return NULL;
  void *p = malloc(n);
  if (p) {
    m->live_bytes += (int64_t)n;
    m->mallocs++;
  }
  return p;
}
static void m_free(void *p, size_t n, void *ctx) {
  mock *m = ctx;
  m->live_bytes -= (int64_t)n;
  m->frees++;
  free(p);
}
static int event_token;
static void *m_record(void *stream, void *ctx) { return &event_token; }
static int m_query(void *e, void *ctx) { return ((mock *)ctx)->events_done; }
static void m_destroy(void *e, void *ctx) {}
static void m_sync(void *ctx) { ((mock *)ctx)->syncs++; }

static void setup(ac_alloc *a, mock *m) {
  memset(m, 0, sizeof *m);
  ac_backend be = {m_alloc, m_free, m_record, m_query, m_destroy, m_sync, m};
  ac_init(a, &be);
}

static void teardown(ac_alloc *a) {
  ac_release_cached(a);
  free(a->base.small.v);
  free(a->base.large.v);
  free(a->table);
  free(a->deferred);
}

/* xorshift: reproducible sizes */
static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) {
  rs ^= rs << 13;
  rs ^= rs >> 7;
  rs ^= rs << 17;
  return rs;
}

static void test_stress(void) {
  ac_alloc a;
  mock m;
  setup(&a, &m);
  enum { N = 300 };
  void *p[N] = {0};
  size_t sz[N] = {0};
  int64_t expect = 0;
  int bad_fill = 0, bad_free = 0, bad_alloc = 0, bad_stat = 0;
  for (int step = 0; step < 20000; step++) {
    int k = (int)(rnd() % N);
    if (p[k]) {
      /* the pattern written at allocation time must survive: nobody else got this memory */
      unsigned char want = (unsigned char)k;
      if (((unsigned char *)p[k])[0] != want || ((unsigned char *)p[k])[sz[k] - 1] != want) bad_fill++;
      expect -= (int64_t)ac_round(sz[k]);
      bad_free += ac_free(&a, p[k]) != 0;
      p[k] = NULL;
    } else {
      uint64_t r = rnd() % 100;
      sz[k] = r < 70 ? 1 + rnd() % 65536 : (r < 95 ? 1 + rnd() % (4u << 20) : 1 + rnd() % (24u << 20));
      p[k] = ac_malloc(&a, sz[k], (void *)(uintptr_t)(rnd() % 2)); /* two streams */
      if (!p[k]) {
        bad_alloc++;
        continue;
      }
      memset(p[k], k & 0xff, sz[k]);
      expect += (int64_t)ac_round(sz[k]);
    }
    /* a block may exceed its rounded size when the leftover was too small to split off */
    bad_stat += !(a.st.allocated >= expect && a.st.allocated <= expect + (int64_t)N * (1 << 20));
  }
  CHECK(bad_fill == 0);
  CHECK(bad_free == 0);
  CHECK(bad_alloc == 0);
  CHECK(bad_stat == 0);
  CHECK(a.st.allocated >= expect);
  CHECK(a.st.reserved == m.live_bytes);
  CHECK(a.st.peak_allocated >= a.st.allocated);
  for (int k = 0; k < N; k++)
    if (p[k]) bad_free += ac_free(&a, p[k]) != 0;
  CHECK(bad_free == 0);
  CHECK(a.st.allocated == 0 && a.st.active_blocks == 0);
  /* everything merged back: releasing the cache returns every segment */
  ac_release_cached(&a);
  CHECK(a.st.reserved == 0 && m.live_bytes == 0 && a.st.segments == 0);
  CHECK(ac_free(&a, (void *)0x1234) == -1); /* not ours */
  teardown(&a);
}

static void test_split_merge_and_streams(void) {
  ac_alloc a;
  mock m;
  setup(&a, &m);
  void *s0 = NULL, *s1 = (void *)1;
  void *x = ac_malloc(&a, 1000, s0);       /* 1024 bytes out of a 2 MiB small segment */
  void *y = ac_malloc(&a, 1000, s0);       /* split from the same segment */
  CHECK(m.mallocs == 1);
  CHECK((char *)y == (char *)x + 1024);
  void *z = ac_malloc(&a, 1000, s1);       /* another stream never shares free blocks */
  CHECK(m.mallocs == 2);
  ac_free(&a, x);
  void *x2 = ac_malloc(&a, 512, s0);       /* reuses x's block on the same stream */
  CHECK(x2 == x);
  ac_free(&a, x2);
  ac_free(&a, y);
  CHECK(a.base.small.n == 2); /* s0's segment merged back to one block; s1's tail */
  ac_free(&a, z);
  /* a large request: its own segment, rounded to 2 MiB */
  void *big = ac_malloc(&a, (size_t)30 << 20, s0);
  CHECK(a.st.reserved == (int64_t)(2 * AC_SMALL_SEGMENT + ((size_t)30 << 20)));
  ac_free(&a, big);
  void *mid = ac_malloc(&a, (size_t)5 << 20, s0); /* must not carve up the 30 MiB segment */
  CHECK(m.mallocs == 4);
  ac_free(&a, mid);
  teardown(&a);
}

static void test_record_stream_events(void) {
  ac_alloc a;
  mock m;
  setup(&a, &m);
  void *x = ac_malloc(&a, 4096, NULL);
  CHECK(ac_record_stream(&a, x, (void *)7) == 0);
  ac_free(&a, x);
  CHECK(a.pending != NULL);             /* waits for the event on stream 7 */
  void *y = ac_malloc(&a, 4096, NULL);  /* cannot reuse x yet */
  CHECK(y != x);
  m.events_done = 1;
  void *z = ac_malloc(&a, 4096, NULL);  /* now it can */
  CHECK(z == x);
  CHECK(a.pending == NULL);
  ac_free(&a, y);
  ac_free(&a, z);
  teardown(&a);
}

static void test_private_pool(void) {
  ac_alloc a;
  mock m;
  setup(&a, &m);
  void *cap = (void *)5;
  void *before = ac_malloc(&a, 8192, cap); /* not capturing yet: base pool */
  ac_free(&a, before);
  ac_pool *pool = ac_pool_new_private(&a);
  CHECK(ac_capture_begin(&a, pool, cap) == 0);
  void *g1 = ac_malloc(&a, 8192, cap);
  CHECK(g1 != before); /* capture allocations never come from the base pool */
  ac_free(&a, g1);     /* freed inside the capture: stays in the private pool */
  void *g2 = ac_malloc(&a, 8192, cap);
  CHECK(g2 == g1);
  void *other = ac_malloc(&a, 8192, NULL); /* another stream, outside the capture */
  CHECK(other != g1 && other != g2);
  ac_capture_end(&a, cap);
  ac_free(&a, g2);
  void *after = ac_malloc(&a, 8192, cap); /* capture over: graph memory stays reserved */
  CHECK(after != g1);
  int64_t reserved = a.st.reserved;
  ac_release_cached(&a);
  CHECK(a.st.reserved <= reserved);
  ac_pool_retire(&a, pool, NULL); /* graph gone: its memory joins the base pool */
  void *reuse = ac_malloc(&a, 8192, NULL);
  CHECK(reuse == g1 || reuse != NULL);
  ac_free(&a, reuse);
  ac_free(&a, other);
  ac_free(&a, after);
  CHECK(a.st.allocated == 0);
  teardown(&a);
}

static void test_oom_retry(void) {
  ac_alloc a;
  mock m;
  setup(&a, &m);
  a.limit = (size_t)64 << 20;
  void *x = ac_malloc(&a, (size_t)40 << 20, NULL);
  CHECK(x != NULL);
  ac_free(&a, x); /* cached: 40 MiB reserved */
  CHECK(a.st.reserved == (int64_t)40 << 20);
  void *y = ac_malloc(&a, (size_t)48 << 20, NULL); /* only fits once the cache is released */
  CHECK(y != NULL);
  CHECK(a.st.cache_flushes == 1);
  CHECK(a.st.reserved == (int64_t)48 << 20);
  void *z = ac_malloc(&a, (size_t)20 << 20, NULL); /* over the limit even after the retry */
  CHECK(z == NULL);
  CHECK(a.st.ooms == 1);
  CHECK(a.st.allocated == (int64_t)48 << 20); /* the failure changed nothing */
  ac_free(&a, y);
  a.limit = 0;
  m.cap = (size_t)50 << 20; /* now the device itself refuses */
  /* another stream cannot use the cached 48 MiB: the device refuses a new segment until the
   * cache is released */
  void *w = ac_malloc(&a, (size_t)30 << 20, (void *)1);
  CHECK(w != NULL);
  CHECK(a.st.cache_flushes == 2);
  ac_free(&a, w);
  teardown(&a);
}

int main(void) {
  test_stress();
  test_split_merge_and_streams();
  test_record_stream_events();
  test_private_pool();
  test_oom_retry();
  return tcheck_summary("test_cuda_alloc");
}
