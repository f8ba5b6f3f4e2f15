/*
 * test_sink_pipeline.c - the sink queues and their threads
 * (core/sink_pipeline.c) with real threads and sinks defined here (a
 * struct plugin pointing at this file's vtable, steered per instance):
 * the block and reject policies, the worst result across sinks, results[]
 * preset to AERO_RETRY, inline writes by the submitting thread, a stuck
 * sink at stop, concurrent submitters, and a reload's swap of the set.
 * Waits are on one condition variable with deadlines; nothing sleeps to
 * synchronise.
 */
#include "job_json.h"
#include "metrics.h"
#include "mono_clock.h"
#include "plugin_loader.h"
#include "readiness.h"
#include "settings.h"
#include "sink_pipeline.h"
#include "summary.h"

#include "cond_wait.h"
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SINKS 4
#define WAIT_MS 10000
#define QUIET_MS 250

/* One test sink instance, steered by the test (fields under G.mu unless
 * atomic). `fast` sinks skip the lock: only counters, for load tests. */
struct tsink {
    bool fast;
    bool hold;          /* write_batch waits while set */
    bool untouched;     /* leave results[] as the core preset them */
    aero_result result; /* what every frame gets */
    bool refuse_odd;    /* ... but frames of odd seq get AERO_RETRY */
    bool in_write;
    int calls;
    size_t frames;
    pthread_t last_writer;
    int flushes, destroyed;
    atomic_int *writes; /* per job id (fast sinks): times written */
};

/* One job: the pipeline's frame_job plus what its completion saw. */
struct tjob {
    struct frame_job job;
    atomic_int completions;
    int worst, failed; /* as read in complete() */
};

/* A reader (a stream, for the pipeline): one waiter per sink, as
 * sink_pipeline_submit takes them, and the wake() calls they got. */
struct reader {
    struct sink_waiter w[MAX_SINKS];
    atomic_int woken;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* broadcast on every change */
    struct tsink sinks[MAX_SINKS];
    struct sink_settings settings[MAX_SINKS];
    char names[MAX_SINKS][8];
    struct config_section sections[MAX_SINKS]; /* "sink:s<i>", no keys */
    char section_names[MAX_SINKS][16];
    struct plugin plugin;
    struct metrics *metrics;
    struct sink_pipeline *p;
    atomic_int completed;
} G;

/* A pipeline left running by the stuck-sink test: sink_pipeline_stop
 * returned false, so the contract forbids touching or freeing it (nor the
 * metrics its hosts use, nor the job its batch still points at). Kept
 * reachable from here so LeakSanitizer does not count it as a leak;
 * volatile, or the compiler drops the stores to these write-only statics. */
static struct sink_pipeline *volatile stuck_pipeline;
static struct metrics *volatile stuck_metrics;
static struct tjob *volatile stuck_jobs;

/* ------------------------------------------------------- waiting helpers */

/* One wait on G.cv (G.mu held), at most until dl; false once dl passed.
 * Slices of 2 ms: a few conditions (job->pending, decremented by the
 * pipeline after write_batch returned) change with no broadcast. */
static bool wait_step(const struct timespec *dl)
{
    struct timespec slice = clock_after_ns(CLOCK_MONOTONIC, 2000000);
    bool last = slice.tv_sec > dl->tv_sec ||
                (slice.tv_sec == dl->tv_sec && slice.tv_nsec >= dl->tv_nsec);
    return pthread_cond_timedwait(&G.cv, &G.mu, last ? dl : &slice) != ETIMEDOUT || !last;
}

#define EXPECT_WITHIN(ms, cond, ...) EXPECT_WITHIN_ON(&G.mu, wait_step, ms, cond, __VA_ARGS__)
#define EXPECT_STAYS(ms, cond, ...) EXPECT_STAYS_ON(&G.mu, wait_step, ms, cond, __VA_ARGS__)

static void poke(void)
{
    pthread_mutex_lock(&G.mu);
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
}

/* ------------------------------------------------------------ the sink */

static int t_create(const aero_host *host, void **instance)
{
    const char *name = host->instance_name(host); /* "s<i>" */
    int i = name[1] - '0';
    if (name[0] != 's' || i < 0 || i >= MAX_SINKS)
        return -EINVAL;
    *instance = &G.sinks[i];
    return 0;
}

static void t_write_batch(void *instance, const aero_frame *const *frames, size_t n,
                          aero_result *results)
{
    struct tsink *t = instance;
    if (t->fast) {
        for (size_t i = 0; i < n; i++) {
            atomic_fetch_add(&t->writes[frames[i]->seq], 1);
            results[i] = t->result;
        }
        return;
    }
    pthread_mutex_lock(&G.mu);
    t->in_write = true;
    t->calls++;
    t->frames += n;
    t->last_writer = pthread_self();
    pthread_cond_broadcast(&G.cv);
    while (t->hold)
        pthread_cond_wait(&G.cv, &G.mu);
    t->in_write = false;
    bool untouched = t->untouched, refuse_odd = t->refuse_odd;
    aero_result r = t->result;
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
    for (size_t i = 0; !untouched && i < n; i++)
        results[i] = refuse_odd && frames[i]->seq % 2 ? AERO_RETRY : r;
}

static int t_flush(void *instance)
{
    struct tsink *t = instance;
    pthread_mutex_lock(&G.mu);
    t->flushes++;
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
    return 0;
}

static void t_destroy(void *instance)
{
    struct tsink *t = instance;
    if (!t)
        return;
    pthread_mutex_lock(&G.mu);
    t->destroyed++;
    pthread_mutex_unlock(&G.mu);
}

static const aero_sink_vtable t_vtable = {
    .size = sizeof(aero_sink_vtable),
    .create = t_create,
    .write_batch = t_write_batch,
    .flush = t_flush,
    .destroy = t_destroy,
};

/* ------------------------------------------------------ jobs and waiters */

static void t_complete(struct frame_job *job)
{
    struct tjob *j = (struct tjob *)job;
    j->worst = atomic_load(&job->worst);
    j->failed = atomic_load(&job->failed_sink);
    atomic_fetch_add(&j->completions, 1);
    atomic_fetch_add(&G.completed, 1);
    poke();
}

static struct tjob *jobs_new(size_t n)
{
    struct tjob *j = calloc(n, sizeof(*j));
    cr_assert_not_null(j);
    for (size_t i = 0; i < n; i++) {
        j[i].job.view = (aero_frame){.size = sizeof(aero_frame), .seq = i};
        j[i].job.complete = t_complete;
        atomic_init(&j[i].completions, 0);
        atomic_init(&j[i].job.json, NULL);
    }
    return j;
}

static void jobs_free(struct tjob *j, size_t n)
{
    for (size_t i = 0; i < n; i++)
        job_json_free(&j[i].job);
    free(j);
}

static int completions(struct tjob *j) { return atomic_load(&j->completions); }

static void t_wake(struct sink_waiter *w)
{
    struct reader *r = w->owner;
    atomic_fetch_add(&r->woken, 1);
    poke();
}

static void reader_init(struct reader *r)
{
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < MAX_SINKS; i++) {
        r->w[i].wake = t_wake;
        r->w[i].owner = r;
    }
    atomic_init(&r->woken, 0);
}

static int woken(struct reader *r) { return atomic_load(&r->woken); }

/* ------------------------------------------------------------ fixtures */

struct sink_def {
    size_t queue;
    enum on_full on_full;
    aero_result result;
};

/* Sink i's settings ("s<i>"), its section and spec. */
static struct sink_instance_spec define(size_t i, const struct sink_def *def)
{
    snprintf(G.names[i], sizeof(G.names[i]), "s%zu", i);
    snprintf(G.section_names[i], sizeof(G.section_names[i]), "sink:s%zu", i);
    G.sections[i] = (struct config_section){.name = G.section_names[i]};
    G.settings[i] = (struct sink_settings){.name = G.names[i], .plugin = "test-sink",
                                           .queue = def->queue, .on_full = def->on_full,
                                           .section = &G.sections[i]};
    G.sinks[i].result = def->result;
    return (struct sink_instance_spec){.settings = &G.settings[i], .plugin = &G.plugin};
}

/* Start a pipeline of n sinks "s0".."s<n-1>". */
static void start(const struct sink_def *defs, size_t n, int max_inline)
{
    struct sink_instance_spec specs[MAX_SINKS];
    for (size_t i = 0; i < n; i++)
        specs[i] = define(i, &defs[i]);
    char err[256] = "";
    cr_assert_eq(sink_pipeline_start(&G.p, specs, n, max_inline, "relay-test", G.metrics, err,
                                     sizeof(err)),
                 0, "sink_pipeline_start: %s", err);
    cr_assert_eq(sink_pipeline_count(G.p), n);
}

static void release_all(void)
{
    pthread_mutex_lock(&G.mu);
    for (int i = 0; i < MAX_SINKS; i++)
        G.sinks[i].hold = false;
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
}

static void setup(void)
{
    memset(&G, 0, sizeof(G));
    pthread_mutex_init(&G.mu, NULL);
    mono_cond_init(&G.cv);
    atomic_init(&G.completed, 0);
    G.plugin = (struct plugin){.name = "test-sink", .sink = &t_vtable};
    G.metrics = metrics_create();
    cr_assert_not_null(G.metrics);
}

static void teardown(void)
{
    release_all();
    if (G.p)
        cr_assert(sink_pipeline_stop(G.p, 5000), "a sink thread did not stop");
    if (G.metrics)
        metrics_destroy(G.metrics);
    pthread_cond_destroy(&G.cv);
    pthread_mutex_destroy(&G.mu);
}

TestSuite(sink_pipeline, .init = setup, .fini = teardown, .timeout = 60);

/* Submit one job for a reader and flush what it owes, as a worker does. */
static size_t submit(struct tjob *j, struct reader *r)
{
    struct sink_owed owed = {0};
    size_t paused = sink_pipeline_submit(G.p, &j->job, r->w, MAX_SINKS, &owed);
    sink_pipeline_flush(G.p, &owed);
    cr_assert_eq(owed.mask, 0, "flush left the mask set");
    return paused;
}

/* ---------------------------------------------------------------- tests */

Test(sink_pipeline, sink_result_worse_orders_and_treats_unknown_as_retry)
{
    /* SPEC.md 13.9 rule 8: a retry beats a permanent refusal. */
    const aero_result order[] = {AERO_OK, AERO_REJECT, AERO_RETRY, AERO_BACKOFF};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            cr_assert_eq(sink_pipeline_result_worse(order[a], order[b]), order[a > b ? a : b],
                         "worse(%d, %d)", a, b);
    cr_assert_eq(sink_pipeline_result_worse(AERO_OK, (aero_result)42), AERO_RETRY);
    cr_assert_eq(sink_pipeline_result_worse((aero_result)-1, AERO_OK), AERO_RETRY);
    cr_assert_eq(sink_pipeline_result_worse((aero_result)42, AERO_BACKOFF), AERO_BACKOFF);
    cr_assert_eq(sink_pipeline_result_worse(AERO_REJECT, (aero_result)42), AERO_RETRY);
}

Test(sink_pipeline, block_queue_full_queues_waiters_and_wakes_them_once_there_is_room)
{
    struct sink_def d = {.queue = 2, .on_full = ON_FULL_BLOCK, .result = AERO_OK};
    G.sinks[0].hold = true;
    start(&d, 1, 1);
    struct tjob *j = jobs_new(7);
    struct reader a, b, c;
    reader_init(&a);
    reader_init(&b);
    reader_init(&c);

    cr_assert_eq(submit(&j[0], &a), 0);
    EXPECT_WITHIN(WAIT_MS, G.sinks[0].in_write && G.sinks[0].frames == 1,
                  "the sink thread never took the first job");
    /* The queue is empty again and the writer is stuck: fill it. */
    cr_assert_eq(submit(&j[1], &a), 0, "room for 2, 1 queued");
    cr_assert_eq(submit(&j[2], &a), 1, "the job that fills the queue pauses its reader");
    cr_assert(a.w[0].queued);
    cr_assert_eq(submit(&j[3], &a), 0, "a reader already waiting is not counted twice");
    cr_assert_eq(submit(&j[4], &b), 1, "another reader over the limit");
    cr_assert_eq(submit(&j[5], &c), 1, "a third reader over the limit");
    for (int i = 1; i <= 5; i++)
        cr_assert_eq(completions(&j[i]), 0, "job %d completed while queued", i);

    cr_assert(sink_pipeline_cancel_wait(G.p, &c.w[0]), "c was queued");
    cr_assert_not(c.w[0].queued);
    cr_assert_not(sink_pipeline_cancel_wait(G.p, &c.w[0]), "c cancelled twice");
    EXPECT_STAYS(QUIET_MS, woken(&a) == 0 && woken(&b) == 0 && woken(&c) == 0,
                 "woken while the queue is full: a %d b %d c %d", woken(&a), woken(&b),
                 woken(&c));

    release_all();
    EXPECT_WITHIN(WAIT_MS, woken(&a) == 1 && woken(&b) == 1, "wake: a %d b %d", woken(&a),
                  woken(&b));
    EXPECT_WITHIN(WAIT_MS, atomic_load(&G.completed) == 6, "completed %d of 6",
                  atomic_load(&G.completed));
    EXPECT_STAYS(QUIET_MS, woken(&a) == 1 && woken(&b) == 1 && woken(&c) == 0,
                 "wake: a %d b %d c %d (cancelled)", woken(&a), woken(&b), woken(&c));
    cr_assert_not(a.w[0].queued);
    cr_assert_not(sink_pipeline_cancel_wait(G.p, &a.w[0]), "a was already woken");
    for (int i = 0; i <= 5; i++) {
        cr_assert_eq(completions(&j[i]), 1, "job %d: %d completions", i, completions(&j[i]));
        cr_assert_eq(j[i].worst, AERO_OK);
        cr_assert_eq(j[i].failed, -1);
    }
    cr_assert_eq(G.sinks[0].frames, 6);

    /* With room again, a submit pauses nobody. */
    cr_assert_eq(submit(&j[6], &a), 0);
    EXPECT_WITHIN(WAIT_MS, completions(&j[6]) == 1, "job 6 never completed");
    cr_assert(sink_pipeline_stop(G.p, 5000));
    G.p = NULL;
    jobs_free(j, 7);
}

Test(sink_pipeline, reject_queue_full_completes_at_once_with_retry)
{
    struct sink_def d = {.queue = 1, .on_full = ON_FULL_REJECT, .result = AERO_OK};
    G.sinks[0].hold = true;
    start(&d, 1, 1);
    struct tjob *j = jobs_new(3);
    struct reader a;
    reader_init(&a);

    cr_assert_eq(submit(&j[0], &a), 0);
    EXPECT_WITHIN(WAIT_MS, G.sinks[0].in_write, "the sink thread never took the first job");
    cr_assert_eq(submit(&j[1], &a), 0, "the one queue slot");
    cr_assert_eq(submit(&j[2], &a), 0, "reject never pauses the reader");
    cr_assert_not(a.w[0].queued);
    /* Completed inside submit, on this thread. */
    cr_assert_eq(completions(&j[2]), 1, "the rejected job did not complete at once");
    cr_assert_eq(j[2].worst, AERO_RETRY);
    cr_assert_eq(j[2].failed, 0);
    EXPECT_STAYS(QUIET_MS, completions(&j[1]) == 0 && completions(&j[0]) == 0,
                 "a queued job completed while the sink is stuck");

    release_all();
    EXPECT_WITHIN(WAIT_MS, completions(&j[0]) == 1 && completions(&j[1]) == 1,
                  "queued jobs never completed");
    cr_assert_eq(j[0].worst, AERO_OK);
    cr_assert_eq(j[1].worst, AERO_OK);
    cr_assert(sink_pipeline_stop(G.p, 5000));
    G.p = NULL;
    cr_assert_eq(G.sinks[0].frames, 2, "the rejected job reached the sink");
    cr_assert_eq(completions(&j[2]), 1, "the rejected job completed twice");
    cr_assert_eq(woken(&a), 0);
    jobs_free(j, 3);
}

/* A generation-2 frame's stream looked at sink_pipeline_full before it
 * submitted (it holds frames while a queue is full): a queue filled since
 * by another stream takes its frame, past the limit, instead of refusing
 * (reject) or pausing (block) it. A seed frame still gets the policy. */
Test(sink_pipeline, a_gen2_frame_is_never_refused_or_paused_for_a_full_queue)
{
    struct sink_def d[2] = {{.queue = 1, .on_full = ON_FULL_REJECT, .result = AERO_OK},
                            {.queue = 1, .on_full = ON_FULL_BLOCK, .result = AERO_OK}};
    G.sinks[0].hold = G.sinks[1].hold = true;
    start(d, 2, 0);
    struct tjob *j = jobs_new(4);
    struct reader a;
    reader_init(&a);
    aero_str name = {"HEARTBEAT", 9};
    for (int i = 0; i < 4; i++)
        j[i].job.view.msg_name = name;

    /* A queue of 1: the first job fills the block queue until its thread
     * takes it (woken or cancelled, the waiter is free after this). */
    cr_assert_eq(submit(&j[0], &a), 1);
    EXPECT_WITHIN(WAIT_MS, G.sinks[0].in_write && G.sinks[1].in_write,
                  "the sink threads never took the first job");
    sink_pipeline_cancel_wait(G.p, &a.w[1]);
    cr_assert_not(sink_pipeline_full(G.p, name));
    cr_assert_eq(submit(&j[1], &a), 1, "the job that fills the block queue pauses a seed reader");
    cr_assert(sink_pipeline_full(G.p, name), "both queues are full");
    cr_assert(sink_pipeline_cancel_wait(G.p, &a.w[1]));

    j[2].job.view.protocol = AERO_PROTOCOL_MULTIPLEXED;
    cr_assert_eq(submit(&j[2], &a), 0, "a generation-2 frame paused its reader");
    cr_assert_not(a.w[1].queued);
    cr_assert_eq(completions(&j[2]), 0, "a generation-2 frame was refused by the reject sink");

    cr_assert_eq(submit(&j[3], &a), 1, "a seed frame pauses on the full block queue");
    cr_assert(sink_pipeline_cancel_wait(G.p, &a.w[1]));

    release_all();
    EXPECT_WITHIN(WAIT_MS, completions(&j[2]) == 1, "the generation-2 frame never completed");
    cr_assert_eq(j[2].worst, AERO_OK, "generation-2 frame: %d", j[2].worst);
    EXPECT_WITHIN(WAIT_MS, completions(&j[3]) == 1, "the seed frame never completed");
    cr_assert_eq(j[3].worst, AERO_RETRY, "the seed frame: %d", j[3].worst);
    cr_assert_eq(j[3].failed, 0, "the seed frame was refused by the full reject queue");
    cr_assert(sink_pipeline_stop(G.p, 5000));
    G.p = NULL;
    jobs_free(j, 4);
}

/* Release sink i of a held pipeline and wait until it reported `job`. */
static void release_and_wait(int i, struct tjob *job, unsigned pending_after)
{
    pthread_mutex_lock(&G.mu);
    G.sinks[i].hold = false;
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
    EXPECT_WITHIN(WAIT_MS, atomic_load(&job->job.pending) == pending_after || completions(job),
                  "sink %d never reported", i);
}

Test(sink_pipeline, the_result_keeping_the_frame_wins_and_its_sink_is_named)
{
    const struct sink_def d[4] = {
        {.queue = 8, .on_full = ON_FULL_BLOCK, .result = AERO_OK},
        {.queue = 8, .on_full = ON_FULL_BLOCK, .result = AERO_RETRY},
        {.queue = 8, .on_full = ON_FULL_BLOCK, .result = AERO_REJECT},
        {.queue = 8, .on_full = ON_FULL_BLOCK, .result = AERO_BACKOFF},
    };
    for (int i = 0; i < 4; i++)
        G.sinks[i].hold = true;
    start(d, 4, 1);
    struct tjob *j = jobs_new(1);
    struct reader w;
    reader_init(&w);
    struct sink_owed owed = {0};
    cr_assert_eq(sink_pipeline_submit(G.p, &j->job, w.w, MAX_SINKS, &owed), 0);
    sink_pipeline_flush(G.p, &owed);
    EXPECT_WITHIN(WAIT_MS,
                  G.sinks[0].in_write && G.sinks[1].in_write && G.sinks[2].in_write &&
                      G.sinks[3].in_write,
                  "not every sink took the job");

    /* Report in the order RETRY, OK, REJECT, BACKOFF. */
    release_and_wait(1, j, 3);
    cr_assert_eq(atomic_load(&j->job.worst), AERO_RETRY);
    cr_assert_eq(atomic_load(&j->job.failed_sink), 1);
    release_and_wait(0, j, 2);
    cr_assert_eq(atomic_load(&j->job.worst), AERO_RETRY, "OK made it better");
    release_and_wait(2, j, 1);
    cr_assert_eq(atomic_load(&j->job.worst), AERO_RETRY, "REJECT beat a RETRY (SPEC 13.9 rule 8)");
    cr_assert_eq(atomic_load(&j->job.failed_sink), 1);
    cr_assert_eq(completions(j), 0, "completed before the last sink reported");
    release_and_wait(3, j, 0);
    EXPECT_WITHIN(WAIT_MS, completions(j) == 1, "never completed");
    cr_assert_eq(j->worst, AERO_BACKOFF, "BACKOFF after RETRY and REJECT: %d", j->worst);
    cr_assert_eq(j->failed, 3, "failed_sink names the sink whose result won: %d", j->failed);
    jobs_free(j, 1);
}

Test(sink_pipeline, an_unknown_result_counts_as_retry)
{
    const struct sink_def d[2] = {
        {.queue = 8, .on_full = ON_FULL_BLOCK, .result = AERO_OK},
        {.queue = 8, .on_full = ON_FULL_BLOCK, .result = (aero_result)42},
    };
    start(d, 2, 1);
    struct tjob *j = jobs_new(1);
    struct reader w;
    reader_init(&w);
    struct sink_owed owed = {0};
    sink_pipeline_submit(G.p, &j->job, w.w, MAX_SINKS, &owed);
    sink_pipeline_flush(G.p, &owed);
    EXPECT_WITHIN(WAIT_MS, completions(j) == 1, "never completed");
    cr_assert_eq(j->worst, AERO_RETRY, "worst %d", j->worst);
    cr_assert_eq(j->failed, 1);
    jobs_free(j, 1);
}

/* Every sink series carries sink and plugin (issue 18: one aero_sink_*
 * family); the error count is there and under SPEC's older name, and the
 * summary line, which looks the series up by label, sees the refusals. */
Test(sink_pipeline, sink_series_carry_sink_and_plugin_and_the_summary_reads_them)
{
    const struct sink_def d = {.queue = 8, .on_full = ON_FULL_BLOCK, .result = AERO_RETRY};
    start(&d, 1, 1);
    struct settings st = {.sinks = G.settings, .n_sinks = 1, .log_summary_interval_s = 1};
    struct summary *sum = summary_create(&st, G.metrics, 0);
    cr_assert_not_null(sum);
    struct tjob *j = jobs_new(3);
    struct reader w;
    reader_init(&w);
    struct sink_owed owed = {0};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(sink_pipeline_submit(G.p, &j[i].job, w.w, MAX_SINKS, &owed), 0);
    sink_pipeline_flush(G.p, &owed);
    EXPECT_WITHIN(WAIT_MS, completions(j) + completions(j + 1) + completions(j + 2) == 3,
                  "not every job completed");

    char *out;
    size_t len;
    cr_assert_eq(metrics_render(G.metrics, &out, &len), 0);
    const char *const want[] = {
        "aero_sink_errors_total{sink=\"s0\",plugin=\"test-sink\"} 3\n",
        "aero_relay_sink_errors_total{sink=\"s0\",plugin=\"test-sink\"} 3\n",
        "aero_sink_enqueued_total{sink=\"s0\",plugin=\"test-sink\"} 3\n",
        "aero_sink_queue_capacity{sink=\"s0\",plugin=\"test-sink\"} 8\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect_not_null(strstr(out, want[i]), "no %s in\n%s", want[i], out);
    cr_expect_null(strstr(out, "sink=\"s0\"}"), "a series without plugin:\n%s", out);
    free(out);

    /* The log writes fd 2 directly: point it at a file for the one line. */
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    int saved = dup(STDERR_FILENO);
    cr_assert_geq(saved, 0);
    dup2(fileno(f), STDERR_FILENO);
    summary_tick(sum, INT64_C(1000000001), 0, 0);
    dup2(saved, STDERR_FILENO);
    close(saved);
    summary_destroy(sum);
    char log[4096] = "";
    rewind(f);
    size_t n = fread(log, 1, sizeof(log) - 1, f);
    log[n] = '\0';
    fclose(f);
    cr_expect_not_null(strstr(log, "sink s0 failing: 3 of 3 frames refused"), "%s", log);
    jobs_free(j, 3);
}

/* Submit jobs j[0..n) to the pipeline and wait until all completed. */
static void submit_all(struct tjob *j, size_t n)
{
    struct reader w;
    reader_init(&w);
    struct sink_owed owed = {0};
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(sink_pipeline_submit(G.p, &j[i].job, w.w, MAX_SINKS, &owed), 0);
    sink_pipeline_flush(G.p, &owed);
    EXPECT_WITHIN(WAIT_MS, completions(&j[n - 1]) == 1, "never completed");
}

/* Sink 0 answers `r` (refuse_odd off) to job j alone; its state after. */
static void state_after(struct tjob *j, aero_result r, struct readiness_component *st)
{
    pthread_mutex_lock(&G.mu);
    G.sinks[0].result = r;
    G.sinks[0].refuse_odd = false;
    pthread_mutex_unlock(&G.mu);
    submit_all(j, 1);
    cr_assert_eq(sink_pipeline_states(G.p, mono_ns(), st, 1), 1);
}

/* A sink's state for /readyz (issue 18): ok while it takes every frame,
 * failing with its reason while it refuses every one, degraded when its
 * last batch refused some, ok again once a batch goes through whole. */
Test(sink_pipeline, sink_states_follow_what_its_batches_did)
{
    const struct sink_def d = {.queue = 8, .on_full = ON_FULL_BLOCK, .result = AERO_OK};
    start(&d, 1, 0); /* no inline writes: the held write is the sink thread's */
    struct readiness_component st[1];
    struct tjob *j = jobs_new(6);
    state_after(&j[0], AERO_OK, st);
    cr_expect_str_eq(st[0].name, "sink:s0");
    cr_expect_eq(st[0].state, AERO_STATE_OK);
    cr_expect_str_eq(st[0].reason, "");

    state_after(&j[1], AERO_RETRY, st);
    cr_expect_eq(st[0].state, AERO_STATE_FAILING);
    cr_expect_str_eq(st[0].reason, "refuses every frame (every frame for 0 s)");

    /* j[3] (odd) and j[4] in one batch: the sink holds j[2]'s write while
     * they queue behind it. */
    pthread_mutex_lock(&G.mu);
    G.sinks[0].result = AERO_OK;
    G.sinks[0].refuse_odd = true;
    G.sinks[0].hold = true;
    pthread_mutex_unlock(&G.mu);
    struct reader w;
    reader_init(&w);
    struct sink_owed owed = {0};
    cr_assert_eq(sink_pipeline_submit(G.p, &j[2].job, w.w, MAX_SINKS, &owed), 0);
    sink_pipeline_flush(G.p, &owed);
    EXPECT_WITHIN(WAIT_MS, G.sinks[0].in_write, "j[2] not taken");
    cr_assert_eq(sink_pipeline_submit(G.p, &j[3].job, w.w, MAX_SINKS, &owed), 0);
    cr_assert_eq(sink_pipeline_submit(G.p, &j[4].job, w.w, MAX_SINKS, &owed), 0);
    release_all();
    EXPECT_WITHIN(WAIT_MS, completions(&j[4]) == 1, "never completed");
    pthread_mutex_lock(&G.mu);
    int calls = G.sinks[0].calls;
    pthread_mutex_unlock(&G.mu);
    cr_assert_eq(calls, 4, "j[3] and j[4] were not one batch");
    sink_pipeline_states(G.p, mono_ns(), st, 1);
    cr_expect_eq(st[0].state, AERO_STATE_DEGRADED);
    cr_expect_str_eq(st[0].reason, "refuses some frames (some frames of its last batch)");

    state_after(&j[5], AERO_OK, st);
    cr_expect_eq(st[0].state, AERO_STATE_OK);
    jobs_free(j, 6);
}

Test(sink_pipeline, a_result_slot_left_untouched_is_retry_not_a_stale_ok)
{
    const struct sink_def d = {.queue = 8, .on_full = ON_FULL_BLOCK, .result = AERO_OK};
    start(&d, 1, 1);
    struct tjob *j = jobs_new(2);
    struct reader w;
    reader_init(&w);
    submit(&j[0], &w); /* the same results[] slot says OK after this batch */
    EXPECT_WITHIN(WAIT_MS, completions(&j[0]) == 1, "job 0 never completed");
    cr_assert_eq(j[0].worst, AERO_OK);

    pthread_mutex_lock(&G.mu);
    G.sinks[0].untouched = true;
    pthread_mutex_unlock(&G.mu);
    submit(&j[1], &w);
    EXPECT_WITHIN(WAIT_MS, completions(&j[1]) == 1, "job 1 never completed");
    cr_assert_eq(j[1].worst, AERO_RETRY, "an untouched slot acked %d", j[1].worst);
    cr_assert_eq(j[1].failed, 0);
    jobs_free(j, 2);
}

Test(sink_pipeline, a_proven_fast_block_sink_is_written_by_the_flushing_thread)
{
    enum { WARMUP_MAX = 200, ROUNDS = 50, PER = 5 };
    const struct sink_def d = {.queue = 64, .on_full = ON_FULL_BLOCK, .result = AERO_OK};
    start(&d, 1, 1);
    struct tjob *j = jobs_new(WARMUP_MAX + ROUNDS * PER);
    struct reader w;
    reader_init(&w);
    size_t next = 0;

    /* Warm-up: not inline until write_batch has proven fast on its own
     * thread; until then submit wakes the thread and owes nothing. */
    bool inline_now = false;
    while (!inline_now && next < WARMUP_MAX) {
        struct tjob *job = &j[next++];
        struct sink_owed owed = {0};
        sink_pipeline_submit(G.p, &job->job, w.w, MAX_SINKS, &owed);
        inline_now = owed.mask == 1;
        sink_pipeline_flush(G.p, &owed);
        cr_assert_eq(owed.mask, 0);
        EXPECT_WITHIN(WAIT_MS, completions(job) == 1, "warm-up job %zu never completed",
                      next - 1);
    }
    cr_assert(inline_now, "the sink never became inline after %zu fast batches", next);
    cr_assert_gt(next, 1, "inline before any batch proved the sink fast");

    /* Each round: PER jobs owed, one flush writes them on this thread
     * (unless the sink thread, still giving back the writer role after the
     * previous batch, got there first: then it writes them). */
    int inline_rounds = 0;
    for (int r = 0; r < ROUNDS; r++) {
        struct sink_owed owed = {0};
        size_t first = next;
        for (int k = 0; k < PER; k++) {
            sink_pipeline_submit(G.p, &j[next++].job, w.w, MAX_SINKS, &owed);
            cr_assert_eq(owed.mask, 1, "round %d: a fast block sink was not owed", r);
        }
        int calls_before;
        pthread_mutex_lock(&G.mu);
        calls_before = G.sinks[0].calls;
        pthread_mutex_unlock(&G.mu);
        sink_pipeline_flush(G.p, &owed);
        cr_assert_eq(owed.mask, 0, "flush left the mask set");
        pthread_mutex_lock(&G.mu);
        bool here = G.sinks[0].calls == calls_before + 1 &&
                    pthread_equal(G.sinks[0].last_writer, pthread_self());
        pthread_mutex_unlock(&G.mu);
        if (here) {
            inline_rounds++;
            for (size_t i = first; i < next; i++)
                cr_assert_eq(completions(&j[i]), 1, "round %d: job %zu not done by the flush",
                             r, i);
        }
        EXPECT_WITHIN(WAIT_MS, completions(&j[next - 1]) == 1, "round %d never completed", r);
    }
    cr_assert_gt(inline_rounds, ROUNDS / 2, "only %d of %d flushes wrote inline", inline_rounds,
                 ROUNDS);
    cr_assert_eq(atomic_load(&G.completed), (int)next);
    cr_assert(sink_pipeline_stop(G.p, 5000));
    G.p = NULL;
    for (size_t i = 0; i < next; i++)
        cr_assert_eq(completions(&j[i]), 1, "job %zu: %d completions", i, completions(&j[i]));
    jobs_free(j, WARMUP_MAX + ROUNDS * PER);
}

Test(sink_pipeline, without_an_inline_slot_the_sink_thread_writes_what_was_owed)
{
    enum { WARMUP_MAX = 200 };
    const struct sink_def d = {.queue = 64, .on_full = ON_FULL_BLOCK, .result = AERO_OK};
    start(&d, 1, 0); /* max_inline 0: no submitting thread ever writes */
    struct tjob *j = jobs_new(WARMUP_MAX + 1);
    struct reader w;
    reader_init(&w);
    size_t next = 0;
    bool owed_seen = false;
    while (!owed_seen && next < WARMUP_MAX) {
        struct tjob *job = &j[next++];
        struct sink_owed owed = {0};
        sink_pipeline_submit(G.p, &job->job, w.w, MAX_SINKS, &owed);
        owed_seen = owed.mask == 1;
        sink_pipeline_flush(G.p, &owed);
        EXPECT_WITHIN(WAIT_MS, completions(job) == 1, "job %zu never completed", next - 1);
        pthread_mutex_lock(&G.mu);
        bool here = pthread_equal(G.sinks[0].last_writer, pthread_self());
        pthread_mutex_unlock(&G.mu);
        cr_assert_not(here, "job %zu written by the submitting thread with max_inline 0",
                      next - 1);
    }
    cr_assert(owed_seen, "the sink was never owed (never proved fast)");
    jobs_free(j, WARMUP_MAX + 1);
}

Test(sink_pipeline, a_stuck_sink_makes_stop_return_false_after_the_timeout)
{
    const struct sink_def d[2] = {
        {.queue = 8, .on_full = ON_FULL_BLOCK, .result = AERO_OK},
        {.queue = 8, .on_full = ON_FULL_BLOCK, .result = AERO_OK},
    };
    G.sinks[1].hold = true;
    start(d, 2, 1);
    struct tjob *j = jobs_new(1);
    struct reader w;
    reader_init(&w);
    struct sink_owed owed = {0};
    sink_pipeline_submit(G.p, &j->job, w.w, MAX_SINKS, &owed);
    sink_pipeline_flush(G.p, &owed);
    EXPECT_WITHIN(WAIT_MS, G.sinks[1].in_write, "sink 1 never took the job");

    int64_t t0 = mono_ns();
    bool stopped = sink_pipeline_stop(G.p, 300);
    int64_t took_ms = (mono_ns() - t0) / 1000000;
    cr_assert_not(stopped, "stop returned true with a write_batch still running");
    cr_assert_geq(took_ms, 250, "gave up after %ld ms of a 300 ms timeout", (long)took_ms);
    cr_assert_lt(took_ms, 5000, "stop took %ld ms", (long)took_ms);
    /* Nothing was freed: the pipeline is the stuck thread's now. */
    stuck_pipeline = G.p;
    stuck_metrics = G.metrics;
    G.p = NULL;
    G.metrics = NULL;
    cr_assert_eq(G.sinks[0].destroyed + G.sinks[1].destroyed, 0, "destroy() ran after a failed stop");
    cr_assert_eq(G.sinks[0].flushes, 1, "the healthy sink's thread did not flush and exit");

    /* Let the stuck write return so the thread finishes before the
     * process exits: it completes the job, sees stop, flushes and exits. */
    release_all();
    EXPECT_WITHIN(WAIT_MS, completions(j) == 1, "the held job never completed");
    EXPECT_WITHIN(WAIT_MS, G.sinks[1].flushes == 1, "the released sink thread never flushed");
    cr_assert_eq(j->worst, AERO_OK);
    EXPECT_STAYS(QUIET_MS, G.sinks[1].destroyed == 0 && completions(j) == 1,
                 "destroy %d, completions %d", G.sinks[1].destroyed, completions(j));
    /* The pipeline's batch array still points at the job: keep it too. */
    stuck_jobs = j;
}

/* One of the concurrent submitters: a reader that reads nothing more
 * while paused, until every wake() it is owed has come. */
struct submitter {
    pthread_t thread;
    struct tjob *jobs;
    size_t first, n;
    struct reader r;
    int paused;   /* waiters queued over the run */
    bool stalled; /* a wake never came */
};

static void *submit_loop(void *arg)
{
    struct submitter *s = arg;
    for (size_t i = s->first; i < s->first + s->n && !s->stalled; i++) {
        struct sink_owed owed = {0};
        s->paused +=
            (int)sink_pipeline_submit(G.p, &s->jobs[i].job, s->r.w, MAX_SINKS, &owed);
        sink_pipeline_flush(G.p, &owed); /* before waiting for anything */
        struct timespec dl = deadline_in(WAIT_MS);
        pthread_mutex_lock(&G.mu);
        while (woken(&s->r) < s->paused && wait_step(&dl))
            ;
        s->stalled = woken(&s->r) < s->paused;
        pthread_mutex_unlock(&G.mu);
    }
    return NULL;
}

Test(sink_pipeline, every_job_completes_exactly_once_from_concurrent_submitters)
{
    enum { THREADS = 4, PER = 2000, N = THREADS * PER };
    const struct sink_def d[3] = {
        {.queue = 8, .on_full = ON_FULL_BLOCK, .result = AERO_OK},
        {.queue = 4, .on_full = ON_FULL_REJECT, .result = AERO_OK},
        {.queue = 2, .on_full = ON_FULL_BLOCK, .result = AERO_OK},
    };
    atomic_int *writes[3];
    for (int k = 0; k < 3; k++) {
        writes[k] = calloc(N, sizeof(atomic_int));
        cr_assert_not_null(writes[k]);
        G.sinks[k].fast = true;
        G.sinks[k].writes = writes[k];
    }
    start(d, 3, 2);
    struct tjob *j = jobs_new(N);
    struct submitter *sub = calloc(THREADS, sizeof(*sub));
    cr_assert_not_null(sub);
    for (int t = 0; t < THREADS; t++) {
        sub[t].jobs = j;
        sub[t].first = (size_t)t * PER;
        sub[t].n = PER;
        reader_init(&sub[t].r);
        cr_assert_eq(pthread_create(&sub[t].thread, NULL, submit_loop, &sub[t]), 0);
    }
    int paused = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(sub[t].thread, NULL);
        cr_assert_not(sub[t].stalled, "submitter %d waited for a wake that never came", t);
        cr_assert_eq(woken(&sub[t].r), sub[t].paused, "submitter %d: %d wakes for %d pauses",
                     t, woken(&sub[t].r), sub[t].paused);
        paused += sub[t].paused;
    }
    EXPECT_WITHIN(WAIT_MS, atomic_load(&G.completed) == N, "completed %d of %d",
                  atomic_load(&G.completed), N);
    cr_assert(sink_pipeline_stop(G.p, 5000));
    G.p = NULL;
    cr_assert_eq(atomic_load(&G.completed), N, "completions after stop");

    int rejected = 0;
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(completions(&j[i]), 1, "job %zu: %d completions", i, completions(&j[i]));
        cr_assert_eq(atomic_load(&writes[0][i]), 1, "job %zu written %d times to s0", i,
                     atomic_load(&writes[0][i]));
        cr_assert_eq(atomic_load(&writes[2][i]), 1, "job %zu written %d times to s2", i,
                     atomic_load(&writes[2][i]));
        int w1 = atomic_load(&writes[1][i]);
        cr_assert(w1 == 0 || w1 == 1, "job %zu written %d times to s1", i, w1);
        if (w1 == 0) { /* the reject queue was full */
            rejected++;
            cr_assert_eq(j[i].worst, AERO_RETRY, "rejected job %zu acked %d", i, j[i].worst);
            cr_assert_eq(j[i].failed, 1);
        } else {
            cr_assert_eq(j[i].worst, AERO_OK, "job %zu: %d", i, j[i].worst);
            cr_assert_eq(j[i].failed, -1);
        }
    }
    cr_log_info("%d jobs, %d pauses, %d rejected by the reject sink", N, paused, rejected);
    jobs_free(j, N);
    free(sub);
    for (int k = 0; k < 3; k++)
        free(writes[k]);
}

/* ------------------------------------------------------------- reload */

/* Tick until no retired sink is left (the main thread's 100 ms tick). */
static void tick_until_retired(void)
{
    struct timespec dl = deadline_in(WAIT_MS);
    while (sink_pipeline_retiring(G.p) > 0) {
        sink_pipeline_tick(G.p);
        pthread_mutex_lock(&G.mu);
        bool more = wait_step(&dl);
        pthread_mutex_unlock(&G.mu);
        cr_assert(more || sink_pipeline_retiring(G.p) == 0, "a retired sink was never freed");
    }
}

/*
 * SIGHUP's swap: s0 is unchanged and keeps running, s1 is removed while it
 * holds frames, s2 is added. Frames submitted before the swap finish in
 * s1 (their completion waits for it), frames after go to s0 and s2 only,
 * and s1 is flushed, stopped and destroyed once it has written them.
 */
Test(sink_pipeline, a_swap_keeps_unchanged_sinks_and_drains_removed_ones)
{
    struct sink_def def = {100, ON_FULL_BLOCK, AERO_OK};
    struct sink_def defs[] = {def, def};
    start(defs, 2, 0);
    struct reader r;
    reader_init(&r);
    struct tjob *old = jobs_new(3), *now = jobs_new(2);
    pthread_mutex_lock(&G.mu);
    G.sinks[1].hold = true;
    pthread_mutex_unlock(&G.mu);
    for (int i = 0; i < 3; i++)
        submit(&old[i], &r);
    EXPECT_WITHIN(WAIT_MS, G.sinks[1].in_write, "s1 never wrote");

    struct sink_instance_spec specs[] = {define(0, &def), define(2, &def)};
    struct sink_swap_counts c;
    char err[256] = "";
    cr_assert_eq(sink_pipeline_swap(G.p, specs, 2, &c, err, sizeof(err)), 0, "%s", err);
    cr_assert(c.kept == 1 && c.started == 1 && c.retired == 1, "%zu %zu %zu", c.kept, c.started,
              c.retired);
    cr_assert_eq(sink_pipeline_count(G.p), 2);
    cr_assert_str_eq(sink_pipeline_name(G.p, 1), "s2");
    for (int i = 0; i < 2; i++)
        submit(&now[i], &r);
    EXPECT_WITHIN(WAIT_MS, completions(&now[0]) == 1 && completions(&now[1]) == 1,
                  "frames after the swap wait for a sink they were not given to");
    sink_pipeline_tick(G.p); /* nothing uses the old set: s1 is told to stop */
    EXPECT_STAYS(QUIET_MS, completions(&old[0]) + completions(&old[1]) + completions(&old[2]) == 0,
                 "a frame s1 holds completed before s1 wrote it");
    cr_assert_eq(sink_pipeline_retiring(G.p), 1);

    release_all();
    EXPECT_WITHIN(WAIT_MS, completions(&old[2]) == 1, "s1 did not write what it held");
    tick_until_retired();
    pthread_mutex_lock(&G.mu);
    cr_assert_eq(G.sinks[1].frames, 3, "s1 got a frame after the swap");
    cr_assert_eq(G.sinks[2].frames, 2);
    cr_assert_eq(G.sinks[0].frames, 5, "s0 missed a frame");
    cr_assert(G.sinks[1].destroyed == 1 && G.sinks[1].flushes == 1, "s1 not flushed and freed");
    cr_assert_eq(G.sinks[0].destroyed, 0, "the unchanged sink was restarted");
    pthread_mutex_unlock(&G.mu);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(old[i].worst, AERO_OK);
    jobs_free(old, 3);
    jobs_free(now, 2);
}

/* A new sink that cannot start refuses the swap: the running set stays. */
Test(sink_pipeline, a_swap_whose_new_sink_fails_to_start_changes_nothing)
{
    struct sink_def def = {100, ON_FULL_BLOCK, AERO_OK};
    start(&def, 1, 0);
    struct sink_instance_spec specs[] = {define(0, &def), define(1, &def)};
    G.names[1][0] = 'x'; /* "x1": t_create refuses it */
    struct sink_swap_counts c;
    char err[256] = "";
    cr_assert_eq(sink_pipeline_swap(G.p, specs, 2, &c, err, sizeof(err)), -1);
    cr_assert(strstr(err, "[sink:x1] plugin test-sink: create failed"), "%s", err);
    cr_assert_eq(sink_pipeline_count(G.p), 1);
    cr_assert_eq(sink_pipeline_retiring(G.p), 0);
    struct reader r;
    reader_init(&r);
    struct tjob *j = jobs_new(1);
    submit(j, &r);
    EXPECT_WITHIN(WAIT_MS, completions(j) == 1, "the running sink stopped taking frames");
    jobs_free(j, 1);
}
