/*
 * rpc_server.h - the gRPC server: one completion queue drained by up to
 * `workers` threads (the rest parked while the load does not need them),
 * registered methods each with calls requested ahead, unknown methods
 * answered UNIMPLEMENTED, and an orderly shutdown. Services plug in with
 * rpc_server_add_method before rpc_server_start.
 */
#ifndef AERO_RPC_SERVER_H
#define AERO_RPC_SERVER_H

#include "rpc_call.h"
#include <stdbool.h>
#include <stdint.h>

struct rpc_server;

enum rpc_method_kind { RPC_METHOD_UNARY, RPC_METHOD_STREAM };

/*
 * A new call arrived on a worker thread. Unary handlers must end with
 * rpc_unary_finish; stream handlers own the call (see rpc_call.h).
 */
typedef void (*rpc_handler)(struct rpc_call *call, void *service);

struct rpc_server_options {
    const char *listen;            /* "0.0.0.0:50051" */
    int workers;                   /* >= 1 */
    int64_t max_message_bytes;     /* GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH */
    int64_t max_streams_per_connection; /* HTTP/2 MAX_CONCURRENT_STREAMS; 0 = gRPC's default */
    int64_t keepalive_time_s;      /* server pings every ...; 0 = never */
    int64_t keepalive_timeout_s;   /* ... and drops the connection after this without an ack */
    int64_t handshake_timeout_s;   /* TLS + HTTP/2 preface of a new connection; 0 = gRPC's */
    const char *tls_cert_file, *tls_key_file, *tls_client_ca_file; /* "" = plain */
    /* Called by each worker after a burst of events, before it waits for
     * more: handlers may defer work to it (NULL: none). */
    void (*after_burst)(void *arg);
    void *after_burst_arg;
    struct metrics *metrics; /* for the workers' gauge (NULL: none) */
};

struct rpc_server *rpc_server_create(const struct rpc_server_options *opt, char *err,
                                     size_t errlen);
int rpc_server_add_method(struct rpc_server *s, const char *path, enum rpc_method_kind kind,
                          rpc_handler handler, void *service);
/* Bind, start the workers. Returns the bound port, or -1 with err filled. */
int rpc_server_start(struct rpc_server *s, char *err, size_t errlen);
/*
 * Stop accepting calls, give running calls `grace_ms` to finish (services
 * end their streams themselves when told to shut down), cancel the rest,
 * join the workers, destroy everything.
 */
void rpc_server_shutdown(struct rpc_server *s, int64_t grace_ms);

/*
 * On a worker, inside a handler that has work it could defer to
 * after_burst: true if it may (the worker was busy when this event came
 * and will call after_burst once it has taken what else is queued); false
 * if the event came alone, so the handler should do the work now.
 */
bool rpc_worker_defer(void);

#endif
