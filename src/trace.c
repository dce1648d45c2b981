/* Trace reading: format detection, the text and .rep parsers, id compaction, validation. */
#include "trace.h"

#include "region.h"
#include "trace_bin.h"
#include "trace_zip.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { ID_EMPTY, ID_LIVE, ID_FREED };

/* What the parser remembers of each recorder id. */
struct id_entry {
  uint32_t slot;
  uint32_t line; /* where it was last allocated or freed, for messages */
  uint8_t state;
};

/* Recorders number ids from 0 upwards, so small ids index an array directly (allocation
 * walks it in order: cache-friendly); others go to a hash table. */
#define DIRECT_IDS (1u << 24)

struct id_hashed {
  uint64_t id;
  struct id_entry e;
};

/* Parser state: the trace being built, the id table, the free slots. */
struct parser {
  struct trace *t;
  const char *name;
  char *err;
  size_t errlen;
  uint32_t line;
  struct id_entry *direct;
  size_t direct_cap;
  struct id_hashed *ids;
  size_t ids_cap, ids_used;
  uint64_t *slot_size; /* requested size of the block each live slot holds */
  uint64_t *slot_id;   /* the id last allocated in each slot: resets find blocks by slot */
  uint32_t *free_slots;
  size_t n_free_slots, cap_slots;
  uint64_t live;
  uint8_t word;   /* the event being read, stored in the ops it emits */
  int keep_stale; /* trace_parse_stale: double frees become TRACE_STALE ops */
  char quote[64]; /* excerpt()'s buffer */
};

/* A piece of a line for a message: a few dozen bytes, control and non-ASCII bytes as \xNN,
 * so that a binary or mis-encoded file cannot garble the terminal. */
static const char *excerpt(struct parser *ps, const char *p, const char *end) {
  size_t n = 0;
  for (; p < end && n + 8 < sizeof ps->quote; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch >= 0x20 && ch < 0x7f)
      ps->quote[n++] = (char)ch;
    else
      n += (size_t)snprintf(ps->quote + n, sizeof ps->quote - n, "\\x%02x", ch);
  }
  snprintf(ps->quote + n, sizeof ps->quote - n, "%s", p < end ? "..." : "");
  return ps->quote;
}

static int fail(struct parser *ps, const char *fmt, ...) {
  int n = snprintf(ps->err, ps->errlen, "%s:%u: ", ps->name, ps->line);
  va_list ap;
  va_start(ap, fmt);
  if (n >= 0 && (size_t)n < ps->errlen)
    vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

/* Arrays grow on the side (region_side_*), out of the C library's heap. */
static void *grow(void *p, size_t *cap, size_t elem, size_t need) {
  if (need <= *cap)
    return p;
  size_t n = *cap ? *cap : 1024;
  while (n < need)
    n *= 2;
  void *q = region_side_resize(p, *cap * elem, n * elem);
  if (q)
    *cap = n;
  return q;
}

static size_t id_hash(uint64_t id, size_t cap) {
  return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

static int ids_rehash(struct parser *ps) {
  size_t cap = ps->ids_cap ? ps->ids_cap * 2 : 4096;
  struct id_hashed *n = region_side_alloc(cap * sizeof *n);
  if (!n)
    return -1;
  for (size_t i = 0; i < ps->ids_cap; i++) {
    if (ps->ids[i].e.state == ID_EMPTY)
      continue;
    size_t h = id_hash(ps->ids[i].id, cap);
    while (n[h].e.state != ID_EMPTY)
      h = (h + 1) & (cap - 1);
    n[h] = ps->ids[i];
  }
  region_side_free(ps->ids, ps->ids_cap * sizeof *ps->ids);
  ps->ids = n;
  ps->ids_cap = cap;
  return 0;
}

static struct id_entry *id_hashed(struct parser *ps, uint64_t id) {
  if (2 * (ps->ids_used + 1) > ps->ids_cap && ids_rehash(ps))
    return NULL;
  size_t h = id_hash(id, ps->ids_cap);
  while (ps->ids[h].e.state != ID_EMPTY && ps->ids[h].id != id)
    h = (h + 1) & (ps->ids_cap - 1);
  if (ps->ids[h].e.state == ID_EMPTY) {
    ps->ids[h].id = id;
    ps->ids_used++;
  }
  return &ps->ids[h].e;
}

/* The entry for id, created empty (state ID_EMPTY) when the id is new; NULL when out of
 * memory. */
static struct id_entry *id_lookup(struct parser *ps, uint64_t id) {
  if (id >= DIRECT_IDS)
    return id_hashed(ps, id);
  if (id >= ps->direct_cap) {
    size_t cap = ps->direct_cap;
    struct id_entry *d = grow(ps->direct, &cap, sizeof *d, id + 1);
    if (!d)
      return NULL;
    ps->direct = d;
    ps->direct_cap = cap;
  }
  return &ps->direct[id];
}

static int emit(struct parser *ps, uint8_t kind, uint32_t slot, uint64_t size, uint64_t arg,
                uint16_t thread) {
  struct trace *t = ps->t;
  if (t->n_ops == t->cap) {
    size_t cap = t->cap;
    struct trace_op *ops = grow(t->ops, &cap, sizeof *ops, t->n_ops + 1);
    uint32_t *line =
        ops ? region_side_resize(t->line, t->cap * sizeof *line, cap * sizeof *line) : NULL;
    if (!line)
      return fail(ps, "out of memory reading the trace");
    t->ops = ops;
    t->line = line;
    t->cap = cap;
  }
  t->ops[t->n_ops] = (struct trace_op){
      .size = size, .arg = arg, .slot = slot, .kind = kind, .word = ps->word, .thread = thread};
  t->line[t->n_ops] = ps->line;
  t->n_ops++;
  if (ps->live > t->peak_live) {
    t->peak_live = ps->live;
    t->peak_live_op = t->n_ops - 1;
  }
  if (thread >= t->n_threads)
    t->n_threads = thread + 1u;
  return 0;
}

static int take_slot(struct parser *ps, uint32_t *ret) {
  if (ps->n_free_slots) {
    *ret = ps->free_slots[--ps->n_free_slots];
    return 0;
  }
  if (ps->t->n_slots == UINT32_MAX)
    return fail(ps, "more than 2^32 blocks live at once");
  uint32_t s = ps->t->n_slots++;
  if (s == ps->cap_slots) {
    size_t cap = ps->cap_slots;
    uint64_t *sizes = grow(ps->slot_size, &cap, sizeof *sizes, s + 1);
    if (sizes)
      ps->slot_size = sizes;
    uint64_t *ids =
        sizes ? region_side_resize(ps->slot_id, ps->cap_slots * sizeof *ids, cap * sizeof *ids)
              : NULL;
    if (ids)
      ps->slot_id = ids;
    uint32_t *fs =
        ids ? region_side_resize(ps->free_slots, ps->cap_slots * sizeof *fs, cap * sizeof *fs)
            : NULL;
    if (!fs)
      return fail(ps, "out of memory reading the trace");
    ps->free_slots = fs;
    ps->cap_slots = cap;
  }
  *ret = s;
  return 0;
}

static int do_alloc(struct parser *ps, uint64_t id, uint8_t kind, uint64_t size, uint64_t arg,
                    uint16_t thread) {
  struct id_entry *e = id_lookup(ps, id);
  if (!e)
    return fail(ps, "out of memory reading the trace");
  if (e->state == ID_LIVE)
    return fail(ps, "allocation of id %llu, which is still live (allocated at line %u)",
                (unsigned long long)id, e->line);
  uint32_t slot = 0;
  if (take_slot(ps, &slot))
    return -1;
  *e = (struct id_entry){.slot = slot, .line = ps->line, .state = ID_LIVE};
  ps->slot_size[slot] = size;
  ps->slot_id[slot] = id;
  ps->live += size;
  return emit(ps, kind, slot, size, arg, thread);
}

static int do_free(struct parser *ps, struct id_entry *e, uint16_t thread) {
  uint32_t slot = e->slot;
  uint64_t size = ps->slot_size[slot];
  e->state = ID_FREED;
  e->line = ps->line;
  if (!ps->keep_stale) /* a stale free must find the freed block's address in its slot */
    ps->free_slots[ps->n_free_slots++] = slot;
  ps->live -= size;
  return emit(ps, OP_FREE, slot, size, 0, thread);
}

static int op_free(struct parser *ps, int64_t id, uint16_t thread) {
  ps->t->n_free++;
  if (id < 0)
    return emit(ps, OP_FREE, 0, 0, 0, thread); /* free(NULL) */
  struct id_entry *e = id_lookup(ps, (uint64_t)id);
  if (!e)
    return fail(ps, "out of memory reading the trace");
  if (e->state == ID_EMPTY)
    return fail(ps, "free of id %lld, which was never allocated", (long long)id);
  if (e->state == ID_FREED && ps->keep_stale) {
    ps->t->n_stale++;
    return emit(ps, OP_FREE, e->slot, ps->slot_size[e->slot], TRACE_STALE, thread);
  }
  if (e->state == ID_FREED)
    return fail(ps, "double free of id %lld (freed at line %u)", (long long)id, e->line);
  return do_free(ps, e, thread);
}

/* realloc follows the C library: of an unknown id it is malloc, to size 0 it is free. */
static int op_realloc(struct parser *ps, int64_t id, uint64_t size, uint16_t thread) {
  ps->t->n_realloc++;
  if (id < 0)
    return fail(ps, "realloc needs an id, not %lld", (long long)id);
  struct id_entry *e = id_lookup(ps, (uint64_t)id);
  if (!e)
    return fail(ps, "out of memory reading the trace");
  if (e->state == ID_FREED)
    return fail(ps, "realloc of id %lld, which was freed at line %u", (long long)id, e->line);
  if (e->state == ID_EMPTY)
    return do_alloc(ps, (uint64_t)id, OP_MALLOC, size, 0, thread);
  if (size == 0)
    return do_free(ps, e, thread);
  uint64_t old = ps->slot_size[e->slot];
  ps->slot_size[e->slot] = size;
  ps->live = ps->live - old + size;
  e->line = ps->line;
  return emit(ps, OP_REALLOC, e->slot, size, old, thread);
}

/* Arena reset: every live block is freed; modules with a reset hook skip the frees. The
 * blocks are found by slot: a walk of every id the trace ever used would cost each reset
 * time in the number of allocations so far, not in the blocks live. */
static int op_reset(struct parser *ps, uint16_t thread) {
  ps->t->n_reset++;
  size_t at = ps->t->n_ops;
  if (emit(ps, OP_RESET, 0, 0, 0, thread))
    return -1;
  uint64_t n = 0;
  for (uint32_t s = 1; s < ps->t->n_slots; s++) {
    struct id_entry *e = id_lookup(ps, ps->slot_id[s]);
    if (!e)
      return fail(ps, "out of memory reading the trace");
    if (e->state != ID_LIVE || e->slot != s) /* a free slot, or its id lives elsewhere now */
      continue;
    if (do_free(ps, e, thread))
      return -1;
    n++;
  }
  ps->t->ops[at].arg = n;
  return 0;
}

/* --- tokens --- */

struct cursor {
  const char *p, *end;
};

static void skip_blank(struct cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r'))
    c->p++;
}

/* True at the end of the line's content (a '#' starts a comment). */
static int at_end(struct cursor *c) {
  skip_blank(c);
  return c->p == c->end || *c->p == '#';
}

/* The end of the word at p. */
static const char *token_end(const char *p, const char *end) {
  while (p < end && *p != ' ' && *p != '\t' && *p != '\r')
    p++;
  return p;
}

/* The common case, up to 18 digits after spaces and before a blank or the line's end;
 * returns 0 to leave anything else to parse_num's careful path. */
static inline int fast_num(struct cursor *c, uint64_t *ret) {
  const char *q = c->p, *end = c->end;
  while (q < end && *q == ' ')
    q++;
  const char *s = q;
  uint64_t v = 0;
  while (q < end && q - s < 18 && (unsigned)(*q - '0') < 10)
    v = v * 10 + (unsigned)(*q++ - '0');
  if (q == s || (q < end && *q != ' ' && *q != '\t' && *q != '\r' && *q != '#'))
    return 0;
  c->p = q;
  *ret = v;
  return 1;
}

/* A decimal number; -1 is accepted where allow_minus_one (free(NULL) ids). */
static int parse_num(struct parser *ps, struct cursor *c, const char *what, int allow_minus_one,
                     int64_t *ret_signed, uint64_t *ret) {
  uint64_t fast;
  if (fast_num(c, &fast)) { /* below 10^18: in range for ids too */
    if (ret_signed)
      *ret_signed = (int64_t)fast;
    if (ret)
      *ret = fast;
    return 0;
  }
  skip_blank(c);
  if (c->p == c->end || *c->p == '#')
    return fail(ps, "missing %s", what);
  int neg = *c->p == '-';
  const char *s = c->p + neg;
  uint64_t v = 0;
  const char *q = s;
  /* 19 digits cannot overflow; only a 20th needs the careful check. */
  for (; q < c->end && q - s < 19 && (unsigned)(*q - '0') < 10; q++)
    v = v * 10 + (unsigned)(*q - '0');
  for (; q < c->end && (unsigned)(*q - '0') < 10; q++) {
    unsigned d = (unsigned)(*q - '0');
    if (v > (UINT64_MAX - d) / 10)
      return fail(ps, "%s '%s' is too large", what, excerpt(ps, c->p, token_end(q, c->end)));
    v = v * 10 + d;
  }
  if (q == s || (q < c->end && *q != ' ' && *q != '\t' && *q != '\r' && *q != '#')) {
    return fail(ps, "%s '%s' is not a number", what, excerpt(ps, c->p, token_end(q, c->end)));
  }
  c->p = q;
  if (neg) {
    if (!(allow_minus_one && v == 1))
      return fail(ps, "%s -%llu is negative", what, (unsigned long long)v);
    *ret_signed = -1;
    return 0;
  }
  if (ret_signed) {
    if (v > (uint64_t)INT64_MAX)
      return fail(ps, "%s %llu is out of range (0 to 2^63-1)", what, (unsigned long long)v);
    *ret_signed = (int64_t)v;
  }
  if (ret)
    *ret = v;
  return 0;
}

static int parse_id(struct parser *ps, struct cursor *c, int allow_null, int64_t *ret) {
  return parse_num(ps, c, "id", allow_null, ret, NULL);
}

static int parse_size(struct parser *ps, struct cursor *c, const char *what, uint64_t *ret) {
  if (parse_num(ps, c, what, 0, NULL, ret))
    return -1;
  if (*ret > TRACE_MAX_SIZE)
    return fail(ps, "%s %llu is larger than any allocation can be (2^47)", what,
                (unsigned long long)*ret);
  return 0;
}

/* Optional thread tag "@N", then the end of the line. */
static int parse_tail(struct parser *ps, struct cursor *c, uint16_t *ret_thread) {
  *ret_thread = 0;
  if (at_end(c))
    return 0;
  if (*c->p == '@') {
    c->p++;
    uint64_t t;
    if (parse_num(ps, c, "thread", 0, NULL, &t))
      return -1;
    if (t > 65535)
      return fail(ps, "thread %llu is out of range (0 to 65535)", (unsigned long long)t);
    *ret_thread = (uint16_t)t;
    if (at_end(c))
      return 0;
  }
  return fail(ps, "unexpected '%s' at the end of the line", excerpt(ps, c->p, c->end));
}

/* --- line formats --- */

static int text_event(struct parser *ps, struct cursor *c) {
  char k = *c->p++;
  ps->word = (uint8_t)k;
  if (c->p < c->end && *c->p != ' ' && *c->p != '\t' && *c->p != '\r' && *c->p != '#')
    return fail(ps, "unknown event '%s' (expected m, f, r, c, a or x)",
                excerpt(ps, c->p - 1, token_end(c->p, c->end)));
  int64_t id = 0;
  uint64_t a = 0, b = 0;
  uint16_t th;
  switch (k) {
  case 'm':
    if (parse_id(ps, c, 0, &id) || parse_size(ps, c, "size", &a) || parse_tail(ps, c, &th))
      return -1;
    ps->t->n_malloc++;
    return do_alloc(ps, (uint64_t)id, OP_MALLOC, a, 0, th);
  case 'f':
    if (parse_id(ps, c, 1, &id) || parse_tail(ps, c, &th))
      return -1;
    return op_free(ps, id, th);
  case 'r':
    if (parse_id(ps, c, 0, &id) || parse_size(ps, c, "size", &a) || parse_tail(ps, c, &th))
      return -1;
    return op_realloc(ps, id, a, th);
  case 'c':
    if (parse_id(ps, c, 0, &id) || parse_size(ps, c, "count", &a) ||
        parse_size(ps, c, "size", &b) || parse_tail(ps, c, &th))
      return -1;
    if (b && a > TRACE_MAX_SIZE / b)
      return fail(ps, "calloc of %llu x %llu bytes is larger than any allocation can be",
                  (unsigned long long)a, (unsigned long long)b);
    ps->t->n_calloc++;
    return do_alloc(ps, (uint64_t)id, OP_CALLOC, a * b, 0, th);
  case 'a':
    if (parse_id(ps, c, 0, &id) || parse_size(ps, c, "alignment", &a) ||
        parse_size(ps, c, "size", &b) || parse_tail(ps, c, &th))
      return -1;
    if (!a || (a & (a - 1)) || a > (1u << 30))
      return fail(ps, "alignment %llu is not a power of two up to 2^30", (unsigned long long)a);
    ps->t->n_memalign++;
    if (a <= 16) /* every module aligns to 16 already */
      return do_alloc(ps, (uint64_t)id, OP_MALLOC, b, 0, th);
    return do_alloc(ps, (uint64_t)id, OP_MEMALIGN, b, a, th);
  case 'x':
    if (parse_tail(ps, c, &th))
      return -1;
    return op_reset(ps, th);
  default:
    return fail(ps, "unknown event '%s' (expected m, f, r, c, a or x)",
                excerpt(ps, c->p - 1, c->p));
  }
}

static int rep_event(struct parser *ps, struct cursor *c) {
  char k = *c->p++;
  ps->word = k == 'a' ? 'm' : (uint8_t)k; /* .rep's a is malloc */
  if (c->p < c->end && *c->p != ' ' && *c->p != '\t' && *c->p != '\r')
    return fail(ps, "unknown .rep event '%s' (expected a, f or r)",
                excerpt(ps, c->p - 1, token_end(c->p, c->end)));
  int64_t id;
  uint64_t size;
  uint16_t th;
  switch (k) {
  case 'a':
    if (parse_id(ps, c, 0, &id) || parse_size(ps, c, "size", &size) || parse_tail(ps, c, &th))
      return -1;
    ps->t->n_malloc++;
    return do_alloc(ps, (uint64_t)id, OP_MALLOC, size, 0, th);
  case 'f':
    if (parse_id(ps, c, 1, &id) || parse_tail(ps, c, &th))
      return -1;
    return op_free(ps, id, th);
  case 'r':
    if (parse_id(ps, c, 0, &id) || parse_size(ps, c, "size", &size) || parse_tail(ps, c, &th))
      return -1;
    return op_realloc(ps, id, size, th);
  default:
    return fail(ps, "unknown .rep event '%s' (expected a, f or r)", excerpt(ps, c->p - 1, c->p));
  }
}

enum format { FMT_UNKNOWN, FMT_TEXT, FMT_REP };

/* The first content line says the format: "alloctrace 1", or a number (.rep header). */
static int header_line(struct parser *ps, struct cursor *c, enum format *fmt) {
  static const char magic[] = "alloctrace";
  size_t n = sizeof magic - 1;
  if ((size_t)(c->end - c->p) >= n && memcmp(c->p, magic, n) == 0) {
    c->p += n;
    uint64_t v;
    if (parse_num(ps, c, "version", 0, NULL, &v))
      return -1;
    if (v != 1)
      return fail(ps, "unsupported trace version %llu (this harness reads version 1)",
                  (unsigned long long)v);
    if (!at_end(c))
      return fail(ps, "unexpected text after the header");
    *fmt = FMT_TEXT;
    return 0;
  }
  if (*c->p >= '0' && *c->p <= '9') {
    *fmt = FMT_REP;
    return 0;
  }
  if (memchr(c->p, '\0', (size_t)(c->end - c->p)))
    return fail(ps, "not a trace: binary data or UTF-16 text (traces are ASCII)");
  return fail(ps, "not a trace: expected the header 'alloctrace 1' or a malloc-lab .rep header");
}

struct header {
  enum format fmt;
  int n_numbers;    /* .rep header numbers read so far */
  uint64_t rep_ops; /* the op count a .rep header announces */
  uint64_t rep_lines;
};

/* The four .rep header numbers, on one line or several; the third is the op count. */
static int rep_header(struct parser *ps, struct cursor *c, struct header *h) {
  while (!at_end(c)) {
    if (h->n_numbers == 4)
      return fail(ps, "a .rep header has four numbers; this line has more");
    uint64_t v;
    if (parse_num(ps, c, ".rep header number", 0, NULL, &v))
      return -1;
    if (h->n_numbers++ == 2)
      h->rep_ops = v;
  }
  return 0;
}

static int parse_line(struct parser *ps, struct cursor *c, struct header *h) {
  if (h->fmt == FMT_UNKNOWN) {
    if (header_line(ps, c, &h->fmt))
      return -1;
    if (h->fmt == FMT_TEXT)
      return 0;
  }
  if (h->fmt == FMT_TEXT)
    return text_event(ps, c);
  if (h->n_numbers < 4)
    return rep_header(ps, c, h);
  h->rep_lines++;
  return rep_event(ps, c);
}

static int parse_lines(struct parser *ps, const char *buf, size_t len) {
  struct header h = {0};
  const char *p = buf, *end = buf + len;
  if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
    p += 3; /* a UTF-8 byte-order mark, as some editors write */
  for (ps->line = 1; p < end; ps->line++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    struct cursor c = {p, nl ? nl : end};
    p = nl ? nl + 1 : end;
    if (ps->line == UINT32_MAX)
      return fail(ps, "more than 2^32 lines");
    if (!at_end(&c) && parse_line(ps, &c, &h))
      return -1;
  }
  ps->line = ps->line > 1 ? ps->line - 1 : 1; /* problems at the end name the last line */
  if (h.fmt == FMT_UNKNOWN)
    return fail(ps, "empty trace: no header line");
  if (h.fmt == FMT_REP && h.n_numbers < 4)
    return fail(ps, "the .rep header has %d of its four numbers", h.n_numbers);
  if (h.fmt == FMT_REP && h.rep_ops != h.rep_lines)
    snprintf(ps->t->warning, sizeof ps->t->warning,
             "%s: the .rep header announces %llu ops but %llu follow; replaying the lines",
             ps->name, (unsigned long long)h.rep_ops, (unsigned long long)h.rep_lines);
  return 0;
}

static int parse_with(struct trace *ret, const char *name, const char *buf, size_t len, char *err,
                      size_t errlen, int keep_stale) {
  *ret = (struct trace){0};
  struct parser ps = {
      .t = ret, .name = name, .err = err, .errlen = errlen, .keep_stale = keep_stale};
  ret->path = strdup(name);
  /* slot 0 holds NULL, for free(NULL) */
  ret->n_threads = 1;
  int r = ret->path ? take_slot(&ps, &(uint32_t){0}) : fail(&ps, "out of memory");
  if (r == 0)
    r = parse_lines(&ps, buf, len);
  region_side_free(ps.ids, ps.ids_cap * sizeof *ps.ids);
  region_side_free(ps.direct, ps.direct_cap * sizeof *ps.direct);
  region_side_free(ps.slot_size, ps.cap_slots * sizeof *ps.slot_size);
  region_side_free(ps.slot_id, ps.cap_slots * sizeof *ps.slot_id);
  region_side_free(ps.free_slots, ps.cap_slots * sizeof *ps.free_slots);
  if (r)
    trace_free(ret);
  return r;
}

int trace_parse(struct trace *ret, const char *name, const char *buf, size_t len, char *err,
                size_t errlen) {
  return parse_with(ret, name, buf, len, err, errlen, 0);
}

int trace_parse_stale(struct trace *ret, const char *name, const char *buf, size_t len, char *err,
                      size_t errlen) {
  return parse_with(ret, name, buf, len, err, errlen, 1);
}

static int load_error(const char *path, char *err, size_t errlen, const char *what) {
  snprintf(err, errlen, "%s: %s", path, what);
  return -1;
}

/* Binary and compressed traces are told by their first bytes, whatever the file's name. */
static int parse_any(struct trace *ret, const char *path, const void *buf, size_t len, char *err,
                     size_t errlen) {
  if (trace_bin_is(buf, len))
    return trace_bin_parse(ret, path, buf, len, err, errlen);
  if (trace_zip_is(buf, len))
    return trace_zip_parse(ret, path, buf, len, err, errlen);
  return trace_parse(ret, path, buf, len, err, errlen);
}

int trace_load(struct trace *ret, const char *path, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO must not block */
  if (fd < 0)
    return load_error(path, err, errlen, strerror(errno));
  struct stat st = {0};
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return load_error(path, err, errlen,
                      S_ISDIR(st.st_mode) ? "is a directory, not a trace" : "not a regular file");
  }
  if (st.st_size == 0) {
    close(fd);
    return load_error(path, err, errlen, "empty file, not a trace");
  }
  /* A version-2 binary trace is read straight into its op array (1: it is not one). */
  int v2 = trace_bin_read_v2(ret, path, fd, (size_t)st.st_size, err, errlen);
  if (v2 != 1) {
    close(fd);
    return v2;
  }
  /* MAP_POPULATE: every page is read anyway; mapping them in one call spares a page fault
   * per 64 KiB, which on this project's VMs costs tens of microseconds. */
  void *buf = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  close(fd);
  if (buf == MAP_FAILED)
    return load_error(path, err, errlen, strerror(errno));
  madvise(buf, (size_t)st.st_size, MADV_SEQUENTIAL);
  int r = parse_any(ret, path, buf, (size_t)st.st_size, err, errlen);
  munmap(buf, (size_t)st.st_size);
  return r;
}

/* Modules without memalign get malloc(size + alignment - 16) and the later ops on that
 * block pass the enlarged size, as the module saw it. The MALLOC's arg keeps the extra. */
void trace_lower_memalign(struct trace *t) {
  uint64_t *extra = region_side_alloc(t->n_slots * sizeof *extra);
  if (!extra)
    abort(); /* called in a cell's child: the parent reports it as a failed row */
  for (size_t i = 0; i < t->n_ops; i++) {
    struct trace_op *o = &t->ops[i];
    switch (o->kind) {
    case OP_MEMALIGN:
      extra[o->slot] = o->arg - 16;
      o->kind = OP_MALLOC;
      o->size += extra[o->slot];
      o->arg = extra[o->slot]; /* so measures still count the size the trace asked for */
      break;
    case OP_REALLOC:
      o->arg += extra[o->slot];
      extra[o->slot] = 0;
      break;
    case OP_FREE:
      o->size += extra[o->slot];
      extra[o->slot] = 0;
      break;
    case OP_MALLOC:
    case OP_CALLOC:
      extra[o->slot] = 0;
      break;
    }
  }
  region_side_free(extra, t->n_slots * sizeof *extra);
}

void trace_free(struct trace *t) {
  free(t->path);
  region_side_free(t->ops, t->cap * sizeof *t->ops);
  region_side_free(t->line, t->cap * sizeof *t->line);
  *t = (struct trace){0};
}
