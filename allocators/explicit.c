/*
 * explicit: an explicit doubly-linked free list with boundary tags (Bryant & O'Hallaron,
 * "Computer Systems: A Programmer's Perspective", 3rd ed., 9.9.13; Knuth TAOCP vol. 1 2.5).
 *
 * Every block starts with an 8-byte header (size | previous-allocated bit | allocated bit).
 * A free block also ends with a footer (its size) and keeps two list pointers in its
 * payload; an allocated block has no footer, because its successor's previous-allocated bit
 * says all that coalescing needs, so the overhead is 8 bytes and the minimum block 32.
 * Only free blocks are on the list, a ring through a sentinel in the instance.
 * - fit=first takes the first block on the list that is big enough; fit=best walks the whole
 *   list for the smallest (stopping at an exact fit; ties go to the first met).
 * - order=lifo puts a freed block (merged with its free neighbours) at the head of the list;
 *   order=addr keeps the list sorted by address: a merged block takes the place of a
 *   neighbour it absorbed, and one with no free neighbour is placed by walking the blocks
 *   after it in memory (a few steps) to the next free one, else the list. Best fit in
 *   address order is the low-fragmentation policy of Wilson et al. (1995).
 * A block bigger than asked is split, the rest keeping the block's place on the list, when
 * the rest makes a block of its own. free coalesces at once with both neighbours.
 * When nothing fits, the heap grows at a top pointer (an epilogue header), as sbrk does; a
 * free last block is extended by only what it lacks. Like CS:APP's mm.c, the heap never
 * shrinks, unless trim=on: then a free block that reaches the top goes back to it.
 * realloc shrinks in place, grows into a free next block or at the top, else moves.
 * memalign over-allocates from the list (or grows the top to the aligned spot) and frees
 * the leading and trailing slack.
 *
 * Cost: malloc O(free blocks) (first fit stops at the first fit, best fit walks all but an
 * exact fit); free O(1), except that order=addr places a block with no free neighbour by a
 * short memory walk and at worst a list walk, O(free blocks); realloc O(1) in place.
 * Weaknesses: the linear search touches every free block it passes (cache misses) and grows
 * with the heap; LIFO first fit scatters requests over old free blocks and fragments badly on
 * mixed sizes; with trim=off the footprint never falls after a peak.
 */
#include "alloc.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define ALLOC_BIT 1u
#define PREV_ALLOC_BIT 2u
#define FLAG_MASK ((size_t)15)
#define WORD 8
#define MIN_BLOCK 32 /* header, two list pointers, footer */
#define MAX_REQUEST ((size_t)1 << 60)
#define ADDR_WALK 32 /* blocks walked in memory to place a freed block in address order */

struct block {
  size_t header;
  struct block *next, *prev; /* free blocks only */
};

struct heap {
  char *base, *end;
  struct block *start; /* the first block's header */
  struct block *top;   /* the epilogue header: the heap ends here */
  struct block list;   /* ring sentinel; its size is the largest, which stops first fit */
  bool best_fit, addr_order, trim;
  size_t n_alloc, n_free;
  uint64_t splits, coalesces, grows, scanned;
};

static const struct alloc_param explicit_params[] = {
    {"fit", "first", "placement: first (first block that fits) or best (smallest that fits)"},
    {"order", "lifo", "free list order: lifo (freed block first) or addr (by address)"},
    {"trim", "off", "on: a free block that reaches the top is given back (the break falls)"},
    {0},
};

static const char *const explicit_variants[] = {"fit=best", "order=addr", "fit=best,order=addr",
                                                "trim=on", NULL};

static struct block *block_at(struct block *b, size_t off) {
  return (struct block *)((char *)b + off);
}

static size_t bsize(const struct block *b) {
  return b->header & ~FLAG_MASK;
}

static bool is_alloc(const struct block *b) {
  return b->header & ALLOC_BIT;
}

static bool prev_alloc(const struct block *b) {
  return b->header & PREV_ALLOC_BIT;
}

static struct block *next_block(struct block *b) {
  return block_at(b, bsize(b));
}

/* Only valid when the previous block is free: its footer is the word before b. */
static struct block *prev_block(struct block *b) {
  size_t s = *(size_t *)((char *)b - WORD);
  return (struct block *)((char *)b - s);
}

static void *payload(struct block *b) {
  return (char *)b + WORD;
}

static struct block *block_of(void *p) {
  return (struct block *)((char *)p - WORD);
}

/* Block size for n requested bytes: header plus payload, rounded to 16, at least 32. */
static size_t block_size(size_t n) {
  return n <= MIN_BLOCK - WORD ? MIN_BLOCK : (n + WORD + 15) & ~FLAG_MASK;
}

/* Header and footer of a free block; its predecessor is allocated (or it would merge). */
static void set_free(struct block *b, size_t s) {
  b->header = s | PREV_ALLOC_BIT;
  *(size_t *)((char *)b + s - WORD) = s;
}

/* Marks b allocated with size s, keeping its previous-allocated bit. */
static void set_alloc(struct block *b, size_t s) {
  b->header = s | (b->header & PREV_ALLOC_BIT) | ALLOC_BIT;
}

static void list_insert_after(struct heap *h, struct block *pos, struct block *b) {
  b->prev = pos;
  b->next = pos->next;
  pos->next->prev = b;
  pos->next = b;
  h->n_free++;
}

static void list_remove(struct heap *h, struct block *b) {
  b->prev->next = b->next;
  b->next->prev = b->prev;
  h->n_free--;
}

/* Puts b where old was in the list (address order survives a merge or a split). */
static void list_replace(struct block *old, struct block *b) {
  b->next = old->next;
  b->prev = old->prev;
  b->next->prev = b;
  b->prev->next = b;
}

/* The list node after which free block b goes in address order. The first free block after
 * b in memory is b's successor; a few steps over allocated blocks usually find it. */
static struct block *addr_pred(struct heap *h, struct block *b) {
  struct block *q = next_block(b);
  for (int i = 0; i < ADDR_WALK; i++) {
    if (q == h->top)
      return h->list.prev;
    if (!is_alloc(q))
      return q->prev;
    q = next_block(q);
  }
  struct block *f = h->list.next;
  while (f != &h->list && f < b)
    f = f->next;
  return f->prev;
}

static struct block *first_fit(struct heap *h, size_t nb) {
  struct block *b = h->list.next;
  uint64_t steps = 0;
  while (bsize(b) < nb) { /* the sentinel's size stops the walk */
    b = b->next;
    steps++;
  }
  h->scanned += steps;
  return b == &h->list ? NULL : b;
}

static struct block *best_fit(struct heap *h, size_t nb) {
  struct block *best = NULL;
  size_t best_size = SIZE_MAX;
  uint64_t steps = 0;
  for (struct block *b = h->list.next; b != &h->list; b = b->next) {
    size_t s = bsize(b);
    steps++;
    if (s >= nb && s < best_size) {
      best = b;
      best_size = s;
      if (s == nb)
        break;
    }
  }
  h->scanned += steps;
  return best;
}

/* Allocates nb bytes of listed free block b, splitting off the rest when it makes a block. */
static void place(struct heap *h, struct block *b, size_t nb) {
  size_t s = bsize(b);
  h->n_alloc++;
  if (s - nb < MIN_BLOCK) {
    list_remove(h, b);
    b->header |= ALLOC_BIT;
    next_block(b)->header |= PREV_ALLOC_BIT;
    return;
  }
  struct block *rest = block_at(b, nb);
  set_free(rest, s - nb);
  list_replace(b, rest);
  b->header = nb | PREV_ALLOC_BIT | ALLOC_BIT;
  h->splits++;
}

/* Grows the heap so that an allocated block of nb bytes ends at the new top: it starts at
 * the last block when that is free (growing only by what it lacks), else at the top. */
static struct block *extend(struct heap *h, size_t nb) {
  struct block *b = h->top;
  size_t have = 0;
  if (!prev_alloc(h->top)) {
    b = prev_block(h->top);
    have = bsize(b);
    if (have >= nb) {
      place(h, b, nb);
      return b;
    }
  }
  if (nb - have > (size_t)(h->end - (char *)h->top) - WORD)
    return NULL;
  if (have)
    list_remove(h, b);
  b->header = nb | PREV_ALLOC_BIT | ALLOC_BIT;
  h->top = block_at(b, nb);
  h->top->header = PREV_ALLOC_BIT | ALLOC_BIT;
  h->grows++;
  h->n_alloc++;
  return b;
}

static void *explicit_malloc(void *st, size_t size) {
  struct heap *h = st;
  if (size > MAX_REQUEST)
    return NULL;
  size_t nb = block_size(size);
  struct block *b = h->best_fit ? best_fit(h, nb) : first_fit(h, nb);
  if (b)
    place(h, b, nb);
  else if (!(b = extend(h, nb)))
    return NULL;
  return payload(b);
}

/* Frees allocated block b: merges it with free neighbours, then gives the result back to
 * the top (trim=on) or lists it: LIFO at the head; address order where the block it absorbed
 * was, else where addr_pred finds. */
static void free_block(struct heap *h, struct block *b) {
  size_t s = bsize(b);
  struct block *next = block_at(b, s);
  struct block *pos = NULL; /* the list node the merged block follows in address order */
  if (!is_alloc(next)) {    /* the epilogue counts as allocated */
    pos = next->prev;
    list_remove(h, next);
    s += bsize(next);
    h->coalesces++;
  }
  if (!prev_alloc(b)) { /* in address order prev directly precedes next on the list */
    struct block *prev = prev_block(b);
    pos = prev->prev;
    list_remove(h, prev);
    s += bsize(prev);
    b = prev;
    h->coalesces++;
  }
  if (h->trim && block_at(b, s) == h->top) { /* the break falls */
    h->top = b;
    b->header = PREV_ALLOC_BIT | ALLOC_BIT;
    return;
  }
  set_free(b, s);
  block_at(b, s)->header &= ~(size_t)PREV_ALLOC_BIT;
  if (!h->addr_order)
    pos = &h->list;
  else if (!pos)
    pos = addr_pred(h, b);
  list_insert_after(h, pos, b);
}

static void explicit_free(void *st, void *p, size_t size) {
  (void)size;
  if (!p)
    return;
  struct heap *h = st;
  h->n_alloc--;
  free_block(h, block_of(p));
}

/* Cuts allocated block b (s bytes) to nb and frees the rest when it makes a block. */
static void shrink(struct heap *h, struct block *b, size_t s, size_t nb) {
  if (s - nb < MIN_BLOCK)
    return;
  set_alloc(b, nb);
  struct block *rest = block_at(b, nb);
  rest->header = (s - nb) | PREV_ALLOC_BIT | ALLOC_BIT;
  h->splits++;
  free_block(h, rest);
}

/* Resizes allocated block b to nb bytes without moving it: into a free next block, at the
 * top, or both when the next block is the last one. False when it cannot. */
static bool resize_in_place(struct heap *h, struct block *b, size_t nb) {
  size_t s = bsize(b);
  if (nb <= s) {
    shrink(h, b, s, nb);
    return true;
  }
  struct block *next = block_at(b, s);
  size_t have = s;
  if (next != h->top) {
    if (is_alloc(next))
      return false;
    size_t ns = bsize(next);
    if (nb - s <= ns) {
      list_remove(h, next);
      set_alloc(b, s + ns);
      block_at(b, s + ns)->header |= PREV_ALLOC_BIT;
      shrink(h, b, s + ns, nb);
      return true;
    }
    if (block_at(next, ns) != h->top)
      return false;
    have = s + ns;
  }
  if (nb - have > (size_t)(h->end - (char *)h->top) - WORD)
    return false;
  if (have != s)
    list_remove(h, next);
  set_alloc(b, nb);
  h->top = block_at(b, nb);
  h->top->header = PREV_ALLOC_BIT | ALLOC_BIT;
  h->grows++;
  return true;
}

static void *explicit_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct heap *h = st;
  if (new_size > MAX_REQUEST)
    return NULL;
  struct block *b = block_of(p);
  if (resize_in_place(h, b, block_size(new_size)))
    return p;
  void *q = explicit_malloc(st, new_size);
  if (!q)
    return NULL;
  size_t keep = bsize(b) - WORD;
  if (old_size < keep)
    keep = old_size;
  if (new_size < keep)
    keep = new_size;
  memcpy(q, p, keep);
  explicit_free(st, p, old_size);
  return q;
}

/* Bytes to grow at the end of the heap for an nb-byte block aligned to alignment, counting
 * the leading slack (none, or at least a minimum block so it can be freed). */
static size_t aligned_grow_size(struct heap *h, size_t alignment, size_t nb) {
  struct block *b = prev_alloc(h->top) ? h->top : prev_block(h->top);
  uintptr_t p = (uintptr_t)payload(b);
  uintptr_t a = (p + alignment - 1) & ~(uintptr_t)(alignment - 1);
  size_t lead = (size_t)(a - p);
  if (lead && lead < MIN_BLOCK)
    lead += alignment;
  return lead + nb;
}

static void *explicit_memalign(void *st, size_t alignment, size_t size) {
  struct heap *h = st;
  if (alignment <= ALLOC_MIN_ALIGN)
    return explicit_malloc(st, size);
  if (size > MAX_REQUEST || alignment > (size_t)(h->end - h->base))
    return NULL;
  size_t nb = block_size(size);
  size_t want = block_size(nb + alignment + MIN_BLOCK); /* room for any leading slack */
  struct block *b = h->best_fit ? best_fit(h, want) : first_fit(h, want);
  if (b)
    place(h, b, want);
  else if (!(b = extend(h, aligned_grow_size(h, alignment, nb))))
    return NULL;
  uintptr_t p = (uintptr_t)payload(b);
  uintptr_t a = (p + alignment - 1) & ~(uintptr_t)(alignment - 1);
  if (a != p) {
    size_t lead = (size_t)(a - p);
    if (lead < MIN_BLOCK)
      lead += alignment;
    size_t s = bsize(b);
    struct block *q = block_at(b, lead);
    q->header = (s - lead) | PREV_ALLOC_BIT | ALLOC_BIT;
    set_alloc(b, lead);
    free_block(h, b);
    b = q;
  }
  shrink(h, b, bsize(b), nb);
  return payload(b);
}

static size_t explicit_usable_size(void *st, void *p, size_t size) {
  (void)st;
  (void)size;
  return bsize(block_of(p)) - WORD;
}

static void reset_heap(struct heap *h) {
  h->top = h->start;
  h->top->header = PREV_ALLOC_BIT | ALLOC_BIT; /* epilogue; no block before it */
  h->list.next = h->list.prev = &h->list;
  h->n_alloc = h->n_free = 0;
}

static int explicit_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                         char *err, size_t errlen) {
  static const char *const fits[] = {"first", "best", NULL};
  static const char *const orders[] = {"lifo", "addr", NULL};
  static const char *const onoff[] = {"off", "on", NULL};
  int fit, order, trim;
  if (alloc_arg_choice(args, "fit", fits, &fit, err, errlen) ||
      alloc_arg_choice(args, "order", orders, &order, err, errlen) ||
      alloc_arg_choice(args, "trim", onoff, &trim, err, errlen))
    return -1;
  uintptr_t lo = alloc_align_up((uintptr_t)base, 16);
  uintptr_t hi = ((uintptr_t)base + size) & ~(uintptr_t)15;
  /* Payloads are 16-aligned, so headers sit 8 bytes before a 16-byte boundary. */
  size_t header = alloc_align_up(sizeof(struct heap), 16) + WORD;
  if (hi <= lo || (size_t)(hi - lo) < header + WORD + MIN_BLOCK) {
    snprintf(err, errlen, "region of %zu bytes is too small (needs at least %zu)", size,
             header + WORD + MIN_BLOCK + 15);
    return -1;
  }
  struct heap *h = (struct heap *)lo;
  *h = (struct heap){.base = base,
                     .end = (char *)hi,
                     .start = (struct block *)(lo + header),
                     .list = {.header = ~FLAG_MASK},
                     .best_fit = fit == 1,
                     .addr_order = order == 1,
                     .trim = trim == 1};
  reset_heap(h);
  *ret_st = h;
  return 0;
}

static void explicit_reset(void *st) {
  reset_heap(st);
}

static void explicit_stats(void *st, struct alloc_stats *ret) {
  struct heap *h = st;
  size_t blocks = h->n_alloc + h->n_free;
  *ret = (struct alloc_stats){
      /* The epilogue header is the last word in use. */
      .footprint = (size_t)((char *)h->top + WORD - h->base),
      .meta_bytes = (size_t)((char *)h->start - h->base) + (blocks + h->n_free + 1) * WORD,
      .n_counters = 5,
      .counter = {{"free_blocks", h->n_free},
                  {"splits", h->splits},
                  {"coalesces", h->coalesces},
                  {"heap_grows", h->grows},
                  {"blocks_scanned", h->scanned}},
  };
}

static void explicit_destroy(void *st) {
  (void)st;
}

const struct alloc_methods alloc_explicit = {
    .name = "explicit",
    .summary = "explicit doubly-linked free list, boundary tags, first/best fit, LIFO/address",
    .params = explicit_params,
    .variants = explicit_variants,
    .init = explicit_init,
    .malloc = explicit_malloc,
    .free = explicit_free,
    .realloc = explicit_realloc,
    .memalign = explicit_memalign,
    .reset = explicit_reset,
    .usable_size = explicit_usable_size,
    .stats = explicit_stats,
    .destroy = explicit_destroy,
};
