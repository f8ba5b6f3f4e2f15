/*
 * test_sink_nats.c - the sink-nats plugin against the fake host and a real
 * nats-server with JetStream: frames read back by a pull consumer (subject,
 * headers, JSON or protobuf body), subject sanitising, de-duplication of
 * resends, stream creation, RETRY/BACKOFF when JetStream does not store a
 * frame, a server down at start, and a server killed and restarted on the
 * same store while the sink keeps running.
 */
#include "envelope_json.h"
#include "nats_server.h"
#include "sink_test.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ fixture */

static struct nats_server srv;
static const aero_sink_vtable *vt;
static const aero_plugin_descriptor *desc;
static natsConnection *tnc; /* the test's own connection (consumer side) */
static jsCtx *tjs;

static void test_connect(void)
{
    natsOptions *o = NULL;
    cr_assert_eq(natsOptions_Create(&o), NATS_OK);
    natsOptions_SetURL(o, srv.url);
    natsOptions_SetMaxReconnect(o, -1);
    natsOptions_SetReconnectWait(o, 20);
    cr_assert_eq(natsConnection_Connect(&tnc, o), NATS_OK, "%s",
                 nats_GetLastError(NULL));
    natsOptions_Destroy(o);
    cr_assert_eq(natsConnection_JetStream(&tjs, tnc, NULL), NATS_OK);
}

static void test_disconnect(void)
{
    jsCtx_Destroy(tjs);
    natsConnection_Destroy(tnc);
    tjs = NULL;
    tnc = NULL;
}

/* A plain subscriber on telemetry.>: it takes the messages but never
 * answers, so no PubAck comes back. */
static natsSubscription *silent_subscriber(void)
{
    natsSubscription *plain = NULL;
    cr_assert_eq(natsConnection_SubscribeSync(&plain, tnc, "telemetry.>"), NATS_OK);
    natsConnection_Flush(tnc);
    return plain;
}

static void silent_subscriber_stop(natsSubscription *plain)
{
    natsSubscription_Unsubscribe(plain);
    natsSubscription_Destroy(plain);
}

static void load_plugin(void)
{
    desc = sink_test_load("sink-nats");
    vt = desc->vtable;
}

static void setup_running(void)
{
    cr_assert_eq(nats_server_init(&srv), 0);
    cr_assert_eq(nats_server_start(&srv, 10000), 0);
    test_connect();
    load_plugin();
}

static void setup_down(void)
{
    cr_assert_eq(nats_server_init(&srv), 0);
    load_plugin();
}

static void teardown(void)
{
    sink_test_unload();
    if (tnc != NULL)
        test_disconnect();
    nats_server_cleanup(&srv);
}

TestSuite(sink_nats, .init = setup_running, .fini = teardown, .timeout = 60);
TestSuite(sink_nats_outage, .init = setup_down, .fini = teardown, .timeout = 60);

/* ------------------------------------------------------------- frames */

enum { MAXF = 256 };

struct frames {
    aero_frame f[MAXF];
    const aero_frame *p[MAXF];
    aero_kv kv[MAXF][1];
    char pb[MAXF][16];
};

static struct frames *frames_new(const char *agent)
{
    struct frames *fr = calloc(1, sizeof(*fr));
    cr_assert_not_null(fr);
    for (size_t i = 0; i < MAXF; i++) {
        fr->kv[i][0] = (aero_kv){{"custom_mode", 11}, {"4", 1}};
        /* Stand-in protobuf bytes, with a NUL inside: must arrive intact. */
        memcpy(fr->pb[i], "\x18\x00pb-", 5);
        fr->pb[i][5] = (char)i;
        fr->f[i] = (aero_frame){
            .size = sizeof(aero_frame),
            .agent_id = {agent, strlen(agent)},
            .session_id = {"sess-1", 6},
            .seq = i + 1,
            .sent_at_unix_ns = 1700000000000000000 + (int64_t)i,
            .device_timestamp_sec = 12.5,
            .raw_mavlink = {"\xfd\x09", 2},
            .dialect = {"common", 6},
            .msg_id = 0,
            .msg_name = {"HEARTBEAT", 9},
            .fields = fr->kv[i],
            .n_fields = 1,
            .flight_id = {"f-1", 3},
            .received_unix_ns = 1700000000000000001,
            .protobuf = {fr->pb[i], 6},
        };
        fr->p[i] = &fr->f[i];
    }
    return fr;
}

/* Writes frames [from, from+n); returns how many are AERO_OK, every
 * result into res (may be NULL). */
static size_t write_frames(void *inst, struct frames *fr, size_t from, size_t n,
                           aero_result *res)
{
    return sink_test_write(inst, fr->p + from, n, AERO_OK, res);
}

/* Writes frames [from, from+n), none of which may be stored: asserts that
 * every one came back `want` (not AERO_OK). Returns how long it took, in
 * ms, for the tests that also bound that. */
static long long write_all_fail(void *inst, struct frames *fr, size_t from, size_t n,
                                aero_result want)
{
    aero_result res[MAXF];
    long long t0 = sink_test_now_ms();
    size_t ok = write_frames(inst, fr, from, n, res);
    long long took = sink_test_now_ms() - t0;
    cr_assert_eq(ok, 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(res[i], want, "frame %zu: %d", i, res[i]);
    return took;
}

/* --------------------------------------------------- JetStream helpers */

/* A file stream; max_msgs > 0: that many at most, refusing new ones;
 * max_msg_size > 0: the largest message it takes. */
static void add_stream_limited(const char *name, const char *subject,
                               int64_t max_msgs, int32_t max_msg_size)
{
    const char *subjects[1] = {subject};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    if (max_msgs > 0) {
        cfg.MaxMsgs = max_msgs;
        cfg.Discard = js_DiscardNew;
    }
    if (max_msg_size > 0)
        cfg.MaxMsgSize = max_msg_size;
    jsErrCode jerr = 0;
    jsStreamInfo *si = NULL;
    cr_assert_eq(js_AddStream(&si, tjs, &cfg, NULL, &jerr), NATS_OK,
                 "add stream %s: %s (%d)", name, nats_GetLastError(NULL), (int)jerr);
    jsStreamInfo_Destroy(si);
}

static void add_stream(const char *name, const char *subject, int64_t max_msgs)
{
    add_stream_limited(name, subject, max_msgs, 0);
}

static uint64_t stream_msgs(const char *name)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    cr_assert_eq(js_GetStreamInfo(&si, tjs, name, NULL, &jerr), NATS_OK,
                 "stream %s: %d", name, (int)jerr);
    uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

/* Every message of the stream, in order, read by a new durable pull
 * consumer. *count gets how many; the caller destroys them (free_msgs). */
static natsMsg **read_stream(const char *stream, const char *filter, size_t *count)
{
    static int reader;
    char durable[32];
    snprintf(durable, sizeof(durable), "reader%d", ++reader);
    size_t want = (size_t)stream_msgs(stream);
    natsMsg **out = calloc(want + 1, sizeof(*out));
    cr_assert_not_null(out);

    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    cr_assert_eq(js_PullSubscribe(&sub, tjs, filter, durable, NULL, &so, &jerr),
                 NATS_OK, "pull subscribe: %s (%d)", nats_GetLastError(NULL), (int)jerr);
    size_t got = 0;
    long long deadline = sink_test_now_ms() + 10000;
    while (got < want && sink_test_now_ms() < deadline) {
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, sub, 256, 1000, &jerr);
        if (s == NATS_TIMEOUT)
            continue;
        cr_assert_eq(s, NATS_OK, "fetch: %s", nats_GetLastError(NULL));
        for (int i = 0; i < list.Count; i++) {
            natsMsg_Ack(list.Msgs[i], NULL);
            cr_assert_lt(got, want, "more messages than the stream holds");
            out[got++] = list.Msgs[i];
            list.Msgs[i] = NULL;
        }
        natsMsgList_Destroy(&list);
    }
    cr_assert_eq(got, want, "read %zu of %zu messages", got, want);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    *count = got;
    return out;
}

static void free_msgs(natsMsg **m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        natsMsg_Destroy(m[i]);
    free(m);
}

static const char *header(natsMsg *m, const char *key)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m, key, &v) != NATS_OK)
        return "(missing)";
    return v;
}

/* A sink on the test server with `extra` keys (NULL-terminated pairs). */
static void *sink_new(fake_host **fh, const char *const *extra)
{
    const char *const base[] = {"url", srv.url, "reconnect_wait_ms", "20",
                                "reconnect_max_wait_ms", "100", NULL};
    return sink_test_instance("bus", base, extra, 0, fh);
}

/* --------------------------------------------------------------- tests */

Test(sink_nats, frames_are_stored_with_headers_and_the_envelope_json)
{
    add_stream("TELEM", "telemetry.>", 0);
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){"stream", "TELEM", NULL});
    struct frames *fr = frames_new("drone-1");

    cr_assert_eq(write_frames(inst, fr, 0, 100, NULL), 100);
    cr_assert_eq(write_frames(inst, fr, 100, 20, NULL), 20);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_published_total"), 120);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_acked_total"), 120);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_errors_total"), 0);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_connected"), 1);
    cr_assert_eq(fake_host_metric_type(fh, "aero_sink_nats_connected"), AERO_METRIC_GAUGE);

    size_t n;
    natsMsg **m = read_stream("TELEM", "telemetry.>", &n);
    cr_assert_eq(n, 120);
    char want[4096], id[64], seq[24];
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(natsMsg_GetSubject(m[i]), "telemetry.drone-1.HEARTBEAT");
        snprintf(seq, sizeof(seq), "%zu", i + 1);
        snprintf(id, sizeof(id), "drone-1:%zu", i + 1);
        cr_assert_str_eq(header(m[i], "Nats-Msg-Id"), id);
        cr_assert_str_eq(header(m[i], "Aero-Agent-Id"), "drone-1");
        cr_assert_str_eq(header(m[i], "Aero-Seq"), seq);
        cr_assert_str_eq(header(m[i], "Aero-Session-Id"), "sess-1");
        cr_assert_str_eq(header(m[i], "Content-Type"), "application/json");
        /* Zeroed ABI 1.1 fields: a seed frame with nothing else to say. */
        cr_assert_str_eq(header(m[i], "Aero-Protocol"), "seed");
        cr_assert_str_eq(header(m[i], "Aero-Wal-Id"), "(missing)");
        cr_assert_str_eq(header(m[i], "Aero-Intent-Id"), "(missing)");
        cr_assert_str_eq(header(m[i], "Aero-Intent-Version"), "(missing)");
        cr_assert_str_eq(header(m[i], "Aero-Relay-Id"), "(missing)");
        cr_assert_str_eq(header(m[i], "Aero-Operator-Id"), "(missing)");
        cr_assert_str_eq(header(m[i], "Aero-Aircraft-Id"), "(missing)");
        size_t len = envelope_json_encode(&fr->f[i], want, sizeof(want));
        cr_assert_lt(len, sizeof(want));
        cr_assert_eq((size_t)natsMsg_GetDataLength(m[i]), len);
        cr_assert_eq(memcmp(natsMsg_GetData(m[i]), want, len), 0, "body %zu", i);
    }
    free_msgs(m, n);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_nats, protobuf_format_carries_the_original_bytes)
{
    add_stream("PB", "pb.>", 0);
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){
        "stream", "PB", "format", "protobuf", "subject", "pb.{dialect}.{agent_id}", NULL});
    struct frames *fr = frames_new("drone-pb");

    cr_assert_eq(write_frames(inst, fr, 0, 10, NULL), 10);
    size_t n;
    natsMsg **m = read_stream("PB", "pb.>", &n);
    cr_assert_eq(n, 10);
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(natsMsg_GetSubject(m[i]), "pb.common.drone-pb");
        cr_assert_eq(natsMsg_GetDataLength(m[i]), 6);
        cr_assert_eq(memcmp(natsMsg_GetData(m[i]), fr->pb[i], 6), 0);
        cr_assert(strstr(header(m[i], "Content-Type"), "protobuf"));
    }
    free_msgs(m, n);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_nats, substituted_values_become_single_valid_tokens)
{
    add_stream("SAN", "s.>", 0);
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){
        "stream", "SAN", "subject", "s.{agent_id}.{msg_name}.{flight_id}.x{dialect}", NULL});
    struct frames *fr = frames_new("drone.7");
    fr->f[0].msg_name = (aero_str){"A.B*C>D E\x01\xc3\xa9\t", 13};
    fr->f[0].flight_id = (aero_str){"", 0};
    fr->f[0].dialect = (aero_str){">", 1};

    cr_assert_eq(write_frames(inst, fr, 0, 1, NULL), 1);
    size_t n;
    natsMsg **m = read_stream("SAN", "s.>", &n);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(natsMsg_GetSubject(m[0]), "s.drone_7.A_B_C_D_E____._.x_");
    free_msgs(m, n);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_nats, a_resent_frame_is_stored_once)
{
    add_stream("DEDUP", "telemetry.>", 0);
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){"stream", "DEDUP", NULL});
    struct frames *fr = frames_new("drone-d");

    cr_assert_eq(write_frames(inst, fr, 0, 5, NULL), 5);
    /* The agent did not see the acks and resends frames 3..5, then 6. */
    cr_assert_eq(write_frames(inst, fr, 2, 4, NULL), 4);
    cr_assert_eq(stream_msgs("DEDUP"), 6);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_duplicates_total"), 3);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_acked_total"), 9);
    sink_test_destroy(inst);
    free(fr);
}

#define WAL_A "3f2b8c1e-5d4a-4b6f-9e8d-7c6b5a4f3e2d"
#define WAL_B "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"

/* Frames [from, from+n) as generation-2 frames of WAL generation wal. */
static void make_gen2(struct frames *fr, size_t from, size_t n, const char *wal)
{
    for (size_t i = from; i < from + n; i++) {
        fr->f[i].protocol = AERO_PROTOCOL_MULTIPLEXED;
        fr->f[i].wal_id = (aero_str){wal, strlen(wal)};
        fr->f[i].relay_id = (aero_str){"relay-7", 7};
    }
}

Test(sink_nats, gen2_frames_carry_the_new_headers)
{
    add_stream("G2", "telemetry.>", 0);
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){"stream", "G2", NULL});
    struct frames *fr = frames_new("drone-g");
    make_gen2(fr, 0, 3, WAL_A);
    /* 0: everything set; 1: an intent version without intent id, no
     * mapping; 2: only the WAL generation and the relay. Control bytes in
     * a value cannot break the header block. */
    fr->f[0].intent_id = (aero_str){"intent-9", 8};
    fr->f[0].intent_version = 4;
    fr->f[0].operator_id = (aero_str){"op-1", 4};
    fr->f[0].aircraft_id = (aero_str){"ac\r\n-1", 6};
    fr->f[1].intent_version = 2;
    /* 3: a seed frame from a relay that fills every 1.1 field. */
    fr->f[3].protocol = AERO_PROTOCOL_SEED;
    fr->f[3].wal_id = (aero_str){"", 0};
    fr->f[3].relay_id = (aero_str){"relay-7", 7};
    fr->f[3].intent_id = (aero_str){"", 0};
    fr->f[3].operator_id = (aero_str){"", 0};
    fr->f[3].aircraft_id = (aero_str){"", 0};

    cr_assert_eq(write_frames(inst, fr, 0, 4, NULL), 4);
    size_t n;
    natsMsg **m = read_stream("G2", "telemetry.>", &n);
    cr_assert_eq(n, 4);

    cr_assert_str_eq(header(m[0], "Nats-Msg-Id"), "drone-g:" WAL_A ":1");
    cr_assert_str_eq(header(m[0], "Aero-Agent-Id"), "drone-g");
    cr_assert_str_eq(header(m[0], "Aero-Seq"), "1");
    cr_assert_str_eq(header(m[0], "Aero-Protocol"), "multiplexed");
    cr_assert_str_eq(header(m[0], "Aero-Wal-Id"), WAL_A);
    cr_assert_str_eq(header(m[0], "Aero-Intent-Id"), "intent-9");
    cr_assert_str_eq(header(m[0], "Aero-Intent-Version"), "4");
    cr_assert_str_eq(header(m[0], "Aero-Relay-Id"), "relay-7");
    cr_assert_str_eq(header(m[0], "Aero-Operator-Id"), "op-1");
    cr_assert_str_eq(header(m[0], "Aero-Aircraft-Id"), "ac__-1");

    cr_assert_str_eq(header(m[1], "Nats-Msg-Id"), "drone-g:" WAL_A ":2");
    cr_assert_str_eq(header(m[1], "Aero-Intent-Id"), "(missing)");
    cr_assert_str_eq(header(m[1], "Aero-Intent-Version"), "2");
    cr_assert_str_eq(header(m[1], "Aero-Operator-Id"), "(missing)");
    cr_assert_str_eq(header(m[1], "Aero-Aircraft-Id"), "(missing)");

    cr_assert_str_eq(header(m[2], "Nats-Msg-Id"), "drone-g:" WAL_A ":3");
    cr_assert_str_eq(header(m[2], "Aero-Protocol"), "multiplexed");
    cr_assert_str_eq(header(m[2], "Aero-Intent-Version"), "(missing)");
    cr_assert_str_eq(header(m[2], "Aero-Relay-Id"), "relay-7");

    cr_assert_str_eq(header(m[3], "Nats-Msg-Id"), "drone-g:4");
    cr_assert_str_eq(header(m[3], "Aero-Protocol"), "seed");
    cr_assert_str_eq(header(m[3], "Aero-Wal-Id"), "(missing)");
    cr_assert_str_eq(header(m[3], "Aero-Relay-Id"), "relay-7");

    /* The JSON body is the host's envelope, new keys included. */
    char want[4096];
    size_t len = envelope_json_encode(&fr->f[0], want, sizeof(want));
    cr_assert_lt(len, sizeof(want));
    cr_assert_eq((size_t)natsMsg_GetDataLength(m[0]), len);
    cr_assert_eq(memcmp(natsMsg_GetData(m[0]), want, len), 0);
    cr_assert(strstr(want, "\"wal_id\":\"" WAL_A "\",\"intent_id\":\"intent-9\","
                           "\"intent_version\":4,\"relay_id\":\"relay-7\","
                           "\"operator_id\":\"op-1\""), "%s", want);
    free_msgs(m, n);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_nats, the_same_seq_in_another_wal_generation_is_not_a_duplicate)
{
    add_stream("WAL", "telemetry.>", 0);
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){"stream", "WAL", NULL});
    struct frames *a = frames_new("drone-w"), *b = frames_new("drone-w"),
                  *seed = frames_new("drone-w");
    make_gen2(a, 0, 5, WAL_A);
    make_gen2(b, 0, 5, WAL_B); /* the agent's WAL rotated: seq restarts at 1 */

    cr_assert_eq(write_frames(inst, a, 0, 5, NULL), 5);
    cr_assert_eq(write_frames(inst, b, 0, 5, NULL), 5);
    cr_assert_eq(stream_msgs("WAL"), 10, "seq 1..5 of two WAL generations are ten frames");
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_duplicates_total"), 0);

    /* True resends (same wal_id, same seq) are still dropped. */
    cr_assert_eq(write_frames(inst, a, 2, 3, NULL), 3);
    cr_assert_eq(write_frames(inst, b, 0, 1, NULL), 1);
    cr_assert_eq(stream_msgs("WAL"), 10);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_duplicates_total"), 4);

    /* Frames without wal_id keep <agent_id>:<seq>, distinct from both. */
    cr_assert_eq(write_frames(inst, seed, 0, 2, NULL), 2);
    cr_assert_eq(write_frames(inst, seed, 0, 2, NULL), 2);
    cr_assert_eq(stream_msgs("WAL"), 12);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_duplicates_total"), 6);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_acked_total"), 18);

    size_t n;
    natsMsg **m = read_stream("WAL", "telemetry.>", &n);
    cr_assert_eq(n, 12);
    cr_assert_str_eq(header(m[0], "Nats-Msg-Id"), "drone-w:" WAL_A ":1");
    cr_assert_str_eq(header(m[5], "Nats-Msg-Id"), "drone-w:" WAL_B ":1");
    cr_assert_str_eq(header(m[10], "Nats-Msg-Id"), "drone-w:1");
    cr_assert_str_eq(header(m[11], "Nats-Msg-Id"), "drone-w:2");
    free_msgs(m, n);
    sink_test_destroy(inst);
    free(a);
    free(b);
    free(seed);
}

Test(sink_nats, create_stream_captures_the_static_prefix)
{
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){
        "stream", "AUTO", "create_stream", "yes", "subject", "aero.v1.{agent_id}.{msg_name}",
        "duplicate_window_s", "60", "stream_max_bytes", "1048576", NULL});
    struct frames *fr = frames_new("drone-a");

    cr_assert_eq(write_frames(inst, fr, 0, 3, NULL), 3);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    cr_assert_eq(js_GetStreamInfo(&si, tjs, "AUTO", NULL, &jerr), NATS_OK);
    cr_assert_eq(si->Config->SubjectsLen, 1);
    cr_assert_str_eq(si->Config->Subjects[0], "aero.v1.>");
    cr_assert_eq(si->Config->Duplicates, 60LL * 1000000000);
    cr_assert_eq(si->Config->MaxBytes, 1048576);
    cr_assert_eq(si->Config->Discard, js_DiscardNew);
    cr_assert_eq(si->Config->Storage, js_FileStorage);
    cr_assert_eq(si->State.Msgs, 3);
    jsStreamInfo_Destroy(si);
    cr_assert(fake_host_log_contains(fh, "created stream AUTO capturing aero.v1.>"));
    sink_test_destroy(inst);

    /* A second sink finds the stream and leaves it alone. */
    inst = sink_new(&fh, (const char *const[]){
        "stream", "AUTO", "create_stream", "true", "subject", "aero.v1.{agent_id}.{msg_name}",
        NULL});
    cr_assert_eq(write_frames(inst, fr, 3, 2, NULL), 2);
    cr_assert(fake_host_log_contains(fh, "stream AUTO: 3 message(s), duplicate window 60 s"));
    cr_assert_eq(stream_msgs("AUTO"), 5);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_nats, frames_no_stream_captures_are_retried)
{
    fake_host *fh;
    void *inst = sink_new(&fh, NULL); /* no stream key, no stream on the server */
    struct frames *fr = frames_new("drone-x");

    cr_assert_lt(write_all_fail(inst, fr, 0, 8, AERO_RETRY), 2000,
                 "no responders is an immediate answer");
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_errors_total"), 8);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_acked_total"), 0);
    cr_assert(fake_host_log_contains(fh, "no stream captures the subject"));
    sink_test_destroy(inst);

    /* A named stream that does not exist (create_stream off): RETRY too. */
    inst = sink_new(&fh, (const char *const[]){"stream", "MISSING", NULL});
    write_all_fail(inst, fr, 0, 4, AERO_RETRY);
    cr_assert(fake_host_log_contains(fh, "stream MISSING does not exist"));
    /* ... until it exists: the next batch goes through. */
    add_stream("MISSING", "telemetry.>", 0);
    cr_assert_eq(write_frames(inst, fr, 0, 4, NULL), 4);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_nats, frames_without_an_ack_in_time_are_retried)
{
    natsSubscription *plain = silent_subscriber();
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){"publish_timeout_ms", "300", NULL});
    struct frames *fr = frames_new("drone-t");

    long long took = write_all_fail(inst, fr, 0, 5, AERO_RETRY);
    cr_assert(took >= 290 && took < 3000, "took %lld ms", took);
    cr_assert(fake_host_log_contains(fh, "not acknowledged within publish_timeout_ms"));
    /* Nothing of that batch haunts the next one. */
    silent_subscriber_stop(plain);
    add_stream("LATE", "telemetry.>", 0);
    cr_assert_eq(write_frames(inst, fr, 5, 5, NULL), 5);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_nats, publishes_stalled_at_max_pending_get_backoff)
{
    /* Nobody answers, and only one publish may be in flight. */
    natsSubscription *plain = silent_subscriber();
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){
        "publish_timeout_ms", "300", "max_pending", "1", NULL});
    struct frames *fr = frames_new("drone-st");
    aero_result res[6];

    long long t0 = sink_test_now_ms();
    cr_assert_eq(write_frames(inst, fr, 0, 6, res), 0);
    cr_assert_lt(sink_test_now_ms() - t0, 3000);
    cr_assert_eq(res[0], AERO_RETRY, "the one in flight timed out: %d", res[0]);
    for (size_t i = 1; i < 6; i++)
        cr_assert_eq(res[i], AERO_BACKOFF, "frame %zu: %d", i, res[i]);
    silent_subscriber_stop(plain);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_nats, a_full_stream_gets_backoff)
{
    add_stream("SMALL", "telemetry.>", 5);
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){"stream", "SMALL", NULL});
    struct frames *fr = frames_new("drone-f");
    aero_result res[8];

    cr_assert_eq(write_frames(inst, fr, 0, 8, res), 5);
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(res[i], AERO_OK, "frame %zu", i);
    for (size_t i = 5; i < 8; i++)
        cr_assert_eq(res[i], AERO_BACKOFF, "frame %zu: %d", i, res[i]);
    cr_assert_eq(stream_msgs("SMALL"), 5);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_nats, a_frame_too_large_for_the_stream_is_rejected)
{
    /* The limit counts headers (about 250 bytes here) and body: the 6-byte
     * protobuf stand-ins fit, the envelope JSON with a 600-byte field never
     * does. */
    add_stream_limited("TINY", "telemetry.>", 0, 400);
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){"stream", "TINY", NULL});
    struct frames *fr = frames_new("drone-big");
    static char pad[600];
    memset(pad, 'x', sizeof(pad));
    for (size_t i = 0; i < 3; i++)
        fr->kv[i][0].value = (aero_str){pad, sizeof(pad)};

    write_all_fail(inst, fr, 0, 3, AERO_REJECT);
    cr_assert_eq(stream_msgs("TINY"), 0);
    sink_test_destroy(inst);

    inst = sink_new(&fh, (const char *const[]){"stream", "TINY", "format", "protobuf", NULL});
    cr_assert_eq(write_frames(inst, fr, 0, 3, NULL), 3);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_nats, a_subject_captured_by_another_stream_is_retried)
{
    add_stream("OTHER", "telemetry.>", 0);
    add_stream("MINE", "mine.>", 0);
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){"stream", "MINE", NULL});
    struct frames *fr = frames_new("drone-o");

    write_all_fail(inst, fr, 0, 4, AERO_RETRY);
    cr_assert_eq(stream_msgs("OTHER"), 0, "Nats-Expected-Stream was not honoured");
    cr_assert(fake_host_log_contains(fh, "not stored; JetStream said"));
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_nats, two_instances_coexist)
{
    add_stream("TWOA", "two.a.>", 0);
    add_stream("TWOB", "two.b.>", 0);
    fake_host *fa, *fb;
    void *a = sink_new(&fa, (const char *const[]){"subject", "two.a.{agent_id}",
                                                   "stream", "TWOA", NULL});
    void *b = sink_new(&fb, (const char *const[]){"subject", "two.b.{agent_id}",
                                                   "stream", "TWOB", "format", "protobuf",
                                                   NULL});
    struct frames *fr = frames_new("drone-2");

    cr_assert_eq(write_frames(a, fr, 0, 30, NULL), 30);
    cr_assert_eq(write_frames(b, fr, 0, 30, NULL), 30);
    sink_test_destroy(a);
    cr_assert_eq(write_frames(b, fr, 30, 30, NULL), 30);
    sink_test_destroy(b);
    cr_assert_eq(stream_msgs("TWOA"), 30);
    cr_assert_eq(stream_msgs("TWOB"), 60);
    free(fr);
}

/* check (and create) report each problem with its relay.ini line: the
 * section is line 1, pair i of the config line 2 + i. No server needed. */
Test(sink_nats, check_reports_every_problem_with_file_and_line)
{
#define SUBJ "relay.ini:2: [sink:bus] subject: "
    static const struct {
        const char *kv[10];
        const char *want;
    } cases[] = {
        {{"subject", "telemetry.{agent}", NULL},
         SUBJ "unknown placeholder at '{' (known: {agent_id} {msg_name} {flight_id} {dialect}) "
              "at byte 11 of \"telemetry.{agent}\"\n"},
        {{"subject", "telemetry..{agent_id}", NULL},
         SUBJ "empty token before '.' at byte 11 of \"telemetry..{agent_id}\"\n"},
        {{"subject", ".telemetry", NULL},
         SUBJ "empty token before '.' at byte 1 of \".telemetry\"\n"},
        {{"subject", "telemetry.", NULL},
         SUBJ "empty last token after '.' at byte 10 of \"telemetry.\"\n"},
        {{"subject", "telemetry.*", NULL},
         SUBJ "wildcard '*' not allowed in a subject to publish to at byte 11 of "
              "\"telemetry.*\"\n"},
        {{"subject", "telemetry.>", NULL},
         SUBJ "wildcard '>' not allowed in a subject to publish to at byte 11 of "
              "\"telemetry.>\"\n"},
        {{"subject", "tele metry", NULL},
         SUBJ "invalid byte 0x20 (subjects are printable ASCII without spaces) at byte 5 of "
              "\"tele metry\"\n"},
        {{"subject", "telemetry}", NULL},
         SUBJ "'}' closes no placeholder at byte 10 of \"telemetry}\"\n"},
        {{"subject", "", NULL}, SUBJ "must be 1-512 bytes\n"},
        {{"create_stream", "true", NULL},
         "relay.ini:2: [sink:bus] create_stream: create_stream = true needs stream (the name "
         "of the stream to create)\n"},
        {{"create_stream", "Yes", "stream", "S", "subject", "{agent_id}.x", NULL},
         "relay.ini:4: [sink:bus] subject: create_stream = true needs a subject whose first "
         "token has no placeholder (the stream captures <static prefix>.>)\n"},
        {{"stream", "a.b", NULL},
         "relay.ini:2: [sink:bus] stream: invalid name \"a.b\" (no '.', '*', '>', '/', "
         "spaces; at most 255 bytes)\n"},
        {{"user", "u", "token", "t", NULL},
         "relay.ini:3: [sink:bus] token: set only one of user/password, token and "
         "creds_file\n"},
        {{"password", "p", NULL}, "relay.ini:2: [sink:bus] password: set without user\n"},
        {{"cert_file", AERO_SOURCE_DIR "/relay.ini", NULL},
         "relay.ini:2: [sink:bus] cert_file: cert_file and key_file go together (set both or "
         "neither)\n"},
        {{"ca_file", "/nonexistent/ca.pem", NULL},
         "relay.ini:2: [sink:bus] ca_file: cannot read \"/nonexistent/ca.pem\": No such file "
         "or directory\n"},
        {{"creds_file", "/tmp", NULL},
         "relay.ini:2: [sink:bus] creds_file: \"/tmp\" is not a regular file\n"},
        {{"url", " , ", NULL}, "relay.ini:2: [sink:bus] url: no server URL given\n"},
        /* every problem, not just the first */
        {{"subject", "a.>", "stream", "a.b", "password", "p", NULL},
         SUBJ "wildcard '>' not allowed in a subject to publish to at byte 3 of \"a.>\"\n"
         "relay.ini:3: [sink:bus] stream: invalid name \"a.b\" (no '.', '*', '>', '/', "
         "spaces; at most 255 bytes)\n"
         "relay.ini:4: [sink:bus] password: set without user\n"},
    };
#undef SUBJ
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_log_info("case %zu", i);
        sink_test_check("bus", cases[i].kv, cases[i].want, true);
    }
    const char *const good[] = {"create_stream", "ON", "stream", "S", "tls", "False", NULL};
    sink_test_check("bus", good, "", false);
}

Test(sink_nats, secrets_never_reach_the_log)
{
    fake_host *fh;
    /* The server has no auth; the user/password are simply offered. */
    void *inst = sink_new(&fh, (const char *const[]){
        "user", "relay", "password", "s3cret-pw", "stream", "NOPE", NULL});
    struct frames *fr = frames_new("drone-s");
    write_frames(inst, fr, 0, 2, NULL);
    sink_test_destroy(inst);
    char *log = fake_host_log_dup(fh);
    cr_assert_null(strstr(log, "s3cret-pw"), "%s", log);
    free(log);
    free(fr);
}

/* ------------------------------------------------------------- outages */

/* Writes frames [from, from+n) again and again (10 ms apart) until they
 * are all OK. */
static bool write_until_ok(void *inst, struct frames *fr, size_t from, size_t n,
                           int timeout_ms)
{
    return sink_test_until_all(inst, fr->p + from, n, AERO_OK, timeout_ms);
}

Test(sink_nats_outage, a_server_down_at_start_means_quick_retries_then_recovery)
{
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){
        "stream", "LATER", "create_stream", "true", "publish_timeout_ms", "5000", NULL});
    cr_assert(fake_host_log_contains(fh, "cannot reach"));
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_connected"), 0);
    struct frames *fr = frames_new("drone-late");

    for (int round = 0; round < 3; round++)
        cr_assert_lt(write_all_fail(inst, fr, 0, 10, AERO_RETRY), 200,
                     "a disconnected sink must answer at once");
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_errors_total"), 30);

    cr_assert_eq(nats_server_start(&srv, 10000), 0);
    cr_assert(write_until_ok(inst, fr, 0, 10, 15000), "the sink never connected");
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_connected"), 1);
    test_connect();
    cr_assert_eq(stream_msgs("LATER"), 10);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_nats_outage, a_server_killed_mid_stream_comes_back_without_restarting_the_sink)
{
    cr_assert_eq(nats_server_start(&srv, 10000), 0);
    fake_host *fh;
    void *inst = sink_new(&fh, (const char *const[]){
        "stream", "KEEP", "create_stream", "true", "publish_timeout_ms", "3000", NULL});
    struct frames *fr = frames_new("drone-k");
    aero_result res[MAXF];

    cr_assert_eq(write_frames(inst, fr, 0, 50, NULL), 50);
    cr_assert_eq(nats_server_stop(&srv, SIGKILL), 0);

    /* Until the sink notices, a batch waits for acks that cannot come; it
     * must never say OK. Once it knows, every batch is an instant RETRY. */
    long long deadline = sink_test_now_ms() + 10000;
    int64_t connected = 1;
    while (connected != 0 && sink_test_now_ms() < deadline) {
        cr_assert_eq(write_frames(inst, fr, 50, 20, res), 0);
        connected = sink_test_metric(fh, "aero_sink_nats_connected");
    }
    cr_assert_eq(connected, 0, "the sink never noticed the server died");
    cr_assert_lt(write_all_fail(inst, fr, 50, 20, AERO_RETRY), 1000); /* not publish_timeout_ms */

    cr_assert_eq(nats_server_start(&srv, 10000), 0); /* same port, same store */
    cr_assert(write_until_ok(inst, fr, 50, 100, 15000), "the sink never recovered");
    cr_assert_geq(sink_test_metric(fh, "aero_sink_nats_reconnects_total"), 1);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_nats_connected"), 1);

    /* The stream kept the frames from before the crash, in order, and has
     * each later one once. Those may be stored out of order: a batch the
     * reconnecting client half published is retried, and its RETRY frames
     * land after the ones that went through (what an agent's resend does). */
    test_connect();
    size_t n;
    natsMsg **m = read_stream("KEEP", "telemetry.>", &n);
    cr_assert_eq(n, 150);
    bool seen[151] = {false};
    for (size_t i = 0; i < n; i++) {
        long seq = atol(header(m[i], "Aero-Seq"));
        cr_assert(seq >= 1 && seq <= 150, "Aero-Seq %ld", seq);
        cr_assert(!seen[seq], "seq %ld stored twice", seq);
        seen[seq] = true;
        if (i < 50)
            cr_assert_eq(seq, (long)i + 1, "frames from before the crash in order");
    }
    free_msgs(m, n);
    sink_test_destroy(inst);
    free(fr);
}
