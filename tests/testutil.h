/* A minimal test helper: counts checks, prints failures, closes with "N passed, N failed". */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <stdio.h>

#ifdef NDEBUG
#error "tests rely on their checks: do not build them with NDEBUG"
#endif

static int test_passed, test_failed;

static inline int test_expect(int ok, const char *what, const char *file, int line) {
  if (ok)
    test_passed++;
  else {
    test_failed++;
    fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what);
  }
  return ok;
}

#define EXPECT(cond) test_expect((cond) != 0, #cond, __FILE__, __LINE__)

static inline int test_finish(void) {
  printf("%d passed, %d failed\n", test_passed, test_failed);
  return test_failed ? 1 : 0;
}

#endif
