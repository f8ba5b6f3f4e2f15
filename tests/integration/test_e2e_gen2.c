/*
 * test_e2e_gen2.c - generation 2 of TelemetryStream (SPEC.md section 9)
 * against the real relay binary over real gRPC, written from the SPEC alone:
 * both generations side by side on one relay, how a stream's generation is
 * chosen (header, first message, [relay] stream_protocol), the ambiguous
 * first messages, frame admission with its exact texts, wal_id forms,
 * skipped and fatal payloads with their metrics, the session header's
 * failures, Register's execution_capabilities with GetDroneStatus, and an
 * independent Python agent (gen2_client.py).
 *
 * Every relay writes to sink-file with fsync = batch, so a frame acked OK is
 * in the file by the time its ack is read. Waits are deadlines, never
 * sleeps.
 */
#include "harness.h"
#include "http_client.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define RELAY_ID "relay-gen2-test"
#define WAL_A HARNESS_WAL_A

/* SPEC section 9, verbatim. */
#define TXT_AGENT "telemetry frame agent ID does not match authenticated stream"
#define TXT_SESSION_GONE "telemetry stream session is no longer active"
#define TXT_SESSION "telemetry frame session ID does not match active session"
#define TXT_MSG_NAME "telemetry frame message name is required"
#define TXT_SENT_AT "telemetry frame capture timestamp is required"
#define TXT_WAL "telemetry frame WAL generation ID is invalid"
#define TXT_NOT_BOUND "telemetry stream is not bound to an active session"
#define TXT_EXACTLY_ONE "exactly one aero-arc-session-id is required"

enum { OK = 0, INVALID_ARGUMENT = 3, FAILED_PRECONDITION = 9, ABORTED = 10,
       UNAUTHENTICATED = 16 };

static struct relay_proc relay;
static struct rc_channel *ch;

static const char *sinks =
    "[sink:archive]\nplugin = sink-file\npath = %DIR%/data\nprefix = telemetry\n"
    "fsync = batch\n";

static void start_relay(const char *protocol)
{
    char extra[256];
    harness_prepare(&relay);
    relay.http = true;
    snprintf(extra, sizeof(extra), "relay_id = %s\nmax_inflight = 100\n%s%s%s", RELAY_ID,
             protocol ? "stream_protocol = " : "", protocol ? protocol : "", protocol ? "\n" : "");
    ch = harness_start(&relay, extra, sinks);
}

static void start_auto(void) { start_relay(NULL); }
static void stop_relay(void) { harness_finish(&relay, &ch); }

TestSuite(gen2, .init = start_auto, .fini = stop_relay, .timeout = 120);
/* Relays with [relay] stream_protocol pinned: each test starts its own. */
TestSuite(gen2_pinned, .fini = stop_relay, .timeout = 120);

/* ---- helpers ------------------------------------------------------------ */

/* Register agent and open a generation-2 stream with its session header. */
static struct rc_stream *open_g2(const char *agent, char *session, size_t len)
{
    struct rc_status st;
    harness_register(ch, agent, session, len);
    struct rc_stream *s = rc_stream_open_gen2(ch, agent, session, NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    return s;
}

/* Why bytes that should have been a RelayStreamMessage were not. */
static void explain_not_gen2(const struct rc_relay_msg *m, char *out, size_t len)
{
    Aeroarc__Agent__V1__TelemetryAck *seed =
        aeroarc__agent__v1__telemetry_ack__unpack(NULL, m->raw_len, m->raw);
    if (seed)
        snprintf(out, len,
                 "the relay answered with a seed TelemetryAck (frame_id \"%s\", seq %llu, %s): "
                 "generation 2 was not chosen",
                 seed->frame_id, (unsigned long long)seed->seq, rc_ack_status_name(seed->status));
    else
        snprintf(out, len, "%zu bytes that are neither a RelayStreamMessage nor a TelemetryAck",
                 m->raw_len);
    if (seed)
        aeroarc__agent__v1__telemetry_ack__free_unpacked(seed, NULL);
}

/* The next message on a generation-2 stream must be a telemetry_ack with an
 * empty frame_id (SPEC 9: never "<agent>:<seq>" there). */
static struct rc_ack g2_ack(struct rc_stream *s)
{
    struct rc_relay_msg m;
    int rc = rc_stream_recv_gen2(s, &m, 10000);
    if (rc == -EBADMSG) {
        char why[256];
        explain_not_gen2(&m, why, sizeof(why));
        cr_assert_fail("not a RelayStreamMessage: %s", why);
    }
    if (rc == 0) {
        struct rc_status st;
        rc_stream_finish(s, &st, 5000);
        cr_assert_fail("the stream ended instead of acking: %s %s", rc_status_code_name(st.code),
                       st.message);
    }
    cr_assert_eq(rc, 1, "no message within 10 s (rc %d)", rc);
    cr_assert_eq(m.arm, RC_RELAY_TELEMETRY_ACK, "expected telemetry_ack, got %s",
                 rc_relay_arm_name(m.arm));
    cr_assert_str_eq(m.ack.frame_id, "", "generation-2 acks carry an empty frame_id");
    return m.ack;
}

/* The next generation-2 ack: for seq, with that status (and error text when
 * want_error is not NULL). */
static void expect_g2_ack(struct rc_stream *s, uint64_t seq, int status, const char *want_error)
{
    struct rc_ack a = g2_ack(s);
    cr_assert_eq(a.seq, seq, "ack for seq %llu, expected %llu", (unsigned long long)a.seq,
                 (unsigned long long)seq);
    cr_assert_eq(a.status, status, "seq %llu: %s \"%s\", expected %s", (unsigned long long)seq,
                 rc_ack_status_name(a.status), a.error, rc_ack_status_name(status));
    if (want_error)
        cr_assert_str_eq(a.error, want_error, "seq %llu", (unsigned long long)seq);
}

/* The next message on a seed stream: a TelemetryAck "<agent>:<seq>". */
static void expect_seed_ack(struct rc_stream *s, const char *agent, uint64_t seq, int status)
{
    struct rc_ack a;
    int rc = rc_stream_recv_ack(s, &a, 10000);
    cr_assert_eq(rc, 1, "seed ack for seq %llu: rc %d", (unsigned long long)seq, rc);
    char want[200];
    snprintf(want, sizeof(want), "%s:%llu", agent, (unsigned long long)seq);
    cr_assert_eq(a.seq, seq);
    cr_assert_str_eq(a.frame_id, want, "a seed ack names the frame \"<agent>:<seq>\"");
    cr_assert_eq(a.status, status, "seq %llu: %s %s", (unsigned long long)seq,
                 rc_ack_status_name(a.status), a.error);
}

/* Half-close (when still open), drain, and return the final status. */
static struct rc_status finish(struct rc_stream *s)
{
    struct rc_status st;
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0, "the stream did not end within 10 s");
    rc_stream_free(s);
    return st;
}

static void expect_end(struct rc_stream *s, int code, const char *text)
{
    struct rc_status st = finish(s);
    cr_assert_eq(st.code, code, "ended %s \"%s\", expected %s", rc_status_code_name(st.code),
                 st.message, rc_status_code_name(code));
    if (text)
        cr_assert_str_eq(st.message, text);
}

static void close_ok(struct rc_stream *s)
{
    cr_assert_eq(rc_stream_close_send(s, 5000), 0);
    expect_end(s, OK, NULL);
}

/* ---- the sink file ------------------------------------------------------ */

/* The JSON lines of every frame written so far. */
static char *sink_text(void)
{
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/data", relay.dir);
    return harness_read_jsonl_dir(dir, NULL);
}

/* Copy of the (only) line for agent/seq into line; the number of such lines. */
static int sink_find(const char *all, const char *agent, uint64_t seq, char *line, size_t len)
{
    char a[200], q[40];
    int found = 0;
    snprintf(a, sizeof(a), "\"agent_id\":\"%s\"", agent);
    snprintf(q, sizeof(q), "\"seq\":%llu", (unsigned long long)seq);
    size_t ql = strlen(q);
    for (const char *p = all; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *hit = memmem(p, n, q, ql);
        if (memmem(p, n, a, strlen(a)) && hit && (hit[ql] == ',' || hit[ql] == '}')) {
            if (!found++ && line)
                snprintf(line, len, "%.*s", (int)n, p);
        }
        p = end ? end + 1 : p + n;
    }
    return found;
}

/* The string value of "key" in a JSON line (escapes kept as written); false
 * when the key is missing or not a string. */
static bool json_str(const char *line, const char *key, char *out, size_t len)
{
    char k[80];
    snprintf(k, sizeof(k), "\"%s\":\"", key);
    const char *p = strstr(line, k);
    if (!p)
        return false;
    p += strlen(k);
    size_t o = 0;
    for (; *p && *p != '"' && o + 1 < len; p++) {
        if (*p == '\\' && p[1])
            out[o++] = *p++;
        out[o++] = *p;
    }
    out[o] = '\0';
    return *p == '"';
}

/* The raw token after "key": (up to , or }); false when missing. */
static bool json_raw(const char *line, const char *key, char *out, size_t len)
{
    char k[80];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *p = strstr(line, k);
    if (!p)
        return false;
    p += strlen(k);
    size_t n = strcspn(p, ",}");
    snprintf(out, len, "%.*s", (int)n, p);
    return true;
}

/* Assert the envelope additions of section 9 in one sink line. */
static void expect_envelope(const char *line, const char *protocol, const char *wal,
                            const char *intent, const char *intent_version)
{
    char v[256];
    cr_assert(json_str(line, "protocol", v, sizeof(v)), "no \"protocol\" string: %s", line);
    cr_assert_str_eq(v, protocol, "%s", line);
    cr_assert(json_str(line, "wal_id", v, sizeof(v)), "no \"wal_id\" string: %s", line);
    cr_assert_str_eq(v, wal, "%s", line);
    cr_assert(json_str(line, "intent_id", v, sizeof(v)), "no \"intent_id\" string: %s", line);
    cr_assert_str_eq(v, intent, "%s", line);
    cr_assert(json_raw(line, "intent_version", v, sizeof(v)), "no intent_version: %s", line);
    cr_assert_str_eq(v, intent_version, "intent_version is a JSON integer: %s", line);
    cr_assert(json_str(line, "relay_id", v, sizeof(v)), "no \"relay_id\" string: %s", line);
    cr_assert_str_eq(v, RELAY_ID, "%s", line);
    cr_assert(json_str(line, "operator_id", v, sizeof(v)), "no \"operator_id\": %s", line);
    cr_assert_str_eq(v, "", "unmapped agent: %s", line);
    cr_assert(json_str(line, "aircraft_id", v, sizeof(v)), "no \"aircraft_id\": %s", line);
    cr_assert_str_eq(v, "", "unmapped agent: %s", line);
}

/* The one sink line of agent/seq (fails unless exactly one). */
static void sink_line(const char *agent, uint64_t seq, char *line, size_t len)
{
    char *all = sink_text();
    int n = sink_find(all, agent, seq, line, len);
    free(all);
    cr_assert_eq(n, 1, "%s seq %llu is in the sink output %d times", agent,
                 (unsigned long long)seq, n);
}

/* ---- /metrics ----------------------------------------------------------- */

static double metric(const char *series)
{
    struct http_reply r;
    cr_assert_eq(http_request(relay.http_port, "GET", "/metrics", 5000, &r), 0);
    cr_assert_eq(r.status, 200);
    double v = http_metric_value(r.body, series);
    http_reply_free(&r);
    return v;
}

static double ignored(const char *payload)
{
    char series[160];
    snprintf(series, sizeof(series), "aero_relay_stream_messages_ignored_total{payload=\"%s\"}",
             payload);
    double v = metric(series);
    return v < 0 ? 0 : v; /* a counter not yet incremented may be absent */
}

/* ---- both generations on one relay -------------------------------------- */

Test(gen2, seed_and_gen2_agents_at_once_each_get_their_own_acks_and_every_frame_once)
{
    enum { N = 40 };
    char g2_session[64];
    harness_register(ch, "mix-seed", NULL, 0);
    struct rc_status st;
    struct rc_stream *seed = rc_stream_open(ch, "mix-seed", NULL, 0, &st);
    struct rc_stream *g2 = open_g2("mix-g2", g2_session, sizeof(g2_session));
    /* Interleaved on two open streams of one relay, acks read afterwards. */
    for (uint64_t seq = 1; seq <= N; seq++) {
        cr_assert_eq(rc_stream_send_frame(seed, harness_frame("mix-seed", seq), 5000), 0);
        cr_assert_eq(
            rc_stream_send_gen2_frame(g2, harness_g2_frame("mix-g2", g2_session, seq), 5000), 0);
    }
    for (uint64_t seq = 1; seq <= N; seq++) {
        expect_seed_ack(seed, "mix-seed", seq, RC_ACK_OK);
        expect_g2_ack(g2, seq, RC_ACK_OK, "");
    }
    close_ok(seed);
    close_ok(g2);

    char *all = sink_text();
    char line[4096];
    for (uint64_t seq = 1; seq <= N; seq++) {
        cr_assert_eq(sink_find(all, "mix-seed", seq, line, sizeof(line)), 1, "seed seq %llu",
                     (unsigned long long)seq);
        expect_envelope(line, "seed", "", "", "0");
        cr_assert_eq(sink_find(all, "mix-g2", seq, line, sizeof(line)), 1, "gen2 seq %llu",
                     (unsigned long long)seq);
        expect_envelope(line, "multiplexed", WAL_A, "intent-9", "4");
        char v[128];
        cr_assert(json_str(line, "session_id", v, sizeof(v)));
        cr_assert_str_eq(v, g2_session);
    }
    free(all);
}

/* ---- choosing the generation (rules 1-3) -------------------------------- */

Test(gen2, the_session_header_makes_the_stream_generation_2)
{
    char session[64];
    struct rc_stream *s = open_g2("hdr-1", session, sizeof(session));
    cr_assert_eq(rc_stream_send_gen2_frame(s, harness_g2_frame("hdr-1", session, 1), 5000), 0);
    expect_g2_ack(s, 1, RC_ACK_OK, "");
    close_ok(s);
}

Test(gen2, without_the_header_the_first_message_decides)
{
    char session[64];
    struct rc_status st;
    /* An envelope first: generation 2 for the whole stream. */
    harness_register(ch, "first-g2", session, sizeof(session));
    struct rc_stream *s = rc_stream_open_gen2(ch, "first-g2", NULL, NULL, 0, &st);
    for (uint64_t seq = 1; seq <= 3; seq++)
        cr_assert_eq(
            rc_stream_send_gen2_frame(s, harness_g2_frame("first-g2", session, seq), 5000), 0);
    for (uint64_t seq = 1; seq <= 3; seq++)
        expect_g2_ack(s, seq, RC_ACK_OK, "");
    close_ok(s);
    char line[4096];
    sink_line("first-g2", 2, line, sizeof(line));
    expect_envelope(line, "multiplexed", WAL_A, "intent-9", "4");

    /* A seed frame first: seed for the whole stream. */
    harness_register(ch, "first-seed", NULL, 0);
    s = rc_stream_open(ch, "first-seed", NULL, 0, &st);
    for (uint64_t seq = 1; seq <= 3; seq++)
        cr_assert_eq(rc_stream_send_frame(s, harness_frame("first-seed", seq), 5000), 0);
    for (uint64_t seq = 1; seq <= 3; seq++)
        expect_seed_ack(s, "first-seed", seq, RC_ACK_OK);
    close_ok(s);
    sink_line("first-seed", 2, line, sizeof(line));
    expect_envelope(line, "seed", "", "", "0");
}

Test(gen2_pinned, stream_protocol_seed_ignores_the_session_header)
{
    start_relay("seed");
    struct rc_status st;
    harness_register(ch, "pin-seed", NULL, 0);
    /* A session header that would be refused in auto: ignored when pinned. */
    struct rc_stream *s = rc_stream_open_gen2(ch, "pin-seed", "sess-not-the-real-one", NULL, 0,
                                              &st);
    for (uint64_t seq = 1; seq <= 3; seq++)
        cr_assert_eq(rc_stream_send_frame(s, harness_frame("pin-seed", seq), 5000), 0);
    for (uint64_t seq = 1; seq <= 3; seq++)
        expect_seed_ack(s, "pin-seed", seq, RC_ACK_OK);
    close_ok(s);
    char line[4096];
    sink_line("pin-seed", 3, line, sizeof(line));
    expect_envelope(line, "seed", "", "", "0");
}

Test(gen2_pinned, stream_protocol_multiplexed_checks_the_header_but_does_not_require_it)
{
    start_relay("multiplexed");
    char session[64];
    struct rc_status st;
    /* No header: still generation 2. */
    harness_register(ch, "pin-mux", session, sizeof(session));
    struct rc_stream *s = rc_stream_open_gen2(ch, "pin-mux", NULL, NULL, 0, &st);
    cr_assert_eq(rc_stream_send_gen2_frame(s, harness_g2_frame("pin-mux", session, 1), 5000), 0);
    expect_g2_ack(s, 1, RC_ACK_OK, "");
    close_ok(s);
    char line[4096];
    sink_line("pin-mux", 1, line, sizeof(line));
    expect_envelope(line, "multiplexed", WAL_A, "intent-9", "4");

    /* The right header: fine. */
    s = open_g2("pin-mux", session, sizeof(session));
    cr_assert_eq(rc_stream_send_gen2_frame(s, harness_g2_frame("pin-mux", session, 2), 5000), 0);
    expect_g2_ack(s, 2, RC_ACK_OK, "");
    close_ok(s);

    /* A wrong header is still checked. */
    harness_register(ch, "pin-mux", session, sizeof(session));
    s = rc_stream_open_gen2(ch, "pin-mux", "sess-00000000000000000000000000000000", NULL, 0, &st);
    rc_stream_send_gen2_frame(s, harness_g2_frame("pin-mux", session, 3), 5000);
    expect_end(s, UNAUTHENTICATED, TXT_NOT_BOUND);

    /* A seed frame read as an AgentStreamMessage: field 1 ("sess-stale")
     * does not decode as a TelemetryFrame, so the stream ends. */
    harness_register(ch, "pin-mux", session, sizeof(session));
    s = rc_stream_open(ch, "pin-mux", NULL, 0, &st);
    cr_assert_eq(rc_stream_send_frame(s, harness_frame("pin-mux", 4), 5000), 0);
    expect_end(s, INVALID_ARGUMENT, NULL);
}

/* ---- ambiguous first messages (rule 2) ---------------------------------- */

Test(gen2, an_empty_frame_in_field_1_is_a_seed_frame)
{
    /* 0A 00: field 1, wire type 2, length 0. As an AgentStreamMessage it is
     * telemetry_frame = an empty TelemetryFrame, but rule 2 wants seq > 0 or
     * a non-empty msg_name for generation 2, so it is not; as a
     * TelemetryFrame it is session_id = "" (valid): a seed frame, acked the
     * seed way with frame_id "<agent>:0". */
    static const uint8_t empty_frame[] = {0x0a, 0x00};
    harness_register(ch, "amb-empty", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "amb-empty", NULL, 0, &st);
    cr_assert_eq(rc_stream_send(s, empty_frame, sizeof(empty_frame), 5000), 0);
    expect_seed_ack(s, "amb-empty", 0, RC_ACK_OK);
    /* The stream stays seed. */
    cr_assert_eq(rc_stream_send_frame(s, harness_frame("amb-empty", 1), 5000), 0);
    expect_seed_ack(s, "amb-empty", 1, RC_ACK_OK);
    close_ok(s);
}

Test(gen2, a_frame_in_field_1_with_seq_or_msg_name_is_generation_2)
{
    /* The other side of the same rule, still without a header:
     *   0A 02 18 07          field 1 { seq (3, varint) = 7 }
     *   0A 05 4A 03 'H' 'B' 'T' field 1 { msg_name (9, length 3) = "HBT" }
     * Both are generation 2. Their session_id is empty, not the stream's,
     * so admission rule 3 refuses them: the acks prove the generation
     * (RelayStreamMessage, empty frame_id, the frame's seq or 0). */
    static const uint8_t with_seq[] = {0x0a, 0x02, 0x18, 0x07};
    static const uint8_t with_name[] = {0x0a, 0x05, 0x4a, 0x03, 'H', 'B', 'T'};
    char session[64];
    struct rc_status st;
    harness_register(ch, "amb-seq", session, sizeof(session));
    struct rc_stream *s = rc_stream_open_gen2(ch, "amb-seq", NULL, NULL, 0, &st);
    cr_assert_eq(rc_stream_send(s, with_seq, sizeof(with_seq), 5000), 0);
    expect_g2_ack(s, 7, RC_ACK_PERMANENT_ERROR, TXT_SESSION);
    cr_assert_eq(rc_stream_send_gen2_frame(s, harness_g2_frame("amb-seq", session, 8), 5000), 0);
    expect_g2_ack(s, 8, RC_ACK_OK, "");
    close_ok(s);

    harness_register(ch, "amb-name", session, sizeof(session));
    s = rc_stream_open_gen2(ch, "amb-name", NULL, NULL, 0, &st);
    cr_assert_eq(rc_stream_send(s, with_name, sizeof(with_name), 5000), 0);
    expect_g2_ack(s, 0, RC_ACK_PERMANENT_ERROR, TXT_SESSION);
    cr_assert_eq(rc_stream_send_gen2_frame(s, harness_g2_frame("amb-name", session, 1), 5000), 0);
    expect_g2_ack(s, 1, RC_ACK_OK, "");
    close_ok(s);
}

/* A known field with another wire type is an unknown field, as Go reads
 * it: a frame with flight_id (11) sent as a varint is acked OK on a seed
 * and on a generation-2 stream, and the stream goes on. A first message
 * whose frame has one is not taken for generation 2 (rule 2 wants the
 * right wire type for every known field): it is a seed frame, whose
 * session_id (field 1) is the envelope's bytes, stale and accepted. */
Test(gen2, a_known_field_with_another_wire_type_is_skipped_as_go_reads_it)
{
    static const uint8_t flight_as_varint[] = {0x58, 0x01};
    uint8_t *frame, *b;
    size_t flen, n;
    struct rc_status st;

    harness_register(ch, "ww-seed", NULL, 0);
    struct rc_stream *s = rc_stream_open(ch, "ww-seed", NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    cr_assert_eq(rc_frame_encode(harness_frame("ww-seed", 1), &frame, &flen), 0);
    b = malloc(flen + sizeof(flight_as_varint));
    memcpy(b, frame, flen);
    memcpy(b + flen, flight_as_varint, sizeof(flight_as_varint));
    cr_assert_eq(rc_stream_send(s, b, flen + sizeof(flight_as_varint), 5000), 0);
    expect_seed_ack(s, "ww-seed", 1, RC_ACK_OK);
    cr_assert_eq(rc_stream_send_frame(s, harness_frame("ww-seed", 2), 5000), 0);
    expect_seed_ack(s, "ww-seed", 2, RC_ACK_OK);
    close_ok(s);
    free(frame);
    free(b);

    char session[64];
    s = open_g2("ww-g2", session, sizeof(session));
    cr_assert_eq(rc_frame_encode(harness_g2_frame("ww-g2", session, 1), &frame, &flen), 0);
    b = malloc(flen + sizeof(flight_as_varint));
    memcpy(b, frame, flen);
    memcpy(b + flen, flight_as_varint, sizeof(flight_as_varint));
    uint8_t *env;
    cr_assert_eq(rc_envelope_wrap(RC_AGENT_TELEMETRY_FRAME, b, flen + sizeof(flight_as_varint),
                                  &env, &n),
                 0);
    cr_assert_eq(rc_stream_send(s, env, n, 5000), 0);
    expect_g2_ack(s, 1, RC_ACK_OK, "");
    close_ok(s);
    free(frame);
    free(b);
    free(env);

    static const uint8_t first[] = {0x0a, 0x04, 0x18, 0x07, 0x58, 0x01};
    harness_register(ch, "ww-first", NULL, 0);
    s = rc_stream_open_gen2(ch, "ww-first", NULL, NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    cr_assert_eq(rc_stream_send(s, first, sizeof(first), 5000), 0);
    expect_seed_ack(s, "ww-first", 0, RC_ACK_OK);
    close_ok(s);
}

Test(gen2, a_seed_frame_with_only_session_id_or_agent_id_is_seed)
{
    /* 0A 25 "sess-<32 hex>": field 1, wire type 2, 37 bytes, spanning the
     * buffer. Its payload is not a well-formed message: 's' = 0x73 is field
     * 14 with wire type 3 (start group), refused by rule 2. So it is a seed
     * TelemetryFrame with only session_id set. */
    char session[64];
    harness_register(ch, "amb-sess", session, sizeof(session));
    cr_assert_eq(strlen(session), 37);
    uint8_t buf[64] = {0x0a, 37};
    memcpy(buf + 2, session, 37);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "amb-sess", NULL, 0, &st);
    cr_assert_eq(rc_stream_send(s, buf, 39, 5000), 0);
    expect_seed_ack(s, "amb-sess", 0, RC_ACK_OK);
    close_ok(s);

    /* 12 09 "drone-amb": field 2 (agent_id), wire type 2, spanning the
     * buffer; 'd' = 0x64 is field 12 with wire type 4 (end group): not a
     * message, so a seed frame with only agent_id set. */
    static const uint8_t agent_only[] = {0x12, 0x09, 'd', 'r', 'o', 'n', 'e', '-', 'a', 'm', 'b'};
    harness_register(ch, "drone-amb", NULL, 0);
    s = rc_stream_open(ch, "drone-amb", NULL, 0, &st);
    cr_assert_eq(rc_stream_send(s, agent_only, sizeof(agent_only), 5000), 0);
    expect_seed_ack(s, "drone-amb", 0, RC_ACK_OK);
    close_ok(s);
}

/* ---- frame admission (rules 1-7) ---------------------------------------- */

/* Send f, expect its refusal with text, then a good frame (next seq) acked OK. */
static void refuse_then_ok(struct rc_stream *s, const char *agent, const char *session,
                           const struct rc_frame *f, const char *text, uint64_t *seq)
{
    cr_assert_eq(rc_stream_send_gen2_frame(s, f, 5000), 0);
    expect_g2_ack(s, f->seq, RC_ACK_PERMANENT_ERROR, text);
    ++*seq;
    cr_assert_eq(rc_stream_send_gen2_frame(s, harness_g2_frame(agent, session, *seq), 5000), 0);
    expect_g2_ack(s, *seq, RC_ACK_OK, "");
    ++*seq;
}

Test(gen2, every_admission_failure_has_its_text_and_the_stream_goes_on)
{
    char session[64];
    const char *A = "adm-1";
    struct rc_stream *s = open_g2(A, session, sizeof(session));
    uint64_t seq = 1;
    struct rc_frame f;

    /* 1: another agent's id in the frame (an empty one is fine: below). */
    f = *harness_g2_frame("someone-else", session, seq);
    refuse_then_ok(s, A, session, &f, TXT_AGENT, &seq);
    f = *harness_g2_frame("", session, seq);
    cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
    expect_g2_ack(s, seq++, RC_ACK_OK, "");

    /* 3: a stale session id is refused here (unlike seed frames). */
    f = *harness_g2_frame(A, "sess-stale", seq);
    refuse_then_ok(s, A, session, &f, TXT_SESSION, &seq);
    f = *harness_g2_frame(A, "", seq);
    refuse_then_ok(s, A, session, &f, TXT_SESSION, &seq);

    /* 4: blank msg_name: empty or whitespace only. */
    f = *harness_g2_frame(A, session, seq);
    f.msg_name = "";
    refuse_then_ok(s, A, session, &f, TXT_MSG_NAME, &seq);
    f = *harness_g2_frame(A, session, seq);
    f.msg_name = " \t ";
    refuse_then_ok(s, A, session, &f, TXT_MSG_NAME, &seq);

    /* 5: sent_at_unix_ns <= 0. */
    f = *harness_g2_frame(A, session, seq);
    f.sent_at_unix_ns = 0;
    refuse_then_ok(s, A, session, &f, TXT_SENT_AT, &seq);
    f = *harness_g2_frame(A, session, seq);
    f.sent_at_unix_ns = -5;
    refuse_then_ok(s, A, session, &f, TXT_SENT_AT, &seq);

    /* 6: wal_id not a UUID (its forms: the wal_id test). */
    f = *harness_g2_frame(A, session, seq);
    f.wal_id = "not-a-uuid";
    refuse_then_ok(s, A, session, &f, TXT_WAL, &seq);

    /* The order: a frame failing 1, 3, 4, 5 and 6 gets rule 1's text; one
     * failing 3 to 6 rule 3's; 4 to 6 rule 4's; 5 and 6 rule 5's. */
    f = *harness_g2_frame("someone-else", "sess-stale", seq);
    f.msg_name = "";
    f.sent_at_unix_ns = 0;
    f.wal_id = "junk";
    refuse_then_ok(s, A, session, &f, TXT_AGENT, &seq);
    f.agent_id = A;
    f.seq = seq;
    refuse_then_ok(s, A, session, &f, TXT_SESSION, &seq);
    f.session_id = session;
    f.seq = seq;
    refuse_then_ok(s, A, session, &f, TXT_MSG_NAME, &seq);
    f.msg_name = "HEARTBEAT";
    f.seq = seq;
    refuse_then_ok(s, A, session, &f, TXT_SENT_AT, &seq);

    /* 7: the limits of section 2, with the seed texts: the same over-limit
     * frame on a seed stream tells what the text is. */
    char big[4098];
    memset(big, 'v', 4097);
    big[4097] = '\0';
    struct rc_field fld = {"k", big};
    harness_register(ch, "adm-seed", NULL, 0);
    struct rc_status st;
    struct rc_stream *seed = rc_stream_open(ch, "adm-seed", NULL, 0, &st);
    struct rc_frame sf = *harness_frame("adm-seed", 1);
    sf.fields = &fld;
    sf.n_fields = 1;
    cr_assert_eq(rc_stream_send_frame(seed, &sf, 5000), 0);
    struct rc_ack sa;
    cr_assert_eq(rc_stream_recv_ack(seed, &sa, 10000), 1);
    cr_assert_eq(sa.status, RC_ACK_PERMANENT_ERROR);
    char seed_text[512];
    snprintf(seed_text, sizeof(seed_text), "%s", sa.error);
    cr_assert_neq(seed_text[0], '\0', "a permanent error says why");
    close_ok(seed);

    f = *harness_g2_frame(A, session, seq);
    f.fields = &fld;
    f.n_fields = 1;
    refuse_then_ok(s, A, session, &f, seed_text, &seq);
    char name[130];
    memset(name, 'N', 129);
    name[129] = '\0';
    f = *harness_g2_frame(A, session, seq);
    f.msg_name = name;
    cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
    struct rc_ack a = g2_ack(s);
    cr_assert_eq(a.seq, seq);
    cr_assert_eq(a.status, RC_ACK_PERMANENT_ERROR, "msg_name of 129 bytes: %s",
                 rc_ack_status_name(a.status));
    cr_assert_neq(a.error[0], '\0');
    seq++;
    cr_assert_eq(rc_stream_send_gen2_frame(s, harness_g2_frame(A, session, seq), 5000), 0);
    expect_g2_ack(s, seq, RC_ACK_OK, "");
    close_ok(s);

    /* Refused frames are not written; accepted ones are. */
    char *all = sink_text();
    cr_assert_eq(sink_find(all, A, 1, NULL, 0), 0, "a refused frame reached the sink");
    cr_assert_eq(sink_find(all, A, 2, NULL, 0), 1);
    free(all);
}

Test(gen2, a_superseded_session_refuses_frames_with_the_no_longer_active_text)
{
    /* Rule 2. A new Register makes the session not current and ends its
     * stream (ABORTED); frames read in between are refused with exactly
     * this text, never acked OK and written under a dead session. Which
     * frames fall in that window is timing, so each ack must be OK (read
     * before the Register) or this refusal. */
    char session[64];
    struct rc_stream *s = open_g2("adm-gone", session, sizeof(session));
    for (uint64_t seq = 1; seq <= 30; seq++)
        cr_assert_eq(
            rc_stream_send_gen2_frame(s, harness_g2_frame("adm-gone", session, seq), 5000), 0);
    expect_g2_ack(s, 1, RC_ACK_OK, "");
    harness_register(ch, "adm-gone", NULL, 0);
    for (uint64_t seq = 31; seq <= 60; seq++)
        if (rc_stream_send_gen2_frame(s, harness_g2_frame("adm-gone", session, seq), 5000) != 0)
            break;
    struct rc_relay_msg m;
    int rc;
    while ((rc = rc_stream_recv_gen2(s, &m, 10000)) == 1) {
        cr_assert_eq(m.arm, RC_RELAY_TELEMETRY_ACK);
        cr_assert_str_eq(m.ack.frame_id, "");
        if (m.ack.status != RC_ACK_OK) {
            cr_assert_eq(m.ack.status, RC_ACK_PERMANENT_ERROR, "seq %llu: %s",
                         (unsigned long long)m.ack.seq, rc_ack_status_name(m.ack.status));
            cr_assert_str_eq(m.ack.error, TXT_SESSION_GONE);
        }
    }
    cr_assert_eq(rc, 0, "the superseded stream must end (rc %d)", rc);
    expect_end(s, ABORTED, NULL);
}

/* ---- wal_id ------------------------------------------------------------- */

Test(gen2, every_uuid_form_is_accepted_and_recorded_canonical)
{
    static const struct {
        const char *sent, *recorded;
    } good[] = {
        {"6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
        {"6BA7B811-9DAD-11D1-80B4-00C04FD430C8", "6ba7b811-9dad-11d1-80b4-00c04fd430c8"},
        {"6ba7b8129dad11d180b400c04fd430c8", "6ba7b812-9dad-11d1-80b4-00c04fd430c8"},
        {"{6ba7b813-9dad-11d1-80b4-00c04fd430c8}", "6ba7b813-9dad-11d1-80b4-00c04fd430c8"},
        {"urn:uuid:6ba7b814-9dad-11d1-80b4-00c04fd430c8", "6ba7b814-9dad-11d1-80b4-00c04fd430c8"},
        /* Go's uuid.Parse compares the urn prefix case-insensitively. */
        {"URN:UUID:6BA7B815-9DAD-11D1-80B4-00C04FD430C8", "6ba7b815-9dad-11d1-80b4-00c04fd430c8"},
        {"", ""}, /* agents older than field 14: accepted, recorded "" */
    };
    static const char *const bad[] = {
        "00000000-0000-0000-0000-000000000000",   /* the nil UUID */
        "00000000000000000000000000000000",       /* nil, 32 hex */
        "urn:uuid:00000000-0000-0000-0000-000000000000",
        "junk",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c",    /* 35 characters */
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8a",  /* 37 */
        "6ba7b810-9dad-11d1-80b4-00c04fd430cg",   /* not hex */
        "6ba7b810+9dad-11d1-80b4-00c04fd430c8",   /* not a dash */
        "{6ba7b8109dad11d180b400c04fd430c8}",     /* braces need the dashes */
        " 6ba7b810-9dad-11d1-80b4-00c04fd430c8",  /* no trimming */
    };
    char session[64];
    const char *A = "wal-1";
    double without_before = metric("aero_relay_frames_without_wal_id_total");
    struct rc_stream *s = open_g2(A, session, sizeof(session));
    uint64_t seq = 1;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++, seq++) {
        struct rc_frame f = *harness_g2_frame(A, session, seq);
        f.wal_id = good[i].sent;
        cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
        struct rc_ack a = g2_ack(s);
        cr_assert_eq(a.seq, seq);
        cr_assert_eq(a.status, RC_ACK_OK, "wal_id \"%s\": %s %s", good[i].sent,
                     rc_ack_status_name(a.status), a.error);
    }
    uint64_t first_bad = seq;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rc_frame f = *harness_g2_frame(A, session, seq);
        f.wal_id = bad[i];
        cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
        struct rc_ack a = g2_ack(s);
        cr_assert_eq(a.seq, seq);
        cr_assert_eq(a.status, RC_ACK_PERMANENT_ERROR, "wal_id \"%s\" accepted", bad[i]);
        cr_assert_str_eq(a.error, TXT_WAL, "wal_id \"%s\"", bad[i]);
        seq++;
        cr_assert_eq(rc_stream_send_gen2_frame(s, harness_g2_frame(A, session, seq), 5000), 0);
        expect_g2_ack(s, seq++, RC_ACK_OK, "");
    }
    close_ok(s);

    char *all = sink_text();
    char line[4096], v[128];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        cr_assert_eq(sink_find(all, A, i + 1, line, sizeof(line)), 1, "seq %zu", i + 1);
        cr_assert(json_str(line, "wal_id", v, sizeof(v)), "%s", line);
        cr_assert_str_eq(v, good[i].recorded, "sent \"%s\"", good[i].sent);
    }
    cr_assert_eq(sink_find(all, A, first_bad, NULL, 0), 0, "a refused wal_id was written");
    free(all);
    double without = metric("aero_relay_frames_without_wal_id_total");
    cr_assert_eq(without - (without_before < 0 ? 0 : without_before), 1,
                 "aero_relay_frames_without_wal_id_total %.0f -> %.0f", without_before, without);
}

/* The envelope's wal_id is canonical or "" for both generations: a seed
 * frame that carries one is recorded with it, and one that is not a UUID is
 * accepted (seed frames have no wal_id rule) and recorded "". */
Test(gen2, a_seed_frame_wal_id_is_recorded_canonical_or_empty)
{
    const char *A = "wal-seed";
    harness_register(ch, A, NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, A, NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    static const struct {
        const char *sent, *recorded;
    } forms[] = {
        {"6BA7B816-9DAD-11D1-80B4-00C04FD430C8", "6ba7b816-9dad-11d1-80b4-00c04fd430c8"},
        {"junk", ""},
        {"00000000-0000-0000-0000-000000000000", ""},
    };
    for (uint64_t seq = 1; seq <= 3; seq++) {
        struct rc_frame f = *harness_frame(A, seq);
        f.wal_id = forms[seq - 1].sent;
        cr_assert_eq(rc_stream_send_frame(s, &f, 5000), 0);
        expect_seed_ack(s, A, seq, RC_ACK_OK);
    }
    close_ok(s);
    char line[4096];
    for (uint64_t seq = 1; seq <= 3; seq++) {
        sink_line(A, seq, line, sizeof(line));
        expect_envelope(line, "seed", forms[seq - 1].recorded, "", "0");
    }
}

/* How often the relay's log so far says agent `agent` sends frames
 * without wal_id. */
static int no_wal_lines(const char *agent)
{
    char want[128];
    snprintf(want, sizeof(want), "agent %s (session ", agent);
    return harness_log_count(&relay, want, "sends frames without wal_id", NULL);
}

/* SPEC section 9 step 6: frames without wal_id are logged once per
 * session: not again on the session's second stream, again for the next
 * Register's session. The ack is what orders the log line before the
 * read. */
Test(gen2, frames_without_wal_id_are_logged_once_per_session)
{
    const char *A = "nowal-1";
    char session[64];
    struct rc_status st;
    struct rc_frame f;
    struct rc_stream *s = open_g2(A, session, sizeof(session));
    for (uint64_t seq = 1; seq <= 2; seq++) {
        f = *harness_g2_frame(A, session, seq);
        f.wal_id = "";
        cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
        expect_g2_ack(s, seq, RC_ACK_OK, "");
    }
    cr_assert_eq(no_wal_lines(A), 1);
    /* The same session's second stream (it supersedes the first). */
    struct rc_stream *s2 = rc_stream_open_gen2(ch, A, session, NULL, 0, &st);
    cr_assert_not_null(s2, "%s", st.message);
    f = *harness_g2_frame(A, session, 3);
    f.wal_id = "";
    cr_assert_eq(rc_stream_send_gen2_frame(s2, &f, 5000), 0);
    expect_g2_ack(s2, 3, RC_ACK_OK, "");
    cr_assert_eq(no_wal_lines(A), 1, "said again for the same session");
    close_ok(s2);
    rc_stream_free(s);
    /* A new Register: a new session, said again. */
    s = open_g2(A, session, sizeof(session));
    f = *harness_g2_frame(A, session, 4);
    f.wal_id = "";
    cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
    expect_g2_ack(s, 4, RC_ACK_OK, "");
    cr_assert_eq(no_wal_lines(A), 2);
    close_ok(s);
}

/* ---- payloads other than frames ----------------------------------------- */

/* Send the envelope bytes, then a good frame whose ack must be the very next
 * message (the skipped message got no answer, and the stream went on). */
static void skipped_then_ok(struct rc_stream *s, const char *agent, const char *session,
                            const uint8_t *env, size_t len, uint64_t *seq, const char *what)
{
    cr_assert_eq(rc_stream_send(s, env, len, 5000), 0, "%s", what);
    cr_assert_eq(rc_stream_send_gen2_frame(s, harness_g2_frame(agent, session, *seq), 5000), 0,
                 "after %s", what);
    expect_g2_ack(s, *seq, RC_ACK_OK, "");
    ++*seq;
}

/* Pack msg and wrap it as arm (malloc'd envelope). */
static uint8_t *wrap_msg(int arm, const ProtobufCMessage *msg, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *body = malloc(n + 1), *env;
    protobuf_c_message_pack(msg, body);
    cr_assert_eq(rc_envelope_wrap(arm, body, n, &env, len), 0);
    free(body);
    return env;
}

Test(gen2, unknown_and_unawaited_payloads_are_skipped_counted_and_the_stream_goes_on)
{
    static const char *const labels[] = {
        "operation_context_command_ack", "aircraft_command_result", "mission_deployment_result",
        "command_evidence", "flight_completion_evidence", "unknown", "empty"};
    double before[7];
    for (int i = 0; i < 7; i++)
        before[i] = ignored(labels[i]);

    char session[64];
    const char *A = "skip-1";
    struct rc_stream *s = open_g2(A, session, sizeof(session));
    uint64_t seq = 1;
    size_t len;
    uint8_t *env;

    /* The first message is a frame, so the stream is generation 2 by the
     * header alone and every arm below is read as an AgentStreamMessage. */
    cr_assert_eq(rc_stream_send_gen2_frame(s, harness_g2_frame(A, session, seq), 5000), 0);
    expect_g2_ack(s, seq++, RC_ACK_OK, "");

    Aeroarc__Agent__V1__OperationContext ctx = AEROARC__AGENT__V1__OPERATION_CONTEXT__INIT;
    ctx.flight_id = "flight-7";
    ctx.intent_id = "intent-9";
    ctx.intent_version = 4;
    Aeroarc__Agent__V1__OperationContextCommandAck ocack =
        AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__INIT;
    ocack.command_id = "cmd-nobody-sent";
    ocack.status = AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_APPLIED;
    ocack.active_context = &ctx;
    env = wrap_msg(RC_AGENT_OPERATION_CONTEXT_COMMAND_ACK, &ocack.base, &len);
    skipped_then_ok(s, A, session, env, len, &seq, "arm 2 (nobody waits for it)");
    free(env);

    Aeroarc__Agent__V1__AircraftCommandResult acr =
        AEROARC__AGENT__V1__AIRCRAFT_COMMAND_RESULT__INIT;
    acr.command_id = "cmd-never-issued";
    acr.aircraft_id = "ac-1";
    acr.status = AEROARC__AGENT__V1__AIRCRAFT_COMMAND_RESULT__STATUS__STATUS_ACCEPTED;
    cr_assert_eq(rc_stream_send_gen2_msg(s, RC_AGENT_AIRCRAFT_COMMAND_RESULT, &acr.base, 5000), 0);
    cr_assert_eq(rc_stream_send_gen2_frame(s, harness_g2_frame(A, session, seq), 5000), 0);
    expect_g2_ack(s, seq++, RC_ACK_OK, "");

    Aeroarc__Agent__V1__MissionDeploymentResult mdr =
        AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__INIT;
    mdr.command_id = "cmd-never-deployed";
    mdr.status = AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__STATUS__STATUS_APPLIED;
    env = wrap_msg(RC_AGENT_MISSION_DEPLOYMENT_RESULT, &mdr.base, &len);
    skipped_then_ok(s, A, session, env, len, &seq, "arm 4 (nobody waits for it)");
    free(env);

    Aeroarc__Agent__V1__CommandEvidence ce = AEROARC__AGENT__V1__COMMAND_EVIDENCE__INIT;
    ce.command_id = "cmd-unknown";
    ce.command_digest = "sha256:00";
    env = wrap_msg(RC_AGENT_COMMAND_EVIDENCE, &ce.base, &len);
    skipped_then_ok(s, A, session, env, len, &seq, "arm 5 (nobody waits for it)");
    free(env);

    static const uint8_t arm6[] = {0x32, 0x00};                  /* field 6, empty message */
    static const uint8_t field7[] = {0x3a, 0x02, 0x08, 0x01};    /* field 7 { 1: 1 } */
    static const uint8_t field15[] = {0x78, 0x2a};               /* field 15, varint 42 */
    static const uint8_t nothing[] = {0};
    skipped_then_ok(s, A, session, arm6, sizeof(arm6), &seq, "arm 6");
    skipped_then_ok(s, A, session, field7, sizeof(field7), &seq, "field 7");
    skipped_then_ok(s, A, session, field15, sizeof(field15), &seq, "field 15 (varint)");
    skipped_then_ok(s, A, session, nothing, 0, &seq, "an empty message");
    close_ok(s);

    const double want[7] = {1, 1, 1, 1, 1, 2, 1};
    for (int i = 0; i < 7; i++) {
        double now = ignored(labels[i]);
        cr_assert_eq(now - before[i], want[i],
                     "aero_relay_stream_messages_ignored_total{payload=\"%s\"}: %.0f -> %.0f",
                     labels[i], before[i], now);
    }
    /* Logged at most once a minute per kind (this suite's relay lives a few
     * seconds): the two unknown payloads gave one line. */
    cr_assert_eq(harness_log_count(&relay, "sent a stream message nobody handles (unknown)", NULL),
                 1);
}

/* A frame sent as two arm-1 records is their merge, as Go reads a oneof
 * message set twice: the second record adds flight_id (field 11) to the
 * first's frame. */
Test(gen2, a_frame_in_two_records_is_their_merge)
{
    const char *A = "merge-1";
    char session[64];
    struct rc_stream *s = open_g2(A, session, sizeof(session));
    uint8_t *frame, *first, *second;
    size_t flen, n1, n2;
    cr_assert_eq(rc_frame_encode(harness_g2_frame(A, session, 1), &frame, &flen), 0);
    static const uint8_t more[] = {0x5a, 0x08, 'F', '-', 'm', 'e', 'r', 'g', 'e', 'd'};
    cr_assert_eq(rc_envelope_wrap(RC_AGENT_TELEMETRY_FRAME, frame, flen, &first, &n1), 0);
    cr_assert_eq(rc_envelope_wrap(RC_AGENT_TELEMETRY_FRAME, more, sizeof(more), &second, &n2), 0);
    uint8_t *env = malloc(n1 + n2);
    cr_assert_not_null(env);
    memcpy(env, first, n1);
    memcpy(env + n1, second, n2);
    cr_assert_eq(rc_stream_send(s, env, n1 + n2, 5000), 0);
    expect_g2_ack(s, 1, RC_ACK_OK, "");
    close_ok(s);
    char line[4096], v[64];
    sink_line(A, 1, line, sizeof(line));
    cr_assert(json_str(line, "flight_id", v, sizeof(v)), "%s", line);
    cr_assert_str_eq(v, "F-merged", "%s", line);
    free(frame);
    free(first);
    free(second);
    free(env);
}

/* A registered agent's generation-2 stream that has acked one good frame;
 * then bytes; then the stream must end INVALID_ARGUMENT. */
static void fatal_message(const char *agent, const uint8_t *bytes, size_t len, const char *what)
{
    char session[64];
    struct rc_stream *s = open_g2(agent, session, sizeof(session));
    cr_assert_eq(rc_stream_send_gen2_frame(s, harness_g2_frame(agent, session, 1), 5000), 0);
    expect_g2_ack(s, 1, RC_ACK_OK, "");
    cr_assert_eq(rc_stream_send(s, bytes, len, 5000), 0);
    struct rc_status st = finish(s);
    cr_assert_eq(st.code, INVALID_ARGUMENT, "%s: ended %s \"%s\"", what,
                 rc_status_code_name(st.code), st.message);
}

Test(gen2, an_undecodable_result_or_a_wrong_wire_type_ends_the_stream)
{
    /* Arms 2-5 whose payload is not their message: 0A FF is a field 1
     * (command_id) claiming 127 bytes that are not there. */
    static const uint8_t arm2[] = {0x12, 0x02, 0x0a, 0x7f};
    static const uint8_t arm3[] = {0x1a, 0x02, 0x0a, 0x7f};
    static const uint8_t arm4[] = {0x22, 0x02, 0x0a, 0x7f};
    static const uint8_t arm5[] = {0x2a, 0x02, 0x0a, 0x7f};
    /* Arm 1 whose payload is not a TelemetryFrame, the same way. */
    static const uint8_t arm1[] = {0x0a, 0x02, 0x0a, 0x7f};
    /* Fields 1-6 with another wire type than 2. */
    static const uint8_t f1_varint[] = {0x08, 0x01};
    static const uint8_t f2_varint[] = {0x10, 0x01};
    static const uint8_t f3_fixed64[] = {0x19, 1, 2, 3, 4, 5, 6, 7, 8};
    static const uint8_t f6_fixed32[] = {0x35, 1, 2, 3, 4};
    /* Not well-formed at all: a group, a truncated envelope. */
    static const uint8_t group[] = {0x0b, 0x0c};
    static const uint8_t truncated[] = {0x0a, 0x05, 0x18};
    static const uint8_t arm1_then_arm6[] = {0x0a, 0x02, 0x0a, 0x7f, 0x32, 0x00};
    static const struct {
        const uint8_t *b;
        size_t n;
        const char *what;
    } cases[] = {
        {arm2, sizeof(arm2), "arm 2 undecodable"},
        {arm3, sizeof(arm3), "arm 3 undecodable"},
        {arm4, sizeof(arm4), "arm 4 undecodable"},
        {arm5, sizeof(arm5), "arm 5 undecodable"},
        {arm1, sizeof(arm1), "arm 1 not a TelemetryFrame"},
        {f1_varint, sizeof(f1_varint), "field 1 varint"},
        {f2_varint, sizeof(f2_varint), "field 2 varint"},
        {f3_fixed64, sizeof(f3_fixed64), "field 3 fixed64"},
        {f6_fixed32, sizeof(f6_fixed32), "field 6 fixed32"},
        {group, sizeof(group), "a group"},
        {truncated, sizeof(truncated), "truncated"},
        /* Go decodes every arm record: a bad arm 1 later replaced by arm 6
         * still ends the stream. */
        {arm1_then_arm6, sizeof(arm1_then_arm6), "arm 1 undecodable, then arm 6"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        fatal_message("fatal-1", cases[i].b, cases[i].n, cases[i].what);

    /* A seed frame on a generation-2 stream: field 1 "sess-stale" is not a
     * TelemetryFrame. */
    uint8_t *seed;
    size_t len;
    cr_assert_eq(rc_frame_encode(harness_frame("fatal-1", 2), &seed, &len), 0);
    fatal_message("fatal-1", seed, len, "a seed frame");
    free(seed);

    /* The relay kept serving. */
    char session[64];
    struct rc_stream *s = open_g2("fatal-after", session, sizeof(session));
    cr_assert_eq(
        rc_stream_send_gen2_frame(s, harness_g2_frame("fatal-after", session, 1), 5000), 0);
    expect_g2_ack(s, 1, RC_ACK_OK, "");
    close_ok(s);
}

/* ---- the session header (rule 1) ---------------------------------------- */

/* Open with the header as given, send one good frame, expect the end. */
static void header_refused(const char *agent, const char *value, enum rc_session_header mode,
                           int code, const char *text)
{
    struct rc_status st;
    struct rc_stream *s = rc_stream_open_gen2_hdr(ch, agent, value, mode, NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    rc_stream_send_gen2_frame(s, harness_g2_frame(agent, value, 1), 5000); /* may fail: refused */
    struct rc_relay_msg m;
    int rc = rc_stream_recv_gen2(s, &m, 10000);
    char why[256] = "nothing within 10 s";
    if (rc == 1)
        snprintf(why, sizeof(why), "a %s", rc_relay_arm_name(m.arm));
    else if (rc == -EBADMSG)
        explain_not_gen2(&m, why, sizeof(why));
    cr_assert_eq(rc, 0, "header \"%s\" (mode %d): expected the stream to end, got %s", value,
                 (int)mode, why);
    st = finish(s);
    cr_assert_eq(st.code, code, "header \"%s\" (mode %d): %s \"%s\"", value, (int)mode,
                 rc_status_code_name(st.code), st.message);
    if (text)
        cr_assert_str_eq(st.message, text, "header \"%s\" (mode %d)", value, (int)mode);
}

Test(gen2, a_wrong_or_stale_session_header_is_unauthenticated)
{
    char first[64], second[64];
    harness_register(ch, "auth-1", first, sizeof(first));
    header_refused("auth-1", "sess-00000000000000000000000000000000", RC_SESSION_HEADER_ONCE,
                   UNAUTHENTICATED, TXT_NOT_BOUND);
    harness_register(ch, "auth-1", first, sizeof(first));
    harness_register(ch, "auth-1", second, sizeof(second));
    header_refused("auth-1", first, RC_SESSION_HEADER_ONCE, UNAUTHENTICATED, TXT_NOT_BOUND);
    /* Another agent's current session is not this agent's. */
    char other[64];
    harness_register(ch, "auth-2", other, sizeof(other));
    harness_register(ch, "auth-1", NULL, 0);
    header_refused("auth-1", other, RC_SESSION_HEADER_ONCE, UNAUTHENTICATED, TXT_NOT_BOUND);

    /* The value is trimmed before comparing. */
    char padded[80];
    harness_register(ch, "auth-3", second, sizeof(second));
    snprintf(padded, sizeof(padded), "  %s ", second);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open_gen2(ch, "auth-3", padded, NULL, 0, &st);
    cr_assert_eq(rc_stream_send_gen2_frame(s, harness_g2_frame("auth-3", second, 1), 5000), 0);
    expect_g2_ack(s, 1, RC_ACK_OK, "");
    close_ok(s);
}

Test(gen2, a_repeated_or_blank_session_header_is_unauthenticated)
{
    char session[64];
    harness_register(ch, "auth-rep", session, sizeof(session));
    header_refused("auth-rep", session, RC_SESSION_HEADER_TWICE, UNAUTHENTICATED,
                   TXT_EXACTLY_ONE);
    harness_register(ch, "auth-rep", session, sizeof(session));
    header_refused("auth-rep", "", RC_SESSION_HEADER_ONCE, UNAUTHENTICATED, TXT_EXACTLY_ONE);
    harness_register(ch, "auth-rep", session, sizeof(session));
    header_refused("auth-rep", "   ", RC_SESSION_HEADER_ONCE, UNAUTHENTICATED, TXT_EXACTLY_ONE);
}

Test(gen2, an_unregistered_agent_without_the_header_is_failed_precondition)
{
    struct rc_status st;
    struct rc_stream *s = rc_stream_open_gen2(ch, "never-registered", NULL, NULL, 0, &st);
    rc_stream_send_gen2_frame(s, harness_g2_frame("never-registered", "sess-x", 1), 5000);
    st = finish(s);
    cr_assert_eq(st.code, FAILED_PRECONDITION, "%s %s", rc_status_code_name(st.code), st.message);
    /* With a header there is no current session to be bound to. */
    header_refused("never-registered-2", "sess-00000000000000000000000000000000",
                   RC_SESSION_HEADER_ONCE, UNAUTHENTICATED, TXT_NOT_BOUND);
}

/* ---- Register's capabilities and GetDroneStatus ------------------------- */

Test(gen2, register_bounds_execution_capabilities_and_drone_status_reports_them)
{
    char caps_text[33][66];
    const char *caps[33];
    for (int i = 0; i < 33; i++) { /* "cap_NN_" then filler: 64 bytes each */
        char prefix[8];
        memset(caps_text[i], 'a' + i % 26, 64);
        caps_text[i][64] = '\0';
        snprintf(prefix, sizeof(prefix), "cap_%02d_", i);
        memcpy(caps_text[i], prefix, 7);
        caps[i] = caps_text[i];
    }
    struct rc_status st;
    struct rc_register_result reg;
    cr_assert_eq(rc_register_caps(ch, "caps-1", "1", "linux/arm64", caps, 33, NULL, &st, 5000),
                 -EIO, "33 capabilities accepted");
    cr_assert_eq(st.code, INVALID_ARGUMENT, "%s", rc_status_code_name(st.code));
    char long_cap[66];
    memset(long_cap, 'L', 65);
    long_cap[65] = '\0';
    const char *one_long[] = {"mavlink_command_v1", long_cap};
    cr_assert_eq(rc_register_caps(ch, "caps-1", "1", "linux/arm64", one_long, 2, NULL, &st, 5000),
                 -EIO, "a capability of 65 bytes accepted");
    cr_assert_eq(st.code, INVALID_ARGUMENT);
    cr_assert_eq(rc_register_caps(ch, "caps-1", "1", "linux/arm64", caps, 32, &reg, &st, 5000), 0,
                 "32 x 64 bytes: %s %s", rc_status_code_name(st.code), st.message);
    cr_assert_eq(reg.durable_flight_completion, false);

    struct rc_stream *s = rc_stream_open_gen2(ch, "caps-1", reg.session_id, NULL, 0, &st);
    struct rc_frame f = *harness_g2_frame("caps-1", reg.session_id, 1);
    f.intent_id = "intent-a";
    f.intent_version = 1;
    cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
    expect_g2_ack(s, 1, RC_ACK_OK, "");
    f = *harness_g2_frame("caps-1", reg.session_id, 2);
    f.intent_id = "intent-b";
    f.intent_version = 7;
    f.flight_id = "flight-b";
    cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
    expect_g2_ack(s, 2, RC_ACK_OK, "");

    Aeroarc__Relay__V1__GetDroneStatusResponse *resp = NULL;
    cr_assert_eq(rc_get_drone_status(ch, "caps-1", &resp, &st, 5000), 0, "%s", st.message);
    const Aeroarc__Relay__V1__DroneStatus *d = resp->drone;
    cr_assert_not_null(d);
    cr_assert_eq(d->n_execution_capabilities, 32);
    for (size_t i = 0; i < 32; i++)
        cr_assert_str_eq(d->execution_capabilities[i], caps[i], "capability %zu", i);
    cr_assert_str_eq(d->intent_id, "intent-b", "the last frame's intent");
    cr_assert_eq(d->intent_version, 7);
    cr_assert_str_eq(d->flight_id, "flight-b");
    aeroarc__relay__v1__get_drone_status_response__free_unpacked(resp, NULL);
    close_ok(s);
}

/* ---- an independent client ---------------------------------------------- */

Test(gen2, the_python_client_streams_generation_2_and_gets_ok_acks)
{
    enum { N = 20 };
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "timeout 60 /usr/bin/python3 %s/tests/integration/gen2_client.py --target %s "
             "--agent py-agent --frames %d --proto-dir %s/proto --timeout 40",
             AERO_SOURCE_DIR, relay.target, N, AERO_SOURCE_DIR);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char line[1024];
    int acks[N + 1] = {0}, ok = 0;
    bool ended_ok = false, registered = false;
    char last[1024] = "";
    while (fgets(line, sizeof(line), p)) {
        snprintf(last, sizeof(last), "%s", line);
        if (strstr(line, "\"event\": \"register\""))
            registered = true;
        if (strstr(line, "\"event\": \"ack\"")) {
            const char *q = strstr(line, "\"seq\": ");
            cr_assert_not_null(q, "%s", line);
            long seq = strtol(q + 7, NULL, 10);
            cr_assert(seq >= 1 && seq <= N, "%s", line);
            acks[seq]++;
            cr_assert_not_null(strstr(line, "\"frame_id\": \"\""), "non-empty frame_id: %s", line);
            if (strstr(line, "\"status\": \"STATUS_OK\""))
                ok++;
        }
        if (strstr(line, "\"event\": \"end\"") && strstr(line, "\"code\": \"OK\""))
            ended_ok = true;
    }
    int status = pclose(p);
    cr_assert(registered, "the Python client did not register: %s", last);
    cr_assert(ended_ok, "the Python client's stream did not end OK: %s", last);
    cr_assert_eq(ok, N, "%d OK acks of %d (last line: %s)", ok, N, last);
    for (int i = 1; i <= N; i++)
        cr_assert_eq(acks[i], 1, "seq %d acked %d times", i, acks[i]);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);

    char *all = sink_text();
    char l[4096], v[64];
    for (int i = 1; i <= N; i++) {
        cr_assert_eq(sink_find(all, "py-agent", (uint64_t)i, l, sizeof(l)), 1, "seq %d", i);
        cr_assert(json_str(l, "protocol", v, sizeof(v)), "%s", l);
        cr_assert_str_eq(v, "multiplexed");
    }
    free(all);
}

/* ---- the tools' --protocol multiplexed ---------------------------------- */

/* Run a tool from the build tree (stderr joined); its exit code, output in out. */
static int run_tool(const char *cmdline, char *out, size_t outlen)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "timeout 60 %s/%s 2>&1", AERO_BINARY_DIR, cmdline);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    cr_assert(WIFEXITED(status), "%s died: %#x", cmdline, status);
    return WEXITSTATUS(status);
}

Test(gen2, aeroarc_client_and_bench_speak_multiplexed)
{
    static char out[65536];
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "aeroarc-client --target %s stream --agent cli-g2 --frames 5 --window 2 "
             "--protocol multiplexed --intent-id intent-c --intent-version 3",
             relay.target);
    int rc = run_tool(cmd, out, sizeof(out));
    cr_assert_eq(rc, 0, "aeroarc-client exited %d:\n%s", rc, out);
    for (int seq = 1; seq <= 5; seq++) {
        char want[96];
        snprintf(want, sizeof(want), "ack seq=%d status=STATUS_OK frame_id= error=\n", seq);
        cr_assert_not_null(strstr(out, want), "no \"%s\" in:\n%s", want, out);
    }
    const char *w = strstr(out, "wal_id=");
    cr_assert_not_null(w, "%s", out);
    char wal[40];
    snprintf(wal, sizeof(wal), "%.36s", w + 7);
    char line[4096];
    sink_line("cli-g2", 5, line, sizeof(line));
    expect_envelope(line, "multiplexed", wal, "intent-c", "3");

    snprintf(cmd, sizeof(cmd),
             "aeroarc-bench --target %s --scenario light --frames 300 --window 10 "
             "--prefix bench-g2 --protocol multiplexed",
             relay.target);
    rc = run_tool(cmd, out, sizeof(out));
    cr_assert_eq(rc, 0, "aeroarc-bench exited %d:\n%s", rc, out);
    cr_assert_not_null(strstr(out, "\"ok\":300,"), "%s", out);
    cr_assert_not_null(strstr(out, "\"protocol\":\"multiplexed\""), "%s", out);
    sink_line("bench-g2-0", 300, line, sizeof(line));
    char v[64];
    cr_assert(json_str(line, "protocol", v, sizeof(v)), "%s", line);
    cr_assert_str_eq(v, "multiplexed");
    cr_assert(json_str(line, "wal_id", v, sizeof(v)), "%s", line);
    cr_assert_eq(strlen(v), 36, "a canonical UUID: %s", v);
}
