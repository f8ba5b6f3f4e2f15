/*
 * gateway_metrics.h - the AgentGateway's metrics (SPEC.md section 3):
 * registrations, frames, acks by status, streams by outcome, sessions,
 * ack latency. Registered once; updated lock-free from any thread.
 */
#ifndef AERO_GATEWAY_METRICS_H
#define AERO_GATEWAY_METRICS_H

#include "metrics.h"

/* Distinct message_type values before the rest count as "other": MAVLink
 * common has about 230 messages; agent-chosen names must not grow /metrics
 * without bound. */
#define MESSAGE_TYPES_MAX 256

struct gateway_metrics {
    aero_metric *registrations, *register_rejected, *frames, *bytes;
    aero_metric *acks[4]; /* by enum ack_status */
    aero_metric *streams_opened, *streams_refused;
    aero_metric *closed_ok, *closed_error, *closed_cancelled, *closed_superseded;
    aero_metric *sessions, *expired, *session_limit;
    struct metric_vec *messages; /* by msg_name, capped */
    struct metric_histogram *ack_latency;
    /* Generation 2 (SPEC.md section 9). */
    aero_metric *ignored[8];            /* by enum mux_arm */
    aero_metric *frames_without_wal_id;
    aero_metric *held, *held_refused;   /* generation-2 frames held for a full sink */
    /* ... and while the session's operation context is not reconciled */
    aero_metric *unreconciled_held, *unreconciled_refused;
    aero_metric *protocol_opened[3];    /* by enum stream_gen: [0] unused */
    aero_metric *protocol_closed[3];    /* [0]: the generation was never decided */
};

void gateway_metrics_register(struct gateway_metrics *gm, struct metrics *m);

#endif
