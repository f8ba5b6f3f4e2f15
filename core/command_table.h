/*
 * command_table.h - commands to an agent (SPEC.md section 10), one table
 * per session: ids share one namespace across kinds, each entry keeps the
 * SHA-256 fingerprint of its command, its state and, once the agent
 * answered, the result to replay. Callers wait as memory, not threads: a
 * waiting unary call is finished later by a result on the stream, the
 * hub's 100 ms tick (deadlines), or the end of the stream written to.
 * Set/Clear and missions hold the session's one delivery slot while
 * written.
 *
 * Threads: any; one mutex per table, one for the hub's list. gRPC calls
 * are finished with no lock held.
 */
#ifndef AERO_COMMAND_TABLE_H
#define AERO_COMMAND_TABLE_H

#include "metrics.h"
#include "rpc_call.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rpc_stream;

enum command_kind {
    COMMAND_SET_CONTEXT,
    COMMAND_CLEAR_CONTEXT,
    COMMAND_AIRCRAFT,
    COMMAND_DURABLE, /* SPEC.md section 12: exchanges, ids retained without results */
    COMMAND_MISSION, /* SPEC.md section 14: DeployMission, kept results */
    COMMAND_KINDS
};

/* The kind's metric label (SPEC.md 12.7 item 8): set, clear, aircraft,
 * durable, mission. */
const char *command_kind_name(enum command_kind k);

#define COMMAND_RETAIN_NS (24 * 3600 * INT64_C(1000000000))
#define COMMAND_RETAIN_MAX 4096 /* entries per kind */
#define COMMAND_FIELD_MAX 256   /* bytes of a context's string fields kept */
#define COMMAND_HISTORY 16      /* authoritative contexts kept per agent (SPEC.md section 9) */
/* A reconciled context outlives its sessions this long, for this many agents. */
#define COMMAND_CONTEXT_RETAIN_NS (600 * INT64_C(1000000000))
#define COMMAND_CONTEXT_RETAIN_MAX 10000

/* An operation context (agent.proto OperationContext). */
struct command_context {
    char flight_id[COMMAND_FIELD_MAX + 1];
    char intent_id[COMMAND_FIELD_MAX + 1];
    uint32_t intent_version;
    char aircraft_id[COMMAND_FIELD_MAX + 1];
};

/* The session's operation-context state, kept by its table; read and
 * changed by the kinds' result checks under the table's lock. */
struct command_session_state {
    bool reconciled;
    bool has_context;            /* the authoritative context is set */
    struct command_context current;
};

/* What a result (or the lack of one) means for the callers. */
struct command_outcome {
    enum rpc_code code;
    const char *text;  /* static; NULL with RPC_OK */
    uint8_t *resp;     /* malloc'ed packed response (RPC_OK), the table takes it */
    size_t resp_len;
    bool keep;         /* replay it on an exact retry; false: send again.
                        * An error is kept too (mission: INTERNAL, 14.2 rule 14). */
    bool retry;        /* kept, but sent again on an exact retry that comes
                        * while the stream it went out on is still the
                        * session's (mission: TEMPORARY_ERROR, OUTCOME_UNKNOWN) */
    const char *label; /* static: the kind's own result label (mission: the
                        * status name of SPEC.md 14.5), NULL: none */
};

/* out = OK with a response whose field 1 is the agent's result message as
 * it sent it (payload, len): every kind's response has that shape. */
void command_outcome_wrap(const uint8_t *payload, size_t len, struct command_outcome *out);

/* A kind's rules, supplied by relay_control.c. */
struct command_ops {
    /* A result arm for this entry arrived (payload: the arm's message
     * bytes, already known to decode). Fill `out`; may change `state`. */
    void (*on_result)(const void *ctx, struct command_session_state *state,
                      const uint8_t *payload, size_t len, struct command_outcome *out);
    /* The command was written but its outcome is unknown (deadline,
     * stream end): may change `state` (fence). Optional. */
    void (*on_unknown)(const void *ctx, struct command_session_state *state);
    /* The refusal's text (and *code, preset to INVALID_ARGUMENT) when the
     * command may not be sent in `state`; checked before every delivery
     * (`again`: a kept result is being sent again), never for a join or a
     * replay. NULL: fine. */
    const char *(*check)(const void *ctx, const struct command_session_state *state, bool again,
                         enum rpc_code *code);
    /* Optional: the relay completes a written entry itself when its last
     * caller left (`reason` NULL) or its stream ended (`reason` says so):
     * fill `out` (kept, the callers still waiting get it). Without it the
     * entry ends with an error and is sent again on an exact retry. */
    void (*lost)(const void *ctx, const char *reason, struct command_outcome *out);
    /* Optional: the command was handed to its stream (under the table's
     * lock: no gRPC, no table calls). */
    void (*sent)(const void *ctx);
    void (*free)(void *ctx);
};

/* One command as a caller asks for it. */
struct command_spec {
    enum command_kind kind;
    const char *id;
    uint8_t fingerprint[32];   /* SHA-256 of the command's encoding */
    const uint8_t *msg;        /* the encoded RelayStreamMessage (copied) */
    size_t msg_len;
    void *ctx;                 /* the kind's expectations; the table takes it */
    const struct command_ops *ops;
    int64_t deadline_left_ns;  /* the caller's (INT64_MAX: none) */
    int64_t bound_ns;          /* the kind's longest wait (0: command_timeout_s) */
    bool watch;                /* the caller's cancel ends its wait at once */
};

struct command_hub;
struct command_table;

/*
 * An exchange (SPEC.md section 12): a caller that takes the session's slot
 * (rule 10), then is admitted under its id and waits for the agent's
 * evidence snapshots on the stream it wrote to (rules 12-14). The table
 * keeps no result: each exchange delivers again. The owner (the durable
 * command service) embeds this, sets the fields above the line and the
 * ops, and holds one reference; the table takes its own while the
 * exchange is in it and for every callback in flight. Callbacks run with
 * no table lock held, possibly on different threads at once: the owner
 * decides with its own lock which ending is the first.
 */
struct command_exchange;

struct command_exchange_ops {
    /* The slot is the exchange's: recheck the session (rule 11), then
     * command_table_exchange_send or command_table_exchange_leave. */
    void (*granted)(struct command_exchange *x);
    /* A snapshot that counts (rule 14), `first` for the first one (the
     * slot was released for it). */
    void (*evidence)(struct command_exchange *x, const uint8_t *payload, size_t len,
                     bool first);
    /* The table ended it (deadline, lost stream, shutdown): it is out of
     * the table. */
    void (*ended)(struct command_exchange *x, enum rpc_code code, const char *text);
    /* The last reference went. */
    void (*free)(struct command_exchange *x);
};

struct command_exchange {
    const struct command_exchange_ops *ops;
    enum command_kind kind;
    const char *id;            /* the owner's, for the exchange's life */
    uint8_t fp[32];            /* the command's digest */
    int64_t deadline_ns;       /* monotonic: ends DEADLINE_EXCEEDED there */
    int64_t start_ns;          /* monotonic: for the duration histogram */
    /* ---- the table's, under its lock */
    atomic_int refs;
    struct command_exchange *next;     /* the table's exchanges */
    struct command_exchange *queue_next;
    int state;                 /* X_* in command_table.c */
    uint64_t queued_seq;
    struct rpc_stream *rs;     /* written to (a reference) */
    uint32_t sent_number;      /* the message's, on rs (rpc_stream_sent) */
    struct entry *entry;       /* its id's entry while admitted */
    bool got_first;
    void *spare[2];            /* the granted and ended callbacks' memory */
};

void command_exchange_ref(struct command_exchange *x);
void command_exchange_unref(struct command_exchange *x);

/* Per relay: the tables with waiting callers, command_timeout_s, metrics. */
struct command_hub *command_hub_create(struct metrics *m, int64_t timeout_ns);
/* Callers still waiting get UNAVAILABLE "relay shutting down". */
void command_hub_shutdown(struct command_hub *hub);
void command_hub_destroy(struct command_hub *hub);
/* Callers past their deadline get DEADLINE_EXCEEDED (main thread, 100 ms). */
void command_hub_tick(struct command_hub *hub, int64_t now_mono_ns);
/* Callers waiting now (tests, the gauge). */
int64_t command_hub_pending(struct command_hub *hub);

/*
 * The table of a new session of agent_id. It takes over the reconciled
 * context of the agent's previous session (live, or retained 10 minutes
 * after its last table went, SPEC.md section 10) only when `take_over`
 * (the agent is authenticated) and no Set/Clear written there has an
 * unknown outcome; otherwise it starts unreconciled. The agent's last
 * COMMAND_HISTORY authoritative contexts are kept across its sessions.
 */
struct command_table *command_table_create(struct command_hub *hub, const char *agent_id,
                                           bool take_over);
void command_table_ref(struct command_table *t);
void command_table_unref(struct command_table *t);
/* For session_table_set_ext_release. */
void command_table_release(void *t);

/* The session's operation-context state, copied. */
void command_table_state(struct command_table *t, struct command_session_state *out);

/* The session's operation context is reconciled (SPEC.md section 9 step 8). */
bool command_table_reconciled(struct command_table *t);

/*
 * The context a generation-2 frame stamped (flight, intent, version) is
 * recorded with (SPEC.md section 9, envelope): that one when it is one of
 * the agent's authoritative contexts, else the session's current one
 * (empty when none). Into out.
 */
void command_table_stamp(struct command_table *t, const char *flight, size_t flight_len,
                         const char *intent, size_t intent_len, uint32_t version,
                         struct command_context *out);

/*
 * A caller asks for spec on the session's current stream `rs`: joined to
 * the same pending command, answered from a retained result, refused, or
 * sent. Always takes spec->ctx; the call is finished now or later.
 */
void command_table_submit(struct command_table *t, struct rpc_stream *rs,
                          const struct command_spec *spec, struct rpc_call *call);

/*
 * A result for `kinds_mask` (1u << kind) arrived on stream rs: true when a
 * command written to rs waited for it (and is now finished).
 */
bool command_table_result(struct command_table *t, struct rpc_stream *rs, unsigned kinds_mask,
                          const char *command_id, const uint8_t *payload, size_t len);

/* Stream rs ended (`replaced`: another stream of the session took its
 * place): its commands end ABORTED (the outcome is unknown); a written
 * mission gets the relay's own OUTCOME_UNKNOWN (SPEC.md 14.2 rule 16).
 * Missions still waiting for the slot move to `successor`, the session's
 * generation-2 stream now (14.6 reading 3); NULL: the session has none
 * (it retired), they end. */
void command_table_stream_ended(struct command_table *t, struct rpc_stream *rs, bool replaced,
                                struct rpc_stream *successor);

/*
 * x (refs 1, the owner's) asks for the session's slot: granted now or
 * after those before it (ops->granted, maybe before this returns), or
 * ended by its deadline. -ENOMEM: nothing happened.
 */
int command_table_exchange_start(struct command_table *t, struct command_exchange *x);

/*
 * Rules 12-13 for x, which holds the slot: admit its id (kinds, digest,
 * retention, one waiting exchange per id), then write msg on rs. RPC_OK:
 * x waits for evidence on rs. Otherwise x left the table (the slot goes
 * on) and *text says why; RPC_CANCELLED with *text NULL: x had already
 * left (ended by the table or its owner), nothing to answer.
 */
enum rpc_code command_table_exchange_send(struct command_table *t, struct command_exchange *x,
                                          struct rpc_stream *rs, const uint8_t *msg, size_t len,
                                          const char **text);

/* x leaves the table (its owner is done with it, or the caller went):
 * true when it was still there (nobody else will end it). */
bool command_table_exchange_leave(struct command_table *t, struct command_exchange *x);

/*
 * Evidence for command_id arrived on rs (rule 14): true when an exchange
 * written there waits for it (it gets the snapshot; the first one frees
 * the slot); false: nobody's, to be counted as ignored.
 */
bool command_table_evidence(struct command_table *t, struct rpc_stream *rs,
                            const char *command_id, const uint8_t *payload, size_t len);

/* Counted under the kind's result (the duration from x->start_ns too). */
void command_hub_count(struct command_hub *hub, enum command_kind kind, const char *result,
                       int64_t start_ns);

/* A result a scrape should find at 0 before its first answer (a rate over
 * a series that appears with its first increment misses that increment):
 * kind's aero_relay_commands_total{result}, or with command_hub_declare_
 * deployment aero_relay_mission_deployments_total{result}. */
void command_hub_declare(struct command_hub *hub, enum command_kind kind, const char *result);
void command_hub_declare_deployment(struct command_hub *hub, const char *result);

/* A command refused before it reaches a table: counted under the code's
 * name, then the call answered with code and text. */
void command_hub_refuse(struct command_hub *hub, struct rpc_call *call, enum command_kind kind,
                        enum rpc_code code, const char *text, int64_t start_ns);

#endif
