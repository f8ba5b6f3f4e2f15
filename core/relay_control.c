/*
 * relay_control.c - the control-plane RPCs. Each status answer is built
 * from session_table copies taken under the table's shard locks, so a
 * status is never torn by a concurrent Register or disconnect. The
 * commands of SPEC.md section 10 are checked here in the SPEC's order and
 * handed to the session's command table with their kind's rules (the
 * result checks below); the call is finished when the entry completes.
 * Any worker thread.
 */
#include "relay_control.h"

#include "aeroarc/relay/v1/relay.pb-c.h"
#include "agent_gateway.h"
#include "call_auth.h"
#include "command_table.h"
#include "control_auth.h"
#include "frame_codec.h"
#include "mono_clock.h"
#include "rpc_stream.h"
#include "session_table.h"
#include "wire_prepare.h"

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

struct context_visit {
    const char *session_id;
    struct command_session_state state;
};

static void context_visit(void *arg, struct session_visit *v)
{
    struct context_visit *cv = arg;
    if (*v->ext && strcmp(v->session_id, cv->session_id) == 0)
        command_table_state(*v->ext, &cv->state);
}

static void copy_trunc(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* With control on, a status shows the session's authoritative context
 * (SPEC.md section 9), none while there is none, never the frames'. */
static void authoritative(struct relay *relay, struct session_info *in)
{
    if (!relay->control)
        return;
    struct context_visit cv = {.session_id = in->session_id};
    session_table_visit(relay->sessions, in->agent_id, context_visit, &cv);
    const struct command_context *c = &cv.state.current;
    bool has = cv.state.has_context;
    copy_trunc(in->flight_id, sizeof(in->flight_id), has ? c->flight_id : "");
    copy_trunc(in->intent_id, sizeof(in->intent_id), has ? c->intent_id : "");
    in->intent_version = has ? c->intent_version : 0;
}

static void fill_status(Aeroarc__Relay__V1__DroneStatus *st, struct session_info *in,
                        const char *relay_id)
{
    aeroarc__relay__v1__drone_status__init(st);
    st->drone_id = in->agent_id;
    st->session_id = in->session_id;
    st->agent_id = in->agent_id;
    st->relay_id = (char *)relay_id;
    st->connected_at_unix_ns = in->connected_at_unix_ns;
    st->last_heartbeat_unix_ns = in->last_heartbeat_unix_ns;
    st->flight_id = in->flight_id;
    st->intent_id = in->intent_id;
    st->intent_version = in->intent_version;
    if (in->caps != NULL) {
        st->n_execution_capabilities = in->caps->n;
        st->execution_capabilities = in->caps->v;
    }
}

/* True when the call was refused (and finished): no admin key (a verified
 * allowed control certificate counts as one, SPEC.md section 10), or
 * stopping. */
static bool refuse(struct relay *relay, struct rpc_call *call)
{
    if ((!relay->auth || control_auth_check(relay->control, call) != CONTROL_ALLOWED) &&
        !call_auth_admin(relay->auth, call))
        return true;
    if (!atomic_load(&relay->shutting_down))
        return false;
    rpc_call_finish(call, RPC_UNAVAILABLE, "relay shutting down", NULL, 0);
    return true;
}

static void list_active_drones(struct rpc_call *call, const ProtobufCMessage *req, void *service,
                               struct worker_ctx *w)
{
    (void)req;
    (void)w;
    struct relay *relay = service;
    if (refuse(relay, call))
        return;
    struct session_info *infos = NULL;
    size_t n = session_table_list(relay->sessions, &infos);
    Aeroarc__Relay__V1__DroneStatus *st = calloc(n ? n : 1, sizeof(*st));
    Aeroarc__Relay__V1__DroneStatus **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    if (!st || !ptrs) {
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "relay out of memory", NULL, 0);
    } else {
        for (size_t i = 0; i < n; i++) {
            authoritative(relay, &infos[i]);
            fill_status(&st[i], &infos[i], relay->settings->relay_id);
            ptrs[i] = &st[i];
        }
        Aeroarc__Relay__V1__ListActiveDronesResponse resp =
            AEROARC__RELAY__V1__LIST_ACTIVE_DRONES_RESPONSE__INIT;
        resp.n_drones = n;
        resp.drones = ptrs;
        rpc_unary_reply(call, &resp.base);
    }
    free(st);
    free(ptrs);
    session_infos_free(infos, n);
}

static void get_drone_status(struct rpc_call *call, const ProtobufCMessage *msg, void *service,
                             struct worker_ctx *w)
{
    (void)w;
    struct relay *relay = service;
    const Aeroarc__Relay__V1__GetDroneStatusRequest *req =
        (const Aeroarc__Relay__V1__GetDroneStatusRequest *)msg;
    if (refuse(relay, call))
        return;
    struct session_info info;
    if (req->drone_id[0] == '\0') {
        rpc_call_finish(call, RPC_INVALID_ARGUMENT, "drone_id is required", NULL, 0);
    } else if (session_table_get(relay->sessions, req->drone_id, &info) < 0) {
        rpc_call_finish(call, RPC_NOT_FOUND, "no active session for this drone", NULL, 0);
    } else {
        Aeroarc__Relay__V1__DroneStatus st;
        authoritative(relay, &info);
        fill_status(&st, &info, relay->settings->relay_id);
        Aeroarc__Relay__V1__GetDroneStatusResponse resp =
            AEROARC__RELAY__V1__GET_DRONE_STATUS_RESPONSE__INIT;
        resp.drone = &st;
        rpc_unary_reply(call, &resp.base);
        session_info_release(&info);
    }
}

/* ------------------------------------------------ commands (SPEC 10) */

typedef Aeroarc__Agent__V1__OperationContext OpContext;
typedef Aeroarc__Agent__V1__OperationContextCommandAck ContextAck;

/* What a command expects of the agent's answer. */
struct expect {
    enum command_kind kind;
    struct command_context want; /* Set: the context; aircraft: aircraft_id */
    bool authoritative;          /* Clear */
};

/* "Blank" as SPEC.md uses it everywhere: frame_trim's whitespace only. */
static bool blank(const char *s)
{
    return frame_trim((aero_str){s, s ? strlen(s) : 0}).len == 0;
}

static void copy_field(char dst[COMMAND_FIELD_MAX + 1], const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n > COMMAND_FIELD_MAX)
        n = COMMAND_FIELD_MAX;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

/* An acknowledged context equals the expected one; an empty aircraft_id
 * matches any (agents older than OperationContext field 4). */
static bool context_matches(const OpContext *got, const struct command_context *want)
{
    return got && strcmp(got->flight_id, want->flight_id) == 0 &&
           strcmp(got->intent_id, want->intent_id) == 0 &&
           got->intent_version == want->intent_version &&
           (got->aircraft_id[0] == '\0' || strcmp(got->aircraft_id, want->aircraft_id) == 0);
}

static const char mismatch_text[] =
    "agent acknowledged an operation context other than the expected one";

static void context_result(const void *ctx, struct command_session_state *state,
                           const uint8_t *payload, size_t len, struct command_outcome *out)
{
    const struct expect *x = ctx;
    ContextAck *ack = (ContextAck *)wire_unpack(
        &aeroarc__agent__v1__operation_context_command_ack__descriptor, payload, len);
    if (!ack) { /* checked by the stream already */
        *out = (struct command_outcome){.code = RPC_INTERNAL, .text = "malformed agent result"};
        return;
    }
    bool applied = ack->status == AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_APPLIED ||
                   ack->status == AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_ALREADY_APPLIED;
    bool ok = true;
    if (applied && x->kind == COMMAND_SET_CONTEXT) {
        ok = context_matches(ack->active_context, &x->want);
        if (ok) {
            state->reconciled = true;
            state->has_context = true;
            state->current = x->want;
        }
    } else if (applied) {
        /* Clear: nothing active, unless a conditional clear named another
         * flight than the current one, which stays. */
        bool other = !x->authoritative && state->has_context &&
                     state->current.flight_id[0] != '\0' &&
                     strcmp(state->current.flight_id, x->want.flight_id) != 0;
        ok = other ? context_matches(ack->active_context, &state->current)
                   : ack->active_context == NULL;
        if (ok && x->authoritative)
            state->reconciled = true;
        if (ok && !other)
            state->has_context = false;
    }
    /* A temporary error is sent again on an exact retry, not replayed. */
    bool keep = ack->status !=
                AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_TEMPORARY_ERROR;
    aeroarc__agent__v1__operation_context_command_ack__free_unpacked(ack, NULL);
    if (!ok) {
        state->reconciled = false; /* outcome unknown: fenced */
        *out = (struct command_outcome){.code = RPC_INTERNAL, .text = mismatch_text};
        return;
    }
    command_outcome_wrap(payload, len, out);
    out->keep = keep;
}

/* Written, outcome unknown (deadline, stream end): fenced. */
static void context_unknown(const void *ctx, struct command_session_state *state)
{
    (void)ctx;
    state->reconciled = false;
}

static const char *clear_check(const void *ctx, const struct command_session_state *state,
                               bool again, enum rpc_code *code)
{
    (void)again;
    (void)code;
    const struct expect *x = ctx;
    if (x->authoritative && state->reconciled)
        return "flight ID may be empty only while reconciling a fresh Relay session";
    return NULL;
}

static void aircraft_result(const void *ctx, struct command_session_state *state,
                            const uint8_t *payload, size_t len, struct command_outcome *out)
{
    (void)state;
    const struct expect *x = ctx;
    Aeroarc__Agent__V1__AircraftCommandResult *r =
        (Aeroarc__Agent__V1__AircraftCommandResult *)wire_unpack(
            &aeroarc__agent__v1__aircraft_command_result__descriptor, payload, len);
    bool ok = r && strcmp(r->aircraft_id, x->want.aircraft_id) == 0;
    aeroarc__agent__v1__aircraft_command_result__free_unpacked(r, NULL);
    if (!ok) {
        /* Still the agent's result (SPEC.md section 10: only agent results
         * are kept): an exact retry gets the same INTERNAL, nothing sent. */
        *out = (struct command_outcome){.code = RPC_INTERNAL,
                                        .text = "agent answered the command for another aircraft",
                                        .keep = true};
        return;
    }
    command_outcome_wrap(payload, len, out);
    out->keep = true; /* an agent result: replayed, never sent again */
}

static const struct command_ops set_ops = {
    .on_result = context_result, .on_unknown = context_unknown, .free = free};
static const struct command_ops clear_ops = {
    .on_result = context_result, .on_unknown = context_unknown, .check = clear_check,
    .free = free};
static const struct command_ops aircraft_ops = {.on_result = aircraft_result, .free = free};

/* The command's deterministic encoding -> its fingerprint, and the
 * RelayStreamMessage arm that carries it. 0, or -1 (out of memory). */
static int encode(const ProtobufCMessage *cmd, Aeroarc__Agent__V1__RelayStreamMessage *env,
                  uint8_t fp[32], uint8_t **msg, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(cmd);
    uint8_t *c = malloc(n ? n : 1);
    if (!c)
        return -1;
    protobuf_c_message_pack(cmd, c);
    SHA256(c, n, fp);
    free(c);
    *len = protobuf_c_message_get_packed_size(&env->base);
    if (!(*msg = malloc(*len ? *len : 1)))
        return -1;
    protobuf_c_message_pack(&env->base, *msg);
    return 0;
}

/*
 * SPEC.md section 10 after validation: where the command goes (each kind's
 * not-found codes), then the session's table. Takes x.
 */
static void command(struct relay *relay, struct rpc_call *call, const char *agent_id,
                    const char *id, const ProtobufCMessage *cmd,
                    Aeroarc__Agent__V1__RelayStreamMessage *env, const struct expect *want,
                    int64_t start_ns)
{
    bool aircraft = want->kind == COMMAND_AIRCRAFT;
    struct expect *x = malloc(sizeof(*x)); /* the table's, until the command ends */
    if (!x) {
        command_hub_refuse(relay->commands, call, want->kind, RPC_RESOURCE_EXHAUSTED,
                           "relay out of memory", start_ns);
        return;
    }
    *x = *want;
    struct rpc_stream *rs = NULL;
    struct command_table *t = NULL;
    const char *text = NULL;
    /* SPEC.md section 10: a session without a stream is the one case the
     * API re-places for Set/Clear (UNAVAILABLE), not for aircraft. */
    enum rpc_code code = gateway_target_status(
        gateway_command_target(relay->gateway, agent_id, &rs, &t, NULL),
        aircraft ? "agent is not connected" : "agent is not registered",
        aircraft ? RPC_NOT_FOUND : RPC_UNAVAILABLE, &text);
    struct command_spec spec = {
        .kind = x->kind,
        .id = id,
        .ctx = x,
        .ops = x->kind == COMMAND_SET_CONTEXT     ? &set_ops
               : x->kind == COMMAND_CLEAR_CONTEXT ? &clear_ops
                                                  : &aircraft_ops,
        .deadline_left_ns = rpc_call_deadline_left_ns(call),
        .watch = true, /* a caller that goes away frees the slot at once */
    };
    uint8_t *msg = NULL;
    if (code == RPC_OK && encode(cmd, env, spec.fingerprint, &msg, &spec.msg_len) < 0) {
        code = RPC_RESOURCE_EXHAUSTED;
        text = "relay out of memory";
    }
    if (code != RPC_OK) {
        command_hub_refuse(relay->commands, call, x->kind, code, text, start_ns);
        free(x);
    } else {
        spec.msg = msg;
        command_table_submit(t, rs, &spec, call);
    }
    free(msg);
    if (rs)
        rpc_stream_unref(rs);
    command_table_unref(t);
}

static const char ids_required[] = "agent ID and command ID are required";

/* Control authentication first, then the relay's state, then the ids
 * every command needs (`command_id` NULL: the request had no command).
 * True when the call was refused (and finished; counted once past
 * authentication, as a durable command's are). */
static bool command_refuse(struct relay *relay, struct rpc_call *call, enum command_kind kind,
                           const char *agent_id, const char *command_id, int64_t start_ns)
{
    if (!control_auth_admit(relay->control, call))
        return true;
    if (atomic_load(&relay->shutting_down)) {
        command_hub_refuse(relay->commands, call, kind, RPC_UNAVAILABLE, "relay shutting down",
                           start_ns);
        return true;
    }
    if (agent_id[0] == '\0' || !command_id || command_id[0] == '\0') {
        command_hub_refuse(relay->commands, call, kind, RPC_INVALID_ARGUMENT, ids_required,
                           start_ns);
        return true;
    }
    return false;
}

/* A request that did not decode (registered RPC_UNARY_OWN_MALFORMED):
 * control authentication still comes first (SPEC.md section 10). True
 * when msg is such a request (then answered). */
static bool malformed(struct relay *relay, struct rpc_call *call, const ProtobufCMessage *msg,
                      enum command_kind kind, const char *text)
{
    if (msg)
        return false;
    if (control_auth_admit(relay->control, call))
        command_hub_refuse(relay->commands, call, kind, RPC_INVALID_ARGUMENT, text, mono_ns());
    return true;
}

static void set_operation_context(struct rpc_call *call, const ProtobufCMessage *msg,
                                  void *service, struct worker_ctx *w)
{
    (void)w;
    struct relay *relay = service;
    if (malformed(relay, call, msg, COMMAND_SET_CONTEXT, "malformed SetOperationContextRequest"))
        return;
    const Aeroarc__Relay__V1__SetOperationContextRequest *req = (const void *)msg;
    Aeroarc__Agent__V1__SetOperationContextCommand *c = req->command;
    int64_t start_ns = mono_ns();
    if (command_refuse(relay, call, COMMAND_SET_CONTEXT, req->agent_id,
                       c ? c->command_id : NULL, start_ns))
        return;
    if (!c->context || blank(c->context->flight_id) || blank(c->context->intent_id) ||
        c->context->intent_version == 0) {
        command_hub_refuse(relay->commands, call, COMMAND_SET_CONTEXT, RPC_INVALID_ARGUMENT,
                           "flight ID, intent ID, and positive intent version are required",
                           start_ns);
        return;
    }
    struct expect x = {.kind = COMMAND_SET_CONTEXT};
    copy_field(x.want.flight_id, c->context->flight_id);
    copy_field(x.want.intent_id, c->context->intent_id);
    x.want.intent_version = c->context->intent_version;
    copy_field(x.want.aircraft_id, c->context->aircraft_id);
    Aeroarc__Agent__V1__RelayStreamMessage env = AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__INIT;
    env.payload_case = AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_SET_OPERATION_CONTEXT;
    env.set_operation_context = c;
    command(relay, call, req->agent_id, c->command_id, &c->base, &env, &x, start_ns);
}

static void clear_operation_context(struct rpc_call *call, const ProtobufCMessage *msg,
                                    void *service, struct worker_ctx *w)
{
    (void)w;
    struct relay *relay = service;
    if (malformed(relay, call, msg, COMMAND_CLEAR_CONTEXT, "malformed ClearOperationContextRequest"))
        return;
    const Aeroarc__Relay__V1__ClearOperationContextRequest *req = (const void *)msg;
    Aeroarc__Agent__V1__ClearOperationContextCommand *c = req->command;
    int64_t start_ns = mono_ns();
    if (command_refuse(relay, call, COMMAND_CLEAR_CONTEXT, req->agent_id,
                       c ? c->command_id : NULL, start_ns))
        return;
    /* One text for either shape the SPEC refuses (section 10). */
    if (c->authoritative ? c->flight_id[0] != '\0' : blank(c->flight_id)) {
        command_hub_refuse(relay->commands, call, COMMAND_CLEAR_CONTEXT, RPC_INVALID_ARGUMENT,
                           "flight ID may be empty only while reconciling a fresh Relay session",
                           start_ns);
        return;
    }
    struct expect x = {.kind = COMMAND_CLEAR_CONTEXT, .authoritative = c->authoritative};
    copy_field(x.want.flight_id, c->flight_id);
    Aeroarc__Agent__V1__RelayStreamMessage env = AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__INIT;
    env.payload_case = AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_CLEAR_OPERATION_CONTEXT;
    env.clear_operation_context = c;
    command(relay, call, req->agent_id, c->command_id, &c->base, &env, &x, start_ns);
}

static void send_aircraft_command(struct rpc_call *call, const ProtobufCMessage *msg,
                                  void *service, struct worker_ctx *w)
{
    (void)w;
    struct relay *relay = service;
    if (malformed(relay, call, msg, COMMAND_AIRCRAFT, "malformed SendAircraftCommandRequest"))
        return;
    const Aeroarc__Relay__V1__SendAircraftCommandRequest *req = (const void *)msg;
    Aeroarc__Agent__V1__AircraftCommand *c = req->command;
    int64_t start_ns = mono_ns();
    if (command_refuse(relay, call, COMMAND_AIRCRAFT, req->agent_id, c ? c->command_id : NULL,
                       start_ns))
        return;
    if (c->aircraft_id[0] == '\0') {
        command_hub_refuse(relay->commands, call, COMMAND_AIRCRAFT, RPC_INVALID_ARGUMENT,
                           "aircraft ID is required", start_ns);
        return;
    }
    if (c->type != AEROARC__AGENT__V1__AIRCRAFT_COMMAND_TYPE__AIRCRAFT_COMMAND_TYPE_ARM &&
        c->type != AEROARC__AGENT__V1__AIRCRAFT_COMMAND_TYPE__AIRCRAFT_COMMAND_TYPE_DISARM) {
        command_hub_refuse(relay->commands, call, COMMAND_AIRCRAFT, RPC_INVALID_ARGUMENT,
                           "aircraft command type must be ARM or DISARM", start_ns);
        return;
    }
    struct expect x = {.kind = COMMAND_AIRCRAFT};
    copy_field(x.want.aircraft_id, c->aircraft_id);
    Aeroarc__Agent__V1__RelayStreamMessage env = AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__INIT;
    env.payload_case = AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_AIRCRAFT_COMMAND;
    env.aircraft_command = c;
    command(relay, call, req->agent_id, c->command_id, &c->base, &env, &x, start_ns);
}

int relay_control_add(struct relay *relay, struct rpc_server *server)
{
    if (rpc_server_add_unary(server, "/aeroarc.relay.v1.RelayControl/ListActiveDrones",
                             &aeroarc__relay__v1__list_active_drones_request__descriptor,
                             list_active_drones, relay) < 0 ||
        rpc_server_add_unary(server, "/aeroarc.relay.v1.RelayControl/GetDroneStatus",
                             &aeroarc__relay__v1__get_drone_status_request__descriptor,
                             get_drone_status, relay) < 0 ||
        /* The commands authenticate even a request that does not decode. */
        rpc_server_add_unary_flags(server, "/aeroarc.relay.v1.RelayControl/SetOperationContext",
                                   &aeroarc__relay__v1__set_operation_context_request__descriptor,
                                   set_operation_context, relay, RPC_UNARY_OWN_MALFORMED) < 0 ||
        rpc_server_add_unary_flags(server, "/aeroarc.relay.v1.RelayControl/ClearOperationContext",
                                   &aeroarc__relay__v1__clear_operation_context_request__descriptor,
                                   clear_operation_context, relay, RPC_UNARY_OWN_MALFORMED) < 0 ||
        rpc_server_add_unary_flags(server, "/aeroarc.relay.v1.RelayControl/SendAircraftCommand",
                                   &aeroarc__relay__v1__send_aircraft_command_request__descriptor,
                                   send_aircraft_command, relay, RPC_UNARY_OWN_MALFORMED) < 0)
        return -1;
    return 0;
}
