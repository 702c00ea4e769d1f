/* ha.h — active/standby on one shared data directory (ha.mode = shared): the lock on
 * DIR/warren.lock that decides which warrend serves, the holder record in it (host, pid, boot
 * id, start time, epoch), and the takeover steps (fence command, epoch + 1) before the server
 * opens storage. A standby waits on the loop, polling the lock, and never opens storage.
 * Owns the lock file descriptor, held for the life of the active process. */
#ifndef WARREN_HA_H
#define WARREN_HA_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Exit status of a process that fenced itself (EX_TEMPFAIL: systemd restarts it, as standby). */
#define HA_FENCED_EXIT 75
/* Exit status when the shared storage is unsafe (sysexits' EX_CONFIG, as a bad config file). */
#define HA_REFUSED_EXIT 78

struct ha {
    uv_loop_t *loop;          /* borrowed */
    char path[4096];          /* DIR/warren.lock */
    int fd;                   /* owned: the lock file, -1 when not open */
    bool active;              /* the lock is ours and the takeover steps are done */
    uint64_t epoch;           /* ours, once active */
    uint32_t poll_ms;         /* ha.lock_poll_interval */
    const char *fence_command; /* borrowed: ha.fence_command, NULL for none */
    uv_timer_t poll;
    bool polling;
    void (*on_active)(struct ha *h); /* called once the process is active */
    void *arg;

    /* Self-fencing, while active: the beat thread rewrites the holder record (pwrite +
     * fdatasync) every heartbeat_ms after checking that it is still ours; the watch thread,
     * which does no I/O, ends the process when no beat succeeded for deadline_ms. */
    uint32_t heartbeat_ms, deadline_ms;
    char record[512];         /* the holder record without its heartbeat field */
    pthread_t beat_thread, watch_thread;
    bool threads;
    atomic_uint_fast64_t last_beat_ms; /* CLOCK_MONOTONIC ms of the last beat on disk */
    atomic_bool stopping;
    atomic_bool beat_idle;    /* the beat thread is not inside a storage call */
};

/* Opens DIR/warren.lock and tries to take the lock at once, then every poll_ms on the loop until
 * it is ours; then runs the fence command (awaited), writes epoch + 1 into the holder record
 * (fdatasync) and calls on_active. 0, or -errno after a log line (the lock file cannot be
 * opened, or its filesystem has no working OFD locks). */
int ha_start(struct ha *h, uv_loop_t *loop, const char *dir, uint32_t poll_ms,
             const char *fence_command);
/* ha.heartbeat_interval and ha.fence_deadline (ms), before ha_start (defaults 1000, 10000). */
void ha_set_fencing(struct ha *h, uint32_t heartbeat_ms, uint32_t deadline_ms);
/* Stops polling and fencing and releases the lock (the process then no longer serves). A beat
 * stuck in a storage call is left behind (the lock goes with the process). */
void ha_stop(struct ha *h);

/* Fills the model's view of h (struct ha_view, broker/model/broker.h) for /api/ha. */
struct ha_view;
void ha_describe(void *arg, struct ha_view *v);

/* Is the filesystem under path safe to share (mountinfo: /proc/self/mountinfo's text)? 0, or
 * -1 with why: NFS before version 4 (no leases: a dead holder's lock may never expire, or a
 * live one's be lost), or NFS with local_lock other than none (locks that other hosts never
 * see). Local filesystems and everything else pass (two processes on one host). */
int ha_mount_verdict(const char *mountinfo, const char *path, char *why, size_t cap);

/* The holder record as it is in DIR/warren.lock now ("" when there is none), for logs and the
 * API: "host=... pid=... boot_id=... started=... epoch=N". */
void ha_read_holder(const char *dir, char *buf, size_t cap);

#endif
