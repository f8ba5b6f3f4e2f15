/*
 * influx_line.c - encodes frames as InfluxDB 1.x line protocol: escaping
 * (common/line_proto.c) and the number-or-string decision for field
 * values. Called on the sink thread; pure, no globals. The rules (and why)
 * are in influx_line.h and docs/sinks/influxdb.md.
 */
#include "influx_line.h"

#include "frame_ext.h"
#include "line_proto.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* "nan", "-inf", "+Infinity"...: how C and Go print non-finite floats. */
static int non_finite(const char *s, size_t len)
{
    if (len > 0 && (*s == '+' || *s == '-'))
        s++, len--;
    return (len == 3 && (!strncasecmp(s, "nan", 3) || !strncasecmp(s, "inf", 3))) ||
           (len == 8 && !strncasecmp(s, "infinity", 8));
}

/*
 * Whether s is a complete decimal number: [+-]?(d+(.d*)?|.d+)([eE][+-]?d+)?
 * (strtod alone would also take hex, "inf" and leading blanks). *integral:
 * digits only (after the sign).
 */
static int is_number(const char *s, size_t len, int *integral)
{
    size_t i = 0, digits = 0;
    *integral = 1;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (i < len && s[i] == '.') {
        *integral = 0;
        i++;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++, digits++;
    }
    if (digits == 0)
        return 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t exp = 0;
        *integral = 0;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++, exp++;
        if (exp == 0)
            return 0;
    }
    return i == len;
}

/*
 * Appends the field value: a number when v is one InfluxDB can store, a
 * quoted string otherwise. *skip = 1 (nothing appended) for NaN/Inf.
 */
static int put_value(struct lp_buf *b, const char *v, size_t len,
                     enum influx_ints ints, int *skip)
{
    int integral;
    char tmp[64];

    *skip = 0;
    if (non_finite(v, len)) {
        *skip = 1;
        return 0;
    }
    if (len < sizeof(tmp) && is_number(v, len, &integral)) {
        memcpy(tmp, v, len);
        tmp[len] = '\0';
        /* InfluxDB refuses a leading '+'; strtod accepts what is_number did. */
        const char *num = tmp[0] == '+' ? tmp + 1 : tmp;
        if (integral && ints == INFLUX_INTS_INTEGER) {
            char *end;
            errno = 0;
            long long x = strtoll(num, &end, 10);
            if (errno == 0 && *end == '\0') {
                int n = snprintf(tmp, sizeof(tmp), "%lldi", x);
                return lp_put(b, tmp, (size_t)n);
            }
        }
        errno = 0;
        double d = strtod(num, NULL);
        if (errno == 0 && isfinite(d))
            return lp_put(b, num, strlen(num)); /* parses to the same double */
    }
    if (lp_put(b, "\"", 1) != 0 || lp_put_escaped(b, v, len, LP_STRING_V1) != 0)
        return -ENOMEM;
    return lp_put(b, "\"", 1);
}

/* Names that already mean something else in the point: the frame's seq,
 * InfluxDB's time, and every tag or field the sink writes itself (the ABI
 * 1.1 ones whether or not this frame has a value for them, so a frame
 * field's key does not change with the frame). */
static int reserved_key(const aero_str *k)
{
    static const char *const names[] = {
        "seq", "time", "agent_id", "flight_id",
        "protocol", "wal_id", "intent_id", "intent_version",
        "relay_id", "operator_id", "aircraft_id",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (k->len == strlen(names[i]) && memcmp(k->ptr, names[i], k->len) == 0)
            return 1;
    }
    return 0;
}

/* Appends ",<key>=<value>" with value escaped as a tag, when not empty. */
static int put_tag(struct lp_buf *b, const char *key, aero_str v)
{
    if (v.len == 0)
        return 0;
    if (lp_put(b, ",", 1) != 0 || lp_put(b, key, strlen(key)) != 0 ||
        lp_put(b, "=", 1) != 0)
        return -ENOMEM;
    return lp_put_escaped(b, v.ptr, v.len, LP_TAG);
}

/* Appends ",<key>=\"<value>\"" (a string field), when v is not empty. */
static int put_string_field(struct lp_buf *b, const char *key, aero_str v)
{
    if (v.len == 0)
        return 0;
    if (lp_put(b, ",", 1) != 0 || lp_put(b, key, strlen(key)) != 0 ||
        lp_put(b, "=\"", 2) != 0 || lp_put_escaped(b, v.ptr, v.len, LP_STRING_V1) != 0)
        return -ENOMEM;
    return lp_put(b, "\"", 1);
}

/* The fields of the ABI 1.1 frame fields, after seq: intent_version
 * (integer), relay_id and wal_id (strings), each when it has a value. */
static int put_ext_fields(struct lp_buf *b, const struct frame_ext *x)
{
    char tmp[40];
    if (frame_ext_has_intent_version(x)) {
        int n = snprintf(tmp, sizeof(tmp), ",intent_version=%" PRIu32 "i",
                         x->intent_version);
        if (lp_put(b, tmp, (size_t)n) != 0)
            return -ENOMEM;
    }
    if (put_string_field(b, "relay_id", x->relay_id) != 0 ||
        put_string_field(b, "wal_id", x->wal_id) != 0)
        return -ENOMEM;
    return 0;
}

static int put_fields(struct lp_buf *b, const aero_frame *f,
                      enum influx_ints ints)
{
    char tmp[48];
    for (size_t i = 0; i < f->n_fields; i++) {
        const aero_kv *kv = &f->fields[i];
        if (kv->key.len == 0)
            continue; /* line protocol has no empty field key */
        size_t mark = b->len;
        int skip;
        if ((reserved_key(&kv->key) && lp_put(b, "field_", 6) != 0) ||
            lp_put_escaped(b, kv->key.ptr, kv->key.len, LP_FIELD_KEY) != 0 ||
            lp_put(b, "=", 1) != 0 ||
            put_value(b, kv->value.ptr, kv->value.len, ints, &skip) != 0)
            return -ENOMEM;
        if (skip) {
            b->len = mark;
            continue;
        }
        if (lp_put(b, ",", 1) != 0)
            return -ENOMEM;
    }
    int n = snprintf(tmp, sizeof(tmp), "seq=%" PRIu64 "i",
                     f->seq > INT64_MAX ? (uint64_t)INT64_MAX : f->seq);
    return lp_put(b, tmp, (size_t)n);
}

int influx_line_append(struct lp_buf *b, const aero_frame *f,
                       enum influx_ints ints)
{
    size_t start = b->len;
    char tmp[48];

    if (f->msg_name.len > 0) {
        if (lp_put_escaped(b, f->msg_name.ptr, f->msg_name.len, LP_MEASUREMENT) != 0)
            goto fail;
    } else {
        int n = snprintf(tmp, sizeof(tmp), "msg_%" PRIu32, f->msg_id);
        if (lp_put(b, tmp, (size_t)n) != 0)
            goto fail;
    }
    /* Tags in key order (what InfluxDB sorts them into anyway); empty
     * values are left out (line protocol has no empty tag value). */
    struct frame_ext x = frame_ext_of(f);
    aero_str protocol = {frame_ext_protocol_name(x.protocol), 0};
    protocol.len = strlen(protocol.ptr);
    if (put_tag(b, "agent_id", f->agent_id) != 0 ||
        put_tag(b, "aircraft_id", x.aircraft_id) != 0 ||
        put_tag(b, "flight_id", f->flight_id) != 0 ||
        put_tag(b, "intent_id", x.intent_id) != 0 ||
        put_tag(b, "operator_id", x.operator_id) != 0 ||
        put_tag(b, "protocol", protocol) != 0)
        goto fail;
    if (lp_put(b, " ", 1) != 0 || put_fields(b, f, ints) != 0 ||
        put_ext_fields(b, &x) != 0)
        goto fail;
    int64_t ts = f->sent_at_unix_ns;
    if (ts == 0 && AERO_HAS(f, aero_frame, received_unix_ns))
        ts = f->received_unix_ns;
    int n = snprintf(tmp, sizeof(tmp), " %" PRId64 "\n", ts);
    if (lp_put(b, tmp, (size_t)n) != 0)
        goto fail;
    return 0;
fail:
    b->len = start;
    return -ENOMEM;
}
