/* fuzz_conf.c — libFuzzer target for the configuration file parser (broker/amqp/conf.c): any
 * bytes as a rabbitmq.conf, loaded by conf_load() over config_defaults() from a memfd (through
 * its /proc/self/fd path, since conf_load reads a path), then conf_default_listener() and
 * conf_free(). Owns the memfd for the whole run, and nothing else between runs (libFuzzer's
 * leak checker sees what conf_free() forgets). Invariant checked: a file that loads leaves a
 * config within the documented ranges, every string NUL-terminated inside its field. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "broker/amqp/conf.h"
#include "broker/amqp/server.h"
#include "lib/log.h"

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(diag, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);             \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *diag;      /* the real stderr, for CHECK */
static int memfd = -1;  /* the file conf_load reads */
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    diag = stderr;
    /* conf_load logs one line per refused file: quiet, unless WARREN_FUZZ_LOG is set. libFuzzer
     * and the sanitizers keep their own handle on fd 2, so their reports still show. */
    if (!getenv("WARREN_FUZZ_LOG")) {
        FILE *devnull = fopen("/dev/null", "w");
        if (devnull)
            stderr = devnull;
    }
    memfd = memfd_create("warren-fuzz-conf", MFD_CLOEXEC);
    if (memfd < 0) {
        fprintf(diag, "fuzz_conf: memfd_create: %s\n", strerror(errno));
        abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    return 0;
}

static void check_str(const char *field, size_t size)
{
    CHECK(memchr(field, 0, size) != NULL);
}

static void check_config(const struct config *cfg)
{
    CHECK(cfg->nlisteners <= CONFIG_LISTENERS_MAX);
    for (unsigned i = 0; i < cfg->nlisteners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        check_str(l->name, sizeof l->name);
        check_str(l->addr, sizeof l->addr);
        CHECK(l->name[0]);
        CHECK(l->port >= 1 && l->port <= 65535);
        for (unsigned j = 0; j < i; j++) /* a name given twice replaces the first */
            CHECK(strcmp(cfg->listeners[j].name, l->name) != 0 ||
                  cfg->listeners[j].tls != l->tls);
    }
    CHECK(cfg->frame_max >= 4096 && cfg->frame_max <= 1048576);
    CHECK(cfg->channel_max >= 1);
    CHECK(cfg->max_message_size >= 1 && cfg->max_message_size <= 536870912);
    CHECK(cfg->memory_high_watermark > 0 && cfg->memory_high_watermark <= 1);
    CHECK(cfg->consumer_timeout_ms <= 0xffffffffu);
    CHECK(cfg->mgmt_port == -1 || (cfg->mgmt_port >= 1 && cfg->mgmt_port <= 65535));
    CHECK(cfg->prom_port == -1 || (cfg->prom_port >= 1 && cfg->prom_port <= 65535));
    check_str(cfg->mgmt_ip, sizeof cfg->mgmt_ip);
    check_str(cfg->prom_ip, sizeof cfg->prom_ip);
    check_str(cfg->mgmt_ssl_ip, sizeof cfg->mgmt_ssl_ip);
    check_str(cfg->prom_ssl_ip, sizeof cfg->prom_ssl_ip);
    CHECK(cfg->mgmt_ssl_port == -1 || (cfg->mgmt_ssl_port >= 1 && cfg->mgmt_ssl_port <= 65535));
    CHECK(cfg->prom_ssl_port == -1 || (cfg->prom_ssl_port >= 1 && cfg->prom_ssl_port <= 65535));
    CHECK(cfg->ssl_handshake_timeout_ms >= 1 && cfg->ssl_handshake_timeout_ms <= 3600000);
    const struct tls_options *tls[] = {&cfg->tls, &cfg->mgmt_tls, &cfg->prom_tls};
    for (size_t i = 0; i < 3; i++) {
        check_str(tls[i]->ciphers, sizeof tls[i]->ciphers);
        CHECK(tls[i]->depth >= 0 && tls[i]->depth <= 100);
        CHECK(tls[i]->ciphers[0] != ':' && !strstr(tls[i]->ciphers, "::"));
    }
    check_str(cfg->auth_mechanisms, sizeof cfg->auth_mechanisms);
    CHECK(cfg->auth_mechanisms[0]);
    CHECK(!cfg->encryption_key_file || cfg->encryption_key_file[0]);
    CHECK(!cfg->encryption_key_command || cfg->encryption_key_command[0]);
    check_str(cfg->default_user_tags, sizeof cfg->default_user_tags);
    check_str(cfg->loopback_users, sizeof cfg->loopback_users);
    CHECK(cfg->data_dir && cfg->data_dir[0]);
    CHECK(cfg->default_user && cfg->default_user[0]);
    CHECK(cfg->default_pass && cfg->default_pass[0]);
    CHECK(cfg->default_vhost && cfg->default_vhost[0]);
    CHECK(cfg->default_perm_configure && cfg->default_perm_write && cfg->default_perm_read);
    CHECK(!cfg->load_definitions || cfg->load_definitions[0]);
    /* A list never holds an empty name or a doubled comma. */
    const char *lists[] = {cfg->default_user_tags, cfg->loopback_users};
    for (size_t i = 0; i < 2; i++) {
        const char *s = lists[i];
        CHECK(s[0] != ',' && !strstr(s, ",,"));
        CHECK(!s[0] || s[strlen(s) - 1] != ',');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(memfd, 0) < 0 || (size && pwrite(memfd, data, size, 0) != (ssize_t)size))
        abort();
    struct config cfg;
    config_defaults(&cfg);
    int level = -2;
    int rc = conf_load(&cfg, path, &level);
    if (rc == 0) {
        CHECK(level == -1 || level == CONF_LOG_NONE || (level >= 0 && level < LOG_LEVEL_MAX));
        check_config(&cfg);
        struct config_listener *dl = conf_default_listener(&cfg);
        CHECK(dl || cfg.nlisteners == CONFIG_LISTENERS_MAX);
        if (dl)
            CHECK(strcmp(dl->name, "default") == 0);
        check_config(&cfg);
    } else {
        CHECK(rc == -1);
        CHECK(level == -2); /* untouched on failure */
    }
    conf_free(&cfg);
    CHECK(cfg._nowned == 0 && cfg._owned == NULL);
    return 0;
}
