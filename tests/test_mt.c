/*
 * Multi-threaded replay: a 4-thread trace where a quarter of the frees and reallocs happen
 * on another thread than the allocation's replays under the checker, on real threads, with
 * no violation, 50 times for every thread-safe module (the reference allocators, and
 * `locked` around modules that are not). The plan must keep every op exactly once.
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "check.h"
#include "gen.h"
#include "runner.h"
#include "testutil.h"
#include "threads.h"

#define REGION (256u << 20)
#define RUNS 50

static struct region region;

static void plan_keeps_every_op(const struct trace *t, const struct mt_plan *p) {
  size_t total = 0;
  int ordered = 1;
  for (uint32_t k = 0; k < p->n_threads; k++) {
    total += p->n_steps[k];
    for (size_t i = 1; i < p->n_steps[k]; i++)
      ordered &= p->steps[k][i - 1].index < p->steps[k][i].index;
  }
  EXPECT(total == t->n_ops - t->n_reset);
  EXPECT(ordered);
}

static void run_module(const struct alloc_methods *m, const char *spec, const struct trace *t,
                       const struct mt_plan *p);

/* A module without memalign replays the trace with it lowered, as the cells do. */
static void run_lowered(const struct alloc_methods *m, const char *spec, const struct trace *orig) {
  struct trace t = *orig;
  t.ops = malloc(t.n_ops * sizeof *t.ops);
  memcpy(t.ops, orig->ops, t.n_ops * sizeof *t.ops);
  if (!m->memalign)
    trace_lower_memalign(&t);
  struct mt_plan p;
  if (EXPECT(mt_plan_make(&t, &p) == 0))
    run_module(m, spec, &t, &p);
  mt_plan_free(&p);
  free(t.ops);
}

static void run_module(const struct alloc_methods *m, const char *spec, const struct trace *t,
                       const struct mt_plan *p) {
  char buf[256], err[256];
  snprintf(buf, sizeof buf, "%s", spec);
  struct alloc_args args;
  if (!EXPECT(alloc_args_parse(m, buf, ',', &args, err, sizeof err) == 0))
    return;
  void **ptr = calloc(p->n_slots, sizeof *ptr);
  int inside = !(m->flags & ALLOC_OUTSIDE_REGION);
  int bad = 0;
  for (int run = 0; run < RUNS && !bad; run++) {
    void *st;
    if (!EXPECT(m->init(&st, region.base, REGION, &args, err, sizeof err) == 0))
      break;
    struct check chk;
    check_init(&chk, m, st, inside ? region.base : NULL, REGION, p->n_slots);
    char msg[256];
    size_t bad_op = 0;
    bad = mt_replay_checked(m, st, t, p, ptr, &chk, msg, sizeof msg, &bad_op);
    if (!EXPECT(bad == 0))
      fprintf(stderr, "  %s %s run %d: line %u: %s\n", m->name, spec, run, t->line[bad_op], msg);
    check_fini(&chk);
    m->destroy(st);
    if (inside)
      region_reset(&region);
  }
  if (!bad) {
    /* and timed, on threads, as the cells run it */
    void *st;
    uint64_t failed = 1;
    m->init(&st, region.base, REGION, &args, err, sizeof err);
    EXPECT(mt_replay(m, st, p, ptr, &failed) > 0 && failed == 0);
    m->destroy(st);
    region_reset(&region);
  }
  printf("%-10s %-16s %s\n", m->name, spec, bad ? "FAILED" : "ok");
  free(ptr);
}

int main(int argc, char **argv) {
  runner_prepare_process(argv);
  (void)argc;
  char err[512];
  if (region_map(&region, REGION, err, sizeof err))
    return 1;
  struct gen_opts o = {.seed = 5,
                       .n_ops = 2000,
                       .max_live = 200,
                       .max_size = 1 << 16,
                       .threads = 4,
                       .cross_pct = 25};
  size_t len;
  char *text = gen_trace(&o, &len);
  struct trace t;
  if (!EXPECT(trace_parse(&t, "mt.trace", text, len, err, sizeof err) == 0)) {
    fprintf(stderr, "%s\n", err);
    return test_finish();
  }
  free(text);
  EXPECT(t.n_threads == 4);
  struct mt_plan p;
  EXPECT(mt_plan_make(&t, &p) == 0);
  plan_keeps_every_op(&t, &p);
  for (int i = 0; alloc_registry[i]; i++) {
    const struct alloc_methods *m = alloc_registry[i];
    if ((m->flags & ALLOC_THREAD_SAFE) && !(m->flags & ALLOC_UNCHECKED))
      run_lowered(m, "", &t);
  }
  const struct alloc_methods *locked = alloc_find("locked");
  static const char *const inner[] = {"inner=implicit",   "inner=bump", "inner=tlsf",
                                      "inner=segregated", "inner=slab", NULL};
  for (int i = 0; locked && inner[i]; i++)
    if (alloc_find(inner[i] + 6))
      run_lowered(locked, inner[i], &t);
  mt_plan_free(&p);
  trace_free(&t);
  return test_finish();
}
