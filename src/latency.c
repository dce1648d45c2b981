/* Cycle-counter calibration and histogram percentiles. */
#include "latency.h"

#include <stdlib.h>
#include <time.h>

static double wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

void lat_calibrate(struct lat_clock *ret) {
  double w0 = wall_ns();
  uint64_t t0 = lat_ticks();
  while (wall_ns() - w0 < 20e6)
    ;
  double w1 = wall_ns();
  uint64_t t1 = lat_ticks();
  ret->ns_per_tick = t1 > t0 ? (w1 - w0) / (double)(t1 - t0) : 1.0;
  enum { N = 1001 };
  uint64_t d[N];
  for (int i = 0; i < N; i++) {
    uint64_t a = lat_ticks();
    uint64_t b = lat_ticks();
    d[i] = b - a;
  }
  qsort(d, N, sizeof d[0], cmp_u64);
  /* The mean, not the median: a virtual machine's counter may tick in coarse steps, and
   * the mean of the steps is what an empty region costs on average. */
  uint64_t sum = 0, step = 0;
  for (int i = 0; i < N; i++) {
    sum += d[i];
    if (!step && d[i])
      step = d[i];
  }
  ret->overhead = sum / N;
  ret->resolution_ns = (double)(step ? step : 1) * ret->ns_per_tick;
}

/* The middle of bucket b, in ticks. */
static double bucket_mid(unsigned b) {
  if (b < 32)
    return b;
  unsigned e = (b - 32) / 16 + 5, sub = (b - 32) % 16;
  double lo = (double)(1ull << e) + (double)sub * (double)(1ull << (e - 4));
  return lo + (double)(1ull << (e - 4)) / 2;
}

static double percentile(const struct lat_hist *h, double q) {
  uint64_t rank = (uint64_t)(q * (double)h->count);
  uint64_t seen = 0;
  for (unsigned b = 0; b < LAT_BUCKETS; b++) {
    seen += h->bucket[b];
    if (seen > rank)
      return bucket_mid(b) < (double)h->max ? bucket_mid(b) : (double)h->max;
  }
  return (double)h->max;
}

void lat_points(const struct lat_hist *h, const struct lat_clock *c, double ret[LAT_POINTS]) {
  static const double q[] = {0.5, 0.9, 0.99, 0.999};
  for (int i = 0; i < LAT_POINTS; i++)
    ret[i] = 0;
  if (!h->count)
    return;
  for (int i = 0; i < 4; i++)
    ret[i] = percentile(h, q[i]) * c->ns_per_tick;
  ret[4] = (double)h->max * c->ns_per_tick;
}
