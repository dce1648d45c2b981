/* Running a cell: the passes in a child process, and the parent's view of the child. */
#include "runner.h"

#include "threads.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *runner_status_name(enum cell_status s) {
  static const char *const names[] = {"ok", "init-failed", "check-failed", "crashed", "timeout"};
  return names[s];
}

/* A line of /proc/self/status in bytes ("VmHWM:  1234 kB"), or 0. */
static uint64_t proc_status_kb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  uint64_t v = 0;
  size_t n = strlen(key);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, key, n) == 0 && line[n] == ':')
      v = strtoull(line + n + 1, NULL, 10) * 1024;
  if (f)
    fclose(f);
  return v;
}

/* Resets VmHWM to the current RSS, so the high mark is this cell's own. */
static void reset_peak_rss(void) {
  int fd = open("/proc/self/clear_refs", O_WRONLY);
  if (fd >= 0) {
    (void)!write(fd, "5", 1);
    close(fd);
  }
}

static int start(const struct cell_spec *c, void **ret_st, struct cell_result *r) {
  char err[256] = "";
  if (c->m->init(ret_st, c->region->base, c->region->size, c->args, err, sizeof err) == 0)
    return 0;
  r->status = CELL_INIT_FAILED;
  snprintf(r->msg, sizeof r->msg, "%s: %s", c->m->name, err[0] ? err : "init failed");
  return -1;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The measured pass (checked if asked), then for region modules a second one that reads
 * resident pages at the moment of peak footprint, from a clean region. */
/* Ends a replay's instance; a module outside the region first gets back the blocks the
 * trace left live (lo is NULL for modules in the region: destroy forgets them all). */
static void finish(const struct cell_spec *c, void *st, void **ptr,
                   const struct replay_leftovers *lo) {
  if (lo)
    replay_free_leftovers(c->m, st, ptr, lo);
  c->m->destroy(st);
}

static int measure(const struct cell_spec *c, const struct trace *t, void **ptr,
                   const struct replay_leftovers *lo, struct cell_result *r) {
  void *st;
  if (start(c, &st, r))
    return -1;
  int inside = !(c->m->flags & ALLOC_OUTSIDE_REGION);
  struct check chk;
  int checking = c->check && !(c->m->flags & ALLOC_UNCHECKED);
  if (checking &&
      check_init(&chk, c->m, st, inside ? c->region->base : NULL, c->region->size, t->n_slots)) {
    c->m->destroy(st); /* --check asked for: never a silently unchecked row */
    r->status = CELL_INIT_FAILED;
    snprintf(r->msg, sizeof r->msg, "%s: %s: out of memory for the checker's shadow of the region",
             c->m->name, t->path);
    return -1;
  }
  int bad = replay_measured(c->m, st, t, ptr, checking ? &chk : NULL, NULL, 0, &r->meas);
  if (checking)
    check_fini(&chk);
  if (bad)
    c->m->destroy(st); /* the blocks' state is unknown after a violation */
  else
    finish(c, st, ptr, lo);
  if (bad) {
    r->status = CELL_CHECK_FAILED;
    snprintf(r->msg, sizeof r->msg, "%s: %s:%u: %s", c->m->name, t->path,
             trace_line(t, r->meas.bad_op), r->meas.msg);
    return -1;
  }
  if (!inside)
    return 0;
  struct replay_measures again;
  region_reset(c->region);
  if (start(c, &st, r))
    return -1;
  replay_measured(c->m, st, t, ptr, NULL, c->region, r->meas.peak_footprint_op, &again);
  c->m->destroy(st);
  r->meas.touched = again.touched;
  return 0;
}

/* Trace threads replay on real threads when the module is thread-safe (unless --serial). */
static int threaded(const struct cell_spec *c, const struct trace *t) {
  return t->n_threads > 1 && (c->m->flags & ALLOC_THREAD_SAFE) && !c->serial;
}

/* With --check, a threaded replay runs once more under the checker, on threads. */
static int check_threaded(const struct cell_spec *c, const struct trace *t, void **ptr,
                          const struct mt_plan *plan, const struct replay_leftovers *lo,
                          struct cell_result *r) {
  void *st;
  if (start(c, &st, r))
    return -1;
  struct check chk;
  int inside = !(c->m->flags & ALLOC_OUTSIDE_REGION);
  if (check_init(&chk, c->m, st, inside ? c->region->base : NULL, c->region->size, plan->n_slots))
    abort();
  char msg[256];
  size_t bad_op = 0;
  int bad = mt_replay_checked(c->m, st, t, plan, ptr, &chk, msg, sizeof msg, &bad_op);
  check_fini(&chk);
  if (bad) {
    c->m->destroy(st);
    r->status = CELL_CHECK_FAILED;
    snprintf(r->msg, sizeof r->msg, "%s: %s:%u: %s", c->m->name, t->path, trace_line(t, bad_op),
             msg);
    return -1;
  }
  finish(c, st, ptr, lo);
  if (inside)
    region_reset(c->region);
  return 0;
}

static void timed(const struct cell_spec *c, const struct trace *t, void **ptr,
                  const struct mt_plan *plan, const struct replay_leftovers *lo,
                  struct cell_result *r) {
  r->threads = plan ? plan->n_threads : 1;
  for (int i = 0; i < c->warmup + c->reps; i++) {
    void *st;
    if (start(c, &st, r))
      return;
    uint64_t failed;
    double s =
        plan ? mt_replay(c->m, st, plan, ptr, &failed) : replay_timed(c->m, st, t, ptr, &failed);
    finish(c, st, ptr, lo);
    if (i >= c->warmup) {
      r->secs[r->reps++] = s;
      r->timed_failed = failed;
    }
  }
  qsort(r->secs, (size_t)r->reps, sizeof r->secs[0], cmp_double);
}

/* The sampled latency pass, after the timed repetitions. */
static void latency(const struct cell_spec *c, const struct trace *t, void **ptr,
                    const struct replay_leftovers *lo, struct cell_result *r) {
  void *st;
  if (!c->sample || start(c, &st, r))
    return;
  struct lat_clock clk;
  lat_calibrate(&clk);
  struct lat_hist *hist = region_side_alloc(LAT_KINDS * sizeof *hist);
  if (!hist)
    abort();
  r->timer_ns = clk.resolution_ns;
  r->lat_seconds = replay_latency(c->m, st, t, ptr, c->sample, &clk, hist);
  finish(c, st, ptr, lo);
  for (int k = 0; k < LAT_KINDS; k++) {
    lat_points(&hist[k], &clk, r->lat[k]);
    r->lat_count[k] = hist[k].count;
  }
  region_side_free(hist, LAT_KINDS * sizeof *hist);
}

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

/* A copy of the trace's ops with memalign lowered, for modules without it. */
static void lower(const struct cell_spec *c, struct trace *t) {
  *t = *c->t;
  if (c->m->memalign || !t->n_ops)
    return;
  t->ops = region_side_alloc(t->n_ops * sizeof *t->ops);
  if (!t->ops)
    abort(); /* in the cell's child: the parent reports a crashed row */
  memcpy(t->ops, c->t->ops, t->n_ops * sizeof *t->ops);
  trace_lower_memalign(t);
}

static void passes(const struct cell_spec *c, const struct trace *t, void **ptr,
                   const struct mt_plan *plan, struct cell_result *r) {
  struct replay_leftovers lo = {0}, mt_lo = {0};
  int outside = (c->m->flags & ALLOC_OUTSIDE_REGION) != 0;
  if (outside && (replay_leftovers(t, &lo) || (plan && mt_plan_leftovers(plan, &mt_lo))))
    abort();
  const struct replay_leftovers *lop = outside ? &lo : NULL;
  const struct replay_leftovers *mt_lop = outside ? &mt_lo : NULL;
  int ok = measure(c, t, ptr, lop, r) == 0;
  if (ok && plan && c->check && !(c->m->flags & ALLOC_UNCHECKED))
    ok = check_threaded(c, t, ptr, plan, mt_lop, r) == 0;
  if (ok) {
    timed(c, t, ptr, plan, plan ? mt_lop : lop, r);
    if (r->status == CELL_OK)
      latency(c, t, ptr, lop, r);
  }
  replay_leftovers_fini(&lo);
  replay_leftovers_fini(&mt_lo);
}

static void run_here(const struct cell_spec *c, struct cell_result *r) {
  memset(r, 0, sizeof *r);
  reset_peak_rss();
  r->base_rss = proc_status_kb("VmRSS");
  if (c->pin)
    pin(c->pin_cpu);
  struct trace t;
  lower(c, &t);
  struct mt_plan plan = {0};
  int mt = threaded(c, &t);
  if (mt && mt_plan_make(&t, &plan))
    abort();
  size_t n_ptr = mt && plan.n_slots > t.n_slots ? plan.n_slots : t.n_slots;
  void **ptr = region_side_alloc(n_ptr * sizeof *ptr);
  if (!ptr)
    abort();
  passes(c, &t, ptr, mt ? &plan : NULL, r);
  region_side_free(ptr, n_ptr * sizeof *ptr);
  mt_plan_free(&plan);
  if (t.ops != c->t->ops)
    region_side_free(t.ops, t.n_ops * sizeof *t.ops);
  r->peak_rss = proc_status_kb("VmHWM");
}

/* Reads the child's result; 0 when it arrived whole before the deadline. */
static int read_result(int fd, struct cell_result *r, double timeout) {
  size_t got = 0;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (got < sizeof *r) {
    int wait_ms = -1;
    if (timeout > 0) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      double left =
          timeout - ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) * 1e-9);
      if (left <= 0)
        return 1;
      wait_ms = (int)(left * 1000) + 1;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, wait_ms);
    if (n < 0 && errno == EINTR)
      return -1; /* interrupted: the caller stops the child */
    if (n == 0)
      return 1;
    ssize_t k = read(fd, (char *)r + got, sizeof *r - got);
    if (k <= 0)
      return -1;
    got += (size_t)k;
  }
  return 0;
}

void runner_cell(const struct cell_spec *c, struct cell_result *ret) {
  if (!c->fork) {
    run_here(c, ret);
    region_reset(c->region);
    return;
  }
  int fds[2];
  if (pipe(fds) < 0) {
    memset(ret, 0, sizeof *ret);
    ret->status = CELL_CRASHED;
    snprintf(ret->msg, sizeof ret->msg, "pipe: %s", strerror(errno));
    return;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    struct cell_result *r = malloc(sizeof *r);
    if (!r)
      _exit(3);
    run_here(c, r);
    size_t off = 0;
    while (off < sizeof *r) {
      ssize_t k = write(fds[1], (char *)r + off, sizeof *r - off);
      if (k <= 0)
        _exit(3);
      off += (size_t)k;
    }
    _exit(0);
  }
  close(fds[1]);
  int got = pid < 0 ? -1 : read_result(fds[0], ret, c->timeout);
  close(fds[0]);
  if (pid > 0 && got != 0)
    kill(pid, SIGKILL);
  int status = 0;
  if (pid > 0)
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
      ;
  if (got == 0)
    return;
  memset(ret, 0, sizeof *ret);
  if (got == 1) {
    ret->status = CELL_TIMEOUT;
    snprintf(ret->msg, sizeof ret->msg, "%s: %s: killed after the %.0f s time limit", c->m->name,
             c->t->path, c->timeout);
  } else {
    ret->status = CELL_CRASHED;
    if (pid < 0)
      snprintf(ret->msg, sizeof ret->msg, "fork: %s", strerror(errno));
    else if (WIFSIGNALED(status))
      snprintf(ret->msg, sizeof ret->msg, "%s: %s: the cell died of signal %d (%s)", c->m->name,
               c->t->path, WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
      snprintf(ret->msg, sizeof ret->msg, "%s: %s: the cell exited with status %d", c->m->name,
               c->t->path, WEXITSTATUS(status));
  }
}

void runner_prepare_process(char **argv) {
  static const char tunable[] = "glibc.rtld.optional_static_tls";
  if (!alloc_find("jemalloc"))
    return;
  const char *t = getenv("GLIBC_TUNABLES");
  if (t && strstr(t, tunable))
    return;
  char buf[2048];
  snprintf(buf, sizeof buf, "%s%s%s=4194304", t ? t : "", t ? ":" : "", tunable);
  setenv("GLIBC_TUNABLES", buf, 1);
  execv("/proc/self/exe", argv);
}
