/*
 * influx_line.h - InfluxDB 1.x line protocol for one frame: measurement =
 * msg_name, tags agent_id, aircraft_id, flight_id, intent_id, operator_id
 * (each when not empty) and protocol, one field per frame field plus the
 * frame's seq, intent_version, relay_id and wal_id (each when set),
 * timestamp in ns. Pure functions; no threads, no globals.
 */
#ifndef AERO_INFLUX_LINE_H
#define AERO_INFLUX_LINE_H

#include <aeroarc/plugin.h>
#include "line_proto.h"
#include <stddef.h>


/* How field values that look like integers are written. */
enum influx_ints {
    INFLUX_INTS_FLOAT = 0,   /* "42" -> 42: same type as "42.5" later */
    INFLUX_INTS_INTEGER = 1, /* "42" -> 42i */
};

/*
 * Append frame f as one line, '\n' included, to b. Whatever bytes the frame
 * holds, the line parses: invalid UTF-8 becomes U+FFFD; in the measurement,
 * tag values and field keys, control characters and '\' become '_' (line
 * protocol has no escape for them), a leading '#' of the measurement too
 * (it would make the line a comment); ',', ' ' and '=' are escaped. Field
 * values: complete decimal numbers stay numbers (see enum influx_ints),
 * "NaN"/"Inf" spellings are left out (InfluxDB stores no non-finite
 * float), anything else is a string. A frame field named seq, time, or like
 * a tag or field the sink writes itself (agent_id, flight_id, protocol,
 * wal_id, intent_id, intent_version, relay_id, operator_id, aircraft_id) is
 * written as field_<name>, whether or not this frame has a value for the
 * name. The ABI 1.1 frame fields are read only when the frame has them
 * (AERO_HAS); protocol 0 counts as seed. Timestamp: sent_at_unix_ns,
 * or the relay's receive time when it is 0.
 * Returns 0 or -ENOMEM (b is left as it was).
 */
int influx_line_append(struct lp_buf *b, const aero_frame *f,
                       enum influx_ints ints);

#endif
