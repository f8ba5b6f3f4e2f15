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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct relay_proc relay;
static struct rc_channel *ch;
static struct steady_agent *steady;

/* The relay with [http] on and `extra` in [relay]; wrapper may be NULL. */
static void start(const char *wrapper, const char *extra)
{
    harness_prepare(&relay);
    rss_measurable(&relay);
    relay.http = true;
    relay.wrapper = wrapper;
    relay.log_keys = "level = debug\nformat = text"; /* the tests read debug lines */
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

/* Issue 17's bound: a new agent streams within 1 s of an attack's end.
 * Under ASan every call costs several times more (and the sanitizer pass
 * shares the machine with the build): 1,128 ms was seen there. */
#if defined(__SANITIZE_ADDRESS__)
#define AFTER_MS 3000
#else
#define AFTER_MS 1000
#endif

/* After an attack: a new agent registers, streams and gets acks within
 * `within_ms`; the steady agent still progresses; the relay still runs. */
static void expect_served(int within_ms)
{
    int64_t t0 = harness_now_ms();
    struct rc_channel *c = rc_connect(relay.target);
    struct rc_register_result res;
    struct rc_status st;
    int rc = -1, attempts = 0;
    /* A refused connect puts a gRPC channel in reconnect backoff; retry on
     * fresh channels until the deadline, each try short, so that one lost
     * to a connection the relay was still closing costs little of it. */
    while (attempts++, (rc = rc_register(c, "drone-new", "test/1.0", "linux/amd64", &res, &st,
                                          250)) != 0 &&
           harness_now_ms() - t0 < within_ms) {
        rc_close(c);
        c = rc_connect(relay.target);
    }
    cr_assert_eq(rc, 0, "no new agent registered within %d ms: %s", within_ms, st.message);
    int64_t registered = harness_now_ms() - t0;
    struct rc_stream *s = rc_stream_open(c, "drone-new", NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    size_t counts[4];
    harness_stream_frames(s, "drone-new", 1, 10, counts, NULL, 0);
    cr_assert_eq(counts[RC_ACK_OK], 10);
    int64_t took = harness_now_ms() - t0;
    cr_assert_leq(took, within_ms,
                  "a new agent took %lld ms to stream (registered after %lld ms, %d tries)",
                  (long long)took, (long long)registered, attempts);
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
        if ((fds[n] = h2_raw_tcp_connect(relay.port)) >= 0)
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
    /* Issue 17's bound, plus the half second a new listener may take: the
     * main loop notices freed descriptors within 100 ms and retries the
     * bind every 200 ms. */
    expect_served(AFTER_MS + 500);
    struct readyz_wait ready = {200};
    cr_assert(harness_wait_for(readyz_is, &ready, 1000), "/readyz stayed 503");
    cr_assert(log_has("gRPC listener accepting again"));
    cr_assert_geq(relay_metric(relay.http_port, "aero_relay_grpc_listener_failures_total"), 1);
    cr_assert_geq(relay_metric(relay.http_port, "aero_relay_grpc_listener_restarts_total"), 1);
    cr_assert_lt(rss_kb, 200 * 1024, "RSS %ld KiB", rss_kb);
}

struct metric_at_least {
    const char *name;
    double value;
};

static bool metric_is_at_least(void *arg)
{
    struct metric_at_least *m = arg;
    return relay_metric(relay.http_port, m->name) >= m->value;
}

/* A guard counts a connection it closed just after closing it: the
 * attacker may see the close first. */
static void expect_counted(const char *counter)
{
    struct metric_at_least m = {counter, 1};
    cr_assert(harness_wait_for(metric_is_at_least, &m, 2000), "%s never counted", counter);
}

/*
 * The same attack, round after round: each round kills gRPC's accept loop
 * and the relay starts another listener (a grpc_server generation). A
 * retired one lives while its calls do (the steady agent's stream keeps
 * the first), and is freed at the restart after its last call ended, so
 * an attacker cannot run the relay out of generations: after four rounds
 * three are alive (the first, the one retired last, the listening one),
 * not five. Before, the 64th restart was refused and the port never
 * accepted again.
 */
Test(attacks, repeated_fd_exhaustion_frees_retired_listeners)
{
    start("prlimit --nofile=128:128", "handshake_timeout_s = 2\n");
    enum { N = 200, ROUNDS = 4 };
    for (int round = 1; round <= ROUNDS; round++) {
        int fds[N], n = 0;
        for (int i = 0; i < N; i++)
            if ((fds[n] = h2_raw_tcp_connect(relay.port)) >= 0)
                n++;
        struct metric_at_least failed = {"aero_relay_grpc_listener_failures_total", round};
        cr_assert(harness_wait_for(metric_is_at_least, &failed, 5000),
                  "round %d: the relay never noticed its listener failing", round);
        for (int i = 0; i < n; i++)
            close(fds[i]);
        struct metric_at_least restarted = {"aero_relay_grpc_listener_restarts_total", round};
        cr_assert(harness_wait_for(metric_is_at_least, &restarted, 5000),
                  "round %d: no new listener", round);
        expect_served(3000); /* on the new listener, then gone: it can be freed */
    }
    double alive = relay_metric(relay.http_port, "aero_relay_grpc_listener_generations");
    cr_assert_leq(alive, 3, "%g generations alive after %d restarts", alive, ROUNDS);
    cr_assert_geq(alive, 2);
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
    expect_served(AFTER_MS);
    expect_counted("aero_relay_connections_closed_total{reason=\"call_flood\"}");
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
    expect_served(AFTER_MS);
    expect_counted("aero_relay_connections_closed_total{reason=\"call_flood\"}");
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
/* The guard samples RSS every 25 ms; with other tests sharing the two
 * cores its thread may be scheduled late while the flood grows (measured:
 * 99-126 MB alone; 145 MB, 10.8% over, once in the suite beside other
 * tests; under ASan 10% was exceeded once in 12 runs beside another
 * attack test). Without the guard the same flood takes 278 MB. */
#if defined(__SANITIZE_ADDRESS__)
#define MEM_TOLERANCE_PCT 25
#else
#define MEM_TOLERANCE_PCT 15
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
    expect_counted("aero_relay_connections_closed_total{reason=\"memory_limit\"}");
    cr_assert(harness_wait_for(log_has_arg, "busy connections' new calls refused", 2000));
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
    expect_served(AFTER_MS);
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
    expect_served(AFTER_MS);
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
    expect_served(AFTER_MS);
    long peak = proc_peak_rss_kb(relay.pid);
    cr_log_info("300k header fields: %zu sent; RSS %ld KiB, peak %ld KiB", sent, before, peak);
    cr_assert_lt(peak - before, CONTROL_GROWTH_KB, "peak RSS grew %ld KiB", peak - before);
}
