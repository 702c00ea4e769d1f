/* perf_opts.c — parses warren-perf's command line into struct opts (see perf_opts.h), with
 * PerfTest's short flags where they exist. Owns opts.uri_copy, which amqp_parse_url carves up. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_include) && __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#else
#include <amqp.h>
#endif

#include "perf_opts.h"

const char *const opts_ex_type_names[EX_TYPE_MAX] = {"direct", "fanout", "topic",
                                                     "x-message-deduplication"};

void opts_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("warren-perf: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void usage(FILE *f)
{
    fputs(
        "usage: warren-perf [options]\n"
        "Load an AMQP 0-9-1 broker with producers and consumers and report rates and latency.\n"
        "\n"
        "connection:\n"
        "  --uri URI               amqp://user:pass@host:port/vhost (default amqp://localhost);\n"
        "                          amqps://... connects over TLS (port 5671 unless given)\n"
        "  --host H, --port N, --user U, --password P, --vhost V   override parts of --uri\n"
        "  --cacert FILE           over TLS, verify the broker's certificate against FILE\n"
        "                          (without it the certificate is not checked)\n"
        "load:\n"
        "  -x, --producers N       producers, each its own connection and thread (1)\n"
        "  -y, --consumers N       consumers, each its own connection and thread (1)\n"
        "  -s, --size N            body bytes, at least 12 (12)\n"
        "  -z, --time S            seconds to run, 0 = until Ctrl-C (10)\n"
        "  -r, --rate N            per-producer limit in msg/s, 0 = unlimited (0)\n"
        "  -f, --persistent        delivery-mode 2, durable exchange and queues\n"
        "  --expiration MS         per-message TTL (the expiration property) on every publish\n"
        "  --header-values N       each publish carries the header KEY = \"t<i>\", i cycling over\n"
        "                          0..N-1 (filter-policy benchmarks)\n"
        "  --header-key KEY        that header's name (tenant)\n"
        "  --dedup-ids             each publish carries a unique x-deduplication-header (a\n"
        "                          16-digit counter patched into the precomputed frame)\n"
        "  --dedup-cache N         x-cache-size when declaring -t x-message-deduplication\n"
        "                          (100000)\n"
        "  -c, --confirm N         publisher confirms with at most N unconfirmed per producer\n"
        "  -a, --autoack           consume with no-ack (default: manual acks)\n"
        "  -q, --prefetch N        basic.qos prefetch-count for manual acks, 0 = none (0)\n"
        "  -A, --multi-ack-every N ack with multiple=true every N deliveries (1 = each)\n"
        "topology:\n"
        "  --queues N              queues; producers round-robin over them (1)\n"
        "  -t, --exchange-type T   direct, fanout, topic or x-message-deduplication (direct)\n"
        "  -e, --exchange NAME     exchange name (perf-TYPE, perf-TYPE-durable with -f)\n"
        "  --queue-prefix P        queue names are P0, P1, ... (perf-q-, perf-dq- with -f)\n"
        "  --queue-arg KEY=VALUE   a queue.declare argument (repeatable, up to 8): true/false are\n"
        "                          booleans, whole numbers longs, anything else a string\n"
        "  --extra-bindings N      before the run, bind N keys that no producer uses (direct) or\n"
        "                          N patterns that cannot match (topic) from the exchange to an\n"
        "                          extra queue Pextra, pipelined with no-wait; reports the time (0)\n"
        "  --no-declare-exchange   publish through the default exchange, routing key = queue\n"
        "  --keep                  leave exchange and queues in place at the end\n"
        "output:\n"
        "  --json                  print one JSON line instead of the human summary\n"
        "  --label TEXT            scenario name carried into the JSON line\n"
        "  --quiet                 no per-second progress lines\n"
        "  -h, --help              this text\n",
        f);
}

static unsigned long parse_num(const char *s, const char *flag, unsigned long min,
                               unsigned long max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < min || v > max)
        opts_die("%s expects a whole number from %lu to %lu, not '%s'.", flag, min, max, s);
    return v;
}

enum {
    OPT_URI = 256, OPT_CACERT, OPT_EXPIRATION, OPT_HEADER_VALUES, OPT_HEADER_KEY, OPT_DEDUP_IDS, OPT_DEDUP_CACHE, OPT_HOST, OPT_PORT, OPT_USER, OPT_PASSWORD, OPT_VHOST, OPT_QUEUES,
    OPT_QUEUE_PREFIX, OPT_NO_DECLARE, OPT_KEEP, OPT_JSON, OPT_LABEL, OPT_QUIET, OPT_EXTRA_BINDINGS,
    OPT_QUEUE_ARG,
};

void opts_parse(struct opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"uri", required_argument, NULL, OPT_URI},
        {"cacert", required_argument, NULL, OPT_CACERT},
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"user", required_argument, NULL, OPT_USER},
        {"password", required_argument, NULL, OPT_PASSWORD},
        {"vhost", required_argument, NULL, OPT_VHOST},
        {"producers", required_argument, NULL, 'x'},
        {"consumers", required_argument, NULL, 'y'},
        {"size", required_argument, NULL, 's'},
        {"time", required_argument, NULL, 'z'},
        {"rate", required_argument, NULL, 'r'},
        {"persistent", no_argument, NULL, 'f'},
        {"expiration", required_argument, NULL, OPT_EXPIRATION},
        {"header-values", required_argument, NULL, OPT_HEADER_VALUES},
        {"header-key", required_argument, NULL, OPT_HEADER_KEY},
        {"dedup-ids", no_argument, NULL, OPT_DEDUP_IDS},
        {"dedup-cache", required_argument, NULL, OPT_DEDUP_CACHE},
        {"queue-arg", required_argument, NULL, OPT_QUEUE_ARG},
        {"confirm", required_argument, NULL, 'c'},
        {"autoack", no_argument, NULL, 'a'},
        {"prefetch", required_argument, NULL, 'q'},
        {"multi-ack-every", required_argument, NULL, 'A'},
        {"queues", required_argument, NULL, OPT_QUEUES},
        {"exchange-type", required_argument, NULL, 't'},
        {"exchange", required_argument, NULL, 'e'},
        {"queue-prefix", required_argument, NULL, OPT_QUEUE_PREFIX},
        {"extra-bindings", required_argument, NULL, OPT_EXTRA_BINDINGS},
        {"no-declare-exchange", no_argument, NULL, OPT_NO_DECLARE},
        {"keep", no_argument, NULL, OPT_KEEP},
        {"json", no_argument, NULL, OPT_JSON},
        {"label", required_argument, NULL, OPT_LABEL},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    const char *host = NULL, *user = NULL, *password = NULL, *vhost = NULL;
    int port = 0, c;
    bool multi_ack_set = false;

    *o = (struct opts){.producers = 1, .consumers = 1, .size = HEADER_LEN, .seconds = 10,
                       .queues = 1, .ex_type = EX_DIRECT, .declare_exchange = true,
                       .dedup_cache = 100000};
    while ((c = getopt_long(argc, argv, "x:y:s:z:r:fc:aq:A:t:e:h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_URI: o->uri = optarg; break;
        case OPT_CACERT: o->cacert = optarg; break;
        case OPT_HOST: host = optarg; break;
        case OPT_PORT: port = (int)parse_num(optarg, "--port", 1, 65535); break;
        case OPT_USER: user = optarg; break;
        case OPT_PASSWORD: password = optarg; break;
        case OPT_VHOST: vhost = optarg; break;
        case 'x': o->producers = (unsigned)parse_num(optarg, "-x", 0, MAX_CLIENTS); break;
        case 'y': o->consumers = (unsigned)parse_num(optarg, "-y", 0, MAX_CLIENTS); break;
        case 's': o->size = parse_num(optarg, "-s", HEADER_LEN, 128ul << 20); break;
        case 'z': o->seconds = (unsigned)parse_num(optarg, "-z", 0, 1u << 30); break;
        case 'r': o->rate = (unsigned)parse_num(optarg, "-r", 0, 100000000); break;
        case 'f': o->persistent = true; break;
        case OPT_EXPIRATION: o->expiration = optarg; break;
        case OPT_HEADER_VALUES:
            o->header_values = (unsigned)parse_num(optarg, "--header-values", 1, 10000000);
            break;
        case OPT_HEADER_KEY: o->header_key = optarg; break;
        case OPT_DEDUP_IDS: o->dedup_ids = true; break;
        case OPT_DEDUP_CACHE:
            o->dedup_cache = (unsigned)parse_num(optarg, "--dedup-cache", 1, INT32_MAX);
            break;
        case OPT_QUEUE_ARG: {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || o->nqargs == MAX_QUEUE_ARGS)
                opts_die("--queue-arg expects KEY=VALUE (at most %d), not '%s'.", MAX_QUEUE_ARGS,
                         optarg);
            o->qarg_key[o->nqargs] = strndup(optarg, (size_t)(eq - optarg));
            o->qarg_val[o->nqargs++] = eq + 1;
            break;
        }
        case 'c': o->confirm = (unsigned)parse_num(optarg, "-c", 1, 1000000); break;
        case 'a': o->autoack = true; break;
        case 'q': o->prefetch = (unsigned)parse_num(optarg, "-q", 0, 65535); break;
        case 'A':
            o->multi_ack = (unsigned)parse_num(optarg, "-A", 0, 1000000);
            multi_ack_set = true;
            break;
        case OPT_QUEUES: o->queues = (unsigned)parse_num(optarg, "--queues", 1, MAX_QUEUES); break;
        case 't':
            for (o->ex_type = 0; o->ex_type < EX_TYPE_MAX; o->ex_type++)
                if (!strcmp(optarg, opts_ex_type_names[o->ex_type]))
                    break;
            if (o->ex_type == EX_TYPE_MAX)
                opts_die("--exchange-type must be direct, fanout or topic, not '%s'.", optarg);
            break;
        case 'e': o->exchange = optarg; break;
        case OPT_QUEUE_PREFIX: o->queue_prefix = optarg; break;
        case OPT_EXTRA_BINDINGS:
            o->extra_bindings =
                (unsigned)parse_num(optarg, "--extra-bindings", 0, MAX_EXTRA_BINDINGS);
            break;
        case OPT_NO_DECLARE: o->declare_exchange = false; break;
        case OPT_KEEP: o->keep = true; break;
        case OPT_JSON: o->json = true; break;
        case OPT_LABEL: o->label = optarg; break;
        case OPT_QUIET: o->quiet = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    /* PerfTest spells it "-f persistent"; accept that too. */
    for (int i = optind; i < argc; i++)
        if (!(o->persistent && !strcmp(argv[i], "persistent")))
            opts_die("unexpected argument '%s' (see --help).", argv[i]);

    o->host = "localhost";
    o->port = 5672;
    o->user = o->password = "guest";
    o->vhost = "/";
    if (o->uri) {
        struct amqp_connection_info ci;
        o->uri_copy = strdup(o->uri);
        if (!o->uri_copy)
            opts_die("out of memory.");
        amqp_default_connection_info(&ci);
        if (amqp_parse_url(o->uri_copy, &ci) != AMQP_STATUS_OK)
            opts_die("cannot parse --uri '%s' (expected amqp://user:pass@host:port/vhost).",
                     o->uri);
        o->tls = ci.ssl;
        o->host = ci.host;
        o->port = ci.port;
        o->user = ci.user;
        o->password = ci.password;
        o->vhost = ci.vhost;
    }
    if (host)
        o->host = host;
    if (port)
        o->port = port;
    if (user)
        o->user = user;
    if (password)
        o->password = password;
    if (vhost)
        o->vhost = vhost;

    if (!o->declare_exchange) {
        if (o->ex_type != EX_DIRECT)
            opts_die("--no-declare-exchange publishes through the default exchange, which routes "
                "like direct, so it cannot be combined with --exchange-type %s.",
                opts_ex_type_names[o->ex_type]);
        if (o->exchange)
            opts_die("--no-declare-exchange publishes through the default exchange, so --exchange "
                "makes no sense with it.");
        o->exchange = "";
    }
    if (o->extra_bindings && !o->declare_exchange)
        opts_die("--extra-bindings binds to the benchmark exchange, and the default exchange "
            "cannot be bound, so it cannot be combined with --no-declare-exchange.");
    if (o->extra_bindings && (o->ex_type == EX_FANOUT || o->ex_type == EX_DEDUP))
        opts_die("--extra-bindings needs keys that do not match, but fanout ignores keys; use "
            "-t direct or -t topic.");
    if (multi_ack_set && o->autoack)
        opts_die("--multi-ack-every needs manual acks, so it cannot be combined with -a.");
    if (o->multi_ack > 1 && o->prefetch && o->multi_ack > o->prefetch)
        opts_die("--multi-ack-every %u exceeds prefetch %u, so consumers would stall; lower it or "
            "raise -q.", o->multi_ack, o->prefetch);
    if (o->producers == 0 && o->consumers == 0)
        opts_die("nothing to do with -x 0 and -y 0.");

    static char exname[64];
    if (!o->exchange) {
        snprintf(exname, sizeof exname, "perf-%s%s", opts_ex_type_names[o->ex_type],
                 o->persistent ? "-durable" : "");
        o->exchange = exname;
    }
    if (!o->queue_prefix)
        o->queue_prefix = o->persistent ? "perf-dq-" : "perf-q-";
    if (strlen(o->exchange) > 255)
        opts_die("--exchange is longer than 255 bytes.");
    if (strlen(o->queue_prefix) > 240)
        opts_die("--queue-prefix is longer than 240 bytes.");
    if (!o->header_key)
        o->header_key = "tenant";
    if (strlen(o->header_key) > 255)
        opts_die("--header-key is longer than 255 bytes.");
    if (o->expiration && strlen(o->expiration) > 255)
        opts_die("--expiration is longer than 255 bytes.");
}
