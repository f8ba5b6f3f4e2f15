/*
 * plugin_loader.h - finds, opens and checks plugins (libltdl; the only file
 * that touches lt_*). A loaded plugin has passed every ABI check: its major
 * matches ours, its kind is what the section asked for and its vtable has
 * the functions that kind requires, and its descriptor's name is its file
 * name. Main thread only.
 */
#ifndef AERO_PLUGIN_LOADER_H
#define AERO_PLUGIN_LOADER_H

#include "config.h"
#include <aeroarc/plugin.h>
#include <stddef.h>

struct plugin {
    char *name;                          /* "sink-file" */
    char *path;                          /* where it was found */
    void *handle;                        /* lt_dlhandle */
    const aero_plugin_descriptor *desc;
    const aero_sink_vtable *sink;        /* set for AERO_PLUGIN_SINK */
    const aero_route_vtable *route;      /* set for AERO_PLUGIN_ROUTE */
    struct config_keys keys;             /* the plugin's declared keys */
    int (*check)(const aero_host *host); /* ABI 1.1 check slot, or NULL */
};

/*
 * The directories searched, in order, written to dirs (NUL-separated list
 * of up to max entries). `configured` is relay.ini's plugin_dir: when
 * non-empty it is the only one. Otherwise <dir of the executable>/plugins
 * (running from the build tree) then the installed plugin dir.
 */
size_t plugin_search_dirs(const char *configured, char dirs[][4096], size_t max);

/*
 * Load plugin `name` of `kind`. On failure returns -1 with a one-line reason
 * in err that names the plugin and what is wrong (not found + where looked,
 * loader error, no entry symbol, other ABI major, a descriptor name other
 * than the file name, wrong kind, missing vtable function); the caller
 * prefixes file:line.
 */
int plugin_load(const char *name, aero_plugin_kind kind, const char *configured_dir,
                struct plugin **out, char *err, size_t errlen);
void plugin_unload(struct plugin *p);

#endif
