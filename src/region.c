/* The region's mmap, reset and residency queries. */
#include "region.h"

#include "alloc.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int region_map(struct region *ret, size_t size, char *err, size_t errlen) {
  long page = sysconf(_SC_PAGESIZE);
  if (size < (size_t)page || size % (size_t)page) {
    snprintf(err, errlen, "region size %zu is not a positive multiple of the page size %ld", size,
             page);
    return -1;
  }
  /* The base is aligned to REGION_ALIGN whatever address the kernel picks: a module that
   * places blocks by address alignment (buddy) would otherwise give other figures on every
   * run. Reserve the slack too, then give back what lies outside. */
  size_t slack = size <= SIZE_MAX - REGION_ALIGN ? REGION_ALIGN : 0;
  char *p = mmap(NULL, size + slack, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    snprintf(err, errlen, "cannot reserve a region of %zu bytes: %s", size, strerror(errno));
    return -1;
  }
  char *base = (char *)alloc_align_up((uintptr_t)p, slack ? REGION_ALIGN : 1);
  if (base > p)
    munmap(p, (size_t)(base - p));
  if (slack && base + size < p + size + slack)
    munmap(base + size, (size_t)(p + size + slack - (base + size)));
  ret->base = base;
  ret->size = size;
  return 0;
}

void region_reset(const struct region *r) {
  /* A module with guard pages (slab guard=1) lifts them itself at destroy; this covers one
   * that never got there (a failed check in --no-fork mode). */
  mprotect(r->base, r->size, PROT_READ | PROT_WRITE);
  madvise(r->base, r->size, MADV_DONTNEED);
}

/* In chunks of a fixed vector: a region of terabytes must not need a vector of gigabytes. */
size_t region_resident(const struct region *r, size_t upto) {
  unsigned char vec[1 << 14];
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  if (upto > r->size)
    upto = r->size;
  size_t pages = (upto + page - 1) / page, n = 0;
  for (size_t at = 0; at < pages; at += sizeof vec) {
    size_t k = pages - at < sizeof vec ? pages - at : sizeof vec;
    if (mincore((char *)r->base + at * page, k * page, vec) != 0)
      return 0;
    for (size_t i = 0; i < k; i++)
      n += vec[i] & 1;
  }
  return n * page;
}

void region_unmap(struct region *r) {
  if (r->base)
    munmap(r->base, r->size);
  r->base = NULL;
}

static size_t side_bytes(size_t bytes) {
  return alloc_align_up(bytes ? bytes : 1, 4096);
}

/* Large arrays ask for transparent huge pages: far fewer page faults while they fill. The
 * mapping's size decides (an array of 24-byte elements sized to whole huge pages ends a
 * few bytes short of them). */
static void *side_advise(void *p, size_t bytes) {
  if (p != MAP_FAILED && side_bytes(bytes) >= (2u << 20))
    madvise(p, side_bytes(bytes), MADV_HUGEPAGE);
  return p == MAP_FAILED ? NULL : p;
}

void *region_side_alloc(size_t bytes) {
  void *p =
      mmap(NULL, side_bytes(bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return side_advise(p, bytes);
}

void *region_side_resize(void *p, size_t old_bytes, size_t new_bytes) {
  if (!p)
    return region_side_alloc(new_bytes);
  void *q = mremap(p, side_bytes(old_bytes), side_bytes(new_bytes), MREMAP_MAYMOVE);
  return side_advise(q, new_bytes);
}

void region_side_free(void *p, size_t bytes) {
  if (p)
    munmap(p, side_bytes(bytes));
}
