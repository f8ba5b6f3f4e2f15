/*
 * log.c - the relay's one logger: level filter, then one JSON object (or one
 * text line) per call on stderr. Any thread; no lock: each line is built in
 * a stack buffer no larger than PIPE_BUF and leaves in one write(2), so lines
 * never interleave. Must not allocate, and must not depend on other modules.
 */
#include "log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Writes up to PIPE_BUF bytes to a pipe are atomic: keep a line within it. */
#define LOG_LINE_MAX 4096
/* Room always kept for the tail: "..." + "\"}\n". */
#define LOG_TAIL 8

/*
 * The only process-wide state of the core besides signal flags: set once by
 * log_configure before threads start. Atomics (relaxed) so that a reader on
 * another thread is never a data race, whatever the start-up order.
 */
static atomic_int log_min_level = AERO_LOG_INFO;
static atomic_int log_format_used = LOG_FORMAT_JSON;
static atomic_bool log_journal; /* stderr is journald's stream: prefix <priority> */

struct line_buf {
    char buf[LOG_LINE_MAX];
    size_t len;
    size_t limit;   /* writes stop here, leaving LOG_TAIL for the ending */
    bool truncated;
};

/* systemd sets JOURNAL_STREAM=<dev>:<ino> to the stream it connected to
 * stderr (systemd.exec(5)); only then does a "<3>" prefix mean "err" to
 * journald (`journalctl -p err`) rather than three more bytes of text. */
static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    return js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
           (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_configure(aero_log_level level, enum log_format format)
{
    atomic_store_explicit(&log_min_level, (int)level, memory_order_relaxed);
    atomic_store_explicit(&log_format_used, (int)format, memory_order_relaxed);
    atomic_store_explicit(&log_journal, stderr_is_journal(), memory_order_relaxed);
}

/* The sd-daemon(3) prefix for a level: syslog's err, warning, info, debug. */
static const char *journal_prefix(aero_log_level level)
{
    return level >= AERO_LOG_ERROR  ? "<3>"
           : level >= AERO_LOG_WARN ? "<4>"
           : level >= AERO_LOG_INFO ? "<6>"
                                    : "<7>";
}

int log_enabled(aero_log_level level)
{
    return (int)level >= atomic_load_explicit(&log_min_level, memory_order_relaxed);
}

/* Append n bytes whole or not at all (an escape is never cut in half). */
static bool put(struct line_buf *b, const char *s, size_t n)
{
    if (b->truncated || b->len + n > b->limit) {
        b->truncated = true;
        return false;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    return true;
}

static bool put_str(struct line_buf *b, const char *s)
{
    return put(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid:
 * no overlongs, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4;
    else
        return 0;
    if (s[0] == 0xE0)
        lo = 0xA0;
    else if (s[0] == 0xED)
        hi = 0x9F;
    else if (s[0] == 0xF0)
        lo = 0x90;
    else if (s[0] == 0xF4)
        hi = 0x8F;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* One ASCII byte: JSON escapes quotes, backslashes and control bytes; text
 * escapes control bytes only (the line must stay one line either way). */
static void put_ascii(struct line_buf *b, unsigned char c, bool json)
{
    char esc[8];

    if (c == '\n' || c == '\t' || c == '\r') {
        put(b, c == '\n' ? "\\n" : c == '\t' ? "\\t" : "\\r", 2);
    } else if (c < 0x20 || c == 0x7f) {
        snprintf(esc, sizeof esc, json ? "\\u%04x" : "\\x%02x", c);
        put_str(b, esc);
    } else if (json && (c == '"' || c == '\\')) {
        esc[0] = '\\';
        esc[1] = (char)c;
        put(b, esc, 2);
    } else {
        esc[0] = (char)c;
        put(b, esc, 1);
    }
}

/* Append str escaped; invalid UTF-8 becomes U+FFFD (JSON) or \xNN (text),
 * so a JSON line is always valid JSON whatever bytes a message carries. */
static void put_escaped(struct line_buf *b, const char *str, bool json)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    char esc[8];

    while (n > 0 && !b->truncated) {
        size_t len = utf8_len(s, n);
        if (len == 1) {
            put_ascii(b, s[0], json);
        } else if (len > 1) {
            put(b, (const char *)s, len);
        } else {
            snprintf(esc, sizeof esc, "\\x%02x", s[0]);
            put_str(b, json ? "\\ufffd" : esc);
            len = 1;
        }
        s += len;
        n -= len;
    }
}

/* Close the line: "..." if anything was cut, then `end`, which always fits
 * (LOG_TAIL was held back). */
static void put_end(struct line_buf *b, bool cut, const char *end)
{
    bool mark = cut || b->truncated;

    b->truncated = false;
    b->limit = sizeof b->buf;
    if (mark)
        put_str(b, "...");
    put_str(b, end);
}

static const char *level_name(aero_log_level level, bool upper)
{
    static const char *const lower_names[] = {"debug", "info", "warn", "error"};
    static const char *const upper_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    int i = (int)level;

    /* a plugin may pass anything: out-of-range levels are shown as errors */
    if (i < AERO_LOG_DEBUG || i > AERO_LOG_ERROR)
        i = AERO_LOG_ERROR;
    return upper ? upper_names[i] : lower_names[i];
}

/* RFC 3339 UTC with `digits` (3 or 6) fraction digits. */
static void put_time(struct line_buf *b, int digits)
{
    struct timespec ts;
    struct tm tm;
    char out[64];
    size_t n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%S", &tm);
    if (digits == 6)
        snprintf(out + n, sizeof out - n, ".%06ldZ", ts.tv_nsec / 1000);
    else
        snprintf(out + n, sizeof out - n, ".%03ldZ", ts.tv_nsec / 1000000);
    put_str(b, out);
}

static void format_json(struct line_buf *b, aero_log_level level, const char *component,
                        const char *msg, bool cut)
{
    put_str(b, "{\"ts\":\"");
    put_time(b, 6);
    put_str(b, "\",\"level\":\"");
    put_str(b, level_name(level, false));
    if (component) {
        put_str(b, "\",\"component\":\"");
        put_escaped(b, component, true);
    }
    put_str(b, "\",\"msg\":\"");
    put_escaped(b, msg, true);
    put_end(b, cut, "\"}\n");
}

static void format_text(struct line_buf *b, aero_log_level level, const char *component,
                        const char *msg, bool cut)
{
    char lvl[16];

    put_time(b, 3);
    snprintf(lvl, sizeof lvl, " %-5s ", level_name(level, true));
    put_str(b, lvl);
    if (component) {
        put_escaped(b, component, false);
        put_str(b, ": ");
    }
    put_escaped(b, msg, false);
    put_end(b, cut, "\n");
}

/* One write(2) per line; a short write (a full disk under stderr, a
 * signal) is finished, EINTR retried, other errors dropped: logging must
 * never fail its caller. */
static void write_line(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

void log_vmsg(aero_log_level level, const char *component, const char *fmt, va_list ap)
{
    int saved_errno = errno; /* callers log and then look at errno */
    char msg[LOG_LINE_MAX];
    struct line_buf b = {.len = 0, .limit = LOG_LINE_MAX - LOG_TAIL, .truncated = false};
    int n;

    if (!log_enabled(level))
        return;
    n = vsnprintf(msg, sizeof msg, fmt ? fmt : "", ap);
    if (n < 0)
        snprintf(msg, sizeof msg, "(unformattable log message: %s)", fmt);
    if (atomic_load_explicit(&log_journal, memory_order_relaxed))
        put_str(&b, journal_prefix(level));
    if (atomic_load_explicit(&log_format_used, memory_order_relaxed) == LOG_FORMAT_TEXT)
        format_text(&b, level, component, msg, n >= (int)sizeof msg);
    else
        format_json(&b, level, component, msg, n >= (int)sizeof msg);
    write_line(b.buf, b.len);
    errno = saved_errno;
}

void log_msg(aero_log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(level, component, fmt, ap);
    va_end(ap);
}

const char *log_level_name(aero_log_level level) { return level_name(level, false); }
