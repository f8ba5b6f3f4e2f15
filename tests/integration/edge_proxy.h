/*
 * edge_proxy.h - HAProxy started from the shipped examples/edge/haproxy.cfg
 * in front of a test relay, as the edge deployment runs it: TLS on a free
 * loopback port, h2c to the relay on loopback. The file is adapted only in
 * its addresses, ports and certificate path (and, when not root, without
 * the privilege drop), so what is measured through it is what ships.
 * Shared by test_e2e_edge (the edge tests) and attack_soak (--edge), so
 * both run the same configuration. Test thread only; fails the test on
 * error.
 */
#ifndef AERO_TEST_EDGE_PROXY_H
#define AERO_TEST_EDGE_PROXY_H

#include "relay_client.h"

#include <stdbool.h>
#include <sys/types.h>

struct h2_raw;

struct edge_proxy {
    pid_t pid;          /* HAProxy, -1 when not running */
    int port;           /* its TLS port on 127.0.0.1 */
    char target[64];    /* "127.0.0.1:<port>" */
    char cert_path[300];/* its certificate and key; also the agents' root */
    char log_path[300]; /* its stderr: start-up errors and the request log */
};

/* Make a self-signed certificate for "localhost" (EC P-256) in dir, then
 * start HAProxy on the shipped file forwarding to relay_target; `more`
 * holds further (from, to) substitutions, NULL-terminated (NULL: none).
 * Returns once a Health/Check through it to the relay answers SERVING. */
void edge_start(struct edge_proxy *e, const char *dir, const char *relay_target,
                const char *const *more);
/* SIGTERM, reaped within 5 s (else SIGKILL). No-op when not running. */
void edge_stop(struct edge_proxy *e);

/* What an agent connects to HAProxy with: TLS, its certificate as the root
 * (it is its own CA); keepalive_ms 0: gRPC's default. Points into e. */
struct rc_opts edge_agent_opts(const struct edge_proxy *e, int keepalive_ms);
/* A channel made with those (fails the test when it cannot be made). */
struct rc_channel *edge_channel(const struct edge_proxy *e, int keepalive_ms);

/* A TCP connection to 127.0.0.1:port from source (an address of the
 * loopback net, e.g. "127.0.0.2", so that HAProxy's per-source limits see
 * an attacker apart from the agents; NULL: the kernel's choice), nothing
 * sent: the fd, or -1 when refused. */
int edge_tcp_connect(int port, const char *source);
/* An HTTP/2 connection from source to port: over TLS (ALPN h2, the
 * certificate not checked: this is the attacker) when tls, else plain.
 * NULL when the connect or the handshake is refused (HAProxy rejecting
 * the source at accept). */
struct h2_raw *edge_h2_connect(int port, bool tls, const char *source);

/* Lines of HAProxy's log with both a and b (its request log: one line per
 * call, " relay/relay " when it went to the relay). */
int edge_log_count(const struct edge_proxy *e, const char *a, const char *b);

#endif
