/*
 * The recorder: an LD_PRELOAD library that records every malloc, calloc, realloc,
 * reallocarray, free, posix_memalign, aligned_alloc, memalign, valloc and pvalloc of a
 * program, and of its children, as a binary trace (trace_bin.h; docs/trace-format.md).
 * scripts/record sets it up; the environment says where to write:
 *
 *   ALLOCTRACE_OUT=PATH       the trace of the first process; other processes write PATH
 *                             with ".PID" before the first dot of its file name
 *   ALLOCTRACE_ROOT_PID=PID   the process that writes PATH itself (else the first to write)
 *   ALLOCTRACE_ONLY=NAME      record only processes whose executable or argv[0] is NAME
 *
 * How it stays correct:
 * - The real functions come from dlsym(RTLD_NEXT); allocations made while dlsym runs are
 *   served from a static buffer, whose blocks are never recorded nor passed on to free.
 * - One lock orders the records and guards the address map: an allocation is recorded
 *   after it returns and before the program can see it, a free before the block goes back,
 *   and a realloc holds the lock across the real call, so that no other thread can record
 *   a new block at the old address before the realloc's record. Only successful calls are
 *   recorded.
 * - Addresses map to slots (a hash table in mmap'd memory, never malloc), the slots chosen
 *   as the trace reader chooses them, so a recorded trace needs no id table to read.
 * - Records go to a 4 MiB buffer, written with write(2) when full, at least once a second
 *   while the program allocates, and at the end. The end (a destructor for exit(), _exit
 *   and _Exit themselves, a handler for fatal signals that flushes and re-raises) rewrites
 *   the header with the counts and the completion mark; a trace without it (SIGKILL, a raw
 *   exit system call) is read up to its last whole record, with a warning.
 * - fork: the child writes its own file, which starts with the blocks it inherits.
 */
#include "trace_bin.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#define BUF_BYTES (4u << 20)
#define FLUSH_EVERY_NS 1000000000ll
#define PATH_BYTES 4096

/* --- the real functions --- */

static struct {
  void *(*malloc)(size_t);
  void (*free)(void *);
  void *(*calloc)(size_t, size_t);
  void *(*realloc)(void *, size_t);
  int (*posix_memalign)(void **, size_t, size_t);
  void *(*aligned_alloc)(size_t, size_t);
  void *(*memalign)(size_t, size_t);
  void *(*valloc)(size_t);
  void *(*pvalloc)(size_t);
  size_t (*usable_size)(void *);
  void (*exit_now)(int);
} real;

enum { INIT_NONE, INIT_RUNNING, INIT_DONE };
static atomic_int init_state;
static __thread int in_init; /* this thread is inside dlsym: serve from the static buffer */

/* --- the static buffer for allocations made during dlsym --- */

static _Alignas(64) unsigned char boot_buf[64 * 1024];
static size_t boot_used;

static int is_boot(const void *p) {
  return (const unsigned char *)p >= boot_buf &&
         (const unsigned char *)p < boot_buf + sizeof boot_buf;
}

/* A bump allocation; each block is preceded by its size. Zeroed: the buffer is never reused. */
static void *boot_alloc(size_t n, size_t align) {
  if (align < 16)
    align = 16;
  size_t at = (boot_used + 16 + align - 1) & ~(align - 1);
  if (n > sizeof boot_buf || at + n > sizeof boot_buf)
    return NULL;
  boot_used = at + n;
  memcpy(boot_buf + at - sizeof n, &n, sizeof n);
  return boot_buf + at;
}

static size_t boot_size(const void *p) {
  size_t n;
  memcpy(&n, (const unsigned char *)p - sizeof n, sizeof n);
  return n;
}

/* --- recorder state, all under the lock --- */

/* The map from live addresses to slots; what each slot holds is in rec.slot_info. */
struct entry {
  uintptr_t addr; /* 0: empty */
  uint32_t slot;
};

/* A slot's requested size, and log2 of its alignment (0 unless above 16) in the top byte:
 * only a fork's child needs them, to start its trace with the blocks it inherits. */
#define INFO_ALIGN_SHIFT 56

static struct {
  int on;       /* this process records */
  int finished; /* the end was written: every later record is written at once */
  int fd;       /* -1 until the first write */
  dev_t dev;    /* the file fd was opened on: a program that closes descriptors it */
  ino_t ino;    /* does not know of must not have its own file written to */
  pid_t pid, root_pid;
  int only; /* ALLOCTRACE_ONLY was given: the first matching process takes PATH */
  char out[PATH_BYTES];
  char meta[1024];
  /* the buffer */
  uint8_t *buf;
  size_t len;
  int64_t last_flush_ns;
  /* counts for the header */
  uint64_t records;
  uint32_t n_slots; /* slots used, slot 0 included */
  int next_thread, last_thread;
  /* the address map */
  struct entry *map;
  size_t map_cap, map_used;
  unsigned map_shift;
  uint32_t *free_slots;
  size_t n_free, cap_free;
  uint64_t *slot_info;
  size_t cap_info;
  /* what could not be recorded faithfully */
  uint64_t unknown_frees, stale_addrs, big_aligns;
} rec = {.fd = -1};

static __thread int tls_thread = -1;

/* A recursive spinlock: the thread that holds it may record again (a fork handler of the
 * program that allocates, a fatal signal inside the recorder). */
static atomic_uintptr_t lock_owner;
static unsigned lock_depth;

static uintptr_t self_id(void) {
  return (uintptr_t)&tls_thread; /* distinct per thread, and free to compute */
}

static void lock(void) {
  uintptr_t me = self_id(), expected = 0;
  if (atomic_load_explicit(&lock_owner, memory_order_relaxed) == me) {
    lock_depth++;
    return;
  }
  for (unsigned spins = 0; !atomic_compare_exchange_weak_explicit(
           &lock_owner, &expected, me, memory_order_acquire, memory_order_relaxed);
       spins++) {
    expected = 0;
    if (spins >= 100)
      sched_yield();
  }
  lock_depth = 1;
}

static void unlock(void) {
  if (--lock_depth == 0)
    atomic_store_explicit(&lock_owner, 0, memory_order_release);
}

/* For signal handlers: gives up after about a second (the holder may be stopped for good).
 * Returns 1 if the lock is held. */
static int lock_bounded(void) {
  uintptr_t me = self_id(), expected = 0;
  if (atomic_load_explicit(&lock_owner, memory_order_relaxed) == me) {
    lock_depth++;
    return 1;
  }
  for (unsigned spins = 0; spins < 20000; spins++) {
    expected = 0;
    if (atomic_compare_exchange_weak_explicit(&lock_owner, &expected, me, memory_order_acquire,
                                              memory_order_relaxed)) {
      lock_depth = 1;
      return 1;
    }
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
  }
  return 0;
}

/* --- small helpers that never allocate --- */

static void say(const char *a, const char *b, const char *c) {
  const char *parts[] = {"trace_recorder: ", a, b, c, "\n"};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
    if (parts[i] && write(2, parts[i], strlen(parts[i])) < 0)
      return;
}

/* Appends s to dst (size cap), always NUL-terminated. */
static void append(char *dst, size_t cap, const char *s) {
  size_t n = strlen(dst);
  while (*s && n + 1 < cap)
    dst[n++] = *s++;
  dst[n] = '\0';
}

static void append_u64(char *dst, size_t cap, uint64_t v) {
  char tmp[24];
  int n = 23;
  tmp[n] = '\0';
  do {
    tmp[--n] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  append(dst, cap, tmp + n);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void *map_pages(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static int write_all(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads a small /proc file whole into buf (NUL-terminated). Returns its length or -1. */
static long read_proc(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  return (long)n;
}

/* --- output --- */

/* PATH with ".PID" (and "-N" after the first try) before the first dot of the file name. */
static void pid_path(char *ret, size_t cap, int attempt) {
  const char *base = strrchr(rec.out, '/');
  base = base ? base + 1 : rec.out;
  const char *dot = strchr(base + (*base == '.'), '.');
  size_t head = dot ? (size_t)(dot - rec.out) : strlen(rec.out);
  if (head >= cap)
    head = cap - 1;
  memcpy(ret, rec.out, head);
  ret[head] = '\0';
  append(ret, cap, ".");
  append_u64(ret, cap, (uint64_t)rec.pid);
  if (attempt > 1) {
    append(ret, cap, "-");
    append_u64(ret, cap, (uint64_t)attempt);
  }
  if (dot)
    append(ret, cap, dot);
}

static void header(uint8_t *h, int complete) {
  uint32_t threads = rec.next_thread > 0 ? (uint32_t)rec.next_thread : 1;
  struct trace_bin_header hd = {.version = TRACE_BIN_VERSION,
                                .flags = complete ? TRACE_BIN_COMPLETE : 0,
                                .records = complete ? rec.records : 0,
                                .slots = complete ? rec.n_slots : 0,
                                .threads = complete ? threads : 0,
                                .meta_len = (uint32_t)strlen(rec.meta)};
  trace_bin_header_encode(h, &hd);
}

static void stop(const char *why, const char *path) {
  rec.on = 0;
  say(path, ": ", why);
}

/* Creates this process's file (never over another's) and writes the header. */
static int open_output(void) {
  char path[PATH_BYTES];
  int first = rec.only || rec.root_pid == 0 || rec.pid == rec.root_pid;
  int fd = -1;
  for (int attempt = first ? 0 : 1; fd < 0 && attempt < 100; attempt++) {
    path[0] = '\0';
    if (attempt == 0)
      append(path, sizeof path, rec.out);
    else
      pid_path(path, sizeof path, attempt);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) {
      stop(strerror(errno), path);
      return -1;
    }
  }
  if (fd < 0) {
    stop("a hundred files of this process's name exist already", rec.out);
    return -1;
  }
  uint8_t h[TRACE_BIN_HEADER];
  header(h, 0);
  if (write_all(fd, h, sizeof h) || write_all(fd, rec.meta, strlen(rec.meta))) {
    stop(strerror(errno), path);
    close(fd);
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) == 0) {
    rec.dev = st.st_dev;
    rec.ino = st.st_ino;
  }
  rec.fd = fd;
  return 0;
}

/* The trace's descriptor is still the trace's file (checked before each write: cheap, as
 * writes are megabytes apart). */
static int fd_is_ours(void) {
  struct stat st;
  if (fstat(rec.fd, &st) == 0 && st.st_dev == rec.dev && st.st_ino == rec.ino)
    return 1;
  stop("the program closed the trace's file descriptor: recording stopped", rec.out);
  return 0;
}

static void flush(void) {
  if (rec.on && getpid() != rec.pid)
    rec.on = 0; /* a child made without fork's handlers (raw clone): not ours to write */
  if (!rec.on || (rec.fd < 0 ? open_output() : !fd_is_ours())) {
    rec.len = 0;
    return;
  }
  if (rec.len && write_all(rec.fd, rec.buf, rec.len))
    stop(strerror(errno), rec.out);
  rec.len = 0;
  rec.last_flush_ns = now_ns();
}

/* Writes what is buffered and the header: complete when the counts match the data. */
static void finish(int complete) {
  flush();
  if (!rec.on)
    return;
  uint8_t h[TRACE_BIN_HEADER];
  header(h, complete);
  if (pwrite(rec.fd, h, sizeof h, 0) != (ssize_t)sizeof h)
    stop(strerror(errno), rec.out);
}

/* --- the address map: open addressing, linear probing, backward-shift deletion --- */

/* Blocks of one 4 KiB page land in one run of buckets (consecutive allocations are then
 * near each other in the table, not a cache miss each); pages are scattered. */
static size_t map_hash(uintptr_t a) {
  uint64_t page = (uint64_t)a >> 12;
  size_t base = (size_t)((page * 0x9E3779B97F4A7C15ull) >> rec.map_shift);
  return (base + ((a >> 4) & 255)) & (rec.map_cap - 1);
}

static struct entry *map_find(uintptr_t a) {
  size_t mask = rec.map_cap - 1;
  for (size_t i = map_hash(a);; i = (i + 1) & mask) {
    if (rec.map[i].addr == a || rec.map[i].addr == 0)
      return &rec.map[i];
  }
}

static int map_grow(void) {
  size_t cap = rec.map_cap ? rec.map_cap * 4 : (1u << 16); /* fewer rehashes */
  struct entry *old = rec.map;
  size_t old_cap = rec.map_cap;
  struct entry *m = map_pages(cap * sizeof *m);
  if (!m)
    return -1;
  rec.map = m;
  rec.map_cap = cap;
  rec.map_shift = 64 - (unsigned)__builtin_ctzll(cap);
  for (size_t i = 0; i < old_cap; i++)
    if (old[i].addr)
      *map_find(old[i].addr) = old[i];
  if (old)
    munmap(old, old_cap * sizeof *old);
  return 0;
}

static void map_delete(struct entry *e) {
  size_t mask = rec.map_cap - 1, i = (size_t)(e - rec.map), j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (rec.map[j].addr == 0)
      break;
    size_t k = map_hash(rec.map[j].addr);
    /* entry j may move to the hole at i unless its home k lies cyclically in (i, j] */
    int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      rec.map[i] = rec.map[j];
      i = j;
    }
  }
  rec.map[i].addr = 0;
  rec.map_used--;
}

/* --- slots, chosen as the reader chooses them: the last freed first --- */

static int grow_array(void *ret_p, size_t *cap, size_t elem) {
  void **p = ret_p;
  size_t n = *cap ? *cap * 2 : 4096;
  void *q = *p ? mremap(*p, *cap * elem, n * elem, MREMAP_MAYMOVE) : map_pages(n * elem);
  if (q == MAP_FAILED || !q) {
    stop("out of memory for the slot tables", rec.out);
    return -1;
  }
  *p = q;
  *cap = n;
  return 0;
}

/* Returns the slot, or 0 when out of memory (recording has stopped then). */
static uint32_t take_slot(uint64_t info) {
  uint32_t s;
  if (rec.n_free)
    s = rec.free_slots[--rec.n_free];
  else if (rec.n_slots < rec.cap_info || grow_array(&rec.slot_info, &rec.cap_info, 8) == 0)
    s = rec.n_slots++;
  else
    return 0;
  rec.slot_info[s] = info;
  return s;
}

static void give_slot(uint32_t s) {
  if (rec.n_free == rec.cap_free && grow_array(&rec.free_slots, &rec.cap_free, 4))
    return;
  rec.free_slots[rec.n_free++] = s;
}

/* --- records --- */

static void emit(enum trace_bin_code code, uint64_t slot, uint64_t size, unsigned align_lg) {
  if (tls_thread < 0)
    tls_thread = rec.next_thread < 65535 ? rec.next_thread++ : 65535;
  int th = tls_thread == rec.last_thread ? -1 : tls_thread;
  rec.last_thread = tls_thread;
  size_t n = trace_bin_record(rec.buf + rec.len, code, th, slot, size, align_lg);
  atomic_signal_fence(memory_order_seq_cst); /* a signal handler sees whole records only */
  rec.len += n;
  rec.records++;
  if (rec.finished)
    finish(1);
  else if (rec.len > BUF_BYTES - TRACE_BIN_RECORD_MAX)
    flush();
  else if ((rec.records & 4095) == 0 && now_ns() - rec.last_flush_ns > FLUSH_EVERY_NS)
    flush(); /* so that a killed process leaves most of its trace */
}

static unsigned align_log2(size_t align) {
  unsigned lg = 0;
  while (lg < 63 && (1ull << lg) < align)
    lg++;
  return lg;
}

/* A block is now live at p; align is 0 for a plain allocation. */
static void record_alloc(enum trace_bin_code code, void *p, uint64_t size, size_t align) {
  lock();
  if (!rec.on || ((rec.map_used + 1) * 2 > rec.map_cap && map_grow())) {
    unlock();
    return;
  }
  struct entry *e = map_find((uintptr_t)p);
  if (e->addr) { /* freed behind our back (not through free or realloc): say so now */
    rec.stale_addrs++;
    give_slot(e->slot);
    emit(TRACE_BIN_FREE, e->slot, 0, 0);
  } else
    rec.map_used++;
  unsigned lg = align > 16 ? align_log2(align) : 0;
  if (lg > 30) {
    lg = 30; /* the harness replays alignments up to 2^30 */
    rec.big_aligns++;
  }
  if (align)
    code = lg ? TRACE_BIN_MEMALIGN : TRACE_BIN_ALIGNED_SMALL;
  *e = (struct entry){.addr = (uintptr_t)p,
                      .slot = take_slot(size | (uint64_t)lg << INFO_ALIGN_SHIFT)};
  if (rec.on)
    emit(code, e->slot, size, lg);
  unlock();
}

/* Records the free of p (before it goes back), if p is a block the map knows. */
static void record_free(void *p, enum trace_bin_code code) {
  struct entry *e = map_find((uintptr_t)p);
  if (!e->addr) {
    rec.unknown_frees++;
    return;
  }
  uint32_t slot = e->slot;
  map_delete(e);
  give_slot(slot);
  emit(code, slot, 0, 0);
}

/* --- initialisation --- */

static void init_real(void) {
  in_init = 1;
  real.malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
  real.free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
  real.calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
  real.realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
  real.posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
  real.aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
  real.memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
  real.valloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "valloc");
  real.pvalloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "pvalloc");
  real.usable_size = (size_t(*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
  real.exit_now = (void (*)(int))dlsym(RTLD_NEXT, "_exit");
  in_init = 0;
  if (!real.malloc || !real.free || !real.calloc || !real.realloc || !real.memalign) {
    say("cannot find the C library's malloc", NULL, NULL);
    abort();
  }
}

/* The variable's value in /proc/self/environ (read before the C library has set up its
 * own environment, as the first allocation may be), or NULL. */
static const char *env_value(const char *env, size_t len, const char *name) {
  size_t k = strlen(name);
  for (size_t i = 0; i < len; i += strlen(env + i) + 1)
    if (strncmp(env + i, name, k) == 0 && env[i + k] == '=')
      return env + i + k + 1;
  return NULL;
}

static int matches_only(const char *only) {
  char exe[PATH_BYTES], cmd[PATH_BYTES];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = '\0';
  const char *b = strrchr(exe, '/');
  if (strcmp(b ? b + 1 : exe, only) == 0)
    return 1;
  if (read_proc("/proc/self/cmdline", cmd, sizeof cmd) <= 0)
    return 0;
  b = strrchr(cmd, '/');
  return strcmp(b ? b + 1 : cmd, only) == 0;
}

/* "pid 12, parent 3: ARGV..." with the executable's path when argv[0] is not it. */
static void make_meta(void) {
  char cmd[1024], exe[PATH_BYTES];
  long n = read_proc("/proc/self/cmdline", cmd, sizeof cmd);
  ssize_t e = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[e > 0 ? e : 0] = '\0';
  rec.meta[0] = '\0';
  append(rec.meta, sizeof rec.meta, "recorded: pid ");
  append_u64(rec.meta, sizeof rec.meta, (uint64_t)rec.pid);
  append(rec.meta, sizeof rec.meta, ", parent ");
  append_u64(rec.meta, sizeof rec.meta, (uint64_t)getppid());
  if (exe[0] && (n <= 0 || strcmp(cmd, exe) != 0)) {
    append(rec.meta, sizeof rec.meta, ", executable ");
    append(rec.meta, sizeof rec.meta, exe);
  }
  append(rec.meta, sizeof rec.meta, ": ");
  for (long i = 0; i < n - 1; i++) /* arguments are NUL-separated */
    if (cmd[i] == '\0' || (unsigned char)cmd[i] < 0x20)
      cmd[i] = ' ';
  append(rec.meta, sizeof rec.meta, n > 0 ? cmd : "?");
}

static void at_fork_prepare(void);
static void at_fork_parent(void);
static void at_fork_child(void);
static void catch_fatal_signals(void);

static void init_recording(void) {
  size_t cap = 1u << 20;
  char *env = map_pages(cap);
  long len = env ? read_proc("/proc/self/environ", env, cap) : -1;
  const char *out =
      len > 0 ? env_value(env, (size_t)len, "ALLOCTRACE_OUT") : getenv("ALLOCTRACE_OUT");
  const char *root =
      len > 0 ? env_value(env, (size_t)len, "ALLOCTRACE_ROOT_PID") : getenv("ALLOCTRACE_ROOT_PID");
  const char *only =
      len > 0 ? env_value(env, (size_t)len, "ALLOCTRACE_ONLY") : getenv("ALLOCTRACE_ONLY");
  rec.pid = getpid();
  if (out && out[0] && strlen(out) < sizeof rec.out - 32 && (!only || matches_only(only))) {
    if (out[0] != '/' && getcwd(rec.out, sizeof rec.out - 1)) /* the program may chdir */
      append(rec.out, sizeof rec.out, "/");
    append(rec.out, sizeof rec.out, out);
    rec.only = only != NULL;
    rec.root_pid = root ? (pid_t)strtol(root, NULL, 10) : 0;
    rec.buf = map_pages(BUF_BYTES);
    rec.n_slots = 1; /* slot 0 is free(NULL)'s */
    rec.last_thread = -1;
    rec.last_flush_ns = now_ns();
    rec.on = rec.buf && grow_array(&rec.free_slots, &rec.cap_free, 4) == 0 &&
             grow_array(&rec.slot_info, &rec.cap_info, 8) == 0 && map_grow() == 0;
    if (!rec.on)
      say("out of memory: not recording", NULL, NULL);
  }
  if (env)
    munmap(env, cap);
  if (!rec.on)
    return;
  make_meta();
  pthread_atfork(at_fork_prepare, at_fork_parent, at_fork_child);
  catch_fatal_signals();
}

static void init_slow(void) {
  int expected = INIT_NONE;
  if (atomic_compare_exchange_strong(&init_state, &expected, INIT_RUNNING)) {
    init_real();
    /* Done before the recording is set up: that may allocate (pthread_atfork does). */
    atomic_store(&init_state, INIT_DONE);
    init_recording();
    return;
  }
  while (atomic_load(&init_state) != INIT_DONE) /* another thread is initialising */
    sched_yield();
}

/* Returns 1 when the real functions are there; 0 inside dlsym (use the static buffer). */
static inline int ready(void) {
  if (__builtin_expect(atomic_load_explicit(&init_state, memory_order_acquire) == INIT_DONE, 1))
    return 1;
  if (in_init)
    return 0;
  init_slow();
  return !in_init;
}

__attribute__((constructor)) static void recorder_start(void) {
  ready();
}

__attribute__((destructor)) static void recorder_end(void) {
  lock();
  if (rec.on && rec.pid == getpid()) {
    finish(1);
    rec.finished = 1; /* later frees (other libraries' destructors) are written at once */
    if (rec.unknown_frees || rec.stale_addrs || rec.big_aligns) {
      char msg[160] = "";
      append_u64(msg, sizeof msg, rec.unknown_frees);
      append(msg, sizeof msg, " frees of blocks not allocated through malloc ignored, ");
      append_u64(msg, sizeof msg, rec.stale_addrs);
      append(msg, sizeof msg, " blocks freed unseen, ");
      append_u64(msg, sizeof msg, rec.big_aligns);
      append(msg, sizeof msg, " alignments above 2^30 recorded as 2^30");
      say(rec.out, ": ", msg);
    }
  }
  unlock();
}

/* --- fork --- */

static void at_fork_prepare(void) {
  lock(); /* the child's copy of the map and buffer is then consistent */
}

static void at_fork_parent(void) {
  unlock();
}

/* The child starts a trace of its own: the blocks it inherits are allocated first, on
 * thread 0, in new slots. */
static void at_fork_child(void) {
  atomic_store(&lock_owner, 0);
  lock_depth = 0;
  if (rec.fd >= 0)
    close(rec.fd); /* the parent's file */
  rec.fd = -1;
  rec.len = 0;
  rec.records = 0;
  rec.finished = 0;
  rec.pid = getpid();
  rec.n_slots = 1;
  rec.n_free = 0;
  tls_thread = 0;
  rec.next_thread = 1;
  rec.last_thread = -1;
  rec.last_flush_ns = now_ns();
  make_meta();
  /* new slots, numbered in map order; what they hold comes from the parent's table */
  uint64_t *old = rec.slot_info;
  size_t old_cap = rec.cap_info;
  rec.slot_info = NULL;
  rec.cap_info = 0;
  if (grow_array(&rec.slot_info, &rec.cap_info, 8))
    return;
  lock();
  for (size_t i = 0; i < rec.map_cap && rec.on; i++) {
    struct entry *e = &rec.map[i];
    if (!e->addr)
      continue;
    uint64_t info = old[e->slot];
    unsigned lg = (unsigned)(info >> INFO_ALIGN_SHIFT);
    e->slot = take_slot(info);
    if (rec.on)
      emit(lg ? TRACE_BIN_MEMALIGN : TRACE_BIN_MALLOC, e->slot,
           info & ((1ull << INFO_ALIGN_SHIFT) - 1), lg);
  }
  unlock();
  munmap(old, old_cap * sizeof *old);
}

/* --- the end: _exit and fatal signals --- */

EXPORT void _exit(int status) {
  if (atomic_load(&init_state) == INIT_DONE && rec.on && rec.pid == getpid()) {
    lock();
    finish(1);
    rec.finished = 1;
    unlock();
  }
  if (real.exit_now)
    real.exit_now(status);
  syscall(SYS_exit_group, status);
  __builtin_unreachable();
}

EXPORT void _Exit(int status) {
  _exit(status);
}

static const int fatal_signals[] = {SIGSEGV, SIGBUS,  SIGILL,  SIGFPE,  SIGABRT, SIGTRAP,
                                    SIGSYS,  SIGTERM, SIGINT,  SIGHUP,  SIGQUIT, SIGPIPE,
                                    SIGXCPU, SIGXFSZ, SIGALRM, SIGUSR1, SIGUSR2};

static void on_fatal_signal(int sig) {
  int saved = errno;
  /* not in a vfork child, whose memory is its parent's */
  if (rec.on && rec.pid == getpid()) {
    int held = lock_bounded();
    /* A thread stopped inside the recorder may have left a record half counted: then
     * the trace is only marked unfinished, and read to its last whole record. */
    finish(held && lock_depth == 1);
    rec.finished = 1;
    if (held)
      unlock();
  }
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, NULL);
  raise(sig); /* delivered with the default action once this handler returns */
  errno = saved;
}

/* Only where the disposition is the default: a signal the program's parent ignores stays
 * ignored, and the program's own handlers, installed later, replace this one. */
static void catch_fatal_signals(void) {
  static stack_t alt;
  stack_t cur;
  if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
    alt.ss_size = 64 * 1024;
    alt.ss_sp = map_pages(alt.ss_size); /* so that a stack overflow still flushes */
    if (alt.ss_sp)
      sigaltstack(&alt, NULL);
  }
  for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++) {
    struct sigaction old;
    if (sigaction(fatal_signals[i], NULL, &old) != 0 || old.sa_handler != SIG_DFL ||
        (old.sa_flags & SA_SIGINFO))
      continue;
    struct sigaction sa = {.sa_handler = on_fatal_signal, .sa_flags = SA_ONSTACK};
    sigfillset(&sa.sa_mask);
    sigaction(fatal_signals[i], &sa, NULL);
  }
}

/* --- the functions the program calls --- */

EXPORT void *malloc(size_t n) {
  if (!ready())
    return boot_alloc(n, 16);
  void *p = real.malloc(n);
  if (p && rec.on)
    record_alloc(TRACE_BIN_MALLOC, p, n, 0);
  return p;
}

EXPORT void *calloc(size_t count, size_t size) {
  if (!ready())
    return size && count > SIZE_MAX / size ? NULL : boot_alloc(count * size, 16);
  void *p = real.calloc(count, size);
  if (p && rec.on)
    record_alloc(TRACE_BIN_CALLOC, p, (uint64_t)count * size, 0);
  return p;
}

EXPORT void free(void *p) {
  if (is_boot(p))
    return; /* the static buffer's blocks are never given back */
  if (!ready())
    return;
  if (rec.on) {
    lock();
    if (!p)
      emit(TRACE_BIN_FREE, 0, 0, 0);
    else if (rec.on)
      record_free(p, TRACE_BIN_FREE);
    unlock();
  }
  real.free(p);
}

/* A realloc of a block from the static buffer: a new block, the contents copied. */
static void *realloc_boot(void *p, size_t n) {
  void *q = real.malloc(n ? n : 1);
  if (!q)
    return NULL;
  size_t old = boot_size(p);
  memcpy(q, p, old < n ? old : n);
  if (rec.on)
    record_alloc(TRACE_BIN_REALLOC_NEW, q, n, 0);
  return q;
}

static void *realloc_recorded(void *p, size_t n) {
  lock(); /* across the real call: see the opening comment */
  void *q = real.realloc(p, n);
  if (!rec.on) {
    unlock();
    return q;
  }
  if (!p && q) { /* realloc(NULL, n) is malloc */
    unlock();
    record_alloc(TRACE_BIN_REALLOC_NEW, q, n, 0);
    return q;
  }
  if (p && n == 0 && !q) /* realloc(p, 0) freed p */
    record_free(p, TRACE_BIN_REALLOC_FREE);
  else if (p && q) {
    struct entry *e = map_find((uintptr_t)p);
    if (!e->addr) { /* a block we never saw: record the new one as realloc(NULL, n) */
      rec.unknown_frees++;
      unlock();
      record_alloc(TRACE_BIN_REALLOC_NEW, q, n, 0);
      return q;
    }
    if (n == 0) { /* an allocator that returns a block for realloc(p, 0) */
      record_free(p, TRACE_BIN_REALLOC_FREE);
      unlock();
      record_alloc(TRACE_BIN_REALLOC_NEW, q, 0, 0);
      return q;
    }
    struct entry moved = *e;
    moved.addr = (uintptr_t)q;
    uint64_t align = rec.slot_info[moved.slot] & ~((1ull << INFO_ALIGN_SHIFT) - 1);
    rec.slot_info[moved.slot] = n | align;
    if (q != p) {
      map_delete(e);
      struct entry *to = map_find((uintptr_t)q);
      if (to->addr) { /* q was freed unseen before */
        rec.stale_addrs++;
        give_slot(to->slot);
        emit(TRACE_BIN_FREE, to->slot, 0, 0);
      } else
        rec.map_used++;
      e = to;
    }
    *e = moved;
    emit(TRACE_BIN_REALLOC, moved.slot, n, 0);
  }
  unlock();
  return q;
}

EXPORT void *realloc(void *p, size_t n) {
  if (!ready()) {
    void *q = boot_alloc(n, 16);
    if (q && p)
      memcpy(q, p, boot_size(p) < n ? boot_size(p) : n);
    return q;
  }
  if (is_boot(p))
    return realloc_boot(p, n);
  if (!rec.on)
    return real.realloc(p, n);
  return realloc_recorded(p, n);
}

EXPORT void *reallocarray(void *p, size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, count * size); /* not the C library's: it would call realloc again */
}

static void *aligned_result(void *p, size_t align, size_t size) {
  if (p && rec.on)
    record_alloc(TRACE_BIN_MEMALIGN, p, size, align ? align : 1);
  return p;
}

EXPORT int posix_memalign(void **ret, size_t align, size_t n) {
  if (!ready()) {
    *ret = boot_alloc(n, align);
    return *ret ? 0 : ENOMEM;
  }
  int r;
  if (real.posix_memalign)
    r = real.posix_memalign(ret, align, n);
  else {
    *ret = real.memalign(align, n);
    r = *ret ? 0 : ENOMEM;
  }
  if (r == 0)
    aligned_result(*ret, align, n);
  return r;
}

EXPORT void *aligned_alloc(size_t align, size_t n) {
  if (!ready())
    return boot_alloc(n, align);
  void *p = real.aligned_alloc ? real.aligned_alloc(align, n) : real.memalign(align, n);
  return aligned_result(p, align, n);
}

EXPORT void *memalign(size_t align, size_t n) {
  if (!ready())
    return boot_alloc(n, align);
  return aligned_result(real.memalign(align, n), align, n);
}

EXPORT void *valloc(size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  if (!ready())
    return boot_alloc(n, page);
  return aligned_result(real.valloc ? real.valloc(n) : real.memalign(page, n), page, n);
}

/* pvalloc rounds the size up to whole pages (at least one): the block holds them all. */
EXPORT void *pvalloc(size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t rounded = n ? (n + page - 1) & ~(page - 1) : page;
  if (!ready())
    return boot_alloc(rounded, page);
  void *p = real.pvalloc ? real.pvalloc(n) : real.memalign(page, rounded);
  return aligned_result(p, page, rounded);
}

EXPORT size_t malloc_usable_size(void *p) {
  if (is_boot(p))
    return boot_size(p);
  if (!ready() || !p)
    return 0;
  return real.usable_size ? real.usable_size(p) : 0;
}
