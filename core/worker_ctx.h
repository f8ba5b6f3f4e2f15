/*
 * worker_ctx.h - what one gRPC worker carries through the events it
 * dispatches. rpc_server.c owns one per worker thread and passes it, as an
 * argument, to every completion and handler it calls; the handlers pass it
 * on to the sink pipeline. Nothing on the frame path lives in a
 * thread-local: who may defer work, and what is owed, is visible in the
 * call chain.
 */
#ifndef AERO_WORKER_CTX_H
#define AERO_WORKER_CTX_H

#include "frame_codec.h"
#include "sink_pipeline.h"

#include <stdbool.h>

struct worker_ctx {
    /* Set by rpc_server before each event: the worker was busy when the
     * event came (more are queued), so work may wait for the burst's end. */
    bool busy;
    /* Set through worker_ctx_defer: the worker must call its after_burst
     * once it has taken what else is queued. */
    bool deferred;
    /* Sinks this worker queued frames on without waking their threads. */
    struct sink_owed owed;
    /* The frame decoder's map entries for the message being handled. */
    aero_kv fields[FRAME_MAX_FIELDS];
};

/*
 * A handler with work it could put off until the end of the burst: true if
 * it may (the worker was busy and will call after_burst), false if the
 * event came alone and the work should be done now.
 */
static inline bool worker_ctx_defer(struct worker_ctx *w)
{
    if (!w->busy)
        return false;
    w->deferred = true;
    return true;
}

#endif
