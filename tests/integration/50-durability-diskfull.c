/* 50-durability-diskfull.c — a full disk blocks publishers instead of crashing or corrupting:
 * warrend's data dir lives on a 24 MiB tmpfs that the test fills up. Persistent publishes with
 * confirms then stall (no confirm arrives while the disk is full), the publishing connection
 * gets connection.blocked, and once space is freed the confirms arrive, connection.unblocked
 * follows, and every confirmed message is in the queue.
 * Needs root (mount); exits 77 (skip) where tmpfs cannot be mounted, and against an external
 * broker. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static char s_mnt[64];

static void unmount(void)
{
    if (s_mnt[0]) {
        umount2(s_mnt, MNT_DETACH);
        rmdir(s_mnt);
    }
}

/* Writes a file of zeros until the file system is full; returns its path's bytes written. */
static long long fill(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    static char buf[64 << 10];
    long long n = 0;
    for (;;) {
        ssize_t w = write(fd, buf, sizeof buf);
        if (w <= 0)
            break;
        n += w;
    }
    close(fd);
    return n;
}

/* Reads frames for up to ms; counts confirms (basic.ack on channel 1) and notes
 * connection.blocked / unblocked. Returns the highest delivery tag confirmed. */
static uint64_t pump(amqp_connection_state_t conn, int ms, uint64_t acked, int *blocked)
{
    int64_t end = harness_now_ms() + ms;
    while (harness_now_ms() < end) {
        amqp_frame_t f;
        int rc = harness_next_frame(conn, &f, (int)(end - harness_now_ms()));
        if (rc != 0)
            break;
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            amqp_basic_ack_t *a = f.payload.method.decoded;
            CHECKF(a->delivery_tag > acked, "confirm %llu after %llu",
                   (unsigned long long)a->delivery_tag, (unsigned long long)acked);
            acked = a->delivery_tag;
        } else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            CHECKF(0, "basic.nack: a full disk must block, not refuse");
        } else if (f.payload.method.id == AMQP_CONNECTION_BLOCKED_METHOD) {
            *blocked = 1;
        } else if (f.payload.method.id == AMQP_CONNECTION_UNBLOCKED_METHOD) {
            *blocked = 2;
        }
    }
    return acked;
}

int main(void)
{
    harness_watchdog(100);
    if (getenv("WARREN_TEST_HOST")) {
        printf("SKIP: needs its own warrend on a small file system\n");
        return 77;
    }
    snprintf(s_mnt, sizeof s_mnt, "/tmp/warren-diskfull-XXXXXX");
    CHECK(mkdtemp(s_mnt) != NULL);
    if (mount("tmpfs", s_mnt, "tmpfs", 0, "size=24m") != 0) {
        printf("SKIP: cannot mount a tmpfs (%s)\n", strerror(errno));
        rmdir(s_mnt);
        return 77;
    }
    atexit(unmount);
    setenv("TMPDIR", s_mnt, 1);
    /* The disk alarm's free-space limit (disk_free_limit, 50MB by default) is lowered below
     * what the tmpfs has, so that what blocks here is the full disk itself. */
    const char *conf = harness_write_file(s_mnt, "warren.conf", "disk_free_limit.absolute = 1kB\n");
    const char *const extra[] = {"--config", conf, NULL};
    harness_broker_t b;
    harness_broker_start_args(&b, extra);

    static const char *const caps[] = {"connection.blocked", NULL};
    amqp_connection_state_t conn = harness_connect_caps(&b, caps);
    harness_channel_open(conn, 1);
    harness_confirm_select(conn, 1);
    amqp_bytes_t q = amqp_cstring_bytes("it-diskfull");
    harness_queue_declare(conn, 1, "it-diskfull", HARNESS_QUEUE_DURABLE, amqp_empty_table);

    /* Leave a little room, then publish 4 KiB persistent messages until confirms stop. */
    char filler[128];
    snprintf(filler, sizeof filler, "%s/filler", s_mnt);
    long long filled = fill(filler);
    harness_log("filled %lld bytes", filled);
    CHECK(truncate(filler, filled > (1 << 20) ? filled - (1 << 20) : 0) == 0);
    static char body[4096];
    memset(body, 'x', sizeof body);
    amqp_basic_properties_t props = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG, .delivery_mode = 2};
    uint64_t sent = 0, acked = 0;
    int blocked = 0;
    for (int round = 0; round < 200 && acked == sent; round++) {
        for (int i = 0; i < 64; i++) {
            CHECK_AMQP(amqp_basic_publish(conn, 1, amqp_empty_bytes, q, 0, 0, &props,
                                          (amqp_bytes_t){sizeof body, body}));
            sent++;
        }
        acked = pump(conn, 300, acked, &blocked);
    }
    harness_log("disk full: %llu sent, %llu confirmed, blocked=%d", (unsigned long long)sent,
                (unsigned long long)acked, blocked);
    CHECKF(acked < sent, "every publish was confirmed although the disk is full");
    /* Nothing more is confirmed while the disk stays full, and the broker says it is blocked. */
    uint64_t before = acked;
    acked = pump(conn, 2500, acked, &blocked);
    CHECKF(acked == before, "confirms went on with a full disk (%llu -> %llu)",
           (unsigned long long)before, (unsigned long long)acked);
    CHECKF(blocked == 1, "no connection.blocked while the disk is full");
    CHECK(harness_broker_alive(&b));

    /* Free the space: everything is confirmed, the connection unblocked. */
    CHECK(unlink(filler) == 0);
    for (int i = 0; i < 20 && (acked < sent || blocked != 2); i++)
        acked = pump(conn, 500, acked, &blocked);
    CHECKF(acked == sent, "after freeing space %llu of %llu confirmed", (unsigned long long)acked,
           (unsigned long long)sent);
    CHECKF(blocked == 2, "no connection.unblocked after the disk had room again");

    uint32_t n = 0;
    CHECK_REPLY(harness_queue_peek(conn, 1, "it-diskfull", &n, NULL));
    CHECK_EQ(n, sent);
    harness_disconnect(conn);
    CHECK(harness_broker_stop(&b) == 0);
    harness_log("full disk blocks publishers; freeing space resumes them: ok");
    printf("PASS\n");
    return 0;
}
