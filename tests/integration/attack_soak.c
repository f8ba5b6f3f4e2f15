/*
 * attack_soak.c - a measurement, not a test of the test command: each
 * attack of test_e2e_attacks.c run for a minute against the relay binary
 * (tools/attack-soak.sh runs it once per attack and tabulates the "soak:"
 * lines; docs/security.md has the figures). Built beside the tests, never
 * registered with ctest: it takes minutes and its figures are timing.
 *
 * AERO_SOAK_EDGE=1 (attack-soak.sh -e) puts HAProxy on the shipped
 * examples/edge/haproxy.cfg in front (edge_proxy.c, as test_e2e_edge runs
 * it): the attacker, the probe, the fixture's agent and the new agents all
 * connect to it over TLS, the relay listens on loopback behind it. The
 * attacker comes from 127.0.0.2, the agents from 127.0.0.1: HAProxy's
 * limits are per source address, and an attacker sharing the agents'
 * address would have them refused with it (agents behind one NAT with an
 * attacker are, by design of the shipped file).
 */
#include "edge_proxy.h"
#include "h2_raw.h"
#include "harness.h"
#include "steady_agent.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct relay_proc relay;
static struct rc_channel *ch;
static struct steady_agent *steady; /* streams throughout, as in the attack tests */
static struct edge_proxy edge = {.pid = -1};
static bool via_edge; /* AERO_SOAK_EDGE=1 */
#define ATTACKER_SOURCE "127.0.0.2"

/* Where agents connect: HAProxy over TLS, or the relay itself. */
static const char *agent_target(void) { return via_edge ? edge.target : relay.target; }

static struct rc_channel *agent_channel(void)
{
    return via_edge ? edge_channel(&edge, 0) : rc_connect(relay.target);
}

static struct steady_agent *agent_start(const char *id, int window)
{
    struct rc_opts o = edge_agent_opts(&edge, 0);
    return steady_agent_start_opts(agent_target(), via_edge ? &o : NULL, id, window);
}

/* The attacker's HTTP/2 connection, NULL when refused (by HAProxy at
 * accept, or by the relay's listener). */
static struct h2_raw *attacker_h2(void)
{
    return via_edge ? edge_h2_connect(edge.port, true, ATTACKER_SOURCE)
                    : edge_h2_connect(relay.port, false, NULL);
}

static int attacker_tcp(void)
{
    return via_edge ? edge_tcp_connect(edge.port, ATTACKER_SOURCE)
                    : edge_tcp_connect(relay.port, NULL);
}

/* The relay with [http] on and `extra` in [relay], logging at info as in
 * production (debug lines under a flood would weigh on the figures). */
static void start(const char *wrapper, const char *extra)
{
    harness_prepare(&relay);
    rss_measurable(&relay);
    relay.http = true;
    relay.wrapper = wrapper;
    relay.log_keys = "level = info\nformat = text";
    ch = harness_start(&relay, extra, "[sink:archive]\nplugin = sink-file\npath = %DIR%/data\n");
    if (via_edge) {
        signal(SIGPIPE, SIG_IGN); /* OpenSSL writes with write(2): a reset peer is EPIPE */
        edge_start(&edge, relay.dir, relay.target, NULL);
    }
    steady = agent_start("drone-steady", 16);
}

/* The relay is stopped whatever the agent saw (its state is the probe's
 * line, not an assertion). */
static void stop(void)
{
    char problem[600];
    if (steady)
        steady_agent_finish(steady, problem, sizeof(problem));
    steady = NULL;
    edge_stop(&edge);
    harness_finish(&relay, &ch);
}

/*
 * One attack of test_e2e_attacks.c repeated for AERO_SOAK_SECONDS (default
 * 60) against the relay, with a latency probe (window 1) streaming
 * throughout; AERO_SOAK_ATTACK names the attack (rapid_reset,
 * stream_flood, short_connections, idle_fds; huge_header and continuation,
 * meant for AERO_SOAK_EDGE=1). AERO_SOAK_RELAY adds
 * [relay] keys, AERO_SOAK_EDGE=1 puts HAProxy in front. Prints one
 * "soak:" line: the relay's peak RSS (VmHWM, reset before the attack), the
 * probe's p99 quiet and under attack, how long a new agent took to
 * register and stream a frame during the attack (the longest of one try a
 * second) and after it, the attacker's connections refused; through
 * HAProxy also its peak RSS and the calls it passed to the relay.
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
    struct rc_channel *c = agent_channel();
    struct rc_status st;
    int rc = -1;
    while ((rc = rc_register(c, id, "test/1.0", "linux/amd64", NULL, &st, 1000)) != 0 &&
           harness_now_ms() - t0 < 5000) {
        rc_close(c);
        c = agent_channel();
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

/* One round of the attack; returns the streams, connections or header MB it sent,
 * and counts the connections refused into *refused. */
static long soak_round(const char *attack, long *refused)
{
    const char *path = "/aeroarc.agent.v1.AgentGateway/TelemetryStream";
    bool flood = strcmp(attack, "rapid_reset") == 0 || strcmp(attack, "stream_flood") == 0;
    bool header = strcmp(attack, "huge_header") == 0 || strcmp(attack, "continuation") == 0;
    if (flood || header) { /* one connection each round */
        struct h2_raw *h = attacker_h2();
        if (!h) {
            ++*refused;
            return 0;
        }
        long n;
        if (flood) {
            n = attack[0] == 'r' ? h2_raw_rapid_reset(h, 1, 20000, path)
                                 : h2_raw_stream_flood(h, 1, 20000, path);
            h2_raw_pump(h, 2000);
        } else {
            /* One header value of 19 MB, or 32 MB of CONTINUATION never
             * ended (nothing in-process stops either: run them with -e);
             * counted in MB taken before the peer closed. */
            n = (long)((attack[0] == 'h' ? h2_raw_huge_header(h, 1, path, 19u << 20)
                                         : h2_raw_continuation_flood(h, 1, path, 32u << 20)) >>
                       20);
        }
        h2_raw_close(h);
        return n;
    }
    if (strcmp(attack, "short_connections") == 0) {
        long n = 0;
        for (int i = 0; i < 5; i++) { /* under the guard's 2,000 a second each */
            struct h2_raw *h = attacker_h2();
            if (!h) {
                ++*refused;
                continue;
            }
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
        if ((fds[n] = attacker_tcp()) >= 0)
            n++;
        else
            ++*refused;
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

TestSuite(soak, .fini = stop, .timeout = 900);

Test(soak, attack)
{
    const char *attack = getenv("AERO_SOAK_ATTACK");
    cr_assert(attack && *attack, "AERO_SOAK_ATTACK not set: run tools/attack-soak.sh");
    int seconds = getenv("AERO_SOAK_SECONDS") ? atoi(getenv("AERO_SOAK_SECONDS")) : 60;
    via_edge = getenv("AERO_SOAK_EDGE") && strcmp(getenv("AERO_SOAK_EDGE"), "1") == 0;
    const char *keys = getenv("AERO_SOAK_RELAY");
    char extra[512];
    snprintf(extra, sizeof(extra), "%s%s", keys ? keys : "",
             strcmp(attack, "idle_fds") == 0 ? "\nhandshake_timeout_s = 2\n" : "\n");
    start(strcmp(attack, "idle_fds") == 0 ? "prlimit --nofile=256:256" : NULL, extra);
    struct steady_agent *probe = agent_start("drone-probe", 1);
    int64_t quiet_end = harness_now_ms() + 5000;
    while (harness_now_ms() < quiet_end)
        steady_agent_expect_progress(probe, 1, 5000);
    long long quiet_p99 = steady_agent_p99_us(probe, true);
    long long quiet_connect = new_agent_ms("drone-quiet");

    reset_peak_rss(relay.pid);
    if (via_edge)
        reset_peak_rss(edge.pid);
    struct soak_connect sc = {0};
    pthread_create(&sc.thread, NULL, soak_connect_main, &sc);
    int64_t t0 = harness_now_ms();
    long rounds = 0, sent = 0, refused = 0;
    while (harness_now_ms() - t0 < seconds * 1000L) {
        sent += soak_round(attack, &refused);
        rounds++;
    }
    atomic_store(&sc.stop, true);
    pthread_join(sc.thread, NULL);
    long long attack_p99 = steady_agent_p99_us(probe, true);
    long peak_kb = proc_peak_rss_kb(relay.pid);
    long edge_peak_kb = via_edge ? proc_peak_rss_kb(edge.pid) : -1;
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
           "connect_after_ms=%lld refused=%ld edge=%d edge_peak_rss_kb=%ld edge_calls=%d "
           "closed_call_flood=%.0f closed_memory_limit=%.0f probe=%s\n",
           attack, seconds, rounds, sent, peak_kb, quiet_p99, attack_p99, after_p99,
           quiet_connect, (long long)atomic_load(&sc.worst_ms), atomic_load(&sc.failed),
           atomic_load(&sc.tries), resume_ms, after, refused, via_edge, edge_peak_kb,
           via_edge ? edge_log_count(&edge, ATTACKER_SOURCE ":", " relay/relay ") : -1,
           relay_metric(relay.http_port, "aero_relay_connections_closed_total{reason=\"call_flood\"}"),
           relay_metric(relay.http_port, "aero_relay_connections_closed_total{reason=\"memory_limit\"}"),
           probe_ok ? "ok" : problem);
    fflush(stdout);
    cr_assert_eq(kill(relay.pid, 0), 0, "the relay is gone");
}
