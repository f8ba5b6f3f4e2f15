/*
 * test_e2e_gen2_hold.c - SPEC.md section 9, step 9: on a generation-2
 * stream a full sink queue holds a frame's ack instead of refusing it (the
 * first upstream agents count any acked frame delivered), releases held
 * frames in order once the queue has room, and answers RETRY_WITH_BACKOFF
 * "relay sink queue is full" only after [relay] gen2_hold_s (at once with
 * 0). Seed streams keep their TEMPORARY_ERROR. The full queue is a
 * test-sink-control sink with on_full = reject stuck in write_batch; with
 * on_full = block the same holds on generation-2 streams (on_full is the
 * seed streams' choice between pausing and refusing).
 */
#include "harness.h"
#include "http_client.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAL "5e0c1c8a-2b4d-4e6f-8a9b-0c1d2e3f4a5b"

static struct relay_proc relay;
static struct rc_channel *ch;
static char hold[400];

/* A /metrics series' value; a counter not yet incremented may be absent: 0. */
static double metric(const char *series)
{
    struct http_reply r;
    cr_assert_eq(http_request(relay.http_port, "GET", "/metrics", 5000, &r), 0);
    cr_assert_eq(r.status, 200);
    double v = http_metric_value(r.body, series);
    http_reply_free(&r);
    return v < 0 ? 0 : v;
}

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
}

/* One stuck-able sink with a queue of 2 and the given on_full. */
static void start_on_full(const char *on_full, const char *relay_extra)
{
    harness_prepare(&relay);
    relay.http = true;
    snprintf(hold, sizeof(hold), "%s/hold", relay.dir);
    char body[1024];
    snprintf(body, sizeof(body),
             "[sink:ctl]\nplugin = test-sink-control\nqueue = 2\non_full = %s\n"
             "hold_file = %s\n",
             on_full, hold);
    ch = harness_start(&relay, relay_extra, body);
}

/* ... that refuses when full (on a seed stream). */
static void start(const char *relay_extra)
{
    start_on_full("reject", relay_extra);
}

static void stop(void)
{
    unlink(hold);
    harness_finish(&relay, &ch);
}

TestSuite(gen2_hold, .fini = stop, .timeout = 120);

static const struct rc_frame *g2_frame(const char *agent, const char *session, uint64_t seq)
{
    static struct rc_frame f;
    f = *harness_frame(agent, seq);
    f.session_id = session;
    f.wal_id = WAL;
    return &f;
}

static struct rc_stream *open_g2(const char *agent, char *session, size_t len)
{
    struct rc_status st;
    harness_register(ch, agent, session, len);
    struct rc_stream *s = rc_stream_open_gen2(ch, agent, session, NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    return s;
}

/* The next generation-2 ack within timeout_ms: 1, or 0 when none came. */
static int next_ack(struct rc_stream *s, struct rc_ack *ack, int timeout_ms)
{
    struct rc_relay_msg m;
    int rc = rc_stream_recv_gen2(s, &m, timeout_ms);
    if (rc == -ETIMEDOUT)
        return 0;
    cr_assert_eq(rc, 1, "rc %d", rc);
    cr_assert_eq(m.arm, RC_RELAY_TELEMETRY_ACK);
    cr_assert_str_eq(m.ack.frame_id, "");
    *ack = m.ack;
    return 1;
}

Test(gen2_hold, a_full_queue_holds_acks_and_releases_them_in_order)
{
    start("gen2_hold_s = 30\n");
    char session[64];
    struct rc_stream *s = open_g2("hold-1", session, sizeof(session));
    touch(hold);
    /* The sink absorbs 2 to 4 (see below); the rest find its queue full and
     * must be held, not refused. */
    for (uint64_t seq = 1; seq <= 8; seq++)
        cr_assert_eq(rc_stream_send_gen2_frame(s, g2_frame("hold-1", session, seq), 5000), 0);
    struct rc_ack ack;
    cr_assert_eq(next_ack(s, &ack, 1500), 0, "no ack while the sink is stuck: got seq %llu %s",
                 (unsigned long long)ack.seq, rc_ack_status_name(ack.status));
    unlink(hold);
    uint64_t last = 0;
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(next_ack(s, &ack, 10000), 1, "ack %d of 8", i + 1);
        cr_assert_eq(ack.status, RC_ACK_OK, "seq %llu: %s %s", (unsigned long long)ack.seq,
                     rc_ack_status_name(ack.status), ack.error);
        cr_assert_gt(ack.seq, last, "held frames are released in order");
        last = ack.seq;
    }
    cr_assert_geq(metric("aero_relay_frames_held_total"), 1);
    struct rc_status st;
    rc_stream_close_send(s, 5000);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    cr_assert_eq(st.code, 0, "%s", st.message);
    rc_stream_free(s);
}

/* How many frames the stuck sink absorbs depends on when its thread woke:
 * 2 (its queue, full before the thread took anything), or the batch it
 * took into write_batch (1 or 2) plus the 2 its queue holds again. Every
 * later frame is held (refused with gen2_hold_s = 0, TEMPORARY_ERROR on a
 * seed stream).
 *
 * With gen2_hold_s = 1 and the sink stuck: the frames past the queue are
 * held, refused RETRY_WITH_BACKOFF after the hold in order, the sink's
 * are acked OK once it returns, and the stream (read all along) ends OK. */
static void expect_held_then_refused(const char *agent)
{
    char session[64];
    struct rc_stream *s = open_g2(agent, session, sizeof(session));
    touch(hold);
    const uint64_t n = 8;
    for (uint64_t seq = 1; seq <= n; seq++)
        cr_assert_eq(rc_stream_send_gen2_frame(s, g2_frame(agent, session, seq), 5000), 0);
    int64_t t0 = harness_now_ms();
    struct rc_ack ack;
    cr_assert_eq(next_ack(s, &ack, 10000), 1, "no ack: the stream was paused, not held");
    int64_t waited = harness_now_ms() - t0;
    cr_assert_eq(ack.status, RC_ACK_RETRY_WITH_BACKOFF, "%s", rc_ack_status_name(ack.status));
    cr_assert_str_eq(ack.error, "relay sink queue is full");
    cr_assert_geq(waited, 800, "refused after the hold, not at once (%lld ms)",
                  (long long)waited);
    uint64_t refused = 1, last = ack.seq;
    while (next_ack(s, &ack, 500) == 1) { /* the rest of the held ones, in order */
        cr_assert_eq(ack.status, RC_ACK_RETRY_WITH_BACKOFF, "seq %llu",
                     (unsigned long long)ack.seq);
        cr_assert_gt(ack.seq, last);
        last = ack.seq;
        refused++;
    }
    cr_assert(refused >= n - 4 && refused <= n - 2, "%llu refused", (unsigned long long)refused);
    cr_assert_eq(last, n, "the last frames sent are the held ones");
    unlink(hold);
    for (uint64_t i = 0; i < n - refused; i++) { /* the ones the sink had */
        cr_assert_eq(next_ack(s, &ack, 10000), 1);
        cr_assert_eq(ack.status, RC_ACK_OK);
    }
    cr_assert_eq(metric("aero_relay_frames_held_refused_total"), (double)refused);
    struct rc_status st;
    rc_stream_close_send(s, 5000);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    cr_assert_eq(st.code, 0, "%s", st.message);
    rc_stream_free(s);
}

Test(gen2_hold, past_gen2_hold_s_the_ack_is_retry_with_backoff)
{
    start("gen2_hold_s = 1\n");
    expect_held_then_refused("hold-2");
}

Test(gen2_hold, with_gen2_hold_s_0_a_full_queue_is_refused_at_once)
{
    start("gen2_hold_s = 0\n");
    char session[64];
    struct rc_stream *s = open_g2("hold-3", session, sizeof(session));
    touch(hold);
    for (uint64_t seq = 1; seq <= 6; seq++)
        cr_assert_eq(rc_stream_send_gen2_frame(s, g2_frame("hold-3", session, seq), 5000), 0);
    struct rc_ack ack;
    cr_assert_eq(next_ack(s, &ack, 5000), 1, "refused at once, while the sink is stuck");
    cr_assert(ack.seq >= 3 && ack.seq <= 5, "seq %llu", (unsigned long long)ack.seq);
    cr_assert_eq(ack.status, RC_ACK_RETRY_WITH_BACKOFF);
    cr_assert_str_eq(ack.error, "relay sink queue is full");
    unlink(hold);
    rc_stream_free(s);
}

Test(gen2_hold, a_seed_stream_still_gets_temporary_error_at_once)
{
    start("gen2_hold_s = 30\n");
    harness_register(ch, "hold-seed", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "hold-seed", NULL, 0, &st);
    touch(hold);
    for (uint64_t seq = 1; seq <= 6; seq++)
        cr_assert_eq(rc_stream_send_frame(s, harness_frame("hold-seed", seq), 5000), 0);
    struct rc_ack ack;
    cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1, "refused at once, while the sink is stuck");
    cr_assert(ack.seq >= 3 && ack.seq <= 5, "seq %llu", (unsigned long long)ack.seq);
    cr_assert_eq(ack.status, RC_ACK_TEMPORARY_ERROR);
    unlink(hold);
    rc_stream_free(s);
}

/* A `block` sink pauses a seed stream; a generation-2 stream is held
 * instead, keeps being read, and is answered RETRY_WITH_BACKOFF after
 * gen2_hold_s (SPEC section 9 step 9, section 13.1 rule 7's table). */
Test(gen2_hold, a_full_block_sink_holds_a_gen2_stream_then_retry_with_backoff)
{
    start_on_full("block", "gen2_hold_s = 1\n");
    expect_held_then_refused("hold-4");
}
