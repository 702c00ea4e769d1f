/* perf_opts.h — warren-perf's command line: the option set and its parser. Owns nothing after
 * parsing but opts.uri_copy; every other string is borrowed from argv or a literal.
 * Invariant after opts_parse(): the options are consistent (e.g. --no-declare-exchange implies
 * direct and exchange "", --extra-bindings implies a declared direct or topic exchange), so the
 * run never re-checks them. */
#ifndef WARREN_TOOLS_PERF_OPTS_H
#define WARREN_TOOLS_PERF_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#define HEADER_LEN 12 /* body prefix: u64 send time (ns), u32 run id; the smallest -s */
#define MAX_QUEUES 10000
#define MAX_CLIENTS 4000
#define MAX_EXTRA_BINDINGS 10000000
#define MAX_QUEUE_ARGS 8

/* EX_DEDUP: x-message-deduplication (routes as fanout; declared with x-cache-size). */
enum ex_type { EX_DIRECT, EX_FANOUT, EX_TOPIC, EX_DEDUP, EX_TYPE_MAX };
extern const char *const opts_ex_type_names[EX_TYPE_MAX];

struct opts {
    const char *uri;          /* borrowed: argv */
    char *uri_copy;           /* owned: amqp_parse_url writes into it; host etc. point here */
    const char *host, *user, *password, *vhost; /* borrowed: argv, uri_copy or literals */
    int port;
    bool tls;                 /* amqps:// */
    const char *cacert;       /* borrowed: argv; verify the broker's certificate (NULL: don't) */
    unsigned producers, consumers;
    size_t size;
    unsigned seconds;         /* 0 = until interrupted */
    unsigned rate;            /* per producer, msg/s; 0 = unlimited */
    bool persistent;          /* delivery-mode 2, durable exchange and queues */
    const char *expiration;   /* per-message TTL property (ms), NULL for none */
    unsigned header_values;   /* publishes carry header_key = "t<i>", i cycling 0..N-1; 0: none */
    const char *header_key;   /* borrowed: argv or "tenant" */
    bool dedup_ids;           /* each publish carries a unique x-deduplication-header */
    unsigned dedup_cache;     /* x-cache-size of a declared x-message-deduplication exchange */
    unsigned confirm;         /* outstanding-confirm window; 0 = no confirms */
    bool autoack;
    unsigned prefetch;        /* basic.qos prefetch-count; 0 = none */
    unsigned multi_ack;       /* ack with multiple=true every N deliveries; 0/1 = one by one */
    unsigned queues;
    unsigned extra_bindings;  /* non-matching bindings added before the run (perf_bind.c) */
    enum ex_type ex_type;
    const char *exchange;     /* borrowed: argv or literal; "" with --no-declare-exchange */
    const char *queue_prefix; /* borrowed: argv or literal */
    unsigned nqargs;          /* --queue-arg KEY=VALUE: queue.declare arguments */
    const char *qarg_key[MAX_QUEUE_ARGS]; /* owned: strndup'd from argv (never freed) */
    const char *qarg_val[MAX_QUEUE_ARGS]; /* borrowed: argv, after the '=' */
    bool declare_exchange, keep, json, quiet;
    const char *label;        /* borrowed: argv; echoed in the JSON line */
};

/* Fill o from argv. Prints usage and exits 0 for --help; prints one sentence on stderr and
 * exits 2 for anything invalid. */
void opts_parse(struct opts *o, int argc, char **argv);

/* Print "warren-perf: <message>" on stderr and exit 2. */
_Noreturn void opts_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
