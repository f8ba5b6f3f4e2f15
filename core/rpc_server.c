/*
 * rpc_server.c - the gRPC server and its completion-queue workers. Each
 * registered method keeps a few calls requested ahead so bursts of new
 * streams are admitted without a round trip through a worker; every event
 * is dispatched to the rpc_tag it carries. Unknown methods get UNIMPLEMENTED.
 */
#include "rpc_server.h"

#include "log.h"
#include "metrics.h"
#include "mono_clock.h"
#include "rpc_internal.h"
#include "rpc_unary.h"
#include "worker_ctx.h"
#include "worker_gate.h"

#include <errno.h>
#include <limits.h>
#include <grpc/grpc_security.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_METHODS 16

struct method {
    char *path;
    rpc_stream_handler stream;          /* a streaming method, or */
    rpc_unary_handler unary;            /* a unary one ... */
    const ProtobufCMessageDescriptor *request; /* ... and its request */
    aero_metric *malformed;                    /* requests that did not unpack */
    void *service;
    void *handle; /* from grpc_server_register_method */
};

/* One outstanding request for a new call. */
struct request {
    struct rpc_tag tag;
    struct rpc_server *server;
    struct method *method;        /* NULL: the catch-all for unknown methods */
    struct rpc_call *call;
    grpc_call_details details;    /* catch-all only */
};

struct rpc_server {
    struct rpc_server_options opt;
    grpc_server *server;
    grpc_completion_queue *cq;
    struct method methods[MAX_METHODS];
    size_t n_methods;
    pthread_t *workers;
    struct worker_ctx **ctx; /* one per worker, passed to everything it dispatches */
    int n_workers;
    int started_workers;
    struct worker_gate *gate;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool shutdown_done;
    struct rpc_tag shutdown_tag;
};

static int arm(struct rpc_server *s, struct method *m);

/* Events a worker handles back to back before calling after_burst, so a
 * busy worker still flushes what it deferred every so often. */
#define BURST_MAX 32

/* A wait for the first event longer than this means the worker was idle:
 * the event came alone (light load). */
#define IDLE_WAIT_NS 20000

static bool dispatch(grpc_event ev, struct worker_ctx *w)
{
    if (ev.type != GRPC_OP_COMPLETE)
        return false;
    struct rpc_tag *tag = ev.tag;
    tag->done(tag, ev.success != 0, w);
    return true;
}

/* What a worker thread starts with. */
struct worker_arg {
    struct rpc_server *server;
    int id;
};

/*
 * Wait for an event. If a handler deferred work (sink writes), go on with
 * every event already queued (a non-blocking next), then call after_burst:
 * the deferred work is done once per burst instead of once per event.
 * Only a busy worker defers: one that had to wait for its event would
 * only poll an empty queue with the non-blocking next, and that hands
 * gRPC's poller role to the other worker and back. Between events the
 * gate may keep the worker off the queue while the load does not need it.
 */
static void *worker_main(void *argp)
{
    struct worker_arg arg = *(struct worker_arg *)argp;
    free(argp);
    struct rpc_server *s = arg.server;
    struct worker_ctx *w = s->ctx[arg.id];
    bool down = false;
    while (!down) {
        int64_t t0 = mono_ns();
        if (worker_gate_pass(s->gate, arg.id, t0))
            t0 = mono_ns(); /* it was parked */
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        down = ev.type == GRPC_QUEUE_SHUTDOWN;
        int64_t t1 = mono_ns();
        worker_gate_busy(s->gate, arg.id, t1);
        w->busy = t1 - t0 < IDLE_WAIT_NS;
        w->deferred = false;
        dispatch(ev, w);
        for (int n = 1; w->deferred && !down && n < BURST_MAX; n++) {
            ev = grpc_completion_queue_next(s->cq, gpr_inf_past(GPR_CLOCK_MONOTONIC), NULL);
            down = ev.type == GRPC_QUEUE_SHUTDOWN;
            if (!dispatch(ev, w))
                break;
        }
        w->busy = false;
        if (w->deferred && s->opt.after_burst)
            s->opt.after_burst(s->opt.after_burst_arg, w);
    }
    return NULL;
}

static void request_free(struct request *r)
{
    if (!r)
        return;
    if (!r->method)
        grpc_call_details_destroy(&r->details);
    rpc_call_free(r->call);
    free(r);
}

static void new_call(struct rpc_tag *tag, bool ok, struct worker_ctx *w)
{
    struct request *r = (struct request *)tag;
    struct rpc_server *s = r->server;
    if (!ok) { /* the server is shutting down: no call came */
        request_free(r);
        return;
    }
    struct rpc_call *call = r->call;
    struct method *m = r->method;
    r->call = NULL;
    if (!m)
        rpc_call_finish(call, RPC_UNIMPLEMENTED, "unknown method", NULL, 0);
    else if (m->unary)
        rpc_unary_serve(call, m->request, m->unary, m->service, m->malformed, w);
    else
        m->stream(call, m->service, w);
    /* Re-arm the same slot before anything else can exhaust it. */
    arm(s, m);
    request_free(r);
}

/* Request one more call for method m (NULL = the catch-all). */
static int arm(struct rpc_server *s, struct method *m)
{
    struct request *r = calloc(1, sizeof(*r));
    if (!r || !(r->call = rpc_call_alloc())) {
        free(r);
        log_error("out of memory: cannot accept new calls");
        return -ENOMEM;
    }
    r->tag.done = new_call;
    r->server = s;
    r->method = m;
    grpc_call_error e;
    if (m) {
        e = grpc_server_request_registered_call(
            s->server, m->handle, &r->call->call, &r->call->deadline, &r->call->md,
            m->unary ? &r->call->request : NULL, s->cq, s->cq, &r->tag);
    } else {
        grpc_call_details_init(&r->details);
        e = grpc_server_request_call(s->server, &r->call->call, &r->details, &r->call->md,
                                     s->cq, s->cq, &r->tag);
    }
    if (e != GRPC_CALL_OK) { /* shutting down */
        request_free(r);
        return -EINVAL;
    }
    return 0;
}

#define MAX_ARGS 12 /* >= the add_int calls in server_args */

static size_t add_int(grpc_arg *args, size_t n, char *key, int64_t value)
{
    int v = value > INT_MAX ? INT_MAX : value < INT_MIN ? INT_MIN : (int)value;
    args[n] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = key, .value.integer = v};
    return n + 1;
}

/*
 * The server's limits (docs/limits.md). Keepalive: the relay pings every
 * agent connection itself, so a drone whose link died without a FIN or RST
 * is dropped within keepalive_time + keepalive_timeout and its stream ends
 * like any other (session and route removed). Pings must go on while a
 * stream sends no data (MAX_PINGS_WITHOUT_DATA = 0: no cap), or the dead
 * link of an idle agent (connected, nothing to send) would never be noticed.
 * Agents ping too (the Go agent's keepalive): accept a ping every 5 s
 * without data, with or without a call open, so a well-behaved agent is
 * never sent GOAWAY "too_many_pings"; gRPC still strikes a flood of them.
 */
static size_t server_args(const struct rpc_server_options *opt, grpc_arg *args)
{
    size_t n = 0;
    n = add_int(args, n, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, opt->max_message_bytes);
    /* Two relays must never share a port by accident. */
    n = add_int(args, n, GRPC_ARG_ALLOW_REUSEPORT, 0);
    if (opt->max_streams_per_connection > 0)
        n = add_int(args, n, GRPC_ARG_MAX_CONCURRENT_STREAMS, opt->max_streams_per_connection);
    if (opt->keepalive_time_s > 0) {
        n = add_int(args, n, GRPC_ARG_KEEPALIVE_TIME_MS, opt->keepalive_time_s * 1000);
        n = add_int(args, n, GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                    (opt->keepalive_timeout_s > 0 ? opt->keepalive_timeout_s : 20) * 1000);
        n = add_int(args, n, GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    } else {
        /* gRPC's server default is 2 h; "never" is what the operator asked. */
        n = add_int(args, n, GRPC_ARG_KEEPALIVE_TIME_MS, INT_MAX);
    }
    n = add_int(args, n, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    /* A connection that never completes its handshake (half a ClientHello,
     * half the HTTP/2 preface) holds a descriptor: bound how long. */
    if (opt->handshake_timeout_s > 0)
        n = add_int(args, n, GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, opt->handshake_timeout_s * 1000);
    n = add_int(args, n, GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
    /* Without BDP probing each stream's receive window stays at gRPC's
     * 64 KiB lookahead: what a stream that stopped being read (a full
     * `block` sink, an agent not reading its acks) can park in the relay.
     * With it, windows grow to megabytes per stream. Loopback throughput
     * measured the same or better without it (docs/limits.md). */
    n = add_int(args, n, GRPC_ARG_HTTP2_BDP_PROBE, 0);
    return n;
}

struct rpc_server *rpc_server_create(const struct rpc_server_options *opt, char *err,
                                     size_t errlen)
{
    struct rpc_server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->opt = *opt;
    pthread_mutex_init(&s->mu, NULL);
    mono_cond_init(&s->cv); /* the grace is timed on the monotonic clock */
    grpc_init();

    grpc_arg args[MAX_ARGS];
    grpc_channel_args cargs = {.num_args = server_args(opt, args), .args = args};
    s->server = grpc_server_create(&cargs, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    return s;
}

static int add_method(struct rpc_server *s, const struct method *def)
{
    if (s->n_methods == MAX_METHODS)
        return -ENOSPC;
    struct method *m = &s->methods[s->n_methods];
    *m = *def;
    m->path = strdup(def->path);
    m->handle = grpc_server_register_method(
        s->server, def->path, NULL,
        m->unary ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
    if (!m->path || !m->handle) {
        free(m->path);
        return -EINVAL;
    }
    s->n_methods++;
    return 0;
}

int rpc_server_add_unary(struct rpc_server *s, const char *path,
                         const ProtobufCMessageDescriptor *request, rpc_unary_handler handler,
                         void *service)
{
    aero_metric *malformed = NULL;
    if (s->opt.metrics) {
        char label[160];
        snprintf(label, sizeof(label), "method=\"%s\"", path);
        malformed = metrics_register(s->opt.metrics, AERO_METRIC_COUNTER,
                                     "aero_relay_requests_malformed_total",
                                     "Unary requests refused INVALID_ARGUMENT: not a valid "
                                     "encoding of the method's request message.",
                                     label);
    }
    return add_method(s, &(struct method){.path = (char *)path, .unary = handler,
                                          .request = request, .malformed = malformed,
                                          .service = service});
}

int rpc_server_add_stream(struct rpc_server *s, const char *path, rpc_stream_handler handler,
                          void *service)
{
    return add_method(s, &(struct method){.path = (char *)path, .stream = handler,
                                          .service = service});
}

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while (mem && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(f);
    if (mem)
        fclose(mem);
    return buf;
}

/* a's text then b's (either may be NULL); NULL when both are. */
static char *concat(char *a, char *b)
{
    if (!a || !b)
        return a ? a : b;
    size_t la = strlen(a), lb = strlen(b);
    char *c = malloc(la + lb + 2);
    if (c) {
        memcpy(c, a, la);
        c[la] = '\n';
        memcpy(c + la + 1, b, lb + 1);
    }
    free(a);
    free(b);
    return c;
}

/*
 * TLS when cert_file is set. [tls] client_ca_file: every client must
 * present a certificate; [control] client_ca_file (SPEC.md section 10):
 * one is requested and verified if given, so agents without one keep
 * streaming. With both, both CAs are trusted at the handshake.
 */
static grpc_server_credentials *make_credentials(const struct rpc_server_options *o, char *err,
                                                 size_t errlen)
{
    if (!o->tls_cert_file || !*o->tls_cert_file)
        return grpc_insecure_server_credentials_create();
    bool require = o->tls_client_ca_file && *o->tls_client_ca_file;
    bool request = o->control_client_ca_file && *o->control_client_ca_file;
    char *cert = read_file(o->tls_cert_file, err, errlen);
    char *key = cert ? read_file(o->tls_key_file, err, errlen) : NULL;
    char *ca = NULL, *control_ca = NULL;
    bool cas_ok = true;
    if (key && require)
        cas_ok = (ca = read_file(o->tls_client_ca_file, err, errlen)) != NULL;
    if (key && cas_ok && request)
        cas_ok = (control_ca = read_file(o->control_client_ca_file, err, errlen)) != NULL;
    ca = concat(ca, control_ca);
    grpc_server_credentials *creds = NULL;
    if (cert && key && cas_ok && (ca || !(require || request))) {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
        creds = grpc_ssl_server_credentials_create_ex(
            ca, &pair, 1,
            require   ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
            : request ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                      : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            NULL);
        if (!creds)
            snprintf(err, errlen, "invalid TLS certificate or key (%s, %s)", o->tls_cert_file,
                     o->tls_key_file);
    }
    free(cert);
    if (key) {
        memset(key, 0, strlen(key)); /* do not leave the private key in freed memory */
        free(key);
    }
    free(ca);
    return creds;
}

int rpc_server_start(struct rpc_server *s, char *err, size_t errlen)
{
    grpc_server_credentials *creds = make_credentials(&s->opt, err, errlen);
    if (!creds)
        return -1;
    int port = grpc_server_add_http2_port(s->server, s->opt.listen, creds);
    grpc_server_credentials_release(creds);
    if (port <= 0) {
        snprintf(err, errlen, "cannot listen on %s (address in use or invalid)", s->opt.listen);
        return -1;
    }
    grpc_server_start(s->server);

    s->n_workers = s->opt.workers > 0 ? s->opt.workers : 1;
    s->workers = calloc((size_t)s->n_workers, sizeof(*s->workers));
    s->ctx = calloc((size_t)s->n_workers, sizeof(*s->ctx));
    for (int i = 0; s->ctx && i < s->n_workers; i++)
        if (!(s->ctx[i] = calloc(1, sizeof(struct worker_ctx)))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    aero_metric *polling =
        s->opt.metrics ? metrics_register(s->opt.metrics, AERO_METRIC_GAUGE,
                                          "aero_relay_grpc_workers_polling",
                                          "gRPC worker threads taking events; the others are "
                                          "parked until the load or a stuck worker needs them.",
                                          NULL)
                       : NULL;
    s->gate = s->workers && s->ctx ? worker_gate_create(s->n_workers, polling) : NULL;
    if (!s->gate) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < s->n_workers; i++) {
        struct worker_arg *arg = malloc(sizeof(*arg));
        if (arg)
            *arg = (struct worker_arg){s, i};
        if (!arg || pthread_create(&s->workers[i], NULL, worker_main, arg) != 0) {
            free(arg);
            snprintf(err, errlen, "cannot start gRPC worker threads");
            return -1;
        }
        /* Named for top -H and perf: "aero-grpc-0", ... (15 bytes at most). */
        char name[16];
        snprintf(name, sizeof(name), "aero-grpc-%u", (unsigned)i % 1000u); /* workers <= 256 */
        pthread_setname_np(s->workers[i], name);
        s->started_workers++;
    }
    /* A few requests per method so concurrent connects do not queue on one. */
    for (size_t i = 0; i < s->n_methods; i++)
        for (int k = 0; k < s->n_workers + 1; k++)
            arm(s, &s->methods[i]);
    arm(s, NULL);
    return port;
}

static void shutdown_done(struct rpc_tag *tag, bool ok, struct worker_ctx *w)
{
    (void)ok;
    (void)w;
    struct rpc_server *s = (struct rpc_server *)((char *)tag - offsetof(struct rpc_server, shutdown_tag));
    pthread_mutex_lock(&s->mu);
    s->shutdown_done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Wait for the shutdown tag until `deadline`; true if it arrived. */
static bool wait_shutdown(struct rpc_server *s, const struct timespec *deadline)
{
    pthread_mutex_lock(&s->mu);
    while (!s->shutdown_done) {
        if (deadline) {
            if (pthread_cond_timedwait(&s->cv, &s->mu, deadline) == ETIMEDOUT)
                break;
        } else {
            pthread_cond_wait(&s->cv, &s->mu);
        }
    }
    bool done = s->shutdown_done;
    pthread_mutex_unlock(&s->mu);
    return done;
}

void rpc_server_shutdown(struct rpc_server *s, int64_t grace_ms)
{
    if (!s)
        return;
    if (s->started_workers > 0) {
        s->shutdown_tag.done = shutdown_done;
        grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
        struct timespec deadline = clock_after_ns(CLOCK_MONOTONIC, grace_ms * 1000000);
        if (!wait_shutdown(s, &deadline)) {
            log_info("shutdown: cancelling the calls and connections still open");
            grpc_server_cancel_all_calls(s->server);
            wait_shutdown(s, NULL);
        }
    }
    grpc_server_destroy(s->server);
    grpc_completion_queue_shutdown(s->cq);
    if (s->gate)
        worker_gate_close(s->gate); /* parked workers see the queue shut down too */
    for (int i = 0; i < s->started_workers; i++)
        pthread_join(s->workers[i], NULL);
    if (s->started_workers == 0) { /* never started: drain here */
        while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
    }
    for (int i = 0; s->ctx && i < s->n_workers; i++)
        free(s->ctx[i]);
    free(s->ctx);
    grpc_completion_queue_destroy(s->cq);
    for (size_t i = 0; i < s->n_methods; i++)
        free(s->methods[i].path);
    free(s->workers);
    worker_gate_destroy(s->gate);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    grpc_shutdown();
}
