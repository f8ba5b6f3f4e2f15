/*
 * rpc_server.c - the gRPC server and its completion-queue workers. Each
 * registered method keeps a few calls requested ahead so bursts of new
 * streams are admitted without a round trip through a worker; every event
 * is dispatched to the rpc_tag it carries. Unknown methods get UNIMPLEMENTED.
 * gRPC's own log lines go through the relay's logger; when one says the
 * listener stopped accepting (gRPC 1.51 never re-arms accept4 after EMFILE,
 * CVE-2023-4785), the main thread can start a new listener generation
 * while the old one's connections and calls go on (rpc_server_listener_*).
 */
#include "rpc_server.h"

#include "conn_guard.h"
#include "line_budget.h"
#include "log.h"
#include "metrics.h"
#include "mono_clock.h"
#include "rpc_internal.h"
#include "rpc_unary.h"
#include "worker_ctx.h"
#include "worker_gate.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_METHODS 16

struct method {
    char *path;
    rpc_stream_handler stream;          /* a streaming method, or */
    rpc_unary_handler unary;            /* a unary one ... */
    const ProtobufCMessageDescriptor *request; /* ... and its request */
    aero_metric *malformed;                    /* requests that did not unpack */
    unsigned unary_flags;                      /* RPC_UNARY_* */
    void *service;
};

/*
 * One grpc_server: the first, or one started because the listener of the
 * one before stopped accepting. All share the completion queue, the
 * workers and the methods; only the current one gets new requests. A
 * retired generation is shut down at once (its listener closed, GOAWAY
 * sent) but its open calls go on; once they have all ended it is
 * destroyed at the next restart (an attacker may force a restart every
 * few seconds: none may be the last), else with the rpc_server.
 */
struct gen {
    struct rpc_server *owner;
    grpc_server *server;
    void *handles[MAX_METHODS]; /* from grpc_server_register_method */
    struct rpc_tag shutdown_tag;
    bool shutdown_started; /* main thread only */
    bool started;
    atomic_bool finished;  /* its shutdown completed: no call is left on it */
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
    struct gen **gens; /* main thread only: adds, and drops finished ones */
    int n_gens, cap_gens;
    _Atomic(struct gen *) current; /* where new requests go (workers read it) */
    atomic_int arming;             /* workers between reading current and requesting on it */
    int port;                      /* bound by the first generation */
    aero_metric *listener_failures, *listener_restarts, *listener_generations;
    struct conn_guard *guard; /* NULL until started */
    int reserve_fd; /* /dev/null, closed to make room for a new listener; -1: none */
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
    int shutdowns_pending; /* generations told to shut down, not yet done */

    /* TLS: gRPC asks the fetcher before each handshake; it reads the files
     * again once rpc_server_tls_reload bumped the generation. */
    atomic_uint tls_generation;
    pthread_mutex_t tls_mu;
    unsigned tls_seen; /* under tls_mu: the generation last handed to gRPC */
    bool tls_fetched;
};

static int arm(struct rpc_server *s, struct method *m);

/* Events a worker handles back to back before calling after_burst, so a
 * busy worker still flushes what it deferred every so often. */
#define BURST_MAX 32

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
        /* An event it had to wait for came alone (light load): not busy. */
        w->busy = !worker_gate_busy(s->gate, arg.id, t1);
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
    /* The call's end tells the guard too (rpc_call_free). */
    call->guard = conn_guard_ref(s->guard);
    call->peer = grpc_call_get_peer(call->call);
    if (conn_guard_call_opened(s->guard, call->peer, mono_ns())) {
        /* Its connection is going: do not spend a handler on the call. */
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "too many calls on one connection", NULL,
                        0);
        arm(s, m);
        request_free(r);
        return;
    }
    if (conn_guard_refuses(s->guard, call->peer, mono_ns())) {
        /* Over the memory limit (mem_guard.c) and this connection is the
         * kind that got it there: a handler would only add to it. */
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "relay over its memory limit", NULL, 0);
        arm(s, m);
        request_free(r);
        return;
    }
    if (!m)
        rpc_call_finish(call, RPC_UNIMPLEMENTED, "unknown method", NULL, 0);
    else if (m->unary)
        rpc_unary_serve(call, m->request, m->unary, m->service, m->malformed, m->unary_flags, w);
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
    /* Counted until the request is made: a retired generation is only
     * destroyed while no worker may still hold it (reclaim_finished). */
    atomic_fetch_add(&s->arming, 1);
    struct gen *g = atomic_load(&s->current);
    grpc_call_error e;
    if (m) {
        e = grpc_server_request_registered_call(
            g->server, g->handles[m - s->methods], &r->call->call, &r->call->deadline, &r->call->md,
            m->unary ? &r->call->msg_buf : NULL, s->cq, s->cq, &r->tag);
    } else {
        grpc_call_details_init(&r->details);
        e = grpc_server_request_call(g->server, &r->call->call, &r->details, &r->call->md, s->cq,
                                     s->cq, &r->tag);
    }
    atomic_fetch_sub(&s->arming, 1); /* r may be someone else's by now */
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

/* Register method i of s on generation g. */
static int register_method(struct rpc_server *s, struct gen *g, size_t i)
{
    const struct method *m = &s->methods[i];
    g->handles[i] = grpc_server_register_method(
        g->server, m->path, NULL,
        m->unary ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
    return g->handles[i] ? 0 : -EINVAL;
}

/* A new generation with every method registered so far, not started. */
static struct gen *gen_create(struct rpc_server *s)
{
    if (s->n_gens == s->cap_gens) {
        int cap = s->cap_gens ? 2 * s->cap_gens : 4;
        struct gen **gens = realloc(s->gens, (size_t)cap * sizeof(*gens));
        if (!gens)
            return NULL;
        s->gens = gens;
        s->cap_gens = cap;
    }
    struct gen *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    atomic_init(&g->finished, false);
    g->owner = s;
    grpc_arg args[MAX_ARGS];
    grpc_channel_args cargs = {.num_args = server_args(&s->opt, args), .args = args};
    g->server = grpc_server_create(&cargs, NULL);
    grpc_server_register_completion_queue(g->server, s->cq, NULL);
    for (size_t i = 0; i < s->n_methods; i++)
        if (register_method(s, g, i) < 0) {
            grpc_server_destroy(g->server);
            free(g);
            return NULL;
        }
    s->gens[s->n_gens++] = g;
    return g;
}

/*
 * gRPC's log lines, through the relay's logger (component "grpc"), at most
 * LINE_BUDGET in any second (line_budget.h), plus at most one line a
 * second saying how many were dropped.
 * gpr_set_log_function takes no context argument, so what a line means to
 * the relay goes through file-level state, the one exception to "no
 * mutable globals" here besides the logger itself: listener_failed is set
 * when gRPC says its accept loop gave up.
 */
static atomic_bool listener_failed;
static _Atomic(aero_metric *) listener_failure_metric;
static pthread_mutex_t grpc_log_mu = PTHREAD_MUTEX_INITIALIZER;
/* Guarded by grpc_log_mu: the lines' budget, the lines dropped since the
 * last count of them, and when that count went out. */
static struct line_budget grpc_log_budget;
static unsigned grpc_log_dropped;
static int64_t grpc_log_counted_at;

static void grpc_log_to_relay(gpr_log_func_args *a)
{
    const char *msg = a->message ? a->message : "";
    /* src/core/lib/iomgr/tcp_server_posix.cc: after this line the listening
     * socket is never polled again (gRPC 1.51; fixed upstream in 1.58). */
    if (strncmp(msg, "Failed accept4", 14) == 0) {
        atomic_store(&listener_failed, true);
        metrics_inc(atomic_load(&listener_failure_metric));
    }
    pthread_mutex_lock(&grpc_log_mu);
    int64_t now = mono_ns();
    if (!line_budget_room(&grpc_log_budget, now)) {
        grpc_log_dropped++;
        pthread_mutex_unlock(&grpc_log_mu);
        return;
    }
    if (grpc_log_dropped && now - grpc_log_counted_at >= 1000000000) {
        log_msg(AERO_LOG_WARN, "grpc", "%u gRPC log lines dropped (more than %d a second)",
                grpc_log_dropped, LINE_BUDGET);
        grpc_log_counted_at = mono_ns();
        grpc_log_dropped = 0;
    }
    aero_log_level level = a->severity == GPR_LOG_SEVERITY_ERROR  ? AERO_LOG_ERROR
                           : a->severity == GPR_LOG_SEVERITY_INFO ? AERO_LOG_INFO
                                                                  : AERO_LOG_DEBUG;
    const char *file = a->file ? strrchr(a->file, '/') : NULL;
    log_msg(level, "grpc", "%s (%s:%d)", msg, file ? file + 1 : a->file ? a->file : "?", a->line);
    line_budget_spend(&grpc_log_budget, mono_ns());
    pthread_mutex_unlock(&grpc_log_mu);
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
    s->reserve_fd = -1;
    atomic_init(&s->arming, 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->tls_mu, NULL);
    mono_cond_init(&s->cv); /* the grace is timed on the monotonic clock */
    gpr_set_log_function(grpc_log_to_relay);
    grpc_init();
    s->cq = grpc_completion_queue_create_for_next(NULL);
    struct gen *g = gen_create(s);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        grpc_completion_queue_shutdown(s->cq);
        grpc_completion_queue_destroy(s->cq);
        free(s->gens);
        free(s);
        grpc_shutdown();
        return NULL;
    }
    atomic_init(&s->current, g);
    if (opt->metrics) {
        s->listener_failures = metrics_register(
            opt->metrics, AERO_METRIC_COUNTER, "aero_relay_grpc_listener_failures_total",
            "Times gRPC's accept loop gave up (\"Failed accept4\", e.g. out of file "
            "descriptors): the port accepted nothing until the listener was restarted.",
            NULL);
        s->listener_restarts = metrics_register(
            opt->metrics, AERO_METRIC_COUNTER, "aero_relay_grpc_listener_restarts_total",
            "New gRPC listeners started to replace one that stopped accepting; open streams "
            "stay on the old one.",
            NULL);
        s->listener_generations = metrics_register(
            opt->metrics, AERO_METRIC_GAUGE, "aero_relay_grpc_listener_generations",
            "gRPC servers alive: the listening one and the retired ones whose calls have not "
            "all ended (each is freed at the restart after its last call ends).",
            NULL);
        metrics_set(s->listener_generations, 1);
        atomic_store(&listener_failure_metric, s->listener_failures);
    }
    return s;
}

static int add_method(struct rpc_server *s, const struct method *def)
{
    if (s->n_methods == MAX_METHODS)
        return -ENOSPC;
    struct method *m = &s->methods[s->n_methods];
    *m = *def;
    m->path = strdup(def->path);
    if (!m->path || register_method(s, s->gens[0], s->n_methods) < 0) {
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
    return rpc_server_add_unary_flags(s, path, request, handler, service, 0);
}

int rpc_server_add_unary_flags(struct rpc_server *s, const char *path,
                               const ProtobufCMessageDescriptor *request,
                               rpc_unary_handler handler, void *service, unsigned flags)
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
                                          .unary_flags = flags, .service = service});
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
 * The certificate config from the files: the server's pair, and the CAs
 * client certificates are verified against ([tls] client_ca_file, then
 * [control]'s). NULL with err filled.
 */
static grpc_ssl_server_certificate_config *read_certificate_config(
    const struct rpc_server_options *o, char *err, size_t errlen)
{
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
    grpc_ssl_server_certificate_config *config = NULL;
    if (cert && key && cas_ok && (ca || !(require || request))) {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
        /* gRPC 1.51 asserts roots on a fetched config even when no client
         * certificate is requested; then they verify nothing: the
         * server's own chain stands in. */
        config = grpc_ssl_server_certificate_config_create(ca ? ca : cert, &pair, 1); /* copies */
        if (!config)
            snprintf(err, errlen, "invalid TLS certificate or key (%s, %s)", o->tls_cert_file,
                     o->tls_key_file);
    }
    free(cert);
    if (key) {
        memset(key, 0, strlen(key)); /* do not leave the private key in freed memory */
        free(key);
    }
    free(ca);
    return config;
}

/*
 * gRPC's question before a handshake: the same certificates, or new ones
 * since a reload. A file that cannot be read then keeps the old ones
 * (RELOAD_FAIL), logged; the reload checked them before bumping.
 */
static grpc_ssl_certificate_config_reload_status fetch_certificates(
    void *arg, grpc_ssl_server_certificate_config **config)
{
    struct rpc_server *s = arg;
    unsigned want = atomic_load(&s->tls_generation);
    grpc_ssl_certificate_config_reload_status st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    pthread_mutex_lock(&s->tls_mu);
    if (!s->tls_fetched || s->tls_seen != want) {
        char err[512];
        *config = read_certificate_config(&s->opt, err, sizeof(err));
        if (*config) {
            s->tls_fetched = true;
            s->tls_seen = want;
            st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
        } else {
            log_error("TLS certificates not reloaded, the ones in use stay: %s", err);
            s->tls_seen = want; /* said once, not at every handshake */
            st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
        }
    }
    pthread_mutex_unlock(&s->tls_mu);
    return st;
}

void rpc_server_tls_reload(struct rpc_server *s) { atomic_fetch_add(&s->tls_generation, 1); }

/*
 * TLS when cert_file is set. [tls] client_ca_file: every client must
 * present a certificate; [control] client_ca_file (SPEC.md section 10):
 * one is requested and verified if given, so agents without one keep
 * streaming. With both, both CAs are trusted at the handshake. The files
 * are read through the fetcher, so a reload can replace them.
 */
static grpc_server_credentials *make_credentials(struct rpc_server *s, char *err, size_t errlen)
{
    const struct rpc_server_options *o = &s->opt;
    if (!o->tls_cert_file || !*o->tls_cert_file)
        return grpc_insecure_server_credentials_create();
    /* Read once here too, so a bad file fails the start with its reason. */
    grpc_ssl_server_certificate_config *probe = read_certificate_config(o, err, errlen);
    if (!probe)
        return NULL;
    grpc_ssl_server_certificate_config_destroy(probe);
    bool require = o->tls_client_ca_file && *o->tls_client_ca_file;
    bool request = o->control_client_ca_file && *o->control_client_ca_file;
    grpc_ssl_server_credentials_options *opts =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(
            require   ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
            : request ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                      : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            fetch_certificates, s);
    grpc_server_credentials *creds = opts ? grpc_ssl_server_credentials_create_with_options(opts)
                                          : NULL;
    if (!creds)
        snprintf(err, errlen, "invalid TLS certificate or key (%s, %s)", o->tls_cert_file,
                 o->tls_key_file);
    return creds;
}

/* Bind g to addr and start it. Returns the port, or -1 with err filled. */
static int gen_listen(struct rpc_server *s, struct gen *g, const char *addr, char *err,
                      size_t errlen)
{
    grpc_server_credentials *creds = make_credentials(s, err, errlen);
    if (!creds)
        return -1;
    int port = grpc_server_add_http2_port(g->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port <= 0) {
        snprintf(err, errlen, "cannot listen on %s (address in use or invalid)", addr);
        return -1;
    }
    grpc_server_start(g->server);
    g->started = true;
    return port;
}

/* Requests ahead on every method of the current generation, so concurrent
 * connects do not queue on one. */
static void arm_all(struct rpc_server *s)
{
    for (size_t i = 0; i < s->n_methods; i++)
        for (int k = 0; k < s->n_workers + 1; k++)
            arm(s, &s->methods[i]);
    arm(s, NULL);
}

int rpc_server_start(struct rpc_server *s, char *err, size_t errlen)
{
    int port = gen_listen(s, s->gens[0], s->opt.listen, err, errlen);
    if (port < 0)
        return -1;
    s->port = port;
    s->guard = conn_guard_create(s->opt.max_streams_per_connection, port, s->opt.metrics);
    if (!s->guard) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* Kept for a new listener: when the old one failed for want of file
     * descriptors, closing this one makes room for its socket. */
    s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

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
    arm_all(s);
    return port;
}

struct conn_guard *rpc_server_conn_guard(const struct rpc_server *s)
{
    return s->guard;
}

bool rpc_server_listener_failed(const struct rpc_server *s)
{
    (void)s;
    return atomic_load(&listener_failed);
}

int64_t rpc_server_lag_ns(struct rpc_server *s)
{
    return s->gate ? worker_gate_lag_ns(s->gate, mono_ns()) : 0;
}

/* The address a new generation binds: the configured one, with the port
 * the first generation got (the configured port may have been 0). */
static void restart_address(const struct rpc_server *s, char *out, size_t len)
{
    const char *colon = strrchr(s->opt.listen, ':');
    if (strncmp(s->opt.listen, "unix:", 5) == 0 || !colon)
        snprintf(out, len, "%s", s->opt.listen);
    else
        snprintf(out, len, "%.*s:%d", (int)(colon - s->opt.listen), s->opt.listen, s->port);
}

static void gen_shutdown(struct rpc_server *s, struct gen *g);

/* Destroy the retired generations whose calls have all ended. A worker
 * that read `current` before it moved on may still be requesting a call
 * on the one it read: none is destroyed while any worker is (the next
 * restart tries again). Main thread. */
static void reclaim_finished(struct rpc_server *s)
{
    if (atomic_load(&s->arming) > 0)
        return;
    struct gen *current = atomic_load(&s->current);
    int kept = 0;
    for (int i = 0; i < s->n_gens; i++) {
        struct gen *g = s->gens[i];
        if (g != current && g->shutdown_started && atomic_load(&g->finished)) {
            grpc_server_destroy(g->server);
            free(g);
        } else {
            s->gens[kept++] = g;
        }
    }
    s->n_gens = kept;
}

int rpc_server_listener_restart(struct rpc_server *s, char *err, size_t errlen)
{
    reclaim_finished(s);
    struct gen *old = atomic_load(&s->current);
    if (!old->shutdown_started) {
        /* Closes the dead listener (and the connections still queued on
         * it) and sends GOAWAY on the old connections: their calls go on,
         * their clients open new connections for new calls. */
        gen_shutdown(s, old);
    }
    if (s->reserve_fd >= 0) {
        close(s->reserve_fd);
        s->reserve_fd = -1;
    }
    struct gen *g = gen_create(s);
    int rc = -1;
    if (!g) {
        snprintf(err, errlen, "out of memory");
    } else {
        char addr[300];
        restart_address(s, addr, sizeof(addr));
        atomic_store(&listener_failed, false);
        rc = gen_listen(s, g, addr, err, errlen) < 0 ? -1 : 0;
        if (rc == 0) {
            atomic_store(&s->current, g);
            arm_all(s);
            metrics_inc(s->listener_restarts);
        } else {
            /* Never started: nothing else holds it. */
            grpc_server_destroy(g->server);
            free(g);
            s->n_gens--;
        }
    }
    /* After every attempt: a failed one may still have freed retired ones. */
    metrics_set(s->listener_generations, s->n_gens);
    s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return rc;
}

static void shutdown_done(struct rpc_tag *tag, bool ok, struct worker_ctx *w)
{
    (void)ok;
    (void)w;
    struct gen *g = (struct gen *)((char *)tag - offsetof(struct gen, shutdown_tag));
    struct rpc_server *s = g->owner;
    atomic_store(&g->finished, true);
    pthread_mutex_lock(&s->mu);
    s->shutdowns_pending--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Stop g's listener and new calls; its open calls go on. Main thread. */
static void gen_shutdown(struct rpc_server *s, struct gen *g)
{
    g->shutdown_started = true;
    pthread_mutex_lock(&s->mu);
    s->shutdowns_pending++;
    pthread_mutex_unlock(&s->mu);
    g->shutdown_tag.done = shutdown_done;
    grpc_server_shutdown_and_notify(g->server, s->cq, &g->shutdown_tag);
}

/* Wait until every generation told to shut down is done, or `deadline`;
 * true if they all are. */
static bool wait_shutdown(struct rpc_server *s, const struct timespec *deadline)
{
    pthread_mutex_lock(&s->mu);
    while (s->shutdowns_pending > 0) {
        if (deadline) {
            if (pthread_cond_timedwait(&s->cv, &s->mu, deadline) == ETIMEDOUT)
                break;
        } else {
            pthread_cond_wait(&s->cv, &s->mu);
        }
    }
    bool done = s->shutdowns_pending == 0;
    pthread_mutex_unlock(&s->mu);
    return done;
}

void rpc_server_shutdown(struct rpc_server *s, int64_t grace_ms)
{
    if (!s)
        return;
    if (s->started_workers > 0) {
        for (int i = 0; i < s->n_gens; i++)
            if (s->gens[i]->started && !s->gens[i]->shutdown_started)
                gen_shutdown(s, s->gens[i]);
        struct timespec deadline = clock_after_ns(CLOCK_MONOTONIC, grace_ms * 1000000);
        if (!wait_shutdown(s, &deadline)) {
            log_info("shutdown: cancelling the calls and connections still open");
            for (int i = 0; i < s->n_gens; i++)
                grpc_server_cancel_all_calls(s->gens[i]->server);
            wait_shutdown(s, NULL);
        }
    }
    for (int i = 0; i < s->n_gens; i++) {
        grpc_server_destroy(s->gens[i]->server);
        free(s->gens[i]);
    }
    free(s->gens);
    if (s->reserve_fd >= 0)
        close(s->reserve_fd);
    conn_guard_unref(s->guard);
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
    pthread_mutex_destroy(&s->tls_mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    grpc_shutdown();
}
