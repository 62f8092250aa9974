/* host_alloc.c: host memory for tensors, with a cache of large freed blocks.  Lua frees
 * temporaries only when its collector runs, many at once; handed back to glibc, big blocks are
 * unmapped or trimmed, and the next tensor of that size pays a page fault per 4 KB (the
 * dominant cost of an elementwise op on fresh memory).  Freed blocks of 256 KB and more are
 * kept in per-size-class free lists (eight classes per power of two, so at most 12.5% slack)
 * up to a cap, and reused while their pages are still mapped and warm.  Sanitizer builds skip
 * the cache so every use after free is still caught. */
#include "cpu.h"
#include <pthread.h>

#if defined(__SANITIZE_ADDRESS__)
#define HOST_CACHE 0
#else
#define HOST_CACHE 1
#endif

#define CACHE_MIN ((size_t)256 << 10)
#define CLASSES_PER_POW2 8
#define NCLASS (64 * CLASSES_PER_POW2)

typedef struct block { struct block *next; } block;
static block *free_lists[NCLASS];
static size_t cached_bytes;
static size_t cache_cap = (size_t)1 << 30; /* 1 GiB by default; DDPM_HOST_CACHE_MB overrides */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;

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

/* give every cached block back to the system (on allocation failure, or on request) */
void cpu_host_cache_flush(void) {
  pthread_mutex_lock(&lock);
  for (int c = 0; c < NCLASS; c++)
    while (free_lists[c]) {
      block *b = free_lists[c];
      free_lists[c] = b->next;
      free(b);
    }
  cached_bytes = 0;
  pthread_mutex_unlock(&lock);
}

size_t cpu_host_cached_bytes(void) { return cached_bytes; }

void *cpu_host_alloc(size_t nbytes) {
  if (!HOST_CACHE || nbytes < CACHE_MIN) return raw_alloc(nbytes);
  pthread_once(&once, read_env);
  size_t rounded;
  int c = size_class(nbytes, &rounded);
  pthread_mutex_lock(&lock);
  block *b = free_lists[c];
  if (b) {
    free_lists[c] = b->next;
    cached_bytes -= rounded;
  }
  pthread_mutex_unlock(&lock);
  if (b) return b;
  void *p = raw_alloc(rounded);
  if (!p && cached_bytes) { /* the cache may be what is in the way */
    cpu_host_cache_flush();
    p = raw_alloc(rounded);
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
  pthread_mutex_lock(&lock);
  if (cached_bytes + rounded <= cache_cap) {
    block *b = p;
    b->next = free_lists[c];
    free_lists[c] = b;
    cached_bytes += rounded;
    p = NULL;
  }
  pthread_mutex_unlock(&lock);
  free(p);
}
