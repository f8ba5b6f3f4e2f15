/*
 * warn_limit.c - see warn_limit.h. No state beyond the caller's struct.
 */
#include "warn_limit.h"

#include "mono_clock.h"

#include <stdarg.h>
#include <stdio.h>

void warn_limit_log(struct warn_limit *w, const aero_host *host, const char *prefix,
                    const char *fmt, ...)
{
    int64_t now = mono_ns();
    if (w->last_ns >= 0 && now - w->last_ns < 1000000000) {
        w->quiet++;
        return;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    host->log(host, AERO_LOG_WARN, "%s: %s (%lu similar warning(s) not logged)", prefix, msg,
              w->quiet);
    w->last_ns = now;
    w->quiet = 0;
}
