/*
 * The system module's footprint: it follows the break and glibc's own mapped chunks instead
 * of asking mallinfo2 after every op (allocators/system.c). After each op of a random mix
 * (small blocks, blocks far above the mmap threshold, aligned and resized ones) the figure
 * must equal mallinfo2's arena + hblkhd exactly.
 */
#include "alloc.h"
#include "testutil.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>

#define SLOTS 64

static uint64_t rng = 88172645463325252ull;

static uint64_t next(void) { /* xorshift64: the same sequence on every run */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Mostly small sizes; one in eight above glibc's 128 KiB mmap threshold, which rises as
 * mapped chunks are freed, so half of those are above its 32 MiB ceiling: always mapped. */
static size_t pick_size(void) {
  if (next() % 8)
    return next() % 4096;
  size_t base = next() % 2 ? (size_t)256 << 10 : (size_t)33 << 20;
  return base + next() % (1 << 20);
}

static int matches(const struct alloc_methods *m, void *st) {
  struct alloc_stats s;
  m->stats(st, &s);
  struct mallinfo2 mi = mallinfo2();
  return s.footprint == mi.arena + mi.hblkhd;
}

static void step(const struct alloc_methods *m, void *st, void **slot, size_t *size) {
  size_t n = pick_size();
  if (!*slot) {
    *slot = next() % 4 ? m->malloc(st, n) : m->memalign(st, (size_t)64 << (next() % 8), n);
    *size = n;
  } else if (next() % 3 == 0 && n > 0) {
    void *p = m->realloc(st, *slot, *size, n);
    if (p) {
      *slot = p;
      *size = n;
    }
  } else {
    m->free(st, *slot, *size);
    *slot = NULL;
  }
}

int main(void) {
  const struct alloc_methods *m = alloc_find("system");
  struct alloc_args args;
  char err[256];
  void *st;
  if (!EXPECT(m && alloc_args_parse(m, NULL, ',', &args, err, sizeof err) == 0 &&
              m->init(&st, NULL, 0, &args, err, sizeof err) == 0))
    return test_finish();
  void *slot[SLOTS] = {0};
  size_t size[SLOTS] = {0};
  int mismatches = 0, mapped_seen = 0;
  for (int i = 0; i < 3000; i++) {
    int k = (int)(next() % SLOTS);
    step(m, st, &slot[k], &size[k]);
    mismatches += !matches(m, st);
    mapped_seen |= mallinfo2().hblkhd > 0;
  }
  for (int k = 0; k < SLOTS; k++)
    m->free(st, slot[k], size[k]);
  mismatches += !matches(m, st);
  EXPECT(mismatches == 0);
  EXPECT(mapped_seen); /* the mix did reach glibc's mapped chunks */
  m->destroy(st);
  return test_finish();
}
