/*
 * Experiment files (--config FILE): a YAML mapping of settings that fill the same struct cli
 * the command line fills, as if they were options given where --config stands. Only this
 * file's code includes libyaml.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>

#include "cli.h"

/* The plots an experiment may ask for (scripts/plots draws them), NULL-terminated. */
extern const char *const cfg_plot_names[];

/* What config files own for a struct cli: strings, the trace list, and whether the module
 * list came from a file (a later --alloc then replaces it instead of adding to it). */
struct cfg_store {
  char **str;
  int n_str, cap_str;
  char **traces;
  int n_traces, cap_traces;
  int allocs_from_file;
};

/* Reads the experiment file at path into c. Returns 0, or -1 with
 * "FILE:LINE:COL: problem" in err (or "FILE: problem" when the file cannot be read). */
int cfg_load(struct cli *c, const char *path, char *err, size_t errlen);

/* Called before a command-line --alloc: drops the module list a file gave, once. */
void cfg_before_alloc(struct cli *c);

/* Adds the command line's traces after the files' and points c->traces at the whole list
 * (a path given twice runs once). Returns 0, or -1 when out of memory. */
int cfg_add_traces(struct cli *c, char **paths, int n, char *err, size_t errlen);

/* Frees what config files own (safe when no file was read). */
void cfg_free(struct cli *c);

#endif
