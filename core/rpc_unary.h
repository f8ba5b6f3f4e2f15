/*
 * rpc_unary.h - the one way a unary method is served: the request arrives
 * with the call, is unpacked with the method's descriptor (one that does
 * not unpack is answered INVALID_ARGUMENT "malformed <Message>" here, and
 * so is one with a NUL byte in any string field, nested ones included:
 * protobuf-c would hand it over cut at the NUL, so a handler's strlen is
 * always the length received), is
 * handed to the method's handler, and is freed when the handler returns.
 * Methods are added with rpc_server_add_unary (rpc_server.h).
 */
#ifndef AERO_RPC_UNARY_H
#define AERO_RPC_UNARY_H

#include "metrics.h"
#include "rpc_call.h"

#include <protobuf-c/protobuf-c.h>

struct worker_ctx;

/*
 * Answer the call: rpc_unary_reply on success, rpc_call_finish with a code
 * otherwise, exactly once, now or later from any thread (a call answered
 * later keeps only what it copied: `req` is freed when the handler returns).
 */
typedef void (*rpc_unary_handler)(struct rpc_call *call, const ProtobufCMessage *req,
                                  void *service, struct worker_ctx *w);

/*
 * A method whose SPEC answers a request that does not unpack with its own
 * code and text, after its own checks (SPEC.md 12.7: the control
 * authentication comes first): the handler gets req == NULL for it
 * (counted as malformed all the same) and answers it.
 */
#define RPC_UNARY_OWN_MALFORMED 1u

/* rpc_server.c: a new call of a unary method; `malformed` (may be NULL)
 * counts requests that did not unpack or held a NUL in a string. */
void rpc_unary_serve(struct rpc_call *call, const ProtobufCMessageDescriptor *desc,
                     rpc_unary_handler handler, void *service, aero_metric *malformed,
                     unsigned flags, struct worker_ctx *w);

/* The unpacking rpc_unary_serve does, for a request that arrives another
 * way (a server-streaming method's one message): NULL when it does not
 * unpack or a string holds a NUL (*cut: that field's name, else NULL). */
ProtobufCMessage *rpc_unary_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *bytes,
                                   size_t len, const char **cut);

/* Pack `resp` and answer the call with it and OK. */
void rpc_unary_reply(struct rpc_call *call, const ProtobufCMessage *resp);

#endif
