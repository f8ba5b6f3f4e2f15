/*
 * test_worker_gate.c - the gate that keeps idle gRPC workers off the
 * completion queue (core/worker_gate.c), driven by real threads: a parked
 * worker stays parked while another polls and is healthy, comes in when
 * every polling worker is stuck in an event or keeps its core busy, parks
 * again when it has little to do, and is released by close. The gauge
 * follows. Waits are polled against deadlines, never slept through.
 */
#include "metrics.h"
#include "mono_clock.h"
#include "worker_gate.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static struct metrics *m;
static aero_metric *gauge;
static struct worker_gate *g;

static void setup(void)
{
    m = metrics_create();
    gauge = metrics_register(m, AERO_METRIC_GAUGE, "polling", "Workers polling.", NULL);
    g = worker_gate_create(2, gauge);
    cr_assert_not_null(g);
}

static void teardown(void)
{
    worker_gate_destroy(g);
    metrics_destroy(m);
}

TestSuite(worker_gate, .init = setup, .fini = teardown, .timeout = 30);

/* Worker 1 on its own thread: passes the gate once and says when it is
 * through. */
struct passer {
    pthread_t thread;
    atomic_bool through;
    bool parked;
};

static void *pass_once(void *arg)
{
    struct passer *p = arg;
    p->parked = worker_gate_pass(g, 1, mono_ns());
    atomic_store(&p->through, true);
    return NULL;
}

static void start_passer(struct passer *p)
{
    atomic_init(&p->through, false);
    cr_assert_eq(pthread_create(&p->thread, NULL, pass_once, p), 0);
}

/* Poll until the passer is through or ms pass; true if it is. */
static bool through_within(struct passer *p, int ms)
{
    int64_t until = mono_ns() + (int64_t)ms * 1000000;
    while (!atomic_load(&p->through) && mono_ns() < until) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return atomic_load(&p->through);
}

static void join_passer(struct passer *p)
{
    pthread_join(p->thread, NULL);
}

Test(worker_gate, one_worker_polls_at_first)
{
    cr_assert_eq(worker_gate_active(g), 1);
    cr_assert_eq(metrics_value(gauge), 1);
    /* Worker 0 passes straight through: it is the one polling. */
    cr_assert_not(worker_gate_pass(g, 0, mono_ns()));
}

Test(worker_gate, a_parked_worker_waits_while_the_poller_is_healthy)
{
    struct passer p;
    worker_gate_pass(g, 0, mono_ns()); /* worker 0 waits for events: healthy */
    start_passer(&p);
    cr_assert_not(through_within(&p, 200), "joined with nothing to do");
    cr_assert_eq(worker_gate_active(g), 1);
    worker_gate_close(g);
    cr_assert(through_within(&p, 5000), "close did not release the parked worker");
    join_passer(&p);
    cr_assert(p.parked);
}

Test(worker_gate, a_stuck_poller_brings_the_parked_worker_in)
{
    struct passer p;
    worker_gate_pass(g, 0, mono_ns());
    start_passer(&p);
    /* Worker 0 took an event and never comes back (a sink hangs). */
    worker_gate_busy(g, 0, mono_ns());
    cr_assert(through_within(&p, 5000), "nobody came in for the stuck worker");
    join_passer(&p);
    cr_assert_eq(worker_gate_active(g), 2);
    cr_assert_eq(metrics_value(gauge), 2);
}

/* Keep this thread's CPU busy until ns have passed. */
static void spin_for(int64_t ns)
{
    int64_t until = mono_ns() + ns;
    volatile uint64_t x = 0;
    while (mono_ns() < until)
        x++;
}

Test(worker_gate, a_busy_poller_calls_one_in_and_an_idle_one_parks_again)
{
    struct passer p;
    worker_gate_pass(g, 0, mono_ns()); /* opens worker 0's first window */
    start_passer(&p);
    cr_assert_not(through_within(&p, 50));

    /* Worker 0 keeps its core busy for a whole window: it calls worker 1
     * in. The first window also holds the 50 ms it waited above, and one
     * in which the machine preempted it may not count: it gets a few. */
    int64_t until = mono_ns() + 10000000000;
    do {
        spin_for(150000000);
        worker_gate_pass(g, 0, mono_ns());
    } while (!atomic_load(&p.through) && mono_ns() < until);
    cr_assert(through_within(&p, 5000), "a CPU-bound poller did not call for help");
    join_passer(&p);
    cr_assert_eq(worker_gate_active(g), 2);

    /* Now worker 0 idles a window away (it waited for events): it parks,
     * since worker 1 polls and is healthy, and stays until worker 1 is
     * stuck. */
    struct timespec ts = {0, 150000000};
    nanosleep(&ts, NULL); /* the idle window itself, not a synchronisation */
    worker_gate_busy(g, 0, mono_ns()); /* the event that ended its wait */
    int64_t t0 = mono_ns();
    worker_gate_busy(g, 1, t0); /* ... and now inside one, from t0 on */
    worker_gate_pass(g, 0, mono_ns());
    cr_assert_geq(mono_ns() - t0, 20000000, "worker 0 left the gate before worker 1 was stuck");
    cr_assert_eq(worker_gate_active(g), 2);
}

Test(worker_gate, the_last_poller_never_parks)
{
    worker_gate_pass(g, 0, mono_ns());
    struct timespec ts = {0, 150000000};
    nanosleep(&ts, NULL); /* an idle window */
    int64_t t0 = mono_ns();
    cr_assert_not(worker_gate_pass(g, 0, mono_ns()), "the only polling worker parked");
    cr_assert_lt(mono_ns() - t0, 1000000000);
    cr_assert_eq(worker_gate_active(g), 1);
}

/* Sleep ms: the time that passes in a test of elapsed time, not a
 * synchronisation. */
static void pass_time(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

Test(worker_gate, lag_is_zero_while_the_poller_waits_on_an_empty_queue)
{
    worker_gate_pass(g, 0, mono_ns()); /* worker 0 begins waiting */
    pass_time(5);
    cr_assert_eq(worker_gate_lag_ns(g, mono_ns()), 0);
}

Test(worker_gate, lag_grows_while_no_wait_finds_the_queue_empty)
{
    /* Worker 0 waited for its event (the queue was empty), then handles
     * event after event that were already queued: every pass is followed
     * at once by the next event. */
    worker_gate_pass(g, 0, mono_ns());
    pass_time(2);
    int64_t caught_up = mono_ns();
    cr_assert(worker_gate_busy(g, 0, caught_up), "a 2 ms wait did not count as a wait");
    int64_t until = caught_up + 300000000;
    while (mono_ns() < until) {
        /* The next event is there at once: the pass and the event share
         * one instant. (Two clock reads would let a preemption of the
         * test thread between them, common under ASan on a loaded host,
         * pass for a 20 us wait.) */
        int64_t t = mono_ns();
        worker_gate_pass(g, 0, t);
        cr_assert_not(worker_gate_busy(g, 0, t), "an event already queued counted as a wait");
        pass_time(1); /* handling it */
    }
    int64_t lag = worker_gate_lag_ns(g, mono_ns());
    cr_assert_geq(lag, 300000000, "lag %lld ns after 300 ms of backlog", (long long)lag);
    /* It catches up: one wait on an empty queue and the lag is no more
     * than that wait (however long the host made it), not the backlog's. */
    int64_t wait_t0 = mono_ns();
    worker_gate_pass(g, 0, wait_t0);
    pass_time(2);
    int64_t t = mono_ns();
    cr_assert(worker_gate_busy(g, 0, t), "a 2 ms wait did not count as a wait");
    lag = worker_gate_lag_ns(g, t);
    cr_assert_leq(lag, t - wait_t0, "lag %lld ns after a %lld ns wait", (long long)lag,
                  (long long)(t - wait_t0));
}
