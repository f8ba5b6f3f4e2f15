/*
 * test_e2e_commands.c - SetOperationContext, ClearOperationContext and
 * SendAircraftCommand (SPEC.md section 10) through the real relay: control
 * callers with client certificates made here with openssl, simulated
 * generation-2 agents that count what they receive and answer (or not).
 * A control call blocks, so it runs on a thread while the agent answers.
 */
#include "control_fixture.h"
#include "harness.h"
#include "http_client.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define SET "/aeroarc.relay.v1.RelayControl/SetOperationContext"
#define CLEAR "/aeroarc.relay.v1.RelayControl/ClearOperationContext"
#define AIRCRAFT "/aeroarc.relay.v1.RelayControl/SendAircraftCommand"

static struct relay_proc relay;
static struct rc_channel *api; /* the allowed control client (URI SAN) */
static struct rc_channel *agents; /* TLS, no client certificate */
static char ca[400];

static const char *agent_token; /* [auth] mode = bearer: the agents' key */
static int hold_s = 3;           /* [relay] gen2_hold_s */
static int command_timeout_s = 2; /* [control] command_timeout_s */

static struct rc_channel *tls(const char *cert)
{
    return fixture_channel(&relay, cert, agent_token);
}

#define AGENT_KEY "agents-key-0123456789abcdef"

/* The relay with [tls] and [control]; agent_token set: [auth] mode = bearer
 * with that key for every agent id, so agents are authenticated. */
static void start_with(void)
{
    harness_prepare(&relay);
    const char *auth = agent_token ? fixture_bearer_keys(&relay, agent_token) : "";
    fixture_pki(&relay);
    char body[2048];
    snprintf(body, sizeof(body),
             "%scommand_timeout_s = %d\n"
             "[sink:archive]\nplugin = sink-file\npath = %%DIR%%/data\n%s",
             FIXTURE_TLS_CONTROL, command_timeout_s, auth);
    relay.http = true; /* the gate's counters */
    char extra[100];
    snprintf(extra, sizeof(extra), "max_inflight = 100\ngen2_hold_s = %d\n", hold_s);
    harness_write_config(&relay, extra, body);
    snprintf(ca, sizeof(ca), "%s/ca.pem", relay.dir);
    relay.tls_ca = ca;
    relay_start(&relay);
    api = tls("uri");
    agents = tls(NULL);
}

static void start(void)
{
    agent_token = NULL;
    hold_s = 3;
    command_timeout_s = 2;
    start_with();
}

static void start_no_hold(void)
{
    agent_token = NULL;
    hold_s = 0;
    start_with();
}

static void start_bearer(void)
{
    agent_token = AGENT_KEY;
    hold_s = 3;
    start_with();
}

static void stop(void) { fixture_stop(&relay, &api, &agents); }

TestSuite(commands, .init = start, .fini = stop, .timeout = 120);

/* ---- control calls ------------------------------------------------------ */

/* Requests. */
static Aeroarc__Agent__V1__OperationContext ctx_of(const char *flight, const char *aircraft)
{
    Aeroarc__Agent__V1__OperationContext c = AEROARC__AGENT__V1__OPERATION_CONTEXT__INIT;
    c.flight_id = (char *)flight;
    c.intent_id = "intent-1";
    c.intent_version = 3;
    c.aircraft_id = (char *)aircraft;
    return c;
}

static struct call *set_ctx(struct rc_channel *ch, const char *agent, const char *id,
                            const char *flight, int timeout_ms)
{
    Aeroarc__Agent__V1__OperationContext oc = ctx_of(flight, "ac-1");
    Aeroarc__Agent__V1__SetOperationContextCommand cmd =
        AEROARC__AGENT__V1__SET_OPERATION_CONTEXT_COMMAND__INIT;
    cmd.command_id = (char *)id;
    cmd.context = &oc;
    Aeroarc__Relay__V1__SetOperationContextRequest req =
        AEROARC__RELAY__V1__SET_OPERATION_CONTEXT_REQUEST__INIT;
    req.agent_id = (char *)agent;
    req.command = &cmd;
    return call_start(ch, SET, &req.base, timeout_ms);
}

static struct call *clear_ctx(struct rc_channel *ch, const char *agent, const char *id,
                              const char *flight, bool authoritative)
{
    Aeroarc__Agent__V1__ClearOperationContextCommand cmd =
        AEROARC__AGENT__V1__CLEAR_OPERATION_CONTEXT_COMMAND__INIT;
    cmd.command_id = (char *)id;
    cmd.flight_id = (char *)flight;
    cmd.authoritative = authoritative;
    Aeroarc__Relay__V1__ClearOperationContextRequest req =
        AEROARC__RELAY__V1__CLEAR_OPERATION_CONTEXT_REQUEST__INIT;
    req.agent_id = (char *)agent;
    req.command = &cmd;
    return call_start(ch, CLEAR, &req.base, 10000);
}

static struct call *aircraft(struct rc_channel *ch, const char *agent, const char *id,
                             const char *aircraft_id, int type, int timeout_ms)
{
    Aeroarc__Agent__V1__AircraftCommand cmd = AEROARC__AGENT__V1__AIRCRAFT_COMMAND__INIT;
    cmd.command_id = (char *)id;
    cmd.aircraft_id = (char *)aircraft_id;
    cmd.type = type;
    cmd.issued_at_unix_ms = 1700000000000;
    Aeroarc__Relay__V1__SendAircraftCommandRequest req =
        AEROARC__RELAY__V1__SEND_AIRCRAFT_COMMAND_REQUEST__INIT;
    req.agent_id = (char *)agent;
    req.command = &cmd;
    return call_start(ch, AIRCRAFT, &req.base, timeout_ms);
}

#define ARM AEROARC__AGENT__V1__AIRCRAFT_COMMAND_TYPE__AIRCRAFT_COMMAND_TYPE_ARM

/* ---- simulated agents ------------------------------------------------------ */

static struct rc_stream *agent_open(const char *agent, char *session, size_t len)
{
    harness_register(agents, agent, session, len);
    return fixture_open_gen2(&relay, agents, agent, session);
}

/* The next message the agent gets must be a command of this arm. */
static const Aeroarc__Agent__V1__RelayStreamMessage *agent_expect(struct rc_stream *s, int arm,
                                                                   struct rc_relay_msg *m)
{
    int rc = rc_stream_recv_gen2(s, m, 10000);
    cr_assert_eq(rc, 1, "agent: no message (%d)", rc);
    cr_assert_eq(m->arm, arm, "agent got %s, want %s", rc_relay_arm_name(m->arm),
                 rc_relay_arm_name(arm));
    return m->msg;
}

/* Nothing more reaches the agent: a frame sent now is the next thing
 * answered (its ack), so any command queued before it would come first. */
static void agent_expect_nothing_queued(struct rc_stream *s, const char *agent,
                                        const char *session, uint64_t seq)
{
    struct rc_frame f = *harness_frame(agent, seq);
    f.session_id = session;
    cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
    struct rc_relay_msg m;
    cr_assert_eq(rc_stream_recv_gen2(s, &m, 10000), 1);
    cr_assert_eq(m.arm, RC_RELAY_TELEMETRY_ACK, "a second delivery: %s", rc_relay_arm_name(m.arm));
    cr_assert_eq(m.ack.seq, seq);
    cr_assert_eq(m.ack.status, RC_ACK_OK, "%s", m.ack.error);
}

static void ack_context(struct rc_stream *s, const char *id, int status,
                        const Aeroarc__Agent__V1__OperationContext *active)
{
    Aeroarc__Agent__V1__OperationContextCommandAck a =
        AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__INIT;
    a.command_id = (char *)id;
    a.status = status;
    a.active_context = (Aeroarc__Agent__V1__OperationContext *)active;
    cr_assert_eq(rc_stream_send_gen2_msg(s, RC_AGENT_OPERATION_CONTEXT_COMMAND_ACK, &a.base, 5000),
                 0);
}

static void aircraft_result(struct rc_stream *s, const char *id, const char *aircraft_id,
                            int status)
{
    Aeroarc__Agent__V1__AircraftCommandResult r = AEROARC__AGENT__V1__AIRCRAFT_COMMAND_RESULT__INIT;
    r.command_id = (char *)id;
    r.aircraft_id = (char *)aircraft_id;
    r.status = status;
    r.message = "done";
    cr_assert_eq(rc_stream_send_gen2_msg(s, RC_AGENT_AIRCRAFT_COMMAND_RESULT, &r.base, 5000), 0);
}

static void agent_close(struct rc_stream *s)
{
    rc_stream_cancel(s);
    rc_stream_free(s);
}

#define APPLIED AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_APPLIED

/* A Set (flight given) or an authoritative clear (flight NULL). */
struct context_cmd {
    const char *agent;
    char id[80];
    const char *flight;
};

static struct call *context_call(const struct context_cmd *a)
{
    return a->flight ? set_ctx(api, a->agent, a->id, a->flight, 10000)
                     : clear_ctx(api, a->agent, a->id, "", true);
}

/* Start the context command and return its call once the agent on s
 * received it (agent_open waited for the stream to be attached). The
 * command must be the first thing the agent receives. */
static struct call *context_delivered(struct rc_stream *s, const struct context_cmd *a)
{
    struct call *c = context_call(a);
    struct rc_relay_msg m;
    agent_expect(s, a->flight ? RC_RELAY_SET_OPERATION_CONTEXT : RC_RELAY_CLEAR_OPERATION_CONTEXT,
                 &m);
    return c;
}

/* The agent applies a Set of `flight` (NULL: an authoritative clear) that
 * must be the first thing it receives; the caller gets OK. */
static void apply_context(struct rc_stream *s, const char *agent, const char *flight)
{
    struct context_cmd a = {.agent = agent, .flight = flight};
    static int n;
    snprintf(a.id, sizeof(a.id), "ctx-%s-%d", agent, __atomic_add_fetch(&n, 1, __ATOMIC_RELAXED));
    struct call *c = context_delivered(s, &a);
    Aeroarc__Agent__V1__OperationContext active = ctx_of(flight, "ac-1");
    ack_context(s, a.id, APPLIED, flight ? &active : NULL);
    expect_status(c, OK, NULL);
}

/* The next message the agent gets is Set `id` of `flight`; it applies it
 * (aircraft ac-1). */
static void set_applied(struct rc_stream *s, const char *id, const char *flight)
{
    struct rc_relay_msg m;
    const Aeroarc__Agent__V1__RelayStreamMessage *msg =
        agent_expect(s, RC_RELAY_SET_OPERATION_CONTEXT, &m);
    cr_assert_str_eq(msg->set_operation_context->command_id, id);
    cr_assert_str_eq(msg->set_operation_context->context->flight_id, flight);
    Aeroarc__Agent__V1__OperationContext active = ctx_of(flight, "ac-1");
    ack_context(s, id, APPLIED, &active);
}

/* Reconcile agent's fresh session (SPEC.md section 10) with an
 * authoritative clear the agent applies: its frames are then admitted. */
static void reconcile(struct rc_stream *s, const char *agent) { apply_context(s, agent, NULL); }

/* A generation-2 agent whose fresh session is reconciled. */
static struct rc_stream *agent_open_reconciled(const char *agent, char *session, size_t len)
{
    struct rc_stream *s = agent_open(agent, session, len);
    reconcile(s, agent);
    return s;
}
#define ALREADY AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_ALREADY_APPLIED
#define TEMPORARY AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_TEMPORARY_ERROR
#define ACCEPTED AEROARC__AGENT__V1__AIRCRAFT_COMMAND_RESULT__STATUS__STATUS_ACCEPTED

/* ---- control authentication -------------------------------------------- */

Test(commands, control_needs_a_verified_allowed_certificate)
{
    /* Each allowed identity gets past authentication to NOT_FOUND, one
     * issued by an intermediate of the control CA too. */
    const char *allowed[] = {"uri", "dns", "cn", "chained"};
    for (size_t i = 0; i < 4; i++) {
        struct rc_channel *c = tls(allowed[i]);
        expect_status(set_ctx(c, "nobody", "c-1", "F1", 10000), NOT_FOUND,
                      "agent is not registered");
        rc_close(c);
    }
    struct rc_channel *c = tls("denied");
    expect_status(set_ctx(c, "nobody", "c-1", "F1", 10000), PERMISSION_DENIED, NULL);
    expect_status(aircraft(c, "nobody", "c-1", "ac", ARM, 10000), PERMISSION_DENIED, NULL);
    rc_close(c);
    expect_status(clear_ctx(agents, "nobody", "c-1", "F1", false), UNAUTHENTICATED, NULL);
    /* Authentication comes before a request that does not decode (field
     * 2 as a string: not a message). */
    static const uint8_t garbage[] = {0x12, 0x01, 0xff};
    expect_status(call_start_raw(agents, SET, garbage, sizeof(garbage), 10000), UNAUTHENTICATED,
                  NULL);
    expect_status(call_start_raw(api, SET, garbage, sizeof(garbage), 10000), INVALID_ARGUMENT,
                  "malformed SetOperationContextRequest");
    /* Another CA's certificate fails the handshake itself. */
    c = tls("foreign");
    expect_status(set_ctx(c, "nobody", "c-1", "F1", 5000), UNAVAILABLE, NULL);
    rc_close(c);
}

Test(commands, agents_without_certificates_keep_streaming)
{
    char session[64];
    struct rc_stream *s = agent_open_reconciled("nocert-1", session, sizeof(session));
    agent_expect_nothing_queued(s, "nocert-1", session, 1);
    agent_close(s);
}

/* ---- validation and where the command goes --------------------------- */

Test(commands, validation_and_not_found_codes_per_kind)
{
    expect_status(set_ctx(api, "", "c-1", "F1", 10000), INVALID_ARGUMENT,
                  "agent ID and command ID are required");
    expect_status(set_ctx(api, "a", "", "F1", 10000), INVALID_ARGUMENT,
                  "agent ID and command ID are required");
    expect_status(set_ctx(api, "a", "c-1", "  ", 10000), INVALID_ARGUMENT,
                  "flight ID, intent ID, and positive intent version are required");
    expect_status(clear_ctx(api, "a", "c-1", "", false), INVALID_ARGUMENT,
                  "flight ID may be empty only while reconciling a fresh Relay session");
    /* An authoritative clear names no flight: the same text. */
    expect_status(clear_ctx(api, "a", "c-1", "F1", true), INVALID_ARGUMENT,
                  "flight ID may be empty only while reconciling a fresh Relay session");
    expect_status(aircraft(api, "a", "c-1", "", ARM, 10000), INVALID_ARGUMENT,
                  "aircraft ID is required");
    expect_status(aircraft(api, "a", "c-1", "ac", 7, 10000), INVALID_ARGUMENT,
                  "aircraft command type must be ARM or DISARM");

    expect_status(set_ctx(api, "ghost", "c-1", "F1", 10000), NOT_FOUND, "agent is not registered");
    expect_status(clear_ctx(api, "ghost", "c-1", "F1", false), NOT_FOUND,
                  "agent is not registered");
    expect_status(aircraft(api, "ghost", "c-1", "ac", ARM, 10000), NOT_FOUND,
                  "agent is not connected");
    /* Refused before the table, and counted as its outcomes are. */
    cr_assert_eq(fixture_metric(&relay, "aero_relay_commands_total{kind=\"set\","
                                        "result=\"INVALID_ARGUMENT\"}"), 3);
    cr_assert_eq(fixture_metric(&relay, "aero_relay_commands_total{kind=\"clear\","
                                        "result=\"INVALID_ARGUMENT\"}"), 2);
    cr_assert_eq(fixture_metric(&relay, "aero_relay_commands_total{kind=\"aircraft\","
                                        "result=\"NOT_FOUND\"}"), 1);

    harness_register(agents, "nostream-1", NULL, 0);
    expect_status(set_ctx(api, "nostream-1", "c-1", "F1", 10000), UNAVAILABLE,
                  "agent stream is not connected");
    expect_status(aircraft(api, "nostream-1", "c-1", "ac", ARM, 10000), NOT_FOUND,
                  "agent stream is not connected");

    /* A seed stream has no downlink. */
    harness_register(agents, "seed-1", NULL, 0);
    struct rc_status st;
    struct rc_stream *seed = rc_stream_open(agents, "seed-1", NULL, 0, &st);
    cr_assert_not_null(seed);
    cr_assert_eq(rc_stream_send_frame(seed, harness_frame("seed-1", 1), 5000), 0);
    struct rc_ack ack;
    cr_assert_eq(rc_stream_recv_ack(seed, &ack, 10000), 1);
    expect_status(set_ctx(api, "seed-1", "c-1", "F1", 10000), FAILED_PRECONDITION,
                  "agent protocol has no downlink");
    agent_close(seed);

    /* No header and no message yet: the generation is not decided. */
    harness_register(agents, "undecided-1", NULL, 0);
    struct rc_stream *u = rc_stream_open_gen2(agents, "undecided-1", NULL, NULL, 0, &st);
    cr_assert_not_null(u);
    /* Until the relay has attached the stream it is "not connected". */
    bool decided = false;
    for (int64_t until = harness_now_ms() + 10000; !decided && harness_now_ms() < until;) {
        struct call *c = set_ctx(api, "undecided-1", "c-1", "F1", 10000);
        call_join(c);
        cr_assert_eq(c->st.code, UNAVAILABLE, "%s", c->st.message);
        decided = strcmp(c->st.message, "agent stream protocol is not decided yet") == 0;
        if (!decided)
            cr_assert_str_eq(c->st.message, "agent stream is not connected");
        call_free(c);
    }
    cr_assert(decided);
    agent_close(u);
}


/* ---- round trips ----------------------------------------------------------- */

Test(commands, set_applied_then_replayed_without_a_second_delivery)
{
    char session[64];
    struct rc_stream *s = agent_open_reconciled("set-1", session, sizeof(session));
    agent_expect_nothing_queued(s, "set-1", session, 1); /* decides generation 2 */

    struct call *c = set_ctx(api, "set-1", "s-1", "F1", 10000);
    set_applied(s, "s-1", "F1");
    call_join(c);
    cr_assert_eq(c->st.code, OK, "%s %s", rc_status_code_name(c->st.code), c->st.message);
    Aeroarc__Relay__V1__SetOperationContextResponse *r =
        aeroarc__relay__v1__set_operation_context_response__unpack(NULL, c->resp_len, c->resp);
    cr_assert_not_null(r);
    cr_assert_str_eq(r->result->command_id, "s-1");
    cr_assert_eq(r->result->status, APPLIED);
    cr_assert_str_eq(r->result->active_context->flight_id, "F1");
    aeroarc__relay__v1__set_operation_context_response__free_unpacked(r, NULL);
    call_free(c);

    /* Same id, same command: the retained result, nothing sent again. */
    c = set_ctx(api, "set-1", "s-1", "F1", 10000);
    call_join(c);
    cr_assert_eq(c->st.code, OK, "%s", c->st.message);
    call_free(c);
    agent_expect_nothing_queued(s, "set-1", session, 2);

    /* Same id, another payload or another kind: ALREADY_EXISTS. */
    expect_status(set_ctx(api, "set-1", "s-1", "F2", 10000), ALREADY_EXISTS, NULL);
    expect_status(aircraft(api, "set-1", "s-1", "ac-1", ARM, 10000), ALREADY_EXISTS, NULL);
    agent_expect_nothing_queued(s, "set-1", session, 3);

    /* The session is reconciled now: an authoritative clear is refused. */
    expect_status(clear_ctx(api, "set-1", "c-9", "", true), INVALID_ARGUMENT,
                  "flight ID may be empty only while reconciling a fresh Relay session");
    agent_close(s);
}

Test(commands, an_acknowledged_context_without_aircraft_id_matches_another_does_not)
{
    char session[64];
    struct rc_stream *s = agent_open_reconciled("match-1", session, sizeof(session));
    agent_expect_nothing_queued(s, "match-1", session, 1);
    struct rc_relay_msg m;

    struct call *c = set_ctx(api, "match-1", "m-1", "F1", 10000);
    agent_expect(s, RC_RELAY_SET_OPERATION_CONTEXT, &m);
    Aeroarc__Agent__V1__OperationContext old_agent = ctx_of("F1", "");
    ack_context(s, "m-1", ALREADY, &old_agent);
    expect_status(c, OK, NULL);

    c = set_ctx(api, "match-1", "m-2", "F2", 10000);
    agent_expect(s, RC_RELAY_SET_OPERATION_CONTEXT, &m);
    Aeroarc__Agent__V1__OperationContext wrong = ctx_of("F1", "ac-1");
    ack_context(s, "m-2", APPLIED, &wrong);
    expect_status(c, INTERNAL, NULL);

    /* The mismatch fenced the session: an authoritative clear goes out. */
    c = clear_ctx(api, "match-1", "m-3", "", true);
    const Aeroarc__Agent__V1__RelayStreamMessage *msg =
        agent_expect(s, RC_RELAY_CLEAR_OPERATION_CONTEXT, &m);
    cr_assert(msg->clear_operation_context->authoritative);
    ack_context(s, "m-3", APPLIED, NULL);
    expect_status(c, OK, NULL);
    agent_close(s);
}

Test(commands, arm_round_trip_and_a_result_for_another_aircraft_is_internal)
{
    char session[64];
    struct rc_stream *s = agent_open_reconciled("arm-1", session, sizeof(session));
    agent_expect_nothing_queued(s, "arm-1", session, 1);
    struct rc_relay_msg m;

    struct call *c = aircraft(api, "arm-1", "a-1", "ac-7", ARM, 10000);
    const Aeroarc__Agent__V1__RelayStreamMessage *msg =
        agent_expect(s, RC_RELAY_AIRCRAFT_COMMAND, &m);
    cr_assert_str_eq(msg->aircraft_command->aircraft_id, "ac-7");
    cr_assert_eq(msg->aircraft_command->type, ARM);
    aircraft_result(s, "a-1", "ac-7", ACCEPTED);
    call_join(c);
    cr_assert_eq(c->st.code, OK, "%s", c->st.message);
    Aeroarc__Relay__V1__SendAircraftCommandResponse *r =
        aeroarc__relay__v1__send_aircraft_command_response__unpack(NULL, c->resp_len, c->resp);
    cr_assert_not_null(r);
    cr_assert_eq(r->result->status, ACCEPTED);
    cr_assert_str_eq(r->result->message, "done");
    aeroarc__relay__v1__send_aircraft_command_response__free_unpacked(r, NULL);
    call_free(c);

    c = aircraft(api, "arm-1", "a-2", "ac-7", ARM, 10000);
    agent_expect(s, RC_RELAY_AIRCRAFT_COMMAND, &m);
    aircraft_result(s, "a-2", "ac-8", ACCEPTED);
    expect_status(c, INTERNAL, "agent answered the command for another aircraft");
    /* That was the agent's result: kept, an exact retry gets it again and
     * nothing is sent (SPEC section 10: only agent results are kept). */
    expect_status(aircraft(api, "arm-1", "a-2", "ac-7", ARM, 10000), INTERNAL,
                  "agent answered the command for another aircraft");
    agent_expect_nothing_queued(s, "arm-1", session, 2);
    agent_close(s);
}

Test(commands, two_callers_share_one_delivery_and_acks_flow_while_it_waits)
{
    char session[64];
    struct rc_stream *s = agent_open_reconciled("join-1", session, sizeof(session));
    agent_expect_nothing_queued(s, "join-1", session, 1);
    struct rc_relay_msg m;

    struct call *a = aircraft(api, "join-1", "j-1", "ac-1", ARM, 10000);
    agent_expect(s, RC_RELAY_AIRCRAFT_COMMAND, &m);
    struct call *b = aircraft(api, "join-1", "j-1", "ac-1", ARM, 10000);
    /* The second caller is waiting once the relay counts two pending:
     * meanwhile frames are acked as usual. */
    for (uint64_t seq = 2; seq < 12; seq++)
        agent_expect_nothing_queued(s, "join-1", session, seq);
    aircraft_result(s, "j-1", "ac-1", ACCEPTED);
    expect_status(a, OK, NULL);
    expect_status(b, OK, NULL);
    agent_expect_nothing_queued(s, "join-1", session, 12);
    agent_close(s);
}

Test(commands, supersession_while_waiting_is_aborted_and_the_old_stream_is_not_heard)
{
    char session[64];
    struct rc_stream *s = agent_open_reconciled("sup-1", session, sizeof(session));
    agent_expect_nothing_queued(s, "sup-1", session, 1);
    struct rc_relay_msg m;

    struct call *c = set_ctx(api, "sup-1", "u-1", "F1", 10000);
    agent_expect(s, RC_RELAY_SET_OPERATION_CONTEXT, &m);
    harness_register(agents, "sup-1", NULL, 0); /* a new session */
    expect_status(c, ABORTED,
                  "agent session retired while awaiting operation-context acknowledgement");
    agent_close(s);
}

Test(commands, no_answer_ends_deadline_exceeded_and_is_sent_again_on_retry)
{
    char session[64];
    struct rc_stream *s = agent_open_reconciled("late-1", session, sizeof(session));
    agent_expect_nothing_queued(s, "late-1", session, 1);
    struct rc_relay_msg m;

    /* command_timeout_s = 2 bounds the wait under the caller's 10 s. */
    int64_t t0 = harness_now_ms();
    struct call *c = aircraft(api, "late-1", "l-1", "ac-1", ARM, 10000);
    agent_expect(s, RC_RELAY_AIRCRAFT_COMMAND, &m);
    expect_status(c, DEADLINE, NULL);
    cr_assert_lt(harness_now_ms() - t0, 8000);
    /* A result now is nobody's: ignored, the stream goes on. */
    aircraft_result(s, "l-1", "ac-1", ACCEPTED);
    agent_expect_nothing_queued(s, "late-1", session, 2);

    /* An exact retry of a command that ended without a result is sent again. */
    c = aircraft(api, "late-1", "l-1", "ac-1", ARM, 10000);
    agent_expect(s, RC_RELAY_AIRCRAFT_COMMAND, &m);
    aircraft_result(s, "l-1", "ac-1", ACCEPTED);
    expect_status(c, OK, NULL);
    agent_close(s);
}

Test(commands, a_second_set_waits_for_the_first)
{
    char session[64];
    struct rc_stream *s = agent_open_reconciled("slot-1", session, sizeof(session));
    agent_expect_nothing_queued(s, "slot-1", session, 1);
    struct rc_relay_msg m;

    struct call *a = set_ctx(api, "slot-1", "q-1", "F1", 10000);
    agent_expect(s, RC_RELAY_SET_OPERATION_CONTEXT, &m);
    struct call *b = set_ctx(api, "slot-1", "q-2", "F2", 10000);
    /* q-2 is not sent while q-1 holds the slot. */
    for (uint64_t seq = 2; seq < 6; seq++)
        agent_expect_nothing_queued(s, "slot-1", session, seq);
    Aeroarc__Agent__V1__OperationContext f1 = ctx_of("F1", "ac-1");
    ack_context(s, "q-1", APPLIED, &f1);
    set_applied(s, "q-2", "F2");
    expect_status(a, OK, NULL);
    expect_status(b, OK, NULL);
    agent_close(s);
}

/* SPEC section 10: the slot is waited for within the caller's deadline;
 * command_timeout_s (2 s here) bounds the wait for the result, from
 * delivery on. q-4 waits the 2 s q-3 holds the slot (unanswered), then is
 * delivered and answered within its own 10 s. */
Test(commands, the_slot_wait_does_not_count_against_command_timeout_s)
{
    char session[64];
    struct rc_stream *s = agent_open_reconciled("slot-2", session, sizeof(session));
    agent_expect_nothing_queued(s, "slot-2", session, 1);
    struct rc_relay_msg m;

    struct call *a = set_ctx(api, "slot-2", "q-3", "F3", 10000);
    agent_expect(s, RC_RELAY_SET_OPERATION_CONTEXT, &m);
    struct call *b = set_ctx(api, "slot-2", "q-4", "F4", 10000);
    expect_status(a, DEADLINE, NULL);
    set_applied(s, "q-4", "F4");
    expect_status(b, OK, NULL);
    agent_close(s);
}

Test(commands_off, without_control_the_commands_are_unimplemented, .timeout = 60)
{
    struct relay_proc r;
    harness_prepare(&r);
    /* Identities without a CA: still control disabled, not a bad config. */
    struct rc_channel *ch =
        harness_start(&r, NULL, "[control]\nclient_ca_file =\nallowed_identities = api\n");
    expect_status(set_ctx(ch, "a", "c-1", "F1", 10000), UNIMPLEMENTED,
                  "operation-context control is disabled until mTLS control authentication "
                  "is configured");
    expect_status(aircraft(ch, "a", "c-1", "ac", ARM, 10000), UNIMPLEMENTED, NULL);
    harness_finish(&r, &ch);
}

/* ---- the reconciliation gate (SPEC.md section 9 step 8, section 10) ------ */

#define WAL "5e0c1c8a-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
#define RECONCILE_TEXT "operation context has not been reconciled for this Relay session"
#define GET_STATUS "/aeroarc.relay.v1.RelayControl/GetDroneStatus"

/* A generation-2 frame stamped with (flight, intent, version). */
static void send_frame(struct rc_stream *s, const char *agent, const char *session, uint64_t seq,
                       const char *flight, const char *intent, uint32_t version)
{
    struct rc_frame f = *harness_frame(agent, seq);
    f.session_id = session;
    f.wal_id = WAL;
    f.flight_id = flight;
    f.intent_id = intent;
    f.intent_version = version;
    cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
}

/* The next message the agent gets is the ack of seq with this status. */
static void expect_ack(struct rc_stream *s, uint64_t seq, int status, const char *text)
{
    struct rc_relay_msg m;
    cr_assert_eq(rc_stream_recv_gen2(s, &m, 10000), 1, "no ack for %llu",
                 (unsigned long long)seq);
    cr_assert_eq(m.arm, RC_RELAY_TELEMETRY_ACK, "agent got %s", rc_relay_arm_name(m.arm));
    cr_assert_eq(m.ack.seq, seq);
    cr_assert_eq(m.ack.status, status, "seq %llu: status %d \"%s\"", (unsigned long long)seq,
                 m.ack.status, m.ack.error ? m.ack.error : "");
    if (text)
        cr_assert_str_eq(m.ack.error, text);
}

static double metric(const char *series) { return fixture_metric(&relay, series); }

/* The sink line of agent/seq (the first, into line); how many there are. */
static int sink_line(const char *agent, uint64_t seq, char *line, size_t len)
{
    char dir[450], a[200], q[40];
    snprintf(dir, sizeof(dir), "%s/data", relay.dir);
    char *all = harness_read_jsonl_dir(dir, NULL);
    snprintf(a, sizeof(a), "\"agent_id\":\"%s\"", agent);
    snprintf(q, sizeof(q), "\"seq\":%llu", (unsigned long long)seq);
    size_t ql = strlen(q);
    int found = 0;
    for (const char *p = all; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *hit = memmem(p, n, q, ql);
        if (memmem(p, n, a, strlen(a)) && hit && (hit[ql] == ',' || hit[ql] == '}') &&
            !found++ && line)
            snprintf(line, len, "%.*s", (int)n, p);
        p = end ? end + 1 : p + n;
    }
    free(all);
    return found;
}

/* The context agent/seq was recorded with: "flight/intent/version". */
static void expect_recorded(const char *agent, uint64_t seq, const char *want)
{
    char line[8192], got[600];
    cr_assert_eq(sink_line(agent, seq, line, sizeof(line)), 1, "%s seq %llu not in the sink",
                 agent, (unsigned long long)seq);
    const char *keys[] = {"\"flight_id\":\"", "\"intent_id\":\"", "\"intent_version\":"};
    size_t o = 0;
    for (int i = 0; i < 3; i++) {
        const char *p = strstr(line, keys[i]);
        cr_assert_not_null(p, "%s missing: %s", keys[i], line);
        p += strlen(keys[i]);
        size_t n = strcspn(p, i < 2 ? "\"" : ",}");
        o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%.*s", i ? "/" : "", (int)n, p);
    }
    cr_assert_str_eq(got, want, "%s", line);
}

Test(commands, the_gate_holds_frames_until_a_set_and_releases_them_in_order)
{
    char session[64];
    struct rc_stream *s = agent_open("gate-1", session, sizeof(session));
    double held = metric("aero_relay_frames_held_unreconciled_total");
    /* A fresh session with control on: not reconciled; the frames stamp
     * a flight of their own. */
    for (uint64_t seq = 1; seq <= 5; seq++)
        send_frame(s, "gate-1", session, seq, "flight-7", "intent-x", 9);
    /* Held, not refused: the Set is the first thing the agent receives
     * (an ack sent before it would come first), the stream still read. */
    struct context_cmd a = {.agent = "gate-1", .id = "g-1", .flight = "F1"};
    struct call *c = context_delivered(s, &a);
    cr_assert_eq(sink_line("gate-1", 1, NULL, 0), 0, "a frame reached the sink before the Set");
    /* The Set came on another connection: the stream may still be reading. */
    cr_assert(fixture_metric_reaches(&relay, "aero_relay_frames_held_unreconciled_total", held + 5,
                                     10000));
    cr_assert_eq(metric("aero_relay_frames_held_unreconciled_total") - held, 5);
    Aeroarc__Agent__V1__OperationContext f1 = ctx_of("F1", "ac-1");
    ack_context(s, "g-1", APPLIED, &f1);
    /* Released in order, each acked OK and recorded with the Set's context. */
    for (uint64_t seq = 1; seq <= 5; seq++)
        expect_ack(s, seq, RC_ACK_OK, NULL);
    expect_status(c, OK, NULL);
    for (uint64_t seq = 1; seq <= 5; seq++)
        expect_recorded("gate-1", seq, "F1/intent-1/3");
    /* Reconciled: the next frame goes straight through. */
    send_frame(s, "gate-1", session, 6, "F1", "intent-1", 3);
    expect_ack(s, 6, RC_ACK_OK, NULL);
    agent_close(s);
}

Test(commands, still_unreconciled_after_gen2_hold_s_is_retry_with_backoff)
{
    char session[64];
    struct rc_stream *s = agent_open("gate-2", session, sizeof(session));
    double refused = metric("aero_relay_frames_refused_unreconciled_total");
    int64_t t0 = harness_now_ms();
    send_frame(s, "gate-2", session, 1, "flight-7", "intent-x", 9);
    send_frame(s, "gate-2", session, 2, "flight-7", "intent-x", 9);
    /* gen2_hold_s = 3: held that long, then refused in order. */
    expect_ack(s, 1, RC_ACK_RETRY_WITH_BACKOFF, RECONCILE_TEXT);
    cr_assert_geq(harness_now_ms() - t0, 2500, "refused before gen2_hold_s");
    expect_ack(s, 2, RC_ACK_RETRY_WITH_BACKOFF, RECONCILE_TEXT);
    cr_assert_eq(metric("aero_relay_frames_refused_unreconciled_total") - refused, 2);
    cr_assert_eq(sink_line("gate-2", 1, NULL, 0), 0);
    /* The stream goes on: an authoritative clear opens the gate. */
    reconcile(s, "gate-2");
    send_frame(s, "gate-2", session, 3, "flight-7", "intent-x", 9);
    expect_ack(s, 3, RC_ACK_OK, NULL);
    /* No authoritative context: none is recorded, whatever the frame says. */
    expect_recorded("gate-2", 3, "//0");
    agent_close(s);
}

Test(commands, the_gate_is_opened_by_an_authoritative_clear)
{
    char session[64];
    struct rc_stream *s = agent_open("gate-3", session, sizeof(session));
    send_frame(s, "gate-3", session, 1, "flight-7", "intent-x", 9);
    reconcile(s, "gate-3"); /* asserts the clear comes before any ack */
    expect_ack(s, 1, RC_ACK_OK, NULL);
    expect_recorded("gate-3", 1, "//0");
    agent_close(s);
}

Test(commands, seed_streams_are_never_gated)
{
    harness_register(agents, "seed-gate-1", NULL, 0);
    struct rc_status st;
    struct rc_stream *seed = rc_stream_open(agents, "seed-gate-1", NULL, 0, &st);
    cr_assert_not_null(seed, "%s", st.message);
    cr_assert_eq(rc_stream_send_frame(seed, harness_frame("seed-gate-1", 1), 5000), 0);
    struct rc_ack ack;
    cr_assert_eq(rc_stream_recv_ack(seed, &ack, 10000), 1);
    cr_assert_eq(ack.status, RC_ACK_OK, "%s", ack.error ? ack.error : "");
    /* A seed frame keeps its own flight. */
    char line[8192];
    cr_assert_eq(sink_line("seed-gate-1", 1, line, sizeof(line)), 1);
    cr_assert_not_null(strstr(line, "\"flight_id\":\"flight-7\""), "%s", line);
    agent_close(seed);
}

Test(commands, a_timed_out_set_fences_the_session_again)
{
    char session[64];
    struct rc_stream *s = agent_open_reconciled("fence-1", session, sizeof(session));
    send_frame(s, "fence-1", session, 1, "", "", 0);
    expect_ack(s, 1, RC_ACK_OK, NULL);
    /* Written, never answered: command_timeout_s = 2, the outcome unknown. */
    struct call *c = set_ctx(api, "fence-1", "f-1", "F1", 10000);
    struct rc_relay_msg m;
    agent_expect(s, RC_RELAY_SET_OPERATION_CONTEXT, &m);
    expect_status(c, DEADLINE, NULL);
    /* Fenced: frames are held again, and an authoritative clear (refused
     * while reconciled) goes out before their acks and releases them. */
    send_frame(s, "fence-1", session, 2, "", "", 0);
    reconcile(s, "fence-1");
    expect_ack(s, 2, RC_ACK_OK, NULL);
    agent_close(s);
}

Test(commands, a_new_session_of_an_unauthenticated_agent_starts_unreconciled)
{
    char session[64];
    struct rc_stream *s = agent_open("noauth-1", session, sizeof(session));
    apply_context(s, "noauth-1", "F1");
    send_frame(s, "noauth-1", session, 1, "F1", "intent-1", 3);
    expect_ack(s, 1, RC_ACK_OK, NULL);
    agent_close(s);
    /* Anyone may Register this agent id ([auth] mode = none): the new
     * session takes over nothing. */
    s = agent_open("noauth-1", session, sizeof(session));
    send_frame(s, "noauth-1", session, 2, "F1", "intent-1", 3);
    reconcile(s, "noauth-1"); /* allowed (unreconciled), before the ack */
    expect_ack(s, 2, RC_ACK_OK, NULL);
    agent_close(s);
}

Test(commands, a_replayed_frame_keeps_its_flight_a_forged_stamp_does_not)
{
    char session[64];
    struct rc_stream *s = agent_open("stamp-1", session, sizeof(session));
    apply_context(s, "stamp-1", "F1");
    apply_context(s, "stamp-1", "F2");
    send_frame(s, "stamp-1", session, 1, "F1", "intent-1", 3); /* captured in F1 */
    send_frame(s, "stamp-1", session, 2, "F9", "intent-1", 3); /* never given */
    send_frame(s, "stamp-1", session, 3, "F1", "intent-1", 4); /* not F1's version */
    send_frame(s, "stamp-1", session, 4, "", "", 0);
    for (uint64_t seq = 1; seq <= 4; seq++)
        expect_ack(s, seq, RC_ACK_OK, NULL);
    expect_recorded("stamp-1", 1, "F1/intent-1/3");
    expect_recorded("stamp-1", 2, "F2/intent-1/3");
    expect_recorded("stamp-1", 3, "F2/intent-1/3");
    expect_recorded("stamp-1", 4, "F2/intent-1/3");

    /* DroneStatus shows the authoritative context, not the frames'. */
    Aeroarc__Relay__V1__GetDroneStatusRequest req = AEROARC__RELAY__V1__GET_DRONE_STATUS_REQUEST__INIT;
    req.drone_id = "stamp-1";
    struct call *c = call_start(api, GET_STATUS, &req.base, 10000);
    call_join(c);
    cr_assert_eq(c->st.code, OK, "%s", c->st.message);
    Aeroarc__Relay__V1__GetDroneStatusResponse *r =
        aeroarc__relay__v1__get_drone_status_response__unpack(NULL, c->resp_len, c->resp);
    cr_assert_not_null(r);
    cr_assert_str_eq(r->drone->flight_id, "F2");
    cr_assert_str_eq(r->drone->intent_id, "intent-1");
    cr_assert_eq(r->drone->intent_version, 3);
    aeroarc__relay__v1__get_drone_status_response__free_unpacked(r, NULL);
    call_free(c);
    agent_close(s);
}

Test(commands, frames_held_at_once_are_bounded_by_max_inflight)
{
    char session[64];
    struct rc_stream *s = agent_open("bound-1", session, sizeof(session));
    /* max_inflight = 100: the 101st frame held at once is refused at once,
     * so its ack is the first thing the agent gets. */
    for (uint64_t seq = 1; seq <= 101; seq++)
        send_frame(s, "bound-1", session, seq, "", "", 0);
    expect_ack(s, 101, RC_ACK_RETRY_WITH_BACKOFF, RECONCILE_TEXT);
    apply_context(s, "bound-1", "F1");
    for (uint64_t seq = 1; seq <= 100; seq++)
        expect_ack(s, seq, RC_ACK_OK, NULL);
    agent_close(s);
}

/* aeroarc-client's command subcommands, run on a thread while this one
 * plays the agent; their stdout lands in `out`. */
struct cli_run {
    pthread_t thread;
    char cmd[2048];
    int status;
};

static void *cli_main(void *arg)
{
    struct cli_run *r = arg;
    r->status = system(r->cmd);
    return NULL;
}

static void cli_start(struct cli_run *r, const char *args, const char *out)
{
    snprintf(r->cmd, sizeof(r->cmd),
             "%s/aeroarc-client --target %s --ca %s --cert %s/uri.pem --key %s/uri.key "
             "--server-name localhost %s > %s/%s 2>&1",
             AERO_BINARY_DIR, relay.target, ca, relay.dir, relay.dir, args, relay.dir, out);
    cr_assert_eq(pthread_create(&r->thread, NULL, cli_main, r), 0);
}

static void cli_expect(struct cli_run *r, int exit_status, const char *out, const char *line)
{
    pthread_join(r->thread, NULL);
    char path[500];
    snprintf(path, sizeof(path), "%s/%s", relay.dir, out);
    char *text = harness_read_file(path, NULL);
    cr_assert_not_null(text);
    cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == exit_status,
              "exit %d: %s", r->status, text);
    cr_assert_str_eq(text, line);
    free(text);
}

Test(commands, aeroarc_client_sets_the_context_and_arms)
{
    char session[64];
    struct rc_stream *s = agent_open_reconciled("cli-1", session, sizeof(session));
    struct rc_relay_msg m;
    struct cli_run r;
    cli_start(&r, "set-context cli-1 --id k-1 --flight F1 --intent intent-1 --version 3 "
                  "--aircraft ac-1", "set.out");
    agent_expect(s, RC_RELAY_SET_OPERATION_CONTEXT, &m);
    Aeroarc__Agent__V1__OperationContext f1 = ctx_of("F1", "ac-1");
    ack_context(s, "k-1", APPLIED, &f1);
    cli_expect(&r, 0, "set.out",
               "result command_id=k-1 status=STATUS_APPLIED error= "
               "active_context=F1/intent-1/3/ac-1\n");

    cli_start(&r, "arm cli-1 --id k-2 --aircraft ac-1", "arm.out");
    const Aeroarc__Agent__V1__RelayStreamMessage *msg =
        agent_expect(s, RC_RELAY_AIRCRAFT_COMMAND, &m);
    cr_assert_eq(msg->aircraft_command->type, ARM);
    aircraft_result(s, "k-2", "ac-1", ACCEPTED);
    cli_expect(&r, 0, "arm.out",
               "result command_id=k-2 aircraft_id=ac-1 status=STATUS_ACCEPTED message=done\n");

    /* A refused call: its status line, exit 1. */
    cli_start(&r, "clear-context cli-1 --id k-3 --authoritative", "clear.out");
    cli_expect(&r, 1, "clear.out",
               "status=INVALID_ARGUMENT clear-context: flight ID may be empty only while "
               "reconciling a fresh Relay session\n");
    agent_close(s);
}

/* gen2_hold_s = 0: nothing is held. */
TestSuite(commands_no_hold, .init = start_no_hold, .fini = stop, .timeout = 120);

Test(commands_no_hold, an_unreconciled_frame_is_refused_at_once)
{
    char session[64];
    struct rc_stream *s = agent_open("nohold-1", session, sizeof(session));
    send_frame(s, "nohold-1", session, 1, "", "", 0);
    expect_ack(s, 1, RC_ACK_RETRY_WITH_BACKOFF, RECONCILE_TEXT);
    reconcile(s, "nohold-1");
    send_frame(s, "nohold-1", session, 2, "", "", 0);
    expect_ack(s, 2, RC_ACK_OK, NULL);
    agent_close(s);
}

/* [auth] mode = bearer: the agents are authenticated. */
TestSuite(commands_bearer, .init = start_bearer, .fini = stop, .timeout = 120);

Test(commands_bearer, an_authenticated_re_register_takes_over_the_reconciled_context)
{
    char session[64];
    struct rc_stream *s = agent_open("inherit-1", session, sizeof(session));
    apply_context(s, "inherit-1", "F1");
    agent_close(s); /* a short disconnect */
    s = agent_open("inherit-1", session, sizeof(session));
    /* Not gated: the first thing the agent gets is the frame's ack. */
    send_frame(s, "inherit-1", session, 1, "", "", 0);
    expect_ack(s, 1, RC_ACK_OK, NULL);
    expect_recorded("inherit-1", 1, "F1/intent-1/3");
    /* Reconciled, so an authoritative clear is refused. */
    expect_status(clear_ctx(api, "inherit-1", "c-1", "", true), INVALID_ARGUMENT,
                  "flight ID may be empty only while reconciling a fresh Relay session");
    agent_close(s);
}

Test(commands_bearer, nothing_is_taken_over_while_a_written_set_has_no_outcome)
{
    char session[64];
    struct rc_stream *s = agent_open("unknown-1", session, sizeof(session));
    apply_context(s, "unknown-1", "F1");
    struct call *c = set_ctx(api, "unknown-1", "u-1", "F2", 10000);
    struct rc_relay_msg m;
    agent_expect(s, RC_RELAY_SET_OPERATION_CONTEXT, &m);
    /* The agent re-registers while the Set is written: its outcome is
     * unknown, so the new session starts unreconciled. */
    char session2[64];
    struct rc_stream *s2 = agent_open("unknown-1", session2, sizeof(session2));
    expect_status(c, ABORTED,
                  "agent session retired while awaiting operation-context acknowledgement");
    send_frame(s2, "unknown-1", session2, 1, "F1", "intent-1", 3);
    reconcile(s2, "unknown-1"); /* allowed, and before the frame's ack */
    expect_ack(s2, 1, RC_ACK_OK, NULL);
    agent_close(s);
    agent_close(s2);
}

/*
 * aeroarc-client plays the agent too: `stream --protocol multiplexed`
 * answers the relay's commands as the upstream agent does, so an operator
 * can walk the command path with the project's own tools only (docs/
 * commands.md): its frames are held until the context is set, then acked;
 * an ARM is accepted.
 */
Test(commands, aeroarc_client_as_the_agent_answers_set_context_and_arm)
{
    struct cli_run agent, r;
    double held = metric("aero_relay_frames_held_unreconciled_total") + 3;
    cli_start(&agent, "stream --agent cli-agent --protocol multiplexed --frames 3 --window 3 "
                      "--hold 4", "agent.out");
    cr_assert(fixture_metric_reaches(&relay, "aero_relay_frames_held_unreconciled_total", held,
                                     10000),
              "the agent's 3 frames were never held");

    cli_start(&r, "set-context cli-agent --id s-1 --flight F1 --intent intent-1 --version 3 "
                  "--aircraft ac-1", "set.out");
    cli_expect(&r, 0, "set.out",
               "result command_id=s-1 status=STATUS_APPLIED error= "
               "active_context=F1/intent-1/3/ac-1\n");
    cli_start(&r, "arm cli-agent --id a-1 --aircraft ac-1", "arm.out");
    cli_expect(&r, 0, "arm.out",
               "result command_id=a-1 aircraft_id=ac-1 status=STATUS_ACCEPTED message=\n");

    pthread_join(agent.thread, NULL);
    char path[500];
    snprintf(path, sizeof(path), "%s/agent.out", relay.dir);
    char *text = harness_read_file(path, NULL);
    cr_assert_not_null(text);
    cr_assert(WIFEXITED(agent.status) && WEXITSTATUS(agent.status) == 0, "exit %d: %s",
              agent.status, text);
    cr_expect(strstr(text, "command arm=set_operation_context command_id=s-1 answer=applied"),
              "%s", text);
    cr_expect(strstr(text, "command arm=aircraft_command command_id=a-1 type=1 answer=accepted"),
              "%s", text);
    for (int seq = 1; seq <= 3; seq++) {
        char want[64];
        snprintf(want, sizeof(want), "ack seq=%d status=STATUS_OK frame_id= ", seq);
        cr_expect(strstr(text, want), "no OK ack for frame %d:\n%s", seq, text);
    }
    free(text);
}

/* ---- a flood of pending commands ---------------------------------------- */

static void start_patient(void)
{
    agent_token = NULL;
    hold_s = 3;
    command_timeout_s = 120; /* the commands stay pending for the whole test */
    start_with();
}

TestSuite(commands_flood, .init = start_patient, .fini = stop, .timeout = 180);

#define FLOOD_AGENTS 100
#define FLOOD_PER_AGENT 10

/* A SendAircraftCommand started and left pending: a streaming call on
 * the API's channel, so a thousand need no thread each. */
static struct rc_stream *aircraft_async(struct rc_channel *ch, const char *agent, const char *id)
{
    Aeroarc__Agent__V1__AircraftCommand cmd = AEROARC__AGENT__V1__AIRCRAFT_COMMAND__INIT;
    cmd.command_id = (char *)id;
    cmd.aircraft_id = "ac-1";
    cmd.type = ARM;
    Aeroarc__Relay__V1__SendAircraftCommandRequest req =
        AEROARC__RELAY__V1__SEND_AIRCRAFT_COMMAND_REQUEST__INIT;
    req.agent_id = (char *)agent;
    req.command = &cmd;
    uint8_t buf[256];
    size_t n = protobuf_c_message_pack(&req.base, buf);
    struct rc_status st;
    struct rc_stream *c = rc_stream_open_method(ch, AIRCRAFT, 0, &st);
    cr_assert_not_null(c, "%s", st.message);
    cr_assert_eq(rc_stream_send(c, buf, n, 5000), 0);
    cr_assert_eq(rc_stream_close_send(c, 5000), 0);
    return c;
}

struct pending_at {
    const char *series;
    double want;
};

static bool pending_is(void *arg)
{
    struct pending_at *p = arg;
    return metric(p->series) == p->want;
}

/*
 * 1,000 aircraft commands pending on 100 agents that never answer: a
 * stream of another agent keeps getting every ack, each well within the
 * deadline; the waiting callers are memory, not threads; when they go
 * away (cancel) every one leaves at once, not at its deadline.
 */
Test(commands_flood, acks_keep_flowing_while_1000_commands_are_pending)
{
    struct rc_stream *agent[FLOOD_AGENTS];
    for (int i = 0; i < FLOOD_AGENTS; i++) {
        char id[32], session[64];
        snprintf(id, sizeof(id), "flood-%d", i);
        agent[i] = agent_open(id, session, sizeof(session));
    }
    /* Two API connections: each stays under max_streams_per_connection. */
    struct rc_channel *api2 = tls("uri");
    struct rc_stream *cmd[FLOOD_AGENTS * FLOOD_PER_AGENT];
    for (int i = 0; i < FLOOD_AGENTS * FLOOD_PER_AGENT; i++) {
        char id[32], agent_id[32];
        snprintf(agent_id, sizeof(agent_id), "flood-%d", i % FLOOD_AGENTS);
        snprintf(id, sizeof(id), "flood-cmd-%d", i);
        cmd[i] = aircraft_async(i % 2 ? api2 : api, agent_id, id);
    }
    struct pending_at all = {"aero_relay_commands_pending{kind=\"aircraft\"}",
                             FLOOD_AGENTS * FLOOD_PER_AGENT};
    cr_assert(harness_wait_for(pending_is, &all, 30000), "pending: %f of %d",
              metric(all.series), FLOOD_AGENTS * FLOOD_PER_AGENT);

    /* The probe streams 200 frames, one at a time: every ack, each OK. */
    char session[64];
    struct rc_stream *probe = agent_open_reconciled("flood-probe", session, sizeof(session));
    for (uint64_t seq = 1; seq <= 200; seq++)
        agent_expect_nothing_queued(probe, "flood-probe", session, seq);
    cr_assert_eq(metric(all.series), FLOOD_AGENTS * FLOOD_PER_AGENT, "commands ended meanwhile");

    /* The callers leave: every waiter goes with them, long before 120 s. */
    for (int i = 0; i < FLOOD_AGENTS * FLOOD_PER_AGENT; i++)
        rc_stream_cancel(cmd[i]);
    struct pending_at none = {all.series, 0};
    cr_assert(harness_wait_for(pending_is, &none, 10000), "still pending after the cancels: %f",
              metric(all.series));
    for (int i = 0; i < FLOOD_AGENTS * FLOOD_PER_AGENT; i++)
        rc_stream_free(cmd[i]);
    agent_close(probe);
    for (int i = 0; i < FLOOD_AGENTS; i++)
        agent_close(agent[i]);
    rc_close(api2);
}

/* 10,000 commands waiting at once, one per agent (2,000 under ASan): each
 * a caller kept as memory; all of them pending, then all gone when their
 * callers leave. */
#if defined(__SANITIZE_ADDRESS__)
#define MANY 2000 /* ASan's relay: each stream costs several times the memory */
#else
#define MANY 10000
#endif
#define PER_CHANNEL 900 /* under max_streams_per_connection (1000) */

Test(commands_flood, ten_thousand_commands_wait_at_once, .timeout = 170)
{
    static struct rc_stream *agent[MANY], *cmd[MANY];
    struct rc_channel *ach[MANY / PER_CHANNEL + 1], *cch[MANY / PER_CHANNEL + 1];
    size_t nch = MANY / PER_CHANNEL + 1;
    for (size_t c = 0; c < nch; c++) {
        ach[c] = tls(NULL);
        cch[c] = tls("uri");
    }
    double opened = metric("aero_relay_streams_opened_total");
    for (int i = 0; i < MANY; i++) {
        char id[32];
        struct rc_register_result reg;
        struct rc_status st;
        snprintf(id, sizeof(id), "many-%d", i);
        struct rc_channel *ch = ach[i / PER_CHANNEL];
        cr_assert_eq(rc_register(ch, id, "1", "t", &reg, &st, 10000), 0, "%s", st.message);
        agent[i] = rc_stream_open_gen2(ch, id, reg.session_id, NULL, 0, &st);
        cr_assert_not_null(agent[i], "%s", st.message);
    }
    /* Every stream attached before its command is asked. */
    cr_assert(fixture_metric_reaches(&relay, "aero_relay_streams_opened_total", opened + MANY,
                                     60000),
              "%g of %d streams attached", metric("aero_relay_streams_opened_total") - opened,
              MANY);
    for (int i = 0; i < MANY; i++) {
        char id[32], cid[32];
        snprintf(id, sizeof(id), "many-%d", i);
        snprintf(cid, sizeof(cid), "many-cmd-%d", i);
        cmd[i] = aircraft_async(cch[i / PER_CHANNEL], id, cid);
    }
    struct pending_at all = {"aero_relay_commands_pending{kind=\"aircraft\"}", MANY};
    cr_assert(harness_wait_for(pending_is, &all, 60000), "pending: %f of %d", metric(all.series),
              MANY);
    for (int i = 0; i < MANY; i++)
        rc_stream_cancel(cmd[i]);
    struct pending_at none = {all.series, 0};
    cr_assert(harness_wait_for(pending_is, &none, 30000), "still pending after the cancels: %f",
              metric(all.series));
    for (int i = 0; i < MANY; i++) {
        rc_stream_free(cmd[i]);
        rc_stream_cancel(agent[i]);
        rc_stream_free(agent[i]);
    }
    for (size_t c = 0; c < nch; c++) {
        rc_close(ach[c]);
        rc_close(cch[c]);
    }
}
