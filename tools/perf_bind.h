/* perf_bind.h — warren-perf's --extra-bindings: N bindings from the benchmark exchange to one
 * extra queue whose keys (direct) or patterns (topic) no producer key can match, so they add
 * routing work without adding deliveries. Owns only the key generator and the binding loop;
 * the connection, exchange and queue belong to the caller.
 * Invariant: keys are distinct for distinct indexes, and a direct key never has the form
 * "<queue prefix><decimal>" nor a topic pattern matches any "perf.<decimal>.m". */
#ifndef WARREN_TOOLS_PERF_BIND_H
#define WARREN_TOOLS_PERF_BIND_H

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__has_include) && __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#else
#include <amqp.h>
#endif

#include "perf_opts.h"

#define BIND_KEY_MAX 64         /* longest key bind_key() writes, with its NUL */
#define BIND_BATCH 10000        /* no-wait binds sent between two round trips */
#define BIND_SYNC_TIMEOUT_S 300 /* longest one batch may take before the broker answers */

/* Write the j-th extra binding key for an exchange of type t (EX_DIRECT or EX_TOPIC) into
 * buf (BIND_KEY_MAX bytes). seed varies the keys between runs; avoid_prefix is the queue
 * prefix, whose "<prefix><decimal>" names are the direct keys producers publish with. */
void bind_key(enum ex_type t, uint32_t seed, uint32_t j, const char *avoid_prefix,
              char buf[BIND_KEY_MAX]);

struct bind_job {
    amqp_connection_state_t conn;       /* borrowed: open, with channel `channel` open */
    void *ssl;                          /* borrowed: conn's SSL * over TLS, else NULL */
    uint16_t channel;
    const char *exchange, *queue;       /* borrowed: both exist on the broker */
    const char *avoid_prefix;           /* borrowed: see bind_key() */
    enum ex_type type;
    uint32_t seed;
    unsigned count;
    const atomic_bool *stop;            /* borrowed: a blocked write gives up once set */
    const volatile sig_atomic_t *interrupted; /* borrowed: checked between batches */
    FILE *progress;                     /* borrowed: a line per second here; NULL = silent */
};

struct bind_result {
    unsigned bound;        /* binds the broker has confirmed by answering a later sync */
    uint64_t stray_ok;     /* queue.bind-ok replies to no-wait binds (a broker bug) */
    double seconds;        /* from the first bind sent to the last sync answered */
};

/* Send job->count queue.bind with no-wait, BIND_BATCH at a time, each batch followed by a
 * passive queue.declare of job->queue whose answer proves the batch was applied. Returns 0
 * and fills *ret_res, or -1 with one sentence in err saying how far it got (the channel is then
 * closed or unusable; *ret_res is untouched). */
int bind_extra(const struct bind_job *job, struct bind_result *ret_res, char *err, size_t n);

#endif
