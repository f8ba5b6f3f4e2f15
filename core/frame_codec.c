/*
 * frame_codec.c - zero-copy TelemetryFrame decoder, SPEC.md section 2 limits
 * and the TelemetryAck encoder, hand-written against the protobuf wire format.
 * Pure functions called from any gRPC worker thread: no allocation, no
 * locks, no state but the fields index's hash key, drawn once. Must never
 * read outside the buffer it is given.
 */
#include "frame_codec.h"

#include "siphash.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

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
    F_FLIGHT_ID = 11,
    F_INTENT_ID = 12,
    F_INTENT_VERSION = 13,
    F_WAL_ID = 14
};

/* A cursor over [p, end). Every read checks the bound first. */
struct reader {
    const uint8_t *p;
    const uint8_t *end;
};

/* The fields map compares each entry with the stored keys one by one while
 * there are at most SCAN_MAX of them; past that it indexes them in an
 * open-addressing table of INDEX_SLOTS (load at most 1/2), so an entry
 * costs a constant however many entries and distinct keys a frame has. */
#define SCAN_MAX 16
#define INDEX_SLOTS 1024
#define INDEX_MAX (INDEX_SLOTS / 2) /* keys indexed; later ones (cap > 512) are scanned */

/* Where map entries go while decoding. overflow records that a distinct
 * key did not fit; decoding goes on to prove the rest well-formed. */
struct field_sink {
    aero_kv *fields;
    size_t cap;
    size_t n;
    bool overflow;
    bool indexed;
    size_t probes;                  /* stored keys compared with (frame_decode_probed) */
    uint16_t slot[INDEX_SLOTS];     /* 1 + index into fields, 0 = empty; once indexed */
};

/* The index's hash key: random, drawn once per process, so keys cannot be
 * chosen to collide (the index would then cost a scan of every key). */
static uint8_t index_key[SIPHASH_KEY_BYTES];
static pthread_once_t index_key_once = PTHREAD_ONCE_INIT;

static void index_key_draw(void)
{
    size_t got = 0;
    while (got < sizeof(index_key)) {
        ssize_t r = getrandom(index_key + got, sizeof(index_key) - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* left partly zero: still correct, only guessable */
        got += (size_t)r;
    }
}

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
 * value is the empty string, a repeated one keeps the last. A key or value
 * of another wire type is an unknown field (Go): *wrong set. */
static int decode_entry(aero_str bytes, aero_kv *kv, bool *wrong)
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
        if ((field == 1 || field == 2) && wire == WIRE_LEN) {
            if (read_len(&r, field == 1 ? &kv->key : &kv->value) < 0)
                return -1;
        } else {
            *wrong |= field == 1 || field == 2;
            if (skip_field(&r, wire) < 0)
                return -1;
        }
    }
    return 0;
}

static bool str_eq(aero_str a, aero_str b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

/* Where key belongs in the index: the slot holding it, or the empty one
 * ending its run. */
static size_t index_find(struct field_sink *s, aero_str key)
{
    size_t i = (size_t)siphash24(index_key, key.ptr, key.len) & (INDEX_SLOTS - 1);
    for (; s->slot[i] != 0; i = (i + 1) & (INDEX_SLOTS - 1)) {
        s->probes++;
        if (str_eq(s->fields[s->slot[i] - 1].key, key))
            break;
    }
    return i;
}

static void index_build(struct field_sink *s)
{
    pthread_once(&index_key_once, index_key_draw);
    memset(s->slot, 0, sizeof(s->slot));
    for (size_t k = 0; k < s->n && k < INDEX_MAX; k++)
        s->slot[index_find(s, s->fields[k].key)] = (uint16_t)(k + 1);
    s->indexed = true;
}

/* The stored entry with this key among fields[from..to), or NULL. */
static aero_kv *scan(struct field_sink *s, size_t from, size_t to, aero_str key)
{
    for (size_t i = from; i < to; i++) {
        s->probes++;
        if (str_eq(s->fields[i].key, key))
            return &s->fields[i];
    }
    return NULL;
}

/* Map semantics: a key seen again replaces its value in place, so the
 * array holds distinct keys in the order they first came. Once a key has
 * not fitted the frame is refused anyway: stop comparing. */
static void field_sink_put(struct field_sink *s, aero_kv kv)
{
    if (s->overflow)
        return;
    if (!s->indexed && s->n >= SCAN_MAX)
        index_build(s);
    size_t at = INDEX_SLOTS;
    aero_kv *found;
    if (!s->indexed) {
        found = scan(s, 0, s->n, kv.key);
    } else {
        at = index_find(s, kv.key);
        found = s->slot[at] ? &s->fields[s->slot[at] - 1]
                            : scan(s, INDEX_MAX < s->n ? INDEX_MAX : s->n, s->n, kv.key);
    }
    if (found) {
        found->value = kv.value;
        return;
    }
    if (s->n == s->cap) {
        s->overflow = true;
        return;
    }
    if (at < INDEX_SLOTS && s->n < INDEX_MAX)
        s->slot[at] = (uint16_t)(s->n + 1);
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
    view->intent_id = str_empty();
    view->intent_version = 0;
    view->protobuf = (aero_str){.ptr = (const char *)buf, .len = len};
    wire->agent_id = str_empty();
    wire->session_id = str_empty();
    wire->wal_id = str_empty();
    wire->wrong_wire = false;
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
    case F_INTENT_ID:
        return &view->intent_id;
    case F_WAL_ID:
        return &wire->wal_id;
    default:
        return NULL;
    }
}

/* A known field with another wire type: an unknown field to Go's protobuf
 * (protobuf-c would refuse the frame), skipped and noted. */
static int wrong_wire(struct reader *r, unsigned wire, struct frame_wire_ids *ids)
{
    ids->wrong_wire = true;
    return skip_field(r, wire);
}

/* One top-level field; scalars repeated keep the last value. */
static int decode_field(struct reader *r, uint32_t field, unsigned wire, aero_frame *view,
                        struct frame_wire_ids *ids, struct field_sink *fs)
{
    aero_str *slot = frame_string_slot(field, view, ids);
    uint64_t v;

    if (slot != NULL)
        return wire == WIRE_LEN ? read_len(r, slot) : wrong_wire(r, wire, ids);
    switch (field) {
    case F_SEQ:
    case F_SENT_AT:
    case F_MSG_ID:
    case F_INTENT_VERSION:
        if (wire != WIRE_VARINT)
            return wrong_wire(r, wire, ids);
        if (read_varint(r, &v) < 0)
            return -1;
        if (field == F_SEQ)
            view->seq = v;
        else if (field == F_SENT_AT)
            view->sent_at_unix_ns = (int64_t)v; /* two's complement, as protobuf */
        else if (field == F_MSG_ID)
            view->msg_id = (uint32_t)v; /* protobuf truncates uint32 varints */
        else
            view->intent_version = (uint32_t)v;
        return 0;
    case F_DEVICE_TS:
        if (wire != WIRE_FIXED64)
            return wrong_wire(r, wire, ids);
        if (read_fixed(r, 8, &v) < 0)
            return -1;
        view->device_timestamp_sec = double_from_bits(v);
        return 0;
    case F_FIELDS: {
        aero_str bytes;
        aero_kv kv;

        if (wire != WIRE_LEN)
            return wrong_wire(r, wire, ids);
        if (read_len(r, &bytes) < 0 || decode_entry(bytes, &kv, &ids->wrong_wire) < 0)
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
    return frame_decode_probed(buf, len, view, fields, fields_cap, wire, NULL);
}

enum frame_decode_result frame_decode_probed(const uint8_t *buf, size_t len, aero_frame *view,
                                             aero_kv *fields, size_t fields_cap,
                                             struct frame_wire_ids *wire, size_t *probes)
{
    struct frame_wire_ids local_ids;
    struct frame_wire_ids *ids = wire != NULL ? wire : &local_ids;
    struct field_sink fs; /* slot[] is cleared only if the index is built */
    fs.fields = fields;
    fs.cap = fields != NULL ? fields_cap : 0;
    fs.n = 0;
    fs.overflow = false;
    fs.indexed = false;
    fs.probes = 0;
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
    if (probes != NULL)
        *probes = fs.probes;
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
void frame_limits_init(struct frame_limits *l, size_t max_raw)
{
    l->max_raw = max_raw;
    snprintf(l->raw_reason, sizeof(l->raw_reason), "raw_mavlink over %zu bytes", max_raw);
}

const char *frame_validate(const aero_frame *view, const struct frame_wire_ids *wire,
                           aero_str stream_agent, const struct frame_limits *limits)
{
    static const struct frame_limits defaults = {FRAME_MAX_RAW_DEFAULT,
                                                 "raw_mavlink over 16384 bytes"};
    if (limits == NULL)
        limits = &defaults;
    if (wire != NULL && wire->agent_id.len > 0 && !str_eq(wire->agent_id, stream_agent))
        return "agent_id does not match the stream";
    if (view->msg_name.len > FRAME_MAX_NAME)
        return "msg_name over 128 bytes";
    if (view->flight_id.len > FRAME_MAX_NAME)
        return "flight_id over 128 bytes";
    if (view->dialect.len > FRAME_MAX_DIALECT)
        return "dialect over 64 bytes";
    if (view->raw_mavlink.len > limits->max_raw)
        return limits->raw_reason;
    return fields_check(view);
}

/* ---------------------------------------------- generation 2 envelopes */

/* Every field in bounds and of a defined wire type (groups refused). */
bool frame_mux_well_formed(aero_str msg)
{
    struct reader r = {.p = (const uint8_t *)msg.ptr, .end = (const uint8_t *)msg.ptr + msg.len};

    while (r.p < r.end) {
        uint32_t field;
        unsigned wire;

        if (read_tag(&r, &field, &wire) < 0 || skip_field(&r, wire) < 0)
            return false;
    }
    return true;
}

int frame_wire_find_len(const uint8_t *buf, size_t len, uint32_t field, aero_str *payload)
{
    struct reader r = {.p = buf, .end = buf + len};
    int n = 0;

    while (buf != NULL && r.p < r.end) {
        uint32_t f;
        unsigned wire;

        if (read_tag(&r, &f, &wire) < 0)
            return -1;
        if (f == field && wire == WIRE_LEN) {
            if (read_len(&r, payload) < 0)
                return -1;
            n++;
        } else if (skip_field(&r, wire) < 0) {
            return -1;
        }
    }
    return n;
}

bool frame_wire_string_is(const uint8_t *buf, size_t len, uint32_t field, const char *want)
{
    aero_str got = str_empty();
    return frame_wire_find_len(buf, len, field, &got) >= 0 && got.len == strlen(want) &&
           memcmp(got.ptr, want, got.len) == 0;
}

bool frame_mux_single_field(const uint8_t *buf, size_t len, uint32_t *field, aero_str *payload)
{
    struct reader r = {.p = buf, .end = buf + len};
    unsigned wire;

    if (buf == NULL || read_tag(&r, field, &wire) < 0 || *field < 1 || *field > 7 ||
        wire != WIRE_LEN || read_len(&r, payload) < 0)
        return false;
    return r.p == r.end;
}

int frame_mux_decode(const uint8_t *buf, size_t len, enum mux_arm *arm, aero_str *payload)
{
    struct reader r = {.p = buf, .end = buf + len};
    bool any = false;
    unsigned records = 0;

    *arm = MUX_EMPTY;
    *payload = str_empty();
    while (buf != NULL && r.p < r.end) {
        uint32_t field;
        unsigned wire;

        if (read_tag(&r, &field, &wire) < 0)
            return -1;
        any = true;
        if (field >= MUX_FRAME && field <= MUX_FLIGHT_COMPLETION) {
            if (wire != WIRE_LEN || read_len(&r, payload) < 0)
                return -1;
            *arm = (enum mux_arm)field;
            records++;
        } else if (skip_field(&r, wire) < 0) {
            return -1;
        }
    }
    if (*arm == MUX_EMPTY && any)
        *arm = MUX_UNKNOWN;
    return records > 1 ? 1 : 0;
}

const char *frame_mux_arm_name(enum mux_arm arm)
{
    static const char *const names[] = {
        [MUX_EMPTY] = "empty",
        [MUX_FRAME] = "telemetry_frame",
        [MUX_CONTEXT_ACK] = "operation_context_command_ack",
        [MUX_AIRCRAFT_RESULT] = "aircraft_command_result",
        [MUX_MISSION_RESULT] = "mission_deployment_result",
        [MUX_EVIDENCE] = "command_evidence",
        [MUX_FLIGHT_COMPLETION] = "flight_completion_evidence",
        [MUX_UNKNOWN] = "unknown",
    };
    return (unsigned)arm <= MUX_UNKNOWN ? names[arm] : "unknown";
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The forms Go's uuid.Parse takes: 8-4-4-4-12, {8-4-4-4-12},
 * urn:uuid:8-4-4-4-12 (prefix in any case), and 32 hex digits. */
int frame_wal_id_canonical(aero_str in, char out[FRAME_WAL_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    const char *p = in.ptr;
    size_t len = in.len;
    bool dashed = true;

    if (len == 36 + 9 && strncasecmp(p, "urn:uuid:", 9) == 0) {
        p += 9;
        len = 36;
    } else if (len == 38 && p[0] == '{' && p[37] == '}') {
        p += 1;
        len = 36;
    } else if (len == 32) {
        dashed = false;
    } else if (len != 36) {
        return -1;
    }
    bool nil = true;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (dashed && (i == 8 || i == 13 || i == 18 || i == 23)) {
            if (p[i] != '-')
                return -1;
            out[o++] = '-';
            continue;
        }
        int v = hex_value(p[i]);
        if (v < 0)
            return -1;
        nil = nil && v == 0;
        if (!dashed && (o == 8 || o == 13 || o == 18 || o == 23))
            out[o++] = '-';
        out[o++] = hex[v];
    }
    out[o] = '\0';
    return nil ? -1 : 0;
}

/* Blank as Go's strings.TrimSpace sees it (unicode.IsSpace): ASCII space
 * and controls \t \n \v \f \r, U+0085, U+00A0, and the other space
 * separators: U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F,
 * U+3000. Returns the UTF-8 length of the space at p, 0 for none. */
static size_t space_at(const char *p, size_t left)
{
    const uint8_t *u = (const uint8_t *)p;
    if (left >= 1 && (u[0] == ' ' || (u[0] >= '\t' && u[0] <= '\r')))
        return 1;
    if (left >= 2 && u[0] == 0xC2 && (u[1] == 0x85 || u[1] == 0xA0))
        return 2;
    if (left < 3)
        return 0;
    if ((u[0] == 0xE1 && u[1] == 0x9A && u[2] == 0x80) ||
        (u[0] == 0xE2 && u[1] == 0x80 &&
         ((u[2] >= 0x80 && u[2] <= 0x8A) || u[2] == 0xA8 || u[2] == 0xA9 || u[2] == 0xAF)) ||
        (u[0] == 0xE2 && u[1] == 0x81 && u[2] == 0x9F) ||
        (u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x80))
        return 3;
    return 0;
}

aero_str frame_trim(aero_str s)
{
    size_t n;
    while (s.len > 0 && (n = space_at(s.ptr, s.len)) > 0) {
        s.ptr += n;
        s.len -= n;
    }
    /* From the end: a space of one, two or three bytes ending there. */
    while (s.len > 0) {
        size_t k = 1;
        while (k <= 3 && k <= s.len && space_at(s.ptr + s.len - k, k) != k)
            k++;
        if (k > 3 || k > s.len)
            break;
        s.len -= k;
    }
    return s;
}

const char *frame_admit_agent(const struct frame_wire_ids *wire, aero_str stream_agent)
{
    if (wire->agent_id.len > 0 && !str_eq(wire->agent_id, stream_agent))
        return "telemetry frame agent ID does not match authenticated stream";
    return NULL;
}

const char *frame_admit_mux(const aero_frame *view, const struct frame_wire_ids *wire,
                            enum frame_decode_result dr, aero_str stream_session,
                            const struct frame_limits *limits,
                            char wal_out[FRAME_WAL_ID_LEN + 1])
{
    wal_out[0] = '\0';
    if (!str_eq(wire->session_id, stream_session))
        return "telemetry frame session ID does not match active session";
    if (frame_trim(view->msg_name).len == 0)
        return "telemetry frame message name is required";
    if (view->sent_at_unix_ns <= 0)
        return "telemetry frame capture timestamp is required";
    if (wire->wal_id.len > 0 && frame_wal_id_canonical(wire->wal_id, wal_out) < 0) {
        wal_out[0] = '\0';
        return "telemetry frame WAL generation ID is invalid";
    }
    if (dr == FRAME_DECODE_TOO_MANY_FIELDS)
        return "more than 256 fields";
    return frame_validate(view, wire, wire->agent_id, limits); /* the limits: rule 1 passed */
}

/* ------------------------------------------------------------------ acks */

#define VARINT_MAX 10  /* bytes of a 64-bit varint */
#define U64_DIGITS 20  /* decimal digits of UINT64_MAX */

/* Field 1 (tag + length + "<agent>:<seq>"), 2 and 3 (tag + varint each),
 * 4 (tag + length + text). */
size_t frame_ack_encoded_bound(size_t agent_len, size_t error_len)
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

size_t frame_wire_len_header(uint32_t field, uint64_t len, uint8_t out[FRAME_WIRE_HDR_MAX])
{
    size_t n = put_varint(out, (uint64_t)field << 3 | WIRE_LEN);
    return n + put_varint(out + n, len);
}

uint8_t *frame_wire_wrap(uint32_t field, const uint8_t *a, size_t a_len, const uint8_t *b,
                         size_t b_len, size_t *out_len)
{
    uint8_t hdr[FRAME_WIRE_HDR_MAX];
    size_t h = frame_wire_len_header(field, a_len + b_len, hdr);
    uint8_t *out = malloc(h + a_len + b_len + 1);
    if (!out)
        return NULL;
    memcpy(out, hdr, h);
    if (a_len)
        memcpy(out + h, a, a_len);
    if (b_len)
        memcpy(out + h + a_len, b, b_len);
    *out_len = h + a_len + b_len;
    return out;
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

size_t frame_ack_encode(uint8_t *out, aero_str agent_id, uint64_t seq, enum ack_status status,
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

/* RelayStreamMessage{1: TelemetryAck{2: seq, 3: status, 4: error}}: the
 * ack with frame_id left empty (generation 2 agents drop a stream whose
 * acks carry a frame_id they did not make). */
size_t frame_mux_ack_encode(uint8_t *out, uint64_t seq, enum ack_status status, const char *error)
{
    /* The TelemetryAck first, after room for the envelope's tag and length
     * (at most 1 + VARINT_MAX bytes); then the envelope goes in front. */
    uint8_t *ack = out + 1 + VARINT_MAX;
    size_t error_len = error != NULL ? strlen(error) : 0;
    size_t n = 0;

    if (seq != 0) {
        ack[n++] = (2 << 3) | WIRE_VARINT;
        n += put_varint(ack + n, seq);
    }
    if (status != ACK_OK) {
        ack[n++] = (3 << 3) | WIRE_VARINT;
        n += put_varint(ack + n, (uint64_t)(int64_t)status);
    }
    if (error_len != 0) {
        ack[n++] = (4 << 3) | WIRE_LEN;
        n += put_varint(ack + n, error_len);
        memcpy(ack + n, error, error_len);
        n += error_len;
    }
    size_t m = 0;
    out[m++] = (1 << 3) | WIRE_LEN;
    m += put_varint(out + m, n);
    memmove(out + m, ack, n);
    return m + n;
}
