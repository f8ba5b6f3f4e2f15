/*
 * test_conn_guard.c - conn_guard's side of [relay] memory_limit_mb: which
 * peer's new calls are refused while the relay is over its limit, and
 * which connection conn_guard_shed_heaviest shuts down (a real accepted
 * loopback socket, the way gRPC's are found: by peer address and local
 * port), counted reason="memory_limit".
 */
#include "conn_guard.h"
#include "metrics.h"

#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NOW_NS (INT64_C(1000) * 1000000000)

/* A listening socket on a free loopback port, a client connected to it and
 * the accepted end (the relay's side). */
struct conn {
    int listener, client, accepted, port;
    char peer[64]; /* as gRPC names the client: ipv4:127.0.0.1:<port> */
};

static void connect_pair(struct conn *c)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    c->listener = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(bind(c->listener, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(c->listener, 4), 0);
    cr_assert_eq(getsockname(c->listener, (struct sockaddr *)&a, &len), 0);
    c->port = ntohs(a.sin_port);
    c->client = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(c->client, (struct sockaddr *)&a, sizeof(a)), 0);
    c->accepted = accept(c->listener, NULL, NULL);
    cr_assert_geq(c->accepted, 0);
    struct sockaddr_in me;
    len = sizeof(me);
    cr_assert_eq(getsockname(c->client, (struct sockaddr *)&me, &len), 0);
    snprintf(c->peer, sizeof(c->peer), "ipv4:127.0.0.1:%d", ntohs(me.sin_port));
}

static void close_pair(struct conn *c)
{
    close(c->client);
    close(c->accepted);
    close(c->listener);
}

/* The client sees its connection end (EOF) within a second. */
static bool client_sees_eof(const struct conn *c)
{
    struct pollfd p = {.fd = c->client, .events = POLLIN};
    char b;
    return poll(&p, 1, 1000) == 1 && recv(c->client, &b, 1, 0) == 0;
}

Test(conn_guard, only_a_busy_peer_is_refused_and_only_while_refusing)
{
    struct conn_guard *g = conn_guard_create(1000, 0, NULL);
    for (int i = 0; i < CONN_GUARD_SHED_MIN_CALLS; i++)
        conn_guard_call_opened(g, "ipv4:10.0.0.1:1000", NOW_NS);
    conn_guard_call_opened(g, "ipv4:10.0.0.2:2000", NOW_NS); /* an agent: Register */
    conn_guard_call_opened(g, "ipv4:10.0.0.2:2000", NOW_NS); /* and its stream */
    cr_expect_not(conn_guard_refuses(g, "ipv4:10.0.0.1:1000", NOW_NS), "not over the limit");
    conn_guard_set_refusing(g, true);
    cr_expect(conn_guard_refuses(g, "ipv4:10.0.0.1:1000", NOW_NS));
    cr_expect_not(conn_guard_refuses(g, "ipv4:10.0.0.2:2000", NOW_NS));
    cr_expect_not(conn_guard_refuses(g, "ipv4:10.0.0.3:3000", NOW_NS), "a new connection");
    /* Two seconds on, with its calls ended, the busy peer is quiet again. */
    for (int i = 0; i < CONN_GUARD_SHED_MIN_CALLS; i++)
        conn_guard_call_closed(g, "ipv4:10.0.0.1:1000", true, NOW_NS);
    cr_expect_not(conn_guard_refuses(g, "ipv4:10.0.0.1:1000", NOW_NS + 2 * INT64_C(1000000000)));
    conn_guard_set_refusing(g, false);
    cr_expect_not(conn_guard_refuses(g, "ipv4:10.0.0.1:1000", NOW_NS));
    conn_guard_unref(g);
}

Test(conn_guard, the_peer_with_most_recent_calls_is_shed_and_counted)
{
    struct conn busy, quiet;
    connect_pair(&busy);
    connect_pair(&quiet);
    struct metrics *m = metrics_create();
    /* Both accepted on different ports here: the guard looks at any port. */
    struct conn_guard *g = conn_guard_create(1000, 0, m);
    /* The quiet peer first: the guard's slots are a hash of the peer, and
     * a peer that shares its slot with another takes it over (counts
     * zeroed). Both ports are random, so one run in SLOTS had the quiet
     * peer's one call take the busy peer's 40 away; this way round a shared
     * slot still ends up the busy peer's. */
    conn_guard_call_opened(g, quiet.peer, NOW_NS);
    for (int i = 0; i < 40; i++)
        conn_guard_call_opened(g, busy.peer, NOW_NS);
    char peer[80];
    long weight = 0;
    cr_assert_eq(conn_guard_shed_heaviest(g, NOW_NS, peer, sizeof(peer), &weight), 0);
    cr_expect_str_eq(peer, busy.peer);
    cr_expect_eq(weight, 40);
    cr_expect(client_sees_eof(&busy), "the busy connection was not shut down");
    struct pollfd p = {.fd = quiet.client, .events = POLLIN};
    cr_expect_eq(poll(&p, 1, 0), 0, "the quiet connection was touched");
    cr_expect_eq(metrics_value(metrics_register(m, AERO_METRIC_COUNTER,
                                                "aero_relay_connections_closed_total", NULL,
                                                "reason=\"memory_limit\"")),
                 1);
    conn_guard_unref(g);
    metrics_destroy(m);
    close_pair(&busy);
    close_pair(&quiet);
}

Test(conn_guard, without_calls_the_socket_with_most_unread_bytes_is_shed_if_enough)
{
    struct conn flood, agent;
    connect_pair(&flood);
    connect_pair(&agent);
    struct conn_guard *g = conn_guard_create(1000, 0, NULL);
    static char bytes[CONN_GUARD_SHED_MIN_UNREAD * 2];
    cr_assert_eq(send(agent.client, bytes, 100, 0), 100);
    char peer[80];
    long weight = 0;
    /* 100 bytes waiting: an agent's frame, not a flood. */
    cr_expect_eq(conn_guard_shed_heaviest(g, NOW_NS, peer, sizeof(peer), &weight), -1);
    cr_assert_eq(send(flood.client, bytes, sizeof(bytes), 0), (ssize_t)sizeof(bytes));
    struct pollfd p = {.fd = flood.accepted, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 1000), 1);
    cr_assert_eq(conn_guard_shed_heaviest(g, NOW_NS, peer, sizeof(peer), &weight), 1);
    cr_expect_str_eq(peer, flood.peer + 5, "%s", peer); /* "127.0.0.1:<port>" */
    cr_expect_geq(weight, CONN_GUARD_SHED_MIN_UNREAD);
    cr_expect(client_sees_eof(&flood));
    conn_guard_unref(g);
    close_pair(&flood);
    close_pair(&agent);
}

/* n calls opened and failed on c, evenly over [from_ns, from_ns + span_ns). */
static void fail_calls(struct conn_guard *g, const struct conn *c, int n, int64_t from_ns,
                       int64_t span_ns)
{
    for (int i = 0; i < n; i++) {
        int64_t at = from_ns + span_ns * i / n;
        conn_guard_call_opened(g, c->peer, at);
        conn_guard_call_closed(g, c->peer, true, at);
    }
}

static double call_floods(struct metrics *m)
{
    return metrics_value(metrics_register(m, AERO_METRIC_COUNTER,
                                          "aero_relay_connections_closed_total", NULL,
                                          "reason=\"call_flood\""));
}

/* The bound (2,000 failed calls) holds for any second, not only for whole
 * seconds of the clock: 1,500 just before a second turns and 1,500 just
 * after are 3,000 within 0.2 s. A steady 1,900 a second, or the same two
 * bursts two seconds apart, are not a flood. */
Test(conn_guard, a_call_flood_across_a_second_boundary_is_closed)
{
    struct conn c;
    connect_pair(&c);
    struct metrics *m = metrics_create();
    struct conn_guard *g = conn_guard_create(100, 0, m);
    const int64_t s = 1000000000;

    fail_calls(g, &c, 5700, NOW_NS, 3 * s);
    cr_expect_eq(call_floods(m), 0, "a steady 1,900 a second was closed");
    fail_calls(g, &c, 1500, NOW_NS + 10 * s + s / 2, s / 10);
    fail_calls(g, &c, 1500, NOW_NS + 12 * s + s / 2, s / 10);
    cr_expect_eq(call_floods(m), 0, "bursts 2 s apart were closed");
    struct pollfd p = {.fd = c.client, .events = POLLIN};
    cr_expect_eq(poll(&p, 1, 0), 0, "the connection was touched");

    fail_calls(g, &c, 1500, NOW_NS + 20 * s - s / 10, s / 10);
    cr_expect_eq(call_floods(m), 0);
    fail_calls(g, &c, 1500, NOW_NS + 20 * s, s / 10);
    cr_expect_eq(call_floods(m), 1, "3,000 in 0.2 s were let through");
    cr_expect(client_sees_eof(&c));
    conn_guard_unref(g);
    metrics_destroy(m);
    close_pair(&c);
}
