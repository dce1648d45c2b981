/*
 * Multi-threaded replay: a 4-thread trace where a quarter of the frees and reallocs happen
 * on another thread than the allocation's replays under the checker, on real threads, with
 * no violation, 50 times for every thread-safe module with its defaults and each of its
 * variants (slab and pool with caches, tiny caches, none, hardened; the reference
 * allocators; `locked` around modules that are not). An 80-thread trace (more threads than
 * slab and pool give caches to) replays 10 times per module. The plan must keep every op
 * exactly once. slab and pool: a thread's cache from a destroyed or reset instance is never
 * used by the next instance made at the same address, and the cache counters add up.
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
#define RUNS_WIDE 10 /* the 80-thread trace */

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
                       const struct mt_plan *p, int runs);

/* A module without memalign replays the trace with it lowered, as the cells do. */
static void run_lowered(const struct alloc_methods *m, const char *spec, const struct trace *orig,
                        int runs) {
  struct trace t = *orig;
  t.ops = malloc(t.n_ops * sizeof *t.ops);
  memcpy(t.ops, orig->ops, t.n_ops * sizeof *t.ops);
  if (!m->memalign)
    trace_lower_memalign(&t);
  struct mt_plan p;
  if (EXPECT(mt_plan_make(&t, &p) == 0))
    run_module(m, spec, &t, &p, runs);
  mt_plan_free(&p);
  free(t.ops);
}

static void run_module(const struct alloc_methods *m, const char *spec, const struct trace *t,
                       const struct mt_plan *p, int runs) {
  char buf[256], err[256];
  snprintf(buf, sizeof buf, "%s", spec);
  struct alloc_args args;
  if (!EXPECT(alloc_args_parse(m, buf, ',', &args, err, sizeof err) == 0))
    return;
  void **ptr = calloc(p->n_slots, sizeof *ptr);
  int inside = !(m->flags & ALLOC_OUTSIDE_REGION);
  int bad = 0;
  for (int run = 0; run < runs && !bad; run++) {
    void *st;
    if (!EXPECT(m->init(&st, region.base, REGION, &args, err, sizeof err) == 0))
      break;
    struct check chk;
    check_init(&chk, m, st, inside ? region.base : NULL, REGION, p->n_slots);
    char msg[256];
    size_t bad_op = 0;
    bad = mt_replay_checked(m, st, t, p, ptr, &chk, msg, sizeof msg, &bad_op);
    if (!EXPECT(bad == 0))
      fprintf(stderr, "  %s %s run %d: line %u: %s\n", m->name, spec, run, trace_line(t, bad_op),
              msg);
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
  printf("%-10s %-24s %u threads, %d runs: %s\n", m->name, spec, t->n_threads, runs,
         bad ? "FAILED" : "ok");
  free(ptr);
}

/* A trace of `threads` threads; 0 when it loads. */
static int load(struct trace *t, int threads, int n_ops, uint64_t seed) {
  struct gen_opts o = {.seed = seed,
                       .n_ops = n_ops,
                       .max_live = 200,
                       .max_size = 1 << 16,
                       .threads = threads,
                       .cross_pct = 25};
  size_t len;
  char err[512];
  char *text = gen_trace(&o, &len);
  int bad = trace_parse(t, "mt.trace", text, len, err, sizeof err);
  free(text);
  if (!EXPECT(bad == 0))
    fprintf(stderr, "%s\n", err);
  return bad;
}

/* The modules named on the command line, or all when none is (`test_mt slab pool`). */
static char **only;

static int chosen(const char *name) {
  for (char **a = only; a && *a; a++)
    if (strcmp(*a, name) == 0)
      return 1;
  return !only || !*only;
}

/* Every thread-safe module, with its defaults and each variant. */
static void run_all_modules(const struct trace *t, int runs, int variants) {
  for (int i = 0; alloc_registry[i]; i++) {
    const struct alloc_methods *m = alloc_registry[i];
    if (!(m->flags & ALLOC_THREAD_SAFE) || (m->flags & ALLOC_UNCHECKED) || !chosen(m->name))
      continue;
    run_lowered(m, "", t, runs);
    for (const char *const *v = m->variants; variants && v && *v; v++)
      run_lowered(m, *v, t, runs);
  }
}

static uint64_t counter(const struct alloc_stats *s, const char *name) {
  for (int i = 0; i < s->n_counters; i++)
    if (strcmp(s->counter[i].name, name) == 0)
      return s->counter[i].value;
  EXPECT(!"counter missing");
  fprintf(stderr, "  no counter %s\n", name);
  return 0;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}

#define MANY 400

/* n blocks of `size` from st, all distinct and apart by at least size; then freed. */
static void blocks_distinct(const struct alloc_methods *m, void *st, size_t size) {
  static void *b[MANY];
  for (int i = 0; i < MANY; i++)
    EXPECT((b[i] = m->malloc(st, size)) != NULL);
  void *sorted[MANY];
  memcpy(sorted, b, sizeof b);
  qsort(sorted, MANY, sizeof *sorted, cmp_ptr);
  int apart = 1;
  for (int i = 1; i < MANY; i++)
    apart &= (uintptr_t)sorted[i] - (uintptr_t)sorted[i - 1] >= size;
  EXPECT(apart);
  for (int i = 0; i < MANY; i++)
    m->free(st, b[i], size);
}

/* A thread's cache belongs to one instance: an instance made again at the same address
 * (dirty region, as the harness's cells do it) or reset must not hand out the blocks the
 * old one had cached; and the cache counters add up. */
static void fresh_instance_ignores_old_cache(const char *name) {
  const struct alloc_methods *m = alloc_find(name);
  char buf[8] = "", err[256];
  if (!chosen(name))
    return;
  struct alloc_args args;
  if (!EXPECT(m && alloc_args_parse(m, buf, ',', &args, err, sizeof err) == 0))
    return;
  void *st;
  EXPECT(m->init(&st, region.base, REGION, &args, err, sizeof err) == 0);
  blocks_distinct(m, st, 48); /* leaves this thread's cache holding blocks */
  m->destroy(st);
  EXPECT(m->init(&st, region.base, REGION, &args, err, sizeof err) == 0);
  blocks_distinct(m, st, 48);
  m->reset(st);
  blocks_distinct(m, st, 48);
  struct alloc_stats s;
  m->stats(st, &s);
  /* This instance's two rounds: each 400 mallocs from an empty list of 64 (a refill of 32
   * every 32, the rest hits), 16 left cached, then 400 frees (a flush of 32 at 64). */
  uint64_t hits = counter(&s, "cache_hits"), refills = counter(&s, "depot_refills");
  uint64_t flushes = counter(&s, "depot_flushes"), cached = counter(&s, "cached");
  EXPECT(refills == 2 * 13 && hits == 2 * (MANY - 13));
  EXPECT(flushes == 2 * 11 && cached == 64);
  printf("%-10s a new or reset instance ignores the old cache: hits %llu, refills %llu, "
         "flushes %llu, cached %llu\n",
         name, (unsigned long long)hits, (unsigned long long)refills, (unsigned long long)flushes,
         (unsigned long long)cached);
  m->destroy(st);
  region_reset(&region);
}

int main(int argc, char **argv) {
  runner_prepare_process(argv);
  only = argc > 1 ? argv + 1 : NULL;
  char err[512];
  if (region_map(&region, REGION, err, sizeof err))
    return 1;
  struct trace t;
  if (load(&t, 4, 2000, 5))
    return test_finish();
  EXPECT(t.n_threads == 4);
  struct mt_plan p;
  EXPECT(mt_plan_make(&t, &p) == 0);
  plan_keeps_every_op(&t, &p);
  mt_plan_free(&p);
  run_all_modules(&t, RUNS, 1);
  const struct alloc_methods *locked = chosen("locked") ? alloc_find("locked") : NULL;
  static const char *const inner[] = {"inner=implicit", "inner=tlsf", "inner=segregated",
                                      "inner=slab",     "inner=pool", NULL};
  for (int i = 0; locked && inner[i]; i++)
    if (alloc_find(inner[i] + 6))
      run_lowered(locked, inner[i], &t, RUNS);
  trace_free(&t);
  /* More threads than slab and pool have cache slots (64): the rest take the lock. */
  if (load(&t, 80, 8000, 7))
    return test_finish();
  EXPECT(t.n_threads == 80);
  run_all_modules(&t, RUNS_WIDE, 0);
  trace_free(&t);
  fresh_instance_ignores_old_cache("slab");
  fresh_instance_ignores_old_cache("pool");
  return test_finish();
}
