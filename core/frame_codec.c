/*
 * frame_codec.c - zero-copy TelemetryFrame decoder, SPEC.md section 2 limits
 * and the TelemetryAck encoder, hand-written against the protobuf wire format.
 * Pure functions called from any gRPC worker thread: no allocation, no
 * locks, no state. Must never read outside the buffer it is given.
 */
#include "frame_codec.h"

#include <stdbool.h>
#include <string.h>

/* Protobuf wire types (the low 3 bits of a tag). 3 and 4 are the
 * deprecated groups, which TelemetryFrame never contains. */
enum wire_type {
    WIRE_VARINT = 0,
    WIRE_FIXED64 = 1,
    WIRE_LEN = 2,
    WIRE_FIXED32 = 5
};

/* TelemetryFrame field numbers (agent.proto). */
enum frame_field {
    F_SESSION_ID = 1,
    F_AGENT_ID = 2,
    F_SEQ = 3,
    F_SENT_AT = 4,
    F_DEVICE_TS = 5,
    F_RAW_MAVLINK = 6,
    F_DIALECT = 7,
    F_MSG_ID = 8,
    F_MSG_NAME = 9,
    F_FIELDS = 10,
    F_FLIGHT_ID = 11
};

/* A cursor over [p, end). Every read checks the bound first. */
struct reader {
    const uint8_t *p;
    const uint8_t *end;
};

/* Where map entries go while decoding. overflow records that a distinct
 * key did not fit; decoding goes on to prove the rest well-formed. */
struct field_sink {
    aero_kv *fields;
    size_t cap;
    size_t n;
    bool overflow;
};

/* Absent strings point here, never NULL: consumers may memcpy/fwrite a
 * zero-length string without a NULL check (memcpy(NULL, ..., 0) is UB). */
static const char empty_str[1] = "";

static aero_str str_empty(void)
{
    return (aero_str){.ptr = empty_str, .len = 0};
}

/* A varint of at most 10 bytes whose value fits 64 bits: the tenth byte may
 * only carry bit 63, so anything longer or larger is malformed. */
static int read_varint_long(struct reader *r, uint64_t *out)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < 10; i++) {
        if (r->p == r->end)
            return -1;
        uint8_t b = *r->p++;
        if (i == 9 && b > 1)
            return -1;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Tags, lengths and small numbers fit one byte: that case inline. */
static inline int read_varint(struct reader *r, uint64_t *out)
{
    if (r->p < r->end && *r->p < 0x80) {
        *out = *r->p++;
        return 0;
    }
    return read_varint_long(r, out);
}

static int read_fixed(struct reader *r, unsigned n, uint64_t *out)
{
    uint64_t v = 0;

    if ((size_t)(r->end - r->p) < n)
        return -1;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    *out = v;
    return 0;
}

/* A length-delimited payload, pointing into the buffer. */
static int read_len(struct reader *r, aero_str *out)
{
    uint64_t len;

    if (read_varint(r, &len) < 0 || len > (uint64_t)(r->end - r->p))
        return -1;
    out->ptr = (const char *)r->p;
    out->len = (size_t)len;
    r->p += len;
    return 0;
}

/* Tags are 32-bit varints in protobuf; field number 0 does not exist. */
static int read_tag(struct reader *r, uint32_t *field, unsigned *wire)
{
    uint64_t tag;

    if (read_varint(r, &tag) < 0 || tag > UINT32_MAX || (tag >> 3) == 0)
        return -1;
    *field = (uint32_t)(tag >> 3);
    *wire = (unsigned)(tag & 7);
    return 0;
}

/* Skip an unknown field. Groups (3, 4) and the unused types 6, 7 are
 * malformed: nothing we accept was ever defined with them. */
static int skip_field(struct reader *r, unsigned wire)
{
    uint64_t ignored;
    aero_str ignored_str;

    switch (wire) {
    case WIRE_VARINT:
        return read_varint(r, &ignored);
    case WIRE_FIXED64:
        return read_fixed(r, 8, &ignored);
    case WIRE_LEN:
        return read_len(r, &ignored_str);
    case WIRE_FIXED32:
        return read_fixed(r, 4, &ignored);
    default:
        return -1;
    }
}

/* One map entry: a nested message { 1: key, 2: value }; a missing key or
 * value is the empty string, a repeated one keeps the last. */
static int decode_entry(aero_str bytes, aero_kv *kv)
{
    struct reader r = {.p = (const uint8_t *)bytes.ptr,
                       .end = (const uint8_t *)bytes.ptr + bytes.len};

    kv->key = str_empty();
    kv->value = str_empty();
    while (r.p < r.end) {
        uint32_t field;
        unsigned wire;

        if (read_tag(&r, &field, &wire) < 0)
            return -1;
        if (field == 1 || field == 2) {
            if (wire != WIRE_LEN || read_len(&r, field == 1 ? &kv->key : &kv->value) < 0)
                return -1;
        } else if (skip_field(&r, wire) < 0) {
            return -1;
        }
    }
    return 0;
}

static bool str_eq(aero_str a, aero_str b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

/* Map semantics: a key seen again replaces its value in place, so the
 * array holds distinct keys. Quadratic, but bounded by cap (256 in the
 * relay) and the length test rejects most candidates without a memcmp.
 * Once a key has not fitted the frame is refused anyway: stop comparing. */
static void field_sink_put(struct field_sink *s, aero_kv kv)
{
    if (s->overflow)
        return;
    for (size_t i = 0; i < s->n; i++) {
        if (str_eq(s->fields[i].key, kv.key)) {
            s->fields[i].value = kv.value;
            return;
        }
    }
    if (s->n == s->cap) {
        s->overflow = true;
        return;
    }
    s->fields[s->n++] = kv;
}

static void frame_defaults(const uint8_t *buf, size_t len, aero_frame *view,
                           struct frame_wire_ids *wire)
{
    view->seq = 0;
    view->sent_at_unix_ns = 0;
    view->device_timestamp_sec = 0.0;
    view->raw_mavlink = str_empty();
    view->dialect = str_empty();
    view->msg_id = 0;
    view->msg_name = str_empty();
    view->fields = NULL;
    view->n_fields = 0;
    view->flight_id = str_empty();
    view->protobuf = (aero_str){.ptr = (const char *)buf, .len = len};
    wire->agent_id = str_empty();
    wire->session_id = str_empty();
}

static double double_from_bits(uint64_t bits)
{
    double d;

    memcpy(&d, &bits, sizeof(d));
    return d;
}

/* The string-typed fields of TelemetryFrame, or NULL for other numbers. */
static aero_str *frame_string_slot(uint32_t field, aero_frame *view,
                                   struct frame_wire_ids *wire)
{
    switch (field) {
    case F_SESSION_ID:
        return &wire->session_id;
    case F_AGENT_ID:
        return &wire->agent_id;
    case F_RAW_MAVLINK:
        return &view->raw_mavlink;
    case F_DIALECT:
        return &view->dialect;
    case F_MSG_NAME:
        return &view->msg_name;
    case F_FLIGHT_ID:
        return &view->flight_id;
    default:
        return NULL;
    }
}

/* One top-level field. A known number with another wire type is malformed
 * (protobuf-c refuses it too); scalars repeated keep the last value. */
static int decode_field(struct reader *r, uint32_t field, unsigned wire, aero_frame *view,
                        struct frame_wire_ids *ids, struct field_sink *fs)
{
    aero_str *slot = frame_string_slot(field, view, ids);
    uint64_t v;

    if (slot != NULL)
        return wire == WIRE_LEN ? read_len(r, slot) : -1;
    switch (field) {
    case F_SEQ:
    case F_SENT_AT:
    case F_MSG_ID:
        if (wire != WIRE_VARINT || read_varint(r, &v) < 0)
            return -1;
        if (field == F_SEQ)
            view->seq = v;
        else if (field == F_SENT_AT)
            view->sent_at_unix_ns = (int64_t)v; /* two's complement, as protobuf */
        else
            view->msg_id = (uint32_t)v; /* protobuf truncates uint32 varints */
        return 0;
    case F_DEVICE_TS:
        if (wire != WIRE_FIXED64 || read_fixed(r, 8, &v) < 0)
            return -1;
        view->device_timestamp_sec = double_from_bits(v);
        return 0;
    case F_FIELDS: {
        aero_str bytes;
        aero_kv kv;

        if (wire != WIRE_LEN || read_len(r, &bytes) < 0 || decode_entry(bytes, &kv) < 0)
            return -1;
        field_sink_put(fs, kv);
        return 0;
    }
    default:
        return skip_field(r, wire);
    }
}

/*
 * On FRAME_DECODE_TOO_MANY_FIELDS the view is still complete (seq and all
 * scalars set, the first fields_cap distinct keys in fields) so the caller
 * can ack the frame PERMANENT_ERROR by seq.
 */
enum frame_decode_result frame_decode(const uint8_t *buf, size_t len, aero_frame *view,
                                      aero_kv *fields, size_t fields_cap,
                                      struct frame_wire_ids *wire)
{
    struct frame_wire_ids local_ids;
    struct frame_wire_ids *ids = wire != NULL ? wire : &local_ids;
    struct field_sink fs = {.fields = fields, .cap = fields != NULL ? fields_cap : 0};
    struct reader r;

    if (buf == NULL) { /* an empty message; NULL + 0 is undefined */
        buf = (const uint8_t *)empty_str;
        len = 0;
    }
    r = (struct reader){.p = buf, .end = buf + len};
    frame_defaults(buf, len, view, ids);
    while (r.p < r.end) {
        uint32_t field;
        unsigned wt;

        if (read_tag(&r, &field, &wt) < 0 || decode_field(&r, field, wt, view, ids, &fs) < 0)
            return FRAME_DECODE_MALFORMED;
    }
    view->fields = fs.n ? fields : NULL;
    view->n_fields = fs.n;
    return fs.overflow ? FRAME_DECODE_TOO_MANY_FIELDS : FRAME_DECODE_OK;
}

static const char *fields_check(const aero_frame *view)
{
    if (view->n_fields > FRAME_MAX_FIELDS)
        return "more than 256 fields";
    for (size_t i = 0; i < view->n_fields; i++) {
        if (view->fields[i].key.len > FRAME_MAX_KEY)
            return "field key over 128 bytes";
        if (view->fields[i].value.len > FRAME_MAX_VALUE)
            return "field value over 4096 bytes";
    }
    return NULL;
}

/* The reasons are ack `error` text the agent's operator reads: short and
 * naming the limit. Identity first: a foreign frame is refused whatever it holds. */
const char *frame_validate(const aero_frame *view, const struct frame_wire_ids *wire,
                           aero_str stream_agent)
{
    if (wire != NULL && wire->agent_id.len > 0 && !str_eq(wire->agent_id, stream_agent))
        return "agent_id does not match the stream";
    if (view->msg_name.len > FRAME_MAX_NAME)
        return "msg_name over 128 bytes";
    if (view->flight_id.len > FRAME_MAX_NAME)
        return "flight_id over 128 bytes";
    if (view->dialect.len > FRAME_MAX_DIALECT)
        return "dialect over 64 bytes";
    if (view->raw_mavlink.len > FRAME_MAX_RAW)
        return "raw_mavlink over 1024 bytes";
    return fields_check(view);
}

/* ------------------------------------------------------------------ acks */

#define VARINT_MAX 10  /* bytes of a 64-bit varint */
#define U64_DIGITS 20  /* decimal digits of UINT64_MAX */

/* Field 1 (tag + length + "<agent>:<seq>"), 2 and 3 (tag + varint each),
 * 4 (tag + length + text). */
size_t ack_encoded_bound(size_t agent_len, size_t error_len)
{
    size_t frame_id = 1 + VARINT_MAX + agent_len + 1 + U64_DIGITS;

    return frame_id + 2 * (1 + VARINT_MAX) + 1 + VARINT_MAX + error_len;
}

static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

/* Decimal digits of v written backwards into the end of tmp; returns count. */
static size_t u64_decimal(uint64_t v, char tmp[U64_DIGITS])
{
    size_t n = 0;

    do {
        tmp[U64_DIGITS - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return n;
}

static size_t put_frame_id(uint8_t *out, aero_str agent, uint64_t seq)
{
    char digits[U64_DIGITS];
    size_t nd = u64_decimal(seq, digits);
    size_t n = 0;

    out[n++] = (1 << 3) | WIRE_LEN;
    n += put_varint(out + n, agent.len + 1 + nd);
    if (agent.len)
        memcpy(out + n, agent.ptr, agent.len);
    n += agent.len;
    out[n++] = ':';
    memcpy(out + n, digits + U64_DIGITS - nd, nd);
    return n + nd;
}

size_t ack_encode(uint8_t *out, aero_str agent_id, uint64_t seq, enum ack_status status,
                  const char *error)
{
    size_t n = put_frame_id(out, agent_id, seq);
    size_t error_len = error != NULL ? strlen(error) : 0;

    if (seq != 0) {
        out[n++] = (2 << 3) | WIRE_VARINT;
        n += put_varint(out + n, seq);
    }
    if (status != ACK_OK) {
        /* enums are int32 on the wire: sign-extend as protobuf does */
        out[n++] = (3 << 3) | WIRE_VARINT;
        n += put_varint(out + n, (uint64_t)(int64_t)status);
    }
    if (error_len != 0) {
        out[n++] = (4 << 3) | WIRE_LEN;
        n += put_varint(out + n, error_len);
        memcpy(out + n, error, error_len);
        n += error_len;
    }
    return n;
}
