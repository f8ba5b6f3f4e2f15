/*
 * agent_gateway.c - Register and TelemetryStream: who may open a stream,
 * each message decoded, validated and handed to the sinks, and each
 * frame's ack queued on its stream once the last sink reported. The stream
 * mechanics (reads under credit, the outgoing queue, the final status) are
 * rpc_stream.c's: a stream reads while fewer than max_inflight of its
 * frames are unacknowledged and no `block` sink queue it fed is full, which
 * keeps memory bounded whatever the agent sends.
 */
#include "agent_gateway.h"

#include "aeroarc/agent/v1/agent.pb-c.h"
#include "call_auth.h"
#include "frame_codec.h"
#include "gateway_metrics.h"
#include "job_json.h"
#include "log.h"
#include "mono_clock.h" /* latency: NTP steps must not show as negative acks */
#include "route.h"
#include "rpc_stream.h"
#include "session_table.h"
#include "sink_pipeline.h"
#include "worker_ctx.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AGENT_ID_HEADER "aero-arc-agent-id"

/* An encoded ack never exceeds this: agent ids are at most 128 bytes and
 * every error text at most ACK_ERROR_MAX (checked in gateway_create). */
#define ACK_ERROR_MAX 512
#define ACK_MAX_BYTES 1024

/* Outgoing messages a stream may queue beyond one ack per frame in flight:
 * room for the commands the relay sends down the same stream. */
#define STREAM_QUEUE_SPARE 16

/* One TelemetryStream: who it is for. The call itself, its reads, sends
 * and final status are the rpc_stream's; this object lives exactly as long
 * as the rpc_stream (freed by its on_free), and every reference to it is
 * a reference to the rpc_stream. */
struct stream {
    struct rpc_stream *rs;
    struct gateway *gw;
    atomic_bool superseded; /* ended by a newer session: counted as such, once */

    char agent_id[SESSION_AGENT_MAX + 1];
    size_t agent_len;
    char session_id[SESSION_ID_LEN + 1];
    uint64_t gen;

    struct sink_waiter waiters[]; /* one per sink */
};

/* A frame on its way through the sinks; fields and the frame's bytes follow. */
struct stream_job {
    struct frame_job job; /* first: complete() gets &job */
    struct stream *stream;
    int64_t recv_ns; /* monotonic, for the ack latency */
    aero_kv fields[];
};

struct gateway {
    struct relay *relay;
    size_t n_sinks;
    int max_inflight;
    char **sink_errors; /* per sink: the ack error text when it refused */

    struct rpc_stream_set *streams; /* open TelemetryStreams */

    struct gateway_metrics m;
};

int64_t gateway_now_ns(void) { return clock_ns(CLOCK_REALTIME); }

/* ------------------------------------------------------------ lifetime */

static void stream_ref(struct stream *s) { rpc_stream_ref(s->rs); }
static void stream_unref(struct stream *s) { rpc_stream_unref(s->rs); }

void gateway_drop_owner(void *owner) { stream_unref(owner); }

/* A newer Register or stream took this session over: end the old stream. */
static void supersede(void *owner)
{
    if (!owner)
        return;
    struct stream *old = owner;
    atomic_store(&old->superseded, true); /* on_closed counts it */
    rpc_stream_cancel(old->rs, RPC_ABORTED, "superseded by a newer session for this agent");
    stream_unref(old);
}

/* ------------------------------------------------------------- the acks */

/* Queue one ack behind the stream's other messages. It answers a frame
 * read, so its read credit returns once it is sent. */
static void send_ack(struct stream *s, uint64_t seq, enum ack_status status, const char *error,
                     int64_t recv_ns)
{
    metrics_inc(s->gw->m.acks[status]);
    uint8_t buf[ACK_MAX_BYTES];
    size_t n = ack_encode(buf, (aero_str){s->agent_id, s->agent_len}, seq, status, error);
    /* On failure nothing is acknowledged (never a false OK): the agent
     * resends, and the frame's credit is given back. */
    rpc_stream_send(s->rs, buf, n, RPC_SEND_CREDIT, (uint64_t)recv_ns);
}

static enum ack_status ack_status_of(aero_result r)
{
    switch (r) {
    case AERO_OK: return ACK_OK;
    case AERO_BACKOFF: return ACK_RETRY_WITH_BACKOFF;
    case AERO_REJECT: return ACK_PERMANENT_ERROR;
    default: return ACK_TEMPORARY_ERROR;
    }
}

/* Last sink reported (sink thread, or the submitting worker). */
static void job_complete(struct frame_job *job)
{
    struct stream_job *sj = (struct stream_job *)job;
    struct stream *s = sj->stream;
    aero_result worst = (aero_result)atomic_load(&job->worst);
    int failed = atomic_load(&job->failed_sink);
    const char *error = NULL;
    if (worst != AERO_OK && failed >= 0 && (size_t)failed < s->gw->n_sinks)
        error = s->gw->sink_errors[failed];
    send_ack(s, job->view.seq, ack_status_of(worst), error, sj->recv_ns);
    job_json_free(job);
    free(sj);
    stream_unref(s); /* the job's */
}

/* An ack's send completed: gRPC has taken it for the wire. The latency
 * observed here (frame read -> ack send done) is what an agent waits,
 * minus the network. */
static void on_sent(void *owner, uint64_t recv_ns, bool ok)
{
    struct stream *s = owner;
    if (ok)
        metrics_histogram_observe_ns(s->gw->m.ack_latency, mono_ns() - (int64_t)recv_ns);
}

/* --------------------------------------------------------- frame path */

/* Copy the frame's bytes next to its view and re-point every string there. */
static struct stream_job *job_create(struct stream *s, const aero_frame *view,
                                     const aero_kv *fields, const uint8_t *bytes, size_t len)
{
    size_t fsz = view->n_fields * sizeof(aero_kv);
    struct stream_job *sj = malloc(sizeof(*sj) + fsz + len);
    if (!sj)
        return NULL;
    char *copy = (char *)sj->fields + fsz;
    memcpy(copy, bytes, len);
    ptrdiff_t delta = copy - (const char *)bytes;
#define REBASE(str) ((str).ptr = (str).len ? (str).ptr + delta : copy)
    sj->job.view = *view;
    aero_frame *v = &sj->job.view;
    REBASE(v->raw_mavlink);
    REBASE(v->dialect);
    REBASE(v->msg_name);
    REBASE(v->flight_id);
    for (size_t i = 0; i < view->n_fields; i++) {
        sj->fields[i] = fields[i];
        REBASE(sj->fields[i].key);
        REBASE(sj->fields[i].value);
    }
#undef REBASE
    v->fields = sj->fields;
    v->protobuf = (aero_str){copy, len};
    v->agent_id = (aero_str){s->agent_id, s->agent_len};
    v->session_id = (aero_str){s->session_id, SESSION_ID_LEN};
    sj->stream = s;
    sj->job.complete = job_complete;
    return sj;
}

/* Hand an accepted frame to every sink. The stream stops reading while a
 * `block` sink it fed is full (one pause per such sink). */
static void submit(struct stream *s, struct stream_job *sj, struct worker_ctx *w)
{
    struct gateway *gw = s->gw;
    stream_ref(s); /* the job's */
    /* A queued waiter holds a reference until woken or cancelled. We only
     * read with no wait outstanding, so every waiter is free here: take one
     * per sink and give back those that were not queued. */
    for (size_t i = 0; i < gw->n_sinks; i++)
        stream_ref(s);
    size_t paused = sink_pipeline_submit(gw->relay->sinks, &sj->job, s->waiters, &w->owed);
    /* A frame that came alone is written (and acked) before the next read is
     * asked for: gRPC then sends the ack and the read's flow-control update
     * in one write. */
    if (!worker_ctx_defer(w))
        sink_pipeline_flush(gw->relay->sinks, &w->owed);
    for (size_t i = 0; i < gw->n_sinks - paused; i++)
        stream_unref(s);
    if (paused)
        rpc_stream_pause(s->rs, (int)paused);
}

/* One received message: decode, validate, ack or hand to the sinks.
 * Messages of a stream come one at a time (rpc_stream), so frames stay in
 * order. */
static void on_message(void *owner, const uint8_t *bytes, size_t len, struct worker_ctx *w)
{
    struct stream *s = owner;
    struct gateway *gw = s->gw;
    aero_frame view = {.size = sizeof(aero_frame)};
    struct frame_wire_ids wire;
    int64_t now = gateway_now_ns();
    int64_t recv_ns = mono_ns();

    metrics_add(gw->m.bytes, len);
    enum frame_decode_result dr =
        frame_decode(bytes, len, &view, w->fields, FRAME_MAX_FIELDS, &wire);
    if (dr == FRAME_DECODE_MALFORMED) {
        rpc_stream_credit(s->rs, 1); /* answered by the end of the stream */
        rpc_stream_end(s->rs, RPC_INVALID_ARGUMENT, "malformed TelemetryFrame");
        return;
    }
    view.received_unix_ns = now;
    const char *reason = dr == FRAME_DECODE_TOO_MANY_FIELDS
                             ? "more than 256 fields"
                             : frame_validate(&view, &wire, (aero_str){s->agent_id, s->agent_len});
    /* A rejected frame still shows the agent is alive. */
    session_table_touch(gw->relay->sessions, s->agent_id, s->gen, now,
                        reason ? (aero_str){NULL, 0} : view.flight_id);
    if (reason) {
        send_ack(s, view.seq, ACK_PERMANENT_ERROR, reason, recv_ns);
        return;
    }
    struct stream_job *sj = job_create(s, &view, w->fields, bytes, len);
    if (!sj) {
        send_ack(s, view.seq, ACK_TEMPORARY_ERROR, "relay out of memory", recv_ns);
        return;
    }
    sj->recv_ns = recv_ns;
    metrics_inc(gw->m.frames);
    /* Lock-free once the name has been seen (see metrics_vec_get). */
    if (view.msg_name.len > 0)
        metrics_inc(metrics_vec_get(gw->m.messages, view.msg_name.ptr, view.msg_name.len));
    else
        metrics_inc(metrics_vec_get(gw->m.messages, "unknown", 7));
    submit(s, sj, w);
}

/* A sink queue this stream waited on has room again (sink thread). */
static void on_wake(struct sink_waiter *w)
{
    struct stream *s = w->owner;
    rpc_stream_resume(s->rs);
    stream_unref(s); /* the waiter's */
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

static void on_closed(void *owner, bool cancelled, enum rpc_code code)
{
    struct stream *s = owner;
    struct gateway *gw = s->gw;
    for (size_t i = 0; i < gw->n_sinks; i++)
        if (sink_pipeline_cancel_wait(gw->relay->sinks, i, &s->waiters[i]))
            stream_unref(s);
    /* One outcome per stream: a superseded stream also looks cancelled. */
    metrics_inc(atomic_load(&s->superseded) ? gw->m.closed_superseded
                : cancelled                 ? gw->m.closed_cancelled
                : code == RPC_OK            ? gw->m.closed_ok
                                            : gw->m.closed_error);
    end_session(s);
}

static void on_free(void *owner) { free(owner); }

static const struct rpc_stream_handler stream_handler = {
    .on_message = on_message,
    .on_sent = on_sent,
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

static struct stream *stream_create(struct gateway *gw, struct rpc_call *call, const char *agent,
                                    size_t agent_len)
{
    struct stream *s = calloc(1, sizeof(*s) + gw->n_sinks * sizeof(struct sink_waiter));
    if (!s)
        return NULL;
    struct rpc_stream_config cfg = {
        .credit = gw->max_inflight,
        .queue_max = (size_t)gw->max_inflight + STREAM_QUEUE_SPARE,
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
    memcpy(s->agent_id, agent, agent_len + 1);
    s->agent_len = agent_len;
    for (size_t i = 0; i < gw->n_sinks; i++) {
        s->waiters[i].wake = on_wake;
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
        rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                        "missing or invalid aero-arc-agent-id metadata "
                        "(1-128 bytes of A-Z a-z 0-9 . _ - :)",
                        NULL, 0);
        return;
    }
    if (!call_auth_agent(gw->relay->auth, call, agent))
        return;
    rpc_call_metadata_done(call);
    struct stream *s = stream_create(gw, call, agent, agent_len);
    if (!s) {
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "relay out of memory", NULL, 0);
        return;
    }

    void *displaced = NULL;
    stream_ref(s); /* the table's */
    if (session_table_attach(gw->relay->sessions, agent, s, &s->gen, s->session_id, &displaced) < 0) {
        metrics_inc(gw->m.streams_refused);
        stream_unref(s); /* the table did not take it */
        rpc_stream_refuse(s->rs, RPC_FAILED_PRECONDITION,
                          "no session for this agent: register first");
        return;
    }
    supersede(displaced);
    metrics_inc(gw->m.streams_opened);
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
    if (!session_agent_id_valid(req->agent_id, strlen(req->agent_id))) {
        metrics_inc(gw->m.register_rejected);
        rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                        "agent_id must be 1-128 bytes of A-Z a-z 0-9 . _ - :", NULL, 0);
        return;
    }
    if (atomic_load(&gw->relay->shutting_down)) {
        rpc_call_finish(call, RPC_UNAVAILABLE, "relay shutting down", NULL, 0);
        return;
    }
    if (!call_auth_agent(gw->relay->auth, call, req->agent_id))
        return;

    char session_id[SESSION_ID_LEN + 1];
    void *displaced = NULL;
    if (session_table_register(gw->relay->sessions, req->agent_id, gateway_now_ns(), session_id,
                               &displaced) < 0) {
        metrics_inc(gw->m.session_limit);
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "relay full: max_sessions reached", NULL, 0);
        return;
    }
    supersede(displaced);
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

struct gateway *gateway_create(struct relay *relay)
{
    struct gateway *gw = calloc(1, sizeof(*gw));
    if (!gw)
        return NULL;
    gw->relay = relay;
    gw->n_sinks = sink_pipeline_count(relay->sinks);
    gw->max_inflight = (int)relay->settings->max_inflight;
    session_table_set_max(relay->sessions, (size_t)relay->settings->max_sessions);
    gw->sink_errors = calloc(gw->n_sinks + 1, sizeof(char *));
    gw->streams = rpc_stream_set_create();
    if (!gw->sink_errors || !gw->streams) {
        free(gw->sink_errors);
        rpc_stream_set_destroy(gw->streams);
        free(gw);
        return NULL;
    }
    for (size_t i = 0; i < gw->n_sinks; i++) {
        if (asprintf(&gw->sink_errors[i],
                     "sink \"%s\" did not accept the frame (queue full or write failed); resend",
                     sink_pipeline_name(relay->sinks, i)) < 0)
            gw->sink_errors[i] = NULL;
        /* Sink names are at most 64 bytes, so this never cuts; it keeps
         * every ack within ACK_MAX_BYTES whatever a future message says. */
        else if (strlen(gw->sink_errors[i]) > ACK_ERROR_MAX)
            gw->sink_errors[i][ACK_ERROR_MAX] = '\0';
    }
    /* ack_encoded_bound adds at most 65 bytes of tags, lengths and digits. */
    _Static_assert(SESSION_AGENT_MAX + ACK_ERROR_MAX + 96 <= ACK_MAX_BYTES,
                   "an ack must fit ACK_MAX_BYTES");
    gateway_metrics_register(&gw->m, relay->metrics);
    return gw;
}

int gateway_add_methods(struct gateway *gw, struct rpc_server *server)
{
    if (rpc_server_add_unary(server, "/aeroarc.agent.v1.AgentGateway/Register",
                             &aeroarc__agent__v1__register_request__descriptor, register_call,
                             gw) < 0 ||
        rpc_server_add_stream(server, "/aeroarc.agent.v1.AgentGateway/TelemetryStream",
                              telemetry_stream, gw) < 0)
        return -1;
    return 0;
}

static void expired(void *arg, const char *agent_id, const char *session_id)
{
    struct gateway *gw = arg;
    metrics_inc(gw->m.expired);
    route_down(gw->relay->route, agent_id, session_id);
    log_info("session %s of agent %s expired: no stream opened within ttl_s", session_id,
             agent_id);
}

void gateway_tick(struct gateway *gw, int64_t now_ns)
{
    int64_t ttl_ns = gw->relay->settings->route_ttl_s * 1000000000LL;
    if (session_table_expire(gw->relay->sessions, now_ns, ttl_ns, expired, gw) > 0)
        metrics_set(gw->m.sessions, (int64_t)session_table_count(gw->relay->sessions));
}

void gateway_begin_shutdown(struct gateway *gw)
{
    rpc_stream_set_poke(gw->streams);
}

size_t gateway_open_streams(struct gateway *gw)
{
    return rpc_stream_set_count(gw->streams);
}

void gateway_destroy(struct gateway *gw)
{
    if (!gw)
        return;
    for (size_t i = 0; gw->sink_errors && i < gw->n_sinks; i++)
        free(gw->sink_errors[i]);
    free(gw->sink_errors);
    rpc_stream_set_destroy(gw->streams);
    free(gw);
}
