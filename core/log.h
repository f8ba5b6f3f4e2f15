/*
 * log.h - the relay's one logger: level filter, JSON or text lines on stderr.
 * Thread-safe; one write(2) per line so lines from threads never interleave.
 */
#ifndef AERO_LOG_H
#define AERO_LOG_H

#include <aeroarc/plugin.h>
#include <stdarg.h>

enum log_format { LOG_FORMAT_JSON = 0, LOG_FORMAT_TEXT = 1 };

/* Set once at start-up (before threads), from [log]. Defaults: info, json. */
void log_configure(aero_log_level level, enum log_format format);
int log_enabled(aero_log_level level);
/* "debug", "info", "warn", "error". */
const char *log_level_name(aero_log_level level);

/* `component` ("core", "sink:archive", "route:route-redis", ...) may be NULL. */
void log_msg(aero_log_level level, const char *component, const char *fmt, ...)
    AERO_PRINTF(3, 4);
void log_vmsg(aero_log_level level, const char *component, const char *fmt,
              va_list ap);

#define log_debug(...) log_msg(AERO_LOG_DEBUG, "core", __VA_ARGS__)
#define log_info(...) log_msg(AERO_LOG_INFO, "core", __VA_ARGS__)
#define log_warn(...) log_msg(AERO_LOG_WARN, "core", __VA_ARGS__)
#define log_error(...) log_msg(AERO_LOG_ERROR, "core", __VA_ARGS__)

#endif
