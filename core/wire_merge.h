/*
 * wire_merge.h - protobuf wire bytes rewritten so that every singular
 * message field occurs once, at any depth, before protobuf-c reads them.
 *
 * Protobuf reads a singular message field that occurs more than once as
 * its records merged (SPEC.md 12.7 reading 6), which is the same as
 * reading their payloads concatenated. protobuf-c merges too, but its
 * merge (libprotobuf-c 1.4) loses every proto3 scalar of an earlier
 * record once a later one exists: a DurableCommand sent as two records
 * would read with definition_version 0. Concatenating on the wire first
 * leaves protobuf-c nothing to merge.
 */
#ifndef AERO_WIRE_MERGE_H
#define AERO_WIRE_MERGE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/*
 * 1: *out (malloc'ed, *out_len bytes, never more than len) holds the
 * bytes with each singular message field once, where its last record
 * was, its payload the records' payloads in order (and so on inside);
 * every other field as it came. 0: nothing occurs twice, read `in` as it
 * is. -1: `in` does not parse as wire format (protobuf-c will refuse it)
 * or no memory (read `in`: the old merge is all there is).
 */
int wire_merge(const ProtobufCMessageDescriptor *desc, const uint8_t *in, size_t len,
               uint8_t **out, size_t *out_len);

#endif
