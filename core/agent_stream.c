/*
 * agent_stream.c - every message of an open TelemetryStream: which
 * generation the stream speaks (SPEC.md section 9, decided once), the
 * frame decoded in place, admitted by that generation's rules, copied into
 * a job and handed to the sinks; the ack encoded for that generation and
 * queued on the stream once the last sink reported. Messages of a stream
 * come one at a time (rpc_stream), on gRPC workers; job completions come
 * from sink threads.
 */
#include "agent_internal.h"

#include "command_table.h"
#include "aeroarc/agent/v1/agent.pb-c.h"
#include "job_json.h"
#include "log.h"
#include "mono_clock.h" /* latency: NTP steps must not show as negative acks */
#include "wire_prepare.h"
#include "wire_record.h"
#include "worker_ctx.h"

#include <stdlib.h>
#include <string.h>

/* A frame on its way through the sinks; fields and the frame's bytes follow. */
struct stream_job {
    struct frame_job job; /* first: complete() gets &job */
    struct stream *stream;
    int64_t recv_ns; /* monotonic, for the ack latency */
    char wal_id[FRAME_WAL_ID_LEN + 1]; /* canonical, or "" */
    struct stream_job *held_next; /* the stream's held frames, in order */
    int64_t hold_until;           /* monotonic: refused RETRY_WITH_BACKOFF after */
    /* With control on: room for the authoritative context recorded (SPEC.md
     * section 9, envelope), stamped as the frame goes to the sinks; NULL
     * otherwise. After the fields. */
    struct command_context *stamp;
    aero_kv fields[];
};

static const char queue_full_text[] = "relay sink queue is full";
static const char unreconciled_text[] =
    "operation context has not been reconciled for this Relay session";

/* ----------------------------------------------- the reconciliation gate */

struct gate_visit {
    struct stream *s;
    struct command_table *t;
};

/* Under the session's lock: its command table, made if it has none yet,
 * while this stream is the session's. */
static void gate_visit(void *arg, struct session_visit *v)
{
    struct gate_visit *gv = arg;
    if (v->owner != gv->s)
        return;
    if (!*v->ext)
        *v->ext = agent_gateway_new_table(gv->s->gw, gv->s->agent_id);
    if (*v->ext) {
        command_table_ref(*v->ext);
        gv->t = *v->ext;
    }
}

/*
 * With control on (SPEC.md section 10), the command table of the stream's
 * session, which knows whether its operation context is reconciled; NULL
 * with *refused set when it cannot be had (the session is no longer this
 * stream's, or out of memory). Control off: NULL, not refused.
 */
static struct command_table *gate_table(struct stream *s, const char **refused)
{
    *refused = NULL;
    if (!s->gw->relay->control)
        return NULL;
    struct command_table *t = atomic_load(&s->commands);
    if (t)
        return t;
    struct gate_visit gv = {s, NULL};
    if (session_table_visit(s->gw->relay->sessions, s->agent_id, gate_visit, &gv) < 0 || !gv.t) {
        *refused = "relay could not look up the session's operation context";
        return NULL;
    }
    struct command_table *none = NULL;
    if (!atomic_compare_exchange_strong(&s->commands, &none, gv.t))
        command_table_unref(gv.t); /* it has one already (never the last) */
    return atomic_load(&s->commands);
}

/* The gate is closed: the session is not reconciled (never for seed). */
static bool gated(struct stream *s)
{
    struct command_table *t = s->gw->relay->control ? atomic_load(&s->commands) : NULL;
    return t && !command_table_reconciled(t);
}


/* ------------------------------------------------------------- the acks */

/* Queue one ack behind the stream's other messages, in the stream's
 * generation. It answers a frame read, so its read credit returns once it
 * is sent. */
static void send_ack(struct stream *s, uint64_t seq, enum ack_status status, const char *error,
                     int64_t recv_ns)
{
    metrics_inc(s->gw->m.acks[status]);
    uint8_t buf[ACK_MAX_BYTES];
    size_t n = atomic_load_explicit(&s->gen_kind, memory_order_relaxed) == GEN_MUX
                   ? frame_mux_ack_encode(buf, seq, status, error)
                   : frame_ack_encode(buf, (aero_str){s->agent_id, s->agent_len}, seq, status, error);
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
    /* The deciding sink's own text, or the pipeline's naming that sink. */
    const char *error = worst != AERO_OK ? job->error : NULL;
    send_ack(s, job->view.seq, ack_status_of(worst), error, sj->recv_ns);
    job_json_free(job);
    free(sj);
    stream_unref(s); /* the job's */
}

/* An ack's send completed: gRPC has taken it for the wire. The latency
 * observed here (frame read -> ack send done) is what an agent waits,
 * minus the network. */
void agent_stream_on_sent(void *owner, uint64_t recv_ns, bool ok)
{
    struct stream *s = owner;
    if (ok && recv_ns != 0) /* 0: a command (SPEC.md section 10), not an ack */
        metrics_histogram_observe_ns(s->gw->m.ack_latency, mono_ns() - (int64_t)recv_ns);
}

/* ----------------------------------------------------------- the sinks */

/* Copy the frame's bytes next to its view and re-point every string there;
 * fill in what the stream knows (identity, generation, relay). */
static struct stream_job *job_create(struct stream *s, const aero_frame *view,
                                     const aero_kv *fields, aero_str bytes, const char *wal_id)
{
    size_t fsz = view->n_fields * sizeof(aero_kv);
    bool stamped = s->gw->relay->control &&
                   atomic_load_explicit(&s->gen_kind, memory_order_relaxed) == GEN_MUX;
    size_t ssz = stamped ? sizeof(struct command_context) : 0;
    struct stream_job *sj = malloc(sizeof(*sj) + fsz + ssz + bytes.len);
    if (!sj)
        return NULL;
    sj->stamp = stamped ? (struct command_context *)((char *)sj->fields + fsz) : NULL;
    char *copy = (char *)sj->fields + fsz + ssz;
    memcpy(copy, bytes.ptr, bytes.len);
    ptrdiff_t delta = copy - bytes.ptr;
#define REBASE(str) ((str).ptr = (str).len ? (str).ptr + delta : copy)
    sj->job.view = *view;
    aero_frame *v = &sj->job.view;
    REBASE(v->raw_mavlink);
    REBASE(v->dialect);
    REBASE(v->msg_name);
    REBASE(v->flight_id);
    REBASE(v->intent_id);
    for (size_t i = 0; i < view->n_fields; i++) {
        sj->fields[i] = fields[i];
        REBASE(sj->fields[i].key);
        REBASE(sj->fields[i].value);
    }
#undef REBASE
    v->fields = sj->fields;
    v->protobuf = (aero_str){copy, bytes.len};
    v->agent_id = (aero_str){s->agent_id, s->agent_len};
    v->session_id = (aero_str){s->session_id, SESSION_ID_LEN};
    v->protocol = (aero_protocol)atomic_load_explicit(&s->gen_kind, memory_order_relaxed);
    memcpy(sj->wal_id, wal_id, strlen(wal_id) + 1);
    v->wal_id = (aero_str){sj->wal_id, strlen(wal_id)};
    const char *relay_id = s->gw->relay->settings->relay_id;
    v->relay_id = (aero_str){relay_id, strlen(relay_id)};
    /* Agent mappings (SPEC.md section 10), found when the stream opened. */
    v->operator_id = (aero_str){s->operator_id, strlen(s->operator_id)};
    v->aircraft_id = (aero_str){s->aircraft_id, strlen(s->aircraft_id)};
    sj->stream = s;
    sj->job.complete = job_complete;
    return sj;
}

/* Hand an accepted frame to every sink. A seed stream stops reading while
 * a `block` sink it fed is full (one pause per such sink); a generation-2
 * stream never pauses: it holds frames while a sink is full instead and
 * keeps reading command results (mux_accept). Sinks left to the caller go
 * into `owed`, written now when flush_now. */
static void submit(struct stream *s, struct stream_job *sj, struct sink_owed *owed,
                   bool flush_now)
{
    struct gateway *gw = s->gw;
    struct command_table *ct = sj->stamp ? atomic_load(&s->commands) : NULL;
    if (ct) {
        /* The relay's authoritative context, never the frame's alone. */
        aero_frame *v = &sj->job.view;
        command_table_stamp(ct, v->flight_id.ptr, v->flight_id.len, v->intent_id.ptr,
                            v->intent_id.len, v->intent_version, sj->stamp);
        v->flight_id = (aero_str){sj->stamp->flight_id, strlen(sj->stamp->flight_id)};
        v->intent_id = (aero_str){sj->stamp->intent_id, strlen(sj->stamp->intent_id)};
        v->intent_version = sj->stamp->intent_version;
    }
    stream_ref(s); /* the job's */
    /* A queued waiter holds a reference until woken or cancelled. We only
     * read with no wait outstanding, so every waiter is free here: take one
     * per sink and give back those that were not queued. */
    for (size_t i = 0; i < s->n_waiters; i++)
        stream_ref(s);
    size_t paused =
        sink_pipeline_submit(gw->relay->sinks, &sj->job, s->waiters, s->n_waiters, owed);
    if (flush_now)
        sink_pipeline_flush(gw->relay->sinks, owed);
    for (size_t i = 0; i < s->n_waiters - paused; i++)
        stream_unref(s);
    if (paused)
        rpc_stream_pause(s->rs, (int)paused);
}

/* A sink queue this stream waited on has room again (sink thread). */
void agent_stream_on_wake(struct sink_waiter *w)
{
    struct stream *s = w->owner;
    rpc_stream_resume(s->rs);
    stream_unref(s); /* the waiter's */
}

/* A frame handed to the sinks, by name. */
static void count_accepted(struct gateway *gw, const aero_frame *view)
{
    metrics_inc(gw->m.frames);
    /* Lock-free once the name has been seen (see metrics_vec_get). */
    if (view->msg_name.len > 0)
        metrics_inc(metrics_vec_get(gw->m.messages, view->msg_name.ptr, view->msg_name.len));
    else
        metrics_inc(metrics_vec_get(gw->m.messages, "unknown", 7));
}

/* A decoded frame that passed its generation's rules: to the sinks. */
static void accept(struct stream *s, const aero_frame *view, const aero_kv *fields,
                   aero_str bytes, const char *wal_id, int64_t recv_ns, struct worker_ctx *w)
{
    struct gateway *gw = s->gw;
    struct stream_job *sj = job_create(s, view, fields, bytes, wal_id);
    if (!sj) {
        send_ack(s, view->seq, ACK_TEMPORARY_ERROR, "relay out of memory", recv_ns);
        return;
    }
    sj->recv_ns = recv_ns;
    count_accepted(gw, view);
    /* A frame that came alone is written (and acked) before the next read is
     * asked for: gRPC then sends the ack and the read's flow-control update
     * in one write. */
    submit(s, sj, &w->owed, !worker_ctx_defer(w));
}

/* -------------------------------------------------------- held frames */

/* Under h->mu: the oldest held frame, taken off the list. */
static struct stream_job *held_pop(struct stream_hold *h)
{
    struct stream_job *sj = h->head;
    h->head = sj->held_next;
    if (!h->head)
        h->tail = NULL;
    h->n--;
    return sj;
}

/*
 * Under h->mu: submit held frames, oldest first, while no sink that takes
 * the oldest is full; when one is, wait for its room (the waiter holds a
 * reference).
 * Called by the stream's reader, a sink's writer (room) and the main
 * thread (expiry): no worker context, so what is owed is written at once.
 */
static void release_held_locked(struct stream *s, struct stream_hold *h)
{
    struct sink_pipeline *p = s->gw->relay->sinks;
    while (h->head && !gated(s)) {
        aero_str name = h->head->job.view.msg_name;
        if (sink_pipeline_full(p, name)) {
            if (h->room_waiting)
                return;
            stream_ref(s); /* the waiter's */
            if (sink_pipeline_wait_room(p, name, &h->room_waiter)) {
                h->room_waiting = true;
                return;
            }
            stream_unref(s); /* room came meanwhile; never the last */
            continue;
        }
        struct stream_job *sj = held_pop(h);
        count_accepted(s->gw, &sj->job.view);
        struct sink_owed owed = {0};
        submit(s, sj, &owed, true);
    }
}

/* The stream's held-frame state, made the first time it is needed. Only
 * the stream's reader calls this, so no other maker can race it; the
 * others (sink writers, the expiry tick) find it only once it is set.
 * NULL when out of memory. */
static struct stream_hold *hold_state(struct stream *s)
{
    struct stream_hold *h = atomic_load(&s->hold);
    if (h)
        return h;
    h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    pthread_mutex_init(&h->mu, NULL);
    h->room_waiter.wake = agent_stream_on_room;
    h->room_waiter.owner = s;
    atomic_store(&s->hold, h);
    return h;
}

/* Keep an admitted frame until the gate opens and the full sink has room
 * (in order behind any held before it). */
static void hold(struct stream *s, struct stream_hold *h, struct stream_job *sj)
{
    struct gateway *gw = s->gw;
    sj->held_next = NULL;
    sj->hold_until = mono_ns() + gw->hold_ns;
    pthread_mutex_lock(&h->mu);
    if (h->tail)
        h->tail->held_next = sj;
    else
        h->head = sj;
    h->tail = sj;
    h->n++;
    if (!h->on_list) {
        h->on_list = true;
        stream_ref(s); /* the list's */
        pthread_mutex_lock(&gw->held_mu);
        h->next = gw->held;
        gw->held = s;
        pthread_mutex_unlock(&gw->held_mu);
    }
    release_held_locked(s, h);
    pthread_mutex_unlock(&h->mu);
}

void agent_stream_on_room(struct sink_waiter *w)
{
    struct stream *s = w->owner;
    struct stream_hold *h = atomic_load(&s->hold); /* set: its waiter woke */
    pthread_mutex_lock(&h->mu);
    h->room_waiting = false;
    release_held_locked(s, h);
    pthread_mutex_unlock(&h->mu);
    stream_unref(s); /* the waiter's */
}

/* The session's operation context was reconciled by a result read on
 * this stream: frames held for it go on (stream reader). */
static void release_held(struct stream *s)
{
    struct stream_hold *h = atomic_load(&s->hold);
    if (!h)
        return; /* nothing was ever held */
    pthread_mutex_lock(&h->mu);
    release_held_locked(s, h);
    pthread_mutex_unlock(&h->mu);
}

/* A held or holdable frame refused RETRY_WITH_BACKOFF "relay sink queue is
 * full": counted for the full sinks whose plugins count it (ABI 1.6). */
static void refuse_full(struct stream *s, const aero_frame *view, int64_t recv_ns)
{
    sink_pipeline_count_full_refusal(s->gw->relay->sinks, view->msg_name);
    send_ack(s, view->seq, ACK_RETRY_WITH_BACKOFF, queue_full_text, recv_ns);
}

void agent_stream_expire_held(struct stream *s, int64_t now, bool all)
{
    struct stream_hold *h = atomic_load(&s->hold);
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    while (h->head && (all || h->head->hold_until <= now)) {
        struct stream_job *sj = held_pop(h);
        if (gated(s)) {
            metrics_inc(s->gw->m.unreconciled_refused);
            send_ack(s, sj->job.view.seq, ACK_RETRY_WITH_BACKOFF, unreconciled_text, sj->recv_ns);
        } else {
            metrics_inc(s->gw->m.held_refused);
            refuse_full(s, &sj->job.view, sj->recv_ns);
        }
        free(sj); /* never submitted: nothing else refers to it */
    }
    release_held_locked(s, h);
    pthread_mutex_unlock(&h->mu);
}

void agent_stream_drop_held(struct stream *s)
{
    struct stream_hold *h = atomic_load(&s->hold);
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    while (h->head)
        free(held_pop(h));
    bool cancelled = h->room_waiting &&
                     sink_pipeline_cancel_wait(s->gw->relay->sinks, &h->room_waiter);
    h->room_waiting = false;
    pthread_mutex_unlock(&h->mu);
    if (cancelled)
        stream_unref(s); /* the waiter's: no wake() will come */
}

void agent_stream_free_held(struct stream *s)
{
    struct stream_hold *h = atomic_load(&s->hold);
    if (!h)
        return;
    while (h->head)
        free(held_pop(h)); /* held after the call ended: never submitted */
    pthread_mutex_destroy(&h->mu);
    free(h);
}

/* Steps 8 and 9 for a generation-2 frame (SPEC.md section 9): a session
 * whose operation context is not reconciled, with control on, holds it
 * instead of refusing it, and so does a full sink that takes it (`block`
 * or `reject`: on_full is a seed stream's choice) and any frame held
 * before it, so frames reach the sinks in order. Only this stream's
 * reader adds held frames, so the look below cannot be overtaken. */
static void mux_accept(struct stream *s, const aero_frame *view, aero_str bytes,
                       const char *wal, int64_t recv_ns, struct worker_ctx *w)
{
    struct gateway *gw = s->gw;
    const char *refused;
    gate_table(s, &refused);
    if (refused) {
        send_ack(s, view->seq, ACK_TEMPORARY_ERROR, refused, recv_ns);
        return;
    }
    struct stream_hold *h = atomic_load(&s->hold);
    if (h)
        pthread_mutex_lock(&h->mu);
    bool closed = gated(s);
    bool must_hold =
        closed || (h && h->head) || sink_pipeline_full(gw->relay->sinks, view->msg_name);
    bool room = (h ? h->n : 0) < gw->max_inflight;
    if (h)
        pthread_mutex_unlock(&h->mu);
    if (!must_hold) {
        accept(s, view, w->fields, bytes, wal, recv_ns, w);
        return;
    }
    if (gw->hold_ns == 0 || !room) {
        /* Frames held at once are bounded by max_inflight. */
        if (closed) {
            metrics_inc(gw->m.unreconciled_refused);
            send_ack(s, view->seq, ACK_RETRY_WITH_BACKOFF, unreconciled_text, recv_ns);
        } else {
            refuse_full(s, view, recv_ns);
        }
        return;
    }
    h = hold_state(s);
    struct stream_job *sj = h ? job_create(s, view, w->fields, bytes, wal) : NULL;
    if (!sj) {
        send_ack(s, view->seq, ACK_TEMPORARY_ERROR, "relay out of memory", recv_ns);
        return;
    }
    sj->recv_ns = recv_ns;
    metrics_inc(closed ? gw->m.unreconciled_held : gw->m.held);
    hold(s, h, sj);
}

/* ---------------------------------------------------- admission rules */

/* Generation 1 (SPEC.md section 2): the limits; a stale session_id is fine. */
static void seed_frame(struct stream *s, aero_frame *view, const struct frame_wire_ids *wire,
                       enum frame_decode_result dr, aero_str bytes, int64_t recv_ns,
                       struct worker_ctx *w)
{
    struct gateway *gw = s->gw;
    const char *reason = dr == FRAME_DECODE_TOO_MANY_FIELDS
                             ? "more than 256 fields"
                             : frame_validate(view, wire, (aero_str){s->agent_id, s->agent_len},
                                              &gw->limits);
    /* A rejected frame still shows the agent is alive. */
    session_table_touch_frame(gw->relay->sessions, s->agent_id, s->gen, view->received_unix_ns,
                              reason ? NULL : view);
    if (reason) {
        send_ack(s, view->seq, ACK_PERMANENT_ERROR, reason, recv_ns);
        return;
    }
    /* The envelope's wal_id is canonical or "" for both generations (SPEC
     * section 9): a seed frame that carries one (an agent pinned to seed)
     * is recorded with it, and never refused for one that is not a UUID. */
    char wal[FRAME_WAL_ID_LEN + 1] = "";
    if (wire->wal_id.len > 0 && frame_wal_id_canonical(wire->wal_id, wal) < 0)
        wal[0] = '\0';
    accept(s, view, w->fields, bytes, wal, recv_ns, w);
}

/* Generation 2 (SPEC.md section 9): rules 1-7 in order, each failure a
 * PERMANENT_ERROR with the SPEC's text; the stream goes on. */
static void mux_frame(struct stream *s, aero_frame *view, const struct frame_wire_ids *wire,
                      enum frame_decode_result dr, aero_str bytes, int64_t recv_ns,
                      struct worker_ctx *w)
{
    struct gateway *gw = s->gw;
    char wal[FRAME_WAL_ID_LEN + 1] = "";
    const char *reason = frame_admit_agent(wire, (aero_str){s->agent_id, s->agent_len});
    const char *later =
        reason ? NULL
               : frame_admit_mux(view, wire, dr, (aero_str){s->session_id, SESSION_ID_LEN},
                                 &gw->limits, wal);
    bool current = session_table_touch_frame(gw->relay->sessions, s->agent_id, s->gen,
                                             view->received_unix_ns,
                                             reason || later ? NULL : view);
    if (!reason && !current)
        reason = "telemetry stream session is no longer active";
    if (!reason)
        reason = later;
    if (reason) {
        send_ack(s, view->seq, ACK_PERMANENT_ERROR, reason, recv_ns);
        return;
    }
    if (wal[0] == '\0') {
        /* Agents before July 2026 send none and ignore ack status: keep
         * their frames, count them, say so once per session (SPEC.md
         * section 9); the stream's flag spares the table all but a look
         * per stream. */
        metrics_inc(gw->m.frames_without_wal_id);
        if (!s->warned_no_wal) {
            s->warned_no_wal = true;
            if (session_table_once(gw->relay->sessions, s->agent_id, s->gen,
                                   SESSION_ONCE_NO_WAL_ID))
                log_info("agent %s (session %s) sends frames without wal_id: an agent built "
                         "before field 14; accepted, recorded with an empty wal_id",
                         s->agent_id, s->session_id);
        }
    }
    mux_accept(s, view, bytes, wal, recv_ns, w);
}

/* --------------------------------------------------- the message path */

static void end_malformed(struct stream *s, const char *text)
{
    rpc_stream_credit(s->rs, 1); /* answered by the end of the stream */
    rpc_stream_end(s->rs, RPC_INVALID_ARGUMENT, text);
}

void agent_stream_decided(struct stream *s, enum stream_gen gen)
{
    metrics_inc(s->gw->m.protocol_opened[gen]);
}

static void decide(struct stream *s, enum stream_gen gen)
{
    atomic_store_explicit(&s->gen_kind, gen, memory_order_relaxed);
    agent_stream_decided(s, gen);
}

/* A frame's bytes (a seed message, or a generation-2 envelope's payload)
 * decoded in place: the fields go to the worker's scratch. */
static enum frame_decode_result decode(aero_str bytes, aero_frame *view,
                                       struct frame_wire_ids *wire, struct worker_ctx *w)
{
    *view = (aero_frame){.size = sizeof(aero_frame), .received_unix_ns = agent_gateway_now_ns()};
    return frame_decode((const uint8_t *)bytes.ptr, bytes.len, view, w->fields, FRAME_MAX_FIELDS,
                        wire);
}

/* A seed message: the whole of it is the frame. */
static void seed_message(struct stream *s, const uint8_t *bytes, size_t len, int64_t recv_ns,
                         struct worker_ctx *w)
{
    aero_frame view;
    struct frame_wire_ids wire;
    aero_str whole = {(const char *)bytes, len};
    enum frame_decode_result dr = decode(whole, &view, &wire, w);
    if (dr == FRAME_DECODE_MALFORMED)
        end_malformed(s, "malformed TelemetryFrame");
    else
        seed_frame(s, &view, &wire, dr, whole, recv_ns, w);
}

static const ProtobufCMessageDescriptor *const arm_message[MUX_ARMS] = {
    [MUX_CONTEXT_ACK] = &aeroarc__agent__v1__operation_context_command_ack__descriptor,
    [MUX_AIRCRAFT_RESULT] = &aeroarc__agent__v1__aircraft_command_result__descriptor,
    [MUX_MISSION_RESULT] = &aeroarc__agent__v1__mission_deployment_result__descriptor,
    [MUX_EVIDENCE] = &aeroarc__agent__v1__command_evidence__descriptor,
};

/* A message nobody handles (yet): counted, logged at most once a minute
 * per kind, skipped; the stream goes on. */
static void ignore(struct stream *s, enum mux_arm arm)
{
    struct gateway *gw = s->gw;
    metrics_inc(gw->m.ignored[arm]);
    int64_t now = mono_ns(), last = atomic_load(&gw->ignored_logged_ns[arm]);
    if ((last == 0 || now - last >= 60 * INT64_C(1000000000)) &&
        atomic_compare_exchange_strong(&gw->ignored_logged_ns[arm], &last, now))
        log_info("agent %s sent a stream message nobody handles (%s): skipped "
                 "(aero_relay_stream_messages_ignored_total; logged once a minute per kind)",
                 s->agent_id, frame_mux_arm_name(arm));
    rpc_stream_credit(s->rs, 1);
}

/* Whether a run of records of one arm, joined, decodes as that arm's
 * message (arm 6 and unknown numbers are not read: skipped anyway). */
static bool run_decodes(enum mux_arm arm, aero_str run, struct worker_ctx *w)
{
    if (arm == MUX_FRAME) {
        aero_frame view;
        struct frame_wire_ids wire;
        return decode(run, &view, &wire, w) != FRAME_DECODE_MALFORMED;
    }
    if (!arm_message[arm])
        return true;
    ProtobufCMessage *m = wire_unpack(arm_message[arm], (const uint8_t *)run.ptr, run.len);
    if (!m)
        return false;
    protobuf_c_message_free_unpacked(m, NULL);
    return true;
}

/*
 * An AgentStreamMessage whose oneof came in several records, read as Go
 * reads it: a record of another arm replaces the message, records of the
 * same arm in a row merge (their payloads joined). Every run but the last
 * must decode as its arm (Go decodes each); the last run, joined into
 * *joined (malloc'ed), is the payload. False: a run does not decode, or
 * no memory.
 */
static bool mux_join_runs(const uint8_t *bytes, size_t len, uint8_t **joined,
                          aero_str *payload, struct worker_ctx *w)
{
    uint8_t *run = malloc(len ? len : 1);
    if (!run)
        return false;
    const uint8_t *p = bytes, *end = bytes + len;
    enum mux_arm cur = MUX_EMPTY;
    size_t n = 0;
    struct wire_record r;
    while (p < end && wire_record_next(&p, end, &r)) {
        if (r.field < MUX_FRAME || r.field > MUX_FLIGHT_COMPLETION)
            continue; /* not an arm: the oneof stays as it is */
        if ((enum mux_arm)r.field != cur) {
            if (cur != MUX_EMPTY && !run_decodes(cur, (aero_str){(const char *)run, n}, w)) {
                free(run);
                return false;
            }
            cur = (enum mux_arm)r.field;
            n = 0;
        }
        memcpy(run + n, r.body, (size_t)r.len);
        n += (size_t)r.len;
    }
    *joined = run;
    *payload = (aero_str){(const char *)run, n};
    return true;
}

/* A generation-2 message's arm and payload: a frame, a command result, or
 * one nobody handles. */
static void mux_arm_message(struct stream *s, enum mux_arm arm, aero_str payload,
                            int64_t recv_ns, struct worker_ctx *w)
{
    if (arm == MUX_FRAME) {
        aero_frame view;
        struct frame_wire_ids wire;
        enum frame_decode_result dr = decode(payload, &view, &wire, w);
        if (dr == FRAME_DECODE_MALFORMED)
            end_malformed(s, "malformed TelemetryFrame");
        else
            mux_frame(s, &view, &wire, dr, payload, recv_ns, w);
        return;
    }
    /* Not a frame, but a message: the agent is here (route-registry's
     * demonstrably-here rule reads it through session_last_message). */
    session_table_touch_message(s->gw->relay->sessions, s->agent_id, s->gen,
                                agent_gateway_now_ns());
    if (arm_message[arm]) {
        /* Results of commands this relay sent: each must be what its arm
         * says; one a command written to this stream waits for finishes
         * it (SPEC.md section 10), any other is ignored. Read as Go reads
         * it (wire_prepare.h: a known field of the wrong wire type is an
         * unknown field of its message, an invalid or mismatched result,
         * not a malformed stream); handed on as it came (evidence is
         * forwarded byte for byte, SPEC.md 12.2 rule 16). */
        ProtobufCMessage *m =
            wire_unpack(arm_message[arm], (const uint8_t *)payload.ptr, payload.len);
        if (!m) {
            end_malformed(s, "malformed AgentStreamMessage payload");
            return;
        }
        bool taken = false;
        struct command_table *ct = atomic_load(&s->commands);
        const char *id =
            arm == MUX_CONTEXT_ACK
                ? ((Aeroarc__Agent__V1__OperationContextCommandAck *)m)->command_id
            : arm == MUX_AIRCRAFT_RESULT
                ? ((Aeroarc__Agent__V1__AircraftCommandResult *)m)->command_id
            : arm == MUX_MISSION_RESULT
                ? ((Aeroarc__Agent__V1__MissionDeploymentResult *)m)->command_id
                : ((Aeroarc__Agent__V1__CommandEvidence *)m)->command_id;
        /* command_id is field 1 of all four: an id with a NUL byte would
         * read as its first part and match a command it is not. */
        if (!frame_wire_string_is((const uint8_t *)payload.ptr, payload.len, 1, id))
            ct = NULL;
        if (ct && (arm == MUX_CONTEXT_ACK || arm == MUX_AIRCRAFT_RESULT ||
                   arm == MUX_MISSION_RESULT)) {
            unsigned kinds = arm == MUX_CONTEXT_ACK
                                 ? (1u << COMMAND_SET_CONTEXT) | (1u << COMMAND_CLEAR_CONTEXT)
                             : arm == MUX_AIRCRAFT_RESULT ? 1u << COMMAND_AIRCRAFT
                                                          : 1u << COMMAND_MISSION;
            taken = command_table_result(ct, s->rs, kinds, id, (const uint8_t *)payload.ptr,
                                         payload.len);
        } else if (ct && arm == MUX_EVIDENCE) {
            /* Durable commands (SPEC.md 12.2 rule 14): only an exchange that
             * wrote to this stream takes it. */
            taken = command_table_evidence(ct, s->rs, id, (const uint8_t *)payload.ptr,
                                           payload.len);
        }
        protobuf_c_message_free_unpacked(m, NULL);
        if (taken) {
            rpc_stream_credit(s->rs, 1);
            if (arm == MUX_CONTEXT_ACK)
                release_held(s); /* the gate may have opened */
            return;
        }
    }
    ignore(s, arm);
}

/* A generation-2 message: its arm decides. */
static void mux_message(struct stream *s, const uint8_t *bytes, size_t len, int64_t recv_ns,
                        struct worker_ctx *w)
{
    enum mux_arm arm;
    aero_str payload;
    int rc = frame_mux_decode(bytes, len, &arm, &payload);
    if (rc < 0) {
        end_malformed(s, "malformed AgentStreamMessage");
        return;
    }
    uint8_t *joined = NULL;
    if (rc == 1 && !mux_join_runs(bytes, len, &joined, &payload, w)) {
        end_malformed(s, "malformed AgentStreamMessage payload");
        return;
    }
    mux_arm_message(s, arm, payload, recv_ns, w);
    free(joined); /* what the message path keeps, it copied */
}

/*
 * The first message of a stream whose generation the header did not
 * decide (SPEC.md section 9, rule 2): generation 2 when it is exactly one
 * field 1-7 of wire type 2 spanning the buffer whose payload is well
 * formed (a frame: one with seq > 0 or a msg_name); else a seed frame. A
 * frame payload is decoded once and used as it is.
 */
static void first_message(struct stream *s, const uint8_t *bytes, size_t len, int64_t recv_ns,
                          struct worker_ctx *w)
{
    uint32_t field;
    aero_str payload;
    aero_frame view;
    struct frame_wire_ids wire;
    if (frame_mux_single_field(bytes, len, &field, &payload)) {
        if (field == MUX_FRAME) {
            /* Rule 2: a frame with the right wire type for every known
             * field (Go would read the others as unknown; a seed frame's
             * bytes read as an envelope's are unlikely to avoid both). */
            enum frame_decode_result dr = decode(payload, &view, &wire, w);
            if (dr != FRAME_DECODE_MALFORMED && !wire.wrong_wire &&
                (view.seq > 0 || view.msg_name.len > 0)) {
                decide(s, GEN_MUX);
                mux_frame(s, &view, &wire, dr, payload, recv_ns, w);
                return;
            }
        } else if (frame_mux_well_formed(payload)) {
            decide(s, GEN_MUX);
            mux_message(s, bytes, len, recv_ns, w);
            return;
        }
    }
    decide(s, GEN_SEED);
    seed_message(s, bytes, len, recv_ns, w);
}

/* One received message, by the stream's generation. */
void agent_stream_on_message(void *owner, const uint8_t *bytes, size_t len, struct worker_ctx *w)
{
    struct stream *s = owner;
    int64_t recv_ns = mono_ns();
    metrics_add(s->gw->m.bytes, len);
    switch (atomic_load_explicit(&s->gen_kind, memory_order_relaxed)) {
    case GEN_SEED:
        seed_message(s, bytes, len, recv_ns, w);
        return;
    case GEN_MUX:
        mux_message(s, bytes, len, recv_ns, w);
        return;
    default:
        first_message(s, bytes, len, recv_ns, w);
    }
}
