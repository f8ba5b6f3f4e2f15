/*
 * relay_control.c - the control-plane RPCs. Each answer is built from
 * session_table copies taken under the table's shard locks, so a status is
 * never torn by a concurrent Register or disconnect. Any worker thread.
 */
#include "relay_control.h"

#include "aeroarc/relay/v1/relay.pb-c.h"
#include "call_auth.h"
#include "session_table.h"

#include <stdlib.h>
#include <string.h>

static void fill_status(Aeroarc__Relay__V1__DroneStatus *st, struct session_info *in,
                        const char *relay_id)
{
    aeroarc__relay__v1__drone_status__init(st);
    st->drone_id = in->agent_id;
    st->session_id = in->session_id;
    st->agent_id = in->agent_id;
    st->relay_id = (char *)relay_id;
    st->connected_at_unix_ns = in->connected_at_unix_ns;
    st->last_heartbeat_unix_ns = in->last_heartbeat_unix_ns;
    st->flight_id = in->flight_id;
    st->intent_id = in->intent_id;
    st->intent_version = in->intent_version;
    if (in->caps != NULL) {
        st->n_execution_capabilities = in->caps->n;
        st->execution_capabilities = in->caps->v;
    }
}

/* True when the call was refused (and finished): no admin key, or stopping. */
static bool refuse(struct relay *relay, struct rpc_call *call)
{
    if (!call_auth_admin(relay->auth, call))
        return true;
    if (!atomic_load(&relay->shutting_down))
        return false;
    rpc_call_finish(call, RPC_UNAVAILABLE, "relay shutting down", NULL, 0);
    return true;
}

static void list_active_drones(struct rpc_call *call, const ProtobufCMessage *req, void *service,
                               struct worker_ctx *w)
{
    (void)req;
    (void)w;
    struct relay *relay = service;
    if (refuse(relay, call))
        return;
    struct session_info *infos = NULL;
    size_t n = session_table_list(relay->sessions, &infos);
    Aeroarc__Relay__V1__DroneStatus *st = calloc(n ? n : 1, sizeof(*st));
    Aeroarc__Relay__V1__DroneStatus **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    if (!st || !ptrs) {
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "relay out of memory", NULL, 0);
    } else {
        for (size_t i = 0; i < n; i++) {
            fill_status(&st[i], &infos[i], relay->settings->relay_id);
            ptrs[i] = &st[i];
        }
        Aeroarc__Relay__V1__ListActiveDronesResponse resp =
            AEROARC__RELAY__V1__LIST_ACTIVE_DRONES_RESPONSE__INIT;
        resp.n_drones = n;
        resp.drones = ptrs;
        rpc_unary_reply(call, &resp.base);
    }
    free(st);
    free(ptrs);
    session_infos_free(infos, n);
}

static void get_drone_status(struct rpc_call *call, const ProtobufCMessage *msg, void *service,
                             struct worker_ctx *w)
{
    (void)w;
    struct relay *relay = service;
    const Aeroarc__Relay__V1__GetDroneStatusRequest *req =
        (const Aeroarc__Relay__V1__GetDroneStatusRequest *)msg;
    if (refuse(relay, call))
        return;
    struct session_info info;
    if (req->drone_id[0] == '\0') {
        rpc_call_finish(call, RPC_INVALID_ARGUMENT, "drone_id is required", NULL, 0);
    } else if (session_table_get(relay->sessions, req->drone_id, &info) < 0) {
        rpc_call_finish(call, RPC_NOT_FOUND, "no active session for this drone", NULL, 0);
    } else {
        Aeroarc__Relay__V1__DroneStatus st;
        fill_status(&st, &info, relay->settings->relay_id);
        Aeroarc__Relay__V1__GetDroneStatusResponse resp =
            AEROARC__RELAY__V1__GET_DRONE_STATUS_RESPONSE__INIT;
        resp.drone = &st;
        rpc_unary_reply(call, &resp.base);
        session_info_release(&info);
    }
}

int relay_control_add(struct relay *relay, struct rpc_server *server)
{
    if (rpc_server_add_unary(server, "/aeroarc.relay.v1.RelayControl/ListActiveDrones",
                             &aeroarc__relay__v1__list_active_drones_request__descriptor,
                             list_active_drones, relay) < 0 ||
        rpc_server_add_unary(server, "/aeroarc.relay.v1.RelayControl/GetDroneStatus",
                             &aeroarc__relay__v1__get_drone_status_request__descriptor,
                             get_drone_status, relay) < 0)
        return -1;
    return 0;
}
