/*
 * Compressed traces: zstd (libzstd) and gzip (zlib), read and written whole. A compressed
 * trace is recognised by its magic bytes, whatever its name; it is inflated into side
 * memory (region_side_*) and read as the text, .rep or binary trace it holds.
 */
#ifndef TRACE_ZIP_H
#define TRACE_ZIP_H

#include <stddef.h>

#include "trace.h"

enum trace_zip_kind { TRACE_ZIP_NONE, TRACE_ZIP_ZSTD, TRACE_ZIP_GZIP };

/* The compression buf starts with, or TRACE_ZIP_NONE. */
enum trace_zip_kind trace_zip_is(const void *buf, size_t len);

/* Inflates the compressed buf into side memory: *ret holds *ret_len bytes in a mapping of
 * *ret_cap bytes (free it with region_side_free(*ret, *ret_cap)). Returns 0, or -1 with
 * "NAME: problem" in err. */
int trace_zip_inflate(const char *name, const void *buf, size_t len, void **ret, size_t *ret_len,
                      size_t *ret_cap, char *err, size_t errlen);

/* Inflates only the first bytes of buf, up to n, into ret (a header to peek at).
 * Returns the bytes inflated, or -1 if the data is corrupt. */
long trace_zip_head(const void *buf, size_t len, void *ret, size_t n);

/* Inflates buf and reads the trace inside (text, .rep or binary) as trace_load would. */
int trace_zip_parse(struct trace *ret, const char *name, const void *buf, size_t len, char *err,
                    size_t errlen);

/* A trace file being written: compressed when its name ends in .zst or .gz, written to
 * NAME.partial and renamed over NAME when closed without error. */
struct trace_zip_out;

/* Returns the open file, or NULL with "PATH: problem" in err. */
struct trace_zip_out *trace_zip_create(const char *path, char *err, size_t errlen);

/* Appends n bytes (a trace_bin_sink: ctx is the trace_zip_out). Returns 0 or -1; the
 * reason is reported by trace_zip_close. */
int trace_zip_write(void *ctx, const void *p, size_t n);

/* Finishes the stream, closes and renames, frees o. On any failure (now or in an earlier
 * write) the partial file is removed and -1 returned with "PATH: problem" in err. */
int trace_zip_close(struct trace_zip_out *o, char *err, size_t errlen);

/* Removes the partial file and frees o (after a failure elsewhere). */
void trace_zip_abandon(struct trace_zip_out *o);

#endif
