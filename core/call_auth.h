/*
 * call_auth.h - the bearer check at the door of each RPC: reads the call's
 * `authorization` metadata, asks auth.c, and ends a refused call with
 * UNAUTHENTICATED or PERMISSION_DENIED. With auth off (NULL) every call
 * passes. Any worker thread.
 */
#ifndef AERO_CALL_AUTH_H
#define AERO_CALL_AUTH_H

#include "auth.h"
#include "rpc_call.h"
#include <stdbool.h>

/* True: go on. False: the call has been finished (refused); do not touch it. */
bool call_auth_agent(const struct auth *auth, struct rpc_call *call, const char *agent_id);
bool call_auth_admin(const struct auth *auth, struct rpc_call *call);

#endif
