/* ha.c — owns DIR/warren.lock for ha.mode = shared: an exclusive OFD lock (F_OFD_SETLK) on the
 * whole file, taken before storage is opened and held through one file descriptor for the life
 * of the active process (the kernel, or the NFS server's lease, releases it when the process
 * dies), and the one-line holder record written into the file. Invariant: on_active runs only
 * after the lock is ours, the probe showed that a second open file description cannot take it,
 * the fence command (if any) succeeded and the new epoch is on disk. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "broker/ha/ha.h"
#include "lib/log.h"

extern char **environ;

static int lock_fd(int fd)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    return errno == EAGAIN || errno == EACCES ? -EAGAIN : -errno;
}

/* The epoch in a holder record, 0 when there is none. */
static uint64_t read_epoch(int fd)
{
    char buf[512];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    const char *e = strstr(buf, "epoch=");
    return e ? strtoull(e + 6, NULL, 10) : 0;
}

void ha_read_holder(const char *dir, char *buf, size_t cap)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/warren.lock", dir);
    buf[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = pread(fd, buf, cap - 1, 0);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    buf[strcspn(buf, "\n")] = 0;
}

/* Runs ha.fence_command with /bin/sh and waits for it; WARREN_HA_EPOCH and
 * WARREN_HA_PREVIOUS_HOLDER tell it what it is fencing. 0 when it exited 0. */
static int run_fence(struct ha *h, uint64_t epoch, const char *previous)
{
    char e[32];
    snprintf(e, sizeof e, "%" PRIu64, epoch);
    setenv("WARREN_HA_EPOCH", e, 1);
    setenv("WARREN_HA_PREVIOUS_HOLDER", previous, 1);
    char *argv[] = {"/bin/sh", "-c", (char *)h->fence_command, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
    unsetenv("WARREN_HA_EPOCH");
    unsetenv("WARREN_HA_PREVIOUS_HOLDER");
    if (rc != 0) {
        log_error("ha: cannot run ha.fence_command: %s", strerror(rc));
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        log_error("ha: ha.fence_command failed (%s %d); not taking over until it succeeds",
                  WIFEXITED(status) ? "exit status" : "signal",
                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        return -1;
    }
    return 0;
}

static void boot_id(char *buf, size_t cap)
{
    snprintf(buf, cap, "unknown");
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (fgets(buf, (int)cap, f))
            buf[strcspn(buf, "\n")] = 0;
        fclose(f);
    }
}

/* The lock is ours: probe it, fence, write the new epoch. 0, or -1 (the lock is let go). */
static int take_over(struct ha *h)
{
    /* Locks that do not exclude a second open file description exclude nothing. */
    int probe = open(h->path, O_RDWR | O_CLOEXEC);
    int prc = probe >= 0 ? lock_fd(probe) : -errno;
    if (probe >= 0)
        close(probe);
    if (prc != -EAGAIN) {
        log_error("ha: the filesystem of %s does not enforce locks (a second open file "
                  "description could take the lock: %s); ha.mode = shared needs working locks "
                  "(NFSv4 with local_lock=none, or a local filesystem)",
                  h->path, prc == 0 ? "it could" : strerror(-prc));
        return -2;
    }
    char previous[512];
    ssize_t n = pread(h->fd, previous, sizeof previous - 1, 0);
    previous[n > 0 ? n : 0] = 0;
    previous[strcspn(previous, "\n")] = 0;
    uint64_t epoch = read_epoch(h->fd) + 1;
    if (h->fence_command && run_fence(h, epoch, previous) < 0)
        return -1;
    char host[256] = "unknown", boot[64], rec[1024];
    gethostname(host, sizeof host - 1);
    boot_id(boot, sizeof boot);
    int len = snprintf(rec, sizeof rec, "host=%s pid=%d boot_id=%s started=%lld epoch=%" PRIu64
                       "\n", host, (int)getpid(), boot, (long long)time(NULL), epoch);
    if (pwrite(h->fd, rec, (size_t)len, 0) != len || ftruncate(h->fd, len) < 0 ||
        fdatasync(h->fd) < 0) {
        log_error("ha: cannot write the holder record into %s: %s", h->path, strerror(errno));
        return -1;
    }
    h->epoch = epoch;
    h->active = true;
    log_info("ha: took the lock on %s, epoch %" PRIu64 " (previous holder: %s)", h->path, epoch,
             previous[0] ? previous : "none");
    return 0;
}

/* Tries the lock once. 1 when the process is active now, 0 when another holds it, <0 on a
 * fatal error. */
static int try_once(struct ha *h)
{
    int rc = lock_fd(h->fd);
    if (rc == -EAGAIN)
        return 0;
    if (rc < 0) {
        log_error("ha: cannot lock %s: %s (ENOLCK: the filesystem has no lock service)",
                  h->path, strerror(-rc));
        return rc;
    }
    rc = take_over(h);
    if (rc == -1) { /* let the lock go and try again later */
        close(h->fd);
        h->fd = open(h->path, O_RDWR | O_CLOEXEC);
        return h->fd < 0 ? -errno : 0;
    }
    return rc < 0 ? -ENOLCK : 1;
}

static void on_poll(uv_timer_t *t)
{
    struct ha *h = t->data;
    int rc = try_once(h);
    if (rc == 0)
        return;
    uv_timer_stop(&h->poll);
    uv_close((uv_handle_t *)&h->poll, NULL);
    h->polling = false;
    if (rc > 0 && h->on_active)
        h->on_active(h);
    if (rc < 0)
        exit(1);
}

int ha_start(struct ha *h, uv_loop_t *loop, const char *dir, uint32_t poll_ms,
             const char *fence_command)
{
    h->loop = loop;
    h->fd = -1;
    h->poll_ms = poll_ms ? poll_ms : 100;
    h->fence_command = fence_command;
    snprintf(h->path, sizeof h->path, "%s/warren.lock", dir);
    (void)mkdir(dir, 0750); /* storage makes the rest of a missing path, as without HA */
    h->fd = open(h->path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (h->fd < 0) {
        int e = errno;
        log_error("ha: cannot open %s: %s; check that the data directory exists and is "
                  "writable", h->path, strerror(e));
        return -e;
    }
    int rc = try_once(h);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        if (h->on_active)
            h->on_active(h);
        return 0;
    }
    char holder[512];
    ha_read_holder(dir, holder, sizeof holder);
    log_info("ha: standby: %s is held by %s; polling every %u ms", h->path,
             holder[0] ? holder : "another process", h->poll_ms);
    uv_timer_init(loop, &h->poll);
    h->poll.data = h;
    h->polling = true;
    uv_timer_start(&h->poll, on_poll, h->poll_ms, h->poll_ms);
    return 0;
}

void ha_stop(struct ha *h)
{
    if (h->polling) {
        h->polling = false;
        uv_timer_stop(&h->poll);
        uv_close((uv_handle_t *)&h->poll, NULL);
    }
    if (h->fd >= 0) {
        close(h->fd); /* releases the OFD lock */
        h->fd = -1;
    }
    h->active = false;
}
