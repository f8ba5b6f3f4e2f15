/* relay_client: a small blocking gRPC client for aeroarc-relay, built on the
 * gRPC C core and protobuf-c. Used by aeroarc-client, aeroarc-bench and the
 * integration tests. Every call takes a timeout; nothing here starts threads
 * or keeps global state (grpc_init/grpc_shutdown are refcounted per channel).
 *
 * Conventions
 *   - Functions return 0 on success or a negative errno. When a struct
 *     rc_status is passed it is always filled: the gRPC status of the call,
 *     or a client-side code (DEADLINE_EXCEEDED, INTERNAL, ...) with a message
 *     starting "client:" when the failure happened here.
 *   - -EIO means "the RPC ended with a non-OK status": read st->code.
 *   - timeout_ms <= 0 means no deadline.
 *   - Strings passed in are copied; nothing passed in needs to outlive the
 *     call that takes it.
 */
#ifndef AEROARC_RELAY_CLIENT_H
#define AEROARC_RELAY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aeroarc/agent/v1/agent.pb-c.h"
#include "aeroarc/relay/v1/relay.pb-c.h"

struct grpc_channel;

/* Method paths (SPEC section 1). */
#define RC_METHOD_REGISTER "/aeroarc.agent.v1.AgentGateway/Register"
#define RC_METHOD_TELEMETRY_STREAM "/aeroarc.agent.v1.AgentGateway/TelemetryStream"
#define RC_METHOD_LIST_ACTIVE_DRONES "/aeroarc.relay.v1.RelayControl/ListActiveDrones"
#define RC_METHOD_GET_DRONE_STATUS "/aeroarc.relay.v1.RelayControl/GetDroneStatus"
#define RC_METHOD_HEALTH_CHECK "/grpc.health.v1.Health/Check"
#define RC_AGENT_ID_HEADER "aero-arc-agent-id"
/* Generation 2 (SPEC section 9): the stream's session, from Register. */
#define RC_SESSION_ID_HEADER "aero-arc-session-id"

/* TelemetryAck.Status values (wire numbers). */
enum rc_ack_status {
	RC_ACK_OK = 0,
	RC_ACK_TEMPORARY_ERROR = 1,
	RC_ACK_PERMANENT_ERROR = 2,
	RC_ACK_RETRY_WITH_BACKOFF = 3,
};

/* grpc.health.v1 HealthCheckResponse.ServingStatus values. */
enum rc_serving_status {
	RC_HEALTH_UNKNOWN = 0,
	RC_HEALTH_SERVING = 1,
	RC_HEALTH_NOT_SERVING = 2,
	RC_HEALTH_SERVICE_UNKNOWN = 3,
};

/* Outcome of an RPC. code is a grpc_status_code (0 = OK); message is the
 * status details, truncated to fit. */
struct rc_status {
	int code;
	char message[512];
};

/* One request metadata entry. key must be lower case. */
struct rc_md {
	const char *key;
	const char *value;
};

/* How to connect. Zero-initialise and set what you need.
 *   root_cert_file: PEM of the CAs to trust; set => TLS.
 *   client_cert_file / client_key_file: PEM client certificate (mTLS);
 *     only with root_cert_file.
 *   server_name_override: the name to verify the server certificate
 *     against (tests connecting to 127.0.0.1 with a "localhost" cert).
 *   bearer_token: adds "authorization: Bearer <token>" to every call.
 *   max_recv_bytes: largest message accepted; 0 = 4 MiB.
 *   keepalive_time_ms: send an HTTP/2 PING this often, with or without
 *     calls (as agents do); 0 = gRPC's default (none). */
struct rc_opts {
	const char *root_cert_file;
	const char *client_cert_file;
	const char *client_key_file;
	const char *server_name_override;
	const char *bearer_token;
	int max_recv_bytes;
	int keepalive_time_ms;
	/* > 0: each stream's receive window, in bytes, and no BDP probing to
	 * grow it: a test's agent that stops reading blocks the relay's
	 * writes after this much. */
	int recv_window_bytes;
};

/* A channel is one HTTP/2 connection of its own (never shared with another
 * rc_channel), opened lazily on the first call. Thread-safe: any number of
 * threads may run calls and streams on one channel. */
struct rc_channel;

/* NAME rc_connect / rc_connect_opts
 * Create a channel to target ("host:port", or any gRPC target URI).
 * RETURN the channel, or NULL (st says why: unreadable cert file, bad
 * options). Connection errors surface later, as UNAVAILABLE on calls. */
struct rc_channel *rc_connect(const char *target);
struct rc_channel *rc_connect_opts(const char *target, const struct rc_opts *opts,
				   struct rc_status *st);

/* Close the channel. Every stream opened on it must be freed first. */
void rc_close(struct rc_channel *ch);

/* The underlying grpc_channel, for callers driving calls themselves
 * (aeroarc-bench). Owned by ch. */
struct grpc_channel *rc_channel_grpc(struct rc_channel *ch);

/* "Bearer <token>" when a token was configured, else NULL. Owned by ch. */
const char *rc_channel_authorization(const struct rc_channel *ch);

/* "OK", "INVALID_ARGUMENT", ... for a grpc_status_code; "CODE_OUT_OF_RANGE"
 * for anything else. Static strings. */
const char *rc_status_code_name(int code);

/* "STATUS_OK", "STATUS_TEMPORARY_ERROR", ...; "STATUS_UNKNOWN" for values
 * the proto does not define. Static strings. */
const char *rc_ack_status_name(int status);

/* "SERVING", "NOT_SERVING", ...; "UNKNOWN" otherwise. Static strings. */
const char *rc_serving_status_name(int status);

/* NAME rc_unary
 * Generic unary call: send req (len bytes, may be 0) to method with the
 * given extra metadata (md may be NULL when n_md is 0) and the channel's
 * bearer token. On status OK, *resp (malloc'd, free() it; NULL when the
 * response is empty) and *resp_len hold the response bytes.
 * RETURN 0 on status OK, -EIO on another status, -ENOMEM, -EINVAL. */
int rc_unary(struct rc_channel *ch, const char *method, const uint8_t *req, size_t len,
	     const struct rc_md *md, size_t n_md, uint8_t **resp, size_t *resp_len,
	     struct rc_status *st, int timeout_ms);

/* Register's answer. session_id is NUL-terminated, truncated if huge. */
struct rc_register_result {
	char agent_id[256];
	char session_id[256];
	int64_t max_inflight;
	bool durable_flight_completion; /* RegisterResponse field 5 */
};

/* NAME rc_register
 * AgentGateway.Register with the given fields (NULL = empty string); also
 * sends the aero-arc-agent-id header (omitted when agent_id is NULL or
 * empty). out may be NULL.
 * RETURN 0, -EIO (non-OK status), -EBADMSG (undecodable response). */
int rc_register(struct rc_channel *ch, const char *agent_id, const char *version,
		const char *platform, struct rc_register_result *out, struct rc_status *st,
		int timeout_ms);

/* NAME rc_register_caps
 * rc_register with RegisterRequest.execution_capabilities (field 4): the
 * n_caps strings of caps, sent as given (NULL = empty string).
 * RETURN as rc_register. */
int rc_register_caps(struct rc_channel *ch, const char *agent_id, const char *version,
		     const char *platform, const char *const *caps, size_t n_caps,
		     struct rc_register_result *out, struct rc_status *st, int timeout_ms);

/* NAME rc_health_check
 * grpc.health.v1.Health/Check for service ("" = the server as a whole).
 * *serving_status gets an enum rc_serving_status value.
 * RETURN 0, -EIO (non-OK status, e.g. NOT_FOUND for an unknown service),
 * -EBADMSG. */
int rc_health_check(struct rc_channel *ch, const char *service, int *serving_status,
		    struct rc_status *st, int timeout_ms);

/* A receive limit fit for ListActiveDrones: a DroneStatus is at most about
 * 2.7 KB (two 128-byte ids, 32 capabilities of 64 bytes), so this holds
 * the list of 100,000 sessions (max_sessions' default) with room to spare;
 * gRPC's default of 4 MiB holds some 13,000 to 40,000. */
#define RC_LIST_MAX_RECV (1 << 30)

/* NAME rc_list_active_drones / rc_get_drone_status
 * RelayControl calls. A list longer than the channel's max_recv_bytes
 * fails RESOURCE_EXHAUSTED: open the channel with RC_LIST_MAX_RECV. On success *out is a decoded message the caller frees
 * with aeroarc__relay__v1__list_active_drones_response__free_unpacked(out,
 * NULL) (resp. ..._get_drone_status_response__free_unpacked).
 * RETURN 0, -EIO (non-OK status), -EBADMSG. */
int rc_list_active_drones(struct rc_channel *ch,
			  Aeroarc__Relay__V1__ListActiveDronesResponse **out,
			  struct rc_status *st, int timeout_ms);
int rc_get_drone_status(struct rc_channel *ch, const char *drone_id,
			Aeroarc__Relay__V1__GetDroneStatusResponse **out, struct rc_status *st,
			int timeout_ms);

/* One entry of TelemetryFrame.fields. */
struct rc_field {
	const char *key;
	const char *value;
};

/* Every TelemetryFrame field. NULL strings are sent as empty; zero values
 * are not sent at all (proto3). Nothing is validated here, so tests can
 * build frames the relay must reject. */
struct rc_frame {
	const char *session_id;
	const char *agent_id;
	uint64_t seq;
	int64_t sent_at_unix_ns;
	double device_timestamp_sec;
	const uint8_t *raw_mavlink;
	size_t raw_mavlink_len;
	const char *dialect;
	uint32_t msg_id;
	const char *msg_name;
	const struct rc_field *fields;
	size_t n_fields;
	const char *flight_id;
	/* Generation 2 fields (SPEC section 9); zero/NULL: not sent, so a seed
	 * frame encodes exactly as before they existed. */
	const char *intent_id;   /* 12 */
	uint32_t intent_version; /* 13 */
	const char *wal_id;      /* 14 */
};

/* NAME rc_frame_encode
 * Serialise f as a TelemetryFrame into a malloc'd buffer (*out, free() it).
 * RETURN 0 or -ENOMEM. */
int rc_frame_encode(const struct rc_frame *f, uint8_t **out, size_t *len);

/* One TelemetryAck. frame_id and error point into the stream and stay valid
 * until the next rc_stream_recv_ack or rc_stream_free on that stream. */
struct rc_ack {
	uint64_t seq;
	int status; /* enum rc_ack_status, or whatever number the server sent */
	const char *frame_id;
	const char *error;
};

/* A TelemetryStream call with its own completion queue.
 *
 * Threads: at most one thread sends (rc_stream_send*, rc_stream_close_send)
 * and at most one thread receives (rc_stream_recv_ack) at a time; they may
 * be the same thread or two. rc_stream_cancel may be called from anywhere.
 * rc_stream_finish and rc_stream_free only once both are done.
 *
 * Pipelining: a send returns as soon as the message is handed to gRPC; it
 * waits only for the previous send to complete (gRPC allows one message
 * send in flight per call). So one thread can keep W frames unacked:
 * send W, then loop { recv_ack; send }. */
struct rc_stream;

/* NAME rc_stream_open
 * Open TelemetryStream on ch. agent_id_header: value of aero-arc-agent-id;
 * NULL omits the header, "" sends it empty. md/n_md: extra metadata.
 * Never blocks: connection failure shows up as a failed send, an
 * end-of-stream from rc_stream_recv_ack and a status from rc_stream_finish.
 * RETURN the stream, or NULL (st says why). */
struct rc_stream *rc_stream_open(struct rc_channel *ch, const char *agent_id_header,
				 const struct rc_md *md, size_t n_md, struct rc_status *st);

/* NAME rc_stream_send
 * Send len raw bytes as one message (need not be a valid TelemetryFrame).
 * RETURN 0; -ETIMEDOUT if the previous send did not complete within
 * timeout_ms (nothing sent; retry or cancel); -EPIPE if the stream can no
 * longer send (server ended it or connection lost: see rc_stream_finish);
 * -ENOMEM. */
int rc_stream_send(struct rc_stream *s, const uint8_t *bytes, size_t len, int timeout_ms);

/* rc_stream_send of rc_frame_encode(f). Same returns. */
int rc_stream_send_frame(struct rc_stream *s, const struct rc_frame *f, int timeout_ms);

/* NAME rc_stream_recv_ack
 * Wait up to timeout_ms for the next ack.
 * RETURN 1 with *out filled; 0 at end of stream (the server finished it:
 * call rc_stream_finish for the status); -ETIMEDOUT (nothing lost: the
 * receive stays posted and the next call picks it up); -EBADMSG when the
 * server sent something that is not a TelemetryAck. */
int rc_stream_recv_ack(struct rc_stream *s, struct rc_ack *out, int timeout_ms);

/* NAME rc_stream_close_send
 * Half-close: tell the server no more frames come (it then ends the stream
 * with OK once it has acked everything). Waits for the last send first.
 * RETURN 0, -ETIMEDOUT, -EPIPE. Idempotent. */
int rc_stream_close_send(struct rc_stream *s, int timeout_ms);

/* NAME rc_stream_finish
 * End the call and get its status: half-closes if not done yet, discards
 * acks not yet read until end of stream, then waits for the status. If
 * timeout_ms passes first, the call is cancelled (st says CANCELLED).
 * RETURN 0 when the server's status was received (st->code says which),
 * -ETIMEDOUT when the call had to be cancelled. */
int rc_stream_finish(struct rc_stream *s, struct rc_status *st, int timeout_ms);

/* Cancel the call (client side RST_STREAM). Safe from any thread, any time
 * before rc_stream_free. Pending and later operations complete at once. */
void rc_stream_cancel(struct rc_stream *s);

/* Free the stream; cancels it first if it has not finished. Never blocks
 * for long: after a cancel gRPC completes every pending operation. */
void rc_stream_free(struct rc_stream *s);

/* ---- Generation 2: the multiplexed stream (SPEC section 9) -------------
 *
 * Same method path; the agent sends AgentStreamMessage envelopes and the
 * relay answers RelayStreamMessage envelopes. An rc_stream opened with
 * rc_stream_open_gen2 is an ordinary rc_stream (send, close_send, finish,
 * cancel, free work as above); read it with rc_stream_recv_gen2 rather than
 * rc_stream_recv_ack. Nothing here validates, so tests can build what the
 * relay must refuse. */

/* AgentStreamMessage.payload field numbers. */
enum rc_agent_arm {
	RC_AGENT_TELEMETRY_FRAME = 1,
	RC_AGENT_OPERATION_CONTEXT_COMMAND_ACK = 2,
	RC_AGENT_AIRCRAFT_COMMAND_RESULT = 3,
	RC_AGENT_MISSION_DEPLOYMENT_RESULT = 4,
	RC_AGENT_COMMAND_EVIDENCE = 5,
	RC_AGENT_FLIGHT_COMPLETION_EVIDENCE = 6,
};

/* RelayStreamMessage.payload field numbers; RC_RELAY_NONE: no arm set (an
 * empty message, or only field numbers this client does not know). */
enum rc_relay_arm {
	RC_RELAY_NONE = 0,
	RC_RELAY_TELEMETRY_ACK = 1,
	RC_RELAY_SET_OPERATION_CONTEXT = 2,
	RC_RELAY_CLEAR_OPERATION_CONTEXT = 3,
	RC_RELAY_AIRCRAFT_COMMAND = 4,
	RC_RELAY_DEPLOY_MISSION = 5,
	RC_RELAY_DURABLE_COMMAND = 6,
	RC_RELAY_FLIGHT_COMPLETION_RECEIPT = 7,
};

/* "telemetry_ack", "set_operation_context", ...; "none" for RC_RELAY_NONE,
 * "unknown" otherwise. Static strings. */
const char *rc_relay_arm_name(int arm);

/* How rc_stream_open_gen2_hdr sends aero-arc-session-id. */
enum rc_session_header {
	RC_SESSION_HEADER_ONCE = 0, /* one entry with the value given */
	RC_SESSION_HEADER_OMIT,     /* no entry at all (first message decides) */
	RC_SESSION_HEADER_TWICE,    /* two entries, both with the value given */
};

/* NAME rc_stream_open_gen2
 * Open TelemetryStream as a generation-2 agent: aero-arc-agent-id as in
 * rc_stream_open (NULL omits it), then "aero-arc-session-id: session_id"
 * (NULL omits it: the relay then decides from the first message). The value
 * is sent verbatim, so a blank or wrong one can be sent on purpose.
 * RETURN the stream, or NULL (st says why). */
struct rc_stream *rc_stream_open_gen2(struct rc_channel *ch, const char *agent_id_header,
				      const char *session_id, const struct rc_md *md,
				      size_t n_md, struct rc_status *st);

/* rc_stream_open_gen2 with the session header sent as mode says (session_id
 * is ignored with RC_SESSION_HEADER_OMIT; NULL counts as ""). */
struct rc_stream *rc_stream_open_gen2_hdr(struct rc_channel *ch, const char *agent_id_header,
					  const char *session_id, enum rc_session_header mode,
					  const struct rc_md *md, size_t n_md,
					  struct rc_status *st);

/* NAME rc_envelope_wrap
 * AgentStreamMessage bytes whose only field is number arm, wire type 2
 * (length-delimited), holding payload (len bytes; may be 0). arm may be any
 * field number 1..2^29-1 (7 and up are unknown to the relay). *out is
 * malloc'd (free() it). RETURN 0, -EINVAL (arm out of range), -ENOMEM. */
int rc_envelope_wrap(int arm, const uint8_t *payload, size_t len, uint8_t **out,
		     size_t *out_len);

/* AgentStreamMessage{telemetry_frame = f}: rc_frame_encode wrapped in arm 1.
 * RETURN 0 or -ENOMEM. */
int rc_envelope_encode_frame(const struct rc_frame *f, uint8_t **out, size_t *len);

/* Send AgentStreamMessage{telemetry_frame = f}. Returns as rc_stream_send. */
int rc_stream_send_gen2_frame(struct rc_stream *s, const struct rc_frame *f, int timeout_ms);

/* Send AgentStreamMessage with payload bytes as arm (rc_envelope_wrap).
 * Returns as rc_stream_send, or -EINVAL for arm out of range. */
int rc_stream_send_gen2_arm(struct rc_stream *s, int arm, const uint8_t *payload, size_t len,
			    int timeout_ms);

/* Send AgentStreamMessage with msg (any protobuf-c message, e.g. an
 * Aeroarc__Agent__V1__AircraftCommandResult) packed as arm. */
int rc_stream_send_gen2_msg(struct rc_stream *s, int arm, const ProtobufCMessage *msg,
			    int timeout_ms);

/* One RelayStreamMessage as received. Everything points into the stream and
 * stays valid until the next rc_stream_recv_gen2 / rc_stream_recv_ack or
 * rc_stream_free on it. */
struct rc_relay_msg {
	int arm;          /* enum rc_relay_arm (payload_case), RC_RELAY_NONE when unset */
	struct rc_ack ack; /* filled when arm == RC_RELAY_TELEMETRY_ACK (frame_id
			    * is "" from a conforming relay); otherwise seq 0,
			    * status 0, frame_id and error "" */
	const Aeroarc__Agent__V1__RelayStreamMessage *msg; /* decoded; NULL on -EBADMSG */
	const uint8_t *raw; /* the message's bytes exactly as received */
	size_t raw_len;
};

/* NAME rc_stream_recv_gen2
 * Wait up to timeout_ms for the next message and decode it as a
 * RelayStreamMessage. A receive-side call: the threading rules of
 * rc_stream_recv_ack apply (one or the other may read each message).
 * RETURN 1 with *out filled; 0 at end of stream; -ETIMEDOUT (nothing lost);
 * -EBADMSG when it does not decode as a RelayStreamMessage (out->raw and
 * raw_len still hold the bytes, e.g. a seed TelemetryAck). */
int rc_stream_recv_gen2(struct rc_stream *s, struct rc_relay_msg *out, int timeout_ms);

/* NAME rc_stream_open_method
 * Open any streaming method (a server-streaming one such as
 * RelayControl/ExecuteCommand: rc_stream_send its one request, then
 * rc_stream_close_send) with a deadline of timeout_ms (<= 0: none).
 * RETURN the stream, or NULL (st says why). */
struct rc_stream *rc_stream_open_method(struct rc_channel *ch, const char *method,
					int timeout_ms, struct rc_status *st);

/* NAME rc_stream_recv_raw
 * The next message's bytes, valid until the next receive on s.
 * RETURN 1; 0 at end of stream; -ETIMEDOUT. */
int rc_stream_recv_raw(struct rc_stream *s, const uint8_t **msg, size_t *len, int timeout_ms);

/* NAME rc_uuid_v4
 * A random (version 4) UUID, lower case 8-4-4-4-12, into out (37 bytes with
 * the NUL): a wal_id for one run of an agent. RETURN 0 or -errno. */
int rc_uuid_v4(char out[37]);

#endif /* AEROARC_RELAY_CLIENT_H */
