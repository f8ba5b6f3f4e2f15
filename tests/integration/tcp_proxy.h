/*
 * tcp_proxy.h - a loopback TCP proxy for fault tests: one thread accepts
 * clients on a free port and copies bytes both ways to the relay. It can
 * freeze (stop copying, keep every socket open: a link that died without a
 * FIN or RST, as a drone's radio link does) or cut (close every connection
 * with an RST: a peer that vanished). Not thread-safe beyond the calls
 * below; the test thread drives it.
 */
#ifndef AERO_TEST_TCP_PROXY_H
#define AERO_TEST_TCP_PROXY_H

#include <stdbool.h>

struct tcp_proxy;

/* Start a proxy to 127.0.0.1:upstream_port. Fails the test on error. */
struct tcp_proxy *tcp_proxy_start(int upstream_port);
/* "127.0.0.1:<port>" the clients connect to. */
const char *tcp_proxy_target(const struct tcp_proxy *p);
/* Connections accepted so far. */
int tcp_proxy_accepted(struct tcp_proxy *p);
/* Stop copying in both directions; sockets stay open, unread. */
void tcp_proxy_freeze(struct tcp_proxy *p);
/* Close every connection at once with an RST (SO_LINGER 0). */
void tcp_proxy_cut(struct tcp_proxy *p);
/* Stop the thread and close everything. NULL is fine. */
void tcp_proxy_stop(struct tcp_proxy *p);

#endif
