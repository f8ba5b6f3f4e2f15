/*
 * gateway_metrics.c - names, help texts and labels of the AgentGateway's
 * metrics, in one place. Main thread, at start.
 */
#include "gateway_metrics.h"

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
    gm->bytes = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_frame_bytes_received_total",
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
}
