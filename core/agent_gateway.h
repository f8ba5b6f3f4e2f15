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
 * opened within [route] ttl_s; `lag_ns` (rpc_server_lag_ns) is how far
 * behind its queue the relay may be, so streams still queued count. */
void agent_gateway_tick(struct gateway *gw, int64_t now_ns, int64_t lag_ns);

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

struct command_table;
struct rpc_stream;

/* Where a command for an agent can go (SPEC.md section 10). */
enum gateway_target {
    GATEWAY_TARGET_OK,
    GATEWAY_NO_SESSION,
    GATEWAY_NO_STREAM,  /* registered, no stream open */
    GATEWAY_SEED,       /* the stream has no downlink */
    GATEWAY_UNDECIDED,  /* its generation is not known yet */
    GATEWAY_NO_MEMORY
};

/*
 * The agent's current generation-2 stream and its session's command table
 * (made on first use; the stream routes its results there). With
 * GATEWAY_TARGET_OK the caller holds a reference to each: rpc_stream_unref
 * and command_table_unref them. `session_id` (SESSION_ID_LEN + 1 bytes, or
 * NULL) gets the session's id whenever it has one. Any thread.
 */
enum gateway_target gateway_command_target(struct gateway *gw, const char *agent_id,
                                           struct rpc_stream **rs, struct command_table **table,
                                           char *session_id);

/* The status a command answers when its target is not OK (SPEC.md 10, 12.7,
 * 14.2 agree on all but two): a missing session is NOT_FOUND with the
 * caller's text, a session without a stream no_stream "agent stream is not
 * connected"; a seed stream FAILED_PRECONDITION, an undecided one
 * UNAVAILABLE. RPC_OK for GATEWAY_TARGET_OK. */
enum rpc_code gateway_target_status(enum gateway_target g, const char *no_session,
                                    enum rpc_code no_stream, const char **text);

/* Wall-clock now in ns (CLOCK_REALTIME). */
int64_t agent_gateway_now_ns(void);

#endif
