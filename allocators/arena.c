/*
 * arena: region-based allocation in chunks (D. R. Hanson, "Fast allocation and deallocation
 * of memory based on object lifetimes", Software: Practice and Experience 20(1), 1990; the
 * design of GNU obstacks, APR pools and LLVM's BumpPtrAllocator).
 *
 * Memory is taken from the region in chunks of `chunk` bytes, carved one after the other
 * from a pointer that moves up like sbrk. malloc bumps a pointer through the current chunk.
 * A request that does not fit the rest of it takes the next chunk: when the current chunk
 * is the last thing carved, the next one is adjacent and the bump pointer simply runs on
 * into it; otherwise (a dedicated run was carved after it) a new chunk starts and the rest
 * of the current one is abandoned (counter `waste`). A request larger than a chunk gets a
 * run of its own, sized to it (LLVM's "custom-sized slab"), and the current chunk stays
 * current. There is no per-block header: free takes back only the newest block (the
 * caller passes its size, so any LIFO sequence of frees pops all the way back, and the
 * newest dedicated run goes back to the carving pointer while nothing was carved after
 * it); every other free is a no-op until `reset`, which frees everything at once and
 * carves the same memory again from the start. realloc of the newest block grows or
 * shrinks it in place, taking more chunks when it is at the end of what is carved.
 * memalign is native: the bump pointer is aligned up.
 * Footprint is the highest point ever carved: an arena keeps its chunks, across reset too.
 *
 * Cost: O(1) for every operation, reset included; no metadata beyond the instance.
 * Weaknesses: memory freed out of LIFO order comes back only at reset, so footprint follows
 * the bytes allocated since the last reset, not the bytes live; footprint grows a chunk at
 * a time; each dedicated run carved after the current chunk costs that chunk's tail.
 */
#include "alloc.h"

#include <stdio.h>
#include <string.h>

struct arena {
  char *base, *heap, *end;
  char *carve;         /* where the next chunk starts */
  char *hwm;           /* highest carve ever: the break */
  char *cur, *cur_end; /* bump pointer and end of the current chunk */
  char *big;           /* the newest dedicated run's block, while nothing is carved after it */
  char *big_start;     /* where that run starts (before memalign's gap) */
  size_t chunk;
  uint64_t chunks, large, pops, resets, waste, in_place;
};

static const struct alloc_param arena_params[] = {
    {"chunk", "64K", "bytes taken from the region at a time: a multiple of 16 from 256 to 1G"},
    {0},
};

static const char *const arena_variants[] = {"chunk=4K", "chunk=1M", NULL};

static size_t block_bytes(size_t size) {
  return alloc_align_up(size ? size : 1, ALLOC_MIN_ALIGN);
}

static size_t room(const char *from, const char *to) {
  return from < to ? (size_t)(to - from) : 0;
}

static void carved(struct arena *a, char *to) {
  a->carve = to;
  if (to > a->hwm)
    a->hwm = to;
}

/* A run of its own for n bytes at the given alignment, after everything carved. */
static void *dedicated(struct arena *a, size_t n, size_t align) {
  char *p = (char *)alloc_align_up((uintptr_t)a->carve, align);
  if (p > a->end || n > room(p, a->end))
    return NULL;
  a->big_start = a->carve;
  a->big = p;
  carved(a, p + n);
  a->large++;
  return p;
}

/* Makes room for n bytes at the given alignment: when the current chunk is the last thing
 * carved, the next chunk is carved right after it and the bump pointer runs on into it;
 * otherwise a new chunk starts and the rest of the current one is wasted. The last chunk
 * of the region may be shorter than the others. */
static int new_chunk(struct arena *a, size_t n, size_t align) {
  char *from = a->cur_end == a->carve ? a->cur : a->carve;
  char *p = (char *)alloc_align_up((uintptr_t)from, align);
  if (p > a->end || n > room(p, a->end))
    return -1;
  size_t more = alloc_align_up(room(a->carve, p + n), a->chunk);
  char *end = more > room(a->carve, a->end) ? a->end : a->carve + more;
  if (from == a->carve) {
    a->waste += room(a->cur, a->cur_end);
    a->cur = a->carve;
  }
  a->cur_end = end;
  a->big = NULL;
  a->chunks += more / a->chunk + (more % a->chunk != 0);
  carved(a, end);
  return 0;
}

static int arena_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                      char *err, size_t errlen) {
  size_t chunk;
  if (alloc_arg_size(args, "chunk", &chunk, err, errlen))
    return -1;
  if (chunk % ALLOC_MIN_ALIGN || chunk < 256 || chunk > ((size_t)1 << 30)) {
    snprintf(err, errlen, "chunk must be a multiple of 16 from 256 to 1G");
    return -1;
  }
  struct arena *a = base;
  size_t head = alloc_align_up(sizeof *a, 64);
  if (size < head) {
    snprintf(err, errlen, "region too small");
    return -1;
  }
  memset(a, 0, sizeof *a);
  a->base = base;
  a->heap = (char *)base + head;
  a->end = (char *)base + size;
  a->chunk = chunk;
  a->carve = a->hwm = a->cur = a->cur_end = a->heap;
  *ret_st = a;
  return 0;
}

static void *arena_memalign(void *st, size_t alignment, size_t size) {
  struct arena *a = st;
  if (size > room(a->heap, a->end))
    return NULL;
  size_t n = block_bytes(size);
  char *p = (char *)alloc_align_up((uintptr_t)a->cur, alignment);
  if (p <= a->cur_end && n <= room(p, a->cur_end)) {
    a->cur = p + n;
    return p;
  }
  if (n > a->chunk || alignment - ALLOC_MIN_ALIGN > a->chunk - n)
    return dedicated(a, n, alignment);
  if (new_chunk(a, n, alignment))
    return NULL;
  p = (char *)alloc_align_up((uintptr_t)a->cur, alignment);
  a->cur = p + n;
  return p;
}

static void *arena_malloc(void *st, size_t size) {
  struct arena *a = st;
  size_t n = block_bytes(size);
  if (size <= room(a->cur, a->cur_end) && n <= room(a->cur, a->cur_end)) {
    char *p = a->cur;
    a->cur = p + n;
    return p;
  }
  return arena_memalign(st, ALLOC_MIN_ALIGN, size);
}

/* Pops p when it is the newest block; returns whether it did. */
static int pop(struct arena *a, char *p, size_t n) {
  if (p + n == a->cur) {
    a->cur = p; /* everything from p to the chunk's end is free again */
    if (p == a->big)
      a->big = NULL;
    a->pops++;
    return 1;
  }
  if (p == a->big && p + n == a->carve) {
    a->carve = a->big_start;
    a->big = NULL;
    a->pops++;
    return 1;
  }
  return 0;
}

static void arena_free(void *st, void *p, size_t size) {
  struct arena *a = st;
  if (p)
    pop(a, p, block_bytes(size));
}

/* Resizes the newest block in place to n bytes; returns whether it could. */
static int resize_newest(struct arena *a, char *p, size_t old_n, size_t n) {
  if (p + old_n == a->cur) {
    if (n <= room(p, a->cur_end)) {
      a->cur = p + n;
      return 1;
    }
    if (a->cur_end != a->carve || n > room(p, a->end))
      return 0;
    /* The current chunk is the last thing carved: extend it by whole chunks. */
    size_t more = alloc_align_up(n - room(p, a->cur_end), a->chunk);
    a->cur_end = more > room(a->cur_end, a->end) ? a->end : a->cur_end + more;
    carved(a, a->cur_end);
    a->cur = p + n;
    return 1;
  }
  if (p == a->big && p + old_n == a->carve && n <= room(p, a->end)) {
    carved(a, p + n);
    return 1;
  }
  return 0;
}

static void *arena_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct arena *a = st;
  if (new_size > room(a->heap, a->end))
    return NULL;
  size_t old_n = block_bytes(old_size), n = block_bytes(new_size);
  if (resize_newest(a, p, old_n, n)) {
    a->in_place++;
    return p;
  }
  void *q = arena_malloc(st, new_size);
  if (!q)
    return NULL;
  memcpy(q, p, old_size < new_size ? old_size : new_size);
  pop(a, p, old_n);
  return q;
}

static void arena_reset(void *st) {
  struct arena *a = st;
  a->carve = a->cur = a->cur_end = a->heap;
  a->big = NULL;
  a->resets++;
}

static size_t arena_usable_size(void *st, void *p, size_t size) {
  (void)st;
  (void)p;
  return block_bytes(size);
}

static void arena_stats(void *st, struct alloc_stats *ret) {
  struct arena *a = st;
  *ret = (struct alloc_stats){
      .footprint = (size_t)(a->hwm - a->base),
      .meta_bytes = sizeof *a,
      .n_counters = 6,
      .counter = {{"chunks", a->chunks},
                  {"large", a->large},
                  {"pops", a->pops},
                  {"resets", a->resets},
                  {"waste", a->waste},
                  {"in_place", a->in_place}},
  };
}

static void arena_destroy(void *st) {
  (void)st;
}

const struct alloc_methods alloc_arena = {
    .name = "arena",
    .summary = "region (arena) allocation in chunks; frees only the newest block, reset frees all",
    .params = arena_params,
    .variants = arena_variants,
    .init = arena_init,
    .malloc = arena_malloc,
    .free = arena_free,
    .realloc = arena_realloc,
    .memalign = arena_memalign,
    .reset = arena_reset,
    .usable_size = arena_usable_size,
    .stats = arena_stats,
    .destroy = arena_destroy,
};
