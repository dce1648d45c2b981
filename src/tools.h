/*
 * The subcommands that work on traces rather than run them: `harness convert IN OUT` and
 * `harness info TRACE...`, dispatched from main.c; and the text trace writer.
 */
#ifndef TOOLS_H
#define TOOLS_H

#include <stdio.h>

#include "trace.h"
#include "trace_bin.h"

/* Runs a subcommand: argv[0] is "convert" or "info". Prints its own errors (as main does)
 * and returns the exit code (cli.h). */
int tools_main(int argc, char **argv);

/* Writes t (as trace_load made it) as an "alloctrace 1" text trace through put, meta (or
 * NULL) as a comment after the header; each allocation gets a new id. Returns 0, or -1
 * with err set (empty when the sink failed). */
int tools_write_text(const struct trace *t, const char *meta, trace_bin_sink put, void *ctx,
                     char *err, size_t errlen);

/* Writes t to path: binary when the name ends in .atb, text when in .trace, either one
 * followed by .zst or .gz to compress. Returns 0, or -1 with "PATH: problem" in err. */
int tools_write(const struct trace *t, const char *meta, const char *path, char *err,
                size_t errlen);

/* Prints `harness info`'s summary of t to f; meta is the provenance text (or ""), where
 * says how ops are numbered ("line", or "record" for binary traces). Returns 0, or -1 if
 * out of memory. */
int tools_info(FILE *f, const struct trace *t, const char *meta, const char *where);

#endif
