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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* SPEC.md section 2 limits, counted in bytes as received. */
#define FRAME_MAX_FIELDS 256
#define FRAME_MAX_KEY 128
#define FRAME_MAX_VALUE 4096
#define FRAME_MAX_NAME 128      /* msg_name, flight_id */
#define FRAME_MAX_DIALECT 64
#define FRAME_MAX_RAW_DEFAULT 16384 /* [relay] max_raw_bytes */

/* What the frame itself said about identity (may differ from the stream's),
 * and its wal_id as sent (frame_wal_id_canonical makes it the envelope's). */
struct frame_wire_ids {
    aero_str agent_id;
    aero_str session_id;
    aero_str wal_id;
    /* A known field came with another wire type: skipped as an unknown
     * field, as Go's protobuf reads it (SPEC.md section 9 rule 2 wants the
     * right wire types to take a first message for generation 2). */
    bool wrong_wire;
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
 * counts distinct keys. Unknown fields are skipped as protobuf requires,
 * and so is a known field with another wire type (0, 1, 2 or 5), as Go's
 * protobuf reads it (wire->wrong_wire says so); groups are MALFORMED.
 */
enum frame_decode_result frame_decode(const uint8_t *buf, size_t len, aero_frame *view,
                                      aero_kv *fields, size_t fields_cap,
                                      struct frame_wire_ids *wire);
/*
 * frame_decode, also telling in *probes how many stored keys the map
 * entries were compared with: the map's work, which stays within a small
 * constant per entry whatever the keys (a test hook; probes may be NULL).
 */
enum frame_decode_result frame_decode_probed(const uint8_t *buf, size_t len, aero_frame *view,
                                             aero_kv *fields, size_t fields_cap,
                                             struct frame_wire_ids *wire, size_t *probes);

/* The limits the operator sets ([relay] max_raw_bytes); the others are
 * SPEC.md's and fixed. Made once at start, read by every worker. */
struct frame_limits {
    size_t max_raw;        /* raw_mavlink bytes */
    char raw_reason[48];   /* "raw_mavlink over <max_raw> bytes" */
};

void frame_limits_init(struct frame_limits *l, size_t max_raw);

/*
 * SPEC.md section 2 acceptance: NULL when the frame may go to sinks,
 * otherwise a reason for a PERMANENT_ERROR ack ("field value over 4096
 * bytes", "agent_id does not match the stream", ...), static or in
 * `limits` (NULL: FRAME_MAX_RAW_DEFAULT). `stream_agent` is the stream's
 * agent id; a non-empty wire agent_id must equal it.
 */
const char *frame_validate(const aero_frame *view, const struct frame_wire_ids *wire,
                           aero_str stream_agent, const struct frame_limits *limits);

/* TelemetryAck.Status values (agent.proto). */
enum ack_status {
    ACK_OK = 0,
    ACK_TEMPORARY_ERROR = 1,
    ACK_PERMANENT_ERROR = 2,
    ACK_RETRY_WITH_BACKOFF = 3
};

/* ------------------------------------------ generation 2 (SPEC.md s. 9) */

/* The AgentStreamMessage arm a message carries: the field number of its
 * oneof, or EMPTY (no field at all) / UNKNOWN (only other numbers). */
enum mux_arm {
    MUX_EMPTY = 0,
    MUX_FRAME = 1,
    MUX_CONTEXT_ACK = 2,
    MUX_AIRCRAFT_RESULT = 3,
    MUX_MISSION_RESULT = 4,
    MUX_EVIDENCE = 5,
    MUX_FLIGHT_COMPLETION = 6,
    MUX_UNKNOWN = 7
};

/* The arm's field name ("command_evidence"), "empty" or "unknown". */
const char *frame_mux_arm_name(enum mux_arm arm);

/*
 * SPEC section 9 rule 2, first half: buf is exactly one top-level field,
 * number 1-7, wire type 2, spanning the whole buffer. The payload is left
 * for the caller to judge (a frame by frame_decode, others by
 * frame_mux_well_formed), so nothing is decoded twice.
 */
bool frame_mux_single_field(const uint8_t *buf, size_t len, uint32_t *field, aero_str *payload);

/*
 * Plain protobuf wire helpers for the messages the relay passes on as
 * bytes (commands, evidence, results):
 *  - frame_wire_find_len: how many times top-level `field` occurs with
 *    wire type 2 in buf (the last one's payload in *payload), -1 when buf
 *    does not parse;
 *  - frame_wire_len_header: the tag and length that put `len` bytes into
 *    length-delimited `field`, written to out; returns their size;
 *  - frame_wire_wrap: a whole such field, malloc'ed.
 */
#define FRAME_WIRE_HDR_MAX 15 /* a 5-byte tag varint and a 10-byte length */
int frame_wire_find_len(const uint8_t *buf, size_t len, uint32_t field, aero_str *payload);
/* Whether top-level string `field` of buf, as a parser reads it (its last
 * record; absent: ""), is exactly the bytes of `want`: protobuf-c's
 * strings end at a NUL byte, so strcmp would take "id\0junk" for "id".
 * False when buf does not parse. */
bool frame_wire_string_is(const uint8_t *buf, size_t len, uint32_t field, const char *want);
size_t frame_wire_len_header(uint32_t field, uint64_t len, uint8_t out[FRAME_WIRE_HDR_MAX]);
/* a then b (either may be empty) as length-delimited `field`, malloc'ed;
 * NULL when out of memory. */
uint8_t *frame_wire_wrap(uint32_t field, const uint8_t *a, size_t a_len, const uint8_t *b,
                         size_t b_len, size_t *out_len);
/* A well-formed protobuf message: every length in bounds, no group. */
bool frame_mux_well_formed(aero_str msg);

/*
 * Read an AgentStreamMessage: the arm (the last of fields 1-6 seen) and its
 * payload, pointing into buf. -1 when it is not well-formed protobuf or a
 * field 1-6 has a wire type other than 2 (the stream ends INVALID_ARGUMENT).
 * 1 when the oneof came in more than one record (payload: the last one):
 * the caller reads it as Go does (agent_stream's mux_join_runs).
 */
int frame_mux_decode(const uint8_t *buf, size_t len, enum mux_arm *arm, aero_str *payload);

/* A wal_id in any form SPEC section 9 accepts, written canonical (lowercase
 * 8-4-4-4-12). -1 for anything else and for the nil UUID. */
#define FRAME_WAL_ID_LEN 36
int frame_wal_id_canonical(aero_str in, char out[FRAME_WAL_ID_LEN + 1]);

/* s without leading and trailing whitespace (ASCII, U+0085, U+00A0). */
aero_str frame_trim(aero_str s);

/*
 * Generation-2 frame admission (SPEC.md section 9), in the SPEC's order
 * with its texts; NULL when the rule passes. Rule 1, the frame's agent:
 */
const char *frame_admit_agent(const struct frame_wire_ids *wire, aero_str stream_agent);
/*
 * Rules 3-7 (rule 2, the session still current, is the caller's, between
 * the two): session id, message name, capture time, wal_id, limits. The
 * canonical wal_id ("" when the frame has none) is written to wal_out.
 */
const char *frame_admit_mux(const aero_frame *view, const struct frame_wire_ids *wire,
                            enum frame_decode_result dr, aero_str stream_session,
                            const struct frame_limits *limits,
                            char wal_out[FRAME_WAL_ID_LEN + 1]);

/* Upper bound of frame_ack_encode's output for these inputs. */
size_t frame_ack_encoded_bound(size_t agent_len, size_t error_len);

/*
 * Encode a TelemetryAck { frame_id = "<agent>:<seq>", seq, status, error }
 * into out (capacity >= frame_ack_encoded_bound). Default values are omitted as
 * proto3 does. `error` may be NULL. Returns the number of bytes written.
 */
size_t frame_ack_encode(uint8_t *out, aero_str agent_id, uint64_t seq, enum ack_status status,
                  const char *error);

/* Generation 2: RelayStreamMessage{telemetry_ack{seq, status, error}},
 * frame_id empty. out needs 56 + strlen(error) bytes. */
size_t frame_mux_ack_encode(uint8_t *out, uint64_t seq, enum ack_status status,
                            const char *error);

#endif
