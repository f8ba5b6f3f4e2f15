/*
 * gen_frame_corpus.c - writes the seed corpus of fuzz_frame_decoder: a few
 * TelemetryFrames packed by protobuf-c, one file each, into the directory
 * given. Run by hand when the corpus needs refreshing; not part of the build.
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
    return rc == 0 ? 0 : 1;
}
