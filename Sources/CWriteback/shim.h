#ifndef LICENSED_CWRITEBACK_SHIM_H
#define LICENSED_CWRITEBACK_SHIM_H
/* Linux's sync_file_range, which Swift's Glibc module does not export (it needs _GNU_SOURCE).
   With `wait` 0, SYNC_FILE_RANGE_WRITE: starts writing a range of a file's dirty pages to disk
   and returns without waiting, so a large file written piece by piece is mostly on disk by the
   time its fsync is called. With `wait` 1, WAIT_BEFORE | WRITE | WAIT_AFTER: returns once the
   range is written (not the disk's cache flushed, not the file's metadata), so a writer that
   waits so for the part before the one it just handed over keeps at most two parts in flight.
   Either way a hint: only fsync makes anything durable. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>

static inline int licensed_writeback(int fd, long long offset, long long count, int wait) {
#if defined(__linux__)
    unsigned int flags = wait ? (SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER)
                              : SYNC_FILE_RANGE_WRITE;
    return sync_file_range(fd, (off_t)offset, (off_t)count, flags);
#else
    (void)fd;
    (void)offset;
    (void)count;
    (void)wait;
    return 0;
#endif
}

/* Puts the calling thread (and only it) under SCHED_IDLE: it runs when nothing else on its CPU
   wants to, and any other thread that wakes there preempts it at once. Returns 0, or -1 with
   errno. A thread cannot leave SCHED_IDLE again without CAP_SYS_NICE or a raised RLIMIT_NICE: call
   it only on a thread of its own that ends with its work. */
static inline int licensed_idle_priority(void) {
#if defined(__linux__)
    struct sched_param param = {0};
    return sched_setscheduler(0, SCHED_IDLE, &param);
#else
    errno = ENOSYS;
    return -1;
#endif
}

/* Linux's fallocate with mode 0: allocates `count` bytes of `fd` from `offset` and extends its
   size over them (they read as zeros), without writing them. Returns 0, or -1 with errno
   (EOPNOTSUPP where the file system cannot). */
static inline int licensed_preallocate(int fd, long long offset, long long count) {
#if defined(__linux__)
    return fallocate(fd, 0, (off_t)offset, (off_t)count);
#else
    (void)fd;
    (void)offset;
    (void)count;
    errno = EOPNOTSUPP;
    return -1;
#endif
}
#endif
