/*
 * conn_guard.h - closes a client connection that abuses HTTP/2 in ways no
 * agent or API client does: thousands of streams reset in a second (rapid
 * reset, CVE-2023-44487), or more calls open at once than the advertised
 * SETTINGS_MAX_CONCURRENT_STREAMS allows (a stream flood sent before
 * ACKing SETTINGS). gRPC 1.51 makes a call for every HEADERS frame with no
 * bound of its own, and its C API has no handle on a connection: the guard
 * counts per peer address (grpc_call_get_peer) the calls open now and the
 * calls that failed this second (cancelled by the client, or refused at
 * the door: no agent header, no session, unknown method), and past a bound
 * finds that
 * peer's socket among the process's descriptors and shuts it down, so gRPC
 * closes the transport and frees its calls. Calls that succeed never
 * count: a client making many short calls on one connection (an API
 * polling status, a test registering 100,000 agents) is never cut; one
 * refused thousands of times a second is broken or hostile. The flood
 * sent before ACKing SETTINGS shows as refusals: gRPC 1.51 queues its
 * calls without bound and the relay refuses each (no agent, no session).
 * Any thread.
 */
#ifndef AERO_CONN_GUARD_H
#define AERO_CONN_GUARD_H

#include <stdbool.h>
#include <stdint.h>

struct conn_guard;
struct metrics;

/* max_streams: the server's max_streams_per_connection; listen_port: the
 * gRPC port (only sockets accepted on it are closed). */
struct conn_guard *conn_guard_create(int64_t max_streams, int listen_port,
                                     struct metrics *metrics);
/* Calls outlive the server that counted them (a stream's last reference
 * may go after shutdown): each holds a reference. */
struct conn_guard *conn_guard_ref(struct conn_guard *g);
void conn_guard_unref(struct conn_guard *g);

/* A new call from `peer` (gRPC's "ipv4:1.2.3.4:5678" / "ipv6:[::1]:5678").
 * Returns true when it put the peer over a bound and its connection was
 * shut down (counted and logged). */
bool conn_guard_call_opened(struct conn_guard *g, const char *peer, int64_t now_ns);
/* That call ended; `failed`: cancelled by the client (RST_STREAM) or its
 * transport, or refused by the relay. */
void conn_guard_call_closed(struct conn_guard *g, const char *peer, bool failed,
                            int64_t now_ns);

#endif
