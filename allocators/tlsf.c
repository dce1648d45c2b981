/*
 * tlsf: two-level segregated fit (M. Masmano, I. Ripoll, A. Crespo, J. Real, "TLSF: a new
 * dynamic memory allocator for real-time systems", ECRTS 2004).
 *
 * Free blocks sit in segregated lists indexed by two levels: the first by the power of two
 * at or below the block size, the second by 2^sl equal subdivisions of that power-of-two
 * range (sizes below 16 << sl, where the subdivisions would be finer than the 16-byte
 * grain, get one list per 16 bytes). One bitmap for the first level and one per first-level
 * class for the second make "first non-empty list at or above this one" two ctz and no
 * loop. malloc rounds the request up to the next list boundary (good fit), so that any
 * block of the list found fits without looking at it. A block has an 8-byte header (size,
 * free bit, previous-free bit); a free block also keeps its size in its last word (boundary
 * tag), so free merges with both physical neighbours at once and the heap never holds two
 * free blocks side by side. The heap grows from a top pointer like sbrk when no list has a
 * fitting block; a free block that reaches the top goes back to it.
 *
 * Cost: O(1) malloc, free and memalign; realloc O(1) plus the copy when the block moves.
 * Weaknesses: good-fit rounding skips blocks up to 1/2^sl larger than the request in the
 * request's own list; 8 bytes of header per block and a 32-byte minimum block; memalign
 * asks the lists for size + alignment + 32 bytes, then gives the leading gap back.
 */
#include "alloc.h"

#include <stdio.h>
#include <string.h>

#define FREE_BIT ((size_t)1)      /* this block is free */
#define PREV_FREE_BIT ((size_t)2) /* the block physically before this one is free */
#define FLAG_MASK ((size_t)15)
#define HDR 8        /* header bytes in front of the payload */
#define MIN_BLOCK 32 /* header, two links and the boundary tag of a free block */
#define MAX_SLI 6    /* 64 second-level lists fit one uint64_t bitmap */
#define GRAIN_LOG2 4 /* block sizes are multiples of ALLOC_MIN_ALIGN */

/* A block starts 8 bytes before a 16-aligned payload; its size is a multiple of 16, so the
 * next block starts 8 bytes before a 16-aligned address too. */
struct blk {
  size_t hdr;              /* size | FREE_BIT | PREV_FREE_BIT */
  struct blk *next, *prev; /* free blocks only: the segregated list */
};

struct tlsf {
  char *base, *end;
  char *heap;                               /* first block */
  char *top;                                /* break: everything from here to end is unused */
  unsigned sli, sl_mask, fl_bias, fl_count; /* fl_bias: log2(small) - 1 */
  size_t small;   /* 16 << sli: sizes below map linearly to first-level class 0 */
  size_t max_req; /* largest request that could fit the region */
  uint64_t fl_bitmap;
  uint64_t *sl_bitmap; /* [fl_count] */
  struct blk **heads;  /* [fl_count << sli] */
  size_t live_blocks, free_blocks;
  uint64_t top_grows;
  struct blk sink; /* target of the writes a list end has no neighbour for */
};

static inline unsigned log2_floor(size_t n) {
  return 63u - (unsigned)__builtin_clzll(n);
}

static inline size_t block_size(const struct blk *b) {
  return b->hdr & ~FLAG_MASK;
}

static inline struct blk *at(void *p, size_t off) {
  return (struct blk *)((char *)p + off);
}

static inline void set_tag(struct blk *b, size_t size) {
  ((size_t *)((char *)b + size))[-1] = size;
}

/* Block bytes for a request: header plus payload, in 16-byte grains, at least MIN_BLOCK. */
static inline size_t block_for(size_t size) {
  size_t n = (size + HDR + 15) & ~(size_t)15;
  return n < MIN_BLOCK ? MIN_BLOCK : n;
}

/* The list a free block of this size belongs to: (fl << sli) | sl. Sizes below small
 * (fl 0) come out as size / 16 because size | small has the bit of small on top. No
 * branch: sizes on either side of small alternate in a mixed workload. */
static inline unsigned list_of(const struct tlsf *t, size_t size) {
  unsigned l = log2_floor(size | t->small);
  unsigned fl = l - t->fl_bias - (size < t->small);
  unsigned sl = (unsigned)(size >> (l - t->sli)) & t->sl_mask;
  return (fl << t->sli) | sl;
}

/* The list operations below are written without branches on list emptiness: in a random
 * workload those branches go either way and mispredict often. A write that has no target
 * (the neighbour of a list end) goes to t->sink instead. */
static inline void insert(struct tlsf *t, struct blk *b, size_t size) {
  unsigned i = list_of(t, size), fl = i >> t->sli;
  struct blk *h = t->heads[i];
  b->next = h;
  b->prev = NULL;
  (h ? h : &t->sink)->prev = b;
  t->heads[i] = b;
  t->sl_bitmap[fl] |= 1ull << (i & t->sl_mask);
  t->fl_bitmap |= 1ull << fl;
  t->free_blocks++;
}

/* Clears the bitmap bits of list i if it is now empty. */
static inline void note_if_empty(struct tlsf *t, unsigned i) {
  unsigned fl = i >> t->sli;
  uint64_t sm = t->sl_bitmap[fl] & ~((uint64_t)(t->heads[i] == NULL) << (i & t->sl_mask));
  t->sl_bitmap[fl] = sm;
  t->fl_bitmap &= ~((uint64_t)(sm == 0) << fl);
}

static inline void unlink_block(struct tlsf *t, struct blk *b, size_t size) {
  unsigned i = list_of(t, size);
  struct blk *n = b->next, *p = b->prev;
  (n ? n : &t->sink)->prev = p;
  *(p ? &p->next : &t->heads[i]) = n;
  note_if_empty(t, i);
  t->free_blocks--;
}

/* Takes a free block of at least n bytes off its list, or returns NULL. */
static inline struct blk *take_fit(struct tlsf *t, size_t n) {
  /* Round up to the next list boundary (below small, n is on one already). */
  size_t r = n + ((size_t)1 << (log2_floor(n | t->small) - t->sli)) - 1;
  unsigned i = list_of(t, r);
  unsigned fl = i >> t->sli;
  if (fl >= t->fl_count)
    return NULL;
  uint64_t sm = t->sl_bitmap[fl] & (~0ull << (i & t->sl_mask));
  if (!sm) {
    uint64_t fm = t->fl_bitmap & (~0ull << (fl + 1));
    if (!fm)
      return NULL;
    fl = (unsigned)__builtin_ctzll(fm);
    sm = t->sl_bitmap[fl];
  }
  i = (fl << t->sli) | (unsigned)__builtin_ctzll(sm);
  struct blk *b = t->heads[i];
  struct blk *nx = b->next;
  t->heads[i] = nx;
  (nx ? nx : &t->sink)->prev = NULL;
  note_if_empty(t, i);
  t->free_blocks--;
  return b;
}

/* Makes b (size bytes, off the lists, the block after it existing) a used block of n
 * bytes; a tail of MIN_BLOCK or more becomes a free block. */
static inline void *use(struct tlsf *t, struct blk *b, size_t size, size_t n, size_t prev_free) {
  size_t rest = size - n;
  if (rest >= MIN_BLOCK) {
    struct blk *r = at(b, n);
    r->hdr = rest | FREE_BIT;
    set_tag(r, rest);
    insert(t, r, rest);
    b->hdr = n | prev_free;
  } else {
    b->hdr = size | prev_free;
    at(b, size)->hdr &= ~PREV_FREE_BIT;
  }
  return (char *)b + HDR;
}

/* Gives back the used block b (header hdr, previous block used unless PREV_FREE_BIT):
 * merges it with free neighbours, or returns it to the top. */
static inline void release(struct tlsf *t, struct blk *b, size_t hdr) {
  size_t size = hdr & ~FLAG_MASK;
  struct blk *next = at(b, size);
  if (hdr & PREV_FREE_BIT) {
    size_t psize = ((size_t *)b)[-1];
    b = (struct blk *)((char *)b - psize);
    unlink_block(t, b, psize);
    size += psize;
  }
  if ((char *)next == t->top) {
    t->top = (char *)b;
    return;
  }
  if (next->hdr & FREE_BIT) {
    size_t nsize = block_size(next);
    unlink_block(t, next, nsize);
    size += nsize;
    next = at(next, nsize);
  }
  b->hdr = size | FREE_BIT;
  set_tag(b, size);
  next->hdr |= PREV_FREE_BIT;
  insert(t, b, size);
}

static int tlsf_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                     char *err, size_t errlen) {
  size_t sli;
  if (alloc_arg_size(args, "sl", &sli, err, errlen))
    return -1;
  if (sli > MAX_SLI) {
    snprintf(err, errlen, "parameter 'sl': %zu is out of range (0 to %d)", sli, MAX_SLI);
    return -1;
  }
  char *lo = (char *)alloc_align_up((uintptr_t)base, 16);
  char *end = (char *)base + size;
  size_t room = lo < end ? (size_t)(end - lo) : 0;
  unsigned small_log2 = (unsigned)sli + GRAIN_LOG2;
  /* First-level classes for the largest block the region could hold. */
  unsigned fl_count = room < ((size_t)1 << small_log2) ? 1 : log2_floor(room) - small_log2 + 2;
  size_t meta = alloc_align_up(sizeof(struct tlsf), 16) + fl_count * sizeof(uint64_t) +
                ((size_t)fl_count << sli) * sizeof(struct blk *);
  if (room < meta + 16 + MIN_BLOCK) {
    snprintf(err, errlen, "region of %zu bytes is too small for tlsf (needs %zu)", size,
             meta + 16 + MIN_BLOCK + 15);
    return -1;
  }
  struct tlsf *t = (struct tlsf *)lo;
  *t = (struct tlsf){.base = base,
                     .end = end,
                     .sli = (unsigned)sli,
                     .sl_mask = (1u << sli) - 1,
                     .fl_bias = small_log2 - 1,
                     .fl_count = fl_count};
  t->small = (size_t)1 << small_log2;
  t->sl_bitmap = (uint64_t *)(lo + alloc_align_up(sizeof(struct tlsf), 16));
  t->heads = (struct blk **)(t->sl_bitmap + fl_count);
  memset(t->sl_bitmap, 0, meta - alloc_align_up(sizeof(struct tlsf), 16));
  /* The first block starts 8 bytes before a 16-aligned address. */
  t->heap = (char *)alloc_align_up((uintptr_t)lo + meta + HDR, 16) - HDR;
  t->top = t->heap;
  t->max_req = (size_t)(end - t->heap) - HDR - 15;
  *ret_st = t;
  return 0;
}

static void *tlsf_malloc(void *st, size_t size) {
  struct tlsf *t = st;
  if (size > t->max_req)
    return NULL;
  size_t n = block_for(size);
  struct blk *b = take_fit(t, n);
  if (b) {
    t->live_blocks++;
    return use(t, b, block_size(b), n, 0);
  }
  if (n > (size_t)(t->end - t->top))
    return NULL;
  b = (struct blk *)t->top;
  t->top += n;
  b->hdr = n; /* the block below the top is never free: it would have gone back to the top */
  t->live_blocks++;
  t->top_grows++;
  return (char *)b + HDR;
}

static void tlsf_free(void *st, void *p, size_t size) {
  if (!p)
    return;
  struct tlsf *t = st;
  struct blk *b = (struct blk *)((char *)p - HDR);
  /* The caller's size almost always gives the next block, whose header free reads too:
   * fetching it now overlaps the two cache misses instead of taking them in turn. */
  if (size <= t->max_req)
    __builtin_prefetch(at(b, block_for(size)));
  t->live_blocks--;
  release(t, b, b->hdr);
}

static void *tlsf_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct tlsf *t = st;
  if (new_size > t->max_req)
    return NULL;
  struct blk *b = (struct blk *)((char *)p - HDR);
  size_t hdr = b->hdr, size = hdr & ~FLAG_MASK, prev_free = hdr & PREV_FREE_BIT;
  size_t n = block_for(new_size);
  if (n <= size) {
    if (size - n >= MIN_BLOCK) {
      b->hdr = n | prev_free;
      release(t, at(b, n), size - n);
    }
    return p;
  }
  struct blk *next = at(b, size);
  if ((char *)next == t->top) {
    if (n - size <= (size_t)(t->end - t->top)) {
      t->top = (char *)b + n;
      b->hdr = n | prev_free;
      return p;
    }
  } else if (next->hdr & FREE_BIT) {
    size_t total = size + block_size(next);
    if (total >= n) {
      unlink_block(t, next, block_size(next));
      return use(t, b, total, n, prev_free);
    }
  }
  void *q = tlsf_malloc(t, new_size);
  if (q) {
    memcpy(q, p, old_size < new_size ? old_size : new_size);
    tlsf_free(t, p, old_size);
  }
  return q;
}

/* Bytes from block address b to the first block address whose payload is aligned: 0, or
 * enough for a free block in front. */
static inline size_t align_gap(const char *b, size_t alignment) {
  size_t gap = (size_t)(-((uintptr_t)b + HDR) & (alignment - 1));
  return gap && gap < MIN_BLOCK ? gap + alignment : gap;
}

/* Puts a free block of gap bytes at g, in front of the block the caller builds at g + gap
 * (which must get PREV_FREE_BIT). The block before g is used. */
static inline void free_gap(struct tlsf *t, struct blk *g, size_t gap) {
  g->hdr = gap | FREE_BIT;
  set_tag(g, gap);
  insert(t, g, gap);
}

static void *tlsf_memalign(void *st, size_t alignment, size_t size) {
  struct tlsf *t = st;
  if (size > t->max_req || alignment > t->max_req)
    return NULL;
  size_t n = block_for(size);
  /* Any block of n + alignment + MIN_BLOCK bytes holds an aligned block of n bytes after a
   * gap that is either empty or large enough to be a free block. */
  struct blk *b =
      n + alignment + MIN_BLOCK <= t->max_req ? take_fit(t, n + alignment + MIN_BLOCK) : NULL;
  if (b) {
    size_t bsize = block_size(b), gap = align_gap((char *)b, alignment);
    t->live_blocks++;
    if (!gap)
      return use(t, b, bsize, n, 0);
    free_gap(t, b, gap);
    return use(t, at(b, gap), bsize - gap, n, PREV_FREE_BIT);
  }
  size_t gap = align_gap(t->top, alignment);
  if (gap > (size_t)(t->end - t->top) || n > (size_t)(t->end - t->top) - gap)
    return NULL;
  b = (struct blk *)t->top;
  if (gap)
    free_gap(t, b, gap);
  b = at(b, gap);
  b->hdr = n | (gap ? PREV_FREE_BIT : 0);
  t->top = (char *)b + n;
  t->live_blocks++;
  t->top_grows++;
  return (char *)b + HDR;
}

static size_t tlsf_usable_size(void *st, void *p, size_t size) {
  (void)st;
  (void)size;
  return block_size((struct blk *)((char *)p - HDR)) - HDR;
}

static void tlsf_reset(void *st) {
  struct tlsf *t = st;
  t->top = t->heap;
  t->fl_bitmap = 0;
  memset(t->sl_bitmap, 0,
         (size_t)((char *)(t->heads + ((size_t)t->fl_count << t->sli)) - (char *)t->sl_bitmap));
  t->live_blocks = 0;
  t->free_blocks = 0;
}

static void tlsf_stats(void *st, struct alloc_stats *ret) {
  struct tlsf *t = st;
  *ret = (struct alloc_stats){
      .footprint = (size_t)(t->top - t->base),
      .meta_bytes = (size_t)(t->heap - t->base) + HDR * t->live_blocks,
      .n_counters = 2,
      .counter = {{"free_blocks", t->free_blocks}, {"top_grows", t->top_grows}},
  };
}

static void tlsf_destroy(void *st) {
  (void)st;
}

static const struct alloc_param tlsf_params[] = {
    {"sl", "5", "log2 of the second-level lists per power of two (0 to 6)"},
    {NULL, NULL, NULL},
};

static const char *const tlsf_variants[] = {"sl=0", "sl=3", "sl=6", NULL};

const struct alloc_methods alloc_tlsf = {
    .name = "tlsf",
    .summary = "two-level segregated fit (Masmano 2004): O(1) good fit, boundary-tag merging",
    .params = tlsf_params,
    .variants = tlsf_variants,
    .init = tlsf_init,
    .malloc = tlsf_malloc,
    .free = tlsf_free,
    .realloc = tlsf_realloc,
    .memalign = tlsf_memalign,
    .reset = tlsf_reset,
    .usable_size = tlsf_usable_size,
    .stats = tlsf_stats,
    .destroy = tlsf_destroy,
};
