/*
 * system: the C library's own malloc (glibc's ptmalloc2 on Debian), called directly, as the
 * reference row. It lives outside the region; its footprint is what it holds from the OS by
 * its own statistics (mallinfo2: the main arena's bytes plus mmapped chunks).
 *
 * mallinfo2 walks every bin, so calling it after each op (as the measured pass does) costs
 * O(free chunks) per op: hours on a real trace. So it is asked once, at init, and the
 * footprint follows from there: the main arena grows and shrinks only by moving the break,
 * read with sbrk(0) (no system call), and each chunk glibc maps for itself is known by the
 * IS_MMAPPED bit (2) of its header, the word below the block, whose mapping is that size
 * plus the alignment slack in the word below (prev_size), as glibc counts it for hblkhd.
 * The hooks add and subtract those mappings as blocks come and go. Checked against
 * mallinfo2 on every bundled trace: the same figures.
 * Under AddressSanitizer or ThreadSanitizer the blocks are the sanitizer's, and stats asks
 * mallinfo2 every time.
 * Weakness: a main arena that falls back to mmap when the break cannot grow goes unseen.
 */
#include "alloc.h"

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SYS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SYS_SANITIZED 1
#endif
#endif
#ifndef SYS_SANITIZED
#define SYS_SANITIZED 0
#endif

struct sys {
  uintptr_t brk0;    /* the break at init */
  size_t footprint0; /* mallinfo2's figure at init */
  ptrdiff_t mapped;  /* bytes of the chunks glibc mapped since init, net */
};

/* Adds (sign 1) or subtracts (sign -1) the mapping of a block glibc mapped for itself. */
static void account(struct sys *s, void *p, int sign) {
  if (SYS_SANITIZED || !p)
    return;
  /* The header lies outside the block as C sees it: reach it through its address. */
  const size_t *header = (const size_t *)((uintptr_t)p - sizeof(size_t));
  if (header[0] & 2)
    /* Atomic: threaded replays call the hooks from several threads (rarely this line). */
    __atomic_fetch_add(&s->mapped, sign * (ptrdiff_t)((header[0] & ~(size_t)7) + header[-1]),
                       __ATOMIC_RELAXED);
}

static int sys_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                    char *err, size_t errlen) {
  (void)base;
  (void)size;
  (void)args;
  struct sys *s = malloc(sizeof *s);
  if (!s) {
    snprintf(err, errlen, "system: out of memory for the instance");
    return -1;
  }
  struct mallinfo2 mi = mallinfo2();
  *s = (struct sys){.brk0 = (uintptr_t)sbrk(0), .footprint0 = mi.arena + mi.hblkhd};
  *ret_st = s;
  return 0;
}

static void *sys_malloc(void *st, size_t size) {
  void *p = malloc(size);
  account(st, p, 1);
  return p;
}

static void sys_free(void *st, void *p, size_t size) {
  (void)size;
  account(st, p, -1);
  free(p);
}

static void *sys_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  (void)old_size;
  account(st, p, -1);
  void *q = realloc(p, new_size);
  account(st, q ? q : p, 1); /* on failure the old block stays */
  return q;
}

static void *sys_memalign(void *st, size_t alignment, size_t size) {
  void *p;
  if (posix_memalign(&p, alignment, size) != 0)
    return NULL;
  account(st, p, 1);
  return p;
}

static void *sys_calloc(void *st, size_t size) {
  void *p = calloc(1, size);
  account(st, p, 1);
  return p;
}

static size_t sys_usable_size(void *st, void *p, size_t size) {
  (void)st;
  (void)size;
  return malloc_usable_size(p);
}

static void sys_stats(void *st, struct alloc_stats *ret) {
  struct sys *s = st;
  size_t fp;
  if (SYS_SANITIZED) {
    struct mallinfo2 mi = mallinfo2();
    fp = mi.arena + mi.hblkhd;
  } else {
    fp = s->footprint0 + ((uintptr_t)sbrk(0) - s->brk0) +
         (size_t)__atomic_load_n(&s->mapped, __ATOMIC_RELAXED);
  }
  *ret = (struct alloc_stats){.footprint = fp};
}

static void sys_destroy(void *st) {
  free(st);
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
