/*
 * warn_limit.c - see warn_limit.h. No state beyond the caller's struct.
 */
#include "warn_limit.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

void warn_limit_log(struct warn_limit *w, const aero_host *host, const char *prefix,
                    const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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
