/*
 * test_frame_codec.c - the hand-written TelemetryFrame decoder, limits and
 * TelemetryAck encoder, checked against the protobuf-c code generated from
 * proto/ (the reference) and against hand-built wire bytes for the cases
 * protobuf-c cannot produce (embedded NUL, unknown fields, bad encodings).
 */
#include "frame_codec.h"

#include "aeroarc/agent/v1/agent.pb-c.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Aeroarc__Agent__V1__TelemetryFrame PbFrame;
typedef Aeroarc__Agent__V1__TelemetryFrame__FieldsEntry PbEntry;
typedef Aeroarc__Agent__V1__TelemetryAck PbAck;

#define CAP 300

struct decoded {
    enum frame_decode_result rc;
    aero_frame view;
    aero_kv fields[CAP];
    struct frame_wire_ids wire;
};

static void decode_cap(struct decoded *d, const uint8_t *buf, size_t len, size_t cap)
{
    memset(d, 0, sizeof(*d));
    d->rc = frame_decode(buf, len, &d->view, d->fields, cap, &d->wire);
}

static void decode(struct decoded *d, const uint8_t *buf, size_t len)
{
    decode_cap(d, buf, len, CAP);
}

static uint8_t *pack_frame(const PbFrame *f, size_t *len)
{
    *len = aeroarc__agent__v1__telemetry_frame__get_packed_size(f);
    uint8_t *buf = malloc(*len ? *len : 1);
    cr_assert_not_null(buf);
    cr_assert_eq(aeroarc__agent__v1__telemetry_frame__pack(f, buf), *len);
    return buf;
}

static aero_str cstr(const char *s)
{
    return (aero_str){.ptr = s, .len = strlen(s)};
}

static bool str_is(aero_str s, const char *want, size_t want_len)
{
    if (s.ptr == NULL || s.len != want_len)
        return false;
    return want_len == 0 || memcmp(s.ptr, want, want_len) == 0;
}

static bool str_is_c(aero_str s, const char *want)
{
    return str_is(s, want, strlen(want));
}

static bool same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof(a)) == 0;
}

/* --------------------------------------------------- hand-built messages */

struct wbuf {
    uint8_t b[32768];
    size_t n;
};

static void w_raw(struct wbuf *w, const void *p, size_t n)
{
    cr_assert_leq(w->n + n, sizeof(w->b));
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void w_byte(struct wbuf *w, uint8_t b)
{
    w_raw(w, &b, 1);
}

static void w_varint(struct wbuf *w, uint64_t v)
{
    while (v >= 0x80) {
        w_byte(w, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    w_byte(w, (uint8_t)v);
}

static void w_tag(struct wbuf *w, uint32_t field, unsigned wt)
{
    w_varint(w, ((uint64_t)field << 3) | wt);
}

static void w_bytes(struct wbuf *w, uint32_t field, const void *p, size_t n)
{
    w_tag(w, field, 2);
    w_varint(w, n);
    w_raw(w, p, n);
}

static void w_str(struct wbuf *w, uint32_t field, const char *s)
{
    w_bytes(w, field, s, strlen(s));
}

static void w_entry(struct wbuf *w, const char *key, const char *value)
{
    struct wbuf e = {.n = 0};

    if (key != NULL)
        w_str(&e, 1, key);
    if (value != NULL)
        w_str(&e, 2, value);
    w_bytes(w, 10, e.b, e.n);
}

static void w_fixed(struct wbuf *w, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        w_byte(w, (uint8_t)(v >> (8 * i)));
}

/* Views point into the decoded bytes, so copies live until the test ends.
 * Criterion runs each test in its own process: this list is per test. */
static struct {
    void *p[512];
    size_t n;
} copies;

static void free_copies(void)
{
    while (copies.n > 0)
        free(copies.p[--copies.n]);
}

TestSuite(frame_decode, .fini = free_copies);
TestSuite(frame_validate, .fini = free_copies);

/* Decode w's bytes from an exact-size heap copy so ASan sees any overread. */
static void decode_w(struct decoded *d, const struct wbuf *w, size_t cap)
{
    uint8_t *copy = malloc(w->n ? w->n : 1);

    cr_assert(copy != NULL && copies.n < sizeof(copies.p) / sizeof(copies.p[0]));
    memcpy(copy, w->b, w->n);
    copies.p[copies.n++] = copy;
    decode_cap(d, copy, w->n, cap);
}

/* ------------------------------------------------------- field equality */

/* The map protobuf semantics make of pb's entries: first position, last value. */
static size_t expected_map(const PbFrame *f, aero_kv *out)
{
    size_t n = 0;

    for (size_t i = 0; i < f->n_fields; i++) {
        aero_str k = cstr(f->fields[i]->key), v = cstr(f->fields[i]->value);
        size_t j;
        for (j = 0; j < n; j++) {
            if (out[j].key.len == k.len && memcmp(out[j].key.ptr, k.ptr, k.len) == 0)
                break;
        }
        if (j == n)
            out[n++].key = k;
        out[j].value = v;
    }
    return n;
}

static void assert_matches(const struct decoded *d, const PbFrame *f, const uint8_t *buf,
                           size_t len)
{
    aero_kv want[CAP + 64];
    size_t n_want = expected_map(f, want);

    cr_assert_eq(d->rc, FRAME_DECODE_OK);
    cr_assert(str_is_c(d->wire.session_id, f->session_id));
    cr_assert(str_is_c(d->wire.agent_id, f->agent_id));
    cr_assert_eq(d->view.seq, f->seq);
    cr_assert_eq(d->view.sent_at_unix_ns, f->sent_at_unix_ns);
    cr_assert(same_double(d->view.device_timestamp_sec, f->device_timestamp_sec));
    cr_assert(str_is(d->view.raw_mavlink, (const char *)f->raw_mavlink.data,
                     f->raw_mavlink.len));
    cr_assert(str_is_c(d->view.dialect, f->dialect));
    cr_assert_eq(d->view.msg_id, f->msg_id);
    cr_assert(str_is_c(d->view.msg_name, f->msg_name));
    cr_assert(str_is_c(d->view.flight_id, f->flight_id));
    cr_assert(d->view.protobuf.ptr == (const char *)buf && d->view.protobuf.len == len);
    cr_assert_eq(d->view.n_fields, n_want);
    for (size_t i = 0; i < n_want; i++) {
        cr_assert(str_is(d->view.fields[i].key, want[i].key.ptr, want[i].key.len));
        cr_assert(str_is(d->view.fields[i].value, want[i].value.ptr, want[i].value.len));
    }
}

/* ---------------------------------------------------------------- decode */

Test(frame_decode, every_field_matches_protobuf_c)
{
    PbFrame f = AEROARC__AGENT__V1__TELEMETRY_FRAME__INIT;
    PbEntry e1 = AEROARC__AGENT__V1__TELEMETRY_FRAME__FIELDS_ENTRY__INIT;
    PbEntry e2 = AEROARC__AGENT__V1__TELEMETRY_FRAME__FIELDS_ENTRY__INIT;
    PbEntry *entries[] = {&e1, &e2};
    uint8_t raw[] = {0xfe, 0x00, 0x01, 0xff, 0x7f};

    e1.key = "lat";
    e1.value = "47.3977419";
    e2.key = "alt";
    e2.value = "";
    f.session_id = "sess-0123";
    f.agent_id = "drone-1";
    f.seq = UINT64_MAX;
    f.sent_at_unix_ns = -1234567890123456789LL;
    f.device_timestamp_sec = -1234.5678;
    f.raw_mavlink.data = raw;
    f.raw_mavlink.len = sizeof(raw);
    f.dialect = "ardupilotmega";
    f.msg_id = UINT32_MAX;
    f.msg_name = "GLOBAL_POSITION_INT";
    f.n_fields = 2;
    f.fields = entries;
    f.flight_id = "flight-\xc3\xa9t\xc3\xa9";

    size_t len;
    uint8_t *buf = pack_frame(&f, &len);
    struct decoded d;
    decode(&d, buf, len);
    assert_matches(&d, &f, buf, len);
    cr_assert_eq(d.view.n_fields, 2);
    cr_assert(d.view.fields == d.fields);
    free(buf);
}

Test(frame_decode, empty_message_gives_defaults)
{
    static const uint8_t nothing[1];
    struct decoded d;

    decode(&d, nothing, 0);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    cr_assert_eq(d.view.seq, 0);
    cr_assert_eq(d.view.sent_at_unix_ns, 0);
    cr_assert(same_double(d.view.device_timestamp_sec, 0.0));
    cr_assert_eq(d.view.msg_id, 0);
    cr_assert_eq(d.view.n_fields, 0);
    /* absent strings are empty but never NULL: sinks memcpy them blindly */
    cr_assert(str_is(d.view.msg_name, "", 0));
    cr_assert(str_is(d.view.dialect, "", 0));
    cr_assert(str_is(d.view.flight_id, "", 0));
    cr_assert(str_is(d.view.raw_mavlink, "", 0));
    cr_assert(str_is(d.wire.agent_id, "", 0));
    cr_assert(str_is(d.wire.session_id, "", 0));

    decode(&d, NULL, 0);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    cr_assert_not_null(d.view.protobuf.ptr);
}

Test(frame_decode, nan_and_infinity_bits_are_kept)
{
    double values[] = {NAN, -INFINITY, INFINITY, -0.0, 5e-324};

    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        struct wbuf w = {.n = 0};
        uint64_t bits;
        struct decoded d;

        memcpy(&bits, &values[i], 8);
        w_tag(&w, 5, 1);
        w_fixed(&w, bits, 8);
        decode_w(&d, &w, CAP);
        cr_assert_eq(d.rc, FRAME_DECODE_OK);
        cr_assert(same_double(d.view.device_timestamp_sec, values[i]), "value %zu", i);
    }
}

Test(frame_decode, embedded_nul_keeps_exact_length)
{
    struct wbuf w = {.n = 0};
    struct wbuf entry = {.n = 0};
    struct decoded d;

    w_bytes(&w, 7, "ard\0upilot", 10);
    w_bytes(&w, 9, "\0", 1);
    w_bytes(&w, 11, "fl\0", 3);
    w_bytes(&w, 2, "dr\0ne", 5);
    w_bytes(&entry, 1, "k\0ey", 4);
    w_bytes(&entry, 2, "v\0\0", 3);
    w_bytes(&w, 10, entry.b, entry.n);
    decode_w(&d, &w, CAP);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    cr_assert(str_is(d.view.dialect, "ard\0upilot", 10));
    cr_assert(str_is(d.view.msg_name, "\0", 1));
    cr_assert(str_is(d.view.flight_id, "fl\0", 3));
    cr_assert(str_is(d.wire.agent_id, "dr\0ne", 5));
    cr_assert_eq(d.view.n_fields, 1);
    cr_assert(str_is(d.fields[0].key, "k\0ey", 4));
    cr_assert(str_is(d.fields[0].value, "v\0\0", 3));
}

Test(frame_decode, unknown_fields_of_every_wire_type_are_skipped)
{
    struct wbuf w = {.n = 0};
    struct wbuf entry = {.n = 0};
    struct decoded d;

    w_tag(&w, 99, 0);
    w_varint(&w, UINT64_MAX);
    w_str(&w, 9, "HEARTBEAT");
    w_tag(&w, 100, 1);
    w_fixed(&w, 0x0102030405060708ull, 8);
    w_tag(&w, 3, 0);
    w_varint(&w, 42);
    w_str(&w, 101, "ignored");
    w_tag(&w, 102, 5);
    w_fixed(&w, 7, 4);
    w_tag(&w, 536870911, 0); /* the largest field number */
    w_varint(&w, 1);
    /* unknown fields inside a map entry are skipped too */
    w_tag(&entry, 3, 0);
    w_varint(&entry, 9);
    w_str(&entry, 1, "mode");
    w_tag(&entry, 4, 5);
    w_fixed(&entry, 1, 4);
    w_str(&entry, 2, "AUTO");
    w_str(&entry, 7, "x");
    w_bytes(&w, 10, entry.b, entry.n);
    decode_w(&d, &w, CAP);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    cr_assert(str_is_c(d.view.msg_name, "HEARTBEAT"));
    cr_assert_eq(d.view.seq, 42);
    cr_assert_eq(d.view.n_fields, 1);
    cr_assert(str_is_c(d.fields[0].key, "mode"));
    cr_assert(str_is_c(d.fields[0].value, "AUTO"));

    /* protobuf-c, the reference, agrees */
    PbFrame *pb = aeroarc__agent__v1__telemetry_frame__unpack(NULL, w.n, w.b);
    cr_assert_not_null(pb);
    cr_assert_str_eq(pb->msg_name, "HEARTBEAT");
    cr_assert_eq(pb->seq, 42);
    cr_assert_str_eq(pb->fields[0]->key, "mode");
    aeroarc__agent__v1__telemetry_frame__free_unpacked(pb, NULL);
}

Test(frame_decode, repeated_scalars_keep_the_last)
{
    struct wbuf w = {.n = 0};
    struct decoded d;

    w_tag(&w, 3, 0);
    w_varint(&w, 1);
    w_str(&w, 9, "FIRST");
    w_tag(&w, 3, 0);
    w_varint(&w, 2);
    w_str(&w, 9, "LAST");
    w_tag(&w, 8, 0);
    w_varint(&w, 0x1234567890ull); /* uint32 keeps the low 32 bits */
    decode_w(&d, &w, CAP);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    cr_assert_eq(d.view.seq, 2);
    cr_assert(str_is_c(d.view.msg_name, "LAST"));
    cr_assert_eq(d.view.msg_id, 0x34567890u);

    PbFrame *pb = aeroarc__agent__v1__telemetry_frame__unpack(NULL, w.n, w.b);
    cr_assert_not_null(pb);
    cr_assert_eq(pb->seq, 2);
    cr_assert_eq(pb->msg_id, 0x34567890u);
    aeroarc__agent__v1__telemetry_frame__free_unpacked(pb, NULL);
}

Test(frame_decode, varint_edges)
{
    struct wbuf w = {.n = 0};
    struct decoded d;
    const uint8_t max10[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};

    w_tag(&w, 3, 0);
    w_raw(&w, max10, sizeof(max10)); /* UINT64_MAX, the longest legal varint */
    w_tag(&w, 4, 0);
    w_varint(&w, (uint64_t)INT64_MIN);
    w_tag(&w, 8, 0);
    w_raw(&w, "\x85\x80\x80\x80\x00", 5); /* non-minimal 5: legal protobuf */
    decode_w(&d, &w, CAP);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    cr_assert_eq(d.view.seq, UINT64_MAX);
    cr_assert_eq(d.view.sent_at_unix_ns, INT64_MIN);
    cr_assert_eq(d.view.msg_id, 5);
}

Test(frame_decode, duplicate_map_keys_last_value_wins)
{
    PbFrame f = AEROARC__AGENT__V1__TELEMETRY_FRAME__INIT;
    PbEntry e[5];
    PbEntry *entries[5];
    const char *kv[5][2] = {{"a", "1"}, {"b", "2"}, {"a", "3"}, {"", "empty"}, {"b", "4"}};

    for (int i = 0; i < 5; i++) {
        aeroarc__agent__v1__telemetry_frame__fields_entry__init(&e[i]);
        e[i].key = (char *)kv[i][0];
        e[i].value = (char *)kv[i][1];
        entries[i] = &e[i];
    }
    f.n_fields = 5;
    f.fields = entries;
    size_t len;
    uint8_t *buf = pack_frame(&f, &len);
    struct decoded d;
    decode(&d, buf, len);
    assert_matches(&d, &f, buf, len);
    cr_assert_eq(d.view.n_fields, 3);
    cr_assert(str_is_c(d.fields[0].key, "a") && str_is_c(d.fields[0].value, "3"));
    cr_assert(str_is_c(d.fields[1].key, "b") && str_is_c(d.fields[1].value, "4"));
    cr_assert(str_is_c(d.fields[2].key, "") && str_is_c(d.fields[2].value, "empty"));

    /* duplicates do not count against the cap: 3 distinct keys fit in 3 */
    decode_cap(&d, buf, len, 3);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    cr_assert_eq(d.view.n_fields, 3);
    free(buf);
}

/* A growable buffer for frames too big for struct wbuf. */
struct bigbuf {
    uint8_t *b;
    size_t n, cap;
};

static void big_entry(struct bigbuf *w, const char *key, size_t klen, const char *value)
{
    size_t vlen = strlen(value), elen = 2 + klen + 2 + vlen;
    cr_assert(klen < 128 && vlen < 128 && elen < 128);
    if (w->n + elen + 2 > w->cap) {
        w->cap = (w->cap + elen + 2) * 2;
        w->b = realloc(w->b, w->cap);
        cr_assert_not_null(w->b);
    }
    uint8_t *p = w->b + w->n;
    *p++ = 0x52; /* field 10, length-delimited */
    *p++ = (uint8_t)elen;
    *p++ = 0x0a;
    *p++ = (uint8_t)klen;
    memcpy(p, key, klen);
    p += klen;
    *p++ = 0x12;
    *p++ = (uint8_t)vlen;
    memcpy(p, value, vlen);
    p += vlen;
    w->n = (size_t)(p - w->b);
}

/* `rounds` times every one of `keys` distinct keys ("key-<i>", value the
 * round's number): decoded with cap 256, the work the map did. */
static size_t probes_for(size_t keys, size_t rounds, size_t *n_fields)
{
    struct bigbuf w = {0};
    char key[32], value[32];
    for (size_t r = 0; r < rounds; r++)
        for (size_t k = 0; k < keys; k++) {
            int n = snprintf(key, sizeof(key), "key-%zu", k);
            snprintf(value, sizeof(value), "%zu", r);
            big_entry(&w, key, (size_t)n, value);
        }
    static aero_kv fields[256];
    aero_frame view;
    size_t probes = 0;
    enum frame_decode_result rc =
        frame_decode_probed(w.b, w.n, &view, fields, 256, NULL, &probes);
    cr_assert_eq(rc, keys <= 256 ? FRAME_DECODE_OK : FRAME_DECODE_TOO_MANY_FIELDS);
    *n_fields = view.n_fields;
    if (keys <= 256)
        for (size_t k = 0; k < keys; k++) {
            int n = snprintf(key, sizeof(key), "key-%zu", k);
            snprintf(value, sizeof(value), "%zu", rounds - 1);
            cr_assert(str_is(fields[k].key, key, (size_t)n), "position of %s", key);
            cr_assert(str_is_c(fields[k].value, value), "the last value of %s", key);
        }
    free(w.b);
    return probes;
}

/*
 * Thousands of entries over many distinct keys cost a constant each, not
 * one comparison per distinct key: the map's work (stored keys compared
 * with, counted by the decoder) is bounded per entry, and four times the
 * entries is four times the work. Deterministic: no clock.
 */
Test(frame_decode, duplicate_keys_cost_linear_time)
{
    size_t n_fields;
    size_t small = probes_for(256, 60, &n_fields); /* 15,360 entries */
    cr_assert_eq(n_fields, 256);
    size_t big = probes_for(256, 240, &n_fields); /* 61,440 entries */
    cr_assert_eq(n_fields, 256);
    /* A scan of the stored keys would be ~128 per entry. */
    cr_assert_leq(big, 2 * 61440 + 256, "%zu key comparisons for 61,440 entries", big);
    /* 4N costs 4 times N (a little over: the first round, while keys are
     * still new, probes less); quadratic work would be 16 times. */
    cr_assert_leq(10 * big, 41 * small, "N: %zu, 4N: %zu", small, big);
    /* Few keys (scanned, never indexed): at most 16 per entry. */
    size_t few = probes_for(3, 20000, &n_fields);
    cr_assert_eq(n_fields, 3);
    cr_assert_leq(few, 3 * 60000, "%zu", few);
    /* 60,000 distinct keys: refused at the 257th, no work after it. */
    size_t many = probes_for(60000, 1, &n_fields);
    cr_assert_eq(n_fields, 256);
    cr_assert_leq(many, 2 * 257 + 256, "%zu", many);
}

/* The index keeps protobuf's map semantics (first position, last value,
 * the first `cap` distinct keys then TOO_MANY_FIELDS), checked against the
 * key sequence itself: with enough distinct keys to index, caps past what
 * the index holds (512), and overflow. */
Test(frame_decode, indexed_map_matches_the_reference)
{
    uint64_t s = 0x2545f4914f6cdd1dull;
    static aero_kv fields[700];
    static const size_t caps[] = {0, 1, 15, 16, 17, 256, 511, 512, 513, 700};
    enum { ALPHABET_MAX = 900 };
    for (int iter = 0; iter < 300; iter++) {
        struct bigbuf w = {0};
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        size_t entries = 1 + (size_t)(s % 1500), alphabet = 1 + (size_t)((s >> 20) % ALPHABET_MAX);
        char key[32], value[32];
        /* the reference: each key's order of first appearance, last entry */
        size_t order[ALPHABET_MAX], last[ALPHABET_MAX], n_want = 0;
        int seen_at[ALPHABET_MAX];
        for (size_t k = 0; k < alphabet; k++)
            seen_at[k] = -1;
        for (size_t i = 0; i < entries; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            size_t k = (size_t)(s % alphabet);
            int kn = snprintf(key, sizeof(key), "k%zu", k);
            snprintf(value, sizeof(value), "%zu", i);
            big_entry(&w, key, (size_t)kn, value);
            if (seen_at[k] < 0) {
                seen_at[k] = (int)n_want;
                order[n_want++] = k;
            }
            last[k] = i;
        }
        for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
            aero_frame view;
            enum frame_decode_result rc = frame_decode(w.b, w.n, &view, fields, caps[c], NULL);
            bool fits = n_want <= caps[c];
            cr_assert_eq(rc, fits ? FRAME_DECODE_OK : FRAME_DECODE_TOO_MANY_FIELDS,
                         "iter %d cap %zu", iter, caps[c]);
            size_t n = fits ? n_want : caps[c];
            cr_assert_eq(view.n_fields, n, "iter %d cap %zu", iter, caps[c]);
            for (size_t i = 0; i < n; i++) {
                snprintf(key, sizeof(key), "k%zu", order[i]);
                snprintf(value, sizeof(value), "%zu", last[order[i]]);
                cr_assert(str_is_c(fields[i].key, key), "iter %d cap %zu entry %zu", iter,
                          caps[c], i);
                /* refused frames keep the first keys; their values do not matter */
                cr_assert(!fits || str_is_c(fields[i].value, value), "iter %d cap %zu entry %zu",
                          iter, caps[c], i);
            }
        }
        free(w.b);
    }
}

Test(frame_decode, map_entry_missing_key_or_value_is_empty)
{
    struct wbuf w = {.n = 0};
    struct decoded d;

    w_entry(&w, "only-key", NULL);
    w_entry(&w, NULL, "only-value");
    w_entry(&w, NULL, NULL);
    decode_w(&d, &w, CAP);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    /* the two key-less entries share the key "": the last value wins */
    cr_assert_eq(d.view.n_fields, 2);
    cr_assert(str_is_c(d.fields[0].key, "only-key") && str_is_c(d.fields[0].value, ""));
    cr_assert(str_is_c(d.fields[1].key, "") && str_is_c(d.fields[1].value, ""));
    cr_assert_not_null(d.fields[1].value.ptr);
}

Test(frame_decode, too_many_fields_after_checking_the_rest)
{
    struct wbuf w = {.n = 0};
    struct decoded d;

    w_tag(&w, 3, 0);
    w_varint(&w, 77);
    w_entry(&w, "a", "1");
    w_entry(&w, "b", "2");
    w_entry(&w, "c", "3");
    w_entry(&w, "a", "again"); /* a duplicate is not a new field */
    decode_w(&d, &w, 3);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    cr_assert_eq(d.view.n_fields, 3);

    w_entry(&w, "d", "4");
    w_str(&w, 9, "AFTER");
    decode_w(&d, &w, 3);
    cr_assert_eq(d.rc, FRAME_DECODE_TOO_MANY_FIELDS);
    /* the rest is still decoded so the caller can ack by seq */
    cr_assert_eq(d.view.seq, 77);
    cr_assert(str_is_c(d.view.msg_name, "AFTER"));
    cr_assert_eq(d.view.n_fields, 3);
    cr_assert(str_is_c(d.fields[0].value, "again"));

    w_tag(&w, 3, 2); /* and a malformed tail beats too-many */
    decode_w(&d, &w, 3);
    cr_assert_eq(d.rc, FRAME_DECODE_MALFORMED);

    struct wbuf one = {.n = 0};
    w_entry(&one, "k", "v");
    decode_w(&d, &one, 0);
    cr_assert_eq(d.rc, FRAME_DECODE_TOO_MANY_FIELDS);
}

/* Each case: a prefix of good bytes, then the bad part. */
struct bad_case {
    const char *name;
    const char *bytes;
    size_t len;
};

#define BAD(name, lit) {name, lit, sizeof(lit) - 1}

static const struct bad_case bad_cases[] = {
    BAD("truncated varint", "\x18\x80"),
    BAD("truncated varint at end", "\x18\xff\xff"),
    BAD("truncated tag", "\x80"),
    BAD("overlong varint (11 bytes)", "\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
    BAD("overlong zero varint", "\x18\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00"),
    BAD("varint over 64 bits", "\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02"),
    BAD("unknown varint over 64 bits", "\xa0\x06\x80\x80\x80\x80\x80\x80\x80\x80\x80\x7f"),
    BAD("tag over 32 bits", "\x80\x80\x80\x80\x80\x01\x00"),
    BAD("length past end", "\x4a\x05" "abcd"),
    BAD("huge length", "\x4a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01" "abc"),
    BAD("unknown length past end", "\xaa\x06\x03" "ab"),
    BAD("truncated fixed64", "\x29\x00\x00\x00\x00\x00\x00\x00"),
    BAD("truncated unknown fixed32", "\xad\x06\x00\x00\x00"),
    BAD("map entry key past entry end", "\x52\x03\x0a\x05" "a" "bcdef"),
    BAD("map entry truncated varint", "\x52\x02\x18\x80"),
    BAD("map entry group", "\x52\x02\x1b\x1c"),
    BAD("map entry field 0", "\x52\x02\x00\x00"),
    BAD("start group", "\x7b\x7c"),
    BAD("end group", "\x7c"),
    BAD("known field as group", "\x1b\x1c"),
    BAD("wire type 6", "\x7e\x00"),
    BAD("wire type 7", "\x7f\x00"),
    BAD("field 0 varint", "\x00\x00"),
    BAD("field 0 length", "\x02\x00"),
};

Test(frame_decode, malformed_inputs_are_refused)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        struct wbuf w = {.n = 0};
        struct decoded d;

        /* a valid prefix first, so the error is found mid-message */
        w_str(&w, 2, "drone-1");
        w_raw(&w, bad_cases[i].bytes, bad_cases[i].len);
        decode_w(&d, &w, CAP);
        cr_assert_eq(d.rc, FRAME_DECODE_MALFORMED, "%s", bad_cases[i].name);

        struct wbuf alone = {.n = 0};
        w_raw(&alone, bad_cases[i].bytes, bad_cases[i].len);
        decode_w(&d, &alone, CAP);
        cr_assert_eq(d.rc, FRAME_DECODE_MALFORMED, "%s (alone)", bad_cases[i].name);
    }
}

/* A known field with another wire type (0, 1, 2 or 5): an unknown field
 * to Go's protobuf, which the agents and the upstream relay use; skipped,
 * the rest of the frame read, and noted (SPEC section 9 rule 2 wants the
 * right wire types to take a first message for generation 2). */
#define LENIENT(name, lit) {name, lit, sizeof(lit) - 1}
static const struct bad_case lenient_cases[] = {
    LENIENT("seq as length-delimited", "\x1a\x00"),
    LENIENT("seq as fixed64", "\x19\x00\x00\x00\x00\x00\x00\x00\x00"),
    LENIENT("msg_id as fixed32", "\x45\x00\x00\x00\x00"),
    LENIENT("sent_at as length", "\x22\x00"),
    LENIENT("msg_name as varint", "\x48\x01"),
    LENIENT("session_id as fixed32", "\x0d\x00\x00\x00\x00"),
    LENIENT("device_timestamp as varint", "\x28\x01"),
    LENIENT("device_timestamp as fixed32", "\x2d\x00\x00\x00\x00"),
    LENIENT("map entry as varint", "\x50\x01"),
    LENIENT("map key as varint", "\x52\x02\x08\x01"),
    LENIENT("map value as fixed64", "\x52\x09\x11\x00\x00\x00\x00\x00\x00\x00\x00"),
};

Test(frame_decode, a_known_field_with_another_wire_type_is_an_unknown_field)
{
    for (size_t i = 0; i < sizeof(lenient_cases) / sizeof(lenient_cases[0]); i++) {
        struct wbuf w = {.n = 0};
        struct decoded d;
        w_str(&w, 9, "HEARTBEAT"); /* msg_name */
        w_raw(&w, lenient_cases[i].bytes, lenient_cases[i].len);
        w_tag(&w, 3, 0); /* seq 5, after it */
        w_varint(&w, 5);
        decode_w(&d, &w, CAP);
        cr_assert_eq(d.rc, FRAME_DECODE_OK, "%s", lenient_cases[i].name);
        cr_assert(d.wire.wrong_wire, "%s: not noted", lenient_cases[i].name);
        cr_assert_eq(d.view.seq, 5, "%s", lenient_cases[i].name);
        cr_assert(str_is_c(d.view.msg_name, "HEARTBEAT"), "%s: the field read before it",
                  lenient_cases[i].name);
        /* an entry whose key or value came with another wire type keeps
         * the empty string there */
        for (size_t k = 0; k < d.view.n_fields; k++)
            cr_assert(d.view.fields[k].key.len == 0 || d.view.fields[k].value.len == 0, "%s",
                      lenient_cases[i].name);
    }
    struct wbuf w = {.n = 0};
    struct decoded d;
    w_str(&w, 9, "HEARTBEAT");
    w_tag(&w, 3, 0);
    w_varint(&w, 5);
    decode_w(&d, &w, CAP);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    cr_assert_not(d.wire.wrong_wire, "a frame with the right wire types noted");
}

Test(frame_decode, every_truncation_of_a_frame_is_safe)
{
    struct wbuf w = {.n = 0};
    struct decoded d;
    size_t ends[5];

    w_str(&w, 1, "sess-1");
    ends[0] = w.n;
    w_tag(&w, 3, 0);
    w_varint(&w, 300);
    ends[1] = w.n;
    w_tag(&w, 5, 1);
    w_fixed(&w, 0x400921fb54442d18ull, 8);
    ends[2] = w.n;
    w_entry(&w, "key", "value");
    ends[3] = w.n;
    w_str(&w, 11, "f");
    ends[4] = w.n;
    decode_w(&d, &w, CAP);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    for (size_t n = 1; n < w.n; n++) {
        struct wbuf cut = {.n = 0};
        bool boundary = false;

        /* a cut right after a complete field is a valid shorter frame */
        for (size_t i = 0; i < 5; i++)
            boundary = boundary || ends[i] == n;
        w_raw(&cut, w.b, n);
        decode_w(&d, &cut, CAP);
        cr_assert_eq(d.rc, boundary ? FRAME_DECODE_OK : FRAME_DECODE_MALFORMED, "cut %zu", n);
    }
}

/* -------------------------------------------------------------- validate */

/* The limits validate_frame applies (NULL: the defaults). */
static const struct frame_limits *validate_limits;

static const char *validate_frame(const struct wbuf *w, const char *stream_agent)
{
    static struct decoded d; /* large; tests run one at a time */

    decode_w(&d, w, CAP);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    return frame_validate(&d.view, &d.wire, cstr(stream_agent), validate_limits);
}

static char *filled(size_t n)
{
    char *s = malloc(n + 1);
    memset(s, 'x', n);
    s[n] = '\0';
    return s;
}

struct limit_case {
    uint32_t field; /* 0: a map key, 1000: a map value */
    size_t max;
    const char *reason;
};

Test(frame_validate, each_limit_at_and_over)
{
    const struct limit_case cases[] = {
        {9, FRAME_MAX_NAME, "msg_name over 128 bytes"},
        {11, FRAME_MAX_NAME, "flight_id over 128 bytes"},
        {7, FRAME_MAX_DIALECT, "dialect over 64 bytes"},
        {6, FRAME_MAX_RAW_DEFAULT, "raw_mavlink over 16384 bytes"},
        {0, FRAME_MAX_KEY, "field key over 128 bytes"},
        {1000, FRAME_MAX_VALUE, "field value over 4096 bytes"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (size_t extra = 0; extra <= 1; extra++) {
            struct wbuf w = {.n = 0};
            char *s = filled(cases[i].max + extra);

            w_str(&w, 2, "drone-1");
            w_entry(&w, "ok", "ok");
            if (cases[i].field == 0)
                w_entry(&w, s, "v");
            else if (cases[i].field == 1000)
                w_entry(&w, "k", s);
            else
                w_str(&w, cases[i].field, s);
            const char *why = validate_frame(&w, "drone-1");
            if (extra == 0)
                cr_assert_null(why, "%s at the limit: %s", cases[i].reason, why);
            else
                cr_assert_str_eq(why, cases[i].reason);
            free(s);
        }
    }
}

/* [relay] max_raw_bytes: the limit and the reason both follow it. */
Test(frame_validate, raw_mavlink_limit_is_the_configured_one)
{
    static const size_t limits[] = {1, 1024, 1102, 20000};
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        struct frame_limits l;
        frame_limits_init(&l, limits[i]);
        validate_limits = &l;
        char want[64];
        snprintf(want, sizeof(want), "raw_mavlink over %zu bytes", limits[i]);
        for (size_t extra = 0; extra <= 1; extra++) {
            struct wbuf w = {.n = 0};
            char *s = filled(limits[i] + extra);
            w_str(&w, 6, s);
            const char *why = validate_frame(&w, "drone-1");
            if (extra == 0)
                cr_assert_null(why, "%zu bytes under a limit of %zu: %s", limits[i], limits[i],
                               why);
            else
                cr_assert_str_eq(why, want);
            free(s);
        }
    }
    /* The default takes a MAVLink message as the upstream agent sends it
     * (JSON of the decoded message: LOGGING_DATA with 0xFF data is 1,102
     * bytes). */
    validate_limits = NULL;
    struct wbuf w = {.n = 0};
    char *s = filled(1102);
    w_str(&w, 6, s);
    cr_assert_null(validate_frame(&w, "drone-1"));
    free(s);
}

Test(frame_validate, field_count_at_and_over)
{
    for (size_t n = FRAME_MAX_FIELDS; n <= FRAME_MAX_FIELDS + 1; n++) {
        struct wbuf w = {.n = 0};
        char key[32];

        for (size_t i = 0; i < n; i++) {
            snprintf(key, sizeof(key), "k%zu", i);
            w_entry(&w, key, "v");
        }
        w_entry(&w, "k0", "dup"); /* a duplicate does not count */
        const char *why = validate_frame(&w, "drone-1");
        if (n == FRAME_MAX_FIELDS)
            cr_assert_null(why);
        else
            cr_assert_str_eq(why, "more than 256 fields");
    }
}

Test(frame_validate, wire_agent_id_must_match_when_present)
{
    struct wbuf none = {.n = 0};
    struct wbuf same = {.n = 0};
    struct wbuf other = {.n = 0};
    struct wbuf prefix = {.n = 0};

    w_str(&none, 9, "NO_AGENT");
    w_str(&same, 2, "drone-1");
    w_str(&other, 2, "drone-2");
    w_str(&prefix, 2, "drone-12");
    cr_assert_null(validate_frame(&none, "drone-1"));
    cr_assert_null(validate_frame(&same, "drone-1"));
    cr_assert_str_eq(validate_frame(&other, "drone-1"), "agent_id does not match the stream");
    cr_assert_str_eq(validate_frame(&prefix, "drone-1"), "agent_id does not match the stream");
    cr_assert_str_eq(validate_frame(&same, "drone-12"), "agent_id does not match the stream");

    /* an explicit empty agent_id on the wire is the proto3 default */
    struct wbuf empty = {.n = 0};
    w_str(&empty, 2, "");
    cr_assert_null(validate_frame(&empty, "drone-1"));
}

/* ------------------------------------------------------------------ acks */

static void check_ack(const char *agent, uint64_t seq, enum ack_status status,
                      const char *error)
{
    size_t error_len = error ? strlen(error) : 0;
    size_t bound = frame_ack_encoded_bound(strlen(agent), error_len);
    uint8_t *out = malloc(bound + 16);
    memset(out, 0xA5, bound + 16);
    size_t n = frame_ack_encode(out, cstr(agent), seq, status, error);
    cr_assert_leq(n, bound);
    for (size_t i = bound; i < bound + 16; i++)
        cr_assert_eq(out[i], 0xA5, "wrote past the bound");

    PbAck *ack = aeroarc__agent__v1__telemetry_ack__unpack(NULL, n, out);
    cr_assert_not_null(ack);
    char frame_id[256 + 32];
    snprintf(frame_id, sizeof(frame_id), "%s:%llu", agent, (unsigned long long)seq);
    cr_assert_str_eq(ack->frame_id, frame_id);
    cr_assert_eq(ack->seq, seq);
    cr_assert_eq((int)ack->status, (int)status);
    cr_assert_str_eq(ack->error, error ? error : "");

    /* byte-identical to protobuf-c's own encoding (field order, defaults omitted) */
    size_t ref_len = aeroarc__agent__v1__telemetry_ack__get_packed_size(ack);
    uint8_t *ref = malloc(ref_len);
    aeroarc__agent__v1__telemetry_ack__pack(ack, ref);
    cr_assert_eq(ref_len, n);
    cr_assert_arr_eq(ref, out, n);
    free(ref);
    aeroarc__agent__v1__telemetry_ack__free_unpacked(ack, NULL);
    free(out);
}

Test(frame_ack_encode, decodes_to_the_inputs)
{
    char *long_error = filled(5000);
    char *long_agent = filled(128);

    check_ack("drone-1", 0, ACK_OK, NULL);
    check_ack("drone-1", 0, ACK_OK, "");
    check_ack("drone-1", 1, ACK_OK, NULL);
    check_ack("drone-1", 127, ACK_TEMPORARY_ERROR, "sink archive: disk full");
    check_ack("drone-1", 128, ACK_PERMANENT_ERROR, "field value over 4096 bytes");
    check_ack("drone-1", 1ull << 35, ACK_RETRY_WITH_BACKOFF, "queue full");
    check_ack("drone-1", UINT64_MAX, ACK_PERMANENT_ERROR, long_error);
    check_ack(long_agent, UINT64_MAX, ACK_RETRY_WITH_BACKOFF, long_error);
    check_ack("a", 9, ACK_OK, NULL);
    free(long_error);
    free(long_agent);
}

Test(frame_ack_encode, seq_zero_still_has_a_frame_id)
{
    uint8_t out[64];
    size_t n = frame_ack_encode(out, cstr("d"), 0, ACK_OK, NULL);

    /* field 1, length 3, "d:0" and nothing else */
    cr_assert_eq(n, 5);
    cr_assert_arr_eq(out, "\x0a\x03" "d:0", 5);
}

/* --------------------------------------------------------- generation 2 */

typedef Aeroarc__Agent__V1__AgentStreamMessage PbAgentMsg;
typedef Aeroarc__Agent__V1__RelayStreamMessage PbRelayMsg;

static void check_mux_ack(uint64_t seq, enum ack_status status, const char *error)
{
    uint8_t *out = malloc(56 + (error ? strlen(error) : 0));
    size_t n = frame_mux_ack_encode(out, seq, status, error);
    PbRelayMsg *m = aeroarc__agent__v1__relay_stream_message__unpack(NULL, n, out);
    cr_assert_not_null(m);
    cr_assert_eq(m->payload_case, AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_TELEMETRY_ACK);
    cr_assert_str_eq(m->telemetry_ack->frame_id, "", "generation 2 acks carry no frame_id");
    cr_assert_eq(m->telemetry_ack->seq, seq);
    cr_assert_eq((int)m->telemetry_ack->status, (int)status);
    cr_assert_str_eq(m->telemetry_ack->error, error ? error : "");
    /* byte-identical to protobuf-c's encoding of the same message */
    size_t ref_len = aeroarc__agent__v1__relay_stream_message__get_packed_size(m);
    uint8_t *ref = malloc(ref_len);
    aeroarc__agent__v1__relay_stream_message__pack(m, ref);
    cr_assert_eq(ref_len, n);
    cr_assert_arr_eq(ref, out, n);
    free(ref);
    aeroarc__agent__v1__relay_stream_message__free_unpacked(m, NULL);
    free(out);
}

Test(mux, acks_decode_to_the_inputs_with_an_empty_frame_id)
{
    char *long_error = filled(5000);
    check_mux_ack(0, ACK_OK, NULL);
    check_mux_ack(1, ACK_OK, NULL);
    check_mux_ack(127, ACK_PERMANENT_ERROR, "telemetry frame message name is required");
    check_mux_ack(UINT64_MAX, ACK_RETRY_WITH_BACKOFF, "relay sink queue is full");
    check_mux_ack(300, ACK_TEMPORARY_ERROR, long_error);
    free(long_error);
}

/* An AgentStreamMessage{telemetry_frame} as protobuf-c packs it. */
static uint8_t *pack_envelope(PbFrame *f, size_t *len)
{
    PbAgentMsg m = AEROARC__AGENT__V1__AGENT_STREAM_MESSAGE__INIT;
    m.payload_case = AEROARC__AGENT__V1__AGENT_STREAM_MESSAGE__PAYLOAD_TELEMETRY_FRAME;
    m.telemetry_frame = f;
    *len = aeroarc__agent__v1__agent_stream_message__get_packed_size(&m);
    uint8_t *buf = malloc(*len);
    aeroarc__agent__v1__agent_stream_message__pack(&m, buf);
    return buf;
}

Test(mux, an_envelope_is_one_field_and_its_frame_decodes_in_place)
{
    PbFrame f = AEROARC__AGENT__V1__TELEMETRY_FRAME__INIT;
    f.seq = 9;
    f.msg_name = "HEARTBEAT";
    f.intent_id = "intent-1";
    f.intent_version = 7;
    f.wal_id = "0B6F7E4E-3C2A-4F7B-9D1E-5A6B7C8D9E0F";
    size_t len;
    uint8_t *buf = pack_envelope(&f, &len);
    uint32_t field;
    aero_str payload;
    cr_assert(frame_mux_single_field(buf, len, &field, &payload));
    cr_assert_eq(field, 1);
    enum mux_arm arm;
    aero_str p2;
    cr_assert_eq(frame_mux_decode(buf, len, &arm, &p2), 0);
    cr_assert_eq(arm, MUX_FRAME);
    cr_assert(p2.ptr == payload.ptr && p2.len == payload.len, "no copy: the same bytes");
    struct decoded d;
    decode(&d, (const uint8_t *)payload.ptr, payload.len);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    cr_assert_eq(d.view.seq, 9);
    cr_assert(str_is_c(d.view.intent_id, "intent-1"));
    cr_assert_eq(d.view.intent_version, 7);
    cr_assert(str_is_c(d.wire.wal_id, "0B6F7E4E-3C2A-4F7B-9D1E-5A6B7C8D9E0F"));
    free(buf);
}

Test(mux, the_arm_is_the_last_of_fields_1_to_6_and_others_are_unknown_or_empty)
{
    struct wbuf w = {.n = 0};
    enum mux_arm arm;
    aero_str payload;
    cr_assert_eq(frame_mux_decode(w.b, 0, &arm, &payload), 0);
    cr_assert_eq(arm, MUX_EMPTY);

    w_str(&w, 7, "x"); /* field 7 is not an arm of AgentStreamMessage */
    cr_assert_eq(frame_mux_decode(w.b, w.n, &arm, &payload), 0);
    cr_assert_eq(arm, MUX_UNKNOWN);

    w_bytes(&w, 6, "", 0);
    w_tag(&w, 99, 0);
    w_varint(&w, 5);
    cr_assert_eq(frame_mux_decode(w.b, w.n, &arm, &payload), 0);
    cr_assert_eq(arm, MUX_FLIGHT_COMPLETION);

    w_str(&w, 2, "\x0a\x01x"); /* OperationContextCommandAck{command_id "x"} */
    /* 1: the oneof came in two records (6, then 2): the caller joins runs */
    cr_assert_eq(frame_mux_decode(w.b, w.n, &arm, &payload), 1);
    cr_assert_eq(arm, MUX_CONTEXT_ACK);
    cr_assert(str_is(payload, "\x0a\x01x", 3));
    cr_assert_str_eq(frame_mux_arm_name(arm), "operation_context_command_ack");
}

Test(mux, malformed_envelopes_are_refused)
{
    struct wbuf w = {.n = 0};
    enum mux_arm arm;
    aero_str payload;
    w_tag(&w, 1, 0); /* an arm with wire type varint */
    w_varint(&w, 1);
    cr_assert_eq(frame_mux_decode(w.b, w.n, &arm, &payload), -1);
    w.n = 0;
    w_tag(&w, 3, 2);
    w_varint(&w, 10); /* length past the end */
    w_byte(&w, 0);
    cr_assert_eq(frame_mux_decode(w.b, w.n, &arm, &payload), -1);
    w.n = 0;
    w_tag(&w, 9, 3); /* a group */
    cr_assert_eq(frame_mux_decode(w.b, w.n, &arm, &payload), -1);
}

/* SPEC section 9 rule 2: the shape of a first message. */
Test(mux, single_field_needs_one_field_1_to_7_of_wire_type_2_spanning_the_buffer)
{
    struct wbuf w = {.n = 0};
    uint32_t field;
    aero_str payload;
    w_str(&w, 1, "sess-0123456789abcdef0123456789abcdef");
    cr_assert(frame_mux_single_field(w.b, w.n, &field, &payload),
              "a seed frame with only session_id has the shape...");
    struct decoded d;
    decode(&d, (const uint8_t *)payload.ptr, payload.len);
    cr_assert_eq(d.rc, FRAME_DECODE_MALFORMED, "...but \"sess-...\" is no TelemetryFrame");

    w.n = 0;
    w_bytes(&w, 1, "", 0); /* a frame with seq 0 and no msg_name: not generation 2 */
    cr_assert(frame_mux_single_field(w.b, w.n, &field, &payload));
    decode(&d, (const uint8_t *)payload.ptr, payload.len);
    cr_assert_eq(d.rc, FRAME_DECODE_OK);
    cr_assert(d.view.seq == 0 && d.view.msg_name.len == 0);

    w.n = 0;
    w_str(&w, 8, "x");
    cr_assert_not(frame_mux_single_field(w.b, w.n, &field, &payload), "field 8");
    w.n = 0;
    w_str(&w, 1, "x");
    w_str(&w, 1, "y");
    cr_assert_not(frame_mux_single_field(w.b, w.n, &field, &payload), "two fields");
    w.n = 0;
    w_tag(&w, 1, 0);
    w_varint(&w, 3);
    cr_assert_not(frame_mux_single_field(w.b, w.n, &field, &payload), "wire type 0");
    cr_assert_not(frame_mux_single_field(NULL, 0, &field, &payload), "empty");

    cr_assert(frame_mux_well_formed(cstr("\x08\x01\x12\x01x")));
    cr_assert_not(frame_mux_well_formed(cstr("\x0b")), "group");
    cr_assert_not(frame_mux_well_formed(cstr("\x12\x05x")), "length past the end");
}

Test(mux, wal_ids_in_every_form_uuid_parse_takes_come_out_canonical)
{
    static const char *const good[] = {
        "0b6f7e4e-3c2a-4f7b-9d1e-5a6b7c8d9e0f",
        "0B6F7E4E-3C2A-4F7B-9D1E-5A6B7C8D9E0F",
        "{0b6f7e4e-3c2a-4f7b-9d1e-5a6b7c8d9e0f}",
        "urn:uuid:0b6f7e4e-3c2a-4f7b-9d1e-5a6b7c8d9e0f",
        "URN:UUID:0B6F7E4E-3C2A-4F7B-9D1E-5A6B7C8D9E0F",
        "0b6f7e4e3c2a4f7b9d1e5a6b7c8d9e0f",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char out[FRAME_WAL_ID_LEN + 1];
        cr_assert_eq(frame_wal_id_canonical(cstr(good[i]), out), 0, "%s", good[i]);
        cr_assert_str_eq(out, "0b6f7e4e-3c2a-4f7b-9d1e-5a6b7c8d9e0f", "%s", good[i]);
    }
    static const char *const bad[] = {
        "00000000-0000-0000-0000-000000000000", /* the nil UUID */
        "00000000000000000000000000000000",
        "0b6f7e4e-3c2a-4f7b-9d1e-5a6b7c8d9e0",  /* 35 */
        "0b6f7e4e_3c2a-4f7b-9d1e-5a6b7c8d9e0f",
        "0b6f7e4e-3c2a-4f7b-9d1e-5a6b7c8d9e0g",
        "(0b6f7e4e-3c2a-4f7b-9d1e-5a6b7c8d9e0f)",
        "urn:uuid:0b6f7e4e3c2a4f7b9d1e5a6b7c8d9e0f",
        "wal-1",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[FRAME_WAL_ID_LEN + 1];
        cr_assert_eq(frame_wal_id_canonical(cstr(bad[i]), out), -1, "%s", bad[i]);
    }
}

/* The admission rules in SPEC order, each with its exact text. */
Test(mux, admission_rules_in_order_with_their_texts)
{
    aero_frame v = {.size = sizeof(v), .msg_name = cstr("HEARTBEAT"), .sent_at_unix_ns = 1};
    struct frame_wire_ids wire = {.agent_id = cstr(""), .session_id = cstr("sess-a"),
                                  .wal_id = cstr("")};
    char wal[FRAME_WAL_ID_LEN + 1];
    aero_str sess = cstr("sess-a");
    cr_assert_null(frame_admit_agent(&wire, cstr("drone-1")), "empty agent_id is fine");
    wire.agent_id = cstr("drone-2");
    cr_assert_str_eq(frame_admit_agent(&wire, cstr("drone-1")),
                     "telemetry frame agent ID does not match authenticated stream");
    wire.agent_id = cstr("drone-1");
    cr_assert_null(frame_admit_mux(&v, &wire, FRAME_DECODE_OK, sess, NULL, wal));
    cr_assert_str_eq(wal, "", "an empty wal_id is kept empty");

    wire.session_id = cstr("sess-old");
    cr_assert_str_eq(frame_admit_mux(&v, &wire, FRAME_DECODE_OK, sess, NULL, wal),
                     "telemetry frame session ID does not match active session");
    wire.session_id = sess;
    v.msg_name = cstr(" \t\xc2\xa0");
    cr_assert_str_eq(frame_admit_mux(&v, &wire, FRAME_DECODE_OK, sess, NULL, wal),
                     "telemetry frame message name is required");
    /* Go's unicode.IsSpace: U+3000, U+2003, U+2028, U+1680, U+205F too. */
    v.msg_name = cstr("\xe3\x80\x80\xe2\x80\x83\xe2\x80\xa8\xe1\x9a\x80\xe2\x81\x9f");
    cr_assert_str_eq(frame_admit_mux(&v, &wire, FRAME_DECODE_OK, sess, NULL, wal),
                     "telemetry frame message name is required");
    v.msg_name = cstr("HEARTBEAT");
    v.sent_at_unix_ns = 0;
    cr_assert_str_eq(frame_admit_mux(&v, &wire, FRAME_DECODE_OK, sess, NULL, wal),
                     "telemetry frame capture timestamp is required");
    v.sent_at_unix_ns = 5;
    wire.wal_id = cstr("00000000-0000-0000-0000-000000000000");
    cr_assert_str_eq(frame_admit_mux(&v, &wire, FRAME_DECODE_OK, sess, NULL, wal),
                     "telemetry frame WAL generation ID is invalid");
    wire.wal_id = cstr("{0B6F7E4E-3C2A-4F7B-9D1E-5A6B7C8D9E0F}");
    cr_assert_null(frame_admit_mux(&v, &wire, FRAME_DECODE_OK, sess, NULL, wal));
    cr_assert_str_eq(wal, "0b6f7e4e-3c2a-4f7b-9d1e-5a6b7c8d9e0f");
    cr_assert_str_eq(frame_admit_mux(&v, &wire, FRAME_DECODE_TOO_MANY_FIELDS, sess, NULL, wal),
                     "more than 256 fields");
    v.dialect = cstr("0123456789012345678901234567890123456789012345678901234567890123456789");
    cr_assert_str_eq(frame_admit_mux(&v, &wire, FRAME_DECODE_OK, sess, NULL, wal),
                     "dialect over 64 bytes");
}

/* ------------------------------------------------------- randomized tests */

/* xorshift64*: reproducible from the seed printed on failure. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static size_t rnd_below(uint64_t *s, size_t n)
{
    return n ? (size_t)(rnd(s) % n) : 0;
}

/* A random string without NUL (protobuf-c strings are C strings). Small
 * alphabets make duplicate map keys likely; high bytes test no UTF-8 checks. */
static char *rnd_str(uint64_t *s, size_t max)
{
    size_t n = rnd_below(s, max + 1);
    char *p = malloc(n + 1);
    bool tiny = rnd_below(s, 2);

    for (size_t i = 0; i < n; i++)
        p[i] = tiny ? (char)('a' + rnd_below(s, 3)) : (char)(1 + rnd_below(s, 255));
    p[n] = '\0';
    return p;
}

struct rnd_frame {
    PbFrame f;
    PbEntry entries[40];
    PbEntry *ptrs[40];
    uint8_t raw[64];
};

static void rnd_frame_fill(struct rnd_frame *r, uint64_t *s)
{
    PbFrame *f = &r->f;

    aeroarc__agent__v1__telemetry_frame__init(f);
    f->session_id = rnd_str(s, 40);
    f->agent_id = rnd_str(s, 20);
    f->seq = rnd_below(s, 4) ? rnd(s) >> rnd_below(s, 64) : 0;
    uint64_t sent = rnd(s) >> rnd_below(s, 64);
    f->sent_at_unix_ns = (int64_t)(rnd_below(s, 2) ? 0 - sent : sent);
    uint64_t bits = rnd(s);
    memcpy(&f->device_timestamp_sec, &bits, 8);
    f->raw_mavlink.len = rnd_below(s, sizeof(r->raw) + 1);
    for (size_t i = 0; i < f->raw_mavlink.len; i++)
        r->raw[i] = (uint8_t)rnd(s);
    f->raw_mavlink.data = f->raw_mavlink.len ? r->raw : NULL;
    f->dialect = rnd_str(s, 10);
    f->msg_id = (uint32_t)(rnd(s) >> rnd_below(s, 64));
    f->msg_name = rnd_str(s, 30);
    f->flight_id = rnd_str(s, 20);
    f->n_fields = rnd_below(s, 41);
    for (size_t i = 0; i < f->n_fields; i++) {
        aeroarc__agent__v1__telemetry_frame__fields_entry__init(&r->entries[i]);
        r->entries[i].key = rnd_str(s, 3);
        r->entries[i].value = rnd_str(s, 12);
        r->ptrs[i] = &r->entries[i];
    }
    f->fields = r->ptrs;
}

static void rnd_frame_free(struct rnd_frame *r)
{
    free(r->f.session_id);
    free(r->f.agent_id);
    free(r->f.dialect);
    free(r->f.msg_name);
    free(r->f.flight_id);
    for (size_t i = 0; i < r->f.n_fields; i++) {
        free(r->entries[i].key);
        free(r->entries[i].value);
    }
}

static bool has_nul(aero_str s)
{
    return s.len && memchr(s.ptr, '\0', s.len) != NULL;
}

static bool same_cstr(aero_str s, const char *c)
{
    return strlen(c) == s.len && memcmp(s.ptr, c, s.len) == 0;
}

/* Where both decoders accept, they must agree (strings with NUL excepted:
 * protobuf-c cuts them). Returns false on a disagreement. */
static bool agrees_with_protobuf_c(const struct decoded *d, const uint8_t *buf, size_t len)
{
    PbFrame *pb = aeroarc__agent__v1__telemetry_frame__unpack(NULL, len, buf);
    bool ok = true;

    if (pb == NULL)
        return true;
    aero_str strs[] = {d->wire.session_id, d->wire.agent_id, d->view.dialect,
                       d->view.msg_name, d->view.flight_id};
    const char *cs[] = {pb->session_id, pb->agent_id, pb->dialect, pb->msg_name,
                        pb->flight_id};
    for (size_t i = 0; i < 5; i++)
        ok = ok && (has_nul(strs[i]) || same_cstr(strs[i], cs[i]));
    ok = ok && d->view.seq == pb->seq && d->view.sent_at_unix_ns == pb->sent_at_unix_ns &&
         same_double(d->view.device_timestamp_sec, pb->device_timestamp_sec) &&
         d->view.msg_id == pb->msg_id &&
         str_is(d->view.raw_mavlink, (const char *)pb->raw_mavlink.data, pb->raw_mavlink.len);
    aero_kv want[CAP];
    bool any_nul = false;
    for (size_t i = 0; i < d->view.n_fields; i++)
        any_nul = any_nul || has_nul(d->fields[i].key) || has_nul(d->fields[i].value);
    if (ok && !any_nul && pb->n_fields <= CAP) {
        size_t n = expected_map(pb, want);
        ok = n == d->view.n_fields;
        for (size_t i = 0; ok && i < n; i++)
            ok = str_is(d->fields[i].key, want[i].key.ptr, want[i].key.len) &&
                 str_is(d->fields[i].value, want[i].value.ptr, want[i].value.len);
    }
    aeroarc__agent__v1__telemetry_frame__free_unpacked(pb, NULL);
    return ok;
}

Test(frame_decode, random_frames_match_protobuf_c)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull, s = seed;

    for (int iter = 0; iter < 20000; iter++) {
        struct rnd_frame r;
        struct decoded d;
        size_t len;

        rnd_frame_fill(&r, &s);
        uint8_t *buf = pack_frame(&r.f, &len);
        decode(&d, buf, len);
        assert_matches(&d, &r.f, buf, len);
        free(buf);
        rnd_frame_free(&r);
    }
}

/* Mutate valid frames (flip, insert, delete, truncate, splice bytes):
 * the decoder must never crash or read out of bounds (ASan builds), every
 * view string must lie inside the input, and where protobuf-c also accepts
 * the bytes both must agree. */
static void mutate(uint8_t *buf, size_t *len, size_t cap, uint64_t *s)
{
    size_t ops = 1 + rnd_below(s, 4);

    for (size_t k = 0; k < ops; k++) {
        size_t at = rnd_below(s, *len + 1);
        switch (rnd_below(s, 5)) {
        case 0:
            if (at < *len)
                buf[at] ^= (uint8_t)(1u << rnd_below(s, 8));
            break;
        case 1:
            if (at < *len)
                buf[at] = (uint8_t)rnd(s);
            break;
        case 2:
            if (*len < cap) {
                memmove(buf + at + 1, buf + at, *len - at);
                buf[at] = (uint8_t)rnd(s);
                (*len)++;
            }
            break;
        case 3:
            if (at < *len) {
                memmove(buf + at, buf + at + 1, *len - at - 1);
                (*len)--;
            }
            break;
        default:
            *len = at;
            break;
        }
    }
}

static bool inside(aero_str str, const uint8_t *buf, size_t len)
{
    const char *b = (const char *)buf;

    if (str.len == 0)
        return str.ptr != NULL;
    return str.ptr >= b && str.len <= len && str.ptr - b <= (ptrdiff_t)(len - str.len);
}

Test(frame_decode, random_mutations_never_crash)
{
    uint64_t s = 0xdeadbeefcafef00dull;
    size_t results[3] = {0};

    for (int iter = 0; iter < 20000; iter++) {
        struct rnd_frame r;
        struct decoded d;
        size_t len;

        rnd_frame_fill(&r, &s);
        uint8_t *packed = pack_frame(&r.f, &len);
        uint8_t work[4096];
        cr_assert_leq(len + 64, sizeof(work));
        memcpy(work, packed, len);
        mutate(work, &len, sizeof(work), &s);
        uint8_t *exact = malloc(len ? len : 1);
        memcpy(exact, work, len);
        decode_cap(&d, exact, len, 1 + rnd_below(&s, CAP));
        results[-d.rc]++;
        if (d.rc != FRAME_DECODE_MALFORMED) {
            cr_assert(inside(d.view.msg_name, exact, len) && inside(d.view.dialect, exact, len) &&
                      inside(d.view.flight_id, exact, len) &&
                      inside(d.view.raw_mavlink, exact, len) &&
                      inside(d.wire.agent_id, exact, len) &&
                      inside(d.wire.session_id, exact, len));
            for (size_t i = 0; i < d.view.n_fields; i++)
                cr_assert(inside(d.fields[i].key, exact, len) &&
                          inside(d.fields[i].value, exact, len));
            (void)frame_validate(&d.view, &d.wire, cstr("drone-1"), NULL);
        }
        if (d.rc == FRAME_DECODE_OK)
            cr_assert(agrees_with_protobuf_c(&d, exact, len), "iteration %d", iter);
        free(exact);
        free(packed);
        rnd_frame_free(&r);
    }
    /* the mutations must exercise both outcomes to mean anything */
    cr_assert_gt(results[0], 1000);
    cr_assert_gt(results[1], 1000);
}

/* The wire helpers the command path passes bytes on with. */
Test(frame_codec, wire_find_len_and_wrap)
{
    /* {1: "ab", 2: varint 5, 1: "xyz"} */
    static const uint8_t m[] = {0x0a, 2, 'a', 'b', 0x10, 5, 0x0a, 3, 'x', 'y', 'z'};
    aero_str p;
    cr_assert_eq(frame_wire_find_len(m, sizeof(m), 1, &p), 2);
    cr_assert_eq(p.len, 3);
    cr_assert_eq(memcmp(p.ptr, "xyz", 3), 0, "the last occurrence");
    cr_assert_eq(frame_wire_find_len(m, sizeof(m), 2, &p), 0, "a varint is not length-delimited");
    cr_assert_eq(frame_wire_find_len(m, sizeof(m) - 1, 1, &p), -1, "cut short");
    size_t n = 0;
    uint8_t big[300];
    memset(big, 'q', sizeof(big));
    uint8_t *w = frame_wire_wrap(6, big, 200, big, 100, &n);
    cr_assert_not_null(w);
    static const uint8_t hdr[] = {0x32, 0xac, 0x02}; /* field 6, length 300 */
    cr_assert_eq(n, sizeof(hdr) + 300);
    cr_assert_eq(memcmp(w, hdr, sizeof(hdr)), 0);
    cr_assert_eq(frame_wire_find_len(w, n, 6, &p), 1);
    cr_assert_eq(p.len, 300);
    free(w);
}

/* Blank and trimmed as Go's strings.TrimSpace: every unicode.IsSpace rune,
 * of one, two or three bytes, at either end; inner spaces stay. */
Test(frame_trim, is_go_trimspace)
{
    aero_str t = frame_trim(cstr("\xe2\x80\xa8 \xc2\x85x \xe3\x80\x80y\t\xe2\x80\x8a\xc2\xa0\xe1\x9a\x80"));
    cr_assert_eq(t.len, 6);
    cr_assert_eq(memcmp(t.ptr, "x \xe3\x80\x80y", 6), 0);
    cr_assert_eq(frame_trim(cstr("\xe2\x80\xaf\xe2\x81\x9f\xe2\x80\xa9")).len, 0);
    /* Not spaces: U+200B (zero width) and U+180E (no longer Zs). */
    cr_assert_eq(frame_trim(cstr("\xe2\x80\x8b")).len, 3);
    cr_assert_eq(frame_trim(cstr("\xe1\xa0\x8e")).len, 3);
}
