/* password.h — RabbitMQ's password hashes (rabbit_password_hashing_sha256, _sha512, _md5): the
 * stored value is base64(salt || H(salt || password)) with a 4-byte random salt. Owns no state
 * and allocates nothing itself (OpenSSL's digest context is its own). Does not own users nor
 * where hashes are kept (storage, definitions). Invariant: a stored hash is checked only against
 * the exact length its algorithm produces, and compared in constant time. */
#ifndef WARREN_PASSWORD_H
#define WARREN_PASSWORD_H
#include <errno.h>
#include <stddef.h>

enum password_algo {
    PASSWORD_SHA256, /* rabbit_password_hashing_sha256, RabbitMQ's default since 3.6 */
    PASSWORD_SHA512, /* rabbit_password_hashing_sha512 */
    PASSWORD_MD5,    /* rabbit_password_hashing_md5, users from before 3.6 */
    PASSWORD_ALGO_MAX,
    PASSWORD_ALGO_INVALID = -EINVAL,
};

/* Bytes of salt in every stored hash. */
#define PASSWORD_SALT_LEN 4
/* Room for the longest stored hash (SHA-512: base64 of 4 + 64 bytes is 92 chars) plus its NUL. */
#define PASSWORD_HASH_MAX 93

/* RabbitMQ's module name ("rabbit_password_hashing_sha256", "..._sha512", "..._md5") to an
 * algorithm. NULL or "" (the field absent) gives PASSWORD_SHA256, RabbitMQ's default
 * password_hashing_module. Caveat for imports: RabbitMQ reads an absent hashing_algorithm as MD5
 * when the definitions' rabbit_version is older than 3.6.0; the caller decides that, not us.
 * Returns the algorithm, or PASSWORD_ALGO_INVALID for any other name. */
int password_algo_parse(const char *name);

/* The RabbitMQ module name of algo (a static string), or NULL when algo is out of range. */
const char *password_algo_name(enum password_algo algo);

/* Hashes password[0..len) (UTF-8 bytes, not NUL-terminated necessarily) under a fresh random
 * salt from RAND_bytes and writes the base64 stored form, NUL-terminated, to out.
 * Returns the length written (without the NUL), or -EINVAL (bad algo or NULL password with
 * len > 0), -ENOSPC (out_size too small; PASSWORD_HASH_MAX always fits), -EIO (RAND_bytes or
 * the digest failed, e.g. MD5 refused under FIPS). out is untouched on failure. */
int password_hash(enum password_algo algo, const char *password, size_t len, char *out,
                  size_t out_size);

/* Checks password[0..len) against stored_b64, a NUL-terminated stored hash of algo.
 * Returns 1 on a match, 0 on no match, and 0 for an empty (or NULL) stored hash: such a user
 * cannot log in with a password. Returns -EINVAL when algo is out of range or stored_b64 is
 * malformed (not strict base64, or not exactly the salt plus algo's digest), -EIO when the
 * digest failed. The digest is compared with CRYPTO_memcmp. */
int password_check(const char *stored_b64, enum password_algo algo, const char *password,
                   size_t len);

#endif
