/*
 * test_rpc_stream.c - the server stream layer (core/rpc_stream.c) through a
 * real rpc_server on loopback and a real gRPC client driven here with the C
 * core API (its own completion queue and pump thread): the final status
 * after every answer, read credit, pause/resume, the outgoing queue bound,
 * ordering of mixed messages, refuse, and the shutdown flag. Every wait is
 * on one condition variable with a deadline; nothing sleeps to synchronise.
 */
#include "mono_clock.h"
#include "rpc_server.h"
#include "rpc_stream.h"

#include "cond_wait.h"
#include <criterion/criterion.h>
#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METHOD "/aeroarc.test.v1.StreamTest/Bidi"
#define MAX_MSGS 512

/* How long a condition may take to come true, and how long a condition
 * that must not change is watched (an observation, not synchronisation). */
#define WAIT_MS 10000
#define QUIET_MS 250

struct blob {
    uint8_t *b;
    size_t len;
};

/* The client side of the one call a test makes. Fields below `mu` in W. */
struct cli {
    grpc_channel *ch;
    grpc_completion_queue *cq;
    grpc_call *call;
    pthread_t pump;
    bool open;
    grpc_metadata_array init_md, trail_md;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_status_code code;
    grpc_slice details;
    int pending; /* batches started, not completed */
    /* Sends go out one batch at a time, in order, then the half-close. */
    struct blob out[MAX_MSGS];
    int n_out, next_out, n_sent_ok;
    bool sending, send_failed, close_wanted, close_started;
    /* Every message received, in order. */
    struct blob in[MAX_MSGS];
    int n_in;
    bool eos;
    /* The status, and how many messages had arrived when it came. */
    bool have_status;
    int in_at_status;
    char status_msg[256];
    char tag_md, tag_send, tag_recv, tag_status; /* addresses are the tags */
};

static struct world {
    pthread_mutex_t mu; /* everything below; never held into rpc_stream_* */
    pthread_cond_t cv;  /* broadcast on every change */
    struct rpc_server *server;
    char target[64];

    /* What the next stream is made with and how its owner behaves. */
    struct rpc_stream_config cfg;
    atomic_bool shutting_down;
    bool refuse;         /* the handler refuses instead of starting */
    bool answer_each;    /* on_message answers at once (RPC_SEND_CREDIT) */
    int pause_at, pause_n; /* on_message pauses (n) at the pause_at-th message */
    uint64_t burst_trigger; /* on_sent of this stamp queues burst_n messages */
    int burst_n;
    bool burst_slot; /* then one more with RPC_SEND_BOUNDED */
    bool burst_ack; /* ... then one RPC_SEND_CREDIT answer */
    bool burst_done;
    int burst_rc[32];

    /* The server side, as the owner's callbacks saw it. */
    struct rpc_stream *st;
    bool own_ref; /* the test still holds the creator's reference */
    int n_streams;
    struct blob msgs[MAX_MSGS];
    int n_msg;
    uint64_t stamps[MAX_MSGS];
    bool sent_ok[MAX_MSGS];
    int n_sent;
    int n_closed;
    bool closed_cancelled;
    enum rpc_code closed_code;
    int n_free;

    struct cli c;
} W;

/* ------------------------------------------------------- waiting helpers */

/* One wait on W.cv (W.mu held) until dl; false once dl has passed. */
static bool wait_step(const struct timespec *dl)
{
    return pthread_cond_timedwait(&W.cv, &W.mu, dl) != ETIMEDOUT;
}

#define EXPECT_WITHIN(ms, cond, ...) EXPECT_WITHIN_ON(&W.mu, wait_step, ms, cond, __VA_ARGS__)
#define EXPECT_STAYS(ms, cond, ...) EXPECT_STAYS_ON(&W.mu, wait_step, ms, cond, __VA_ARGS__)

static int locked_int(const int *p)
{
    pthread_mutex_lock(&W.mu);
    int v = *p;
    pthread_mutex_unlock(&W.mu);
    return v;
}

static void blob_set(struct blob *b, const uint8_t *p, size_t len)
{
    b->b = malloc(len ? len : 1);
    cr_assert_not_null(b->b);
    memcpy(b->b, p, len);
    b->len = len;
}

static void blobs_free(struct blob *b, int n)
{
    for (int i = 0; i < n; i++)
        free(b[i].b);
}

/* --------------------------------------------------------- the stream owner */

static void owner_on_message(void *owner, const uint8_t *msg, size_t len, struct worker_ctx *w)
{
    (void)owner;
    (void)w;
    pthread_mutex_lock(&W.mu);
    int idx = W.n_msg;
    if (idx < MAX_MSGS) {
        W.msgs[idx].b = malloc(len ? len : 1);
        if (W.msgs[idx].b)
            memcpy(W.msgs[idx].b, msg, len);
        W.msgs[idx].len = len;
    }
    W.n_msg++;
    bool answer = W.answer_each;
    int pause_n = W.pause_at == idx + 1 ? W.pause_n : 0;
    struct rpc_stream *st = W.st;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
    /* Here the stream has a read in hand (recv_pending): pausing now stops
     * the next one deterministically. */
    if (pause_n)
        rpc_stream_pause(st, pause_n);
    if (answer) {
        uint8_t a[2] = {'A', (uint8_t)idx};
        rpc_stream_send(st, a, sizeof(a), RPC_SEND_CREDIT, (uint64_t)idx);
    }
}

static void owner_on_sent(void *owner, uint64_t stamp, bool ok)
{
    (void)owner;
    pthread_mutex_lock(&W.mu);
    if (W.n_sent < MAX_MSGS) {
        W.stamps[W.n_sent] = stamp;
        W.sent_ok[W.n_sent] = ok;
    }
    W.n_sent++;
    bool burst = W.burst_n > 0 && stamp == W.burst_trigger && !W.burst_done;
    int n = W.burst_n;
    struct rpc_stream *st = W.st;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
    if (!burst)
        return;
    /* Inside on_sent the stream's one send is still pending, so nothing
     * leaves the queue while these go in: the bound is met exactly. */
    int rc[32];
    for (int i = 0; i < n; i++) {
        uint8_t q[2] = {'Q', (uint8_t)i};
        rc[i] = rpc_stream_send(st, q, sizeof(q), 0, 1000 + (uint64_t)i);
    }
    if (W.burst_slot) { /* a slot holder's command is not refused */
        uint8_t m[2] = {'S', 0};
        rc[n++] = rpc_stream_send(st, m, sizeof(m), RPC_SEND_BOUNDED, 3000);
    }
    if (W.burst_ack) { /* set before the stream started: read-only now */
        uint8_t a[2] = {'A', 0};
        rc[n++] = rpc_stream_send(st, a, sizeof(a), RPC_SEND_CREDIT, 2000);
    }
    pthread_mutex_lock(&W.mu);
    memcpy(W.burst_rc, rc, (size_t)n * sizeof(rc[0]));
    W.burst_done = true;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

static void owner_on_closed(void *owner, bool cancelled, enum rpc_code code)
{
    (void)owner;
    pthread_mutex_lock(&W.mu);
    W.n_closed++;
    W.closed_cancelled = cancelled;
    W.closed_code = code;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

static void owner_on_free(void *owner)
{
    (void)owner;
    pthread_mutex_lock(&W.mu);
    W.n_free++;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

static const struct rpc_stream_handler owner_handler = {
    .on_message = owner_on_message,
    .on_sent = owner_on_sent,
    .on_closed = owner_on_closed,
    .on_free = owner_on_free,
};

/* The method's handler: a new call on a gRPC worker. */
static void new_stream(struct rpc_call *call, void *service, struct worker_ctx *w)
{
    (void)service;
    (void)w;
    pthread_mutex_lock(&W.mu);
    struct rpc_stream_config cfg = W.cfg;
    bool refuse = W.refuse;
    pthread_mutex_unlock(&W.mu);
    struct rpc_stream *st = rpc_stream_create(call, &owner_handler, &W, &cfg);
    if (!st) {
        rpc_call_finish(call, RPC_INTERNAL, "test: out of memory", NULL, 0);
        return;
    }
    pthread_mutex_lock(&W.mu);
    W.n_streams++;
    if (!refuse) {
        W.st = st;
        W.own_ref = true;
    }
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
    if (refuse)
        rpc_stream_refuse(st, RPC_PERMISSION_DENIED, "refused by the test");
    else
        rpc_stream_start(st);
}

/* Queue one message of `kind` from the test thread. */
static int owner_send(char kind, int idx, unsigned flags, uint64_t stamp)
{
    uint8_t m[2] = {(uint8_t)kind, (uint8_t)idx};
    return rpc_stream_send(W.st, m, sizeof(m), flags, stamp);
}

/* ------------------------------------------------------------- the client */

/* Under W.mu: start the next send, or the half-close once all went. */
static void cli_send_next_locked(struct cli *c)
{
    if (c->sending || c->send_failed)
        return;
    grpc_op op;
    memset(&op, 0, sizeof(op));
    if (c->next_out < c->n_out) {
        struct blob *b = &c->out[c->next_out++];
        grpc_slice s = grpc_slice_from_copied_buffer((const char *)b->b, b->len);
        c->send_bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = c->send_bb;
    } else if (c->close_wanted && !c->close_started) {
        c->close_started = true;
        op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    } else {
        return;
    }
    c->sending = true;
    c->pending++;
    grpc_call_error e = grpc_call_start_batch(c->call, &op, 1, &c->tag_send, NULL);
    cr_assert_eq(e, GRPC_CALL_OK, "client send batch refused: %d", (int)e);
}

/* Under W.mu: keep one receive posted until the end of the stream. */
static void cli_recv_locked(struct cli *c, bool first)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (first) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &c->init_md;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &c->recv_bb;
    c->pending++;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->tag_recv, NULL);
    cr_assert_eq(e, GRPC_CALL_OK, "client recv batch refused: %d", (int)e);
}

static void *cli_pump(void *arg)
{
    struct cli *c = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        pthread_mutex_lock(&W.mu);
        c->pending--;
        if (ev.tag == &c->tag_md || ev.tag == &c->tag_send) {
            c->sending = false;
            if (c->send_bb) {
                grpc_byte_buffer_destroy(c->send_bb);
                c->send_bb = NULL;
                if (ev.success)
                    c->n_sent_ok++;
            }
            if (!ev.success)
                c->send_failed = true;
            cli_send_next_locked(c);
        } else if (ev.tag == &c->tag_recv) {
            if (ev.success && c->recv_bb) {
                grpc_byte_buffer_reader r;
                grpc_byte_buffer_reader_init(&r, c->recv_bb);
                grpc_slice s = grpc_byte_buffer_reader_readall(&r);
                grpc_byte_buffer_reader_destroy(&r);
                if (c->n_in < MAX_MSGS) {
                    struct blob *b = &c->in[c->n_in];
                    b->len = GRPC_SLICE_LENGTH(s);
                    b->b = malloc(b->len ? b->len : 1);
                    if (b->b)
                        memcpy(b->b, GRPC_SLICE_START_PTR(s), b->len);
                }
                c->n_in++;
                grpc_slice_unref(s);
                grpc_byte_buffer_destroy(c->recv_bb);
                c->recv_bb = NULL;
                cli_recv_locked(c, false);
            } else {
                c->eos = true;
            }
        } else if (ev.tag == &c->tag_status) {
            c->have_status = true;
            c->in_at_status = c->n_in;
            size_t n = GRPC_SLICE_LENGTH(c->details);
            if (n >= sizeof(c->status_msg))
                n = sizeof(c->status_msg) - 1;
            memcpy(c->status_msg, GRPC_SLICE_START_PTR(c->details), n);
            c->status_msg[n] = '\0';
        }
        pthread_cond_broadcast(&W.cv);
        pthread_mutex_unlock(&W.mu);
    }
    return NULL;
}

/* Open the test method's stream to the server; a receive stays posted. */
static void cli_open(void)
{
    struct cli *c = &W.c;
    grpc_init();
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_RETRIES, .value.integer = 0},
    };
    grpc_channel_args ca = {.num_args = 1, .args = args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c->ch = grpc_channel_create(W.target, creds, &ca);
    grpc_channel_credentials_release(creds);
    cr_assert_not_null(c->ch);
    c->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_slice m = grpc_slice_from_static_string(METHOD);
    c->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, m, NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    cr_assert_not_null(c->call);
    grpc_metadata_array_init(&c->init_md);
    grpc_metadata_array_init(&c->trail_md);
    c->details = grpc_empty_slice();
    cr_assert_eq(pthread_create(&c->pump, NULL, cli_pump, c), 0);
    c->open = true;

    pthread_mutex_lock(&W.mu);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_INITIAL_METADATA;
    c->sending = true; /* messages wait for the metadata */
    c->pending++;
    cr_assert_eq(grpc_call_start_batch(c->call, &op, 1, &c->tag_md, NULL), GRPC_CALL_OK);
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &c->trail_md;
    op.data.recv_status_on_client.status = &c->code;
    op.data.recv_status_on_client.status_details = &c->details;
    c->pending++;
    cr_assert_eq(grpc_call_start_batch(c->call, &op, 1, &c->tag_status, NULL), GRPC_CALL_OK);
    cli_recv_locked(c, true);
    pthread_mutex_unlock(&W.mu);
}

static void cli_send(const void *bytes, size_t len)
{
    struct cli *c = &W.c;
    pthread_mutex_lock(&W.mu);
    cr_assert_lt(c->n_out, MAX_MSGS);
    blob_set(&c->out[c->n_out++], bytes, len);
    cli_send_next_locked(c);
    pthread_mutex_unlock(&W.mu);
}

/* Send n messages "m<i>" (i from first). */
static void cli_send_n(int first, int n)
{
    for (int i = first; i < first + n; i++) {
        uint8_t m[2] = {'m', (uint8_t)i};
        cli_send(m, sizeof(m));
    }
}

static void cli_close_send(void)
{
    pthread_mutex_lock(&W.mu);
    W.c.close_wanted = true;
    cli_send_next_locked(&W.c);
    pthread_mutex_unlock(&W.mu);
}

/* Cancel if still running, drain every batch, free everything. */
static void cli_close(void)
{
    struct cli *c = &W.c;
    if (!c->open)
        return;
    pthread_mutex_lock(&W.mu);
    if (!c->have_status)
        grpc_call_cancel(c->call, NULL);
    struct timespec dl = deadline_in(WAIT_MS);
    while (c->pending > 0 && wait_step(&dl))
        ;
    int pending = c->pending;
    pthread_mutex_unlock(&W.mu);
    grpc_call_unref(c->call);
    grpc_channel_destroy(c->ch);
    grpc_completion_queue_shutdown(c->cq);
    pthread_join(c->pump, NULL);
    grpc_completion_queue_destroy(c->cq);
    if (c->send_bb)
        grpc_byte_buffer_destroy(c->send_bb);
    if (c->recv_bb)
        grpc_byte_buffer_destroy(c->recv_bb);
    grpc_metadata_array_destroy(&c->init_md);
    grpc_metadata_array_destroy(&c->trail_md);
    grpc_slice_unref(c->details);
    blobs_free(c->out, c->n_out);
    blobs_free(c->in, c->n_in < MAX_MSGS ? c->n_in : MAX_MSGS);
    c->open = false;
    grpc_shutdown();
    cr_assert_eq(pending, 0, "client batches still pending after cancel");
}

/* ------------------------------------------------------------ fixtures */

static void setup(void)
{
    memset(&W, 0, sizeof(W));
    pthread_mutex_init(&W.mu, NULL);
    mono_cond_init(&W.cv);
    atomic_init(&W.shutting_down, false);
    W.cfg = (struct rpc_stream_config){.credit = 8, .queue_max = 64};

    char err[256] = "";
    struct rpc_server_options opt = {
        .listen = "127.0.0.1:0",
        .workers = 2,
        .max_message_bytes = 65536,
    };
    W.server = rpc_server_create(&opt, err, sizeof(err));
    cr_assert_not_null(W.server, "rpc_server_create: %s", err);
    cr_assert_eq(rpc_server_add_stream(W.server, METHOD, new_stream, &W), 0);
    int port = rpc_server_start(W.server, err, sizeof(err));
    cr_assert_gt(port, 0, "rpc_server_start: %s", err);
    snprintf(W.target, sizeof(W.target), "127.0.0.1:%d", port);
}

static void teardown(void)
{
    cli_close();
    /* With the client gone the call is over: drop our reference so the
     * stream (and its grpc_call) is freed before the server shuts down. */
    pthread_mutex_lock(&W.mu);
    struct rpc_stream *st = W.own_ref ? W.st : NULL;
    W.own_ref = false;
    pthread_mutex_unlock(&W.mu);
    if (st) {
        EXPECT_WITHIN(WAIT_MS, W.n_closed == 1, "the stream never closed");
        rpc_stream_unref(st);
    }
    EXPECT_WITHIN(WAIT_MS, W.n_free == W.n_streams, "on_free: %d of %d streams", W.n_free,
                  W.n_streams);
    rpc_server_shutdown(W.server, 2000);
    blobs_free(W.msgs, W.n_msg < MAX_MSGS ? W.n_msg : MAX_MSGS);
    pthread_cond_destroy(&W.cv);
    pthread_mutex_destroy(&W.mu);
}

TestSuite(rpc_stream, .init = setup, .fini = teardown, .timeout = 60);

/* Open the client and wait for the server's stream to exist. */
static void open_stream(void)
{
    cli_open();
    EXPECT_WITHIN(WAIT_MS, W.n_streams == 1, "the handler never saw the call");
}

static void expect_msg(const struct blob *b, char kind, int idx, const char *what, int i)
{
    cr_assert_eq(b->len, 2, "%s %d: %zu bytes", what, i, b->len);
    cr_assert(b->b[0] == (uint8_t)kind && b->b[1] == (uint8_t)idx,
              "%s %d: got %c%d, want %c%d", what, i, b->b[0], b->b[1], kind, idx);
}

/* ---------------------------------------------------------------- tests */

Test(rpc_stream, end_status_comes_after_every_answer_with_the_owners_code)
{
    open_stream();
    cli_send_n(0, 3);
    EXPECT_WITHIN(WAIT_MS, W.n_msg == 3, "read %d of 3", W.n_msg);
    for (int i = 0; i < 3; i++)
        expect_msg(&W.msgs[i], 'm', i, "server read", i);

    rpc_stream_end(W.st, RPC_ABORTED, "ended by the owner");
    EXPECT_STAYS(QUIET_MS, !W.c.have_status, "status sent while 3 reads were unanswered");

    cr_assert_eq(owner_send('A', 0, RPC_SEND_CREDIT, 0), 0);
    cr_assert_eq(owner_send('A', 1, RPC_SEND_CREDIT, 1), 0);
    EXPECT_WITHIN(WAIT_MS, W.c.n_in == 2, "client got %d of 2 answers", W.c.n_in);
    EXPECT_STAYS(QUIET_MS, !W.c.have_status, "status sent while 1 read was unanswered");

    cr_assert_eq(owner_send('A', 2, RPC_SEND_CREDIT, 2), 0);
    EXPECT_WITHIN(WAIT_MS, W.c.have_status, "no status after the last answer");
    cr_assert_eq(W.c.in_at_status, 3, "status came after %d of 3 answers", W.c.in_at_status);
    cr_assert_eq((int)W.c.code, RPC_ABORTED);
    cr_assert_str_eq(W.c.status_msg, "ended by the owner");
    for (int i = 0; i < 3; i++)
        expect_msg(&W.c.in[i], 'A', i, "client got", i);
    cr_assert_eq(W.n_msg, 3, "read after rpc_stream_end");

    EXPECT_WITHIN(WAIT_MS, W.n_closed == 1, "on_closed never ran");
    cr_assert_not(W.closed_cancelled);
    cr_assert_eq(W.closed_code, RPC_ABORTED);
    /* The creator's reference is ours: nothing may be freed yet. */
    EXPECT_STAYS(QUIET_MS, W.n_free == 0 && W.n_closed == 1, "on_free %d, on_closed %d",
                 W.n_free, W.n_closed);
    pthread_mutex_lock(&W.mu);
    W.own_ref = false;
    pthread_mutex_unlock(&W.mu);
    rpc_stream_unref(W.st);
    EXPECT_WITHIN(WAIT_MS, W.n_free == 1, "on_free after the last unref: %d", W.n_free);
    EXPECT_STAYS(QUIET_MS, W.n_free == 1 && W.n_closed == 1, "on_free %d, on_closed %d",
                 W.n_free, W.n_closed);
}

Test(rpc_stream, a_client_half_close_ends_with_ok)
{
    W.answer_each = true;
    open_stream();
    cli_send_n(0, 3);
    cli_close_send();
    EXPECT_WITHIN(WAIT_MS, W.c.have_status, "no status after the half-close");
    cr_assert_eq((int)W.c.code, RPC_OK, "status %d \"%s\"", (int)W.c.code, W.c.status_msg);
    cr_assert_str_eq(W.c.status_msg, "");
    cr_assert_eq(W.c.in_at_status, 3, "status came after %d of 3 answers", W.c.in_at_status);
    for (int i = 0; i < 3; i++)
        expect_msg(&W.c.in[i], 'A', i, "client got", i);
    EXPECT_WITHIN(WAIT_MS, W.n_closed == 1, "on_closed never ran");
    cr_assert_not(W.closed_cancelled);
    cr_assert_eq(W.closed_code, RPC_OK);
    EXPECT_STAYS(QUIET_MS, W.n_closed == 1 && W.n_free == 0, "on_closed %d, on_free %d",
                 W.n_closed, W.n_free);
}

Test(rpc_stream, credit_bounds_the_reads_and_comes_back_exactly)
{
    enum { N = 3, SENT = 12 };
    W.cfg.credit = N;
    open_stream();
    cli_send_n(0, SENT);
    EXPECT_WITHIN(WAIT_MS, W.n_msg == N, "read %d, credit %d", W.n_msg, N);
    EXPECT_WITHIN(WAIT_MS, W.c.n_sent_ok == SENT, "client sent %d of %d", W.c.n_sent_ok, SENT);
    EXPECT_STAYS(QUIET_MS, W.n_msg == N, "read %d with credit %d and no answer", W.n_msg, N);

    rpc_stream_credit(W.st, 2); /* two messages answered by nothing */
    EXPECT_WITHIN(WAIT_MS, W.n_msg == N + 2, "read %d after 2 credits", W.n_msg);
    EXPECT_STAYS(QUIET_MS, W.n_msg == N + 2, "read %d after 2 credits", W.n_msg);

    cr_assert_eq(owner_send('A', 0, RPC_SEND_CREDIT, 0), 0);
    cr_assert_eq(owner_send('A', 1, RPC_SEND_CREDIT, 1), 0);
    EXPECT_WITHIN(WAIT_MS, W.n_msg == N + 4, "read %d after 2 answers", W.n_msg);
    EXPECT_STAYS(QUIET_MS, W.n_msg == N + 4, "read %d after 2 answers", W.n_msg);

    /* A message without RPC_SEND_CREDIT gives nothing back. */
    cr_assert_eq(owner_send('C', 0, 0, 100), 0);
    EXPECT_WITHIN(WAIT_MS, W.c.n_in == 3, "client got %d of 3", W.c.n_in);
    EXPECT_STAYS(QUIET_MS, W.n_msg == N + 4, "read %d after a message without credit", W.n_msg);

    for (int i = 0; i < N + 4; i++)
        expect_msg(&W.msgs[i], 'm', i, "server read", i);
    rpc_stream_end(W.st, RPC_OK, NULL);
    rpc_stream_credit(W.st, N); /* what is still owed */
    EXPECT_WITHIN(WAIT_MS, W.c.have_status, "no status once nothing was owed");
    cr_assert_eq((int)W.c.code, RPC_OK);
    cr_assert_eq(W.n_msg, N + 4, "read after rpc_stream_end");
}

Test(rpc_stream, pause_stops_reading_until_as_many_resumes)
{
    W.cfg.credit = 16;
    W.answer_each = true;
    W.pause_at = 2; /* on_message of the 2nd message pauses twice */
    W.pause_n = 2;
    open_stream();
    cli_send_n(0, 6);
    EXPECT_WITHIN(WAIT_MS, W.n_msg == 2, "read %d before the pause", W.n_msg);
    EXPECT_WITHIN(WAIT_MS, W.c.n_sent_ok == 6, "client sent %d of 6", W.c.n_sent_ok);
    EXPECT_WITHIN(WAIT_MS, W.c.n_in == 2, "answers %d of 2", W.c.n_in); /* credit is back */
    EXPECT_STAYS(QUIET_MS, W.n_msg == 2, "read %d while paused", W.n_msg);

    rpc_stream_resume(W.st);
    EXPECT_STAYS(QUIET_MS, W.n_msg == 2, "read %d after 1 of 2 resumes", W.n_msg);

    rpc_stream_resume(W.st);
    EXPECT_WITHIN(WAIT_MS, W.n_msg == 6, "read %d of 6 after both resumes", W.n_msg);
    for (int i = 0; i < 6; i++)
        expect_msg(&W.msgs[i], 'm', i, "server read", i);
    cli_close_send();
    EXPECT_WITHIN(WAIT_MS, W.c.have_status, "no status after the half-close");
    cr_assert_eq((int)W.c.code, RPC_OK);
    cr_assert_eq(W.c.in_at_status, 6);
}

Test(rpc_stream, the_queue_bound_refuses_with_enobufs_then_epipe_after_the_call)
{
    enum { Q = 4 };
    W.cfg.queue_max = Q;
    W.burst_trigger = 77;
    W.burst_n = Q + 1;
    W.burst_slot = true;
    open_stream();
    /* The trigger leaves at once (nothing queued or pending); its on_sent
     * runs while the send is still pending and queues Q + 1. */
    cr_assert_eq(owner_send('T', 0, 0, 77), 0);
    EXPECT_WITHIN(WAIT_MS, W.burst_done, "the burst never ran");
    for (int i = 0; i < Q; i++)
        cr_assert_eq(W.burst_rc[i], 0, "message %d of the burst: %d", i, W.burst_rc[i]);
    cr_assert_eq(W.burst_rc[Q], -ENOBUFS, "message past queue_max: %d", W.burst_rc[Q]);
    cr_assert_eq(W.burst_rc[Q + 1], 0, "RPC_SEND_BOUNDED past queue_max: %d", W.burst_rc[Q + 1]);

    EXPECT_WITHIN(WAIT_MS, W.c.n_in == Q + 2, "client got %d of %d", W.c.n_in, Q + 2);
    expect_msg(&W.c.in[0], 'T', 0, "client got", 0);
    for (int i = 0; i < Q; i++)
        expect_msg(&W.c.in[i + 1], 'Q', i, "client got", i + 1);
    expect_msg(&W.c.in[Q + 1], 'S', 0, "client got", Q + 1);
    EXPECT_WITHIN(WAIT_MS, W.n_sent == Q + 2, "on_sent %d of %d", W.n_sent, Q + 2);
    for (int i = 0; i < Q; i++)
        cr_assert_eq(W.stamps[i + 1], 1000 + (uint64_t)i, "on_sent %d: stamp %lu", i + 1,
                     (unsigned long)W.stamps[i + 1]);

    rpc_stream_end(W.st, RPC_OK, NULL);
    EXPECT_WITHIN(WAIT_MS, W.c.have_status, "no status");
    cr_assert_eq(W.c.in_at_status, Q + 2, "the refused message went out after all");
    EXPECT_WITHIN(WAIT_MS, W.n_closed == 1, "on_closed never ran");
    cr_assert_eq(owner_send('L', 0, 0, 5), -EPIPE);
    cr_assert_eq(owner_send('L', 1, RPC_SEND_CREDIT, 6), -EPIPE);
}

Test(rpc_stream, two_kinds_interleaved_leave_in_the_queued_order)
{
    enum { READS = 6, TOTAL = 60 }; /* more than HOLD_MAX in one run */
    W.cfg.credit = READS;
    W.cfg.queue_max = TOTAL;
    open_stream();
    cli_send_n(0, READS);
    EXPECT_WITHIN(WAIT_MS, W.n_msg == READS, "read %d of %d", W.n_msg, READS);

    /* Every 10th from the 3rd is an ack (READS of them), the rest commands. */
    int acks = 0;
    for (int i = 0; i < TOTAL; i++) {
        bool ack = i % 10 == 3;
        acks += ack;
        cr_assert_eq(owner_send(ack ? 'A' : 'C', i, ack ? RPC_SEND_CREDIT : 0, (uint64_t)i), 0,
                     "queueing %d", i);
    }
    cr_assert_eq(acks, READS);
    EXPECT_WITHIN(WAIT_MS, W.c.n_in == TOTAL, "client got %d of %d", W.c.n_in, TOTAL);
    for (int i = 0; i < TOTAL; i++)
        expect_msg(&W.c.in[i], i % 10 == 3 ? 'A' : 'C', i, "client got", i);
    EXPECT_WITHIN(WAIT_MS, W.n_sent == TOTAL, "on_sent %d of %d", W.n_sent, TOTAL);
    for (int i = 0; i < TOTAL; i++) {
        cr_assert_eq(W.stamps[i], (uint64_t)i, "on_sent %d: stamp %lu", i,
                     (unsigned long)W.stamps[i]);
        cr_assert(W.sent_ok[i], "on_sent %d not ok", i);
    }

    /* The acks gave all the credit back: as many reads again. */
    cli_send_n(READS, READS);
    EXPECT_WITHIN(WAIT_MS, W.n_msg == 2 * READS, "read %d after the acks", W.n_msg);
    EXPECT_STAYS(QUIET_MS, W.n_msg == 2 * READS, "read %d, credit %d", W.n_msg, READS);
}

Test(rpc_stream, refuse_answers_and_frees_without_on_closed)
{
    W.refuse = true;
    open_stream();
    EXPECT_WITHIN(WAIT_MS, W.c.have_status, "no status for a refused stream");
    cr_assert_eq((int)W.c.code, RPC_PERMISSION_DENIED);
    cr_assert_str_eq(W.c.status_msg, "refused by the test");
    cr_assert_eq(W.c.in_at_status, 0);
    EXPECT_WITHIN(WAIT_MS, W.n_free == 1, "on_free never ran");
    EXPECT_STAYS(QUIET_MS, W.n_closed == 0 && W.n_free == 1, "on_closed %d, on_free %d",
                 W.n_closed, W.n_free);
}

Test(rpc_stream, shutting_down_stops_reads_and_ends_unavailable_after_the_answers)
{
    W.cfg.credit = 2;
    W.cfg.shutting_down = &W.shutting_down;
    open_stream();
    cli_send_n(0, 5);
    EXPECT_WITHIN(WAIT_MS, W.n_msg == 2, "read %d of 2", W.n_msg);
    EXPECT_WITHIN(WAIT_MS, W.c.n_sent_ok == 5, "client sent %d of 5", W.c.n_sent_ok);

    atomic_store(&W.shutting_down, true);
    rpc_stream_poke(W.st);
    EXPECT_STAYS(QUIET_MS, !W.c.have_status && W.n_msg == 2, "status %d, reads %d",
                 W.c.have_status, W.n_msg);

    cr_assert_eq(owner_send('A', 0, RPC_SEND_CREDIT, 0), 0);
    EXPECT_WITHIN(WAIT_MS, W.c.n_in == 1, "client got %d of 1", W.c.n_in);
    EXPECT_STAYS(QUIET_MS, !W.c.have_status && W.n_msg == 2, "status %d, reads %d",
                 W.c.have_status, W.n_msg);

    cr_assert_eq(owner_send('A', 1, RPC_SEND_CREDIT, 1), 0);
    EXPECT_WITHIN(WAIT_MS, W.c.have_status, "no status after the last answer");
    cr_assert_eq((int)W.c.code, RPC_UNAVAILABLE);
    cr_assert_str_eq(W.c.status_msg, "relay shutting down");
    cr_assert_eq(W.c.in_at_status, 2);
    cr_assert_eq(locked_int(&W.n_msg), 2, "read after the shutdown flag");
    EXPECT_WITHIN(WAIT_MS, W.n_closed == 1, "on_closed never ran");
    cr_assert_eq(W.closed_code, RPC_UNAVAILABLE);
    cr_assert_not(W.closed_cancelled);
}

Test(rpc_stream, an_ack_is_never_refused_by_a_queue_full_of_other_messages)
{
    /* Other kinds of messages fill queue_max; the ack behind them is still
     * queued (answers are bounded by the credit, not by queue_max), goes
     * out after them, and its credit comes back once sent. */
    W.cfg.credit = 1;
    W.cfg.queue_max = 2;
    W.burst_trigger = 77;
    W.burst_n = 2;
    W.burst_ack = true;
    open_stream();
    cli_send_n(0, 3);
    EXPECT_WITHIN(WAIT_MS, W.n_msg == 1, "read %d of 1", W.n_msg);
    EXPECT_WITHIN(WAIT_MS, W.c.n_sent_ok == 3, "client sent %d of 3", W.c.n_sent_ok);
    EXPECT_STAYS(QUIET_MS, W.n_msg == 1, "read %d with credit 1", W.n_msg);

    cr_assert_eq(owner_send('T', 0, 0, 77), 0);
    EXPECT_WITHIN(WAIT_MS, W.burst_done, "the burst never ran");
    cr_assert_eq(W.burst_rc[0], 0);
    cr_assert_eq(W.burst_rc[1], 0);
    cr_assert_eq(W.burst_rc[2], 0, "the ack behind a full queue: %d", W.burst_rc[2]);
    EXPECT_WITHIN(WAIT_MS, W.n_msg == 2, "the ack's credit never came back");
    EXPECT_STAYS(QUIET_MS, W.n_msg == 2, "read %d: more than the one credit came back",
                 W.n_msg);
    EXPECT_WITHIN(WAIT_MS, W.c.n_in == 4, "client got %d of 4", W.c.n_in);
    expect_msg(&W.c.in[0], 'T', 0, "client got", 0);
    expect_msg(&W.c.in[1], 'Q', 0, "client got", 1);
    expect_msg(&W.c.in[2], 'Q', 1, "client got", 2);
    expect_msg(&W.c.in[3], 'A', 0, "client got", 3);
}

/* rpc_stream.h: "The first end's status wins", an OK end too. */
Test(rpc_stream, the_first_end_wins_even_when_it_is_ok)
{
    open_stream();
    cli_send_n(0, 1);
    EXPECT_WITHIN(WAIT_MS, W.n_msg == 1, "read %d of 1", W.n_msg);
    rpc_stream_end(W.st, RPC_OK, NULL);
    rpc_stream_end(W.st, RPC_ABORTED, "a later end");
    cr_assert_eq(owner_send('A', 0, RPC_SEND_CREDIT, 0), 0);
    EXPECT_WITHIN(WAIT_MS, W.c.have_status, "no status");
    cr_assert_eq((int)W.c.code, RPC_OK, "the second end won: %d \"%s\"", (int)W.c.code,
                 W.c.status_msg);
}

/* rpc_stream.h: every message queued gets one on_sent, and send returns
 * -EPIPE once the final status has started. */
Test(rpc_stream, every_accepted_message_gets_on_sent)
{
    open_stream();
    rpc_stream_end(W.st, RPC_OK, NULL); /* nothing owed: the status starts now */
    int rc = owner_send('L', 0, 0, 9);
    EXPECT_WITHIN(WAIT_MS, W.n_closed == 1, "on_closed never ran");
    if (rc == 0)
        EXPECT_WITHIN(WAIT_MS, W.n_sent == 1, "send returned 0, yet no on_sent (sent %d)",
                      W.n_sent);
    else
        cr_assert_eq(rc, -EPIPE);
}
