/*
 * Fuzz target: the binary trace readers ("ATRB" versions 1 and 2). Bytes that start with
 * the magic are read as a binary trace (either version); a version-1 trace read is written
 * again as version 2 and read back, which must give the same trace. Other bytes are read as
 * a text trace (after "alloctrace 1" unless they bring a header), written with
 * trace_bin_write and trace_bin_write_v2 and read back, which must give the same ops, slots,
 * threads and peak (and lines, for version 2); then the version-2 image is damaged in a few
 * bytes chosen from the input and read again: refused, or a trace that keeps every invariant.
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

typedef int (*writer_fn)(const struct trace *, const char *, trace_bin_sink, void *, char *,
                         size_t);

/* The bytes writer gives t, read back: the same trace. Returns the bytes (the caller frees). */
static struct sink round_trip(const struct trace *t, writer_fn writer) {
  struct sink s = {0};
  char err[512];
  if (writer(t, "fuzz", put, &s, err, sizeof err)) {
    fprintf(stderr, "fuzz: writing the binary trace: %s\n", err);
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
  same(b.n_reset == t->n_reset && b.n_calloc == t->n_calloc && b.n_malloc == t->n_malloc &&
           b.n_free == t->n_free && b.n_realloc == t->n_realloc && b.n_memalign == t->n_memalign,
       "the op counts");
  for (size_t i = 0; writer == trace_bin_write_v2 && i < t->n_ops; i++)
    same(trace_line(&b, i) == trace_line(t, i), "the lines");
  trace_free(&b);
  return s;
}

/* A few bytes of a valid version-2 image changed, where and how the input's hash says;
 * mostly in the ops and lines, sometimes in the header. */
static void damaged(struct sink img, const uint8_t *data, size_t size) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < size; i++)
    h = (h ^ data[i]) * 1099511628211ull;
  uint64_t ops_at = 0;
  for (int i = 7; i >= 0; i--)
    ops_at = ops_at << 8 | img.buf[32 + i];
  for (int k = 0; k < 3; k++, h = h * 6364136223846793005ull + 1442695040888963407ull) {
    size_t from = (h >> 60) == 0 ? 0 : (size_t)ops_at; /* the header one time in 16 */
    if (img.len > from)
      img.buf[from + (h >> 8) % (img.len - from)] ^= (uint8_t)((h >> 32) | 1);
  }
  struct trace t;
  char err[512];
  if (trace_bin_parse(&t, "fuzz.atrb", img.buf, img.len, err, sizeof err) == 0) {
    fz_verify(&t);
    trace_free(&t);
  } else if (strncmp(err, "fuzz.atrb: ", 11) != 0) {
    fprintf(stderr, "fuzz: an error that does not name the trace: %s\n", err);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct trace t;
  char err[512];
  if (trace_bin_is(data, size)) {
    if (trace_bin_parse(&t, "fuzz.atrb", data, size, err, sizeof err) == 0) {
      fz_verify(&t);
      if (trace_bin_version(data, size) == TRACE_BIN_VERSION)
        free(round_trip(&t, trace_bin_write_v2).buf); /* version 1 -> 2: the same trace */
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
  free(round_trip(&t, trace_bin_write).buf);
  struct sink img = round_trip(&t, trace_bin_write_v2);
  damaged(img, data, size);
  free(img.buf);
  trace_free(&t);
  return 0;
}
