/*
 * call_auth.c - maps auth.c's verdict on a call's bearer key to the gRPC
 * status SPEC.md section 7 names. The key itself is never copied or logged.
 */
#include "call_auth.h"

static bool admit(enum auth_result r, struct rpc_call *call)
{
    if (r == AUTH_OK)
        return true;
    if (r == AUTH_PERMISSION_DENIED)
        rpc_call_finish(call, RPC_PERMISSION_DENIED, "this key does not cover the call", NULL, 0);
    else
        rpc_call_finish(call, RPC_UNAUTHENTICATED,
                        "missing or unknown key (authorization: Bearer <key>)", NULL, 0);
    return false;
}

bool call_auth_agent(const struct auth *auth, struct rpc_call *call, const char *agent_id)
{
    if (!auth)
        return true;
    size_t len;
    const char *hdr = rpc_call_metadata(call, "authorization", &len);
    return admit(auth_check_agent(auth, hdr, len, agent_id), call);
}

bool call_auth_admin(const struct auth *auth, struct rpc_call *call)
{
    if (!auth)
        return true;
    size_t len;
    const char *hdr = rpc_call_metadata(call, "authorization", &len);
    return admit(auth_check_admin(auth, hdr, len), call);
}
