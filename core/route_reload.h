/*
 * route_reload.h - SIGHUP's [route] and [route:<name>] part: the new
 * file's route sections staged (plugins loaded, keys validated, every new
 * or changed section checked by its plugin) before anything is applied,
 * then swapped into the running routes (route_swap). Main thread.
 */
#ifndef AERO_ROUTE_RELOAD_H
#define AERO_ROUTE_RELOAD_H

#include "route.h"
#include "settings.h"

/* One reload's routes, made ready; freed by route_reload_unstage. */
struct route_stage {
    struct route_spec *specs; /* next's routes, in order */
    bool *fresh;              /* specs[i] is not running as it is */
    size_t n;
    bool changed; /* a route is added, removed, changed or moved */
};

/* Stage next's routes against what r runs. 0, or -1 with every error in
 * err (file:line). The stage is to be unstaged either way. */
int route_reload_stage(struct route *r, struct settings *next, struct route_stage *st, char *err,
                       size_t errlen);

/* Swap a changed stage in (route_swap; sessions: what new routes are told
 * first). -1 with err: nothing changed. On success the routes it started
 * run on `next` and on the fresh specs' plugins: the caller keeps both
 * and takes those plugins out of the stage before unstaging it. */
int route_reload_apply(struct route *r, struct route_stage *st, struct session_table *sessions,
                       struct route_swap_counts *counts, char *err, size_t errlen);

/* Unload the plugins the stage still holds and free it. */
void route_reload_unstage(struct route_stage *st);

#endif
