/*
 * The checker and the cell runner must catch broken modules: each module below wraps the
 * bump allocator and breaks one promise. A checked replay must stop with the right problem;
 * a crash or a hang in a forked cell must become a failed row, not a lost run.
 */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "runner.h"
#include "testutil.h"

static const struct alloc_methods *bump;
static int broken; /* which promise to break */

enum {
  OVERLAP,
  MISALIGN,
  OUTSIDE,
  SCRIBBLE,
  LOSSY_REALLOC,
  DIRTY_CALLOC,
  SHORT_USABLE,
  CRASH,
  HANG,
  N_BROKEN
};

static void *last;

static int b_init(void **ret_st, void *base, size_t size, const struct alloc_args *args, char *err,
                  size_t errlen) {
  last = NULL;
  return bump->init(ret_st, base, size, args, err, errlen);
}

static void *b_malloc(void *st, size_t size) {
  void *p = bump->malloc(st, size + 16);
  if (broken == OVERLAP && last)
    p = last;
  if (broken == MISALIGN)
    p = (char *)p + 8;
  if (broken == OUTSIDE)
    p = (char *)p - (1 << 20);
  if (broken == SCRIBBLE && last)
    memset(last, 0, 4);
  if (broken == CRASH && last) {
    signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would report and exit(1) instead */
    raise(SIGSEGV);
  }
  if (broken == HANG && last)
    for (;;)
      pause();
  last = p;
  return p;
}

static void *b_calloc(void *st, size_t size) {
  char *p = b_malloc(st, size);
  memset(p, broken == DIRTY_CALLOC ? 1 : 0, size);
  return p;
}

static void b_free(void *st, void *p, size_t size) {
  (void)st;
  (void)p;
  (void)size;
}

static void *b_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  void *q = b_malloc(st, new_size);
  if (broken != LOSSY_REALLOC)
    memcpy(q, p, old_size < new_size ? old_size : new_size);
  return q;
}

static size_t b_usable(void *st, void *p, size_t size) {
  (void)st;
  (void)p;
  return broken == SHORT_USABLE && size ? size - 1 : size;
}

static void b_stats(void *st, struct alloc_stats *ret) {
  bump->stats(st, ret);
}

static void b_destroy(void *st) {
  (void)st;
}

static const struct alloc_methods broken_module = {
    .name = "broken",
    .summary = "breaks one promise",
    .init = b_init,
    .malloc = b_malloc,
    .free = b_free,
    .realloc = b_realloc,
    .calloc = b_calloc,
    .usable_size = b_usable,
    .stats = b_stats,
    .destroy = b_destroy,
};

static const char text[] = "alloctrace 1\n"
                           "m 1 100\n"
                           "m 2 200\n"
                           "c 3 10 10\n"
                           "r 1 400\n"
                           "f 2\n"
                           "f 1\n"
                           "f 3\n";

static const char *const expected[N_BROKEN] = {
    [OVERLAP] = "t.trace:3: block at region offset",
    [MISALIGN] = "t.trace:2: block",
    [OUTSIDE] = "t.trace:2: block at region offset",
    [SCRIBBLE] = "t.trace:5: contents of a live block changed",
    [LOSSY_REALLOC] = "t.trace:5: realloc lost the block's contents",
    [DIRTY_CALLOC] = "t.trace:4: calloc block is not zeroed",
    [SHORT_USABLE] = "t.trace:2: usable size 99 is less than the 100 bytes",
    [CRASH] = "died of signal 11",
    [HANG] = "killed after the 1 s time limit",
};

static const enum cell_status status[N_BROKEN] = {
    [OVERLAP] = CELL_CHECK_FAILED,
    [MISALIGN] = CELL_CHECK_FAILED,
    [OUTSIDE] = CELL_CHECK_FAILED,
    [SCRIBBLE] = CELL_CHECK_FAILED,
    [LOSSY_REALLOC] = CELL_CHECK_FAILED,
    [DIRTY_CALLOC] = CELL_CHECK_FAILED,
    [SHORT_USABLE] = CELL_CHECK_FAILED,
    [CRASH] = CELL_CRASHED,
    [HANG] = CELL_TIMEOUT,
};

int main(void) {
  bump = alloc_find("bump");
  struct region region;
  char err[256];
  struct trace t;
  if (!EXPECT(bump && region_map(&region, 64 << 20, err, sizeof err) == 0 &&
              trace_parse(&t, "t.trace", text, sizeof text - 1, err, sizeof err) == 0))
    return test_finish();
  struct alloc_args args = {0};
  struct cell_spec spec = {.m = &broken_module,
                           .args = &args,
                           .t = &t,
                           .region = &region,
                           .check = 1,
                           .reps = 1,
                           .timeout = 1,
                           .fork = 1};
  static struct cell_result r;
  for (broken = 0; broken < N_BROKEN; broken++) {
    runner_cell(&spec, &r);
    int ok = r.status == status[broken] && strstr(r.msg, expected[broken]);
    if (!EXPECT(ok))
      fprintf(stderr, "  broken %d: status %s, message \"%s\"\n", broken,
              runner_status_name(r.status), r.msg);
  }
  /* The same module kept honest passes, in the child and in this process. */
  broken = N_BROKEN;
  runner_cell(&spec, &r);
  EXPECT(r.status == CELL_OK && r.reps == 1 && r.meas.peak_live == 700);
  spec.fork = 0;
  runner_cell(&spec, &r);
  EXPECT(r.status == CELL_OK && r.peak_rss > 0);
  trace_free(&t);
  return test_finish();
}
