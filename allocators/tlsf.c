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
 * Cost: O(1) malloc, free and memalign; realloc O(1) plus the copy when the block moves
 * (it grows in place into a free next block or the top); reset O(non-empty lists). Per op,
 * one or two bsr and a ctz map sizes to lists; with the default sl the shifts are constants.
 * Weaknesses: good-fit rounding skips blocks up to 1/2^sl larger than the request in the
 * request's own list; 8 bytes of header per block and a 32-byte minimum block; memalign
 * asks the lists for size + alignment + 32 bytes, then gives the leading gap back.
 * Against glibc on workloads of small blocks freed in FIFO order (fifo-classes), TLSF is
 * about 1.5 times slower: every free coalesces and nearly every malloc splits a merged
 * block, where glibc's tcache and fastbins hand back the block just freed, uncoalesced.
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
  char *heap;          /* first block */
  char *top;           /* break: everything from here to end is unused */
  unsigned sli;        /* log2 of the second-level lists per first-level class */
  unsigned fl_count;   /* first-level classes: fl 0 (below 16 << sli) and one per power of two */
  size_t max_req;      /* largest request that could fit the region */
  uint64_t fl_bitmap;  /* bit fl: some list of class fl is non-empty */
  uint64_t *sl_bitmap; /* [fl_count]: bit sl of word fl: list (fl << sli) | sl is non-empty */
  struct blk **heads;  /* [fl_count << sli] */
  size_t live_blocks, free_blocks;
  uint64_t top_grows;
  struct blk sink; /* target of the writes a list end has no neighbour for */
};

/* The hot paths take sli as an argument and are inlined into entry points that pass the
 * default as a constant (and t->sli otherwise): with sli known, the mapping's shifts and
 * masks fold into immediates. Keep it equal to the "sl" parameter's default below. */
#define SL_DEFAULT 5u

/* clz ^ 63 rather than 63 - clz: the compiler turns it into a single bsr. */
static inline unsigned log2_floor(size_t n) {
  return (unsigned)__builtin_clzll(n) ^ 63u;
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

/* Sizes below this map linearly (one list per 16 bytes) to first-level class 0. */
static inline size_t small_of(unsigned sli) {
  return (size_t)16 << sli;
}

/* The list a free block of this size belongs to: (fl << sli) | sl. With l = log2(size),
 * size >> (l - sli) is 2^sli + sl, so the index is ((fl - 1) << sli) + (size >> (l - sli)):
 * one clz, two shifts and an add. Sizes below small (fl 0) come out as size / 16 because
 * size | small has the bit of small on top. No branch: sizes on either side of small
 * alternate in a mixed workload. */
static inline unsigned list_of(size_t size, unsigned sli) {
  unsigned l = log2_floor(size | small_of(sli));
  return ((l - sli - GRAIN_LOG2) << sli) + (unsigned)(size >> (l - sli));
}

/* Pushes the free block b of size bytes on the head of its list. The old head's back link
 * is written without a branch (to t->sink for an empty list); the bitmaps are written only
 * when the list was empty: an unconditional read-modify-write of fl_bitmap on every insert
 * chains every op to the last through store forwarding. */
static inline void insert(struct tlsf *t, struct blk *b, size_t size, unsigned sli) {
  unsigned i = list_of(size, sli), fl = i >> sli;
  struct blk *h = t->heads[i];
  b->next = h;
  b->prev = NULL;
  (h ? h : &t->sink)->prev = b;
  t->heads[i] = b;
  if (!h) {
    t->sl_bitmap[fl] |= 1ull << (i & ((1u << sli) - 1));
    t->fl_bitmap |= 1ull << fl;
  }
  t->free_blocks++;
}

/* List i has just become empty: clears its bitmap bits. */
static inline void emptied(struct tlsf *t, unsigned i, unsigned sli) {
  unsigned fl = i >> sli;
  uint64_t sm = t->sl_bitmap[fl] & ~(1ull << (i & ((1u << sli) - 1)));
  t->sl_bitmap[fl] = sm;
  if (!sm)
    t->fl_bitmap &= ~(1ull << fl);
}

static inline void unlink_block(struct tlsf *t, struct blk *b, size_t size, unsigned sli) {
  unsigned i = list_of(size, sli);
  struct blk *n = b->next, *p = b->prev;
  (n ? n : &t->sink)->prev = p;
  *(p ? &p->next : &t->heads[i]) = n;
  if (!n & !p)
    emptied(t, i, sli);
  t->free_blocks--;
}

/* Takes a free block of at least n bytes off its list, or returns NULL. */
static inline struct blk *take_fit(struct tlsf *t, size_t n, unsigned sli) {
  /* Round up to the next list boundary, so that any block of the list found fits. Below
   * small, n (a multiple of 16) is on one already and its list is n / 16. */
  unsigned i = n < small_of(sli) ? (unsigned)(n >> GRAIN_LOG2)
                                 : list_of(n + ((size_t)1 << (log2_floor(n) - sli)) - 1, sli);
  unsigned fl = i >> sli;
  if (fl >= t->fl_count)
    return NULL;
  uint64_t sm = t->sl_bitmap[fl] & (~0ull << (i & ((1u << sli) - 1)));
  if (!sm) {
    uint64_t fm = t->fl_bitmap & (~0ull << (fl + 1));
    if (!fm)
      return NULL;
    fl = (unsigned)__builtin_ctzll(fm);
    sm = t->sl_bitmap[fl];
  }
  i = (fl << sli) | (unsigned)__builtin_ctzll(sm);
  struct blk *b = t->heads[i];
  struct blk *nx = b->next;
  t->heads[i] = nx;
  (nx ? nx : &t->sink)->prev = NULL;
  if (!nx)
    emptied(t, i, sli);
  t->free_blocks--;
  return b;
}

/* Makes b (size bytes, off the lists, the block after it existing) a used block of n
 * bytes; a tail of MIN_BLOCK or more becomes a free block. */
static inline void *use(struct tlsf *t, struct blk *b, size_t size, size_t n, size_t prev_free,
                        unsigned sli) {
  size_t rest = size - n;
  if (rest >= MIN_BLOCK) {
    struct blk *r = at(b, n);
    r->hdr = rest | FREE_BIT;
    set_tag(r, rest);
    insert(t, r, rest, sli);
    b->hdr = n | prev_free;
  } else {
    b->hdr = size | prev_free;
    at(b, size)->hdr &= ~PREV_FREE_BIT;
  }
  return (char *)b + HDR;
}

/* Gives back the used block b (header hdr, previous block used unless PREV_FREE_BIT):
 * merges it with free neighbours, or returns it to the top. */
static inline void release(struct tlsf *t, struct blk *b, size_t hdr, unsigned sli) {
  size_t size = hdr & ~FLAG_MASK;
  struct blk *next = at(b, size);
  if (hdr & PREV_FREE_BIT) {
    size_t psize = ((size_t *)b)[-1];
    b = (struct blk *)((char *)b - psize);
    unlink_block(t, b, psize, sli);
    size += psize;
  }
  if ((char *)next == t->top) {
    t->top = (char *)b;
    return;
  }
  if (next->hdr & FREE_BIT) {
    size_t nsize = block_size(next);
    unlink_block(t, next, nsize, sli);
    size += nsize;
    next = at(next, nsize);
  }
  b->hdr = size | FREE_BIT;
  set_tag(b, size);
  next->hdr |= PREV_FREE_BIT;
  insert(t, b, size, sli);
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
  *t = (struct tlsf){.base = base, .end = end, .sli = (unsigned)sli, .fl_count = fl_count};
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

static inline void *do_malloc(struct tlsf *t, size_t size, unsigned sli) {
  if (size > t->max_req)
    return NULL;
  size_t n = block_for(size);
  struct blk *b = take_fit(t, n, sli);
  if (b) {
    t->live_blocks++;
    return use(t, b, block_size(b), n, 0, sli);
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

static inline void do_free(struct tlsf *t, void *p, size_t size, unsigned sli) {
  if (!p)
    return;
  struct blk *b = (struct blk *)((char *)p - HDR);
  /* The caller's size almost always gives the next block, whose header free reads too:
   * fetching it now overlaps the two cache misses instead of taking them in turn. */
  if (size <= t->max_req)
    __builtin_prefetch(at(b, block_for(size)));
  t->live_blocks--;
  release(t, b, b->hdr, sli);
}

/* In place when the block shrinks, or grows into a free next block or the top; else a new
 * block, the copy, and the old block freed. */
static inline void *do_realloc(struct tlsf *t, void *p, size_t old_size, size_t new_size,
                               unsigned sli) {
  if (new_size > t->max_req)
    return NULL;
  struct blk *b = (struct blk *)((char *)p - HDR);
  size_t hdr = b->hdr, size = hdr & ~FLAG_MASK, prev_free = hdr & PREV_FREE_BIT;
  size_t n = block_for(new_size);
  if (n <= size) {
    if (size - n >= MIN_BLOCK) {
      b->hdr = n | prev_free;
      release(t, at(b, n), size - n, sli);
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
      unlink_block(t, next, block_size(next), sli);
      return use(t, b, total, n, prev_free, sli);
    }
  }
  void *q = do_malloc(t, new_size, sli);
  if (q) {
    memcpy(q, p, old_size < new_size ? old_size : new_size);
    do_free(t, p, old_size, sli);
  }
  return q;
}

static void *tlsf_malloc(void *st, size_t size) {
  struct tlsf *t = st;
  return t->sli == SL_DEFAULT ? do_malloc(t, size, SL_DEFAULT) : do_malloc(t, size, t->sli);
}

static void tlsf_free(void *st, void *p, size_t size) {
  struct tlsf *t = st;
  if (t->sli == SL_DEFAULT)
    do_free(t, p, size, SL_DEFAULT);
  else
    do_free(t, p, size, t->sli);
}

static void *tlsf_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct tlsf *t = st;
  return t->sli == SL_DEFAULT ? do_realloc(t, p, old_size, new_size, SL_DEFAULT)
                              : do_realloc(t, p, old_size, new_size, t->sli);
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
  insert(t, g, gap, t->sli);
}

/* Rare in traces: not specialised for the default sl. */
static void *tlsf_memalign(void *st, size_t alignment, size_t size) {
  struct tlsf *t = st;
  if (size > t->max_req || alignment > t->max_req)
    return NULL;
  size_t n = block_for(size);
  /* Any block of n + alignment + MIN_BLOCK bytes holds an aligned block of n bytes after a
   * gap that is either empty or large enough to be a free block. */
  struct blk *b = n + alignment + MIN_BLOCK <= t->max_req
                      ? take_fit(t, n + alignment + MIN_BLOCK, t->sli)
                      : NULL;
  if (b) {
    size_t bsize = block_size(b), gap = align_gap((char *)b, alignment);
    t->live_blocks++;
    if (!gap)
      return use(t, b, bsize, n, 0, t->sli);
    free_gap(t, b, gap);
    return use(t, at(b, gap), bsize - gap, n, PREV_FREE_BIT, t->sli);
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

/* Empties only the lists the bitmaps mark: a handful, where clearing every head would write
 * kilobytes (736 heads at sl=5 over 1 GiB) on each reset. */
static void tlsf_reset(void *st) {
  struct tlsf *t = st;
  for (uint64_t fm = t->fl_bitmap; fm; fm &= fm - 1) {
    unsigned fl = (unsigned)__builtin_ctzll(fm);
    for (uint64_t sm = t->sl_bitmap[fl]; sm; sm &= sm - 1)
      t->heads[(fl << t->sli) | (unsigned)__builtin_ctzll(sm)] = NULL;
    t->sl_bitmap[fl] = 0;
  }
  t->fl_bitmap = 0;
  t->top = t->heap;
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
