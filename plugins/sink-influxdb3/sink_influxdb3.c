/*
 * sink_influxdb3.c - the sink-influxdb3 plugin (SPEC.md section 13): the
 * eight MAVLink messages, normalized (normalize.c), become rows of
 * aircraft_telemetry in InfluxDB 3, written through influx3_http.c. A
 * batch's rows go out in requests of at most batch_size lines and 4 MiB;
 * each request is retried with doubling backoff within write_timeout_ms,
 * halved on 413. A row is OK only once the server answered 204/200 for the
 * request that carried it. Config, check, metrics and the vtable live
 * here. write_batch runs on the sink thread (it blocks: retries are this
 * sink's section-9 hold), check/create/destroy on the main thread.
 */
#include "influx3_http.h"
#include "normalize.h"

#include <aeroarc/plugin.h>

#include "config_check.h"
#include "line_proto.h"
#include "mono_clock.h"
#include "warn_limit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    REQUEST_MAX_BYTES = 4 << 20, /* SPEC 13.5 rule 1 */
    TEXT_MAX = 512,              /* an ack's error text */
    REFUSAL_LOG_NS = 60,         /* 400/401/403: logged at most once a minute */
};

static const char PLUGIN[] = "sink-influxdb3";
static const char NORMALIZE_PREFIX[] =
    "telemetry normalization failed: normalize telemetry envelope: ";
static const char WRITE_PREFIX[] = "telemetry admission failed: write InfluxDB 3 points: ";
static const char REQUIRED_TEXT[] = "InfluxDB 3 host, token, and database are required";

static const aero_config_key influx3_keys[] = {
    {.name = "host", .type = AERO_KEY_STRING, .default_value = "",
     .help = "InfluxDB 3 base URL, http:// or https:// (required)"},
    {.name = "database", .type = AERO_KEY_STRING, .default_value = "",
     .help = "database the rows go to (required)"},
    {.name = "token", .type = AERO_KEY_STRING, .default_value = "",
     .help = "API token; empty: token_file, then the INFLUXDB3_TOKEN environment variable"},
    {.name = "token_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "file holding the token (must not be readable by others)"},
    {.name = "auth_scheme", .type = AERO_KEY_ENUM, .default_value = "Token",
     .choices = "Token|Bearer", .help = "Authorization header scheme"},
    {.name = "relay_id", .type = AERO_KEY_STRING, .default_value = "",
     .help = "the rows' relay_id; empty: [relay] relay_id"},
    {.name = "api", .type = AERO_KEY_ENUM, .default_value = "v3", .choices = "v3|v2",
     .help = "write endpoint: /api/v3/write_lp or /api/v2/write"},
    {.name = "no_sync", .type = AERO_KEY_BOOL, .default_value = "false",
     .help = "v3: answer before the server's WAL write (an OK then promises less)"},
    {.name = "batch_size", .type = AERO_KEY_INT, .default_value = "500",
     .help = "lines per request at most", .min = 1, .max = 100000},
    {.name = "write_timeout_ms", .type = AERO_KEY_INT, .default_value = "5000",
     .help = "one request, retries included", .min = 10, .max = 600000},
    {.name = "max_retries", .type = AERO_KEY_INT, .default_value = "3",
     .help = "retries of a failed request (0: none)", .min = 0, .max = 100},
    {.name = "retry_backoff_ms", .type = AERO_KEY_INT, .default_value = "200",
     .help = "wait before the first retry, doubled for each next one", .min = 0, .max = 60000},
    {.name = "gzip_threshold", .type = AERO_KEY_INT, .default_value = "1000",
     .help = "bodies of this many bytes or more are gzipped; 0: never", .min = 0,
     .max = 1 << 30},
    {.name = "ca_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "https: PEM CA certificates to trust; empty: the system's"},
    {.name = "tls_server_name", .type = AERO_KEY_STRING, .default_value = "",
     .help = "https: the name the server's certificate must carry; empty: the host's"},
    /* The common key with this sink's own default (SPEC 13.6): the core's
     * 4096 would be 9 requests of write_timeout_ms (45 s) behind a full
     * queue, past the agents' 15 s ack window. */
    {.name = "queue", .type = AERO_KEY_INT, .default_value = "1000",
     .help = "frames queued for this sink; keep ceil(queue / batch_size) x write_timeout_ms "
             "under 15 s",
     .min = 1, .max = 10000000},
};

struct influx3_cfg {
    int64_t batch_size, write_timeout_ms, max_retries, retry_backoff_ms, gzip_threshold;
    int auth_scheme, api, no_sync;
};

/* Per-frame state while a batch runs. */
struct frame_slot {
    aero_result result;
    const char *text;   /* into texts, or NULL */
};

struct sink_influx3 {
    const aero_host *host;
    struct influx3_http *http;
    struct normalize_ctx *nz;
    struct influx3_cfg cfg;

    struct lp_buf body;        /* the batch's lines */
    size_t *off;               /* line j is body.p[off[j] .. off[j+1]) */
    size_t *line_frame;        /* line j belongs to frame line_frame[j] */
    struct frame_slot *slot;   /* per frame */
    size_t cap;                /* of off (cap + 1), line_frame, slot */
    char *texts;               /* per frame, TEXT_MAX each, for result_text */
    size_t texts_cap;

    int64_t refusal_logged_ns; /* last 400/401/403 log line */
    struct warn_limit warn;

    aero_metric *m_norm[NORMALIZE_N_MESSAGES][2]; /* [ok, failed] */
    aero_metric *m_unsupported, *m_no_wal_id;
    aero_metric *m_writes_ok, *m_writes_failed, *m_retries, *m_queue_depth;
    aero_histogram *h_batch_size, *h_write_seconds; /* NULL on a relay before ABI 1.4 */
};

/* ------------------------------------------------------------- config */

static int read_config(const aero_host *h, struct influx3_cfg *c)
{
    int bad = 0;
    *c = (struct influx3_cfg){0};
    bad |= h->config_int(h, "batch_size", 1, 100000, &c->batch_size) != 0;
    bad |= h->config_int(h, "write_timeout_ms", 10, 600000, &c->write_timeout_ms) != 0;
    bad |= h->config_int(h, "max_retries", 0, 100, &c->max_retries) != 0;
    bad |= h->config_int(h, "retry_backoff_ms", 0, 60000, &c->retry_backoff_ms) != 0;
    bad |= h->config_int(h, "gzip_threshold", 0, 1 << 30, &c->gzip_threshold) != 0;
    bad |= h->config_enum(h, "auth_scheme", "Token|Bearer", &c->auth_scheme) != 0;
    bad |= h->config_enum(h, "api", "v3|v2", &c->api) != 0;
    bad |= h->config_bool(h, "no_sync", &c->no_sync) != 0;
    return bad ? -EINVAL : 0;
}

/*
 * The token: `token`, else token_file's first line, else INFLUXDB3_TOKEN
 * (first non-empty wins) into buf. Returns 0 (buf may be ""), or -EACCES
 * after reporting a token_file that others may read or that cannot be read.
 * The token itself is never reported.
 */
static int read_token(const aero_host *h, char *buf, size_t cap)
{
    const char *t = config_check_str(h, "token");
    const char *path = config_check_str(h, "token_file");
    buf[0] = '\0';
    if (*t) {
        snprintf(buf, cap, "%s", t);
        return 0;
    }
    if (*path) {
        struct stat st;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 || fstat(fd, &st) != 0) {
            h->config_error(h, "token_file", "cannot read \"%s\": %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -EACCES;
        }
        if (st.st_mode & (S_IROTH | S_IWOTH)) {
            close(fd);
            h->config_error(h, "token_file", "\"%s\" is readable by others (chmod o-rw)", path);
            return -EACCES;
        }
        ssize_t n = read(fd, buf, cap - 1);
        close(fd);
        buf[n > 0 ? n : 0] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        size_t len = strlen(buf);
        while (len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))
            buf[--len] = '\0';
        if (*buf)
            return 0;
    }
    const char *env = getenv("INFLUXDB3_TOKEN");
    if (env)
        snprintf(buf, cap, "%s", env);
    return 0;
}

/* The check slot: every problem through config_error; the token is never
 * printed. Also the first step of create(). */
static int influx3_check(const aero_host *h)
{
    struct influx3_cfg c;
    char token[1024];
    int bad = 0;

    if (!config_check_host(h, PLUGIN))
        return -ENOTSUP;
    bad |= read_config(h, &c) != 0;
    const char *url = config_check_str(h, "host");
    int token_bad = read_token(h, token, sizeof(token)) != 0;
    bad |= token_bad;
    if (!*url || !*config_check_str(h, "database") || (!*token && !token_bad))
        bad |= h->config_error(h, NULL, "%s", REQUIRED_TEXT) != 0;
    memset(token, 0, sizeof(token));
    if (*url && strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        bad |= h->config_error(h, "host", "InfluxDB 3 host must be an http:// or https:// URL") != 0;
    bad |= config_check_readable_file(h, "ca_file") != 0;
    /* Agents drop a stream whose window gets no ack for 15 s (section 9). */
    int64_t queue = 0;
    if (!bad && h->config_int(h, "queue", 0, INT64_MAX, &queue) == 0 && queue > 0) {
        int64_t worst = (queue + c.batch_size - 1) / c.batch_size * c.write_timeout_ms;
        if (worst >= 15000)
            h->log(h, AERO_LOG_WARN,
                   "queue %lld / batch_size %lld x write_timeout_ms %lld = %lld ms: a full "
                   "queue may wait past the agents' 15 s ack window",
                   (long long)queue, (long long)c.batch_size, (long long)c.write_timeout_ms,
                   (long long)worst);
    }
    return bad ? -EINVAL : 0;
}

/* ------------------------------------------------------------ writing */

static void metric_add(const struct sink_influx3 *s, aero_metric *m, uint64_t d)
{
    if (m && d)
        s->host->metric_add(m, d);
}

static void set_text(struct sink_influx3 *s, size_t frame, const char *prefix, const char *detail)
{
    char *t = s->texts + frame * TEXT_MAX;
    size_t p = strlen(prefix), d = strnlen(detail, TEXT_MAX - 1 - p);
    memcpy(t, prefix, p); /* details are far shorter than TEXT_MAX */
    memcpy(t + p, detail, d);
    t[p + d] = '\0';
    s->slot[frame].text = t;
}

/* The rows of lines [lo, hi) get r (and, unless OK, the write text). */
static void finish_lines(struct sink_influx3 *s, size_t lo, size_t hi, aero_result r,
                         const char *detail)
{
    for (size_t j = lo; j < hi; j++) {
        size_t f = s->line_frame[j];
        s->slot[f].result = r;
        if (r != AERO_OK)
            set_text(s, f, WRITE_PREFIX, detail);
    }
    metric_add(s, r == AERO_OK ? s->m_writes_ok : s->m_writes_failed, 1);
}

static void observe(struct sink_influx3 *s, aero_histogram *h, double v)
{
    if (h)
        s->host->histogram_observe(h, v);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void log_refusal(struct sink_influx3 *s, const struct influx3_reply *r)
{
    int64_t now = mono_ns();
    if (s->refusal_logged_ns && now - s->refusal_logged_ns < REFUSAL_LOG_NS * INT64_C(1000000000))
        return;
    s->refusal_logged_ns = now;
    s->host->log(s->host, AERO_LOG_WARN, "%s: %s (rows get RETRY_WITH_BACKOFF)",
                 influx3_http_url(s->http), r->detail);
}

/*
 * One request of lines [lo, hi), retried (SPEC 13.5 rule 2, 13.9 rule 7)
 * until deadline_ns; 413 splits it in halves, which share the deadline.
 */
static void send_lines(struct sink_influx3 *s, size_t lo, size_t hi, int64_t deadline_ns)
{
    struct influx3_reply r;
    for (int64_t attempt = 0;; attempt++) {
        int64_t left_ms = (deadline_ns - mono_ns()) / 1000000;
        if (left_ms <= 0) {
            finish_lines(s, lo, hi, AERO_BACKOFF, attempt ? r.detail : "write timeout");
            return;
        }
        int64_t t0 = mono_ns();
        influx3_http_post(s->http, s->body.p + s->off[lo], s->off[hi] - s->off[lo], left_ms, &r);
        observe(s, s->h_write_seconds, (double)(mono_ns() - t0) / 1e9);
        observe(s, s->h_batch_size, (double)(hi - lo));
        if (r.status == 204 || r.status == 200) {
            finish_lines(s, lo, hi, AERO_OK, NULL);
            return;
        }
        if (r.status == 413 && hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            send_lines(s, lo, mid, deadline_ns);
            send_lines(s, mid, hi, deadline_ns);
            return;
        }
        if (r.status == 400 || r.status == 401 || r.status == 403)
            log_refusal(s, &r);
        else
            warn_limit_log(&s->warn, s->host, PLUGIN, "%s: %s", influx3_http_url(s->http),
                           r.detail);
        int64_t backoff = s->cfg.retry_backoff_ms << (attempt < 30 ? attempt : 30);
        if (r.status == 413 || attempt >= s->cfg.max_retries ||
            mono_ns() + backoff * 1000000 >= deadline_ns) {
            finish_lines(s, lo, hi, AERO_BACKOFF, r.detail);
            return;
        }
        metric_add(s, s->m_retries, 1);
        sleep_ms(backoff);
    }
}

/* Room for n frames and their lines: 0 or -ENOMEM. */
static int reserve(struct sink_influx3 *s, size_t n)
{
    if (n <= s->cap)
        return 0;
    size_t *off = realloc(s->off, (n + 1) * sizeof(*off));
    if (off)
        s->off = off;
    size_t *lf = realloc(s->line_frame, n * sizeof(*lf));
    if (lf)
        s->line_frame = lf;
    struct frame_slot *sl = realloc(s->slot, n * sizeof(*sl));
    if (sl)
        s->slot = sl;
    char *t = realloc(s->texts, n * TEXT_MAX);
    if (t)
        s->texts = t;
    if (!off || !lf || !sl || !t)
        return -ENOMEM;
    s->cap = n;
    return 0;
}

static void influx3_write_batch(void *instance, const aero_frame *const *frames, size_t n,
                                aero_result *results)
{
    struct sink_influx3 *s = instance;
    size_t lines = 0;

    if (reserve(s, n) != 0)
        return; /* results[] stay AERO_RETRY */
    s->body.len = 0;
    for (size_t i = 0; i < n; i++) {
        enum normalize_message m;
        char detail[TEXT_MAX];
        size_t at = s->body.len;
        s->slot[i] = (struct frame_slot){AERO_OK, NULL};
        switch (normalize_frame(s->nz, frames[i], &s->body, &m, detail, sizeof(detail))) {
        case NZ_ROW:
            s->off[lines] = at;
            s->line_frame[lines++] = i;
            metric_add(s, s->m_norm[m][0], 1);
            break;
        case NZ_UNSUPPORTED:
            metric_add(s, s->m_unsupported, 1);
            break;
        case NZ_NO_WAL_ID:
            metric_add(s, s->m_no_wal_id, 1);
            break;
        case NZ_FAILED:
            s->slot[i].result = AERO_REJECT;
            set_text(s, i, NORMALIZE_PREFIX, detail);
            metric_add(s, s->m_norm[m][1], 1);
            break;
        case NZ_NOMEM:
            s->slot[i].result = AERO_RETRY;
            break;
        }
    }
    s->off[lines] = s->body.len;
    if (s->m_queue_depth)
        s->host->metric_set(s->m_queue_depth, (int64_t)lines);

    /* Requests of at most batch_size lines and 4 MiB, each with its own
     * write_timeout_ms. */
    for (size_t lo = 0; lo < lines;) {
        size_t hi = lo + 1;
        while (hi < lines && hi - lo < (size_t)s->cfg.batch_size &&
               s->off[hi + 1] - s->off[lo] <= REQUEST_MAX_BYTES)
            hi++;
        send_lines(s, lo, hi, mono_ns() + s->cfg.write_timeout_ms * 1000000);
        lo = hi;
    }
    if (s->m_queue_depth)
        s->host->metric_set(s->m_queue_depth, 0);
    for (size_t i = 0; i < n; i++)
        results[i] = s->slot[i].result;
}

static const char *influx3_result_text(void *instance, size_t i)
{
    struct sink_influx3 *s = instance;
    return i < s->cap ? s->slot[i].text : NULL;
}

/* -------------------------------------------------------------- vtable */

static aero_metric *counter(const aero_host *h, const char *name, const char *help,
                            const char *labels)
{
    if (!AERO_HAS(h, aero_host, metric_register_labels))
        return NULL;
    return h->metric_register_labels(h, AERO_METRIC_COUNTER, name, help, labels);
}

static void register_metrics(struct sink_influx3 *s)
{
    const aero_host *h = s->host;
    static const char NORM[] = "aero_telemetry_normalization_total";
    static const char NORM_HELP[] = "Frames by message and normalization outcome";
    char labels[96];
    for (int m = 0; m < NORMALIZE_N_MESSAGES; m++)
        for (int f = 0; f < 2; f++) {
            snprintf(labels, sizeof(labels), "message_name=\"%s\",outcome=\"%s\"",
                     normalize_message_name(m), f ? "failed" : "ok");
            s->m_norm[m][f] = counter(h, NORM, NORM_HELP, labels);
        }
    s->m_unsupported = counter(h, NORM, NORM_HELP, "message_name=\"other\",outcome=\"unsupported\"");
    static const char DROPPED[] = "aero_telemetry_writer_dropped_total";
    static const char DROPPED_HELP[] =
        "Frames not written: acked OK (no_wal_id: seed frames, no wal_id) or refused by a full "
        "queue (queue_full: the agent resends)";
    s->m_no_wal_id = counter(h, DROPPED, DROPPED_HELP, "reason=\"no_wal_id\"");
    /* SPEC 13.9 rule 11: the relay refuses those frames before this sink
     * sees them, so it counts them here for us (ABI 1.6). An older relay:
     * no series, rather than one that stays 0 while frames are refused. */
    if (AERO_HAS(h, aero_host, count_queue_full) && h->count_queue_full)
        h->count_queue_full(h, counter(h, DROPPED, DROPPED_HELP, "reason=\"queue_full\""));
    static const char WRITES[] = "aero_telemetry_backend_writes_total";
    static const char WRITES_HELP[] = "Write requests by final outcome (after retries)";
    s->m_writes_ok = counter(h, WRITES, WRITES_HELP, "outcome=\"ok\"");
    s->m_writes_failed = counter(h, WRITES, WRITES_HELP, "outcome=\"failed\"");
    s->m_retries = h->metric_register(h, AERO_METRIC_COUNTER, "aero_telemetry_backend_retries_total",
                                      "Write requests sent again after a failure");
    s->m_queue_depth = h->metric_register(h, AERO_METRIC_GAUGE, "aero_telemetry_writer_queue_depth",
                                          "Rows of the batch being written");
    if (AERO_HAS(h, aero_host, histogram_observe)) {
        /* Upstream's buckets: 1, 2, 4 ... 1024 lines; and the usual seconds. */
        static const double lines[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
        static const double secs[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
        s->h_batch_size = h->histogram_register(h, "aero_telemetry_backend_batch_size",
                                                "Lines per write request", NULL, lines, 11);
        s->h_write_seconds =
            h->histogram_register(h, "aero_telemetry_backend_write_seconds",
                                  "Time of one write request, answer included", NULL, secs, 11);
    }
}

static int influx3_create(const aero_host *host, void **instance)
{
    struct sink_influx3 *s = calloc(1, sizeof(*s));
    char token[1024];
    int rc;

    if (!s) {
        host->log(host, AERO_LOG_ERROR, "out of memory");
        return -ENOMEM;
    }
    *instance = s;
    s->host = host;
    s->warn = WARN_LIMIT_INIT;
    if ((rc = influx3_check(host)) != 0 || (rc = read_config(host, &s->cfg)) != 0 ||
        (rc = read_token(host, token, sizeof(token))) != 0)
        return rc;
    const char *relay_id = config_check_str(host, "relay_id");
    if ((rc = normalize_create(*relay_id ? relay_id : host->relay_id(host), &s->nz)) != 0)
        return rc;
    register_metrics(s);
    struct influx3_http_opts o = {
        .host = config_check_str(host, "host"),
        .database = config_check_str(host, "database"),
        .auth_scheme = s->cfg.auth_scheme ? "Bearer" : "Token",
        .token = token,
        .api_v2 = s->cfg.api == 1,
        .no_sync = s->cfg.no_sync,
        .gzip_threshold = (size_t)s->cfg.gzip_threshold,
        .ca_file = config_check_str(host, "ca_file"),
        .tls_server_name = config_check_str(host, "tls_server_name"),
    };
    rc = influx3_http_create(host, &o, &s->http);
    memset(token, 0, sizeof(token));
    return rc;
}

static void influx3_destroy(void *instance)
{
    struct sink_influx3 *s = instance;
    if (!s)
        return;
    influx3_http_destroy(s->http);
    normalize_destroy(s->nz);
    free(s->body.p);
    free(s->off);
    free(s->line_frame);
    free(s->slot);
    free(s->texts);
    free(s);
}

static const aero_sink_vtable influx3_vtable = {
    .size = sizeof(aero_sink_vtable),
    AERO_KEYS(influx3_keys),
    .create = influx3_create,
    .write_batch = influx3_write_batch,
    .destroy = influx3_destroy,
    .check = influx3_check,
    .result_text = influx3_result_text,
};

static const aero_plugin_descriptor influx3_descriptor = {
    AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_SINK),
    .name = "sink-influxdb3",
    .description = "Writes the eight normalized MAVLink messages as aircraft_telemetry rows to InfluxDB 3",
    .vtable = &influx3_vtable,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void)
{
    return &influx3_descriptor;
}
