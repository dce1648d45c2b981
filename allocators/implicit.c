/*
 * implicit: an implicit free list with boundary tags (Knuth TAOCP vol. 1 §2.5; the CS:APP
 * malloc-lab design, Bryant & O'Hallaron ch. 9.9).
 *
 * Every block starts with an 8-byte header (size | prev-allocated bit | allocated bit); free
 * blocks also end with a footer copy, so free coalesces with both neighbours at once. The
 * blocks form one list by address: malloc walks it with a policy, `fit=first` (from the
 * start), `fit=next` (from where the last search stopped) or `fit=best` (the smallest block
 * that fits; stops early on an exact fit). A block bigger than asked is split when the rest
 * makes a block of its own. The heap grows from a top pointer as sbrk does.
 * Cost: malloc O(blocks), allocated and free alike; free O(1); realloc O(1) in place when
 * the next block is free or the block is last, else malloc + copy + free.
 * Weakness: the walk over allocated blocks makes malloc slow on large heaps; next fit
 * fragments more than first fit (Wilson et al., "Dynamic Storage Allocation: A Survey and
 * Critical Review", 1995).
 */
#include "alloc.h"

#include <string.h>

#define WORD 8
#define MIN_BLOCK 32 /* header, 16 bytes of payload, footer room when free */
#define ALLOC_BIT 1u
#define PREV_ALLOC_BIT 2u

enum fit { FIT_FIRST, FIT_NEXT, FIT_BEST };

struct implicit {
  char *base, *heap, *top, *end; /* heap: first header; top: the epilogue header */
  char *rover;                   /* next fit: where the last search stopped */
  int fit;
  size_t n_blocks, n_free;
  uint64_t splits, coalesces, scanned;
};

static const struct alloc_param implicit_params[] = {
    {"fit", "first", "placement policy: first, next or best"},
    {0},
};

static const char *const implicit_variants[] = {"fit=next", "fit=best", NULL};

static uint64_t get(const char *p) {
  uint64_t v;
  memcpy(&v, p, WORD);
  return v;
}

static void put(char *p, uint64_t v) {
  memcpy(p, &v, WORD);
}

static size_t bsize(const char *b) {
  return (size_t)(get(b) & ~(uint64_t)15);
}

static int is_alloc(const char *b) {
  return (get(b) & ALLOC_BIT) != 0;
}

static int prev_alloc(const char *b) {
  return (get(b) & PREV_ALLOC_BIT) != 0;
}

static char *next_block(char *b) {
  return b + bsize(b);
}

/* Header (and footer, when free) of block b; keeps b's prev-allocated bit. */
static void set_block(char *b, size_t size, int alloc) {
  uint64_t v = size | (get(b) & PREV_ALLOC_BIT) | (alloc ? ALLOC_BIT : 0);
  put(b, v);
  if (!alloc)
    put(b + size - WORD, v);
}

static void set_prev_alloc(char *b, int alloc) {
  uint64_t v = get(b);
  put(b, alloc ? v | PREV_ALLOC_BIT : v & ~(uint64_t)PREV_ALLOC_BIT);
}

static size_t block_for(size_t size) {
  if (size > (size_t)1 << 60)
    return 0;
  size_t n = alloc_align_up(size + WORD, 16);
  return n < MIN_BLOCK ? MIN_BLOCK : n;
}

static int implicit_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                         char *err, size_t errlen) {
  struct implicit *h = base;
  static const char *const fits[] = {"first", "next", "best", NULL};
  int fit;
  if (alloc_arg_choice(args, "fit", fits, &fit, err, errlen))
    return -1;
  *h = (struct implicit){.base = base, .end = (char *)base + size, .fit = fit};
  /* Payloads must be 16-aligned, so headers sit 8 bytes before a 16-byte boundary. */
  h->heap = (char *)base + alloc_align_up(sizeof *h + WORD, 16) - WORD;
  h->top = h->heap;
  put(h->top, ALLOC_BIT | PREV_ALLOC_BIT); /* epilogue */
  h->rover = h->heap;
  *ret_st = h;
  return 0;
}

static char *find_fit(struct implicit *h, size_t need) {
  char *best = NULL;
  char *start = h->fit == FIT_NEXT ? h->rover : h->heap;
  for (char *b = start; b < h->top; b = next_block(b)) {
    h->scanned++;
    if (is_alloc(b) || bsize(b) < need)
      continue;
    if (h->fit != FIT_BEST || bsize(b) == need)
      return b;
    if (!best || bsize(b) < bsize(best))
      best = b;
  }
  if (h->fit == FIT_NEXT) /* wrap around to where the search began */
    for (char *b = h->heap; b < start; b = next_block(b)) {
      h->scanned++;
      if (!is_alloc(b) && bsize(b) >= need)
        return b;
    }
  return best;
}

/* Takes need bytes of free block b, splitting off the rest when it makes a block. */
static void place(struct implicit *h, char *b, size_t need) {
  size_t have = bsize(b);
  if (have - need >= MIN_BLOCK) {
    set_block(b, need, 1);
    char *rest = b + need;
    put(rest, PREV_ALLOC_BIT);
    set_block(rest, have - need, 0);
    h->n_blocks++;
    h->splits++;
  } else {
    set_block(b, have, 1);
    set_prev_alloc(next_block(b), 1);
    h->n_free--;
  }
}

/* Grows the heap so a block of need bytes starts at the top (or at a free last block). */
static char *extend(struct implicit *h, size_t need) {
  char *b = h->top;
  size_t have = 0;
  if (!prev_alloc(h->top)) { /* the last block is free: grow it */
    have = get(h->top - WORD) & ~(uint64_t)15;
    b = h->top - have;
  }
  size_t grow = need - have;
  if (grow > (size_t)(h->end - h->top) - WORD)
    return NULL;
  if (!have) {
    h->n_blocks++;
    h->n_free++;
  }
  put(b, get(b) & PREV_ALLOC_BIT);
  set_block(b, need, 0);
  h->top = b + need;
  put(h->top, ALLOC_BIT); /* epilogue; the block before it is free until placed */
  return b;
}

static void *implicit_malloc(void *st, size_t size) {
  struct implicit *h = st;
  size_t need = block_for(size);
  if (!need)
    return NULL;
  char *b = find_fit(h, need);
  if (!b && !(b = extend(h, need)))
    return NULL;
  place(h, b, need);
  h->rover = b;
  return b + WORD;
}

/* Merges free block b with free neighbours; returns the merged block. */
static char *coalesce(struct implicit *h, char *b) {
  size_t size = bsize(b);
  char *next = b + size;
  if (next < h->top && !is_alloc(next)) {
    if (h->rover == next)
      h->rover = b;
    size += bsize(next);
    h->n_blocks--;
    h->n_free--;
    h->coalesces++;
  }
  if (!prev_alloc(b)) {
    char *prev = b - (get(b - WORD) & ~(uint64_t)15);
    if (h->rover == b)
      h->rover = prev;
    size += bsize(prev);
    b = prev;
    h->n_blocks--;
    h->n_free--;
    h->coalesces++;
  }
  set_block(b, size, 0);
  set_prev_alloc(b + size, 0);
  return b;
}

static void implicit_free(void *st, void *p, size_t size) {
  (void)size;
  if (!p)
    return;
  struct implicit *h = st;
  char *b = (char *)p - WORD;
  set_block(b, bsize(b), 0);
  h->n_free++;
  coalesce(h, b);
}

/* Grows b in place into a free next block or the top; returns 0 on success. */
static int grow_in_place(struct implicit *h, char *b, size_t need) {
  size_t have = bsize(b);
  char *next = b + have;
  if (next < h->top && !is_alloc(next) && have + bsize(next) >= need) {
    if (h->rover == next)
      h->rover = b;
    size_t total = have + bsize(next);
    h->n_blocks--;
    h->n_free--;
    set_block(b, total, 1);
    set_prev_alloc(b + total, 1);
    if (total - need >= MIN_BLOCK) {
      set_block(b, need, 1);
      put(b + need, PREV_ALLOC_BIT);
      set_block(b + need, total - need, 0);
      set_prev_alloc(b + total, 0);
      h->n_blocks++;
      h->n_free++;
    }
    return 0;
  }
  if (next == h->top && need - have <= (size_t)(h->end - h->top) - WORD) {
    set_block(b, need, 1);
    h->top = b + need;
    put(h->top, ALLOC_BIT | PREV_ALLOC_BIT);
    return 0;
  }
  return -1;
}

static void *implicit_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct implicit *h = st;
  char *b = (char *)p - WORD;
  size_t need = block_for(new_size);
  if (!need)
    return NULL;
  size_t have = bsize(b);
  if (need <= have) {
    if (have - need >= MIN_BLOCK) { /* shrink: give the tail back */
      set_block(b, need, 1);
      put(b + need, PREV_ALLOC_BIT);
      set_block(b + need, have - need, 0);
      h->n_blocks++;
      h->n_free++;
      coalesce(h, b + need);
    }
    return p;
  }
  if (grow_in_place(h, b, need) == 0)
    return p;
  void *q = implicit_malloc(st, new_size);
  if (!q)
    return NULL;
  memcpy(q, p, old_size < have - WORD ? old_size : have - WORD);
  implicit_free(st, p, old_size);
  return q;
}

static size_t implicit_usable_size(void *st, void *p, size_t size) {
  (void)st;
  (void)size;
  return bsize((char *)p - WORD) - WORD;
}

static void implicit_stats(void *st, struct alloc_stats *ret) {
  struct implicit *h = st;
  size_t used = h->n_blocks - h->n_free;
  *ret = (struct alloc_stats){
      .footprint = (size_t)(h->top + WORD - h->base),
      .meta_bytes = sizeof *h + used * WORD + h->n_free * 2 * WORD,
      .n_counters = 4,
      .counter = {{"free_blocks", h->n_free},
                  {"splits", h->splits},
                  {"coalesces", h->coalesces},
                  {"blocks_scanned", h->scanned}},
  };
}

static void implicit_destroy(void *st) {
  (void)st;
}

const struct alloc_methods alloc_implicit = {
    .name = "implicit",
    .summary = "implicit free list, boundary tags, first/next/best fit",
    .params = implicit_params,
    .variants = implicit_variants,
    .init = implicit_init,
    .malloc = implicit_malloc,
    .free = implicit_free,
    .realloc = implicit_realloc,
    .usable_size = implicit_usable_size,
    .stats = implicit_stats,
    .destroy = implicit_destroy,
};
