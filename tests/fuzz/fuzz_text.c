/*
 * Fuzz target: the text trace reader on arbitrary bytes, as given and after the header
 * "alloctrace 1" (so that most inputs reach the event parser). A parse must fail with
 * "NAME:LINE: problem" or yield a trace that keeps every invariant of fz_verify.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct trace t;
  if (fz_parse(&t, "fuzz.trace", NULL, data, size) == 0)
    trace_free(&t);
  if (fz_parse(&t, "fuzz.trace", "alloctrace 1\n", data, size) == 0)
    trace_free(&t);
  return 0;
}
