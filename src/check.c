/* The checker's shadow bitmap and content patterns. */
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define GRANULE 16

int check_init(struct check *c, const struct alloc_methods *m, void *st, void *base, size_t size,
               uint32_t n_slots) {
  *c = (struct check){.m = m, .st = st};
  c->seed = calloc(n_slots ? n_slots : 1, sizeof *c->seed);
  if (!c->seed)
    return -1;
  if (!base)
    return 0;
  c->base = base;
  c->size = size;
  /* Sparse like the region itself: only the shadow of touched parts costs memory. */
  c->shadow_bytes = alloc_align_up(size / GRANULE / 8 + 8, 4096);
  void *sh = mmap(NULL, c->shadow_bytes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (sh == MAP_FAILED) {
    free(c->seed);
    return -1;
  }
  c->shadow = sh;
  return 0;
}

void check_fini(struct check *c) {
  if (c->shadow)
    munmap(c->shadow, c->shadow_bytes);
  free(c->seed);
  c->shadow = NULL;
  c->seed = NULL;
}

static int problem(struct check *c, const char *fmt, size_t a, size_t b) {
  snprintf(c->msg, sizeof c->msg, fmt, a, b);
  return -1;
}

/* Granules [first, last] of a block; a zero-size block still owns one. */
static void granules(const struct check *c, const void *p, size_t size, size_t *first,
                     size_t *last) {
  size_t off = (size_t)((const char *)p - c->base);
  *first = off / GRANULE;
  *last = (off + (size ? size : 1) - 1) / GRANULE;
}

/* Sets (on) or clears the granules of a block; returns 1 if any was already set (on). */
static int shadow_mark(struct check *c, const void *p, size_t size, int on) {
  size_t g, last;
  granules(c, p, size, &g, &last);
  int clash = 0;
  while (g <= last) {
    size_t w = g / 64, b = g % 64;
    size_t n = 64 - b;
    if (n > last - g + 1)
      n = last - g + 1;
    uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << b;
    /* Atomic: threads of a multi-threaded replay share the shadow's words. */
    if (on)
      clash |= (__atomic_fetch_or(&c->shadow[w], mask, __ATOMIC_RELAXED) & mask) != 0;
    else
      __atomic_fetch_and(&c->shadow[w], ~mask, __ATOMIC_RELAXED);
    g += n;
  }
  return clash;
}

static uint64_t pattern_word(uint64_t seed, size_t w) {
  return (seed + w + 1) * 0x9E3779B97F4A7C15ull;
}

static void pattern_write(void *p, size_t size, uint64_t seed) {
  unsigned char *b = p;
  size_t w = 0;
  for (; (w + 1) * 8 <= size; w++) {
    uint64_t v = pattern_word(seed, w);
    memcpy(b + w * 8, &v, 8);
  }
  uint64_t v = pattern_word(seed, w);
  memcpy(b + w * 8, &v, size - w * 8);
}

/* Offset of the first byte that differs from the pattern, or size if none does. */
static size_t pattern_check(const void *p, size_t size, uint64_t seed) {
  const unsigned char *b = p;
  size_t w = 0;
  for (; (w + 1) * 8 <= size; w++) {
    uint64_t v = pattern_word(seed, w);
    if (memcmp(b + w * 8, &v, 8) != 0)
      break;
  }
  uint64_t v = pattern_word(seed, w);
  const unsigned char *vb = (const unsigned char *)&v;
  for (size_t i = w * 8; i < size && i < w * 8 + 8; i++)
    if (b[i] != vb[i - w * 8])
      return i;
  return size;
}

static int check_place(struct check *c, void *p, size_t size, size_t align) {
  size_t a = align > ALLOC_MIN_ALIGN ? align : ALLOC_MIN_ALIGN;
  /* The reference allocators follow C's rule instead: a block of fewer than 16 bytes need
   * only be aligned for the objects that fit in it (jemalloc, mimalloc and tcmalloc give
   * 8 bytes to an 8-byte block). */
  if (!c->base && align <= ALLOC_MIN_ALIGN && size < ALLOC_MIN_ALIGN)
    for (a = ALLOC_MIN_ALIGN; a > 1 && a > (size ? size : 1);)
      a /= 2;
  if ((uintptr_t)p % a)
    return problem(c, "block %#zx is not aligned to %zu bytes", (size_t)(uintptr_t)p, a);
  size_t usable = c->m->usable_size(c->st, p, size);
  if (usable < size)
    return problem(c, "usable size %zu is less than the %zu bytes requested", usable, size);
  if (!c->base)
    return 0;
  char *q = p;
  if (q < c->base || q > c->base + c->size || size > (size_t)(c->base + c->size - q) ||
      (size == 0 && q == c->base + c->size))
    return problem(c, "block at region offset %zd of %zu bytes lies outside the region",
                   (size_t)(q - c->base), size);
  if (shadow_mark(c, p, size, 1))
    return problem(c, "block at region offset %zu of %zu bytes overlaps a live block",
                   (size_t)(q - c->base), size);
  return 0;
}

int check_new(struct check *c, uint32_t slot, void *p, size_t size, size_t align, int zeroed,
              uint64_t seed) {
  if (check_place(c, p, size, align))
    return -1;
  if (zeroed) {
    const unsigned char *b = p;
    for (size_t i = 0; i < size; i++)
      if (b[i])
        return problem(c, "calloc block is not zeroed at byte %zu of %zu", i, size);
  }
  c->seed[slot] = seed;
  pattern_write(p, size, seed);
  return 0;
}

int check_release(struct check *c, uint32_t slot, void *p, size_t size) {
  size_t bad = pattern_check(p, size, c->seed[slot]);
  if (bad < size)
    return problem(c, "contents of a live block changed at byte %zu of %zu", bad, size);
  if (c->base)
    shadow_mark(c, p, size, 0);
  return 0;
}

int check_moved(struct check *c, uint32_t slot, void *p, size_t old_size, size_t new_size) {
  if (check_place(c, p, new_size, 0))
    return -1;
  size_t keep = old_size < new_size ? old_size : new_size;
  size_t bad = pattern_check(p, keep, c->seed[slot]);
  if (bad < keep)
    return problem(c, "realloc lost the block's contents at byte %zu of %zu", bad, keep);
  pattern_write(p, new_size, c->seed[slot]);
  return 0;
}
