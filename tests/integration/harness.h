/* harness.h — test-side helpers for the integration tests: start (or borrow) a broker, open
 * rabbitmq-c connections, speak raw AMQP over a plain socket, assert and time out.
 * Owns the broker process it forks and its temp data dir; owns nothing of the broker's state.
 * Deliberately independent of protocol/: the raw codec here is written from the spec so that
 * a codec bug cannot hide itself by being on both ends.
 * Invariant: a broker started here is always killed on the way out (pass, CHECK failure,
 * watchdog, or test process death via PR_SET_PDEATHSIG). */
#ifndef WARREN_TESTS_HARNESS_H
#define WARREN_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <amqp.h>

/* ---- assertions --------------------------------------------------------------------------- */

/* Print "file:line: CHECK failed: expr [detail]", stop the broker, exit 1. */
_Noreturn void harness_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define CHECK(expr)                                                                               \
    do {                                                                                          \
        if (!(expr))                                                                              \
            harness_fail(__FILE__, __LINE__, #expr, NULL);                                        \
    } while (0)

/* CHECK with a printf-style explanation appended. */
#define CHECKF(expr, ...)                                                                         \
    do {                                                                                          \
        if (!(expr))                                                                              \
            harness_fail(__FILE__, __LINE__, #expr, __VA_ARGS__);                                 \
    } while (0)

#define CHECK_EQ(a, b)                                                                            \
    do {                                                                                          \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                           \
        if (check_a_ != check_b_)                                                                 \
            harness_fail(__FILE__, __LINE__, #a " == " #b, "%lld != %lld", check_a_, check_b_);  \
    } while (0)

#define CHECK_STREQ(a, b)                                                                         \
    do {                                                                                          \
        const char *check_a_ = (a), *check_b_ = (b);                                              \
        if (strcmp(check_a_, check_b_) != 0)                                                      \
            harness_fail(__FILE__, __LINE__, #a " == " #b, "\"%s\" != \"%s\"", check_a_,          \
                         check_b_);                                                               \
    } while (0)

/* A rabbitmq-c status code (0 or negative amqp_status_enum). */
#define CHECK_AMQP(status)                                                                        \
    do {                                                                                          \
        int check_s_ = (status);                                                                  \
        if (check_s_ < 0)                                                                         \
            harness_fail(__FILE__, __LINE__, #status, "%s", amqp_error_string2(check_s_));        \
    } while (0)

/* An amqp_rpc_reply_t that must be AMQP_RESPONSE_NORMAL. */
#define CHECK_REPLY(reply)                                                                        \
    do {                                                                                          \
        amqp_rpc_reply_t check_r_ = (reply);                                                      \
        if (check_r_.reply_type != AMQP_RESPONSE_NORMAL) {                                        \
            char check_buf_[512];                                                                 \
            harness_fail(__FILE__, __LINE__, #reply, "%s",                                        \
                         harness_reply_str(check_r_, check_buf_, sizeof check_buf_));             \
        }                                                                                         \
    } while (0)

/* An LMDB call that must return 0, for the tests that open warrend's environment themselves
 * while it is stopped (they include <lmdb.h>; nothing else expands this). */
#define CHECK_MDB(call)                                                                           \
    do {                                                                                          \
        int check_rc_ = (call);                                                                   \
        if (check_rc_ != 0)                                                                       \
            harness_fail(__FILE__, __LINE__, #call, "%s", mdb_strerror(check_rc_));               \
    } while (0)

/* Describe a reply: "ok", "library error: ...", "server channel.close 404 NOT_FOUND - ...". */
const char *harness_reply_str(amqp_rpc_reply_t r, char *buf, size_t n);

/* Arm an alarm(): when it fires, print which test hung, kill the broker, exit 2. */
void harness_watchdog(unsigned seconds);

/* Print a progress line to stdout (visible in meson's test log). */
void harness_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t harness_now_ms(void);

/* ---- the broker under test ---------------------------------------------------------------- */

typedef struct harness_broker {
    char host[64];
    int port;
    pid_t pid;           /* 0 when the broker is external (WARREN_TEST_HOST/PORT) */
    char data_dir[4096]; /* owned: removed by harness_broker_stop(); empty when external */
} harness_broker_t;

/* Start $WARREND on a free port with a fresh data dir and wait (<= 10 s) until it accepts
 * connections; or, when WARREN_TEST_HOST and WARREN_TEST_PORT are set, start nothing and use
 * that broker. Exits 77 (meson "skip") when neither is available. Failures end the test. */
void harness_broker_start(harness_broker_t *b);

/* True when the broker is someone else's (RabbitMQ on 5682, say). */
bool harness_external(const harness_broker_t *b);

/* SIGTERM, wait up to 5 s, then SIGKILL; remove the data dir. Returns 0 when warrend was still
 * running and exited cleanly (status 0 or killed by our SIGTERM), -1 otherwise (it crashed
 * during the test, or ignored SIGTERM): the message says which. No-op (0) when external. */
int harness_broker_stop(harness_broker_t *b);

/* Is our broker process still alive? (Always true for an external broker.) */
bool harness_broker_alive(const harness_broker_t *b);

/* A TCP port that was free a moment ago (bind 127.0.0.1:0, read it, close). */
int harness_free_port(void);

/* Write text to the file name in dir (created or truncated) and return its path, "dir/name", in
 * one of 16 rotating static buffers of 4200 bytes: it stays valid for the next 15 calls. Fails
 * the test when the file cannot be written. For the config and definitions files a test keeps in
 * its own temp dir. */
const char *harness_write_file(const char *dir, const char *name, const char *text);

/* ---- rabbitmq-c connections ---------------------------------------------------------------- */

/* Open a socket and log in as guest/guest on vhost "/"; the test fails if that does not work. */
amqp_connection_state_t harness_connect(const harness_broker_t *b, int channel_max, int frame_max,
                                        int heartbeat);

/* Like harness_connect() but with any credentials, returning the login reply instead of
 * failing. *ret_conn is set either way (also when the TCP connect itself failed: then the reply
 * is a library exception); the caller destroys it with amqp_destroy_connection(). */
amqp_rpc_reply_t harness_try_login(const harness_broker_t *b, const char *user, const char *pass,
                                   int channel_max, int frame_max, int heartbeat,
                                   amqp_connection_state_t *ret_conn);

/* harness_try_login() as user/pass opening vhost instead of "/", with the server's channel_max,
 * AMQP_DEFAULT_FRAME_SIZE and no heartbeat. Same reply and *ret_conn. */
amqp_rpc_reply_t harness_try_login_vhost(const harness_broker_t *b, const char *user,
                                         const char *pass, const char *vhost,
                                         amqp_connection_state_t *ret_conn);

/* harness_try_login_vhost() that must succeed (the test fails saying user, vhost and the reply
 * otherwise), then channel 1 opened: the connection. */
amqp_connection_state_t harness_open_as(const harness_broker_t *b, const char *user,
                                        const char *pass, const char *vhost);

/* The connection.close text RabbitMQ sends (403, class 0 method 0) when a PLAIN login is
 * refused: bad password, unknown user, loopback-only user from elsewhere. */
#define HARNESS_REFUSED_PLAIN                                                                     \
    "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see "  \
    "the broker logfile."

/* connection.close (must get close-ok) and destroy. */
void harness_disconnect(amqp_connection_state_t conn);

/* channel.open that must succeed. */
void harness_channel_open(amqp_connection_state_t conn, amqp_channel_t ch);

/* A new connection can declare a queue, publish to it and get the message back. Used after
 * every error case to prove that the broker (and other connections) survived. */
void harness_check_alive(const harness_broker_t *b);

/* r must be the channel.close the server sent on ch with exactly this code, text and
 * class/method ids; answers it with close-ok. */
void harness_expect_channel_close(amqp_connection_state_t conn, amqp_channel_t ch,
                                  amqp_rpc_reply_t r, uint16_t code, const char *text,
                                  uint16_t class_id, uint16_t method_id);

/* harness_expect_channel_close() with the text printf-formatted, then channel.open of ch again
 * (which must succeed), for a test that goes on using the channel. */
void harness_expect_channel_reopen(amqp_connection_state_t conn, amqp_channel_t ch,
                                   amqp_rpc_reply_t r, uint16_t code, uint16_t class_id,
                                   uint16_t method_id, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* Look a key up in a table; NULL when absent. */
const amqp_field_value_t *harness_table_get(const amqp_table_t *t, const char *key);

/* b holds exactly the bytes of the C string s (no NUL); an empty b (bytes may be NULL) matches
 * only "". */
bool harness_bytes_is(amqp_bytes_t b, const char *s);

/* a and b hold the same octets (either may be empty with bytes NULL). */
bool harness_bytes_eq(amqp_bytes_t a, amqp_bytes_t b);

/* Set the prefix harness_name() puts before every name to "<tag>-<pid>" ("it-xa-1234"), so
 * that test runs and tests do not share queues or exchanges. Call it once, at the start of main.
 * Returns the prefix (static storage, valid for the whole test). */
const char *harness_name_init(const char *tag);

/* A per-test entity name, "<prefix>-<suffix>" with suffix printf-formatted. The result lives in
 * one of 32 rotating static buffers of 128 bytes (truncated): it stays valid for the next 31
 * calls, so several names may be in use at once. Fails the test before harness_name_init(). */
const char *harness_name(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- raw sockets ---------------------------------------------------------------------------- */

/* Connect a plain blocking TCP socket to the broker; fails the test on error. */
int raw_connect(const harness_broker_t *b);

/* Write all of buf. 0 or -errno. */
int raw_send(int fd, const void *buf, size_t len);

/* Read exactly len bytes within timeout_ms (total). Returns len, or the count read before EOF
 * (0 <= n < len), or -ETIMEDOUT / -errno (ECONNRESET counts as EOF: returns the count). */
ssize_t raw_recv(int fd, void *buf, size_t len, int timeout_ms);

/* Discard input until the peer closes (EOF or reset): 0; -ETIMEDOUT if it has not closed in
 * timeout_ms. *ret_discarded (may be NULL) gets the number of bytes thrown away. */
int raw_wait_closed(int fd, int timeout_ms, size_t *ret_discarded);

enum { RAW_FRAME_METHOD = 1, RAW_FRAME_HEADER = 2, RAW_FRAME_BODY = 3, RAW_FRAME_HEARTBEAT = 8 };

typedef struct raw_frame {
    uint8_t type;
    uint16_t channel;
    uint32_t size;
    uint8_t *payload; /* owned: malloc'ed, freed by raw_frame_free() */
    uint16_t class_id, method_id; /* for method frames */
} raw_frame_t;

void raw_frame_free(raw_frame_t *f);

/* Read one frame. 0, -EPIPE on EOF, -ETIMEDOUT, -EPROTO on a bad frame-end octet, -E2BIG
 * when the peer announces a frame over 16 MiB. */
int raw_read_frame(int fd, raw_frame_t *f, int timeout_ms);

/* Read frames until a method frame (heartbeats skipped). Same returns as raw_read_frame(). */
int raw_read_method(int fd, raw_frame_t *f, int timeout_ms);

/* A growable byte buffer for building frames by hand (big-endian, as AMQP wants). */
typedef struct wbuf {
    uint8_t *p; /* owned */
    size_t len, cap;
} wbuf_t;

void wb_free(wbuf_t *w);
void wb_bytes(wbuf_t *w, const void *src, size_t n);
void wb_u8(wbuf_t *w, uint8_t v);
void wb_u16(wbuf_t *w, uint16_t v);
void wb_u32(wbuf_t *w, uint32_t v);
void wb_u64(wbuf_t *w, uint64_t v);
void wb_shortstr(wbuf_t *w, const char *s);
void wb_longstr(wbuf_t *w, const void *s, size_t n);
/* Start a frame; returns a mark for wb_frame_end(), which patches the size and adds 0xCE. */
size_t wb_frame_begin(wbuf_t *w, uint8_t type, uint16_t channel);
void wb_frame_end(wbuf_t *w, size_t mark);
/* A whole method frame: class, method, then the already-encoded arguments. */
void wb_method(wbuf_t *w, uint16_t channel, uint16_t class_id, uint16_t method_id,
               const void *args, size_t args_len);

/* A cursor for parsing what the server sent. Reads past the end set .err and return zeros. */
typedef struct rbuf {
    const uint8_t *p; /* borrowed */
    size_t len, off;
    bool err;
} rbuf_t;

uint8_t rb_u8(rbuf_t *r);
uint16_t rb_u16(rbuf_t *r);
uint32_t rb_u32(rbuf_t *r);
uint64_t rb_u64(rbuf_t *r);
/* Copies a shortstr NUL-terminated into out (truncated to cap-1). */
void rb_shortstr(rbuf_t *r, char *out, size_t cap);
/* Returns a pointer into the buffer and sets *ret_len (a longstr or a table's bytes). */
const uint8_t *rb_longstr(rbuf_t *r, uint32_t *ret_len);

typedef struct raw_tune {
    uint16_t channel_max;
    uint32_t frame_max;
    uint16_t heartbeat;
} raw_tune_t;

typedef struct raw_close {
    uint16_t reply_code;
    char reply_text[512];
    uint16_t class_id, method_id;
    uint16_t channel; /* frame channel: 0 for connection.close */
} raw_close_t;

/* Send the protocol header and read connection.start (checked to be 0-9 with PLAIN and
 * AMQPLAIN offered). 0 or a negative raw_read_frame() code. */
int raw_start(int fd);

/* Send connection.start-ok. With auth_failure_close the client properties announce the
 * authentication_failure_close capability (as rabbitmq-c and pika do). */
int raw_send_start_ok(int fd, const char *mechanism, const void *response, size_t response_len,
                      bool auth_failure_close);

/* Read connection.tune into *ret. 0 or -EPROTO if something else came. */
int raw_read_tune(int fd, raw_tune_t *ret, int timeout_ms);

int raw_send_tune_ok(int fd, uint16_t channel_max, uint32_t frame_max, uint16_t heartbeat);

/* Send connection.open for vhost and read open-ok. 0 or -EPROTO. */
int raw_open_vhost(int fd, const char *vhost);

/* The whole handshake as guest/guest with PLAIN; answers tune with (channel_max 0 -> server's,
 * frame_max, heartbeat). Fails the test on any error. Returns the server's tune in *ret_tune
 * (may be NULL). */
void raw_handshake(int fd, uint32_t frame_max, uint16_t heartbeat, raw_tune_t *ret_tune);

/* Send channel.open on ch and read open-ok; fails the test on error. */
void raw_channel_open(int fd, uint16_t ch);

/* Read until a connection.close (or channel.close when want_channel) arrives. 0 when it did;
 * -EPIPE when the peer closed the socket first; -ETIMEDOUT. Other frames are skipped. */
int raw_expect_close(int fd, bool want_channel, raw_close_t *ret, int timeout_ms);

/* After a connection.close from the server: send close-ok and expect the socket to close. */
void raw_finish_close(int fd);

/* ---- queue, consumer and connection-exception helpers (issue 3 tests) --------------------- */

/* r must be the connection.close the server sent with exactly this code, text and class/method
 * ids; answers it with close-ok and destroys conn. */
void harness_expect_connection_close(amqp_connection_state_t conn, amqp_rpc_reply_t r,
                                     uint16_t code, const char *text, uint16_t class_id,
                                     uint16_t method_id);

/* harness_connect() that also announces the client capabilities named in caps (a NULL-ended
 * list, e.g. {"consumer_cancel_notify", NULL}) as true; rabbitmq-c 0.11 announces only
 * authentication_failure_close and exchange_exchange_bindings by itself. */
amqp_connection_state_t harness_connect_caps(const harness_broker_t *b, const char *const *caps);

/* Passive queue.declare of queue on ch. Returns the reply (a 404 leaves ch closing: answer it
 * with harness_expect_channel_close()); the counts are set when it is normal (may be NULL). */
amqp_rpc_reply_t harness_queue_peek(amqp_connection_state_t conn, amqp_channel_t ch,
                                    const char *queue, uint32_t *ret_messages,
                                    uint32_t *ret_consumers);

/* Passive-declare queue until its message_count is want, for at most timeout_ms (brokers count
 * asynchronously published or requeued messages a moment later). Returns the last count seen;
 * the caller asserts it. */
uint32_t harness_wait_message_count(amqp_connection_state_t conn, amqp_channel_t ch,
                                    const char *queue, uint32_t want, int timeout_ms);

/* Passive-declare queue until the broker answers 404 "NOT_FOUND - no queue 'Q' in vhost '/'"
 * (queue deletion can lag the event that causes it), for at most timeout_ms. True when it did:
 * then ch has been closed (close-ok sent) and must be opened again before use. False when the
 * queue still existed at the deadline (ch still open). */
bool harness_wait_queue_gone(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                             int timeout_ms);

/* Wait up to timeout_ms for the next frame from the broker (frames rabbitmq-c queued while
 * waiting for an RPC reply come first). 0, or the negative AMQP_STATUS_* (AMQP_STATUS_TIMEOUT). */
int harness_next_frame(amqp_connection_state_t conn, amqp_frame_t *ret, int timeout_ms);

/* Fail the test if any frame (a delivery, a basic.ack, ...) arrives within ms; what says what
 * was being waited for, for the failure message. */
void harness_expect_quiet(amqp_connection_state_t conn, int ms, const char *what);

/* ---- exchange-test helpers (issue 3) -------------------------------------------------------- */

/* A round trip on ch that must succeed (exchange.declare passive of amq.direct). Everything the
 * server sent on ch before (basic.return, say) has then been read and queued by rabbitmq-c:
 * amqp_frames_enqueued() tells whether anything came. */
void harness_sync(amqp_connection_state_t conn, amqp_channel_t ch);

/* basic.get (no-ack) on queue until get-empty. The bodies, in order, are written to out joined
 * by single spaces (truncated to cap-1, NUL-terminated): "m1 m3". Returns how many came. */
int harness_drain(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue, char *out,
                  size_t cap);

/* harness_drain() queue; the bodies must be exactly want ("m1 m3"; "" for an empty queue), else
 * the test fails with "<what>: queue Q held \"...\", want \"...\"". */
void harness_expect_drain(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                          const char *want, const char *what);

/* One basic.get (no-ack) on queue must give a message with this body whose get-ok names
 * exchange and routing_key; the test fails when the queue is empty or anything differs. */
void harness_expect_get(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                        const char *body, const char *exchange, const char *routing_key);

/* ---- restarts and crashes (issue 4 durability tests) --------------------------------------- */

/* Exit 77 (skip) when b is an external broker: these tests stop and start warrend themselves. */
void harness_require_own_broker(const harness_broker_t *b);

/* SIGTERM our warrend and wait (<= 10 s) until it exits; the test fails unless it exited
 * cleanly (status 0 or our SIGTERM). The data dir is kept for harness_broker_respawn(); until
 * then b->pid is 0. */
void harness_broker_shutdown(harness_broker_t *b);

/* SIGKILL our warrend and reap it; the data dir is kept. */
void harness_broker_kill9(harness_broker_t *b);

/* Start $WARREND again on b->data_dir and b->port (any extra arguments after --log-level, a
 * NULL-ended list, may be NULL) and wait (<= 10 s) until it listens. When the port cannot be had
 * again (another process took it while warrend was down) a new free port is used and logged;
 * b->port says which. Fails the test when warrend does not come up. Call it from the main thread
 * (warrend gets PR_SET_PDEATHSIG, which follows the forking thread). */
void harness_broker_respawn(harness_broker_t *b, const char *const *extra_args);

/* harness_broker_shutdown() then harness_broker_respawn(b, NULL). */
void harness_broker_restart(harness_broker_t *b);

/* harness_broker_kill9() then harness_broker_respawn(b, NULL). */
void harness_broker_crash_restart(harness_broker_t *b);

/* Run $WARREND once, on data_dir and port with --log-level warn, for a start that is expected to
 * fail. Its stderr goes to err (NUL-terminated, truncated to cap-1) and is echoed to ours.
 * Returns its wait status when it exited within timeout_ms; -1 when it was still running then (it
 * is killed); *ret_listened (may be NULL) says whether it ever accepted a TCP connection. */
int harness_warrend_run(const char *data_dir, int port, int timeout_ms, char *err, size_t cap,
                        bool *ret_listened);
/* harness_warrend_run() with exactly these arguments after the program name (a NULL-ended
 * list: no --port, --bind or --data-dir of the harness's own); port is where it must not
 * listen. */
int harness_warrend_run_args(const char *const *args, int port, int timeout_ms, char *err,
                             size_t cap, bool *ret_listened);

/* fork + exec $WARREND with exactly args after the program name (NULL-ended); its stderr goes
 * to err_fd when >= 0; the child dies with the test. Returns its pid. */
pid_t harness_warrend_spawn(const char *const *args, int err_fd);

/* ---- queue arguments, typed tables and basic.get (issue 5 tests: TTL, DLX, limits) ---------- */

/* Queue (or consume) arguments built in place; keys and string values are borrowed. */
typedef struct harness_args {
    amqp_table_entry_t e[16];
    int n;
} harness_args_t;

/* Add an integer argument sent with field type kind ('b', 's', 'I', 'l', 'B', 'u', 'i', 'L'). */
void harness_arg_int(harness_args_t *a, const char *key, char kind, int64_t v);
/* Add a longstr ('S') argument. */
void harness_arg_str(harness_args_t *a, const char *key, const char *s);
/* The table to pass to amqp_queue_declare() (borrows a's entries). */
amqp_table_t harness_args_table(harness_args_t *a);

/* Render t in wire order with each value's field type octet, for exact comparisons:
 * {count:l1,reason:S"rejected",time:T*,routing-keys:A[S"q"],nested:F{a:I1}}. Strings are quoted
 * with \" \\ and \xNN escapes; timestamps print as T* when mask_time (their value is checked by
 * harness_table_times_near()). Truncated to cap-1; returns buf. */
const char *harness_table_fmt(const amqp_table_t *t, bool mask_time, char *buf, size_t cap);

/* Every timestamp ('T') anywhere in t (nested tables and arrays) is within slack_s seconds of
 * the wall clock now. *ret_n (may be NULL) gets how many there were. */
bool harness_table_times_near(const amqp_table_t *t, int slack_s, int *ret_n);

/* One basic.get: what the get-ok said (copied) and the message. */
typedef struct harness_got {
    uint64_t delivery_tag;
    bool redelivered;
    uint32_t message_count;
    char exchange[256], routing_key[256];
    char body[1024];     /* NUL-terminated copy of the body (truncated) */
    amqp_message_t msg;  /* owned: properties and full body; harness_got_free() */
} harness_got_t;

/* basic.get on queue (no_ack as given). False on get-empty (*ret untouched); the test fails on
 * anything else. */
bool harness_get(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue, bool no_ack,
                 harness_got_t *ret);

/* basic.get until a message comes or timeout_ms passes (for messages a broker moves a moment
 * after the event, like dead letters). False when nothing came in time. */
bool harness_get_wait(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                      bool no_ack, int timeout_ms, harness_got_t *ret);

void harness_got_free(harness_got_t *g);

/* The message's headers rendered by harness_table_fmt(..., mask_time=true); "-" when the message
 * has no headers property. Stored in g-independent static storage (8 rotating buffers). */
const char *harness_got_headers(const harness_got_t *g);

/* harness_got_headers() without x-last-death-exchange, -queue and -reason. RabbitMQ 3.10.8 writes
 * none of them (3.13 added them); issue 5 asks for them. So they are allowed, but when present
 * all three must be longstr and equal x-death's first (most recent) entry's exchange, queue and
 * reason, else the test fails. Same storage rules as harness_got_headers(). */
const char *harness_got_death_headers(const harness_got_t *g);

/* ---- a broker with extra arguments (issue 5 consumer-timeout test) ------------------------ */

/* harness_broker_start() with extra warrend arguments after --log-level (a NULL-ended list, e.g.
 * {"--consumer-timeout", "1000", NULL}). Against an external broker (WARREN_TEST_HOST/PORT) the
 * arguments cannot be applied: it uses that broker as harness_broker_start() does, and the
 * caller decides whether to skip. */
void harness_broker_start_args(harness_broker_t *b, const char *const *extra_args);

/* ---- entity wrappers: one AMQP method each, which must succeed ----------------------------- */

enum harness_queue_flags {
    HARNESS_QUEUE_DURABLE = 1 << 0,
    HARNESS_QUEUE_EXCLUSIVE = 1 << 1,
    HARNESS_QUEUE_AUTO_DELETE = 1 << 2,
};

/* queue.declare (not passive) of queue on ch with flags (enum harness_queue_flags, 0: a plain
 * queue) and args (amqp_empty_table: none). */
void harness_queue_declare(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                           unsigned flags, amqp_table_t args);

/* queue.delete of queue on ch, unconditionally (if-unused and if-empty off). */
void harness_queue_delete(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue);

enum harness_exchange_flags {
    HARNESS_EXCHANGE_DURABLE = 1 << 0,
    HARNESS_EXCHANGE_AUTO_DELETE = 1 << 1,
    HARNESS_EXCHANGE_INTERNAL = 1 << 2,
};

/* exchange.declare (not passive) of exchange of type on ch with flags (enum
 * harness_exchange_flags, 0: a plain exchange) and args (amqp_empty_table: none). */
void harness_exchange_declare(amqp_connection_state_t conn, amqp_channel_t ch,
                              const char *exchange, const char *type, unsigned flags,
                              amqp_table_t args);

/* exchange.delete of exchange on ch (if-unused off). */
void harness_exchange_delete(amqp_connection_state_t conn, amqp_channel_t ch,
                             const char *exchange);

/* queue.bind of queue to exchange with key and args (amqp_empty_table: none). */
void harness_queue_bind(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                        const char *exchange, const char *key, amqp_table_t args);

/* exchange.bind: messages reaching source with a matching key are routed on to destination
 * (the argument order is the method's: destination first). No arguments. */
void harness_exchange_bind(amqp_connection_state_t conn, amqp_channel_t ch,
                           const char *destination, const char *source, const char *key);

/* The message_count of a passive queue.declare of queue, which must succeed. */
uint32_t harness_queue_count(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue);

/* queue holds (or comes to hold within 5 s: harness_wait_message_count()) exactly want
 * messages, else the test fails with "<what>: queue Q holds N messages, want W". */
void harness_expect_count(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                          uint32_t want, const char *what);

/* Publisher-confirm bookkeeping for one channel in confirm mode; zero it after each
 * confirm.select. The caller counts each publish in published (at most 255 between resets). */
typedef struct {
    uint64_t published; /* publish sequence numbers so far */
    uint64_t confirmed; /* how many of acked are set */
    bool acked[256];    /* by publish sequence number */
} harness_confirms_t;

/* Read basic.ack frames from conn (each within 10 s) until every publish counted in c is
 * confirmed; any other frame, or an ack for a sequence number not yet published, fails the
 * test. */
void harness_wait_confirms(amqp_connection_state_t conn, harness_confirms_t *c);

/* dlq (on ch) holds (or comes to hold, <= 5 s) exactly the dead letters named by bodies
 * (space-separated, in order), each a first death from q through the default exchange with
 * reason (headers as harness_got_death_headers() renders them). Takes them (no-ack). */
void harness_expect_first_deaths(amqp_connection_state_t conn, amqp_channel_t ch,
                                 const char *dlq, const char *q, const char *reason,
                                 const char *bodies);

/* harness_expect_first_deaths() with reason maxlen. */
void harness_expect_maxlen_dead(amqp_connection_state_t conn, amqp_channel_t ch, const char *dlq,
                                const char *q, const char *bodies);

/* The next delivery on conn (within 5 s) must be the message whose body is the decimal body,
 * for consumer tag, with redelivered flag redel; returns its delivery tag. */
uint64_t harness_expect_delivery(amqp_connection_state_t conn, const char *tag, int body,
                                 bool redel);

/* g's headers as harness_got_death_headers() renders them must be want, else the test fails
 * with "<what>: headers" and both renderings. */
void harness_expect_death_headers(const harness_got_t *g, const char *want, const char *what);

/* basic.qos on ch: prefetch-count prefetch (0: no limit), for the channel when global. */
void harness_qos(amqp_connection_state_t conn, amqp_channel_t ch, uint16_t prefetch, bool global);

/* Publish the messages "first" .. "last" (decimal bodies, no properties) to q through the
 * default exchange on channel 1. */
void harness_publish_range(amqp_connection_state_t conn, const char *q, int first, int last);


/* ---- shared building blocks: connect, publish, consume, compare (issue 9) ------------------ */

/* harness_connect(b, 0, AMQP_DEFAULT_FRAME_SIZE, 0) with channel 1 open: the connection most
 * tests start with. Fails the test like harness_connect(). */
amqp_connection_state_t harness_open(const harness_broker_t *b);

/* The start of a test's main: harness_watchdog(watchdog_s), harness_broker_start(b),
 * harness_name_init(tag) unless tag is NULL, then harness_open(b), which is returned (channel 1
 * open). Fails or skips the test as those do. */
amqp_connection_state_t harness_begin(harness_broker_t *b, unsigned watchdog_s, const char *tag);

/* The end of a test's main: the broker must still serve a new connection (harness_check_alive())
 * and then stop cleanly (harness_broker_stop() == 0), else the test fails; logs PASS. Returns 0,
 * main's exit status. */
int harness_finish(harness_broker_t *b);

/* Restart our warrend on its data dir (SIGTERM, or SIGKILL when crash: harness_broker_restart()
 * / harness_broker_crash_restart()), destroy conn (the broker closed it on its way down; may be
 * NULL) and return harness_open() of the new one. Fails the test like those do. */
amqp_connection_state_t harness_reopen(harness_broker_t *b, amqp_connection_state_t conn,
                                       bool crash);

/* queue.declare on ch of a server-named exclusive auto-delete queue, which must succeed. Returns
 * its name (amqp_bytes_free() it). */
amqp_bytes_t harness_queue_declare_anon(amqp_connection_state_t conn, amqp_channel_t ch);

/* Publish body to queue through the default exchange on ch and take it back with one basic.get
 * (no-ack): get-ok must come with exactly these octets, else the test fails. */
void harness_publish_get(amqp_connection_state_t conn, amqp_channel_t ch, amqp_bytes_t queue,
                         amqp_bytes_t body);

/* Does queue exist? Asked with a queue.bind of it to amq.direct (key "probe") on ch, which,
 * unlike a passive declare, does not count as using the queue (x-expires). True when bound;
 * false on 404 "NOT_FOUND - no queue 'Q' in vhost '/'", after which ch is open again. Anything
 * else fails the test. */
bool harness_queue_exists(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue);

/* Make queue (a plain queue, declared on channel 1) hold exactly the messages "first" ..
 * "last": purge it, harness_publish_range() them and wait (<= 5 s) until it counts them all; the
 * test fails otherwise. */
void harness_fill(amqp_connection_state_t conn, const char *queue, int first, int last);

/* harness_publish() of each space-separated word of words, in order ("-" publishes an empty
 * body). */
void harness_publish_words(amqp_connection_state_t conn, amqp_channel_t ch, const char *exchange,
                           const char *key, const char *words);

/* basic.publish of body (a C string) to exchange with routing key key on ch: no properties, not
 * mandatory. Fails the test when rabbitmq-c cannot send it. */
void harness_publish(amqp_connection_state_t conn, amqp_channel_t ch, const char *exchange,
                     const char *key, const char *body);

/* harness_publish() with the mandatory flag and properties (NULL: none). */
void harness_publish_props(amqp_connection_state_t conn, amqp_channel_t ch, const char *exchange,
                           const char *key, bool mandatory, const amqp_basic_properties_t *props,
                           const char *body);

/* harness_publish() with a headers property holding headers (NULL: no properties at all). */
void harness_publish_headers(amqp_connection_state_t conn, amqp_channel_t ch,
                             const char *exchange, const char *key, const amqp_table_t *headers,
                             const char *body);

/* A synchronous round trip on ch (a passive exchange.declare of amq.direct), its reply returned
 * unchecked: normal, or the channel.close that an earlier asynchronous method on ch (a publish,
 * an ack) caused. harness_sync() is the same round trip when it must succeed. */
amqp_rpc_reply_t harness_round_trip(amqp_connection_state_t conn, amqp_channel_t ch);

/* confirm.select on ch, which must be answered with select-ok. */
void harness_confirm_select(amqp_connection_state_t conn, amqp_channel_t ch);

/* tx.select (what 's'), tx.commit ('c') or tx.rollback ('r') on ch, which must succeed. */
void harness_tx(amqp_connection_state_t conn, amqp_channel_t ch, char what);

/* queue.purge of queue on ch, which must succeed. Returns purge-ok's message_count. */
uint32_t harness_queue_purge(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue);

/* queue.unbind of queue from exchange with key and args (amqp_empty_table: none); must succeed. */
void harness_queue_unbind(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                          const char *exchange, const char *key, amqp_table_t args);

/* exchange.unbind of destination from source with key, no arguments (the method's argument
 * order, like harness_exchange_bind()); must succeed. */
void harness_exchange_unbind(amqp_connection_state_t conn, amqp_channel_t ch,
                             const char *destination, const char *source, const char *key);

enum harness_consume_flags {
    HARNESS_CONSUME_NO_ACK = 1 << 0,
    HARNESS_CONSUME_EXCLUSIVE = 1 << 1,
};

/* basic.consume of queue on ch with consumer tag tag (NULL: the server picks one), flags (enum
 * harness_consume_flags, 0: manual ack, not exclusive) and args (amqp_empty_table: none); it
 * must be answered with consume-ok, else the test fails. */
void harness_consume(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                     const char *tag, unsigned flags, amqp_table_t args);

/* basic.cancel of consumer tag on ch, which must be answered with cancel-ok. */
void harness_cancel(amqp_connection_state_t conn, amqp_channel_t ch, const char *tag);

/* The next delivery, if one comes within timeout_ms, into *ret (amqp_destroy_envelope() it):
 * true; false when none came in time. Any other frame (a channel.close, a basic.return ...) or a
 * lost connection fails the test, naming what came. */
bool harness_next_delivery(amqp_connection_state_t conn, int timeout_ms, amqp_envelope_t *ret);

/* The next delivery (within 5 s) must be on channel ch (0: any), for consumer tag (NULL: any),
 * with body and the redelivered flag redel, else the test fails saying what came instead.
 * Returns its delivery tag. */
uint64_t harness_expect_message(amqp_connection_state_t conn, amqp_channel_t ch, const char *tag,
                                const char *body, bool redel);

/* The body read as a decimal number (atoi() of its first 31 octets). */
int harness_body_int(amqp_bytes_t body);

/* harness_drain() that appends "r" to the bodies of redelivered messages: "3r 7r 8". Returns how
 * many came. */
int harness_drain_marked(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                         char *out, size_t cap);

/* The next frame (one rabbitmq-c has queued, or one arriving within 5 s) must be a basic.return
 * 312 NO_ROUTE on ch naming exchange and routing key key, else the test fails; *ret_msg gets the
 * returned message (amqp_destroy_message() it). To require that it came before the reply to a
 * later method, check amqp_frames_enqueued() after that reply first. */
void harness_read_return(amqp_connection_state_t conn, amqp_channel_t ch, const char *exchange,
                         const char *key, amqp_message_t *ret_msg);

/* harness_read_return() of a message whose body must be body (the test fails otherwise). */
void harness_expect_return(amqp_connection_state_t conn, amqp_channel_t ch, const char *exchange,
                           const char *key, const char *body);

/* After a round trip on ch (harness_sync()), nothing may be queued: no basic.return, no
 * delivery. Otherwise the test fails with "<what>: unexpected <method> on channel N". */
void harness_expect_no_return(amqp_connection_state_t conn, amqp_channel_t ch, const char *what);

/* A quiet period for a queue: passive-declare queue every 10 ms for ms; it must exist each time
 * and, when want >= 0, hold exactly want messages (nothing may delete, fill or empty it
 * meanwhile). The test fails at the first poll that differs, with "<what>: ...". */
void harness_expect_steady(amqp_connection_state_t conn, amqp_channel_t ch, const char *queue,
                           int64_t want, int ms, const char *what);

/* a and b hold the same keys with the same field types and values, nested tables and arrays
 * alike (floats compared bit for bit): in the same order, or with any_order each of a's keys is
 * looked up in b (nested tables too). True when they do; false with where (may be NULL) set to
 * the path of the first difference ("deeper.level: value differs (type 's')"). */
bool harness_table_eq(const amqp_table_t *a, const amqp_table_t *b, bool any_order, char *where,
                      size_t cap);

/* The first basic property in which got differs from want, described in buf ("priority 3, want
 * 7", "headers.seq: value differs (type 'I')"); NULL when none does. The flags must be equal;
 * then each property they name is compared, the headers with harness_table_eq(any_order). */
const char *harness_props_diff(const amqp_basic_properties_t *want,
                               const amqp_basic_properties_t *got, bool any_order, char *buf,
                               size_t cap);

/* The arguments of a dead-lettering queue, written to a (emptied first): x-message-ttl ttl and
 * x-max-length maxlen as signedint (each left out when < 0), x-dead-letter-exchange dlx and
 * x-dead-letter-routing-key dlrk as longstr (each left out when NULL). Returns
 * harness_args_table(a). */
amqp_table_t harness_dl_args(harness_args_t *a, long ttl, long maxlen, const char *dlx,
                             const char *dlrk);

/* Declares q afresh on channel 1 (deleting an old one first) with x-message-ttl ttl (< 0: none)
 * and, when dlq is not NULL, dead-lettering to dlq through the default exchange. */
void harness_ttl_queue(amqp_connection_state_t conn, const char *q, long ttl, const char *dlq);

/* The arguments of a length-limited queue, written to a (emptied first): x-max-length maxlen as
 * signedint and x-max-length-bytes maxbytes with field type bytes_kind (each left out when < 0),
 * x-overflow overflow (NULL: none) and, when dlq is not NULL, dead-lettering to dlq through the
 * default exchange. Returns harness_args_table(a). */
amqp_table_t harness_length_args(harness_args_t *a, long maxlen, long maxbytes, char bytes_kind,
                                 const char *overflow, const char *dlq);

/* harness_open() with channel 1 in confirm mode (confirm.select) and *c zeroed for it. */
amqp_connection_state_t harness_open_confirms(const harness_broker_t *b, harness_confirms_t *c);

/* ---- raw frames used by several tests (issue 9) -------------------------------------------- */

/* basic.publish to exchange with routing_key on channel (mandatory and immediate off): the
 * method frame alone. */
void wb_publish_method(wbuf_t *w, uint16_t channel, const char *exchange,
                       const char *routing_key);

/* A content header frame of class basic announcing body_size octets, with no properties. */
void wb_content_header(wbuf_t *w, uint16_t channel, uint64_t body_size);

/* One content body frame holding the n octets at p. */
void wb_content_body(wbuf_t *w, uint16_t channel, const void *p, size_t n);

/* A whole publish of body (a C string): wb_publish_method(), wb_content_header() and one body
 * frame (none for an empty body). */
void wb_publish(wbuf_t *w, uint16_t channel, const char *exchange, const char *routing_key,
                const char *body);

/* channel.open on channel. */
void wb_channel_open(wbuf_t *w, uint16_t channel);

/* queue.declare of name on channel with the flag octet bits (1 passive, 2 durable, 4 exclusive,
 * 8 auto-delete, 16 no-wait) and no arguments. */
void wb_queue_declare(wbuf_t *w, uint16_t channel, const char *name, uint8_t bits);

/* connection.close with reply code and text, class and method 0. */
void wb_connection_close(wbuf_t *w, uint16_t code, const char *text);

/* Send all of w and free it; the test fails when the send fails. */
void raw_send_wbuf(int fd, wbuf_t *w);

/* The handshake up to the client's tune-ok: protocol header, connection.start, start-ok (PLAIN
 * guest/guest, announcing authentication_failure_close) and connection.tune, which goes to
 * *ret_tune (may be NULL). Fails the test on any error. */
void raw_login(int fd, raw_tune_t *ret_tune);

/* The next frame must be connection.close-ok (channel 0, a 4-octet payload); fails the test
 * otherwise. */
void raw_expect_close_ok(int fd);

#endif
