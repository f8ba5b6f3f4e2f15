/*
 * rpc_server.h - the gRPC server: one completion queue drained by up to
 * `workers` threads (the rest parked while the load does not need them),
 * registered methods each with calls requested ahead, unknown methods
 * answered UNIMPLEMENTED, and an orderly shutdown. Services plug in with
 * rpc_server_add_unary / rpc_server_add_stream before rpc_server_start.
 * Each worker has a worker_ctx, passed to every handler and completion it
 * runs (worker_ctx.h).
 */
#ifndef AERO_RPC_SERVER_H
#define AERO_RPC_SERVER_H

#include "rpc_call.h"
#include "rpc_unary.h"
#include <stdbool.h>
#include <stdint.h>

struct rpc_server;

/* A new call of a streaming method arrived on a worker thread: the handler
 * owns the call (rpc_stream.h takes it over, or rpc_call_finish refuses it). */
typedef void (*rpc_stream_handler)(struct rpc_call *call, void *service, struct worker_ctx *w);

struct rpc_server_options {
    const char *listen;            /* "0.0.0.0:50051" */
    int workers;                   /* >= 1 */
    int64_t max_message_bytes;     /* GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH */
    int64_t max_streams_per_connection; /* HTTP/2 MAX_CONCURRENT_STREAMS; 0 = gRPC's default */
    int64_t keepalive_time_s;      /* server pings every ...; 0 = never */
    int64_t keepalive_timeout_s;   /* ... and drops the connection after this without an ack */
    int64_t handshake_timeout_s;   /* TLS + HTTP/2 preface of a new connection; 0 = gRPC's */
    const char *tls_cert_file, *tls_key_file, *tls_client_ca_file; /* "" = plain */
    /* [control] client_ca_file: with TLS, a client certificate is requested
     * and verified if given (against both CAs); "" / NULL: not requested. */
    const char *control_client_ca_file;
    /* Called by each worker after a burst of events in which a handler
     * deferred work (worker_ctx_defer), before it waits for more. */
    void (*after_burst)(void *arg, struct worker_ctx *w);
    void *after_burst_arg;
    struct metrics *metrics; /* for the workers' gauge (NULL: none) */
};

struct rpc_server *rpc_server_create(const struct rpc_server_options *opt, char *err,
                                     size_t errlen);
/* A unary method: rpc_unary.h says how its calls are served. */
int rpc_server_add_unary(struct rpc_server *s, const char *path,
                         const ProtobufCMessageDescriptor *request, rpc_unary_handler handler,
                         void *service);
/* The same with RPC_UNARY_* flags (rpc_unary.h). */
int rpc_server_add_unary_flags(struct rpc_server *s, const char *path,
                               const ProtobufCMessageDescriptor *request,
                               rpc_unary_handler handler, void *service, unsigned flags);
int rpc_server_add_stream(struct rpc_server *s, const char *path, rpc_stream_handler handler,
                          void *service);
/* A reload: the next TLS handshakes read [tls]'s certificate, key and the
 * client CA files again (connections already open keep theirs). */
void rpc_server_tls_reload(struct rpc_server *s);
/* Bind, start the workers. Returns the bound port, or -1 with err filled. */
int rpc_server_start(struct rpc_server *s, char *err, size_t errlen);
/* The guard counting calls per connection (conn_guard.h); NULL before
 * rpc_server_start. Owned by the server: valid until rpc_server_shutdown. */
struct conn_guard *rpc_server_conn_guard(const struct rpc_server *s);
/*
 * The listener's accept loop gave up (gRPC logged "Failed accept4", most
 * likely out of file descriptors): no new connection is accepted until
 * rpc_server_listener_restart succeeds. Any thread.
 */
bool rpc_server_listener_failed(const struct rpc_server *s);
/*
 * How far behind the workers may be with the completion queue (see
 * worker_gate_lag_ns): every call that arrived before now - lag has been
 * handed to its handler. 0 before rpc_server_start. Any thread.
 */
int64_t rpc_server_lag_ns(struct rpc_server *s);
/*
 * Start a new listener on the same address (a new grpc_server sharing the
 * workers and methods); the old one is shut down: its listener closed,
 * GOAWAY sent, its open calls served to their end. Main thread, after
 * rpc_server_start. 0 when the new listener accepts; -1 with err filled
 * (no descriptor for it yet, the port still held: try again later).
 */
int rpc_server_listener_restart(struct rpc_server *s, char *err, size_t errlen);
/*
 * Stop accepting calls, give running calls `grace_ms` to finish (services
 * end their streams themselves when told to shut down), cancel the rest,
 * join the workers, destroy everything.
 */
void rpc_server_shutdown(struct rpc_server *s, int64_t grace_ms);

#endif
