/*
 * test_sink_mqtt_e2e.c - the real relay with a [sink:mq] section on sink-mqtt
 * and a real mosquitto: frames streamed over gRPC arrive at a subscriber,
 * are acked OK only while the broker takes them, TEMPORARY_ERROR while it
 * is gone, and OK again once it is back, without restarting the relay.
 * Generation-2 and seed frames: the {protocol}/{wal_id}/{intent_id} topic
 * placeholders and the envelope's protocol, wal_id, intent and relay keys.
 */
#include "harness.h"
#include "mqtt_server.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct relay_proc relay;
static struct mqtt_server broker;
static struct mqtt_server_sub *sub;
static struct rc_channel *ch;

static void setup(void)
{
    memset(&relay, 0, sizeof(relay));
    memset(&broker, 0, sizeof(broker));
    sub = NULL;
    ch = NULL;
}

static void teardown(void)
{
    harness_kill(&relay, &ch);
    mqtt_server_sub_stop(sub);
    mqtt_server_cleanup(&broker);
}

TestSuite(mqtt_e2e, .init = setup, .fini = teardown, .timeout = 60);

Test(mqtt_e2e, frames_reach_the_broker_and_acks_follow_its_availability)
{
    mqtt_server_start(&broker, 0, NULL, NULL);
    sub = mqtt_server_sub_start(broker.port, "relay/#", NULL, NULL);
    harness_prepare(&relay);
    char body[512];
    snprintf(body, sizeof(body),
             "[sink:mq]\nplugin = sink-mqtt\nport = %d\ntopic = relay/{agent_id}/{msg_name}\n"
             "qos = 1\nreconnect_delay_ms = 50\nreconnect_delay_max_ms = 200\n",
             broker.port);
    ch = harness_start(&relay, NULL, body);
    harness_register(ch, "drone-e2e", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, "drone-e2e", NULL, 0, &st);
    cr_assert_not_null(s);

    size_t counts[4];
    harness_stream_frames(s, "drone-e2e", 1, 100, counts, NULL, 0);
    cr_assert_eq(counts[RC_ACK_OK], 100);
    cr_assert(mqtt_server_sub_wait(sub, 100, 5000), "%zu messages", mqtt_server_sub_count(sub));
    unsigned char seen[101] = {0};
    for (size_t i = 0; i < 100; i++) {
        cr_assert_str_eq(mqtt_server_sub_topic(sub, i), "relay/drone-e2e/GLOBAL_POSITION_INT");
        const char *p = mqtt_server_sub_payload(sub, i, NULL);
        const char *q = strstr(p, "\"seq\":");
        cr_assert_not_null(q, "%s", p);
        long seq = strtol(q + 6, NULL, 10);
        cr_assert(seq >= 1 && seq <= 100 && !seen[seq], "seq %ld twice or out of range", seq);
        seen[seq] = 1;
        cr_assert_not_null(strstr(p, "\"fields\":{\"lat\":\"473977418\""), "%s", p);
    }

    /* Broker gone: the relay keeps serving and says TEMPORARY_ERROR. */
    mqtt_server_sub_stop(sub);
    sub = NULL;
    mqtt_server_stop(&broker);
    char err[256];
    uint64_t seq = 101;
    size_t ok = 100;
    for (int tries = 0; ok > 0 && tries < 50; tries++, seq += 10) {
        harness_stream_frames(s, "drone-e2e", seq, 10, counts, err, sizeof(err));
        ok = counts[RC_ACK_OK];
    }
    cr_assert_eq(counts[RC_ACK_TEMPORARY_ERROR], 10, "acks while the broker is down");
    cr_assert(strstr(err, "mq") != NULL, "the error names the sink: %s", err);

    /* Back: OK again without a relay restart. While it reconnects (its
     * back-off is up to 200 ms) the sink answers at once, so poll by time,
     * not by a number of tries. */
    mqtt_server_restart(&broker);
    sub = mqtt_server_sub_start(broker.port, "relay/#", NULL, NULL);
    int64_t deadline = harness_now_ms() + 15000;
    while (counts[RC_ACK_OK] < 10 && harness_now_ms() < deadline) {
        harness_stream_frames(s, "drone-e2e", seq, 10, counts, NULL, 0);
        seq += 10;
    }
    cr_assert_eq(counts[RC_ACK_OK], 10, "acks once the broker is back");
    cr_assert(mqtt_server_sub_wait(sub, 10, 5000));

    cr_assert_eq(rc_stream_close_send(s, 5000), 0);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    rc_stream_free(s);
    rc_close(ch);
    ch = NULL;
    cr_assert_eq(relay_stop(&relay, 20000), 0, "clean exit");
}

#define E2E_RELAY_ID "relay-mqtt-e2e"
#define WAL_A "3f2b8c1e-5d4a-4b6f-9e8d-7c6b5a4f3e2d"

Test(mqtt_e2e, gen2_and_seed_frames_carry_protocol_wal_intent_and_relay)
{
    mqtt_server_start(&broker, 0, NULL, NULL);
    sub = mqtt_server_sub_start(broker.port, "g/#", NULL, NULL);
    harness_prepare(&relay);
    char body[512], session[128];
    snprintf(body, sizeof(body),
             "[sink:mq]\nplugin = sink-mqtt\nport = %d\n"
             "topic = g/{protocol}/{agent_id}/{wal_id}/{intent_id}/{intent_version}/{operator_id}\n"
             "qos = 1\n", broker.port);
    ch = harness_start(&relay, "relay_id = " E2E_RELAY_ID "\n", body);

    struct rc_status st;
    harness_register(ch, "drone-g2", session, sizeof(session));
    struct rc_stream *s = rc_stream_open_gen2(ch, "drone-g2", session, NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    struct rc_frame f = *harness_frame("drone-g2", 1);
    f.session_id = session;
    f.wal_id = WAL_A;
    f.intent_id = "intent-9";
    f.intent_version = 4;
    cr_assert_eq(rc_stream_send_gen2_frame(s, &f, 5000), 0);
    struct rc_relay_msg m;
    cr_assert_eq(rc_stream_recv_gen2(s, &m, 10000), 1);
    cr_assert_eq(m.arm, RC_RELAY_TELEMETRY_ACK);
    cr_assert_eq(m.ack.status, RC_ACK_OK, "%s", m.ack.error);
    cr_assert_eq(rc_stream_close_send(s, 5000), 0);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    rc_stream_free(s);
    /* QoS 1 acked OK: the broker has it; the seed frame goes after it. */
    cr_assert(mqtt_server_sub_wait(sub, 1, 5000));

    harness_register(ch, "drone-seed", NULL, 0);
    s = rc_stream_open(ch, "drone-seed", NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    size_t counts[4];
    harness_stream_frames(s, "drone-seed", 1, 1, counts, NULL, 0);
    cr_assert_eq(counts[RC_ACK_OK], 1);
    cr_assert_eq(rc_stream_close_send(s, 5000), 0);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    rc_stream_free(s);
    cr_assert(mqtt_server_sub_wait(sub, 2, 5000));

    cr_assert_str_eq(mqtt_server_sub_topic(sub, 0),
                     "g/multiplexed/drone-g2/" WAL_A "/intent-9/4/");
    const char *p = mqtt_server_sub_payload(sub, 0, NULL);
    cr_assert_not_null(strstr(p, ",\"protocol\":\"multiplexed\",\"wal_id\":\"" WAL_A "\","
                                 "\"intent_id\":\"intent-9\",\"intent_version\":4,"
                                 "\"relay_id\":\"" E2E_RELAY_ID "\",\"operator_id\":\"\","
                                 "\"aircraft_id\":\"\"}"), "%s", p);
    cr_assert_str_eq(mqtt_server_sub_topic(sub, 1), "g/seed/drone-seed//" "/0/");
    p = mqtt_server_sub_payload(sub, 1, NULL);
    cr_assert_not_null(strstr(p, ",\"protocol\":\"seed\",\"wal_id\":\"\","), "%s", p);
    cr_assert_not_null(strstr(p, "\"relay_id\":\"" E2E_RELAY_ID "\""), "%s", p);

    rc_close(ch);
    ch = NULL;
    cr_assert_eq(relay_stop(&relay, 20000), 0, "clean exit");
}
