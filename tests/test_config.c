/*
 * Experiment files (--config): valid files fill struct cli as the command line would, with
 * later options overriding and command-line traces added; invalid files are refused with
 * "FILE:LINE:COL: problem" pointing at the offending node.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "testutil.h"

static char dir[] = "/tmp/test_config.XXXXXX";

/* Writes name in the test's directory; returns its path (static storage, one at a time). */
static const char *write_file(const char *name, const char *text) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    exit(1);
  }
  fputs(text, f);
  fclose(f);
  return path;
}

/* Replaces every "@" in text by the test directory (for globs). */
static const char *in_dir(const char *text) {
  static char out[8192];
  size_t n = 0;
  for (const char *s = text; *s && n + sizeof dir < sizeof out; s++) {
    if (*s == '@') {
      memcpy(out + n, dir, strlen(dir));
      n += strlen(dir);
    } else {
      out[n++] = *s;
    }
  }
  out[n] = '\0';
  return out;
}

static int parse(struct cli *c, int argc, const char **argv, char *err, size_t errlen) {
  char *args[32];
  for (int i = 0; i < argc; i++)
    args[i] = (char *)argv[i];
  args[argc] = NULL;
  err[0] = '\0';
  return cli_parse(c, argc, args, err, errlen);
}

static const char *config(const char *name, const char *text) {
  return write_file(name, in_dir(text));
}

static void valid_full(void) {
  const char *path = config("full.yaml", "# every setting\n"
                                         "description: >\n"
                                         "  placement policies\n"
                                         "allocators:\n"
                                         "  - implicit:fit=best\n"
                                         "  - name: implicit\n"
                                         "    params: {fit: [first, next]}\n"
                                         "  - name: bump\n"
                                         "  - null,system\n"
                                         "traces:\n"
                                         "  - '@/*.trace'\n"
                                         "  - '@/c.rep'\n"
                                         "  - '@/a.trace'\n"
                                         "reps: 7\n"
                                         "warmup: 0\n"
                                         "region: 64M\n"
                                         "timeout: 1.5\n"
                                         "sample: 0\n"
                                         "pin: 1\n"
                                         "check: true\n"
                                         "fork: false\n"
                                         "quiet: True\n"
                                         "csv: results/x.csv\n"
                                         "series: results/series-x.csv\n"
                                         "plots: [throughput, rss, series]\n");
  struct cli c;
  char err[512];
  const char *argv[] = {"harness", "--config", path};
  EXPECT(parse(&c, 3, argv, err, sizeof err) == 0);
  if (err[0])
    fprintf(stderr, "unexpected error: %s\n", err);
  EXPECT(c.n_alloc == 6);
  EXPECT(strcmp(c.alloc[0].m->name, "implicit") == 0 && strcmp(c.alloc[0].params, "fit=best") == 0);
  EXPECT(strcmp(c.alloc[1].params, "fit=first") == 0);
  EXPECT(strcmp(c.alloc[2].params, "fit=next") == 0);
  EXPECT(strcmp(c.alloc[3].m->name, "bump") == 0);
  EXPECT(strcmp(c.alloc[4].m->name, "null") == 0 && strcmp(c.alloc[5].m->name, "system") == 0);
  /* each instance remembers its entry, for errors its module's init finds later */
  char where[600];
  snprintf(where, sizeof where, "%s:5:5", path);
  EXPECT(c.alloc[0].origin && strcmp(c.alloc[0].origin, where) == 0);
  snprintf(where, sizeof where, "%s:6:11", path);
  EXPECT(c.alloc[1].origin && strcmp(c.alloc[1].origin, where) == 0);
  EXPECT(c.alloc[2].origin && strcmp(c.alloc[2].origin, where) == 0);
  snprintf(where, sizeof where, "%s:9:5", path);
  EXPECT(c.alloc[5].origin && strcmp(c.alloc[5].origin, where) == 0);
  /* globs expand sorted; a path named twice runs once */
  EXPECT(c.n_traces == 3);
  EXPECT(c.n_traces == 3 && strcmp(c.traces[0], in_dir("@/a.trace")) == 0 &&
         strcmp(c.traces[1], in_dir("@/b.trace")) == 0 &&
         strcmp(c.traces[2], in_dir("@/c.rep")) == 0);
  EXPECT(c.reps == 7 && c.warmup == 0 && c.region == 64u << 20 && c.timeout == 1.5);
  EXPECT(c.sample == 0 && c.pin == 1 && c.pin_cpu == 1);
  EXPECT(c.check == 1 && c.fork == 0 && c.quiet == 1);
  EXPECT(c.csv && strcmp(c.csv, "results/x.csv") == 0);
  EXPECT(c.series && strcmp(c.series, "results/series-x.csv") == 0);
  cli_free(&c);
  EXPECT(c.cfg == NULL && c.n_alloc == 0);
}

/* Options apply in order: before --config the file wins, after it the option wins. */
static void overrides(void) {
  const char *path = config("over.yaml", "allocators: [implicit, bump]\n"
                                         "traces: '@/a.trace'\n"
                                         "reps: 3\n"
                                         "check: false\n");
  struct cli c;
  char err[512];
  const char *argv[] = {"harness",      "--reps=9",       "--alloc=null", "--config",
                        path,           "--check",        "--warmup=4",   "--alloc=system",
                        "--alloc=bump", in_dir("@/c.rep")};
  EXPECT(parse(&c, 10, argv, err, sizeof err) == 0);
  EXPECT(c.reps == 3);  /* the file came after --reps=9 */
  EXPECT(c.check == 1); /* --check came after the file */
  EXPECT(c.warmup == 4);
  /* the first --alloc after the file replaced its modules; the next one added */
  EXPECT(c.n_alloc == 2 && strcmp(c.alloc[0].m->name, "system") == 0 &&
         strcmp(c.alloc[1].m->name, "bump") == 0);
  EXPECT(c.alloc[0].origin == NULL); /* from the command line */
  EXPECT(c.n_traces == 2 && strcmp(c.traces[0], in_dir("@/a.trace")) == 0 &&
         strcmp(c.traces[1], in_dir("@/c.rep")) == 0);
  cli_free(&c);

  /* --alloc before the file: the file's list replaces it */
  const char *argv2[] = {"harness", "--alloc=null", "--config", path};
  EXPECT(parse(&c, 4, argv2, err, sizeof err) == 0);
  EXPECT(c.n_alloc == 2 && strcmp(c.alloc[0].m->name, "implicit") == 0);
  cli_free(&c);

  /* no allocators in the file: every module, as on the command line */
  path = config("noalloc.yaml", "traces: '@/*.rep'\n");
  const char *argv3[] = {"harness", "--config", path};
  EXPECT(parse(&c, 3, argv3, err, sizeof err) == 0);
  int n = 0;
  while (alloc_registry[n])
    n++;
  EXPECT(c.n_alloc == n);
  EXPECT(c.n_traces == 1);
  cli_free(&c);

  /* one value where a list is allowed; plots: all */
  path = config("scalar.yaml", "allocators: implicit:fit=next\ntraces: '@/b.trace'\nplots: all\n");
  const char *argv4[] = {"harness", "--config", path};
  EXPECT(parse(&c, 3, argv4, err, sizeof err) == 0);
  EXPECT(c.n_alloc == 1 && strcmp(c.alloc[0].params, "fit=next") == 0);
  cli_free(&c);
}

/* Loads text as a config and expects an error: "FILE:where: problem". */
static void bad(const char *text, const char *where, const char *problem) {
  const char *path = config("bad.yaml", text);
  char expect[1024];
  snprintf(expect, sizeof expect, "%s:%s: %s", path, where, problem);
  struct cli c;
  char err[1024];
  const char *argv[] = {"harness", "--config", path};
  int r = parse(&c, 3, argv, err, sizeof err);
  int ok = r == -1 && strncmp(err, expect, strlen(expect)) == 0;
  if (!EXPECT(ok))
    fprintf(stderr, "  expected: %s...\n  got:      %s\n", expect, r ? err : "(no error)");
  cli_free(&c);
}

static void invalid(void) {
  bad("reps: 5\n  warmup: 1\n", "2:9", "mapping values are not allowed in this context");
  bad("allocators: [bump\ntraces: x\n", "2:7",
      "did not find expected ',' or ']' (while parsing a flow sequence at line 1, column 13)");
  bad("reps: 5\nrep: 3\n", "2:1", "unknown setting 'rep' (known: description, allocators,");
  bad("reps: [1, 2]\n", "1:7", "reps: expected a number, found a list");
  bad("traces: '@/a.trace'\nreps: 0\n", "2:7", "reps: '0' is not a whole number from 1 to 101");
  bad("region: 12Q\n", "1:9", "region:");
  bad("timeout: -1\n", "1:10", "timeout: '-1' is not a number of seconds");
  bad("reps:\n", "1:6", "reps: no value (expected a number)");
  bad("check: maybe\n", "1:8", "check: expected true or false, found 'maybe'");
  bad("csv: {a: 1}\n", "1:6", "csv: expected a file name, found a mapping");
  bad("allocators:\n  - bump\n  - nosuch:x=1\n", "3:5",
      "unknown module 'nosuch' (see ./harness --list)");
  bad("allocators:\n  - implicit:fitt=best\n", "2:5",
      "implicit: unknown parameter 'fitt' (see ./harness --list)");
  bad("allocators:\n  - name: implicit\n    params:\n      fitt: best\n", "4:7",
      "implicit: unknown parameter 'fitt' (see ./harness --list)");
  bad("allocators:\n  - name: nosuch\n", "2:11", "unknown module 'nosuch'");
  bad("allocators:\n  - params: {fit: best}\n", "2:5", "allocators: the entry has no 'name'");
  bad("allocators:\n  - name: implicit\n    parms: {fit: best}\n", "3:5",
      "allocators: unknown key 'parms' (an entry has 'name' and 'params')");
  bad("allocators:\n  - name: implicit\n    params: [fit]\n", "3:13",
      "params: expected a mapping (key: value), found a list");
  bad("allocators:\n  - name: implicit\n    params: {fit: 'best,next'}\n", "3:19",
      "fit: a parameter value may not hold ','");
  bad("allocators: []\n", "1:13", "allocators: the list is empty");
  bad("traces:\n  - '@/a.trace'\n  - '@/*.nothing'\n", "3:5", "traces: no file matches '");
  bad("traces: '@/missing.trace'\n", "1:9", "traces: no file matches '");
  bad("reps: 3\nwarmup: 1\nreps: 4\n", "3:1", "setting 'reps' given twice (first at line 1)");
  bad("- reps\n- 3\n", "1:1", "expected a mapping of settings (key: value lines), found a list");
  bad("", "1:1", "the file is empty: expected a mapping of settings");
  bad("# only a comment\n", "1:1", "the file is empty");
  bad("reps: 3\n---\nreps: 4\n", "3:1", "a second document: an experiment file holds one");
  bad("plots: [throughput, pie]\n", "1:21", "plots: unknown plot 'pie' (known: all,");
  bad("reps: 3\ndescription: caf\xe9\n", "2:17", "incomplete UTF-8 octet sequence");
  bad("[reps]: 3\n", "1:1", "setting: expected a setting name, found a list");
  /* a sweep larger than the module list */
  char big[4096] = "allocators:\n  - name: implicit\n    params:\n      fit: [first";
  for (int i = 0; i < CLI_MAX_ALLOCS; i++)
    strcat(big, ", best");
  strcat(big, "]\n");
  bad(big, "2:11", "implicit: the parameter lists make 129 instances, more than 128");
}

static void unreadable(void) {
  struct cli c;
  char err[512], path[600];
  snprintf(path, sizeof path, "%s/none.yaml", dir);
  const char *argv[] = {"harness", "--config", path};
  EXPECT(parse(&c, 3, argv, err, sizeof err) == -1);
  char expect[700];
  snprintf(expect, sizeof expect, "%s: cannot read: No such file or directory", path);
  EXPECT(strcmp(err, expect) == 0);
  cli_free(&c);
}

int main(void) {
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  const char *names[] = {"a.trace", "b.trace", "c.rep"};
  for (int i = 0; i < 3; i++)
    write_file(names[i], "alloctrace 1\nm 1 8\nf 1\n");
  valid_full();
  overrides();
  invalid();
  unreadable();
  const char *files[] = {"a.trace",   "b.trace",  "c.rep",        "full.yaml",
                         "over.yaml", "bad.yaml", "noalloc.yaml", "scalar.yaml"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, files[i]);
    unlink(p);
  }
  rmdir(dir);
  return test_finish();
}
