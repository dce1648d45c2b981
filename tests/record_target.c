/* A program whose allocations are known exactly, for tests/test_record.sh to record.
 *
 *   record_target            the sequence below, between two markers (a block of 77777
 *                            bytes allocated first and freed last), on two threads
 *   record_target exit       allocations left live, then exit(0)
 *   record_target _exit      the same, then _exit(3)
 *   record_target abort      the same, then abort()
 *   record_target segv       the same, then a write through a null pointer
 *   record_target kill       two million records (the recorder flushes some), then SIGKILL
 *   record_target fork       a child that frees a block its parent allocated
 *
 * Built with -fno-builtin, so that the compiler keeps every call. */
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int go, done, finish;
static void *volatile handed; /* a block the worker allocates and main frees */

static void wait_for(atomic_int *flag) {
  while (!atomic_load(flag))
    sched_yield();
}

static void *worker(void *arg) {
  (void)arg;
  wait_for(&go);
  void *p = malloc(5);
  handed = malloc(24);
  free(p);
  atomic_store(&done, 1);
  wait_for(&finish); /* the thread's own exit frees come after the end marker */
  return NULL;
}

static int sequence(void) {
  pthread_t th;
  if (pthread_create(&th, NULL, worker, NULL) != 0)
    return 1;
  void *mark = malloc(77777);
  void *a = malloc(100);
  void *b = calloc(10, 20);
  a = realloc(a, 300);
  void *c = realloc(NULL, 50);
  void *d = NULL, *j = NULL;
  if (posix_memalign(&d, 64, 1000) != 0)
    return 1;
  void *e = aligned_alloc(4096, 8192);
  void *g = memalign(256, 77);
  void *h = valloc(10);
  void *i = pvalloc(100);
  if (posix_memalign(&j, 8, 40) != 0)
    return 1;
  free(NULL);
  c = realloc(c, 0); /* glibc frees c and returns NULL */
  a = reallocarray(a, 4, 100);
  atomic_store(&go, 1);
  wait_for(&done);
  free(handed);
  void *z = malloc(0);
  free(z);
  free(b);
  free(d);
  free(e);
  free(g);
  free(h);
  free(i);
  free(j);
  free(a);
  free(c);
  free(mark);
  atomic_store(&finish, 1);
  return pthread_join(th, NULL) != 0;
}

/* Blocks left live for an ending that frees nothing; their sizes are looked for. */
static void leave_live(void) {
  static void *volatile keep[3];
  keep[0] = malloc(111111);
  keep[1] = calloc(3, 37037);
  keep[2] = malloc(33);
  free((void *)keep[2]);
  keep[2] = malloc(222222);
}

static int fork_test(void) {
  void *inherited = malloc(4242);
  void *kept = malloc(4343);
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0)
    return 1;
  if (pid == 0) {
    free(inherited); /* allocated by the parent */
    void *mine = malloc(5151);
    free(mine);
    exit(0);
  }
  int status;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return 1;
  free(inherited);
  free(kept);
  return 0;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "") == 0)
    return sequence();
  if (strcmp(mode, "fork") == 0)
    return fork_test();
  if (strcmp(mode, "kill") == 0) {
    for (int k = 0; k < 1000000; k++)
      free(malloc(64 + (k & 255)));
    leave_live();
    raise(SIGKILL);
  }
  leave_live();
  if (strcmp(mode, "exit") == 0)
    exit(0);
  if (strcmp(mode, "_exit") == 0)
    _exit(3);
  if (strcmp(mode, "abort") == 0)
    abort();
  if (strcmp(mode, "segv") == 0)
    *(volatile int *)(uintptr_t)0 = 1;
  fprintf(stderr, "record_target: unknown mode '%s'\n", mode);
  return 2;
}
