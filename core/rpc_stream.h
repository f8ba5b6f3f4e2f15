/*
 * rpc_stream.h - a server-side gRPC stream, written once for every message
 * kind: reads under a credit, an outgoing queue of already-encoded messages
 * (acks, commands, evidence: the stream does not look inside them), the
 * final status once nothing is owed, and its own reference count.
 *
 * gRPC core rules kept here and nowhere else: at most one receive and one
 * send batch in flight; a message is read only while the owner has granted
 * credit and has not paused the stream (so memory stays bounded whatever
 * the peer sends: the stream stops reading, HTTP/2 flow control does the
 * rest); the call is freed only when every batch started on it completed.
 *
 * Threads: every function may be called from any thread. Callbacks run on
 * completion-queue workers with no stream lock held.
 */
#ifndef AERO_RPC_STREAM_H
#define AERO_RPC_STREAM_H

#include "rpc_call.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rpc_stream;
struct rpc_stream_set;
struct worker_ctx;

struct rpc_stream_handler {
    /*
     * One message arrived. It took one read credit; the owner gives it back
     * with a send flagged RPC_SEND_CREDIT (an ack) or rpc_stream_credit
     * (a message answered by nothing). Messages of one stream are handed
     * over one at a time, in order. `msg` is valid during the call only.
     * May run once after on_closed (a message gRPC had already read).
     */
    void (*on_message)(void *owner, const uint8_t *msg, size_t len, struct worker_ctx *w);
    /* A queued message left: gRPC took it for the wire (ok), or the call
     * failed. `stamp` as given to rpc_stream_send. Optional. */
    void (*on_sent)(void *owner, uint64_t stamp, bool ok);
    /* The peer half-closed: no message follows. Runs once, before the
     * final status can go out, so what the owner undoes here is undone
     * when the peer sees its status. Optional. */
    void (*on_eof)(void *owner);
    /* The call is over (status sent, cancelled, or the transport is gone):
     * once per started stream. `cancelled`: it did not end by our status;
     * `code`: the status we chose (RPC_OK unless the owner ended it). */
    void (*on_closed)(void *owner, bool cancelled, enum rpc_code code);
    /* The last reference is gone: free the owner. Optional. */
    void (*on_free)(void *owner);
};

struct rpc_stream_config {
    int credit;       /* messages that may be read before the owner answers any */
    /* Outgoing messages without RPC_SEND_CREDIT (commands, evidence)
     * queued at most; answers are bounded by the credit instead, so a full
     * queue never refuses one (see rpc_stream_send). */
    size_t queue_max;
    /* Once set (the server is stopping), the stream reads no more and ends
     * with UNAVAILABLE "relay shutting down" when nothing is owed. */
    const atomic_bool *shutting_down;
    /* The open streams of one service: a started stream is in it until
     * on_closed has returned. Optional. */
    struct rpc_stream_set *set;
};

struct rpc_stream_set *rpc_stream_set_create(void);
/* Every stream must have left it. */
void rpc_stream_set_destroy(struct rpc_stream_set *set);
size_t rpc_stream_set_count(struct rpc_stream_set *set);
/* rpc_stream_poke every open stream (after the shutdown flag was set). */
void rpc_stream_set_poke(struct rpc_stream_set *set);

/*
 * Take over a call: nothing is started yet. The caller holds the one
 * reference. Returns NULL when out of memory (the call is still the
 * caller's to finish).
 */
struct rpc_stream *rpc_stream_create(struct rpc_call *call, const struct rpc_stream_handler *h,
                                     void *owner, const struct rpc_stream_config *cfg);

/* Refuse a stream that was never started: answer the call with this status
 * and drop the caller's reference (on_free runs; on_closed does not). */
void rpc_stream_refuse(struct rpc_stream *st, enum rpc_code code, const char *msg);

/*
 * Send initial metadata, watch for the end of the call and start reading.
 * If gRPC refuses, the call is over: on_closed runs before this returns.
 */
void rpc_stream_start(struct rpc_stream *st);

void rpc_stream_ref(struct rpc_stream *st);
void rpc_stream_unref(struct rpc_stream *st);

/* rpc_stream_send flags. */
#define RPC_SEND_CREDIT 1u /* the message answers a read one: its credit returns once sent */
/* Bounded by its sender instead (a command: the command table keeps at
 * most 4096 pending per kind, the slot kinds one at a time): a full queue
 * does not refuse it; it waits its turn behind the others. */
#define RPC_SEND_BOUNDED 2u

/*
 * Queue one encoded message (copied) behind those already queued; it goes
 * out in order. Every message queued gets one on_sent: ok once gRPC took
 * it, false when the call ended first. Returns 0; -ENOBUFS for a message
 * without RPC_SEND_CREDIT or RPC_SEND_BOUNDED when queue_max of those already wait (nothing
 * queued: the caller decides what a full queue means for its kind; an
 * answer is never refused for it); -EPIPE when the call is over or its
 * final status has started; -ENOMEM. On any error nothing is queued and a
 * RPC_SEND_CREDIT message's credit is returned (it counts as answered).
 */
int rpc_stream_send(struct rpc_stream *st, const uint8_t *msg, size_t len, unsigned flags,
                    uint64_t stamp);

/* rpc_stream_send, and on success *number names the message for
 * rpc_stream_sent. */
int rpc_stream_send_numbered(struct rpc_stream *st, const uint8_t *msg, size_t len,
                             unsigned flags, uint64_t stamp, uint32_t *number);

/* Whether gRPC took the message numbered so (its on_sent came, ok). One
 * not taken is still queued, behind the peer's flow control or earlier
 * messages, or was dropped when the call ended. */
bool rpc_stream_sent(struct rpc_stream *st, uint32_t number);

/* Whether the message numbered so was handed to gRPC: its write began
 * (and may have failed or still be waiting on the peer's flow control). */
bool rpc_stream_begun(struct rpc_stream *st, uint32_t number);

/* Give back read credit for n messages that get no RPC_SEND_CREDIT answer. */
void rpc_stream_credit(struct rpc_stream *st, int n);

/* Stop reading until as many resumes came (a full sink queue). The count
 * may go below zero for a moment: a resume for a pause the owner is about
 * to add (it reads nothing meanwhile: on_message is still running). */
void rpc_stream_pause(struct rpc_stream *st, int n);
void rpc_stream_resume(struct rpc_stream *st);

/*
 * Read no more; send the final status once every message read has been
 * answered and the queue is empty. The first end's status wins (an OK end
 * too). `msg` is kept, not copied: a string that outlives the stream.
 */
void rpc_stream_end(struct rpc_stream *st, enum rpc_code code, const char *msg);

/* End the call now, from any thread (a newer session took over). */
void rpc_stream_cancel(struct rpc_stream *st, enum rpc_code code, const char *msg);

/* Look again at the shutdown flag and what is owed (after it was set). */
void rpc_stream_poke(struct rpc_stream *st);

#endif
