/*
 * command_durable.c - ExchangeCommand (unary) and ExecuteCommand (server
 * streaming), SPEC.md section 12.2, rules 1-19 in order. Both run the same
 * steps on one `struct durable`; they differ in how the caller is answered
 * (a finished unary call, or the stream layer's outgoing queue) and in
 * rule 17 (the first snapshot, or every snapshot until a complete one).
 * The session's command table (command_table.c) keeps the slot, the id
 * namespace and the waiter; this file keeps the caller.
 *
 * Endings race (evidence, the table's deadline, a lost stream, the
 * caller's cancel): the exchange's mutex decides which one is first, and
 * only that one answers. Any worker thread, and the main thread's hub tick.
 */
#include "command_durable.h"

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
#include "rpc_unary.h"
#include "session_table.h"
#include "wire_prepare.h"
#include "wire_record.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef Aeroarc__Agent__V1__DurableCommand DurableCommand;
typedef Aeroarc__Agent__V1__CommandEvidence CommandEvidence;

#define DURABLE_BOUND_NS (35 * INT64_C(1000000000)) /* rule 9 */

static const char invalid_identity[] = "invalid command identity";
/* Rule 11 (SPEC.md 12.7 reading 1): the session asked about is gone. */
static const char no_session[] = "agent session is no longer active";

struct durable {
    struct command_exchange x; /* first: the table hands it back */
    pthread_mutex_t mu;
    struct relay *relay;
    struct command_table *t;   /* the session's, once known (a reference) */
    bool unary;                /* ExchangeCommand: answered on `call` */
    struct rpc_call *call;     /* the call (ExecuteCommand: for its deadline only) */
    /* ExecuteCommand's stream (a reference until the call is over; taken
     * and used with a reference of one's own under mu). */
    struct rpc_stream *out;
    bool answered;             /* the call's ending is decided (under mu) */
    bool in_table;             /* command_table_exchange_start succeeded */
    bool requested;            /* ExecuteCommand: its one request arrived */
    /* ExecuteCommand's one-snapshot mailbox (rule 14): a response is
     * being written; a newer snapshot waits here, replacing an older one. */
    bool sending;
    uint8_t *mailbox;
    size_t mailbox_len;
    bool mailbox_complete;
    bool complete_sent;        /* the complete snapshot was queued: end OK after it */
    /* What the events and the log line need, copied from the request. */
    char *agent_id, *command_id, *attempt_id, *definition;
    char session_id[SESSION_ID_LEN + 1];
    char digest[COMMAND_DIGEST_HEX_LEN + 1];
    int64_t received_ms, dispatched_ms;
    uint8_t *msg;              /* RelayStreamMessage{6: the command as received} */
    size_t msg_len;
};

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ lifetime */

static void durable_free(struct command_exchange *x)
{
    struct durable *d = (struct durable *)x;
    if (d->t)
        command_table_unref(d->t);
    if (d->out) /* never started */
        rpc_stream_unref(d->out);
    pthread_mutex_destroy(&d->mu);
    free(d->mailbox);
    free(d->agent_id);
    free(d->command_id);
    free(d->attempt_id);
    free(d->definition);
    free(d->msg);
    free(d);
}

static void on_granted(struct command_exchange *x);
static void on_evidence(struct command_exchange *x, const uint8_t *p, size_t len, bool first);
static void on_ended(struct command_exchange *x, enum rpc_code code, const char *text);

static const struct command_exchange_ops exchange_ops = {
    .granted = on_granted, .evidence = on_evidence, .ended = on_ended, .free = durable_free};

static struct durable *durable_new(struct relay *relay)
{
    struct durable *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    pthread_mutex_init(&d->mu, NULL);
    d->relay = relay;
    d->x.ops = &exchange_ops;
    d->x.kind = COMMAND_DURABLE;
    d->x.start_ns = mono_ns();
    atomic_init(&d->x.refs, 1);
    return d;
}

/* ------------------------------------------------------------- answers */

/* Under d->mu: true (and the answer is this caller's) when nobody
 * answered yet. */
static bool claim(struct durable *d)
{
    if (d->answered)
        return false;
    d->answered = true;
    return true;
}

/* The one info line per exchange (SPEC.md 12.5), refusals included, in
 * the key=value shape of the mission lines (14.5); never the command. The
 * ids are the request's, empty when it did not carry them. */
static void log_exchange(struct durable *d, const char *result)
{
    log_info("durable_command_exchange command_id=%s attempt_id=%s agent_id=%s session_id=%s "
             "definition=%s result=%s duration=%.3fs",
             d->command_id ? d->command_id : "", d->attempt_id ? d->attempt_id : "",
             d->agent_id ? d->agent_id : "", d->session_id, d->definition ? d->definition : "",
             result, (double)(mono_ns() - d->x.start_ns) / 1e9);
}

/* ExecuteCommand's stream with a reference of the caller's, or NULL once
 * the call is over. */
static struct rpc_stream *out_ref(struct durable *d)
{
    pthread_mutex_lock(&d->mu);
    struct rpc_stream *out = d->out;
    if (out)
        rpc_stream_ref(out);
    pthread_mutex_unlock(&d->mu);
    return out;
}

/* End ExecuteCommand's stream with this status once its queue is out. */
static void end_stream(struct durable *d, enum rpc_code code, const char *text)
{
    struct rpc_stream *out = out_ref(d);
    if (!out)
        return;
    if (code == RPC_DEADLINE_EXCEEDED) {
        /* Rule 17: the 35 s end holds even while a response write is blocked. */
        rpc_stream_cancel(out, code, text);
    } else {
        rpc_stream_end(out, code, text);
        rpc_stream_credit(out, 1); /* the request is answered: the status may go */
    }
    rpc_stream_unref(out);
}

/* Answer with an error status (the caller was claimed). */
static void answer_error(struct durable *d, enum rpc_code code, const char *text)
{
    const char *name = rpc_call_code_name(code);
    command_hub_count(d->relay->commands, COMMAND_DURABLE, name, d->x.start_ns);
    log_exchange(d, name);
    if (d->unary)
        rpc_call_finish(d->call, code, text, NULL, 0);
    else
        end_stream(d, code, text);
}

/* A refusal before the exchange is in the table. */
static void refuse(struct durable *d, enum rpc_code code, const char *text)
{
    pthread_mutex_lock(&d->mu);
    bool mine = claim(d);
    pthread_mutex_unlock(&d->mu);
    if (mine)
        answer_error(d, code, text);
}

/* ----------------------------------------------------- evidence (16-17) */

/* One relay event as a CommandEvidence field-3 record into out (+*n). */
static int put_event(uint8_t **out, size_t *n, size_t *cap, const char *attempt_id,
                     const char *stage, int64_t at_ms, const char *message, const char *source)
{
    /* Sized to the attempt_id: the API's ids have no length limit, and a
     * cut event id would be refused by it (12.7 reading 9). */
    size_t id_len = strlen(attempt_id) + 1 + strlen(stage) + 1;
    char *id = malloc(id_len);
    if (!id)
        return -1;
    snprintf(id, id_len, "%s/%s", attempt_id, stage);
    Aeroarc__Agent__V1__CommandEvent ev = AEROARC__AGENT__V1__COMMAND_EVENT__INIT;
    ev.event_id = id;
    ev.stage = (char *)stage;
    ev.occurred_at_unix_ms = at_ms;
    ev.message = (char *)message;
    ev.evidence_source = (char *)source;
    size_t len = protobuf_c_message_get_packed_size(&ev.base);
    if (*n + len + FRAME_WIRE_HDR_MAX > *cap) {
        size_t want = (*n + len + FRAME_WIRE_HDR_MAX) * 2;
        uint8_t *p = realloc(*out, want);
        if (!p) {
            free(id);
            return -1;
        }
        *out = p;
        *cap = want;
    }
    *n += frame_wire_len_header(3, len, *out + *n); /* CommandEvidence.events */
    protobuf_c_message_pack(&ev.base, *out + *n);
    *n += len;
    free(id);
    return 0;
}

/*
 * The response: field 1 = the agent's evidence bytes as they came (unknown
 * fields kept) followed by the two relay events (rule 16): appending
 * field-3 records to a message is valid protobuf. malloc'ed; NULL: no
 * memory.
 */
static uint8_t *response(struct durable *d, const uint8_t *p, size_t len, size_t *out_len)
{
    char source[256];
    snprintf(source, sizeof(source), "relay:%s", d->relay->settings->relay_id);
    size_t cap = 1024, n = 0;
    uint8_t *ev = malloc(cap);
    if (!ev ||
        put_event(&ev, &n, &cap, d->attempt_id, "relay_received", d->received_ms,
                  "Relay admitted delivery attempt", source) < 0 ||
        put_event(&ev, &n, &cap, d->attempt_id, "dispatched", d->dispatched_ms,
                  "command handed to bound Agent stream", source) < 0) {
        free(ev);
        return NULL;
    }
    uint8_t *r = frame_wire_wrap(1, p, len, ev, n, out_len); /* the response's evidence */
    free(ev);
    return r;
}

/* Rule 17: the snapshot ends an ExecuteCommand. */
static bool complete(const CommandEvidence *e)
{
    bool applied = false, observed = false;
    if (e->delivery_complete)
        return true;
    for (size_t i = 0; i < e->n_events; i++) {
        const char *s = e->events[i]->stage;
        if (strcmp(s, "rejected") == 0 || strcmp(s, "outcome_unknown") == 0)
            return true;
        applied |= strcmp(s, "applied") == 0;
        observed |= strcmp(s, "observed") == 0 || strcmp(s, "observation_unavailable") == 0 ||
                    strcmp(s, "observation_superseded") == 0;
    }
    return applied && observed;
}

/* Under d->mu: queue one ExecuteCommand response (it is taken). */
static void send_response(struct durable *d, uint8_t *resp, size_t len, bool last)
{
    d->sending = true;
    if (last)
        d->complete_sent = true;
    if (!d->out || rpc_stream_send(d->out, resp, len, 0, 0) < 0)
        d->sending = false; /* the call is over: its end is on its way */
    free(resp);
}

/* ExecuteCommand's complete snapshot is queued: OK follows it. */
static void complete_ok(struct durable *d)
{
    command_table_exchange_leave(d->t, &d->x);
    command_hub_count(d->relay->commands, COMMAND_DURABLE, "complete", d->x.start_ns);
    log_exchange(d, "complete");
    end_stream(d, RPC_OK, NULL);
}

/* ExchangeCommand's answer: the first snapshot (rule 17), or DATA_LOSS
 * for one of another command (rule 15). resp taken. */
static void answer_first(struct durable *d, bool same, uint8_t *resp, size_t rlen)
{
    pthread_mutex_lock(&d->mu);
    bool mine = claim(d);
    pthread_mutex_unlock(&d->mu);
    if (mine)
        command_table_exchange_leave(d->t, &d->x);
    if (!mine) {
        /* someone else ended it */
    } else if (!same) {
        answer_error(d, RPC_DATA_LOSS, "command digest mismatch");
    } else if (!resp) {
        answer_error(d, RPC_RESOURCE_EXHAUSTED, "relay out of memory");
    } else {
        command_hub_count(d->relay->commands, COMMAND_DURABLE, "ok", d->x.start_ns);
        log_exchange(d, "ok");
        rpc_call_finish(d->call, RPC_OK, NULL, resp, rlen);
    }
    free(resp);
}

static void on_evidence(struct command_exchange *x, const uint8_t *p, size_t len, bool first)
{
    struct durable *d = (struct durable *)x;
    (void)first;
    CommandEvidence *e = (CommandEvidence *)wire_unpack(
        &aeroarc__agent__v1__command_evidence__descriptor, p, len);
    if (!e)
        return; /* the stream checked it already */
    /* Byte-exact on the wire: a digest with a NUL byte and more after it
     * is not the digest. */
    bool same = frame_wire_string_is(p, len, 2, d->digest), last = complete(e);
    aeroarc__agent__v1__command_evidence__free_unpacked(e, NULL);
    size_t rlen = 0;
    uint8_t *resp = same ? response(d, p, len, &rlen) : NULL;
    if (d->unary || !same || !resp) {
        if (!d->unary) {
            pthread_mutex_lock(&d->mu);
            bool mine = claim(d);
            pthread_mutex_unlock(&d->mu);
            if (mine) {
                command_table_exchange_leave(d->t, x);
                answer_error(d, same ? RPC_RESOURCE_EXHAUSTED : RPC_DATA_LOSS,
                             same ? "relay out of memory" : "command digest mismatch");
            }
            free(resp);
            return;
        }
        answer_first(d, same, resp, rlen);
        return;
    }
    /* ExecuteCommand: one response per snapshot; while one is written the
     * newest waits in the mailbox. */
    pthread_mutex_lock(&d->mu);
    if (d->answered || d->complete_sent) {
        free(resp);
    } else if (d->sending) {
        free(d->mailbox);
        d->mailbox = resp;
        d->mailbox_len = rlen;
        d->mailbox_complete = last;
    } else {
        send_response(d, resp, rlen, last);
    }
    bool ends = d->complete_sent && claim(d);
    pthread_mutex_unlock(&d->mu);
    if (ends)
        complete_ok(d);
}

/* ExecuteCommand: a response left; the mailbox's goes next. */
static void on_sent(void *owner, uint64_t stamp, bool ok)
{
    (void)stamp;
    struct durable *d = owner;
    pthread_mutex_lock(&d->mu);
    d->sending = false;
    if (d->mailbox && ok && !d->answered) {
        uint8_t *next = d->mailbox;
        d->mailbox = NULL;
        send_response(d, next, d->mailbox_len, d->mailbox_complete);
    }
    bool ends = d->complete_sent && claim(d);
    pthread_mutex_unlock(&d->mu);
    if (ends)
        complete_ok(d);
}

/* ------------------------------------------------ the table's endings */

static void on_ended(struct command_exchange *x, enum rpc_code code, const char *text)
{
    struct durable *d = (struct durable *)x;
    pthread_mutex_lock(&d->mu);
    bool mine = claim(d);
    pthread_mutex_unlock(&d->mu);
    if (mine)
        answer_error(d, code, text);
}

/* The caller went away (cancelled, or its own deadline passed). */
static void caller_gone(struct durable *d)
{
    pthread_mutex_lock(&d->mu);
    bool in_table = d->in_table;
    pthread_mutex_unlock(&d->mu);
    if (!in_table || !command_table_exchange_leave(d->t, &d->x))
        return;
    pthread_mutex_lock(&d->mu);
    bool mine = claim(d);
    pthread_mutex_unlock(&d->mu);
    if (!mine)
        return;
    /* gRPC ended the call itself; the status below reaches nobody, but a
     * unary call still owes its closing batch, and the count and the log
     * line say what happened. */
    enum rpc_code code =
        mono_ns() >= d->x.deadline_ns - 100 * INT64_C(1000000) ? RPC_DEADLINE_EXCEEDED
                                                                : RPC_CANCELLED;
    answer_error(d, code, rpc_call_code_name(code));
}

/* ----------------------------------------------------- rules 11 and 13 */


/* The slot is ours: the session and its stream again (rule 11), then the
 * id and the write (rules 12-13). */
static void on_granted(struct command_exchange *x)
{
    struct durable *d = (struct durable *)x;
    struct rpc_stream *rs = NULL;
    struct command_table *t = NULL;
    char sid[SESSION_ID_LEN + 1] = "";
    const char *text = NULL;
    enum gateway_target g = gateway_command_target(d->relay->gateway, d->agent_id, &rs, &t, sid);
    enum rpc_code code = gateway_target_status(g, no_session, RPC_NOT_FOUND, &text);
    if (code == RPC_OK && (t != d->t || strcmp(sid, d->session_id) != 0)) {
        code = RPC_NOT_FOUND;
        text = no_session;
    }
    if (code == RPC_OK) {
        pthread_mutex_lock(&d->mu);
        d->dispatched_ms = unix_ms(); /* read by evidence, which may come at once */
        pthread_mutex_unlock(&d->mu);
        code = command_table_exchange_send(d->t, x, rs, d->msg, d->msg_len, &text);
        if (code == RPC_CANCELLED && !text)
            code = RPC_OK; /* already ended by someone else: nothing to answer */
    } else {
        command_table_exchange_leave(d->t, x);
    }
    if (rs)
        rpc_stream_unref(rs);
    if (t)
        command_table_unref(t);
    if (code != RPC_OK)
        on_ended(x, code, text);
}

/* ------------------------------------------------------- rules 2 to 10 */

static bool has_capability(const struct session_caps *caps, const char *cap)
{
    for (size_t i = 0; caps && i < caps->n; i++)
        if (strcmp(caps->v[i], cap) == 0)
            return true;
    return false;
}

/* Rule 8: the plan the command carries (a mission, or a MISSION_START's
 * precondition) ends in RTL. */
static bool plan_has_rtl(const DurableCommand *c)
{
    const Aeroarc__Agent__V1__MissionPlan *plan =
        c->execution_case == AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION_MISSION
            ? (c->mission ? c->mission->plan : NULL)
        : c->execution_case == AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION_MAVLINK
            ? (c->mavlink ? c->mavlink->mission_precondition : NULL)
            : NULL;
    for (size_t i = 0; plan && i < plan->n_items; i++)
        if (plan->items[i]->command == 20)
            return true;
    return false;
}

/* RelayStreamMessage{6: the command bytes as the API sent them}: the
 * request's field 2 is taken from the wire, so unknown fields inside it
 * and the API's encoding travel unchanged. Field 2 more than once merges
 * (12.7 item 6): the occurrences concatenated are what the parser read,
 * and they go on as they came. */
static int wrap_command(struct durable *d, const uint8_t *req, size_t len)
{
    ssize_t n = wire_gather(req, len, 2, NULL);
    if (n < 0) /* cannot happen: the request was unpacked */
        return -1;
    uint8_t hdr[FRAME_WIRE_HDR_MAX];
    size_t h = frame_wire_len_header(6, (uint64_t)n, hdr);
    if (!(d->msg = malloc(h + (size_t)n + 1)))
        return -1;
    memcpy(d->msg, hdr, h);
    (void)wire_gather(req, len, 2, d->msg + h);
    d->msg_len = h + (size_t)n;
    return 0;
}

/* The request's ids, for the exchange and its log line (c may be NULL). */
static bool copy_ids(struct durable *d, const Aeroarc__Relay__V1__ExchangeCommandRequest *req)
{
    const DurableCommand *c = req->command;
    d->agent_id = strdup(req->agent_id);
    d->command_id = strdup(c ? c->command_id : "");
    d->attempt_id = strdup(req->attempt_id);
    d->definition = strdup(c ? c->definition : "");
    d->x.id = d->command_id;
    return d->agent_id && d->command_id && d->attempt_id && d->definition;
}

static int hex_nibble(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * Rules 2-10 for one request (req NULL: it did not unpack). `bytes` is the
 * request as received. Ends with the exchange waiting for the slot, or
 * the caller answered.
 */
static void run(struct durable *d, const Aeroarc__Relay__V1__ExchangeCommandRequest *req,
                const uint8_t *bytes, size_t len, int64_t caller_left_ns)
{
    struct relay *relay = d->relay;
    if (req && !copy_ids(d, req)) {
        refuse(d, RPC_RESOURCE_EXHAUSTED, "relay out of memory");
        return;
    }
    if (atomic_load(&relay->shutting_down)) {
        refuse(d, RPC_UNAVAILABLE, "relay shutting down");
        return;
    }
    if (strcmp(relay->settings->auth_mode, "bearer") != 0) { /* rule 2 */
        refuse(d, RPC_FAILED_PRECONDITION, "durable C2 requires authenticated Agent registration");
        return;
    }
    if (!relay->settings->relay_id_stable) { /* rule 3 */
        refuse(d, RPC_FAILED_PRECONDITION, "durable C2 requires a stable Relay identity");
        return;
    }
    d->received_ms = unix_ms();

    /* Rule 4: one text for every identity failure. */
    const DurableCommand *c = req ? req->command : NULL;
    const char *why = NULL;
    if (!c || command_digest_durable(c, d->digest, &why) < 0 ||
        strcmp(d->digest, c->command_digest) != 0 || req->attempt_id[0] == '\0' ||
        /* 12.8: an undecodable request (invalid UTF-8) is an identity failure */
        !command_digest_utf8(req->attempt_id, strlen(req->attempt_id)) ||
        c->command_id[0] == '\0' || strcmp(req->agent_id, c->agent_id) != 0) {
        if (why)
            log_debug("durable command refused: %s", why);
        refuse(d, RPC_INVALID_ARGUMENT, invalid_identity);
        return;
    }
    for (int i = 0; i < 32; i++)
        d->x.fp[i] = (uint8_t)(hex_nibble(d->digest[2 * i]) << 4 | hex_nibble(d->digest[2 * i + 1]));
    if (wrap_command(d, bytes, len) < 0) {
        refuse(d, RPC_RESOURCE_EXHAUSTED, "relay out of memory");
        return;
    }

    /* Rule 5: the mapping file binds the agent to this operator and aircraft. */
    const char *op = NULL, *ac = NULL;
    if (agent_mappings_find(relay->mappings, req->agent_id, &op, &ac) == 0 ||
        strcmp(op, c->operator_id) != 0 || strcmp(ac, c->aircraft_id) != 0) {
        refuse(d, RPC_PERMISSION_DENIED, "target binding mismatch");
        return;
    }

    /* Rules 6-8 on a copy of the session. */
    struct session_info info;
    if (session_table_get(relay->sessions, req->agent_id, &info) < 0) {
        refuse(d, RPC_UNAVAILABLE, "agent offline");
        return;
    }
    memcpy(d->session_id, info.session_id, sizeof(d->session_id));
    bool capable = has_capability(info.caps, c->capability);
    bool rtl_ok = !plan_has_rtl(c) || has_capability(info.caps, "mission_rtl_v1");
    session_info_release(&info);
    if (!capable) {
        refuse(d, RPC_FAILED_PRECONDITION, "Agent execution capability unavailable");
        return;
    }
    if (!rtl_ok) {
        refuse(d, RPC_FAILED_PRECONDITION,
               "Agent must advertise mission_rtl_v1 before receiving an RTL mission");
        return;
    }

    /* Rule 9, then rule 10: the session's slot. Its table comes with the
     * stream rule 11 needs; without one that rule answers now. */
    d->x.deadline_ns = mono_ns() + (caller_left_ns < DURABLE_BOUND_NS ? caller_left_ns
                                                                       : DURABLE_BOUND_NS);
    struct rpc_stream *rs = NULL;
    char sid[SESSION_ID_LEN + 1] = "";
    const char *text = NULL;
    enum gateway_target g = gateway_command_target(relay->gateway, req->agent_id, &rs, &d->t, sid);
    enum rpc_code code = gateway_target_status(g, no_session, RPC_NOT_FOUND, &text);
    if (rs)
        rpc_stream_unref(rs);
    if (code == RPC_OK && strcmp(sid, d->session_id) != 0) {
        code = RPC_NOT_FOUND;
        text = no_session;
    }
    if (code != RPC_OK) {
        refuse(d, code, text);
        return;
    }
    if (command_table_exchange_start(d->t, &d->x) < 0) {
        refuse(d, RPC_RESOURCE_EXHAUSTED, "relay out of memory");
        return;
    }
    pthread_mutex_lock(&d->mu);
    d->in_table = true;
    pthread_mutex_unlock(&d->mu);
}

/* ------------------------------------------------------ ExchangeCommand */

static void unary_closed(void *arg, bool cancelled)
{
    struct durable *d = arg;
    if (cancelled)
        caller_gone(d);
    command_exchange_unref(&d->x); /* the watch's */
}

static void exchange_command(struct rpc_call *call, const ProtobufCMessage *msg, void *service,
                             struct worker_ctx *w)
{
    (void)w;
    struct relay *relay = service;
    if (!control_auth_admit(relay->control, call)) /* rule 1 */
        return;
    struct durable *d = durable_new(relay);
    if (!d) {
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "relay out of memory", NULL, 0);
        return;
    }
    d->unary = true;
    d->call = call;
    /* The caller leaving must free the slot at once, not at the deadline;
     * the watch's reference also keeps d alive while it waits (the table
     * holds none). */
    command_exchange_ref(&d->x);
    if (rpc_call_watch(call, unary_closed, d) < 0) {
        command_exchange_unref(&d->x);
        command_exchange_unref(&d->x);
        rpc_call_finish(call, RPC_UNAVAILABLE, "the call ended before it could wait", NULL, 0);
        return;
    }
    size_t len = 0;
    const uint8_t *bytes = rpc_call_request(call, &len);
    run(d, (const Aeroarc__Relay__V1__ExchangeCommandRequest *)msg, bytes, len,
        rpc_call_deadline_left_ns(call));
    command_exchange_unref(&d->x);
}

/* ------------------------------------------------------- ExecuteCommand */

static void execute_message(void *owner, const uint8_t *bytes, size_t len, struct worker_ctx *w)
{
    (void)w;
    struct durable *d = owner;
    if (d->requested) { /* a server-streaming call has one request */
        rpc_stream_credit(d->out, 1);
        return;
    }
    d->requested = true;
    const char *cut = NULL;
    ProtobufCMessage *req = rpc_unary_unpack(
        &aeroarc__relay__v1__execute_command_request__descriptor, bytes, len, &cut);
    /* Same field numbers and types as ExchangeCommandRequest. */
    run(d, (const Aeroarc__Relay__V1__ExchangeCommandRequest *)req, bytes, len,
        rpc_call_deadline_left_ns(d->call));
    if (req)
        protobuf_c_message_free_unpacked(req, NULL);
}

/* The call is over: whatever still waits in the table leaves, and d lets
 * go of the stream (it may not outlive its stream's last callback). */
static void execute_closed(void *owner, bool cancelled, enum rpc_code code)
{
    (void)code;
    struct durable *d = owner;
    if (cancelled)
        caller_gone(d);
    pthread_mutex_lock(&d->mu);
    d->answered = true;
    struct rpc_stream *out = d->out;
    d->out = NULL;
    bool in_table = d->in_table;
    pthread_mutex_unlock(&d->mu);
    if (in_table)
        command_table_exchange_leave(d->t, &d->x);
    if (out)
        rpc_stream_unref(out);
}

static void execute_free(void *owner)
{
    struct durable *d = owner;
    command_exchange_unref(&d->x);
}

static const struct rpc_stream_handler execute_handler = {
    .on_message = execute_message,
    .on_sent = on_sent,
    .on_closed = execute_closed,
    .on_free = execute_free,
};

static void execute_command(struct rpc_call *call, void *service, struct worker_ctx *w)
{
    (void)w;
    struct relay *relay = service;
    if (!control_auth_admit(relay->control, call)) /* rule 1 */
        return;
    struct durable *d = durable_new(relay);
    struct rpc_stream_config cfg = {
        .credit = 1, .queue_max = 16, .shutting_down = &relay->shutting_down};
    if (!d || !(d->out = rpc_stream_create(call, &execute_handler, d, &cfg))) {
        if (d)
            durable_free(&d->x);
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "relay out of memory", NULL, 0);
        return;
    }
    /* d's reference (durable_new's) is the stream's, dropped by its
     * on_free; the stream's (create's) is d's, dropped when the call is
     * over (execute_closed). */
    d->call = call;
    rpc_stream_start(d->out);
}

int command_durable_add(struct relay *relay, struct rpc_server *server)
{
    if (rpc_server_add_unary_flags(server, "/aeroarc.relay.v1.RelayControl/ExchangeCommand",
                                   &aeroarc__relay__v1__exchange_command_request__descriptor,
                                   exchange_command, relay, RPC_UNARY_OWN_MALFORMED) < 0 ||
        rpc_server_add_stream(server, "/aeroarc.relay.v1.RelayControl/ExecuteCommand",
                              execute_command, relay) < 0)
        return -1;
    command_hub_declare(relay->commands, COMMAND_DURABLE, "ok");
    command_hub_declare(relay->commands, COMMAND_DURABLE, "complete");
    return 0;
}
