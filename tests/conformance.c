/*
 * The shared conformance suite: every registered module, with its defaults and each of its
 * variants, replays random traces under the checker (alignment, bounds, overlap, contents,
 * usable size, zeroed calloc), on a dirty region, in LIFO, FIFO and random free orders;
 * then runs out of a small region, and asks for a huge block, without crashing.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "alloc.h"
#include "check.h"
#include "gen.h"
#include "replay.h"
#include "runner.h"
#include "testutil.h"
#include "trace.h"

#define REGION (1u << 30)

static struct region region;

/* Replays t over a region dirtied with garbage; returns the failed allocation count. */
static uint64_t replay_checked(const struct alloc_methods *m, const struct alloc_args *args,
                               struct trace *t, size_t region_size, const char *what) {
  memset(region.base, 0xA5, 1 << 20);
  void *st;
  char err[256] = "";
  if (!EXPECT(m->init(&st, region.base, region_size, args, err, sizeof err) == 0)) {
    fprintf(stderr, "  %s %s: init: %s\n", m->name, what, err);
    return 0;
  }
  struct check chk;
  int inside = !(m->flags & ALLOC_OUTSIDE_REGION);
  EXPECT(check_init(&chk, m, st, inside ? region.base : NULL, region_size, t->n_slots) == 0);
  void **ptr = calloc(t->n_slots, sizeof *ptr);
  struct replay_measures r;
  int bad = replay_measured(m, st, t, ptr, &chk, NULL, 0, &r);
  if (!EXPECT(bad == 0))
    fprintf(stderr, "  %s %s: line %u: %s\n", m->name, what, trace_line(t, r.bad_op), r.msg);
  if (!bad && r.failed == 0)
    EXPECT(r.peak_live == t->peak_live);
  if (inside)
    EXPECT(r.peak_footprint <= region_size);
  check_fini(&chk);
  free(ptr);
  m->destroy(st);
  return r.failed;
}

static void load(struct trace *t, const struct gen_opts *o) {
  size_t len;
  char *text = gen_trace(o, &len);
  char err[512];
  if (!EXPECT(trace_parse(t, "gen.trace", text, len, err, sizeof err) == 0))
    fprintf(stderr, "  %s\n", err);
  free(text);
}

static void random_traces(const struct alloc_methods *m, const struct alloc_args *args,
                          const char *what) {
  static const enum gen_order orders[] = {GEN_RANDOM, GEN_LIFO, GEN_FIFO};
  for (int k = 0; k < 3; k++) {
    struct gen_opts o = {.seed = 17 + (uint64_t)k,
                         .n_ops = 20000,
                         .max_live = 400,
                         .order = orders[k],
                         .max_size = 1 << 20,
                         .resets = k == 0};
    struct trace t;
    load(&t, &o);
    if (!m->memalign)
      trace_lower_memalign(&t);
    char label[320];
    snprintf(label, sizeof label, "%s seed %llu order %d", what, (unsigned long long)o.seed, k);
    uint64_t failed = replay_checked(m, args, &t, REGION, label);
    if (!EXPECT(failed == 0))
      fprintf(stderr, "  %s %s: %llu allocations failed in a %u MiB region\n", m->name, what,
              (unsigned long long)failed, REGION >> 20);
    trace_free(&t);
  }
}

/* A region far too small: allocations fail, nothing crashes or breaks the checker. */
static void exhaustion(const struct alloc_methods *m, const struct alloc_args *args,
                       const char *what) {
  if (m->flags & ALLOC_OUTSIDE_REGION)
    return;
  struct gen_opts o = {.seed = 99, .n_ops = 5000, .max_live = 300, .max_size = 1 << 20};
  struct trace t;
  load(&t, &o);
  if (!m->memalign)
    trace_lower_memalign(&t);
  uint64_t failed = replay_checked(m, args, &t, 1u << 20, what);
  if (!EXPECT(failed > 0))
    fprintf(stderr, "  %s %s: no allocation failed in a 1 MiB region\n", m->name, what);
  trace_free(&t);
}

static void huge(const struct alloc_methods *m, const struct alloc_args *args) {
  void *st;
  char err[256];
  if (m->init(&st, region.base, REGION, args, err, sizeof err))
    return;
  EXPECT(m->malloc(st, (size_t)1 << 47) == NULL);
  EXPECT(m->malloc(st, SIZE_MAX - 8) == NULL);
  void *p = m->malloc(st, 0);
  void *q = m->malloc(st, 0);
  EXPECT(p && q && p != q);
  EXPECT(m->realloc(st, p, 0, (size_t)1 << 47) == NULL);
  m->free(st, p, 0);
  m->free(st, q, 0);
  m->free(st, NULL, 0);
  m->destroy(st);
}

static void one_module(const struct alloc_methods *m, const char *variant) {
  char spec[256], err[256], what[300];
  snprintf(spec, sizeof spec, "%s", variant ? variant : "");
  snprintf(what, sizeof what, "[%s]", variant ? variant : "defaults");
  struct alloc_args args;
  if (!EXPECT(alloc_args_parse(m, spec, ',', &args, err, sizeof err) == 0)) {
    fprintf(stderr, "  %s %s: %s\n", m->name, what, err);
    return;
  }
  int before = test_failed;
  random_traces(m, &args, what);
  exhaustion(m, &args, what);
  huge(m, &args);
  printf("%-12s %-24s %s\n", m->name, what, test_failed == before ? "ok" : "FAILED");
}

int main(int argc, char **argv) {
  char err[256];
  runner_prepare_process(argv);
  if (region_map(&region, REGION, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  for (int i = 0; alloc_registry[i]; i++) {
    const struct alloc_methods *m = alloc_registry[i];
    if (m->flags & ALLOC_UNCHECKED)
      continue;
    if (argc > 1 && strcmp(argv[1], m->name) != 0)
      continue;
    one_module(m, NULL);
    for (const char *const *v = m->variants; v && *v; v++)
      one_module(m, *v);
    region_reset(&region);
  }
  return test_finish();
}
