/*
 * Multi-threaded replay: one real thread per trace thread, each running its own ops in the
 * recorded order. Ops on one slot keep the trace's order across threads through a per-slot
 * sequence number (an acquire load to wait, a release store to pass it on), so a block
 * freed by another thread is freed only after it was allocated, and producer-consumer
 * patterns replay faithfully, with no lock in the hot path.
 */
#ifndef THREADS_H
#define THREADS_H

#include "replay.h"

/* An op as a thread replays it: its slot is the block's own (no slot is reused, so a new
 * block never waits for the thread that freed an earlier block in the same place). */
struct mt_step {
  struct trace_op op;
  size_t index; /* in the trace, for messages */
  uint32_t seq; /* the op's place among the ops on its block */
};

struct mt_plan {
  uint32_t n_threads;
  struct mt_step **steps; /* per thread */
  size_t *n_steps;
  uint32_t *seq;    /* per block: ops done on it so far */
  uint32_t n_slots; /* blocks, plus slot 0 for free(NULL): the size of ptr arrays */
};

/* Splits t by thread. Returns 0, or -1 when out of memory. */
int mt_plan_make(const struct trace *t, struct mt_plan *ret);
void mt_plan_free(struct mt_plan *p);

/* The blocks the plan leaves live at its end, in its own slots. Returns 0 or -1. */
int mt_plan_leftovers(const struct mt_plan *p, struct replay_leftovers *ret);

/* Replays on plan->n_threads threads (ptr has plan->n_slots entries), timed from their common start
 * to the last one's end. Returns seconds. */
double mt_replay(const struct alloc_methods *m, void *st, const struct mt_plan *p, void **ptr,
                 uint64_t *ret_failed);

/* The same under the checker (chk: the checker, shared by the threads). Returns 0, or -1
 * with the first problem found in msg and its op in *ret_bad_op. */
int mt_replay_checked(const struct alloc_methods *m, void *st, const struct trace *t,
                      const struct mt_plan *p, void **ptr, struct check *chk, char *msg,
                      size_t msglen, size_t *ret_bad_op);

#endif
