/*
 * Fuzz target: a parsed trace replayed under the checker against the bump and implicit
 * modules in a small region. Catches semantic bugs of the reader's id compaction (a slot
 * reused while live, a wrong size passed to free or realloc) that a parse alone would not
 * show, and the modules' and checker's handling of odd sequences: zero sizes, huge sizes,
 * resets, realloc of a block whose allocation failed, memalign lowering.
 * Bytes that start with neither "alloctrace" nor a digit (.rep) get "alloctrace 1" first;
 * the input's length picks implicit's fit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "check.h"
#include "fuzz.h"
#include "region.h"
#include "replay.h"

#define REGION_BYTES (2u << 20)
#define MAX_OPS 20000 /* bigger traces add time, not coverage */

static struct region region;

static void die(const char *module, const struct trace *t, size_t op, const char *msg) {
  fprintf(stderr, "fuzz: %s: line %u: %s\n", module, trace_line(t, op), msg);
  abort();
}

static void replay_one(const struct alloc_methods *m, const char *spec, const struct trace *orig) {
  char buf[64], err[256];
  snprintf(buf, sizeof buf, "%s", spec);
  struct alloc_args args;
  if (alloc_args_parse(m, buf, ',', &args, err, sizeof err))
    die(m->name, orig, 0, err);
  struct trace t = *orig; /* a private copy of the ops when memalign must be lowered */
  if (!m->memalign && t.n_ops) {
    t.ops = malloc(t.n_ops * sizeof *t.ops);
    if (!t.ops)
      abort();
    memcpy(t.ops, orig->ops, t.n_ops * sizeof *t.ops);
    trace_lower_memalign(&t);
  }
  void **ptr = calloc(t.n_slots, sizeof *ptr);
  void *st = NULL;
  if (!ptr)
    abort();
  if (m->init(&st, region.base, region.size, &args, err, sizeof err))
    die(m->name, &t, 0, err);
  struct check chk;
  if (check_init(&chk, m, st, region.base, region.size, t.n_slots))
    abort();
  static struct replay_measures meas;
  if (replay_measured(m, st, &t, ptr, &chk, NULL, 0, &meas))
    die(m->name, &t, meas.bad_op, meas.msg);
  if (meas.failed == 0 && meas.peak_live != t.peak_live)
    die(m->name, &t, 0, "the replay's peak live differs from the reader's");
  if (meas.peak_footprint > region.size)
    die(m->name, &t, meas.peak_footprint_op, "footprint beyond the region");
  check_fini(&chk);
  m->destroy(st);
  /* The timed loop over the same ops, on a fresh instance: it must not crash either. */
  uint64_t failed;
  if (m->init(&st, region.base, region.size, &args, err, sizeof err))
    die(m->name, &t, 0, err);
  replay_timed(m, st, &t, ptr, &failed);
  m->destroy(st);
  region_reset(&region);
  free(ptr);
  if (t.ops != orig->ops)
    free(t.ops);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const fits[] = {"fit=first", "fit=next", "fit=best"};
  char err[256];
  if (!region.base && region_map(&region, REGION_BYTES, err, sizeof err))
    abort();
  int own = (size >= 10 && memcmp(data, "alloctrace", 10) == 0) ||
            (size && data[0] >= '0' && data[0] <= '9');
  struct trace t;
  if (fz_parse(&t, "fuzz.trace", own ? NULL : "alloctrace 1\n", data, size))
    return 0;
  if (t.n_ops <= MAX_OPS) {
    replay_one(alloc_find("bump"), "", &t);
    replay_one(alloc_find("implicit"), fits[size % 3], &t);
  }
  trace_free(&t);
  return 0;
}
