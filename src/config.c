/*
 * Experiment files. libyaml loads the whole document into a node tree (each node keeps its
 * position), then every setting is checked against its node, so a problem is reported at
 * its own line and column. Values that the command line also takes go through the command
 * line's own checks (cli_apply_option, cli_parse_alloc): one rule for both.
 */
#include "config.h"

#include <errno.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

const char *const cfg_plot_names[] = {"throughput", "fragmentation", "rss",
                                      "series",     "latency",       NULL};

struct ctx {
  struct cli *c;
  struct cfg_store *st;
  const char *path;
  yaml_document_t *doc;
  char *err;
  size_t errlen;
  int allocs_started; /* this file has named a module */
};

/* Writes "FILE:LINE:COL: problem" at mark (libyaml counts lines and columns from 0). */
static int fail_at(struct ctx *x, yaml_mark_t mark, const char *fmt, ...) {
  int n = snprintf(x->err, x->errlen, "%s:%zu:%zu: ", x->path, mark.line + 1, mark.column + 1);
  if (n < 0 || (size_t)n >= x->errlen)
    return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(x->err + n, x->errlen - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

#define FAIL(x, node, ...) fail_at((x), (node)->start_mark, __VA_ARGS__)

static char *keep(struct cfg_store *st, const char *s) {
  if (st->n_str == st->cap_str) {
    int cap = st->cap_str ? 2 * st->cap_str : 16;
    char **p = realloc(st->str, (size_t)cap * sizeof *p);
    if (!p)
      return NULL;
    st->str = p;
    st->cap_str = cap;
  }
  char *copy = strdup(s);
  if (copy)
    st->str[st->n_str++] = copy;
  return copy;
}

static const char *kind_name(const yaml_node_t *n) {
  switch (n->type) {
  case YAML_SEQUENCE_NODE:
    return "a list";
  case YAML_MAPPING_NODE:
    return "a mapping";
  default:
    return "a value";
  }
}

static const char *text_of(const yaml_node_t *n) {
  return (const char *)n->data.scalar.value;
}

/* A plain empty, "~" or "null" scalar: YAML's null. */
static int is_null(const yaml_node_t *n) {
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return 0;
  const char *s = text_of(n);
  return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
         strcmp(s, "NULL") == 0;
}

/* The text of a scalar setting, or NULL after an error naming what was expected. */
static const char *scalar(struct ctx *x, const char *key, const yaml_node_t *n, const char *want) {
  if (n->type != YAML_SCALAR_NODE) {
    FAIL(x, n, "%s: expected %s, found %s", key, want, kind_name(n));
    return NULL;
  }
  if (is_null(n)) {
    FAIL(x, n, "%s: no value (expected %s)", key, want);
    return NULL;
  }
  if (strlen(text_of(n)) != n->data.scalar.length) {
    FAIL(x, n, "%s: the value holds a NUL byte", key);
    return NULL;
  }
  return text_of(n);
}

/* The items of a setting that takes one value or a list of them. */
static int items(const yaml_node_t *n, yaml_node_item_t **ret_first, int *ret_n) {
  if (n->type != YAML_SEQUENCE_NODE)
    return -1;
  *ret_first = n->data.sequence.items.start;
  *ret_n = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
  return 0;
}

struct setting;
typedef int set_fn(struct ctx *x, const struct setting *s, yaml_node_t *v);

struct setting {
  const char *key;
  set_fn *set;
  const char *option; /* the command-line option that takes the same value */
  size_t field;       /* for flags and paths: where in struct cli */
};

static int set_number(struct ctx *x, const struct setting *s, yaml_node_t *v) {
  const char *val = scalar(x, s->key, v, "a number");
  if (!val)
    return -1;
  char msg[256];
  if (cli_apply_option(x->c, s->option, val, msg, sizeof msg) == 0)
    return 0;
  /* The command line's message names the option ("--reps: ..."); here it is a setting. */
  return FAIL(x, v, "%s", strncmp(msg, "--", 2) == 0 ? msg + 2 : msg);
}

static int set_flag(struct ctx *x, const struct setting *s, yaml_node_t *v) {
  const char *val = scalar(x, s->key, v, "true or false");
  if (!val)
    return -1;
  int *flag = (int *)((char *)x->c + s->field);
  if (!strcmp(val, "true") || !strcmp(val, "True") || !strcmp(val, "TRUE"))
    *flag = 1;
  else if (!strcmp(val, "false") || !strcmp(val, "False") || !strcmp(val, "FALSE"))
    *flag = 0;
  else
    return FAIL(x, v, "%s: expected true or false, found '%s'", s->key, val);
  return 0;
}

static int set_path(struct ctx *x, const struct setting *s, yaml_node_t *v) {
  const char *val = scalar(x, s->key, v, "a file name");
  if (!val)
    return -1;
  char *p = keep(x->st, val);
  if (!p)
    return FAIL(x, v, "out of memory");
  *(const char **)((char *)x->c + s->field) = p;
  return 0;
}

static int set_text(struct ctx *x, const struct setting *s, yaml_node_t *v) {
  return scalar(x, s->key, v, "a text") ? 0 : -1;
}

/* Calls fn on the node, or on each item of a list (one value stands for a list of one). */
static int each(struct ctx *x, const struct setting *s, yaml_node_t *v,
                int (*fn)(struct ctx *, const struct setting *, yaml_node_t *)) {
  yaml_node_item_t *it;
  int n;
  if (items(v, &it, &n))
    return fn(x, s, v);
  if (n == 0)
    return FAIL(x, v, "%s: the list is empty", s->key);
  for (int i = 0; i < n; i++)
    if (fn(x, s, yaml_document_get_node(x->doc, it[i])))
      return -1;
  return 0;
}

static int plot(struct ctx *x, const struct setting *s, yaml_node_t *v) {
  const char *val = scalar(x, s->key, v, "a plot name");
  if (!val)
    return -1;
  if (strcmp(val, "all") == 0)
    return 0;
  for (int i = 0; cfg_plot_names[i]; i++)
    if (strcmp(val, cfg_plot_names[i]) == 0)
      return 0;
  return FAIL(x, v,
              "%s: unknown plot '%s' (known: all, throughput, fragmentation, rss, series, latency)",
              s->key, val);
}

static int set_plots(struct ctx *x, const struct setting *s, yaml_node_t *v) {
  return each(x, s, v, plot);
}

static int add_trace(struct cfg_store *st, char *path) {
  for (int i = 0; i < st->n_traces; i++)
    if (strcmp(st->traces[i], path) == 0)
      return 0;
  if (st->n_traces == st->cap_traces) {
    int cap = st->cap_traces ? 2 * st->cap_traces : 16;
    char **p = realloc(st->traces, (size_t)cap * sizeof *p);
    if (!p)
      return -1;
    st->traces = p;
    st->cap_traces = cap;
  }
  st->traces[st->n_traces++] = path;
  return 0;
}

/* One glob, expanded now, relative to the current directory, in sorted order. */
static int trace_glob(struct ctx *x, const struct setting *s, yaml_node_t *v) {
  const char *pattern = scalar(x, s->key, v, "a file name or a glob");
  if (!pattern)
    return -1;
  glob_t g;
  int r = glob(pattern, GLOB_ERR | GLOB_BRACE | GLOB_TILDE, NULL, &g);
  if (r == GLOB_NOMATCH)
    return FAIL(x, v, "%s: no file matches '%s'", s->key, pattern);
  if (r != 0)
    return FAIL(x, v, "%s: cannot expand '%s': %s", s->key, pattern,
                r == GLOB_NOSPACE ? "out of memory" : "a directory cannot be read");
  for (size_t i = 0; i < g.gl_pathc && r == 0; i++) {
    char *p = keep(x->st, g.gl_pathv[i]);
    r = !p || add_trace(x->st, p);
  }
  globfree(&g);
  return r ? FAIL(x, v, "out of memory") : 0;
}

static int set_traces(struct ctx *x, const struct setting *s, yaml_node_t *v) {
  return each(x, s, v, trace_glob);
}

/* The first module of a file replaces the modules named before it (later wins). */
static void start_allocs(struct ctx *x) {
  if (x->allocs_started)
    return;
  for (int i = 0; i < x->c->n_alloc; i++)
    free(x->c->alloc[i].spec);
  x->c->n_alloc = 0;
  x->allocs_started = 1;
}

/* Adds the instances spec names; each remembers where, for errors found later (a value
 * the module's init refuses is found when the harness tries each module, before running). */
static int add_spec(struct ctx *x, yaml_node_t *at, const char *spec) {
  char msg[512];
  start_allocs(x);
  int first = x->c->n_alloc;
  if (cli_parse_alloc(x->c, spec, msg, sizeof msg))
    return FAIL(x, at, "%s", strncmp(msg, "--alloc: ", 9) == 0 ? msg + 9 : msg);
  snprintf(msg, sizeof msg, "%s:%zu:%zu", x->path, at->start_mark.line + 1,
           at->start_mark.column + 1);
  const char *origin = keep(x->st, msg);
  if (!origin)
    return FAIL(x, at, "out of memory");
  for (int i = first; i < x->c->n_alloc; i++)
    x->c->alloc[i].origin = origin;
  return 0;
}

/* One parameter's values: a value, or a list of them to sweep over. */
struct sweep {
  const char *key[32];
  const char *const *val[32]; /* values of key[i] */
  int n_val[32];
  const char *one[32]; /* storage when a key has a single value */
  int n;
};

static int param_value(struct ctx *x, const char *key, yaml_node_t *v, const char **ret) {
  *ret = scalar(x, key, v, "a value");
  if (!*ret)
    return -1;
  if (strchr(*ret, ','))
    return FAIL(x, v, "%s: a parameter value may not hold ',' ('%s')", key, *ret);
  return 0;
}

/* Checks one key against the module's table, at the key's own position. */
static int param_key(struct ctx *x, const struct alloc_methods *m, yaml_node_t *k,
                     const char **ret) {
  *ret = scalar(x, "params", k, "a parameter name");
  if (!*ret)
    return -1;
  char spec[256], msg[256];
  struct alloc_args args;
  snprintf(spec, sizeof spec, "%s=x", *ret);
  if (alloc_args_parse(m, spec, ',', &args, msg, sizeof msg))
    return FAIL(x, k, "%s", msg);
  return 0;
}

static int sweep_values(struct ctx *x, struct sweep *sw, const char *key, yaml_node_t *v) {
  int i = sw->n++;
  sw->key[i] = key;
  yaml_node_item_t *it;
  int n;
  if (items(v, &it, &n)) {
    sw->val[i] = &sw->one[i];
    sw->n_val[i] = 1;
    return param_value(x, key, v, &sw->one[i]);
  }
  if (n == 0)
    return FAIL(x, v, "%s: the list of values is empty", key);
  const char **vals = calloc((size_t)n, sizeof *vals);
  if (!vals)
    return FAIL(x, v, "out of memory");
  sw->val[i] = vals;
  sw->n_val[i] = n;
  for (int k = 0; k < n; k++)
    if (param_value(x, key, yaml_document_get_node(x->doc, it[k]), &vals[k]))
      return -1;
  return 0;
}

static void sweep_free(struct sweep *sw) {
  for (int i = 0; i < sw->n; i++)
    if (sw->val[i] != &sw->one[i])
      free((void *)sw->val[i]);
}

/* Adds one instance per combination of the swept values, the last key varying fastest. */
static int add_sweep(struct ctx *x, yaml_node_t *at, const char *name, const struct sweep *sw) {
  long total = 1;
  for (int i = 0; i < sw->n && total <= CLI_MAX_ALLOCS; i++) /* stop before it can overflow */
    total *= sw->n_val[i];
  if (total > CLI_MAX_ALLOCS)
    return FAIL(x, at, "%s: the parameter lists make %ld instances, more than %d", name, total,
                CLI_MAX_ALLOCS);
  for (long combo = 0; combo < total; combo++) {
    char spec[1024];
    size_t len = (size_t)snprintf(spec, sizeof spec, "%s", name);
    long div = total;
    for (int i = 0; i < sw->n && len < sizeof spec; i++) {
      div /= sw->n_val[i];
      const char *val = sw->val[i][(combo / div) % sw->n_val[i]];
      len += (size_t)snprintf(spec + len, sizeof spec - len, "%c%s=%s", i ? ',' : ':', sw->key[i],
                              val);
    }
    if (len >= sizeof spec)
      return FAIL(x, at, "%s: the parameters are too long", name);
    if (add_spec(x, at, spec))
      return -1;
  }
  return 0;
}

/* {name: NAME, params: {key: value or [values], ...}} */
static int alloc_mapping(struct ctx *x, yaml_node_t *v) {
  yaml_node_t *name = NULL, *params = NULL;
  for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
    yaml_node_t *val = yaml_document_get_node(x->doc, p->value);
    const char *key = scalar(x, "allocators", k, "a key");
    if (!key)
      return -1;
    if (strcmp(key, "name") == 0 && !name)
      name = val;
    else if (strcmp(key, "params") == 0 && !params)
      params = val;
    else if (strcmp(key, "name") == 0 || strcmp(key, "params") == 0)
      return FAIL(x, k, "allocators: '%s' given twice", key);
    else
      return FAIL(x, k, "allocators: unknown key '%s' (an entry has 'name' and 'params')", key);
  }
  if (!name)
    return FAIL(x, v, "allocators: the entry has no 'name'");
  const char *mod = scalar(x, "name", name, "a module name");
  if (!mod)
    return -1;
  const struct alloc_methods *m = alloc_find(mod);
  if (!m)
    return FAIL(x, name, "unknown module '%s' (see ./harness --list)", mod);
  if (!params || is_null(params))
    return add_spec(x, name, mod);
  if (params->type != YAML_MAPPING_NODE)
    return FAIL(x, params, "params: expected a mapping (key: value), found %s", kind_name(params));
  struct sweep sw = {.n = 0};
  int r = 0;
  for (yaml_node_pair_t *p = params->data.mapping.pairs.start;
       p < params->data.mapping.pairs.top && !r; p++) {
    yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
    const char *key;
    if (sw.n == 32)
      r = FAIL(x, k, "params: more than 32 parameters");
    else
      r = param_key(x, m, k, &key) ||
          sweep_values(x, &sw, key, yaml_document_get_node(x->doc, p->value));
  }
  if (!r)
    r = add_sweep(x, name, mod, &sw);
  sweep_free(&sw);
  return r;
}

static int alloc_entry(struct ctx *x, const struct setting *s, yaml_node_t *v) {
  if (v->type == YAML_MAPPING_NODE)
    return alloc_mapping(x, v);
  const char *spec = scalar(x, s->key, v, "NAME[:key=value,...] or {name: ..., params: ...}");
  return spec ? add_spec(x, v, spec) : -1;
}

static int set_allocators(struct ctx *x, const struct setting *s, yaml_node_t *v) {
  return each(x, s, v, alloc_entry);
}

#define FIELD(f) offsetof(struct cli, f)

static const struct setting settings[] = {
    {"description", set_text, NULL, 0},        /* free text */
    {"allocators", set_allocators, NULL, 0},   /* --alloc */
    {"traces", set_traces, NULL, 0},           /* TRACE..., as globs */
    {"reps", set_number, "reps", 0},           /* --reps */
    {"warmup", set_number, "warmup", 0},       /* --warmup */
    {"region", set_number, "region", 0},       /* --region */
    {"timeout", set_number, "timeout", 0},     /* --timeout */
    {"sample", set_number, "sample", 0},       /* --sample */
    {"pin", set_number, "pin", 0},             /* --pin */
    {"check", set_flag, NULL, FIELD(check)},   /* --check */
    {"fork", set_flag, NULL, FIELD(fork)},     /* false: --no-fork */
    {"serial", set_flag, NULL, FIELD(serial)}, /* --serial */
    {"quiet", set_flag, NULL, FIELD(quiet)},   /* --quiet */
    {"csv", set_path, NULL, FIELD(csv)},       /* --csv */
    {"series", set_path, NULL, FIELD(series)}, /* --series */
    {"plots", set_plots, NULL, 0},             /* for scripts/plots --config */
};

#define N_SETTINGS (sizeof settings / sizeof settings[0])

static const struct setting *find_setting(const char *key) {
  for (size_t i = 0; i < N_SETTINGS; i++)
    if (strcmp(settings[i].key, key) == 0)
      return &settings[i];
  return NULL;
}

static int unknown_setting(struct ctx *x, yaml_node_t *k, const char *key) {
  char known[512];
  size_t n = 0;
  for (size_t i = 0; i < N_SETTINGS && n < sizeof known; i++)
    n += (size_t)snprintf(known + n, sizeof known - n, "%s%s", i ? ", " : "", settings[i].key);
  return FAIL(x, k, "unknown setting '%s' (known: %s)", key, known);
}

static int apply_settings(struct ctx *x, yaml_node_t *root) {
  if (root->type != YAML_MAPPING_NODE)
    return FAIL(x, root, "expected a mapping of settings (key: value lines), found %s",
                kind_name(root));
  yaml_node_pair_t *first = root->data.mapping.pairs.start;
  for (yaml_node_pair_t *p = first; p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
    const char *key = scalar(x, "setting", k, "a setting name");
    if (!key)
      return -1;
    for (yaml_node_pair_t *q = first; q < p; q++) {
      yaml_node_t *prev = yaml_document_get_node(x->doc, q->key);
      if (strcmp(text_of(prev), key) == 0)
        return FAIL(x, k, "setting '%s' given twice (first at line %zu)", key,
                    prev->start_mark.line + 1);
    }
    const struct setting *s = find_setting(key);
    if (!s)
      return unknown_setting(x, k, key);
    if (s->set(x, s, yaml_document_get_node(x->doc, p->value)))
      return -1;
  }
  return 0;
}

/* Line and column of a byte offset, for reader errors (bad UTF-8), which carry no mark. */
static yaml_mark_t mark_of(const unsigned char *text, size_t len, size_t offset) {
  yaml_mark_t m = {.index = offset};
  for (size_t i = 0; i < offset && i < len; i++) {
    if (text[i] == '\n') {
      m.line++;
      m.column = 0;
    } else {
      m.column++;
    }
  }
  return m;
}

static int syntax_error(struct ctx *x, const yaml_parser_t *p, const unsigned char *text,
                        size_t len) {
  if (p->error == YAML_MEMORY_ERROR)
    return fail_at(x, (yaml_mark_t){0}, "out of memory");
  const char *problem = p->problem ? p->problem : "malformed YAML";
  if (p->error == YAML_READER_ERROR)
    return fail_at(x, mark_of(text, len, p->problem_offset), "%s", problem);
  if (p->context)
    return fail_at(x, p->problem_mark, "%s (%s at line %zu, column %zu)", problem, p->context,
                   p->context_mark.line + 1, p->context_mark.column + 1);
  return fail_at(x, p->problem_mark, "%s", problem);
}

static unsigned char *read_file(const char *path, size_t *ret_len, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 4096, len = 0;
  unsigned char *buf = malloc(cap);
  while (buf) {
    len += fread(buf + len, 1, cap - len, f);
    if (len < cap)
      break;
    unsigned char *b = realloc(buf, cap *= 2);
    if (!b)
      free(buf);
    buf = b;
  }
  int bad = ferror(f) ? (errno ? errno : EIO) : 0; /* fread's reason: a directory, say */
  fclose(f);
  if (!buf || bad) {
    snprintf(err, errlen, "%s: cannot read: %s", path, buf ? strerror(bad) : "out of memory");
    free(buf);
    return NULL;
  }
  *ret_len = len;
  return buf;
}

/* Loads the document; refuses a file of more than one. */
static int load(struct ctx *x, yaml_parser_t *p, yaml_document_t *doc, const unsigned char *text,
                size_t len) {
  if (!yaml_parser_load(p, doc))
    return syntax_error(x, p, text, len);
  if (!yaml_document_get_root_node(doc)) {
    yaml_document_delete(doc);
    return fail_at(x, (yaml_mark_t){0}, "the file is empty: expected a mapping of settings");
  }
  yaml_document_t next;
  if (!yaml_parser_load(p, &next)) {
    yaml_document_delete(doc);
    return syntax_error(x, p, text, len);
  }
  yaml_node_t *root = yaml_document_get_root_node(&next);
  if (root) {
    fail_at(x, root->start_mark, "a second document: an experiment file holds one");
    yaml_document_delete(&next);
    yaml_document_delete(doc);
    return -1;
  }
  yaml_document_delete(&next);
  return 0;
}

static struct cfg_store *store(struct cli *c) {
  if (!c->cfg)
    c->cfg = calloc(1, sizeof *c->cfg);
  return c->cfg;
}

int cfg_load(struct cli *c, const char *path, char *err, size_t errlen) {
  struct ctx x = {.c = c, .st = store(c), .path = path, .err = err, .errlen = errlen};
  if (!x.st) {
    snprintf(err, errlen, "%s: out of memory", path);
    return -1;
  }
  size_t len;
  unsigned char *text = read_file(path, &len, err, errlen);
  if (!text)
    return -1;
  yaml_parser_t p;
  yaml_document_t doc;
  int r = -1;
  if (!yaml_parser_initialize(&p)) {
    snprintf(err, errlen, "%s: out of memory", path);
    free(text);
    return -1;
  }
  yaml_parser_set_input_string(&p, text, len);
  if (load(&x, &p, &doc, text, len) == 0) {
    x.doc = &doc;
    r = apply_settings(&x, yaml_document_get_root_node(&doc));
    yaml_document_delete(&doc);
  }
  if (x.allocs_started)
    x.st->allocs_from_file = 1;
  yaml_parser_delete(&p);
  free(text);
  return r;
}

void cfg_before_alloc(struct cli *c) {
  if (!c->cfg || c->cfg->allocs_from_file != 1)
    return;
  for (int i = 0; i < c->n_alloc; i++)
    free(c->alloc[i].spec);
  c->n_alloc = 0;
  c->cfg->allocs_from_file = 0;
}

int cfg_add_traces(struct cli *c, char **paths, int n, char *err, size_t errlen) {
  struct cfg_store *st = c->cfg;
  for (int i = 0; i < n; i++) {
    if (add_trace(st, paths[i])) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
  }
  c->traces = st->traces;
  c->n_traces = st->n_traces;
  return 0;
}

void cfg_free(struct cli *c) {
  struct cfg_store *st = c->cfg;
  if (!st)
    return;
  for (int i = 0; i < st->n_str; i++)
    free(st->str[i]);
  free(st->str);
  free(st->traces);
  free(st);
  c->cfg = NULL;
}
