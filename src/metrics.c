/* The formulas of METRICS.md over a cell's measures. */
#include "metrics.h"

#include <math.h>

static double ratio_over(double fp, double live) {
  return live > 0 ? (fp - live) / live : NAN;
}

static double median(const double *sorted, int n) {
  return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

void metrics_compute(const struct trace *t, const struct cell_result *r, struct metrics *ret) {
  *ret =
      (struct metrics){.frag1 = NAN, .frag2 = NAN, .frag3 = NAN, .frag4 = NAN, .utilization = NAN};
  const struct replay_measures *m = &r->meas;
  ret->has_memory = r->status == CELL_OK;
  if (!ret->has_memory)
    return;
  double live = (double)t->peak_live;
  if (m->frag1_n)
    ret->frag1 = m->frag1_sum / (double)m->frag1_n;
  ret->frag2 = ratio_over((double)m->footprint_at_peak_live, live);
  ret->frag3 = ratio_over((double)m->peak_footprint, (double)m->live_at_peak_footprint);
  ret->frag4 = ratio_over((double)m->peak_footprint, live);
  if (m->peak_footprint)
    ret->utilization = live / (double)m->peak_footprint;
  if (r->reps == 0)
    return;
  ret->has_timing = 1;
  ret->median = median(r->secs, r->reps);
  ret->min = r->secs[0];
  ret->max = r->secs[r->reps - 1];
  ret->spread = ret->median > 0 ? (ret->max - ret->min) / ret->median : 0;
  if (t->n_ops == 0) { /* a trace of no ops has no rate: empty cells, not a made-up one */
    ret->ops_per_sec = ret->ns_per_op = NAN;
  } else if (ret->median > 0) {
    ret->ops_per_sec = (double)t->n_ops / ret->median;
    ret->ns_per_op = ret->median * 1e9 / (double)t->n_ops;
  }
}
