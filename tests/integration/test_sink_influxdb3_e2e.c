/*
 * test_sink_influxdb3_e2e.c - the real relay with a [sink:telemetry] on
 * sink-influxdb3 (and sink-file beside it) writing to influx3_server.py, a
 * stand-in for InfluxDB 3's write API. Frames go over gRPC as a
 * generation-2 agent would send them; the stored rows, the requests and the
 * acks are checked against SPEC.md section 13. Every wait has a deadline.
 */
#include "harness.h"
#include "http_client.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOKEN "tok-secret-123"
#define WAL "0195f6a8-86d1-7be7-a104-3a814dc19f9e"
#define T0 1783857600000000000LL

static struct relay_proc relay;
static struct rc_channel *ch;
static pid_t srv_pid;
static int srv_port;
static char srv_ready[128];
static void (*before_start)(void); /* see start_auth */

static bool srv_is_ready(void *arg)
{
    (void)arg;
    return access(srv_ready, F_OK) == 0;
}

static void srv_start(void)
{
    srv_port = harness_free_port();
    snprintf(srv_ready, sizeof(srv_ready), "/tmp/aero-influx3-%d-%d.ready", (int)getpid(), srv_port);
    unlink(srv_ready);
    char port[16];
    snprintf(port, sizeof(port), "%d", srv_port);
    srv_pid = fork();
    cr_assert_geq(srv_pid, 0);
    if (srv_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl("/usr/bin/python3", "python3", AERO_SOURCE_DIR "/tests/integration/influx3_server.py",
              "--port", port, "--token", TOKEN, "--ready", srv_ready, (char *)NULL);
        _exit(127);
    }
    cr_assert(harness_wait_for(srv_is_ready, NULL, 20000), "influx3_server.py not ready");
}

static void setup(void)
{
    memset(&relay, 0, sizeof(relay));
    ch = NULL;
    srv_pid = 0;
    before_start = NULL;
}

static void teardown(void)
{
    harness_kill(&relay, &ch);
    if (srv_pid > 0) {
        kill(srv_pid, SIGKILL);
        waitpid(srv_pid, NULL, 0);
        unlink(srv_ready);
    }
}

TestSuite(influxdb3_e2e, .init = setup, .fini = teardown, .timeout = 60);

/* The labels of the relay's sink-influxdb3 instance's series. */
#define TELEMETRY "sink=\"telemetry\",plugin=\"sink-influxdb3\""

/* GET or POST path on the server: the body (malloc'd). */
static char *srv(const char *method, const char *path)
{
    struct http_reply rep;
    cr_assert_eq(http_request(srv_port, method, path, 5000, &rep), 0, "%s %s", method, path);
    cr_assert(rep.status == 200 || rep.status == 204, "%s %s: %d", method, path, rep.status);
    return rep.body ? rep.body : strdup("");
}

static size_t count_lines(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *line = strndup(p, len);
        n += !needle || strstr(line, needle) != NULL;
        free(line);
        p += len + (nl != NULL);
    }
    return n;
}

static size_t rows_with(const char *needle)
{
    char *b = srv("GET", "/rows");
    size_t n = count_lines(b, needle);
    free(b);
    return n;
}

/* One series of the relay's /metrics (-1: absent). */
static double relay_value(const char *series)
{
    struct http_reply r;
    cr_assert_eq(http_request(relay.http_port, "GET", "/metrics", 5000, &r), 0);
    double v = http_metric_value(r.body, series);
    http_reply_free(&r);
    return v;
}

static size_t requests(void)
{
    char *b = srv("GET", "/requests");
    size_t n = count_lines(b, NULL);
    free(b);
    return n;
}

/* The stored row whose frame_id tag contains `id` (malloc'd JSON line). */
static char *row_of(const char *id)
{
    char *b = srv("GET", "/rows"), *found = NULL;
    for (char *p = b; *p && !found;) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *line = strndup(p, len);
        if (strstr(line, id))
            found = line;
        else
            free(line);
        p += len + (nl != NULL);
    }
    free(b);
    cr_assert_not_null(found, "no row for %s", id);
    return found;
}

/* Start the relay with [sink:telemetry] (auth: its token keys, may use
 * %DIR%; + extra keys) and sink-file. before_start, if set, runs once the
 * scratch dir exists and before the relay starts. */
static void start_auth(const char *auth, const char *extra);

static void start(const char *extra)
{
    start_auth("token = " TOKEN "\n", extra);
}

static void start_auth(const char *auth, const char *extra)
{
    srv_start();
    harness_prepare(&relay);
    relay.http = true; /* the sink's metrics */
    if (before_start)
        before_start();
    char map[400], body[2048];
    snprintf(map, sizeof(map), "%s/mappings", relay.dir);
    FILE *f = fopen(map, "w");
    cr_assert_not_null(f);
    fputs("agent-1 op-1 aircraft-1\n", f);
    fclose(f);
    chmod(map, 0644);
    snprintf(body, sizeof(body),
             "[control]\nagent_mappings_file = %s\n"
             "[sink:telemetry]\nplugin = sink-influxdb3\nhost = http://127.0.0.1:%d\n"
             "database = aero_arc\n%swrite_timeout_ms = 2000\n"
             "retry_backoff_ms = 20\nmax_retries = 2\n%s"
             "[sink:archive]\nplugin = sink-file\npath = %%DIR%%/data\n",
             map, srv_port, auth, extra ? extra : "");
    ch = harness_start(&relay, "relay_id = relay-1\n", body);
}

struct agent {
    struct rc_stream *s;
    char session[128];
};

static void agent_open(struct agent *a, const char *id)
{
    struct rc_status st;
    harness_register(ch, id, a->session, sizeof(a->session));
    a->s = rc_stream_open_gen2(ch, id, a->session, NULL, 0, &st);
    cr_assert_not_null(a->s, "%s", st.message);
}

static void agent_close(struct agent *a)
{
    struct rc_status st;
    cr_assert_eq(rc_stream_close_send(a->s, 5000), 0);
    cr_assert_eq(rc_stream_finish(a->s, &st, 10000), 0);
    rc_stream_free(a->s);
}

/* Send one frame (session, wal_id filled in unless wal is NULL -> none)
 * and wait for its ack: the status; the error text into err. */
static int send_frame(struct agent *a, struct rc_frame f, const char *wal, char *err, size_t errlen)
{
    f.session_id = a->session;
    f.wal_id = wal;
    cr_assert_eq(rc_stream_send_gen2_frame(a->s, &f, 5000), 0);
    struct rc_relay_msg m;
    cr_assert_eq(rc_stream_recv_gen2(a->s, &m, 15000), 1, "no ack for seq %" PRIu64, f.seq);
    cr_assert_eq(m.arm, RC_RELAY_TELEMETRY_ACK);
    cr_assert_eq(m.ack.seq, f.seq);
    if (err)
        snprintf(err, errlen, "%s", m.ack.error ? m.ack.error : "");
    return m.ack.status;
}

#define FIELDS(...) .fields = (const struct rc_field[]){__VA_ARGS__}, \
    .n_fields = sizeof((const struct rc_field[]){__VA_ARGS__}) / sizeof(struct rc_field)

static const struct rc_field position_fields[] = {
    {"Lat", "418781000"}, {"Lon", "-876291000"}, {"Alt", "123450"}, {"RelativeAlt", "-5"},
    {"Vx", "300"}, {"Vy", "-400"}, {"Vz", "12"}, {"Hdg", "65535"}, {"TimeBootMs", "0"},
};

static struct rc_frame position(const char *agent, uint64_t seq)
{
    return (struct rc_frame){
        .agent_id = agent, .seq = seq, .sent_at_unix_ns = T0 + (int64_t)seq * 1000000,
        .dialect = " Common ", .msg_id = 33, .msg_name = "*common.MessageGlobalPositionInt",
        .flight_id = "flight-7", .intent_id = "intent-9", .intent_version = 4,
        .fields = position_fields, .n_fields = sizeof(position_fields) / sizeof(position_fields[0]),
    };
}

Test(influxdb3_e2e, a_mapped_position_frame_is_exactly_the_section_13_4_row)
{
    start(NULL);
    struct agent a;
    char err[600];
    agent_open(&a, "agent-1");
    cr_assert_eq(send_frame(&a, position("agent-1", 42), WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    /* OK means stored: no wait. */
    char *row = row_of("7:agent-1:1783857600042000000:42");
    const char *want[] = {
        "\"table\": \"aircraft_telemetry\"",
        "\"tags\": {\"agent_id\": \"agent-1\", \"frame_id\": \"7:agent-1:1783857600042000000:42\", "
        "\"message_name\": \"global_position_int\", \"schema_version\": \"1\"}",
        "\"time\": 1783857600042000000",
        "\"agent_capture_time_ns\": [\"int64\", 1783857600042000000]",
        "\"aircraft_id\": [\"string\", \"aircraft-1\"]",
        "\"operator_id\": [\"string\", \"op-1\"]",
        "\"altitude_msl_m\": [\"float64\", 123.45]",
        "\"relative_altitude_m\": [\"float64\", -0.005]",
        "\"latitude_deg\": [\"float64\", 41.8781]",
        "\"longitude_deg\": [\"float64\", -87.6291]",
        "\"velocity_north_mps\": [\"float64\", 3.0]",
        "\"velocity_east_mps\": [\"float64\", -4.0]",
        "\"velocity_down_mps\": [\"float64\", 0.12]",
        "\"groundspeed_mps\": [\"float64\", 5.0]",
        "\"device_boot_time_ms\": [\"uint64\", 0]",
        "\"device_time_value\": [\"uint64\", 0]",
        "\"device_time_unit\": [\"string\", \"milliseconds\"]",
        "\"device_time_basis\": [\"string\", \"system_boot\"]",
        "\"dialect\": [\"string\", \"common\"]",
        "\"flight_id\": [\"string\", \"flight-7\"]",
        "\"intent_id\": [\"string\", \"intent-9\"]",
        "\"intent_version\": [\"uint64\", 4]",
        "\"message_id\": [\"uint64\", 33]",
        "\"relay_id\": [\"string\", \"relay-1\"]",
        "\"relay_time_ns\": [\"int64\", ",
        "\"timestamp_source\": [\"string\", \"agent_capture\"]",
        "\"wal_id\": [\"string\", \"" WAL "\"]",
        "\"wal_sequence\": [\"uint64\", 42]",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect_not_null(strstr(row, want[i]), "missing %s in %s", want[i], row);
    cr_expect_null(strstr(row, "heading_deg"), "Hdg 65535 is left out: %s", row);
    cr_expect_null(strstr(row, "mavlink_system_id"), "%s", row);
    /* Exactly these fields: 17 common + 9 of the message (count the typed values). */
    size_t n = 0;
    for (const char *p = row; (p = strstr(p, "\": [\"")); p++)
        n++;
    cr_expect_eq(n, 26, "%zu fields: %s", n, row);
    char *session = strstr(row, "\"session_id\": [\"string\", \"");
    cr_assert_not_null(session);
    cr_expect_eq(strncmp(session + 26, a.session, strlen(a.session)), 0, "%s", row);
    free(row);
    agent_close(&a);

    /* The agent replays it after reconnecting: one row, not two; the new
     * session is a field, so the row is overwritten, not added. */
    agent_open(&a, "agent-1");
    cr_assert_eq(send_frame(&a, position("agent-1", 42), WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    cr_expect_eq(rows_with(NULL), 1);
    row = row_of(":42");
    cr_expect_not_null(strstr(row, a.session), "the replay's session: %s", row);
    free(row);

    /* Unsupported message, a frame without wal_id: OK, no request. */
    size_t before = requests();
    struct rc_frame att = position("agent-1", 43);
    att.msg_name = "Attitude";
    cr_expect_eq(send_frame(&a, att, WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    cr_expect_eq(send_frame(&a, position("agent-1", 44), NULL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    cr_expect_eq(requests(), before, "no request for those");

    /* Lat without Lon: PERMANENT_ERROR with the exact text. */
    struct rc_frame bad = position("agent-1", 45);
    bad.fields = (const struct rc_field[]){{"Lat", "1"}};
    bad.n_fields = 1;
    cr_expect_eq(send_frame(&a, bad, WAL, err, sizeof(err)), RC_ACK_PERMANENT_ERROR);
    cr_expect_str_eq(err, "telemetry normalization failed: normalize telemetry envelope: "
                          "required field Lon is missing");
    bad.seq = 46;
    bad.fields = (const struct rc_field[]){{"Lat", "900000001"}, {"Lon", "0"}};
    bad.n_fields = 2;
    cr_expect_eq(send_frame(&a, bad, WAL, err, sizeof(err)), RC_ACK_PERMANENT_ERROR);
    cr_expect_str_eq(err, "telemetry normalization failed: normalize telemetry envelope: "
                          "latitude or longitude outside valid range");
    bad.seq = 47;
    bad.fields = (const struct rc_field[]){{"Lat", "1x"}, {"Lon", "0"}};
    cr_expect_eq(send_frame(&a, bad, WAL, err, sizeof(err)), RC_ACK_PERMANENT_ERROR);
    cr_expect_str_eq(err, "telemetry normalization failed: normalize telemetry envelope: "
                          "parse required field Lat: strconv.ParseInt: parsing \"1x\": invalid syntax");
    agent_close(&a);

    /* An unmapped agent: same table, no aircraft_id or operator_id. */
    agent_open(&a, "agent-2");
    cr_assert_eq(send_frame(&a, position("agent-2", 1), WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    row = row_of("7:agent-2:");
    cr_expect_not_null(strstr(row, "\"table\": \"aircraft_telemetry\""), "%s", row);
    cr_expect_null(strstr(row, "aircraft_id"), "%s", row);
    cr_expect_null(strstr(row, "operator_id"), "%s", row);
    free(row);
    agent_close(&a);

    /* A seed agent: OK, nothing written. */
    before = requests();
    struct rc_status st;
    harness_register(ch, "agent-3", NULL, 0);
    struct rc_stream *s = rc_stream_open(ch, "agent-3", NULL, 0, &st);
    size_t counts[4] = {0};
    harness_stream_frames(s, "agent-3", 1, 3, counts, err, sizeof(err));
    cr_expect_eq(counts[RC_ACK_OK], 3, "%s", err);
    rc_stream_free(s);
    cr_expect_eq(requests(), before, "seed frames are not written");

    /* sink-file got the same frames beside it (the refused ones too). */
    rc_close(ch);
    ch = NULL;
    cr_assert_eq(relay_stop(&relay, 20000), 0);
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/data", relay.dir);
    char *files = harness_read_jsonl_dir(dir, NULL);
    cr_expect_eq(count_lines(files, "\"agent_id\":\"agent-1\""), 7, "%s", files);
    cr_expect_eq(count_lines(files, "\"agent_id\":\"agent-2\""), 1);
    free(files);
    /* The token appears in no log line. */
    char *log = harness_read_file(relay.stderr_path, NULL);
    cr_expect_null(strstr(log, TOKEN));
    free(log);
}

/* Each normalizer: conversions and sentinels (SPEC 13.3). */
Test(influxdb3_e2e, each_normalizer_converts_and_drops_sentinels)
{
    start(NULL);
    struct agent a;
    char err[600];
    agent_open(&a, "agent-1");
    struct {
        struct rc_frame f;
        const char *has[8];
        const char *lacks[4];
    } cases[] = {
        {{.msg_name = "BATTERY_STATUS", .msg_id = 147,
          FIELDS({"Id", "3"}, {"BatteryFunction", "MAV_BATTERY_FUNCTION_ALL"},
                 {"Temperature", "32767"}, {"Voltages", "[4000, 65535,4100]"},
                 {"VoltagesExt", "[0,100]"}, {"CurrentBattery", "-1"}, {"CurrentConsumed", "-5"},
                 {"EnergyConsumed", "72"}, {"BatteryRemaining", "101"}, {"TimeRemaining", "0"})},
         {"\"battery_id\": [\"uint64\", 3]", "\"battery_function\": [\"string\", \"mav_battery_function_all\"]",
          "\"battery_voltage_v\": [\"float64\", 8.2]", "\"battery_consumed_mah\": [\"int64\", -5]",
          "\"battery_consumed_wh\": [\"float64\", 2.0]"},
         {"battery_temperature_c", "battery_current_a", "battery_remaining_pct", "battery_time_remaining_s"}},
        {{.msg_name = "Heartbeat", .msg_id = 0,
          FIELDS({"Type", "MAV_TYPE_QUADROTOR"}, {"Autopilot", "MAV_AUTOPILOT_PX4"},
                 {"BaseMode", "MAV_MODE_FLAG_SAFETY_ARMED|MAV_MODE_FLAG_CUSTOM_MODE_ENABLED"},
                 {"SystemStatus", "MAV_STATE_ACTIVE"}, {"CustomMode", "65536"}, {"MavlinkVersion", "3"})},
         {"\"vehicle_type\": [\"string\", \"mav_type_quadrotor\"]",
          "\"base_mode\": [\"string\", \"mav_mode_flag_safety_armed|mav_mode_flag_custom_mode_enabled\"]",
          "\"system_status\": [\"string\", \"mav_state_active\"]",
          "\"custom_mode\": [\"uint64\", 65536]", "\"mavlink_version\": [\"uint64\", 3]",
          "\"message_name\": \"heartbeat\""}, {"device_time_unit"}},
        {{.msg_name = "SystemStatus", .msg_id = 1,
          FIELDS({"Load", "1001"}, {"DropRateComm", "250"}, {"ErrorsCount4", "7"},
                 {"OnboardControlSensorsHealth", "GYRO|GPS"})},
         {"\"message_name\": \"sys_status\"", "\"communication_drop_rate_pct\": [\"float64\", 2.5]",
          "\"autopilot_error_count_4\": [\"uint64\", 7]", "\"sensors_health\": [\"string\", \"gyro|gps\"]"},
         {"mainloop_load_pct"}},
        {{.msg_name = "VfrHud", .msg_id = 74,
          FIELDS({"Airspeed", "12.5"}, {"Groundspeed", "84"}, {"Climb", "-0.25"}, {"Alt", "1e3"},
                 {"Heading", "361"}, {"Throttle", "55"})},
         {"\"airspeed_mps\": [\"float64\", 12.5]", "\"groundspeed_mps\": [\"float64\", 84.0]",
          "\"climb_rate_mps\": [\"float64\", -0.25]", "\"altitude_msl_m\": [\"float64\", 1000.0]",
          "\"throttle_pct\": [\"float64\", 55.0]"}, {"heading_deg"}},
        {{.msg_name = "EXTENDED_SYS_STATE", .msg_id = 245,
          FIELDS({"VtolState", "MAV_VTOL_STATE_MC"}, {"LandedState", "MAV_LANDED_STATE_IN_AIR"})},
         {"\"vtol_state\": [\"string\", \"mav_vtol_state_mc\"]",
          "\"landed_state\": [\"string\", \"mav_landed_state_in_air\"]"}, {NULL}},
        {{.msg_name = "GPSRawInt", .msg_id = 24,
          FIELDS({"TimeUsec", "123456789"}, {"FixType", "GPS_FIX_TYPE_3D_FIX"}, {"Lat", "900000001"},
                 {"Lon", "1800000000"}, {"Eph", "65535"}, {"Epv", "150"}, {"SatellitesVisible", "255"},
                 {"HAcc", "4294967295"}, {"VAcc", "4294967294"}, {"HdgAcc", "12345"}, {"Yaw", "0"})},
         {"\"device_time_usec\": [\"uint64\", 123456789]", "\"device_time_unit\": [\"string\", \"microseconds\"]",
          "\"device_time_basis\": [\"string\", \"unknown\"]", "\"gps_longitude_deg\": [\"float64\", 180.0]",
          "\"gps_vdop\": [\"float64\", 1.5]", "\"gps_vertical_accuracy_m\": [\"float64\", 4294967.294]",
          "\"gps_heading_accuracy_deg\": [\"float64\", 0.12345]"},
         {"gps_latitude_deg", "gps_hdop", "gps_satellites_visible", "gps_yaw_deg"}},
        {{.msg_name = "SYSTEM_TIME", .msg_id = 2, FIELDS({"TimeUnixUsec", "0"}, {"TimeBootMs", "99"})},
         {"\"device_boot_time_ms\": [\"uint64\", 99]"}, {"device_unix_time_usec", "device_time_value"}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rc_frame f = cases[i].f;
        f.agent_id = "agent-1";
        f.seq = 100 + i;
        f.sent_at_unix_ns = T0 + (int64_t)i;
        cr_assert_eq(send_frame(&a, f, WAL, err, sizeof(err)), RC_ACK_OK, "%s: %s", f.msg_name, err);
        char id[64];
        snprintf(id, sizeof(id), ":%" PRIu64 "\"", f.seq);
        char *row = row_of(id);
        for (size_t k = 0; k < 8 && cases[i].has[k]; k++)
            cr_expect_not_null(strstr(row, cases[i].has[k]), "%s: missing %s in %s", f.msg_name,
                               cases[i].has[k], row);
        for (size_t k = 0; k < 4 && cases[i].lacks[k]; k++)
            cr_expect_null(strstr(row, cases[i].lacks[k]), "%s: %s in %s", f.msg_name,
                           cases[i].lacks[k], row);
        free(row);
    }
    /* Battery Id 256: refused with its own text; "-1": a parse error. */
    struct rc_frame b = {.agent_id = "agent-1", .seq = 200, .sent_at_unix_ns = T0,
                         .msg_name = "BatteryStatus", FIELDS({"Id", "256"})};
    cr_expect_eq(send_frame(&a, b, WAL, err, sizeof(err)), RC_ACK_PERMANENT_ERROR);
    cr_expect_str_eq(err, "telemetry normalization failed: normalize telemetry envelope: "
                          "battery ID is invalid");
    /* SPEC 13.5's normalization counter: each case ok, the battery failed. */
    static const char *const names[] = {"global_position_int", "battery_status", "heartbeat",
                                        "sys_status", "vfr_hud", "extended_sys_state",
                                        "gps_raw_int", "system_time"};
    double ok = 0;
    char series[200];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(series, sizeof(series),
                 "aero_telemetry_normalization_total{" TELEMETRY ",message_name=\"%s\","
                 "outcome=\"ok\"}",
                 names[i]);
        ok += relay_value(series);
    }
    cr_expect_eq(ok, (double)(sizeof(cases) / sizeof(cases[0])));
    cr_expect_eq(relay_value("aero_telemetry_normalization_total{" TELEMETRY
                             ",message_name=\"battery_status\",outcome=\"failed\"}"),
                 1);
    agent_close(&a);
}

/* 503 on every try: max_retries + 1 requests, then RETRY_WITH_BACKOFF. */
Test(influxdb3_e2e, server_503_until_the_retries_run_out)
{
    start(NULL);
    free(srv("POST", "/script?status=503&count=3&body=busy"));
    /* The sink's own default queue (SPEC 13.6), not the core's 4096. */
    cr_expect_eq(relay_value("aero_sink_queue_capacity{" TELEMETRY "}"), 1000);
    struct agent a;
    char err[600];
    agent_open(&a, "agent-1");
    cr_expect_eq(send_frame(&a, position("agent-1", 1), WAL, err, sizeof(err)), RC_ACK_RETRY_WITH_BACKOFF);
    cr_expect_str_eq(err, "telemetry admission failed: write InfluxDB 3 points: HTTP 503: busy");
    cr_expect_eq(requests(), 3, "max_retries 2: three requests");
    cr_expect_eq(rows_with(NULL), 0);
    /* SPEC 13.5's counters: one write failed after its two retries. */
    cr_expect_eq(relay_value("aero_telemetry_backend_writes_total{" TELEMETRY ",outcome=\"failed\"}"),
                 1);
    cr_expect_eq(relay_value("aero_telemetry_backend_retries_total{" TELEMETRY "}"), 2);
    /* The agent resends: now stored. */
    cr_expect_eq(send_frame(&a, position("agent-1", 1), WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    cr_expect_eq(rows_with(NULL), 1);
    cr_expect_eq(relay_value("aero_telemetry_backend_writes_total{" TELEMETRY ",outcome=\"ok\"}"),
                 1);
    agent_close(&a);
}

/* A refused token: RETRY_WITH_BACKOFF, never PERMANENT_ERROR; logged
 * with the server's message, never the token. */
Test(influxdb3_e2e, a_401_is_retry_with_backoff)
{
    srv_start();
    harness_prepare(&relay);
    char body[512];
    snprintf(body, sizeof(body),
             "[sink:telemetry]\nplugin = sink-influxdb3\nhost = http://127.0.0.1:%d\n"
             "database = aero_arc\ntoken = wrong-token\nwrite_timeout_ms = 1000\n"
             "retry_backoff_ms = 10\nmax_retries = 1\n", srv_port);
    ch = harness_start(&relay, NULL, body);
    struct agent a;
    char err[600];
    agent_open(&a, "agent-1");
    cr_expect_eq(send_frame(&a, position("agent-1", 1), WAL, err, sizeof(err)), RC_ACK_RETRY_WITH_BACKOFF);
    cr_expect_str_eq(err, "telemetry admission failed: write InfluxDB 3 points: HTTP 401: "
                          "{\"error\":\"unauthorized access\"}");
    /* The resend is refused again (two requests each): still one line, at
     * most one a minute (SPEC 13.5). */
    cr_expect_eq(send_frame(&a, position("agent-1", 1), WAL, err, sizeof(err)), RC_ACK_RETRY_WITH_BACKOFF);
    cr_expect_eq(requests(), 4);
    agent_close(&a);
    rc_close(ch);
    ch = NULL;
    cr_assert_eq(relay_stop(&relay, 20000), 0);
    cr_expect_eq(harness_log_count(&relay, "unauthorized access", NULL), 1,
                 "the refusal is logged once a minute");
    cr_expect_eq(harness_log_count(&relay, "wrong-token", NULL), 0, "never the token");
}

/* gzip from gzip_threshold on, the Bearer scheme, the v2 endpoint. */
Test(influxdb3_e2e, gzip_auth_header_and_the_v2_endpoint)
{
    start("gzip_threshold = 100\nauth_scheme = Bearer\napi = v2\nno_sync = true\n");
    struct agent a;
    char err[600];
    agent_open(&a, "agent-1");
    cr_assert_eq(send_frame(&a, position("agent-1", 1), WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    char *r = srv("GET", "/requests");
    cr_expect_not_null(strstr(r, "\"authorization\": \"Bearer " TOKEN "\""), "%s", r);
    cr_expect_not_null(strstr(r, "\"gzip\": true"), "%s", r);
    cr_expect_not_null(strstr(r, "\"path\": \"/api/v2/write\""), "%s", r);
    cr_expect_not_null(strstr(r, "\"query\": {\"bucket\": \"aero_arc\", \"precision\": \"ns\"}"), "%s", r);
    cr_expect_not_null(strstr(r, "\"content_type\": \"text/plain; charset=utf-8\""), "%s", r);
    free(r);
    cr_expect_eq(rows_with("latitude_deg"), 1);
    agent_close(&a);
}

/* The default v3 request, not gzipped under the threshold. */
Test(influxdb3_e2e, v3_request_below_the_gzip_threshold)
{
    start("gzip_threshold = 100000\n");
    struct agent a;
    char err[600];
    agent_open(&a, "agent-1");
    cr_assert_eq(send_frame(&a, position("agent-1", 1), WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    char *r = srv("GET", "/requests");
    cr_expect_not_null(strstr(r, "\"authorization\": \"Token " TOKEN "\""), "%s", r);
    cr_expect_not_null(strstr(r, "\"gzip\": false"), "%s", r);
    cr_expect_not_null(strstr(r, "\"query\": {\"accept_partial\": \"false\", \"db\": \"aero_arc\", "
                                 "\"precision\": \"nanosecond\"}"), "%s", r);
    free(r);
    agent_close(&a);
}

/* Send agent-1's position frames first..first+n-1 (wal_id WAL) without
 * waiting for their acks. */
static void send_positions(struct agent *a, uint64_t first, uint64_t n)
{
    for (uint64_t q = first; q < first + n; q++) {
        struct rc_frame f = position("agent-1", q);
        f.session_id = a->session;
        f.wal_id = WAL;
        cr_assert_eq(rc_stream_send_gen2_frame(a->s, &f, 5000), 0);
    }
}

/* SIGKILL while batches are being written slowly: every OK-acked row is
 * stored. */
Test(influxdb3_e2e, relay_killed_mid_batch_loses_no_ok_acked_row)
{
    start("batch_size = 5\n");
    free(srv("POST", "/script?status=0&delay_ms=30&count=1000"));
    struct agent a;
    agent_open(&a, "agent-1");
    enum { N = 100 };
    send_positions(&a, 1, N);
    /* Kill once half the requests went out (a batch's acks come when its
     * last request is answered, so some frames are acked and some not). */
    bool ok[N + 1] = {false};
    struct rc_relay_msg m;
    int64_t deadline = harness_now_ms() + 15000;
    for (bool killed = false;;) {
        if (!killed && (requests() >= N / 5 / 2 || harness_now_ms() > deadline)) {
            relay_kill(&relay);
            killed = true;
        }
        int rc = rc_stream_recv_gen2(a.s, &m, killed ? 2000 : 10); /* a poll, not a sleep */
        if (rc == 1 && m.arm == RC_RELAY_TELEMETRY_ACK && m.ack.status == RC_ACK_OK &&
            m.ack.seq <= N)
            ok[m.ack.seq] = true;
        else if (killed && rc != 1)
            break;
    }
    rc_stream_free(a.s);
    cr_expect_lt(rows_with(NULL), N, "killed mid-way, not after everything");
    for (uint64_t q = 1; q <= N; q++) {
        if (!ok[q])
            continue;
        char id[64];
        snprintf(id, sizeof(id), ":%" PRIu64 "\"", q);
        cr_expect_eq(rows_with(id), 1, "seq %" PRIu64 " was acked OK but is not stored", q);
    }
}

/* --check: the required keys, the URL, ca_file, token_file; never the token. */
Test(influxdb3_e2e, check_reports_with_file_and_line_and_never_the_token)
{
    harness_prepare(&relay);
    char tf[400];
    snprintf(tf, sizeof(tf), "%s/token", relay.dir);
    FILE *f = fopen(tf, "w");
    fputs("file-token-xyz\n", f);
    fclose(f);
    chmod(tf, 0644);
    struct {
        const char *keys;
        const char *want;
    } cases[] = {
        {"host = http://x:8181\ndatabase = d\n",
         "[sink:telemetry]: InfluxDB 3 host, token, and database are required"},
        {"database = d\ntoken = secret-tok\n",
         "[sink:telemetry]: InfluxDB 3 host, token, and database are required"},
        {"host = 127.0.0.1:8181\ndatabase = d\ntoken = secret-tok\n",
         "[sink:telemetry] host: InfluxDB 3 host must be an http:// or https:// URL"},
        {"host = https://x\ndatabase = d\ntoken = secret-tok\nca_file = /nonexistent/ca.pem\n",
         "[sink:telemetry] ca_file: cannot read \"/nonexistent/ca.pem\""},
        {NULL, "[sink:telemetry] token_file: "},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[800];
        if (cases[i].keys)
            snprintf(body, sizeof(body), "[sink:telemetry]\nplugin = sink-influxdb3\n%s", cases[i].keys);
        else
            snprintf(body, sizeof(body), "[sink:telemetry]\nplugin = sink-influxdb3\nhost = http://x\n"
                     "database = d\ntoken_file = %s\n", tf);
        const char *cfg = harness_write_config(&relay, NULL, body);
        const char *args[] = {"-c", cfg, "--check", NULL};
        char out[4096];
        int rc = relay_run_cli(args, out, sizeof(out));
        cr_expect_neq(rc, 0, "%s", body);
        cr_expect_not_null(strstr(out, cases[i].want), "want %s in: %s", cases[i].want, out);
        cr_expect_not_null(strstr(out, "relay.ini:"), "file and line: %s", out);
        cr_expect_null(strstr(out, "secret-tok"), "%s", out);
        cr_expect_null(strstr(out, "file-token-xyz"), "%s", out);
    }
}

/* SPEC 13.6: --check warns when a full queue could take 15 s or more to
 * write (⌈queue / batch_size⌉ × write_timeout_ms), the agents' ack window,
 * and says nothing of the defaults (2 × 5 s); both configurations pass. */
Test(influxdb3_e2e, check_warns_of_a_queue_slower_than_the_agents_ack_window)
{
    harness_prepare(&relay);
    static const char *const keys[] = {"", "queue = 4000\n"};
    for (int i = 0; i < 2; i++) {
        char body[400];
        snprintf(body, sizeof(body),
                 "[sink:telemetry]\nplugin = sink-influxdb3\nhost = http://x\ndatabase = d\n"
                 "token = t\n%s",
                 keys[i]);
        const char *cfg = harness_write_config(&relay, NULL, body);
        const char *args[] = {"-c", cfg, "--check", NULL};
        char out[4096];
        cr_expect_eq(relay_run_cli(args, out, sizeof(out)), 0, "%s", out);
        const char *warn = strstr(out, "a full queue may wait past the agents' 15 s ack window");
        if (i == 0) {
            cr_expect_null(warn, "the defaults warned: %s", out);
        } else {
            cr_expect_not_null(warn, "no warning: %s", out);
            cr_expect_not_null(strstr(out, "queue 4000 / batch_size 500 x write_timeout_ms 5000 = "
                                           "40000 ms"),
                               "%s", out);
        }
    }
}

/* Send frames 1..n of agent-1 without waiting, then collect their acks:
 * ok[seq] for each OK. Returns how many were OK. */
static size_t send_all(struct agent *a, uint64_t first, uint64_t n, bool *ok)
{
    send_positions(a, first, n);
    size_t got = 0, oks = 0;
    struct rc_relay_msg m;
    while (got < n) {
        cr_assert_eq(rc_stream_recv_gen2(a->s, &m, 15000), 1, "%zu of %" PRIu64 " acks", got, n);
        if (m.arm != RC_RELAY_TELEMETRY_ACK)
            continue;
        got++;
        if (m.ack.status == RC_ACK_OK) {
            oks++;
            if (ok)
                ok[m.ack.seq - first] = true;
        }
    }
    return oks;
}

/* The number after `"key": ` in a /requests line, or -1. */
static long long json_num(const char *line, const char *key)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\": ", key);
    const char *p = strstr(line, k);
    return p && p[strlen(k)] != 'n' ? strtoll(p + strlen(k), NULL, 10) : -1;
}

/* The /requests lines (malloc'd array of malloc'd strings, *n of them). */
static char **request_lines(size_t *n)
{
    char *b = srv("GET", "/requests");
    size_t cap = count_lines(b, NULL) + 1;
    char **out = calloc(cap, sizeof(*out));
    *n = 0;
    for (char *p = b; *p;) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len)
            out[(*n)++] = strndup(p, len);
        p += len + (nl != NULL);
    }
    free(b);
    return out;
}

static void free_lines(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

/* A scripted 400: a refusal, retried, then RETRY_WITH_BACKOFF (never
 * PERMANENT_ERROR); the server's message is logged; a resend is stored. */
Test(influxdb3_e2e, a_scripted_400_is_retried_then_retry_with_backoff)
{
    start(NULL);
    free(srv("POST", "/script?status=400&count=3&body=bad-line-protocol"));
    struct agent a;
    char err[600];
    agent_open(&a, "agent-1");
    cr_expect_eq(send_frame(&a, position("agent-1", 1), WAL, err, sizeof(err)), RC_ACK_RETRY_WITH_BACKOFF);
    cr_expect_str_eq(err, "telemetry admission failed: write InfluxDB 3 points: HTTP 400: bad-line-protocol");
    cr_expect_eq(requests(), 3, "max_retries 2: three requests");
    cr_expect_eq(rows_with(NULL), 0);
    cr_expect_eq(send_frame(&a, position("agent-1", 1), WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    cr_expect_eq(rows_with(NULL), 1);
    agent_close(&a);
    rc_close(ch);
    ch = NULL;
    cr_assert_eq(relay_stop(&relay, 20000), 0);
    char *log = harness_read_file(relay.stderr_path, NULL);
    cr_expect_not_null(strstr(log, "bad-line-protocol"), "the refusal is logged: %s", log);
    free(log);
}

/* 413: a request of several lines is halved and resent; every row still
 * arrives, in more requests. A one-row 413 cannot be halved:
 * RETRY_WITH_BACKOFF at once, no resend (SPEC 13.9 rule 7). */
Test(influxdb3_e2e, a_413_halves_the_request_and_every_row_arrives)
{
    start("batch_size = 500\n");
    /* The next request of two lines or more gets the 413 (one-line
     * requests pass by); bursts of frames until one went out. */
    free(srv("POST", "/script?status=413&count=1&min_lines=2&body=too-large"));
    struct agent a;
    agent_open(&a, "agent-1");
    enum { N = 20 };
    size_t n = 0, at = 0, sent = 0;
    char **req = NULL;
    for (int round = 0; round < 5; round++) {
        bool ok[N] = {false};
        cr_expect_eq(send_all(&a, sent + 1, N, ok), N, "every frame OK despite the 413");
        sent += N;
        if (req)
            free_lines(req, n);
        req = request_lines(&n);
        for (at = 0; at < n && json_num(req[at], "status") != 413; at++)
            ;
        if (at < n)
            break;
    }
    cr_assert_lt(at, n, "no request of several lines in 5 bursts of %d frames", N);
    cr_expect_eq(rows_with("\"message_name\": \"global_position_int\""), sent);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (i != at)
            total += (size_t)json_num(req[i], "lines");
    cr_expect_eq(total, sent, "the rows of the answered requests add up to every frame");
    long long big = json_num(req[at], "lines");
    cr_assert_lt(at + 2, n, "two halves follow the 413");
    cr_expect_eq(json_num(req[at + 1], "lines"), big / 2, "first half");
    cr_expect_eq(json_num(req[at + 2], "lines"), big - big / 2, "second half");
    free_lines(req, n);

    /* One row answered 413: RETRY_WITH_BACKOFF at once, no resend. */
    size_t before = requests();
    free(srv("POST", "/script?status=413&count=1&body=too-large"));
    char err[600];
    cr_expect_eq(send_frame(&a, position("agent-1", 100), WAL, err, sizeof(err)), RC_ACK_RETRY_WITH_BACKOFF);
    cr_expect_str_eq(err, "telemetry admission failed: write InfluxDB 3 points: HTTP 413: too-large");
    cr_expect_eq(requests(), before + 1, "a one-row 413 is not resent");
    /* Every request went into the histograms, and so did its lines. */
    double count = relay_value("aero_telemetry_backend_batch_size_count{" TELEMETRY "}");
    cr_expect_eq(count, (double)requests(), "batch_size observed %f of %zu requests", count,
                 requests());
    cr_expect_eq(relay_value("aero_telemetry_backend_write_seconds_count{" TELEMETRY "}"),
                 count);
    cr_expect_geq(relay_value("aero_telemetry_backend_batch_size_sum{" TELEMETRY "}"),
                  (double)sent);
    agent_close(&a);
}

/* A server slower than write_timeout_ms: the request is cut at the
 * deadline and the row gets RETRY_WITH_BACKOFF, well before the server
 * would have answered. */
Test(influxdb3_e2e, a_server_slower_than_write_timeout_ms)
{
    start(NULL); /* write_timeout_ms = 2000 */
    free(srv("POST", "/script?status=0&delay_ms=8000&count=1"));
    struct agent a;
    char err[600];
    agent_open(&a, "agent-1");
    int64_t t0 = harness_now_ms();
    cr_expect_eq(send_frame(&a, position("agent-1", 1), WAL, err, sizeof(err)), RC_ACK_RETRY_WITH_BACKOFF);
    int64_t took = harness_now_ms() - t0;
    cr_expect_geq(took, 1900, "not before write_timeout_ms: %lld ms", (long long)took);
    cr_expect_lt(took, 7000, "cut at write_timeout_ms, not the server's 8 s: %lld ms", (long long)took);
    cr_expect_eq(strncmp(err, "telemetry admission failed: write InfluxDB 3 points: ", 53), 0, "%s", err);
    cr_expect_eq(requests(), 1, "no retry once the deadline is used up");
    /* The server answers at once again: the resend is OK. */
    cr_expect_eq(send_frame(&a, position("agent-1", 2), WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    agent_close(&a);
}

static void token_env(void)
{
    harness_setenv(&relay, "INFLUXDB3_TOKEN", TOKEN);
}

/* No token key: INFLUXDB3_TOKEN is used, and is never logged. */
Test(influxdb3_e2e, the_token_from_INFLUXDB3_TOKEN)
{
    before_start = token_env;
    start_auth("", NULL);
    struct agent a;
    char err[600];
    agent_open(&a, "agent-1");
    cr_expect_eq(send_frame(&a, position("agent-1", 1), WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    char *r = srv("GET", "/requests");
    cr_expect_not_null(strstr(r, "\"authorization\": \"Token " TOKEN "\""), "%s", r);
    free(r);
    agent_close(&a);
    rc_close(ch);
    ch = NULL;
    cr_assert_eq(relay_stop(&relay, 20000), 0);
    char *log = harness_read_file(relay.stderr_path, NULL);
    cr_expect_null(strstr(log, TOKEN));
    free(log);
}

static void token_file(void)
{
    char tf[400];
    snprintf(tf, sizeof(tf), "%s/token", relay.dir);
    int fd = open(tf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, TOKEN "\n", sizeof(TOKEN)), (ssize_t)sizeof(TOKEN));
    close(fd);
    cr_assert_eq(chmod(tf, 0600), 0);
    /* token_file wins over the environment (first non-empty wins). */
    harness_setenv(&relay, "INFLUXDB3_TOKEN", "env-token-loses");
}

/* token_file (0600): its first line, without the newline. */
Test(influxdb3_e2e, the_token_from_token_file)
{
    before_start = token_file;
    start_auth("token_file = %DIR%/token\n", NULL);
    struct agent a;
    char err[600];
    agent_open(&a, "agent-1");
    cr_expect_eq(send_frame(&a, position("agent-1", 1), WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    char *r = srv("GET", "/requests");
    cr_expect_not_null(strstr(r, "\"authorization\": \"Token " TOKEN "\""), "%s", r);
    free(r);
    agent_close(&a);
}

/* SPEC 13.7's conformance reader on the stored rows: its predicate
 * (table, time window, message_name, schema_version as the tag '1',
 * aircraft_id IN (...)) and its decode rules, deduplicated by frame_id. */

/* The tag `key` of a /rows line into out ("" if absent). */
static void row_tag(const char *row, const char *key, char *out, size_t cap)
{
    out[0] = '\0';
    const char *tags = strstr(row, "\"tags\": {");
    cr_assert_not_null(tags, "%s", row);
    const char *end = strchr(tags, '}');
    char k[64];
    snprintf(k, sizeof(k), "\"%s\": \"", key);
    const char *p = strstr(tags, k);
    if (!p || p > end)
        return;
    p += strlen(k);
    snprintf(out, cap, "%.*s", (int)strcspn(p, "\""), p);
}

/* The field `key` of a /rows line: its type and value text; false if absent. */
static bool row_field(const char *row, const char *key, char *type, char *val, size_t cap)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\": [\"", key);
    const char *p = strstr(row, k);
    if (!p)
        return false;
    p += strlen(k);
    snprintf(type, cap, "%.*s", (int)strcspn(p, "\""), p);
    p = strchr(p, ',');
    cr_assert_not_null(p);
    p += 2;
    if (*p == '"')
        p++;
    snprintf(val, cap, "%.*s", (int)strcspn(p, "\"]"), p);
    return true;
}

Test(influxdb3_e2e, stored_rows_pass_the_conformance_predicate_and_decode_rules)
{
    start(NULL);
    struct agent a;
    char err[600];
    agent_open(&a, "agent-1");
    for (uint64_t q = 1; q <= 3; q++)
        cr_assert_eq(send_frame(&a, position("agent-1", q), WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    /* A replay (one row per frame_id), a heartbeat (other message_name). */
    cr_assert_eq(send_frame(&a, position("agent-1", 2), WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    struct rc_frame hb = {.agent_id = "agent-1", .seq = 4, .sent_at_unix_ns = T0 + 4000000,
                          .msg_name = "HEARTBEAT", FIELDS({"Type", "MAV_TYPE_QUADROTOR"})};
    cr_assert_eq(send_frame(&a, hb, WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    agent_close(&a);
    agent_open(&a, "agent-2"); /* unmapped: no aircraft_id, not selected */
    cr_assert_eq(send_frame(&a, position("agent-2", 1), WAL, err, sizeof(err)), RC_ACK_OK, "%s", err);
    agent_close(&a);

    const long long start_ns = T0, end_ns = T0 + 1000000000LL;
    char *b = srv("GET", "/rows");
    char frame_ids[8][256];
    size_t selected = 0, all = 0;
    for (char *p = b; *p;) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *row = strndup(p, len);
        p += len + (nl != NULL);
        all++;
        char v[256], t[32], tag[256];
        /* The predicate. */
        if (!strstr(row, "\"table\": \"aircraft_telemetry\""))
            goto next;
        long long ts = json_num(row, "time");
        if (ts < start_ns || ts >= end_ns)
            goto next;
        row_tag(row, "message_name", tag, sizeof(tag));
        if (strcmp(tag, "global_position_int") != 0)
            goto next;
        row_tag(row, "schema_version", tag, sizeof(tag));
        cr_expect_str_eq(tag, "1", "schema_version is the tag '1': %s", row);
        cr_expect(!row_field(row, "schema_version", t, v, sizeof(v)), "not a field: %s", row);
        if (!row_field(row, "aircraft_id", t, v, sizeof(v)) || strcmp(v, "aircraft-1") != 0)
            goto next;
        /* The decode rules. */
        cr_expect_str_eq(t, "string", "aircraft_id: %s", row);
        row_tag(row, "frame_id", tag, sizeof(tag));
        cr_expect_neq(tag[0], '\0', "non-blank frame_id: %s", row);
        for (size_t i = 0; i < selected && selected < 8; i++)
            cr_expect_str_neq(frame_ids[i], tag, "frame_id %s twice", tag);
        if (selected < 8)
            snprintf(frame_ids[selected], sizeof(frame_ids[0]), "%s", tag);
        selected++;
        row_tag(row, "agent_id", tag, sizeof(tag));
        cr_expect_str_eq(tag, "agent-1", "%s", row);
        cr_expect(row_field(row, "wal_id", t, v, sizeof(v)), "wal_id column: %s", row);
        cr_expect_str_eq(t, "string");
        cr_expect_str_eq(v, WAL, "non-blank wal_id: %s", row);
        cr_expect(row_field(row, "wal_sequence", t, v, sizeof(v)), "%s", row);
        cr_expect_str_eq(t, "uint64", "wal_sequence unsigned: %s", row);
        cr_expect_eq(v[strspn(v, "0123456789")], '\0', "%s", v);
        cr_expect(row_field(row, "latitude_deg", t, v, sizeof(v)), "%s", row);
        cr_expect_str_eq(t, "float64");
        cr_expect(strtod(v, NULL) >= -90 && strtod(v, NULL) <= 90, "latitude %s", v);
        cr_expect(row_field(row, "longitude_deg", t, v, sizeof(v)), "%s", row);
        cr_expect_str_eq(t, "float64");
        cr_expect(strtod(v, NULL) >= -180 && strtod(v, NULL) <= 180, "longitude %s", v);
        if (row_field(row, "altitude_msl_m", t, v, sizeof(v)))
            cr_expect_str_eq(t, "float64");
        if (row_field(row, "flight_id", t, v, sizeof(v)))
            cr_expect_str_eq(t, "string");
        if (row_field(row, "intent_id", t, v, sizeof(v)))
            cr_expect_str_eq(t, "string");
        if (row_field(row, "intent_version", t, v, sizeof(v))) {
            cr_expect_str_eq(t, "uint64");
            cr_expect_leq(strtoull(v, NULL, 10), 4294967295ULL, "intent_version %s", v);
        }
    next:
        free(row);
    }
    free(b);
    cr_expect_eq(all, 5, "3 positions, a heartbeat, an unmapped position");
    cr_expect_eq(selected, 3, "the three mapped positions, once each");
}

/* Acks of a generation-2 stream until n came: how many were
 * RETRY_WITH_BACKOFF "relay sink queue is full"; the others must be OK. */
static size_t acks_refused_full(struct agent *a, size_t n)
{
    size_t got = 0, refused = 0;
    struct rc_relay_msg m;
    while (got < n) {
        cr_assert_eq(rc_stream_recv_gen2(a->s, &m, 15000), 1, "%zu of %zu acks", got, n);
        if (m.arm != RC_RELAY_TELEMETRY_ACK)
            continue;
        got++;
        if (m.ack.status == RC_ACK_OK)
            continue;
        cr_expect_eq(m.ack.status, RC_ACK_RETRY_WITH_BACKOFF, "seq %" PRIu64, m.ack.seq);
        cr_expect_str_eq(m.ack.error ? m.ack.error : "", "relay sink queue is full");
        refused++;
    }
    return refused;
}

#define QUEUE_FULL "aero_telemetry_writer_dropped_total{" TELEMETRY ",reason=\"queue_full\"}"

/* SPEC 13.9 rule 11: frames this sink refused because its queue was full
 * are aero_telemetry_writer_dropped_total{reason="queue_full"}, there at 0
 * from the start. queue = 1, on_full = reject, a server that takes 4 s for
 * the first request: the generation-2 frames past the one being written
 * and the one queued are held, then refused after gen2_hold_s; a seed
 * stream's frames meanwhile are refused at once. Both are counted. */
Test(influxdb3_e2e, frames_refused_by_a_full_queue_count_as_queue_full)
{
    srv_start();
    harness_prepare(&relay);
    relay.http = true;
    char body[1024];
    snprintf(body, sizeof(body),
             "[sink:telemetry]\nplugin = sink-influxdb3\nhost = http://127.0.0.1:%d\n"
             "database = aero_arc\ntoken = " TOKEN "\nwrite_timeout_ms = 10000\n"
             "max_retries = 0\nqueue = 1\non_full = reject\n",
             srv_port);
    ch = harness_start(&relay, "relay_id = relay-1\ngen2_hold_s = 1\n", body);
    cr_assert_eq(relay_value(QUEUE_FULL), 0, "the series is there before any refusal");
    cr_assert_eq(relay_value("aero_sink_queue_capacity{" TELEMETRY "}"), 1, "queue = 1 set");
    free(srv("POST", "/script?status=0&delay_ms=4000&count=1"));

    struct agent a;
    agent_open(&a, "agent-1");
    enum { N = 6 };
    send_positions(&a, 1, N);
    /* A held frame means the queue is full; it stays full until the slow
     * request is answered, 4 s on. */
    int64_t deadline = harness_now_ms() + 3000;
    while (relay_value("aero_relay_frames_held_total") < 1 && harness_now_ms() < deadline)
        usleep(10000);
    cr_assert_geq(relay_value("aero_relay_frames_held_total"), 1, "no frame was held");

    harness_register(ch, "seed-1", NULL, 0);
    struct rc_status st;
    struct rc_stream *seed = rc_stream_open(ch, "seed-1", NULL, 0, &st);
    cr_assert_not_null(seed, "%s", st.message);
    size_t seed_refused = 0;
    for (uint64_t q = 1; q <= 3; q++) {
        cr_assert_eq(rc_stream_send_frame(seed, harness_frame("seed-1", q), 5000), 0);
        struct rc_ack ack;
        cr_assert_eq(rc_stream_recv_ack(seed, &ack, 5000), 1, "seed seq %" PRIu64, q);
        cr_expect_eq(ack.status, RC_ACK_TEMPORARY_ERROR, "seed seq %" PRIu64, q);
        cr_expect_eq(strncmp(ack.error ? ack.error : "", "relay sink queue is full", 24), 0,
                     "%s", ack.error);
        seed_refused += ack.status == RC_ACK_TEMPORARY_ERROR;
    }
    rc_stream_free(seed);

    size_t g2_refused = acks_refused_full(&a, N);
    cr_expect_geq(g2_refused, 1, "some generation-2 frames were refused after the hold");
    cr_expect_eq(relay_value(QUEUE_FULL), (double)(seed_refused + g2_refused),
                 "%zu seed + %zu generation-2 refusals", seed_refused, g2_refused);
    /* The core's own counts: the seed refusals per sink, the held ones
     * without one. */
    cr_expect_eq(relay_value("aero_sink_rejected_total{" TELEMETRY "}"), (double)seed_refused);
    cr_expect_eq(relay_value("aero_relay_frames_held_refused_total"), (double)g2_refused);
    cr_expect_eq(relay_value("aero_telemetry_writer_dropped_total{" TELEMETRY
                             ",reason=\"no_wal_id\"}"), 0, "the seed frames never reached it");
    agent_close(&a);
}
