/*
 * buddy: the binary buddy system (Knuth, TAOCP vol. 1, 2.5, algorithms R and S).
 *
 * Blocks are powers of two from `min` bytes up to the largest power of two that fits the
 * region, each at an address (not merely an offset) that is a multiple of its size, so the
 * buddy of the block of order k at x is x XOR 2^k and every block is naturally aligned
 * (memalign takes a block of order log2(alignment) and keeps its first piece). malloc rounds up to
 * a power of two and splits the smallest free block that is large enough, putting the upper halves
 * on the free lists (one per order); free merges with the buddy while the buddy is free and of the
 * same order. A block keeps no header: free and realloc are told the requested size, which gives
 * the order. A free block holds its list links and order at its start and its order again
 * in its last 4 bytes; a bitmap with one bit per min-sized unit says where free blocks
 * start, so that a buddy's bytes are read only when they are known to be a free block.
 *
 * Laziness: the region above a top pointer is untouched, as above an sbrk break. When no
 * list can serve a request, the block is cut at the first suitably aligned address at the
 * top and the gap below it becomes free blocks of increasing order; a free block that ends
 * at the top goes back to it. The bitmap starts inside the instance and, as the top rises,
 * moves into a buddy block at least twice the size, so metadata grows with the used heap (1 bit
 * per min bytes), not with the region.
 *
 * Cost: O(log(region / min)) for malloc, free and realloc (splits and merges), O(1) when
 * the list of the right order has a block.
 * Weaknesses: internal fragmentation: a request just above a power of two takes twice its
 * size (25% waste on average for uniform sizes); free blocks next to each other that are
 * not buddies never merge; a block freed and asked for again at once is merged and split
 * again every time (FIFO and LIFO patterns); the bitmap block, once moved up the heap,
 * keeps the top from dropping below it.
 */
#include "alloc.h"

#include <stdio.h>
#include <string.h>

#define NIL UINT32_MAX
#define MIN_MIN 16 /* the smallest free block holds next, prev, order and the tail order */
#define INLINE_BM_WORDS 8

/* The start of a free block. Links are unit numbers (min-sized units above lo). */
struct fblk {
  uint32_t next, prev, order;
};

struct buddy {
  char *base, *lo, *end; /* blocks lie inside [lo, end) */
  char *top;             /* everything from here to end is untouched */
  unsigned m, max_order; /* log2(min), log2 of the largest block */
  uint64_t order_mask;   /* bit j: the free list of order j is not empty */
  uint64_t *bm;          /* bit u: a free block starts at unit u */
  size_t bm_bytes;       /* bits for bm_bytes * 8 units */
  char *bm_block;        /* the buddy block holding bm, NULL while bm is inline_bm */
  uint64_t splits, merges;
  uint32_t head[64];
  uint64_t inline_bm[INLINE_BM_WORDS];
};

static inline unsigned log2_floor(size_t n) {
  return 63u - (unsigned)__builtin_clzll(n);
}

static inline size_t pow2(unsigned k) {
  return (size_t)1 << k;
}

static inline size_t unit_of(const struct buddy *b, const char *x) {
  return (size_t)(x - b->lo) >> b->m;
}

static inline struct fblk *fblk_at(const struct buddy *b, uint32_t u) {
  return (struct fblk *)(b->lo + ((size_t)u << b->m));
}

static inline unsigned order_of(const struct buddy *b, size_t size) {
  return size <= pow2(b->m) ? b->m : 64u - (unsigned)__builtin_clzll(size - 1);
}

/* Whether the bitmap has bits for every unit below end_addr. */
static inline int covers(const struct buddy *b, size_t bm_bytes, const char *end_addr) {
  return unit_of(b, end_addr) <= bm_bytes * 8;
}

static inline void push(struct buddy *b, char *x, unsigned j) {
  struct fblk *f = (struct fblk *)x;
  uint32_t u = (uint32_t)unit_of(b, x);
  f->order = j;
  ((uint32_t *)(x + pow2(j)))[-1] = j;
  f->next = b->head[j];
  f->prev = NIL;
  if (f->next != NIL)
    fblk_at(b, f->next)->prev = u;
  else
    b->order_mask |= 1ull << j;
  b->head[j] = u;
  b->bm[u >> 6] |= 1ull << (u & 63);
}

static inline void unlink_block(struct buddy *b, char *x, unsigned j) {
  struct fblk *f = (struct fblk *)x;
  size_t u = unit_of(b, x);
  if (f->next != NIL)
    fblk_at(b, f->next)->prev = f->prev;
  if (f->prev != NIL) {
    fblk_at(b, f->prev)->next = f->next;
  } else {
    b->head[j] = f->next;
    if (f->next == NIL)
      b->order_mask &= ~(1ull << j);
  }
  b->bm[u >> 6] &= ~(1ull << (u & 63));
}

/* Whether a free block of order j starts at y (lo <= y < top). */
static inline int is_free(const struct buddy *b, const char *y, unsigned j) {
  size_t u = unit_of(b, y);
  return (b->bm[u >> 6] >> (u & 63) & 1) && ((const struct fblk *)y)->order == j;
}

/* A block of order k, aligned to 2^a (a >= k), from the smallest listed block of order a
 * or more; the caller has checked that one exists. */
static void *take_listed(struct buddy *b, unsigned k, unsigned a) {
  unsigned j = (unsigned)__builtin_ctzll(b->order_mask >> a) + a;
  char *x = (char *)fblk_at(b, b->head[j]);
  unlink_block(b, x, j);
  while (j > k) {
    j--;
    push(b, x + pow2(j), j);
    b->splits++;
  }
  return x;
}

/* Makes [from, to) free blocks, each of the largest order its address allows. to is the
 * first multiple of some 2^a at or above from, so the orders rise and every block fits. */
static void free_gap(struct buddy *b, char *from, char *to) {
  while (from < to) {
    unsigned j = (unsigned)__builtin_ctzll((uintptr_t)from);
    push(b, from, j);
    from += pow2(j);
  }
}

/* Drops the free blocks that end at the top back into the untouched region. A free block
 * ending at the top repeats its order in the last 4 bytes below the top; bytes that are a
 * used block's data fail the checks against the bitmap. */
static void lower_top(struct buddy *b) {
  while (b->top > b->lo) {
    uint32_t j = ((uint32_t *)b->top)[-1];
    if (j < b->m || j > b->max_order)
      return;
    char *x = b->top - pow2(j);
    if (x < b->lo || ((uintptr_t)x & (pow2(j) - 1)) || !is_free(b, x, j))
      return;
    unlink_block(b, x, j);
    b->top = x;
  }
}

/* Algorithm S: merges the block of order k at x with free buddies, then lists it or gives
 * it back to the top. */
static void release(struct buddy *b, char *x, unsigned k) {
  for (; k < b->max_order; k++) {
    char *y = (char *)((uintptr_t)x ^ pow2(k));
    if (y < b->lo || y >= b->top || !is_free(b, y, k))
      break;
    unlink_block(b, y, k);
    b->merges++;
    if (y < x)
      x = y;
  }
  if (x + pow2(k) == b->top) {
    b->top = x;
    lower_top(b);
    return;
  }
  push(b, x, k);
}

/* Moves the bitmap into a buddy block large enough to cover every unit below need_end and
 * any block cut at the top on the way. Returns 0, or -1 when no such block fits. */
static int grow_bitmap(struct buddy *b, char *need_end) {
  size_t all = ((size_t)(b->end - b->lo) >> b->m) / 8 + 1;
  size_t cap = pow2(log2_floor(all) + (all & (all - 1) ? 1 : 0));
  if (cap < pow2(b->m))
    cap = pow2(b->m);
  size_t bytes = b->bm_bytes * 2;
  while (bytes * 8 < unit_of(b, need_end))
    bytes *= 2;
  if (bytes < pow2(b->m))
    bytes = pow2(b->m);
  char *x = NULL;
  int listed;
  for (;; bytes *= 2) {
    if (bytes > cap)
      bytes = cap;
    unsigned ob = log2_floor(bytes);
    if (ob > b->max_order)
      return -1;
    listed = (b->order_mask >> ob) != 0;
    char *reach = need_end;
    if (!listed) {
      x = (char *)alloc_align_up((uintptr_t)b->top, bytes);
      if (x > b->end || bytes > (size_t)(b->end - x))
        return -1;
      if (x + bytes > reach)
        reach = x + bytes;
    }
    if (covers(b, bytes, reach))
      break;
    if (bytes == cap)
      return -1;
  }
  unsigned ob = log2_floor(bytes);
  if (listed)
    x = take_listed(b, ob, ob); /* its splits set bits in the old bitmap, copied below */
  memcpy(x, b->bm, b->bm_bytes);
  memset(x + b->bm_bytes, 0, bytes - b->bm_bytes);
  char *old = b->bm_block;
  size_t old_bytes = b->bm_bytes;
  b->bm = (uint64_t *)x;
  b->bm_bytes = bytes;
  b->bm_block = x;
  if (!listed) {
    free_gap(b, b->top, x);
    b->top = x + bytes;
  }
  if (old)
    release(b, old, log2_floor(old_bytes));
  return 0;
}

/* A block of order k aligned to 2^a (k <= a), or NULL. Listed blocks come first; the top
 * rises only when no list can serve. */
static void *alloc_block(struct buddy *b, unsigned k, unsigned a) {
  if (a > b->max_order)
    return NULL;
  for (;;) {
    if (b->order_mask >> a)
      return take_listed(b, k, a);
    char *x = (char *)alloc_align_up((uintptr_t)b->top, pow2(a));
    if (x > b->end || pow2(k) > (size_t)(b->end - x))
      return NULL;
    if (covers(b, b->bm_bytes, x + pow2(k))) {
      free_gap(b, b->top, x);
      b->top = x + pow2(k);
      return x;
    }
    if (grow_bitmap(b, x + pow2(k)))
      return NULL;
  }
}

static int buddy_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                      char *err, size_t errlen) {
  size_t min;
  if (alloc_arg_size(args, "min", &min, err, errlen))
    return -1;
  if (!alloc_is_pow2(min) || min < MIN_MIN || min > pow2(30)) {
    snprintf(err, errlen, "parameter 'min': %zu is not a power of two from %d to 1G", min, MIN_MIN);
    return -1;
  }
  char *st = (char *)alloc_align_up((uintptr_t)base, 16);
  char *lo = (char *)alloc_align_up((uintptr_t)st + sizeof(struct buddy), min);
  char *end = (char *)base + size;
  if (lo > end || (size_t)(end - lo) < min) {
    snprintf(err, errlen, "region of %zu bytes is too small for buddy with min=%zu", size, min);
    return -1;
  }
  unsigned m = log2_floor(min);
  if ((size_t)(end - lo) >> m >= NIL) /* unit numbers must fit the 32-bit links */
    end = lo + ((size_t)(NIL - 1) << m);
  struct buddy *b = (struct buddy *)st;
  *b = (struct buddy){.base = base, .lo = lo, .end = end, .top = lo, .m = m};
  b->max_order = log2_floor((size_t)(end - lo));
  b->bm = b->inline_bm;
  b->bm_bytes = sizeof b->inline_bm;
  memset(b->head, 0xff, sizeof b->head);
  *ret_st = b;
  return 0;
}

static void *buddy_malloc(void *st, size_t size) {
  struct buddy *b = st;
  unsigned k = order_of(b, size);
  return alloc_block(b, k, k);
}

static void buddy_free(void *st, void *p, size_t size) {
  struct buddy *b = st;
  if (p)
    release(b, p, order_of(b, size));
}

static void *buddy_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct buddy *b = st;
  char *x = p;
  unsigned k0 = order_of(b, old_size), k1 = order_of(b, new_size);
  if (k1 == k0)
    return p;
  if (k1 < k0) {
    if (x + pow2(k0) == b->top) {
      b->top = x + pow2(k1);
    } else {
      for (unsigned j = k1; j < k0; j++) /* the upper halves; their buddies are ours */
        push(b, x + pow2(j), j);
    }
    return p;
  }
  if (k1 > b->max_order)
    return NULL;
  /* In place when x is the lower half at every level up to k1 and each upper half is free
   * or above the top. */
  char *x_end = x + pow2(k1);
  if (!((uintptr_t)x & (pow2(k1) - 1)) && x_end > x && x_end <= b->end) {
    unsigned j = k0;
    for (; j < k1; j++) {
      char *y = x + pow2(j);
      if (y >= b->top)
        break;
      if (!is_free(b, y, j))
        break;
    }
    int to_top = j < k1 && x + pow2(j) >= b->top;
    if (j == k1 || (to_top && covers(b, b->bm_bytes, x_end))) {
      for (unsigned i = k0; i < j; i++)
        unlink_block(b, x + pow2(i), i);
      if (to_top)
        b->top = x_end;
      return p;
    }
  }
  void *q = alloc_block(b, k1, k1);
  if (q) {
    memcpy(q, p, old_size < new_size ? old_size : new_size);
    release(b, x, k0);
  }
  return q;
}

static void *buddy_memalign(void *st, size_t alignment, size_t size) {
  struct buddy *b = st;
  unsigned k = order_of(b, size), a = log2_floor(alignment);
  return alloc_block(b, k, a > k ? a : k);
}

static size_t buddy_usable_size(void *st, void *p, size_t size) {
  (void)p;
  return pow2(order_of(st, size));
}

static void buddy_reset(void *st) {
  struct buddy *b = st;
  b->top = b->lo;
  b->order_mask = 0;
  memset(b->head, 0xff, sizeof b->head);
  b->bm = b->inline_bm;
  b->bm_bytes = sizeof b->inline_bm;
  b->bm_block = NULL;
  memset(b->inline_bm, 0, sizeof b->inline_bm);
}

static void buddy_stats(void *st, struct alloc_stats *ret) {
  struct buddy *b = st;
  *ret = (struct alloc_stats){
      .footprint = (size_t)(b->top - b->base),
      .meta_bytes = (size_t)(b->lo - b->base) + (b->bm_block ? b->bm_bytes : 0),
      .n_counters = 3,
      .counter = {{"splits", b->splits}, {"merges", b->merges}, {"bitmap_bytes", b->bm_bytes}},
  };
}

static void buddy_destroy(void *st) {
  (void)st;
}

static const struct alloc_param buddy_params[] = {
    {"min", "32", "smallest block in bytes, a power of two (16 or more)"},
    {NULL, NULL, NULL},
};

static const char *const buddy_variants[] = {"min=16", "min=256", NULL};

const struct alloc_methods alloc_buddy = {
    .name = "buddy",
    .summary = "binary buddy system (Knuth 2.5): power-of-two blocks, XOR buddies, lazy top",
    .params = buddy_params,
    .variants = buddy_variants,
    .init = buddy_init,
    .malloc = buddy_malloc,
    .free = buddy_free,
    .realloc = buddy_realloc,
    .memalign = buddy_memalign,
    .reset = buddy_reset,
    .usable_size = buddy_usable_size,
    .stats = buddy_stats,
    .destroy = buddy_destroy,
};
