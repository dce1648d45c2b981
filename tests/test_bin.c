/* Binary and compressed traces: text -> binary -> text round trips give the same ops, a
 * truncated or corrupt binary trace is refused with the record named, an unfinished
 * recording is read with a warning, compressed traces read the same as plain ones, and
 * `info` reports what the trace holds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "gen.h"
#include "testutil.h"
#include "tools.h"
#include "trace.h"
#include "trace_bin.h"
#include "trace_zip.h"

/* Every event kind and corner case, ids reused, a reset that frees out of id order. */
static const char edge[] = "alloctrace 1\n"
                           "# the provenance comment\n"
                           "m 1 0\nm 2 1\nm 3 17\nc 4 3 5\nc 5 0 8\na 6 32 100\na 7 4096 10\n"
                           "a 8 8 24\nr 2 4000\nr 3 5\nr 1 0\nr 100 64\nf -1\nm 9 100 @1\n"
                           "f 9 @1\nm 1 48\nf 6\nf 7\nx\nm 10 1000000\nm 11 16\nf 11\nf 10\n"
                           "m 12 8 @300\nm 13 8\nm 14 8\nf 12\nf 13\nr 14 140737488355328\n"
                           "x @2\nm 3 1\n";

/* A sink into memory. */
static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

struct mem {
  uint8_t *p;
  size_t len, cap;
};

static int mem_put(void *ctx, const void *p, size_t n) {
  struct mem *m = ctx;
  if (m->len + n > m->cap) {
    m->cap = (m->len + n) * 2;
    m->p = realloc(m->p, m->cap);
    if (!m->p)
      return -1;
  }
  memcpy(m->p + m->len, p, n);
  m->len += n;
  return 0;
}

static int same_trace(const struct trace *a, const struct trace *b) {
  return a->n_ops == b->n_ops && a->n_slots == b->n_slots && a->n_threads == b->n_threads &&
         a->n_malloc == b->n_malloc && a->n_free == b->n_free && a->n_realloc == b->n_realloc &&
         a->n_calloc == b->n_calloc && a->n_memalign == b->n_memalign && a->n_reset == b->n_reset &&
         a->peak_live == b->peak_live && a->peak_live_op == b->peak_live_op &&
         memcmp(a->ops, b->ops, a->n_ops * sizeof *a->ops) == 0;
}

static int to_binary(const struct trace *t, struct mem *ret) {
  char err[256];
  *ret = (struct mem){0};
  return trace_bin_write(t, "meta", mem_put, ret, err, sizeof err);
}

static int to_v2(const struct trace *t, struct mem *ret) {
  char err[256];
  *ret = (struct mem){0};
  int r = trace_bin_write_v2(t, "meta", mem_put, ret, err, sizeof err);
  if (r)
    fprintf(stderr, "  trace_bin_write_v2: %s\n", err);
  return r;
}

/* The same trace, line numbers included. */
static int same_lines(const struct trace *a, const struct trace *b) {
  if (!same_trace(a, b))
    return 0;
  for (size_t i = 0; i < a->n_ops; i++)
    if (trace_line(a, i) != trace_line(b, i))
      return 0;
  return 1;
}

static int to_text(const struct trace *t, struct mem *ret) {
  char err[256];
  *ret = (struct mem){0};
  return tools_write_text(t, NULL, mem_put, ret, err, sizeof err);
}

/* text -> version 2 -> text, and version 1 -> version 2: the same ops, lines kept. */
static void round_trip_v2(const char *name, const struct trace *t1, const struct mem *v1) {
  struct trace t2, t3, t4;
  char err[512];
  struct mem img, txt, img2;
  EXPECT(to_v2(t1, &img) == 0);
  int r = trace_bin_parse(&t2, name, img.p, img.len, err, sizeof err);
  if (!EXPECT(r == 0))
    fprintf(stderr, "  %s (v2): %s\n", name, err);
  EXPECT(r == 0 && same_lines(t1, &t2) && t2.warning[0] == '\0');
  EXPECT(r == 0 && to_text(&t2, &txt) == 0);
  int r3 = r ? r : trace_parse(&t3, name, (char *)txt.p, txt.len, err, sizeof err);
  EXPECT(r3 == 0 && same_trace(t1, &t3));
  /* version 1 -> version 2: the same bytes as from the text (lines are record numbers) */
  int r4 = trace_bin_parse(&t4, name, v1->p, v1->len, err, sizeof err);
  EXPECT(r4 == 0 && to_v2(&t4, &img2) == 0);
  struct trace t5;
  int r5 = r4 ? r4 : trace_bin_parse(&t5, name, img2.p, img2.len, err, sizeof err);
  EXPECT(r5 == 0 && same_lines(&t4, &t5) && same_trace(t1, &t5));
  /* the same ops, and version 1's record numbers run in sequence: no lines stored */
  uint64_t ops_bytes = 24 * (uint64_t)t1->n_ops;
  EXPECT(r4 == 0 && img2.len == get64(img2.p + 32) + ops_bytes && (img2.p[6] & 2) &&
         get64(img2.p + 32) == get64(img.p + 32) &&
         memcmp(img2.p + get64(img2.p + 32), img.p + get64(img.p + 32), ops_bytes) == 0);
  if (r == 0)
    trace_free(&t2);
  if (r3 == 0)
    trace_free(&t3);
  if (r4 == 0)
    trace_free(&t4);
  if (r5 == 0)
    trace_free(&t5);
  free(img.p);
  free(img2.p);
  free(txt.p);
}

/* text -> binary -> text, each stage read back and compared with the first. */
static void round_trip(const char *name, const char *text, size_t len) {
  struct trace t1, t2, t3;
  char err[512];
  struct mem bin, txt, bin2, txt2;
  if (!EXPECT(trace_parse(&t1, name, text, len, err, sizeof err) == 0)) {
    fprintf(stderr, "  %s\n", err);
    return;
  }
  EXPECT(to_binary(&t1, &bin) == 0);
  int r = trace_bin_parse(&t2, name, bin.p, bin.len, err, sizeof err);
  if (!EXPECT(r == 0))
    fprintf(stderr, "  %s: %s\n", name, err);
  EXPECT(r == 0 && same_trace(&t1, &t2) && t2.warning[0] == '\0');
  EXPECT(r == 0 && to_text(&t2, &txt) == 0);
  r = r ? r : trace_parse(&t3, name, (char *)txt.p, txt.len, err, sizeof err);
  if (!EXPECT(r == 0))
    fprintf(stderr, "  %s: %s\n", name, err);
  EXPECT(r == 0 && same_trace(&t1, &t3));
  /* and both writers are stable: the same trace gives the same bytes */
  EXPECT(r == 0 && to_binary(&t3, &bin2) == 0 && bin2.len == bin.len &&
         memcmp(bin2.p, bin.p, bin.len) == 0);
  EXPECT(r == 0 && to_text(&t3, &txt2) == 0 && txt2.len == txt.len &&
         memcmp(txt2.p, txt.p, txt.len) == 0);
  round_trip_v2(name, &t1, &bin);
  trace_free(&t1);
  trace_free(&t2);
  if (r == 0) {
    trace_free(&t3);
    free(bin2.p);
    free(txt2.p);
  }
  free(bin.p);
  free(txt.p);
}

static void round_trips(void) {
  round_trip("edge.trace", edge, sizeof edge - 1);
  const char rep[] = "20000\r\n3\r\n6\r\n1\r\na 0 2040\r\na 1 2040\r\nf -1\r\nr 2 16\r\nr 1 0\r\n"
                     "f 0\r\nr 2 48\r\n";
  round_trip("t.rep", rep, sizeof rep - 1);
  static const struct gen_opts opts[] = {
      {.seed = 1, .n_ops = 200000, .max_live = 3000, .order = GEN_RANDOM, .max_size = 1 << 20},
      {.seed = 2,
       .n_ops = 50000,
       .max_live = 500,
       .order = GEN_LIFO,
       .max_size = 4096,
       .resets = 1},
      {.seed = 3,
       .n_ops = 100000,
       .max_live = 20000,
       .order = GEN_FIFO,
       .max_size = 1 << 16,
       .resets = 1,
       .threads = 4,
       .cross_pct = 20},
  };
  for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
    size_t len;
    char *text = gen_trace(&opts[i], &len);
    round_trip("gen.trace", text, len);
    free(text);
  }
}

static struct trace load_text(const char *text) {
  struct trace t;
  char err[256];
  if (trace_parse(&t, "t.trace", text, strlen(text), err, sizeof err))
    abort();
  return t;
}

/* Every cut of a binary trace is refused, naming the file and what was cut. */
static void truncated(void) {
  struct trace t = load_text(edge);
  struct mem bin;
  EXPECT(to_binary(&t, &bin) == 0);
  int all = 1;
  for (size_t cut = 4; cut < bin.len; cut++) {
    struct trace u;
    char err[512] = "";
    int r = trace_bin_parse(&u, "t.atb", bin.p, cut, err, sizeof err);
    int ok = r == -1 && strncmp(err, "t.atb: ", 7) == 0 && strstr(err, "truncated") &&
             (cut < TRACE_BIN_HEADER + 4 || strstr(err, "record"));
    if (!ok) {
      fprintf(stderr, "  cut at %zu: \"%s\"\n", cut, err);
      all = 0;
    }
    if (r == 0)
      trace_free(&u);
  }
  EXPECT(all);
  /* the message names the record cut and its byte */
  struct trace u;
  char err[512];
  EXPECT(trace_bin_parse(&u, "t.atb", bin.p, bin.len - 1, err, sizeof err) == -1);
  char want[128];
  snprintf(want, sizeof want, "t.atb: record %zu (byte", t.n_ops);
  EXPECT(strncmp(err, want, strlen(want)) == 0);
  free(bin.p);
  trace_free(&t);
}

/* A binary trace built by hand: header (complete unless flags say otherwise), then bytes. */
static size_t build(uint8_t *out, unsigned flags, uint64_t records, uint32_t slots,
                    uint32_t threads, const uint8_t *rec, size_t n) {
  struct trace_bin_header h = {.version = TRACE_BIN_VERSION,
                               .flags = (uint16_t)flags,
                               .records = records,
                               .slots = slots,
                               .threads = threads};
  trace_bin_header_encode(out, &h);
  if (n) /* rec may be NULL: memcpy's arguments must not be, even for 0 bytes */
    memcpy(out + TRACE_BIN_HEADER, rec, n);
  return TRACE_BIN_HEADER + n;
}

static void corrupt(void) {
  /* tag = code | length << 5 */
  static const struct {
    uint8_t rec[16];
    size_t n;
    uint64_t records;
    uint32_t slots, threads;
    const char *words;
  } cases[] = {
      {{0x0f}, 1, 1, 1, 1, "unknown record byte 0x0f"},
      {{0x21, 5}, 2, 1, 1, 1, "free of slot 5, which was never allocated"},
      {{0x20, 8, 0x21, 1, 0x21, 1}, 6, 3, 2, 1, "double free of slot 1 (freed at record 2)"},
      {{0x20, 8, 0x21, 1, 0x22, 1, 9},
       7,
       3,
       2,
       1,
       "realloc of slot 1, which was freed at record 2"},
      {{0x20, 8, 0x22, 1, 0}, 5, 2, 2, 1, "realloc to size 0"},
      {{0xe0, 0, 0, 0, 0, 0, 0, 0x80}, 8, 1, 2, 1, "larger than any allocation can be (2^47)"},
      {{0x26, 4, 8}, 3, 1, 2, 1, "alignment 2^4"},
      {{0x30, 0x80, 0x80, 0x04, 1}, 5, 1, 2, 1, "thread 65536 is out of range"},
      {{0x20, 8, 0x20, 8}, 4, 2, 2, 1, "more blocks live at once than the header's 2 slots"},
      {{0x20, 8, 0x21, 1}, 4, 1, 2, 1, "bytes follow the 1 records"},
      {{0x20, 8}, 2, 1, 2, 2, "announces 2 slots and 2 threads, the records use 2 and 1"},
      {{0x20, 8, 0x08, 0x20, 8}, 5, 3, 3, 1, "frees 1 more blocks than reset-free records follow"},
      {{0x29, 1}, 2, 1, 2, 1, "a reset-free record that no reset announced"},
      {{0x22, 1, 0x80}, 3, 1, 2, 1, "never allocated"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t buf[64];
    size_t n = build(buf, TRACE_BIN_COMPLETE, cases[i].records, cases[i].slots, cases[i].threads,
                     cases[i].rec, cases[i].n);
    struct trace t;
    char err[512] = "";
    int r = trace_bin_parse(&t, "c.atb", buf, n, err, sizeof err);
    if (!EXPECT(r == -1 && strncmp(err, "c.atb: record ", 14) == 0 && strstr(err, cases[i].words)))
      fprintf(stderr, "  case %zu: got \"%s\", wanted %s\n", i, err, cases[i].words);
    if (r == 0)
      trace_free(&t);
  }
  /* header problems */
  uint8_t buf[64];
  size_t n = build(buf, TRACE_BIN_COMPLETE, 0, 1, 1, NULL, 0);
  buf[4] = 9; /* version */
  struct trace t;
  char err[512];
  EXPECT(trace_bin_parse(&t, "h.atb", buf, n, err, sizeof err) == -1 &&
         strstr(err, "h.atb: unsupported binary trace version 9"));
  n = build(buf, 0x80, 0, 1, 1, NULL, 0);
  EXPECT(trace_bin_parse(&t, "h.atb", buf, n, err, sizeof err) == -1 &&
         strstr(err, "unknown header flags 0x80"));
  n = build(buf, TRACE_BIN_COMPLETE, 1000, 1, 1, NULL, 0);
  EXPECT(trace_bin_parse(&t, "h.atb", buf, n, err, sizeof err) == -1 &&
         strstr(err, "h.atb: truncated binary trace: 0 bytes of records, too few for the 1000"));
  n = build(buf, TRACE_BIN_COMPLETE, 0, 1, 0, NULL, 0);
  EXPECT(trace_bin_parse(&t, "h.atb", buf, n, err, sizeof err) == -1 &&
         strstr(err, "h.atb: corrupt header: 0 records, 1 slots, 0 threads"));
  /* an empty complete trace is valid */
  n = build(buf, TRACE_BIN_COMPLETE, 0, 1, 1, NULL, 0);
  EXPECT(trace_bin_parse(&t, "e.atb", buf, n, err, sizeof err) == 0 && t.n_ops == 0);
  trace_free(&t);
}

/* A recording whose process was killed: no completion mark, counts 0, a record cut. */
static void unfinished(void) {
  static const uint8_t rec[] = {0x20, 100, 0x20, 50, 0x21, 1, 0x40, 0x10}; /* last one cut */
  uint8_t buf[64];
  size_t n = build(buf, 0, 0, 0, 0, rec, sizeof rec);
  struct trace t;
  char err[512];
  EXPECT(trace_bin_parse(&t, "u.atb", buf, n, err, sizeof err) == 0);
  EXPECT(t.n_ops == 3 && t.n_malloc == 2 && t.n_free == 1 && t.peak_live == 150);
  EXPECT(strstr(t.warning, "u.atb: unfinished recording") && strstr(t.warning, "3 records read") &&
         strstr(t.warning, "cut short"));
  trace_free(&t);
  /* with its last record whole, no record is dropped */
  n = build(buf, 0, 0, 0, 0, rec, 6);
  EXPECT(trace_bin_parse(&t, "u.atb", buf, n, err, sizeof err) == 0 && t.n_ops == 3 &&
         !strstr(t.warning, "cut short"));
  trace_free(&t);
  /* a corrupt record is still an error */
  static const uint8_t bad[] = {0x20, 100, 0x21, 2};
  n = build(buf, 0, 0, 0, 0, bad, sizeof bad);
  EXPECT(trace_bin_parse(&t, "u.atb", buf, n, err, sizeof err) == -1 && strstr(err, "record 2"));
}

/* --- version 2 --- */

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

/* Every cut of a version-2 file is refused as truncated, naming the file, and the op when
 * the cut falls in the ops or the lines. */
static void truncated_v2(void) {
  struct trace t = load_text(edge);
  struct mem img;
  EXPECT(to_v2(&t, &img) == 0);
  uint64_t ops_at = get64(img.p + 32);
  EXPECT(ops_at == 192 && img.len == ops_at + 28 * t.n_ops); /* "meta": 4 bytes, padded */
  int all = 1;
  for (size_t cut = 1; cut < img.len; cut++) {
    struct trace u;
    char err[512] = "";
    int r = trace_bin_parse(&u, "t.atb", img.p, cut, err, sizeof err);
    int ok = r == -1 && strncmp(err, "t.atb: ", 7) == 0 && (cut < 4 || strstr(err, "truncated")) &&
             (cut < ops_at || strstr(err, ": op "));
    if (!ok) {
      fprintf(stderr, "  v2 cut at %zu: \"%s\"\n", cut, err);
      all = 0;
    }
    if (r == 0)
      trace_free(&u);
  }
  EXPECT(all);
  struct trace u;
  char err[512];
  EXPECT(trace_bin_parse(&u, "t.atb", img.p, ops_at + 24 * 5 + 3, err, sizeof err) == -1 &&
         strstr(err, "t.atb: op 6 (byte 312): truncated binary trace: the file ends after 5 of the "
                     "39 ops"));
  EXPECT(trace_bin_parse(&u, "t.atb", img.p, img.len - 1, err, sizeof err) == -1 &&
         strstr(err, "t.atb: op 39 (its line at byte") && strstr(err, "after 38 of the 39 line"));
  free(img.p);
  trace_free(&t);
}

/* A version-2 image of text, with one change made by change(), must be refused with words. */
struct v2_case {
  const char *text;
  void (*change)(uint8_t *img, struct trace_op *ops, uint32_t *lines);
  const char *words;
};

static void c_slot(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)img, (void)l;
  o[1].slot = 7;
}
static void c_double(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)img, (void)l;
  o[2].kind = OP_FREE, o[2].word = 'f';
}
static void c_size(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)img, (void)l;
  o[1].size = 9;
}
static void c_peak(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  put64(img + 96, get64(img + 96) + 1);
}
static void c_peak_op(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  put64(img + 104, 3);
}
static void c_kind(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)img, (void)l;
  o[1].kind = 9;
}
static void c_word(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)img, (void)l;
  o[0].word = 'f';
}
static void c_thread(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)img, (void)l;
  o[1].thread = 5;
}
static void c_lines(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)img, (void)o;
  l[2] = 1;
}
static void c_live(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)img, (void)l;
  o[2].slot = 1;
}
static void c_rule(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)img, (void)l;
  o[4].slot = 1;
}
static void c_reset(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)img, (void)l;
  o[2].arg = 1;
}
static void c_realloc(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)img, (void)l;
  o[1].arg = 7;
}
static void c_arg(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)img, (void)l;
  o[0].arg = 16; /* a lowered memalign: trace_lower_memalign's, never a reader's */
}
static void c_count(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  put64(img + 48, 3);
}
static void c_slots(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  img[16] = 3; /* one slot more than the ops use */
}
static void c_misaligned(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  put64(img + 32, get64(img + 32) + 8);
}
static void c_lines_at(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  put64(img + 40, (uint64_t)1 << 60);
}
static void c_overflow(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  put64(img + 8, (uint64_t)1 << 62);
}
static void c_op_size(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  img[28] = 32;
}
static void c_flags(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  img[6] = 0;
}
static void c_reserved(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  img[120] = 1;
}
static void c_pad(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  img[150] = 1;
}
static void c_threads(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  img[20] = 0;
}

/* Lines in sequence (TRACE_BIN_LINES_SEQ): their first line at byte 112. */
static void c_base_0(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  memset(img + 112, 0, 4);
}
static void c_base_high(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  memset(img + 112, 0xff, 4);
}
static void c_base_unflagged(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  img[112] = 7;
}
/* the flag on a trace whose lines are stored: they are bytes too many */
static void c_seq_unstored(uint8_t *img, struct trace_op *o, uint32_t *l) {
  (void)o, (void)l;
  img[6] |= 2;
  img[112] = 1;
}

static const struct v2_case v2_cases[] = {
    {"m 1 8\nf 1\n", c_slot,
     "c.atb: op 2 (byte 216): slot 7 is out of range (the header's 2 slots)"},
    {"m 1 8\nf 1\nm 2 8\n", c_double,
     "c.atb: op 3 (byte 240): double free of slot 1 (freed at op 2)"},
    {"m 1 8\nf 1\n", c_size,
     "op 2 (byte 216): free of slot 1 passes size 9, the block's size is 8"},
    {"m 1 8\nm 2 4\nf 1\n", c_peak,
     "c.atb: op 2 (byte 216): corrupt header: it gives peak live 13"},
    {"m 1 8\nm 2 4\nf 1\n", c_peak_op,
     "op 2 (byte 216): corrupt header: it gives peak live 12 at op 4"},
    {"m 1 8\nf 1\n", c_kind, "c.atb: op 2 (byte 216): unknown op kind 9"},
    {"m 1 8\nf 1\n", c_word, "c.atb: op 1 (byte 192): a malloc op with the word 'f'"},
    {"m 1 8\nf 1\n", c_thread,
     "op 2 (byte 216): thread 5 is out of range (the header's 1 threads)"},
    {"m 1 8\nm 2 8\n\nf 1\n", c_lines, "c.atb: op 3 (its line at byte 272): line 1 follows line 3"},
    {"m 1 8\nm 2 8\nm 3 8\n", c_live,
     "op 3 (byte 240): allocation into slot 1, which is live (allocated at op 1)"},
    {"m 1 8\nm 2 8\nf 1\nf 2\nm 3 8\n", c_rule,
     "op 5 (byte 288): allocation into slot 1 where the readers' rule (the slot freed last, else a "
     "new one) gives slot 2"},
    {"m 1 8\nm 2 8\nx\n", c_reset,
     "op 3 (byte 240): a reset (slot 0, size 0) that announces 1 frees "
     "with 2 blocks live"},
    {"m 1 8\nr 1 16\n", c_realloc,
     "op 2 (byte 216): realloc of slot 1 passes size 7, the block's size "
     "is 8"},
    {"m 1 8\n", c_arg, "c.atb: op 1 (byte 192): a malloc with the argument 16 (must be 0)"},
    {"m 1 8\nf 1\n", c_count, "c.atb: corrupt header: it counts 3 mallocs, the ops hold 1"},
    {"m 1 8\nf 1\n", c_slots,
     "c.atb: corrupt header: it announces 3 slots and 1 threads, the ops use 2"},
    {"m 1 8\n", c_misaligned, "c.atb: corrupt header: the ops' offset 200 is not a multiple of 64"},
    {"m 1 8\n", c_lines_at,
     "c.atb: corrupt header: the lines' offset is 1152921504606846976, not 216"},
    {"m 1 8\n", c_overflow, "c.atb: corrupt header: 4611686018427387904 ops overflow"},
    {"m 1 8\n", c_op_size, "c.atb: corrupt header: ops of 32 bytes"},
    {"m 1 8\n", c_flags, "c.atb: corrupt header: no completion mark"},
    {"m 1 8\n", c_reserved, "c.atb: corrupt header: reserved byte 120 is not 0"},
    {"m 1 8\n", c_pad,
     "c.atb: corrupt header: byte 150, between the metadata and the ops, is not 0"},
    {"m 1 8\n", c_threads, "c.atb: corrupt header: 1 ops, 2 slots, 0 threads"},
    {"m 1 8\nf 1\n", c_base_0, "c.atb: corrupt header: line base 0 for 2 ops"},
    {"m 1 8\nf 1\n", c_base_high, "c.atb: corrupt header: line base 4294967295 for 2 ops"},
    {"m 1 8\n\nf 1\n", c_base_unflagged,
     "c.atb: corrupt header: a line base (7) without the flag that uses it"},
    {"m 1 8\n\nf 1\n", c_seq_unstored,
     "c.atb: corrupt binary trace: 8 bytes follow the 2 ops and line numbers"},
};

static void corrupt_v2(void) {
  for (size_t i = 0; i < sizeof v2_cases / sizeof v2_cases[0]; i++) {
    char text[256];
    snprintf(text, sizeof text, "alloctrace 1\n%s", v2_cases[i].text);
    struct trace t = load_text(text);
    struct mem img;
    EXPECT(to_v2(&t, &img) == 0);
    /* check the pristine image first, then the changed one */
    struct trace u;
    char err[512] = "";
    EXPECT(trace_bin_parse(&u, "c.atb", img.p, img.len, err, sizeof err) == 0);
    trace_free(&u);
    uint64_t ops_at = get64(img.p + 32), lines_at = ops_at + 24 * t.n_ops;
    int stored = !(img.p[6] & 2); /* else the lines run in sequence, none in the file */
    struct trace_op ops[8];
    uint32_t lines[8];
    memcpy(ops, img.p + ops_at, t.n_ops * sizeof *ops);
    if (stored)
      memcpy(lines, img.p + lines_at, t.n_ops * sizeof *lines);
    v2_cases[i].change(img.p, ops, lines);
    memcpy(img.p + ops_at, ops, t.n_ops * sizeof *ops);
    if (stored)
      memcpy(img.p + lines_at, lines, t.n_ops * sizeof *lines);
    int r = trace_bin_parse(&u, "c.atb", img.p, img.len, err, sizeof err);
    if (!EXPECT(r == -1 && strncmp(err, "c.atb: ", 7) == 0 && strstr(err, v2_cases[i].words)))
      fprintf(stderr, "  v2 case %zu: got \"%s\", wanted %s\n", i, err, v2_cases[i].words);
    if (r == 0)
      trace_free(&u);
    free(img.p);
    trace_free(&t);
  }
  /* the writer refuses what the reader would: a lowered memalign, a double free kept */
  static const char aligned[] = "alloctrace 1\na 1 64 100\nf 1\n";
  struct trace t = load_text(aligned);
  trace_lower_memalign(&t);
  struct mem img = {0};
  char err[256];
  EXPECT(trace_bin_write_v2(&t, NULL, mem_put, &img, err, sizeof err) == -1 &&
         strstr(err, "op 1: a malloc with the argument 48 (must be 0)"));
  trace_free(&t);
  free(img.p);
  static const char stale[] = "alloctrace 1\nm 1 8\nf 1\nf 1\n";
  EXPECT(trace_parse_stale(&t, "s.trace", stale, sizeof stale - 1, err, sizeof err) == 0);
  img = (struct mem){0};
  EXPECT(trace_bin_write_v2(&t, NULL, mem_put, &img, err, sizeof err) == -1 &&
         strstr(err, "op 3: a free with the argument 1"));
  trace_free(&t);
  free(img.p);
  /* a version this harness does not know */
  uint8_t buf[64];
  size_t n = build(buf, TRACE_BIN_COMPLETE, 0, 1, 1, NULL, 0);
  buf[4] = 3;
  EXPECT(trace_bin_parse(&t, "h.atb", buf, n, err, sizeof err) == -1 &&
         strstr(err, "h.atb: unsupported binary trace version 3 (this harness reads versions 1 "
                     "and 2)"));
}

static char tmpdir[] = "/tmp/test_bin.XXXXXX";

static const char *tmp(const char *name) {
  static char path[4][256];
  static int k;
  k = (k + 1) % 4;
  snprintf(path[k], sizeof path[k], "%s/%s", tmpdir, name);
  return path[k];
}

static int write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  int ok = fwrite(p, 1, n, f) == n;
  return fclose(f) == 0 && ok ? 0 : -1;
}

/* Written through trace_zip (compressed by the name), read back by trace_load. */
static int zip_file(const char *path, const void *p, size_t n) {
  char err[256];
  struct trace_zip_out *o = trace_zip_create(path, err, sizeof err);
  if (!o)
    return -1;
  if (trace_zip_write(o, p, n)) {
    trace_zip_abandon(o);
    return -1;
  }
  return trace_zip_close(o, err, sizeof err);
}

static int loads_as(const char *path, const struct trace *want) {
  struct trace t;
  char err[512];
  if (trace_load(&t, path, err, sizeof err)) {
    fprintf(stderr, "  %s\n", err);
    return 0;
  }
  int same = same_trace(&t, want);
  trace_free(&t);
  return same;
}

static void compressed(void) {
  size_t len;
  struct gen_opts o = {.seed = 7,
                       .n_ops = 100000,
                       .max_live = 2000,
                       .max_size = 1 << 18,
                       .resets = 1,
                       .threads = 2,
                       .cross_pct = 10};
  char *text = gen_trace(&o, &len);
  struct trace want;
  char err[512];
  EXPECT(trace_parse(&want, "g.trace", text, len, err, sizeof err) == 0);
  struct mem bin;
  EXPECT(to_binary(&want, &bin) == 0);
  EXPECT(zip_file(tmp("a.trace.zst"), text, len) == 0 && loads_as(tmp("a.trace.zst"), &want));
  EXPECT(zip_file(tmp("a.trace.gz"), text, len) == 0 && loads_as(tmp("a.trace.gz"), &want));
  EXPECT(zip_file(tmp("a.atb.zst"), bin.p, bin.len) == 0 && loads_as(tmp("a.atb.zst"), &want));
  EXPECT(zip_file(tmp("a.atb.gz"), bin.p, bin.len) == 0 && loads_as(tmp("a.atb.gz"), &want));
  EXPECT(write_file(tmp("a.atb"), bin.p, bin.len) == 0 && loads_as(tmp("a.atb"), &want));
  /* told by the magic bytes, not the name */
  EXPECT(rename(tmp("a.trace.zst"), tmp("plain-name")) == 0 && loads_as(tmp("plain-name"), &want));
  EXPECT(rename(tmp("a.atb.gz"), tmp("b.trace")) == 0 && loads_as(tmp("b.trace"), &want));
  /* gzip members one after another read as one stream */
  size_t half = len / 2;
  while (text[half - 1] != '\n')
    half--;
  struct mem gz = {0};
  EXPECT(zip_file(tmp("1.gz"), text, half) == 0 &&
         zip_file(tmp("2.gz"), text + half, len - half) == 0);
  for (int i = 1; i <= 2; i++) {
    FILE *f = fopen(tmp(i == 1 ? "1.gz" : "2.gz"), "rb");
    uint8_t chunk[65536];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
      mem_put(&gz, chunk, n);
    if (f)
      fclose(f);
  }
  EXPECT(write_file(tmp("cat.trace.gz"), gz.p, gz.len) == 0 &&
         loads_as(tmp("cat.trace.gz"), &want));
  /* truncated and corrupt compressed data */
  struct trace t;
  EXPECT(write_file(tmp("cut.trace.gz"), gz.p, gz.len / 3) == 0 &&
         trace_load(&t, tmp("cut.trace.gz"), err, sizeof err) == -1 &&
         strstr(err, "truncated gzip data") && strstr(err, "cut.trace.gz: "));
  FILE *f = fopen(tmp("plain-name"), "rb");
  uint8_t zbuf[1 << 16];
  size_t zn = f ? fread(zbuf, 1, sizeof zbuf, f) : 0;
  if (f)
    fclose(f);
  EXPECT(zn > 100 && write_file(tmp("cut.zst"), zbuf, zn / 2) == 0 &&
         trace_load(&t, tmp("cut.zst"), err, sizeof err) == -1 &&
         strstr(err, "truncated zstd data"));
  zbuf[zn / 2] ^= 0xff;
  EXPECT(zn > 100 && write_file(tmp("bad.zst"), zbuf, zn) == 0 &&
         trace_load(&t, tmp("bad.zst"), err, sizeof err) == -1 &&
         strstr(err, "bad.zst: corrupt zstd"));
  /* tools_write picks the format and the compression by the name */
  const char *names[] = {"w.trace", "w.trace.zst", "w.trace.gz", "w.atb", "w.atb.zst", "w.atb.gz"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    EXPECT(tools_write(&want, "m", tmp(names[i]), err, sizeof err) == 0 &&
           loads_as(tmp(names[i]), &want));
  EXPECT(tools_write(&want, "m", tmp("w.txt"), err, sizeof err) == -1 &&
         strstr(err, "unknown output format"));
  /* version 2: read from its file by trace_load, compressed, and written by convert --v2 */
  struct mem img;
  EXPECT(to_v2(&want, &img) == 0);
  EXPECT(write_file(tmp("v2.atb"), img.p, img.len) == 0 && loads_as(tmp("v2.atb"), &want));
  EXPECT(zip_file(tmp("v2.atb.zst"), img.p, img.len) == 0 && loads_as(tmp("v2.atb.zst"), &want));
  EXPECT(write_file(tmp("v2cut.atb"), img.p, img.len - 5) == 0 &&
         trace_load(&t, tmp("v2cut.atb"), err, sizeof err) == -1 && strstr(err, "v2cut.atb: op ") &&
         strstr(err, "truncated binary trace"));
  char *conv[] = {"convert", "--v2", (char *)tmp("w.trace"), (char *)tmp("c2.atb")};
  EXPECT(tools_main(4, conv) == 0 && loads_as(tmp("c2.atb"), &want));
  FILE *c2 = fopen(tmp("c2.atb"), "rb");
  uint8_t head[TRACE_BIN_V2_HEADER + 8];
  size_t hn = c2 ? fread(head, 1, sizeof head, c2) : 0;
  if (c2)
    fclose(c2);
  EXPECT(hn == sizeof head && trace_bin_version(head, hn) == TRACE_BIN_V2);
  char meta[64];
  EXPECT(trace_bin_meta(head, hn, meta, sizeof meta) == 0 && strcmp(meta, "m") == 0);
  char *conv1[] = {"convert", "--v1", (char *)tmp("c2.atb"), (char *)tmp("c1.atb")};
  EXPECT(tools_main(4, conv1) == 0 && loads_as(tmp("c1.atb"), &want));
  char *bad[] = {"convert", "--v3", (char *)tmp("w.trace"), (char *)tmp("c3.atb")};
  EXPECT(tools_main(4, bad) == EXIT_USAGE);
  free(img.p);
  free(gz.p);
  free(bin.p);
  free(text);
  trace_free(&want);
}

/* A version-2 file large enough for the reader's second thread (trace_bin.c, V2_FEED_FROM):
 * the same trace as from memory, lines included; a bad op in the first chunk or the last
 * is named, the feeder stopped and joined (ASan and TSan builds see a leak or a race). */
static void read_ahead_one(int resets) {
  size_t len;
  struct gen_opts o = {
      .seed = 11, .n_ops = 400000, .max_live = 3000, .max_size = 4096, .resets = resets};
  char *text = gen_trace(&o, &len);
  struct trace want, t;
  char err[512];
  struct mem img;
  EXPECT(trace_parse(&want, "g.trace", text, len, err, sizeof err) == 0 && want.n_ops >= 400000);
  EXPECT(to_v2(&want, &img) == 0);
  EXPECT(!!(img.p[6] & 2) == !resets); /* a reset's frees share its line */
  EXPECT(write_file(tmp("big.atb"), img.p, img.len) == 0 &&
         trace_load(&t, tmp("big.atb"), err, sizeof err) == 0 && same_lines(&want, &t));
  trace_free(&t);
  uint64_t ops_at = get64(img.p + 32);
  size_t at[] = {5, want.n_ops - 3};
  for (int k = 0; k < 2; k++) {
    uint8_t *kind = img.p + ops_at + 24 * at[k] + 20, was = *kind;
    *kind = 9;
    char want_err[64];
    snprintf(want_err, sizeof want_err, "big.atb: op %zu (byte ", at[k] + 1);
    int r = write_file(tmp("big.atb"), img.p, img.len) == 0
                ? trace_load(&t, tmp("big.atb"), err, sizeof err)
                : 0;
    if (!EXPECT(r == -1 && strstr(err, want_err) && strstr(err, "unknown op kind 9")))
      fprintf(stderr, "  read ahead: got \"%s\", wanted %s...\n", err, want_err);
    *kind = was;
  }
  free(img.p);
  free(text);
  trace_free(&want);
}

static void read_ahead(void) {
  read_ahead_one(0);
  read_ahead_one(1);
}

/* The version-2 reader keeps its per-slot states in the ops' mapping, after the last op
 * (trace_bin.c, v2_alloc). Traces whose ops end inside one page, and just short of a 4 KiB
 * or a 2 MiB boundary with states that spill past it (170 ops: 4,080 bytes of ops, 23
 * slots; 87,000 to 87,370 ops: 3,800 to 4,400 slots), load as they were written. */
static void states_after_ops(void) {
  const int ops[] = {150, 170, 2000, 87000, 87300, 87370};
  const int live[] = {60, 120, 1500, 20000, 40000, 40000};
  for (int k = 0; k < 6; k++) {
    size_t len;
    struct gen_opts o = {.seed = 20 + (uint64_t)k,
                         .n_ops = ops[k],
                         .max_live = live[k],
                         .max_size = 512,
                         .order = GEN_FIFO};
    char *text = gen_trace(&o, &len);
    struct trace want, t;
    char err[512];
    struct mem img = {0};
    int ok = trace_parse(&want, "s.trace", text, len, err, sizeof err) == 0 &&
             to_v2(&want, &img) == 0 && write_file(tmp("s.atb"), img.p, img.len) == 0 &&
             trace_load(&t, tmp("s.atb"), err, sizeof err) == 0;
    if (!EXPECT(ok && same_lines(&want, &t) && t.n_slots == want.n_slots))
      fprintf(stderr, "  states after %d ops: %s\n", ops[k], ok ? "a different trace" : err);
    if (ok)
      trace_free(&t);
    free(img.p);
    free(text);
    trace_free(&want);
  }
}

static void info(void) {
  struct trace t = load_text(edge);
  char *out = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&out, &n);
  EXPECT(f && tools_info(f, &t, "the source", "line") == 0);
  fclose(f);
  EXPECT(out && strstr(out, "source       the source\n"));
  EXPECT(out && strstr(out, "ops          39: 11 malloc, 8 free, 5 realloc, 2 calloc, 3 aligned, "
                            "2 reset"));
  EXPECT(out && strstr(out, "free(NULL) 1, realloc(NULL, n) 1, realloc(p, 0) 1, aligned to 16 or "
                            "less 1"));
  EXPECT(out && strstr(out, "threads      301 (0: 34 ops, 1: 2 ops, 2: 2 ops, 300: 1 ops)"));
  EXPECT(out && strstr(out, "never freed  1 blocks, 1 bytes"));
  EXPECT(out && strstr(out, "peak live    140737488355328 bytes, first reached at line 31"));
  EXPECT(out && strstr(out, "  128T..<256T                 0    0.00  100.00             1\n"));
  if (out && !test_failed)
    fputs(out, stdout);
  free(out);
  trace_free(&t);
}

int main(void) {
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  round_trips();
  truncated();
  corrupt();
  truncated_v2();
  corrupt_v2();
  unfinished();
  compressed();
  read_ahead();
  states_after_ops();
  info();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmpdir);
  return test_finish();
}
