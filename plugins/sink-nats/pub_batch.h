/*
 * pub_batch.h - the acknowledgement ledger of one write_batch in sink-nats:
 * which asynchronously published message is which frame, and what JetStream
 * answered for it. The sink thread tracks messages and waits; libnats calls
 * pub_batch_on_ack from its own threads. When pub_batch_end returns no
 * library thread refers to the batch any more.
 */
#ifndef SINK_NATS_PUB_BATCH_H
#define SINK_NATS_PUB_BATCH_H

#include <aeroarc/plugin.h>
#include <nats/nats.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct pub_batch {
    pthread_mutex_t mu;   /* guards everything below */
    pthread_cond_t cond;  /* CLOCK_MONOTONIC: outstanding fell or a wake */
    natsMsg **keys;       /* open addressing: message -> frame index */
    uint32_t *index;
    size_t cap;           /* power of two, >= 2 * frames of the batch */
    aero_result *results; /* the batch's results; NULL between batches */
    size_t outstanding;   /* tracked messages not yet answered or reclaimed */
    size_t acked, duplicates;
    /* The first failure the server or library reported, for the log. */
    natsStatus first_status;
    jsErrCode first_code;
    char first_text[160];
};

/* What the batch came to, for metrics and the log. */
struct pub_batch_stats {
    size_t acked;      /* PubAcks (the frames are in the stream) */
    size_t duplicates; /* of which the stream already held the message id */
    size_t unanswered; /* tracked but neither acked nor refused in time */
    natsStatus first_status;
    jsErrCode first_code;
    const char *first_text; /* valid until the next pub_batch_begin */
};

/* 0, or -errno (mutex/condvar creation). */
int pub_batch_init(struct pub_batch *b);
/* Frees the ledger; only once no batch is open. */
void pub_batch_destroy(struct pub_batch *b);

/* Open a batch of n frames reporting into results[0..n). 0 or -ENOMEM. */
int pub_batch_begin(struct pub_batch *b, aero_result *results, size_t n);

/* Record that `msg` carries frame `i`: call BEFORE handing msg to
 * js_PublishMsgAsync (its ack may arrive before that call returns). */
void pub_batch_track(struct pub_batch *b, natsMsg *msg, size_t i);
/* The publish call failed and the message is ours again: forget it. */
void pub_batch_untrack(struct pub_batch *b, natsMsg *msg);

/* jsOptions.PublishAsync.AckHandler; closure is the pub_batch. Sets the
 * frame's result (AERO_OK on a PubAck), destroys msg. Library threads. */
void pub_batch_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                      void *closure);

/* Wake a waiter at once (the connection went down: its acks will not come). */
void pub_batch_wake(struct pub_batch *b);

/*
 * Wait until every tracked message is answered, CLOCK_MONOTONIC passes
 * deadline_ns, or *epoch no longer equals epoch0 (the connection dropped).
 * Returns how many remain unanswered.
 */
size_t pub_batch_wait(struct pub_batch *b, int64_t deadline_ns,
                      const atomic_uint *epoch, unsigned epoch0);

/*
 * Close the batch: take every still-pending message back from the library
 * (its frame stays AERO_RETRY; a late PubAck is then ignored), wait for
 * ack handlers already running, and fill *st. Sink thread.
 */
void pub_batch_end(struct pub_batch *b, jsCtx *js, struct pub_batch_stats *st);

/* How a failed publish or a negative ack maps to a frame result: stream or
 * account full -> AERO_BACKOFF, message too large -> AERO_REJECT, anything
 * else (timeouts, no stream, disconnects) -> AERO_RETRY. */
aero_result pub_batch_classify(natsStatus status, jsErrCode code);

#endif
