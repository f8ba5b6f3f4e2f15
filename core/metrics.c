/*
 * metrics.c - the metric registry. Registration (start-up, any thread) takes
 * a lock; updates are relaxed atomics and never lock, so the frame path never
 * waits on a scrape. Series live until metrics_destroy.
 */
#include "metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct aero_metric {
    struct aero_metric *next;
    char *name, *help, *labels;
    aero_metric_type type;
    _Atomic int64_t value;
};

struct metrics {
    pthread_mutex_t mu;
    struct aero_metric *head, *tail; /* registration order: groups stay stable */
};

struct metrics *metrics_create(void)
{
    struct metrics *m = calloc(1, sizeof(*m));
    if (m)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

void metrics_destroy(struct metrics *m)
{
    if (!m)
        return;
    for (struct aero_metric *s = m->head, *next; s; s = next) {
        next = s->next;
        free(s->name);
        free(s->help);
        free(s->labels);
        free(s);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

int metrics_name_valid(const char *name)
{
    if (!name || !*name || (*name >= '0' && *name <= '9'))
        return 0;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == ':'))
            return 0;
    }
    return 1;
}

static int same_labels(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

aero_metric *metrics_register(struct metrics *m, aero_metric_type type, const char *name,
                              const char *help, const char *labels)
{
    if (!metrics_name_valid(name) ||
        (type != AERO_METRIC_COUNTER && type != AERO_METRIC_GAUGE))
        return NULL;
    pthread_mutex_lock(&m->mu);
    struct aero_metric *found = NULL;
    for (struct aero_metric *s = m->head; s; s = s->next) {
        if (strcmp(s->name, name) != 0)
            continue;
        if (s->type != type) {
            pthread_mutex_unlock(&m->mu);
            return NULL;
        }
        if (same_labels(s->labels, labels))
            found = s;
    }
    if (!found) {
        found = calloc(1, sizeof(*found));
        if (found) {
            found->name = strdup(name);
            found->help = strdup(help ? help : "");
            found->labels = labels && *labels ? strdup(labels) : NULL;
            found->type = type;
            if (!found->name || !found->help || (labels && *labels && !found->labels)) {
                free(found->name);
                free(found->help);
                free(found->labels);
                free(found);
                found = NULL;
            } else {
                /* Keep series of one name together: insert after the last one. */
                struct aero_metric *after = NULL;
                for (struct aero_metric *s = m->head; s; s = s->next)
                    if (strcmp(s->name, name) == 0)
                        after = s;
                if (after) {
                    found->next = after->next;
                    after->next = found;
                    if (m->tail == after)
                        m->tail = found;
                } else if (m->tail) {
                    m->tail->next = found;
                    m->tail = found;
                } else {
                    m->head = m->tail = found;
                }
            }
        }
    }
    pthread_mutex_unlock(&m->mu);
    return found;
}

void metrics_add(aero_metric *s, uint64_t delta)
{
    if (s)
        atomic_fetch_add_explicit(&s->value, (int64_t)delta, memory_order_relaxed);
}

void metrics_set(aero_metric *s, int64_t value)
{
    if (s)
        atomic_store_explicit(&s->value, value, memory_order_relaxed);
}

int64_t metrics_value(const aero_metric *s)
{
    return s ? atomic_load_explicit(&s->value, memory_order_relaxed) : 0;
}

/* HELP text escapes backslash and newline (exposition format 0.0.4). */
static void put_help(FILE *f, const char *help)
{
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", f);
        else if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
}

int metrics_render(struct metrics *m, char **out, size_t *len)
{
    FILE *f = open_memstream(out, len);
    if (!f)
        return -errno;
    pthread_mutex_lock(&m->mu);
    const char *prev = NULL;
    for (struct aero_metric *s = m->head; s; s = s->next) {
        if (!prev || strcmp(prev, s->name) != 0) {
            fprintf(f, "# HELP %s ", s->name);
            put_help(f, s->help);
            fprintf(f, "\n# TYPE %s %s\n", s->name,
                    s->type == AERO_METRIC_COUNTER ? "counter" : "gauge");
            prev = s->name;
        }
        long long v = (long long)atomic_load_explicit(&s->value, memory_order_relaxed);
        if (s->labels)
            fprintf(f, "%s{%s} %lld\n", s->name, s->labels, v);
        else
            fprintf(f, "%s %lld\n", s->name, v);
    }
    pthread_mutex_unlock(&m->mu);
    return fclose(f) == 0 ? 0 : -EIO;
}
