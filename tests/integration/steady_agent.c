/*
 * steady_agent.c - see steady_agent.h. The agent's thread never asserts
 * (criterion asserts belong to the test's thread): it records the first
 * problem and how many acks came, and steady_agent_stop reports them.
 */
#include "steady_agent.h"

#include "harness.h"

#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#define WINDOW 16
#define LAT_MAX (1 << 22) /* ack latencies kept: 70 minutes at 1,000 acks/s */
#define ACK_TIMEOUT_MS 5000 /* a relay that stalls this long for us has failed */

struct steady_agent {
    char id[64];
    struct rc_channel *ch;
    struct rc_stream *s;
    pthread_t thread;
    atomic_bool stop;
    atomic_long acked;
    atomic_llong last_ack_us, max_gap_us; /* longest wait between two acks */
    int window;
    long long sent_us[WINDOW]; /* by seq % WINDOW: when it was sent (thread only) */
    bool got[WINDOW];          /* by seq % WINDOW: acked, ahead of next_ack (thread only) */
    uint32_t *lat_us;          /* send-to-ack, µs: lat_n of them since the last reset */
    atomic_long lat_n;
    char problem[512]; /* first one; written by the thread, read after join */
    struct rc_status final;
};

static void note(struct steady_agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct steady_agent *a, const char *fmt, ...)
{
    va_list ap;
    if (a->problem[0])
        return;
    va_start(ap, fmt);
    vsnprintf(a->problem, sizeof(a->problem), fmt, ap);
    va_end(ap);
}

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Read one ack: OK, for a frame in flight (seq in [next_ack, next_seq))
 * and not acked before. The agent matches acks by seq (SPEC section 2):
 * a frame whose sinks finish first may be acked before an earlier one
 * (across a sink reload, the earlier frame's old sinks drain later).
 * next_ack moves past every seq acked in a row. false on any problem.
 */
static bool take_ack(struct steady_agent *a, uint64_t *next_ack, uint64_t next_seq)
{
    struct rc_ack ack;
    int r = rc_stream_recv_ack(a->s, &ack, ACK_TIMEOUT_MS);
    if (r != 1) {
        note(a, "no ack for seq %llu (recv returned %d)", (unsigned long long)*next_ack, r);
        return false;
    }
    if (ack.status != RC_ACK_OK || ack.seq < *next_ack || ack.seq >= next_seq ||
        a->got[ack.seq % WINDOW]) {
        note(a, "seq %llu acked with status %d (expected an OK ack for %llu..%llu, once)",
             (unsigned long long)ack.seq, ack.status, (unsigned long long)*next_ack,
             (unsigned long long)next_seq - 1);
        return false;
    }
    long long now = now_us(), last = atomic_exchange(&a->last_ack_us, now);
    long i = atomic_fetch_add(&a->lat_n, 1);
    if (i >= 0 && i < LAT_MAX)
        a->lat_us[i] = (uint32_t)(now - a->sent_us[ack.seq % WINDOW]);
    a->got[ack.seq % WINDOW] = true;
    while (*next_ack < next_seq && a->got[*next_ack % WINDOW]) {
        a->got[*next_ack % WINDOW] = false;
        (*next_ack)++;
    }
    if (last && now - last > atomic_load(&a->max_gap_us))
        atomic_store(&a->max_gap_us, now - last);
    atomic_fetch_add(&a->acked, 1);
    return true;
}

static void *agent_main(void *arg)
{
    struct steady_agent *a = arg;
    uint64_t next_seq = 1, next_ack = 1;
    bool ok = true;
    while (ok && !atomic_load(&a->stop)) {
        while (ok && next_seq - next_ack < (uint64_t)a->window) {
            a->sent_us[next_seq % WINDOW] = now_us();
            int r = rc_stream_send_frame(a->s, harness_frame(a->id, next_seq), ACK_TIMEOUT_MS);
            if (r != 0)
                note(a, "send of seq %llu failed (%d)", (unsigned long long)next_seq, r);
            ok = r == 0;
            next_seq += ok;
        }
        ok = ok && take_ack(a, &next_ack, next_seq);
    }
    if (ok && rc_stream_close_send(a->s, ACK_TIMEOUT_MS) != 0)
        note(a, "half-close failed after %llu frames", (unsigned long long)next_seq - 1);
    while (ok && next_ack < next_seq)
        ok = take_ack(a, &next_ack, next_seq);
    rc_stream_finish(a->s, &a->final, 10000);
    return NULL;
}

struct steady_agent *steady_agent_start(const char *target, const char *agent_id)
{
    return steady_agent_start_window(target, agent_id, WINDOW);
}

struct steady_agent *steady_agent_start_window(const char *target, const char *agent_id,
                                               int window)
{
    return steady_agent_start_opts(target, NULL, agent_id, window);
}

struct steady_agent *steady_agent_start_opts(const char *target, const struct rc_opts *opts,
                                             const char *agent_id, int window)
{
    struct steady_agent *a = calloc(1, sizeof(*a));
    struct rc_status st;
    cr_assert_not_null(a);
    cr_assert(window >= 1 && window <= WINDOW, "window %d", window);
    a->window = window;
    a->lat_us = malloc(LAT_MAX * sizeof(*a->lat_us));
    cr_assert_not_null(a->lat_us);
    snprintf(a->id, sizeof(a->id), "%s", agent_id);
    if (opts) {
        a->ch = rc_connect_opts(target, opts, &st);
        cr_assert_not_null(a->ch, "channel to %s: %s", target, st.message);
    } else {
        a->ch = rc_connect(target);
    }
    harness_register(a->ch, a->id, NULL, 0);
    a->s = rc_stream_open(a->ch, a->id, NULL, 0, &st);
    cr_assert_not_null(a->s, "%s", st.message);
    atomic_init(&a->stop, false);
    atomic_init(&a->acked, 0);
    atomic_init(&a->lat_n, 0);
    cr_assert_eq(pthread_create(&a->thread, NULL, agent_main, a), 0);
    steady_agent_expect_progress(a, 1, 10000);
    return a;
}

long steady_agent_acked(struct steady_agent *a) { return atomic_load(&a->acked); }

long long steady_agent_max_gap_us(struct steady_agent *a, bool reset)
{
    return reset ? atomic_exchange(&a->max_gap_us, 0) : atomic_load(&a->max_gap_us);
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

long long steady_agent_p99_us(struct steady_agent *a, bool reset)
{
    long n = atomic_load(&a->lat_n);
    if (n > LAT_MAX)
        n = LAT_MAX;
    long long p99 = -1;
    uint32_t *copy = n > 0 ? malloc((size_t)n * sizeof(*copy)) : NULL;
    if (copy) {
        memcpy(copy, a->lat_us, (size_t)n * sizeof(*copy));
        qsort(copy, (size_t)n, sizeof(*copy), cmp_u32);
        p99 = copy[(size_t)n * 99 / 100];
        free(copy);
    }
    if (reset)
        atomic_store(&a->lat_n, 0);
    return p99;
}

struct progress {
    struct steady_agent *a;
    long target;
};

static bool reached(void *arg)
{
    struct progress *p = arg;
    return steady_agent_acked(p->a) >= p->target;
}

bool steady_agent_wait_progress(struct steady_agent *a, long more, int timeout_ms)
{
    struct progress p = {a, steady_agent_acked(a) + more};
    return harness_wait_for(reached, &p, timeout_ms);
}

void steady_agent_expect_progress(struct steady_agent *a, long more, int timeout_ms)
{
    struct progress p = {a, steady_agent_acked(a) + more};
    if (harness_wait_for(reached, &p, timeout_ms))
        return;
    /* What its thread saw, if it stopped (written before acked stops
     * moving; a racy read is good enough for a failure message). */
    char problem[sizeof(a->problem)];
    memcpy(problem, a->problem, sizeof(problem));
    problem[sizeof(problem) - 1] = '\0';
    cr_assert_fail("steady agent %s stalled at %ld acks (wanted %ld)%s%s", a->id,
                   steady_agent_acked(a), p.target, problem[0] ? ": " : "", problem);
}

/* Stop and free a; what went wrong (or "") in problem; how many it sent. */
static long finish(struct steady_agent *a, char *problem, size_t cap)
{
    atomic_store(&a->stop, true);
    pthread_join(a->thread, NULL);
    rc_stream_free(a->s);
    rc_close(a->ch);
    free(a->lat_us);
    long acked = steady_agent_acked(a);
    if (a->problem[0])
        snprintf(problem, cap, "%s", a->problem);
    else if (acked == 0)
        snprintf(problem, cap, "no ack at all");
    else if (a->final.code != 0)
        snprintf(problem, cap, "its stream ended %s %s", rc_status_code_name(a->final.code),
                 a->final.message);
    else
        snprintf(problem, cap, "%s", "");
    free(a);
    return acked;
}

bool steady_agent_finish(struct steady_agent *a, char *problem, size_t cap)
{
    finish(a, problem, cap);
    return problem[0] == '\0';
}

long steady_agent_stop(struct steady_agent *a)
{
    char problem[600];
    long acked = finish(a, problem, sizeof(problem));
    cr_assert_eq(problem[0], '\0', "steady agent: %s", problem);
    return acked;
}

void rss_measurable(struct relay_proc *r)
{
    harness_setenv(r, "ASAN_OPTIONS", "quarantine_size_mb=4");
}

double relay_metric(int http_port, const char *series)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "metrics port %d", http_port);
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: relay\r\n\r\n";
    cr_assert_eq(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    size_t cap = 1 << 20, got = 0;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    ssize_t n;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (got < cap - 1 && poll(&p, 1, 10000) > 0 && (n = read(fd, buf + got, cap - 1 - got)) > 0)
        got += (size_t)n;
    close(fd);
    buf[got] = '\0';
    cr_assert(strncmp(buf, "HTTP/1.", 7) == 0 && strstr(buf, " 200 "), "scrape: %.100s", buf);
    double v = -1;
    size_t len = strlen(series);
    char *body = strstr(buf, "\r\n\r\n");
    for (char *line = body ? body + 4 : NULL; line && *line;) {
        if (strncmp(line, series, len) == 0 && line[len] == ' ') {
            v = strtod(line + len + 1, NULL);
            break;
        }
        char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;
    }
    free(buf);
    return v;
}

struct metric_at_least {
    int port;
    const char *series;
    double want;
};

static bool metric_reached(void *arg)
{
    struct metric_at_least *m = arg;
    return relay_metric(m->port, m->series) >= m->want;
}

bool relay_metric_reaches(int http_port, const char *series, double want, int timeout_ms)
{
    struct metric_at_least m = {http_port, series, want};
    return harness_wait_for(metric_reached, &m, timeout_ms);
}

/* One "<field>:   <n> kB" line of /proc/<pid>/status. */
static long proc_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256], fmt[64];
    long kb = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    snprintf(fmt, sizeof(fmt), "%s: %%ld kB", field);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot read %s", path);
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, fmt, &kb) == 1)
            break;
    fclose(f);
    cr_assert_gt(kb, 0, "no %s in %s", field, path);
    return kb;
}

long proc_rss_kb(pid_t pid)
{
    return proc_status_kb(pid, "VmRSS");
}

long proc_peak_rss_kb(pid_t pid)
{
    return proc_status_kb(pid, "VmHWM");
}
