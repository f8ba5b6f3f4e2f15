/*
 * command_mission.c - DeployMission, SPEC.md 14.2 rules 1-7 here in order,
 * then the session's command table (command_table.c) runs rules 8-16 with
 * the mission kind's rules below: the context fence and admission window
 * (check), the result checks of rule 14 (on_result) and the relay's own
 * OUTCOME_UNKNOWN results (lost). Those run under the table's lock: no
 * gRPC, no table calls. The plan is never logged. Any worker thread.
 */
#include "command_mission.h"

#include "aeroarc/relay/v1/relay.pb-c.h"
#include "agent_gateway.h"
#include "agent_mappings.h"
#include "command_digest.h"
#include "command_table.h"
#include "control_auth.h"
#include "frame_codec.h"
#include "log.h"
#include "mono_clock.h"
#include "rpc_stream.h"
#include "session_table.h"
#include "wire_prepare.h"
#include "wire_record.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef Aeroarc__Agent__V1__DeployMissionCommand DeployMissionCommand;
typedef Aeroarc__Agent__V1__MissionBinding MissionBinding;
typedef Aeroarc__Agent__V1__MissionDeploymentResult MissionResult;

#define MISSION_BOUND_NS (120 * INT64_C(1000000000)) /* rule 5: maxMissionDeploymentWait */
#define MISSION_FUTURE_MS 30000                       /* rule 11 */
#define MISSION_WINDOW_MS 300000

static const char undecodable[] = "mission command contains unknown fields";
static const char fence_text[] =
    "mission binding does not match the reconciled Agent operation context";
static const char wait_ended_text[] = "mission result wait ended after command admission";

/* The table's context for one mission entry. */
struct mission {
    DeployMissionCommand *cmd; /* an own decoded copy */
    char *agent_id;            /* trimmed */
    char session_id[SESSION_ID_LEN + 1];
    int64_t sent_ns;           /* monotonic: the latest delivery began */
};

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void mission_free(void *ctx)
{
    struct mission *m = ctx;
    if (!m)
        return;
    if (m->cmd)
        aeroarc__agent__v1__deploy_mission_command__free_unpacked(m->cmd, NULL);
    free(m->agent_id);
    free(m);
}

static const char *status_name(int s)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
        &aeroarc__agent__v1__mission_deployment_result__status__descriptor, s);
    return v ? v->name : "STATUS_UNKNOWN";
}

/* ------------------------------------------------ the kind's rules */

/* Rules 10 (the fence, new deliveries and redeliveries) and 11 (the
 * admission window). */
static const char *mission_check(const void *ctx, const struct command_session_state *state,
                                 bool again, enum rpc_code *code)
{
    const struct mission *m = ctx;
    const MissionBinding *b = m->cmd->binding;
    const struct command_context *c = &state->current;
    *code = RPC_FAILED_PRECONDITION;
    if (!state->reconciled)
        return again ? fence_text
                     : "operation context must be reconciled before mission deployment";
    if (!state->has_context || c->aircraft_id[0] == '\0' ||
        strcmp(c->aircraft_id, b->aircraft_id) != 0 || strcmp(c->flight_id, b->flight_id) != 0 ||
        strcmp(c->intent_id, b->intent_id) != 0 || c->intent_version != b->intent_version)
        return fence_text;
    *code = RPC_INVALID_ARGUMENT;
    if (m->cmd->issued_at_unix_ms > unix_ms() + MISSION_FUTURE_MS)
        return "mission command issue time is too far in the future";
    if (m->cmd->expires_at_unix_ms - m->cmd->issued_at_unix_ms > MISSION_WINDOW_MS)
        return "mission command validity window is too long";
    return NULL;
}

static bool same_binding(const MissionBinding *a, const MissionBinding *b)
{
    return a && a->base.n_unknown_fields == 0 && strcmp(a->mission_id, b->mission_id) == 0 &&
           a->mission_version == b->mission_version &&
           strcmp(a->mission_digest, b->mission_digest) == 0 &&
           strcmp(a->deployment_id, b->deployment_id) == 0 &&
           strcmp(a->operator_id, b->operator_id) == 0 &&
           strcmp(a->aircraft_id, b->aircraft_id) == 0 &&
           strcmp(a->flight_id, b->flight_id) == 0 && strcmp(a->intent_id, b->intent_id) == 0 &&
           a->intent_version == b->intent_version;
}

/* Whether a string of the result's binding (field 2, its last record)
 * holds a NUL byte: protobuf-c's strings end there, so same_binding's
 * strcmp would take "id\0junk" for "id". */
static bool binding_has_nul(const uint8_t *p, size_t len)
{
    aero_str last = {0};
    if (frame_wire_find_len(p, len, 2, &last) <= 0)
        return false;
    const uint8_t *q = (const uint8_t *)last.ptr, *end = q + last.len;
    struct wire_record r;
    while (q < end && wire_record_next(&q, end, &r))
        if (r.wire == 2 && memchr(r.body, 0, (size_t)r.len))
            return true;
    return false;
}

/* Rule 14 in order, compared byte for byte (payload: r's bytes): NULL,
 * or the INTERNAL text. */
static const char *result_fault(const struct mission *m, const MissionResult *r,
                                const uint8_t *payload, size_t len)
{
    const MissionBinding *b = m->cmd->binding;
    bool applied = r->status == AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__STATUS__STATUS_APPLIED;
    bool already =
        r->status == AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__STATUS__STATUS_ALREADY_APPLIED;
    if (strcmp(r->command_id, m->cmd->command_id) != 0 || !same_binding(r->binding, b) ||
        binding_has_nul(payload, len))
        return "agent returned a mismatched mission deployment result";
    if (r->base.n_unknown_fields != 0)
        return "agent returned an invalid mission deployment result";
    if ((int)r->status < 1 || (int)r->status > 7)
        return "agent returned an invalid mission deployment status";
    if (r->completed_at_unix_ms <= 0)
        return "agent returned a mission result without completion time";
    if ((applied || already) && !frame_wire_string_is(payload, len, 6, b->mission_digest))
        return "agent success result does not prove the expected onboard mission";
    if (applied && r->uploaded_item_count != m->cmd->plan->n_items)
        return "agent applied result does not report the canonical uploaded item count";
    if (already && r->uploaded_item_count != 0)
        return "agent already-applied result ambiguously reports newly uploaded items";
    return NULL;
}

static bool retryable(int status)
{
    return status == AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__STATUS__STATUS_TEMPORARY_ERROR ||
           status == AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__STATUS__STATUS_OUTCOME_UNKNOWN;
}

/* The info line of SPEC.md 14.5 for a completed entry. */
static void log_completed(const struct mission *m, const char *result)
{
    log_info("mission_deployment_completed command_id=%s deployment_id=%s agent_id=%s "
             "session_id=%s result=%s duration=%.3fs",
             m->cmd->command_id, m->cmd->binding->deployment_id, m->agent_id, m->session_id,
             result, (double)(mono_ns() - m->sent_ns) / 1e9);
}

static void mission_result(const void *ctx, struct command_session_state *state,
                           const uint8_t *payload, size_t len, struct command_outcome *out)
{
    (void)state; /* 14.2 rule 17: nothing else is recorded */
    const struct mission *m = ctx;
    MissionResult *r = (MissionResult *)wire_unpack(
        &aeroarc__agent__v1__mission_deployment_result__descriptor, payload, len);
    const char *fault =
        r ? result_fault(m, r, payload, len) : "agent returned an invalid mission deployment result";
    if (fault) {
        /* Kept: exact retries on this session get the same INTERNAL. */
        *out = (struct command_outcome){.code = RPC_INTERNAL, .text = fault, .keep = true};
        log_completed(m, "INTERNAL");
    } else {
        command_outcome_wrap(payload, len, out);
        out->keep = true;
        out->retry = retryable(r->status);
        out->label = status_name(r->status);
        log_completed(m, out->label);
    }
    aeroarc__agent__v1__mission_deployment_result__free_unpacked(r, NULL);
}

/* Rules 15 (reason NULL: the last caller left; the next exact call on the
 * same stream redelivers) and 16 (loss: kept, never sent again). */
static void mission_lost(const void *ctx, const char *reason, struct command_outcome *out)
{
    const struct mission *m = ctx;
    MissionResult r = AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__INIT;
    r.command_id = m->cmd->command_id;
    r.binding = m->cmd->binding;
    r.status = AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__STATUS__STATUS_OUTCOME_UNKNOWN;
    r.message = (char *)(reason ? reason : wait_ended_text);
    r.completed_at_unix_ms = unix_ms();
    size_t n = protobuf_c_message_get_packed_size(&r.base);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        *out = (struct command_outcome){.code = RPC_RESOURCE_EXHAUSTED,
                                        .text = "relay out of memory"};
        return;
    }
    protobuf_c_message_pack(&r.base, buf);
    command_outcome_wrap(buf, n, out);
    free(buf);
    out->keep = out->code == RPC_OK;
    out->retry = reason == NULL;
    out->label = status_name(r.status);
    log_completed(m, reason ? "relay_outcome_unknown" : "wait_ended");
}

/* Handed to the stream (rule 12): the started line of 14.5. */
static void mission_sent(const void *ctx)
{
    struct mission *m = (struct mission *)ctx; /* the table's, under its lock */
    const MissionBinding *b = m->cmd->binding;
    m->sent_ns = mono_ns();
    log_info("mission_deployment_started command_id=%s deployment_id=%s mission_id=%s "
             "aircraft_id=%s flight_id=%s intent_id=%s intent_version=%u agent_id=%s "
             "session_id=%s",
             m->cmd->command_id, b->deployment_id, b->mission_id, b->aircraft_id, b->flight_id,
             b->intent_id, b->intent_version, m->agent_id, m->session_id);
}

static const struct command_ops mission_ops = {
    .on_result = mission_result,
    .check = mission_check,
    .lost = mission_lost,
    .sent = mission_sent,
    .free = mission_free,
};

/* ------------------------------------------------------ rules 1-7 */

static bool utf8(const char *s) { return command_digest_utf8(s, strlen(s)); }

/* Every string of the request is UTF-8 (else it does not decode, 14.3). */
static bool decodable(const Aeroarc__Relay__V1__DeployMissionRequest *req)
{
    const DeployMissionCommand *c = req->command;
    const MissionBinding *b = c ? c->binding : NULL;
    return utf8(req->agent_id) && (!c || utf8(c->command_id)) &&
           (!b || (utf8(b->mission_id) && utf8(b->mission_digest) && utf8(b->deployment_id) &&
                   utf8(b->operator_id) && utf8(b->aircraft_id) && utf8(b->flight_id) &&
                   utf8(b->intent_id)));
}

static bool has_rtl(const DeployMissionCommand *c)
{
    for (size_t i = 0; i < c->plan->n_items; i++)
        if (c->plan->items[i]->command == 20)
            return true;
    return false;
}

static bool rtl_capable(struct relay *relay, const char *agent_id)
{
    struct session_info info;
    if (session_table_get(relay->sessions, agent_id, &info) < 0)
        return false;
    bool ok = false;
    for (size_t i = 0; info.caps && i < info.caps->n; i++)
        ok |= strcmp(info.caps->v[i], "mission_rtl_v1") == 0;
    session_info_release(&info);
    return ok;
}


/* The table's context (an own copy of the command), the fingerprint and
 * RelayStreamMessage{5: deploy_mission}. NULL: out of memory. */
static struct mission *mission_new(const DeployMissionCommand *c, const char *agent_id,
                                   const char *sid, uint8_t fp[32], uint8_t **msg, size_t *len)
{
    struct mission *m = calloc(1, sizeof(*m));
    size_t n = protobuf_c_message_get_packed_size(&c->base);
    uint8_t *bytes = malloc(n ? n : 1);
    if (!m || !bytes || !(m->agent_id = strdup(agent_id)))
        goto fail;
    protobuf_c_message_pack(&c->base, bytes);
    SHA256(bytes, n, fp);
    if (!(m->cmd = aeroarc__agent__v1__deploy_mission_command__unpack(NULL, n, bytes)))
        goto fail;
    memcpy(m->session_id, sid, sizeof(m->session_id));
    Aeroarc__Agent__V1__RelayStreamMessage env = AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__INIT;
    env.payload_case = AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_DEPLOY_MISSION;
    env.deploy_mission = m->cmd;
    *len = protobuf_c_message_get_packed_size(&env.base);
    if (!(*msg = malloc(*len ? *len : 1)))
        goto fail;
    protobuf_c_message_pack(&env.base, *msg);
    free(bytes);
    return m;
fail:
    free(bytes);
    mission_free(m);
    return NULL;
}

/* Rules 2-7; NULL text: the call goes on to the table. */
static enum rpc_code admit(struct relay *relay, const Aeroarc__Relay__V1__DeployMissionRequest *req,
                           const char *agent_id, char *text, size_t cap)
{
    const DeployMissionCommand *c = req->command;
    if (agent_id[0] == '\0' || !c) {
        snprintf(text, cap, "agent_id and command are required");
        return RPC_INVALID_ARGUMENT;
    }
    if (command_digest_deploy_check(c, text, cap) < 0)
        return RPC_INVALID_ARGUMENT;
    const char *op = NULL, *ac = NULL;
    agent_mappings_find(relay->mappings, agent_id, &op, &ac);
    const char *why = command_digest_deploy_target(c->binding, op, ac); /* rule 4 */
    if (why) {
        snprintf(text, cap, "%s", why);
        return RPC_FAILED_PRECONDITION;
    }
    return RPC_OK;
}

static void deploy_mission(struct rpc_call *call, const ProtobufCMessage *msg, void *service,
                           struct worker_ctx *w)
{
    (void)w;
    struct relay *relay = service;
    const Aeroarc__Relay__V1__DeployMissionRequest *req = (const void *)msg;
    if (!control_auth_admit(relay->control, call)) /* rule 1 */
        return;
    /* Refusals before the table are counted in the section-10 series
     * (kind="mission"), as every kind's are; the deployments series of
     * 14.5 leaves them out. */
    int64_t start_ns = mono_ns();
    if (atomic_load(&relay->shutting_down)) {
        command_hub_refuse(relay->commands, call, COMMAND_MISSION, RPC_UNAVAILABLE,
                           "relay shutting down", start_ns);
        return;
    }
    if (!req || !decodable(req)) {
        command_hub_refuse(relay->commands, call, COMMAND_MISSION, RPC_INVALID_ARGUMENT,
                           undecodable, start_ns);
        return;
    }
    size_t start, n;
    command_digest_trim_space(req->agent_id, strlen(req->agent_id), &start, &n);
    char *agent_id = strndup(req->agent_id + start, n);
    char text[192];
    enum rpc_code code = agent_id ? admit(relay, req, agent_id, text, sizeof(text))
                                  : RPC_RESOURCE_EXHAUSTED;
    const char *why = agent_id ? text : "relay out of memory";
    struct rpc_stream *rs = NULL;
    struct command_table *t = NULL;
    char sid[SESSION_ID_LEN + 1] = "";
    if (code == RPC_OK) /* rules 5-6 */
        code = gateway_target_status(gateway_command_target(relay->gateway, agent_id, &rs, &t, sid),
                                     "agent is not connected", RPC_NOT_FOUND, &why);
    if (code == RPC_OK && has_rtl(req->command) && !rtl_capable(relay, agent_id)) { /* rule 7 */
        code = RPC_FAILED_PRECONDITION;
        why = "Agent must advertise mission_rtl_v1 before receiving an RTL mission";
    }
    struct command_spec spec = {.kind = COMMAND_MISSION,
                                .id = req->command ? req->command->command_id : "",
                                .ops = &mission_ops,
                                .deadline_left_ns = rpc_call_deadline_left_ns(call),
                                .bound_ns = MISSION_BOUND_NS,
                                .watch = true};
    uint8_t *bytes = NULL;
    if (code == RPC_OK && !(spec.ctx = mission_new(req->command, agent_id, sid, spec.fingerprint,
                                                   &bytes, &spec.msg_len))) {
        code = RPC_RESOURCE_EXHAUSTED;
        why = "relay out of memory";
    }
    if (code == RPC_OK) {
        spec.msg = bytes;
        command_table_submit(t, rs, &spec, call); /* rules 8-16 */
    } else {
        command_hub_refuse(relay->commands, call, COMMAND_MISSION, code, why, start_ns);
    }
    free(bytes);
    free(agent_id);
    if (rs)
        rpc_stream_unref(rs);
    if (t)
        command_table_unref(t);
}

int command_mission_add(struct relay *relay, struct rpc_server *server)
{
    const ProtobufCEnumDescriptor *st =
        &aeroarc__agent__v1__mission_deployment_result__status__descriptor;
    for (unsigned i = 0; i < st->n_values; i++)
        command_hub_declare_deployment(relay->commands, st->values[i].name);
    return rpc_server_add_unary_flags(server, "/aeroarc.relay.v1.RelayControl/DeployMission",
                                      &aeroarc__relay__v1__deploy_mission_request__descriptor,
                                      deploy_mission, relay, RPC_UNARY_OWN_MALFORMED);
}
