/* atrest.c — owns the broker's encryption-at-rest state (atrest.h): where the key comes from,
 * the start-up refusals' log lines, and the rotation driver (a key load on the threadpool, then
 * one storage_reencrypt_step per durable batch). Does not own the keys once loaded nor the stored
 * form (storage/crypt.c). Invariants: key bytes live only in buffers wiped right after storage
 * takes them; at most one rotation loads or runs; nothing here blocks the loop (the key command
 * runs on the threadpool, except at start-up, before the loop serves anyone). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <openssl/evp.h>
#include "broker/model/atrest.h"
#include "broker/model/broker.h"
#include "lib/log.h"
#include "storage/batch.h"
#include "storage/env.h"

extern char **environ;

#define KEY_TEXT_MAX 4096          /* a key file or command output larger than this is wrong */
#define COMMAND_TIMEOUT_MS 30000   /* a key command that takes longer is killed */
#define STEP_RECORDS 128           /* records examined per re-encryption step (one commit) */
#define PROGRESS_MS 10000          /* a progress line at most this often */

struct atrest {
    struct broker *b;       /* borrowed: owns us */
    char *key_file;         /* owned; NULL when the key comes from key_command */
    char *key_command;      /* owned; NULL when it comes from key_file */
    enum atrest_state state;
    uv_work_t work;         /* the key load of a rotation */
    struct durable_wait wait; /* the batch holding the last re-encryption step */
    uint8_t key[CRYPT_KEY_SIZE]; /* the key loaded (threadpool -> loop); wiped once used */
    int load_rc;
    int key_mode;           /* the key file's permission bits */
    char why[512];          /* why the load failed */
    char error[512];        /* the last rotation's failure, "" when none */
    uint64_t rotations, started_ms, finished_ms, logged_ms;
};

const char *atrest_state_name(enum atrest_state s)
{
    static const char *const names[ATREST_STATE_MAX] = {"idle", "loading_key", "rotating",
                                                        "failed"};
    return s < ATREST_STATE_MAX ? names[s] : "?";
}

bool atrest_config_error(int rc)
{
    return rc == -ENOKEY || rc == STORAGE_E_NOKEY || rc == STORAGE_E_WRONGKEY ||
           rc == STORAGE_E_ROTATING;
}

/* ---- reading a key (any thread: nothing here logs) -------------------------------------------- */

/* A key as given: exactly 32 bytes, or the base64 of 32 bytes (white space around it ignored). */
static int parse_key(const uint8_t *p, size_t n, uint8_t key[CRYPT_KEY_SIZE])
{
    if (n == CRYPT_KEY_SIZE) {
        memcpy(key, p, CRYPT_KEY_SIZE);
        return 0;
    }
    while (n && isspace(p[n - 1]))
        n--;
    while (n && isspace(*p)) {
        p++;
        n--;
    }
    if (n != 43 && n != 44) /* 44 with its one '=', or 43 without it */
        return -1;
    unsigned char text[45], out[36];
    memcpy(text, p, n);
    text[43] = '=';
    text[44] = 0;
    int rc = text[42] != '=' && EVP_DecodeBlock(out, text, 44) == 33 ? 0 : -1;
    if (rc == 0)
        memcpy(key, out, CRYPT_KEY_SIZE);
    OPENSSL_cleanse(text, sizeof text);
    OPENSSL_cleanse(out, sizeof out);
    return rc;
}

static int read_key_file(const char *path, uint8_t key[CRYPT_KEY_SIZE], int *ret_mode, char *why,
                         size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, cap, "cannot open encryption.key_file '%s': %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    *ret_mode = fstat(fd, &sb) == 0 ? (int)(sb.st_mode & 07777) : 0;
    uint8_t buf[KEY_TEXT_MAX + 1];
    size_t n = 0;
    ssize_t got = 0;
    while (n < sizeof buf && (got = read(fd, buf + n, sizeof buf - n)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            break;
        n += (size_t)got;
    }
    int err = got < 0 ? errno : 0;
    close(fd);
    int rc = err ? -1 : parse_key(buf, n, key);
    OPENSSL_cleanse(buf, sizeof buf);
    if (err)
        snprintf(why, cap, "cannot read encryption.key_file '%s': %s", path, strerror(err));
    else if (rc)
        snprintf(why, cap,
                 "encryption.key_file '%s' holds %s%zu bytes, neither 32 raw bytes nor the "
                 "base64 of 32 bytes",
                 path, n > KEY_TEXT_MAX ? "more than " : "", n > KEY_TEXT_MAX ? KEY_TEXT_MAX : n);
    return rc;
}

/* Runs cmd with /bin/sh (stdin /dev/null, stderr ours) and takes its output as the key. */
static int run_key_command(const char *cmd, uint8_t key[CRYPT_KEY_SIZE], char *why, size_t cap)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        snprintf(why, cap, "cannot run encryption.key_command: pipe: %s", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    /* As a shell would start it: no signal blocked (a threadpool thread blocks them all) and
     * SIGPIPE back to its default (warrend ignores it). */
    posix_spawnattr_t attr;
    sigset_t none, pipe;
    sigemptyset(&none);
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &pipe);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        snprintf(why, cap, "cannot run encryption.key_command '%s': %s", cmd, strerror(rc));
        return -1;
    }
    uint8_t buf[KEY_TEXT_MAX + 1];
    size_t n = 0;
    bool timed_out = false;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (spent >= COMMAND_TIMEOUT_MS) {
            timed_out = true;
            break;
        }
        struct pollfd pfd = {p[0], POLLIN, 0};
        int ready = poll(&pfd, 1, (int)(COMMAND_TIMEOUT_MS - spent));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            continue; /* the deadline is checked above */
        ssize_t got = read(p[0], buf + n, sizeof buf - n);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
        if (n == sizeof buf)
            break; /* too much: not a key */
    }
    close(p[0]);
    if (timed_out || n == sizeof buf)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    rc = -1;
    if (timed_out)
        snprintf(why, cap, "encryption.key_command '%s' did not finish within %d s", cmd,
                 COMMAND_TIMEOUT_MS / 1000);
    else if (n == sizeof buf)
        snprintf(why, cap, "encryption.key_command '%s' printed more than %d bytes", cmd,
                 KEY_TEXT_MAX);
    else if (WIFSIGNALED(status))
        snprintf(why, cap, "encryption.key_command '%s' was killed by signal %d", cmd,
                 WTERMSIG(status));
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        snprintf(why, cap, "encryption.key_command '%s' exited with status %d", cmd,
                 WEXITSTATUS(status));
    else if ((rc = parse_key(buf, n, key)) != 0)
        snprintf(why, cap,
                 "encryption.key_command '%s' printed %zu bytes, neither 32 raw bytes nor the "
                 "base64 of 32 bytes",
                 cmd, n);
    OPENSSL_cleanse(buf, sizeof buf);
    return rc;
}

static int load_key(const char *file, const char *cmd, uint8_t key[CRYPT_KEY_SIZE], int *ret_mode,
                    char *why, size_t cap)
{
    *ret_mode = 0;
    return file ? read_key_file(file, key, ret_mode, why, cap) : run_key_command(cmd, key, why, cap);
}

/* ---- start-up --------------------------------------------------------------------------------- */

static const char *source_name(const struct atrest *a)
{
    return a->key_file ? "encryption.key_file" : "encryption.key_command";
}

/* The one line a refused open gets. */
static void log_open_failure(const char *dir, const struct storage_opts *o, const char *source,
                             int rc)
{
    switch (rc) {
    case STORAGE_E_WRONGKEY:
        log_error("cannot open the data directory '%s': wrong encryption key: its %llu stored "
                  "messages are encrypted with key id %s, but the key from %s has id %s; "
                  "configure the key they were written with (to change keys, start with the old "
                  "one, replace it, then run warrenctl rotate_key); nothing was changed on disk",
                  dir, (unsigned long long)o->messages, o->stored_key_id, source, o->key_id);
        return;
    case STORAGE_E_NOKEY:
        log_error("cannot open the data directory '%s': its %llu stored messages are encrypted "
                  "(key id %s) but no encryption key is configured; set encryption.key_file or "
                  "encryption.key_command to that key; nothing was changed on disk",
                  dir, (unsigned long long)o->messages, o->stored_key_id);
        return;
    case STORAGE_E_ROTATING:
        log_error("cannot open the data directory '%s': an unfinished encryption key rotation "
                  "moved it from key id %s (the key from %s) to key id %s; configure the new key "
                  "and the rotation resumes by itself; nothing was changed on disk",
                  dir, o->rotating_from, source, o->stored_key_id);
        return;
    default: {
        const char *hint = rc == STORAGE_E_FORMAT
                               ? "start the Warren version that wrote it, or move it aside to "
                                 "start empty"
                           : rc == STORAGE_E_LOCKED
                               ? "stop the other warrend or give this one another --data-dir"
                           : rc == STORAGE_E_CORRUPT && o->rotating_from[0]
                               ? "the record of an unfinished key rotation does not open with "
                                 "the configured key: restore the data directory from a backup"
                               : "check that it exists or can be created, and is writable";
        log_error("cannot open the data directory '%s': %s (this build reads format %d); %s", dir,
                  storage_strerror(rc), STORAGE_FORMAT_VERSION, hint);
    }
    }
}

static void step(struct atrest *a);

int atrest_open(struct broker *b, const char *dir, bool sync, const char *key_file,
                const char *key_command)
{
    uint8_t key[CRYPT_KEY_SIZE];
    char why[512];
    int mode = 0;
    bool have = key_file || key_command;
    const char *source = key_file ? "encryption.key_file" : "encryption.key_command";
    if (key_file && key_command) {
        log_error("encryption.key_file and encryption.key_command are both set; keep the one "
                  "the key comes from");
        return -ENOKEY;
    }
    if (have && load_key(key_file, key_command, key, &mode, why, sizeof why) < 0) {
        log_error("cannot read the encryption key: %s; fix %s in the configuration file (the "
                  "data directory was not opened)",
                  why, source);
        return -ENOKEY;
    }
    struct atrest *a = have ? calloc(1, sizeof *a) : NULL;
    if (a && key_file)
        a->key_file = strdup(key_file);
    if (a && key_command)
        a->key_command = strdup(key_command);
    if (have && (!a || (key_file && !a->key_file) || (key_command && !a->key_command))) {
        OPENSSL_cleanse(key, sizeof key);
        atrest_free(a);
        log_error("cannot open the data directory '%s': out of memory", dir);
        return -ENOMEM;
    }
    struct storage_opts o = {.sync = sync, .key = have ? key : NULL, .nolock = b->store_shared};
    int rc = storage_open_opts(dir, &o, &b->store);
    OPENSSL_cleanse(key, sizeof key);
    if (rc < 0) {
        log_open_failure(dir, &o, source, rc);
        atrest_free(a);
        return rc;
    }
    if (!have) {
        if (o.stored_key_id[0])
            log_info("encryption at rest is off: the data directory's key record (key id %s) "
                     "was dropped, no stored message needed it",
                     o.stored_key_id);
        return 0;
    }
    a->b = b;
    b->atrest = a;
    log_info("encryption at rest: message bodies and headers are stored encrypted with key id "
             "%s (from %s)",
             o.key_id, source);
    if (key_file && (mode & 077))
        log_warn("encryption.key_file '%s' can be read by other users (mode %03o): chmod 600 it",
                 key_file, mode & 0777);
    if (o.stored_key_id[0] && strcmp(o.stored_key_id, o.key_id) && !o.rotating_from[0])
        log_info("no message was stored under the previous key id %s: key id %s replaces it",
                 o.stored_key_id, o.key_id);
    else if (!o.stored_key_id[0] && o.messages)
        log_info("the %llu messages stored before encryption was configured stay readable as "
                 "they are; warrenctl rotate_key encrypts them",
                 (unsigned long long)o.messages);
    struct storage_crypt_status cs;
    storage_crypt_status(b->store, &cs);
    if (cs.rotating) {
        log_info("resuming the encryption key rotation from key id %s to %s: re-encrypting up "
                 "to %llu stored messages in the background",
                 cs.old_key_id, cs.key_id, (unsigned long long)cs.total);
        a->state = ATREST_ROTATING;
        a->started_ms = a->logged_ms = uv_now(b->loop);
        step(a);
    }
    return 0;
}

void atrest_free(struct atrest *a)
{
    if (!a)
        return;
    OPENSSL_cleanse(a->key, sizeof a->key);
    free(a->key_file);
    free(a->key_command);
    free(a);
}

/* ---- rotation (loop thread) ------------------------------------------------------------------- */

static void on_step(struct durable_wait *w);

/* One re-encryption step into the open batch; on_step runs once it is durable. */
static void step(struct atrest *a)
{
    struct storage *st = a->b->store;
    if (storage_reencrypt_step(st, STEP_RECORDS) < 0)
        return; /* a lost write: storage failed, and the server stops */
    a->wait.done = on_step;
    broker_wait_durable(a->b, &a->wait, storage_batch_no(st));
}

static void on_step(struct durable_wait *w)
{
    struct atrest *a = (struct atrest *)((char *)w - offsetof(struct atrest, wait));
    struct broker *b = a->b;
    if (b->stopping)
        return; /* a new key's rotation resumes at the next start ("enc_old") */
    struct storage_crypt_status cs;
    storage_crypt_status(b->store, &cs);
    uint64_t now = uv_now(b->loop);
    if (storage_rotation_done(b->store)) {
        a->state = ATREST_IDLE;
        a->rotations++;
        a->finished_ms = now;
        log_info("encryption key rotation finished in %.1f s: %llu of %llu stored messages "
                 "re-encrypted, every one is now under key id %s%s",
                 (double)(now - a->started_ms) / 1000, (unsigned long long)cs.reencrypted,
                 (unsigned long long)cs.examined, cs.key_id,
                 cs.damaged ? " but those that fail authentication (damaged; see the count in "
                              "GET /api/warren/encryption)"
                            : "");
        if (cs.damaged)
            log_warn("encryption key rotation: %llu stored messages fail authentication and "
                     "were left as they were; they are dropped when read",
                     (unsigned long long)cs.damaged);
        return;
    }
    if (now - a->logged_ms >= PROGRESS_MS) {
        a->logged_ms = now;
        log_info("encryption key rotation: %llu of about %llu stored messages examined, %llu "
                 "re-encrypted",
                 (unsigned long long)cs.examined, (unsigned long long)cs.total,
                 (unsigned long long)cs.reencrypted);
    }
    step(a);
}

static void load_work(uv_work_t *w)
{
    struct atrest *a = w->data;
    a->load_rc = load_key(a->key_file, a->key_command, a->key, &a->key_mode, a->why,
                          sizeof a->why);
}

static void load_done(uv_work_t *w, int status)
{
    struct atrest *a = w->data;
    struct broker *b = a->b;
    int rc = status < 0 ? -ECANCELED : a->load_rc;
    if (rc == 0 && b->stopping)
        rc = -ECANCELED;
    if (rc) {
        OPENSSL_cleanse(a->key, sizeof a->key);
        a->state = ATREST_FAILED;
        snprintf(a->error, sizeof a->error, "%s",
                 rc == -ECANCELED ? "warrend is shutting down" : a->why);
        if (rc != -ECANCELED)
            log_error("encryption key rotation: %s; nothing changed, the key in use stays", a->why);
        return;
    }
    struct storage_crypt_status before;
    storage_crypt_status(b->store, &before);
    rc = storage_rotate_key(b->store, a->key);
    OPENSSL_cleanse(a->key, sizeof a->key);
    if (rc < 0) {
        a->state = ATREST_FAILED;
        snprintf(a->error, sizeof a->error, "%s",
                 rc == -ENOMEM ? "out of memory" : storage_strerror(rc));
        log_error("encryption key rotation: %s; nothing changed, the key in use stays",
                  a->error);
        return;
    }
    struct storage_crypt_status cs;
    storage_crypt_status(b->store, &cs);
    if (a->key_file && (a->key_mode & 077))
        log_warn("encryption.key_file '%s' can be read by other users (mode %03o): chmod 600 it",
                 a->key_file, a->key_mode & 0777);
    if (!strcmp(before.key_id, cs.key_id))
        log_info("encryption key rotation: %s still gives key id %s; re-encrypting the stored "
                 "messages not under it (those written before encryption was configured) in "
                 "the background",
                 source_name(a), cs.key_id);
    else
        log_info("encryption key rotation: key id %s (from %s) replaces %s for new messages; "
                 "re-encrypting up to %llu stored messages in the background",
                 cs.key_id, source_name(a), before.key_id, (unsigned long long)cs.total);
    a->state = ATREST_ROTATING;
    a->started_ms = a->logged_ms = uv_now(b->loop);
    a->finished_ms = 0;
    step(a);
}

int atrest_rotate(struct broker *b)
{
    struct atrest *a = b->atrest;
    if (!a)
        return -ENOTSUP;
    if (a->state == ATREST_LOADING || a->state == ATREST_ROTATING)
        return -EBUSY;
    a->work.data = a;
    int rc = uv_queue_work(b->loop, &a->work, load_work, load_done);
    if (rc < 0)
        return rc == UV_ENOMEM ? -ENOMEM : -EIO;
    a->state = ATREST_LOADING;
    a->error[0] = 0;
    return 0;
}

void atrest_status(struct broker *b, struct atrest_status *ret)
{
    struct atrest *a = b->atrest;
    memset(ret, 0, sizeof *ret);
    if (!a)
        return;
    ret->enabled = true;
    ret->source = source_name(a);
    ret->path = a->key_file ? a->key_file : a->key_command;
    ret->state = a->state;
    storage_crypt_status(b->store, &ret->store);
    ret->error = a->error[0] ? a->error : NULL;
    ret->rotations = a->rotations;
    ret->started_ms = a->started_ms;
    ret->finished_ms = a->finished_ms;
}
