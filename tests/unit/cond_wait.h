/*
 * cond_wait.h - test waits for a condition other threads change, with
 * deadlines, never a bare sleep. The test keeps its state under one mutex
 * and signals one condition variable (made with mono_cond_init) on every
 * change; `step(dl)` waits once on it until dl (CLOCK_MONOTONIC) and
 * returns false once dl has passed.
 */
#ifndef AERO_TEST_COND_WAIT_H
#define AERO_TEST_COND_WAIT_H

#include "mono_clock.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdbool.h>

static inline struct timespec deadline_in(int ms)
{
    return clock_after_ns(CLOCK_MONOTONIC, (int64_t)ms * 1000000);
}

/* Wait until `cond` (read under mu) holds, for at most ms; fail if not. */
#define EXPECT_WITHIN_ON(mu, step, ms, cond, ...)                     \
    do {                                                              \
        struct timespec dl_ = deadline_in(ms);                        \
        bool ok_;                                                     \
        pthread_mutex_lock(mu);                                       \
        while (!(ok_ = (cond)) && step(&dl_))                         \
            ;                                                         \
        ok_ = ok_ || (cond);                                          \
        pthread_mutex_unlock(mu);                                     \
        cr_assert(ok_, __VA_ARGS__);                                  \
    } while (0)

/* Watch `cond` for ms (waking on every change); fail as soon as it is false. */
#define EXPECT_STAYS_ON(mu, step, ms, cond, ...)                      \
    do {                                                              \
        struct timespec dl_ = deadline_in(ms);                        \
        bool ok_;                                                     \
        pthread_mutex_lock(mu);                                       \
        while ((ok_ = (cond)) && step(&dl_))                          \
            ;                                                         \
        ok_ = ok_ && (cond);                                          \
        pthread_mutex_unlock(mu);                                     \
        cr_assert(ok_, __VA_ARGS__);                                  \
    } while (0)

#endif
