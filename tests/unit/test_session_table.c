/*
 * test_session_table.c - session table semantics (register, attach, detach,
 * touch, expiry, supersession by generation), id format, and a threaded
 * race that counts every owner reference handed to the table back out.
 */
#include "session_table.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static aero_str cstr(const char *s)
{
    return (aero_str){.ptr = s, .len = strlen(s)};
}

static bool id_format_ok(const char *id)
{
    if (strlen(id) != SESSION_ID_LEN || strncmp(id, "sess-", 5) != 0)
        return false;
    for (size_t i = 5; i < SESSION_ID_LEN; i++) {
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    }
    return true;
}

/* Owners in these tests are distinct addresses; their content is unused. */
static int owner_a, owner_b, owner_c;

Test(session_table, agent_id_charset_and_length)
{
    char long_id[SESSION_AGENT_MAX + 2];

    memset(long_id, 'a', sizeof(long_id));
    cr_assert(session_agent_id_valid("drone-1", 7));
    cr_assert(session_agent_id_valid("AZaz09._-:", 10));
    cr_assert(session_agent_id_valid(long_id, SESSION_AGENT_MAX));
    cr_assert_not(session_agent_id_valid(long_id, SESSION_AGENT_MAX + 1));
    cr_assert_not(session_agent_id_valid("", 0));
    cr_assert_not(session_agent_id_valid(NULL, 3));
    const char *bad[] = {"drone 1", "drone/1", "drone@1", "dr\xc3\xa9ne", "a\tb", "a+b", "a*"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_not(session_agent_id_valid(bad[i], strlen(bad[i])), "%s", bad[i]);
    cr_assert_not(session_agent_id_valid("ab\0cd", 5), "NUL inside the length");
}

Test(session_table, session_ids_are_well_formed_and_unique)
{
    enum { N = 2000 };
    char (*ids)[SESSION_ID_LEN + 1] = calloc(N, sizeof(*ids));

    for (size_t i = 0; i < N; i++) {
        session_id_generate(ids[i]);
        cr_assert(id_format_ok(ids[i]), "%s", ids[i]);
    }
    for (size_t i = 0; i < N; i++)
        for (size_t j = i + 1; j < N; j++)
            cr_assert_str_neq(ids[i], ids[j]);
    free(ids);
}

Test(session_table, register_then_get)
{
    struct session_table *t = session_table_create();
    char sid[SESSION_ID_LEN + 1];
    struct session_info info;
    void *displaced = &owner_c;

    cr_assert_eq(session_table_get(t, "drone-1", &info), -ENOENT);
    session_table_register(t, "drone-1", 1000, sid, &displaced);
    cr_assert_null(displaced);
    cr_assert(id_format_ok(sid));
    cr_assert_eq(session_table_count(t), 1);
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert_str_eq(info.agent_id, "drone-1");
    cr_assert_str_eq(info.session_id, sid);
    cr_assert_eq(info.connected_at_unix_ns, 1000);
    cr_assert_eq(info.last_heartbeat_unix_ns, 1000);
    cr_assert_str_eq(info.flight_id, "");
    cr_assert_not(info.stream_attached);
    cr_assert_eq(session_table_get(t, "drone-2", &info), -ENOENT);
    cr_assert_eq(session_table_get(t, "drone-", &info), -ENOENT);

    /* re-register without a stream: new id, new times, nothing displaced */
    char sid2[SESSION_ID_LEN + 1];
    session_table_register(t, "drone-1", 2000, sid2, &displaced);
    cr_assert_null(displaced);
    cr_assert_str_neq(sid, sid2);
    cr_assert_eq(session_table_count(t), 1);
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert_str_eq(info.session_id, sid2);
    cr_assert_eq(info.connected_at_unix_ns, 2000);
    session_table_destroy(t, NULL);
}

Test(session_table, ids_over_the_limit_are_never_found)
{
    struct session_table *t = session_table_create();
    char id[SESSION_AGENT_MAX + 2];
    char sid[SESSION_ID_LEN + 1];
    struct session_info info;
    uint64_t gen;
    void *displaced;

    memset(id, 'x', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    session_table_register(t, id, 1, sid, &displaced);
    cr_assert_str_eq(sid, "");
    cr_assert_eq(session_table_count(t), 0);
    cr_assert_eq(session_table_attach(t, id, &owner_a, &gen, sid, &displaced), -ENOENT);
    cr_assert_eq(session_table_get(t, id, &info), -ENOENT);

    id[SESSION_AGENT_MAX] = '\0'; /* exactly the limit works */
    session_table_register(t, id, 1, sid, &displaced);
    cr_assert_eq(session_table_get(t, id, &info), 0);
    cr_assert_str_eq(info.agent_id, id);
    session_table_destroy(t, NULL);
}

Test(session_table, attach_and_detach)
{
    struct session_table *t = session_table_create();
    char sid[SESSION_ID_LEN + 1], sid_attach[SESSION_ID_LEN + 1];
    struct session_info info;
    uint64_t gen = 0;
    void *displaced = &owner_c, *owner = NULL;

    cr_assert_eq(session_table_attach(t, "drone-1", &owner_a, &gen, sid_attach, &displaced),
                 -ENOENT);
    session_table_register(t, "drone-1", 10, sid, &displaced);
    cr_assert_eq(session_table_attach(t, "drone-1", &owner_a, &gen, sid_attach, &displaced), 0);
    cr_assert_null(displaced);
    cr_assert_neq(gen, 0);
    cr_assert_str_eq(sid_attach, sid);
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert(info.stream_attached);

    cr_assert_not(session_table_detach(t, "drone-1", gen + 1, &owner));
    cr_assert_not(session_table_detach(t, "drone-2", gen, &owner));
    cr_assert_eq(session_table_count(t), 1);
    cr_assert(session_table_detach(t, "drone-1", gen, &owner));
    cr_assert_eq(owner, &owner_a);
    cr_assert_eq(session_table_count(t), 0);
    cr_assert_eq(session_table_get(t, "drone-1", &info), -ENOENT);
    /* a second detach of the same stream finds nothing */
    cr_assert_not(session_table_detach(t, "drone-1", gen, &owner));
    cr_assert_null(owner);
    session_table_destroy(t, NULL);
}

Test(session_table, second_stream_supersedes_first)
{
    struct session_table *t = session_table_create();
    char sid[SESSION_ID_LEN + 1], s1[SESSION_ID_LEN + 1], s2[SESSION_ID_LEN + 1];
    uint64_t gen1, gen2;
    void *displaced, *owner;
    struct session_info info;

    session_table_register(t, "drone-1", 10, sid, &displaced);
    cr_assert_eq(session_table_attach(t, "drone-1", &owner_a, &gen1, s1, &displaced), 0);
    cr_assert_eq(session_table_attach(t, "drone-1", &owner_b, &gen2, s2, &displaced), 0);
    cr_assert_eq(displaced, &owner_a);
    cr_assert_neq(gen1, gen2);
    cr_assert_str_eq(s2, sid);

    /* the old stream's late calls change nothing */
    session_table_touch(t, "drone-1", gen1, 99, cstr("old-flight"));
    cr_assert_not(session_table_detach(t, "drone-1", gen1, &owner));
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert_eq(info.last_heartbeat_unix_ns, 10);
    cr_assert_str_eq(info.flight_id, "");
    cr_assert(info.stream_attached);

    cr_assert(session_table_detach(t, "drone-1", gen2, &owner));
    cr_assert_eq(owner, &owner_b);
    session_table_destroy(t, NULL);
}

Test(session_table, register_supersedes_attached_stream)
{
    struct session_table *t = session_table_create();
    char sid1[SESSION_ID_LEN + 1], sid2[SESSION_ID_LEN + 1], s[SESSION_ID_LEN + 1];
    uint64_t gen1, gen2;
    void *displaced, *owner;
    struct session_info info;

    session_table_register(t, "drone-1", 10, sid1, &displaced);
    cr_assert_eq(session_table_attach(t, "drone-1", &owner_a, &gen1, s, &displaced), 0);
    session_table_touch(t, "drone-1", gen1, 20, cstr("flight-1"));

    session_table_register(t, "drone-1", 30, sid2, &displaced);
    cr_assert_eq(displaced, &owner_a, "Register hands back the old stream's owner");
    cr_assert_str_neq(sid1, sid2);
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert_str_eq(info.session_id, sid2);
    cr_assert_not(info.stream_attached);
    cr_assert_eq(info.connected_at_unix_ns, 30);
    cr_assert_eq(info.last_heartbeat_unix_ns, 30);
    cr_assert_str_eq(info.flight_id, "");

    /* the old stream's late calls do not touch or remove the new session */
    session_table_touch(t, "drone-1", gen1, 40, cstr("flight-old"));
    cr_assert_not(session_table_detach(t, "drone-1", gen1, &owner));
    cr_assert_null(owner);
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert_str_eq(info.session_id, sid2);
    cr_assert_eq(info.last_heartbeat_unix_ns, 30);
    cr_assert_str_eq(info.flight_id, "");

    /* the new stream takes over normally */
    cr_assert_eq(session_table_attach(t, "drone-1", &owner_b, &gen2, s, &displaced), 0);
    cr_assert_null(displaced);
    cr_assert_str_eq(s, sid2);
    cr_assert_neq(gen2, gen1);
    session_table_destroy(t, NULL);
}

/* last_message (what route-registry's "demonstrably here" reads): 0 at
 * Register, moved by every stream message, frame or not, of the current
 * stream only; last_heartbeat stays the frames'. */
Test(session_table, last_message_moves_with_any_stream_message)
{
    struct session_table *t = session_table_create();
    char sid[SESSION_ID_LEN + 1];
    uint64_t gen1, gen2;
    void *displaced;
    struct session_info info;

    session_table_register(t, "drone-1", 10, sid, &displaced);
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert_eq(info.last_message_unix_ns, 0, "Register is no stream message");
    cr_assert_eq(info.last_heartbeat_unix_ns, 10);
    cr_assert_eq(session_table_attach(t, "drone-1", &owner_a, &gen1, sid, &displaced), 0);
    session_table_touch_message(t, "drone-1", gen1, 20);
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert_eq(info.last_message_unix_ns, 20);
    cr_assert_eq(info.last_heartbeat_unix_ns, 10, "only frames move last_heartbeat");
    session_table_touch(t, "drone-1", gen1, 30, cstr(""));
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert_eq(info.last_message_unix_ns, 30);
    cr_assert_eq(info.last_heartbeat_unix_ns, 30);

    /* a superseded stream's late message changes nothing */
    cr_assert_eq(session_table_attach(t, "drone-1", &owner_b, &gen2, sid, &displaced), 0);
    session_table_touch_message(t, "drone-1", gen1, 40);
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert_eq(info.last_message_unix_ns, 30);
    session_table_touch_message(t, "nobody", gen2, 40);

    session_table_register(t, "drone-1", 50, sid, &displaced);
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert_eq(info.last_message_unix_ns, 0, "a new session has delivered nothing");
    session_table_destroy(t, NULL);
}

/* A frame's flight_id and intent_id move independently: one that carries
 * only one of them keeps the other; a new Register clears both. */
Test(session_table, flight_and_intent_move_independently)
{
    struct session_table *t = session_table_create();
    char sid[SESSION_ID_LEN + 1];
    uint64_t gen;
    void *displaced;
    struct session_info info;

    session_table_register(t, "drone-7", 10, sid, &displaced);
    cr_assert_eq(session_table_attach(t, "drone-7", &owner_a, &gen, sid, &displaced), 0);
    aero_frame f = {.size = sizeof(f), .flight_id = cstr("flight-A"), .intent_id = cstr("intent-1"),
                    .intent_version = 3};
    cr_assert(session_table_touch_frame(t, "drone-7", gen, 11, &f));
    f = (aero_frame){.size = sizeof(f), .intent_id = cstr("intent-2"), .intent_version = 4};
    cr_assert(session_table_touch_frame(t, "drone-7", gen, 12, &f));
    cr_assert_eq(session_table_get(t, "drone-7", &info), 0);
    cr_assert_str_eq(info.flight_id, "flight-A");
    cr_assert_str_eq(info.intent_id, "intent-2");
    cr_assert_eq(info.intent_version, 4);
    session_info_release(&info);

    f = (aero_frame){.size = sizeof(f), .flight_id = cstr("flight-B")};
    cr_assert(session_table_touch_frame(t, "drone-7", gen, 13, &f));
    cr_assert_eq(session_table_get(t, "drone-7", &info), 0);
    cr_assert_str_eq(info.flight_id, "flight-B");
    cr_assert_str_eq(info.intent_id, "intent-2");
    cr_assert_eq(info.intent_version, 4);
    cr_assert_str_eq(info.agent_id, "drone-7");
    cr_assert_str_eq(info.session_id, sid);
    session_info_release(&info);

    session_table_register(t, "drone-7", 20, sid, &displaced);
    cr_assert_eq(session_table_get(t, "drone-7", &info), 0);
    cr_assert_str_eq(info.flight_id, "");
    cr_assert_str_eq(info.intent_id, "");
    cr_assert_eq(info.intent_version, 0);
    session_info_release(&info);
    session_table_destroy(t, NULL);
}

Test(session_table, touch_moves_heartbeat_and_flight)
{
    struct session_table *t = session_table_create();
    char sid[SESSION_ID_LEN + 1];
    uint64_t gen;
    void *displaced;
    struct session_info info;

    session_table_register(t, "drone-1", 10, sid, &displaced);
    cr_assert_eq(session_table_attach(t, "drone-1", &owner_a, &gen, sid, &displaced), 0);
    session_table_touch(t, "drone-1", gen, 11, cstr("f-1"));
    session_table_touch(t, "drone-1", gen, 12, cstr(""));
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert_eq(info.last_heartbeat_unix_ns, 12);
    cr_assert_eq(info.connected_at_unix_ns, 10);
    cr_assert_str_eq(info.flight_id, "f-1", "an empty flight_id keeps the last one");

    /* over the limit: cut to 128 bytes, not inside a UTF-8 sequence */
    char longf[200];
    memset(longf, 'f', sizeof(longf));
    session_table_touch(t, "drone-1", gen, 13, (aero_str){longf, sizeof(longf)});
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert_eq(strlen(info.flight_id), SESSION_FLIGHT_MAX);
    memcpy(longf + 127, "\xc3\xa9", 2); /* a 2-byte char straddling the cut */
    session_table_touch(t, "drone-1", gen, 14, (aero_str){longf, sizeof(longf)});
    cr_assert_eq(session_table_get(t, "drone-1", &info), 0);
    cr_assert_eq(strlen(info.flight_id), 127);

    void *owner;
    cr_assert(session_table_detach(t, "drone-1", gen, &owner));
    session_table_destroy(t, NULL);
}

struct expired_log {
    size_t n;
    char agents[8][SESSION_AGENT_MAX + 1];
    char sessions[8][SESSION_ID_LEN + 1];
};

static void on_expired(void *arg, const char *agent_id, const char *session_id)
{
    struct expired_log *log = arg;

    cr_assert_lt(log->n, 8);
    strcpy(log->agents[log->n], agent_id);
    strcpy(log->sessions[log->n], session_id);
    log->n++;
}

Test(session_table, expiry_removes_only_unattached_old_sessions)
{
    struct session_table *t = session_table_create();
    char sa[SESSION_ID_LEN + 1], sb[SESSION_ID_LEN + 1], sc[SESSION_ID_LEN + 1];
    char sd[SESSION_ID_LEN + 1];
    uint64_t gen;
    void *displaced;
    struct expired_log log = {0};
    struct session_info info;

    session_table_register(t, "a", 0, sa, &displaced);
    session_table_register(t, "b", 50, sb, &displaced);
    session_table_register(t, "c", 0, sc, &displaced);
    session_table_register(t, "d", 20, sd, &displaced);
    cr_assert_eq(session_table_attach(t, "c", &owner_a, &gen, sc, &displaced), 0);

    /* ttl 100 at now 120: a (120 old) goes; d (exactly 100) and b stay */
    cr_assert_eq(session_table_expire(t, 120, 100, on_expired, &log), 1);
    cr_assert_eq(log.n, 1);
    cr_assert_str_eq(log.agents[0], "a");
    cr_assert_str_eq(log.sessions[0], sa);
    cr_assert_eq(session_table_get(t, "a", &info), -ENOENT);
    cr_assert_eq(session_table_count(t), 3);

    /* much later: the attached session c never expires */
    cr_assert_eq(session_table_expire(t, 1000000, 100, on_expired, &log), 2);
    cr_assert_eq(log.n, 3);
    cr_assert_eq(session_table_count(t), 1);
    cr_assert_eq(session_table_get(t, "c", &info), 0);
    cr_assert_eq(session_table_expire(t, 2000000, 100, NULL, NULL), 0);

    /* a re-Register restarts the clock */
    session_table_register(t, "b", 1000000, sb, &displaced);
    cr_assert_eq(session_table_expire(t, 1000050, 100, NULL, NULL), 0);
    cr_assert_eq(session_table_get(t, "b", &info), 0);
    session_table_destroy(t, NULL);
}

static void count_drop(void *owner)
{
    (*(int *)owner)++;
}

Test(session_table, list_and_destroy)
{
    struct session_table *t = session_table_create();
    enum { N = 500 };
    char id[32], sid[SESSION_ID_LEN + 1];
    uint64_t gen;
    void *displaced;
    int drops[N] = {0};

    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "drone-%d", i);
        session_table_register(t, id, i, sid, &displaced);
        if (i % 2 == 0)
            cr_assert_eq(session_table_attach(t, id, &drops[i], &gen, sid, &displaced), 0);
    }
    cr_assert_eq(session_table_count(t), N);

    struct session_info *list = NULL;
    size_t n = session_table_list(t, &list);
    cr_assert_eq(n, N);
    bool seen[N] = {false};
    for (size_t i = 0; i < n; i++) {
        int k;
        cr_assert_eq(sscanf(list[i].agent_id, "drone-%d", &k), 1);
        cr_assert(k >= 0 && k < N && !seen[k]);
        seen[k] = true;
        cr_assert_eq(list[i].connected_at_unix_ns, k);
        cr_assert_eq(list[i].stream_attached, k % 2 == 0);
        cr_assert(id_format_ok(list[i].session_id));
        struct session_info one;
        cr_assert_eq(session_table_get(t, list[i].agent_id, &one), 0);
        cr_assert_str_eq(one.session_id, list[i].session_id);
    }
    free(list);

    session_table_destroy(t, count_drop);
    for (int i = 0; i < N; i++)
        cr_assert_eq(drops[i], i % 2 == 0 ? 1 : 0, "owner %d", i);

    struct session_table *empty = session_table_create();
    list = (struct session_info *)&owner_a;
    cr_assert_eq(session_table_list(empty, &list), 0);
    cr_assert_null(list);
    session_table_destroy(empty, count_drop);
}

/* ------------------------------------------------------------------ race */

enum { RACE_THREADS = 6, RACE_ITERS = 20000, RACE_AGENTS = 3 };
enum { RACE_OWNERS = RACE_THREADS * RACE_ITERS };

struct race {
    struct session_table *t;
    _Atomic int returned[RACE_OWNERS]; /* times each owner came back */
    _Atomic size_t issued;
    _Atomic int64_t clock;
    _Atomic bool stop_listing;
    _Atomic size_t bad_snapshots;
};

struct racer {
    struct race *r;
    unsigned seed;
};

static const char *race_agents[RACE_AGENTS] = {"alpha", "bravo", "charlie"};

/* Owners are indices into returned[] disguised as pointers (+1: never NULL). */
static void give_back(struct race *r, void *owner)
{
    if (owner != NULL)
        atomic_fetch_add(&r->returned[(uintptr_t)owner - 1], 1);
}

static void race_drop(void *owner, void *arg)
{
    give_back(arg, owner);
}

/* destroy's drop_owner takes no argument: the race test is its only user. */
static struct race *drop_target;

static void race_destroy_drop(void *owner)
{
    race_drop(owner, drop_target);
}

/* An info is consistent when it is one whole write: flight ids in the race
 * are the session id they were touched under, and times only grow. */
static bool info_consistent(const struct session_info *i)
{
    return id_format_ok(i->session_id) &&
           (i->flight_id[0] == '\0' || strcmp(i->flight_id, i->session_id) == 0) &&
           i->last_heartbeat_unix_ns >= i->connected_at_unix_ns;
}

static void race_step(struct race *r, unsigned *seed, uint64_t gens[RACE_AGENTS],
                      char sids[RACE_AGENTS][SESSION_ID_LEN + 1])
{
    size_t a = (size_t)rand_r(seed) % RACE_AGENTS;
    const char *agent = race_agents[a];
    int64_t now = atomic_fetch_add(&r->clock, 1);
    void *out = NULL;

    switch (rand_r(seed) % 4) {
    case 0: {
        char sid[SESSION_ID_LEN + 1];
        session_table_register(r->t, agent, now, sid, &out);
        give_back(r, out);
        break;
    }
    case 1: {
        void *owner = (void *)(uintptr_t)(atomic_fetch_add(&r->issued, 1) + 1);
        if (session_table_attach(r->t, agent, owner, &gens[a], sids[a], &out) < 0)
            give_back(r, owner); /* -ENOENT: the reference stays with us */
        give_back(r, out);
        break;
    }
    case 2:
        if (session_table_detach(r->t, agent, gens[a], &out))
            give_back(r, out);
        break;
    default:
        session_table_touch(r->t, agent, gens[a], now, cstr(sids[a]));
        break;
    }
}

static void *racer_main(void *arg)
{
    struct racer *me = arg;
    uint64_t gens[RACE_AGENTS] = {0};
    char sids[RACE_AGENTS][SESSION_ID_LEN + 1] = {{0}};

    for (int i = 0; i < RACE_ITERS; i++)
        race_step(me->r, &me->seed, gens, sids);
    return NULL;
}

static void *lister_main(void *arg)
{
    struct race *r = arg;

    while (!atomic_load(&r->stop_listing)) {
        struct session_info *list;
        size_t n = session_table_list(r->t, &list);
        if (n > RACE_AGENTS) /* no criterion asserts off the test's thread */
            atomic_fetch_add(&r->bad_snapshots, 1);
        for (size_t i = 0; i < n; i++) {
            if (!info_consistent(&list[i]))
                atomic_fetch_add(&r->bad_snapshots, 1);
        }
        free(list);
        struct session_info one;
        if (session_table_get(r->t, race_agents[n % RACE_AGENTS], &one) == 0 &&
            !info_consistent(&one))
            atomic_fetch_add(&r->bad_snapshots, 1);
    }
    return NULL;
}

Test(session_table, concurrent_register_attach_detach_returns_every_owner_once)
{
    struct race *r = calloc(1, sizeof(*r));
    pthread_t threads[RACE_THREADS], lister;
    struct racer racers[RACE_THREADS];

    r->t = session_table_create();
    cr_assert_not_null(r->t);
    cr_assert_eq(pthread_create(&lister, NULL, lister_main, r), 0);
    for (unsigned i = 0; i < RACE_THREADS; i++) {
        racers[i] = (struct racer){.r = r, .seed = 1234 + i};
        cr_assert_eq(pthread_create(&threads[i], NULL, racer_main, &racers[i]), 0);
    }
    for (unsigned i = 0; i < RACE_THREADS; i++)
        pthread_join(threads[i], NULL);
    atomic_store(&r->stop_listing, true);
    pthread_join(lister, NULL);

    cr_assert_leq(session_table_count(r->t), RACE_AGENTS);
    drop_target = r;
    session_table_destroy(r->t, race_destroy_drop);

    size_t issued = atomic_load(&r->issued);
    cr_assert_gt(issued, RACE_OWNERS / 8, "the race must attach often to mean anything");
    for (size_t i = 0; i < issued; i++)
        cr_assert_eq(atomic_load(&r->returned[i]), 1, "owner %zu returned %d times", i,
                     atomic_load(&r->returned[i]));
    cr_assert_eq(atomic_load(&r->bad_snapshots), 0);
    free(r);
}

/* ---- max_sessions: the cap counts sessions, replacing one is always fine */

Test(session_table, cap_refuses_new_agents_but_not_reregistration)
{
    struct session_table *t = session_table_create();
    char sid[SESSION_ID_LEN + 1], old[SESSION_ID_LEN + 1];
    void *displaced;

    session_table_set_max(t, 2);
    cr_assert_eq(session_table_register(t, "a", 1, sid, &displaced), 0);
    cr_assert_eq(session_table_register(t, "b", 1, old, &displaced), 0);
    cr_assert_eq(session_table_register(t, "c", 1, sid, &displaced), -ENOSPC);
    cr_assert_str_eq(sid, "", "no session id for a refused register");
    struct session_info info;
    cr_assert_eq(session_table_get(t, "c", &info), -ENOENT);
    cr_assert_eq(session_table_count(t), 2);

    /* the full table still takes a reconnect of a known agent */
    cr_assert_eq(session_table_register(t, "b", 2, sid, &displaced), 0);
    cr_assert_str_neq(sid, old);
    cr_assert_eq(session_table_count(t), 2);

    /* a slot freed by a stream's end is usable again */
    uint64_t gen;
    cr_assert_eq(session_table_attach(t, "a", &owner_a, &gen, sid, &displaced), 0);
    void *owner;
    cr_assert(session_table_detach(t, "a", gen, &owner));
    cr_assert_eq(session_table_register(t, "c", 3, sid, &displaced), 0);
    cr_assert_eq(session_table_register(t, "d", 3, sid, &displaced), -ENOSPC);
    session_table_destroy(t, NULL);
}

struct cap_race {
    struct session_table *t;
    atomic_int accepted;
    int base;
};

static void *cap_racer(void *arg)
{
    struct cap_race *r = arg;
    for (int i = 0; i < 200; i++) {
        char id[32], sid[SESSION_ID_LEN + 1];
        void *displaced;
        snprintf(id, sizeof id, "agent-%d-%d", r->base, i); /* distinct per thread */
        if (session_table_register(r->t, id, 1, sid, &displaced) == 0)
            atomic_fetch_add(&r->accepted, 1);
    }
    return NULL;
}

Test(session_table, cap_is_exact_under_concurrent_registers)
{
    enum { THREADS = 8, CAP = 300 };
    struct cap_race r[THREADS];
    pthread_t th[THREADS];
    struct session_table *t = session_table_create();

    session_table_set_max(t, CAP);
    for (int i = 0; i < THREADS; i++) {
        r[i] = (struct cap_race){.t = t, .base = i};
        atomic_init(&r[i].accepted, 0);
        cr_assert_eq(pthread_create(&th[i], NULL, cap_racer, &r[i]), 0);
    }
    int accepted = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        accepted += atomic_load(&r[i].accepted);
    }
    cr_assert_eq(accepted, CAP, "%d registers accepted for a cap of %d", accepted, CAP);
    cr_assert_eq(session_table_count(t), CAP);
    struct session_info *list;
    cr_assert_eq(session_table_list(t, &list), CAP);
    free(list);
    session_table_destroy(t, NULL);
}
