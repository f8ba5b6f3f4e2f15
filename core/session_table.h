/*
 * session_table.h - the live sessions, keyed by agent id (SPEC.md section 2).
 * Lock-sharded hash map; every function is thread-safe. Each session carries
 * a generation that changes whenever the session is replaced (Register) or
 * a new stream takes it over, so an old stream's late calls (touch, detach)
 * can never remove or change what replaced it.
 *
 * The table stores each attached stream's `owner` pointer but never
 * dereferences it: whoever attaches hands the table one reference, and gets
 * it back (through *displaced or a successful detach) to drop.
 */
#ifndef AERO_SESSION_TABLE_H
#define AERO_SESSION_TABLE_H

#include <aeroarc/plugin.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SESSION_AGENT_MAX 128          /* bytes of agent id */
#define SESSION_ID_LEN 37              /* "sess-" + 32 hex */
#define SESSION_FLIGHT_MAX 128

#define SESSION_CAPS_MAX 32            /* RegisterRequest.execution_capabilities entries */
#define SESSION_CAP_BYTES 64           /* bytes of one entry */

struct session_table;

/* An agent's execution_capabilities: immutable once made, shared by the
 * session and every copy of its session_info (reference counted). */
struct session_caps {
    atomic_int refs;
    size_t n;
    char *v[]; /* n strings, stored after the array */
};

/*
 * NULL when there are none. Fails (NULL, *err set) with more than
 * SESSION_CAPS_MAX entries or one over SESSION_CAP_BYTES.
 */
struct session_caps *session_caps_create(char *const *v, size_t n, bool *invalid);
void session_caps_release(struct session_caps *c);

struct session_info {
    char agent_id[SESSION_AGENT_MAX + 1];
    char session_id[SESSION_ID_LEN + 1];
    int64_t connected_at_unix_ns;      /* Register time */
    int64_t last_heartbeat_unix_ns;    /* Register time, then every frame */
    int64_t last_message_unix_ns;      /* 0, then every stream message (frame or not) */
    char flight_id[SESSION_FLIGHT_MAX + 1]; /* last non-empty, may be "" */
    char intent_id[SESSION_FLIGHT_MAX + 1]; /* with the last non-empty intent_id */
    uint32_t intent_version;
    struct session_caps *caps;         /* NULL: none; a copy holds a reference */
    bool stream_attached;
};

/* Drop what a copy from session_table_get holds; session_infos_free for a
 * list (frees the array too). */
void session_info_release(struct session_info *info);
void session_infos_free(struct session_info *infos, size_t n);

/* True when id is 1-128 bytes of A-Z a-z 0-9 . _ - : (SPEC.md section 2). */
bool session_agent_id_valid(const char *id, size_t len);

/* Fill out with "sess-" + 32 lowercase hex from getrandom(2) (128 bits). */
void session_id_generate(char out[SESSION_ID_LEN + 1]);

struct session_table *session_table_create(void);
/* Owners still attached are returned one by one to drop_owner (may be NULL). */
void session_table_destroy(struct session_table *t, void (*drop_owner)(void *owner));

/*
 * Cap the number of sessions (0 = no cap, the default). Call before the
 * table is shared between threads (start-up); it is read without a lock.
 */
void session_table_set_max(struct session_table *t, size_t max_sessions);

/*
 * Register: create or replace the session of `agent_id` (valid id, NUL-
 * terminated) with a fresh session id written to session_id_out. If the
 * replaced session had a stream attached, its owner comes back in
 * *displaced (the caller aborts that stream and drops the reference).
 * Returns 0, or -ENOSPC (nothing changed, session_id_out "") when the
 * agent has no session yet and the table already holds the maximum:
 * replacing an existing session is always allowed, so a drone that
 * reconnects is never locked out by the cap.
 */
int session_table_register(struct session_table *t, const char *agent_id, int64_t now_ns,
                           char session_id_out[SESSION_ID_LEN + 1], void **displaced);
/* The same, recording the agent's capabilities (the session takes a new
 * reference; NULL: none). */
int session_table_register_caps(struct session_table *t, const char *agent_id, int64_t now_ns,
                                struct session_caps *caps,
                                char session_id_out[SESSION_ID_LEN + 1], void **displaced);

/*
 * A stream opens for agent_id: attach `owner` (the table keeps the
 * reference given) and start a new generation. Returns 0 with *gen and the
 * session id filled, and any previously attached owner in *displaced; or
 * -ENOENT when no session exists (the reference stays with the caller).
 */
int session_table_attach(struct session_table *t, const char *agent_id, void *owner,
                         uint64_t *gen, char session_id_out[SESSION_ID_LEN + 1],
                         void **displaced);
/* The same, only if the session's id is `expect` (NUL-terminated; NULL:
 * any): -ESTALE, with nothing changed, when it is another. */
int session_table_attach_session(struct session_table *t, const char *agent_id,
                                 const char *expect, void *owner, uint64_t *gen,
                                 char session_id_out[SESSION_ID_LEN + 1], void **displaced);

/*
 * The stream of generation `gen` ended: remove the session only if it is
 * still that generation. Returns true (and the owner reference in *owner)
 * when removed; the caller then takes the route down.
 */
bool session_table_detach(struct session_table *t, const char *agent_id, uint64_t gen,
                          void **owner);

/* A frame arrived on generation gen: move last_heartbeat and last_message, and flight_id when
 * non-empty (truncated to SESSION_FLIGHT_MAX). No-op for a stale gen. */
void session_table_touch(struct session_table *t, const char *agent_id, uint64_t gen,
                         int64_t now_ns, aero_str flight_id);

/*
 * The same for a frame of generation gen: `frame` (NULL for a refused
 * frame) moves flight_id, and intent_id with intent_version, when non-empty.
 * Returns false when gen is no longer the session's (a newer Register or
 * stream took over, or it ended).
 */
bool session_table_touch_frame(struct session_table *t, const char *agent_id, uint64_t gen,
                               int64_t now_ns, const aero_frame *frame);

/* What a session says once in its life (SPEC.md section 9: its frames
 * without wal_id are logged once per session), whatever streams it has. */
enum session_once { SESSION_ONCE_NO_WAL_ID = 1 };

/* True the first time `what` is asked of the session whose current
 * generation is gen (Register starts a new session: asked afresh); false
 * after that, and for a stale gen. */
bool session_table_once(struct session_table *t, const char *agent_id, uint64_t gen,
                        enum session_once what);

/* Any other stream message of generation gen (a command result, evidence,
 * one nobody handles): only last_message moves, since last_heartbeat is
 * the frames' (SPEC.md section 2). No-op for a stale gen. */
void session_table_touch_message(struct session_table *t, const char *agent_id, uint64_t gen,
                                 int64_t now_ns);

/*
 * Remove sessions that have had no stream attached for longer than ttl_ns
 * since their Register; call `expired` for each (outside any lock) so the
 * route can be deleted. Returns how many.
 */
size_t session_table_expire(struct session_table *t, int64_t now_ns, int64_t ttl_ns,
                            void (*expired)(void *arg, const char *agent_id,
                                            const char *session_id),
                            void *arg);

/*
 * Each session may carry one pointer of its owner's (the command table,
 * SPEC.md section 10): NULL until set through session_table_visit, handed
 * to `release` (outside any lock) when the session ends or a Register
 * replaces it. Set once, before the table is shared.
 */
void session_table_set_ext_release(struct session_table *t, void (*release)(void *ext));

/* What session_table_visit shows, under the session's lock. */
struct session_visit {
    const char *session_id;
    uint64_t gen;
    void *owner;   /* the attached stream (never dereferenced here), or NULL */
    bool attached;
    void **ext;    /* the session's pointer: fn may set it (the session owns it) */
};

/* Run fn on the agent's session under its shard lock (fn must not block or
 * call the table). Returns 0, or -ENOENT when the agent has no session. */
int session_table_visit(struct session_table *t, const char *agent_id,
                        void (*fn)(void *arg, struct session_visit *v), void *arg);

/* Consistent copy of one session (0) or -ENOENT: session_info_release it. */
int session_table_get(struct session_table *t, const char *agent_id, struct session_info *out);

/* Snapshot of all sessions (session_infos_free it), returns count. */
size_t session_table_list(struct session_table *t, struct session_info **out);
size_t session_table_count(struct session_table *t);

#endif
