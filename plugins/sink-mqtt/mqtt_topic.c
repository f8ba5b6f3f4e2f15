/*
 * mqtt_topic.c - compiles the sink-mqtt topic template into literal and
 * placeholder parts (create, main thread) and renders a frame's topic from
 * them (sink thread). Substituted values are made safe here, so whatever
 * bytes an agent sends, the topic is valid UTF-8 that mosquitto_publish
 * accepts and has exactly the levels the template has. No globals.
 */
#include "mqtt_topic.h"

#include "frame_ext.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum part_kind {
    PART_LITERAL,
    PART_AGENT_ID,
    PART_MSG_NAME,
    PART_MSG_ID,
    PART_FLIGHT_ID,
    PART_SESSION_ID,
    PART_DIALECT,
    PART_RELAY_ID,
    PART_INSTANCE,
    PART_PROTOCOL,
    PART_WAL_ID,
    PART_INTENT_ID,
    PART_INTENT_VERSION,
    PART_OPERATOR_ID,
    PART_AIRCRAFT_ID,
};

static const struct {
    const char *name;
    enum part_kind kind;
} PLACEHOLDERS[] = {
    {"agent_id", PART_AGENT_ID},     {"msg_name", PART_MSG_NAME},
    {"msg_id", PART_MSG_ID},         {"flight_id", PART_FLIGHT_ID},
    {"session_id", PART_SESSION_ID}, {"dialect", PART_DIALECT},
    {"relay_id", PART_RELAY_ID},     {"instance", PART_INSTANCE},
    {"protocol", PART_PROTOCOL},     {"wal_id", PART_WAL_ID},
    {"intent_id", PART_INTENT_ID},   {"intent_version", PART_INTENT_VERSION},
    {"operator_id", PART_OPERATOR_ID}, {"aircraft_id", PART_AIRCRAFT_ID},
};

struct part {
    enum part_kind kind;
    const char *text; /* PART_LITERAL: into mqtt_topic.tmpl */
    size_t len;
};

struct mqtt_topic {
    char *tmpl;       /* owned copy the literal parts point into */
    char *relay_id;   /* owned copies */
    char *instance;
    struct part *parts;
    size_t n_parts;
};

/*
 * Length of the UTF-8 sequence at p (1-4) if it is well formed (shortest
 * form, no surrogates, at most U+10FFFF), its code point in *cp; 0 when the
 * byte at p starts no valid sequence.
 */
static size_t utf8_next(const unsigned char *p, size_t len, uint32_t *cp)
{
    uint32_t c = p[0];
    size_t n;
    uint32_t min;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, min = 0x80, c &= 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, min = 0x800, c &= 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return n;
}

/* What mosquitto_validate_utf8 refuses in a well-formed topic: C0 and C1
 * controls (NUL included) and the Unicode non-characters. */
static int code_point_refused(uint32_t cp)
{
    return cp <= 0x1F || (cp >= 0x7F && cp <= 0x9F) ||
           (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE;
}

/* Appends len bytes at buf[*o] if they fit; *o always grows (snprintf
 * style, so the caller learns the size it needs). */
static void put(char *buf, size_t cap, size_t *o, const char *s, size_t len)
{
    if (*o < cap && cap - *o > len)
        memcpy(buf + *o, s, len);
    *o += len;
}

static void sanitise(const char *in, size_t len, char *buf, size_t cap,
                     size_t *o)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t i = 0;

    while (i < len) {
        uint32_t cp;
        size_t n = utf8_next(p + i, len - i, &cp);
        if (n == 0) { /* one '_' per byte that starts no valid character */
            put(buf, cap, o, "_", 1);
            i++;
            continue;
        }
        if (code_point_refused(cp) || cp == '+' || cp == '#' || cp == '/')
            put(buf, cap, o, "_", 1);
        else
            put(buf, cap, o, in + i, n);
        i += n;
    }
}

static void set_err(char *err, size_t errlen, const char *fmt, const char *arg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, fmt, arg);
}

/* The literal text must be publishable as it is: we never rewrite what the
 * operator wrote, we refuse it at start-up instead. */
static int literal_valid(const char *s, size_t len, char *err, size_t errlen)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_next(p + i, len - i, &cp);
        if (n == 0 || code_point_refused(cp)) {
            set_err(err, errlen, "%s", "invalid UTF-8 or a control "
                    "character in the template");
            return -EINVAL;
        }
        if (cp == '+' || cp == '#') {
            set_err(err, errlen, "%s", "'+' and '#' are subscription "
                    "wildcards and cannot appear in a published topic");
            return -EINVAL;
        }
        i += n;
    }
    return 0;
}

static int add_part(struct mqtt_topic *t, enum part_kind kind,
                    const char *text, size_t len)
{
    struct part *p = realloc(t->parts, (t->n_parts + 1) * sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    t->parts = p;
    t->parts[t->n_parts++] = (struct part){kind, text, len};
    return 0;
}

static int parse(struct mqtt_topic *t, char *err, size_t errlen)
{
    const char *s = t->tmpl;
    int rc;

    while (*s) {
        const char *open = strchr(s, '{');
        size_t lit = open ? (size_t)(open - s) : strlen(s);
        if (lit > 0) {
            if ((rc = literal_valid(s, lit, err, errlen)) != 0 ||
                (rc = add_part(t, PART_LITERAL, s, lit)) != 0)
                return rc;
        }
        if (open == NULL)
            break;
        const char *close = strchr(open, '}');
        if (close == NULL) {
            set_err(err, errlen, "unclosed '{' in \"%s\"", t->tmpl);
            return -EINVAL;
        }
        size_t nlen = (size_t)(close - open - 1);
        size_t k = 0;
        while (k < sizeof(PLACEHOLDERS) / sizeof(PLACEHOLDERS[0]) &&
               !(strlen(PLACEHOLDERS[k].name) == nlen &&
                 strncmp(PLACEHOLDERS[k].name, open + 1, nlen) == 0))
            k++;
        if (k == sizeof(PLACEHOLDERS) / sizeof(PLACEHOLDERS[0])) {
            set_err(err, errlen, "unknown placeholder in \"%s\" "
                    "(valid: {agent_id} {msg_name} {msg_id} {flight_id} "
                    "{session_id} {dialect} {relay_id} {instance} {protocol} "
                    "{wal_id} {intent_id} {intent_version} {operator_id} "
                    "{aircraft_id})", t->tmpl);
            return -EINVAL;
        }
        if ((rc = add_part(t, PLACEHOLDERS[k].kind, NULL, 0)) != 0)
            return rc;
        s = close + 1;
    }
    if (t->n_parts == 0) {
        set_err(err, errlen, "%s", "must not be empty");
        return -EINVAL;
    }
    return 0;
}

int mqtt_topic_compile(const char *tmpl, const char *relay_id,
                       const char *instance, struct mqtt_topic **out,
                       char *err, size_t errlen)
{
    int rc = -ENOMEM;
    struct mqtt_topic *t = calloc(1, sizeof(*t));

    *out = NULL;
    if (t == NULL)
        goto fail;
    t->tmpl = strdup(tmpl);
    t->relay_id = strdup(relay_id ? relay_id : "");
    t->instance = strdup(instance ? instance : "");
    if (t->tmpl == NULL || t->relay_id == NULL || t->instance == NULL)
        goto fail;
    if ((rc = parse(t, err, errlen)) != 0)
        goto fail;
    *out = t;
    return 0;
fail:
    if (rc == -ENOMEM)
        set_err(err, errlen, "%s", "out of memory");
    mqtt_topic_free(t);
    return rc;
}

size_t mqtt_topic_render(const struct mqtt_topic *t, const aero_frame *f,
                         char *buf, size_t cap)
{
    size_t o = 0;
    struct frame_ext x = frame_ext_of(f);
    const char *proto = frame_ext_protocol_name(x.protocol);

    for (size_t i = 0; i < t->n_parts; i++) {
        const struct part *p = &t->parts[i];
        char num[16];
        switch (p->kind) {
        case PART_LITERAL:
            put(buf, cap, &o, p->text, p->len);
            break;
        case PART_AGENT_ID:
            sanitise(f->agent_id.ptr, f->agent_id.len, buf, cap, &o);
            break;
        case PART_MSG_NAME:
            sanitise(f->msg_name.ptr, f->msg_name.len, buf, cap, &o);
            break;
        case PART_MSG_ID:
            put(buf, cap, &o, num,
                (size_t)snprintf(num, sizeof(num), "%" PRIu32, f->msg_id));
            break;
        case PART_FLIGHT_ID:
            sanitise(f->flight_id.ptr, f->flight_id.len, buf, cap, &o);
            break;
        case PART_SESSION_ID:
            sanitise(f->session_id.ptr, f->session_id.len, buf, cap, &o);
            break;
        case PART_DIALECT:
            sanitise(f->dialect.ptr, f->dialect.len, buf, cap, &o);
            break;
        case PART_RELAY_ID:
            sanitise(t->relay_id, strlen(t->relay_id), buf, cap, &o);
            break;
        case PART_INSTANCE:
            sanitise(t->instance, strlen(t->instance), buf, cap, &o);
            break;
        case PART_PROTOCOL:
            put(buf, cap, &o, proto, strlen(proto));
            break;
        case PART_WAL_ID:
            sanitise(x.wal_id.ptr, x.wal_id.len, buf, cap, &o);
            break;
        case PART_INTENT_ID:
            sanitise(x.intent_id.ptr, x.intent_id.len, buf, cap, &o);
            break;
        case PART_INTENT_VERSION:
            put(buf, cap, &o, num,
                (size_t)snprintf(num, sizeof(num), "%" PRIu32, x.intent_version));
            break;
        case PART_OPERATOR_ID:
            sanitise(x.operator_id.ptr, x.operator_id.len, buf, cap, &o);
            break;
        case PART_AIRCRAFT_ID:
            sanitise(x.aircraft_id.ptr, x.aircraft_id.len, buf, cap, &o);
            break;
        }
    }
    if (o < cap)
        buf[o] = '\0';
    return o;
}

void mqtt_topic_free(struct mqtt_topic *t)
{
    if (t == NULL)
        return;
    free(t->tmpl);
    free(t->relay_id);
    free(t->instance);
    free(t->parts);
    free(t);
}
