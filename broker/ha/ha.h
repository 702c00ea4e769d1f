/* ha.h — active/standby on one shared data directory (ha.mode = shared): the lock on
 * DIR/warren.lock that decides which warrend serves, the holder record in it (host, pid, boot
 * id, start time, epoch), and the takeover steps (fence command, epoch + 1) before the server
 * opens storage. A standby waits on the loop, polling the lock, and never opens storage.
 * Owns the lock file descriptor, held for the life of the active process. */
#ifndef WARREN_HA_H
#define WARREN_HA_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

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
};

/* Opens DIR/warren.lock and tries to take the lock at once, then every poll_ms on the loop until
 * it is ours; then runs the fence command (awaited), writes epoch + 1 into the holder record
 * (fdatasync) and calls on_active. 0, or -errno after a log line (the lock file cannot be
 * opened, or its filesystem has no working OFD locks). */
int ha_start(struct ha *h, uv_loop_t *loop, const char *dir, uint32_t poll_ms,
             const char *fence_command);
/* Stops polling and releases the lock (the process then no longer serves). */
void ha_stop(struct ha *h);

/* The holder record as it is in DIR/warren.lock now ("" when there is none), for logs and the
 * API: "host=... pid=... boot_id=... started=... epoch=N". */
void ha_read_holder(const char *dir, char *buf, size_t cap);

#endif
