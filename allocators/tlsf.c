/*
 * tlsf: two-level segregated fit (M. Masmano, I. Ripoll, A. Crespo, J. Real, "TLSF: a new
 * dynamic memory allocator for real-time systems", ECRTS 2004).
 *
 * Free blocks sit in segregated lists indexed by two levels: the first by the power of two
 * at or below the block size, the second by 2^sl equal subdivisions of that power-of-two
 * range (sizes below 16 << sl, where the subdivisions would be finer than the 16-byte
 * grain, get one list per 16 bytes: first-level class 0). One bitmap for the first level and
 * one per first-level class for the second make "first non-empty list at or above this one"
 * two ctz and no loop. malloc rounds the request up to the next list boundary (good fit), so
 * that any block of the list found fits without looking at it, takes the list's first block
 * and files the tail it does not need as a free block. A block has an 8-byte header (size,
 * free bit, previous-free bit); a free block also keeps its address and list in its last
 * word (boundary tag), so free merges with both physical neighbours at once (immediate
 * coalescing) and the heap never holds two free blocks side by side. Lists are doubly
 * linked through the address of the link that points to each block, so an unlink needs no
 * test. The heap grows from a top pointer like sbrk when no list has a fitting block; a
 * free block that reaches the top goes back to it.
 *
 * Two outcomes depend on the data: whether a small malloc leaves a tail to file, and
 * whether a free merges with the previous block. Most workloads make them predictable;
 * small blocks freed in allocation order (FIFO) make each a coin toss, and the processor's
 * mispredictions then cost more than the work. So each also has a branch-free path that does
 * the work of both outcomes (a sentinel block stands in for the missing tail or previous
 * neighbour, so that the same list operations run either way), and each window of WINDOW
 * frees takes that path for a decision whose outcomes were 30% or more each in the window
 * before. Both paths make the same decisions; only the instructions differ. A class-0 list
 * holds one size (i * 16 bytes), so a small malloc splits its block without waiting for
 * the block's header.
 *
 * Cost: O(1) malloc, free and memalign; realloc O(1) plus the copy when the block moves
 * (it grows in place into a free next block or the top); reset O(non-empty lists). Per op,
 * one or two bsr map sizes to lists (none for a malloc from class 0; a merge reads the
 * previous block's list from its tag); with the default sl the shifts are constants.
 * Weaknesses: good-fit rounding skips blocks up to 1/2^sl larger than the request in the
 * request's own list; 8 bytes of header per block and a 32-byte minimum block; the index
 * has 2^sl list heads per power of two up to the region's size (11 KiB over 1 GiB at sl=6),
 * which a heap of a few dozen KiB notices; memalign asks the lists for size + alignment + 32
 * bytes, then gives the leading gap back. Small blocks freed in FIFO order (fifo-classes)
 * are its worst case against glibc, whose tcache and fastbins hand back the block just
 * freed without coalescing: there the branch-free paths, with few instructions and short
 * load chains on them (the boundary tag names the block, the bitmap word is written once),
 * put it ahead (tlsf/system median 0.91 in twelve alternating runs, against 1.02 before
 * that tightening and 1.50 with branches only), with about 0.1 mispredicted branches per op
 * against glibc's 0.51 and 82 instructions against 74 (callgrind, the harness's own loop
 * subtracted).
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

/* A free block's boundary tag holds its address in the low TAG_LIST bits and its list above. */
#define TAG_LIST 48
#define TAG_ADDR (((size_t)1 << TAG_LIST) - 1)
#define MAX_FL (TAG_LIST - GRAIN_LOG2 + 2) /* first-level classes of the largest region */

#define WINDOW 4096      /* frees between two choices of the paths (retune) */
#define FIRST_WINDOW 256 /* frees before the first choice */

/* A block starts 8 bytes before a 16-aligned payload; its size is a multiple of 16, so the
 * next block starts 8 bytes before a 16-aligned address too. A free block is on a list:
 * next is the following block or t->sink (the end), pprev the link that points to it (the
 * previous block's next or the list head), so that unlinking needs no test. */
struct blk {
  size_t hdr; /* size | FREE_BIT | PREV_FREE_BIT */
  struct blk *next;
  struct blk **pprev;
};

/* Its size counts in the footprint (the heap starts after the instance and the heads): one
 * field more can move every block 16 bytes. */
struct tlsf {
  char *base, *end;
  char *heap;         /* first block */
  char *top;          /* break: everything from here to end is unused */
  unsigned sli;       /* log2 of the second-level lists per first-level class */
  unsigned fl_count;  /* first-level classes: fl 0 (below 16 << sli) and one per power of two */
  size_t max_req;     /* largest request that could fit the region */
  uint64_t fl_bitmap; /* bit fl > 0: some list of class fl is non-empty (bit 0: unused) */
  uint64_t given;     /* blocks given less the frees of the windows before this one (see live) */
  /* Blocks made by growing the top and by splits, and gone by merges and back to the top:
   * their balance less the live blocks is the free blocks, counted without a store per
   * list change; splits and merges also say how mixed the outcomes are (retune). */
  uint64_t top_grows, splits, merges, top_returns;
  uint64_t win_splits, win_merges; /* splits and merges at the start of the window */
  uint64_t blended;                /* windows started with a branch-free path */
  unsigned blend;        /* BLEND_SPLIT, BLEND_MERGE: which decisions run without a branch */
  unsigned mpath, fpath; /* malloc's and free's path: PATH_BRANCH, PATH_BLEND or PATH_ANY_SL */
  unsigned left, window; /* frees left in the current window, and its length */
  struct blk sink;       /* end of every list; its fields are written, never read */
  struct blk nil; /* never written: its header is its own tag, and unlinking it changes nothing */
  /* At fixed offsets from the instance, so that the hot paths address them from t alone. */
  uint64_t sl_bitmap[MAX_FL]; /* bit sl of word fl: list (fl << sli) | sl is non-empty */
  struct blk *heads[];        /* [fl_count << sli]: first block, or &sink when empty */
};

#define BLEND_SPLIT 1u /* small mallocs split or not without a branch */
#define BLEND_MERGE 2u /* frees merge with the previous block or not without a branch */

/* The entry points' paths, one compare each: the default sl with branches or without, or any
 * other sl (the same code, out of line, with sl a variable). */
#define PATH_BRANCH 0u
#define PATH_BLEND 1u
#define PATH_ANY_SL 2u

/* The hot paths take sli as an argument and are inlined into entry points that pass the
 * default as a constant (and t->sli otherwise): with sli known, the mapping's shifts and
 * masks fold into immediates. Keep it equal to the "sl" parameter's default below. */
#define SL_DEFAULT 6u

/* clz ^ 63 rather than 63 - clz: the compiler turns it into a single bsr. */
static inline unsigned log2_floor(size_t n) {
  return (unsigned)__builtin_clzll(n) ^ 63u;
}

/* a when c is not 0, b when it is, without a branch: the compiler turns a conditional
 * expression here into one, which a coin-toss condition mispredicts. On x86-64 a cmov (two
 * dependent instructions, where the arithmetic takes four: this is on the path from a
 * free's header load to its list changes). */
static inline uintptr_t pick(uint64_t c, uintptr_t a, uintptr_t b) {
#if defined(__x86_64__)
  __asm__("test %[c], %[c]\n\tcmovnz %[a], %[b]" : [b] "+r"(b) : [c] "r"(c), [a] "r"(a) : "cc");
  return b;
#else
  return b ^ ((a ^ b) & (0 - (uintptr_t)(c != 0)));
#endif
}

static inline size_t block_size(const struct blk *b) {
  return b->hdr & ~FLAG_MASK;
}

static inline struct blk *at(void *p, size_t off) {
  return (struct blk *)((char *)p + off);
}

/* The boundary tag of the free block b: address and list, so that a free merging with b
 * finds b and its list without computing them. */
static inline void set_tag(struct blk *b, size_t size, unsigned list) {
  ((size_t *)((char *)b + size))[-1] = (uintptr_t)b | (size_t)list << TAG_LIST;
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

/* Requests below this get blocks below small (class 0). */
static inline size_t small_req(unsigned sli) {
  return small_of(sli) > HDR + 15 ? small_of(sli) - HDR - 15 : 0;
}

/* The list a free block of this size belongs to: (fl << sli) | sl. With l = log2(size),
 * size >> (l - sli) is 2^sli + sl, so the index is ((fl - 1) << sli) + (size >> (l - sli)):
 * one clz, two shifts and an add. Sizes below small (fl 0) come out as size / 16 because
 * size | small has the bit of small on top. No branch: sizes on either side of small
 * alternate in a mixed workload. Lists 0 and 1 (below 32 bytes) never hold a block. */
static inline unsigned list_of(size_t size, unsigned sli) {
  unsigned l = log2_floor(size | small_of(sli));
  return ((l - sli - GRAIN_LOG2) << sli) + (unsigned)(size >> (l - sli));
}

/* Links b in front of list j; returns whether the list was empty. No bitmap change. */
static inline int link_head(struct tlsf *t, struct blk *b, size_t j) {
  struct blk *h = t->heads[j];
  b->next = h;
  h->pprev = &b->next;
  b->pprev = &t->heads[j];
  t->heads[j] = b;
  return h == &t->sink;
}

/* The bitmaps say which lists are non-empty. In the branch-free modes (blend) they are
 * rewritten on every list change; otherwise only when a list turns empty or non-empty,
 * which saves the stores where lists hold several blocks. */
static inline void set_bits(struct tlsf *t, unsigned j, unsigned sli) {
  t->sl_bitmap[j >> sli] |= 1ull << (j & ((1u << sli) - 1));
  t->fl_bitmap |= 1ull << (j >> sli);
}

/* Clears list i's bit when empty is 1, and its class's when the class empties. */
static inline void clear_bits(struct tlsf *t, unsigned i, uint64_t empty, unsigned sli, int blend) {
  unsigned fl = i >> sli;
  if (!blend && !empty)
    return;
  uint64_t sm = t->sl_bitmap[fl] & ~(empty << (i & ((1u << sli) - 1)));
  t->sl_bitmap[fl] = sm;
  if (blend)
    t->fl_bitmap &= ~((uint64_t)(sm == 0) << fl);
  else if (!sm)
    t->fl_bitmap &= ~(1ull << fl);
}

/* Pushes the free block b on list i. */
static inline void insert(struct tlsf *t, struct blk *b, unsigned i, unsigned sli, int blend) {
  if (link_head(t, b, i) || blend)
    set_bits(t, i, sli);
}

/* Takes b off its list, i. */
static inline void unlink_block(struct tlsf *t, struct blk *b, unsigned i, unsigned sli,
                                int blend) {
  struct blk *n = b->next, **pp = b->pprev;
  *pp = n;
  n->pprev = pp;
  clear_bits(t, i, (pp == &t->heads[i]) & (n == &t->sink), sli, blend);
}

/* Takes x off list i and pushes y (x itself, merged, or the free tail carved from it) on
 * list j. head: x is the head of list i. blend: the bitmap updates of the removal and the
 * insertion in one, without a branch. */
static inline void relist(struct tlsf *t, struct blk *x, size_t i, struct blk *y, size_t j,
                          int head, unsigned sli, int blend) {
  size_t mask = ((size_t)1 << sli) - 1, fi = i >> sli, fj = j >> sli;
  struct blk *n = x->next, **pp = head ? &t->heads[i] : x->pprev;
  *pp = n;
  n->pprev = pp;
  /* x was alone on list i: its link was the head and it led to the sink (one compare). */
  uint64_t empty =
      (((uintptr_t)pp ^ (uintptr_t)&t->heads[i]) | ((uintptr_t)n ^ (uintptr_t)&t->sink)) == 0;
  int was_empty = link_head(t, y, j);
  if (!blend) {
    if (empty)
      clear_bits(t, i, 1, sli, 0);
    if (was_empty)
      set_bits(t, j, sli);
    return;
  }
  if (fi == fj) {
    /* Nearly always (a merge rarely crosses a power of two): one word, and no store read
     * back. List i's bit is set (x is on it, or x is t->nil with empty 0), so xor clears
     * it; fl_bitmap keeps its bit (x stays in the class; t->nil's is class 0, whose bit is
     * unused). */
    t->sl_bitmap[fi] = (t->sl_bitmap[fi] ^ (empty << (i & mask))) | 1ull << (j & mask);
    return;
  }
  uint64_t a = t->sl_bitmap[fi] & ~(empty << (i & mask));
  t->sl_bitmap[fi] = a;
  t->sl_bitmap[fj] |= 1ull << (j & mask); /* after the clear: i == j keeps its bit */
  t->fl_bitmap = (t->fl_bitmap & ~((uint64_t)(a == 0) << fi)) | 1ull << fj;
}

/* The first non-empty list whose blocks all hold n bytes, or -1. */
static inline int find_fit(const struct tlsf *t, size_t n, unsigned sli) {
  /* Round up to the next list boundary, so that any block of the list found fits. Below
   * small, n (a multiple of 16) is on one already and its list is n / 16. */
  unsigned i = n < small_of(sli) ? (unsigned)(n >> GRAIN_LOG2)
                                 : list_of(n + ((size_t)1 << (log2_floor(n) - sli)) - 1, sli);
  unsigned fl = i >> sli;
  if (fl >= t->fl_count)
    return -1;
  uint64_t sm = t->sl_bitmap[fl] & (~0ull << (i & ((1u << sli) - 1)));
  if (!sm) {
    uint64_t fm = t->fl_bitmap & (~0ull << (fl + 1));
    if (!fm)
      return -1;
    fl = (unsigned)__builtin_ctzll(fm);
    sm = t->sl_bitmap[fl];
  }
  return (int)((fl << sli) | (unsigned)__builtin_ctzll(sm));
}

/* Takes b, the head of list i, off it. */
static inline void pop_head(struct tlsf *t, struct blk *b, unsigned i, unsigned sli, int blend) {
  struct blk *n = b->next;
  t->heads[i] = n;
  n->pprev = &t->heads[i];
  clear_bits(t, i, n == &t->sink, sli, blend);
}

/* Puts r where b, the head of list i, was: same list, so no bitmap change. */
static inline void replace_head(struct tlsf *t, struct blk *b, struct blk *r, unsigned i) {
  struct blk *n = b->next;
  r->next = n;
  n->pprev = &r->next;
  r->pprev = &t->heads[i];
  t->heads[i] = r;
}

/* The free block of rest bytes (list j) after the first n bytes of b, counted as a split. */
static inline struct blk *new_tail(struct tlsf *t, struct blk *b, size_t n, size_t rest,
                                   unsigned j) {
  struct blk *r = at(b, n);
  r->hdr = rest | FREE_BIT;
  set_tag(r, rest, j);
  t->splits++;
  return r;
}

/* Makes b (size bytes, the head of list i) a used block of n bytes. A tail of MIN_BLOCK or
 * more becomes a free block, which takes b's place in the list when it maps to the same list
 * (a large block carved from its front): no bitmap traffic then. */
static inline void *carve(struct tlsf *t, struct blk *b, unsigned i, size_t size, size_t n,
                          unsigned sli, int blend) {
  size_t rest = size - n;
  if (rest >= MIN_BLOCK) {
    unsigned j = list_of(rest, sli);
    struct blk *r = new_tail(t, b, n, rest, j);
    b->hdr = n;
    if (j == i)
      replace_head(t, b, r, i);
    else
      relist(t, b, i, r, j, 1, sli, blend);
  } else {
    pop_head(t, b, i, sli, blend);
    b->hdr = size;
    at(b, size)->hdr &= ~PREV_FREE_BIT;
  }
  return (char *)b + HDR;
}

/* Class 0's lists hold one size each, so the bitmap word of the class (sm) is the only one
 * to change (searches read class 0's word directly, never fl_bitmap's bit 0): takes b, the
 * head of list i, off it and pushes r on list j (j < i). */
static inline void relist_small(struct tlsf *t, struct blk *b, size_t i, uint64_t sm, struct blk *r,
                                size_t j) {
  struct blk *n = b->next;
  t->heads[i] = n;
  n->pprev = &t->heads[i];
  uint64_t empty = n == &t->sink;
  if (link_head(t, r, j) || empty)
    t->sl_bitmap[0] = (sm ^ (empty << i)) | 1ull << j; /* i's bit is set: xor clears it */
}

/* Class 0's pop: takes b, the head of list i, off it (sm: the class's bitmap word). */
static inline void pop_small(struct tlsf *t, struct blk *b, size_t i, uint64_t sm) {
  struct blk *n = b->next;
  t->heads[i] = n;
  n->pprev = &t->heads[i];
  if (n == &t->sink)
    t->sl_bitmap[0] = sm & ~(1ull << i);
}

/* Makes b, the head of list i of class 0 (so i * 16 bytes), a used block of n bytes; sm is
 * class 0's bitmap word. The block's size comes from its list, not its header: the split is
 * computed without waiting for that load. blend: no branch on whether a tail of MIN_BLOCK
 * is left (see tlsf_malloc): without one, the sink stands in for it, the boundary tag lands
 * in b's own payload, and the next block's previous-free bit is cleared. */
static inline void *carve_small(struct tlsf *t, struct blk *b, size_t i, uint64_t sm, size_t n,
                                int blend) {
  size_t size = i << GRAIN_LOG2, rest = size - n, j = rest >> GRAIN_LOG2;
  uint64_t split = rest >= MIN_BLOCK;
  if (blend) {
    /* b off its list and the new bitmap word first, then the tail on: fewer values live at
     * once, so fewer registers to save. i's bit is set (and i != j): xor clears it. */
    struct blk *nb = b->next;
    t->heads[i] = nb;
    nb->pprev = &t->heads[i];
    t->sl_bitmap[0] = (sm ^ (uint64_t)(nb == &t->sink) << i) | split << j;
    struct blk *r = (struct blk *)pick(split, (uintptr_t)at(b, n), (uintptr_t)&t->sink);
    b->hdr = pick(split, n, size);
    r->hdr = rest | FREE_BIT;
    ((size_t *)((char *)b + size))[-1] = (uintptr_t)r | (size_t)j << TAG_LIST;
    at(b, size)->hdr &= ~PREV_FREE_BIT | split << 1;
    link_head(t, r, j);
    t->splits += split;
  } else if (split) {
    struct blk *r = at(b, n);
    b->hdr = n;
    r->hdr = rest | FREE_BIT;
    set_tag(r, rest, j);
    relist_small(t, b, i, sm, r, j);
    t->splits++;
  } else {
    b->hdr = size;
    at(b, size)->hdr &= ~PREV_FREE_BIT;
    pop_small(t, b, i, sm);
  }
  return (char *)b + HDR;
}

/* Takes a free block of at least n bytes off its list, or returns NULL. */
static inline struct blk *take_fit(struct tlsf *t, size_t n, unsigned sli) {
  int i = find_fit(t, n, sli);
  if (i < 0)
    return NULL;
  struct blk *b = t->heads[i];
  pop_head(t, b, (unsigned)i, sli, 0);
  return b;
}

/* Makes b (size bytes, off the lists, the block after it existing) a used block of n
 * bytes; a tail of MIN_BLOCK or more becomes a free block. */
static inline void *use(struct tlsf *t, struct blk *b, size_t size, size_t n, size_t prev_free,
                        unsigned sli) {
  size_t rest = size - n;
  if (rest >= MIN_BLOCK) {
    unsigned j = list_of(rest, sli);
    insert(t, new_tail(t, b, n, rest, j), j, sli, 0);
    b->hdr = n | prev_free;
  } else {
    b->hdr = size | prev_free;
    at(b, size)->hdr &= ~PREV_FREE_BIT;
  }
  return (char *)b + HDR;
}

/* Gives back the used block b (header hdr): merges it with free neighbours, or returns it
 * to the top. blend: no branch on whether the previous block is free (see tlsf_free): when
 * it is in use, the tag read is t->nil's, and the merged block's move between lists then
 * unlinks t->nil, which changes nothing. */
static inline void release(struct tlsf *t, struct blk *b, size_t hdr, unsigned sli, int blend) {
  size_t own = hdr & ~FLAG_MASK, prev_free = hdr & PREV_FREE_BIT; /* 0 or PREV_FREE_BIT */
  struct blk *x = b, *from = &t->nil; /* the merged block's start; the block off a list */
  size_t i = 0;                       /* from's list */
  if (blend) {
    /* Read the previous block's tag only when it is free: otherwise that word is a live
     * block's data, which another thread may be writing (locked:tlsf). t->nil's header, its
     * own tag, is read instead; the address is selected, not the value. */
    size_t tag =
        *(const size_t *)pick(prev_free, (uintptr_t)((size_t *)b - 1), (uintptr_t)&t->nil.hdr);
    from = (struct blk *)(tag & TAG_ADDR);
    i = tag >> TAG_LIST;
    x = (struct blk *)pick(prev_free, (uintptr_t)from, (uintptr_t)b);
    t->merges += prev_free >> 1;
  } else if (prev_free) {
    size_t tag = ((size_t *)b)[-1];
    x = from = (struct blk *)(tag & TAG_ADDR);
    i = tag >> TAG_LIST;
    t->merges++;
  }
  size_t size = own + (size_t)((char *)b - (char *)x);
  struct blk *next = at(b, own);
  if ((char *)next == t->top) {
    if (prev_free)
      unlink_block(t, x, i, sli, blend);
    t->top = (char *)x;
    t->top_returns++;
    return;
  }
  if (next->hdr & FREE_BIT) {
    size_t nsize = block_size(next);
    unlink_block(t, next, list_of(nsize, sli), sli, blend);
    t->merges++;
    size += nsize;
    next = at(next, nsize);
  }
  size_t j = list_of(size, sli);
  x->hdr = size | FREE_BIT;
  set_tag(x, size, j);
  next->hdr |= PREV_FREE_BIT;
  if (blend)
    relist(t, from, i, x, j, 0, sli, 1);
  else if (prev_free)
    relist(t, x, i, x, j, 0, sli, 0);
  else
    insert(t, x, j, sli, 0);
}

/* A decision runs without a branch while its outcomes are mixed: 30% or more of each, for
 * the n frees of the last window (splits are counted against frees too: about as many). */
static inline unsigned mixed(uint64_t k, uint64_t n) {
  return 10 * k >= 3 * n && 10 * k <= 7 * n;
}

/* The entry points' paths for the modes chosen. */
static void set_paths(struct tlsf *t) {
  t->mpath = t->sli != SL_DEFAULT ? PATH_ANY_SL : t->blend & BLEND_SPLIT ? PATH_BLEND : PATH_BRANCH;
  t->fpath = t->sli != SL_DEFAULT ? PATH_ANY_SL : t->blend & BLEND_MERGE ? PATH_BLEND : PATH_BRANCH;
}

/* The end of a window: chooses the paths for the next one from the outcomes of this one. */
static __attribute__((noinline)) void retune(struct tlsf *t) {
  uint64_t n = t->window;
  t->blend = (mixed(t->splits - t->win_splits, n) ? BLEND_SPLIT : 0) |
             (mixed(t->merges - t->win_merges, n) ? BLEND_MERGE : 0);
  t->blended += t->blend != 0;
  set_paths(t);
  t->given -= t->window;
  t->win_splits = t->splits;
  t->win_merges = t->merges;
  t->left = t->window = WINDOW;
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
  size_t lists = (size_t)fl_count << sli;
  size_t meta = sizeof(struct tlsf) + lists * sizeof(struct blk *);
  if (room >> TAG_LIST) {
    snprintf(err, errlen, "region of %zu bytes is too large for tlsf (2^%d at most)", size,
             TAG_LIST);
    return -1;
  }
  if (((uintptr_t)end - 1) >> TAG_LIST) {
    snprintf(err, errlen, "region at %p ends above 2^%d, beyond tlsf's boundary tags", base,
             TAG_LIST);
    return -1;
  }
  if (room < meta + 16 + MIN_BLOCK) {
    snprintf(err, errlen, "region of %zu bytes is too small for tlsf (needs %zu)", size,
             meta + 16 + MIN_BLOCK + 15);
    return -1;
  }
  struct tlsf *t = (struct tlsf *)lo;
  *t = (struct tlsf){.base = base,
                     .end = end,
                     .sli = (unsigned)sli,
                     .fl_count = fl_count,
                     .left = FIRST_WINDOW,
                     .window = FIRST_WINDOW};
  t->nil = (struct blk){.hdr = (uintptr_t)&t->nil, .next = &t->sink, .pprev = &t->sink.next};
  set_paths(t);
  for (size_t i = 0; i < lists; i++)
    t->heads[i] = &t->sink;
  /* The first block starts 8 bytes before a 16-aligned address. */
  t->heap = (char *)alloc_align_up((uintptr_t)lo + meta + HDR, 16) - HDR;
  t->top = t->heap;
  t->max_req = (size_t)(end - t->heap) - HDR - 15;
  *ret_st = t;
  return 0;
}

static inline __attribute__((always_inline)) void *do_malloc(struct tlsf *t, size_t size,
                                                             unsigned sli, int blend) {
  size_t n;
  if (size < small_req(sli)) {
    n = block_for(size);
    unsigned i = (unsigned)(n >> GRAIN_LOG2);
    uint64_t sm = t->sl_bitmap[0], fit = sm & (~0ull << i);
    if (fit) {
      t->given++;
      size_t k = (size_t)__builtin_ctzll(fit);
      return carve_small(t, t->heads[k], k, sm, n, blend);
    }
    /* Nothing in class 0 from list i up: the first non-empty class above (bit 0 of
     * fl_bitmap is not class 0's). */
    uint64_t fm = t->fl_bitmap & ~1ull;
    if (fm) {
      unsigned fl = (unsigned)__builtin_ctzll(fm);
      i = (fl << sli) | (unsigned)__builtin_ctzll(t->sl_bitmap[fl]);
      struct blk *b = t->heads[i];
      t->given++;
      return carve(t, b, i, block_size(b), n, sli, blend);
    }
  } else {
    if (size > t->max_req)
      return NULL;
    n = block_for(size);
    int i = find_fit(t, n, sli);
    if (i >= 0) {
      struct blk *b = t->heads[i];
      t->given++;
      return carve(t, b, (unsigned)i, block_size(b), n, sli, blend);
    }
  }
  if (n > (size_t)(t->end - t->top))
    return NULL;
  struct blk *b = (struct blk *)t->top;
  t->top += n;
  b->hdr = n; /* the block below the top is never free: it would have gone back to the top */
  t->given++;
  t->top_grows++;
  return (char *)b + HDR;
}

static inline void do_free(struct tlsf *t, void *p, unsigned sli, int blend) {
  if (!p)
    return;
  struct blk *b = (struct blk *)((char *)p - HDR);
  release(t, b, b->hdr, sli, blend);
  if (!--t->left)
    retune(t);
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
      t->splits++;
      release(t, at(b, n), size - n, sli, 0);
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
      unlink_block(t, next, list_of(block_size(next), sli), sli, 0);
      t->merges++;
      return use(t, b, total, n, prev_free, sli);
    }
  }
  void *q = do_malloc(t, new_size, sli, 0);
  if (q) {
    memcpy(q, p, old_size < new_size ? old_size : new_size);
    do_free(t, p, sli, 0);
  }
  return q;
}

/* Other values of sl: the same code with the variable, out of line, so that the default
 * entry points keep only their own registers. */
static __attribute__((noinline)) void *malloc_any_sl(struct tlsf *t, size_t size) {
  if (t->blend & BLEND_SPLIT)
    return do_malloc(t, size, t->sli, 1);
  return do_malloc(t, size, t->sli, 0);
}

static __attribute__((noinline)) void free_any_sl(struct tlsf *t, void *p) {
  if (t->blend & BLEND_MERGE)
    do_free(t, p, t->sli, 1);
  else
    do_free(t, p, t->sli, 0);
}

static __attribute__((noinline)) void *realloc_any_sl(struct tlsf *t, void *p, size_t old_size,
                                                      size_t new_size) {
  return do_realloc(t, p, old_size, new_size, t->sli);
}

/* Whether a small malloc splits its block, and whether a free merges with the previous
 * block, are branches the processor predicts well in most workloads, and coin tosses in
 * some (small sizes freed in FIFO order): there, a branch-free path that does the work of
 * both outcomes is cheaper than the mispredictions. Each is chosen per window of WINDOW
 * frees from the outcomes of the last one (retune); both make the same decisions. */
static void *tlsf_malloc(void *st, size_t size) {
  struct tlsf *t = st;
  if (t->mpath == PATH_BLEND)
    return do_malloc(t, size, SL_DEFAULT, 1);
  if (t->mpath == PATH_ANY_SL)
    return malloc_any_sl(t, size);
  return do_malloc(t, size, SL_DEFAULT, 0);
}

static void tlsf_free(void *st, void *p, size_t size) {
  struct tlsf *t = st;
  (void)size;
  if (t->fpath == PATH_BLEND)
    do_free(t, p, SL_DEFAULT, 1);
  else if (t->fpath == PATH_ANY_SL)
    free_any_sl(t, p);
  else
    do_free(t, p, SL_DEFAULT, 0);
}

static void *tlsf_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct tlsf *t = st;
  if (t->sli != SL_DEFAULT)
    return realloc_any_sl(t, p, old_size, new_size);
  return do_realloc(t, p, old_size, new_size, SL_DEFAULT);
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
  unsigned i = list_of(gap, t->sli);
  g->hdr = gap | FREE_BIT;
  set_tag(g, gap, i);
  insert(t, g, i, t->sli, 0);
  t->splits++; /* off the front of a listed block, or the top's: one more block either way */
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
    t->given++;
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
  t->given++;
  t->top_grows++;
  return (char *)b + HDR;
}

static size_t tlsf_usable_size(void *st, void *p, size_t size) {
  (void)st;
  (void)size;
  return block_size((struct blk *)((char *)p - HDR)) - HDR;
}

/* Empties only the lists the bitmaps mark: a handful, where resetting every head would
 * write kilobytes (736 heads at sl=5 over 1 GiB) on each reset. */
static void tlsf_reset(void *st) {
  struct tlsf *t = st;
  for (uint64_t fm = t->fl_bitmap | 1; fm; fm &= fm - 1) {
    unsigned fl = (unsigned)__builtin_ctzll(fm);
    for (uint64_t sm = t->sl_bitmap[fl]; sm; sm &= sm - 1)
      t->heads[(fl << t->sli) | (unsigned)__builtin_ctzll(sm)] = &t->sink;
    t->sl_bitmap[fl] = 0;
  }
  t->fl_bitmap = 0;
  t->top = t->heap;
  t->given = t->window - t->left;                        /* no live blocks */
  t->top_returns = t->top_grows + t->splits - t->merges; /* no blocks */
}

/* The windows count the frees, so a free needs no counter of its own. */
static size_t live(const struct tlsf *t) {
  return t->given - (t->window - t->left);
}

static void tlsf_stats(void *st, struct alloc_stats *ret) {
  struct tlsf *t = st;
  *ret = (struct alloc_stats){
      .footprint = (size_t)(t->top - t->base),
      .meta_bytes = (size_t)(t->heap - t->base) + HDR * live(t),
      .n_counters = 3,
      .counter = {{"free_blocks", t->top_grows + t->splits - t->merges - t->top_returns - live(t)},
                  {"top_grows", t->top_grows},
                  {"blended_windows", t->blended}},
  };
}

static void tlsf_destroy(void *st) {
  (void)st;
}

static const struct alloc_param tlsf_params[] = {
    {"sl", "6", "log2 of the second-level lists per power of two (0 to 6)"},
    {NULL, NULL, NULL},
};

static const char *const tlsf_variants[] = {"sl=0", "sl=3", "sl=5", NULL};

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
