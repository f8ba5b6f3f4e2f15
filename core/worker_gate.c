/*
 * worker_gate.c - parks the gRPC workers the load does not need (see
 * worker_gate.h). The hot path is one relaxed store per event and one
 * clock comparison per wait; the CPU reading and the lock come once per
 * WINDOW_NS per worker, and when a worker parks or joins.
 */
#include "worker_gate.h"

#include "metrics.h"
#include "mono_clock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often a polling worker weighs its CPU use. */
#define WINDOW_NS 100000000

/* A worker that kept this share of its core busy for JOIN_WINDOWS windows
 * in a row calls in another one; one that used less than PARK_PCT steps
 * out. A single hot window is often a burst of new connections, and two
 * workers at 40-50% each do what one does at 75% (each event hands the
 * poller role over): measured with 500 agents, PARK_PCT 40 kept both
 * polling and cost 8% of acked/s and 15% more CPU. */
#define JOIN_PCT 90
#define JOIN_WINDOWS 2
#define PARK_PCT 50

/* A worker inside one event this long is stuck (a sink hangs in its
 * write_batch); parked workers look for one this often. */
#define STUCK_NS 20000000
#define WATCH_NS 10000000

/* A wait on the queue this long found it empty: the event that ended it
 * had not arrived when the wait began. */
#define EMPTY_NS 20000

struct gate_worker {
    _Alignas(64) _Atomic int64_t busy_since; /* mono ns; 0: waiting for an event */
    _Atomic int64_t wait_since;              /* mono ns: its current or last wait began */
    _Atomic int64_t empty_at;                /* mono ns: its last wait that found the queue empty began */
    int64_t window_t0, cpu_t0;               /* the worker's own */
    int hot;                                 /* windows in a row at JOIN_PCT */
    bool parked;                             /* under the gate's mu */
};

struct worker_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* parked workers wait here (CLOCK_MONOTONIC) */
    int n;
    int active; /* under mu: workers not parked */
    int calls;  /* under mu: joins asked for and not yet taken */
    bool closed;
    _Atomic int active_now; /* active, for readers without the lock */
    aero_metric *gauge;
    struct gate_worker *w;
};

struct worker_gate *worker_gate_create(int workers, aero_metric *active)
{
    struct worker_gate *g = calloc(1, sizeof(*g));
    size_t n = workers > 0 ? (size_t)workers : 1;
    if (!g || !(g->w = aligned_alloc(64, n * sizeof(*g->w)))) {
        free(g);
        return NULL;
    }
    mono_cond_init(&g->cv);
    pthread_mutex_init(&g->mu, NULL);
    g->n = (int)n;
    memset(g->w, 0, n * sizeof(*g->w)); /* aligned_alloc does not zero */
    int64_t now = mono_ns(); /* nothing has arrived yet: the queue is empty */
    for (size_t i = 0; i < n; i++) {
        atomic_init(&g->w[i].busy_since, 0);
        atomic_init(&g->w[i].wait_since, now);
        atomic_init(&g->w[i].empty_at, now);
        g->w[i].parked = i > 0;
    }
    g->active = 1;
    atomic_init(&g->active_now, 1);
    g->gauge = active;
    metrics_set(g->gauge, 1);
    return g;
}

void worker_gate_destroy(struct worker_gate *g)
{
    if (!g)
        return;
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->w);
    free(g);
}

/* Under mu: workers polling that are not stuck in a handler, not counting
 * `self`. */
static int healthy_others(const struct worker_gate *g, int self, int64_t now)
{
    int n = 0;
    for (int i = 0; i < g->n; i++) {
        if (i == self || g->w[i].parked)
            continue;
        int64_t since = atomic_load_explicit(&g->w[i].busy_since, memory_order_relaxed);
        if (since == 0 || now - since < STUCK_NS)
            n++;
    }
    return n;
}

static void set_active(struct worker_gate *g, int delta)
{
    g->active += delta;
    atomic_store_explicit(&g->active_now, g->active, memory_order_relaxed);
    metrics_set(g->gauge, g->active);
}

/* Under mu: wait, parked, until a join is called for, every other worker
 * is stuck, or the gate closes. */
static void wait_parked(struct worker_gate *g, int id)
{
    struct gate_worker *w = &g->w[id];
    while (!g->closed && g->calls == 0 && healthy_others(g, id, mono_ns()) > 0) {
        struct timespec until = clock_after_ns(CLOCK_MONOTONIC, WATCH_NS);
        pthread_cond_timedwait(&g->cv, &g->mu, &until);
    }
    if (g->calls > 0)
        g->calls--;
    w->parked = false;
    set_active(g, 1);
}

/* Ask one parked worker in, unless every one is already on its way. */
static void call_one(struct worker_gate *g)
{
    pthread_mutex_lock(&g->mu);
    if (!g->closed && g->active + g->calls < g->n) {
        g->calls++;
        pthread_cond_signal(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
}

/* Park `id` if another healthy worker keeps polling; back once needed.
 * True if it parked. */
static bool park(struct worker_gate *g, int id, int64_t now)
{
    bool parked = false;
    pthread_mutex_lock(&g->mu);
    if (!g->closed && g->calls == 0 && healthy_others(g, id, now) > 0) {
        g->w[id].parked = parked = true;
        set_active(g, -1);
        wait_parked(g, id);
    }
    pthread_mutex_unlock(&g->mu);
    return parked;
}

bool worker_gate_pass(struct worker_gate *g, int id, int64_t now)
{
    struct gate_worker *w = &g->w[id];
    /* wait_since first: a reader that sees busy_since 0 must not pair it
     * with the previous wait's start (worker_gate_lag_ns). */
    atomic_store_explicit(&w->wait_since, now, memory_order_relaxed);
    atomic_store_explicit(&w->busy_since, 0, memory_order_release);
    bool parked = false;
    if (w->parked) { /* started parked; only this thread clears the flag */
        pthread_mutex_lock(&g->mu);
        wait_parked(g, id);
        pthread_mutex_unlock(&g->mu);
        parked = true;
    } else if (w->window_t0 != 0 && now - w->window_t0 < WINDOW_NS) {
        return false;
    } else if (w->window_t0 != 0) {
        int64_t wall = now - w->window_t0;
        int64_t cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - w->cpu_t0;
        /* CPU alone decides. A backlog (no wait in the window found the
         * queue empty) was tried as a second reason to call a worker in:
         * in the 10,000-agent connect storm it made the acks slower (p50
         * 1.38x, p99 2.15x of CPU alone: two pollers hand gRPC's poller
         * role back and forth on every event; docs/benchmarks.md). The
         * record of empty waits stays for worker_gate_lag_ns. */
        w->hot = cpu * 100 >= wall * JOIN_PCT ? w->hot + 1 : 0;
        if (w->hot >= JOIN_WINDOWS)
            call_one(g);
        else if (cpu * 100 < wall * PARK_PCT && atomic_load(&g->active_now) > 1)
            parked = park(g, id, now);
    }
    w->window_t0 = mono_ns();
    w->cpu_t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    /* Its wait on the queue begins now (not before it weighed or parked):
     * a wait that finds the queue empty then falls inside the new window. */
    atomic_store_explicit(&w->wait_since, w->window_t0, memory_order_relaxed);
    return parked;
}

bool worker_gate_busy(struct worker_gate *g, int id, int64_t now)
{
    struct gate_worker *w = &g->w[id];
    int64_t since = atomic_load_explicit(&w->wait_since, memory_order_relaxed);
    bool waited = now - since >= EMPTY_NS;
    if (waited)
        atomic_store_explicit(&w->empty_at, since, memory_order_relaxed);
    atomic_store_explicit(&w->busy_since, now, memory_order_relaxed);
    return waited;
}

int64_t worker_gate_lag_ns(struct worker_gate *g, int64_t now)
{
    int64_t caught_up = 0;
    pthread_mutex_lock(&g->mu); /* for parked */
    for (int i = 0; i < g->n && caught_up < now; i++) {
        struct gate_worker *w = &g->w[i];
        if (w->parked)
            continue;
        int64_t empty = atomic_load_explicit(&w->empty_at, memory_order_relaxed);
        if (atomic_load_explicit(&w->busy_since, memory_order_acquire) == 0 &&
            now - atomic_load_explicit(&w->wait_since, memory_order_relaxed) >= EMPTY_NS)
            empty = now; /* waiting on an empty queue right now */
        if (empty > caught_up)
            caught_up = empty;
    }
    pthread_mutex_unlock(&g->mu);
    return caught_up > 0 && now > caught_up ? now - caught_up : 0;
}

void worker_gate_close(struct worker_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->closed = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

int worker_gate_active(struct worker_gate *g)
{
    return atomic_load_explicit(&g->active_now, memory_order_relaxed);
}
