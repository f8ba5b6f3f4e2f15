/*
 * mqtt_server.h - a real mosquitto broker for tests: started on a free
 * loopback port with its own config in a scratch directory (optionally with
 * a password file and no anonymous access), ready once it accepts TCP
 * connections; stopped, paused and restarted on demand. Plus a test
 * subscriber (libmosquitto) that records what it receives. Every wait has
 * a deadline; the broker dies with the test process (PR_SET_PDEATHSIG).
 */
#ifndef AERO_TEST_MQTT_SERVER_H
#define AERO_TEST_MQTT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct mqtt_server {
    pid_t pid;
    int port;        /* the listener clients use (TLS with mqtt_server_start_tls) */
    int plain_port;  /* mqtt_server_start_tls: a plain listener too, for subscribers */
    char dir[256];   /* scratch dir: mosquitto.conf, passwd, certs, mosquitto.log */
    char user[64];   /* "" when anonymous access is allowed */
    char ca_file[300]; /* mqtt_server_start_tls: the (self-signed) broker certificate */
};

/* Start mosquitto on 127.0.0.1:port (0: a free port). With user and
 * password, clients must log in (password_file, allow_anonymous false).
 * Waits up to 10 s; fails the test on error. */
void mqtt_server_start(struct mqtt_server *m, int port, const char *user,
                       const char *password);
/* Start mosquitto with a TLS listener on `port` (a self-signed certificate
 * for DNS name "localhost" only, made with the openssl tool into ca_file)
 * and a plain one on plain_port. Anonymous access. */
void mqtt_server_start_tls(struct mqtt_server *m);
/* Start it again on the same port and config (after mqtt_server_stop). */
void mqtt_server_restart(struct mqtt_server *m);
/* SIGKILL and reap (clients see the connection drop); no-op if not running. */
void mqtt_server_stop(struct mqtt_server *m);
/* SIGSTOP / SIGCONT: a broker that hangs with its sockets open. */
void mqtt_server_pause(struct mqtt_server *m);
void mqtt_server_resume(struct mqtt_server *m);
/* Stop it and remove the scratch directory. */
void mqtt_server_cleanup(struct mqtt_server *m);

/* A subscriber that records every message it receives. */
struct mqtt_server_sub;

/* Connect to the broker on port, subscribe to `filter` with QoS 1 and wait
 * for the SUBACK (10 s). user/password may be NULL. Fails the test on error. */
struct mqtt_server_sub *mqtt_server_sub_start(int port, const char *filter, const char *user,
                                const char *password);
/* Messages received so far. */
size_t mqtt_server_sub_count(struct mqtt_server_sub *s);
/* Wait (poll with deadline) until at least n messages arrived. */
bool mqtt_server_sub_wait(struct mqtt_server_sub *s, size_t n, int timeout_ms);
/* Message i (in arrival order): topic and payload, owned by s, valid until
 * mqtt_server_sub_stop. Payload is NUL-terminated for convenience. */
const char *mqtt_server_sub_topic(struct mqtt_server_sub *s, size_t i);
const char *mqtt_server_sub_payload(struct mqtt_server_sub *s, size_t i, size_t *len);
void mqtt_server_sub_stop(struct mqtt_server_sub *s);

#endif
