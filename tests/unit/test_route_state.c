/*
 * test_route_state.c - the bookkeeping of route-redis (plugins/route-redis/
 * route_state.c) without Redis: which commands a sequence of session_up /
 * session_down produces, in which order, and what is coalesced away while
 * Redis is unreachable. Also the key value's JSON and address parsing
 * (redis_link.c).
 */
#include "redis_link.h"
#include "route_state.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static struct route_state *st;
static struct route_batch b;

static void setup(void)
{
    st = route_state_new(1000);
    cr_assert_not_null(st);
    route_state_batch_init(&b);
}

static void teardown(void)
{
    route_state_batch_clear(&b);
    route_state_free(st);
}

TestSuite(route_state, .init = setup, .fini = teardown);

/* Every op Redis answered with `value`. */
static void answer_all(long long value)
{
    for (size_t i = 0; i < b.n; i++) {
        b.ops[i].result = ROUTE_RES_OK;
        b.ops[i].value = value;
    }
    route_state_apply(st, &b);
}

static void expect_op(size_t i, enum route_op_kind kind, const char *drone, const char *ids)
{
    cr_assert_lt(i, b.n, "op %zu missing (have %zu)", i, b.n);
    const struct route_op *op = &b.ops[i];
    char got[512] = "";
    for (unsigned k = 0; k < op->n_sessions; k++)
        snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", k ? "," : "",
                 op->session_ids[k]);
    cr_assert_eq(op->kind, kind, "op %zu: kind %d, want %d", i, op->kind, kind);
    cr_assert_str_eq(op->drone_id, drone);
    cr_assert_str_eq(got, ids, "op %zu: ids %s, want %s", i, got, ids);
}

Test(route_state, register_queues_one_set)
{
    cr_assert_eq(route_state_up(st, "d1", "s1"), 0);
    cr_assert(route_state_has_dirty(st));
    cr_assert_eq(route_state_take_dirty(st, &b, 100), 1);
    expect_op(0, ROUTE_OP_SET, "d1", "s1");
    cr_assert_not(route_state_has_dirty(st));
    cr_assert_eq(route_state_active(st), 1);
}

Test(route_state, sessions_that_never_reached_redis_cost_nothing)
{
    /* Redis away: a drone flaps a thousand times. */
    char sid[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(sid, sizeof(sid), "s%d", i);
        cr_assert_eq(route_state_up(st, "d1", sid), 0);
        cr_assert_eq(route_state_down(st, "d1", sid), 0);
    }
    cr_assert_eq(route_state_active(st), 0);
    cr_assert_eq(route_state_dead(st), 0);
    cr_assert_eq(route_state_take_resync(st, &b), 0);
    cr_assert_eq(route_state_take_dirty(st, &b, 100), 0);
    cr_assert_eq(b.n, 0);
}

Test(route_state, only_the_final_state_is_published_after_an_outage)
{
    char sid[32];
    for (int i = 0; i < 100; i++) {
        snprintf(sid, sizeof(sid), "s%d", i);
        route_state_up(st, "d1", sid);
    }
    cr_assert_eq(route_state_take_resync(st, &b), 1);
    expect_op(0, ROUTE_OP_REFRESH, "d1", "s99");
    cr_assert_not(route_state_has_dirty(st), "the resync covers the queue");
}

Test(route_state, end_of_a_sent_session_is_a_compare_and_delete)
{
    route_state_up(st, "d1", "s1");
    route_state_take_dirty(st, &b, 100);
    answer_all(1);
    route_state_batch_clear(&b);
    cr_assert_eq(route_state_down(st, "d1", "s1"), 0);
    cr_assert_eq(route_state_dead(st), 1);
    cr_assert_eq(route_state_take_dirty(st, &b, 100), 1);
    expect_op(0, ROUTE_OP_DELETE, "d1", "s1");
    answer_all(1);
    cr_assert_eq(route_state_dead(st), 0);
}

Test(route_state, a_delete_without_answer_is_kept_for_the_resync)
{
    route_state_up(st, "d1", "s1");
    route_state_take_dirty(st, &b, 100);
    route_state_batch_clear(&b);
    route_state_down(st, "d1", "s1");
    route_state_take_dirty(st, &b, 100);
    route_state_apply(st, &b); /* the connection failed: no result */
    route_state_batch_clear(&b);
    cr_assert_eq(route_state_dead(st), 1);
    cr_assert_eq(route_state_take_resync(st, &b), 1);
    expect_op(0, ROUTE_OP_DELETE, "d1", "s1");
    /* An error reply settles it: retrying would not help. */
    b.ops[0].result = ROUTE_RES_ERROR;
    route_state_apply(st, &b);
    cr_assert_eq(route_state_dead(st), 0);
}

Test(route_state, supersession_deletes_the_old_session_before_setting_the_new)
{
    route_state_up(st, "d1", "s1");
    route_state_take_dirty(st, &b, 100);
    route_state_batch_clear(&b);
    /* The core may deliver the new session_up before the old session_down. */
    route_state_up(st, "d1", "s2");
    cr_assert_eq(route_state_down(st, "d1", "s1"), 0);
    cr_assert_eq(route_state_take_dirty(st, &b, 100), 2);
    expect_op(0, ROUTE_OP_DELETE, "d1", "s1");
    expect_op(1, ROUTE_OP_SET, "d1", "s2");
    cr_assert_eq(route_state_active(st), 1);
}

Test(route_state, the_old_session_ending_first_changes_nothing_for_the_new)
{
    route_state_up(st, "d1", "s1");
    route_state_take_dirty(st, &b, 100);
    route_state_batch_clear(&b);
    route_state_down(st, "d1", "s1");
    route_state_up(st, "d1", "s2");
    route_state_down(st, "d1", "s-unknown");
    cr_assert_eq(route_state_take_dirty(st, &b, 100), 2);
    expect_op(0, ROUTE_OP_DELETE, "d1", "s1");
    expect_op(1, ROUTE_OP_SET, "d1", "s2");
}

Test(route_state, a_write_in_flight_counts_as_sent)
{
    route_state_up(st, "d1", "s1");
    route_state_take_dirty(st, &b, 100); /* SET sent, no answer yet */
    route_state_down(st, "d1", "s1");     /* the SET may still land */
    struct route_batch b2;
    route_state_batch_init(&b2);
    cr_assert_eq(route_state_take_dirty(st, &b2, 100), 1);
    cr_assert_eq(b2.ops[0].kind, ROUTE_OP_DELETE);
    route_state_batch_clear(&b2);
}

Test(route_state, refresh_covers_every_active_session)
{
    char drone[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(drone, sizeof(drone), "drone-%d", i);
        cr_assert_eq(route_state_up(st, drone, "s"), 0);
    }
    cr_assert_eq(route_state_take_refresh(st, &b), 10000);
    for (size_t i = 0; i < b.n; i++)
        cr_assert_eq(b.ops[i].kind, ROUTE_OP_REFRESH);
    route_state_down(st, "drone-5", "s");
    route_state_batch_clear(&b);
    cr_assert_eq(route_state_take_refresh(st, &b), 9999);
}

Test(route_state, resync_turns_queued_sets_into_refreshes)
{
    route_state_up(st, "d1", "s1");
    route_state_take_dirty(st, &b, 100);
    route_state_batch_clear(&b);
    route_state_down(st, "d1", "s1");
    route_state_up(st, "d1", "s2"); /* registered while Redis was away */
    cr_assert_eq(route_state_take_resync(st, &b), 2);
    expect_op(0, ROUTE_OP_DELETE, "d1", "s1");
    expect_op(1, ROUTE_OP_REFRESH, "d1", "s2");
    route_state_batch_clear(&b);
    cr_assert_eq(route_state_take_dirty(st, &b, 100), 0);
}

Test(route_state, final_deletes_everything_that_may_be_in_redis)
{
    route_state_up(st, "d1", "s1");
    route_state_up(st, "d2", "s2");
    route_state_take_dirty(st, &b, 100);
    route_state_batch_clear(&b);
    route_state_up(st, "d3", "s3"); /* never sent: nothing to delete */
    route_state_down(st, "d2", "s2");
    cr_assert_eq(route_state_take_final(st, &b), 2);
    for (size_t i = 0; i < b.n; i++) {
        const struct route_op *op = &b.ops[i];
        cr_assert_eq(op->kind, ROUTE_OP_DELETE);
        cr_assert_str_eq(op->session_ids[0], strcmp(op->drone_id, "d1") == 0 ? "s1" : "s2");
    }
}

Test(route_state, dead_sessions_per_drone_are_capped)
{
    char sid[32];
    int dropped = 0;
    for (int i = 0; i < ROUTE_DEAD_PER_DRONE + 3; i++) {
        snprintf(sid, sizeof(sid), "s%d", i);
        dropped += route_state_up(st, "d1", sid);
        route_state_take_dirty(st, &b, 100); /* each one sent */
    }
    route_state_batch_clear(&b);
    cr_assert_eq(dropped, 2);
    cr_assert_eq(route_state_dead(st), ROUTE_DEAD_PER_DRONE);
    cr_assert_eq(route_state_take_final(st, &b), 1);
    expect_op(0, ROUTE_OP_DELETE, "d1", "s2,s3,s4,s5,s6");
}

Test(route_state, dead_sessions_overall_are_capped)
{
    route_state_free(st);
    st = route_state_new(2);
    char drone[32];
    int dropped = 0;
    for (int i = 0; i < 5; i++) {
        snprintf(drone, sizeof(drone), "d%d", i);
        route_state_up(st, drone, "s");
        route_state_take_dirty(st, &b, 100);
        dropped += route_state_down(st, drone, "s");
    }
    cr_assert_eq(dropped, 3);
    cr_assert_eq(route_state_dead(st), 2);
}

Test(route_state, dirty_work_comes_out_in_order_and_in_chunks)
{
    char drone[32];
    for (int i = 0; i < 10; i++) {
        snprintf(drone, sizeof(drone), "d%d", i);
        route_state_up(st, drone, "s");
    }
    cr_assert_eq(route_state_take_dirty(st, &b, 4), 4);
    cr_assert_eq(route_state_take_dirty(st, &b, 100), 6);
    for (int i = 0; i < 10; i++) {
        snprintf(drone, sizeof(drone), "d%d", i);
        cr_assert_str_eq(b.ops[i].drone_id, drone);
    }
}

Test(route_state, key_value_is_exact_escaped_json)
{
    char buf[256];
    size_t n = redis_link_value(buf, sizeof(buf), "relay-a", "sess-0123");
    cr_assert_str_eq(buf, "{\"relay_id\":\"relay-a\",\"session_id\":\"sess-0123\"}");
    cr_assert_eq(n, strlen(buf));
    redis_link_value(buf, sizeof(buf), "a\"b\\c\n", "s");
    cr_assert_str_eq(buf, "{\"relay_id\":\"a\\\"b\\\\c\\u000a\",\"session_id\":\"s\"}");
    cr_assert_eq(redis_link_value(NULL, 0, "r", "s"), strlen("{\"relay_id\":\"r\",\"session_id\":\"s\"}"));
}

Test(route_state, redis_addresses_parse)
{
    struct redis_link_opts o;
    char err[256];
    cr_assert_eq(redis_link_parse_addr("127.0.0.1:6380", &o, err, sizeof(err)), 0);
    cr_assert_str_eq(o.host, "127.0.0.1");
    cr_assert_eq(o.port, 6380);
    cr_assert_eq(redis_link_parse_addr("redis.internal", &o, err, sizeof(err)), 0);
    cr_assert_eq(o.port, 6379);
    cr_assert_eq(redis_link_parse_addr("[::1]:7000", &o, err, sizeof(err)), 0);
    cr_assert_str_eq(o.host, "::1");
    cr_assert_eq(o.port, 7000);
    cr_assert_eq(redis_link_parse_addr("unix:/run/redis.sock", &o, err, sizeof(err)), 0);
    cr_assert_str_eq(o.host, "/run/redis.sock");
    cr_assert_eq(o.port, 0);
    const char *bad[] = {"", ":6379", "host:", "host:0", "host:65536", "host:12x", "::1:6379",
                         "[::1", "unix:", "host:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(redis_link_parse_addr(bad[i], &o, err, sizeof(err)), -EINVAL, "%s", bad[i]);
    cr_assert_not_null(strstr(err, "expected host:port"));
}
