/*
 * summary.h - the one info line every [log] summary_interval_s: sessions,
 * open streams, frames per second, acks by status and each sink's state
 * over the interval, read from the metrics the other modules keep. What an
 * operator looks at first. Main thread only (its tick).
 */
#ifndef AERO_SUMMARY_H
#define AERO_SUMMARY_H

#include "metrics.h"
#include "settings.h"

#include <stddef.h>
#include <stdint.h>

struct summary;

/* What one line is made of: counters are totals since start, read at the
 * line's time; the line shows what changed since the last one. */
struct summary_sample {
    int64_t at_ns;        /* monotonic */
    size_t sessions, streams;
    int64_t frames;
    int64_t acks[4];      /* ok, temporary_error, permanent_error, retry_with_backoff */
    size_t n_sinks;
    struct summary_sink_sample {
        int64_t enqueued, errors, rejected, queue_len;
    } *sinks;             /* n_sinks, in [sink:*] order */
};

/*
 * Created after the gateway and the sinks registered their metrics (their
 * series are looked up by name, so nothing new appears on /metrics).
 * NULL when [log] summary_interval_s is 0 or out of memory: then
 * summary_tick does nothing.
 */
struct summary *summary_create(const struct settings *st, struct metrics *m, int64_t now_ns);
void summary_destroy(struct summary *s);

/* A reload changed the sinks: lines from now on show st's [sink:*] (st
 * outlives s), and the next covers the time since this call. The interval
 * stays. */
void summary_set_sinks(struct summary *s, const struct settings *st, int64_t now_ns);

/* Once the interval has passed since the last line: read sessions and
 * streams (given by the caller) and the metrics, and log the line. */
void summary_tick(struct summary *s, int64_t now_ns, size_t sessions, size_t streams);

/*
 * The line for the change from `prev` to `cur` (same sinks), e.g.
 *   summary, last 60 s: 3 session(s), 3 stream(s); 812.4 frames/s (48744);
 *   acks ok 48740, temporary_error 4, permanent_error 0, retry_with_backoff 0;
 *   sink archive ok (queue 0/4096), sink bus failing: 1203 of 1203 frames
 *   refused (queue 4096/4096)
 * into buf. For summary_tick and tests.
 */
void summary_format(const struct settings *st, const struct summary_sample *prev,
                    const struct summary_sample *cur, char *buf, size_t cap);

#endif
