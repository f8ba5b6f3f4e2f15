/*
 * redis_server.c - runs a real redis-server for the route-redis tests (the
 * process plumbing is test_server.c; see redis_server.h) and reads keys back
 * with hiredis. Test threads only; every wait is a poll with a deadline.
 */
#include "redis_server.h"

#include "harness.h"
#include "test_server.h"

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A connection with AUTH and SELECT done, or NULL (not answering). */
static redisContext *connect_db(const struct redis_server *r, int db)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (r->password[0]) {
        redisReply *rep = redisCommand(c, "AUTH %s", r->password);
        bool ok = rep && rep->type != REDIS_REPLY_ERROR;
        if (rep)
            freeReplyObject(rep);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    if (db) {
        redisReply *rep = redisCommand(c, "SELECT %d", db);
        bool ok = rep && rep->type != REDIS_REPLY_ERROR;
        if (rep)
            freeReplyObject(rep);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

static bool answers_ping(void *arg)
{
    redisContext *c = connect_db(arg, 0);
    if (!c)
        return false;
    redisReply *rep = redisCommand(c, "PING");
    bool ok = rep && rep->type == REDIS_REPLY_STATUS;
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    return ok;
}

static void spawn(struct redis_server *r)
{
    char port[16], logfile[300], out[300];
    snprintf(port, sizeof(port), "%d", r->port);
    snprintf(logfile, sizeof(logfile), "%s/redis.log", r->dir);
    snprintf(out, sizeof(out), "%s/redis.out", r->dir);
    const char *argv[] = {"redis-server", "--port", port, "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", r->dir,
                          "--logfile", logfile, "--daemonize", "no",
                          /* without a password, argv ends here */
                          r->password[0] ? "--requirepass" : NULL, r->password, NULL};
    struct test_server_spec spec = {.argv = argv, .log = out, .ready = answers_ping, .arg = r,
                                    .timeout_ms = 10000};
    int rc = test_server_start(&r->pid, &spec);
    if (rc != 0) {
        char *log = harness_read_file(logfile, NULL);
        redis_server_kill(r);
        cr_assert_fail("redis-server on port %d did not start (%s); log:\n%s", r->port,
                       test_server_strerror(rc), log ? log : "(none)");
    }
}

void redis_server_start(struct redis_server *r, int port, const char *password)
{
    memset(r, 0, sizeof(*r));
    /* Beside the relays' scratch dirs (harness.c): ctest's scratch_cleanup
     * removes them after a passing run, a failed one keeps redis.log. */
    cr_assert_eq(test_server_mkdtemp(r->dir, sizeof(r->dir), AERO_BINARY_DIR "/test-scratch",
                                     "redis-"), 0);
    r->port = port ? port : harness_free_port();
    snprintf(r->addr, sizeof(r->addr), "127.0.0.1:%d", r->port);
    snprintf(r->password, sizeof(r->password), "%s", password ? password : "");
    spawn(r);
}

void redis_server_restart(struct redis_server *r)
{
    cr_assert_eq(r->pid, 0, "redis-server still running");
    spawn(r);
}

void redis_server_kill(struct redis_server *r)
{
    test_server_stop(&r->pid, SIGKILL, 0);
}

void redis_server_pause(struct redis_server *r) { cr_assert_eq(test_server_pause(r->pid), 0); }
void redis_server_resume(struct redis_server *r) { cr_assert_eq(test_server_resume(r->pid), 0); }

static redisReply *run(struct redis_server *r, int db, const char *const *argv)
{
    redisContext *c = connect_db(r, db);
    cr_assert_not_null(c, "cannot reach redis-server on port %d", r->port);
    const char *args[32]; /* hiredis 0.14 takes const char ** */
    int argc = 0;
    for (; argv[argc]; argc++) {
        cr_assert_lt(argc, 32);
        args[argc] = argv[argc];
    }
    redisReply *rep = redisCommandArgv(c, argc, args, NULL);
    cr_assert_not_null(rep, "%s: %s", argv[0], c->errstr);
    redisFree(c);
    cr_assert_neq(rep->type, REDIS_REPLY_ERROR, "%s: %s", argv[0], rep->str);
    return rep;
}

char *redis_server_get(struct redis_server *r, int db, const char *key)
{
    const char *argv[] = {"GET", key, NULL};
    redisReply *rep = run(r, db, argv);
    char *v = rep->type == REDIS_REPLY_STRING ? strndup(rep->str, rep->len) : NULL;
    freeReplyObject(rep);
    return v;
}

static long long integer(struct redis_server *r, int db, const char *const *argv)
{
    redisReply *rep = run(r, db, argv);
    cr_assert_eq(rep->type, REDIS_REPLY_INTEGER, "%s: not an integer reply", argv[0]);
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

long long redis_server_ttl(struct redis_server *r, int db, const char *key)
{
    const char *argv[] = {"TTL", key, NULL};
    return integer(r, db, argv);
}

long long redis_server_dbsize(struct redis_server *r, int db)
{
    const char *argv[] = {"DBSIZE", NULL};
    return integer(r, db, argv);
}

void redis_server_cmd(struct redis_server *r, int db, const char *const *argv)
{
    freeReplyObject(run(r, db, argv));
}
