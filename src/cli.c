/* Command-line parsing, --list and --help. */
#include "cli.h"

#include "config.h"
#include "runner.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_usage(void) {
  puts("usage: ./harness [options] TRACE...\n"
       "       ./harness convert IN OUT     (a trace to text .trace or binary .atb, .zst/.gz)\n"
       "       ./harness info TRACE...      (ops, threads, sizes, peak live, lifetimes)\n"
       "Replays allocation traces against allocator modules and writes one CSV row per\n"
       "(allocator, trace).\n\n"
       "  --config=FILE    an experiment file (YAML): its settings apply as if given here;\n"
       "                   later options override them, traces given here are added\n"
       "  --alloc=SPEC     modules to run: NAME[:key=value,...], a comma list, or 'all'\n"
       "                   (repeatable; default all)\n"
       "  --list           list the modules and their parameters\n"
       "  --csv=FILE       write the CSV to FILE (default: standard output)\n"
       "  --check          verify every block the modules return (a checked pass)\n"
       "  --reps=N         timed repetitions per cell, median reported (default 5)\n"
       "  --warmup=N       untimed repetitions first (default 1)\n"
       "  --region=SIZE    bytes of the shared region, K/M/G/T suffix (default 1G)\n"
       "  --timeout=SEC    kill a cell after SEC seconds (default 600, 0 for none)\n"
       "  --sample=N       latency pass: time every Nth op alone (default 256, 0: no pass)\n"
       "  --series=FILE    write live and footprint about 1000 times per cell to FILE\n"
       "  --pin=CPU        run each cell on that CPU only\n"
       "  --no-fork        run cells in this process (debugging; no crash isolation)\n"
       "  --serial         replay every trace on one thread, even for thread-safe modules\n"
       "  --quiet          no table on standard error\n"
       "  --help           this text");
}

void cli_list(void) {
  for (int i = 0; alloc_registry[i]; i++) {
    const struct alloc_methods *m = alloc_registry[i];
    printf("%-12s %s%s\n", m->name, m->summary,
           m->flags & ALLOC_OUTSIDE_REGION ? " (outside the region)" : "");
    for (const struct alloc_param *p = m->params; p && p->key; p++)
      printf("  %-10s default %-8s %s\n", p->key, p->def, p->help);
  }
}

static int add_module(struct cli *c, const char *name, char *err, size_t errlen) {
  if (c->n_alloc == CLI_MAX_ALLOCS) {
    snprintf(err, errlen, "--alloc: more than %d modules", CLI_MAX_ALLOCS);
    return -1;
  }
  const struct alloc_methods *m = alloc_find(name);
  if (!m) {
    snprintf(err, errlen, "--alloc: unknown module '%s' (see ./harness --list)", name);
    return -1;
  }
  struct cli_alloc *a = &c->alloc[c->n_alloc++];
  *a = (struct cli_alloc){.m = m, .spec = calloc(1, 1)};
  return a->spec ? 0 : -1;
}

static int add_param(struct cli *c, const char *kv, char *err, size_t errlen) {
  if (c->n_alloc == 0) {
    snprintf(err, errlen, "--alloc: parameter '%s' comes before any module name", kv);
    return -1;
  }
  struct cli_alloc *a = &c->alloc[c->n_alloc - 1];
  size_t n = strlen(a->spec), k = strlen(kv);
  char *s = realloc(a->spec, n + k + 2);
  if (!s)
    return -1;
  if (n)
    s[n++] = ',';
  memcpy(s + n, kv, k + 1);
  a->spec = s;
  return 0;
}

/* Parses the collected key=value list of the last module and names its parameters. */
static int finish_module(struct cli_alloc *a, char *err, size_t errlen) {
  if (alloc_args_parse(a->m, a->spec, ',', &a->args, err, errlen))
    return -1;
  size_t n = 0;
  for (int i = 0; i < a->args.n && n < sizeof a->params; i++)
    n += (size_t)snprintf(a->params + n, sizeof a->params - n, "%s%s=%s", i ? "," : "",
                          a->args.key[i], a->args.val[i]);
  return 0;
}

static int add_token(struct cli *c, char *tok, char *err, size_t errlen) {
  char *colon = strchr(tok, ':');
  if (colon)
    *colon = '\0';
  if (!colon && strchr(tok, '='))
    return add_param(c, tok, err, errlen);
  if (strcmp(tok, "all") == 0 && !colon) {
    for (int i = 0; alloc_registry[i]; i++)
      if (add_module(c, alloc_registry[i]->name, err, errlen))
        return -1;
    return 0;
  }
  if (!*tok) {
    snprintf(err, errlen, "--alloc: empty module name");
    return -1;
  }
  if (add_module(c, tok, err, errlen))
    return -1;
  return colon && colon[1] ? add_param(c, colon + 1, err, errlen) : 0;
}

int cli_parse_alloc(struct cli *c, const char *value, char *err, size_t errlen) {
  char *copy = strdup(value);
  if (!copy)
    return -1;
  int start = c->n_alloc, r = 0;
  for (char *save, *tok = strtok_r(copy, ",", &save); tok && !r; tok = strtok_r(NULL, ",", &save))
    r = add_token(c, tok, err, errlen);
  for (int i = start; i < c->n_alloc && !r; i++)
    r = finish_module(&c->alloc[i], err, errlen);
  if (!r && c->n_alloc == start) {
    snprintf(err, errlen, "--alloc: no module named in '%s'", value);
    r = -1;
  }
  free(copy);
  return r;
}

static int parse_count(const char *opt, const char *v, int lo, int hi, int *ret, char *err,
                       size_t errlen) {
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || end == v || *end || n < lo || n > hi) {
    snprintf(err, errlen, "--%s: '%s' is not a whole number from %d to %d", opt, v, lo, hi);
    return -1;
  }
  *ret = (int)n;
  return 0;
}

/* Digits with an optional K, M, G or T suffix, from 1M to 64T. */
static int parse_region(const char *v, size_t *ret, char *err, size_t errlen) {
  static const char units[] = "KMGT";
  char *end;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
  unsigned shift = u ? 10 * (unsigned)(u - units + 1) : 0;
  if (u)
    end++;
  if (errno || end == v || strchr(v, '-') || *end || n > (1ull << 46) >> shift ||
      n << shift < 1u << 20) {
    snprintf(err, errlen, "--region: '%s' is not a size from 1M to 64T (K, M, G, T suffixes)", v);
    return -1;
  }
  *ret = (size_t)(n << shift);
  return 0;
}

static int parse_timeout(const char *v, double *ret, char *err, size_t errlen) {
  char *end;
  errno = 0;
  *ret = strtod(v, &end);
  if (errno || end == v || *end || !(*ret >= 0) || *ret > 1e6) {
    snprintf(err, errlen, "--timeout: '%s' is not a number of seconds from 0 to 1e6", v);
    return -1;
  }
  return 0;
}

enum {
  OPT_CSV = 256,
  OPT_REPS,
  OPT_WARMUP,
  OPT_REGION,
  OPT_TIMEOUT,
  OPT_NOFORK,
  OPT_SERIAL,
  OPT_SAMPLE,
  OPT_SERIES,
  OPT_PIN,
  OPT_CONFIG,
};

static int apply(struct cli *c, int opt, const char *arg, char *err, size_t errlen) {
  switch (opt) {
  case 'a':
    cfg_before_alloc(c); /* the first --alloc after --config replaces the file's modules */
    return cli_parse_alloc(c, arg, err, errlen);
  case OPT_CONFIG:
    return cfg_load(c, arg, err, errlen);
  case OPT_CSV:
    c->csv = arg;
    return 0;
  case OPT_REPS:
    return parse_count("reps", arg, 1, RUNNER_MAX_REPS, &c->reps, err, errlen);
  case OPT_WARMUP:
    return parse_count("warmup", arg, 0, 100, &c->warmup, err, errlen);
  case OPT_REGION:
    return parse_region(arg, &c->region, err, errlen);
  case OPT_TIMEOUT:
    return parse_timeout(arg, &c->timeout, err, errlen);
  case OPT_NOFORK:
    c->fork = 0;
    return 0;
  case OPT_SERIAL:
    c->serial = 1;
    return 0;
  case OPT_SAMPLE:
    return parse_count("sample", arg, 0, 1 << 20, &c->sample, err, errlen);
  case OPT_SERIES:
    c->series = arg;
    return 0;
  case OPT_PIN:
    c->pin = 1;
    return parse_count("pin", arg, 0, CPU_SETSIZE - 1, &c->pin_cpu, err, errlen);
  case 'c':
    c->check = 1;
    return 0;
  case 'q':
    c->quiet = 1;
    return 0;
  case 'l':
    c->list = 1;
    return 0;
  }
  return -1;
}

int cli_apply_option(struct cli *c, const char *name, const char *value, char *err, size_t errlen) {
  static const struct {
    const char *name;
    int opt;
  } valued[] = {{"reps", OPT_REPS},       {"warmup", OPT_WARMUP}, {"region", OPT_REGION},
                {"timeout", OPT_TIMEOUT}, {"sample", OPT_SAMPLE}, {"pin", OPT_PIN}};
  for (size_t i = 0; i < sizeof valued / sizeof valued[0]; i++)
    if (strcmp(valued[i].name, name) == 0)
      return apply(c, valued[i].opt, value, err, errlen);
  snprintf(err, errlen, "no option '%s'", name);
  return -1;
}

int cli_parse(struct cli *c, int argc, char **argv, char *err, size_t errlen) {
  static const struct option opts[] = {{"alloc", required_argument, 0, 'a'},
                                       {"csv", required_argument, 0, OPT_CSV},
                                       {"reps", required_argument, 0, OPT_REPS},
                                       {"warmup", required_argument, 0, OPT_WARMUP},
                                       {"region", required_argument, 0, OPT_REGION},
                                       {"timeout", required_argument, 0, OPT_TIMEOUT},
                                       {"no-fork", no_argument, 0, OPT_NOFORK},
                                       {"serial", no_argument, 0, OPT_SERIAL},
                                       {"sample", required_argument, 0, OPT_SAMPLE},
                                       {"series", required_argument, 0, OPT_SERIES},
                                       {"pin", required_argument, 0, OPT_PIN},
                                       {"config", required_argument, 0, OPT_CONFIG},
                                       {"check", no_argument, 0, 'c'},
                                       {"quiet", no_argument, 0, 'q'},
                                       {"list", no_argument, 0, 'l'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  *c = (struct cli){
      .region = 1ull << 30, .reps = 5, .warmup = 1, .fork = 1, .timeout = 600, .sample = 256};
  opterr = 0;
  optind = 1;
  int opt;
  while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (opt == 'h') {
      cli_usage();
      exit(0);
    }
    if (opt == '?') {
      snprintf(err, errlen, "unknown or incomplete option '%s' (see ./harness --help)",
               argv[optind - 1]);
      return -1;
    }
    if (apply(c, opt, optarg, err, errlen))
      return -1;
  }
  c->traces = argv + optind;
  c->n_traces = argc - optind;
  if (c->cfg && cfg_add_traces(c, argv + optind, argc - optind, err, errlen))
    return -1;
  if (c->list)
    return 0;
  if (c->n_traces == 0) {
    snprintf(err, errlen, "no trace given (usage: ./harness [options] TRACE...)");
    return -1;
  }
  if (c->n_alloc == 0)
    return cli_parse_alloc(c, "all", err, errlen);
  return 0;
}

void cli_free(struct cli *c) {
  for (int i = 0; i < c->n_alloc; i++)
    free(c->alloc[i].spec);
  c->n_alloc = 0;
  cfg_free(c);
}
