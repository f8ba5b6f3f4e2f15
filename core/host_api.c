/*
 * host_api.c - the functions behind aero_host. Each aero_host is the first
 * member of a host_instance, so a function recovers its instance from the
 * pointer the plugin passes back. Callable from any thread.
 */
#include "host_api.h"

#include "job_json.h"
#include "log.h"
#include "readiness.h"
#include "session_table.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct host_instance {
    aero_host api; /* first: (struct host_instance *)host == instance */
    const struct config_section *section;
    char *component;     /* "sink:archive" */
    char *instance_name; /* "archive" */
    char *label;         /* sink="archive" */
    char *relay_id;
    struct job_json_batch *batch; /* the batch a sink's writer is in; NULL: none */
    struct metrics *metrics; /* NULL: a check() host, no metrics */
    host_config_report_fn report; /* NULL: log the error */
    void *report_arg;
    unsigned config_errors;       /* main thread only (check, create) */
    const struct host_relay *relay; /* NULL: nothing known about the relay */
    bool route;                     /* a route's host: it reports its own state */
    aero_metric *queue_full;        /* count_queue_full's counter (1.6); NULL: none */
};

static const struct host_instance *from_api(const aero_host *host)
{
    return (const struct host_instance *)host;
}

static void host_log(const aero_host *host, aero_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, from_api(host)->component, fmt, ap);
    va_end(ap);
}

static const char *host_config_get(const aero_host *host, const char *key)
{
    return config_get(from_api(host)->section, key);
}

static const char *host_section(const aero_host *host) { return from_api(host)->section->name; }

static const char *host_instance_name(const aero_host *host)
{
    return from_api(host)->instance_name;
}

static const char *host_relay_id(const aero_host *host) { return from_api(host)->relay_id; }

/* Only the sink's writer calls it, inside write_batch: the batch is its own. */
static size_t host_envelope_json(const aero_host *host, const aero_frame *frame, char *buf,
                                 size_t cap)
{
    return job_json_encode(from_api(host)->batch, frame, buf, cap);
}

/* Register name with the rendered label set `labels`; logs why not. */
static aero_metric *register_series(const struct host_instance *h, aero_metric_type type,
                                    const char *name, const char *help, const char *labels)
{
    if (!h->metrics) {
        log_msg(AERO_LOG_WARN, h->component,
                "metric \"%s\" refused: metric_register works in create() only, not in check()",
                name ? name : "(null)");
        return NULL;
    }
    aero_metric *m = metrics_register(h->metrics, type, name, help, labels);
    if (!m)
        log_msg(AERO_LOG_WARN, h->component,
                "metric \"%s\" refused (invalid name, type clash, or against Prometheus "
                "naming: see docs/operations.md)",
                name ? name : "(null)");
    return m;
}

static aero_metric *host_metric_register(const aero_host *host, aero_metric_type type,
                                         const char *name, const char *help)
{
    const struct host_instance *h = from_api(host);
    return register_series(h, type, name, help, h->label);
}

/* A plugin's own label set (ABI 1.3): k="v" pairs joined by ',', names
 * [a-z_][a-z0-9_]* other than the instance's, values of a safe charset, so
 * nothing in it needs escaping on /metrics. */
static bool labels_valid(const char *s)
{
    do {
        const char *k = s;
        if (!((*s >= 'a' && *s <= 'z') || *s == '_'))
            return false;
        while ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')
            s++;
        size_t klen = (size_t)(s - k);
        if ((klen == 4 && !strncmp(k, "sink", 4)) || (klen == 5 && !strncmp(k, "route", 5)) ||
            (klen == 6 && !strncmp(k, "plugin", 6)))
            return false;
        if (s[0] != '=' || s[1] != '"')
            return false;
        s += 2;
        const char *v = s;
        while (*s && (strchr("_-.:", *s) || (*s >= 'a' && *s <= 'z') ||
                      (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
            s++;
        if (*s != '"' || s - v > 64)
            return false;
        s++;
    } while (*s == ',' && s++);
    return *s == '\0';
}

static aero_metric *host_metric_register_labels(const aero_host *host, aero_metric_type type,
                                                const char *name, const char *help,
                                                const char *labels)
{
    const struct host_instance *h = from_api(host);
    char *all = NULL;
    if (!labels || !labels_valid(labels) || asprintf(&all, "%s,%s", h->label, labels) < 0) {
        log_msg(AERO_LOG_WARN, h->component, "metric \"%s\" refused: invalid labels %s",
                name ? name : "(null)", labels ? labels : "(null)");
        return NULL;
    }
    aero_metric *m = register_series(h, type, name, help, all);
    free(all);
    return m;
}

/* A plugin's histogram is the core's metric_histogram: values are kept as
 * ns (a second is 1e9), so a bound of 1024 "seconds" is 1024 units. */
static aero_histogram *host_histogram_register(const aero_host *host, const char *name,
                                               const char *help, const char *labels,
                                               const double *bounds, size_t n_bounds)
{
    const struct host_instance *h = from_api(host);
    char *all = NULL;
    if ((labels && !labels_valid(labels)) ||
        (labels ? asprintf(&all, "%s,%s", h->label, labels) : asprintf(&all, "%s", h->label)) < 0) {
        log_msg(AERO_LOG_WARN, h->component, "histogram \"%s\" refused: invalid labels %s",
                name ? name : "(null)", labels ? labels : "(null)");
        return NULL;
    }
    struct metric_histogram *hist =
        name ? metrics_histogram_register_labeled(h->metrics, name, help ? help : "", all,
                                                  bounds, n_bounds)
             : NULL;
    free(all);
    if (!hist)
        log_msg(AERO_LOG_WARN, h->component,
                "histogram \"%s\" refused: invalid name or bounds, or registered twice",
                name ? name : "(null)");
    return (aero_histogram *)hist;
}

static void host_histogram_observe(aero_histogram *hist, double value)
{
    if (hist && value == value) /* NaN: nothing */
        metrics_histogram_observe_ns((struct metric_histogram *)hist,
                                     value >= 9.2e9 ? INT64_MAX : (int64_t)(value * 1e9));
}

static void host_metric_add(aero_metric *m, uint64_t delta) { metrics_add(m, delta); }
static void host_metric_set(aero_metric *m, int64_t value) { metrics_set(m, value); }

/* ---------------------------------------------- typed config (ABI 1.1) */

/* Count and hand on one formatted configuration error. The plugin only
 * gets a const host, but errors are the instance's mutable record: the
 * host_instance itself is the core's, never in read-only memory. */
static void report_line(const aero_host *host, const char *line)
{
    struct host_instance *h = (struct host_instance *)from_api(host);
    h->config_errors++;
    if (h->report)
        h->report(h->report_arg, line);
    else
        log_msg(AERO_LOG_ERROR, h->component, "%s", line);
}

/* A typed reader's result: failures other than -ENOENT are reported. */
static int read_result(const aero_host *host, int rc, const char *err)
{
    if (rc < 0 && rc != -ENOENT)
        report_line(host, err);
    return rc;
}

static int host_config_bool(const aero_host *host, const char *key, int *out)
{
    char err[CONFIG_ERR_LEN];
    if (!key || !out)
        return -EINVAL;
    return read_result(host, config_read_bool(from_api(host)->section, key, out, err, sizeof err),
                       err);
}

static int host_config_int(const aero_host *host, const char *key, int64_t min, int64_t max,
                           int64_t *out)
{
    char err[CONFIG_ERR_LEN];
    long long v = 0;
    if (!key || !out)
        return -EINVAL;
    int rc = read_result(host, config_read_int(from_api(host)->section, key, (long long)min,
                                               (long long)max, &v, err, sizeof err),
                         err);
    if (rc == 0)
        *out = (int64_t)v;
    return rc;
}

static int host_config_enum(const aero_host *host, const char *key, const char *choices,
                            int *index_out)
{
    char err[CONFIG_ERR_LEN];
    if (!key || !choices || !index_out)
        return -EINVAL;
    return read_result(host, config_read_enum(from_api(host)->section, key, choices, index_out,
                                              err, sizeof err),
                       err);
}

static int host_config_error(const aero_host *host, const char *key, const char *fmt, ...)
{
    const struct config_section *s = from_api(host)->section;
    char msg[CONFIG_ERR_LEN], line[CONFIG_ERR_LEN + 256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt ? fmt : "(no message)", ap);
    va_end(ap);
    if (key)
        config_errorf(line, sizeof line, s->file, config_line_of(s, key), s->name, key, "%s", msg);
    else /* the section as a whole: "[sink:<name>]: ..." (SPEC.md 13.6) */
        config_errorf(line, sizeof line, s->file, config_line_of(s, NULL), NULL, NULL, "[%s]: %s",
                      s->name, msg);
    report_line(host, line);
    return -EINVAL;
}

/* ------------------------------------------ the relay itself (ABI 1.2) */

static const char *host_listen_address(const aero_host *host)
{
    const struct host_relay *r = from_api(host)->relay;
    return r && r->listen ? r->listen : "";
}

static int host_listen_port(const aero_host *host)
{
    const struct host_relay *r = from_api(host)->relay;
    return r && r->grpc_port ? atomic_load(r->grpc_port) : 0;
}

static int64_t host_session_last_message(const aero_host *host, const char *drone_id,
                                         const char *session_id)
{
    const struct host_relay *r = from_api(host)->relay;
    struct session_info info;
    if (!r || !r->sessions || !drone_id || !session_id ||
        session_table_get(r->sessions, drone_id, &info) != 0)
        return 0;
    int64_t t = strcmp(info.session_id, session_id) == 0 ? info.last_message_unix_ns : 0;
    session_info_release(&info);
    return t;
}

/* A route's state in /readyz's component list (ABI 1.5); registered as
 * ok when its create() host learns the relay (host_instance_set_relay). */
static int host_report_state(const aero_host *host, aero_state state, const char *reason)
{
    const struct host_instance *h = from_api(host);
    if (!h->route || !h->relay || !h->relay->readiness || !h->metrics)
        return -EINVAL; /* a sink's or a check() host */
    return readiness_route_state(h->relay->readiness, h, h->component, state, reason);
}

static int host_ready_detail(const aero_host *host, const char *key, const char *value)
{
    const struct host_instance *h = from_api(host);
    if (!h->relay || !h->relay->readiness || !h->metrics)
        return -EINVAL; /* a check() host: no effects */
    return readiness_set(h->relay->readiness, h, key, value);
}

/* A sink's own counter of its queue-full refusals (ABI 1.6); the pipeline
 * reads it once create() returned (host_instance_queue_full). */
static int host_count_queue_full(const aero_host *host, aero_metric *counter)
{
    struct host_instance *h = (struct host_instance *)from_api(host);
    if (h->route || !h->metrics || (counter && !metrics_is_counter(counter)))
        return -EINVAL; /* a route's or a check() host, or a gauge */
    h->queue_full = counter;
    return 0;
}

struct host_instance *host_instance_create(const char *kind_label, const char *instance,
                                           const struct config_section *section,
                                           const char *relay_id, struct metrics *metrics)
{
    struct host_instance *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->api = (aero_host){
        .size = sizeof(aero_host),
        .log = host_log,
        .config_get = host_config_get,
        .section = host_section,
        .instance_name = host_instance_name,
        .relay_id = host_relay_id,
        .envelope_json = host_envelope_json,
        .metric_register = host_metric_register,
        .metric_add = host_metric_add,
        .metric_set = host_metric_set,
        .config_bool = host_config_bool,
        .config_int = host_config_int,
        .config_enum = host_config_enum,
        .config_error = host_config_error,
        .listen_address = host_listen_address,
        .listen_port = host_listen_port,
        .session_last_message_unix_ns = host_session_last_message,
        .ready_detail = host_ready_detail,
        .metric_register_labels = host_metric_register_labels,
        .histogram_register = host_histogram_register,
        .histogram_observe = host_histogram_observe,
        .report_state = host_report_state,
        .count_queue_full = host_count_queue_full,
    };
    h->route = strcmp(kind_label, "route") == 0;
    h->section = section;
    h->metrics = metrics;
    if (asprintf(&h->component, "%s:%s", kind_label, instance) < 0)
        h->component = NULL;
    if (strcmp(kind_label, "sink") == 0) {
        /* settings made "plugin" required in every [sink:*] section */
        const char *plugin = section ? config_get(section, "plugin") : NULL;
        int n = metrics_sink_labels(NULL, 0, instance, plugin);
        if (n >= 0 && (h->label = malloc((size_t)n + 1)))
            metrics_sink_labels(h->label, (size_t)n + 1, instance, plugin);
    } else if (asprintf(&h->label, "%s=\"%s\"", kind_label, instance) < 0) {
        h->label = NULL;
    }
    h->instance_name = strdup(instance);
    h->relay_id = strdup(relay_id ? relay_id : "relay");
    if (!h->component || !h->label || !h->instance_name || !h->relay_id) {
        host_instance_destroy(h);
        return NULL;
    }
    return h;
}

void host_instance_destroy(struct host_instance *h)
{
    if (!h)
        return;
    if (h->relay)
        readiness_clear_owner(h->relay->readiness, h);
    free(h->component);
    free(h->label);
    free(h->instance_name);
    free(h->relay_id);
    free(h);
}

const aero_host *host_instance_api(const struct host_instance *h) { return &h->api; }

const char *host_instance_component(const struct host_instance *h) { return h->component; }

aero_metric *host_instance_queue_full(const struct host_instance *h) { return h->queue_full; }

void host_instance_set_batch(struct host_instance *h, struct job_json_batch *batch)
{
    h->batch = batch;
}
void host_instance_set_relay(struct host_instance *h, const struct host_relay *relay)
{
    h->relay = relay;
    /* A route is listed from its start, ok until it says otherwise. */
    if (h->route && relay && relay->readiness && h->metrics &&
        readiness_route_state(relay->readiness, h, h->component, AERO_STATE_OK, NULL) < 0)
        log_msg(AERO_LOG_WARN, h->component, "not listed in /readyz: more than %d routes",
                READINESS_MAX);
}

void host_instance_set_config_report(struct host_instance *h, host_config_report_fn report,
                                     void *arg)
{
    h->report = report;
    h->report_arg = arg;
}

unsigned host_instance_config_errors(const struct host_instance *h) { return h->config_errors; }
