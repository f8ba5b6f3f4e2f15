/*
 * control_fixture.h - what the RelayControl tests share: certificates made
 * with openssl in the relay's directory (an agents' CA and server
 * certificate, a control CA and API client certificates), TLS channels,
 * and control calls that block on a thread of their own while a simulated
 * agent answers.
 */
#ifndef AERO_TEST_CONTROL_FIXTURE_H
#define AERO_TEST_CONTROL_FIXTURE_H

#include "harness.h"

#include <pthread.h>
#include <protobuf-c/protobuf-c.h>

enum { OK = 0, CANCELLED = 1, INVALID_ARGUMENT = 3, DEADLINE = 4, NOT_FOUND = 5,
       ALREADY_EXISTS = 6, PERMISSION_DENIED = 7, RESOURCE_EXHAUSTED = 8,
       FAILED_PRECONDITION = 9, ABORTED = 10, UNIMPLEMENTED = 12, INTERNAL = 13,
       UNAVAILABLE = 14, DATA_LOSS = 15, UNAUTHENTICATED = 16 };

/* Run cmd in the relay's directory; it must succeed. */
void fixture_sh(const struct relay_proc *relay, const char *cmd);

/*
 * In the relay's directory: ca.pem (agents' CA) and server.pem/.key for
 * localhost; cca.pem (control CA) with client certificates uri (SAN
 * spiffe://aero-arc/api), dns (api.aero.test), cn (CN aero-api), denied
 * (other identities); oca.pem (another CA) with foreign; chained (URI
 * SAN, issued by an intermediate of cca, sent with its chain).
 */
void fixture_pki(const struct relay_proc *relay);

/* The [tls] and [control] sections for fixture_pki's files. */
#define FIXTURE_TLS_CONTROL                                                               \
    "[tls]\ncert_file = %DIR%/server.pem\nkey_file = %DIR%/server.key\n"                 \
    "[control]\nclient_ca_file = %DIR%/cca-bundle.pem\n"                                          \
    "allowed_identities = aero-api, api.aero.test, spiffe://aero-arc/api\n"

/* keys.txt (0600) giving every agent id this key; returns the [auth]
 * section that uses it. */
const char *fixture_bearer_keys(const struct relay_proc *relay, const char *token);

/* A TLS channel trusting ca.pem: with client certificate `cert` (a name
 * above), or none and the bearer token (NULL: none). */
struct rc_channel *fixture_channel(const struct relay_proc *relay, const char *cert,
                                   const char *token);

/* One series of the relay's /metrics ([http] on), 0 when absent. */
double fixture_metric(const struct relay_proc *relay, const char *series);

/* Polls `series` until it is at least `at_least`; false after timeout_ms. */
bool fixture_metric_reaches(const struct relay_proc *relay, const char *series, double at_least,
                            int timeout_ms);

/* The agent's generation-2 stream on ch (session NULL: no session header),
 * returned once the relay has attached it ([http] on). A command asked at
 * once on another connection would otherwise race the stream's headers
 * and find "agent stream is not connected". */
struct rc_stream *fixture_open_gen2(const struct relay_proc *relay, struct rc_channel *ch,
                                    const char *agent, const char *session);

/* Close the channels (NULL ones skipped; both set NULL), stop the relay:
 * it must exit 0. */
void fixture_stop(struct relay_proc *relay, struct rc_channel **api, struct rc_channel **agents);

/* A unary control call running on its own thread. */
struct call {
    pthread_t thread;
    struct rc_channel *ch;
    const char *method;
    uint8_t *req;
    size_t req_len;
    int timeout_ms;
    struct rc_status st;
    uint8_t *resp;
    size_t resp_len;
    int done; /* __atomic: the call has its answer */
};

/*
 * An agent that stops reading its stream (SPEC.md 12.2 rule 13, 14.6
 * reading 5): fixture_slow_channel's streams keep a receive window of
 * window_bytes (65535: gRPC's 64 KiB; no BDP growth; token: a bearer key
 * or NULL), and
 * fixture_fill_window sends frames of agent/session on s without reading
 * until the relay takes no more (its acks filled the window and its read
 * credit is spent). Whatever the relay sends s next waits in its queue.
 */
struct rc_channel *fixture_slow_channel(const struct relay_proc *relay, const char *token,
                                        int window_bytes);
void fixture_fill_window(struct rc_stream *s, const char *agent, const char *session);

struct call *call_start(struct rc_channel *ch, const char *method, const ProtobufCMessage *req,
                        int timeout_ms);
/* The same with the request's bytes as given (copied). */
struct call *call_start_raw(struct rc_channel *ch, const char *method, const uint8_t *req,
                            size_t len, int timeout_ms);
void call_join(struct call *c);
void call_free(struct call *c);
/* Join c, check its code (and text unless NULL), free it. */
void expect_status(struct call *c, int code, const char *text);

#endif
