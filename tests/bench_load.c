/* Trace loading speed, file to ready ops, whatever the format (text, .rep, binary,
 * compressed): loads each file REPS times with trace_load (the page cache warm after the
 * first) and prints "file,bytes,ops,best_seconds,ns_per_op". */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "trace.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_load REPS TRACE...\n");
    return 2;
  }
  int reps = atoi(argv[1]);
  printf("file,bytes,ops,best_seconds,ns_per_op\n");
  for (int i = 2; i < argc; i++) {
    double best = 1e30;
    size_t ops = 0;
    for (int k = 0; k < reps; k++) {
      struct trace t;
      char err[512];
      double t0 = now();
      if (trace_load(&t, argv[i], err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
      }
      double s = now() - t0;
      best = s < best ? s : best;
      ops = t.n_ops;
      trace_free(&t);
    }
    struct stat st;
    long long bytes = stat(argv[i], &st) == 0 ? (long long)st.st_size : -1;
    printf("%s,%lld,%zu,%.6f,%.2f\n", argv[i], bytes, ops, best, best * 1e9 / (double)ops);
  }
  return 0;
}
