/*
 * health_service.c - the unary Check of grpc.health.v1. Stateless beyond the
 * relay's shutdown flag; any worker thread.
 */
#include "health_service.h"

#include "grpc/health/v1/health.pb-c.h"

#include <string.h>

static const char *const known_services[] = {
    "",
    "aeroarc.agent.v1.AgentGateway",
    "aeroarc.relay.v1.RelayControl",
};

static void check(struct rpc_call *call, const ProtobufCMessage *msg, void *service,
                  struct worker_ctx *w)
{
    (void)w;
    struct relay *relay = service;
    const Grpc__Health__V1__HealthCheckRequest *req = (const Grpc__Health__V1__HealthCheckRequest *)msg;
    bool known = false;
    for (size_t i = 0; i < sizeof(known_services) / sizeof(known_services[0]); i++)
        if (strcmp(req->service, known_services[i]) == 0)
            known = true;
    if (!known) {
        rpc_call_finish(call, RPC_NOT_FOUND, "unknown service", NULL, 0);
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = atomic_load(&relay->shutting_down)
                      ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    rpc_unary_reply(call, &resp.base);
}

int health_service_add(struct relay *relay, struct rpc_server *server)
{
    return rpc_server_add_unary(server, "/grpc.health.v1.Health/Check",
                                &grpc__health__v1__health_check_request__descriptor, check, relay);
}
