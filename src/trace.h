/*
 * Traces: reading text (.trace) and CMU malloc-lab (.rep) files into a compact array of
 * ops, validated and with the recorder's ids mapped to dense slots, so that replay does no
 * parsing, hashing or I/O. Binary traces (trace_bin.c) and compressed ones (trace_zip.c)
 * are recognised by their first bytes. Formats are documented in docs/trace-format.md.
 */
#ifndef TRACE_H
#define TRACE_H

#include <stddef.h>
#include <stdint.h>

enum trace_kind {
  OP_MALLOC,
  OP_FREE,
  OP_REALLOC,
  OP_CALLOC,
  OP_MEMALIGN,
  OP_RESET, /* arena reset: the `arg` FREE ops that follow free every live block */
};

/* 24 bytes; the timed loop reads these sequentially. */
struct trace_op {
  uint64_t size; /* bytes requested; for FREE the requested size of the block freed */
  uint64_t arg;  /* REALLOC: old requested size; MEMALIGN: alignment; RESET: frees after;
                  MALLOC: bytes added by trace_lower_memalign, else 0 */
  uint32_t slot; /* dense index of the block; slot 0 is always NULL (free(NULL)) */
  uint8_t kind;
  uint8_t word; /* the trace's own event letter: 'm', 'f', 'r', 'c', 'a' or 'x' (a reset's
                  frees too); a realloc that is a malloc or a free keeps 'r'; 0 if unknown */
  uint16_t thread;
};

struct trace {
  char *path;
  struct trace_op *ops;
  uint32_t *line;     /* source line of each op, for messages; NULL: see trace_line */
  uint32_t line_base; /* when line is NULL, op i is on line line_base + i (binary traces) */
  size_t n_ops, cap;  /* cap: ops (and lines, if any) mapped */
  uint32_t n_slots;   /* slots in use at most, slot 0 included */
  uint32_t n_threads;
  /* Op counts by the trace's own words. */
  uint64_t n_malloc, n_free, n_realloc, n_calloc, n_memalign, n_reset;
  uint64_t n_stale; /* frees of freed blocks kept by trace_parse_stale (TRACE_STALE) */
  /* live(t) depends on the trace alone (METRICS.md). */
  uint64_t peak_live;
  size_t peak_live_op; /* t*: index of the first op after which live is at its peak */
  char warning[256];   /* a problem worth a warning but not a refusal, or "" */
};

/* The line (a binary trace: the record) op i came from, for messages. */
static inline uint32_t trace_line(const struct trace *t, size_t i) {
  return t->line ? t->line[i] : t->line_base + (uint32_t)i;
}

/* A FREE op's arg when it frees a block already freed (trace_parse_stale only). */
#define TRACE_STALE 1u

/* Largest size a trace may request: no allocation of more can have succeeded. */
#define TRACE_MAX_SIZE (1ull << 47)

/* Reads and validates path. Returns 0, or -1 with "FILE:LINE: problem" in err. */
int trace_load(struct trace *ret, const char *path, char *err, size_t errlen);

/* Parses a trace held in memory (len bytes; need not be NUL-terminated). */
int trace_parse(struct trace *ret, const char *name, const char *buf, size_t len, char *err,
                size_t errlen);

/* As trace_parse, but a double free is kept instead of refused, for tests of hardened
 * modules (the harness's own reader refuses it): it becomes a FREE op with arg TRACE_STALE
 * on the block's old slot, which is never reused, so replay passes the stale address. */
int trace_parse_stale(struct trace *ret, const char *name, const char *buf, size_t len, char *err,
                      size_t errlen);

void trace_free(struct trace *t);

/* For a module without memalign: turns each MEMALIGN into a MALLOC of size + alignment - 16
 * (the harness aligns inside the block) and fixes the sizes later ops pass for that block. */
void trace_lower_memalign(struct trace *t);

#endif
