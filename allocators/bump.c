/*
 * bump: a linear (bump-pointer) allocator.
 *
 * malloc advances a pointer through the region; free only takes back the most recent
 * block (the caller passes its size, so any LIFO sequence of frees pops all the way
 * back); every other free leaks until the run ends. realloc of the top block grows or
 * shrinks in place.
 * Cost: O(1) for every operation, no per-block header.
 * Weakness: memory is never reused out of LIFO order, so footprint grows with the total
 * bytes allocated, not with the bytes live. It is the floor for speed and the ceiling for
 * footprint among the designs.
 */
#include "alloc.h"

#include <string.h>

struct bump {
  char *base, *top, *end;
};

static size_t block_bytes(size_t size) {
  return alloc_align_up(size ? size : 1, ALLOC_MIN_ALIGN);
}

static int bump_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                     char *err, size_t errlen) {
  (void)args;
  (void)err;
  (void)errlen;
  struct bump *b = base;
  b->base = base;
  b->top = (char *)base + alloc_align_up(sizeof *b, ALLOC_MIN_ALIGN);
  b->end = (char *)base + size;
  *ret_st = b;
  return 0;
}

static void *bump_malloc(void *st, size_t size) {
  struct bump *b = st;
  size_t n = block_bytes(size);
  if (size > (size_t)(b->end - b->top) || n > (size_t)(b->end - b->top))
    return NULL;
  void *p = b->top;
  b->top += n;
  return p;
}

static void bump_free(void *st, void *p, size_t size) {
  struct bump *b = st;
  if (p && (char *)p + block_bytes(size) == b->top)
    b->top = p;
}

static void *bump_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct bump *b = st;
  char *old_end = (char *)p + block_bytes(old_size);
  if (old_end == b->top) {
    size_t n = block_bytes(new_size);
    if (new_size > (size_t)(b->end - (char *)p) || n > (size_t)(b->end - (char *)p))
      return NULL;
    b->top = (char *)p + n;
    return p;
  }
  void *q = bump_malloc(st, new_size);
  if (q)
    memcpy(q, p, old_size < new_size ? old_size : new_size);
  return q;
}

static size_t bump_usable_size(void *st, void *p, size_t size) {
  (void)st;
  (void)p;
  return block_bytes(size);
}

static void bump_stats(void *st, struct alloc_stats *ret) {
  struct bump *b = st;
  *ret = (struct alloc_stats){.footprint = (size_t)(b->top - b->base), .meta_bytes = sizeof *b};
}

static void bump_reset(void *st) {
  struct bump *b = st;
  b->top = b->base + alloc_align_up(sizeof *b, ALLOC_MIN_ALIGN);
}

static void bump_destroy(void *st) {
  (void)st;
}

const struct alloc_methods alloc_bump = {
    .name = "bump",
    .summary = "linear bump pointer; free pops only the most recent block",
    .params = NULL,
    .init = bump_init,
    .malloc = bump_malloc,
    .free = bump_free,
    .realloc = bump_realloc,
    .reset = bump_reset,
    .usable_size = bump_usable_size,
    .stats = bump_stats,
    .destroy = bump_destroy,
};
