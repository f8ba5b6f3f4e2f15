/*
 * warn_limit.h - a warning that repeats on every batch while a server or
 * disk is away, logged at most once a second with the number swallowed.
 * Compiled into each plugin that uses it (plugins link no core symbol);
 * one warn_limit per instance, used from one thread at a time.
 */
#ifndef AERO_PLUGIN_WARN_LIMIT_H
#define AERO_PLUGIN_WARN_LIMIT_H

#include <aeroarc/plugin.h>
#include <stdint.h>

struct warn_limit {
    int64_t last_ns;     /* CLOCK_MONOTONIC of the last line logged, -1: none */
    unsigned long quiet; /* warnings swallowed since */
};

#define WARN_LIMIT_INIT ((struct warn_limit){-1, 0})

/* Logs "<prefix>: <message> (N similar warning(s) not logged)" at warn,
 * unless a line went out less than a second ago (then only counts it). */
void warn_limit_log(struct warn_limit *w, const aero_host *host, const char *prefix,
                    const char *fmt, ...) AERO_PRINTF(4, 5);

#endif
