/*
 * test_e2e_garbage.c - whatever arrives on the gRPC port, the relay neither
 * crashes nor stalls for anyone else: random bytes, an HTTP/1.1 request,
 * half a TLS ClientHello or half the HTTP/2 preface left hanging, an agent
 * that stops reading its acks (the relay stops reading from it, keeps its
 * memory bounded, and cleans up when it is cancelled), and a connection with
 * many streams that vanishes with an RST. Throughout, a steady agent on its
 * own connection streams and must get every ack OK without a stall.
 */
#include "h2_raw.h"
#include "harness.h"
#include "steady_agent.h"
#include "tcp_proxy.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define GRPC_NOT_FOUND 5
#define GRPC_INVALID_ARGUMENT 3

static struct relay_proc relay;
static struct rc_channel *ch;
static struct steady_agent *steady;
static struct tcp_proxy *proxy;

static void start(void)
{
    harness_prepare(&relay);
    rss_measurable(&relay);
    ch = harness_start(&relay, "handshake_timeout_s = 2\nmax_inflight = 100\n",
                       "[sink:archive]\nplugin = sink-file\npath = %DIR%/data\n");
    steady = steady_agent_start(relay.target, "drone-steady");
}

static void stop(void)
{
    tcp_proxy_stop(proxy);
    proxy = NULL;
    harness_finish(&relay, &ch);
}

TestSuite(garbage, .init = start, .fini = stop, .timeout = 120);

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_geq(fd, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Send what we can (the relay may close mid-way: that is its right). */
static void send_some(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

/* True once the relay has closed fd (EOF or reset), reading and discarding
 * whatever it said first (a GOAWAY, say); false after timeout_ms. */
static bool closed_by_relay(int fd, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    char buf[4096];
    for (;;) {
        int left = (int)(deadline - harness_now_ms());
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            return true;
    }
}

static void finish_steady(void)
{
    steady_agent_expect_progress(steady, 50, 10000);
    steady_agent_stop(steady);
    steady = NULL;
}

Test(garbage, random_bytes_are_refused_and_others_are_served)
{
    static uint8_t junk[65536];
    for (int i = 0; i < 20; i++) {
        /* xorshift, seeded per connection: a failure names a reproducible input */
        uint32_t x = 2463534242u + (uint32_t)i;
        for (size_t k = 0; k < sizeof(junk); k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            junk[k] = (uint8_t)x;
        }
        int fd = raw_connect(relay.port);
        send_some(fd, junk, (size_t)(i + 1) * 3000);
        cr_assert(closed_by_relay(fd, 5000), "connection %d with random bytes left open", i);
        close(fd);
    }
    finish_steady();
}

Test(garbage, http1_request_is_refused_and_others_are_served)
{
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: relay\r\nUser-Agent: curl\r\n\r\n";
    static const char post[] = "POST /aeroarc.agent.v1.AgentGateway/Register HTTP/1.1\r\n"
                               "Host: relay\r\nContent-Type: application/grpc\r\n"
                               "Content-Length: 5\r\n\r\n\0\0\0\0\0";
    for (int i = 0; i < 10; i++) {
        int fd = raw_connect(relay.port);
        if (i % 2)
            send_some(fd, post, sizeof(post) - 1);
        else
            send_some(fd, req, sizeof(req) - 1);
        cr_assert(closed_by_relay(fd, 5000), "HTTP/1.1 connection %d left open", i);
        close(fd);
    }
    finish_steady();
}

Test(garbage, half_handshakes_are_dropped_after_the_handshake_timeout)
{
    /* The first bytes of a TLS 1.2 ClientHello record, then nothing. */
    static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc,
                                    0x03, 0x03, 0x5a, 0x5b, 0x5c};
    /* 16 of the 24 bytes of the HTTP/2 client preface, then nothing. */
    static const char preface[] = "PRI * HTTP/2.0\r\n";
    enum { N = 40 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect(relay.port);
        if (i % 2)
            send_some(fds[i], hello, sizeof(hello));
        else
            send_some(fds[i], preface, sizeof(preface) - 1);
    }
    /* With all of them hanging, new agents connect and register, and the
     * steady one goes on. */
    struct rc_channel *fresh = rc_connect(relay.target);
    harness_register(fresh, "drone-newcomer", NULL, 0);
    rc_close(fresh);
    steady_agent_expect_progress(steady, 50, 5000);

    /* handshake_timeout_s = 2: every half-open connection is closed soon. */
    int64_t t0 = harness_now_ms();
    for (int i = 0; i < N; i++) {
        cr_assert(closed_by_relay(fds[i], 8000), "half handshake %d (%s) still open after %lld ms",
                  i, i % 2 ? "TLS" : "preface", (long long)(harness_now_ms() - t0));
        close(fds[i]);
    }
    finish_steady();
}

static int drone_status(const char *agent)
{
    Aeroarc__Relay__V1__GetDroneStatusResponse *resp = NULL;
    struct rc_status st;
    int rc = rc_get_drone_status(ch, agent, &resp, &st, 5000);
    if (resp)
        aeroarc__relay__v1__get_drone_status_response__free_unpacked(resp, NULL);
    return rc == 0 ? 0 : st.code;
}

static bool drone_gone(void *agent) { return drone_status(agent) == GRPC_NOT_FOUND; }

Test(garbage, an_agent_that_never_reads_acks_is_paused_not_buffered)
{
    harness_register(ch, "drone-deaf", NULL, 0);
    /* A 1 KiB receive window, never opened again: after a few dozen acks
     * the relay cannot send any more; its ack queue fills to max_inflight
     * and it must stop reading that stream (so stop granting it window). */
    struct h2_raw *h = h2_raw_connect(relay.port, 1024);
    h2_raw_open(h, 1, "/aeroarc.agent.v1.AgentGateway/TelemetryStream", "drone-deaf");
    long rss0 = proc_rss_kb(relay.pid);

    static uint8_t raw[1000];
    struct rc_frame f = *harness_frame("drone-deaf", 0);
    f.raw_mavlink = raw;
    f.raw_mavlink_len = sizeof(raw);
    uint64_t sent = 0;
    int rc = 0;
    while (sent < 100000) { /* 100 MB if nothing pushed back */
        uint8_t *buf;
        size_t len;
        f.seq = sent + 1;
        cr_assert_eq(rc_frame_encode(&f, &buf, &len), 0);
        rc = h2_raw_send_message(h, 1, buf, len, 1000);
        free(buf);
        if (rc != 0)
            break;
        sent++;
    }
    cr_assert_eq(rc, -ETIMEDOUT, "the relay kept reading a deaf agent (%llu frames, rc %d)",
                 (unsigned long long)sent, rc);
    /* max_inflight (100) in the relay's hands plus its 64 KiB stream
     * window (~60 of these frames), with slack: never thousands */
    cr_assert_lt(sent, 500, "%llu frames taken in for at most 100 in flight",
                 (unsigned long long)sent);
    cr_assert_leq(h2_raw_data_bytes(h, 1), 1024, "the relay overran our window");
    long rss1 = proc_rss_kb(relay.pid);
    cr_assert_lt(rss1 - rss0, 16 * 1024, "relay grew %ld KiB for a deaf agent", rss1 - rss0);
    steady_agent_expect_progress(steady, 100, 5000);
    cr_assert_eq(drone_status("drone-deaf"), 0, "paused, not dropped");

    /* The agent gives up (RST_STREAM CANCEL): everything about it goes. */
    h2_raw_reset(h, 1, 0x8);
    cr_assert(harness_wait_for(drone_gone, "drone-deaf", 5000), "session outlived its stream");
    h2_raw_close(h);
    finish_steady();
}

/* True when the steady agent's is the only session; *arg = how many. */
static bool only_steady_left(void *arg)
{
    size_t *left = arg;
    Aeroarc__Relay__V1__ListActiveDronesResponse *list = NULL;
    struct rc_status st;
    if (rc_list_active_drones(ch, &list, &st, 5000) != 0)
        return false;
    *left = list->n_drones;
    aeroarc__relay__v1__list_active_drones_response__free_unpacked(list, NULL);
    return *left == 1;
}

Test(garbage, a_connection_with_many_streams_that_vanishes_is_cleaned_up)
{
    enum { N = 200 };
    proxy = tcp_proxy_start(relay.port);
    struct rc_channel *via = rc_connect(tcp_proxy_target(proxy));
    struct rc_stream *s[N];
    char id[32];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "drone-many-%d", i);
        harness_register(ch, id, NULL, 0);
        struct rc_status st;
        s[i] = rc_stream_open(via, id, NULL, 0, &st);
        cr_assert_not_null(s[i]);
        cr_assert_eq(rc_stream_send_frame(s[i], harness_frame(id, 1), 5000), 0);
    }
    for (int i = 0; i < N; i++) {
        struct rc_ack ack;
        cr_assert_eq(rc_stream_recv_ack(s[i], &ack, 5000), 1, "stream %d", i);
        cr_assert_eq(ack.status, RC_ACK_OK);
    }
    cr_assert_eq(tcp_proxy_accepted(proxy), 1, "all streams share one connection");

    tcp_proxy_cut(proxy); /* RST both ways: the agent's host is gone */
    size_t left = N + 1;
    cr_assert(harness_wait_for(only_steady_left, &left, 5000),
              "%zu sessions left; only the steady agent should be", left);
    cr_assert_eq(drone_status("drone-steady"), 0);
    for (int i = 0; i < N; i++)
        rc_stream_free(s[i]);
    rc_close(via);
    finish_steady();
}

/* A length-delimited field: tag (field < 16, wire type 2), length < 128, bytes. */
static size_t put_string_field(uint8_t *out, unsigned field, const char *s, size_t len)
{
    out[0] = (uint8_t)(field << 3 | 2);
    out[1] = (uint8_t)len;
    memcpy(out + 2, s, len);
    return 2 + len;
}

/* A unary call with raw request bytes; its gRPC code, the message in msg. */
static int raw_unary(const char *method, const uint8_t *req, size_t len, const char *agent_header,
                     char *msg, size_t msglen)
{
    struct rc_md md = {"aero-arc-agent-id", agent_header};
    struct rc_status st;
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    int rc = rc_unary(ch, method, req, len, &md, agent_header ? 1 : 0, &resp, &resp_len, &st,
                      5000);
    free(resp);
    snprintf(msg, msglen, "%s", rc == 0 ? "" : st.message);
    return rc == 0 ? 0 : st.code;
}

/*
 * SPEC.md section 2 counts ids in bytes as received: "victim\0x" is not
 * "victim". Register with it (as agent_id, and as a capability), and
 * GetDroneStatus with it, are INVALID_ARGUMENT; the victim's stream goes on
 * and its session is untouched.
 */
Test(garbage, an_id_with_a_nul_byte_is_refused_not_cut_short)
{
    harness_register(ch, "victim", NULL, 0);
    struct rc_status st;
    struct rc_ack ack;
    struct rc_stream *victim = rc_stream_open(ch, "victim", NULL, 0, &st);
    cr_assert_not_null(victim);
    cr_assert_eq(rc_stream_send_frame(victim, harness_frame("victim", 1), 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(victim, &ack, 5000), 1);
    cr_assert_eq(ack.status, RC_ACK_OK);
    Aeroarc__Relay__V1__GetDroneStatusResponse *before = NULL;
    cr_assert_eq(rc_get_drone_status(ch, "victim", &before, &st, 5000), 0);

    static const char evil[] = "victim\0x"; /* 8 bytes */
    uint8_t req[64];
    char msg[512];
    size_t n = put_string_field(req, 1, evil, sizeof(evil) - 1);
    cr_assert_eq(raw_unary("/aeroarc.agent.v1.AgentGateway/Register", req, n, "victim", msg,
                           sizeof(msg)),
                 GRPC_INVALID_ARGUMENT, "Register(\"victim\\0x\"): %s", msg);
    cr_assert(strstr(msg, "agent_id"), "the status names the field: %s", msg);

    /* The same bytes as a capability of a valid agent id. */
    n = put_string_field(req, 1, "drone-caps", 10);
    n += put_string_field(req + n, 4, evil, sizeof(evil) - 1);
    cr_assert_eq(raw_unary("/aeroarc.agent.v1.AgentGateway/Register", req, n, "drone-caps", msg,
                           sizeof(msg)),
                 GRPC_INVALID_ARGUMENT, "Register with capability \"victim\\0x\": %s", msg);
    cr_assert_eq(drone_status("drone-caps"), GRPC_NOT_FOUND, "nothing was registered");

    n = put_string_field(req, 1, evil, sizeof(evil) - 1);
    cr_assert_eq(raw_unary("/aeroarc.relay.v1.RelayControl/GetDroneStatus", req, n, NULL, msg,
                           sizeof(msg)),
                 GRPC_INVALID_ARGUMENT, "GetDroneStatus(\"victim\\0x\"): %s", msg);

    /* The victim still streams, on the same session. */
    cr_assert_eq(rc_stream_send_frame(victim, harness_frame("victim", 2), 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(victim, &ack, 5000), 1, "the victim's stream was ended");
    cr_assert_eq(ack.seq, 2);
    cr_assert_eq(ack.status, RC_ACK_OK);
    Aeroarc__Relay__V1__GetDroneStatusResponse *after = NULL;
    cr_assert_eq(rc_get_drone_status(ch, "victim", &after, &st, 5000), 0);
    cr_assert_str_eq(after->drone->session_id, before->drone->session_id);
    aeroarc__relay__v1__get_drone_status_response__free_unpacked(before, NULL);
    aeroarc__relay__v1__get_drone_status_response__free_unpacked(after, NULL);

    rc_stream_close_send(victim, 5000);
    cr_assert_eq(rc_stream_finish(victim, &st, 10000), 0);
    cr_assert_eq(st.code, 0, "%s %s", rc_status_code_name(st.code), st.message);
    rc_stream_free(victim);
    finish_steady();
}
