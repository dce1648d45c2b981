/*
 * page: a page-granular allocator, as an OS kernel or a large-object heap hands out memory.
 *
 * Every request gets a run of whole pages (`page` bytes, 4 KiB to 1 MiB, aligned to the page
 * size). A per-page map of boundary tags describes the runs: the first and the last page of
 * each run hold its length and a free bit, so free finds both neighbours in O(1) and
 * coalesces with them (interior tags are never written). Free runs are indexed in the map
 * too, never inside the free pages, so searching touches no free page:
 * - `fit=first` (address-ordered first fit): a bitmap of the pages where free runs start,
 *   and a 16-ary max tree above it: level 0 holds the longest free run starting in each
 *   group of 64 pages, each level above the maximum of 16 entries (one cache line) below.
 *   The lowest-addressed run of n pages is found by descending through the first entry
 *   >= n at each level, then along the group's bits; a change goes up only while a
 *   maximum changes.
 * - `fit=best`: runs of up to 64 pages sit in one FIFO list per exact length with a bitmap
 *   of non-empty lists, longer ones in a treap keyed by (length, address) (Aragon & Seidel,
 *   "Randomized Search Trees", FOCS 1989), as dlmalloc splits small bins from its trees:
 *   the shortest run that fits, ties going to the oldest free run (short) or the lowest
 *   address (long).
 * A run is carved from its low end. Pages above the top (the wilderness) are taken as sbrk
 * does, and a free run that reaches the top lowers it again.
 *
 * The instance and the first map sit in page 0 at the start of the region. The map grows
 * lazily with the top: when the top would pass its capacity, a map at least twice as big is
 * placed in a run of pages (by the fit policy, else at the top), the entries are copied and
 * the old run is freed; when frees leave the map as the highest run, it moves down (to page
 * 0 if it fits) so the top can fall. The map costs about 4.2 (first) or 12 (best) bytes per
 * page below the top, not per page of the region. With `madvise=1`, free (and a shrinking
 * realloc) hands the freed pages back to the kernel with MADV_DONTNEED.
 *
 * Cost: first fit O(log16(pages / 64)) per malloc and free, plus a walk over the free runs
 * starting in one group of 64 pages; best fit O(1) for runs up to 64 pages,
 * O(log r) expected for r longer free runs; plus one madvise system call per free with
 * madvise=1. realloc shrinks in place and grows in place when the next pages are free or are
 * the top, else malloc + copy + free. memalign up to the page size is malloc.
 * Weakness: every block costs at least one page, so small requests waste almost all of it
 * (internal fragmentation up to page - 1 bytes per block) and each touches its own page; the
 * madvise mode pays a system call per free and a page fault per reuse.
 * Reference: Wilson, Johnstone, Neely & Boles, "Dynamic Storage Allocation: A Survey and
 * Critical Review" (IWMM 1995), on first fit, best fit and the wilderness; Knuth TAOCP
 * vol. 1 §2.5 (boundary tags); Lea, "A Memory Allocator" (dlmalloc, 1996).
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* madvise */
#endif
#include "alloc.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define FREE_BIT 0x80000000u
#define LEN_MASK 0x7fffffffu
#define MIN_PAGE 4096u
#define MAX_PAGE (1u << 20)
#define MIN_MAP0 256 /* bytes the first map gets at least, besides the instance */
#define FAN 16       /* entries per max-tree node: 64 bytes, one cache line */
#define FAN_SHIFT 4
#define GROUP_SHIFT 6 /* first fit: 64 pages per word of the head bitmap */
#define MAX_LEVELS 8  /* 64 * 16^7 > 2^31 pages */
#define SMALL 64      /* best fit: runs up to this many pages go to exact-length lists */

enum fit { FIT_FIRST, FIT_BEST };

/* Best fit: at the first page of a free run, its list neighbours (short runs) or its
 * treap children (long runs). 0 means none: page 0 is the header, never a free run. */
struct link {
  uint32_t a, b;
};

/* The map of pages below cap; its arrays sit back to back in page 0 or in a run of pages. */
struct map {
  uint32_t *tag;   /* length | FREE_BIT at the first and last page of each run */
  uint64_t *heads; /* first fit: bit i % 64 of word i / 64 set when a free run starts at i */
  /* First fit, the max tree: level 0 holds the longest free run starting in each group of
   * 64 pages (one word of heads), level k + 1 the maximum of 16 entries of level k. */
  uint32_t *level[MAX_LEVELS];
  uint32_t width[MAX_LEVELS]; /* entries of each level, a multiple of FAN */
  unsigned levels;
  struct link *link; /* best fit */
  uint32_t cap;
};

struct page {
  char *base;       /* region start */
  uintptr_t origin; /* address of page 0; page i is at origin + i * page */
  size_t size;      /* region bytes */
  size_t limit;     /* bytes of all data pages: no request above it can succeed */
  struct map map;
  uintptr_t map0;     /* where the first map starts, in page 0 */
  uint32_t cap0;      /* pages the first map covers */
  uint32_t map_run;   /* first page of the run holding the map, 0 while it is the first */
  uint32_t map_pages; /* length of that run */
  uint32_t top;       /* first page of the wilderness */
  uint32_t total;     /* pages in the region, page 0 included */
  unsigned shift;     /* log2 of the page size */
  int fit, advise;
  uint32_t root;            /* best fit: treap of runs longer than SMALL pages */
  uint64_t binmap;          /* best fit: bit k set when list k (runs of k + 1 pages) is not empty */
  uint32_t bin_head[SMALL]; /* oldest run of each list, taken first */
  uint32_t bin_tail[SMALL]; /* newest */
  uint64_t obtained, released, coalesces, splits, map_moves, in_place;
};

static const struct alloc_param page_params[] = {
    {"page", "4096", "page size in bytes: a power of two from 4096 to 1M"},
    {"fit", "first", "placement among free runs: first (lowest address) or best (shortest)"},
    {"madvise", "0", "1: free returns the freed pages to the kernel with MADV_DONTNEED"},
    {0},
};

static const char *const page_variants[] = {"fit=best", "madvise=1", "page=65536",
                                            "page=16384,fit=best,madvise=1", NULL};

/* --- pages and tags --- */

static char *page_addr(const struct page *pg, uint32_t i) {
  return (char *)(pg->origin + ((uintptr_t)i << pg->shift));
}

static uint32_t page_index(const struct page *pg, const void *p) {
  return (uint32_t)(((uintptr_t)p - pg->origin) >> pg->shift);
}

static uint32_t run_len(const struct page *pg, uint32_t i) {
  return pg->map.tag[i] & LEN_MASK;
}

static int run_free(const struct page *pg, uint32_t i) {
  return (pg->map.tag[i] & FREE_BIT) != 0;
}

static void set_run(struct page *pg, uint32_t i, uint32_t len, uint32_t flag) {
  pg->map.tag[i] = len | flag;
  pg->map.tag[i + len - 1] = len | flag;
}

/* Pages for size bytes; the caller has checked size <= limit. */
static uint32_t pages_for(const struct page *pg, size_t size) {
  if (!size)
    return 1;
  return (uint32_t)((size + ((size_t)1 << pg->shift) - 1) >> pg->shift);
}

/* --- first fit: the max tree --- */

static uint32_t max16(const uint32_t *c) {
  uint32_t mx = 0;
  for (int j = 0; j < FAN; j++)
    mx = c[j] > mx ? c[j] : mx;
  return mx;
}

/* Marks a free run of v pages starting at page i, and raises the maxima above it up to the
 * first that is not below v. */
static void tree_add(struct page *pg, uint32_t i, uint32_t v) {
  struct map *m = &pg->map;
  uint32_t g = i >> GROUP_SHIFT;
  m->heads[g] |= (uint64_t)1 << (i & 63);
  for (unsigned k = 0; k < m->levels; k++, g >>= FAN_SHIFT) {
    if (m->level[k][g] >= v)
      return;
    m->level[k][g] = v;
  }
}

/* The longest free run starting in group g, stopping early at one of `old` pages. */
static uint32_t group_max(const struct page *pg, uint32_t g, uint32_t old) {
  uint32_t mx = 0;
  for (uint64_t w = pg->map.heads[g]; w; w &= w - 1) {
    uint32_t len = run_len(pg, g << GROUP_SHIFT | (uint32_t)__builtin_ctzll(w));
    if (len >= old)
      return len;
    mx = len > mx ? len : mx;
  }
  return mx;
}

/* Unmarks the free run of `old` pages at page i and lowers the maxima that were old and no
 * longer are; a node whose maximum is above old, or that keeps another run of old pages,
 * stops the walk. */
static void tree_remove(struct page *pg, uint32_t i, uint32_t old) {
  struct map *m = &pg->map;
  uint32_t g = i >> GROUP_SHIFT;
  m->heads[g] &= ~((uint64_t)1 << (i & 63));
  if (m->level[0][g] != old)
    return;
  uint32_t mx = group_max(pg, g, old);
  if (mx == old)
    return;
  m->level[0][g] = mx;
  for (unsigned k = 1; k < m->levels; k++) {
    uint32_t up = g >> FAN_SHIFT;
    if (m->level[k][up] != old)
      return;
    mx = max16(m->level[k - 1] + (g & ~(uint32_t)(FAN - 1)));
    if (mx == old)
      return;
    m->level[k][up] = mx;
    g = up;
  }
}

/* The lowest-addressed free run of at least n pages, or 0: down the levels through the
 * first of 16 entries >= n (a mask, not branches that mispredict), then along the group's
 * heads to the first run long enough. */
static uint32_t first_fit(const struct page *pg, uint32_t n) {
  const struct map *m = &pg->map;
  uint32_t g = 0;
  for (unsigned k = m->levels - 1;; k--) {
    const uint32_t *c = m->level[k] + g;
    uint32_t fits = 0;
    for (int j = 0; j < FAN; j++)
      fits |= (uint32_t)(c[j] >= n) << j;
    if (!fits)
      return 0; /* only at the top: each maximum below promises a fit */
    g += (uint32_t)__builtin_ctz(fits);
    if (k == 0)
      break;
    g <<= FAN_SHIFT;
  }
  for (uint64_t w = m->heads[g];; w &= w - 1) {
    uint32_t i = g << GROUP_SHIFT | (uint32_t)__builtin_ctzll(w);
    if (run_len(pg, i) >= n)
      return i;
  }
}

/* Rebuilds the levels from the head bitmap. */
static void rebuild(struct page *pg) {
  struct map *m = &pg->map;
  for (uint32_t g = 0; g < m->width[0]; g++)
    m->level[0][g] = group_max(pg, g, LEN_MASK);
  for (unsigned k = 1; k < m->levels; k++) {
    uint32_t nodes = m->width[k - 1] >> FAN_SHIFT;
    for (uint32_t g = 0; g < nodes; g++)
      m->level[k][g] = max16(m->level[k - 1] + ((size_t)g << FAN_SHIFT));
    memset(m->level[k] + nodes, 0, (m->width[k] - nodes) * sizeof(uint32_t));
  }
}

/* --- best fit: exact-length lists and a treap of long runs --- */

static void bin_push(struct page *pg, uint32_t i, uint32_t len) {
  struct link *l = pg->map.link;
  uint32_t b = len - 1, last = pg->bin_tail[b];
  l[i] = (struct link){.a = 0, .b = last};
  if (last)
    l[last].a = i;
  else
    pg->bin_head[b] = i;
  pg->bin_tail[b] = i;
  pg->binmap |= (uint64_t)1 << b;
}

static void bin_unlink(struct page *pg, uint32_t i, uint32_t len) {
  struct link *l = pg->map.link;
  uint32_t b = len - 1, next = l[i].a, prev = l[i].b;
  if (prev)
    l[prev].a = next;
  else
    pg->bin_head[b] = next;
  if (next)
    l[next].b = prev;
  else
    pg->bin_tail[b] = prev;
  if (!pg->bin_head[b])
    pg->binmap &= ~((uint64_t)1 << b);
}

/* A fixed random priority per page (murmur3's finaliser: a bijection, so no ties). */
static uint32_t prio(uint32_t i) {
  i ^= i >> 16;
  i *= 0x85ebca6bu;
  i ^= i >> 13;
  i *= 0xc2b2ae35u;
  i ^= i >> 16;
  return i;
}

static uint64_t key(const struct page *pg, uint32_t i) {
  return (uint64_t)run_len(pg, i) << 32 | i;
}

/* Splits t into the nodes with keys below k (*l) and the rest (*r). */
static void split(struct page *pg, uint32_t t, uint64_t k, uint32_t *l, uint32_t *r) {
  struct link *n = pg->map.link;
  if (!t) {
    *l = *r = 0;
  } else if (key(pg, t) < k) {
    *l = t;
    split(pg, n[t].b, k, &n[t].b, r);
  } else {
    *r = t;
    split(pg, n[t].a, k, l, &n[t].a);
  }
}

/* Joins a and b, every key of a below every key of b. */
static uint32_t merge(struct page *pg, uint32_t a, uint32_t b) {
  struct link *n = pg->map.link;
  if (!a || !b)
    return a | b;
  if (prio(a) > prio(b)) {
    n[a].b = merge(pg, n[a].b, b);
    return a;
  }
  n[b].a = merge(pg, a, n[b].a);
  return b;
}

static uint32_t insert(struct page *pg, uint32_t t, uint32_t x, uint64_t kx) {
  struct link *n = pg->map.link;
  if (!t || prio(x) > prio(t)) {
    split(pg, t, kx, &n[x].a, &n[x].b);
    return x;
  }
  if (kx < key(pg, t))
    n[t].a = insert(pg, n[t].a, x, kx);
  else
    n[t].b = insert(pg, n[t].b, x, kx);
  return t;
}

/* Removes the node with key k, which is in t. */
static uint32_t erase(struct page *pg, uint32_t t, uint64_t k) {
  struct link *n = pg->map.link;
  uint64_t kt = key(pg, t);
  if (kt == k)
    return merge(pg, n[t].a, n[t].b);
  if (k < kt)
    n[t].a = erase(pg, n[t].a, k);
  else
    n[t].b = erase(pg, n[t].b, k);
  return t;
}

/* The shortest free run of at least n pages, or 0. */
static uint32_t best_fit(const struct page *pg, uint32_t n) {
  if (n <= SMALL) {
    uint64_t bins = pg->binmap >> (n - 1);
    if (bins)
      return pg->bin_head[n - 1 + (uint32_t)__builtin_ctzll(bins)];
  }
  const struct link *l = pg->map.link;
  uint32_t best = 0;
  for (uint32_t t = pg->root; t;) {
    if (run_len(pg, t) >= n) {
      best = t;
      t = l[t].a;
    } else {
      t = l[t].b;
    }
  }
  return best;
}

/* --- free runs, either policy --- */

static uint32_t find_run(const struct page *pg, uint32_t n) {
  return pg->fit == FIT_FIRST ? first_fit(pg, n) : best_fit(pg, n);
}

static void add_free(struct page *pg, uint32_t i, uint32_t len) {
  set_run(pg, i, len, FREE_BIT);
  if (pg->fit == FIT_FIRST)
    tree_add(pg, i, len);
  else if (len <= SMALL) {
    bin_push(pg, i, len);
  } else {
    pg->root = insert(pg, pg->root, i, key(pg, i));
  }
}

static void remove_free(struct page *pg, uint32_t i) {
  uint32_t len = run_len(pg, i);
  if (pg->fit == FIT_FIRST)
    tree_remove(pg, i, len);
  else if (len <= SMALL)
    bin_unlink(pg, i, len);
  else
    pg->root = erase(pg, pg->root, key(pg, i));
}

/* Allocates [s, s + n) out of the free run r; what is left on either side stays free. */
static void carve(struct page *pg, uint32_t r, uint32_t s, uint32_t n) {
  uint32_t len = run_len(pg, r);
  remove_free(pg, r);
  if (s > r) {
    add_free(pg, r, s - r);
    pg->splits++;
  }
  if (s + n < r + len) {
    add_free(pg, s + n, r + len - s - n);
    pg->splits++;
  }
  set_run(pg, s, n, 0);
}

/* Returns [i, i + n) to the free runs, merging it with free neighbours and the top. */
static void free_run(struct page *pg, uint32_t i, uint32_t n) {
  uint32_t end = i + n;
  if (pg->map.tag[i - 1] & FREE_BIT) { /* tag i - 1 is the last page of the run below */
    uint32_t below = i - run_len(pg, i - 1);
    remove_free(pg, below);
    i = below;
    pg->coalesces++;
  }
  if (end == pg->top) {
    pg->top = i;
    return;
  }
  if (run_free(pg, end)) {
    uint32_t above = run_len(pg, end);
    remove_free(pg, end);
    end += above;
    pg->coalesces++;
  }
  add_free(pg, i, end - i);
}

static void release(struct page *pg, uint32_t i, uint32_t n) {
  if (madvise(page_addr(pg, i), (size_t)n << pg->shift, MADV_DONTNEED) == 0)
    pg->released += n;
}

/* --- the map's place and size --- */

/* Lays out a map for cap pages at address at; returns its bytes. */
static size_t map_layout(const struct page *pg, struct map *m, uintptr_t at, uint32_t cap) {
  uintptr_t p = at;
  *m = (struct map){.cap = cap, .tag = (uint32_t *)p};
  p += alloc_align_up((size_t)cap * sizeof(uint32_t), ALLOC_MIN_ALIGN);
  if (pg->fit == FIT_BEST) {
    m->link = (struct link *)p;
    return p + (size_t)cap * sizeof(struct link) - at;
  }
  uint32_t w = (uint32_t)alloc_align_up(((size_t)cap + 63) >> GROUP_SHIFT, FAN);
  m->heads = (uint64_t *)p;
  p += (size_t)w * sizeof(uint64_t);
  for (;;) {
    m->level[m->levels] = (uint32_t *)p;
    m->width[m->levels++] = w;
    p += (size_t)w * sizeof(uint32_t);
    if (w <= FAN)
      return p - at;
    w = (uint32_t)alloc_align_up(w >> FAN_SHIFT, FAN);
  }
}

static size_t map_bytes(const struct page *pg, uint32_t cap) {
  struct map m;
  return map_layout(pg, &m, 0, cap);
}

/* The most pages a map of `bytes` bytes covers (at most the region's). */
static uint32_t map_cap(const struct page *pg, size_t bytes) {
  size_t per = pg->fit == FIT_BEST ? 12 : 4, cap = bytes / per;
  if (cap > pg->total)
    cap = pg->total;
  while (cap && map_bytes(pg, (uint32_t)cap) > bytes) {
    size_t over = (map_bytes(pg, (uint32_t)cap) - bytes) / per + 1;
    cap = over < cap ? cap - over : 0;
  }
  return (uint32_t)cap;
}

static uint64_t map_run_pages(const struct page *pg, uint32_t cap) {
  return (map_bytes(pg, cap) + ((size_t)1 << pg->shift) - 1) >> pg->shift;
}

/* The pages a map filling a run of m pages covers; at least `cap`, which fits. */
static uint32_t fill_cap(const struct page *pg, uint64_t m, uint32_t cap) {
  uint32_t fill = map_cap(pg, (size_t)m << pg->shift);
  return fill > cap ? fill : cap;
}

/* Switches to a map at `at` (the run of `pages` pages at `run`, or page 0 when run is 0)
 * covering cap pages, copies the entries of the pages below `used` and frees the old run. */
static void place_map(struct page *pg, uintptr_t at, uint32_t cap, uint32_t run, uint32_t pages,
                      uint32_t used) {
  struct map old = pg->map, m;
  map_layout(pg, &m, at, cap);
  memcpy(m.tag, old.tag, (size_t)used * sizeof *m.tag);
  if (pg->fit == FIT_BEST) {
    memcpy(m.link, old.link, (size_t)used * sizeof *m.link);
  } else {
    size_t words = ((size_t)used + 63) >> GROUP_SHIFT; /* bits from used up are clear */
    memcpy(m.heads, old.heads, words * sizeof(uint64_t));
    memset(m.heads + words, 0, (m.width[0] - words) * sizeof(uint64_t));
  }
  uint32_t old_run = pg->map_run, old_pages = pg->map_pages;
  pg->map = m;
  if (pg->fit == FIT_FIRST)
    rebuild(pg);
  pg->map_run = run;
  pg->map_pages = pages;
  if (run)
    set_run(pg, run, pages, 0);
  pg->map_moves++;
  if (old_run) {
    if (pg->advise)
      release(pg, old_run, old_pages);
    free_run(pg, old_run, old_pages);
  }
}

/* Moves the map into a run of pages big enough that pages up to `need` (and the map's own
 * run, if it lands at the top) have entries; at least doubles it, so copies cost O(1) per
 * page amortised. The caller has checked need <= total. */
static int grow_map(struct page *pg, uint32_t need) {
  uint64_t cap = (uint64_t)pg->map.cap * 2, m;
  if (cap < need)
    cap = need;
  for (;;) {
    if (cap > pg->total)
      cap = pg->total;
    m = map_run_pages(pg, (uint32_t)cap);
    if (cap >= need + m || cap == pg->total)
      break;
    cap = need + m;
  }
  uint32_t used = pg->top, at = find_run(pg, (uint32_t)m);
  if (at) {
    carve(pg, at, at, (uint32_t)m);
  } else {
    if (m > pg->total - pg->top)
      return -1;
    at = pg->top;
    pg->top += (uint32_t)m;
  }
  cap = fill_cap(pg, m, (uint32_t)cap);
  place_map(pg, (uintptr_t)page_addr(pg, at), (uint32_t)cap, at, (uint32_t)m, used);
  return 0;
}

/* The map has become the highest run and pins the top: moves it down into page 0 or a free
 * run (room for twice the pages below it, else just enough), so that the top can fall
 * below it. Repeats while the moved map is again the highest run; each move goes lower. */
static void lower_map(struct page *pg) {
  while (pg->map_run && pg->map_run + pg->map_pages == pg->top) {
    uint32_t need = pg->map_run;
    if (need <= pg->cap0) {
      place_map(pg, pg->map0, pg->cap0, 0, 0, need);
      return;
    }
    uint32_t cap = (uint64_t)need * 2 < pg->total ? need * 2 : pg->total;
    uint64_t m = map_run_pages(pg, cap);
    uint32_t at = find_run(pg, (uint32_t)m);
    if (!at) {
      cap = need;
      m = map_run_pages(pg, cap);
      at = find_run(pg, (uint32_t)m);
    }
    if (!at)
      return;
    carve(pg, at, at, (uint32_t)m);
    cap = fill_cap(pg, m, cap);
    place_map(pg, (uintptr_t)page_addr(pg, at), cap, at, (uint32_t)m, need);
  }
}

/* Makes sure pages below `need` have map entries. */
static int reserve(struct page *pg, uint32_t need) {
  return need <= pg->map.cap ? 0 : grow_map(pg, need);
}

/* --- runs --- */

/* Takes n pages from the wilderness; returns the first, or 0. */
static uint32_t take_top(struct page *pg, uint32_t n) {
  if (n > pg->total - pg->top || reserve(pg, pg->top + n))
    return 0;
  if (n > pg->total - pg->top || pg->top + n > pg->map.cap)
    return 0; /* the map took the room */
  uint32_t i = pg->top;
  pg->top += n;
  set_run(pg, i, n, 0);
  return i;
}

static uint32_t alloc_run(struct page *pg, uint32_t n) {
  uint32_t r = find_run(pg, n);
  if (r) {
    carve(pg, r, r, n);
    return r;
  }
  return take_top(pg, n);
}

/* Frees a block's pages (or a shrinking block's tail): to the kernel too with madvise=1,
 * and lowers the map when it is left as the highest run. */
static void free_pages(struct page *pg, uint32_t i, uint32_t n) {
  if (pg->advise)
    release(pg, i, n);
  free_run(pg, i, n);
  if (pg->map_run && pg->map_run + pg->map_pages == pg->top)
    lower_map(pg);
}

/* Grows the run [i, i + len) to n pages without moving it. */
static int grow_in_place(struct page *pg, uint32_t i, uint32_t len, uint32_t n) {
  uint32_t next = i + len, more = n - len;
  if (next == pg->top) {
    if (more > pg->total - pg->top || reserve(pg, pg->top + more))
      return 0;
    if (next != pg->top || more > pg->total - pg->top)
      return 0; /* the map moved to the top */
    pg->top += more;
  } else if (run_free(pg, next) && run_len(pg, next) >= more) {
    carve(pg, next, next, more);
  } else {
    return 0;
  }
  set_run(pg, i, n, 0);
  return 1;
}

/* --- the module --- */

static int parse(const struct alloc_args *args, size_t *ret_page, int *ret_fit, int *ret_advise,
                 char *err, size_t errlen) {
  static const char *const fits[] = {"first", "best", NULL};
  static const char *const bools[] = {"0", "1", NULL};
  if (alloc_arg_size(args, "page", ret_page, err, errlen) ||
      alloc_arg_choice(args, "fit", fits, ret_fit, err, errlen) ||
      alloc_arg_choice(args, "madvise", bools, ret_advise, err, errlen))
    return -1;
  if (!alloc_is_pow2(*ret_page) || *ret_page < MIN_PAGE || *ret_page > MAX_PAGE) {
    snprintf(err, errlen, "page must be a power of two from 4096 to 1M");
    return -1;
  }
  return 0;
}

/* Page 0 holds the instance and the first map; data pages start at the first page boundary
 * after them. Tag 0 marks page 0 allocated, so the run above never coalesces into it. */
static int layout(struct page *pg) {
  uintptr_t end = (uintptr_t)pg->base + pg->size;
  uintptr_t map0 = alloc_align_up((uintptr_t)pg + sizeof *pg, ALLOC_MIN_ALIGN);
  uintptr_t data = alloc_align_up(map0 + MIN_MAP0, (size_t)1 << pg->shift);
  uintptr_t map_end = data < end ? data : end;
  size_t pages = data < end ? 1 + ((end - data) >> pg->shift) : 1;
  pg->origin = data - ((uintptr_t)1 << pg->shift);
  pg->total = pages > LEN_MASK ? LEN_MASK : (uint32_t)pages;
  pg->limit = (size_t)(pg->total - 1) << pg->shift;
  pg->map0 = map0;
  pg->cap0 = map_end > map0 ? map_cap(pg, map_end - map0) : 0;
  return pg->cap0 ? 0 : -1;
}

static void start_empty(struct page *pg) {
  map_layout(pg, &pg->map, pg->map0, pg->cap0);
  pg->map_run = pg->map_pages = 0;
  pg->map.tag[0] = 1;
  if (pg->fit == FIT_FIRST) {
    memset(pg->map.heads, 0, pg->map.width[0] * sizeof(uint64_t));
    for (unsigned k = 0; k < pg->map.levels; k++)
      memset(pg->map.level[k], 0, pg->map.width[k] * sizeof(uint32_t));
  }
  pg->top = 1;
  pg->root = 0;
  pg->binmap = 0;
  memset(pg->bin_head, 0, sizeof pg->bin_head);
  memset(pg->bin_tail, 0, sizeof pg->bin_tail);
}

static int page_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                     char *err, size_t errlen) {
  size_t page;
  int fit, advise;
  if (parse(args, &page, &fit, &advise, err, errlen))
    return -1;
  uintptr_t b = (uintptr_t)base, at = alloc_align_up(b, ALLOC_MIN_ALIGN);
  struct page *pg = (struct page *)at;
  if (size < at - b || size - (at - b) < sizeof *pg) {
    snprintf(err, errlen, "region of %zu bytes is too small for the page instance", size);
    return -1;
  }
  *pg = (struct page){.base = base, .size = size, .fit = fit, .advise = advise};
  for (pg->shift = 0; ((size_t)1 << pg->shift) < page; pg->shift++)
    ;
  if (layout(pg)) {
    snprintf(err, errlen, "region of %zu bytes is too small for the page map", size);
    return -1;
  }
  start_empty(pg);
  *ret_st = pg;
  return 0;
}

static void *page_malloc(void *st, size_t size) {
  struct page *pg = st;
  if (size > pg->limit)
    return NULL;
  uint32_t n = pages_for(pg, size), i = alloc_run(pg, n);
  if (!i)
    return NULL;
  pg->obtained += n;
  return page_addr(pg, i);
}

static void page_free(void *st, void *p, size_t size) {
  (void)size;
  struct page *pg = st;
  if (!p)
    return;
  uint32_t i = page_index(pg, p);
  free_pages(pg, i, run_len(pg, i));
}

static void *page_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct page *pg = st;
  if (new_size > pg->limit)
    return NULL;
  uint32_t i = page_index(pg, p), len = run_len(pg, i), n = pages_for(pg, new_size);
  if (n <= len) {
    if (n < len) {
      set_run(pg, i, n, 0);
      free_pages(pg, i + n, len - n);
    }
    pg->in_place++;
    return p;
  }
  if (grow_in_place(pg, i, len, n)) {
    pg->obtained += n - len;
    pg->in_place++;
    return p;
  }
  void *q = page_malloc(st, new_size);
  if (!q)
    return NULL;
  size_t keep = (size_t)len << pg->shift;
  if (old_size < keep)
    keep = old_size;
  memcpy(q, p, keep < new_size ? keep : new_size);
  page_free(st, p, old_size);
  return q;
}

/* The first page at or above i whose address is a multiple of align (>= the page size). */
static uint32_t align_index(const struct page *pg, uint32_t i, size_t align) {
  uintptr_t a = (uintptr_t)page_addr(pg, i);
  return i + (uint32_t)((alloc_align_up(a, align) - a) >> pg->shift);
}

/* Above the page size: a free run long enough to hold an aligned run wherever it starts,
 * else the top, the pages skipped to reach alignment becoming a free run. */
static void *page_memalign(void *st, size_t align, size_t size) {
  struct page *pg = st;
  if (align <= ((size_t)1 << pg->shift))
    return page_malloc(st, size);
  if (size > pg->limit || align > pg->limit)
    return NULL;
  uint32_t n = pages_for(pg, size), slack = (uint32_t)(align >> pg->shift) - 1;
  uint32_t r = n <= LEN_MASK - slack ? find_run(pg, n + slack) : 0, s;
  if (r) {
    s = align_index(pg, r, align);
    carve(pg, r, s, n);
  } else {
    for (;;) {
      s = align_index(pg, pg->top, align);
      if (s < pg->top || s > pg->total || n > pg->total - s)
        return NULL;
      if (s + n <= pg->map.cap)
        break;
      if (grow_map(pg, s + n))
        return NULL;
    }
    if (s > pg->top)
      add_free(pg, pg->top, s - pg->top);
    pg->top = s + n;
    set_run(pg, s, n, 0);
  }
  pg->obtained += n;
  return page_addr(pg, s);
}

static void page_reset(void *st) {
  struct page *pg = st;
  if (pg->advise && pg->top > 1)
    release(pg, 1, pg->top - 1);
  start_empty(pg);
}

static size_t page_usable_size(void *st, void *p, size_t size) {
  (void)size;
  struct page *pg = st;
  return (size_t)run_len(pg, page_index(pg, p)) << pg->shift;
}

static void page_stats(void *st, struct alloc_stats *ret) {
  struct page *pg = st;
  size_t map0_end = pg->map0 + map_bytes(pg, pg->cap0) - (uintptr_t)pg->base;
  size_t map = pg->map_run ? (size_t)pg->map_pages << pg->shift : map_bytes(pg, pg->cap0);
  *ret = (struct alloc_stats){
      .footprint = pg->top > 1 ? (size_t)(page_addr(pg, pg->top) - pg->base) : map0_end,
      .meta_bytes = sizeof *pg + map,
      .n_counters = 6,
      .counter = {{"pages_obtained", pg->obtained},
                  {"pages_released", pg->released},
                  {"coalesces", pg->coalesces},
                  {"splits", pg->splits},
                  {"map_moves", pg->map_moves},
                  {"realloc_in_place", pg->in_place}},
  };
}

static void page_destroy(void *st) {
  (void)st;
}

const struct alloc_methods alloc_page = {
    .name = "page",
    .summary = "whole pages per block; free runs coalesced, first or best fit; optional madvise",
    .params = page_params,
    .variants = page_variants,
    .init = page_init,
    .malloc = page_malloc,
    .free = page_free,
    .realloc = page_realloc,
    .memalign = page_memalign,
    .reset = page_reset,
    .usable_size = page_usable_size,
    .stats = page_stats,
    .destroy = page_destroy,
};
