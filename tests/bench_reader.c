/* Reader speed: parses a trace file REPS times (from memory, so the disk is not measured)
 * and prints "bytes,ops,best_seconds,mb_per_s". */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "trace.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_reader TRACE [REPS]\n");
    return 2;
  }
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  FILE *f = fopen(argv[1], "rb");
  if (!f) {
    perror(argv[1]);
    return 1;
  }
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  rewind(f);
  char *buf = malloc((size_t)len);
  if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
    fprintf(stderr, "%s: cannot read\n", argv[1]);
    return 1;
  }
  fclose(f);
  double best = 1e30;
  size_t ops = 0;
  for (int i = 0; i < reps; i++) {
    struct trace t;
    char err[512];
    double t0 = now();
    if (trace_parse(&t, argv[1], buf, (size_t)len, err, sizeof err)) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    double s = now() - t0;
    best = s < best ? s : best;
    ops = t.n_ops;
    trace_free(&t);
  }
  printf("%ld,%zu,%.6f,%.1f\n", len, ops, best, (double)len / best / 1e6);
  free(buf);
  return 0;
}
