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

struct host_instance;

/*
 * kind_label: "sink" or "route"; instance: "archive" or the route plugin's
 * name. The section and metrics must outlive the host.
 */
struct host_instance *host_instance_create(const char *kind_label, const char *instance,
                                           const struct config_section *section,
                                           const char *relay_id, struct metrics *metrics);
void host_instance_destroy(struct host_instance *h);
const aero_host *host_instance_api(const struct host_instance *h);
/* "sink:archive": the prefix of this instance's log lines. */
const char *host_instance_component(const struct host_instance *h);

/* A sink's batch state, which envelope_json uses (the sink owns it). */
struct job_json_batch;
void host_instance_set_batch(struct host_instance *h, struct job_json_batch *batch);

#endif
