/* Binary traces: version 1's reader (one pass over the mapped file, decoding and
 * validating as the text reader does) and writer; version 2's reader (the stored ops read
 * into place, then every op checked) and writer. */
#include "trace_bin.h"

#include "region.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Writes fmt's message after the n-byte prefix already in err (nothing when the prefix
 * filled it): the tail of every error function here. */
static void append_msg(char *err, size_t errlen, int n, const char *fmt, va_list ap) {
  if (n >= 0 && (size_t)n < errlen)
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}

static int fail(struct reader *r, const char *fmt, ...) {
  int n = snprintf(r->err, r->errlen, "%s: record %zu (byte %zu): ", r->name, r->t->n_ops + 1,
                   (size_t)(r->rec - r->start));
  va_list ap;
  va_start(ap, fmt);
  append_msg(r->err, r->errlen, n, fmt, ap);
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
    snprintf(msg, sizeof msg,
             "unsupported binary trace version %u (this harness reads versions %d and %d)",
             (unsigned)r->h.version, TRACE_BIN_VERSION, TRACE_BIN_V2);
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

/* How many elements of elem bytes to map for n: from HUGE_FROM bytes on, whole 2 MiB
 * pages, which region_side_alloc maps as transparent huge pages: one page fault per 2 MiB
 * instead of one per 4 KiB. On this project's VMs a 4 KiB fault costs some 14 us (3.5 ms
 * per MiB), a huge page 0.1 to 0.3 ms per MiB; only the pages touched cost anything. */
#define HUGE_PAGE (2u << 20)
#define HUGE_FROM (128u << 10)
static size_t huge_count(size_t n, size_t elem) {
  if (n * elem < HUGE_FROM)
    return n;
  return (n * elem + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE / elem;
}

/* Grows two parallel side arrays (a of asz-byte elements, b of bsz; b NULL: a alone) from
 * *cap to at least need elements, doubling from first; the count fills whole huge pages of
 * elements of huge_elem bytes. On failure both keep their contents (a may have moved) and
 * *cap is unchanged. Returns 0 or -1. */
static int grow_pair(void **a, size_t asz, void **b, size_t bsz, size_t huge_elem, size_t *cap,
                     size_t need, size_t first) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap * 2 : first;
  while (n < need)
    n *= 2;
  n = huge_count(n, huge_elem);
  void *na = region_side_resize(*a, *cap * asz, n * asz);
  void *nb = na && b ? region_side_resize(*b, *cap * bsz, n * bsz) : na;
  if (na)
    *a = na;
  if (!nb)
    return -1;
  if (b)
    *b = nb;
  *cap = n;
  return 0;
}

/* The ops are sized once from a complete header; an unfinished trace grows them. They fill
 * whole huge pages. Binary traces keep no lines: op i is record i + 1 (trace_line). */
static int reserve_ops(struct reader *r, size_t need) {
  struct trace *t = r->t;
  void *ops = t->ops;
  int bad = grow_pair(&ops, sizeof *t->ops, NULL, 0, sizeof *t->ops, &t->cap, need, 4096);
  t->ops = ops;
  return bad ? fail(r, "out of memory reading the trace") : 0;
}

static int reserve_slots(struct reader *r, size_t need) {
  void *sizes = r->slot_size, *fs = r->free_slots;
  int bad = grow_pair(&sizes, sizeof *r->slot_size, &fs, sizeof *r->free_slots,
                      sizeof *r->slot_size, &r->cap_slots, need, 1024);
  r->slot_size = sizes;
  r->free_slots = fs;
  return bad ? fail(r, "out of memory reading the trace") : 0;
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

static int bin_parse_v1(struct trace *ret, const char *name, const void *buf, size_t len, char *err,
                        size_t errlen) {
  /* slot 0 holds NULL; op i is record i + 1 */
  *ret = (struct trace){.n_threads = 1, .n_slots = 1, .line_base = 1};
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

/* --- version 2: the ops image --- */

/* The file holds the ops exactly as struct trace_op lays them out on a little-endian host. */
_Static_assert(sizeof(struct trace_op) == 24 && offsetof(struct trace_op, arg) == 8 &&
                   offsetof(struct trace_op, slot) == 16 && offsetof(struct trace_op, kind) == 20 &&
                   offsetof(struct trace_op, word) == 21 && offsetof(struct trace_op, thread) == 22,
               "a version-2 trace stores struct trace_op as it is in memory");

#define V2_OP 24u /* bytes of an op in the file */

/* Header fields after the version-1 ones (offsets 0 to 27 are the same in both versions). */
enum {
  V2_OP_SIZE = 28,    /* u32: V2_OP */
  V2_OPS_AT = 32,     /* u64: offset of the ops */
  V2_LINES_AT = 40,   /* u64: offset of the line numbers */
  V2_COUNTS = 48,     /* u64 x 6: n_malloc, n_free, n_realloc, n_calloc, n_memalign, n_reset */
  V2_PEAK = 96,       /* u64: peak_live */
  V2_PEAK_OP = 104,   /* u64: peak_live_op */
  V2_LINE_BASE = 112, /* u32: with TRACE_BIN_LINES_SEQ, the line of op 0; else 0 */
  V2_RESERVED = 116,  /* 12 bytes, 0 */
};

/* The words ops carry, as the classes counted in the header (n_malloc ... n_memalign, then
 * resets: the frees a reset does carry 'x' too but are counted nowhere). */
enum { W_NONE, W_M, W_F, W_R, W_C, W_A, W_X, W_CLASSES };
static const uint8_t word_class[256] = {
    ['m'] = W_M, ['f'] = W_F, ['r'] = W_R, ['c'] = W_C, ['a'] = W_A, ['x'] = W_X};
/* The words each kind may carry, as the readers make them; 0 for unknown kinds. */
static const uint8_t kind_words[256] = {[OP_MALLOC] = 1 << W_M | 1 << W_R | 1 << W_A,
                                        [OP_FREE] = 1 << W_F | 1 << W_R | 1 << W_X,
                                        [OP_REALLOC] = 1 << W_R,
                                        [OP_CALLOC] = 1 << W_C,
                                        [OP_MEMALIGN] = 1 << W_A,
                                        [OP_RESET] = 1 << W_X};
static const char *const kind_name[] = {"malloc", "free", "realloc", "calloc", "memalign", "reset"};
static const char *const count_name[] = {"mallocs", "frees",      "reallocs",
                                         "callocs", "alignments", "resets"};

struct v2_header {
  uint16_t flags;
  uint64_t n_ops;
  uint32_t slots, threads, meta_len, op_size;
  uint64_t ops_at, lines_at;
  uint64_t count[6];
  uint64_t peak, peak_op;
  uint32_t line_base;
};

/* What the validation pass finds, to hold against the header. */
struct v2_sum {
  uint64_t count[6]; /* as the header's */
  uint64_t peak;
  size_t peak_op;
  uint32_t slots, threads;
};

/* The validation pass over ops and lines, wherever they are (the mapped file, a copy, or a
 * trace about to be written). */
struct v2_check {
  const char *name;  /* the file, for messages; NULL when writing (messages "op N: ...") */
  const char *whose; /* "the header's" or "the trace's": where the slot and thread counts are */
  char *err;
  size_t errlen;
  uint64_t ops_at, lines_at; /* bytes of op 0 and line 0 in the file, for messages */
  const struct trace_op *ops;
  const uint32_t *line;
  size_t n;
  uint32_t n_slots, n_threads;
  uint64_t *state; /* per slot: LIVE | size while live, else the next free slot (0: none) */
};

static int v2_fail(const struct v2_check *c, size_t i, int at_line, const char *fmt, ...) {
  int n;
  if (!c->name)
    n = snprintf(c->err, c->errlen, "op %zu: ", i + 1);
  else if (at_line)
    n = snprintf(c->err, c->errlen, "%s: op %zu (its line at byte %llu): ", c->name, i + 1,
                 (unsigned long long)(c->lines_at + 4 * (uint64_t)i));
  else
    n = snprintf(c->err, c->errlen, "%s: op %zu (byte %llu): ", c->name, i + 1,
                 (unsigned long long)(c->ops_at + V2_OP * (uint64_t)i));
  va_list ap;
  va_start(ap, fmt);
  append_msg(c->err, c->errlen, n, fmt, ap);
  va_end(ap);
  return -1;
}

/* The op before i that last named slot s, counted from 1 (0: none); only for messages. */
static size_t v2_last_op(const struct v2_check *c, size_t i, uint32_t s) {
  while (i-- > 0)
    if (c->ops[i].slot == s)
      return i + 1;
  return 0;
}

static int v2_bad_word(const struct v2_check *c, size_t i) {
  const struct trace_op *o = &c->ops[i];
  if (o->kind > OP_RESET)
    return v2_fail(c, i, 0, "unknown op kind %u", (unsigned)o->kind);
  if (o->word >= 0x20 && o->word < 0x7f)
    return v2_fail(c, i, 0, "a %s op with the word '%c'", kind_name[o->kind], o->word);
  return v2_fail(c, i, 0, "a %s op with the word \\x%02x", kind_name[o->kind], (unsigned)o->word);
}

/* A free or realloc whose block is not live with the size the op passes. */
static int v2_bad_block(const struct v2_check *c, size_t i, uint32_t next) {
  const struct trace_op *o = &c->ops[i];
  const char *what = kind_name[o->kind];
  uint64_t st = c->state[o->slot], passed = o->kind == OP_FREE ? o->size : o->arg;
  if (o->slot == 0)
    return v2_fail(c, i, 0, "%s of slot 0, which is NULL's", what);
  if (o->slot >= next)
    return v2_fail(c, i, 0, "%s of slot %u, which was never allocated", what, (unsigned)o->slot);
  if (!(st & LIVE) && o->kind == OP_FREE)
    return v2_fail(c, i, 0, "double free of slot %u (freed at op %zu)", (unsigned)o->slot,
                   v2_last_op(c, i, o->slot));
  if (!(st & LIVE))
    return v2_fail(c, i, 0, "%s of slot %u, which was freed at op %zu", what, (unsigned)o->slot,
                   v2_last_op(c, i, o->slot));
  return v2_fail(c, i, 0, "%s of slot %u passes size %llu, the block's size is %llu", what,
                 (unsigned)o->slot, (unsigned long long)passed, (unsigned long long)(st & ~LIVE));
}

static int v2_bad_slot(const struct v2_check *c, size_t i, uint32_t want) {
  uint32_t s = c->ops[i].slot;
  if (s == 0)
    return v2_fail(c, i, 0, "allocation into slot 0, which is NULL's");
  if (c->state[s] & LIVE)
    return v2_fail(c, i, 0, "allocation into slot %u, which is live (allocated at op %zu)",
                   (unsigned)s, v2_last_op(c, i, s));
  return v2_fail(c, i, 0,
                 "allocation into slot %u where the readers' rule (the slot freed last, else a "
                 "new one) gives slot %u",
                 (unsigned)s, (unsigned)want);
}

static int v2_bad_reset(const struct v2_check *c, size_t i, size_t reset_at, uint64_t left) {
  if (left)
    return v2_fail(c, i, 0,
                   "the reset at op %zu frees %llu more blocks: this op is not one of them",
                   reset_at + 1, (unsigned long long)left);
  return v2_fail(c, i, 0, "a reset's free (word 'x') that no reset announced");
}

static int good_alignment(uint64_t a) {
  return a > 16 && a <= (1u << 30) && (a & (a - 1)) == 0;
}

/* The pass's state, kept from one chunk of ops to the next. */
struct v2_pass {
  uint64_t count[W_CLASSES];
  uint64_t live, peak, n_live, reset_left, reset_frees;
  size_t peak_op, reset_at;
  uint32_t head, next; /* the free slots' LIFO (linked through state[]), the next new slot */
  uint32_t max_thread, last_line;
};

/* Names what is wrong with op i, p being the state before it: the hot loop only stops. The
 * checks are the loop's, in its order. */
static int v2_bad_op(const struct v2_check *c, const struct v2_pass *p, size_t i) {
  const struct trace_op *o = &c->ops[i];
  unsigned w = word_class[o->word];
  uint32_t s = o->slot;
  if (!(kind_words[o->kind] >> w & 1))
    return v2_bad_word(c, i);
  if (o->thread >= c->n_threads)
    return v2_fail(c, i, 0, "thread %u is out of range (%s %u threads)", (unsigned)o->thread,
                   c->whose, (unsigned)c->n_threads);
  if (s >= c->n_slots)
    return v2_fail(c, i, 0, "slot %u is out of range (%s %u slots)", (unsigned)s, c->whose,
                   (unsigned)c->n_slots);
  if ((p->reset_left != 0) != (o->kind == OP_FREE && w == W_X))
    return v2_bad_reset(c, i, p->reset_at, p->reset_left);
  switch (o->kind) {
  case OP_FREE:
    if (o->arg)
      return v2_fail(c, i, 0, "a free with the argument %llu (must be 0)",
                     (unsigned long long)o->arg);
    if (s == 0 && w == W_F)
      return v2_fail(c, i, 0, "free(NULL) with the size %llu", (unsigned long long)o->size);
    return v2_bad_block(c, i, p->next);
  case OP_REALLOC:
    if (c->state[s] != (LIVE | o->arg))
      return v2_bad_block(c, i, p->next);
    return v2_fail(c, i, 0, "realloc to size %llu (1 to 2^47)", (unsigned long long)o->size);
  case OP_RESET:
    return v2_fail(c, i, 0,
                   "a reset (slot %u, size %llu) that announces %llu frees with %llu blocks live",
                   (unsigned)s, (unsigned long long)o->size, (unsigned long long)o->arg,
                   (unsigned long long)p->n_live);
  default:
    if (o->kind == OP_MEMALIGN && !good_alignment(o->arg))
      return v2_fail(c, i, 0, "alignment %llu is not a power of two from 32 to 2^30",
                     (unsigned long long)o->arg);
    if (o->kind != OP_MEMALIGN && o->arg)
      return v2_fail(c, i, 0, "a %s with the argument %llu (must be 0)", kind_name[o->kind],
                     (unsigned long long)o->arg);
    if (o->size > TRACE_MAX_SIZE)
      return v2_fail(c, i, 0, "size %llu is larger than any allocation can be (2^47)",
                     (unsigned long long)o->size);
    return v2_bad_slot(c, i, p->head ? p->head : p->next);
  }
}

/* Checks ops [from, to) and applies them to p. The loop stops at the first op that fails a
 * check, before changing anything, and v2_bad_op says why. */
static int v2_ops(const struct v2_check *c, struct v2_pass *p, size_t from, size_t to) {
  const struct trace_op *ops = c->ops;
  uint64_t *state = c->state;
  uint64_t live = p->live, peak = p->peak, n_live = p->n_live, reset_left = p->reset_left;
  size_t peak_op = p->peak_op, reset_at = p->reset_at, i;
  uint32_t head = p->head, next = p->next, max_thread = p->max_thread;
  uint32_t n_slots = c->n_slots, n_threads = c->n_threads;
  uint64_t count[W_CLASSES], reset_frees = p->reset_frees; /* locals: state[] cannot alias them */
  memcpy(count, p->count, sizeof count);
  for (i = from; i < to; i++) {
    const struct trace_op *o = &ops[i];
    uint64_t size = o->size, arg = o->arg;
    uint32_t s = o->slot;
    unsigned kind = o->kind, w = word_class[o->word];
    unsigned reset_free = kind == OP_FREE && w == W_X;
    if (!(kind_words[kind] >> w & 1) || o->thread >= n_threads || s >= n_slots ||
        (reset_left != 0) != reset_free)
      break;
    if (kind == OP_FREE) {
      if (arg || (s == 0 && (size || w != W_F)) || (s && state[s] != (LIVE | size)))
        break;
      if (s) {
        state[s] = head;
        head = s;
        live -= size;
        n_live--;
      }
    } else if (kind == OP_REALLOC) {
      if (state[s] != (LIVE | arg) || size - 1 >= TRACE_MAX_SIZE) /* s == 0 is never live */
        break;
      state[s] = LIVE | size;
      live = live - arg + size;
    } else if (kind == OP_RESET) {
      if (s || size || arg != n_live)
        break;
      reset_left = arg;
      reset_at = i;
      reset_frees += arg;
    } else {
      if ((kind == OP_MEMALIGN ? !good_alignment(arg) : arg != 0) || size > TRACE_MAX_SIZE ||
          s != (head ? head : next))
        break;
      if (head)
        head = (uint32_t)state[s];
      else
        next++;
      state[s] = LIVE | size;
      live += size;
      n_live++;
    }
    count[w]++;
    max_thread = o->thread > max_thread ? o->thread : max_thread;
    reset_left -= reset_free;
    peak_op = live > peak ? i : peak_op;
    peak = live > peak ? live : peak;
  }
  memcpy(p->count, count, sizeof count);
  p->reset_at = reset_at;
  p->reset_frees = reset_frees;
  p->live = live;
  p->peak = peak;
  p->n_live = n_live;
  p->reset_left = reset_left;
  p->peak_op = peak_op;
  p->head = head;
  p->next = next;
  p->max_thread = max_thread;
  return i == to ? 0 : v2_bad_op(c, p, i);
}

/* Lines [from, to): they count from 1 and never decrease (a reset's frees share its line). */
static int v2_lines(const struct v2_check *c, struct v2_pass *p, size_t from, size_t to) {
  const uint32_t *line = c->line;
  uint32_t start = from ? p->last_line : 1, prev = start;
  unsigned bad = 0;
  for (size_t i = from; i < to; i++) {
    bad |= line[i] < prev;
    prev = line[i];
  }
  p->last_line = prev;
  for (size_t i = from; bad && i < to; start = line[i], i++)
    if (line[i] < start)
      return i == 0 ? v2_fail(c, 0, 1, "line number 0 (lines count from 1)")
                    : v2_fail(c, i, 1, "line %u follows line %u: line numbers must not decrease",
                              (unsigned)line[i], (unsigned)start);
  return 0;
}

/* After the last op: the last reset's frees all came, and what the header must say. */
static int v2_finish(const struct v2_check *c, const struct v2_pass *p, struct v2_sum *ret) {
  if (p->reset_left)
    return v2_fail(c, p->reset_at, 0, "this reset frees %llu more blocks than follow it",
                   (unsigned long long)p->reset_left);
  const uint64_t *k = p->count;
  *ret = (struct v2_sum){.count = {k[W_M], k[W_F], k[W_R], k[W_C], k[W_A], k[W_X] - p->reset_frees},
                         .peak = p->peak,
                         .peak_op = p->peak_op,
                         .slots = p->next,
                         .threads = c->n ? p->max_thread + 1 : 1};
  return 0;
}

/* The whole pass at once (the writer's). */
static int v2_validate(const struct v2_check *c, struct v2_sum *ret) {
  struct v2_pass p = {.next = 1};
  return v2_lines(c, &p, 0, c->n) || v2_ops(c, &p, 0, c->n) || v2_finish(c, &p, ret) ? -1 : 0;
}
/* --- version 2: reading --- */

struct v2_reader {
  const char *name;
  char *err;
  size_t errlen;
  const uint8_t *b;
  size_t len;
  struct v2_header h;
};

static int v2_header_fail(struct v2_reader *r, const char *fmt, ...) {
  int n = snprintf(r->err, r->errlen, "%s: ", r->name);
  va_list ap;
  va_start(ap, fmt);
  append_msg(r->err, r->errlen, n, fmt, ap);
  va_end(ap);
  return -1;
}

static uint64_t align_up64(uint64_t v) {
  return (v + TRACE_BIN_V2_ALIGN - 1) / TRACE_BIN_V2_ALIGN * TRACE_BIN_V2_ALIGN;
}

static void v2_header_decode(struct v2_reader *r) {
  const uint8_t *b = r->b;
  struct v2_header *h = &r->h;
  h->flags = (uint16_t)get_le(b + 6, 2);
  h->n_ops = get_le(b + 8, 8);
  h->slots = (uint32_t)get_le(b + 16, 4);
  h->threads = (uint32_t)get_le(b + 20, 4);
  h->meta_len = (uint32_t)get_le(b + 24, 4);
  h->op_size = (uint32_t)get_le(b + V2_OP_SIZE, 4);
  h->ops_at = get_le(b + V2_OPS_AT, 8);
  h->lines_at = get_le(b + V2_LINES_AT, 8);
  for (int k = 0; k < 6; k++)
    h->count[k] = get_le(b + V2_COUNTS + 8 * k, 8);
  h->peak = get_le(b + V2_PEAK, 8);
  h->peak_op = get_le(b + V2_PEAK_OP, 8);
  h->line_base = (uint32_t)get_le(b + V2_LINE_BASE, 4);
}

/* Where a file shorter than its header announces was cut. */
static int v2_truncated(struct v2_reader *r) {
  const struct v2_header *h = &r->h;
  if (r->len < TRACE_BIN_V2_HEADER + (uint64_t)h->meta_len)
    return v2_header_fail(r, "truncated binary trace: the file ends inside its metadata");
  if (r->len < h->ops_at)
    return v2_header_fail(r, "truncated binary trace: the file ends before its ops");
  if (r->len < h->lines_at) {
    size_t k = (size_t)((r->len - h->ops_at) / V2_OP);
    return v2_header_fail(r,
                          "op %zu (byte %llu): truncated binary trace: the file ends after %zu of "
                          "the %llu ops its header announces",
                          k + 1, (unsigned long long)(h->ops_at + V2_OP * (uint64_t)k), k,
                          (unsigned long long)h->n_ops);
  }
  size_t k = (size_t)((r->len - h->lines_at) / 4);
  return v2_header_fail(r,
                        "op %zu (its line at byte %llu): truncated binary trace: the file ends "
                        "after %zu of the %llu line numbers",
                        k + 1, (unsigned long long)(h->lines_at + 4 * (uint64_t)k), k,
                        (unsigned long long)h->n_ops);
}

/* The header against itself and the file's length: after this, every offset the pass
 * reads lies inside the file and the slot count is bounded by the file's size. */
static int v2_header(struct v2_reader *r) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
  return v2_header_fail(r, "binary trace version 2 holds little-endian ops, which this host "
                           "cannot use in place: convert it to version 1 on a little-endian host");
#endif
  if (r->len < TRACE_BIN_V2_HEADER)
    return v2_header_fail(r, "truncated binary trace: the file ends inside its %d-byte header",
                          TRACE_BIN_V2_HEADER);
  v2_header_decode(r);
  const struct v2_header *h = &r->h;
  if (h->flags & ~(TRACE_BIN_COMPLETE | TRACE_BIN_LINES_SEQ))
    return v2_header_fail(r, "unknown header flags 0x%x", (unsigned)h->flags);
  if (!(h->flags & TRACE_BIN_COMPLETE))
    return v2_header_fail(r, "corrupt header: no completion mark (version 2 is written whole)");
  if (h->meta_len > TRACE_BIN_META_MAX)
    return v2_header_fail(r, "corrupt header: metadata of %u bytes (at most %d)",
                          (unsigned)h->meta_len, TRACE_BIN_META_MAX);
  if (h->op_size != V2_OP)
    return v2_header_fail(r, "corrupt header: ops of %u bytes (version 2's are %u)",
                          (unsigned)h->op_size, V2_OP);
  for (int k = V2_RESERVED; k < TRACE_BIN_V2_HEADER; k++)
    if (r->b[k])
      return v2_header_fail(r, "corrupt header: reserved byte %d is not 0", k);
  uint64_t want_ops = align_up64(TRACE_BIN_V2_HEADER + (uint64_t)h->meta_len);
  if (h->ops_at % TRACE_BIN_V2_ALIGN)
    return v2_header_fail(r, "corrupt header: the ops' offset %llu is not a multiple of %d",
                          (unsigned long long)h->ops_at, TRACE_BIN_V2_ALIGN);
  if (h->ops_at != want_ops)
    return v2_header_fail(r,
                          "corrupt header: the ops' offset is %llu, not %llu (after the metadata)",
                          (unsigned long long)h->ops_at, (unsigned long long)want_ops);
  if (h->n_ops > (UINT64_MAX - h->ops_at) / (V2_OP + 4))
    return v2_header_fail(r, "corrupt header: %llu ops overflow the file's offsets",
                          (unsigned long long)h->n_ops);
  if (h->lines_at != h->ops_at + V2_OP * h->n_ops)
    return v2_header_fail(r, "corrupt header: the lines' offset is %llu, not %llu (after the ops)",
                          (unsigned long long)h->lines_at,
                          (unsigned long long)(h->ops_at + V2_OP * h->n_ops));
  int seq = h->flags & TRACE_BIN_LINES_SEQ;
  if (!seq && h->line_base)
    return v2_header_fail(r, "corrupt header: a line base (%u) without the flag that uses it",
                          (unsigned)h->line_base);
  if (seq && (h->line_base == 0 || (uint64_t)h->line_base - 1 + h->n_ops > UINT32_MAX))
    return v2_header_fail(r,
                          "corrupt header: line base %u for %llu ops (lines count from 1 to "
                          "2^32 - 1)",
                          (unsigned)h->line_base, (unsigned long long)h->n_ops);
  uint64_t end = h->lines_at + (seq ? 0 : 4 * h->n_ops);
  if (r->len < end)
    return v2_truncated(r);
  if (r->len > end)
    return v2_header_fail(r,
                          "corrupt binary trace: %llu bytes follow the %llu ops and line numbers "
                          "its header announces",
                          (unsigned long long)(r->len - end), (unsigned long long)h->n_ops);
  if (h->slots == 0 || h->threads == 0 || h->threads > 65536 || h->slots - 1 > h->n_ops)
    return v2_header_fail(r, "corrupt header: %llu ops, %u slots, %u threads",
                          (unsigned long long)h->n_ops, (unsigned)h->slots, (unsigned)h->threads);
  for (uint64_t k = TRACE_BIN_V2_HEADER + h->meta_len; k < h->ops_at; k++)
    if (r->b[k])
      return v2_header_fail(r,
                            "corrupt header: byte %llu, between the metadata and the ops, is "
                            "not 0",
                            (unsigned long long)k);
  return 0;
}

/* The header's counts and peak against the pass's. */
static int v2_agree(const struct v2_check *c, const struct v2_header *h, const struct v2_sum *s) {
  char msg[160] = "";
  if (h->slots != s->slots || h->threads != s->threads)
    snprintf(msg, sizeof msg, "it announces %u slots and %u threads, the ops use %u and %u",
             (unsigned)h->slots, (unsigned)h->threads, (unsigned)s->slots, (unsigned)s->threads);
  for (int k = 0; k < 6 && !msg[0]; k++)
    if (h->count[k] != s->count[k])
      snprintf(msg, sizeof msg, "it counts %llu %s, the ops hold %llu",
               (unsigned long long)h->count[k], count_name[k], (unsigned long long)s->count[k]);
  if (msg[0]) {
    snprintf(c->err, c->errlen, "%s: corrupt header: %s", c->name, msg);
    return -1;
  }
  if (h->peak != s->peak || h->peak_op != s->peak_op)
    return v2_fail(c, s->peak_op, 0,
                   "corrupt header: it gives peak live %llu at op %llu, the ops first reach %llu "
                   "at this op",
                   (unsigned long long)h->peak, (unsigned long long)h->peak_op + 1,
                   (unsigned long long)s->peak);
  return 0;
}

/* Reads n bytes at off; 0, or -1 with errno set (0 when the file ended first). */
static int read_at(int fd, void *p, size_t n, uint64_t off) {
  for (size_t got = 0; got < n;) {
    ssize_t k = pread(fd, (uint8_t *)p + got, n - got, (off_t)(off + got));
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0) {
      errno = k < 0 ? errno : 0;
      return -1;
    }
    got += (size_t)k;
  }
  return 0;
}

/* Bytes from the ops' start to the validation pass's slot states, which live in the ops'
 * mapping past the last op: a mapping of their own would cost fresh pages of its own (a
 * 4 KiB page fault costs some 11 us on this project's VMs, about what a 2 MiB huge page's
 * zeroing does), where the ops' last huge page mostly has room to spare. */
static size_t v2_state_at(size_t n) {
  return (n * sizeof(struct trace_op) + 63) & ~(size_t)63;
}

/* Arrays for the ops and the lines (none when they run in sequence), whole huge pages (see
 * huge_count), and the pass's slot states (zero, as fresh pages are) after the ops. */
static int v2_alloc(struct trace *t, struct v2_reader *r, uint64_t **state) {
  size_t n = (size_t)r->h.n_ops, state_bytes = (size_t)r->h.slots * sizeof **state;
  size_t k = (v2_state_at(n) + state_bytes + sizeof *t->ops - 1) / sizeof *t->ops;
  int seq = r->h.flags & TRACE_BIN_LINES_SEQ;
  t->line_base = r->h.line_base;
  *state = NULL;
  if (!n)
    return 0;
  t->cap = seq ? huge_count(k, sizeof *t->ops) : huge_count(n, sizeof *t->line);
  t->cap = t->cap < k ? k : t->cap;
  t->ops = region_side_alloc(t->cap * sizeof *t->ops);
  t->line = t->ops && !seq ? region_side_alloc(t->cap * sizeof *t->line) : NULL;
  if (!t->ops || (!seq && !t->line))
    return v2_header_fail(r, "out of memory reading the trace");
  *state = (uint64_t *)((char *)t->ops + v2_state_at(n));
  return 0;
}

/* Ops and lines [from, to) into t: from fd when it is not -1 (read straight in, as
 * trace_load does), else copied from r->b (which may be misaligned, or go away). */
static int v2_fill(struct trace *t, struct v2_reader *r, int fd, size_t from, size_t to) {
  size_t n = to - from;
  uint64_t ops_at = r->h.ops_at + from * sizeof *t->ops;
  uint64_t lines_at = r->h.lines_at + from * sizeof *t->line;
  if (fd < 0) {
    memcpy(t->ops + from, r->b + ops_at, n * sizeof *t->ops);
    if (t->line)
      memcpy(t->line + from, r->b + lines_at, n * sizeof *t->line);
    return 0;
  }
  if (read_at(fd, t->ops + from, n * sizeof *t->ops, ops_at) == 0 &&
      (!t->line || read_at(fd, t->line + from, n * sizeof *t->line, lines_at) == 0))
    return 0;
  return v2_header_fail(r, "%s", errno ? strerror(errno) : "the file shrank while it was read");
}

/* Ops read and checked at a time: checked while they are still in the cache. */
#define V2_CHUNK ((size_t)1 << 15)

/* The end of the chunk that starts at op from, of n: the feeder and the checker cut alike. */
static size_t v2_chunk_end(size_t from, size_t n) {
  return n - from < V2_CHUNK ? n : from + V2_CHUNK;
}

/* Reading ahead: while the pass checks one chunk, a second thread reads the next ones from
 * the file. The kernel's share of a load (zeroing the arrays' fresh pages and copying the
 * file into them) is about half of it, and it runs beside the checks instead of before
 * them. The checker takes chunk k only once the feeder says it is in; a read error is
 * reported when the checker reaches its chunk, so a bad op before it is named first, as
 * without the feeder. */
struct v2_feed {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct trace *t;
  struct v2_reader r; /* the caller's, with err pointing at this feed's own buffer */
  int fd;
  size_t n, ready; /* ops [0, ready) are in the arrays */
  int failed;      /* a read failed at ready: err says why */
  int stop;        /* the checker needs no more */
  char err[512];
};

/* Traces of fewer ops are read and checked on one thread: starting the feeder would cost
 * more than it saves. */
#define V2_FEED_FROM (4 * V2_CHUNK)

/* The feeder only helps with a second CPU to run on (not under taskset -c 0, say). */
static int two_cpus(void) {
  cpu_set_t set;
  return sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 2;
}

static void *v2_feed_run(void *arg) {
  struct v2_feed *f = arg;
  for (size_t from = 0; from < f->n; from += V2_CHUNK) {
    size_t to = v2_chunk_end(from, f->n);
    pthread_mutex_lock(&f->mu);
    int stop = f->stop;
    pthread_mutex_unlock(&f->mu);
    if (stop)
      break;
    int rc = v2_fill(f->t, &f->r, f->fd, from, to);
    pthread_mutex_lock(&f->mu);
    if (rc)
      f->failed = 1;
    else
      f->ready = to;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    if (rc)
      break;
  }
  return NULL;
}

/* Waits until ops [0, to) are in; 0, or -1 with the feeder's error in r->err. */
static int v2_feed_wait(struct v2_feed *f, struct v2_reader *r, size_t to) {
  pthread_mutex_lock(&f->mu);
  while (f->ready < to && !f->failed)
    pthread_cond_wait(&f->cv, &f->mu);
  int ok = f->ready >= to;
  pthread_mutex_unlock(&f->mu);
  if (!ok)
    snprintf(r->err, r->errlen, "%s", f->err);
  return ok ? 0 : -1;
}

static void v2_feed_end(struct v2_feed *f, pthread_t th) {
  pthread_mutex_lock(&f->mu);
  f->stop = 1;
  pthread_mutex_unlock(&f->mu);
  pthread_join(th, NULL);
  pthread_cond_destroy(&f->cv);
  pthread_mutex_destroy(&f->mu);
}

/* Ops [from, to) ready to check: read now, or waited for when a feeder reads them. */
static int v2_chunk(struct trace *t, struct v2_reader *r, int fd, struct v2_feed *f, size_t from,
                    size_t to) {
  return f ? v2_feed_wait(f, r, to) : v2_fill(t, r, fd, from, to);
}

/* A version-2 trace: header, then each chunk of ops and lines read and checked. */
static int v2_read(struct trace *t, struct v2_reader *r, int fd) {
  uint64_t *state;
  if (v2_header(r) || v2_alloc(t, r, &state))
    return -1;
  const struct v2_header *h = &r->h;
  struct v2_check c = {.name = r->name,
                       .whose = "the header's",
                       .err = r->err,
                       .errlen = r->errlen,
                       .ops_at = h->ops_at,
                       .lines_at = h->lines_at,
                       .ops = t->ops,
                       .line = t->line,
                       .n = (size_t)h->n_ops,
                       .n_slots = h->slots,
                       .n_threads = h->threads,
                       .state = state};
  struct v2_pass p = {.next = 1};
  struct v2_sum sum = {0};
  int rc = 0;
  struct v2_feed feed = {.t = t, .r = *r, .fd = fd, .n = c.n}, *f = NULL;
  pthread_t th;
  feed.r.err = feed.err;
  feed.r.errlen = sizeof feed.err;
  if (fd >= 0 && c.n >= V2_FEED_FROM && two_cpus() && pthread_mutex_init(&feed.mu, NULL) == 0) {
    if (pthread_cond_init(&feed.cv, NULL) == 0 &&
        pthread_create(&th, NULL, v2_feed_run, &feed) == 0)
      f = &feed;
    else
      pthread_mutex_destroy(&feed.mu); /* no thread: read on this one */
  }
  for (size_t from = 0; rc == 0 && from < c.n; from += V2_CHUNK) {
    size_t to = v2_chunk_end(from, c.n);
    rc = v2_chunk(t, r, fd, f, from, to) || (c.line && v2_lines(&c, &p, from, to)) ||
         v2_ops(&c, &p, from, to);
  }
  if (f)
    v2_feed_end(f, th);
  if (rc == 0)
    rc = v2_finish(&c, &p, &sum) || v2_agree(&c, h, &sum);
  if (rc)
    return -1;
  t->n_ops = c.n;
  t->n_slots = h->slots;
  t->n_threads = h->threads;
  t->n_malloc = h->count[0];
  t->n_free = h->count[1];
  t->n_realloc = h->count[2];
  t->n_calloc = h->count[3];
  t->n_memalign = h->count[4];
  t->n_reset = h->count[5];
  t->peak_live = h->peak;
  t->peak_live_op = (size_t)h->peak_op;
  return 0;
}

/* head: the file's first bytes (all of them when fd is -1); len: the file's length. */
static int v2_load(struct trace *ret, const char *name, const uint8_t *head, size_t len, int fd,
                   char *err, size_t errlen) {
  *ret = (struct trace){.n_threads = 1, .n_slots = 1};
  struct v2_reader r = {.name = name, .err = err, .errlen = errlen, .b = head, .len = len};
  ret->path = strdup(name);
  int rc = ret->path ? v2_read(ret, &r, fd) : v2_header_fail(&r, "out of memory");
  if (rc)
    trace_free(ret);
  return rc;
}

int trace_bin_parse(struct trace *ret, const char *name, const void *buf, size_t len, char *err,
                    size_t errlen) {
  if (len >= TRACE_BIN_HEADER && trace_bin_version(buf, len) == TRACE_BIN_V2)
    return v2_load(ret, name, buf, len, -1, err, errlen);
  return bin_parse_v1(ret, name, buf, len, err, errlen);
}

int trace_bin_read_v2(struct trace *ret, const char *name, int fd, size_t len, char *err,
                      size_t errlen) {
  /* v2_header reads no further than the end of the padding before the ops */
  uint8_t head[TRACE_BIN_V2_HEADER + TRACE_BIN_META_MAX + TRACE_BIN_V2_ALIGN];
  size_t n = len < sizeof head ? len : sizeof head;
  if (n < TRACE_BIN_HEADER || read_at(fd, head, n, 0) || trace_bin_version(head, n) != TRACE_BIN_V2)
    return 1; /* not version 2 (or unreadable: the caller's reading will say so) */
  return v2_load(ret, name, head, len, fd, err, errlen);
}

int trace_bin_version(const void *buf, size_t len) {
  if (!trace_bin_is(buf, len) || len < 6)
    return 0;
  return (int)get_le((const uint8_t *)buf + 4, 2);
}

/* Only the fixed header and the metadata are needed (buf may be the file's first bytes). */
int trace_bin_meta(const void *buf, size_t len, char *ret, size_t n) {
  if (n)
    ret[0] = '\0';
  if (!trace_bin_is(buf, len) || len < TRACE_BIN_HEADER)
    return -1;
  uint64_t meta_len = get_le((const uint8_t *)buf + 24, 4);
  size_t at = trace_bin_version(buf, len) == TRACE_BIN_V2 ? TRACE_BIN_V2_HEADER : TRACE_BIN_HEADER;
  if (len < at || meta_len > TRACE_BIN_META_MAX || meta_len > len - at)
    return -1;
  if (n)
    snprintf(ret, n, "%.*s", (int)meta_len, (const char *)buf + at);
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

/* --- version 2: writing --- */

static void v2_put_op(uint8_t *p, const struct trace_op *o) {
  trace_bin_le(p, o->size, 8);
  trace_bin_le(p + 8, o->arg, 8);
  trace_bin_le(p + 16, o->slot, 4);
  p[20] = o->kind;
  p[21] = o->word;
  trace_bin_le(p + 22, o->thread, 2);
}

/* t's ops with the words a reader gives them (a trace built by hand may have none), and its
 * lines (op numbers when it has none). */
static void v2_normalize(const struct trace *t, struct trace_op *ops, uint32_t *line) {
  uint64_t reset_left = 0;
  for (size_t i = 0; i < t->n_ops; i++) {
    struct trace_op o = t->ops[i];
    int in_reset = o.kind == OP_FREE && reset_left > 0;
    reset_left -= (uint64_t)in_reset;
    if (o.kind == OP_RESET)
      reset_left = o.arg;
    if (o.kind <= OP_RESET) /* other kinds are refused by the pass */
      o.word = code_word[code_of(&o, in_reset)];
    ops[i] = o;
    line[i] = t->line || t->line_base ? trace_line(t, i) : (uint32_t)(i + 1);
  }
}

/* The line of op 0 when op i is on that line + i for every i (and the lines can go), else 0. */
static uint32_t v2_line_seq(const uint32_t *line, size_t n) {
  if (n == 0)
    return 1;
  for (size_t i = 1; i < n; i++)
    if (line[i] != line[0] + (uint32_t)i || line[i] < line[0])
      return 0;
  return line[0];
}

static void v2_header_encode(uint8_t *p, const struct v2_sum *s, size_t n, uint32_t meta_len,
                             uint64_t ops_at, uint32_t line_base) {
  struct trace_bin_header h = {.version = TRACE_BIN_V2,
                               .flags = TRACE_BIN_COMPLETE | (line_base ? TRACE_BIN_LINES_SEQ : 0),
                               .records = n,
                               .slots = s->slots,
                               .threads = s->threads,
                               .meta_len = meta_len};
  memset(p, 0, TRACE_BIN_V2_HEADER);
  trace_bin_header_encode(p, &h);
  trace_bin_le(p + V2_OP_SIZE, V2_OP, 4);
  trace_bin_le(p + V2_OPS_AT, ops_at, 8);
  trace_bin_le(p + V2_LINES_AT, ops_at + V2_OP * (uint64_t)n, 8);
  for (int k = 0; k < 6; k++)
    trace_bin_le(p + V2_COUNTS + 8 * k, s->count[k], 8);
  trace_bin_le(p + V2_PEAK, s->peak, 8);
  trace_bin_le(p + V2_PEAK_OP, s->peak_op, 8);
  trace_bin_le(p + V2_LINE_BASE, line_base, 4);
}

/* Header, metadata, zeros up to the ops, the ops, the lines (unless they run in sequence). */
static int v2_emit(struct writer *w, const struct v2_sum *s, const char *meta, uint32_t meta_len,
                   const struct trace_op *ops, const uint32_t *line, size_t n) {
  uint64_t ops_at = align_up64(TRACE_BIN_V2_HEADER + (uint64_t)meta_len);
  uint32_t line_base = v2_line_seq(line, n);
  v2_header_encode(w->buf, s, n, meta_len, ops_at, line_base);
  w->len = TRACE_BIN_V2_HEADER;
  if (meta_len && (flush(w) || w->put(w->ctx, meta, meta_len)))
    return -1;
  size_t pad = (size_t)(ops_at - TRACE_BIN_V2_HEADER - meta_len);
  memset(w->buf + w->len, 0, pad);
  w->len += pad;
  for (size_t i = 0; i < n; i++) {
    v2_put_op(w->buf + w->len, &ops[i]);
    w->len += V2_OP;
    if (w->len > sizeof w->buf - V2_OP && flush(w))
      return -1;
  }
  for (size_t i = 0; i < n && !line_base; i++) {
    trace_bin_le(w->buf + w->len, line[i], 4);
    w->len += 4;
    if (w->len > sizeof w->buf - 4 && flush(w))
      return -1;
  }
  return flush(w);
}

int trace_bin_write_v2(const struct trace *t, const char *meta, trace_bin_sink put, void *ctx,
                       char *err, size_t errlen) {
  err[0] = '\0';
  size_t n = t->n_ops, meta_len = meta ? strlen(meta) : 0;
  if (meta_len > TRACE_BIN_META_MAX)
    meta_len = TRACE_BIN_META_MAX;
  size_t state_bytes = (size_t)(t->n_slots ? t->n_slots : 1) * sizeof(uint64_t);
  struct trace_op *ops = n ? region_side_alloc(n * sizeof *ops) : NULL;
  uint32_t *line = n ? region_side_alloc(n * sizeof *line) : NULL;
  uint64_t *state = region_side_alloc(state_bytes);
  struct writer *w = malloc(sizeof *w);
  int r = -1;
  if ((n && (!ops || !line)) || !state || !w)
    snprintf(err, errlen, "out of memory");
  else {
    v2_normalize(t, ops, line);
    struct v2_check c = {.whose = "the trace's",
                         .err = err,
                         .errlen = errlen,
                         .ops = ops,
                         .line = line,
                         .n = n,
                         .n_slots = t->n_slots,
                         .n_threads = t->n_threads,
                         .state = state};
    struct v2_sum s = {0};
    *w = (struct writer){.put = put, .ctx = ctx};
    if (v2_validate(&c, &s))
      r = -1;
    else if (s.slots != t->n_slots || s.threads != t->n_threads)
      snprintf(err, errlen, "the trace announces %u slots and %u threads, its ops use %u and %u",
               (unsigned)t->n_slots, (unsigned)t->n_threads, (unsigned)s.slots,
               (unsigned)s.threads);
    else
      r = v2_emit(w, &s, meta, (uint32_t)meta_len, ops, line, n);
  }
  region_side_free(ops, n * sizeof *ops);
  region_side_free(line, n * sizeof *line);
  region_side_free(state, state_bytes);
  free(w);
  return r;
}
