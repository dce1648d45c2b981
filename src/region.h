/* The region: one mmap'd range that every module in a run manages in turn. This is the
 * only code that maps, unmaps or advises memory. */
#ifndef REGION_H
#define REGION_H

#include <stddef.h>

struct region {
  void *base;
  size_t size;
};

/* The region's base is a multiple of this (1 GiB), on every run. */
#define REGION_ALIGN ((size_t)1 << 30)

/* Reserves size bytes (MAP_NORESERVE: pages cost nothing until touched), at a base aligned
 * to REGION_ALIGN. Returns 0, or -1 with a message in err. */
int region_map(struct region *ret, size_t size, char *err, size_t errlen);

/* Returns every page to the kernel, so the next module starts on untouched zero pages, and
 * makes every page accessible again. */
void region_reset(const struct region *r);

/* Bytes of the first `upto` bytes of the region that are resident (mincore). */
size_t region_resident(const struct region *r, size_t upto);

void region_unmap(struct region *r);

/* Memory for the harness's own large arrays (ops, pointers, sizes), mapped on the side so
 * that the C library's heap holds only what a trace asks of the `system` row. Zeroed.
 * resize keeps the contents; both return NULL when out of memory. */
void *region_side_alloc(size_t bytes);
void *region_side_resize(void *p, size_t old_bytes, size_t new_bytes);
void region_side_free(void *p, size_t bytes);

#endif
