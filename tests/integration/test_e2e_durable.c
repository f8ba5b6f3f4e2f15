/*
 * test_e2e_durable.c - ExchangeCommand and ExecuteCommand (SPEC.md section
 * 12) through the real relay binary over gRPC and mTLS. The simulated
 * agent answers as the upstream agent does: it receives the
 * DurableCommand on its generation-2 stream and sends cumulative
 * CommandEvidence snapshots (acknowledged, then applied and observed with
 * delivery_complete), or a rejection, or nothing, or another digest.
 * Commands are built here and digested with core/command_digest.c, whose
 * own golden-vector tests (test_command_digest) pin it to the SPEC.
 */
#include "aeroarc/relay/v1/relay.pb-c.h"
#include "command_digest.h"
#include "control_fixture.h"
#include "harness.h"
#include "http_client.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXCHANGE "/aeroarc.relay.v1.RelayControl/ExchangeCommand"
#define EXECUTE "/aeroarc.relay.v1.RelayControl/ExecuteCommand"
#define SET "/aeroarc.relay.v1.RelayControl/SetOperationContext"
#define AIRCRAFT "/aeroarc.relay.v1.RelayControl/SendAircraftCommand"
#define AGENT_KEY "agents-key-0123456789abcdef"

typedef Aeroarc__Agent__V1__DurableCommand DurableCommand;
typedef Aeroarc__Agent__V1__CommandEvidence CommandEvidence;
typedef Aeroarc__Agent__V1__CommandEvent CommandEvent;

static struct relay_proc relay;
static struct rc_channel *api;    /* the allowed control client */
static struct rc_channel *agents; /* TLS with the agents' bearer key */

/* The relay: [tls], [control] with a mapping file, [auth] bearer and a
 * relay_id unless the suite leaves one out. */
static void start_relay(bool bearer, bool relay_id)
{
    harness_prepare(&relay);
    fixture_pki(&relay);
    fixture_sh(&relay, "printf 'agent operator aircraft\\nagent-b operator aircraft\\n"
                       "agent-c operator aircraft\\nagent-x operator aircraft\\n"
                       "other-op someone-else aircraft\\n' > agents.map && chmod 600 agents.map");
    char body[2048];
    snprintf(body, sizeof(body),
             "%sagent_mappings_file = %%DIR%%/agents.map\n"
             "[sink:archive]\nplugin = sink-file\npath = %%DIR%%/data\n%s",
             FIXTURE_TLS_CONTROL, bearer ? fixture_bearer_keys(&relay, AGENT_KEY) : "");
    relay.http = true;
    harness_write_config(&relay, relay_id ? "relay_id = relay-7\ngen2_hold_s = 0\n"
                                          : "gen2_hold_s = 0\n",
                         body);
    static char ca[400];
    snprintf(ca, sizeof(ca), "%s/ca.pem", relay.dir);
    relay.tls_ca = ca;
    harness_setenv(&relay, "RELAY_ID", NULL);
    relay_start(&relay);
    api = fixture_channel(&relay, "uri", NULL);
    agents = fixture_channel(&relay, NULL, AGENT_KEY);
}

static void start(void) { start_relay(true, true); }

static void stop(void) { fixture_stop(&relay, &api, &agents); }

static double metric(const char *series) { return fixture_metric(&relay, series); }

/* SPEC 12.5: the exchange's one info line, ids first (the request's, empty
 * when it carried none), then definition, result and duration; how many
 * such lines the log holds. */
static int exchange_lines(const char *command_id, const char *attempt_id, const char *agent_id,
                          const char *session_id, const char *definition, const char *result)
{
    char ids[1024], tail[256];
    snprintf(ids, sizeof(ids),
             "durable_command_exchange command_id=%s attempt_id=%s agent_id=%s session_id=%s "
             "definition=",
             command_id, attempt_id, agent_id, session_id);
    snprintf(tail, sizeof(tail), "definition=%s result=%s duration=", definition, result);
    return harness_log_count(&relay, ids, tail, NULL);
}

/* ---- commands ----------------------------------------------------------- */

/* The SPEC 12.3 golden ARM for `agent` (mapped to operator/aircraft). */
struct cmd {
    DurableCommand c;
    Aeroarc__Agent__V1__OperationContext ctx;
    Aeroarc__Agent__V1__MavlinkExecution mav;
    float params[7];
    Aeroarc__Agent__V1__MissionPlan plan;
    Aeroarc__Agent__V1__MissionItem item[2], *items[2];
    char digest[COMMAND_DIGEST_HEX_LEN + 1];
};

static void cmd_arm(struct cmd *m, const char *agent, const char *id)
{
    memset(m, 0, sizeof(*m));
    aeroarc__agent__v1__durable_command__init(&m->c);
    aeroarc__agent__v1__operation_context__init(&m->ctx);
    aeroarc__agent__v1__mavlink_execution__init(&m->mav);
    m->ctx.flight_id = "flight";
    m->ctx.intent_id = "intent";
    m->ctx.intent_version = 1;
    m->ctx.aircraft_id = "aircraft";
    m->params[0] = 1;
    m->mav.command = 400;
    m->mav.n_parameters = 7;
    m->mav.parameters = m->params;
    m->mav.observation = "armed";
    m->mav.vehicle_profile = "arducopter_v1";
    m->c.command_id = (char *)id;
    m->c.operator_id = "operator";
    m->c.aircraft_id = "aircraft";
    m->c.agent_id = (char *)agent;
    m->c.context = &m->ctx;
    m->c.definition = "ARM";
    m->c.definition_version = 1;
    m->c.capability = "mavlink_command_v1";
    m->c.issued_at_unix_ms = 1;
    m->c.expires_at_unix_ms = 30001;
    m->c.recovery_policy = "no_repeat_effect_v1";
    m->c.execution_case = AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION_MAVLINK;
    m->c.mavlink = &m->mav;
}

/* MISSION_START whose precondition mission ends in RTL. */
static void cmd_mission_start_rtl(struct cmd *m, const char *agent, const char *id)
{
    cmd_arm(m, agent, id);
    m->c.definition = "MISSION_START";
    m->mav.command = 300;
    m->params[0] = 0;
    m->mav.observation = "mission_running";
    for (int i = 0; i < 2; i++) {
        aeroarc__agent__v1__mission_item__init(&m->item[i]);
        m->item[i].sequence = (uint32_t)i;
        m->item[i].autocontinue = true;
        m->items[i] = &m->item[i];
    }
    m->item[0].command = 16;
    m->item[0].latitude_e7 = -353632620;
    m->item[0].longitude_e7 = 1491652370;
    m->item[0].altitude_m = 20.1f;
    m->item[1].command = 20;
    aeroarc__agent__v1__mission_plan__init(&m->plan);
    m->plan.schema_version = 1;
    m->plan.n_items = 2;
    m->plan.items = m->items;
    m->mav.mission_precondition = &m->plan;
    m->mav.mission_precondition_id = "mission";
    m->mav.mission_precondition_version = 1;
}

/* Digest it (command_digest_durable must accept it). */
static void cmd_seal(struct cmd *m)
{
    const char *why = NULL;
    cr_assert_eq(command_digest_durable(&m->c, m->digest, &why), 0, "%s", why ? why : "");
    m->c.command_digest = m->digest;
}

static void pack_request(const struct cmd *m, const char *agent, const char *attempt,
                         uint8_t **out, size_t *len)
{
    Aeroarc__Relay__V1__ExchangeCommandRequest req =
        AEROARC__RELAY__V1__EXCHANGE_COMMAND_REQUEST__INIT;
    req.agent_id = (char *)agent;
    req.command = (DurableCommand *)&m->c;
    req.attempt_id = (char *)attempt;
    *len = protobuf_c_message_get_packed_size(&req.base);
    *out = malloc(*len + 1);
    protobuf_c_message_pack(&req.base, *out);
}

static struct call *exchange(const struct cmd *m, const char *agent, const char *attempt,
                             int timeout_ms)
{
    uint8_t *b;
    size_t n;
    pack_request(m, agent, attempt, &b, &n);
    struct call *c = call_start_raw(api, EXCHANGE, b, n, timeout_ms);
    free(b);
    return c;
}

/* ---- the simulated agent ---------------------------------------------- */

static const char *const mav_caps[] = {"mavlink_command_v1"};
static char last_session[256]; /* of the agent opened last */

/* A frame of the agent opened last, for its session. */
static struct rc_frame frame_of(const char *agent, uint64_t seq)
{
    struct rc_frame f = *harness_frame(agent, seq);
    f.session_id = last_session;
    return f;
}

static struct rc_stream *agent_open_caps(const char *agent, const char *const *caps, size_t n)
{
    struct rc_register_result reg;
    struct rc_status st;
    cr_assert_eq(rc_register_caps(agents, agent, "1.0", "test", caps, n, &reg, &st, 5000), 0,
                 "%s", st.message);
    snprintf(last_session, sizeof(last_session), "%s", reg.session_id);
    return fixture_open_gen2(&relay, agents, agent, reg.session_id);
}

static struct rc_stream *agent_open(const char *agent)
{
    return agent_open_caps(agent, mav_caps, 1);
}

static void agent_close(struct rc_stream *s)
{
    rc_stream_cancel(s);
    rc_stream_free(s);
}

/* The next message must be the durable command, byte for byte as sent. */
static void agent_expect_command(struct rc_stream *s, const struct cmd *m)
{
    struct rc_relay_msg msg;
    int rc = rc_stream_recv_gen2(s, &msg, 10000);
    cr_assert_eq(rc, 1, "agent: no message (%d)", rc);
    cr_assert_eq(msg.arm, RC_RELAY_DURABLE_COMMAND, "agent got %s", rc_relay_arm_name(msg.arm));
    size_t n = protobuf_c_message_get_packed_size(&m->c.base);
    uint8_t *want = malloc(n + 1);
    protobuf_c_message_pack(&m->c.base, want);
    /* RelayStreamMessage{6: bytes}: tag, length, then the command. */
    cr_assert_geq(msg.raw_len, n);
    cr_assert_eq(memcmp(msg.raw + msg.raw_len - n, want, n), 0, "the command was altered");
    free(want);
}

/* An ARM command id of agent, sealed, asked (attempt, 10 s) and delivered
 * on s: the call. */
static struct call *exchanged(struct rc_stream *s, struct cmd *m, const char *agent,
                              const char *id, const char *attempt)
{
    cmd_arm(m, agent, id);
    cmd_seal(m);
    struct call *c = exchange(m, agent, attempt, 10000);
    agent_expect_command(s, m);
    return c;
}

/* A snapshot with these stages (events <command_id>/<stage>), optionally
 * delivery_complete, with an unknown field 9 the relay must pass on. */
static void agent_evidence_on(struct rc_stream *s, const char *id, const char *digest,
                              const char *const *stages, size_t n, bool complete)
{
    CommandEvent ev[8], *evp[8];
    char ids[8][128];
    for (size_t i = 0; i < n; i++) {
        aeroarc__agent__v1__command_event__init(&ev[i]);
        snprintf(ids[i], sizeof(ids[i]), "%s/%s", id, stages[i]);
        ev[i].event_id = ids[i];
        ev[i].stage = (char *)stages[i];
        ev[i].occurred_at_unix_ms = 1700000000000 + (int64_t)i;
        ev[i].evidence_source = "agent:test";
        evp[i] = &ev[i];
    }
    CommandEvidence e = AEROARC__AGENT__V1__COMMAND_EVIDENCE__INIT;
    e.command_id = (char *)id;
    e.command_digest = (char *)digest;
    e.n_events = n;
    e.events = evp;
    e.delivery_complete = complete;
    size_t len = protobuf_c_message_get_packed_size(&e.base);
    uint8_t *b = malloc(len + 8);
    protobuf_c_message_pack(&e.base, b);
    memcpy(b + len, "\x48\x2a", 2); /* field 9 varint 42: unknown to the relay */
    cr_assert_eq(rc_stream_send_gen2_arm(s, RC_AGENT_COMMAND_EVIDENCE, b, len + 2, 5000), 0);
    free(b);
}

static void agent_evidence(struct rc_stream *s, const struct cmd *m, const char *const *stages,
                           size_t n, bool complete)
{
    agent_evidence_on(s, m->c.command_id, m->digest, stages, n, complete);
}

/* An authoritative clear, applied: the session is reconciled, so its
 * frames pass the gate (SPEC.md section 9). */
static void reconcile(struct rc_stream *s, const char *agent)
{
    Aeroarc__Agent__V1__ClearOperationContextCommand cmd =
        AEROARC__AGENT__V1__CLEAR_OPERATION_CONTEXT_COMMAND__INIT;
    cmd.command_id = "reconcile";
    cmd.authoritative = true;
    Aeroarc__Relay__V1__ClearOperationContextRequest req =
        AEROARC__RELAY__V1__CLEAR_OPERATION_CONTEXT_REQUEST__INIT;
    req.agent_id = (char *)agent;
    req.command = &cmd;
    struct call *c = call_start(api, "/aeroarc.relay.v1.RelayControl/ClearOperationContext",
                                &req.base, 10000);
    struct rc_relay_msg msg;
    cr_assert_eq(rc_stream_recv_gen2(s, &msg, 10000), 1);
    cr_assert_eq(msg.arm, RC_RELAY_CLEAR_OPERATION_CONTEXT, "got %s", rc_relay_arm_name(msg.arm));
    Aeroarc__Agent__V1__OperationContextCommandAck a =
        AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__INIT;
    a.command_id = "reconcile";
    a.status = AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_APPLIED;
    cr_assert_eq(rc_stream_send_gen2_msg(s, RC_AGENT_OPERATION_CONTEXT_COMMAND_ACK, &a.base, 5000),
                 0);
    expect_status(c, OK, NULL);
}

/* ---- checks on what the API gets ------------------------------------- */

/* The evidence: the agent's n stages, then relay_received and dispatched
 * of this attempt by relay:relay-7; the unknown field kept. */
static void expect_evidence(const uint8_t *resp, size_t len, const struct cmd *m,
                            const char *attempt, const char *const *stages, size_t n)
{
    Aeroarc__Relay__V1__ExchangeCommandResponse *r =
        aeroarc__relay__v1__exchange_command_response__unpack(NULL, len, resp);
    cr_assert_not_null(r);
    CommandEvidence *e = r->evidence;
    cr_assert_not_null(e);
    cr_assert_str_eq(e->command_id, m->c.command_id);
    cr_assert_str_eq(e->command_digest, m->digest);
    cr_assert_eq(e->n_events, n + 2);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(e->events[i]->stage, stages[i]);
    static const char *const relay_stage[] = {"relay_received", "dispatched"};
    static const char *const relay_msg[] = {"Relay admitted delivery attempt",
                                            "command handed to bound Agent stream"};
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    for (size_t i = 0; i < 2; i++) {
        const CommandEvent *ev = e->events[n + i];
        char want[1024];
        snprintf(want, sizeof(want), "%s/%s", attempt, relay_stage[i]);
        cr_assert_str_eq(ev->event_id, want);
        cr_assert_str_eq(ev->stage, relay_stage[i]);
        cr_assert_str_eq(ev->message, relay_msg[i]);
        cr_assert_str_eq(ev->evidence_source, "relay:relay-7");
        cr_assert_eq(ev->protocol_result, 0); /* and absent: the relay never sets it */
        cr_assert(ev->occurred_at_unix_ms > now_ms - 60000 &&
                      ev->occurred_at_unix_ms < now_ms + 60000,
                  "occurred_at %lld", (long long)ev->occurred_at_unix_ms);
    }
    cr_assert_leq(e->events[n]->occurred_at_unix_ms, e->events[n + 1]->occurred_at_unix_ms);
    cr_assert_eq(e->base.n_unknown_fields, 1, "the agent's unknown field was not passed on");
    aeroarc__relay__v1__exchange_command_response__free_unpacked(r, NULL);
}

static const char *const ack_stage[] = {"acknowledged"};
static const char *const done_stages[] = {"acknowledged", "applied", "observed"};

/* ---- ExchangeCommand ----------------------------------------------------- */

TestSuite(durable, .init = start, .fini = stop, .timeout = 120);

Test(durable, arm_first_snapshot_with_relay_events)
{
    struct rc_stream *s = agent_open("agent");
    struct cmd m;
    cmd_arm(&m, "agent", "cmd-1");
    cmd_seal(&m);
    cr_assert_str_eq(m.digest, "c99fff59b84a620116941115acd3e13737c306dec5a431dd4d25e60462d6f6bc");
    struct call *c = exchange(&m, "agent", "cmd-1/attempt-1", 10000);
    agent_expect_command(s, &m);
    agent_evidence(s, &m, ack_stage, 1, false);
    call_join(c);
    cr_assert_eq(c->st.code, OK, "%s", c->st.message);
    expect_evidence(c->resp, c->resp_len, &m, "cmd-1/attempt-1", ack_stage, 1);
    call_free(c);
    cr_assert_eq(metric("aero_relay_commands_total{kind=\"durable\",result=\"ok\"}"), 1);
    cr_assert_eq(metric("aero_relay_command_duration_seconds_count{kind=\"durable\"}"), 1);
    /* One info line, written before the answer; the command is never
     * logged (its vehicle profile is in no other message). */
    cr_assert_eq(exchange_lines("cmd-1", "cmd-1/attempt-1", "agent", last_session, "ARM", "ok"), 1);
    cr_assert_eq(harness_log_count(&relay, "arducopter_v1", NULL), 0);

    /* A retry with a new attempt id is delivered again, never cached. */
    c = exchange(&m, "agent", "cmd-1/attempt-2", 10000);
    agent_expect_command(s, &m);
    agent_evidence(s, &m, done_stages, 3, true);
    call_join(c);
    cr_assert_eq(c->st.code, OK, "%s", c->st.message);
    expect_evidence(c->resp, c->resp_len, &m, "cmd-1/attempt-2", done_stages, 3);
    call_free(c);

    /* The API's attempt ids have no length limit: the relay's event ids
     * carry a long one whole. */
    char attempt[700];
    memset(attempt, 'x', sizeof(attempt) - 1);
    attempt[sizeof(attempt) - 1] = '\0';
    memcpy(attempt, "cmd-1/", 6);
    c = exchange(&m, "agent", attempt, 10000);
    agent_expect_command(s, &m);
    agent_evidence(s, &m, ack_stage, 1, false);
    call_join(c);
    cr_assert_eq(c->st.code, OK, "%s", c->st.message);
    expect_evidence(c->resp, c->resp_len, &m, attempt, ack_stage, 1);
    call_free(c);
    agent_close(s);
}

Test(durable, identity_refusals)
{
    struct rc_stream *s = agent_open("agent");
    struct cmd m;
    cmd_arm(&m, "agent", "cmd-2");
    cmd_seal(&m);
    /* Another digest than the command's. */
    char bad[65];
    memcpy(bad, m.digest, sizeof(bad));
    bad[0] = bad[0] == 'a' ? 'b' : 'a';
    m.c.command_digest = bad;
    expect_status(exchange(&m, "agent", "a/1", 5000), INVALID_ARGUMENT,
                  "invalid command identity");
    m.c.command_digest = m.digest;
    expect_status(exchange(&m, "agent", "", 5000), INVALID_ARGUMENT, "invalid command identity");
    /* An attempt id that is not UTF-8 (SPEC.md 12.8: undecodable). */
    expect_status(exchange(&m, "agent", "a/\xff", 5000), INVALID_ARGUMENT,
                  "invalid command identity");
    expect_status(exchange(&m, "agent-b", "a/1", 5000), INVALID_ARGUMENT,
                  "invalid command identity");
    /* A rule of 12.3 broken (expiry more than 300 s after issue). */
    m.c.expires_at_unix_ms = 400000; /* the digest is the valid one's */
    expect_status(exchange(&m, "agent", "a/1", 5000), INVALID_ARGUMENT,
                  "invalid command identity");
    /* A request that does not decode (field 2 as a varint). */
    static const uint8_t garbage[] = {0x0a, 0x05, 'a', 'g', 'e', 'n', 't', 0x10, 0x01};
    expect_status(call_start_raw(api, EXCHANGE, garbage, sizeof(garbage), 5000),
                  INVALID_ARGUMENT, "invalid command identity");
    /* The mapping binds agent-b to operator/aircraft, not other-op. */
    cmd_arm(&m, "other-op", "cmd-3");
    cmd_seal(&m);
    expect_status(exchange(&m, "other-op", "a/1", 5000), PERMISSION_DENIED,
                  "target binding mismatch");
    /* Mapped, but no session. */
    cmd_arm(&m, "agent-x", "cmd-4");
    cmd_seal(&m);
    expect_status(exchange(&m, "agent-x", "a/1", 5000), UNAVAILABLE, "agent offline");
    /* Every refusal has its line too, with the ids the request carried. */
    cr_assert_eq(exchange_lines("cmd-2", "a/1", "agent", "", "ARM", "INVALID_ARGUMENT"), 2);
    cr_assert_eq(exchange_lines("cmd-2", "", "agent", "", "ARM", "INVALID_ARGUMENT"), 1);
    cr_assert_eq(exchange_lines("cmd-2", "a/1", "agent-b", "", "ARM", "INVALID_ARGUMENT"), 1);
    cr_assert_eq(exchange_lines("", "", "agent", "", "", "INVALID_ARGUMENT"), 1); /* no command */
    cr_assert_eq(exchange_lines("cmd-3", "a/1", "other-op", "", "ARM", "PERMISSION_DENIED"), 1);
    cr_assert_eq(exchange_lines("cmd-4", "a/1", "agent-x", "", "ARM", "UNAVAILABLE"), 1);
    cr_assert_eq(harness_log_count(&relay, "durable_command_exchange ", NULL), 8);
    agent_close(s);
}

Test(durable, session_gates)
{
    /* No mavlink_command_v1. */
    static const char *const none[] = {"something_else"};
    struct rc_stream *s = agent_open_caps("agent-b", none, 1);
    struct cmd m;
    cmd_arm(&m, "agent-b", "cmd-5");
    cmd_seal(&m);
    expect_status(exchange(&m, "agent-b", "a/1", 5000), FAILED_PRECONDITION,
                  "Agent execution capability unavailable");
    agent_close(s);

    /* A MISSION_START whose mission ends in RTL needs mission_rtl_v1. */
    s = agent_open("agent-b");
    cmd_mission_start_rtl(&m, "agent-b", "cmd-6");
    cmd_seal(&m);
    expect_status(exchange(&m, "agent-b", "a/1", 5000), FAILED_PRECONDITION,
                  "Agent must advertise mission_rtl_v1 before receiving an RTL mission");
    agent_close(s);
    static const char *const rtl[] = {"mavlink_command_v1", "mission_rtl_v1"};
    s = agent_open_caps("agent-b", rtl, 2);
    struct call *c = exchange(&m, "agent-b", "a/2", 10000);
    agent_expect_command(s, &m);
    agent_evidence(s, &m, ack_stage, 1, false);
    expect_status(c, OK, NULL);
    agent_close(s);

    /* Registered, no stream. */
    struct rc_register_result reg;
    struct rc_status st;
    cr_assert_eq(rc_register_caps(agents, "agent-c", "1", "t", mav_caps, 1, &reg, &st, 5000), 0);
    cmd_arm(&m, "agent-c", "cmd-7");
    cmd_seal(&m);
    expect_status(exchange(&m, "agent-c", "a/1", 5000), NOT_FOUND,
                  "agent stream is not connected");
}

Test(durable, id_namespace_and_digest_binding)
{
    struct rc_stream *s = agent_open("agent");
    struct cmd m;
    struct call *c = exchanged(s, &m, "agent", "cmd-8", "cmd-8/attempt-1");
    agent_evidence(s, &m, ack_stage, 1, false);
    expect_status(c, OK, NULL);
    /* The same id, another command. */
    struct cmd other;
    cmd_arm(&other, "agent", "cmd-8");
    other.c.definition = "DISARM";
    other.params[0] = 0;
    other.mav.observation = "disarmed";
    cmd_seal(&other);
    expect_status(exchange(&other, "agent", "cmd-8/attempt-2", 5000), ALREADY_EXISTS,
                  "durable command ID has a different digest");
    agent_close(s);
}

Test(durable, evidence_rules)
{
    struct rc_stream *other = agent_open("agent-b");
    struct rc_stream *s = agent_open("agent");
    reconcile(s, "agent");
    struct cmd m;
    cmd_arm(&m, "agent", "cmd-9");
    cmd_seal(&m);
    double ignored = metric("aero_relay_stream_messages_ignored_total{payload=\"command_evidence\"}");
    struct call *c = exchange(&m, "agent", "cmd-9/attempt-1", 10000);
    agent_expect_command(s, &m);
    /* Evidence on another stream is nobody's. */
    agent_evidence(other, &m, ack_stage, 1, false);
    for (int i = 0; i < 100 &&
                    metric("aero_relay_stream_messages_ignored_total{payload=\"command_evidence\"}") ==
                        ignored;
         i++)
        nanosleep(&(struct timespec){0, 20000000}, NULL);
    cr_assert_eq(metric("aero_relay_stream_messages_ignored_total{payload=\"command_evidence\"}"),
                 ignored + 1);
    cr_assert_eq(__atomic_load_n(&c->done, __ATOMIC_ACQUIRE), 0, "answered from another stream");
    /* Ingest goes on while the command waits. */
    struct rc_frame f = frame_of("agent", 1);
    cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
    struct rc_relay_msg msg;
    cr_assert_eq(rc_stream_recv_gen2(s, &msg, 10000), 1);
    cr_assert_eq(msg.arm, RC_RELAY_TELEMETRY_ACK);
    cr_assert_eq(msg.ack.status, RC_ACK_OK, "%s", msg.ack.error);
    /* A snapshot of another digest ends the call. */
    agent_evidence_on(s, "cmd-9", "0000000000000000000000000000000000000000000000000000000000000000",
                      ack_stage, 1, false);
    expect_status(c, DATA_LOSS, "command digest mismatch");
    agent_close(other);
    agent_close(s);
}

/* SPEC.md 12.7 reading 6: field 2 twice merges, and the relay forwards
 * the bytes it received: both occurrences, in order. The second repeats
 * agent_id (field 5, last wins), so the merged command, and its digest,
 * are the first's. */
Test(durable, repeated_command_field_forwarded_as_received)
{
    struct rc_stream *s = agent_open("agent");
    struct cmd m;
    cmd_arm(&m, "agent", "cmd-15");
    cmd_seal(&m);
    uint8_t *b;
    size_t n;
    pack_request(&m, "agent", "cmd-15/attempt-1", &b, &n);
    static const uint8_t extra[] = {0x12, 0x07, 0x2a, 0x05, 'a', 'g', 'e', 'n', 't'};
    uint8_t *req = malloc(n + sizeof(extra));
    memcpy(req, b, n);
    memcpy(req + n, extra, sizeof(extra));
    struct call *c = call_start_raw(api, EXCHANGE, req, n + sizeof(extra), 10000);
    free(req);
    free(b);
    struct rc_relay_msg msg;
    if (rc_stream_recv_gen2(s, &msg, 10000) != 1) {
        call_join(c);
        cr_assert_fail("no command; the call: %d %s", c->st.code, c->st.message);
    }
    cr_assert_eq(msg.arm, RC_RELAY_DURABLE_COMMAND, "agent got %s", rc_relay_arm_name(msg.arm));
    size_t cn = protobuf_c_message_get_packed_size(&m.c.base);
    uint8_t *want = malloc(cn + sizeof(extra));
    protobuf_c_message_pack(&m.c.base, want);
    memcpy(want + cn, extra + 2, sizeof(extra) - 2);
    size_t wn = cn + sizeof(extra) - 2;
    cr_assert_geq(msg.raw_len, wn);
    cr_assert_eq(memcmp(msg.raw + msg.raw_len - wn, want, wn), 0, "not the bytes received");
    free(want);
    agent_evidence(s, &m, ack_stage, 1, false);
    expect_status(c, OK, NULL);
    agent_close(s);
}

/* The digest is compared byte for byte as a parser reads it: the right
 * digest, then field 2 again with a NUL byte and more after it (the last
 * occurrence wins), is another digest. */
Test(durable, evidence_digest_is_byte_exact)
{
    struct rc_stream *s = agent_open("agent");
    struct cmd m;
    struct call *c = exchanged(s, &m, "agent", "cmd-13", "cmd-13/attempt-1");
    CommandEvidence e = AEROARC__AGENT__V1__COMMAND_EVIDENCE__INIT;
    e.command_id = "cmd-13";
    e.command_digest = m.digest;
    size_t len = protobuf_c_message_get_packed_size(&e.base);
    uint8_t b[256];
    protobuf_c_message_pack(&e.base, b);
    b[len++] = 0x12; /* field 2, length-delimited */
    b[len++] = 66;
    memcpy(b + len, m.digest, 64);
    memcpy(b + len + 64, "\0x", 2);
    len += 66;
    cr_assert_eq(rc_stream_send_gen2_arm(s, RC_AGENT_COMMAND_EVIDENCE, b, len, 5000), 0);
    expect_status(c, DATA_LOSS, "command digest mismatch");
    agent_close(s);
}

Test(durable, stream_loss_and_deadline)
{
    struct rc_stream *s = agent_open("agent");
    struct cmd m;
    struct call *c = exchanged(s, &m, "agent", "cmd-10", "cmd-10/attempt-1");
    agent_close(s);
    expect_status(c, ABORTED, "Agent session or stream ended; reconcile the same command identity");

    /* The caller's deadline: DEADLINE_EXCEEDED, and the slot is free for
     * the next one at once. */
    s = agent_open("agent");
    c = exchange(&m, "agent", "cmd-10/attempt-2", 2500);
    agent_expect_command(s, &m);
    expect_status(c, DEADLINE, NULL);
    c = exchange(&m, "agent", "cmd-10/attempt-3", 10000);
    agent_expect_command(s, &m);
    agent_evidence(s, &m, ack_stage, 1, false);
    expect_status(c, OK, NULL);
    agent_close(s);
}

Test(durable, slot_shared_with_set_context)
{
    struct rc_stream *s = agent_open("agent");
    reconcile(s, "agent");
    struct cmd m;
    struct call *c = exchanged(s, &m, "agent", "cmd-11", "cmd-11/attempt-1");
    /* A Set waits for the slot until the first snapshot. */
    Aeroarc__Agent__V1__OperationContext oc = AEROARC__AGENT__V1__OPERATION_CONTEXT__INIT;
    oc.flight_id = "flight";
    oc.intent_id = "intent";
    oc.intent_version = 1;
    oc.aircraft_id = "aircraft";
    Aeroarc__Agent__V1__SetOperationContextCommand set =
        AEROARC__AGENT__V1__SET_OPERATION_CONTEXT_COMMAND__INIT;
    set.command_id = "ctx-1";
    set.context = &oc;
    Aeroarc__Relay__V1__SetOperationContextRequest req =
        AEROARC__RELAY__V1__SET_OPERATION_CONTEXT_REQUEST__INIT;
    req.agent_id = "agent";
    req.command = &set;
    struct call *sc = call_start(api, SET, &req.base, 10000);
    /* Nothing but the ack of a frame reaches the agent meanwhile. */
    struct rc_frame f = frame_of("agent", 1);
    cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
    struct rc_relay_msg msg;
    cr_assert_eq(rc_stream_recv_gen2(s, &msg, 10000), 1);
    cr_assert_eq(msg.arm, RC_RELAY_TELEMETRY_ACK, "got %s", rc_relay_arm_name(msg.arm));
    agent_evidence(s, &m, ack_stage, 1, false);
    expect_status(c, OK, NULL);
    cr_assert_eq(rc_stream_recv_gen2(s, &msg, 10000), 1);
    cr_assert_eq(msg.arm, RC_RELAY_SET_OPERATION_CONTEXT, "got %s", rc_relay_arm_name(msg.arm));
    /* The Set id is its kind's: a durable command may not take it. */
    Aeroarc__Agent__V1__OperationContextCommandAck a =
        AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__INIT;
    a.command_id = "ctx-1";
    a.status = AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_APPLIED;
    a.active_context = &oc;
    cr_assert_eq(rc_stream_send_gen2_msg(s, RC_AGENT_OPERATION_CONTEXT_COMMAND_ACK, &a.base, 5000),
                 0);
    expect_status(sc, OK, NULL);
    cmd_arm(&m, "agent", "ctx-1");
    cmd_seal(&m);
    expect_status(exchange(&m, "agent", "x/1", 5000), ALREADY_EXISTS,
                  "command ID was already used by a different command kind");
    /* And the other way: a Set may not take a durable command's id. */
    set.command_id = "cmd-11";
    expect_status(call_start(api, SET, &req.base, 5000), ALREADY_EXISTS,
                  "command ID was already used by a different command kind");
    agent_close(s);
}

/* "agent" registered with mavlink_command_v1 on a slow channel, its
 * stream's window filled (fixture_fill_window). */
static struct rc_stream *slow_agent_open(struct rc_channel **ch)
{
    *ch = fixture_slow_channel(&relay, AGENT_KEY, 65535);
    struct rc_register_result reg;
    struct rc_status st;
    cr_assert_eq(rc_register_caps(*ch, "agent", "1.0", "test", mav_caps, 1, &reg, &st, 5000), 0,
                 "%s", st.message);
    snprintf(last_session, sizeof(last_session), "%s", reg.session_id);
    struct rc_stream *s = fixture_open_gen2(&relay, *ch, "agent", reg.session_id);
    fixture_fill_window(s, "agent", last_session);
    return s;
}

/* SPEC.md 12.2 rule 13: the command waits behind the slow agent's acks,
 * and at the deadline both the call and the agent stream end
 * DEADLINE_EXCEEDED. */
Test(durable, write_blocked_past_deadline_ends_the_agent_stream)
{
    struct rc_channel *slow;
    struct rc_stream *s = slow_agent_open(&slow);
    struct cmd m;
    cmd_arm(&m, "agent", "cmd-14");
    cmd_seal(&m);
    /* The caller's own deadline is the relay's bound too: its gRPC may
     * report it first, so the text is checked on the agent's side. */
    expect_status(exchange(&m, "agent", "cmd-14/attempt-1", 1500), DEADLINE, NULL);
    struct rc_status st;
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    cr_assert_eq(st.code, DEADLINE, "agent stream: %d %s", st.code, st.message);
    cr_assert_str_eq(st.message, "Agent stream write exceeded command deadline");
    rc_stream_free(s);
    rc_close(slow);
}

/* SPEC.md section 10: only the table's 4096 per kind bound commands. A
 * burst of SendAircraftCommand to an agent whose stream holds them all
 * queued: every one waits for the agent, none is refused for the queue. */
Test(durable, commands_queued_on_a_stream_are_bounded_by_the_table_only)
{
    struct rc_channel *slow;
    struct rc_stream *s = slow_agent_open(&slow);
    enum { N = 24 }; /* more than a stream queues of anything else (16) */
    struct call *c[N];
    char ids[N][32];
    for (int i = 0; i < N; i++) {
        Aeroarc__Agent__V1__AircraftCommand cmd = AEROARC__AGENT__V1__AIRCRAFT_COMMAND__INIT;
        snprintf(ids[i], sizeof(ids[i]), "burst-%d", i);
        cmd.command_id = ids[i];
        cmd.aircraft_id = "aircraft";
        cmd.type = AEROARC__AGENT__V1__AIRCRAFT_COMMAND_TYPE__AIRCRAFT_COMMAND_TYPE_ARM;
        Aeroarc__Relay__V1__SendAircraftCommandRequest req =
            AEROARC__RELAY__V1__SEND_AIRCRAFT_COMMAND_REQUEST__INIT;
        req.agent_id = "agent";
        req.command = &cmd;
        c[i] = call_start(api, AIRCRAFT, &req.base, 3000);
    }
    for (int i = 0; i < N; i++)
        expect_status(c[i], DEADLINE, NULL);
    rc_stream_cancel(s);
    rc_stream_free(s);
    rc_close(slow);
}

/* ---- ExecuteCommand ------------------------------------------------------ */

/* Open ExecuteCommand with the request sent and half-closed. */
static struct rc_stream *execute(const struct cmd *m, const char *agent, const char *attempt,
                                 int timeout_ms)
{
    struct rc_status st;
    struct rc_stream *x = rc_stream_open_method(api, EXECUTE, timeout_ms, &st);
    cr_assert_not_null(x, "%s", st.message);
    uint8_t *b;
    size_t n;
    pack_request(m, agent, attempt, &b, &n);
    cr_assert_eq(rc_stream_send(x, b, n, 5000), 0);
    free(b);
    cr_assert_eq(rc_stream_close_send(x, 5000), 0);
    return x;
}

Test(durable, execute_streams_until_complete)
{
    struct rc_stream *s = agent_open("agent");
    struct cmd m;
    cmd_arm(&m, "agent", "cmd-12");
    cmd_seal(&m);
    struct rc_stream *x = execute(&m, "agent", "cmd-12/attempt-1", 20000);
    agent_expect_command(s, &m);
    agent_evidence(s, &m, ack_stage, 1, false);
    const uint8_t *r;
    size_t n;
    cr_assert_eq(rc_stream_recv_raw(x, &r, &n, 10000), 1);
    expect_evidence(r, n, &m, "cmd-12/attempt-1", ack_stage, 1);
    agent_evidence(s, &m, done_stages, 3, false); /* applied + observed: complete */
    cr_assert_eq(rc_stream_recv_raw(x, &r, &n, 10000), 1);
    expect_evidence(r, n, &m, "cmd-12/attempt-1", done_stages, 3);
    cr_assert_eq(rc_stream_recv_raw(x, &r, &n, 10000), 0);
    struct rc_status fin;
    cr_assert_eq(rc_stream_finish(x, &fin, 10000), 0);
    cr_assert_eq(fin.code, OK, "%s", fin.message);
    rc_stream_free(x);
    cr_assert_eq(metric("aero_relay_commands_total{kind=\"durable\",result=\"complete\"}"), 1);
    cr_assert_eq(
        exchange_lines("cmd-12", "cmd-12/attempt-1", "agent", last_session, "ARM", "complete"), 1);
    struct rc_status st;

    /* While an ExecuteCommand past its first snapshot still streams, the
     * same id is refused (rule 12). */
    x = execute(&m, "agent", "cmd-12/attempt-4", 20000);
    agent_expect_command(s, &m);
    agent_evidence(s, &m, ack_stage, 1, false);
    cr_assert_eq(rc_stream_recv_raw(x, &r, &n, 10000), 1);
    expect_status(exchange(&m, "agent", "cmd-12/attempt-5", 5000), ABORTED,
                  "command evidence stream already active");
    agent_evidence(s, &m, done_stages, 3, true);
    cr_assert_eq(rc_stream_recv_raw(x, &r, &n, 10000), 1);
    cr_assert_eq(rc_stream_recv_raw(x, &r, &n, 10000), 0);
    cr_assert_eq(rc_stream_finish(x, &st, 10000), 0);
    cr_assert_eq(st.code, OK, "%s", st.message);
    rc_stream_free(x);

    /* A rejection is complete too; a refusal ends the stream with its code. */
    x = execute(&m, "agent", "cmd-12/attempt-2", 20000);
    agent_expect_command(s, &m);
    static const char *const rejected[] = {"rejected"};
    agent_evidence(s, &m, rejected, 1, false);
    cr_assert_eq(rc_stream_recv_raw(x, &r, &n, 10000), 1);
    cr_assert_eq(rc_stream_recv_raw(x, &r, &n, 10000), 0);
    cr_assert_eq(rc_stream_finish(x, &st, 10000), 0);
    cr_assert_eq(st.code, OK, "%s", st.message);
    rc_stream_free(x);
    x = execute(&m, "agent-b", "cmd-12/attempt-3", 20000);
    cr_assert_eq(rc_stream_finish(x, &st, 10000), 0);
    cr_assert_eq(st.code, INVALID_ARGUMENT);
    cr_assert_str_eq(st.message, "invalid command identity");
    rc_stream_free(x);
    agent_close(s);
}

/* ---- relay-wide preconditions -------------------------------------------- */

static void start_no_bearer(void) { start_relay(false, true); }
static void start_no_relay_id(void) { start_relay(true, false); }

TestSuite(durable_off, .fini = stop, .timeout = 120);

Test(durable_off, needs_agent_authentication, .init = start_no_bearer)
{
    struct cmd m;
    cmd_arm(&m, "agent", "cmd-1");
    cmd_seal(&m);
    expect_status(exchange(&m, "agent", "a/1", 5000), FAILED_PRECONDITION,
                  "durable C2 requires authenticated Agent registration");
    cr_assert_eq(exchange_lines("cmd-1", "a/1", "agent", "", "ARM", "FAILED_PRECONDITION"), 1);
}

Test(durable_off, needs_stable_relay_id, .init = start_no_relay_id)
{
    struct cmd m;
    cmd_arm(&m, "agent", "cmd-1");
    cmd_seal(&m);
    expect_status(exchange(&m, "agent", "a/1", 5000), FAILED_PRECONDITION,
                  "durable C2 requires a stable Relay identity");
}

/* ---- SIGHUP: mappings and control identities read again ---------------- */

Test(durable, sighup_reads_mappings_and_identities_again)
{
    struct rc_stream *s = agent_open("agent-b");
    struct cmd m;
    struct call *c = exchanged(s, &m, "agent-b", "cmd-r1", "r/1");
    agent_evidence(s, &m, ack_stage, 1, false);
    expect_status(c, OK, NULL);

    /* agent-b now belongs to another operator; the API's URI identity is
     * no longer allowed, its DNS one still is. */
    fixture_sh(&relay, "printf 'agent-b someone-else aircraft\\n' > agents.map.new && "
                       "chmod 600 agents.map.new && mv agents.map.new agents.map && "
                       "sed -i 's|allowed_identities = .*|allowed_identities = api.aero.test|' "
                       "relay.ini");
    cr_assert_eq(kill(relay.pid, SIGHUP), 0);
    cr_assert(fixture_metric_reaches(&relay, "aero_relay_config_reloads_total{result=\"ok\"}", 1,
                                     10000),
              "the reload was not counted");
    expect_status(exchange(&m, "agent-b", "r/2", 5000), PERMISSION_DENIED,
                  "client certificate identity is not allowed to control agents");
    struct rc_channel *dns = fixture_channel(&relay, "dns", NULL);
    struct rc_channel *saved = api;
    api = dns;
    expect_status(exchange(&m, "agent-b", "r/3", 5000), PERMISSION_DENIED,
                  "target binding mismatch");
    api = saved;
    rc_close(dns);
    agent_close(s);
}
