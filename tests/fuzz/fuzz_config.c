/*
 * Fuzz target: experiment files (--config), read through the command line's own path
 * (cli_parse with --config=FILE), so that the YAML reader, every setting's check and the
 * module list they build run as for a user. The bytes go to a memory file (memfd); globs in
 * `traces` expand in an empty, deleted directory. A refusal must say why (main.c escapes
 * control bytes when it prints the message).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli.h"
#include "fuzz.h"

static int fd = -1;
static char arg[64];

static void setup(void) {
  char dir[] = "/tmp/fuzz_config.XXXXXX";
  fd = memfd_create("fuzz.yaml", 0);
  /* The directory is removed at once: the process stays in it, empty, and leaves nothing. */
  if (fd < 0 || !mkdtemp(dir) || chdir(dir) != 0 || rmdir(dir) != 0)
    abort();
  snprintf(arg, sizeof arg, "--config=/proc/self/fd/%d", fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fd < 0)
    setup();
  if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
    abort();
  static struct cli c;
  char err[512] = "";
  char *argv[] = {"harness", arg, NULL};
  if (cli_parse(&c, 2, argv, err, sizeof err) != 0 && !err[0]) {
    fprintf(stderr, "fuzz: a refusal without a message\n");
    abort();
  }
  cli_free(&c);
  return 0;
}
