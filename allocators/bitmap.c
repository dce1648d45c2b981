/*
 * bitmap: a bitmapped-fits allocator (Wilson, Johnstone, Neely & Boles, "Dynamic Storage
 * Allocation: A Survey and Critical Review", IWMM 1995, §3.6 "bitmapped fits"), with a
 * summary tree over the bitmap in the manner of the Linux per-cpu allocator's block
 * metadata (mm/percpu.c: left, right and largest free run per bitmap block).
 *
 * The heap is an array of blocks of `block` bytes (a power of two from 8 to 4096). Two
 * bitmaps describe it, one bit per block: `used` (the block belongs to a live run) and
 * `ends` (the block is the last of its run). The end bit makes free, realloc and
 * usable_size exact without a header and without trusting the size the caller passes: a
 * run ends at the first end bit at or after its start (ctz, 64 blocks at a time).
 *
 * Search. First fit first tries the first free run at or after a hint below which every
 * block is in use: when it is long enough it is the first fit, found with two word scans.
 * Otherwise a tree answers: the used bitmap is cut into groups of 512 blocks (8 words, one
 * cache line), the leaves of a binary tree whose nodes hold the free blocks at the start
 * and at the end of their span and its longest free run. First fit walks it in address
 * order, carrying the free run that reaches the current position, skips every subtree
 * whose longest run is too short, and in the group it enters finds the runs long enough
 * in each word by shift-and: the address-ordered first fit in O(log n) nodes. Best fit
 * (`fit=best`) also keeps, per node, a 64-bit set of the size classes of the free runs
 * inside its span (lengths 1 to 8, then two classes per power of two): it tries the
 * classes present from the request's own up, and in the first class holding a run that
 * fits it visits only the subtrees holding that class and takes the shortest run, lowest
 * address first (any run of an exact class, or of exactly n blocks, ends the search).
 * memalign is native: the tree walk only accepts a run from an aligned block on (best fit
 * with an alignment walks every subtree with a long enough run). The tree is brought up
 * to date lazily: an allocation or free only flips bits and marks its words dirty; the
 * next tree search first recomputes the dirty groups and their ancestors, stopping where a
 * summary comes out unchanged. When nothing below the break fits, the run goes at the
 * break, which grows like sbrk; freeing the last run moves the break back down to the last
 * block in use.
 *
 * Where the metadata lives: the bitmaps, the tree and its bookkeeping share one run of
 * blocks inside the heap, marked used like any other. They cover `cap` blocks; when the
 * break must pass `cap`, a new set covering 1.5 times as much goes into the lowest free
 * hole that holds it (or at the break), the bitmaps are copied, the tree rebuilt and the
 * old run freed for reuse. When the break comes down to the metadata run, it moves into a
 * lower hole if one holds it (with its capacity cut to 1.5 times the heap below it when it
 * was more than three times too big), so it does not pin the break. Footprint is thus a true break
 * that grows with the heap; meta_bytes counts the run: about 2.5 bits per block of capacity for
 * first fit (2 in the bitmaps), 2.8 for best fit, plus the growth slack.
 *
 * Cost: free O(run / 64) plus the break's move; first-fit malloc O(1) when the first free
 * run fits, else O(log n) nodes, a group scan and the refresh of the groups changed since
 * the last search; best fit O(log n) when an exact-class run exists, else a walk over the
 * subtrees holding runs of the first class that fits; realloc in place when shrinking or
 * when the blocks after the run are free. Counters: `nodes` (tree nodes the searches
 * visited), `scanned` (bits of groups scanned word by word), `map_moves` (metadata
 * relocations), `grown_in_place` (reallocs grown without copying).
 * Weaknesses: internal fragmentation up to block - 1 bytes per run; a search costs far more
 * than a segregated-list pop (hundreds of instructions when the hint misses); best fit for
 * large requests may visit many runs of one class; a block of 8 bytes gains nothing over
 * 16 since every run must start 16-byte aligned; at most 2^30 blocks of the region are used.
 */
#include "alloc.h"

#include <stdio.h>
#include <string.h>

#define WORD_BITS 64
#define GROUP_WORDS 8
#define GROUP_BITS (GROUP_WORDS * WORD_BITS)
#define INITIAL_CAP GROUP_BITS       /* blocks the first metadata run covers */
#define MAX_BLOCKS ((size_t)1 << 30) /* tree counts fit in 32 bits */

enum fit { FIT_FIRST, FIT_BEST };

/* A tree node: free blocks at the start and end of its span, and its longest free run. */
struct sum {
  uint32_t pre, suf, max;
};

struct bitmap {
  char *base;       /* region start: this instance */
  char *heap;       /* block 0 */
  uint64_t *used;   /* [cap / 64]: block belongs to a live run (or to the metadata) */
  uint64_t *ends;   /* [cap / 64]: block is the last of its run */
  uint64_t *stale;  /* [leaves / 64, at least 1]: group's tree leaf is out of date */
  uint64_t *cls;    /* [2 * leaves], best fit only: size classes of the runs inside a span */
  struct sum *tree; /* [2 * leaves]: root at 1, group g at leaves + g */
  uint8_t *longest; /* [cap / 64]: longest free run in each word (up to date unless dirty) */
  uint8_t *dirty;   /* [leaves]: words of each group changed since the tree saw them */
  size_t leaves;    /* a power of two >= cap / GROUP_BITS */
  size_t stale_lo, stale_hi; /* range of stale groups; both SIZE_MAX when none */
  size_t top;                /* the break, in blocks: one past the last block in use */
  size_t cap;                /* blocks the bitmaps cover, a multiple of GROUP_BITS */
  size_t max;                /* blocks that fit in the region */
  size_t low;                /* no block below this one is free: where first fit looks first */
  size_t map_at;             /* first block of the metadata run */
  size_t map_runs;           /* its length in blocks */
  size_t base_ab;            /* blocks per ALLOC_MIN_ALIGN (2 when block is 8, else 1) */
  size_t sink_credit;        /* blocks freed below the metadata since it last failed to move down */
  unsigned shift;            /* log2(block) */
  int fit;
  int probe_score; /* > 0 while walking several runs pays off, < 0 while it does not */
  uint64_t nodes, scanned, map_moves, grown_in_place;
};

/* Where a run may start: block indices a with heap + a * block on the alignment. */
struct align {
  size_t ab; /* alignment in blocks, a power of two */
  size_t h;  /* (heap / block) mod ab: a is aligned when (a + h) % ab == 0 */
};

/* One tree search: runs are offered in address order. */
struct search {
  size_t n; /* blocks wanted */
  struct align al;
  int best;
  int done;
  size_t top;   /* runs must start below the break */
  size_t carry; /* free blocks that end at the current position */
  size_t found, found_len;
};

static const struct alloc_param bitmap_params[] = {
    {"block", "16", "bytes per bitmap bit: a power of two from 8 to 4096"},
    {"fit", "first", "placement policy: first (lowest address) or best (smallest run)"},
    {0},
};

static const char *const bitmap_variants[] = {"fit=best", "block=8", "block=256",
                                              "block=4096,fit=best", NULL};

static size_t align_index(size_t i, struct align al) {
  return ((i + al.h + al.ab - 1) & ~(al.ab - 1)) - al.h;
}

static size_t bit_word(size_t i) {
  return i / WORD_BITS;
}

static uint64_t bit_mask(size_t i) {
  return (uint64_t)1 << (i % WORD_BITS);
}

static unsigned ctz(uint64_t x) {
  return (unsigned)__builtin_ctzll(x);
}

static unsigned clz(uint64_t x) {
  return (unsigned)__builtin_clzll(x);
}

/* First block at or after i whose used bit is clear, or top when all up to top are set
 * (the bits from top on are always clear). */
static size_t next_clear(const struct bitmap *b, size_t i) {
  size_t top = b->top;
  if (i >= top)
    return top;
  size_t k = bit_word(i), kend = bit_word(top + WORD_BITS - 1);
  uint64_t w = ~b->used[k] & (~(uint64_t)0 << (i % WORD_BITS));
  while (!w) {
    if (++k >= kend)
      return top;
    w = ~b->used[k];
  }
  size_t r = k * WORD_BITS + ctz(w);
  return r < top ? r : top;
}

/* First block in [i, lim) whose bit is set in map m, or lim; lim <= cap. */
static size_t next_set(const uint64_t *m, size_t i, size_t lim) {
  if (i >= lim)
    return lim;
  size_t k = bit_word(i), kend = bit_word(lim + WORD_BITS - 1);
  uint64_t w = m[k] & (~(uint64_t)0 << (i % WORD_BITS));
  while (!w) {
    if (++k >= kend)
      return lim;
    w = m[k];
  }
  size_t r = k * WORD_BITS + ctz(w);
  return r < lim ? r : lim;
}

/* One past the last block below i whose used bit is set, or 0. */
static size_t prev_set_end(const struct bitmap *b, size_t i) {
  if (i == 0)
    return 0;
  size_t k = bit_word(i - 1);
  unsigned r = (unsigned)((i - 1) % WORD_BITS);
  uint64_t w = b->used[k] & (~(uint64_t)0 >> (WORD_BITS - 1 - r));
  while (!w) {
    if (k == 0)
      return 0;
    w = b->used[--k];
  }
  return k * WORD_BITS + (WORD_BITS - clz(w));
}

/* Sets bits [i, i + n) of m; n > 0. */
static void set_range(uint64_t *m, size_t i, size_t n) {
  size_t k = bit_word(i), last = i + n - 1, ke = bit_word(last);
  uint64_t head = ~(uint64_t)0 << (i % WORD_BITS);
  uint64_t tail = ~(uint64_t)0 >> (WORD_BITS - 1 - last % WORD_BITS);
  if (k == ke) {
    m[k] |= head & tail;
    return;
  }
  m[k] |= head;
  while (++k < ke)
    m[k] = ~(uint64_t)0;
  m[ke] |= tail;
}

/* Clears bits [i, i + n) of m; n > 0. */
static void clear_range(uint64_t *m, size_t i, size_t n) {
  size_t k = bit_word(i), last = i + n - 1, ke = bit_word(last);
  uint64_t head = ~(uint64_t)0 << (i % WORD_BITS);
  uint64_t tail = ~(uint64_t)0 >> (WORD_BITS - 1 - last % WORD_BITS);
  if (k == ke) {
    m[k] &= ~(head & tail);
    return;
  }
  m[k] &= ~head;
  while (++k < ke)
    m[k] = 0;
  m[ke] &= ~tail;
}

/* Keeps c in cur and adds step to r when c is not empty (a branch-free select). */
static void lift(uint64_t c, uint64_t *cur, uint32_t *r, uint32_t step) {
  uint64_t m = (uint64_t)0 - (uint64_t)(c != 0);
  *cur = (c & m) | (*cur & ~m);
  *r += step & (uint32_t)m;
}

/* Longest run of clear bits in x, x != 0, by binary lifting: bit j of f_k is set when
 * bits j .. j+k-1 of x are all clear, and f_(r+s) = f_r & (f_s >> r). */
static uint32_t longest_clear(uint64_t x) {
  uint64_t f1 = ~x, f2 = f1 & (f1 >> 1), f4 = f2 & (f2 >> 2), f8 = f4 & (f4 >> 4);
  uint64_t f16 = f8 & (f8 >> 8), f32 = f16 & (f16 >> 16);
  uint64_t cur = ~(uint64_t)0;
  uint32_t r = 0;
  lift(f32, &cur, &r, 32);
  lift(cur & (f16 >> r), &cur, &r, 16);
  lift(cur & (f8 >> r), &cur, &r, 8);
  lift(cur & (f4 >> r), &cur, &r, 4);
  lift(cur & (f2 >> r), &cur, &r, 2);
  lift(cur & (f1 >> r), &cur, &r, 1);
  return r;
}

static uint8_t word_longest(uint64_t x) {
  if (!x)
    return WORD_BITS;
  return x == ~(uint64_t)0 ? 0 : (uint8_t)longest_clear(x);
}

/* Group g's summary from its words and their longest free runs. */
static struct sum group_sum(const struct bitmap *b, size_t g) {
  const uint64_t *w = b->used + g * GROUP_WORDS;
  const uint8_t *lw = b->longest + g * GROUP_WORDS;
  uint32_t pre = 0, max = 0, run = 0;
  int seen = 0; /* a used bit so far */
  for (int k = 0; k < GROUP_WORDS; k++) {
    uint64_t x = w[k];
    if (!x) {
      run += WORD_BITS;
      continue;
    }
    run += ctz(x);
    if (!seen) {
      pre = run;
      seen = 1;
    }
    if (run > max)
      max = run;
    if (lw[k] > max)
      max = lw[k];
    run = clz(x);
  }
  if (!seen)
    return (struct sum){GROUP_BITS, GROUP_BITS, GROUP_BITS};
  if (run > max)
    max = run;
  return (struct sum){pre, run, max};
}

/* Size class of a free run for best fit: lengths 1 to 8 each have their own class, then
 * two classes per power of two (9-12, 13-16, 17-24, 25-32, ...; 62 classes up to 2^30). */
#define EXACT_CLASSES 8

static unsigned run_class(size_t len) {
  if (len <= EXACT_CLASSES)
    return (unsigned)len - 1;
  unsigned j = WORD_BITS - 1 - clz(len - 1); /* len - 1 in [2^j, 2^(j+1)), j >= 3 */
  return EXACT_CLASSES + 2 * (j - 3) + (unsigned)((len - 1) >> (j - 1) & 1);
}

static uint64_t class_bit(size_t len) {
  return (uint64_t)1 << run_class(len);
}

/* Classes of the free runs inside group g, between two of its used blocks. */
static uint64_t group_classes(const struct bitmap *b, size_t g) {
  const uint64_t *w = b->used + g * GROUP_WORDS;
  uint64_t mask = 0;
  size_t run = 0;
  int seen = 0; /* a used block so far: the run before the next one is inside the group */
  for (int k = 0; k < GROUP_WORDS; k++) {
    uint64_t x = w[k];
    if (!x) {
      run += WORD_BITS;
      continue;
    }
    run += ctz(x);
    if (seen && run)
      mask |= class_bit(run);
    seen = 1;
    if (x != ~(uint64_t)0) {
      uint64_t y = x >> ctz(x);
      for (;;) {
        y >>= ctz(~y); /* past used blocks; the top bits are clear, so ~y != 0 */
        if (!y)
          break; /* what is left is the word's free tail */
        unsigned z = ctz(y);
        mask |= class_bit(z);
        y >>= z;
      }
    }
    run = clz(x);
  }
  return mask;
}

/* The summary of two adjacent spans of len blocks each. */
static struct sum join(struct sum l, struct sum r, uint32_t len) {
  struct sum s;
  s.pre = l.pre == len ? len + r.pre : l.pre;
  s.suf = r.suf == len ? len + l.suf : r.suf;
  s.max = l.max > r.max ? l.max : r.max;
  if (l.suf + r.pre > s.max)
    s.max = l.suf + r.pre;
  return s;
}

static int same(struct sum a, struct sum b) {
  return a.pre == b.pre && a.suf == b.suf && a.max == b.max;
}

/* Classes inside two adjacent spans of len blocks: theirs, and the run across the seam when
 * it is bounded on both sides inside them. */
static uint64_t join_classes(uint64_t lc, uint64_t rc, struct sum l, struct sum r, uint32_t len) {
  uint64_t mask = lc | rc;
  if (l.suf < len && r.pre < len && l.suf + r.pre > 0)
    mask |= class_bit(l.suf + r.pre);
  return mask;
}

/* Marks the words holding blocks [i, i + n) as changed since the tree last saw them. */
static void touch(struct bitmap *b, size_t i, size_t n) {
  for (size_t k = bit_word(i), ke = bit_word(i + n - 1); k <= ke; k++) {
    size_t g = k / GROUP_WORDS;
    b->dirty[g] |= (uint8_t)(1u << (k % GROUP_WORDS));
    b->stale[g / WORD_BITS] |= bit_mask(g);
  }
  size_t g0 = i / GROUP_BITS, g1 = (i + n - 1) / GROUP_BITS;
  if (g0 < b->stale_lo)
    b->stale_lo = g0;
  if (g1 > b->stale_hi || b->stale_hi == SIZE_MAX)
    b->stale_hi = g1;
}

/* Recomputes group g's leaf, then its ancestors until one comes out unchanged. */
static void refresh_group(struct bitmap *b, size_t g) {
  size_t k = b->leaves + g;
  struct sum s = group_sum(b, g);
  uint32_t len = GROUP_BITS;
  if (b->cls) {
    uint64_t c = group_classes(b, g);
    while (!same(s, b->tree[k]) || c != b->cls[k]) {
      b->tree[k] = s;
      b->cls[k] = c;
      if (k == 1)
        return;
      k /= 2;
      s = join(b->tree[2 * k], b->tree[2 * k + 1], len);
      c = join_classes(b->cls[2 * k], b->cls[2 * k + 1], b->tree[2 * k], b->tree[2 * k + 1], len);
      len *= 2;
    }
    return;
  }
  while (!same(s, b->tree[k])) {
    b->tree[k] = s;
    if (k == 1)
      return;
    k /= 2;
    s = join(b->tree[2 * k], b->tree[2 * k + 1], len);
    len *= 2;
  }
}

/* Brings the tree up to date with the bitmap. */
static void refresh(struct bitmap *b) {
  if (b->stale_hi == SIZE_MAX)
    return;
  for (size_t j = b->stale_lo / WORD_BITS; j <= b->stale_hi / WORD_BITS; j++) {
    uint64_t m = b->stale[j];
    b->stale[j] = 0;
    while (m) {
      size_t g = j * WORD_BITS + ctz(m);
      m &= m - 1;
      for (unsigned d = b->dirty[g]; d; d &= d - 1) {
        size_t w = g * GROUP_WORDS + ctz(d);
        b->longest[w] = word_longest(b->used[w]);
      }
      b->dirty[g] = 0;
      refresh_group(b, g);
    }
  }
  b->stale_lo = SIZE_MAX;
  b->stale_hi = SIZE_MAX;
}

/* Recomputes the whole tree from the bitmap and longest[] (nothing is dirty afterwards). */
static void rebuild_tree(struct bitmap *b) {
  size_t groups = b->cap / GROUP_BITS;
  for (size_t g = 0; g < b->leaves; g++) {
    b->tree[b->leaves + g] = g < groups ? group_sum(b, g) : (struct sum){0, 0, 0};
    if (b->cls)
      b->cls[b->leaves + g] = g < groups ? group_classes(b, g) : 0;
  }
  uint32_t len = GROUP_BITS;
  for (size_t lo = b->leaves / 2; lo >= 1; lo /= 2, len *= 2) {
    for (size_t k = lo; k < 2 * lo; k++) {
      b->tree[k] = join(b->tree[2 * k], b->tree[2 * k + 1], len);
      if (b->cls)
        b->cls[k] =
            join_classes(b->cls[2 * k], b->cls[2 * k + 1], b->tree[2 * k], b->tree[2 * k + 1], len);
    }
  }
  memset(b->dirty, 0, b->leaves);
  memset(b->stale, 0, (b->leaves + WORD_BITS - 1) / WORD_BITS * sizeof *b->stale);
  b->stale_lo = SIZE_MAX;
  b->stale_hi = SIZE_MAX;
}

/* A free run [start, start + len) ended by a used block: take it if it fits. */
static void offer(struct search *s, size_t start, size_t len) {
  if (start >= s->top)
    return;
  size_t a = align_index(start, s->al), end = start + len;
  if (a >= end || end - a < s->n)
    return;
  size_t have = end - a;
  if (!s->best) {
    s->found = a;
    s->done = 1;
  } else if (have < s->found_len) {
    s->found = a;
    s->found_len = have;
    s->done = have == s->n;
  }
}

/* Bit j is set when the n blocks from j on are free and end inside word x (1 <= n <= 64):
 * f_n by binary lifting over the bits of n, f_(a+b) = f_a & (f_b >> a). */
static uint64_t run_starts(uint64_t x, unsigned n) {
  uint64_t acc = ~(uint64_t)0, f = ~x;
  unsigned have = 0, flen = 1;
  for (;;) {
    if (n & 1) {
      acc &= f >> have;
      have += flen;
    }
    n >>= 1;
    if (!n)
      return acc;
    f &= f >> flen;
    flen *= 2;
  }
}

/* Offers the runs that end inside group g: the run coming in from the left and any run of
 * n or more blocks between two used blocks of one word (found without walking the short
 * ones). The free blocks at the end of each word go on in the carry. */
static void scan_group(struct bitmap *b, struct search *s, size_t g) {
  const uint64_t *w = b->used + g * GROUP_WORDS;
  size_t pos = g * GROUP_BITS;
  b->scanned += GROUP_BITS;
  for (int k = 0; k < GROUP_WORDS; k++, pos += WORD_BITS) {
    uint64_t x = w[k];
    if (!x) {
      s->carry += WORD_BITS;
      continue;
    }
    unsigned lo = ctz(x), hi = WORD_BITS - 1 - clz(x);
    if (s->carry + lo >= s->n) {
      offer(s, pos - s->carry, s->carry + lo);
      if (s->done)
        return;
    }
    s->carry = clz(x);
    if (s->n > WORD_BITS - 2 || lo == hi)
      continue;
    /* Starts of long enough runs strictly between the first and last used bits. */
    uint64_t starts =
        run_starts(x, (unsigned)s->n) & (~(uint64_t)0 << lo) & (((uint64_t)1 << hi) - 1);
    while (starts) {
      unsigned at = ctz(starts), len = ctz(x >> at);
      offer(s, pos + at, len);
      if (s->done)
        return;
      starts &= ~(uint64_t)0 << (at + len); /* at + len <= hi < 64 */
    }
  }
}

/* Walks the tree from node 1 in address order: a node whose span is all free only adds to
 * the carry; a node without a long enough run inside can only end the carried run; other
 * nodes are entered (a group is scanned word by word). */
static void walk(struct bitmap *b, struct search *s) {
  size_t k = 1, pos = 0, len = b->leaves * GROUP_BITS;
  uint64_t visited = 0;
  while (!s->done && pos < s->top) {
    struct sum x = b->tree[k];
    visited++;
    if (x.max == len) {
      s->carry += len;
    } else if (x.max < s->n) {
      /* Only the run coming in from the left can fit, ended by this span's first used block. */
      if (s->carry + x.pre >= s->n)
        offer(s, pos - s->carry, s->carry + x.pre);
      s->carry = x.suf;
    } else if (k < b->leaves) {
      k *= 2; /* enter: left child first */
      len /= 2;
      continue;
    } else {
      scan_group(b, s, k - b->leaves);
    }
    /* Done with node k: go to the next span in address order (up past right children). */
    pos += len;
    while (k & 1) {
      k /= 2;
      len *= 2;
    }
    if (k == 0)
      break;
    k++;
  }
  b->nodes += visited;
}

/* A run of the class being searched: keep the shortest that holds s->n blocks (a run of
 * an exact class, or of exactly n blocks, is as short as can be: the first ends the search). */
static void consider(struct search *s, size_t start, size_t len, unsigned c) {
  if (start >= s->top || len < s->n || len >= s->found_len)
    return;
  s->found = start;
  s->found_len = len;
  s->done = c < EXACT_CLASSES || len == s->n; /* nothing shorter can hold n */
}

/* The runs of class c inside group g, in address order. */
static void scan_class(struct bitmap *b, struct search *s, size_t g, unsigned c) {
  const uint64_t *w = b->used + g * GROUP_WORDS;
  size_t pos = g * GROUP_BITS, run = 0;
  int seen = 0; /* a used block so far: the run before the next one is inside the group */
  b->scanned += GROUP_BITS;
  for (int k = 0; k < GROUP_WORDS && !s->done; k++, pos += WORD_BITS) {
    uint64_t x = w[k];
    if (!x) {
      run += WORD_BITS;
      continue;
    }
    unsigned at = ctz(x);
    run += at;
    if (seen && run && run_class(run) == c)
      consider(s, pos + at - run, run, c);
    seen = 1;
    uint64_t y = x >> at;
    while (x != ~(uint64_t)0 && !s->done) {
      unsigned o = ctz(~y); /* past used blocks; the top bits are clear, so ~y != 0 */
      y >>= o;
      at += o;
      if (!y)
        break; /* what is left is the word's free tail */
      unsigned z = ctz(y);
      if (run_class(z) == c)
        consider(s, pos + at, z, c);
      y >>= z;
      at += z;
    }
    run = clz(x);
  }
}

/* Visits the nodes under k whose spans hold a run of class c, in address order; a run
 * across the seam of two children comes between them. */
static void walk_class(struct bitmap *b, struct search *s, size_t k, size_t pos, size_t len,
                       unsigned c) {
  if (s->done || pos >= s->top || !(b->cls[k] >> c & 1) || b->tree[k].max < s->n)
    return;
  b->nodes++;
  if (k >= b->leaves) {
    scan_class(b, s, k - b->leaves, c);
    return;
  }
  size_t half = len / 2;
  walk_class(b, s, 2 * k, pos, half, c);
  struct sum l = b->tree[2 * k], r = b->tree[2 * k + 1];
  if (l.suf < half && r.pre < half && l.suf + r.pre > 0 && run_class(l.suf + r.pre) == c)
    consider(s, pos + half - l.suf, l.suf + r.pre, c);
  walk_class(b, s, 2 * k + 1, pos + half, half, c);
}

/* Best fit without walking every long enough run: the classes present (from the root's
 * mask) are tried from the request's own up; within the first that holds a fitting run,
 * the shortest such run wins. Runs touching the start of the heap are not inside any span:
 * the root's leading run is considered on its own. */
static size_t best_by_class(struct bitmap *b, size_t n) {
  size_t len = b->leaves * GROUP_BITS;
  struct sum root = b->tree[1];
  uint64_t classes = b->cls[1];
  if (root.pre && root.pre < len)
    classes |= class_bit(root.pre);
  classes &= ~(uint64_t)0 << run_class(n);
  for (; classes; classes &= classes - 1) {
    unsigned c = ctz(classes);
    struct search s = {.n = n, .top = b->top, .found = SIZE_MAX, .found_len = SIZE_MAX};
    if (root.pre && root.pre < len && run_class(root.pre) == c)
      consider(&s, 0, root.pre, c);
    walk_class(b, &s, 1, 0, len, c);
    if (s.found != SIZE_MAX)
      return s.found;
  }
  return SIZE_MAX;
}

/* The run the policy picks below the break for n aligned blocks, or SIZE_MAX. */
static size_t find_run(struct bitmap *b, size_t n, struct align al, int best) {
  refresh(b);
  if (b->tree[1].max < n)
    return SIZE_MAX;
  if (best && al.ab == b->base_ab)
    return best_by_class(b, n);
  struct search s = {
      .n = n, .al = al, .best = best, .top = b->top, .found = SIZE_MAX, .found_len = SIZE_MAX};
  walk(b, &s);
  return s.found;
}

static size_t leaves_for(size_t cap) {
  size_t leaves = 1;
  while (leaves * GROUP_BITS < cap)
    leaves *= 2;
  return leaves;
}

/* The metadata run for cap blocks: used and ends bitmaps, stale bits, run classes (best
 * fit), tree, longest runs, dirty words, in this order (widest alignment first). */
static size_t map_blocks(const struct bitmap *b, size_t cap) {
  size_t words = cap / WORD_BITS, leaves = leaves_for(cap);
  size_t bytes = words * (2 * sizeof(uint64_t) + 1) +
                 (leaves + WORD_BITS - 1) / WORD_BITS * sizeof(uint64_t) +
                 2 * leaves * sizeof(struct sum) + leaves;
  if (b->fit == FIT_BEST)
    bytes += 2 * leaves * sizeof(uint64_t);
  size_t runs = (bytes + ((size_t)1 << b->shift) - 1) >> b->shift;
  return alloc_align_up(runs, b->base_ab); /* every run keeps the 16-byte grain */
}

/* Points the metadata arrays into a run at block `at` laid out for cap blocks. */
static void place_map(struct bitmap *b, size_t at, size_t cap) {
  size_t words = cap / WORD_BITS;
  b->cap = cap;
  b->leaves = leaves_for(cap);
  b->map_at = at;
  b->map_runs = map_blocks(b, cap);
  b->used = (uint64_t *)(b->heap + (at << b->shift));
  b->ends = b->used + words;
  b->stale = b->ends + words;
  b->cls = b->stale + (b->leaves + WORD_BITS - 1) / WORD_BITS;
  b->tree = (struct sum *)(b->cls + (b->fit == FIT_BEST ? 2 * b->leaves : 0));
  if (b->fit != FIT_BEST)
    b->cls = NULL;
  b->longest = (uint8_t *)(b->tree + 2 * b->leaves);
  b->dirty = b->longest + words;
}

static void mark_run(struct bitmap *b, size_t a, size_t n) {
  set_range(b->used, a, n);
  b->ends[bit_word(a + n - 1)] |= bit_mask(a + n - 1);
  if (a + n > b->top)
    b->top = a + n;
  touch(b, a, n);
}

/* Moves the metadata to a run at block `at` covering cap blocks; the new run lies in a
 * free hole or above the break, so it does not overlap the old one. */
static void move_map(struct bitmap *b, size_t at, size_t cap) {
  refresh(b); /* so that every longest[] is right and can be copied */
  size_t old_at = b->map_at, old_mb = b->map_runs;
  int was_last = old_at + old_mb == b->top;
  /* Free the old run in the old bitmaps first: a smaller cap may not reach it. */
  clear_range(b->used, old_at, old_mb);
  b->ends[bit_word(old_at + old_mb - 1)] &= ~bit_mask(old_at + old_mb - 1);
  uint64_t *old_used = b->used, *old_ends = b->ends;
  uint8_t *old_longest = b->longest;
  size_t old_words = b->cap / WORD_BITS, words = cap / WORD_BITS;
  size_t keep = old_words < words ? old_words : words; /* a smaller cap covers every used block */
  place_map(b, at, cap);
  memcpy(b->used, old_used, keep * sizeof *b->used);
  memset(b->used + keep, 0, (words - keep) * sizeof *b->used);
  memcpy(b->ends, old_ends, keep * sizeof *b->ends);
  memset(b->ends + keep, 0, (words - keep) * sizeof *b->ends);
  memcpy(b->longest, old_longest, keep);
  memset(b->longest + keep, WORD_BITS, words - keep);
  set_range(b->used, at, b->map_runs);
  b->ends[bit_word(at + b->map_runs - 1)] |= bit_mask(at + b->map_runs - 1);
  /* longest[] was right before the move but for the two runs that changed. */
  for (size_t w = bit_word(at); w <= bit_word(at + b->map_runs - 1); w++)
    b->longest[w] = word_longest(b->used[w]);
  for (size_t w = bit_word(old_at); w <= bit_word(old_at + old_mb - 1) && w < words; w++)
    b->longest[w] = word_longest(b->used[w]);
  if (was_last)
    b->top = prev_set_end(b, old_at < cap ? old_at : cap);
  if (at + b->map_runs > b->top)
    b->top = at + b->map_runs;
  if (old_at < b->low)
    b->low = old_at;
  if (b->low > b->top)
    b->low = b->top;
  rebuild_tree(b);
  b->map_moves++;
}

/* Capacity for `need` blocks with room to grow, within the region (cap may pass max by less
 * than a group: those blocks are never handed out). */
static size_t cap_for(const struct bitmap *b, size_t need) {
  size_t cap = need + need / 2 + GROUP_BITS;
  if (cap > b->max)
    cap = b->max > need ? b->max : need;
  return alloc_align_up(cap, GROUP_BITS);
}

/* Makes the metadata cover at least need blocks (need > cap): a new run in the lowest hole
 * that holds it, or at `need` (the caller then fills [top, need) itself). */
static int grow_map(struct bitmap *b, size_t need) {
  size_t cap = cap_for(b, need), mb = map_blocks(b, cap);
  size_t at = find_run(b, mb, (struct align){1, 0}, 0);
  if (at == SIZE_MAX)
    at = need;
  if (mb > b->max - at || at + mb > cap)
    return -1;
  move_map(b, at, cap);
  return 0;
}

/* The break came down to the metadata run: move it into a lower hole if one holds it, with
 * its capacity cut to what the heap below it needs when it covers more than three times
 * that. */
static void sink_map(struct bitmap *b) {
  b->sink_credit = 0;
  size_t cap = cap_for(b, b->map_at);
  if (cap > b->cap / 3)
    cap = b->cap; /* cut the capacity only when it is far too big: no grow-shrink cycles */
  size_t at = find_run(b, map_blocks(b, cap), (struct align){1, 0}, 0);
  if (at < b->map_at)
    move_map(b, at, cap);
}

/* Frees run [i, e); moves the break down when the run was the last one. */
static void release(struct bitmap *b, size_t i, size_t e) {
  clear_range(b->used, i, e - i);
  b->ends[bit_word(e - 1)] &= ~bit_mask(e - 1);
  touch(b, i, e - i);
  if (i < b->low)
    b->low = i;
  if (e == b->top) {
    b->top = prev_set_end(b, i);
    if (b->low > b->top)
      b->low = b->top;
  }
  if (i < b->map_at)
    b->sink_credit += e - i;
  /* Searching for a hole costs O(log n): try once per map_runs / 8 blocks freed below. */
  if (b->top == b->map_at + b->map_runs && b->sink_credit >= b->map_runs / 8)
    sink_map(b);
}

/* A run of n blocks at the break (aligned), growing the metadata as needed. */
static size_t at_break(struct bitmap *b, size_t n, struct align al) {
  for (;;) {
    size_t a = align_index(b->top, al);
    if (a >= b->max || n > b->max - a)
      return SIZE_MAX;
    if (a + n <= b->cap)
      return a;
    if (grow_map(b, a + n))
      return SIZE_MAX;
  }
}

#define PROBE_RUNS 8 /* free runs first fit tries one by one before asking the tree */

/* First fit's shortcut: walks the free runs from the hint, in address order, and takes the
 * first that holds n blocks (that is the first fit). Returns SIZE_MAX when the walk gave
 * up (the tree must answer), or top when no run below the break can hold n. The walk goes
 * past the first run only while doing so has been finding fits more often than not. */
static size_t probe_runs(struct bitmap *b, size_t n) {
  size_t top = b->top, a = next_clear(b, b->low);
  int limit = b->probe_score >= 0 ? PROBE_RUNS : 1;
  b->low = a;
  for (int tries = 0; tries < limit; tries++) {
    if (a >= top || n > top - a)
      return top; /* runs from a on end before the break, which is in use */
    size_t j = next_set(b->used, a, a + n);
    if (j == a + n) {
      if (a == b->low)
        b->low = a + n;
      else if (b->probe_score < 4 * PROBE_RUNS)
        b->probe_score += 4; /* a fit found past the first run saves a tree search */
      return a;
    }
    a = next_clear(b, j + 1);
  }
  if (b->probe_score > -4 * PROBE_RUNS)
    b->probe_score--;
  return SIZE_MAX;
}

static void *alloc_blocks(struct bitmap *b, size_t n, struct align al) {
  size_t a = SIZE_MAX;
  if (b->fit == FIT_FIRST && al.ab == b->base_ab) {
    a = probe_runs(b, n);
    if (a == b->top)
      a = SIZE_MAX; /* straight to the break */
    else if (a == SIZE_MAX)
      a = find_run(b, n, al, 0);
  } else {
    a = find_run(b, n, al, b->fit == FIT_BEST);
  }
  if (a == SIZE_MAX) {
    a = at_break(b, n, al);
    if (a == SIZE_MAX)
      return NULL;
  }
  mark_run(b, a, n);
  return b->heap + (a << b->shift);
}

/* Blocks for size bytes (at least one, even when block is 8), or 0 when it cannot fit. */
static size_t blocks_for(const struct bitmap *b, size_t size) {
  if (size > (b->max << b->shift))
    return 0;
  size_t n = (size + ((size_t)1 << b->shift) - 1) >> b->shift;
  return alloc_align_up(n ? n : 1, b->base_ab); /* the next run must start aligned anyway */
}

static size_t index_of(const struct bitmap *b, const void *p) {
  return (size_t)((const char *)p - b->heap) >> b->shift;
}

static size_t run_end(const struct bitmap *b, size_t i) {
  return next_set(b->ends, i, b->top) + 1; /* one past the end bit */
}

/* Lays out an empty heap: the metadata run at block 0, covering INITIAL_CAP blocks. */
static void format(struct bitmap *b) {
  place_map(b, 0, INITIAL_CAP);
  memset(b->used, 0, b->cap / WORD_BITS * 2 * sizeof(uint64_t));
  set_range(b->used, 0, b->map_runs);
  b->ends[bit_word(b->map_runs - 1)] |= bit_mask(b->map_runs - 1);
  b->top = b->map_runs;
  b->low = b->top;
  b->sink_credit = 0;
  for (size_t w = 0; w < b->cap / WORD_BITS; w++)
    b->longest[w] = word_longest(b->used[w]);
  rebuild_tree(b);
}

static int bitmap_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                       char *err, size_t errlen) {
  static const char *const fits[] = {"first", "best", NULL};
  size_t block;
  int fit;
  if (alloc_arg_size(args, "block", &block, err, errlen) ||
      alloc_arg_choice(args, "fit", fits, &fit, err, errlen))
    return -1;
  if (!alloc_is_pow2(block) || block < 8 || block > 4096) {
    snprintf(err, errlen, "block must be a power of two from 8 to 4096");
    return -1;
  }
  struct bitmap *b = base;
  size_t lead = alloc_align_up(sizeof *b, 64);
  uintptr_t heap = alloc_align_up((uintptr_t)base + lead, block > 64 ? block : 64);
  if (size < heap - (uintptr_t)base) {
    snprintf(err, errlen, "region too small");
    return -1;
  }
  memset(b, 0, sizeof *b);
  b->base = base;
  b->heap = (char *)heap;
  b->shift = ctz(block);
  b->fit = fit;
  b->max = (size - (heap - (uintptr_t)base)) >> b->shift;
  if (b->max > MAX_BLOCKS)
    b->max = MAX_BLOCKS;
  b->base_ab = block < ALLOC_MIN_ALIGN ? ALLOC_MIN_ALIGN / block : 1;
  if (b->max <= map_blocks(b, INITIAL_CAP)) {
    snprintf(err, errlen, "region too small");
    return -1;
  }
  format(b);
  *ret_st = b;
  return 0;
}

static void *bitmap_malloc(void *st, size_t size) {
  struct bitmap *b = st;
  size_t n = blocks_for(b, size);
  if (!n)
    return NULL;
  return alloc_blocks(b, n, (struct align){b->base_ab, 0});
}

static void *bitmap_memalign(void *st, size_t alignment, size_t size) {
  struct bitmap *b = st;
  size_t n = blocks_for(b, size);
  if (!n)
    return NULL;
  struct align al = {b->base_ab, 0};
  if (alignment >> b->shift > al.ab) {
    al.ab = alignment >> b->shift;
    al.h = ((uintptr_t)b->heap >> b->shift) & (al.ab - 1);
  }
  return alloc_blocks(b, n, al);
}

static void bitmap_free(void *st, void *p, size_t size) {
  (void)size;
  struct bitmap *b = st;
  if (!p)
    return;
  size_t i = index_of(b, p);
  release(b, i, run_end(b, i));
}

/* Grows run [i, e) to n blocks in place when the blocks after it are free. */
static int grow_in_place(struct bitmap *b, size_t i, size_t e, size_t n) {
  if (n > b->max - i)
    return 0;
  size_t want = i + n;
  if (want > b->cap) {
    if (e != b->top)
      return 0; /* the block before the break is in use: the run cannot reach past it */
    if (grow_map(b, want))
      return 0;
  }
  size_t lim = want < b->top ? want : b->top;
  if (next_set(b->used, e, lim) != lim)
    return 0;
  b->ends[bit_word(e - 1)] &= ~bit_mask(e - 1);
  mark_run(b, e, want - e);
  b->grown_in_place++;
  return 1;
}

static void shrink(struct bitmap *b, size_t i, size_t e, size_t n) {
  b->ends[bit_word(e - 1)] &= ~bit_mask(e - 1);
  b->ends[bit_word(i + n - 1)] |= bit_mask(i + n - 1);
  clear_range(b->used, i + n, e - i - n);
  touch(b, i + n, e - i - n);
  if (i + n < b->low)
    b->low = i + n;
  if (e == b->top)
    b->top = i + n;
}

static void *bitmap_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct bitmap *b = st;
  size_t n = blocks_for(b, new_size);
  if (!n)
    return NULL;
  size_t i = index_of(b, p), e = run_end(b, i), have = e - i;
  if (n < have) {
    shrink(b, i, e, n);
    return p;
  }
  if (n == have || grow_in_place(b, i, e, n))
    return p;
  void *q = alloc_blocks(b, n, (struct align){b->base_ab, 0});
  if (!q)
    return NULL;
  size_t keep = have << b->shift;
  if (old_size < keep)
    keep = old_size;
  memcpy(q, p, keep < new_size ? keep : new_size);
  release(b, i, run_end(b, i));
  return q;
}

static size_t bitmap_usable_size(void *st, void *p, size_t size) {
  (void)size;
  struct bitmap *b = st;
  size_t i = index_of(b, p);
  return (run_end(b, i) - i) << b->shift;
}

static void bitmap_stats(void *st, struct alloc_stats *ret) {
  struct bitmap *b = st;
  *ret = (struct alloc_stats){
      .footprint = (size_t)(b->heap - b->base) + (b->top << b->shift),
      .meta_bytes = sizeof *b + (b->map_runs << b->shift),
      .n_counters = 4,
      .counter = {{"nodes", b->nodes},
                  {"scanned", b->scanned},
                  {"map_moves", b->map_moves},
                  {"grown_in_place", b->grown_in_place}},
  };
}

/* Everything goes at once: the heap is laid out afresh. */
static void bitmap_reset(void *st) {
  format(st);
}

static void bitmap_destroy(void *st) {
  (void)st;
}

const struct alloc_methods alloc_bitmap = {
    .name = "bitmap",
    .summary = "bitmapped fits: used and end bits per block, a summary tree, first or best fit",
    .params = bitmap_params,
    .variants = bitmap_variants,
    .init = bitmap_init,
    .malloc = bitmap_malloc,
    .free = bitmap_free,
    .realloc = bitmap_realloc,
    .memalign = bitmap_memalign,
    .reset = bitmap_reset,
    .usable_size = bitmap_usable_size,
    .stats = bitmap_stats,
    .destroy = bitmap_destroy,
};
