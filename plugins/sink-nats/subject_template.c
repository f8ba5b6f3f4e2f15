/*
 * subject_template.c - parsing, rendering and the stream filter of
 * sink-nats' subject template (see subject_template.h). Called from the
 * main thread (parse, filter) and the sink thread (render); keeps no state
 * outside the template it is given.
 */
#include "subject_template.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name; /* with braces */
    enum subject_field field;
} PLACEHOLDERS[] = {
    {"{agent_id}", SUBJECT_AGENT_ID},
    {"{msg_name}", SUBJECT_MSG_NAME},
    {"{flight_id}", SUBJECT_FLIGHT_ID},
    {"{dialect}", SUBJECT_DIALECT},
};
enum { N_PLACEHOLDERS = sizeof(PLACEHOLDERS) / sizeof(PLACEHOLDERS[0]) };

/* Bytes a literal may hold: printable ASCII, no wildcard. '.' separates
 * tokens and braces are placeholder syntax; both are handled by the caller. */
static int literal_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '*' && c != '>';
}

/* Bytes a substituted value keeps as they are; anything else becomes '_'. */
static int value_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '.' && c != '*' && c != '>';
}

/* The placeholder starting at p, or -1. */
static int placeholder_at(const char *p, size_t *len)
{
    for (int i = 0; i < N_PLACEHOLDERS; i++) {
        size_t n = strlen(PLACEHOLDERS[i].name);
        if (strncmp(p, PLACEHOLDERS[i].name, n) == 0) {
            *len = n;
            return i;
        }
    }
    return -1;
}

static int fail(char *err, size_t errlen, const char *fmt, const char *tmpl,
                size_t at)
{
    char msg[160];
    snprintf(msg, sizeof(msg), fmt, (unsigned char)tmpl[at]);
    snprintf(err, errlen, "%s at byte %zu of \"%.64s%s\"", msg, at + 1, tmpl,
             strlen(tmpl) > 64 ? "..." : "");
    return -EINVAL;
}

int subject_template_parse(struct subject_template *t, const char *tmpl,
                           char *err, size_t errlen)
{
    size_t len = tmpl ? strlen(tmpl) : 0;

    memset(t, 0, sizeof(*t));
    if (len == 0 || len > SUBJECT_TEMPLATE_MAX) {
        snprintf(err, errlen, "must be 1-%d bytes", SUBJECT_TEMPLATE_MAX);
        return -EINVAL;
    }
    /* Check everything before allocating, so failure leaves nothing. */
    size_t n_parts = 0, token_len = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)tmpl[i];
        size_t plen;
        if (c == '.') {
            if (token_len == 0)
                return fail(err, errlen, "empty token before '%c'", tmpl, i);
            token_len = 0;
            n_parts++;
            i++;
        } else if (c == '{') {
            if (placeholder_at(tmpl + i, &plen) < 0)
                return fail(err, errlen, "unknown placeholder at '%c' (known: "
                            "{agent_id} {msg_name} {flight_id} {dialect})",
                            tmpl, i);
            token_len += plen;
            n_parts += 2;
            i += plen;
        } else if (c == '}') {
            return fail(err, errlen, "'%c' closes no placeholder", tmpl, i);
        } else if (!literal_ok(c)) {
            return fail(err, errlen, c == '*' || c == '>'
                        ? "wildcard '%c' not allowed in a subject to publish to"
                        : "invalid byte 0x%02x (subjects are printable ASCII "
                          "without spaces)", tmpl, i);
        } else {
            token_len++;
            i++;
        }
    }
    if (token_len == 0)
        return fail(err, errlen, "empty last token after '%c'", tmpl, len - 1);

    t->text = strdup(tmpl);
    t->parts = calloc(n_parts + 1, sizeof(*t->parts));
    if (t->text == NULL || t->parts == NULL) {
        subject_template_free(t);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* Literal runs (dots included) between placeholders. */
    const char *run = t->text;
    for (const char *p = t->text; *p;) {
        size_t plen;
        int ph = *p == '{' ? placeholder_at(p, &plen) : -1;
        if (ph < 0) {
            p++;
            continue;
        }
        if (p > run)
            t->parts[t->n_parts++] = (struct subject_part){
                .field = SUBJECT_LITERAL, .text = run, .len = (size_t)(p - run)};
        t->parts[t->n_parts++] =
            (struct subject_part){.field = PLACEHOLDERS[ph].field};
        p += plen;
        run = p;
    }
    if (*run)
        t->parts[t->n_parts++] = (struct subject_part){
            .field = SUBJECT_LITERAL, .text = run, .len = strlen(run)};
    return 0;
}

void subject_template_free(struct subject_template *t)
{
    free(t->parts);
    free(t->text);
    memset(t, 0, sizeof(*t));
}

static aero_str field_value(const aero_frame *f, enum subject_field field)
{
    switch (field) {
    case SUBJECT_AGENT_ID:
        return f->agent_id;
    case SUBJECT_MSG_NAME:
        return f->msg_name;
    case SUBJECT_FLIGHT_ID:
        return f->flight_id;
    case SUBJECT_DIALECT:
        return f->dialect;
    case SUBJECT_LITERAL:
        break;
    }
    return (aero_str){NULL, 0};
}

size_t subject_template_render(const struct subject_template *t,
                               const aero_frame *f, char *buf, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < t->n_parts; i++) {
        const struct subject_part *p = &t->parts[i];
        if (p->field == SUBJECT_LITERAL) {
            if (o + p->len < cap)
                memcpy(buf + o, p->text, p->len);
            o += p->len;
            continue;
        }
        aero_str v = field_value(f, p->field);
        if (v.len == 0) {
            if (o + 1 < cap)
                buf[o] = '_';
            o++;
            continue;
        }
        for (size_t k = 0; k < v.len; k++, o++) {
            unsigned char c = (unsigned char)v.ptr[k];
            if (o + 1 < cap)
                buf[o] = value_ok(c) ? (char)c : '_';
        }
    }
    if (o < cap)
        buf[o] = '\0';
    return o;
}

int subject_template_filter(const struct subject_template *t, char *buf,
                            size_t cap)
{
    const char *text = t->text;
    const char *brace = strchr(text, '{');
    int n;

    if (brace == NULL) {
        n = snprintf(buf, cap, "%s", text);
    } else {
        /* Keep the tokens that end before the placeholder's token starts. */
        const char *cut = brace;
        while (cut > text && cut[-1] != '.')
            cut--;
        if (cut == text)
            return -EINVAL;
        n = snprintf(buf, cap, "%.*s>", (int)(cut - text), text);
    }
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}
