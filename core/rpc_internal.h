/*
 * rpc_internal.h - the call object shared by rpc_call.c and rpc_server.c
 * only (the one place grpc_* types are laid out). Services never include it.
 */
#ifndef AERO_RPC_INTERNAL_H
#define AERO_RPC_INTERNAL_H

#include "rpc_call.h"

#include <stdatomic.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>

struct rpc_call {
    grpc_call *call;
    grpc_metadata_array md;
    gpr_timespec deadline;
    /* The message received, as gRPC filled it in: a unary call's request
     * (READ_INITIAL_BYTE_BUFFER) or a stream's latest (RECV_MESSAGE). A
     * call is one or the other, so one buffer and one slice serve both
     * (issue 19: 48 bytes of every open stream). Read into msg_slice on
     * first use, the buffer then freed. */
    grpc_byte_buffer *msg_buf;
    grpc_slice msg_slice;
    bool have_msg_slice;
    bool refused;                     /* answered with a non-OK status by rpc_call_finish */
    int cancelled;                    /* RECV_CLOSE_ON_SERVER result */

    /* Alive until the send completes (rpc_call_send_done, or the free).
     * The batches carry their starter's tags themselves: no wrapper tag
     * per kind here (issue 19). */
    grpc_byte_buffer *send_buf;
    struct conn_guard *guard;         /* told when the call ends (NULL: none) */
    char *peer;                       /* gRPC's peer string, for the guard */
    struct rpc_tag finish_tag;        /* unary: the one closing batch */
    /* rpc_call_watch: the close batch started early, and its watcher. A
     * watched unary call is freed once both it and finish_tag completed. */
    struct rpc_tag watch_tag;
    void (*watch_fn)(void *arg, bool cancelled);
    void *watch_arg;
    atomic_int unary_batches;
};

/* A fresh call object for rpc_server.c to request calls into. */
struct rpc_call *rpc_call_alloc(void);

#endif
