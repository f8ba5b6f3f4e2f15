/*
 * rpc_unary.c - unpack, refuse what does not unpack (or unpacks cut short: a
 * string with a NUL byte), hand over, free; and the packed OK answer. Any
 * worker thread.
 */
#include "rpc_unary.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A varint at *p (at most 10 bytes, before end); false when cut. */
static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

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
    while (p < end) {
        uint64_t tag, n;
        if (!wire_varint(&p, end, &tag))
            return "";
        switch (tag & 7) {
        case 0: /* varint */
            if (!wire_varint(&p, end, &n))
                return "";
            continue;
        case 1: /* fixed64 */
            n = 8;
            break;
        case 5: /* fixed32 */
            n = 4;
            break;
        case 2: { /* length-delimited */
            if (!wire_varint(&p, end, &n) || n > (uint64_t)(end - p))
                return "";
            const ProtobufCFieldDescriptor *f =
                tag >> 3 <= UINT32_MAX
                    ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3))
                    : NULL;
            const char *bad = NULL;
            if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, (size_t)n))
                bad = f->name;
            else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && depth < 16)
                bad = string_with_nul(f->descriptor, p, (size_t)n, depth + 1);
            if (bad)
                return bad;
            break;
        }
        default: /* groups: protobuf-c refuses them */
            return "";
        }
        if (n > (uint64_t)(end - p))
            return "";
        p += n;
    }
    return NULL;
}

ProtobufCMessage *rpc_unary_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *bytes,
                                   size_t len, const char **cut)
{
    *cut = NULL;
    ProtobufCMessage *req = protobuf_c_message_unpack(desc, NULL, len, bytes);
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
