/*
 * test_sink_mqtt.c - the sink-mqtt plugin against the fake host and a real
 * mosquitto (tests/integration/mqtt_server.c) on a free loopback port:
 * frames delivered to a subscriber with their topics and payloads, topic
 * sanitising, the ABI 1.1 placeholders and JSON keys (protocol, wal_id,
 * intent, relay, operator, aircraft), QoS 1 acked only at PUBACK, the broker down at start, lost
 * mid-stream and back, a password-protected broker, and config errors.
 */
#include "harness.h"
#include "mqtt_server.h"
#include "sink_test.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct mqtt_server broker;
static struct mqtt_server_sub *sub;

static void setup(void)
{
    sink_test_load("sink-mqtt");
    sub = NULL;
    memset(&broker, 0, sizeof(broker));
}

static void teardown(void)
{
    sink_test_unload();
    mqtt_server_sub_stop(sub);
    mqtt_server_cleanup(&broker);
}

TestSuite(sink_mqtt, .init = setup, .fini = teardown, .timeout = 60);

/* A sink-mqtt instance "mq" on port with extra config kv (NULL-terminated
 * pairs); fails the test unless create() returns want_rc. */
static void *instance(int port, const char *const *extra, int want_rc, fake_host **out)
{
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    const char *const base[] = {"port", p, "reconnect_delay_ms", "50",
                                "reconnect_delay_max_ms", "200", NULL};
    return sink_test_instance("mq", base, extra, want_rc, out);
}

/* Frames seq first..first+n-1 of agent drone-1. */
struct frames {
    aero_frame f[256];
    const aero_frame *p[256];
    aero_kv kv[2];
    char proto[256][16];
};

static struct frames *frames_new(uint64_t first, size_t n)
{
    struct frames *fr = calloc(1, sizeof(*fr));
    cr_assert_leq(n, 256);
    fr->kv[0] = (aero_kv){{"alt", 3}, {"12.5", 4}};
    fr->kv[1] = (aero_kv){{"mode", 4}, {"GUIDED", 6}};
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(fr->proto[i], sizeof(fr->proto[i]), "\x18%c-pb",
                           (char)(first + i));
        fr->f[i] = (aero_frame){
            .size = sizeof(aero_frame),
            .agent_id = {"drone-1", 7},
            .session_id = {"sess-1", 6},
            .seq = first + i,
            .sent_at_unix_ns = 1700000000000000000 + (int64_t)i,
            .dialect = {"common", 6},
            .msg_name = {"HEARTBEAT", 9},
            .fields = fr->kv,
            .n_fields = 2,
            .flight_id = {"f-1", 3},
            .received_unix_ns = 1700000000000000000,
            .protobuf = {fr->proto[i], (size_t)len},
        };
        fr->p[i] = &fr->f[i];
    }
    return fr;
}

/* Writes n frames; returns how many came back `want` (others counted in
 * *other when not NULL). */
static size_t write_count(void *inst, struct frames *fr, size_t n, aero_result want,
                          size_t *other)
{
    size_t k = sink_test_write(inst, fr->p, n, want, NULL);
    if (other)
        *other = n - k;
    return k;
}

/* Polls (every 10 ms, with a deadline) until a batch of the first n frames
 * comes back all `want`. */
static bool until_all(void *inst, struct frames *fr, size_t n, aero_result want, int timeout_ms)
{
    return sink_test_until_all(inst, fr->p, n, want, timeout_ms);
}

/* The network thread logs asynchronously: poll for a line. */
struct log_wait {
    fake_host *fh;
    const char *needle;
};

static bool log_has_now(void *arg)
{
    struct log_wait *w = arg;
    return fake_host_log_contains(w->fh, w->needle);
}

static bool log_has(fake_host *fh, const char *needle)
{
    struct log_wait w = {fh, needle};
    return harness_wait_for(log_has_now, &w, 5000);
}

/* ------------------------------------------------------------- delivery */

Test(sink_mqtt, delivers_every_frame_as_json_with_qos1)
{
    mqtt_server_start(&broker, 0, NULL, NULL);
    sub = mqtt_server_sub_start(broker.port, "telemetry/#", NULL, NULL);
    fake_host *fh;
    void *inst = instance(broker.port, NULL, 0, &fh);
    struct frames *fr = frames_new(1, 50);

    cr_assert_eq(write_count(inst, fr, 50, AERO_OK, NULL), 50);
    cr_assert(mqtt_server_sub_wait(sub, 50, 5000), "only %zu messages", mqtt_server_sub_count(sub));
    for (size_t i = 0; i < 50; i++) {
        cr_assert_str_eq(mqtt_server_sub_topic(sub, i), "telemetry/drone-1/HEARTBEAT");
        char want[64];
        snprintf(want, sizeof(want), "\"seq\":%zu,", i + 1); /* QoS 1 from one client: in order */
        const char *p = mqtt_server_sub_payload(sub, i, NULL);
        cr_assert(strncmp(p, "{\"agent_id\":\"drone-1\"", 21) == 0, "%s", p);
        cr_assert_not_null(strstr(p, want), "message %zu: %s", i, p);
        cr_assert_not_null(strstr(p, "\"fields\":{\"alt\":\"12.5\",\"mode\":\"GUIDED\"}"), "%s", p);
    }
    cr_assert_eq(sink_test_metric(fh, "aero_sink_mqtt_published_total"), 50);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_mqtt_failed_total"), 0);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_mqtt_connected"), 1);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_mqtt_connects_total"), 1);

    /* The default client id names the relay and the instance. */
    char path[300];
    snprintf(path, sizeof(path), "%s/mosquitto.log", broker.dir);
    char *log = harness_read_file(path, NULL);
    cr_assert_not_null(strstr(log, " as aeroarc-relay-test-mq "), "%s", log);
    free(log);
    free(fr);
}

Test(sink_mqtt, qos2_protobuf_payload_and_retain)
{
    mqtt_server_start(&broker, 0, NULL, NULL);
    const char *cfg[] = {"qos", "2", "format", "protobuf", "retain", "true",
                         "topic", "pb/{agent_id}/{msg_id}", NULL};
    void *inst = instance(broker.port, cfg, 0, NULL);
    struct frames *fr = frames_new(7, 3);
    fr->f[2].msg_id = 33;
    cr_assert_eq(write_count(inst, fr, 3, AERO_OK, NULL), 3);

    /* Retained: a subscriber arriving afterwards still gets the last
     * message of each topic. */
    sub = mqtt_server_sub_start(broker.port, "pb/#", NULL, NULL);
    cr_assert(mqtt_server_sub_wait(sub, 2, 5000), "%zu retained messages", mqtt_server_sub_count(sub));
    int seen0 = 0, seen33 = 0;
    for (size_t i = 0; i < mqtt_server_sub_count(sub); i++) {
        size_t len;
        const char *p = mqtt_server_sub_payload(sub, i, &len);
        const char *t = mqtt_server_sub_topic(sub, i);
        if (strcmp(t, "pb/drone-1/0") == 0) {
            seen0 = 1;
            cr_assert_eq(len, fr->f[1].protobuf.len);
            cr_assert_eq(memcmp(p, fr->f[1].protobuf.ptr, len), 0, "latest of topic 0");
        } else {
            cr_assert_str_eq(t, "pb/drone-1/33");
            seen33 = 1;
            cr_assert_eq(memcmp(p, fr->f[2].protobuf.ptr, len), 0);
        }
    }
    cr_assert(seen0 && seen33);
    free(fr);
}

Test(sink_mqtt, placeholders_are_sanitised_into_one_level_each)
{
    mqtt_server_start(&broker, 0, NULL, NULL);
    sub = mqtt_server_sub_start(broker.port, "#", NULL, NULL);
    const char *cfg[] = {"topic", "t/{msg_name}/{flight_id}/{dialect}/{instance}", NULL};
    void *inst = instance(broker.port, cfg, 0, NULL);
    struct frames *fr = frames_new(1, 1);
    fr->f[0].msg_name = (aero_str){"A/B+C#D", 7};
    fr->f[0].flight_id = (aero_str){"f\x01\xff\xc3\xa9", 5}; /* control, bad byte, é */
    fr->f[0].dialect = (aero_str){"", 0};
    cr_assert_eq(write_count(inst, fr, 1, AERO_OK, NULL), 1);
    cr_assert(mqtt_server_sub_wait(sub, 1, 5000));
    cr_assert_str_eq(mqtt_server_sub_topic(sub, 0), "t/A_B_C_D/f__\xc3\xa9//mq");
    free(fr);
}

#define WAL_A "3f2b8c1e-5d4a-4b6f-9e8d-7c6b5a4f3e2d"

Test(sink_mqtt, abi_1_1_placeholders_and_json_keys)
{
    mqtt_server_start(&broker, 0, NULL, NULL);
    sub = mqtt_server_sub_start(broker.port, "#", NULL, NULL);
    const char *cfg[] = {"topic", "fleet/{operator_id}/{aircraft_id}/{protocol}/{intent_id}/"
                                  "{intent_version}/{wal_id}/{msg_name}", NULL};
    void *inst = instance(broker.port, cfg, 0, NULL);
    struct frames *fr = frames_new(1, 3);
    /* 0: a generation-2 frame of a mapped agent; the aircraft id holds
     * bytes a level cannot. */
    fr->f[0].protocol = AERO_PROTOCOL_MULTIPLEXED;
    fr->f[0].wal_id = (aero_str){WAL_A, 36};
    fr->f[0].intent_id = (aero_str){"intent-9", 8};
    fr->f[0].intent_version = 4;
    fr->f[0].relay_id = (aero_str){"relay-7", 7};
    fr->f[0].operator_id = (aero_str){"op-1", 4};
    fr->f[0].aircraft_id = (aero_str){"ac/1+#", 6};
    /* 1: zeroed 1.1 fields (protocol 0 is seed): empty levels. */
    /* 2: a frame from an ABI 1.0 producer: the 1.1 fields are not read. */
    fr->f[2].size = offsetof(aero_frame, protocol);
    cr_assert_eq(write_count(inst, fr, 3, AERO_OK, NULL), 3);
    cr_assert(mqtt_server_sub_wait(sub, 3, 5000));
    cr_assert_str_eq(mqtt_server_sub_topic(sub, 0),
                     "fleet/op-1/ac_1__/multiplexed/intent-9/4/" WAL_A "/HEARTBEAT");
    cr_assert_str_eq(mqtt_server_sub_topic(sub, 1), "fleet///seed//0//HEARTBEAT");
    cr_assert_str_eq(mqtt_server_sub_topic(sub, 2), "fleet///seed//0//HEARTBEAT");
    /* The JSON payload is the envelope, with the same keys. */
    const char *p = mqtt_server_sub_payload(sub, 0, NULL);
    cr_assert_not_null(strstr(p, ",\"protocol\":\"multiplexed\",\"wal_id\":\"" WAL_A "\","
                                 "\"intent_id\":\"intent-9\",\"intent_version\":4,"
                                 "\"relay_id\":\"relay-7\",\"operator_id\":\"op-1\","
                                 "\"aircraft_id\":\"ac/1+#\"}"), "%s", p);
    p = mqtt_server_sub_payload(sub, 1, NULL);
    cr_assert_not_null(strstr(p, ",\"protocol\":\"seed\",\"wal_id\":\"\",\"intent_id\":\"\","
                                 "\"intent_version\":0,\"relay_id\":\"\",\"operator_id\":\"\","
                                 "\"aircraft_id\":\"\"}"), "%s", p);
    p = mqtt_server_sub_payload(sub, 2, NULL);
    cr_assert_null(strstr(p, "\"protocol\""), "%s", p);
    free(fr);
}

/* check (and create) report each problem with its relay.ini line: the
 * section is line 1, pair i of the config line 2 + i. */
Test(sink_mqtt, check_reports_every_problem_with_file_and_line)
{
    static const struct {
        const char *kv[10];
        const char *want;
    } cases[] = {
        {{"topic", "t/+/x", NULL},
         "relay.ini:2: [sink:mq] topic: '+' and '#' are subscription wildcards and cannot "
         "appear in a published topic\n"},
        {{"topic", "t/#", NULL},
         "relay.ini:2: [sink:mq] topic: '+' and '#' are subscription wildcards and cannot "
         "appear in a published topic\n"},
        {{"topic", "t/{nope}", NULL},
         "relay.ini:2: [sink:mq] topic: unknown placeholder in \"t/{nope}\" (valid: {agent_id} "
         "{msg_name} {msg_id} {flight_id} {session_id} {dialect} {relay_id} {instance} "
         "{protocol} {wal_id} {intent_id} {intent_version} {operator_id} {aircraft_id})\n"},
        {{"topic", "t/{agent_id", NULL},
         "relay.ini:2: [sink:mq] topic: unclosed '{' in \"t/{agent_id\"\n"},
        {{"topic", "", NULL}, "relay.ini:2: [sink:mq] topic: must not be empty\n"},
        {{"host", "", NULL}, "relay.ini:2: [sink:mq] host: must not be empty\n"},
        {{"password", "secret", NULL},
         "relay.ini:2: [sink:mq] password: set without username\n"},
        {{"tls", "true", "cert_file", AERO_SOURCE_DIR "/relay.ini", NULL},
         "relay.ini:3: [sink:mq] cert_file: cert_file and key_file go together (set both or "
         "neither)\n"},
        {{"ca_file", AERO_SOURCE_DIR "/relay.ini", NULL},
         "relay.ini:2: [sink:mq] ca_file: set but tls is off (set tls = true)\n"},
        {{"tls", "TRUE", "ca_file", "/nonexistent/ca.pem", NULL},
         "relay.ini:3: [sink:mq] ca_file: cannot read \"/nonexistent/ca.pem\": No such file or "
         "directory\n"},
        {{"tls", "yes", "ca_file", "/tmp", NULL},
         "relay.ini:3: [sink:mq] ca_file: \"/tmp\" is not a regular file\n"},
        {{"tls", "on", "cert_file", "/nonexistent/c.pem", "key_file", "/nonexistent/k.pem",
          NULL},
         "relay.ini:3: [sink:mq] cert_file: cannot read \"/nonexistent/c.pem\": No such file "
         "or directory\n"
         "relay.ini:4: [sink:mq] key_file: cannot read \"/nonexistent/k.pem\": No such file or "
         "directory\n"},
        {{"reconnect_delay_ms", "1000", "reconnect_delay_max_ms", "100", NULL},
         "relay.ini:3: [sink:mq] reconnect_delay_max_ms: 100 is below reconnect_delay_ms "
         "(1000)\n"},
        /* every problem, not just the first */
        {{"topic", "a/#", "password", "x", "ca_file", "/nonexistent/ca.pem", NULL},
         "relay.ini:3: [sink:mq] password: set without username\n"
         "relay.ini:4: [sink:mq] ca_file: set but tls is off (set tls = true)\n"
         "relay.ini:4: [sink:mq] ca_file: cannot read \"/nonexistent/ca.pem\": No such file or "
         "directory\n"
         "relay.ini:2: [sink:mq] topic: '+' and '#' are subscription wildcards and cannot "
         "appear in a published topic\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_log_info("case %zu", i);
        sink_test_check("mq", cases[i].kv, cases[i].want, true);
    }
    /* Every boolean spelling the relay accepts passes check. */
    const char *const good[] = {"tls", "On", "insecure", "FALSE", "retain", "1",
                                "ca_file", AERO_SOURCE_DIR "/relay.ini", NULL};
    sink_test_check("mq", good, "", false);
}

/* tls = On (any case, any spelling the relay accepts) connects with TLS:
 * the broker's listener speaks only TLS, so a plaintext client (what "On"
 * used to mean here) never gets a frame through. */
Test(sink_mqtt, tls_on_in_any_spelling_connects_with_tls)
{
    mqtt_server_start_tls(&broker);
    sub = mqtt_server_sub_start(broker.plain_port, "telemetry/#", NULL, NULL);
    struct frames *fr = frames_new(1, 2);
    static const char *const spellings[] = {"On", "TRUE", "Yes", "1"};
    size_t delivered = 0;
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        char id[32];
        snprintf(id, sizeof(id), "tls-%zu", i);
        const char *kv[] = {"host", "localhost", "tls", spellings[i], "ca_file", broker.ca_file,
                            "client_id", id, NULL};
        void *inst = instance(broker.port, kv, 0, NULL);
        cr_assert(until_all(inst, fr, 2, AERO_OK, 5000), "tls = %s: frames not accepted",
                  spellings[i]);
        delivered += 2;
        cr_assert(mqtt_server_sub_wait(sub, delivered, 5000), "tls = %s", spellings[i]);
        sink_test_destroy(inst);
    }
    /* The control: tls = Off to the same TLS-only listener gets nowhere. */
    const char *off[] = {"host", "localhost", "tls", "Off", "client_id", "plain", NULL};
    fake_host *fh;
    void *inst = instance(broker.port, off, 0, &fh);
    cr_assert_eq(write_count(inst, fr, 2, AERO_RETRY, NULL), 2);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_mqtt_connects_total"), 0);
    free(fr);
}

/* ------------------------------------------------------------ failures */

Test(sink_mqtt, qos1_is_not_ok_until_the_broker_acks)
{
    mqtt_server_start(&broker, 0, NULL, NULL);
    const char *cfg[] = {"publish_timeout_ms", "1000", "max_inflight", "4", NULL};
    fake_host *fh;
    void *inst = instance(broker.port, cfg, 0, &fh);
    struct frames *fr = frames_new(1, 5);
    cr_assert_eq(write_count(inst, fr, 5, AERO_OK, NULL), 5);

    /* A hung broker keeps the TCP connection: the PUBLISH goes out, no PUBACK. */
    mqtt_server_pause(&broker);
    int64_t t0 = harness_now_ms();
    cr_assert_eq(write_count(inst, fr, 5, AERO_BACKOFF, NULL), 5);
    int64_t took = harness_now_ms() - t0;
    cr_assert(took >= 990 && took < 3000, "waited %lld ms for acks", (long long)took);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_mqtt_ack_timeouts_total"), 1);
    cr_assert_eq(sink_test_metric(fh, "aero_sink_mqtt_unacked_messages"), 5);

    /* Past max_inflight unacked messages, batches are not even queued (no
     * wait: half the ack timeout is the bound). */
    t0 = harness_now_ms();
    cr_assert_eq(write_count(inst, fr, 5, AERO_BACKOFF, NULL), 5);
    cr_assert_lt(harness_now_ms() - t0, 500);

    mqtt_server_resume(&broker);
    cr_assert(until_all(inst, fr, 5, AERO_OK, 5000), "OK again once the broker acks");
    cr_assert_eq(sink_test_metric(fh, "aero_sink_mqtt_unacked_messages"), 0,
                 "the late acks were collected");
    free(fr);
}

Test(sink_mqtt, qos0_is_ok_once_handed_over_even_to_a_hung_broker)
{
    mqtt_server_start(&broker, 0, NULL, NULL);
    const char *cfg[] = {"qos", "0", NULL};
    void *inst = instance(broker.port, cfg, 0, NULL);
    struct frames *fr = frames_new(1, 5);
    mqtt_server_pause(&broker);
    int64_t t0 = harness_now_ms();
    cr_assert_eq(write_count(inst, fr, 5, AERO_OK, NULL), 5, "no delivery guarantee");
    cr_assert_lt(harness_now_ms() - t0, 1000); /* not publish_timeout_ms (5 s) */
    mqtt_server_resume(&broker);
    free(fr);
}

Test(sink_mqtt, broker_down_at_start_gives_retry_at_once_then_recovers)
{
    int port = harness_free_port();
    int64_t t0 = harness_now_ms();
    fake_host *fh;
    void *inst = instance(port, NULL, 0, &fh);
    cr_assert_lt(harness_now_ms() - t0, 1000, "create does not wait for a refusing broker");
    cr_assert(fake_host_log_contains(fh, "not connected yet"));
    struct frames *fr = frames_new(1, 10);
    for (int i = 0; i < 3; i++) {
        t0 = harness_now_ms();
        cr_assert_eq(write_count(inst, fr, 10, AERO_RETRY, NULL), 10);
        cr_assert_lt(harness_now_ms() - t0, 1000, "known down: no waiting");
    }
    cr_assert_eq(sink_test_metric(fh, "aero_sink_mqtt_connected"), 0);

    mqtt_server_start(&broker, port, NULL, NULL);
    sub = mqtt_server_sub_start(broker.port, "telemetry/#", NULL, NULL);
    cr_assert(until_all(inst, fr, 10, AERO_OK, 5000), "connected without a restart");
    cr_assert(mqtt_server_sub_wait(sub, 10, 5000));
    cr_assert_eq(sink_test_metric(fh, "aero_sink_mqtt_connected"), 1);
    free(fr);
}

Test(sink_mqtt, broker_lost_mid_stream_gives_retry_then_ok_after_it_returns)
{
    mqtt_server_start(&broker, 0, NULL, NULL);
    fake_host *fh;
    void *inst = instance(broker.port, NULL, 0, &fh);
    struct frames *fr = frames_new(1, 20);
    cr_assert_eq(write_count(inst, fr, 20, AERO_OK, NULL), 20);

    mqtt_server_stop(&broker);
    /* The connection drop is seen at once (EOF); no batch waits for acks
     * that cannot come. */
    int64_t t0 = harness_now_ms();
    cr_assert(until_all(inst, fr, 20, AERO_RETRY, 5000));
    cr_assert_lt(harness_now_ms() - t0, 1000);
    for (int i = 0; i < 3; i++) {
        t0 = harness_now_ms();
        cr_assert_eq(write_count(inst, fr, 20, AERO_RETRY, NULL), 20);
        cr_assert_lt(harness_now_ms() - t0, 1000); /* not publish_timeout_ms (5 s) */
    }
    cr_assert(log_has(fh, "connection lost"));

    mqtt_server_restart(&broker);
    sub = mqtt_server_sub_start(broker.port, "telemetry/#", NULL, NULL);
    cr_assert(until_all(inst, fr, 20, AERO_OK, 5000));
    cr_assert(mqtt_server_sub_wait(sub, 20, 5000));
    cr_assert_geq(sink_test_metric(fh, "aero_sink_mqtt_connects_total"), 2);
    cr_assert_geq(sink_test_metric(fh, "aero_sink_mqtt_disconnects_total"), 1);
    free(fr);
}

Test(sink_mqtt, password_protected_broker)
{
    mqtt_server_start(&broker, 0, "relay", "s3cret");
    sub = mqtt_server_sub_start(broker.port, "telemetry/#", "relay", "s3cret");
    const char *good[] = {"username", "relay", "password", "s3cret", "client_id", "good", NULL};
    const char *bad[] = {"username", "relay", "password", "wrong", "client_id", "bad", NULL};
    void *ok_inst = instance(broker.port, good, 0, NULL);
    fake_host *fh_bad;
    void *bad_inst = instance(broker.port, bad, 0, &fh_bad);
    struct frames *fr = frames_new(1, 5);

    cr_assert_eq(write_count(ok_inst, fr, 5, AERO_OK, NULL), 5);
    cr_assert(mqtt_server_sub_wait(sub, 5, 5000));
    cr_assert_eq(write_count(bad_inst, fr, 5, AERO_RETRY, NULL), 5);
    cr_assert(log_has(fh_bad, "not authorised"));
    cr_assert_eq(mqtt_server_sub_count(sub), 5, "nothing published by the refused client");
    free(fr);
}

/* TCP connections the broker has logged so far. */
static intptr_t broker_connections(void)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/mosquitto.log", broker.dir);
    char *log = harness_read_file(path, NULL);
    intptr_t n = 0;
    for (const char *p = log; p && (p = strstr(p, "New connection from")); p++)
        n++;
    free(log);
    return n;
}

static bool broker_saw_connections(void *arg)
{
    return broker_connections() >= (intptr_t)arg;
}

Test(sink_mqtt, tls_checks_the_broker_certificate_and_name)
{
    mqtt_server_start_tls(&broker);
    sub = mqtt_server_sub_start(broker.plain_port, "telemetry/#", NULL, NULL);
    struct frames *fr = frames_new(1, 3);

    const char *good[] = {"host", "localhost", "tls", "true", "ca_file", broker.ca_file,
                          "client_id", "good", NULL};
    void *ok_inst = instance(broker.port, good, 0, NULL);
    cr_assert_eq(write_count(ok_inst, fr, 3, AERO_OK, NULL), 3);
    cr_assert(mqtt_server_sub_wait(sub, 3, 5000));

    /* The certificate names "localhost", not 127.0.0.1. */
    const char *wrong_name[] = {"host", "127.0.0.1", "tls", "true", "ca_file", broker.ca_file,
                                "client_id", "wrong-name", NULL};
    fake_host *fh;
    void *bad_inst = instance(broker.port, wrong_name, 0, &fh);
    cr_assert_eq(write_count(bad_inst, fr, 3, AERO_RETRY, NULL), 3);
    cr_assert(log_has(fh, "cannot connect"));
    cr_assert_eq(sink_test_metric(fh, "aero_sink_mqtt_connects_total"), 0);
    /* A TLS failure does not end the network thread: it keeps trying. */
    intptr_t seen = broker_connections();
    cr_assert(harness_wait_for(broker_saw_connections, (void *)(seen + 2), 5000),
              "no new attempts after a TLS failure");

    /* insecure: the same address, the name check off, the chain still checked. */
    const char *insecure[] = {"host", "127.0.0.1", "tls", "true", "ca_file", broker.ca_file,
                              "insecure", "true", "client_id", "insecure", NULL};
    void *ins_inst = instance(broker.port, insecure, 0, NULL);
    cr_assert_eq(write_count(ins_inst, fr, 3, AERO_OK, NULL), 3);
    cr_assert(mqtt_server_sub_wait(sub, 6, 5000));
    free(fr);
}
