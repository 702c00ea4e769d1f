/* failsync.c — an LD_PRELOAD shim for fault-injection tests: while the file named by
 * $WARREN_FAILSYNC_TRIGGER exists, fdatasync() and fsync() fail with EIO, as a dying disk or a
 * lost network mount would make them; otherwise they do what libc does. Owns nothing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

int fdatasync(int fd);
int fsync(int fd);

static int triggered(void)
{
    const char *path = getenv("WARREN_FAILSYNC_TRIGGER");
    return path && access(path, F_OK) == 0;
}

int fdatasync(int fd)
{
    if (triggered()) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real ? real(fd) : -1;
}

int fsync(int fd)
{
    if (triggered()) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real ? real(fd) : -1;
}
