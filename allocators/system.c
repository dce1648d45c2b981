/*
 * system: the C library's own malloc (glibc's ptmalloc2 on Debian), called directly, as the
 * reference row. It lives outside the region; its footprint is what it holds from the OS by
 * its own statistics (mallinfo2: the main arena's bytes plus mmapped chunks).
 */
#include "alloc.h"

#include <malloc.h>
#include <stdlib.h>

static int sys_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                    char *err, size_t errlen) {
  (void)base;
  (void)size;
  (void)args;
  (void)err;
  (void)errlen;
  *ret_st = NULL;
  return 0;
}

static void *sys_malloc(void *st, size_t size) {
  (void)st;
  return malloc(size);
}

static void sys_free(void *st, void *p, size_t size) {
  (void)st;
  (void)size;
  free(p);
}

static void *sys_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  (void)st;
  (void)old_size;
  return realloc(p, new_size);
}

static void *sys_memalign(void *st, size_t alignment, size_t size) {
  (void)st;
  void *p;
  return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}

static void *sys_calloc(void *st, size_t size) {
  (void)st;
  return calloc(1, size);
}

static size_t sys_usable_size(void *st, void *p, size_t size) {
  (void)st;
  (void)size;
  return malloc_usable_size(p);
}

static void sys_stats(void *st, struct alloc_stats *ret) {
  (void)st;
  struct mallinfo2 mi = mallinfo2();
  *ret = (struct alloc_stats){.footprint = mi.arena + mi.hblkhd};
}

static void sys_destroy(void *st) {
  (void)st;
}

/* In a sanitizer build (make sanitize) the C library's malloc is ASan's, which aborts on a
 * size it cannot serve; traces ask for such sizes, and the row must see NULL, as from glibc.
 * Leak checking is off: the blocks a trace never frees are this module's by design.
 * ASan reads this hook at start-up; other builds never call it. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "allocator_may_return_null=1:detect_leaks=0";
}

const struct alloc_methods alloc_system = {
    .name = "system",
    .summary = "the C library's malloc (glibc), as the reference row",
    .flags = ALLOC_OUTSIDE_REGION | ALLOC_THREAD_SAFE,
    .init = sys_init,
    .malloc = sys_malloc,
    .free = sys_free,
    .realloc = sys_realloc,
    .memalign = sys_memalign,
    .calloc = sys_calloc,
    .usable_size = sys_usable_size,
    .stats = sys_stats,
    .destroy = sys_destroy,
};
