/*
 * sink_pipeline.h - every sink instance with its bounded queue and the thread
 * the core owns for it. A frame_job goes to every sink; each sink thread
 * takes batches from its queue into write_batch; the sink that reports a
 * job last completes it (the result that keeps the frame alive wins:
 * BACKOFF > RETRY > REJECT), and the job's owner then acks. Never blocks the caller: a full `block` queue takes the job anyway
 * (at most one over per waiter) and tells the caller to stop reading until
 * its waiter is woken; a full `reject` queue reports AERO_RETRY at once.
 * A proven-fast `block` sink is written by the submitting threads
 * themselves, in sink_pipeline_flush.
 */
#ifndef AERO_SINK_PIPELINE_H
#define AERO_SINK_PIPELINE_H

#include "metrics.h"
#include "settings.h"
#include <aeroarc/plugin.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct sink_pipeline;
struct sink;
struct plugin;
struct host_instance;
struct job_json;
struct job_text;

/* The longest sink result text an ack carries (the gateway's ACK_ERROR_MAX). */
#define SINK_RESULT_TEXT_MAX 512

/* One accepted frame on its way through the sinks. The owner allocates it
 * (view and everything it points to stay valid until `complete` runs). */
struct frame_job {
    aero_frame view;
    atomic_uint pending;          /* sinks yet to report */
    atomic_int worst;             /* worst aero_result so far */
    atomic_int failed_sink;       /* the sink whose result is `worst` (the first of
                                   * equals), -1: all OK. Exact once complete runs */
    atomic_int verdict;           /* both, packed, for sink_pipeline.c */
    _Atomic(struct job_json *) json; /* shared envelope encoding (job_json.c) */
    _Atomic(struct job_text *) texts; /* sinks' own ack texts, for sink_pipeline.c */
    /* The deciding sink's own ack text (plugin ABI 1.3 result_text, at most
     * SINK_RESULT_TEXT_MAX bytes), NULL: none. Valid only during complete. */
    const char *error;
    /* Called once, on whichever thread reported last (a sink thread, or the
     * submitting thread for rejects / no sinks), with no pipeline lock held. */
    void (*complete)(struct frame_job *job);
};

/* A reader that stops while a sink's `block` queue is full. The pipeline
 * calls wake() (from a sink thread, no lock held) once that queue has room. */
struct sink_waiter {
    struct sink_waiter *next;
    bool queued;                 /* on a sink's list (under that sink's lock) */
    _Atomic(struct sink *) on;   /* that sink while queued, else NULL */
    void (*wake)(struct sink_waiter *w);
    void *owner;                 /* for wake() */
};

/* Sinks (by index in the set they were queued by, the first 64) a thread
 * queued jobs on without waking their threads: it owes them a
 * sink_pipeline_flush. While mask is set it holds that set (slot): a
 * reload does not stop its sinks before the flush. Each submitting thread
 * keeps its own (a gRPC worker's is in its worker_ctx); zero it to start. */
struct sink_owed {
    uint64_t mask;
    unsigned slot;
};

struct sink_instance_spec {
    const struct sink_settings *settings;
    struct plugin *plugin;          /* loaded, kind sink */
};

/*
 * Create every sink instance (plugin create()) and start its thread. Up to
 * max_inline submitting threads at once may write a proven-fast `block`
 * sink themselves (0: never; keep it below the number of gRPC workers so one
 * always serves). On failure returns -1 with err filled; nothing is left
 * running.
 */
int sink_pipeline_start(struct sink_pipeline **out, const struct sink_instance_spec *specs,
                        size_t n, int max_inline, const char *relay_id, struct metrics *metrics,
                        char *err, size_t errlen);

/* [relay] unmatched = ack: a frame no sink's match / exclude takes is acked
 * OK (and thrown away); the default refuses it PERMANENT_ERROR. */
void sink_pipeline_set_unmatched_ack(struct sink_pipeline *p, bool ack);

/* The current set's size (any thread) and a sink's name (main thread). */
size_t sink_pipeline_count(struct sink_pipeline *p);
const char *sink_pipeline_name(struct sink_pipeline *p, size_t i);

/*
 * Hand `job` to every sink of the current set. `waiters` (n_waiters, owned
 * by the caller) are the caller's, one per sink by index: a reader made
 * before a reload added sinks has fewer, and pauses only on the full
 * queues it has waiters for. Returns how many waiters were queued
 * (the caller must not read more until that many wake() calls arrived).
 * A generation-2 job (view.protocol) is never refused or paused for a
 * full queue: its caller asked sink_pipeline_full first and holds frames.
 * job->complete may run before this returns. Sinks left for the caller to
 * write are added to `owed`: the caller must pass it to
 * sink_pipeline_flush before it next waits for anything.
 */
size_t sink_pipeline_submit(struct sink_pipeline *p, struct frame_job *job,
                            struct sink_waiter *waiters, size_t n_waiters, struct sink_owed *owed);

/*
 * Write what `owed` says the caller's submits queued on proven-fast sinks
 * (bounded in time; the sink threads take the rest), and clear it. The gRPC
 * workers call it when they run out of ready events, so one burst of
 * frames shares one write.
 */
void sink_pipeline_flush(struct sink_pipeline *p, struct sink_owed *owed);

/*
 * A sink that takes msg_name has a full queue now, whatever its on_full.
 * Generation-2 streams ask before they submit (SPEC.md section 9 step 9:
 * a full queue holds the frame's ack on those streams, for `block` and
 * `reject` sinks alike); seed streams do not ask: there `block` pauses
 * the reader and `reject` refuses the frame.
 */
bool sink_pipeline_full(struct sink_pipeline *p, aero_str msg_name);

/*
 * A generation-2 frame named msg_name, held for a full sink, was refused
 * "relay sink queue is full": counted for each sink that takes that name
 * and whose queue is full now, in the counter its plugin gave
 * count_queue_full (ABI 1.6). The core's own count of those refused after
 * the hold is aero_relay_frames_held_refused_total (no sink named).
 */
void sink_pipeline_count_full_refusal(struct sink_pipeline *p, aero_str msg_name);

/*
 * Queue w on a sink that takes msg_name and whose queue is full, to be
 * woken (wake(), from the sink's writer, no lock held) once it is below
 * its limit. False, with nothing queued, when none is full. One sink at a
 * time per waiter; sink_pipeline_cancel_wait takes it back.
 */
bool sink_pipeline_wait_room(struct sink_pipeline *p, aero_str msg_name, struct sink_waiter *w);

/* Remove a waiter that is going away (stream ended), from whichever sink
 * it is queued on. Returns true if it was still queued (no wake() will
 * come for it). */
bool sink_pipeline_cancel_wait(struct sink_pipeline *p, struct sink_waiter *w);

/* SIGHUP: ask every sink thread to call reopen() before its next batch. */
void sink_pipeline_reopen(struct sink_pipeline *p);

/* What sink_pipeline_swap did: sinks left running untouched, started,
 * and retired (removed or replaced: they drain, then stop). */
struct sink_swap_counts {
    size_t kept, started, retired;
};

/*
 * SIGHUP: make `specs` (a reload's [sink:*] sections, in order) the set
 * new frames go to. A running sink whose name, plugin and keys equal a
 * spec's keeps running, untouched; the others are created and started
 * first (any failure: -1 with err, nothing changed, the new ones stopped).
 * Sinks the new set lacks write what they were given (their frames' acks
 * go out with their results) and stop: sink_pipeline_tick frees them once
 * no frame can reach them any more. A swap while the previous one's old
 * set is still in use is refused. Main thread; the specs' settings and
 * plugins must outlive the pipeline.
 */
int sink_pipeline_swap(struct sink_pipeline *p, const struct sink_instance_spec *specs,
                       size_t n, struct sink_swap_counts *counts, char *err, size_t errlen);

/* A running sink that spec describes unchanged (name, plugin, keys):
 * a swap would keep it. Main thread. */
bool sink_pipeline_runs(struct sink_pipeline *p, const struct sink_instance_spec *spec);

/* The main thread's tick: retired sinks told to stop once no submit can
 * reach them, and freed once their threads have exited. Never waits. */
void sink_pipeline_tick(struct sink_pipeline *p);

/* Retired sinks not yet freed (draining, or stopping). Main thread. */
size_t sink_pipeline_retiring(const struct sink_pipeline *p);

/* Write out everything queued (retired sinks' too), flush(), stop the
 * threads, destroy the instances. Jobs still queued are completed first. A sink thread still
 * busy after timeout_ms (< 0: no limit) is left running and NOTHING is
 * freed: returns false, and the caller must exit without touching the
 * pipeline, its jobs or the plugins again. */
bool sink_pipeline_stop(struct sink_pipeline *p, int64_t timeout_ms);

/* The result that decides the ack of two (BACKOFF > RETRY > REJECT > OK;
 * unknown = RETRY): a frame another sink can still store is resent. */
aero_result sink_pipeline_result_worse(aero_result a, aero_result b);

/*
 * Readiness ([http] unready_after_s): true when a sink has refused every
 * frame for at least after_ns (0: never), with its name and the reason it
 * gave last (its own text, "queue full", or "refuses every frame") into
 * name and why (cap bytes each). Any thread.
 */
#define SINK_REASON_MAX 128
bool sink_pipeline_failing(struct sink_pipeline *p, int64_t now_ns, int64_t after_ns,
                           char *name, char *why, size_t cap);

/*
 * Each sink's state for /readyz's component list, in relay.ini order,
 * into out[0..cap): failing while it refuses every frame (its reason and
 * for how long), degraded when its last batch refused some frames but
 * not all (its reason), else ok. Returns the number of sinks (may exceed
 * cap). Any thread.
 */
struct readiness_component;
size_t sink_pipeline_states(struct sink_pipeline *p, int64_t now_ns,
                            struct readiness_component *out, size_t cap);

#endif
