/*
 * call_auth.c - maps auth.c's verdict on a call's bearer key to the gRPC
 * status SPEC.md section 7 names, counts refusals by reason and logs them,
 * rate-limited. The key itself is never copied, logged or counted.
 */
#include "call_auth.h"

#include "log.h"
#include "mono_clock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define LOG_EVERY_NS INT64_C(1000000000)

struct call_auth {
    /* The keys (NULL: mode none), swapped by a reload (call_auth_swap_keys)
     * under the write lock; each check holds the read lock. */
    pthread_rwlock_t lock;
    const struct auth *keys;
    aero_metric *refused[AUTH_REFUSALS];
    _Atomic int64_t last_log_ns; /* mono_ns of the last refusal logged */
    _Atomic uint64_t unlogged;   /* refusals since that line */
};

struct call_auth *call_auth_create(const struct auth *keys, struct metrics *m)
{
    struct call_auth *ca = calloc(1, sizeof(*ca));
    if (!ca)
        return NULL;
    ca->keys = keys;
    pthread_rwlock_init(&ca->lock, NULL);
    atomic_init(&ca->last_log_ns, mono_ns() - 2 * LOG_EVERY_NS);
    atomic_init(&ca->unlogged, 0);
    for (int i = 0; i < AUTH_REFUSALS; i++) {
        char label[40];
        snprintf(label, sizeof(label), "reason=\"%s\"", auth_refusal_name((enum auth_refusal)i));
        ca->refused[i] = metrics_register(
            m, AERO_METRIC_COUNTER, "aero_relay_auth_failures_total",
            "Calls refused by [auth] mode = bearer, by reason: missing, malformed or "
            "unknown_key (UNAUTHENTICATED); not_covered or not_admin (PERMISSION_DENIED).",
            label);
    }
    return ca;
}

void call_auth_destroy(struct call_auth *ca)
{
    if (!ca)
        return;
    pthread_rwlock_destroy(&ca->lock);
    free(ca);
}

const struct auth *call_auth_swap_keys(struct call_auth *ca, const struct auth *keys)
{
    pthread_rwlock_wrlock(&ca->lock);
    const struct auth *old = ca->keys;
    ca->keys = keys;
    pthread_rwlock_unlock(&ca->lock);
    return old; /* no check reads it any more */
}

/*
 * Count the refusal; log it unless a line went out less than a second ago
 * (the next line says how many went unlogged), so an agent retrying a
 * wrong key forever shows in the log without flooding it.
 */
static void note_refusal(struct call_auth *ca, enum auth_refusal why, const char *agent_id)
{
    metrics_inc(ca->refused[why]);
    atomic_fetch_add(&ca->unlogged, 1);
    int64_t now = mono_ns(), last = atomic_load(&ca->last_log_ns);
    if (now - last < LOG_EVERY_NS ||
        !atomic_compare_exchange_strong(&ca->last_log_ns, &last, now))
        return;
    uint64_t n = atomic_exchange(&ca->unlogged, 0);
    if (agent_id)
        log_warn("auth: refused a call for agent %s: %s (%llu refused since the last such "
                 "line)",
                 agent_id, auth_refusal_name(why), (unsigned long long)n);
    else
        log_warn("auth: refused a RelayControl call: %s (%llu refused since the last such "
                 "line)",
                 auth_refusal_name(why), (unsigned long long)n);
}

/* The call's key checked for agent_id (NULL: RelayControl's admin);
 * key_only: a known key passes, whatever it covers. */
static bool admit(struct call_auth *ca, struct rpc_call *call, const char *agent_id,
                  bool key_only)
{
    size_t len;
    const char *hdr = rpc_call_metadata(call, "authorization", &len);
    enum auth_refusal why;
    pthread_rwlock_rdlock(&ca->lock);
    enum auth_result r = ca->keys ? auth_check(ca->keys, hdr, hdr ? len : 0, agent_id, &why)
                                  : AUTH_OK;
    pthread_rwlock_unlock(&ca->lock);
    if (r == AUTH_OK || (key_only && r == AUTH_PERMISSION_DENIED))
        return true;
    note_refusal(ca, why, agent_id);
    if (r == AUTH_PERMISSION_DENIED)
        rpc_call_finish(call, RPC_PERMISSION_DENIED, "this key does not cover the call", NULL, 0);
    else
        rpc_call_finish(call, RPC_UNAUTHENTICATED,
                        "missing or unknown key (authorization: Bearer <key>)", NULL, 0);
    return false;
}

bool call_auth_agent(struct call_auth *ca, struct rpc_call *call, const char *agent_id)
{
    return admit(ca, call, agent_id ? agent_id : "", false);
}

bool call_auth_key(struct call_auth *ca, struct rpc_call *call)
{
    return admit(ca, call, "", true); /* what the key covers is asked later */
}

bool call_auth_admin(struct call_auth *ca, struct rpc_call *call)
{
    return admit(ca, call, NULL, false);
}
