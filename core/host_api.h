/*
 * host_api.h - the aero_host each plugin instance receives: logging with the
 * instance's prefix, its validated config section, the envelope encoder and
 * metric registration labelled with the instance. One host per instance,
 * owned by the core, alive until after the instance's destroy().
 */
#ifndef AERO_HOST_API_H
#define AERO_HOST_API_H

#include "config.h"
#include "metrics.h"
#include <aeroarc/plugin.h>
#include <stdatomic.h>

struct host_instance;

/*
 * kind_label: "sink" or "route"; instance: "archive" or the route plugin's
 * name. The section and metrics must outlive the host. metrics NULL: a host
 * for check() only, whose metric_register returns NULL.
 */
struct host_instance *host_instance_create(const char *kind_label, const char *instance,
                                           const struct config_section *section,
                                           const char *relay_id, struct metrics *metrics);
void host_instance_destroy(struct host_instance *h);
const aero_host *host_instance_api(const struct host_instance *h);
/* "sink:archive": the prefix of this instance's log lines. */
const char *host_instance_component(const struct host_instance *h);
/* The counter a sink's create() handed to count_queue_full (ABI 1.6), or
 * NULL: what the pipeline also counts each queue-full refusal in. */
aero_metric *host_instance_queue_full(const struct host_instance *h);

/*
 * What a host answers about the relay itself (plugin ABI 1.2): owned by
 * main, outliving every host that points at it. Any member may be NULL
 * (a check() host has only `listen`): the functions then answer "" or 0.
 */
struct session_table;
struct readiness;
struct host_relay {
    const char *listen;              /* [relay] listen as configured */
    const _Atomic int *grpc_port;    /* bound port; 0 until bound */
    struct session_table *sessions;  /* for session_last_message_unix_ns */
    struct readiness *readiness;     /* /readyz details */
};
void host_instance_set_relay(struct host_instance *h, const struct host_relay *relay);

/* A sink's batch state, which envelope_json uses (the sink owns it). */
struct job_json_batch;
void host_instance_set_batch(struct host_instance *h, struct job_json_batch *batch);
/*
 * Where the plugin's configuration errors go (config_error, and the typed
 * readers on a bad value): each as one formatted line without newline,
 *   relay.ini:12: [sink:bus] topic: <message>
 * Default (report NULL): logged at error level with the instance's prefix.
 * main.c prints them on stderr for check(). Main thread, before the plugin
 * is called.
 */
typedef void (*host_config_report_fn)(void *arg, const char *line);
void host_instance_set_config_report(struct host_instance *h, host_config_report_fn report,
                                     void *arg);
/* Configuration errors the plugin reported through this host so far. */
unsigned host_instance_config_errors(const struct host_instance *h);

#endif
