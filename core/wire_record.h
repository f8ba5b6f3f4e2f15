/*
 * wire_record.h - protobuf wire format read one record at a time, for the
 * places that look at request bytes beside protobuf-c: the NUL check of
 * rpc_unary.c, wire_prepare.c, and the command bytes the relay forwards as
 * they came (command_durable.c). The telemetry hot path has its own
 * reader in frame_codec.c.
 */
#ifndef AERO_WIRE_RECORD_H
#define AERO_WIRE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One field's record: tag, then the value. */
struct wire_record {
    const uint8_t *start;   /* the tag */
    const uint8_t *tag_end; /* past the tag */
    const uint8_t *body;    /* wire type 2: the payload */
    const uint8_t *end;     /* past the record */
    uint64_t len;           /* wire type 2: the payload's length */
    uint32_t field;
    unsigned wire;
};

/* The record at *p (before end), *p moved past it; false when it does not
 * parse: cut short, field 0, or a group (protobuf-c refuses those). */
bool wire_record_next(const uint8_t **p, const uint8_t *end, struct wire_record *r);

/* The payloads of every wire-type-2 record of `field` in [in, in+len), in
 * order, copied to out when not NULL (as large as the returned size);
 * their total size, -1 when the bytes do not parse. A message field sent
 * as several records reads as these bytes. */
ssize_t wire_gather(const uint8_t *in, size_t len, uint32_t field, uint8_t *out);

#endif
