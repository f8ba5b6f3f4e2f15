/*
 * rpc_unary.c - unpack, refuse what does not unpack (or unpacks cut short: a
 * string with a NUL byte), hand over, free; and the packed OK answer. Any
 * worker thread.
 */
#include "rpc_unary.h"

#include "wire_prepare.h"
#include "wire_record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The name of the first string field (of desc, or of a message nested in
 * it) whose bytes on the wire hold a NUL; "" when the wire does not parse
 * (cannot happen after a successful unpack); NULL when there is none.
 * protobuf-c NUL-terminates strings, so such a field would reach the
 * handler cut short at the NUL: "victim\0x" would read as "victim". Every
 * length the services see is thus the length received.
 */
static const char *string_with_nul(const ProtobufCMessageDescriptor *desc, const uint8_t *p,
                                   size_t len, unsigned depth)
{
    const uint8_t *end = p + len;
    struct wire_record r;
    while (p < end) {
        if (!wire_record_next(&p, end, &r))
            return "";
        if (r.wire != 2)
            continue;
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(desc, r.field);
        if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(r.body, 0, (size_t)r.len))
            return f->name;
        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && depth < 16) {
            const char *bad = string_with_nul(f->descriptor, r.body, (size_t)r.len, depth + 1);
            if (bad)
                return bad;
        }
    }
    return NULL;
}

ProtobufCMessage *rpc_unary_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *bytes,
                                   size_t len, const char **cut)
{
    *cut = NULL;
    /* Read as Go's protobuf reads it (wire_prepare.h): records of one
     * message field merged, a wrong wire type an unknown field. */
    ProtobufCMessage *req = wire_unpack(desc, bytes, len);
    const char *bad = req ? string_with_nul(desc, bytes, len, 0) : NULL;
    if (!bad)
        return req;
    if (*bad)
        *cut = bad;
    protobuf_c_message_free_unpacked(req, NULL);
    return NULL;
}

void rpc_unary_serve(struct rpc_call *call, const ProtobufCMessageDescriptor *desc,
                     rpc_unary_handler handler, void *service, aero_metric *malformed,
                     unsigned flags, struct worker_ctx *w)
{
    size_t len;
    const uint8_t *bytes = rpc_call_request(call, &len);
    const char *cut = NULL;
    ProtobufCMessage *req = rpc_unary_unpack(desc, bytes, len, &cut);
    if (!req)
        metrics_inc(malformed);
    if (!req && (flags & RPC_UNARY_OWN_MALFORMED)) {
        handler(call, NULL, service, w);
        return;
    }
    if (!req) {
        char msg[160];
        if (cut)
            snprintf(msg, sizeof(msg), "malformed %s: %s holds a NUL byte", desc->short_name,
                     cut);
        else
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
