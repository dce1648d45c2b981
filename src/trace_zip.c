/* Compressed traces: streaming inflation into side memory, and compressed output. */
#include "trace_zip.h"

#include "region.h"
#include "trace_bin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

/* zlib counts in 32 bits: feed it at most this much at a time. */
#define ZLIB_CHUNK (1u << 30)

enum trace_zip_kind trace_zip_is(const void *buf, size_t len) {
  const uint8_t *b = buf;
  if (len >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd)
    return TRACE_ZIP_ZSTD;
  if (len >= 2 && b[0] == 0x1f && b[1] == 0x8b)
    return TRACE_ZIP_GZIP;
  return TRACE_ZIP_NONE;
}

/* The output of an inflation, in side memory that doubles as it fills. */
struct sink {
  uint8_t *p;
  size_t len, cap;
};

static int sink_room(struct sink *s, size_t guess) {
  if (s->len < s->cap)
    return 0;
  size_t cap = s->cap ? s->cap * 2 : (guess > (1u << 20) ? guess : (1u << 20));
  void *q = region_side_resize(s->p, s->cap, cap);
  if (!q)
    return -1;
  s->p = q;
  s->cap = cap;
  return 0;
}

static int zip_fail(char *err, size_t errlen, const char *name, const char *what,
                    const char *detail) {
  snprintf(err, errlen, "%s: %s%s%s", name, what, detail ? ": " : "", detail ? detail : "");
  return -1;
}

static int inflate_zstd(const char *name, const void *buf, size_t len, struct sink *s, char *err,
                        size_t errlen) {
  ZSTD_DStream *ds = ZSTD_createDStream();
  if (!ds)
    return zip_fail(err, errlen, name, "out of memory", NULL);
  unsigned long long known = ZSTD_getFrameContentSize(buf, len);
  size_t guess = known < (1ull << 40) ? (size_t)known + 1 : len * 8;
  ZSTD_inBuffer in = {buf, len, 0};
  int r = 0;
  for (;;) {
    if (sink_room(s, guess)) {
      r = zip_fail(err, errlen, name, "out of memory inflating the trace", NULL);
      break;
    }
    ZSTD_outBuffer out = {s->p, s->cap, s->len};
    size_t rc = ZSTD_decompressStream(ds, &out, &in);
    s->len = out.pos;
    if (ZSTD_isError(rc)) {
      r = zip_fail(err, errlen, name, "corrupt zstd data", ZSTD_getErrorName(rc));
      break;
    }
    if (rc == 0 && in.pos == in.size)
      break; /* the last frame is complete */
    if (in.pos == in.size && out.pos < out.size) {
      r = zip_fail(err, errlen, name, "truncated zstd data (the file ends inside a frame)", NULL);
      break;
    }
  }
  ZSTD_freeDStream(ds);
  return r;
}

static int inflate_step(z_stream *zs, const uint8_t *end, struct sink *s, size_t guess) {
  if (sink_room(s, guess))
    return Z_MEM_ERROR;
  size_t in_left = (size_t)(end - zs->next_in);
  zs->avail_in = in_left > ZLIB_CHUNK ? ZLIB_CHUNK : (uInt)in_left;
  size_t out_left = s->cap - s->len;
  zs->next_out = s->p + s->len;
  zs->avail_out = out_left > ZLIB_CHUNK ? ZLIB_CHUNK : (uInt)out_left;
  uInt before = zs->avail_out;
  int rc = inflate(zs, Z_NO_FLUSH);
  s->len += before - zs->avail_out;
  return rc;
}

/* gzip members may be concatenated (as `cat a.gz b.gz` makes): each is inflated in turn. */
static int inflate_gzip(const char *name, const void *buf, size_t len, struct sink *s, char *err,
                        size_t errlen) {
  const uint8_t *b = buf, *end = b + len;
  size_t guess = len * 8;
  if (len >= 4) { /* ISIZE: the last member's length mod 2^32, a good first guess */
    size_t isize =
        (size_t)end[-4] | (size_t)end[-3] << 8 | (size_t)end[-2] << 16 | (size_t)end[-1] << 24;
    guess = isize > len ? isize + 1 : guess;
  }
  z_stream zs = {0};
  if (inflateInit2(&zs, 15 + 16) != Z_OK)
    return zip_fail(err, errlen, name, "out of memory", NULL);
  zs.next_in = (Bytef *)(uintptr_t)b;
  int r = 0;
  for (;;) {
    int rc = inflate_step(&zs, end, s, guess);
    if (rc == Z_STREAM_END) {
      if (zs.next_in == end)
        break;
      if (trace_zip_is(zs.next_in, (size_t)(end - zs.next_in)) != TRACE_ZIP_GZIP) {
        r = zip_fail(err, errlen, name, "corrupt gzip data: bytes after the end of the stream",
                     NULL);
        break;
      }
      inflateReset(&zs);
      continue;
    }
    if (rc == Z_OK)
      continue;
    if (rc == Z_BUF_ERROR && zs.next_in == end) {
      r = zip_fail(err, errlen, name, "truncated gzip data (the file ends inside the stream)",
                   NULL);
      break;
    }
    if (rc == Z_BUF_ERROR)
      continue; /* the output was full: room is made on the next step */
    r = zip_fail(err, errlen, name,
                 rc == Z_MEM_ERROR ? "out of memory inflating the trace" : "corrupt gzip data",
                 rc == Z_MEM_ERROR ? NULL : zs.msg);
    break;
  }
  inflateEnd(&zs);
  return r;
}

int trace_zip_inflate(const char *name, const void *buf, size_t len, void **ret, size_t *ret_len,
                      size_t *ret_cap, char *err, size_t errlen) {
  struct sink s = {0};
  enum trace_zip_kind k = trace_zip_is(buf, len);
  int r = k == TRACE_ZIP_ZSTD   ? inflate_zstd(name, buf, len, &s, err, errlen)
          : k == TRACE_ZIP_GZIP ? inflate_gzip(name, buf, len, &s, err, errlen)
                                : zip_fail(err, errlen, name, "not compressed", NULL);
  if (r) {
    region_side_free(s.p, s.cap);
    return -1;
  }
  *ret = s.p;
  *ret_len = s.len;
  *ret_cap = s.cap;
  return 0;
}

long trace_zip_head(const void *buf, size_t len, void *ret, size_t n) {
  long got = -1;
  if (trace_zip_is(buf, len) == TRACE_ZIP_ZSTD) {
    ZSTD_DStream *ds = ZSTD_createDStream();
    ZSTD_inBuffer in = {buf, len, 0};
    ZSTD_outBuffer out = {ret, n, 0};
    size_t rc = 1;
    while (ds && out.pos < n && in.pos < in.size && !ZSTD_isError(rc))
      rc = ZSTD_decompressStream(ds, &out, &in);
    got = ds && !ZSTD_isError(rc) ? (long)out.pos : -1;
    ZSTD_freeDStream(ds);
  } else if (trace_zip_is(buf, len) == TRACE_ZIP_GZIP) {
    z_stream zs = {0};
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
      return -1;
    zs.next_in = (Bytef *)(uintptr_t)buf;
    zs.avail_in = len > ZLIB_CHUNK ? ZLIB_CHUNK : (uInt)len;
    zs.next_out = ret;
    zs.avail_out = (uInt)n;
    int rc = inflate(&zs, Z_SYNC_FLUSH);
    got = rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR ? (long)(n - zs.avail_out) : -1;
    inflateEnd(&zs);
  }
  return got;
}

int trace_zip_parse(struct trace *ret, const char *name, const void *buf, size_t len, char *err,
                    size_t errlen) {
  void *raw;
  size_t n, cap;
  if (trace_zip_inflate(name, buf, len, &raw, &n, &cap, err, errlen))
    return -1;
  int r;
  if (n == 0)
    r = zip_fail(err, errlen, name, "empty once inflated, not a trace", NULL);
  else if (trace_bin_is(raw, n))
    r = trace_bin_parse(ret, name, raw, n, err, errlen);
  else if (trace_zip_is(raw, n))
    r = zip_fail(err, errlen, name, "compressed twice; inflate it once first", NULL);
  else
    r = trace_parse(ret, name, raw, n, err, errlen);
  region_side_free(raw, cap);
  return r;
}

/* --- output --- */

struct trace_zip_out {
  enum trace_zip_kind kind;
  int fd;
  char *path, *partial;
  ZSTD_CCtx *zc;
  z_stream zs;
  int zs_open;
  uint8_t *buf; /* the bytes waiting for write(2) */
  size_t len, cap;
  char why[160]; /* the first failure, or "" */
};

#define OUT_BUF (1u << 20)

static int ends_with(const char *s, const char *tail) {
  size_t n = strlen(s), k = strlen(tail);
  return n >= k && strcmp(s + n - k, tail) == 0;
}

static int out_failed(struct trace_zip_out *o, const char *what, const char *detail) {
  if (!o->why[0])
    snprintf(o->why, sizeof o->why, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
  return -1;
}

static int write_all(struct trace_zip_out *o, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = write(o->fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return out_failed(o, "cannot write", strerror(w < 0 ? errno : EIO));
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int drain(struct trace_zip_out *o) {
  int r = write_all(o, o->buf, o->len);
  o->len = 0;
  return r;
}

struct trace_zip_out *trace_zip_create(const char *path, char *err, size_t errlen) {
  struct trace_zip_out *o = calloc(1, sizeof *o);
  if (o)
    o->fd = -1;
  size_t n = strlen(path) + sizeof ".partial";
  if (!o || !(o->path = strdup(path)) || !(o->partial = malloc(n)) || !(o->buf = malloc(OUT_BUF))) {
    trace_zip_abandon(o);
    zip_fail(err, errlen, path, "out of memory", NULL);
    return NULL;
  }
  snprintf(o->partial, n, "%s.partial", path);
  o->cap = OUT_BUF;
  o->kind = ends_with(path, ".zst")  ? TRACE_ZIP_ZSTD
            : ends_with(path, ".gz") ? TRACE_ZIP_GZIP
                                     : TRACE_ZIP_NONE;
  o->fd = open(o->partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (o->fd < 0) {
    zip_fail(err, errlen, path, "cannot write", strerror(errno));
    free(o->partial);
    o->partial = NULL; /* nothing to remove */
    trace_zip_abandon(o);
    return NULL;
  }
  int ok = 1;
  if (o->kind == TRACE_ZIP_ZSTD)
    ok = (o->zc = ZSTD_createCCtx()) &&
         !ZSTD_isError(ZSTD_CCtx_setParameter(o->zc, ZSTD_c_compressionLevel, 9)) &&
         !ZSTD_isError(ZSTD_CCtx_setParameter(o->zc, ZSTD_c_checksumFlag, 1));
  else if (o->kind == TRACE_ZIP_GZIP)
    ok = o->zs_open = deflateInit2(&o->zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
  if (!ok) {
    zip_fail(err, errlen, path, "cannot start the compressor", NULL);
    trace_zip_abandon(o);
    return NULL;
  }
  return o;
}

static int zstd_push(struct trace_zip_out *o, const void *p, size_t n, ZSTD_EndDirective mode) {
  ZSTD_inBuffer in = {p, n, 0};
  for (;;) {
    ZSTD_outBuffer out = {o->buf, o->cap, o->len};
    size_t left = ZSTD_compressStream2(o->zc, &out, &in, mode);
    o->len = out.pos;
    if (ZSTD_isError(left))
      return out_failed(o, "zstd", ZSTD_getErrorName(left));
    if (o->len == o->cap && drain(o))
      return -1;
    if (mode == ZSTD_e_continue ? in.pos == in.size : left == 0)
      return 0;
  }
}

static int gzip_push(struct trace_zip_out *o, const void *p, size_t n, int mode) {
  o->zs.next_in = (Bytef *)(uintptr_t)p;
  const uint8_t *end = (const uint8_t *)p + n;
  for (;;) {
    size_t in_left = (size_t)(end - o->zs.next_in);
    o->zs.avail_in = in_left > ZLIB_CHUNK ? ZLIB_CHUNK : (uInt)in_left;
    o->zs.next_out = o->buf + o->len;
    o->zs.avail_out = (uInt)(o->cap - o->len);
    int rc = deflate(&o->zs, in_left > ZLIB_CHUNK ? Z_NO_FLUSH : mode);
    o->len = o->cap - o->zs.avail_out;
    if (rc == Z_STREAM_ERROR)
      return out_failed(o, "gzip", "deflate failed");
    if (o->len == o->cap && drain(o))
      return -1;
    if (mode == Z_NO_FLUSH ? o->zs.next_in == end && o->zs.avail_out : rc == Z_STREAM_END)
      return 0;
  }
}

int trace_zip_write(void *ctx, const void *p, size_t n) {
  struct trace_zip_out *o = ctx;
  if (o->why[0])
    return -1;
  if (o->kind == TRACE_ZIP_ZSTD)
    return zstd_push(o, p, n, ZSTD_e_continue);
  if (o->kind == TRACE_ZIP_GZIP)
    return gzip_push(o, p, n, Z_NO_FLUSH);
  if (o->len + n > o->cap && drain(o))
    return -1;
  if (n >= o->cap)
    return write_all(o, p, n);
  memcpy(o->buf + o->len, p, n);
  o->len += n;
  return 0;
}

int trace_zip_close(struct trace_zip_out *o, char *err, size_t errlen) {
  if (!o->why[0]) {
    if (o->kind == TRACE_ZIP_ZSTD)
      zstd_push(o, NULL, 0, ZSTD_e_end);
    else if (o->kind == TRACE_ZIP_GZIP)
      gzip_push(o, "", 0, Z_FINISH);
  }
  if (!o->why[0])
    drain(o);
  if (close(o->fd) != 0 && !o->why[0])
    out_failed(o, "cannot write", strerror(errno));
  o->fd = -1;
  if (!o->why[0] && rename(o->partial, o->path) != 0)
    out_failed(o, "cannot rename the partial file", strerror(errno));
  int r = 0;
  if (o->why[0]) {
    zip_fail(err, errlen, o->path, o->why, NULL);
    r = -1;
  } else {
    free(o->partial);
    o->partial = NULL; /* renamed: nothing to remove */
  }
  trace_zip_abandon(o);
  return r;
}

void trace_zip_abandon(struct trace_zip_out *o) {
  if (!o)
    return;
  if (o->fd >= 0)
    close(o->fd);
  if (o->partial)
    unlink(o->partial);
  ZSTD_freeCCtx(o->zc);
  if (o->zs_open)
    deflateEnd(&o->zs);
  free(o->buf);
  free(o->path);
  free(o->partial);
  free(o);
}
