/* Binary traces: the reader (one pass over the mapped file, validating as the text reader
 * does) and the writer (from a loaded trace). */
#include "trace_bin.h"

#include "region.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A live slot's size carries this bit; sizes never reach it (TRACE_MAX_SIZE is 2^47). */
#define LIVE (1ull << 63)

struct reader {
  struct trace *t;
  const char *name;
  char *err;
  size_t errlen;
  const uint8_t *start, *p, *end;
  const uint8_t *rec; /* the record being read */
  struct trace_bin_header h;
  uint64_t *slot_size; /* LIVE | requested size, per slot */
  uint32_t *free_slots;
  size_t n_free, cap_slots;
  uint64_t live;
  uint64_t reset_frees; /* RESET_FREE records still due after a RESET */
  size_t reset_at;      /* index of that RESET op */
  uint16_t thread;
};

static uint64_t get_le(const uint8_t *p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

int trace_bin_is(const void *buf, size_t len) {
  return len >= 4 && memcmp(buf, TRACE_BIN_MAGIC, 4) == 0;
}

static int fail(struct reader *r, const char *fmt, ...) {
  int n = snprintf(r->err, r->errlen, "%s: record %zu (byte %zu): ", r->name, r->t->n_ops + 1,
                   (size_t)(r->rec - r->start));
  va_list ap;
  va_start(ap, fmt);
  if (n >= 0 && (size_t)n < r->errlen)
    vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

/* A header problem: no record to name. */
static int fail_header(struct reader *r, const char *what) {
  snprintf(r->err, r->errlen, "%s: %s", r->name, what);
  return -1;
}

static int read_header(struct reader *r) {
  size_t len = (size_t)(r->end - r->start);
  if (len < TRACE_BIN_HEADER)
    return fail_header(r, "truncated binary trace: the file ends inside its 32-byte header");
  const uint8_t *b = r->start;
  r->h = (struct trace_bin_header){.version = (uint16_t)get_le(b + 4, 2),
                                   .flags = (uint16_t)get_le(b + 6, 2),
                                   .records = get_le(b + 8, 8),
                                   .slots = (uint32_t)get_le(b + 16, 4),
                                   .threads = (uint32_t)get_le(b + 20, 4),
                                   .meta_len = (uint32_t)get_le(b + 24, 4)};
  char msg[192];
  if (r->h.version != TRACE_BIN_VERSION) {
    snprintf(msg, sizeof msg, "unsupported binary trace version %u (this harness reads version %d)",
             (unsigned)r->h.version, TRACE_BIN_VERSION);
    return fail_header(r, msg);
  }
  if (r->h.flags & ~TRACE_BIN_COMPLETE) {
    snprintf(msg, sizeof msg, "unknown header flags 0x%x", (unsigned)r->h.flags);
    return fail_header(r, msg);
  }
  if (r->h.meta_len > TRACE_BIN_META_MAX) {
    snprintf(msg, sizeof msg, "corrupt header: metadata of %u bytes (at most %d)",
             (unsigned)r->h.meta_len, TRACE_BIN_META_MAX);
    return fail_header(r, msg);
  }
  if (r->h.meta_len > len - TRACE_BIN_HEADER)
    return fail_header(r, "truncated binary trace: the file ends inside its metadata");
  int complete = r->h.flags & TRACE_BIN_COMPLETE;
  size_t data = len - TRACE_BIN_HEADER - r->h.meta_len;
  if (complete && r->h.slots && r->h.records > data) { /* each record takes a byte at least */
    snprintf(msg, sizeof msg,
             "truncated binary trace: %zu bytes of records, too few for the %llu records its "
             "header announces",
             data, (unsigned long long)r->h.records);
    return fail_header(r, msg);
  }
  if (complete && (r->h.slots == 0 || r->h.threads == 0 || r->h.threads > 65536 ||
                   r->h.slots > r->h.records + 1)) {
    snprintf(msg, sizeof msg, "corrupt header: %llu records, %u slots, %u threads in %zu bytes",
             (unsigned long long)r->h.records, (unsigned)r->h.slots, (unsigned)r->h.threads, len);
    return fail_header(r, msg);
  }
  r->p = b + TRACE_BIN_HEADER + r->h.meta_len;
  return 0;
}

/* Arrays are sized once from a complete header; an unfinished trace grows them. */
static int reserve_ops(struct reader *r, size_t need) {
  struct trace *t = r->t;
  if (need <= t->cap)
    return 0;
  size_t cap = t->cap ? t->cap * 2 : 4096;
  while (cap < need)
    cap *= 2;
  struct trace_op *ops = region_side_resize(t->ops, t->cap * sizeof *ops, cap * sizeof *ops);
  uint32_t *line =
      ops ? region_side_resize(t->line, t->cap * sizeof *line, cap * sizeof *line) : NULL;
  if (ops)
    t->ops = ops;
  if (!line)
    return fail(r, "out of memory reading the trace");
  t->line = line;
  t->cap = cap;
  return 0;
}

static int reserve_slots(struct reader *r, size_t need) {
  if (need <= r->cap_slots)
    return 0;
  size_t cap = r->cap_slots ? r->cap_slots * 2 : 1024;
  while (cap < need)
    cap *= 2;
  uint64_t *sizes =
      region_side_resize(r->slot_size, r->cap_slots * sizeof *sizes, cap * sizeof *sizes);
  uint32_t *fs =
      sizes ? region_side_resize(r->free_slots, r->cap_slots * sizeof *fs, cap * sizeof *fs) : NULL;
  if (sizes)
    r->slot_size = sizes;
  if (!fs)
    return fail(r, "out of memory reading the trace");
  r->free_slots = fs;
  r->cap_slots = cap;
  return 0;
}

/* A varint; -1 when it runs past the end of the data or past 64 bits. */
static int get_varint(struct reader *r, uint64_t *ret) {
  uint64_t v = 0;
  const uint8_t *p = r->p;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (p == r->end)
      return -1;
    uint8_t b = *p++;
    if (shift == 63 && b > 1)
      return -1;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (b < 0x80) {
      *ret = v;
      r->p = p;
      return 0;
    }
  }
  return -1;
}

/* Why a varint could not be read: the data ended (truncated) or it is malformed. */
static int bad_varint(struct reader *r, const char *what) {
  const uint8_t *p = r->p;
  while (p < r->end && *p >= 0x80 && p - r->p < 10)
    p++;
  if (p == r->end)
    return fail(r, "truncated binary trace: the file ends inside the record's %s", what);
  return fail(r, "corrupt record: the %s is not a valid varint", what);
}

/* The record's value: len bytes, little-endian. */
static int get_value(struct reader *r, unsigned len, uint64_t *ret) {
  if ((size_t)(r->end - r->p) < len)
    return fail(r, "truncated binary trace: the file ends inside the record's value");
  *ret = get_le(r->p, (int)len);
  r->p += len;
  return 0;
}

static int check_size(struct reader *r, uint64_t size) {
  if (size > TRACE_MAX_SIZE)
    return fail(r, "size %llu is larger than any allocation can be (2^47)",
                (unsigned long long)size);
  return 0;
}

static inline void emit(struct reader *r, uint8_t kind, uint8_t word, uint32_t slot, uint64_t size,
                        uint64_t arg) {
  struct trace *t = r->t;
  size_t i = t->n_ops++;
  t->ops[i] = (struct trace_op){
      .size = size, .arg = arg, .slot = slot, .kind = kind, .word = word, .thread = r->thread};
  t->line[i] = (uint32_t)(i + 1); /* binary traces have no lines: messages name records */
  if (r->live > t->peak_live) {
    t->peak_live = r->live;
    t->peak_live_op = i;
  }
}

static int new_slot(struct reader *r, uint32_t *ret) {
  if (!(r->h.flags & TRACE_BIN_COMPLETE)) {
    if (reserve_slots(r, (size_t)r->t->n_slots + 1))
      return -1;
  } else if (r->t->n_slots >= r->h.slots)
    return fail(r, "more blocks live at once than the header's %u slots", (unsigned)r->h.slots);
  *ret = r->t->n_slots++;
  return 0;
}

static int do_alloc(struct reader *r, uint8_t kind, uint8_t word, uint64_t size, uint64_t arg) {
  uint32_t slot = 0;
  if (check_size(r, size))
    return -1;
  if (r->n_free)
    slot = r->free_slots[--r->n_free];
  else if (new_slot(r, &slot))
    return -1;
  r->slot_size[slot] = LIVE | size;
  r->live += size;
  emit(r, kind, word, slot, size, arg);
  return 0;
}

/* The last record before this one that named slot s, for messages (only on errors). */
static size_t last_record_of(const struct trace *t, uint32_t s) {
  for (size_t i = t->n_ops; i-- > 0;)
    if (t->ops[i].slot == s)
      return i + 1;
  return 0;
}

static int check_live(struct reader *r, const char *what, uint64_t s) {
  if (s == 0 || s >= r->t->n_slots)
    return fail(r, "%s of slot %llu, which was never allocated", what, (unsigned long long)s);
  if (!(r->slot_size[s] & LIVE) && strcmp(what, "realloc") != 0)
    return fail(r, "double %s of slot %llu (freed at record %zu)", what, (unsigned long long)s,
                last_record_of(r->t, (uint32_t)s));
  if (!(r->slot_size[s] & LIVE))
    return fail(r, "%s of slot %llu, which was freed at record %zu", what, (unsigned long long)s,
                last_record_of(r->t, (uint32_t)s));
  return 0;
}

static void do_free(struct reader *r, uint32_t slot, uint8_t word) {
  uint64_t size = r->slot_size[slot] & ~LIVE;
  r->slot_size[slot] = size;
  r->free_slots[r->n_free++] = slot;
  r->live -= size;
  emit(r, OP_FREE, word, slot, size, 0);
}

static int rec_free(struct reader *r, uint8_t code, uint64_t slot) {
  if (code == TRACE_BIN_FREE) {
    r->t->n_free++;
    if (slot == 0) { /* free(NULL) */
      emit(r, OP_FREE, 'f', 0, 0, 0);
      return 0;
    }
  }
  if (code == TRACE_BIN_RESET_FREE) {
    if (!r->reset_frees)
      return fail(r, "corrupt record: a reset-free record that no reset announced");
    r->reset_frees--;
  }
  const char *what = code == TRACE_BIN_FREE           ? "free"
                     : code == TRACE_BIN_REALLOC_FREE ? "realloc"
                                                      : "reset free";
  if (check_live(r, what, slot))
    return -1;
  if (code == TRACE_BIN_REALLOC_FREE)
    r->t->n_realloc++;
  do_free(r, (uint32_t)slot,
          code == TRACE_BIN_FREE           ? 'f'
          : code == TRACE_BIN_REALLOC_FREE ? 'r'
                                           : 'x');
  return 0;
}

static int rec_realloc(struct reader *r, uint64_t slot) {
  uint64_t size = 0;
  if (check_live(r, "realloc", slot))
    return -1;
  if (get_varint(r, &size))
    return bad_varint(r, "new size");
  if (check_size(r, size))
    return -1;
  if (size == 0)
    return fail(r, "corrupt record: a realloc to size 0 must be a realloc-free record");
  uint64_t old = r->slot_size[slot] & ~LIVE;
  r->slot_size[slot] = LIVE | size;
  r->live = r->live - old + size;
  r->t->n_realloc++;
  emit(r, OP_REALLOC, 'r', (uint32_t)slot, size, old);
  return 0;
}

static int rec_reset(struct reader *r, uint64_t value) {
  struct trace *t = r->t;
  if (value)
    return fail(r, "corrupt record: a reset with the value %llu", (unsigned long long)value);
  t->n_reset++;
  r->reset_at = t->n_ops;
  r->reset_frees = (t->n_slots - 1) - r->n_free; /* the live blocks */
  emit(r, OP_RESET, 'x', 0, 0, r->reset_frees);
  return 0;
}

/* The record's tag and thread; 0 or -1. */
static int read_tag(struct reader *r, uint8_t *ret_code, unsigned *ret_len) {
  uint8_t tag = *r->p++;
  *ret_code = tag & 0x0f;
  *ret_len = tag >> 5;
  if (*ret_code >= TRACE_BIN_CODES)
    return fail(r, "corrupt record: unknown record byte 0x%02x", tag);
  if (tag & TRACE_BIN_THREAD) {
    uint64_t th;
    if (get_varint(r, &th))
      return bad_varint(r, "thread");
    if (th > 65535)
      return fail(r, "thread %llu is out of range (0 to 65535)", (unsigned long long)th);
    r->thread = (uint16_t)th;
    if (th >= r->t->n_threads)
      r->t->n_threads = (uint32_t)th + 1;
  }
  if (r->reset_frees && *ret_code != TRACE_BIN_RESET_FREE)
    return fail(r, "the reset at record %zu frees %llu more blocks than reset-free records follow",
                r->reset_at + 1, (unsigned long long)r->reset_frees);
  return 0;
}

/* One record, every check made: the careful path, for what the hot loop leaves. */
static int read_record(struct reader *r) {
  r->rec = r->p;
  uint8_t code;
  unsigned len, lg = 0;
  uint64_t v = 0;
  if (read_tag(r, &code, &len))
    return -1;
  if (code == TRACE_BIN_MEMALIGN) {
    if (r->p == r->end)
      return fail(r, "truncated binary trace: the file ends inside the record's alignment");
    lg = *r->p++;
    if (lg < 5 || lg > 30)
      return fail(r, "alignment 2^%u in an aligned record is not from 32 to 2^30", lg);
  }
  if (get_value(r, len, &v))
    return -1;
  switch (code) {
  case TRACE_BIN_MALLOC:
    r->t->n_malloc++;
    return do_alloc(r, OP_MALLOC, 'm', v, 0);
  case TRACE_BIN_REALLOC_NEW:
    r->t->n_realloc++;
    return do_alloc(r, OP_MALLOC, 'r', v, 0);
  case TRACE_BIN_ALIGNED_SMALL:
    r->t->n_memalign++;
    return do_alloc(r, OP_MALLOC, 'a', v, 0);
  case TRACE_BIN_CALLOC:
    r->t->n_calloc++;
    return do_alloc(r, OP_CALLOC, 'c', v, 0);
  case TRACE_BIN_MEMALIGN:
    r->t->n_memalign++;
    return do_alloc(r, OP_MEMALIGN, 'a', v, 1ull << lg);
  case TRACE_BIN_REALLOC:
    return rec_realloc(r, v);
  case TRACE_BIN_RESET:
    return rec_reset(r, v);
  default:
    return rec_free(r, code, v);
  }
}

/* --- the hot loop --- */

/* A varint of at most 8 bytes, decoded without branches on its length: one 8-byte load,
 * the first byte without its high bit ends it, then the 7-bit groups are packed in three
 * steps. Returns its length, or 0 for a longer varint. */
static inline unsigned fast_varint(const uint8_t *p, uint64_t *ret) {
  uint64_t x;
  memcpy(&x, p, sizeof x); /* little-endian: byte 0 in the low bits */
  uint64_t last = ~x & 0x8080808080808080ull;
  x &= (last ^ (last - 1)) & 0x7f7f7f7f7f7f7f7full; /* the bytes up to the last one */
  x = ((x & 0x7f007f007f007f00ull) >> 1) | (x & 0x007f007f007f007full);
  x = ((x & 0x3fff00003fff0000ull) >> 2) | (x & 0x00003fff00003fffull);
  x = ((x & 0x0fffffff00000000ull) >> 4) | (x & 0x000000000fffffffull);
  *ret = x;
  return last ? (unsigned)(__builtin_ctzll(last) >> 3) + 1 : 0;
}

/* The value of len bytes at p, with one load and a mask (no branch on len). */
static inline uint64_t fast_value(const uint8_t *p, unsigned len) {
  static const uint64_t mask[8] = {0,          0xff,         0xffff,         0xffffff,
                                   0xffffffff, 0xffffffffff, 0xffffffffffff, 0xffffffffffffff};
  uint64_t x;
  memcpy(&x, p, sizeof x); /* little-endian */
  return x & mask[len];
}

/* The op and the word each common code gives. */
static const uint8_t code_kind[TRACE_BIN_CODES] = {
    [TRACE_BIN_MALLOC] = OP_MALLOC,     [TRACE_BIN_FREE] = OP_FREE,
    [TRACE_BIN_REALLOC] = OP_REALLOC,   [TRACE_BIN_REALLOC_NEW] = OP_MALLOC,
    [TRACE_BIN_REALLOC_FREE] = OP_FREE, [TRACE_BIN_CALLOC] = OP_CALLOC,
    [TRACE_BIN_MEMALIGN] = OP_MEMALIGN, [TRACE_BIN_ALIGNED_SMALL] = OP_MALLOC,
    [TRACE_BIN_RESET] = OP_RESET,       [TRACE_BIN_RESET_FREE] = OP_FREE};
static const uint8_t code_word[TRACE_BIN_CODES] = {'m', 'f', 'r', 'r', 'r',
                                                   'c', 'a', 'a', 'x', 'x'};

/* Reader state the hot loop keeps in registers. */
struct fast {
  const uint8_t *p;
  size_t n;
  uint64_t live, peak;
  size_t peak_op;
  uint32_t n_slots, n_threads;
  size_t n_free;
  uint16_t thread;
  uint64_t count[TRACE_BIN_CODES]; /* records by code */
};

static void fast_done(struct reader *r, const struct fast *f) {
  struct trace *t = r->t;
  r->p = f->p;
  t->n_ops = f->n;
  r->live = f->live;
  t->peak_live = f->peak;
  t->peak_live_op = f->peak_op;
  t->n_slots = f->n_slots;
  t->n_threads = f->n_threads;
  r->n_free = f->n_free;
  r->thread = f->thread;
  t->n_malloc += f->count[TRACE_BIN_MALLOC];
  t->n_free += f->count[TRACE_BIN_FREE];
  t->n_realloc += f->count[TRACE_BIN_REALLOC] + f->count[TRACE_BIN_REALLOC_NEW] +
                  f->count[TRACE_BIN_REALLOC_FREE];
  t->n_calloc += f->count[TRACE_BIN_CALLOC];
  t->n_memalign += f->count[TRACE_BIN_MEMALIGN] + f->count[TRACE_BIN_ALIGNED_SMALL];
}

/* The hot loop, for records at least TRACE_BIN_RECORD_MAX bytes from the end of the data
 * (no bounds to check inside them) while ops and slots have room. It stops at anything
 * unusual (a reset, a malformed or invalid record, full arrays) and leaves that record to
 * read_record, which checks everything and names the problem. */
static void fast_records(struct reader *r) {
  struct trace *t = r->t;
  struct trace_op *ops = t->ops;
  uint32_t *line = t->line;
  uint64_t *ss = r->slot_size;
  uint32_t *fs = r->free_slots;
  int complete = r->h.flags & TRACE_BIN_COMPLETE;
  size_t n_max = complete && r->h.records < t->cap ? (size_t)r->h.records : t->cap;
  uint32_t slot_cap = complete ? r->h.slots : (uint32_t)r->cap_slots;
  if (r->end - r->p <= TRACE_BIN_RECORD_MAX || r->reset_frees)
    return;
  const uint8_t *safe_end = r->end - TRACE_BIN_RECORD_MAX;
  struct fast f = {.p = r->p,
                   .n = t->n_ops,
                   .live = r->live,
                   .peak = t->peak_live,
                   .peak_op = t->peak_live_op,
                   .n_slots = t->n_slots,
                   .n_threads = t->n_threads,
                   .n_free = r->n_free,
                   .thread = r->thread};
  while (f.p < safe_end && f.n < n_max) {
    const uint8_t *p = f.p + 1;
    uint8_t tag = f.p[0], code = tag & 0x0f;
    unsigned len = tag >> 5;
    uint64_t th = f.thread, size, s, arg = 0;
    if (tag & TRACE_BIN_THREAD) {
      unsigned n = fast_varint(p, &th);
      if (n == 0 || th > 65535)
        break;
      p += n;
      f.n_threads = th >= f.n_threads ? (uint32_t)th + 1 : f.n_threads;
    }
    uint32_t slot;
    switch (code) {
    case TRACE_BIN_MEMALIGN:
      if (*p < 5 || *p > 30)
        goto stop;
      arg = 1ull << *p++;
      /* fall through */
    case TRACE_BIN_MALLOC:
    case TRACE_BIN_REALLOC_NEW:
    case TRACE_BIN_ALIGNED_SMALL:
    case TRACE_BIN_CALLOC:
      size = fast_value(p, len);
      p += len;
      if (size > TRACE_MAX_SIZE)
        goto stop;
      if (f.n_free)
        slot = fs[--f.n_free];
      else if (f.n_slots < slot_cap)
        slot = f.n_slots++;
      else
        goto stop;
      ss[slot] = LIVE | size;
      f.live += size;
      f.peak_op = f.live > f.peak ? f.n : f.peak_op;
      f.peak = f.live > f.peak ? f.live : f.peak;
      break;
    case TRACE_BIN_FREE:
    case TRACE_BIN_REALLOC_FREE:
      s = fast_value(p, len);
      p += len;
      size = 0;
      slot = 0;
      if (s == 0 && code == TRACE_BIN_FREE) /* free(NULL) */
        break;
      if (s >= f.n_slots || !(ss[s] & LIVE))
        goto stop;
      slot = (uint32_t)s;
      size = ss[s] & ~LIVE;
      ss[s] = size;
      fs[f.n_free++] = slot;
      f.live -= size;
      break;
    case TRACE_BIN_REALLOC:
      s = fast_value(p, len);
      p += len;
      len = fast_varint(p, &size);
      if (s >= f.n_slots || !(ss[s] & LIVE) || !len || size == 0 || size > TRACE_MAX_SIZE)
        goto stop;
      p += len;
      slot = (uint32_t)s;
      arg = ss[s] & ~LIVE;
      ss[s] = LIVE | size;
      f.live = f.live - arg + size;
      f.peak_op = f.live > f.peak ? f.n : f.peak_op;
      f.peak = f.live > f.peak ? f.live : f.peak;
      break;
    default: /* resets, and anything unknown */
      goto stop;
    }
    f.count[code]++;
    ops[f.n] = (struct trace_op){.size = size,
                                 .arg = arg,
                                 .slot = slot,
                                 .kind = code_kind[code],
                                 .word = code_word[code],
                                 .thread = (uint16_t)th};
    line[f.n] = (uint32_t)(f.n + 1);
    f.n++;
    f.thread = (uint16_t)th;
    f.p = p;
  }
stop:
  fast_done(r, &f);
}

static int read_complete(struct reader *r) {
  struct trace *t = r->t;
  if (reserve_ops(r, r->h.records ? r->h.records : 1) || reserve_slots(r, r->h.slots))
    return -1;
  for (;;) {
    fast_records(r);
    if (t->n_ops == r->h.records)
      break;
    if (r->p == r->end) {
      r->rec = r->p;
      return fail(r,
                  "truncated binary trace: the file ends after %zu of the %llu records its "
                  "header announces",
                  t->n_ops, (unsigned long long)r->h.records);
    }
    if (read_record(r))
      return -1;
  }
  r->rec = r->p;
  if (r->reset_frees)
    return fail(r, "the reset at record %zu frees %llu more blocks than reset-free records follow",
                r->reset_at + 1, (unsigned long long)r->reset_frees);
  if (r->p != r->end)
    return fail(r, "corrupt binary trace: %zu bytes follow the %llu records the header announces",
                (size_t)(r->end - r->p), (unsigned long long)r->h.records);
  if (t->n_slots != r->h.slots || t->n_threads != r->h.threads)
    return fail(
        r, "corrupt header: it announces %u slots and %u threads, the records use %u and %u",
        (unsigned)r->h.slots, (unsigned)r->h.threads, (unsigned)t->n_slots, (unsigned)t->n_threads);
  return 0;
}

/* An unfinished recording (the process was killed, or left by a raw exit system call):
 * every whole record counts, a record cut at the end does not. */
static int read_unfinished(struct reader *r) {
  struct trace *t = r->t;
  size_t cut = 0;
  while (r->p < r->end) {
    if (reserve_ops(r, t->n_ops + 1) || reserve_slots(r, (size_t)t->n_slots + 1))
      return -1;
    fast_records(r);
    if (r->p == r->end || reserve_ops(r, t->n_ops + 1) || reserve_slots(r, (size_t)t->n_slots + 1))
      break;
    const uint8_t *at = r->p;
    struct trace saved = *t;
    struct reader before = *r;
    if (read_record(r) == 0)
      continue;
    if (!strstr(r->err, "truncated binary trace"))
      return -1;
    /* The last record was cut: undo what it read. A cut record has changed no slot yet:
     * every record reads all its fields before it acts. */
    *t = saved;
    *r = before;
    cut = (size_t)(r->end - at);
    break;
  }
  if (r->reset_frees)
    return fail(r, "the reset at record %zu frees %llu more blocks than reset-free records follow",
                r->reset_at + 1, (unsigned long long)r->reset_frees);
  snprintf(t->warning, sizeof t->warning,
           "%s: unfinished recording (no completion mark: the process was killed or ended "
           "with a raw exit): %zu records read%s",
           r->name, t->n_ops, cut ? ", a record cut short at the end dropped" : "");
  return 0;
}

int trace_bin_parse(struct trace *ret, const char *name, const void *buf, size_t len, char *err,
                    size_t errlen) {
  *ret = (struct trace){.n_threads = 1, .n_slots = 1}; /* slot 0 holds NULL */
  struct reader r = {.t = ret,
                     .name = name,
                     .err = err,
                     .errlen = errlen,
                     .start = buf,
                     .end = (const uint8_t *)buf + len};
  r.rec = r.start;
  ret->path = strdup(name);
  int rc = ret->path ? read_header(&r) : fail_header(&r, "out of memory");
  if (rc == 0)
    rc = r.h.flags & TRACE_BIN_COMPLETE ? read_complete(&r) : read_unfinished(&r);
  region_side_free(r.slot_size, r.cap_slots * sizeof *r.slot_size);
  region_side_free(r.free_slots, r.cap_slots * sizeof *r.free_slots);
  if (rc)
    trace_free(ret);
  return rc;
}

/* Only the fixed header and the metadata are needed (buf may be the file's first bytes). */
int trace_bin_meta(const void *buf, size_t len, char *ret, size_t n) {
  if (n)
    ret[0] = '\0';
  if (!trace_bin_is(buf, len) || len < TRACE_BIN_HEADER)
    return -1;
  uint64_t meta_len = get_le((const uint8_t *)buf + 24, 4);
  if (meta_len > TRACE_BIN_META_MAX || meta_len > len - TRACE_BIN_HEADER)
    return -1;
  if (n)
    snprintf(ret, n, "%.*s", (int)meta_len, (const char *)buf + TRACE_BIN_HEADER);
  return 0;
}

/* --- writer --- */

struct writer {
  trace_bin_sink put;
  void *ctx;
  uint8_t buf[1 << 16];
  size_t len;
};

static int flush(struct writer *w) {
  int r = w->len ? w->put(w->ctx, w->buf, w->len) : 0;
  w->len = 0;
  return r;
}

static int log2_exact(uint64_t v) {
  int n = 0;
  while (v > 1) {
    v >>= 1;
    n++;
  }
  return n;
}

/* The record code for op o; in_reset: o is one of the frees a RESET announced. */
static enum trace_bin_code code_of(const struct trace_op *o, int in_reset) {
  switch (o->kind) {
  case OP_MALLOC:
    return o->word == 'r'   ? TRACE_BIN_REALLOC_NEW
           : o->word == 'a' ? TRACE_BIN_ALIGNED_SMALL
                            : TRACE_BIN_MALLOC;
  case OP_FREE:
    return in_reset                    ? TRACE_BIN_RESET_FREE
           : o->word == 'r' && o->slot ? TRACE_BIN_REALLOC_FREE
                                       : TRACE_BIN_FREE;
  case OP_REALLOC:
    return TRACE_BIN_REALLOC;
  case OP_CALLOC:
    return TRACE_BIN_CALLOC;
  case OP_MEMALIGN:
    return TRACE_BIN_MEMALIGN;
  default:
    return TRACE_BIN_RESET;
  }
}

/* Follows the reader's slot choice; an op that disagrees (a trace not made by a reader, or
 * lowered by trace_lower_memalign) cannot be written. */
struct slots {
  uint32_t *free_slots;
  size_t n_free;
  uint32_t next;
};

static int check_slot(struct slots *s, const struct trace_op *o, size_t i, char *err,
                      size_t errlen) {
  int alloc = o->kind == OP_MALLOC || o->kind == OP_CALLOC || o->kind == OP_MEMALIGN;
  if (alloc) {
    uint32_t want = s->n_free ? s->free_slots[s->n_free - 1] : s->next;
    if (o->slot != want) {
      snprintf(err, errlen, "op %zu allocates slot %u where a reader would choose slot %u", i + 1,
               (unsigned)o->slot, (unsigned)want);
      return -1;
    }
    if (s->n_free)
      s->n_free--;
    else
      s->next++;
  } else if (o->kind == OP_FREE && o->slot)
    s->free_slots[s->n_free++] = o->slot;
  if (o->kind == OP_MEMALIGN && (o->arg <= 16 || o->arg > (1u << 30) || (o->arg & (o->arg - 1)))) {
    snprintf(err, errlen, "op %zu: alignment %llu cannot be written", i + 1,
             (unsigned long long)o->arg);
    return -1;
  }
  return 0;
}

static int write_records(const struct trace *t, struct writer *w, struct slots *s, char *err,
                         size_t errlen) {
  int thread = 0;
  uint64_t reset_left = 0;
  for (size_t i = 0; i < t->n_ops; i++) {
    const struct trace_op *o = &t->ops[i];
    if (check_slot(s, o, i, err, errlen))
      return -1;
    int in_reset = o->kind == OP_FREE && reset_left > 0;
    reset_left -= (uint64_t)in_reset;
    if (o->kind == OP_RESET)
      reset_left = o->arg;
    enum trace_bin_code code = code_of(o, in_reset);
    int th = o->thread == thread ? -1 : o->thread;
    thread = o->thread;
    w->len +=
        trace_bin_record(w->buf + w->len, code, th, o->slot, o->size, (unsigned)log2_exact(o->arg));
    if (w->len > sizeof w->buf - TRACE_BIN_RECORD_MAX && flush(w))
      return -1;
  }
  return flush(w);
}

int trace_bin_write(const struct trace *t, const char *meta, trace_bin_sink put, void *ctx,
                    char *err, size_t errlen) {
  err[0] = '\0';
  size_t meta_len = meta ? strlen(meta) : 0;
  if (meta_len > TRACE_BIN_META_MAX)
    meta_len = TRACE_BIN_META_MAX;
  struct trace_bin_header h = {.version = TRACE_BIN_VERSION,
                               .flags = TRACE_BIN_COMPLETE,
                               .records = t->n_ops,
                               .slots = t->n_slots,
                               .threads = t->n_threads,
                               .meta_len = (uint32_t)meta_len};
  struct writer *w = malloc(sizeof *w);
  struct slots s = {.free_slots = region_side_alloc((size_t)t->n_slots * sizeof(uint32_t)),
                    .next = 1};
  int r = -1;
  if (!w || !s.free_slots)
    snprintf(err, errlen, "out of memory");
  else {
    w->put = put;
    w->ctx = ctx;
    w->len = TRACE_BIN_HEADER;
    trace_bin_header_encode(w->buf, &h);
    r = (meta_len && (flush(w) || put(ctx, meta, meta_len))) ? -1
                                                             : write_records(t, w, &s, err, errlen);
  }
  region_side_free(s.free_slots, (size_t)t->n_slots * sizeof(uint32_t));
  free(w);
  return r;
}
