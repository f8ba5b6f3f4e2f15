/*
 * config_check.h - checks the in-tree plugins share in their check() slot
 * (plugin ABI 1.1): each reports through host->config_error, so the relay
 * prints it with relay.ini's file and line. Compiled into each plugin that
 * uses it (plugins link no core symbol). Main thread; no side effects.
 */
#ifndef AERO_PLUGIN_CONFIG_CHECK_H
#define AERO_PLUGIN_CONFIG_CHECK_H

#include <aeroarc/plugin.h>

/* True when host has the 1.1 slots (typed reads, config_error); else logs
 * that `plugin` needs a relay of plugin ABI 1.1 or later. */
int config_check_host(const aero_host *host, const char *plugin);

/* The value of `key` (declared with a default), "" when unset. */
const char *config_check_str(const aero_host *host, const char *key);

/*
 * `key` names a file the plugin will read (a CA bundle, a certificate, a
 * key): unless it is empty, it must exist, be a regular file and open for
 * reading now. Reports e.g.
 *   cannot read "/etc/ca.pem": No such file or directory
 * Returns 0 when fine (or empty), else -1 after reporting.
 */
int config_check_readable_file(const aero_host *host, const char *key);

#endif
