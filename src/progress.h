/*
 * A progress line for long runs: cells done of all, the cell running, time spent and an
 * estimate of the time left, redrawn on standard error at each cell and cleared at the
 * end. It is drawn only when standard error is a terminal: logs and pipes get nothing.
 */
#ifndef PROGRESS_H
#define PROGRESS_H

#include <stdio.h>

struct progress {
  FILE *f;     /* NULL when not drawing */
  int total;   /* cells */
  int done;    /* cells finished */
  double work; /* the whole run's weight: the sum of the cells' */
  double done_work, cell_work;
  double start; /* monotonic seconds */
  int shown;    /* a line is on the terminal */
};

/* Starts a run of `total` cells weighing `work` in all (weights: anything proportional to a
 * cell's expected time, the trace's op count say). Draws nothing unless f is a terminal. */
void progress_start(struct progress *p, FILE *f, int total, double work);

/* Shows the cell about to run. */
void progress_cell(struct progress *p, const char *alloc, const char *params, const char *trace,
                   double work);

/* Clears the line before other output; counts the cell shown as done. */
void progress_cell_done(struct progress *p);

/* Clears the line for good. */
void progress_end(struct progress *p);

#endif
