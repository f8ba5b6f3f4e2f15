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

#include <stdbool.h>

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

/* How many route instances run, and the instance name of the i-th.
 * Main thread (the only one that changes them). */
size_t route_count(const struct route *r);
const char *route_name(const struct route *r, size_t i);

/* Whether spec runs now as it is (same instance name, plugin and keys).
 * Main thread. */
bool route_runs(struct route *r, const struct route_spec *spec);

struct session_table;
struct route_swap_counts {
    size_t kept, started, stopped;
};
/*
 * A reload's routes (main thread): instances whose section is unchanged
 * keep running untouched; new and changed ones are created, then told
 * every session the relay holds (session_up, and stream_opened where a
 * stream is open) before any event reaches them; removed and replaced
 * ones get no more events and are destroyed. Their hints expire as their
 * store lets them. The specs' settings and plugins must outlive the
 * instances. -1 with err: an instance failed to start, nothing changed.
 */
int route_swap(struct route *r, const struct route_spec *specs, size_t n,
               struct session_table *sessions, struct route_swap_counts *counts, char *err,
               size_t errlen);

/* The instance name of a route section: [route:<name>]'s name, else [route]'s
 * plugin (its log prefix "route:<instance>" and metric label route="..."). */
const char *route_instance_name(const struct route_settings *rs);

#endif
