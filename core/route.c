/*
 * route.c - owns the route plugin instance and counts what is asked of it.
 * No state of its own beyond the instance; thread-safe as the plugin is.
 */
#include "route.h"

#include "host_api.h"
#include "plugin_loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct route {
    struct plugin *plugin;
    struct host_instance *host;
    void *instance;
    aero_metric *m_up, *m_down;
};

int route_start(struct route **out, struct plugin *plugin, struct config_section *section,
                const char *relay_id, struct metrics *metrics, char *err, size_t errlen)
{
    struct route *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->plugin = plugin;
    r->host = host_instance_create("route", plugin->name, section, relay_id, metrics);
    if (!r->host) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char label[128];
    snprintf(label, sizeof(label), "route=\"%s\"", plugin->name);
    r->m_up = metrics_register(metrics, AERO_METRIC_COUNTER, "aero_route_session_up_total",
                               "Sessions handed to the route publisher.", label);
    r->m_down = metrics_register(metrics, AERO_METRIC_COUNTER, "aero_route_session_down_total",
                                 "Session ends handed to the route publisher.", label);
    int rc = plugin->route->create(host_instance_api(r->host), &r->instance);
    if (rc < 0) {
        snprintf(err, errlen, "[route] plugin %s: create failed: %s (see the log above)",
                 plugin->name, strerror(-rc));
        route_stop(r);
        return -1;
    }
    *out = r;
    return 0;
}

void route_up(struct route *r, const char *drone_id, const char *session_id)
{
    if (!r)
        return;
    metrics_inc(r->m_up);
    r->plugin->route->session_up(r->instance, drone_id, session_id);
}

void route_down(struct route *r, const char *drone_id, const char *session_id)
{
    if (!r)
        return;
    metrics_inc(r->m_down);
    r->plugin->route->session_down(r->instance, drone_id, session_id);
}

void route_stop(struct route *r)
{
    if (!r)
        return;
    if (r->plugin->route->destroy)
        r->plugin->route->destroy(r->instance);
    host_instance_destroy(r->host);
    free(r);
}
