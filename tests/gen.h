/* Random traces for the tests: a fixed seed gives the same text. */
#ifndef TEST_GEN_H
#define TEST_GEN_H

#include <stddef.h>
#include <stdint.h>

enum gen_order { GEN_RANDOM, GEN_LIFO, GEN_FIFO };

struct gen_opts {
  uint64_t seed;
  int n_ops;
  int max_live; /* blocks live at most */
  enum gen_order order;
  size_t max_size; /* largest request */
  int resets;      /* emit an 'x' now and then */
  int threads;     /* > 1: tag ops; a block's ops stay on its thread but for cross_pct% */
  int cross_pct;
};

/* Returns a malloc'd "alloctrace 1" text; *ret_len is its length. */
char *gen_trace(const struct gen_opts *o, size_t *ret_len);

#endif
