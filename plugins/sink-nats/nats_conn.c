/*
 * nats_conn.c - sink-nats' NATS connection (see nats_conn.h): natsOptions
 * from config, connect-or-retry-in-background, the JetStream context, and
 * the callbacks that keep the connected gauge, the reconnect counter and
 * the disconnect epoch. Callbacks run on libnats threads and only touch
 * atomics, metrics, the log and (on close) the closed flag; they must not
 * block, since libnats serialises every connection's callbacks on one thread.
 */
#include "nats_conn.h"

#include "mono_clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    MAX_SERVERS = 32,
    /* Longest wait in nats_conn_close for libnats' closed callback. */
    CLOSE_WAIT_S = 10,
};

static void set_connected(struct nats_conn *c, int up)
{
    if (c->m_connected != NULL)
        c->host->metric_set(c->m_connected, up);
}

/* libnats' last error of this thread, for messages. */
static const char *last_error(natsStatus s)
{
    const char *text = nats_GetLastError(NULL);
    return text && *text ? text : natsStatus_GetText(s);
}

/* --------------------------------------------------- libnats callbacks */

static void on_connected(natsConnection *nc, void *closure)
{
    struct nats_conn *c = closure;
    char url[256] = "";

    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    set_connected(c, 1);
    atomic_store(&c->stream_check, 1);
    c->host->log(c->host, AERO_LOG_INFO, "sink-nats: connected to %s", url);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    struct nats_conn *c = closure;

    set_connected(c, 0);
    atomic_fetch_add(&c->epoch, 1);
    if (c->on_down != NULL)
        c->on_down(c->on_down_arg);
    if (!natsConnection_IsClosed(nc))
        c->host->log(c->host, AERO_LOG_WARN, "sink-nats: disconnected from "
                     "NATS; frames are retried until it reconnects");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    struct nats_conn *c = closure;
    char url[256] = "";

    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    if (c->m_reconnects != NULL)
        c->host->metric_add(c->m_reconnects, 1);
    set_connected(c, 1);
    atomic_store(&c->stream_check, 1); /* the server may have lost the stream */
    c->host->log(c->host, AERO_LOG_INFO, "sink-nats: reconnected to %s", url);
}

/* The last callback libnats makes for a connection. */
static void on_closed(natsConnection *nc, void *closure)
{
    struct nats_conn *c = closure;

    set_connected(c, 0);
    atomic_fetch_add(&c->epoch, 1);
    if (c->on_down != NULL)
        c->on_down(c->on_down_arg);
    pthread_mutex_lock(&c->mu);
    c->closed = 1;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

/* Asynchronous errors (permission violations, slow consumer): may come
 * once per message, so at most one line a second. */
static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
                     void *closure)
{
    struct nats_conn *c = closure;
    long long now = mono_ns(), last = atomic_load(&c->last_err_log_ns);

    if (last != 0 && now - last < 1000000000)
        return;
    if (!atomic_compare_exchange_strong(&c->last_err_log_ns, &last, now))
        return;
    const char *detail = NULL;
    natsConnection_GetLastError(nc, &detail);
    c->host->log(c->host, AERO_LOG_WARN, "sink-nats: NATS error: %s",
                 detail && *detail ? detail : natsStatus_GetText(err));
}

/* Capped exponential backoff with jitter: wait, 2*wait, 4*wait ... up to
 * max_wait, each drawn from [d/2, d] so relays do not reconnect in step. */
static int64_t reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
    struct nats_conn *c = closure;
    int64_t d = c->wait_ms;

    for (int i = 1; i < attempts && d < c->max_wait_ms; i++)
        d *= 2;
    if (d > c->max_wait_ms)
        d = c->max_wait_ms;
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return d / 2 + (int64_t)(c->rng % (uint64_t)(d / 2 + 1));
}

/* ------------------------------------------------------------ options */

/* Splits the comma-separated url into trimmed servers (pointers into buf). */
static int split_servers(char *buf, const char **servers, int *n)
{
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*tok == '\0')
            continue;
        if (*n == MAX_SERVERS)
            return -E2BIG;
        servers[(*n)++] = tok;
    }
    return *n > 0 ? 0 : -EINVAL;
}

static int set_servers(struct nats_conn *c, const char *url)
{
    const char *servers[MAX_SERVERS];
    int n = 0;
    char *buf = strdup(url);

    if (buf == NULL)
        return -ENOMEM;
    int rc = split_servers(buf, servers, &n);
    if (rc != 0) {
        c->host->log(c->host, AERO_LOG_ERROR, "sink-nats: url: %s", rc == -E2BIG
                     ? "more than 32 servers" : "no server URL given");
    } else if (natsOptions_SetServers(c->opts, servers, n) != NATS_OK) {
        c->host->log(c->host, AERO_LOG_ERROR, "sink-nats: url: %s",
                     last_error(NATS_ERR));
        rc = -EINVAL;
    }
    free(buf);
    return rc;
}

static int has(const char *s)
{
    return s != NULL && *s != '\0';
}

/* Auth and TLS. Files are read here, so a bad path fails create(). */
static int set_security(struct nats_conn *c, const struct nats_conn_cfg *cfg)
{
    natsOptions *o = c->opts;
    natsStatus s = NATS_OK;
    const char *what = NULL;

    if (has(cfg->user) && (s = natsOptions_SetUserInfo(o, cfg->user,
                                                       cfg->password)) != NATS_OK)
        what = "user";
    else if (has(cfg->token) && (s = natsOptions_SetToken(o, cfg->token)) != NATS_OK)
        what = "token";
    else if (has(cfg->creds_file) &&
             (s = natsOptions_SetUserCredentialsFromFiles(o, cfg->creds_file,
                                                          NULL)) != NATS_OK)
        what = "creds_file";
    else if ((cfg->tls || has(cfg->ca_file) || has(cfg->cert_file)) &&
             (s = natsOptions_SetSecure(o, true)) != NATS_OK)
        what = "tls";
    else if (has(cfg->ca_file) &&
             (s = natsOptions_LoadCATrustedCertificates(o, cfg->ca_file)) != NATS_OK)
        what = "ca_file";
    else if (has(cfg->cert_file) &&
             (s = natsOptions_LoadCertificatesChain(o, cfg->cert_file,
                                                    cfg->key_file)) != NATS_OK)
        what = "cert_file/key_file";
    else if (has(cfg->tls_hostname) &&
             (s = natsOptions_SetExpectedHostname(o, cfg->tls_hostname)) != NATS_OK)
        what = "tls_hostname";
    if (what == NULL)
        return 0;
    /* Never echo secrets: name the key, print libnats' reason only for
     * file and TLS keys (it names files, not their content). */
    c->host->log(c->host, AERO_LOG_ERROR, "sink-nats: %s: %s", what,
                 (strcmp(what, "user") == 0 || strcmp(what, "token") == 0)
                 ? natsStatus_GetText(s) : last_error(s));
    return -EINVAL;
}

static int set_options(struct nats_conn *c, const struct nats_conn_cfg *cfg)
{
    natsOptions *o = c->opts;
    natsStatus s = NATS_OK;
    int rc;

    if ((rc = set_servers(c, cfg->url)) != 0)
        return rc;
    if ((rc = set_security(c, cfg)) != 0)
        return rc;
    if (s == NATS_OK && has(cfg->name))
        s = natsOptions_SetName(o, cfg->name);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1); /* forever */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, cfg->reconnect_wait_ms);
    if (s == NATS_OK)
        s = natsOptions_SetCustomReconnectDelay(o, reconnect_delay, c);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, c);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(o, on_disconnected, c);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(o, on_reconnected, c);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(o, on_closed, c);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(o, on_error, c);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(o, cfg->ping_interval_s * 1000);
    /* JetStream API requests (stream lookup) fail at once when the
     * connection drops instead of waiting for their timeout. */
    if (s == NATS_OK)
        s = natsOptions_SetFailRequestsOnDisconnect(o, true);
    if (s != NATS_OK) {
        c->host->log(c->host, AERO_LOG_ERROR, "sink-nats: connection options: "
                     "%s", last_error(s));
        return -EINVAL;
    }
    return 0;
}

/* --------------------------------------------------------------- API */

int nats_conn_open(struct nats_conn *c, const aero_host *host,
                   const struct nats_conn_cfg *cfg)
{
    natsStatus s;
    int rc;

    c->host = host;
    c->wait_ms = cfg->reconnect_wait_ms;
    c->max_wait_ms = cfg->reconnect_max_wait_ms > cfg->reconnect_wait_ms
                         ? cfg->reconnect_max_wait_ms : cfg->reconnect_wait_ms;
    c->rng = (uint64_t)mono_ns() ^ (uint64_t)(uintptr_t)c;
    if (c->rng == 0)
        c->rng = 0x9e3779b97f4a7c15ULL;
    c->on_down = cfg->on_down;
    c->on_down_arg = cfg->on_down_arg;
    atomic_store(&c->epoch, 0);
    atomic_store(&c->stream_check, 0);
    atomic_store(&c->last_err_log_ns, 0);

    if (pthread_mutex_init(&c->mu, NULL) != 0)
        return -ENOMEM;
    if (mono_cond_init(&c->cond) != 0) {
        pthread_mutex_destroy(&c->mu);
        return -ENOMEM;
    }
    c->sync_ok = 1;

    if (AERO_HAS(host, aero_host, metric_set) && host->metric_register) {
        c->m_connected = host->metric_register(host, AERO_METRIC_GAUGE,
            "aero_sink_nats_connected",
            "1 while connected to a NATS server, else 0");
        c->m_reconnects = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_nats_reconnects_total",
            "Times the connection to NATS was re-established");
    }

    if (natsOptions_Create(&c->opts) != NATS_OK) {
        host->log(host, AERO_LOG_ERROR, "sink-nats: cannot initialise libnats: %s",
                  last_error(NATS_ERR));
        return -ENOMEM;
    }
    if ((rc = set_options(c, cfg)) != 0)
        return rc;

    s = natsConnection_Connect(&c->nc, c->opts);
    if (s == NATS_OK) {
        char url[256] = "";
        natsConnection_GetConnectedUrl(c->nc, url, sizeof(url));
        set_connected(c, 1);
        atomic_store(&c->stream_check, 1);
        host->log(host, AERO_LOG_INFO, "sink-nats: connected to %s", url);
    } else if (s == NATS_NOT_YET_CONNECTED) {
        set_connected(c, 0);
        host->log(host, AERO_LOG_WARN, "sink-nats: cannot reach %s yet; "
                  "retrying in the background, frames are retried until then",
                  cfg->url);
    } else {
        host->log(host, AERO_LOG_ERROR, "sink-nats: cannot connect to %s: %s",
                  cfg->url, last_error(s));
        return -EIO;
    }

    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = cfg->request_timeout_ms;
    jo.PublishAsync.MaxPending = cfg->max_pending;
    jo.PublishAsync.AckHandler = cfg->ack_handler;
    jo.PublishAsync.AckHandlerClosure = cfg->ack_closure;
    jo.PublishAsync.StallWait = cfg->request_timeout_ms;
    if ((s = natsConnection_JetStream(&c->js, c->nc, &jo)) != NATS_OK) {
        host->log(host, AERO_LOG_ERROR, "sink-nats: JetStream context: %s",
                  last_error(s));
        return -ENOMEM;
    }
    return 0;
}

int nats_conn_up(struct nats_conn *c)
{
    return c->nc != NULL &&
           natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED;
}

void nats_conn_url(struct nats_conn *c, char *buf, size_t len)
{
    if (c->nc == NULL || natsConnection_GetConnectedUrl(c->nc, buf, len) != NATS_OK ||
        buf[0] == '\0')
        snprintf(buf, len, "(not connected)");
}

void nats_conn_close(struct nats_conn *c)
{
    if (c->nc != NULL) {
        /* Close posts the closed callback after every other one of this
         * connection; once it ran, libnats holds no pointer to c. */
        natsConnection_Close(c->nc);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += CLOSE_WAIT_S;
        pthread_mutex_lock(&c->mu);
        int rc = 0;
        while (!c->closed && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&c->cond, &c->mu, &until);
        int closed = c->closed;
        pthread_mutex_unlock(&c->mu);
        if (!closed)
            c->host->log(c->host, AERO_LOG_ERROR, "sink-nats: libnats did not "
                         "report the connection closed within %d s", CLOSE_WAIT_S);
    }
    if (c->js != NULL)
        jsCtx_Destroy(c->js);
    if (c->nc != NULL)
        natsConnection_Destroy(c->nc);
    if (c->opts != NULL)
        natsOptions_Destroy(c->opts);
    if (c->sync_ok) {
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->mu);
    }
    c->js = NULL;
    c->nc = NULL;
    c->opts = NULL;
    c->sync_ok = 0;
}
