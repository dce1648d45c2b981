/* The command line: options, the --alloc selection and the trace list. */
#ifndef CLI_H
#define CLI_H

#include <stddef.h>

#include "alloc.h"

#define CLI_MAX_ALLOCS 128

/* One selected module instance: --alloc=NAME:key=value,... */
struct cli_alloc {
  const struct alloc_methods *m;
  struct alloc_args args;
  char *spec;       /* owns the strings args points into */
  char params[512]; /* every parameter, defaults included: "fit=best,order=lifo" */
  /* "FILE:LINE:COL" of the --config entry that named it, or NULL */
  const char *origin;
};

struct cfg_store; /* what --config files own (config.h) */

struct cli {
  struct cli_alloc alloc[CLI_MAX_ALLOCS];
  int n_alloc;
  char **traces;
  int n_traces;
  const char *csv;
  size_t region;
  int check, reps, warmup, fork, quiet, list, pin, pin_cpu;
  int serial;         /* --serial: trace threads replay in order on one thread */
  int sample;         /* latency: every sample-th op; 0 for none */
  const char *series; /* --series FILE, or NULL */
  double timeout;
  struct cfg_store *cfg; /* NULL unless --config was given */
};

/* Exit codes, documented in the README. */
enum {
  EXIT_CELL_FAILED = 1, /* a cell crashed, timed out, failed its check or its init */
  EXIT_USAGE = 2,       /* a bad command line */
  EXIT_INPUT = 3,       /* a trace that cannot be read or is malformed */
  EXIT_OUTPUT = 4,      /* results could not be written */
  EXIT_REGION = 5,      /* a trace needs more live bytes than the region holds */
  EXIT_INTERRUPTED = 130,
};

/* Parses argv. Returns 0, or -1 with the problem in err. */
int cli_parse(struct cli *ret, int argc, char **argv, char *err, size_t errlen);

/* Parses one --alloc value into ret (appending). Returns 0 or -1 with err. */
int cli_parse_alloc(struct cli *ret, const char *value, char *err, size_t errlen);

/* Applies one option that takes a value, by its long name ("reps", "region", ...), with the
 * command line's checks; --config's settings go through it. Returns 0 or -1 with err. */
int cli_apply_option(struct cli *ret, const char *name, const char *value, char *err,
                     size_t errlen);

void cli_usage(void);
void cli_list(void);
void cli_free(struct cli *c);

#endif
