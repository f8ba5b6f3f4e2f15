/*
 * fake_host.h - a stand-in for the relay when unit-testing a plugin: loads a
 * built plugin with dlopen and hands it an aero_host whose config, logs and
 * metrics tests can set and inspect. Test code only; link tests/fake_host.c
 * and core/envelope_json.c (the host's JSON encoder) into the test.
 *
 * Typical use:
 *   void *dl;
 *   const aero_plugin_descriptor *d = fake_host_load("sink-file", &dl);
 *   const char *const cfg[] = {"path", dir, "fsync", "batch", NULL};
 *   fake_host *fh = fake_host_new(d, "archive", cfg);
 *   const aero_sink_vtable *vt = d->vtable;
 *   void *inst = NULL;
 *   int rc = vt->create(fake_host_api(fh), &inst);
 *   ... vt->write_batch(inst, frames, n, results); ...
 *   vt->destroy(inst);
 *   fake_host_free(fh);
 *   fake_host_unload(dl);
 */
#ifndef AERO_FAKE_HOST_H
#define AERO_FAKE_HOST_H

#include <aeroarc/plugin.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fake_host fake_host;

/*
 * dlopen <AERO_PLUGIN_BUILD_DIR>/<name>.so (RTLD_NOW | RTLD_LOCAL) and call
 * its entry. Returns the descriptor and the dlopen handle in *handle, or
 * NULL after printing the reason (dlerror) on stderr.
 */
const aero_plugin_descriptor *fake_host_load(const char *name, void **handle);

/* Same, from an explicit path (a test-only plugin, for instance). */
const aero_plugin_descriptor *fake_host_load_path(const char *path,
                                                  void **handle);

/* dlclose a handle from fake_host_load*; NULL is a no-op. */
void fake_host_unload(void *handle);

/*
 * A host for one instance of the plugin `d` describes. `instance` names it
 * (section "sink:<instance>" for a sink, "route" for a route); `kv` is a
 * NULL-terminated array of key, value, key, value, ... (may be NULL; a key
 * given twice takes the later value).
 * The section is held as if relay.ini ("relay.ini" in messages) said
 * "[<section>]" on line 1 and each pair of kv on its own line from line 2
 * (pair i on line 2 + i; a repeated key on its last line), and validated
 * by the relay's own config.c: unknown keys (other than the core's
 * plugin/queue/on_full for sinks, plugin/ttl_s for routes), INT out of
 * [min, max], ENUM outside its choices, bad BOOL and missing required keys
 * make it return NULL after printing why on stderr. Declared defaults fill
 * unset keys. config_bool/int/enum and config_error (ABI 1.1) behave as the
 * relay's, and their error lines are kept (fake_host_config_errors).
 */
fake_host *fake_host_new(const aero_plugin_descriptor *d, const char *instance,
                         const char *const *kv);
void fake_host_free(fake_host *fh);

/* The aero_host to pass to create(); valid until fake_host_free(). */
const aero_host *fake_host_api(fake_host *fh);

/* Logs. Every line is kept as "<level> <message>\n" (level: debug, info,
 * warn, error) and echoed on stderr. Thread-safe. */
size_t fake_host_log_count(fake_host *fh, aero_log_level level);
int fake_host_log_contains(fake_host *fh, const char *needle);
/* A malloc'd copy of every line so far; the caller frees. */
char *fake_host_log_dup(fake_host *fh);
void fake_host_log_clear(fake_host *fh);

/*
 * The current value of the metric registered as `name` into *value.
 * Returns 0, or -ENOENT when the plugin registered no such metric.
 */
int fake_host_metric(fake_host *fh, const char *name, int64_t *value);

/* The type a metric was registered with, or 0 when there is none. */
aero_metric_type fake_host_metric_type(fake_host *fh, const char *name);

/* Configuration errors (config_error, failed typed reads), each kept as
 * the relay prints it, "relay.ini:3: [sink:a] topic: ...", one per line
 * ending in "\n". The count, a malloc'd copy (caller frees), and a reset. */
size_t fake_host_config_error_count(fake_host *fh);
char *fake_host_config_errors(fake_host *fh);
void fake_host_config_errors_clear(fake_host *fh);

/* Run the plugin's check slot (read under AERO_HAS, as the relay does) on
 * this host: its return value, or 0 when the plugin has no check. */
int fake_host_check(const aero_plugin_descriptor *d, fake_host *fh);

#endif
