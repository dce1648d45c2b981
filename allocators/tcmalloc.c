/*
 * tcmalloc: Google's thread-caching malloc from gperftools 2.10 (Debian's
 * libtcmalloc-minimal4), as a reference row. Loaded with dlopen (RTLD_DEEPBIND) into the
 * cell's process and called through its own entry points (tc_malloc, tc_free,
 * tc_realloc, tc_memalign, tc_calloc), the code programs linked with it run. Outside the
 * region; footprint is what its page heap holds from the OS by its own statistics
 * (generic.heap_size less tcmalloc.pageheap_unmapped_bytes).
 */
#include "alloc.h"

enum { TC_MALLOC, TC_FREE, TC_REALLOC, TC_MEMALIGN, TC_CALLOC, TC_SIZE, TC_PROP, TC_N };

static const char *const tc_names[] = {"tc_malloc",
                                       "tc_free",
                                       "tc_realloc",
                                       "tc_memalign",
                                       "tc_calloc",
                                       "tc_malloc_size",
                                       "MallocExtension_GetNumericProperty",
                                       NULL};

/* The library's functions, resolved once per process. */
static struct {
  void *(*malloc)(size_t);
  void (*free)(void *);
  void *(*realloc)(void *, size_t);
  void *(*memalign)(size_t, size_t);
  void *(*calloc)(size_t, size_t);
  size_t (*size)(void *);
  int (*property)(const char *, size_t *);
} tc;

static int tc_init(void **ret_st, void *base, size_t size, const struct alloc_args *args, char *err,
                   size_t errlen) {
  (void)base;
  (void)size;
  (void)args;
  void *fns[TC_N];
  if (!tc.malloc) {
    if (alloc_load_library("libtcmalloc_minimal.so.4", tc_names, fns, err, errlen))
      return -1;
    *(void **)&tc.malloc = fns[TC_MALLOC];
    *(void **)&tc.free = fns[TC_FREE];
    *(void **)&tc.realloc = fns[TC_REALLOC];
    *(void **)&tc.memalign = fns[TC_MEMALIGN];
    *(void **)&tc.calloc = fns[TC_CALLOC];
    *(void **)&tc.size = fns[TC_SIZE];
    *(void **)&tc.property = fns[TC_PROP];
  }
  *ret_st = NULL;
  return 0;
}

static void *tc_malloc_hook(void *st, size_t size) {
  (void)st;
  return tc.malloc(size);
}

static void tc_free_hook(void *st, void *p, size_t size) {
  (void)st;
  (void)size;
  tc.free(p); /* unsized, as C programs free: sized free would need aligned blocks' alignment */
}

static void *tc_realloc_hook(void *st, void *p, size_t old_size, size_t new_size) {
  (void)st;
  (void)old_size;
  return tc.realloc(p, new_size);
}

static void *tc_memalign_hook(void *st, size_t alignment, size_t size) {
  (void)st;
  return tc.memalign(alignment, size);
}

static void *tc_calloc_hook(void *st, size_t size) {
  (void)st;
  return tc.calloc(1, size);
}

static size_t tc_usable_hook(void *st, void *p, size_t size) {
  (void)st;
  (void)size;
  return tc.size(p);
}

static void tc_stats_hook(void *st, struct alloc_stats *ret) {
  (void)st;
  size_t heap = 0, unmapped = 0;
  tc.property("generic.heap_size", &heap);
  tc.property("tcmalloc.pageheap_unmapped_bytes", &unmapped);
  *ret = (struct alloc_stats){.footprint = heap - unmapped};
}

static void tc_destroy(void *st) {
  (void)st;
}

const struct alloc_methods alloc_tcmalloc = {
    .name = "tcmalloc",
    .summary = "gperftools tcmalloc 2.10 (libtcmalloc_minimal.so.4, dlopen), reference",
    .flags = ALLOC_OUTSIDE_REGION | ALLOC_THREAD_SAFE,
    .init = tc_init,
    .malloc = tc_malloc_hook,
    .free = tc_free_hook,
    .realloc = tc_realloc_hook,
    .memalign = tc_memalign_hook,
    .calloc = tc_calloc_hook,
    .usable_size = tc_usable_hook,
    .stats = tc_stats_hook,
    .destroy = tc_destroy,
};
