/*
 * wire_record.c - one protobuf wire record at a time (wire_record.h).
 * Any thread; no state.
 */
#include "wire_record.h"

#include <string.h>

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
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

bool wire_record_next(const uint8_t **p, const uint8_t *end, struct wire_record *r)
{
    uint64_t tag, v;
    r->start = *p;
    if (!varint(p, end, &tag) || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
        return false;
    r->tag_end = *p;
    r->field = (uint32_t)(tag >> 3);
    r->wire = (unsigned)(tag & 7);
    r->body = NULL;
    r->len = 0;
    size_t skip = 0;
    switch (r->wire) {
    case 0:
        if (!varint(p, end, &v))
            return false;
        break;
    case 1:
        skip = 8;
        break;
    case 5:
        skip = 4;
        break;
    case 2:
        if (!varint(p, end, &r->len) || r->len > (uint64_t)(end - *p))
            return false;
        r->body = *p;
        skip = (size_t)r->len;
        break;
    default:
        return false;
    }
    if (skip > (size_t)(end - *p))
        return false;
    *p += skip;
    r->end = *p;
    return true;
}

ssize_t wire_gather(const uint8_t *in, size_t len, uint32_t field, uint8_t *out)
{
    const uint8_t *p = in, *end = in + len;
    size_t total = 0;
    struct wire_record r;
    while (p < end) {
        if (!wire_record_next(&p, end, &r))
            return -1;
        if (r.field != field || r.wire != 2)
            continue;
        if (out)
            memcpy(out + total, r.body, (size_t)r.len);
        total += (size_t)r.len;
    }
    return (ssize_t)total;
}
