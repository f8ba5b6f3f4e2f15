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

static void check(struct rpc_call *call, void *service)
{
    struct relay *relay = service;
    size_t len;
    const uint8_t *bytes = rpc_call_request(call, &len);
    Grpc__Health__V1__HealthCheckRequest *req =
        grpc__health__v1__health_check_request__unpack(NULL, len, bytes);
    if (!req) {
        rpc_call_finish(call, RPC_INVALID_ARGUMENT, "malformed HealthCheckRequest", NULL, 0);
        return;
    }
    int known = 0;
    for (size_t i = 0; i < sizeof(known_services) / sizeof(known_services[0]); i++)
        if (strcmp(req->service, known_services[i]) == 0)
            known = 1;
    grpc__health__v1__health_check_request__free_unpacked(req, NULL);
    if (!known) {
        rpc_call_finish(call, RPC_NOT_FOUND, "unknown service", NULL, 0);
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = atomic_load(&relay->shutting_down)
                      ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    uint8_t out[16];
    size_t n = grpc__health__v1__health_check_response__pack(&resp, out);
    rpc_call_finish(call, RPC_OK, NULL, out, n);
}

int health_service_add(struct relay *relay, struct rpc_server *server)
{
    return rpc_server_add_method(server, "/grpc.health.v1.Health/Check", RPC_METHOD_UNARY, check,
                                 relay);
}
