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

/* The settings of one reload that changed the sinks (the new ones run on
 * them, and they describe the set) and the plugins of the sinks it
 * started. */
struct kept_config {
    struct kept_config *next;
    struct settings settings;
    struct plugin **plugins;
    size_t n_plugins;
};

struct sink_reload {
    struct kept_config *kept;
};

struct sink_reload *sink_reload_create(void) { return calloc(1, sizeof(struct sink_reload)); }

void sink_reload_destroy(struct sink_reload *sr)
{
    while (sr && sr->kept) {
        struct kept_config *k = sr->kept;
        sr->kept = k->next;
        for (size_t i = 0; i < k->n_plugins; i++)
            plugin_unload(k->plugins[i]);
        free(k->plugins);
        settings_free(&k->settings);
        free(k);
    }
    free(sr);
}

/* A plugin's check errors, gathered for the one log line. */
static void gather(void *arg, const char *lines)
{
    struct { char *err; size_t len; } *e = arg;
    config_error_add(e->err, e->len, lines);
}

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
    struct { char *err; size_t len; } errors = {err, errlen};
    err[0] = '\0';
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        struct sink_settings *ss = &next->sinks[i];
        char one[8192];
        st->specs[i].settings = ss;
        if (plugin_sections_load(next, ss->section, ss->plugin, AERO_PLUGIN_SINK,
                                 &st->specs[i].plugin, one, sizeof(one)) < 0) {
            config_error_add(err, errlen, one);
            failed = 1;
            continue;
        }
        st->fresh[i] = !sink_pipeline_runs(p, &st->specs[i]);
        /* A running sink was checked when it started: only new ones now. */
        if (st->fresh[i] && plugin_sections_check(next, st->specs[i].plugin, ss->section, "sink",
                                                  ss->name, gather, &errors) < 0)
            failed = 1;
        st->n_fresh += st->fresh[i];
        st->changed |= st->fresh[i] || i >= sink_pipeline_count(p) ||
                       strcmp(sink_pipeline_name(p, i), ss->name) != 0;
    }
    st->changed |= n != sink_pipeline_count(p);
    return failed ? -1 : 0;
}

int sink_reload_apply(struct sink_reload *sr, struct sink_pipeline *p, struct settings *next,
                      struct sink_stage *st, struct sink_swap_counts *counts, bool *kept,
                      char *err, size_t errlen)
{
    *kept = false;
    struct kept_config *k = calloc(1, sizeof(*k));
    if (!k || !(k->plugins = calloc(st->n_fresh ? st->n_fresh : 1, sizeof(*k->plugins)))) {
        free(k);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (sink_pipeline_swap(p, st->specs, st->n, counts, err, errlen) < 0) {
        free(k->plugins);
        free(k);
        return -1;
    }
    /* The new sinks' settings and plugins live as long as the relay. */
    for (size_t i = 0; i < st->n; i++) {
        if (st->fresh[i]) {
            k->plugins[k->n_plugins++] = st->specs[i].plugin;
            st->specs[i].plugin = NULL;
        }
    }
    k->settings = *next;
    k->next = sr->kept;
    sr->kept = k;
    *kept = true;
    return 0;
}

const struct settings *sink_reload_latest(const struct sink_reload *sr)
{
    return sr && sr->kept ? &sr->kept->settings : NULL;
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
