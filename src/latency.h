/*
 * Latency: a cheap cycle counter (rdtsc on x86-64, the monotonic clock elsewhere), its
 * calibration against the wall clock and its own overhead, and log-linear histograms of
 * per-op costs (16 sub-buckets per power of two: about 6% resolution, as HdrHistogram
 * with one significant digit and a bit).
 */
#ifndef LATENCY_H
#define LATENCY_H

#include <stdint.h>
#include <time.h>

enum { LAT_MALLOC, LAT_FREE, LAT_REALLOC, LAT_KINDS };

#define LAT_BUCKETS 640
#define LAT_POINTS 5 /* p50, p90, p99, p99.9, max */

struct lat_hist {
  uint64_t count, max;
  uint64_t bucket[LAT_BUCKETS];
};

static inline uint64_t lat_ticks(void) {
#if defined(__x86_64__)
  uint32_t lo, hi;
  /* lfence keeps the read from drifting across the timed call */
  __asm__ volatile("lfence\n\trdtsc" : "=a"(lo), "=d"(hi)::"memory");
  return ((uint64_t)hi << 32) | lo;
#else
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

struct lat_clock {
  double ns_per_tick;
  uint64_t overhead;    /* ticks of an empty timed region (mean), subtracted from each */
  double resolution_ns; /* the counter's smallest step: finer costs are not resolved */
};

/* Calibrates over about 20 ms of wall clock and measures the timer's own overhead. */
void lat_calibrate(struct lat_clock *ret);

static inline unsigned lat_bucket(uint64_t v) {
  if (v < 32)
    return (unsigned)v;
  unsigned e = 63u - (unsigned)__builtin_clzll(v);
  unsigned b = 32 + (e - 5) * 16 + (unsigned)((v >> (e - 4)) & 15);
  return b < LAT_BUCKETS ? b : LAT_BUCKETS - 1;
}

static inline void lat_add(struct lat_hist *h, uint64_t v) {
  h->count++;
  h->bucket[lat_bucket(v)]++;
  if (v > h->max)
    h->max = v;
}

/* p50, p90, p99, p99.9 (bucket midpoints) and max of h, in ns. Zeros when empty. */
void lat_points(const struct lat_hist *h, const struct lat_clock *c, double ret[LAT_POINTS]);

#endif
