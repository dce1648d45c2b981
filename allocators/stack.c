/*
 * stack: a LIFO (stack, or "mark/release") allocator with deferred out-of-order frees.
 *
 * Blocks are pushed at a top pointer (the break) that moves as sbrk does. Each block starts
 * with an 8-byte marker recording the previous top block (its marker's address), so the
 * blocks form a chain from the top down and no block stores its size. Freeing the top block
 * pops it: the break falls back to the block's own marker. A free of any other block (an
 * out-of-order free) cannot give memory back yet: the block is marked free and counted, and
 * when the blocks above it are popped, the pop continues down the chain through every marked
 * block. memalign pushes the alignment gap as a dummy block already marked free, so it goes
 * with the aligned block. realloc resizes the top block in place, shrinks any block in place,
 * and otherwise allocates, copies and frees (a deferred free of the old block).
 * Cost: malloc, free and realloc in place O(1); a pop costs one step per marked block it
 * reclaims, so O(1) amortised. 8 bytes of marker per block; blocks are 16-byte multiples.
 * Weakness: out of LIFO order the memory of a freed block stays held until everything above
 * it is freed, so one long-lived block near the top pins all the dead blocks below it, and
 * footprint grows with the allocation pattern rather than with the live bytes.
 * Reference: Hanson, "Fast Allocation and Deallocation of Memory Based on Object Lifetimes"
 * (Software: Practice and Experience 20(1), 1990); Wilson et al., "Dynamic Storage
 * Allocation: A Survey and Critical Review" (IWMM 1995), on stack and arena allocation.
 */
#include "alloc.h"

#include <stdio.h>
#include <string.h>

/* Markers sit at 8 mod 16 (the payload after them is 16-byte aligned), so a marker's
 * address, stored in the marker above it, leaves the low bits free for flags. */
#define MARK 8u
#define FREED 1u /* freed out of order, waiting for the blocks above to go */
#define PAD 2u   /* a memalign gap, born freed */
#define FLAGS 7u

struct stack {
  char *base, *end;
  char *brk;     /* first byte above the top block; always 8 mod 16 */
  uint64_t *top; /* marker of the top block, NULL when the stack is empty */
  char *floor;   /* the break of the empty stack */
  uint64_t blocks;
  uint64_t pending; /* blocks marked freed and not yet reclaimed */
  uint64_t out_of_order, reclaimed, in_place, moved, pads;
};

/* Bytes of a block holding size bytes, marker included; the caller checked size < room. */
static size_t block_bytes(size_t size) {
  return alloc_align_up(size + MARK, ALLOC_MIN_ALIGN);
}

static int stack_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                      char *err, size_t errlen) {
  (void)args;
  uintptr_t b = (uintptr_t)base;
  uintptr_t floor = alloc_align_up(b + sizeof(struct stack), ALLOC_MIN_ALIGN) + MARK;
  uintptr_t at = alloc_align_up(b, ALLOC_MIN_ALIGN);
  if (floor - b > size) {
    snprintf(err, errlen, "region of %zu bytes is too small for the stack instance", size);
    return -1;
  }
  struct stack *s = (struct stack *)at;
  *s = (struct stack){.base = base, .end = (char *)base + size, .floor = (char *)floor};
  s->brk = s->floor;
  *ret_st = s;
  return 0;
}

/* Pushes a block of n bytes whose marker is at the break. */
static void push(struct stack *s, uint64_t flags, size_t n) {
  uint64_t *m = (uint64_t *)s->brk;
  *m = (uint64_t)(uintptr_t)s->top | flags;
  s->top = m;
  s->brk += n;
  s->blocks++;
}

static void *stack_malloc(void *st, size_t size) {
  struct stack *s = st;
  size_t room = (size_t)(s->end - s->brk);
  if (size >= room || block_bytes(size) > room)
    return NULL;
  char *p = s->brk + MARK;
  push(s, 0, block_bytes(size));
  return p;
}

/* Pops the top block, then every block below it already freed. */
static void pop(struct stack *s) {
  uint64_t *m = s->top;
  uint64_t below = *m & ~(uint64_t)FLAGS;
  s->blocks--;
  while (below && (*(uint64_t *)(uintptr_t)below & FREED)) {
    m = (uint64_t *)(uintptr_t)below;
    if (!(*m & PAD)) {
      s->pending--;
      s->reclaimed++;
    }
    below = *m & ~(uint64_t)FLAGS;
    s->blocks--;
  }
  s->top = (uint64_t *)(uintptr_t)below;
  s->brk = (char *)m;
}

/* Marks a block below the top; it goes when the blocks above it do. */
static void defer(struct stack *s, uint64_t *m) {
  if (*m & FREED)
    return; /* freed twice: nothing more to do */
  *m |= FREED;
  s->pending++;
}

static void stack_free(void *st, void *p, size_t size) {
  (void)size;
  struct stack *s = st;
  if (!p)
    return;
  uint64_t *m = (uint64_t *)p - 1;
  if (m == s->top) {
    pop(s);
  } else if ((char *)m < s->brk && (char *)m >= s->floor) {
    defer(s, m);
    s->out_of_order++;
  }
}

static void *stack_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct stack *s = st;
  uint64_t *m = (uint64_t *)p - 1;
  size_t room = (size_t)(s->end - (char *)m);
  if (m == s->top) {
    if (new_size >= room || block_bytes(new_size) > room)
      return NULL; /* moving would need even more room above */
    s->brk = (char *)m + block_bytes(new_size);
    s->in_place++;
    return p;
  }
  if (new_size <= old_size) {
    s->in_place++; /* the block keeps its bytes; the next free pops them all */
    return p;
  }
  void *q = stack_malloc(st, new_size);
  if (!q)
    return NULL;
  memcpy(q, p, old_size);
  defer(s, m);
  s->moved++;
  return q;
}

/* The gap up to the aligned marker (a multiple of 16, since both are 8 mod 16) becomes a
 * dummy block born freed, popped together with the aligned block. */
static void *stack_memalign(void *st, size_t align, size_t size) {
  struct stack *s = st;
  size_t room = (size_t)(s->end - s->brk);
  if (align >= room)
    return NULL;
  char *p = (char *)alloc_align_up((uintptr_t)s->brk + MARK, align);
  size_t gap = (size_t)(p - MARK - s->brk);
  if (gap >= room || size >= room - gap || block_bytes(size) > room - gap)
    return NULL;
  if (gap) {
    push(s, FREED | PAD, gap);
    s->pads++;
  }
  push(s, 0, block_bytes(size));
  return p;
}

static void stack_reset(void *st) {
  struct stack *s = st;
  s->brk = s->floor;
  s->top = NULL;
  s->blocks = 0;
  s->pending = 0;
}

static size_t stack_usable_size(void *st, void *p, size_t size) {
  struct stack *s = st;
  uint64_t *m = (uint64_t *)p - 1;
  if (m == s->top)
    return (size_t)(s->brk - (char *)p);
  return block_bytes(size) - MARK;
}

static void stack_stats(void *st, struct alloc_stats *ret) {
  struct stack *s = st;
  *ret = (struct alloc_stats){
      .footprint = (size_t)(s->brk - s->base),
      .meta_bytes = sizeof *s + s->blocks * MARK,
      .n_counters = 6,
      .counter = {{"out_of_order_frees", s->out_of_order},
                  {"reclaimed", s->reclaimed},
                  {"pending", s->pending},
                  {"realloc_in_place", s->in_place},
                  {"realloc_moves", s->moved},
                  {"align_pads", s->pads}},
  };
}

static void stack_destroy(void *st) {
  (void)st;
}

const struct alloc_methods alloc_stack = {
    .name = "stack",
    .summary = "LIFO stack with an 8-byte marker per block; out-of-order frees deferred",
    .params = NULL,
    .init = stack_init,
    .malloc = stack_malloc,
    .free = stack_free,
    .realloc = stack_realloc,
    .memalign = stack_memalign,
    .reset = stack_reset,
    .usable_size = stack_usable_size,
    .stats = stack_stats,
    .destroy = stack_destroy,
};
