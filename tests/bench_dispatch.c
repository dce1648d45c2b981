/* What the replay loop's dispatch on the op kind costs, against loops that do less: the
 * evidence behind the README's figure for `null` on random op kinds. Loads a trace, creates
 * the `null` module over a region, and times (median of REPS, in ns per op) each loop over
 * the same ops:
 *   harness   replay_timed, the harness's timed loop;
 *   branch    a minimal loop: one test of the kind, then m->free or m->malloc;
 *   table     one indirect call through a table indexed by the kind, no test;
 *   inline    no call: null's bump pointer written into the loop, with the same test;
 *   select    no call, no branch: both outcomes computed and one chosen (what a compiler
 *             can do only when the work is in the loop, never for a call into a module).
 * The trace must hold mallocs and frees only (scripts/gen without --realloc and friends).
 * Times are the thread's CPU time, so that other processes on a busy machine do not count.
 * Prints "loop,ns_per_op" lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "region.h"
#include "replay.h"
#include "trace.h"

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct bench {
  const struct alloc_methods *m;
  struct region region;
  void *st;
  const struct trace *t;
  void **ptr;
};

static void fresh(struct bench *b) {
  char err[256];
  b->m->destroy(b->st);
  if (b->m->init(&b->st, b->region.base, b->region.size, &(struct alloc_args){0}, err,
                 sizeof err)) {
    fprintf(stderr, "bench_dispatch: %s\n", err);
    exit(1);
  }
  memset(b->ptr, 0, b->t->n_slots * sizeof *b->ptr);
}

static void loop_harness(struct bench *b) {
  uint64_t failed;
  replay_timed(b->m, b->st, b->t, b->ptr, &failed);
}

static void loop_branch(struct bench *b) {
  void *(*mmalloc)(void *, size_t) = b->m->malloc;
  void (*mfree)(void *, void *, size_t) = b->m->free;
  const struct trace_op *op = b->t->ops, *end = op + b->t->n_ops;
  void **ptr = b->ptr, *st = b->st;
  for (; op < end; op++) {
    if (op->kind == OP_FREE)
      mfree(st, ptr[op->slot], op->size);
    else
      ptr[op->slot] = mmalloc(st, op->size);
  }
}

/* Both hooks with one signature, so one call site serves either. */
static void *call_malloc(const struct alloc_methods *m, void *st, const struct trace_op *op,
                         void **ptr) {
  return ptr[op->slot] = m->malloc(st, op->size);
}

static void *call_free(const struct alloc_methods *m, void *st, const struct trace_op *op,
                       void **ptr) {
  m->free(st, ptr[op->slot], op->size);
  return NULL;
}

static void loop_table(struct bench *b) {
  typedef void *(*hook)(const struct alloc_methods *, void *, const struct trace_op *, void **);
  static const hook table[2] = {[OP_MALLOC] = call_malloc, [OP_FREE] = call_free};
  const struct trace_op *op = b->t->ops, *end = op + b->t->n_ops;
  for (; op < end; op++)
    table[op->kind & 1](b->m, b->st, op, b->ptr);
}

/* null's malloc, written into the loop: 16-byte aligned bump pointer, never touched. */
static void loop_inline(struct bench *b) {
  const struct trace_op *op = b->t->ops, *end = op + b->t->n_ops;
  char *next = b->region.base;
  for (; op < end; op++) {
    if (op->kind != OP_FREE) {
      b->ptr[op->slot] = next;
      next += (op->size + 15) & ~(size_t)15;
    }
    __asm__ volatile("" ::: "memory"); /* keep the loop a loop of ops, as with calls */
  }
}

static void loop_select(struct bench *b) {
  const struct trace_op *op = b->t->ops, *end = op + b->t->n_ops;
  char *next = b->region.base;
  for (; op < end; op++) {
    size_t is_alloc = op->kind != OP_FREE;
    void *old = b->ptr[op->slot];
    b->ptr[op->slot] = (void *)(((uintptr_t)next & -is_alloc) | ((uintptr_t)old & (is_alloc - 1)));
    next += ((op->size + 15) & ~(size_t)15) & -is_alloc;
    __asm__ volatile("" ::: "memory");
  }
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_dispatch TRACE [REPS]\n");
    return 2;
  }
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  if (reps < 1 || reps > 99)
    reps = 5;
  struct trace t;
  char err[512];
  if (trace_load(&t, argv[1], err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  for (size_t i = 0; i < t.n_ops; i++)
    if (t.ops[i].kind != OP_MALLOC && t.ops[i].kind != OP_FREE) {
      fprintf(stderr, "bench_dispatch: %s: op %zu is not a malloc or a free\n", argv[1], i + 1);
      return 1;
    }
  struct bench b = {.m = alloc_find("null"), .t = &t};
  b.ptr = calloc(t.n_slots, sizeof *b.ptr);
  if (!b.m || !b.ptr || region_map(&b.region, (size_t)1 << 30, err, sizeof err)) {
    fprintf(stderr, "bench_dispatch: cannot set up: %s\n", err);
    return 1;
  }
  if (b.m->init(&b.st, b.region.base, b.region.size, &(struct alloc_args){0}, err, sizeof err))
    return 1;
  static const struct {
    const char *name;
    void (*run)(struct bench *);
  } loops[] = {{"harness", loop_harness},
               {"branch", loop_branch},
               {"table", loop_table},
               {"inline", loop_inline},
               {"select", loop_select}};
  double secs[99];
  for (size_t l = 0; l < sizeof loops / sizeof loops[0]; l++) {
    fresh(&b);
    loops[l].run(&b); /* warm-up: pages of the pointer array touched */
    for (int k = 0; k < reps; k++) {
      fresh(&b);
      double start = cpu_now();
      loops[l].run(&b);
      secs[k] = cpu_now() - start;
    }
    qsort(secs, (size_t)reps, sizeof *secs, by_value);
    printf("%s,%.3f\n", loops[l].name, secs[reps / 2] * 1e9 / (double)t.n_ops);
  }
  b.m->destroy(b.st);
  region_unmap(&b.region);
  free(b.ptr);
  trace_free(&t);
  return 0;
}
