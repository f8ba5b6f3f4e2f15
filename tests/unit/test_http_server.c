/*
 * test_http_server.c - the HTTP endpoints (core/http_server.c) on their own:
 * status codes, bodies and content types of /metrics, /healthz, /readyz,
 * 404/405, readiness following the relay's flags, a clear error for a port
 * in use, a stuck client not blocking a scrape, one answer per connection,
 * slowloris clients held at the gate (header deadline, per-address room,
 * /healthz answered throughout), and no file descriptor left behind after
 * stop.
 */
#include "http_server.h"

#include "integration/http_client.h"
#include "metrics.h"
#include "readiness.h"
#include "relay.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct relay relay;
static struct http_server *server;
static int port;

static void setup(void)
{
    memset(&relay, 0, sizeof(relay));
    relay.metrics = metrics_create();
    char err[256];
    cr_assert_eq(http_server_start(&server, "127.0.0.1:0", &relay, err, sizeof(err)), 0, "%s",
                 err);
    port = http_server_port(server);
    cr_assert_gt(port, 0);
}

static void teardown(void)
{
    http_server_stop(server);
    metrics_destroy(relay.metrics);
}

TestSuite(http, .init = setup, .fini = teardown, .timeout = 30);

static struct http_reply get(const char *method, const char *path)
{
    struct http_reply r;
    int rc = http_request(port, method, path, 5000, &r);
    cr_assert_eq(rc, 0, "%s %s: %s", method, path, strerror(-rc));
    return r;
}

Test(http, metrics_serves_the_registry_in_text_format_0_0_4)
{
    metrics_add(metrics_register(relay.metrics, AERO_METRIC_COUNTER, "frames_total", "Frames.",
                                 "sink=\"a\""),
                42);
    struct http_reply r = get("GET", "/metrics");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    /* (with the server's own counters, aero_relay_http_connections_dropped_total) */
    cr_assert_not_null(strstr(r.body, "# HELP frames_total Frames.\n# TYPE frames_total counter\n"
                                      "frames_total{sink=\"a\"} 42\n"),
                       "%s", r.body);
    char out[2048];
    cr_assert_eq(http_promtool_check(r.body, r.body_len, out, sizeof(out)), 0, "%s", out);
    http_reply_free(&r);

    /* Every scrape renders afresh. */
    metrics_add(metrics_register(relay.metrics, AERO_METRIC_COUNTER, "frames_total", "",
                                 "sink=\"a\""),
                1);
    r = get("GET", "/metrics");
    cr_assert_eq(http_metric_value(r.body, "frames_total{sink=\"a\"}"), 43);
    http_reply_free(&r);
}

Test(http, healthz_is_ok_and_readyz_follows_ready_and_shutting_down)
{
    struct http_reply r = get("GET", "/healthz");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    cr_assert_str_eq(r.content_type, "application/json");
    http_reply_free(&r);

    r = get("GET", "/readyz");
    cr_assert_eq(r.status, 503, "not ready before the relay says so");
    cr_assert_str_eq(r.body, "{\"status\":\"not ready\"}");
    http_reply_free(&r);

    atomic_store(&relay.ready, true);
    r = get("GET", "/readyz");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    http_reply_free(&r);

    atomic_store(&relay.shutting_down, true); /* even with ready still set */
    cr_assert_eq(http_get_status(port, "/readyz", 5000), 503);
    cr_assert_eq(http_get_status(port, "/healthz", 5000), 200, "alive while draining");
}

/* SPEC.md section 3: a plugin's detail rides along in a 200 body, and
 * never turns a ready relay unready (nor a draining one ready). */
Test(http, readyz_carries_plugin_details_while_ready)
{
    static const char owner_a = 'a', owner_b = 'b';
    relay.readiness = readiness_create();
    cr_assert_not_null(relay.readiness);
    atomic_store(&relay.ready, true);
    cr_assert_eq(readiness_set(relay.readiness, &owner_a, "registry", "unavailable"), 0);
    struct http_reply r = get("GET", "/readyz");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\",\"registry\":\"unavailable\"}");
    cr_assert_str_eq(r.content_type, "application/json");
    http_reply_free(&r);

    cr_expect_eq(readiness_set(relay.readiness, &owner_b, "registry", "x"), -EEXIST);
    cr_expect_eq(readiness_set(relay.readiness, &owner_b, "status", "x"), -EINVAL);
    cr_expect_eq(readiness_set(relay.readiness, &owner_b, "Bad", "x"), -EINVAL);
    cr_expect_eq(readiness_set(relay.readiness, &owner_b, "k", "a\"b"), -EINVAL);

    cr_assert_eq(readiness_set(relay.readiness, &owner_a, "registry", NULL), 0);
    r = get("GET", "/readyz");
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    http_reply_free(&r);

    cr_assert_eq(readiness_set(relay.readiness, &owner_b, "cache", "cold"), 0);
    atomic_store(&relay.shutting_down, true);
    r = get("GET", "/readyz");
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(r.body, "{\"status\":\"not ready\"}");
    http_reply_free(&r);
    readiness_clear_owner(relay.readiness, &owner_b);
    char buf[64];
    cr_expect_eq(readiness_render(relay.readiness, buf, sizeof(buf)), 0);
    http_server_stop(server); /* before the table goes */
    server = NULL;
    readiness_destroy(relay.readiness);
}

/* Issue 18: every sink and route with its state. /readyz's 200 body stays
 * SPEC's; /readyz?verbose lists the components whatever the status, and a
 * 503 for a failing sink lists them too. A route's entry goes with its
 * owner; sinks are replaced as a whole (a reload may change the set). */
Test(http, readyz_verbose_lists_every_component_and_the_plain_body_stays_spec)
{
    static const char route_a = 'a', route_b = 'b';
    relay.readiness = readiness_create();
    cr_assert_not_null(relay.readiness);
    atomic_store(&relay.ready, true);
    const struct readiness_component sinks[2] = {
        {.name = "sink:archive", .state = AERO_STATE_OK},
        {.name = "sink:bus", .state = AERO_STATE_DEGRADED, .reason = "nats: \"slow\"\n"},
    };
    readiness_set_sinks(relay.readiness, sinks, 2);
    cr_assert_eq(readiness_route_state(relay.readiness, &route_a, "route:route-redis",
                                       AERO_STATE_FAILING, "not connected to Redis at x:1"),
                 0);
    cr_assert_eq(readiness_route_state(relay.readiness, &route_b, "route:reg", AERO_STATE_OK,
                                       NULL),
                 0);
    cr_expect_eq(readiness_route_state(relay.readiness, &route_b, "route:reg", (aero_state)7,
                                       NULL),
                 -EINVAL);

    struct http_reply r = get("GET", "/readyz");
    cr_assert_eq(r.status, 200, "a failing route never makes the relay unready");
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    http_reply_free(&r);
    static const char all[] =
        "\"components\":{\"sink:archive\":{\"state\":\"ok\"},"
        "\"sink:bus\":{\"state\":\"degraded\",\"reason\":\"nats: _slow__\"},"
        "\"route:route-redis\":{\"state\":\"failing\",\"reason\":\"not connected to Redis "
        "at x:1\"},\"route:reg\":{\"state\":\"ok\"}}";
    char want[512];
    snprintf(want, sizeof(want), "{\"status\":\"ok\",%s}", all);
    r = get("GET", "/readyz?verbose");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, want);
    http_reply_free(&r);

    /* A sink failing long enough: 503 naming it, and every component. */
    readiness_set_unready(relay.readiness, "sink:bus", "down");
    snprintf(want, sizeof(want),
             "{\"status\":\"not ready\",\"component\":\"sink:bus\",\"reason\":\"down\",%s}",
             all);
    r = get("GET", "/readyz");
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(r.body, want);
    http_reply_free(&r);
    readiness_set_unready(relay.readiness, NULL, NULL);

    /* The route gone (its host destroyed), one sink left after a reload;
     * while stopping the plain 503 stays SPEC's, verbose still lists. */
    readiness_clear_owner(relay.readiness, &route_a);
    readiness_set_sinks(relay.readiness, sinks, 1);
    atomic_store(&relay.shutting_down, true);
    r = get("GET", "/readyz");
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(r.body, "{\"status\":\"not ready\"}");
    http_reply_free(&r);
    r = get("GET", "/readyz?verbose");
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(r.body, "{\"status\":\"not ready\",\"components\":{\"sink:archive\":{"
                             "\"state\":\"ok\"},\"route:reg\":{\"state\":\"ok\"}}}");
    http_reply_free(&r);
    http_server_stop(server); /* before the table goes */
    server = NULL;
    readiness_destroy(relay.readiness);
}

Test(http, other_paths_are_404_and_other_methods_405)
{
    const char *paths[] = {"/", "/metric", "/metrics/", "/healthz/x", "/READYZ", NULL};
    for (size_t i = 0; paths[i]; i++)
        cr_assert_eq(http_get_status(port, paths[i], 5000), 404, "%s", paths[i]);
    const char *methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", NULL};
    for (size_t i = 0; methods[i]; i++) {
        struct http_reply r = get(methods[i], "/metrics");
        cr_assert_eq(r.status, 405, "%s", methods[i]);
        cr_assert_str_eq(r.allow, "GET, HEAD");
        http_reply_free(&r);
    }
    struct http_reply r = get("HEAD", "/healthz");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 0, "HEAD has no body");
    http_reply_free(&r);
    /* A query string does not change the endpoint. */
    cr_assert_eq(http_get_status(port, "/healthz?verbose=1", 5000), 200);
}

static int connect_loopback(int p)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)p),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

Test(http, a_stuck_client_does_not_block_a_scrape)
{
    int stuck[8];
    for (int i = 0; i < 8; i++) {
        stuck[i] = connect_loopback(port);
        const char *half = "GET /metrics HTTP/1.1\r\nHost: x\r\n"; /* never finished */
        cr_assert_eq(write(stuck[i], half, strlen(half)), (ssize_t)strlen(half));
    }
    cr_assert_eq(http_get_status(port, "/metrics", 2000), 200);
    cr_assert_eq(http_get_status(port, "/healthz", 2000), 200);
    for (int i = 0; i < 8; i++)
        close(stuck[i]);
}

/* One answer per connection ("Connection: close"): a kept-alive
 * connection's next request would reach the server without passing the
 * gate's header deadline. */
Test(http, each_connection_gets_one_answer_and_is_closed)
{
    int fd = connect_loopback(port);
    const char *two = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    cr_assert_eq(write(fd, two, strlen(two)), (ssize_t)strlen(two));
    char buf[4096];
    size_t n = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 5000), 1, "no answer");
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
    const char *first = strstr(buf, "HTTP/1.1 200");
    cr_assert_not_null(first, "%s", buf);
    cr_assert(strstr(buf, "Connection: close\r\n") || strstr(buf, "connection: close\r\n"),
              "%s", buf);
    cr_assert_null(strstr(first + 1, "HTTP/1.1"), "a second answer: %s", buf);
}

Test(http, a_port_in_use_is_a_clear_error)
{
    char addr[64], err[256];
    struct http_server *second = NULL;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    cr_assert_eq(http_server_start(&second, addr, &relay, err, sizeof(err)), -1);
    cr_assert_null(second);
    cr_assert_not_null(strstr(err, "Address already in use"), "%s", err);
    cr_assert_not_null(strstr(err, addr), "%s", err);

    cr_assert_eq(http_server_start(&second, "no-port", &relay, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "expected host:port"), "%s", err);
    cr_assert_eq(http_server_start(&second, "no.such.host.invalid:80", &relay, err, sizeof(err)),
                 -1);
    cr_assert_not_null(strstr(err, "no.such.host.invalid"), "%s", err);
}

Test(http, ipv6_loopback_works_when_the_host_has_it)
{
    char err[256];
    struct http_server *v6 = NULL;
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool have_v6 = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    int rc = http_server_start(&v6, "[::1]:0", &relay, err, sizeof(err));
    if (have_v6) {
        cr_assert_eq(rc, 0, "%s", err);
        cr_assert_gt(http_server_port(v6), 0);
    } else {
        cr_assert_eq(rc, -1, "no IPv6 here: must fail cleanly");
    }
    http_server_stop(v6);
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

Test(http, stop_closes_the_socket_and_the_port_is_free_again)
{
    char addr[64], err[256];
    int before = count_fds();
    struct http_server *s = NULL;
    cr_assert_eq(http_server_start(&s, "127.0.0.1:0", &relay, err, sizeof(err)), 0, "%s", err);
    int p = http_server_port(s);
    cr_assert_eq(http_get_status(p, "/healthz", 5000), 200);
    http_server_stop(s);
    cr_assert_eq(count_fds(), before, "a descriptor leaked");
    cr_assert_lt(http_get_status(p, "/healthz", 2000), 0, "still answering after stop");
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", p);
    cr_assert_eq(http_server_start(&s, addr, &relay, err, sizeof(err)), 0, "%s", err);
    http_server_stop(s);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A connection to the server from 127.0.0.<host> (all of 127/8 is loopback). */
static int connect_from(int host)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in src = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK + (uint32_t)host - 1)};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&src, sizeof(src)), 0, "bind 127.0.0.%d", host);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* True once the server closed fd (EOF or reset); never blocks. */
static bool closed_by_server(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

#define SLOW 70

/*
 * Slowloris: 70 connections from 70 addresses, each sending one byte of
 * its headers every second, more than MHD's 64 slots. /healthz answers
 * within 1 s throughout; each slow connection is closed 5 s after its
 * connect however it dribbles (the deadline is not stretched by bytes),
 * and counted as header_timeout.
 */
Test(http, slowloris_connections_are_cut_at_the_header_deadline_and_healthz_answers)
{
    static const char header[] = "GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ";
    int fd[SLOW];
    int64_t opened[SLOW], closed_at[SLOW];
    for (int i = 0; i < SLOW; i++) {
        fd[i] = connect_from(2 + i);
        opened[i] = mono_ms();
        closed_at[i] = -1;
    }
    int64_t start = mono_ms(), next_byte = start, worst_probe = 0;
    size_t sent = 0, open_left = SLOW, probes = 0;
    while (open_left > 0 && mono_ms() - start < 8000) {
        if (mono_ms() >= next_byte) {
            for (int i = 0; i < SLOW; i++) {
                if (closed_at[i] >= 0)
                    continue;
                char c = sent < sizeof(header) - 1 ? header[sent] : 'x';
                (void)send(fd[i], &c, 1, MSG_NOSIGNAL); /* fails once closed: seen below */
            }
            sent++;
            next_byte += 1000;
        }
        int64_t t0 = mono_ms();
        /* 3 s: under the 5 s header deadline, so a probe that only got a
         * slot when the slow connections were dropped fails; above what a
         * loaded CI machine may take to schedule the answer. */
        int status = http_get_status(port, "/healthz", 3000);
        int64_t took = mono_ms() - t0;
        probes++;
        cr_assert_eq(status, 200, "/healthz after %lld ms of slowloris: %d",
                     (long long)(t0 - start), status);
        if (took > worst_probe)
            worst_probe = took;
        for (int i = 0; i < SLOW; i++)
            if (closed_at[i] < 0 && closed_by_server(fd[i])) {
                closed_at[i] = mono_ms();
                open_left--;
            }
        struct timespec pause = {0, 100 * 1000000}; /* pacing the probes, not a wait */
        nanosleep(&pause, NULL);
    }
    cr_assert_lt(worst_probe, 3000, "slowest /healthz: %lld ms (the header deadline is 5 s)", (long long)worst_probe);
    cr_assert_geq(probes, 20);
    cr_assert_eq(open_left, 0, "%zu slow connections still open after 8 s", open_left);
    for (int i = 0; i < SLOW; i++) {
        int64_t lived = closed_at[i] - opened[i];
        /* 5 s from the accept (just after our connect), plus one probe's
         * round of this loop for us to notice */
        cr_assert(lived >= 4900 && lived <= 6500, "connection %d closed after %lld ms", i,
                  (long long)lived);
        close(fd[i]);
    }
    struct http_reply r = get("GET", "/metrics");
    cr_assert_eq(http_metric_value(r.body,
                                   "aero_relay_http_connections_dropped_total{reason=\"header_timeout\"}"),
                 SLOW);
    http_reply_free(&r);
}

/* From one address, only GATE_PER_IP (8) connections wait at the gate: a
 * new one closes the oldest, so that address's own probe still gets in. */
Test(http, one_address_holds_few_slots_and_its_own_probe_gets_in)
{
    int fd[SLOW];
    for (int i = 0; i < SLOW; i++) {
        fd[i] = connect_loopback(port);
        cr_assert_eq(write(fd[i], "GET", 3), 3);
    }
    int64_t t0 = mono_ms();
    cr_assert_eq(http_get_status(port, "/healthz", 3000), 200);
    cr_assert_lt(mono_ms() - t0, 3000, "answered only after the 5 s header deadline freed a slot");
    /* The probe evicted one more: 70 - 8 + 1 closed by now. */
    struct http_reply r = get("GET", "/metrics");
    cr_assert_eq(http_metric_value(r.body,
                                   "aero_relay_http_connections_dropped_total{reason=\"evicted\"}"),
                 SLOW - 8 + 1);
    http_reply_free(&r);
    for (int i = 0; i < SLOW; i++)
        close(fd[i]);
}
