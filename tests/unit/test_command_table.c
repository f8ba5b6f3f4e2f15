/*
 * test_command_table.c - the operation-context state of core/command_table.c
 * (SPEC.md sections 9 and 10) on its own: what a new session takes over,
 * the agent's last 16 authoritative contexts and how a frame's stamp is
 * matched against them, fencing by a Set whose outcome is unknown. The
 * stream and call layers are stubs: a "sent" command is recorded, a
 * finished call keeps its code.
 */
#include "command_table.h"
#include "mono_clock.h"
#include "rpc_stream.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

/* ---- stubs of rpc_stream / rpc_call ------------------------------------ */

static int sends;
static struct rpc_stream *last_rs; /* the stream last sent on */
static enum rpc_code last_code;
static const char *last_text;
static int finished;               /* calls finished */
static void record_error(enum rpc_code code, const char *text);

void rpc_stream_ref(struct rpc_stream *st) { (void)st; }
void rpc_stream_unref(struct rpc_stream *st) { (void)st; }
int rpc_stream_send(struct rpc_stream *st, const uint8_t *msg, size_t len, unsigned flags,
                    uint64_t stamp)
{
    (void)msg, (void)len, (void)flags, (void)stamp;
    sends++;
    last_rs = st;
    return 0;
}
int rpc_stream_send_numbered(struct rpc_stream *st, const uint8_t *msg, size_t len,
                             unsigned flags, uint64_t stamp, uint32_t *number)
{
    *number = (uint32_t)sends + 1;
    return rpc_stream_send(st, msg, len, flags, stamp);
}
bool rpc_stream_sent(struct rpc_stream *st, uint32_t number)
{
    (void)st, (void)number;
    return true; /* every message goes out at once here */
}
bool rpc_stream_begun(struct rpc_stream *st, uint32_t number)
{
    return rpc_stream_sent(st, number);
}
void rpc_stream_cancel(struct rpc_stream *st, enum rpc_code code, const char *msg)
{
    (void)st, (void)code, (void)msg;
}
void rpc_call_finish(struct rpc_call *c, enum rpc_code code, const char *msg, const uint8_t *resp,
                     size_t len)
{
    (void)c, (void)resp, (void)len;
    last_code = code;
    last_text = msg;
    record_error(code, msg);
    finished++;
}
static void (*watch_fn)(void *, bool);
static void *watch_arg;
int rpc_call_watch(struct rpc_call *c, void (*fn)(void *arg, bool cancelled), void *arg)
{
    (void)c;
    watch_fn = fn;
    watch_arg = arg;
    return 0;
}
const char *rpc_call_code_name(enum rpc_code code)
{
    (void)code;
    return "code";
}

/* ---- a Set whose result is "applied" or "mismatch" ---------------------- */

#define HUB_TIMEOUT_NS (60 * INT64_C(1000000000)) /* command_timeout_s = 60 */

static struct rpc_stream *const RS = (struct rpc_stream *)0x1;
static struct rpc_call *const CALL = (struct rpc_call *)0x2;

static void set_result(const void *ctx, struct command_session_state *state,
                       const uint8_t *payload, size_t len, struct command_outcome *out)
{
    const struct command_context *want = ctx;
    if (len == 7 && memcmp(payload, "applied", 7) == 0) {
        state->reconciled = true;
        state->has_context = true;
        state->current = *want;
        out->keep = true;
    } else {
        state->reconciled = false;
        *out = (struct command_outcome){.code = RPC_INTERNAL, .text = "mismatch"};
    }
}

static void set_unknown(const void *ctx, struct command_session_state *state)
{
    (void)ctx;
    state->reconciled = false;
}

static const struct command_ops ops = {.on_result = set_result, .on_unknown = set_unknown,
                                       .free = free};

static struct command_context ctx(const char *flight, uint32_t version)
{
    struct command_context c = {.intent_version = version};
    snprintf(c.flight_id, sizeof(c.flight_id), "%s", flight);
    snprintf(c.intent_id, sizeof(c.intent_id), "intent");
    return c;
}

/* Submit a Set of c as command `id` (written to RS). */
static void submit(struct command_table *t, const char *id, struct command_context c)
{
    struct command_context *x = malloc(sizeof(*x));
    *x = c;
    struct command_spec spec = {.kind = COMMAND_SET_CONTEXT, .id = id, .msg = (const uint8_t *)"m",
                                .msg_len = 1, .ctx = x, .ops = &ops,
                                .deadline_left_ns = INT64_MAX};
    memcpy(spec.fingerprint, id, strlen(id) < 32 ? strlen(id) : 32);
    command_table_submit(t, RS, &spec, CALL);
}

static void apply(struct command_table *t, const char *id, struct command_context c)
{
    submit(t, id, c);
    cr_assert(command_table_result(t, RS, 1u << COMMAND_SET_CONTEXT, id,
                                   (const uint8_t *)"applied", 7));
    cr_assert_eq(last_code, RPC_OK);
}

/* The flight a frame stamped (flight, version) is recorded with. */
static const char *stamped(struct command_table *t, const char *flight, uint32_t version)
{
    static struct command_context out;
    command_table_stamp(t, flight, strlen(flight), "intent", 6, version, &out);
    return out.flight_id;
}

Test(command_table, a_fresh_agent_starts_unreconciled_and_a_set_reconciles)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = command_table_create(hub, "a-1", true);
    cr_assert_not(command_table_reconciled(t));
    cr_assert_str_eq(stamped(t, "F9", 1), ""); /* no context: none recorded */
    apply(t, "s-1", ctx("F1", 1));
    cr_assert(command_table_reconciled(t));
    cr_assert_str_eq(stamped(t, "F9", 1), "F1");
    command_table_unref(t);
    command_hub_destroy(hub);
}

Test(command_table, the_last_16_contexts_keep_their_frames)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = command_table_create(hub, "a-2", true);
    char id[32], flight[32];
    for (int i = 1; i <= 17; i++) {
        snprintf(id, sizeof(id), "s-%d", i);
        snprintf(flight, sizeof(flight), "F%d", i);
        apply(t, id, ctx(flight, (uint32_t)i));
    }
    /* F1 fell out: its frames get the current context. */
    cr_assert_str_eq(stamped(t, "F1", 1), "F17");
    for (int i = 2; i <= 17; i++) {
        snprintf(flight, sizeof(flight), "F%d", i);
        cr_assert_str_eq(stamped(t, flight, (uint32_t)i), flight);
    }
    /* Another version of a kept flight is not that context. */
    cr_assert_str_eq(stamped(t, "F5", 6), "F17");
    command_table_unref(t);
    command_hub_destroy(hub);
}

Test(command_table, takeover_only_for_an_authenticated_agent)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *a = command_table_create(hub, "a-3", true);
    apply(a, "s-1", ctx("F1", 1));
    apply(a, "s-2", ctx("F2", 2));
    command_table_unref(a); /* the session ended: retained */

    struct command_table *b = command_table_create(hub, "a-3", true);
    cr_assert(command_table_reconciled(b));
    cr_assert_str_eq(stamped(b, "F9", 1), "F2");
    cr_assert_str_eq(stamped(b, "F1", 1), "F1"); /* history kept */

    /* Not authenticated: unreconciled, even while b lives. */
    struct command_table *c = command_table_create(hub, "a-3", false);
    cr_assert_not(command_table_reconciled(c));
    command_table_unref(b);
    command_table_unref(c);

    /* c, the newest, published "unreconciled": nothing to take over. */
    struct command_table *d = command_table_create(hub, "a-3", true);
    cr_assert_not(command_table_reconciled(d));
    command_table_unref(d);
    command_hub_destroy(hub);
}

Test(command_table, nothing_is_taken_over_while_a_written_set_has_no_outcome)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *a = command_table_create(hub, "a-4", true);
    apply(a, "s-1", ctx("F1", 1));
    int before = sends;
    submit(a, "s-2", ctx("F2", 2)); /* written, no answer yet */
    cr_assert_eq(sends, before + 1);
    struct command_table *b = command_table_create(hub, "a-4", true);
    cr_assert_not(command_table_reconciled(b));
    /* The old stream ends: the Set is ABORTED, a is fenced (it is no
     * longer the agent's newest, so b is not touched). */
    command_table_stream_ended(a, RS, false, NULL);
    cr_assert_eq(last_code, RPC_ABORTED);
    cr_assert_not(command_table_reconciled(a));
    apply(b, "s-3", ctx("F3", 3));
    cr_assert(command_table_reconciled(b));
    command_table_unref(a);
    command_table_unref(b);
    command_hub_destroy(hub);
}

Test(command_table, a_mismatched_answer_fences_the_session)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = command_table_create(hub, "a-5", true);
    apply(t, "s-1", ctx("F1", 1));
    submit(t, "s-2", ctx("F2", 2));
    cr_assert(command_table_result(t, RS, 1u << COMMAND_SET_CONTEXT, "s-2",
                                   (const uint8_t *)"other", 5));
    cr_assert_eq(last_code, RPC_INTERNAL);
    cr_assert_not(command_table_reconciled(t));
    command_table_unref(t);
    /* Fenced is what the next session sees. */
    struct command_table *n = command_table_create(hub, "a-5", true);
    cr_assert_not(command_table_reconciled(n));
    command_table_unref(n);
    command_hub_destroy(hub);
}

/* ---- durable exchanges (SPEC.md 12.2 rules 10-14) ----------------------- */

struct test_exchange {
    struct command_exchange x;
    char id[32];
    int granted, evidence, ended;
    enum rpc_code ended_code;
    const char *ended_text;
};

static void x_granted(struct command_exchange *x) { ((struct test_exchange *)x)->granted++; }
static void x_evidence(struct command_exchange *x, const uint8_t *p, size_t len, bool first)
{
    (void)p, (void)len, (void)first;
    ((struct test_exchange *)x)->evidence++;
}
static void x_ended(struct command_exchange *x, enum rpc_code code, const char *text)
{
    struct test_exchange *e = (struct test_exchange *)x;
    e->ended++;
    e->ended_code = code;
    e->ended_text = text;
}
static void x_free(struct command_exchange *x) { free(x); }

static const struct command_exchange_ops x_ops = {
    .granted = x_granted, .evidence = x_evidence, .ended = x_ended, .free = x_free};

/* An exchange for id with digest byte d (the test keeps the owner's
 * reference until it unrefs). */
static struct test_exchange *exchange_new(const char *id, uint8_t d)
{
    struct test_exchange *e = calloc(1, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->x.ops = &x_ops;
    e->x.kind = COMMAND_DURABLE;
    e->x.id = e->id;
    memset(e->x.fp, d, sizeof(e->x.fp));
    e->x.deadline_ns = INT64_MAX;
    atomic_init(&e->x.refs, 1);
    return e;
}

static enum rpc_code send_x(struct command_table *t, struct test_exchange *e, const char **text)
{
    return command_table_exchange_send(t, &e->x, RS, (const uint8_t *)"m", 1, text);
}

Test(command_table, the_slot_goes_in_arrival_order_across_kinds)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = command_table_create(hub, "a-x1", true);
    struct test_exchange *a = exchange_new("d-1", 1), *b = exchange_new("d-2", 2);
    const char *text;
    cr_assert_eq(command_table_exchange_start(t, &a->x), 0);
    cr_assert_eq(a->granted, 1); /* the slot was free */
    cr_assert_eq(send_x(t, a, &text), RPC_OK);
    cr_assert_eq(command_table_exchange_start(t, &b->x), 0);
    cr_assert_eq(b->granted, 0);
    sends = 0;
    submit(t, "s-1", ctx("F1", 1)); /* a Set queues behind b */
    cr_assert_eq(sends, 0);
    /* Evidence from another stream is nobody's; from RS it frees the slot. */
    cr_assert_not(command_table_evidence(t, (struct rpc_stream *)0x9, "d-1", NULL, 0));
    cr_assert(command_table_evidence(t, RS, "d-1", NULL, 0));
    cr_assert_eq(a->evidence, 1);
    cr_assert_eq(b->granted, 1);
    cr_assert_eq(sends, 0);
    cr_assert(command_table_exchange_leave(t, &b->x)); /* b's caller went */
    cr_assert_eq(sends, 1, "the Set goes once b leaves");
    cr_assert(command_table_exchange_leave(t, &a->x));
    cr_assert_not(command_table_exchange_leave(t, &a->x));
    command_exchange_unref(&a->x);
    command_exchange_unref(&b->x);
    command_table_unref(t);
    command_hub_destroy(hub);
}

/* Set results are kept by id up to 4096; one more evicts the oldest, whose
 * id is then new again (sent), while a kept one replays (nothing sent). */
Test(command_table, the_oldest_kept_result_is_evicted_and_its_id_is_new_again)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = command_table_create(hub, "a-ev", true);
    char id[32];
    for (int i = 0; i <= COMMAND_RETAIN_MAX; i++) {
        snprintf(id, sizeof(id), "s-%d", i);
        apply(t, id, ctx("F1", 1));
    }
    sends = 0;
    submit(t, "s-4000", ctx("F1", 1));
    cr_assert_eq(sends, 0, "a kept result is replayed");
    cr_assert_eq(last_code, RPC_OK);
    submit(t, "s-0", ctx("F1", 1));
    cr_assert_eq(sends, 1, "the evicted id is a new command");
    cr_assert(command_table_result(t, RS, 1u << COMMAND_SET_CONTEXT, "s-0",
                                   (const uint8_t *)"applied", 7));
    /* s-0 took s-1's place: s-1 is new again, s-2 still kept. */
    submit(t, "s-2", ctx("F1", 1));
    cr_assert_eq(sends, 1);
    submit(t, "s-1", ctx("F1", 1));
    cr_assert_eq(sends, 2);
    cr_assert(command_table_result(t, RS, 1u << COMMAND_SET_CONTEXT, "s-1",
                                   (const uint8_t *)"applied", 7));
    command_table_unref(t);
    command_hub_destroy(hub);
}

Test(command_table, durable_ids_are_kept_not_evicted)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = command_table_create(hub, "a-x2", true);
    const char *text;
    for (int i = 0; i < COMMAND_RETAIN_MAX; i++) {
        char id[32];
        snprintf(id, sizeof(id), "d-%d", i);
        struct test_exchange *e = exchange_new(id, 1);
        cr_assert_eq(command_table_exchange_start(t, &e->x), 0);
        cr_assert_eq(send_x(t, e, &text), RPC_OK);
        cr_assert(command_table_exchange_leave(t, &e->x));
        command_exchange_unref(&e->x);
    }
    struct test_exchange *e = exchange_new("one-more", 1);
    cr_assert_eq(command_table_exchange_start(t, &e->x), 0);
    cr_assert_eq(send_x(t, e, &text), RPC_RESOURCE_EXHAUSTED);
    cr_assert_str_eq(text, "durable command identity retention is full");
    command_exchange_unref(&e->x);
    /* A retained id with its digest is delivered again; another digest is not. */
    e = exchange_new("d-7", 1);
    cr_assert_eq(command_table_exchange_start(t, &e->x), 0);
    cr_assert_eq(send_x(t, e, &text), RPC_OK);
    struct test_exchange *same = exchange_new("d-7", 1), *other = exchange_new("d-8", 2);
    cr_assert_eq(command_table_exchange_start(t, &same->x), 0);
    cr_assert(command_table_evidence(t, RS, "d-7", NULL, 0)); /* e's first: the slot moves */
    cr_assert_eq(same->granted, 1);
    cr_assert_eq(send_x(t, same, &text), RPC_ABORTED, "e still waits for d-7");
    cr_assert_str_eq(text, "command evidence stream already active");
    cr_assert_eq(command_table_exchange_start(t, &other->x), 0);
    cr_assert_eq(send_x(t, other, &text), RPC_ALREADY_EXISTS);
    cr_assert_str_eq(text, "durable command ID has a different digest");
    /* The stream written to ends: e ends ABORTED. */
    command_table_stream_ended(t, RS, false, NULL);
    cr_assert_eq(e->ended, 1);
    cr_assert_eq(e->ended_code, RPC_ABORTED);
    command_exchange_unref(&e->x);
    command_exchange_unref(&same->x);
    command_exchange_unref(&other->x);
    command_table_unref(t);
    command_hub_destroy(hub);
}
/* ---- a mission (SPEC.md 14.2 rules 8-16): kept results ---------------- */

static struct rpc_stream *const RS2 = (struct rpc_stream *)0x3;

/* "temp": a retryable result; "bad": INTERNAL, kept; else a final one. */
static void mission_result(const void *ctx, struct command_session_state *state,
                           const uint8_t *payload, size_t len, struct command_outcome *out)
{
    (void)ctx, (void)state;
    if (len == 3 && memcmp(payload, "bad", 3) == 0) {
        *out = (struct command_outcome){.code = RPC_INTERNAL, .text = "bad", .keep = true};
        return;
    }
    command_outcome_wrap(payload, len, out);
    out->keep = true;
    out->retry = len == 4 && memcmp(payload, "temp", 4) == 0;
    out->label = "STATUS_X";
}

static const char *lost_reason;

static void mission_lost(const void *ctx, const char *reason, struct command_outcome *out)
{
    (void)ctx;
    lost_reason = reason;
    command_outcome_wrap((const uint8_t *)"unknown", 7, out);
    out->keep = true;
    out->retry = reason == NULL;
}

/* As command_mission.c's fence: a redelivery has its own text. */
static const char *mission_check(const void *ctx, const struct command_session_state *state,
                                 bool again, enum rpc_code *code)
{
    (void)ctx;
    *code = RPC_FAILED_PRECONDITION;
    return state->reconciled ? NULL : again ? "fenced again" : "fenced";
}

static const struct command_ops mission_ops = {
    .on_result = mission_result, .lost = mission_lost, .check = mission_check};

static void submit_mission(struct command_table *t, struct rpc_stream *rs, const char *id)
{
    struct command_spec spec = {.kind = COMMAND_MISSION, .id = id, .msg = (const uint8_t *)"m",
                                .msg_len = 1, .ops = &mission_ops,
                                .deadline_left_ns = INT64_MAX, .watch = true};
    memcpy(spec.fingerprint, id, strlen(id) < 32 ? strlen(id) : 32);
    watch_fn = NULL;
    command_table_submit(t, rs, &spec, CALL);
}

static struct command_table *reconciled(struct command_hub *hub, const char *agent)
{
    struct command_table *t = command_table_create(hub, agent, true);
    apply(t, "s-1", ctx("F1", 1));
    return t;
}

Test(command_table, a_mission_is_fenced_until_reconciled)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = command_table_create(hub, "m-1", true);
    int before = sends;
    submit_mission(t, RS, "up-1");
    cr_assert_eq(last_code, RPC_FAILED_PRECONDITION);
    cr_assert_eq(sends, before);
    watch_fn(watch_arg, false);
    command_table_unref(t);
    command_hub_destroy(hub);
}

Test(command_table, the_last_caller_leaving_completes_a_mission_and_frees_the_slot)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = reconciled(hub, "m-2");
    int before = sends;
    submit_mission(t, RS, "up-1");
    cr_assert_eq(sends, before + 1);
    submit(t, "s-2", ctx("F1", 1)); /* waits for the slot */
    cr_assert_eq(sends, before + 1);
    watch_fn(watch_arg, true); /* the mission's caller cancelled */
    cr_assert_eq(last_code, RPC_CANCELLED);
    cr_assert_null(lost_reason); /* rule 15: the relay's own OUTCOME_UNKNOWN */
    cr_assert_eq(sends, before + 2); /* the slot went to the Set */
    cr_assert(command_table_result(t, RS, 1u << COMMAND_SET_CONTEXT, "s-2",
                                   (const uint8_t *)"applied", 7));
    /* A late result is dropped; the next exact call on RS sends again. */
    cr_assert_not(command_table_result(t, RS, 1u << COMMAND_MISSION, "up-1",
                                       (const uint8_t *)"done", 4));
    submit_mission(t, RS, "up-1");
    cr_assert_eq(sends, before + 3);
    cr_assert(command_table_result(t, RS, 1u << COMMAND_MISSION, "up-1",
                                   (const uint8_t *)"done", 4));
    cr_assert_eq(last_code, RPC_OK);
    watch_fn(watch_arg, false);
    /* Final: replayed, nothing sent. */
    submit_mission(t, RS, "up-1");
    cr_assert_eq(last_code, RPC_OK);
    cr_assert_eq(sends, before + 3);
    watch_fn(watch_arg, false);
    command_table_unref(t);
    command_hub_destroy(hub);
}

Test(command_table, a_retryable_mission_result_is_resent_only_on_its_stream)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = reconciled(hub, "m-3");
    int before = sends;
    submit_mission(t, RS, "up-1");
    cr_assert(command_table_result(t, RS, 1u << COMMAND_MISSION, "up-1",
                                   (const uint8_t *)"temp", 4));
    watch_fn(watch_arg, false);
    submit_mission(t, RS2, "up-1"); /* another stream: replayed */
    cr_assert_eq(last_code, RPC_OK);
    cr_assert_eq(sends, before + 1);
    watch_fn(watch_arg, false);
    submit_mission(t, RS, "up-1"); /* the same stream: sent again */
    cr_assert_eq(sends, before + 2);
    /* Its stream ends while written: the relay's OUTCOME_UNKNOWN, OK,
     * never sent again on this session. */
    command_table_stream_ended(t, RS, false, NULL);
    cr_assert_eq(last_code, RPC_OK);
    cr_assert_str_eq(lost_reason, "agent session retired while awaiting mission result");
    watch_fn(watch_arg, false);
    submit_mission(t, RS, "up-1");
    cr_assert_eq(sends, before + 2);
    watch_fn(watch_arg, false);
    command_table_unref(t);
    command_hub_destroy(hub);
}

Test(command_table, a_failed_mission_result_check_is_kept)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = reconciled(hub, "m-4");
    int before = sends;
    submit_mission(t, RS, "up-1");
    cr_assert(command_table_result(t, RS, 1u << COMMAND_MISSION, "up-1",
                                   (const uint8_t *)"bad", 3));
    cr_assert_eq(last_code, RPC_INTERNAL);
    watch_fn(watch_arg, false);
    submit_mission(t, RS, "up-1");
    cr_assert_eq(last_code, RPC_INTERNAL);
    cr_assert_eq(sends, before + 1);
    watch_fn(watch_arg, false);
    /* Another kind meets the id. */
    submit(t, "up-1", ctx("F1", 1));
    cr_assert_eq(last_code, RPC_ALREADY_EXISTS);
    command_table_unref(t);
    command_hub_destroy(hub);
}

Test(command_table, a_mission_waits_at_most_120_s_whatever_command_timeout_s)
{
    struct command_hub *hub = command_hub_create(NULL, 1000 * INT64_C(1000000000));
    struct command_table *t = reconciled(hub, "m-5");
    struct command_spec spec = {.kind = COMMAND_MISSION, .id = "up-1", .msg = (const uint8_t *)"m",
                                .msg_len = 1, .ops = &mission_ops, .deadline_left_ns = INT64_MAX,
                                .bound_ns = 120 * INT64_C(1000000000)};
    last_code = RPC_OK;
    command_table_submit(t, RS, &spec, CALL);
    command_hub_tick(hub, mono_ns() + 119 * INT64_C(1000000000));
    cr_assert_eq(command_hub_pending(hub), 1);
    command_hub_tick(hub, mono_ns() + 121 * INT64_C(1000000000));
    cr_assert_eq(command_hub_pending(hub), 0);
    cr_assert_eq(last_code, RPC_DEADLINE_EXCEEDED);
    cr_assert_str_eq(last_text,
                     "mission deployment result not received within the deadline (outcome unknown)");
    command_table_unref(t);
    command_hub_destroy(hub);
}

/* ---- a mission waiting for the slot (14.2 rules 9-11, 16; 14.6 item 3) */

/* Calls finished with an error since the last reset_finishes (several
 * finish in one table call, in no set order). */
struct seen_error {
    enum rpc_code code;
    const char *text;
};
static struct seen_error seen[2 * COMMAND_RETAIN_MAX + 16];
static int n_seen;

static void record_error(enum rpc_code code, const char *text)
{
    if (code != RPC_OK && n_seen < (int)(sizeof(seen) / sizeof(seen[0])))
        seen[n_seen++] = (struct seen_error){code, text ? text : ""};
}

static int errors_seen(enum rpc_code code, const char *text)
{
    int n = 0;
    for (int i = 0; i < n_seen; i++)
        n += seen[i].code == code && strcmp(seen[i].text, text) == 0;
    return n;
}

static void reset_finishes(void)
{
    n_seen = 0;
    finished = 0;
}

/* A mission `id` asked on rs by a caller with no cancel watch (many wait at once). */
static void ask_mission(struct command_table *t, struct rpc_stream *rs, const char *id)
{
    struct command_spec spec = {.kind = COMMAND_MISSION, .id = id, .msg = (const uint8_t *)"m",
                                .msg_len = 1, .ops = &mission_ops,
                                .deadline_left_ns = INT64_MAX};
    memcpy(spec.fingerprint, id, strlen(id) < 32 ? strlen(id) : 32);
    command_table_submit(t, rs, &spec, CALL);
}

static void mission_answer(struct command_table *t, struct rpc_stream *rs, const char *id,
                           const char *result)
{
    cr_assert(command_table_result(t, rs, 1u << COMMAND_MISSION, id, (const uint8_t *)result,
                                   strlen(result)),
              "%s's result on %p was not taken", id, (void *)rs);
}

/* up-0 .. up-4095 kept with a retryable result from RS, then a Set holds
 * the slot, a new mission up-x waits for it, and every up-i asks again on
 * RS (a reserved redelivery each, behind up-x): 4096 missions counted,
 * none completed when up-x gets the slot. */
static void full_behind_a_new_mission(struct command_table *t)
{
    char id[32];
    for (int i = 0; i < COMMAND_RETAIN_MAX; i++) {
        snprintf(id, sizeof(id), "up-%d", i);
        ask_mission(t, RS, id);
        mission_answer(t, RS, id, "temp");
    }
    submit(t, "s-2", ctx("F2", 2)); /* written: holds the slot */
    reset_finishes();
    ask_mission(t, RS, "up-x");
    cr_assert_eq(finished, 0, "rule 9 first: up-x waits for the slot, not refused at arrival");
    int before = sends;
    for (int i = 0; i < COMMAND_RETAIN_MAX; i++) {
        snprintf(id, sizeof(id), "up-%d", i);
        ask_mission(t, RS, id);
    }
    cr_assert_eq(sends, before);
    cr_assert_eq(finished, 0);
}

Test(command_table, mission_retention_is_checked_with_the_slot_after_the_fence)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = reconciled(hub, "m-6");
    full_behind_a_new_mission(t);
    int before = sends;
    /* The Set is answered: up-x has the slot, passes the fence and the
     * window, and finds the retention full (reserved redeliveries are
     * not completed, so none can be evicted). */
    cr_assert(command_table_result(t, RS, 1u << COMMAND_SET_CONTEXT, "s-2",
                                   (const uint8_t *)"applied", 7));
    cr_assert_eq(errors_seen(RPC_RESOURCE_EXHAUSTED, "mission deployment retention is full"), 1);
    cr_assert_eq(sends, before + 1, "the slot went on to up-0's redelivery");
    /* up-x was never recorded: its id is free, for another payload too. */
    mission_answer(t, RS, "up-0", "done");
    struct command_spec spec = {.kind = COMMAND_MISSION, .id = "up-x", .msg = (const uint8_t *)"m",
                                .msg_len = 1, .ops = &mission_ops, .deadline_left_ns = INT64_MAX};
    memset(spec.fingerprint, 7, sizeof(spec.fingerprint));
    reset_finishes();
    command_table_submit(t, RS, &spec, CALL);
    cr_assert_eq(errors_seen(RPC_ALREADY_EXISTS,
                             "mission command ID was already used with a different payload"), 0);
    command_table_unref(t);
    command_hub_destroy(hub); /* the waiting ones end UNAVAILABLE */
}

Test(command_table, the_fence_wins_over_a_full_mission_retention)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = reconciled(hub, "m-7");
    full_behind_a_new_mission(t);
    /* The Set fails: unreconciled when up-x gets the slot (rule 10 before 11). */
    cr_assert(command_table_result(t, RS, 1u << COMMAND_SET_CONTEXT, "s-2",
                                   (const uint8_t *)"other", 5));
    cr_assert_eq(errors_seen(RPC_FAILED_PRECONDITION, "fenced"), 1);
    cr_assert_eq(errors_seen(RPC_RESOURCE_EXHAUSTED, "mission deployment retention is full"), 0);
    command_table_unref(t);
    command_hub_destroy(hub);
}

/* up-1 kept with a retryable result from RS; up-2 written on RS holds the
 * slot; up-1 asked again (a reserved redelivery) and a new up-3 wait. */
static void two_waiting_for_the_slot(struct command_table *t)
{
    ask_mission(t, RS, "up-1");
    mission_answer(t, RS, "up-1", "temp");
    ask_mission(t, RS, "up-2");
    int before = sends;
    ask_mission(t, RS, "up-1");
    ask_mission(t, RS, "up-3");
    cr_assert_eq(sends, before);
    reset_finishes();
}

Test(command_table, missions_waiting_for_the_slot_go_out_on_the_stream_that_replaced_theirs)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = reconciled(hub, "m-8");
    two_waiting_for_the_slot(t);
    int before = sends;
    command_table_stream_ended(t, RS, true, RS2);
    /* up-2 was written on RS: the relay's own OUTCOME_UNKNOWN (OK). */
    cr_assert_str_eq(lost_reason, "agent stream replaced after mission delivery");
    cr_assert_eq(finished, 1);
    cr_assert_eq(n_seen, 0, "nothing waiting for the slot was aborted");
    cr_assert_eq(sends, before + 1);
    cr_assert_eq(last_rs, RS2, "up-1's redelivery went out on the current stream");
    cr_assert_not(command_table_result(t, RS, 1u << COMMAND_MISSION, "up-1",
                                       (const uint8_t *)"done", 4));
    mission_answer(t, RS2, "up-1", "done");
    cr_assert_eq(sends, before + 2);
    cr_assert_eq(last_rs, RS2, "then the first delivery of up-3");
    mission_answer(t, RS2, "up-3", "done");
    cr_assert_eq(finished, 3);
    cr_assert_eq(n_seen, 0);
    command_table_unref(t);
    command_hub_destroy(hub);
}

Test(command_table, missions_waiting_for_the_slot_end_with_their_session)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = reconciled(hub, "m-9");
    two_waiting_for_the_slot(t);
    int before = sends;
    command_table_stream_ended(t, RS, false, NULL);
    cr_assert_str_eq(lost_reason, "agent session retired while awaiting mission result");
    cr_assert_eq(errors_seen(RPC_ABORTED, "agent session retired while awaiting mission result "
                                          "before mission admission"),
                 1);
    cr_assert_eq(errors_seen(RPC_NOT_FOUND, "agent session is no longer active"), 1);
    cr_assert_eq(sends, before);
    /* up-1 stays retryable (sent again on any stream); up-3 was dropped. */
    ask_mission(t, RS2, "up-1");
    cr_assert_eq(sends, before + 1);
    mission_answer(t, RS2, "up-1", "done");
    struct command_spec spec = {.kind = COMMAND_MISSION, .id = "up-3", .msg = (const uint8_t *)"m",
                                .msg_len = 1, .ops = &mission_ops, .deadline_left_ns = INT64_MAX};
    memset(spec.fingerprint, 7, sizeof(spec.fingerprint));
    command_table_submit(t, RS2, &spec, CALL);
    cr_assert_eq(sends, before + 2, "up-3's id is free: another payload is a first delivery");
    command_table_unref(t);
    command_hub_destroy(hub);
}

Test(command_table, a_failed_redelivery_admission_is_redelivered_on_any_stream)
{
    struct command_hub *hub = command_hub_create(NULL, HUB_TIMEOUT_NS);
    struct command_table *t = reconciled(hub, "m-10");
    ask_mission(t, RS, "up-1");
    mission_answer(t, RS, "up-1", "temp");
    submit(t, "s-2", ctx("F2", 2));
    cr_assert(command_table_result(t, RS, 1u << COMMAND_SET_CONTEXT, "s-2",
                                   (const uint8_t *)"other", 5)); /* unreconciled now */
    int before = sends;
    reset_finishes();
    ask_mission(t, RS, "up-1");
    /* Both times a redelivery: the second text, nothing sent (rule 10). */
    ask_mission(t, RS2, "up-1");
    cr_assert_eq(errors_seen(RPC_FAILED_PRECONDITION, "fenced again"), 2);
    cr_assert_eq(sends, before);
    apply(t, "s-3", ctx("F3", 3));
    ask_mission(t, RS2, "up-1");
    cr_assert_eq(sends, before + 2, "the Set, then up-1 on RS2");
    cr_assert_eq(last_rs, RS2);
    mission_answer(t, RS2, "up-1", "done");
    command_table_unref(t);
    command_hub_destroy(hub);
}
