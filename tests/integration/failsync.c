/* failsync.c — an LD_PRELOAD shim for fault-injection tests: while the file named by
 * $WARREN_FAILSYNC_TRIGGER exists, fdatasync() and fsync() fail with EIO, as a dying disk or a
 * lost network mount would make them; while the file named by $WARREN_SLOWSYNC_TRIGGER exists,
 * they first sleep $WARREN_SLOWSYNC_MS milliseconds (default 20), as a slow disk would, so that
 * a test can act between two commits; otherwise they do what libc does. Owns nothing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int fdatasync(int fd);
int fsync(int fd);

static int triggered(const char *var)
{
    const char *path = getenv(var);
    return path && access(path, F_OK) == 0;
}

/* 0 to go on with the real call, -1 (errno EIO) to fail it. */
static int fault(void)
{
    if (triggered("WARREN_FAILSYNC_TRIGGER")) {
        errno = EIO;
        return -1;
    }
    if (triggered("WARREN_SLOWSYNC_TRIGGER")) {
        const char *ms = getenv("WARREN_SLOWSYNC_MS");
        long n = ms ? atol(ms) : 20;
        struct timespec t = {n / 1000, n % 1000 * 1000000L};
        nanosleep(&t, NULL);
    }
    return 0;
}

int fdatasync(int fd)
{
    if (fault() < 0)
        return -1;
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real ? real(fd) : -1;
}

int fsync(int fd)
{
    if (fault() < 0)
        return -1;
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real ? real(fd) : -1;
}
