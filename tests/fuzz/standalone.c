/*
 * Runs a fuzz target without libFuzzer, over the files (or every file of the directories)
 * given, so that the regression inputs replay in every build and with any compiler. A crash
 * or an abort fails the test.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return -1;
  }
  size_t cap = 4096, n = 0, k;
  uint8_t *buf = malloc(cap);
  while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
    n += k;
    if (n == cap) {
      uint8_t *b = realloc(buf, cap *= 2);
      if (!b)
        free(buf);
      buf = b;
    }
  }
  fclose(f);
  if (!buf)
    return -1;
  /* An exact-size copy, so that ASan sees a read past the input's end. */
  uint8_t *exact = malloc(n ? n : 1);
  if (!exact) {
    free(buf);
    return -1;
  }
  memcpy(exact, buf, n);
  free(buf);
  LLVMFuzzerTestOneInput(exact, n);
  free(exact);
  return 0;
}

static int run_path(const char *path, int *count) {
  struct stat st;
  if (stat(path, &st) != 0) {
    perror(path);
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) {
    (*count)++;
    return run_file(path);
  }
  struct dirent **names;
  int n = scandir(path, &names, NULL, alphasort), r = n < 0 ? -1 : 0;
  for (int i = 0; i < n; i++) {
    char sub[4096];
    if (names[i]->d_name[0] != '.' && r == 0) {
      snprintf(sub, sizeof sub, "%s/%s", path, names[i]->d_name);
      r = run_path(sub, count);
    }
    free(names[i]);
  }
  free(names);
  return r;
}

int main(int argc, char **argv) {
  int count = 0;
  for (int i = 1; i < argc; i++)
    if (run_path(argv[i], &count))
      return 1;
  printf("%d inputs replayed, none crashed\n", count);
  return 0;
}
