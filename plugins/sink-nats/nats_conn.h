/*
 * nats_conn.h - sink-nats' connection to NATS: options from the sink's
 * config (servers, auth, TLS, reconnect with capped exponential backoff,
 * forever), a connect that does not fail when the server is down, the
 * JetStream context, and connection state kept by libnats callbacks.
 * Opened and closed on the main thread; state read from the sink thread;
 * callbacks run on libnats threads.
 */
#ifndef SINK_NATS_CONN_H
#define SINK_NATS_CONN_H

#include <aeroarc/plugin.h>
#include <nats/nats.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* What nats_conn_open needs; strings are borrowed for the call only. */
struct nats_conn_cfg {
    const char *url;           /* one URL or a comma-separated list */
    const char *name;          /* connection name shown by the server */
    const char *user, *password, *token, *creds_file; /* empty: unset */
    int tls;                   /* require TLS */
    const char *ca_file, *cert_file, *key_file, *tls_hostname;
    int64_t reconnect_wait_ms, reconnect_max_wait_ms;
    int64_t ping_interval_s;
    int64_t request_timeout_ms; /* JetStream API calls and stalled publishes */
    int64_t max_pending;        /* async publishes in flight */
    jsPubAckHandler ack_handler;
    void *ack_closure;
    void (*on_down)(void *arg); /* after every disconnect (libnats thread) */
    void *on_down_arg;
};

struct nats_conn {
    const aero_host *host;
    natsOptions *opts;
    natsConnection *nc;
    jsCtx *js;
    atomic_uint epoch;       /* +1 at every disconnect and at close */
    atomic_int stream_check; /* set at every (re)connect; cleared by the sink */
    atomic_llong last_err_log_ns;
    int64_t wait_ms, max_wait_ms;
    uint64_t rng;            /* backoff jitter; reconnect thread only */
    void (*on_down)(void *arg);
    void *on_down_arg;
    aero_metric *m_connected, *m_reconnects;

    pthread_mutex_t mu;      /* guards closed */
    pthread_cond_t cond;
    int closed;              /* the closed callback ran: no more callbacks */
    int sync_ok;             /* mu and cond exist */
};

/*
 * Connect. A server that cannot be reached is not an error: a warning is
 * logged and libnats keeps trying in the background. Returns 0, or
 * -EINVAL / -ENOMEM / -EIO after logging why (bad URL, unreadable TLS or
 * credentials file). nats_conn_close must be called either way.
 */
int nats_conn_open(struct nats_conn *c, const aero_host *host,
                   const struct nats_conn_cfg *cfg);

/* True while connected (not connecting, reconnecting or closed). */
int nats_conn_up(struct nats_conn *c);

/* "nats://127.0.0.1:4222" while connected, else "(not connected)". */
void nats_conn_url(struct nats_conn *c, char *buf, size_t len);

/* Close, wait for the last callback, free. Safe on a zeroed or half-open c. */
void nats_conn_close(struct nats_conn *c);

#endif
