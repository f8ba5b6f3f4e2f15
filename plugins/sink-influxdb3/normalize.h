/*
 * normalize.h - SPEC.md section 13 for one frame: the message name's
 * canonical form, the eight normalizers (one table per message, walked by
 * one function), the base checks, and the aircraft_telemetry line with its
 * four tags, common fields, frame_id and timestamp. Pure: no I/O, no
 * threads; a normalize_ctx is read-only after normalize_create, so any
 * number of threads may share one.
 */
#ifndef AERO_INFLUX3_NORMALIZE_H
#define AERO_INFLUX3_NORMALIZE_H

#include <aeroarc/plugin.h>

#include "line_proto.h"

#include <stddef.h>

/* The eight messages, in SPEC 13.1 rule 2's order; NORMALIZE_N_MESSAGES
 * when a name is none of them. */
enum normalize_message {
    NZ_GLOBAL_POSITION_INT,
    NZ_BATTERY_STATUS,
    NZ_HEARTBEAT,
    NZ_SYS_STATUS,
    NZ_VFR_HUD,
    NZ_EXTENDED_SYS_STATE,
    NZ_GPS_RAW_INT,
    NZ_SYSTEM_TIME,
    NORMALIZE_N_MESSAGES
};

/* What became of a frame (SPEC 13.9 rule 1's order). */
enum normalize_outcome {
    NZ_ROW,         /* its line was appended */
    NZ_UNSUPPORTED, /* not one of the eight: OK, nothing written */
    NZ_NO_WAL_ID,   /* a seed frame or an empty wal_id: OK, nothing written */
    NZ_FAILED,      /* base check or message rule failed: detail in err */
    NZ_NOMEM,
};

struct normalize_ctx;

/* relay_id: the rows' relay_id field (copied). 0 or -ENOMEM. */
int normalize_create(const char *relay_id, struct normalize_ctx **out);
void normalize_destroy(struct normalize_ctx *c);

/* The canonical name of the eight (e.g. "vfr_hud"). */
const char *normalize_message_name(enum normalize_message m);

/*
 * SPEC 13.1 rule 1: name[0..len) canonicalized into out[0..cap) (always
 * NUL-terminated, cut at cap - 1); returns the canonical length.
 */
size_t normalize_canonical_name(const char *name, size_t len, char *out, size_t cap);

/* Which of the eight msg_name names, or NORMALIZE_N_MESSAGES. */
enum normalize_message normalize_lookup(const char *name, size_t len);

/*
 * Normalize f and append its line ('\n' included) to b. *msg gets the
 * message (NORMALIZE_N_MESSAGES when unsupported). NZ_FAILED puts the
 * detail ("required field Lon is missing") into err[0..errlen); the line
 * is never half written (b is left as it was on anything but NZ_ROW).
 */
enum normalize_outcome normalize_frame(const struct normalize_ctx *c, const aero_frame *f,
                                       struct lp_buf *b, enum normalize_message *msg,
                                       char *err, size_t errlen);

/* Go's strconv.FormatFloat(v, 'g', -1, 64) into out (>= 32 bytes): the
 * shortest text that reads back as v, exponent form below 1e-4 and from
 * 1e+06 on. Returns the length. */
size_t normalize_format_float(double v, char *out);

#endif
