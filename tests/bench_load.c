/* Trace loading speed, file to ready ops, whatever the format (text, .rep, binary,
 * compressed): loads each file REPS times with trace_load (the page cache warm after the
 * first) and prints "file,bytes,ops,best_seconds,ns_per_op,median_seconds,median_ns_per_op,
 * median_cpu_seconds". ns_per_op is the best load's. The CPU time (user and system, page
 * faults included) does not count the time other processes took the CPU: on a busy machine
 * it is the steadier figure. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "trace.h"

static double clock_seconds(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sorts v. */
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, by_value);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Loads path reps times into secs (wall) and cpu; returns the op count, or -1. */
static long long time_loads(const char *path, int reps, double *secs, double *cpu) {
  size_t ops = 0;
  for (int k = 0; k < reps; k++) {
    struct trace t;
    char err[512];
    double t0 = clock_seconds(CLOCK_MONOTONIC), c0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
    if (trace_load(&t, path, err, sizeof err)) {
      fprintf(stderr, "%s\n", err);
      return -1;
    }
    secs[k] = clock_seconds(CLOCK_MONOTONIC) - t0;
    cpu[k] = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - c0;
    ops = t.n_ops;
    trace_free(&t);
  }
  return (long long)ops;
}

int main(int argc, char **argv) {
  int reps = argc >= 3 ? atoi(argv[1]) : 0;
  if (reps < 1) {
    fprintf(stderr, "usage: bench_load REPS TRACE...\n");
    return 2;
  }
  double *secs = malloc(2 * (size_t)reps * sizeof *secs), *cpu = secs + reps;
  if (!secs)
    return 1;
  printf("file,bytes,ops,best_seconds,ns_per_op,median_seconds,median_ns_per_op,"
         "median_cpu_seconds\n");
  for (int i = 2; i < argc; i++) {
    long long ops = time_loads(argv[i], reps, secs, cpu);
    if (ops < 0)
      return 1;
    double wall = median(secs, reps), best = secs[0], cpu_median = median(cpu, reps);
    double per = ops ? 1e9 / (double)ops : 0;
    struct stat st;
    long long bytes = stat(argv[i], &st) == 0 ? (long long)st.st_size : -1;
    printf("%s,%lld,%lld,%.6f,%.2f,%.6f,%.2f,%.6f\n", argv[i], bytes, ops, best, best * per, wall,
           wall * per, cpu_median);
  }
  free(secs);
  return 0;
}
