/*
 * rpc_call.c - batches on one server call. Each public start function builds
 * its grpc_op array here and starts it with the caller's own tag; the
 * caller gives back what a completed batch held (rpc_call_send_done,
 * rpc_call_message_release). Any worker thread.
 */
#include "rpc_internal.h"

#include "conn_guard.h"
#include "mono_clock.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdlib.h>
#include <string.h>

const char *rpc_call_code_name(enum rpc_code code)
{
    switch (code) {
    case RPC_OK: return "OK";
    case RPC_CANCELLED: return "CANCELLED";
    case RPC_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case RPC_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case RPC_NOT_FOUND: return "NOT_FOUND";
    case RPC_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case RPC_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case RPC_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case RPC_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case RPC_ABORTED: return "ABORTED";
    case RPC_UNIMPLEMENTED: return "UNIMPLEMENTED";
    case RPC_INTERNAL: return "INTERNAL";
    case RPC_UNAVAILABLE: return "UNAVAILABLE";
    case RPC_DATA_LOSS: return "DATA_LOSS";
    case RPC_UNAUTHENTICATED: return "UNAUTHENTICATED";
    }
    return "UNKNOWN";
}

struct rpc_call *rpc_call_alloc(void)
{
    struct rpc_call *c = calloc(1, sizeof(*c));
    if (c) {
        grpc_metadata_array_init(&c->md);
        atomic_init(&c->unary_batches, 1); /* the closing batch, owed by whoever finishes */
    }
    return c;
}

void rpc_call_free(struct rpc_call *c)
{
    if (!c)
        return;
    if (c->peer) {
        conn_guard_call_closed(c->guard, c->peer, c->cancelled != 0 || c->refused, mono_ns());
        gpr_free(c->peer);
    }
    conn_guard_unref(c->guard);
    rpc_call_message_release(c);
    rpc_call_send_done(c);
    grpc_metadata_array_destroy(&c->md);
    if (c->call)
        grpc_call_unref(c->call);
    free(c);
}

void rpc_call_metadata_done(struct rpc_call *c)
{
    grpc_metadata_array_destroy(&c->md);
    grpc_metadata_array_init(&c->md);
}

size_t rpc_call_metadata_count(const struct rpc_call *c, const char *key)
{
    size_t klen = strlen(key), n = 0;
    for (size_t i = 0; i < c->md.count; i++) {
        const grpc_metadata *m = &c->md.metadata[i];
        n += GRPC_SLICE_LENGTH(m->key) == klen &&
             memcmp(GRPC_SLICE_START_PTR(m->key), key, klen) == 0;
    }
    return n;
}

const char *rpc_call_metadata(const struct rpc_call *c, const char *key, size_t *len)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < c->md.count; i++) {
        const grpc_metadata *m = &c->md.metadata[i];
        if (GRPC_SLICE_LENGTH(m->key) == klen &&
            memcmp(GRPC_SLICE_START_PTR(m->key), key, klen) == 0) {
            *len = GRPC_SLICE_LENGTH(m->value);
            return (const char *)GRPC_SLICE_START_PTR(m->value);
        }
    }
    *len = 0;
    return NULL;
}

int64_t rpc_call_deadline_left_ns(const struct rpc_call *c)
{
    if (gpr_time_cmp(c->deadline, gpr_inf_future(c->deadline.clock_type)) == 0)
        return INT64_MAX;
    gpr_timespec left = gpr_time_sub(c->deadline, gpr_now(c->deadline.clock_type));
    if (left.tv_sec < 0)
        return 0;
    if (left.tv_sec > INT64_MAX / 1000000000 - 1)
        return INT64_MAX;
    return (int64_t)left.tv_sec * 1000000000 + left.tv_nsec;
}

/* The first value of an auth property, copied; NULL when absent. */
static char *auth_property(const struct rpc_call *c, const char *name)
{
    grpc_auth_context *ctx = grpc_call_auth_context(c->call);
    if (!ctx)
        return NULL;
    grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, name);
    const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
    char *v = NULL;
    if (p && p->value_length > 0 && (v = malloc(p->value_length + 1)) != NULL) {
        memcpy(v, p->value, p->value_length);
        v[p->value_length] = '\0';
    }
    grpc_auth_context_release(ctx);
    return v;
}

char *rpc_call_peer_cert_pem(const struct rpc_call *c)
{
    return auth_property(c, GRPC_X509_PEM_CERT_PROPERTY_NAME);
}

char *rpc_call_peer_chain_pem(const struct rpc_call *c)
{
    return auth_property(c, GRPC_X509_PEM_CERT_CHAIN_PROPERTY_NAME);
}

/* A byte buffer's contents as one slice (a ref when it is one slice). */
static grpc_slice read_all(grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader reader;
    grpc_byte_buffer_reader_init(&reader, bb);
    grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    return s;
}

/* The received message as one slice (false: none). The byte buffer goes
 * as soon as its bytes are in the slice: a ref when it was one slice. */
static bool take_message(struct rpc_call *c)
{
    if (!c->have_msg_slice && c->msg_buf) {
        c->msg_slice = read_all(c->msg_buf);
        c->have_msg_slice = true;
        grpc_byte_buffer_destroy(c->msg_buf);
        c->msg_buf = NULL;
    }
    return c->have_msg_slice;
}

const uint8_t *rpc_call_request(struct rpc_call *c, size_t *len)
{
    if (!take_message(c)) {
        *len = 0;
        return NULL;
    }
    *len = GRPC_SLICE_LENGTH(c->msg_slice);
    return GRPC_SLICE_START_PTR(c->msg_slice);
}

/* Start a batch that sends a status with these details. gRPC holds no
 * pointer to the details slice past grpc_call_start_batch (grpc_types.h)
 * and takes its own copy or ref of the bytes, so the slice lives only for
 * the start instead of in every call (issue 19). */
static grpc_call_error start_with_details(struct rpc_call *c, grpc_op *ops, size_t n,
                                          grpc_op *status_op, const char *msg, void *tag)
{
    grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");
    status_op->data.send_status_from_server.status_details = &details;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    grpc_slice_unref(details);
    return e;
}

/* A unary call's batches: the closing one, and the watch when there is
 * one. The last to complete frees the call. */
static void unary_batch_done(struct rpc_call *c)
{
    if (atomic_fetch_sub(&c->unary_batches, 1) == 1)
        rpc_call_free(c);
}

static void unary_finished(struct rpc_tag *tag, bool ok, struct worker_ctx *w)
{
    (void)ok;
    (void)w; /* the client may be gone; nothing left to do either way */
    unary_batch_done((struct rpc_call *)((char *)tag - offsetof(struct rpc_call, finish_tag)));
}

static void watch_done(struct rpc_tag *tag, bool ok, struct worker_ctx *w)
{
    (void)ok;
    (void)w;
    struct rpc_call *c = (struct rpc_call *)((char *)tag - offsetof(struct rpc_call, watch_tag));
    c->watch_fn(c->watch_arg, c->cancelled != 0);
    unary_batch_done(c);
}

int rpc_call_watch(struct rpc_call *c, void (*fn)(void *arg, bool cancelled), void *arg)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    c->watch_fn = fn;
    c->watch_arg = arg;
    c->watch_tag.done = watch_done;
    atomic_fetch_add(&c->unary_batches, 1);
    if (grpc_call_start_batch(c->call, &op, 1, &c->watch_tag, NULL) != GRPC_CALL_OK) {
        atomic_fetch_sub(&c->unary_batches, 1);
        c->watch_fn = NULL;
        return -1;
    }
    return 0;
}

void rpc_call_finish(struct rpc_call *c, enum rpc_code code, const char *msg,
                      const uint8_t *resp, size_t resp_len)
{
    grpc_op ops[4];
    grpc_op *op = ops;
    memset(ops, 0, sizeof(ops));
    c->refused = code != RPC_OK;

    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op++;
    if (resp && code == RPC_OK) {
        grpc_slice s = grpc_slice_from_copied_buffer((const char *)resp, resp_len);
        c->send_buf = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        op->op = GRPC_OP_SEND_MESSAGE;
        op->data.send_message.send_message = c->send_buf;
        op++;
    }
    grpc_op *status = op++;
    status->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    status->data.send_status_from_server.status = (grpc_status_code)code;
    if (!c->watch_fn) { /* a watched call has its close batch started */
        op->op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        op->data.recv_close_on_server.cancelled = &c->cancelled;
        op++;
    }
    c->finish_tag.done = unary_finished;
    if (start_with_details(c, ops, (size_t)(op - ops), status, code == RPC_OK ? NULL : msg,
                           &c->finish_tag) != GRPC_CALL_OK)
        unary_batch_done(c); /* nothing was started: no completion will come */
}

int rpc_call_begin(struct rpc_call *c, struct rpc_tag *close_tag)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[1].data.recv_close_on_server.cancelled = &c->cancelled;
    return grpc_call_start_batch(c->call, ops, 2, close_tag, NULL) == GRPC_CALL_OK ? 0 : -1;
}

int rpc_call_recv(struct rpc_call *c, struct rpc_tag *tag)
{
    grpc_op op;
    rpc_call_message_release(c);
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->msg_buf;
    return grpc_call_start_batch(c->call, &op, 1, tag, NULL) == GRPC_CALL_OK ? 0 : -1;
}

const uint8_t *rpc_call_message(struct rpc_call *c, size_t *len)
{
    if (!take_message(c)) { /* gRPC left no buffer: the end of the stream */
        *len = 0;
        return NULL;
    }
    *len = GRPC_SLICE_LENGTH(c->msg_slice);
    /* An empty message is a valid (all-default) protobuf, not the end. */
    static const uint8_t empty[1];
    return *len ? GRPC_SLICE_START_PTR(c->msg_slice) : empty;
}

void rpc_call_message_release(struct rpc_call *c)
{
    if (c->have_msg_slice) {
        grpc_slice_unref(c->msg_slice);
        c->have_msg_slice = false;
    }
    if (c->msg_buf) {
        grpc_byte_buffer_destroy(c->msg_buf);
        c->msg_buf = NULL;
    }
}

void rpc_call_send_done(struct rpc_call *c)
{
    if (c->send_buf) {
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
    }
}

int rpc_call_send(struct rpc_call *c, const uint8_t *msg, size_t len, bool more,
                    struct rpc_tag *tag)
{
    grpc_op op;
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)msg, len);
    c->send_buf = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.flags = more ? GRPC_WRITE_BUFFER_HINT : 0;
    op.data.send_message.send_message = c->send_buf;
    if (grpc_call_start_batch(c->call, &op, 1, tag, NULL) != GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
        return -1;
    }
    return 0;
}

int rpc_call_status(struct rpc_call *c, enum rpc_code code, const char *msg,
                      struct rpc_tag *tag)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op.data.send_status_from_server.status = (grpc_status_code)code;
    return start_with_details(c, &op, 1, &op, msg, tag) == GRPC_CALL_OK ? 0 : -1;
}

void rpc_call_cancel(struct rpc_call *c, enum rpc_code code, const char *msg)
{
    grpc_call_cancel_with_status(c->call, (grpc_status_code)code, msg, NULL);
}

bool rpc_call_was_cancelled(const struct rpc_call *c) { return c->cancelled != 0; }
