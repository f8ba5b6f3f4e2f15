/*
 * sink_file.c - the sink-file plugin: JSON lines appended to
 * <path>/<prefix>-<UTC time>.jsonl, one write(2) (and with fsync = batch one
 * fdatasync) per batch, rotation by size and age, and recovery from a full
 * or failing disk without a restart. check (also under --check) refuses a
 * path that cannot be created or written now; create() does not: at run
 * time a failing disk is retried, never fatal. write_batch/flush/reopen run
 * on the instance's sink thread, check/create/destroy on the main thread;
 * no globals.
 */
#include <aeroarc/plugin.h>

#include "config_check.h"
#include "envelope_lines.h"
#include "mono_clock.h"
#include "warn_limit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    INITIAL_BUF = 64 * 1024,
    /* Past this many buffered bytes a huge batch is written in pieces (to
     * the same file, still undone as a whole on error) so memory stays
     * bounded whatever the frames hold. */
    CHUNK_BYTES = 4 * 1024 * 1024,
    /* Files created within one second get -1, -2, ... suffixes. */
    MAX_SAME_SECOND = 1000,
};

static const aero_config_key file_keys[] = {
    {.name = "path", .type = AERO_KEY_STRING, .default_value = "./data",
     .help = "directory of the .jsonl files (created if missing)"},
    {.name = "prefix", .type = AERO_KEY_STRING, .default_value = "telemetry",
     .help = "file names are <prefix>-<UTC time>.jsonl; no '/'"},
    {.name = "rotate_bytes", .type = AERO_KEY_INT, .default_value = "67108864",
     .help = "start a new file before a batch would grow it past this many "
             "bytes (a larger batch gets a file of its own); 0 = never",
     .min = 0, .max = INT64_MAX},
    {.name = "rotate_interval_s", .type = AERO_KEY_INT, .default_value = "3600",
     .help = "start a new file once the current one is this many seconds "
             "old (checked at each batch); 0 = never",
     .min = 0, .max = INT32_MAX},
    {.name = "fsync", .type = AERO_KEY_ENUM, .default_value = "none",
     .choices = "none|batch",
     .help = "batch: fdatasync every batch before its frames are acked"},
};

struct sink_file {
    const aero_host *host;
    const char *dir;      /* config strings: owned by the host */
    const char *prefix;
    int64_t rotate_bytes;      /* 0: no size rotation */
    int64_t rotate_interval_s; /* 0: no age rotation */
    int fsync_batch;

    int fd;                    /* -1: no file open (opened lazily) */
    char path[PATH_MAX];       /* the open file, for messages */
    uint64_t size;             /* bytes in the open file */
    int64_t opened_ns;         /* CLOCK_MONOTONIC, for rotate_interval_s */

    struct envelope_lines lines; /* encoded lines of the batch, reused */

    aero_metric *m_errors, *m_rotations, *m_bytes;
    struct warn_limit warn;   /* rate limit of repeated warnings */
};

/* ------------------------------------------------------------ helpers */

static void metric_add(struct sink_file *s, aero_metric *m, uint64_t delta)
{
    if (m != NULL)
        s->host->metric_add(m, delta);
}

/* Write errors repeat on every batch while the disk is full: one warning a
 * second at most, saying how many were swallowed. */
#define warn_limited(s, ...) warn_limit_log(&(s)->warn, (s)->host, "sink-file", __VA_ARGS__)

/* mkdir -p: 0 or -errno. */
static int make_dirs(const char *dir)
{
    char tmp[PATH_MAX];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -errno;
        tmp[i] = saved;
    }
    return 0;
}

/* Makes a new directory entry durable (fsync = batch promises the data
 * survives a crash, which needs the file's name to survive too). */
static int sync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    int rc = fsync(dfd) == 0 ? 0 : -errno;
    close(dfd);
    return rc;
}

/* Creates a file no other rotation ever used (O_EXCL): 0 or -errno. */
static int open_file(struct sink_file *s)
{
    int rc = make_dirs(s->dir);
    if (rc != 0)
        return rc;

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);

    for (int k = 0; k < MAX_SAME_SECOND; k++) {
        int n = k == 0 ? snprintf(s->path, sizeof(s->path), "%s/%s-%s.jsonl",
                                  s->dir, s->prefix, stamp)
                       : snprintf(s->path, sizeof(s->path), "%s/%s-%s-%d.jsonl",
                                  s->dir, s->prefix, stamp, k);
        if (n < 0 || (size_t)n >= sizeof(s->path))
            return -ENAMETOOLONG;
        s->fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC,
                     0644);
        if (s->fd >= 0)
            break;
        if (errno != EEXIST)
            return -errno;
    }
    if (s->fd < 0)
        return -EEXIST;
    if (s->fsync_batch && (rc = sync_dir(s->dir)) != 0) {
        close(s->fd);
        s->fd = -1;
        unlink(s->path); /* empty: nothing lost */
        return rc;
    }
    s->size = 0;
    s->opened_ns = mono_ns();
    s->host->log(s->host, AERO_LOG_INFO, "sink-file: writing %s", s->path);
    return 0;
}

static void close_file(struct sink_file *s)
{
    if (s->fd >= 0)
        close(s->fd); /* data went out with write/fdatasync: nothing to learn */
    s->fd = -1;
}

static void rotate(struct sink_file *s)
{
    close_file(s);
    metric_add(s, s->m_rotations, 1);
}

static int interval_due(const struct sink_file *s)
{
    return s->rotate_interval_s > 0 &&
           mono_ns() - s->opened_ns >= s->rotate_interval_s * 1000000000;
}

/* Picks the file the batch goes to (rotating first if it is too old, or
 * would grow past rotate_bytes) and opens it if needed: 0 or -errno. */
static int prepare_file(struct sink_file *s, size_t batch_bytes)
{
    if (s->fd >= 0 && interval_due(s))
        rotate(s);
    if (s->fd >= 0 && s->rotate_bytes > 0 && s->size > 0 &&
        s->size + batch_bytes > (uint64_t)s->rotate_bytes)
        rotate(s);
    return s->fd >= 0 ? 0 : open_file(s);
}

/* All of buf[0..len) to fd, through short writes and EINTR: 0 or -errno. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/*
 * A batch failed after `start` bytes of the file were good: cut whatever
 * part of the batch reached the file so no half line stays, and keep the
 * file for the next batch. A failed fdatasync leaves the file's state
 * unknown, and a failed cut leaves a torn line: start a new file then.
 */
static void undo_batch(struct sink_file *s, uint64_t start, int synced_failed)
{
    if (s->fd < 0)
        return;
    if (ftruncate(s->fd, (off_t)start) != 0) {
        s->host->log(s->host, AERO_LOG_ERROR, "sink-file: %s: cannot cut "
                     "a failed batch (%s): it may end with a partial line",
                     s->path, strerror(errno));
        synced_failed = 1;
    }
    s->size = start;
    if (synced_failed)
        close_file(s);
}

/* ---------------------------------------------------------------- config */

/* Reads the config into s through the host's typed readers; reports every
 * problem through config_error. 0 or -EINVAL. */
static int read_config(const aero_host *h, struct sink_file *s)
{
    int bad = 0, fsync_mode = 0;

    s->dir = config_check_str(h, "path");
    s->prefix = config_check_str(h, "prefix");
    bad |= h->config_int(h, "rotate_bytes", 0, INT64_MAX, &s->rotate_bytes) != 0;
    bad |= h->config_int(h, "rotate_interval_s", 0, INT32_MAX, &s->rotate_interval_s) != 0;
    bad |= h->config_enum(h, "fsync", "none|batch", &fsync_mode) != 0;
    s->fsync_batch = fsync_mode == 1;
    if (!*s->dir)
        bad |= h->config_error(h, "path", "must not be empty") != 0;
    if (!*s->prefix)
        bad |= h->config_error(h, "prefix", "must not be empty") != 0;
    else if (strchr(s->prefix, '/'))
        bad |= h->config_error(h, "prefix", "\"%s\" must not contain '/'", s->prefix) != 0;
    return bad ? -EINVAL : 0;
}

/*
 * Could open_file() create dir (mkdir -p) and a file in it now? Looks
 * only: the deepest existing directory on the way must be writable and
 * searchable, and nothing on the way may be a non-directory. 0, or -errno
 * with the path at fault in at[].
 */
static int dir_usable(const char *dir, char *at, size_t atlen)
{
    char tmp[PATH_MAX];
    struct stat st;
    size_t len = strlen(dir);

    if (len >= sizeof(tmp) || atlen < sizeof(tmp)) {
        at[0] = '\0';
        return -ENAMETOOLONG;
    }
    memcpy(tmp, dir, len + 1);
    for (;;) {
        while (len > 1 && tmp[len - 1] == '/')
            tmp[--len] = '\0';
        memcpy(at, tmp, len + 1);
        if (stat(tmp, &st) == 0) {
            if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
            return access(tmp, W_OK | X_OK) == 0 ? 0 : -errno;
        }
        /* ENOTDIR: a file on the way; go up to name it. */
        if ((errno != ENOENT && errno != ENOTDIR) || strcmp(tmp, ".") == 0 ||
            strcmp(tmp, "/") == 0)
            return -errno;
        char *slash = strrchr(tmp, '/');
        if (slash == NULL) {
            snprintf(tmp, sizeof(tmp), ".");
            len = 1;
        } else {
            len = slash == tmp ? 1 : (size_t)(slash - tmp);
            tmp[len] = '\0';
        }
    }
}

/* The check slot: the config, then whether the directory can be made and
 * written. Creates nothing. */
static int file_check(const aero_host *h)
{
    struct sink_file s = {.host = h};
    char at[PATH_MAX];

    if (!config_check_host(h, "sink-file"))
        return -ENOTSUP;
    int rc = read_config(h, &s);
    if (*s.dir) {
        int err = dir_usable(s.dir, at, sizeof(at));
        if (err != 0)
            rc = h->config_error(h, "path", "cannot create or write \"%s\" (%s: %s)",
                                 s.dir, at, strerror(-err));
    }
    return rc;
}

/* -------------------------------------------------------------- vtable */

static int file_create(const aero_host *host, void **instance)
{
    struct sink_file *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        host->log(host, AERO_LOG_ERROR, "sink-file: out of memory");
        return -ENOMEM;
    }
    *instance = s;
    s->host = host;
    s->fd = -1;
    s->warn = WARN_LIMIT_INIT;
    /* check() ran first and also tried the path; here only the values
     * matter: a path that fails now is retried, not fatal (see top). */
    if (!config_check_host(host, "sink-file"))
        return -ENOTSUP;
    int rc = read_config(host, s);
    if (rc != 0)
        return rc;

    if (envelope_lines_init(&s->lines, INITIAL_BUF) != 0) {
        host->log(host, AERO_LOG_ERROR, "sink-file: out of memory");
        return -ENOMEM; /* destroy() frees the half-built instance */
    }

    if (AERO_HAS(host, aero_host, metric_add) && host->metric_register) {
        s->m_errors = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_file_write_errors_total",
            "Batches that failed to reach the file (all frames retried)");
        s->m_rotations = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_file_rotations_total",
            "Files closed because of rotate_bytes or rotate_interval_s");
        s->m_bytes = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_file_written_bytes_total",
            "Bytes of JSON lines written and kept");
    }

    /* Open now so a bad path shows at start-up; it is not fatal (the disk
     * may come back): batches retry until a file opens. */
    rc = open_file(s);
    if (rc != 0)
        host->log(host, AERO_LOG_WARN, "sink-file: cannot open a file in %s "
                  "yet: %s; frames will be retried", s->dir, strerror(-rc));
    return 0;
}

static void file_write_batch(void *instance, const aero_frame *const *frames,
                             size_t n, aero_result *results)
{
    struct sink_file *s = instance;
    size_t used = 0;
    uint64_t start = 0;
    int opened = 0, rc = 0, sync_failed = 0;

    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if ((rc = envelope_lines_append(&s->lines, s->host, frames[i], &used)) != 0)
            goto fail;
        if (used < CHUNK_BYTES && i + 1 < n)
            continue;
        if (!opened) {
            if ((rc = prepare_file(s, used)) != 0)
                goto fail;
            opened = 1;
            start = s->size;
        }
        if ((rc = write_all(s->fd, s->lines.buf, used)) != 0)
            goto fail;
        s->size += used;
        used = 0;
    }
    if (s->fsync_batch && fdatasync(s->fd) != 0) {
        rc = -errno;
        sync_failed = 1;
        goto fail;
    }
    metric_add(s, s->m_bytes, s->size - start);
    for (size_t i = 0; i < n; i++)
        results[i] = AERO_OK;
    if (s->rotate_bytes > 0 && s->size >= (uint64_t)s->rotate_bytes)
        rotate(s); /* full: the next batch starts a new file */
    return;
fail:
    if (opened)
        undo_batch(s, start, sync_failed);
    metric_add(s, s->m_errors, 1);
    warn_limited(s, "%s: %s; %zu frame(s) to retry",
                 opened ? s->path : s->dir, strerror(-rc), n);
    for (size_t i = 0; i < n; i++)
        results[i] = AERO_RETRY;
}

static int file_flush(void *instance)
{
    struct sink_file *s = instance;
    if (s->fd >= 0 && fdatasync(s->fd) != 0)
        return -errno;
    return 0;
}

/* SIGHUP: the old file may have been moved away; later lines go to a new
 * file, opened by the next batch (so no empty file appears). */
static int file_reopen(void *instance)
{
    struct sink_file *s = instance;
    close_file(s);
    return 0;
}

static void file_destroy(void *instance)
{
    struct sink_file *s = instance;
    if (s == NULL)
        return;
    close_file(s);
    envelope_lines_free(&s->lines);
    free(s);
}

static const aero_sink_vtable file_vtable = {
    .size = sizeof(aero_sink_vtable),
    AERO_KEYS(file_keys),
    .create = file_create,
    .write_batch = file_write_batch,
    .flush = file_flush,
    .reopen = file_reopen,
    .destroy = file_destroy,
    .check = file_check,
};

static const aero_plugin_descriptor file_descriptor = {
    AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_SINK),
    .name = "sink-file",
    .description = "JSON lines in rotated files, optionally fsynced per batch",
    .vtable = &file_vtable,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void)
{
    return &file_descriptor;
}
