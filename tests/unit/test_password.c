/* test_password.c — broker/model/password.h: RabbitMQ's stored hashes check against known vectors
 * (SHA-256 from RabbitMQ itself, SHA-512 and MD5 computed independently with the openssl CLI), a
 * fresh hash checks back and is salted at random, malformed stored values are refused without
 * reading or writing past any buffer (ASan build), and the algorithm names round-trip. */
#include "unit.h"

#include "broker/model/password.h"

static int check(const char *stored, enum password_algo algo, const char *pw)
{
    return password_check(stored, algo, pw, strlen(pw));
}

/* From issue 10, as RabbitMQ 3.10 stores them (rabbit_password_hashing_sha256). */
static void test_sha256_vectors(void **state)
{
    (void)state;
    assert_rc(check("kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR", PASSWORD_SHA256, "test12"),
              1);
    assert_rc(check("7fnAj9EgdV6/07ENPgKnLKZggRBqFwke5yz6dPuJrML1Fqz6", PASSWORD_SHA256, "guest"),
              1);
    assert_rc(check("7fnAj9EgdV6/07ENPgKnLKZggRBqFwke5yz6dPuJrML1Fqz6", PASSWORD_SHA256, "Guest"),
              0);
    assert_rc(check("7fnAj9EgdV6/07ENPgKnLKZggRBqFwke5yz6dPuJrML1Fqz6", PASSWORD_SHA256, "guest "),
              0);
    assert_rc(check("7fnAj9EgdV6/07ENPgKnLKZggRBqFwke5yz6dPuJrML1Fqz6", PASSWORD_SHA256, ""), 0);
}

/* Salt 90 8d 0a 42, password "test12", computed with:
 *   for a in sha512 md5; do
 *     (printf '\x90\x8d\x0a\x42'; printf '\x90\x8d\x0a\x42test12' | openssl dgst -$a -binary) \
 *       | base64 -w0; echo
 *   done
 * and, for a UTF-8 password (salt ca fe ba be, "pässwörd"):
 *   (printf '\xca\xfe\xba\xbe'; printf '\xca\xfe\xba\xbep\xc3\xa4ssw\xc3\xb6rd' \
 *     | openssl dgst -md5 -binary) | base64 -w0
 * Python's hashlib gives the same (base64.b64encode(s + hashlib.new(a, s + pw).digest())).
 * Both SHA-512 (68 bytes) and MD5 (20 bytes) end in one '=' pad, which is what
 * EVP_DecodeBlock's length quirk would get wrong. */
static const char sha512_test12[] = "kI0KQoz2n1/9aUEMrnHf69/3EM2yqGoGD60FpOoaopFN9VcsQjYH1JT2bEcvlt1B"
                                    "9MU2RvyDaK+JK7a9A4SDTQKQPgo=";
static const char md5_test12[] = "kI0KQpjRkzX0vFX6jQBGVFg6Wkc=";
static const char md5_utf8[] = "yv66vnorlhPAoN7oNUcn5LohepM=";

static void test_sha512_md5_vectors(void **state)
{
    (void)state;
    assert_rc(check(sha512_test12, PASSWORD_SHA512, "test12"), 1);
    assert_rc(check(sha512_test12, PASSWORD_SHA512, "test13"), 0);
    assert_rc(check(md5_test12, PASSWORD_MD5, "test12"), 1);
    assert_rc(check(md5_test12, PASSWORD_MD5, "test1"), 0);
    assert_rc(check(md5_utf8, PASSWORD_MD5, "p\xc3\xa4ssw\xc3\xb6rd"), 1);
    assert_rc(check(md5_utf8, PASSWORD_MD5, "passwort"), 0);
    /* The same salt and password under another algorithm is another length: malformed for it. */
    assert_rc(check(md5_test12, PASSWORD_SHA256, "test12"), -EINVAL);
    assert_rc(check(sha512_test12, PASSWORD_SHA256, "test12"), -EINVAL);
    assert_rc(check("kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR", PASSWORD_SHA512, "test12"),
              -EINVAL);
}

static void test_hash_roundtrip(void **state)
{
    (void)state;
    static const char *const pws[] = {"guest", "", "p\xc3\xa4ssw\xc3\xb6rd",
                                      "a much longer password than any digest block, "
                                      "a much longer password than any digest block"};
    static const size_t want_len[PASSWORD_ALGO_MAX] = {
        [PASSWORD_SHA256] = 48, [PASSWORD_SHA512] = 92, [PASSWORD_MD5] = 28};
    for (int a = 0; a < PASSWORD_ALGO_MAX; a++) {
        for (size_t i = 0; i < sizeof pws / sizeof pws[0]; i++) {
            char h1[PASSWORD_HASH_MAX], h2[PASSWORD_HASH_MAX];
            size_t n = strlen(pws[i]);
            assert_rc(password_hash(a, pws[i], n, h1, sizeof h1), (long)want_len[a]);
            assert_int_equal(strlen(h1), want_len[a]);
            assert_rc(password_hash(a, pws[i], n, h2, sizeof h2), (long)want_len[a]);
            assert_string_not_equal(h1, h2); /* random salt (2^-32 odds of a clash) */
            assert_rc(password_check(h1, a, pws[i], n), 1);
            assert_rc(password_check(h2, a, pws[i], n), 1);
            assert_rc(password_check(h1, a, "wrong", 5), 0);
            if (n)
                assert_rc(password_check(h1, a, pws[i], n - 1), 0);
        }
    }
    /* An embedded NUL is part of the password: len, not strlen, counts. */
    char h[PASSWORD_HASH_MAX];
    assert_rc(password_hash(PASSWORD_SHA256, "ab\0cd", 5, h, sizeof h), 48);
    assert_rc(password_check(h, PASSWORD_SHA256, "ab\0cd", 5), 1);
    assert_rc(password_check(h, PASSWORD_SHA256, "ab", 2), 0);
}

static void test_hash_errors(void **state)
{
    (void)state;
    char out[PASSWORD_HASH_MAX];
    memset(out, 'x', sizeof out);
    /* Exactly the room for 48 chars and the NUL is enough; one less is not, and out is kept. */
    assert_rc(password_hash(PASSWORD_SHA256, "guest", 5, out, 48), -ENOSPC);
    assert_int_equal(out[0], 'x');
    assert_rc(password_hash(PASSWORD_SHA256, "guest", 5, out, 49), 48);
    assert_rc(password_hash(PASSWORD_SHA512, "guest", 5, out, PASSWORD_HASH_MAX - 1), -ENOSPC);
    assert_rc(password_hash(PASSWORD_SHA512, "guest", 5, out, PASSWORD_HASH_MAX), 92);
    assert_rc(password_hash(PASSWORD_ALGO_MAX, "guest", 5, out, sizeof out), -EINVAL);
    assert_rc(password_hash((enum password_algo)PASSWORD_ALGO_INVALID, "guest", 5, out,
                            sizeof out),
              -EINVAL);
    assert_rc(password_hash(PASSWORD_SHA256, NULL, 3, out, sizeof out), -EINVAL);
    assert_rc(password_check("7fnAj9EgdV6/07ENPgKnLKZggRBqFwke5yz6dPuJrML1Fqz6", PASSWORD_ALGO_MAX,
                             "guest", 5),
              -EINVAL);
}

static void test_malformed(void **state)
{
    (void)state;
    /* Empty (or absent) stored hash: no password login, never an error. */
    assert_rc(check("", PASSWORD_SHA256, ""), 0);
    assert_rc(check("", PASSWORD_SHA256, "guest"), 0);
    assert_rc(password_check(NULL, PASSWORD_SHA256, "guest", 5), 0);

    static const char *const bad[] = {
        "not base64!",
        "7fnAj9EgdV6/07ENPgKnLKZggRBqFwke5yz6dPuJrML1Fqz", /* 47 chars: not a multiple of 4 */
        "7fnAj9EgdV6/07ENPgKnLKZggRBqFwke5yz6dPuJrML1Fqz6AAAA", /* 4 bytes too long */
        "7fnAj9EgdV6/07ENPgKnLKZggRBqFwke5yz6dPuJrML1Fq==",     /* too short by one byte */
        "7fnAj9EgdV6/07ENPgKnLKZggRBqFwke5yz6dPuJrML1Fqz6\n", /* whitespace is not allowed */
        " 7fnAj9EgdV6/07ENPgKnLKZggRBqFwke5yz6dPuJrML1Fqz6",
        "7fnAj9EgdV6/07ENPgKnLKZg=RBqFwke5yz6dPuJrML1Fqz6", /* '=' inside */
        "7fnAj9EgdV6/07ENPgKnLKZggRBqFwke5yz6dPuJrML1F===", /* three pads */
        "7fnAj9EgdV6-07ENPgKnLKZggRBqFwke5yz6dPuJrML1Fqz6", /* URL-safe alphabet */
        "7fnA",                                              /* salt only */
        "AA==",
        "====",
        "=",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        for (int a = 0; a < PASSWORD_ALGO_MAX; a++)
            if (password_check(bad[i], a, "guest", 5) != -EINVAL)
                fail_msg("stored \"%s\" under %s not refused", bad[i], password_algo_name(a));

    /* A very long stored value (e.g. from an import) is refused before any decoding. */
    enum { LONG = 4096 };
    char *big = malloc(LONG + 1);
    assert_non_null(big);
    memset(big, 'A', LONG);
    big[LONG] = '\0';
    for (int a = 0; a < PASSWORD_ALGO_MAX; a++)
        assert_rc(password_check(big, a, "guest", 5), -EINVAL);
    free(big);

    /* The longest valid length for SHA-512, in a buffer of exactly that size (ASan catches an
     * overread): decodes, is well-formed, and just does not match. */
    char *exact = (char *)unit_dup(sha512_test12, sizeof sha512_test12);
    exact[0] = 'A';
    assert_rc(password_check(exact, PASSWORD_SHA512, "test12", 6), 0);
    free(exact);
}

static void test_names(void **state)
{
    (void)state;
    for (int a = 0; a < PASSWORD_ALGO_MAX; a++) {
        const char *name = password_algo_name(a);
        assert_non_null(name);
        assert_rc(password_algo_parse(name), a);
    }
    assert_string_equal(password_algo_name(PASSWORD_SHA256), "rabbit_password_hashing_sha256");
    assert_string_equal(password_algo_name(PASSWORD_SHA512), "rabbit_password_hashing_sha512");
    assert_string_equal(password_algo_name(PASSWORD_MD5), "rabbit_password_hashing_md5");
    /* Absent field: RabbitMQ's default module. */
    assert_rc(password_algo_parse(NULL), PASSWORD_SHA256);
    assert_rc(password_algo_parse(""), PASSWORD_SHA256);
    assert_rc(password_algo_parse("rabbit_password_hashing_sha1"), PASSWORD_ALGO_INVALID);
    assert_rc(password_algo_parse("sha256"), PASSWORD_ALGO_INVALID);
    assert_rc(password_algo_parse("rabbit_password_hashing_sha256 "), PASSWORD_ALGO_INVALID);
    assert_rc(password_algo_parse("RABBIT_PASSWORD_HASHING_SHA256"), PASSWORD_ALGO_INVALID);
    assert_null(password_algo_name(PASSWORD_ALGO_MAX));
    assert_null(password_algo_name((enum password_algo)PASSWORD_ALGO_INVALID));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors), cmocka_unit_test(test_sha512_md5_vectors),
        cmocka_unit_test(test_hash_roundtrip), cmocka_unit_test(test_hash_errors),
        cmocka_unit_test(test_malformed),      cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
