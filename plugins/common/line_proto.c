/*
 * line_proto.c - see line_proto.h: the escaping rules of InfluxDB line
 * protocol, written once for both InfluxDB sinks.
 */
#include "line_proto.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char REPLACEMENT[] = "\xEF\xBF\xBD"; /* U+FFFD */

int lp_reserve(struct lp_buf *b, size_t more)
{
    if (b->cap - b->len >= more)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int lp_put(struct lp_buf *b, const char *s, size_t n)
{
    if (lp_reserve(b, n) != 0)
        return -ENOMEM;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

int lp_puts(struct lp_buf *b, const char *s)
{
    return lp_put(b, s, strlen(s));
}

size_t lp_utf8_len(const unsigned char *p, size_t len)
{
    uint32_t c = p[0], min;
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, min = 0x80, c &= 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, min = 0x800, c &= 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, min = 0x10000, c &= 0x07;
    else
        return 0;
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    return n;
}

/* Whether the ASCII byte c becomes U+FFFD inside a string field. */
static int string_replaced(unsigned char c, enum lp_element e)
{
    return e == LP_STRING_V1 ? c == '\0' : (c == '\r' || c == '\n');
}

int lp_put_escaped(struct lp_buf *b, const char *s, size_t len, enum lp_element e)
{
    const unsigned char *p = (const unsigned char *)s;
    int string = e == LP_STRING_V1 || e == LP_STRING_V3;
    /* Worst case: every byte becomes U+FFFD (3 bytes). */
    if (len > SIZE_MAX / 3 - 1 || lp_reserve(b, len * 3) != 0)
        return -ENOMEM;
    for (size_t i = 0; i < len;) {
        size_t n = lp_utf8_len(p + i, len - i);
        unsigned char c = p[i];
        if (n == 0 || (n == 1 && string && string_replaced(c, e))) {
            memcpy(b->p + b->len, REPLACEMENT, 3);
            b->len += 3;
            i++;
            continue;
        }
        if (n > 1) {
            memcpy(b->p + b->len, s + i, n);
            b->len += n;
            i += n;
            continue;
        }
        i++;
        if (string) {
            if (c == '"' || c == '\\')
                b->p[b->len++] = '\\';
            b->p[b->len++] = (char)c;
            continue;
        }
        if (c < 0x20 || c == 0x7F || c == '\\' || (e == LP_MEASUREMENT && c == '#' && i == 1)) {
            b->p[b->len++] = '_';
            continue;
        }
        if (c == ',' || c == ' ' || (c == '=' && e != LP_MEASUREMENT))
            b->p[b->len++] = '\\';
        b->p[b->len++] = (char)c;
    }
    return 0;
}
