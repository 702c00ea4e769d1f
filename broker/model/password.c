/* password.c — owns RabbitMQ's stored-password format: base64(salt || H(salt || password)),
 * salt 4 random bytes, H one of SHA-256 / SHA-512 / MD5. Does not own users or where hashes
 * live. Invariant: nothing is decoded before the stored text passes a strict base64 check and a
 * length bound, so decoding only ever writes into a fixed stack buffer; secrets on the stack are
 * cleansed before return. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "broker/model/password.h"

static const char *const algo_names[PASSWORD_ALGO_MAX] = {
    [PASSWORD_SHA256] = "rabbit_password_hashing_sha256",
    [PASSWORD_SHA512] = "rabbit_password_hashing_sha512",
    [PASSWORD_MD5] = "rabbit_password_hashing_md5",
};

/* Raw bytes of the longest stored hash: salt plus a SHA-512 digest. */
#define RAW_MAX (PASSWORD_SALT_LEN + EVP_MAX_MD_SIZE)

static const EVP_MD *algo_md(enum password_algo algo)
{
    switch (algo) {
    case PASSWORD_SHA256:
        return EVP_sha256();
    case PASSWORD_SHA512:
        return EVP_sha512();
    case PASSWORD_MD5:
        return EVP_md5();
    default:
        return NULL;
    }
}

int password_algo_parse(const char *name)
{
    if (!name || !*name)
        return PASSWORD_SHA256;
    for (int i = 0; i < PASSWORD_ALGO_MAX; i++)
        if (strcmp(name, algo_names[i]) == 0)
            return i;
    return PASSWORD_ALGO_INVALID;
}

const char *password_algo_name(enum password_algo algo)
{
    if ((int)algo < 0 || algo >= PASSWORD_ALGO_MAX)
        return NULL;
    return algo_names[algo];
}

/* ret_digest = H(salt || password); 0, or -EIO when OpenSSL fails (e.g. MD5 under FIPS). */
static int salted_digest(const EVP_MD *md, const uint8_t salt[PASSWORD_SALT_LEN],
                         const char *password, size_t len, uint8_t *ret_digest)
{
    int rc = -EIO;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -EIO;
    if (EVP_DigestInit_ex(ctx, md, NULL) != 1)
        goto fail;
    if (EVP_DigestUpdate(ctx, salt, PASSWORD_SALT_LEN) != 1)
        goto fail;
    if (len && EVP_DigestUpdate(ctx, password, len) != 1)
        goto fail;
    if (EVP_DigestFinal_ex(ctx, ret_digest, NULL) != 1)
        goto fail;
    rc = 0;
fail:
    EVP_MD_CTX_free(ctx);
    return rc;
}

int password_hash(enum password_algo algo, const char *password, size_t len, char *out,
                  size_t out_size)
{
    const EVP_MD *md = algo_md(algo);
    if (!md || (!password && len) || !out)
        return -EINVAL;
    size_t raw_len = PASSWORD_SALT_LEN + (size_t)EVP_MD_get_size(md);
    size_t b64_len = 4 * ((raw_len + 2) / 3);
    if (out_size < b64_len + 1)
        return -ENOSPC;

    uint8_t raw[RAW_MAX];
    int rc = -EIO;
    if (RAND_bytes(raw, PASSWORD_SALT_LEN) != 1)
        goto out;
    rc = salted_digest(md, raw, password, len, raw + PASSWORD_SALT_LEN);
    if (rc < 0)
        goto out;
    /* EVP_EncodeBlock writes the NUL itself and returns the length without it. */
    rc = EVP_EncodeBlock((unsigned char *)out, raw, (int)raw_len);
out:
    OPENSSL_cleanse(raw, sizeof raw);
    return rc;
}

static bool b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

/* Strict standard base64 (no whitespace, padded to a multiple of 4, '=' only as the last one or
 * two characters) of at most max_b64 characters. Returns the decoded length, or -EINVAL. */
static int b64_decode_strict(const char *s, size_t max_b64, uint8_t *ret_raw)
{
    size_t n = strnlen(s, max_b64 + 1);
    if (n == 0 || n > max_b64 || n % 4 != 0)
        return -EINVAL;
    size_t pad = 0;
    if (s[n - 1] == '=')
        pad = s[n - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < n - pad; i++)
        if (!b64_char(s[i]))
            return -EINVAL;
    /* EVP_DecodeBlock counts each '=' as a decoded zero byte: the true length is 3n/4 - pad. */
    if (EVP_DecodeBlock(ret_raw, (const unsigned char *)s, (int)n) != (int)(n / 4 * 3))
        return -EINVAL;
    return (int)(n / 4 * 3 - pad);
}

int password_check(const char *stored_b64, enum password_algo algo, const char *password,
                   size_t len)
{
    const EVP_MD *md = algo_md(algo);
    if (!md || (!password && len))
        return -EINVAL;
    if (!stored_b64 || !*stored_b64)
        return 0; /* no password hash: password logins are refused */

    size_t digest_len = (size_t)EVP_MD_get_size(md);
    size_t raw_len = PASSWORD_SALT_LEN + digest_len;
    /* RAW_MAX + 2 bytes: DecodeBlock writes the pad positions as zeros too. */
    uint8_t raw[RAW_MAX + 2], want[EVP_MAX_MD_SIZE];
    int rc = b64_decode_strict(stored_b64, 4 * ((raw_len + 2) / 3), raw);
    if (rc < 0)
        goto out;
    if ((size_t)rc != raw_len) {
        rc = -EINVAL;
        goto out;
    }
    rc = salted_digest(md, raw, password, len, want);
    if (rc < 0)
        goto out;
    rc = CRYPTO_memcmp(want, raw + PASSWORD_SALT_LEN, digest_len) == 0;
out:
    OPENSSL_cleanse(raw, sizeof raw);
    OPENSSL_cleanse(want, sizeof want);
    return rc;
}
