/*
 * mqtt_topic.h - the sink-mqtt topic template: compiled once in create(),
 * rendered per frame on the sink thread. No threads, no globals.
 */
#ifndef AERO_MQTT_TOPIC_H
#define AERO_MQTT_TOPIC_H

#include <aeroarc/plugin.h>
#include <stddef.h>

/* MQTT caps a topic at 65535 bytes (a 16-bit length). */
#define MQTT_TOPIC_MAX 65535

struct mqtt_topic;

/*
 * Compile `tmpl` ("telemetry/{agent_id}/{msg_name}"). Placeholders:
 * {agent_id} {msg_name} {msg_id} {flight_id} {session_id} {dialect}
 * {relay_id} {instance}, and from the ABI 1.1 frame fields {protocol}
 * ("seed" | "multiplexed") {wal_id} {intent_id} {intent_version} (decimal,
 * "0" when unset) {operator_id} {aircraft_id} (empty when the frame has no
 * value: an empty level). The literal text must be valid UTF-8 without
 * control characters, '+' or '#' (MQTT wildcards cannot be published to).
 * relay_id and instance are copied. Returns 0, or -EINVAL with the reason in
 * err, or -ENOMEM. *out is freed with mqtt_topic_free().
 */
int mqtt_topic_compile(const char *tmpl, const char *relay_id,
                       const char *instance, struct mqtt_topic **out,
                       char *err, size_t errlen);

/*
 * Render the topic of frame f into buf[0..cap), NUL-terminated. Substituted
 * values are sanitised so the topic is always publishable and never adds a
 * level: '+', '#', '/', control characters, Unicode non-characters and
 * every byte of invalid UTF-8 become '_'. Works like snprintf: returns the
 * length the topic needs (without the NUL); >= cap means buf is incomplete.
 */
size_t mqtt_topic_render(const struct mqtt_topic *t, const aero_frame *f,
                         char *buf, size_t cap);

void mqtt_topic_free(struct mqtt_topic *t);

#endif
