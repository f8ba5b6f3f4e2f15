/*
 * call_auth.h - the bearer check at the door of each RPC: reads the call's
 * `authorization` metadata, asks auth.c, and ends a refused call with
 * UNAUTHENTICATED or PERMISSION_DENIED. Every refusal is counted
 * (aero_relay_auth_failures_total{reason}) and logged at most once a
 * second, naming the agent id, never the key. With auth off (no keys)
 * every call passes. Any worker thread.
 */
#ifndef AERO_CALL_AUTH_H
#define AERO_CALL_AUTH_H

#include "auth.h"
#include "metrics.h"
#include "rpc_call.h"
#include <stdbool.h>

struct call_auth;

/*
 * The door for `keys` (NULL: [auth] mode = none, everything passes; the
 * caller keeps owning keys) with its counters registered in m. Main
 * thread, at start. NULL only when out of memory.
 */
struct call_auth *call_auth_create(const struct auth *keys, struct metrics *m);
void call_auth_destroy(struct call_auth *ca);

/* A reload's new keys (the mode stays what it was): returns the old ones,
 * which no check reads any more once this returns (free them). */
const struct auth *call_auth_swap_keys(struct call_auth *ca, const struct auth *keys);

/* True: go on. False: the call has been finished (refused); do not touch it.
 * agent_id: a valid agent id (it is logged). */
bool call_auth_agent(struct call_auth *ca, struct rpc_call *call, const char *agent_id);
/* A known key, whatever it covers (SPEC.md section 7: a missing or unknown
 * key is UNAUTHENTICATED before anything else is said of the call): for a
 * call refused next for its agent id. False: refused and finished. */
bool call_auth_key(struct call_auth *ca, struct rpc_call *call);
bool call_auth_admin(struct call_auth *ca, struct rpc_call *call);

#endif
