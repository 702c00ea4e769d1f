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
#include <pthread.h>
#include <semaphore.h>
#include "broker/ha/ha.h"
#include "broker/model/broker.h"
#include "lib/log.h"

extern char **environ;

static uint64_t mono_ms(void);

/* The value of option `name` in a comma-separated list ("" when absent). */
static void opt_value(const char *opts, const char *name, char *buf, size_t cap)
{
    size_t n = strlen(name);
    buf[0] = 0;
    for (const char *p = opts; *p;) {
        size_t len = strcspn(p, ",");
        if (len > n && !strncmp(p, name, n) && p[n] == '=') {
            snprintf(buf, cap, "%.*s", (int)(len - n - 1), p + n + 1);
            return;
        }
        p += len + (p[len] == ',');
    }
}

int ha_mount_verdict(const char *mountinfo, const char *path, char *why, size_t cap)
{
    /* The mount whose mount point is the longest prefix of path. */
    size_t best = 0;
    char fstype[64] = "", opts[2100] = "", point[1024] = "";
    for (const char *line = mountinfo; *line;) {
        size_t len = strcspn(line, "\n");
        char l[2048], mp[1024], mopts[1024], t[64], src[512], sopts[1024];
        snprintf(l, sizeof l, "%.*s", (int)len, line);
        line += len + (line[len] == '\n');
        char *dash = strstr(l, " - ");
        if (!dash || sscanf(l, "%*s %*s %*s %*s %1023s %1023s", mp, mopts) != 2 ||
            sscanf(dash + 3, "%63s %511s %1023s", t, src, sopts) != 3)
            continue;
        size_t n = strlen(mp);
        bool under = !strncmp(path, mp, n) && (path[n] == '/' || path[n] == 0 || n == 1);
        if (under && n >= best) {
            best = n;
            snprintf(fstype, sizeof fstype, "%s", t);
            snprintf(opts, sizeof opts, "%s,%s", mopts, sopts);
            snprintf(point, sizeof point, "%s", mp);
        }
    }
    if (strcmp(fstype, "nfs") && strcmp(fstype, "nfs4"))
        return 0;
    char vers[16], local_lock[32];
    opt_value(opts, "vers", vers, sizeof vers);
    if (!vers[0])
        opt_value(opts, "nfsvers", vers, sizeof vers);
    opt_value(opts, "local_lock", local_lock, sizeof local_lock);
    if (!strcmp(fstype, "nfs") && (vers[0] == '2' || vers[0] == '3' || !vers[0])) {
        snprintf(why, cap, "%s is NFS version %s: shared HA storage needs NFSv4 (4.1 on EFS), "
                 "whose leases let a dead holder's lock expire", point, vers[0] ? vers : "3");
        return -1;
    }
    if (local_lock[0] && strcmp(local_lock, "none")) {
        snprintf(why, cap, "%s is mounted with local_lock=%s: locks taken there are never seen "
                 "by the other host; mount it with local_lock=none", point, local_lock);
        return -1;
    }
    return 0;
}

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

void ha_describe(void *arg, struct ha_view *v)
{
    struct ha *h = arg;
    *v = (struct ha_view){.active = h->active, .epoch = h->epoch,
                          .heartbeat_ms = h->heartbeat_ms, .fence_deadline_ms = h->deadline_ms,
                          .last_heartbeat_ago_ms = mono_ms() - atomic_load(&h->last_beat_ms)};
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", h->path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    ha_read_holder(dir, v->holder, sizeof v->holder);
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

static uint64_t mono_ms(void)
{ /* CLOCK_MONOTONIC in ms */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The holder record with the current time as its heartbeat, on disk. 0 or -1 (errno set). */
static int write_record(struct ha *h)
{
    char rec[640];
    int len = snprintf(rec, sizeof rec, "%s heartbeat=%lld\n", h->record,
                       (long long)time(NULL));
    if (pwrite(h->fd, rec, (size_t)len, 0) != len)
        return -1;
    if (ftruncate(h->fd, len) < 0 || fdatasync(h->fd) < 0)
        return -1;
    return 0;
}

static char fence_line[512];
static size_t fence_len;
static sem_t fence_logged;

static void *fence_log(void *arg)
{
    (void)arg;
    (void)!write(2, fence_line, fence_len);
    sem_post(&fence_logged);
    return NULL;
}

/* Stops this process at once: it may no longer hold the lock, and the standby may be serving
 * or about to; nothing more may be confirmed or written. The log line is written by a thread
 * of its own and waited for 200 ms at most: the log file may live on the storage that stopped
 * answering, and nothing may delay the exit (no lock either: the loop thread may be stuck
 * anywhere). */
static void fence_self(const char *why)
{
    static atomic_flag fencing = ATOMIC_FLAG_INIT;
    if (atomic_flag_test_and_set(&fencing)) /* the other thread is at it: it will _exit */
        for (;;)
            pause();
    int n = snprintf(fence_line, sizeof fence_line, "[error] ha: fencing myself: %s; exiting at "
                     "once so that the standby can take over safely\n", why);
    fence_len = n < 0 ? 0 : (size_t)n < sizeof fence_line ? (size_t)n : sizeof fence_line - 1;
    pthread_t t;
    if (sem_init(&fence_logged, 0, 0) == 0 && pthread_create(&t, NULL, fence_log, NULL) == 0) {
        pthread_detach(t); /* never joined: the process ends below */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 200 * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (sem_timedwait(&fence_logged, &until) < 0 && errno == EINTR)
            ;
    }
    _exit(HA_FENCED_EXIT);
}

/* Is the record in the file still ours (same pid and epoch)? 1 yes, 0 another holder, -1 on a
 * read error (errno set). */
static int record_is_ours(struct ha *h)
{
    char buf[640];
    ssize_t n = pread(h->fd, buf, sizeof buf - 1, 0);
    if (n < 0)
        return -1;
    buf[n] = 0;
    size_t plen = strlen(h->record);
    return (size_t)n > plen && !memcmp(buf, h->record, plen) && buf[plen] == ' ';
}

static void *beat_main(void *arg)
{
    struct ha *h = arg;
    while (!atomic_load(&h->stopping)) {
        atomic_store(&h->beat_idle, false);
        int ours = record_is_ours(h);
        int rc = ours == 1 ? write_record(h) : -1;
        int e = errno;
        atomic_store(&h->beat_idle, true);
        if (atomic_load(&h->stopping))
            break;
        if (ours == 0)
            fence_self("the holder record in warren.lock is no longer mine (another process "
                       "took over)");
        if (rc == 0) {
            atomic_store(&h->last_beat_ms, mono_ms());
        } else if (e == EIO || e == ESTALE || e == ENOLCK) {
            char why[128];
            snprintf(why, sizeof why, "the shared storage answered %s",
                     e == EIO ? "EIO" : e == ESTALE ? "ESTALE" : "ENOLCK");
            fence_self(why);
        }
        /* Sleeps in slices, so that a graceful stop does not wait for a whole interval. */
        for (uint32_t slept = 0; slept < h->heartbeat_ms && !atomic_load(&h->stopping);
             slept += 20) {
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static void *watch_main(void *arg)
{
    struct ha *h = arg;
    uint32_t step = h->heartbeat_ms < 100 ? h->heartbeat_ms : 100;
    while (!atomic_load(&h->stopping)) {
        struct timespec ts = {step / 1000, (long)(step % 1000) * 1000000};
        nanosleep(&ts, NULL);
        if (mono_ms() - atomic_load(&h->last_beat_ms) > h->deadline_ms &&
            !atomic_load(&h->stopping))
            fence_self("no heartbeat reached the shared storage within ha.fence_deadline");
    }
    return NULL;
}

static int start_fencing(struct ha *h)
{
    atomic_store(&h->last_beat_ms, mono_ms());
    atomic_store(&h->stopping, false);
    atomic_store(&h->beat_idle, true);
    if (pthread_create(&h->beat_thread, NULL, beat_main, h) != 0)
        return -1;
    if (pthread_create(&h->watch_thread, NULL, watch_main, h) != 0) {
        atomic_store(&h->stopping, true);
        pthread_join(h->beat_thread, NULL);
        return -1;
    }
    h->threads = true;
    return 0;
}

void ha_set_fencing(struct ha *h, uint32_t heartbeat_ms, uint32_t deadline_ms)
{
    h->heartbeat_ms = heartbeat_ms;
    h->deadline_ms = deadline_ms;
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
        log_error("ha: the filesystem of %s does not enforce locks (%s%s); ha.mode = shared "
                  "needs working locks (NFSv4 with local_lock=none, or a local filesystem)",
                  h->path, prc == 0 ? "a second open file description got the lock too"
                                    : "probing with a second open file description: ",
                  prc == 0 ? "" : strerror(-prc));
        return -2;
    }
    char previous[512];
    ssize_t n = pread(h->fd, previous, sizeof previous - 1, 0);
    previous[n > 0 ? n : 0] = 0;
    previous[strcspn(previous, "\n")] = 0;
    uint64_t epoch = read_epoch(h->fd) + 1;
    if (h->fence_command && run_fence(h, epoch, previous) < 0)
        return -1;
    char host[256] = "unknown", boot[64];
    gethostname(host, sizeof host - 1);
    boot_id(boot, sizeof boot);
    snprintf(h->record, sizeof h->record,
             "host=%s pid=%d boot_id=%s started=%lld epoch=%" PRIu64, host, (int)getpid(), boot,
             (long long)time(NULL), epoch);
    if (write_record(h) < 0) {
        log_error("ha: cannot write the holder record into %s: %s", h->path, strerror(errno));
        return -1;
    }
    h->epoch = epoch;
    if (start_fencing(h) < 0) {
        log_error("ha: cannot start the fencing threads; not taking over");
        return -1;
    }
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
    return rc == -2 ? -EINVAL : rc < 0 ? -ENOLCK : 1; /* EINVAL: unsafe shared storage */
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
        exit(rc == -EINVAL ? HA_REFUSED_EXIT : 1);
}

int ha_start(struct ha *h, uv_loop_t *loop, const char *dir, uint32_t poll_ms,
             const char *fence_command)
{
    h->loop = loop;
    h->fd = -1;
    h->poll_ms = poll_ms ? poll_ms : 100;
    if (!h->heartbeat_ms)
        h->heartbeat_ms = 1000;
    if (!h->deadline_ms)
        h->deadline_ms = 10000;
    h->fence_command = fence_command;
    snprintf(h->path, sizeof h->path, "%s/warren.lock", dir);
    (void)mkdir(dir, 0750); /* storage makes the rest of a missing path, as without HA */
    char real[4096], why[1200];
    FILE *mi = fopen("/proc/self/mountinfo", "r");
    if (mi && realpath(dir, real)) {
        static char text[1 << 20];
        size_t n = fread(text, 1, sizeof text - 1, mi);
        text[n] = 0;
        if (ha_mount_verdict(text, real, why, sizeof why) < 0) {
            fclose(mi);
            log_error("ha: refusing to share the data directory: %s", why);
            return -EINVAL;
        }
    }
    if (mi)
        fclose(mi);
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
    bool stuck = false;
    if (h->threads) {
        atomic_store(&h->stopping, true);
        pthread_join(h->watch_thread, NULL);
        /* The beat thread sleeps at most heartbeat_ms; one stuck in a storage call stays. */
        for (int i = 0; i < 50 && !atomic_load(&h->beat_idle); i++)
            usleep(20000);
        stuck = !atomic_load(&h->beat_idle);
        if (stuck)
            pthread_detach(h->beat_thread);
        else
            pthread_join(h->beat_thread, NULL);
        h->threads = false;
    }
    if (stuck) { /* it may still use the fd: the lock goes with the process */
        h->active = false;
        return;
    }
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
