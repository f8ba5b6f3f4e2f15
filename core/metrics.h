/*
 * metrics.h - the registry behind /metrics: named counters and gauges with
 * a fixed label set each, registered at start-up (core and plugins) and
 * updated lock-free from any thread; rendered as Prometheus text 0.0.4.
 */
#ifndef AERO_METRICS_H
#define AERO_METRICS_H

#include <aeroarc/plugin.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;

/* struct aero_metric is the ABI's opaque handle; the core uses it directly. */
struct metrics *metrics_create(void);
void metrics_destroy(struct metrics *m);

/*
 * Register one series. `labels` is the rendered label set without braces
 * (`sink="archive"`) or NULL. Registering the same name and labels twice
 * returns the same series. Returns NULL for an invalid name or a name
 * already registered with another type. Thread-safe.
 */
aero_metric *metrics_register(struct metrics *m, aero_metric_type type, const char *name,
                              const char *help, const char *labels);

static inline void metrics_inc(aero_metric *s);
void metrics_add(aero_metric *s, uint64_t delta);
void metrics_set(aero_metric *s, int64_t value);
int64_t metrics_value(const aero_metric *s);

/* Render every series (HELP/TYPE once per name); *out is malloc'ed. */
int metrics_render(struct metrics *m, char **out, size_t *len);

/* True when name matches [a-zA-Z_:][a-zA-Z0-9_:]*. */
int metrics_name_valid(const char *name);

static inline void metrics_inc(aero_metric *s) { metrics_add(s, 1); }

#endif
