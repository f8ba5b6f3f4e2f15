/*
 * mono_clock.h - CLOCK_MONOTONIC in nanoseconds: the clock the plugins use
 * for rate limits, deadlines and ages, since it never jumps with the wall
 * clock. A header, not a .c: plugins link no core symbol (the core's clock,
 * gateway_now_ns, is out of reach), so every plugin carries its own copy
 * anyway; static inline gives each file that copy with no source to add to
 * every plugin's build, and lets the two-line body inline on hot paths.
 */
#ifndef AERO_PLUGIN_MONO_CLOCK_H
#define AERO_PLUGIN_MONO_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
