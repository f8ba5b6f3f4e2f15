/*
 * test_e2e_gen2_hold.c - SPEC.md section 9, step 9: on a generation-2
 * stream a full sink queue holds a frame's ack instead of refusing it (the
 * first upstream agents count any acked frame delivered), releases held
 * frames in order once the queue has room, and answers RETRY_WITH_BACKOFF
 * "relay sink queue is full" only after [relay] gen2_hold_s (at once with
 * 0). Seed streams keep their TEMPORARY_ERROR. The full queue is a
 * test-sink-control sink with on_full = reject stuck in write_batch.
 */
#include "harness.h"

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

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
}

/* One stuck-able sink with a queue of 2 that refuses when full. */
static void start(const char *relay_extra)
{
    harness_prepare(&relay);
    snprintf(hold, sizeof(hold), "%s/hold", relay.dir);
    char body[1024];
    snprintf(body, sizeof(body),
             "[sink:ctl]\nplugin = test-sink-control\nqueue = 2\non_full = reject\n"
             "hold_file = %s\n",
             hold);
    ch = harness_start(&relay, relay_extra, body);
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
    /* 1 goes into write_batch and sticks, 2 and 3 fill the queue; 4-8 find
     * it full and must be held, not refused. */
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
    cr_assert_geq(harness_metric(&relay, "aero_relay_frames_held_total", NULL), 1);
    struct rc_status st;
    rc_stream_close_send(s, 5000);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    cr_assert_eq(st.code, 0, "%s", st.message);
    rc_stream_free(s);
}

Test(gen2_hold, past_gen2_hold_s_the_ack_is_retry_with_backoff)
{
    start("gen2_hold_s = 1\n");
    char session[64];
    struct rc_stream *s = open_g2("hold-2", session, sizeof(session));
    touch(hold);
    for (uint64_t seq = 1; seq <= 6; seq++)
        cr_assert_eq(rc_stream_send_gen2_frame(s, g2_frame("hold-2", session, seq), 5000), 0);
    int64_t t0 = harness_now_ms();
    struct rc_ack ack;
    cr_assert_eq(next_ack(s, &ack, 10000), 1);
    int64_t waited = harness_now_ms() - t0;
    cr_assert_eq(ack.status, RC_ACK_RETRY_WITH_BACKOFF, "%s", rc_ack_status_name(ack.status));
    cr_assert_str_eq(ack.error, "relay sink queue is full");
    cr_assert_geq(waited, 800, "refused after the hold, not at once (%lld ms)",
                  (long long)waited);
    cr_assert_eq(ack.seq, 4, "the first held frame is the first refused");
    for (uint64_t seq = 5; seq <= 6; seq++) {
        cr_assert_eq(next_ack(s, &ack, 10000), 1);
        cr_assert_eq(ack.seq, seq);
        cr_assert_eq(ack.status, RC_ACK_RETRY_WITH_BACKOFF);
    }
    unlink(hold);
    for (int i = 0; i < 3; i++) { /* the three the sink had */
        cr_assert_eq(next_ack(s, &ack, 10000), 1);
        cr_assert_eq(ack.status, RC_ACK_OK);
    }
    cr_assert_eq(harness_metric(&relay, "aero_relay_frames_held_refused_total", NULL), 3);
    rc_stream_free(s);
}

Test(gen2_hold, with_gen2_hold_s_0_a_full_queue_is_refused_at_once)
{
    start("gen2_hold_s = 0\n");
    char session[64];
    struct rc_stream *s = open_g2("hold-3", session, sizeof(session));
    touch(hold);
    for (uint64_t seq = 1; seq <= 4; seq++)
        cr_assert_eq(rc_stream_send_gen2_frame(s, g2_frame("hold-3", session, seq), 5000), 0);
    struct rc_ack ack;
    cr_assert_eq(next_ack(s, &ack, 5000), 1);
    cr_assert_eq(ack.seq, 4);
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
    for (uint64_t seq = 1; seq <= 4; seq++)
        cr_assert_eq(rc_stream_send_frame(s, harness_frame("hold-seed", seq), 5000), 0);
    struct rc_ack ack;
    cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1);
    cr_assert_eq(ack.seq, 4);
    cr_assert_eq(ack.status, RC_ACK_TEMPORARY_ERROR);
    unlink(hold);
    rc_stream_free(s);
}
