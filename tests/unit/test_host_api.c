/*
 * test_host_api.c - the aero_host the relay gives plugins (core/host_api.c),
 * ABI 1.1 slots: config_bool (every spelling, any case), config_int (range
 * checked), config_enum, missing keys and defaults, and config_error's
 * exact line: FILE:LINE: [section] key: message, the key's line or the
 * section's. Every failure of a typed read is reported once, exactly.
 * ABI 1.2: listen address and port, the session lookup, /readyz details.
 * Later minors: labels, histograms, a route's state, count_queue_full.
 */
#include "config.h"
#include "host_api.h"
#include "metrics.h"
#include "readiness.h"
#include "session_table.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static struct config_file file;
static struct host_instance *hi;
static const aero_host *host;
static char reported[4096];
static unsigned n_reported;

static void capture(void *arg, const char *line)
{
    (void)arg;
    size_t used = strlen(reported);
    snprintf(reported + used, sizeof(reported) - used, "%s\n", line);
    n_reported++;
}

/* [sink:t] on line 3 of t.ini (plugin sink-t); keys from line 4; "dflt" is a default
 * (line 0, as config_validate_section fills them in). */
static const char *const TEXT = "; test\n"
                                "\n"
                                "[sink:t]\n"
                                "b_on = On\n"
                                "b_bad = maybe\n"
                                "n = 42\n"
                                "n_neg = -7\n"
                                "n_bad = 4x\n"
                                "n_huge = 99999999999999999999\n"
                                "mode = batch\n"
                                "empty =\n"
                                "plugin = sink-t\n";

/* The labels the relay gives every series of that sink. */
#define T_LABELS "sink=\"t\",plugin=\"sink-t\""

static void setup(void)
{
    char err[CONFIG_ERR_LEN];
    cr_assert_eq(config_parse_string("t.ini", TEXT, &file, err, sizeof(err)), 0, "%s", err);
    struct config_section *s = config_find(&file, "sink:t");
    cr_assert_not_null(s);
    cr_assert_eq(config_add_kv(s, "dflt", "off", 0), 0);
    hi = host_instance_create("sink", "t", s, "relay-1", NULL);
    cr_assert_not_null(hi);
    host_instance_set_config_report(hi, capture, NULL);
    host = host_instance_api(hi);
    reported[0] = '\0';
    n_reported = 0;
}

static void teardown(void)
{
    host_instance_destroy(hi);
    config_free(&file);
}

TestSuite(host_api, .init = setup, .fini = teardown);

Test(host_api, has_every_1_1_slot)
{
    cr_assert(AERO_HAS(host, aero_host, config_bool));
    cr_assert(AERO_HAS(host, aero_host, config_int));
    cr_assert(AERO_HAS(host, aero_host, config_enum));
    cr_assert(AERO_HAS(host, aero_host, config_error));
    cr_assert_not_null(host->config_error);
}

/* One parser: every spelling, in any case, means the same. */
Test(host_api, config_bool_takes_every_spelling_in_any_case)
{
    static const struct {
        const char *text;
        int want;
    } words[] = {
        {"true", 1}, {"TRUE", 1}, {"True", 1}, {"yes", 1}, {"YES", 1}, {"Yes", 1},
        {"on", 1},   {"On", 1},   {"ON", 1},   {"1", 1},   {"false", 0}, {"FALSE", 0},
        {"False", 0}, {"no", 0},  {"NO", 0},   {"No", 0},  {"off", 0},   {"Off", 0},
        {"OFF", 0},  {"0", 0},
    };
    struct config_section *s = config_find(&file, "sink:t");
    for (size_t i = 0; i < N_ELEMS(words); i++) {
        char key[32];
        snprintf(key, sizeof(key), "w%zu", i);
        cr_assert_eq(config_add_kv(s, key, words[i].text, 20 + (int)i), 0);
        int v = -1;
        cr_expect_eq(host->config_bool(host, key, &v), 0, "%s", words[i].text);
        cr_expect_eq(v, words[i].want, "%s", words[i].text);
    }
    int v = -1;
    cr_expect_eq(host->config_bool(host, "b_on", &v), 0);
    cr_expect_eq(v, 1);
    cr_expect_eq(n_reported, 0, "%s", reported);
}

Test(host_api, config_bool_reports_a_bad_value_with_its_line)
{
    int v = 7;
    cr_expect_eq(host->config_bool(host, "b_bad", &v), -EINVAL);
    cr_expect_eq(v, 7, "*out untouched on failure");
    cr_expect_str_eq(reported, "t.ini:5: [sink:t] b_bad: invalid value \"maybe\" (expected true "
                               "| false | yes | no | on | off | 1 | 0)\n");
    cr_expect_eq(host_instance_config_errors(hi), 1);
}

Test(host_api, missing_keys_and_defaults)
{
    int b = 5, idx = 5;
    int64_t n = 5;
    /* not set, no default: -ENOENT, nothing reported, *out untouched */
    cr_expect_eq(host->config_bool(host, "nope", &b), -ENOENT);
    cr_expect_eq(host->config_int(host, "nope", 0, 10, &n), -ENOENT);
    cr_expect_eq(host->config_enum(host, "nope", "a|b", &idx), -ENOENT);
    cr_expect(b == 5 && n == 5 && idx == 5);
    cr_expect_eq(n_reported, 0, "%s", reported);
    /* a default filled in by the validator reads like a set value */
    cr_expect_eq(host->config_bool(host, "dflt", &b), 0);
    cr_expect_eq(b, 0);
}

Test(host_api, config_int_in_range_and_out)
{
    int64_t v = 0;
    cr_expect_eq(host->config_int(host, "n", 1, 100, &v), 0);
    cr_expect_eq(v, 42);
    cr_expect_eq(host->config_int(host, "n", 42, 42, &v), 0, "bounds are inclusive");
    cr_expect_eq(host->config_int(host, "n_neg", INT64_MIN, INT64_MAX, &v), 0);
    cr_expect_eq(v, -7);
    cr_expect_eq(n_reported, 0, "%s", reported);

    v = 99;
    cr_expect_eq(host->config_int(host, "n", 1, 41, &v), -ERANGE);
    cr_expect_eq(v, 99);
    cr_expect_eq(host->config_int(host, "n_bad", 0, 10, &v), -EINVAL);
    cr_expect_eq(host->config_int(host, "n_huge", INT64_MIN, INT64_MAX, &v), -ERANGE);
    cr_expect_eq(host->config_int(host, "empty", 0, 10, &v), -EINVAL);
    cr_expect_eq(v, 99);
    cr_expect_str_eq(reported,
                     "t.ini:6: [sink:t] n: value \"42\" out of range (expected 1 to 41)\n"
                     "t.ini:8: [sink:t] n_bad: invalid value \"4x\" (expected an integer from 0 "
                     "to 10)\n"
                     "t.ini:9: [sink:t] n_huge: value \"99999999999999999999\" out of range "
                     "(expected -9223372036854775808 to 9223372036854775807)\n"
                     "t.ini:11: [sink:t] empty: invalid value \"\" (expected an integer from 0 "
                     "to 10)\n");
    cr_expect_eq(host_instance_config_errors(hi), 4);
}

Test(host_api, config_enum_gives_the_index_or_reports)
{
    int idx = -1;
    cr_expect_eq(host->config_enum(host, "mode", "none|batch", &idx), 0);
    cr_expect_eq(idx, 1);
    cr_expect_eq(host->config_enum(host, "mode", "batch", &idx), 0);
    cr_expect_eq(idx, 0);
    idx = 9;
    cr_expect_eq(host->config_enum(host, "mode", "none|Batch|sync", &idx), -EINVAL,
                 "choices are compared exactly");
    cr_expect_eq(idx, 9);
    cr_expect_str_eq(reported, "t.ini:10: [sink:t] mode: invalid value \"batch\" (expected none "
                               "| Batch | sync)\n");
}

Test(host_api, config_error_points_at_the_key_or_the_section)
{
    cr_expect_eq(host->config_error(host, "n", "%d is too %s", 42, "odd"), -EINVAL);
    cr_expect_eq(host->config_error(host, "dflt", "a default: the section's line"), -EINVAL);
    cr_expect_eq(host->config_error(host, "never_set", "not set: the section's line"), -EINVAL);
    cr_expect_eq(host->config_error(host, NULL, "about the whole section"), -EINVAL);
    cr_expect_str_eq(reported, "t.ini:6: [sink:t] n: 42 is too odd\n"
                               "t.ini:3: [sink:t] dflt: a default: the section's line\n"
                               "t.ini:3: [sink:t] never_set: not set: the section's line\n"
                               "t.ini:3: [sink:t]: about the whole section\n");
    cr_expect_eq(host_instance_config_errors(hi), 4);
}

/* A section the file does not have (the relay adds [route] when it is
 * missing, on line 0): the message carries no line rather than a wrong one. */
Test(host_api, config_error_in_a_section_not_in_the_file)
{
    struct config_section *s = config_add_section(&file, "route", 0);
    cr_assert_not_null(s);
    struct host_instance *r = host_instance_create("route", "route-x", s, "relay-1", NULL);
    cr_assert_not_null(r);
    host_instance_set_config_report(r, capture, NULL);
    const aero_host *rh = host_instance_api(r);
    rh->config_error(rh, "redis_addr", "bad");
    host_instance_destroy(r);
    cr_expect_str_eq(reported, "t.ini: [route] redis_addr: bad\n");
}

/* A check() host has no metrics: registering says so instead of crashing. */
Test(host_api, metric_register_without_metrics_returns_null)
{
    cr_expect_null(host->metric_register(host, AERO_METRIC_COUNTER, "x_total", "x"));
}

Test(host_api, with_metrics_registers)
{
    struct metrics *m = metrics_create();
    struct host_instance *h2 =
        host_instance_create("sink", "t", config_find(&file, "sink:t"), NULL, m);
    const aero_host *a = host_instance_api(h2);
    cr_expect_not_null(a->metric_register(a, AERO_METRIC_COUNTER, "t_frames_total", "frames"));
    host_instance_destroy(h2);
    metrics_destroy(m);
}

/* ABI 1.3: a plugin's own labels follow the instance's; a label set that
 * would need escaping, or names the instance's label, is refused. */
Test(host_api, metric_register_labels_renders_after_the_instance_label)
{
    struct metrics *m = metrics_create();
    struct host_instance *h2 =
        host_instance_create("sink", "t", config_find(&file, "sink:t"), NULL, m);
    const aero_host *a = host_instance_api(h2);
    cr_assert(AERO_HAS(a, aero_host, metric_register_labels));
    aero_metric *ok = a->metric_register_labels(a, AERO_METRIC_COUNTER, "t_writes_total", "w",
                                                "outcome=\"ok\"");
    aero_metric *two = a->metric_register_labels(a, AERO_METRIC_COUNTER, "t_writes_total", "w",
                                                 "message_name=\"vfr_hud\",outcome=\"failed\"");
    cr_assert_not_null(ok);
    cr_assert_not_null(two);
    a->metric_add(two, 3);
    const char *bad[] = {"", "outcome=ok", "outcome=\"a b\"", "sink=\"x\"", "plugin=\"x\"",
                         "Outcome=\"x\"",
                         "outcome=\"ok\",", "outcome=\"ok\"x", "outcome=\"q\\\"\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_null(a->metric_register_labels(a, AERO_METRIC_COUNTER, "t_writes_total", "w",
                                                 bad[i]), "%s", bad[i]);
    char *out;
    size_t len;
    cr_assert_eq(metrics_render(m, &out, &len), 0);
    cr_expect_not_null(strstr(out, "t_writes_total{" T_LABELS ",outcome=\"ok\"} 0\n"), "%s", out);
    cr_expect_not_null(strstr(out, "t_writes_total{" T_LABELS ",message_name=\"vfr_hud\","
                                   "outcome=\"failed\"} 3\n"), "%s", out);
    free(out);
    host_instance_destroy(h2);
    metrics_destroy(m);
}

/* ABI 1.4: a plugin's histogram renders with the instance's label, its
 * own, and the buckets of the values observed (sizes in units here). */
Test(host_api, histogram_register_and_observe)
{
    struct metrics *m = metrics_create();
    struct host_instance *h2 =
        host_instance_create("sink", "t", config_find(&file, "sink:t"), NULL, m);
    const aero_host *a = host_instance_api(h2);
    cr_assert(AERO_HAS(a, aero_host, histogram_observe));
    static const double sizes[] = {1, 16, 256, 1024};
    aero_histogram *batch = a->histogram_register(a, "t_batch_size", "lines per request", NULL,
                                                  sizes, 4);
    aero_histogram *took = a->histogram_register(a, "t_write_seconds", "request time",
                                                 "api=\"v3\"", (const double[]){0.01, 1}, 2);
    cr_assert_not_null(batch);
    cr_assert_not_null(took);
    a->histogram_observe(batch, 1);
    a->histogram_observe(batch, 200);
    a->histogram_observe(batch, 5000);
    a->histogram_observe(took, 0.5);
    a->histogram_observe(NULL, 1); /* nothing */
    cr_expect_null(a->histogram_register(a, "t_batch_size", "again", NULL, sizes, 4),
                   "the same series twice");
    cr_expect_null(a->histogram_register(a, "t_bad_total", "x", NULL, sizes, 4));
    cr_expect_null(a->histogram_register(a, "t_bad", "x", NULL, (const double[]){2, 1}, 2));
    cr_expect_null(a->histogram_register(a, "t_bad", "x", "sink=\"y\"", sizes, 4));
    char *out;
    size_t len;
    cr_assert_eq(metrics_render(m, &out, &len), 0);
    cr_expect_not_null(strstr(out, "t_batch_size_bucket{" T_LABELS ",le=\"1\"} 1\n"), "%s", out);
    cr_expect_not_null(strstr(out, "t_batch_size_bucket{" T_LABELS ",le=\"256\"} 2\n"), "%s", out);
    cr_expect_not_null(strstr(out, "t_batch_size_bucket{" T_LABELS ",le=\"+Inf\"} 3\n"), "%s", out);
    cr_expect_not_null(strstr(out, "t_batch_size_sum{" T_LABELS "} 5201.000000000\n"), "%s", out);
    cr_expect_not_null(strstr(out, "t_write_seconds_bucket{" T_LABELS ",api=\"v3\",le=\"1\"} 1\n"),
                       "%s", out);
    free(out);
    host_instance_destroy(h2);
    metrics_destroy(m);
}

/* ABI 1.5: a route reports its state; it is listed from its start (ok),
 * the report replaces it, and it goes with the host. A sink's host and a
 * check() host refuse: a sink's state is the relay's observation. */
Test(host_api, a_route_reports_its_state_for_readyz)
{
    cr_assert(AERO_HAS(host, aero_host, report_state));
    cr_expect_eq(host->report_state(host, AERO_STATE_FAILING, "x"), -EINVAL, "check() host");
    struct readiness *rd = readiness_create();
    struct metrics *m = metrics_create();
    struct host_relay relay = {.listen = "127.0.0.1:0", .readiness = rd};
    struct host_instance *route =
        host_instance_create("route", "route-redis", config_find(&file, "sink:t"), "r1", m);
    struct host_instance *sink =
        host_instance_create("sink", "t", config_find(&file, "sink:t"), "r1", m);
    cr_assert(route && sink);
    host_instance_set_relay(sink, &relay);
    const aero_host *s = host_instance_api(sink);
    cr_expect_eq(s->report_state(s, AERO_STATE_FAILING, "x"), -EINVAL, "a sink's host");

    host_instance_set_relay(route, &relay);
    char *out = readiness_render_components(rd);
    cr_expect_str_eq(out, ",\"components\":{\"route:route-redis\":{\"state\":\"ok\"}}");
    free(out);
    const aero_host *a = host_instance_api(route);
    cr_expect_eq(a->report_state(a, AERO_STATE_FAILING, "not connected to Redis at h:1"), 0);
    cr_expect_eq(a->report_state(a, (aero_state)3, "x"), -EINVAL);
    out = readiness_render_components(rd);
    cr_expect_str_eq(out, ",\"components\":{\"route:route-redis\":{\"state\":\"failing\","
                          "\"reason\":\"not connected to Redis at h:1\"}}");
    free(out);
    host_instance_destroy(route);
    out = readiness_render_components(rd);
    cr_expect_str_eq(out, ",\"components\":{}", "the route's entry goes with it");
    free(out);
    host_instance_destroy(sink);
    readiness_destroy(rd);
    metrics_destroy(m);
}

/* ABI 1.6: a sink hands the relay a counter of its own for the frames the
 * relay refuses because the sink's queue is full; the pipeline reads it
 * back. A check() host, a route's host and a gauge are refused. */
Test(host_api, count_queue_full_takes_a_sinks_counter)
{
    cr_assert(AERO_HAS(host, aero_host, count_queue_full));
    struct metrics *m = metrics_create();
    aero_metric *c = metrics_register(m, AERO_METRIC_COUNTER, "t_dropped_total", "d", NULL);
    aero_metric *g = metrics_register(m, AERO_METRIC_GAUGE, "t_depth", "d", NULL);
    cr_expect_eq(host->count_queue_full(host, c), -EINVAL, "check() host");
    cr_expect_null(host_instance_queue_full(hi));
    struct host_instance *sink =
        host_instance_create("sink", "t", config_find(&file, "sink:t"), "r1", m);
    struct host_instance *route =
        host_instance_create("route", "route-redis", config_find(&file, "sink:t"), "r1", m);
    cr_assert(sink && route);
    const aero_host *r = host_instance_api(route), *a = host_instance_api(sink);
    cr_expect_eq(r->count_queue_full(r, c), -EINVAL, "a route's host");
    cr_expect_eq(a->count_queue_full(a, g), -EINVAL, "a gauge");
    cr_expect_null(host_instance_queue_full(sink));
    cr_expect_eq(a->count_queue_full(a, c), 0);
    cr_expect_eq(host_instance_queue_full(sink), c);
    cr_expect_eq(a->count_queue_full(a, NULL), 0, "NULL stops it");
    cr_expect_null(host_instance_queue_full(sink));
    host_instance_destroy(route);
    host_instance_destroy(sink);
    metrics_destroy(m);
}

/* ---------------------------------------------- the relay view (ABI 1.2) */

/* listen_address and listen_port follow what main hands in; the session
 * lookup answers only for the session asked about; ready_detail works on
 * a create() host (metrics set) and its details go with the host. */
Test(host_api, relay_view_of_abi_1_2)
{
    cr_expect(AERO_HAS(host, aero_host, ready_detail));
    cr_expect_str_eq(host->listen_address(host), "", "no relay view: empty");
    cr_expect_eq(host->listen_port(host), 0);
    cr_expect_eq(host->session_last_message_unix_ns(host, "d", "s"), 0);
    cr_expect_eq(host->ready_detail(host, "registry", "unavailable"), -EINVAL, "check() host");

    _Atomic int port = 0;
    struct session_table *t = session_table_create();
    struct readiness *rd = readiness_create();
    struct metrics *m = metrics_create();
    struct host_relay relay = {.listen = "127.0.0.1:0", .grpc_port = &port, .sessions = t,
                               .readiness = rd};
    struct host_instance *h2 =
        host_instance_create("route", "registry", config_find(&file, "sink:t"), "r1", m);
    cr_assert_not_null(h2);
    host_instance_set_relay(h2, &relay);
    const aero_host *a = host_instance_api(h2);
    cr_expect_str_eq(a->listen_address(a), "127.0.0.1:0");
    cr_expect_eq(a->listen_port(a), 0);
    atomic_store(&port, 50123);
    cr_expect_eq(a->listen_port(a), 50123);

    char sid[SESSION_ID_LEN + 1];
    void *displaced = NULL;
    cr_assert_eq(session_table_register(t, "drone-1", 1111, sid, &displaced), 0);
    cr_expect_eq(a->session_last_message_unix_ns(a, "drone-1", sid), 0, "Register is no message");
    uint64_t gen;
    int owner;
    cr_assert_eq(session_table_attach(t, "drone-1", &owner, &gen, sid, &displaced), 0);
    cr_expect_eq(a->session_last_message_unix_ns(a, "drone-1", sid), 0, "nor is the stream opening");
    session_table_touch_message(t, "drone-1", gen, 2222);
    cr_expect_eq(a->session_last_message_unix_ns(a, "drone-1", sid), 2222);
    cr_expect_eq(a->session_last_message_unix_ns(a, "drone-1", "sess-other"), 0);
    cr_expect_eq(a->session_last_message_unix_ns(a, "drone-2", sid), 0);

    char buf[128];
    cr_expect_eq(a->ready_detail(a, "registry", "unavailable"), 0);
    readiness_render(rd, buf, sizeof(buf));
    cr_expect_str_eq(buf, ",\"registry\":\"unavailable\"");
    host_instance_destroy(h2);
    readiness_render(rd, buf, sizeof(buf));
    cr_expect_str_eq(buf, "", "an instance's details go with it");
    readiness_destroy(rd);
    session_table_destroy(t, NULL);
    metrics_destroy(m);
}
