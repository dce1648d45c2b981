/* Thread plans, the per-slot turn-taking, and the threaded replay loops. */
#include "threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Gives every block its own slot: `block[s]` is the block now in trace slot s. */
static int number_blocks(const struct trace *t, uint32_t *block, uint32_t *ret_n) {
  uint32_t n = 1;
  for (size_t i = 0; i < t->n_ops; i++) {
    const struct trace_op *o = &t->ops[i];
    if (o->kind == OP_MALLOC || o->kind == OP_CALLOC || o->kind == OP_MEMALIGN) {
      if (n == UINT32_MAX)
        return -1;
      block[o->slot] = n++;
    }
  }
  *ret_n = n;
  return 0;
}

int mt_plan_make(const struct trace *t, struct mt_plan *ret) {
  *ret = (struct mt_plan){.n_threads = t->n_threads};
  uint32_t *block = region_side_alloc(t->n_slots * sizeof *block);
  ret->n_steps = region_side_alloc(t->n_threads * sizeof *ret->n_steps);
  ret->steps = region_side_alloc(t->n_threads * sizeof *ret->steps);
  if (!block || !ret->n_steps || !ret->steps || number_blocks(t, block, &ret->n_slots))
    return -1;
  memset(block, 0, t->n_slots * sizeof *block);
  ret->seq = region_side_alloc(ret->n_slots * sizeof *ret->seq);
  for (size_t i = 0; i < t->n_ops; i++)
    ret->n_steps[t->ops[i].thread] += t->ops[i].kind != OP_RESET;
  for (uint32_t k = 0; k < t->n_threads; k++)
    if (ret->n_steps[k] &&
        !(ret->steps[k] = region_side_alloc(ret->n_steps[k] * sizeof(struct mt_step))))
      return -1;
  size_t *fill = region_side_alloc(t->n_threads * sizeof *fill);
  if (!fill || !ret->seq)
    return -1;
  uint32_t next = 1;
  for (size_t i = 0; i < t->n_ops; i++) {
    struct trace_op o = t->ops[i];
    if (o.kind == OP_RESET)
      continue;
    if (o.kind == OP_MALLOC || o.kind == OP_CALLOC || o.kind == OP_MEMALIGN)
      block[o.slot] = next++;
    o.slot = o.slot ? block[o.slot] : 0;
    ret->steps[o.thread][fill[o.thread]++] = (struct mt_step){o, i, ret->seq[o.slot]++};
  }
  region_side_free(fill, t->n_threads * sizeof *fill);
  region_side_free(block, t->n_slots * sizeof *block);
  return 0;
}

void mt_plan_free(struct mt_plan *p) {
  for (uint32_t k = 0; p->steps && k < p->n_threads; k++)
    region_side_free(p->steps[k], p->n_steps[k] * sizeof(struct mt_step));
  region_side_free(p->steps, p->n_threads * sizeof *p->steps);
  region_side_free(p->n_steps, p->n_threads * sizeof *p->n_steps);
  region_side_free(p->seq, p->n_slots * sizeof *p->seq);
  *p = (struct mt_plan){0};
}

int mt_plan_leftovers(const struct mt_plan *p, struct replay_leftovers *ret) {
  *ret = (struct replay_leftovers){.cap = p->n_slots};
  uint64_t *size = region_side_alloc(p->n_slots * sizeof *size);
  ret->slot = region_side_alloc(p->n_slots * sizeof *ret->slot);
  ret->size = region_side_alloc(p->n_slots * sizeof *ret->size);
  if (!size || !ret->slot || !ret->size)
    return -1;
  /* A block's ops are spread over threads: its last one is the one with the highest seq. */
  uint32_t *last = region_side_alloc(p->n_slots * sizeof *last);
  uint8_t *live = region_side_alloc(p->n_slots);
  if (!last || !live)
    return -1;
  for (uint32_t k = 0; k < p->n_threads; k++)
    for (size_t i = 0; i < p->n_steps[k]; i++) {
      const struct mt_step *s = &p->steps[k][i];
      if (!s->op.slot || s->seq + 1 < last[s->op.slot])
        continue;
      last[s->op.slot] = s->seq + 1;
      live[s->op.slot] = s->op.kind != OP_FREE;
      size[s->op.slot] = s->op.size;
    }
  for (uint32_t b = 1; b < p->n_slots; b++) {
    if (!live[b])
      continue;
    ret->slot[ret->n] = b;
    ret->size[ret->n++] = size[b];
  }
  region_side_free(size, p->n_slots * sizeof *size);
  region_side_free(last, p->n_slots * sizeof *last);
  region_side_free(live, p->n_slots);
  return 0;
}

/* One thread's share of a replay. */
struct worker {
  const struct alloc_methods *m;
  void *st;
  const struct mt_plan *p;
  uint32_t thread;
  void **ptr;
  pthread_barrier_t *start;
  int *stop;                /* set by the first thread that finds a problem */
  struct replay_pass *pass; /* checked replays only */
  uint64_t failed;
  int bad;
  size_t bad_step;
};

/* Waits until the slot's earlier ops are done; 0 when stopped instead. Spins briefly, then
 * yields: a waiting thread may hold the CPU the op it waits for needs. */
static int wait_turn(const uint32_t *seq, uint32_t want, const int *stop) {
  for (unsigned spins = 0; __atomic_load_n(seq, __ATOMIC_ACQUIRE) != want; spins++) {
    if (__atomic_load_n(stop, __ATOMIC_RELAXED))
      return 0;
    if (spins >= 100)
      sched_yield();
#if defined(__x86_64__) || defined(__i386__)
    else
      __builtin_ia32_pause();
#endif
  }
  return 1;
}

static void *run_worker(void *arg) {
  struct worker *w = arg;
  const struct mt_step *step = w->p->steps[w->thread];
  size_t n = w->p->n_steps[w->thread];
  uint32_t *seq = w->p->seq;
  pthread_barrier_wait(w->start);
  for (size_t i = 0; i < n; i++) {
    const struct trace_op *o = &step[i].op;
    if (o->slot && !wait_turn(&seq[o->slot], step[i].seq, w->stop))
      break;
    if (!w->pass) {
      replay_op(w->m, w->st, o, w->ptr, &w->failed);
    } else if (replay_pass_op(w->pass, o)) {
      w->bad = 1;
      w->bad_step = i;
      __atomic_store_n(w->stop, 1, __ATOMIC_RELAXED);
      break;
    }
    if (o->slot)
      __atomic_store_n(&seq[o->slot], step[i].seq + 1, __ATOMIC_RELEASE);
  }
  return NULL;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Starts one worker per thread that has ops, releases them together, waits for all.
 * Returns the seconds between the release and the last end. */
static double run_all(struct worker *w, const struct mt_plan *p) {
  uint32_t active = 0;
  for (uint32_t k = 0; k < p->n_threads; k++)
    active += p->n_steps[k] != 0;
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, active + 1);
  pthread_t tid[p->n_threads];
  for (uint32_t k = 0; k < p->n_threads; k++) {
    if (!p->n_steps[k])
      continue;
    w[k].start = &start;
    /* Runs in a cell's child: an abort becomes that cell's crashed row. */
    if (pthread_create(&tid[k], NULL, run_worker, &w[k]) != 0)
      abort();
  }
  pthread_barrier_wait(&start);
  double t0 = now();
  for (uint32_t k = 0; k < p->n_threads; k++)
    if (p->n_steps[k])
      pthread_join(tid[k], NULL);
  double secs = now() - t0;
  pthread_barrier_destroy(&start);
  return secs;
}

static void reset_turns(const struct mt_plan *p) {
  memset(p->seq, 0, p->n_slots * sizeof *p->seq);
}

double mt_replay(const struct alloc_methods *m, void *st, const struct mt_plan *p, void **ptr,
                 uint64_t *ret_failed) {
  memset(ptr, 0, p->n_slots * sizeof *ptr);
  reset_turns(p);
  int stop = 0;
  struct worker w[p->n_threads];
  for (uint32_t k = 0; k < p->n_threads; k++)
    w[k] = (struct worker){.m = m, .st = st, .p = p, .thread = k, .ptr = ptr, .stop = &stop};
  double secs = run_all(w, p);
  *ret_failed = 0;
  for (uint32_t k = 0; k < p->n_threads; k++)
    *ret_failed += w[k].failed;
  return secs;
}

int mt_replay_checked(const struct alloc_methods *m, void *st, const struct trace *t,
                      const struct mt_plan *p, void **ptr, struct check *chk, char *msg,
                      size_t msglen, size_t *ret_bad_op) {
  memset(ptr, 0, p->n_slots * sizeof *ptr);
  reset_turns(p);
  uint64_t *req = region_side_alloc(p->n_slots * sizeof *req);
  uint64_t *mod = region_side_alloc(p->n_slots * sizeof *mod);
  int stop = 0, bad = 0;
  struct worker w[p->n_threads];
  struct replay_pass pass[p->n_threads];
  struct check chks[p->n_threads];
  struct replay_measures *meas = region_side_alloc(p->n_threads * sizeof *meas);
  if (!req || !mod || !meas)
    abort();
  for (uint32_t k = 0; k < p->n_threads; k++) {
    chks[k] = *chk;
    pass[k] = (struct replay_pass){.m = m,
                                   .st = st,
                                   .t = t,
                                   .ptr = ptr,
                                   .chk = &chks[k],
                                   .req = req,
                                   .mod = mod,
                                   .series_every = 1,
                                   .r = &meas[k]};
    w[k] = (struct worker){
        .m = m, .st = st, .p = p, .thread = k, .ptr = ptr, .stop = &stop, .pass = &pass[k]};
  }
  run_all(w, p);
  for (uint32_t k = 0; k < p->n_threads && !bad; k++) {
    if (!w[k].bad)
      continue;
    bad = 1;
    *ret_bad_op = p->steps[k][w[k].bad_step].index;
    snprintf(msg, msglen, "thread %u: %s", k, chks[k].msg);
  }
  region_side_free(req, p->n_slots * sizeof *req);
  region_side_free(mod, p->n_slots * sizeof *mod);
  region_side_free(meas, p->n_threads * sizeof *meas);
  return bad ? -1 : 0;
}
