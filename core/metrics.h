/*
 * metrics.h - the registry behind /metrics: named counters, gauges and
 * duration histograms with a fixed label set each, registered at start-up
 * (core and plugins) or on first sight of a label value (metric_vec), and
 * updated lock-free from any thread; rendered as Prometheus text 0.0.4.
 * Histograms and vecs are core-only: the plugin ABI knows counters and
 * gauges.
 */
#ifndef AERO_METRICS_H
#define AERO_METRICS_H

#include <aeroarc/plugin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;
struct metric_vec;
struct metric_histogram;

/* struct aero_metric is the ABI's opaque handle; the core uses it directly. */
struct metrics *metrics_create(void);
/* Frees every series, vec and histogram registered with m. */
void metrics_destroy(struct metrics *m);

/*
 * Register one series. `labels` is the rendered label set without braces
 * (`sink="archive"`) or NULL. Registering the same name and labels twice
 * returns the same series. Returns NULL for an invalid name, a name already
 * registered with another type, or a name that would collide with a
 * histogram's _bucket/_sum/_count lines. Thread-safe.
 */
aero_metric *metrics_register(struct metrics *m, aero_metric_type type, const char *name,
                              const char *help, const char *labels);

/*
 * The labels of every series about sink instance `sink`, the core's and
 * its plugin's alike, so one selector finds them all:
 *   sink="archive",plugin="sink-file"
 * into buf[0..cap) (NULL plugin: ""). The one formatter: the summary finds
 * the pipeline's series by these exact labels. Returns as snprintf.
 */
int metrics_sink_labels(char *buf, size_t cap, const char *sink, const char *plugin);

/* The same for a value kept in nanoseconds and rendered in seconds
 * (process_cpu_seconds_total, process_start_time_seconds). */
aero_metric *metrics_register_seconds(struct metrics *m, aero_metric_type type, const char *name,
                                      const char *help, const char *labels);

/* fn(arg) runs at the start of every metrics_render, before any series
 * is read (at most 4; main thread, at start). 0 or -1. */
int metrics_add_collector(struct metrics *m, void (*fn)(void *arg), void *arg);

static inline void metrics_inc(aero_metric *s);
void metrics_add(aero_metric *s, uint64_t delta);
void metrics_set(aero_metric *s, int64_t value);
int64_t metrics_value(const aero_metric *s);
/* True for a series registered as AERO_METRIC_COUNTER (NULL: false). */
bool metrics_is_counter(const aero_metric *s);

/*
 * A family of counters told apart by one label whose values are not known
 * in advance (message_type = the frame's msg_name): at most `max_values`
 * distinct values get their own series, every later one is counted under
 * label value `overflow`. `fixed` is a label set rendered before the
 * variable label (`source="grpc"`) or NULL. Owned by m. NULL on bad
 * arguments or out of memory.
 */
struct metric_vec *metrics_vec_register(struct metrics *m, const char *name, const char *help,
                                        const char *fixed, const char *label, size_t max_values,
                                        const char *overflow);

/*
 * The series for label value `value` (len bytes, any bytes: escaped or
 * replaced as the text format needs). Lock-free once the value has been
 * seen; the first sight of a value takes the vec's lock and registers it.
 * Never NULL unless out of memory while registering the overflow series.
 */
aero_metric *metrics_vec_get(struct metric_vec *v, const char *value, size_t len);

/*
 * A histogram of durations. `bounds_s` are the upper bounds of the buckets
 * in seconds, strictly increasing (+Inf is implied). Owned by m. NULL on
 * bad arguments, a name clash or out of memory.
 */
struct metric_histogram *metrics_histogram_register(struct metrics *m, const char *name,
                                                    const char *help, const double *bounds_s,
                                                    size_t n_bounds);
/* The same, one series of a labelled family (`labels` as for
 * metrics_register: `kind="durable"`); each series registered once. */
struct metric_histogram *metrics_histogram_register_labeled(struct metrics *m, const char *name,
                                                            const char *help, const char *labels,
                                                            const double *bounds_s,
                                                            size_t n_bounds);
/* Record one duration (negative counts as 0). Lock-free, any thread. */
void metrics_histogram_observe_ns(struct metric_histogram *h, int64_t ns);
/* Observations so far and their sum (for tests and the bench). */
uint64_t metrics_histogram_count(const struct metric_histogram *h);
uint64_t metrics_histogram_sum_ns(const struct metric_histogram *h);

/* Render every series (HELP/TYPE once per name); *out is malloc'ed.
 * Takes only the registration lock, never blocks an update. */
int metrics_render(struct metrics *m, char **out, size_t *len);

/* True when name matches [a-zA-Z_:][a-zA-Z0-9_:]*. */
int metrics_name_valid(const char *name);

/*
 * Write `value` (len bytes) as a label value fit for the text format into
 * out[0..cap): backslash and double quote escaped, printable ASCII kept,
 * any other byte replaced by '_'. Returns the length written (always
 * NUL-terminated; truncated at cap - 1 without splitting an escape).
 */
size_t metrics_label_escape(const char *value, size_t len, char *out, size_t cap);

static inline void metrics_inc(aero_metric *s) { metrics_add(s, 1); }

#endif
