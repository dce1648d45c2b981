/*
 * The allocator module interface.
 *
 * A module is one file in allocators/ that exports one `const struct alloc_methods`.
 * The harness hands every module the same region (obtained once with mmap) and replays
 * a trace through the table below. Modules keep all of their state inside an instance
 * created by init (`void *st`), never in file statics, so tests can make fresh instances.
 *
 * Contract, for every module:
 * - init may not assume the region is zeroed: it may hold the previous run's bytes.
 * - Every block returned is aligned to at least ALLOC_MIN_ALIGN bytes, lies inside the
 *   region (unless the module declares ALLOC_OUTSIDE_REGION) and overlaps no live block.
 * - malloc(0) returns a unique block that can be freed, as glibc does.
 * - free(NULL) does nothing. free and realloc receive the size the trace requested for
 *   the block (as Lua's lua_Alloc and C23's free_sized do); a module may ignore it.
 * - realloc is only called with p != NULL and new_size > 0 (the harness turns
 *   realloc(NULL, n) into malloc and realloc(p, 0) into free, as the C library does).
 *   On failure it returns NULL and leaves the old block untouched.
 * - Running out of region is a result, not an error: return NULL.
 * - All hooks except memalign, calloc and reset are mandatory.
 * - A module keeps its own state (the instance) and all metadata inside the region, so that
 *   footprint counts it, unless it declares ALLOC_OUTSIDE_REGION.
 * - A module grows lazily from the start of the region, as sbrk does (a top pointer), and
 *   never formats the whole region at init: footprint is the highest offset it has used.
 * - It never calls the C library's allocator or mmap, and never writes outside the region.
 */
#ifndef ALLOC_H
#define ALLOC_H

#include <stddef.h>
#include <stdint.h>

#define ALLOC_MIN_ALIGN 16

/* flags */
#define ALLOC_OUTSIDE_REGION 1u /* blocks come from elsewhere (reference allocators) */
#define ALLOC_THREAD_SAFE 2u    /* hooks may be called from several threads at once */
#define ALLOC_UNCHECKED 4u      /* a measuring stick, not an allocator: never checked */

/* One module parameter: `--alloc=NAME:key=value`. Tables end with a {NULL} entry. */
struct alloc_param {
  const char *key;
  const char *def;  /* default value, as text */
  const char *help; /* one line for `./harness --list` */
};

/* The parameters of one instance, defaults filled in and keys already validated. */
struct alloc_args {
  int n;
  const char *key[32];
  const char *val[32];
};

/* A module-specific counter reported through stats (cache hits, pages released, ...). */
struct alloc_counter {
  const char *name;
  uint64_t value;
};

#define ALLOC_MAX_COUNTERS 6

struct alloc_stats {
  /* Highest region offset handed out or used for metadata, plus one (METRICS.md "break"),
   * or, for a module outside the region, the bytes it holds from the OS. */
  size_t footprint;
  size_t meta_bytes; /* bytes of headers, tags, bitmaps and tables currently in use */
  int n_counters;
  struct alloc_counter counter[ALLOC_MAX_COUNTERS];
  /* Hardened modules: bad frees and overruns detected (and survived) so far, and what the
   * latest one was ("a double free", a static string), or NULL. The measured pass compares
   * the count after every op to report the trace line of the first detection. */
  uint64_t detections;
  const char *detection;
};

struct alloc_methods {
  const char *name;
  const char *summary; /* one line for `./harness --list` */
  const struct alloc_param *params;
  /* Parameter strings ("fit=best", ...) the conformance suite runs besides the defaults,
   * NULL-terminated; may be NULL. */
  const char *const *variants;
  unsigned flags;

  /* Creates an instance over [base, base + size). Returns 0, or -1 with a message in err. */
  int (*init)(void **ret_st, void *base, size_t size, const struct alloc_args *args, char *err,
              size_t errlen);
  void *(*malloc)(void *st, size_t size);
  void (*free)(void *st, void *p, size_t size);
  void *(*realloc)(void *st, void *p, size_t old_size, size_t new_size);
  /* Optional: alignment is a power of two above ALLOC_MIN_ALIGN. When NULL, the harness
   * over-allocates with malloc and aligns inside the block. */
  void *(*memalign)(void *st, size_t alignment, size_t size);
  /* Optional: zeroed block of size bytes. When NULL, the harness calls malloc and memset. */
  void *(*calloc)(void *st, size_t size);
  /* Optional: frees every live block at once (arena reset). When NULL, the harness frees
   * the live blocks one by one. */
  void (*reset)(void *st);
  /* Bytes the caller may use at p, a block of `size` requested bytes (a module that keeps
   * no size of its own may derive it from size). */
  size_t (*usable_size)(void *st, void *p, size_t size);
  void (*stats)(void *st, struct alloc_stats *ret);
  void (*destroy)(void *st);
};

/* The registry (generated from allocators/meson.build): every module, NULL-terminated. */
extern const struct alloc_methods *const alloc_registry[];

const struct alloc_methods *alloc_find(const char *name);

/* Fills ret with m's defaults, then with the "key=value" pairs of spec (separated by sep;
 * spec may be NULL). Unknown keys and missing values are errors. Keeps pointers into spec:
 * spec must outlive ret. Returns 0, or -1 with a message in err. */
int alloc_args_parse(const struct alloc_methods *m, char *spec, char sep, struct alloc_args *ret,
                     char *err, size_t errlen);

/* Parameter helpers for init. Each returns 0, or -1 with a message in err naming the key. */
const char *alloc_arg(const struct alloc_args *args, const char *key);
int alloc_arg_size(const struct alloc_args *args, const char *key, size_t *ret, char *err,
                   size_t errlen);
int alloc_arg_choice(const struct alloc_args *args, const char *key, const char *const *choices,
                     int *ret, char *err, size_t errlen);

/* For wrapper modules (locked, lru): the "inner.KEY=VALUE" pairs of args become the inner
 * module's "KEY=VALUE" parameters, written into spec (spec_len bytes, which must outlive ret)
 * and parsed into ret. Returns 0, or -1 with a message in err. */
int alloc_inner_args(const struct alloc_methods *inner, const struct alloc_args *args, char *spec,
                     size_t spec_len, struct alloc_args *ret, char *err, size_t errlen);

/* For reference modules: loads a shared library once per process with dlopen
 * (RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND, so its malloc does not replace the C library's)
 * and resolves names[i] into fns[i] (names is NULL-terminated). Returns 0, or -1 with
 * the loader's message in err. */
int alloc_load_library(const char *lib, const char *const *names, void **fns, char *err,
                       size_t errlen);

/* Small helpers every module needs. */
static inline size_t alloc_align_up(size_t n, size_t a) {
  return (n + a - 1) & ~(a - 1);
}

static inline int alloc_is_pow2(size_t n) {
  return n && !(n & (n - 1));
}

#endif
