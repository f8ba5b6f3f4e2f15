/*
 * wire_prepare.h - bytes of a unary request, or of a command result on an
 * agent stream, rewritten where protobuf-c would read them otherwise than
 * protobuf (Go's protobuf, which the API, the agents and upstream use)
 * does, so that protobuf-c reads them the same:
 *
 *  - A singular message field sent as several records is read as their
 *    merge (SPEC.md 12.7 reading 6), the same as reading their payloads
 *    concatenated. protobuf-c merges too, but its merge (libprotobuf-c
 *    1.4) loses every proto3 scalar of an earlier record once a later one
 *    exists: a DurableCommand sent as two records would read with
 *    definition_version 0. The records are joined into one.
 *  - A known field number with the wrong wire type is an unknown field to
 *    Go (SPEC.md 14.3 rule 1 counts it so); protobuf-c refuses the whole
 *    message. The record is renumbered to a number its message does not
 *    use, so protobuf-c keeps it among that message's unknown fields.
 */
#ifndef AERO_WIRE_PREPARE_H
#define AERO_WIRE_PREPARE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/*
 * 1: *out (malloc'ed, *out_len bytes) holds the rewritten bytes: each
 * singular message field once, where its last record was, its payload
 * the records' payloads in order; each wrong-wire-type record renumbered;
 * every other record as it came, at every depth. 0: nothing to rewrite,
 * read `in` as it is. -1: `in` does not parse as wire format (protobuf-c
 * will refuse it) or no memory (read `in`).
 */
int wire_prepare(const ProtobufCMessageDescriptor *desc, const uint8_t *in, size_t len,
                 uint8_t **out, size_t *out_len);

/* `in` unpacked as Go's protobuf reads it: through wire_prepare when it
 * rewrites anything (`in` itself is left as it is, to be forwarded or
 * compared byte for byte). NULL when it does not decode. */
ProtobufCMessage *wire_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *in,
                              size_t len);

#endif
