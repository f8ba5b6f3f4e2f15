/*
 * redis_server.c - runs a real redis-server for the route-redis tests (see
 * redis_server.h) and reads keys back with hiredis. Test threads only;
 * every wait is a poll with a deadline.
 */
#include "redis_server.h"

#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
    struct redis_server *r = arg;
    int status;
    if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
        r->pid = 0;
        return true; /* exited: the caller fails with the log */
    }
    redisContext *c = connect_db(r, 0);
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
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* Never outlive the test, whatever happens to it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        const char *argv[24];
        int n = 0;
        argv[n++] = "redis-server";
        argv[n++] = "--port";
        argv[n++] = port;
        argv[n++] = "--bind";
        argv[n++] = "127.0.0.1";
        argv[n++] = "--save";
        argv[n++] = "";
        argv[n++] = "--appendonly";
        argv[n++] = "no";
        argv[n++] = "--dir";
        argv[n++] = r->dir;
        argv[n++] = "--logfile";
        argv[n++] = logfile;
        argv[n++] = "--daemonize";
        argv[n++] = "no";
        if (r->password[0]) {
            argv[n++] = "--requirepass";
            argv[n++] = r->password;
        }
        argv[n] = NULL;
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    r->pid = pid;
    bool ok = harness_wait_for(answers_ping, r, 10000);
    if (!ok || !r->pid) {
        char path[300];
        snprintf(path, sizeof(path), "%s/redis.log", r->dir);
        char *log = harness_read_file(path, NULL);
        redis_server_kill(r);
        cr_assert_fail("redis-server on port %d did not start (%s); log:\n%s", r->port,
                       ok ? "it exited" : "timeout", log ? log : "(none)");
    }
}

void redis_server_start(struct redis_server *r, int port, const char *password)
{
    memset(r, 0, sizeof(*r));
    /* Beside the relays' scratch dirs (harness.c): ctest's scratch_cleanup
     * removes them after a passing run, a failed one keeps redis.log. */
    mkdir(AERO_BINARY_DIR "/test-scratch", 0755);
    snprintf(r->dir, sizeof(r->dir), "%s/test-scratch/redis-XXXXXX", AERO_BINARY_DIR);
    cr_assert_not_null(mkdtemp(r->dir));
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
    if (!r->pid)
        return;
    kill(r->pid, SIGKILL);
    int status;
    waitpid(r->pid, &status, 0);
    r->pid = 0;
}

void redis_server_pause(struct redis_server *r) { cr_assert_eq(kill(r->pid, SIGSTOP), 0); }
void redis_server_resume(struct redis_server *r) { cr_assert_eq(kill(r->pid, SIGCONT), 0); }

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
