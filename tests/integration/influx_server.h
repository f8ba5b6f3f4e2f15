/*
 * influx_server.h - a real InfluxDB 1.x (Debian's influxd) for tests: its
 * own config, meta/data/wal directories in a scratch directory, HTTP on a
 * free loopback port, every other service off; ready once GET /ping
 * answers 204. Stopped, paused and restarted on demand (the data stays);
 * plus /query helpers (libcurl) for assertions. Every wait has a deadline;
 * influxd dies with the test process (PR_SET_PDEATHSIG).
 */
#ifndef AERO_TEST_INFLUX_SERVER_H
#define AERO_TEST_INFLUX_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

struct influx_server {
    pid_t pid;
    int port;         /* HTTP */
    int rpc_port;     /* the backup/restore service influxd always binds */
    char url[64];     /* "http://127.0.0.1:<port>" */
    char dir[256];    /* scratch dir: influxdb.conf, meta/, data/, wal/, log */
};

/* Start influxd with HTTP on 127.0.0.1:port (0: a free port); waits up to
 * 15 s. Fails the test on error. */
void influx_server_start(struct influx_server *s, int port);
/* Start it again on the same ports and data (after influx_server_stop). */
void influx_server_restart(struct influx_server *s);
/* SIGKILL and reap; no-op when not running. */
void influx_server_stop(struct influx_server *s);
/* SIGSTOP / SIGCONT: a server that hangs with its sockets open. */
void influx_server_pause(struct influx_server *s);
void influx_server_resume(struct influx_server *s);
/* Stop it and remove the scratch directory. */
void influx_server_cleanup(struct influx_server *s);

/* POST /query q=<q> (db may be NULL); fails the test unless HTTP 200.
 * Returns the JSON body (malloc'd). */
char *influx_server_query(struct influx_server *s, const char *db, const char *q);
/* CREATE DATABASE db. */
void influx_server_create_db(struct influx_server *s, const char *db);
/* The single number a query like SELECT count(x) ... returns (the last
 * value of the first row), or -1 when the result has no rows. */
long long influx_server_query_number(struct influx_server *s, const char *db, const char *q);

#endif
