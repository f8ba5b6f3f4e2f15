/*
 * agent_gateway.c - Register and TelemetryStream. Each stream is a small
 * state machine under its own mutex, driven by completion-queue workers
 * (recv, send, close, status) and by sink threads (frame completions,
 * queue-room wake-ups). At most one recv and one send are in flight per
 * stream; acks wait in a ring; a stream reads only while fewer than
 * max_inflight of its frames are unacknowledged and no `block` sink queue
 * it fed is full, which keeps memory bounded whatever the agent sends.
 */
#include "agent_gateway.h"

#include "aeroarc/agent/v1/agent.pb-c.h"
#include "call_auth.h"
#include "frame_codec.h"
#include "job_json.h"
#include "log.h"
#include "mono_clock.h" /* latency: NTP steps must not show as negative acks */
#include "route.h"
#include "session_table.h"
#include "sink_pipeline.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AGENT_ID_HEADER "aero-arc-agent-id"

/* Acks ring slots a new stream starts with. */
#define ACKS_INITIAL 4
/* An encoded ack never exceeds this: agent ids are at most 128 bytes and
 * every error text at most ACK_ERROR_MAX (checked in gateway_create). */
#define ACK_ERROR_MAX 512
#define ACK_MAX_BYTES 1024

/* Acks of one stream gRPC may hold back in a row before one is written
 * (see progress). */
#define ACK_HOLD_MAX 16

struct ack_item {
    uint64_t seq;
    enum ack_status status;
    const char *error; /* static, or owned by the gateway */
    int64_t recv_ns;   /* monotonic time the frame was read: ack latency */
};

struct stream {
    struct rpc_tag recv_tag, send_tag, close_tag, status_tag;
    struct rpc_call *call;
    struct gateway *gw;
    atomic_int refs;
    atomic_bool superseded; /* ended by a newer session: counted as such, once */

    char agent_id[SESSION_AGENT_MAX + 1];
    size_t agent_len;
    char session_id[SESSION_ID_LEN + 1];
    uint64_t gen;

    pthread_mutex_t mu; /* everything below */
    bool recv_pending, send_pending, status_pending;
    bool read_closed;   /* no more reads: EOF, bad frame, shutdown, call over */
    bool dead;          /* the call is over (cancelled, transport gone) */
    bool ended;         /* session released */
    enum rpc_code final_code;
    const char *final_msg;
    int inflight;       /* frames read whose ack is not yet sent */
    int paused;         /* sink queues we wait on for room */
    struct ack_item *acks;   /* ring; grows on demand up to max_inflight */
    size_t ack_cap, ack_head, ack_len;
    int acks_held;           /* sent in a row with `more` set, not yet written */
    int64_t sending_recv_ns; /* recv_ns of the ack being sent, while send_pending */
    struct stream *prev, *next; /* gw->streams */

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

    pthread_mutex_t mu;
    struct stream *streams;
    size_t n_streams;

    aero_metric *m_registrations, *m_register_rejected, *m_frames, *m_bytes;
    aero_metric *m_acks[4];
    aero_metric *m_streams_opened, *m_streams_refused;
    aero_metric *m_closed_ok, *m_closed_error, *m_closed_cancelled, *m_closed_superseded;
    aero_metric *m_sessions, *m_expired, *m_session_limit;
    struct metric_vec *m_messages;       /* by msg_name, capped */
    struct metric_histogram *h_ack_latency;
};

/* Distinct message_type values before the rest count as "other": MAVLink
 * common has about 230 messages; agent-chosen names must not grow /metrics
 * without bound. */
#define MESSAGE_TYPES_MAX 256

int64_t gateway_now_ns(void) { return clock_ns(CLOCK_REALTIME); }

/* ------------------------------------------------------------ lifetime */

static void stream_ref(struct stream *s) { atomic_fetch_add(&s->refs, 1); }

static void stream_unref(struct stream *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    rpc_call_free(s->call);
    pthread_mutex_destroy(&s->mu);
    free(s->acks);
    free(s);
}

void gateway_drop_owner(void *owner) { stream_unref(owner); }

/* A newer Register or stream took this session over: end the old stream. */
static void supersede(void *owner)
{
    if (!owner)
        return;
    struct stream *old = owner;
    atomic_store(&old->superseded, true); /* on_close counts it */
    rpc_call_cancel(old->call, RPC_ABORTED, "superseded by a newer session for this agent");
    stream_unref(old);
}

/* --------------------------------------------------------- the machine */

static void set_final(struct stream *s, enum rpc_code code, const char *msg)
{
    if (s->final_code == RPC_OK && s->final_msg == NULL) {
        s->final_code = code;
        s->final_msg = msg;
    }
}

/* The ring starts small: most streams never have many acks waiting, and
 * 10,000 idle streams should not each hold max_inflight slots. It never
 * needs more than max_inflight (a stream reads only below that). */
static int grow_acks(struct stream *s)
{
    size_t cap = s->ack_cap ? s->ack_cap * 2 : ACKS_INITIAL;
    struct ack_item *ring = malloc(cap * sizeof(*ring));
    if (!ring)
        return -ENOMEM;
    for (size_t i = 0; i < s->ack_len; i++)
        ring[i] = s->acks[(s->ack_head + i) % s->ack_cap];
    free(s->acks);
    s->acks = ring;
    s->ack_cap = cap;
    s->ack_head = 0;
    return 0;
}

static void push_ack(struct stream *s, uint64_t seq, enum ack_status status, const char *error,
                     int64_t recv_ns)
{
    metrics_inc(s->gw->m_acks[status]);
    if (s->dead) { /* nobody to tell: the frame is simply not acknowledged */
        s->inflight--;
        return;
    }
    if (s->ack_len == s->ack_cap && grow_acks(s) < 0) {
        /* Not acknowledged at all (never a false OK): the agent resends. */
        s->inflight--;
        return;
    }
    size_t at = (s->ack_head + s->ack_len) % s->ack_cap;
    s->acks[at] = (struct ack_item){seq, status, error, recv_ns};
    s->ack_len++;
}

/*
 * Advance the stream: send the next ack, read the next frame, or end with a
 * status once nothing is owed. Called with s->mu held after every event.
 */
static void progress(struct stream *s)
{
    struct gateway *gw = s->gw;
    if (s->status_pending || s->dead)
        return;

    if (!s->send_pending && s->ack_len > 0) {
        struct ack_item a = s->acks[s->ack_head];
        s->ack_head = (s->ack_head + 1) % s->ack_cap;
        s->ack_len--;
        uint8_t buf[ACK_MAX_BYTES]; /* rpc_stream_send copies it */
        size_t n = ack_encode(buf, (aero_str){s->agent_id, s->agent_len}, a.seq, a.status,
                              a.error);
        stream_ref(s);
        s->send_pending = true;
        s->sending_recv_ns = a.recv_ns;
        /* More acks waiting: gRPC may hold this one for the next, so a
         * run of acks (a sink thread's batch after its fsync) leaves in
         * one write instead of one each. At most ACK_HOLD_MAX in a row:
         * under steady load the ring never empties, and acks held until it
         * did stalled the agents' windows (docs/benchmarks.md). */
        bool more = s->ack_len > 0 && s->acks_held < ACK_HOLD_MAX;
        s->acks_held = more ? s->acks_held + 1 : 0;
        if (rpc_stream_send(s->call, buf, n, more, &s->send_tag) < 0) {
            s->send_pending = false;
            s->inflight--;
            s->read_closed = true;
            stream_unref(s); /* never the last: the caller holds one */
        }
    }

    if (!s->read_closed && atomic_load(&gw->relay->shutting_down)) {
        s->read_closed = true;
        set_final(s, RPC_UNAVAILABLE, "relay shutting down");
    }
    if (!s->read_closed && !s->recv_pending && s->inflight < gw->max_inflight && s->paused <= 0) {
        stream_ref(s);
        s->recv_pending = true;
        if (rpc_stream_recv(s->call, &s->recv_tag) < 0) {
            s->recv_pending = false;
            s->read_closed = true;
            stream_unref(s);
        }
    }

    if (s->read_closed && s->inflight == 0 && !s->send_pending && s->ack_len == 0) {
        stream_ref(s);
        s->status_pending = true;
        if (rpc_stream_status(s->call, s->final_code, s->final_msg, &s->status_tag) < 0)
            stream_unref(s); /* the call is over; close_tag will end it */
    }
}

static void stream_lock_progress_unlock(struct stream *s)
{
    pthread_mutex_lock(&s->mu);
    progress(s);
    pthread_mutex_unlock(&s->mu);
}

/* --------------------------------------------------------- frame path */

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

    pthread_mutex_lock(&s->mu);
    push_ack(s, job->view.seq, ack_status_of(worst), error, sj->recv_ns);
    progress(s);
    pthread_mutex_unlock(&s->mu);
    job_json_free(job);
    free(sj);
    stream_unref(s);
}

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

/* One received message: decode, validate, ack or hand to the sinks.
 * Runs with recv_pending still set, so frames of a stream stay in order. */
static void handle_frame(struct stream *s, const uint8_t *bytes, size_t len)
{
    struct gateway *gw = s->gw;
    static _Thread_local aero_kv fields[FRAME_MAX_FIELDS];
    aero_frame view = {.size = sizeof(aero_frame)};
    struct frame_wire_ids wire;
    int64_t now = gateway_now_ns();
    int64_t recv_ns = mono_ns();

    metrics_add(gw->m_bytes, len);
    enum frame_decode_result dr = frame_decode(bytes, len, &view, fields, FRAME_MAX_FIELDS, &wire);
    if (dr == FRAME_DECODE_MALFORMED) {
        pthread_mutex_lock(&s->mu);
        s->read_closed = true;
        set_final(s, RPC_INVALID_ARGUMENT, "malformed TelemetryFrame");
        pthread_mutex_unlock(&s->mu);
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
        pthread_mutex_lock(&s->mu);
        s->inflight++;
        push_ack(s, view.seq, ACK_PERMANENT_ERROR, reason, recv_ns);
        pthread_mutex_unlock(&s->mu);
        return;
    }

    struct stream_job *sj = job_create(s, &view, fields, bytes, len);
    pthread_mutex_lock(&s->mu);
    s->inflight++;
    if (!sj)
        push_ack(s, view.seq, ACK_TEMPORARY_ERROR, "relay out of memory", recv_ns);
    pthread_mutex_unlock(&s->mu);
    if (!sj)
        return;
    sj->recv_ns = recv_ns;
    metrics_inc(gw->m_frames);
    /* Lock-free once the name has been seen (see metrics_vec_get). */
    if (view.msg_name.len > 0)
        metrics_inc(metrics_vec_get(gw->m_messages, view.msg_name.ptr, view.msg_name.len));
    else
        metrics_inc(metrics_vec_get(gw->m_messages, "unknown", 7));
    stream_ref(s); /* the job's */
    /* A queued waiter holds a reference until woken or cancelled. We only
     * read with no wait outstanding, so every waiter is free here: take one
     * per sink and give back those that were not queued. */
    for (size_t i = 0; i < gw->n_sinks; i++)
        stream_ref(s);
    size_t paused = sink_pipeline_submit(gw->relay->sinks, &sj->job, s->waiters);
    /* A frame that came alone is written (and acked) before the next read is
     * asked for: gRPC then sends the ack and the read's flow-control update
     * in one write. */
    if (!rpc_worker_defer())
        sink_pipeline_flush(gw->relay->sinks);
    for (size_t i = 0; i < gw->n_sinks - paused; i++)
        stream_unref(s);
    if (paused) {
        pthread_mutex_lock(&s->mu);
        s->paused += (int)paused;
        pthread_mutex_unlock(&s->mu);
    }
}

static void on_recv(struct rpc_tag *tag, bool ok)
{
    struct stream *s = (struct stream *)((char *)tag - offsetof(struct stream, recv_tag));
    size_t len = 0;
    const uint8_t *msg = ok ? rpc_stream_message(s->call, &len) : NULL;
    if (msg) {
        handle_frame(s, msg, len);
        rpc_stream_message_release(s->call);
    }
    pthread_mutex_lock(&s->mu);
    s->recv_pending = false;
    if (!msg)
        s->read_closed = true; /* EOF (ok) or the call failed (!ok) */
    progress(s);
    pthread_mutex_unlock(&s->mu);
    stream_unref(s);
}

/* An ack's send completed: gRPC has taken it for the wire. The latency
 * observed here (frame read -> ack send done) is what an agent waits,
 * minus the network. */
static void on_send(struct rpc_tag *tag, bool ok)
{
    struct stream *s = (struct stream *)((char *)tag - offsetof(struct stream, send_tag));
    pthread_mutex_lock(&s->mu);
    if (ok)
        metrics_histogram_observe_ns(s->gw->h_ack_latency, mono_ns() - s->sending_recv_ns);
    s->send_pending = false;
    s->inflight--;
    if (!ok)
        s->read_closed = true;
    progress(s);
    pthread_mutex_unlock(&s->mu);
    stream_unref(s);
}

static void on_status(struct rpc_tag *tag, bool ok)
{
    (void)ok;
    struct stream *s = (struct stream *)((char *)tag - offsetof(struct stream, status_tag));
    stream_unref(s);
}

/* A sink queue this stream waited on has room again (sink thread). */
static void on_wake(struct sink_waiter *w)
{
    struct stream *s = w->owner;
    pthread_mutex_lock(&s->mu);
    s->paused--;
    progress(s);
    pthread_mutex_unlock(&s->mu);
    stream_unref(s); /* the waiter's */
}

/* The stream's session ends with the call: detach (only if still ours),
 * take the route down, leave the open-stream list. */
static void end_session(struct stream *s)
{
    struct gateway *gw = s->gw;
    void *owner = NULL;
    if (session_table_detach(gw->relay->sessions, s->agent_id, s->gen, &owner)) {
        route_down(gw->relay->route, s->agent_id, s->session_id);
        metrics_set(gw->m_sessions, (int64_t)session_table_count(gw->relay->sessions));
        stream_unref(owner);
    }
    pthread_mutex_lock(&gw->mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        gw->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    gw->n_streams--;
    pthread_mutex_unlock(&gw->mu);
    stream_unref(s); /* the list's */
}

static void on_close(struct rpc_tag *tag, bool ok)
{
    (void)ok;
    struct stream *s = (struct stream *)((char *)tag - offsetof(struct stream, close_tag));
    struct gateway *gw = s->gw;
    bool cancelled = rpc_call_was_cancelled(s->call);

    pthread_mutex_lock(&s->mu);
    s->dead = true;
    s->read_closed = true;
    s->inflight -= (int)s->ack_len; /* acks nobody will read */
    s->ack_len = 0;
    bool clean = !cancelled && s->final_code == RPC_OK;
    pthread_mutex_unlock(&s->mu);

    for (size_t i = 0; i < gw->n_sinks; i++)
        if (sink_pipeline_cancel_wait(gw->relay->sinks, i, &s->waiters[i]))
            stream_unref(s);
    /* One outcome per stream: a superseded stream also looks cancelled. */
    metrics_inc(atomic_load(&s->superseded) ? gw->m_closed_superseded
                : cancelled                 ? gw->m_closed_cancelled
                : clean                     ? gw->m_closed_ok
                                            : gw->m_closed_error);
    end_session(s);
    stream_unref(s); /* the close batch's */
}

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

static struct stream *stream_alloc(struct gateway *gw, struct rpc_call *call)
{
    struct stream *s = calloc(1, sizeof(*s) + gw->n_sinks * sizeof(struct sink_waiter));
    if (!s)
        return NULL;
    if (grow_acks(s) < 0) {
        free(s);
        return NULL;
    }
    s->call = call;
    s->gw = gw;
    atomic_init(&s->refs, 1);
    atomic_init(&s->superseded, false);
    pthread_mutex_init(&s->mu, NULL);
    s->recv_tag.done = on_recv;
    s->send_tag.done = on_send;
    s->close_tag.done = on_close;
    s->status_tag.done = on_status;
    for (size_t i = 0; i < gw->n_sinks; i++) {
        s->waiters[i].wake = on_wake;
        s->waiters[i].owner = s;
    }
    return s;
}

static void telemetry_stream(struct rpc_call *call, void *service)
{
    struct gateway *gw = service;
    char agent[SESSION_AGENT_MAX + 1];
    size_t agent_len;

    if (atomic_load(&gw->relay->shutting_down)) {
        rpc_call_finish(call, RPC_UNAVAILABLE, "relay shutting down", NULL, 0);
        return;
    }
    if (!header_agent_id(call, agent, &agent_len)) {
        metrics_inc(gw->m_streams_refused);
        rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                        "missing or invalid aero-arc-agent-id metadata "
                        "(1-128 bytes of A-Z a-z 0-9 . _ - :)",
                        NULL, 0);
        return;
    }
    if (!call_auth_agent(gw->relay->auth, call, agent))
        return;
    struct stream *s = stream_alloc(gw, call);
    if (!s) {
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "relay out of memory", NULL, 0);
        return;
    }
    memcpy(s->agent_id, agent, agent_len + 1);
    s->agent_len = agent_len;
    rpc_call_metadata_done(call);

    void *displaced = NULL;
    stream_ref(s); /* the table's */
    if (session_table_attach(gw->relay->sessions, agent, s, &s->gen, s->session_id, &displaced) < 0) {
        metrics_inc(gw->m_streams_refused);
        s->call = NULL; /* finish releases the call itself */
        free(s->acks);
        pthread_mutex_destroy(&s->mu);
        free(s);
        rpc_call_finish(call, RPC_FAILED_PRECONDITION, "no session for this agent: register first",
                        NULL, 0);
        return;
    }
    supersede(displaced);
    metrics_inc(gw->m_streams_opened);

    pthread_mutex_lock(&gw->mu);
    stream_ref(s); /* the list's */
    s->next = gw->streams;
    if (gw->streams)
        gw->streams->prev = s;
    gw->streams = s;
    gw->n_streams++;
    pthread_mutex_unlock(&gw->mu);

    stream_ref(s); /* the close batch's */
    if (rpc_stream_begin(call, &s->close_tag) < 0) {
        stream_unref(s);
        end_session(s);
    } else {
        stream_lock_progress_unlock(s);
    }
    stream_unref(s); /* ours */
}

/* ------------------------------------------------------------ Register */

static void register_call(struct rpc_call *call, void *service)
{
    struct gateway *gw = service;
    size_t len;
    const uint8_t *bytes = rpc_call_request(call, &len);
    Aeroarc__Agent__V1__RegisterRequest *req =
        aeroarc__agent__v1__register_request__unpack(NULL, len, bytes);
    if (!req) {
        metrics_inc(gw->m_register_rejected);
        rpc_call_finish(call, RPC_INVALID_ARGUMENT, "malformed RegisterRequest", NULL, 0);
        return;
    }
    if (!session_agent_id_valid(req->agent_id, strlen(req->agent_id))) {
        metrics_inc(gw->m_register_rejected);
        rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                        "agent_id must be 1-128 bytes of A-Z a-z 0-9 . _ - :", NULL, 0);
        aeroarc__agent__v1__register_request__free_unpacked(req, NULL);
        return;
    }
    if (atomic_load(&gw->relay->shutting_down)) {
        rpc_call_finish(call, RPC_UNAVAILABLE, "relay shutting down", NULL, 0);
        aeroarc__agent__v1__register_request__free_unpacked(req, NULL);
        return;
    }
    if (!call_auth_agent(gw->relay->auth, call, req->agent_id)) {
        aeroarc__agent__v1__register_request__free_unpacked(req, NULL);
        return;
    }

    char session_id[SESSION_ID_LEN + 1];
    void *displaced = NULL;
    if (session_table_register(gw->relay->sessions, req->agent_id, gateway_now_ns(), session_id,
                               &displaced) < 0) {
        metrics_inc(gw->m_session_limit);
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "relay full: max_sessions reached", NULL, 0);
        aeroarc__agent__v1__register_request__free_unpacked(req, NULL);
        return;
    }
    supersede(displaced);
    route_up(gw->relay->route, req->agent_id, session_id);
    metrics_inc(gw->m_registrations);
    metrics_set(gw->m_sessions, (int64_t)session_table_count(gw->relay->sessions));
    log_debug("registered agent %s (%s, %s) as %s", req->agent_id, req->agent_version,
              req->platform, session_id);

    Aeroarc__Agent__V1__RegisterResponse resp = AEROARC__AGENT__V1__REGISTER_RESPONSE__INIT;
    resp.agent_id = req->agent_id;
    resp.session_id = session_id;
    resp.max_inflight = gw->max_inflight;
    uint8_t out[512];
    size_t n = aeroarc__agent__v1__register_response__pack(&resp, out);
    rpc_call_finish(call, RPC_OK, NULL, out, n);
    aeroarc__agent__v1__register_request__free_unpacked(req, NULL);
}

/* --------------------------------------------------------------- setup */

static void register_metrics(struct gateway *gw, struct metrics *m)
{
    static const char *ack_labels[4] = {"status=\"ok\"", "status=\"temporary_error\"",
                                        "status=\"permanent_error\"",
                                        "status=\"retry_with_backoff\""};
    gw->m_registrations = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_registrations_total",
                                           "Successful Register calls.", NULL);
    gw->m_register_rejected =
        metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_registrations_rejected_total",
                         "Register calls refused (bad request).", NULL);
    gw->m_frames = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_frames_accepted_total",
                                    "Frames handed to the sinks.", NULL);
    gw->m_bytes = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_frame_bytes_received_total",
                                   "Bytes of TelemetryFrame messages received.", NULL);
    for (int i = 0; i < 4; i++)
        gw->m_acks[i] = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_acks_total",
                                         "Acks by status.", ack_labels[i]);
    gw->m_streams_opened = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_streams_opened_total",
                                            "Telemetry streams accepted.", NULL);
    gw->m_streams_refused =
        metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_streams_refused_total",
                         "Telemetry streams refused at open (bad header, not registered).", NULL);
    const char *help = "Telemetry streams ended, by outcome.";
    gw->m_closed_ok = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_streams_closed_total",
                                       help, "outcome=\"ok\"");
    gw->m_closed_error = metrics_register(m, AERO_METRIC_COUNTER,
                                          "aero_relay_streams_closed_total", help,
                                          "outcome=\"error\"");
    gw->m_closed_cancelled = metrics_register(m, AERO_METRIC_COUNTER,
                                              "aero_relay_streams_closed_total", help,
                                              "outcome=\"cancelled\"");
    gw->m_closed_superseded = metrics_register(m, AERO_METRIC_COUNTER,
                                               "aero_relay_streams_closed_total", help,
                                               "outcome=\"superseded\"");
    gw->m_sessions = metrics_register(m, AERO_METRIC_GAUGE, "aero_relay_sessions_active",
                                      "Sessions in the table.", NULL);
    gw->m_expired = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_sessions_expired_total",
                                     "Sessions whose stream never opened within ttl_s.", NULL);
    gw->m_session_limit = metrics_register(m, AERO_METRIC_COUNTER,
                                           "aero_relay_sessions_rejected_total",
                                           "Register calls refused: max_sessions reached.", NULL);
    gw->m_messages = metrics_vec_register(
        m, "aero_relay_messages_total",
        "Frames accepted (handed to the sinks), by msg_name; past 256 names: \"other\".",
        "source=\"grpc\"", "message_type", MESSAGE_TYPES_MAX, "other");
    static const double ack_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                         0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                         1,      2.5,     5,      10};
    gw->h_ack_latency = metrics_histogram_register(
        m, "aero_relay_ack_latency_seconds",
        "Time from reading a frame to its ack's send completing, any status.", ack_buckets,
        sizeof(ack_buckets) / sizeof(ack_buckets[0]));
}

struct gateway *gateway_create(struct relay *relay)
{
    struct gateway *gw = calloc(1, sizeof(*gw));
    if (!gw)
        return NULL;
    gw->relay = relay;
    gw->n_sinks = sink_pipeline_count(relay->sinks);
    gw->max_inflight = (int)relay->settings->max_inflight;
    session_table_set_max(relay->sessions, (size_t)relay->settings->max_sessions);
    pthread_mutex_init(&gw->mu, NULL);
    gw->sink_errors = calloc(gw->n_sinks + 1, sizeof(char *));
    for (size_t i = 0; gw->sink_errors && i < gw->n_sinks; i++) {
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
    register_metrics(gw, relay->metrics);
    return gw;
}

int gateway_add_methods(struct gateway *gw, struct rpc_server *server)
{
    if (rpc_server_add_method(server, "/aeroarc.agent.v1.AgentGateway/Register", RPC_METHOD_UNARY,
                              register_call, gw) < 0 ||
        rpc_server_add_method(server, "/aeroarc.agent.v1.AgentGateway/TelemetryStream",
                              RPC_METHOD_STREAM, telemetry_stream, gw) < 0)
        return -1;
    return 0;
}

struct expiry_ctx {
    struct gateway *gw;
};

static void expired(void *arg, const char *agent_id, const char *session_id)
{
    struct expiry_ctx *ctx = arg;
    metrics_inc(ctx->gw->m_expired);
    route_down(ctx->gw->relay->route, agent_id, session_id);
    log_info("session %s of agent %s expired: no stream opened within ttl_s", session_id,
             agent_id);
}

void gateway_tick(struct gateway *gw, int64_t now_ns)
{
    struct expiry_ctx ctx = {gw};
    int64_t ttl_ns = gw->relay->settings->route_ttl_s * 1000000000LL;
    if (session_table_expire(gw->relay->sessions, now_ns, ttl_ns, expired, &ctx) > 0)
        metrics_set(gw->m_sessions, (int64_t)session_table_count(gw->relay->sessions));
}

void gateway_begin_shutdown(struct gateway *gw)
{
    pthread_mutex_lock(&gw->mu);
    for (struct stream *s = gw->streams; s; s = s->next)
        stream_lock_progress_unlock(s);
    pthread_mutex_unlock(&gw->mu);
}

size_t gateway_open_streams(struct gateway *gw)
{
    pthread_mutex_lock(&gw->mu);
    size_t n = gw->n_streams;
    pthread_mutex_unlock(&gw->mu);
    return n;
}

void gateway_destroy(struct gateway *gw)
{
    if (!gw)
        return;
    for (size_t i = 0; gw->sink_errors && i < gw->n_sinks; i++)
        free(gw->sink_errors[i]);
    free(gw->sink_errors);
    pthread_mutex_destroy(&gw->mu);
    free(gw);
}
