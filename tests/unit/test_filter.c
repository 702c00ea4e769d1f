/* test_filter.c — broker/model/filter.c, SNS subscription filter policies: a table of cases
 * written from the SNS documentation's rules and examples (policy, scope, message attributes
 * or body, expected match), refusals with the words their error text must hold, and every AMQP
 * field type as a header value. Attribute messages are written as JSON and turned into a
 * headers table by jsontable.c (strings S, integers l, reals d, booleans t, null V, objects F,
 * arrays A); the field-type test builds tables with the protocol's writer. */
#include "unit.h"

#include <errno.h>
#include <jansson.h>
#include "broker/model/filter.h"
#include "broker/model/jsontable.h"
#include "protocol/table.h"

#define A FILTER_SCOPE_ATTRIBUTES
#define B FILTER_SCOPE_BODY

struct mcase {
    const char *policy;
    int scope;
    const char *msg; /* attributes as a JSON object, or the body */
    bool want;
};

static const struct mcase cases[] = {
    /* AND across keys, OR within a key's list (and-or-logic) */
    {"{\"customer_interests\":[\"rugby\"],\"price_usd\":[{\"numeric\":[\">\",100]}]}", A,
     "{\"customer_interests\":\"rugby\",\"price_usd\":150}", true},
    {"{\"customer_interests\":[\"rugby\"],\"price_usd\":[{\"numeric\":[\">\",100]}]}", A,
     "{\"customer_interests\":\"rugby\",\"price_usd\":100}", false},
    {"{\"customer_interests\":[\"rugby\"],\"price_usd\":[{\"numeric\":[\">\",100]}]}", A,
     "{\"customer_interests\":\"rugby\"}", false},
    {"{\"customer_interests\":[\"rugby\",\"football\",\"baseball\"]}", A,
     "{\"customer_interests\":\"football\"}", true},
    {"{\"customer_interests\":[\"rugby\",\"football\",\"baseball\"]}", A,
     "{\"customer_interests\":\"soccer\"}", false},
    {"{\"customer_interests\":[\"rugby\",\"football\",\"baseball\"]}", B,
     "{\"customer_interests\":\"baseball\"}", true},
    /* attributes not named by the policy are ignored */
    {"{\"store\":[\"example_corp\"]}", A, "{\"store\":\"example_corp\",\"other\":1}", true},
    /* exact string: case-sensitive, never equal to a number */
    {"{\"store\":[\"example_corp\"]}", A, "{\"store\":\"Example_Corp\"}", false},
    {"{\"n\":[\"5\"]}", A, "{\"n\":5}", false},
    {"{\"n\":[5]}", A, "{\"n\":\"5\"}", false},
    /* String.Array / body arrays: any element */
    {"{\"customer_interests\":[\"rugby\"]}", A,
     "{\"customer_interests\":[\"rugby\",\"tennis\"]}", true},
    {"{\"customer_interests\":[\"rugby\"]}", A,
     "{\"customer_interests\":[\"soccer\",\"tennis\"]}", false},
    {"{\"customer_interests\":[\"rugby\"]}", B, "{\"customer_interests\":[\"tennis\",\"rugby\"]}",
     true},
    /* numeric exact: 301.5 == 3.015e2; 5 == 5.0 */
    {"{\"price_usd\":[{\"numeric\":[\"=\",301.5]}]}", A, "{\"price_usd\":301.5}", true},
    {"{\"price_usd\":[{\"numeric\":[\"=\",301.5]}]}", B, "{\"price_usd\":3.015e2}", true},
    {"{\"price_usd\":[{\"numeric\":[\"=\",301.5]}]}", B, "{\"price_usd\":301.6}", false},
    {"{\"n\":[5]}", A, "{\"n\":5.0}", true},
    {"{\"n\":[5.0]}", B, "{\"n\":5}", true},
    {"{\"n\":[5]}", B, "{\"n\":6}", false},
    /* numeric anything-but */
    {"{\"price\":[{\"anything-but\":[100,500]}]}", A, "{\"price\":101}", true},
    {"{\"price\":[{\"anything-but\":[100,500]}]}", A, "{\"price\":100.1}", true},
    {"{\"price\":[{\"anything-but\":[100,500]}]}", A, "{\"price\":[100,50]}", true},
    {"{\"price\":[{\"anything-but\":[100,500]}]}", A, "{\"price\":100}", false},
    {"{\"price\":[{\"anything-but\":[100,500]}]}", B, "{\"price\":[100,50]}", true},
    {"{\"price\":[{\"anything-but\":[100,500]}]}", B, "{\"price\":500.0}", false},
    /* numeric ranges */
    {"{\"price_usd\":[{\"numeric\":[\"<\",0]}]}", A, "{\"price_usd\":-0.5}", true},
    {"{\"price_usd\":[{\"numeric\":[\"<\",0]}]}", A, "{\"price_usd\":0}", false},
    {"{\"price_usd\":[{\"numeric\":[\">\",0,\"<=\",150]}]}", A, "{\"price_usd\":150}", true},
    {"{\"price_usd\":[{\"numeric\":[\">\",0,\"<=\",150]}]}", A, "{\"price_usd\":0}", false},
    {"{\"price_usd\":[{\"numeric\":[\">\",0,\"<=\",150]}]}", A, "{\"price_usd\":150.00001}",
     false},
    {"{\"price_usd\":[{\"numeric\":[\">=\",10,\"<\",20]}]}", B, "{\"price_usd\":10}", true},
    {"{\"price_usd\":[{\"numeric\":[\">=\",10,\"<\",20]}]}", B, "{\"price_usd\":20}", false},
    {"{\"price_usd\":[{\"numeric\":[\">\",100]}]}", A, "{\"price_usd\":\"200\"}", false},
    {"{\"price\":[{\"numeric\":[\">=\",-1000000000,\"<=\",1000000000]}]}", B,
     "{\"price\":-999999999.5}", true},
    /* two numeric ranges in one list: OR */
    {"{\"p\":[{\"numeric\":[\"<\",10]},{\"numeric\":[\">\",100]}]}", A, "{\"p\":200}", true},
    {"{\"p\":[{\"numeric\":[\"<\",10]},{\"numeric\":[\">\",100]}]}", A, "{\"p\":50}", false},
    /* string anything-but */
    {"{\"customer_interests\":[{\"anything-but\":[\"rugby\",\"tennis\"]}]}", A,
     "{\"customer_interests\":\"baseball\"}", true},
    {"{\"customer_interests\":[{\"anything-but\":[\"rugby\",\"tennis\"]}]}", A,
     "{\"customer_interests\":[\"rugby\",\"baseball\"]}", true},
    {"{\"customer_interests\":[{\"anything-but\":[\"rugby\",\"tennis\"]}]}", A,
     "{\"customer_interests\":\"rugby\"}", false},
    {"{\"customer_interests\":[{\"anything-but\":\"rugby\"}]}", B,
     "{\"customer_interests\":\"football\"}", true},
    {"{\"customer_interests\":[{\"anything-but\":\"rugby\"}]}", B,
     "{\"customer_interests\":\"rugby\"}", false},
    /* anything-but needs the attribute: an absent key does not match */
    {"{\"customer_interests\":[{\"anything-but\":[\"rugby\"]}]}", A, "{\"other\":\"x\"}", false},
    {"{\"customer_interests\":[{\"anything-but\":[\"rugby\"]}]}", B, "{\"other\":\"x\"}", false},
    /* anything-but prefix / suffix */
    {"{\"event\":[{\"anything-but\":{\"prefix\":\"order-\"}}]}", A, "{\"event\":\"data-entry\"}",
     true},
    {"{\"event\":[{\"anything-but\":{\"prefix\":\"order-\"}}]}", A, "{\"event\":\"order-cancelled\"}",
     false},
    {"{\"event\":[{\"anything-but\":{\"suffix\":\"-cancelled\"}}]}", B,
     "{\"event\":\"order-shipped\"}", true},
    {"{\"event\":[{\"anything-but\":{\"suffix\":\"-cancelled\"}}]}", B,
     "{\"event\":\"order-cancelled\"}", false},
    /* prefix, suffix, equals-ignore-case */
    {"{\"customer_interests\":[{\"prefix\":\"bas\"}]}", A, "{\"customer_interests\":\"baseball\"}",
     true},
    {"{\"customer_interests\":[{\"prefix\":\"bas\"}]}", A, "{\"customer_interests\":\"rugby\"}",
     false},
    {"{\"customer_interests\":[{\"prefix\":\"bas\"}]}", B,
     "{\"customer_interests\":[\"rugby\",\"basketball\"]}", true},
    {"{\"customer_interests\":[{\"suffix\":\"ball\"}]}", A, "{\"customer_interests\":\"baseball\"}",
     true},
    {"{\"customer_interests\":[{\"suffix\":\"ball\"}]}", B, "{\"customer_interests\":\"rugby\"}",
     false},
    {"{\"customer_interests\":[{\"equals-ignore-case\":\"tennis\"}]}", A,
     "{\"customer_interests\":\"TeNnis\"}", true},
    {"{\"customer_interests\":[{\"equals-ignore-case\":\"tennis\"}]}", B,
     "{\"customer_interests\":\"Baseball\"}", false},
    {"{\"customer_interests\":[{\"prefix\":\"1\"}]}", A, "{\"customer_interests\":123}", false},
    /* exists */
    {"{\"store\":[{\"exists\":true}]}", A, "{\"store\":\"fans\",\"customer_interests\":\"x\"}", true},
    {"{\"store\":[{\"exists\":true}]}", A, "{\"customer_interests\":[\"baseball\"]}", false},
    {"{\"store\":[{\"exists\":true}]}", B, "{\"store\":\"fans\"}", true},
    {"{\"store\":[{\"exists\":true}]}", B, "{\"customer_interests\":[\"baseball\"]}", false},
    {"{\"store\":[{\"exists\":true}]}", B, "{\"store\":null}", false},
    {"{\"store\":[{\"exists\":false}]}", A, "{\"store\":\"fans\"}", false},
    {"{\"store\":[{\"exists\":false}]}", A, "{\"customer_interests\":\"baseball\"}", true},
    {"{\"store\":[{\"exists\":false}]}", B, "{\"customer_interests\":[\"baseball\"]}", true},
    {"{\"store\":[{\"exists\":false}]}", B, "{\"store\":\"fans\"}", false},
    /* exists false needs at least one attribute */
    {"{\"store\":[{\"exists\":false}]}", A, "{}", false},
    {"{\"store\":[{\"exists\":false}]}", B, "{}", false},
    /* exists alongside values: OR */
    {"{\"store\":[\"a\",{\"exists\":false}]}", A, "{\"store\":\"a\"}", true},
    {"{\"store\":[\"a\",{\"exists\":false}]}", A, "{\"x\":1}", true},
    {"{\"store\":[\"a\",{\"exists\":false}]}", A, "{\"store\":\"b\"}", false},
    /* cidr */
    {"{\"source_ip\":[{\"cidr\":\"10.0.0.0/24\"}]}", A, "{\"source_ip\":\"10.0.0.255\"}", true},
    {"{\"source_ip\":[{\"cidr\":\"10.0.0.0/24\"}]}", A, "{\"source_ip\":\"10.0.1.0\"}", false},
    {"{\"source_ip\":[{\"cidr\":\"10.0.0.0/24\"}]}", B, "{\"source_ip\":\"2001:db8::1\"}", false},
    {"{\"source_ip\":[{\"cidr\":\"10.0.0.0/24\"}]}", B, "{\"source_ip\":\"not an ip\"}", false},
    {"{\"source_ip\":[{\"cidr\":\"2001:db8::/32\"}]}", B, "{\"source_ip\":\"2001:db8:ffff::1\"}",
     true},
    {"{\"source_ip\":[{\"cidr\":\"2001:db8::/33\"}]}", A, "{\"source_ip\":\"2001:db8:8000::1\"}",
     false},
    {"{\"source_ip\":[{\"cidr\":\"192.168.1.7/32\"}]}", A, "{\"source_ip\":\"192.168.1.7\"}", true},
    {"{\"source_ip\":[{\"cidr\":\"0.0.0.0/0\"}]}", A, "{\"source_ip\":\"8.8.8.8\"}", true},
    /* booleans and null */
    {"{\"flag\":[true]}", A, "{\"flag\":true}", true},
    {"{\"flag\":[true]}", A, "{\"flag\":false}", false},
    {"{\"flag\":[false]}", B, "{\"flag\":false}", true},
    {"{\"flag\":[true]}", B, "{\"flag\":\"true\"}", false},
    {"{\"k\":[null]}", B, "{\"k\":null}", true},
    {"{\"k\":[null]}", B, "{\"k\":\"null\"}", false},
    {"{\"k\":[null]}", A, "{\"k\":null}", true},
    /* $or (and-or-logic examples) */
    {"{\"source\":[\"aws.cloudwatch\"],\"$or\":[{\"metricName\":[\"CPUUtilization\"]},"
     "{\"namespace\":[\"AWS/EC2\"]}]}",
     A, "{\"source\":\"aws.cloudwatch\",\"metricName\":\"CPUUtilization\"}", true},
    {"{\"source\":[\"aws.cloudwatch\"],\"$or\":[{\"metricName\":[\"CPUUtilization\"]},"
     "{\"namespace\":[\"AWS/EC2\"]}]}",
     A, "{\"source\":\"aws.cloudwatch\",\"namespace\":\"AWS/EC2\"}", true},
    {"{\"source\":[\"aws.cloudwatch\"],\"$or\":[{\"metricName\":[\"CPUUtilization\"]},"
     "{\"namespace\":[\"AWS/EC2\"]}]}",
     A, "{\"source\":\"aws.cloudwatch\",\"namespace\":\"AWS/S3\"}", false},
    {"{\"source\":[\"aws.cloudwatch\"],\"$or\":[{\"metricName\":[\"CPUUtilization\"]},"
     "{\"namespace\":[\"AWS/EC2\"]}]}",
     B, "{\"source\":\"aws.other\",\"namespace\":\"AWS/EC2\"}", false},
    /* nested $or */
    {"{\"source\":[\"aws.cloudwatch\"],\"$or\":[{\"metricName\":[\"CPUUtilization\"]},"
     "{\"metricType\":[\"MetricType\"],\"$or\":[{\"metricId\":[1234,4321]},"
     "{\"spaceId\":[1000,2000,3000]}]}]}",
     A, "{\"source\":\"aws.cloudwatch\",\"metricType\":\"MetricType\",\"spaceId\":2000}", true},
    {"{\"source\":[\"aws.cloudwatch\"],\"$or\":[{\"metricName\":[\"CPUUtilization\"]},"
     "{\"metricType\":[\"MetricType\"],\"$or\":[{\"metricId\":[1234,4321]},"
     "{\"spaceId\":[1000,2000,3000]}]}]}",
     A, "{\"source\":\"aws.cloudwatch\",\"metricType\":\"MetricType\",\"spaceId\":2500}", false},
    /* "$or" that is not an operator (one object only) is an ordinary key */
    {"{\"$or\":[\"x\"]}", A, "{\"$or\":\"x\"}", true},
    /* MessageBody: nested objects match nested objects */
    {"{\"store\":[\"example_corp\"],\"customer\":{\"interests\":[\"rugby\"]}}", B,
     "{\"store\":\"example_corp\",\"customer\":{\"interests\":\"rugby\",\"age\":30}}", true},
    {"{\"store\":[\"example_corp\"],\"customer\":{\"interests\":[\"rugby\"]}}", B,
     "{\"store\":\"example_corp\",\"customer\":{\"interests\":\"golf\"}}", false},
    {"{\"store\":[\"example_corp\"],\"customer\":{\"interests\":[\"rugby\"]}}", B,
     "{\"store\":\"example_corp\",\"interests\":\"rugby\"}", false},
    {"{\"a\":{\"b\":{\"c\":{\"d\":[{\"numeric\":[\">\",1]}]}}}}", B,
     "{\"a\":{\"b\":{\"c\":{\"d\":2}}}}", true},
    {"{\"a\":{\"b\":[\"x\"]}}", B, "{\"a\":[{\"b\":\"y\"},{\"b\":\"x\"}]}", true},
    {"{\"a\":{\"b\":[{\"exists\":false}]}}", B, "{\"c\":1}", true},
    {"{\"a\":{\"b\":[{\"exists\":true}]}}", B, "{\"a\":\"b\"}", false},
    {"{\"$or\":[{\"a\":{\"b\":[1]}},{\"c\":[2]}]}", B, "{\"a\":{\"b\":1}}", true},
    {"{\"$or\":[{\"a\":{\"b\":[1]}},{\"c\":[2]}]}", B, "{\"a\":{\"b\":2},\"c\":3}", false},
    /* a body that is not JSON, or not an object, matches nothing */
    {"{\"a\":[\"x\"]}", B, "{\"a\":\"x\"", false},
    {"{\"a\":[\"x\"]}", B, "[\"x\"]", false},
    {"{\"a\":[\"x\"]}", B, "", false},
    /* an integer beyond 64 bits elsewhere in the body does not spoil it */
    {"{\"a\":[{\"numeric\":[\">\",1]}]}", B, "{\"a\":2,\"big\":123456789012345678901234567890}",
     true},
    /* the empty policy matches everything */
    {"{}", A, "{}", true},
    {"{}", B, "not json", true},
    /* a scalar where a list is expected is a one-value list */
    {"{\"a\":\"x\"}", A, "{\"a\":\"x\"}", true},
    {"{\"a\":7}", B, "{\"a\":7}", true},
};

static amqp_bytes_t table_from_json(struct amqp_wbuf *w, const char *js)
{
    json_error_t je;
    json_t *o = json_loads(js, 0, &je);
    if (!o)
        fail_msg("bad test JSON %s: %s", js, je.text);
    size_t mark = amqp_tw_begin(w);
    jt_put_table(w, o);
    amqp_tw_end(w, mark);
    json_decref(o);
    assert_false(w->failed);
    amqp_bytes_t t = amqp_tw_body(w, mark);
    assert_rc(amqp_table_validate(t, 0), 0);
    return t;
}

static void test_cases(void **state)
{
    (void)state;
    char err[256];
    assert_true(sizeof cases / sizeof cases[0] >= 60);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct mcase *c = &cases[i];
        struct filter *f = NULL;
        int rc = filter_compile(c->policy, strlen(c->policy), (enum filter_scope)c->scope, &f,
                                err, sizeof err);
        if (rc != 0)
            fail_msg("case %zu: %s refused: %s", i, c->policy, err);
        bool got;
        if (c->scope == A) {
            struct amqp_wbuf w = {0};
            got = filter_match_table(f, table_from_json(&w, c->msg));
            amqp_wbuf_free(&w);
            assert_false(filter_match_body(f, c->msg, strlen(c->msg)) && strcmp(c->policy, "{}"));
        } else {
            got = filter_match_body(f, c->msg, strlen(c->msg));
        }
        if (got != c->want)
            fail_msg("case %zu: policy %s %s %s: got %s, want %s", i, c->policy,
                     c->scope == A ? "attributes" : "body", c->msg, got ? "match" : "no match",
                     c->want ? "match" : "no match");
        filter_free(f);
    }
}

struct rcase {
    const char *policy;
    int scope;
    const char *want; /* fragment of the error text */
};

static const struct rcase refusals[] = {
    {"{\"a\":[\"x\"]", A, "not valid JSON"},
    {"{\"a\":[\"x\"]", A, "line 1 column"},
    {"", A, "not valid JSON"},
    {"[\"a\"]", A, "must be a JSON object"},
    {"{\"a\":[\"x\"],\"a\":[\"y\"]}", A, "duplicate"},
    {"{\"price\":[{\"gt\":5}]}", A, "key 'price': unknown operator 'gt'"},
    {"{\"price\":[]}", A, "key 'price': empty list"},
    {"{\"price\":[[1]]}", A, "list cannot hold a list"},
    {"{\"x\":[{\"numeric\":[\">\"]}]}", A, "key 'x': numeric operator"},
    {"{\"x\":[{\"numeric\":[\">\",\"5\"]}]}", A, "needs a number after '>'"},
    {"{\"x\":[{\"numeric\":[\"~\",5]}]}", A, "unknown numeric operator '~'"},
    {"{\"x\":[{\"numeric\":[\"=\",5,\"<\",6]}]}", A, "'=' cannot be combined"},
    {"{\"x\":[{\"numeric\":[\">\",5,\">\",6]}]}", A, "two lower bounds"},
    {"{\"x\":[{\"numeric\":[\">\",10,\"<\",5]}]}", A, "range is empty"},
    {"{\"x\":[{\"numeric\":5}]}", A, "'numeric' needs an array"},
    {"{\"x\":[{\"numeric\":[\">\",1,\"<\",5,\"<\"]}]}", A, "one or two (operator, number) pairs"},
    {"{\"x\":[{\"numeric\":[\">\",1,\"<\"]}]}", A, "needs a number after '<'"},
    {"{\"x\":[{\"numeric\":[5,\">\"]}]}", A, "numeric operator must be a string"},
    {"{\"x\":[{\"numeric\":[\">\",2e9]}]}", A, "out of range"},
    {"{\"x\":[2000000000]}", A, "out of range"},
    {"{\"x\":[{\"prefix\":5}]}", A, "'prefix' needs a string, not a number"},
    {"{\"x\":[{\"suffix\":[\"a\"]}]}", A, "'suffix' needs a string, not an array"},
    {"{\"x\":[{\"equals-ignore-case\":true}]}", A, "'equals-ignore-case' needs a string"},
    {"{\"x\":[{\"exists\":\"yes\"}]}", A, "'exists' needs true or false"},
    {"{\"x\":[{\"anything-but\":[]}]}", A, "'anything-but' needs at least one value"},
    {"{\"x\":[{\"anything-but\":[true]}]}", A, "strings and numbers, not a boolean"},
    {"{\"x\":[{\"anything-but\":{\"exists\":true}}]}", A, "unknown operator 'exists' inside"},
    {"{\"x\":[{\"anything-but\":{\"prefix\":1}}]}", A, "'prefix' needs a string"},
    {"{\"x\":[{\"cidr\":\"10.0.0.0\"}]}", A, "address/prefix-length"},
    {"{\"x\":[{\"cidr\":\"10.0.0.0/33\"}]}", A, "prefix length 33 exceeds 32"},
    {"{\"x\":[{\"cidr\":\"300.0.0.0/8\"}]}", A, "not an IPv4 or IPv6 address"},
    {"{\"x\":[{\"cidr\":\"::/129\"}]}", A, "exceeds 128"},
    {"{\"x\":[{\"cidr\":1}]}", A, "'cidr' needs a string"},
    {"{\"x\":[{\"prefix\":\"a\",\"suffix\":\"b\"}]}", A, "exactly one operator"},
    /* refused after earlier parts were compiled: everything built so far is freed (ASan) */
    {"{\"x\":[{\"anything-but\":[\"a\",1,true]}]}", A, "not a boolean"},
    {"{\"x\":[\"a\",{\"prefix\":\"b\"},{\"gt\":1}]}", A, "key 'x': unknown operator 'gt'"},
    {"{\"w\":[\"a\"],\"x\":{\"y\":[\"b\"],\"z\":[[]]}}", B, "key 'x.z': a list cannot"},
    {"{\"w\":[\"a\"],\"$or\":[{\"y\":[\"b\"]},{\"z\":{\"q\":[]}}]}", B,
     "key 'z.q': empty list"},
    {"{\"x\":{\"y\":[\"a\"]}}", A, "key 'x': nested policies need scope MessageBody"},
    {"{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":[1]}}}}}}", B, "key 'a.b.c.d.e': nested deeper"},
    {"{\"a\":{}}", B, "key 'a': empty object"},
    {"{\"a\":{\"b\":[{\"gt\":1}]}}", B, "key 'a.b': unknown operator 'gt'"},
    {"{\"$or\":[{\"a\":[1]},{\"b\":[{\"lt\":1}]}]}", A, "key 'b': unknown operator 'lt'"},
    /* 6 x 5 x 6 = 180 */
    {"{\"a\":[1,2,3,4,5,6],\"b\":[1,2,3,4,5],\"c\":[1,2,3,4,5,6]}", A,
     "more than 150 combinations (180)"},
    /* $or: (2 x 8) + (2 x 8) + ... summed per branch: 2 x (8 + 8 + 8 + 8 + 8 + 8 + 8 + 8 + 8 +
     * 8) = 160 */
    {"{\"s\":[1,2],\"$or\":[{\"a\":[1,2,3,4,5,6,7,8]},{\"b\":[1,2,3,4,5,6,7,8]},"
     "{\"c\":[1,2,3,4,5,6,7,8]},{\"d\":[1,2,3,4,5,6,7,8]},{\"e\":[1,2,3,4,5,6,7,8]},"
     "{\"f\":[1,2,3,4,5,6,7,8]},{\"g\":[1,2,3,4,5,6,7,8]},{\"h\":[1,2,3,4,5,6,7,8]},"
     "{\"i\":[1,2,3,4,5,6,7,8]},{\"j\":[1,2,3,4,5,6,7,8]}]}",
     A, "more than 150 combinations (160)"},
};

static void test_refusals(void **state)
{
    (void)state;
    char err[256];
    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
        const struct rcase *c = &refusals[i];
        struct filter *f = (struct filter *)&err; /* must stay untouched */
        int rc = filter_compile(c->policy, strlen(c->policy), (enum filter_scope)c->scope, &f,
                                err, sizeof err);
        if (rc != -EINVAL)
            fail_msg("case %zu: %s: rc %d, want -EINVAL", i, c->policy, rc);
        assert_ptr_equal(f, (struct filter *)&err);
        if (strncmp(err, "filter policy: ", 15) != 0 || !strstr(err, c->want))
            fail_msg("case %zu: %s: error \"%s\" lacks \"%s\"", i, c->policy, err, c->want);
    }
    /* a tiny err buffer is truncated, never overrun; no buffer at all is fine */
    struct filter *f = NULL;
    char small[8];
    assert_int_equal(filter_compile("{\"x\":[]}", 8, A, &f, small, sizeof small), -EINVAL);
    assert_int_equal(strlen(small), 7);
    assert_int_equal(filter_compile("{\"x\":[]}", 8, A, &f, NULL, 0), -EINVAL);
    assert_null(f);
    /* SNS's size limit: 256 KiB of policy text (spaces count) */
    size_t big = FILTER_MAX_SIZE + 1;
    char *p = malloc(big);
    assert_non_null(p);
    memset(p, ' ', big);
    memcpy(p, "{\"x\":[\"a\"]}", 11);
    assert_int_equal(filter_compile(p, big, A, &f, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "larger than 256 KiB (262145 bytes)"));
    assert_int_equal(filter_compile(p, big - 1, A, &f, err, sizeof err), 0);
    f = filter_free(f);
    free(p);
}

static void test_combinations(void **state)
{
    (void)state;
    struct filter *f = NULL;
    char err[256];
    /* the SNS example: 3 x 1 x 2 = 6 */
    const char *p = "{\"key_a\":[\"value_one\",\"value_two\",\"value_three\"],"
                    "\"key_b\":[\"value_one\"],\"key_c\":[\"value_one\",\"value_two\"]}";
    assert_int_equal(filter_compile(p, strlen(p), A, &f, err, sizeof err), 0);
    assert_int_equal(filter_combinations(f), 6);
    f = filter_free(f);
    /* $or: 1 x (2 + 2 x (2 + 3)) = 12 */
    p = "{\"source\":[\"aws.cloudwatch\"],\"$or\":[{\"metricName\":[\"CPUUtilization\","
        "\"ReadLatency\"]},{\"metricType\":[\"MetricType\",\"X\"],\"$or\":[{\"metricId\":[1234,"
        "4321]},{\"spaceId\":[1000,2000,3000]}]}]}";
    assert_int_equal(filter_compile(p, strlen(p), A, &f, err, sizeof err), 0);
    assert_int_equal(filter_combinations(f), 12);
    f = filter_free(f);
    /* exactly 150 is allowed */
    p = "{\"a\":[1,2,3,4,5,6],\"b\":[1,2,3,4,5],\"c\":[1,2,3,4,5]}";
    assert_int_equal(filter_compile(p, strlen(p), A, &f, err, sizeof err), 0);
    assert_int_equal(filter_combinations(f), 150);
    f = filter_free(f);
    /* nested keys multiply like top-level ones */
    p = "{\"a\":{\"b\":[1,2],\"c\":[1,2,3]},\"d\":[1,2]}";
    assert_int_equal(filter_compile(p, strlen(p), B, &f, err, sizeof err), 0);
    assert_int_equal(filter_combinations(f), 12);
    assert_int_equal(filter_scope(f), B);
    f = filter_free(f);
}

static void test_exact_key(void **state)
{
    (void)state;
    struct filter *f = NULL;
    char err[256];
    amqp_bytes_t key;
    const amqp_bytes_t *vals;
    size_t n;
    const char *p = "{\"price\":[{\"numeric\":[\">\",1]}],\"tenant\":[\"t1\",\"t2\"]}";
    assert_int_equal(filter_compile(p, strlen(p), A, &f, err, sizeof err), 0);
    assert_int_equal(filter_exact_key(f, &key, &vals, &n), 1);
    assert_true(amqp_bytes_eq_str(key, "tenant"));
    assert_int_equal(n, 2);
    assert_true(amqp_bytes_eq_str(vals[0], "t1"));
    assert_true(amqp_bytes_eq_str(vals[1], "t2"));
    f = filter_free(f);
    /* keys inside $or, or mixing other conditions, are not exact keys */
    p = "{\"tenant\":[\"t1\",{\"prefix\":\"u\"}],\"$or\":[{\"a\":[\"x\"]},{\"b\":[\"y\"]}]}";
    assert_int_equal(filter_compile(p, strlen(p), A, &f, err, sizeof err), 0);
    assert_int_equal(filter_exact_key(f, &key, &vals, &n), 0);
    f = filter_free(f);
    assert_null(filter_free(NULL));
}

/* One header "h" of every AMQP field type, against the policy conditions that should and should
 * not match it. */
static void test_field_types(void **state)
{
    (void)state;
    struct amqp_wbuf w = {0};
    size_t mark;
    struct {
        const char *policy;
        char type;
        bool want;
    } tc[] = {
        {"{\"h\":[\"abc\"]}", 'S', true},
        {"{\"h\":[{\"prefix\":\"ab\"}]}", 'x', true},
        {"{\"h\":[\"abc\"]}", 'x', true},
        {"{\"h\":[{\"cidr\":\"10.1.0.0/16\"}]}", '4', true}, /* S holding an IPv4 address */
        {"{\"h\":[-5]}", 'b', true},
        {"{\"h\":[250]}", 'B', true},
        {"{\"h\":[-300]}", 's', true},
        {"{\"h\":[60000]}", 'u', true},
        {"{\"h\":[{\"numeric\":[\"<\",-70000]}]}", 'I', true},
        {"{\"h\":[4000000000]}", 'i', false}, /* out of the policy range: refused, see below */
        {"{\"h\":[{\"numeric\":[\">\",3000000]}]}", 'i', true},
        {"{\"h\":[-123456789]}", 'l', true},
        {"{\"h\":[123456789]}", 'L', true},
        {"{\"h\":[1.5]}", 'f', true},
        {"{\"h\":[{\"numeric\":[\">\",2.25,\"<\",2.26]}]}", 'd', true},
        {"{\"h\":[12.345]}", 'D', true},
        {"{\"h\":[900000000]}", 'T', true},
        {"{\"h\":[true]}", 't', true},
        {"{\"h\":[false]}", 't', false},
        {"{\"h\":[\"b\"]}", 'A', true},
        {"{\"h\":[7]}", 'A', true},
        {"{\"h\":[{\"anything-but\":[\"a\",\"b\",7]}]}", 'A', false},
        {"{\"h\":[{\"anything-but\":[\"a\",\"b\"]}]}", 'A', true},
        {"{\"h\":[{\"exists\":true}]}", 'F', true},
        {"{\"h\":[\"abc\"]}", 'F', false},
        {"{\"h\":[{\"anything-but\":[\"abc\"]}]}", 'F', false},
        {"{\"h\":[null]}", 'V', true},
        {"{\"h\":[{\"exists\":true}]}", 'V', false},
        {"{\"h\":[{\"exists\":false}]}", 'V', true},
        {"{\"h\":[\"1.5\"]}", 'f', false},
        {"{\"h\":[1]}", 't', false},
    };
    for (size_t i = 0; i < sizeof tc / sizeof tc[0]; i++) {
        char err[256];
        struct filter *f = NULL;
        int rc = filter_compile(tc[i].policy, strlen(tc[i].policy), A, &f, err, sizeof err);
        if (rc == -EINVAL && !tc[i].want) {
            assert_non_null(strstr(err, "out of range"));
            continue;
        }
        if (rc != 0)
            fail_msg("%s: %s", tc[i].policy, err);
        w.len = 0;
        mark = amqp_tw_begin(&w);
        amqp_tw_key(&w, "other");
        amqp_tw_str(&w, "x");
        amqp_tw_key(&w, "h");
        switch (tc[i].type) {
        case 'S': amqp_tw_str(&w, "abc"); break;
        case '4': amqp_tw_str(&w, "10.1.200.3"); break;
        case 'x': amqp_tw_bytes(&w, 'x', AMQP_BYTES_LIT("abc")); break;
        case 'b': amqp_tw_int(&w, 'b', -5); break;
        case 'B': amqp_tw_int(&w, 'B', 250); break;
        case 's': amqp_tw_int(&w, 's', -300); break;
        case 'u': amqp_tw_int(&w, 'u', 60000); break;
        case 'I': amqp_tw_int(&w, 'I', -70001); break;
        case 'i': amqp_tw_int(&w, 'i', 4000000000); break;
        case 'l': amqp_tw_int(&w, 'l', -123456789); break;
        case 'L': amqp_tw_int(&w, 'L', 123456789); break;
        case 'f': amqp_tw_float(&w, 1.5, true); break;
        case 'd': amqp_tw_float(&w, 2.255, false); break;
        case 'D': amqp_tw_decimal(&w, 3, 12345); break;
        case 'T': amqp_tw_int(&w, 'T', 900000000); break;
        case 't': amqp_tw_bool(&w, true); break;
        case 'V': amqp_tw_void(&w); break;
        case 'A': {
            size_t m = amqp_tw_array(&w);
            amqp_tw_str(&w, "a");
            amqp_tw_int(&w, 'I', 7);
            amqp_tw_str(&w, "b");
            amqp_tw_end(&w, m);
            break;
        }
        case 'F': {
            size_t m = amqp_tw_table(&w);
            amqp_tw_key(&w, "abc");
            amqp_tw_str(&w, "abc");
            amqp_tw_end(&w, m);
            break;
        }
        }
        amqp_tw_end(&w, mark);
        assert_false(w.failed);
        amqp_bytes_t t = amqp_tw_body(&w, mark);
        assert_rc(amqp_table_validate(t, 0), 0);
        bool got = filter_match_table(f, t);
        if (got != tc[i].want)
            fail_msg("%s against type %c: got %d", tc[i].policy, tc[i].type, got);
        filter_free(f);
    }
    /* an empty table matches no non-empty policy; a body-scope filter never matches a table */
    struct filter *f = NULL;
    const char *pe = "{\"h\":[{\"exists\":false}]}";
    assert_int_equal(filter_compile(pe, strlen(pe), A, &f, NULL, 0), 0);
    assert_false(filter_match_table(f, (amqp_bytes_t){NULL, 0}));
    f = filter_free(f);
    assert_int_equal(filter_compile("{\"h\":[\"abc\"]}", strlen("{\"h\":[\"abc\"]}"), B, &f, NULL, 0), 0);
    w.len = 0;
    mark = amqp_tw_begin(&w);
    amqp_tw_key(&w, "h");
    amqp_tw_str(&w, "abc");
    amqp_tw_end(&w, mark);
    assert_false(filter_match_table(f, amqp_tw_body(&w, mark)));
    assert_true(filter_match_body(f, "{\"h\":\"abc\"}", 11));
    f = filter_free(f);
    amqp_wbuf_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_combinations), cmocka_unit_test(test_exact_key),
        cmocka_unit_test(test_field_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
