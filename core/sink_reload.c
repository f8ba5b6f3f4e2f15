/*
 * sink_reload.c - a reload's [sink:*] sections (sink_reload.h). Nothing is
 * applied until every section is good: a plugin that is missing, a key it
 * does not know or a check it fails refuses the whole file.
 */
#include "sink_reload.h"

#include "plugin_loader.h"
#include "plugin_sections.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sink_reload_stage(struct sink_pipeline *p, struct settings *next, struct sink_stage *st,
                      char *err, size_t errlen)
{
    size_t n = next->n_sinks;
    *st = (struct sink_stage){.n = n};
    st->specs = calloc(n ? n : 1, sizeof(*st->specs));
    st->fresh = calloc(n ? n : 1, sizeof(*st->fresh));
    if (!st->specs || !st->fresh) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    err[0] = '\0';
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        struct sink_settings *ss = &next->sinks[i];
        st->specs[i].settings = ss;
        if (plugin_sections_stage_load(next, ss->section, ss->plugin, AERO_PLUGIN_SINK,
                                       &st->specs[i].plugin, err, errlen) < 0) {
            failed = 1;
            continue;
        }
        st->fresh[i] = !sink_pipeline_runs(p, &st->specs[i]);
        /* A running sink was checked when it started: only new ones now. */
        if (st->fresh[i] && plugin_sections_stage_check(next, st->specs[i].plugin, ss->section,
                                                        "sink", ss->name, err, errlen) < 0)
            failed = 1;
        st->n_fresh += st->fresh[i];
        st->changed |= st->fresh[i] || i >= sink_pipeline_count(p) ||
                       strcmp(sink_pipeline_name(p, i), ss->name) != 0;
    }
    st->changed |= n != sink_pipeline_count(p);
    return failed ? -1 : 0;
}

int sink_reload_apply(struct sink_pipeline *p, struct sink_stage *st,
                      struct sink_swap_counts *counts, char *err, size_t errlen)
{
    return sink_pipeline_swap(p, st->specs, st->n, counts, err, errlen);
}

void sink_reload_unstage(struct sink_stage *st)
{
    for (size_t i = 0; st->specs && i < st->n; i++)
        if (st->specs[i].plugin)
            plugin_unload(st->specs[i].plugin);
    free(st->specs);
    free(st->fresh);
    *st = (struct sink_stage){0};
}
