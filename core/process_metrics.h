/*
 * process_metrics.h - the process_* series every Prometheus exporter
 * serves (CPU, resident memory, open and maximum file descriptors, start
 * time), read from /proc when /metrics is rendered, and
 * aero_relay_build_info{version,abi}.
 */
#ifndef AERO_PROCESS_METRICS_H
#define AERO_PROCESS_METRICS_H

#include "metrics.h"

/* Register them in m (main thread, at start). 0 or -1. */
int process_metrics_register(struct metrics *m, const char *version, int abi_major,
                             int abi_minor);

/* The process's resident set (/proc/self/statm), bytes; -1 if unreadable.
 * Any thread. */
long long process_metrics_resident_bytes(void);

#endif
