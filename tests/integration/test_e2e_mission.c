/*
 * test_e2e_mission.c - DeployMission (SPEC.md section 14) through the real
 * relay binary over gRPC and mTLS. The simulated agent answers as the
 * upstream agent does: it receives deploy_mission (RelayStreamMessage arm
 * 5) and sends a MissionDeploymentResult (AgentStreamMessage arm 4):
 * APPLIED with the readback digest and item count, TEMPORARY_ERROR,
 * REJECTED, BINDING_MISMATCH, a bad one, none, a late one, or one on
 * another stream. Every 14.3 text is unit-tested in test_command_digest;
 * here each refusal path of 14.2 is exercised once.
 */
#include "aeroarc/relay/v1/relay.pb-c.h"
#include "command_digest.h"
#include "control_fixture.h"
#include "harness.h"
#include "http_client.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEPLOY "/aeroarc.relay.v1.RelayControl/DeployMission"
#define SET "/aeroarc.relay.v1.RelayControl/SetOperationContext"
#define PLAN_DIGEST "6efa96b36af29a800d53ee7d7baf57d4b24f00d9ce2b408327281e74824acf4f"

typedef Aeroarc__Agent__V1__DeployMissionCommand DeployMissionCommand;
typedef Aeroarc__Agent__V1__MissionDeploymentResult MissionResult;
#define ST(x) AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__STATUS__STATUS_##x

static struct relay_proc relay;
static struct rc_channel *api;    /* the allowed control client */
static struct rc_channel *agents; /* TLS, no agent authentication */

static void start(void)
{
    harness_prepare(&relay);
    fixture_pki(&relay);
    fixture_sh(&relay, "printf 'agent operator aircraft\\nagent-b operator aircraft\\n"
                       "other someone-else aircraft\\n' > agents.map && "
                       "chmod 600 agents.map");
    relay.http = true;
    harness_write_config(&relay, "gen2_hold_s = 0\n",
                         FIXTURE_TLS_CONTROL "agent_mappings_file = %DIR%/agents.map\n"
                                             "[sink:archive]\nplugin = sink-file\n"
                                             "path = %DIR%/data\n");
    static char ca[400];
    snprintf(ca, sizeof(ca), "%s/ca.pem", relay.dir);
    relay.tls_ca = ca;
    relay_start(&relay);
    api = fixture_channel(&relay, "uri", NULL);
    agents = fixture_channel(&relay, NULL, NULL);
}

static void stop(void) { fixture_stop(&relay, &api, &agents); }

static double metric(const char *series) { return fixture_metric(&relay, series); }

struct metric_at {
    const char *series;
    double want;
};

static bool metric_is(void *arg)
{
    const struct metric_at *m = arg;
    return metric(m->series) == m->want;
}

/* Poll until `series` reads `want` (10 s at most). */
static void wait_metric(const char *series, double want)
{
    struct metric_at at = {series, want};
    cr_assert(harness_wait_for(metric_is, &at, 10000), "%s: %f, want %f", series, metric(series),
              want);
}

/* ---- the mission: 12.3's golden plan, bound to agent's context ---------- */

struct mission {
    DeployMissionCommand c;
    Aeroarc__Agent__V1__MissionBinding b;
    Aeroarc__Agent__V1__MissionPlan plan;
    Aeroarc__Agent__V1__MissionItem item, *items[1];
};

static void mission(struct mission *m, const char *id)
{
    memset(m, 0, sizeof(*m));
    aeroarc__agent__v1__mission_item__init(&m->item);
    m->item.command = 16;
    m->item.autocontinue = true;
    m->item.latitude_e7 = -353632620;
    m->item.longitude_e7 = 1491652370;
    m->item.altitude_m = 20.1f;
    m->items[0] = &m->item;
    aeroarc__agent__v1__mission_plan__init(&m->plan);
    m->plan.schema_version = 1;
    m->plan.n_items = 1;
    m->plan.items = m->items;
    aeroarc__agent__v1__mission_binding__init(&m->b);
    m->b.mission_id = "mission";
    m->b.mission_version = 1;
    m->b.mission_digest = PLAN_DIGEST;
    m->b.deployment_id = "deployment";
    m->b.operator_id = "operator";
    m->b.aircraft_id = "aircraft";
    m->b.flight_id = "flight";
    m->b.intent_id = "intent";
    m->b.intent_version = 1;
    aeroarc__agent__v1__deploy_mission_command__init(&m->c);
    m->c.command_id = (char *)id;
    m->c.binding = &m->b;
    m->c.plan = &m->plan;
    m->c.issued_at_unix_ms = (int64_t)time(NULL) * 1000;
    m->c.expires_at_unix_ms = m->c.issued_at_unix_ms + 120000;
}

static struct call *deploy(const struct mission *m, const char *agent, int timeout_ms)
{
    Aeroarc__Relay__V1__DeployMissionRequest req = AEROARC__RELAY__V1__DEPLOY_MISSION_REQUEST__INIT;
    req.agent_id = (char *)agent;
    req.command = (DeployMissionCommand *)&m->c;
    return call_start(api, DEPLOY, &req.base, timeout_ms);
}

/* ---- the simulated agent ---------------------------------------------- */

static char last_session[256];

static struct rc_stream *agent_open_caps(const char *agent, const char *const *caps, size_t n)
{
    struct rc_register_result reg;
    struct rc_status st;
    cr_assert_eq(rc_register_caps(agents, agent, "1.0", "test", caps, n, &reg, &st, 5000), 0,
                 "%s", st.message);
    snprintf(last_session, sizeof(last_session), "%s", reg.session_id);
    return fixture_open_gen2(&relay, agents, agent, reg.session_id);
}

static struct rc_stream *agent_open(const char *agent) { return agent_open_caps(agent, NULL, 0); }

static void agent_close(struct rc_stream *s)
{
    rc_stream_cancel(s);
    rc_stream_free(s);
}

/* The next message is arm `arm`. */
static void agent_expect(struct rc_stream *s, int arm)
{
    struct rc_relay_msg msg;
    int rc = rc_stream_recv_gen2(s, &msg, 10000);
    cr_assert_eq(rc, 1, "agent: no message (%d)", rc);
    cr_assert_eq(msg.arm, arm, "agent got %s", rc_relay_arm_name(msg.arm));
}

/* The next message must be the mission, as the API sent it. */
static void agent_expect_mission(struct rc_stream *s, const struct mission *m)
{
    struct rc_relay_msg msg;
    int rc = rc_stream_recv_gen2(s, &msg, 10000);
    cr_assert_eq(rc, 1, "agent: no message (%d)", rc);
    cr_assert_eq(msg.arm, RC_RELAY_DEPLOY_MISSION, "agent got %s", rc_relay_arm_name(msg.arm));
    size_t n = protobuf_c_message_get_packed_size(&m->c.base);
    uint8_t *want = malloc(n + 1);
    protobuf_c_message_pack(&m->c.base, want);
    cr_assert_geq(msg.raw_len, n);
    cr_assert_eq(memcmp(msg.raw + msg.raw_len - n, want, n), 0, "the mission was altered");
    free(want);
}

/* Nothing was sent to the agent: a frame's ack is the next message. */
static void agent_expect_nothing(struct rc_stream *s, const char *agent, uint64_t seq)
{
    struct rc_frame f = *harness_frame(agent, seq);
    f.session_id = last_session;
    cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
    agent_expect(s, RC_RELAY_TELEMETRY_ACK);
}

/* A result as the upstream agent makes it: the command's binding, the
 * readback digest and count for APPLIED. */
static void agent_result(struct rc_stream *s, const struct mission *m, int status,
                         uint32_t count)
{
    MissionResult r = AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__INIT;
    r.command_id = m->c.command_id;
    r.binding = (Aeroarc__Agent__V1__MissionBinding *)&m->b;
    r.status = status;
    r.message = "agent says";
    r.uploaded_item_count = count;
    r.onboard_mission_digest = status == ST(APPLIED) || status == ST(ALREADY_APPLIED)
                                   ? PLAN_DIGEST : "";
    r.mavlink_mission_ack_type = 1; /* passed on, not checked */
    r.completed_at_unix_ms = 1700000000000;
    cr_assert_eq(rc_stream_send_gen2_msg(s, RC_AGENT_MISSION_DEPLOYMENT_RESULT, &r.base, 5000),
                 0);
}

static Aeroarc__Agent__V1__OperationContext flight_context(void)
{
    Aeroarc__Agent__V1__OperationContext oc = AEROARC__AGENT__V1__OPERATION_CONTEXT__INIT;
    oc.flight_id = "flight";
    oc.intent_id = "intent";
    oc.intent_version = 1;
    oc.aircraft_id = "aircraft";
    return oc;
}

/* A Set of this flight's context as `id`, received by the agent, not
 * answered yet: it holds the session's slot. */
static struct call *set_context_start(struct rc_stream *s, const char *agent, const char *id,
                                      int timeout_ms)
{
    Aeroarc__Agent__V1__OperationContext oc = flight_context();
    Aeroarc__Agent__V1__SetOperationContextCommand set =
        AEROARC__AGENT__V1__SET_OPERATION_CONTEXT_COMMAND__INIT;
    set.command_id = (char *)id;
    set.context = &oc;
    Aeroarc__Relay__V1__SetOperationContextRequest req =
        AEROARC__RELAY__V1__SET_OPERATION_CONTEXT_REQUEST__INIT;
    req.agent_id = (char *)agent;
    req.command = &set;
    struct call *c = call_start(api, SET, &req.base, timeout_ms);
    agent_expect(s, RC_RELAY_SET_OPERATION_CONTEXT);
    return c;
}

/* The agent applies Set `id`; its caller gets OK. */
static void set_context_ack(struct rc_stream *s, struct call *c, const char *id)
{
    Aeroarc__Agent__V1__OperationContext oc = flight_context();
    Aeroarc__Agent__V1__OperationContextCommandAck a =
        AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__INIT;
    a.command_id = (char *)id;
    a.status = AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_APPLIED;
    a.active_context = &oc;
    cr_assert_eq(rc_stream_send_gen2_msg(s, RC_AGENT_OPERATION_CONTEXT_COMMAND_ACK, &a.base, 5000),
                 0);
    expect_status(c, OK, NULL);
}

/* Set this flight's context (the API does so before each attempt). */
static void set_context(struct rc_stream *s, const char *agent, const char *id)
{
    set_context_ack(s, set_context_start(s, agent, id, 10000), id);
}

/* An agent with this flight's context. */
static struct rc_stream *agent_ready(const char *agent)
{
    struct rc_stream *s = agent_open(agent);
    set_context(s, agent, "ctx-1");
    return s;
}

/* Mission id asked of "agent" (10 s) and delivered on s: the call. */
static struct call *deliver(struct rc_stream *s, struct mission *m, const char *id)
{
    mission(m, id);
    struct call *c = deploy(m, "agent", 10000);
    agent_expect_mission(s, m);
    return c;
}

/* c answered OK with this status (and message unless NULL). */
static void expect_result(struct call *c, const struct mission *m, int status, const char *message)
{
    call_join(c);
    cr_assert_eq(c->st.code, OK, "code %d: %s", c->st.code, c->st.message);
    Aeroarc__Relay__V1__DeployMissionResponse *r =
        aeroarc__relay__v1__deploy_mission_response__unpack(NULL, c->resp_len, c->resp);
    cr_assert_not_null(r);
    cr_assert_not_null(r->result);
    cr_assert_str_eq(r->result->command_id, m->c.command_id);
    cr_assert_eq(r->result->status, status, "status %d", r->result->status);
    cr_assert_not_null(r->result->binding);
    cr_assert_str_eq(r->result->binding->deployment_id, m->b.deployment_id);
    cr_assert_gt(r->result->completed_at_unix_ms, 0);
    if (message)
        cr_assert_str_eq(r->result->message, message);
    aeroarc__relay__v1__deploy_mission_response__free_unpacked(r, NULL);
    call_free(c);
}

/* m asked of agent, delivered on s and answered with status (count
 * items uploaded): the caller gets the agent's result. */
static void round_trip(struct rc_stream *s, const struct mission *m, int status, uint32_t count)
{
    struct call *c = deploy(m, "agent", 10000);
    agent_expect_mission(s, m);
    agent_result(s, m, status, count);
    expect_result(c, m, status, "agent says");
}

TestSuite(mission, .init = start, .fini = stop, .timeout = 120);

Test(mission, applied_passes_through_and_is_replayed)
{
    struct rc_stream *s = agent_ready("agent");
    struct mission m;
    struct call *c = deliver(s, &m, "upload-1");
    agent_result(s, &m, ST(APPLIED), 1);
    call_join(c);
    cr_assert_eq(c->st.code, OK, "%s", c->st.message);
    /* Passed through unchanged: the agent's bytes are the response's field 1. */
    MissionResult r = AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__INIT;
    r.command_id = m.c.command_id;
    r.binding = &m.b;
    r.status = ST(APPLIED);
    r.message = "agent says";
    r.uploaded_item_count = 1;
    r.onboard_mission_digest = PLAN_DIGEST;
    r.mavlink_mission_ack_type = 1;
    r.completed_at_unix_ms = 1700000000000;
    size_t n = protobuf_c_message_get_packed_size(&r.base);
    uint8_t want[512];
    protobuf_c_message_pack(&r.base, want);
    cr_assert_eq(c->resp_len, n + 3); /* tag, a two-byte length, the result */
    cr_assert_eq(memcmp(c->resp + 3, want, n), 0);
    call_free(c);
    /* SPEC 14.5's two info lines, ids only: the plan is never logged. */
    char ids[300];
    snprintf(ids, sizeof(ids), "agent_id=agent session_id=%s", last_session);
    cr_assert_eq(harness_log_count(&relay, "mission_deployment_started command_id=upload-1 "
                                           "deployment_id=deployment mission_id=mission "
                                           "aircraft_id=aircraft flight_id=flight "
                                           "intent_id=intent intent_version=1 ",
                                   ids, NULL),
                 1);
    cr_assert_eq(harness_log_count(&relay,
                                   "mission_deployment_completed command_id=upload-1 "
                                   "deployment_id=deployment ",
                                   ids, " result=STATUS_APPLIED duration=", NULL),
                 1);

    /* An exact retry: the kept result, nothing sent. */
    expect_result(deploy(&m, "agent", 10000), &m, ST(APPLIED), "agent says");
    agent_expect_nothing(s, "agent", 1);
    cr_assert_eq(metric("aero_relay_mission_deployments_total{result=\"STATUS_APPLIED\"}"), 2);
    cr_assert_eq(metric("aero_relay_commands_total{kind=\"mission\",result=\"OK\"}"), 2);
    cr_assert_eq(metric("aero_relay_mission_deployment_duration_seconds_count"), 2);

    /* The same id with another payload, or by another kind. */
    m.b.deployment_id = "deployment-2";
    expect_status(deploy(&m, "agent", 10000), ALREADY_EXISTS,
                  "mission command ID was already used with a different payload");
    mission(&m, "ctx-1");
    expect_status(deploy(&m, "agent", 10000), ALREADY_EXISTS,
                  "command ID was already used by a different command kind");
    cr_assert_eq(metric("aero_relay_mission_deployments_total{result=\"delivery_failed\"}"), 2);
    agent_close(s);
}

Test(mission, concurrent_exact_calls_join_one_delivery)
{
    struct rc_stream *s = agent_ready("agent");
    struct mission m;
    mission(&m, "upload-2");
    struct call *a = deploy(&m, "agent", 10000);
    agent_expect_mission(s, &m);
    struct call *b = deploy(&m, "agent", 10000);
    /* b joined: a frame's ack is all the agent sees until the result. */
    agent_expect_nothing(s, "agent", 1);
    agent_result(s, &m, ST(ALREADY_APPLIED), 0);
    expect_result(a, &m, ST(ALREADY_APPLIED), "agent says");
    expect_result(b, &m, ST(ALREADY_APPLIED), "agent says");
    agent_close(s);
}

Test(mission, temporary_error_is_redelivered_on_the_same_stream)
{
    struct rc_stream *s = agent_ready("agent");
    struct mission m;
    mission(&m, "upload-3");
    round_trip(s, &m, ST(TEMPORARY_ERROR), 0);
    round_trip(s, &m, ST(APPLIED), 1);
    cr_assert_eq(metric("aero_relay_mission_deployments_total{result=\"STATUS_TEMPORARY_ERROR\"}"),
                 1);
    agent_close(s);
}

Test(mission, rejected_and_binding_mismatch_pass_through)
{
    struct rc_stream *s = agent_ready("agent");
    struct mission m;
    struct call *c = deliver(s, &m, "upload-4");
    agent_result(s, &m, ST(REJECTED), 0);
    expect_result(c, &m, ST(REJECTED), "agent says");
    expect_result(deploy(&m, "agent", 10000), &m, ST(REJECTED), NULL); /* replayed */
    c = deliver(s, &m, "upload-5");
    agent_result(s, &m, ST(BINDING_MISMATCH), 0);
    expect_result(c, &m, ST(BINDING_MISMATCH), "agent says");
    agent_expect_nothing(s, "agent", 1);
    agent_close(s);
}

Test(mission, result_checks_are_internal_and_kept)
{
    struct rc_stream *s = agent_ready("agent");
    struct mission m;
    struct call *c = deliver(s, &m, "upload-6");
    agent_result(s, &m, ST(APPLIED), 2); /* the plan has 1 item */
    expect_status(c, INTERNAL,
                  "agent applied result does not report the canonical uploaded item count");
    expect_status(deploy(&m, "agent", 10000), INTERNAL,
                  "agent applied result does not report the canonical uploaded item count");
    agent_expect_nothing(s, "agent", 1);

    c = deliver(s, &m, "upload-7");
    agent_result(s, &m, ST(ALREADY_APPLIED), 1);
    expect_status(c, INTERNAL,
                  "agent already-applied result ambiguously reports newly uploaded items");

    c = deliver(s, &m, "upload-8");
    struct mission other = m;
    other.b.flight_id = "another";
    other.c.binding = &other.b;
    agent_result(s, &other, ST(APPLIED), 1);
    expect_status(c, INTERNAL, "agent returned a mismatched mission deployment result");

    c = deliver(s, &m, "upload-9");
    agent_result(s, &m, 9, 0);
    expect_status(c, INTERNAL, "agent returned an invalid mission deployment status");

    /* Compared byte for byte: the digest again (field 6, the last one
     * wins) with a NUL byte and more after it is another digest. */
    c = deliver(s, &m, "upload-31");
    MissionResult r = AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__INIT;
    r.command_id = m.c.command_id;
    r.binding = &m.b;
    r.status = ST(APPLIED);
    r.uploaded_item_count = 1;
    r.onboard_mission_digest = PLAN_DIGEST;
    r.completed_at_unix_ms = 1700000000000;
    uint8_t b[1024];
    size_t n = protobuf_c_message_pack(&r.base, b);
    b[n++] = 6 << 3 | 2;
    b[n++] = 66;
    memcpy(b + n, PLAN_DIGEST, 64);
    memcpy(b + n + 64, "\0x", 2);
    n += 66;
    cr_assert_eq(rc_stream_send_gen2_arm(s, RC_AGENT_MISSION_DEPLOYMENT_RESULT, b, n, 5000), 0);
    expect_status(c, INTERNAL, "agent success result does not prove the expected onboard mission");
    agent_close(s);
}

/* Appends field `field` holding msg, length-delimited, at b + n; the new n. */
static size_t put_message(uint8_t *b, size_t n, uint32_t field, const ProtobufCMessage *msg)
{
    uint8_t body[1024], *rec;
    size_t rlen;
    cr_assert_leq(protobuf_c_message_get_packed_size(msg), sizeof(body));
    size_t len = protobuf_c_message_pack(msg, body);
    cr_assert_eq(rc_envelope_wrap((int)field, body, len, &rec, &rlen), 0);
    memcpy(b + n, rec, rlen);
    free(rec);
    return n + rlen;
}

/* A result is read as Go reads it (SPEC 14.2 rule 14, 12.7 reading 6): a
 * binding sent as two records is their merge (protobuf-c's own merge would
 * lose the first record's versions: "mismatched"), and a known field with
 * the wrong wire type is an unknown field (an invalid result, and the
 * stream goes on; it used to end the agent's stream). */
Test(mission, results_are_read_as_go_reads_them)
{
    struct rc_stream *s = agent_ready("agent");
    struct mission m;
    struct call *c = deliver(s, &m, "upload-40");
    MissionResult r = AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__INIT;
    r.command_id = m.c.command_id;
    r.status = ST(APPLIED);
    r.message = "agent says";
    r.uploaded_item_count = 1;
    r.onboard_mission_digest = PLAN_DIGEST;
    r.completed_at_unix_ms = 1700000000000;
    uint8_t b[2048];
    size_t n = protobuf_c_message_pack(&r.base, b);
    n = put_message(b, n, 2, &m.b.base);
    Aeroarc__Agent__V1__MissionBinding part = AEROARC__AGENT__V1__MISSION_BINDING__INIT;
    part.flight_id = "flight"; /* the same value again, alone */
    n = put_message(b, n, 2, &part.base);
    cr_assert_eq(rc_stream_send_gen2_arm(s, RC_AGENT_MISSION_DEPLOYMENT_RESULT, b, n, 5000), 0);
    expect_result(c, &m, ST(APPLIED), "agent says");

    c = deliver(s, &m, "upload-41");
    r.command_id = m.c.command_id;
    r.binding = &m.b;
    n = protobuf_c_message_pack(&r.base, b);
    b[n++] = 3 << 3 | 2; /* status, length-delimited */
    b[n++] = 0;
    cr_assert_eq(rc_stream_send_gen2_arm(s, RC_AGENT_MISSION_DEPLOYMENT_RESULT, b, n, 5000), 0);
    expect_status(c, INTERNAL, "agent returned an invalid mission deployment result");

    mission(&m, "upload-42"); /* the same stream still carries missions */
    round_trip(s, &m, ST(APPLIED), 1);
    agent_close(s);
}

Test(mission, caller_deadline_then_the_next_exact_call_redelivers)
{
    struct rc_stream *s = agent_ready("agent");
    struct mission m;
    mission(&m, "upload-10");
    /* 2 s: the mission must reach the agent before the caller's deadline,
     * also on a loaded machine (800 ms failed once at load 7 on 2 cores). */
    struct call *c = deploy(&m, "agent", 2000);
    agent_expect_mission(s, &m);
    expect_status(c, DEADLINE, NULL);
    /* The relay completed it itself (once it, too, saw the deadline: the
     * caller's gRPC may report it first); a late result is then dropped
     * and counted. */
    wait_metric("aero_relay_mission_deployments_total{result=\"wait_ended\"}", 1);
    double ignored =
        metric("aero_relay_stream_messages_ignored_total{payload=\"mission_deployment_result\"}");
    agent_result(s, &m, ST(APPLIED), 1);
    agent_expect_nothing(s, "agent", 1);
    cr_assert_eq(
        metric("aero_relay_stream_messages_ignored_total{payload=\"mission_deployment_result\"}"),
        ignored + 1);
    /* The slot was freed: the next exact call on the same stream redelivers. */
    c = deploy(&m, "agent", 10000);
    agent_expect_mission(s, &m);
    agent_result(s, &m, ST(APPLIED), 1);
    expect_result(c, &m, ST(APPLIED), NULL);
    agent_close(s);
}

Test(mission, an_old_streams_outcome_unknown_is_never_resent)
{
    struct rc_stream *s = agent_ready("agent");
    struct mission m;
    struct call *c = deliver(s, &m, "upload-11");
    /* A stream on the same session replaces the one written to. */
    struct rc_status st;
    struct rc_stream *s2 = rc_stream_open_gen2(agents, "agent", last_session, NULL, 0, &st);
    cr_assert_not_null(s2, "%s", st.message);
    agent_expect_nothing(s2, "agent", 1); /* s2 is the session's now */
    agent_close(s);
    expect_result(c, &m, ST(OUTCOME_UNKNOWN), "agent stream replaced after mission delivery");
    /* Its result on the old stream, or a retry now: replayed, not resent. */
    expect_result(deploy(&m, "agent", 10000), &m, ST(OUTCOME_UNKNOWN),
                  "agent stream replaced after mission delivery");
    agent_expect_nothing(s2, "agent", 2);
    agent_close(s2);
}

/* agent_ready on a fixture_slow_channel: registered, its stream open and
 * its context set, on `slow`. */
static struct rc_stream *slow_agent_ready(struct rc_channel *slow)
{
    struct rc_status st;
    struct rc_register_result reg;
    cr_assert_eq(rc_register_caps(slow, "agent", "1.0", "test", NULL, 0, &reg, &st, 5000), 0,
                 "%s", st.message);
    snprintf(last_session, sizeof(last_session), "%s", reg.session_id);
    struct rc_stream *s = fixture_open_gen2(&relay, slow, "agent", reg.session_id);
    set_context(s, "agent", "ctx-1");
    return s;
}

/* SPEC.md 14.2 rule 16 and 14.6 reading 5: a mission still in the
 * stream's queue when the stream ends was not written (the agent read
 * nothing: acks filled its 64 KiB window, never grown): ABORTED "...
 * before confirmed delivery", and not kept: the same id is a first
 * delivery again on the next session. */
Test(mission, a_mission_still_queued_when_its_stream_ends_was_not_written)
{
    struct rc_channel *slow = fixture_slow_channel(&relay, NULL, 65535);
    struct rc_stream *s = slow_agent_ready(slow);
    fixture_fill_window(s, "agent", last_session);
    struct mission m;
    mission(&m, "upload-30");
    struct call *c = deploy(&m, "agent", 20000);
    wait_metric("aero_relay_commands_pending{kind=\"mission\"}", 1);
    agent_close(s);
    expect_status(c, ABORTED,
                  "agent session retired while awaiting mission result before confirmed delivery");
    rc_close(slow);
    s = agent_ready("agent");
    round_trip(s, &m, ST(APPLIED), 1);
    agent_close(s);
}

/* SPEC.md 14.2 rule 12: a write that began and never finished completes
 * the entry with the relay's own OUTCOME_UNKNOWN "mission stream write
 * failed after delivery began", and the caller gets OK. The agent's
 * window (1 KiB) is smaller than the mission (200 items): its write
 * begins as soon as it is recorded and waits for a window update that
 * never comes, until the agent goes. */
Test(mission, a_write_that_began_and_never_finished_is_outcome_unknown)
{
    struct rc_channel *slow = fixture_slow_channel(&relay, NULL, 1024);
    struct rc_stream *s = slow_agent_ready(slow);
    struct mission m;
    mission(&m, "upload-43");
    Aeroarc__Agent__V1__MissionItem items[200], *ptrs[200];
    for (size_t i = 0; i < 200; i++) {
        items[i] = m.item;
        items[i].sequence = (uint32_t)i;
        ptrs[i] = &items[i];
    }
    m.plan.n_items = 200;
    m.plan.items = ptrs;
    char digest[65];
    cr_assert_eq(command_digest_plan(&m.plan, digest, NULL), 0);
    m.b.mission_digest = digest;
    struct call *c = deploy(&m, "agent", 20000);
    /* Recorded pending and written in one step under the table's lock. */
    wait_metric("aero_relay_commands_pending{kind=\"mission\"}", 1);
    agent_close(s);
    expect_result(c, &m, ST(OUTCOME_UNKNOWN), "mission stream write failed after delivery began");
    rc_close(slow);
}

/* SPEC.md 14.6 reading 3: missions waiting for the slot are tied to the
 * session, not to the stream they were asked on: when the agent replaces
 * its stream they go out on the new one. */
Test(mission, waiting_missions_go_out_on_the_stream_that_replaced_theirs)
{
    struct rc_stream *s = agent_ready("agent");
    struct mission m, hold, fresh;
    mission(&m, "upload-30");
    round_trip(s, &m, ST(TEMPORARY_ERROR), 0);
    mission(&hold, "upload-31");
    struct call *h = deploy(&hold, "agent", 10000);
    agent_expect_mission(s, &hold); /* unanswered: it holds the slot */
    struct call *c = deploy(&m, "agent", 10000); /* a reserved redelivery */
    wait_metric("aero_relay_commands_pending{kind=\"mission\"}", 2); /* c first in line */
    mission(&fresh, "upload-32");
    fresh.b.deployment_id = "deployment-32";
    struct call *f = deploy(&fresh, "agent", 10000); /* a first delivery */
    wait_metric("aero_relay_commands_pending{kind=\"mission\"}", 3);
    agent_expect_nothing(s, "agent", 1); /* both wait: nothing sent */

    struct rc_status st;
    struct rc_stream *s2 = rc_stream_open_gen2(agents, "agent", last_session, NULL, 0, &st);
    cr_assert_not_null(s2, "%s", st.message);
    /* The mission written on s is the relay's own OUTCOME_UNKNOWN; the
     * slot goes to the redelivery, on s2, then to the first delivery. */
    expect_result(h, &hold, ST(OUTCOME_UNKNOWN), "agent stream replaced after mission delivery");
    agent_expect_mission(s2, &m);
    agent_result(s2, &m, ST(APPLIED), 1);
    expect_result(c, &m, ST(APPLIED), "agent says");
    agent_expect_mission(s2, &fresh);
    agent_result(s2, &fresh, ST(APPLIED), 1);
    expect_result(f, &fresh, ST(APPLIED), "agent says");
    cr_assert_eq(metric("aero_relay_mission_deployments_total{result=\"delivery_failed\"}"), 0);
    agent_close(s);
    agent_close(s2);
}

/* Rules 9 -> 10: the context is checked once the mission has the slot,
 * so a Set still in flight can reconcile the context it waits for. */
Test(mission, the_fence_is_checked_with_the_slot_not_at_arrival)
{
    struct rc_stream *s = agent_open("agent");
    struct call *set = set_context_start(s, "agent", "ctx-1", 10000);
    struct mission m;
    mission(&m, "upload-40");
    struct call *c = deploy(&m, "agent", 10000); /* unreconciled now */
    wait_metric("aero_relay_commands_pending{kind=\"mission\"}", 1);
    set_context_ack(s, set, "ctx-1");
    agent_expect_mission(s, &m);
    agent_result(s, &m, ST(APPLIED), 1);
    expect_result(c, &m, ST(APPLIED), "agent says");
    agent_close(s);
}

/* 14.6 reading 8: a redelivery refused before admission stays a
 * redelivery, with the redelivery's fence text, on any stream. */
Test(mission, a_refused_redelivery_stays_a_redelivery)
{
    struct rc_stream *s = agent_ready("agent");
    struct mission m;
    mission(&m, "upload-41");
    round_trip(s, &m, ST(OUTCOME_UNKNOWN), 0);
    /* A Set whose caller leaves unanswered: the session is unreconciled. */
    expect_status(set_context_start(s, "agent", "ctx-2", 2500), DEADLINE, NULL);
    for (int i = 0; i < 2; i++)
        expect_status(deploy(&m, "agent", 5000), FAILED_PRECONDITION,
                      "mission binding does not match the reconciled Agent operation context");
    /* Reconciled again, on a stream that replaced s: sent there. */
    struct rc_status st;
    struct rc_stream *s2 = rc_stream_open_gen2(agents, "agent", last_session, NULL, 0, &st);
    cr_assert_not_null(s2, "%s", st.message);
    agent_expect_nothing(s2, "agent", 1); /* s2 is the session's now */
    set_context(s2, "agent", "ctx-3");
    round_trip(s2, &m, ST(APPLIED), 1);
    agent_close(s);
    agent_close(s2);
}

Test(mission, mission_and_ingest_interleave)
{
    struct rc_stream *s = agent_ready("agent");
    struct mission m;
    struct call *c = deliver(s, &m, "upload-12");
    for (uint64_t seq = 1; seq <= 5; seq++)
        agent_expect_nothing(s, "agent", seq); /* each frame acked while the mission waits */
    agent_result(s, &m, ST(APPLIED), 1);
    expect_result(c, &m, ST(APPLIED), NULL);
    agent_close(s);
}

Test(mission, refusals_in_rule_order)
{
    struct mission m;
    mission(&m, "upload-20");
    expect_status(deploy(&m, "", 5000), INVALID_ARGUMENT, "agent_id and command are required");
    expect_status(deploy(&m, " \xe3\x80\x80", 5000), INVALID_ARGUMENT,
                  "agent_id and command are required");
    Aeroarc__Relay__V1__DeployMissionRequest req = AEROARC__RELAY__V1__DEPLOY_MISSION_REQUEST__INIT;
    req.agent_id = "agent";
    expect_status(call_start(api, DEPLOY, &req.base, 5000), INVALID_ARGUMENT,
                  "agent_id and command are required");
    /* A known field with the wrong wire type is an unknown field, as Go
     * reads it: the request's own are ignored (command 2 as a varint: no
     * command), an item's name the item (14.3 rule 4). */
    expect_status(call_start_raw(api, DEPLOY, (const uint8_t *)"\x10\x01", 2, 5000),
                  INVALID_ARGUMENT, "agent_id and command are required");
    ProtobufCMessageUnknownField sequence_as_fixed32 = {
        .tag = 1, .wire_type = PROTOBUF_C_WIRE_TYPE_32BIT, .len = 4,
        .data = (uint8_t *)"\0\0\0\0"};
    m.item.base.n_unknown_fields = 1;
    m.item.base.unknown_fields = &sequence_as_fixed32;
    expect_status(deploy(&m, "agent", 5000), INVALID_ARGUMENT,
                  "mission item 0 is nil or contains unknown fields");
    mission(&m, "upload-20");
    /* Undecodable: invalid UTF-8. */
    expect_status(call_start_raw(api, DEPLOY, (const uint8_t *)"\x0a\x02\xc3\x28", 4, 5000),
                  INVALID_ARGUMENT, "mission command contains unknown fields");
    m.item.altitude_m = 83887.0f;
    expect_status(deploy(&m, "agent", 5000), INVALID_ARGUMENT,
                  "mission item 0 altitude exceeds ArduPilot signed-centimeter storage");
    mission(&m, "upload-20");
    m.b.mission_digest = "0000000000000000000000000000000000000000000000000000000000000000";
    expect_status(deploy(&m, "agent", 5000), INVALID_ARGUMENT,
                  "mission_digest does not match the canonical plan");
    mission(&m, "upload-20");
    expect_status(deploy(&m, "nobody", 5000), FAILED_PRECONDITION,
                  "relay Agent mapping is not configured");
    expect_status(deploy(&m, "other", 5000), FAILED_PRECONDITION,
                  "mission binding does not match configured Agent mapping");
    expect_status(deploy(&m, "agent", 5000), NOT_FOUND, "agent is not connected");
    /* Expiry is not checked: an expired command gets to the fence. */
    m.c.issued_at_unix_ms = 1, m.c.expires_at_unix_ms = 2;
    struct rc_stream *s = agent_open("agent");
    expect_status(deploy(&m, " agent\t", 5000), FAILED_PRECONDITION,
                  "operation context must be reconciled before mission deployment");
    set_context(s, "agent", "ctx-1");
    struct mission o;
    mission(&o, "upload-21");
    o.b.flight_id = "flight-2";
    expect_status(deploy(&o, "agent", 5000), FAILED_PRECONDITION,
                  "mission binding does not match the reconciled Agent operation context");
    mission(&o, "upload-22");
    o.c.issued_at_unix_ms += 60000, o.c.expires_at_unix_ms += 60000;
    expect_status(deploy(&o, "agent", 5000), INVALID_ARGUMENT,
                  "mission command issue time is too far in the future");
    mission(&o, "upload-23");
    o.c.expires_at_unix_ms = o.c.issued_at_unix_ms + 300001;
    expect_status(deploy(&o, "agent", 5000), INVALID_ARGUMENT,
                  "mission command validity window is too long");
    /* Rule 7 (ours): an RTL mission needs mission_rtl_v1. */
    Aeroarc__Agent__V1__MissionItem rtl = AEROARC__AGENT__V1__MISSION_ITEM__INIT, *items[2];
    mission(&o, "upload-24");
    rtl.sequence = 1, rtl.command = 20, rtl.autocontinue = true;
    items[0] = &o.item, items[1] = &rtl;
    o.plan.items = items, o.plan.n_items = 2;
    char hex[65];
    cr_assert_eq(command_digest_plan(&o.plan, hex, NULL), 0);
    o.b.mission_digest = hex;
    expect_status(deploy(&o, "agent", 5000), FAILED_PRECONDITION,
                  "Agent must advertise mission_rtl_v1 before receiving an RTL mission");
    agent_expect_nothing(s, "agent", 1);
    cr_assert_eq(metric("aero_relay_mission_deployments_total{result=\"delivery_failed\"}"), 4);
    /* The section-10 series count every refusal, before the table too
     * (14.5: "adds the §10 series with kind=mission"). */
    cr_assert_eq(metric("aero_relay_commands_total{kind=\"mission\",result=\"INVALID_ARGUMENT\"}"),
                 10);
    cr_assert_eq(
        metric("aero_relay_commands_total{kind=\"mission\",result=\"FAILED_PRECONDITION\"}"), 5);
    cr_assert_eq(metric("aero_relay_commands_total{kind=\"mission\",result=\"NOT_FOUND\"}"), 1);
    cr_assert_eq(metric("aero_relay_command_duration_seconds_count{kind=\"mission\"}"), 16);
    agent_close(s);
}
