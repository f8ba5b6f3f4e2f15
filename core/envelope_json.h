/*
 * envelope_json.h - the envelope's JSON encoding (SPEC.md section 5), the one
 * place that escapes strings and base64-encodes bytes. Pure functions, no
 * allocation, safe from any thread.
 */
#ifndef AERO_ENVELOPE_JSON_H
#define AERO_ENVELOPE_JSON_H

#include <aeroarc/plugin.h>
#include <stddef.h>

/*
 * Encode `f` as one JSON object, no newline, into buf[0..cap). snprintf
 * contract: returns the full length needed; output is complete only when
 * the result is < cap (then buf[result] == '\0'). Keys in order: agent_id,
 * session_id, seq, timestamp_relay, sent_at_unix_ns, timestamp_device,
 * msg_id, msg_name, dialect, flight_id, fields, raw_mavlink; then, for a
 * frame of ABI 1.1 or later, protocol ("seed" | "multiplexed"), wal_id,
 * intent_id, intent_version, relay_id, operator_id, aircraft_id.
 */
size_t envelope_json_encode(const aero_frame *f, char *buf, size_t cap);

/* An upper bound of envelope_json_encode(f, ...) + 1, cheap to compute. */
size_t envelope_json_bound(const aero_frame *f);

/*
 * Write s[0..n) as a quoted JSON string: '"', '\\', control characters
 * escaped, valid UTF-8 copied, each invalid byte as U+FFFD. Same snprintf
 * contract (returns length needed, NUL-terminates when it fits).
 */
size_t envelope_json_quote(const char *s, size_t n, char *buf, size_t cap);

/* Standard base64 (RFC 4648, with padding) of src[0..n); snprintf contract. */
size_t envelope_json_base64(const unsigned char *src, size_t n, char *buf, size_t cap);

/* RFC 3339 UTC with 9 fraction digits: "2026-11-27T16:57:26.123456789Z"
 * (30 chars). buf must hold 31 bytes. Returns the length. */
size_t envelope_json_rfc3339(int64_t unix_ns, char *buf);

#endif
