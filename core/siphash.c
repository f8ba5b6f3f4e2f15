/*
 * siphash.c - SipHash-2-4, written from the paper's description (section
 * 2): four 64-bit words of state, two SipRounds per 8-byte block, four at
 * finalisation; the last block carries the length's low byte on top.
 */
#include "siphash.h"

static inline uint64_t rotl(uint64_t x, unsigned b) { return (x << b) | (x >> (64 - b)); }

static inline uint64_t load_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

struct sip {
    uint64_t v0, v1, v2, v3;
};

static inline void sipround(struct sip *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

static inline void compress(struct sip *s, uint64_t m)
{
    s->v3 ^= m;
    sipround(s);
    sipround(s);
    s->v0 ^= m;
}

uint64_t siphash24(const uint8_t k[SIPHASH_KEY_BYTES], const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t k0 = load_le64(k), k1 = load_le64(k + 8);
    struct sip s = {
        .v0 = k0 ^ UINT64_C(0x736f6d6570736575), /* "somepseu" */
        .v1 = k1 ^ UINT64_C(0x646f72616e646f6d), /* "dorandom" */
        .v2 = k0 ^ UINT64_C(0x6c7967656e657261), /* "lygenera" */
        .v3 = k1 ^ UINT64_C(0x7465646279746573), /* "tedbytes" */
    };
    size_t whole = len & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8)
        compress(&s, load_le64(p + i));
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < (len & 7); i++)
        last |= (uint64_t)p[whole + i] << (8 * i);
    compress(&s, last);
    s.v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        sipround(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}
