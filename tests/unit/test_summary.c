/*
 * test_summary.c - the summary line's text (core/summary.c): sessions,
 * streams, frames per second, acks by status over the interval, and each
 * sink's state: ok, degraded (refused some), failing (took none).
 */
#include "summary.h"

#include <criterion/criterion.h>
#include <string.h>

static struct sink_settings sinks[3] = {
    {.name = "archive", .queue = 4096},
    {.name = "bus", .queue = 100},
    {.name = "tsdb", .queue = 10},
};

Test(summary, the_line_shows_what_changed_since_the_last)
{
    struct settings st = {.sinks = sinks, .n_sinks = 3, .log_summary_interval_s = 60};
    struct summary_sink_sample a[3] = {{100, 0, 0, 0}, {100, 0, 0, 0}, {50, 50, 0, 0}};
    struct summary_sink_sample b[3] = {{700, 0, 0, 3}, {700, 20, 0, 100}, {50, 50, 30, 10}};
    struct summary_sample prev = {.at_ns = 0, .frames = 100, .acks = {100, 0, 0, 0},
                                  .n_sinks = 3, .sinks = a};
    struct summary_sample cur = {.at_ns = 60 * INT64_C(1000000000), .sessions = 4, .streams = 3,
                                 .frames = 700, .acks = {670, 20, 1, 9}, .n_sinks = 3,
                                 .sinks = b};
    char line[1024];
    summary_format(&st, &prev, &cur, line, sizeof(line));
    cr_assert_str_eq(line,
                     "summary, last 60 s: 4 session(s), 3 stream(s); 10.0 frames/s (600); acks "
                     "ok 570, temporary_error 20, permanent_error 1, retry_with_backoff 9; sink "
                     "archive ok (queue 3/4096), sink bus degraded: 20 of 600 frames refused "
                     "(queue 100/100), sink tsdb failing: 30 refused with the queue full "
                     "(queue 10/10)");
}

Test(summary, a_sink_that_refuses_every_frame_is_failing)
{
    struct settings st = {.sinks = sinks, .n_sinks = 1, .log_summary_interval_s = 1};
    struct summary_sink_sample a = {0, 0, 0, 0}, b = {5, 5, 0, 0};
    struct summary_sample prev = {.n_sinks = 1, .sinks = &a};
    struct summary_sample cur = {.at_ns = INT64_C(2000000000), .sessions = 1, .streams = 1,
                                 .frames = 5, .acks = {0, 5, 0, 0}, .n_sinks = 1, .sinks = &b};
    char line[1024];
    summary_format(&st, &prev, &cur, line, sizeof(line));
    cr_assert_str_eq(line, "summary, last 2 s: 1 session(s), 1 stream(s); 2.5 frames/s (5); acks "
                           "ok 0, temporary_error 5, permanent_error 0, retry_with_backoff 0; "
                           "sink archive failing: 5 of 5 frames refused (queue 0/4096)");
}

Test(summary, no_sink_and_interval_zero)
{
    struct settings st = {.log_summary_interval_s = 0};
    struct summary_sample prev = {0}, cur = {.at_ns = INT64_C(1000000000)};
    char line[512];
    summary_format(&st, &prev, &cur, line, sizeof(line));
    cr_assert_str_eq(line, "summary, last 1 s: 0 session(s), 0 stream(s); 0.0 frames/s (0); acks "
                           "ok 0, temporary_error 0, permanent_error 0, retry_with_backoff 0; no "
                           "sink (allow_no_sinks)");
    struct metrics *m = metrics_create();
    cr_assert_null(summary_create(&st, m, 0), "0 = no summary");
    st.log_summary_interval_s = 1;
    struct summary *s = summary_create(&st, m, 0);
    cr_assert_not_null(s);
    summary_tick(s, 1, 0, 0); /* before the interval: nothing */
    summary_destroy(s);
    metrics_destroy(m);
}
