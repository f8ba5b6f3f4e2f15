/*
 * mqtt_link.h - one sink-mqtt instance's connection to the broker: the
 * libmosquitto client, the network thread that drives it and reconnects
 * with exponential backoff, and the table that turns PUBACK/PUBCOMP
 * callbacks into per-message outcomes for the sink thread.
 *
 * Threads: create/destroy on the main thread; gate, publish and wait on the
 * sink thread (one at a time); libmosquitto's callbacks on the link's own
 * network thread.
 */
#ifndef AERO_MQTT_LINK_H
#define AERO_MQTT_LINK_H

#include <aeroarc/plugin.h>
#include <stddef.h>
#include <stdint.h>

struct mqtt_link;

struct mqtt_link_opts {
    const char *host;
    int port;
    const char *client_id;
    const char *username;  /* NULL or "": no authentication */
    const char *password;
    int tls;               /* nonzero: TLS; ca_file NULL/"" = system CAs */
    const char *ca_file;
    const char *cert_file; /* client certificate (both or neither) */
    const char *key_file;
    int insecure;          /* skip the server host name check */
    int keepalive_s;
    int max_inflight;      /* QoS 1/2 messages on the wire at once */
    int qos;
    int reconnect_min_ms;  /* first reconnect delay, doubled per failure */
    int reconnect_max_ms;
};

/*
 * Create the client and start its network thread; the first connection
 * attempt runs before this returns (bounded wait) so a reachable broker is
 * connected before the first batch, and an unreachable one is no error:
 * the thread keeps trying. Returns 0 or -errno after logging why (bad TLS
 * files, out of memory). *out is set even on failure (destroy it).
 */
int mqtt_link_create(const aero_host *host, const struct mqtt_link_opts *o,
                     struct mqtt_link **out);

/*
 * Whether a batch may be published now: AERO_OK; AERO_RETRY while the
 * broker is not connected (known down: answered at once); AERO_BACKOFF
 * while more than max_inflight earlier messages still wait for an ack
 * (the broker is slow: do not queue more in the library). Starts a batch:
 * acknowledgements counted from here on belong to it.
 */
aero_result mqtt_link_gate(struct mqtt_link *l);

/*
 * Hand one message to libmosquitto. Returns 0 with its message id in *mid,
 * or the aero_result the frame gets (RETRY: connection lost / no memory;
 * REJECT: the broker's size limits refuse it).
 */
aero_result mqtt_link_publish(struct mqtt_link *l, const char *topic,
                              const void *payload, size_t len, int retain,
                              int *mid);

/*
 * QoS 1/2: wait until every message in mids[] whose results[i] is AERO_OK
 * has been acknowledged (PUBACK / PUBCOMP), the connection drops, or
 * timeout_ms passes. Acknowledged ones keep AERO_OK; the others become
 * AERO_RETRY (connection lost) or AERO_BACKOFF (no ack in time), and are
 * remembered as unacknowledged until the broker acks them after all.
 * Returns how many were acknowledged.
 */
size_t mqtt_link_wait(struct mqtt_link *l, const int *mids, size_t n,
                      aero_result *results, int timeout_ms);

/* Disconnect, stop the network thread, free. NULL is a no-op. */
void mqtt_link_destroy(struct mqtt_link *l);

#endif
