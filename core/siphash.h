/*
 * siphash.h - SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast
 * short-input PRF", 2012): a keyed 64-bit hash. With a secret random key,
 * inputs cannot be chosen to collide, so hash tables keyed by what clients
 * send (agent ids) keep their expected cost. Pure, any thread.
 */
#ifndef AERO_SIPHASH_H
#define AERO_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define SIPHASH_KEY_BYTES 16

/* SipHash-2-4 of the len bytes at data under the 16-byte key k; the result
 * is the paper's 64-bit value (its bytes little-endian are the tag). */
uint64_t siphash24(const uint8_t k[SIPHASH_KEY_BYTES], const void *data, size_t len);

#endif
