/* Shared by the fuzz targets: the libFuzzer entry point and the trace invariants. */
#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts, saying which, unless a parsed trace keeps every promise replay relies on: slots in
 * range and reused only when free, sizes passed to free and realloc those of the block,
 * resets followed by the frees of every live block, peak live and its op, slot count equal
 * to the most blocks live at once plus the NULL slot, lines in order, thread tags counted. */
void fz_verify(const struct trace *t);

/* Parses data as a trace named name; with header, prepends header first (a copy). Returns
 * what trace_parse returns; on success the trace is verified with fz_verify. */
int fz_parse(struct trace *t, const char *name, const char *header, const uint8_t *data,
             size_t size);

#endif
