/*
 * line_proto.h - InfluxDB line protocol's byte level, shared by
 * sink-influxdb (1.x) and sink-influxdb3: a growable buffer, UTF-8 repair
 * and the escaping each element of a line needs. What goes into a line is
 * each sink's own business. Pure functions; no threads, no globals.
 * Compiled into each plugin that uses it (plugins link no core symbol).
 */
#ifndef AERO_PLUGIN_LINE_PROTO_H
#define AERO_PLUGIN_LINE_PROTO_H

#include <stddef.h>

/* A growable byte buffer (owned by whoever holds it; free(p)). */
struct lp_buf {
    char *p;
    size_t len, cap;
};

/* Which element of a line a string goes to: they escape differently. */
enum lp_element {
    /* Measurement, tag key or value, field key: ',' and ' ' get '\' (and
     * '=' too, except in the measurement); control characters and '\'
     * become '_' (line protocol has no escape for them), and so does a
     * leading '#' of the measurement (it would make the line a comment). */
    LP_MEASUREMENT,
    LP_TAG,
    LP_FIELD_KEY,
    /* A string field value, between the quotes: '"' and '\' get '\'.
     * LP_STRING_V1: NUL becomes U+FFFD (InfluxDB 1.x's scanner takes it
     * for a blank). LP_STRING_V3: each CR and each LF becomes U+FFFD (SPEC
     * 13.9 rule 5); TAB, NUL and the rest are written as they are. */
    LP_STRING_V1,
    LP_STRING_V3,
};

/* Room for `more` bytes after b->len: 0 or -ENOMEM. */
int lp_reserve(struct lp_buf *b, size_t more);

/* Appends s[0..n): 0 or -ENOMEM. */
int lp_put(struct lp_buf *b, const char *s, size_t n);

/* Appends the NUL-terminated s: 0 or -ENOMEM. */
int lp_puts(struct lp_buf *b, const char *s);

/* Length of the well-formed UTF-8 sequence at p[0..len) (shortest form, no
 * surrogates, <= U+10FFFF), or 0 if p starts none. len > 0. */
size_t lp_utf8_len(const unsigned char *p, size_t len);

/* Appends s[0..len) escaped for element e; invalid UTF-8 becomes U+FFFD
 * whatever the element. 0 or -ENOMEM. */
int lp_put_escaped(struct lp_buf *b, const char *s, size_t len, enum lp_element e);

#endif
