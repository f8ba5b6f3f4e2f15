/*
 * test_route_registry.c - route-registry (SPEC.md section 11,
 * docs/routing.md) against a small AeroRegistry of the tests' own
 * (registry_server.py, real gRPC) and the real relay binary: the relay and
 * its agents registered with the right ids, address and port; heartbeats
 * of 1,000 agents pipelined; NOT_FOUND for relay and agents (and the rule
 * that a drone which moved is not taken back); the registry killed and
 * restarted empty; a registry stalling every call; an agent moving from
 * relay A to relay B; route-redis beside it; --check. Every wait polls with
 * a deadline; heartbeat_interval_s is 1.
 */
#include "harness.h"
#include "http_client.h"
#include "redis_server.h"
#include "steady_agent.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct registry_proc {
    pid_t pid;
    int port, ctl_port;
    char addr[64];
    char out_path[128];
};

static struct registry_proc reg;
static struct relay_proc relay_a, relay_b;
static struct rc_channel *ch_a, *ch_b;
static struct redis_server redis;

static void registry_kill(struct registry_proc *g)
{
    if (g->pid > 0) {
        kill(g->pid, SIGKILL);
        waitpid(g->pid, NULL, 0);
        g->pid = 0;
        unlink(g->out_path);
    }
}

static bool registry_ready(void *arg)
{
    struct registry_proc *g = arg;
    char *out = harness_read_file(g->out_path, NULL);
    bool ready = out && strstr(out, "ready\n");
    cr_assert(!out || !strstr(out, "setup_error"), "registry_server.py: %s", out);
    free(out);
    return ready;
}

/* Start the registry on `port` (0: a free one), with TLS when `cert` and
 * `key` name PEM files; waits until it serves. */
static void registry_start_tls(struct registry_proc *g, int port, const char *cert,
                               const char *key)
{
    g->port = port ? port : harness_free_port();
    g->ctl_port = harness_free_port();
    snprintf(g->addr, sizeof(g->addr), "127.0.0.1:%d", g->port);
    snprintf(g->out_path, sizeof(g->out_path), "/tmp/aero-registry-%d-%d.out", (int)getpid(),
             g->port);
    char port_s[16], ctl_s[16];
    snprintf(port_s, sizeof(port_s), "%d", g->port);
    snprintf(ctl_s, sizeof(ctl_s), "%d", g->ctl_port);
    unlink(g->out_path);
    g->pid = fork();
    cr_assert_geq(g->pid, 0);
    if (g->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        int fd = open(g->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        const char *argv[] = {"python3", AERO_SOURCE_DIR "/tests/integration/registry_server.py",
                              "--port", port_s, "--control-port", ctl_s, "--proto-dir",
                              AERO_SOURCE_DIR "/proto", cert ? "--tls-cert" : NULL, cert,
                              "--tls-key", key, NULL};
        execv("/usr/bin/python3", (char *const *)argv);
        _exit(127);
    }
    cr_assert(harness_wait_for(registry_ready, g, 20000), "registry_server.py not ready in 20 s");
}

static void registry_start(struct registry_proc *g, int port)
{
    registry_start_tls(g, port, NULL, NULL);
}

/* GET path on the control port: the body (malloc'ed). */
static char *ctl(const struct registry_proc *g, const char *path)
{
    struct http_reply rep;
    cr_assert_eq(http_request(g->ctl_port, "GET", path, 5000, &rep), 0, "control %s", path);
    cr_assert_eq(rep.status, 200, "control %s: %d", path, rep.status);
    return rep.body; /* http_reply_free only frees the body */
}

static long stat_of(const struct registry_proc *g, const char *key)
{
    char *body = ctl(g, "/stats"), needle[96];
    snprintf(needle, sizeof(needle), "%s ", key);
    long v = -1;
    for (char *line = body; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, needle, strlen(needle)) == 0)
            v = strtol(line + strlen(needle), NULL, 10);
    free(body);
    return v;
}

/* Lines of path's body equal to `line`. */
static long count_line(const struct registry_proc *g, const char *path, const char *line)
{
    char *body = ctl(g, path);
    long n = 0;
    size_t len = strlen(line);
    for (char *p = body; *p;) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        n += l == len && strncmp(p, line, len) == 0;
        p += l + (nl != NULL);
    }
    free(body);
    return n;
}

/* Calls of `method` for agent (prefix "Method agent relay "). */
static long calls_for(const struct registry_proc *g, const char *method, const char *agent,
                      const char *relay)
{
    char path[96], prefix[300];
    snprintf(path, sizeof(path), "/calls?method=%s", method);
    snprintf(prefix, sizeof(prefix), "%s %s %s ", method, agent, relay);
    char *body = ctl(g, path);
    long n = 0;
    for (char *p = strstr(body, prefix); p; p = strstr(p + 1, prefix))
        n += p == body || p[-1] == '\n';
    free(body);
    return n;
}

struct line_wait {
    const struct registry_proc *g;
    const char *path;
    char line[300];
};

static bool line_present(void *arg)
{
    struct line_wait *w = arg;
    return count_line(w->g, w->path, w->line) > 0;
}

static void expect_line(const struct registry_proc *g, const char *path, const char *line,
                        int timeout_ms)
{
    struct line_wait w = {.g = g, .path = path};
    snprintf(w.line, sizeof(w.line), "%s", line);
    if (harness_wait_for(line_present, &w, timeout_ms))
        return;
    char *body = ctl(g, path);
    cr_assert_fail("%s: no line \"%s\" within %d ms; it holds:\n%s", path, line, timeout_ms, body);
}

static void expect_agent_at(const char *agent, const char *relay, int timeout_ms)
{
    char line[300];
    snprintf(line, sizeof(line), "%s %s", agent, relay);
    expect_line(&reg, "/agents", line, timeout_ms);
}

struct stat_wait {
    const struct registry_proc *g;
    const char *key;
    long at_least;
};

static bool stat_reached(void *arg)
{
    struct stat_wait *w = arg;
    return stat_of(w->g, w->key) >= w->at_least;
}

static void expect_stat(const char *key, long at_least, int timeout_ms)
{
    struct stat_wait w = {&reg, key, at_least};
    cr_assert(harness_wait_for(stat_reached, &w, timeout_ms), "%s: %ld, want >= %ld in %d ms",
              key, stat_of(&reg, key), at_least, timeout_ms);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    unsetenv("REDIS_ADDR");
    unsetenv("RELAY_ID");
}

static void teardown(void)
{
    if (ch_a)
        rc_close(ch_a);
    if (ch_b)
        rc_close(ch_b);
    ch_a = ch_b = NULL;
    relay_kill(&relay_a);
    relay_kill(&relay_b);
    registry_kill(&reg);
    redis_server_kill(&redis);
}

TestSuite(route_registry, .init = setup, .fini = teardown, .timeout = 60);

/* A relay `id` with [route:registry] on the test registry (plus `extra`
 * keys of that section) and `more` sections; HTTP on. */
static struct rc_channel *start_relay(struct relay_proc *r, const char *id, const char *extra,
                                      const char *more)
{
    char relay_extra[128], body[2048];
    harness_prepare(r);
    r->http = true;
    snprintf(relay_extra, sizeof(relay_extra), "relay_id = %s\n", id);
    snprintf(body, sizeof(body),
             "[route:registry]\nplugin = route-registry\naddress = %s\n"
             "heartbeat_interval_s = 1\nrequest_timeout_ms = 5000\n%s\n%s",
             reg.addr, extra ? extra : "", more ? more : "");
    harness_write_config(r, relay_extra, body);
    relay_start(r);
    return rc_connect(r->target);
}

static struct rc_stream *open_stream(struct rc_channel *ch, const char *agent)
{
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, agent, NULL, 0, &st);
    cr_assert_not_null(s, "open stream: %s", st.message);
    return s;
}

static void send_ok(struct rc_stream *s, const char *agent, uint64_t *seq, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(rc_stream_send_frame(s, harness_frame(agent, *seq + (uint64_t)i), 5000), 0);
    for (int i = 0; i < n; i++) {
        struct rc_ack ack;
        cr_assert_eq(rc_stream_recv_ack(s, &ack, 10000), 1, "%s: ack missing", agent);
        cr_assert_eq(ack.status, RC_ACK_OK, "%s: %s", agent, ack.error);
    }
    *seq += (uint64_t)n;
}

static void end_stream(struct rc_stream *s)
{
    struct rc_status st;
    cr_assert_eq(rc_stream_close_send(s, 5000), 0);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    cr_assert_eq(st.code, 0, "stream status %s: %s", rc_status_code_name(st.code), st.message);
    rc_stream_free(s);
}

/* The relay's /readyz: status and body. */
static int readyz(const struct relay_proc *r, char *body, size_t len)
{
    struct http_reply rep;
    cr_assert_eq(http_request(r->http_port, "GET", "/readyz", 5000, &rep), 0);
    snprintf(body, len, "%s", rep.body ? rep.body : "");
    int status = rep.status;
    http_reply_free(&rep);
    return status;
}

struct readyz_wait {
    const struct relay_proc *r;
    const char *want;
};

static bool readyz_is(void *arg)
{
    struct readyz_wait *w = arg;
    char body[256];
    return readyz(w->r, body, sizeof(body)) == 200 && strcmp(body, w->want) == 0;
}

static void expect_readyz(const struct relay_proc *r, const char *want, int timeout_ms)
{
    struct readyz_wait w = {r, want};
    char body[256];
    if (!harness_wait_for(readyz_is, &w, timeout_ms)) {
        int st = readyz(r, body, sizeof(body));
        cr_assert_fail("/readyz: want 200 %s within %d ms, got %d %s", want, timeout_ms, st, body);
    }
}

struct rounds_wait {
    long at_least;
};

static bool rounds_reached(void *arg)
{
    return calls_for(&reg, "HeartbeatRelay", "", "relay-a") >= ((struct rounds_wait *)arg)->at_least;
}

/* n further HeartbeatRelay calls of relay-a: n of its intervals passed. */
static void wait_rounds(int n)
{
    struct rounds_wait w = {calls_for(&reg, "HeartbeatRelay", "", "relay-a") + n};
    cr_assert(harness_wait_for(rounds_reached, &w, (n + 3) * 1000),
              "relay-a did not heartbeat %d times in %d s", n, n + 3);
}

/* ------------------------------------------------------------------ tests */

Test(route_registry, relay_and_agents_registered_with_ids_address_and_port)
{
    char line[128];
    registry_start(&reg, 0);
    ch_a = start_relay(&relay_a, "relay-a", NULL, NULL);
    snprintf(line, sizeof(line), "relay-a 127.0.0.1 %d", relay_a.port);
    expect_line(&reg, "/relays", line, 5000);

    /* Register alone reports nothing: the stream opening does. */
    harness_register(ch_a, "drone-1", NULL, 0);
    harness_register(ch_a, "drone-2", NULL, 0);
    wait_rounds(1);
    cr_expect_eq(count_line(&reg, "/agents", "drone-1 relay-a"), 0, "reported before its stream");
    uint64_t seq1 = 1, seq2 = 1;
    struct rc_stream *s1 = open_stream(ch_a, "drone-1");
    struct rc_stream *s2 = open_stream(ch_a, "drone-2");
    expect_agent_at("drone-1", "relay-a", 3000);
    expect_agent_at("drone-2", "relay-a", 3000);
    send_ok(s1, "drone-1", &seq1, 3);
    send_ok(s2, "drone-2", &seq2, 3);

    /* Heartbeats every interval for each, with relay id and a timestamp
     * (the registry refuses 0 and an empty relay_id). */
    wait_rounds(2);
    cr_expect_geq(calls_for(&reg, "HeartbeatAgent", "drone-1", "relay-a"), 1);
    cr_expect_geq(calls_for(&reg, "HeartbeatAgent", "drone-2", "relay-a"), 1);
    cr_expect_eq(calls_for(&reg, "RegisterAgent", "drone-1", "relay-a"), 1);
    cr_expect_eq(calls_for(&reg, "RegisterRelay", "", "relay-a"), 1);

    /* Session end: no more heartbeats for it. */
    end_stream(s1);
    wait_rounds(1); /* a heartbeat already started may still land */
    long before = calls_for(&reg, "HeartbeatAgent", "drone-1", "relay-a");
    wait_rounds(3);
    cr_expect_eq(calls_for(&reg, "HeartbeatAgent", "drone-1", "relay-a"), before,
                 "heartbeats for an ended session");
    cr_expect_gt(calls_for(&reg, "HeartbeatAgent", "drone-2", "relay-a"), 2);
    end_stream(s2);
    expect_readyz(&relay_a, "{\"status\":\"ok\"}", 1000);
    double ok = relay_metric(relay_a.http_port,
                             "aero_route_registry_calls_total{route=\"registry\",rpc=\"register_agent\",outcome=\"ok\"}");
    cr_expect_eq(ok, 2.0);
    cr_expect_eq(relay_metric(relay_a.http_port,
                              "aero_route_registry_connected{route=\"registry\"}"),
                 1.0);
    harness_finish(&relay_a, &ch_a);
}

Test(route_registry, advertise_address_is_what_the_relay_reports)
{
    registry_start(&reg, 0);
    ch_a = start_relay(&relay_a, "relay-adv", "advertise_address = relay-adv.example:6000\n",
                       NULL);
    expect_line(&reg, "/relays", "relay-adv relay-adv.example 6000", 5000);
    harness_finish(&relay_a, &ch_a);
}

/* advertise_address without a port: the relay's bound port is advertised. */
Test(route_registry, advertise_address_without_a_port_takes_the_bound_port)
{
    char line[128];
    registry_start(&reg, 0);
    ch_a = start_relay(&relay_a, "relay-bare", "advertise_address = relay-bare.example\n", NULL);
    snprintf(line, sizeof(line), "relay-bare relay-bare.example %d", relay_a.port);
    expect_line(&reg, "/relays", line, 5000);
    harness_finish(&relay_a, &ch_a);
}

/* 1,000 agents, every registry call delayed 20 ms: one round of
 * heartbeats in series would take 20 s. */
Test(route_registry, heartbeats_of_1000_agents_are_pipelined, .timeout = 90)
{
    registry_start(&reg, 0);
    cr_assert_str_eq(ctl(&reg, "/set?stall_ms=20"), "ok\n");
    ch_a = start_relay(&relay_a, "relay-a", NULL, NULL);
    char out_path[400], err_path[400];
    snprintf(out_path, sizeof(out_path), "%s/bench.json", relay_a.dir);
    snprintf(err_path, sizeof(err_path), "%s/bench.err", relay_a.dir);
    pid_t bench = fork();
    cr_assert_geq(bench, 0);
    if (bench == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        freopen(out_path, "w", stdout);
        freopen(err_path, "w", stderr);
        execl(AERO_BINARY_DIR "/aeroarc-bench", "aeroarc-bench", "--target", relay_a.target,
              "--agents", "1000", "--frames", "2", "--window", "2", "--channels", "4", "--hold",
              "20", (char *)NULL);
        _exit(127);
    }
    expect_stat("agents", 1000, 20000);
    cr_assert_str_eq(ctl(&reg, "/reset"), "ok\n");
    int64_t t0 = harness_now_ms();
    expect_stat("calls_HeartbeatAgent", 1000, 5000); /* one interval plus the calls */
    int64_t took = harness_now_ms() - t0;
    long most = stat_of(&reg, "max_inflight_HeartbeatAgent");
    cr_log_info("1000 agent heartbeats (20 ms each) within %lld ms, at most %ld at once",
                (long long)took, most);
    cr_expect_gt(most, 10, "HeartbeatAgent calls were not pipelined (%ld at once)", most);
    kill(bench, SIGKILL);
    waitpid(bench, NULL, 0);
    harness_kill(&relay_a, &ch_a);
}

Test(route_registry, not_found_registers_relay_and_agent_again)
{
    registry_start(&reg, 0);
    ch_a = start_relay(&relay_a, "relay-a", NULL, NULL);
    struct steady_agent *a = steady_agent_start(relay_a.target, "drone-nf");
    expect_agent_at("drone-nf", "relay-a", 5000);
    expect_stat("calls_RegisterRelay", 1, 1000);

    /* The registry forgot the relay: its heartbeat says NOT_FOUND. */
    cr_assert_str_eq(ctl(&reg, "/set?notfound_relay=1"), "ok\n");
    expect_stat("calls_RegisterRelay", 2, 4000);
    /* The streaming agent lost its placement: registered again. */
    cr_assert_str_eq(ctl(&reg, "/set?notfound_agent=drone-nf"), "ok\n");
    long before = calls_for(&reg, "RegisterAgent", "drone-nf", "relay-a");
    int64_t end = harness_now_ms() + 5000;
    while (calls_for(&reg, "RegisterAgent", "drone-nf", "relay-a") <= before &&
           harness_now_ms() < end)
        wait_rounds(1);
    cr_assert_gt(calls_for(&reg, "RegisterAgent", "drone-nf", "relay-a"), before,
                 "drone-nf not registered again after NOT_FOUND");
    expect_agent_at("drone-nf", "relay-a", 3000);
    steady_agent_expect_progress(a, 50, 5000);
    steady_agent_stop(a);
    cr_expect_geq(relay_metric(relay_a.http_port,
                               "aero_route_registry_calls_total{route=\"registry\","
                               "rpc=\"heartbeat_agent\",outcome=\"not_found\"}"),
                  1.0);
    harness_finish(&relay_a, &ch_a);
}

/* The registry and relay-a, with `agent` reported there after one frame
 * (*seq moves on) and quiet since for more than two intervals. */
static struct rc_stream *start_quiet_agent(const char *agent, uint64_t *seq)
{
    registry_start(&reg, 0);
    ch_a = start_relay(&relay_a, "relay-a", NULL, NULL);
    harness_register(ch_a, agent, NULL, 0);
    struct rc_stream *s = open_stream(ch_a, agent);
    send_ok(s, agent, seq, 1);
    expect_agent_at(agent, "relay-a", 3000);
    wait_rounds(3);
    return s;
}

/* SPEC.md section 11: NOT_FOUND for an agent whose stream here has been
 * quiet for two intervals means it may have moved: never take it back,
 * until it sends here again. */
Test(route_registry, a_quiet_agent_placed_elsewhere_is_not_taken_back)
{
    uint64_t seq = 1;
    struct rc_stream *s = start_quiet_agent("drone-q", &seq);
    cr_assert_str_eq(ctl(&reg, "/place?agent=drone-q&relay=relay-b"), "ok\n");
    wait_rounds(4);
    cr_expect_eq(count_line(&reg, "/agents", "drone-q relay-b"), 1, "placement taken back");
    cr_expect_eq(calls_for(&reg, "RegisterAgent", "drone-q", "relay-a"), 1);
    long hb = calls_for(&reg, "HeartbeatAgent", "drone-q", "relay-a");
    wait_rounds(2);
    cr_expect_eq(calls_for(&reg, "HeartbeatAgent", "drone-q", "relay-a"), hb,
                 "still heartbeating an agent placed elsewhere");
    /* It sends here again: it is here, so it is reported again. */
    send_ok(s, "drone-q", &seq, 1);
    expect_agent_at("drone-q", "relay-a", 4000);
    end_stream(s);
    harness_finish(&relay_a, &ch_a);
}

/* A transient failure (HeartbeatRelay UNAVAILABLE) makes the relay register
 * again. The registry never said NOT_FOUND for the agent, so a quiet agent
 * with an open stream keeps being heartbeated (SPEC.md section 11: only
 * NOT_FOUND for the agent applies the demonstrably-here rule). */
Test(route_registry, a_quiet_agent_stays_reported_after_the_relay_registers_again)
{
    uint64_t seq = 1;
    struct rc_stream *s = start_quiet_agent("drone-calm", &seq);
    cr_assert_str_eq(ctl(&reg, "/set?unavailable_relay=1"), "ok\n");
    expect_stat("calls_RegisterRelay", 2, 5000);
    long hb = calls_for(&reg, "HeartbeatAgent", "drone-calm", "relay-a");
    wait_rounds(3);
    cr_expect_geq(calls_for(&reg, "HeartbeatAgent", "drone-calm", "relay-a"), hb + 2,
                  "a quiet agent is no longer heartbeated after the relay registered again");
    cr_expect_eq(calls_for(&reg, "RegisterAgent", "drone-calm", "relay-a"), 1);
    cr_expect_eq(count_line(&reg, "/agents", "drone-calm relay-a"), 1);
    end_stream(s);
    harness_finish(&relay_a, &ch_a);
}

/* Register and the stream opening are not messages: a stream that has
 * delivered nothing does not make the agent demonstrably here, however
 * recent its Register. */
Test(route_registry, a_stream_that_sent_nothing_does_not_take_the_agent_back)
{
    registry_start(&reg, 0);
    ch_a = start_relay(&relay_a, "relay-a", NULL, NULL);
    harness_register(ch_a, "drone-mute", NULL, 0);
    struct rc_stream *s = open_stream(ch_a, "drone-mute");
    expect_agent_at("drone-mute", "relay-a", 3000);
    cr_assert_str_eq(ctl(&reg, "/place?agent=drone-mute&relay=relay-b"), "ok\n");
    wait_rounds(3);
    cr_expect_geq(relay_metric(relay_a.http_port,
                               "aero_route_registry_calls_total{route=\"registry\","
                               "rpc=\"heartbeat_agent\",outcome=\"not_found\"}"),
                  1.0);
    cr_expect_eq(count_line(&reg, "/agents", "drone-mute relay-b"), 1,
                 "placement taken back on the strength of Register alone");
    cr_expect_eq(calls_for(&reg, "RegisterAgent", "drone-mute", "relay-a"), 1);
    end_stream(s);
    harness_finish(&relay_a, &ch_a);
}

/* Any message of the stream shows the agent is here, not only a frame: a
 * quiet generation-2 agent no longer reported sends command evidence (for
 * no command: ignored, but delivered) and is reported again. */
Test(route_registry, any_stream_message_shows_the_agent_is_here)
{
    char session[128];
    struct rc_status st;
    registry_start(&reg, 0);
    ch_a = start_relay(&relay_a, "relay-a", NULL, NULL);
    harness_register(ch_a, "drone-ev", session, sizeof(session));
    struct rc_stream *s = rc_stream_open_gen2(ch_a, "drone-ev", session, NULL, 0, &st);
    cr_assert_not_null(s, "open stream: %s", st.message);
    expect_agent_at("drone-ev", "relay-a", 3000);
    wait_rounds(3); /* more than two intervals since Register */
    cr_assert_str_eq(ctl(&reg, "/place?agent=drone-ev&relay=relay-b"), "ok\n");
    wait_rounds(3);
    cr_assert_eq(count_line(&reg, "/agents", "drone-ev relay-b"), 1, "taken back while quiet");
    uint8_t none = 0;
    cr_assert_eq(rc_stream_send_gen2_arm(s, RC_AGENT_COMMAND_EVIDENCE, &none, 0, 5000), 0);
    expect_agent_at("drone-ev", "relay-a", 4000);
    cr_expect_eq(calls_for(&reg, "RegisterAgent", "drone-ev", "relay-a"), 2);
    end_stream(s);
    harness_finish(&relay_a, &ch_a);
}

/* A registry that keeps refusing RegisterAgent as if it did not know the
 * relay: RegisterRelay succeeds each time, but the agent's retries keep
 * its backoff instead of going round at round-trip speed. */
Test(route_registry, a_registry_refusing_an_agent_is_not_hammered)
{
    registry_start(&reg, 0);
    cr_assert_str_eq(ctl(&reg, "/set?refuse_agent=drone-no"), "ok\n");
    ch_a = start_relay(&relay_a, "relay-a", NULL, NULL);
    harness_register(ch_a, "drone-no", NULL, 0);
    struct rc_stream *s = open_stream(ch_a, "drone-no");
    expect_stat("calls_RegisterAgent", 1, 3000);
    /* A fixed span to count calls in (heartbeat rounds are no clock here:
     * every RegisterRelay starts the round anew). */
    const struct timespec span = {3, 0};
    nanosleep(&span, NULL);
    long agent_calls = calls_for(&reg, "RegisterAgent", "drone-no", "relay-a");
    long relay_calls = stat_of(&reg, "calls_RegisterRelay");
    cr_log_info("refused for 3 s: %ld RegisterAgent, %ld RegisterRelay", agent_calls,
                relay_calls);
    /* 200 ms doubling to the 1 s interval: a handful in 3 s */
    cr_expect_leq(agent_calls, 10, "RegisterAgent hammered: %ld calls", agent_calls);
    cr_expect_leq(relay_calls, 11, "RegisterRelay hammered: %ld calls", relay_calls);
    cr_assert_str_eq(ctl(&reg, "/set?accept_agent=drone-no"), "ok\n");
    expect_agent_at("drone-no", "relay-a", 3000);
    end_stream(s);
    harness_finish(&relay_a, &ch_a);
}

Test(route_registry, registry_killed_and_restarted_empty_gets_everything_back)
{
    registry_start(&reg, 0);
    ch_a = start_relay(&relay_a, "relay-a", NULL, NULL);
    struct steady_agent *ag[3];
    const char *ids[3] = {"drone-r0", "drone-r1", "drone-r2"};
    for (int i = 0; i < 3; i++)
        ag[i] = steady_agent_start(relay_a.target, ids[i]);
    for (int i = 0; i < 3; i++)
        expect_agent_at(ids[i], "relay-a", 5000);
    expect_readyz(&relay_a, "{\"status\":\"ok\"}", 1000);

    int port = reg.port;
    registry_kill(&reg);
    expect_readyz(&relay_a, "{\"status\":\"ok\",\"registry\":\"unavailable\"}", 5000);
    for (int i = 0; i < 3; i++)
        steady_agent_expect_progress(ag[i], 100, 3000); /* ingest goes on */
    cr_expect_eq(relay_metric(relay_a.http_port,
                              "aero_route_registry_connected{route=\"registry\"}"),
                 0.0);

    registry_start(&reg, port); /* empty: every relay and agent forgotten */
    char line[128];
    snprintf(line, sizeof(line), "relay-a 127.0.0.1 %d", relay_a.port);
    expect_line(&reg, "/relays", line, 8000);
    for (int i = 0; i < 3; i++)
        expect_agent_at(ids[i], "relay-a", 5000);
    expect_readyz(&relay_a, "{\"status\":\"ok\"}", 3000);
    for (int i = 0; i < 3; i++) {
        steady_agent_expect_progress(ag[i], 100, 3000);
        steady_agent_stop(ag[i]); /* every ack OK, the stream ended OK */
    }
    harness_finish(&relay_a, &ch_a);
}

Test(route_registry, a_registry_stalling_every_call_does_not_slow_acks)
{
    registry_start(&reg, 0);
    cr_assert_str_eq(ctl(&reg, "/set?stall_ms=2000"), "ok\n");
    ch_a = start_relay(&relay_a, "relay-a", NULL, NULL);
    struct steady_agent *a = steady_agent_start(relay_a.target, "drone-slow");
    int64_t t0 = harness_now_ms();
    for (int i = 0; i < 5; i++) {
        char agent[32];
        snprintf(agent, sizeof(agent), "drone-slow-%d", i);
        harness_register(ch_a, agent, NULL, 0);
        struct rc_stream *s = open_stream(ch_a, agent);
        uint64_t seq = 1;
        send_ok(s, agent, &seq, 20);
        end_stream(s);
    }
    int64_t took = harness_now_ms() - t0;
    cr_log_info("5 register + stream of 20 frames with the registry stalling 2 s: %lld ms",
                (long long)took);
    /* One call that waited on the registry takes 2 s by itself; the five
     * rounds take tens of ms (ASan beside another test: hundreds). */
    cr_expect_lt(took, 1900, "the registry's stall reached the agents: %lld ms", (long long)took);
    for (int i = 0; i < 3; i++)
        steady_agent_expect_progress(a, 200, 1000);
    expect_agent_at("drone-slow", "relay-a", 10000); /* it does get there */
    steady_agent_stop(a);
    harness_finish(&relay_a, &ch_a);
}

Test(route_registry, an_agent_moving_from_relay_a_to_b_ends_registered_at_b)
{
    registry_start(&reg, 0);
    ch_a = start_relay(&relay_a, "relay-a", NULL, NULL);
    ch_b = start_relay(&relay_b, "relay-b", NULL, NULL);
    uint64_t seq = 1;
    harness_register(ch_a, "drone-m", NULL, 0);
    struct rc_stream *sa = open_stream(ch_a, "drone-m");
    send_ok(sa, "drone-m", &seq, 2);
    expect_agent_at("drone-m", "relay-a", 3000);

    /* It reconnects at B; its stream at A stays open but quiet (half-open). */
    struct steady_agent *b = steady_agent_start(relay_b.target, "drone-m");
    expect_agent_at("drone-m", "relay-b", 5000);
    wait_rounds(5);
    cr_expect_eq(count_line(&reg, "/agents", "drone-m relay-b"), 1, "drone-m not at relay-b");
    long taken = calls_for(&reg, "RegisterAgent", "drone-m", "relay-a");
    wait_rounds(3);
    cr_expect_eq(calls_for(&reg, "RegisterAgent", "drone-m", "relay-a"), taken,
                 "relay-a keeps taking drone-m back");
    cr_expect_eq(count_line(&reg, "/agents", "drone-m relay-b"), 1);
    steady_agent_stop(b);
    end_stream(sa);
    harness_finish(&relay_b, &ch_b);
    harness_finish(&relay_a, &ch_a);
}

Test(route_registry, route_redis_and_route_registry_together)
{
    char session[128], more[256];
    registry_start(&reg, 0);
    redis_server_start(&redis, 0, NULL);
    snprintf(more, sizeof(more), "[route]\nplugin = route-redis\nredis_addr = %s\n", redis.addr);
    ch_a = start_relay(&relay_a, "relay-a", NULL, more);
    harness_register(ch_a, "drone-both", session, sizeof(session));
    struct rc_stream *s = open_stream(ch_a, "drone-both");
    uint64_t seq = 1;
    send_ok(s, "drone-both", &seq, 5);
    expect_agent_at("drone-both", "relay-a", 3000);
    char want[256];
    snprintf(want, sizeof(want), "{\"relay_id\":\"relay-a\",\"session_id\":\"%s\"}", session);
    char *v = NULL;
    for (int64_t end = harness_now_ms() + 3000; harness_now_ms() < end;) {
        free(v);
        v = redis_server_get(&redis, 0, "drone:drone-both");
        if (v && strcmp(v, want) == 0)
            break;
        const struct timespec step = {0, 10 * 1000000};
        nanosleep(&step, NULL); /* polling Redis */
    }
    cr_expect_str_eq(v ? v : "(absent)", want);
    free(v);
    end_stream(s);
    for (int64_t end = harness_now_ms() + 3000; harness_now_ms() < end;) {
        v = redis_server_get(&redis, 0, "drone:drone-both");
        free(v);
        if (!v)
            break;
        const struct timespec step = {0, 10 * 1000000};
        nanosleep(&step, NULL); /* polling Redis */
    }
    cr_expect_null(v, "route-redis did not delete the key");
    wait_rounds(1);
    long hb = calls_for(&reg, "HeartbeatAgent", "drone-both", "relay-a");
    wait_rounds(2);
    cr_expect_eq(calls_for(&reg, "HeartbeatAgent", "drone-both", "relay-a"), hb);
    harness_finish(&relay_a, &ch_a);
}

/* relay_a's config (harness_write_config: listen = 127.0.0.1:<port>) with
 * `listen` instead; the line of [route:registry] in it. */
static int config_listen(const char *listen)
{
    char *text = harness_read_file(relay_a.config, NULL);
    char *p = strstr(text, "listen = 127.0.0.1:");
    cr_assert_not_null(p);
    FILE *f = fopen(relay_a.config, "w");
    fprintf(f, "%.*slisten = %s%s", (int)(p - text), text, listen, strchr(p, '\n'));
    fclose(f);
    free(text);
    text = harness_read_file(relay_a.config, NULL);
    int line = 1;
    for (const char *q = text; q < strstr(text, "[route:registry]"); q++)
        line += *q == '\n';
    free(text);
    return line;
}

Test(route_registry, check_refuses_a_wildcard_listen_without_advertise_address)
{
    char out[4096], listen[64];
    harness_prepare(&relay_a);
    harness_write_config(&relay_a, NULL,
                         "[route:registry]\nplugin = route-registry\naddress = 127.0.0.1:1\n");
    snprintf(listen, sizeof(listen), "0.0.0.0:%d", relay_a.port);
    int line = config_listen(listen);
    const char *args[] = {"-c", relay_a.config, "--check", NULL};
    cr_assert_eq(relay_run_cli(args, out, sizeof(out)), 2, "%s", out);
    char want[512];
    snprintf(want, sizeof(want),
             "aeroarc-relay: %s:%d: [route:registry] advertise_address: required: [relay] listen "
             "\"0.0.0.0:%d\" is not an address the API can dial; set the host:port it should use\n",
             relay_a.config, line, relay_a.port);
    cr_expect_str_eq(out, want);
}

/* advertise_address without a port takes the bound one: none on unix:. */
Test(route_registry, check_refuses_a_host_without_port_on_a_unix_listen)
{
    char out[4096];
    harness_prepare(&relay_a);
    harness_write_config(&relay_a, NULL,
                         "[route:registry]\nplugin = route-registry\naddress = 127.0.0.1:1\n"
                         "advertise_address = relay.example\n");
    int line = config_listen("unix:/tmp/aero-registry-none.sock");
    const char *args[] = {"-c", relay_a.config, "--check", NULL};
    cr_assert_eq(relay_run_cli(args, out, sizeof(out)), 2, "%s", out);
    char want[512];
    snprintf(want, sizeof(want),
             "aeroarc-relay: %s:%d: [route:registry] advertise_address: \"relay.example\" has no "
             "port and [relay] listen \"unix:/tmp/aero-registry-none.sock\" binds none; set "
             "host:port\n",
             relay_a.config, line + 3);
    cr_expect_str_eq(out, want);
}

/* TLS to the registry: ca_file and server_name verify it; a relay that
 * trusts another CA never registers (and says so on /readyz). */
Test(route_registry, registers_over_tls_with_ca_file_and_server_name)
{
    char dir[] = "/tmp/aero-registry-tls-XXXXXX", cmd[1024], cert[128], key[128], ca[128],
         other[128], extra[512];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd),
             "(cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 1 "
             "-subj /CN=registry-ca && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout o.key "
             "-out other.pem -days 1 -subj /CN=other-ca && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout reg.key -out reg.csr -subj /CN=registry.test && printf "
             "'subjectAltName=DNS:registry.test\\n' > san.ext && openssl x509 -req -in reg.csr "
             "-CA ca.pem -CAkey ca.key -CAcreateserial -out reg.pem -days 1 -extfile san.ext) "
             ">/dev/null 2>&1",
             dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(cert, sizeof(cert), "%s/reg.pem", dir);
    snprintf(key, sizeof(key), "%s/reg.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    snprintf(other, sizeof(other), "%s/other.pem", dir);
    registry_start_tls(&reg, 0, cert, key);

    snprintf(extra, sizeof(extra), "ca_file = %s\nserver_name = registry.test\n", ca);
    ch_a = start_relay(&relay_a, "relay-tls", extra, NULL);
    harness_register(ch_a, "tls-agent", NULL, 0);
    struct rc_stream *s = open_stream(ch_a, "tls-agent");
    expect_agent_at("tls-agent", "relay-tls", 15000);
    end_stream(s);

    /* Another CA: nothing registers, ingest goes on, /readyz says why. */
    snprintf(extra, sizeof(extra), "ca_file = %s\nserver_name = registry.test\n", other);
    ch_b = start_relay(&relay_b, "relay-untrusting", extra, NULL);
    harness_register(ch_b, "tls-agent-b", NULL, 0);
    s = open_stream(ch_b, "tls-agent-b");
    uint64_t seq = 1;
    send_ok(s, "tls-agent-b", &seq, 5);
    expect_readyz(&relay_b, "{\"status\":\"ok\",\"registry\":\"unavailable\"}", 15000);
    cr_assert_eq(count_line(&reg, "/agents", "tls-agent-b relay-untrusting"), 0);
    end_stream(s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
