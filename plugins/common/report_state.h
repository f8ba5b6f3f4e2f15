/*
 * report_state.h - a route's aero_host.report_state (ABI 1.5) with a
 * formatted reason, doing nothing on an older relay that lacks the slot
 * (its /readyz lists no components). Header-only: one small function each
 * route plugin compiles in (plugins link no core symbol). Any thread.
 */
#ifndef AERO_PLUGIN_REPORT_STATE_H
#define AERO_PLUGIN_REPORT_STATE_H

#include <aeroarc/plugin.h>
#include <stdarg.h>
#include <stdio.h>

static inline void report_state(const aero_host *host, aero_state state, const char *fmt, ...)
    AERO_PRINTF(3, 4);
static inline void report_state(const aero_host *host, aero_state state, const char *fmt, ...)
{
    if (!AERO_HAS(host, aero_host, report_state) || !host->report_state)
        return;
    char reason[192] = ""; /* the relay keeps 160 bytes */
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
    }
    host->report_state(host, state, reason);
}

#endif
