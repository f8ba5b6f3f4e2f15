/*
 * registry_worker.c - route-registry's own thread: every gRPC call to the
 * registry (gRPC C core as a client, one channel, one completion queue that
 * only this thread polls), every agent record, every timer. Calls are
 * pipelined: a heartbeat round starts one HeartbeatAgent per agent at once
 * (up to RR_MAX_INFLIGHT in flight) and handles the answers as they come,
 * so 10,000 agents cost one interval's worth of concurrent calls, not
 * 10,000 round trips in a row. Nothing here blocks a relay thread: they
 * only queue events (route_registry.c), drained here every tick.
 *
 * The rules (SPEC.md section 11):
 * - RegisterRelay first; agents are registered only while the relay is.
 *   A RegisterRelay that succeeds lets every RegisterAgent still to do
 *   start (each when its backoff allows); agents already registered go on
 *   being heartbeated: if the registry lost them, their next HeartbeatAgent
 *   says NOT_FOUND and the rule below decides (a relay registering again
 *   is no sign an agent moved).
 * - RegisterAgent when the stream opens; retried with backoff until it
 *   succeeds or the session ends. Refused NOT_FOUND / FAILED_PRECONDITION
 *   (the registry does not know the relay): RegisterRelay first, then the
 *   agent again after its backoff (a RegisterRelay success cancels none).
 * - Every interval HeartbeatRelay and HeartbeatAgent per registered agent.
 *   HeartbeatRelay NOT_FOUND: register the relay again. HeartbeatAgent
 *   NOT_FOUND: register the agent again only if its stream here delivered
 *   a message within two intervals, else stop reporting it until it sends
 *   again (it moved to another relay: never take the placement back).
 * - The registry unreachable (UNAVAILABLE, DEADLINE_EXCEEDED): connected
 *   0, /readyz says "registry":"unavailable", the relay registers again
 *   (with backoff) once the registry answers.
 */
#include "route_registry.h"

#include "aeroarc/registry/v1/registry.pb-c.h"
#include "mono_clock.h"
#include "report_state.h"
#include "warn_limit.h"

#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RR_TICK_MS 10            /* longest sleep: events wait at most this */
#define RR_MAX_INFLIGHT 2048     /* calls at once; more wait for a free slot */
#define RR_BACKOFF_MIN_MS 200
#define RR_BACKOFF_MAX_MS 30000

static const char *const method_paths[RR_N_METHODS] = {
    "/aeroarc.registry.v1.AeroRegistry/RegisterRelay",
    "/aeroarc.registry.v1.AeroRegistry/HeartbeatRelay",
    "/aeroarc.registry.v1.AeroRegistry/RegisterAgent",
    "/aeroarc.registry.v1.AeroRegistry/HeartbeatAgent",
};

struct agent {
    struct agent *next;          /* hash chain */
    char id[RR_ID_MAX + 1];
    char session[RR_SESSION_MAX + 1];
    uint64_t epoch;              /* bumped when the session changes: late answers are ignored */
    bool stream_open;            /* a stream opened on this session: report it */
    bool registered;             /* the registry accepted RegisterAgent for this session */
    bool want_register;
    bool hb_due;                 /* a heartbeat of this round still to start */
    bool suspended;              /* NOT_FOUND while not demonstrably here */
    bool gone;                   /* session ended, unlinked: freed with its last call */
    int64_t suspended_at_ns;     /* wall clock: resumes once it sends after this */
    int64_t next_try_ms;         /* RegisterAgent backoff (monotonic) */
    int backoff_ms;
    int inflight;                /* 0 or 1: one call per agent at a time */
};

struct call {
    struct call *prev, *next;    /* the worker's list of calls in flight */
    enum rr_method method;
    struct agent *agent;         /* NULL for relay calls */
    uint64_t epoch;
    grpc_call *call;
    grpc_metadata_array initial, trailing;
    grpc_byte_buffer *send, *recv;
    grpc_status_code status;
    grpc_slice details;
};

struct worker {
    struct route_registry *rr;
    grpc_completion_queue *cq;
    grpc_channel *channel;
    void *method[RR_N_METHODS];  /* grpc_channel_register_call handles */
    struct call *calls;          /* in flight */
    long inflight;

    struct agent **buckets;
    size_t n_buckets, n_agents, n_reported;

    bool relay_registered, relay_busy;
    int64_t relay_next_try_ms;
    int relay_backoff_ms;
    int64_t next_round_ms;       /* the next heartbeat round; 0: none scheduled */
    int64_t scan_at_ms;          /* agents have work due at or after this */
    int connected;               /* -1 unknown, 0, 1 */
    unsigned seed;
    struct warn_limit warn;
};

static int64_t now_ms(void) { return mono_ns() / 1000000; }
static int64_t wall_ms(void) { return clock_ns(CLOCK_REALTIME) / 1000000; }

/* Doubling backoff with +-20% jitter, so a relay's agents spread out. */
static int next_backoff(struct worker *w, int *backoff_ms, int cap_ms)
{
    int b = *backoff_ms ? *backoff_ms * 2 : RR_BACKOFF_MIN_MS;
    if (b > cap_ms)
        b = cap_ms;
    *backoff_ms = b;
    return b - b / 5 + (int)(rand_r(&w->seed) % (unsigned)(2 * (b / 5) + 1));
}

static int backoff_cap(const struct worker *w)
{
    int64_t cap = w->rr->interval_ms < RR_BACKOFF_MAX_MS ? w->rr->interval_ms : RR_BACKOFF_MAX_MS;
    return cap < 1000 ? 1000 : (int)cap;
}

/* ---------------------------------------------------------------- agents */

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static struct agent **slot_of(struct worker *w, const char *id)
{
    struct agent **p = &w->buckets[hash_id(id) & (w->n_buckets - 1)];
    while (*p && strcmp((*p)->id, id) != 0)
        p = &(*p)->next;
    return p;
}

static void grow(struct worker *w)
{
    size_t nb = w->n_buckets * 2;
    struct agent **b = calloc(nb, sizeof(*b));
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < w->n_buckets; i++)
        for (struct agent *a = w->buckets[i], *next; a; a = next) {
            next = a->next;
            size_t j = hash_id(a->id) & (nb - 1);
            a->next = b[j];
            b[j] = a;
        }
    free(w->buckets);
    w->buckets = b;
    w->n_buckets = nb;
}

static struct agent *agent_get(struct worker *w, const char *id, bool create)
{
    struct agent **p = slot_of(w, id);
    if (*p || !create)
        return *p;
    struct agent *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    snprintf(a->id, sizeof(a->id), "%s", id);
    *p = a;
    if (++w->n_agents > w->n_buckets * 2)
        grow(w);
    return a;
}

static void set_reported(struct worker *w, struct agent *a, bool on)
{
    if (a->stream_open == on)
        return;
    a->stream_open = on;
    w->n_reported += on ? 1 : (size_t)-1;
    w->rr->host->metric_set(w->rr->m.agents, (int64_t)w->n_reported);
}

/* A new session (or none) for the agent: forget what the old one did. */
static void agent_reset(struct worker *w, struct agent *a, const char *session)
{
    set_reported(w, a, false);
    snprintf(a->session, sizeof(a->session), "%s", session);
    a->epoch++;
    a->registered = a->want_register = a->hb_due = a->suspended = false;
    a->backoff_ms = 0;
}

static void want_register(struct worker *w, struct agent *a, int64_t at_ms)
{
    a->want_register = true;
    a->registered = false;
    a->next_try_ms = at_ms;
    if (at_ms < w->scan_at_ms)
        w->scan_at_ms = at_ms;
}

static void agent_remove(struct worker *w, struct agent *a)
{
    struct agent **p = slot_of(w, a->id);
    if (*p == a)
        *p = a->next;
    w->n_agents--;
    set_reported(w, a, false);
    a->gone = true;
    if (a->inflight == 0)
        free(a);
}

static void on_event(struct worker *w, const struct rr_event *e)
{
    struct agent *a = agent_get(w, e->drone_id, e->kind != RR_EV_DOWN);
    if (!a) {
        if (e->kind != RR_EV_DOWN)
            w->rr->host->log(w->rr->host, AERO_LOG_ERROR,
                             "out of memory: agent %s not reported", e->drone_id);
        return;
    }
    bool same = strcmp(a->session, e->session_id) == 0;
    switch (e->kind) {
    case RR_EV_UP:
        if (!same)
            agent_reset(w, a, e->session_id); /* no stream yet: nothing to report */
        break;
    case RR_EV_OPENED:
        if (!same)
            agent_reset(w, a, e->session_id);
        set_reported(w, a, true);
        a->suspended = false;
        a->backoff_ms = 0;
        want_register(w, a, now_ms()); /* SPEC: as soon as its stream opens */
        break;
    case RR_EV_DOWN:
        if (same)
            agent_remove(w, a); /* no more heartbeats; the registry's TTL does the rest */
        break;
    }
}

static void drain_events(struct worker *w, bool *stopping)
{
    struct route_registry *rr = w->rr;
    pthread_mutex_lock(&rr->mu);
    struct rr_event *ev = rr->events;
    size_t n = rr->n_events;
    rr->events = NULL;
    rr->n_events = rr->cap_events = 0;
    *stopping = rr->stopping;
    pthread_mutex_unlock(&rr->mu);
    for (size_t i = 0; i < n; i++)
        on_event(w, &ev[i]);
    free(ev);
}

/* ----------------------------------------------------------------- calls */

/* protobuf-c message -> byte buffer (NULL: out of memory). */
static grpc_byte_buffer *pack(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static grpc_byte_buffer *request_of(struct worker *w, enum rr_method m, const struct agent *a,
                                    int port)
{
    struct route_registry *rr = w->rr;
    switch (m) {
    case RR_REGISTER_RELAY: {
        Aeroarc__Registry__V1__Relay relay = AEROARC__REGISTRY__V1__RELAY__INIT;
        Aeroarc__Registry__V1__RegisterRelayRequest req =
            AEROARC__REGISTRY__V1__REGISTER_RELAY_REQUEST__INIT;
        relay.relay_id = rr->relay_id;
        relay.address = rr->advertise_host;
        relay.grpc_port = port;
        relay.last_heartbeat_unix_ms = wall_ms();
        req.relay = &relay;
        return pack(&req.base);
    }
    case RR_HEARTBEAT_RELAY: {
        Aeroarc__Registry__V1__HeartbeatRelayRequest req =
            AEROARC__REGISTRY__V1__HEARTBEAT_RELAY_REQUEST__INIT;
        req.relay_id = rr->relay_id;
        req.timestamp_unix_ms = wall_ms();
        return pack(&req.base);
    }
    case RR_REGISTER_AGENT: {
        Aeroarc__Registry__V1__Agent agent = AEROARC__REGISTRY__V1__AGENT__INIT;
        Aeroarc__Registry__V1__RegisterAgentRequest req =
            AEROARC__REGISTRY__V1__REGISTER_AGENT_REQUEST__INIT;
        agent.agent_id = (char *)a->id;
        agent.last_heartbeat_unix_ms = wall_ms();
        req.agent = &agent;
        req.relay_id = rr->relay_id;
        return pack(&req.base);
    }
    default: {
        Aeroarc__Registry__V1__HeartbeatAgentRequest req =
            AEROARC__REGISTRY__V1__HEARTBEAT_AGENT_REQUEST__INIT;
        req.agent_id = (char *)a->id;
        req.timestamp_unix_ms = wall_ms();
        req.relay_id = rr->relay_id;
        return pack(&req.base);
    }
    }
}

static void call_free(struct worker *w, struct call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (w->calls == c)
        w->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    grpc_metadata_array_destroy(&c->initial);
    grpc_metadata_array_destroy(&c->trailing);
    if (c->send)
        grpc_byte_buffer_destroy(c->send);
    if (c->recv)
        grpc_byte_buffer_destroy(c->recv);
    grpc_slice_unref(c->details);
    if (c->call)
        grpc_call_unref(c->call);
    free(c);
    w->inflight--;
}

static void count_outcome(struct worker *w, enum rr_method m, enum rr_outcome o)
{
    w->rr->host->metric_add(w->rr->m.rpc[m][o], 1);
}

/* Start one unary call; false when it could not start (counted as an
 * error: the caller's state stays as if it failed). */
static bool start_call(struct worker *w, enum rr_method m, struct agent *a, int port)
{
    struct call *c = calloc(1, sizeof(*c));
    if (!c)
        return false;
    c->method = m;
    c->agent = a;
    c->epoch = a ? a->epoch : 0;
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->initial);
    grpc_metadata_array_init(&c->trailing);
    c->next = w->calls;
    if (w->calls)
        w->calls->prev = c;
    w->calls = c;
    w->inflight++;
    c->send = request_of(w, m, a, port);
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(w->rr->timeout_ms, GPR_TIMESPAN));
    c->call = c->send ? grpc_channel_create_registered_call(w->channel, NULL,
                                                            GRPC_PROPAGATE_DEFAULTS, w->cq,
                                                            w->method[m], deadline, NULL)
                      : NULL;
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    grpc_op *op = ops;
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op++;
    op->op = GRPC_OP_SEND_MESSAGE;
    op->data.send_message.send_message = c->send;
    op++;
    op->op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    op++;
    op->op = GRPC_OP_RECV_INITIAL_METADATA;
    op->data.recv_initial_metadata.recv_initial_metadata = &c->initial;
    op++;
    op->op = GRPC_OP_RECV_MESSAGE;
    op->data.recv_message.recv_message = &c->recv;
    op++;
    op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op->data.recv_status_on_client.trailing_metadata = &c->trailing;
    op->data.recv_status_on_client.status = &c->status;
    op->data.recv_status_on_client.status_details = &c->details;
    op++;
    if (!c->call || grpc_call_start_batch(c->call, ops, (size_t)(op - ops), c, NULL) !=
                        GRPC_CALL_OK) {
        call_free(w, c);
        count_outcome(w, m, RR_ERROR);
        return false;
    }
    if (a)
        a->inflight++;
    w->rr->host->metric_set(w->rr->m.inflight, w->inflight);
    return true;
}

/* ----------------------------------------------------------- connection */

static void set_connected(struct worker *w, int on)
{
    if (w->connected == on)
        return;
    const aero_host *h = w->rr->host;
    w->connected = on;
    h->metric_set(w->rr->m.connected, on);
    h->ready_detail(h, "registry", on ? NULL : "unavailable");
    if (on)
        report_state(h, AERO_STATE_OK, "connected to the registry at %s", w->rr->address);
    else
        report_state(h, AERO_STATE_FAILING, "not connected to the registry at %s (retrying)",
                     w->rr->address);
    if (on)
        h->log(h, AERO_LOG_INFO, "registry at %s answers", w->rr->address);
}

/* UNAVAILABLE and DEADLINE_EXCEEDED: no answer from the registry. Any
 * other status is an answer (it is there). */
static bool unreachable(grpc_status_code s)
{
    return s == GRPC_STATUS_UNAVAILABLE || s == GRPC_STATUS_DEADLINE_EXCEEDED;
}

/* The relay must be registered (again): agents wait for it. */
static void relay_lost(struct worker *w, int64_t retry_at_ms)
{
    w->relay_registered = false;
    if (retry_at_ms > w->relay_next_try_ms)
        w->relay_next_try_ms = retry_at_ms;
}

/* SPEC's rule for HeartbeatAgent NOT_FOUND: the agent's stream here
 * delivered a message within the last two intervals. */
static bool demonstrably_here(struct worker *w, const struct agent *a)
{
    const aero_host *h = w->rr->host;
    int64_t last = h->session_last_message_unix_ns(h, a->id, a->session);
    return last > 0 && clock_ns(CLOCK_REALTIME) - last <= 2 * w->rr->interval_ms * 1000000;
}

static void suspend(struct worker *w, struct agent *a)
{
    a->suspended = true;
    a->registered = a->want_register = false;
    a->suspended_at_ns = clock_ns(CLOCK_REALTIME);
    w->rr->host->log(w->rr->host, AERO_LOG_INFO,
                     "agent %s: the registry no longer places it here and its stream has been "
                     "quiet for two intervals: not reported until it sends again",
                     a->id);
}

static void on_relay_answer(struct worker *w, const struct call *c, int64_t now)
{
    const aero_host *h = w->rr->host;
    char details[256];
    size_t dl = GRPC_SLICE_LENGTH(c->details) < sizeof(details) - 1
                    ? GRPC_SLICE_LENGTH(c->details)
                    : sizeof(details) - 1;
    memcpy(details, GRPC_SLICE_START_PTR(c->details), dl);
    details[dl] = '\0';

    if (c->method == RR_REGISTER_RELAY) {
        w->relay_busy = false;
        if (c->status == GRPC_STATUS_OK) {
            w->relay_registered = true;
            w->relay_backoff_ms = 0;
            w->next_round_ms = now + w->rr->interval_ms;
            h->log(h, AERO_LOG_INFO, "relay %s registered with the registry", w->rr->relay_id);
            /* The RegisterAgent calls that waited for it, each when its own
             * backoff allows: the registry taking the relay says nothing
             * about whether it takes the agent. Registered agents are left
             * alone: only the registry's NOT_FOUND for one says it may have
             * lost or moved it (SPEC section 11); a relay that registered
             * again after a failed call says neither. */
            w->scan_at_ms = now;
        } else {
            int wait = next_backoff(w, &w->relay_backoff_ms, backoff_cap(w));
            relay_lost(w, now + wait);
            warn_limit_log(&w->warn, h, "registry",
                           "RegisterRelay at %s failed (%d: %s): retrying in %d ms",
                           w->rr->address, (int)c->status, details, wait);
        }
        return;
    }
    /* HeartbeatRelay */
    if (c->status == GRPC_STATUS_NOT_FOUND) {
        h->log(h, AERO_LOG_INFO, "the registry lost relay %s (NOT_FOUND): registering again",
               w->rr->relay_id);
        relay_lost(w, now);
    } else if (unreachable(c->status)) {
        relay_lost(w, now + next_backoff(w, &w->relay_backoff_ms, backoff_cap(w)));
        warn_limit_log(&w->warn, h, "registry",
                       "HeartbeatRelay at %s failed (%d: %s): registering again once it answers",
                       w->rr->address, (int)c->status, details);
    }
}

static void on_agent_answer(struct worker *w, struct agent *a, const struct call *c,
                            int64_t now)
{
    if (c->method == RR_REGISTER_AGENT) {
        if (c->status == GRPC_STATUS_OK) {
            a->registered = true;
            a->want_register = false;
            a->backoff_ms = 0;
            return;
        }
        /* NOT_FOUND / FAILED_PRECONDITION: the registry does not know this
         * relay, so RegisterRelay first, then the agent again. Every failure
         * keeps the agent's backoff, that one too: RegisterRelay succeeds
         * at once, and a registry that keeps refusing the agent would
         * otherwise be asked at round-trip speed. */
        bool relay_unknown = c->status == GRPC_STATUS_NOT_FOUND ||
                             c->status == GRPC_STATUS_FAILED_PRECONDITION;
        want_register(w, a, now + next_backoff(w, &a->backoff_ms, backoff_cap(w)));
        if (relay_unknown && w->relay_registered)
            relay_lost(w, now);
        else if (unreachable(c->status) && w->relay_registered)
            relay_lost(w, now + next_backoff(w, &w->relay_backoff_ms, backoff_cap(w)));
        return;
    }
    /* HeartbeatAgent */
    if (c->status == GRPC_STATUS_NOT_FOUND) {
        if (demonstrably_here(w, a)) {
            a->backoff_ms = 0;
            want_register(w, a, now); /* the registry lost it: it is here */
        } else {
            suspend(w, a); /* it may have moved: never take it back */
        }
    } else if (unreachable(c->status) && w->relay_registered) {
        relay_lost(w, now + next_backoff(w, &w->relay_backoff_ms, backoff_cap(w)));
    }
}

static void on_complete(struct worker *w, struct call *c)
{
    int64_t now = now_ms();
    enum rr_outcome o = c->status == GRPC_STATUS_OK          ? RR_OK
                        : c->status == GRPC_STATUS_NOT_FOUND ? RR_NOT_FOUND
                                                             : RR_ERROR;
    count_outcome(w, c->method, o);
    if (!w->rr->stopping_seen)
        set_connected(w, !unreachable(c->status));
    struct agent *a = c->agent;
    if (!a)
        on_relay_answer(w, c, now);
    else {
        a->inflight--;
        if (a->gone) {
            if (a->inflight == 0)
                free(a);
        } else if (a->epoch == c->epoch) {
            on_agent_answer(w, a, c, now);
        }
        if (w->scan_at_ms > now)
            w->scan_at_ms = now; /* a slot is free; work may wait for it */
    }
    call_free(w, c);
    w->rr->host->metric_set(w->rr->m.inflight, w->inflight);
}

/* ----------------------------------------------------------------- timing */

/* The relay's own calls: RegisterRelay when due, HeartbeatRelay each round. */
static void relay_step(struct worker *w, int64_t now)
{
    if (w->relay_registered || w->relay_busy || now < w->relay_next_try_ms)
        return;
    const aero_host *h = w->rr->host;
    int port = w->rr->advertise_port ? w->rr->advertise_port : h->listen_port(h);
    if (port <= 0) {
        w->relay_next_try_ms = now + RR_TICK_MS; /* the relay is not bound yet */
        return;
    }
    if (start_call(w, RR_REGISTER_RELAY, NULL, port))
        w->relay_busy = true;
    else
        w->relay_next_try_ms = now + next_backoff(w, &w->relay_backoff_ms, backoff_cap(w));
}

/* A heartbeat round: the relay's, then every agent's (started by scan). */
static void round_step(struct worker *w, int64_t now)
{
    if (!w->relay_registered || !w->next_round_ms || now < w->next_round_ms)
        return;
    w->next_round_ms += w->rr->interval_ms;
    if (w->next_round_ms <= now)
        w->next_round_ms = now + w->rr->interval_ms; /* fell behind: no burst of rounds */
    if (!w->relay_busy)
        start_call(w, RR_HEARTBEAT_RELAY, NULL, 0);
    const aero_host *h = w->rr->host;
    for (size_t i = 0; i < w->n_buckets; i++)
        for (struct agent *a = w->buckets[i]; a; a = a->next) {
            if (a->registered)
                a->hb_due = true;
            else if (a->suspended && a->stream_open &&
                     h->session_last_message_unix_ns(h, a->id, a->session) > a->suspended_at_ns) {
                a->suspended = false; /* it sent again: it is here */
                a->backoff_ms = 0;
                want_register(w, a, now);
            }
        }
    w->scan_at_ms = now;
}

/* Start what is due among the agents, as many as slots allow. */
static void scan_step(struct worker *w, int64_t now)
{
    if (now < w->scan_at_ms)
        return;
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < w->n_buckets; i++)
        for (struct agent *a = w->buckets[i]; a; a = a->next) {
            if (a->inflight)
                continue;
            if (a->want_register && a->stream_open && w->relay_registered) {
                if (a->next_try_ms > now) {
                    next = a->next_try_ms < next ? a->next_try_ms : next;
                    continue;
                }
                if (w->inflight >= RR_MAX_INFLIGHT) {
                    next = now + RR_TICK_MS;
                    continue;
                }
                a->hb_due = false;
                if (!start_call(w, RR_REGISTER_AGENT, a, 0)) {
                    want_register(w, a, now + next_backoff(w, &a->backoff_ms, backoff_cap(w)));
                    next = a->next_try_ms < next ? a->next_try_ms : next;
                }
            } else if (a->hb_due && a->registered) {
                if (w->inflight >= RR_MAX_INFLIGHT) {
                    next = now + RR_TICK_MS;
                    continue;
                }
                a->hb_due = false;
                start_call(w, RR_HEARTBEAT_AGENT, a, 0);
            }
        }
    /* want_register may have lowered scan_at_ms during the walk */
    w->scan_at_ms = next < w->scan_at_ms || w->scan_at_ms <= now ? next : w->scan_at_ms;
}

/* --------------------------------------------------------------- thread */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    bool stopping = false;
    while (!stopping) {
        drain_events(w, &stopping);
        int64_t now = now_ms();
        relay_step(w, now);
        round_step(w, now);
        scan_step(w, now);
        /* Sleep until a call completes or the tick ends, then take every
         * completion already there before the next step. */
        gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                          gpr_time_from_millis(RR_TICK_MS, GPR_TIMESPAN));
        for (;;) {
            grpc_event ev = grpc_completion_queue_next(w->cq, until, NULL);
            if (ev.type != GRPC_OP_COMPLETE)
                break;
            on_complete(w, ev.tag);
            until = gpr_inf_past(GPR_CLOCK_MONOTONIC);
        }
    }
    /* Stop: no more heartbeats (the registry's TTLs remove us); cancel what
     * is in flight and collect it (cancelled calls complete at once). */
    w->rr->stopping_seen = true;
    for (struct call *c = w->calls; c; c = c->next)
        grpc_call_cancel(c->call, NULL);
    while (w->inflight > 0) {
        grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                                   NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            break;
        on_complete(w, ev.tag);
    }
    return NULL;
}

static grpc_channel *channel_create(struct route_registry *rr)
{
    grpc_arg args[4];
    grpc_channel_args ca = {0, args};
    grpc_channel_credentials *creds =
        rr->ca_pem ? grpc_ssl_credentials_create(rr->ca_pem, NULL, NULL, NULL)
                   : grpc_insecure_credentials_create();
    if (!creds)
        return NULL;
    /* A registry that comes back is found within a second or two, not after
     * gRPC's default reconnect backoff of up to two minutes. */
    args[ca.num_args].type = GRPC_ARG_INTEGER;
    args[ca.num_args].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    args[ca.num_args++].value.integer = 100;
    args[ca.num_args].type = GRPC_ARG_INTEGER;
    args[ca.num_args].key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
    args[ca.num_args++].value.integer = 100;
    args[ca.num_args].type = GRPC_ARG_INTEGER;
    args[ca.num_args].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[ca.num_args++].value.integer = 1000;
    if (rr->server_name[0]) {
        args[ca.num_args].type = GRPC_ARG_STRING;
        args[ca.num_args].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[ca.num_args++].value.string = rr->server_name;
    }
    grpc_channel *ch = grpc_channel_create(rr->address, creds, &ca);
    grpc_channel_credentials_release(creds);
    return ch;
}

static void worker_free(struct worker *w)
{
    if (w->channel)
        grpc_channel_destroy(w->channel);
    if (w->cq) {
        grpc_completion_queue_shutdown(w->cq);
        while (grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
                   .type != GRPC_QUEUE_SHUTDOWN) {
        }
        grpc_completion_queue_destroy(w->cq);
    }
    for (size_t i = 0; w->buckets && i < w->n_buckets; i++)
        for (struct agent *a = w->buckets[i], *next; a; a = next) {
            next = a->next;
            free(a);
        }
    free(w->buckets);
    free(w);
    grpc_shutdown();
}

int registry_worker_start(struct route_registry *rr)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    grpc_init();
    w->rr = rr;
    w->connected = -1;
    w->warn = WARN_LIMIT_INIT;
    w->seed = (unsigned)mono_ns();
    w->scan_at_ms = INT64_MAX;
    w->n_buckets = 64;
    w->buckets = calloc(w->n_buckets, sizeof(*w->buckets));
    w->cq = grpc_completion_queue_create_for_next(NULL);
    w->channel = channel_create(rr);
    int rc = w->buckets && w->cq && w->channel ? 0 : -ENOMEM;
    for (int m = 0; rc == 0 && m < RR_N_METHODS; m++)
        if (!(w->method[m] = grpc_channel_register_call(w->channel, method_paths[m], NULL, NULL)))
            rc = -ENOMEM;
    if (rc == 0)
        rc = -pthread_create(&rr->thread, NULL, worker_main, w);
    if (rc < 0) {
        worker_free(w);
        return rc;
    }
    rr->worker = w;
    rr->thread_started = true;
    return 0;
}

void registry_worker_stop(struct route_registry *rr)
{
    pthread_mutex_lock(&rr->mu);
    rr->stopping = true;
    pthread_mutex_unlock(&rr->mu);
    pthread_join(rr->thread, NULL);
    rr->thread_started = false;
    worker_free(rr->worker);
    rr->worker = NULL;
}
