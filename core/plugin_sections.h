/*
 * plugin_sections.h - one [sink:*] or [route*] section made ready to start:
 * its plugin loaded, its keys validated (defaults filled in), the plugin's
 * own check run. Shared by the start (and --check) and the SIGHUP reload,
 * so both refuse the same sections with the same messages. Main thread.
 */
#ifndef AERO_PLUGIN_SECTIONS_H
#define AERO_PLUGIN_SECTIONS_H

#include "host_api.h"
#include "settings.h"

struct plugin;

/* Load plugin `name` for `sec` and validate the section with its keys;
 * no plugin code runs. 0, or -1 with the error (file:line) in err. On
 * failure *out may still hold the loaded plugin: the caller unloads it. */
int plugin_sections_load(struct settings *st, struct config_section *sec, const char *name,
                         aero_plugin_kind kind, struct plugin **out, char *err, size_t errlen);

/*
 * The plugin's own check (ABI 1.1 slot) of one validated section, on a
 * host made for the call (no metrics). Every error goes to report(arg,
 * lines) as it is found. 0 when there was none.
 */
int plugin_sections_check(struct settings *st, const struct plugin *p,
                          const struct config_section *sec, const char *kind_label,
                          const char *instance, host_config_report_fn report, void *arg);

/* Both of the above; each error to report(). *out as plugin_sections_load. */
int plugin_sections_prepare(struct settings *st, struct config_section *sec, const char *name,
                            aero_plugin_kind kind, const char *instance, struct plugin **out,
                            host_config_report_fn report, void *arg);

/* A reload's two steps for one section, each error appended to err (one
 * per line, file:line) so one log line lists them all: load and validate
 * (plugin_sections_load), then, for a section that is not running as it
 * is, the plugin's check (plugin_sections_check). 0, or -1. */
int plugin_sections_stage_load(struct settings *st, struct config_section *sec, const char *name,
                               aero_plugin_kind kind, struct plugin **out, char *err,
                               size_t errlen);
int plugin_sections_stage_check(struct settings *st, const struct plugin *p,
                                const struct config_section *sec, const char *kind_label,
                                const char *instance, char *err, size_t errlen);

#endif
