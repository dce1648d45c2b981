/*
 * segregated: segregated fits with boundary tags and a wilderness chunk, in the style of
 * dlmalloc (Doug Lea, "A Memory Allocator", 1996; dlmalloc 2.8.6 malloc.c).
 *
 * Memory is a sequence of chunks. A chunk has an 8-byte header (size | this-in-use bit |
 * previous-in-use bit); a free chunk also ends with a footer (its size), which the next
 * chunk reads to coalesce backwards. An allocated chunk has no footer: its payload runs into
 * the next chunk's footer slot, so the overhead is 8 bytes and the minimum chunk 32 bytes.
 *
 * Free chunks sit in bins:
 * - small bins, one per exact chunk size from 32 to 496 bytes, 16 apart, used LIFO, so a
 *   freed size is handed out again first (hot in cache);
 * - large bins, one per size range: classes=fine gives 8 ranges per power of two,
 *   classes=pow2 one. A large bin is kept sorted: a ring of its distinct sizes, smallest
 *   first, and hanging off each a ring of chunks of that size, so the best-fit walk and the
 *   sorted insert skip duplicates.
 * A bitmap of non-empty bins (plus a summary word of non-zero bitmap words) finds the first
 * non-empty bin at or above an index in O(1).
 *
 * malloc: a small request first takes its exact bin or the next one up (no split); then
 * carves from the designated victim (victim=on), the remainder of the last split, which
 * keeps consecutive small requests next to each other; then takes the smallest chunk of the
 * first non-empty bigger bin and splits it (the remainder becomes the new victim). A large
 * request takes the best fit (its own bin's sorted walk, else the smallest chunk of the next
 * non-empty bin), or the victim when that fits as well. Last comes the top (wilderness)
 * chunk: the end of the heap, which only grows when carved, so the footprint is the break.
 * free coalesces at once with free neighbours, the victim and the top; a chunk freed next to
 * the top goes back to it (the break falls).
 * realloc grows in place into a free next chunk, the victim or the top; memalign
 * over-allocates and frees the leading and trailing slack.
 *
 * The bin table lives at the start of the region and spans only the sizes the region can
 * hold (about 3 KiB for 1 GiB with classes=fine).
 *
 * Cost: small malloc and free O(1): a bitmap test, a ring unlink or insert, two header
 * writes. A large malloc or free walks one bin's distinct sizes from the nearer end: at most
 * half of range/16 (16 steps for 4-8 KiB with classes=fine, 128 with pow2). realloc is
 * O(1) when it stays in place, else malloc + copy + free. A small malloc that its own bin
 * or the next one serves (most of them) is some 45 instructions inline, with one
 * data-dependent branch (hit or miss): the size rounding and the bin's bit are computed
 * without branches, and everything else is out of line (sqlite-orders: 70 instructions
 * and 0.18 mispredicted branches per op, harness loop included, against glibc's 100 and 0.18).
 * harden=1 (or harden=canary, harden=free for one check alone) takes a separate checked path;
 * the plain one pays one flag test per call. free: an in-use chunk's payload no longer runs
 * into the next chunk's footer slot; that slot holds a tag, a keyed hash of the chunk's address
 * and size, which free verifies (and wipes) before trusting the header, so a pointer that is
 * not a live block's (inside a block, outside the heap, freed already: the header's in-use
 * bit tells a double free) is counted and ignored, never followed. canary: 8 keyed bytes
 * right after the requested ones, checked at free: a one-byte overrun trips it (counted; the
 * block is still freed). Hardened realloc always moves, so a stale pointer meets the checks.
 * Not caught: a double free after the block's memory became another live block's (its
 * header and tag are then that block's), overruns that skip the canary, corruption of free
 * chunks' links (dlmalloc's "safe unlinking" would add a check per unlink).
 *
 * Weaknesses: 8 bytes of header per block and a 32-byte minimum; coalescing at once means a
 * free/malloc churn of one size merges and splits neighbours again and again (dlmalloc 2.7
 * deferred it with "fastbins"); every large free pays the sorted insert; small requests
 * that miss their bin take the victim, not the best fit (locality over fit, as dlmalloc);
 * single-threaded.
 */
#include "alloc.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define PINUSE 1u /* the previous chunk is in use */
#define CINUSE 2u /* this chunk is in use */
#define FLAG_MASK ((size_t)15)
#define HEADER 8
#define MIN_CHUNK 32
#define N_SMALL 32 /* small bin i holds chunks of i * 16 bytes; bins 0 and 1 stay empty */
#define SMALL_LIMIT ((size_t)N_SMALL * 16)
#define FIRST_LARGE_POW 9 /* log2(SMALL_LIMIT) */
#define MAP_WORDS 8       /* room for 512 bins */
#define H_CANARY 1u       /* harden: 8 keyed bytes after each block, checked at free */
#define H_FREE 2u         /* harden: tagged chunks, double and invalid frees caught */

struct link {
  struct link *next, *prev;
};

/* A chunk starts 8 bytes before its header, at the previous chunk's footer slot. */
struct chunk {
  size_t prev_foot; /* size of the previous chunk, valid only while that one is free */
  size_t head;      /* size | CINUSE | PINUSE */
  struct link list; /* free: in a small bin, a large bin's size ring, or a duplicate ring */
  struct link dups; /* free large chunk: its ring of equal-size chunks; next NULL in one */
};

struct seg {
  char *base, *end;  /* the region; end is rounded down to 16 */
  char *heap;        /* the first chunk */
  struct chunk *top; /* the wilderness: everything from here to end */
  struct chunk *dv;  /* designated victim, or NULL */
  size_t dv_size;
  size_t max_chunk; /* end - heap: no chunk can be bigger */
  size_t max_size;  /* the largest request whose chunk is smaller than max_chunk */
  unsigned harden;  /* H_CANARY | H_FREE, or 0: the plain path */
  size_t extra;     /* hardened: bytes added to each request (tag slot, canary) */
  uint64_t key;     /* hardened: secret of the tags and canaries */
  uint64_t double_frees, invalid_frees, canary_failures;
  const char *last_detection;
  unsigned sub_bits, n_bins;
  bool use_dv;
  /* Bit w, for w >= 1: map[w] != 0. Bit 0 is never read (first_bin_from looks at map[w]
   * itself before the words above it), so the small bins, all in map[0], skip it. */
  uint64_t summary;
  uint64_t map[MAP_WORDS];
  size_t n_inuse, n_free; /* chunks, for meta_bytes; n_free leaves out dv and top */
  uint64_t splits, coalesces, exact_hits, dv_hits, top_carves, walk_steps;
  struct link bins[]; /* sentinels of n_bins rings */
};

static const struct alloc_param segregated_params[] = {
    {"classes", "fine", "large bins: fine (8 per power of two) or pow2 (1 per power of two)"},
    {"victim", "on", "designated victim (last split remainder) for small requests: on or off"},
    {"harden", "0",
     "1: canary and free checks; canary: 8 keyed bytes after each block, checked at free; "
     "free: tagged chunks, double and invalid frees detected and ignored"},
    {0},
};

static const char *const segregated_variants[] = {
    "classes=pow2",  "victim=off",  "classes=pow2,victim=off", "harden=1",
    "harden=canary", "harden=free", "harden=1,classes=pow2",   NULL};

static struct chunk *chunk_at(struct chunk *c, size_t off) {
  return (struct chunk *)((char *)c + off);
}

static struct chunk *chunk_before(struct chunk *c, size_t off) {
  return (struct chunk *)((char *)c - off);
}

static size_t csize(const struct chunk *c) {
  return c->head & ~FLAG_MASK;
}

static void *chunk2mem(struct chunk *c) {
  return (char *)c + 2 * HEADER;
}

static struct chunk *mem2chunk(void *p) {
  return (struct chunk *)((char *)p - 2 * HEADER);
}

static struct chunk *list_chunk(struct link *l) {
  return (struct chunk *)((char *)l - offsetof(struct chunk, list));
}

/* Chunk size for n requested bytes (n <= max_size): header plus payload, rounded to 16, at
 * least 32. Rounding gives 16 only for n <= 8, raised to 32 by the sign bit of s - 32, not
 * by a comparison: gcc turned `s < 32` (and a ternary) into a branch that mispredicted on
 * mixed tiny and small requests (a sixth of sqlite-orders' mallocs). */
static size_t request_size(size_t n) {
  size_t s = (n + HEADER + 15) & ~FLAG_MASK;
  return s + (((s - MIN_CHUNK) >> 63) << 4);
}

/* Marks a chunk free: header with PINUSE (a free chunk's predecessor is always in use,
 * or it would have merged) and the footer the next chunk reads. */
static void set_free(struct chunk *c, size_t s) {
  c->head = s | PINUSE;
  chunk_at(c, s)->prev_foot = s;
}

/* Marks c in use with size s, keeping its PINUSE bit. */
static void set_inuse(struct chunk *c, size_t s) {
  c->head = s | (c->head & PINUSE) | CINUSE;
}

/* Rings with a sentinel: no NULL tests when linking. */
static void ring_init(struct link *s) {
  s->next = s->prev = s;
}

static void ring_insert_after(struct link *pos, struct link *l) {
  l->prev = pos;
  l->next = pos->next;
  pos->next->prev = l;
  pos->next = l;
}

static void ring_remove(struct link *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
}

/* Puts l where old was. */
static void ring_replace(struct link *old, struct link *l) {
  *l = *old;
  l->next->prev = l;
  l->prev->next = l;
}

static void mark_bin(struct seg *m, unsigned i) {
  m->map[i >> 6] |= 1ull << (i & 63);
  m->summary |= 1ull << (i >> 6);
}

static void clear_bin(struct seg *m, unsigned i) {
  unsigned w = i >> 6;
  m->map[w] &= ~(1ull << (i & 63));
  if (!m->map[w])
    m->summary &= ~(1ull << w);
}

/* The first non-empty bin with index >= i, or -1: two find-first-set steps. */
static inline int first_bin_from(const struct seg *m, unsigned i) {
  unsigned w = i >> 6;
  if (w >= MAP_WORDS)
    return -1;
  uint64_t bits = m->map[w] & (~0ull << (i & 63));
  if (!bits) {
    uint64_t words = m->summary & ((~1ull) << w); /* words above w */
    if (!words)
      return -1;
    w = (unsigned)__builtin_ctzll(words);
    bits = m->map[w];
  }
  return (int)(w * 64 + (unsigned)__builtin_ctzll(bits));
}

/* Large bins: the power of two, then sub_bits more bits of the size pick the range. */
static unsigned large_index(const struct seg *m, size_t s) {
  unsigned p = 63u - (unsigned)__builtin_clzll(s);
  unsigned sb = m->sub_bits;
  size_t sub = (s >> (p - sb)) & ((1u << sb) - 1);
  return N_SMALL + ((p - FIRST_LARGE_POW) << sb) + (unsigned)sub;
}

/* Small bins are bits 0..31 of map[0] (no summary bit: see struct seg). */
static void insert_small(struct seg *m, struct chunk *c, size_t s) {
  unsigned i = (unsigned)(s >> 4);
  ring_insert_after(&m->bins[i], &c->list);
  m->map[0] |= 1ull << i;
}

/* The first entry of a large bin's size ring with size >= s, or the sentinel when there is
 * none. The walk starts from the end whose size is nearer s. */
static struct link *first_at_least(struct seg *m, struct link *bin, size_t s) {
  if (bin->next == bin)
    return bin;
  size_t lo = csize(list_chunk(bin->next)), hi = csize(list_chunk(bin->prev));
  if (s <= lo)
    return bin->next;
  if (s > hi)
    return bin;
  uint64_t steps = 0;
  struct link *l;
  if (s - lo <= hi - s) { /* up from the smallest; the largest stops it */
    l = bin->next->next;
    while (csize(list_chunk(l)) < s) {
      l = l->next;
      steps++;
    }
  } else { /* down from the largest; the smallest stops it */
    l = bin->prev;
    while (csize(list_chunk(l->prev)) >= s) {
      l = l->prev;
      steps++;
    }
  }
  m->walk_steps += steps;
  return l;
}

/* Sorted insert: an equal size takes c as a duplicate, else c starts a new size. */
static inline void insert_large(struct seg *m, struct chunk *c, size_t s) {
  unsigned i = large_index(m, s);
  struct link *bin = &m->bins[i];
  struct link *l = first_at_least(m, bin, s);
  if (l != bin && csize(list_chunk(l)) == s) {
    c->dups.next = NULL;
    ring_insert_after(&list_chunk(l)->dups, &c->list);
    return;
  }
  ring_init(&c->dups);
  ring_insert_after(l->prev, &c->list);
  mark_bin(m, i);
}

static inline void insert_chunk(struct seg *m, struct chunk *c, size_t s) {
  m->n_free++;
  if (s < SMALL_LIMIT)
    insert_small(m, c, s);
  else
    insert_large(m, c, s);
}

/* After ring_remove, a ring left with only its sentinel had c's two neighbours equal.
 * The bin's bit in map[0] is cleared by arithmetic, not a branch: whether the bin emptied
 * is a coin toss on some traces (a third of gcc-cc1's unlinks). */
static void unlink_small(struct seg *m, struct chunk *c, size_t s) {
  ring_remove(&c->list);
  uint64_t emptied = c->list.next == c->list.prev;
  m->map[0] &= ~(emptied << (s >> 4));
}

static inline void unlink_large(struct seg *m, struct chunk *c, size_t s) {
  if (!c->dups.next) { /* a duplicate: the size ring does not change */
    ring_remove(&c->list);
    return;
  }
  struct link *d = c->dups.next;
  if (d != &c->dups) { /* the first duplicate takes c's place in the size ring */
    struct chunk *heir = list_chunk(d);
    ring_remove(d);
    ring_replace(&c->list, &heir->list);
    if (c->dups.next == &c->dups)
      ring_init(&heir->dups);
    else
      ring_replace(&c->dups, &heir->dups);
    return;
  }
  ring_remove(&c->list);
  if (c->list.next == c->list.prev)
    clear_bin(m, large_index(m, s));
}

static inline void unlink_chunk(struct seg *m, struct chunk *c, size_t s) {
  m->n_free--;
  if (s < SMALL_LIMIT)
    unlink_small(m, c, s);
  else
    unlink_large(m, c, s);
}

/* A large bin's chunk to hand out for a size ring entry: a duplicate if there is one, as
 * taking it needs no relinking. */
static struct chunk *pick_of_size(struct chunk *c) {
  return c->dups.next != &c->dups ? list_chunk(c->dups.next) : c;
}

/* The smallest chunk in non-empty bin j. */
static struct chunk *smallest_in(struct seg *m, unsigned j) {
  struct chunk *c = list_chunk(m->bins[j].next);
  return j < N_SMALL ? c : pick_of_size(c);
}

/* Best fit for a large request, not unlinked: the first size >= nb in its own bin, else the
 * smallest chunk of the next non-empty bin. */
static struct chunk *find_large(struct seg *m, size_t nb) {
  unsigned i = large_index(m, nb);
  struct link *bin = &m->bins[i];
  struct link *l = first_at_least(m, bin, nb);
  if (l != bin)
    return pick_of_size(list_chunk(l));
  int j = first_bin_from(m, i + 1);
  return j < 0 ? NULL : smallest_in(m, (unsigned)j);
}

/* Replaces the designated victim by c; the old one goes to its bin. */
static void replace_dv(struct seg *m, struct chunk *c, size_t s) {
  if (m->dv_size)
    insert_chunk(m, m->dv, m->dv_size);
  m->dv = c;
  m->dv_size = s;
}

/* Hands out nb bytes of free chunk c (s bytes, already unlinked), splitting off the rest
 * when it makes a chunk: to the victim for small requests, else to a bin. */
static inline void *use_chunk(struct seg *m, struct chunk *c, size_t s, size_t nb,
                              bool rest_to_dv) {
  size_t r = s - nb;
  m->n_inuse++;
  if (r < MIN_CHUNK) {
    c->head |= CINUSE;
    chunk_at(c, s)->head |= PINUSE;
    return chunk2mem(c);
  }
  m->splits++;
  c->head = nb | PINUSE | CINUSE;
  struct chunk *rest = chunk_at(c, nb);
  set_free(rest, r); /* the chunk after rest already has PINUSE clear: c was free */
  if (rest_to_dv && m->use_dv)
    replace_dv(m, rest, r);
  else
    insert_chunk(m, rest, r);
  return chunk2mem(c);
}

static inline void *carve_dv(struct seg *m, size_t nb) {
  struct chunk *c = m->dv;
  size_t r = m->dv_size - nb;
  m->dv_hits++;
  m->n_inuse++;
  if (r < MIN_CHUNK) { /* take all of it */
    c->head = m->dv_size | PINUSE | CINUSE;
    chunk_at(c, m->dv_size)->head |= PINUSE;
    m->dv = NULL;
    m->dv_size = 0;
    return chunk2mem(c);
  }
  m->splits++;
  c->head = nb | PINUSE | CINUSE;
  m->dv = chunk_at(c, nb);
  m->dv_size = r;
  set_free(m->dv, r);
  return chunk2mem(c);
}

/* Frees chunk p (marked in use): merges it with free neighbours, the victim or the top. */
static inline void free_chunk(struct seg *m, struct chunk *p) {
  size_t s = csize(p);
  struct chunk *next = chunk_at(p, s);
  if (!(p->head & PINUSE)) {
    size_t ps = p->prev_foot;
    p = chunk_before(p, ps);
    s += ps;
    m->coalesces++;
    if (p != m->dv) {
      unlink_chunk(m, p, ps);
    } else if (next != m->top && (next->head & CINUSE)) {
      m->dv_size = s;
      set_free(p, s);
      next->head &= ~(size_t)PINUSE;
      return;
    }
  }
  if (next == m->top) { /* the break falls */
    m->top = p;
    if (p == m->dv) {
      m->dv = NULL;
      m->dv_size = 0;
    }
    return;
  }
  if (!(next->head & CINUSE)) {
    size_t ns = csize(next);
    m->coalesces++;
    if (next == m->dv) {
      m->dv = p;
      m->dv_size = s + ns;
      set_free(p, s + ns);
      return;
    }
    unlink_chunk(m, next, ns);
    s += ns;
    set_free(p, s);
    if (p == m->dv) {
      m->dv_size = s;
      return;
    }
  } else {
    next->head &= ~(size_t)PINUSE;
    set_free(p, s);
  }
  insert_chunk(m, p, s);
}

/* The chunk before the top is always in use (a free one merges into the top), so a chunk
 * carved from the top has PINUSE. The top's own header is never written or read: the
 * break is the end of the last chunk's payload, 8 bytes past the top. */
static void *carve_top(struct seg *m, size_t nb) {
  struct chunk *c = m->top;
  if (nb >= (size_t)(m->end - (char *)c))
    return NULL;
  m->top = chunk_at(c, nb);
  c->head = nb | PINUSE | CINUSE;
  m->n_inuse++;
  m->top_carves++;
  return chunk2mem(c);
}

/* Takes the first chunk of small bin i (not empty) whole: its size is the request's, or 16
 * bytes over, too little to split off. */
static void *take_small(struct seg *m, unsigned i) {
  size_t s = (size_t)i << 4;
  struct chunk *c = list_chunk(m->bins[i].next);
  m->n_free--;
  unlink_small(m, c, s);
  c->head |= CINUSE;
  chunk_at(c, s)->head |= PINUSE;
  m->n_inuse++;
  m->exact_hits++;
  return chunk2mem(c);
}

/* Small request that neither its bin nor the next one up can serve: the victim, else a
 * split of the smallest chunk of the first non-empty bigger bin; NULL sends it to the top. */
static void *malloc_small(struct seg *m, size_t nb) {
  if (nb <= m->dv_size)
    return carve_dv(m, nb);
  int j = first_bin_from(m, (unsigned)(nb >> 4) + 2);
  if (j < 0)
    return NULL;
  struct chunk *c = smallest_in(m, (unsigned)j);
  size_t s = csize(c);
  unlink_chunk(m, c, s);
  return use_chunk(m, c, s, nb, true);
}

/* Large request: best fit from the bins, or the victim when it fits as well; NULL sends
 * it to the top. */
static void *malloc_large(struct seg *m, size_t nb) {
  struct chunk *c = find_large(m, nb);
  if (c && (m->dv_size < nb || csize(c) < m->dv_size)) {
    size_t s = csize(c);
    unlink_chunk(m, c, s);
    return use_chunk(m, c, s, nb, false);
  }
  if (nb <= m->dv_size)
    return carve_dv(m, nb);
  return NULL;
}

/* Every request but a small-bin hit. Out of line, so that the hit's path in plain_malloc
 * saves no registers. */
static __attribute__((noinline)) void *malloc_rest(struct seg *m, size_t nb) {
  void *p = nb < SMALL_LIMIT ? malloc_small(m, nb) : malloc_large(m, nb);
  return p ? p : carve_top(m, nb);
}

/* A small request first tries its exact bin i and bin i + 1 (bits 0..31 of map[0]): one
 * shift and mask, and the bin to take chosen by arithmetic, not a branch. */
static inline void *plain_malloc(struct seg *m, size_t size) {
  if (size > m->max_size) /* also keeps request_size from overflowing */
    return NULL;
  size_t nb = request_size(size);
  if (nb < SMALL_LIMIT) {
    unsigned i = (unsigned)(nb >> 4);
    uint32_t bits = (uint32_t)m->map[0] >> i;
    if (bits & 3)
      return take_small(m, i + (~bits & 1));
  }
  return malloc_rest(m, nb);
}

static void plain_free(struct seg *m, void *p) {
  m->n_inuse--;
  free_chunk(m, mem2chunk(p));
}

/* ---- hardening (harden=...) ---- */

static uint64_t tag_of(const struct seg *m, const struct chunk *c, size_t s) {
  return m->key ^ ((uintptr_t)c * 0x9E3779B97F4A7C15ull) ^ s;
}

static uint64_t canary_of(const struct seg *m, const char *p) {
  return m->key ^ ((uintptr_t)p * 0xD6E8FEB86659FD93ull);
}

static void detect(struct seg *m, uint64_t *counter, const char *what) {
  (*counter)++;
  m->last_detection = what;
}

/* Tags the new block p of size requested bytes and puts its canary after them. */
static void *arm(struct seg *m, char *p, size_t size) {
  if (p && (m->harden & H_FREE)) {
    struct chunk *c = mem2chunk(p);
    chunk_at(c, csize(c))->prev_foot = tag_of(m, c, csize(c));
  }
  if (p && (m->harden & H_CANARY)) {
    uint64_t v = canary_of(m, p);
    memcpy(p + size, &v, sizeof v);
  }
  return p;
}

/* The hardened entry points stay out of line: the plain path must not save registers or
 * grow for them. */
static __attribute__((noinline)) void *hard_malloc(struct seg *m, size_t size) {
  if (size > m->max_size - m->extra)
    return NULL;
  return arm(m, plain_malloc(m, size + m->extra), size);
}

/* Why p is not a live block of this heap, or NULL when it is. Only bytes below the top are
 * read, so any pointer is safe to judge. */
static const char *free_problem(struct seg *m, char *p, uint64_t **ret_counter) {
  struct chunk *c = mem2chunk(p);
  *ret_counter = &m->invalid_frees;
  if (((uintptr_t)p & 15) || p < m->heap + 2 * HEADER || (char *)c > (char *)m->top)
    return "an invalid free (not a block of this heap)";
  if ((char *)c == (char *)m->top) /* a block freed next to the top went back to it */
    return "a double or invalid free (the top of the heap starts there)";
  size_t s = csize(c);
  bool fits = s >= MIN_CHUNK && s <= (size_t)((char *)m->top - (char *)c);
  if (fits && (c->head & CINUSE) && chunk_at(c, s)->prev_foot == tag_of(m, c, s))
    return NULL;
  if (fits && !(c->head & CINUSE)) {
    *ret_counter = &m->double_frees;
    return "a double free (the chunk is not in use)";
  }
  return "an invalid free (no live block starts there)";
}

/* A bad pointer is counted and left alone; a tripped canary is counted, the block freed.
 * The tag is wiped and the in-use bit cleared (even when the chunk merges into a neighbour
 * or the top), so freeing p again is a detected double free. */
static __attribute__((noinline)) void hard_free(struct seg *m, char *p, size_t size) {
  struct chunk *c = mem2chunk(p);
  if (m->harden & H_FREE) {
    uint64_t *counter;
    const char *bad = free_problem(m, p, &counter);
    if (bad) {
      detect(m, counter, bad);
      return;
    }
    chunk_at(c, csize(c))->prev_foot = 0;
  }
  uint64_t v = canary_of(m, p);
  if ((m->harden & H_CANARY) && memcmp(p + size, &v, sizeof v) != 0)
    detect(m, &m->canary_failures, "an overrun (the canary after the block changed)");
  c->head &= ~(size_t)CINUSE;
  plain_free(m, p);
}

/* Always moves: a stale pointer to the old block then meets free's checks. A bad old
 * pointer is counted and left alone; the caller gets a new block. */
static __attribute__((noinline)) void *hard_realloc(struct seg *m, char *p, size_t old_size,
                                                    size_t new_size) {
  uint64_t *counter;
  const char *bad = (m->harden & H_FREE) ? free_problem(m, p, &counter) : NULL;
  if (bad) {
    detect(m, counter, bad);
    return hard_malloc(m, new_size);
  }
  char *q = hard_malloc(m, new_size);
  if (!q)
    return NULL;
  memcpy(q, p, old_size < new_size ? old_size : new_size);
  hard_free(m, p, old_size);
  return q;
}

static void *segregated_malloc(void *st, size_t size) {
  struct seg *m = st;
  if (__builtin_expect(m->harden != 0, 0))
    return hard_malloc(m, size);
  return plain_malloc(m, size);
}

static void segregated_free(void *st, void *p, size_t size) {
  struct seg *m = st;
  if (!p)
    return;
  if (__builtin_expect(m->harden != 0, 0))
    hard_free(m, p, size);
  else
    plain_free(m, p);
}

/* Cuts in-use chunk p (s bytes) down to nb and frees the rest when it makes a chunk. */
static void shrink_chunk(struct seg *m, struct chunk *p, size_t s, size_t nb) {
  size_t r = s - nb;
  if (r < MIN_CHUNK)
    return;
  set_inuse(p, nb);
  struct chunk *rest = chunk_at(p, nb);
  rest->head = r | PINUSE | CINUSE;
  m->splits++;
  free_chunk(m, rest);
}

/* Grows in-use chunk p into the victim that follows it; the rest stays the victim. */
static void grow_into_dv(struct seg *m, struct chunk *p, size_t s, size_t nb) {
  size_t total = s + m->dv_size;
  size_t r = total - nb;
  if (r < MIN_CHUNK) {
    set_inuse(p, total);
    chunk_at(p, total)->head |= PINUSE;
    m->dv = NULL;
    m->dv_size = 0;
    return;
  }
  set_inuse(p, nb);
  m->dv = chunk_at(p, nb);
  m->dv_size = r;
  set_free(m->dv, r);
}

/* Resizes in-use chunk p to nb bytes without moving it; false when it cannot. */
static bool resize_in_place(struct seg *m, struct chunk *p, size_t nb) {
  size_t s = csize(p);
  if (nb <= s) {
    shrink_chunk(m, p, s, nb);
    return true;
  }
  struct chunk *next = chunk_at(p, s);
  if (next == m->top) {
    if (nb - s >= (size_t)(m->end - (char *)next))
      return false;
    set_inuse(p, nb);
    m->top = chunk_at(p, nb);
    return true;
  }
  if (next->head & CINUSE)
    return false;
  size_t ns = csize(next);
  if (nb - s > ns)
    return false;
  if (next == m->dv) {
    grow_into_dv(m, p, s, nb);
    return true;
  }
  unlink_chunk(m, next, ns);
  set_inuse(p, s + ns);
  chunk_at(p, s + ns)->head |= PINUSE;
  shrink_chunk(m, p, s + ns, nb);
  return true;
}

static void *segregated_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct seg *m = st;
  if (m->harden)
    return hard_realloc(m, p, old_size, new_size);
  if (new_size > m->max_size)
    return NULL;
  struct chunk *c = mem2chunk(p);
  if (resize_in_place(m, c, request_size(new_size)))
    return p;
  void *q = plain_malloc(m, new_size);
  if (!q)
    return NULL;
  size_t keep = csize(c) - HEADER;
  if (old_size < keep)
    keep = old_size;
  if (new_size < keep)
    keep = new_size;
  memcpy(q, p, keep);
  plain_free(m, p);
  return q;
}

/* Over-allocates by alignment + a minimum chunk, then frees the slack on both sides. */
static void *memalign_chunk(struct seg *m, size_t alignment, size_t size) {
  if (size > m->max_size || alignment >= m->max_chunk)
    return NULL;
  size_t nb = request_size(size);
  char *mem = plain_malloc(m, nb + alignment + MIN_CHUNK - HEADER);
  if (!mem)
    return NULL;
  struct chunk *p = mem2chunk(mem);
  uintptr_t a = ((uintptr_t)mem + alignment - 1) & ~(uintptr_t)(alignment - 1);
  if ((char *)a != mem) {
    size_t lead = (size_t)(a - (uintptr_t)mem);
    if (lead < MIN_CHUNK) /* the leading slack must make a chunk of its own */
      lead += alignment;
    size_t s = csize(p);
    struct chunk *q = chunk_at(p, lead);
    q->head = (s - lead) | PINUSE | CINUSE;
    set_inuse(p, lead);
    free_chunk(m, p);
    p = q;
  }
  shrink_chunk(m, p, csize(p), nb);
  return chunk2mem(p);
}

static void *segregated_memalign(void *st, size_t alignment, size_t size) {
  struct seg *m = st;
  if (alignment <= ALLOC_MIN_ALIGN)
    return segregated_malloc(st, size);
  if (!m->harden)
    return memalign_chunk(m, alignment, size);
  if (size > m->max_size - m->extra)
    return NULL;
  return arm(m, memalign_chunk(m, alignment, size + m->extra), size);
}

/* Hardened, the canary starts right after the requested bytes, and the tag takes the
 * 8 bytes past the chunk that a plain block may use. */
static size_t segregated_usable_size(void *st, void *p, size_t size) {
  struct seg *m = st;
  if (m->harden & H_CANARY)
    return size;
  return csize(mem2chunk(p)) - HEADER - (m->harden ? HEADER : 0);
}

/* Empties the heap. An empty bin's ring is already empty, so only the bins the bitmap
 * marks need resetting: a reset costs O(non-empty bins), not O(bins). */
static void reset_heap(struct seg *m) {
  for (int i = first_bin_from(m, 0); i >= 0; i = first_bin_from(m, (unsigned)i + 1)) {
    ring_init(&m->bins[i]);
    clear_bin(m, (unsigned)i);
  }
  m->top = (struct chunk *)m->heap;
  m->dv = NULL;
  m->dv_size = 0;
  m->n_inuse = m->n_free = 0;
}

/* splitmix64's finaliser: a key that differs per instance (no system randomness here). */
static uint64_t mix(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

static int segregated_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                           char *err, size_t errlen) {
  static const char *const classes[] = {"fine", "pow2", NULL};
  static const char *const onoff[] = {"on", "off", NULL};
  static const char *const hardens[] = {"0", "canary", "free", "1", NULL};
  int cls, victim, harden;
  if (alloc_arg_choice(args, "classes", classes, &cls, err, errlen) ||
      alloc_arg_choice(args, "victim", onoff, &victim, err, errlen) ||
      alloc_arg_choice(args, "harden", hardens, &harden, err, errlen))
    return -1;
  uintptr_t lo = alloc_align_up((uintptr_t)base, 16);
  uintptr_t hi = ((uintptr_t)base + size) & ~(uintptr_t)15;
  size_t room = hi > lo ? (size_t)(hi - lo) : 0;
  /* The bin table only spans the sizes the region can hold. */
  struct seg probe = {.sub_bits = cls == 0 ? 3 : 0};
  unsigned n_bins = room < SMALL_LIMIT ? N_SMALL : large_index(&probe, room) + 1;
  size_t header = alloc_align_up(sizeof(struct seg) + n_bins * sizeof(struct link), 16);
  if (room < header + 2 * MIN_CHUNK) {
    snprintf(err, errlen, "region of %zu bytes is too small (needs at least %zu)", size,
             header + 2 * MIN_CHUNK + 15);
    return -1;
  }
  struct seg *m = (struct seg *)lo;
  *m = probe;
  m->base = base;
  m->end = (char *)hi;
  m->heap = (char *)lo + header;
  m->max_chunk = (size_t)(m->end - m->heap);
  m->max_size = m->max_chunk - 16 - HEADER; /* request_size(max_size) == max_chunk - 16 */
  m->n_bins = n_bins;
  m->use_dv = victim == 0;
  m->harden = (unsigned)harden; /* the choices' order makes the bits */
  m->extra = (m->harden & H_FREE ? HEADER : 0) + (m->harden & H_CANARY ? 8 : 0);
  m->key = mix((uintptr_t)m ^ size);
  for (unsigned i = 0; i < n_bins; i++)
    ring_init(&m->bins[i]);
  m->top = (struct chunk *)m->heap;
  *ret_st = m;
  return 0;
}

static void segregated_reset(void *st) {
  reset_heap(st);
}

/* Hardened, the tag and canary count as metadata, and the detections replace the counters
 * of bin hits. */
static void segregated_stats(void *st, struct alloc_stats *ret) {
  struct seg *m = st;
  size_t n_free = m->n_free + (m->dv_size != 0);
  *ret = (struct alloc_stats){
      .footprint = (size_t)((char *)m->top + HEADER - m->base),
      .meta_bytes =
          (size_t)(m->heap - m->base) + m->n_inuse * (HEADER + m->extra) + n_free * 2 * HEADER,
      .n_counters = 6,
      .counter = {{"splits", m->splits},
                  {"coalesces", m->coalesces},
                  {"exact_hits", m->exact_hits},
                  {"victim_hits", m->dv_hits},
                  {"top_carves", m->top_carves},
                  {"bin_walk_steps", m->walk_steps}},
      .detections = m->double_frees + m->invalid_frees + m->canary_failures,
      .detection = m->last_detection,
  };
  if (m->harden) {
    ret->counter[2] = (struct alloc_counter){"double_frees", m->double_frees};
    ret->counter[3] = (struct alloc_counter){"invalid_frees", m->invalid_frees};
    ret->counter[5] = (struct alloc_counter){"canary_failures", m->canary_failures};
  }
}

static void segregated_destroy(void *st) {
  (void)st;
}

const struct alloc_methods alloc_segregated = {
    .name = "segregated",
    .summary = "dlmalloc-style segregated fits: exact small bins, sorted large bins, bitmap",
    .params = segregated_params,
    .variants = segregated_variants,
    .init = segregated_init,
    .malloc = segregated_malloc,
    .free = segregated_free,
    .realloc = segregated_realloc,
    .memalign = segregated_memalign,
    .reset = segregated_reset,
    .usable_size = segregated_usable_size,
    .stats = segregated_stats,
    .destroy = segregated_destroy,
};
