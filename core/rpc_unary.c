/*
 * rpc_unary.c - unpack, refuse what does not unpack, hand over, free; and
 * the packed OK answer. Any worker thread.
 */
#include "rpc_unary.h"

#include <stdio.h>
#include <stdlib.h>

void rpc_unary_serve(struct rpc_call *call, const ProtobufCMessageDescriptor *desc,
                     rpc_unary_handler handler, void *service, aero_metric *malformed,
                     struct worker_ctx *w)
{
    size_t len;
    const uint8_t *bytes = rpc_call_request(call, &len);
    ProtobufCMessage *req = protobuf_c_message_unpack(desc, NULL, len, bytes);
    if (!req) {
        metrics_inc(malformed);
        char msg[96];
        snprintf(msg, sizeof(msg), "malformed %s", desc->short_name);
        rpc_call_finish(call, RPC_INVALID_ARGUMENT, msg, NULL, 0);
        return;
    }
    handler(call, req, service, w);
    protobuf_c_message_free_unpacked(req, NULL);
}

void rpc_unary_reply(struct rpc_call *call, const ProtobufCMessage *resp)
{
    size_t n = protobuf_c_message_get_packed_size(resp);
    uint8_t small[256];
    uint8_t *out = n <= sizeof(small) ? small : malloc(n);
    if (!out) {
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "relay out of memory", NULL, 0);
        return;
    }
    protobuf_c_message_pack(resp, out);
    rpc_call_finish(call, RPC_OK, NULL, out, n);
    if (out != small)
        free(out);
}
