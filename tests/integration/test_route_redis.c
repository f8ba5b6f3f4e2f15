/*
 * test_route_redis.c - route-redis against a real redis-server and the real
 * relay binary (SPEC.md section 4, docs/routing.md): the key and its value
 * and TTL, the refresh, FLUSHALL, compare-and-delete, Redis down at start,
 * killed, restarted and hung, a benchmark run across a Redis crash, two
 * relays sharing one Redis, password and database selection, and the idle
 * mode without an address. Every wait polls with a deadline.
 */
#include "harness.h"
#include "http_client.h"
#include "redis_server.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct redis_server redis;
static struct relay_proc relay_a, relay_b;
static struct rc_channel *ch_a, *ch_b;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* a killed Redis must not kill the test */
    /* The relays inherit this environment: only what a test sets counts. */
    unsetenv("REDIS_ADDR");
    unsetenv("REDIS_PASSWORD");
    unsetenv("REDIS_DB");
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
    redis_server_kill(&redis);
}

TestSuite(route_redis, .init = setup, .fini = teardown, .timeout = 120);

/*
 * A relay with route-redis and a file sink. relay_id / redis_addr go in the
 * environment (RELAY_ID, REDIS_ADDR) unless NULL; route_keys are the rest of
 * [route] (ttl_s and plugin keys).
 */
static struct rc_channel *start_relay_http(struct relay_proc *r, const char *relay_id,
                                           const char *redis_addr, const char *route_keys,
                                           bool http)
{
    char body[2048];
    harness_prepare(r);
    r->http = http;
    if (relay_id)
        harness_setenv(r, "RELAY_ID", relay_id);
    if (redis_addr)
        harness_setenv(r, "REDIS_ADDR", redis_addr);
    snprintf(body, sizeof(body),
             "[route]\nplugin = route-redis\n%s\n\n"
             "[sink:archive]\nplugin = sink-file\npath = %%DIR%%/data\nprefix = telemetry\n",
             route_keys);
    harness_write_config(r, NULL, body);
    relay_start(r);
    return rc_connect(r->target);
}

static struct rc_channel *start_relay(struct relay_proc *r, const char *relay_id,
                                      const char *redis_addr, const char *route_keys)
{
    return start_relay_http(r, relay_id, redis_addr, route_keys, false);
}

/* The value of `name{route="route-redis"}` on the relay's /metrics. */
static long long metric(const struct relay_proc *r, const char *name)
{
    struct http_reply rep;
    char needle[160];
    cr_assert_eq(http_request(r->http_port, "GET", "/metrics", 5000, &rep), 0);
    cr_assert_eq(rep.status, 200);
    snprintf(needle, sizeof(needle), "\n%s{route=\"route-redis\"} ", name);
    const char *p = strstr(rep.body, needle);
    cr_assert_not_null(p, "%s not on /metrics", name);
    long long v = strtoll(p + strlen(needle), NULL, 10);
    http_reply_free(&rep);
    return v;
}

static void drone_key(char *buf, size_t len, const char *drone) { snprintf(buf, len, "drone:%s", drone); }

static void value_of(char *buf, size_t len, const char *relay_id, const char *session)
{
    snprintf(buf, len, "{\"relay_id\":\"%s\",\"session_id\":\"%s\"}", relay_id, session);
}

struct key_check {
    struct redis_server *r;
    int db;
    char key[160];
    const char *want; /* NULL: the key must be absent */
};

static bool key_matches(void *arg)
{
    struct key_check *c = arg;
    char *v = redis_server_get(c->r, c->db, c->key);
    bool ok = c->want ? v && strcmp(v, c->want) == 0 : v == NULL;
    free(v);
    return ok;
}

/* Wait until drone's key in db holds relay_id/session (or, session NULL,
 * is gone); fail the test with what it holds otherwise. */
static void expect_key(struct redis_server *r, int db, const char *drone, const char *relay_id,
                       const char *session, int timeout_ms)
{
    char want[512];
    struct key_check c = {.r = r, .db = db, .want = session ? want : NULL};
    drone_key(c.key, sizeof(c.key), drone);
    value_of(want, sizeof(want), relay_id, session ? session : "");
    if (harness_wait_for(key_matches, &c, timeout_ms))
        return;
    char *v = redis_server_get(r, db, c.key);
    cr_assert_fail("%s in db %d: want %s within %d ms, holds %s", c.key, db,
                   session ? want : "(absent)", timeout_ms, v ? v : "(absent)");
}

/* The key keeps holding what expect_key saw for `ms` (a refresh that must
 * leave it alone gets ms to misbehave). */
static void expect_key_stays(struct redis_server *r, const char *drone, const char *value, int ms)
{
    struct key_check c = {.r = r, .want = value};
    drone_key(c.key, sizeof(c.key), drone);
    int64_t end = harness_now_ms() + ms;
    while (harness_now_ms() < end) {
        cr_assert(key_matches(&c), "%s changed (want %s)", c.key, value);
        const struct timespec step = {0, 50 * 1000000};
        nanosleep(&step, NULL); /* pacing of a check that must hold throughout */
    }
}

static struct rc_stream *open_stream(struct rc_channel *ch, const char *agent)
{
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, agent, NULL, 0, &st);
    cr_assert_not_null(s, "open stream: %s", st.message);
    return s;
}

/* Send n frames from *seq on and expect an OK ack for each. */
static void send_ok(struct rc_stream *s, const char *agent, uint64_t *seq, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(rc_stream_send_frame(s, harness_frame(agent, *seq + (uint64_t)i), 5000), 0);
    for (int i = 0; i < n; i++) {
        struct rc_ack ack;
        cr_assert_eq(rc_stream_recv_ack(s, &ack, 10000), 1, "%s: ack missing", agent);
        cr_assert_eq(ack.status, RC_ACK_OK, "%s seq %llu: %s %s", agent,
                     (unsigned long long)ack.seq, rc_ack_status_name(ack.status), ack.error);
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

/*
 * The relay's worker handles queued work in order: once a Register made
 * after some session end is visible in Redis, that end's compare-and-delete
 * has run too.
 */
static void barrier(struct redis_server *r, struct rc_channel *ch, const char *relay_id,
                    const char *probe)
{
    char session[128];
    harness_register(ch, probe, session, sizeof(session));
    expect_key(r, 0, probe, relay_id, session, 10000);
}

static size_t count_in_file(const char *path, const char *needle)
{
    char *text = harness_read_file(path, NULL);
    size_t n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(text);
    return n;
}

/* ----------------------------------------------------------------- tests */

Test(route_redis, register_writes_the_key_and_stream_end_deletes_it)
{
    char session[128], want[512];
    uint64_t seq = 1;
    redis_server_start(&redis, 0, NULL);
    ch_a = start_relay(&relay_a, "relay-a", redis.addr, "ttl_s = 45\n");

    harness_register(ch_a, "drone-1", session, sizeof(session));
    expect_key(&redis, 0, "drone-1", "relay-a", session, 5000);
    value_of(want, sizeof(want), "relay-a", session);
    long long ttl = redis_server_ttl(&redis, 0, "drone:drone-1");
    cr_assert(ttl > 40 && ttl <= 45, "TTL %lld, want about 45", ttl);

    struct rc_stream *s = open_stream(ch_a, "drone-1");
    send_ok(s, "drone-1", &seq, 20);
    end_stream(s);
    expect_key(&redis, 0, "drone-1", "relay-a", NULL, 5000);

    cr_expect_eq(relay_stop(&relay_a, 20000), 0);
    cr_expect_eq(count_in_file(relay_a.stderr_path, "publishing routing hints to Redis"), 1);
}

struct alive_run {
    struct rc_stream *s;
    uint64_t seq;
    int64_t end_ms;
    long checks, missing;
};

/* One tick: a frame through the stream, and the key must be there. */
static bool stream_and_check(void *arg)
{
    struct alive_run *a = arg;
    send_ok(a->s, "drone-2", &a->seq, 1);
    long long ttl = redis_server_ttl(&redis, 0, "drone:drone-2");
    a->checks++;
    if (ttl <= 0)
        a->missing++;
    return harness_now_ms() >= a->end_ms;
}

Test(route_redis, refresh_keeps_a_short_ttl_alive_and_recreates_after_flushall)
{
    char session[128];
    redis_server_start(&redis, 0, NULL);
    ch_a = start_relay(&relay_a, "relay-a", redis.addr, "ttl_s = 3\n");
    harness_register(ch_a, "drone-2", session, sizeof(session));
    struct alive_run a = {.s = open_stream(ch_a, "drone-2"), .seq = 1};
    expect_key(&redis, 0, "drone-2", "relay-a", session, 5000);

    /* 10 s of streaming is more than three TTLs: only refreshes keep it. */
    a.end_ms = harness_now_ms() + 10000;
    cr_assert(harness_wait_for(stream_and_check, &a, 30000));
    cr_assert_eq(a.missing, 0, "key missing in %ld of %ld checks", a.missing, a.checks);
    cr_assert_gt(a.checks, 20);

    /* Redis loses everything: the next refresh (ttl_s/2) recreates it. */
    const char *flush[] = {"FLUSHALL", NULL};
    redis_server_cmd(&redis, 0, flush);
    int64_t t0 = harness_now_ms();
    expect_key(&redis, 0, "drone-2", "relay-a", session, 1500 + 1000);
    cr_log_info("key back %lld ms after FLUSHALL", (long long)(harness_now_ms() - t0));

    /* Same with the relay's scripts gone too (NOSCRIPT: reload and resync). */
    const char *script_flush[] = {"SCRIPT", "FLUSH", NULL};
    redis_server_cmd(&redis, 0, script_flush);
    redis_server_cmd(&redis, 0, flush);
    t0 = harness_now_ms();
    expect_key(&redis, 0, "drone-2", "relay-a", session, 1500 + 1000);
    cr_log_info("key back %lld ms after SCRIPT FLUSH + FLUSHALL", (long long)(harness_now_ms() - t0));

    end_stream(a.s);
    expect_key(&redis, 0, "drone-2", "relay-a", NULL, 5000);
}

Test(route_redis, a_key_taken_over_by_another_session_survives_stream_end)
{
    char session[128];
    uint64_t seq = 1;
    redis_server_start(&redis, 0, NULL);
    ch_a = start_relay(&relay_a, "relay-a", redis.addr, "ttl_s = 2\n");
    harness_register(ch_a, "drone-3", session, sizeof(session));
    struct rc_stream *s = open_stream(ch_a, "drone-3");
    send_ok(s, "drone-3", &seq, 5);
    expect_key(&redis, 0, "drone-3", "relay-a", session, 5000);

    /* Someone else (another relay) now holds the drone. */
    const char *other = "{\"relay_id\":\"relay-x\",\"session_id\":\"sess-other\"}";
    const char *set[] = {"SET", "drone:drone-3", other, "EX", "60", NULL};
    redis_server_cmd(&redis, 0, set);
    /* Two refresh periods (1 s each) must leave it alone... */
    expect_key_stays(&redis, "drone-3", other, 2500);
    send_ok(s, "drone-3", &seq, 5);
    /* ...and so must the end of our session. */
    end_stream(s);
    barrier(&redis, ch_a, "relay-a", "probe-3");
    char *v = redis_server_get(&redis, 0, "drone:drone-3");
    cr_assert_not_null(v, "the other session's key was deleted");
    cr_assert_str_eq(v, other);
    free(v);
}

Test(route_redis, relay_starts_without_redis_and_publishes_once_it_answers)
{
    char session[128];
    uint64_t seq = 1;
    int port = harness_free_port();
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);

    /* relay_start waits for SERVING: Redis being down must not stop that. */
    ch_a = start_relay(&relay_a, "relay-a", addr, "ttl_s = 45\nreconnect_max_ms = 500\n");
    harness_register(ch_a, "drone-4", session, sizeof(session));
    struct rc_stream *s = open_stream(ch_a, "drone-4");
    send_ok(s, "drone-4", &seq, 10);
    cr_assert_eq(count_in_file(relay_a.stderr_path, "startup PING of Redis at"), 1);

    redis_server_start(&redis, port, NULL);
    expect_key(&redis, 0, "drone-4", "relay-a", session, 10000);
    send_ok(s, "drone-4", &seq, 10);
    end_stream(s);
    expect_key(&redis, 0, "drone-4", "relay-a", NULL, 5000);
}

Test(route_redis, redis_killed_and_restarted_mid_stream_gets_the_keys_back)
{
    char s1[128], s2[128];
    uint64_t seq1 = 1, seq2 = 1;
    redis_server_start(&redis, 0, NULL);
    ch_a = start_relay_http(&relay_a, "relay-a", redis.addr,
                            "ttl_s = 2\nreconnect_max_ms = 500\n", true);
    harness_register(ch_a, "drone-5a", s1, sizeof(s1));
    struct rc_stream *a = open_stream(ch_a, "drone-5a");
    harness_register(ch_a, "drone-5b", s2, sizeof(s2));
    struct rc_stream *b = open_stream(ch_a, "drone-5b");
    send_ok(a, "drone-5a", &seq1, 10);
    send_ok(b, "drone-5b", &seq2, 10);
    expect_key(&redis, 0, "drone-5a", "relay-a", s1, 5000);
    expect_key(&redis, 0, "drone-5b", "relay-a", s2, 5000);

    redis_server_kill(&redis);
    send_ok(a, "drone-5a", &seq1, 20); /* ingest goes on without Redis */
    send_ok(b, "drone-5b", &seq2, 20);
    redis_server_restart(&redis); /* same port, empty */
    expect_key(&redis, 0, "drone-5a", "relay-a", s1, 10000);
    expect_key(&redis, 0, "drone-5b", "relay-a", s2, 10000);
    cr_expect_eq(metric(&relay_a, "aero_route_redis_publishes_total"), 2);
    cr_expect_geq(metric(&relay_a, "aero_route_redis_refreshes_total"), 2);
    cr_expect_geq(metric(&relay_a, "aero_route_redis_reconnects_total"), 1);
    cr_expect_geq(metric(&relay_a, "aero_route_redis_errors_total"), 1);
    cr_expect_eq(metric(&relay_a, "aero_route_redis_connected"), 1);
    cr_expect_eq(metric(&relay_a, "aero_route_redis_sessions"), 2);
    send_ok(a, "drone-5a", &seq1, 10);
    end_stream(a);
    expect_key(&redis, 0, "drone-5a", "relay-a", NULL, 5000);
    expect_key(&redis, 0, "drone-5b", "relay-a", s2, 1000);
    end_stream(b);
    expect_key(&redis, 0, "drone-5b", "relay-a", NULL, 5000);
    cr_expect_eq(metric(&relay_a, "aero_route_redis_deletes_total"), 2);
    cr_expect_eq(metric(&relay_a, "aero_route_redis_sessions"), 0);
    cr_expect_eq(metric(&relay_a, "aero_route_redis_pending_deletes"), 0);
}

/* What /readyz?verbose says of the route, polled until it says `want`. */
struct route_readiness {
    const struct relay_proc *relay;
    const char *want; /* a substring of the body */
    int status;       /* /readyz's (plain) status at the last poll */
    char body[1024];  /* /readyz?verbose at the last poll */
};

static bool readiness_says(void *arg)
{
    struct route_readiness *w = arg;
    struct http_reply rep;
    if (http_request(w->relay->http_port, "GET", "/readyz?verbose", 5000, &rep) != 0)
        return false;
    snprintf(w->body, sizeof(w->body), "%s", rep.body);
    http_reply_free(&rep);
    w->status = http_get_status(w->relay->http_port, "/readyz", 5000);
    return strstr(w->body, w->want) != NULL;
}

/* Issue 18: the route reports its state, listed by /readyz?verbose: ok
 * while connected, failing "not connected to Redis" while Redis is gone,
 * ok again once it is back. A failing route never makes /readyz 503
 * (routes are hints; no frame waits on them) and ingest goes on. */
Test(route_redis, readyz_lists_the_route_failing_while_redis_is_down_and_stays_200)
{
    char s1[128];
    uint64_t seq = 1;
    redis_server_start(&redis, 0, NULL);
    /* ttl_s = 2: a refresh (or PING) every second notices Redis gone */
    ch_a = start_relay_http(&relay_a, "relay-a", redis.addr, "ttl_s = 2\nreconnect_max_ms = 300\n",
                            true);
    struct route_readiness w = {.relay = &relay_a};
    char ok[160], failing[160];
    snprintf(ok, sizeof(ok),
             "\"route:route-redis\":{\"state\":\"ok\",\"reason\":\"connected to Redis at %s\"}",
             redis.addr);
    snprintf(failing, sizeof(failing),
             "\"route:route-redis\":{\"state\":\"failing\",\"reason\":\"not connected to "
             "Redis at %s: ",
             redis.addr);
    w.want = ok;
    cr_assert(harness_wait_for(readiness_says, &w, 10000), "not ok at start: %s", w.body);
    cr_assert_not_null(strstr(w.body, "\"sink:archive\":{\"state\":\"ok\"}"), "%s", w.body);
    cr_assert_eq(w.status, 200);

    harness_register(ch_a, "drone-r1", s1, sizeof(s1));
    struct rc_stream *a = open_stream(ch_a, "drone-r1");
    redis_server_kill(&redis);
    send_ok(a, "drone-r1", &seq, 5); /* ingest goes on */
    w.want = failing;
    cr_assert(harness_wait_for(readiness_says, &w, 15000), "never failing: %s", w.body);
    cr_assert_eq(w.status, 200, "a failing route made /readyz %d", w.status);
    send_ok(a, "drone-r1", &seq, 5); /* ingest unaffected */

    redis_server_restart(&redis);
    w.want = ok;
    cr_assert(harness_wait_for(readiness_says, &w, 15000), "not ok again: %s", w.body);
    expect_key(&redis, 0, "drone-r1", "relay-a", s1, 10000);
    end_stream(a);
}

/* Bytes of every file in dir. */
static long long dir_bytes(const char *dir)
{
    long long total = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[1024];
        struct stat sb;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.' && stat(path, &sb) == 0)
            total += sb.st_size;
    }
    if (d)
        closedir(d);
    return total;
}

struct bench_run {
    pid_t pid;
    int status;
    bool exited;
    char data_dir[300];
};

static bool bench_exited(void *arg)
{
    struct bench_run *b = arg;
    if (!b->exited && waitpid(b->pid, &b->status, WNOHANG) == b->pid)
        b->exited = true;
    return b->exited;
}

/* The bench is mid-run (or it ended): 40,000 frames make about 23 MB of
 * sink file, so 10 MB is a little under half way. */
static bool bench_halfway(void *arg)
{
    struct bench_run *b = arg;
    return bench_exited(b) || dir_bytes(b->data_dir) >= 10 * 1024 * 1024;
}

Test(route_redis, bench_run_survives_redis_killed_halfway)
{
    char out_path[400], err_path[400];
    redis_server_start(&redis, 0, NULL);
    ch_a = start_relay(&relay_a, "relay-a", redis.addr, "ttl_s = 2\nreconnect_max_ms = 500\n");
    struct bench_run b = {0};
    snprintf(b.data_dir, sizeof(b.data_dir), "%s/data", relay_a.dir);
    snprintf(out_path, sizeof(out_path), "%s/bench.json", relay_a.dir);
    snprintf(err_path, sizeof(err_path), "%s/bench.err", relay_a.dir);

    pid_t parent = getpid();
    b.pid = fork();
    cr_assert_geq(b.pid, 0);
    if (b.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(out, 1);
        dup2(err, 2);
        execl(AERO_BINARY_DIR "/aeroarc-bench", "aeroarc-bench", "--target", relay_a.target,
              "--agents", "20", "--frames", "2000", "--window", "50", (char *)NULL);
        _exit(127);
    }

    cr_assert(harness_wait_for(bench_halfway, &b, 60000), "the bench never got going");
    bool running = !bench_exited(&b);
    long long keys = redis_server_dbsize(&redis, 0);
    redis_server_kill(&redis);
    cr_assert(running, "the bench finished before Redis could be killed mid-run");
    cr_assert_gt(keys, 0, "no route keys while the bench streamed");

    cr_assert(harness_wait_for(bench_exited, &b, 90000), "the bench did not finish");
    char *json = harness_read_file(out_path, NULL);
    char *errs = harness_read_file(err_path, NULL);
    cr_assert(WIFEXITED(b.status) && WEXITSTATUS(b.status) == 0, "bench status %d: %s %s",
              b.status, json ? json : "", errs ? errs : "");
    cr_assert_not_null(json);
    cr_assert_not_null(strstr(json, "\"stream_errors\":0,"), "%s", json);
    cr_assert_not_null(strstr(json, "\"register_errors\":0,"), "%s", json);
    cr_assert_not_null(strstr(json, "\"ok\":40000,"), "%s", json);
    free(json);
    free(errs);

    /* And routing comes back with Redis. */
    char session[128];
    redis_server_restart(&redis);
    harness_register(ch_a, "drone-6", session, sizeof(session));
    uint64_t seq = 1;
    struct rc_stream *s = open_stream(ch_a, "drone-6");
    send_ok(s, "drone-6", &seq, 5);
    expect_key(&redis, 0, "drone-6", "relay-a", session, 10000);
    end_stream(s);
}

Test(route_redis, a_drone_moving_to_another_relay_keeps_the_new_route)
{
    char sa[128], sb[128], want_b[512];
    uint64_t seq_a = 1, seq_b = 1;
    redis_server_start(&redis, 0, NULL);
    ch_a = start_relay(&relay_a, "relay-a", redis.addr, "ttl_s = 2\n");
    ch_b = start_relay(&relay_b, "relay-b", redis.addr, "ttl_s = 2\n");

    harness_register(ch_a, "drone-7", sa, sizeof(sa));
    struct rc_stream *on_a = open_stream(ch_a, "drone-7");
    send_ok(on_a, "drone-7", &seq_a, 5);
    expect_key(&redis, 0, "drone-7", "relay-a", sa, 5000);

    /* The agent reconnects to relay B; A has not noticed yet. */
    harness_register(ch_b, "drone-7", sb, sizeof(sb));
    struct rc_stream *on_b = open_stream(ch_b, "drone-7");
    send_ok(on_b, "drone-7", &seq_b, 5);
    expect_key(&redis, 0, "drone-7", "relay-b", sb, 5000);
    value_of(want_b, sizeof(want_b), "relay-b", sb);
    /* A keeps refreshing its session (every second) without taking it back. */
    send_ok(on_a, "drone-7", &seq_a, 5);
    expect_key_stays(&redis, "drone-7", want_b, 2500);

    /* A's late disconnect must not erase B's route. */
    end_stream(on_a);
    barrier(&redis, ch_a, "relay-a", "probe-7");
    expect_key(&redis, 0, "drone-7", "relay-b", sb, 1000);
    send_ok(on_b, "drone-7", &seq_b, 5);
    end_stream(on_b);
    expect_key(&redis, 0, "drone-7", "relay-b", NULL, 5000);
}

Test(route_redis, password_and_database_from_the_environment_win)
{
    char session[128];
    redis_server_start(&redis, 0, "s3cret-pw");
    harness_prepare(&relay_a);
    harness_setenv(&relay_a, "RELAY_ID", "relay-a");
    harness_setenv(&relay_a, "REDIS_ADDR", redis.addr);
    harness_setenv(&relay_a, "REDIS_PASSWORD", "s3cret-pw");
    harness_setenv(&relay_a, "REDIS_DB", "3");
    /* relay.ini says otherwise on every point: the environment wins. */
    harness_write_config(&relay_a, NULL,
                         "[route]\nplugin = route-redis\nttl_s = 45\n"
                         "redis_addr = 127.0.0.1:1\nredis_password = wrong\nredis_db = 1\n");
    relay_start(&relay_a);
    ch_a = rc_connect(relay_a.target);

    harness_register(ch_a, "drone-8", session, sizeof(session));
    expect_key(&redis, 3, "drone-8", "relay-a", session, 5000);
    cr_assert_eq(redis_server_dbsize(&redis, 0), 0);
    cr_assert_eq(redis_server_dbsize(&redis, 1), 0);
    cr_assert_eq(relay_stop(&relay_a, 20000), 0);
    expect_key(&redis, 3, "drone-8", "relay-a", NULL, 1000); /* deleted at shutdown */
    cr_assert_eq(count_in_file(relay_a.stderr_path, "s3cret-pw"), 0, "the password was logged");
}

Test(route_redis, password_and_database_from_relay_ini)
{
    char session[128], keys[256];
    redis_server_start(&redis, 0, "ini-pw");
    snprintf(keys, sizeof(keys),
             "ttl_s = 45\nredis_addr = %s\nredis_password = ini-pw\nredis_db = 2\n", redis.addr);
    ch_a = start_relay(&relay_a, "relay-a", NULL, keys);
    harness_register(ch_a, "drone-9", session, sizeof(session));
    expect_key(&redis, 2, "drone-9", "relay-a", session, 5000);
    cr_assert_eq(redis_server_dbsize(&redis, 0), 0);
}

Test(route_redis, without_an_address_routing_idles_and_says_so_once)
{
    char session[128];
    uint64_t seq = 1;
    ch_a = start_relay(&relay_a, "relay-a", NULL, "ttl_s = 45\n");
    harness_register(ch_a, "drone-10", session, sizeof(session));
    struct rc_stream *s = open_stream(ch_a, "drone-10");
    send_ok(s, "drone-10", &seq, 10);
    end_stream(s);
    cr_assert_eq(relay_stop(&relay_a, 20000), 0);
    cr_assert_eq(count_in_file(relay_a.stderr_path, "routing is idle"), 1);
    cr_assert_eq(count_in_file(relay_a.stderr_path, "route:route-redis"), 1,
                 "route-redis logged more than its one idle line");
}

Test(route_redis, a_hung_redis_slows_neither_ingest_nor_shutdown)
{
    char session[128];
    uint64_t seq = 1;
    redis_server_start(&redis, 0, NULL);
    /* A long command timeout: the relay's Redis thread stays blocked on the
     * hung server for the whole test unless shutdown cuts it loose. */
    ch_a = start_relay(&relay_a, "relay-a", redis.addr, "ttl_s = 2\ncommand_timeout_ms = 30000\n");
    harness_register(ch_a, "drone-11", session, sizeof(session));
    struct rc_stream *s = open_stream(ch_a, "drone-11");
    send_ok(s, "drone-11", &seq, 5);
    expect_key(&redis, 0, "drone-11", "relay-a", session, 5000);

    /* Redis stops answering but keeps its sockets open. */
    redis_server_pause(&redis);
    int64_t t0 = harness_now_ms();
    for (int i = 0; i < 10; i++) {
        char agent[32];
        struct rc_register_result res;
        struct rc_status st;
        snprintf(agent, sizeof(agent), "hung-%d", i);
        /* A Register that waited on Redis would wait 30 s. */
        cr_assert_eq(rc_register(ch_a, agent, "1", "linux/amd64", &res, &st, 3000), 0,
                     "register %s: %s %s", agent, rc_status_code_name(st.code), st.message);
    }
    for (int i = 0; i < 10; i++)
        send_ok(s, "drone-11", &seq, 50);
    cr_log_info("10 registers and 500 frames with Redis hung: %lld ms",
                (long long)(harness_now_ms() - t0));
    end_stream(s);

    t0 = harness_now_ms();
    cr_assert_eq(relay_stop(&relay_a, 20000), 0);
    int64_t took = harness_now_ms() - t0;
    cr_log_info("shutdown with Redis hung: %lld ms", (long long)took);
    cr_assert_lt(took, 8000, "shutdown took %lld ms with Redis hung", (long long)took);
    cr_assert_eq(count_in_file(relay_a.stderr_path, "shutdown: could not delete"), 1);
    redis_server_resume(&redis);
}

Test(route_redis, shutdown_deletes_the_keys_of_sessions_without_a_stream)
{
    char s1[128], s2[128];
    redis_server_start(&redis, 0, NULL);
    ch_a = start_relay(&relay_a, "relay-a", redis.addr, "ttl_s = 45\n");
    harness_register(ch_a, "drone-12a", s1, sizeof(s1));
    harness_register(ch_a, "drone-12b", s2, sizeof(s2));
    expect_key(&redis, 0, "drone-12a", "relay-a", s1, 5000);
    expect_key(&redis, 0, "drone-12b", "relay-a", s2, 5000);
    /* A key the relay does not own stays. */
    const char *other = "{\"relay_id\":\"relay-x\",\"session_id\":\"sess-x\"}";
    const char *set[] = {"SET", "drone:drone-12c", other, NULL};
    redis_server_cmd(&redis, 0, set);

    cr_assert_eq(relay_stop(&relay_a, 20000), 0);
    /* Gone by the time the relay has exited: no waiting. */
    char *a = redis_server_get(&redis, 0, "drone:drone-12a");
    char *b = redis_server_get(&redis, 0, "drone:drone-12b");
    char *c = redis_server_get(&redis, 0, "drone:drone-12c");
    cr_expect_null(a, "drone-12a: %s", a);
    cr_expect_null(b, "drone-12b: %s", b);
    cr_expect_not_null(c);
    free(a);
    free(b);
    free(c);
}

Test(route_redis, a_bad_redis_environment_stops_the_start_naming_the_variable)
{
    char out[8192];
    harness_prepare(&relay_a);
    harness_write_config(&relay_a, NULL, "[route]\nplugin = route-redis\n");
    const char *args[] = {"-c", relay_a.config, NULL};

    /* route-redis' check runs before any plugin starts (as under --check):
     * a configuration error, exit 2, naming the variable. */
    setenv("REDIS_ADDR", "localhost:99999", 1); /* relay_run_cli passes our environment on */
    cr_assert_eq(relay_run_cli(args, out, sizeof(out)), 2, "%s", out);
    cr_assert_not_null(strstr(out, "REDIS_ADDR: invalid address \"localhost:99999\""), "%s", out);

    setenv("REDIS_ADDR", "127.0.0.1:1", 1);
    setenv("REDIS_DB", "seven", 1);
    cr_assert_eq(relay_run_cli(args, out, sizeof(out)), 2, "%s", out);
    cr_assert_not_null(strstr(out, "REDIS_DB: invalid value \"seven\" (expected an integer from 0 to 1000000)"),
                       "%s", out);
}

/* ------------------------------------------------ SIGHUP and the routes */

/* relay.ini keeps everything up to its "; routes below" line; `tail`
 * (may be "") replaces what follows. Renamed into place: never half-written. */
static void set_route_tail(struct relay_proc *r, const char *tail)
{
    char *cfg = harness_read_file(r->config, NULL);
    cr_assert_not_null(cfg);
    char *mark = strstr(cfg, "; routes below\n");
    cr_assert_not_null(mark);
    mark[strlen("; routes below\n")] = '\0';
    char tmp[400];
    snprintf(tmp, sizeof(tmp), "%s.new", r->config);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s%s", cfg, tail);
    fclose(f);
    cr_assert_eq(rename(tmp, r->config), 0);
    free(cfg);
}

/* The value of a whole series ("name{labels}") on the relay's /metrics; 0
 * when it is not there. */
static double series_value(const struct relay_proc *r, const char *series)
{
    struct http_reply rep;
    char needle[256];
    cr_assert_eq(http_request(r->http_port, "GET", "/metrics", 5000, &rep), 0);
    snprintf(needle, sizeof(needle), "\n%s ", series);
    const char *p = strstr(rep.body, needle);
    double v = p ? strtod(p + strlen(needle), NULL) : 0;
    http_reply_free(&rep);
    return v;
}

struct series_at_least {
    const struct relay_proc *r;
    const char *series;
    double want;
};

static bool series_reached(void *arg)
{
    struct series_at_least *s = arg;
    return series_value(s->r, s->series) >= s->want;
}

/* SIGHUP, then wait until the reload's outcome is counted. */
static void sighup(struct relay_proc *r, const char *result)
{
    char series[96];
    snprintf(series, sizeof(series), "aero_relay_config_reloads_total{result=\"%s\"}", result);
    struct series_at_least s = {r, series, series_value(r, series) + 1};
    cr_assert_eq(kill(r->pid, SIGHUP), 0);
    cr_assert(harness_wait_for(series_reached, &s, 10000), "no %s reload counted", result);
}

Test(route_redis, sighup_adds_a_route_publisher_that_learns_every_session_then_removes_it)
{
    redis_server_start(&redis, 0, NULL);
    harness_prepare(&relay_a);
    relay_a.http = true;
    harness_setenv(&relay_a, "RELAY_ID", "relay-r");
    harness_write_config(&relay_a, NULL,
                         "[route]\nplugin = route-none\n\n"
                         "[sink:archive]\nplugin = sink-file\npath = %DIR%/data\n\n"
                         "; routes below\n");
    relay_start(&relay_a);
    ch_a = rc_connect(relay_a.target);

    /* Sessions from before the reload: one with a stream, one without. */
    char s1[128], s2[128];
    harness_register(ch_a, "drone-r1", s1, sizeof(s1));
    struct rc_stream *st1 = open_stream(ch_a, "drone-r1");
    uint64_t seq = 1;
    send_ok(st1, "drone-r1", &seq, 3);
    harness_register(ch_a, "drone-r2", s2, sizeof(s2));

    /* Added: the new publisher is told both before anything else. */
    char tail[256];
    snprintf(tail, sizeof(tail), "[route:redis]\nplugin = route-redis\nredis_addr = %s\n",
             redis.addr);
    set_route_tail(&relay_a, tail);
    sighup(&relay_a, "ok");
    expect_key(&redis, 0, "drone-r1", "relay-r", s1, 10000);
    expect_key(&redis, 0, "drone-r2", "relay-r", s2, 10000);
    cr_assert_eq(series_value(&relay_a, "aero_route_stream_opened_total{route=\"redis\"}"), 1,
                 "the open stream was not told to the new publisher");
    /* ... and every event after it: a new session, a stream's end. */
    char s3[128];
    harness_register(ch_a, "drone-r3", s3, sizeof(s3));
    expect_key(&redis, 0, "drone-r3", "relay-r", s3, 10000);
    send_ok(st1, "drone-r1", &seq, 3); /* frames flow through the reload */
    end_stream(st1);
    expect_key(&redis, 0, "drone-r1", "relay-r", NULL, 10000);

    /* A bad route section is refused whole: the publisher keeps running. */
    snprintf(tail, sizeof(tail),
             "[route:redis]\nplugin = route-redis\nredis_addr = %s\n\n"
             "[route:bad]\nplugin = route-nope\n",
             redis.addr);
    set_route_tail(&relay_a, tail);
    sighup(&relay_a, "error");
    char s4[128];
    harness_register(ch_a, "drone-r4", s4, sizeof(s4));
    expect_key(&redis, 0, "drone-r4", "relay-r", s4, 10000);

    /* Removed: stopped, and no event reaches it any more. Register
     * calls route_up before it answers, so the count is final here. */
    set_route_tail(&relay_a, "");
    sighup(&relay_a, "ok");
    cr_assert_eq(count_in_file(relay_a.stderr_path, "route:redis: stopped"), 1);
    double ups = series_value(&relay_a, "aero_route_session_up_total{route=\"redis\"}");
    char s5[128];
    harness_register(ch_a, "drone-r5", s5, sizeof(s5));
    cr_assert_eq(series_value(&relay_a, "aero_route_session_up_total{route=\"redis\"}"), ups);
    char *v = redis_server_get(&redis, 0, "drone:drone-r5");
    cr_assert_null(v, "a removed publisher wrote drone-r5: %s", v);
}
