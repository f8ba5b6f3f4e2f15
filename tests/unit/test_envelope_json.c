/*
 * test_envelope_json.c - the envelope encoder: escaping, UTF-8 repair,
 * base64, numbers and times, the snprintf contract and the size bound.
 * Output validity is checked by python3's strict json module where noted.
 */
#include "envelope_json.h"

#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S(lit) ((aero_str){(lit), sizeof(lit) - 1})
#define FFFD "\xef\xbf\xbd"

/* envelope_json_quote into a fresh buffer; the caller frees. */
static char *quote(const char *s, size_t n)
{
    size_t need = envelope_json_quote(s, n, NULL, 0);
    char *buf = malloc(need + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(envelope_json_quote(s, n, buf, need + 1), need);
    cr_assert_eq(strlen(buf), need, "NUL inside the quoted output");
    return buf;
}

static void expect_quote(const char *in, size_t n, const char *want)
{
    char *got = quote(in, n);
    cr_expect_str_eq(got, want, "input of %zu bytes starting 0x%02x", n,
                     n ? (unsigned char)in[0] : 0);
    free(got);
}

static char *encode(const aero_frame *f)
{
    size_t need = envelope_json_encode(f, NULL, 0);
    char *buf = malloc(need + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(envelope_json_encode(f, buf, need + 1), need);
    cr_assert_eq(strlen(buf), need);
    return buf;
}

/* Debian's python3 directly: a pyenv shim first in PATH costs ~2 s a run. */
static const char *python(void)
{
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

/* Runs a python3 script and returns its exit status. The script sees each
 * line of `json` parsed strictly (no NaN, valid UTF-8 only) in `ds`, the
 * first one also as `d`. */
static int py_check(const char *json, const char *script)
{
    char jpath[] = "/tmp/aero-ej-json-XXXXXX";
    char ppath[] = "/tmp/aero-ej-py-XXXXXX";
    int jfd = mkstemp(jpath);
    int pfd = mkstemp(ppath);
    cr_assert(jfd >= 0 && pfd >= 0);
    FILE *jf = fdopen(jfd, "w");
    FILE *pf = fdopen(pfd, "w");
    fputs(json, jf);
    fprintf(pf,
            "import json, sys\n"
            "def bad(c): sys.exit(3)\n"
            "raw = open(sys.argv[1], 'rb').read().decode('utf-8')\n"
            "ds = [json.loads(l, parse_constant=bad) for l in raw.split('\\n')]\n"
            "d = ds[0]\n"
            "%s\n",
            script);
    fclose(jf);
    fclose(pf);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "%s %s %s", python(), ppath, jpath);
    int st = system(cmd);
    unlink(jpath);
    unlink(ppath);
    cr_assert(WIFEXITED(st), "python3 did not run");
    return WEXITSTATUS(st);
}

/* ------------------------------------------------------------- escaping */

Test(envelope_json, every_control_char_escaped)
{
    static const char *const shortf[32] = {
        [8] = "\"\\b\"", [9] = "\"\\t\"", [10] = "\"\\n\"",
        [12] = "\"\\f\"", [13] = "\"\\r\"",
    };
    for (int c = 0; c < 0x20; c++) {
        char in = (char)c;
        char want[16];
        if (shortf[c])
            snprintf(want, sizeof(want), "%s", shortf[c]);
        else
            snprintf(want, sizeof(want), "\"\\u%04x\"", c);
        expect_quote(&in, 1, want);
    }
    expect_quote("\x7f", 1, "\"\x7f\"");
    expect_quote(" ~", 2, "\" ~\"");
}

Test(envelope_json, quote_and_backslash)
{
    expect_quote("\"", 1, "\"\\\"\"");
    expect_quote("\\", 1, "\"\\\\\"");
    expect_quote("a\"b\\c/d", 7, "\"a\\\"b\\\\c/d\"");
    /* Long runs take the word-at-a-time path; specials at every offset. */
    for (size_t at = 0; at < 20; at++) {
        char in[20], want[64];
        memset(in, 'x', sizeof(in));
        in[at] = '"';
        size_t k = 0;
        want[k++] = '"';
        for (size_t i = 0; i < sizeof(in); i++) {
            if (i == at)
                want[k++] = '\\';
            want[k++] = in[i];
        }
        want[k++] = '"';
        want[k] = '\0';
        expect_quote(in, sizeof(in), want);
    }
}

Test(envelope_json, embedded_nul)
{
    expect_quote("a\0b", 3, "\"a\\u0000b\"");
    expect_quote("\0", 1, "\"\\u0000\"");
    expect_quote("", 0, "\"\"");
    expect_quote(NULL, 0, "\"\"");
}

Test(envelope_json, valid_utf8_kept)
{
    static const char *const ok[] = {
        "\xc2\x80",         /* U+0080, smallest 2-byte */
        "\xc3\xa9",         /* e acute */
        "\xdf\xbf",         /* U+07FF */
        "\xe0\xa0\x80",     /* U+0800, smallest 3-byte */
        "\xe2\x82\xac",     /* euro sign */
        "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",     /* U+E000, just above them */
        "\xef\xbf\xbd",     /* U+FFFD itself */
        "\xef\xbf\xbf",     /* U+FFFF */
        "\xe2\x80\xa8",     /* U+2028: valid JSON raw */
        "\xf0\x90\x80\x80", /* U+10000, smallest 4-byte */
        "\xf0\x9d\x84\x9e", /* G clef */
        "\xf4\x8f\xbf\xbf", /* U+10FFFF, the last code point */
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char want[32];
        snprintf(want, sizeof(want), "\"%s\"", ok[i]);
        expect_quote(ok[i], strlen(ok[i]), want);
        /* Inside a long ASCII run too (word path, then the sequence). */
        char in[64];
        snprintf(in, sizeof(in), "0123456789%sabcdefghij", ok[i]);
        char big[80];
        snprintf(big, sizeof(big), "\"%s\"", in);
        expect_quote(in, strlen(in), big);
    }
}

Test(envelope_json, invalid_utf8_each_byte_replaced)
{
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        {"\x80", FFFD},                                /* stray continuation */
        {"\xbf", FFFD},
        {"\xc0\x80", FFFD FFFD},                       /* overlong NUL */
        {"\xc1\xbf", FFFD FFFD},                       /* overlong 2-byte */
        {"\xe0\x80\x80", FFFD FFFD FFFD},              /* overlong 3-byte */
        {"\xe0\x9f\xbf", FFFD FFFD FFFD},
        {"\xed\xa0\x80", FFFD FFFD FFFD},              /* surrogate D800 */
        {"\xed\xbf\xbf", FFFD FFFD FFFD},              /* surrogate DFFF */
        {"\xf0\x80\x80\x80", FFFD FFFD FFFD FFFD},     /* overlong 4-byte */
        {"\xf0\x8f\xbf\xbf", FFFD FFFD FFFD FFFD},
        {"\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD},     /* U+110000 */
        {"\xf5\x80\x80\x80", FFFD FFFD FFFD FFFD},
        {"\xf8\x88\x80\x80\x80", FFFD FFFD FFFD FFFD FFFD}, /* 5-byte form */
        {"\xfe", FFFD},
        {"\xff", FFFD},
        {"\xc3", FFFD},                                /* truncated at end */
        {"\xe2\x82", FFFD FFFD},
        {"\xf0\x9d\x84", FFFD FFFD FFFD},
        {"\xc3" "A", FFFD "A"},                        /* bad continuation */
        {"\xe2\x82" "A", FFFD FFFD "A"},
        {"\xf0\x9d\x84" "A", FFFD FFFD FFFD "A"},
        {"a\xff" "b", "a" FFFD "b"},
        {"\xc3\xa9\xff\xc3\xa9", "\xc3\xa9" FFFD "\xc3\xa9"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[64];
        snprintf(want, sizeof(want), "\"%s\"", cases[i].want);
        expect_quote(cases[i].in, strlen(cases[i].in), want);
    }
}

/* --------------------------------------------------------------- base64 */

Test(envelope_json, base64_rfc4648_vectors)
{
    static const char *const v[][2] = {
        {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
        {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t n = strlen(v[i][0]);
        cr_expect_eq(envelope_json_base64((const unsigned char *)v[i][0], n, buf,
                                   sizeof(buf)),
                     strlen(v[i][1]));
        cr_expect_str_eq(buf, v[i][1]);
    }
    static const unsigned char bin[] = {0x00, 0xfb, 0xff, 0xbf, 0x10};
    cr_expect_eq(envelope_json_base64(bin, sizeof(bin), buf, sizeof(buf)), 8);
    cr_expect_str_eq(buf, "APv/vxA=");
    cr_expect_eq(envelope_json_base64(bin + 1, 2, buf, sizeof(buf)), 4);
    cr_expect_str_eq(buf, "+/8=");
}

/* ------------------------------------------------------- numbers, time */

static aero_frame base_frame(void)
{
    static const aero_kv kv[] = {
        {{"lat", 3}, {"47.3977419", 10}},
        {{"alt", 3}, {"488.26", 6}},
    };
    static const char raw[] = "foobar";
    aero_frame f = {
        .size = sizeof(aero_frame),
        .agent_id = S("drone-1"),
        .session_id = S("sess-00ff"),
        .seq = 42,
        .sent_at_unix_ns = 1732726646123456789,
        .device_timestamp_sec = 12.5,
        .raw_mavlink = {raw, 6},
        .dialect = S("common"),
        .msg_id = 33,
        .msg_name = S("GLOBAL_POSITION_INT"),
        .fields = kv,
        .n_fields = 2,
        .flight_id = S("f-7"),
        .received_unix_ns = 1795798646123456789,
        .protobuf = {NULL, 0},
        .protocol = AERO_PROTOCOL_MULTIPLEXED,
        .wal_id = S("0b6f7e4e-3c2a-4f7b-9d1e-5a6b7c8d9e0f"),
        .intent_id = S("intent-9"),
        .intent_version = 4294967295u,
        .relay_id = S("relay-a"),
        .operator_id = S("op-1"),
        .aircraft_id = S("ac-\"1\""),
    };
    return f;
}

Test(envelope_json, every_field_exact)
{
    aero_frame f = base_frame();
    char *got = encode(&f);
    cr_expect_str_eq(got,
        "{\"agent_id\":\"drone-1\",\"session_id\":\"sess-00ff\",\"seq\":42,"
        "\"timestamp_relay\":\"2026-11-27T16:57:26.123456789Z\","
        "\"sent_at_unix_ns\":1732726646123456789,\"timestamp_device\":12.5,"
        "\"msg_id\":33,\"msg_name\":\"GLOBAL_POSITION_INT\",\"dialect\":\"common\","
        "\"flight_id\":\"f-7\",\"fields\":{\"lat\":\"47.3977419\",\"alt\":\"488.26\"},"
        "\"raw_mavlink\":\"Zm9vYmFy\",\"protocol\":\"multiplexed\","
        "\"wal_id\":\"0b6f7e4e-3c2a-4f7b-9d1e-5a6b7c8d9e0f\",\"intent_id\":\"intent-9\","
        "\"intent_version\":4294967295,\"relay_id\":\"relay-a\",\"operator_id\":\"op-1\","
        "\"aircraft_id\":\"ac-\\\"1\\\"\"}");
    cr_expect_eq(py_check(got,
        "assert list(d) == ['agent_id', 'session_id', 'seq', 'timestamp_relay',"
        " 'sent_at_unix_ns', 'timestamp_device', 'msg_id', 'msg_name',"
        " 'dialect', 'flight_id', 'fields', 'raw_mavlink', 'protocol', 'wal_id',"
        " 'intent_id', 'intent_version', 'relay_id', 'operator_id', 'aircraft_id']\n"
        "assert d['fields'] == {'lat': '47.3977419', 'alt': '488.26'}\n"
        "assert d['intent_version'] == 4294967295 and d['aircraft_id'] == 'ac-\"1\"'"), 0);
    free(got);
}

/* A frame built against ABI 1.0 (its size ends before `protocol`) gets the
 * 1.0 envelope: nothing is read past what its producer wrote. */
Test(envelope_json, a_frame_of_abi_1_0_has_the_1_0_keys_only)
{
    aero_frame f = base_frame();
    f.size = offsetof(aero_frame, protocol);
    char *got = encode(&f);
    cr_expect_eq(py_check(got,
        "assert list(d) == ['agent_id', 'session_id', 'seq', 'timestamp_relay',"
        " 'sent_at_unix_ns', 'timestamp_device', 'msg_id', 'msg_name',"
        " 'dialect', 'flight_id', 'fields', 'raw_mavlink']"), 0);
    free(got);
}

Test(envelope_json, extreme_integers_and_empty)
{
    aero_frame f = {
        .size = sizeof(aero_frame),
        .seq = UINT64_MAX,
        .sent_at_unix_ns = INT64_MIN,
        .device_timestamp_sec = NAN,
        .msg_id = UINT32_MAX,
        .received_unix_ns = INT64_MIN,
    };
    char *got = encode(&f);
    cr_expect_str_eq(got,
        "{\"agent_id\":\"\",\"session_id\":\"\",\"seq\":18446744073709551615,"
        "\"timestamp_relay\":\"1677-09-21T00:12:43.145224192Z\","
        "\"sent_at_unix_ns\":-9223372036854775808,\"timestamp_device\":null,"
        "\"msg_id\":4294967295,\"msg_name\":\"\",\"dialect\":\"\","
        "\"flight_id\":\"\",\"fields\":{},\"raw_mavlink\":\"\",\"protocol\":\"seed\","
        "\"wal_id\":\"\",\"intent_id\":\"\",\"intent_version\":0,\"relay_id\":\"\","
        "\"operator_id\":\"\",\"aircraft_id\":\"\"}");
    cr_expect_eq(py_check(got,
        "assert d['seq'] == 18446744073709551615\n"
        "assert d['sent_at_unix_ns'] == -9223372036854775808\n"
        "assert d['timestamp_device'] is None and d['msg_id'] == 4294967295"), 0);
    free(got);

    f.sent_at_unix_ns = -1;
    f.seq = 0;
    f.msg_id = 0;
    got = encode(&f);
    cr_expect(strstr(got, "\"seq\":0,") != NULL, "%s", got);
    cr_expect(strstr(got, "\"sent_at_unix_ns\":-1,") != NULL, "%s", got);
    cr_expect(strstr(got, "\"msg_id\":0,") != NULL, "%s", got);
    free(got);
}

/* The timestamp_device text of an encoding of x. */
static void device_text(double x, char *out, size_t cap)
{
    aero_frame f = base_frame();
    f.device_timestamp_sec = x;
    char *got = encode(&f);
    const char *p = strstr(got, "\"timestamp_device\":");
    cr_assert_not_null(p);
    p += strlen("\"timestamp_device\":");
    size_t n = strcspn(p, ",");
    cr_assert_lt(n, cap);
    memcpy(out, p, n);
    out[n] = '\0';
    free(got);
}

Test(envelope_json, device_timestamp_numbers)
{
    static const struct {
        double x;
        const char *want;
    } cases[] = {
        {12.0, "12"}, {0.0, "0"}, {1.5, "1.5"}, {0.1, "0.1"},
        {-2.25, "-2.25"}, {1732726646.123456, "1732726646.123456"},
        {1732726646.5, "1732726646.5"}, {0.000000001, "0.000000001"},
        {NAN, "null"}, {-NAN, "null"}, {INFINITY, "null"}, {-INFINITY, "null"},
    };
    char txt[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        device_text(cases[i].x, txt, sizeof(txt));
        cr_expect_str_eq(txt, cases[i].want);
    }
    device_text(-0.0, txt, sizeof(txt));
    cr_expect(strcmp(txt, "-0") == 0 || strcmp(txt, "0") == 0, "%s", txt);
}

/* Doubles of every shape print as JSON numbers that parse back exactly. */
Test(envelope_json, device_timestamp_round_trips)
{
    static const double fixed[] = {
        DBL_MAX, -DBL_MAX, DBL_MIN, 4.9406564584124654e-324, 1e300, 1e-300,
        9007199254740993.0, 9007199254740991.0, 123456789.123456789,
        0.30000000000000004, 1e21, 1e22, 5e-10, 0.1 + 0.2,
    };
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    char txt[64];
    for (int i = 0; i < 20000; i++) {
        double x;
        if (i < (int)(sizeof(fixed) / sizeof(fixed[0]))) {
            x = fixed[i];
        } else {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if (i % 2) {
                memcpy(&x, &s, sizeof(x)); /* any bit pattern */
            } else {
                /* device clocks: seconds with a few decimals */
                x = (double)(s % 4000000000000ULL) / (double)(1 + s % 1000000);
            }
            if (!isfinite(x))
                continue;
        }
        device_text(x, txt, sizeof(txt));
        char *end;
        double back = strtod(txt, &end);
        cr_assert_eq(*end, '\0', "not a number: %s", txt);
        cr_assert(memcmp(&back, &x, sizeof(x)) == 0 || (x == 0 && back == 0),
                  "%.17g printed as %s", x, txt);
        cr_assert(strpbrk(txt, "in") == NULL, "%s", txt);
    }
}

Test(envelope_json, rfc3339_times)
{
    static const struct {
        int64_t ns;
        const char *want;
    } cases[] = {
        {0, "1970-01-01T00:00:00.000000000Z"},
        {-1, "1969-12-31T23:59:59.999999999Z"},
        {1, "1970-01-01T00:00:00.000000001Z"},
        {INT64_MAX, "2262-04-11T23:47:16.854775807Z"},
        {INT64_MIN, "1677-09-21T00:12:43.145224192Z"},
        {951782400LL * 1000000000 + 5, "2000-02-29T00:00:00.000000005Z"},
        {1709251199LL * 1000000000 + 999999999, "2024-02-29T23:59:59.999999999Z"},
        {1795798646123456789, "2026-11-27T16:57:26.123456789Z"},
    };
    char buf[31];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_expect_eq(envelope_json_rfc3339(cases[i].ns, buf), 30);
        cr_expect_str_eq(buf, cases[i].want);
    }
    /* Every day across four centuries agrees with gmtime_r. */
    for (int64_t sec = -2208988800LL; sec < 4102444800LL; sec += 86399) {
        struct tm tm;
        time_t t = (time_t)sec;
        gmtime_r(&t, &tm);
        char want[96];
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.000000000Z",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);
        envelope_json_rfc3339(sec * 1000000000, buf);
        cr_assert_str_eq(buf, want);
    }
}

/* ------------------------------------------------ contract and the bound */

/* Calls fn with every capacity from 0 to need+2 and checks the snprintf
 * contract: same return, nothing written past cap, full text when it fits. */
#define CHECK_CONTRACT(call_with_buf_cap, full, need)                         \
    do {                                                                      \
        for (size_t cap = 0; cap <= (need) + 2; cap++) {                      \
            char *b = malloc(cap + 16);                                       \
            memset(b, 0x5a, cap + 16);                                        \
            char *buf = b;                                                    \
            size_t got = (call_with_buf_cap);                                 \
            cr_assert_eq(got, (need), "cap %zu", cap);                        \
            for (size_t k = cap; k < cap + 16; k++)                           \
                cr_assert_eq(b[k], 0x5a, "wrote past cap %zu", cap);          \
            if (cap > (need))                                                 \
                cr_assert(memcmp(b, (full), (need) + 1) == 0, "cap %zu", cap); \
            free(b);                                                          \
        }                                                                     \
    } while (0)

Test(envelope_json, snprintf_contract_small_caps)
{
    static const char in[] = "a\"\x01\xc3\xa9\xff xyz";
    char *full = quote(in, sizeof(in) - 1);
    size_t need = strlen(full);
    CHECK_CONTRACT(envelope_json_quote(in, sizeof(in) - 1, buf, cap), full, need);
    free(full);

    const unsigned char bin[] = "foobar!";
    CHECK_CONTRACT(envelope_json_base64(bin, 7, buf, cap), "Zm9vYmFyIQ==", (size_t)12);

    aero_frame f = base_frame();
    full = encode(&f);
    need = strlen(full);
    CHECK_CONTRACT(envelope_json_encode(&f, buf, cap), full, need);
    free(full);
}

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random bytes, weighted towards what is expensive to encode. */
static void fill_adversarial(uint64_t *s, char *p, size_t n)
{
    static const char heavy[] = "\x01\x1f\"\\\xff\xc3\xe2\x82\xf0\x9d\xed\xa0";
    int mode = (int)(rng(s) % 4);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rng(s);
        switch (mode) {
        case 0: p[i] = (char)r; break;
        case 1: p[i] = (char)(r % 0x20); break; /* all \u00XX */
        case 2: p[i] = heavy[r % (sizeof(heavy) - 1)]; break;
        default: p[i] = (char)(0x80 + r % 0x80); break; /* mostly invalid */
        }
    }
}

Test(envelope_json, bound_holds_and_paths_agree)
{
    uint64_t s = 12345;
    static char pool[13][300];
    size_t lines_len = 0, n_lines = 0;
    char *lines = malloc(1);
    aero_kv kv[3];
    for (int iter = 0; iter < 3000; iter++) {
        aero_str str[13];
        for (int k = 0; k < 13; k++) {
            size_t n = (size_t)(rng(&s) % 300);
            fill_adversarial(&s, pool[k], n);
            str[k] = (aero_str){pool[k], n};
        }
        for (int k = 0; k < 3; k++)
            kv[k] = (aero_kv){str[(k + 5) % 8], str[(k + 6) % 8]};
        double dev;
        uint64_t bits = rng(&s);
        memcpy(&dev, &bits, sizeof(dev));
        aero_frame f = {
            .size = sizeof(aero_frame),
            .agent_id = str[0], .session_id = str[1], .msg_name = str[2],
            .dialect = str[3], .flight_id = str[4], .raw_mavlink = str[5],
            .seq = rng(&s), .sent_at_unix_ns = (int64_t)rng(&s),
            .received_unix_ns = (int64_t)rng(&s), .msg_id = (uint32_t)rng(&s),
            .device_timestamp_sec = dev, .fields = kv,
            .n_fields = (size_t)(rng(&s) % 4),
            .protocol = (aero_protocol)(1 + rng(&s) % 2), .wal_id = str[8],
            .intent_id = str[9], .intent_version = (uint32_t)rng(&s), .relay_id = str[10],
            .operator_id = str[11], .aircraft_id = str[12],
        };
        size_t need = envelope_json_encode(&f, NULL, 0);
        size_t bound = envelope_json_bound(&f);
        cr_assert_geq(bound, need + 1, "bound %zu need %zu", bound, need);

        /* Fast path (cap = bound) and measured path (cap = need + 1) write
         * the same bytes, and no byte past need + 1. */
        char *a = malloc(bound + 8), *b = malloc(need + 9);
        memset(b, 0x5a, need + 9);
        cr_assert_eq(envelope_json_encode(&f, a, bound), need);
        cr_assert_eq(envelope_json_encode(&f, b, need + 1), need);
        cr_assert(memcmp(a, b, need + 1) == 0);
        for (size_t k = need + 1; k < need + 9; k++)
            cr_assert_eq(b[k], 0x5a);
        if (iter < 300) { /* checked by python below, in one run */
            lines = realloc(lines, lines_len + need + 2);
            memcpy(lines + lines_len, a, need);
            lines_len += need;
            lines[lines_len++] = '\n';
            n_lines++;
        }
        free(a);
        free(b);
    }
    lines[lines_len - 1] = '\0';
    char script[128];
    snprintf(script, sizeof(script),
             "assert len(ds) == %zu and all(len(x) == 19 for x in ds)", n_lines);
    cr_assert_eq(py_check(lines, script), 0);
    free(lines);
}

/* The heaviest expansion of each construct stays within the bound. */
Test(envelope_json, bound_worst_cases)
{
    static char ctl[1000], bad[1000];
    memset(ctl, 0x01, sizeof(ctl));
    memset(bad, 0xff, sizeof(bad));
    aero_kv kv[2] = {{{ctl, sizeof(ctl)}, {bad, sizeof(bad)}},
                     {{bad, sizeof(bad)}, {ctl, sizeof(ctl)}}};
    aero_frame f = {
        .size = sizeof(aero_frame),
        .agent_id = {ctl, sizeof(ctl)}, .session_id = {bad, sizeof(bad)},
        .msg_name = {ctl, sizeof(ctl)}, .dialect = {ctl, sizeof(ctl)},
        .flight_id = {ctl, sizeof(ctl)}, .raw_mavlink = {bad, 1},
        .seq = UINT64_MAX, .sent_at_unix_ns = INT64_MIN,
        .received_unix_ns = INT64_MAX, .msg_id = UINT32_MAX,
        .device_timestamp_sec = -2.2250738585072014e-308,
        .fields = kv, .n_fields = 2,
    };
    size_t need = envelope_json_encode(&f, NULL, 0);
    cr_assert_geq(envelope_json_bound(&f), need + 1);
    char *a = encode(&f);
    cr_expect_eq(py_check(a,
        "assert d['agent_id'] == '\\x01' * 1000\n"
        "assert d['session_id'] == '\\ufffd' * 1000\n"
        "assert d['raw_mavlink'] == '/w=='"), 0);
    free(a);
}
