/* users.h — the tenancy of a broker: users (password hash, hashing algorithm, tags), their
 * permissions per vhost (configure/write/read regular expressions, compiled once with PCRE2) and
 * their topic permissions per (vhost, exchange), and the vhosts' own records (description,
 * limits). Every change is written to storage in the current batch (unless the broker is
 * recovering) and bumps b->access_gen, which invalidates every cached access decision.
 * Owns users, permissions and topic permissions (in b->users); vhosts stay in b->vhosts
 * (broker.c), and the checks that use these rules are in access.c.
 * Invariant: a struct perm exists only for a vhost that exists; deleting a vhost or a user
 * deletes its permissions and topic permissions, in memory and in storage, in the same batch. */
#ifndef WARREN_USERS_H
#define WARREN_USERS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/hmap.h"
#include "broker/model/password.h"

struct broker;
struct vhost;
struct err;
struct st_user;
struct st_vhost;
struct st_permission;
struct st_topic_permission;

/* The tags RabbitMQ gives a meaning to; others are kept (and shown) but mean nothing. */
enum user_tag {
    USER_TAG_ADMINISTRATOR = 1 << 0,
    USER_TAG_MONITORING = 1 << 1,
    USER_TAG_POLICYMAKER = 1 << 2,
    USER_TAG_MANAGEMENT = 1 << 3,
    USER_TAG_IMPERSONATOR = 1 << 4,
};

/* The three permissions of RabbitMQ's access-control table, in the order its records keep
 * them. Topic permissions use only WRITE and READ. */
enum access_perm { ACCESS_CONFIGURE, ACCESS_WRITE, ACCESS_READ, ACCESS_PERM_MAX };

/* One compiled regular expression of a permission. '' grants nothing (kind NONE); a pattern
 * that matches every name (".*", "^.*", "^.*$", ".*$") is kind ALL and never runs PCRE2. */
struct perm_re {
    enum { PERM_RE_NONE, PERM_RE_ALL, PERM_RE_PCRE } kind;
    char *src;   /* owned: the pattern as given (topic patterns before {var} expansion) */
    void *code;  /* owned pcre2_code (JIT-compiled when PCRE2 can), PERM_RE_PCRE only */
};

struct topic_perm {
    char *exchange;    /* owned */
    struct perm_re re[ACCESS_PERM_MAX]; /* WRITE and READ; '' stands for "^$", as in RabbitMQ */
};

struct perm {
    struct user *user;                  /* borrowed: owns us */
    char *vhost;                        /* owned: the vhost's name */
    struct perm_re re[ACCESS_PERM_MAX]; /* configure, write, read */
    struct hmap topics;                 /* exchange name -> struct topic_perm (owned) */
};

struct user {
    char *name;                    /* owned */
    char hash[PASSWORD_HASH_MAX];  /* base64 salted hash; "" when the user has none */
    enum password_algo algo;
    char *tags;                    /* owned: comma-separated, as given ("" for none) */
    unsigned tag_bits;             /* enum user_tag */
    struct hmap perms;             /* vhost name -> struct perm (owned) */
};

/* The user called name[0..len), or NULL. */
struct user *users_find(struct broker *b, const char *name, size_t len);
/* Creates user name, or replaces its hash, algorithm and tags (its permissions stay). hash is
 * a stored hash of algo ("" or NULL: none, the user cannot log in with a password); tags are
 * comma-separated. 0, -EINVAL (a name of more than 255 bytes, a hash that does not decode as
 * algo's, with err's text saying which) or -ENOMEM. */
int users_put(struct broker *b, const char *name, const char *hash, enum password_algo algo,
              const char *tags, struct err *err);
/* users_put() with the hash of password under RabbitMQ's default algorithm (SHA-256). */
int users_put_password(struct broker *b, const char *name, const char *password,
                       const char *tags, struct err *err);
/* Deletes u with its permissions and topic permissions. */
void users_delete(struct broker *b, struct user *u);
/* The enum user_tag bits named in a comma-separated list (spaces around names ignored). */
unsigned users_tag_bits(const char *tags);

/* Grants u the three patterns in vhost (which must exist), replacing what it had there. 0,
 * -EINVAL (a pattern PCRE2 refuses; err says which and why) or -ENOMEM; nothing changes on
 * failure. */
int perm_set(struct broker *b, struct user *u, const char *vhost, const char *configure,
             const char *write, const char *read, struct err *err);
/* u's permissions in vhost, or NULL (no access). */
struct perm *perm_find(const struct user *u, const char *vhost, size_t len);
/* Removes u's permissions (and topic permissions) in vhost; nothing when there are none. */
void perm_clear(struct broker *b, struct user *u, const char *vhost);
/* Sets u's topic permission on exchange in vhost: write and read patterns on routing keys,
 * with {username} and {vhost} expanded before they are compiled. A topic permission needs no
 * permission in vhost: one is created with '' for all three when missing (RabbitMQ keeps the
 * two apart; so do we in storage). Same returns as perm_set(). */
int topic_perm_set(struct broker *b, struct user *u, const char *vhost, const char *exchange,
                   const char *write, const char *read, struct err *err);
void topic_perm_clear(struct broker *b, struct user *u, const char *vhost, const char *exchange);

/* Does PCRE2 accept src as a permission pattern? 0, or -EINVAL with err saying why ("what"
 * names it: "configure"). */
int perm_check_pattern(const char *src, const char *what, struct err *err);
/* Does pattern re allow name[0..len)? */
bool perm_re_match(struct broker *b, const struct perm_re *re, const char *name, size_t len);

/* Drops every user's permissions and topic permissions in vhost (deleted). */
void users_forget_vhost(struct broker *b, const char *vhost);
/* Writes vh's record (name, description, limits) to storage. */
void users_persist_vhost(struct broker *b, const struct vhost *vh);

/* Recovery (persist.c's storage_recover callbacks): rebuild the objects from their records
 * without writing them back. 0, -ENOMEM, or STORAGE_E_CORRUPT for a record that does not make
 * sense (a pattern that no longer compiles is logged and granted nothing). */
int users_recover_vhost(struct broker *b, const struct st_vhost *r);
int users_recover_user(struct broker *b, const struct st_user *r);
int users_recover_permission(struct broker *b, const struct st_permission *r);
int users_recover_topic_permission(struct broker *b, const struct st_topic_permission *r);

/* Frees every user (not the storage records): broker_free() calls it. */
void users_free_all(struct broker *b);

#endif
