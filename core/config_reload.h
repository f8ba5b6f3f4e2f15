/*
 * config_reload.h - SIGHUP: relay.ini read again and applied without
 * dropping a stream or losing a frame. What takes effect: [log] level
 * and format; the contents of [tls]'s certificate, key and client CA
 * files (new connections); [auth] keys_file (its contents); [control]
 * allowed_identities, client_ca_file (its certificates) and
 * agent_mappings_file (its contents); [sink:*] sections added, removed
 * or changed (sink_reload.h); [route] and [route:*] sections added,
 * removed or changed (route_reload.h). Every other key that changed
 * (listen addresses, workers, TLS, turning auth or control on or off)
 * is named in one log line and left as it was: it needs a restart. A file with any error is refused whole, the running
 * configuration kept, the error logged with file and line. Counted in
 * aero_relay_config_reloads_total{result="ok"|"error"}. Main thread.
 */
#ifndef AERO_CONFIG_RELOAD_H
#define AERO_CONFIG_RELOAD_H

#include "metrics.h"
#include "settings.h"

struct auth;
struct call_auth;
struct control_auth;
struct agent_mappings;
struct route;
struct rpc_server;
struct session_table;
struct sink_pipeline;

/* What a reload changes, and who owns the keys (*keys is replaced). */
struct config_reload_targets {
    const struct settings *running;   /* as the relay started */
    struct call_auth *call_auth;
    struct auth **keys;               /* [auth] mode = bearer: the keys in use */
    struct control_auth *control;     /* NULL: control off */
    struct agent_mappings *mappings;  /* NULL: no mappings file */
    struct rpc_server *server;        /* its TLS files are read again */
    struct sink_pipeline *sinks;      /* its sinks are swapped */
    struct route *routes;             /* its route instances are swapped */
    struct session_table *sessions;   /* what new route instances are told */
};

struct config_reload;

struct config_reload *config_reload_create(struct metrics *m);
/* After the sink pipeline and the routes have stopped: what a reload
 * started runs on the settings and plugins it frees. */
void config_reload_destroy(struct config_reload *cr);

/* The settings that name the running sinks after the last reload that
 * changed them (their [sink:*] sections); NULL: never changed. Valid
 * until config_reload_destroy. */
const struct settings *config_reload_sinks(const struct config_reload *cr);

/* Read `path` and apply it to t. 0 applied (maybe only in part: what
 * needs a restart is logged), -1 refused (logged). */
int config_reload_run(struct config_reload *cr, const struct config_reload_targets *t,
                      const char *path);

#endif
