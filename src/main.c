/* The harness's top level: the only code that prints errors and chooses the exit code. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "csv.h"
#include "metrics.h"
#include "progress.h"
#include "region.h"
#include "runner.h"
#include "tools.h"
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

/* Messages echo what a user or a file gave: control bytes are shown as \xNN, so that no value
 * can break the one-line format or send escape sequences to the terminal. One at a time. */
static const char *shown(const char *s) {
  static char buf[2048];
  size_t n = 0;
  for (; *s && n + 5 < sizeof buf; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch < 0x20 || ch == 0x7f)
      n += (size_t)snprintf(buf + n, sizeof buf - n, "\\x%02x", ch);
    else
      buf[n++] = (char)ch;
  }
  buf[n] = '\0';
  return buf;
}

static int load_traces(const struct cli *c, struct trace *ts) {
  char err[512];
  for (int i = 0; i < c->n_traces; i++) {
    if (trace_load(&ts[i], c->traces[i], err, sizeof err)) {
      fprintf(stderr, "harness: %s\n", shown(err));
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
          t->path, trace_line(t, t->peak_live_op), (unsigned long long)t->peak_live, region);
  return -1;
}

struct run {
  const struct cli *c;
  struct trace *ts;
  struct region region;
  struct csv out;
  FILE *series;
  int cells_done, cells_failed;
  const char *write_failed; /* the file a write failed on, and errno */
  int write_errno;
  struct progress prog; /* the line on a terminal */
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
                           .serial = r->c->serial,
                           .sample = (unsigned)r->c->sample,
                           .pin = r->c->pin,
                           .pin_cpu = r->c->pin_cpu};
  struct cell_result *res = malloc(sizeof *res);
  if (!res)
    return -1;
  runner_cell(&spec, res);
  progress_cell_done(&r->prog);
  if (interrupted && res->status != CELL_OK) { /* stopped by the signal: not a result */
    free(res);
    return 0;
  }
  struct metrics mt;
  metrics_compute(t, res, &mt);
  int in_region = !(a->m->flags & ALLOC_OUTSIDE_REGION);
  int w = csv_row(&r->out, a->m->name, a->params, t, res, &mt, in_region);
  if (w) {
    r->write_failed = r->c->csv ? r->c->csv : "standard output";
    r->write_errno = errno;
  } else if (r->series && csv_series_rows(r->series, a->m->name, a->params, t, res)) {
    r->write_failed = r->c->series;
    r->write_errno = errno;
    w = -1;
  }
  if (!r->c->quiet)
    csv_table_row(stderr, a->m->name, a->params, t, res, &mt);
  if (res->status != CELL_OK) {
    fprintf(stderr, "harness: %s\n", shown(res->msg));
    r->cells_failed++;
  }
  r->cells_done++;
  free(res);
  return w;
}

static int same_file(const char *a, const char *b) {
  struct stat x, y;
  return strcmp(a, b) == 0 ||
         (stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino);
}

/* An output that is also an input, or both outputs in one file, would lose data. */
static int outputs_clash(const struct cli *c) {
  const char *out[] = {c->csv, c->series};
  for (int k = 0; k < 2; k++)
    for (int i = 0; out[k] && strcmp(out[k], "-") != 0 && i < c->n_traces; i++)
      if (same_file(out[k], c->traces[i])) {
        fprintf(stderr,
                "harness: %s: is also a trace of this run; results are not written over it\n",
                shown(out[k]));
        return -1;
      }
  if (c->csv && c->series && same_file(c->csv, c->series)) {
    fprintf(stderr, "harness: %s: --csv and --series name the same file\n", shown(c->csv));
    return -1;
  }
  return 0;
}

/* Each module's parameters are tried before anything runs: a value its init refuses is a bad
 * command line (exit 2), not a failed row an hour later. The probe is a cell of an empty
 * trace, forked like the others, so a module that crashes in init fails only its own rows. */
static int probe_modules(struct run *r) {
  static struct cell_result res;
  struct trace empty = {.path = "(probe)", .n_slots = 1, .n_threads = 1};
  for (int k = 0; k < r->c->n_alloc; k++) {
    const struct cli_alloc *a = &r->c->alloc[k];
    struct cell_spec spec = {.m = a->m,
                             .args = &a->args,
                             .t = &empty,
                             .region = &r->region,
                             .timeout = 60,
                             .fork = r->c->fork};
    runner_cell(&spec, &res);
    if (res.status == CELL_INIT_FAILED) {
      char line[1024];
      snprintf(line, sizeof line, "%s%s%s%s%s: %s",
               a->origin ? a->origin : "--alloc=", a->origin ? ": " : "", a->m->name,
               a->params[0] ? ":" : "", a->params, res.msg);
      fprintf(stderr, "harness: %s\n", shown(line));
      return -1;
    }
  }
  return 0;
}

static int run_all(struct run *r) {
  int total = r->c->n_traces * r->c->n_alloc;
  double work = 0; /* a cell's time grows with its trace's ops: the estimate's weights */
  for (int i = 0; i < r->c->n_traces; i++)
    work += (double)r->ts[i].n_ops * r->c->n_alloc;
  progress_start(&r->prog, stderr, total, work);
  for (int i = 0; i < r->c->n_traces && !interrupted; i++) {
    for (int k = 0; k < r->c->n_alloc && !interrupted; k++) {
      const struct cli_alloc *a = &r->c->alloc[k];
      progress_cell(&r->prog, a->m->name, a->params, r->ts[i].path, (double)r->ts[i].n_ops);
      if (run_cell(r, &r->c->alloc[k], &r->ts[i])) {
        progress_end(&r->prog);
        fprintf(stderr, "harness: %s: cannot write: %s; stopped after %d of %d cells\n",
                r->write_failed, strerror(r->write_errno), r->cells_done, total);
        return EXIT_OUTPUT;
      }
    }
  }
  progress_end(&r->prog);
  if (interrupted) {
    fprintf(stderr, "harness: interrupted by signal %d: %d of %d cells done, %d not run\n",
            (int)interrupted, r->cells_done, total, total - r->cells_done);
    return EXIT_INTERRUPTED;
  }
  return r->cells_failed ? EXIT_CELL_FAILED : 0;
}

int main(int argc, char **argv) {
  static struct cli c;
  if (argc > 1 && (strcmp(argv[1], "convert") == 0 || strcmp(argv[1], "info") == 0))
    return tools_main(argc - 1, argv + 1); /* subcommands on one trace: src/tools.c */
  char err[512];
  runner_prepare_process(argv);
  if (cli_parse(&c, argc, argv, err, sizeof err)) {
    fprintf(stderr, "harness: %s\n", shown(err));
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
  if (outputs_clash(&c) || probe_modules(&r))
    return EXIT_USAGE;
  const char *csv_name = c.csv ? c.csv : "standard output";
  if (c.series && (!(r.series = fopen(c.series, "w")) || csv_series_header(r.series))) {
    fprintf(stderr, "harness: %s: cannot write: %s\n", c.series, strerror(errno));
    return EXIT_OUTPUT;
  }
  if (csv_open(&r.out, c.csv)) {
    fprintf(stderr, "harness: %s: cannot write: %s\n", csv_name, strerror(errno));
    return EXIT_OUTPUT;
  }
  catch_signals();
  if (!c.quiet)
    csv_table_header(stderr);
  int code = run_all(&r);
  /* A write error not yet reported outranks a failed cell; an interruption keeps 130. */
  if (csv_close(&r.out) && code != EXIT_OUTPUT) {
    fprintf(stderr, "harness: %s: cannot finish writing: %s\n", csv_name, strerror(errno));
    code = code == EXIT_INTERRUPTED ? code : EXIT_OUTPUT;
  }
  if (r.series && fclose(r.series) && code != EXIT_OUTPUT) {
    fprintf(stderr, "harness: %s: cannot finish writing: %s\n", c.series, strerror(errno));
    code = code == EXIT_INTERRUPTED ? code : EXIT_OUTPUT;
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
