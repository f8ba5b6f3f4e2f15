/*
 * fuzz_frame_decoder.c - libFuzzer target for core/frame_codec.c: decode and
 * validate arbitrary bytes, check every view string lies inside the input,
 * and where protobuf-c (the reference) also accepts the bytes, check both
 * decoders agree. The same bytes also go through the generation-2 path:
 * the first-message classifier (SPEC.md section 9 rule 2), the envelope
 * decoder (its arm and payload must agree with protobuf-c's
 * AgentStreamMessage), and the frame inside an envelope, checked as above.
 * Any disagreement or memory error aborts the run.
 */
#include "frame_codec.h"

#include "aeroarc/agent/v1/agent.pb-c.h"
#include "wire_prepare.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define FIELDS_CAP FRAME_MAX_FIELDS

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool inside(aero_str s, const uint8_t *buf, size_t len)
{
    const uint8_t *p = (const uint8_t *)s.ptr;

    if (s.ptr == NULL)
        return false;
    return s.len == 0 || (p >= buf && s.len <= len && (size_t)(p - buf) <= len - s.len);
}

static bool str_eq_c(aero_str a, const char *c)
{
    return strlen(c) == a.len && memcmp(a.ptr, c, a.len) == 0;
}

static bool has_nul(aero_str s)
{
    return s.len != 0 && memchr(s.ptr, '\0', s.len) != NULL;
}

/* protobuf-c cuts strings at NUL: compare only strings without one. */
static bool same_string(aero_str ours, const char *theirs)
{
    return has_nul(ours) || str_eq_c(ours, theirs);
}

static bool same_bytes(aero_str ours, ProtobufCBinaryData theirs)
{
    return ours.len == theirs.len &&
           (ours.len == 0 || memcmp(ours.ptr, theirs.data, ours.len) == 0);
}

/* Our map: distinct keys, first position, last value. Rebuild that from
 * protobuf-c's list of entries and compare (skipped when NULs are involved). */
static bool same_map(const aero_frame *v, const Aeroarc__Agent__V1__TelemetryFrame *pb)
{
    for (size_t i = 0; i < v->n_fields; i++) {
        if (has_nul(v->fields[i].key) || has_nul(v->fields[i].value))
            return true;
    }
    if (pb->n_fields > 1024)
        return true; /* quadratic below: keep the fuzzer fast */
    size_t distinct = 0;
    for (size_t i = 0; i < pb->n_fields; i++) {
        const char *key = pb->fields[i]->key;
        size_t first = i, last = i;
        for (size_t j = 0; j < pb->n_fields; j++) {
            if (strcmp(pb->fields[j]->key, key) == 0) {
                first = j < first ? j : first;
                last = j;
            }
        }
        if (first != i)
            continue;
        if (distinct >= v->n_fields || !str_eq_c(v->fields[distinct].key, key) ||
            !str_eq_c(v->fields[distinct].value, pb->fields[last]->value))
            return false;
        distinct++;
    }
    return distinct == v->n_fields;
}

static void cross_check(const aero_frame *v, const struct frame_wire_ids *w,
                        const uint8_t *data, size_t size)
{
    /* The reference reads as Go's protobuf does (wire_unpack: a known
     * field of another wire type is an unknown field), as the decoder. */
    Aeroarc__Agent__V1__TelemetryFrame *pb = (Aeroarc__Agent__V1__TelemetryFrame *)wire_unpack(
        &aeroarc__agent__v1__telemetry_frame__descriptor, data, size);

    if (pb == NULL)
        return; /* we are stricter in places (10th varint byte); fine */
    check(same_string(w->session_id, pb->session_id));
    check(same_string(w->agent_id, pb->agent_id));
    check(v->seq == pb->seq);
    check(v->sent_at_unix_ns == pb->sent_at_unix_ns);
    check(memcmp(&v->device_timestamp_sec, &pb->device_timestamp_sec, sizeof(double)) == 0);
    check(same_bytes(v->raw_mavlink, pb->raw_mavlink));
    check(same_string(v->dialect, pb->dialect));
    check(v->msg_id == pb->msg_id);
    check(same_string(v->msg_name, pb->msg_name));
    check(same_string(v->flight_id, pb->flight_id));
    check(same_string(v->intent_id, pb->intent_id));
    check(v->intent_version == pb->intent_version);
    check(same_string(w->wal_id, pb->wal_id));
    check(same_map(v, pb));
    aeroarc__agent__v1__telemetry_frame__free_unpacked(pb, NULL);
}

/* One TelemetryFrame's bytes: decode, bounds, limits, the reference. */
static void frame_case(const uint8_t *data, size_t size)
{
    static const char stream_agent[] = "drone-1";
    aero_kv fields[FIELDS_CAP];
    aero_frame view = {.size = sizeof(view)};
    struct frame_wire_ids wire;

    enum frame_decode_result rc = frame_decode(data, size, &view, fields, FIELDS_CAP, &wire);
    if (rc == FRAME_DECODE_MALFORMED)
        return;
    check(view.n_fields <= FIELDS_CAP);
    check(inside(view.raw_mavlink, data, size) && inside(view.dialect, data, size) &&
          inside(view.msg_name, data, size) && inside(view.flight_id, data, size) &&
          inside(view.intent_id, data, size) && inside(wire.wal_id, data, size) &&
          inside(wire.agent_id, data, size) && inside(wire.session_id, data, size));
    for (size_t i = 0; i < view.n_fields; i++) {
        check(inside(view.fields[i].key, data, size) && inside(view.fields[i].value, data, size));
        for (size_t j = 0; j < i; j++) /* keys are distinct */
            check(view.fields[i].key.len != view.fields[j].key.len ||
                  memcmp(view.fields[i].key.ptr, view.fields[j].key.ptr,
                         view.fields[i].key.len) != 0);
    }
    const char *reason =
        frame_validate(&view, &wire, (aero_str){stream_agent, sizeof(stream_agent) - 1}, NULL);
    check(reason == NULL || reason[0] != '\0');
    char wal[FRAME_WAL_ID_LEN + 1];
    reason = frame_admit_mux(&view, &wire, rc, (aero_str){"sess-x", 6}, NULL, wal);
    check(reason == NULL || reason[0] != '\0');
    check(strlen(wal) == 0 || strlen(wal) == FRAME_WAL_ID_LEN);
    if (rc == FRAME_DECODE_OK)
        cross_check(&view, &wire, data, size);
}

/* The generation-2 readers on the same bytes, against protobuf-c. */
static void envelope_case(const uint8_t *data, size_t size)
{
    uint32_t field;
    aero_str payload;
    if (frame_mux_single_field(data, size, &field, &payload)) {
        check(field >= 1 && field <= 7 && inside(payload, data, size));
        (void)frame_mux_well_formed(payload);
    }
    enum mux_arm arm;
    int rc = frame_mux_decode(data, size, &arm, &payload);
    Aeroarc__Agent__V1__AgentStreamMessage *pb =
        aeroarc__agent__v1__agent_stream_message__unpack(NULL, size, data);
    if (rc < 0) {
        /* Stricter than protobuf-c only where protobuf-c accepts a payload
         * it then fails to unpack: never the other way round. */
        if (pb != NULL)
            aeroarc__agent__v1__agent_stream_message__free_unpacked(pb, NULL);
        return;
    }
    check(inside(payload, data, size));
    check(frame_mux_arm_name(arm) != NULL);
    if (pb != NULL) {
        if (arm >= MUX_FRAME && arm <= MUX_FLIGHT_COMPLETION)
            check((int)pb->payload_case == (int)arm);
        else
            check(pb->payload_case == 0);
        aeroarc__agent__v1__agent_stream_message__free_unpacked(pb, NULL);
    }
    if (arm == MUX_FRAME)
        frame_case((const uint8_t *)payload.ptr, payload.len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    frame_case(data, size);
    envelope_case(data, size);
    uint8_t ack[56 + 32];
    size_t n = frame_mux_ack_encode(ack, size, ACK_PERMANENT_ERROR, "fuzz");
    check(n <= sizeof(ack));
    return 0;
}
