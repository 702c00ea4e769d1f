/* inproc.h — an in-process broker for the fuzz targets that talk to it as a client would
 * (fuzz_conn over AMQP, fuzz_http over the management API): warrend's server and, when asked,
 * its management API on a loop of our own, storage (sync off) in a fresh directory on a tmpfs,
 * listeners on loopback ports the kernel picks. Owns the loop, the server, the API and the data
 * directory (removed at exit). Invariant: between two inproc_exchange() calls no client
 * connection of ours is open, and the broker has let go of the previous one (or was restarted
 * because it would not). */
#ifndef WARREN_FUZZ_INPROC_H
#define WARREN_FUZZ_INPROC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "broker/admin/api.h"
#include "broker/amqp/server.h"

struct inproc {
    uv_loop_t loop;
    struct server srv;
    struct admin admin;
    bool with_admin;
    bool up;            /* srv (and admin) started */
    char dir[200];      /* the scratch directory (mkdtemp) */
    char data[224];     /* dir/data: the broker's data directory, emptied by inproc_restart */
    int amqp_port, http_port;
};

/* Starts the broker (and the management API when with_admin) with its data under $WARREN_FUZZ_DIR,
 * /dev/shm, $TMPDIR or /tmp (the first that is a writable directory with 1 GiB free; the
 * first one whatever its size). Logging is quiet unless
 * $WARREN_FUZZ_LOG is set. Aborts with a message when it cannot: a fuzz target without its
 * broker has nothing to do. */
void inproc_start(struct inproc *ip, bool with_admin);

/* Connects to 127.0.0.1:port, writes data[0..size), reads and drops what the broker answers
 * until it closes, or quiet_ms pass without a byte once everything was written, or max_ms pass
 * in all; then closes and runs the loop until the broker has dropped the connection (restarting
 * it when that takes more than a second). Returns the number of bytes the broker sent. */
size_t inproc_exchange(struct inproc *ip, int port, const uint8_t *data, size_t size,
                       unsigned quiet_ms, unsigned max_ms);

/* Stops the broker, empties its data directory and starts it again: a clean slate. */
void inproc_restart(struct inproc *ip);

/* Stops the broker and removes the scratch directory (also run at exit). */
void inproc_stop(struct inproc *ip);

#endif
