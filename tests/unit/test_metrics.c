/*
 * test_metrics.c - the metric registry (core/metrics.c): series identity,
 * the naming rules promtool enforces, grouping of one name's series,
 * histograms (bucket edges, cumulative rendering, sum in seconds), label
 * vecs (cap, overflow, escaping, lock-free lookups from many threads), and
 * every rendering checked by the real `promtool check metrics`.
 */
#include "metrics.h"
#include "process_metrics.h"

#include "integration/http_client.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *render(struct metrics *m)
{
    char *out = NULL;
    size_t len = 0;
    cr_assert_eq(metrics_render(m, &out, &len), 0);
    cr_assert_eq(strlen(out), len);
    return out;
}

static void assert_promtool_ok(const char *text)
{
    char out[4096];
    int rc = http_promtool_check(text, strlen(text), out, sizeof(out));
    cr_assert_eq(rc, 0, "promtool check metrics failed (%d):\n%s\non:\n%s", rc, out, text);
}

static size_t count_lines_starting(const char *text, const char *prefix)
{
    size_t n = 0, k = strlen(prefix);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, prefix, k) == 0)
            n++;
    return n;
}

Test(metrics, same_name_and_labels_is_one_series)
{
    struct metrics *m = metrics_create();
    aero_metric *a = metrics_register(m, AERO_METRIC_COUNTER, "x_total", "X.", "k=\"1\"");
    aero_metric *b = metrics_register(m, AERO_METRIC_COUNTER, "x_total", "other help", "k=\"1\"");
    aero_metric *c = metrics_register(m, AERO_METRIC_COUNTER, "x_total", "X.", "k=\"2\"");
    cr_assert_not_null(a);
    cr_assert_eq(a, b);
    cr_assert_neq(a, c);
    metrics_add(a, 5);
    metrics_inc(b);
    cr_assert_eq(metrics_value(a), 6);
    cr_assert_eq(metrics_value(c), 0);
    aero_metric *g = metrics_register(m, AERO_METRIC_GAUGE, "g", "G.", NULL);
    metrics_set(g, -3);
    cr_assert_eq(metrics_value(g), -3);
    metrics_destroy(m);
}

Test(metrics, names_promtool_would_fail_are_refused)
{
    struct metrics *m = metrics_create();
    cr_assert_null(metrics_register(m, AERO_METRIC_COUNTER, "no_suffix", "", NULL));
    cr_assert_null(metrics_register(m, AERO_METRIC_GAUGE, "gauge_total", "", NULL));
    cr_assert_null(metrics_register(m, AERO_METRIC_GAUGE, "CamelCase", "", NULL));
    cr_assert_null(metrics_register(m, AERO_METRIC_COUNTER, "a:b_total", "", NULL));
    cr_assert_null(metrics_register(m, AERO_METRIC_GAUGE, "x_bucket", "", NULL));
    cr_assert_null(metrics_register(m, AERO_METRIC_GAUGE, "x_count", "", NULL));
    cr_assert_null(metrics_register(m, AERO_METRIC_GAUGE, "x_sum", "", NULL));
    cr_assert_null(metrics_register(m, AERO_METRIC_GAUGE, "9lives", "", NULL));
    cr_assert_null(metrics_register(m, AERO_METRIC_GAUGE, "", "", NULL));
    cr_assert_null(metrics_register(m, AERO_METRIC_GAUGE, NULL, "", NULL));
    cr_assert_null(metrics_register(m, (aero_metric_type)7, "seven", "", NULL));
    /* One name, one type. */
    cr_assert_not_null(metrics_register(m, AERO_METRIC_GAUGE, "depth", "", "a=\"1\""));
    cr_assert_null(metrics_register(m, AERO_METRIC_COUNTER, "depth", "", "a=\"2\""));
    /* Updates on a refused (NULL) handle are harmless no-ops. */
    metrics_inc(NULL);
    metrics_set(NULL, 1);
    cr_assert_eq(metrics_value(NULL), 0);
    metrics_destroy(m);
}

Test(metrics, series_of_one_name_render_together_with_one_header)
{
    struct metrics *m = metrics_create();
    /* Interleaved registration, as two plugin instances and the core do. */
    metrics_add(metrics_register(m, AERO_METRIC_COUNTER, "a_total", "A.", "sink=\"one\""), 1);
    metrics_add(metrics_register(m, AERO_METRIC_COUNTER, "b_total", "B.", NULL), 2);
    metrics_add(metrics_register(m, AERO_METRIC_COUNTER, "a_total", "A.", "sink=\"two\""), 3);
    metrics_set(metrics_register(m, AERO_METRIC_GAUGE, "c", "C with \\ and\nnewline.", NULL), 4);
    metrics_add(metrics_register(m, AERO_METRIC_COUNTER, "a_total", "A.", "sink=\"three\""), 5);
    char *text = render(m);
    const char *want = "# HELP a_total A.\n"
                       "# TYPE a_total counter\n"
                       "a_total{sink=\"one\"} 1\n"
                       "a_total{sink=\"two\"} 3\n"
                       "a_total{sink=\"three\"} 5\n"
                       "# HELP b_total B.\n"
                       "# TYPE b_total counter\n"
                       "b_total 2\n"
                       "# HELP c C with \\\\ and\\nnewline.\n"
                       "# TYPE c gauge\n"
                       "c 4\n";
    cr_assert_str_eq(text, want);
    assert_promtool_ok(text);
    free(text);
    metrics_destroy(m);
}

Test(metrics, histogram_buckets_are_cumulative_and_le_inclusive)
{
    struct metrics *m = metrics_create();
    const double bounds[] = {0.001, 0.01, 1};
    struct metric_histogram *h =
        metrics_histogram_register(m, "lat_seconds", "Latency.", bounds, 3);
    cr_assert_not_null(h);
    metrics_histogram_observe_ns(h, 1000000);   /* exactly 0.001: first bucket */
    metrics_histogram_observe_ns(h, 1000001);   /* just over: second */
    metrics_histogram_observe_ns(h, -5);        /* clock oddity: counts as 0 */
    metrics_histogram_observe_ns(h, 999000000); /* third */
    metrics_histogram_observe_ns(h, 3000000000LL); /* +Inf */
    cr_assert_eq(metrics_histogram_count(h), 5);
    cr_assert_eq(metrics_histogram_sum_ns(h), 1000000ULL + 1000001 + 999000000 + 3000000000ULL);
    char *text = render(m);
    const char *want = "# HELP lat_seconds Latency.\n"
                       "# TYPE lat_seconds histogram\n"
                       "lat_seconds_bucket{le=\"0.001\"} 2\n"
                       "lat_seconds_bucket{le=\"0.01\"} 3\n"
                       "lat_seconds_bucket{le=\"1\"} 4\n"
                       "lat_seconds_bucket{le=\"+Inf\"} 5\n"
                       "lat_seconds_sum 4.001000001\n"
                       "lat_seconds_count 5\n";
    cr_assert_str_eq(text, want);
    assert_promtool_ok(text);
    free(text);
    metrics_destroy(m);
}

Test(metrics, histogram_refuses_bad_bounds_and_clashing_names)
{
    struct metrics *m = metrics_create();
    const double ok[] = {0.1, 1};
    const double unsorted[] = {1, 0.1};
    const double zero[] = {0, 1};
    cr_assert_null(metrics_histogram_register(m, "h_seconds", "", unsorted, 2));
    cr_assert_null(metrics_histogram_register(m, "h_seconds", "", zero, 2));
    cr_assert_null(metrics_histogram_register(m, "h_seconds", "", ok, 0));
    cr_assert_null(metrics_histogram_register(m, "h_total", "", ok, 2));
    cr_assert_not_null(metrics_register(m, AERO_METRIC_GAUGE, "taken", "", NULL));
    cr_assert_null(metrics_histogram_register(m, "taken", "", ok, 2));
    struct metric_histogram *h = metrics_histogram_register(m, "h_seconds", "", ok, 2);
    cr_assert_not_null(h);
    cr_assert_null(metrics_histogram_register(m, "h_seconds", "", ok, 2), "registered twice");
    cr_assert_null(metrics_register(m, AERO_METRIC_GAUGE, "h_seconds", "", NULL));
    metrics_histogram_observe_ns(NULL, 5); /* no-op */
    metrics_destroy(m);
}

Test(metrics, label_escape_keeps_the_text_format_valid)
{
    char out[64];
    cr_assert_eq(metrics_label_escape("HEARTBEAT", 9, out, sizeof(out)), 9);
    cr_assert_str_eq(out, "HEARTBEAT");
    metrics_label_escape("a\"b\\c", 5, out, sizeof(out));
    cr_assert_str_eq(out, "a\\\"b\\\\c");
    metrics_label_escape("x\ny\x01\xff\xc3\xa9z", 8, out, sizeof(out));
    cr_assert_str_eq(out, "x_y____z");
    /* Truncation never splits an escape. */
    cr_assert_eq(metrics_label_escape("ab\"", 3, out, 4), 2);
    cr_assert_str_eq(out, "ab");
}

Test(metrics, vec_caps_distinct_values_and_counts_the_rest_as_overflow)
{
    struct metrics *m = metrics_create();
    struct metric_vec *v = metrics_vec_register(m, "msgs_total", "Messages.", "source=\"grpc\"",
                                                "message_type", 3, "other");
    cr_assert_not_null(v);
    aero_metric *hb = metrics_vec_get(v, "HEARTBEAT", 9);
    cr_assert_eq(metrics_vec_get(v, "HEARTBEAT", 9), hb, "same value, same series");
    metrics_inc(hb);
    metrics_inc(metrics_vec_get(v, "HEARTBEAT", 9));
    metrics_inc(metrics_vec_get(v, "bad\"name\\", 9));
    metrics_inc(metrics_vec_get(v, "ATTITUDE", 8));
    aero_metric *other = metrics_vec_get(v, "FOURTH", 6);
    cr_assert_neq(other, hb);
    cr_assert_eq(metrics_vec_get(v, "FIFTH", 5), other);
    metrics_inc(other);
    metrics_inc(metrics_vec_get(v, "FIFTH", 5));
    cr_assert_eq(metrics_vec_get(v, "ATTITUDE", 8), metrics_vec_get(v, "ATTITUDE", 8));
    /* A prefix of a known value is another value (lengths are compared). */
    cr_assert_eq(metrics_vec_get(v, "HEART", 5), other);

    char *text = render(m);
    const char *want = "# HELP msgs_total Messages.\n"
                       "# TYPE msgs_total counter\n"
                       "msgs_total{source=\"grpc\",message_type=\"other\"} 2\n"
                       "msgs_total{source=\"grpc\",message_type=\"HEARTBEAT\"} 2\n"
                       "msgs_total{source=\"grpc\",message_type=\"bad\\\"name\\\\\"} 1\n"
                       "msgs_total{source=\"grpc\",message_type=\"ATTITUDE\"} 1\n";
    cr_assert_str_eq(text, want);
    assert_promtool_ok(text);
    free(text);
    metrics_destroy(m);
}

struct vec_worker {
    struct metric_vec *v;
    int id;
};

#define VEC_THREADS 4
#define VEC_NAMES 40 /* more than the cap: some go to overflow */
#define VEC_ROUNDS 2000

static void *vec_hammer(void *arg)
{
    struct vec_worker *w = arg;
    char name[32];
    for (int r = 0; r < VEC_ROUNDS; r++) {
        int n = snprintf(name, sizeof(name), "MSG_%d", (r * 7 + w->id) % VEC_NAMES);
        metrics_inc(metrics_vec_get(w->v, name, (size_t)n));
    }
    return NULL;
}

static void *render_loop(void *arg)
{
    struct metrics *m = arg;
    for (int i = 0; i < 50; i++) {
        char *out = NULL;
        size_t len;
        metrics_render(m, &out, &len);
        free(out);
    }
    return NULL;
}

Test(metrics, vec_lookups_from_many_threads_lose_no_count)
{
    struct metrics *m = metrics_create();
    struct metric_vec *v =
        metrics_vec_register(m, "msgs_total", "M.", NULL, "message_type", 32, "other");
    pthread_t t[VEC_THREADS], r;
    struct vec_worker w[VEC_THREADS];
    pthread_create(&r, NULL, render_loop, m);
    for (int i = 0; i < VEC_THREADS; i++) {
        w[i] = (struct vec_worker){v, i};
        pthread_create(&t[i], NULL, vec_hammer, &w[i]);
    }
    for (int i = 0; i < VEC_THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_join(r, NULL);

    char *text = render(m);
    /* 32 named series + other; counts add up to everything observed. */
    cr_assert_eq(count_lines_starting(text, "msgs_total{"), 33, "%s", text);
    double sum = 0;
    for (const char *l = strstr(text, "msgs_total{"); l; l = strstr(l + 1, "\nmsgs_total{"))
        sum += strtod(strchr(l, '}') + 1, NULL);
    cr_assert_eq((long)sum, (long)VEC_THREADS * VEC_ROUNDS);
    assert_promtool_ok(text);
    free(text);
    metrics_destroy(m);
}

Test(metrics, vec_refuses_bad_arguments)
{
    struct metrics *m = metrics_create();
    cr_assert_null(metrics_vec_register(m, "n_total", "", NULL, "bad label", 4, "other"));
    cr_assert_null(metrics_vec_register(m, "n_total", "", NULL, "l", 0, "other"));
    cr_assert_null(metrics_vec_register(m, "n_total", "", NULL, "l", 4, NULL));
    cr_assert_null(metrics_vec_register(m, "not_a_counter", "", NULL, "l", 4, "other"));
    metrics_destroy(m);
}

Test(metrics, empty_registry_renders_empty_and_valid)
{
    struct metrics *m = metrics_create();
    char *text = render(m);
    cr_assert_str_eq(text, "");
    free(text);
    metrics_destroy(m);
}

/* Seconds kept in ns render as decimal seconds; collectors run first. */
static void bump(void *arg) { metrics_add(arg, 1500000000); }

Test(metrics, seconds_series_and_collectors)
{
    struct metrics *m = metrics_create();
    aero_metric *s = metrics_register_seconds(m, AERO_METRIC_COUNTER, "x_seconds_total", "x", NULL);
    cr_assert_not_null(s);
    cr_assert_eq(metrics_add_collector(m, bump, s), 0);
    char *out = render(m);
    cr_assert_not_null(strstr(out, "\nx_seconds_total 1.500000000\n"), "%s", out);
    free(out);
    out = render(m);
    cr_assert_not_null(strstr(out, "\nx_seconds_total 3.000000000\n"), "%s", out);
    assert_promtool_ok(out);
    free(out);
    metrics_destroy(m);
}

/* The value of a series in a rendering, or -1. */
static double value_of(const char *text, const char *series)
{
    char key[200];
    snprintf(key, sizeof(key), "\n%s ", series);
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : -1;
}

Test(metrics, process_series_read_the_process)
{
    struct metrics *m = metrics_create();
    cr_assert_eq(process_metrics_register(m, "9.9.9", 1, 3), 0);
    volatile double spin = 0;
    for (int i = 0; i < 20000000; i++) /* some CPU to account for */
        spin += i;
    char *out = render(m);
    cr_assert_gt(value_of(out, "process_cpu_seconds_total"), 0, "%s", out);
    cr_assert_gt(value_of(out, "process_resident_memory_bytes"), 1e6);
    double open = value_of(out, "process_open_fds"), max = value_of(out, "process_max_fds");
    cr_assert_gt(open, 2);
    cr_assert_geq(max, open);
    double start = value_of(out, "process_start_time_seconds");
    double now = (double)time(NULL);
    cr_assert(start > now - 3600 && start <= now + 1, "start %f now %f", start, now);
    cr_assert_eq(value_of(out, "aero_relay_build_info{version=\"9.9.9\",abi=\"1.3\"}"), 1, "%s",
                 out);
    assert_promtool_ok(out);
    free(out);
    metrics_destroy(m);
}
