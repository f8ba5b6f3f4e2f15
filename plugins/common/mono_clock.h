/*
 * mono_clock.h - CLOCK_MONOTONIC in nanoseconds: the clock the plugins and
 * the core use for rate limits, deadlines, ages and latencies, since it
 * never jumps with the wall clock. A header, not a .c: plugins link no core
 * symbol, so every plugin carries its own copy anyway; static inline gives
 * each file that copy with no source to add to every build, and lets the
 * two-line body inline on hot paths (the core includes it from here too).
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
