/*
 * route_registry.c - the route-registry plugin: reports this relay and the
 * drones whose streams it holds to aero-arc-registry (SPEC.md section 11,
 * docs/routing.md), so the fleet API can find them. This file owns the
 * vtable, the configuration (typed readers and the check slot, ABI 1.1;
 * the relay's listen address, ABI 1.2) and the instance's lifetime.
 * session_up / stream_opened / session_down run on any relay thread: they
 * only append an event under a mutex never held across I/O. Every gRPC
 * call is the worker's (registry_worker.c), on its own thread and
 * completion queue.
 */
#include "route_registry.h"

#include "config_check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const aero_config_key route_registry_keys[] = {
    {.name = "address", .type = AERO_KEY_STRING, .default_value = NULL, .required = 1,
     .help = "the registry's gRPC address, host:port"},
    {.name = "advertise_address", .type = AERO_KEY_STRING, .default_value = "",
     .help = "host:port or host the API dials to reach this relay (no port: the one the "
             "relay binds); empty: [relay] listen (refused if that is a wildcard)"},
    {.name = "heartbeat_interval_s", .type = AERO_KEY_INT, .default_value = "10",
     .help = "seconds between heartbeats of the relay and of each agent", .min = 1,
     .max = 3600},
    {.name = "request_timeout_ms", .type = AERO_KEY_INT, .default_value = "5000",
     .help = "deadline of each registry call", .min = 100, .max = 600000},
    {.name = "ca_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "PEM CA bundle: set, the registry is reached over TLS"},
    {.name = "server_name", .type = AERO_KEY_STRING, .default_value = "",
     .help = "TLS: the name the registry's certificate must carry; empty: address's host"},
};

/*
 * "host:port" or "[v6]:port" into host (brackets kept off) and port.
 * 0, or -1 when it is not of that form or the port is not 0..65535.
 */
static int split_host_port(const char *s, char *host, size_t host_len, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1] || strlen(colon + 1) > 5 ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return -1;
    const char *h = s;
    size_t n = (size_t)(colon - s);
    if (s[0] == '[') {
        if (colon[-1] != ']' || n < 3)
            return -1;
        h = s + 1;
        n -= 2;
    } else if (memchr(s, ':', n)) {
        return -1; /* a bare IPv6 address needs brackets */
    }
    if (n == 0 || n >= host_len)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = atoi(colon + 1);
    return *port <= 65535 ? 0 : -1;
}

/*
 * advertise_address: "host:port", "[v6]:port", or a host alone ("host",
 * "[v6]": *port 0, the port the relay binds). 0, or -1 when it is none of
 * these (a bare IPv6 address needs brackets, as in host:port).
 */
static int split_advertise(const char *s, char *host, size_t host_len, int *port)
{
    if (split_host_port(s, host, host_len, port) == 0)
        return *port ? 0 : -1; /* an explicit port 0 is no port the API can dial */
    const char *h = s;
    size_t n = strlen(s);
    if (s[0] == '[') {
        if (n < 3 || s[n - 1] != ']')
            return -1;
        h = s + 1;
        n -= 2;
        if (memchr(h, ']', n))
            return -1;
    } else if (strchr(s, ':')) {
        return -1;
    }
    if (n == 0 || n >= host_len)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = 0;
    return 0;
}

static int is_wildcard(const char *host)
{
    return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 || strcmp(host, "*") == 0;
}

/* Read and judge every key into rr (no I/O but reading nothing; nothing
 * allocated). Every problem is reported. 0, or -EINVAL. */
static int configure(struct route_registry *rr)
{
    const aero_host *h = rr->host;
    int64_t interval = 10, timeout = 5000;
    int bad = 0, port = 0;
    char host[256];

    bad |= h->config_int(h, "heartbeat_interval_s", 1, 3600, &interval) != 0;
    bad |= h->config_int(h, "request_timeout_ms", 100, 600000, &timeout) != 0;
    rr->interval_ms = interval * 1000;
    rr->timeout_ms = timeout;

    const char *addr = config_check_str(h, "address");
    if (split_host_port(addr, host, sizeof(host), &port) < 0 || port == 0) {
        h->config_error(h, "address", "\"%s\" is not host:port (e.g. registry:50052)", addr);
        bad = 1;
    } else {
        snprintf(rr->address, sizeof(rr->address), "%s", addr);
    }

    const char *adv = config_check_str(h, "advertise_address");
    const char *listen = h->listen_address(h);
    if (adv[0]) {
        if (split_advertise(adv, host, sizeof(host), &port) < 0 || is_wildcard(host)) {
            h->config_error(h, "advertise_address",
                            "\"%s\" is not a host or host:port the API can dial (no wildcard, "
                            "no port 0)",
                            adv);
            bad = 1;
        } else if (port == 0 && strncmp(listen, "unix:", 5) == 0) {
            /* no TCP port to take: the relay's listen_port stays 0 */
            h->config_error(h, "advertise_address",
                            "\"%s\" has no port and [relay] listen \"%s\" binds none; set "
                            "host:port",
                            adv, listen);
            bad = 1;
        } else {
            snprintf(rr->advertise_host, sizeof(rr->advertise_host), "%s", host);
            rr->advertise_port = port; /* 0: the port the relay binds, known later */
        }
    } else {
        if (strncmp(listen, "unix:", 5) == 0 ||
            split_host_port(listen, host, sizeof(host), &port) < 0 || is_wildcard(host)) {
            h->config_error(h, "advertise_address",
                            "required: [relay] listen \"%s\" is not an address the API can "
                            "dial; set the host:port it should use",
                            listen);
            bad = 1;
        } else {
            snprintf(rr->advertise_host, sizeof(rr->advertise_host), "%s", host);
            rr->advertise_port = port; /* 0: the port the relay binds, known later */
        }
    }

    const char *server_name = config_check_str(h, "server_name");
    if (server_name[0] && !config_check_str(h, "ca_file")[0]) {
        h->config_error(h, "server_name", "set without ca_file (a TLS name needs TLS)");
        bad = 1;
    }
    snprintf(rr->server_name, sizeof(rr->server_name), "%s", server_name);
    if (config_check_readable_file(h, "ca_file") < 0)
        bad = 1;
    return bad ? -EINVAL : 0;
}

/* The 1.2 host functions this plugin relies on. */
static int host_ok(const aero_host *host)
{
    if (!config_check_host(host, "route-registry"))
        return 0;
    if (AERO_HAS(host, aero_host, ready_detail))
        return 1;
    host->log(host, AERO_LOG_ERROR, "route-registry: needs a relay of plugin ABI 1.2 or later");
    return 0;
}

/* The check slot: configure() on a throw-away instance; no connection. */
static int rr_check(const aero_host *host)
{
    if (!host_ok(host))
        return -ENOTSUP;
    struct route_registry *rr = calloc(1, sizeof(*rr));
    if (!rr)
        return -ENOMEM;
    rr->host = host;
    int rc = configure(rr);
    free(rr);
    return rc;
}

static const char *const method_names[RR_N_METHODS] = {"register_relay", "heartbeat_relay",
                                                       "register_agent", "heartbeat_agent"};
static const char *const outcome_names[RR_N_OUTCOMES] = {"ok", "not_found", "error"};

/* One family, aero_route_registry_calls_total{route,rpc,outcome}: a
 * dashboard sums or splits it by label instead of knowing 12 names. */
static void register_metrics(struct route_registry *rr)
{
    const aero_host *h = rr->host;
    for (int m = 0; m < RR_N_METHODS; m++)
        for (int o = 0; o < RR_N_OUTCOMES; o++) {
            char labels[96];
            snprintf(labels, sizeof(labels), "rpc=\"%s\",outcome=\"%s\"", method_names[m],
                     outcome_names[o]);
            /* A relay older than ABI 1.3 has no labelled metrics: none then
             * (metric_add ignores NULL). */
            rr->m.rpc[m][o] =
                AERO_HAS(h, aero_host, metric_register_labels)
                    ? h->metric_register_labels(
                          h, AERO_METRIC_COUNTER, "aero_route_registry_calls_total",
                          "Calls to the registry by RPC and outcome (ok, not_found, error).",
                          labels)
                    : NULL;
        }
    rr->m.connected = h->metric_register(h, AERO_METRIC_GAUGE, "aero_route_registry_connected",
                                         "1 while the registry answers, else 0.");
    rr->m.agents = h->metric_register(h, AERO_METRIC_GAUGE, "aero_route_registry_agents",
                                      "Sessions with an open stream this relay reports.");
    rr->m.inflight = h->metric_register(h, AERO_METRIC_GAUGE, "aero_route_registry_inflight",
                                        "Registry calls in flight.");
}

/* ca_file's contents, or NULL with errno's reason logged. */
static char *read_pem(const aero_host *host, const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
        fclose(f);
        return buf;
    }
    host->log(host, AERO_LOG_ERROR, "cannot read ca_file \"%s\"", path);
    free(buf);
    if (f)
        fclose(f);
    return NULL;
}

static int rr_create(const aero_host *host, void **instance)
{
    struct route_registry *rr = calloc(1, sizeof(*rr));
    int rc;
    if (!rr)
        return -ENOMEM;
    *instance = rr; /* destroy() takes it from here, half-built or not */
    rr->host = host;
    if (!host_ok(host))
        return -ENOTSUP;
    if ((rc = configure(rr)) < 0)
        return rc;
    register_metrics(rr);
    const char *relay_id = host->relay_id(host);
    rr->relay_id = strdup(relay_id && relay_id[0] ? relay_id : "relay");
    if (!rr->relay_id)
        return -ENOMEM;
    const char *ca = config_check_str(host, "ca_file");
    if (ca[0] && !(rr->ca_pem = read_pem(host, ca)))
        return -EIO;
    if ((rc = pthread_mutex_init(&rr->mu, NULL)) != 0)
        return -rc;
    rr->sync_ready = true;
    if ((rc = registry_worker_start(rr)) < 0) {
        host->log(host, AERO_LOG_ERROR, "cannot start the registry thread: %s", strerror(-rc));
        return rc;
    }
    if (rr->advertise_port)
        host->log(host, AERO_LOG_INFO,
                  "reporting relay %s at %s:%d and its agents to the registry at %s%s, "
                  "heartbeat every %lld s",
                  rr->relay_id, rr->advertise_host, rr->advertise_port, rr->address,
                  rr->ca_pem ? " (TLS)" : "", (long long)(rr->interval_ms / 1000));
    else
        host->log(host, AERO_LOG_INFO,
                  "reporting relay %s at %s:<bound port> and its agents to the registry at "
                  "%s%s, heartbeat every %lld s",
                  rr->relay_id, rr->advertise_host, rr->address, rr->ca_pem ? " (TLS)" : "",
                  (long long)(rr->interval_ms / 1000));
    return 0;
}

/* Queue one event for the worker. Out of memory: the event is lost (the
 * next stream open or Register brings the drone back), said at most once. */
static void push(struct route_registry *rr, enum rr_event_kind kind, const char *drone_id,
                 const char *session_id)
{
    bool lost = false;
    if (!rr || !rr->sync_ready || strlen(drone_id) > RR_ID_MAX ||
        strlen(session_id) > RR_SESSION_MAX)
        return;
    pthread_mutex_lock(&rr->mu);
    if (rr->n_events == rr->cap_events) {
        size_t cap = rr->cap_events ? rr->cap_events * 2 : 64;
        struct rr_event *ev = realloc(rr->events, cap * sizeof(*ev));
        if (ev) {
            rr->events = ev;
            rr->cap_events = cap;
        }
    }
    if (rr->n_events < rr->cap_events) {
        struct rr_event *e = &rr->events[rr->n_events++];
        e->kind = kind;
        snprintf(e->drone_id, sizeof(e->drone_id), "%s", drone_id);
        snprintf(e->session_id, sizeof(e->session_id), "%s", session_id);
    } else {
        lost = true;
    }
    pthread_mutex_unlock(&rr->mu);
    if (lost)
        rr->host->log(rr->host, AERO_LOG_ERROR, "out of memory: session event of %s lost",
                      drone_id);
}

static void rr_session_up(void *instance, const char *drone_id, const char *session_id)
{
    push(instance, RR_EV_UP, drone_id, session_id);
}

static void rr_stream_opened(void *instance, const char *drone_id, const char *session_id)
{
    push(instance, RR_EV_OPENED, drone_id, session_id);
}

static void rr_session_down(void *instance, const char *drone_id, const char *session_id)
{
    push(instance, RR_EV_DOWN, drone_id, session_id);
}

static void rr_destroy(void *instance)
{
    struct route_registry *rr = instance;
    if (!rr)
        return;
    if (rr->thread_started)
        registry_worker_stop(rr);
    if (rr->sync_ready)
        pthread_mutex_destroy(&rr->mu);
    free(rr->events);
    free(rr->ca_pem);
    free(rr->relay_id);
    free(rr);
}

static const aero_route_vtable route_registry_vtable = {
    .size = sizeof(aero_route_vtable),
    AERO_KEYS(route_registry_keys),
    .create = rr_create,
    .session_up = rr_session_up,
    .session_down = rr_session_down,
    .destroy = rr_destroy,
    .check = rr_check,
    .stream_opened = rr_stream_opened,
};

static const aero_plugin_descriptor route_registry_descriptor = {
    AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_ROUTE),
    .name = "route-registry",
    .description = "reports the relay and its agents to aero-arc-registry (AeroRegistry gRPC)",
    .vtable = &route_registry_vtable,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void)
{
    return &route_registry_descriptor;
}
