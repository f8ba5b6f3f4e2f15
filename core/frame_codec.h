/*
 * frame_codec.h - the hot-path wire codec: a zero-copy decoder of
 * TelemetryFrame into an aero_frame view, the SPEC.md section 2 limits, and
 * a TelemetryAck encoder. Hand-written (not protobuf-c) so a frame costs no
 * allocation and strings keep their exact bytes and lengths (protobuf-c
 * NUL-terminates and would cut a string at an embedded NUL). Tests check it
 * against the protobuf-c code generated from proto/. Pure, any thread.
 */
#ifndef AERO_FRAME_CODEC_H
#define AERO_FRAME_CODEC_H

#include <aeroarc/plugin.h>
#include <stddef.h>
#include <stdint.h>

/* SPEC.md section 2 limits, counted in bytes as received. */
#define FRAME_MAX_FIELDS 256
#define FRAME_MAX_KEY 128
#define FRAME_MAX_VALUE 4096
#define FRAME_MAX_NAME 128      /* msg_name, flight_id */
#define FRAME_MAX_DIALECT 64
#define FRAME_MAX_RAW 1024

/* What the frame itself said about identity (may differ from the stream's). */
struct frame_wire_ids {
    aero_str agent_id;
    aero_str session_id;
};

enum frame_decode_result {
    FRAME_DECODE_OK = 0,
    FRAME_DECODE_MALFORMED = -1,   /* not a valid TelemetryFrame encoding */
    FRAME_DECODE_TOO_MANY_FIELDS = -2 /* well-formed, more map entries than fields_cap */
};

/*
 * Decode buf[0..len) into `view` (every aero_str points into buf; view->size,
 * agent_id, session_id, received_unix_ns are left for the caller; protobuf
 * is set to buf/len). Map entries go to fields[0..fields_cap); a key seen
 * twice keeps the last value (protobuf map semantics), so view->n_fields
 * counts distinct keys. Unknown fields are skipped as protobuf requires;
 * a wrong wire type for a known field is MALFORMED.
 */
enum frame_decode_result frame_decode(const uint8_t *buf, size_t len, aero_frame *view,
                                      aero_kv *fields, size_t fields_cap,
                                      struct frame_wire_ids *wire);

/*
 * SPEC.md section 2 acceptance: NULL when the frame may go to sinks,
 * otherwise a static reason for a PERMANENT_ERROR ack ("field value over
 * 4096 bytes", "agent_id does not match the stream", ...). `stream_agent`
 * is the stream's agent id; a non-empty wire agent_id must equal it.
 */
const char *frame_validate(const aero_frame *view, const struct frame_wire_ids *wire,
                           aero_str stream_agent);

/* TelemetryAck.Status values (agent.proto). */
enum ack_status {
    ACK_OK = 0,
    ACK_TEMPORARY_ERROR = 1,
    ACK_PERMANENT_ERROR = 2,
    ACK_RETRY_WITH_BACKOFF = 3
};

/* Upper bound of ack_encode's output for these inputs. */
size_t ack_encoded_bound(size_t agent_len, size_t error_len);

/*
 * Encode a TelemetryAck { frame_id = "<agent>:<seq>", seq, status, error }
 * into out (capacity >= ack_encoded_bound). Default values are omitted as
 * proto3 does. `error` may be NULL. Returns the number of bytes written.
 */
size_t ack_encode(uint8_t *out, aero_str agent_id, uint64_t seq, enum ack_status status,
                  const char *error);

#endif
