/*
 * http_server.c - /metrics, /healthz and /readyz over libmicrohttpd. A
 * connection first waits at our gate (one thread, "http-gate"): it is
 * handed to MHD only once its request headers are all in, within
 * HTTP_HEADER_TIMEOUT_MS of its accept however slowly they trickle, so a
 * slowloris client never holds one of MHD's slots; the gate holds at most
 * GATE_PER_IP connections per address and GATE_MAX in all, and makes room
 * by closing the oldest, so a new probe always gets in. MHD's one internal
 * polling thread then serves the request (a per-address and a total
 * connection limit, an idle timeout) and closes the connection after its
 * answer. Neither thread ever blocks a gRPC or sink thread. Request
 * handlers read atomics and render the registry under its registration
 * lock; they must not touch anything else of the relay.
 */
#include "http_server.h"

#include "log.h"
#include "metrics.h"
#include "readiness.h"
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Enough for Prometheus, a few probes and an operator's curl; a flood of
 * idle connections is cut off by the timeout rather than piling up. */
#define HTTP_CONNECTION_LIMIT 64
#define HTTP_PER_IP_LIMIT 16
#define HTTP_IDLE_TIMEOUT_S 10
#define HTTP_LISTEN_BACKLOG 64

/* The gate: a connection's request headers must be complete this long
 * after its accept (a byte now and then does not stretch it), and fit in
 * GATE_HEADER_MAX bytes (MHD's own buffer is smaller anyway). */
#define HTTP_HEADER_TIMEOUT_MS 5000
#define GATE_HEADER_MAX 8192
#define GATE_MAX 128
#define GATE_PER_IP 8
#define GATE_REPEEK_MS 20 /* a connection's bytes are looked at at most this often */

#define CT_JSON "application/json"
#define CT_TEXT "text/plain; charset=utf-8"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

/* A connection waiting at the gate for the end of its headers. */
struct pending {
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int64_t accepted_ms, next_peek_ms;
};

enum gate_drop { DROP_TIMEOUT, DROP_EVICTED, DROP_TOO_LARGE, DROP_REASONS };

struct http_server {
    struct MHD_Daemon *daemon;
    struct relay *relay;
    int port;
    int listen_fd;
    int wake[2]; /* a pipe: stop wakes the gate */
    pthread_t gate;
    bool gate_started;
    struct pending pending[GATE_MAX];
    size_t n_pending;
    int64_t accept_after_ms; /* accept paused until then (out of descriptors) */
    aero_metric *dropped[DROP_REASONS];
    _Atomic long long last_log_s; /* rate limit of on_mhd_log */
    /* Fixed answers, built once and shared by every request (MHD counts
     * references, so queueing one from its thread needs no lock). */
    struct MHD_Response *ok, *not_ready, *not_found, *not_allowed, *render_failed;
    aero_metric *ready;
};

static struct MHD_Response *fixed_response(const char *body, const char *type)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r && (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES ||
              MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES)) {
        MHD_destroy_response(r);
        r = NULL;
    }
    return r;
}

static bool is_ready(const struct relay *relay)
{
    return atomic_load(&relay->ready) && !atomic_load(&relay->shutting_down);
}

static enum MHD_Result serve_metrics(struct http_server *h, struct MHD_Connection *c)
{
    char *body = NULL;
    size_t len = 0;
    char unready[READINESS_BODY_MAX + 32];
    metrics_set(h->ready, is_ready(h->relay) && /* what /readyz would answer now */
                              !readiness_unready(h->relay->readiness, unready, sizeof(unready)));
    if (metrics_render(h->relay->metrics, &body, &len) < 0) {
        free(body);
        return MHD_queue_response(c, MHD_HTTP_INTERNAL_SERVER_ERROR, h->render_failed);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO; /* MHD closes the connection */
    }
    enum MHD_Result rc = MHD_NO;
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CT_METRICS) == MHD_YES &&
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES)
        rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r); /* the queued reference keeps it alive */
    return rc;
}

/*
 * /readyz. Ready: 200 {"status":"ok"} exactly as SPEC.md section 3 says,
 * with the details plugins added (readiness.h), e.g.
 * {"status":"ok","registry":"unavailable"}. Not ready: 503
 * {"status":"not ready"} (starting, stopping, no listener), or, for a
 * failing sink, naming it and its reason. A 503 for a failing sink, and
 * every answer to /readyz?verbose, also lists every sink's and route's
 * state ("components"): the plain 200 body stays SPEC's, which probes and
 * load balancers may match byte for byte.
 */
static enum MHD_Result serve_ready(struct http_server *h, struct MHD_Connection *c)
{
    bool verbose = MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "verbose", 7, NULL,
                                                 NULL) == MHD_YES;
    char details[READINESS_MAX * (2 * READINESS_TEXT_MAX + 8) + 1];
    char head[sizeof(details) + READINESS_BODY_MAX + 32];
    unsigned status = MHD_HTTP_OK;
    if (!is_ready(h->relay)) {
        if (!verbose)
            return MHD_queue_response(c, MHD_HTTP_SERVICE_UNAVAILABLE, h->not_ready);
        status = MHD_HTTP_SERVICE_UNAVAILABLE;
        snprintf(head, sizeof(head), "{\"status\":\"not ready\"}");
    } else if (readiness_unready(h->relay->readiness, head, sizeof(head))) {
        status = MHD_HTTP_SERVICE_UNAVAILABLE; /* a component failing, and why */
        verbose = true;
    } else if (readiness_render(h->relay->readiness, details, sizeof(details)) == 0 &&
               !verbose) {
        return MHD_queue_response(c, MHD_HTTP_OK, h->ok);
    } else {
        snprintf(head, sizeof(head), "{\"status\":\"ok\"%s}", details);
    }
    char *body = NULL;
    char *components = verbose ? readiness_render_components(h->relay->readiness) : NULL;
    if (verbose && !components)
        return MHD_NO; /* out of memory: MHD closes the connection */
    /* head ends in "}": the components go before its closing brace */
    int n = components ? asprintf(&body, "%.*s%s}", (int)(strlen(head) - 1), head, components)
                       : asprintf(&body, "%s", head);
    free(components);
    if (n < 0)
        return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    enum MHD_Result rc = MHD_NO;
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CT_JSON) == MHD_YES)
        rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

/*
 * One request (MHD's thread). MHD calls this once the headers are in, then
 * again for each piece of body and once more at its end. A GET or HEAD of
 * one of our paths is answered at that last call; anything else (404, 405)
 * is answered at once (MHD then closes the connection rather than read a
 * body nobody wants). Every answer says "Connection: close": a kept-alive
 * connection's next request would reach MHD without passing the gate.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    static const char first_call_seen = 1; /* address used as a marker only */
    struct http_server *h = cls;
    (void)version;
    (void)upload_data;

    enum { EP_METRICS, EP_HEALTHZ, EP_READYZ, EP_NONE } ep =
        strcmp(url, "/metrics") == 0   ? EP_METRICS
        : strcmp(url, "/healthz") == 0 ? EP_HEALTHZ
        : strcmp(url, "/readyz") == 0  ? EP_READYZ
                                       : EP_NONE;
    bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
               strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    if (!get || ep == EP_NONE) {
        if (*req_cls == NULL) {
            *req_cls = (void *)&first_call_seen;
            if (!get && ep != EP_NONE)
                return MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, h->not_allowed);
            return MHD_queue_response(c, MHD_HTTP_NOT_FOUND, h->not_found);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*req_cls == NULL) {
        *req_cls = (void *)&first_call_seen;
        return MHD_YES;
    }
    if (*upload_data_size != 0) { /* a GET with a body: ignore it */
        *upload_data_size = 0;
        return MHD_YES;
    }
    switch (ep) {
    case EP_METRICS: return serve_metrics(h, c);
    case EP_HEALTHZ: return MHD_queue_response(c, MHD_HTTP_OK, h->ok);
    default: return serve_ready(h, c);
    }
}

/* MHD's own complaints (accept failures, clients hanging up mid-request)
 * as warn lines, at most one a second: a misbehaving scraper must not fill
 * the log. MHD's thread, or the main thread during start. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct http_server *h = cls;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long last = atomic_load(&h->last_log_s);
    if (last == (long long)ts.tv_sec ||
        !atomic_compare_exchange_strong(&h->last_log_s, &last, (long long)ts.tv_sec))
        return;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    log_msg(AERO_LOG_WARN, "http", "%s", line);
}

/* "host:port", "[v6]:port" or ":port" into its parts (host "" = any). */
static int split_listen(const char *addr, char *host, size_t hostlen, char *port,
                        size_t portlen)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon[1] == '\0')
        return -1;
    const char *h = addr;
    size_t n = (size_t)(colon - addr);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n >= hostlen || strlen(colon + 1) >= portlen)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    snprintf(port, portlen, "%s", colon + 1);
    return 0;
}

/* Our own socket, so a taken port is reported with its errno here rather
 * than as a bare failure of MHD_start_daemon. */
static int bind_listen(const char *addr, int *port_out, char *err, size_t errlen)
{
    char host[256], port[16];
    if (split_listen(addr, host, sizeof(host), port, sizeof(port)) < 0) {
        snprintf(err, errlen, "HTTP listen \"%s\": expected host:port", addr);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "HTTP listen \"%s\": %s", addr, gai_strerror(gai));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, HTTP_LISTEN_BACKLOG) < 0) {
            saved = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen for HTTP on %s: %s", addr, strerror(saved));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    *port_out = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* ------------------------------------------------------------ the gate */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return true; /* other families: one "address" */
}

/* Close pending[i] (counted under `why` unless DROP_REASONS: the client left). */
static void gate_drop(struct http_server *h, size_t i, enum gate_drop why)
{
    close(h->pending[i].fd);
    if (why < DROP_REASONS)
        metrics_inc(h->dropped[why]);
    h->pending[i] = h->pending[--h->n_pending];
}

/* A new connection: make room (the oldest of its address when that one
 * has GATE_PER_IP waiting, else the oldest of all when the gate is full),
 * then wait for its headers. */
static void gate_admit(struct http_server *h, int fd, const struct sockaddr_storage *addr,
                       socklen_t addrlen, int64_t now)
{
    size_t same = 0, oldest_same = 0, oldest = 0;
    for (size_t i = 0; i < h->n_pending; i++) {
        if (h->pending[i].accepted_ms < h->pending[oldest].accepted_ms)
            oldest = i;
        if (same_address(&h->pending[i].addr, addr)) {
            if (same == 0 || h->pending[i].accepted_ms < h->pending[oldest_same].accepted_ms)
                oldest_same = i;
            same++;
        }
    }
    if (same >= GATE_PER_IP)
        gate_drop(h, oldest_same, DROP_EVICTED);
    else if (h->n_pending == GATE_MAX)
        gate_drop(h, oldest, DROP_EVICTED);
    h->pending[h->n_pending++] = (struct pending){
        .fd = fd, .addr = *addr, .addrlen = addrlen, .accepted_ms = now, .next_peek_ms = now};
}

/* Look at pending[i]'s bytes without taking them: hand it to MHD once its
 * headers end. Returns true when it left the gate. */
static bool gate_peek(struct http_server *h, size_t i, int64_t now)
{
    static char buf[GATE_HEADER_MAX]; /* the gate thread's alone */
    struct pending *p = &h->pending[i];
    ssize_t n = recv(p->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return false;
    if (n <= 0) {
        gate_drop(h, i, DROP_REASONS); /* the client left, or an error */
        return true;
    }
    if (memmem(buf, (size_t)n, "\r\n\r\n", 4) || memmem(buf, (size_t)n, "\n\n", 2)) {
        struct pending taken = *p;
        h->pending[i] = h->pending[--h->n_pending];
        /* MHD owns the socket now, and closes it even when it refuses it
         * (connection limits: the refusal is MHD's to log). */
        MHD_add_connection(h->daemon, taken.fd, (const struct sockaddr *)&taken.addr,
                           taken.addrlen);
        return true;
    }
    if (n == (ssize_t)sizeof(buf)) {
        gate_drop(h, i, DROP_TOO_LARGE);
        return true;
    }
    p->next_peek_ms = now + GATE_REPEEK_MS;
    return false;
}

static void gate_log(struct http_server *h, const char *fmt, ...) AERO_PRINTF(2, 3);

static void gate_log(struct http_server *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    on_mhd_log(h, fmt, ap);
    va_end(ap);
}

/* Take every waiting connection. Out of descriptors, the listen socket
 * stays readable: look at it again only after a pause, not in a loop. */
static void gate_accept(struct http_server *h, int64_t now)
{
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof(addr);
        int fd = accept4(h->listen_fd, (struct sockaddr *)&addr, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                gate_log(h, "accept on the HTTP port failed: %s", strerror(errno));
                h->accept_after_ms = now + 100;
            }
            return;
        }
        gate_admit(h, fd, &addr, len, now);
    }
}

static void *gate_run(void *arg)
{
    struct http_server *h = arg;
    struct pollfd fds[2 + GATE_MAX];
    size_t idx[GATE_MAX];
    for (;;) {
        int64_t now = now_ms(), wait = 1000;
        fds[0] = (struct pollfd){.fd = h->wake[0], .events = POLLIN};
        fds[1] = (struct pollfd){.fd = h->accept_after_ms <= now ? h->listen_fd : -1,
                                 .events = POLLIN};
        if (h->accept_after_ms > now && h->accept_after_ms - now < wait)
            wait = h->accept_after_ms - now;
        nfds_t n = 2;
        for (size_t i = 0; i < h->n_pending; i++) {
            int64_t until = h->pending[i].accepted_ms + HTTP_HEADER_TIMEOUT_MS - now;
            if (h->pending[i].next_peek_ms <= now) {
                idx[n - 2] = i;
                fds[n++] = (struct pollfd){.fd = h->pending[i].fd, .events = POLLIN};
            } else if (h->pending[i].next_peek_ms - now < until) {
                until = h->pending[i].next_peek_ms - now;
            }
            if (until < wait)
                wait = until < 0 ? 0 : until;
        }
        if (poll(fds, n, (int)wait) < 0 && errno != EINTR)
            continue;
        if (fds[0].revents)
            return NULL; /* stop */
        now = now_ms();
        /* From the last, so a drop (which moves the last entry into its
         * place) never moves one not looked at yet. */
        for (nfds_t k = n; k-- > 2;)
            if (fds[k].revents)
                gate_peek(h, idx[k - 2], now);
        for (size_t i = h->n_pending; i-- > 0;)
            if (now - h->pending[i].accepted_ms >= HTTP_HEADER_TIMEOUT_MS)
                gate_drop(h, i, DROP_TIMEOUT);
        if (fds[1].revents)
            gate_accept(h, now);
    }
}

int http_server_start(struct http_server **out, const char *addr, struct relay *relay,
                      char *err, size_t errlen)
{
    int fd = -1;
    struct http_server *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "HTTP: out of memory");
        goto fail;
    }
    h->relay = relay;
    h->listen_fd = -1;
    h->wake[0] = h->wake[1] = -1;
    static const char *const reasons[DROP_REASONS] = {
        "reason=\"header_timeout\"", "reason=\"evicted\"", "reason=\"header_too_large\""};
    for (int i = 0; i < DROP_REASONS; i++)
        h->dropped[i] = metrics_register(
            relay->metrics, AERO_METRIC_COUNTER, "aero_relay_http_connections_dropped_total",
            "HTTP connections closed before their request reached the server: headers not "
            "complete within 5 s of the connect (header_timeout), the oldest waiting one "
            "closed to make room (evicted), headers over 8 KiB (header_too_large).",
            reasons[i]);
    h->ready = metrics_register(relay->metrics, AERO_METRIC_GAUGE, "aero_relay_ready",
                                "1 while /readyz answers 200, else 0.", NULL);
    h->ok = fixed_response("{\"status\":\"ok\"}", CT_JSON); /* SPEC.md section 3, exactly */
    h->not_ready = fixed_response("{\"status\":\"not ready\"}", CT_JSON);
    h->not_found = fixed_response("{\"status\":\"not found\"}", CT_JSON);
    h->not_allowed = fixed_response("{\"status\":\"method not allowed\"}", CT_JSON);
    h->render_failed = fixed_response("metrics unavailable: out of memory\n", CT_TEXT);
    if (!h->ok || !h->not_ready || !h->not_found || !h->not_allowed || !h->render_failed ||
        MHD_add_response_header(h->not_allowed, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") != MHD_YES) {
        snprintf(err, errlen, "HTTP: out of memory");
        goto fail;
    }
    fd = bind_listen(addr, &h->port, err, errlen);
    if (fd < 0)
        goto fail;
    h->listen_fd = fd;
    /* No listen socket of MHD's own: the gate hands it each connection. */
    h->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG |
            MHD_USE_NO_LISTEN_SOCKET,
        0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_CONNECTION_LIMIT,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)HTTP_PER_IP_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_IDLE_TIMEOUT_S, MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, errlen, "cannot start the HTTP server on %s (libmicrohttpd refused; see "
                 "the log above)", addr);
        goto fail;
    }
    if (pipe2(h->wake, O_CLOEXEC | O_NONBLOCK) < 0 ||
        pthread_create(&h->gate, NULL, gate_run, h) != 0) {
        snprintf(err, errlen, "cannot start the HTTP server on %s: %s", addr, strerror(errno));
        goto fail;
    }
    h->gate_started = true;
    pthread_setname_np(h->gate, "http-gate");
    *out = h;
    return 0;

fail:
    http_server_stop(h);
    return -1;
}

int http_server_port(const struct http_server *h) { return h ? h->port : 0; }

void http_server_stop(struct http_server *h)
{
    if (!h)
        return;
    if (h->gate_started) {
        (void)!write(h->wake[1], "x", 1);
        pthread_join(h->gate, NULL);
    }
    while (h->n_pending > 0)
        gate_drop(h, h->n_pending - 1, DROP_REASONS);
    if (h->listen_fd >= 0)
        close(h->listen_fd);
    for (int i = 0; i < 2; i++)
        if (h->wake[i] >= 0)
            close(h->wake[i]);
    if (h->daemon)
        MHD_stop_daemon(h->daemon); /* joins its thread, closes its connections */
    struct MHD_Response *fixed[] = {h->ok, h->not_ready, h->not_found, h->not_allowed,
                                    h->render_failed};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (fixed[i])
            MHD_destroy_response(fixed[i]);
    free(h);
}
