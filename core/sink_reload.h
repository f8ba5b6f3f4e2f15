/*
 * sink_reload.h - SIGHUP's [sink:*] part: the new file's sink sections
 * staged (plugins loaded, keys validated, every new or changed section
 * checked by its plugin) before anything is applied, then swapped into
 * the pipeline (sink_pipeline_swap). Main thread.
 */
#ifndef AERO_SINK_RELOAD_H
#define AERO_SINK_RELOAD_H

#include "settings.h"
#include "sink_pipeline.h"

/* One reload's sinks, made ready; freed by sink_reload_unstage. */
struct sink_stage {
    struct sink_instance_spec *specs; /* next's [sink:*], in order */
    bool *fresh;                      /* specs[i] is not running as it is */
    size_t n, n_fresh;
    bool changed; /* a sink is added, removed, changed or moved */
};

/* Stage next's sinks against what p runs. 0, or -1 with every error in
 * err (file:line). The stage is to be unstaged either way. */
int sink_reload_stage(struct sink_pipeline *p, struct settings *next, struct sink_stage *st,
                      char *err, size_t errlen);

/* Swap a changed stage in. -1 with err: nothing changed. On success the
 * sinks it started run on `next` and on the plugins of the fresh specs:
 * the caller keeps both (config_reload.c) and takes those plugins out of
 * the stage (NULL there) before unstaging it. */
int sink_reload_apply(struct sink_pipeline *p, struct sink_stage *st,
                      struct sink_swap_counts *counts, char *err, size_t errlen);

/* Unload the plugins the stage still holds and free it. */
void sink_reload_unstage(struct sink_stage *st);

#endif
