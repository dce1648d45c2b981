/*
 * pool: fixed-size block pools, one per size class.
 *
 * Classes are the powers of two from 16 bytes to `max`, or, with step=N, every N bytes up
 * to `max`. Each class is a pool: an intrusive singly linked list of freed blocks plus a
 * bump pointer into the chunk it is carving. A pool takes chunks of `chunk` bytes lazily
 * (when its free list is empty and its chunk is used up) and never gives them back: memory
 * handed to a class stays with that class. free finds the class from the requested size the
 * interface passes (as Lua's allocator and C23 free_sized do), so blocks carry no header
 * and there is no chunk directory.
 *
 * Requests above `max` get a run of whole chunks of their own. Runs and pool chunks come
 * from one chunk-granular level above a break (`top`) that grows lazily, like sbrk. A freed
 * run keeps its length in its first and last chunk; one bit per chunk (a bitmap at the
 * start of the region, region/chunk/8 bytes: 512 B for 256 MiB at 64 KiB chunks) marks the
 * first and last chunk of every free run, so a freed run coalesces with free neighbours in
 * O(1), and a free run that reaches the break lowers it. Free runs sit in bins (exact for
 * 1..63 chunks, then one per power of two) and are reused best fit, by large requests and
 * by pools needing a chunk (both split a larger run). realloc of a run shrinks in place or
 * grows into the break or a free neighbour.
 *
 * Threads (as tcmalloc's thread caches, or Bonwick's magazines in front of a depot): the
 * pools and the chunk level above are the depot, behind one mutex. Each thread that calls
 * in gets a cache of its own, carved from the heap at its first call: per class, a list of
 * at most `cache` blocks (and at most one chunk's worth). malloc pops from it and free
 * pushes onto it, with no lock and no atomic read-modify-write; an empty list takes half a
 * list's worth from the depot under the lock, a full one gives half back. A block freed by
 * another thread than its allocator's simply joins the freeing thread's cache (blocks carry
 * no owner), and returns to the depot with the next batch. A thread finds its cache through
 * a thread-local entry naming the instance by a number unique in the process (renewed by
 * reset), so an entry left from a destroyed instance, even one made again at the same
 * address, is never used. Large blocks always take the lock. cache=0 sends everything
 * through the lock.
 *
 * Cost: small malloc and free are O(1): the class from a shift or a count-leading-zeros,
 * then a pop or push; carving a new chunk is O(1). With caches, a thread-local load and a
 * compare come first, and one lock round trip per half list of blocks. Large malloc/free are O(1)
 * for runs of under 64 chunks, a scan of one or two power-of-two bins above.
 *
 * Weaknesses: internal fragmentation up to 50% with power-of-two classes (step= trades it
 * for more pools); chunks never move between classes, so a phase change (many small blocks
 * freed, then other sizes) leaves the old pools' memory unusable to others; each class in
 * use holds at least one chunk; large blocks round up to whole chunks; no memalign (a block
 * freed by its size must come from that size's pool, and pool blocks are only aligned to
 * their size's power of two at best), so the harness over-allocates for aligned requests.
 * Caches hold memory: up to `cache` blocks per class per thread stay out of the pools
 * (the counter `cached` shows how many at the end), and a thread that exits leaves its
 * cache as it is (no exit hook). Up to 64 threads per instance get a cache; further ones
 * use the depot, under the lock, for every call.
 *
 * Reference: D. E. Knuth, TAOCP vol. 1, 2.5 (fixed-size blocks on an available-space
 * list); P. R. Wilson, M. S. Johnstone, M. Neely, D. Boles, "Dynamic Storage Allocation: A
 * Survey and Critical Review", IWMM 1995 (simple segregated storage); J. Bonwick, J. Adams,
 * "Magazines and Vmem", USENIX 2001 (per-CPU caches in front of a depot); S. Ghemawat,
 * P. Menage, "TCMalloc: Thread-Caching Malloc" (per-thread lists moved in batches).
 */
#include "alloc.h"
#include "tcache.h"

#include <stdio.h>
#include <string.h>

#define EXACT_BINS 64 /* runs of 1..63 chunks have a bin each */
#define N_BINS 128
#define BIN_WORDS (N_BINS / 64)
#define MIN_CHUNK ((size_t)4 << 10)
#define MAX_CHUNK ((size_t)1 << 30)

/* One class: freed blocks, and the part of its newest chunk never handed out. */
struct pool {
  void *free;
  char *bump, *limit;
  size_t size;
};

/* A free chunk run: this header in its first chunk, `chunks` again at its last chunk. */
struct run {
  size_t chunks;
  struct run *next, *prev;
};

enum { C_CHUNK_NEW, C_CHUNK_REUSE, C_LARGE, C_SPLIT, C_COALESCE, C_TOP_TRIM, N_COUNTERS };

static const char *const counter_names[N_COUNTERS] = {
    "chunks_new", "chunks_reused", "large_runs", "run_splits", "run_coalesces", "top_trims",
};

struct pheap {
  /* read-mostly: every thread reads these on every call */
  size_t max_small;
  unsigned step_shift; /* linear classes: log2(step) */
  int linear;
  uint64_t tc_id; /* names the instance in the threads' entries (tcache.h) */
  size_t chunk;
  unsigned chunk_shift;
  char *end, *heap, *base;
  uint64_t *bits; /* one per chunk of the heap */
  size_t bit_words;
  size_t fixed_meta;
  size_t n_pools;
  /* the depot: everything below is used under the lock, on lines of its own */
  _Alignas(64) struct tc_state tc;
  char *top;
  uint64_t bin_map[BIN_WORDS];
  struct run *bin[N_BINS];
  uint64_t counter[N_COUNTERS];
  struct pool pool[];
};

static const struct alloc_param pool_params[] = {
    {"max", "64K",
     "largest pooled size, a power of two from 16 to chunk; larger requests "
     "get a run of chunks"},
    {"step", "0",
     "class spacing: 0 for powers of two from 16, else a power of two from 16 to "
     "max (classes step, 2*step, ..., max)"},
    {"chunk", "64K",
     "bytes a pool takes from the region at a time, a power of two from 4K "
     "to 1G, at least max"},
    {"cache", "64",
     "blocks each thread caches per class (at most a chunk's worth), 0 to 65536; "
     "0: every call takes the lock"},
    {NULL, NULL, NULL},
};

static const char *const pool_variants[] = {"step=64", "max=1K",  "chunk=1M",
                                            "cache=0", "cache=1", NULL};

/* ---- small helpers ---- */

static unsigned floor_log2(size_t n) {
  return 63u - (unsigned)__builtin_clzll((unsigned long long)n);
}

static size_t min_size(size_t a, size_t b) {
  return a < b ? a : b;
}

static char *align_ptr(char *p, size_t a) {
  return (char *)alloc_align_up((uintptr_t)p, a);
}

static size_t pool_index(const struct pheap *h, size_t size) {
  if (h->linear)
    return size ? (size - 1) >> h->step_shift : 0;
  return size <= 16 ? 0 : 60u - (unsigned)__builtin_clzll((unsigned long long)(size - 1));
}

static size_t chunks_of(const struct pheap *h, size_t size) {
  return (size + h->chunk - 1) >> h->chunk_shift;
}

/* ---- chunk level: boundary bits ---- */

static uint64_t *bit_word(const struct pheap *h, const char *c, uint64_t *ret_mask) {
  size_t x = (size_t)(c - h->heap) >> h->chunk_shift;
  *ret_mask = 1ull << (x & 63);
  return &h->bits[x >> 6];
}

static int bit_test(const struct pheap *h, const char *c) {
  uint64_t m;
  const uint64_t *w = bit_word(h, c, &m); /* m is set by the call: read it after */
  return (*w & m) != 0;
}

static void bit_set(struct pheap *h, const char *c) {
  uint64_t m;
  uint64_t *w = bit_word(h, c, &m);
  *w |= m;
}

static void bit_clear(struct pheap *h, const char *c) {
  uint64_t m;
  uint64_t *w = bit_word(h, c, &m);
  *w &= ~m;
}

/* ---- chunk level: free runs in bins ---- */

static unsigned bin_index(size_t chunks) {
  return chunks < EXACT_BINS ? (unsigned)chunks : EXACT_BINS + floor_log2(chunks) - 6;
}

/* The first non-empty bin at or above `from`, or -1. */
static int next_bin(const struct pheap *h, unsigned from) {
  unsigned w = from >> 6;
  if (w >= BIN_WORDS)
    return -1;
  uint64_t m = h->bin_map[w] & (~0ull << (from & 63));
  while (!m) {
    if (++w == BIN_WORDS)
      return -1;
    m = h->bin_map[w];
  }
  return (int)(w * 64 + (unsigned)__builtin_ctzll(m));
}

static char *run_last(const struct pheap *h, const struct run *r) {
  return (char *)r + ((r->chunks - 1) << h->chunk_shift);
}

static void run_insert(struct pheap *h, char *start, size_t chunks) {
  struct run *r = (struct run *)start;
  *(size_t *)(start + ((chunks - 1) << h->chunk_shift)) = chunks; /* footer */
  r->chunks = chunks;
  bit_set(h, start);
  bit_set(h, run_last(h, r));
  unsigned b = bin_index(chunks);
  r->prev = NULL;
  r->next = h->bin[b];
  if (r->next)
    r->next->prev = r;
  h->bin[b] = r;
  h->bin_map[b >> 6] |= 1ull << (b & 63);
}

static void run_remove(struct pheap *h, struct run *r) {
  unsigned b = bin_index(r->chunks);
  if (r->prev) {
    r->prev->next = r->next;
  } else {
    h->bin[b] = r->next;
    if (!r->next)
      h->bin_map[b >> 6] &= ~(1ull << (b & 63));
  }
  if (r->next)
    r->next->prev = r->prev;
  bit_clear(h, (char *)r);
  bit_clear(h, run_last(h, r));
}

/* Takes the first `chunks` chunks of the free run r; the rest stays free. */
static void run_carve(struct pheap *h, struct run *r, size_t chunks) {
  size_t left = r->chunks - chunks;
  run_remove(h, r);
  if (left) {
    run_insert(h, (char *)r + (chunks << h->chunk_shift), left);
    h->counter[C_SPLIT]++;
  }
}

/* Best fit by chunks: exact bins hold one length each; power-of-two bins are scanned. */
static struct run *best_fit(const struct pheap *h, size_t chunks) {
  for (int i = next_bin(h, bin_index(chunks)); i >= 0; i = next_bin(h, (unsigned)i + 1)) {
    if (i < EXACT_BINS)
      return h->bin[i];
    struct run *best = NULL;
    for (struct run *r = h->bin[i]; r; r = r->next) {
      if (r->chunks >= chunks && (!best || r->chunks < best->chunks)) {
        best = r;
        if (r->chunks == chunks)
          break;
      }
    }
    if (best)
      return best;
  }
  return NULL;
}

static char *chunk_alloc(struct pheap *h, size_t chunks) {
  struct run *r = best_fit(h, chunks);
  if (r) {
    run_carve(h, r, chunks);
    return (char *)r;
  }
  if (chunks > (size_t)(h->end - h->top) >> h->chunk_shift)
    return NULL;
  char *p = h->top;
  h->top += chunks << h->chunk_shift;
  return p;
}

/* Frees [a, a + chunks), coalescing with free neighbours; a run reaching the break lowers it
 * (the chunk below the break is then never free). */
static void chunk_free(struct pheap *h, char *a, size_t chunks) {
  char *start = a;
  char *end = a + (chunks << h->chunk_shift);
  if (start > h->heap && bit_test(h, start - h->chunk)) {
    struct run *prev = (struct run *)(start - (*(size_t *)(start - h->chunk) << h->chunk_shift));
    run_remove(h, prev);
    start = (char *)prev;
    h->counter[C_COALESCE]++;
  }
  if (end == h->top) {
    h->top = start;
    h->counter[C_TOP_TRIM]++;
    return;
  }
  if (bit_test(h, end)) {
    struct run *next = (struct run *)end;
    end += next->chunks << h->chunk_shift;
    run_remove(h, next);
    h->counter[C_COALESCE]++;
  }
  run_insert(h, start, (size_t)(end - start) >> h->chunk_shift);
}

/* ---- pools ---- */

/* p's free list is empty: carve from its chunk, or take a new chunk first. */
static void *pool_carve(struct pheap *h, struct pool *p) {
  if ((size_t)(p->limit - p->bump) < p->size) {
    int reused = h->bin_map[0] || h->bin_map[1];
    char *c = chunk_alloc(h, 1);
    if (!c)
      return NULL;
    h->counter[reused ? C_CHUNK_REUSE : C_CHUNK_NEW]++;
    p->bump = c;
    p->limit = c + h->chunk;
  }
  void *b = p->bump;
  p->bump += p->size;
  return b;
}

/* ---- large blocks: chunk runs ---- */

static void *large_malloc(struct pheap *h, size_t size) {
  if (size > (size_t)(h->end - h->heap))
    return NULL;
  void *p = chunk_alloc(h, chunks_of(h, size));
  if (p)
    h->counter[C_LARGE]++;
  return p;
}

/* Resizes a run in place if it can: shrink, or grow into the break or a free neighbour. */
static int large_resize(struct pheap *h, char *p, size_t old_size, size_t new_size) {
  if (new_size > (size_t)(h->end - h->heap))
    return 0;
  size_t oc = chunks_of(h, old_size), nc = chunks_of(h, new_size);
  char *old_end = p + (oc << h->chunk_shift);
  if (nc <= oc) {
    if (nc < oc)
      chunk_free(h, p + (nc << h->chunk_shift), oc - nc);
    return 1;
  }
  size_t more = nc - oc;
  if (old_end == h->top) {
    if (more > (size_t)(h->end - h->top) >> h->chunk_shift)
      return 0;
    h->top += more << h->chunk_shift;
    return 1;
  }
  if (bit_test(h, old_end) && ((struct run *)old_end)->chunks >= more) {
    run_carve(h, (struct run *)old_end, more);
    return 1;
  }
  return 0;
}

/* ---- the depot: one thread at a time, under the lock ---- */

/* A block of pool p: its free list's head, or a new one carved. */
static void *pool_take(struct pheap *h, struct pool *p) {
  void *b = p->free;
  if (b) {
    p->free = *(void **)b;
    return b;
  }
  return pool_carve(h, p);
}

static void pool_put(struct pool *p, void *b) {
  *(void **)b = p->free;
  p->free = b;
}

static void *depot_malloc(struct pheap *h, size_t size) {
  if (size > h->max_small)
    return large_malloc(h, size);
  return pool_take(h, &h->pool[pool_index(h, size)]);
}

static void depot_free(struct pheap *h, void *b, size_t size) {
  if (size > h->max_small)
    chunk_free(h, b, chunks_of(h, size));
  else
    pool_put(&h->pool[pool_index(h, size)], b);
}

/* ---- thread caches (tcache.h): the depot's side ---- */

/* This thread's entry: the instance it last called and its cache there.
 * initial-exec: one %fs-relative load, as the module is linked into executables. */
static _Thread_local struct tc_entry tls __attribute__((tls_model("initial-exec")));

/* Bytes a block of `size` requested bytes occupies. */
static size_t room_of(const struct pheap *h, size_t size) {
  if (size <= h->max_small)
    return h->pool[pool_index(h, size)].size;
  return chunks_of(h, size) << h->chunk_shift;
}

/* A cache is carved from the heap like any block. */
static void *cache_alloc(void *st, size_t bytes, size_t *ret_room) {
  *ret_room = room_of(st, bytes);
  return depot_malloc(st, bytes);
}

/* A list holds at most a chunk's worth. */
static size_t cache_span(const void *st, unsigned i) {
  const struct pheap *h = st;
  return h->chunk / h->pool[i].size;
}

static void *cache_take(void *st, unsigned i) {
  struct pheap *h = st;
  return pool_take(h, &h->pool[i]);
}

static void cache_put(void *st, unsigned i, void *blk) {
  struct pheap *h = st;
  pool_put(&h->pool[i], blk);
}

static void *cache_grab(void *st, unsigned i, uint32_t want, uint32_t *ret_n) {
  return tc_grab_each(cache_take, st, i, want, ret_n);
}

static void *cache_give(void *st, unsigned i, void *list, uint32_t n) {
  return tc_give_each(cache_put, st, i, list, n);
}

/* Pools never lend chunks to other classes, so draining other lists would not help. */
static const struct tc_ops cache_ops = {cache_alloc, cache_span, cache_grab, cache_give, 0};

/* What the fast paths below leave: large blocks, a thread's first call (which makes its
 * cache), caching off. Kept out of line (noinline), like refills and flushes, so that the
 * fast paths save no registers. */
static __attribute__((noinline)) void *malloc_slow(struct pheap *h, size_t size) {
  struct tcache *tc = size <= h->max_small ? tc_mine(&tls, &h->tc, h->tc_id) : NULL;
  if (tc)
    return tc_pop(&h->tc, tc, pool_index(h, size));
  tc_lock(&h->tc);
  void *blk = depot_malloc(h, size);
  tc_unlock(&h->tc);
  return blk;
}

static __attribute__((noinline)) void free_slow(struct pheap *h, void *blk, size_t size) {
  struct tcache *tc = size <= h->max_small ? tc_mine(&tls, &h->tc, h->tc_id) : NULL;
  if (tc) {
    tc_push(&h->tc, tc, pool_index(h, size), blk);
    return;
  }
  tc_lock(&h->tc);
  depot_free(h, blk, size);
  tc_unlock(&h->tc);
}

/* ---- the interface ---- */

static void *pool_malloc(void *st, size_t size) {
  struct pheap *h = st;
  struct tcache *tc = tc_ready(&tls, h->tc_id);
  if (size > h->max_small || !tc)
    return malloc_slow(h, size);
  return tc_pop(&h->tc, tc, pool_index(h, size));
}

static void pool_free(void *st, void *blk, size_t size) {
  struct pheap *h = st;
  struct tcache *tc = tc_ready(&tls, h->tc_id);
  if (!blk)
    return;
  if (size > h->max_small || !tc) {
    free_slow(h, blk, size);
    return;
  }
  tc_push(&h->tc, tc, pool_index(h, size), blk);
}

/* Moves through malloc and free, so the copy happens outside the lock. */
static void *pool_realloc(void *st, void *blk, size_t old_size, size_t new_size) {
  struct pheap *h = st;
  if (old_size <= h->max_small) {
    if (new_size <= h->max_small && pool_index(h, new_size) == pool_index(h, old_size))
      return blk;
  } else if (new_size > h->max_small) {
    tc_lock(&h->tc);
    int done = large_resize(h, blk, old_size, new_size);
    tc_unlock(&h->tc);
    if (done)
      return blk;
  }
  void *q = pool_malloc(h, new_size);
  if (!q)
    return NULL;
  memcpy(q, blk, min_size(old_size, new_size));
  pool_free(h, blk, old_size);
  return q;
}

/* Reads only what init and reset write. */
static size_t pool_usable_size(void *st, void *blk, size_t size) {
  (void)blk;
  return room_of(st, size);
}

static void pool_stats(void *st, struct alloc_stats *ret) {
  struct pheap *h = st;
  tc_lock(&h->tc);
  *ret = (struct alloc_stats){
      .footprint = (size_t)(h->top - h->base),
      .meta_bytes = h->fixed_meta,
      .n_counters = N_COUNTERS,
  };
  for (int i = 0; i < N_COUNTERS; i++)
    ret->counter[i] = (struct alloc_counter){counter_names[i], h->counter[i]};
  tc_stats(&h->tc, ret); /* caches on: the pools' growth, then what the caches do */
  tc_unlock(&h->tc);
}

/* ---- set-up ---- */

static size_t count_pools(size_t max, size_t step) {
  return step ? max / step : floor_log2(max) - 3;
}

/* Empties every pool and the chunk level; the break returns to the start of the heap. */
static void format(struct pheap *h) {
  for (size_t i = 0; i < h->n_pools; i++) {
    struct pool *p = &h->pool[i];
    p->free = NULL;
    p->bump = p->limit = NULL;
    p->size = h->linear ? (i + 1) << h->step_shift : (size_t)16 << i;
  }
  h->top = h->heap;
  memset(h->bits, 0, h->bit_words * sizeof *h->bits);
  memset(h->bin_map, 0, sizeof h->bin_map);
  memset(h->bin, 0, sizeof h->bin);
  /* The caches lived in the heap: every thread's entry must go stale. */
  h->tc_id = tc_forget(&h->tc);
}

static int parse(const struct alloc_args *args, size_t *max, size_t *step, size_t *chunk,
                 size_t *cache, char *err, size_t errlen) {
  if (alloc_arg_size(args, "max", max, err, errlen) ||
      alloc_arg_size(args, "step", step, err, errlen) ||
      alloc_arg_size(args, "chunk", chunk, err, errlen) ||
      alloc_arg_size(args, "cache", cache, err, errlen))
    return -1;
  if (*cache > 65536) {
    snprintf(err, errlen, "cache must be from 0 to 65536 blocks");
    return -1;
  }
  if (!alloc_is_pow2(*chunk) || *chunk < MIN_CHUNK || *chunk > MAX_CHUNK) {
    snprintf(err, errlen, "chunk must be a power of two from 4K to 1G");
    return -1;
  }
  if (!alloc_is_pow2(*max) || *max < 16 || *max > *chunk) {
    snprintf(err, errlen, "max must be a power of two from 16 to chunk (%zu)", *chunk);
    return -1;
  }
  if (*step && (!alloc_is_pow2(*step) || *step < 16 || *step > *max)) {
    snprintf(err, errlen, "step must be 0 or a power of two from 16 to max (%zu)", *max);
    return -1;
  }
  return 0;
}

static int pool_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                     char *err, size_t errlen) {
  size_t max, step, chunk, cache;
  if (parse(args, &max, &step, &chunk, &cache, err, errlen))
    return -1;
  char *b = base;
  char *end = b + size;
  struct pheap *h = (struct pheap *)align_ptr(b, 64);
  size_t n_pools = count_pools(max, step);
  unsigned chunk_shift = floor_log2(chunk);
  size_t bit_words = (size >> chunk_shift) / 64 + 1;
  uint64_t *bits = (uint64_t *)((char *)h + sizeof *h + n_pools * sizeof(struct pool));
  char *heap = align_ptr((char *)(bits + bit_words), 4096);
  if (end < heap) {
    snprintf(err, errlen, "region of %zu bytes is too small for the pool tables", size);
    return -1;
  }
  h->max_small = max;
  h->linear = step != 0;
  h->step_shift = step ? floor_log2(step) : 0;
  h->chunk = chunk;
  h->chunk_shift = chunk_shift;
  h->base = b;
  h->end = end;
  h->heap = heap;
  h->bits = bits;
  h->bit_words = bit_words;
  h->n_pools = n_pools;
  h->fixed_meta = (size_t)((char *)(bits + bit_words) - (char *)h);
  memset(h->counter, 0, sizeof h->counter); /* kept across resets */
  tc_init(&h->tc, h, &cache_ops, (unsigned)n_pools, cache);
  format(h);
  *ret_st = h;
  return 0;
}

static void pool_reset(void *st) {
  format(st);
}

static void pool_destroy(void *st) {
  struct pheap *h = st;
  tc_destroy(&h->tc);
}

const struct alloc_methods alloc_pool = {
    .name = "pool",
    .summary = "fixed-size block pools per size class, chunks carved lazily, per-thread caches; "
               "large blocks get chunk runs",
    .params = pool_params,
    .variants = pool_variants,
    .flags = ALLOC_THREAD_SAFE,
    .init = pool_init,
    .malloc = pool_malloc,
    .free = pool_free,
    .realloc = pool_realloc,
    .reset = pool_reset,
    .usable_size = pool_usable_size,
    .stats = pool_stats,
    .destroy = pool_destroy,
};
