/*
 * http_client.h - a tiny blocking HTTP/1.1 client over plain sockets, for
 * tests of the relay's /metrics, /healthz and /readyz. One request per
 * connection (Connection: close); every call has a deadline. No criterion
 * here, so unit and integration tests can both use it.
 */
#ifndef AERO_TEST_HTTP_CLIENT_H
#define AERO_TEST_HTTP_CLIENT_H

#include <stddef.h>

struct http_reply {
    int status;             /* 200, 404, ... */
    char content_type[128]; /* "" when absent */
    char allow[64];         /* the Allow header, "" when absent */
    char *body;             /* malloc'ed, NUL-terminated; free with http_reply_free */
    size_t body_len;
};

/*
 * Send `method path` to 127.0.0.1:port and read the whole answer.
 * Returns 0, or -errno (-ETIMEDOUT past timeout_ms, -EPROTO for an answer
 * that is not HTTP). On error *out holds nothing to free.
 */
int http_request(int port, const char *method, const char *path, int timeout_ms,
                 struct http_reply *out);

/* http_request with GET; returns the status code, or -errno. */
int http_get_status(int port, const char *path, int timeout_ms);

void http_reply_free(struct http_reply *r);

/*
 * Run `promtool check metrics` with body on its standard input. Returns its
 * exit status (0 = valid), -errno if it could not be run; what it printed
 * goes into out (NUL-terminated, truncated to outlen).
 */
int http_promtool_check(const char *body, size_t len, char *out, size_t outlen);

/*
 * The value of the sample line `series` (exact text before the space, e.g.
 * `aero_relay_acks_total{status="ok"}`) in a /metrics body; -1 if missing.
 */
double http_metric_value(const char *body, const char *series);

#endif
