/*
 * relay.h - the one context main.c builds and passes down: settings, shared
 * registries and the running parts. No globals elsewhere hold any of it.
 */
#ifndef AERO_RELAY_H
#define AERO_RELAY_H

#include "metrics.h"
#include "settings.h"
#include <stdatomic.h>
#include <stdbool.h>

struct session_table;
struct sink_pipeline;
struct route;
struct call_auth;
struct control_auth;
struct agent_mappings;
struct command_hub;
struct gateway;
struct readiness;
struct mem_guard;

struct relay {
    struct settings *settings;
    struct metrics *metrics;
    struct session_table *sessions;
    struct sink_pipeline *sinks;
    struct route *route;       /* every [route] and [route:<name>] */
    struct call_auth *auth;    /* the bearer check at each RPC's door (call_auth.h) */
    struct control_auth *control; /* NULL: [control] off (SPEC.md section 10) */
    struct command_hub *commands; /* waiting control callers */
    const struct agent_mappings *mappings; /* NULL: none */
    struct gateway *gateway;
    struct readiness *readiness; /* /readyz details plugins add */
    struct mem_guard *memory;  /* [relay] memory_limit_mb's watchdog; NULL: not running */
    atomic_bool shutting_down; /* set once, by the main thread */
    /* /readyz: set by the main thread once the gRPC port is bound and every
     * plugin is up, cleared first thing on SIGTERM/SIGINT (before draining)
     * and while the gRPC listener does not accept (main.c watch_listener). */
    atomic_bool ready;
};

#endif
