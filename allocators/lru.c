/*
 * lru: a cache of freed blocks, by size class, in front of any other module
 * (`lru:inner=NAME,inner.KEY=VALUE`): the "quick lists" of Weinstock & Wulf's QuickFit
 * ("An efficient algorithm for heap storage allocation", SIGPLAN Notices 23(10), 1988) and
 * the thread caches of tcmalloc and glibc's tcache, with a byte budget and LRU eviction
 * (as in Bonwick's magazine layer, USENIX 1994, which bounds what caches may hold).
 *
 * Requests are rounded to size classes: multiples of 16 up to 16 * classes, then `classes`
 * classes per power of two (jemalloc's spacing), so a class wastes at most 1/classes of its
 * size. A freed block goes into the cache, on its class's list and at the young end of one
 * LRU list of every cached block; malloc takes the youngest block of its class (a hit,
 * still warm in the CPU cache) or asks the inner module for a block of the class's size (a
 * miss). When the cache holds more than `cache` bytes, the oldest blocks go back to the
 * inner module (evictions); when the inner module runs out of region, cached blocks are
 * evicted, oldest first, and the request is tried again. Requests whose class is larger
 * than the whole cache bypass it.
 *
 * Where things live: the instance and the class list heads at the start of the region,
 * the inner module's instance and heap in the rest. The links of a cached block are kept
 * in the block itself: four 32-bit offsets (in 16-byte units from the region's start, so
 * 16 bytes fit the smallest block), previous/next in the LRU list and in the class list.
 * Lists are circular with their heads in the instance, so a block is unlinked without
 * knowing its class; the oldest block of all is also the oldest of its class, so its
 * class-list successor is its class's head, which names the class on eviction.
 *
 * Stats: footprint and meta_bytes are the inner module's plus the instance and the list
 * heads; the inner module's counters follow lru's own while there is room.
 *
 * Cost: hit O(1) (two unlinks); miss, the inner malloc; free O(1) plus the evictions it
 * causes (each an inner free). Counters: hits, misses, evictions, cached (bytes held now).
 * Weaknesses: rounding to classes wastes up to 1/classes per block; cached blocks are
 * neither coalesced nor split, so a cache full of the wrong classes holds memory the inner
 * module could use (until the budget or an out-of-region retry evicts them); the LRU list
 * costs writes to two neighbouring blocks per operation. memalign is left to the harness
 * (over-allocation through malloc): a wrapper must work over modules without memalign,
 * and the free hook cannot tell an aligned block from another. Inner modules that allocate
 * outside the region or that are measuring sticks (system, null) are refused.
 */
#include "alloc.h"

#include <stdio.h>
#include <string.h>

#define UNIT 16                         /* offsets count 16-byte units */
#define MAX_REGION ((size_t)UNIT << 32) /* what 32-bit offsets reach */

/* The links at the start of a cached block; also a list head inside the instance. */
struct node {
  uint32_t older, newer; /* LRU list of every cached block */
  uint32_t prev, next;   /* the class list, youngest first */
};

struct lru {
  char *base;
  const struct alloc_methods *inner;
  void *ist;
  size_t head_bytes; /* instance and list heads: where the inner module's region starts */
  size_t budget;     /* `cache`: bytes the cache may hold */
  size_t cached;     /* bytes it holds */
  unsigned lk;       /* log2(classes) */
  unsigned n_classes;
  uint32_t classes_at; /* offset of heads[0] */
  uint64_t hits, misses, evictions;
  size_t max_request;             /* what the inner module's part of the region could hold */
  char spec[512];                 /* the inner module's parameters, which its args point into */
  _Alignas(UNIT) struct node all; /* head of the LRU list */
  struct node heads[];            /* heads of the class lists, right after it */
};

static const struct alloc_param lru_params[] = {
    {"inner", "explicit", "the module behind the cache (any registered module in the region)"},
    {"cache", "1M", "bytes the cache may hold; larger classes bypass it"},
    {"classes", "4", "size classes per power of two: 1, 2, 4, 8 or 16"},
    {0},
};

static const char *const lru_variants[] = {
    "inner=bump",
    "inner=implicit,cache=64K,classes=1",
    "inner=bitmap,inner.fit=best,classes=16",
    "inner=arena,cache=16M",
    NULL,
};

/* Class index of a request, and the size of a class. */
static unsigned class_of(const struct lru *l, size_t size) {
  size_t lin = (size_t)UNIT << l->lk; /* up to here classes are 16 apart */
  if (size <= lin)
    return size ? (unsigned)((size - 1) / UNIT) : 0;
  size_t s = size - 1;
  unsigned j = 63u - (unsigned)__builtin_clzll(s); /* s in [2^j, 2^(j+1)) */
  unsigned shift = j - l->lk;
  unsigned group = j - (4 + l->lk);
  return ((group + 1) << l->lk) + (unsigned)(s >> shift) - (1u << l->lk);
}

static size_t class_size(const struct lru *l, unsigned c) {
  unsigned k = 1u << l->lk;
  if (c < k)
    return (size_t)(c + 1) * UNIT;
  unsigned group = c / k - 1, i = c % k;
  unsigned shift = group + 4; /* the spacing within group g is 16 << g */
  return ((size_t)(k + i + 1)) << shift;
}

/* The class of a request the cache takes, or n_classes when it bypasses the cache. */
static unsigned cache_class(const struct lru *l, size_t size) {
  if (size > l->budget)
    return l->n_classes;
  return class_of(l, size);
}

/* The size the inner module is asked for (and given back at free) for a request. */
static size_t inner_size(const struct lru *l, size_t size) {
  unsigned c = cache_class(l, size);
  return c < l->n_classes ? class_size(l, c) : size;
}

static struct node *node_at(const struct lru *l, uint32_t off) {
  return (struct node *)(l->base + (size_t)off * UNIT);
}

static uint32_t off_of(const struct lru *l, const void *p) {
  return (uint32_t)((size_t)((const char *)p - l->base) / UNIT);
}

static void unlink_node(const struct lru *l, struct node *n) {
  node_at(l, n->older)->newer = n->newer;
  node_at(l, n->newer)->older = n->older;
  node_at(l, n->prev)->next = n->next;
  node_at(l, n->next)->prev = n->prev;
}

/* Puts block p of class c at the young end of both lists. */
static void push(struct lru *l, void *p, unsigned c) {
  struct node *n = p, *h = &l->heads[c];
  uint32_t me = off_of(l, p), ho = l->classes_at + c, ao = off_of(l, &l->all);
  n->next = h->next;
  n->prev = ho;
  node_at(l, h->next)->prev = me;
  h->next = me;
  n->newer = ao;
  n->older = l->all.older;
  node_at(l, l->all.older)->newer = me;
  l->all.older = me;
  l->cached += class_size(l, c);
}

/* Gives the oldest cached block back to the inner module; returns its bytes. */
static size_t evict_oldest(struct lru *l) {
  struct node *n = node_at(l, l->all.newer);
  unsigned c = n->next - l->classes_at; /* the oldest of its class: next is the head */
  size_t bytes = class_size(l, c);
  unlink_node(l, n);
  l->cached -= bytes;
  l->evictions++;
  l->inner->free(l->ist, n, bytes);
  return bytes;
}

/* Evicts at least want bytes (or everything); for an inner module out of region. */
static void evict_bytes(struct lru *l, size_t want) {
  size_t done = 0;
  if (want < l->cached / 8)
    want = l->cached / 8; /* fewer retries of a failing inner malloc */
  while (l->cached && done < want)
    done += evict_oldest(l);
}

static void *inner_malloc(struct lru *l, size_t n) {
  void *p = l->inner->malloc(l->ist, n);
  while (!p && l->cached && n <= l->max_request) {
    evict_bytes(l, n);
    p = l->inner->malloc(l->ist, n);
  }
  return p;
}

static void *take(struct lru *l, unsigned c) {
  struct node *h = &l->heads[c];
  if (h->next == l->classes_at + c)
    return NULL;
  struct node *n = node_at(l, h->next);
  unlink_node(l, n);
  l->cached -= class_size(l, c);
  l->hits++;
  return n;
}

static int parse(const struct alloc_args *args, const struct alloc_methods **ret_inner,
                 size_t *budget, unsigned *lk, char *err, size_t errlen) {
  static const char *const classes[] = {"1", "2", "4", "8", "16", NULL};
  const char *name = alloc_arg(args, "inner");
  int k;
  if (alloc_arg_size(args, "cache", budget, err, errlen) ||
      alloc_arg_choice(args, "classes", classes, &k, err, errlen))
    return -1;
  *lk = (unsigned)k;
  if (*budget > ((size_t)1 << 40)) {
    snprintf(err, errlen, "cache must be at most 1T");
    return -1;
  }
  const struct alloc_methods *m = name ? alloc_find(name) : NULL;
  if (!m) {
    snprintf(err, errlen, "parameter 'inner': '%s' is not a registered module", name ? name : "");
    return -1;
  }
  if (m->flags & (ALLOC_OUTSIDE_REGION | ALLOC_UNCHECKED)) {
    snprintf(err, errlen, "parameter 'inner': '%s' does not allocate in the region", name);
    return -1;
  }
  *ret_inner = m;
  return 0;
}

static int lru_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                    char *err, size_t errlen) {
  const struct alloc_methods *inner;
  size_t budget;
  unsigned lk;
  if (parse(args, &inner, &budget, &lk, err, errlen))
    return -1;
  if ((uintptr_t)base % UNIT || size > MAX_REGION) {
    snprintf(err, errlen, "the region must be 16-aligned and at most 64G (32-bit links)");
    return -1;
  }
  struct lru probe = {.lk = lk, .budget = budget};
  unsigned n_classes = budget < UNIT ? 0 : class_of(&probe, budget) + 1;
  if (n_classes && class_size(&probe, n_classes - 1) > budget)
    n_classes--;
  size_t head = alloc_align_up(sizeof(struct lru) + n_classes * sizeof(struct node), 64);
  if (size < head * 2) {
    snprintf(err, errlen, "region too small");
    return -1;
  }
  struct lru *l = base;
  memset(l, 0, sizeof *l);
  l->base = base;
  l->inner = inner;
  l->head_bytes = head;
  l->budget = budget;
  l->lk = lk;
  l->n_classes = n_classes;
  l->max_request = size - head;
  l->classes_at = off_of(l, l->heads);
  uint32_t ao = off_of(l, &l->all);
  l->all = (struct node){.older = ao, .newer = ao};
  for (unsigned c = 0; c < n_classes; c++) {
    uint32_t ho = l->classes_at + c;
    l->heads[c] = (struct node){.prev = ho, .next = ho};
  }
  struct alloc_args ia;
  if (alloc_inner_args(l->inner, args, l->spec, sizeof l->spec, &ia, err, errlen))
    return -1;
  if (inner->init(&l->ist, (char *)base + head, size - head, &ia, err, errlen))
    return -1;
  *ret_st = l;
  return 0;
}

static void *lru_malloc(void *st, size_t size) {
  struct lru *l = st;
  unsigned c = cache_class(l, size);
  if (c >= l->n_classes)
    return inner_malloc(l, size);
  void *p = take(l, c);
  if (p)
    return p;
  l->misses++;
  return inner_malloc(l, class_size(l, c));
}

static void lru_free(void *st, void *p, size_t size) {
  struct lru *l = st;
  if (!p)
    return;
  unsigned c = cache_class(l, size);
  if (c >= l->n_classes) {
    l->inner->free(l->ist, p, size);
    return;
  }
  push(l, p, c);
  while (l->cached > l->budget)
    evict_oldest(l);
}

static void *lru_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct lru *l = st;
  size_t old_n = inner_size(l, old_size), n = inner_size(l, new_size);
  if (old_n == n)
    return p;
  unsigned c = cache_class(l, new_size);
  void *q = c < l->n_classes ? take(l, c) : NULL;
  if (q) {
    memcpy(q, p, old_size < new_size ? old_size : new_size);
    lru_free(st, p, old_size);
    return q;
  }
  if (c < l->n_classes)
    l->misses++;
  /* The inner module may resize in place; it sees the class sizes it handed out. */
  q = l->inner->realloc(l->ist, p, old_n, n);
  while (!q && l->cached && n <= l->max_request) {
    evict_bytes(l, n);
    q = l->inner->realloc(l->ist, p, old_n, n);
  }
  return q;
}

static size_t lru_usable_size(void *st, void *p, size_t size) {
  struct lru *l = st;
  unsigned c = cache_class(l, size);
  if (c >= l->n_classes)
    return l->inner->usable_size(l->ist, p, size);
  return class_size(l, c);
}

static void lru_stats(void *st, struct alloc_stats *ret) {
  struct lru *l = st;
  struct alloc_stats in;
  l->inner->stats(l->ist, &in);
  *ret = (struct alloc_stats){
      .footprint = l->head_bytes + in.footprint,
      .meta_bytes = l->head_bytes + in.meta_bytes,
      .n_counters = 4,
      .counter = {{"hits", l->hits},
                  {"misses", l->misses},
                  {"evictions", l->evictions},
                  {"cached", l->cached}},
  };
  for (int i = 0; i < in.n_counters && ret->n_counters < ALLOC_MAX_COUNTERS; i++)
    ret->counter[ret->n_counters++] = in.counter[i];
}

static void lru_destroy(void *st) {
  struct lru *l = st;
  l->inner->destroy(l->ist);
}

const struct alloc_methods alloc_lru = {
    .name = "lru",
    .summary = "size-class cache of freed blocks with LRU eviction, in front of any module",
    .params = lru_params,
    .variants = lru_variants,
    .init = lru_init,
    .malloc = lru_malloc,
    .free = lru_free,
    .realloc = lru_realloc,
    .usable_size = lru_usable_size,
    .stats = lru_stats,
    .destroy = lru_destroy,
};
