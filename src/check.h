/*
 * The checker: verifies every block a module returns during a checked replay. A block must
 * be aligned (16 bytes, or the alignment asked for), lie inside the region, be usable for at
 * least the size requested, overlap no live block (a shadow bitmap of the region, one bit per
 * 16 bytes) and keep its contents (a pattern derived from the block, written at allocation
 * and verified at free and realloc). calloc blocks must come zeroed.
 * Threads of a multi-threaded replay each use a copy of one struct check (their own msg;
 * the shadow and the seeds are shared, the shadow updated atomically).
 */
#ifndef CHECK_H
#define CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"

struct check {
  const struct alloc_methods *m;
  void *st;
  char *base; /* region, or NULL for modules outside it */
  size_t size;
  uint64_t *shadow;
  size_t shadow_bytes;
  uint64_t *seed; /* per slot: the pattern's seed */
  char msg[256];  /* the violation, when a call returns -1 */
};

int check_init(struct check *c, const struct alloc_methods *m, void *st, void *base, size_t size,
               uint32_t n_slots);
void check_fini(struct check *c);

/* A new block p for slot of size bytes (calloc: must be zero; align: 0 or the alignment
 * asked for). Returns 0, or -1 with the problem in c->msg. */
int check_new(struct check *c, uint32_t slot, void *p, size_t size, size_t align, int zeroed,
              uint64_t seed);

/* Before free or realloc: the block must hold its pattern; it leaves the shadow. */
int check_release(struct check *c, uint32_t slot, void *p, size_t size);

/* After a realloc from old_size to new_size returned p: the first bytes must have moved
 * with it; the block enters the shadow with a pattern over all of it. */
int check_moved(struct check *c, uint32_t slot, void *p, size_t old_size, size_t new_size);

#endif
