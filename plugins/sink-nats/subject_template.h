/*
 * subject_template.h - the `subject` key of sink-nats: a NATS subject with
 * {agent_id}, {msg_name}, {flight_id} and {dialect} placeholders, checked
 * once at create() and rendered per frame with every substituted value made
 * a valid subject token. Pure functions: no threads, no I/O, no libnats.
 */
#ifndef SINK_NATS_SUBJECT_TEMPLATE_H
#define SINK_NATS_SUBJECT_TEMPLATE_H

#include <aeroarc/plugin.h>

#include <stddef.h>

/* Longest template accepted, in bytes. Rendered subjects stay far below
 * the server's control-line limit (4 KiB) with the relay's field limits. */
#define SUBJECT_TEMPLATE_MAX 512

enum subject_field {
    SUBJECT_LITERAL = 0,
    SUBJECT_AGENT_ID,
    SUBJECT_MSG_NAME,
    SUBJECT_FLIGHT_ID,
    SUBJECT_DIALECT,
};

struct subject_part {
    enum subject_field field;
    const char *text; /* SUBJECT_LITERAL: points into the template's copy */
    size_t len;
};

struct subject_template {
    char *text;                 /* owned copy of the template */
    struct subject_part *parts; /* owned */
    size_t n_parts;
};

/*
 * Parse and check `tmpl`. Rules: 1..SUBJECT_TEMPLATE_MAX bytes; tokens
 * (split at '.') non-empty; literal bytes printable ASCII other than '*'
 * and '>' (a subject to publish to has no wildcards); '{' only opens one of
 * the four placeholders. Returns 0, -EINVAL with a one-line reason in err,
 * or -ENOMEM. On failure *t holds nothing to free.
 */
int subject_template_parse(struct subject_template *t, const char *tmpl,
                           char *err, size_t errlen);

/* Frees what parse allocated; a zeroed template is fine. */
void subject_template_free(struct subject_template *t);

/*
 * Render the subject of `f` into buf[0..cap) like snprintf: returns the
 * length the subject needs (without the NUL); when that is >= cap the
 * buffer holds nothing useful. Each substituted value has '.', '*', '>',
 * space, control and non-ASCII bytes replaced by '_', and an empty value
 * becomes "_", so a value never adds, removes or wildcards a token.
 */
size_t subject_template_render(const struct subject_template *t,
                               const aero_frame *f, char *buf, size_t cap);

/*
 * The subject filter a stream needs to capture every rendered subject: the
 * tokens before the first one holding a placeholder, then ".>" ("telemetry.>"
 * for "telemetry.{agent_id}.{msg_name}"), or the template itself when it has
 * no placeholder. Returns 0, -EINVAL when the first token holds a
 * placeholder (only ">" would cover it), -ENAMETOOLONG when cap is short.
 */
int subject_template_filter(const struct subject_template *t, char *buf,
                            size_t cap);

#endif
