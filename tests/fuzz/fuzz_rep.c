/*
 * Fuzz target: the CMU malloc-lab (.rep) reader. Bytes that start with a digit bring their
 * own four-number header; others get a valid one prepended, so that the fuzzer explores both
 * the header and the events.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *header = size && data[0] >= '0' && data[0] <= '9' ? NULL : "20000\n3\n100\n1\n";
  struct trace t;
  if (fz_parse(&t, "fuzz.rep", header, data, size) == 0)
    trace_free(&t);
  return 0;
}
