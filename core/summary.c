/*
 * summary.c - the periodic summary line (summary.h). Reads counters only
 * (lock-free metrics_value); keeps the previous sample to show the change.
 * Main thread only; never on a hot path.
 */
#include "summary.h"

#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sink_series {
    aero_metric *enqueued, *errors, *rejected, *queue_len;
};

struct summary {
    const struct settings *st; /* the sinks' names and queues */
    struct metrics *m;
    int64_t interval_ns;
    aero_metric *frames, *acks[4];
    struct sink_series *sinks;
    struct summary_sample prev, cur;
};

static const char *const ack_names[4] = {"ok", "temporary_error", "permanent_error",
                                         "retry_with_backoff"};

/* The series another module registered (same name, labels, type): the
 * registry hands back the existing one. */
static aero_metric *series(struct metrics *m, aero_metric_type type, const char *name,
                           const char *labels)
{
    return metrics_register(m, type, name, "", labels);
}

static void read_sample(struct summary *s, struct summary_sample *out, int64_t now_ns)
{
    out->at_ns = now_ns;
    out->frames = metrics_value(s->frames);
    for (int i = 0; i < 4; i++)
        out->acks[i] = metrics_value(s->acks[i]);
    for (size_t i = 0; i < out->n_sinks; i++) {
        struct summary_sink_sample *k = &out->sinks[i];
        k->enqueued = metrics_value(s->sinks[i].enqueued);
        k->errors = metrics_value(s->sinks[i].errors);
        k->rejected = metrics_value(s->sinks[i].rejected);
        k->queue_len = metrics_value(s->sinks[i].queue_len);
    }
}

/* The sinks of st's [sink:*] sections, their series looked up; s->prev
 * read now. -1 out of memory (s unchanged). */
static int use_sinks(struct summary *s, const struct settings *st, int64_t now_ns)
{
    size_t n = st->n_sinks ? st->n_sinks : 1;
    struct sink_series *series_of = calloc(n, sizeof(*series_of));
    struct summary_sink_sample *prev = calloc(n, sizeof(*prev)), *cur = calloc(n, sizeof(*cur));
    if (!series_of || !prev || !cur) {
        free(series_of);
        free(prev);
        free(cur);
        return -1;
    }
    for (size_t i = 0; i < st->n_sinks; i++) {
        char label[256];
        metrics_sink_labels(label, sizeof(label), st->sinks[i].name, st->sinks[i].plugin);
        series_of[i] = (struct sink_series){
            series(s->m, AERO_METRIC_COUNTER, "aero_sink_enqueued_total", label),
            series(s->m, AERO_METRIC_COUNTER, "aero_sink_errors_total", label),
            series(s->m, AERO_METRIC_COUNTER, "aero_sink_rejected_total", label),
            series(s->m, AERO_METRIC_GAUGE, "aero_sink_queue_length", label)};
    }
    free(s->sinks);
    free(s->prev.sinks);
    free(s->cur.sinks);
    s->sinks = series_of;
    s->prev.sinks = prev;
    s->cur.sinks = cur;
    s->st = st;
    s->prev.n_sinks = s->cur.n_sinks = st->n_sinks;
    read_sample(s, &s->prev, now_ns);
    return 0;
}

struct summary *summary_create(const struct settings *st, struct metrics *m, int64_t now_ns)
{
    if (st->log_summary_interval_s <= 0)
        return NULL;
    struct summary *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->m = m;
    s->interval_ns = st->log_summary_interval_s * INT64_C(1000000000);
    s->frames = series(m, AERO_METRIC_COUNTER, "aero_relay_frames_accepted_total", NULL);
    for (int i = 0; i < 4; i++) {
        char label[64];
        snprintf(label, sizeof(label), "status=\"%s\"", ack_names[i]);
        s->acks[i] = series(m, AERO_METRIC_COUNTER, "aero_relay_acks_total", label);
    }
    if (use_sinks(s, st, now_ns) < 0) {
        summary_destroy(s);
        return NULL;
    }
    return s;
}

void summary_set_sinks(struct summary *s, const struct settings *st, int64_t now_ns)
{
    if (s && use_sinks(s, st, now_ns) < 0)
        log_warn("summary: out of memory; the summary line keeps the sinks it had");
}

void summary_destroy(struct summary *s)
{
    if (!s)
        return;
    free(s->sinks);
    free(s->prev.sinks);
    free(s->cur.sinks);
    free(s);
}

/* snprintf at buf + *used, never past cap. */
static void append(char *buf, size_t cap, size_t *used, const char *fmt, ...)
    AERO_PRINTF(4, 5);
static void append(char *buf, size_t cap, size_t *used, const char *fmt, ...)
{
    if (*used >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, cap - *used, fmt, ap);
    va_end(ap);
    *used += n > 0 ? (size_t)n : 0;
}

/*
 * A sink over the interval: ok (it refused nothing), failing (it took no
 * frame: each one it was given it refused, or its full queue did),
 * degraded (some of each).
 */
static void format_sink(const struct sink_settings *k, const struct summary_sink_sample *a,
                        const struct summary_sink_sample *b, bool first, char *buf,
                        size_t cap, size_t *used)
{
    int64_t given = b->enqueued - a->enqueued, refused = b->errors - a->errors;
    int64_t full = b->rejected - a->rejected;
    const char *state = refused <= 0 && full <= 0 ? "ok"
                        : given - refused <= 0    ? "failing"
                                                  : "degraded";
    append(buf, cap, used, "%ssink %s %s", first ? " " : ", ", k->name, state);
    if (refused > 0)
        append(buf, cap, used, ": %lld of %lld frames refused", (long long)refused,
               (long long)given);
    if (full > 0)
        append(buf, cap, used, "%s %lld refused with the queue full", refused > 0 ? "," : ":",
               (long long)full);
    append(buf, cap, used, " (queue %lld/%zu)", (long long)b->queue_len, k->queue);
}

void summary_format(const struct settings *st, const struct summary_sample *prev,
                    const struct summary_sample *cur, char *buf, size_t cap)
{
    size_t used = 0;
    double secs = (double)(cur->at_ns - prev->at_ns) / 1e9;
    int64_t frames = cur->frames - prev->frames;

    buf[0] = '\0';
    append(buf, cap, &used, "summary, last %.0f s: %zu session(s), %zu stream(s); %.1f frames/s "
                            "(%lld); acks",
           secs, cur->sessions, cur->streams, secs > 0 ? (double)frames / secs : 0.0,
           (long long)frames);
    for (int i = 0; i < 4; i++)
        append(buf, cap, &used, "%s %s %lld", i ? "," : "", ack_names[i],
               (long long)(cur->acks[i] - prev->acks[i]));
    append(buf, cap, &used, ";");
    if (cur->n_sinks == 0)
        append(buf, cap, &used, " no sink (allow_no_sinks)");
    for (size_t i = 0; i < cur->n_sinks && i < st->n_sinks; i++)
        format_sink(&st->sinks[i], &prev->sinks[i], &cur->sinks[i], i == 0, buf, cap, &used);
}

void summary_tick(struct summary *s, int64_t now_ns, size_t sessions, size_t streams)
{
    if (!s || now_ns - s->prev.at_ns < s->interval_ns)
        return;
    read_sample(s, &s->cur, now_ns);
    s->cur.sessions = sessions;
    s->cur.streams = streams;
    char line[4096];
    summary_format(s->st, &s->prev, &s->cur, line, sizeof(line));
    log_info("%s", line);
    struct summary_sink_sample *spare = s->prev.sinks;
    s->prev = s->cur;
    s->cur.sinks = spare;
}
