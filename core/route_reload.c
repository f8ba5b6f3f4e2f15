/*
 * route_reload.c - a reload's route sections (route_reload.h). As for
 * sinks (sink_reload.c): nothing is applied until every section is good.
 */
#include "route_reload.h"

#include "plugin_loader.h"
#include "plugin_sections.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int route_reload_stage(struct route *r, struct settings *next, struct route_stage *st, char *err,
                       size_t errlen)
{
    size_t n = next->n_routes;
    *st = (struct route_stage){.n = n};
    st->specs = calloc(n ? n : 1, sizeof(*st->specs));
    st->fresh = calloc(n ? n : 1, sizeof(*st->fresh));
    if (!st->specs || !st->fresh) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    err[0] = '\0';
    int failed = 0;
    size_t running = route_count(r);
    for (size_t i = 0; i < n; i++) {
        struct route_settings *rs = &next->routes[i];
        const char *name = route_instance_name(rs);
        st->specs[i].settings = rs;
        if (plugin_sections_stage_load(next, rs->section, rs->plugin, AERO_PLUGIN_ROUTE,
                                       &st->specs[i].plugin, err, errlen) < 0) {
            failed = 1;
            continue;
        }
        st->fresh[i] = !route_runs(r, &st->specs[i]);
        /* A running route was checked when it started: only new ones now. */
        if (st->fresh[i] && plugin_sections_stage_check(next, st->specs[i].plugin, rs->section,
                                                        "route", name, err, errlen) < 0)
            failed = 1;
        st->changed |= st->fresh[i] || i >= running || strcmp(route_name(r, i), name) != 0;
    }
    st->changed |= n != running;
    return failed ? -1 : 0;
}

int route_reload_apply(struct route *r, struct route_stage *st, struct session_table *sessions,
                       struct route_swap_counts *counts, char *err, size_t errlen)
{
    return route_swap(r, st->specs, st->n, sessions, counts, err, errlen);
}

void route_reload_unstage(struct route_stage *st)
{
    for (size_t i = 0; st->specs && i < st->n; i++)
        if (st->specs[i].plugin)
            plugin_unload(st->specs[i].plugin);
    free(st->specs);
    free(st->fresh);
    *st = (struct route_stage){0};
}
