/*
 * route_redis.c - the route-redis plugin: "which relay holds which drone" as
 * Redis keys drone:{id} = {"relay_id":...,"session_id":...} with a TTL
 * (docs/routing.md). This file owns the vtable, the configuration
 * (environment over relay.ini) and the instance's lifetime. session_up and
 * session_down run on any relay thread: they only update the shared state
 * under a mutex never held across I/O, and wake the worker (route_worker.c),
 * which does every Redis round trip. No Redis address: the instance idles.
 * Config values are read through the host's typed readers (ABI 1.1); the
 * check slot (also under --check) reports bad values and addresses, from
 * relay.ini or the environment, without connecting.
 */
#include "route_redis.h"

#include "config_check.h"
#include "report_state.h"
#include "route_worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DROP_LOG_EVERY_MS 60000

static const aero_config_key route_redis_keys[] = {
    {.name = "redis_addr", .type = AERO_KEY_STRING, .default_value = "",
     .help = "Redis host:port ([v6]:port, unix:/path); empty: publish nothing; REDIS_ADDR wins"},
    {.name = "redis_password", .type = AERO_KEY_STRING, .default_value = "",
     .help = "Redis AUTH password; empty: none; REDIS_PASSWORD wins"},
    {.name = "redis_db", .type = AERO_KEY_INT, .default_value = "0",
     .help = "Redis database number (SELECT); REDIS_DB wins", .min = 0, .max = 1000000},
    {.name = "connect_timeout_ms", .type = AERO_KEY_INT, .default_value = "500",
     .help = "connect and handshake timeout (also the startup PING)", .min = 10, .max = 60000},
    {.name = "command_timeout_ms", .type = AERO_KEY_INT, .default_value = "1000",
     .help = "longest wait for one Redis read or write before the link is dropped", .min = 10,
     .max = 600000},
    {.name = "reconnect_max_ms", .type = AERO_KEY_INT, .default_value = "5000",
     .help = "cap of the reconnect backoff (doubles from 100 ms, jittered)", .min = 100,
     .max = 600000},
};

/* The environment variable env (NULL: none) if set and non-empty: it wins. */
static const char *env_value(const char *env)
{
    const char *v = env ? getenv(env) : NULL;
    return v && v[0] ? v : NULL;
}

/* Environment value if set and non-empty, else the section's value. */
static const char *setting(const aero_host *host, const char *env, const char *key)
{
    const char *v = env_value(env);
    if (v)
        return v;
    v = host->config_get(host, key);
    return v ? v : "";
}

/* Integer within [min, max]: the environment variable env when set (it
 * wins; a bad one is reported against `key`, naming the variable), else
 * the key through the host's typed reader. 0 or -EINVAL (reported). */
static int int_setting(const aero_host *host, const char *env, const char *key, long long min,
                       long long max, long long *out)
{
    const char *v = env_value(env);
    int64_t x = 0;
    if (v) {
        char *end;
        errno = 0;
        long long e = strtoll(v, &end, 10);
        if (errno || *end || end == v || e < min || e > max)
            return host->config_error(host, key,
                                      "%s: invalid value \"%s\" (expected an integer from "
                                      "%lld to %lld)",
                                      env, v, min, max);
        *out = e;
        return 0;
    }
    if (host->config_int(host, key, min, max, &x) != 0)
        return -EINVAL;
    *out = x;
    return 0;
}

static void register_metrics(struct route_redis *rr)
{
    const aero_host *h = rr->host;
    struct route_redis_metrics *m = &rr->m;
    m->publishes = h->metric_register(h, AERO_METRIC_COUNTER, "aero_route_redis_publishes_total",
                                      "Route keys written unconditionally at Register.");
    m->refreshes = h->metric_register(h, AERO_METRIC_COUNTER, "aero_route_redis_refreshes_total",
                                      "Route keys extended or recreated by the refresh.");
    m->held_elsewhere =
        h->metric_register(h, AERO_METRIC_COUNTER, "aero_route_redis_held_elsewhere_total",
                           "Refreshes that left a key alone: it holds another session.");
    m->deletes = h->metric_register(h, AERO_METRIC_COUNTER, "aero_route_redis_deletes_total",
                                    "Route keys removed by compare-and-delete.");
    m->errors = h->metric_register(h, AERO_METRIC_COUNTER, "aero_route_redis_errors_total",
                                   "Failed connects, lost connections, error replies and "
                                   "forgotten deletes.");
    m->reconnects = h->metric_register(h, AERO_METRIC_COUNTER, "aero_route_redis_reconnects_total",
                                       "Connections to Redis made after it was unreachable.");
    m->connected = h->metric_register(h, AERO_METRIC_GAUGE, "aero_route_redis_connected",
                                      "1 while connected to Redis, else 0.");
    m->sessions = h->metric_register(h, AERO_METRIC_GAUGE, "aero_route_redis_sessions",
                                     "Sessions whose route key this relay maintains.");
    m->pending_deletes =
        h->metric_register(h, AERO_METRIC_GAUGE, "aero_route_redis_pending_deletes",
                           "Ended sessions whose key still has to be compare-and-deleted.");
}

/* Read the configuration into rr (no I/O, nothing allocated); every
 * problem is reported through config_error. 0, or -EINVAL. */
static int configure(struct route_redis *rr)
{
    const aero_host *h = rr->host;
    char err[256];
    long long db = 0, ttl = 45, ct = 500, cmd = 1000, rmax = 5000;
    const char *addr = setting(h, "REDIS_ADDR", "redis_addr");
    int bad = 0;

    snprintf(rr->addr, sizeof(rr->addr), "%s", addr);
    if (!addr[0])
        return 0;
    bad |= int_setting(h, NULL, "ttl_s", 1, 86400, &ttl) != 0; /* the core's key of [route] */
    bad |= int_setting(h, "REDIS_DB", "redis_db", 0, 1000000, &db) != 0;
    bad |= int_setting(h, NULL, "connect_timeout_ms", 10, 60000, &ct) != 0;
    bad |= int_setting(h, NULL, "command_timeout_ms", 10, 600000, &cmd) != 0;
    bad |= int_setting(h, NULL, "reconnect_max_ms", 100, 600000, &rmax) != 0;
    if (redis_link_parse_addr(addr, &rr->opts, err, sizeof(err)) < 0) {
        if (env_value("REDIS_ADDR"))
            h->config_error(h, "redis_addr", "REDIS_ADDR: %s", err);
        else
            h->config_error(h, "redis_addr", "%s", err);
        bad = 1;
    }
    if (bad)
        return -EINVAL;
    rr->ttl_s = (int)ttl;
    rr->opts.db = db;
    rr->opts.connect_timeout_ms = (int)ct;
    rr->opts.command_timeout_ms = (int)cmd;
    rr->reconnect_max_ms = (int)rmax;
    return 0;
}

/* The check slot: configure() on a throw-away instance; no connection. */
static int rr_check(const aero_host *host)
{
    if (!config_check_host(host, "route-redis"))
        return -ENOTSUP;
    struct route_redis *rr = calloc(1, sizeof(*rr));
    if (!rr)
        return -ENOMEM;
    rr->host = host;
    int rc = configure(rr);
    free(rr);
    return rc;
}

static int init_sync(struct route_redis *rr)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -ENOMEM;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* deadlines immune to clock steps */
    int rc = pthread_mutex_init(&rr->mu, NULL);
    if (rc == 0 && (rc = pthread_cond_init(&rr->wake, &ca)) != 0)
        pthread_mutex_destroy(&rr->mu);
    else if (rc == 0 && (rc = pthread_cond_init(&rr->done, &ca)) != 0) {
        pthread_cond_destroy(&rr->wake);
        pthread_mutex_destroy(&rr->mu);
    }
    pthread_condattr_destroy(&ca);
    rr->sync_ready = rc == 0;
    return -rc;
}

static int rr_create(const aero_host *host, void **instance)
{
    struct route_redis *rr = calloc(1, sizeof(*rr));
    char err[256];
    int rc;

    if (!rr)
        return -ENOMEM;
    *instance = rr; /* destroy() takes it from here, half-built or not */
    rr->host = host;
    rr->io_fd = -1;
    if (!config_check_host(host, "route-redis"))
        return -ENOTSUP;
    register_metrics(rr);
    if ((rc = configure(rr)) < 0)
        return rc;
    if (!rr->addr[0]) {
        rr->idle = true;
        host->log(host, AERO_LOG_INFO,
                  "no Redis address (REDIS_ADDR or [route] redis_addr): routing is idle, no "
                  "routing hints are published");
        report_state(host, AERO_STATE_OK, "idle: no Redis address, publishes no routes");
        return 0;
    }
    if ((rc = init_sync(rr)) < 0)
        return rc;
    rr->password = strdup(setting(host, "REDIS_PASSWORD", "redis_password"));
    const char *relay_id = host->relay_id(host);
    rr->relay_id = strdup(relay_id ? relay_id : "relay");
    rr->state = route_state_new(ROUTE_REDIS_MAX_DEAD);
    if (!rr->password || !rr->relay_id || !rr->state)
        return -ENOMEM;
    rr->opts.password = rr->password;

    /* The startup PING: short, and never a reason not to serve. */
    if (redis_link_open(&rr->link, &rr->opts, err, sizeof(err)) == 0) {
        host->metric_set(rr->m.connected, 1);
        report_state(host, AERO_STATE_OK, "connected to Redis at %s", rr->addr);
        host->log(host, AERO_LOG_INFO,
                  "publishing routing hints to Redis at %s (db %lld) as relay %s: key "
                  "drone:{id}, TTL %d s, refreshed every %d ms",
                  rr->addr, rr->opts.db, rr->relay_id, rr->ttl_s, rr->ttl_s * 1000 / 2);
    } else {
        report_state(host, AERO_STATE_FAILING, "not connected to Redis at %s: %s", rr->addr, err);
        host->log(host, AERO_LOG_WARN,
                  "startup PING of Redis at %s failed (%s): serving anyway; routing hints "
                  "are published once it answers (retrying with backoff up to %d ms)",
                  rr->addr, err, rr->reconnect_max_ms);
    }
    if ((rc = route_worker_start(rr)) < 0) {
        host->log(host, AERO_LOG_ERROR, "cannot start the Redis thread: %s", strerror(-rc));
        return rc;
    }
    return 0;
}

/* A delete had to be forgotten (limits): count it. mu held. Returns true
 * when it is time to say so (at most once a minute), which the caller does
 * after unlocking: no log line is written under mu. */
static bool note_dropped(struct route_redis *rr)
{
    int64_t now = redis_link_now_ms();
    rr->host->metric_add(rr->m.errors, 1);
    if (rr->last_drop_log_ms && now - rr->last_drop_log_ms < DROP_LOG_EVERY_MS)
        return false;
    rr->last_drop_log_ms = now;
    return true;
}

static void log_dropped(const struct route_redis *rr)
{
    rr->host->log(rr->host, AERO_LOG_WARN,
                  "too many route deletes pending while Redis is unreachable: some are "
                  "forgotten (their keys expire within %d s)",
                  rr->ttl_s);
}

static void rr_session_up(void *instance, const char *drone_id, const char *session_id)
{
    struct route_redis *rr = instance;
    bool say_dropped = false;
    if (!rr || rr->idle)
        return;
    pthread_mutex_lock(&rr->mu);
    int rc = route_state_up(rr->state, drone_id, session_id);
    if (rc > 0)
        say_dropped = note_dropped(rr);
    else if (rc < 0)
        rr->host->metric_add(rr->m.errors, 1);
    rr->host->metric_set(rr->m.sessions, (int64_t)route_state_active(rr->state));
    rr->host->metric_set(rr->m.pending_deletes, (int64_t)route_state_dead(rr->state));
    pthread_cond_signal(&rr->wake);
    pthread_mutex_unlock(&rr->mu);
    if (say_dropped)
        log_dropped(rr);
    if (rc < 0)
        rr->host->log(rr->host, AERO_LOG_ERROR, "out of memory: route of %s not published",
                      drone_id);
}

static void rr_session_down(void *instance, const char *drone_id, const char *session_id)
{
    struct route_redis *rr = instance;
    bool say_dropped = false;
    if (!rr || rr->idle)
        return;
    pthread_mutex_lock(&rr->mu);
    if (route_state_down(rr->state, drone_id, session_id) > 0)
        say_dropped = note_dropped(rr);
    rr->host->metric_set(rr->m.sessions, (int64_t)route_state_active(rr->state));
    rr->host->metric_set(rr->m.pending_deletes, (int64_t)route_state_dead(rr->state));
    if (route_state_has_dirty(rr->state))
        pthread_cond_signal(&rr->wake);
    pthread_mutex_unlock(&rr->mu);
    if (say_dropped)
        log_dropped(rr);
}

static void rr_destroy(void *instance)
{
    struct route_redis *rr = instance;
    if (!rr)
        return;
    if (rr->sync_ready) {
        route_worker_stop(rr); /* last deletes, bounded in time */
        pthread_cond_destroy(&rr->done);
        pthread_cond_destroy(&rr->wake);
        pthread_mutex_destroy(&rr->mu);
    }
    redis_link_close(&rr->link);
    route_state_free(rr->state);
    free(rr->password);
    free(rr->relay_id);
    free(rr);
}

static const aero_route_vtable route_redis_vtable = {
    .size = sizeof(aero_route_vtable),
    AERO_KEYS(route_redis_keys),
    .create = rr_create,
    .session_up = rr_session_up,
    .session_down = rr_session_down,
    .destroy = rr_destroy,
    .check = rr_check,
};

static const aero_plugin_descriptor route_redis_descriptor = {
    AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_ROUTE),
    .name = "route-redis",
    .description = "publishes drone:{id} routing hints to Redis (idle without a Redis address)",
    .vtable = &route_redis_vtable,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void)
{
    return &route_redis_descriptor;
}
