/*
 * sink_count.c - an example sink built out of tree: counts frames per
 * msg_name and logs a summary through host->log every interval_s seconds
 * (checked when a batch arrives) and once more when the relay stops.
 * Threads (the rule plugin.h states): check, create and destroy run on the
 * relay's main thread; write_batch (and flush/reopen, which this sink does
 * not need) run on a relay-owned thread, the instance's own or a gRPC
 * thread, never two at once and never with create/destroy, so the instance
 * needs no lock but keeps no thread-local state. No globals: two [sink:*]
 * sections may load it twice. It only reads frames; it never blocks,
 * sleeps or drops. Config is read with the host's typed readers (ABI 1.1).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include <aeroarc/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    /* A linear scan is fine for the few dozen message types a MAVLink
     * dialect sends at once; names beyond this count as "(other)". */
    MAX_NAMES = 64,
    NAME_BYTES = 128,   /* the relay rejects longer msg_names */
    SUMMARY_BYTES = 3072 /* log lines are cut at 4096 bytes anyway */
};

struct name_count {
    char name[NAME_BYTES];
    size_t len;
    uint64_t n;
};

struct sink_count {
    const aero_host *host;
    int64_t interval_ns;       /* 0: summary only at destroy */
    int64_t window_start_ns;   /* CLOCK_MONOTONIC */
    struct name_count names[MAX_NAMES];
    size_t n_names;            /* names seen in this window */
    uint64_t other;            /* frames of names that did not fit */
    uint64_t window;           /* frames in this window */
    uint64_t total;            /* frames since create */
    aero_metric *frames;       /* sink_count_frames_total, or NULL */
};

static const aero_config_key count_keys[] = {
    {.name = "interval_s",
     .type = AERO_KEY_INT,
     .default_value = "60",
     .help = "seconds between summaries (0: one summary when the relay stops)",
     .min = 0,
     .max = 86400},
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* interval_s through the host's typed reader (ABI 1.1): the relay's own
 * integer parser, so the value means here what it meant to --check. A bad
 * value is reported by the host with its relay.ini line; 0 or nonzero. */
static int read_interval(const aero_host *host, int64_t *interval_s)
{
    if (!AERO_HAS(host, aero_host, config_int)) {
        host->log(host, AERO_LOG_ERROR, "sink-count: needs a relay of plugin ABI 1.1 or later");
        return -ENOTSUP;
    }
    *interval_s = 60;
    int rc = host->config_int(host, "interval_s", 0, 86400, interval_s);
    return rc == -ENOENT ? 0 : rc; /* unset: keep the default */
}

/* The check slot: runs before create and under --check. Nothing else to
 * validate here; a sink with cross-key rules would report each broken one
 * with host->config_error(host, "key", "...") and return nonzero. */
static int count_check(const aero_host *host)
{
    int64_t interval_s;
    return read_interval(host, &interval_s);
}

static int count_create(const aero_host *host, void **instance)
{
    int64_t interval_s = 0;
    int rc = read_interval(host, &interval_s);
    if (rc != 0)
        return rc;
    struct sink_count *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        host->log(host, AERO_LOG_ERROR, "sink-count: out of memory");
        return -ENOMEM;
    }
    *instance = s;
    s->host = host;
    s->interval_ns = interval_s * 1000000000;
    s->window_start_ns = mono_ns();
    s->frames = host->metric_register(host, AERO_METRIC_COUNTER, "sink_count_frames_total",
                                      "frames counted by sink-count");
    if (s->interval_ns)
        host->log(host, AERO_LOG_INFO,
                  "sink-count: counting frames per msg_name, a summary every %lld s",
                  (long long)interval_s);
    else
        host->log(host, AERO_LOG_INFO,
                  "sink-count: counting frames per msg_name, a summary when the relay stops");
    return 0;
}

static void count_one(struct sink_count *s, aero_str name)
{
    size_t len = name.len < NAME_BYTES ? name.len : NAME_BYTES;
    for (size_t i = 0; i < s->n_names; i++) {
        if (s->names[i].len == len && memcmp(s->names[i].name, name.ptr, len) == 0) {
            s->names[i].n++;
            return;
        }
    }
    if (s->n_names == MAX_NAMES) {
        s->other++;
        return;
    }
    struct name_count *nc = &s->names[s->n_names++];
    memcpy(nc->name, name.ptr, len); /* the frame's bytes die with the batch */
    nc->len = len;
    nc->n = 1;
}

static int by_count_desc(const void *a, const void *b)
{
    const struct name_count *x = a, *y = b;
    return x->n < y->n ? 1 : x->n > y->n ? -1 : 0;
}

/* Logs "<what>: N frame(s): NAME=n ... (T in total)" and starts a new window. */
static void log_summary(struct sink_count *s, const char *what)
{
    char line[SUMMARY_BYTES];
    size_t used = 0;

    qsort(s->names, s->n_names, sizeof(s->names[0]), by_count_desc);
    for (size_t i = 0; i < s->n_names && used < sizeof(line); i++) {
        const struct name_count *nc = &s->names[i];
        const char *name = nc->len ? nc->name : "(empty)";
        int len = nc->len ? (int)nc->len : (int)strlen(name);
        /* %.*s: the copy is not NUL-terminated; the relay's logger turns
         * bytes that are not UTF-8 into U+FFFD. */
        used += (size_t)snprintf(line + used, sizeof(line) - used, " %.*s=%llu", len, name,
                                 (unsigned long long)nc->n);
    }
    if (s->other && used < sizeof(line))
        snprintf(line + used, sizeof(line) - used, " (other)=%llu", (unsigned long long)s->other);
    else if (used == 0)
        line[0] = '\0';
    s->host->log(s->host, AERO_LOG_INFO, "sink-count: %s: %llu frame(s):%s (%llu in total)", what,
                 (unsigned long long)s->window, line, (unsigned long long)s->total);
    s->n_names = 0;
    s->other = 0;
    s->window = 0;
    s->window_start_ns = mono_ns();
}

static void count_write_batch(void *instance, const aero_frame *const *frames, size_t n,
                              aero_result *results)
{
    struct sink_count *s = instance;
    for (size_t i = 0; i < n; i++) {
        count_one(s, frames[i]->msg_name);
        results[i] = AERO_OK; /* counting cannot fail: every frame is accepted */
    }
    s->window += n;
    s->total += n;
    if (s->frames)
        s->host->metric_add(s->frames, n);
    if (s->interval_ns > 0 && mono_ns() - s->window_start_ns >= s->interval_ns)
        log_summary(s, "last interval");
}

static void count_destroy(void *instance)
{
    struct sink_count *s = instance;
    if (s == NULL)
        return;
    if (s->host) /* NULL only if create() failed before setting it */
        log_summary(s, "final");
    free(s);
}

static const aero_sink_vtable count_vtable = {
    .size = sizeof(aero_sink_vtable),
    AERO_KEYS(count_keys),
    .create = count_create,
    .write_batch = count_write_batch,
    .flush = NULL,  /* nothing buffered */
    .reopen = NULL, /* no files */
    .destroy = count_destroy,
    .check = count_check, /* Since ABI 1.1 */
};

static const aero_plugin_descriptor count_descriptor = {
    AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_SINK),
    .name = "sink-count",
    .description = "counts frames per msg_name and logs a summary",
    .vtable = &count_vtable,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void)
{
    return &count_descriptor;
}
