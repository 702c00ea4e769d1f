/* 50-durability-encryption — encryption at rest (issue 12) against a real warrend started with
 * `--config` files holding encryption.key_file / encryption.key_command:
 *  - without a key, the bodies of persistent messages are in data.mdb as published (a marker
 *    string is found there: the test can see what it looks for);
 *  - with a key from the first start, neither a marker in a body (small ones and 300 KB ones over
 *    several frames) nor one in a header is ever in data.mdb, and a restart with the same key
 *    delivers every message with its body and headers;
 *  - a wrong key, no key and a key_command that fails each stop warrend before it listens, with
 *    a non-zero exit status, one log line naming the data dir and the problem, and data.mdb
 *    byte for byte as it was;
 *  - messages stored before a key was configured stay readable after it is;
 *  - rotation: `warrenctl rotate_key` after the key file was replaced re-encrypts 20,000 stored
 *    messages in the background while publishes (confirmed) and gets go on; then only the new key starts warrend (the old
 *    one is refused), and every message is delivered;
 *  - encryption.key_command (a command printing the key in base64) works the same, rotation
 *    included (the command then runs on warrend's threadpool);
 *  - a SIGKILL in the middle of a rotation (held there by tests/integration/failsync.c's
 *    slow-disk mode, $FAILSYNC): the old key is then refused as the one the rotation replaced,
 *    data.mdb untouched, and the new key alone starts warrend, which finishes the rotation by
 *    itself and delivers every message.
 * Needs $WARREND and $WARRENCTL ($FAILSYNC for the last case); skips against an external
 * broker. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <amqp_framing.h>

#define BIG (300 * 1024)
#define MORE 20000 /* messages for the rotation: about 160 re-encryption steps */

static harness_broker_t s_broker;
static char s_dir[256];     /* keys and configuration files */
static char s_marker[64];   /* "WARREN-ENC-<pid>", in every body and header published */
static int s_mgmt_port;
static const char *s_cfg_k1, *s_cfg_k2, *s_cfg_cur, *s_cfg_cur2, *s_cfg_cmd, *s_cfg_badcmd;
static char *s_body;        /* BIG + 256 bytes */

/* ---- keys and files ------------------------------------------------------------------------- */

static void random_bytes(uint8_t *p, size_t n)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    CHECK(read(fd, p, n) == (ssize_t)n);
    close(fd);
}

static void base64(const uint8_t *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECKF(fd >= 0, "%s: %m", path);
    CHECK(write(fd, p, n) == (ssize_t)n);
    close(fd);
}

static char *read_all(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    CHECKF(f, "%s: %m", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    CHECK(p && fread(p, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *ret_len = (size_t)n;
    return p;
}

/* How many times s occurs in the data dir's data.mdb (warrend stopped). */
static int occurrences(const char *s)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", s_broker.data_dir);
    size_t n, len = strlen(s);
    char *p = read_all(path, &n);
    int count = 0;
    for (char *q = p; (q = memmem(q, n - (size_t)(q - p), s, len)) != NULL; q += len)
        count++;
    free(p);
    return count;
}

static const char *config(const char *name, const char *key_line)
{
    char text[1024];
    snprintf(text, sizeof text,
             "management.tcp.port = %d\nprometheus.tcp.port = none\n%s\n", s_mgmt_port, key_line);
    return harness_write_file(s_dir, name, text);
}

/* ---- publishing and reading back ------------------------------------------------------------ */

/* Body number i of a series: "<marker>-<tag>-<i>." padded with 'x' to size bytes. */
static amqp_bytes_t body(const char *tag, int i, size_t size)
{
    int n = snprintf(s_body, 200, "%s-%s-%d.", s_marker, tag, i);
    if (size < (size_t)n)
        size = (size_t)n;
    memset(s_body + n, 'x', size - (size_t)n);
    return (amqp_bytes_t){size, s_body};
}

static amqp_connection_state_t open_confirms(void)
{
    amqp_connection_state_t conn = harness_open(&s_broker);
    harness_confirm_select(conn, 1);
    return conn;
}

/* Reads basic.acks on conn until publish number upto is confirmed. */
static void wait_acks(amqp_connection_state_t conn, uint64_t upto)
{
    static uint64_t acked;
    if (upto < acked)
        acked = 0; /* a new connection */
    while (acked < upto) {
        amqp_frame_t f;
        amqp_maybe_release_buffers(conn);
        int st = harness_next_frame(conn, &f, 10000);
        CHECKF(st == 0, "waiting for confirm %llu: %s", (unsigned long long)upto,
               amqp_error_string2(st));
        CHECKF(f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD,
               "got frame type %u (%s) while waiting for confirms", f.frame_type,
               f.frame_type == AMQP_FRAME_METHOD ? amqp_method_name(f.payload.method.id) : "-");
        amqp_basic_ack_t *ack = f.payload.method.decoded;
        if (ack->delivery_tag > acked)
            acked = ack->delivery_tag;
    }
}

/* Publishes bodies tag-first .. tag-(first+n-1) of size bytes, persistent, with the header
 * {"marker": "<marker>-hdr-<tag>"}, to q on conn (channel 1 in confirm mode, *seq publishes so
 * far), and waits until all are confirmed. */
static void publish(amqp_connection_state_t conn, uint64_t *seq, const char *q, const char *tag,
                    int first, int n, size_t size)
{
    char hv[128];
    snprintf(hv, sizeof hv, "%s-hdr-%s", s_marker, tag);
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("marker"),
                            .value = {.kind = AMQP_FIELD_KIND_UTF8,
                                      .value.bytes = amqp_cstring_bytes(hv)}};
    amqp_basic_properties_t props = {
        ._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG,
        .delivery_mode = 2, .headers = {1, &e}};
    for (int i = first; i < first + n; i++) {
        CHECK_AMQP(amqp_basic_publish(conn, 1, amqp_cstring_bytes(""), amqp_cstring_bytes(q), 0,
                                      0, &props, body(tag, i, size)));
        if (++*seq % 200 == 0)
            wait_acks(conn, *seq);
    }
    wait_acks(conn, *seq);
}

/* Takes one message from q (no-ack): it must be body tag-i of size bytes with its header. */
static void expect_next(amqp_connection_state_t conn, const char *q, const char *tag, int i,
                        size_t size)
{
    harness_got_t g;
    CHECKF(harness_get(conn, 1, q, true, &g), "queue %s is empty, want %s-%d", q, tag, i);
    amqp_bytes_t want = body(tag, i, size);
    CHECKF(harness_bytes_eq(g.msg.body, want), "queue %s: got \"%.60s\" (%zu bytes), want %s-%d "
           "(%zu bytes)", q, g.body, g.msg.body.len, tag, i, want.len);
    char hv[128];
    snprintf(hv, sizeof hv, "%s-hdr-%s", s_marker, tag);
    const amqp_field_value_t *h = harness_table_get(&g.msg.properties.headers, "marker");
    CHECKF(h && h->kind == AMQP_FIELD_KIND_UTF8 && harness_bytes_is(h->value.bytes, hv),
           "queue %s, %s-%d: the marker header did not come back", q, tag, i);
    CHECK_EQ(g.msg.properties.delivery_mode, 2);
    harness_got_free(&g);
}

static void expect_series(amqp_connection_state_t conn, const char *q, const char *tag, int first,
                          int n, size_t size)
{
    for (int i = first; i < first + n; i++)
        expect_next(conn, q, tag, i, size);
}

static void expect_empty(amqp_connection_state_t conn, const char *q)
{
    harness_got_t g;
    CHECKF(!harness_get(conn, 1, q, true, &g), "queue %s holds more: \"%.60s\"", q, g.body);
}

/* ---- starts that must be refused ------------------------------------------------------------- */

/* warrend with config cfg on the data dir must exit non-zero without listening, its stderr
 * naming the data dir and saying word, and leave data.mdb exactly as it was. */
static void expect_refusal(const char *what, const char *cfg, const char *word)
{
    char path[4200], err[8192], port[16];
    snprintf(path, sizeof path, "%s/data.mdb", s_broker.data_dir);
    size_t n0, n1;
    char *before = read_all(path, &n0);
    int p = harness_free_port();
    snprintf(port, sizeof port, "%d", p);
    const char *args_cfg[] = {"--config", cfg, "--port", port, "--bind", "127.0.0.1",
                              "--data-dir", s_broker.data_dir, "--log-level", "warn", NULL};
    const char *args_plain[] = {"--port", port, "--bind", "127.0.0.1", "--data-dir",
                                s_broker.data_dir, "--log-level", "warn", "--no-management",
                                "--no-prometheus", NULL};
    bool listened = true;
    int status = harness_warrend_run_args(cfg ? args_cfg : args_plain, p, 20000, err, sizeof err,
                                          &listened);
    CHECKF(status != -1, "%s: warrend was still running after 20 s", what);
    CHECKF(!listened, "%s: warrend accepted connections before it exited", what);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) != 0,
           "%s: warrend should exit with a non-zero status, %s %d", what,
           WIFEXITED(status) ? "exit status" : "signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    CHECKF(strstr(err, s_broker.data_dir) || strstr(err, "key_command"),
           "%s: stderr names neither the data dir %s nor the key command: %s", what,
           s_broker.data_dir, err);
    CHECKF(strstr(err, word), "%s: stderr does not say \"%s\": %s", what, word, err);
    int lines = 0;
    for (const char *q = err; *q; q++)
        lines += *q == '\n';
    CHECKF(lines == 1, "%s: %d lines on stderr, want one: %s", what, lines, err);
    char *after = read_all(path, &n1);
    CHECKF(n0 == n1 && memcmp(before, after, n0) == 0, "%s: data.mdb changed (%zu -> %zu bytes)",
           what, n0, n1);
    free(before);
    free(after);
    harness_log("%s: refused with exit status %d, data.mdb unchanged (%zu bytes)", what,
                WEXITSTATUS(status), n0);
}

static void respawn(const char *cfg)
{
    const char *args[] = {"--config", cfg, NULL};
    harness_broker_respawn(&s_broker, args);
}

/* Runs warrenctl with the management URL and args; its output (stdout and stderr) into out.
 * Returns its exit status. */
static int warrenctl(const char *args, char *out, size_t cap)
{
    const char *exe = getenv("WARRENCTL");
    CHECKF(exe && *exe, "WARRENCTL is not set");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --url http://127.0.0.1:%d %s 2>&1", exe, s_mgmt_port, args);
    FILE *p = popen(cmd, "r");
    CHECK(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int status = pclose(p);
    harness_log("warrenctl %s -> %d: %s", args, WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- the cases ------------------------------------------------------------------------------- */

/* No key: the marker is in data.mdb. A key configured afterwards: the old messages stay
 * readable, the new ones are not in the file, and no key is refused from then on. */
static void plain_then_key(void)
{
    harness_broker_start_args(&s_broker, (const char *const[]){"--no-management",
                                                                "--no-prometheus", NULL});
    harness_require_own_broker(&s_broker);
    amqp_connection_state_t conn = open_confirms();
    uint64_t seq = 0;
    harness_queue_declare(conn, 1, "enc.legacy", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    publish(conn, &seq, "enc.legacy", "plain", 0, 5, 200);
    harness_disconnect(conn);
    harness_broker_shutdown(&s_broker);
    char m[128];
    snprintf(m, sizeof m, "%s-plain-", s_marker);
    CHECKF(occurrences(m) >= 5, "without a key, the bodies should be in data.mdb as published");
    harness_log("without a key: %d copies of the body marker in data.mdb", occurrences(m));

    respawn(s_cfg_k1);
    conn = open_confirms();
    seq = 0;
    publish(conn, &seq, "enc.legacy", "sealed", 0, 5, 200);
    harness_disconnect(conn);
    harness_broker_shutdown(&s_broker);
    snprintf(m, sizeof m, "%s-sealed-", s_marker);
    CHECK_EQ(occurrences(m), 0);
    snprintf(m, sizeof m, "%s-hdr-sealed", s_marker);
    CHECK_EQ(occurrences(m), 0);
    expect_refusal("legacy data dir, encrypted messages, no key", NULL, "encrypted");

    respawn(s_cfg_k1);
    conn = harness_open(&s_broker);
    expect_series(conn, "enc.legacy", "plain", 0, 5, 200);
    expect_series(conn, "enc.legacy", "sealed", 0, 5, 200);
    expect_empty(conn, "enc.legacy");
    harness_disconnect(conn);
    harness_log("messages stored before the key was configured stay readable");
    CHECK_EQ(harness_broker_stop(&s_broker), 0);
}

/* A key from the first start: nothing readable on disk; same key reads; wrong, none and a failing
 * key_command are refused; then rotation. */
static void keyed_restart_refusals_rotation(void)
{
    harness_broker_start_args(&s_broker, (const char *const[]){"--config", s_cfg_cur, NULL});
    amqp_connection_state_t conn = open_confirms();
    uint64_t seq = 0;
    harness_queue_declare(conn, 1, "enc.q", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    publish(conn, &seq, "enc.q", "small", 0, 50, 1000);
    publish(conn, &seq, "enc.q", "big", 0, 2, BIG);
    harness_disconnect(conn);
    harness_broker_shutdown(&s_broker);
    CHECK_EQ(occurrences(s_marker), 0);
    harness_log("with a key: no marker (body or header) anywhere in data.mdb");

    expect_refusal("wrong key", s_cfg_k2, "wrong encryption key");
    expect_refusal("no key", NULL, "no encryption key is configured");
    expect_refusal("failing key_command", s_cfg_badcmd, "key_command");

    respawn(s_cfg_cur);
    conn = harness_open(&s_broker);
    expect_series(conn, "enc.q", "small", 0, 10, 1000); /* some taken, the rest stays */
    harness_disconnect(conn);
    harness_log("the same key reads them back");

    /* Rotation: more messages (past a step and the in-memory window), then the key file gets
     * the new key and warrenctl rotate_key runs while publishing and getting go on. */
    conn = open_confirms();
    seq = 0;
    publish(conn, &seq, "enc.q", "more", 0, MORE, 1000);
    char path[300], k2[300], out[4096];
    size_t n;
    snprintf(path, sizeof path, "%s/current", s_dir);
    snprintf(k2, sizeof k2, "%s/k2.b64", s_dir);
    char *bytes = read_all(k2, &n);
    write_bytes(path, bytes, n); /* the operator replaces the key file ... */
    free(bytes);
    CHECK_EQ(warrenctl("rotate_key", out, sizeof out), 0);
    CHECKF(strstr(out, "replaces"), "rotate_key should say which key replaces which: %s", out);
    bool background = strstr(out, "in the background") != NULL;
    publish(conn, &seq, "enc.q", "during", 0, 300, 1000);
    expect_next(conn, "enc.q", "small", 10, 1000);
    CHECK_EQ(warrenctl("encryption_status", out, sizeof out), 0);
    harness_log("rotate_key returned %s; after 300 confirmed publishes and a get the rotation "
                "is %s", background ? "while re-encrypting" : "after it finished",
                strstr(out, ": rotating") ? "still running" : "done");
    int64_t t0 = harness_now_ms();
    for (;;) {
        CHECK_EQ(warrenctl("encryption_status --formatter json", out, sizeof out), 0);
        if (strstr(out, "\"state\": \"idle\""))
            break;
        CHECKF(harness_now_ms() - t0 < 30000, "the rotation did not finish within 30 s: %s", out);
        usleep(100 * 1000);
    }
    CHECKF(strstr(out, "\"records_damaged\": 0") && strstr(out, "\"rotations\": 1"),
           "after the rotation: %s", out);
    CHECK_EQ(warrenctl("rotate_key --wait", out, sizeof out), 0); /* same key: nothing to do */
    CHECKF(strstr(out, "still gives key id"), "rotate_key with the same key: %s", out);
    harness_disconnect(conn);
    harness_broker_shutdown(&s_broker);
    CHECK_EQ(occurrences(s_marker), 0);

    expect_refusal("the old key after a rotation", s_cfg_k1, "wrong encryption key");
    respawn(s_cfg_k2); /* only the new key, from another file */
    conn = harness_open(&s_broker);
    expect_series(conn, "enc.q", "small", 11, 39, 1000);
    expect_series(conn, "enc.q", "big", 0, 2, BIG);
    expect_series(conn, "enc.q", "more", 0, MORE, 1000);
    expect_series(conn, "enc.q", "during", 0, 300, 1000);
    expect_empty(conn, "enc.q");
    harness_disconnect(conn);
    harness_log("after rotation and a restart with the new key alone: all %d delivered",
                39 + 2 + MORE + 300);
    CHECK_EQ(harness_broker_stop(&s_broker), 0);
}

/* encryption.key_command: the key from a command's output. */
static void key_command(void)
{
    harness_broker_start_args(&s_broker, (const char *const[]){"--config", s_cfg_cmd, NULL});
    amqp_connection_state_t conn = open_confirms();
    uint64_t seq = 0;
    harness_queue_declare(conn, 1, "enc.cmd", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    publish(conn, &seq, "enc.cmd", "cmd", 0, 20, 500);
    harness_disconnect(conn);
    harness_broker_shutdown(&s_broker);
    CHECK_EQ(occurrences(s_marker), 0);
    expect_refusal("key_command data dir, key_file with another key", s_cfg_k1,
                   "wrong encryption key");
    respawn(s_cfg_cmd);
    /* Rotation with the key from the command (run on warrend's threadpool this time). */
    uint8_t k4[32];
    char b64[64], path[300], out[4096];
    random_bytes(k4, sizeof k4);
    base64(k4, sizeof k4, b64);
    snprintf(path, sizeof path, "%s/k3.b64", s_dir);
    write_bytes(path, b64, strlen(b64));
    CHECK_EQ(warrenctl("rotate_key --wait", out, sizeof out), 0);
    CHECKF(strstr(out, "replaces") && strstr(out, "Re-encrypted 20 of 20"),
           "rotate_key with key_command: %s", out);
    harness_broker_shutdown(&s_broker);
    respawn(s_cfg_cmd);
    conn = harness_open(&s_broker);
    expect_series(conn, "enc.cmd", "cmd", 0, 20, 500);
    expect_empty(conn, "enc.cmd");
    harness_disconnect(conn);
    harness_log("encryption.key_command: sealed on disk, rotated, read back after restarts");
    CHECK_EQ(harness_broker_stop(&s_broker), 0);
}

/* Status lines of warrenctl encryption_status into out; true when state is want. */
static bool status_is(const char *want, char *out, size_t cap)
{
    CHECK_EQ(warrenctl("encryption_status", out, cap), 0);
    char line[64];
    snprintf(line, sizeof line, "Encryption at rest: %s\n", want);
    return strstr(out, line) != NULL;
}

/* A rotation cut short by SIGKILL resumes at the next start with the new key alone. */
static void rotation_crash(void)
{
    const char *shim = getenv("FAILSYNC");
    if (!shim || access(shim, R_OK) != 0) {
        harness_log("SKIP rotation_crash: $FAILSYNC (the fault-injection shim) is not set");
        return;
    }
    char slow[300], path[300], k2[300], out[4096];
    snprintf(slow, sizeof slow, "%s/slow-disk", s_dir);
    /* warrend (and the warrenctl runs) inherit these; ASan is told not to mind the shim. */
    setenv("LD_PRELOAD", shim, 1);
    setenv("WARREN_SLOWSYNC_TRIGGER", slow, 1);
    setenv("WARREN_SLOWSYNC_MS", "40", 1);
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);

    snprintf(path, sizeof path, "%s/current2", s_dir); /* k1 now, k2 for the rotation */
    snprintf(k2, sizeof k2, "%s/k2.b64", s_dir);
    harness_broker_start_args(&s_broker, (const char *const[]){"--config", s_cfg_cur2, NULL});
    amqp_connection_state_t conn = open_confirms();
    uint64_t seq = 0;
    harness_queue_declare(conn, 1, "enc.crash", HARNESS_QUEUE_DURABLE, amqp_empty_table);
    publish(conn, &seq, "enc.crash", "crash", 0, 5000, 300);
    harness_disconnect(conn);
    size_t n;
    char *bytes = read_all(k2, &n);
    write_bytes(path, bytes, n);
    free(bytes);
    write_bytes(slow, "", 0); /* each commit now takes 40 ms more: about 40 steps, 1.6 s */
    CHECK_EQ(warrenctl("rotate_key", out, sizeof out), 0);
    CHECKF(status_is("rotating", out, sizeof out), "the rotation should still run: %s", out);
    harness_broker_kill9(&s_broker);
    unlink(slow);
    harness_log("SIGKILL in the middle of the rotation: %s", out);

    expect_refusal("the old key after an interrupted rotation", s_cfg_k1, "unfinished");
    respawn(s_cfg_k2); /* only the new key: the rotation resumes */
    int64_t t0 = harness_now_ms();
    while (!status_is("idle", out, sizeof out))
        CHECKF(harness_now_ms() - t0 < 30000, "the resumed rotation did not finish: %s", out);
    harness_broker_shutdown(&s_broker);
    /* (before draining: a data dir without messages would take any key) */
    expect_refusal("the old key after the resumed rotation", s_cfg_k1, "wrong encryption key");
    respawn(s_cfg_k2);
    conn = harness_open(&s_broker);
    expect_series(conn, "enc.crash", "crash", 0, 5000, 300);
    expect_empty(conn, "enc.crash");
    harness_disconnect(conn);
    harness_log("a rotation cut by SIGKILL resumed with the new key alone; all 5000 delivered");
    CHECK_EQ(harness_broker_stop(&s_broker), 0);
    unsetenv("LD_PRELOAD");
}

int main(void)
{
    harness_watchdog(170);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (getenv("WARREN_TEST_HOST") && getenv("WARREN_TEST_PORT")) {
        printf("SKIP: these checks start and stop warrend themselves\n");
        return 77;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(s_dir, sizeof s_dir, "%s/warren-it-keys-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECKF(mkdtemp(s_dir), "mkdtemp: %m");
    snprintf(s_marker, sizeof s_marker, "WARREN-ENC-%d", (int)getpid());
    CHECK(s_body = malloc(BIG + 256));
    s_mgmt_port = harness_free_port();

    uint8_t k1[32], k2[32], k3[32];
    char b64[64], line[512], path[300];
    random_bytes(k1, sizeof k1);
    random_bytes(k2, sizeof k2);
    random_bytes(k3, sizeof k3);
    snprintf(path, sizeof path, "%s/k1", s_dir); /* raw bytes */
    write_bytes(path, k1, sizeof k1);
    snprintf(path, sizeof path, "%s/current", s_dir); /* raw k1, replaced by k2 to rotate */
    write_bytes(path, k1, sizeof k1);
    snprintf(path, sizeof path, "%s/current2", s_dir); /* the same, for rotation_crash */
    write_bytes(path, k1, sizeof k1);
    base64(k2, sizeof k2, b64); /* base64 with a newline */
    strcat(b64, "\n");
    snprintf(path, sizeof path, "%s/k2.b64", s_dir);
    write_bytes(path, b64, strlen(b64));
    base64(k3, sizeof k3, b64);
    snprintf(path, sizeof path, "%s/k3.b64", s_dir);
    write_bytes(path, b64, strlen(b64));

    snprintf(line, sizeof line, "encryption.key_file = %s/k1", s_dir);
    s_cfg_k1 = strdup(config("k1.conf", line));
    snprintf(line, sizeof line, "encryption.key_file = %s/k2.b64", s_dir);
    s_cfg_k2 = strdup(config("k2.conf", line));
    snprintf(line, sizeof line, "encryption.key_file = %s/current", s_dir);
    s_cfg_cur = strdup(config("cur.conf", line));
    snprintf(line, sizeof line, "encryption.key_file = %s/current2", s_dir);
    s_cfg_cur2 = strdup(config("cur2.conf", line));
    snprintf(line, sizeof line, "encryption.key_command = cat %s/k3.b64", s_dir);
    s_cfg_cmd = strdup(config("cmd.conf", line));
    s_cfg_badcmd = strdup(config("badcmd.conf", "encryption.key_command = exit 3"));

    plain_then_key();
    keyed_restart_refusals_rotation();
    key_command();
    rotation_crash();

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    CHECK(system(cmd) == 0);
    free(s_body);
    harness_log("PASS");
    return 0;
}
