/*
 * Hardened modules (slab harden=..., guard=1; segregated harden=...): a double free kept in
 * a trace (trace_parse_stale: the harness's own reader refuses it) is caught by the hardened
 * module, reported with its trace line in the row, and not by the plain module; a block
 * overrun by one byte (a deliberately misbehaving replay) trips the canary; a pointer into
 * the middle of a block is an invalid free; guard pages fault, and are lifted again.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "csv.h"
#include "metrics.h"
#include "runner.h"
#include "testutil.h"

#define REGION_SIZE ((size_t)64 << 20)

static struct region region;

/* Lines 2-11; line 6 frees id 2 a second time. */
static const char double_free_text[] = "alloctrace 1\n"
                                       "m 1 100\n"
                                       "m 2 100\n"
                                       "m 3 100\n"
                                       "f 2\n"
                                       "f 2\n"
                                       "m 4 100\n"
                                       "m 5 100\n"
                                       "f 1\n"
                                       "f 3\n"
                                       "f 4\n";

struct instance {
  const struct alloc_methods *m;
  struct alloc_args args;
  char spec[64];
};

static int instance(struct instance *in, const char *name, const char *params) {
  char err[256];
  in->m = alloc_find(name);
  snprintf(in->spec, sizeof in->spec, "%s", params);
  if (!in->m || alloc_args_parse(in->m, in->spec, ',', &in->args, err, sizeof err)) {
    fprintf(stderr, "  %s:%s: %s\n", name, params, in->m ? err : "no such module");
    return -1;
  }
  return 0;
}

/* A forked, checked cell of one repetition. */
static void run_cell(const struct alloc_methods *m, const struct alloc_args *args,
                     const struct trace *t, struct cell_result *r) {
  struct cell_spec spec = {.m = m,
                           .args = args,
                           .t = t,
                           .region = &region,
                           .check = 1,
                           .reps = 1,
                           .timeout = 60,
                           .fork = 1};
  runner_cell(&spec, r);
}

/* The row as the harness writes it: the message names the trace line, the last column
 * counts the detections. */
static void expect_row(const char *name, const struct trace *t, const struct cell_result *r,
                       const char *want) {
  char path[] = "/tmp/test_harden_XXXXXX";
  int fd = mkstemp(path);
  struct csv c;
  if (!EXPECT(fd >= 0 && csv_open(&c, path) == 0))
    return;
  close(fd);
  struct metrics mt;
  metrics_compute(t, r, &mt);
  EXPECT(csv_row(&c, name, "", t, r, &mt, 1) == 0);
  EXPECT(csv_close(&c) == 0);
  char buf[8192] = "";
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  buf[n] = 0;
  if (f)
    fclose(f);
  unlink(path);
  const char *row = strchr(buf, '\n');
  char tail[64];
  snprintf(tail, sizeof tail, ",%llu\n", (unsigned long long)r->meas.detections);
  int ok =
      row && strstr(row, want) && n > strlen(tail) && strcmp(buf + n - strlen(tail), tail) == 0;
  if (!EXPECT(ok))
    fprintf(stderr, "  %s: the row lacks \"%s\" or the count: %s", name, want, row ? row : buf);
}

static void double_free(void) {
  struct trace t;
  char err[256];
  /* The harness's reader refuses the trace ... */
  EXPECT(trace_parse(&t, "t.trace", double_free_text, sizeof double_free_text - 1, err,
                     sizeof err) != 0 &&
         strstr(err, "t.trace:6: double free of id 2"));
  /* ... the test's reader keeps the stale free. */
  if (!EXPECT(trace_parse_stale(&t, "t.trace", double_free_text, sizeof double_free_text - 1, err,
                                sizeof err) == 0 &&
              t.n_stale == 1))
    return;
  static const char *const hardened[][2] = {
      {"slab", "harden=1"},          {"slab", "harden=free"},
      {"slab", "harden=1,guard=1"},  {"segregated", "harden=1"},
      {"segregated", "harden=free"}, {"segregated", "harden=1,classes=pow2,victim=off"}};
  static struct cell_result r;
  for (size_t i = 0; i < sizeof hardened / sizeof hardened[0]; i++) {
    struct instance in;
    if (!EXPECT(instance(&in, hardened[i][0], hardened[i][1]) == 0))
      continue;
    run_cell(in.m, &in.args, &t, &r);
    char msg[320];
    replay_detection_text(in.m->name, &t, &r.meas, msg, sizeof msg);
    /* Detected at line 6, ignored: the checked replay went on without a violation. */
    int ok = r.status == CELL_OK && r.reps == 1 && r.meas.detections == 1 &&
             trace_line(&t, r.meas.detect_op) == 6 &&
             strstr(msg, "t.trace:6: the module detected a double free");
    if (!EXPECT(ok))
      fprintf(stderr, "  %s:%s: status %s, %llu detections, \"%s\" \"%s\"\n", hardened[i][0],
              hardened[i][1], runner_status_name(r.status), (unsigned long long)r.meas.detections,
              msg, r.msg);
    expect_row(in.m->name, &t, &r, "t.trace:6: the module detected a double free");
  }
  /* The plain modules (and a hardened one without free checks) do not detect it; what else
   * they do (a check failure, a crash) is their business, in the forked cell. */
  static const char *const plain[][2] = {
      {"slab", ""}, {"segregated", ""}, {"slab", "harden=canary"}, {"segregated", "harden=canary"}};
  for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
    struct instance in;
    if (!EXPECT(instance(&in, plain[i][0], plain[i][1]) == 0))
      continue;
    run_cell(in.m, &in.args, &t, &r);
    if (!EXPECT(r.meas.detections == 0))
      fprintf(stderr, "  %s:%s detected %llu\n", plain[i][0], plain[i][1],
              (unsigned long long)r.meas.detections);
  }
  trace_free(&t);
}

/* A misbehaving replay: the module below overruns every block of `overrun_size` bytes by one
 * byte after allocating it, as a buggy program would. */
static const struct alloc_methods *inner;
static size_t overrun_size;

static int o_init(void **ret_st, void *base, size_t size, const struct alloc_args *args, char *err,
                  size_t errlen) {
  return inner->init(ret_st, base, size, args, err, errlen);
}

static void *o_malloc(void *st, size_t size) {
  unsigned char *p = inner->malloc(st, size);
  if (p && size == overrun_size)
    p[size] ^= 0x5A;
  return p;
}

static void o_free(void *st, void *p, size_t size) {
  inner->free(st, p, size);
}

static void *o_realloc(void *st, void *p, size_t old_size, size_t new_size) {
  return inner->realloc(st, p, old_size, new_size);
}

static size_t o_usable(void *st, void *p, size_t size) {
  return inner->usable_size(st, p, size);
}

static void o_stats(void *st, struct alloc_stats *ret) {
  inner->stats(st, ret);
}

static void o_destroy(void *st) {
  inner->destroy(st);
}

static const struct alloc_methods overrun_module = {
    .name = "overrun",
    .summary = "writes one byte past blocks of one size",
    .init = o_init,
    .malloc = o_malloc,
    .free = o_free,
    .realloc = o_realloc,
    .usable_size = o_usable,
    .stats = o_stats,
    .destroy = o_destroy,
};

/* Block 1 (line 2) is overrun; its free is line 5. */
static void overrun_one(const char *name, const char *params, size_t size, int detects) {
  char text[256], err[256];
  snprintf(text, sizeof text, "alloctrace 1\nm 1 %zu\nm 2 40\nf 2\nf 1\nm 3 %zu\nf 3\n", size,
           size + 1);
  struct trace t;
  struct instance in;
  if (!EXPECT(trace_parse(&t, "o.trace", text, strlen(text), err, sizeof err) == 0 &&
              instance(&in, name, params) == 0))
    return;
  inner = in.m;
  overrun_size = size;
  static struct cell_result r;
  run_cell(&overrun_module, &in.args, &t, &r);
  char msg[320];
  replay_detection_text(name, &t, &r.meas, msg, sizeof msg);
  int ok = detects ? r.status == CELL_OK && r.meas.detections == 1 &&
                         strstr(msg, "o.trace:5: the module detected an overrun")
                   : r.meas.detections == 0;
  if (!EXPECT(ok))
    fprintf(stderr, "  %s:%s, %zu bytes: status %s, %llu detections, \"%s\" \"%s\"\n", name, params,
            size, runner_status_name(r.status), (unsigned long long)r.meas.detections, msg, r.msg);
  trace_free(&t);
}

static void overrun(void) {
  /* Sizes in and between the classes, at a class size, and page runs (slab: 8K and more). */
  static const size_t sizes[] = {1, 16, 24, 100, 4096, 5000, 20000, 65536};
  static const char *const hardened[][2] = {{"slab", "harden=1"},
                                            {"slab", "harden=canary"},
                                            {"slab", "harden=canary,classes=pow2"},
                                            {"segregated", "harden=1"},
                                            {"segregated", "harden=canary"}};
  for (size_t i = 0; i < sizeof hardened / sizeof hardened[0]; i++)
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
      overrun_one(hardened[i][0], hardened[i][1], sizes[k], 1);
  static const char *const plain[][2] = {
      {"slab", ""}, {"segregated", ""}, {"slab", "harden=free"}, {"segregated", "harden=free"}};
  for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
    overrun_one(plain[i][0], plain[i][1], 100, 0);
}

static void *start(const struct instance *in) {
  void *st = NULL;
  char err[256];
  if (!EXPECT(in->m->init(&st, region.base, REGION_SIZE, &in->args, err, sizeof err) == 0))
    fprintf(stderr, "  %s: %s\n", in->m->name, err);
  return st;
}

static uint64_t detections(const struct instance *in, void *st, const char **what) {
  struct alloc_stats s;
  in->m->stats(st, &s);
  *what = s.detection ? s.detection : "";
  return s.detections;
}

/* free of a pointer into the middle of a live block, whatever the block holds: counted as
 * an invalid free and ignored; the block and the module stay usable. */
static void invalid_free(const char *name, const char *params) {
  struct instance in;
  if (!EXPECT(instance(&in, name, params) == 0))
    return;
  static const unsigned char fills[] = {0x00, 0xFF, 0x03};
  for (size_t f = 0; f < sizeof fills; f++) {
    void *st = start(&in);
    if (!st)
      return;
    unsigned char *a = in.m->malloc(st, 200);
    unsigned char *b = in.m->malloc(st, 200);
    in.m->malloc(st, 200); /* keeps a and b from the top: they stay chunks when freed */
    memset(a, fills[f], 200);
    if (fills[f] == 0x03) { /* a forged in-use header of 32 bytes right before a + 32 */
      size_t head = 32 | 3;
      memcpy(a + 24, &head, sizeof head);
    }
    const char *what;
    uint64_t n0 = detections(&in, st, &what);
    in.m->free(st, a + 32, 168);
    uint64_t n1 = detections(&in, st, &what);
    int ok = n0 == 0 && n1 == 1 && strstr(what, "invalid free");
    in.m->free(st, b + 16, 184);
    ok = ok && detections(&in, st, &what) == 2;
    in.m->free(st, (char *)region.base + REGION_SIZE - 64, 16); /* past the break */
    ok = ok && detections(&in, st, &what) == 3 && strstr(what, "invalid free");
    in.m->free(st, a, 200);
    in.m->free(st, b, 200);
    in.m->free(st, a, 200); /* and a double free, for good measure */
    ok = ok && detections(&in, st, &what) == 4 && strstr(what, "double free");
    unsigned char *c = in.m->malloc(st, 200);
    ok = ok && c != NULL;
    if (!EXPECT(ok))
      fprintf(stderr, "  %s:%s fill %#x: detections %llu -> %llu, last \"%s\"\n", name, params,
              fills[f], (unsigned long long)n0, (unsigned long long)n1, what);
    in.m->destroy(st);
  }
}

/* A block freed into its free neighbour, then freed again: still a double free. And every
 * byte usable_size promises may be written without tripping anything. */
static void merged_and_usable(const char *name, const char *params) {
  struct instance in;
  if (!EXPECT(instance(&in, name, params) == 0))
    return;
  void *st = start(&in);
  if (!st)
    return;
  char *a = in.m->malloc(st, 300), *b = in.m->malloc(st, 300);
  in.m->malloc(st, 300);
  in.m->free(st, a, 300);
  in.m->free(st, b, 300);
  const char *what;
  uint64_t n0 = detections(&in, st, &what);
  in.m->free(st, b, 300);
  uint64_t n1 = detections(&in, st, &what);
  if (!EXPECT(n0 == 0 && n1 == 1 && strstr(what, "double free")))
    fprintf(stderr, "  %s:%s: %llu -> %llu, \"%s\"\n", name, params, (unsigned long long)n0,
            (unsigned long long)n1, what);
  static const size_t sizes[] = {1, 8, 16, 24, 100, 1000, 4096, 8192, 20000, 65536};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    char *p = in.m->malloc(st, sizes[k]);
    memset(p, 0xEE, in.m->usable_size(st, p, sizes[k]));
    in.m->free(st, p, sizes[k]);
  }
  if (!EXPECT(detections(&in, st, &what) == n1))
    fprintf(stderr, "  %s:%s: writing the usable size tripped \"%s\"\n", name, params, what);
  in.m->destroy(st);
}

/* Runs fn in a child; returns the signal that ended it, or 0 if it exited normally. */
static int in_child(void (*fn)(const struct instance *), const struct instance *in) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would exit(1) instead */
    fn(in);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

/* Writes one byte at the last page of the slab holding a new 64-byte object. */
static void touch_guard(const struct instance *in) {
  void *st = start(in);
  char *p = in->m->malloc(st, 64);
  char *unit = (char *)((uintptr_t)p & ~(uintptr_t)(64 * 1024 - 1));
  *(volatile char *)(unit + 64 * 1024 - 4096) = 1;
}

/* Fills slabs of many classes, then destroys the instance: every page must be writable. */
static void fill_then_write(const struct instance *in) {
  void *st = start(in);
  for (size_t size = 16; size <= 8192; size += 48)
    for (int k = 0; k < 20; k++)
      in->m->malloc(st, size);
  struct alloc_stats s;
  in->m->stats(st, &s);
  in->m->destroy(st);
  memset(region.base, 7, s.footprint);
}

/* As above, then a reset and one large block over the former slabs and their guards. */
static void reset_then_write(const struct instance *in) {
  void *st = start(in);
  for (size_t size = 16; size <= 8192; size += 48)
    in->m->malloc(st, size);
  in->m->reset(st);
  char *p = in->m->malloc(st, 8 << 20);
  memset(p, 7, 8 << 20);
}

/* Left with guards in place: the harness's region reset must lift them. */
static void region_reset_then_write(const struct instance *in) {
  void *st = start(in);
  for (size_t size = 16; size <= 8192; size += 48)
    in->m->malloc(st, size);
  region_reset(&region);
  memset(region.base, 7, 8 << 20);
}

static void guard_pages(void) {
  struct instance guard, plain, hard;
  if (!EXPECT(instance(&guard, "slab", "guard=1") == 0 && instance(&plain, "slab", "") == 0 &&
              instance(&hard, "slab", "guard=1,harden=1") == 0))
    return;
  EXPECT(in_child(touch_guard, &guard) == SIGSEGV);
  EXPECT(in_child(touch_guard, &hard) == SIGSEGV);
  EXPECT(in_child(touch_guard, &plain) == 0);
  EXPECT(in_child(fill_then_write, &guard) == 0);
  EXPECT(in_child(reset_then_write, &guard) == 0);
  EXPECT(in_child(region_reset_then_write, &guard) == 0);
  struct instance small;
  char err[256];
  EXPECT(instance(&small, "slab", "guard=1,slab=4K,max=1K") == 0);
  void *st;
  EXPECT(small.m->init(&st, region.base, REGION_SIZE, &small.args, err, sizeof err) != 0 &&
         strstr(err, "guard=1 needs slab of 8K"));
}

/* harden=random: consecutive objects are not handed out in address order, and a freed one
 * does not come straight back; without it they are, and it does. */
static void random_slots(void) {
  struct instance rnd, seq;
  if (!EXPECT(instance(&rnd, "slab", "harden=random") == 0 &&
              instance(&seq, "slab", "harden=free") == 0))
    return;
  const struct instance *both[] = {&rnd, &seq};
  int in_order[2] = {0, 0}, back[2] = {0, 0};
  for (int k = 0; k < 2; k++) {
    void *st = start(both[k]);
    char *prev = both[k]->m->malloc(st, 64);
    in_order[k] = 1;
    for (int i = 0; i < 16; i++) {
      char *p = both[k]->m->malloc(st, 64);
      in_order[k] &= p == prev + 64;
      prev = p;
    }
    both[k]->m->free(st, prev, 64);
    char *again = both[k]->m->malloc(st, 64);
    back[k] = again == prev;
    both[k]->m->destroy(st);
  }
  EXPECT(!in_order[0] && !back[0]);
  EXPECT(in_order[1]);
}

int main(void) {
  char err[256];
  if (!EXPECT(region_map(&region, REGION_SIZE, err, sizeof err) == 0))
    return test_finish();
  double_free();
  overrun();
  invalid_free("slab", "harden=1");
  invalid_free("slab", "harden=free");
  invalid_free("segregated", "harden=1");
  invalid_free("segregated", "harden=free");
  merged_and_usable("slab", "harden=1");
  merged_and_usable("segregated", "harden=1");
  merged_and_usable("segregated", "harden=free");
  guard_pages();
  random_slots();
  region_unmap(&region);
  return test_finish();
}
