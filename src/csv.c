/* CSV rows, the atomic rename, and the terminal table. */
#include "csv.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char header[] =
    "allocator,params,trace,status,ops,mallocs,frees,reallocs,callocs,memaligns,failed,threads,"
    "reps,"
    "seconds,seconds_min,seconds_max,spread,ops_per_sec,ns_per_op,peak_live,peak_footprint,"
    "frag1,frag2,frag3,frag4,utilization,internal_frag,touched,base_rss,peak_rss,"
    "malloc_p50_ns,malloc_p90_ns,malloc_p99_ns,malloc_p999_ns,malloc_max_ns,"
    "free_p50_ns,free_p90_ns,free_p99_ns,free_p999_ns,free_max_ns,"
    "realloc_p50_ns,realloc_p90_ns,realloc_p99_ns,realloc_p999_ns,realloc_max_ns,"
    "latency_overhead,timer_ns,counters,message,detections\n";

/* Records how much of the file holds whole rows, or that a write failed. */
static int written(struct csv *c) {
  if (fflush(c->f) == 0 && !ferror(c->f)) {
    c->good = c->partial ? ftell(c->f) : 0;
    return 0;
  }
  c->failed = 1;
  return -1;
}

int csv_open(struct csv *c, const char *path) {
  *c = (struct csv){0};
  struct stat st;
  int special = path && stat(path, &st) == 0 && !S_ISREG(st.st_mode);
  if (special && S_ISDIR(st.st_mode)) {
    errno = EISDIR;
    return -1;
  }
  if (!path || strcmp(path, "-") == 0) {
    c->f = stdout;
  } else if (special) { /* never rename over /dev/null or a FIFO */
    c->f = fopen(path, "w");
    if (!c->f)
      return -1;
  } else {
    size_t n = strlen(path) + sizeof ".partial";
    c->path = strdup(path);
    c->partial = malloc(n);
    if (!c->path || !c->partial)
      return -1;
    snprintf(c->partial, n, "%s.partial", path);
    c->f = fopen(c->partial, "w");
    if (!c->f)
      return -1;
  }
  fputs(header, c->f);
  if (written(c) == 0)
    return 0;
  int e = errno;
  if (c->partial) { /* not even the header: leave nothing behind */
    fclose(c->f);
    unlink(c->partial);
    c->f = NULL;
  }
  errno = e;
  return -1;
}

/* A text field, quoted when it holds a comma, a quote or a newline, then end. */
static void text(FILE *f, const char *s, char end) {
  if (!strpbrk(s, ",\"\n\r")) {
    fputs(s, f);
  } else {
    fputc('"', f);
    for (; *s; s++) {
      if (*s == '"')
        fputc('"', f);
      fputc(*s == '\n' || *s == '\r' ? ' ' : *s, f);
    }
    fputc('"', f);
  }
  fputc(end, f);
}

static void field(FILE *f, const char *s) {
  text(f, s, ',');
}

static void num(FILE *f, int have, double v, const char *fmt) {
  if (have && !isnan(v))
    fprintf(f, fmt, v);
  fputc(',', f);
}

static void counters(FILE *f, const struct alloc_stats *s) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "meta_bytes=%zu", s->meta_bytes);
  for (int i = 0; i < s->n_counters && i < ALLOC_MAX_COUNTERS && n > 0 && (size_t)n < sizeof buf;
       i++)
    n += snprintf(buf + n, sizeof buf - (size_t)n, ";%s=%llu", s->counter[i].name,
                  (unsigned long long)s->counter[i].value);
  field(f, buf);
}

/* Percentiles per kind (empty when the kind was never sampled), then the latency pass's
 * extra time over the median timed run: the cost of sampling. */
static void latency_columns(FILE *f, const struct cell_result *r, const struct metrics *mt) {
  for (int k = 0; k < LAT_KINDS; k++)
    for (int i = 0; i < LAT_POINTS; i++)
      num(f, mt->has_timing && r->lat_count[k], r->lat[k][i], "%.1f");
  int have = mt->has_timing && r->lat_seconds > 0 && mt->median > 0;
  num(f, have, have ? r->lat_seconds / mt->median - 1 : 0, "%.4f");
  num(f, have, r->timer_ns, "%.2f");
}

int csv_row(struct csv *c, const char *alloc, const char *params, const struct trace *t,
            const struct cell_result *r, const struct metrics *mt, int in_region) {
  FILE *f = c->f;
  int ok = r->status == CELL_OK, tm = mt->has_timing, mem = mt->has_memory;
  field(f, alloc);
  field(f, params);
  field(f, t->path);
  field(f, runner_status_name(r->status));
  fprintf(f, "%zu,%llu,%llu,%llu,%llu,%llu,", t->n_ops, (unsigned long long)t->n_malloc,
          (unsigned long long)t->n_free, (unsigned long long)t->n_realloc,
          (unsigned long long)t->n_calloc, (unsigned long long)t->n_memalign);
  num(f, ok, (double)r->meas.failed, "%.0f");
  num(f, tm, r->threads, "%.0f");
  num(f, tm, r->reps, "%.0f");
  num(f, tm, mt->median, "%.9f");
  num(f, tm, mt->min, "%.9f");
  num(f, tm, mt->max, "%.9f");
  num(f, tm, mt->spread, "%.4f");
  num(f, tm, mt->ops_per_sec, "%.0f");
  num(f, tm, mt->ns_per_op, "%.3f");
  fprintf(f, "%llu,", (unsigned long long)t->peak_live);
  num(f, mem, (double)r->meas.peak_footprint, "%.0f");
  num(f, mem, mt->frag1, "%.6f");
  num(f, mem, mt->frag2, "%.6f");
  num(f, mem, mt->frag3, "%.6f");
  num(f, mem, mt->frag4, "%.6f");
  num(f, mem, mt->utilization, "%.6f");
  num(f, mem, (double)r->meas.internal_frag, "%.0f");
  num(f, mem && in_region, (double)r->meas.touched, "%.0f");
  num(f, ok, (double)r->base_rss, "%.0f");
  num(f, ok, (double)r->peak_rss, "%.0f");
  latency_columns(f, r, mt);
  if (ok)
    counters(f, &r->meas.final_stats);
  else
    fputc(',', f);
  /* A hardened module's detections: the first one, with its trace line, is the message. */
  char found[sizeof r->msg];
  if (ok && r->meas.detections)
    replay_detection_text(alloc, t, &r->meas, found, sizeof found);
  text(f, ok && r->meas.detections ? found : r->msg, ',');
  if (ok)
    fprintf(f, "%llu", (unsigned long long)r->meas.detections);
  fputc('\n', f);
  return written(c);
}

int csv_close(struct csv *c) {
  int r = 0;
  if (c->f && c->partial) {
    r = c->failed | fflush(c->f) | fsync(fileno(c->f));
    r |= fclose(c->f);
    /* After a failed write (a full disk), FILE gets the header and the rows written whole. */
    if (c->failed && truncate(c->partial, c->good) != 0)
      c->failed = 0; /* then FILE.partial stays, torn row included */
    if ((r == 0 || c->failed) && rename(c->partial, c->path) != 0)
      r = -1;
  } else if (c->f && c->f != stdout) {
    r = fclose(c->f);
  } else if (c->f) {
    r = fflush(c->f);
  }
  free(c->path);
  free(c->partial);
  *c = (struct csv){0};
  return r ? -1 : 0;
}

int csv_series_header(FILE *f) {
  fputs("allocator,params,trace,op,live,footprint\n", f);
  return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}

int csv_series_rows(FILE *f, const char *alloc, const char *params, const struct trace *t,
                    const struct cell_result *r) {
  if (r->status != CELL_OK)
    return 0;
  for (uint32_t i = 0; i < r->meas.n_series; i++) {
    const struct replay_point *p = &r->meas.series[i];
    field(f, alloc);
    field(f, params);
    field(f, t->path);
    fprintf(f, "%llu,%llu,%llu\n", (unsigned long long)p->op, (unsigned long long)p->live,
            (unsigned long long)p->footprint);
  }
  return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}

/* Bytes in a short human unit. */
static const char *human(double v, char *buf, size_t n) {
  const char *unit[] = {"B", "K", "M", "G", "T"};
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  snprintf(buf, n, u ? "%.1f%s" : "%.0f%s", v, unit[u]);
  return buf;
}

void csv_table_header(FILE *f) {
  fprintf(f, "%-28s %-22s %-12s %9s %9s %8s %8s %8s %7s\n", "allocator", "trace", "status", "ns/op",
          "Mops/s", "live", "fp", "frag4", "failed");
}

void csv_table_row(FILE *f, const char *alloc, const char *params, const struct trace *t,
                   const struct cell_result *r, const struct metrics *mt) {
  char name[64], a[16], b[16];
  snprintf(name, sizeof name, params[0] ? "%s:%s" : "%s", alloc, params);
  const char *base = strrchr(t->path, '/');
  base = base ? base + 1 : t->path;
  if (r->status != CELL_OK) {
    fprintf(f, "%-28.28s %-22.22s %-12s %s\n", name, base, runner_status_name(r->status), r->msg);
    return;
  }
  fprintf(f, "%-28.28s %-22.22s %-12s %9.2f %9.2f %8s %8s %8.3f %7llu\n", name, base, "ok",
          mt->ns_per_op, mt->ops_per_sec / 1e6, human((double)t->peak_live, a, sizeof a),
          human((double)r->meas.peak_footprint, b, sizeof b), mt->frag4,
          (unsigned long long)r->meas.failed);
  if (r->meas.detections) {
    char found[sizeof r->msg];
    replay_detection_text(name, t, &r->meas, found, sizeof found);
    fprintf(f, "harness: %s\n", found);
  }
}
