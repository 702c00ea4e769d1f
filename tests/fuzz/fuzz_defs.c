/* fuzz_defs — libFuzzer target for the definitions import (broker/model/defs.c): any bytes that
 * jansson parses are validated and, when valid, applied to a fresh broker without storage
 * (users and their hashes, vhosts, limits, permissions and their patterns, policies, parameters,
 * queues with their arguments, exchanges, bindings). Nothing may crash, leak or read out of
 * bounds, whatever the document says. Seeds: tests/fuzz/corpus-defs/. */
#include <jansson.h>
#include <stdint.h>
#include <uv.h>
#include "lib/log.h"
#include "broker/model/broker.h"
#include "broker/model/defs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uv_loop_t loop;
    static int ready;
    if (!ready) {
        uv_loop_init(&loop);
        log_threshold = LOG_ERROR;
        ready = 1;
    }
    json_error_t je;
    json_t *root = json_loadb((const char *)data, size, 0, &je);
    if (!root)
        return 0;
    struct broker b;
    broker_init(&b, &loop);
    char why[600];
    if (broker_add_vhost(&b, "/"))
        (void)defs_import_json(&b, root, "fuzz", why, sizeof why);
    json_decref(root);
    broker_free(&b);
    return 0;
}
