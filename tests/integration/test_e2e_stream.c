/*
 * test_e2e_stream.c - the real relay over real gRPC: Register and
 * TelemetryStream with every status code SPEC.md section 2 names, acks,
 * supersession, and a 10 x 2,000 frame run checked frame by frame in the
 * sink file.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct relay_proc relay;
static struct rc_channel *ch;

static const char *default_sinks =
    "[sink:archive]\nplugin = sink-file\npath = %DIR%/data\nprefix = telemetry\n"
    "fsync = batch\n\n[sink:console]\nplugin = sink-stdout\n";

static void start_default(void)
{
    harness_prepare(&relay);
    ch = harness_start(&relay, "max_inflight = 100\nmax_message_bytes = 16384\n", default_sinks);
}

static void stop_default(void)
{
    rc_close(ch);
    int status = relay_stop(&relay, 20000);
    cr_expect_eq(status, 0, "relay exit status %d", status);
}

TestSuite(stream, .init = start_default, .fini = stop_default, .timeout = 120);

/* Stream frames seq 1..n on s; expect every ack OK in order of seq. */
static void send_and_expect_ok(struct rc_stream *s, const char *agent, uint64_t first, uint64_t n)
{
    for (uint64_t seq = first; seq < first + n; seq++)
        cr_assert_eq(rc_stream_send_frame(s, harness_frame(agent, seq), 5000), 0);
    for (uint64_t i = 0; i < n; i++) {
        struct rc_ack ack;
        cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1, "ack %llu missing",
                     (unsigned long long)i);
        cr_assert_eq(ack.status, RC_ACK_OK, "seq %llu: %s %s", (unsigned long long)ack.seq,
                     rc_ack_status_name(ack.status), ack.error);
        char want[160];
        snprintf(want, sizeof(want), "%s:%llu", agent, (unsigned long long)ack.seq);
        cr_assert_str_eq(ack.frame_id, want);
    }
}

static struct rc_status finish(struct rc_stream *s)
{
    struct rc_status st;
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    return st;
}

Test(stream, register_returns_an_unguessable_session_and_max_inflight)
{
    struct rc_register_result a, b;
    struct rc_status st;
    cr_assert_eq(rc_register(ch, "drone-1", "1.0", "linux/arm64", &a, &st, 5000), 0);
    cr_assert_str_eq(a.agent_id, "drone-1");
    cr_assert_eq(a.max_inflight, 100);
    cr_assert_eq(strlen(a.session_id), 37, "%s", a.session_id);
    cr_assert_eq(strncmp(a.session_id, "sess-", 5), 0);
    for (const char *p = a.session_id + 5; *p; p++)
        cr_assert(strchr("0123456789abcdef", *p), "non-hex in %s", a.session_id);
    cr_assert_eq(rc_register(ch, "drone-1", "1.0", "linux/arm64", &b, &st, 5000), 0);
    cr_assert_str_neq(a.session_id, b.session_id);
}

Test(stream, register_refuses_bad_agent_ids)
{
    const char *bad[] = {"", "has space", "slash/no", "semi;colon", "star*", NULL};
    struct rc_status st;
    for (size_t i = 0; bad[i]; i++) {
        cr_assert_eq(rc_register(ch, bad[i], "1", "x", NULL, &st, 5000), -EIO, "%s", bad[i]);
        cr_assert_eq(st.code, 3, "agent \"%s\": %s", bad[i], rc_status_code_name(st.code));
    }
    char longid[130];
    memset(longid, 'a', 129);
    longid[129] = '\0';
    cr_assert_eq(rc_register(ch, longid, "1", "x", NULL, &st, 5000), -EIO);
    cr_assert_eq(st.code, 3);
    longid[128] = '\0'; /* 128 bytes is the longest allowed */
    cr_assert_eq(rc_register(ch, longid, "1", "x", NULL, &st, 5000), 0);
    cr_assert_eq(rc_register(ch, "A-z.0_9:x", "1", "x", NULL, &st, 5000), 0);
}

Test(stream, frames_are_acked_ok_and_eof_ends_with_ok)
{
    harness_register(ch, "drone-ok", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "drone-ok", NULL, 0, &st);
    cr_assert_not_null(s);
    send_and_expect_ok(s, "drone-ok", 1, 50);
    cr_assert_eq(rc_stream_close_send(s, 5000), 0);
    struct rc_ack ack;
    cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 0, "end of stream after EOF");
    st = finish(s);
    cr_assert_eq(st.code, 0, "%s %s", rc_status_code_name(st.code), st.message);
    rc_stream_free(s);
}

Test(stream, missing_or_empty_agent_header_is_invalid_argument)
{
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, NULL, NULL, 0, &st);
    st = finish(s);
    cr_assert_eq(st.code, 3, "%s %s", rc_status_code_name(st.code), st.message);
    rc_stream_free(s);

    s = rc_stream_open(ch, "", NULL, 0, &st);
    st = finish(s);
    cr_assert_eq(st.code, 3);
    rc_stream_free(s);
}

Test(stream, unregistered_agent_is_failed_precondition)
{
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "never-registered", NULL, 0, &st);
    st = finish(s);
    cr_assert_eq(st.code, 9, "%s %s", rc_status_code_name(st.code), st.message);
    cr_assert_str_eq(st.message, "register first");
    rc_stream_free(s);
}

Test(stream, a_second_stream_supersedes_the_first_with_aborted)
{
    harness_register(ch, "drone-dup", NULL, 0);
    struct rc_status st;
    struct rc_stream *a = rc_stream_open(ch, "drone-dup", NULL, 0, &st);
    send_and_expect_ok(a, "drone-dup", 1, 3);
    struct rc_stream *b = rc_stream_open(ch, "drone-dup", NULL, 0, &st);
    send_and_expect_ok(b, "drone-dup", 4, 3); /* b is attached once it acks */
    struct rc_ack ack;
    cr_assert_eq(rc_stream_recv_ack(a, &ack, 5000), 0, "old stream must end");
    st = finish(a);
    cr_assert_eq(st.code, 10, "%s %s", rc_status_code_name(st.code), st.message);
    rc_stream_free(a);

    /* The old stream's end must not have removed the new session. */
    Aeroarc__Relay__V1__GetDroneStatusResponse *resp = NULL;
    cr_assert_eq(rc_get_drone_status(ch, "drone-dup", &resp, &st, 5000), 0, "%s", st.message);
    aeroarc__relay__v1__get_drone_status_response__free_unpacked(resp, NULL);
    send_and_expect_ok(b, "drone-dup", 7, 3);
    cr_assert_eq(rc_stream_close_send(b, 5000), 0);
    st = finish(b);
    cr_assert_eq(st.code, 0);
    rc_stream_free(b);
}

Test(stream, a_new_register_supersedes_the_open_stream)
{
    char first[64], second[64];
    harness_register(ch, "drone-rereg", first, sizeof(first));
    struct rc_status st;
    struct rc_stream *a = rc_stream_open(ch, "drone-rereg", NULL, 0, &st);
    send_and_expect_ok(a, "drone-rereg", 1, 2);
    harness_register(ch, "drone-rereg", second, sizeof(second));
    st = finish(a);
    cr_assert_eq(st.code, 10, "%s %s", rc_status_code_name(st.code), st.message);
    rc_stream_free(a);

    Aeroarc__Relay__V1__GetDroneStatusResponse *resp = NULL;
    cr_assert_eq(rc_get_drone_status(ch, "drone-rereg", &resp, &st, 5000), 0, "%s", st.message);
    cr_assert_str_eq(resp->drone->session_id, second);
    aeroarc__relay__v1__get_drone_status_response__free_unpacked(resp, NULL);
}

Test(stream, stream_end_removes_the_session)
{
    harness_register(ch, "drone-gone", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "drone-gone", NULL, 0, &st);
    send_and_expect_ok(s, "drone-gone", 1, 1);
    rc_stream_close_send(s, 5000);
    st = finish(s);
    cr_assert_eq(st.code, 0);
    rc_stream_free(s);
    Aeroarc__Relay__V1__GetDroneStatusResponse *resp = NULL;
    cr_assert_eq(rc_get_drone_status(ch, "drone-gone", &resp, &st, 5000), -EIO);
    cr_assert_eq(st.code, 5, "%s", rc_status_code_name(st.code));
}

Test(stream, limits_give_permanent_error_and_the_stream_goes_on)
{
    harness_register(ch, "drone-lim", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "drone-lim", NULL, 0, &st);
    struct rc_frame f = *harness_frame("someone-else", 1);
    cr_assert_eq(rc_stream_send_frame(s, &f, 5000), 0);
    char big[4097];
    memset(big, 'v', 4096);
    big[4096] = '\0';
    struct rc_field fld = {"k", big};
    f = *harness_frame("drone-lim", 2);
    f.fields = &fld;
    f.n_fields = 1;
    cr_assert_eq(rc_stream_send_frame(s, &f, 5000), 0); /* 4096: allowed */
    big[4096] = 'v';
    char bigger[4098];
    memcpy(bigger, big, 4097);
    bigger[4097] = '\0';
    fld.value = bigger;
    f.seq = 3;
    cr_assert_eq(rc_stream_send_frame(s, &f, 5000), 0); /* 4097: over */
    f = *harness_frame("", 4); /* empty agent_id in the frame is fine */
    cr_assert_eq(rc_stream_send_frame(s, &f, 5000), 0);

    int want[] = {RC_ACK_PERMANENT_ERROR, RC_ACK_OK, RC_ACK_PERMANENT_ERROR, RC_ACK_OK};
    int got[5] = {-1, -1, -1, -1, -1};
    for (int i = 0; i < 4; i++) {
        struct rc_ack ack;
        cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1);
        cr_assert(ack.seq >= 1 && ack.seq <= 4);
        got[ack.seq] = ack.status;
        if (ack.status == RC_ACK_PERMANENT_ERROR)
            cr_assert(ack.error && *ack.error, "a permanent error says why");
    }
    for (int i = 0; i < 4; i++)
        cr_assert_eq(got[i + 1], want[i], "seq %d: %s", i + 1, rc_ack_status_name(got[i + 1]));
    rc_stream_close_send(s, 5000);
    st = finish(s);
    cr_assert_eq(st.code, 0);
    rc_stream_free(s);
}

Test(stream, malformed_message_is_invalid_argument_and_others_are_served)
{
    harness_register(ch, "drone-bad", NULL, 0);
    harness_register(ch, "drone-good", NULL, 0);
    struct rc_status st;
    struct rc_stream *good = rc_stream_open(ch, "drone-good", NULL, 0, &st);
    send_and_expect_ok(good, "drone-good", 1, 5);

    struct rc_stream *bad = rc_stream_open(ch, "drone-bad", NULL, 0, &st);
    const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01}; /* length past end */
    cr_assert_eq(rc_stream_send(bad, garbage, sizeof(garbage), 5000), 0);
    st = finish(bad);
    cr_assert_eq(st.code, 3, "%s %s", rc_status_code_name(st.code), st.message);
    rc_stream_free(bad);

    send_and_expect_ok(good, "drone-good", 6, 5);
    rc_stream_close_send(good, 5000);
    st = finish(good);
    cr_assert_eq(st.code, 0);
    rc_stream_free(good);
}

Test(stream, message_over_max_message_bytes_is_resource_exhausted)
{
    harness_register(ch, "drone-huge", NULL, 0);
    harness_register(ch, "drone-fine", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "drone-huge", NULL, 0, &st);
    uint8_t *huge = calloc(1, 20000); /* never parsed: gRPC refuses it first */
    huge[0] = 0x3a;                   /* field 7 (dialect), length-delimited */
    huge[1] = 0x9d;
    huge[2] = 0x9c;
    huge[3] = 0x01; /* 19997 */
    cr_assert_eq(rc_stream_send(s, huge, 20000, 5000), 0);
    free(huge);
    st = finish(s);
    cr_assert_eq(st.code, 8, "%s %s", rc_status_code_name(st.code), st.message);
    rc_stream_free(s);

    struct rc_stream *ok = rc_stream_open(ch, "drone-fine", NULL, 0, &st);
    send_and_expect_ok(ok, "drone-fine", 1, 3);
    rc_stream_close_send(ok, 5000);
    st = finish(ok);
    cr_assert_eq(st.code, 0);
    rc_stream_free(ok);
}

Test(stream, health_check_and_unknown_methods)
{
    int serving = -1;
    struct rc_status st;
    cr_assert_eq(rc_health_check(ch, "", &serving, &st, 5000), 0);
    cr_assert_eq(serving, RC_HEALTH_SERVING);
    cr_assert_eq(rc_health_check(ch, "aeroarc.agent.v1.AgentGateway", &serving, &st, 5000), 0);
    cr_assert_eq(serving, RC_HEALTH_SERVING);
    cr_assert_eq(rc_health_check(ch, "aeroarc.relay.v1.RelayControl", &serving, &st, 5000), 0);
    cr_assert_eq(rc_health_check(ch, "no.such.Service", &serving, &st, 5000), -EIO);
    cr_assert_eq(st.code, 5);
    uint8_t *resp = NULL;
    size_t len = 0;
    cr_assert_eq(rc_unary(ch, "/no.such.Service/Method", NULL, 0, NULL, 0, &resp, &len, &st, 5000),
                 -EIO);
    cr_assert_eq(st.code, 12, "%s", rc_status_code_name(st.code));
}

/* ---- 10 agents x 2,000 frames, window 100, every frame once in the file */

#define AGENTS 10
#define FRAMES 2000
#define WINDOW 100

struct agent_run {
    char id[32];
    int ok_acks;
    int failures;
    char why[640]; /* the first failure: which step, what it returned */
};

static void agent_failed(struct agent_run *a, const char *step, int rc, const struct rc_status *st)
{
    if (a->failures++ == 0)
        snprintf(a->why, sizeof(a->why), "%s: rc %d, status %d %s", step, rc, st ? st->code : 0,
                 st ? st->message : "");
}

static void *run_agent(void *arg)
{
    struct agent_run *a = arg;
    struct rc_channel *own = rc_connect(relay.target);
    struct rc_status st;
    memset(&st, 0, sizeof(st));
    int rc = rc_register(own, a->id, "1", "x", NULL, &st, 5000);
    if (rc != 0) {
        agent_failed(a, "register", rc, &st);
        rc_close(own);
        return NULL;
    }
    struct rc_stream *s = rc_stream_open(own, a->id, NULL, 0, &st);
    uint64_t sent = 0, acked = 0;
    while (acked < FRAMES) {
        while (sent < FRAMES && sent - acked < WINDOW) {
            rc = rc_stream_send_frame(s, harness_frame(a->id, sent + 1), 10000);
            if (rc != 0) {
                agent_failed(a, "send", rc, NULL);
                goto done;
            }
            sent++;
        }
        struct rc_ack ack;
        rc = rc_stream_recv_ack(s, &ack, 10000);
        if (rc != 1) {
            agent_failed(a, "recv_ack", rc, NULL);
            goto done;
        }
        acked++;
        if (ack.status == RC_ACK_OK)
            a->ok_acks++;
    }
    rc_stream_close_send(s, 5000);
done:
    rc = rc_stream_finish(s, &st, 10000);
    size_t used = strlen(a->why);
    if (a->failures > 0) /* after a failed send or receive: how the stream ended */
        snprintf(a->why + used, sizeof(a->why) - used, "; the stream ended %d %s", st.code,
                 st.message);
    if (st.code != 0)
        agent_failed(a, "finish", rc, &st);
    rc_stream_free(s);
    rc_close(own);
    return NULL;
}

/* Find "agent_id":"<id>" ... "seq":<n> in each line; count per (agent, seq). */
static void count_frames(const char *jsonl, int counts[AGENTS][FRAMES + 1], size_t *lines)
{
    *lines = 0;
    for (const char *line = jsonl; *line;) {
        const char *end = strchr(line, '\n');
        cr_assert_not_null(end, "the file ends with a complete line");
        (*lines)++;
        int agent = -1;
        unsigned long long seq = 0;
        /* Search this line only: strstr would scan the whole file each time. */
        size_t n = (size_t)(end - line);
        const char *a = memmem(line, n, "\"agent_id\":\"bulk-", 17);
        const char *q = memmem(line, n, "\"seq\":", 6);
        cr_assert(a && q, "line has agent_id and seq: %.*s", (int)n, line);
        agent = atoi(a + strlen("\"agent_id\":\"bulk-"));
        seq = strtoull(q + 6, NULL, 10);
        cr_assert(agent >= 0 && agent < AGENTS && seq >= 1 && seq <= FRAMES);
        counts[agent][seq]++;
        line = end + 1;
    }
}

Test(stream, ten_agents_two_thousand_frames_each_every_frame_once_in_the_file)
{
    pthread_t t[AGENTS];
    struct agent_run runs[AGENTS];
    for (int i = 0; i < AGENTS; i++) {
        memset(&runs[i], 0, sizeof(runs[i]));
        snprintf(runs[i].id, sizeof(runs[i].id), "bulk-%d", i);
        pthread_create(&t[i], NULL, run_agent, &runs[i]);
    }
    for (int i = 0; i < AGENTS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(runs[i].failures, 0, "agent %d had %d failures, the first at %s", i,
                     runs[i].failures, runs[i].why);
        cr_assert_eq(runs[i].ok_acks, FRAMES, "agent %d: %d OK acks", i, runs[i].ok_acks);
    }
    /* fsync = batch: every OK-acked frame is in the file already. */
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/data", relay.dir);
    size_t files = 0, lines = 0;
    char *all = harness_read_jsonl_dir(dir, &files);
    cr_assert_geq(files, 1);
    static int counts[AGENTS][FRAMES + 1];
    memset(counts, 0, sizeof(counts));
    count_frames(all, counts, &lines);
    free(all);
    for (int a = 0; a < AGENTS; a++)
        for (int seq = 1; seq <= FRAMES; seq++)
            cr_assert_eq(counts[a][seq], 1, "agent %d seq %d appears %d times", a, seq,
                         counts[a][seq]);
    cr_assert_eq(lines, (size_t)AGENTS * FRAMES);
}

/* ------------------------------------------------------------ summary */

struct summary_seen {
    const char *log_path;
    long frames, acks_ok; /* summed over every summary line so far */
    bool streaming_line;  /* a line saw the session and its open stream */
    bool sink_ok;
};

/* Sum what the summary lines of the log say so far. */
static bool summed_five_frames(void *arg)
{
    struct summary_seen *w = arg;
    char *log = harness_read_file(w->log_path, NULL);
    w->frames = w->acks_ok = 0;
    for (const char *p = log ? strstr(log, "summary, last ") : NULL; p;
         p = strstr(p + 1, "summary, last ")) {
        const char *f = strstr(p, "frames/s ("), *a = strstr(p, "acks ok ");
        if (f && a) {
            w->frames += strtol(f + strlen("frames/s ("), NULL, 10);
            w->acks_ok += strtol(a + strlen("acks ok "), NULL, 10);
        }
        w->streaming_line |= strncmp(strstr(p, ": ") + 2, "1 session(s), 1 stream(s);", 26) == 0;
        const char *eol = strchr(p, '\n');
        const char *sink = strstr(p, "; sink archive ok (queue 0/4096)");
        w->sink_ok |= sink && (!eol || sink < eol);
    }
    free(log);
    return w->frames == 5 && w->acks_ok == 5 && w->streaming_line;
}

/* [log] summary_interval_s = 1: a line at info every second with
 * sessions, streams, frames, acks by status and each sink's state; the
 * frames and acks it counts add up to what was sent. */
Test(summary, a_line_every_interval_counts_what_went_through, .timeout = 60)
{
    struct relay_proc r;
    harness_prepare(&r);
    r.log_keys = "level = info\nformat = text\nsummary_interval_s = 1";
    struct rc_channel *c = harness_start(
        &r, NULL, "[sink:archive]\nplugin = sink-file\npath = %DIR%/data\n");
    harness_register(c, "drone-sum", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(c, "drone-sum", NULL, 0, &st);
    cr_assert_not_null(s);
    size_t counts[4] = {0};
    harness_stream_frames(s, "drone-sum", 1, 5, counts, NULL, 0);
    cr_assert_eq(counts[0], 5);
    struct summary_seen w = {.log_path = r.stderr_path};
    cr_expect(harness_wait_for(summed_five_frames, &w, 10000),
              "summary lines counted %ld frame(s), %ld OK ack(s), stream line %d", w.frames,
              w.acks_ok, w.streaming_line);
    cr_expect(w.sink_ok, "no \"sink archive ok\" in a summary line");
    rc_stream_cancel(s);
    rc_stream_finish(s, &st, 5000);
    rc_stream_free(s);
    harness_finish(&r, &c);
}
