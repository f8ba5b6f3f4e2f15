/*
 * test_e2e_attacks.c - the hostile-traffic attacks of docs/security.md, one
 * test each, against the relay binary on loopback, bounded in count and
 * time. Throughout each attack a well-behaved agent already streaming must
 * keep getting its acks; after it, the relay is still up, its RSS (from
 * /proc) under a bound, and a new agent connects and streams at once.
 */
#include "h2_raw.h"
#include "harness.h"
#include "http_client.h"
#include "steady_agent.h"
#include "test_server.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct relay_proc relay;
static struct rc_channel *ch;
static struct steady_agent *steady;
/* The relay's [log] keys: debug for the tests' log assertions; the soak
 * runs at info, as in production, so logging does not weigh on figures. */
static const char *log_keys = "level = debug\nformat = text";

/* The relay with [http] on and `extra` in [relay]; wrapper may be NULL. */
static void start(const char *wrapper, const char *extra)
{
    harness_prepare(&relay);
    rss_measurable(&relay);
    relay.http = true;
    relay.wrapper = wrapper;
    relay.log_keys = log_keys;
    ch = harness_start(&relay, extra, "[sink:archive]\nplugin = sink-file\npath = %DIR%/data\n");
    steady = steady_agent_start(relay.target, "drone-steady");
}

static void stop(void)
{
    /* The relay is stopped whatever the agent saw: an assertion here
     * would leave it running after the test. */
    char problem[600] = "";
    bool ok = !steady || steady_agent_finish(steady, problem, sizeof(problem));
    steady = NULL;
    harness_finish(&relay, &ch);
    cr_assert(ok, "steady agent: %s", problem);
}

TestSuite(attacks, .fini = stop, .timeout = 60);

/* After an attack: a new agent registers, streams and gets acks within
 * `within_ms`; the steady agent still progresses; the relay still runs. */
static void expect_served(int within_ms)
{
    int64_t t0 = harness_now_ms();
    struct rc_channel *c = rc_connect(relay.target);
    struct rc_register_result res;
    struct rc_status st;
    int rc = -1;
    /* A refused connect puts a gRPC channel in reconnect backoff; retry on
     * fresh channels until the deadline. */
    while ((rc = rc_register(c, "drone-new", "test/1.0", "linux/amd64", &res, &st, 500)) != 0 &&
           harness_now_ms() - t0 < within_ms) {
        rc_close(c);
        c = rc_connect(relay.target);
    }
    cr_assert_eq(rc, 0, "no new agent registered within %d ms: %s", within_ms, st.message);
    struct rc_stream *s = rc_stream_open(c, "drone-new", NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    size_t counts[4];
    harness_stream_frames(s, "drone-new", 1, 10, counts, NULL, 0);
    cr_assert_eq(counts[RC_ACK_OK], 10);
    int64_t took = harness_now_ms() - t0;
    cr_assert_leq(took, within_ms, "a new agent took %lld ms to stream", (long long)took);
    struct rc_status fin;
    rc_stream_close_send(s, 5000);
    rc_stream_finish(s, &fin, 5000);
    rc_stream_free(s);
    rc_close(c);
    steady_agent_expect_progress(steady, 50, 5000);
    cr_assert_eq(kill(relay.pid, 0), 0, "the relay is gone");
}

struct readyz_wait {
    int want;
};

static bool readyz_is(void *arg)
{
    struct readyz_wait *w = arg;
    return http_get_status(relay.http_port, "/readyz", 200) == w->want;
}

static bool log_has(const char *needle)
{
    char *log = harness_read_file(relay.stderr_path, NULL);
    bool found = log && strstr(log, needle);
    free(log);
    return found;
}

static bool log_has_arg(void *needle)
{
    return log_has(needle);
}

static bool listener_failed(void *arg)
{
    (void)arg;
    return log_has("gRPC listener stopped accepting");
}

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_geq(fd, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * Idle TCP connections, sending nothing, until the relay runs out of file
 * descriptors (its limit lowered to 128 so that takes 200 connections, not
 * 20,000). gRPC 1.51's accept loop gives up on EMFILE for good; the relay
 * notices (gRPC's log line), answers /readyz 503, and starts a new
 * listener as soon as descriptors are free, keeping the open streams.
 */
Test(attacks, idle_connections_exhausting_fds_do_not_kill_the_listener)
{
    start("prlimit --nofile=128:128", "handshake_timeout_s = 2\n");
    enum { N = 200 };
    int fds[N], n = 0;
    for (int i = 0; i < N; i++)
        if ((fds[n] = tcp_connect(relay.port)) >= 0)
            n++;
    cr_assert_gt(n, 150, "only %d connections opened", n);
    cr_assert(harness_wait_for(listener_failed, NULL, 5000),
              "the relay never noticed its listener failing");
    /* While it cannot accept, it says so (when /readyz can be reached at
     * all: the HTTP server needs a descriptor too). */
    struct readyz_wait not_ready = {503};
    cr_assert(harness_wait_for(readyz_is, &not_ready, 5000), "/readyz never answered 503");
    steady_agent_expect_progress(steady, 50, 5000);
    long rss_kb = proc_rss_kb(relay.pid);

    for (int i = 0; i < n; i++)
        close(fds[i]);
    expect_served(1500);
    struct readyz_wait ready = {200};
    cr_assert(harness_wait_for(readyz_is, &ready, 1000), "/readyz stayed 503");
    cr_assert(log_has("gRPC listener accepting again"));
    cr_assert_geq(relay_metric(relay.http_port, "aero_relay_grpc_listener_failures_total"), 1);
    cr_assert_geq(relay_metric(relay.http_port, "aero_relay_grpc_listener_restarts_total"), 1);
    cr_assert_lt(rss_kb, 200 * 1024, "RSS %ld KiB", rss_kb);
}

#if defined(__SANITIZE_ADDRESS__)
/* ASan's allocator: malloc_trim does not apply; every call costs several
 * times more, so fewer streams keep the steady agent's stall under its 5 s. */
#define RSS_AFTER_KB (400 * 1024)
#define RESET_STREAMS 6000
#else
#define RSS_AFTER_KB (100 * 1024)
#define RESET_STREAMS 20000
#endif

struct rss_below {
    long kb;
};

static bool rss_is_below(void *arg)
{
    return proc_rss_kb(relay.pid) < ((struct rss_below *)arg)->kb;
}

/*
 * HTTP/2 rapid reset (CVE-2023-44487) on one connection: HEADERS then
 * RST_STREAM, 20,000 times (6,000 under ASan), as fast as the socket takes them. gRPC 1.51
 * makes a call of each; the relay closes the connection once it opens more
 * than 2,000 calls in a second, counts it, and gives the memory back.
 */
Test(attacks, rapid_reset_connection_is_closed_and_memory_returned)
{
    start(NULL, "");
    struct h2_raw *h = h2_raw_connect(relay.port, 65535);
    int64_t t0 = harness_now_ms();
    int sent = h2_raw_rapid_reset(h, 1, RESET_STREAMS, "/aeroarc.agent.v1.AgentGateway/TelemetryStream");
    cr_assert_gt(sent, 2000, "the relay closed after %d streams", sent);
    h2_raw_pump(h, 10000);
    cr_assert(h2_raw_closed(h), "the attacker's connection is still open after %lld ms",
              (long long)(harness_now_ms() - t0));
    h2_raw_close(h);
    steady_agent_expect_progress(steady, 50, 5000);
    expect_served(1000);
    cr_assert_geq(relay_metric(relay.http_port, "aero_relay_connections_closed_total{reason=\"call_flood\"}"), 1);
    struct rss_below below = {RSS_AFTER_KB};
    cr_assert(harness_wait_for(rss_is_below, &below, 15000), "RSS still %ld KiB",
              proc_rss_kb(relay.pid));
}

/*
 * Streams opened before ACKing SETTINGS: gRPC 1.51 does not apply
 * SETTINGS_MAX_CONCURRENT_STREAMS until the client ACKs, so one connection
 * can send thousands of calls, which gRPC queues without bound. The relay
 * refuses each (no agent header), and the guard closes a connection with
 * more than 2,000 refused in a second. As many streams as the rapid-reset
 * test sends, so the relay refuses more than 2,000 in some second however
 * fast this machine serves them (3,000 once fell across two seconds).
 */
Test(attacks, streams_opened_without_acking_settings_close_the_connection)
{
    start(NULL, "max_streams_per_connection = 100\n");
    struct h2_raw *h = h2_raw_connect(relay.port, 65535);
    int64_t t0 = harness_now_ms();
    int sent = h2_raw_stream_flood(h, 1, RESET_STREAMS,
                                   "/aeroarc.agent.v1.AgentGateway/TelemetryStream");
    cr_assert_gt(sent, 2000, "the relay closed after %d streams", sent);
    h2_raw_pump(h, 10000);
    cr_assert(h2_raw_closed(h), "the attacker's connection is still open after %lld ms",
              (long long)(harness_now_ms() - t0));
    h2_raw_close(h);
    steady_agent_expect_progress(steady, 50, 5000);
    expect_served(1000);
    cr_assert_geq(relay_metric(relay.http_port,
                               "aero_relay_connections_closed_total{reason=\"call_flood\"}"),
                  1);
}


/*
 * [relay] memory_limit_mb against a flood the call-flood guard lets
 * through (max_streams_per_connection raised so its bounds are 40,000):
 * rapid reset on one connection. The memory guard sees RSS pass its
 * high-water mark (75% of the limit), sheds the connection, and the
 * relay's peak RSS (VmHWM: no sampling can miss it) stays under the limit
 * plus MEM_TOLERANCE_PCT, while the steady agent keeps getting acks.
 * Measured at 128 MiB: peak 107 MB in 12 of 12 runs, the attacker cut
 * after 25,000 of its 40,000 streams; without the limit 278 MB and a 3 s
 * stall of the steady agent. The tolerance is for a loaded host delaying
 * the guard's thread (once 182 MB with an earlier, slower guard).
 */
#if defined(__SANITIZE_ADDRESS__)
/* ASan's shadow memory and redzones: a larger process at rest, and each
 * call costs several times more. Its allocator keeps what was freed, so
 * RSS does not come back under the low-water mark: the guard stays over
 * (busy connections refused, /readyz 503) and that is not checked. */
#define MEM_LIMIT_MB 256
#define MEM_STREAMS 20000
#define MEM_RSS_RETURNS false
#else
#define MEM_RSS_RETURNS true
#define MEM_LIMIT_MB 128
#define MEM_STREAMS 40000
#endif
/* The guard samples RSS every 25 ms; under ASan, with other tests sharing
 * the two cores, its thread may be scheduled late while the flood grows
 * (measured: 10% was exceeded once in 12 runs beside another attack test). */
#if defined(__SANITIZE_ADDRESS__)
#define MEM_TOLERANCE_PCT 25
#else
#define MEM_TOLERANCE_PCT 10
#endif

Test(attacks, memory_limit_sheds_a_flood_and_keeps_rss_under_the_bound)
{
    char extra[128];
    snprintf(extra, sizeof(extra), "memory_limit_mb = %d\nmax_streams_per_connection = 20000\n",
             MEM_LIMIT_MB);
    start(NULL, extra);
    cr_assert_lt(proc_rss_kb(relay.pid), MEM_LIMIT_MB * 1024 / 2, "RSS at rest %ld KiB",
                 proc_rss_kb(relay.pid));
    struct h2_raw *h = h2_raw_connect(relay.port, 65535);
    int64_t t0 = harness_now_ms();
    int sent = h2_raw_rapid_reset(h, 1, MEM_STREAMS, "/aeroarc.agent.v1.AgentGateway/TelemetryStream");
    h2_raw_pump(h, 10000);
    cr_assert(h2_raw_closed(h), "the attacker's connection is still open after %lld ms (%d streams)",
              (long long)(harness_now_ms() - t0), sent);
    h2_raw_close(h);
    long peak_kb = proc_peak_rss_kb(relay.pid);
    cr_log_info("memory limit %d MiB: attacker cut after %d of %d streams, peak RSS %ld KiB",
                MEM_LIMIT_MB, sent, MEM_STREAMS, peak_kb);
    cr_assert_leq(peak_kb, MEM_LIMIT_MB * 1024L * (100 + MEM_TOLERANCE_PCT) / 100,
                  "peak RSS %ld KiB over memory_limit_mb %d", peak_kb, MEM_LIMIT_MB);
    cr_assert_geq(relay_metric(relay.http_port,
                               "aero_relay_connections_closed_total{reason=\"memory_limit\"}"),
                  1);
    cr_assert(log_has("busy connections' new calls refused"));
    cr_assert(harness_wait_for(log_has_arg, "/readyz answers 503 (memory_limit_mb)", 2000),
              "/readyz never answered 503 for memory");
    steady_agent_expect_progress(steady, 50, 5000);
    if (MEM_RSS_RETURNS) {
        struct readyz_wait ready = {200};
        cr_assert(harness_wait_for(readyz_is, &ready, 5000), "/readyz stayed 503");
        cr_assert(log_has("all new calls accepted again"));
        cr_assert(harness_wait_for(log_has_arg, "/readyz answers 200 again (memory_limit_mb)",
                                   2000));
    }
    expect_served(1000);
}

/* ---- the attacks the relay already survived: kept survived ------------- */

/*
 * Control-frame floods on one connection (issue 17: "SETTINGS and PING
 * floods, WINDOW_UPDATE abuse"), the attacker never reading the answers
 * it is owed: gRPC answers or drops them itself. The relay must stay up,
 * its peak RSS (VmHWM) within CONTROL_GROWTH_KB of its RSS before, the
 * steady agent served throughout, a new agent at once after.
 */
#if defined(__SANITIZE_ADDRESS__)
#define CONTROL_FRAMES 20000
#else
#define CONTROL_FRAMES 200000
#endif
#define CONTROL_GROWTH_KB (64 * 1024)

static void control_flood(enum h2_raw_control kind, const char *name, long growth_kb)
{
    const int frames = CONTROL_FRAMES;
    start(NULL, "");
    long before = proc_rss_kb(relay.pid);
    struct h2_raw *h = h2_raw_connect(relay.port, 65535);
    int64_t t0 = harness_now_ms();
    int sent = h2_raw_control_flood(h, kind, frames);
    int64_t took = harness_now_ms() - t0;
    steady_agent_expect_progress(steady, 50, 5000);
    /* Kept open a second (answers read only now) so the relay parses the
     * whole flood: a close with unread data would be a reset, and its
     * kernel would drop what gRPC had not read yet. */
    h2_raw_pump(h, 1000);
    bool closed = h2_raw_closed(h);
    h2_raw_close(h);
    expect_served(1000);
    long peak = proc_peak_rss_kb(relay.pid);
    cr_log_info("%s flood: %d of %d frames in %lld ms, connection %s; RSS %ld KiB, peak %ld KiB",
                name, sent, frames, (long long)took, closed ? "closed" : "open", before,
                peak);
    cr_assert_lt(peak - before, growth_kb, "peak RSS grew %ld KiB", peak - before);
}

Test(attacks, settings_flood_is_survived)
{
    control_flood(H2_RAW_SETTINGS, "SETTINGS", CONTROL_GROWTH_KB);
}

Test(attacks, window_update_flood_is_survived)
{
    control_flood(H2_RAW_WINDOW_UPDATE, "WINDOW_UPDATE", CONTROL_GROWTH_KB);
}

/* PING, the answers never read: the relay's peak RSS rises by about 64 MB
 * once, whatever the count (measured the same, 81 MB peak from 16 MB, for
 * 20,000, 100,000 and 200,000 PINGs, and with memory_limit_mb = 48: one
 * burst parsed before the guard's next look); it does not grow with the
 * flood, so the bound is that step plus room. */
#if defined(__SANITIZE_ADDRESS__)
#define PING_GROWTH_KB (160 * 1024) /* measured +111 MB */
#else
#define PING_GROWTH_KB (96 * 1024)
#endif
Test(attacks, ping_flood_is_survived)
{
    control_flood(H2_RAW_PING, "PING", PING_GROWTH_KB);
}

struct refused_wait {
    struct h2_raw *h;
};

static bool stream_refused(void *arg)
{
    struct refused_wait *w = arg;
    h2_raw_pump(w->h, 20);
    return h2_raw_closed(w->h) || h2_raw_reset_code(w->h, 1) >= 0;
}

/*
 * One header block of 300,000 tiny fields (2 MB) over CONTINUATION frames
 * ("CONTINUATION flood of complete small headers", "100k headers"): gRPC's
 * own metadata size limit refuses the call or closes the connection, RSS
 * stays put, the steady agent is served.
 */
Test(attacks, a_header_block_of_300k_fields_is_refused_by_the_metadata_limit)
{
    start(NULL, "");
    long before = proc_rss_kb(relay.pid);
    struct h2_raw *h = h2_raw_connect(relay.port, 65535);
    size_t sent = h2_raw_many_headers(h, 1, "/aeroarc.agent.v1.AgentGateway/TelemetryStream",
                                      300000);
    struct refused_wait w = {h};
    cr_assert(harness_wait_for(stream_refused, &w, 5000),
              "a call with %zu header fields was neither reset nor its connection closed", sent);
    h2_raw_close(h);
    steady_agent_expect_progress(steady, 50, 5000);
    expect_served(1000);
    long peak = proc_peak_rss_kb(relay.pid);
    cr_log_info("300k header fields: %zu sent; RSS %ld KiB, peak %ld KiB", sent, before, peak);
    cr_assert_lt(peak - before, CONTROL_GROWTH_KB, "peak RSS grew %ld KiB", peak - before);
}

/* ---- soak: tools/attack-soak.sh, not in the test command ---------------- */

/*
 * One attack of this suite repeated for AERO_SOAK_SECONDS (default 60)
 * against the relay, with a latency probe (window 1) streaming throughout:
 * skipped unless AERO_SOAK_ATTACK names the attack (rapid_reset,
 * stream_flood, short_connections, idle_fds). AERO_SOAK_RELAY adds
 * [relay] keys. Prints one "soak:" line: the relay's peak RSS (VmHWM,
 * reset before the attack), the probe's p99 quiet and under attack, and
 * how long a new agent took to register and stream a frame during the
 * attack (the longest of one try a second) and after it.
 */
struct soak_connect {
    pthread_t thread;
    atomic_bool stop;
    atomic_llong worst_ms;
    atomic_int tries, failed;
};

/* A new agent: register and get one frame acked OK. ms, or -1 in 5 s. */
static long long new_agent_ms(const char *id)
{
    int64_t t0 = harness_now_ms();
    struct rc_channel *c = rc_connect(relay.target);
    struct rc_status st;
    int rc = -1;
    while ((rc = rc_register(c, id, "test/1.0", "linux/amd64", NULL, &st, 1000)) != 0 &&
           harness_now_ms() - t0 < 5000) {
        rc_close(c);
        c = rc_connect(relay.target);
    }
    struct rc_stream *s = rc == 0 ? rc_stream_open(c, id, NULL, 0, &st) : NULL;
    bool ok = s && rc_stream_send_frame(s, harness_frame(id, 1), 5000) == 0;
    struct rc_ack ack;
    ok = ok && rc_stream_recv_ack(s, &ack, 5000) == 1 && ack.status == RC_ACK_OK;
    long long took = harness_now_ms() - t0;
    if (s) {
        rc_stream_close_send(s, 1000);
        rc_stream_finish(s, &st, 1000);
        rc_stream_free(s);
    }
    rc_close(c);
    return ok ? took : -1;
}

static void *soak_connect_main(void *arg)
{
    struct soak_connect *sc = arg;
    char id[32];
    for (int i = 0; !atomic_load(&sc->stop); i++) {
        snprintf(id, sizeof(id), "drone-soak-%d", i);
        int64_t t0 = harness_now_ms();
        long long ms = new_agent_ms(id);
        atomic_fetch_add(&sc->tries, 1);
        if (ms < 0)
            atomic_fetch_add(&sc->failed, 1);
        else if (ms > atomic_load(&sc->worst_ms))
            atomic_store(&sc->worst_ms, ms);
        while (!atomic_load(&sc->stop) && harness_now_ms() - t0 < 1000) {
            struct timespec pace = {0, 20 * 1000000}; /* pacing: one try a second */
            nanosleep(&pace, NULL);
        }
    }
    return NULL;
}

/* One round of the attack; returns the streams or connections it sent. */
static long soak_round(const char *attack)
{
    const char *path = "/aeroarc.agent.v1.AgentGateway/TelemetryStream";
    if (strcmp(attack, "rapid_reset") == 0 || strcmp(attack, "stream_flood") == 0) {
        struct h2_raw *h = h2_raw_connect(relay.port, 65535);
        long n = attack[0] == 'r' ? h2_raw_rapid_reset(h, 1, 20000, path)
                                  : h2_raw_stream_flood(h, 1, 20000, path);
        h2_raw_pump(h, 2000);
        h2_raw_close(h);
        return n;
    }
    if (strcmp(attack, "short_connections") == 0) {
        long n = 0;
        for (int i = 0; i < 5; i++) { /* under the guard's 2,000 a second each */
            struct h2_raw *h = h2_raw_connect(relay.port, 65535);
            n += h2_raw_rapid_reset(h, 1, 1900, path);
            h2_raw_pump(h, 50);
            h2_raw_close(h);
        }
        return n;
    }
    cr_assert_str_eq(attack, "idle_fds", "unknown AERO_SOAK_ATTACK");
    enum { N = 300 };
    int fds[N], n = 0;
    for (int i = 0; i < N; i++)
        if ((fds[n] = tcp_connect(relay.port)) >= 0)
            n++;
    int64_t t0 = harness_now_ms();
    while (harness_now_ms() - t0 < 3000) { /* held idle, then let go */
        struct timespec pace = {0, 50 * 1000000};
        nanosleep(&pace, NULL);
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return n;
}

static void reset_peak_rss(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)pid);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("5", f); /* 5: reset the peak resident set size (VmHWM) */
        fclose(f);
    }
}

Test(attacks, soak, .timeout = 900)
{
    const char *attack = getenv("AERO_SOAK_ATTACK");
    if (!attack || !*attack)
        cr_skip_test("AERO_SOAK_ATTACK not set: run tools/attack-soak.sh");
    int seconds = getenv("AERO_SOAK_SECONDS") ? atoi(getenv("AERO_SOAK_SECONDS")) : 60;
    const char *keys = getenv("AERO_SOAK_RELAY");
    char extra[512];
    snprintf(extra, sizeof(extra), "%s%s", keys ? keys : "",
             strcmp(attack, "idle_fds") == 0 ? "\nhandshake_timeout_s = 2\n" : "\n");
    log_keys = "level = info\nformat = text";
    start(strcmp(attack, "idle_fds") == 0 ? "prlimit --nofile=256:256" : NULL, extra);
    struct steady_agent *probe = steady_agent_start_window(relay.target, "drone-probe", 1);
    int64_t quiet_end = harness_now_ms() + 5000;
    while (harness_now_ms() < quiet_end)
        steady_agent_expect_progress(probe, 1, 5000);
    long long quiet_p99 = steady_agent_p99_us(probe, true);
    long long quiet_connect = new_agent_ms("drone-quiet");

    reset_peak_rss(relay.pid);
    struct soak_connect sc = {0};
    pthread_create(&sc.thread, NULL, soak_connect_main, &sc);
    int64_t t0 = harness_now_ms();
    long rounds = 0, sent = 0;
    while (harness_now_ms() - t0 < seconds * 1000L) {
        sent += soak_round(attack);
        rounds++;
    }
    atomic_store(&sc.stop, true);
    pthread_join(sc.thread, NULL);
    long long attack_p99 = steady_agent_p99_us(probe, true);
    long peak_kb = proc_peak_rss_kb(relay.pid);
    /* Measured, not asserted: how long the probe and a new agent wait
     * for the relay to work through what the attack left queued. */
    int64_t t_end = harness_now_ms();
    /* The probe gives up after 5 s without an ack (steady_agent.c). */
    bool probe_back = steady_agent_wait_progress(probe, 10, 10000);
    long long resume_ms = probe_back ? harness_now_ms() - t_end : -1;
    long long after = new_agent_ms("drone-after");
    long long after_p99 = steady_agent_p99_us(probe, false);
    char problem[600];
    bool probe_ok = steady_agent_finish(probe, problem, sizeof(problem));
    for (char *c = problem; *c; c++)
        *c = *c == ' ' ? '_' : *c; /* one key=value field */
    printf("soak: attack=%s seconds=%d rounds=%ld sent=%ld peak_rss_kb=%ld probe_p99_quiet_us=%lld "
           "probe_p99_attack_us=%lld probe_p99_after_us=%lld connect_quiet_ms=%lld "
           "connect_during_worst_ms=%lld connect_during_failed=%d/%d probe_resume_ms=%lld "
           "connect_after_ms=%lld "
           "closed_call_flood=%.0f closed_memory_limit=%.0f probe=%s\n",
           attack, seconds, rounds, sent, peak_kb, quiet_p99, attack_p99, after_p99,
           quiet_connect, (long long)atomic_load(&sc.worst_ms), atomic_load(&sc.failed),
           atomic_load(&sc.tries), resume_ms, after,
           relay_metric(relay.http_port, "aero_relay_connections_closed_total{reason=\"call_flood\"}"),
           relay_metric(relay.http_port, "aero_relay_connections_closed_total{reason=\"memory_limit\"}"),
           probe_ok ? "ok" : problem);
    fflush(stdout);
    cr_assert_eq(kill(relay.pid, 0), 0, "the relay is gone");
}
