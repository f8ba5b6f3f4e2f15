/*
 * mqtt_link.c - owns one sink-mqtt instance's libmosquitto client: the
 * network thread that runs mosquitto_loop and reconnects with exponential
 * backoff, the connection state, and the per-message-id table that turns
 * on_publish callbacks (PUBACK for QoS 1, PUBCOMP for QoS 2) into outcomes
 * for the sink thread waiting in mqtt_link_wait.
 *
 * Why our own thread rather than mosquitto_loop_start: the thread
 * libmosquitto starts ends for good on what it calls fatal errors (any TLS
 * error, a protocol error, EPROTO: loop.c "Quit after fatal errors"), and a
 * sink must come back without a relay restart. Its reconnect delay is also
 * whole seconds only. Here every failure leads to a new attempt.
 *
 * Locking: `lock` guards everything below it in struct mqtt_link. It is
 * never held while calling into libmosquitto, so libmosquitto's own locks
 * (held while it runs our callbacks) cannot deadlock with it.
 */
#include "mqtt_link.h"

#include "mono_clock.h"

#include <errno.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    /* mosquitto_loop's select timeout: how long the network thread may take
     * to notice the stop flag when nothing wakes it. */
    LOOP_MS = 250,
    /* How long create() waits for the first attempt to succeed or fail. */
    FIRST_CONNECT_MS = 2000,
    /* How long destroy() lets queued packets (QoS 0 messages) and the
     * DISCONNECT go out before closing. */
    DRAIN_MS = 1000,
    MID_COUNT = 65536,
};

/* What we know of a message id (QoS 1/2 only). */
enum mid_state {
    MID_FREE = 0,      /* nothing outstanding, or owned by the current batch */
    MID_ACKED = 1,     /* acked; the current batch has not collected it yet */
    MID_ABANDONED = 2, /* its batch gave up waiting; the library still resends it */
};

/* How far the current connection attempt got (for the log line). */
enum sock_state {
    SOCK_CONNECTING = 0,
    SOCK_ACCEPTED = 1, /* CONNACK accepted */
    SOCK_REFUSED = 2,  /* CONNACK refused: on_connect logged why */
};

struct mqtt_link {
    const aero_host *host;
    struct mqtt_link_opts o; /* strings owned by the host's config */
    struct mosquitto *mosq;
    int lib_init;            /* mosquitto_lib_init succeeded */
    pthread_t thread;
    int thread_started;
    aero_metric *m_connected, *m_connects, *m_disconnects, *m_unacked;

    pthread_mutex_t lock;
    pthread_cond_t cond;     /* acks, connection changes, stop */
    int stopping;            /* the network thread must return */
    int draining;            /* destroy: no new connection attempts */
    int connected;           /* CONNACK accepted, not lost since */
    uint64_t generation;     /* bumped on every disconnect */
    int attempts;            /* connection attempts finished (ok or not) */
    int sock_state;          /* enum sock_state of the current attempt */
    int delay_ms;            /* next reconnect delay */
    size_t acked;            /* acks of the current batch's messages */
    size_t abandoned;        /* MID_ABANDONED entries */
    int64_t last_warn_ns;    /* network-thread warnings, at most 1/s */
    unsigned long quiet;
    unsigned char mids[MID_COUNT];
};

/* ------------------------------------------------------------ helpers */

/* l->cond waits on CLOCK_MONOTONIC. */
static struct timespec deadline_in(int64_t ms)
{
    return clock_after_ns(CLOCK_MONOTONIC, ms * 1000000);
}

static void metric_add(struct mqtt_link *l, aero_metric *m, uint64_t d)
{
    if (m != NULL)
        l->host->metric_add(m, d);
}

static void metric_set(struct mqtt_link *l, aero_metric *m, int64_t v)
{
    if (m != NULL)
        l->host->metric_set(m, v);
}

/* A broker that flaps must not flood the log: one warning a second at most,
 * with the count of those swallowed. Caller holds l->lock. */
static void warn_limited_locked(struct mqtt_link *l, const char *fmt, ...)
    AERO_PRINTF(2, 3);
static void warn_limited_locked(struct mqtt_link *l, const char *fmt, ...)
{
    int64_t now = mono_ns();
    if (l->last_warn_ns >= 0 && now - l->last_warn_ns < 1000000000) {
        l->quiet++;
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    l->host->log(l->host, AERO_LOG_WARN, "sink-mqtt: %s:%d: %s (%lu similar "
                 "warning(s) not logged)", l->o.host, l->o.port, msg, l->quiet);
    l->last_warn_ns = now;
    l->quiet = 0;
}

/* Caller holds l->lock. Wakes a batch waiting for acks: they will not come
 * on this connection. */
static void mark_down_locked(struct mqtt_link *l)
{
    if (l->connected) {
        l->connected = 0;
        l->generation++;
        metric_add(l, l->m_disconnects, 1);
        metric_set(l, l->m_connected, 0);
    }
    pthread_cond_broadcast(&l->cond);
}

/* -------------------------------------- libmosquitto callbacks (net thread) */

static void on_connect(struct mosquitto *mosq, void *arg, int rc)
{
    struct mqtt_link *l = arg;
    pthread_mutex_lock(&l->lock);
    l->attempts++;
    l->sock_state = rc == 0 ? SOCK_ACCEPTED : SOCK_REFUSED;
    if (rc == 0) {
        l->connected = 1;
        l->delay_ms = l->o.reconnect_min_ms;
        metric_add(l, l->m_connects, 1);
        metric_set(l, l->m_connected, 1);
        l->host->log(l->host, AERO_LOG_INFO, "sink-mqtt: connected to %s:%d "
                     "as %s", l->o.host, l->o.port, l->o.client_id);
    } else {
        /* The loop returns an error next and we reconnect after a delay. */
        warn_limited_locked(l, "connection refused: %s",
                            mosquitto_connack_string(rc));
    }
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static void on_disconnect(struct mosquitto *mosq, void *arg, int rc)
{
    struct mqtt_link *l = arg;
    pthread_mutex_lock(&l->lock);
    mark_down_locked(l); /* the network thread logs why */
    pthread_mutex_unlock(&l->lock);
}

/* PUBACK (QoS 1) or PUBCOMP (QoS 2) for mid: the broker has the message.
 * libmosquitto calls this once per message. It may run before the
 * publishing thread has even seen mid (the ack raced mosquitto_publish's
 * return): MID_ACKED waits there to be collected. */
static void on_publish(struct mosquitto *mosq, void *arg, int mid)
{
    struct mqtt_link *l = arg;
    if (l->o.qos == 0 || mid <= 0 || mid >= MID_COUNT)
        return; /* QoS 0 "publish" is just "written to the socket" */
    pthread_mutex_lock(&l->lock);
    if (l->mids[mid] == MID_ABANDONED) {
        l->mids[mid] = MID_FREE;
        l->abandoned--;
        metric_set(l, l->m_unacked, (int64_t)l->abandoned);
    } else {
        l->mids[mid] = MID_ACKED;
        l->acked++;
    }
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

/* ------------------------------------------------------ network thread */

/* One connection attempt; the first call also stores host/port/keepalive
 * in the client (later ones reuse them). Non-blocking: the loop finishes
 * the TCP/TLS/MQTT handshake. */
static int start_attempt(struct mqtt_link *l, int *configured)
{
    if (*configured)
        return mosquitto_reconnect_async(l->mosq);
    int rc = mosquitto_connect_async(l->mosq, l->o.host, l->o.port,
                                     l->o.keepalive_s);
    /* connect_async records the address before trying it, unless the
     * arguments themselves were refused. */
    if (rc != MOSQ_ERR_INVAL)
        *configured = 1;
    return rc;
}

/* Why the attempt or connection that just ended ended, in the log.
 * (mosquitto_strerror(MOSQ_ERR_ERRNO) is this thread's strerror(errno).) */
static void log_end_locked(struct mqtt_link *l, int rc)
{
    if (l->stopping || l->draining || l->sock_state == SOCK_REFUSED)
        return; /* on_connect said why */
    warn_limited_locked(l, "%s: %s", l->sock_state == SOCK_ACCEPTED
                        ? "connection lost" : "cannot connect",
                        mosquitto_strerror(rc));
}

static void *link_main(void *arg)
{
    struct mqtt_link *l = arg;
    int have_socket = 0, configured = 0;

    pthread_mutex_lock(&l->lock);
    while (!l->stopping) {
        if (!have_socket && l->draining) {
            pthread_cond_wait(&l->cond, &l->lock);
            continue;
        }
        if (!have_socket)
            l->sock_state = SOCK_CONNECTING;
        pthread_mutex_unlock(&l->lock);
        int rc = MOSQ_ERR_SUCCESS;
        if (!have_socket) {
            rc = start_attempt(l, &configured);
            have_socket = rc == MOSQ_ERR_SUCCESS;
        }
        if (rc == MOSQ_ERR_SUCCESS)
            rc = mosquitto_loop(l->mosq, LOOP_MS, 1);
        pthread_mutex_lock(&l->lock);
        if (rc == MOSQ_ERR_SUCCESS)
            continue;

        /* Lost, refused or never connected: try again after a delay. */
        have_socket = 0;
        l->attempts++;
        log_end_locked(l, rc);
        mark_down_locked(l);
        struct timespec until = deadline_in(l->delay_ms);
        while (!l->stopping &&
               pthread_cond_timedwait(&l->cond, &l->lock, &until) != ETIMEDOUT)
            ;
        l->delay_ms = l->delay_ms >= l->o.reconnect_max_ms / 2
                          ? l->o.reconnect_max_ms
                          : l->delay_ms * 2;
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

/* ----------------------------------------------------------- public */

/* An encrypted key_file would make OpenSSL prompt for its passphrase on the
 * terminal, from the network thread: refuse instead (the connection fails
 * with a TLS error, logged and retried). */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
    return 0;
}

static int configure(struct mqtt_link *l)
{
    const struct mqtt_link_opts *o = &l->o;
    const aero_host *h = l->host;
    int rc;

    mosquitto_connect_callback_set(l->mosq, on_connect);
    mosquitto_disconnect_callback_set(l->mosq, on_disconnect);
    mosquitto_publish_callback_set(l->mosq, on_publish);
    /* Another thread (ours) drives the socket: publish only queues and
     * wakes it. */
    mosquitto_threaded_set(l->mosq, true);
    if (mosquitto_max_inflight_messages_set(l->mosq,
                                            (unsigned)o->max_inflight) != 0)
        return -EINVAL;
    if (o->username && *o->username) {
        rc = mosquitto_username_pw_set(l->mosq, o->username,
                                       o->password && *o->password
                                           ? o->password : NULL);
        if (rc != MOSQ_ERR_SUCCESS) {
            h->log(h, AERO_LOG_ERROR, "sink-mqtt: username: %s",
                   mosquitto_strerror(rc));
            return -EINVAL;
        }
    }
    if (o->tls) {
        int has_ca = o->ca_file && *o->ca_file;
        rc = mosquitto_tls_set(l->mosq, has_ca ? o->ca_file : NULL,
                               has_ca ? NULL : "/etc/ssl/certs",
                               o->cert_file && *o->cert_file ? o->cert_file : NULL,
                               o->key_file && *o->key_file ? o->key_file : NULL,
                               no_passphrase);
        if (rc != MOSQ_ERR_SUCCESS) {
            h->log(h, AERO_LOG_ERROR, "sink-mqtt: TLS files (ca_file %s, "
                   "cert_file %s, key_file %s): %s", has_ca ? o->ca_file : "-",
                   o->cert_file && *o->cert_file ? o->cert_file : "-",
                   o->key_file && *o->key_file ? o->key_file : "-",
                   mosquitto_strerror(rc));
            return -EINVAL;
        }
        mosquitto_tls_insecure_set(l->mosq, o->insecure != 0);
    }
    return 0;
}

static int first_attempt_done(struct mqtt_link *l)
{
    pthread_mutex_lock(&l->lock);
    struct timespec until = deadline_in(FIRST_CONNECT_MS);
    while (l->attempts == 0 &&
           pthread_cond_timedwait(&l->cond, &l->lock, &until) != ETIMEDOUT)
        ;
    int connected = l->connected;
    pthread_mutex_unlock(&l->lock);
    return connected;
}

int mqtt_link_create(const aero_host *host, const struct mqtt_link_opts *o,
                     struct mqtt_link **out)
{
    int rc = -ENOMEM;
    struct mqtt_link *l = calloc(1, sizeof(*l));

    *out = l;
    if (l == NULL)
        goto fail;
    l->host = host;
    l->o = *o;
    l->delay_ms = o->reconnect_min_ms;
    l->last_warn_ns = -1;
    mono_cond_init(&l->cond);
    pthread_mutex_init(&l->lock, NULL);

    if (AERO_HAS(host, aero_host, metric_set) && host->metric_register) {
        l->m_connected = host->metric_register(host, AERO_METRIC_GAUGE,
            "aero_sink_mqtt_connected", "1 while connected to the broker");
        l->m_connects = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_mqtt_connects_total", "Connections the broker accepted");
        l->m_disconnects = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_mqtt_disconnects_total", "Connections lost or closed");
        l->m_unacked = host->metric_register(host, AERO_METRIC_GAUGE,
            "aero_sink_mqtt_unacked_messages",
            "Messages whose batch gave up waiting and the broker has not acked yet");
    }

    if (mosquitto_lib_init() != MOSQ_ERR_SUCCESS) {
        host->log(host, AERO_LOG_ERROR, "sink-mqtt: mosquitto_lib_init failed");
        rc = -EIO;
        goto fail;
    }
    l->lib_init = 1;
    /* clean session: nothing subscribes through this client, and a fresh
     * session after a restart must not inherit another run's state. */
    l->mosq = mosquitto_new(o->client_id, true, l);
    if (l->mosq == NULL) {
        rc = -errno;
        host->log(host, AERO_LOG_ERROR, "sink-mqtt: mosquitto_new: %s",
                  strerror(errno));
        goto fail;
    }
    if ((rc = configure(l)) != 0)
        goto fail;
    if ((rc = -pthread_create(&l->thread, NULL, link_main, l)) != 0) {
        host->log(host, AERO_LOG_ERROR, "sink-mqtt: thread: %s", strerror(-rc));
        goto fail;
    }
    l->thread_started = 1;
    if (!first_attempt_done(l))
        host->log(host, AERO_LOG_WARN, "sink-mqtt: broker %s:%d not connected "
                  "yet; frames get TEMPORARY_ERROR until it is", o->host,
                  o->port);
    return 0;
fail:
    return rc;
}

aero_result mqtt_link_gate(struct mqtt_link *l)
{
    aero_result r = AERO_OK;
    pthread_mutex_lock(&l->lock);
    if (!l->connected)
        r = AERO_RETRY;
    else if (l->abandoned >= (size_t)l->o.max_inflight)
        r = AERO_BACKOFF;
    l->acked = 0;
    pthread_mutex_unlock(&l->lock);
    return r;
}

aero_result mqtt_link_publish(struct mqtt_link *l, const char *topic,
                              const void *payload, size_t len, int retain,
                              int *mid)
{
    if (len > (size_t)268435455) /* MQTT's largest packet */
        return AERO_REJECT;
    int rc = mosquitto_publish(l->mosq, mid, topic, (int)len, payload,
                               l->o.qos, retain != 0);
    switch (rc) {
    case MOSQ_ERR_SUCCESS:
        return AERO_OK;
    case MOSQ_ERR_PAYLOAD_SIZE:
    case MOSQ_ERR_OVERSIZE_PACKET:
    case MOSQ_ERR_MALFORMED_UTF8:
    case MOSQ_ERR_INVAL:
        return AERO_REJECT; /* this message can never be sent as it is */
    default:
        return AERO_RETRY;  /* NO_CONN, CONN_LOST, NOMEM, ... */
    }
}

size_t mqtt_link_wait(struct mqtt_link *l, const int *mids, size_t n,
                      aero_result *results, int timeout_ms)
{
    size_t pending = 0, ok = 0;
    for (size_t i = 0; i < n; i++)
        pending += results[i] == AERO_OK;

    pthread_mutex_lock(&l->lock);
    uint64_t gen = l->generation;
    struct timespec until = deadline_in(timeout_ms);
    int timed_out = 0;
    while (l->acked < pending && l->connected && l->generation == gen &&
           !timed_out)
        timed_out = pthread_cond_timedwait(&l->cond, &l->lock, &until) ==
                    ETIMEDOUT;
    int lost = !l->connected || l->generation != gen;
    for (size_t i = 0; i < n; i++) {
        if (results[i] != AERO_OK)
            continue;
        int mid = mids[i];
        if (mid > 0 && mid < MID_COUNT && l->mids[mid] == MID_ACKED) {
            l->mids[mid] = MID_FREE;
            ok++;
            continue;
        }
        /* Still in libmosquitto's queue: it will be resent (after a
         * reconnect too) and acked later; the agent resends it as well. */
        if (mid > 0 && mid < MID_COUNT && l->mids[mid] == MID_FREE) {
            l->mids[mid] = MID_ABANDONED;
            l->abandoned++;
        }
        results[i] = lost ? AERO_RETRY : AERO_BACKOFF;
    }
    l->acked = 0;
    metric_set(l, l->m_unacked, (int64_t)l->abandoned);
    pthread_mutex_unlock(&l->lock);
    return ok;
}

void mqtt_link_destroy(struct mqtt_link *l)
{
    if (l == NULL)
        return;
    if (l->thread_started) {
        /* Let what libmosquitto still has queued (QoS 0 messages handed
         * over and acked OK) go out ahead of the DISCONNECT, then stop. */
        pthread_mutex_lock(&l->lock);
        l->draining = 1;
        pthread_mutex_unlock(&l->lock);
        if (mosquitto_disconnect(l->mosq) == MOSQ_ERR_SUCCESS) {
            pthread_mutex_lock(&l->lock);
            struct timespec until = deadline_in(DRAIN_MS);
            while (l->connected &&
                   pthread_cond_timedwait(&l->cond, &l->lock, &until) != ETIMEDOUT)
                ;
            pthread_mutex_unlock(&l->lock);
        }
        pthread_mutex_lock(&l->lock);
        l->stopping = 1;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
        pthread_join(l->thread, NULL);
    }
    if (l->mosq != NULL)
        mosquitto_destroy(l->mosq);
    if (l->lib_init)
        mosquitto_lib_cleanup();
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
