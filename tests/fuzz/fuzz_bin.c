/*
 * Fuzz target: the binary trace reader ("ATRB"). Bytes that start with the magic are read
 * as a binary trace; others are read as a text trace (after "alloctrace 1" unless they
 * bring a header), written with trace_bin_write and read back, which must give the same ops,
 * slots, threads and peak: the converter and the reader follow the same slot rule.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "trace_bin.h"

struct sink {
  uint8_t *buf;
  size_t len, cap;
};

static int put(void *ctx, const void *p, size_t n) {
  struct sink *s = ctx;
  if (s->len + n > s->cap) {
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->len + n)
      cap *= 2;
    uint8_t *b = realloc(s->buf, cap);
    if (!b)
      return -1;
    s->buf = b;
    s->cap = cap;
  }
  memcpy(s->buf + s->len, p, n);
  s->len += n;
  return 0;
}

static void same(int ok, const char *what) {
  if (ok)
    return;
  fprintf(stderr, "fuzz: the binary round trip changed %s\n", what);
  abort();
}

static void round_trip(const struct trace *t) {
  struct sink s = {0};
  char err[512];
  if (trace_bin_write(t, "fuzz", put, &s, err, sizeof err)) {
    fprintf(stderr, "fuzz: trace_bin_write: %s\n", err);
    abort();
  }
  struct trace b;
  if (trace_bin_parse(&b, "fuzz.atrb", s.buf, s.len, err, sizeof err)) {
    fprintf(stderr, "fuzz: reading back what trace_bin_write wrote: %s\n", err);
    abort();
  }
  fz_verify(&b);
  same(b.n_ops == t->n_ops, "the op count");
  for (size_t i = 0; i < t->n_ops; i++) {
    const struct trace_op *x = &t->ops[i], *y = &b.ops[i];
    if (x->kind != y->kind || x->slot != y->slot || x->size != y->size || x->arg != y->arg ||
        x->thread != y->thread) {
      fprintf(stderr,
              "fuzz: op %zu: kind %u slot %u size %llu arg %llu thread %u became "
              "kind %u slot %u size %llu arg %llu thread %u\n",
              i, x->kind, x->slot, (unsigned long long)x->size, (unsigned long long)x->arg,
              x->thread, y->kind, y->slot, (unsigned long long)y->size, (unsigned long long)y->arg,
              y->thread);
      abort();
    }
  }
  same(b.n_slots == t->n_slots && b.n_threads == t->n_threads, "slots or threads");
  same(b.peak_live == t->peak_live && b.peak_live_op == t->peak_live_op, "the peak");
  same(b.n_reset == t->n_reset && b.n_calloc == t->n_calloc, "the op counts");
  trace_free(&b);
  free(s.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct trace t;
  char err[512];
  if (trace_bin_is(data, size)) {
    if (trace_bin_parse(&t, "fuzz.atrb", data, size, err, sizeof err) == 0) {
      fz_verify(&t);
      trace_free(&t);
    } else if (strncmp(err, "fuzz.atrb", 9) != 0) {
      fprintf(stderr, "fuzz: an error that does not name the trace: %s\n", err);
      abort();
    }
    return 0;
  }
  int own = (size >= 10 && memcmp(data, "alloctrace", 10) == 0) ||
            (size && data[0] >= '0' && data[0] <= '9');
  if (fz_parse(&t, "fuzz.trace", own ? NULL : "alloctrace 1\n", data, size))
    return 0;
  round_trip(&t);
  trace_free(&t);
  return 0;
}
