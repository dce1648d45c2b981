/*
 * jemalloc: Jason Evans's jemalloc 5.3 (Debian's libjemalloc2), as a reference row.
 * Loaded with dlopen (RTLD_DEEPBIND) into the cell's process and called through its
 * non-standard API (mallocx, dallocx, rallocx, sallocx), the code programs linked with it
 * run. jemalloc uses initial-exec TLS, which dlopen can only place when the process starts
 * with GLIBC_TUNABLES=glibc.rtld.optional_static_tls set large enough: the harness re-executes
 * itself with it (src/main.c). Outside the region; footprint is stats.mapped, refreshed
 * through the "epoch" mallctl.
 */
#include "alloc.h"

enum { JE_MALLOCX, JE_DALLOCX, JE_RALLOCX, JE_SALLOCX, JE_MALLCTL, JE_N };

static const char *const je_names[] = {"mallocx", "dallocx", "rallocx", "sallocx", "mallctl", NULL};

#define JE_ZERO 0x40 /* MALLOCX_ZERO */

/* The library's functions, resolved once per process. */
static struct {
  void *(*mallocx)(size_t, int);
  void (*dallocx)(void *, int);
  void *(*rallocx)(void *, size_t, int);
  size_t (*sallocx)(const void *, int);
  int (*mallctl)(const char *, void *, size_t *, void *, size_t);
} je;

static int je_init(void **ret_st, void *base, size_t size, const struct alloc_args *args, char *err,
                   size_t errlen) {
  (void)base;
  (void)size;
  (void)args;
  void *fns[JE_N];
  if (!je.mallocx) {
    if (alloc_load_library("libjemalloc.so.2", je_names, fns, err, errlen))
      return -1;
    *(void **)&je.mallocx = fns[JE_MALLOCX];
    *(void **)&je.dallocx = fns[JE_DALLOCX];
    *(void **)&je.rallocx = fns[JE_RALLOCX];
    *(void **)&je.sallocx = fns[JE_SALLOCX];
    *(void **)&je.mallctl = fns[JE_MALLCTL];
  }
  *ret_st = NULL;
  return 0;
}

/* mallocx is undefined for size 0: malloc(0) is served as malloc(1). */
static size_t nonzero(size_t size) {
  return size ? size : 1;
}

static void *je_malloc_hook(void *st, size_t size) {
  (void)st;
  return je.mallocx(nonzero(size), 0);
}

/* Unsized, as C programs free: sdallocx would need the alignment flags of aligned
 * blocks too, which free(3) callers do not have. */
static void je_free_hook(void *st, void *p, size_t size) {
  (void)st;
  (void)size;
  if (p)
    je.dallocx(p, 0);
}

static void *je_realloc_hook(void *st, void *p, size_t old_size, size_t new_size) {
  (void)st;
  (void)old_size;
  return je.rallocx(p, new_size, 0);
}

static void *je_memalign_hook(void *st, size_t alignment, size_t size) {
  (void)st;
  return je.mallocx(nonzero(size), __builtin_ctzll(alignment)); /* MALLOCX_LG_ALIGN */
}

static void *je_calloc_hook(void *st, size_t size) {
  (void)st;
  return je.mallocx(nonzero(size), JE_ZERO);
}

static size_t je_usable_hook(void *st, void *p, size_t size) {
  (void)st;
  (void)size;
  return je.sallocx(p, 0);
}

static void je_stats_hook(void *st, struct alloc_stats *ret) {
  (void)st;
  uint64_t epoch = 1;
  size_t len = sizeof epoch, mapped = 0;
  je.mallctl("epoch", &epoch, &len, &epoch, sizeof epoch);
  len = sizeof mapped;
  je.mallctl("stats.mapped", &mapped, &len, NULL, 0);
  *ret = (struct alloc_stats){.footprint = mapped};
}

static void je_destroy(void *st) {
  (void)st;
}

const struct alloc_methods alloc_jemalloc = {
    .name = "jemalloc",
    .summary = "jemalloc 5.3 (libjemalloc.so.2, dlopen), reference",
    .flags = ALLOC_OUTSIDE_REGION | ALLOC_THREAD_SAFE,
    .init = je_init,
    .malloc = je_malloc_hook,
    .free = je_free_hook,
    .realloc = je_realloc_hook,
    .memalign = je_memalign_hook,
    .calloc = je_calloc_hook,
    .usable_size = je_usable_hook,
    .stats = je_stats_hook,
    .destroy = je_destroy,
};
