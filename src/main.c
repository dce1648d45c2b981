/* The harness's top level: the only code that prints errors and chooses the exit code. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "csv.h"
#include "metrics.h"
#include "region.h"
#include "runner.h"
#include "trace.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  interrupted = sig;
}

static void catch_signals(void) {
  struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll must wake */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

static int load_traces(const struct cli *c, struct trace *ts) {
  char err[512];
  for (int i = 0; i < c->n_traces; i++) {
    if (trace_load(&ts[i], c->traces[i], err, sizeof err)) {
      fprintf(stderr, "harness: %s\n", err);
      for (int k = 0; k < i; k++)
        trace_free(&ts[k]);
      return -1;
    }
    if (ts[i].warning[0])
      fprintf(stderr, "harness: warning: %s\n", ts[i].warning);
  }
  return 0;
}

/* A trace whose live bytes exceed the region cannot succeed: say where, run it anyway. */
static int check_fits(const struct trace *t, size_t region) {
  if (t->peak_live <= region)
    return 0;
  fprintf(stderr,
          "harness: %s:%u: the trace needs %llu bytes live here, more than the %zu-byte region "
          "(use --region); its rows will count failed allocations\n",
          t->path, t->line[t->peak_live_op], (unsigned long long)t->peak_live, region);
  return -1;
}

struct run {
  const struct cli *c;
  struct trace *ts;
  struct region region;
  struct csv out;
  FILE *series;
  int cells_done, cells_failed;
};

static int run_cell(struct run *r, const struct cli_alloc *a, const struct trace *t) {
  struct cell_spec spec = {.m = a->m,
                           .args = &a->args,
                           .t = t,
                           .region = &r->region,
                           .check = r->c->check,
                           .reps = r->c->reps,
                           .warmup = r->c->warmup,
                           .timeout = r->c->timeout,
                           .fork = r->c->fork,
                           .sample = (unsigned)r->c->sample,
                           .pin = r->c->pin,
                           .pin_cpu = r->c->pin_cpu};
  struct cell_result *res = malloc(sizeof *res);
  if (!res)
    return -1;
  runner_cell(&spec, res);
  if (interrupted) {
    free(res);
    return 0;
  }
  struct metrics mt;
  metrics_compute(t, res, &mt);
  int in_region = !(a->m->flags & ALLOC_OUTSIDE_REGION);
  int w = csv_row(&r->out, a->m->name, a->params, t, res, &mt, in_region);
  if (r->series && csv_series_rows(r->series, a->m->name, a->params, t, res))
    w = -1;
  if (!r->c->quiet)
    csv_table_row(stderr, a->m->name, a->params, t, res, &mt);
  if (res->status != CELL_OK) {
    fprintf(stderr, "harness: %s\n", res->msg);
    r->cells_failed++;
  }
  r->cells_done++;
  free(res);
  return w;
}

static int run_all(struct run *r) {
  int total = r->c->n_traces * r->c->n_alloc;
  for (int i = 0; i < r->c->n_traces && !interrupted; i++) {
    for (int k = 0; k < r->c->n_alloc && !interrupted; k++) {
      if (run_cell(r, &r->c->alloc[k], &r->ts[i])) {
        perror("harness: writing results");
        return EXIT_OUTPUT;
      }
    }
  }
  if (interrupted) {
    fprintf(stderr, "harness: interrupted by signal %d: %d of %d cells done, the rest not run\n",
            (int)interrupted, r->cells_done, total);
    return EXIT_INTERRUPTED;
  }
  return r->cells_failed ? EXIT_CELL_FAILED : 0;
}

int main(int argc, char **argv) {
  static struct cli c;
  char err[512];
  runner_prepare_process(argv);
  if (cli_parse(&c, argc, argv, err, sizeof err)) {
    fprintf(stderr, "harness: %s\n", err);
    return EXIT_USAGE;
  }
  if (c.list) {
    cli_list();
    return 0;
  }
  struct run r = {.c = &c, .ts = calloc((size_t)c.n_traces, sizeof *r.ts)};
  if (!r.ts || load_traces(&c, r.ts))
    return EXIT_INPUT;
  int too_big = 0;
  for (int i = 0; i < c.n_traces; i++)
    too_big |= check_fits(&r.ts[i], c.region) != 0;
  if (region_map(&r.region, c.region, err, sizeof err)) {
    fprintf(stderr, "harness: --region: %s\n", err);
    return EXIT_USAGE;
  }
  if (csv_open(&r.out, c.csv)) {
    fprintf(stderr, "harness: %s: cannot write: %s\n", c.csv, strerror(errno));
    return EXIT_OUTPUT;
  }
  if (c.series && (!(r.series = fopen(c.series, "w")) || csv_series_header(r.series))) {
    fprintf(stderr, "harness: %s: cannot write: %s\n", c.series, strerror(errno));
    return EXIT_OUTPUT;
  }
  catch_signals();
  if (!c.quiet)
    csv_table_header(stderr);
  int code = run_all(&r);
  if (csv_close(&r.out) && code == 0) {
    fprintf(stderr, "harness: %s: cannot finish writing: %s\n", c.csv, strerror(errno));
    code = EXIT_OUTPUT;
  }
  if (r.series && fclose(r.series) && code == 0) {
    fprintf(stderr, "harness: %s: cannot finish writing: %s\n", c.series, strerror(errno));
    code = EXIT_OUTPUT;
  }
  if (code == 0 && too_big)
    code = EXIT_REGION;
  for (int i = 0; i < c.n_traces; i++)
    trace_free(&r.ts[i]);
  free(r.ts);
  region_unmap(&r.region);
  cli_free(&c);
  return code;
}
