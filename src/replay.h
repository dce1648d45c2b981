/*
 * Replay: running a trace's ops through a module. Two loops: the timed one does nothing but
 * call the module; the measured one also follows live bytes and footprint after every op
 * (METRICS.md) and, when given a checker, verifies every block.
 */
#ifndef REPLAY_H
#define REPLAY_H

#include <stdint.h>

#include "alloc.h"
#include "check.h"
#include "latency.h"
#include "region.h"
#include "trace.h"

#define REPLAY_SERIES_MAX 1024

/* One point of the footprint-versus-live time series. */
struct replay_point {
  uint64_t op, live, footprint;
};

/* What one measured replay found, per METRICS.md. */
struct replay_measures {
  uint64_t failed;         /* allocations the module could not satisfy */
  uint64_t peak_live;      /* max live(t) */
  uint64_t peak_footprint; /* max footprint(t) */
  size_t peak_footprint_op;
  uint64_t footprint_at_peak_live; /* footprint(t*) */
  uint64_t live_at_peak_footprint; /* live(u*) */
  double frag1_sum;                /* sum over t with live(t) > 0 of (fp - live) / live */
  uint64_t frag1_n;
  uint64_t internal_frag; /* sum of usable - requested over live blocks at t* */
  uint64_t touched;       /* resident region bytes at touch_at, if asked */
  struct alloc_stats final_stats;
  uint32_t n_series; /* about 1000 points, evenly spaced in ops, the last op included */
  struct replay_point series[REPLAY_SERIES_MAX];
  /* Detections a hardened module counted (alloc_stats.detections), and the first one: the
   * op after which the count rose and what the module said it was. */
  uint64_t detections;
  size_t detect_op;
  char detect_msg[128];
  /* On a checker violation: the op and the problem. */
  int violation;
  size_t bad_op;
  char msg[256];
};

/* The state of a measured pass: the module, the trace, and what it follows per slot: the
 * size the trace asked for (live bytes) and the size the module was asked for (they differ
 * after trace_lower_memalign). Threads of a checked multi-threaded replay each use a copy
 * sharing the per-slot arrays (ops on one slot never run at once). */
struct replay_pass {
  const struct alloc_methods *m;
  void *st;
  const struct trace *t;
  void **ptr;
  struct check *chk;
  void **gone; /* traces with stale frees: each slot's last freed address */
  uint64_t *req, *mod;
  uint64_t live;
  const struct region *touch_region;
  size_t touch_at;
  size_t series_every;
  struct replay_measures *r;
};

/* One op of a checked replay without the per-op measures (a RESET is skipped: its frees
 * follow). Returns 0, or -1 with the problem in ps->chk->msg. */
int replay_pass_op(struct replay_pass *ps, const struct trace_op *o);

/* One op as the timed loop runs it; returns how many ops after it were consumed too. */
uint64_t replay_op(const struct alloc_methods *m, void *st, const struct trace_op *op, void **ptr,
                   uint64_t *failed);

/* Replays t through m (instance st), timed as a whole. ptr has t->n_slots entries and is
 * zeroed first. Returns seconds; *ret_failed counts NULL results. */
double replay_timed(const struct alloc_methods *m, void *st, const struct trace *t, void **ptr,
                    uint64_t *ret_failed);

/* The blocks a trace leaves live at its end, with the size the module was asked for. */
struct replay_leftovers {
  size_t n, cap;
  uint32_t *slot;
  uint64_t *size;
};

/* Finds them (the lists are mapped on the side); returns 0, or -1 when out of memory. */
int replay_leftovers(const struct trace *t, struct replay_leftovers *ret);

/* Frees them after a replay: a module outside the region keeps its memory from one
 * repetition to the next, so what the trace left live must go back. */
void replay_free_leftovers(const struct alloc_methods *m, void *st, void **ptr,
                           const struct replay_leftovers *lo);

void replay_leftovers_fini(struct replay_leftovers *lo);

/* The first detection of a measured replay as the checker words a violation:
 * "ALLOC: TRACE:LINE: the module detected ... (N in all)". */
void replay_detection_text(const char *alloc, const struct trace *t,
                           const struct replay_measures *r, char *buf, size_t len);

/* Replays t through m timing every `every`-th op alone into hist (by kind: malloc, calloc
 * and aligned allocation count as malloc). Returns the pass's seconds. */
double replay_latency(const struct alloc_methods *m, void *st, const struct trace *t, void **ptr,
                      unsigned every, const struct lat_clock *clk, struct lat_hist hist[LAT_KINDS]);

/* Replays t through m following live bytes and footprint; with chk, checks every block.
 * With touch_region, ret->touched is the region's resident bytes after op touch_at. Returns 0, or
 * -1 on a violation (ret->violation, ret->bad_op, ret->msg). */
int replay_measured(const struct alloc_methods *m, void *st, const struct trace *t, void **ptr,
                    struct check *chk, const struct region *touch_region, size_t touch_at,
                    struct replay_measures *ret);

#endif
