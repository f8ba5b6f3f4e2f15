/*
 * health_service.h - grpc.health.v1.Health/Check for load balancers and
 * Kubernetes gRPC probes: SERVING for "", AgentGateway and RelayControl
 * while the relay runs, NOT_SERVING once it shuts down, NOT_FOUND otherwise.
 */
#ifndef AERO_HEALTH_SERVICE_H
#define AERO_HEALTH_SERVICE_H

#include "relay.h"
#include "rpc_server.h"

int health_service_add(struct relay *relay, struct rpc_server *server);

#endif
