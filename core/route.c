/*
 * route.c - owns the route plugin instances ([route] first, then each
 * [route:<name>]) and counts what is asked of each. Every event goes to
 * every instance in order; each call returns at once (the plugins' rule).
 * A reload (route_swap) replaces the set of instances under the write
 * side of a lock whose read side every event takes: events are rare next
 * to frames (a Register, a stream opening or ending), so an uncontended
 * read lock costs nothing measurable, and no event ever reaches an
 * instance that is being destroyed.
 */
#include "route.h"

#include "log.h"
#include "plugin_loader.h"
#include "session_table.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct route_one {
    const struct route_settings *settings;
    struct plugin *plugin;
    struct host_instance *host;
    void *instance;
    void (*stream_opened)(void *instance, const char *drone_id, const char *session_id);
    aero_metric *m_up, *m_down, *m_opened;
};

/* The instances events go to, in file order. */
struct route_set {
    size_t n;
    struct route_one *one[];
};

struct route {
    pthread_rwlock_t lock; /* events: read; route_swap: write */
    struct route_set *set;
    /* What an instance a reload starts is made with. */
    char relay_id[256];
    struct metrics *metrics;
    const struct host_relay *relay;
};

const char *route_instance_name(const struct route_settings *rs)
{
    return rs->name[0] ? rs->name : rs->plugin;
}

static void destroy_one(struct route_one *o)
{
    if (!o)
        return;
    /* Owed even after a failed create (the ABI's rule), with whatever it
     * stored, possibly NULL. */
    if (o->plugin && o->plugin->route->destroy)
        o->plugin->route->destroy(o->instance);
    host_instance_destroy(o->host);
    free(o);
}

static struct route_one *start_one(const struct route *r, const struct route_spec *spec,
                                   char *err, size_t errlen)
{
    const char *name = route_instance_name(spec->settings);
    struct plugin *p = spec->plugin;
    struct route_one *o = calloc(1, sizeof(*o));
    if (!o || !(o->host = host_instance_create("route", name, spec->settings->section,
                                               r->relay_id, r->metrics))) {
        free(o);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    o->settings = spec->settings;
    host_instance_set_relay(o->host, r->relay);
    /* 1.0 and 1.1 vtables end before stream_opened: their size says so. */
    if (AERO_HAS(p->route, aero_route_vtable, stream_opened))
        o->stream_opened = p->route->stream_opened;
    /* A route replaced under the same name continues the same series. */
    char label[128];
    snprintf(label, sizeof(label), "route=\"%s\"", name);
    o->m_up = metrics_register(r->metrics, AERO_METRIC_COUNTER, "aero_route_session_up_total",
                               "Sessions handed to the route publisher.", label);
    o->m_down = metrics_register(r->metrics, AERO_METRIC_COUNTER,
                                 "aero_route_session_down_total",
                                 "Session ends handed to the route publisher.", label);
    o->m_opened = metrics_register(r->metrics, AERO_METRIC_COUNTER,
                                   "aero_route_stream_opened_total",
                                   "Streams opened on a session, handed to the route publisher.",
                                   label);
    o->plugin = p; /* from here on destroy is owed */
    int rc = p->route->create(host_instance_api(o->host), &o->instance);
    if (rc < 0) {
        snprintf(err, errlen, "[%s] plugin %s: create failed: %s (see the log above)",
                 spec->settings->section->name, p->name, strerror(-rc));
        destroy_one(o);
        return NULL;
    }
    return o;
}

static struct route_set *set_alloc(size_t n)
{
    return calloc(1, sizeof(struct route_set) + (n ? n : 1) * sizeof(struct route_one *));
}

int route_start(struct route **out, const struct route_spec *specs, size_t n,
                const char *relay_id, struct metrics *metrics, const struct host_relay *relay,
                char *err, size_t errlen)
{
    struct route *r = calloc(1, sizeof(*r));
    if (!r || !(r->set = set_alloc(n))) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_rwlock_init(&r->lock, NULL);
    snprintf(r->relay_id, sizeof(r->relay_id), "%s", relay_id ? relay_id : "");
    r->metrics = metrics;
    r->relay = relay;
    for (size_t i = 0; i < n; i++) {
        if (!(r->set->one[i] = start_one(r, &specs[i], err, errlen))) {
            route_stop(r);
            return -1;
        }
        r->set->n = i + 1;
    }
    *out = r;
    return 0;
}

void route_up(struct route *r, const char *drone_id, const char *session_id)
{
    if (!r)
        return;
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->set->n; i++) {
        struct route_one *o = r->set->one[i];
        metrics_inc(o->m_up);
        o->plugin->route->session_up(o->instance, drone_id, session_id);
    }
    pthread_rwlock_unlock(&r->lock);
}

static void opened_one(struct route_one *o, const char *drone_id, const char *session_id)
{
    metrics_inc(o->m_opened);
    if (o->stream_opened)
        o->stream_opened(o->instance, drone_id, session_id);
}

void route_stream_opened(struct route *r, const char *drone_id, const char *session_id)
{
    if (!r)
        return;
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->set->n; i++)
        opened_one(r->set->one[i], drone_id, session_id);
    pthread_rwlock_unlock(&r->lock);
}

void route_down(struct route *r, const char *drone_id, const char *session_id)
{
    if (!r)
        return;
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->set->n; i++) {
        struct route_one *o = r->set->one[i];
        metrics_inc(o->m_down);
        o->plugin->route->session_down(o->instance, drone_id, session_id);
    }
    pthread_rwlock_unlock(&r->lock);
}

/* The running instance spec describes as it is, if any. */
static struct route_one *find_same(const struct route_set *set, const struct route_spec *spec)
{
    for (size_t i = 0; i < set->n; i++) {
        const struct route_one *o = set->one[i];
        if (strcmp(route_instance_name(o->settings), route_instance_name(spec->settings)) == 0 &&
            strcmp(o->plugin->name, spec->plugin->name) == 0 &&
            config_section_equal(o->settings->section, spec->settings->section))
            return set->one[i];
    }
    return NULL;
}

static bool in_set(const struct route_set *set, const struct route_one *o)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->one[i] == o)
            return true;
    return false;
}

size_t route_count(const struct route *r) { return r ? r->set->n : 0; }

const char *route_name(const struct route *r, size_t i)
{
    return route_instance_name(r->set->one[i]->settings);
}

bool route_runs(struct route *r, const struct route_spec *spec)
{
    return r && find_same(r->set, spec) != NULL; /* main thread: the only writer */
}

/* Every session the relay holds now, told to a new instance: as if each
 * had just registered (and opened its stream). Under the write lock, so an
 * event that changed a session after the list was taken reaches the new
 * instance after this, in order. */
static void replay(struct route_one *o, struct session_table *sessions)
{
    struct session_info *infos = NULL;
    size_t n = sessions ? session_table_list(sessions, &infos) : 0;
    for (size_t i = 0; i < n; i++) {
        metrics_inc(o->m_up);
        o->plugin->route->session_up(o->instance, infos[i].agent_id, infos[i].session_id);
        if (infos[i].stream_attached)
            opened_one(o, infos[i].agent_id, infos[i].session_id);
    }
    session_infos_free(infos, n);
}

int route_swap(struct route *r, const struct route_spec *specs, size_t n,
               struct session_table *sessions, struct route_swap_counts *counts, char *err,
               size_t errlen)
{
    *counts = (struct route_swap_counts){0};
    struct route_set *cur = r->set, *next = set_alloc(n);
    if (!next) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* New and changed instances are created first: if one fails, nothing
     * has changed and the running ones never noticed. */
    for (size_t i = 0; i < n; i++) {
        struct route_one *o = find_same(cur, &specs[i]);
        if (!o && !(o = start_one(r, &specs[i], err, errlen)))
            goto fail;
        next->one[i] = o;
        next->n = i + 1;
    }
    pthread_rwlock_wrlock(&r->lock);
    for (size_t i = 0; i < next->n; i++)
        if (!in_set(cur, next->one[i]))
            replay(next->one[i], sessions);
    r->set = next;
    pthread_rwlock_unlock(&r->lock);
    /* No event can reach the old set now: what it alone had goes. The
     * hints a removed publisher made expire as its store lets them
     * (route-redis: ttl_s; the registry: its lease). */
    for (size_t i = 0; i < cur->n; i++) {
        if (in_set(next, cur->one[i]))
            continue;
        log_info("route:%s: stopped (removed or replaced by a reload)",
                 route_instance_name(cur->one[i]->settings));
        destroy_one(cur->one[i]);
        counts->stopped++;
    }
    counts->kept = cur->n - counts->stopped;
    counts->started = n - counts->kept;
    free(cur);
    return 0;

fail:
    for (size_t i = 0; i < next->n; i++)
        if (!in_set(cur, next->one[i]))
            destroy_one(next->one[i]);
    free(next);
    return -1;
}

/* In reverse: the last created goes first. */
void route_stop(struct route *r)
{
    if (!r)
        return;
    for (size_t i = r->set->n; i-- > 0;)
        destroy_one(r->set->one[i]);
    free(r->set);
    pthread_rwlock_destroy(&r->lock);
    free(r);
}
