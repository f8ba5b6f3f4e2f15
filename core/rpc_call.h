/*
 * rpc_call.h - one gRPC server call and the operations the services start on
 * it. This file and rpc_server.c are the only ones that build grpc_op
 * batches; services see bytes, status codes and tags. Every completion
 * arrives on a completion-queue worker as rpc_tag->done(tag, ok).
 *
 * gRPC core rules kept here: at most one batch of each kind (recv message,
 * send message, status) in flight per call; a call is released only when
 * every batch started on it has completed (the caller counts them: each
 * rpc_call_* start that returns 0 owes exactly one done()).
 */
#ifndef AERO_RPC_CALL_H
#define AERO_RPC_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Status codes we use (values are gRPC's). */
enum rpc_code {
    RPC_OK = 0,
    RPC_CANCELLED = 1,
    RPC_INVALID_ARGUMENT = 3,
    RPC_DEADLINE_EXCEEDED = 4,
    RPC_NOT_FOUND = 5,
    RPC_ALREADY_EXISTS = 6,
    RPC_PERMISSION_DENIED = 7,
    RPC_RESOURCE_EXHAUSTED = 8,
    RPC_FAILED_PRECONDITION = 9,
    RPC_ABORTED = 10,
    RPC_UNIMPLEMENTED = 12,
    RPC_INTERNAL = 13,
    RPC_UNAVAILABLE = 14,
    RPC_DATA_LOSS = 15,
    RPC_UNAUTHENTICATED = 16
};

struct worker_ctx;

/* Embed in your object; the completion queue hands it back, with the
 * context of the worker that took the event. */
struct rpc_tag {
    void (*done)(struct rpc_tag *tag, bool ok, struct worker_ctx *w);
};

struct rpc_call; /* opaque */

/* Request metadata value for key (lower-case), or NULL; *len set. */
const char *rpc_call_metadata(const struct rpc_call *c, const char *key, size_t *len);
/* How many values the request metadata has for key (lower-case). */
size_t rpc_call_metadata_count(const struct rpc_call *c, const char *key);
/* Done reading the request metadata: free its index (about 600 bytes per
 * call, for the whole life of a stream). Values read before are invalid. */
void rpc_call_metadata_done(struct rpc_call *c);

/* Nanoseconds left until the caller's deadline (INT64_MAX: none). */
int64_t rpc_call_deadline_left_ns(const struct rpc_call *c);

/*
 * The PEM of the peer's certificate as the TLS handshake verified it (the
 * "x509_pem_cert" auth property), copied into a malloc'ed string; NULL
 * when the peer sent none (or the call is not over TLS).
 */
char *rpc_call_peer_cert_pem(const struct rpc_call *c);
/* The whole chain the peer sent (leaf first, then its intermediates), the
 * same way; NULL when none. */
char *rpc_call_peer_chain_pem(const struct rpc_call *c);

/* Unary: the request message bytes (NULL/0 if none), valid until finish. */
const uint8_t *rpc_call_request(struct rpc_call *c, size_t *len);

/*
 * Answer a call in one batch and release it: the response (unary; NULL for
 * none) and the status. Every unary call ends here exactly once; a stream
 * refused before it began ends here too.
 */
void rpc_call_finish(struct rpc_call *c, enum rpc_code code, const char *msg,
                      const uint8_t *resp, size_t resp_len);

/*
 * A unary call answered later (a command waiting for its agent): fn(arg,
 * cancelled) runs exactly once when the call is over, on a worker:
 * `cancelled` when the client went away or its deadline passed before
 * rpc_call_finish, false after it. The call stays valid until then, so fn
 * may race a finish and must tolerate it (arg must outlive fn's run).
 * Returns 0, or -1 when gRPC refused (fn will not run).
 */
int rpc_call_watch(struct rpc_call *c, void (*fn)(void *arg, bool cancelled), void *arg);

/*
 * The single batches a streaming call is driven with; rpc_stream.c is
 * their one user. rpc_call_begin: send initial metadata and watch for the
 * client's close or cancellation (close_tag completes when the call is
 * over; then rpc_call_was_cancelled tells how).
 */
int rpc_call_begin(struct rpc_call *c, struct rpc_tag *close_tag);
/* Read the next message; when tag completes, take it with rpc_call_message
 * (ok) and then, ok or not, rpc_call_message_release. */
int rpc_call_recv(struct rpc_call *c, struct rpc_tag *tag);
/*
 * After the recv tag completed with ok: the message bytes, valid until
 * rpc_call_message_release (next recv releases too). Returns NULL at the
 * end of the client's stream (half-close).
 */
const uint8_t *rpc_call_message(struct rpc_call *c, size_t *len);
void rpc_call_message_release(struct rpc_call *c);
/* Send one message (copied). `more`: another follows at once, so gRPC may
 * hold this one back and write both together (GRPC_WRITE_BUFFER_HINT);
 * the last of a run must go with more = false, which writes them all.
 * When tag completes, call rpc_call_send_done before the next send. */
int rpc_call_send(struct rpc_call *c, const uint8_t *msg, size_t len, bool more,
                  struct rpc_tag *tag);
/* The send batch completed: free the buffer gRPC has finished with. */
void rpc_call_send_done(struct rpc_call *c);
/* Send the final status. */
int rpc_call_status(struct rpc_call *c, enum rpc_code code, const char *msg,
                    struct rpc_tag *tag);
/* End the call now with this status (any thread, any time; idempotent enough:
 * later calls are ignored by gRPC). Outstanding batches then fail. */
void rpc_call_cancel(struct rpc_call *c, enum rpc_code code, const char *msg);
bool rpc_call_was_cancelled(const struct rpc_call *c);
/* Release a streaming call: every batch started on it must have completed. */
void rpc_call_free(struct rpc_call *c);

/* Short name of a code ("INVALID_ARGUMENT"), for logs. */
const char *rpc_call_code_name(enum rpc_code code);

#endif
