/*
 * null: measures the replay loop itself. malloc hands out addresses from a bump pointer and
 * never touches them, free does nothing, so its ns per op is the floor under every other
 * row. Once the region is used up it starts again from the start, so blocks may then
 * overlap: it is a measuring stick, not an allocator.
 */
#include "alloc.h"

struct null_st {
  char *next, *start, *end;
};

static int null_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                     char *err, size_t errlen) {
  (void)args;
  (void)err;
  (void)errlen;
  struct null_st *n = base;
  n->start = (char *)base + alloc_align_up(sizeof *n, ALLOC_MIN_ALIGN);
  n->next = n->start;
  n->end = (char *)base + size;
  *ret_st = n;
  return 0;
}

static void *null_malloc(void *st, size_t size) {
  struct null_st *n = st;
  size_t need = alloc_align_up(size ? size : 1, ALLOC_MIN_ALIGN);
  if (size > (size_t)(n->end - n->start) || need > (size_t)(n->end - n->start))
    return NULL;
  if (need > (size_t)(n->end - n->next))
    n->next = n->start;
  void *p = n->next;
  n->next += need;
  return p;
}

static void null_free(void *st, void *p, size_t size) {
  (void)st;
  (void)p;
  (void)size;
}

static void *null_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  (void)p;
  (void)old_size;
  return null_malloc(st, new_size); /* contents are not kept: nothing is ever touched */
}

static size_t null_usable_size(void *st, void *p, size_t size) {
  (void)st;
  (void)p;
  return alloc_align_up(size ? size : 1, ALLOC_MIN_ALIGN);
}

static void null_stats(void *st, struct alloc_stats *ret) {
  struct null_st *n = st;
  *ret = (struct alloc_stats){.footprint = (size_t)(n->next - (char *)n)};
}

static void null_destroy(void *st) {
  (void)st;
}

const struct alloc_methods alloc_null = {
    .name = "null",
    .summary = "bump addresses, never touched: the harness's own cost per op",
    .flags = ALLOC_UNCHECKED,
    .init = null_init,
    .malloc = null_malloc,
    .free = null_free,
    .realloc = null_realloc,
    .usable_size = null_usable_size,
    .stats = null_stats,
    .destroy = null_destroy,
};
