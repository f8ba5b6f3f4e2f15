/*
 * sink_mqtt.c - the sink-mqtt plugin: publishes every frame to an MQTT
 * broker, one message per frame, on a topic rendered from a template. With
 * QoS 1/2 a frame is acked OK only once the broker acknowledged its message
 * (PUBACK / PUBCOMP); with QoS 0 once libmosquitto took it (no guarantee).
 * Config and the vtable live here; the connection is mqtt_link.c's, topics
 * mqtt_topic.c's. Every value is read through the host's typed readers
 * (ABI 1.1), so "tls = On" means TLS here as it does to --check. check,
 * create and destroy run on the main thread, write_batch on the sink
 * thread; no globals.
 */
#include "mqtt_link.h"
#include "mqtt_topic.h"

#include <aeroarc/plugin.h>

#include "config_check.h"
#include "warn_limit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { INITIAL_BUF = 16 * 1024, TOPIC_BUF = 1024 };

static const aero_config_key mqtt_keys[] = {
    {.name = "host", .type = AERO_KEY_STRING, .default_value = "127.0.0.1",
     .help = "broker host name or address"},
    {.name = "port", .type = AERO_KEY_INT, .default_value = "1883",
     .help = "broker port (8883 is the usual TLS port)", .min = 1, .max = 65535},
    {.name = "topic", .type = AERO_KEY_STRING,
     .default_value = "telemetry/{agent_id}/{msg_name}",
     .help = "topic template; placeholders {agent_id} {msg_name} {msg_id} "
             "{flight_id} {session_id} {dialect} {relay_id} {instance} "
             "{protocol} {wal_id} {intent_id} {intent_version} {operator_id} "
             "{aircraft_id}"},
    {.name = "qos", .type = AERO_KEY_ENUM, .default_value = "1",
     .choices = "0|1|2",
     .help = "1/2: a frame is acked OK only after the broker's PUBACK/PUBCOMP; "
             "0: once handed to the client library (no delivery guarantee)"},
    {.name = "retain", .type = AERO_KEY_BOOL, .default_value = "false",
     .help = "set the MQTT retain flag on every message"},
    {.name = "format", .type = AERO_KEY_ENUM, .default_value = "json",
     .choices = "json|protobuf",
     .help = "payload: the JSON envelope, or the frame's original protobuf bytes"},
    {.name = "client_id", .type = AERO_KEY_STRING, .default_value = "",
     .help = "MQTT client id; empty: aeroarc-<relay_id>-<instance>"},
    {.name = "username", .type = AERO_KEY_STRING, .default_value = "",
     .help = "user name for the broker; empty: none"},
    {.name = "password", .type = AERO_KEY_STRING, .default_value = "",
     .help = "password (needs username)"},
    {.name = "tls", .type = AERO_KEY_BOOL, .default_value = "false",
     .help = "connect with TLS"},
    {.name = "ca_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "PEM CA certificates to trust; empty: the system's (/etc/ssl/certs)"},
    {.name = "cert_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "PEM client certificate (with key_file)"},
    {.name = "key_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "PEM client key, unencrypted (with cert_file)"},
    {.name = "insecure", .type = AERO_KEY_BOOL, .default_value = "false",
     .help = "TLS without checking the broker's host name (testing only)"},
    {.name = "keepalive_s", .type = AERO_KEY_INT, .default_value = "30",
     .help = "MQTT keepalive; a silent broker is dropped after 1.5x this",
     .min = 5, .max = 65535},
    {.name = "max_inflight", .type = AERO_KEY_INT, .default_value = "100",
     .help = "QoS 1/2 messages sent and not yet acked, at most; also the "
             "number of unacked messages past which batches get BACKOFF",
     .min = 1, .max = 10000},
    {.name = "reconnect_delay_ms", .type = AERO_KEY_INT, .default_value = "500",
     .help = "first delay before reconnecting; doubles after each failure",
     .min = 10, .max = 600000},
    {.name = "reconnect_delay_max_ms", .type = AERO_KEY_INT,
     .default_value = "30000", .help = "longest delay between reconnections",
     .min = 10, .max = 3600000},
    {.name = "publish_timeout_ms", .type = AERO_KEY_INT, .default_value = "5000",
     .help = "QoS 1/2: how long a batch waits for its acks before its "
             "unacked frames get RETRY_WITH_BACKOFF", .min = 10, .max = 600000},
};

struct sink_mqtt {
    const aero_host *host;
    struct mqtt_link *link;
    struct mqtt_topic *topic;
    int qos, retain, protobuf, timeout_ms;
    char client_id[512];

    char *buf;     /* one payload, reused */
    size_t cap;
    char *tbuf;    /* one topic, reused */
    size_t tcap;
    int *mids;     /* per frame of the batch */
    size_t mids_cap;

    aero_metric *m_published, *m_failed, *m_timeouts;
    struct warn_limit warn;   /* rate limit of repeated warnings */
};

/* ------------------------------------------------------------ helpers */

static void metric_add(struct sink_mqtt *s, aero_metric *m, uint64_t d)
{
    if (m != NULL && d > 0)
        s->host->metric_add(m, d);
}

#define warn_limited(s, ...) warn_limit_log(&(s)->warn, (s)->host, "sink-mqtt", __VA_ARGS__)

static const char *str_key(const aero_host *h, const char *key)
{
    return config_check_str(h, key);
}

/* The typed keys, as the host parsed them. */
struct mqtt_cfg {
    int64_t port, keepalive_s, max_inflight, timeout_ms;
    int64_t reconnect_min_ms, reconnect_max_ms;
    int qos, retain, protobuf, tls, insecure;
};

/* Reads every typed key; the host reports each bad value itself (with its
 * relay.ini line). 0, or -EINVAL when any was bad. */
static int read_config(const aero_host *h, struct mqtt_cfg *c)
{
    int bad = 0;

    *c = (struct mqtt_cfg){0};
    bad |= h->config_int(h, "port", 1, 65535, &c->port) != 0;
    bad |= h->config_enum(h, "qos", "0|1|2", &c->qos) != 0;
    bad |= h->config_bool(h, "retain", &c->retain) != 0;
    bad |= h->config_enum(h, "format", "json|protobuf", &c->protobuf) != 0;
    bad |= h->config_bool(h, "tls", &c->tls) != 0;
    bad |= h->config_bool(h, "insecure", &c->insecure) != 0;
    bad |= h->config_int(h, "keepalive_s", 5, 65535, &c->keepalive_s) != 0;
    bad |= h->config_int(h, "max_inflight", 1, 10000, &c->max_inflight) != 0;
    bad |= h->config_int(h, "reconnect_delay_ms", 10, 600000, &c->reconnect_min_ms) != 0;
    bad |= h->config_int(h, "reconnect_delay_max_ms", 10, 3600000, &c->reconnect_max_ms) != 0;
    bad |= h->config_int(h, "publish_timeout_ms", 10, 600000, &c->timeout_ms) != 0;
    return bad ? -EINVAL : 0;
}

/* Grows *buf to hold need bytes: 0 or -ENOMEM. */
static int reserve(char **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *p = realloc(*buf, c);
    if (p == NULL)
        return -ENOMEM;
    *buf = p;
    *cap = c;
    return 0;
}

/* The frame's payload into *out and *len: 0, -ENOMEM or -ENOTSUP (no
 * protobuf encoding from an older relay). */
static int payload(struct sink_mqtt *s, const aero_frame *f, const char **out,
                   size_t *len)
{
    if (s->protobuf) {
        if (!AERO_HAS(f, aero_frame, protobuf))
            return -ENOTSUP;
        *out = f->protobuf.ptr;
        *len = f->protobuf.len;
        return 0;
    }
    size_t n = s->host->envelope_json(s->host, f, s->buf, s->cap);
    if (n >= s->cap) {
        if (reserve(&s->buf, &s->cap, n + 1) != 0)
            return -ENOMEM;
        n = s->host->envelope_json(s->host, f, s->buf, s->cap);
        if (n >= s->cap)
            return -ENOMEM;
    }
    *out = s->buf;
    *len = n;
    return 0;
}

static const char *topic_of(struct sink_mqtt *s, const aero_frame *f)
{
    size_t n = mqtt_topic_render(s->topic, f, s->tbuf, s->tcap);
    if (n >= s->tcap) {
        if (n > MQTT_TOPIC_MAX || reserve(&s->tbuf, &s->tcap, n + 1) != 0)
            return NULL;
        mqtt_topic_render(s->topic, f, s->tbuf, s->tcap);
    }
    return s->tbuf;
}

/* -------------------------------------------------------------- vtable */

/*
 * The check slot: every problem of the section, each reported through
 * config_error with its key. No connection, no thread; the compiled topic
 * is freed at once. Also the first step of create().
 */
static int mqtt_check(const aero_host *h)
{
    struct mqtt_cfg c;
    struct mqtt_topic *t = NULL;
    char err[512];
    int bad = 0;

    if (!config_check_host(h, "sink-mqtt"))
        return -ENOTSUP;
    bad |= read_config(h, &c) != 0;
    if (!*str_key(h, "host"))
        bad |= h->config_error(h, "host", "must not be empty") != 0;
    if (*str_key(h, "password") && !*str_key(h, "username"))
        bad |= h->config_error(h, "password", "set without username") != 0;
    if (!*str_key(h, "cert_file") != !*str_key(h, "key_file"))
        bad |= h->config_error(h, *str_key(h, "cert_file") ? "cert_file" : "key_file",
                               "cert_file and key_file go together (set both or neither)") != 0;
    if (!c.tls && *str_key(h, "ca_file"))
        bad |= h->config_error(h, "ca_file", "set but tls is off (set tls = true)") != 0;
    if (!c.tls && *str_key(h, "cert_file"))
        bad |= h->config_error(h, "cert_file", "set but tls is off (set tls = true)") != 0;
    bad |= config_check_readable_file(h, "ca_file") != 0;
    bad |= config_check_readable_file(h, "cert_file") != 0;
    bad |= config_check_readable_file(h, "key_file") != 0;
    if (c.reconnect_max_ms && c.reconnect_max_ms < c.reconnect_min_ms)
        bad |= h->config_error(h, "reconnect_delay_max_ms",
                               "%lld is below reconnect_delay_ms (%lld)",
                               (long long)c.reconnect_max_ms,
                               (long long)c.reconnect_min_ms) != 0;
    int rc = mqtt_topic_compile(str_key(h, "topic"), h->relay_id(h), h->instance_name(h), &t,
                                err, sizeof(err));
    mqtt_topic_free(t);
    if (rc == -EINVAL) {
        bad |= h->config_error(h, "topic", "%s", err) != 0;
    } else if (rc != 0) {
        h->log(h, AERO_LOG_ERROR, "sink-mqtt: topic: %s", err);
        return rc;
    }
    return bad ? -EINVAL : 0;
}

static int mqtt_create(const aero_host *host, void **instance)
{
    struct sink_mqtt *s = calloc(1, sizeof(*s));
    char err[256];
    int rc;

    if (s == NULL) {
        host->log(host, AERO_LOG_ERROR, "sink-mqtt: out of memory");
        return -ENOMEM;
    }
    *instance = s;
    s->host = host;
    s->warn = WARN_LIMIT_INIT;
    /* The relay ran check() already; again here, so a create() without it
     * (a test, an older relay) never starts on a bad section. */
    struct mqtt_cfg c;
    if ((rc = mqtt_check(host)) != 0 || (rc = read_config(host, &c)) != 0)
        return rc;
    s->qos = c.qos;
    s->retain = c.retain;
    s->protobuf = c.protobuf;
    s->timeout_ms = (int)c.timeout_ms;

    const char *relay = host->relay_id ? host->relay_id(host) : "relay";
    const char *inst = host->instance_name ? host->instance_name(host) : "mqtt";
    rc = mqtt_topic_compile(str_key(host, "topic"), relay, inst, &s->topic,
                            err, sizeof(err));
    if (rc != 0) {
        host->log(host, AERO_LOG_ERROR, "sink-mqtt: topic: %s", err);
        return rc;
    }
    if (*str_key(host, "client_id"))
        snprintf(s->client_id, sizeof(s->client_id), "%s",
                 str_key(host, "client_id"));
    else
        snprintf(s->client_id, sizeof(s->client_id), "aeroarc-%s-%s", relay,
                 inst);

    if (reserve(&s->buf, &s->cap, INITIAL_BUF) != 0 ||
        reserve(&s->tbuf, &s->tcap, TOPIC_BUF) != 0) {
        host->log(host, AERO_LOG_ERROR, "sink-mqtt: out of memory");
        return -ENOMEM;
    }
    if (AERO_HAS(host, aero_host, metric_add) && host->metric_register) {
        s->m_published = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_mqtt_published_total",
            "Frames accepted: acked by the broker (QoS 1/2) or handed to the "
            "client library (QoS 0)");
        s->m_failed = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_mqtt_failed_total",
            "Frames not accepted (broker down, slow or refusing them)");
        s->m_timeouts = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_mqtt_ack_timeouts_total",
            "Batches whose acks did not all arrive within publish_timeout_ms");
    }

    struct mqtt_link_opts o = {
        .host = str_key(host, "host"),
        .port = (int)c.port,
        .client_id = s->client_id,
        .username = str_key(host, "username"),
        .password = str_key(host, "password"),
        .tls = c.tls,
        .ca_file = str_key(host, "ca_file"),
        .cert_file = str_key(host, "cert_file"),
        .key_file = str_key(host, "key_file"),
        .insecure = c.insecure,
        .keepalive_s = (int)c.keepalive_s,
        .max_inflight = (int)c.max_inflight,
        .qos = s->qos,
        .reconnect_min_ms = (int)c.reconnect_min_ms,
        .reconnect_max_ms = (int)c.reconnect_max_ms,
    };
    return mqtt_link_create(host, &o, &s->link);
}

static void fill(aero_result *results, size_t n, aero_result r)
{
    for (size_t i = 0; i < n; i++)
        results[i] = r;
}

static void mqtt_write_batch(void *instance, const aero_frame *const *frames,
                             size_t n, aero_result *results)
{
    struct sink_mqtt *s = instance;
    size_t ok = 0, rejected = 0;

    if (n > s->mids_cap) {
        int *m = realloc(s->mids, n * sizeof(*m));
        if (m == NULL) {
            fill(results, n, AERO_RETRY);
            metric_add(s, s->m_failed, n);
            return;
        }
        s->mids = m;
        s->mids_cap = n;
    }
    /* Known down or slow: answer at once, do not queue in the library. */
    aero_result gate = mqtt_link_gate(s->link);
    if (gate != AERO_OK) {
        fill(results, n, gate);
        metric_add(s, s->m_failed, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *topic = topic_of(s, frames[i]), *body = NULL;
        size_t len = 0;
        int rc = topic ? payload(s, frames[i], &body, &len) : -ENAMETOOLONG;
        s->mids[i] = 0;
        if (rc == -ENOMEM)
            results[i] = AERO_RETRY;
        else if (rc != 0)
            results[i] = AERO_REJECT;
        else
            results[i] = mqtt_link_publish(s->link, topic, body, len,
                                           s->retain, &s->mids[i]);
        rejected += results[i] == AERO_REJECT;
    }
    if (rejected > 0)
        warn_limited(s, "%zu frame(s) refused: topic or payload too large "
                     "for MQTT, or no protobuf encoding", rejected);
    if (s->qos > 0) {
        ok = mqtt_link_wait(s->link, s->mids, n, results, s->timeout_ms);
        for (size_t i = 0; i < n; i++) {
            if (results[i] == AERO_BACKOFF) {
                metric_add(s, s->m_timeouts, 1);
                warn_limited(s, "the broker did not ack within %d ms; "
                             "frames get RETRY_WITH_BACKOFF", s->timeout_ms);
                break;
            }
        }
    } else {
        for (size_t i = 0; i < n; i++)
            ok += results[i] == AERO_OK;
    }
    metric_add(s, s->m_published, ok);
    metric_add(s, s->m_failed, n - ok);
}

static void mqtt_destroy(void *instance)
{
    struct sink_mqtt *s = instance;
    if (s == NULL)
        return;
    mqtt_link_destroy(s->link);
    mqtt_topic_free(s->topic);
    free(s->buf);
    free(s->tbuf);
    free(s->mids);
    free(s);
}

static const aero_sink_vtable mqtt_vtable = {
    .size = sizeof(aero_sink_vtable),
    AERO_KEYS(mqtt_keys),
    .create = mqtt_create,
    .write_batch = mqtt_write_batch,
    .destroy = mqtt_destroy,
    .check = mqtt_check,
};

static const aero_plugin_descriptor mqtt_descriptor = {
    AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_SINK),
    .name = "sink-mqtt",
    .description = "Publishes every frame to an MQTT broker (acked OK at PUBACK "
                   "for QoS 1/2)",
    .vtable = &mqtt_vtable,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void)
{
    return &mqtt_descriptor;
}
