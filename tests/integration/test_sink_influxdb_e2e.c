/*
 * test_sink_influxdb_e2e.c - the real relay with a [sink:tsdb] section on
 * sink-influxdb and a real influxd: frames streamed over gRPC are acked OK
 * and can be queried back as points; with the database dropped they are
 * acked PERMANENT_ERROR (InfluxDB's 404), and OK again once it exists.
 */
#include "harness.h"
#include "influx_server.h"

#include <criterion/criterion.h>
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
