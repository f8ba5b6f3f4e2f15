/*
 * route_registry.h - the route-registry instance, shared by the vtable
 * functions (route_registry.c: any relay thread, which only queue events)
 * and the worker (registry_worker.c: its own thread, which owns every
 * agent record and every gRPC call). Fields say who may touch them.
 * Internal to the plugin.
 */
#ifndef ROUTE_REGISTRY_H
#define ROUTE_REGISTRY_H

#include <aeroarc/plugin.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The relay's ids are at most 128 bytes (SPEC.md section 2), session ids 37. */
#define RR_ID_MAX 128
#define RR_SESSION_MAX 64

/* The four RPCs the relay makes (SPEC.md section 11), and their outcomes. */
enum rr_method { RR_REGISTER_RELAY, RR_HEARTBEAT_RELAY, RR_REGISTER_AGENT, RR_HEARTBEAT_AGENT,
                 RR_N_METHODS };
enum rr_outcome { RR_OK, RR_NOT_FOUND, RR_ERROR, RR_N_OUTCOMES };

struct route_registry_metrics {
    aero_metric *rpc[RR_N_METHODS][RR_N_OUTCOMES]; /* counters */
    aero_metric *connected;                        /* 1 while the registry answers */
    aero_metric *agents;                           /* sessions reported */
    aero_metric *inflight;                         /* calls in flight */
};

/* A session event from a relay thread, for the worker. */
enum rr_event_kind { RR_EV_UP, RR_EV_OPENED, RR_EV_DOWN };
struct rr_event {
    enum rr_event_kind kind;
    char drone_id[RR_ID_MAX + 1];
    char session_id[RR_SESSION_MAX + 1];
};

struct route_registry {
    /* Read-only once create() returns. */
    const aero_host *host;
    char address[512];            /* the registry, host:port */
    char advertise_host[256];     /* Relay.address */
    int advertise_port;           /* Relay.grpc_port; 0: the relay's bound port */
    char *relay_id;
    char *ca_pem;                 /* ca_file's contents; NULL: plaintext */
    char server_name[256];        /* TLS name override; "": the address's host */
    int64_t interval_ms;          /* heartbeat_interval_s */
    int64_t timeout_ms;           /* request_timeout_ms */
    struct route_registry_metrics m;

    /* Guarded by mu: the event queue the worker drains. */
    pthread_mutex_t mu;
    bool sync_ready;
    struct rr_event *events;
    size_t n_events, cap_events;
    bool stopping;

    /* The worker's (registry_worker.c; opaque here). */
    struct worker *worker;
    bool stopping_seen;           /* the worker is winding down: no more readiness changes */
    pthread_t thread;
    bool thread_started;
};

/* registry_worker.c: start the thread (after create() configured rr) and
 * stop it (cancels calls in flight, bounded by request_timeout_ms). */
int registry_worker_start(struct route_registry *rr);
void registry_worker_stop(struct route_registry *rr);

#endif
