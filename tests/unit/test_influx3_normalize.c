/*
 * test_influx3_normalize.c - the sink-influxdb3 normalizer table
 * (plugins/sink-influxdb3/normalize.c, compiled in) without a relay: for
 * each of the eight messages of SPEC.md 13.3 one conversion and one
 * sentinel (a value that leaves its field out), checked on the line
 * normalize_frame writes.
 */
#include "normalize.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAL "0195f6a8-86d1-7be7-a104-3a814dc19f9e"
#define S(s) ((aero_str){(s), sizeof(s) - 1})

struct kv {
    const char *k, *v;
};

/* Normalize one generation-2 frame of msg_name with these fields: its
 * line (malloc'd), or the outcome's detail in err. */
static enum normalize_outcome run(const char *msg_name, const struct kv *kv, size_t n, char **line,
                                  char *err, size_t errlen)
{
    struct normalize_ctx *c;
    cr_assert_eq(normalize_create("relay-1", &c), 0);
    aero_kv fields[16];
    cr_assert_leq(n, 16u);
    for (size_t i = 0; i < n; i++)
        fields[i] = (aero_kv){{kv[i].k, strlen(kv[i].k)}, {kv[i].v, strlen(kv[i].v)}};
    aero_frame f = {
        .size = sizeof(aero_frame), .agent_id = S("agent-1"), .session_id = S("sess-1"), .seq = 42,
        .sent_at_unix_ns = 1783857600000000000LL, .dialect = S("common"), .msg_id = 0,
        .msg_name = {msg_name, strlen(msg_name)}, .fields = fields, .n_fields = n,
        .received_unix_ns = 1783857601000000000LL, .protocol = AERO_PROTOCOL_MULTIPLEXED,
        .wal_id = S(WAL), .relay_id = S("relay-1"),
    };
    struct lp_buf b = {0};
    enum normalize_message m;
    enum normalize_outcome o = normalize_frame(c, &f, &b, &m, err, errlen);
    *line = o == NZ_ROW ? strndup(b.p, b.len) : NULL;
    free(b.p);
    normalize_destroy(c);
    return o;
}

/* Whether the line's field set (between the tags and the timestamp) holds
 * exactly the item "key=value" (want) or any "key=" item (want has no '='). */
static bool has(const char *line, const char *want)
{
    const char *fs = strchr(line, ' '), *ts = strrchr(line, ' ');
    cr_assert(fs && ts && fs < ts, "%s", line);
    char *set = strndup(fs + 1, (size_t)(ts - fs - 1));
    bool found = false, key_only = !strchr(want, '=');
    size_t wl = strlen(want);
    for (char *tok = strtok(set, ","); tok && !found; tok = strtok(NULL, ","))
        found = key_only ? strncmp(tok, want, wl) == 0 && tok[wl] == '='
                         : strcmp(tok, want) == 0;
    free(set);
    return found;
}

struct nz_case {
    const char *msg_name, *message; /* as sent; its canonical name */
    struct kv kv[8];
    size_t n;
    const char *conversion; /* "field=value" that must be in the line */
    const char *sentinel;   /* a field that must be left out */
};

static const struct nz_case cases[] = {
    {"GlobalPositionInt", "global_position_int",
     {{"Lat", "418781000"}, {"Lon", "-876291000"}, {"Hdg", "65535"}}, 3,
     "latitude_deg=41.8781", "heading_deg"}, /* degE7 / 1e7; Hdg 65535 unknown */
    {"BATTERY_STATUS", "battery_status",
     {{"Id", "3"}, {"Temperature", "2550"}, {"CurrentBattery", "-1"}}, 3,
     "battery_temperature_c=25.5", "battery_current_a"}, /* cdegC / 100; -1 unknown */
    {"Heartbeat", "heartbeat",
     {{"Type", "MAV_TYPE_QUADROTOR"}, {"CustomMode", "-1"}}, 2,
     "vehicle_type=\"mav_type_quadrotor\"", "custom_mode"}, /* enum lower-cased; unsigned
                                                                refuses a sign: skipped */
    {"SysStatus", "sys_status",
     {{"Load", "1001"}, {"DropRateComm", "250"}}, 2,
     "communication_drop_rate_pct=2.5", "mainloop_load_pct"}, /* c% / 100; Load > 1000 */
    {"VFR_HUD", "vfr_hud",
     {{"Groundspeed", "84"}, {"Heading", "361"}, {"Throttle", "55"}}, 3,
     "groundspeed_mps=84", "heading_deg"}, /* float kept a float (no i/u); 361 > 360 */
    {"ExtendedSysState", "extended_sys_state",
     {{"VtolState", "MAV_VTOL_STATE_MC"}, {"LandedState", "  "}}, 2,
     "vtol_state=\"mav_vtol_state_mc\"", "landed_state"}, /* enum; blank optional skipped */
    {"GPS_RAW_INT", "gps_raw_int",
     {{"Eph", "150"}, {"Epv", "65535"}, {"Yaw", "0"}, {"TimeUsec", "7"}}, 4,
     "gps_hdop=1.5", "gps_vdop"}, /* / 100; 65535 unknown */
    {"SystemTime", "system_time",
     {{"TimeUnixUsec", "0"}, {"TimeBootMs", "99"}}, 2,
     "device_boot_time_ms=99u", "device_unix_time_usec"}, /* as is; 0 unknown */
};

Test(influx3_normalize, each_normalizer_one_conversion_and_one_sentinel)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct nz_case *t = &cases[i];
        char *line, err[256] = "";
        cr_assert_eq(run(t->msg_name, t->kv, t->n, &line, err, sizeof(err)), NZ_ROW, "%s: %s",
                     t->msg_name, err);
        char tag[64];
        snprintf(tag, sizeof(tag), ",message_name=%s,", t->message);
        cr_expect_not_null(strstr(line, tag), "%s: %s", t->msg_name, line);
        cr_expect(has(line, t->conversion), "%s: want %s in %s", t->msg_name, t->conversion, line);
        cr_expect(!has(line, t->sentinel), "%s: %s left out: %s", t->msg_name, t->sentinel, line);
        free(line);
    }
}

/* The extra sentinels of the table, each alone. */
Test(influx3_normalize, more_sentinels)
{
    struct {
        const char *msg;
        struct kv kv[3];
        size_t n;
        const char *absent;
    } more[] = {
        {"GPSRawInt", {{"Yaw", "0"}}, 1, "gps_yaw_deg"},
        {"GPSRawInt", {{"SatellitesVisible", "255"}}, 1, "gps_satellites_visible"},
        {"GPSRawInt", {{"HAcc", "4294967295"}}, 1, "gps_horizontal_accuracy_m"},
        {"GPSRawInt", {{"Lat", "900000001"}}, 1, "gps_latitude_deg"},
        {"BatteryStatus", {{"Id", "0"}, {"Temperature", "32767"}}, 2, "battery_temperature_c"},
        {"BatteryStatus", {{"Id", "0"}, {"BatteryRemaining", "101"}}, 2, "battery_remaining_pct"},
        {"BatteryStatus", {{"Id", "0"}, {"TimeRemaining", "0"}}, 2, "battery_time_remaining_s"},
        {"BatteryStatus", {{"Id", "0"}, {"Voltages", "[65535,65535]"}}, 2, "battery_voltage_v"},
        {"VfrHud", {{"Throttle", "101"}}, 1, "throttle_pct"},
        {"GlobalPositionInt", {{"Lat", "0"}, {"Lon", "0"}, {"Hdg", "36000"}}, 3, "heading_deg"},
        {"GlobalPositionInt", {{"Lat", "0"}, {"Lon", "0"}, {"Vx", "3"}}, 3, "groundspeed_mps"},
    };
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
        char *line, err[256] = "";
        cr_assert_eq(run(more[i].msg, more[i].kv, more[i].n, &line, err, sizeof(err)), NZ_ROW,
                     "%s: %s", more[i].msg, err);
        cr_expect(!has(line, more[i].absent), "%s: %s left out: %s", more[i].msg, more[i].absent,
                  line);
        free(line);
    }
}

/* groundspeed_mps is Go's math.Hypot ÷ 100, p·√(1+(q/p)²) with p the larger
 * magnitude, not glibc's correctly rounded hypot: these pairs are ones
 * where the two differ in the last digit (glibc: 5.385164807134504,
 * 3.9961981932832114, 13.58029822942044). Expected values computed in
 * python3 by Go's formula and printed shortest, as Go's 'g' -1. */
Test(influx3_normalize, groundspeed_is_gos_hypot_to_the_last_digit)
{
    struct {
        const char *vx, *vy, *want;
    } pairs[] = {
        {"500", "200", "groundspeed_mps=5.385164807134505"},
        {"-300", "-264", "groundspeed_mps=3.9961981932832105"},
        {"1234", "-567", "groundspeed_mps=13.580298229420443"},
        {"200", "500", "groundspeed_mps=5.385164807134505"}, /* order does not matter */
        {"0", "-250", "groundspeed_mps=2.5"},
        {"0", "0", "groundspeed_mps=0"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        struct kv kv[] = {{"Lat", "0"}, {"Lon", "0"}, {"Vx", pairs[i].vx}, {"Vy", pairs[i].vy}};
        char *line, err[256] = "";
        cr_assert_eq(run("GlobalPositionInt", kv, 4, &line, err, sizeof(err)), NZ_ROW, "%s", err);
        cr_expect(has(line, pairs[i].want), "Vx %s Vy %s: want %s in %s", pairs[i].vx,
                  pairs[i].vy, pairs[i].want, line);
        free(line);
    }
}

/* Required keys and the range checks fail with SPEC 13.3's texts. */
Test(influx3_normalize, required_keys_and_ranges_fail_with_their_text)
{
    struct {
        const char *msg;
        struct kv kv[2];
        size_t n;
        const char *detail;
    } bad[] = {
        {"GlobalPositionInt", {{"Lat", "1"}}, 1, "required field Lon is missing"},
        {"GlobalPositionInt", {{"Lat", "1"}, {"Lon", "1800000001"}}, 2,
         "latitude or longitude outside valid range"},
        {"BatteryStatus", {{"Id", "256"}}, 1, "battery ID is invalid"},
        {"BatteryStatus", {{"Id", "-1"}}, 1, "parse required field Id: "},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *line, err[256] = "";
        cr_expect_eq(run(bad[i].msg, bad[i].kv, bad[i].n, &line, err, sizeof(err)), NZ_FAILED,
                     "%s", bad[i].detail);
        cr_expect_eq(strncmp(err, bad[i].detail, strlen(bad[i].detail)), 0, "%s: %s", bad[i].detail, err);
    }
    char *line, err[256];
    cr_expect_eq(run("Attitude", NULL, 0, &line, err, sizeof(err)), NZ_UNSUPPORTED);
}

/* SPEC 13.2: floats are read as Go's ParseFloat reads them (VFR_HUD's
 * optional Airspeed: written when it parses, left out when it does not). */
Test(influx3_normalize, floats_parse_as_gos_parsefloat)
{
    static char long_one[80];
    memset(long_one, '0', sizeof(long_one) - 1);
    memcpy(long_one, "1.", 2); /* "1.000…0": 79 bytes, Go reads 1 */
    struct {
        const char *text, *want; /* want NULL: left out */
    } t[] = {
        {"12.5", "airspeed_mps=12.5"},
        {"+.5", "airspeed_mps=0.5"},
        {"5.", "airspeed_mps=5"},
        {"1e1", "airspeed_mps=10"},
        {"0x1p4", "airspeed_mps=16"},
        {"0X.8P1", "airspeed_mps=1"},
        {"1_000.5", "airspeed_mps=1000.5"},
        {"0x_1p4", "airspeed_mps=16"},
        {"1e1_0", "airspeed_mps=1e+10"},
        {long_one, "airspeed_mps=1"},
        {"0x10", NULL},     /* a hex mantissa needs its p exponent */
        {"1__0", NULL},     /* '_' only between digits */
        {"_1", NULL},
        {"1_", NULL},
        {"1_.5", NULL},
        {"1e", NULL},
        {"1.2.3", NULL},
        {"inf", NULL},      /* Go reads it; SPEC 13.2 refuses it */
        {"NaN", NULL},
        {"infinity", NULL},
        {"1e400", NULL},    /* out of range */
        {"0x1", NULL},
        {"1 0", NULL},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct kv kv[1] = {{"Airspeed", t[i].text}};
        char *line, err[256] = "";
        cr_assert_eq(run("VFR_HUD", kv, 1, &line, err, sizeof(err)), NZ_ROW, "%s: %s", t[i].text,
                     err);
        if (t[i].want)
            cr_expect(has(line, t[i].want), "\"%s\": want %s in %s", t[i].text, t[i].want, line);
        else
            cr_expect(!has(line, "airspeed_mps"), "\"%s\" was read: %s", t[i].text, line);
        free(line);
    }
}

/* SPEC 13.1 rule 1: the spellings agents use. */
Test(influx3_normalize, canonical_names)
{
    const char *in[][2] = {
        {"*common.MessageGlobalPositionInt", "global_position_int"},
        {"GLOBAL_POSITION_INT", "global_position_int"}, {"VfrHud", "vfr_hud"},
        {"VFR_HUD", "vfr_hud"}, {"SystemStatus", "sys_status"}, {"GPSRawInt", "gps_raw_int"},
    };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        char out[64];
        normalize_canonical_name(in[i][0], strlen(in[i][0]), out, sizeof(out));
        cr_expect_str_eq(out, in[i][1], "%s", in[i][0]);
    }
}
