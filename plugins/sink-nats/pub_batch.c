/*
 * pub_batch.c - the per-batch acknowledgement ledger of sink-nats (see
 * pub_batch.h). The sink thread opens, fills, waits on and closes it;
 * libnats' reply and timer threads enter only pub_batch_on_ack, which
 * touches the ledger under its mutex. Nothing here calls into libnats with
 * the mutex held (a stalled publish waits for our ack handler).
 */
#include "pub_batch.h"

#include "mono_clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long pub_batch_end waits for ack handlers that libnats has already
 * started (they only need our mutex, so this is never reached in practice). */
#define HANDLER_DRAIN_NS (10LL * 1000000000)

/* A removed slot: keeps probe chains intact (slots are never reused within
 * a batch, which holds at most cap/2 messages). */
#define TOMBSTONE ((natsMsg *)(uintptr_t)1)

static struct timespec to_timespec(int64_t ns)
{
    return (struct timespec){.tv_sec = ns / 1000000000,
                             .tv_nsec = ns % 1000000000};
}

static size_t slot_of(const struct pub_batch *b, const natsMsg *m)
{
    uint64_t h = (uint64_t)(uintptr_t)m;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h & (b->cap - 1);
}

/* The slot holding m, or SIZE_MAX. Caller holds mu. */
static size_t find(const struct pub_batch *b, const natsMsg *m)
{
    if (b->cap == 0)
        return SIZE_MAX;
    for (size_t i = slot_of(b, m), k = 0; k < b->cap; k++, i = (i + 1) & (b->cap - 1)) {
        if (b->keys[i] == NULL)
            return SIZE_MAX;
        if (b->keys[i] == m)
            return i;
    }
    return SIZE_MAX;
}

int pub_batch_init(struct pub_batch *b)
{
    int rc;

    memset(b, 0, sizeof(*b));
    if ((rc = pthread_mutex_init(&b->mu, NULL)) != 0)
        return -rc;
    if ((rc = mono_cond_init(&b->cond)) != 0)
        goto fail_mutex;
    return 0;
fail_mutex:
    pthread_mutex_destroy(&b->mu);
    return -rc;
}

void pub_batch_destroy(struct pub_batch *b)
{
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->mu);
    free(b->keys);
    free(b->index);
}

int pub_batch_begin(struct pub_batch *b, aero_result *results, size_t n)
{
    size_t cap = 64;
    while (cap < 2 * n)
        cap *= 2;
    if (cap > b->cap) {
        natsMsg **keys = calloc(cap, sizeof(*keys));
        uint32_t *index = calloc(cap, sizeof(*index));
        if (keys == NULL || index == NULL || n > UINT32_MAX) {
            free(keys);
            free(index);
            return -ENOMEM;
        }
        free(b->keys);
        free(b->index);
        b->keys = keys;
        b->index = index;
        b->cap = cap;
    }
    pthread_mutex_lock(&b->mu);
    memset(b->keys, 0, b->cap * sizeof(*b->keys));
    b->results = results;
    b->outstanding = b->acked = b->duplicates = 0;
    b->first_status = NATS_OK;
    b->first_code = 0;
    b->first_text[0] = '\0';
    pthread_mutex_unlock(&b->mu);
    return 0;
}

void pub_batch_track(struct pub_batch *b, natsMsg *msg, size_t i)
{
    pthread_mutex_lock(&b->mu);
    size_t s = slot_of(b, msg);
    while (b->keys[s] != NULL)
        s = (s + 1) & (b->cap - 1);
    b->keys[s] = msg;
    b->index[s] = (uint32_t)i;
    b->outstanding++;
    pthread_mutex_unlock(&b->mu);
}

/* Forget m if tracked; returns its frame index or SIZE_MAX. Holds mu. */
static size_t untrack_locked(struct pub_batch *b, const natsMsg *m)
{
    size_t s = find(b, m);
    if (s == SIZE_MAX)
        return SIZE_MAX;
    b->keys[s] = TOMBSTONE;
    b->outstanding--;
    if (b->outstanding == 0)
        pthread_cond_broadcast(&b->cond);
    return b->index[s];
}

void pub_batch_untrack(struct pub_batch *b, natsMsg *msg)
{
    pthread_mutex_lock(&b->mu);
    untrack_locked(b, msg);
    pthread_mutex_unlock(&b->mu);
}

aero_result pub_batch_classify(natsStatus status, jsErrCode code)
{
    if (status == NATS_MAX_PAYLOAD)
        return AERO_REJECT;
    switch ((int)code) {
    case JSStreamMessageExceedsMaximumErr:
        return AERO_REJECT;
    case JSStreamStoreFailedErr:          /* "maximum messages/bytes exceeded" */
    case JSStreamLimitsErr:
    case JSStorageResourcesExceededErr:
    case JSMemoryResourcesExceededErr:
    case JSAccountResourcesExceededErr:
    case JSInsufficientResourcesErr:
        return AERO_BACKOFF;
    default:
        return AERO_RETRY;
    }
}

void pub_batch_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                      void *closure)
{
    struct pub_batch *b = closure;

    pthread_mutex_lock(&b->mu);
    size_t i = b->results ? untrack_locked(b, msg) : SIZE_MAX;
    if (i != SIZE_MAX && pa != NULL) {
        b->results[i] = AERO_OK;
        b->acked++;
        b->duplicates += pa->Duplicate;
    } else if (i != SIZE_MAX) {
        natsStatus st = pae ? pae->Err : NATS_ERR;
        jsErrCode code = pae ? pae->ErrCode : 0;
        b->results[i] = pub_batch_classify(st, code);
        if (b->first_status == NATS_OK) {
            b->first_status = st;
            b->first_code = code;
            snprintf(b->first_text, sizeof(b->first_text), "%s",
                     pae && pae->ErrText ? pae->ErrText : natsStatus_GetText(st));
        }
    }
    pthread_mutex_unlock(&b->mu);
    natsMsg_Destroy(msg); /* the AckHandler contract: ours to destroy */
}

void pub_batch_wake(struct pub_batch *b)
{
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
}

size_t pub_batch_wait(struct pub_batch *b, int64_t deadline_ns,
                      const atomic_uint *epoch, unsigned epoch0)
{
    struct timespec until = to_timespec(deadline_ns);

    pthread_mutex_lock(&b->mu);
    while (b->outstanding > 0 && atomic_load(epoch) == epoch0 &&
           mono_ns() < deadline_ns)
        pthread_cond_timedwait(&b->cond, &b->mu, &until);
    size_t left = b->outstanding;
    pthread_mutex_unlock(&b->mu);
    return left;
}

void pub_batch_end(struct pub_batch *b, jsCtx *js, struct pub_batch_stats *st)
{
    size_t unanswered = 0;

    pthread_mutex_lock(&b->mu);
    size_t outstanding = b->outstanding;
    pthread_mutex_unlock(&b->mu);

    if (outstanding > 0 && js != NULL) {
        /* Everything still in libnats' pending map comes back to us; an
         * ack arriving later is dropped by the library. */
        natsMsgList pending = {0};
        if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK) {
            pthread_mutex_lock(&b->mu);
            for (int k = 0; k < pending.Count; k++)
                unanswered += untrack_locked(b, pending.Msgs[k]) != SIZE_MAX;
            pthread_mutex_unlock(&b->mu);
            natsMsgList_Destroy(&pending);
        }
    }

    /* What is left was already taken off the pending map by a library
     * thread that is about to call pub_batch_on_ack: let it finish, so no
     * handler refers to this batch once we return. */
    int64_t drain_until = mono_ns() + HANDLER_DRAIN_NS;
    struct timespec until = to_timespec(drain_until);
    pthread_mutex_lock(&b->mu);
    while (b->outstanding > 0 && mono_ns() < drain_until)
        pthread_cond_timedwait(&b->cond, &b->mu, &until);
    unanswered += b->outstanding;
    b->outstanding = 0;
    b->results = NULL; /* any later handler finds no batch */
    st->acked = b->acked;
    st->duplicates = b->duplicates;
    st->unanswered = unanswered;
    st->first_status = b->first_status;
    st->first_code = b->first_code;
    st->first_text = b->first_text;
    pthread_mutex_unlock(&b->mu);
}
