/*
 * test_e2e_limits.c - the relay's resource limits (docs/limits.md), each
 * breached for real against the relay binary while another agent is served
 * normally: keepalive drops an agent whose link died silently (session and
 * route gone within keepalive_time + keepalive_timeout) but never a healthy
 * idle one; max_sessions refuses new agents with RESOURCE_EXHAUSTED but lets
 * known ones reconnect; max_streams_per_connection makes the extra stream
 * wait (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS) without failing the others,
 * and a client that ignores it loses its own connection, nobody else's.
 */
#include "h2_raw.h"
#include "harness.h"
#include "steady_agent.h"
#include "tcp_proxy.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GRPC_NOT_FOUND 5
#define GRPC_RESOURCE_EXHAUSTED 8

static struct relay_proc relay;
static struct rc_channel *ch;
static struct tcp_proxy *proxy;

static void start(const char *relay_extra)
{
    harness_prepare(&relay);
    relay.http = true; /* for the metrics each limit moves */
    ch = harness_start(&relay, relay_extra, "[sink:out]\nplugin = sink-stdout\n");
}

static void stop(void)
{
    tcp_proxy_stop(proxy);
    proxy = NULL;
    harness_finish(&relay, &ch);
}

TestSuite(limits, .fini = stop, .timeout = 120);

/* GetDroneStatus's gRPC code for agent (0 = found). */
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

/* Open a stream for agent on c and get one frame acked OK. */
static struct rc_stream *open_and_ack(struct rc_channel *c, const char *agent, uint64_t seq)
{
    struct rc_status st;
    struct rc_ack ack;
    struct rc_stream *s = rc_stream_open(c, agent, NULL, 0, &st);
    cr_assert_not_null(s);
    cr_assert_eq(rc_stream_send_frame(s, harness_frame(agent, seq), 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1, "ack for %s", agent);
    cr_assert_eq(ack.status, RC_ACK_OK);
    return s;
}

static void close_ok(struct rc_stream *s)
{
    struct rc_status st;
    rc_stream_close_send(s, 5000);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    cr_assert_eq(st.code, 0, "%s %s", rc_status_code_name(st.code), st.message);
    rc_stream_free(s);
}

Test(limits, keepalive_ends_the_session_of_a_silently_dead_link)
{
    start("keepalive_time_s = 1\nkeepalive_timeout_s = 1\n");
    proxy = tcp_proxy_start(relay.port);
    struct rc_channel *via = rc_connect(tcp_proxy_target(proxy));
    harness_register(via, "drone-lost", NULL, 0);
    struct rc_stream *lost = open_and_ack(via, "drone-lost", 1);

    /* A healthy agent with an open stream that sends nothing: its pings
     * are answered, so keepalive must never end it. */
    harness_register(ch, "drone-idle", NULL, 0);
    struct rc_stream *idle = open_and_ack(ch, "drone-idle", 1);
    cr_assert_eq(drone_status("drone-lost"), 0);

    tcp_proxy_freeze(proxy); /* no FIN, no RST: the link just goes quiet */
    int64_t t0 = harness_now_ms();
    /* keepalive_time 1 s + timeout 1 s, plus up to one ping interval
     * already under way, plus slack for a loaded CI machine */
    cr_assert(harness_wait_for(drone_gone, "drone-lost", 6000),
              "session of the dead link still there after %lld ms",
              (long long)(harness_now_ms() - t0));
    /* A ping sent just before the freeze, its ack still in the proxy,
     * times out 1 s after it was sent: a little less than 1 s after t0. */
    int64_t took = harness_now_ms() - t0;
    cr_assert_geq(took, 500, "dropped after %lld ms: before any ping could time out",
                  (long long)took);
    cr_assert_eq(relay_metric(relay.http_port, "aero_relay_streams_closed_total{outcome=\"cancelled\"}"),
                 1, "the dead link's stream counts as cancelled");

    /* Well past several keepalive rounds: the idle but live agent stays. */
    cr_assert_eq(drone_status("drone-idle"), 0, "a live idle agent was dropped");
    cr_assert_eq(rc_stream_send_frame(idle, harness_frame("drone-idle", 2), 5000), 0);
    struct rc_ack ack;
    cr_assert_eq(rc_stream_recv_ack(idle, &ack, 5000), 1);
    cr_assert_eq(ack.status, RC_ACK_OK);
    close_ok(idle);

    rc_stream_cancel(lost);
    rc_stream_free(lost);
    rc_close(via);
}

Test(limits, max_sessions_refuses_new_agents_with_resource_exhausted)
{
    start("max_sessions = 3\n");
    struct rc_stream *s[3];
    char id[32];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "drone-cap-%d", i);
        harness_register(ch, id, NULL, 0);
        s[i] = open_and_ack(ch, id, 1);
    }
    struct rc_register_result res;
    struct rc_status st;
    cr_assert_eq(rc_register(ch, "drone-cap-3", "t", "linux", &res, &st, 5000), -EIO);
    cr_assert_eq(st.code, GRPC_RESOURCE_EXHAUSTED, "%s %s", rc_status_code_name(st.code),
                 st.message);
    cr_assert(strstr(st.message, "max_sessions"), "the status says which limit: %s", st.message);
    cr_assert_eq(drone_status("drone-cap-3"), GRPC_NOT_FOUND);
    cr_assert_eq(relay_metric(relay.http_port, "aero_relay_sessions_rejected_total"), 1);
    cr_assert_eq(relay_metric(relay.http_port, "aero_relay_sessions_active"), 3);

    /* The agents already in keep streaming, and one of them may reconnect
     * (re-register) although the table is full. */
    struct rc_ack ack;
    cr_assert_eq(rc_stream_send_frame(s[1], harness_frame("drone-cap-1", 2), 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(s[1], &ack, 5000), 1);
    cr_assert_eq(ack.status, RC_ACK_OK);
    rc_stream_free(s[0]); /* cancelled: its session leaves the table */
    harness_register(ch, "drone-cap-2", NULL, 0); /* supersedes s[2] */
    struct rc_status fst;
    cr_assert_eq(rc_stream_finish(s[2], &fst, 5000), 0);
    cr_assert_eq(fst.code, 10, "superseded: ABORTED, got %s", rc_status_code_name(fst.code));
    rc_stream_free(s[2]);
    s[2] = open_and_ack(ch, "drone-cap-2", 3);

    /* The slot s[0] left is free again once its stream is gone. */
    cr_assert(harness_wait_for(drone_gone, "drone-cap-0", 5000));
    harness_register(ch, "drone-cap-3", NULL, 0);
    cr_assert_eq(rc_register(ch, "drone-cap-4", "t", "linux", &res, &st, 5000), -EIO);
    cr_assert_eq(st.code, GRPC_RESOURCE_EXHAUSTED);
    cr_assert_eq(relay_metric(relay.http_port, "aero_relay_sessions_rejected_total"), 2);
    close_ok(s[1]);
    close_ok(s[2]);
}

Test(limits, extra_streams_on_one_connection_wait_and_others_go_on)
{
    start("max_streams_per_connection = 2\n");
    struct rc_channel *shared = rc_connect(relay.target);
    const char *ids[3] = {"drone-mux-0", "drone-mux-1", "drone-mux-2"};
    for (int i = 0; i < 3; i++)
        harness_register(ch, ids[i], NULL, 0);
    struct rc_stream *a = open_and_ack(shared, ids[0], 1);
    struct rc_stream *b = open_and_ack(shared, ids[1], 1);

    /* The third stream on that connection is held back by the client
     * (SETTINGS_MAX_CONCURRENT_STREAMS = 2): no ack, but no failure. */
    struct rc_status st;
    struct rc_ack ack;
    struct rc_stream *c = rc_stream_open(shared, ids[2], NULL, 0, &st);
    cr_assert_not_null(c);
    cr_assert_eq(rc_stream_recv_ack(c, &ack, 700), -ETIMEDOUT, "third stream served at once");

    /* The two admitted streams and other connections are unaffected. */
    cr_assert_eq(rc_stream_send_frame(a, harness_frame(ids[0], 2), 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(a, &ack, 5000), 1);
    cr_assert_eq(ack.status, RC_ACK_OK);
    harness_register(ch, "drone-other", NULL, 0);
    close_ok(open_and_ack(ch, "drone-other", 1));

    /* One ends: the waiting stream starts and its frame is acked. */
    close_ok(a);
    cr_assert_eq(rc_stream_send_frame(c, harness_frame(ids[2], 1), 5000), 0);
    int rr = rc_stream_recv_ack(c, &ack, 5000);
    cr_assert_eq(rr, 1, "waiting stream never started");
    cr_assert_eq(ack.status, RC_ACK_OK);
    cr_assert_eq(ack.seq, 1);
    close_ok(b);
    close_ok(c);
    rc_close(shared);
}

static bool rude_gone(void *arg)
{
    (void)arg;
    return drone_status("drone-rude-0") == GRPC_NOT_FOUND &&
           drone_status("drone-rude-1") == GRPC_NOT_FOUND;
}

Test(limits, a_client_ignoring_the_stream_limit_loses_its_own_connection_only)
{
    start("max_streams_per_connection = 2\n");
    const char *path = "/aeroarc.agent.v1.AgentGateway/TelemetryStream";
    const char *ids[3] = {"drone-rude-0", "drone-rude-1", "drone-rude-2"};
    for (int i = 0; i < 3; i++)
        harness_register(ch, ids[i], NULL, 0);
    harness_register(ch, "drone-polite", NULL, 0);
    struct rc_stream *polite = open_and_ack(ch, "drone-polite", 1);

    struct h2_raw *h = h2_raw_connect(relay.port, 65535);
    h2_raw_pump(h, 200); /* take and acknowledge the relay's SETTINGS */
    h2_raw_open(h, 1, path, ids[0]);
    h2_raw_open(h, 3, path, ids[1]);
    /* Two streams are within the limit: a frame on the first is acked. */
    uint8_t *buf;
    size_t len;
    cr_assert_eq(rc_frame_encode(harness_frame(ids[0], 1), &buf, &len), 0);
    cr_assert_eq(h2_raw_send_message(h, 1, buf, len, 5000), 0);
    free(buf);
    for (int64_t end = harness_now_ms() + 5000; h2_raw_data_bytes(h, 1) == 0 && harness_now_ms() < end;)
        h2_raw_pump(h, 50);
    cr_assert_gt(h2_raw_data_bytes(h, 1), 0, "no ack on an admitted stream");
    h2_raw_open(h, 5, path, ids[2]); /* one over SETTINGS_MAX_CONCURRENT_STREAMS */

    /* gRPC treats that as a connection error: the rude client's connection
     * is closed, with every stream and session on it. */
    int64_t deadline = harness_now_ms() + 5000;
    while (!h2_raw_closed(h) && harness_now_ms() < deadline)
        h2_raw_pump(h, 100);
    cr_assert(h2_raw_closed(h), "the connection over the limit stays open");
    cr_assert(harness_wait_for(rude_gone, NULL, 5000), "its sessions outlived the connection");
    h2_raw_close(h);

    /* Everyone else is served as before. */
    struct rc_ack ack;
    cr_assert_eq(rc_stream_send_frame(polite, harness_frame("drone-polite", 2), 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(polite, &ack, 5000), 1);
    cr_assert_eq(ack.status, RC_ACK_OK);
    close_ok(polite);
}

/* One frame with `raw` bytes of raw_mavlink; its ack. */
static struct rc_ack raw_frame(struct rc_stream *s, uint64_t seq, size_t raw)
{
    static uint8_t bytes[70000];
    memset(bytes, 0xff, sizeof(bytes));
    struct rc_frame f = *harness_frame("drone-raw", seq);
    f.raw_mavlink = bytes;
    f.raw_mavlink_len = raw;
    cr_assert_eq(rc_stream_send_frame(s, &f, 5000), 0);
    struct rc_ack ack;
    cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1);
    cr_assert_eq(ack.seq, seq);
    return ack;
}

/* [relay] max_raw_bytes: the upstream agent's JSON-encoded MAVLink (1,102
 * bytes for LOGGING_DATA) passes the default; the configured limit refuses
 * one byte more, naming itself, and the stream goes on. */
Test(limits, max_raw_bytes_is_the_raw_mavlink_limit)
{
    start("max_raw_bytes = 2000\n");
    harness_register(ch, "drone-raw", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "drone-raw", NULL, 0, &st);
    cr_assert_not_null(s);
    cr_assert_eq(raw_frame(s, 1, 1102).status, RC_ACK_OK);
    cr_assert_eq(raw_frame(s, 2, 2000).status, RC_ACK_OK);
    struct rc_ack ack = raw_frame(s, 3, 2001);
    cr_assert_eq(ack.status, RC_ACK_PERMANENT_ERROR);
    cr_assert_str_eq(ack.error, "raw_mavlink over 2000 bytes");
    cr_assert_eq(raw_frame(s, 4, 10).status, RC_ACK_OK, "the stream goes on");
    close_ok(s);
}

Test(limits, max_raw_bytes_defaults_to_16384)
{
    start(NULL);
    harness_register(ch, "drone-raw", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "drone-raw", NULL, 0, &st);
    cr_assert_not_null(s);
    cr_assert_eq(raw_frame(s, 1, 16384).status, RC_ACK_OK);
    struct rc_ack ack = raw_frame(s, 2, 16385);
    cr_assert_eq(ack.status, RC_ACK_PERMANENT_ERROR);
    cr_assert_str_eq(ack.error, "raw_mavlink over 16384 bytes");
    close_ok(s);
}

Test(limits, max_raw_bytes_over_max_message_bytes_stops_check)
{
    harness_prepare(&relay);
    harness_write_config(&relay, "max_message_bytes = 8192\nmax_raw_bytes = 16384\n",
                         "[sink:out]\nplugin = sink-stdout\n");
    char out[2048], want[1024];
    const char *args[] = {"-c", relay.config, "--check", NULL};
    cr_assert_eq(relay_run_cli(args, out, sizeof(out)), 2);
    snprintf(want, sizeof(want),
             "aeroarc-relay: %s:%d: [relay] max_raw_bytes: value \"16384\" over "
             "max_message_bytes (8192): a frame's raw_mavlink must fit in its message\n",
             relay.config, harness_config_line(&relay, "max_raw_bytes"));
    cr_assert_str_eq(out, want);
}
