/*
 * test_sink_nats_e2e.c - the real relay with sink-nats in front of a real
 * nats-server: ten agents (relay_client, one connection each) send 10,000
 * frames and resend every frame not acked OK, as real agents do; the NATS
 * server is restarted (same store) partway through. Afterwards the stream,
 * read whole by a pull consumer, must hold every frame exactly once: what
 * was acked OK was stored, and resends were dropped by Nats-Msg-Id.
 * Generation-2 agents: the same seq in two WAL generations is two messages
 * (Nats-Msg-Id <agent_id>:<wal_id>:<seq>) while a true resend is still
 * dropped, with the Aero-* headers of the frame's protocol, wal_id, intent
 * and relay.
 */
#include "harness.h"
#include "http_client.h"
#include "nats_server.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { AGENTS = 10, FRAMES = 1000, WINDOW = 20 };

static struct relay_proc relay;
static struct nats_server srv;
static natsConnection *tnc;
static jsCtx *tjs;

static void teardown(void)
{
    if (tjs)
        jsCtx_Destroy(tjs);
    if (tnc)
        natsConnection_Destroy(tnc);
    harness_kill(&relay, NULL);
    nats_server_cleanup(&srv);
}

TestSuite(sink_nats_e2e, .fini = teardown, .timeout = 120);

/* ------------------------------------------------------------- agents */

struct agent {
    pthread_t thread;
    char id[32];
    const char *target;
    unsigned char acked[FRAMES + 1]; /* seq -> OK ack seen */
    long ok, not_ok, sends;
    char error[640];                 /* set on failure: asserted by the test */
};

static atomic_long total_ok, total_not_ok;

/* One agent: Register, stream FRAMES frames keeping WINDOW in flight, and
 * put every frame acked with an error back in line (after 10 ms, the
 * agent's backoff) until all are acked OK. Never asserts (not the test
 * thread): failures go to a->error. */
static void *agent_main(void *arg)
{
    struct agent *a = arg;
    uint64_t todo[FRAMES], head = 0, tail = 0; /* ring of seqs to send */
    struct rc_status st;
    struct rc_channel *ch = rc_connect(a->target);
    struct rc_stream *s = NULL;
    long inflight = 0;
    int64_t deadline = harness_now_ms() + 90000;

    for (uint64_t q = 1; q <= FRAMES; q++)
        todo[tail++ % FRAMES] = q;
    if (ch == NULL || rc_register(ch, a->id, "1.0", "linux/arm64", NULL, &st, 5000) != 0) {
        snprintf(a->error, sizeof(a->error), "register: %s", ch ? st.message : "no channel");
        goto out;
    }
    s = rc_stream_open(ch, a->id, NULL, 0, &st);
    if (s == NULL) {
        snprintf(a->error, sizeof(a->error), "open: %s", st.message);
        goto out;
    }
    while (a->ok < FRAMES) {
        if (harness_now_ms() > deadline) {
            snprintf(a->error, sizeof(a->error), "only %ld of %d frames acked OK",
                     a->ok, FRAMES);
            goto out;
        }
        while (inflight < WINDOW && head < tail) {
            uint64_t seq = todo[head++ % FRAMES];
            int rc = rc_stream_send_frame(s, harness_frame(a->id, seq), 5000);
            if (rc != 0) {
                snprintf(a->error, sizeof(a->error), "send %" PRIu64 ": %s", seq,
                         strerror(-rc));
                goto out;
            }
            inflight++;
            a->sends++;
        }
        struct rc_ack ack;
        int rc = rc_stream_recv_ack(s, &ack, 10000);
        if (rc != 1) {
            snprintf(a->error, sizeof(a->error), "recv ack: %d", rc);
            goto out;
        }
        inflight--;
        if (ack.seq < 1 || ack.seq > FRAMES) {
            snprintf(a->error, sizeof(a->error), "ack for seq %" PRIu64, ack.seq);
            goto out;
        }
        if (ack.status == RC_ACK_OK) {
            if (!a->acked[ack.seq])
                a->ok++;
            a->acked[ack.seq] = 1;
            atomic_fetch_add(&total_ok, 1);
        } else {
            a->not_ok++;
            atomic_fetch_add(&total_not_ok, 1);
            todo[tail++ % FRAMES] = ack.seq;
            const struct timespec backoff = {0, 10 * 1000000};
            nanosleep(&backoff, NULL);
        }
    }
    if (rc_stream_close_send(s, 5000) != 0 || rc_stream_finish(s, &st, 10000) != 0 ||
        st.code != 0)
        snprintf(a->error, sizeof(a->error), "stream end: %d %s", st.code, st.message);
out:
    if (s)
        rc_stream_free(s);
    if (ch)
        rc_close(ch);
    return NULL;
}

/* ------------------------------------------------------------ helpers */

static uint64_t stream_msgs(void)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, tjs, "E2E", NULL, &jerr) != NATS_OK)
        return 0;
    uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

static bool a_third_stored(void *arg)
{
    return stream_msgs() >= AGENTS * FRAMES / 3;
}

static bool all_stored(void *arg)
{
    return stream_msgs() >= AGENTS * FRAMES;
}

static bool relay_saw_the_outage(void *arg)
{
    char *log = harness_read_file(relay.stderr_path, NULL);
    bool seen = log && strstr(log, "disconnected from NATS");
    free(log);
    return seen;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every message's Nats-Msg-Id, read by a pull consumer; sorted. */
static char **read_ids(size_t want, size_t *count)
{
    char **ids = calloc(want + 1, sizeof(*ids));
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    size_t got = 0;

    cr_assert_not_null(ids);
    jsSubOptions_Init(&so);
    so.Stream = "E2E";
    cr_assert_eq(js_PullSubscribe(&sub, tjs, "telemetry.>", "audit", NULL, &so, &jerr),
                 NATS_OK, "%s", nats_GetLastError(NULL));
    int64_t deadline = harness_now_ms() + 20000;
    while (got < want && harness_now_ms() < deadline) {
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, sub, 500, 1000, &jerr);
        if (s == NATS_TIMEOUT)
            continue;
        cr_assert_eq(s, NATS_OK, "fetch: %s", nats_GetLastError(NULL));
        for (int i = 0; i < list.Count; i++) {
            const char *id = NULL, *agent = NULL, *seq = NULL;
            natsMsgHeader_Get(list.Msgs[i], "Nats-Msg-Id", &id);
            natsMsgHeader_Get(list.Msgs[i], "Aero-Agent-Id", &agent);
            natsMsgHeader_Get(list.Msgs[i], "Aero-Seq", &seq);
            cr_assert(id && agent && seq, "a message without the sink's headers");
            char both[128];
            snprintf(both, sizeof(both), "%s:%s", agent, seq);
            cr_assert_str_eq(id, both);
            cr_assert_lt(got, want);
            ids[got++] = strdup(id);
            natsMsg_Ack(list.Msgs[i], NULL);
        }
        natsMsgList_Destroy(&list);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    qsort(ids, got, sizeof(*ids), cmp_str);
    *count = got;
    return ids;
}

/* --------------------------------------------------------------- test */

Test(sink_nats_e2e, every_ok_acked_frame_is_in_the_stream_once_across_a_server_restart)
{
    static struct agent agents[AGENTS];
    char body[1024];

    cr_assert_eq(nats_server_init(&srv), 0);
    cr_assert_eq(nats_server_start(&srv, 10000), 0);
    harness_prepare(&relay);
    snprintf(body, sizeof(body),
             "[sink:bus]\nplugin = sink-nats\nurl = %s\nstream = E2E\n"
             "create_stream = true\npublish_timeout_ms = 2000\n"
             "reconnect_wait_ms = 20\nreconnect_max_wait_ms = 200\n",
             srv.url);
    harness_write_config(&relay, "max_inflight = 100\n", body);
    relay_start(&relay);

    natsOptions *o = NULL;
    cr_assert_eq(natsOptions_Create(&o), NATS_OK);
    natsOptions_SetURL(o, srv.url);
    natsOptions_SetMaxReconnect(o, -1);
    natsOptions_SetReconnectWait(o, 20);
    cr_assert_eq(natsConnection_Connect(&tnc, o), NATS_OK);
    natsOptions_Destroy(o);
    cr_assert_eq(natsConnection_JetStream(&tjs, tnc, NULL), NATS_OK);

    atomic_store(&total_ok, 0);
    atomic_store(&total_not_ok, 0);
    for (int i = 0; i < AGENTS; i++) {
        snprintf(agents[i].id, sizeof(agents[i].id), "drone-%02d", i);
        agents[i].target = relay.target;
        cr_assert_eq(pthread_create(&agents[i].thread, NULL, agent_main, &agents[i]), 0);
    }

    /* Partway through: restart the server on the same store. */
    cr_assert(harness_wait_for(a_third_stored, NULL, 30000), "frames never reached the stream");
    uint64_t before = stream_msgs();
    long ok_before = atomic_load(&total_ok);
    cr_assert_eq(nats_server_stop(&srv, SIGTERM), 0);
    cr_assert(harness_wait_for(relay_saw_the_outage, NULL, 10000),
              "the relay never noticed NATS went away");
    cr_assert_eq(nats_server_start(&srv, 10000), 0);

    for (int i = 0; i < AGENTS; i++) {
        pthread_join(agents[i].thread, NULL);
        cr_assert_str_empty(agents[i].error, "%s: %s", agents[i].id, agents[i].error);
        cr_assert_eq(agents[i].ok, FRAMES);
    }
    cr_assert_lt(before, AGENTS * FRAMES, "the restart came after the run");
    cr_assert_lt(ok_before, AGENTS * FRAMES);
    cr_assert_gt(atomic_load(&total_not_ok), 0, "the outage reached no agent");
    cr_log_info("stored before the restart: %" PRIu64 "; acks OK %ld, not OK %ld",
                before, atomic_load(&total_ok), atomic_load(&total_not_ok));

    /* Every frame was acked OK, so every frame must be in the stream, and
     * each once: resends of stored frames were dropped by Nats-Msg-Id. */
    harness_wait_for(all_stored, NULL, 10000); /* the test's own reconnect */
    uint64_t stored = stream_msgs();
    cr_assert_eq(stored, AGENTS * FRAMES, "stream holds %" PRIu64, stored);
    size_t n = 0;
    char **ids = read_ids(stored, &n);
    cr_assert_eq(n, AGENTS * FRAMES);
    for (size_t i = 1; i < n; i++)
        cr_assert_str_neq(ids[i - 1], ids[i], "stored twice: %s", ids[i]);
    for (int a = 0; a < AGENTS; a++) {
        for (int q = 1; q <= FRAMES; q++) {
            char want[64], *key = want;
            snprintf(want, sizeof(want), "drone-%02d:%d", a, q);
            cr_assert_not_null(bsearch(&key, ids, n, sizeof(*ids), cmp_str),
                               "acked OK but not stored: %s", want);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);

    int status = relay_stop(&relay, 20000);
    cr_assert_eq(status, 0, "relay exit status %d", status);
}

/* ------------------------------------------------ generation 2, wal_id */

#define E2E_RELAY_ID "relay-nats-e2e"
#define WAL_A "3f2b8c1e-5d4a-4b6f-9e8d-7c6b5a4f3e2d"
#define WAL_B "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"

/* Register agent and open a generation-2 stream (session into session). */
static struct rc_stream *open_g2(struct rc_channel *ch, const char *agent, char *session,
                                 size_t len)
{
    struct rc_status st;
    harness_register(ch, agent, session, len);
    struct rc_stream *s = rc_stream_open_gen2(ch, agent, session, NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    return s;
}

/* Send one generation-2 frame (wal, seq) and expect its ack OK. */
static void g2_send_ok(struct rc_stream *s, const char *agent, const char *session,
                       const char *wal, uint64_t seq)
{
    struct rc_frame f = *harness_frame(agent, seq);
    f.session_id = session;
    f.wal_id = wal;
    f.intent_id = "intent-9";
    f.intent_version = 4;
    cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
    struct rc_relay_msg m;
    cr_assert_eq(rc_stream_recv_gen2(s, &m, 10000), 1, "no ack for %s:%" PRIu64, wal, seq);
    cr_assert_eq(m.arm, RC_RELAY_TELEMETRY_ACK);
    cr_assert_eq(m.ack.seq, seq);
    cr_assert_eq(m.ack.status, RC_ACK_OK, "%s:%" PRIu64 ": %s", wal, seq, m.ack.error);
}

static void end_stream(struct rc_stream *s)
{
    struct rc_status st;
    cr_assert_eq(rc_stream_close_send(s, 5000), 0);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    cr_assert_eq(st.code, 0, "%s", st.message);
    rc_stream_free(s);
}

static const char *hdr(natsMsg *m, const char *key)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, key, &v) == NATS_OK ? v : "(missing)";
}

/* Every message of stream E2E (want of them), in stream order. */
static natsMsg **read_all(size_t want)
{
    natsMsg **out = calloc(want + 1, sizeof(*out));
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    size_t got = 0;

    cr_assert_not_null(out);
    jsSubOptions_Init(&so);
    so.Stream = "E2E";
    cr_assert_eq(js_PullSubscribe(&sub, tjs, "telemetry.>", "wal-audit", NULL, &so, &jerr),
                 NATS_OK, "%s", nats_GetLastError(NULL));
    int64_t deadline = harness_now_ms() + 10000;
    while (got < want && harness_now_ms() < deadline) {
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, sub, 64, 1000, &jerr);
        if (s == NATS_TIMEOUT)
            continue;
        cr_assert_eq(s, NATS_OK, "fetch: %s", nats_GetLastError(NULL));
        for (int i = 0; i < list.Count; i++) {
            cr_assert_lt(got, want, "more messages than the stream holds");
            natsMsg_Ack(list.Msgs[i], NULL);
            out[got++] = list.Msgs[i];
            list.Msgs[i] = NULL;
        }
        natsMsgList_Destroy(&list);
    }
    cr_assert_eq(got, want);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return out;
}

Test(sink_nats_e2e, the_same_seq_in_two_wal_generations_is_stored_twice_resends_once)
{
    char body[1024], session[128], first_session[128];

    cr_assert_eq(nats_server_init(&srv), 0);
    cr_assert_eq(nats_server_start(&srv, 10000), 0);
    harness_prepare(&relay);
    snprintf(body, sizeof(body),
             "[sink:bus]\nplugin = sink-nats\nurl = %s\nstream = E2E\n"
             "create_stream = true\n", srv.url);
    struct rc_channel *ch = harness_start(&relay, "relay_id = " E2E_RELAY_ID "\n", body);

    natsOptions *o = NULL;
    cr_assert_eq(natsOptions_Create(&o), NATS_OK);
    natsOptions_SetURL(o, srv.url);
    cr_assert_eq(natsConnection_Connect(&tnc, o), NATS_OK);
    natsOptions_Destroy(o);
    cr_assert_eq(natsConnection_JetStream(&tjs, tnc, NULL), NATS_OK);

    /* One run of the agent: WAL generation A, seq 1..3. */
    struct rc_stream *s = open_g2(ch, "drone-w", session, sizeof(session));
    for (uint64_t q = 1; q <= 3; q++)
        g2_send_ok(s, "drone-w", session, WAL_A, q);
    end_stream(s);
    snprintf(first_session, sizeof(first_session), "%s", session);
    /* The agent restarts with a new WAL generation: seq starts at 1 again,
     * then it replays A's seq 2 (stored already: a true resend). */
    s = open_g2(ch, "drone-w", session, sizeof(session));
    for (uint64_t q = 1; q <= 3; q++)
        g2_send_ok(s, "drone-w", session, WAL_B, q);
    g2_send_ok(s, "drone-w", session, WAL_A, 2);
    end_stream(s);
    /* A seed agent, seq 1 twice: <agent_id>:<seq>, resend dropped. */
    harness_register(ch, "drone-s", NULL, 0);
    struct rc_status st;
    s = rc_stream_open(ch, "drone-s", NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    size_t counts[4] = {0};
    char err[256] = "";
    for (int round = 0; round < 2; round++) {
        harness_stream_frames(s, "drone-s", 1, 1, counts, err, sizeof(err));
        cr_assert_eq(counts[RC_ACK_OK], 1, "round %d: %s", round, err);
    }
    end_stream(s);

    /* Acked OK means stored: no waiting before counting. */
    cr_assert_eq(stream_msgs(), 7, "3 + 3 frames of two WAL generations and one seed frame");
    natsMsg **m = read_all(7);
    const char *want_ids[7] = {
        "drone-w:" WAL_A ":1", "drone-w:" WAL_A ":2", "drone-w:" WAL_A ":3",
        "drone-w:" WAL_B ":1", "drone-w:" WAL_B ":2", "drone-w:" WAL_B ":3",
        "drone-s:1",
    };
    for (size_t i = 0; i < 7; i++) {
        cr_assert_str_eq(hdr(m[i], "Nats-Msg-Id"), want_ids[i], "message %zu", i);
        cr_assert_str_eq(hdr(m[i], "Aero-Relay-Id"), E2E_RELAY_ID);
        cr_assert_str_eq(hdr(m[i], "Aero-Operator-Id"), "(missing)", "unmapped agent");
        cr_assert_str_eq(hdr(m[i], "Aero-Aircraft-Id"), "(missing)", "unmapped agent");
    }
    for (size_t i = 0; i < 6; i++) {
        cr_assert_str_eq(hdr(m[i], "Aero-Protocol"), "multiplexed");
        cr_assert_str_eq(hdr(m[i], "Aero-Wal-Id"), i < 3 ? WAL_A : WAL_B);
        cr_assert_str_eq(hdr(m[i], "Aero-Intent-Id"), "intent-9");
        cr_assert_str_eq(hdr(m[i], "Aero-Intent-Version"), "4");
        cr_assert_str_eq(hdr(m[i], "Aero-Session-Id"), i < 3 ? first_session : session);
    }
    cr_assert_str_eq(hdr(m[6], "Aero-Protocol"), "seed");
    cr_assert_str_eq(hdr(m[6], "Aero-Wal-Id"), "(missing)");
    cr_assert_str_eq(hdr(m[6], "Aero-Intent-Id"), "(missing)");
    cr_assert_str_eq(hdr(m[6], "Aero-Intent-Version"), "(missing)");
    /* The JSON body carries the same. */
    char text[8192];
    int len = natsMsg_GetDataLength(m[3]);
    cr_assert_lt(len, (int)sizeof(text));
    memcpy(text, natsMsg_GetData(m[3]), (size_t)len);
    text[len] = '\0';
    cr_assert_not_null(strstr(text, "\"protocol\":\"multiplexed\",\"wal_id\":\"" WAL_B "\","
                                    "\"intent_id\":\"intent-9\",\"intent_version\":4,"
                                    "\"relay_id\":\"" E2E_RELAY_ID "\""), "%s", text);
    for (size_t i = 0; i < 7; i++)
        natsMsg_Destroy(m[i]);
    free(m);

    rc_close(ch);
    int status = relay_stop(&relay, 20000);
    cr_assert_eq(status, 0, "relay exit status %d", status);
}

/* ------------------------------------------------------ readiness (18) */

/* /readyz (plain: its status) and /readyz?verbose (its body) now. */
struct readyz_probe {
    int port, want_status;
    const char *want; /* in the verbose body */
    int status;
    char body[1024];
};

static bool readyz_says(struct readyz_probe *p)
{
    struct http_reply r;
    if (http_request(p->port, "GET", "/readyz?verbose", 5000, &r) != 0)
        return false;
    snprintf(p->body, sizeof(p->body), "%s", r.body);
    http_reply_free(&r);
    p->status = http_get_status(p->port, "/readyz", 5000);
    return p->status == p->want_status && strstr(p->body, p->want);
}

/* Send frames on s, one at a time, until /readyz says what p wants (a
 * sink's state follows the frames it is given) or ms pass. */
static void stream_until(struct rc_stream *s, uint64_t *seq, struct readyz_probe *p, int ms)
{
    int64_t until = harness_now_ms() + ms;
    while (!readyz_says(p) && harness_now_ms() < until) {
        struct rc_ack ack;
        cr_assert_eq(rc_stream_send_frame(s, harness_frame("drone-rz", (*seq)++), 5000), 0);
        cr_assert_eq(rc_stream_recv_ack(s, &ack, 10000), 1);
    }
    cr_assert(readyz_says(p), "/readyz %d, wanted %d with %s: %s", p->status, p->want_status,
              p->want, p->body);
}

/* Issue 18: NATS stopped, sink-nats refuses every frame: its state turns
 * failing with the reason, and /readyz 503 once that lasts unready_after_s;
 * NATS started again, the sink takes frames and the relay is ready, ok. */
Test(sink_nats_e2e, readyz_follows_a_real_nats_server_stopped_and_started)
{
    char body[1024];
    cr_assert_eq(nats_server_init(&srv), 0);
    cr_assert_eq(nats_server_start(&srv, 10000), 0);
    harness_prepare(&relay);
    relay.http = true;
    relay.http_keys = "unready_after_s = 1\n";
    snprintf(body, sizeof(body),
             "[sink:bus]\nplugin = sink-nats\nurl = %s\nstream = RZ\ncreate_stream = true\n"
             "publish_timeout_ms = 500\nreconnect_wait_ms = 20\nreconnect_max_wait_ms = 200\n",
             srv.url);
    struct rc_channel *ch = harness_start(&relay, NULL, body);
    harness_register(ch, "drone-rz", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "drone-rz", NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    uint64_t seq = 1;

    struct readyz_probe p = {.port = relay.http_port, .want_status = 200,
                             .want = "\"sink:bus\":{\"state\":\"ok\"}"};
    stream_until(s, &seq, &p, 10000);

    cr_assert_eq(nats_server_stop(&srv, SIGTERM), 0);
    p.want_status = 503;
    p.want = "\"sink:bus\":{\"state\":\"failing\",\"reason\":\"";
    stream_until(s, &seq, &p, 20000);
    cr_assert_not_null(strstr(p.body, "\"component\":\"sink:bus\""), "%s", p.body);

    cr_assert_eq(nats_server_start(&srv, 10000), 0);
    p.want_status = 200;
    p.want = "\"sink:bus\":{\"state\":\"ok\"}";
    stream_until(s, &seq, &p, 20000);

    rc_stream_close_send(s, 5000);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    rc_stream_free(s);
    harness_finish(&relay, &ch);
}
