/* The trace reader: valid text and .rep traces, C-library semantics, malformed inputs. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "trace.h"

static int parse(struct trace *t, const char *text, char *err, size_t n) {
  return trace_parse(t, "t.trace", text, strlen(text), err, n);
}

static void valid_text(void) {
  struct trace t;
  char err[512];
  const char *s = "# comment first\n"
                  "alloctrace 1\n"
                  "\n"
                  "m 7 100   # trailing comment\n"
                  "m 9 0 @2\n"
                  "c 3 4 25\n"
                  "a 4 64 200\n"
                  "a 5 8 10\n"
                  "r 7 300\n"
                  "r 9 0\n"
                  "f 3\n"
                  "f -1\n"
                  "r 11 50\n"
                  "x\n"
                  "m 7 10\n"
                  "f 7\n";
  EXPECT(parse(&t, s, err, sizeof err) == 0);
  EXPECT(t.n_malloc == 3 && t.n_calloc == 1 && t.n_memalign == 2);
  EXPECT(t.n_realloc == 3 && t.n_free == 3 && t.n_reset == 1);
  EXPECT(t.n_threads == 3);
  /* live: 100, 100, 200, 400, 410, 610 (r 7 300), 610 (r 9 0 frees 0 bytes), ... */
  EXPECT(t.peak_live == 610);
  EXPECT(trace_line(&t, t.peak_live_op) == 9);
  EXPECT(t.ops[0].kind == OP_MALLOC && t.ops[0].size == 100);
  EXPECT(t.ops[2].kind == OP_CALLOC && t.ops[2].size == 100);
  EXPECT(t.ops[3].kind == OP_MEMALIGN && t.ops[3].arg == 64);
  EXPECT(t.ops[4].kind == OP_MALLOC); /* alignment 8: plain malloc */
  EXPECT(t.ops[5].kind == OP_REALLOC && t.ops[5].arg == 100 && t.ops[5].size == 300);
  EXPECT(t.ops[6].kind == OP_FREE && t.ops[6].slot == t.ops[1].slot); /* realloc to 0 */
  EXPECT(t.ops[8].kind == OP_FREE && t.ops[8].slot == 0);             /* free(NULL) */
  EXPECT(t.ops[9].kind == OP_MALLOC && t.ops[9].size == 50);          /* realloc(NULL) */
  EXPECT(t.ops[10].kind == OP_RESET && t.ops[10].arg == 4);
  EXPECT(t.n_ops == 17);
  /* slots are reused: never more than the live blocks plus the NULL slot */
  EXPECT(t.n_slots <= 6);
  trace_free(&t);
}

static void valid_rep(void) {
  struct trace t;
  char err[512];
  const char *s = "20000\r\n3\r\n6\r\n1\r\n"
                  "a 0 2040\r\n"
                  "a 1 2040\r\n"
                  "f -1\r\n"
                  "r 2 16\r\n"
                  "r 1 0\r\n"
                  "f 0\r\n"
                  "r 2 48\r\n";
  EXPECT(parse(&t, s, err, sizeof err) == 0);
  EXPECT(t.n_ops == 7);
  EXPECT(t.warning[0] != '\0'); /* header says 6 ops, 7 follow */
  EXPECT(t.ops[3].kind == OP_MALLOC && t.ops[3].size == 16);
  EXPECT(t.ops[4].kind == OP_FREE && t.ops[4].size == 2040);
  EXPECT(t.ops[6].kind == OP_REALLOC && t.ops[6].arg == 16);
  EXPECT(t.peak_live == 4096);
  trace_free(&t);

  const char *one_line = "100 2 2 1\na 0 5\nf 0\n";
  EXPECT(parse(&t, one_line, err, sizeof err) == 0);
  EXPECT(t.n_ops == 2 && t.warning[0] == '\0');
  trace_free(&t);
}

/* Each malformed trace must fail with "t.trace:LINE: " and the words given. */
static void malformed(void) {
  static const struct {
    const char *text, *line, *words;
  } cases[] = {
      {"", ":1:", "empty trace"},
      {"hello\n", ":1:", "not a trace"},
      {"alloctrace 2\n", ":1:", "unsupported trace version 2"},
      {"alloctrace 1\nm 1\n", ":2:", "missing size"},
      {"alloctrace 1\nm 1 -5\n", ":2:", "negative"},
      {"alloctrace 1\nm 1 12x\n", ":2:", "not a number"},
      {"alloctrace 1\nm 1 999999999999999999999\n", ":2:", "too large"},
      {"alloctrace 1\nm 1 281474976710657\n", ":2:", "larger than any allocation"},
      {"alloctrace 1\nm 9223372036854775808 1\n", ":2:", "out of range"},
      {"alloctrace 1\nf 4\n", ":2:", "never allocated"},
      {"alloctrace 1\nm 1 8\nf 1\nf 1\n", ":4:", "double free of id 1 (freed at line 3)"},
      {"alloctrace 1\nm 1 8\nf 1\nr 1 9\n", ":4:", "freed at line 3"},
      {"alloctrace 1\nm 1 8\nm 1 8\n", ":3:", "still live (allocated at line 2)"},
      {"alloctrace 1\nq 1 8\n", ":2:", "unknown event"},
      {"alloctrace 1\nmalloc 1 8\n", ":2:", "unknown event"},
      {"alloctrace 1\nm 1 8 9\n", ":2:", "unexpected"},
      {"alloctrace 1\nm 1 8 @70000\n", ":2:", "thread 70000 is out of range"},
      {"alloctrace 1\na 1 48 8\n", ":2:", "not a power of two"},
      {"alloctrace 1\nc 1 281474976710656 2\n", ":2:", "larger than any allocation"},
      {"alloctrace 1\nm 1 \xff\xfe\n", ":2:", "not a number"},
      {"10 2 3\n", ":1:", "3 of its four numbers"},
      {"10 2 3 1\nz 1 2\n", ":2:", "unknown .rep event"},
      {"10 2 3 1\na 1\n", ":2:", "missing size"},
      {"10 2 3 1 5\n", ":1:", "four numbers"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct trace t;
    char err[512] = "";
    int r = parse(&t, cases[i].text, err, sizeof err);
    int ok = r == -1 && strstr(err, cases[i].line) && strstr(err, cases[i].words) &&
             strncmp(err, "t.trace:", 8) == 0;
    if (!EXPECT(ok))
      fprintf(stderr, "  case %zu: got \"%s\", wanted %s %s\n", i, err, cases[i].line,
              cases[i].words);
    if (r == 0)
      trace_free(&t);
  }
}

static void load_errors(void) {
  struct trace t;
  char err[512];
  EXPECT(trace_load(&t, "/nonexistent/x.trace", err, sizeof err) == -1 &&
         strstr(err, "/nonexistent/x.trace: No such file"));
  EXPECT(trace_load(&t, "/tmp", err, sizeof err) == -1 && strstr(err, "is a directory"));
}

static void lower_memalign(void) {
  struct trace t;
  char err[512];
  EXPECT(parse(&t, "alloctrace 1\na 1 4096 100\nr 1 200\nf 1\na 2 64 10\nf 2\n", err, sizeof err) ==
         0);
  trace_lower_memalign(&t);
  EXPECT(t.ops[0].kind == OP_MALLOC && t.ops[0].size == 100 + 4096 - 16);
  EXPECT(t.ops[0].arg == 4096 - 16);
  EXPECT(t.ops[1].kind == OP_REALLOC && t.ops[1].arg == 100 + 4096 - 16);
  EXPECT(t.ops[2].kind == OP_FREE && t.ops[2].size == 200);
  EXPECT(t.ops[4].kind == OP_FREE && t.ops[4].size == 10 + 64 - 16);
  trace_free(&t);
}

int main(void) {
  valid_text();
  valid_rep();
  malformed();
  load_errors();
  lower_memalign();
  return test_finish();
}
