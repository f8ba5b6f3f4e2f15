/*
 * test_log.c - the logger (core/log.c): exact JSON and text lines on
 * stderr (captured through a pipe), level filter, escaping of any bytes,
 * truncation, and whole lines from many threads at once. JSON validity is
 * checked by an independent parser (python3's json module).
 */
#include "log.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct capture {
    int saved_stderr;
    int read_fd;
};

static void capture_start(struct capture *c)
{
    int p[2];

    cr_assert_eq(pipe(p), 0);
    c->saved_stderr = dup(STDERR_FILENO);
    cr_assert(c->saved_stderr >= 0);
    cr_assert(dup2(p[1], STDERR_FILENO) >= 0);
    close(p[1]);
    c->read_fd = p[0];
}

/* Restore stderr, then read everything the pipe holds (up to EOF). */
static char *read_all(int fd, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    ssize_t r;

    cr_assert_not_null(buf);
    while ((r = read(fd, buf + n, cap - n)) > 0) {
        n += (size_t)r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            cr_assert_not_null(buf);
        }
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static char *capture_end(struct capture *c)
{
    char *out;

    cr_assert(dup2(c->saved_stderr, STDERR_FILENO) >= 0);
    close(c->saved_stderr);
    out = read_all(c->read_fd, NULL);
    close(c->read_fd);
    return out;
}

/* Does s start with a timestamp like 2026-11-27T16:57:26.123456Z with
 * `frac` fraction digits? Returns its length or 0. */
static size_t ts_len(const char *s, int frac)
{
    char pattern[64];
    size_t n;

    snprintf(pattern, sizeof pattern, "dddd-dd-ddTdd:dd:dd.%.*sZ", frac, "dddddddd");
    n = strlen(pattern);
    for (size_t i = 0; i < n; i++) {
        if (pattern[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pattern[i])
            return 0;
    }
    return n;
}

/* Run python3 over `lines`: every line must be a JSON object whose first key
 * is "ts"; prints the chosen field of each (as JSON, ASCII only), one per
 * line, or "count N" with `count_only`. The input must be valid UTF-8. */
static char *python_check(const char *lines, const char *field, int count_only)
{
    char path[] = "/tmp/test_log_XXXXXX", cmd[1024];
    int fd = mkstemp(path);
    FILE *p;
    char *out;

    /* Debian's python3 (a pyenv shim on PATH may take seconds to start) */
    const char *python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";

    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, lines, strlen(lines)), (ssize_t)strlen(lines));
    close(fd);
    snprintf(cmd, sizeof cmd,
             "%s -c '\n"
             "import json, sys\n"
             "data = sys.stdin.buffer.read().decode(\"utf-8\")\n"
             "lines = data.split(\"\\n\")\n"
             "assert lines[-1] == \"\", \"no final newline\"\n"
             "for l in lines[:-1]:\n"
             "    o = json.loads(l)\n"
             "    assert list(o)[0] == \"ts\", l\n"
             "    if not %d: print(json.dumps(o.get(\"%s\")))\n"
             "if %d: print(\"count\", len(lines) - 1)\n"
             "' < %s 2>&1",
             python, count_only, field, count_only, path);
    p = popen(cmd, "r");
    cr_assert_not_null(p);
    out = read_all(fileno(p), NULL);
    cr_expect_eq(pclose(p), 0, "python3 rejected the log: %s", out);
    unlink(path);
    return out;
}

Test(log, json_line_exact)
{
    struct capture c;
    char *out;
    size_t n;

    log_configure(AERO_LOG_INFO, LOG_FORMAT_JSON);
    capture_start(&c);
    log_msg(AERO_LOG_INFO, "core", "hello %d", 42);
    out = capture_end(&c);
    cr_assert_eq(strncmp(out, "{\"ts\":\"", 7), 0, "%s", out);
    n = ts_len(out + 7, 6);
    cr_assert_neq(n, 0, "timestamp in %s", out);
    cr_expect_str_eq(out + 7 + n, "\",\"level\":\"info\",\"component\":\"core\",\"msg\":\"hello 42\"}\n");
    free(python_check(out, "msg", 0));
    free(out);
}

Test(log, json_levels_and_null_component)
{
    struct capture c;
    char *out, *fields;

    log_configure(AERO_LOG_DEBUG, LOG_FORMAT_JSON);
    capture_start(&c);
    log_msg(AERO_LOG_DEBUG, NULL, "d");
    log_msg(AERO_LOG_WARN, "sink:archive", "w");
    log_msg(AERO_LOG_ERROR, "route:route-redis", "e");
    log_msg((aero_log_level)9, "core", "odd level");
    out = capture_end(&c);
    fields = python_check(out, "level", 0);
    cr_expect_str_eq(fields, "\"debug\"\n\"warn\"\n\"error\"\n\"error\"\n");
    free(fields);
    fields = python_check(out, "component", 0);
    cr_expect_str_eq(fields, "null\n\"sink:archive\"\n\"route:route-redis\"\n\"core\"\n");
    free(fields);
    free(out);
}

Test(log, text_line_exact)
{
    struct capture c;
    char *out, *line;
    size_t n;

    log_configure(AERO_LOG_INFO, LOG_FORMAT_TEXT);
    capture_start(&c);
    log_msg(AERO_LOG_INFO, "core", "listening on %s", "0.0.0.0:50051");
    log_msg(AERO_LOG_ERROR, "sink:archive", "disk full");
    log_msg(AERO_LOG_WARN, NULL, "no component");
    out = capture_end(&c);
    line = out;
    n = ts_len(line, 3);
    cr_assert_neq(n, 0, "%s", out);
    cr_expect_eq(strncmp(line + n, " INFO  core: listening on 0.0.0.0:50051\n", 40), 0, "%s", out);
    line = strchr(line, '\n') + 1;
    n = ts_len(line, 3);
    cr_assert_neq(n, 0, "%s", out);
    cr_expect_eq(strncmp(line + n, " ERROR sink:archive: disk full\n", 31), 0, "%s", out);
    line = strchr(line, '\n') + 1;
    n = ts_len(line, 3);
    cr_assert_neq(n, 0, "%s", out);
    cr_expect_str_eq(line + n, " WARN  no component\n");
    free(out);
}

Test(log, level_filter)
{
    struct capture c;
    char *out;

    log_configure(AERO_LOG_WARN, LOG_FORMAT_JSON);
    cr_expect_not(log_enabled(AERO_LOG_DEBUG));
    cr_expect_not(log_enabled(AERO_LOG_INFO));
    cr_expect(log_enabled(AERO_LOG_WARN));
    cr_expect(log_enabled(AERO_LOG_ERROR));
    capture_start(&c);
    log_info("not shown");
    log_debug("not shown");
    log_warn("shown %s", "w");
    log_error("shown e");
    out = capture_end(&c);
    cr_expect_null(strstr(out, "not shown"), "%s", out);
    cr_expect_not_null(strstr(out, "\"level\":\"warn\",\"component\":\"core\",\"msg\":\"shown w\""), "%s", out);
    cr_expect_not_null(strstr(out, "\"level\":\"error\",\"component\":\"core\",\"msg\":\"shown e\""), "%s", out);
    free(out);
}

Test(log, json_escapes_any_bytes)
{
    struct capture c;
    char *out, *msg;

    log_configure(AERO_LOG_INFO, LOG_FORMAT_JSON);
    capture_start(&c);
    /* quote, backslash, newline, tab, control byte, invalid byte, valid
     * 2-byte UTF-8, overlong encoding, surrogate, DEL */
    log_msg(AERO_LOG_INFO, "c\"x", "q\"b\\s\nt\tc\x01x\xffy\xc3\xa9z\xc0\xaf|\xed\xa0\x80|\x7f");
    out = capture_end(&c);
    cr_expect_neq(strstr(out, "\"msg\":\"q\\\"b\\\\s\\nt\\tc\\u0001x\\ufffdy\xc3\xa9z\\ufffd\\ufffd|"
                              "\\ufffd\\ufffd\\ufffd|\\u007f\"}\n"),
                  NULL, "%s", out);
    msg = python_check(out, "msg", 0);
    cr_expect_str_eq(msg, "\"q\\\"b\\\\s\\nt\\tc\\u0001x\\ufffdy\\u00e9z\\ufffd\\ufffd|"
                          "\\ufffd\\ufffd\\ufffd|\\u007f\"\n");
    free(msg);
    msg = python_check(out, "component", 0);
    cr_expect_str_eq(msg, "\"c\\\"x\"\n");
    free(msg);
    free(out);
}

Test(log, text_stays_one_line)
{
    struct capture c;
    char *out;

    log_configure(AERO_LOG_INFO, LOG_FORMAT_TEXT);
    capture_start(&c);
    log_msg(AERO_LOG_INFO, "core", "a\nb\r\x1b[31m\xff\"\\");
    out = capture_end(&c);
    cr_expect_neq(strstr(out, " INFO  core: a\\nb\\r\\x1b[31m\\xff\"\\\n"), NULL, "%s", out);
    cr_expect_eq(strchr(out, '\n'), out + strlen(out) - 1, "one line: %s", out);
    free(out);
}

Test(log, long_message_truncated_to_one_pipe_write)
{
    struct capture c;
    char *out, *msg, big[10000];
    size_t n;

    /* two-byte characters, so a cut in the middle of one would show */
    for (size_t i = 0; i + 2 < sizeof big; i += 2)
        memcpy(big + i, "\xc3\xa9", 2);
    big[sizeof big - 2] = 'x';
    big[sizeof big - 1] = '\0';
    log_configure(AERO_LOG_INFO, LOG_FORMAT_JSON);
    capture_start(&c);
    log_msg(AERO_LOG_INFO, "core", "%s", big);
    log_msg(AERO_LOG_INFO, "core", "after");
    out = capture_end(&c);
    n = (size_t)(strchr(out, '\n') - out) + 1;
    cr_expect_leq(n, 4096);
    cr_expect_gt(n, 4000);
    cr_expect_eq(strncmp(out + n - 6, "...\"}\n", 6), 0, "%.*s", 20, out + n - 20);
    msg = python_check(out, "msg", 0);
    cr_expect_neq(strstr(msg, "\\u00e9\\u00e9...\"\n\"after\"\n"), NULL, "%s", msg + strlen(msg) - 40);
    free(msg);
    free(out);

    log_configure(AERO_LOG_INFO, LOG_FORMAT_TEXT);
    capture_start(&c);
    log_msg(AERO_LOG_INFO, "core", "%s", big);
    out = capture_end(&c);
    n = strlen(out);
    cr_expect_leq(n, 4096);
    cr_expect_eq(strcmp(out + n - 4, "...\n"), 0);
    free(out);
}

Test(log, errno_preserved)
{
    struct capture c;

    log_configure(AERO_LOG_INFO, LOG_FORMAT_JSON);
    capture_start(&c);
    errno = EAGAIN;
    log_msg(AERO_LOG_INFO, "core", "x");
    cr_expect_eq(errno, EAGAIN);
    free(capture_end(&c));
}

#define THREADS 4
#define LINES_PER_THREAD 2000

static void *log_lines(void *arg)
{
    long t = (long)arg;
    char pad[300];

    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < LINES_PER_THREAD; i++)
        log_msg(AERO_LOG_INFO, "core", "t%ld n%d %s", t, i, pad);
    return NULL;
}

struct drain {
    int fd;
    char *out;
    size_t len;
};

static void *drain_pipe(void *arg)
{
    struct drain *d = arg;
    d->out = read_all(d->fd, &d->len);
    return NULL;
}

Test(log, threads_never_interleave_lines)
{
    pthread_t writers[THREADS], reader;
    struct capture c;
    struct drain d;
    char *result, expect[32];
    int seen[THREADS] = {0};

    log_configure(AERO_LOG_INFO, LOG_FORMAT_JSON);
    capture_start(&c);
    d.fd = c.read_fd;
    cr_assert_eq(pthread_create(&reader, NULL, drain_pipe, &d), 0);
    for (long t = 0; t < THREADS; t++)
        cr_assert_eq(pthread_create(&writers[t], NULL, log_lines, (void *)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(writers[t], NULL);
    cr_assert(dup2(c.saved_stderr, STDERR_FILENO) >= 0); /* last writer gone: EOF */
    close(c.saved_stderr);
    pthread_join(reader, NULL);
    close(c.read_fd);

    result = python_check(d.out, "msg", 1);
    snprintf(expect, sizeof expect, "count %d\n", THREADS * LINES_PER_THREAD);
    cr_expect_str_eq(result, expect);
    free(result);
    /* each thread's lines arrive whole and in its own order */
    for (char *line = d.out; *line; line = strchr(line, '\n') + 1) {
        int t, i;
        char *m = strstr(line, "\"msg\":\"t");
        cr_assert_not_null(m);
        cr_assert_eq(sscanf(m, "\"msg\":\"t%d n%d ", &t, &i), 2);
        cr_assert(t >= 0 && t < THREADS);
        cr_assert_eq(i, seen[t], "thread %d: line %d after %d", t, i, seen[t]);
        seen[t]++;
    }
    for (int t = 0; t < THREADS; t++)
        cr_expect_eq(seen[t], LINES_PER_THREAD);
    free(d.out);
}

/* Under systemd (JOURNAL_STREAM names the stream stderr is) each line
 * starts with its syslog priority, so `journalctl -p err` finds errors;
 * anywhere else the line is untouched. */
Test(log, journald_priority_prefix_only_on_the_journal_stream)
{
    struct capture c;
    capture_start(&c);
    struct stat st;
    cr_assert_eq(fstat(STDERR_FILENO, &st), 0);
    char js[64];
    snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", js, 1);
    log_configure(AERO_LOG_DEBUG, LOG_FORMAT_TEXT);
    log_msg(AERO_LOG_ERROR, "core", "e");
    log_msg(AERO_LOG_WARN, "core", "w");
    log_msg(AERO_LOG_INFO, "core", "i");
    log_msg(AERO_LOG_DEBUG, "core", "d");
    setenv("JOURNAL_STREAM", "1:2", 1); /* another stream: not ours */
    log_configure(AERO_LOG_DEBUG, LOG_FORMAT_TEXT);
    log_msg(AERO_LOG_ERROR, "core", "plain");
    unsetenv("JOURNAL_STREAM");
    log_configure(AERO_LOG_INFO, LOG_FORMAT_JSON);
    char *out = capture_end(&c);
    const char *want[] = {"<3>", "<4>", "<6>", "<7>"};
    const char *line = out;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(strncmp(line, want[i], 3), 0, "line %d: %s", i, line);
        line = strchr(line, '\n') + 1;
    }
    cr_assert_neq(line[0], '<', "a prefix without the journal: %s", line);
    cr_assert_not_null(strstr(line, "plain"));
    free(out);
}
