/*
 * route.h - the route publishers: [route] and each [route:<name>], a thin
 * owner of their plugin instances that hands every session event to all of
 * them in turn. Calls return at once (each plugin does its I/O on its own
 * thread, so one slow publisher never delays ingest or another); any thread.
 */
#ifndef AERO_ROUTE_H
#define AERO_ROUTE_H

#include "host_api.h"
#include "metrics.h"
#include "settings.h"

struct route;
struct plugin;

/* One route to start: its settings and its loaded plugin (main's). */
struct route_spec {
    const struct route_settings *settings;
    struct plugin *plugin;
};

/*
 * Create every route's instance, in order; `relay` (outliving the routes)
 * is what their hosts answer about the relay (host_api.h). On failure every
 * instance already made is destroyed and err says which section failed.
 */
int route_start(struct route **out, const struct route_spec *specs, size_t n,
                const char *relay_id, struct metrics *metrics, const struct host_relay *relay,
                char *err, size_t errlen);
void route_up(struct route *r, const char *drone_id, const char *session_id);
/* A stream opened on the session (both generations; plugin ABI 1.2). */
void route_stream_opened(struct route *r, const char *drone_id, const char *session_id);
void route_down(struct route *r, const char *drone_id, const char *session_id);
void route_stop(struct route *r);

/* The instance name of a route section: [route:<name>]'s name, else [route]'s
 * plugin (its log prefix "route:<instance>" and metric label route="..."). */
const char *route_instance_name(const struct route_settings *rs);

#endif
