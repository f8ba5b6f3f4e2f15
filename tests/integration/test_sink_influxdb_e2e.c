/*
 * test_sink_influxdb_e2e.c - the real relay with a [sink:tsdb] section on
 * sink-influxdb and a real influxd: frames streamed over gRPC are acked OK
 * and can be queried back as points; with the database dropped they are
 * acked PERMANENT_ERROR (InfluxDB's 404), and OK again once it exists.
 * Generation-2 and seed frames side by side: the protocol and intent_id
 * tags, the intent_version, relay_id and wal_id fields of the stored points.
 */
#include "harness.h"
#include "influx_server.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct relay_proc relay;
static struct influx_server srv;
static struct rc_channel *ch;

static void setup(void)
{
    memset(&relay, 0, sizeof(relay));
    memset(&srv, 0, sizeof(srv));
    ch = NULL;
}

static void teardown(void)
{
    harness_kill(&relay, &ch);
    influx_server_cleanup(&srv);
}

TestSuite(influxdb_e2e, .init = setup, .fini = teardown, .timeout = 60);

Test(influxdb_e2e, frames_become_points_and_a_missing_database_is_a_permanent_error)
{
    influx_server_start(&srv, 0);
    influx_server_create_db(&srv, "telemetry");
    harness_prepare(&relay);
    char body[512];
    snprintf(body, sizeof(body),
             "[sink:tsdb]\nplugin = sink-influxdb\nurl = %s\ndatabase = telemetry\n", srv.url);
    ch = harness_start(&relay, NULL, body);
    harness_register(ch, "drone-e2e", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "drone-e2e", NULL, 0, &st);
    cr_assert_not_null(s);

    size_t counts[4];
    char err[256];
    harness_stream_frames(s, "drone-e2e", 1, 100, counts, err, sizeof(err));
    cr_assert_eq(counts[RC_ACK_OK], 100, "%s", err);
    /* OK means written: no waiting before the query. */
    cr_assert_eq(influx_server_query_number(&srv, "telemetry",
                                     "SELECT count(seq) FROM GLOBAL_POSITION_INT"), 100);
    char *j = influx_server_query(&srv, "telemetry",
                           "SELECT agent_id, flight_id, lat, alt, seq FROM GLOBAL_POSITION_INT "
                           "WHERE seq = 42");
    /* harness_frame: sent_at = 1764262646000000000 + seq */
    cr_assert_not_null(strstr(j, "[\"2025-11-27T16:57:26.000000042Z\",\"drone-e2e\","
                                 "\"flight-7\",473977418,488,42]"), "%s", j);
    free(j);

    free(influx_server_query(&srv, NULL, "DROP DATABASE telemetry"));
    harness_stream_frames(s, "drone-e2e", 101, 10, counts, err, sizeof(err));
    cr_assert_eq(counts[RC_ACK_PERMANENT_ERROR], 10, "%s", err);
    cr_assert(strstr(err, "tsdb") != NULL, "the error names the sink: %s", err);

    influx_server_create_db(&srv, "telemetry");
    harness_stream_frames(s, "drone-e2e", 111, 10, counts, err, sizeof(err));
    cr_assert_eq(counts[RC_ACK_OK], 10, "%s", err);
    cr_assert_eq(influx_server_query_number(&srv, "telemetry",
                                     "SELECT count(seq) FROM GLOBAL_POSITION_INT"), 10);

    cr_assert_eq(rc_stream_close_send(s, 5000), 0);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    rc_stream_free(s);
    rc_close(ch);
    ch = NULL;
    cr_assert_eq(relay_stop(&relay, 20000), 0, "clean exit");

    char *log = harness_read_file(relay.stderr_path, NULL);
    cr_assert_not_null(strstr(log, "database not found"), "the server's reason is logged");
    free(log);
}

#define E2E_RELAY_ID "relay-influx-e2e"
#define WAL_A "3f2b8c1e-5d4a-4b6f-9e8d-7c6b5a4f3e2d"

Test(influxdb_e2e, gen2_points_carry_protocol_intent_relay_and_wal_id)
{
    influx_server_start(&srv, 0);
    influx_server_create_db(&srv, "telemetry");
    harness_prepare(&relay);
    char body[512], session[128];
    snprintf(body, sizeof(body),
             "[sink:tsdb]\nplugin = sink-influxdb\nurl = %s\ndatabase = telemetry\n", srv.url);
    ch = harness_start(&relay, "relay_id = " E2E_RELAY_ID "\n", body);

    /* A generation-2 agent: seq 1..5 of WAL generation A, intent-9 v4. */
    struct rc_status st;
    harness_register(ch, "drone-g2", session, sizeof(session));
    struct rc_stream *s = rc_stream_open_gen2(ch, "drone-g2", session, NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    for (uint64_t q = 1; q <= 5; q++) {
        struct rc_frame f = *harness_frame("drone-g2", q);
        f.session_id = session;
        f.wal_id = WAL_A;
        f.intent_id = "intent-9";
        f.intent_version = 4;
        cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
        struct rc_relay_msg m;
        cr_assert_eq(rc_stream_recv_gen2(s, &m, 10000), 1, "no ack for seq %" PRIu64, q);
        cr_assert_eq(m.arm, RC_RELAY_TELEMETRY_ACK);
        cr_assert_eq(m.ack.status, RC_ACK_OK, "seq %" PRIu64 ": %s", q, m.ack.error);
    }
    cr_assert_eq(rc_stream_close_send(s, 5000), 0);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    rc_stream_free(s);

    /* A seed agent alongside. */
    harness_register(ch, "drone-seed", NULL, 0);
    s = rc_stream_open(ch, "drone-seed", NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    size_t counts[4];
    char err[256];
    harness_stream_frames(s, "drone-seed", 1, 3, counts, err, sizeof(err));
    cr_assert_eq(counts[RC_ACK_OK], 3, "%s", err);
    cr_assert_eq(rc_stream_close_send(s, 5000), 0);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    rc_stream_free(s);

    /* OK means written: no waiting before the queries. */
    cr_assert_eq(influx_server_query_number(&srv, "telemetry",
        "SELECT count(seq) FROM GLOBAL_POSITION_INT WHERE protocol = 'multiplexed' "
        "AND intent_id = 'intent-9' AND agent_id = 'drone-g2'"), 5);
    cr_assert_eq(influx_server_query_number(&srv, "telemetry",
        "SELECT count(seq) FROM GLOBAL_POSITION_INT WHERE protocol = 'seed' "
        "AND agent_id = 'drone-seed'"), 3);
    char *j = influx_server_query(&srv, "telemetry",
        "SELECT agent_id, protocol, intent_id, intent_version, relay_id, wal_id, seq "
        "FROM GLOBAL_POSITION_INT WHERE agent_id = 'drone-g2' AND seq = 3");
    cr_assert_not_null(strstr(j, "[\"2025-11-27T16:57:26.000000003Z\",\"drone-g2\","
                                 "\"multiplexed\",\"intent-9\",4,\"" E2E_RELAY_ID "\",\""
                                 WAL_A "\",3]"), "%s", j);
    free(j);
    /* Seed points: no intent, no wal_id; relay_id still there. */
    j = influx_server_query(&srv, "telemetry",
        "SELECT agent_id, protocol, intent_id, intent_version, relay_id, wal_id, seq "
        "FROM GLOBAL_POSITION_INT WHERE agent_id = 'drone-seed' AND seq = 2");
    cr_assert_not_null(strstr(j, "\"drone-seed\",\"seed\",null,null,\"" E2E_RELAY_ID
                                 "\",null,2]"), "%s", j);
    free(j);
    /* Tags and fields as documented (unmapped agents: no operator_id or
     * aircraft_id tag at all). */
    j = influx_server_query(&srv, "telemetry", "SHOW TAG KEYS FROM GLOBAL_POSITION_INT");
    cr_assert_not_null(strstr(j, "[[\"agent_id\"],[\"flight_id\"],[\"intent_id\"],"
                                 "[\"protocol\"]]"), "%s", j);
    free(j);
    j = influx_server_query(&srv, "telemetry", "SHOW FIELD KEYS FROM GLOBAL_POSITION_INT");
    cr_assert_not_null(strstr(j, "[\"intent_version\",\"integer\"]"), "%s", j);
    cr_assert_not_null(strstr(j, "[\"relay_id\",\"string\"]"), "%s", j);
    cr_assert_not_null(strstr(j, "[\"wal_id\",\"string\"]"), "%s", j);
    free(j);

    rc_close(ch);
    ch = NULL;
    cr_assert_eq(relay_stop(&relay, 20000), 0, "clean exit");
}
