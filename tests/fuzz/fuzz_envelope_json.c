/*
 * fuzz_envelope_json.c - libFuzzer target for core/envelope_json.c: build
 * an aero_frame from the input (numbers, then length-prefixed strings and
 * field pairs with arbitrary bytes), encode it, and check: the output fits
 * envelope_json_bound, is exactly as long as reported, is one valid JSON
 * object (RFC 8259, checked by a strict validator below) in valid UTF-8,
 * and a truncated encode is a NUL-terminated prefix of the full one.
 */
#include "envelope_json.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 300

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* ------------------------------------------------------ input reader */

struct input {
    const uint8_t *p;
    size_t left;
};

static uint64_t take_u64(struct input *in, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && in->left > 0; i++, in->left--)
        v = v << 8 | *in->p++;
    return v;
}

/* A string: one length byte (0..255; 255 means "take 255 + next byte * 16")
 * then that many bytes, or what is left. */
static aero_str take_str(struct input *in)
{
    size_t len = (size_t)take_u64(in, 1);
    if (len == 255)
        len += (size_t)take_u64(in, 1) * 16;
    if (len > in->left)
        len = in->left;
    aero_str s = {(const char *)in->p, len};
    in->p += len;
    in->left -= len;
    return s;
}

/* ------------------------------------------------- a strict validator */

struct json {
    const unsigned char *p, *end;
    int depth;
};

static bool value(struct json *j);

static void ws(struct json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool lit(struct json *j, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
        return false;
    j->p += n;
    return true;
}

static bool hex4(struct json *j, unsigned *out)
{
    *out = 0;
    for (int i = 0; i < 4; i++, j->p++) {
        if (j->p >= j->end)
            return false;
        unsigned c = *j->p, d = c >= '0' && c <= '9'   ? c - '0'
                                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                       : 16;
        if (d == 16)
            return false;
        *out = *out << 4 | d;
    }
    return true;
}

/* One UTF-8 sequence, shortest form, no surrogates, <= U+10FFFF. */
static bool utf8(struct json *j)
{
    unsigned c = *j->p, n, cp;
    if (c < 0x80) {
        j->p++;
        return true;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 1;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3;
        cp = c & 0x07;
    } else {
        return false;
    }
    if ((size_t)(j->end - j->p) <= n)
        return false;
    for (unsigned i = 1; i <= n; i++) {
        if ((j->p[i] & 0xc0) != 0x80)
            return false;
        cp = cp << 6 | (j->p[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return false;
    j->p += n + 1;
    return true;
}

static bool string(struct json *j)
{
    if (j->p >= j->end || *j->p != '"')
        return false;
    j->p++;
    while (j->p < j->end) {
        unsigned c = *j->p;
        if (c == '"') {
            j->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c != '\\') {
            if (!utf8(j))
                return false;
            continue;
        }
        if (++j->p >= j->end)
            return false;
        c = *j->p++;
        if (c == 'u') {
            unsigned u, lo;
            if (!hex4(j, &u))
                return false;
            if (u >= 0xdc00 && u <= 0xdfff)
                return false; /* a lone low surrogate */
            if (u >= 0xd800 && u <= 0xdbff &&
                !(lit(j, "\\u") && hex4(j, &lo) && lo >= 0xdc00 && lo <= 0xdfff))
                return false;
        } else if (!strchr("\"\\/bfnrt", (int)c) || c == 0) {
            return false;
        }
    }
    return false;
}

static bool digits(struct json *j)
{
    const unsigned char *start = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return j->p > start;
}

static bool number(struct json *j)
{
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (!digits(j))
        return false;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!digits(j))
            return false;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!digits(j))
            return false;
    }
    return true;
}

static bool members(struct json *j, char close, bool keyed)
{
    j->p++;
    if (++j->depth > 64)
        return false;
    ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        j->depth--;
        return true;
    }
    for (;;) {
        ws(j);
        if (keyed) {
            if (!string(j))
                return false;
            ws(j);
            if (!lit(j, ":"))
                return false;
        }
        if (!value(j))
            return false;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == close) {
            j->p++;
            j->depth--;
            return true;
        }
        return false;
    }
}

static bool value(struct json *j)
{
    ws(j);
    if (j->p >= j->end)
        return false;
    switch (*j->p) {
    case '{': return members(j, '}', true);
    case '[': return members(j, ']', false);
    case '"': return string(j);
    case 't': return lit(j, "true");
    case 'f': return lit(j, "false");
    case 'n': return lit(j, "null");
    default: return number(j);
    }
}

/* The whole text is exactly one JSON object. */
static bool json_object(const char *s, size_t n)
{
    struct json j = {(const unsigned char *)s, (const unsigned char *)s + n, 0};
    ws(&j);
    if (j.p >= j.end || *j.p != '{' || !value(&j))
        return false;
    ws(&j);
    return j.p == j.end;
}

/* ----------------------------------------------------------- target */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static aero_kv fields[MAX_FIELDS];
    struct input in = {data, size};
    aero_frame f = {.size = sizeof(f)};
    uint64_t bits;

    f.seq = take_u64(&in, 8);
    f.sent_at_unix_ns = (int64_t)take_u64(&in, 8);
    bits = take_u64(&in, 8); /* any double: NaN, infinities, subnormals */
    memcpy(&f.device_timestamp_sec, &bits, sizeof(bits));
    f.msg_id = (uint32_t)take_u64(&in, 4);
    f.received_unix_ns = (int64_t)take_u64(&in, 8);
    f.agent_id = take_str(&in);
    f.session_id = take_str(&in);
    f.msg_name = take_str(&in);
    f.dialect = take_str(&in);
    f.flight_id = take_str(&in);
    f.raw_mavlink = take_str(&in);
    while (in.left > 0 && f.n_fields < MAX_FIELDS) {
        fields[f.n_fields].key = take_str(&in);
        fields[f.n_fields].value = take_str(&in);
        f.n_fields++;
    }
    f.fields = fields;

    size_t bound = envelope_json_bound(&f);
    char *buf = malloc(bound);
    check(buf != NULL);
    size_t n = envelope_json_encode(&f, buf, bound);
    check(n + 1 <= bound);
    check(buf[n] == '\0' && strlen(buf) == n);
    check(json_object(buf, n));

    /* snprintf contract: a short buffer gets the same full length back and
     * stays NUL-terminated inside its capacity, holding a prefix (the
     * header promises nothing more of a truncated encoding). */
    size_t cap = (size ? data[size - 1] : 0) % n + 1; /* 1..n */
    char *part = malloc(cap);
    check(part != NULL);
    check(envelope_json_encode(&f, part, cap) == n);
    check(memchr(part, '\0', cap) != NULL && memcmp(part, buf, strlen(part)) == 0);
    free(part);
    free(buf);
    return 0;
}
