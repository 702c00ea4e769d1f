/* 50-durability-failure — a storage failure follows the sticky rule (STYLE.md): warrend confirms
 * nothing more, nacks every publish it has not confirmed, logs one line and exits (status 70) so
 * that a standby can take over; what it confirmed before is there after a restart.
 * warrend runs with tests/integration/failsync.c preloaded: while a trigger file exists,
 * fdatasync() and fsync() fail with EIO, as a dying disk would make LMDB's commit fail.
 * Warren's own behaviour (RabbitMQ has no such rule to compare with): skips against an external
 * broker, and when $FAILSYNC (the shim, set by meson) is missing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <amqp_framing.h>

static void publish_persistent(amqp_connection_state_t conn, const char *q, const char *body)
{
    amqp_basic_properties_t p = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG, .delivery_mode = 2};
    harness_publish_props(conn, 1, "", q, false, &p, body);
}

int main(void)
{
    harness_watchdog(55);
    const char *shim = getenv("FAILSYNC");
    if (!shim || access(shim, R_OK) != 0) {
        fprintf(stderr, "SKIP: $FAILSYNC (the fault-injection shim) is not set\n");
        return 77;
    }
    char trigger[] = "/tmp/warren-failsync-XXXXXX";
    int tfd = mkstemp(trigger);
    CHECK(tfd >= 0);
    close(tfd);
    unlink(trigger); /* disks are fine until the file exists */
    /* The broker inherits these: the shim before everything (ASan wants to come first, so it is
     * told not to mind) and where the trigger is. */
    setenv("LD_PRELOAD", shim, 1);
    setenv("WARREN_FAILSYNC_TRIGGER", trigger, 1);
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);

    harness_broker_t b;
    harness_broker_start(&b);
    harness_require_own_broker(&b);
    harness_name_init("it-fail");
    const char *q = harness_name("q");

    harness_confirms_t cf;
    amqp_connection_state_t conn = harness_open_confirms(&b, &cf);
    harness_queue_declare(conn, 1, q, HARNESS_QUEUE_DURABLE, amqp_empty_table);
    publish_persistent(conn, q, "kept");
    cf.published++;
    harness_wait_confirms(conn, &cf); /* on disk: it must survive what follows */

    /* The disk dies: the next commit fails. */
    FILE *t = fopen(trigger, "w");
    CHECK(t != NULL);
    fclose(t);
    for (int i = 0; i < 5; i++)
        publish_persistent(conn, q, "lost");

    /* The unconfirmed publishes are nacked (one basic.nack, multiple), never acked, before the
     * socket closes. */
    bool nacked = false;
    for (;;) {
        amqp_frame_t f;
        int rc = harness_next_frame(conn, &f, 10000);
        if (rc < 0)
            break; /* the broker is gone */
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        CHECKF(f.payload.method.id != AMQP_BASIC_ACK_METHOD,
               "a publish was confirmed after the storage failure");
        if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            /* Up to the last publish warrend had read when the commit failed (all five, unless
             * the failure came first); the rest were never taken in. */
            amqp_basic_nack_t *n = f.payload.method.decoded;
            CHECKF(n->delivery_tag >= 2 && n->delivery_tag <= 6, "nack of tag %llu",
                   (unsigned long long)n->delivery_tag);
            CHECK_EQ(n->multiple, n->delivery_tag > 2);
            nacked = true;
        }
    }
    CHECKF(nacked, "no basic.nack for the unconfirmed publishes before the connection closed");
    amqp_destroy_connection(conn);

    /* warrend stopped by itself, with status 70. */
    int status = 0;
    CHECK(waitpid(b.pid, &status, 0) == b.pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 70, "warrend ended with status %#x",
           status);
    b.pid = 0;
    harness_log("storage failure: the unconfirmed publishes were nacked, warrend exited 70");

    /* A standby (here: warrend again, disk healthy) has what was confirmed. */
    unlink(trigger);
    harness_broker_respawn(&b, NULL);
    conn = harness_connect(&b, 0, AMQP_DEFAULT_FRAME_SIZE, 0);
    harness_channel_open(conn, 1);
    harness_expect_get(conn, 1, q, "kept", "", q);
    harness_disconnect(conn);
    CHECK(harness_broker_stop(&b) == 0);
    harness_log("PASS");
    return 0;
}
