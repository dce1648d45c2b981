/*
 * slab: Bonwick's slab allocator, adapted to a region.
 *
 * Small requests (up to `max`) are rounded to a size class: classes=fine has one class every
 * 16 bytes up to 128, then four per power of two (160, 192, 224, 256, 320, ...);
 * classes=pow2 has the powers of two from 16. Each class (Bonwick's "cache") owns slabs of
 * `slab` bytes carved from region pages. A slab is naturally aligned; its objects start at
 * offset 0 and its descriptor sits in its last 64 bytes (where Bonwick puts it for small
 * objects), so free finds the descriptor by aligning the address down: no per-object
 * header. Objects of a slab are tracked with an intrusive free list plus a bump pointer over
 * the objects never handed out, so setting up a slab is O(1) and touches one cache line.
 * Each class keeps a partial list (allocation takes the head), a full list and at most one
 * empty slab, the lowest (hysteresis: an alloc/free pair at a slab boundary does not bounce
 * a slab to the page level). Other empty slabs, and an empty slab just below the break, go
 * back to the page level, where any class or a large request reuses them; out of region,
 * every retained empty slab is reaped first.
 *
 * The page level hands out 4 KiB pages below a break (`top`) that grows lazily, like sbrk.
 * A free run keeps its length in its first and last page; one bit per page (in leaves of
 * 4 KiB, each covering 128 MiB, made at the break as it first reaches them) marks the first
 * and last page of every free run, so a freed run coalesces with both neighbours in O(1),
 * and a free run that reaches the break lowers it. Free runs sit in bins, exact for 1..127
 * pages, then one per power of two; allocation is best fit by pages. Requests above `max`
 * take page runs; slabs take slab-aligned runs (the first aligned fit in the smallest bins,
 * a bounded scan, else the break is aligned up and the skipped pages become a free run).
 *
 * Small or large: free, realloc and usable_size tell a slab object from a page run by the
 * size the interface passes (<= max: slab). memalign keeps that true: a small block comes
 * from the first class whose object size is a multiple of the alignment (objects start at
 * offset 0 of an aligned slab, so they are aligned), or, for an alignment above `max`, from
 * a slab of its own holding one object. realloc stays in place while the new size still
 * fills more than half of the object (or a page run can shrink or grow into free pages).
 *
 * harden=1 switches to a separate checked path (see "hardening" below): allocation bitmaps
 * in each slab detect double and invalid frees (counted, then ignored), canaries right
 * after the requested bytes catch overruns, allocation picks a random free object.
 * harden=canary, harden=free and harden=random take the same path with one of the three.
 * The plain path only pays one flag test. guard=1 makes the last page of every slab a guard
 * page (PROT_NONE, with mprotect on the module's own region pages: the one exception to "a
 * module never changes its region's mappings"), so a run of writes off one slab faults before
 * it reaches the next one; the descriptor sits just below the guard. Protections are
 * restored when a slab goes back to the page level, at reset and at destroy. Each guard
 * splits the region's mapping, and the kernel caps mappings (vm.max_map_count, 65530 by
 * default): past about 32,000 live slabs, mprotect fails and a slab goes unguarded. Not
 * done: free-run headers of the page level are not protected against overruns.
 *
 * Threads (as tcmalloc's thread caches, or Bonwick's magazines in front of a depot): all of
 * the above is the depot, behind one mutex; each thread gets a cache of up to `cache`
 * objects per class (and at most a slab's worth), so small malloc and free take no lock and
 * no atomic read-modify-write until a list runs empty or full, and then move half a list
 * under the lock. A block freed by another thread joins the freeing thread's cache. See
 * "threads" below. Caches hold memory (objects cached keep their slabs from emptying: the
 * counter `cached`); a thread that exits leaves its cache as it is; past 64 threads per
 * instance, threads use the lock for every call. harden takes the lock for every call.
 *
 * Cost: small malloc and free are O(1) and branch-light: a table look-up for the class, a
 * pop or push on the slab's free list and a counter test; list moves happen only when a
 * slab turns full, partial or empty. Large malloc/free are O(1) for runs under 128 pages
 * (a bin look-up via a bitmap of non-empty bins, a split, two bit tests for coalescing);
 * larger runs scan the power-of-two bin for the best fit.
 *
 * Weaknesses: every class in use holds at least one slab, so a trace with few live bytes
 * spread over many classes has a footprint of many slabs (slab=16K,max=4K cuts it); the
 * trailing descriptor costs one object per slab in classes whose size divides the slab
 * (12.5% for 8 KiB objects in 64 KiB slabs); no cache colouring (it would break the
 * offset-0 alignment memalign uses); long-lived objects pin their slabs, so memory moves
 * between classes only when a slab empties completely; a wrong size passed to free would
 * send a block to the wrong level (harden=1 detects it for slab objects).
 *
 * Reference: J. Bonwick, "The Slab Allocator: An Object-Caching Kernel Memory Allocator",
 * USENIX Summer 1994 Technical Conference; J. Bonwick, J. Adams, "Magazines and Vmem:
 * Extending the Slab Allocator to Many CPUs and Arbitrary Resources", USENIX 2001.
 */
#include "alloc.h"
#include "tcache.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE ((size_t)1 << PAGE_SHIFT)
#define LEAF_SHIFT 15 /* one leaf is one page of bits: 2^15 pages, 128 MiB */
#define LEAF_BITS ((size_t)1 << LEAF_SHIFT)
#define EXACT_BINS 128 /* runs of 1..127 pages have a bin each */
#define N_BINS 192
#define BIN_WORDS (N_BINS / 64)
#define SCAN_LIMIT 16 /* runs examined per bin when looking for an aligned fit */
#define SLAB_HDR 64   /* bytes reserved for the descriptor at the end of a slab */
#define MAX_CLASSES 48
#define SOLO_CLASS (MAX_CLASSES - 1) /* one-object slabs for small, over-aligned blocks */
#define MAX_SMALL_LIMIT ((size_t)64 << 10)

/* A slab's descriptor, in the last SLAB_HDR bytes of the slab. */
struct slab {
  void *free;          /* intrusive list of freed objects */
  char *bump;          /* first object never handed out */
  uint32_t inuse, cap; /* objects handed out, objects the slab holds */
  uint32_t size, cls;  /* object size and class index */
  struct slab *next, *prev;
  uintptr_t magic; /* secret ^ own address while the slab exists (checked by harden=1) */
};

/* One size class: Bonwick's cache. */
struct klass {
  struct slab *partial; /* allocation takes the head */
  struct slab *full;
  struct slab *empty; /* at most one retained empty slab */
  uint32_t size, cap;
  uint32_t map_bytes; /* harden=1: allocation bitmap just below the descriptor */
  uint32_t recip;     /* ceil(2^32 / size): hardened index arithmetic without a division */
};

/* A free page run: this header in its first page, `pages` again at the start of its last. */
struct run {
  size_t pages;
  struct run *next, *prev;
};

enum {
  C_SLAB_NEW,
  C_SLAB_RELEASE,
  C_EMPTY_REUSE,
  C_SPLIT,
  C_COALESCE,
  C_TOP_TRIM,
  C_DOUBLE_FREE,
  C_INVALID_FREE,
  C_CANARY,
  N_COUNTERS
};

static const char *const counter_names[N_COUNTERS] = {
    "slabs_made", "slabs_released", "empty_reused",  "run_splits",      "run_coalesces",
    "top_trims",  "double_frees",   "invalid_frees", "canary_failures",
};

/* What stats reports (at most ALLOC_MAX_COUNTERS), plain and with harden=1. */
static const int plain_counters[] = {C_SLAB_NEW, C_SLAB_RELEASE, C_EMPTY_REUSE,
                                     C_SPLIT,    C_COALESCE,     C_TOP_TRIM};
static const int harden_counters[] = {C_SLAB_NEW,    C_SLAB_RELEASE, C_COALESCE,
                                      C_DOUBLE_FREE, C_INVALID_FREE, C_CANARY};

struct heap {
  /* hot: small path */
  size_t max_small;
  int harden;          /* H_* bits; non-zero: every call takes the checked path */
  uintptr_t slab_mask; /* ~(slab - 1) */
  size_t slab_size, slab_pages;
  size_t desc_off; /* a slab's descriptor from its start: slab - guard - SLAB_HDR */
  size_t guard;    /* guard=1: PAGE_SIZE, the slab's last page made inaccessible */
  const char *last_detection;
  /* page level */
  char *top, *end, *heap, *base;
  char **leaf; /* leaf[i]: bits for heap pages [i * LEAF_BITS, (i + 1) * LEAF_BITS) */
  size_t n_leaves, leaves_made;
  size_t n_slabs;   /* slabs holding a descriptor (retained empty ones included) */
  size_t slab_meta; /* their descriptors and bitmaps */
  size_t fixed_meta;
  uint64_t bin_map[BIN_WORDS];
  struct run *bin[N_BINS];
  uint64_t counter[N_COUNTERS];
  int pow2;
  uint64_t secret, rng; /* harden=1: canary and magic key, slot-choice random state */
  unsigned n_classes;
  struct klass cls[MAX_CLASSES];
  /* threads (see "threads" below): the id every call reads on a line of its own, then the
   * lock (the depot's) */
  _Alignas(64) uint64_t tc_id;
  _Alignas(64) struct tc_state tc;
  _Alignas(64) uint8_t class_of[]; /* class of a small size, indexed by (size + 15) / 16 */
};

static const struct alloc_param slab_params[] = {
    {"classes", "fine",
     "size classes: fine (16-byte steps to 128, then 4 per power of two) "
     "or pow2"},
    {"max", "8K",
     "largest small size, a power of two from 128 to min(64K, slab/4); larger "
     "requests take page runs"},
    {"slab", "64K", "slab size, a power of two from 4K to 4M (slabs are aligned to it)"},
    {"harden", "0",
     "1: allocation bitmaps (double and invalid frees detected and ignored), canaries, "
     "random slot choice; canary, free or random: one of them alone"},
    {"guard", "0", "1: the last page of every slab is a PROT_NONE guard page (slab 8K or more)"},
    {"cache", "64",
     "objects each thread caches per class (at most a slab's worth), 0 to 65536; 0: every "
     "call takes the lock"},
    {NULL, NULL, NULL},
};

static const char *const slab_variants[] = {"classes=pow2",
                                            "slab=256K",
                                            "max=1K",
                                            "slab=16K,max=4K",
                                            "harden=1",
                                            "harden=canary",
                                            "harden=free",
                                            "harden=random",
                                            "guard=1",
                                            "harden=1,guard=1",
                                            "guard=1,slab=8K,max=2K",
                                            "cache=0",
                                            "cache=1",
                                            NULL};

/* harden bits */
#define H_CANARY 1
#define H_FREE 2
#define H_RANDOM 4

/* ---- small helpers ---- */

static unsigned floor_log2(size_t n) {
  return 63u - (unsigned)__builtin_clzll((unsigned long long)n);
}

static char *align_ptr(char *p, size_t a) {
  return (char *)alloc_align_up((uintptr_t)p, a);
}

static size_t min_size(size_t a, size_t b) {
  return a < b ? a : b;
}

static size_t pages_of(size_t size) {
  return (size + PAGE_SIZE - 1) >> PAGE_SHIFT;
}

static struct slab *slab_of(const struct heap *h, const void *p) {
  return (struct slab *)(((uintptr_t)p & h->slab_mask) + h->desc_off);
}

static char *slab_unit(const struct heap *h, struct slab *s) {
  return (char *)s - h->desc_off;
}

static unsigned class_index(const struct heap *h, size_t size) {
  return h->class_of[(size + 15) >> 4];
}

/* ---- slab lists (doubly linked, NULL-terminated) ---- */

static void list_push(struct slab **head, struct slab *s) {
  s->prev = NULL;
  s->next = *head;
  if (*head)
    (*head)->prev = s;
  *head = s;
}

static void list_unlink(struct slab **head, struct slab *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    *head = s->next;
  if (s->next)
    s->next->prev = s->prev;
}

/* ---- page level: boundary bits ---- */

static uint64_t *bit_word(const struct heap *h, const char *page, uint64_t *ret_mask) {
  size_t x = (size_t)(page - h->heap) >> PAGE_SHIFT;
  uint64_t *leaf = (uint64_t *)h->leaf[x >> LEAF_SHIFT];
  size_t i = x & (LEAF_BITS - 1);
  *ret_mask = 1ull << (i & 63);
  return &leaf[i >> 6];
}

static int bit_test(const struct heap *h, const char *page) {
  uint64_t m;
  const uint64_t *w = bit_word(h, page, &m); /* m is set by the call: read it after */
  return (*w & m) != 0;
}

static void bit_set(struct heap *h, const char *page) {
  uint64_t m;
  uint64_t *w = bit_word(h, page, &m);
  *w |= m;
}

static void bit_clear(struct heap *h, const char *page) {
  uint64_t m;
  uint64_t *w = bit_word(h, page, &m);
  *w &= ~m;
}

/* ---- page level: free runs in bins ---- */

static unsigned bin_index(size_t pages) {
  return pages < EXACT_BINS ? (unsigned)pages : EXACT_BINS + floor_log2(pages) - 7;
}

/* The first non-empty bin at or above `from`, or -1. */
static int next_bin(const struct heap *h, unsigned from) {
  unsigned w = from >> 6;
  if (w >= BIN_WORDS)
    return -1;
  uint64_t m = h->bin_map[w] & (~0ull << (from & 63));
  while (!m) {
    if (++w == BIN_WORDS)
      return -1;
    m = h->bin_map[w];
  }
  return (int)(w * 64 + (unsigned)__builtin_ctzll(m));
}

static char *run_last_page(const struct run *r) {
  return (char *)r + ((r->pages - 1) << PAGE_SHIFT);
}

static void run_insert(struct heap *h, char *start, size_t pages) {
  struct run *r = (struct run *)start;
  *(size_t *)(start + ((pages - 1) << PAGE_SHIFT)) = pages; /* footer */
  r->pages = pages;
  bit_set(h, start);
  bit_set(h, run_last_page(r));
  unsigned b = bin_index(pages);
  r->prev = NULL;
  r->next = h->bin[b];
  if (r->next)
    r->next->prev = r;
  h->bin[b] = r;
  h->bin_map[b >> 6] |= 1ull << (b & 63);
}

static void run_remove(struct heap *h, struct run *r) {
  unsigned b = bin_index(r->pages);
  if (r->prev) {
    r->prev->next = r->next;
  } else {
    h->bin[b] = r->next;
    if (!r->next)
      h->bin_map[b >> 6] &= ~(1ull << (b & 63));
  }
  if (r->next)
    r->next->prev = r->prev;
  bit_clear(h, (char *)r);
  bit_clear(h, run_last_page(r));
}

/* Takes [a, a + pages) out of the free run r; what is left either side stays free. */
static void run_carve(struct heap *h, struct run *r, char *a, size_t pages) {
  char *start = (char *)r;
  char *end = start + (r->pages << PAGE_SHIFT);
  char *a_end = a + (pages << PAGE_SHIFT);
  run_remove(h, r);
  if (a > start)
    run_insert(h, start, (size_t)(a - start) >> PAGE_SHIFT);
  if (a_end < end)
    run_insert(h, a_end, (size_t)(end - a_end) >> PAGE_SHIFT);
  if (a > start || a_end < end)
    h->counter[C_SPLIT]++;
}

/* Best fit by pages: exact bins hold one length each; power-of-two bins are scanned. */
static struct run *best_fit(const struct heap *h, size_t pages) {
  for (int i = next_bin(h, bin_index(pages)); i >= 0; i = next_bin(h, (unsigned)i + 1)) {
    if (i < EXACT_BINS)
      return h->bin[i];
    struct run *best = NULL;
    for (struct run *r = h->bin[i]; r; r = r->next) {
      if (r->pages >= pages && (!best || r->pages < best->pages)) {
        best = r;
        if (r->pages == pages)
          break;
      }
    }
    if (best)
      return best;
  }
  return NULL;
}

/* A free run holding `pages` pages at an `align`-aligned address (bounded scan per bin). */
static struct run *aligned_fit(const struct heap *h, size_t pages, size_t align, char **ret_a) {
  for (int i = next_bin(h, bin_index(pages)); i >= 0; i = next_bin(h, (unsigned)i + 1)) {
    unsigned n = 0;
    for (struct run *r = h->bin[i]; r && n < SCAN_LIMIT; r = r->next, n++) {
      char *end = (char *)r + (r->pages << PAGE_SHIFT);
      char *a = align_ptr((char *)r, align);
      if (a < end && (size_t)(end - a) >> PAGE_SHIFT >= pages) {
        *ret_a = a;
        return r;
      }
    }
  }
  return NULL;
}

/* ---- page level: the break ---- */

/* Leaves for all pages below the break exist; a new one is taken at the break. */
static int add_leaf(struct heap *h) {
  if (h->leaves_made == h->n_leaves || (size_t)(h->end - h->top) < PAGE_SIZE)
    return 0;
  memset(h->top, 0, PAGE_SIZE);
  h->leaf[h->leaves_made++] = h->top;
  h->top += PAGE_SIZE;
  return 1;
}

static size_t leaves_needed(const struct heap *h, const char *new_top) {
  return ((size_t)(new_top - 1 - h->heap) >> (PAGE_SHIFT + LEAF_SHIFT)) + 1;
}

/* Moves the break up for `pages` pages at an `align`-aligned address. */
static char *grow(struct heap *h, size_t pages, size_t align) {
  for (;;) {
    char *a = align_ptr(h->top, align);
    if (a > h->end || pages > (size_t)(h->end - a) >> PAGE_SHIFT)
      return NULL;
    char *new_top = a + (pages << PAGE_SHIFT);
    if (leaves_needed(h, new_top) > h->leaves_made) {
      if (!add_leaf(h))
        return NULL;
      continue;
    }
    /* The page below the break is never free (a free run there lowers the break), so the
     * skipped gap needs no coalescing. */
    if (a > h->top)
      run_insert(h, h->top, (size_t)(a - h->top) >> PAGE_SHIFT);
    h->top = new_top;
    return a;
  }
}

static char *page_alloc(struct heap *h, size_t pages, size_t align) {
  if (align <= PAGE_SIZE) {
    struct run *r = best_fit(h, pages);
    if (r) {
      run_carve(h, r, (char *)r, pages);
      return (char *)r;
    }
  } else {
    char *a;
    struct run *r = aligned_fit(h, pages, align, &a);
    if (r) {
      run_carve(h, r, a, pages);
      return a;
    }
  }
  return grow(h, pages, align);
}

/* guard=1: the slab's last page, past its descriptor. */
static void guard_set(const struct heap *h, struct slab *s, int prot) {
  if (h->guard)
    mprotect(slab_unit(h, s) + h->slab_size - h->guard, h->guard, prot);
}

/* guard=1: every page below the break accessible again (reset, destroy). */
static void guards_lift(const struct heap *h) {
  if (h->guard && h->top > h->heap)
    mprotect(h->heap, (size_t)(h->top - h->heap), PROT_READ | PROT_WRITE);
}

/* The slab's memory goes back to the page level; its descriptor stops being one. */
static void slab_forget(struct heap *h, struct slab *s) {
  guard_set(h, s, PROT_READ | PROT_WRITE);
  s->magic = 0;
  h->n_slabs--;
  h->slab_meta -= SLAB_HDR + h->cls[s->cls].map_bytes;
  h->counter[C_SLAB_RELEASE]++;
}

/* The retained empty slab just below the break, if there is one. Its place is compared with
 * every class's empty slab, not read: it may be a live page run, which another thread may be
 * writing. */
static struct slab *retained_at_top(const struct heap *h) {
  if (((uintptr_t)h->top & ~h->slab_mask) || (size_t)(h->top - h->heap) < h->slab_size)
    return NULL;
  struct slab *s = slab_of(h, h->top - 1);
  for (unsigned c = 0; c < h->n_classes; c++)
    if (h->cls[c].empty == s)
      return s;
  return NULL;
}

/* The break fell: what lies just below it and holds nothing (a free run, the newest leaf
 * once it covers nothing below the break, a retained empty slab) goes below it too. */
static void settle_top(struct heap *h) {
  for (;;) {
    struct slab *s;
    if (h->top > h->heap && bit_test(h, h->top - PAGE_SIZE)) {
      struct run *prev = (struct run *)(h->top - (*(size_t *)(h->top - PAGE_SIZE) << PAGE_SHIFT));
      run_remove(h, prev);
      h->top = (char *)prev;
    } else if (h->leaves_made && h->leaf[h->leaves_made - 1] == h->top - PAGE_SIZE) {
      h->leaves_made--;
      h->top -= PAGE_SIZE;
    } else if ((s = retained_at_top(h)) != NULL) {
      h->cls[s->cls].empty = NULL;
      slab_forget(h, s);
      h->top -= h->slab_size;
    } else {
      return;
    }
  }
}

/* Frees [a, a + pages), coalescing with free neighbours; a run reaching the break lowers it. */
static void page_free(struct heap *h, char *a, size_t pages) {
  char *start = a;
  char *end = a + (pages << PAGE_SHIFT);
  if (start > h->heap && bit_test(h, start - PAGE_SIZE)) {
    struct run *prev = (struct run *)(start - (*(size_t *)(start - PAGE_SIZE) << PAGE_SHIFT));
    run_remove(h, prev);
    start = (char *)prev;
    h->counter[C_COALESCE]++;
  }
  if (end == h->top) {
    h->top = start;
    h->counter[C_TOP_TRIM]++;
    settle_top(h);
    return;
  }
  if (bit_test(h, end)) {
    struct run *next = (struct run *)end;
    end += next->pages << PAGE_SHIFT;
    run_remove(h, next);
    h->counter[C_COALESCE]++;
  }
  run_insert(h, start, (size_t)(end - start) >> PAGE_SHIFT);
}

/* ---- slabs ---- */

static void slab_release(struct heap *h, struct slab *s) {
  slab_forget(h, s);
  page_free(h, slab_unit(h, s), h->slab_pages);
}

/* Bonwick's reaping: gives every retained empty slab back to the page level. */
static int reap(struct heap *h) {
  int any = 0;
  for (unsigned c = 0; c < h->n_classes; c++) {
    if (h->cls[c].empty) {
      slab_release(h, h->cls[c].empty);
      h->cls[c].empty = NULL;
      any = 1;
    }
  }
  return any;
}

static char *page_alloc_reaping(struct heap *h, size_t pages, size_t align) {
  char *p = page_alloc(h, pages, align);
  if (!p && reap(h))
    p = page_alloc(h, pages, align);
  return p;
}

/* harden=1: a slab's allocation bitmap, one bit per object, just below its descriptor. */
static uint64_t *slab_map(const struct heap *h, const struct slab *s) {
  return (uint64_t *)((char *)s - h->cls[s->cls].map_bytes);
}

/* All objects free; the bits past the last object read as taken, so they are never picked. */
static void map_clear(const struct heap *h, struct slab *s) {
  uint64_t *map = slab_map(h, s);
  memset(map, 0, h->cls[s->cls].map_bytes);
  if (s->cap & 63)
    map[s->cap >> 6] = ~0ull << (s->cap & 63);
}

static struct slab *slab_make(struct heap *h, char *unit, unsigned c) {
  struct slab *s = (struct slab *)(unit + h->desc_off);
  s->free = NULL;
  s->bump = unit;
  s->inuse = 0;
  s->cap = h->cls[c].cap;
  s->size = h->cls[c].size;
  s->cls = c;
  s->magic = h->secret ^ (uintptr_t)s;
  if (h->cls[c].map_bytes)
    map_clear(h, s);
  guard_set(h, s, PROT_NONE);
  h->n_slabs++;
  h->slab_meta += SLAB_HDR + h->cls[c].map_bytes;
  h->counter[C_SLAB_NEW]++;
  return s;
}

/* One more object of s, the head of k's partial list, is in use. */
static void slab_count_alloc(struct klass *k, struct slab *s) {
  if (++s->inuse == s->cap) {
    list_unlink(&k->partial, s);
    list_push(&k->full, s);
  }
}

/* Hands out one object of s, the head of k's partial list. */
static void *slab_take(struct klass *k, struct slab *s) {
  void *obj = s->free;
  if (obj) {
    s->free = *(void **)obj;
  } else {
    obj = s->bump;
    s->bump += s->size;
  }
  slab_count_alloc(k, s);
  return obj;
}

/* k has no partial slab: its empty one, or a slab-aligned run from the page level, becomes
 * the head of its partial list. */
static struct slab *refill(struct heap *h, struct klass *k) {
  struct slab *s = k->empty;
  if (s) {
    k->empty = NULL;
    h->counter[C_EMPTY_REUSE]++;
  } else {
    char *unit = page_alloc_reaping(h, h->slab_pages, h->slab_size);
    if (!unit)
      return NULL;
    s = slab_make(h, unit, (unsigned)(k - h->cls));
  }
  list_push(&k->partial, s);
  return s;
}

static void *small_malloc(struct heap *h, struct klass *k) {
  struct slab *s = k->partial;
  if (s)
    return slab_take(k, s);
  s = refill(h, k);
  return s ? slab_take(k, s) : NULL;
}

/* s is empty. A class keeps one empty slab, the lowest, so the break can fall; a slab
 * just below the break goes back at once, and so does a one-object slab. */
static void slab_retire(struct heap *h, struct klass *k, struct slab *s) {
  if (s->cls == SOLO_CLASS || slab_unit(h, s) + h->slab_size == h->top) {
    slab_release(h, s);
    return;
  }
  if (k->empty) {
    if (k->empty < s) {
      slab_release(h, s);
      return;
    }
    slab_release(h, k->empty);
  }
  k->empty = s;
}

/* A free moved s off the full list or emptied it (n objects now in use). */
static void slab_update(struct heap *h, struct slab *s, uint32_t n) {
  struct klass *k = &h->cls[s->cls];
  if (n == s->cap - 1) {
    list_unlink(&k->full, s);
    list_push(&k->partial, s);
  }
  if (n == 0) {
    list_unlink(&k->partial, s);
    slab_retire(h, k, s);
  }
}

static void small_free(struct heap *h, void *p) {
  struct slab *s = slab_of(h, p);
  *(void **)p = s->free;
  s->free = p;
  uint32_t n = --s->inuse;
  /* One test for "was full" (n == cap - 1) and "now empty" (n == 0). */
  if (n - 1 >= s->cap - 2)
    slab_update(h, s, n);
}

/* A small block aligned above `max`: a slab of its own, the object at offset 0. */
static struct slab *solo_slab(struct heap *h, size_t align) {
  char *unit = page_alloc_reaping(h, h->slab_pages, align > h->slab_size ? align : h->slab_size);
  if (!unit)
    return NULL;
  struct slab *s = slab_make(h, unit, SOLO_CLASS);
  list_push(&h->cls[SOLO_CLASS].partial, s);
  return s;
}

/* ---- large blocks: page runs ---- */

static void *large_malloc(struct heap *h, size_t size, size_t align) {
  if (size > (size_t)(h->end - h->heap))
    return NULL;
  return page_alloc_reaping(h, pages_of(size), align);
}

/* Resizes a page run in place if it can: shrink, or grow into the break or a free run. */
static int large_resize(struct heap *h, char *p, size_t old_size, size_t new_size) {
  if (new_size > (size_t)(h->end - h->heap))
    return 0;
  size_t op = pages_of(old_size), np = pages_of(new_size);
  char *old_end = p + (op << PAGE_SHIFT);
  if (np <= op) {
    if (np < op)
      page_free(h, p + (np << PAGE_SHIFT), op - np);
    return 1;
  }
  size_t more = np - op;
  if (old_end == h->top) {
    if (more > (size_t)(h->end - h->top) >> PAGE_SHIFT)
      return 0;
    char *new_top = h->top + (more << PAGE_SHIFT);
    if (leaves_needed(h, new_top) > h->leaves_made)
      return 0;
    h->top = new_top;
    return 1;
  }
  if (bit_test(h, old_end) && ((struct run *)old_end)->pages >= more) {
    run_carve(h, (struct run *)old_end, old_end, more);
    return 1;
  }
  return 0;
}

/* ---- hardening (harden=1, canary, free, random) ----
 * A separate path, so the plain one pays a single flag test. Each slab keeps an allocation
 * bitmap (every option uses it). free: free checks that the pointer lies in a live slab
 * (descriptor magic), on an object boundary, and is allocated; double and invalid frees are
 * counted and ignored. canary: the 8 bytes right after the requested ones hold a keyed
 * value that free checks, so a one-byte overrun trips it (a block is given 8 bytes more to
 * hold it, except that a small one never becomes large: within 8 bytes of `max` the canary
 * is shorter, at exactly `max` there is none). random: allocation picks a random free
 * object, so the next address is hard to predict and a freed object is not handed straight
 * back; without it, the object freed last, else the next free one after the last one taken
 * (the bump pointer, unused on this path, is that cursor). A double free of a large block is caught
 * only while its first page is still the start of a free run (not once it merged with the run
 * before it). */

static uint64_t next_random(struct heap *h) {
  uint64_t x = h->rng; /* xorshift64 */
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return h->rng = x;
}

static uint64_t canary_of(const struct heap *h, const void *p) {
  return h->secret ^ ((uintptr_t)p * 0x9E3779B97F4A7C15ull);
}

static void detect(struct heap *h, int counter, const char *what) {
  h->counter[counter]++;
  h->last_detection = what;
}

/* The bytes a hardened block of `size` requested bytes takes: 8 more for the canary, but a
 * small block stays small (free tells the levels apart by the size). */
static size_t hard_need(const struct heap *h, size_t size) {
  if (!(h->harden & H_CANARY))
    return size;
  return size <= h->max_small ? min_size(size + 8, h->max_small) : size + 8;
}

/* The canary: bytes [size, size + 8) of a block of `room` bytes, as many as fit. */
static size_t canary_len(const struct heap *h, size_t room, size_t size) {
  return (h->harden & H_CANARY) ? min_size(room - size, 8) : 0;
}

static void canary_put(const struct heap *h, char *p, size_t room, size_t size) {
  uint64_t v = canary_of(h, p);
  memcpy(p + size, &v, canary_len(h, room, size));
}

static void canary_check(struct heap *h, char *p, size_t room, size_t size) {
  uint64_t v = canary_of(h, p);
  if (memcmp(p + size, &v, canary_len(h, room, size)) != 0)
    detect(h, C_CANARY, "an overrun (the canary after the block changed)");
}

/* off / size for an offset into slab s, exact when off is a multiple of the object size
 * (offsets are below 2^32: Granlund and Montgomery's multiply by the reciprocal). */
static uint32_t obj_index(const struct heap *h, const struct slab *s, size_t off) {
  return (uint32_t)((off * h->cls[s->cls].recip) >> 32);
}

/* A free object of s (s has one): from a random start with harden random, else from the
 * cursor; then the next clear bit. */
static uint32_t pick_slot(struct heap *h, struct slab *s) {
  const uint64_t *map = slab_map(h, s);
  uint32_t words = (s->cap + 63) >> 6;
  uint32_t start = (h->harden & H_RANDOM) ? (uint32_t)(((next_random(h) >> 32) * s->cap) >> 32)
                                          : obj_index(h, s, (size_t)(s->bump - slab_unit(h, s)));
  uint32_t w = start >> 6;
  uint64_t m = ~map[w] & (~0ull << (start & 63));
  while (!m) {
    w = w + 1 == words ? 0 : w + 1;
    m = ~map[w];
  }
  return w * 64 + (uint32_t)__builtin_ctzll(m);
}

static void *hard_take(struct heap *h, struct klass *k, struct slab *s, size_t size) {
  uint32_t i = pick_slot(h, s);
  slab_map(h, s)[i >> 6] |= 1ull << (i & 63);
  char *obj = slab_unit(h, s) + (size_t)i * s->size;
  s->bump = i + 1 < s->cap ? obj + s->size : slab_unit(h, s);
  slab_count_alloc(k, s);
  canary_put(h, obj, s->size, size);
  return obj;
}

static void *hard_small_malloc(struct heap *h, struct klass *k, size_t size) {
  struct slab *s = k->partial ? k->partial : refill(h, k);
  return s ? hard_take(h, k, s, size) : NULL;
}

/* The live slab holding p, or NULL: p below the break, the descriptor's magic right. */
static struct slab *checked_slab(const struct heap *h, const char *p) {
  char *unit = (char *)((uintptr_t)p & h->slab_mask);
  if (p < h->heap || unit < h->heap || unit + h->slab_size > h->top)
    return NULL;
  struct slab *s = slab_of(h, p);
  return s->magic == (h->secret ^ (uintptr_t)s) ? s : NULL;
}

static void hard_small_free(struct heap *h, char *p, size_t size) {
  int check = h->harden & H_FREE;
  struct slab *s = check ? checked_slab(h, p) : slab_of(h, p);
  size_t off = s ? (size_t)(p - slab_unit(h, s)) : 0;
  size_t i = s ? obj_index(h, s, off) : 0;
  if (check && (!s || i * s->size != off || i >= s->cap || size > s->size)) {
    detect(h, C_INVALID_FREE, "an invalid free (not an object of a live slab)");
    return;
  }
  uint64_t *word = &slab_map(h, s)[i >> 6];
  if (check && !(*word & (1ull << (i & 63)))) {
    detect(h, C_DOUBLE_FREE, "a double free (the object is not allocated)");
    return;
  }
  canary_check(h, p, s->size, size);
  *word &= ~(1ull << (i & 63));
  if (!(h->harden & H_RANDOM)) /* the cursor: the freed object goes out first, as plain */
    s->bump = p;
  uint32_t n = --s->inuse;
  if (n - 1 >= s->cap - 2)
    slab_update(h, s, n);
}

static void *hard_large_malloc(struct heap *h, size_t size, size_t align) {
  char *p = large_malloc(h, hard_need(h, size), align);
  if (p)
    canary_put(h, p, pages_of(hard_need(h, size)) << PAGE_SHIFT, size);
  return p;
}

/* A run's first page is never a free-run boundary while it is allocated. */
static void hard_large_free(struct heap *h, char *p, size_t size) {
  size_t room = pages_of(hard_need(h, size)) << PAGE_SHIFT;
  int check = h->harden & H_FREE;
  if (check && (((uintptr_t)p & (PAGE_SIZE - 1)) || p < h->heap || p > h->top ||
                room > (size_t)(h->top - p))) {
    detect(h, C_INVALID_FREE, "an invalid free (not a page run of this heap)");
    return;
  }
  if (check && bit_test(h, p)) {
    detect(h, C_DOUBLE_FREE, "a double free (the page run is free)");
    return;
  }
  canary_check(h, p, room, size);
  page_free(h, p, room >> PAGE_SHIFT);
}

static void *hard_malloc(struct heap *h, size_t size) {
  if (size <= h->max_small)
    return hard_small_malloc(h, &h->cls[class_index(h, hard_need(h, size))], size);
  return hard_large_malloc(h, size, PAGE_SIZE);
}

static void hard_free(struct heap *h, void *p, size_t size) {
  if (size <= h->max_small)
    hard_small_free(h, p, size);
  else
    hard_large_free(h, p, size);
}

/* No in-place resizing: every realloc moves, so a stale pointer to the old block is caught. */
static void *hard_realloc(struct heap *h, void *p, size_t old_size, size_t new_size) {
  void *q = hard_malloc(h, new_size);
  if (!q)
    return NULL;
  memcpy(q, p, min_size(old_size, new_size));
  hard_free(h, p, old_size);
  return q;
}

static size_t hard_usable_size(const struct heap *h, void *p, size_t size) {
  if (h->harden & H_CANARY) /* the canary starts right after the requested bytes */
    return size;
  return size <= h->max_small ? slab_of(h, p)->size : pages_of(size) << PAGE_SHIFT;
}

/* ---- the interface ---- */

static void *slab_malloc(void *st, size_t size) {
  struct heap *h = st;
  if (size <= h->max_small && !h->harden)
    return small_malloc(h, &h->cls[class_index(h, size)]);
  if (h->harden)
    return hard_malloc(h, size);
  return large_malloc(h, size, PAGE_SIZE);
}

static void slab_free(void *st, void *p, size_t size) {
  struct heap *h = st;
  if (!p)
    return;
  if (size <= h->max_small && !h->harden)
    small_free(h, p);
  else if (h->harden)
    hard_free(h, p, size);
  else
    page_free(h, p, pages_of(size));
}

/* realloc keeps a slab object whose size still fits and is more than half used: no copy,
 * and no more waste than power-of-two classes would have. The size must stay small, or a
 * later free would take a one-object slab for a page run. */
static int small_fits(const struct heap *h, const struct slab *s, size_t size) {
  return size <= h->max_small && size <= s->size &&
         (size > s->size / 2 || class_index(h, size) == s->cls);
}

static void *slab_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct heap *h = st;
  if (h->harden)
    return hard_realloc(h, p, old_size, new_size);
  if (old_size <= h->max_small) {
    if (small_fits(h, slab_of(h, p), new_size))
      return p;
  } else if (new_size > h->max_small && large_resize(h, p, old_size, new_size)) {
    return p;
  }
  void *q = slab_malloc(h, new_size);
  if (!q)
    return NULL;
  memcpy(q, p, min_size(old_size, new_size));
  slab_free(h, p, old_size);
  return q;
}

static void *slab_memalign(void *st, size_t align, size_t size) {
  struct heap *h = st;
  if (align > (size_t)(h->end - h->heap))
    return NULL;
  if (size > h->max_small) {
    size_t a = align > PAGE_SIZE ? align : PAGE_SIZE;
    return h->harden ? hard_large_malloc(h, size, a) : large_malloc(h, size, a);
  }
  if (align > h->max_small) {
    struct slab *s = solo_slab(h, align);
    struct klass *k = &h->cls[SOLO_CLASS];
    if (!s)
      return NULL;
    return h->harden ? hard_take(h, k, s, size) : slab_take(k, s);
  }
  /* Objects start at offset 0 of an aligned slab: a size multiple of align is aligned. The
   * class `max` is a power of two at least align, so the search ends. */
  unsigned c = class_index(h, h->harden ? hard_need(h, size) : size);
  while (h->cls[c].size % align)
    c++;
  return h->harden ? hard_small_malloc(h, &h->cls[c], size) : small_malloc(h, &h->cls[c]);
}

static size_t slab_usable_size(void *st, void *p, size_t size) {
  struct heap *h = st;
  if (h->harden)
    return hard_usable_size(h, p, size);
  if (size <= h->max_small)
    return slab_of(h, p)->size;
  return pages_of(size) << PAGE_SHIFT;
}

static void slab_stats(void *st, struct alloc_stats *ret) {
  struct heap *h = st;
  *ret = (struct alloc_stats){
      .footprint = (size_t)(h->top - h->base),
      .meta_bytes = h->fixed_meta + h->leaves_made * PAGE_SIZE + h->slab_meta,
      .n_counters = ALLOC_MAX_COUNTERS,
      .detections = h->counter[C_DOUBLE_FREE] + h->counter[C_INVALID_FREE] + h->counter[C_CANARY],
      .detection = h->last_detection,
  };
  const int *shown = h->harden ? harden_counters : plain_counters;
  for (int i = 0; i < ALLOC_MAX_COUNTERS; i++)
    ret->counter[i] = (struct alloc_counter){counter_names[shown[i]], h->counter[shown[i]]};
}

/* ---- set-up ---- */

/* Object sizes of the classes, smallest first; returns how many. */
static unsigned make_sizes(uint32_t *size, int pow2, size_t max) {
  unsigned n = 0;
  if (pow2) {
    for (size_t s = 16; s <= max; s *= 2)
      size[n++] = (uint32_t)s;
    return n;
  }
  for (size_t s = 16; s <= 128 && s <= max; s += 16)
    size[n++] = (uint32_t)s;
  for (size_t p = 128; p < max; p *= 2)
    for (size_t q = 5; q <= 8; q++)
      size[n++] = (uint32_t)(p * q / 4);
  return n;
}

/* Objects per slab: as many as fit beside the descriptor (and, hardened, the bitmap). */
static void layout(const struct heap *h, struct klass *k) {
  size_t room = h->desc_off;
  size_t cap = room / k->size;
  size_t map = 0;
  if (h->harden) {
    while (cap * k->size + alloc_align_up((cap + 63) / 64 * 8, 16) > room)
      cap--;
    map = alloc_align_up((cap + 63) / 64 * 8, 16);
  }
  k->cap = (uint32_t)cap;
  k->map_bytes = (uint32_t)map;
}

/* Empties every class and the page level; the break returns to the start of the heap. */
static void format(struct heap *h) {
  uint32_t size[MAX_CLASSES];
  h->n_classes = make_sizes(size, h->pow2, h->max_small);
  for (unsigned c = 0; c < MAX_CLASSES; c++) {
    struct klass *k = &h->cls[c];
    k->partial = k->full = k->empty = NULL;
    k->size = c < h->n_classes ? size[c] : 0;
    k->cap = k->map_bytes = 0;
    if (k->size)
      layout(h, k);
  }
  struct klass *solo = &h->cls[SOLO_CLASS];
  solo->size = (uint32_t)(h->desc_off - (h->harden ? 16 : 0));
  solo->cap = 1;
  solo->map_bytes = h->harden ? 16 : 0;
  for (unsigned k = 0; k < MAX_CLASSES; k++)
    if (h->cls[k].size)
      h->cls[k].recip = (uint32_t)(((1ull << 32) + h->cls[k].size - 1) / h->cls[k].size);
  unsigned c = 0;
  for (size_t i = 0; i <= h->max_small >> 4; i++) {
    while (size[c] < i * 16)
      c++;
    h->class_of[i] = (uint8_t)c;
  }
  guards_lift(h);
  h->top = h->heap;
  h->leaves_made = 0;
  h->n_slabs = 0;
  h->slab_meta = 0;
  memset(h->bin_map, 0, sizeof h->bin_map);
  memset(h->bin, 0, sizeof h->bin);
}

/* splitmix64's finaliser: a key that differs per instance (no system randomness here). */
static uint64_t mix(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

static int parse(const struct alloc_args *args, int *pow2, int *harden, int *guard, size_t *max,
                 size_t *slab, char *err, size_t errlen) {
  static const char *const modes[] = {"fine", "pow2", NULL};
  static const char *const hardens[] = {"0", "canary", "free", "random", "1", NULL};
  static const int bits[] = {0, H_CANARY, H_FREE, H_RANDOM, H_CANARY | H_FREE | H_RANDOM};
  static const char *const flags[] = {"0", "1", NULL};
  if (alloc_arg_choice(args, "classes", modes, pow2, err, errlen) ||
      alloc_arg_choice(args, "harden", hardens, harden, err, errlen) ||
      alloc_arg_choice(args, "guard", flags, guard, err, errlen) ||
      alloc_arg_size(args, "max", max, err, errlen) ||
      alloc_arg_size(args, "slab", slab, err, errlen))
    return -1;
  *harden = bits[*harden];
  if (!alloc_is_pow2(*slab) || *slab < PAGE_SIZE || *slab > ((size_t)4 << 20)) {
    snprintf(err, errlen, "slab must be a power of two from 4K to 4M");
    return -1;
  }
  if (*guard && *slab < 2 * PAGE_SIZE) {
    snprintf(err, errlen, "guard=1 needs slab of 8K or more (the guard takes a page)");
    return -1;
  }
  size_t limit = min_size(MAX_SMALL_LIMIT, *slab / 4);
  if (!alloc_is_pow2(*max) || *max < 128 || *max > limit) {
    snprintf(err, errlen, "max must be a power of two from 128 to %zu (64K and slab/4)", limit);
    return -1;
  }
  return 0;
}

static int slab_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                     char *err, size_t errlen) {
  int pow2, harden, guard;
  size_t max, slab;
  if (parse(args, &pow2, &harden, &guard, &max, &slab, err, errlen))
    return -1;
  char *b = base;
  char *end = (char *)((uintptr_t)(b + size) & ~(uintptr_t)(PAGE_SIZE - 1));
  struct heap *h = (struct heap *)align_ptr(b, 64);
  size_t n_leaves = (size >> (PAGE_SHIFT + LEAF_SHIFT)) + 1;
  char *tables = (char *)h + sizeof *h + (max >> 4) + 1;
  char **leaf = (char **)align_ptr(tables, sizeof(char *));
  char *heap = align_ptr((char *)(leaf + n_leaves), PAGE_SIZE);
  if (end < heap) {
    snprintf(err, errlen, "region of %zu bytes is too small for the slab tables", size);
    return -1;
  }
  h->max_small = max;
  h->slab_size = slab;
  h->slab_pages = slab >> PAGE_SHIFT;
  h->slab_mask = ~(uintptr_t)(slab - 1);
  h->pow2 = pow2;
  h->harden = harden;
  h->guard = guard ? PAGE_SIZE : 0;
  h->desc_off = slab - h->guard - SLAB_HDR;
  h->last_detection = NULL;
  h->secret = mix((uintptr_t)h ^ size);
  h->rng = h->secret | 1;
  h->base = b;
  h->end = end;
  h->heap = heap;
  h->leaf = leaf;
  h->n_leaves = n_leaves;
  h->fixed_meta = (size_t)((char *)(leaf + n_leaves) - (char *)h);
  memset(h->counter, 0, sizeof h->counter); /* kept across resets */
  h->top = heap;                            /* format lifts guards below it: none yet */
  format(h);
  *ret_st = h;
  return 0;
}

static void slab_reset(void *st) {
  format(st);
}

/* The next module (or instance) must find every page of the region accessible. */
static void slab_destroy(void *st) {
  guards_lift(st);
}

/* ---- threads: per-thread caches in front of the heap (the depot) ----
 * Everything above runs one thread at a time, under tc.lock. Each thread that calls in gets
 * a cache of its own (tcache.h): per class, a list of at most `cache` objects (and at most a
 * slab's worth), popped by malloc and pushed by free with no lock; half a list moves to or
 * from the slabs under the lock. free takes the class from the descriptor, so a memalign
 * block goes back to its own class. An object freed by another thread than its allocator's
 * joins the freeing thread's cache and returns to its slab with the next batch. */

/* This thread's entry: the instance it last called and its cache there.
 * initial-exec: one %fs-relative load, as the module is linked into executables. */
static _Thread_local struct tc_entry mt_tls __attribute__((tls_model("initial-exec")));

/* A cache is a block of the heap. */
static void *mt_cache_alloc(void *st, size_t bytes, size_t *ret_room) {
  void *tc = slab_malloc(st, bytes);
  *ret_room = tc ? slab_usable_size(st, tc, bytes) : 0;
  return tc;
}

/* A list holds at most a slab's worth. */
static size_t mt_span(const void *st, unsigned c) {
  const struct heap *h = st;
  return h->cls[c].cap;
}

static void *mt_take(void *st, unsigned c) {
  struct heap *h = st;
  return small_malloc(h, &h->cls[c]);
}

/* Each object goes back to its own slab (the class is in the descriptor). */
static void mt_put(void *st, unsigned c, void *p) {
  small_free(st, p);
}

static void *mt_grab(void *st, unsigned c, uint32_t want, uint32_t *ret_n) {
  return tc_grab_each(mt_take, st, c, want, ret_n);
}

static void *mt_give(void *st, unsigned c, void *list, uint32_t n) {
  return tc_give_each(mt_put, st, c, list, n);
}

/* Out of memory, a refill returns the thread's other lists first (they may empty a slab
 * that another class or a large block can use). */
static const struct tc_ops mt_ops = {mt_cache_alloc, mt_span, mt_grab, mt_give, 1};

/* What the caches do not serve, under the lock; out of memory, the caller's cached objects
 * go back to their slabs and it is tried once more. The slow paths (claim, refill, flush,
 * the lock) are kept out of line (noinline), so that the fast paths save no registers. */
static __attribute__((noinline)) void *mt_locked_malloc(struct heap *h, struct tcache *tc,
                                                        size_t align, size_t size) {
  tc_lock(&h->tc);
  void *p = align ? slab_memalign(h, align, size) : slab_malloc(h, size);
  if (!p && tc && tc_drain(&h->tc, tc))
    p = align ? slab_memalign(h, align, size) : slab_malloc(h, size);
  tc_unlock(&h->tc);
  return p;
}

/* A thread's first call (which makes its cache), large blocks, caching off. */
static __attribute__((noinline)) void *mt_malloc_slow(struct heap *h, size_t size) {
  struct tcache *tc = size <= h->max_small ? tc_mine(&mt_tls, &h->tc, h->tc_id) : NULL;
  if (tc)
    return tc_pop(&h->tc, tc, class_index(h, size));
  return mt_locked_malloc(h, tc_ready(&mt_tls, h->tc_id), 0, size);
}

/* One-object slabs (SOLO_CLASS) are not cached: they go back to the page level at once. */
static __attribute__((noinline)) void mt_free_slow(struct heap *h, void *p, size_t size) {
  struct tcache *tc = size <= h->max_small ? tc_mine(&mt_tls, &h->tc, h->tc_id) : NULL;
  unsigned c = tc ? slab_of(h, p)->cls : SOLO_CLASS;
  if (c < h->n_classes) {
    tc_push(&h->tc, tc, c, p);
    return;
  }
  tc_lock(&h->tc);
  slab_free(h, p, size);
  tc_unlock(&h->tc);
}

static void *mt_malloc(void *st, size_t size) {
  struct heap *h = st;
  struct tcache *tc = tc_ready(&mt_tls, h->tc_id);
  if (size > h->max_small || !tc)
    return mt_malloc_slow(h, size);
  return tc_pop(&h->tc, tc, class_index(h, size));
}

/* The class comes from the descriptor, so a memalign block goes back to its own class. */
static void mt_free(void *st, void *p, size_t size) {
  struct heap *h = st;
  struct tcache *tc = tc_ready(&mt_tls, h->tc_id);
  if (!p)
    return;
  unsigned c;
  if (size > h->max_small || !tc || (c = slab_of(h, p)->cls) >= h->n_classes) {
    mt_free_slow(h, p, size);
    return;
  }
  tc_push(&h->tc, tc, c, p);
}

/* As slab_realloc, but a move goes through mt_malloc and mt_free: no copy under the lock. */
static void *mt_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct heap *h = st;
  if (h->harden) {
    tc_lock(&h->tc);
    void *q = slab_realloc(h, p, old_size, new_size);
    tc_unlock(&h->tc);
    return q;
  }
  if (old_size <= h->max_small) {
    if (small_fits(h, slab_of(h, p), new_size))
      return p;
  } else if (new_size > h->max_small) {
    tc_lock(&h->tc);
    int done = large_resize(h, p, old_size, new_size);
    tc_unlock(&h->tc);
    if (done)
      return p;
  }
  void *q = mt_malloc(h, new_size);
  if (!q)
    return NULL;
  memcpy(q, p, min_size(old_size, new_size));
  mt_free(h, p, old_size);
  return q;
}

/* A small alignment is a class whose objects are multiples of it, as in slab_memalign. */
static void *mt_memalign(void *st, size_t align, size_t size) {
  struct heap *h = st;
  struct tcache *tc = NULL;
  if (size <= h->max_small && align <= h->max_small &&
      (tc = tc_mine(&mt_tls, &h->tc, h->tc_id)) != NULL) {
    unsigned c = class_index(h, size);
    while (h->cls[c].size % align)
      c++;
    return tc_pop(&h->tc, tc, c);
  }
  return mt_locked_malloc(h, tc, align, size);
}

/* The plain path reads only a live block's descriptor size, fixed while it lives. */
static size_t mt_usable_size(void *st, void *p, size_t size) {
  struct heap *h = st;
  if (!h->harden)
    return slab_usable_size(h, p, size);
  tc_lock(&h->tc);
  size_t n = slab_usable_size(h, p, size);
  tc_unlock(&h->tc);
  return n;
}

/* The heap's figures, the caches' bytes in meta_bytes; with caches on, the counters after
 * slabs_made are the caches' (objects still cached: `cached`). */
static void mt_stats(void *st, struct alloc_stats *ret) {
  struct heap *h = st;
  tc_lock(&h->tc);
  slab_stats(h, ret);
  tc_stats(&h->tc, ret);
  tc_unlock(&h->tc);
}

/* slab_init, then the threads' part: caching is off on the hardened path. */
static int mt_init(void **ret_st, void *base, size_t size, const struct alloc_args *args, char *err,
                   size_t errlen) {
  size_t cache;
  if (alloc_arg_size(args, "cache", &cache, err, errlen))
    return -1;
  if (cache > 65536) {
    snprintf(err, errlen, "cache must be from 0 to 65536 objects");
    return -1;
  }
  if (slab_init(ret_st, base, size, args, err, errlen))
    return -1;
  struct heap *h = *ret_st;
  tc_init(&h->tc, h, &mt_ops, h->n_classes, h->harden ? 0 : cache);
  h->tc_id = tc_forget(&h->tc);
  return 0;
}

static void mt_reset(void *st) {
  struct heap *h = st;
  h->tc_id = tc_forget(&h->tc); /* reads the caches' hits: before the heap goes */
  slab_reset(h);
}

static void mt_destroy(void *st) {
  struct heap *h = st;
  slab_destroy(h);
  tc_destroy(&h->tc);
}

const struct alloc_methods alloc_slab = {
    .name = "slab",
    .summary = "Bonwick slab allocator: size-class slabs found by address alignment, "
               "best-fit page runs for large blocks",
    .params = slab_params,
    .variants = slab_variants,
    .flags = ALLOC_THREAD_SAFE,
    .init = mt_init,
    .malloc = mt_malloc,
    .free = mt_free,
    .realloc = mt_realloc,
    .memalign = mt_memalign,
    .reset = mt_reset,
    .usable_size = mt_usable_size,
    .stats = mt_stats,
    .destroy = mt_destroy,
};
