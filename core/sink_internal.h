/*
 * sink_internal.h - what sink_pipeline.c (queues, writers, the frame's
 * verdict) and sink_swap.c (a reload's new set of sinks) share. Nothing
 * else includes it.
 */
#ifndef AERO_SINK_INTERNAL_H
#define AERO_SINK_INTERNAL_H

#include "job_json.h"
#include "sink_pipeline.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

struct sink {
    struct sink_pipeline *pipeline;
    /* Names the sink in a job's verdict (job_report): unique in the
     * pipeline's life, so a job's reports agree whichever set it was
     * submitted to. The first sinks are 0..n-1, their index. */
    unsigned id;
    struct sink *retired_next; /* on p->retiring (sink_swap.c) */
    /* The ack text when it refuses a frame without a text of its own. */
    char refused_text[160];
    const struct sink_settings *settings;
    struct plugin *plugin;
    const aero_sink_vtable *vt;
    struct host_instance *host;
    void *instance;
    /* The writer's (sink thread or inline) batch arrays, SINK_BATCH_MAX
     * each: only the thread holding the writer role (`busy`) uses them. */
    struct frame_job **batch;
    const aero_frame **frames;
    aero_result *results;
    struct job_json_batch json; /* envelope_json's view of the batch */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct frame_job **ring;     /* capacity = settings->queue + slack */
    size_t ring_cap, head, len;
    size_t limit;                /* settings->queue */
    struct sink_waiter *waiters; /* readers paused on this queue */
    bool stop, reopen;
    bool busy;                   /* a thread is inside write_batch */
    _Atomic int64_t avg_call_ns; /* moving average of write_batch calls */
    pthread_t thread;
    bool thread_started;

    aero_metric *m_enqueued, *m_errors, *m_rejected, *m_dropped, *m_queue_len, *m_batches;
    aero_metric *m_errors_spec; /* m_errors under SPEC's aero_relay_sink_errors_total */
    /* The plugin's own count of queue-full refusals (ABI 1.6
     * count_queue_full), NULL if it has none: set once create() returned. */
    aero_metric *m_plugin_full;

    /* Since when (mono ns) every frame was refused, 0 while frames are
     * taken; whether the last batch refused only some (partial); why, as
     * the sink said it last (under mu). For readiness. */
    _Atomic int64_t refusing_since;
    atomic_bool partial;
    char refusing_why[SINK_REASON_MAX];

    /* [sink:*] match / exclude, split (NULL-terminated; NULL: no list). */
    char **match, **exclude;
    aero_metric *m_filtered;
    struct metric_histogram *m_write_seconds; /* each write_batch call */
};

/* The sinks frames go to, in [sink:*] order: immutable once published. */
struct sink_set {
    size_t n;
    struct sink *sinks[];
};

/* A sink's aero_sink_write_seconds: a histogram cannot be registered twice,
 * so a sink that replaces one of its name takes over the series. */
struct sink_hist {
    struct sink_hist *next;
    struct metric_histogram *h;
    char name[];
};

/*
 * The current set is sets[cur]. Every submit, flush (and a thread's owed
 * mask) holds a reference on the slot it read the set from, refs[slot]
 * (sink_set_acquire): a reload publishes the new set in the other slot and
 * frees the old one, and stops the sinks only it had, once its slot's
 * count is back to 0 (sink_swap.c). Only the main thread changes sets.
 */
struct sink_pipeline {
    struct sink_set *sets[2];
    _Atomic unsigned cur;
    atomic_uint refs[2];
    atomic_size_t n_now;       /* sets[cur]->n, for the writers */
    struct sink *retiring;     /* removed or replaced: draining (main thread) */
    int retired_slot;          /* the old set's slot until its refs are 0, else -1 */
    /* Held by whoever follows a queued waiter to its sink, and while a
     * retired sink is freed: a waiter never points at freed memory. */
    pthread_mutex_t waiter_mu;
    unsigned next_id;
    const char *relay_id;
    struct metrics *metrics;
    struct sink_hist *hists;
    bool unmatched_ack;        /* a frame no sink takes: OK, else PERMANENT_ERROR */
    int max_inline;            /* gRPC threads that may write inline at once */
    atomic_int inline_writers; /* how many do now */
};

/* Which set a caller uses: a reference on its slot, given back with
 * sink_set_release. Lock-free; any thread. */
unsigned sink_set_acquire(struct sink_pipeline *p);
void sink_set_release(struct sink_pipeline *p, unsigned slot);

/* Make one sink instance (plugin create()) and start its thread; NULL
 * with err filled, nothing left running. sink_ask_stop, then sink_join,
 * then sink_destroy take it down. */
struct sink *sink_create(struct sink_pipeline *p, const struct sink_instance_spec *spec,
                         char *err, size_t errlen);
void sink_ask_stop(struct sink *s);
/* Join by `deadline` (CLOCK_REALTIME; NULL: no limit). False: still running. */
bool sink_join(struct sink *s, const struct timespec *deadline);
/* Join if its thread has exited already; never waits. */
bool sink_try_join(struct sink *s);
void sink_destroy(struct sink *s);
struct sink_set *sink_set_alloc(size_t n);

#endif
