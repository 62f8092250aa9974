/* host_alloc.c: host memory for tensors, with a cache of large freed blocks.  Lua frees
 * temporaries only when its collector runs, many at once; a block handed back to the system and
 * allocated again pays a page fault per 4 KB (the dominant cost of an elementwise op on fresh
 * memory).  Blocks of 256 KB and more therefore come straight from mmap, rounded to size classes
 * (eight per power of two, so at most 12.5% slack), and freed ones are kept in per-class free
 * lists for reuse while their pages are still mapped and warm.
 * The cache must not make the process much bigger than its tensors: a miss that would take the
 * mapped bytes (in use + cached) beyond the peak ever in use plus a slack (1/8 of that peak, at
 * least 64 MB) first unmaps the least recently freed blocks.  Away from the peak nothing is
 * evicted, so a training step still reuses warm blocks almost everywhere, while its resident
 * peak stays near that of its live tensors (VmHWM at batch 128: 1.47 GB -> 1.26 GB for ~2%
 * more time in page faults).  glibc's heap is not used for these blocks because it keeps
 * freed memory resident without being able to reuse it across sizes.  (Transparent huge pages
 * were tried: the direct compaction on fault costs more than the faults they save.)
 * Sanitizer builds skip the cache so every use after free is still caught. */
#include "cpu.h"
#include <pthread.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#define HOST_CACHE 0
#else
#define HOST_CACHE 1
#endif

#define CACHE_MIN ((size_t)256 << 10)
#define CLASSES_PER_POW2 8
#define NCLASS (64 * CLASSES_PER_POW2)

/* a cached block holds its own list links: in its class list and in the LRU list */
typedef struct block {
  struct block *next, *prev;   /* class list */
  struct block *lnext, *lprev; /* LRU list, most recently freed first */
  size_t size;
  int cls;
} block;
static block *free_lists[NCLASS];
static block lru = {.lnext = &lru, .lprev = &lru};
static size_t cached_bytes;
static size_t cache_cap = (size_t)1 << 30; /* 1 GiB by default; DDPM_HOST_CACHE_MB overrides */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static const size_t slack = (size_t)64 << 20; /* at least; or 1/8 of the peak in use */
static void read_env(void) {
  const char *e = getenv("DDPM_HOST_CACHE_MB");
  if (e && *e) cache_cap = (size_t)strtoull(e, NULL, 10) << 20;
}

/* the size class of n (>= CACHE_MIN) and the block size it stands for */
static int size_class(size_t n, size_t *rounded) {
  int e = 63 - __builtin_clzll((unsigned long long)n); /* 2^e <= n < 2^(e+1) */
  size_t step = (size_t)1 << (e - 3);                  /* eight classes per power of two */
  size_t r = (n + step - 1) & ~(step - 1);
  if (r >> (e + 1)) { /* rounded up into the next power of two */
    e++;
    step <<= 1;
  }
  *rounded = r;
  return e * CLASSES_PER_POW2 + (int)((r >> (e - 3)) & (CLASSES_PER_POW2 - 1));
}

static void *raw_alloc(size_t n) {
  void *p = NULL;
  if (posix_memalign(&p, 64, n ? n : 64)) return NULL;
  return p;
}

static void *map_block(size_t n) {
  void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* unlink a cached block (lock held) */
static void take(block *b) {
  if (b->prev) b->prev->next = b->next;
  else free_lists[b->cls] = b->next;
  if (b->next) b->next->prev = b->prev;
  b->lprev->lnext = b->lnext;
  b->lnext->lprev = b->lprev;
  cached_bytes -= b->size;
}

/* unmap a chain of blocks linked through next (outside the lock) */
static void unmap_chain(block *b) {
  while (b) {
    block *n = b->next;
    munmap(b, b->size);
    b = n;
  }
}

/* remove the least recently freed blocks until at least `want` bytes are out (lock held) */
static block *evict(size_t want) {
  block *out = NULL;
  size_t got = 0;
  while (got < want && lru.lprev != &lru) {
    block *b = lru.lprev;
    take(b);
    got += b->size;
    b->next = out;
    out = b;
  }
  return out;
}

/* give every cached block back to the system (on allocation failure, or on request) */
void cpu_host_cache_flush(void) {
  pthread_mutex_lock(&lock);
  block *all = evict((size_t)-1);
  pthread_mutex_unlock(&lock);
  unmap_chain(all);
}

size_t cpu_host_cached_bytes(void) { return cached_bytes; }


static size_t in_use, peak_in_use; /* bytes of cached-size blocks handed out, and their maximum */

void *cpu_host_alloc(size_t nbytes) {
  if (!HOST_CACHE || nbytes < CACHE_MIN) return raw_alloc(nbytes);
  pthread_once(&once, read_env);
  size_t rounded;
  int c = size_class(nbytes, &rounded);
  pthread_mutex_lock(&lock);
  block *b = free_lists[c], *victims = NULL;
  if (b) {
    take(b);
  } else {
    /* resident = in use + cached: keep it within the peak of what was ever in use plus a slack,
     * trading the least recently freed blocks for the new one; away from the peak nothing goes */
    size_t s0 = peak_in_use / 8 > slack ? peak_in_use / 8 : slack;
    size_t budget = (in_use + rounded > peak_in_use ? in_use + rounded : peak_in_use) + s0;
    if (in_use + cached_bytes + rounded > budget) victims = evict(in_use + cached_bytes + rounded - budget);
  }
  in_use += rounded;
  if (in_use > peak_in_use) peak_in_use = in_use;
  pthread_mutex_unlock(&lock);
  if (b) return b;
  unmap_chain(victims);
  void *p = map_block(rounded);
  if (!p && cached_bytes) { /* the cache may be what is in the way */
    cpu_host_cache_flush();
    p = map_block(rounded);
  }
  if (!p) {
    pthread_mutex_lock(&lock);
    in_use -= rounded;
    pthread_mutex_unlock(&lock);
  }
  return p;
}

void cpu_host_free(void *p, size_t nbytes) {
  if (!p) return;
  if (!HOST_CACHE || nbytes < CACHE_MIN) {
    free(p);
    return;
  }
  size_t rounded;
  int c = size_class(nbytes, &rounded);
  block *b = p;
  pthread_mutex_lock(&lock);
  in_use -= rounded;
  if (cached_bytes + rounded <= cache_cap) {
    b->size = rounded;
    b->cls = c;
    b->prev = NULL;
    b->next = free_lists[c];
    if (b->next) b->next->prev = b;
    free_lists[c] = b;
    b->lnext = lru.lnext;
    b->lprev = &lru;
    lru.lnext->lprev = b;
    lru.lnext = b;
    cached_bytes += rounded;
    b = NULL;
  }
  pthread_mutex_unlock(&lock);
  if (b) munmap(b, rounded);
}
