/*
 * Cells: one (allocator, trace) run. Each cell runs in its own forked child, so a crash,
 * a hang or a peak RSS belongs to that cell alone; the parent turns whatever happened into
 * a row.
 */
#ifndef RUNNER_H
#define RUNNER_H

#include "alloc.h"
#include "region.h"
#include "replay.h"
#include "trace.h"

#define RUNNER_MAX_REPS 101

enum cell_status {
  CELL_OK,
  CELL_INIT_FAILED,  /* the module refused its parameters or region */
  CELL_CHECK_FAILED, /* the checker caught the module */
  CELL_CRASHED,      /* the child died of a signal */
  CELL_TIMEOUT,      /* killed after the time limit */
};

struct cell_spec {
  const struct alloc_methods *m;
  const struct alloc_args *args;
  const struct trace *t;
  const struct region *region;
  int check;
  int reps, warmup;
  double timeout;   /* seconds; 0 for none */
  int fork;         /* 0 runs in the calling process (debugging) */
  int serial;       /* 1: even a thread-safe module replays the trace on one thread */
  unsigned sample;  /* latency pass: time every sample-th op; 0 for no latency pass */
  int pin, pin_cpu; /* when pin: run the cell on CPU pin_cpu only */
};

struct cell_result {
  enum cell_status status;
  char msg[320];
  struct replay_measures meas;
  int reps;
  double secs[RUNNER_MAX_REPS]; /* sorted */
  uint64_t timed_failed;
  uint64_t base_rss, peak_rss;       /* bytes: resident at the cell's start, and its high mark */
  double lat[LAT_KINDS][LAT_POINTS]; /* ns: p50, p90, p99, p99.9, max per kind */
  uint64_t lat_count[LAT_KINDS];     /* ops sampled per kind */
  double lat_seconds;                /* the latency pass, sampling included */
  double timer_ns;                   /* the cycle counter's resolution */
  uint32_t threads;                  /* threads of the timed replay */
};

void runner_cell(const struct cell_spec *c, struct cell_result *ret);

/* Process set-up some modules need before anything else runs: jemalloc's module dlopens a
 * library that uses initial-exec TLS, for which glibc reserves room only at start-up, so
 * the process re-executes itself once with GLIBC_TUNABLES set. Returns only if no
 * re-execution was needed or it failed (jemalloc cells then fail to init, saying why). */
void runner_prepare_process(char **argv);

const char *runner_status_name(enum cell_status s);

#endif
