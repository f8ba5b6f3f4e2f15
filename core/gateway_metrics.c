/*
 * gateway_metrics.c - names, help texts and labels of the AgentGateway's
 * metrics, in one place. Main thread, at start.
 */
#include "gateway_metrics.h"

#include "frame_codec.h"

#include <stdio.h>

void gateway_metrics_register(struct gateway_metrics *gm, struct metrics *m)
{
    static const char *ack_labels[4] = {"status=\"ok\"", "status=\"temporary_error\"",
                                        "status=\"permanent_error\"",
                                        "status=\"retry_with_backoff\""};
    gm->registrations = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_registrations_total",
                                           "Successful Register calls.", NULL);
    gm->register_rejected =
        metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_registrations_rejected_total",
                         "Register calls refused (bad request).", NULL);
    gm->frames = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_frames_accepted_total",
                                    "Frames handed to the sinks.", NULL);
    gm->bytes = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_frames_received_bytes_total",
                                   "Bytes of TelemetryFrame messages received.", NULL);
    for (int i = 0; i < 4; i++)
        gm->acks[i] = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_acks_total",
                                         "Acks by status.", ack_labels[i]);
    gm->streams_opened = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_streams_opened_total",
                                            "Telemetry streams accepted.", NULL);
    gm->streams_refused =
        metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_streams_refused_total",
                         "Telemetry streams refused at open (bad header, not registered).", NULL);
    const char *help = "Telemetry streams ended, by outcome.";
    gm->closed_ok = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_streams_closed_total",
                                       help, "outcome=\"ok\"");
    gm->closed_error = metrics_register(m, AERO_METRIC_COUNTER,
                                          "aero_relay_streams_closed_total", help,
                                          "outcome=\"error\"");
    gm->closed_cancelled = metrics_register(m, AERO_METRIC_COUNTER,
                                              "aero_relay_streams_closed_total", help,
                                              "outcome=\"cancelled\"");
    gm->closed_superseded = metrics_register(m, AERO_METRIC_COUNTER,
                                               "aero_relay_streams_closed_total", help,
                                               "outcome=\"superseded\"");
    gm->sessions = metrics_register(m, AERO_METRIC_GAUGE, "aero_relay_sessions_active",
                                      "Sessions in the table.", NULL);
    gm->expired = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_sessions_expired_total",
                                     "Sessions whose stream never opened within ttl_s.", NULL);
    gm->session_limit = metrics_register(m, AERO_METRIC_COUNTER,
                                           "aero_relay_sessions_rejected_total",
                                           "Register calls refused: max_sessions reached.", NULL);
    gm->messages = metrics_vec_register(
        m, "aero_relay_messages_total",
        "Frames accepted (handed to the sinks), by msg_name; past 256 names: \"other\".",
        "source=\"grpc\"", "message_type", MESSAGE_TYPES_MAX, "other");
    static const double ack_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                         0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                         1,      2.5,     5,      10};
    gm->ack_latency = metrics_histogram_register(
        m, "aero_relay_ack_latency_seconds",
        "Time from reading a frame to its ack's send completing, any status.", ack_buckets,
        sizeof(ack_buckets) / sizeof(ack_buckets[0]));
    const char *ign = "Generation-2 stream messages skipped: a payload nobody handles, by arm "
                      "(\"unknown\": only other field numbers; \"empty\": no field).";
    for (int arm = MUX_EMPTY; arm <= MUX_UNKNOWN; arm++) {
        char label[64];
        snprintf(label, sizeof(label), "payload=\"%s\"", frame_mux_arm_name((enum mux_arm)arm));
        if (arm != MUX_FRAME)
            gm->ignored[arm] = metrics_register(m, AERO_METRIC_COUNTER,
                                                "aero_relay_stream_messages_ignored_total", ign,
                                                label);
    }
    gm->frames_without_wal_id =
        metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_frames_without_wal_id_total",
                         "Generation-2 frames accepted without a wal_id (agents built before "
                         "field 14).",
                         NULL);
    gm->held = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_frames_held_total",
                                "Generation-2 frames whose ack was held while a sink's queue "
                                "was full (SPEC section 9).",
                                NULL);
    gm->held_refused = metrics_register(
        m, AERO_METRIC_COUNTER, "aero_relay_frames_held_refused_total",
        "Held generation-2 frames answered RETRY_WITH_BACKOFF after gen2_hold_s.", NULL);
    gm->unreconciled_held = metrics_register(
        m, AERO_METRIC_COUNTER, "aero_relay_frames_held_unreconciled_total",
        "Generation-2 frames whose ack was held while the session's operation context was not "
        "reconciled (SPEC section 9 step 8).",
        NULL);
    gm->unreconciled_refused = metrics_register(
        m, AERO_METRIC_COUNTER, "aero_relay_frames_refused_unreconciled_total",
        "Generation-2 frames answered RETRY_WITH_BACKOFF because the session's operation "
        "context was still not reconciled.",
        NULL);
    static const char *proto_labels[3] = {"protocol=\"undecided\"", "protocol=\"seed\"",
                                          "protocol=\"multiplexed\""};
    for (int i = 0; i < 3; i++) {
        if (i > 0)
            gm->protocol_opened[i] = metrics_register(
                m, AERO_METRIC_COUNTER, "aero_relay_protocol_streams_opened_total",
                "Telemetry streams by the protocol generation chosen for them.", proto_labels[i]);
        gm->protocol_closed[i] = metrics_register(
            m, AERO_METRIC_COUNTER, "aero_relay_protocol_streams_closed_total",
            "Telemetry streams ended, by protocol generation (undecided: ended before any "
            "message).",
            proto_labels[i]);
    }
}
