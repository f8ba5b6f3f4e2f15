/*
 * sink_swap.c - a reload's new set of sinks (sink_pipeline_swap): which
 * keep running, which start, which drain and stop; and the pipeline's end.
 * Main thread only. The frame path sees a change only through
 * sink_set_acquire: a frame is submitted to the old set or to the new one,
 * whole, and a sink only the old set has is stopped once no submit or
 * owed flush still uses that set (its queue then holds every frame it will
 * ever get: it writes them, their acks go out, then its thread exits).
 */
#include "sink_internal.h"

#include "host_api.h"
#include "log.h"
#include "mono_clock.h"
#include "plugin_loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The running sink a spec describes unchanged: same name, plugin and keys. */
static struct sink *find_same(const struct sink_set *set, const struct sink_instance_spec *spec)
{
    for (size_t i = 0; i < set->n; i++) {
        struct sink *s = set->sinks[i];
        if (strcmp(s->settings->name, spec->settings->name) == 0 &&
            strcmp(s->plugin->name, spec->plugin->name) == 0 &&
            config_section_equal(s->settings->section, spec->settings->section))
            return s;
    }
    return NULL;
}

static bool in_set(const struct sink_set *set, const struct sink *s)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->sinks[i] == s)
            return true;
    return false;
}

int sink_pipeline_swap(struct sink_pipeline *p, const struct sink_instance_spec *specs,
                       size_t n, struct sink_swap_counts *counts, char *err, size_t errlen)
{
    *counts = (struct sink_swap_counts){0};
    sink_pipeline_tick(p);
    if (p->retired_slot >= 0) {
        snprintf(err, errlen, "the previous sink change is still taking effect (frames in "
                              "flight to the old sinks); send SIGHUP again in a moment");
        return -1;
    }
    unsigned old = atomic_load(&p->cur), next = 1 - old;
    const struct sink_set *cur = p->sets[old];
    struct sink_set *set = sink_set_alloc(n);
    if (!set) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct sink *s = find_same(cur, &specs[i]);
        if (!s && !(s = sink_create(p, &specs[i], err, errlen)))
            goto fail;
        set->sinks[i] = s;
        set->n = i + 1;
    }
    /* From here on every submit takes the new set. */
    p->sets[next] = set;
    atomic_store(&p->n_now, n);
    atomic_store(&p->cur, next);
    p->retired_slot = (int)old;
    for (size_t i = 0; i < cur->n; i++) {
        if (in_set(set, cur->sinks[i]))
            continue;
        cur->sinks[i]->retired_next = p->retiring;
        p->retiring = cur->sinks[i];
        counts->retired++;
    }
    counts->kept = cur->n - counts->retired;
    counts->started = n - counts->kept;
    return 0;

fail:
    /* Never published: the new instances got no frame. */
    for (size_t i = 0; i < set->n; i++) {
        if (in_set(cur, set->sinks[i]))
            continue;
        sink_ask_stop(set->sinks[i]);
        sink_join(set->sinks[i], NULL);
        sink_destroy(set->sinks[i]);
    }
    free(set);
    return -1;
}

/* A retired sink's thread has exited: nothing refers to it any more but a
 * waiter being cancelled, which waiter_mu keeps out. */
static void retired_free(struct sink_pipeline *p, struct sink *s)
{
    log_msg(AERO_LOG_INFO, host_instance_component(s->host),
            "drained and stopped (removed or replaced by a reload)");
    pthread_mutex_lock(&p->waiter_mu);
    sink_destroy(s);
    pthread_mutex_unlock(&p->waiter_mu);
}

void sink_pipeline_tick(struct sink_pipeline *p)
{
    if (!p)
        return;
    int slot = p->retired_slot;
    if (slot >= 0) {
        if (atomic_load(&p->refs[slot]) != 0)
            return; /* a submit or an owed flush still uses the old set */
        free(p->sets[slot]);
        p->sets[slot] = NULL;
        p->retired_slot = -1;
        for (struct sink *s = p->retiring; s; s = s->retired_next)
            sink_ask_stop(s); /* writes what it holds, then its thread exits */
    }
    for (struct sink **pp = &p->retiring; *pp;) {
        struct sink *s = *pp;
        if (!sink_try_join(s)) {
            pp = &s->retired_next;
            continue;
        }
        *pp = s->retired_next;
        retired_free(p, s);
    }
}

size_t sink_pipeline_retiring(const struct sink_pipeline *p)
{
    size_t n = 0;
    for (const struct sink *s = p ? p->retiring : NULL; s; s = s->retired_next)
        n++;
    return n;
}

/* Every sink still running: the current set's and the retired ones'. */
static bool each_sink(struct sink_pipeline *p, bool (*fn)(struct sink *s, void *arg), void *arg)
{
    bool all = true;
    const struct sink_set *set = p->sets[atomic_load(&p->cur)];
    for (size_t i = 0; i < set->n; i++)
        all &= fn(set->sinks[i], arg);
    for (struct sink *s = p->retiring, *next; s; s = next) {
        next = s->retired_next; /* fn may free s */
        all &= fn(s, arg);
    }
    return all;
}

static bool ask_stop(struct sink *s, void *arg)
{
    (void)arg;
    sink_ask_stop(s);
    return true;
}

static bool join(struct sink *s, void *deadline)
{
    if (sink_join(s, deadline))
        return true;
    log_msg(AERO_LOG_ERROR, host_instance_component(s->host),
            "still inside write_batch after the shutdown grace: exiting without it");
    return false;
}

static bool destroy(struct sink *s, void *arg)
{
    (void)arg;
    sink_destroy(s);
    return true;
}

bool sink_pipeline_stop(struct sink_pipeline *p, int64_t timeout_ms)
{
    if (!p)
        return true;
    /* pthread_timedjoin_np waits on CLOCK_REALTIME. */
    struct timespec deadline = clock_after_ns(CLOCK_REALTIME, timeout_ms * 1000000);
    /* All at once: each sink drains its queue in parallel with the others. */
    each_sink(p, ask_stop, NULL);
    /* A stuck thread may still touch its sink and the jobs it holds: free
     * nothing then; the process is about to exit. */
    if (!each_sink(p, join, timeout_ms < 0 ? NULL : &deadline))
        return false;
    each_sink(p, destroy, NULL);
    free(p->sets[0]);
    free(p->sets[1]);
    while (p->hists) {
        struct sink_hist *next = p->hists->next;
        free(p->hists);
        p->hists = next;
    }
    pthread_mutex_destroy(&p->waiter_mu);
    free(p);
    return true;
}

bool sink_pipeline_runs(struct sink_pipeline *p, const struct sink_instance_spec *spec)
{
    return find_same(p->sets[atomic_load(&p->cur)], spec) != NULL;
}
