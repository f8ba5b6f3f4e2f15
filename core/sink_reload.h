/*
 * sink_reload.h - SIGHUP's [sink:*] part: the new file's sink sections
 * staged (plugins loaded, keys validated, every new or changed section
 * checked by its plugin) before anything is applied, then swapped into
 * the pipeline (sink_pipeline_swap). Owns the settings and plugins the
 * sinks a reload started run on, until the relay exits. Main thread.
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

struct sink_reload;

struct sink_reload *sink_reload_create(void);
/* After sink_pipeline_stop: the sinks it started run on what it frees. */
void sink_reload_destroy(struct sink_reload *sr);

/* Stage next's sinks against what p runs. 0, or -1 with every error in
 * err (file:line). The stage is to be unstaged either way. */
int sink_reload_stage(struct sink_pipeline *p, struct settings *next, struct sink_stage *st,
                      char *err, size_t errlen);

/*
 * Swap a changed stage in. On success sr takes `next` over (*kept true:
 * the caller must not free it; the sinks it started run on it) and those
 * sinks' plugins. -1 with err: nothing changed.
 */
int sink_reload_apply(struct sink_reload *sr, struct sink_pipeline *p, struct settings *next,
                      struct sink_stage *st, struct sink_swap_counts *counts, bool *kept,
                      char *err, size_t errlen);

/* The settings whose [sink:*] sections the running sinks are, since the
 * last reload that changed them; NULL: none did (the start's). */
const struct settings *sink_reload_latest(const struct sink_reload *sr);

/* Unload the plugins the stage still holds and free it. */
void sink_reload_unstage(struct sink_stage *st);

#endif
