/*
 * tcache: per-thread caches in front of a locked depot, shared by slab and pool (a helper
 * like alloc.c, not a module).
 *
 * Each thread that calls an instance gets a cache of its own, carved from the instance's
 * heap at its first call: per size class, an intrusive list of at most `limit` blocks.
 * malloc pops from it and free pushes onto it with no lock and no atomic read-modify-write;
 * an empty list takes half a list's worth from the depot under the lock, a full one gives
 * half back. A thread finds its cache through a thread-local entry naming the instance by a
 * number unique in the process (renewed by tc_forget at reset), so an entry left from a
 * destroyed instance, even one made again at the same address, is never used. Only the owner
 * touches a cache's lists; its counts and hits are written with relaxed atomic stores (plain
 * moves on x86) so that stats may read them. Up to TC_MAX_THREADS threads per instance get a
 * cache; further ones use the depot, under the lock, for every call.
 *
 * The pop and push fast paths are inline here, so each module keeps them in its own
 * malloc and free; refills, flushes and claims are out of line in tcache.c and reach the
 * module's depot through struct tc_ops, one indirect call per batch of blocks.
 */
#ifndef TCACHE_H
#define TCACHE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"

#define TC_MAX_THREADS 64 /* threads with a cache, per instance; others always lock */

/* A thread's cache of one class: freed blocks on an intrusive list, at most `limit`. */
struct tc_bin {
  void *head;
  uint32_t n, limit;
};

/* One thread's caches, a block of the instance's heap (a 64-byte multiple, so no two
 * threads' caches share a cache line). */
struct tcache {
  uint64_t hits;
  struct tc_bin bin[];
};

/* A thread's thread-local entry: the instance it last called and its cache there (NULL:
 * none). Each module defines its own, so a thread calling a slab and a pool keeps both. */
struct tc_entry {
  uint64_t id;
  struct tcache *tc;
};

/* What the caches need from a module's depot; all are called under the lock. */
struct tc_ops {
  /* `bytes` for a new cache, NULL when the heap is full; the bytes the block occupies in
   * *ret_room (for meta_bytes). */
  void *(*alloc)(void *heap, size_t bytes, size_t *ret_room);
  /* Blocks of class c one slab or chunk holds: a list never caches more. */
  size_t (*span)(const void *heap, unsigned c);
  /* Up to `want` blocks of class c as an intrusive list, their number in *ret_n. */
  void *(*grab)(void *heap, unsigned c, uint32_t want, uint32_t *ret_n);
  /* The first n blocks of the list at `list` back to class c; returns the rest. */
  void *(*give)(void *heap, unsigned c, void *list, uint32_t n);
  /* 1: a refill that finds the depot out of memory first returns all of the thread's cached
   * blocks (they may free a slab another class can use), then tries again. */
  int drain_when_out;
};

/* An instance's caches: the depot's lock and what it guards. A module places it on lines
 * of its own (`_Alignas(64)`), with its own fields the lock guards after it, and keeps the
 * id tc_forget hands out among the fields every call reads, away from the lock's line. */
struct tc_state {
  pthread_mutex_t lock; /* the depot */
  void *heap;           /* the module's instance, passed to ops */
  const struct tc_ops *ops;
  size_t cache; /* blocks per class per thread; 0: no caches */
  unsigned n_classes;
  unsigned n_slots;
  uint64_t refills, flushes, waits;
  uint64_t old_hits; /* of caches a reset dropped */
  size_t cache_meta; /* bytes of thread caches */
  struct {
    uint64_t thread; /* the owner's number */
    struct tcache *tc;
  } slot[TC_MAX_THREADS];
};

/* Sets up t for an instance with n_classes classes and `cache` blocks per class per thread
 * (0: off); its id comes from tc_forget. */
void tc_init(struct tc_state *t, void *heap, const struct tc_ops *ops, unsigned n_classes,
             size_t cache);
void tc_destroy(struct tc_state *t);

/* The caches lived in the heap (init, reset): returns the instance's new id, unique in the
 * process, so that every thread's entry goes stale. Their hits are kept, so call it before
 * the heap goes. */
uint64_t tc_forget(struct tc_state *t);

/* The calling thread's cache, made at its first call and recorded in *e; NULL when caching
 * is off or all slots are taken (the thread then always uses the depot) or the heap is full
 * (tried again at the next call). */
struct tcache *tc_claim(struct tc_state *t, uint64_t id, struct tc_entry *e);

/* Under the lock: every cached block of tc back to the depot. Returns 1 if there was any. */
int tc_drain(struct tc_state *t, struct tcache *tc);

/* List c is empty: half a list's worth from the depot, then one of them (NULL: out). */
void *tc_refill(struct tc_state *t, struct tcache *tc, size_t c);

/* List c is full: half of it goes back to the depot, then blk joins it. */
void tc_flush_put(struct tc_state *t, struct tcache *tc, size_t c, void *blk);

/* Under the lock: the caches' bytes into meta_bytes and, with caches on, their figures into
 * counters 1 to 5 (cache_hits, depot_refills, depot_flushes, lock_waits, cached). */
void tc_stats(const struct tc_state *t, struct alloc_stats *ret);

/* Inline: every locked call takes these, and the fast paths below must stay in the
 * module's malloc and free. */
static inline void tc_lock(struct tc_state *t) {
  if (pthread_mutex_trylock(&t->lock) != 0) {
    pthread_mutex_lock(&t->lock);
    t->waits++; /* under the lock */
  }
}

static inline void tc_unlock(struct tc_state *t) {
  pthread_mutex_unlock(&t->lock);
}

static inline void tc_set_count(uint32_t *n, uint32_t v) {
  __atomic_store_n(n, v, __ATOMIC_RELAXED);
}

/* The thread's cache is ready when its entry names the instance (id) and holds one. */
static inline struct tcache *tc_ready(const struct tc_entry *e, uint64_t id) {
  return e->id == id ? e->tc : NULL;
}

/* The thread's cache, claimed if its entry names another instance. */
static inline struct tcache *tc_mine(struct tc_entry *e, struct tc_state *t, uint64_t id) {
  if (e->id == id)
    return e->tc;
  return tc_claim(t, id, e);
}

static inline void *tc_pop(struct tc_state *t, struct tcache *tc, size_t c) {
  struct tc_bin *b = &tc->bin[c];
  void *blk = b->head;
  if (!blk)
    return tc_refill(t, tc, c);
  b->head = *(void **)blk;
  tc_set_count(&b->n, b->n - 1);
  __atomic_store_n(&tc->hits, tc->hits + 1, __ATOMIC_RELAXED);
  return blk;
}

static inline void tc_push(struct tc_state *t, struct tcache *tc, size_t c, void *blk) {
  struct tc_bin *b = &tc->bin[c];
  if (b->n == b->limit) {
    tc_flush_put(t, tc, c, blk);
    return;
  }
  *(void **)blk = b->head;
  b->head = blk;
  tc_set_count(&b->n, b->n + 1);
}

/* For a module's grab and give: the list loops around its own one-block take and put.
 * Inline with a constant function, the compiler calls (or inlines) that function directly,
 * so a batch costs what a loop written in the module would. */
static inline void *tc_grab_each(void *(*take)(void *heap, unsigned c), void *heap, unsigned c,
                                 uint32_t want, uint32_t *ret_n) {
  void *head = NULL;
  uint32_t n = 0;
  for (; n < want; n++) {
    void *blk = take(heap, c);
    if (!blk)
      break;
    *(void **)blk = head;
    head = blk;
  }
  *ret_n = n;
  return head;
}

static inline void *tc_give_each(void (*put)(void *heap, unsigned c, void *blk), void *heap,
                                 unsigned c, void *list, uint32_t n) {
  for (uint32_t k = 0; k < n; k++) {
    void *blk = list;
    list = *(void **)blk;
    put(heap, c, blk);
  }
  return list;
}

#endif
