/*
 * sink_influxdb.c - the sink-influxdb plugin: every batch becomes one POST
 * of line protocol to InfluxDB 1.x /write (split when it would exceed
 * max_body_bytes). 2xx: the frames are OK. 400/413 on several lines: the
 * request is bisected to find the lines InfluxDB refuses, which alone get
 * REJECT (InfluxDB writes the good points of a "partial write" and says
 * only how many it dropped, not which). Other 4xx: REJECT the rest of the
 * batch, 429: BACKOFF, 5xx and transport errors: RETRY. Config and the
 * vtable live here; encoding is influx_line.c's, HTTP influx_http.c's.
 * write_batch runs on the sink thread, create/destroy on the main thread.
 */
#include "influx_http.h"
#include "influx_line.h"

#include <aeroarc/plugin.h>

#include "mono_clock.h"
#include "config_check.h"
#include "warn_limit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* After a timeout, batches within this long get RETRY without a request:
 * a hung server then costs one timeout a second, not one per batch. */
enum { PROBE_INTERVAL_MS = 1000 };

static const aero_config_key influx_keys[] = {
    {.name = "url", .type = AERO_KEY_STRING,
     .default_value = "http://127.0.0.1:8086",
     .help = "InfluxDB 1.x base URL, http:// or https:// (/write is appended)"},
    {.name = "database", .type = AERO_KEY_STRING, .required = 1,
     .help = "database to write to (must exist)"},
    {.name = "retention_policy", .type = AERO_KEY_STRING, .default_value = "",
     .help = "retention policy; empty: the database's default"},
    {.name = "username", .type = AERO_KEY_STRING, .default_value = "",
     .help = "user for HTTP basic authentication; empty: none"},
    {.name = "password", .type = AERO_KEY_STRING, .default_value = "",
     .help = "password (needs username)"},
    {.name = "timeout_ms", .type = AERO_KEY_INT, .default_value = "5000",
     .help = "whole request, connecting included; then the frames get "
             "TEMPORARY_ERROR", .min = 100, .max = 600000},
    {.name = "max_body_bytes", .type = AERO_KEY_INT, .default_value = "4194304",
     .help = "a batch larger than this is written in several requests "
             "(InfluxDB refuses bodies over its max-body-size, 25 MB by default)",
     .min = 1024, .max = 268435456},
    {.name = "integers", .type = AERO_KEY_ENUM, .default_value = "float",
     .choices = "float|integer",
     .help = "field values like \"42\": float (no type conflict when the "
             "field later holds 42.5) or integer (42i)"},
    {.name = "tls_ca_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "https: PEM CA certificates to trust; empty: the system's"},
    {.name = "insecure", .type = AERO_KEY_BOOL, .default_value = "false",
     .help = "https without checking the server's certificate (testing only)"},
};

/* What a response means for the lines it carried. */
enum verdict {
    V_OK,      /* 2xx */
    V_BAD,     /* 400/413: some line(s) refused, or the body too large */
    V_REFUSED, /* other 4xx: the request itself (database, auth) */
    V_BUSY,    /* 429: slow down */
    V_DOWN,    /* 5xx, timeout, no connection */
};

struct sink_influx {
    const aero_host *host;
    struct influx_http *http;
    enum influx_ints ints;
    size_t max_body;

    struct lp_buf body; /* the batch's lines, reused */
    size_t *off;            /* line i is body.p[off[i] .. off[i+1]) */
    size_t off_cap;
    aero_result *res;       /* per line while a batch runs */
    int64_t probe_after_ns; /* after a timeout: no request before this */

    aero_metric *m_written, *m_rejected, *m_failed, *m_requests, *m_bytes;
    struct warn_limit warn;   /* rate limit of repeated warnings */
};

/* ------------------------------------------------------------ helpers */

static void metric_add(struct sink_influx *s, aero_metric *m, uint64_t d)
{
    if (m != NULL && d > 0)
        s->host->metric_add(m, d);
}

/* Errors repeat on every batch while the server is down or refusing: one
 * line a second at most, with the number swallowed. */
#define warn_limited(s, ...) warn_limit_log(&(s)->warn, (s)->host, "sink-influxdb", __VA_ARGS__)

static const char *str_key(const aero_host *h, const char *key)
{
    return config_check_str(h, key);
}

/* The typed keys, as the host parsed them. */
struct influx_cfg {
    int64_t timeout_ms, max_body;
    int integers, insecure; /* integers: index in "float|integer" */
};

/* Reads the typed keys (the host reports bad values); 0 or -EINVAL. */
static int read_config(const aero_host *h, struct influx_cfg *c)
{
    int bad = 0;

    *c = (struct influx_cfg){0};
    bad |= h->config_int(h, "timeout_ms", 100, 600000, &c->timeout_ms) != 0;
    bad |= h->config_int(h, "max_body_bytes", 1024, 268435456, &c->max_body) != 0;
    bad |= h->config_enum(h, "integers", "float|integer", &c->integers) != 0;
    bad |= h->config_bool(h, "insecure", &c->insecure) != 0;
    return bad ? -EINVAL : 0;
}

/* ------------------------------------------------------------ writing */

static enum verdict post(struct sink_influx *s, size_t lo, size_t hi)
{
    struct influx_reply r;
    size_t len = s->off[hi] - s->off[lo];

    influx_http_write(s->http, s->body.p + s->off[lo], len, &r);
    metric_add(s, s->m_requests, 1);
    metric_add(s, s->m_bytes, len);
    if (r.status >= 200 && r.status < 300)
        return V_OK;
    if (r.status == 0) {
        if (r.timed_out)
            s->probe_after_ns = mono_ns() + (int64_t)PROBE_INTERVAL_MS * 1000000;
        warn_limited(s, "%s: %s; frames get TEMPORARY_ERROR",
                     influx_http_url(s->http), r.message);
        return V_DOWN;
    }
    if (r.status == 400 || r.status == 413) {
        if (hi - lo == 1)
            warn_limited(s, "HTTP %ld: %s; the frame gets PERMANENT_ERROR",
                         r.status, r.message);
        return V_BAD;
    }
    warn_limited(s, "%s: HTTP %ld: %s", influx_http_url(s->http), r.status,
                 r.message);
    if (r.status == 429)
        return V_BUSY;
    if (r.status >= 400 && r.status < 500)
        return V_REFUSED;
    return V_DOWN; /* 5xx, and anything else unexpected: try again later */
}

static aero_result stop_result(enum verdict v)
{
    return v == V_REFUSED ? AERO_REJECT : v == V_BUSY ? AERO_BACKOFF : AERO_RETRY;
}

static void set_range(struct sink_influx *s, size_t lo, size_t hi, aero_result r)
{
    for (size_t i = lo; i < hi; i++)
        s->res[i] = r;
}

/*
 * Lines [lo, hi) were refused as a whole (400/413): write each half again
 * and recurse into the halves still refused, down to single lines, which
 * get REJECT. Points InfluxDB already took are simply overwritten with the
 * same values. Returns V_OK, or the verdict that stopped it (the lines not
 * resolved yet are left for the caller).
 */
static enum verdict bisect(struct sink_influx *s, size_t lo, size_t hi)
{
    size_t mid = lo + (hi - lo) / 2;
    size_t bounds[3] = {lo, mid, hi};

    for (int h = 0; h < 2; h++) {
        size_t a = bounds[h], b = bounds[h + 1];
        enum verdict v = post(s, a, b);
        if (v == V_OK) {
            set_range(s, a, b, AERO_OK);
        } else if (v == V_BAD && b - a == 1) {
            s->res[a] = AERO_REJECT;
        } else if (v == V_BAD) {
            if ((v = bisect(s, a, b)) != V_OK)
                return v;
        } else {
            return v;
        }
    }
    return V_OK;
}

/* Last line of the chunk starting at lo that keeps the body within
 * max_body_bytes (at least one line). */
static size_t chunk_end(const struct sink_influx *s, size_t lo, size_t n)
{
    size_t hi = lo + 1;
    while (hi < n && s->off[hi + 1] - s->off[lo] <= s->max_body)
        hi++;
    return hi;
}

/* Writes every line, chunk by chunk; returns V_OK, or the verdict that
 * stopped it (lines after that stay unresolved). */
static enum verdict write_lines(struct sink_influx *s, size_t n)
{
    size_t lo = 0;
    while (lo < n) {
        size_t hi = chunk_end(s, lo, n);
        enum verdict v = post(s, lo, hi);
        if (v == V_OK)
            set_range(s, lo, hi, AERO_OK);
        else if (v == V_BAD && hi - lo == 1)
            s->res[lo] = AERO_REJECT;
        else if (v == V_BAD)
            v = bisect(s, lo, hi);
        if (v != V_OK && v != V_BAD)
            return v;
        lo = hi;
    }
    return V_OK;
}

/* Room for n lines: 0 or -ENOMEM. */
static int reserve_lines(struct sink_influx *s, size_t n)
{
    if (n + 1 <= s->off_cap)
        return 0;
    size_t *o = realloc(s->off, (n + 1) * sizeof(*o));
    if (o == NULL)
        return -ENOMEM;
    s->off = o;
    aero_result *r = realloc(s->res, (n + 1) * sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    s->res = r;
    s->off_cap = n + 1;
    return 0;
}

static void influx_write_batch(void *instance, const aero_frame *const *frames,
                               size_t n, aero_result *results)
{
    struct sink_influx *s = instance;
    size_t ok = 0, rejected = 0;

    if (reserve_lines(s, n) != 0)
        goto retry_all;
    if (s->probe_after_ns > mono_ns())
        goto retry_all; /* timed out a moment ago: do not wait again yet */
    s->probe_after_ns = 0;
    s->body.len = 0;
    for (size_t i = 0; i < n; i++) {
        s->off[i] = s->body.len;
        if (influx_line_append(&s->body, frames[i], s->ints) != 0)
            goto retry_all;
    }
    s->off[n] = s->body.len;

    /* Until a response says otherwise, a line is unresolved. The verdict
     * that stops the batch decides for all unresolved lines. */
    set_range(s, 0, n, (aero_result)-1);
    aero_result rest = stop_result(write_lines(s, n));
    for (size_t i = 0; i < n; i++) {
        if (s->res[i] == (aero_result)-1)
            s->res[i] = rest;
    }
    for (size_t i = 0; i < n; i++) {
        results[i] = s->res[i];
        ok += results[i] == AERO_OK;
        rejected += results[i] == AERO_REJECT;
    }
    metric_add(s, s->m_written, ok);
    metric_add(s, s->m_rejected, rejected);
    metric_add(s, s->m_failed, n - ok - rejected);
    return;
retry_all:
    for (size_t i = 0; i < n; i++)
        results[i] = AERO_RETRY;
    metric_add(s, s->m_failed, n);
}

/* -------------------------------------------------------------- vtable */

/* The check slot: every problem of the section through config_error; no
 * request is sent, nothing is kept. Also the first step of create(). */
static int influx_check(const aero_host *h)
{
    struct influx_cfg c;
    const char *url = str_key(h, "url");
    int bad = 0;

    if (!config_check_host(h, "sink-influxdb"))
        return -ENOTSUP;
    bad |= read_config(h, &c) != 0;
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        bad |= h->config_error(h, "url", "\"%s\" must start with http:// or https://",
                               url) != 0;
    if (!*str_key(h, "database"))
        bad |= h->config_error(h, "database", "must not be empty") != 0;
    if (*str_key(h, "password") && !*str_key(h, "username"))
        bad |= h->config_error(h, "password", "set without username") != 0;
    if (*str_key(h, "tls_ca_file") && strncmp(url, "https://", 8) != 0)
        bad |= h->config_error(h, "tls_ca_file", "set but url is not https://") != 0;
    bad |= config_check_readable_file(h, "tls_ca_file") != 0;
    return bad ? -EINVAL : 0;
}

static int influx_create(const aero_host *host, void **instance)
{
    struct sink_influx *s = calloc(1, sizeof(*s));
    int rc;

    if (s == NULL) {
        host->log(host, AERO_LOG_ERROR, "sink-influxdb: out of memory");
        return -ENOMEM;
    }
    *instance = s;
    s->host = host;
    s->warn = WARN_LIMIT_INIT;
    /* The relay ran check() already; again here for a create() without it. */
    struct influx_cfg c;
    if ((rc = influx_check(host)) != 0 || (rc = read_config(host, &c)) != 0)
        return rc;
    s->ints = c.integers == 1 ? INFLUX_INTS_INTEGER : INFLUX_INTS_FLOAT;
    s->max_body = (size_t)c.max_body;

    if (AERO_HAS(host, aero_host, metric_add) && host->metric_register) {
        s->m_written = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_influxdb_points_written_total",
            "Frames InfluxDB accepted (acked OK)");
        s->m_rejected = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_influxdb_points_rejected_total",
            "Frames InfluxDB refused with a 4xx (acked PERMANENT_ERROR)");
        s->m_failed = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_influxdb_points_failed_total",
            "Frames not written for now: server down, slow or failing");
        s->m_requests = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_influxdb_requests_total", "POST /write requests sent");
        s->m_bytes = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_influxdb_request_bytes_total",
            "Bytes of line protocol sent");
    }

    struct influx_http_opts o = {
        .url = str_key(host, "url"),
        .database = str_key(host, "database"),
        .retention_policy = str_key(host, "retention_policy"),
        .username = str_key(host, "username"),
        .password = str_key(host, "password"),
        .timeout_ms = (int)c.timeout_ms,
        .ca_file = str_key(host, "tls_ca_file"),
        .insecure = c.insecure,
    };
    return influx_http_create(host, &o, &s->http);
}

static void influx_destroy(void *instance)
{
    struct sink_influx *s = instance;
    if (s == NULL)
        return;
    influx_http_destroy(s->http);
    free(s->body.p);
    free(s->off);
    free(s->res);
    free(s);
}

static const aero_sink_vtable influx_vtable = {
    .size = sizeof(aero_sink_vtable),
    AERO_KEYS(influx_keys),
    .create = influx_create,
    .write_batch = influx_write_batch,
    .destroy = influx_destroy,
    .check = influx_check,
};

static const aero_plugin_descriptor influx_descriptor = {
    AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_SINK),
    .name = "sink-influxdb",
    .description = "Writes every frame as a point to InfluxDB 1.x over HTTP",
    .vtable = &influx_vtable,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void)
{
    return &influx_descriptor;
}
