/* Per-thread caches' slow paths: claiming a cache, refills and flushes, reset and stats. */
#include "tcache.h"

/* Process-wide sources of unique numbers, for threads and for instances (renewed at reset),
 * so a thread's entry can never name a destroyed or reset instance. Not instance state. */
static uint64_t last_instance, last_thread;

/* initial-exec: the allocator library is linked into executables. */
static _Thread_local uint64_t tls_thread __attribute__((tls_model("initial-exec")));

static uint64_t thread_number(void) {
  if (!tls_thread)
    tls_thread = __atomic_add_fetch(&last_thread, 1, __ATOMIC_RELAXED);
  return tls_thread;
}

void tc_init(struct tc_state *t, void *heap, const struct tc_ops *ops, unsigned n_classes,
             size_t cache) {
  t->heap = heap;
  t->ops = ops;
  t->n_classes = n_classes;
  t->cache = cache;
  t->refills = t->flushes = t->waits = t->old_hits = 0;
  t->n_slots = 0;
  pthread_mutex_init(&t->lock, NULL);
}

void tc_destroy(struct tc_state *t) {
  pthread_mutex_destroy(&t->lock);
}

uint64_t tc_forget(struct tc_state *t) {
  for (unsigned i = 0; i < t->n_slots; i++)
    t->old_hits += t->slot[i].tc->hits;
  t->n_slots = 0;
  t->cache_meta = 0;
  return __atomic_add_fetch(&last_instance, 1, __ATOMIC_RELAXED);
}

/* Under the lock: a new cache, a list per class of at most a slab's or chunk's worth. */
static struct tcache *cache_make(struct tc_state *t) {
  size_t bytes = alloc_align_up(sizeof(struct tcache) + t->n_classes * sizeof(struct tc_bin), 64);
  size_t room;
  struct tcache *tc = t->ops->alloc(t->heap, bytes, &room);
  if (!tc)
    return NULL;
  tc->hits = 0;
  for (unsigned c = 0; c < t->n_classes; c++) {
    size_t span = t->ops->span(t->heap, c);
    tc->bin[c] = (struct tc_bin){NULL, 0, (uint32_t)(t->cache < span ? t->cache : span)};
  }
  t->cache_meta += room;
  return tc;
}

/* noinline: the callers' fast paths then save no registers for it. */
__attribute__((noinline)) struct tcache *tc_claim(struct tc_state *t, uint64_t id,
                                                  struct tc_entry *e) {
  uint64_t me = thread_number();
  struct tcache *tc = NULL;
  int settled = 1;
  tc_lock(t);
  for (unsigned i = 0; i < t->n_slots && !tc; i++)
    if (t->slot[i].thread == me)
      tc = t->slot[i].tc;
  if (!tc && t->cache && t->n_slots < TC_MAX_THREADS) {
    tc = cache_make(t);
    if (tc) {
      t->slot[t->n_slots].thread = me;
      t->slot[t->n_slots++].tc = tc;
    }
    settled = tc != NULL;
  }
  tc_unlock(t);
  if (settled) {
    e->id = id;
    e->tc = tc;
  }
  return tc;
}

int tc_drain(struct tc_state *t, struct tcache *tc) {
  int any = 0;
  for (unsigned c = 0; c < t->n_classes; c++) {
    struct tc_bin *b = &tc->bin[c];
    if (b->head) {
      t->ops->give(t->heap, c, b->head, b->n);
      any = 1;
    }
    b->head = NULL;
    tc_set_count(&b->n, 0);
  }
  return any;
}

__attribute__((noinline)) void *tc_refill(struct tc_state *t, struct tcache *tc, size_t c) {
  struct tc_bin *b = &tc->bin[c];
  uint32_t want = (b->limit + 1) / 2, n;
  tc_lock(t);
  t->refills++;
  void *head = t->ops->grab(t->heap, c, want, &n);
  if (!head && t->ops->drain_when_out && tc_drain(t, tc))
    head = t->ops->grab(t->heap, c, want, &n);
  tc_unlock(t);
  if (!head)
    return NULL;
  b->head = *(void **)head;
  tc_set_count(&b->n, n - 1);
  return head;
}

__attribute__((noinline)) void tc_flush_put(struct tc_state *t, struct tcache *tc, size_t c,
                                            void *blk) {
  struct tc_bin *b = &tc->bin[c];
  uint32_t give = (b->limit + 1) / 2;
  tc_lock(t);
  t->flushes++;
  b->head = t->ops->give(t->heap, c, b->head, give);
  tc_unlock(t);
  *(void **)blk = b->head;
  b->head = blk;
  tc_set_count(&b->n, b->n - give + 1);
}

void tc_stats(const struct tc_state *t, struct alloc_stats *ret) {
  ret->meta_bytes += t->cache_meta;
  if (!t->cache)
    return;
  uint64_t hits = t->old_hits, cached = 0;
  for (unsigned s = 0; s < t->n_slots; s++) {
    const struct tcache *tc = t->slot[s].tc;
    hits += __atomic_load_n(&tc->hits, __ATOMIC_RELAXED);
    for (unsigned c = 0; c < t->n_classes; c++)
      cached += __atomic_load_n(&tc->bin[c].n, __ATOMIC_RELAXED);
  }
  ret->counter[1] = (struct alloc_counter){"cache_hits", hits};
  ret->counter[2] = (struct alloc_counter){"depot_refills", t->refills};
  ret->counter[3] = (struct alloc_counter){"depot_flushes", t->flushes};
  ret->counter[4] = (struct alloc_counter){"lock_waits", t->waits};
  ret->counter[5] = (struct alloc_counter){"cached", cached};
}
