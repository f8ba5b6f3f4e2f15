/*
 * frame_ext.h - the fields aero_frame gained in plugin ABI 1.1 (protocol,
 * wal_id, intent_id, intent_version, relay_id, operator_id, aircraft_id),
 * read safely: each only when AERO_HAS says the frame has it, a string whose
 * ptr is NULL read as empty (tests build frames with zeroed fields), and a
 * zero or unknown protocol read as seed, as core/envelope_json.c does.
 * Header-only, pure; compiled into each plugin that includes it.
 */
#ifndef AERO_PLUGIN_FRAME_EXT_H
#define AERO_PLUGIN_FRAME_EXT_H

#include <aeroarc/plugin.h>

#include <stddef.h>
#include <stdint.h>

struct frame_ext {
    aero_protocol protocol; /* AERO_PROTOCOL_SEED or AERO_PROTOCOL_MULTIPLEXED */
    aero_str wal_id;        /* every string: ptr never NULL, len 0 when empty */
    aero_str intent_id;
    uint32_t intent_version;
    aero_str relay_id;
    aero_str operator_id;
    aero_str aircraft_id;
};

static inline aero_str frame_ext_str_(aero_str s)
{
    if (s.ptr == NULL || s.len == 0)
        return (aero_str){"", 0};
    return s;
}

/* The 1.1 fields of f, defaults for those a frame does not have. */
static inline struct frame_ext frame_ext_of(const aero_frame *f)
{
    struct frame_ext x = {
        .protocol = AERO_PROTOCOL_SEED,
        .wal_id = {"", 0}, .intent_id = {"", 0}, .relay_id = {"", 0},
        .operator_id = {"", 0}, .aircraft_id = {"", 0},
    };
    if (AERO_HAS(f, aero_frame, protocol) && f->protocol == AERO_PROTOCOL_MULTIPLEXED)
        x.protocol = AERO_PROTOCOL_MULTIPLEXED;
    if (AERO_HAS(f, aero_frame, wal_id))
        x.wal_id = frame_ext_str_(f->wal_id);
    if (AERO_HAS(f, aero_frame, intent_id))
        x.intent_id = frame_ext_str_(f->intent_id);
    if (AERO_HAS(f, aero_frame, intent_version))
        x.intent_version = f->intent_version;
    if (AERO_HAS(f, aero_frame, relay_id))
        x.relay_id = frame_ext_str_(f->relay_id);
    if (AERO_HAS(f, aero_frame, operator_id))
        x.operator_id = frame_ext_str_(f->operator_id);
    if (AERO_HAS(f, aero_frame, aircraft_id))
        x.aircraft_id = frame_ext_str_(f->aircraft_id);
    return x;
}

/* "seed" or "multiplexed": the envelope's `protocol` value. */
static inline const char *frame_ext_protocol_name(aero_protocol p)
{
    return p == AERO_PROTOCOL_MULTIPLEXED ? "multiplexed" : "seed";
}

/* Whether the frame has an intent to report: an intent_id, or a version
 * without one (written as the agent sent it). */
static inline int frame_ext_has_intent_version(const struct frame_ext *x)
{
    return x->intent_id.len > 0 || x->intent_version != 0;
}

#endif
