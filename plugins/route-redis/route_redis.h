/*
 * route_redis.h - the route-redis instance, shared by the vtable functions
 * (route_redis.c: any relay thread) and the worker (route_worker.c: its own
 * thread). Fields say who may touch them. Internal to the plugin.
 */
#ifndef ROUTE_REDIS_H
#define ROUTE_REDIS_H

#include "redis_link.h"
#include "route_state.h"

#include <aeroarc/plugin.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Ended sessions remembered for compare-and-delete over all drones. Beyond
 * it a delete is forgotten (counted as an error): the key expires by TTL. */
#define ROUTE_REDIS_MAX_DEAD 100000

struct route_redis_metrics {
    aero_metric *publishes, *refreshes, *held_elsewhere, *deletes, *errors, *reconnects;
    aero_metric *connected, *sessions, *pending_deletes;
};

struct route_redis {
    /* Read-only once create() returns. */
    const aero_host *host;
    char addr[512];               /* as configured, for log lines */
    struct redis_link_opts opts;  /* opts.password points at password */
    char *password;
    char *relay_id;
    int ttl_s;
    int reconnect_max_ms;
    bool idle;                    /* no Redis address: every call is a no-op */
    struct route_redis_metrics m; /* handles: updates are thread-safe */

    /* Guarded by mu. */
    pthread_mutex_t mu;
    pthread_cond_t wake;          /* worker: work queued, or stop */
    pthread_cond_t done;          /* destroy(): the worker finished */
    bool sync_ready;              /* mu and the condvars exist */
    struct route_state *state;
    bool stopping, worker_done;
    int64_t stop_deadline_ms;     /* set with stopping: the last deletes' budget */
    bool io_cut;                  /* stop gave up waiting and shut the socket down */
    int io_fd;                    /* the worker's socket while connected, else -1 */
    int64_t last_drop_log_ms;     /* rate limit of "delete forgotten" */

    /* The worker's (create() uses link before the worker starts). */
    struct redis_link link;
    pthread_t thread;
    bool thread_started;
};

#endif
