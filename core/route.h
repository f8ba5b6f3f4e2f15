/*
 * route.h - the route publisher chosen in [route]: a thin owner of the
 * plugin instance. Calls return at once (the plugin does its I/O on its own
 * thread); any thread.
 */
#ifndef AERO_ROUTE_H
#define AERO_ROUTE_H

#include "metrics.h"
#include "settings.h"

struct route;
struct plugin;

int route_start(struct route **out, struct plugin *plugin, struct config_section *section,
                const char *relay_id, struct metrics *metrics, char *err, size_t errlen);
void route_up(struct route *r, const char *drone_id, const char *session_id);
void route_down(struct route *r, const char *drone_id, const char *session_id);
void route_stop(struct route *r);

#endif
