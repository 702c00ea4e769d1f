/* warren-testfs.c — owns one FUSE mount (one "host") of a passthrough filesystem over a backing
 * directory that other mounts may share, for the HA tests (issue 13): the mount's unsynced
 * writes, its part of the shared lock table (BACKING/.warren-testfs-state) and its lease, and the
 * control file MOUNT/.warren-testfs-ctl (freeze/thaw, eio/ok, lease S, powercut, sync, locks
 * off/on).
 * Does not own the backing files' contents beyond passing them through.
 * Invariants: a backing file only ever holds data that was fsync'ed/fdatasync'ed through some
 * mount (directory operations, truncate and fallocate are synchronous, as on NFS); a lock is
 * granted only when no live lock of another owner, through any mount, conflicts with it. */
#define FUSE_USE_VERSION 312
#include <fuse.h>
#include <fuse_lowlevel.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define CTL_PATH "/.warren-testfs-ctl"
#define STATE_NAME ".warren-testfs-state"
#define STATE_MAGIC 0x7366747473657477ull /* "wtestfts", version 1 */
#define MAX_CLIENTS 32
#define MAX_LOCKS 1024
#define MAX_THREADS 512 /* frozen requests each hold a worker thread */
#define OFF_MAX INT64_MAX

/* ---- the state file shared by every mount of one backing directory --------------------------
 * mmap'ed MAP_SHARED by each mount process; changed only under flock(LOCK_EX) on it (and the
 * process's own fs->mu). A client is one incarnation of one mount: a power cut starts a new one
 * and leaves the old one's locks to expire with its lease, as an NFS server does. */
struct client {
    char name[32];
    uint32_t gen;       /* bumped at every reuse or lease loss: older lock entries are dead */
    uint32_t live;      /* 1 while a mount renews it */
    int32_t pid;
    int32_t pad;
    int64_t renewed_ns; /* CLOCK_MONOTONIC (one machine: comparable across processes) */
    int64_t lease_ns;
};

enum { KIND_POSIX = 1, KIND_FLOCK = 2 }; /* Linux keeps the two apart; so do we */

struct lockent {
    uint32_t used, client, gen;
    uint16_t type, kind; /* F_RDLCK or F_WRLCK; KIND_* */
    uint64_t dev, ino;   /* the backing inode */
    uint64_t owner;      /* the kernel's lock owner (process, or open file for OFD and flock) */
    uint64_t fh;         /* serial of the handle it was taken through */
    int64_t start, end;  /* inclusive; end == OFF_MAX: to the end of the file */
    int32_t pid, pad;
};

struct shared {
    uint64_t magic;
    uint64_t seq; /* the write log's sequence, shared by every mount (atomic) */
    struct client clients[MAX_CLIENTS];
    struct lockent locks[MAX_LOCKS];
};

/* ---- this mount --------------------------------------------------------------------------- */
struct extent {
    int64_t off;
    size_t len, cap;
    char *data; /* owned */
};

/* One backing inode's unsynced writes through this mount; lives while a handle is open or it
 * holds unsynced data (a closed file keeps them until fsync or a power cut). */
struct wfile {
    struct wfile *next; /* in fs->files, under fs->mu */
    dev_t dev;
    ino_t ino;
    int fd;             /* owned: backing fd used to read and to flush (read-write if possible) */
    int refs;           /* open handles, under fs->mu */
    char *path;         /* owned: path at first open, for the log */
    pthread_mutex_t mu; /* guards ext, n, cap */
    struct extent *ext; /* owned: sorted, disjoint, not adjacent */
    size_t n, cap;
};

struct handle {
    struct handle *prev, *next; /* in fs->handles, under fs->mu */
    uint64_t serial;
    int fd;            /* owned: the backing fd opened with the caller's flags */
    struct wfile *wf;  /* ref */
    uint32_t boot;     /* fs->boot at open: a power cut kills older handles (EIO) */
    bool append, ctl;
    bool lost;         /* a lock taken through it was lost with the lease: EIO from now on */
};

struct testfs {
    const char *name;            /* borrowed: argv */
    int dirfd;                   /* owned: backing directory */
    int state_fd, log_fd;        /* owned */
    struct shared *sh;           /* owned mapping */
    struct fuse *fuse;           /* borrowed: set by main */
    pthread_mutex_t mu;          /* guards everything below and the state file with flock */
    pthread_cond_t changed;      /* thaw, stop */
    bool frozen, eio, stopping;
    bool nolocks;                /* 'locks off': every lock granted, none kept (locks that
                                    exclude nothing, as local_lock=all seen from another host) */
    int64_t lease_ns;
    uint32_t me;                 /* our client slot */
    uint32_t boot;
    uint64_t serial;
    struct wfile *files;
    struct handle handles;       /* list head */
};

static struct testfs *tfs(void)
{
    return fuse_get_context()->private_data;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *rel(const char *path)
{
    return path[1] ? path + 1 : ".";
}

static bool is_state(const char *path)
{
    return path && strcmp(path, "/" STATE_NAME) == 0;
}

static bool is_ctl(const char *path)
{
    return path && strcmp(path, CTL_PATH) == 0;
}

/* One line in LOGDIR/writes.log: "SEQ TIME_NS MOUNT PID OP OFFSET LENGTH PATH [PATH2]". */
static void log_op(struct testfs *fs, const char *op, const char *path, int64_t off, int64_t len,
                   const char *path2)
{
    if (fs->log_fd < 0)
        return;
    uint64_t seq = __atomic_add_fetch(&fs->sh->seq, 1, __ATOMIC_SEQ_CST);
    char line[2 * PATH_MAX + 200];
    int n = snprintf(line, sizeof line, "%" PRIu64 " %" PRId64 " %s %d %s %" PRId64 " %" PRId64
                     " %s%s%s\n", seq, now_ns(), fs->name, (int)fuse_get_context()->pid, op, off,
                     len, path ? path : "?", path2 ? " " : "", path2 ? path2 : "");
    if (n > (int)sizeof line)
        n = sizeof line;
    if (write(fs->log_fd, line, n) < 0) { /* the log is best effort; the test notices gaps */
    }
}

/* ---- freeze, EIO and dying requesters -------------------------------------------------------- */

/* True when the thread that sent the current request is being killed (SIGKILL pending, or
 * exiting): a frozen request then fails with EINTR, as a killable hard NFS mount lets go. */
static bool requester_dying(void)
{
    pid_t pid = fuse_get_context()->pid;
    if (pid <= 0)
        return false;
    char p[64], buf[2048];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return true;
    buf[n] = 0;
    char *s = strrchr(buf, ')'), state = 0;
    unsigned long flags = 0;
    if (!s || sscanf(s + 1, " %c %*d %*d %*d %*d %*d %lu", &state, &flags) != 2)
        return false;
    if (state == 'Z' || state == 'X' || (flags & 0x4 /* PF_EXITING */))
        return true;
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    if ((fd = open(p, O_RDONLY | O_CLOEXEC)) < 0)
        return true;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    for (const char *key = "SigPnd:", *k2 = "ShdPnd:"; key; key = k2, k2 = NULL) {
        const char *l = strstr(buf, key);
        if (l && (strtoull(l + 7, NULL, 16) & (1ull << (SIGKILL - 1))))
            return true;
    }
    return false;
}

enum gate {
    G_IO,      /* data and metadata: blocks while frozen, EIO under eio */
    G_LOCK,    /* taking or testing a lock: likewise */
    G_UNLOCK,  /* unlocking, flush at close: blocks while frozen, works under eio */
    G_RELEASE, /* last close: blocks while frozen even for a dying process (its locks stay on
                  the "server" until thaw or lease expiry), works under eio */
};

/* Every operation but the control file's passes here first. h (may be NULL): the handle used;
 * a handle from before a power cut, or one whose lock was lost with the lease, gets EIO. */
static int enter(struct testfs *fs, enum gate g, const struct handle *h)
{
    int rc = 0;
    pthread_mutex_lock(&fs->mu);
    while (fs->frozen && !fs->stopping) {
        if (g != G_RELEASE && requester_dying()) {
            rc = -EINTR;
            goto out;
        }
        if (fuse_session_exited(fuse_get_session(fs->fuse))) {
            rc = -EIO;
            goto out;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&fs->changed, &fs->mu, &ts);
    }
    if (fs->eio && (g == G_IO || g == G_LOCK))
        rc = -EIO;
    else if (h && g != G_RELEASE && g != G_UNLOCK && (h->boot != fs->boot || h->lost))
        rc = -EIO;
out:
    pthread_mutex_unlock(&fs->mu);
    return rc;
}

/* ---- the shared lock table ---------------------------------------------------------------- */

static void state_lock(struct testfs *fs)
{
    while (flock(fs->state_fd, LOCK_EX) < 0 && errno == EINTR)
        ;
}

static void state_unlock(struct testfs *fs)
{
    flock(fs->state_fd, LOCK_UN);
}

static bool client_alive(const struct client *c, int64_t now)
{
    return c->name[0] && now <= c->renewed_ns + c->lease_ns;
}

static bool entry_alive(const struct shared *sh, const struct lockent *e, int64_t now)
{
    const struct client *c = &sh->clients[e->client];
    return e->used && e->gen == c->gen && client_alive(c, now);
}

/* A slot for a new incarnation of this mount. Under fs->mu and the state lock. A slot is free
 * when unused, or nobody renews it (or its process is gone) and its lease has expired. */
static int client_new(struct testfs *fs)
{
    int64_t now = now_ns();
    for (uint32_t i = 0; i < MAX_CLIENTS; i++) {
        struct client *c = &fs->sh->clients[i];
        bool gone = !c->live || (c->pid > 0 && kill(c->pid, 0) < 0 && errno == ESRCH);
        if (c->name[0] && !(gone && !client_alive(c, now)))
            continue;
        snprintf(c->name, sizeof c->name, "%s", fs->name);
        c->gen++;
        c->live = 1;
        c->pid = getpid();
        c->renewed_ns = now;
        c->lease_ns = fs->lease_ns;
        fs->me = i;
        return 0;
    }
    return -ENOSPC;
}

static size_t all_files(struct testfs *fs, bool flush);

/* Our lease lapsed (we were frozen, or could not renew): as an NFSv4 client whose lease
 * expired, all its state on the server is gone: every lock of ours, every open (the handles
 * fail with EIO from now on) and the unsynced writes, which the server would refuse under the
 * expired state (so they can never land after another client took over). Under fs->mu and
 * the state lock. */
static void lease_lost(struct testfs *fs)
{
    struct client *c = &fs->sh->clients[fs->me];
    for (int i = 0; i < MAX_LOCKS; i++) {
        struct lockent *e = &fs->sh->locks[i];
        if (e->used && e->client == fs->me && e->gen == c->gen)
            e->used = 0;
    }
    for (struct handle *h = fs->handles.next; h != &fs->handles; h = h->next)
        h->lost = true;
    size_t dropped = all_files(fs, false);
    c->gen++;
    log_op(fs, "leaselost", "/", 0, (int64_t)dropped, NULL);
    fprintf(stderr, "warren-testfs %s: lease expired; locks, opens and %zu unsynced bytes lost\n",
            fs->name, dropped);
}

/* Renews our lease, or finds that it has lapsed. Under fs->mu; takes the state lock. */
static void lease_renew(struct testfs *fs)
{
    state_lock(fs);
    struct client *c = &fs->sh->clients[fs->me];
    int64_t now = now_ns();
    if (!client_alive(c, now))
        lease_lost(fs);
    c->renewed_ns = now;
    c->lease_ns = fs->lease_ns;
    state_unlock(fs);
}

static void *renewer(void *arg)
{
    struct testfs *fs = arg;
    pthread_mutex_lock(&fs->mu);
    while (!fs->stopping) {
        if (!fs->frozen)
            lease_renew(fs);
        int64_t period = fs->lease_ns / 5;
        if (period > 1000000000)
            period = 1000000000;
        if (period < 10000000)
            period = 10000000;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t t = (int64_t)ts.tv_nsec + period;
        ts.tv_sec += t / 1000000000;
        ts.tv_nsec = t % 1000000000;
        pthread_cond_timedwait(&fs->changed, &fs->mu, &ts);
    }
    pthread_mutex_unlock(&fs->mu);
    return NULL;
}

static bool overlaps(const struct lockent *e, int64_t start, int64_t end)
{
    return e->start <= end && start <= e->end;
}

/* The live entry of another owner that conflicts with a lock of type on [start, end], or NULL.
 * Under the state lock. */
static struct lockent *conflict(struct testfs *fs, const struct stat *st, int kind,
                                uint64_t owner, int type, int64_t start, int64_t end)
{
    int64_t now = now_ns();
    uint32_t gen = fs->sh->clients[fs->me].gen;
    for (int i = 0; i < MAX_LOCKS; i++) {
        struct lockent *e = &fs->sh->locks[i];
        if (!entry_alive(fs->sh, e, now) || e->dev != st->st_dev || e->ino != st->st_ino ||
            e->kind != kind || !overlaps(e, start, end))
            continue;
        if (e->client == fs->me && e->gen == gen && e->owner == owner)
            continue;
        if (type == F_WRLCK || e->type == F_WRLCK)
            return e;
    }
    return NULL;
}

static struct lockent *free_entry(struct testfs *fs)
{
    int64_t now = now_ns();
    for (int i = 0; i < MAX_LOCKS; i++) {
        struct lockent *e = &fs->sh->locks[i];
        const struct client *c = &fs->sh->clients[e->client];
        /* dead entries of a slot someone still renews are kept: its owner must find them to
         * learn that its lease was lost */
        if (!e->used || e->gen != c->gen || (!c->live && !client_alive(c, now)))
            return memset(e, 0, sizeof *e);
    }
    return NULL;
}

/* Sets (type F_RDLCK/F_WRLCK) or removes (F_UNLCK) this owner's lock on [start, end], POSIX
 * style: the owner's existing locks in the range are replaced, split where needed.
 * 0, -EAGAIN on a conflict, -ENOLCK when the table is full. Under fs->mu; takes the state
 * lock. */
static int setlk(struct testfs *fs, const struct handle *h, int kind, uint64_t owner, int type,
                 int64_t start, int64_t end, pid_t pid)
{
    struct stat st = {.st_dev = h->wf->dev, .st_ino = h->wf->ino};
    int rc = 0;
    state_lock(fs);
    uint32_t gen = fs->sh->clients[fs->me].gen;
    if (type != F_UNLCK && conflict(fs, &st, kind, owner, type, start, end)) {
        rc = -EAGAIN;
        goto out;
    }
    struct lockent *split = NULL, *added = NULL, *right = NULL;
    for (int i = 0; i < MAX_LOCKS; i++) {
        struct lockent *e = &fs->sh->locks[i];
        if (e->used && e->client == fs->me && e->gen == gen && e->owner == owner &&
            e->kind == kind && e->dev == st.st_dev && e->ino == st.st_ino &&
            e->start < start && e->end > end)
            split = e; /* one of our locks sticks out on both sides: it becomes two */
    }
    if (type != F_UNLCK && !(added = free_entry(fs))) {
        rc = -ENOLCK;
        goto out;
    }
    if (added)
        added->used = 1; /* reserved; filled in below */
    if (split && !(right = free_entry(fs))) {
        if (added)
            added->used = 0;
        rc = -ENOLCK;
        goto out;
    }
    for (int i = 0; i < MAX_LOCKS; i++) {
        struct lockent *e = &fs->sh->locks[i];
        if (!e->used || e == added || e->client != fs->me || e->gen != gen ||
            e->owner != owner || e->kind != kind || e->dev != st.st_dev ||
            e->ino != st.st_ino || !overlaps(e, start, end))
            continue;
        if (e == split) {
            *right = *e;
            right->start = end + 1;
            e->end = start - 1;
        } else if (e->start < start) {
            e->end = start - 1;
        } else if (e->end > end) {
            e->start = end + 1;
        } else {
            e->used = 0;
        }
    }
    if (added)
        *added = (struct lockent){.used = 1, .client = fs->me, .gen = gen, .type = type,
                                  .kind = kind, .dev = st.st_dev, .ino = st.st_ino,
                                  .owner = owner, .fh = h->serial, .start = start, .end = end,
                                  .pid = pid};
out:
    state_unlock(fs);
    return rc;
}

/* Drops every lock taken through handle serial (its last close). Under fs->mu. */
static void drop_locks(struct testfs *fs, uint64_t serial)
{
    state_lock(fs);
    uint32_t gen = fs->sh->clients[fs->me].gen;
    for (int i = 0; i < MAX_LOCKS; i++) {
        struct lockent *e = &fs->sh->locks[i];
        if (e->used && e->client == fs->me && e->gen == gen && e->fh == serial)
            e->used = 0;
    }
    state_unlock(fs);
}

/* Tries lk until it is not -EAGAIN (wait: polling every 10 ms, as long as the request is not
 * interrupted). */
static int setlk_wait(struct testfs *fs, struct handle *h, int kind, uint64_t owner, int type,
                      int64_t start, int64_t end, pid_t pid, bool wait)
{
    for (;;) {
        int rc = enter(fs, type == F_UNLCK ? G_UNLOCK : G_LOCK, h);
        if (rc < 0)
            return rc;
        pthread_mutex_lock(&fs->mu);
        rc = setlk(fs, h, kind, owner, type, start, end, pid);
        pthread_mutex_unlock(&fs->mu);
        if (rc != -EAGAIN || !wait)
            return rc;
        if (fuse_interrupted())
            return -EINTR;
        usleep(10000);
    }
}

/* ---- unsynced writes ------------------------------------------------------------------------ */

static int64_t ext_end(const struct extent *e)
{
    return e->off + (int64_t)e->len;
}

/* The first extent that ends at or after off. */
static size_t ext_find(const struct wfile *wf, int64_t off)
{
    size_t lo = 0, hi = wf->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ext_end(&wf->ext[mid]) < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int ext_reserve(struct extent *e, size_t need)
{
    if (need <= e->cap)
        return 0;
    size_t cap = e->cap * 2 > need ? e->cap * 2 : need;
    char *d = realloc(e->data, cap);
    if (!d)
        return -ENOMEM;
    e->data = d;
    e->cap = cap;
    return 0;
}

/* Keeps [off, off + n) in the cache, merged with the extents it touches. Under wf->mu. */
static int ext_put(struct wfile *wf, int64_t off, const char *buf, size_t n)
{
    int64_t end = off + (int64_t)n;
    size_t i = ext_find(wf, off), j = i;
    while (j < wf->n && wf->ext[j].off <= end)
        j++;
    if (j == i + 1 && wf->ext[i].off <= off) { /* inside, over the end of, or right after one */
        struct extent *e = &wf->ext[i];
        size_t need = (size_t)((end > ext_end(e) ? end : ext_end(e)) - e->off);
        if (ext_reserve(e, need) < 0)
            return -ENOMEM;
        memcpy(e->data + (off - e->off), buf, n);
        e->len = need;
        return 0;
    }
    struct extent x = {.off = i < j && wf->ext[i].off < off ? wf->ext[i].off : off};
    int64_t hi = i < j && ext_end(&wf->ext[j - 1]) > end ? ext_end(&wf->ext[j - 1]) : end;
    x.len = x.cap = (size_t)(hi - x.off);
    if (!(x.data = malloc(x.cap)))
        return -ENOMEM;
    for (size_t k = i; k < j; k++) {
        memcpy(x.data + (wf->ext[k].off - x.off), wf->ext[k].data, wf->ext[k].len);
        free(wf->ext[k].data);
    }
    memcpy(x.data + (off - x.off), buf, n);
    if (i == j) { /* a new extent at i */
        if (wf->n == wf->cap) {
            size_t cap = wf->cap ? wf->cap * 2 : 16;
            struct extent *a = realloc(wf->ext, cap * sizeof *a);
            if (!a) {
                free(x.data);
                return -ENOMEM;
            }
            wf->ext = a;
            wf->cap = cap;
        }
        memmove(&wf->ext[i + 1], &wf->ext[i], (wf->n - i) * sizeof *wf->ext);
        wf->n++;
    } else { /* [i, j) become one */
        memmove(&wf->ext[i + 1], &wf->ext[j], (wf->n - j) * sizeof *wf->ext);
        wf->n -= j - i - 1;
    }
    wf->ext[i] = x;
    return 0;
}

/* Forgets cached bytes at and after size. Under wf->mu. */
static void ext_clip(struct wfile *wf, int64_t size)
{
    while (wf->n && wf->ext[wf->n - 1].off >= size)
        free(wf->ext[--wf->n].data);
    if (wf->n && ext_end(&wf->ext[wf->n - 1]) > size)
        wf->ext[wf->n - 1].len = (size_t)(size - wf->ext[wf->n - 1].off);
}

static size_t ext_bytes(const struct wfile *wf)
{
    size_t b = 0;
    for (size_t i = 0; i < wf->n; i++)
        b += wf->ext[i].len;
    return b;
}

/* The size this mount sees: the backing file's, or further when unsynced writes extend it. */
static int64_t wf_size(struct wfile *wf)
{
    struct stat st;
    int64_t size = fstat(wf->fd, &st) == 0 ? st.st_size : 0;
    if (wf->n && ext_end(&wf->ext[wf->n - 1]) > size)
        size = ext_end(&wf->ext[wf->n - 1]);
    return size;
}

/* Writes the cached extents to the backing file and syncs it; the cache is emptied only when
 * all of it reached the disk. Returns bytes flushed or -errno. Under wf->mu. */
static int64_t wf_flush(struct wfile *wf, bool datasync)
{
    int64_t bytes = 0;
    for (size_t i = 0; i < wf->n; i++) {
        struct extent *e = &wf->ext[i];
        for (size_t done = 0; done < e->len;) {
            ssize_t w = pwrite(wf->fd, e->data + done, e->len - done, e->off + (int64_t)done);
            if (w < 0)
                return -errno;
            done += (size_t)w;
        }
        bytes += (int64_t)e->len;
    }
    if ((datasync ? fdatasync(wf->fd) : fsync(wf->fd)) < 0)
        return -errno;
    ext_clip(wf, 0);
    return bytes;
}

static struct wfile *wf_lookup(struct testfs *fs, dev_t dev, ino_t ino)
{
    for (struct wfile *wf = fs->files; wf; wf = wf->next)
        if (wf->dev == dev && wf->ino == ino)
            return wf;
    return NULL;
}

static void wf_free(struct testfs *fs, struct wfile *wf)
{
    for (struct wfile **p = &fs->files; *p; p = &(*p)->next)
        if (*p == wf) {
            *p = wf->next;
            break;
        }
    ext_clip(wf, 0);
    free(wf->ext);
    close(wf->fd);
    free(wf->path);
    pthread_mutex_destroy(&wf->mu);
    free(wf);
}

/* ---- passthrough operations ------------------------------------------------------------------ */

static struct handle *hnd(const struct fuse_file_info *fi)
{
    return fi ? (struct handle *)(uintptr_t)fi->fh : NULL;
}

static int t_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    struct testfs *fs = tfs();
    struct handle *h = hnd(fi);
    if (is_ctl(path) || (h && h->ctl)) {
        memset(st, 0, sizeof *st);
        st->st_mode = S_IFREG | 0666;
        st->st_nlink = 1;
        return 0;
    }
    if (is_state(path))
        return -ENOENT;
    int rc = enter(fs, G_IO, NULL);
    if (rc < 0)
        return rc;
    if (h ? fstat(h->fd, st) : fstatat(fs->dirfd, rel(path), st, AT_SYMLINK_NOFOLLOW))
        return -errno;
    if (S_ISREG(st->st_mode)) {
        pthread_mutex_lock(&fs->mu);
        struct wfile *wf = wf_lookup(fs, st->st_dev, st->st_ino);
        if (wf) {
            pthread_mutex_lock(&wf->mu);
            st->st_size = wf_size(wf);
            pthread_mutex_unlock(&wf->mu);
        }
        pthread_mutex_unlock(&fs->mu);
    }
    return 0;
}

/* An open directory: the path is not given to readdir (nullpath_ok), so it is read here. */
struct dirh {
    DIR *d;    /* owned */
    bool root; /* the state file is hidden in the root */
};

static int t_opendir(const char *path, struct fuse_file_info *fi)
{
    struct testfs *fs = tfs();
    int rc = enter(fs, G_IO, NULL);
    if (rc < 0)
        return rc;
    struct dirh *dh = calloc(1, sizeof *dh);
    int fd = openat(fs->dirfd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!dh || fd < 0 || !(dh->d = fdopendir(fd))) {
        rc = dh ? -errno : -ENOMEM;
        if (fd >= 0)
            close(fd);
        free(dh);
        return rc;
    }
    dh->root = strcmp(path, "/") == 0;
    fi->fh = (uintptr_t)dh;
    return 0;
}

static int t_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                     struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)path, (void)off, (void)flags;
    struct dirh *dh = (struct dirh *)(uintptr_t)fi->fh;
    int rc = enter(tfs(), G_IO, NULL);
    if (rc < 0)
        return rc;
    rewinddir(dh->d); /* every entry at once, offset 0: the library keeps them */
    errno = 0;
    for (struct dirent *e; (e = readdir(dh->d));)
        if (!(dh->root && strcmp(e->d_name, STATE_NAME) == 0) && fill(buf, e->d_name, NULL, 0, 0))
            break;
    return errno ? -errno : 0;
}

static int t_releasedir(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    struct dirh *dh = (struct dirh *)(uintptr_t)fi->fh;
    closedir(dh->d);
    free(dh);
    return 0;
}

/* A change to the tree; logged. */
static int dir_op(const char *op, int res, const char *path, const char *path2)
{
    if (res < 0)
        return -errno;
    log_op(tfs(), op, path, 0, 0, path2);
    return 0;
}

static int t_mkdir(const char *path, mode_t mode)
{
    int rc = is_state(path) || is_ctl(path) ? -EEXIST : enter(tfs(), G_IO, NULL);
    return rc < 0 ? rc : dir_op("mkdir", mkdirat(tfs()->dirfd, rel(path), mode), path, NULL);
}

static int t_unlink(const char *path)
{
    int rc = is_state(path) || is_ctl(path) ? -EACCES : enter(tfs(), G_IO, NULL);
    return rc < 0 ? rc : dir_op("unlink", unlinkat(tfs()->dirfd, rel(path), 0), path, NULL);
}

static int t_rmdir(const char *path)
{
    int rc = enter(tfs(), G_IO, NULL);
    return rc < 0 ? rc
                  : dir_op("rmdir", unlinkat(tfs()->dirfd, rel(path), AT_REMOVEDIR), path, NULL);
}

static int t_rename(const char *from, const char *to, unsigned int flags)
{
    if (is_state(from) || is_ctl(from) || is_state(to) || is_ctl(to))
        return -EACCES;
    int rc = enter(tfs(), G_IO, NULL);
    if (rc < 0)
        return rc;
    int dfd = tfs()->dirfd;
    return dir_op("rename", renameat2(dfd, rel(from), dfd, rel(to), flags), from, to);
}

static int t_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    struct handle *h = hnd(fi);
    if (is_ctl(path) || (h && h->ctl))
        return 0;
    int rc = enter(tfs(), G_IO, NULL);
    if (rc < 0)
        return rc;
    return (h ? fchmod(h->fd, mode) : fchmodat(tfs()->dirfd, rel(path), mode, 0)) < 0 ? -errno : 0;
}

static int t_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    struct handle *h = hnd(fi);
    if (is_ctl(path) || (h && h->ctl))
        return 0;
    int rc = enter(tfs(), G_IO, NULL);
    if (rc < 0)
        return rc;
    rc = h ? futimens(h->fd, tv) : utimensat(tfs()->dirfd, rel(path), tv, AT_SYMLINK_NOFOLLOW);
    return rc < 0 ? -errno : 0;
}

static int t_statfs(const char *path, struct statvfs *sv)
{
    (void)path;
    int rc = enter(tfs(), G_IO, NULL);
    return rc < 0 ? rc : fstatvfs(tfs()->dirfd, sv) < 0 ? -errno : 0;
}

/* Truncation is synchronous, as NFS SETATTR is: the backing file changes at once and the
 * cached bytes beyond the new size are forgotten. Under nothing; takes wf->mu. */
static int wf_truncate(struct testfs *fs, struct wfile *wf, int64_t size, const char *path)
{
    pthread_mutex_lock(&wf->mu);
    int rc = ftruncate(wf->fd, size) < 0 ? -errno : 0;
    if (rc == 0) {
        ext_clip(wf, size);
        log_op(fs, "trunc", path ? path : wf->path, size, 0, NULL);
    }
    pthread_mutex_unlock(&wf->mu);
    return rc;
}

static int t_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    struct testfs *fs = tfs();
    struct handle *h = hnd(fi);
    if (is_ctl(path) || (h && h->ctl))
        return 0;
    if (is_state(path))
        return -ENOENT;
    int rc = enter(fs, G_IO, h);
    if (rc < 0)
        return rc;
    if (h)
        return wf_truncate(fs, h->wf, size, path);
    int fd = openat(fs->dirfd, rel(path), O_WRONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        rc = -errno;
        goto out;
    }
    pthread_mutex_lock(&fs->mu);
    struct wfile *wf = wf_lookup(fs, st.st_dev, st.st_ino);
    if (wf)
        wf->refs++; /* keep it while we use it */
    pthread_mutex_unlock(&fs->mu);
    if (wf) {
        rc = wf_truncate(fs, wf, size, path);
        pthread_mutex_lock(&fs->mu);
        wf->refs--;
        if (!wf->refs && !wf->n)
            wf_free(fs, wf);
        pthread_mutex_unlock(&fs->mu);
    } else {
        rc = ftruncate(fd, size) < 0 ? -errno : 0;
        if (rc == 0)
            log_op(fs, "trunc", path, size, 0, NULL);
    }
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

static void handle_close(struct testfs *fs, struct handle *h);

static int open_common(const char *path, struct fuse_file_info *fi, bool creat, mode_t mode)
{
    struct testfs *fs = tfs();
    struct handle *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    fi->fh = (uintptr_t)h;
    fi->keep_cache = 0;
    if (is_ctl(path)) {
        h->ctl = true;
        h->fd = -1;
        fi->direct_io = 1;
        return 0;
    }
    int rc = is_state(path) ? (creat ? -EACCES : -ENOENT) : enter(fs, G_IO, NULL);
    if (rc < 0)
        goto fail;
    int flags = (fi->flags & ~(O_APPEND | O_TRUNC | O_DIRECT)) | O_CLOEXEC;
    h->fd = openat(fs->dirfd, rel(path), creat ? flags | O_CREAT : flags, mode);
    struct stat st;
    if (h->fd < 0 || fstat(h->fd, &st) < 0) {
        rc = -errno;
        goto fail;
    }
    pthread_mutex_lock(&fs->mu);
    struct wfile *wf = wf_lookup(fs, st.st_dev, st.st_ino);
    if (!wf && (wf = calloc(1, sizeof *wf))) {
        wf->dev = st.st_dev;
        wf->ino = st.st_ino;
        wf->fd = openat(fs->dirfd, rel(path), O_RDWR | O_CLOEXEC);
        if (wf->fd < 0)
            wf->fd = dup(h->fd);
        wf->path = strdup(path);
        pthread_mutex_init(&wf->mu, NULL);
        wf->next = fs->files;
        fs->files = wf;
    }
    if (wf) {
        wf->refs++;
        h->wf = wf;
        h->serial = ++fs->serial;
        h->boot = fs->boot;
        h->append = fi->flags & O_APPEND;
        h->next = fs->handles.next;
        h->prev = &fs->handles;
        h->next->prev = h;
        fs->handles.next = h;
    }
    pthread_mutex_unlock(&fs->mu);
    if (!wf) {
        rc = -ENOMEM;
        goto fail;
    }
    if (creat)
        log_op(fs, "create", path, 0, 0, NULL);
    if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY &&
        (rc = wf_truncate(fs, wf, 0, path)) < 0) {
        handle_close(fs, h); /* no release follows a failed open */
        return rc;
    }
    return 0;
fail:
    if (h->fd >= 0)
        close(h->fd);
    free(h);
    return rc;
}

static int t_open(const char *path, struct fuse_file_info *fi)
{
    return open_common(path, fi, false, 0);
}

static int t_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    return open_common(path, fi, true, mode);
}

static int ctl_read(struct testfs *fs, char *buf, size_t size, off_t off);
static int ctl_write(struct testfs *fs, const char *buf, size_t size);

static int t_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)path;
    struct testfs *fs = tfs();
    struct handle *h = hnd(fi);
    if (h->ctl)
        return ctl_read(fs, buf, size, off);
    int rc = enter(fs, G_IO, h);
    if (rc < 0)
        return rc;
    struct wfile *wf = h->wf;
    pthread_mutex_lock(&wf->mu);
    int64_t want = wf_size(wf) - off;
    want = want < 0 ? 0 : want > (int64_t)size ? (int64_t)size : want;
    ssize_t got = 0;
    while (got < want) {
        ssize_t r = pread(wf->fd, buf + got, want - got, off + got);
        if (r < 0) {
            rc = -errno;
            goto out;
        }
        if (r == 0)
            break;
        got += r;
    }
    memset(buf + got, 0, want - got); /* beyond the backing file: a hole up to cached data */
    for (size_t i = ext_find(wf, off + 1); i < wf->n && wf->ext[i].off < off + want; i++) {
        const struct extent *e = &wf->ext[i];
        int64_t lo = e->off > off ? e->off : off;
        int64_t hi = ext_end(e) < off + want ? ext_end(e) : off + want;
        memcpy(buf + (lo - off), e->data + (lo - e->off), hi - lo);
    }
    rc = (int)want;
out:
    pthread_mutex_unlock(&wf->mu);
    return rc;
}

static int t_write(const char *path, const char *buf, size_t size, off_t off,
                   struct fuse_file_info *fi)
{
    struct testfs *fs = tfs();
    struct handle *h = hnd(fi);
    if (h->ctl)
        return ctl_write(fs, buf, size);
    int rc = enter(fs, G_IO, h);
    if (rc < 0)
        return rc;
    struct wfile *wf = h->wf;
    pthread_mutex_lock(&wf->mu);
    if (h->append)
        off = wf_size(wf);
    rc = ext_put(wf, off, buf, size);
    if (rc == 0) {
        log_op(fs, "write", path ? path : wf->path, off, size, NULL);
        rc = (int)size;
    }
    pthread_mutex_unlock(&wf->mu);
    return rc;
}

static int t_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    struct testfs *fs = tfs();
    struct handle *h = hnd(fi);
    if (h->ctl)
        return 0;
    int rc = enter(fs, G_IO, h);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&h->wf->mu);
    int64_t bytes = wf_flush(h->wf, datasync);
    if (bytes >= 0)
        log_op(fs, "sync", path ? path : h->wf->path, 0, bytes, NULL);
    pthread_mutex_unlock(&h->wf->mu);
    return bytes < 0 ? (int)bytes : 0;
}

static int t_fallocate(const char *path, int mode, off_t off, off_t len,
                       struct fuse_file_info *fi)
{
    struct testfs *fs = tfs();
    struct handle *h = hnd(fi);
    if (!h || h->ctl)
        return -EOPNOTSUPP;
    if (mode & ~FALLOC_FL_KEEP_SIZE) /* punching holes would need the cache punched too */
        return -EOPNOTSUPP;
    int rc = enter(fs, G_IO, h);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&h->wf->mu);
    rc = fallocate(h->wf->fd, mode, off, len) < 0 ? -errno : 0;
    if (rc == 0)
        log_op(fs, "falloc", path ? path : h->wf->path, off, len, NULL);
    pthread_mutex_unlock(&h->wf->mu);
    return rc;
}

/* close(): nothing is written back (a power cut after close still loses unsynced data); the
 * library then unlocks the closing process's POSIX locks through t_lock. */
static int t_flush(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    struct handle *h = hnd(fi);
    return h->ctl ? 0 : enter(tfs(), G_UNLOCK, h);
}

/* Unregisters and frees an open file's handle; the OFD and flock locks taken through it go
 * with it. */
static void handle_close(struct testfs *fs, struct handle *h)
{
    pthread_mutex_lock(&fs->mu);
    drop_locks(fs, h->serial);
    h->prev->next = h->next;
    h->next->prev = h->prev;
    struct wfile *wf = h->wf;
    struct stat st;
    if (!--wf->refs && (!wf->n || (fstat(wf->fd, &st) == 0 && st.st_nlink == 0)))
        wf_free(fs, wf); /* nothing unsynced, or nobody can see it any more */
    pthread_mutex_unlock(&fs->mu);
    close(h->fd);
    free(h);
}

static int t_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    struct testfs *fs = tfs();
    struct handle *h = hnd(fi);
    if (h->ctl) {
        free(h);
        return 0;
    }
    enter(fs, G_RELEASE, NULL);
    handle_close(fs, h);
    return 0;
}

static int t_lock(const char *path, struct fuse_file_info *fi, int cmd, struct flock *fl)
{
    (void)path;
    struct testfs *fs = tfs();
    struct handle *h = hnd(fi);
    if (h->ctl)
        return 0;
    int64_t start = fl->l_start, end = fl->l_len ? fl->l_start + fl->l_len - 1 : OFF_MAX;
    pid_t pid = fl->l_pid ? fl->l_pid : fuse_get_context()->pid;
    if (fs->nolocks) {
        if (cmd == F_GETLK)
            fl->l_type = F_UNLCK;
        return 0;
    }
    if (cmd != F_GETLK)
        return setlk_wait(fs, h, KIND_POSIX, fi->lock_owner, fl->l_type, start, end, pid,
                          cmd == F_SETLKW);
    int rc = enter(fs, G_LOCK, h);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&fs->mu);
    state_lock(fs);
    struct stat st = {.st_dev = h->wf->dev, .st_ino = h->wf->ino};
    struct lockent *e = conflict(fs, &st, KIND_POSIX, fi->lock_owner, fl->l_type, start, end);
    if (e) {
        fl->l_type = e->type;
        fl->l_whence = SEEK_SET;
        fl->l_start = e->start;
        fl->l_len = e->end == OFF_MAX ? 0 : e->end - e->start + 1;
        fl->l_pid = e->pid;
    } else {
        fl->l_type = F_UNLCK;
    }
    state_unlock(fs);
    pthread_mutex_unlock(&fs->mu);
    return 0;
}

static int t_flock(const char *path, struct fuse_file_info *fi, int op)
{
    (void)path;
    struct handle *h = hnd(fi);
    if (h->ctl)
        return 0;
    int type = (op & LOCK_UN) ? F_UNLCK : (op & LOCK_EX) ? F_WRLCK : F_RDLCK;
    if (tfs()->nolocks)
        return 0;
    return setlk_wait(tfs(), h, KIND_FLOCK, fi->lock_owner, type, 0, OFF_MAX,
                      fuse_get_context()->pid, !(op & LOCK_NB));
}

static void *t_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE; /* writes must reach us: we are the cache */
    cfg->use_ino = 0;
    cfg->hard_remove = 1; /* no .fuse_hidden files for the other mount to see */
    cfg->nullpath_ok = 1;
    cfg->direct_io = 0;   /* the page cache serves MAP_SHARED mmaps (LMDB's data.mdb) */
    cfg->kernel_cache = 0;
    cfg->auto_cache = 0;
    cfg->entry_timeout = cfg->attr_timeout = cfg->negative_timeout = 0; /* see the other mount */
    return tfs();
}

static const struct fuse_operations ops = {
    .getattr = t_getattr,
    .mkdir = t_mkdir,
    .unlink = t_unlink,
    .rmdir = t_rmdir,
    .rename = t_rename,
    .chmod = t_chmod,
    .truncate = t_truncate,
    .open = t_open,
    .read = t_read,
    .write = t_write,
    .statfs = t_statfs,
    .flush = t_flush,
    .release = t_release,
    .fsync = t_fsync,
    .opendir = t_opendir,
    .readdir = t_readdir,
    .releasedir = t_releasedir,
    .init = t_init,
    .create = t_create,
    .lock = t_lock,
    .utimens = t_utimens,
    .flock = t_flock,
    .fallocate = t_fallocate,
};

/* ---- the control file ------------------------------------------------------------------------ */

/* Flushes every file's unsynced writes (sync) or forgets them (powercut). Under fs->mu. */
static size_t all_files(struct testfs *fs, bool flush)
{
    size_t bytes = 0;
    for (struct wfile *wf = fs->files, *next; wf; wf = next) {
        next = wf->next;
        pthread_mutex_lock(&wf->mu);
        bytes += ext_bytes(wf);
        int64_t rc = flush && wf->n ? wf_flush(wf, false) : 0;
        if (rc < 0)
            fprintf(stderr, "warren-testfs %s: sync of %s: %s\n", fs->name, wf->path,
                    strerror((int)-rc));
        if (!flush)
            ext_clip(wf, 0);
        pthread_mutex_unlock(&wf->mu);
        if (!wf->refs && !wf->n)
            wf_free(fs, wf);
    }
    return bytes;
}

struct inval {
    struct fuse *fuse; /* borrowed: lives until the loop ends */
    size_t n;
    char *paths[];     /* owned */
};

/* Drops the kernel's cached pages and names of the given files, so that nothing from before a
 * power cut is read from the page cache and old handles reach us (and get EIO). In a detached
 * thread: the kernel may wait for requests that wait for us (a frozen mount). */
static void *invalidate(void *arg)
{
    struct inval *iv = arg;
    for (size_t i = 0; i < iv->n; i++) {
        fuse_invalidate_path(iv->fuse, iv->paths[i]);
        free(iv->paths[i]);
    }
    free(iv);
    return NULL;
}

static void invalidate_all(struct testfs *fs)
{
    size_t n = 0;
    for (struct wfile *wf = fs->files; wf; wf = wf->next)
        n++;
    struct inval *iv = calloc(1, sizeof *iv + n * sizeof iv->paths[0]);
    pthread_t t;
    if (!iv)
        return;
    iv->fuse = fs->fuse;
    for (struct wfile *wf = fs->files; wf; wf = wf->next)
        if (wf->path && (iv->paths[iv->n] = strdup(wf->path)))
            iv->n++;
    if (pthread_create(&t, NULL, invalidate, iv) == 0)
        pthread_detach(t);
    else
        invalidate(iv);
}

static int ctl_command(struct testfs *fs, const char *cmd)
{
    double secs;
    int rc = 0;
    pthread_mutex_lock(&fs->mu);
    if (strcmp(cmd, "freeze") == 0) {
        fs->frozen = true;
    } else if (strcmp(cmd, "thaw") == 0) {
        if (fs->frozen) {
            fs->frozen = false;
            lease_renew(fs); /* finds a lapsed lease before anything else runs */
        }
    } else if (strcmp(cmd, "eio") == 0) {
        /* The storage fails: what was not synced cannot be written back and is lost (as the
         * kernel drops pages whose writeback failed); a process started later on this mount
         * must not read a dead one's unsynced writes. */
        if (!fs->eio)
            log_op(fs, "eiolost", "/", 0, (int64_t)all_files(fs, false), NULL);
        fs->eio = true;
    } else if (strcmp(cmd, "ok") == 0) {
        fs->eio = false;
    } else if (sscanf(cmd, "lease %lf", &secs) == 1 && secs > 0) {
        fs->lease_ns = (int64_t)(secs * 1e9);
        if (!fs->frozen)
            lease_renew(fs);
    } else if (strcmp(cmd, "powercut") == 0) {
        invalidate_all(fs);
        size_t lost = all_files(fs, false);
        fs->boot++; /* the "host" restarts: every open handle is gone */
        state_lock(fs);
        fs->sh->clients[fs->me].live = 0; /* its locks stay until its lease runs out */
        rc = client_new(fs);
        state_unlock(fs);
        log_op(fs, "powercut", "/", 0, (int64_t)lost, NULL);
    } else if (strcmp(cmd, "locks off") == 0 || strcmp(cmd, "locks on") == 0) {
        fs->nolocks = strcmp(cmd, "locks off") == 0;
    } else if (strcmp(cmd, "sync") == 0) {
        log_op(fs, "sync", "/", 0, (int64_t)all_files(fs, true), NULL);
    } else {
        rc = -EINVAL;
    }
    if (rc == 0)
        log_op(fs, "ctl", cmd, 0, 0, NULL);
    pthread_cond_broadcast(&fs->changed);
    pthread_mutex_unlock(&fs->mu);
    if (rc == 0)
        fprintf(stderr, "warren-testfs %s: %s\n", fs->name, cmd);
    return rc;
}

/* One command per line: freeze, thaw, eio, ok, lease SECONDS, powercut, sync, locks off|on. */
static int ctl_write(struct testfs *fs, const char *buf, size_t size)
{
    char line[128];
    for (size_t i = 0; i < size;) {
        size_t n = 0;
        while (i < size && buf[i] != '\n' && n < sizeof line - 1)
            line[n++] = buf[i++];
        if (i < size && buf[i] != '\n')
            return -EINVAL;
        i++;
        while (n && (line[n - 1] == ' ' || line[n - 1] == '\r'))
            n--;
        line[n] = 0;
        if (n) {
            int rc = ctl_command(fs, line);
            if (rc < 0)
                return rc;
        }
    }
    return (int)size;
}

static int ctl_read(struct testfs *fs, char *buf, size_t size, off_t off)
{
    char s[256];
    size_t dirty = 0, handles = 0, lost = 0;
    pthread_mutex_lock(&fs->mu);
    for (struct wfile *wf = fs->files; wf; wf = wf->next) {
        pthread_mutex_lock(&wf->mu);
        dirty += ext_bytes(wf);
        pthread_mutex_unlock(&wf->mu);
    }
    for (struct handle *h = fs->handles.next; h != &fs->handles; h = h->next) {
        handles++;
        lost += h->lost || h->boot != fs->boot;
    }
    int n = snprintf(s, sizeof s, "name=%s frozen=%d eio=%d lease=%.3f unsynced=%zu "
                     "handles=%zu dead_handles=%zu boot=%u\n", fs->name, fs->frozen, fs->eio,
                     fs->lease_ns / 1e9, dirty, handles, lost, fs->boot);
    pthread_mutex_unlock(&fs->mu);
    if (off >= n)
        return 0;
    size_t len = (size_t)(n - off) < size ? (size_t)(n - off) : size;
    memcpy(buf, s + off, len);
    return (int)len;
}

/* ---- main -------------------------------------------------------------------------------- */

struct options {
    char *backing, *name, *logdir, *lease;
};

static const struct fuse_opt opt_spec[] = {
    {"name=%s", offsetof(struct options, name), 0},
    {"log=%s", offsetof(struct options, logdir), 0},
    {"lease=%s", offsetof(struct options, lease), 0},
    FUSE_OPT_END,
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *args)
{
    (void)args;
    struct options *o = data;
    if (key == FUSE_OPT_KEY_NONOPT && !o->backing) {
        o->backing = strdup(arg);
        return 0;
    }
    return 1;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s BACKING_DIR MOUNTPOINT -o name=NAME[,log=DIR][,lease=SECONDS] [-f] [-d]\n"
            "  control: echo CMD > MOUNTPOINT/.warren-testfs-ctl; CMD is freeze, thaw, eio, ok,\n"
            "  lease SECONDS, powercut, sync or locks off|on; cat it for the mount's state.\n",
            argv0);
}

/* Opens and maps BACKING/.warren-testfs-state, creating it when needed. */
static int state_open(struct testfs *fs)
{
    fs->state_fd = openat(fs->dirfd, STATE_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fs->state_fd < 0)
        return -errno;
    state_lock(fs);
    struct stat st;
    int rc = 0;
    if (fstat(fs->state_fd, &st) < 0 ||
        (st.st_size < (off_t)sizeof *fs->sh && ftruncate(fs->state_fd, sizeof *fs->sh) < 0)) {
        rc = -errno;
        goto out;
    }
    fs->sh = mmap(NULL, sizeof *fs->sh, PROT_READ | PROT_WRITE, MAP_SHARED, fs->state_fd, 0);
    if (fs->sh == MAP_FAILED) {
        fs->sh = NULL;
        rc = -errno;
        goto out;
    }
    if (fs->sh->magic == 0)
        fs->sh->magic = STATE_MAGIC;
    if (fs->sh->magic != STATE_MAGIC) {
        rc = -EPROTO;
        goto out;
    }
    int64_t now = now_ns();
    for (int i = 0; i < MAX_CLIENTS; i++) {
        struct client *c = &fs->sh->clients[i];
        if (c->live && client_alive(c, now) && strcmp(c->name, fs->name) == 0 &&
            kill(c->pid, 0) == 0) {
            fprintf(stderr, "warren-testfs: a mount named %s is already up (pid %d)\n", fs->name,
                    c->pid);
            rc = -EEXIST;
            goto out;
        }
    }
    rc = client_new(fs);
out:
    state_unlock(fs);
    return rc;
}

int main(int argc, char **argv)
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct options o = {0};
    struct fuse_cmdline_opts co = {0};
    struct testfs fs = {.dirfd = -1, .state_fd = -1, .log_fd = -1, .lease_ns = 5000000000,
                         .me = UINT32_MAX};
    pthread_t renew;
    bool renewing = false, mounted = false;
    int rc = 1;
    fs.handles.next = fs.handles.prev = &fs.handles;
    pthread_mutex_init(&fs.mu, NULL);
    pthread_cond_init(&fs.changed, NULL);
    if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) < 0 || fuse_parse_cmdline(&args, &co) < 0)
        goto out;
    if (co.show_help || !o.backing || !co.mountpoint || !o.name || !o.name[0] ||
        strlen(o.name) >= sizeof fs.sh->clients[0].name || strchr(o.name, ' ')) {
        usage(argv[0]);
        goto out;
    }
    fs.name = o.name;
    if (o.lease && (fs.lease_ns = (int64_t)(strtod(o.lease, NULL) * 1e9)) <= 0) {
        fprintf(stderr, "warren-testfs: lease must be a positive number of seconds\n");
        goto out;
    }
    if ((fs.dirfd = open(o.backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "warren-testfs: %s: %s\n", o.backing, strerror(errno));
        goto out;
    }
    if (o.logdir) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/writes.log", o.logdir);
        if ((fs.log_fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0) {
            fprintf(stderr, "warren-testfs: %s: %s\n", p, strerror(errno));
            goto out;
        }
    }
    int err = state_open(&fs);
    if (err < 0) {
        fprintf(stderr, "warren-testfs: %s/%s: %s\n", o.backing, STATE_NAME, strerror(-err));
        goto out;
    }
    if (!(fs.fuse = fuse_new(&args, &ops, sizeof ops, &fs)))
        goto out;
    if (fuse_mount(fs.fuse, co.mountpoint) < 0)
        goto out;
    mounted = true;
    if (fuse_daemonize(co.foreground) < 0 || fuse_set_signal_handlers(fuse_get_session(fs.fuse)))
        goto out;
    pthread_mutex_lock(&fs.mu); /* the daemon is another process than the one that registered */
    state_lock(&fs);
    fs.sh->clients[fs.me].pid = getpid();
    state_unlock(&fs);
    pthread_mutex_unlock(&fs.mu);
    if (pthread_create(&renew, NULL, renewer, &fs) != 0)
        goto out;
    renewing = true;
    if (co.singlethread) {
        rc = fuse_loop(fs.fuse) ? 1 : 0;
    } else {
        struct fuse_loop_config *lc = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(lc, co.clone_fd);
        if (co.max_idle_threads != UINT_MAX)
            fuse_loop_cfg_set_idle_threads(lc, co.max_idle_threads);
        fuse_loop_cfg_set_max_threads(lc, MAX_THREADS);
        rc = fuse_loop_mt(fs.fuse, lc) ? 1 : 0;
        fuse_loop_cfg_destroy(lc);
    }
    fuse_remove_signal_handlers(fuse_get_session(fs.fuse));
out:
    pthread_mutex_lock(&fs.mu);
    fs.stopping = true;
    pthread_cond_broadcast(&fs.changed);
    if (fs.sh && fs.me < MAX_CLIENTS && !fs.frozen) {
        all_files(&fs, true); /* a clean unmount writes back, as an NFS client's does */
        state_lock(&fs);      /* and gives its locks back */
        fs.sh->clients[fs.me].live = 0;
        fs.sh->clients[fs.me].gen++;
        state_unlock(&fs);
    }
    pthread_mutex_unlock(&fs.mu);
    if (renewing)
        pthread_join(renew, NULL);
    if (mounted)
        fuse_unmount(fs.fuse);
    if (fs.fuse)
        fuse_destroy(fs.fuse);
    fuse_opt_free_args(&args);
    free(co.mountpoint);
    return rc;
}
