/*
 * locked: makes any module safe for threads by holding one mutex around every call into
 * it (`locked:inner=slab,inner.KEY=VALUE`). Its row next to the inner module's, on a
 * multi-threaded trace, is the price of the coarsest possible thread safety: one lock, no
 * per-thread caches. The counter `contended` counts acquisitions that had to wait.
 * Cost: the inner module's, plus an uncontended lock and unlock (about 20 ns) per call.
 */
#include "alloc.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct locked {
  pthread_mutex_t lock;
  const struct alloc_methods *inner;
  void *ist;
  uint64_t contended;
  char spec[512]; /* the inner module's parameters, which its args point into */
};

static const struct alloc_param locked_params[] = {
    {"inner", "implicit", "the module to wrap (any registered name)"},
    {0},
};

static const char *const locked_variants[] = {"inner=bump", NULL};

static int locked_init(void **ret_st, void *base, size_t size, const struct alloc_args *args,
                       char *err, size_t errlen) {
  size_t head = alloc_align_up(sizeof(struct locked), 64);
  if (size < head * 2) {
    snprintf(err, errlen, "region too small");
    return -1;
  }
  struct locked *l = base;
  memset(l, 0, sizeof *l);
  const char *name = alloc_arg(args, "inner");
  l->inner = name ? alloc_find(name) : NULL;
  if (!l->inner || l->inner->init == locked_init) {
    snprintf(err, errlen, "parameter 'inner': '%s' is not a module to wrap", name ? name : "");
    return -1;
  }
  struct alloc_args ia;
  if (alloc_inner_args(l->inner, args, l->spec, sizeof l->spec, &ia, err, errlen))
    return -1;
  char *rest = (char *)base + head;
  if (l->inner->init(&l->ist, rest, size - head, &ia, err, errlen))
    return -1;
  pthread_mutex_init(&l->lock, NULL);
  *ret_st = l;
  return 0;
}

static void lock(struct locked *l) {
  if (pthread_mutex_trylock(&l->lock) != 0) {
    pthread_mutex_lock(&l->lock);
    l->contended++; /* under the lock */
  }
}

static void *locked_malloc(void *st, size_t size) {
  struct locked *l = st;
  lock(l);
  void *p = l->inner->malloc(l->ist, size);
  pthread_mutex_unlock(&l->lock);
  return p;
}

static void locked_free(void *st, void *p, size_t size) {
  struct locked *l = st;
  lock(l);
  l->inner->free(l->ist, p, size);
  pthread_mutex_unlock(&l->lock);
}

static void *locked_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  struct locked *l = st;
  lock(l);
  void *q = l->inner->realloc(l->ist, p, old_size, new_size);
  pthread_mutex_unlock(&l->lock);
  return q;
}

static size_t locked_usable_size(void *st, void *p, size_t size) {
  struct locked *l = st;
  lock(l);
  size_t n = l->inner->usable_size(l->ist, p, size);
  pthread_mutex_unlock(&l->lock);
  return n;
}

/* The inner module's figures, its footprint moved by the wrapper's own head. */
static void locked_stats(void *st, struct alloc_stats *ret) {
  struct locked *l = st;
  lock(l);
  l->inner->stats(l->ist, ret);
  uint64_t contended = l->contended;
  pthread_mutex_unlock(&l->lock);
  if (!(l->inner->flags & ALLOC_OUTSIDE_REGION))
    ret->footprint += alloc_align_up(sizeof *l, 64);
  ret->meta_bytes += sizeof *l;
  if (ret->n_counters < ALLOC_MAX_COUNTERS)
    ret->counter[ret->n_counters++] = (struct alloc_counter){"contended", contended};
}

static void locked_destroy(void *st) {
  struct locked *l = st;
  l->inner->destroy(l->ist);
  pthread_mutex_destroy(&l->lock);
}

const struct alloc_methods alloc_locked = {
    .name = "locked",
    .summary = "one mutex around any inner module: thread safety at its coarsest",
    .params = locked_params,
    .variants = locked_variants,
    .flags = ALLOC_THREAD_SAFE,
    .init = locked_init,
    .malloc = locked_malloc,
    .free = locked_free,
    .realloc = locked_realloc,
    .usable_size = locked_usable_size,
    .stats = locked_stats,
    .destroy = locked_destroy,
};
