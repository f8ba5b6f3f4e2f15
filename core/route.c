/*
 * route.c - owns the route plugin instances ([route] first, then each
 * [route:<name>]) and counts what is asked of each. No state of its own
 * beyond the instances; thread-safe as the plugins are. Every event goes to
 * every instance in order; each call returns at once (the plugins' rule).
 */
#include "route.h"

#include "plugin_loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct route_one {
    struct plugin *plugin;
    struct host_instance *host;
    void *instance;
    void (*stream_opened)(void *instance, const char *drone_id, const char *session_id);
    aero_metric *m_up, *m_down, *m_opened;
};

struct route {
    size_t n; /* instances created so far */
    struct route_one one[];
};

const char *route_instance_name(const struct route_settings *rs)
{
    return rs->name[0] ? rs->name : rs->plugin;
}

static int start_one(struct route_one *o, const struct route_spec *spec, const char *relay_id,
                     struct metrics *metrics, const struct host_relay *relay, char *err,
                     size_t errlen)
{
    const char *name = route_instance_name(spec->settings);
    struct plugin *p = spec->plugin;
    o->plugin = p;
    o->host = host_instance_create("route", name, spec->settings->section, relay_id, metrics);
    if (!o->host) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    host_instance_set_relay(o->host, relay);
    /* 1.0 and 1.1 vtables end before stream_opened: their size says so. */
    if (AERO_HAS(p->route, aero_route_vtable, stream_opened))
        o->stream_opened = p->route->stream_opened;
    char label[128];
    snprintf(label, sizeof(label), "route=\"%s\"", name);
    o->m_up = metrics_register(metrics, AERO_METRIC_COUNTER, "aero_route_session_up_total",
                               "Sessions handed to the route publisher.", label);
    o->m_down = metrics_register(metrics, AERO_METRIC_COUNTER, "aero_route_session_down_total",
                                 "Session ends handed to the route publisher.", label);
    o->m_opened = metrics_register(metrics, AERO_METRIC_COUNTER,
                                   "aero_route_stream_opened_total",
                                   "Streams opened on a session, handed to the route publisher.",
                                   label);
    int rc = p->route->create(host_instance_api(o->host), &o->instance);
    if (rc < 0) {
        snprintf(err, errlen, "[%s] plugin %s: create failed: %s (see the log above)",
                 spec->settings->section->name, p->name, strerror(-rc));
        return -1;
    }
    return 0;
}

int route_start(struct route **out, const struct route_spec *specs, size_t n,
                const char *relay_id, struct metrics *metrics, const struct host_relay *relay,
                char *err, size_t errlen)
{
    struct route *r = calloc(1, sizeof(*r) + n * sizeof(r->one[0]));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        r->n = i + 1; /* destroy() is owed even to a half-built instance */
        if (start_one(&r->one[i], &specs[i], relay_id, metrics, relay, err, errlen) < 0) {
            route_stop(r);
            return -1;
        }
    }
    *out = r;
    return 0;
}

void route_up(struct route *r, const char *drone_id, const char *session_id)
{
    for (size_t i = 0; r && i < r->n; i++) {
        metrics_inc(r->one[i].m_up);
        r->one[i].plugin->route->session_up(r->one[i].instance, drone_id, session_id);
    }
}

void route_stream_opened(struct route *r, const char *drone_id, const char *session_id)
{
    for (size_t i = 0; r && i < r->n; i++) {
        metrics_inc(r->one[i].m_opened);
        if (r->one[i].stream_opened)
            r->one[i].stream_opened(r->one[i].instance, drone_id, session_id);
    }
}

void route_down(struct route *r, const char *drone_id, const char *session_id)
{
    for (size_t i = 0; r && i < r->n; i++) {
        metrics_inc(r->one[i].m_down);
        r->one[i].plugin->route->session_down(r->one[i].instance, drone_id, session_id);
    }
}

/* In reverse: the last created goes first. */
void route_stop(struct route *r)
{
    if (!r)
        return;
    for (size_t i = r->n; i-- > 0;) {
        struct route_one *o = &r->one[i];
        if (o->plugin && o->plugin->route->destroy)
            o->plugin->route->destroy(o->instance);
        host_instance_destroy(o->host);
    }
    free(r);
}
