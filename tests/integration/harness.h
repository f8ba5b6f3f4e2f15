/*
 * harness.h - black-box test support: run the real aeroarc-relay binary on
 * free loopback ports with a generated relay.ini in a scratch directory,
 * wait until it answers gRPC health checks, and stop it. Deadlines
 * everywhere, never bare sleeps.
 */
#ifndef AERO_TEST_HARNESS_H
#define AERO_TEST_HARNESS_H

#include "relay_client.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct relay_proc {
    pid_t pid;
    int port;
    char target[64];       /* "127.0.0.1:<port>" */
    char dir[256];         /* scratch dir: relay.ini, plugins/, data/, logs */
    char config[300];
    char stdout_path[300]; /* the relay's standard output (sink-stdout) */
    char stderr_path[300]; /* the relay's log */
    int exit_status;       /* after relay_stop: exit code, or 128+signal */
    const char *env[9];    /* "NAME=value" set for the relay (NULL-terminated) */
    /* TLS relays: the CA (and client certificate) the readiness probe uses. */
    const char *tls_ca, *tls_cert, *tls_key;
    /* Set between harness_prepare (which zeroes them) and harness_write_config: */
    bool http;             /* serve [http] on a free loopback port, put in http_port */
    const char *log_keys;  /* body of [log]; NULL: "level = debug\nformat = text" */
    int http_port;         /* filled by harness_write_config when http is set */
    const char *http_keys; /* more lines of [http] (e.g. "unready_after_s = 1\n"), or NULL */
    const char *wrapper;   /* run the relay under this command ("valgrind ..."), or NULL */
};

/* The line of relay.ini where `key` is set (first match), for messages. */
int harness_config_line(const struct relay_proc *r, const char *key);

/* A channel to r, over TLS when r->tls_ca is set (server name "localhost"). */
struct rc_channel *harness_channel(const struct relay_proc *r);

/* A fresh scratch directory under /tmp with plugins/ linking every built and
 * test plugin. Fills r->dir and r->config (not written yet). */
void harness_prepare(struct relay_proc *r);

/* An unused loopback TCP port. */
int harness_free_port(void);

/*
 * Write relay.ini: a [relay] section with listen on a free port, plugin_dir
 * = the scratch plugins/, allow_no_sinks = true (many tests need no sink:
 * a relay that acks OK and keeps nothing is theirs to start), [http] (off
 * unless r->http), [log] (r->log_keys,
 * else level debug as text)... followed by `body`
 * (the other sections; may use "%DIR%" for the scratch dir). Returns the
 * path.
 */
const char *harness_write_config(struct relay_proc *r, const char *relay_extra, const char *body);

/* Set (or with value NULL, clear) an environment variable for the relay
 * processes this harness starts for r (up to 8). */
void harness_setenv(struct relay_proc *r, const char *name, const char *value);

/* Start the relay on r->config (under r->wrapper if set); wait (up to 15 s,
 * 60 s with a wrapper) until Health/Check says SERVING. Fails the test if
 * it exits or never gets ready. */
void relay_start(struct relay_proc *r);
/* Run the binary with args to completion (for --check/--version): returns the
 * exit code and captures stdout+stderr into out. */
int relay_run_cli(const char *const *args, char *out, size_t outlen);
/* SIGTERM and wait (up to timeout_ms); returns exit status (128+sig when
 * killed), fails the test on timeout (then SIGKILLs). */
int relay_stop(struct relay_proc *r, int timeout_ms);
void relay_kill(struct relay_proc *r);

/* harness_write_config, relay_start, and a channel to the relay (plain
 * gRPC: rc_connect): how most tests bring their relay up. */
struct rc_channel *harness_start(struct relay_proc *r, const char *relay_extra, const char *body);

/* Teardown for harness_start: close *ch (may be NULL; becomes NULL), then,
 * unless the test already stopped or killed the relay, SIGTERM it and
 * expect (cr_expect) a clean exit 0 within 20 s. */
void harness_finish(struct relay_proc *r, struct rc_channel **ch);

/* Teardown for a test that checks how its relay exits itself, if at all:
 * close *ch (ch may be NULL; *ch becomes NULL) and SIGKILL the relay if it
 * still runs. */
void harness_kill(struct relay_proc *r, struct rc_channel **ch);

/* Send harness_frame(agent, seq) for seq first..first+n-1 on s, then read
 * their n acks (10 s each) and count them by status into counts[4]; the
 * first non-OK ack's error text goes to err (may be NULL). */
void harness_stream_frames(struct rc_stream *s, const char *agent, uint64_t first, size_t n,
                           size_t counts[4], char *err, size_t errlen);

/* Register agent; fails the test unless OK. Session id into session (may be NULL). */
void harness_register(struct rc_channel *ch, const char *agent, char *session, size_t len);

/* A realistic frame for agent/seq (static storage per thread). */
const struct rc_frame *harness_frame(const char *agent, uint64_t seq);
/* The wal_id harness_g2_frame stamps (a fixed UUID, for expectations). */
#define HARNESS_WAL_A "3f2b8c1e-5d4a-4b6f-9e8d-7c6b5a4f3e2d"
/* A valid generation-2 frame: harness_frame plus the stream's session,
 * wal_id HARNESS_WAL_A, intent "intent-9" version 4. Static storage per
 * thread, like harness_frame. */
const struct rc_frame *harness_g2_frame(const char *agent, const char *session, uint64_t seq);

/* Read a whole file (malloc'ed, NUL-terminated); NULL if missing. */
char *harness_read_file(const char *path, size_t *len);

/* Moves the listener on *which (&r->port or &r->http_port) to `port` in
 * relay.ini as harness_write_config wrote it (r->target follows); false
 * when relay.ini has no such line. */
bool harness_move_port(struct relay_proc *r, int *which, int port);

/* How many whole lines of r's log so far hold every one of the needles
 * (strings, then NULL). */
int harness_log_count(const struct relay_proc *r, ...) __attribute__((sentinel));

/* CLOCK_MONOTONIC in milliseconds, for deadlines. */
int64_t harness_now_ms(void);

/* Poll cond(arg) every 10 ms until true or timeout_ms passed. */
bool harness_wait_for(bool (*cond)(void *arg), void *arg, int timeout_ms);

/* Concatenation of every *.jsonl file under dir (malloc'ed), or "" if none. */
char *harness_read_jsonl_dir(const char *dir, size_t *n_files);

/* Call fn(arg, agent_id, seq) for every envelope line of every .jsonl file
 * in dir (sink-file's output). A last line without its newline fails the
 * test unless torn_ok (after a kill -9); returns how many there were. */
int harness_for_each_envelope(const char *dir, bool torn_ok,
                              void (*fn)(void *arg, const char *agent, uint64_t seq), void *arg);

#endif
