/* The trace invariants every fuzz target checks after a successful parse. */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void require(int ok, const char *what, size_t op) {
  if (ok)
    return;
  fprintf(stderr, "fuzz: invariant broken at op %zu: %s\n", op, what);
  abort();
}

struct model {
  uint64_t *size;
  uint8_t *live;
  uint64_t bytes, peak;
  size_t peak_op, n_live, max_live;
  uint64_t reset_left; /* the next ops that must be a reset's frees */
};

static void model_alloc(struct model *m, const struct trace_op *o, size_t i) {
  require(o->slot != 0 && !m->live[o->slot], "allocation into a slot in use", i);
  require(o->size <= TRACE_MAX_SIZE, "size above TRACE_MAX_SIZE", i);
  if (o->kind == OP_MEMALIGN)
    require(o->arg > 16 && o->arg <= (1u << 30) && !(o->arg & (o->arg - 1)), "bad alignment", i);
  else
    require(o->arg == 0, "arg of a plain allocation", i);
  m->live[o->slot] = 1;
  m->size[o->slot] = o->size;
  m->bytes += o->size;
  if (++m->n_live > m->max_live)
    m->max_live = m->n_live;
}

static void model_free(struct model *m, const struct trace_op *o, size_t i) {
  if (o->slot == 0) {
    require(o->size == 0, "free(NULL) with a size", i);
    return;
  }
  require(m->live[o->slot], "free of a slot not in use", i);
  require(m->size[o->slot] == o->size, "free with another size than the block's", i);
  m->live[o->slot] = 0;
  m->bytes -= o->size;
  m->n_live--;
}

static void model_op(struct model *m, const struct trace *t, size_t i) {
  const struct trace_op *o = &t->ops[i];
  if (m->reset_left) {
    require(o->kind == OP_FREE && o->slot != 0, "a reset not followed by its frees", i);
    m->reset_left--;
  }
  switch (o->kind) {
  case OP_MALLOC:
  case OP_CALLOC:
  case OP_MEMALIGN:
    model_alloc(m, o, i);
    break;
  case OP_FREE:
    model_free(m, o, i);
    break;
  case OP_REALLOC:
    require(o->slot != 0 && m->live[o->slot], "realloc of a slot not in use", i);
    require(m->size[o->slot] == o->arg, "realloc with another old size than the block's", i);
    require(o->size > 0 && o->size <= TRACE_MAX_SIZE, "realloc to 0 or above the maximum", i);
    m->bytes = m->bytes - o->arg + o->size;
    m->size[o->slot] = o->size;
    break;
  case OP_RESET: /* its frees, one per live block, leave none live */
    require(o->arg == m->n_live && o->arg < t->n_ops - i, "a reset's count of frees", i);
    m->reset_left = o->arg;
    break;
  default:
    require(0, "unknown op kind", i);
  }
  if (m->bytes > m->peak) {
    m->peak = m->bytes;
    m->peak_op = i;
  }
}

void fz_verify(const struct trace *t) {
  require(t->n_slots >= 1 && t->n_threads >= 1, "no NULL slot or no thread", 0);
  struct model m = {.size = calloc(t->n_slots, sizeof *m.size), .live = calloc(t->n_slots, 1)};
  require(m.size && m.live, "out of memory in the fuzz target", 0);
  uint64_t resets = 0, callocs = 0;
  for (size_t i = 0; i < t->n_ops; i++) {
    const struct trace_op *o = &t->ops[i];
    require(o->slot < t->n_slots, "slot out of range", i);
    require(o->thread < t->n_threads, "thread tag not counted in n_threads", i);
    require(trace_line(t, i) >= 1, "line 0", i);
    require(i == 0 || trace_line(t, i) >= trace_line(t, i - 1), "lines out of order", i);
    model_op(&m, t, i);
    resets += o->kind == OP_RESET;
    callocs += o->kind == OP_CALLOC;
  }
  require(m.reset_left == 0, "a reset cut short", t->n_ops);
  require(resets == t->n_reset && callocs == t->n_calloc, "op counts", t->n_ops);
  require(m.peak == t->peak_live, "peak live", t->n_ops);
  require(m.peak == 0 || m.peak_op == t->peak_live_op, "the op of peak live", t->n_ops);
  require(m.max_live + 1 == t->n_slots, "more slots than blocks live at once", t->n_ops);
  free(m.size);
  free(m.live);
}

int fz_parse(struct trace *t, const char *name, const char *header, const uint8_t *data,
             size_t size) {
  char err[512];
  const char *buf = (const char *)data;
  char *copy = NULL;
  if (header) {
    size_t h = strlen(header);
    copy = malloc(h + size + 1);
    if (!copy)
      return -1;
    memcpy(copy, header, h);
    if (size)
      memcpy(copy + h, data, size);
    buf = copy;
    size += h;
  }
  int r = trace_parse(t, name, buf, size, err, sizeof err);
  free(copy);
  if (r == 0)
    fz_verify(t);
  else
    require(strncmp(err, name, strlen(name)) == 0 && err[strlen(name)] == ':',
            "an error that does not start with the trace's name", 0);
  return r;
}
