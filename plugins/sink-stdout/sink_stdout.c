/*
 * sink_stdout.c - the sink-stdout plugin: each batch as JSON lines on fd 1,
 * one write(2) per batch from a per-instance buffer reused across batches.
 * write_batch runs on the instance's sink thread; nothing here is global, and
 * nothing changes process-wide state (the relay ignores SIGPIPE, not us).
 */
#include <aeroarc/plugin.h>

#include "envelope_lines.h"
#include "warn_limit.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    STDOUT_FD = 1,
    INITIAL_BUF = 64 * 1024,
    /* Past this many buffered bytes, a huge batch is written in pieces so
     * memory stays bounded whatever the frames hold. */
    CHUNK_BYTES = 4 * 1024 * 1024,
};

struct sink_stdout {
    const aero_host *host;
    struct envelope_lines lines; /* encoded lines of the batch being written */
    int torn_line;         /* a failed write left half a line on fd 1 */
    /* A failing stdout fails every batch: say so at most once a second. */
    struct warn_limit warn;
};

static int stdout_create(const aero_host *host, void **instance)
{
    struct sink_stdout *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        host->log(host, AERO_LOG_ERROR, "sink-stdout: out of memory");
        return -ENOMEM;
    }
    *instance = s;
    s->host = host;
    s->warn = WARN_LIMIT_INIT;
    if (envelope_lines_init(&s->lines, INITIAL_BUF) != 0) {
        host->log(host, AERO_LOG_ERROR, "sink-stdout: out of memory");
        return -ENOMEM; /* destroy() frees the half-built instance */
    }
    return 0;
}

/* The check slot: fd 1 must be open for writing (a relay started with
 * stdout closed would otherwise fail every batch). Nothing to configure. */
static int stdout_check(const aero_host *host)
{
    int fl = fcntl(STDOUT_FD, F_GETFL);
    if (fl >= 0 && (fl & O_ACCMODE) != O_RDONLY)
        return 0;
    if (!AERO_HAS(host, aero_host, config_error)) {
        host->log(host, AERO_LOG_ERROR, "sink-stdout: standard output is not open for writing");
        return -EBADF;
    }
    return host->config_error(host, NULL, "standard output (fd 1) is %s",
                              fl < 0 ? "closed" : "open read-only");
}

/* Writes buf[0..len) to fd 1, resuming after short writes, EINTR and
 * EAGAIN (someone may have made stdout non-blocking). Returns the bytes
 * written; on error sets *err. */
static size_t write_all(const char *buf, size_t len, int *err)
{
    size_t done = 0;
    *err = 0;
    while (done < len) {
        ssize_t w = write(STDOUT_FD, buf + done, len - done);
        if (w > 0) {
            done += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = STDOUT_FD, .events = POLLOUT};
            if (poll(&p, 1, -1) < 0 && errno != EINTR) {
                *err = errno;
                break;
            }
        } else {
            *err = w < 0 ? errno : EIO;
            break;
        }
    }
    return done;
}

/* Number of complete lines in buf[0..len): JSON escapes every newline
 * inside strings, so each '\n' ends one frame. */
static size_t count_lines(const char *buf, size_t len)
{
    size_t n = 0;
    for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + len - p)));
         p++)
        n++;
    return n;
}

/*
 * Writes buf[0..used) (frames first .. first+count-1, after `lead` bytes
 * that end an earlier torn line); sets their results: OK for each line that
 * got out whole, RETRY for the rest. Returns 0, or -1 when fd 1 failed.
 */
static int flush_pending(struct sink_stdout *s, size_t lead, size_t used,
                         size_t first, size_t count, aero_result *results)
{
    int err;
    const char *buf = s->lines.buf;
    size_t done = write_all(buf, used, &err);
    size_t ok = count;

    if (err) {
        ok = done > lead ? count_lines(buf + lead, done - lead) : 0;
        /* Half a line went out: end it first next time, or the next line
         * would be glued to it. */
        s->torn_line = done > 0 ? buf[done - 1] != '\n' : lead > 0;
        warn_limit_log(&s->warn, s->host, "sink-stdout",
                       "write to stdout failed: %s; %zu frame(s) to retry",
                       strerror(err), count - ok);
    }
    for (size_t i = 0; i < count; i++)
        results[first + i] = i < ok ? AERO_OK : AERO_RETRY;
    return err ? -1 : 0;
}

static void stdout_write_batch(void *instance, const aero_frame *const *frames,
                               size_t n, aero_result *results)
{
    struct sink_stdout *s = instance;
    size_t lead = 0, used = 0, first = 0, i;
    int failed = 0;

    if (s->torn_line) {
        s->lines.buf[lead++] = '\n'; /* cap >= INITIAL_BUF */
        used = lead;
        s->torn_line = 0;
    }
    for (i = 0; i < n && !failed; i++) {
        if (envelope_lines_append(&s->lines, s->host, frames[i], &used) != 0)
            break; /* out of memory: this frame and the rest are retried */
        if (used >= CHUNK_BYTES || i + 1 == n) {
            failed = flush_pending(s, lead, used, first, i + 1 - first, results);
            lead = used = 0;
            first = i + 1;
        }
    }
    /* Out of memory before the end: write the frames encoded so far. */
    if (!failed && used > lead) {
        flush_pending(s, lead, used, first, i - first, results);
        first = i;
    } else if (lead > 0 && used == lead)
        s->torn_line = 1; /* nothing was written: still to be ended */
    for (i = first; i < n; i++)
        results[i] = AERO_RETRY;
}

static int stdout_flush(void *instance)
{
    /* Nothing is buffered between batches; a pipe or tty has no fsync. */
    if (fsync(STDOUT_FD) != 0 && errno != EINVAL && errno != EROFS)
        return -errno;
    return 0;
}

static void stdout_destroy(void *instance)
{
    struct sink_stdout *s = instance;
    if (s == NULL)
        return;
    envelope_lines_free(&s->lines);
    free(s);
}

static const aero_sink_vtable stdout_vtable = {
    .size = sizeof(aero_sink_vtable),
    .keys = NULL,
    .n_keys = 0,
    .key_size = sizeof(aero_config_key),
    .create = stdout_create,
    .write_batch = stdout_write_batch,
    .flush = stdout_flush,
    .reopen = NULL,
    .destroy = stdout_destroy,
    .check = stdout_check,
};

static const aero_plugin_descriptor stdout_descriptor = {
    AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_SINK),
    .name = "sink-stdout",
    .description = "JSON lines on standard output",
    .vtable = &stdout_vtable,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void)
{
    return &stdout_descriptor;
}
