/*
 * gen_frame_corpus.c - writes the seed corpus of fuzz_frame_decoder: a few
 * TelemetryFrames packed by protobuf-c, one file each, into the directory
 * given, and the generation-2 messages of SPEC.md section 9 (gen2_*.bin:
 * AgentStreamMessage envelopes of every arm, and the first messages whose
 * generation rule 2 decides by their exact bytes). Run by hand when the
 * corpus needs refreshing; not part of the build:
 *   cc -I build/gen tests/fuzz/gen_frame_corpus.c build/gen/aeroarc/agent/v1/agent.pb-c.c \
 *      -lprotobuf-c -o /tmp/gen && /tmp/gen tests/fuzz/corpus/frame_decoder
 */
#include "aeroarc/agent/v1/agent.pb-c.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Aeroarc__Agent__V1__TelemetryFrame PbFrame;
typedef Aeroarc__Agent__V1__TelemetryFrame__FieldsEntry PbEntry;

static int write_frame(const char *dir, const char *name, const PbFrame *f)
{
    char path[4096];
    size_t len = aeroarc__agent__v1__telemetry_frame__get_packed_size(f);
    uint8_t *buf = malloc(len ? len : 1);
    int rc = -1;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *out = fopen(path, "wb");
    if (buf != NULL && out != NULL) {
        aeroarc__agent__v1__telemetry_frame__pack(f, buf);
        rc = fwrite(buf, 1, len, out) == len ? 0 : -1;
    }
    if (out != NULL && fclose(out) != 0)
        rc = -1;
    free(buf);
    return rc;
}

static int write_bytes(const char *dir, const char *name, const uint8_t *b, size_t len)
{
    char path[4096];
    int rc = -1;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *out = fopen(path, "wb");
    if (out != NULL) {
        rc = fwrite(b, 1, len, out) == len ? 0 : -1;
        if (fclose(out) != 0)
            rc = -1;
    }
    return rc;
}

static int write_msg(const char *dir, const char *name, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    int rc = -1;

    if (buf != NULL) {
        protobuf_c_message_pack(m, buf);
        rc = write_bytes(dir, name, buf, len);
    }
    free(buf);
    return rc;
}

/* Generation 2 (SPEC.md section 9): one file per message. */
static int write_gen2(const char *dir, PbFrame *f)
{
    Aeroarc__Agent__V1__AgentStreamMessage env = AEROARC__AGENT__V1__AGENT_STREAM_MESSAGE__INIT;
    Aeroarc__Agent__V1__OperationContext ctx = AEROARC__AGENT__V1__OPERATION_CONTEXT__INIT;
    Aeroarc__Agent__V1__OperationContextCommandAck ack =
        AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__INIT;
    Aeroarc__Agent__V1__AircraftCommandResult acr =
        AEROARC__AGENT__V1__AIRCRAFT_COMMAND_RESULT__INIT;
    Aeroarc__Agent__V1__MissionBinding binding = AEROARC__AGENT__V1__MISSION_BINDING__INIT;
    Aeroarc__Agent__V1__MissionDeploymentResult mdr =
        AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__INIT;
    Aeroarc__Agent__V1__CommandEvent ev = AEROARC__AGENT__V1__COMMAND_EVENT__INIT;
    Aeroarc__Agent__V1__CommandEvent *evs[1] = {&ev};
    Aeroarc__Agent__V1__CommandEvidence ce = AEROARC__AGENT__V1__COMMAND_EVIDENCE__INIT;
    Aeroarc__Agent__V1__FlightCompletionEvidence fce =
        AEROARC__AGENT__V1__FLIGHT_COMPLETION_EVIDENCE__INIT;
    int rc = 0;

    /* A real generation-2 frame: session, wal_id, intent. */
    f->wal_id = "3f2b8c1e-5d4a-4b6f-9e8d-7c6b5a4f3e2d";
    f->intent_id = "intent-9";
    f->intent_version = 4;
    env.payload_case = AEROARC__AGENT__V1__AGENT_STREAM_MESSAGE__PAYLOAD_TELEMETRY_FRAME;
    env.telemetry_frame = f;
    rc |= write_msg(dir, "gen2_frame.bin", &env.base);
    f->wal_id = "{3F2B8C1E-5D4A-4B6F-9E8D-7C6B5A4F3E2D}"; /* another accepted form */
    rc |= write_msg(dir, "gen2_frame_wal_braces.bin", &env.base);
    f->wal_id = "urn:uuid:00000000-0000-0000-0000-000000000000"; /* nil: refused */
    rc |= write_msg(dir, "gen2_frame_wal_nil.bin", &env.base);
    f->wal_id = "";

    ctx.flight_id = "flight-7";
    ctx.intent_id = "intent-9";
    ctx.intent_version = 4;
    ctx.aircraft_id = "ac-1";
    ack.command_id = "cmd-1";
    ack.status = AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_APPLIED;
    ack.active_context = &ctx;
    env.payload_case =
        AEROARC__AGENT__V1__AGENT_STREAM_MESSAGE__PAYLOAD_OPERATION_CONTEXT_COMMAND_ACK;
    env.operation_context_command_ack = &ack;
    rc |= write_msg(dir, "gen2_opctx_ack.bin", &env.base);

    acr.command_id = "cmd-2";
    acr.aircraft_id = "ac-1";
    acr.status = AEROARC__AGENT__V1__AIRCRAFT_COMMAND_RESULT__STATUS__STATUS_ACCEPTED;
    acr.message = "armed";
    env.payload_case = AEROARC__AGENT__V1__AGENT_STREAM_MESSAGE__PAYLOAD_AIRCRAFT_COMMAND_RESULT;
    env.aircraft_command_result = &acr;
    rc |= write_msg(dir, "gen2_aircraft_command_result.bin", &env.base);

    binding.mission_id = "m-1";
    binding.mission_version = 2;
    binding.mission_digest = "sha256:00";
    mdr.command_id = "cmd-3";
    mdr.binding = &binding;
    mdr.status = AEROARC__AGENT__V1__MISSION_DEPLOYMENT_RESULT__STATUS__STATUS_APPLIED;
    mdr.uploaded_item_count = 3;
    env.payload_case =
        AEROARC__AGENT__V1__AGENT_STREAM_MESSAGE__PAYLOAD_MISSION_DEPLOYMENT_RESULT;
    env.mission_deployment_result = &mdr;
    rc |= write_msg(dir, "gen2_mission_deployment_result.bin", &env.base);

    ev.event_id = "ev-1";
    ev.stage = "delivered";
    ev.occurred_at_unix_ms = 1700000000123;
    ce.command_id = "cmd-4";
    ce.command_digest = "sha256:11";
    ce.n_events = 1;
    ce.events = evs;
    ce.delivery_complete = 1;
    env.payload_case = AEROARC__AGENT__V1__AGENT_STREAM_MESSAGE__PAYLOAD_COMMAND_EVIDENCE;
    env.command_evidence = &ce;
    rc |= write_msg(dir, "gen2_command_evidence.bin", &env.base);

    env.payload_case =
        AEROARC__AGENT__V1__AGENT_STREAM_MESSAGE__PAYLOAD_FLIGHT_COMPLETION_EVIDENCE;
    env.flight_completion_evidence = &fce;
    rc |= write_msg(dir, "gen2_flight_completion_evidence.bin", &env.base); /* 32 00 */

    /* Rule 2, byte by byte. */
    static const uint8_t empty_in_1[] = {0x0a, 0x00};             /* seq 0, no name: seed */
    static const uint8_t seq_in_1[] = {0x0a, 0x02, 0x18, 0x07};   /* seq 7: generation 2 */
    static const uint8_t name_in_1[] = {0x0a, 0x05, 0x4a, 0x03, 'H', 'B', 'T'}; /* gen 2 */
    static const uint8_t session_only[] = {                        /* 's' = group: seed */
        0x0a, 0x25, 's', 'e', 's', 's', '-', '0', '0', '1', '1', '2', '2', '3', '3', '4',
        '4', '5', '5', '6', '6', '7', '7', '8', '8', '9', '9', 'a', 'a', 'b', 'b', 'c',
        'c', 'd', 'd', 'e', 'e', 'f', 'f'};
    static const uint8_t field7[] = {0x3a, 0x02, 0x08, 0x01};     /* unknown arm */
    static const uint8_t field1_varint[] = {0x08, 0x01};          /* wrong wire type */
    static const uint8_t arm3_truncated[] = {0x1a, 0x02, 0x0a, 0x7f}; /* undecodable */
    static const uint8_t two_arms[] = {0x32, 0x00, 0x0a, 0x02, 0x18, 0x01}; /* 6 then 1 */
    rc |= write_bytes(dir, "gen2_rule2_empty_frame.bin", empty_in_1, sizeof(empty_in_1));
    rc |= write_bytes(dir, "gen2_rule2_seq_only.bin", seq_in_1, sizeof(seq_in_1));
    rc |= write_bytes(dir, "gen2_rule2_msg_name_only.bin", name_in_1, sizeof(name_in_1));
    rc |= write_bytes(dir, "gen2_rule2_session_only.bin", session_only, sizeof(session_only));
    rc |= write_bytes(dir, "gen2_field7.bin", field7, sizeof(field7));
    rc |= write_bytes(dir, "gen2_field1_varint.bin", field1_varint, sizeof(field1_varint));
    rc |= write_bytes(dir, "gen2_arm3_truncated.bin", arm3_truncated, sizeof(arm3_truncated));
    rc |= write_bytes(dir, "gen2_two_arms.bin", two_arms, sizeof(two_arms));
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    PbFrame f = AEROARC__AGENT__V1__TELEMETRY_FRAME__INIT;
    PbEntry e[4];
    PbEntry *ptrs[4] = {&e[0], &e[1], &e[2], &e[3]};
    const char *kv[4][2] = {{"lat", "473977419"}, {"lon", "85455938"}, {"alt", "488"},
                            {"lat", "473977420"}};
    uint8_t raw[] = {0xfd, 0x1c, 0x00, 0x00, 0x2a, 0x01, 0x01, 0x21, 0x00, 0x00};
    int rc = 0;

    rc |= write_frame(dir, "empty.bin", &f);

    f.session_id = "sess-00112233445566778899aabbccddeeff";
    f.agent_id = "drone-1";
    f.seq = 1;
    f.sent_at_unix_ns = 1700000000123456789LL;
    f.device_timestamp_sec = 1234.5;
    f.dialect = "common";
    f.msg_id = 0;
    f.msg_name = "HEARTBEAT";
    rc |= write_frame(dir, "heartbeat.bin", &f);

    for (int i = 0; i < 4; i++) {
        aeroarc__agent__v1__telemetry_frame__fields_entry__init(&e[i]);
        e[i].key = (char *)kv[i][0];
        e[i].value = (char *)kv[i][1];
    }
    f.seq = UINT64_MAX;
    f.sent_at_unix_ns = -1;
    f.raw_mavlink.data = raw;
    f.raw_mavlink.len = sizeof(raw);
    f.dialect = "ardupilotmega";
    f.msg_id = 33;
    f.msg_name = "GLOBAL_POSITION_INT";
    f.n_fields = 4; /* "lat" twice: the last value wins */
    f.fields = ptrs;
    f.flight_id = "flight-2024-06-01";
    rc |= write_frame(dir, "global_position_int.bin", &f);

    f.agent_id = "drone-2"; /* another agent: frame_validate refuses it */
    f.msg_id = UINT32_MAX;
    f.n_fields = 1;
    rc |= write_frame(dir, "other_agent.bin", &f);

    f.agent_id = "drone-1";
    f.msg_id = 33;
    f.n_fields = 3;
    f.seq = 42;
    f.sent_at_unix_ns = 1700000000123456789LL;
    rc |= write_gen2(dir, &f);
    return rc == 0 ? 0 : 1;
}
