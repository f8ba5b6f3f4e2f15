/*
 * sink_pipeline.c - per-sink bounded queues and the threads that drain them.
 * Producers (gRPC threads) only take the queue lock long enough to push; a
 * writer pops a whole batch at once (group commit) and calls the plugin
 * with no lock held. One writer per sink at a time (`busy`), in queue order.
 *
 * A sink whose write_batch has proven fast on its own thread (recent calls
 * well under INLINE_MAX_NS) is written by the gRPC threads themselves:
 * handing every frame to another thread costs two context switches, more
 * than writing a line to the page cache. Such a sink's jobs are queued
 * without waking its thread, and the submitting thread drains the queue in
 * sink_pipeline_flush when it has run out of ready gRPC events, so every
 * frame read in one burst (and any another thread queued meanwhile) goes
 * out in one write_batch. Writing inline is a form of backpressure, so only
 * `block` sinks do it, for a bounded time per flush, and never more than
 * `max_inline` threads at once: a sink that suddenly hangs holds up one
 * gRPC thread, never the server. A slow sink (fsync, network) stays on its
 * own thread, where batches grow and one fsync covers many frames.
 *
 * The sinks a frame goes to are the current set (sink_internal.h), read
 * once per submit under a reference; a reload replaces the set
 * (sink_swap.c).
 */
#include "sink_pipeline.h"

#include "host_api.h"
#include "log.h"
#include "mono_clock.h"
#include "plugin_loader.h"
#include "readiness.h"
#include "sink_internal.h"

#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest batch handed to write_batch: big enough for group commit to pay
 * off, small enough that the first frame's ack is not held back long. */
#define SINK_BATCH_MAX 1024

/* A sink is written inline while its average write_batch call takes less
 * than this; a call that blocks a gRPC worker longer is not worth saving a
 * thread handoff. */
#define INLINE_MAX_NS 100000

/* One flush writes batches of at most INLINE_BATCH_MAX jobs for at most
 * INLINE_DRAIN_NS, then leaves the rest to the sink's thread: the gRPC
 * thread has calls of its own to serve. */
#define INLINE_BATCH_MAX 256
#define INLINE_DRAIN_NS 200000

/* The rank a result decides the ack by: OK < REJECT < RETRY < BACKOFF. A
 * frame one sink can still store is never given up because another
 * refused it for good (SPEC.md 13.9 rule 8): the agent resends, and the
 * sink that took it dedupes. Anything unknown counts as RETRY. */
static int rank(aero_result r)
{
    switch (r) {
    case AERO_OK: return 0;
    case AERO_REJECT: return 1;
    case AERO_BACKOFF: return 3;
    default: return 2; /* AERO_RETRY, and anything unknown */
    }
}

aero_result sink_pipeline_result_worse(aero_result a, aero_result b)
{
    if (rank(a) == rank(b))
        return rank(a) == 2 ? AERO_RETRY : a;
    return rank(a) > rank(b) ? (rank(a) == 2 ? AERO_RETRY : a) : (rank(b) == 2 ? AERO_RETRY : b);
}

/* A job's verdict so far, in one atomic so the worst result and the sink
 * that gave it change together: the result in the low byte, the sink + 1
 * above (0: none). */
#define VERDICT(result, sink) ((int)(result) | (int)(((sink) + 1) << 8))
#define VERDICT_RESULT(v) ((aero_result)((v) & 0xff))
#define VERDICT_SINK(v) (((v) >> 8) - 1)

/* A sink's own text for its result on one job (plugin ABI 1.3
 * result_text): pushed onto the job's list by the sink's writer; the last
 * report picks the deciding sink's and frees the list. */
struct job_text {
    struct job_text *next;
    size_t sink;
    char text[];
};

static void job_add_text(struct frame_job *job, size_t sink, const char *text)
{
    size_t n = strnlen(text, SINK_RESULT_TEXT_MAX + 1);
    if (n > SINK_RESULT_TEXT_MAX) { /* cut before a UTF-8 continuation byte */
        n = SINK_RESULT_TEXT_MAX;
        while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
            n--;
    }
    struct job_text *t = malloc(sizeof(*t) + n + 1);
    if (!t)
        return; /* the relay's own text then */
    t->sink = sink;
    memcpy(t->text, text, n);
    t->text[n] = '\0';
    t->next = atomic_load(&job->texts);
    while (!atomic_compare_exchange_weak(&job->texts, &t->next, t))
        ;
}

/* A sink's verdict on one job; the last verdict completes it. The sink
 * named is the one whose result won (the first of equals), so the ack's
 * text is that sink's. */
static void job_report(struct frame_job *job, size_t sink, aero_result r)
{
    if (r != AERO_OK) {
        int cur = atomic_load(&job->verdict);
        aero_result w;
        while ((w = sink_pipeline_result_worse(VERDICT_RESULT(cur), r)) != VERDICT_RESULT(cur) &&
               !atomic_compare_exchange_weak(&job->verdict, &cur, VERDICT(w, sink)))
            ;
        /* For observers while other sinks still write; set exactly below. */
        atomic_store(&job->worst, (int)VERDICT_RESULT(atomic_load(&job->verdict)));
        atomic_store(&job->failed_sink, VERDICT_SINK(atomic_load(&job->verdict)));
    }
    if (atomic_fetch_sub(&job->pending, 1) == 1) {
        int v = atomic_load(&job->verdict);
        atomic_store(&job->worst, (int)VERDICT_RESULT(v));
        atomic_store(&job->failed_sink, VERDICT_SINK(v));
        struct job_text *texts = atomic_exchange(&job->texts, NULL);
        job->error = NULL;
        for (struct job_text *t = texts; t; t = t->next)
            if ((int)t->sink == VERDICT_SINK(v))
                job->error = t->text;
        job->complete(job); /* may free the job, never the texts */
        while (texts) {
            struct job_text *next = texts->next;
            free(texts);
            texts = next;
        }
    }
}

/* A batch (or a queue-full refusal) ended: the sink took every frame,
 * some (partial), or none of these (`why`: its own text, or NULL). */
static void note_outcome(struct sink *s, size_t taken, size_t refused, const char *why)
{
    atomic_store_explicit(&s->partial, taken > 0 && refused > 0, memory_order_relaxed);
    if (taken > 0)
        atomic_store_explicit(&s->refusing_since, 0, memory_order_relaxed);
    if (refused == 0)
        return;
    int64_t zero = 0;
    if (taken == 0)
        atomic_compare_exchange_strong(&s->refusing_since, &zero, mono_ns());
    pthread_mutex_lock(&s->mu);
    snprintf(s->refusing_why, sizeof(s->refusing_why), "%s",
             why ? why : taken ? "refuses some frames" : "refuses every frame");
    pthread_mutex_unlock(&s->mu);
}

size_t sink_pipeline_states(struct sink_pipeline *p, int64_t now_ns,
                            struct readiness_component *out, size_t cap)
{
    if (!p)
        return 0;
    unsigned slot = sink_set_acquire(p); /* the sinks running now */
    const struct sink_set *set = p->sets[slot];
    size_t n = set->n;
    for (size_t i = 0; i < n && i < cap; i++) {
        struct sink *s = set->sinks[i];
        struct readiness_component *c = &out[i];
        int64_t since = atomic_load_explicit(&s->refusing_since, memory_order_relaxed);
        bool partial = atomic_load_explicit(&s->partial, memory_order_relaxed);
        snprintf(c->name, sizeof(c->name), "sink:%s", s->settings->name);
        c->state = since ? AERO_STATE_FAILING : partial ? AERO_STATE_DEGRADED : AERO_STATE_OK;
        c->reason[0] = '\0';
        if (c->state == AERO_STATE_OK)
            continue;
        pthread_mutex_lock(&s->mu);
        if (since)
            snprintf(c->reason, sizeof(c->reason), "%s (every frame for %lld s)",
                     s->refusing_why, (long long)((now_ns - since) / 1000000000));
        else
            snprintf(c->reason, sizeof(c->reason), "%s (some frames of its last batch)",
                     s->refusing_why);
        pthread_mutex_unlock(&s->mu);
    }
    sink_set_release(p, slot);
    return n;
}

bool sink_pipeline_failing(struct sink_pipeline *p, int64_t now_ns, int64_t after_ns,
                           char *name, char *why, size_t cap)
{
    unsigned slot = sink_set_acquire(p);
    const struct sink_set *set = p->sets[slot];
    bool failing = false;
    for (size_t i = 0; after_ns > 0 && i < set->n && !failing; i++) {
        struct sink *s = set->sinks[i];
        int64_t since = atomic_load_explicit(&s->refusing_since, memory_order_relaxed);
        if (since == 0 || now_ns - since < after_ns)
            continue;
        snprintf(name, cap, "%s", s->settings->name);
        pthread_mutex_lock(&s->mu);
        snprintf(why, cap, "%s", s->refusing_why);
        pthread_mutex_unlock(&s->mu);
        failing = true;
    }
    sink_set_release(p, slot);
    return failing;
}

/* Call write_batch on the n jobs in s->batch (the caller holds the writer
 * role) and report each result. Times the call for the inline decision. */
static void write_jobs(struct sink *s, size_t n)
{
    struct frame_job **jobs = s->batch;
    const aero_frame **frames = s->frames;
    aero_result *results = s->results;
    for (size_t i = 0; i < n; i++) {
        frames[i] = &jobs[i]->view;
        results[i] = AERO_RETRY; /* a plugin that forgets a slot does not ack OK */
    }
    int64_t t0 = mono_ns();
    job_json_batch_begin(&s->json, jobs, n, atomic_load(&s->pipeline->n_now) > 1);
    s->vt->write_batch(s->instance, frames, n, results);
    job_json_batch_end(&s->json);
    int64_t took = mono_ns() - t0;
    metrics_histogram_observe_ns(s->m_write_seconds, took);
    /* A fast sink's call can still take milliseconds when its thread is
     * preempted (the agents share the cores): one such call must not send
     * it back to its thread. Samples are capped and weigh 1/32, so only a
     * sink that stays slow for a few dozen calls crosses INLINE_MAX_NS. */
    if (took > 2 * INLINE_MAX_NS)
        took = 2 * INLINE_MAX_NS;
    int64_t avg = atomic_load_explicit(&s->avg_call_ns, memory_order_relaxed);
    atomic_store_explicit(&s->avg_call_ns, avg - avg / 32 + took / 32, memory_order_relaxed);
    metrics_inc(s->m_batches);
    const char *(*text)(void *, size_t) =
        AERO_HAS(s->vt, aero_sink_vtable, result_text) ? s->vt->result_text : NULL;
    size_t taken = 0;
    const char *why = NULL;
    for (size_t i = 0; i < n; i++) {
        if (results[i] != AERO_OK) {
            const char *t = text ? text(s->instance, i) : NULL;
            job_add_text(jobs[i], s->id, t ? t : s->refused_text);
            if (!why)
                why = t;
        } else {
            taken++;
        }
    }
    metrics_add(s->m_errors, n - taken);
    metrics_add(s->m_errors_spec, n - taken);
    note_outcome(s, taken, n - taken, why); /* before the reports: a job may free its texts */
    for (size_t i = 0; i < n; i++)
        job_report(jobs[i], s->id, results[i]);
}

/* Under s->mu: may a gRPC thread write this sink itself? */
static bool inline_ok(const struct sink *s)
{
    return !s->stop && !s->reopen && s->settings->on_full == ON_FULL_BLOCK &&
           atomic_load_explicit(&s->avg_call_ns, memory_order_relaxed) < INLINE_MAX_NS;
}

/* One of the pipeline's max_inline slots; give it back after writing. */
static bool take_inline_slot(struct sink_pipeline *p)
{
    if (atomic_fetch_add(&p->inline_writers, 1) >= p->max_inline) {
        atomic_fetch_sub(&p->inline_writers, 1);
        return false;
    }
    return true;
}

/* The queue can outgrow `limit` by one job per paused reader (block policy),
 * so the ring grows on demand; memory stays bounded by limit + readers. */
static int ring_push(struct sink *s, struct frame_job *job)
{
    if (s->len == s->ring_cap) {
        size_t cap = s->ring_cap * 2;
        struct frame_job **ring = malloc(cap * sizeof(*ring));
        if (!ring)
            return -ENOMEM;
        for (size_t i = 0; i < s->len; i++)
            ring[i] = s->ring[(s->head + i) % s->ring_cap];
        free(s->ring);
        s->ring = ring;
        s->ring_cap = cap;
        s->head = 0;
    }
    s->ring[(s->head + s->len) % s->ring_cap] = job;
    s->len++;
    return 0;
}

/* "A, B*, C?" -> {"A", "B*", "C?", NULL} (the core checked the syntax);
 * NULL for an empty list, or when out of memory (then -1 in *rc). */
static char **split_patterns(const char *list, int *rc)
{
    size_t n = 0;
    for (const char *c = list; c && *c; c++)
        n += *c == ',';
    if (!list || !*list)
        return NULL;
    char **v = calloc(n + 2, sizeof(*v));
    size_t k = 0;
    while (v && *list) {
        list += strspn(list, " \t");
        size_t len = strcspn(list, ","), end = len;
        while (end > 0 && (list[end - 1] == ' ' || list[end - 1] == '\t'))
            end--;
        if (!(v[k++] = strndup(list, end))) {
            *rc = -1;
            return v;
        }
        list += len + (list[len] == ',');
    }
    if (!v)
        *rc = -1;
    return v;
}

static void free_patterns(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static bool any_matches(char *const *v, const char *name)
{
    for (size_t i = 0; v && v[i]; i++)
        if (fnmatch(v[i], name, FNM_CASEFOLD) == 0)
            return true;
    return false;
}

/* Does sink s take frames of this msg_name ([sink:*] match / exclude)? */
static bool wants(const struct sink *s, aero_str msg_name)
{
    if (!s->match && !s->exclude)
        return true;
    char name[256];
    if (msg_name.len >= sizeof(name)) /* longer than any pattern can match */
        return !s->match;
    memcpy(name, msg_name.ptr, msg_name.len);
    name[msg_name.len] = '\0';
    return (!s->match || any_matches(s->match, name)) && !any_matches(s->exclude, name);
}

void sink_pipeline_set_unmatched_ack(struct sink_pipeline *p, bool ack) { p->unmatched_ack = ack; }

unsigned sink_set_acquire(struct sink_pipeline *p)
{
    for (;;) {
        unsigned slot = atomic_load(&p->cur);
        atomic_fetch_add(&p->refs[slot], 1);
        /* Still current: the reload that retires this slot waits for us. */
        if (atomic_load(&p->cur) == slot)
            return slot;
        atomic_fetch_sub(&p->refs[slot], 1);
    }
}

void sink_set_release(struct sink_pipeline *p, unsigned slot)
{
    atomic_fetch_sub(&p->refs[slot], 1);
}

/*
 * The sinks that do not take the frame answer for it at once: OK, except
 * when no sink takes it and [relay] unmatched = reject, then the first
 * answers PERMANENT_ERROR saying so. Returns how many take it.
 */
static size_t filter(struct sink_pipeline *p, const struct sink_set *set, struct frame_job *job,
                     bool *taken)
{
    size_t n = 0;
    for (size_t i = 0; i < set->n; i++)
        n += taken[i] = wants(set->sinks[i], job->view.msg_name);
    for (size_t i = 0; i < set->n; i++) {
        struct sink *s = set->sinks[i];
        if (taken[i])
            continue;
        metrics_inc(s->m_filtered);
        if (n == 0 && i == 0 && !p->unmatched_ack) {
            char text[160];
            int len = job->view.msg_name.len < 64 ? (int)job->view.msg_name.len : 64;
            snprintf(text, sizeof(text), "no sink accepts msg_name %.*s (match / exclude)", len,
                     job->view.msg_name.ptr ? job->view.msg_name.ptr : "");
            job_add_text(job, s->id, text);
            job_report(job, s->id, AERO_REJECT);
        } else {
            job_report(job, s->id, AERO_OK);
        }
    }
    return n;
}

/* Under s->mu: queue w on s (readers paused on a full queue). */
static void waiter_queue(struct sink *s, struct sink_waiter *w)
{
    w->queued = true;
    atomic_store(&w->on, s);
    w->next = s->waiters;
    s->waiters = w;
}

/* Under s->mu: w is off s's list (woken or cancelled). */
static void waiter_dequeued(struct sink_waiter *w)
{
    w->queued = false;
    atomic_store(&w->on, NULL);
}

/* Put job on sink s (set index i). Returns how many waiters it queued. */
static size_t push_one(struct sink *s, size_t i, struct frame_job *job,
                       struct sink_waiter *waiters, size_t n_waiters, struct sink_owed *owed)
{
    size_t paused = 0;
    aero_result refused = AERO_OK;
    /* A generation-2 stream asked sink_pipeline_full before it submitted
     * and holds its frames while a queue is full (SPEC.md section 9 step
     * 9): a queue another stream filled since is not its reason to refuse
     * or pause. It takes the frame, past its limit by at most one frame per
     * worker that looked just before it filled. */
    bool on_full = job->view.protocol != AERO_PROTOCOL_MULTIPLEXED;
    pthread_mutex_lock(&s->mu);
    if (on_full && s->len >= s->limit && s->settings->on_full == ON_FULL_REJECT) {
        refused = AERO_RETRY;
    } else if (ring_push(s, job) < 0) {
        refused = AERO_RETRY;
    } else {
        /* A reader opened before a reload added sinks has no waiter for
         * the new ones: it pauses on those it has. */
        if (on_full && s->len >= s->limit && s->settings->on_full == ON_FULL_BLOCK &&
            i < n_waiters && !waiters[i].queued) {
            waiter_queue(s, &waiters[i]);
            paused++;
        }
        /* A busy writer takes it before giving the role back. */
        if (inline_ok(s) && i < 64)
            owed->mask |= UINT64_C(1) << i;
        else if (!s->busy)
            pthread_cond_signal(&s->cv);
    }
    size_t len = s->len;
    pthread_mutex_unlock(&s->mu);
    metrics_set(s->m_queue_len, (int64_t)len);
    if (refused != AERO_OK) {
        metrics_inc(s->m_rejected);
        metrics_inc(s->m_plugin_full);
        note_outcome(s, 0, 1, "queue full");
        /* The ack says which sink and why: SPEC's text, then the sink
         * (its name is at most 64 bytes, so this is never cut). */
        char text[160];
        snprintf(text, sizeof(text),
                 "relay sink queue is full: sink \"%s\" (queue = %zu, on_full = reject); resend",
                 s->settings->name, s->settings->queue);
        job_add_text(job, s->id, text);
        job_report(job, s->id, refused);
    } else {
        metrics_inc(s->m_enqueued);
    }
    return paused;
}

size_t sink_pipeline_submit(struct sink_pipeline *p, struct frame_job *job,
                            struct sink_waiter *waiters, size_t n_waiters, struct sink_owed *owed)
{
    unsigned slot = sink_set_acquire(p);
    /* What a burst owes is written with the set it was queued by. */
    if (owed->mask && owed->slot != slot)
        sink_pipeline_flush(p, owed);
    const struct sink_set *set = p->sets[slot];
    size_t paused = 0;
    atomic_store(&job->pending, (unsigned)set->n + 1); /* +1: ours, dropped below */
    atomic_store(&job->verdict, VERDICT(AERO_OK, -1));
    atomic_store(&job->worst, AERO_OK);
    atomic_store(&job->failed_sink, -1);
    atomic_store(&job->json, NULL);
    atomic_store(&job->texts, NULL);
    job->error = NULL;

    bool owing = owed->mask != 0;
    bool taken[set->n ? set->n : 1];
    filter(p, set, job, taken);
    for (size_t i = 0; i < set->n; i++)
        if (taken[i])
            paused += push_one(set->sinks[i], i, job, waiters, n_waiters, owed);
    job_report(job, SIZE_MAX, AERO_OK);
    /* An owed mask keeps its set: the reference goes with the flush. */
    if (!owing && owed->mask)
        owed->slot = slot;
    else
        sink_set_release(p, slot);
    return paused;
}

/* The first sink of the current set that takes msg_name and whose queue
 * is full, whatever its on_full, locked; NULL if none. */
static struct sink *full_sink(const struct sink_set *set, aero_str msg_name)
{
    for (size_t i = 0; i < set->n; i++) {
        struct sink *s = set->sinks[i];
        if (!wants(s, msg_name))
            continue;
        pthread_mutex_lock(&s->mu);
        if (s->len >= s->limit)
            return s;
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

bool sink_pipeline_full(struct sink_pipeline *p, aero_str msg_name)
{
    unsigned slot = sink_set_acquire(p);
    struct sink *s = full_sink(p->sets[slot], msg_name);
    if (s)
        pthread_mutex_unlock(&s->mu);
    sink_set_release(p, slot);
    return s != NULL;
}

void sink_pipeline_count_full_refusal(struct sink_pipeline *p, aero_str msg_name)
{
    unsigned slot = sink_set_acquire(p);
    const struct sink_set *set = p->sets[slot];
    for (size_t i = 0; i < set->n; i++) {
        struct sink *s = set->sinks[i];
        if (!s->m_plugin_full || !wants(s, msg_name))
            continue;
        pthread_mutex_lock(&s->mu);
        bool full = s->len >= s->limit;
        pthread_mutex_unlock(&s->mu);
        if (full)
            metrics_inc(s->m_plugin_full);
    }
    sink_set_release(p, slot);
}

bool sink_pipeline_wait_room(struct sink_pipeline *p, aero_str msg_name, struct sink_waiter *w)
{
    unsigned slot = sink_set_acquire(p);
    struct sink *s = full_sink(p->sets[slot], msg_name);
    bool wait = s && !w->queued;
    if (wait)
        waiter_queue(s, w);
    if (s)
        pthread_mutex_unlock(&s->mu);
    sink_set_release(p, slot);
    return wait;
}

bool sink_pipeline_cancel_wait(struct sink_pipeline *p, struct sink_waiter *w)
{
    bool was = false;
    pthread_mutex_lock(&p->waiter_mu);
    struct sink *s = atomic_load(&w->on);
    if (s) {
        pthread_mutex_lock(&s->mu);
        if (w->queued && atomic_load(&w->on) == s) {
            for (struct sink_waiter **pp = &s->waiters; *pp; pp = &(*pp)->next) {
                if (*pp == w) {
                    *pp = w->next;
                    break;
                }
            }
            waiter_dequeued(w);
            was = true;
        }
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&p->waiter_mu);
    return was;
}

/* Under s->mu, as the writer: take up to max jobs; detach the waiters if
 * the queue now has room (wake them with no lock held). */
static size_t take_jobs(struct sink *s, struct frame_job **batch, size_t max,
                        struct sink_waiter **wake)
{
    size_t n = 0;
    while (n < max && s->len > 0) {
        batch[n++] = s->ring[s->head];
        s->head = (s->head + 1) % s->ring_cap;
        s->len--;
    }
    *wake = NULL;
    if (s->len < s->limit && s->waiters) {
        *wake = s->waiters;
        s->waiters = NULL;
        for (struct sink_waiter *w = *wake; w; w = w->next)
            waiter_dequeued(w);
    }
    metrics_set(s->m_queue_len, (int64_t)s->len);
    return n;
}

static void wake_all(struct sink_waiter *w)
{
    while (w) {
        struct sink_waiter *next = w->next;
        w->wake(w);
        w = next;
    }
}

/* Under s->mu: writer role given back; the sink thread takes over
 * anything left. */
static void release_writer_locked(struct sink *s)
{
    s->busy = false;
    if (s->len > 0 || s->stop || s->reopen)
        pthread_cond_signal(&s->cv);
}

static void release_writer(struct sink *s)
{
    pthread_mutex_lock(&s->mu);
    release_writer_locked(s);
    pthread_mutex_unlock(&s->mu);
}

/* The sink thread's next batch: waits for jobs and the writer role. */
static size_t take_batch(struct sink *s, struct frame_job **batch, size_t max,
                         struct sink_waiter **wake, bool *reopen)
{
    pthread_mutex_lock(&s->mu);
    while ((s->len == 0 && !s->stop && !s->reopen) || s->busy)
        pthread_cond_wait(&s->cv, &s->mu);
    size_t n = take_jobs(s, batch, max, wake);
    *reopen = s->reopen;
    s->reopen = false;
    s->busy = true; /* the writer role, until release_writer */
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Write what s has queued, until INLINE_DRAIN_NS after t0. Without an
 * inline slot (or if s no longer qualifies) its thread takes over. A sink
 * another thread is writing is left to it: a writer looks at the queue
 * again before giving the role back. */
static void drain_inline(struct sink *s, bool have_slot, int64_t t0)
{
    pthread_mutex_lock(&s->mu);
    if (s->busy || s->len == 0) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if (!have_slot || !inline_ok(s)) {
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->busy = true;
    do {
        struct sink_waiter *wake;
        size_t n = take_jobs(s, s->batch, INLINE_BATCH_MAX, &wake);
        pthread_mutex_unlock(&s->mu);
        wake_all(wake);
        write_jobs(s, n);
        pthread_mutex_lock(&s->mu);
    } while (s->len > 0 && inline_ok(s) && mono_ns() - t0 < INLINE_DRAIN_NS);
    release_writer_locked(s);
    pthread_mutex_unlock(&s->mu);
}

/* One inline slot for the whole flush: a worker that got it writes every
 * sink it owes in turn, instead of competing for it sink by sink. */
void sink_pipeline_flush(struct sink_pipeline *p, struct sink_owed *owed_by)
{
    uint64_t owed = owed_by->mask;
    if (!owed)
        return;
    owed_by->mask = 0;
    const struct sink_set *set = p->sets[owed_by->slot]; /* the mask's reference */
    bool have_slot = take_inline_slot(p);
    int64_t t0 = mono_ns();
    for (size_t i = 0; owed && i < set->n; i++, owed >>= 1)
        if (owed & 1)
            drain_inline(set->sinks[i], have_slot, t0);
    if (have_slot)
        atomic_fetch_sub(&p->inline_writers, 1);
    sink_set_release(p, owed_by->slot);
}

static bool should_exit(struct sink *s)
{
    pthread_mutex_lock(&s->mu);
    bool done = s->stop && s->len == 0;
    pthread_mutex_unlock(&s->mu);
    return done;
}

static void *sink_thread(void *arg)
{
    struct sink *s = arg;
    const char *component = host_instance_component(s->host);
    for (;;) {
        struct sink_waiter *wake;
        bool reopen;
        size_t n = take_batch(s, s->batch, SINK_BATCH_MAX, &wake, &reopen);
        /* Wake readers before writing: they refill the queue while we work. */
        wake_all(wake);
        if (reopen && s->vt->reopen && s->vt->reopen(s->instance) < 0)
            log_msg(AERO_LOG_WARN, component, "reopen failed; keeps writing where it can");
        if (n > 0)
            write_jobs(s, n);
        release_writer(s);
        if (n == 0 && should_exit(s))
            break;
    }
    if (s->vt->flush && s->vt->flush(s->instance) < 0)
        log_msg(AERO_LOG_WARN, component, "flush at shutdown failed");
    return NULL;
}

/* The sink name's write-time histogram: registered by the first sink of
 * that name, taken over by any that replaces it (NULL: out of memory). */
static struct metric_histogram *write_seconds(struct sink_pipeline *p, const char *name,
                                              const char *label)
{
    for (struct sink_hist *h = p->hists; h; h = h->next)
        if (strcmp(h->name, name) == 0)
            return h->h;
    static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                    0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    struct sink_hist *h = malloc(sizeof(*h) + strlen(name) + 1);
    if (!h)
        return NULL;
    strcpy(h->name, name);
    h->h = metrics_histogram_register_labeled(
        p->metrics, "aero_sink_write_seconds",
        "Time of one write_batch call of the sink (its durability point: an fsync, a server's "
        "answer).",
        label, bounds, sizeof(bounds) / sizeof(bounds[0]));
    h->next = p->hists;
    p->hists = h;
    return h->h;
}

static void register_metrics(struct sink *s, struct metrics *m)
{
    char label[256];
    metrics_sink_labels(label, sizeof(label), s->settings->name, s->settings->plugin);
    s->m_enqueued = metrics_register(m, AERO_METRIC_COUNTER, "aero_sink_enqueued_total",
                                     "Frames handed to the sink's queue.", label);
    s->m_errors = metrics_register(m, AERO_METRIC_COUNTER, "aero_sink_errors_total",
                                   "Frames the sink's writes answered non-OK (a full queue's "
                                   "refusals: aero_sink_rejected_total).",
                                   label);
    /* The same count under the reference relay's name (SPEC section 3
     * keeps it), outside the aero_sink_* family: for its dashboards. */
    s->m_errors_spec = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_sink_errors_total",
                                        "Frames the sink's writes answered non-OK; the same as "
                                        "aero_sink_errors_total.",
                                        label);
    s->m_rejected = metrics_register(m, AERO_METRIC_COUNTER, "aero_sink_rejected_total",
                                     "Frames refused because the queue was full (on_full = reject).",
                                     label);
    s->m_dropped = metrics_register(m, AERO_METRIC_COUNTER, "aero_sink_dropped_total",
                                    "Frames dropped (no policy drops: stays 0).", label);
    s->m_queue_len = metrics_register(m, AERO_METRIC_GAUGE, "aero_sink_queue_length",
                                      "Frames waiting in the sink's queue.", label);
    s->m_batches = metrics_register(m, AERO_METRIC_COUNTER, "aero_sink_batches_total",
                                    "write_batch calls.", label);
    s->m_write_seconds = write_seconds(s->pipeline, s->settings->name, label);
    s->m_filtered = metrics_register(m, AERO_METRIC_COUNTER, "aero_sink_filtered_total",
                                     "Frames this sink did not take ([sink:*] match / exclude).",
                                     label);
    /* What aero_sink_queue_length is measured against (an alert's "near full"). */
    metrics_set(metrics_register(m, AERO_METRIC_GAUGE, "aero_sink_queue_capacity",
                                 "Frames the sink's queue holds before on_full applies.", label),
                (int64_t)s->settings->queue);
}

static int sink_init(struct sink *s, const struct sink_instance_spec *spec, const char *relay_id,
                     struct metrics *metrics, char *err, size_t errlen)
{
    s->settings = spec->settings;
    s->plugin = spec->plugin;
    s->vt = spec->plugin->sink;
    s->limit = spec->settings->queue;
    /* Not inline until calls on its own thread have shown it is fast. */
    atomic_init(&s->avg_call_ns, INLINE_MAX_NS);
    s->ring_cap = s->limit < 16 ? 16 : s->limit;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    /* Sink names are at most 64 bytes: this never cuts. */
    snprintf(s->refused_text, sizeof(s->refused_text),
             "sink \"%s\" did not accept the frame (its write failed: the relay's log says why); "
             "resend",
             spec->settings->name);
    s->ring = malloc(s->ring_cap * sizeof(*s->ring));
    s->batch = malloc(SINK_BATCH_MAX * sizeof(*s->batch));
    s->frames = malloc(SINK_BATCH_MAX * sizeof(*s->frames));
    s->results = malloc(SINK_BATCH_MAX * sizeof(*s->results));
    s->host = host_instance_create("sink", spec->settings->name, spec->settings->section,
                                   relay_id, metrics);
    if (!s->ring || !s->batch || !s->frames || !s->results || !s->host) {
        snprintf(err, errlen, "[sink:%s]: out of memory", spec->settings->name);
        return -1;
    }
    host_instance_set_batch(s->host, &s->json);
    register_metrics(s, metrics);
    int split = 0;
    s->match = split_patterns(spec->settings->match, &split);
    s->exclude = split_patterns(spec->settings->exclude, &split);
    if (split < 0) {
        snprintf(err, errlen, "[sink:%s]: out of memory", spec->settings->name);
        return -1;
    }
    int rc = s->vt->create(host_instance_api(s->host), &s->instance);
    if (rc < 0) {
        snprintf(err, errlen, "[sink:%s] plugin %s: create failed: %s (see the log above)",
                 spec->settings->name, spec->plugin->name, strerror(-rc));
        return -1;
    }
    /* Set only in create(): the submitting threads read it unlocked. */
    s->m_plugin_full = host_instance_queue_full(s->host);
    rc = pthread_create(&s->thread, NULL, sink_thread, s);
    if (rc != 0) {
        snprintf(err, errlen, "[sink:%s]: cannot start thread: %s", spec->settings->name,
                 strerror(rc));
        return -1;
    }
    /* Named for top -H and perf: "sink:archive", cut to 15 bytes. */
    char name[16];
    snprintf(name, sizeof(name), "sink:%s", spec->settings->name);
    pthread_setname_np(s->thread, name);
    s->thread_started = true;
    return 0;
}

void sink_ask_stop(struct sink *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

bool sink_join(struct sink *s, const struct timespec *deadline)
{
    if (!s->thread_started)
        return true;
    int rc = deadline ? pthread_timedjoin_np(s->thread, NULL, deadline)
                      : pthread_join(s->thread, NULL);
    if (rc != 0)
        return false;
    s->thread_started = false;
    return true;
}

bool sink_try_join(struct sink *s)
{
    if (s->thread_started && pthread_tryjoin_np(s->thread, NULL) == 0)
        s->thread_started = false;
    return !s->thread_started;
}

void sink_destroy(struct sink *s)
{
    if (!s)
        return;
    if (s->vt && s->vt->destroy)
        s->vt->destroy(s->instance);
    host_instance_destroy(s->host);
    free(s->ring);
    free(s->batch);
    free(s->frames);
    free(s->results);
    free_patterns(s->match);
    free_patterns(s->exclude);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

struct sink *sink_create(struct sink_pipeline *p, const struct sink_instance_spec *spec,
                         char *err, size_t errlen)
{
    struct sink *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "[sink:%s]: out of memory", spec->settings->name);
        return NULL;
    }
    s->pipeline = p;
    s->id = p->next_id++;
    if (sink_init(s, spec, p->relay_id, p->metrics, err, errlen) < 0) {
        sink_destroy(s); /* no thread was started */
        return NULL;
    }
    return s;
}

struct sink_set *sink_set_alloc(size_t n)
{
    return calloc(1, sizeof(struct sink_set) + n * sizeof(struct sink *));
}

int sink_pipeline_start(struct sink_pipeline **out, const struct sink_instance_spec *specs,
                        size_t n, int max_inline, const char *relay_id, struct metrics *metrics,
                        char *err, size_t errlen)
{
    struct sink_pipeline *p = calloc(1, sizeof(*p));
    if (!p || !(p->sets[0] = sink_set_alloc(n))) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->max_inline = max_inline;
    p->relay_id = relay_id;
    p->metrics = metrics;
    p->retired_slot = -1;
    pthread_mutex_init(&p->waiter_mu, NULL);
    for (size_t i = 0; i < n; i++) {
        if (!(p->sets[0]->sinks[i] = sink_create(p, &specs[i], err, errlen))) {
            sink_pipeline_stop(p, -1); /* unwinds exactly what was started */
            return -1;
        }
        p->sets[0]->n = i + 1;
    }
    atomic_store(&p->n_now, n);
    *out = p;
    return 0;
}

size_t sink_pipeline_count(struct sink_pipeline *p)
{
    if (!p)
        return 0;
    unsigned slot = sink_set_acquire(p);
    size_t n = p->sets[slot]->n;
    sink_set_release(p, slot);
    return n;
}

const char *sink_pipeline_name(struct sink_pipeline *p, size_t i)
{
    return p->sets[atomic_load(&p->cur)]->sinks[i]->settings->name;
}

void sink_pipeline_reopen(struct sink_pipeline *p)
{
    const struct sink_set *set = p ? p->sets[atomic_load(&p->cur)] : NULL;
    for (size_t i = 0; set && i < set->n; i++) {
        struct sink *s = set->sinks[i];
        pthread_mutex_lock(&s->mu);
        s->reopen = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}
