/*
 * test_server.h - the plumbing every real server the tests run shares
 * (influxd, mosquitto, nats-server, redis-server): a scratch directory, the
 * server as a child process that dies with the test (PR_SET_PDEATHSIG) and
 * writes its output to a log file, a deadline-bound wait until it accepts
 * TCP on its loopback port(s) and/or passes a readiness check of its own,
 * SIGSTOP/SIGCONT, stop and reap, and removing the scratch directory.
 *
 * No criterion dependency, so tests/nats_server.c (which reports errors as
 * -errno) can use it: functions return 0 or -errno and the criterion-based
 * servers assert on that.
 */
#ifndef AERO_TEST_SERVER_H
#define AERO_TEST_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* What to run and how to know it is ready. */
struct test_server_spec {
    const char *const *argv;      /* NULL-terminated; argv[0] is the name it runs as */
    const char *const *programs;  /* tried in order (execvp); NULL: just argv[0] */
    const char *log;              /* stdout and stderr, appended */
    int ports[2];                 /* loopback ports it must accept TCP on (0: none) */
    bool (*ready)(void *arg);     /* then this must be true too (NULL: no check) */
    void *arg;
    int timeout_ms;
};

/* Create parent (if not NULL; it may exist) and a fresh directory
 * "<parent or /tmp>/<prefix>XXXXXX" in it, into dir. 0 or -errno. */
int test_server_mkdtemp(char *dir, size_t size, const char *parent, const char *prefix);

/* An unused loopback TCP port, 0 on failure. */
int test_server_free_port(void);

/* Does something accept TCP connections on 127.0.0.1:port now? */
bool test_server_port_accepts(int port);

/* Fork and exec spec, then poll (every 10 ms, up to spec->timeout_ms) until
 * it is ready. *pid is the child while it runs. 0; -ECHILD when it exited
 * (reaped, *pid = 0); -ETIMEDOUT (still running: the caller decides);
 * -EALREADY when *pid was not 0; or -errno of fork. */
int test_server_start(pid_t *pid, const struct test_server_spec *spec);

/* What test_server_start's error means, for messages. */
const char *test_server_strerror(int rc);

/* SIGCONT (it may be paused), then sig; wait up to grace_ms for it to exit,
 * then SIGKILL. Always reaps; *pid = 0. 0, -ESRCH when not running, or
 * -errno of kill. */
int test_server_stop(pid_t *pid, int sig, int grace_ms);

/* SIGSTOP / SIGCONT: a server that hangs with its sockets open. 0 or -errno. */
int test_server_pause(pid_t pid);
int test_server_resume(pid_t pid);

/* Kill it if running, remove dir and everything in it, and clear dir. */
void test_server_cleanup(pid_t *pid, char *dir);

#endif
