/* fuzz_http — libFuzzer target for the management API's request path as a client drives it:
 * each input is what an HTTP client writes on one connection (one request or several, pipelined),
 * written over loopback TCP to an in-process warrend with its management API (inproc.h), so the
 * bytes go through the HTTP parser (libhttp-parser and http.c's limits), basic auth against the
 * stored users, the router of api.c and the handlers' JSON bodies, as on a real socket. The loop
 * runs until the API has answered and closed, or has been quiet for 3 ms, or 50 ms passed. The
 * broker is shared between runs and restarted on a clean data directory every
 * WARREN_FUZZ_RESTART runs (default 500): what a request created stays until then. Nothing may
 * crash, leak or trip a sanitizer. Seeds: tests/fuzz/corpus-http/ (make_corpus.py). */
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
    inproc_start(&ip, true);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    inproc_exchange(&ip, ip.http_port, data, size, 3, 50);
    if (++runs % restart_every == 0)
        inproc_restart(&ip);
    return 0;
}
