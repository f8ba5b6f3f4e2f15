/*
 * influx3-nzbench.c - what sink-influxdb3 spends per frame before the HTTP
 * request: normalize_frame (name lookup, parsing the fields map, the
 * message's table, base checks) and encoding the aircraft_telemetry line.
 * Prints the median ns per frame over R rounds of N frames for a few
 * messages, one JSON line each. Not run in CI (docs/benchmarks.md).
 *
 *   influx3-nzbench [rounds] [frames per round]
 */
#include "normalize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S(s) ((aero_str){(s), sizeof(s) - 1})
#define KV(k, v) {S(k), S(v)}

static const aero_kv position[] = {
    KV("TimeBootMs", "123456"), KV("Lat", "418781000"), KV("Lon", "-876291000"),
    KV("Alt", "123450"), KV("RelativeAlt", "20345"), KV("Vx", "300"), KV("Vy", "-400"),
    KV("Vz", "12"), KV("Hdg", "27000"),
};
static const aero_kv battery[] = {
    KV("Id", "0"), KV("BatteryFunction", "MAV_BATTERY_FUNCTION_ALL"),
    KV("Type", "MAV_BATTERY_TYPE_LIPO"), KV("Temperature", "2550"),
    KV("Voltages", "[4100,4100,4100,4100,65535,65535,65535,65535,65535,65535]"),
    KV("CurrentBattery", "1250"), KV("CurrentConsumed", "830"), KV("EnergyConsumed", "400"),
    KV("BatteryRemaining", "76"), KV("TimeRemaining", "1200"),
};
static const aero_kv heartbeat[] = {
    KV("Type", "MAV_TYPE_QUADROTOR"), KV("Autopilot", "MAV_AUTOPILOT_PX4"),
    KV("BaseMode", "MAV_MODE_FLAG_SAFETY_ARMED|MAV_MODE_FLAG_CUSTOM_MODE_ENABLED"),
    KV("CustomMode", "65536"), KV("SystemStatus", "MAV_STATE_ACTIVE"), KV("MavlinkVersion", "3"),
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 201, n = argc > 2 ? atol(argv[2]) : 2000;
    if (rounds < 1 || n < 1) {
        fputs("usage: influx3-nzbench [rounds] [frames per round]\n", stderr);
        return 2;
    }
    struct normalize_ctx *c;
    if (normalize_create("relay-1", &c) != 0)
        return 1;
    struct {
        const char *name, *msg_name;
        const aero_kv *kv;
        size_t n;
    } msgs[] = {
        {"global_position_int", "*common.MessageGlobalPositionInt", position,
         sizeof(position) / sizeof(position[0])},
        {"battery_status", "BATTERY_STATUS", battery, sizeof(battery) / sizeof(battery[0])},
        {"heartbeat", "Heartbeat", heartbeat, sizeof(heartbeat) / sizeof(heartbeat[0])},
    };
    double *per = malloc((size_t)rounds * sizeof(*per));
    struct lp_buf b = {0};
    if (!per)
        return 1;
    for (size_t m = 0; m < sizeof(msgs) / sizeof(msgs[0]); m++) {
        aero_frame f = {
            .size = sizeof(aero_frame), .agent_id = S("agent-1"),
            .session_id = S("0195f6a8-0000-7000-8000-000000000001"), .sent_at_unix_ns = 1783857600000000000LL,
            .dialect = S("common"), .msg_id = 33, .msg_name = {msgs[m].msg_name, strlen(msgs[m].msg_name)},
            .fields = msgs[m].kv, .n_fields = msgs[m].n, .flight_id = S("flight-7"),
            .received_unix_ns = 1783857601000000000LL, .protocol = AERO_PROTOCOL_MULTIPLEXED,
            .wal_id = S("0195f6a8-86d1-7be7-a104-3a814dc19f9e"), .intent_id = S("intent-9"),
            .intent_version = 4, .relay_id = S("relay-1"), .operator_id = S("op-1"),
            .aircraft_id = S("aircraft-1"),
        };
        size_t bytes = 0;
        for (long r = 0; r < rounds; r++) {
            b.len = 0;
            int64_t t0 = now_ns();
            for (long i = 0; i < n; i++) {
                enum normalize_message msg;
                char err[256];
                f.seq = (uint64_t)(r * n + i);
                f.sent_at_unix_ns += 1000000;
                if (normalize_frame(c, &f, &b, &msg, err, sizeof(err)) != NZ_ROW) {
                    fprintf(stderr, "influx3-nzbench: %s: %s\n", msgs[m].name, err);
                    return 1;
                }
            }
            per[r] = (double)(now_ns() - t0) / (double)n;
            bytes = b.len / (size_t)n;
        }
        qsort(per, (size_t)rounds, sizeof(*per), cmp_double);
        printf("{\"message\":\"%s\",\"fields\":%zu,\"line_bytes\":%zu,\"rounds\":%ld,"
               "\"frames_per_round\":%ld,\"ns_per_frame_median\":%.0f,\"ns_per_frame_min\":%.0f}\n",
               msgs[m].name, msgs[m].n, bytes, rounds, n, per[rounds / 2], per[0]);
    }
    free(b.p);
    free(per);
    normalize_destroy(c);
    return 0;
}
