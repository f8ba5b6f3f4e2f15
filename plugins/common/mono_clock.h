/*
 * mono_clock.h - CLOCK_MONOTONIC in nanoseconds: the clock the plugins and
 * the core use for rate limits, deadlines, ages and latencies, since it
 * never jumps with the wall clock; and deadlines for timed waits. A header, not a .c: plugins link no core
 * symbol, so every plugin carries its own copy anyway; static inline gives
 * each file that copy with no source to add to every build, and lets the
 * two-line body inline on hot paths (the core includes it from here too).
 */
#ifndef AERO_PLUGIN_MONO_CLOCK_H
#define AERO_PLUGIN_MONO_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Any clock in nanoseconds: CLOCK_REALTIME for timestamps that leave the
 * process, CLOCK_THREAD_CPUTIME_ID for a thread's own CPU time. */
static inline int64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

/* `ns` from now on `clock`: the deadline pthread's timed waits take
 * (pthread_cond_timedwait on a condition set to that clock,
 * pthread_timedjoin_np on CLOCK_REALTIME). */
static inline struct timespec clock_after_ns(clockid_t clock, int64_t ns)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    int64_t frac = (int64_t)ts.tv_nsec + ns % 1000000000;
    ts.tv_sec += (time_t)(ns / 1000000000 + frac / 1000000000);
    ts.tv_nsec = (long)(frac % 1000000000);
    return ts;
}

/* A condition variable whose timed waits take CLOCK_MONOTONIC deadlines
 * (clock_after_ns(CLOCK_MONOTONIC, ...)), so a wall-clock step never
 * shortens or stretches them. 0 or an errno value, as pthread_cond_init. */
static inline int mono_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc != 0)
        return rc;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return rc;
}

#endif
