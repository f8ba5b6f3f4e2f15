/*
 * test_sink_influxdb.c - the sink-influxdb plugin against the fake host and
 * a real influxd (tests/integration/influx_server.c) on a free loopback
 * port, read back with /query: points with their tags, fields, types and
 * timestamps, escaping of every element, REJECT for a missing database and
 * for just the refused point of a partial write, RETRY for a real 500, a
 * server down at start, hung (timeout) or killed and restarted, and
 * batches split by max_body_bytes. The exact lines of influx_line.c
 * (compiled in): the ABI 1.1 tags and fields, frames without them, and
 * frame fields named like them.
 */
#include "harness.h"
#include "influx_line.h"
#include "influx_server.h"
#include "sink_test.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const aero_plugin_descriptor *desc;
static struct influx_server srv;

static void setup(void)
{
    desc = sink_test_load("sink-influxdb");
    memset(&srv, 0, sizeof(srv));
}

static void teardown(void)
{
    sink_test_unload();
    influx_server_cleanup(&srv);
}

TestSuite(sink_influxdb, .init = setup, .fini = teardown, .timeout = 60);

static void start_server(void)
{
    influx_server_start(&srv, 0);
    influx_server_create_db(&srv, "telemetry");
}

/* An instance writing to db on port, with extra config kv; fails the test
 * unless create() returns want_rc. */
static void *instance(int port, const char *db, const char *const *extra, int want_rc,
                      fake_host **out)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    const char *const base[] = {"url", url, "database", db, "timeout_ms", "2000", NULL};
    return sink_test_instance("tsdb", base, extra, want_rc, out);
}

/* Frames seq first.., measurement HEARTBEAT, fields alt/count/mode. */
struct frames {
    aero_frame f[256];
    const aero_frame *p[256];
    aero_kv kv[3];
};

static struct frames *frames_new(uint64_t first, size_t n)
{
    struct frames *fr = calloc(1, sizeof(*fr));
    cr_assert_leq(n, 256);
    fr->kv[0] = (aero_kv){{"alt", 3}, {"12.5", 4}};
    fr->kv[1] = (aero_kv){{"count", 5}, {"42", 2}};
    fr->kv[2] = (aero_kv){{"mode", 4}, {"GUIDED", 6}};
    for (size_t i = 0; i < n; i++) {
        fr->f[i] = (aero_frame){
            .size = sizeof(aero_frame),
            .agent_id = {"drone-1", 7},
            .session_id = {"sess-1", 6},
            .seq = first + i,
            .sent_at_unix_ns = 1700000000000000000 + (int64_t)(first + i) * 1000,
            .dialect = {"common", 6},
            .msg_name = {"HEARTBEAT", 9},
            .fields = fr->kv,
            .n_fields = 3,
            .flight_id = {"f-1", 3},
            .received_unix_ns = 1710000000000000000,
        };
        fr->p[i] = &fr->f[i];
    }
    return fr;
}

/* Writes n frames into res (may be NULL); returns how many came back want. */
static size_t write_res(void *inst, struct frames *fr, size_t n, aero_result want,
                        aero_result *res_out)
{
    return sink_test_write(inst, fr->p, n, want, res_out);
}

/* Polls (every 10 ms, with a deadline) until a batch of the first n frames
 * comes back all `want`. */
static bool until_all(void *inst, struct frames *fr, size_t n, aero_result want, int timeout_ms)
{
    return sink_test_until_all(inst, fr->p, n, want, timeout_ms);
}

static void expect_in(const char *json, const char *needle)
{
    cr_assert_not_null(strstr(json, needle), "\"%s\" not in %s", needle, json);
}

/* ------------------------------------------------------------- points */

Test(sink_influxdb, frames_become_points_with_tags_fields_seq_and_time)
{
    start_server();
    fake_host *fh;
    void *inst = instance(srv.port, "telemetry", NULL, 0, &fh);
    struct frames *fr = frames_new(1, 20);
    fr->f[19].sent_at_unix_ns = 0;    /* the relay's receive time instead */
    fr->f[18].flight_id.len = 0;      /* no flight: no tag */
    fr->f[17].n_fields = 0;           /* just seq */
    cr_assert_eq(write_res(inst, fr, 20, AERO_OK, NULL), 20);

    cr_assert_eq(influx_server_query_number(&srv, "telemetry", "SELECT count(seq) FROM HEARTBEAT"), 20);
    char *j = influx_server_query(&srv, "telemetry",
                           "SELECT * FROM HEARTBEAT WHERE seq = 5");
    expect_in(j, "\"columns\":[\"time\",\"agent_id\",\"alt\",\"count\",\"flight_id\",\"mode\","
                 "\"protocol\",\"seq\"]");
    expect_in(j, "[\"2023-11-14T22:13:20.000005Z\",\"drone-1\",12.5,42,\"f-1\",\"GUIDED\",\"seed\",5]");
    free(j);
    j = influx_server_query(&srv, "telemetry", "SELECT * FROM HEARTBEAT WHERE seq = 20");
    expect_in(j, "[\"2024-03-09T16:00:00Z\",\"drone-1\",12.5,42,\"f-1\",\"GUIDED\",\"seed\",20]");
    free(j);
    j = influx_server_query(&srv, "telemetry", "SELECT * FROM HEARTBEAT WHERE seq = 19");
    expect_in(j, "\"drone-1\",12.5,42,null,\"GUIDED\",\"seed\",19]");
    free(j);
    j = influx_server_query(&srv, "telemetry", "SELECT * FROM HEARTBEAT WHERE seq = 18");
    expect_in(j, "\"drone-1\",null,null,\"f-1\",null,\"seed\",18]");
    free(j);
    /* integers = float (default): "42" is a float, like "42.5" would be. */
    j = influx_server_query(&srv, "telemetry", "SHOW FIELD KEYS FROM HEARTBEAT");
    expect_in(j, "[\"count\",\"float\"]");
    expect_in(j, "[\"seq\",\"integer\"]");
    expect_in(j, "[\"mode\",\"string\"]");
    free(j);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_influxdb_points_written_total"), 20);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_influxdb_requests_total"), 1,
                 "one POST per batch");
    free(fr);
}

Test(sink_influxdb, every_element_is_escaped_and_utf8_repaired)
{
    start_server();
    void *inst = instance(srv.port, "telemetry", NULL, 0, NULL);
    struct frames *fr = frames_new(1, 2);
    aero_kv kv[] = {
        {{"k ey,=x", 7}, {"quo\"te back\\slash\nline", 22}},
        {{"bad", 3}, {"\xff" "ok\xc3", 4}},
        {{"seq", 3}, {"7", 1}},
        {{"time", 4}, {"9", 1}},
        {{"nan", 3}, {"NaN", 3}},
        {{"plus", 4}, {"+5", 2}},
        {{"hex", 3}, {"0x10", 4}},
        {{"", 0}, {"dropped", 7}},
    };
    fr->f[0].msg_name = (aero_str){"my meas,x=1\\", 12};
    fr->f[0].flight_id = (aero_str){"a b,c=d", 7};
    fr->f[0].fields = kv;
    fr->f[0].n_fields = sizeof(kv) / sizeof(kv[0]);
    fr->f[1].msg_name = (aero_str){"#hash\n", 6};
    cr_assert_eq(write_res(inst, fr, 2, AERO_OK, NULL), 2);

    char *j = influx_server_query(&srv, "telemetry", "SHOW MEASUREMENTS");
    expect_in(j, "[\"_hash_\"]");
    expect_in(j, "[\"my meas,x=1_\"]");
    free(j);
    j = influx_server_query(&srv, "telemetry", "SELECT * FROM \"my meas,x=1_\"");
    expect_in(j, "\"columns\":[\"time\",\"agent_id\",\"bad\",\"field_seq\",\"field_time\","
                 "\"flight_id\",\"hex\",\"k ey,=x\",\"plus\",\"protocol\",\"seq\"]");
    expect_in(j, "\"drone-1\",\"\xef\xbf\xbdok\xef\xbf\xbd\",7,9,\"a b,c=d\",\"0x10\","
                 "\"quo\\\"te back\\\\slash\\nline\",5,\"seed\",1]");
    free(j);
    free(fr);
}

/* ------------------------------------------- ABI 1.1 tags and fields */

#define WAL_A "3f2b8c1e-5d4a-4b6f-9e8d-7c6b5a4f3e2d"

/* The line influx_line_append writes for f (malloc'd, NUL-terminated). */
static char *line_of(const aero_frame *f)
{
    struct lp_buf b = {0};
    cr_assert_eq(influx_line_append(&b, f, INFLUX_INTS_FLOAT), 0);
    char *s = malloc(b.len + 1);
    cr_assert_not_null(s);
    memcpy(s, b.p, b.len);
    s[b.len] = '\0';
    free(b.p);
    return s;
}

static void expect_line(const aero_frame *f, const char *want)
{
    char *got = line_of(f);
    cr_assert_str_eq(got, want);
    free(got);
}

/* A generation-2 frame with every ABI 1.1 field set. */
static void make_gen2(aero_frame *f)
{
    f->protocol = AERO_PROTOCOL_MULTIPLEXED;
    f->wal_id = (aero_str){WAL_A, 36};
    f->intent_id = (aero_str){"intent-9", 8};
    f->intent_version = 4;
    f->relay_id = (aero_str){"relay-7", 7};
    f->operator_id = (aero_str){"op,1", 4};
    f->aircraft_id = (aero_str){"ac 1", 4};
}

Test(sink_influxdb, lines_of_seed_frames_gain_only_the_protocol_tag)
{
    struct frames *fr = frames_new(1, 2);
    /* Zeroed 1.1 fields (protocol 0 is seed). */
    expect_line(&fr->f[0], "HEARTBEAT,agent_id=drone-1,flight_id=f-1,protocol=seed "
                           "alt=12.5,count=42,mode=\"GUIDED\",seq=1i 1700000000000001000\n");
    /* A frame from an ABI 1.0 producer: the 1.1 fields are not read. */
    fr->f[1].size = offsetof(aero_frame, protocol);
    fr->f[1].flight_id.len = 0;
    expect_line(&fr->f[1], "HEARTBEAT,agent_id=drone-1,protocol=seed "
                           "alt=12.5,count=42,mode=\"GUIDED\",seq=2i 1700000000000002000\n");
    /* A seed frame as the relay builds it: relay_id set, the rest empty. */
    fr->f[0].protocol = AERO_PROTOCOL_SEED;
    fr->f[0].relay_id = (aero_str){"relay-7", 7};
    expect_line(&fr->f[0], "HEARTBEAT,agent_id=drone-1,flight_id=f-1,protocol=seed "
                           "alt=12.5,count=42,mode=\"GUIDED\",seq=1i,relay_id=\"relay-7\" "
                           "1700000000000001000\n");
    free(fr);
}

Test(sink_influxdb, lines_of_gen2_frames_carry_the_new_tags_and_fields)
{
    struct frames *fr = frames_new(1, 3);
    make_gen2(&fr->f[0]);
    expect_line(&fr->f[0],
                "HEARTBEAT,agent_id=drone-1,aircraft_id=ac\\ 1,flight_id=f-1,intent_id=intent-9,"
                "operator_id=op\\,1,protocol=multiplexed "
                "alt=12.5,count=42,mode=\"GUIDED\",seq=1i,intent_version=4i,relay_id=\"relay-7\","
                "wal_id=\"" WAL_A "\" 1700000000000001000\n");
    /* Unmapped agent, no intent, no wal_id (agents before July 2026). */
    make_gen2(&fr->f[1]);
    fr->f[1].operator_id.len = 0;
    fr->f[1].aircraft_id.len = 0;
    fr->f[1].intent_id.len = 0;
    fr->f[1].intent_version = 0;
    fr->f[1].wal_id.len = 0;
    expect_line(&fr->f[1], "HEARTBEAT,agent_id=drone-1,flight_id=f-1,protocol=multiplexed "
                           "alt=12.5,count=42,mode=\"GUIDED\",seq=2i,relay_id=\"relay-7\" "
                           "1700000000000002000\n");
    /* Values with bytes line protocol cannot hold are escaped as the
     * existing tags and string fields are. */
    make_gen2(&fr->f[2]);
    fr->f[2].intent_id = (aero_str){"i=1\\\n", 5};
    fr->f[2].relay_id = (aero_str){"r\"\\", 3};
    fr->f[2].intent_version = 4294967295u;
    fr->f[2].n_fields = 0;
    expect_line(&fr->f[2],
                "HEARTBEAT,agent_id=drone-1,aircraft_id=ac\\ 1,flight_id=f-1,intent_id=i\\=1__,"
                "operator_id=op\\,1,protocol=multiplexed "
                "seq=3i,intent_version=4294967295i,relay_id=\"r\\\"\\\\\","
                "wal_id=\"" WAL_A "\" 1700000000000003000\n");
    free(fr);
}

Test(sink_influxdb, frame_fields_named_like_the_new_tags_and_fields_are_renamed)
{
    struct frames *fr = frames_new(1, 1);
    aero_kv kv[] = {
        {{"protocol", 8}, {"2", 1}},         {{"wal_id", 6}, {"w", 1}},
        {{"intent_id", 9}, {"i", 1}},        {{"intent_version", 14}, {"3", 1}},
        {{"relay_id", 8}, {"r", 1}},         {{"operator_id", 11}, {"o", 1}},
        {{"aircraft_id", 11}, {"a", 1}},     {{"protocols", 9}, {"x", 1}},
    };
    fr->f[0].fields = kv;
    fr->f[0].n_fields = sizeof(kv) / sizeof(kv[0]);
    /* Renamed whether or not this frame has a value for the name. */
    expect_line(&fr->f[0], "HEARTBEAT,agent_id=drone-1,flight_id=f-1,protocol=seed "
                           "field_protocol=2,field_wal_id=\"w\",field_intent_id=\"i\","
                           "field_intent_version=3,field_relay_id=\"r\",field_operator_id=\"o\","
                           "field_aircraft_id=\"a\",protocols=\"x\",seq=1i 1700000000000001000\n");
    make_gen2(&fr->f[0]);
    char *got = line_of(&fr->f[0]);
    cr_assert_not_null(strstr(got, ",protocol=multiplexed field_protocol=2,"), "%s", got);
    cr_assert_not_null(strstr(got, ",intent_version=4i,relay_id=\"relay-7\","), "%s", got);
    free(got);
    free(fr);
}

Test(sink_influxdb, gen2_points_are_queryable_by_the_new_tags)
{
    start_server();
    void *inst = instance(srv.port, "telemetry", NULL, 0, NULL);
    struct frames *fr = frames_new(1, 3);
    make_gen2(&fr->f[0]);
    make_gen2(&fr->f[1]);
    fr->f[1].operator_id.len = 0;
    fr->f[1].aircraft_id.len = 0;
    /* f[2] stays a seed frame. */
    cr_assert_eq(write_res(inst, fr, 3, AERO_OK, NULL), 3);

    char *j = influx_server_query(&srv, "telemetry", "SHOW TAG KEYS FROM HEARTBEAT");
    expect_in(j, "[\"agent_id\"],[\"aircraft_id\"],[\"flight_id\"],[\"intent_id\"],"
                 "[\"operator_id\"],[\"protocol\"]");
    free(j);
    j = influx_server_query(&srv, "telemetry", "SHOW FIELD KEYS FROM HEARTBEAT");
    expect_in(j, "[\"intent_version\",\"integer\"]");
    expect_in(j, "[\"relay_id\",\"string\"]");
    expect_in(j, "[\"wal_id\",\"string\"]");
    free(j);
    cr_assert_eq(influx_server_query_number(&srv, "telemetry",
        "SELECT count(seq) FROM HEARTBEAT WHERE protocol = 'multiplexed'"), 2);
    cr_assert_eq(influx_server_query_number(&srv, "telemetry",
        "SELECT count(seq) FROM HEARTBEAT WHERE protocol = 'seed'"), 1);
    cr_assert_eq(influx_server_query_number(&srv, "telemetry",
        "SELECT count(seq) FROM HEARTBEAT WHERE aircraft_id = 'ac 1'"), 1);
    cr_assert_eq(influx_server_query_number(&srv, "telemetry",
        "SELECT count(seq) FROM HEARTBEAT WHERE intent_id = 'intent-9'"), 2);
    j = influx_server_query(&srv, "telemetry",
        "SELECT intent_version, relay_id, wal_id, seq FROM HEARTBEAT WHERE operator_id = 'op,1'");
    expect_in(j, "[\"2023-11-14T22:13:20.000001Z\",4,\"relay-7\",\"" WAL_A "\",1]");
    free(j);
    free(fr);
}

Test(sink_influxdb, integers_option_and_no_type_conflict_by_default)
{
    start_server();
    influx_server_create_db(&srv, "typed");
    void *fl = instance(srv.port, "telemetry", NULL, 0, NULL);
    const char *cfg[] = {"integers", "integer", NULL};
    void *in = instance(srv.port, "typed", cfg, 0, NULL);
    struct frames *fr = frames_new(1, 1);
    cr_assert_eq(write_res(fl, fr, 1, AERO_OK, NULL), 1);
    cr_assert_eq(write_res(in, fr, 1, AERO_OK, NULL), 1);
    /* The same field later printed with a fraction: fine as floats. */
    fr->kv[1].value = (aero_str){"43.5", 4};
    fr->f[0].seq = 2;
    fr->f[0].sent_at_unix_ns++;
    cr_assert_eq(write_res(fl, fr, 1, AERO_OK, NULL), 1);
    char *j = influx_server_query(&srv, "typed", "SHOW FIELD KEYS FROM HEARTBEAT");
    expect_in(j, "[\"count\",\"integer\"]");
    free(j);
    j = influx_server_query(&srv, "telemetry", "SELECT sum(count) FROM HEARTBEAT");
    expect_in(j, ",85.5]");
    free(j);
    free(fr);
}

/* ------------------------------------------------------------ refusals */

Test(sink_influxdb, missing_database_is_rejected_with_the_server_message)
{
    start_server();
    fake_host *fh;
    void *inst = instance(srv.port, "nodb", NULL, 0, &fh);
    struct frames *fr = frames_new(1, 10);
    cr_assert_eq(write_res(inst, fr, 10, AERO_REJECT, NULL), 10);
    cr_assert(fake_host_log_contains(fh, "HTTP 404"));
    cr_assert(fake_host_log_contains(fh, "database not found"));
    cr_assert_eq(sink_test_metric(fh, "aero_sink_influxdb_points_rejected_total"), 10);
    /* Logged at most once a second however often it happens. */
    for (int i = 0; i < 5; i++)
        cr_assert_eq(write_res(inst, fr, 10, AERO_REJECT, NULL), 10);
    cr_assert_leq(fake_host_log_count(fh, AERO_LOG_WARN), 2);
    free(fr);
}

Test(sink_influxdb, partial_write_rejects_only_the_refused_points)
{
    start_server();
    fake_host *fh;
    void *inst = instance(srv.port, "telemetry", NULL, 0, &fh);
    struct frames *fr = frames_new(1, 1);
    cr_assert_eq(write_res(inst, fr, 1, AERO_OK, NULL), 1); /* mode is a string now */
    free(fr);

    fr = frames_new(100, 16);
    aero_kv bad[] = {{{"mode", 4}, {"1.5", 3}}}; /* a float: field type conflict */
    fr->f[3].fields = bad;
    fr->f[3].n_fields = 1;
    fr->f[11].fields = bad;
    fr->f[11].n_fields = 1;
    aero_result res[16];
    cr_assert_eq(write_res(inst, fr, 16, AERO_OK, res), 14);
    cr_assert_eq(res[3], AERO_REJECT);
    cr_assert_eq(res[11], AERO_REJECT);
    cr_assert(fake_host_log_contains(fh, "field type conflict"));
    cr_assert_eq(influx_server_query_number(&srv, "telemetry", "SELECT count(seq) FROM HEARTBEAT"), 15);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_influxdb_points_rejected_total"), 2);
    free(fr);
}

Test(sink_influxdb, a_real_500_gives_retry_until_the_server_can_write)
{
    start_server();
    const char *cfg[] = {"retention_policy", "later", NULL};
    fake_host *fh;
    void *inst = instance(srv.port, "telemetry", cfg, 0, &fh);
    struct frames *fr = frames_new(1, 5);
    /* InfluxDB answers a write to a missing retention policy with 500. */
    cr_assert_eq(write_res(inst, fr, 5, AERO_RETRY, NULL), 5);
    cr_assert(fake_host_log_contains(fh, "HTTP 500"));
    free(influx_server_query(&srv, "telemetry",
                      "CREATE RETENTION POLICY later ON telemetry DURATION INF REPLICATION 1"));
    cr_assert_eq(write_res(inst, fr, 5, AERO_OK, NULL), 5);
    cr_assert_eq(influx_server_query_number(&srv, "telemetry",
                                     "SELECT count(seq) FROM later.HEARTBEAT"), 5);
    free(fr);
}

/* check (and create) report each problem with its relay.ini line: the
 * section is line 1, pair i of the config line 2 + i. */
Test(sink_influxdb, check_reports_every_problem_with_file_and_line)
{
    static const struct {
        const char *kv[10];
        const char *want;
    } cases[] = {
        {{"database", "t", "url", "ftp://127.0.0.1:1", NULL},
         "relay.ini:3: [sink:tsdb] url: \"ftp://127.0.0.1:1\" must start with http:// or "
         "https://\n"},
        {{"database", "t", "url", "127.0.0.1:8086", NULL},
         "relay.ini:3: [sink:tsdb] url: \"127.0.0.1:8086\" must start with http:// or "
         "https://\n"},
        {{"database", "", NULL}, "relay.ini:2: [sink:tsdb] database: must not be empty\n"},
        {{"database", "t", "password", "x", NULL},
         "relay.ini:3: [sink:tsdb] password: set without username\n"},
        {{"database", "t", "url", "https://db:8086", "tls_ca_file", "/nonexistent/ca.pem", NULL},
         "relay.ini:4: [sink:tsdb] tls_ca_file: cannot read \"/nonexistent/ca.pem\": No such "
         "file or directory\n"},
        {{"database", "t", "url", "https://db:8086", "tls_ca_file", "/tmp", NULL},
         "relay.ini:4: [sink:tsdb] tls_ca_file: \"/tmp\" is not a regular file\n"},
        {{"database", "t", "tls_ca_file", AERO_SOURCE_DIR "/relay.ini", NULL},
         "relay.ini:3: [sink:tsdb] tls_ca_file: set but url is not https://\n"},
        /* every problem, not just the first */
        {{"database", "", "url", "x", "password", "p", NULL},
         "relay.ini:3: [sink:tsdb] url: \"x\" must start with http:// or https://\n"
         "relay.ini:2: [sink:tsdb] database: must not be empty\n"
         "relay.ini:4: [sink:tsdb] password: set without username\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_log_info("case %zu", i);
        sink_test_check("tsdb", cases[i].kv, cases[i].want, true);
    }
    /* A good section passes check. */
    const char *const good[] = {"database", "t", "url", "https://db:8086", "tls_ca_file",
                                AERO_SOURCE_DIR "/relay.ini", "insecure", "On", NULL};
    sink_test_check("tsdb", good, "", false);
    /* database is required */
    const char *kv[] = {"url", "http://127.0.0.1:1", NULL};
    cr_assert_null(fake_host_new(desc, "tsdb", kv));
}

/* ------------------------------------------------------------ failures */

Test(sink_influxdb, server_down_at_start_gives_retry_at_once_then_recovers)
{
    int port = harness_free_port();
    fake_host *fh;
    void *inst = instance(port, "telemetry", NULL, 0, &fh);
    struct frames *fr = frames_new(1, 10);
    for (int i = 0; i < 3; i++) {
        int64_t t0 = harness_now_ms();
        cr_assert_eq(write_res(inst, fr, 10, AERO_RETRY, NULL), 10);
        /* No wait: the timeout (timeout_ms, 5 s) is far above the bound. */
        cr_assert_lt(harness_now_ms() - t0, 1000, "connection refused is no wait");
    }
    cr_assert(fake_host_log_contains(fh, "TEMPORARY_ERROR"));
    influx_server_start(&srv, port);
    influx_server_create_db(&srv, "telemetry");
    cr_assert_eq(write_res(inst, fr, 10, AERO_OK, NULL), 10, "no restart needed");
    cr_assert_eq(sink_test_metric(fh, "aero_sink_influxdb_points_failed_total"), 30);
    free(fr);
}

Test(sink_influxdb, hung_server_times_out_with_retry_then_recovers)
{
    start_server();
    const char *cfg[] = {"timeout_ms", "1000", NULL};
    void *inst = instance(srv.port, "telemetry", cfg, 0, NULL);
    struct frames *fr = frames_new(1, 5);
    cr_assert_eq(write_res(inst, fr, 5, AERO_OK, NULL), 5);

    influx_server_pause(&srv);
    int64_t t0 = harness_now_ms();
    cr_assert_eq(write_res(inst, fr, 5, AERO_RETRY, NULL), 5);
    int64_t took = harness_now_ms() - t0;
    cr_assert(took >= 990 && took < 3000, "took %lld ms", (long long)took);
    /* Right after a timeout: RETRY without waiting for another one (half
     * the timeout is the bound: a preempted test thread is no wait). */
    t0 = harness_now_ms();
    cr_assert_eq(write_res(inst, fr, 5, AERO_RETRY, NULL), 5);
    cr_assert_lt(harness_now_ms() - t0, 500);

    influx_server_resume(&srv);
    cr_assert(until_all(inst, fr, 5, AERO_OK, 5000));
    free(fr);
}

Test(sink_influxdb, server_killed_mid_stream_then_restarted)
{
    start_server();
    void *inst = instance(srv.port, "telemetry", NULL, 0, NULL);
    struct frames *fr = frames_new(1, 10);
    cr_assert_eq(write_res(inst, fr, 10, AERO_OK, NULL), 10);
    influx_server_stop(&srv);
    int64_t t0 = harness_now_ms();
    cr_assert_eq(write_res(inst, fr, 10, AERO_RETRY, NULL), 10);
    cr_assert_lt(harness_now_ms() - t0, 1000); /* not timeout_ms (5 s) */
    influx_server_restart(&srv);
    free(fr);
    fr = frames_new(11, 10);
    cr_assert_eq(write_res(inst, fr, 10, AERO_OK, NULL), 10, "the kept-alive connection was replaced");
    cr_assert_eq(influx_server_query_number(&srv, "telemetry", "SELECT count(seq) FROM HEARTBEAT"), 20);
    free(fr);
}

Test(sink_influxdb, large_batches_are_split_by_max_body_bytes)
{
    start_server();
    fake_host *fh;
    const char *cfg[] = {"max_body_bytes", "1024", NULL};
    void *inst = instance(srv.port, "telemetry", cfg, 0, &fh);
    struct frames *fr = frames_new(1, 200);
    cr_assert_eq(write_res(inst, fr, 200, AERO_OK, NULL), 200);
    int64_t reqs = sink_test_metric(fh, "aero_sink_influxdb_requests_total");
    int64_t bytes = sink_test_metric(fh, "aero_sink_influxdb_request_bytes_total");
    cr_assert_geq(reqs, bytes / 1024, "%lld requests for %lld bytes", (long long)reqs,
                  (long long)bytes);
    cr_assert_geq(reqs, 10);
    cr_assert_eq(influx_server_query_number(&srv, "telemetry", "SELECT count(seq) FROM HEARTBEAT"), 200);
    free(fr);
}
