/*
 * http_server.h - the operator's HTTP endpoints (SPEC.md section 3):
 * GET /metrics, /healthz, /readyz on [http] listen, served by
 * libmicrohttpd's own thread.
 */
#ifndef AERO_HTTP_SERVER_H
#define AERO_HTTP_SERVER_H

#include <stddef.h>

struct http_server;
struct relay;

/*
 * Bind `addr` ("host:port"; port 0 = any free port) and start serving.
 * Reads relay->metrics, relay->ready and relay->shutting_down, which must
 * outlive the server. Returns 0, or -1 with a one-line reason in err (the
 * address cannot be resolved or bound, or the server cannot start).
 */
int http_server_start(struct http_server **out, const char *addr, struct relay *relay,
                      char *err, size_t errlen);

/* The bound TCP port (useful when listen asked for port 0). */
int http_server_port(const struct http_server *h);

/* Stop serving, wait for the server's thread, free. NULL is fine. */
void http_server_stop(struct http_server *h);

#endif
