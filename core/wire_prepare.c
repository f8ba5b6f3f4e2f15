/*
 * wire_prepare.c - request bytes made to read under protobuf-c as they do
 * under Go's protobuf (wire_prepare.h says where they differ). Any
 * thread; no state.
 */
#include "wire_prepare.h"

#include "wire_record.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* As deep as rpc_unary's NUL check looks; deeper records go as they are. */
#define MAX_DEPTH 16

/* Whether a record of wire type `wire` is field f as protobuf reads it
 * (a repeated number may also come packed, as one length-delimited). */
static bool wire_fits(const ProtobufCFieldDescriptor *f, unsigned wire)
{
    unsigned want;
    switch (f->type) {
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        want = 1;
        break;
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        want = 5;
        break;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        want = 2;
        break;
    default: /* the varints: int32/64, sint32/64, uint32/64, bool, enum */
        want = 0;
        break;
    }
    return wire == want || (wire == 2 && f->label == PROTOBUF_C_LABEL_REPEATED);
}

/* What record r is to desc. */
enum kind {
    AS_IS,     /* unknown, or a known field that is not a message: copied */
    RENUMBER,  /* a known number, the wrong wire type: an unknown field */
    MESSAGE,   /* a singular message field: joined with its other records */
    REPEATED,  /* one element of a repeated message field */
};

static enum kind kind_of(const ProtobufCMessageDescriptor *desc, const struct wire_record *r,
                         const ProtobufCFieldDescriptor **f)
{
    *f = protobuf_c_message_descriptor_get_field(desc, r->field);
    if (!*f)
        return AS_IS;
    if (!wire_fits(*f, r->wire))
        return RENUMBER;
    if ((*f)->type != PROTOBUF_C_TYPE_MESSAGE)
        return AS_IS;
    return (*f)->label == PROTOBUF_C_LABEL_REPEATED ? REPEATED : MESSAGE;
}

/* 1: something to rewrite somewhere; 0: nothing; -1: the bytes do not
 * parse. */
static int needs_rewrite(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
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
        const ProtobufCFieldDescriptor *f;
        enum kind k = kind_of(desc, &r, &f);
        if (k == RENUMBER || (k == MESSAGE && seen[f - desc->fields]++))
            return 1;
        if (k == MESSAGE || k == REPEATED) {
            int in = needs_rewrite(f->descriptor, r.body, (size_t)r.len, depth + 1);
            if (in)
                return in;
        }
    }
    return 0;
}

/* The smallest field number desc does not use: where a wrong-wire-type
 * record goes (its tag stays short). */
static uint32_t spare_number(const ProtobufCMessageDescriptor *desc)
{
    uint32_t n = 1;
    while (protobuf_c_message_descriptor_get_field(desc, n))
        n++;
    return n;
}

struct out {
    uint8_t *p;
    size_t n, cap;
};

static bool put(struct out *o, const void *src, size_t n)
{
    if (n > o->cap - o->n)
        return false; /* cannot happen: wire_prepare sizes out for the worst */
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

/* More than a rewrite of len bytes can take: a renumbered tag grows by
 * at most 4 bytes and a record is at least 2 (x3), a message's length
 * prefix by a byte when its payload grows past a power of 128; joining
 * never grows. */
static size_t worst(size_t len) { return 4 * len + 64; }

static ssize_t rewrite(const ProtobufCMessageDescriptor *desc, const uint8_t *in, size_t len,
                       uint8_t *out, size_t cap, unsigned depth);

/* r's tag, then `body` rewritten as a desc message, as one record. */
static bool put_rewritten(struct out *o, const struct wire_record *r,
                          const ProtobufCMessageDescriptor *desc, const uint8_t *body, size_t len,
                          unsigned depth)
{
    uint8_t *sub = malloc(worst(len));
    ssize_t n = sub ? rewrite(desc, body, len, sub, worst(len), depth + 1) : -1;
    bool ok = n >= 0 && put(o, r->start, (size_t)(r->tag_end - r->start)) &&
              put_varint(o, (uint64_t)n) && put(o, sub, (size_t)n);
    free(sub);
    return ok;
}

/* in (a desc message) rewritten into out (cap bytes); its size, -1. */
static ssize_t rewrite(const ProtobufCMessageDescriptor *desc, const uint8_t *in, size_t len,
                       uint8_t *out, size_t cap, unsigned depth)
{
    struct out o = {out, 0, cap};
    if (depth >= MAX_DEPTH)
        return put(&o, in, len) ? (ssize_t)len : -1;
    const uint8_t *end = in + len, *p = in;
    /* Pass 1: where each singular message field's last record is, and how
     * long its payloads are together. A record of a oneof member clears
     * the oneof (Go's protobuf): the other members' records before it do
     * not count (`from`: where a field's counted records start). */
    const uint8_t *last[desc->n_fields + 1], *from[desc->n_fields + 1];
    size_t total[desc->n_fields + 1];
    memset(last, 0, sizeof(last));
    memset(total, 0, sizeof(total));
    for (unsigned i = 0; i <= desc->n_fields; i++)
        from[i] = in;
    struct wire_record r;
    const ProtobufCFieldDescriptor *f;
    while (p < end) {
        if (!wire_record_next(&p, end, &r))
            return -1;
        enum kind k = kind_of(desc, &r, &f);
        if (k != RENUMBER && f && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            for (unsigned i = 0; i < desc->n_fields; i++) {
                const ProtobufCFieldDescriptor *g = &desc->fields[i];
                if (g != f && (g->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                    g->quantifier_offset == f->quantifier_offset) {
                    from[i] = r.start;
                    total[i] = 0;
                }
            }
        if (k == MESSAGE) {
            last[f - desc->fields] = r.start;
            total[f - desc->fields] += (size_t)r.len;
        }
    }
    /* Pass 2: every record in order. */
    uint32_t spare = 0;
    for (p = in; p < end;) {
        if (!wire_record_next(&p, end, &r))
            return -1;
        bool ok = true;
        switch (kind_of(desc, &r, &f)) {
        case AS_IS:
            ok = put(&o, r.start, (size_t)(r.end - r.start));
            break;
        case RENUMBER:
            if (!spare)
                spare = spare_number(desc);
            ok = put_varint(&o, (uint64_t)spare << 3 | r.wire) &&
                 put(&o, r.tag_end, (size_t)(r.end - r.tag_end));
            break;
        case REPEATED:
            ok = put_rewritten(&o, &r, f->descriptor, r.body, (size_t)r.len, depth);
            break;
        case MESSAGE: {
            size_t i = (size_t)(f - desc->fields);
            /* With its last record: the records since the last one of
             * another member of its oneof. A member such a record came
             * after entirely is gone (Go clears the oneof), so dropped. */
            if (r.start != last[i] || from[i] > last[i])
                break;
            size_t n = total[i];
            uint8_t *cat = malloc(n ? n : 1);
            ok = cat && wire_gather(from[i], (size_t)(end - from[i]), r.field, cat) == (ssize_t)n &&
                 put_rewritten(&o, &r, f->descriptor, cat, n, depth);
            free(cat);
            break;
        }
        }
        if (!ok)
            return -1;
    }
    return (ssize_t)o.n;
}

int wire_prepare(const ProtobufCMessageDescriptor *desc, const uint8_t *in, size_t len,
                 uint8_t **out, size_t *out_len)
{
    int need = needs_rewrite(desc, in, len, 0);
    if (need <= 0)
        return need;
    uint8_t *buf = malloc(worst(len));
    ssize_t n = buf ? rewrite(desc, in, len, buf, worst(len), 0) : -1;
    if (n < 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = (size_t)n;
    return 1;
}

ProtobufCMessage *wire_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *in,
                              size_t len)
{
    uint8_t *prepared = NULL;
    size_t prepared_len = 0;
    ProtobufCMessage *m = wire_prepare(desc, in, len, &prepared, &prepared_len) == 1
                              ? protobuf_c_message_unpack(desc, NULL, prepared_len, prepared)
                              : protobuf_c_message_unpack(desc, NULL, len, in);
    free(prepared);
    return m;
}
