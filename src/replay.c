/* The timed replay loop and the measured (optionally checked) replay loop. */
#include "replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *zeroed(const struct alloc_methods *m, void *st, size_t size) {
  if (m->calloc)
    return m->calloc(st, size);
  void *p = m->malloc(st, size);
  if (p)
    memset(p, 0, size);
  return p;
}

/* A realloc that fails frees the old block: later ops on the block pass the trace's new
 * size, which a module that trusts the size given to free must not see for the old one. */
static void *realloc_or_drop(const struct alloc_methods *m, void *st, void *p,
                             const struct trace_op *op) {
  void *q = m->realloc(st, p, op->arg, op->size);
  if (!q)
    m->free(st, p, op->arg);
  return q;
}

/* The rare kinds, out of line so the hot loop stays small. */
static uint64_t run_rare(const struct alloc_methods *m, void *st, const struct trace_op *op,
                         void **ptr, uint64_t *failed) {
  void *p;
  switch (op->kind) {
  case OP_REALLOC:
    p = ptr[op->slot];
    p = p ? realloc_or_drop(m, st, p, op) : m->malloc(st, op->size);
    break;
  case OP_CALLOC:
    p = zeroed(m, st, op->size);
    break;
  case OP_MEMALIGN:
    p = m->memalign(st, op->arg, op->size);
    break;
  default: /* OP_RESET */
    if (!m->reset)
      return 0;
    m->reset(st);
    return op->arg; /* the frees that follow are done */
  }
  *failed += !p;
  ptr[op->slot] = p;
  return 0;
}

/* One op; returns how many of the ops after it were consumed too. free and malloc are
 * tested first, with plain branches: most ops are one or the other. */
static inline __attribute__((always_inline)) uint64_t run_op(const struct alloc_methods *m,
                                                             void *st, const struct trace_op *op,
                                                             void **ptr, uint64_t *failed) {
  if (op->kind == OP_FREE) {
    m->free(st, ptr[op->slot], op->size);
    return 0;
  }
  if (op->kind == OP_MALLOC) {
    void *p = m->malloc(st, op->size);
    ptr[op->slot] = p;
    *failed += !p;
    return 0;
  }
  return run_rare(m, st, op, ptr, failed);
}

uint64_t replay_op(const struct alloc_methods *m, void *st, const struct trace_op *op, void **ptr,
                   uint64_t *failed) {
  return run_op(m, st, op, ptr, failed);
}

/* The hot loop: nothing but the op's call into the module. */
double replay_timed(const struct alloc_methods *m, void *st, const struct trace *t, void **ptr,
                    uint64_t *ret_failed) {
  memset(ptr, 0, t->n_slots * sizeof *ptr);
  const struct trace_op *op = t->ops, *end = t->n_ops ? t->ops + t->n_ops : op; /* ops: NULL */
  uint64_t failed = 0;
  /* A copy no module can reach: its hooks stay in registers instead of being loaded again
   * after every call. */
  const struct alloc_methods hooks = *m;
  double start = now();
  for (; op < end; op++)
    op += run_op(&hooks, st, op, ptr, &failed);
  double secs = now() - start;
  *ret_failed = failed;
  return secs;
}

static int lat_kind(uint8_t kind) {
  return kind == OP_FREE ? LAT_FREE : kind == OP_REALLOC ? LAT_REALLOC : LAT_MALLOC;
}

/* Every `every`-th op is timed alone with the cycle counter; the rest run as in the timed
 * loop, so the sampling costs little. */
double replay_latency(const struct alloc_methods *m, void *st, const struct trace *t, void **ptr,
                      unsigned every, const struct lat_clock *clk,
                      struct lat_hist hist[LAT_KINDS]) {
  memset(ptr, 0, t->n_slots * sizeof *ptr);
  uint64_t failed = 0;
  unsigned left = 1;
  double start = now();
  for (size_t i = 0; i < t->n_ops; i++) {
    const struct trace_op *op = &t->ops[i];
    if (--left) {
      i += run_op(m, st, op, ptr, &failed);
      continue;
    }
    left = every;
    uint64_t a = lat_ticks();
    uint64_t skip = run_op(m, st, op, ptr, &failed);
    uint64_t d = lat_ticks() - a;
    if (op->kind != OP_RESET)
      lat_add(&hist[lat_kind(op->kind)], d > clk->overhead ? d - clk->overhead : 0);
    i += skip;
  }
  return now() - start;
}

static int new_block(struct replay_pass *ps, const struct trace_op *o) {
  void *p;
  if (o->kind == OP_CALLOC)
    p = zeroed(ps->m, ps->st, o->size);
  else if (o->kind == OP_MEMALIGN)
    p = ps->m->memalign(ps->st, o->arg, o->size);
  else
    p = ps->m->malloc(ps->st, o->size);
  ps->ptr[o->slot] = p;
  ps->mod[o->slot] = o->size;
  ps->req[o->slot] = o->kind == OP_MALLOC ? o->size - o->arg : o->size;
  ps->live += ps->req[o->slot];
  if (!p) {
    ps->r->failed++;
    return 0;
  }
  if (!ps->chk)
    return 0;
  size_t align = o->kind == OP_MEMALIGN ? o->arg : 0;
  /* The op's address is unique per allocation: a good pattern seed. */
  return check_new(ps->chk, o->slot, p, o->size, align, o->kind == OP_CALLOC, (uintptr_t)o);
}

/* A free of a block freed already (trace_parse_stale): the module gets the stale address,
 * the checker and the live bytes nothing. */
static void stale_free(struct replay_pass *ps, const struct trace_op *o) {
  ps->m->free(ps->st, ps->gone ? ps->gone[o->slot] : NULL, o->size);
}

static int free_block(struct replay_pass *ps, const struct trace_op *o, int call) {
  if (o->arg == TRACE_STALE && o->kind == OP_FREE) {
    stale_free(ps, o);
    return 0;
  }
  void *p = ps->ptr[o->slot];
  if (p && ps->chk && check_release(ps->chk, o->slot, p, o->size))
    return -1;
  if (call)
    ps->m->free(ps->st, p, o->size);
  if (ps->gone)
    ps->gone[o->slot] = p;
  ps->live -= ps->req[o->slot];
  ps->req[o->slot] = ps->mod[o->slot] = 0;
  if (o->slot)
    ps->ptr[o->slot] = NULL;
  return 0;
}

static int realloc_block(struct replay_pass *ps, const struct trace_op *o) {
  void *old = ps->ptr[o->slot];
  ps->live = ps->live - ps->req[o->slot] + o->size;
  ps->req[o->slot] = o->size;
  if (!old) { /* its allocation had failed: realloc(NULL, n) */
    ps->live -= o->size;
    return new_block(ps, &(struct trace_op){.kind = OP_MALLOC, .size = o->size, .slot = o->slot});
  }
  if (ps->chk && check_release(ps->chk, o->slot, old, o->arg))
    return -1;
  void *p = ps->m->realloc(ps->st, old, o->arg, o->size);
  if (!p) { /* as in the timed loop: the old block is freed */
    ps->r->failed++;
    ps->m->free(ps->st, old, o->arg);
    ps->ptr[o->slot] = NULL;
    ps->mod[o->slot] = 0;
    return 0;
  }
  ps->ptr[o->slot] = p;
  ps->mod[o->slot] = o->size;
  return ps->chk ? check_moved(ps->chk, o->slot, p, o->arg, o->size) : 0;
}

int replay_pass_op(struct replay_pass *ps, const struct trace_op *o) {
  switch (o->kind) {
  case OP_FREE:
    return free_block(ps, o, 1);
  case OP_REALLOC:
    return realloc_block(ps, o);
  case OP_RESET:
    return 0; /* threads replay the frees that follow it one by one */
  default:
    return new_block(ps, o);
  }
}

static uint64_t internal_frag(const struct replay_pass *ps) {
  uint64_t sum = 0;
  for (uint32_t s = 1; s < ps->t->n_slots; s++)
    if (ps->ptr[s])
      sum += ps->m->usable_size(ps->st, ps->ptr[s], ps->mod[s]) - ps->req[s];
  return sum;
}

/* The module's detection count rose at op i: the first one is kept with its op. */
static void detected(struct replay_measures *r, size_t i) {
  if (!r->detections) {
    r->detect_op = i;
    snprintf(r->detect_msg, sizeof r->detect_msg, "%s",
             r->final_stats.detection ? r->final_stats.detection : "a misuse");
  }
  r->detections = r->final_stats.detections;
}

/* After op i: footprint, the peaks and the moments METRICS.md names. */
static void follow(struct replay_pass *ps, size_t i) {
  struct replay_measures *r = ps->r;
  ps->m->stats(ps->st, &r->final_stats);
  if (r->final_stats.detections != r->detections)
    detected(r, i);
  uint64_t fp = r->final_stats.footprint, live = ps->live;
  if (live > r->peak_live)
    r->peak_live = live;
  if (fp > r->peak_footprint) {
    r->peak_footprint = fp;
    r->peak_footprint_op = i;
    r->live_at_peak_footprint = live;
  }
  if (live > 0) {
    r->frag1_sum += ((double)fp - (double)live) / (double)live;
    r->frag1_n++;
  }
  if (i == ps->t->peak_live_op) {
    r->footprint_at_peak_live = fp;
    r->internal_frag = internal_frag(ps);
  }
  if ((i % ps->series_every == 0 || i + 1 == ps->t->n_ops) && r->n_series < REPLAY_SERIES_MAX)
    r->series[r->n_series++] = (struct replay_point){i, live, fp};
  if (ps->touch_region && i == ps->touch_at)
    r->touched = region_resident(ps->touch_region, fp); /* nothing past the break is used */
}

/* A reset with the module's hook: the frees that follow are checked and followed, but the
 * module sees one reset call. Returns the number of ops consumed after o. */
static int reset_all(struct replay_pass *ps, const struct trace_op *o, size_t i, size_t *ret_skip) {
  for (uint64_t k = 1; k <= o->arg; k++)
    if (free_block(ps, o + k, 0))
      return -1;
  ps->m->reset(ps->st);
  for (uint64_t k = 0; k <= o->arg; k++)
    follow(ps, i + k);
  *ret_skip = o->arg;
  return 0;
}

static int measured_op(struct replay_pass *ps, size_t i, size_t *ret_skip) {
  const struct trace_op *o = &ps->t->ops[i];
  *ret_skip = 0;
  int bad;
  switch (o->kind) {
  case OP_FREE:
    bad = free_block(ps, o, 1);
    break;
  case OP_REALLOC:
    bad = realloc_block(ps, o);
    break;
  case OP_RESET:
    if (ps->m->reset)
      return reset_all(ps, o, i, ret_skip);
    bad = 0;
    break;
  default:
    bad = new_block(ps, o);
    break;
  }
  if (!bad)
    follow(ps, i);
  return bad;
}

int replay_measured(const struct alloc_methods *m, void *st, const struct trace *t, void **ptr,
                    struct check *chk, const struct region *touch_region, size_t touch_at,
                    struct replay_measures *ret) {
  *ret = (struct replay_measures){0};
  memset(ptr, 0, t->n_slots * sizeof *ptr);
  struct replay_pass ps = {.m = m,
                           .st = st,
                           .t = t,
                           .ptr = ptr,
                           .chk = chk,
                           .req = calloc(t->n_slots, sizeof(uint64_t)),
                           .mod = calloc(t->n_slots, sizeof(uint64_t)),
                           .gone = t->n_stale ? calloc(t->n_slots, sizeof(void *)) : NULL,
                           .touch_region = touch_region,
                           .touch_at = touch_at,
                           .series_every = t->n_ops / 1000 + 1,
                           .r = ret};
  if (!ps.req || !ps.mod || (t->n_stale && !ps.gone))
    abort(); /* runs in a cell's child: the parent reports the failed row */
  int bad = 0;
  size_t i, skip;
  for (i = 0; i < t->n_ops; i += 1 + skip) {
    bad = measured_op(&ps, i, &skip);
    if (bad)
      break;
  }
  free(ps.req);
  free(ps.mod);
  free(ps.gone);
  if (bad) {
    ret->violation = 1;
    ret->bad_op = i;
    snprintf(ret->msg, sizeof ret->msg, "%s", chk->msg);
    return -1;
  }
  return 0;
}

int replay_leftovers(const struct trace *t, struct replay_leftovers *ret) {
  *ret = (struct replay_leftovers){0};
  uint64_t *size = region_side_alloc(t->n_slots * sizeof *size);
  uint8_t *live = region_side_alloc(t->n_slots);
  if (!size || !live)
    return -1;
  for (size_t i = 0; i < t->n_ops; i++) {
    const struct trace_op *o = &t->ops[i];
    live[o->slot] = o->kind != OP_FREE && o->kind != OP_RESET && o->slot;
    if (live[o->slot])
      size[o->slot] = o->size;
  }
  ret->cap = t->n_slots;
  ret->slot = region_side_alloc(t->n_slots * sizeof *ret->slot);
  ret->size = region_side_alloc(t->n_slots * sizeof *ret->size);
  for (uint32_t s = 0; ret->slot && ret->size && s < t->n_slots; s++) {
    if (!live[s])
      continue;
    ret->slot[ret->n] = s;
    ret->size[ret->n++] = size[s];
  }
  region_side_free(size, t->n_slots * sizeof *size);
  region_side_free(live, t->n_slots);
  return ret->slot && ret->size ? 0 : -1;
}

void replay_free_leftovers(const struct alloc_methods *m, void *st, void **ptr,
                           const struct replay_leftovers *lo) {
  for (size_t i = 0; i < lo->n; i++)
    m->free(st, ptr[lo->slot[i]], lo->size[i]);
}

void replay_detection_text(const char *alloc, const struct trace *t,
                           const struct replay_measures *r, char *buf, size_t len) {
  snprintf(buf, len, "%s: %s:%u: the module detected %s (%llu detection%s in all)", alloc, t->path,
           trace_line(t, r->detect_op), r->detect_msg, (unsigned long long)r->detections,
           r->detections == 1 ? "" : "s");
}

void replay_leftovers_fini(struct replay_leftovers *lo) {
  region_side_free(lo->slot, lo->cap * sizeof *lo->slot);
  region_side_free(lo->size, lo->cap * sizeof *lo->size);
}
