/*
 * test_e2e_faults.c - nothing acknowledged is ever lost (SPEC.md section 2,
 * docs/failure-semantics.md):
 *   - kill -9 five times in the middle of a 50,000-frame stream into
 *     sink-file with fsync = batch; the agent reconnects and resends like a
 *     real one; every frame ever acked OK is in the files afterwards;
 *   - SIGTERM with 100 open streams and frames in flight: acks for what was
 *     read, then UNAVAILABLE; every OK frame on disk in whole lines; exit 0
 *     within shutdown_grace_s;
 *   - a sink stuck inside write_batch next to a working sink-file: with
 *     on_full = reject agents get TEMPORARY_ERROR, the other sink keeps
 *     writing, the relay's memory stays bounded; with block, the relay stops
 *     reading and memory stays bounded too;
 *   - a fast sink that hangs while a gRPC worker writes it: the other worker
 *     (parked at light load) comes in and serves, the working sink still
 *     gets every frame, and once the sink is back one worker polls again.
 */
#include "harness.h"
#include "http_client.h"
#include "steady_agent.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GRPC_UNAVAILABLE 14

static struct relay_proc relay;
static char hold[400];

static void stop(void)
{
    if (*hold)
        unlink(hold); /* never leave a sink stuck behind a failed assertion */
    if (relay.pid)
        relay_stop(&relay, 20000);
}

TestSuite(faults, .fini = stop, .timeout = 240);

/* ------------------------------------------------------------ kill -9 */

#define KILL_FRAMES 50000
#define KILL_ROUNDS 5
#define KILL_WINDOW 100

struct kill_agent {
    const char *id;
    uint8_t *acked;       /* [seq]: acked OK at least once */
    uint64_t n_acked;     /* distinct seqs acked OK */
    uint64_t next_unacked;
};

/* One connection's worth of streaming: register, resend from the first
 * frame not yet acked OK (at-least-once, as real agents do), pipeline with
 * a window, until all are acked or the relay goes away. When kill_after is
 * > 0, SIGKILL the relay once that many frames were acked in this round,
 * with the window still full. Returns frames acked in this round. */
static uint64_t stream_round(struct kill_agent *a, uint64_t kill_after)
{
    struct rc_channel *c = rc_connect(relay.target);
    struct rc_register_result res;
    struct rc_status st;
    cr_assert_eq(rc_register(c, a->id, "t", "linux", &res, &st, 5000), 0, "%s", st.message);
    struct rc_stream *s = rc_stream_open(c, a->id, NULL, 0, &st);
    cr_assert_not_null(s);
    while (a->next_unacked <= KILL_FRAMES && a->acked[a->next_unacked])
        a->next_unacked++;
    uint64_t next = a->next_unacked, inflight = 0, round_acked = 0;
    bool killed = false;
    for (;;) {
        while (!killed && inflight < KILL_WINDOW && next <= KILL_FRAMES) {
            if (a->acked[next]) {
                next++;
                continue;
            }
            if (rc_stream_send_frame(s, harness_frame(a->id, next), 5000) != 0)
                break;
            next++;
            inflight++;
        }
        if (inflight == 0)
            break;
        struct rc_ack ack;
        int r = rc_stream_recv_ack(s, &ack, killed ? 10000 : 5000);
        if (r != 1)
            break; /* the relay is gone: what was not acked is resent */
        inflight--;
        cr_assert(ack.seq >= 1 && ack.seq <= KILL_FRAMES);
        if (ack.status == RC_ACK_OK && !a->acked[ack.seq]) {
            a->acked[ack.seq] = 1;
            a->n_acked++;
            round_acked++;
        }
        if (kill_after && round_acked == kill_after && !killed) {
            relay_kill(&relay); /* mid-stream: frames in flight right now */
            killed = true;
        }
    }
    rc_stream_cancel(s);
    rc_stream_free(s);
    rc_close(c);
    return round_acked;
}

static void seen_crash(void *arg, const char *agent, uint64_t seq)
{
    uint8_t *seen = arg;
    cr_assert_str_eq(agent, "drone-crash");
    cr_assert(seq >= 1 && seq <= KILL_FRAMES, "seq %llu", (unsigned long long)seq);
    if (seen[seq] < 255)
        seen[seq]++;
}

Test(faults, kill_9_mid_stream_loses_no_acked_frame)
{
    harness_prepare(&relay);
    harness_write_config(&relay, "max_inflight = 200\n",
                         "[sink:archive]\nplugin = sink-file\npath = %DIR%/data\nfsync = batch\n");
    struct kill_agent a = {.id = "drone-crash", .next_unacked = 1};
    a.acked = calloc(KILL_FRAMES + 1, 1);
    cr_assert_not_null(a.acked);

    for (int round = 0; round <= KILL_ROUNDS; round++) {
        relay_start(&relay);
        /* Kill after a different, uneven share of the frames each time. */
        uint64_t kill_after = round < KILL_ROUNDS ? 3000 + (uint64_t)round * 1777 : 0;
        uint64_t got = stream_round(&a, kill_after);
        if (round < KILL_ROUNDS) {
            cr_assert_eq(relay.pid, 0, "round %d: relay not killed (%llu acked)", round,
                         (unsigned long long)got);
            cr_assert_eq(relay.exit_status, 128 + SIGKILL);
        }
    }
    cr_assert_eq(a.n_acked, KILL_FRAMES, "the last round acks everything");
    cr_assert_eq(relay_stop(&relay, 20000), 0);

    char dir[400];
    snprintf(dir, sizeof(dir), "%s/data", relay.dir);
    uint8_t *seen = calloc(KILL_FRAMES + 1, 1);
    int torn = harness_for_each_envelope(dir, true, seen_crash, seen);
    cr_assert_leq(torn, KILL_ROUNDS, "at most one torn tail per kill");
    uint64_t missing = 0, dups = 0, first_missing = 0;
    for (uint64_t seq = 1; seq <= KILL_FRAMES; seq++) {
        if (a.acked[seq] && !seen[seq] && !missing++)
            first_missing = seq;
        dups += seen[seq] > 1;
    }
    cr_assert_eq(missing, 0, "%llu OK-acked frames lost, first seq %llu",
                 (unsigned long long)missing, (unsigned long long)first_missing);
    /* Duplicates are allowed (resent after a crash) but bounded by the
     * frames in flight at each kill. */
    cr_assert_leq(dups, (uint64_t)KILL_ROUNDS * 2 * 200, "%llu duplicates",
                  (unsigned long long)dups);
    free(seen);
    free(a.acked);
}

/* ---------------------------------------------------- SIGTERM under load */

#define TERM_STREAMS 100
#define TERM_FRAMES 40
#define TERM_CHANNELS 10

/* seen[stream][seq] from lines of "drone-term-<stream>" */
static void seen_term(void *arg, const char *agent, uint64_t seq)
{
    uint8_t (*seen)[TERM_FRAMES + 1] = arg;
    int i = -1;
    cr_assert_eq(sscanf(agent, "drone-term-%d", &i), 1, "agent %s", agent);
    cr_assert(i >= 0 && i < TERM_STREAMS && seq >= 1 && seq <= TERM_FRAMES);
    seen[i][seq] = 1;
}

Test(faults, sigterm_with_100_open_streams_acks_or_ends_each_and_flushes)
{
    harness_prepare(&relay);
    harness_write_config(&relay, "shutdown_grace_s = 5\nmax_inflight = 100\n",
                         "[sink:archive]\nplugin = sink-file\npath = %DIR%/data\nfsync = batch\n");
    relay_start(&relay);
    struct rc_channel *chans[TERM_CHANNELS];
    struct rc_stream *s[TERM_STREAMS];
    char ids[TERM_STREAMS][32];
    for (int c = 0; c < TERM_CHANNELS; c++)
        chans[c] = rc_connect(relay.target);
    for (int i = 0; i < TERM_STREAMS; i++) {
        struct rc_status st;
        snprintf(ids[i], sizeof(ids[i]), "drone-term-%d", i);
        harness_register(chans[i % TERM_CHANNELS], ids[i], NULL, 0);
        s[i] = rc_stream_open(chans[i % TERM_CHANNELS], ids[i], NULL, 0, &st);
        cr_assert_not_null(s[i]);
    }
    /* Frames go out on every stream, no ack is read yet: at SIGTERM some
     * are acked, some read but not yet on disk, some not yet read. */
    for (int k = 1; k <= TERM_FRAMES; k++)
        for (int i = 0; i < TERM_STREAMS; i++)
            cr_assert_eq(rc_stream_send_frame(s[i], harness_frame(ids[i], (uint64_t)k), 5000), 0);

    int64_t t0 = harness_now_ms();
    int status = relay_stop(&relay, 15000);
    int64_t took = harness_now_ms() - t0;
    cr_assert_eq(status, 0, "exit status %d", status);
    cr_assert_leq(took, 5000 + 1500, "exit took %lld ms, grace is 5 s", (long long)took);

    char dir[400];
    snprintf(dir, sizeof(dir), "%s/data", relay.dir);
    static uint8_t seen[TERM_STREAMS][TERM_FRAMES + 1];
    memset(seen, 0, sizeof(seen));
    harness_for_each_envelope(dir, false, seen_term, seen);
    uint64_t ok_total = 0;
    for (int i = 0; i < TERM_STREAMS; i++) {
        uint8_t acked[TERM_FRAMES + 1] = {0};
        struct rc_ack ack;
        int r;
        uint64_t expect = 1;
        while ((r = rc_stream_recv_ack(s[i], &ack, 5000)) == 1) {
            cr_assert_eq(ack.seq, expect++, "stream %d: acks in order", i);
            if (ack.status == RC_ACK_OK)
                acked[ack.seq] = 1;
        }
        cr_assert_eq(r, 0, "stream %d: no end of stream (%d)", i, r);
        struct rc_status st;
        cr_assert_eq(rc_stream_finish(s[i], &st, 5000), 0);
        cr_assert_eq(st.code, GRPC_UNAVAILABLE, "stream %d ended %s %s", i,
                     rc_status_code_name(st.code), st.message);
        rc_stream_free(s[i]);
        for (int k = 1; k <= TERM_FRAMES; k++) {
            cr_assert(!acked[k] || seen[i][k], "stream %d: seq %d acked OK but not on disk", i, k);
            ok_total += acked[k];
        }
    }
    cr_assert_gt(ok_total, 0, "some frames were acked before the end");
    for (int c = 0; c < TERM_CHANNELS; c++)
        rc_close(chans[c]);
    char *log = harness_read_file(relay.stderr_path, NULL);
    cr_assert(log && strstr(log, "stopped cleanly"), "relay log lacks a clean stop");
    free(log);
}

/* ----------------------------------------------------- a sink that hangs */

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
}

/* The stuck sink holds its queue plus the batch it took into write_batch
 * (at most a queue's worth): 2 * STUCK_QUEUE stays below max_inflight, so
 * the stream still reads when the queue is full and on_full decides. */
#define STUCK_QUEUE 20

static void start_held(const char *on_full)
{
    harness_prepare(&relay);
    rss_measurable(&relay);
    snprintf(hold, sizeof(hold), "%s/hold", relay.dir);
    touch(hold); /* the control sink is stuck in write_batch from the start */
    char body[2048];
    snprintf(body, sizeof(body),
             "[sink:stuck]\nplugin = test-sink-control\nqueue = %d\non_full = %s\n"
             "hold_file = %s\n\n"
             "[sink:archive]\nplugin = sink-file\npath = %%DIR%%/data\nqueue = 1000\n",
             STUCK_QUEUE, on_full, hold);
    harness_write_config(&relay, "max_inflight = 100\n", body);
    relay_start(&relay);
}

static long lines_in(const char *dir)
{
    char *all = harness_read_jsonl_dir(dir, NULL);
    long n = 0;
    for (char *p = all; *p; p++)
        n += *p == '\n';
    free(all);
    return n;
}

#define HELD_FRAMES 50000

Test(faults, stuck_sink_with_reject_gives_temporary_error_and_memory_stays_bounded)
{
    start_held("reject");
    struct rc_channel *c = rc_connect(relay.target);
    harness_register(c, "drone-held", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(c, "drone-held", NULL, 0, &st);
    static uint8_t raw[1024];
    struct rc_frame f = *harness_frame("drone-held", 0);
    f.raw_mavlink = raw;
    f.raw_mavlink_len = sizeof(raw); /* ~1.2 KB frames: 60 MB if all were kept */
    long rss0 = proc_rss_kb(relay.pid);

    uint64_t next = 1, inflight = 0, temporary = 0;
    /* The frames in the stuck sink stay unacked; every other frame is
     * refused at once. */
    while (next <= HELD_FRAMES) {
        while (inflight < 100 && next <= HELD_FRAMES) {
            f.seq = next++;
            cr_assert_eq(rc_stream_send_frame(s, &f, 5000), 0, "seq %llu",
                         (unsigned long long)f.seq);
            inflight++;
        }
        struct rc_ack ack;
        cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1, "the relay must answer, not stall");
        inflight--;
        cr_assert_eq(ack.status, RC_ACK_TEMPORARY_ERROR, "seq %llu: %s while a sink is stuck",
                     (unsigned long long)ack.seq, rc_ack_status_name(ack.status));
        cr_assert(strstr(ack.error, "sink \"stuck\""), "error names the sink: %s", ack.error);
        temporary++;
    }
    struct rc_ack ack;
    int r;
    while ((r = rc_stream_recv_ack(s, &ack, 1000)) == 1) { /* the last refusals */
        cr_assert_eq(ack.status, RC_ACK_TEMPORARY_ERROR);
        inflight--;
        temporary++;
    }
    cr_assert_eq(r, -ETIMEDOUT);
    uint64_t stuck = inflight;
    cr_assert(stuck > STUCK_QUEUE && stuck <= 2 * STUCK_QUEUE, "%llu frames in the stuck sink",
              (unsigned long long)stuck);
    long rss1 = proc_rss_kb(relay.pid);
    cr_assert_eq(temporary, HELD_FRAMES - stuck);
    cr_assert_lt(rss1 - rss0, 24 * 1024, "relay grew %ld KiB over %d frames", rss1 - rss0,
                 HELD_FRAMES);

    /* The working sink was not held up by the stuck one: it wrote every frame. */
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/data", relay.dir);
    cr_assert_eq(lines_in(dir), HELD_FRAMES, "sink-file wrote %ld of %d", lines_in(dir),
                 HELD_FRAMES);

    /* Released: the queued frames are acked OK, and new ones flow. */
    unlink(hold);
    for (uint64_t i = 0; i < stuck; i++) {
        cr_assert_eq(rc_stream_recv_ack(s, &ack, 10000), 1);
        cr_assert_eq(ack.status, RC_ACK_OK, "%s", rc_ack_status_name(ack.status));
    }
    f.seq = HELD_FRAMES + 1;
    cr_assert_eq(rc_stream_send_frame(s, &f, 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(s, &ack, 10000), 1);
    cr_assert_eq(ack.status, RC_ACK_OK, "%s", rc_ack_status_name(ack.status));
    rc_stream_close_send(s, 5000);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    cr_assert_eq(st.code, 0);
    rc_stream_free(s);
    rc_close(c);
    cr_assert_eq(relay_stop(&relay, 20000), 0);
}

Test(faults, stuck_sink_with_block_stops_reading_and_memory_stays_bounded)
{
    start_held("block");
    struct rc_channel *c = rc_connect(relay.target);
    harness_register(c, "drone-blocked", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(c, "drone-blocked", NULL, 0, &st);
    static uint8_t raw[1024];
    struct rc_frame f = *harness_frame("drone-blocked", 0);
    f.raw_mavlink = raw;
    f.raw_mavlink_len = sizeof(raw);
    long rss0 = proc_rss_kb(relay.pid);

    /* Never read acks: only the relay's reads can stop this sender, and
     * with the stuck queue full they must. */
    uint64_t sent = 0;
    int rc = 0;
    while (sent < HELD_FRAMES) {
        f.seq = sent + 1;
        if ((rc = rc_stream_send_frame(s, &f, 1000)) != 0)
            break;
        sent++;
    }
    cr_assert_eq(rc, -ETIMEDOUT, "sends never stalled (%llu sent)", (unsigned long long)sent);
    long rss1 = proc_rss_kb(relay.pid);
    cr_assert_lt(rss1 - rss0, 24 * 1024, "relay grew %ld KiB while blocked", rss1 - rss0);

    /* Released: every frame sent is acked OK, in order, and written once. */
    unlink(hold);
    f.seq = sent + 1;
    cr_assert_eq(rc_stream_send_frame(s, &f, 20000), 0);
    sent++;
    for (uint64_t i = 1; i <= sent; i++) {
        struct rc_ack ack;
        cr_assert_eq(rc_stream_recv_ack(s, &ack, 10000), 1, "ack %llu of %llu",
                     (unsigned long long)i, (unsigned long long)sent);
        cr_assert_eq(ack.status, RC_ACK_OK);
        cr_assert_eq(ack.seq, i);
    }
    rc_stream_close_send(s, 5000);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    cr_assert_eq(st.code, 0);
    rc_stream_free(s);
    rc_close(c);
    cr_assert_eq(relay_stop(&relay, 20000), 0);
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/data", relay.dir);
    cr_assert_eq(lines_in(dir), (long)sent, "sink-file holds each frame once");
}

struct lines_at_least {
    const char *dir;
    long want;
};

/* aero_relay_grpc_workers_polling reads want. */
struct polling_check {
    int port;
    double want;
};

static bool polling_is(void *arg)
{
    struct polling_check *c = arg;
    struct http_reply r;
    if (http_request(c->port, "GET", "/metrics", 5000, &r) != 0)
        return false;
    double v = http_metric_value(r.body, "aero_relay_grpc_workers_polling");
    http_reply_free(&r);
    return v == c->want;
}

static bool has_lines(void *arg)
{
    struct lines_at_least *l = arg;
    return lines_in(l->dir) >= l->want;
}

/*
 * A sink that has proven fast is written by the gRPC workers themselves;
 * here it hangs in the middle of such a write. One worker is then held
 * (and the inline slot with it): the other must still answer calls, and a
 * second agent's frames must still reach the working sink-file through its
 * thread, not wait in its queue for a writer that never comes back.
 */
#define B_FRAMES 80 /* under ctl's queue and max_inflight: all are read */

Test(faults, a_fast_sink_that_hangs_holds_one_worker_and_strands_nothing)
{
    harness_prepare(&relay);
    relay.http = true;
    snprintf(hold, sizeof(hold), "%s/hold", relay.dir);
    char body[2048];
    snprintf(body, sizeof(body),
             "[sink:ctl]\nplugin = test-sink-control\nqueue = 100\non_full = block\n"
             "hold_file = %s\n\n"
             "[sink:archive]\nplugin = sink-file\npath = %%DIR%%/data\n",
             hold);
    harness_write_config(&relay, NULL, body); /* the harness's relay has 2 workers */
    relay_start(&relay);
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/data", relay.dir);

    /* One frame at a time: both sinks prove fast and are written inline. */
    struct rc_channel *ca = rc_connect(relay.target);
    harness_register(ca, "drone-a", NULL, 0);
    struct rc_status st;
    struct rc_stream *a = rc_stream_open(ca, "drone-a", NULL, 0, &st);
    struct rc_ack ack;
    for (uint64_t seq = 1; seq <= 200; seq++) {
        cr_assert_eq(rc_stream_send_frame(a, harness_frame("drone-a", seq), 5000), 0);
        cr_assert_eq(rc_stream_recv_ack(a, &ack, 5000), 1);
        cr_assert_eq(ack.status, RC_ACK_OK);
    }

    /* One frame at a time needs one worker: the other stays parked. */
    struct polling_check one = {relay.http_port, 1}, two = {relay.http_port, 2};
    cr_assert(polling_is(&one), "more than one worker polls at light load");

    touch(hold); /* the next write of ctl hangs */
    cr_assert_eq(rc_stream_send_frame(a, harness_frame("drone-a", 201), 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(a, &ack, 300), -ETIMEDOUT, "acked while ctl hangs");
    cr_assert(harness_wait_for(polling_is, &two, 5000), "no worker came in for the stuck one");

    /* Another agent is still served... */
    struct rc_channel *cb = rc_connect(relay.target);
    int serving = -1;
    cr_assert_eq(rc_health_check(cb, "", &serving, &st, 5000), 0, "no worker answers");
    harness_register(cb, "drone-b", NULL, 0);
    struct rc_stream *b = rc_stream_open(cb, "drone-b", NULL, 0, &st);
    /* Back to back, so the worker reading them is busy and defers writes. */
    for (uint64_t seq = 1; seq <= B_FRAMES; seq++)
        cr_assert_eq(rc_stream_send_frame(b, harness_frame("drone-b", seq), 5000), 0);
    /* ...and its frames, and drone-a's last one, reach the working sink. */
    struct lines_at_least want = {dir, 200 + 1 + B_FRAMES};
    cr_assert(harness_wait_for(has_lines, &want, 10000), "sink-file has %ld of %ld lines",
              lines_in(dir), want.want);

    unlink(hold);
    cr_assert_eq(rc_stream_recv_ack(a, &ack, 10000), 1);
    cr_assert_eq(ack.status, RC_ACK_OK, "%s", rc_ack_status_name(ack.status));
    for (uint64_t seq = 1; seq <= B_FRAMES; seq++) {
        cr_assert_eq(rc_stream_recv_ack(b, &ack, 10000), 1, "drone-b ack %llu",
                     (unsigned long long)seq);
        cr_assert_eq(ack.status, RC_ACK_OK, "%s", rc_ack_status_name(ack.status));
    }
    /* The worker that was stuck has had little to do since: it parks. */
    cr_assert(harness_wait_for(polling_is, &one, 10000), "both workers still poll when idle");
    struct rc_stream *both[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        rc_stream_close_send(both[i], 5000);
        cr_assert_eq(rc_stream_finish(both[i], &st, 10000), 0);
        cr_assert_eq(st.code, 0);
        rc_stream_free(both[i]);
    }
    rc_close(ca);
    rc_close(cb);
    cr_assert_eq(relay_stop(&relay, 20000), 0);
    cr_assert_eq(lines_in(dir), 200 + 1 + B_FRAMES, "each frame written once");
}

/* ---- readiness follows the sinks ([http] unready_after_s) -------------- */

struct readyz_check {
    int port;
    int status;        /* wanted */
    const char *part;  /* wanted in the body, or NULL */
};

static bool readyz_is(void *arg)
{
    struct readyz_check *c = arg;
    struct http_reply r;
    if (http_request(c->port, "GET", "/readyz", 5000, &r) != 0)
        return false;
    bool ok = r.status == c->status && (!c->part || strstr(r.body, c->part));
    http_reply_free(&r);
    return ok;
}

/* A sink that refuses every frame for unready_after_s makes /readyz 503,
 * naming it; it answers 200 again once the sink takes frames. A sink
 * that refuses only some frames never does. */
Test(faults, a_sink_refusing_everything_makes_the_relay_unready_until_it_recovers)
{
    harness_prepare(&relay);
    relay.http = true;
    relay.http_keys = "unready_after_s = 1\n";
    char fail[400];
    snprintf(fail, sizeof(fail), "%s/fail", relay.dir);
    char body[2048];
    snprintf(body, sizeof(body),
             "[sink:ctl]\nplugin = test-sink-control\nfail_file = %s\n\n"
             "[sink:archive]\nplugin = sink-file\npath = %%DIR%%/data\n",
             fail);
    harness_write_config(&relay, NULL, body);
    relay_start(&relay);
    struct rc_channel *ch = rc_connect(relay.target);
    harness_register(ch, "drone-r", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "drone-r", NULL, 0, &st);
    struct rc_ack ack;
    uint64_t seq = 1;

    struct readyz_check ready = {relay.http_port, 200, "{\"status\":\"ok\"}"};
    cr_assert(readyz_is(&ready));
    touch(fail);
    struct readyz_check unready = {relay.http_port, 503, "\"component\":\"sink:ctl\""};
    /* Frames keep coming, every one refused by ctl, until /readyz turns. */
    int64_t until = harness_now_ms() + 10000;
    while (!readyz_is(&unready) && harness_now_ms() < until) {
        cr_assert_eq(rc_stream_send_frame(s, harness_frame("drone-r", seq++), 5000), 0);
        cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1);
        cr_assert_neq(ack.status, RC_ACK_OK, "ctl failing, yet the frame was acked OK");
    }
    cr_assert(readyz_is(&unready), "/readyz never answered 503 for the failing sink");
    cr_assert_eq(relay_metric(relay.http_port, "aero_relay_ready"), 0);
    /* ... and the 503 lists every sink's state: ctl failing, archive ok. */
    struct http_reply r;
    cr_assert_eq(http_request(relay.http_port, "GET", "/readyz", 5000, &r), 0);
    cr_expect_not_null(strstr(r.body, "\"sink:ctl\":{\"state\":\"failing\",\"reason\":\""),
                       "%s", r.body);
    cr_expect_not_null(strstr(r.body, "\"sink:archive\":{\"state\":\"ok\"}"), "%s", r.body);
    http_reply_free(&r);

    unlink(fail);
    cr_assert_eq(rc_stream_send_frame(s, harness_frame("drone-r", seq++), 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1);
    cr_assert_eq(ack.status, RC_ACK_OK, "%s", rc_ack_status_name(ack.status));
    cr_assert(harness_wait_for(readyz_is, &ready, 5000), "/readyz stayed 503 after recovery");
    cr_assert_eq(relay_metric(relay.http_port, "aero_relay_ready"), 1);
    cr_assert_eq(http_request(relay.http_port, "GET", "/readyz?verbose", 5000, &r), 0);
    cr_expect_not_null(strstr(r.body, "\"sink:ctl\":{\"state\":\"ok\"}"), "%s", r.body);
    http_reply_free(&r);
    rc_stream_close_send(s, 5000);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    rc_stream_free(s);
    harness_finish(&relay, &ch);
}

/* ---- which sink takes which frame ([sink:*] match / exclude) ----------- */

static int send_named(struct rc_stream *s, const char *agent, uint64_t seq, const char *name,
                      struct rc_ack *ack)
{
    struct rc_frame f = *harness_frame(agent, seq);
    f.msg_name = name;
    cr_assert_eq(rc_stream_send_frame(s, &f, 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(s, ack, 5000), 1);
    return ack->status;
}

/* A relay with [sink:pos] (match) and [sink:rest] (exclude); relay_extra
 * for [relay]. */
static struct rc_stream *start_routed(const char *relay_extra, struct rc_channel **ch)
{
    harness_prepare(&relay);
    relay.http = true;
    harness_write_config(&relay, relay_extra,
                         "[sink:pos]\nplugin = sink-file\npath = %DIR%/pos\n"
                         "match = global_position_int, LOCAL_*\n\n"
                         "[sink:rest]\nplugin = sink-file\npath = %DIR%/rest\n"
                         "exclude = GLOBAL_POSITION_INT , LOCAL_*,HEART*\n");
    relay_start(&relay);
    *ch = rc_connect(relay.target);
    harness_register(*ch, "drone-m", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(*ch, "drone-m", NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    return s;
}

Test(faults, match_and_exclude_route_frames_and_unmatched_ones_are_refused)
{
    struct rc_channel *ch;
    struct rc_stream *s = start_routed(NULL, &ch);
    struct rc_ack ack;
    cr_assert_eq(send_named(s, "drone-m", 1, "GLOBAL_POSITION_INT", &ack), RC_ACK_OK);
    cr_assert_eq(send_named(s, "drone-m", 2, "LOCAL_POSITION_NED", &ack), RC_ACK_OK);
    cr_assert_eq(send_named(s, "drone-m", 3, "ATTITUDE", &ack), RC_ACK_OK);
    cr_assert_eq(send_named(s, "drone-m", 4, "HEARTBEAT", &ack), RC_ACK_PERMANENT_ERROR);
    cr_assert_str_eq(ack.error, "no sink accepts msg_name HEARTBEAT (match / exclude)");
    char pos[400], rest[400];
    snprintf(pos, sizeof(pos), "%s/pos", relay.dir);
    snprintf(rest, sizeof(rest), "%s/rest", relay.dir);
    struct lines_at_least p2 = {pos, 2}, r1 = {rest, 1};
    cr_assert(harness_wait_for(has_lines, &p2, 5000), "pos holds %ld lines", lines_in(pos));
    cr_assert(harness_wait_for(has_lines, &r1, 5000), "rest holds %ld lines", lines_in(rest));
    cr_assert_eq(lines_in(pos), 2, "pos took a frame it does not match");
    cr_assert_eq(lines_in(rest), 1, "rest took an excluded frame");
    cr_assert_eq(relay_metric(relay.http_port,
                              "aero_sink_filtered_total{sink=\"pos\",plugin=\"sink-file\"}"),
                 2);
    cr_assert_eq(relay_metric(relay.http_port,
                              "aero_sink_filtered_total{sink=\"rest\",plugin=\"sink-file\"}"),
                 3);
    struct rc_status st;
    rc_stream_close_send(s, 5000);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    rc_stream_free(s);
    harness_finish(&relay, &ch);

    /* [relay] unmatched = ack: the operator says such frames may go. */
    s = start_routed("unmatched = ack\n", &ch);
    cr_assert_eq(send_named(s, "drone-m", 1, "HEARTBEAT", &ack), RC_ACK_OK, "%s", ack.error);
    rc_stream_close_send(s, 5000);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    rc_stream_free(s);
    harness_finish(&relay, &ch);
}
