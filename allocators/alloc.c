/* Registry look-up and the parameter helpers every module's init uses. */
#include "alloc.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct alloc_methods *alloc_find(const char *name) {
  for (int i = 0; alloc_registry[i]; i++)
    if (strcmp(alloc_registry[i]->name, name) == 0)
      return alloc_registry[i];
  return NULL;
}

static int find_key(const struct alloc_args *args, const char *key) {
  for (int i = 0; i < args->n; i++)
    if (strcmp(args->key[i], key) == 0)
      return i;
  return -1;
}

static int has_param(const struct alloc_methods *m, const char *key) {
  for (const struct alloc_param *p = m->params; p && p->key; p++)
    if (strcmp(p->key, key) == 0)
      return 1;
  return 0;
}

/* Keys of an inner module pass through its outer one ("inner.block=64"). */
static int known_key(const struct alloc_methods *m, const char *key) {
  return has_param(m, key) || (strncmp(key, "inner.", 6) == 0 && has_param(m, "inner"));
}

static int set_arg(struct alloc_args *a, const char *key, const char *val, char *err,
                   size_t errlen) {
  int i = find_key(a, key);
  if (i < 0) {
    if (a->n == (int)(sizeof a->key / sizeof a->key[0])) {
      snprintf(err, errlen, "too many parameters");
      return -1;
    }
    i = a->n++;
    a->key[i] = key;
  }
  a->val[i] = val;
  return 0;
}

int alloc_args_parse(const struct alloc_methods *m, char *spec, char sep, struct alloc_args *ret,
                     char *err, size_t errlen) {
  ret->n = 0;
  for (const struct alloc_param *p = m->params; p && p->key; p++)
    if (set_arg(ret, p->key, p->def, err, errlen))
      return -1;
  char *s = spec;
  while (s && *s) {
    char *end = strchr(s, sep);
    if (end)
      *end = '\0';
    char *eq = strchr(s, '=');
    if (!eq || eq == s) {
      snprintf(err, errlen, "%s: parameter '%s' is not key=value", m->name, s);
      return -1;
    }
    *eq = '\0';
    if (!known_key(m, s)) {
      snprintf(err, errlen, "%s: unknown parameter '%s' (see ./harness --list)", m->name, s);
      return -1;
    }
    if (set_arg(ret, s, eq + 1, err, errlen))
      return -1;
    s = end ? end + 1 : NULL;
  }
  return 0;
}

const char *alloc_arg(const struct alloc_args *args, const char *key) {
  int i = find_key(args, key);
  return i < 0 ? NULL : args->val[i];
}

/* Sizes accept a K, M or G suffix (powers of 1024). */
int alloc_arg_size(const struct alloc_args *args, const char *key, size_t *ret, char *err,
                   size_t errlen) {
  const char *v = alloc_arg(args, key);
  if (!v || !*v || *v == '-') {
    snprintf(err, errlen, "parameter '%s' needs a size", key);
    return -1;
  }
  char *end;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  unsigned shift = 0;
  if (*end == 'K' || *end == 'k')
    shift = 10;
  else if (*end == 'M' || *end == 'm')
    shift = 20;
  else if (*end == 'G' || *end == 'g')
    shift = 30;
  if (shift)
    end++;
  if (errno || end == v || *end || (shift && n > (~0ull >> shift))) {
    snprintf(err, errlen, "parameter '%s': '%s' is not a size (digits, optional K/M/G)", key, v);
    return -1;
  }
  *ret = (size_t)(n << shift);
  return 0;
}

int alloc_arg_choice(const struct alloc_args *args, const char *key, const char *const *choices,
                     int *ret, char *err, size_t errlen) {
  const char *v = alloc_arg(args, key);
  for (int i = 0; v && choices[i]; i++) {
    if (strcmp(v, choices[i]) == 0) {
      *ret = i;
      return 0;
    }
  }
  int n = snprintf(err, errlen, "parameter '%s': '%s' is not one of", key, v ? v : "");
  for (int i = 0; choices[i] && n > 0 && (size_t)n < errlen; i++)
    n += snprintf(err + n, errlen - (size_t)n, " %s", choices[i]);
  return -1;
}

int alloc_load_library(const char *lib, const char *const *names, void **fns, char *err,
                       size_t errlen) {
  void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (!h) {
    snprintf(err, errlen, "cannot load %s: %s", lib, dlerror());
    return -1;
  }
  for (int i = 0; names[i]; i++) {
    fns[i] = dlsym(h, names[i]);
    if (!fns[i]) {
      snprintf(err, errlen, "%s has no %s", lib, names[i]);
      return -1;
    }
  }
  return 0;
}

int alloc_inner_args(const struct alloc_methods *inner, const struct alloc_args *args, char *spec,
                     size_t spec_len, struct alloc_args *ret, char *err, size_t errlen) {
  size_t n = 0;
  for (int i = 0; i < args->n && n < spec_len; i++)
    if (strncmp(args->key[i], "inner.", 6) == 0)
      n += (size_t)snprintf(spec + n, spec_len - n, "%s%s=%s", n ? "," : "", args->key[i] + 6,
                            args->val[i]);
  if (n >= spec_len) {
    snprintf(err, errlen, "the inner module's parameters are too long");
    return -1;
  }
  return alloc_args_parse(inner, spec, ',', ret, err, errlen);
}
