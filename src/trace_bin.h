/*
 * Binary traces ("ATRB"): the validated trace, one record of a few bytes per op, so that
 * reading one is a single pass with no parsing and no id table. The layout is specified in
 * docs/trace-format.md. The record encoders are inline here because the recorder
 * (src/recorder.c, a separate shared module) writes the same records.
 *
 * Slots are not stored for allocations: the reader gives an allocation the slot freed last
 * (LIFO), or the next new one, exactly as the text reader does, so a binary trace converted
 * from text has the same ops, and writers (converter, recorder) follow the same rule.
 */
#ifndef TRACE_BIN_H
#define TRACE_BIN_H

#include <stddef.h>
#include <stdint.h>

#include "trace.h"

#define TRACE_BIN_MAGIC "ATRB"
#define TRACE_BIN_VERSION 1     /* the record stream: what the recorder writes */
#define TRACE_BIN_HEADER 32     /* fixed header bytes; the metadata text follows */
#define TRACE_BIN_META_MAX 4096 /* longest metadata text */
#define TRACE_BIN_RECORD_MAX 32 /* longest record: tag, thread, slot or size, alignment */

/* Header flags. */
enum {
  TRACE_BIN_COMPLETE = 1, /* the writer finished: the counts below are valid */
  TRACE_BIN_LINES_SEQ = 2 /* version 2: op i is on line base + i, and no lines are stored */
};

/* A record: a tag byte, then its fields.
 *   tag: bits 0-3 the code, bit 4 (TRACE_BIN_THREAD) set when a thread number follows
 *        (otherwise the thread is the previous record's), bits 5-7 the length L in bytes
 *        (0 to 7) of the record's value;
 *   thread: LEB128 varint, if bit 4;
 *   alignment: one byte, log2 of it, for MEMALIGN only;
 *   value: L bytes, little-endian (0 when L is 0): the size of an allocation, or the slot
 *        of a free or a realloc;
 *   new size: LEB128 varint, for REALLOC only.
 * The text event each code stands for is in its comment. */
enum trace_bin_code {
  TRACE_BIN_MALLOC = 0,        /* m: value = size */
  TRACE_BIN_FREE = 1,          /* f: value = slot (0: free(NULL)) */
  TRACE_BIN_REALLOC = 2,       /* r of a live block: value = slot; new size (> 0) */
  TRACE_BIN_REALLOC_NEW = 3,   /* r of no block, a malloc: value = size */
  TRACE_BIN_REALLOC_FREE = 4,  /* r to size 0, a free: value = slot */
  TRACE_BIN_CALLOC = 5,        /* c: value = size (count x size) */
  TRACE_BIN_MEMALIGN = 6,      /* a, alignment 32 to 2^30: alignment; value = size */
  TRACE_BIN_ALIGNED_SMALL = 7, /* a, alignment 16 or less, a malloc: value = size */
  TRACE_BIN_RESET = 8,         /* x: value 0; one RESET_FREE record per live block follows */
  TRACE_BIN_RESET_FREE = 9,    /* a free done by the reset before it: value = slot */
  TRACE_BIN_CODES = 10,
};
#define TRACE_BIN_THREAD 0x10

struct trace_bin_header {
  uint16_t version, flags;
  uint64_t records;  /* ops; 0 when not complete */
  uint32_t slots;    /* struct trace's n_slots, slot 0 included; 0 when not complete */
  uint32_t threads;  /* struct trace's n_threads; 0 when not complete */
  uint32_t meta_len; /* bytes of metadata text after the fixed header */
};

static inline void trace_bin_le(uint8_t *p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

/* The fixed 32 header bytes. */
static inline void trace_bin_header_encode(uint8_t *p, const struct trace_bin_header *h) {
  p[0] = 'A', p[1] = 'T', p[2] = 'R', p[3] = 'B';
  trace_bin_le(p + 4, h->version, 2);
  trace_bin_le(p + 6, h->flags, 2);
  trace_bin_le(p + 8, h->records, 8);
  trace_bin_le(p + 16, h->slots, 4);
  trace_bin_le(p + 20, h->threads, 4);
  trace_bin_le(p + 24, h->meta_len, 4);
  trace_bin_le(p + 28, 0, 4); /* reserved */
}

/* LEB128: seven bits a byte, low bits first. Returns the bytes written (at most 10). */
static inline size_t trace_bin_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

/* Encodes one record at p (TRACE_BIN_RECORD_MAX bytes free); thread < 0 keeps the
 * previous record's thread. Fields a code does not carry are ignored. Values must be
 * below 2^56 (sizes are at most 2^47, slots below 2^32). Returns the record's length. */
static inline size_t trace_bin_record(uint8_t *p, enum trace_bin_code code, int thread,
                                      uint64_t slot, uint64_t size, unsigned align_log2) {
  int by_slot = code == TRACE_BIN_FREE || code == TRACE_BIN_REALLOC ||
                code == TRACE_BIN_REALLOC_FREE || code == TRACE_BIN_RESET_FREE;
  uint64_t value = code == TRACE_BIN_RESET ? 0 : by_slot ? slot : size;
  unsigned len = 0;
  while (len < 7 && (value >> (8 * len)) != 0)
    len++;
  size_t n = 1;
  p[0] = (uint8_t)(code | len << 5);
  if (thread >= 0) {
    p[0] |= TRACE_BIN_THREAD;
    n += trace_bin_varint(p + n, (uint64_t)thread);
  }
  if (code == TRACE_BIN_MEMALIGN)
    p[n++] = (uint8_t)align_log2;
  trace_bin_le(p + n, value, (int)len);
  n += len;
  if (code == TRACE_BIN_REALLOC)
    n += trace_bin_varint(p + n, size);
  return n;
}

/* Version 2, the ops image: the trace as the readers leave it in memory, so that it can be
 * mapped and used in place. A 128-byte header (the version-1 fields at the same offsets,
 * then the ops' offset, the lines' offset, the op counts, the peak), the metadata, zeros up
 * to TRACE_BIN_V2_ALIGN, the struct trace_op array (24 bytes each, little-endian fields at
 * their in-memory offsets), then one uint32 line number per op, unless the flag
 * TRACE_BIN_LINES_SEQ says op i is on line base + i (base: the u32 at byte 112). The reader
 * validates every op before it hands the trace out. Layout: docs/trace-format.md. */
#define TRACE_BIN_V2 2
#define TRACE_BIN_V2_HEADER 128
#define TRACE_BIN_V2_ALIGN 64

/* True when buf starts with the binary magic. */
int trace_bin_is(const void *buf, size_t len);

/* Reads a binary trace held in memory (either version; a version-2 trace's ops are copied)
 * into ret, with the text reader's validation and semantics. Returns 0, or -1 with
 * "NAME: record N (byte B): problem" (version 1), "NAME: op N (byte B): problem" (version
 * 2) or "NAME: problem" (the header) in err. A trace
 * whose writer did not finish (no TRACE_BIN_COMPLETE) is read up to its last whole record,
 * with a warning in ret->warning. */
int trace_bin_parse(struct trace *ret, const char *name, const void *buf, size_t len, char *err,
                    size_t errlen);

/* For trace_load: when fd (len bytes) holds a version-2 trace, reads it as trace_bin_parse
 * would, with its ops and lines read straight into their arrays, and returns 0 or -1.
 * Returns 1, reading nothing into ret, when it is not a version-2 trace. */
int trace_bin_read_v2(struct trace *ret, const char *name, int fd, size_t len, char *err,
                      size_t errlen);

/* Copies the header's metadata text (the recorder's process and command line) into ret,
 * NUL-terminated, or "" when there is none. Returns 0, or -1 if buf is not a binary trace. */
int trace_bin_meta(const void *buf, size_t len, char *ret, size_t n);

/* Where writers send bytes: returns 0, or -1 on failure (the sink keeps the reason). */
typedef int (*trace_bin_sink)(void *ctx, const void *p, size_t n);

/* Writes t (as trace_load made it: not lowered) as a complete binary trace through put,
 * with meta (or NULL) as its metadata. Returns 0, or -1 with err set (or empty when the
 * sink failed). */
int trace_bin_write(const struct trace *t, const char *meta, trace_bin_sink put, void *ctx,
                    char *err, size_t errlen);

/* The same, as a version-2 ops image. The ops are validated as the reader validates them
 * (an invalid trace is refused with "op N: problem" in err), and the header's counts come
 * from that pass. */
int trace_bin_write_v2(const struct trace *t, const char *meta, trace_bin_sink put, void *ctx,
                       char *err, size_t errlen);

/* The version number in the header of the binary trace at buf, or 0 if it is not one. */
int trace_bin_version(const void *buf, size_t len);

#endif
