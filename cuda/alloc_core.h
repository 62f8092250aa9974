/* alloc_core.h: the caching allocator's bookkeeping in plain C, independent of CUDA, so the same
 * code runs under caching_allocator.cu (raw memory from cudaMalloc) and under a CPU-only stress
 * test (raw memory from malloc).  Callers serialise access (one lock around every ac_ call).
 *
 * The scheme follows what made PyTorch's allocator work well for training loops:
 *  - sizes round up to 512 bytes; requests up to 1 MiB come from 2 MiB "small" segments, requests
 *    up to 10 MiB from 20 MiB segments, larger ones from a segment of their own size (2 MiB units);
 *  - a free block is found best-fit among blocks of the same pool and stream, split when the
 *    remainder is worth keeping, and merged with free neighbours of its segment when freed;
 *  - a block is reused only by allocations on the stream it was allocated on (stream order makes
 *    that safe); a block also used on other streams (record_stream) waits for events recorded on
 *    those streams before it becomes free;
 *  - allocations on a stream that is capturing a CUDA graph come from that graph's private pool,
 *    whose memory no one else receives while the graph lives;
 *  - when the device refuses memory (or an artificial limit is reached) the cache is released
 *    and the request retried once before the caller reports out-of-memory.                     */
#ifndef DDPM_ALLOC_CORE_H
#define DDPM_ALLOC_CORE_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AC_ROUND 512u
#define AC_SMALL_LIMIT ((size_t)1 << 20)     /* requests up to 1 MiB are "small" */
#define AC_SMALL_SEGMENT ((size_t)2 << 20)   /* small requests share 2 MiB segments */
#define AC_MID_LIMIT ((size_t)10 << 20)      /* requests up to 10 MiB share 20 MiB segments */
#define AC_MID_SEGMENT ((size_t)20 << 20)
#define AC_LARGE_UNIT ((size_t)2 << 20)
#define AC_MAX_USES 4                        /* extra streams per block before falling back to a sync */

typedef struct ac_pool ac_pool;
typedef struct ac_block ac_block;
struct ac_block {
  uintptr_t ptr;
  size_t size;                /* bytes this block spans */
  size_t requested;           /* what the caller asked for (0 when free) */
  void *stream;               /* allocation stream; reuse stays on it */
  ac_pool *pool;
  ac_block *prev, *next;      /* address-ordered neighbours within the segment */
  int allocated;
  int small;                  /* lives in a small segment */
  int nuses;                  /* other streams that used it (record_stream) */
  void *uses[AC_MAX_USES];
  int nevents;                /* outstanding events before it may be reused */
  void *events[AC_MAX_USES];
  ac_block *pending_next;     /* list of blocks waiting for events */
};

typedef struct {
  ac_block **v;
  size_t n, cap;
} ac_list; /* sorted by (stream, size, ptr) */

struct ac_pool {
  ac_list small, large;
  int is_private;
  int64_t live;               /* allocated blocks from this pool */
  ac_pool *next_private;
};

typedef struct {
  void *(*raw_alloc)(size_t nbytes, void *ctx);          /* NULL when the device refuses */
  void (*raw_free)(void *p, size_t nbytes, void *ctx);
  /* events: record on a stream (returns an event or NULL if recording failed), query (1 done),
   * destroy. May be NULL (then uses on other streams are handled by synchronize_all). */
  void *(*record_event)(void *stream, void *ctx);
  int (*query_event)(void *event, void *ctx);
  void (*destroy_event)(void *event, void *ctx);
  void (*synchronize_all)(void *ctx);
  void *ctx;
} ac_backend;

typedef struct {
  int64_t allocated, reserved, peak_allocated, peak_reserved, active_blocks, segments;
  int64_t alloc_calls, device_mallocs, cache_flushes, ooms;
} ac_stats;

typedef struct {
  ac_backend be;
  size_t limit; /* 0: none */
  ac_pool base;
  ac_pool *privates;
  /* streams currently capturing into a private pool */
  int ncapture;
  void *capture_stream[8];
  ac_pool *capture_pool[8];
  ac_block *pending;          /* freed blocks waiting for their events */
  ac_block **deferred;        /* freed during capture with extra stream uses */
  size_t ndeferred, capdeferred;
  /* allocated blocks by pointer: open addressing */
  ac_block **table;
  size_t tcap, tcount, ttomb;
  ac_stats st;
} ac_alloc;

#define AC_TOMB ((ac_block *)(uintptr_t)1)

static inline size_t ac_round(size_t n) {
  if (n == 0) n = 1;
  return (n + AC_ROUND - 1) / AC_ROUND * AC_ROUND;
}
static inline size_t ac_segment_size(size_t rounded) {
  if (rounded <= AC_SMALL_LIMIT) return AC_SMALL_SEGMENT;
  if (rounded <= AC_MID_LIMIT) return AC_MID_SEGMENT;
  return (rounded + AC_LARGE_UNIT - 1) / AC_LARGE_UNIT * AC_LARGE_UNIT;
}

/* ---- pointer table ------------------------------------------------------------------------ */
static inline size_t ac_hash(uintptr_t p, size_t cap) {
  uint64_t h = (uint64_t)p * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 20) & (cap - 1);
}
static int ac_table_grow(ac_alloc *a) {
  size_t ncap = a->tcap ? a->tcap * 2 : 1024;
  ac_block **nt = (ac_block **)calloc(ncap, sizeof *nt);
  if (!nt) return -1;
  for (size_t i = 0; i < a->tcap; i++) {
    ac_block *b = a->table[i];
    if (!b || b == AC_TOMB) continue;
    size_t h = ac_hash(b->ptr, ncap);
    while (nt[h]) h = (h + 1) & (ncap - 1);
    nt[h] = b;
  }
  free(a->table);
  a->table = nt;
  a->tcap = ncap;
  a->ttomb = 0;
  return 0;
}
static int ac_table_put(ac_alloc *a, ac_block *b) {
  if ((a->tcount + a->ttomb + 1) * 2 > a->tcap && ac_table_grow(a)) return -1;
  size_t h = ac_hash(b->ptr, a->tcap);
  while (a->table[h] && a->table[h] != AC_TOMB) h = (h + 1) & (a->tcap - 1);
  if (a->table[h] == AC_TOMB) a->ttomb--;
  a->table[h] = b;
  a->tcount++;
  return 0;
}
static ac_block *ac_table_take(ac_alloc *a, uintptr_t p, int remove) {
  if (!a->tcap) return NULL;
  size_t h = ac_hash(p, a->tcap);
  while (a->table[h]) {
    ac_block *b = a->table[h];
    if (b != AC_TOMB && b->ptr == p) {
      if (remove) {
        a->table[h] = AC_TOMB;
        a->tcount--;
        a->ttomb++;
      }
      return b;
    }
    h = (h + 1) & (a->tcap - 1);
  }
  return NULL;
}

/* ---- sorted free lists ---------------------------------------------------------------------- */
static inline int ac_cmp(void *s1, size_t z1, uintptr_t p1, const ac_block *b) {
  if ((uintptr_t)s1 != (uintptr_t)b->stream) return (uintptr_t)s1 < (uintptr_t)b->stream ? -1 : 1;
  if (z1 != b->size) return z1 < b->size ? -1 : 1;
  if (p1 != b->ptr) return p1 < b->ptr ? -1 : 1;
  return 0;
}
/* first index whose key >= (stream, size, ptr) */
static size_t ac_lower(const ac_list *l, void *stream, size_t size, uintptr_t ptr) {
  size_t lo = 0, hi = l->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (ac_cmp(stream, size, ptr, l->v[mid]) > 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
static int ac_list_insert(ac_list *l, ac_block *b) {
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 64;
    ac_block **nv = (ac_block **)realloc(l->v, nc * sizeof *nv);
    if (!nv) return -1;
    l->v = nv;
    l->cap = nc;
  }
  size_t i = ac_lower(l, b->stream, b->size, b->ptr);
  memmove(l->v + i + 1, l->v + i, (l->n - i) * sizeof *l->v);
  l->v[i] = b;
  l->n++;
  return 0;
}
static void ac_list_remove(ac_list *l, ac_block *b) {
  size_t i = ac_lower(l, b->stream, b->size, b->ptr);
  if (i < l->n && l->v[i] == b) {
    memmove(l->v + i, l->v + i + 1, (l->n - i - 1) * sizeof *l->v);
    l->n--;
  }
}
static inline ac_list *ac_list_of(ac_pool *p, const ac_block *b) { return b->small ? &p->small : &p->large; }

/* ---- lifetime --------------------------------------------------------------------------------- */
static void ac_init(ac_alloc *a, const ac_backend *be) {
  memset(a, 0, sizeof *a);
  a->be = *be;
}

static void ac_update_peaks(ac_alloc *a) {
  if (a->st.allocated > a->st.peak_allocated) a->st.peak_allocated = a->st.allocated;
  if (a->st.reserved > a->st.peak_reserved) a->st.peak_reserved = a->st.reserved;
}

/* Give back every cached segment that is entirely free (base pool only: private pools belong to
 * graphs whose replays still use their memory).  Returns the bytes released. */
static size_t ac_release_cached(ac_alloc *a) {
  size_t freed = 0;
  ac_list *lists[2] = {&a->base.small, &a->base.large};
  for (int k = 0; k < 2; k++) {
    ac_list *l = lists[k];
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++) {
      ac_block *b = l->v[i];
      if (!b->prev && !b->next) {
        a->be.raw_free((void *)b->ptr, b->size, a->be.ctx);
        a->st.reserved -= (int64_t)b->size;
        a->st.segments--;
        freed += b->size;
        free(b);
      } else {
        l->v[w++] = b;
      }
    }
    l->n = w;
  }
  if (freed) a->st.cache_flushes++;
  return freed;
}

/* Blocks whose events have completed become free (merged and listed). */
static void ac_free_block(ac_alloc *a, ac_block *b);
static void ac_process_pending(ac_alloc *a) {
  ac_block **pp = &a->pending;
  while (*pp) {
    ac_block *b = *pp;
    int done = 1;
    for (int k = 0; k < b->nevents; k++)
      if (b->events[k] && !a->be.query_event(b->events[k], a->be.ctx)) done = 0;
    if (!done) {
      pp = &b->pending_next;
      continue;
    }
    for (int k = 0; k < b->nevents; k++)
      if (b->events[k]) a->be.destroy_event(b->events[k], a->be.ctx);
    b->nevents = 0;
    *pp = b->pending_next;
    b->pending_next = NULL;
    ac_free_block(a, b);
  }
}

static ac_pool *ac_pool_for(ac_alloc *a, void *stream) {
  for (int i = 0; i < a->ncapture; i++)
    if (a->capture_stream[i] == stream) return a->capture_pool[i];
  return &a->base;
}

static int ac_capturing(const ac_alloc *a) { return a->ncapture > 0; }

/* Best fit in pool p for (stream, rounded size), or NULL. */
static ac_block *ac_find(ac_pool *p, void *stream, size_t size, int small) {
  ac_list *l = small ? &p->small : &p->large;
  size_t i = ac_lower(l, stream, size, 0);
  if (i >= l->n || l->v[i]->stream != stream) return NULL;
  ac_block *b = l->v[i];
  /* a mid-size request must not pin down a huge dedicated segment */
  if (!small && size <= AC_MID_LIMIT && b->size > AC_MID_SEGMENT) return NULL;
  return b;
}

/* Allocate nbytes for use on stream; NULL when the device (or the limit) refuses even after the
 * cache was released. */
static void *ac_malloc(ac_alloc *a, size_t nbytes, void *stream) {
  a->st.alloc_calls++;
  if (a->pending) ac_process_pending(a);
  size_t size = ac_round(nbytes);
  int small = size <= AC_SMALL_LIMIT;
  ac_pool *p = ac_pool_for(a, stream);
  ac_block *b = ac_find(p, stream, size, small);
  if (b) {
    ac_list_remove(ac_list_of(p, b), b);
  } else {
    size_t seg = ac_segment_size(size);
    void *mem = NULL;
    for (int attempt = 0; attempt < 2 && !mem; attempt++) {
      if (attempt == 1) {
        /* free the cache and retry once; never while a graph is capturing (cudaFree would
         * break the capture) */
        if (ac_capturing(a) || !ac_release_cached(a)) break;
      }
      if (a->limit && (size_t)a->st.reserved + seg > a->limit) continue;
      mem = a->be.raw_alloc(seg, a->be.ctx);
    }
    if (!mem) {
      a->st.ooms++;
      return NULL;
    }
    a->st.device_mallocs++;
    b = (ac_block *)calloc(1, sizeof *b);
    if (!b) {
      a->be.raw_free(mem, seg, a->be.ctx);
      return NULL;
    }
    b->ptr = (uintptr_t)mem;
    b->size = seg;
    b->stream = stream;
    b->pool = p;
    b->small = small;
    a->st.reserved += (int64_t)seg;
    a->st.segments++;
  }
  /* split off the tail when it is worth keeping */
  size_t rest = b->size - size;
  if ((small && rest >= AC_ROUND) || (!small && rest > AC_SMALL_LIMIT)) {
    ac_block *t = (ac_block *)calloc(1, sizeof *t);
    if (t) {
      t->ptr = b->ptr + size;
      t->size = rest;
      t->stream = b->stream;
      t->pool = b->pool;
      t->small = b->small;
      t->prev = b;
      t->next = b->next;
      if (b->next) b->next->prev = t;
      b->next = t;
      b->size = size;
      ac_list_insert(ac_list_of(t->pool, t), t);
    }
  }
  b->allocated = 1;
  b->requested = nbytes;
  if (ac_table_put(a, b)) { /* bookkeeping failure: give the block back */
    b->allocated = 0;
    ac_free_block(a, b);
    return NULL;
  }
  b->pool->live++;
  a->st.allocated += (int64_t)b->size;
  a->st.active_blocks++;
  ac_update_peaks(a);
  return (void *)b->ptr;
}

/* Merge b into the free list of its pool (b is not allocated and has no pending events). */
static void ac_free_block(ac_alloc *a, ac_block *b) {
  ac_pool *p = b->pool;
  b->nuses = 0;
  ac_block *n = b->next, *q = b->prev;
  /* a neighbour is mergeable when it is free and listed (not waiting for events) */
  if (n && !n->allocated && !n->nevents && n->pool == p) {
    ac_list_remove(ac_list_of(p, n), n);
    b->size += n->size;
    b->next = n->next;
    if (n->next) n->next->prev = b;
    free(n);
  }
  if (q && !q->allocated && !q->nevents && q->pool == p) {
    ac_list_remove(ac_list_of(p, q), q);
    q->size += b->size;
    q->next = b->next;
    if (b->next) b->next->prev = q;
    free(b);
    b = q;
  }
  ac_list_insert(ac_list_of(p, b), b);
}

/* A block freed while other streams may still use it: it becomes free once events recorded on
 * those streams complete (or at once after a device-wide sync when events are unavailable). */
static void ac_release_used(ac_alloc *a, ac_block *b) {
  b->nevents = 0;
  if (a->be.record_event) {
    for (int k = 0; k < b->nuses; k++) {
      void *e = a->be.record_event(b->uses[k], a->be.ctx);
      if (e) b->events[b->nevents++] = e;
      else if (a->be.synchronize_all) a->be.synchronize_all(a->be.ctx);
    }
  } else if (a->be.synchronize_all) {
    a->be.synchronize_all(a->be.ctx);
  }
  if (b->nevents) {
    b->pending_next = a->pending;
    a->pending = b;
    return;
  }
  ac_free_block(a, b);
}

/* Returns 0, or -1 when ptr is not a block of this allocator. */
static int ac_free(ac_alloc *a, void *ptr) {
  ac_block *b = ac_table_take(a, (uintptr_t)ptr, 1);
  if (!b) return -1;
  b->allocated = 0;
  b->requested = 0;
  b->pool->live--;
  a->st.allocated -= (int64_t)b->size;
  a->st.active_blocks--;
  if (b->nuses == 0) {
    ac_free_block(a, b);
    return 0;
  }
  if (!ac_capturing(a)) {
    ac_release_used(a, b);
    return 0;
  }
  /* events cannot be recorded while a graph captures: the block waits for the capture's end */
  if (a->ndeferred == a->capdeferred) {
    size_t nc = a->capdeferred ? a->capdeferred * 2 : 16;
    ac_block **nv = (ac_block **)realloc(a->deferred, nc * sizeof *nv);
    if (!nv) return 0; /* out of host memory: keep the block out of circulation, never race */
    a->deferred = nv;
    a->capdeferred = nc;
  }
  a->deferred[a->ndeferred++] = b;
  b->nevents = 1; /* busy: not mergeable until released */
  b->events[0] = NULL;
  return 0;
}

/* Mark that an allocated block is also used on another stream. */
static int ac_record_stream(ac_alloc *a, void *ptr, void *stream) {
  ac_block *b = ac_table_take(a, (uintptr_t)ptr, 0);
  if (!b) return -1;
  if (stream == b->stream) return 0;
  for (int k = 0; k < b->nuses; k++)
    if (b->uses[k] == stream) return 0;
  if (b->nuses == AC_MAX_USES) { /* too many: remember the first ones, sync covers the rest */
    if (a->be.synchronize_all) a->be.synchronize_all(a->be.ctx);
    return 0;
  }
  b->uses[b->nuses++] = stream;
  return 0;
}

/* ---- graph capture ---------------------------------------------------------------------------- */
static ac_pool *ac_pool_new_private(ac_alloc *a) {
  ac_pool *p = (ac_pool *)calloc(1, sizeof *p);
  if (!p) return NULL;
  p->is_private = 1;
  p->next_private = a->privates;
  a->privates = p;
  return p;
}
static int ac_capture_begin(ac_alloc *a, ac_pool *p, void *stream) {
  if (a->ncapture == 8) return -1;
  a->capture_stream[a->ncapture] = stream;
  a->capture_pool[a->ncapture] = p;
  a->ncapture++;
  return 0;
}
static void ac_capture_end(ac_alloc *a, void *stream) {
  for (int i = 0; i < a->ncapture; i++)
    if (a->capture_stream[i] == stream) {
      a->ncapture--;
      a->capture_stream[i] = a->capture_stream[a->ncapture];
      a->capture_pool[i] = a->capture_pool[a->ncapture];
      break;
    }
  if (a->ncapture == 0 && a->ndeferred) { /* frees that waited for the capture to end */
    size_t n = a->ndeferred;
    a->ndeferred = 0;
    for (size_t i = 0; i < n; i++) ac_release_used(a, a->deferred[i]);
  }
}

/* The graph that owned p is gone (and the caller synchronised the device): its memory joins the
 * base pool, retagged to new_stream (the default stream), free blocks listed there. */
static void ac_pool_retire(ac_alloc *a, ac_pool *p, void *new_stream) {
  ac_list *lists[2] = {&p->small, &p->large};
  /* allocated blocks of p: retag so their eventual free goes to the base pool */
  for (size_t i = 0; i < a->tcap; i++) {
    ac_block *b = a->table[i];
    if (b && b != AC_TOMB && b->pool == p) {
      b->pool = &a->base;
      b->stream = new_stream;
      a->base.live++;
    }
  }
  /* pending/deferred blocks of p also move */
  for (ac_block *b = a->pending; b; b = b->pending_next)
    if (b->pool == p) {
      b->pool = &a->base;
      b->stream = new_stream;
    }
  /* free blocks move as they are: a segment belongs to one pool, so no two of them can merge */
  for (int k = 0; k < 2; k++) {
    ac_list *l = lists[k];
    for (size_t i = 0; i < l->n; i++) {
      ac_block *b = l->v[i];
      b->pool = &a->base;
      b->stream = new_stream;
      ac_list_insert(ac_list_of(&a->base, b), b);
    }
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
  }
  ac_pool **pp = &a->privates;
  while (*pp && *pp != p) pp = &(*pp)->next_private;
  if (*pp) *pp = p->next_private;
  free(p);
}

/* Bytes of the largest free block a request of this stream could use (for messages). */
static size_t ac_largest_free(ac_alloc *a) {
  size_t m = 0;
  for (size_t i = 0; i < a->base.large.n; i++)
    if (a->base.large.v[i]->size > m) m = a->base.large.v[i]->size;
  return m;
}
#endif
