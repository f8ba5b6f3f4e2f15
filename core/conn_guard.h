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
#include <stddef.h>
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

/*
 * While the relay is over its memory limit (mem_guard.h), new calls from
 * a peer with CONN_GUARD_SHED_MIN_CALLS or more calls open or opened in
 * the last two seconds are refused RESOURCE_EXHAUSTED at the door
 * (rpc_server.c asks, after conn_guard_call_opened counted the call). A
 * new agent (Register, then one stream) still gets in: measured, refusing
 * every new call kept 11 of 14 new agents out during a minute of rapid
 * reset against a 256 MiB limit. Any thread.
 */
void conn_guard_set_refusing(struct conn_guard *g, bool refusing);
bool conn_guard_refuses(struct conn_guard *g, const char *peer, int64_t now_ns);

/*
 * Shut down the connection costing the most memory now, for mem_guard:
 * the peer with the most calls open or opened in the last two seconds
 * (gRPC holds an arena per call, 11.6 kB and up), if it has at least
 * CONN_GUARD_SHED_MIN_CALLS (an agent holds one stream and makes a few
 * unary calls: never it); else the accepted socket with the most bytes
 * the kernel holds unread (gRPC reads and parses a flood faster than the
 * relay sees its calls, so its socket is the one still backed up), if
 * that is at least CONN_GUARD_SHED_MIN_UNREAD (measured: while a flood is
 * parsed, an idle client's socket can hold 2.7 kB unread; the flood's
 * 20 kB and more). Counted
 * reason="memory_limit". Returns 0 (by calls: *weight = their number), 1
 * (by unread bytes: *weight = bytes) with the peer in peer[0..cap), or -1
 * when there was nothing to shed. Any thread; scans descriptors.
 */
#define CONN_GUARD_SHED_MIN_CALLS 16
#define CONN_GUARD_SHED_MIN_UNREAD 16384
int conn_guard_shed_heaviest(struct conn_guard *g, int64_t now_ns, char *peer, size_t cap,
                             long *weight);

#endif
