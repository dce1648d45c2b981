/* `harness convert` and `harness info`, and the text trace writer they share. */
#include "tools.h"

#include "cli.h"
#include "region.h"
#include "trace_zip.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- text writer --- */

struct text_out {
  trace_bin_sink put;
  void *ctx;
  size_t len;
  char buf[1 << 16];
};

static int text_flush(struct text_out *w) {
  int r = w->len ? w->put(w->ctx, w->buf, w->len) : 0;
  w->len = 0;
  return r;
}

static void put_str(struct text_out *w, const char *s) {
  while (*s)
    w->buf[w->len++] = *s++;
}

static void put_u64(struct text_out *w, uint64_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n)
    w->buf[w->len++] = tmp[--n];
}

/* " N" */
static void put_num(struct text_out *w, uint64_t v) {
  w->buf[w->len++] = ' ';
  put_u64(w, v);
}

static int is_alloc(const struct trace_op *o) {
  return o->kind == OP_MALLOC || o->kind == OP_CALLOC || o->kind == OP_MEMALIGN;
}

static void put_meta(struct text_out *w, const char *meta) {
  put_str(w, "# ");
  for (const char *p = meta; *p && w->len < sizeof w->buf - 2; p++)
    w->buf[w->len++] = *p == '\n' || *p == '\r' ? ' ' : *p;
  put_str(w, "\n");
}

/* One op as a line, or nothing for the frees a reset does. */
static void put_op(struct text_out *w, const struct trace_op *o, uint64_t id) {
  switch (o->kind) {
  case OP_MALLOC:
    put_str(w, o->word == 'r' ? "r" : o->word == 'a' ? "a" : "m");
    put_num(w, id);
    if (o->word == 'a')
      put_num(w, 16); /* an alignment of 16 or less: the reader keeps no more */
    put_num(w, o->size);
    break;
  case OP_CALLOC:
    put_str(w, "c");
    put_num(w, id);
    put_num(w, 1); /* the reader keeps count x size only */
    put_num(w, o->size);
    break;
  case OP_MEMALIGN:
    put_str(w, "a");
    put_num(w, id);
    put_num(w, o->arg);
    put_num(w, o->size);
    break;
  case OP_REALLOC:
    put_str(w, "r");
    put_num(w, id);
    put_num(w, o->size);
    break;
  case OP_FREE:
    if (o->slot == 0)
      put_str(w, "f -1");
    else {
      put_str(w, o->word == 'r' ? "r" : "f");
      put_num(w, id);
      if (o->word == 'r')
        put_num(w, 0);
    }
    break;
  default:
    put_str(w, "x");
    break;
  }
  if (o->thread) {
    put_str(w, " @");
    put_u64(w, o->thread);
  }
  put_str(w, "\n");
}

/* Each allocation gets the next id, as the recorder numbered them: ids are never used
 * twice (a realloc of a new id must name an id not seen before). The reader's slots, and
 * the order in which a reset frees its blocks (by slot), do not depend on the ids. */
static int write_ops(const struct trace *t, struct text_out *w, uint64_t *slot_id) {
  uint64_t next = 0, reset_left = 0;
  for (size_t i = 0; i < t->n_ops; i++) {
    const struct trace_op *o = &t->ops[i];
    if (o->kind == OP_FREE && reset_left) { /* the reset's own frees: implied by its 'x' */
      reset_left--;
      continue;
    }
    if (is_alloc(o))
      slot_id[o->slot] = next++;
    if (o->kind == OP_RESET)
      reset_left = o->arg;
    put_op(w, o, slot_id[o->slot]);
    if (w->len > sizeof w->buf - 128 && text_flush(w))
      return -1;
  }
  return text_flush(w);
}

int tools_write_text(const struct trace *t, const char *meta, trace_bin_sink put, void *ctx,
                     char *err, size_t errlen) {
  err[0] = '\0';
  struct text_out *w = malloc(sizeof *w);
  uint64_t *slot_id = region_side_alloc((size_t)t->n_slots * sizeof *slot_id);
  int r = -1;
  if (!w || !slot_id)
    snprintf(err, errlen, "out of memory");
  else {
    *w = (struct text_out){.put = put, .ctx = ctx};
    put_str(w, "alloctrace 1\n");
    if (meta && meta[0])
      put_meta(w, meta);
    r = write_ops(t, w, slot_id);
  }
  region_side_free(slot_id, (size_t)t->n_slots * sizeof *slot_id);
  free(w);
  return r;
}

/* --- output by name --- */

enum out_format { OUT_UNKNOWN, OUT_TEXT, OUT_BINARY };

static enum out_format out_format(const char *path) {
  size_t n = strlen(path);
  if (n > 4 && strcmp(path + n - 4, ".zst") == 0)
    n -= 4;
  else if (n > 3 && strcmp(path + n - 3, ".gz") == 0)
    n -= 3;
  if (n > 6 && strncmp(path + n - 6, ".trace", 6) == 0)
    return OUT_TEXT;
  if (n > 4 && strncmp(path + n - 4, ".atb", 4) == 0)
    return OUT_BINARY;
  return OUT_UNKNOWN;
}

/* version: of a binary output, TRACE_BIN_VERSION (the record stream) or TRACE_BIN_V2. */
static int write_as(const struct trace *t, const char *meta, const char *path, int version,
                    char *err, size_t errlen) {
  enum out_format f = out_format(path);
  if (f == OUT_UNKNOWN) {
    snprintf(err, errlen,
             "%s: unknown output format: name it .trace (text) or .atb (binary), optionally "
             "followed by .zst or .gz",
             path);
    return -1;
  }
  struct trace_zip_out *o = trace_zip_create(path, err, errlen);
  if (!o)
    return -1;
  char why[256];
  int r;
  if (f == OUT_TEXT)
    r = tools_write_text(t, meta, trace_zip_write, o, why, sizeof why);
  else if (version == TRACE_BIN_V2)
    r = trace_bin_write_v2(t, meta, trace_zip_write, o, why, sizeof why);
  else
    r = trace_bin_write(t, meta, trace_zip_write, o, why, sizeof why);
  if (r && why[0]) { /* the trace could not be written; a sink failure is close's to tell */
    snprintf(err, errlen, "%s: %s", path, why);
    trace_zip_abandon(o);
    return -1;
  }
  return trace_zip_close(o, err, errlen) || r ? -1 : 0;
}

int tools_write(const struct trace *t, const char *meta, const char *path, char *err,
                size_t errlen) {
  return write_as(t, meta, path, TRACE_BIN_VERSION, err, errlen);
}

/* --- where a trace came from --- */

struct source {
  int binary; /* its version, 0 for text */
  char meta[TRACE_BIN_META_MAX + 1];
};

/* The text's provenance: the comment line right after the "alloctrace 1" header. */
static void text_meta(const char *p, size_t n, char *ret, size_t cap) {
  const char *end = p + n;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    int header = e - p >= 10 && memcmp(p, "alloctrace", 10) == 0;
    p = nl ? nl + 1 : end;
    if (!header)
      continue;
    if (p + 1 < end && p[0] == '#') {
      p += p[1] == ' ' ? 2 : 1;
      nl = memchr(p, '\n', (size_t)(end - p));
      size_t len = (size_t)((nl ? nl : end) - p);
      if (len && p[len - 1] == '\r')
        len--;
      snprintf(ret, cap, "%.*s", (int)len, p);
    }
    return;
  }
}

/* Peeks at the first bytes of path (inflated when compressed). Never fails: a file that
 * cannot be read was already reported by trace_load. */
static void read_source(const char *path, struct source *ret) {
  *ret = (struct source){0};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0)
    return;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
    close(fd);
    return;
  }
  void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED)
    return;
  static char head[TRACE_BIN_HEADER + TRACE_BIN_META_MAX + 8192];
  size_t len = (size_t)st.st_size;
  long n;
  if (trace_zip_is(map, len))
    n = trace_zip_head(map, len, head, sizeof head);
  else {
    n = (long)(len < sizeof head ? len : sizeof head);
    memcpy(head, map, (size_t)n);
  }
  munmap(map, len);
  if (n <= 0)
    return;
  ret->binary = trace_bin_version(head, (size_t)n);
  if (ret->binary)
    trace_bin_meta(head, (size_t)n, ret->meta, sizeof ret->meta);
  else
    text_meta(head, (size_t)n, ret->meta, sizeof ret->meta);
}

/* --- info --- */

#define BUCKETS 65 /* 0, then one per bit length of a 64-bit number */

static unsigned bucket(uint64_t v) {
  unsigned b = 0;
  while (v) {
    b++;
    v >>= 1;
  }
  return b;
}

/* "0", "1", "2..<4", ..., "1K..<2K": the values bucket b holds. */
static void bucket_label(unsigned b, char *buf, size_t n) {
  static const char *unit = " KMGTPE";
  if (b <= 1) {
    snprintf(buf, n, "%u", b);
    return;
  }
  unsigned lo = b - 1, hi = b;
  snprintf(buf, n, "%llu%.1s..<%llu%.1s", 1ull << (lo % 10), lo >= 10 ? unit + lo / 10 : "",
           1ull << (hi % 10), hi >= 10 ? unit + hi / 10 : "");
}

struct info {
  uint64_t sizes[BUCKETS], resizes[BUCKETS], lifetimes[BUCKETS];
  uint64_t bytes_requested, allocs, frees, free_null, realloc_new, realloc_free, aligned_small;
  uint64_t leaked, leaked_bytes;
  uint64_t *per_thread;
};

static int info_scan(const struct trace *t, struct info *in) {
  size_t *born = region_side_alloc((size_t)t->n_slots * sizeof *born);
  uint64_t *size = region_side_alloc((size_t)t->n_slots * sizeof *size);
  uint8_t *live = region_side_alloc(t->n_slots);
  in->per_thread = calloc(t->n_threads ? t->n_threads : 1, sizeof *in->per_thread);
  int r = born && size && live && in->per_thread ? 0 : -1;
  for (size_t i = 0; r == 0 && i < t->n_ops; i++) {
    const struct trace_op *o = &t->ops[i];
    in->per_thread[o->thread]++;
    if (is_alloc(o)) {
      in->allocs++;
      in->sizes[bucket(o->size)]++;
      in->bytes_requested += o->size;
      in->realloc_new += o->kind == OP_MALLOC && o->word == 'r';
      in->aligned_small += o->kind == OP_MALLOC && o->word == 'a';
      born[o->slot] = i;
      size[o->slot] = o->size;
      live[o->slot] = 1;
    } else if (o->kind == OP_REALLOC) {
      in->resizes[bucket(o->size)]++;
      in->bytes_requested += o->size > o->arg ? o->size - o->arg : 0;
      size[o->slot] = o->size;
    } else if (o->kind == OP_FREE && o->slot == 0) {
      in->free_null++;
    } else if (o->kind == OP_FREE) {
      in->frees++;
      in->realloc_free += o->word == 'r';
      in->lifetimes[bucket(i - born[o->slot])]++;
      live[o->slot] = 0;
    }
  }
  for (uint32_t s = 1; r == 0 && s < t->n_slots; s++) {
    in->leaked += live[s];
    in->leaked_bytes += live[s] ? size[s] : 0;
  }
  region_side_free(born, (size_t)t->n_slots * sizeof *born);
  region_side_free(size, (size_t)t->n_slots * sizeof *size);
  region_side_free(live, t->n_slots);
  return r;
}

static double pct(uint64_t part, uint64_t whole) {
  return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

/* One row per bucket from the first to the last that is not empty; b is a second count
 * column (or NULL); never, if not 0, a last row of blocks never freed. */
static void print_histogram(FILE *f, const char *title, const char *unit, const uint64_t *a,
                            const uint64_t *b, const char *b_name, uint64_t never) {
  uint64_t total = never;
  unsigned first = BUCKETS, last = 0;
  for (unsigned i = 0; i < BUCKETS; i++) {
    total += a[i];
    if (a[i] || (b && b[i])) {
      first = i < first ? i : first;
      last = i;
    }
  }
  fprintf(f, "\n%s\n  %-16s %12s %7s %7s", title, unit, "count", "%", "cum %");
  if (b)
    fprintf(f, "  %12s", b_name);
  fputc('\n', f);
  uint64_t cum = 0;
  for (unsigned i = first; i <= last && first < BUCKETS; i++) {
    char label[32];
    bucket_label(i, label, sizeof label);
    cum += a[i];
    fprintf(f, "  %-16s %12llu %7.2f %7.2f", label, (unsigned long long)a[i], pct(a[i], total),
            pct(cum, total));
    if (b)
      fprintf(f, "  %12llu", (unsigned long long)b[i]);
    fputc('\n', f);
  }
  if (never)
    fprintf(f, "  %-16s %12llu %7.2f %7.2f\n", "never freed", (unsigned long long)never,
            pct(never, total), 100.0);
}

static void print_threads(FILE *f, const struct trace *t, const uint64_t *per_thread) {
  fprintf(f, "threads      %u", (unsigned)t->n_threads);
  unsigned shown = 0;
  for (unsigned i = 0; i < t->n_threads && shown < 8; i++) {
    if (!per_thread[i])
      continue;
    fprintf(f, "%s%u: %llu ops", shown ? ", " : " (", i, (unsigned long long)per_thread[i]);
    shown++;
  }
  unsigned more = 0;
  for (unsigned i = 0; i < t->n_threads; i++)
    more += per_thread[i] != 0;
  if (more > shown)
    fprintf(f, ", %u more", more - shown);
  fprintf(f, "%s\n", shown ? ")" : "");
}

int tools_info(FILE *f, const struct trace *t, const char *meta, const char *where) {
  struct info *in = calloc(1, sizeof *in);
  if (!in || info_scan(t, in)) {
    if (in)
      free(in->per_thread);
    free(in);
    return -1;
  }
  fprintf(f, "trace        %s\n", t->path);
  if (meta && meta[0])
    fprintf(f, "source       %s\n", meta);
  fprintf(f,
          "ops          %zu: %llu malloc, %llu free, %llu realloc, %llu calloc, %llu aligned, %llu "
          "reset (the trace's own words)\n",
          t->n_ops, (unsigned long long)t->n_malloc, (unsigned long long)t->n_free,
          (unsigned long long)t->n_realloc, (unsigned long long)t->n_calloc,
          (unsigned long long)t->n_memalign, (unsigned long long)t->n_reset);
  fprintf(f,
          "             of which free(NULL) %llu, realloc(NULL, n) %llu, realloc(p, 0) %llu, "
          "aligned to 16 or less %llu\n",
          (unsigned long long)in->free_null, (unsigned long long)in->realloc_new,
          (unsigned long long)in->realloc_free, (unsigned long long)in->aligned_small);
  print_threads(f, t, in->per_thread);
  fprintf(f, "blocks       %llu allocated, %llu freed, at most %u live at once\n",
          (unsigned long long)in->allocs, (unsigned long long)in->frees,
          (unsigned)(t->n_slots - 1));
  fprintf(f, "never freed  %llu blocks, %llu bytes\n", (unsigned long long)in->leaked,
          (unsigned long long)in->leaked_bytes);
  fprintf(f, "requested    %llu bytes (allocations and realloc growth), mean allocation %.1f\n",
          (unsigned long long)in->bytes_requested,
          in->allocs ? (double)in->bytes_requested / (double)in->allocs : 0.0);
  if (t->n_ops)
    fprintf(f, "peak live    %llu bytes, first reached at %s %u (op %zu)\n",
            (unsigned long long)t->peak_live, where, trace_line(t, t->peak_live_op),
            t->peak_live_op + 1);
  print_histogram(f, "request sizes (allocations; realloc's new size apart)", "bytes", in->sizes,
                  in->resizes, "reallocs", 0);
  print_histogram(f, "lifetimes (ops from allocation to free)", "ops", in->lifetimes, NULL, NULL,
                  in->leaked);
  free(in->per_thread);
  free(in);
  return 0;
}

/* --- the subcommands --- */

static void tools_usage(void) {
  fputs("usage: ./harness convert [--v1 | --v2] IN OUT\n"
        "         converts a trace (text, .rep, binary, or any of them compressed) to OUT:\n"
        "         OUT.trace is text, OUT.atb binary; a .zst or .gz suffix compresses it;\n"
        "         binary is version 1 (compact records) unless --v2 (the ops image:\n"
        "         read into memory as it is, no decoding; larger, the fastest to load)\n"
        "       ./harness info TRACE...\n"
        "         prints a summary: ops, threads, sizes, peak live, lifetimes, leaks\n",
        stderr);
}

static int load(struct trace *t, const char *path) {
  char err[512];
  if (trace_load(t, path, err, sizeof err)) {
    fprintf(stderr, "harness: %s\n", err);
    return -1;
  }
  if (t->warning[0])
    fprintf(stderr, "harness: warning: %s\n", t->warning);
  return 0;
}

static int cmd_convert(int argc, char **argv) {
  int version = TRACE_BIN_VERSION;
  for (; argc > 1 && argv[1][0] == '-' && argv[1][1] == '-'; argc--, argv++) {
    if (strcmp(argv[1], "--v1") != 0 && strcmp(argv[1], "--v2") != 0) {
      fprintf(stderr, "harness: convert: unknown option '%s'\n", argv[1]);
      tools_usage();
      return EXIT_USAGE;
    }
    version = argv[1][3] == '2' ? TRACE_BIN_V2 : TRACE_BIN_VERSION;
  }
  if (argc != 3) {
    tools_usage();
    return EXIT_USAGE;
  }
  char err[512];
  if (out_format(argv[2]) == OUT_UNKNOWN) {
    fprintf(stderr,
            "harness: %s: unknown output format: name it .trace (text) or .atb (binary), "
            "optionally followed by .zst or .gz\n",
            argv[2]);
    return EXIT_USAGE;
  }
  struct trace t;
  if (load(&t, argv[1]))
    return EXIT_INPUT;
  struct source src;
  read_source(argv[1], &src);
  int r = write_as(&t, src.meta, argv[2], version, err, sizeof err);
  trace_free(&t);
  if (r) {
    fprintf(stderr, "harness: %s\n", err);
    return EXIT_OUTPUT;
  }
  return 0;
}

static int cmd_info(int argc, char **argv) {
  if (argc < 2) {
    tools_usage();
    return EXIT_USAGE;
  }
  for (int i = 1; i < argc; i++) {
    struct trace t;
    if (load(&t, argv[i]))
      return EXIT_INPUT;
    struct source src;
    read_source(argv[i], &src);
    if (i > 1)
      putchar('\n');
    /* version 1 numbers its records; version 2 keeps the lines of what it was made from */
    int r = tools_info(stdout, &t, src.meta, src.binary == TRACE_BIN_VERSION ? "record" : "line");
    trace_free(&t);
    if (r) {
      fprintf(stderr, "harness: %s: out of memory\n", argv[i]);
      return EXIT_INPUT;
    }
  }
  if (fflush(stdout) != 0) {
    fprintf(stderr, "harness: writing the summary: %s\n", strerror(errno));
    return EXIT_OUTPUT;
  }
  return 0;
}

int tools_main(int argc, char **argv) {
  if (strcmp(argv[0], "convert") == 0)
    return cmd_convert(argc, argv);
  return cmd_info(argc, argv);
}
