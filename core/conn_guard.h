/*
 * conn_guard.h - closes a client connection that opens calls faster than
 * any agent does (HTTP/2 rapid reset, CVE-2023-44487; a stream flood sent
 * before ACKing SETTINGS). gRPC 1.51 makes a call for every HEADERS frame
 * with no bound of its own, and its C API has no handle on a connection:
 * the guard counts new calls per peer address (grpc_call_get_peer), and
 * past the limit finds that peer's socket among the process's descriptors
 * and shuts it down, so gRPC closes the transport and frees its calls.
 * Any worker thread.
 */
#ifndef AERO_CONN_GUARD_H
#define AERO_CONN_GUARD_H

#include <stdbool.h>
#include <stdint.h>

struct conn_guard;
struct metrics;

/* max_calls_per_s: new calls one connection may open in a second;
 * listen_port: the gRPC port (only sockets accepted on it are closed). */
struct conn_guard *conn_guard_create(int64_t max_calls_per_s, int listen_port,
                                     struct metrics *metrics);
void conn_guard_destroy(struct conn_guard *g);

/* A new call from `peer` (gRPC's "ipv4:1.2.3.4:5678" / "ipv6:[::1]:5678").
 * Returns true when this call put the peer over the limit and its
 * connection was shut down (counted and logged). */
bool conn_guard_new_call(struct conn_guard *g, const char *peer, int64_t now_ns);

#endif
