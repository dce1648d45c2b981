/* The tests' random trace generator. */
#include "gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Mostly small sizes, some medium, a few large, a few zero: as real programs ask. */
static size_t pick_size(uint64_t *s, size_t max) {
  unsigned r = (unsigned)(next(s) % 100);
  size_t n;
  if (r < 2)
    n = 0;
  else if (r < 62)
    n = 1 + next(s) % 128;
  else if (r < 87)
    n = 129 + next(s) % 3968;
  else if (r < 97)
    n = 4096 + next(s) % 61440;
  else
    n = 65536 + next(s) % (1 << 20);
  return n > max ? max : n;
}

struct buf {
  char *p;
  size_t len, cap;
};

static void add(struct buf *b, const char *fmt, unsigned long long x, unsigned long long y,
                unsigned long long z) {
  if (b->cap - b->len < 96) {
    b->cap = b->cap ? b->cap * 2 : 1 << 16;
    b->p = realloc(b->p, b->cap);
    if (!b->p)
      abort();
  }
  b->len += (size_t)snprintf(b->p + b->len, b->cap - b->len, fmt, x, y, z);
}

static int pick_victim(uint64_t *s, int n_live, enum gen_order order) {
  if (order == GEN_LIFO)
    return n_live - 1;
  if (order == GEN_FIFO)
    return 0;
  return (int)(next(s) % (uint64_t)n_live);
}

static void new_block(struct buf *b, uint64_t *s, uint64_t id, size_t max) {
  unsigned r = (unsigned)(next(s) % 10);
  size_t size = pick_size(s, max);
  if (r == 0)
    add(b, "c %llu %llu %llu", id, 1 + size / 8, 8);
  else if (r == 1)
    add(b, "a %llu %llu %llu", id, 32ull << (next(s) % 8), size);
  else
    add(b, "m %llu %llu%.0llu", id, size, 0);
}

/* Ends the line, with a thread tag in multi-threaded traces: the block's owner, or for
 * cross_pct% of the ops on an existing block, another thread. */
static void end_line(struct buf *b, uint64_t *s, const struct gen_opts *o, int owner,
                     int may_cross) {
  if (o->threads > 1 && may_cross && (int)(next(s) % 100) < o->cross_pct)
    owner = (int)(next(s) % (uint64_t)o->threads);
  if (o->threads > 1)
    add(b, " @%llu\n%.0llu%.0llu", (unsigned long long)owner, 0, 0);
  else
    add(b, "\n%.0llu%.0llu%.0llu", 0, 0, 0);
}

char *gen_trace(const struct gen_opts *o, size_t *ret_len) {
  uint64_t s = o->seed * 2654435761u + 88172645463325252ull;
  struct buf b = {0};
  add(&b, "alloctrace 1\n%.0llu%.0llu%.0llu", 0, 0, 0);
  uint64_t *live = malloc((size_t)o->max_live * sizeof *live);
  int *owner = malloc((size_t)o->max_live * sizeof *owner);
  if (!live || !owner)
    abort();
  int n_live = 0;
  uint64_t id = 0;
  for (int i = 0; i < o->n_ops; i++) {
    unsigned r = (unsigned)(next(&s) % 100);
    if (o->resets && r == 99) {
      add(&b, "x%.0llu%.0llu%.0llu", 0, 0, 0);
      end_line(&b, &s, o, 0, 0);
      n_live = 0;
    } else if (n_live && (r < 40 || n_live == o->max_live)) {
      int v = pick_victim(&s, n_live, o->order);
      add(&b, "f %llu%.0llu%.0llu", live[v], 0, 0);
      end_line(&b, &s, o, owner[v], 1);
      memmove(live + v, live + v + 1, (size_t)(n_live - v - 1) * sizeof *live);
      memmove(owner + v, owner + v + 1, (size_t)(n_live - v - 1) * sizeof *owner);
      n_live--;
    } else if (n_live && r < 55) {
      int v = (int)(next(&s) % (uint64_t)n_live);
      size_t size = pick_size(&s, o->max_size);
      add(&b, "r %llu %llu%.0llu", live[v], size ? size : 1, 0); /* 0 would free it */
      end_line(&b, &s, o, owner[v], 1);
    } else {
      owner[n_live] = o->threads > 1 ? (int)(next(&s) % (uint64_t)o->threads) : 0;
      live[n_live] = id;
      new_block(&b, &s, id++, o->max_size);
      end_line(&b, &s, o, owner[n_live], 0);
      n_live++;
    }
  }
  free(live);
  free(owner);
  *ret_len = b.len;
  return b.p;
}
