/*
 * nats_server.h - a real nats-server (Debian package) with JetStream for
 * tests: its own scratch directory and store (-sd), a free loopback port
 * kept across restarts, started and killed on demand. Test code only; no
 * criterion dependency (functions return 0 / -errno and print why).
 */
#ifndef AERO_TEST_NATS_SERVER_H
#define AERO_TEST_NATS_SERVER_H

#include <sys/types.h>

struct nats_server {
    pid_t pid;        /* 0 when not running */
    int port;
    int starts;       /* how many times it was started (names the logs) */
    char dir[128];    /* scratch dir: store/, nats-<n>.log */
    char store[192];  /* JetStream store dir, kept across restarts */
    char log[192];    /* log of the current run */
    char url[64];     /* "nats://127.0.0.1:<port>" */
};

/* Scratch dir, store dir and a free port; nothing started. 0 or -errno. */
int nats_server_init(struct nats_server *ns);

/* Start nats-server -js on ns->port with ns->store; wait (up to
 * timeout_ms) until it logs "Server is ready". 0, -ETIMEDOUT, -ECHILD
 * (it exited: its log is printed on stderr) or -errno. */
int nats_server_start(struct nats_server *ns, int timeout_ms);

/* Send sig (SIGKILL: a crash, SIGTERM: a clean stop) and reap it. */
int nats_server_stop(struct nats_server *ns, int sig);

/* Stop it if running and remove the scratch dir. */
void nats_server_cleanup(struct nats_server *ns);

/* An unused loopback TCP port (0 on failure). */
int nats_server_free_port(void);

#endif
