/*
 * command_table.c - per-session commands (SPEC.md section 10): lookup by
 * id, join / replay / redeliver, the Set/Clear delivery slot, retention
 * (24 h, 4096 per kind), and the hub that finds waiting callers past
 * their deadline. Entries are a list in arrival order (eviction takes the
 * oldest) and an index by id (every call and every evidence looks one up,
 * and a session may keep 4096 ids of each kind for a day); waiting
 * callers are rpc_calls kept until finished here.
 */
#include "command_table.h"

#include "frame_codec.h"

#include "mono_clock.h"
#include "random_bytes.h"
#include "rpc_stream.h"
#include "siphash.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[COMMAND_KINDS] = {
    [COMMAND_SET_CONTEXT] = "set",
    [COMMAND_CLEAR_CONTEXT] = "clear",
    [COMMAND_AIRCRAFT] = "aircraft",
    [COMMAND_DURABLE] = "durable",
    [COMMAND_MISSION] = "mission",
};

const char *command_kind_name(enum command_kind k) { return kind_names[k]; }

static const char *const aborted_text[COMMAND_KINDS] = {
    /* Upstream's texts (gatewayserver.go abortPendingCommandsLocked). */
    [COMMAND_SET_CONTEXT] = "agent session retired while awaiting operation-context acknowledgement",
    [COMMAND_CLEAR_CONTEXT] =
        "agent session retired while awaiting operation-context acknowledgement",
    [COMMAND_AIRCRAFT] = "agent session retired while awaiting aircraft command result",
    [COMMAND_DURABLE] = "Agent session or stream ended; reconcile the same command identity",
    /* SPEC.md 14.2 rule 16, "not written": the stream ended with the
     * mission still in its queue (14.6 reading 5). */
    [COMMAND_MISSION] =
        "agent session retired while awaiting mission result before confirmed delivery",
};
static const char mission_replaced_unsent_text[] =
    "agent stream replaced after mission delivery before confirmed delivery";

/* 14.2 rule 16: why the relay completed a written mission itself. */
static const char mission_lost_reason[] = "agent session retired while awaiting mission result";
static const char mission_replaced_reason[] = "agent stream replaced after mission delivery";
static const char mission_write_failed_reason[] =
    "mission stream write failed after delivery began";
/* 14.2 rules 6, 12, 15, 16 for a mission not admitted yet (rule 11). */
static const char mission_unadmitted_text[] =
    "agent session retired while awaiting mission result before mission admission";
static const char mission_retry_left_text[] = "all mission retry waiters ended before admission";
static const char session_gone_text[] = "agent session is no longer active";
static const char stream_gone_text[] = "agent stream is not connected";

static const char deadline_text[] = "agent did not answer before the deadline (outcome unknown)";
static const char shutdown_text[] = "relay shutting down";
static const char mission_wait_text[] =
    "mission deployment result not received within the deadline (outcome unknown)";
static const char slot_wait_text[] = "deadline passed waiting for the session's command slot";
static const char exchange_deadline_text[] =
    "command deadline exceeded before the Agent's evidence arrived (outcome unknown)";
static const char write_deadline_text[] = "Agent stream write exceeded command deadline";

/* An exchange's place (command_exchange.state). */
enum {
    X_NEW,     /* not in the table */
    X_QUEUED,  /* waiting for the slot */
    X_GRANTED, /* holds the slot; its owner rechecks the session */
    X_WAITING, /* admitted and written: waits for evidence (holds the slot until the first) */
    X_GONE     /* left the table */
};

struct waiter {
    struct waiter *next;
    struct rpc_call *call;
    int64_t start_ns, deadline_ns; /* monotonic */
    int64_t caller_deadline_ns;    /* the caller's own (INT64_MAX: none) */
    int64_t result_bound_ns;       /* > 0: from delivery on, at most this (result_bound) */
};

enum entry_state {
    ENTRY_QUEUED,  /* waiting for the session's slot: not sent */
    ENTRY_WRITTEN, /* sent on `rs`: waiting for the agent */
    ENTRY_DONE,    /* the agent's result, replayed on an exact retry */
    ENTRY_FAILED   /* ended without a keepable result: sent again on an exact retry */
};

struct entry {
    struct entry *next, *prev; /* the table's list, oldest first */
    struct entry *id_next;    /* the id index's bucket */
    uint64_t id_hash;
    struct entry *queue_next; /* the slot's queue */
    enum command_kind kind;
    enum entry_state state;
    char *id;
    uint8_t fp[32];
    uint8_t *msg;
    size_t msg_len;
    void *ctx;
    const struct command_ops *ops;
    struct rpc_stream *rs; /* a reference while QUEUED or WRITTEN */
    uint64_t queued_seq;   /* QUEUED: its place among those waiting for the slot */
    struct command_exchange *active; /* durable: the exchange admitted under this id */
    struct waiter *waiters;
    int64_t ended_ns;      /* monotonic: retention */
    bool writing;          /* a written Set/Clear counted in rec->writing */
    bool again;            /* a kept result is being sent again */
    enum rpc_code code;    /* DONE: replayed on an exact retry */
    const char *text;
    uint8_t *resp;
    size_t resp_len;
    bool retry;            /* DONE: sent again while sent_rs is the current stream */
    bool admit_failed;     /* DONE, mission: a redelivery failed before admission
                            * (14.6 reading 8): sent again on any stream */
    bool counted;          /* in t->count: a mission only once admitted (14.2 rule 11) */
    const char *label;     /* DONE: the kind's result label (command_outcome.label) */
    struct rpc_stream *sent_rs; /* the stream it last went out on (a reference, until it ends) */
    uint32_t sent_number;       /* WRITTEN: its message on rs (rpc_stream_sent) */
};

struct command_table {
    atomic_int refs;
    struct command_hub *hub;
    pthread_mutex_t mu;
    struct entry *head, *tail;
    struct entry **index;             /* by id: index_size buckets (a power of two) */
    uint32_t index_size, n_entries;
    uint32_t unended;                 /* entries QUEUED or WRITTEN: what expire looks at */
    int64_t swept_ns;                 /* retention's last sweep */
    size_t count[COMMAND_KINDS];
    struct entry *slot;               /* the Set/Clear written, if any */
    struct command_exchange *slot_x;  /* or the exchange holding the slot */
    struct entry *queue_head, *queue_tail;
    struct command_exchange *xqueue_head, *xqueue_tail;
    uint64_t queue_seq;               /* FIFO order across both queues */
    struct command_exchange *exchanges; /* every exchange in the table */
    size_t waiting;                   /* callers waiting */
    bool on_hub;                      /* listed on hub->tables (a reference) */
    struct command_table *hub_next;
    struct command_session_state state;
    /* The agent's authoritative contexts, oldest first (a copy of the
     * record's while this table owns it). */
    struct command_context history[COMMAND_HISTORY];
    size_t n_history;
    struct agent_record *rec; /* the agent's; lives while this table does */
};

/*
 * Per agent, across its sessions (SPEC.md section 10): the reconciled
 * context its newest table published, the context history, and the
 * Set/Clear written with no outcome yet. Kept while a table of the agent
 * lives, then COMMAND_CONTEXT_RETAIN_NS (at most COMMAND_CONTEXT_RETAIN_MAX
 * such agents). Under hub->rec_mu; taken after a table's mutex.
 */
struct agent_record {
    struct agent_record *next; /* bucket */
    struct command_table *owner; /* the newest table (no reference) */
    int live;                  /* tables alive */
    int writing;               /* Set/Clear written, outcome unknown yet */
    int64_t released_ns;       /* monotonic: when live dropped to 0 */
    struct command_session_state state;
    struct command_context history[COMMAND_HISTORY];
    size_t n_history;
    char agent_id[];
};

#define REC_BUCKETS 4096

struct command_hub {
    /* Keys agent records' and command ids' hashes: both are chosen by
     * clients, which could otherwise pick them to share one bucket. */
    uint8_t hash_key[SIPHASH_KEY_BYTES];
    pthread_mutex_t rec_mu;
    struct agent_record *recs[REC_BUCKETS];
    size_t n_retained;         /* records with live == 0 */
    int64_t swept_ns;
    pthread_mutex_t mu;
    struct command_table *tables;     /* those with waiting callers */
    int64_t timeout_ns;
    atomic_llong pending;
    aero_metric *pending_gauge[COMMAND_KINDS];
    struct metric_vec *results[COMMAND_KINDS];
    struct metric_histogram *duration[COMMAND_KINDS];
    struct metric_vec *mission_results;       /* SPEC.md 14.5 */
    struct metric_histogram *mission_duration;
};

/* A caller to answer once the table's lock is released: a call, or an
 * exchange's callback (x set; resp is then the evidence). */
struct finish {
    struct finish *next;
    struct rpc_call *call;
    enum rpc_code code;
    const char *text;
    uint8_t *resp;
    size_t resp_len;
    enum command_kind kind;
    int64_t start_ns;
    const char *label;          /* mission: aero_relay_mission_deployments_total's */
    struct command_exchange *x; /* a reference */
    enum { NOTE_GRANTED, NOTE_EVIDENCE, NOTE_ENDED } note;
    bool first;
};

void command_outcome_wrap(const uint8_t *payload, size_t len, struct command_outcome *out)
{
    size_t n = 0;
    uint8_t *r = frame_wire_wrap(1, payload, len, NULL, 0, &n);
    if (!r) {
        *out = (struct command_outcome){.code = RPC_RESOURCE_EXHAUSTED,
                                        .text = "relay out of memory"};
        return;
    }
    out->code = RPC_OK;
    out->resp = r;
    out->resp_len = n;
}

/* ----------------------------------------------------------------- hub */

struct command_hub *command_hub_create(struct metrics *m, int64_t timeout_ns)
{
    struct command_hub *hub = calloc(1, sizeof(*hub));
    if (!hub)
        return NULL;
    pthread_mutex_init(&hub->mu, NULL);
    pthread_mutex_init(&hub->rec_mu, NULL);
    random_bytes(hub->hash_key, sizeof(hub->hash_key));
    hub->timeout_ns = timeout_ns;
    atomic_init(&hub->pending, 0);
    static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    for (int k = 0; m && k < COMMAND_KINDS; k++) {
        char fixed[64];
        snprintf(fixed, sizeof(fixed), "kind=\"%s\"", kind_names[k]);
        hub->pending_gauge[k] = metrics_register(
            m, AERO_METRIC_GAUGE, "aero_relay_commands_pending",
            "Callers waiting for an agent's command result, by kind.", fixed);
        hub->results[k] = metrics_vec_register(
            m, "aero_relay_commands_total",
            "RelayControl commands answered, by kind and result (a gRPC code's name; durable "
            "ones also ok and complete).",
            fixed, "result", 32, "other");
        hub->duration[k] = metrics_histogram_register_labeled(
            m, "aero_relay_command_duration_seconds",
            "Time from a command's arrival to its answer, by kind.", fixed, bounds,
            sizeof(bounds) / sizeof(bounds[0]));
    }
    if (m) {
        hub->mission_results = metrics_vec_register(
            m, "aero_relay_mission_deployments_total",
            "DeployMission answers: the result's status name, delivery_failed or wait_ended.",
            NULL, "result", 16, "other");
        hub->mission_duration = metrics_histogram_register(
            m, "aero_relay_mission_deployment_duration_seconds",
            "Time from a DeployMission call to its result.", bounds,
            sizeof(bounds) / sizeof(bounds[0]));
    }
    /* The results the hub itself names; each kind's module declares its
     * own (durable's ok/complete, the mission statuses). */
    for (int k = 0; k < COMMAND_KINDS; k++)
        if (k != COMMAND_DURABLE)
            command_hub_declare(hub, (enum command_kind)k, "OK");
    command_hub_declare_deployment(hub, "delivery_failed");
    command_hub_declare_deployment(hub, "wait_ended");
    return hub;
}

int64_t command_hub_pending(struct command_hub *hub) { return atomic_load(&hub->pending); }

static void pending_add(struct command_hub *hub, enum command_kind k, long long d)
{
    atomic_fetch_add(&hub->pending, d);
    metrics_add(hub->pending_gauge[k], (uint64_t)d);
}

void command_hub_count(struct command_hub *hub, enum command_kind kind, const char *result,
                       int64_t start_ns)
{
    if (!hub->results[kind])
        return;
    metrics_inc(metrics_vec_get(hub->results[kind], result, strlen(result)));
    metrics_histogram_observe_ns(hub->duration[kind], mono_ns() - start_ns);
}

void command_hub_declare(struct command_hub *hub, enum command_kind kind, const char *result)
{
    if (hub->results[kind])
        (void)metrics_vec_get(hub->results[kind], result, strlen(result));
}

void command_hub_declare_deployment(struct command_hub *hub, const char *result)
{
    if (hub->mission_results)
        (void)metrics_vec_get(hub->mission_results, result, strlen(result));
}

void command_hub_refuse(struct command_hub *hub, struct rpc_call *call, enum command_kind kind,
                        enum rpc_code code, const char *text, int64_t start_ns)
{
    command_hub_count(hub, kind, rpc_call_code_name(code), start_ns);
    rpc_call_finish(call, code, text, NULL, 0);
}

/* SPEC.md 14.5: one mission answer, by label; the duration for results. */
static void count_mission(struct command_hub *hub, const char *label, bool result, int64_t start_ns)
{
    if (!hub->mission_results || !label)
        return;
    metrics_inc(metrics_vec_get(hub->mission_results, label, strlen(label)));
    if (result)
        metrics_histogram_observe_ns(hub->mission_duration, mono_ns() - start_ns);
}

/* The mission label of an answer: the result's status, the caller's own
 * bound (14.6 item 4), or any other error. */
static const char *mission_label(const struct entry *e, enum rpc_code code, const char *result)
{
    if (e->kind != COMMAND_MISSION)
        return NULL;
    if (code == RPC_OK)
        return result;
    return code == RPC_DEADLINE_EXCEEDED || code == RPC_CANCELLED ? "wait_ended"
                                                                  : "delivery_failed";
}

/* Under t->mu: keep the table listed while callers wait. */
static void hub_list(struct command_table *t)
{
    if (t->on_hub || t->waiting == 0)
        return;
    t->on_hub = true;
    atomic_fetch_add(&t->refs, 1);
    pthread_mutex_lock(&t->hub->mu);
    t->hub_next = t->hub->tables;
    t->hub->tables = t;
    pthread_mutex_unlock(&t->hub->mu);
}

/* An exchange's callback, then the table's reference for it goes. */
static void notify(struct finish *f)
{
    struct command_exchange *x = f->x;
    if (f->note == NOTE_GRANTED)
        x->ops->granted(x);
    else if (f->note == NOTE_EVIDENCE)
        x->ops->evidence(x, f->resp, f->resp_len, f->first);
    else
        x->ops->ended(x, f->code, f->text);
    command_exchange_unref(x);
}

static void finish_all(struct command_hub *hub, struct finish *f)
{
    while (f) {
        struct finish *next = f->next;
        if (f->x) {
            notify(f);
        } else {
            /* Counted first: whoever got the answer sees it counted. */
            command_hub_count(hub, f->kind, rpc_call_code_name(f->code), f->start_ns);
            count_mission(hub, f->label, f->code == RPC_OK, f->start_ns);
            rpc_call_finish(f->call, f->code, f->text, f->resp, f->resp_len);
        }
        free(f->resp);
        free(f);
        f = next;
    }
}

/* Under t->mu: one waiter leaves with this answer (copied). */
static void waiter_done(struct command_table *t, struct entry *e, struct waiter *w,
                        enum rpc_code code, const char *text, const uint8_t *resp,
                        size_t resp_len, struct finish **out)
{
    struct finish *f = calloc(1, sizeof(*f));
    if (f && resp_len && !(f->resp = malloc(resp_len))) {
        code = RPC_RESOURCE_EXHAUSTED;
        text = "relay out of memory";
        resp_len = 0;
    }
    if (!f) {
        /* Nothing left to answer with: gRPC still frees the call. */
        rpc_call_finish(w->call, RPC_RESOURCE_EXHAUSTED, "relay out of memory", NULL, 0);
    } else {
        if (resp_len)
            memcpy(f->resp, resp, resp_len);
        *f = (struct finish){.next = *out, .call = w->call, .code = code, .text = text,
                             .resp = f->resp, .resp_len = resp_len, .kind = e->kind,
                             .start_ns = w->start_ns,
                             .label = mission_label(e, code, e->label)};
        *out = f;
    }
    free(w);
    t->waiting--;
    pending_add(t->hub, e->kind, -1);
}

/* -------------------------------------------------------- agent records */

static size_t rec_bucket(const struct command_hub *hub, const char *agent_id)
{
    return (size_t)(siphash24(hub->hash_key, agent_id, strlen(agent_id)) % REC_BUCKETS);
}

/* Under rec_mu: unlink and free r (no table refers to it). */
static void rec_drop(struct command_hub *hub, struct agent_record *r)
{
    struct agent_record **l = &hub->recs[rec_bucket(hub, r->agent_id)];
    while (*l != r)
        l = &(*l)->next;
    *l = r->next;
    hub->n_retained--;
    free(r);
}

/* Under rec_mu: records past their retention go; `room` more: the oldest
 * retained ones go until fewer than the maximum are kept. */
static void rec_sweep(struct command_hub *hub, int64_t now, bool room)
{
    for (size_t b = 0; b < REC_BUCKETS; b++)
        for (struct agent_record *r = hub->recs[b], *next; r; r = next) {
            next = r->next;
            if (r->live == 0 && now - r->released_ns > COMMAND_CONTEXT_RETAIN_NS)
                rec_drop(hub, r);
        }
    while (room && hub->n_retained >= COMMAND_CONTEXT_RETAIN_MAX) {
        struct agent_record *oldest = NULL;
        for (size_t b = 0; b < REC_BUCKETS; b++)
            for (struct agent_record *r = hub->recs[b]; r; r = r->next)
                if (r->live == 0 && (!oldest || r->released_ns < oldest->released_ns))
                    oldest = r;
        if (!oldest)
            break;
        rec_drop(hub, oldest);
    }
}

/* Under rec_mu: the agent's record, made (live 0) if it has none; NULL
 * when out of memory. */
static struct agent_record *rec_get(struct command_hub *hub, const char *agent_id, bool *fresh)
{
    size_t b = rec_bucket(hub, agent_id);
    for (struct agent_record *r = hub->recs[b]; r; r = r->next)
        if (strcmp(r->agent_id, agent_id) == 0) {
            *fresh = false;
            return r;
        }
    if (hub->n_retained >= COMMAND_CONTEXT_RETAIN_MAX)
        rec_sweep(hub, mono_ns(), true);
    size_t n = strlen(agent_id);
    struct agent_record *r = calloc(1, sizeof(*r) + n + 1);
    if (!r)
        return NULL;
    memcpy(r->agent_id, agent_id, n + 1);
    r->next = hub->recs[b];
    hub->recs[b] = r;
    hub->n_retained++;
    *fresh = true;
    return r;
}

static bool context_eq(const struct command_context *a, const struct command_context *b)
{
    return strcmp(a->flight_id, b->flight_id) == 0 && strcmp(a->intent_id, b->intent_id) == 0 &&
           a->intent_version == b->intent_version && strcmp(a->aircraft_id, b->aircraft_id) == 0;
}

/* Under t->mu: the context just made authoritative joins the history
 * (newest last; one already there moves). */
static void history_add(struct command_table *t, const struct command_context *c)
{
    size_t i = 0;
    while (i < t->n_history && !context_eq(&t->history[i], c))
        i++;
    if (i == t->n_history && t->n_history == COMMAND_HISTORY)
        i = 0; /* full: the oldest goes */
    if (i < t->n_history) {
        memmove(&t->history[i], &t->history[i + 1],
                (t->n_history - i - 1) * sizeof(t->history[0]));
        t->n_history--;
    }
    t->history[t->n_history++] = *c;
}

/* Under t->mu: the table's state changed; the agent's record follows it
 * while this table is the agent's newest. */
static void publish(struct command_table *t)
{
    if (!t->rec)
        return;
    pthread_mutex_lock(&t->hub->rec_mu);
    if (t->rec->owner == t) {
        t->rec->state = t->state;
        memcpy(t->rec->history, t->history, sizeof(t->history));
        t->rec->n_history = t->n_history;
    }
    pthread_mutex_unlock(&t->hub->rec_mu);
}

/* Under t->mu: a written Set/Clear starts or stops counting as one whose
 * outcome is not known yet. */
static void set_writing(struct command_table *t, struct entry *e, bool on)
{
    if (e->writing == on || !t->rec)
        return;
    e->writing = on;
    pthread_mutex_lock(&t->hub->rec_mu);
    t->rec->writing += on ? 1 : -1;
    pthread_mutex_unlock(&t->hub->rec_mu);
}

/* Under t->mu: after a kind changed the state (result, unknown outcome). */
static void state_changed(struct command_table *t, const struct command_session_state *before)
{
    if (t->state.reconciled && t->state.has_context &&
        !(before->reconciled && before->has_context && context_eq(&before->current, &t->state.current)))
        history_add(t, &t->state.current);
    publish(t);
}

/* ---------------------------------------------------------------- table */

struct command_table *command_table_create(struct command_hub *hub, const char *agent_id,
                                           bool take_over)
{
    struct command_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    atomic_init(&t->refs, 1);
    t->hub = hub;
    pthread_mutex_init(&t->mu, NULL);
    if (!agent_id)
        return t;
    pthread_mutex_lock(&hub->rec_mu);
    bool fresh = false;
    struct agent_record *r = rec_get(hub, agent_id, &fresh);
    if (r) {
        int64_t now = mono_ns();
        bool kept = r->live > 0 || now - r->released_ns <= COMMAND_CONTEXT_RETAIN_NS;
        if (!fresh && kept) {
            memcpy(t->history, r->history, sizeof(t->history));
            t->n_history = r->n_history;
            /* Takes over only a context nobody may have changed since. */
            if (take_over && r->state.reconciled && r->writing == 0)
                t->state = r->state;
        }
        if (r->live++ == 0)
            hub->n_retained--;
        r->owner = t;
        r->state = t->state;
        memcpy(r->history, t->history, sizeof(t->history));
        r->n_history = t->n_history;
        t->rec = r;
    }
    pthread_mutex_unlock(&hub->rec_mu);
    return t;
}

void command_table_ref(struct command_table *t) { atomic_fetch_add(&t->refs, 1); }

static void entry_free(struct entry *e)
{
    if (e->sent_rs)
        rpc_stream_unref(e->sent_rs);
    if (e->ops && e->ops->free)
        e->ops->free(e->ctx);
    free(e->id);
    free(e->msg);
    free(e->resp);
    free(e);
}

/* The last reference: no caller waits (a waiting caller keeps the table
 * listed on the hub), so nothing here touches gRPC. */
void command_table_unref(struct command_table *t)
{
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    while (t->head) {
        struct entry *e = t->head;
        t->head = e->next;
        if (e->rs)
            rpc_stream_unref(e->rs);
        set_writing(t, e, false);
        entry_free(e);
    }
    free(t->index);
    if (t->rec) {
        pthread_mutex_lock(&t->hub->rec_mu);
        if (t->rec->owner == t)
            t->rec->owner = NULL;
        if (--t->rec->live == 0) {
            t->rec->released_ns = mono_ns();
            t->hub->n_retained++;
        }
        pthread_mutex_unlock(&t->hub->rec_mu);
    }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void command_table_release(void *t) { command_table_unref(t); }

void command_table_state(struct command_table *t, struct command_session_state *out)
{
    pthread_mutex_lock(&t->mu);
    *out = t->state;
    pthread_mutex_unlock(&t->mu);
}

bool command_table_reconciled(struct command_table *t)
{
    pthread_mutex_lock(&t->mu);
    bool r = t->state.reconciled;
    pthread_mutex_unlock(&t->mu);
    return r;
}

static bool str_is(const char *a, const char *s, size_t n)
{
    return strlen(a) == n && memcmp(a, s, n) == 0;
}

void command_table_stamp(struct command_table *t, const char *flight, size_t flight_len,
                         const char *intent, size_t intent_len, uint32_t version,
                         struct command_context *out)
{
    pthread_mutex_lock(&t->mu);
    const struct command_context *use = t->state.has_context ? &t->state.current : NULL;
    for (size_t i = t->n_history; i-- > 0;) {
        const struct command_context *h = &t->history[i];
        if (h->intent_version == version && str_is(h->flight_id, flight, flight_len) &&
            str_is(h->intent_id, intent, intent_len)) {
            use = h;
            break;
        }
    }
    if (use)
        *out = *use;
    else
        memset(out, 0, sizeof(*out));
    pthread_mutex_unlock(&t->mu);
}

static bool takes_slot(enum command_kind k) { return k != COMMAND_AIRCRAFT; }

static bool slot_busy(const struct command_table *t) { return t->slot || t->slot_x; }

/* Under t->mu: a callback for x once the lock is released. Granted and
 * ended come once each, from the two finishes x reserved when it started
 * (they cannot fail); a snapshot that finds no memory is dropped: evidence
 * is cumulative, the next one or the deadline ends the exchange. */
static void note(struct command_exchange *x, int what, enum rpc_code code, const char *text,
                 const uint8_t *payload, size_t len, bool first, struct finish **out)
{
    struct finish *f;
    if (what == NOTE_EVIDENCE) {
        f = calloc(1, sizeof(*f));
        if (f && len && !(f->resp = malloc(len))) {
            free(f);
            f = NULL;
        }
        if (!f)
            return;
        if (len) /* an empty CommandEvidence is a valid one */
            memcpy(f->resp, payload, len);
        f->resp_len = len;
    } else {
        f = x->spare[what == NOTE_GRANTED ? 0 : 1];
        x->spare[what == NOTE_GRANTED ? 0 : 1] = NULL;
        memset(f, 0, sizeof(*f));
    }
    f->x = x;
    command_exchange_ref(x);
    f->note = what;
    f->code = code;
    f->text = text;
    f->first = first;
    f->next = *out;
    *out = f;
}

static void exchange_end(struct command_table *t, struct command_exchange *x, enum rpc_code code,
                         const char *text, struct finish **out);
static bool end_blocked_write(struct command_exchange *x, int64_t now);

/* Under t->mu: every change of an entry's state, so that t->unended
 * counts those a caller may wait on. */
static void set_state(struct command_table *t, struct entry *e, enum entry_state state)
{
    bool was = e->state < ENTRY_DONE, is = state < ENTRY_DONE;
    if (was != is)
        t->unended += is ? 1 : (uint32_t)-1;
    e->state = state;
}

static uint64_t id_hash(const struct command_table *t, const char *id)
{
    return siphash24(t->hub->hash_key, id, strlen(id));
}

/* Under t->mu: e joins the id index, which doubles when it holds as many
 * entries as buckets (made at the first entry: most sessions never see a
 * command). -1: out of memory. */
static int index_add(struct command_table *t, struct entry *e)
{
    if (t->n_entries >= t->index_size) {
        uint32_t size = t->index_size ? 2 * t->index_size : 16;
        struct entry **index = calloc(size, sizeof(*index));
        if (!index && !t->index)
            return -1;
        if (index) { /* else the old one serves, with longer buckets */
            for (uint32_t b = 0; b < t->index_size; b++)
                for (struct entry *o = t->index[b], *next; o; o = next) {
                    next = o->id_next;
                    o->id_next = index[o->id_hash & (size - 1)];
                    index[o->id_hash & (size - 1)] = o;
                }
            free(t->index);
            t->index = index;
            t->index_size = size;
        }
    }
    e->id_hash = id_hash(t, e->id);
    struct entry **b = &t->index[e->id_hash & (t->index_size - 1)];
    e->id_next = *b;
    *b = e;
    t->n_entries++;
    return 0;
}

static void index_remove(struct command_table *t, struct entry *e)
{
    struct entry **l = &t->index[e->id_hash & (t->index_size - 1)];
    while (*l != e)
        l = &(*l)->id_next;
    *l = e->id_next;
    t->n_entries--;
}

/* Under t->mu: e ends; every waiter gets the answer. */
static void entry_end(struct command_table *t, struct entry *e, enum entry_state state,
                      enum rpc_code code, const char *text, struct finish **out)
{
    if (e->state == ENTRY_QUEUED) {
        struct entry **l = &t->queue_head;
        while (*l && *l != e)
            l = &(*l)->queue_next;
        if (*l) {
            *l = e->queue_next;
            if (t->queue_tail == e) {
                t->queue_tail = NULL;
                for (struct entry *q = t->queue_head; q; q = q->queue_next)
                    t->queue_tail = q;
            }
        }
    }
    if (t->slot == e)
        t->slot = NULL;
    set_writing(t, e, false);
    set_state(t, e, state);
    e->code = code;
    e->text = text;
    e->again = false;
    e->ended_ns = mono_ns();
    if (e->rs) {
        rpc_stream_unref(e->rs);
        e->rs = NULL;
    }
    free(e->msg); /* a redelivery brings its own */
    e->msg = NULL;
    while (e->waiters) {
        struct waiter *w = e->waiters;
        e->waiters = w->next;
        waiter_done(t, e, w, code, text, e->resp, e->resp_len, out);
    }
}

static void unlink_entry(struct command_table *t, struct entry *e)
{
    index_remove(t, e);
    if (e->prev)
        e->prev->next = e->next;
    else
        t->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        t->tail = e->prev;
    if (e->counted)
        t->count[e->kind]--;
    set_state(t, e, ENTRY_FAILED); /* no longer counted as unended */
    entry_free(e);
}

/* An ended entry nobody can use any more: kept 24 h after it ended (a
 * durable id: after its last admission). */
static bool expired(const struct entry *e, int64_t now)
{
    return e->state >= ENTRY_DONE && !e->active && now - e->ended_ns > COMMAND_RETAIN_NS;
}

/* Under t->mu: drop ended entries past 24 h (looked for at most once a
 * second, or when kind k is full: find() drops an expired one it meets,
 * so nothing depends on this sweep's timing); make room for one more of
 * kind k (the oldest ended one goes). False: all 4096 are pending. */
static bool retain(struct command_table *t, enum command_kind k)
{
    int64_t now = mono_ns();
    if (t->count[k] >= COMMAND_RETAIN_MAX || now - t->swept_ns >= INT64_C(1000000000)) {
        t->swept_ns = now;
        for (struct entry *e = t->head, *next; e; e = next) {
            next = e->next;
            if (expired(e, now))
                unlink_entry(t, e);
        }
    }
    if (t->count[k] < COMMAND_RETAIN_MAX)
        return true;
    if (k == COMMAND_DURABLE)
        return false; /* SPEC.md 12.2 rule 12: nothing is evicted */
    for (struct entry *e = t->head; e; e = e->next)
        if (e->kind == k && e->state >= ENTRY_DONE) {
            unlink_entry(t, e);
            return true;
        }
    return false;
}

/* w's command was delivered (or w joined it delivered): from now on it
 * waits for the result at most command_timeout_s, within its own deadline. */
static void result_bound(struct waiter *w, int64_t now)
{
    if (w->result_bound_ns > 0 && now + w->result_bound_ns < w->caller_deadline_ns)
        w->deadline_ns = now + w->result_bound_ns;
}

/* Under t->mu: send e on its stream, or end it. */
static void deliver(struct command_table *t, struct entry *e, struct finish **out)
{
    /* The table bounds its commands (4096 pending per kind, SPEC.md
     * section 10): the stream's queue never refuses one; a mission's write
     * is detached (14.6 reading 5) and waits there like the others. */
    int rc = rpc_stream_send_numbered(e->rs, e->msg, e->msg_len, RPC_SEND_BOUNDED, 0,
                                      &e->sent_number);
    if (rc == 0) {
        set_state(t, e, ENTRY_WRITTEN);
        int64_t now = mono_ns();
        for (struct waiter *w = e->waiters; w; w = w->next)
            result_bound(w, now);
        e->admit_failed = false;
        if (e->sent_rs)
            rpc_stream_unref(e->sent_rs);
        e->sent_rs = e->rs;
        rpc_stream_ref(e->sent_rs);
        if (takes_slot(e->kind))
            t->slot = e;
        if (e->kind == COMMAND_SET_CONTEXT || e->kind == COMMAND_CLEAR_CONTEXT)
            set_writing(t, e, true);
        if (e->ops->sent)
            e->ops->sent(e->ctx);
        return;
    }
    if (e->kind == COMMAND_MISSION) {
        /* 14.2 rule 12: a write that never began; nothing reached the
         * agent, so ours drops the entry (the id is free again). */
        entry_end(t, e, ENTRY_FAILED, rc == -EPIPE ? RPC_UNAVAILABLE : RPC_RESOURCE_EXHAUSTED,
                  rc == -EPIPE ? stream_gone_text : "relay out of memory", out);
        unlink_entry(t, e);
    } else if (rc == -EPIPE)
        entry_end(t, e, ENTRY_FAILED, RPC_ABORTED, aborted_text[e->kind], out);
    else
        entry_end(t, e, ENTRY_FAILED, RPC_RESOURCE_EXHAUSTED, "relay out of memory", out);
}

/* Under t->mu: e ends before it was admitted (SPEC.md 14.2 rules 9-11,
 * 15, 16). A mission's reserved redelivery stays retryable and is sent
 * again on an exact retry on any stream (14.6 reading 8); a first
 * delivery was never recorded, so it is dropped and its id is free. */
static void end_unadmitted(struct command_table *t, struct entry *e, enum rpc_code code,
                           const char *text, struct finish **out)
{
    if (e->kind != COMMAND_MISSION) {
        entry_end(t, e, ENTRY_FAILED, code, text, out);
        return;
    }
    bool again = e->again;
    entry_end(t, e, again ? ENTRY_DONE : ENTRY_FAILED, code, text, out);
    if (!again) {
        unlink_entry(t, e);
        return;
    }
    e->retry = true;
    e->admit_failed = true;
}

/* Under t->mu: e has the slot (or needs none): the kind's check (a
 * mission's rules 10-11), then a mission not yet counted takes its place
 * in the retention (rule 11: after the fence and the window, so their
 * texts win), then the write. */
static void take_slot(struct command_table *t, struct entry *e, struct finish **out)
{
    enum rpc_code code = RPC_INVALID_ARGUMENT;
    const char *bad = e->ops->check ? e->ops->check(e->ctx, &t->state, e->again, &code) : NULL;
    if (!bad && !e->counted) {
        if (retain(t, e->kind)) {
            e->counted = true;
            t->count[e->kind]++;
        } else {
            code = RPC_RESOURCE_EXHAUSTED;
            bad = "mission deployment retention is full";
        }
    }
    if (bad)
        end_unadmitted(t, e, code, bad, out); /* never sent */
    else
        deliver(t, e, out);
}

/* Under t->mu: the slot is free: the oldest queued Set/Clear or exchange
 * gets it (an exchange is told, and rechecks before it writes). */
static void next_in_slot(struct command_table *t, struct finish **out)
{
    while (!slot_busy(t) && (t->queue_head || t->xqueue_head)) {
        struct command_exchange *x = t->xqueue_head;
        if (x && (!t->queue_head || x->queued_seq < t->queue_head->queued_seq)) {
            t->xqueue_head = x->queue_next;
            if (!t->xqueue_head)
                t->xqueue_tail = NULL;
            x->queue_next = NULL;
            x->state = X_GRANTED;
            t->slot_x = x;
            note(x, NOTE_GRANTED, RPC_OK, NULL, NULL, 0, false, out);
            continue;
        }
        struct entry *e = t->queue_head;
        t->queue_head = e->queue_next;
        if (!t->queue_head)
            t->queue_tail = NULL;
        e->queue_next = NULL;
        take_slot(t, e, out);
    }
}

/* Under t->mu: the entry for id, or NULL (an expired one is dropped on
 * the way: to the caller it is as if the sweep had run). */
static struct entry *find(struct command_table *t, const char *id)
{
    if (!t->index)
        return NULL;
    uint64_t h = id_hash(t, id);
    struct entry *e = t->index[h & (t->index_size - 1)];
    while (e && (e->id_hash != h || strcmp(e->id, id) != 0))
        e = e->id_next;
    if (e && expired(e, mono_ns())) {
        unlink_entry(t, e);
        return NULL;
    }
    return e;
}

/* Under t->mu: a new entry for spec, appended; NULL when out of memory
 * or all COMMAND_RETAIN_MAX of its kind are pending (*full set). A
 * mission is counted when it is admitted (take_slot), not here. */
static struct entry *entry_new(struct command_table *t, const struct command_spec *spec,
                               bool *full)
{
    bool mission = spec->kind == COMMAND_MISSION;
    *full = !mission && !retain(t, spec->kind);
    if (*full)
        return NULL;
    struct entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->id = strdup(spec->id))) {
        free(e);
        return NULL;
    }
    e->kind = spec->kind;
    e->state = ENTRY_FAILED; /* nothing sent yet */
    memcpy(e->fp, spec->fingerprint, 32);
    if (index_add(t, e) < 0) {
        entry_free(e);
        return NULL;
    }
    e->prev = t->tail;
    if (t->tail)
        t->tail->next = e;
    else
        t->head = e;
    t->tail = e;
    e->counted = !mission;
    if (e->counted)
        t->count[e->kind]++;
    return e;
}

/* Under t->mu: send e (new, or ended without the agent's result) again
 * for this caller: its own expectations, message and stream. */
static void send_entry(struct command_table *t, struct entry *e, struct rpc_stream *rs,
                       const struct command_spec *spec, uint8_t *msg, struct waiter *w,
                       struct finish **out)
{
    if (e->ops && e->ops->free)
        e->ops->free(e->ctx);
    e->ctx = spec->ctx;
    e->ops = spec->ops;
    memcpy(msg, spec->msg, spec->msg_len);
    free(e->msg);
    e->msg = msg;
    e->msg_len = spec->msg_len;
    free(e->resp);
    e->resp = NULL;
    e->resp_len = 0;
    e->rs = rs;
    rpc_stream_ref(rs);
    w->next = NULL;
    e->waiters = w;
    t->waiting++;
    pending_add(t->hub, e->kind, 1);
    hub_list(t);
    /* On its way from here: not an ended entry that take_slot's retention
     * sweep or eviction may drop while admitting it. */
    set_state(t, e, ENTRY_QUEUED);
    if (takes_slot(e->kind) && slot_busy(t)) {
        e->queued_seq = t->queue_seq++;
        e->queue_next = NULL;
        if (t->queue_tail)
            t->queue_tail->queue_next = e;
        else
            t->queue_head = e;
        t->queue_tail = e;
    } else {
        take_slot(t, e, out);
    }
}

static struct waiter *waiter_new(struct command_table *t, struct rpc_call *call,
                                 const struct command_spec *spec)
{
    struct waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->call = call;
    w->start_ns = mono_ns();
    w->caller_deadline_ns = spec->deadline_left_ns >= INT64_MAX - w->start_ns
                                ? INT64_MAX
                                : w->start_ns + spec->deadline_left_ns;
    w->deadline_ns = w->caller_deadline_ns;
    if (spec->bound_ns > 0) {
        /* A mission's cap counts from its arrival (SPEC.md 14.2 rule 15). */
        if (spec->bound_ns < w->deadline_ns - w->start_ns)
            w->deadline_ns = w->start_ns + spec->bound_ns;
    } else {
        /* SPEC.md section 10: the slot is waited for within the caller's
         * deadline; command_timeout_s bounds the wait for the result, so
         * it counts from delivery (result_bound). */
        w->result_bound_ns = t->hub->timeout_ns;
    }
    return w;
}

/* Under t->mu: the ALREADY_EXISTS text for an id held by another command
 * (SPEC.md 14.2 rule 8 and 14.6 item 7 when a mission is involved; 12.2
 * rule 12 when a durable command is: section 12's kinds name the kind). */
static bool own_kind_text(enum command_kind k)
{
    return k == COMMAND_MISSION || k == COMMAND_DURABLE;
}

static const char *id_taken(const struct entry *e, const struct command_spec *spec)
{
    if (e->kind != spec->kind && (own_kind_text(e->kind) || own_kind_text(spec->kind)))
        return "command ID was already used by a different command kind";
    if (e->kind == COMMAND_MISSION && spec->kind == COMMAND_MISSION)
        return "mission command ID was already used with a different payload";
    return "command_id was already used for a different command";
}

/* Under t->mu: a kept result that an exact retry on `rs` sends again
 * (14.2 rule 8: retryable, and its redelivery admission failed or it
 * went out on the current stream). */
static bool redeliver(const struct entry *e, const struct rpc_stream *rs)
{
    return e->state == ENTRY_DONE && e->retry && (e->admit_failed || e->sent_rs == rs);
}

struct watch {
    struct command_table *t; /* a reference */
    struct rpc_call *call;
};

static void leave(struct command_table *t, struct rpc_call *call);

static void watch_closed(void *arg, bool cancelled)
{
    struct watch *wa = arg;
    if (cancelled)
        leave(wa->t, wa->call);
    command_table_unref(wa->t);
    free(wa);
}

/* The caller's cancel ends its wait at once (spec->watch). */
static void watch(struct command_table *t, struct rpc_call *call)
{
    struct watch *wa = malloc(sizeof(*wa));
    if (!wa)
        return; /* its deadline still ends it */
    *wa = (struct watch){t, call};
    command_table_ref(t);
    if (rpc_call_watch(call, watch_closed, wa) < 0) {
        command_table_unref(t);
        free(wa);
    }
}

void command_table_submit(struct command_table *t, struct rpc_stream *rs,
                          const struct command_spec *spec, struct rpc_call *call)
{
    struct finish *done = NULL;
    enum rpc_code code = RPC_OK;
    const char *text = NULL, *label = NULL;
    uint8_t *replay = NULL;
    size_t replay_len = 0;
    bool replayed = false, taken = false;
    int64_t start_ns = mono_ns();
    struct waiter *w = waiter_new(t, call, spec);
    uint8_t *msg = malloc(spec->msg_len ? spec->msg_len : 1);
    if (spec->watch)
        watch(t, call);

    pthread_mutex_lock(&t->mu);
    struct entry *e = find(t, spec->id);
    const char *bad;
    bool full = false, again = e && redeliver(e, rs);
    if (!w || !msg) {
        code = RPC_RESOURCE_EXHAUSTED;
        text = "relay out of memory";
    } else if (e && (e->kind != spec->kind || memcmp(e->fp, spec->fingerprint, 32) != 0)) {
        code = RPC_ALREADY_EXISTS;
        text = id_taken(e, spec);
    } else if (e && (e->state == ENTRY_QUEUED || e->state == ENTRY_WRITTEN)) {
        /* The same command is on its way: wait for its outcome too. */
        if (e->state == ENTRY_WRITTEN)
            result_bound(w, w->start_ns);
        w->next = e->waiters;
        e->waiters = w;
        w = NULL;
        t->waiting++;
        pending_add(t->hub, e->kind, 1);
        hub_list(t);
    } else if (e && e->state == ENTRY_DONE && !again) {
        /* A kept outcome: the answer again, nothing sent. */
        replayed = true;
        code = e->code;
        text = e->text;
        label = mission_label(e, code, e->label);
        if (code == RPC_OK && e->resp_len) {
            if ((replay = malloc(e->resp_len)) != NULL) {
                memcpy(replay, e->resp, e->resp_len);
                replay_len = e->resp_len;
            } else {
                code = RPC_RESOURCE_EXHAUSTED;
                text = "relay out of memory";
            }
        }
    } else if (spec->kind != COMMAND_MISSION &&
               (code = RPC_INVALID_ARGUMENT,
                bad = spec->ops->check ? spec->ops->check(spec->ctx, &t->state, again, &code)
                                       : NULL)) {
        /* Section 10's kinds are refused at arrival; a mission first waits
         * for the slot (14.2 rule 9 before 10-11): take_slot checks it. */
        text = bad;
    } else if ((code = RPC_OK, !e) && !(e = entry_new(t, spec, &full))) {
        code = RPC_RESOURCE_EXHAUSTED;
        text = full ? "too many commands pending for this agent" : "relay out of memory";
    } else {
        e->again = again;
        send_entry(t, e, rs, spec, msg, w, &done);
        taken = true;
        msg = NULL;
        w = NULL;
    }
    pthread_mutex_unlock(&t->mu);
    free(msg);
    bool waiting = w == NULL && code == RPC_OK && !replayed;
    free(w);
    if (!taken && spec->ops->free)
        spec->ops->free(spec->ctx);
    finish_all(t->hub, done);
    if (waiting)
        return;
    if (!replayed && spec->kind == COMMAND_MISSION)
        label = "delivery_failed"; /* every error from 14.2 rule 8 on */
    struct finish *f = calloc(1, sizeof(*f));
    if (f) {
        *f = (struct finish){.call = call, .code = code, .text = text, .resp = replay,
                             .resp_len = replay_len, .kind = spec->kind, .start_ns = start_ns,
                             .label = label};
        finish_all(t->hub, f);
        return;
    }
    free(replay);
    rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "relay out of memory", NULL, 0);
}

/* Under t->mu: e ends with the kind's outcome o (an agent result, or the
 * relay's own), kept as o says. */
static void complete(struct command_table *t, struct entry *e, struct command_outcome *o,
                     struct finish **out)
{
    free(e->resp);
    e->resp = o->resp;
    e->resp_len = o->resp_len;
    e->retry = o->retry;
    e->label = o->label;
    entry_end(t, e, o->keep ? ENTRY_DONE : ENTRY_FAILED, o->code, o->text, out);
}

/* Under t->mu: the last caller of e (not ended) left. A written entry
 * the kind completes itself gets that outcome (SPEC.md 14.2 rule 15);
 * else it ends with its outcome unknown and is sent again on a retry. */
static void abandoned(struct command_table *t, struct entry *e, struct finish **out)
{
    if (e->state == ENTRY_QUEUED && e->kind == COMMAND_MISSION) {
        end_unadmitted(t, e, RPC_CANCELLED, mission_retry_left_text, out);
        return;
    }
    if (e->state == ENTRY_WRITTEN && e->ops->lost) {
        struct command_outcome o = {.code = RPC_OK};
        e->ops->lost(e->ctx, NULL, &o);
        complete(t, e, &o, out);
        return;
    }
    if (e->state == ENTRY_WRITTEN && e->ops->on_unknown) {
        struct command_session_state before = t->state;
        e->ops->on_unknown(e->ctx, &t->state);
        state_changed(t, &before);
    }
    entry_end(t, e, ENTRY_FAILED, RPC_DEADLINE_EXCEEDED, deadline_text, out);
}

/* The wait's deadline text: the kind's, and for a mission where it was. */
static const char *deadline_text_of(const struct entry *e)
{
    if (e->kind != COMMAND_MISSION)
        return deadline_text;
    return e->state == ENTRY_QUEUED ? slot_wait_text : mission_wait_text;
}

/* A watched caller went (cancelled, or gRPC saw its deadline first). */
static void leave(struct command_table *t, struct rpc_call *call)
{
    struct finish *done = NULL;
    int64_t now = mono_ns();
    pthread_mutex_lock(&t->mu);
    for (struct entry *e = t->unended ? t->head : NULL; e; e = e->next) {
        if (e->state >= ENTRY_DONE)
            continue;
        struct waiter **l = &e->waiters;
        while (*l && (*l)->call != call)
            l = &(*l)->next;
        struct waiter *w = *l;
        if (!w)
            continue;
        *l = w->next;
        bool late = now >= w->deadline_ns - 100 * INT64_C(1000000);
        waiter_done(t, e, w, late ? RPC_DEADLINE_EXCEEDED : RPC_CANCELLED,
                    late ? deadline_text_of(e) : "caller cancelled", NULL, 0, &done);
        if (!e->waiters)
            abandoned(t, e, &done);
        break;
    }
    next_in_slot(t, &done);
    pthread_mutex_unlock(&t->mu);
    finish_all(t->hub, done);
}

bool command_table_result(struct command_table *t, struct rpc_stream *rs, unsigned kinds_mask,
                          const char *command_id, const uint8_t *payload, size_t len)
{
    struct finish *done = NULL;
    pthread_mutex_lock(&t->mu);
    struct entry *e = find(t, command_id);
    bool taken = e && e->state == ENTRY_WRITTEN && e->rs == rs && (kinds_mask & (1u << e->kind));
    if (taken) {
        struct command_outcome o = {.code = RPC_OK};
        struct command_session_state before = t->state;
        e->ops->on_result(e->ctx, &t->state, payload, len, &o);
        state_changed(t, &before);
        complete(t, e, &o, &done);
        next_in_slot(t, &done);
    }
    pthread_mutex_unlock(&t->mu);
    finish_all(t->hub, done);
    return taken;
}

void command_table_stream_ended(struct command_table *t, struct rpc_stream *rs, bool replaced,
                                struct rpc_stream *successor)
{
    struct finish *done = NULL;
    pthread_mutex_lock(&t->mu);
    for (struct entry *e = t->head, *next; e; e = next) {
        next = e->next; /* end_unadmitted may drop e */
        if (e->sent_rs == rs) { /* never the current stream again */
            rpc_stream_unref(e->sent_rs);
            e->sent_rs = NULL;
        }
        if (e->rs != rs || e->state >= ENTRY_DONE)
            continue;
        if (e->state == ENTRY_QUEUED && e->kind == COMMAND_MISSION) {
            /* 14.6 reading 3: a mission waiting for the slot is on no
             * stream yet; it goes out on the one current when it has the
             * slot. Only the session's end stops it: a reserved
             * redelivery is aborted (rule 16, still retryable), a first
             * delivery fails rule 6's recheck. */
            if (successor) {
                rpc_stream_unref(e->rs);
                e->rs = successor;
                rpc_stream_ref(successor);
            } else {
                end_unadmitted(t, e, e->again ? RPC_ABORTED : RPC_NOT_FOUND,
                               e->again ? mission_unadmitted_text : session_gone_text, &done);
            }
            continue;
        }
        if (e->state == ENTRY_WRITTEN && e->kind == COMMAND_MISSION &&
            !rpc_stream_sent(rs, e->sent_number)) {
            if (rpc_stream_begun(rs, e->sent_number)) {
                /* 14.2 rule 12: its write began and never finished (the
                 * stream ended under it): the agent may hold part or all
                 * of it, so the outcome is unknown, OK to the caller, kept. */
                struct command_outcome o = {.code = RPC_OK};
                e->ops->lost(e->ctx, mission_write_failed_reason, &o);
                complete(t, e, &o, &done);
            } else {
                /* 14.2 rule 16, not written (14.6 reading 5: still waiting
                 * for the stream's write): nothing reached the agent, so
                 * ABORTED and not kept; a redelivery stays retryable. */
                end_unadmitted(t, e, RPC_ABORTED,
                               replaced ? mission_replaced_unsent_text : aborted_text[e->kind],
                               &done);
            }
            continue;
        }
        if (e->state == ENTRY_WRITTEN && e->ops->lost) {
            /* 14.2 rule 16: kept, never sent again on this session */
            struct command_outcome o = {.code = RPC_OK};
            e->ops->lost(e->ctx, replaced ? mission_replaced_reason : mission_lost_reason, &o);
            complete(t, e, &o, &done);
            continue;
        }
        if (e->state == ENTRY_WRITTEN && e->ops->on_unknown) {
            struct command_session_state before = t->state;
            e->ops->on_unknown(e->ctx, &t->state);
            state_changed(t, &before);
        }
        entry_end(t, e, ENTRY_FAILED, RPC_ABORTED, aborted_text[e->kind], &done);
    }
    for (struct command_exchange *x = t->exchanges, *next; x; x = next) {
        next = x->next;
        if (x->state == X_WAITING && x->rs == rs) /* rule 18 */
            exchange_end(t, x, RPC_ABORTED, aborted_text[x->kind], &done);
    }
    next_in_slot(t, &done);
    pthread_mutex_unlock(&t->mu);
    finish_all(t->hub, done);
}

/* Under t->mu: callers past their deadline (all when `all`) leave; an
 * entry nobody waits for any more ends with its outcome unknown. */
static void expire(struct command_table *t, int64_t now, bool all, struct finish **out)
{
    /* Only unended entries have callers; most of a busy session's are
     * ids kept for retries, not walked on every tick. */
    for (struct entry *e = t->unended ? t->head : NULL, *next; e; e = next) {
        next = e->next; /* abandoned may drop e */
        if (e->state >= ENTRY_DONE)
            continue;
        for (struct waiter **l = &e->waiters; *l;) {
            struct waiter *w = *l;
            if (!all && w->deadline_ns > now) {
                l = &w->next;
                continue;
            }
            *l = w->next;
            waiter_done(t, e, w, all ? RPC_UNAVAILABLE : RPC_DEADLINE_EXCEEDED,
                        all ? shutdown_text : deadline_text_of(e), NULL, 0, out);
        }
        if (!e->waiters)
            abandoned(t, e, out);
    }
    for (struct command_exchange *x = t->exchanges, *next; x; x = next) {
        next = x->next;
        if (all)
            exchange_end(t, x, RPC_UNAVAILABLE, shutdown_text, out);
        else if (x->deadline_ns <= now)
            exchange_end(t, x, RPC_DEADLINE_EXCEEDED,
                         end_blocked_write(x, now) ? write_deadline_text : exchange_deadline_text,
                         out);
    }
    next_in_slot(t, out);
}

static void hub_walk(struct command_hub *hub, int64_t now, bool all)
{
    pthread_mutex_lock(&hub->mu);
    struct command_table *list = hub->tables;
    hub->tables = NULL;
    pthread_mutex_unlock(&hub->mu);
    while (list) {
        struct command_table *t = list;
        list = t->hub_next;
        struct finish *done = NULL;
        pthread_mutex_lock(&t->mu);
        expire(t, now, all, &done);
        t->on_hub = false;
        bool keep = t->waiting > 0;
        if (keep)
            hub_list(t); /* takes a new reference */
        pthread_mutex_unlock(&t->mu);
        finish_all(hub, done);
        command_table_unref(t); /* the list's */
    }
}

void command_hub_tick(struct command_hub *hub, int64_t now)
{
    hub_walk(hub, now, false);
    pthread_mutex_lock(&hub->rec_mu);
    if (now - hub->swept_ns >= INT64_C(1000000000)) { /* once a second */
        hub->swept_ns = now;
        rec_sweep(hub, now, false);
    }
    pthread_mutex_unlock(&hub->rec_mu);
}

void command_hub_shutdown(struct command_hub *hub)
{
    if (hub)
        hub_walk(hub, mono_ns(), true);
}

void command_hub_destroy(struct command_hub *hub)
{
    if (!hub)
        return;
    command_hub_shutdown(hub);
    for (size_t b = 0; b < REC_BUCKETS; b++)
        while (hub->recs[b]) {
            struct agent_record *r = hub->recs[b];
            hub->recs[b] = r->next;
            free(r);
        }
    pthread_mutex_destroy(&hub->rec_mu);
    pthread_mutex_destroy(&hub->mu);
    free(hub);
}

/* ------------------------------------------- exchanges (SPEC.md 12) */

void command_exchange_ref(struct command_exchange *x) { atomic_fetch_add(&x->refs, 1); }

void command_exchange_unref(struct command_exchange *x)
{
    if (!x || atomic_fetch_sub(&x->refs, 1) != 1)
        return;
    free(x->spare[0]);
    free(x->spare[1]);
    x->ops->free(x);
}

/* Under t->mu: x leaves every list it is on, and the slot if it held it
 * (the caller then runs next_in_slot). */
static void exchange_remove(struct command_table *t, struct command_exchange *x)
{
    if (x->state == X_QUEUED) {
        struct command_exchange **l = &t->xqueue_head, *prev = NULL;
        while (*l != x) {
            prev = *l;
            l = &(*l)->queue_next;
        }
        *l = x->queue_next;
        if (t->xqueue_tail == x)
            t->xqueue_tail = prev;
        x->queue_next = NULL;
    }
    if (t->slot_x == x)
        t->slot_x = NULL;
    if (x->entry) {
        x->entry->active = NULL;
        x->entry = NULL;
    }
    if (x->rs) {
        rpc_stream_unref(x->rs);
        x->rs = NULL;
    }
    struct command_exchange **l = &t->exchanges;
    while (*l != x)
        l = &(*l)->next;
    *l = x->next;
    x->state = X_GONE;
    t->waiting--;
    pending_add(t->hub, x->kind, -1);
}

static bool exchange_in_table(const struct command_exchange *x)
{
    return x->state == X_QUEUED || x->state == X_GRANTED || x->state == X_WAITING;
}

/* gRPC ends a call at the caller's own deadline, possibly before the
 * hub's next tick sees it: a call ended this close to its deadline ended
 * by it. */
#define DEADLINE_SLACK_NS (100 * INT64_C(1000000))

/*
 * Under t->mu: SPEC.md 12.2 rule 13. At its deadline, an exchange whose
 * command still waits in the agent stream's queue (a peer that does not
 * read: acks fill its window) ends that stream as well. gRPC cancels
 * asynchronously: the stream's end reaches this table later, from a
 * worker. True when it did.
 */
static bool end_blocked_write(struct command_exchange *x, int64_t now)
{
    if (x->state != X_WAITING || now + DEADLINE_SLACK_NS < x->deadline_ns ||
        rpc_stream_sent(x->rs, x->sent_number))
        return false;
    rpc_stream_cancel(x->rs, RPC_DEADLINE_EXCEEDED, write_deadline_text);
    return true;
}

/* Under t->mu: the table ends x (its owner hears of it once unlocked). */
static void exchange_end(struct command_table *t, struct command_exchange *x, enum rpc_code code,
                         const char *text, struct finish **out)
{
    exchange_remove(t, x);
    note(x, NOTE_ENDED, code, text, NULL, 0, false, out);
}

int command_table_exchange_start(struct command_table *t, struct command_exchange *x)
{
    x->spare[0] = malloc(sizeof(struct finish));
    x->spare[1] = malloc(sizeof(struct finish));
    if (!x->spare[0] || !x->spare[1])
        return -ENOMEM; /* the owner's unref frees them */
    struct finish *done = NULL;
    pthread_mutex_lock(&t->mu);
    x->state = X_QUEUED;
    x->next = t->exchanges;
    t->exchanges = x;
    t->waiting++;
    pending_add(t->hub, x->kind, 1);
    hub_list(t);
    x->queued_seq = t->queue_seq++;
    if (t->xqueue_tail)
        t->xqueue_tail->queue_next = x;
    else
        t->xqueue_head = x;
    t->xqueue_tail = x;
    next_in_slot(t, &done);
    pthread_mutex_unlock(&t->mu);
    finish_all(t->hub, done);
    return 0;
}

/* Under t->mu: rule 12 for x: its id's entry, recorded or refreshed, or
 * why not (*text). */
static struct entry *admit(struct command_table *t, struct command_exchange *x,
                           enum rpc_code *code, const char **text)
{
    struct entry *e = find(t, x->id);
    bool full = false;
    if (e && e->kind != x->kind) {
        *code = RPC_ALREADY_EXISTS;
        *text = "command ID was already used by a different command kind";
        return NULL;
    }
    if (e && memcmp(e->fp, x->fp, sizeof(x->fp)) != 0) {
        *code = RPC_ALREADY_EXISTS;
        *text = "durable command ID has a different digest";
        return NULL;
    }
    if (!e) {
        struct command_spec spec = {.kind = x->kind, .id = x->id};
        memcpy(spec.fingerprint, x->fp, sizeof(x->fp));
        if (!(e = entry_new(t, &spec, &full))) {
            *code = RPC_RESOURCE_EXHAUSTED;
            *text = full ? "durable command identity retention is full" : "relay out of memory";
            return NULL;
        }
        set_state(t, e, ENTRY_DONE); /* an id kept, never a result */
    }
    e->ended_ns = mono_ns(); /* retained 24 h after its last admission */
    if (e->active) {
        *code = RPC_ABORTED;
        *text = "command evidence stream already active";
        return NULL;
    }
    return e;
}

enum rpc_code command_table_exchange_send(struct command_table *t, struct command_exchange *x,
                                          struct rpc_stream *rs, const uint8_t *msg, size_t len,
                                          const char **text)
{
    struct finish *done = NULL;
    enum rpc_code code = RPC_OK;
    *text = NULL;
    pthread_mutex_lock(&t->mu);
    if (x->state != X_GRANTED) {
        pthread_mutex_unlock(&t->mu);
        return RPC_CANCELLED; /* ended meanwhile: its owner was told */
    }
    struct entry *e = admit(t, x, &code, text);
    if (e) {
        /* The exchange holds the session's slot (rule 10): a queue full
         * of other messages does not refuse it; rule 13 bounds its wait. */
        int rc = rpc_stream_send_numbered(rs, msg, len, RPC_SEND_BOUNDED, 0, &x->sent_number);
        if (rc == 0) {
            e->active = x;
            x->entry = e;
            x->rs = rs;
            rpc_stream_ref(rs);
            x->state = X_WAITING;
        } else if (rc == -EPIPE) {
            code = RPC_ABORTED;
            *text = aborted_text[x->kind];
        } else {
            code = RPC_RESOURCE_EXHAUSTED;
            *text = "relay out of memory";
        }
    }
    if (code != RPC_OK) {
        exchange_remove(t, x);
        next_in_slot(t, &done);
    }
    pthread_mutex_unlock(&t->mu);
    finish_all(t->hub, done);
    return code;
}

bool command_table_exchange_leave(struct command_table *t, struct command_exchange *x)
{
    struct finish *done = NULL;
    pthread_mutex_lock(&t->mu);
    bool was = exchange_in_table(x);
    if (was) {
        /* A caller gone at its deadline (gRPC's timer, not the hub's):
         * rule 13 as at the hub's tick. */
        (void)end_blocked_write(x, mono_ns());
        exchange_remove(t, x);
        next_in_slot(t, &done);
    }
    pthread_mutex_unlock(&t->mu);
    finish_all(t->hub, done);
    return was;
}

bool command_table_evidence(struct command_table *t, struct rpc_stream *rs,
                            const char *command_id, const uint8_t *payload, size_t len)
{
    struct finish *done = NULL;
    pthread_mutex_lock(&t->mu);
    struct entry *e = find(t, command_id);
    struct command_exchange *x = e ? e->active : NULL;
    bool taken = x && x->state == X_WAITING && x->rs == rs;
    if (taken) {
        bool first = !x->got_first;
        x->got_first = true;
        if (t->slot_x == x) { /* rule 10: the first snapshot frees the slot */
            t->slot_x = NULL;
            next_in_slot(t, &done);
        }
        note(x, NOTE_EVIDENCE, RPC_OK, NULL, payload, len, first, &done);
    }
    pthread_mutex_unlock(&t->mu);
    finish_all(t->hub, done);
    return taken;
}
