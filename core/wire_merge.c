/*
 * wire_merge.c - a singular message field's records concatenated into one
 * on the wire, at every depth, so protobuf-c never merges (wire_merge.h
 * says why). Any thread; no state.
 */
#include "wire_merge.h"

#include "wire_record.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* As deep as rpc_unary's NUL check looks; deeper records go as they are. */
#define MAX_DEPTH 16

/* The message field r is in desc, NULL when it is something else. */
static const ProtobufCFieldDescriptor *message_field(const ProtobufCMessageDescriptor *desc,
                                                     const struct wire_record *r)
{
    if (r->wire != 2)
        return NULL;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(desc, r->field);
    return f && f->type == PROTOBUF_C_TYPE_MESSAGE ? f : NULL;
}

/* 1: a singular message field occurs twice somewhere; 0: nowhere; -1:
 * the bytes do not parse. */
static int needs_merge(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                       unsigned depth)
{
    if (depth >= MAX_DEPTH)
        return 0;
    const uint8_t *end = p + len;
    uint8_t seen[desc->n_fields + 1];
    memset(seen, 0, sizeof(seen));
    struct wire_record r;
    while (p < end) {
        if (!wire_record_next(&p, end, &r))
            return -1;
        const ProtobufCFieldDescriptor *f = message_field(desc, &r);
        if (!f)
            continue;
        if (f->label != PROTOBUF_C_LABEL_REPEATED && seen[f - desc->fields]++)
            return 1;
        int in = needs_merge(f->descriptor, r.body, (size_t)r.len, depth + 1);
        if (in)
            return in;
    }
    return 0;
}

struct out {
    uint8_t *p;
    size_t n, cap;
};

static bool put(struct out *o, const void *src, size_t n)
{
    if (n > o->cap - o->n)
        return false; /* cannot happen: merging never grows (wire_merge.h) */
    memcpy(o->p + o->n, src, n);
    o->n += n;
    return true;
}

static bool put_varint(struct out *o, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;
    do {
        b[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return put(o, b, n);
}

static ssize_t merge_into(const ProtobufCMessageDescriptor *desc, const uint8_t *in, size_t len,
                          uint8_t *out, size_t cap, unsigned depth);

/* r's tag, then `body` merged as a desc message, as one record. */
static bool put_merged(struct out *o, const struct wire_record *r, const ProtobufCMessageDescriptor *desc,
                       const uint8_t *body, size_t len, unsigned depth)
{
    uint8_t *sub = malloc(len ? len : 1);
    ssize_t n = sub ? merge_into(desc, body, len, sub, len, depth + 1) : -1;
    bool ok = n >= 0 && put(o, r->start, (size_t)(r->tag_end - r->start)) &&
              put_varint(o, (uint64_t)n) && put(o, sub, (size_t)n);
    free(sub);
    return ok;
}

/* in (a desc message) merged into out (cap bytes); its size, -1. */
static ssize_t merge_into(const ProtobufCMessageDescriptor *desc, const uint8_t *in, size_t len,
                          uint8_t *out, size_t cap, unsigned depth)
{
    struct out o = {out, 0, cap};
    if (depth >= MAX_DEPTH)
        return put(&o, in, len) ? (ssize_t)len : -1;
    const uint8_t *end = in + len, *p = in;
    /* Pass 1: where each singular message field's last record is, and how
     * long its payloads are together. */
    const uint8_t *last[desc->n_fields + 1];
    size_t total[desc->n_fields + 1];
    memset(last, 0, sizeof(last));
    memset(total, 0, sizeof(total));
    struct wire_record r;
    while (p < end) {
        if (!wire_record_next(&p, end, &r))
            return -1;
        const ProtobufCFieldDescriptor *f = message_field(desc, &r);
        if (f && f->label != PROTOBUF_C_LABEL_REPEATED) {
            last[f - desc->fields] = r.start;
            total[f - desc->fields] += (size_t)r.len;
        }
    }
    /* Pass 2: every record in order; a singular message field once, at
     * its last record's place; message payloads merged inside too. */
    for (p = in; p < end;) {
        if (!wire_record_next(&p, end, &r))
            return -1;
        const ProtobufCFieldDescriptor *f = message_field(desc, &r);
        bool ok;
        if (!f) {
            ok = put(&o, r.start, (size_t)(r.end - r.start));
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            ok = put_merged(&o, &r, f->descriptor, r.body, (size_t)r.len, depth);
        } else if (r.start != last[f - desc->fields]) {
            ok = true; /* goes with the last one */
        } else {
            size_t n = total[f - desc->fields];
            uint8_t *cat = malloc(n ? n : 1);
            ok = cat && wire_gather(in, len, r.field, cat) == (ssize_t)n &&
                 put_merged(&o, &r, f->descriptor, cat, n, depth);
            free(cat);
        }
        if (!ok)
            return -1;
    }
    return (ssize_t)o.n;
}

int wire_merge(const ProtobufCMessageDescriptor *desc, const uint8_t *in, size_t len,
               uint8_t **out, size_t *out_len)
{
    int need = needs_merge(desc, in, len, 0);
    if (need <= 0)
        return need;
    uint8_t *buf = malloc(len);
    ssize_t n = buf ? merge_into(desc, in, len, buf, len, 0) : -1;
    if (n < 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = (size_t)n;
    return 1;
}
