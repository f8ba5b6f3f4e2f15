/*
 * envelope_json.c - the envelope's JSON encoding: string escaping with UTF-8
 * repair, base64, RFC 3339 times and exact integers. Pure functions called
 * from any thread (sink threads, via aero_host.envelope_json); no allocation,
 * no locale, no printf on the hot path.
 */
#include "envelope_json.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/*
 * Strategy: every writer below is "unchecked": it assumes the caller proved
 * there is room. A public function first compares cap with a cheap upper
 * bound and, when that holds, writes straight into buf in one pass. Only a
 * too-small buffer costs a second pass: measure exactly, then write if the
 * exact length fits after all.
 */

/* Longest number texts: 20 digits of UINT64_MAX, "-9223372036854775808",
 * a double as "%.17g" ("-2.2250738585072014e-308") or "null". */
enum { U64_MAX_CHARS = 20, I64_MAX_CHARS = 20, DOUBLE_MAX_CHARS = 24 };
enum { RFC3339_CHARS = 30 };

/* Every string byte expands to at most 6 bytes ("\u00XX"); an invalid byte
 * to 3 (U+FFFD). Two quotes around. */
#define QUOTE_BOUND(n) (6 * (size_t)(n) + 2)
#define BASE64_LEN(n) ((((size_t)(n) + 2) / 3) * 4)

/* ----------------------------------------------------------- integers */

static const char DIGIT_PAIRS[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Writes v in decimal at out; returns the end. Two digits per division. */
static char *put_u64(char *out, uint64_t v)
{
    char tmp[U64_MAX_CHARS];
    char *p = tmp + sizeof(tmp);

    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        p -= 2;
        memcpy(p, DIGIT_PAIRS + 2 * r, 2);
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, DIGIT_PAIRS + 2 * v, 2);
    } else {
        *--p = (char)('0' + v);
    }
    size_t n = (size_t)(tmp + sizeof(tmp) - p);
    memcpy(out, p, n);
    return out + n;
}

static char *put_i64(char *out, int64_t v)
{
    if (v >= 0)
        return put_u64(out, (uint64_t)v);
    *out++ = '-';
    /* Negate in unsigned arithmetic: INT64_MIN has no positive twin. */
    return put_u64(out, 0 - (uint64_t)v);
}

/* Writes `digits` digits of v, zero-padded (v < 10^digits). */
static char *put_fixed(char *out, uint64_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return out + digits;
}

/* ------------------------------------------------------------- doubles */

static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4,
                               1e5, 1e6, 1e7, 1e8, 1e9};

/*
 * Fast path for the usual device clock (seconds with up to 9 decimals):
 * find the smallest k with m = x*10^k an integer below 2^53 and m/10^k == x.
 * m and 10^k are exact doubles, so "m with the point moved k places" parses
 * (correctly rounded) back to exactly x: short, round-trip-safe text.
 * Returns the end, or NULL when no such k exists.
 */
static char *put_double_fixed(char *out, double x)
{
    double ax = fabs(x);

    for (int k = 0; k < (int)(sizeof(POW10) / sizeof(POW10[0])); k++) {
        double m = ax * POW10[k];
        if (!(m < 9007199254740992.0))
            return NULL;
        if (m != floor(m) || m / POW10[k] != ax)
            continue;
        uint64_t im = (uint64_t)m;
        uint64_t whole = im / (uint64_t)POW10[k];
        if (signbit(x))
            *out++ = '-';
        out = put_u64(out, whole);
        if (k > 0) {
            *out++ = '.';
            out = put_fixed(out, im % (uint64_t)POW10[k], k);
        }
        return out;
    }
    return NULL;
}

/* Any finite double as a JSON number; NaN and infinities as null. */
static char *put_double(char *out, double x)
{
    if (!isfinite(x)) {
        memcpy(out, "null", 4);
        return out + 4;
    }
    char *end = put_double_fixed(out, x);
    if (end != NULL)
        return end;

    /* Rare shapes (1e-300, 1e300, many digits): %.17g always round-trips and
     * never prints inf/nan here. The locale's decimal comma is undone. */
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%.17g", x);
    for (int i = 0; i < n; i++) {
        if (tmp[i] == ',')
            tmp[i] = '.';
    }
    memcpy(out, tmp, (size_t)n);
    return out + n;
}

/* ------------------------------------------------------------- strings */

/* 0: copied as is; 1: escaped; 2: start of a possible UTF-8 sequence. */
static const unsigned char CHAR_CLASS[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50: '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x70: 0x7f raw */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0x80 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0x90 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xa0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xb0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xc0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xd0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xe0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xf0 */
};

/* Escapes for control characters: short forms where JSON has them. */
static const char SHORT_ESCAPE[32] = {
    0, 0, 0, 0, 0, 0, 0, 0, 'b', 't', 'n', 0, 'f', 'r', 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0,   0,   0,   0, 0,   0,   0, 0,
};

static const char HEX[] = "0123456789abcdef";

/*
 * Length of the well-formed UTF-8 sequence at s[0..n) (s[0] >= 0x80), or 0
 * when it is not one: overlong forms, surrogates (U+D800..DFFF), code points
 * above U+10FFFF, stray continuation bytes and truncated sequences all fail
 * (Unicode Table 3-7).
 */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */

    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong below U+0800 */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong below U+10000 */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0; /* 0x80..0xc1 (continuation, overlong 2-byte), 0xf5.. */
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    }
    return len;
}

/* True when none of the 8 bytes of w needs attention: no control char, no
 * '"', no '\\', no byte >= 0x80 (word-at-a-time scan of the common case). */
static int word_is_plain(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t highs = 0x8080808080808080ULL;
    uint64_t lt_space = (w - ones * 0x20) & ~w;
    uint64_t q = w ^ (ones * '"');
    uint64_t bs = w ^ (ones * '\\');
    uint64_t has_q = (q - ones) & ~q;
    uint64_t has_bs = (bs - ones) & ~bs;
    return ((lt_space | has_q | has_bs | w) & highs) == 0;
}

/* Writes the escape or UTF-8 repair for s[*i] (a class 1 or 2 byte) and
 * advances *i past what it consumed. */
static char *put_special(char *out, const unsigned char *s, size_t n, size_t *i)
{
    unsigned c = s[*i];

    if (c < 0x80) {
        *out++ = '\\';
        if (c == '"' || c == '\\') {
            *out++ = (char)c;
        } else if (SHORT_ESCAPE[c]) {
            *out++ = SHORT_ESCAPE[c];
        } else {
            memcpy(out, "u00", 3);
            out[3] = HEX[c >> 4];
            out[4] = HEX[c & 15];
            out += 5;
        }
        *i += 1;
        return out;
    }
    size_t len = utf8_seq_len(s + *i, n - *i);
    if (len == 0) {
        memcpy(out, "\xef\xbf\xbd", 3); /* U+FFFD for this one byte */
        *i += 1;
        return out + 3;
    }
    memcpy(out, s + *i, len);
    *i += len;
    return out + len;
}

/* Unchecked: needs QUOTE_BOUND(n) bytes at out. */
static char *put_quoted(char *out, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    *out++ = '"';
    while (i < n) {
        while (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!word_is_plain(w))
                break;
            memcpy(out, &w, 8);
            out += 8;
            i += 8;
        }
        while (i < n && CHAR_CLASS[s[i]] == 0)
            *out++ = (char)s[i++];
        if (i < n)
            out = put_special(out, s, n, &i);
    }
    *out++ = '"';
    return out;
}

/* Exact length put_quoted would write. */
static size_t quoted_len(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t len = 2;

    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (CHAR_CLASS[c] == 0) {
            len += 1;
            i += 1;
        } else if (c < 0x80) {
            len += (c == '"' || c == '\\' || SHORT_ESCAPE[c]) ? 2 : 6;
            i += 1;
        } else {
            size_t sl = utf8_seq_len(s + i, n - i);
            len += sl ? sl : 3;
            i += sl ? sl : 1;
        }
    }
    return len;
}

/* ------------------------------------------------------------- base64 */

static const char B64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Unchecked: needs BASE64_LEN(n) bytes at out. */
static char *put_base64(char *out, const unsigned char *s, size_t n)
{
    size_t i = 0;

    for (; n - i >= 3; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        out[0] = B64[v >> 18];
        out[1] = B64[(v >> 12) & 63];
        out[2] = B64[(v >> 6) & 63];
        out[3] = B64[v & 63];
        out += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        out[0] = B64[v >> 18];
        out[1] = B64[(v >> 12) & 63];
        out[2] = '=';
        out[3] = '=';
        out += 4;
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        out[0] = B64[v >> 18];
        out[1] = B64[(v >> 12) & 63];
        out[2] = B64[(v >> 6) & 63];
        out[3] = '=';
        out += 4;
    }
    return out;
}

/* --------------------------------------------------------------- time */

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
 * civil_from_days), valid for every int64 nanosecond time. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;

    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static char *put_rfc3339(char *out, int64_t unix_ns)
{
    /* Floor division so times before 1970 keep a positive fraction. */
    int64_t secs = unix_ns / 1000000000;
    int64_t frac = unix_ns % 1000000000;
    if (frac < 0) {
        frac += 1000000000;
        secs -= 1;
    }
    int64_t days = secs / 86400;
    int64_t sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days -= 1;
    }
    int64_t year;
    unsigned month, day;
    civil_from_days(days, &year, &month, &day);

    /* int64 ns spans the years 1677..2262: always four digits. */
    out = put_fixed(out, (uint64_t)year, 4);
    *out++ = '-';
    out = put_fixed(out, month, 2);
    *out++ = '-';
    out = put_fixed(out, day, 2);
    *out++ = 'T';
    out = put_fixed(out, (uint64_t)(sod / 3600), 2);
    *out++ = ':';
    out = put_fixed(out, (uint64_t)(sod / 60 % 60), 2);
    *out++ = ':';
    out = put_fixed(out, (uint64_t)(sod % 60), 2);
    *out++ = '.';
    out = put_fixed(out, (uint64_t)frac, 9);
    *out++ = 'Z';
    return out;
}

/* ----------------------------------------------------------- envelope */

static char *put_lit(char *out, const char *lit, size_t n)
{
    memcpy(out, lit, n);
    return out + n;
}

#define PUT_LIT(out, lit) put_lit((out), (lit), sizeof(lit) - 1)

/* The fixed text of one envelope: keys, quotes, braces, separators. */
#define ENVELOPE_SKELETON                                                     \
    "{\"agent_id\":,\"session_id\":,\"seq\":,\"timestamp_relay\":\"\","      \
    "\"sent_at_unix_ns\":,\"timestamp_device\":,\"msg_id\":,\"msg_name\":,"   \
    "\"dialect\":,\"flight_id\":,\"fields\":{},\"raw_mavlink\":\"\"}"

/* The keys of ABI 1.1, after raw_mavlink (written when the frame has them). */
#define ENVELOPE_SKELETON_1_1                                                 \
    ",\"protocol\":\"\",\"wal_id\":,\"intent_id\":,\"intent_version\":,"        \
    "\"relay_id\":,\"operator_id\":,\"aircraft_id\":"

static bool has_1_1(const aero_frame *f) { return AERO_HAS(f, aero_frame, aircraft_id); }

static const char *protocol_name(aero_protocol p)
{
    return p == AERO_PROTOCOL_MULTIPLEXED ? "multiplexed" : "seed";
}

static char *put_str(char *out, aero_str s)
{
    return put_quoted(out, s.ptr, s.ptr ? s.len : 0);
}

static size_t str_len(aero_str s)
{
    return quoted_len(s.ptr, s.ptr ? s.len : 0);
}

static size_t raw_len(const aero_frame *f)
{
    return f->raw_mavlink.ptr ? f->raw_mavlink.len : 0;
}

/* Unchecked: needs envelope_json_bound(f) - 1 bytes at out. */
static char *put_envelope(char *out, const aero_frame *f)
{
    out = PUT_LIT(out, "{\"agent_id\":");
    out = put_str(out, f->agent_id);
    out = PUT_LIT(out, ",\"session_id\":");
    out = put_str(out, f->session_id);
    out = PUT_LIT(out, ",\"seq\":");
    out = put_u64(out, f->seq);
    out = PUT_LIT(out, ",\"timestamp_relay\":\"");
    out = put_rfc3339(out, f->received_unix_ns);
    out = PUT_LIT(out, "\",\"sent_at_unix_ns\":");
    out = put_i64(out, f->sent_at_unix_ns);
    out = PUT_LIT(out, ",\"timestamp_device\":");
    out = put_double(out, f->device_timestamp_sec);
    out = PUT_LIT(out, ",\"msg_id\":");
    out = put_u64(out, f->msg_id);
    out = PUT_LIT(out, ",\"msg_name\":");
    out = put_str(out, f->msg_name);
    out = PUT_LIT(out, ",\"dialect\":");
    out = put_str(out, f->dialect);
    out = PUT_LIT(out, ",\"flight_id\":");
    out = put_str(out, f->flight_id);
    out = PUT_LIT(out, ",\"fields\":{");
    for (size_t i = 0; i < f->n_fields; i++) {
        if (i > 0)
            *out++ = ',';
        out = put_str(out, f->fields[i].key);
        *out++ = ':';
        out = put_str(out, f->fields[i].value);
    }
    out = PUT_LIT(out, "},\"raw_mavlink\":\"");
    out = put_base64(out, (const unsigned char *)f->raw_mavlink.ptr, raw_len(f));
    out = PUT_LIT(out, "\"");
    if (has_1_1(f)) {
        const char *proto = protocol_name(f->protocol);
        out = PUT_LIT(out, ",\"protocol\":\"");
        out = put_lit(out, proto, strlen(proto));
        out = PUT_LIT(out, "\",\"wal_id\":");
        out = put_str(out, f->wal_id);
        out = PUT_LIT(out, ",\"intent_id\":");
        out = put_str(out, f->intent_id);
        out = PUT_LIT(out, ",\"intent_version\":");
        out = put_u64(out, f->intent_version);
        out = PUT_LIT(out, ",\"relay_id\":");
        out = put_str(out, f->relay_id);
        out = PUT_LIT(out, ",\"operator_id\":");
        out = put_str(out, f->operator_id);
        out = PUT_LIT(out, ",\"aircraft_id\":");
        out = put_str(out, f->aircraft_id);
    }
    *out++ = '}';
    return out;
}

static size_t u64_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Exact length put_envelope writes (the slow path's first pass). */
static size_t envelope_len(const aero_frame *f)
{
    char num[DOUBLE_MAX_CHARS + 8];
    size_t len = sizeof(ENVELOPE_SKELETON) - 1;

    len += str_len(f->agent_id) + str_len(f->session_id);
    len += u64_len(f->seq) + RFC3339_CHARS;
    len += (size_t)(put_i64(num, f->sent_at_unix_ns) - num);
    len += (size_t)(put_double(num, f->device_timestamp_sec) - num);
    len += u64_len(f->msg_id);
    len += str_len(f->msg_name) + str_len(f->dialect) + str_len(f->flight_id);
    for (size_t i = 0; i < f->n_fields; i++) {
        len += (i > 0) + 1; /* ',' between pairs, ':' inside */
        len += str_len(f->fields[i].key) + str_len(f->fields[i].value);
    }
    len += BASE64_LEN(raw_len(f));
    if (has_1_1(f)) {
        len += sizeof(ENVELOPE_SKELETON_1_1) - 1 + strlen(protocol_name(f->protocol));
        len += str_len(f->wal_id) + str_len(f->intent_id) + u64_len(f->intent_version);
        len += str_len(f->relay_id) + str_len(f->operator_id) + str_len(f->aircraft_id);
    }
    return len;
}

size_t envelope_json_bound(const aero_frame *f)
{
    size_t b = sizeof(ENVELOPE_SKELETON) - 1 + 1; /* + NUL */

    b += U64_MAX_CHARS + RFC3339_CHARS + I64_MAX_CHARS + DOUBLE_MAX_CHARS;
    b += 10; /* msg_id: UINT32_MAX */
    b += QUOTE_BOUND(f->agent_id.len) + QUOTE_BOUND(f->session_id.len);
    b += QUOTE_BOUND(f->msg_name.len) + QUOTE_BOUND(f->dialect.len);
    b += QUOTE_BOUND(f->flight_id.len);
    for (size_t i = 0; i < f->n_fields; i++) {
        b += 2 + QUOTE_BOUND(f->fields[i].key.len);
        b += QUOTE_BOUND(f->fields[i].value.len);
    }
    b += BASE64_LEN(f->raw_mavlink.len);
    if (has_1_1(f)) {
        b += sizeof(ENVELOPE_SKELETON_1_1) - 1 + sizeof("multiplexed") - 1 + 10;
        b += QUOTE_BOUND(f->wal_id.len) + QUOTE_BOUND(f->intent_id.len);
        b += QUOTE_BOUND(f->relay_id.len) + QUOTE_BOUND(f->operator_id.len);
        b += QUOTE_BOUND(f->aircraft_id.len);
    }
    return b;
}

/* Shared tail of the snprintf contract: an empty string when it won't fit. */
static size_t too_small(char *buf, size_t cap, size_t need)
{
    if (cap > 0)
        buf[0] = '\0';
    return need;
}

size_t envelope_json_encode(const aero_frame *f, char *buf, size_t cap)
{
    if (cap < envelope_json_bound(f)) {
        size_t need = envelope_len(f);
        if (need >= cap)
            return too_small(buf, cap, need);
    }
    char *end = put_envelope(buf, f);
    *end = '\0';
    return (size_t)(end - buf);
}

size_t envelope_json_quote(const char *s, size_t n, char *buf, size_t cap)
{
    if (s == NULL)
        n = 0;
    if (cap <= QUOTE_BOUND(n)) {
        size_t need = quoted_len(s, n);
        if (need >= cap)
            return too_small(buf, cap, need);
    }
    char *end = put_quoted(buf, s, n);
    *end = '\0';
    return (size_t)(end - buf);
}

size_t envelope_json_base64(const unsigned char *src, size_t n, char *buf, size_t cap)
{
    size_t need = BASE64_LEN(src ? n : 0);

    if (need >= cap)
        return too_small(buf, cap, need);
    char *end = put_base64(buf, src, src ? n : 0);
    *end = '\0';
    return need;
}

size_t envelope_json_rfc3339(int64_t unix_ns, char *buf)
{
    char *end = put_rfc3339(buf, unix_ns);
    *end = '\0';
    return (size_t)(end - buf);
}
