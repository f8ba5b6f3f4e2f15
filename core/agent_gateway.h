/*
 * agent_gateway.h - aeroarc.agent.v1.AgentGateway: Register and
 * TelemetryStream (SPEC.md section 2). Owns the open streams; a stream's end
 * removes its session and route only if the session is still its own.
 */
#ifndef AERO_AGENT_GATEWAY_H
#define AERO_AGENT_GATEWAY_H

#include "relay.h"
#include "rpc_server.h"
#include <stddef.h>
#include <stdint.h>

struct gateway;

struct gateway *agent_gateway_create(struct relay *relay);
int agent_gateway_add_methods(struct gateway *gw, struct rpc_server *server);

/* Periodic work from the main thread: expire sessions whose stream never
 * opened within [route] ttl_s. */
void agent_gateway_tick(struct gateway *gw, int64_t now_ns);

/* Every ~100 ms from the main thread: refuse generation-2 frames held
 * longer than gen2_hold_s. */
void agent_gateway_tick_held(struct gateway *gw);

/* Shutdown, step 1: refuse new calls, make every open stream send the acks
 * of frames already read and end with UNAVAILABLE. Any thread. */
void agent_gateway_begin_shutdown(struct gateway *gw);
size_t agent_gateway_open_streams(struct gateway *gw);

/* After the gRPC server is gone: nothing references the gateway any more. */
void agent_gateway_destroy(struct gateway *gw);

/* Table owners are streams: session_table_destroy hands them back here. */
void agent_gateway_drop_owner(void *owner);

/* Wall-clock now in ns (CLOCK_REALTIME). */
int64_t agent_gateway_now_ns(void);

#endif
