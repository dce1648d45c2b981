/* The terminal progress line. */
#include "progress.h"

#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The terminal's width: a line that wraps could not be cleared with one carriage return. */
static int columns(FILE *f) {
  struct winsize ws;
  if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  return 80;
}

static void duration(char *buf, size_t n, double s) {
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else if (t >= 60)
    snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
  else
    snprintf(buf, n, "%lds", t);
}

void progress_start(struct progress *p, FILE *f, int total, double work) {
  *p = (struct progress){.total = total, .work = work, .start = now()};
  if (f && isatty(fileno(f)))
    p->f = f;
}

static void clear(struct progress *p) {
  if (p->f && p->shown) {
    fputs("\r\033[K", p->f);
    fflush(p->f);
  }
  p->shown = 0;
}

void progress_cell(struct progress *p, const char *alloc, const char *params, const char *trace,
                   double work) {
  p->cell_work = work;
  if (!p->f)
    return;
  double spent = now() - p->start;
  char el[32], left[48] = "";
  duration(el, sizeof el, spent);
  /* Time per unit of work so far, times the work left; shown once a cell has finished. */
  if (p->done_work > 0 && p->work > p->done_work) {
    char d[32];
    duration(d, sizeof d, spent / p->done_work * (p->work - p->done_work));
    snprintf(left, sizeof left, ", about %s left", d);
  }
  const char *base = strrchr(trace, '/');
  char line[512];
  snprintf(line, sizeof line, "[%d/%d] %s%s%s on %s (%s spent%s)", p->done + 1, p->total, alloc,
           params[0] ? ":" : "", params, base ? base + 1 : trace, el, left);
  int width = columns(p->f) - 1;
  if (width > 0 && (size_t)width < strlen(line))
    line[width] = '\0';
  clear(p);
  fprintf(p->f, "%s", line);
  fflush(p->f);
  p->shown = 1;
}

void progress_cell_done(struct progress *p) {
  clear(p);
  p->done++;
  p->done_work += p->cell_work;
  p->cell_work = 0;
}

void progress_end(struct progress *p) {
  clear(p);
}
