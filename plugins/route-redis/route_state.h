/*
 * route_state.h - what route-redis knows and still owes Redis, as data: per
 * drone, the active session and the ended sessions whose key may still be in
 * Redis; a FIFO of drones with work pending; and batches of operations built
 * from them for the worker to send. No locking and no I/O here: the plugin's
 * mutex guards a route_state; batches are owned by the worker thread.
 *
 * Why a map and not a queue of commands: only the final state matters. A
 * session that goes up and down a thousand times while Redis is away costs
 * one map entry, and nothing at all once it ended without ever having been
 * sent (Redis cannot hold a key we never wrote). Memory is bounded by the
 * drones the relay holds plus the ended sessions whose deletes are pending
 * (at most ROUTE_DEAD_PER_DRONE per drone and max_dead in all).
 */
#ifndef ROUTE_STATE_H
#define ROUTE_STATE_H

#include <stdbool.h>
#include <stddef.h>

/* Ended sessions of one drone remembered for compare-and-delete. More
 * can only pile up while Redis is unreachable; the oldest is forgotten
 * (its key, if any, expires by TTL). */
#define ROUTE_DEAD_PER_DRONE 4

enum route_op_kind {
    ROUTE_OP_SET = 1,     /* Register: SET key value EX ttl, unconditional */
    ROUTE_OP_REFRESH = 2, /* script: recreate if missing, extend if ours, else leave */
    ROUTE_OP_DELETE = 3   /* script: delete if it holds one of session_ids */
};

enum route_op_result {
    ROUTE_RES_NONE = 0,    /* not executed (the connection failed first) */
    ROUTE_RES_OK = 1,      /* executed; `value` holds an integer reply */
    ROUTE_RES_ERROR = 2,   /* Redis answered with an error */
    ROUTE_RES_NOSCRIPT = 3 /* the script cache was flushed: reload and resync */
};

/* Most session ids one op names: a drone's dead ones plus its active one. */
#define ROUTE_OP_MAX_IDS (ROUTE_DEAD_PER_DRONE + 1)

/* One operation for one drone. Strings point into the batch that holds it. */
struct route_op {
    enum route_op_kind kind;
    const char *drone_id;
    const char *session_ids[ROUTE_OP_MAX_IDS]; /* SET/REFRESH: [0] only */
    unsigned n_sessions;
    enum route_op_result result; /* filled by whoever executes the op */
    long long value;             /* REFRESH: 1 written, 0 left alone; DELETE: keys deleted */
};

struct route_arena_block;

/* A list of operations and the copies of the ids they name. */
struct route_batch {
    struct route_op *ops;
    size_t n, cap;
    struct route_arena_block *blocks;
};

void route_state_batch_init(struct route_batch *b);
/* Forget every op (keeps nothing allocated). */
void route_state_batch_clear(struct route_batch *b);

struct route_state;

/* max_dead: ended sessions remembered for deletion over all drones. */
struct route_state *route_state_new(size_t max_dead);
void route_state_free(struct route_state *st);

/*
 * session_up: `session_id` is now the drone's session. An older session of
 * the drone that may have been written becomes "dead" (to compare-and-delete,
 * in case the newer SET never makes it). The drone is queued for an
 * unconditional SET. Returns 0, -ENOMEM (state unchanged), or 1 when a dead
 * session had to be forgotten because of a limit.
 */
int route_state_up(struct route_state *st, const char *drone_id, const char *session_id);
/*
 * session_down: if `session_id` is the drone's active session it ends; if it
 * was ever sent it becomes dead and the drone is queued for deletion. Any
 * other session id (superseded already, unknown) changes nothing. Returns
 * 0, or 1 when the delete had to be forgotten because of a limit.
 */
int route_state_down(struct route_state *st, const char *drone_id, const char *session_id);

size_t route_state_active(const struct route_state *st); /* drones with a session */
size_t route_state_dead(const struct route_state *st);   /* deletes still owed */
bool route_state_has_dirty(const struct route_state *st);

/*
 * Move work into b. Ids are copied; the state marks what it hands out as
 * sent (Redis may hold it from now on). For one drone a DELETE always comes
 * before its SET/REFRESH. Each returns the ops added, or -ENOMEM.
 *
 * take_dirty: drones queued by up/down, oldest first, until about max_ops.
 * take_refresh: a REFRESH for every active session (the periodic refresh).
 * take_resync: after (re)connecting: DELETE for every dead session, REFRESH
 *   for every active one; queued SETs become these REFRESHes (see
 *   docs/routing.md: a Register made while Redis was away must not overwrite
 *   a newer registration elsewhere) and the dirty queue is emptied.
 * take_final: at shutdown, DELETE for every session that may be in Redis.
 */
int route_state_take_dirty(struct route_state *st, struct route_batch *b, size_t max_ops);
int route_state_take_refresh(struct route_state *st, struct route_batch *b);
int route_state_take_resync(struct route_state *st, struct route_batch *b);
int route_state_take_final(struct route_state *st, struct route_batch *b);

/* Take the outcome of executed ops into account: a DELETE that Redis
 * answered (whatever the answer) settles the dead sessions it named. */
void route_state_apply(struct route_state *st, const struct route_batch *b);

#endif
