/*
 * Results: one CSV row per cell, written and flushed as the cell finishes, into FILE.partial
 * that replaces FILE by rename when the run ends (or is interrupted), so completed rows are
 * never lost and FILE is never half-written. Also the human-readable table for the terminal.
 */
#ifndef CSV_H
#define CSV_H

#include <stdio.h>

#include "metrics.h"

struct csv {
  FILE *f;
  char *path, *partial; /* NULL when writing to stdout; partial NULL for a device or FIFO */
  long good;            /* bytes of whole rows written: what survives a failed write */
  int failed;
};

/* Opens path ("-" or NULL for stdout) and writes the header. A path that exists and is not a
 * regular file (a device, a FIFO) is written directly; a directory is an error (EISDIR).
 * Returns 0 or -1 (errno). */
int csv_open(struct csv *c, const char *path);

/* Writes one row. Returns 0 or -1 (errno: a full disk, say); after a failure, csv_close
 * cuts the file back to the rows written whole. */
int csv_row(struct csv *c, const char *alloc, const char *params, const struct trace *t,
            const struct cell_result *r, const struct metrics *mt, int in_region);

/* Flushes, closes and renames FILE.partial over FILE. Returns 0 or -1 (errno). */
int csv_close(struct csv *c);

/* The time series file (--series): allocator,params,trace,op,live,footprint. Rows are
 * flushed per cell. Returns 0 or -1 (errno). */
int csv_series_header(FILE *f);
int csv_series_rows(FILE *f, const char *alloc, const char *params, const struct trace *t,
                    const struct cell_result *r);

void csv_table_header(FILE *f);
void csv_table_row(FILE *f, const char *alloc, const char *params, const struct trace *t,
                   const struct cell_result *r, const struct metrics *mt);

#endif
