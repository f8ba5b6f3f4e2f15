/*
 * random_bytes.h - bytes from the kernel's CSPRNG for what must be
 * unguessable: session ids, and the keys of hash tables indexed by what
 * clients send (agent ids, command ids). Any thread.
 */
#ifndef AERO_RANDOM_BYTES_H
#define AERO_RANDOM_BYTES_H

#include <stddef.h>
#include <stdint.h>

/* Fills buf with n random bytes; aborts the process when the kernel has
 * none to give (never falls back to anything weaker). */
void random_bytes(uint8_t *buf, size_t n);

#endif
