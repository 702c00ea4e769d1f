/* fuzz_conn — libFuzzer target for the AMQP connection state machine as a client drives it:
 * each input is the whole byte stream of one client connection (protocol header, handshake,
 * channels, methods, content), written over loopback TCP to an in-process warrend (inproc.h:
 * storage on a tmpfs, sync off) whose loop runs until it has answered and closed, or has been
 * quiet for 3 ms, or 50 ms passed. The broker is shared between runs; exclusive and auto-delete
 * entities go with the connection, durable ones stay until the broker is restarted on a clean
 * data directory every WARREN_FUZZ_RESTART runs (default 500). Nothing may crash, leak or
 * trip a sanitizer, whatever the stream. Seeds: tests/fuzz/corpus-conn/ (make_corpus.py). */
#include <stdint.h>
#include <stdlib.h>

#include "tests/fuzz/inproc.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct inproc ip;
static unsigned long restart_every = 500, runs;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *e = getenv("WARREN_FUZZ_RESTART");
    if (e && atol(e) > 0)
        restart_every = (unsigned long)atol(e);
    inproc_start(&ip, false);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    inproc_exchange(&ip, ip.amqp_port, data, size, 3, 50);
    if (++runs % restart_every == 0)
        inproc_restart(&ip);
    return 0;
}
