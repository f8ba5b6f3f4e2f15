/*
 * redis_server.h - a real redis-server for tests: started on a loopback port
 * with no persistence (--save '' --appendonly no) in a scratch directory
 * under the build tree's test-scratch/, ready once it answers PING; killed,
 * paused and restarted on demand; and a few hiredis reads for assertions.
 * Every wait has a deadline. The server dies with the test process
 * (PR_SET_PDEATHSIG).
 */
#ifndef AERO_TEST_REDIS_SERVER_H
#define AERO_TEST_REDIS_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

struct redis_server {
    pid_t pid;
    int port;
    char addr[64];      /* "127.0.0.1:<port>" */
    char dir[256];      /* scratch dir: redis.log */
    char password[64];  /* --requirepass, "" for none */
};

/* Pick a free port (port 0) or use `port`, start redis-server and wait (up
 * to 10 s) until PING answers. password may be NULL. Fails the test on error. */
void redis_server_start(struct redis_server *r, int port, const char *password);
/* Start it again on the same port (after redis_server_kill): empty dataset. */
void redis_server_restart(struct redis_server *r);
/* SIGKILL and reap; no-op when not running. */
void redis_server_kill(struct redis_server *r);
/* SIGSTOP / SIGCONT: a Redis that hangs without closing its sockets. */
void redis_server_pause(struct redis_server *r);
void redis_server_resume(struct redis_server *r);

/* GET key in db: a malloc'd value, or NULL when the key does not exist.
 * Fails the test when Redis cannot be asked. */
char *redis_server_get(struct redis_server *r, int db, const char *key);
/* TTL key in db (seconds; -2 missing, -1 no TTL). */
long long redis_server_ttl(struct redis_server *r, int db, const char *key);
/* Run a command given as argv (NULL-terminated) in db; fails the test
 * unless Redis answers without an error. */
void redis_server_cmd(struct redis_server *r, int db, const char *const *argv);
/* DBSIZE of db. */
long long redis_server_dbsize(struct redis_server *r, int db);

#endif
