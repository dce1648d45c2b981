/* Derived figures of a cell, by the formulas of METRICS.md (cited in the README). */
#ifndef METRICS_H
#define METRICS_H

#include "runner.h"

struct metrics {
  int has_timing, has_memory;
  double median, min, max, spread; /* seconds; spread = (max - min) / median */
  double ops_per_sec, ns_per_op;
  double frag1, frag2, frag3, frag4, utilization; /* NaN when live never rises above 0 */
};

void metrics_compute(const struct trace *t, const struct cell_result *r, struct metrics *ret);

#endif
