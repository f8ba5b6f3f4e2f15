/*
 * agent_gateway.c - Register and TelemetryStream's opening and end: who
 * may open a stream (agent header, key, session, and the generation-2
 * session header of SPEC.md section 9), supersession, and the session's
 * end with its stream. Each message of an open stream is agent_stream.c's;
 * the stream mechanics (reads under credit, the outgoing queue, the final
 * status) are rpc_stream.c's.
 */
#include "agent_gateway.h"

#include "aeroarc/agent/v1/agent.pb-c.h"
#include "agent_internal.h"
#include "agent_mappings.h"
#include "call_auth.h"
#include "command_table.h"
#include "log.h"
#include "mono_clock.h"
#include "route.h"
#include "worker_ctx.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AGENT_ID_HEADER "aero-arc-agent-id"

/* Outgoing messages other than acks (commands) a stream may queue; acks
 * are bounded by max_inflight, the read credit. */
#define STREAM_QUEUE_OTHER 16

#define SESSION_HEADER "aero-arc-session-id"

int64_t agent_gateway_now_ns(void) { return clock_ns(CLOCK_REALTIME); }

/* ------------------------------------------------------------ lifetime */

void agent_gateway_drop_owner(void *owner) { stream_unref(owner); }

/* A newer Register or stream (`replaced`) took this session over: end
 * the old stream. */
static void supersede(void *owner, bool replaced)
{
    if (!owner)
        return;
    struct stream *old = owner;
    atomic_store(&old->replaced, replaced);
    atomic_store(&old->superseded, true); /* on_closed counts it */
    rpc_stream_cancel(old->rs, RPC_ABORTED, "superseded by a newer session for this agent");
    stream_unref(old);
}

/* ------------------------------------------------------------- the end */

/* The stream's session ends with the call: detach it (only if still
 * ours) and take the route down. */
static void end_session(struct stream *s)
{
    struct gateway *gw = s->gw;
    void *owner = NULL;
    if (session_table_detach(gw->relay->sessions, s->agent_id, s->gen, &owner)) {
        route_down(gw->relay->route, s->agent_id, s->session_id);
        metrics_set(gw->m.sessions, (int64_t)session_table_count(gw->relay->sessions));
        stream_unref(owner);
    }
}

struct target_visit {
    struct gateway *gw;
    enum gateway_target result;
    struct rpc_stream *rs;
    struct command_table *table;
    char *session_id; /* filled when not NULL */
    struct command_table *only; /* not NULL: a session with this table, none made */
};

/* Under the session's lock: no allocation but the session's table, once. */
static void target_visit(void *arg, struct session_visit *v)
{
    struct target_visit *tv = arg;
    struct stream *s = v->owner;
    if (tv->session_id)
        snprintf(tv->session_id, SESSION_ID_LEN + 1, "%s", v->session_id);
    if (!v->attached || !s) {
        tv->result = GATEWAY_NO_STREAM;
        return;
    }
    int gen = atomic_load(&s->gen_kind);
    if (gen != GEN_MUX) {
        tv->result = gen == GEN_SEED ? GATEWAY_SEED : GATEWAY_UNDECIDED;
        return;
    }
    if (tv->only && *v->ext != tv->only) {
        tv->result = GATEWAY_NO_SESSION;
        return;
    }
    if (!*v->ext && !(*v->ext = agent_gateway_new_table(tv->gw, s->agent_id))) {
        tv->result = GATEWAY_NO_MEMORY;
        return;
    }
    struct command_table *t = *v->ext, *none = NULL;
    command_table_ref(t); /* the stream's, if it takes it */
    if (!atomic_compare_exchange_strong(&s->commands, &none, t))
        command_table_unref(t); /* it has it already (never the last) */
    command_table_ref(t); /* the caller's */
    stream_ref(s);
    tv->table = t;
    tv->rs = s->rs;
    tv->result = GATEWAY_TARGET_OK;
}

/*
 * The generation-2 stream that replaced s on its session (a reference),
 * or NULL: the session has none now (another Register took the agent, or
 * the new stream ended or is not decided yet). Looked up once s is over,
 * so missions waiting for the slot follow the session (SPEC.md 14.6
 * reading 3). If the new stream ends before they move, they meet a closed
 * stream when they get the slot: UNAVAILABLE, as rule 12 says.
 */
static struct rpc_stream *successor(struct gateway *gw, struct stream *s,
                                    struct command_table *ct)
{
    struct target_visit tv = {.gw = gw, .result = GATEWAY_NO_SESSION, .only = ct};
    if (session_table_visit(gw->relay->sessions, s->agent_id, target_visit, &tv) < 0 ||
        tv.result != GATEWAY_TARGET_OK)
        return NULL;
    command_table_unref(tv.table);
    if (tv.rs == s->rs) { /* cannot be: s left the session first */
        rpc_stream_unref(tv.rs);
        return NULL;
    }
    return tv.rs;
}

static void on_closed(void *owner, bool cancelled, enum rpc_code code)
{
    struct stream *s = owner;
    struct gateway *gw = s->gw;
    for (size_t i = 0; i < s->n_waiters; i++)
        if (sink_pipeline_cancel_wait(gw->relay->sinks, &s->waiters[i]))
            stream_unref(s);
    /* One outcome per stream: a superseded stream also looks cancelled. */
    metrics_inc(atomic_load(&s->superseded) ? gw->m.closed_superseded
                : cancelled                 ? gw->m.closed_cancelled
                : code == RPC_OK            ? gw->m.closed_ok
                                            : gw->m.closed_error);
    metrics_inc(gw->m.protocol_closed[atomic_load(&s->gen_kind)]);
    agent_stream_drop_held(s);
    /* Commands written here can no longer be answered here. */
    struct command_table *ct = atomic_load(&s->commands);
    if (ct) {
        bool replaced = atomic_load(&s->replaced);
        struct rpc_stream *next = replaced ? successor(gw, s, ct) : NULL;
        command_table_stream_ended(ct, s->rs, replaced, next);
        if (next)
            rpc_stream_unref(next);
    }
    end_session(s);
}

static void on_free(void *owner)
{
    struct stream *s = owner;
    command_table_unref(atomic_load(&s->commands));
    agent_stream_free_held(s);
    free(s);
}

/* SPEC.md section 2: the end of a stream removes its session and route.
 * At the agent's half-close that is done before its OK goes out, so an
 * agent (or the API) that asks right after the status no longer sees it;
 * on_closed's end_session then finds it gone. */
static void on_eof(void *owner) { end_session(owner); }

static const struct rpc_stream_handler stream_handler = {
    .on_message = agent_stream_on_message,
    .on_sent = agent_stream_on_sent,
    .on_eof = on_eof,
    .on_closed = on_closed,
    .on_free = on_free,
};

/* ------------------------------------------------------------- opening */

static bool header_agent_id(struct rpc_call *call, char *out, size_t *out_len)
{
    size_t len;
    const char *v = rpc_call_metadata(call, AGENT_ID_HEADER, &len);
    if (!v || !session_agent_id_valid(v, len))
        return false;
    memcpy(out, v, len);
    out[len] = '\0';
    *out_len = len;
    return true;
}

/*
 * SPEC.md section 9 rule 1: the aero-arc-session-id header makes the
 * stream generation 2 and binds it to that session. Returns the generation
 * the header decides (UNDECIDED: the first message will), with the trimmed
 * session id in `expect` (""), or -1 after refusing the call.
 */
static int header_generation(struct gateway *gw, struct rpc_call *call,
                             char expect[SESSION_ID_LEN + 1])
{
    enum stream_protocol mode = gw->relay->settings->stream_protocol;
    expect[0] = '\0';
    if (mode == STREAM_PROTOCOL_SEED)
        return GEN_SEED; /* the header is not looked at */
    size_t n = rpc_call_metadata_count(call, SESSION_HEADER), len = 0;
    if (n == 0)
        return mode == STREAM_PROTOCOL_MULTIPLEXED ? GEN_MUX : GEN_UNDECIDED;
    const char *v = rpc_call_metadata(call, SESSION_HEADER, &len);
    aero_str id = frame_trim((aero_str){v, len});
    if (n != 1 || id.len == 0) {
        metrics_inc(gw->m.streams_refused);
        rpc_call_finish(call, RPC_UNAUTHENTICATED, "exactly one aero-arc-session-id is required",
                        NULL, 0);
        return -1;
    }
    /* Longer than any session id: it can match none (the attach says so). */
    size_t keep = id.len <= SESSION_ID_LEN ? id.len : 0;
    memcpy(expect, id.ptr, keep);
    expect[keep] = '\0';
    if (keep == 0)
        memcpy(expect, "-", 2);
    return GEN_MUX;
}

static struct stream *stream_create(struct gateway *gw, struct rpc_call *call, const char *agent,
                                    size_t agent_len)
{
    /* The agent id lives after the waiters: as long as it is, not the
     * 129 bytes of the longest (issue 19: memory per open stream). */
    size_t n_waiters = sink_pipeline_count(gw->relay->sinks);
    size_t waiters = n_waiters * sizeof(struct sink_waiter);
    struct stream *s = calloc(1, sizeof(*s) + waiters + agent_len + 1);
    if (!s)
        return NULL;
    s->n_waiters = n_waiters;
    struct rpc_stream_config cfg = {
        /* With control on, results of commands are read while frames are
         * held (SPEC.md section 9): held frames stay within max_inflight. */
        .credit = gw->max_inflight + (gw->relay->control ? STREAM_QUEUE_OTHER : 0),
        .queue_max = STREAM_QUEUE_OTHER,
        .shutting_down = &gw->relay->shutting_down,
        .set = gw->streams,
    };
    s->rs = rpc_stream_create(call, &stream_handler, s, &cfg);
    if (!s->rs) {
        free(s);
        return NULL;
    }
    s->gw = gw;
    atomic_init(&s->superseded, false);
    atomic_init(&s->replaced, false);
    atomic_init(&s->gen_kind, GEN_UNDECIDED);
    atomic_init(&s->commands, NULL);
    atomic_init(&s->hold, NULL);
    char *id = (char *)s->waiters + waiters;
    memcpy(id, agent, agent_len);
    id[agent_len] = '\0';
    s->agent_id = id;
    s->agent_len = (uint32_t)agent_len; /* header_agent_id: at most SESSION_AGENT_MAX */
    agent_mappings_find(gw->relay->mappings, s->agent_id, &s->operator_id, &s->aircraft_id);
    if (!s->operator_id)
        s->operator_id = s->aircraft_id = "";
    for (size_t i = 0; i < s->n_waiters; i++) {
        s->waiters[i].wake = agent_stream_on_wake;
        s->waiters[i].owner = s;
    }
    return s;
}

static void telemetry_stream(struct rpc_call *call, void *service, struct worker_ctx *w)
{
    (void)w;
    struct gateway *gw = service;
    char agent[SESSION_AGENT_MAX + 1];
    size_t agent_len;

    if (atomic_load(&gw->relay->shutting_down)) {
        rpc_call_finish(call, RPC_UNAVAILABLE, "relay shutting down", NULL, 0);
        return;
    }
    if (!header_agent_id(call, agent, &agent_len)) {
        metrics_inc(gw->m.streams_refused);
        if (!call_auth_key(gw->relay->auth, call))
            return;
        rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                        "missing or invalid aero-arc-agent-id metadata "
                        "(1-128 bytes of A-Z a-z 0-9 . _ - :)",
                        NULL, 0);
        return;
    }
    if (!call_auth_agent(gw->relay->auth, call, agent))
        return;
    char expect[SESSION_ID_LEN + 1];
    int gen = header_generation(gw, call, expect);
    if (gen < 0)
        return;
    rpc_call_metadata_done(call);
    struct stream *s = stream_create(gw, call, agent, agent_len);
    if (!s) {
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "relay out of memory", NULL, 0);
        return;
    }

    void *displaced = NULL;
    stream_ref(s); /* the table's */
    int rc = session_table_attach_session(gw->relay->sessions, agent, expect[0] ? expect : NULL, s,
                                          &s->gen, s->session_id, &displaced);
    if (rc < 0) {
        metrics_inc(gw->m.streams_refused);
        stream_unref(s); /* the table did not take it */
        if (expect[0])
            rpc_stream_refuse(s->rs, RPC_UNAUTHENTICATED,
                              "telemetry stream is not bound to an active session");
        else
            rpc_stream_refuse(s->rs, RPC_FAILED_PRECONDITION,
                              "register first"); /* SPEC.md section 2, exactly */
        return;
    }
    supersede(displaced, true);
    route_stream_opened(gw->relay->route, agent, s->session_id);
    metrics_inc(gw->m.streams_opened);
    if (gen != GEN_UNDECIDED) {
        atomic_store(&s->gen_kind, gen);
        agent_stream_decided(s, (enum stream_gen)gen);
    }
    rpc_stream_start(s->rs);
    stream_unref(s); /* ours */
}

/* ------------------------------------------------------------ Register */

static void register_call(struct rpc_call *call, const ProtobufCMessage *msg, void *service,
                          struct worker_ctx *w)
{
    (void)w;
    struct gateway *gw = service;
    const Aeroarc__Agent__V1__RegisterRequest *req =
        (const Aeroarc__Agent__V1__RegisterRequest *)msg;
    /* strlen is the length received: rpc_unary refused any string with a
     * NUL byte, which protobuf-c would have cut short ("victim\0x"). */
    if (atomic_load(&gw->relay->shutting_down)) { /* SPEC.md section 2: new calls */
        rpc_call_finish(call, RPC_UNAVAILABLE, "relay shutting down", NULL, 0);
        return;
    }
    if (!session_agent_id_valid(req->agent_id, strlen(req->agent_id))) {
        metrics_inc(gw->m.register_rejected);
        if (!call_auth_key(gw->relay->auth, call))
            return;
        rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                        "agent_id must be 1-128 bytes of A-Z a-z 0-9 . _ - :", NULL, 0);
        return;
    }
    bool invalid;
    struct session_caps *caps = session_caps_create(req->execution_capabilities,
                                                    req->n_execution_capabilities, &invalid);
    if (invalid) {
        metrics_inc(gw->m.register_rejected);
        rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                        "execution_capabilities: at most 32 entries of at most 64 bytes each",
                        NULL, 0);
        return;
    }
    if (!call_auth_agent(gw->relay->auth, call, req->agent_id)) {
        session_caps_release(caps);
        return;
    }

    char session_id[SESSION_ID_LEN + 1];
    void *displaced = NULL;
    int rc = session_table_register_caps(gw->relay->sessions, req->agent_id, agent_gateway_now_ns(),
                                         caps, session_id, &displaced);
    session_caps_release(caps);
    if (rc < 0) {
        metrics_inc(gw->m.session_limit);
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "relay full: max_sessions reached", NULL, 0);
        return;
    }
    supersede(displaced, false);
    route_up(gw->relay->route, req->agent_id, session_id);
    metrics_inc(gw->m.registrations);
    metrics_set(gw->m.sessions, (int64_t)session_table_count(gw->relay->sessions));
    log_debug("registered agent %s (%s, %s) as %s", req->agent_id, req->agent_version,
              req->platform, session_id);

    Aeroarc__Agent__V1__RegisterResponse resp = AEROARC__AGENT__V1__REGISTER_RESPONSE__INIT;
    resp.agent_id = req->agent_id;
    resp.session_id = session_id;
    resp.max_inflight = gw->max_inflight;
    rpc_unary_reply(call, &resp.base);
}

/* --------------------------------------------------------------- setup */

struct gateway *agent_gateway_create(struct relay *relay)
{
    struct gateway *gw = calloc(1, sizeof(*gw));
    if (!gw)
        return NULL;
    gw->relay = relay;
    gw->max_inflight = (int)relay->settings->max_inflight;
    gw->hold_ns = relay->settings->gen2_hold_s * INT64_C(1000000000);
    /* Both Register and the stream carried a key covering the agent id. */
    gw->agents_authenticated = strcmp(relay->settings->auth_mode, "bearer") == 0;
    frame_limits_init(&gw->limits, (size_t)relay->settings->max_raw_bytes);
    session_table_set_max(relay->sessions, (size_t)relay->settings->max_sessions);
    session_table_set_ext_release(relay->sessions, command_table_release);
    gw->streams = rpc_stream_set_create();
    if (!gw->streams) {
        free(gw);
        return NULL;
    }
    pthread_mutex_init(&gw->held_mu, NULL);
    /* A sink's ack text is the pipeline's, at most SINK_RESULT_TEXT_MAX. */
    _Static_assert(SINK_RESULT_TEXT_MAX <= ACK_ERROR_MAX, "a sink's text must fit an ack");
    /* frame_ack_encoded_bound adds at most 65 bytes of tags, lengths and digits. */
    _Static_assert(SESSION_AGENT_MAX + ACK_ERROR_MAX + 96 <= ACK_MAX_BYTES,
                   "an ack must fit ACK_MAX_BYTES");
    gateway_metrics_register(&gw->m, relay->metrics);
    return gw;
}

int agent_gateway_add_methods(struct gateway *gw, struct rpc_server *server)
{
    if (rpc_server_add_unary(server, "/aeroarc.agent.v1.AgentGateway/Register",
                             &aeroarc__agent__v1__register_request__descriptor, register_call,
                             gw) < 0 ||
        rpc_server_add_stream(server, "/aeroarc.agent.v1.AgentGateway/TelemetryStream",
                              telemetry_stream, gw) < 0)
        return -1;
    return 0;
}

struct command_table *agent_gateway_new_table(struct gateway *gw, const char *agent_id)
{
    return command_table_create(gw->relay->commands, agent_id, gw->agents_authenticated);
}

enum gateway_target gateway_command_target(struct gateway *gw, const char *agent_id,
                                           struct rpc_stream **rs, struct command_table **table,
                                           char *session_id)
{
    struct target_visit tv = {.gw = gw, .result = GATEWAY_NO_SESSION, .session_id = session_id};
    if (session_table_visit(gw->relay->sessions, agent_id, target_visit, &tv) < 0)
        return GATEWAY_NO_SESSION;
    *rs = tv.rs;
    *table = tv.table;
    return tv.result;
}

enum rpc_code gateway_target_status(enum gateway_target g, const char *no_session,
                                    enum rpc_code no_stream, const char **text)
{
    switch (g) {
    case GATEWAY_TARGET_OK: return RPC_OK;
    case GATEWAY_NO_SESSION: *text = no_session; return RPC_NOT_FOUND;
    case GATEWAY_NO_STREAM: *text = "agent stream is not connected"; return no_stream;
    case GATEWAY_SEED: *text = "agent protocol has no downlink"; return RPC_FAILED_PRECONDITION;
    case GATEWAY_UNDECIDED:
        *text = "agent stream protocol is not decided yet";
        return RPC_UNAVAILABLE;
    case GATEWAY_NO_MEMORY: break;
    }
    *text = "relay out of memory";
    return RPC_RESOURCE_EXHAUSTED;
}

static void expired(void *arg, const char *agent_id, const char *session_id)
{
    struct gateway *gw = arg;
    metrics_inc(gw->m.expired);
    route_down(gw->relay->route, agent_id, session_id);
    log_info("session %s of agent %s expired: no stream opened within ttl_s", session_id,
             agent_id);
}

/*
 * A session expires when its stream has not opened within ttl_s of its
 * Register. "Opened" is when the agent sent the stream's headers, which
 * the relay sees only once its workers reach that call: behind a Register
 * storm the call may wait in the completion queue longer than ttl_s. So
 * the clock runs only as far as the relay has caught up with its queue:
 * every call that arrived before now - lag has been seen, and a session
 * registered more than ttl_s before that point, still without a stream,
 * never opened one in time. The grace is at most another ttl_s, so a
 * relay that never catches up (a flood of Registers) still expires them.
 */
void agent_gateway_tick(struct gateway *gw, int64_t now_ns, int64_t lag_ns)
{
    int64_t ttl_ns = gw->relay->settings->route_ttl_s * 1000000000LL;
    ttl_ns += lag_ns < ttl_ns ? lag_ns : ttl_ns;
    if (session_table_expire(gw->relay->sessions, now_ns, ttl_ns, expired, gw) > 0)
        metrics_set(gw->m.sessions, (int64_t)session_table_count(gw->relay->sessions));
}

/*
 * Held frames past gen2_hold_s (all of them when `all`) are refused. The
 * list is taken whole, so no stream lock is taken under held_mu (hold()
 * takes them the other way round); streams still holding frames go back.
 */
static void expire_held(struct gateway *gw, bool all)
{
    pthread_mutex_lock(&gw->held_mu);
    struct stream *list = gw->held;
    gw->held = NULL;
    pthread_mutex_unlock(&gw->held_mu);
    int64_t now = mono_ns();
    while (list) {
        struct stream *s = list;
        struct stream_hold *h = atomic_load(&s->hold); /* set: s is listed */
        list = h->next;
        agent_stream_expire_held(s, now, all);
        pthread_mutex_lock(&h->mu);
        bool keep = h->head != NULL;
        h->on_list = keep;
        if (keep) {
            pthread_mutex_lock(&gw->held_mu);
            h->next = gw->held;
            gw->held = s;
            pthread_mutex_unlock(&gw->held_mu);
        }
        pthread_mutex_unlock(&h->mu);
        if (!keep)
            stream_unref(s); /* the list's */
    }
}

void agent_gateway_tick_held(struct gateway *gw) { expire_held(gw, false); }

void agent_gateway_begin_shutdown(struct gateway *gw)
{
    expire_held(gw, true); /* their acks are owed before the streams end */
    rpc_stream_set_poke(gw->streams);
}

size_t agent_gateway_open_streams(struct gateway *gw)
{
    return rpc_stream_set_count(gw->streams);
}

void agent_gateway_destroy(struct gateway *gw)
{
    if (!gw)
        return;
    rpc_stream_set_destroy(gw->streams);
    expire_held(gw, true); /* streams still listed: drop the list's references */
    pthread_mutex_destroy(&gw->held_mu);
    free(gw);
}
