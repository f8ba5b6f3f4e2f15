/*
 * rpc_stream.c - one server stream as a small state machine under its own
 * mutex: progress() sends the next queued message, posts the next read, or
 * sends the final status once nothing is owed, and it is the only place
 * that decides any of the three. Completion-queue workers enter through the
 * four batch completions; owners (on any thread) through the public calls.
 * It knows nothing of what the messages mean.
 */
#include "rpc_stream.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Messages gRPC may hold back in a row (GRPC_WRITE_BUFFER_HINT) before one
 * is written: a run of acks (a sink thread's batch after its fsync) leaves
 * in one write instead of one each, but under steady load the queue never
 * empties, and acks held until it did stalled the agents' windows
 * (docs/benchmarks.md). */
#define HOLD_MAX 16

/* The outgoing queue is freed whenever it empties: 10,000 idle streams
 * should not each keep even a small buffer (issue 19: 256 bytes of every
 * stream's 1.75 KB). The next one starts at the size the last one had
 * reached, up to QUEUE_HINT_MAX, so a busy stream does not regrow it
 * from QUEUE_MIN_BYTES on every burst. */
#define QUEUE_HINT_MAX 4096
#define QUEUE_MIN_BYTES 256

/* What the narrow fields of struct rpc_stream hold. */
_Static_assert(QUEUE_HINT_MAX <= UINT16_MAX && HOLD_MAX < UINT8_MAX &&
                   ((RPC_SEND_CREDIT | RPC_SEND_BOUNDED) & ~0xffu) == 0,
               "rpc_stream's q_hint, held or sending_flags too narrow");

/* Each queued message: this header, then len bytes, padded to 8. */
struct out_hdr {
    uint32_t len;
    uint32_t flags;
    uint64_t stamp;
};

struct rpc_stream_set {
    pthread_mutex_t mu;
    struct rpc_stream *head;
    size_t count;
};

/* One per open stream, so its fields are ordered to leave no padding and
 * the queue's offsets are 32-bit (a message's length already is): issue
 * 19 counts every byte of an open stream. */
struct rpc_stream {
    struct rpc_tag recv_tag, send_tag, close_tag, status_tag;
    struct rpc_call *call;
    const struct rpc_stream_handler *h;
    void *owner;
    const atomic_bool *shutting_down;
    struct rpc_stream_set *set;
    struct rpc_stream *prev, *next; /* in set, under set->mu */
    atomic_int refs;
    /* Messages read and not yet answered. Atomic: a message is counted as
     * it arrives, before its owner sees it, without taking mu. */
    atomic_int owed;
    int max_owed;
    enum rpc_code final_code; /* under mu, as below */

    pthread_mutex_t mu; /* everything below */
    const char *final_msg;
    uint64_t sending_stamp;
    int paused;
    uint16_t q_hint;       /* the size the next queue starts at (<= QUEUE_HINT_MAX) */
    uint8_t held;          /* sent with the write-buffer hint in a row (<= HOLD_MAX) */
    uint8_t sending_flags; /* RPC_SEND_* of the message in flight */

    uint8_t *q; /* outgoing messages, [head, tail) */
    uint32_t q_cap, q_head, q_tail, q_count;
    uint32_t q_other, q_max; /* queued without RPC_SEND_CREDIT, and their bound */
    /* Messages ever queued, ever handed to gRPC (their write began), and
     * ever taken by it (in queue order, wrapping: once one is not, the
     * call is over and none is after it): a message's number tells
     * whether it went out. */
    uint32_t n_queued, n_begun, n_sent;

    bool started;     /* rpc_stream_start ran: batches may be started */
    bool recv_pending, send_pending, status_pending;
    bool read_closed; /* no more reads: EOF, end, shutdown, a failed batch */
    bool dead;        /* the call is over */
    bool final_set;   /* the owner chose the status (the first end wins) */
};

#define STREAM_OF(tag, member) \
    ((struct rpc_stream *)((char *)(tag) - offsetof(struct rpc_stream, member)))

static size_t padded(size_t len) { return (len + 7) & ~(size_t)7; }

/* ------------------------------------------------------------ lifetime */

void rpc_stream_ref(struct rpc_stream *st) { atomic_fetch_add(&st->refs, 1); }

void rpc_stream_unref(struct rpc_stream *st)
{
    if (atomic_fetch_sub(&st->refs, 1) != 1)
        return;
    if (st->h->on_free)
        st->h->on_free(st->owner);
    rpc_call_free(st->call);
    pthread_mutex_destroy(&st->mu);
    free(st->q);
    free(st);
}

/* ------------------------------------------------------ outgoing queue */

static int queue_push(struct rpc_stream *st, const uint8_t *msg, size_t len, unsigned flags,
                      uint64_t stamp)
{
    size_t need = sizeof(struct out_hdr) + padded(len);
    if (st->q_tail + need > st->q_cap && st->q_head > 0) {
        memmove(st->q, st->q + st->q_head, st->q_tail - st->q_head);
        st->q_tail -= st->q_head;
        st->q_head = 0;
    }
    if (st->q_tail + need > st->q_cap) {
        size_t cap = st->q_cap ? (size_t)st->q_cap * 2 : st->q_hint ? st->q_hint : QUEUE_MIN_BYTES;
        while (cap < st->q_tail + need)
            cap *= 2;
        if (cap > UINT32_MAX) /* a queue of 4 GB is not one to grow */
            return -ENOMEM;
        uint8_t *q = realloc(st->q, cap);
        if (!q)
            return -ENOMEM;
        st->q = q;
        st->q_cap = (uint32_t)cap;
    }
    struct out_hdr *hd = (struct out_hdr *)(st->q + st->q_tail);
    *hd = (struct out_hdr){(uint32_t)len, flags, stamp};
    memcpy(hd + 1, msg, len);
    st->q_tail += (uint32_t)need;
    st->q_count++;
    st->q_other += !(flags & RPC_SEND_CREDIT);
    st->n_queued++;
    return 0;
}

/* The head message; valid until the next push. */
static const struct out_hdr *queue_head(const struct rpc_stream *st)
{
    return (const struct out_hdr *)(st->q + st->q_head);
}

static void queue_pop(struct rpc_stream *st)
{
    st->q_other -= !(queue_head(st)->flags & RPC_SEND_CREDIT);
    st->q_head += (uint32_t)(sizeof(struct out_hdr) + padded(queue_head(st)->len));
    if (--st->q_count > 0)
        return;
    st->q_head = st->q_tail = 0;
    st->q_hint = st->q_cap < QUEUE_HINT_MAX ? (uint16_t)st->q_cap : QUEUE_HINT_MAX;
    free(st->q);
    st->q = NULL;
    st->q_cap = 0;
}

/* Under mu: the queued messages will never go out. Their stamps go to
 * *stamps (malloc'ed, for on_sent(false) outside the lock; NULL when out
 * of memory: then they are dropped unreported) and each answer's credit
 * comes back. Returns how many. */
static size_t queue_drop_all(struct rpc_stream *st, uint64_t **stamps)
{
    size_t n = 0;
    *stamps = st->q_count ? malloc(st->q_count * sizeof(**stamps)) : NULL;
    while (st->q_count > 0) {
        if (queue_head(st)->flags & RPC_SEND_CREDIT)
            atomic_fetch_sub(&st->owed, 1);
        if (*stamps)
            (*stamps)[n++] = queue_head(st)->stamp;
        queue_pop(st);
    }
    return n;
}

/* --------------------------------------------------------- the machine */

static void set_final(struct rpc_stream *st, enum rpc_code code, const char *msg)
{
    if (!st->final_set) {
        st->final_set = true;
        st->final_code = code;
        st->final_msg = msg;
    }
}

/*
 * Advance: send the next queued message, read the next one, or end with the
 * status once nothing is owed. Called with st->mu held after every event.
 * Each batch started holds a reference; a failed start drops it again
 * (never the last: whoever called holds one).
 */
static void progress(struct rpc_stream *st)
{
    /* Before start an owner may already queue or end (another thread got
     * the pointer first): nothing goes out before the initial metadata. */
    if (!st->started || st->status_pending || st->dead)
        return;

    if (!st->send_pending && st->q_count > 0) {
        const struct out_hdr *m = queue_head(st);
        st->sending_stamp = m->stamp;
        st->sending_flags = (uint8_t)m->flags;
        bool more = st->q_count > 1 && st->held < HOLD_MAX;
        st->held = more ? (uint8_t)(st->held + 1) : 0;
        st->send_pending = true;
        rpc_stream_ref(st);
        /* rpc_call_send copies the bytes: the slot may go at once. */
        int rc = rpc_call_send(st->call, (const uint8_t *)(m + 1), m->len, more, &st->send_tag);
        queue_pop(st);
        st->n_begun += rc == 0;
        if (rc < 0) {
            st->send_pending = false;
            if (st->sending_flags & RPC_SEND_CREDIT)
                atomic_fetch_sub(&st->owed, 1);
            st->read_closed = true;
            rpc_stream_unref(st);
        }
    }

    if (!st->read_closed && st->shutting_down && atomic_load(st->shutting_down)) {
        st->read_closed = true;
        set_final(st, RPC_UNAVAILABLE, "relay shutting down");
    }
    if (!st->read_closed && !st->recv_pending && st->paused <= 0 &&
        atomic_load(&st->owed) < st->max_owed) {
        st->recv_pending = true;
        rpc_stream_ref(st);
        if (rpc_call_recv(st->call, &st->recv_tag) < 0) {
            st->recv_pending = false;
            st->read_closed = true;
            rpc_stream_unref(st);
        }
    }

    if (st->read_closed && atomic_load(&st->owed) == 0 && !st->send_pending && st->q_count == 0) {
        st->status_pending = true;
        rpc_stream_ref(st);
        if (rpc_call_status(st->call, st->final_code, st->final_msg, &st->status_tag) < 0)
            rpc_stream_unref(st); /* the call is over; the close batch ends it */
    }
}

static void lock_progress_unlock(struct rpc_stream *st)
{
    pthread_mutex_lock(&st->mu);
    progress(st);
    pthread_mutex_unlock(&st->mu);
}

/* ------------------------------------------------------ the open set */

static void set_join(struct rpc_stream *st)
{
    struct rpc_stream_set *set = st->set;
    if (!set)
        return;
    pthread_mutex_lock(&set->mu);
    st->next = set->head;
    if (set->head)
        set->head->prev = st;
    set->head = st;
    set->count++;
    pthread_mutex_unlock(&set->mu);
}

static void set_leave(struct rpc_stream *st)
{
    struct rpc_stream_set *set = st->set;
    if (!set)
        return;
    pthread_mutex_lock(&set->mu);
    if (st->prev)
        st->prev->next = st->next;
    else
        set->head = st->next;
    if (st->next)
        st->next->prev = st->prev;
    set->count--;
    pthread_mutex_unlock(&set->mu);
}

struct rpc_stream_set *rpc_stream_set_create(void)
{
    struct rpc_stream_set *set = calloc(1, sizeof(*set));
    if (set)
        pthread_mutex_init(&set->mu, NULL);
    return set;
}

void rpc_stream_set_destroy(struct rpc_stream_set *set)
{
    if (!set)
        return;
    pthread_mutex_destroy(&set->mu);
    free(set);
}

size_t rpc_stream_set_count(struct rpc_stream_set *set)
{
    pthread_mutex_lock(&set->mu);
    size_t n = set->count;
    pthread_mutex_unlock(&set->mu);
    return n;
}

/* A stream in the set is alive: its close batch, which takes it out,
 * holds a reference until then. */
void rpc_stream_set_poke(struct rpc_stream_set *set)
{
    pthread_mutex_lock(&set->mu);
    for (struct rpc_stream *st = set->head; st; st = st->next)
        lock_progress_unlock(st);
    pthread_mutex_unlock(&set->mu);
}

/* ------------------------------------------------ batch completions */

static void on_recv(struct rpc_tag *tag, bool ok, struct worker_ctx *w)
{
    struct rpc_stream *st = STREAM_OF(tag, recv_tag);
    size_t len = 0;
    const uint8_t *msg = ok ? rpc_call_message(st->call, &len) : NULL;
    if (msg) {
        atomic_fetch_add(&st->owed, 1);
        st->h->on_message(st->owner, msg, len, w);
    }
    rpc_call_message_release(st->call); /* a failed read may leave a buffer too */
    if (ok && !msg && st->h->on_eof)
        st->h->on_eof(st->owner); /* before progress() may send the status */
    pthread_mutex_lock(&st->mu);
    st->recv_pending = false;
    if (!msg)
        st->read_closed = true; /* EOF (ok) or the call failed (!ok) */
    progress(st);
    pthread_mutex_unlock(&st->mu);
    rpc_stream_unref(st);
}

static void on_send(struct rpc_tag *tag, bool ok, struct worker_ctx *w)
{
    (void)w;
    struct rpc_stream *st = STREAM_OF(tag, send_tag);
    rpc_call_send_done(st->call); /* before on_sent: its buffer is gRPC's no more */
    /* Stable while send_pending: nobody else writes them until it clears. */
    uint64_t stamp = st->sending_stamp;
    unsigned flags = st->sending_flags;
    if (st->h->on_sent)
        st->h->on_sent(st->owner, stamp, ok);
    pthread_mutex_lock(&st->mu);
    st->send_pending = false;
    st->n_sent += ok;
    if (flags & RPC_SEND_CREDIT)
        atomic_fetch_sub(&st->owed, 1);
    if (!ok)
        st->read_closed = true;
    progress(st);
    pthread_mutex_unlock(&st->mu);
    rpc_stream_unref(st);
}

static void on_status(struct rpc_tag *tag, bool ok, struct worker_ctx *w)
{
    (void)ok;
    (void)w;
    rpc_stream_unref(STREAM_OF(tag, status_tag));
}

static void on_close(struct rpc_tag *tag, bool ok, struct worker_ctx *w)
{
    (void)ok;
    (void)w;
    struct rpc_stream *st = STREAM_OF(tag, close_tag);
    bool cancelled = rpc_call_was_cancelled(st->call);
    uint64_t *stamps;
    pthread_mutex_lock(&st->mu);
    st->dead = true;
    st->read_closed = true;
    size_t dropped = queue_drop_all(st, &stamps); /* nobody will read them */
    enum rpc_code code = st->final_code;
    pthread_mutex_unlock(&st->mu);
    for (size_t i = 0; st->h->on_sent && i < dropped; i++)
        st->h->on_sent(st->owner, stamps[i], false);
    free(stamps);
    st->h->on_closed(st->owner, cancelled, code);
    set_leave(st);
    rpc_stream_unref(st);
}

/* ------------------------------------------------------------ the API */

struct rpc_stream *rpc_stream_create(struct rpc_call *call, const struct rpc_stream_handler *h,
                                     void *owner, const struct rpc_stream_config *cfg)
{
    struct rpc_stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->call = call;
    st->h = h;
    st->owner = owner;
    st->shutting_down = cfg->shutting_down;
    st->set = cfg->set;
    st->max_owed = cfg->credit > 0 ? cfg->credit : 1;
    st->q_max = cfg->queue_max == 0           ? 1
                : cfg->queue_max > UINT32_MAX ? UINT32_MAX
                                              : (uint32_t)cfg->queue_max;
    atomic_init(&st->refs, 1);
    atomic_init(&st->owed, 0);
    pthread_mutex_init(&st->mu, NULL);
    st->recv_tag.done = on_recv;
    st->send_tag.done = on_send;
    st->close_tag.done = on_close;
    st->status_tag.done = on_status;
    return st;
}

void rpc_stream_refuse(struct rpc_stream *st, enum rpc_code code, const char *msg)
{
    struct rpc_call *call = st->call;
    st->call = NULL; /* rpc_call_finish releases it once the answer is out */
    rpc_call_finish(call, code, msg, NULL, 0);
    rpc_stream_unref(st);
}

void rpc_stream_start(struct rpc_stream *st)
{
    rpc_stream_ref(st); /* the close batch's */
    set_join(st);
    if (rpc_call_begin(st->call, &st->close_tag) < 0) {
        pthread_mutex_lock(&st->mu);
        st->dead = true;
        st->read_closed = true;
        pthread_mutex_unlock(&st->mu);
        st->h->on_closed(st->owner, true, RPC_OK);
        set_leave(st);
        rpc_stream_unref(st);
        return;
    }
    pthread_mutex_lock(&st->mu);
    st->started = true;
    progress(st);
    pthread_mutex_unlock(&st->mu);
}

int rpc_stream_send(struct rpc_stream *st, const uint8_t *msg, size_t len, unsigned flags,
                    uint64_t stamp)
{
    return rpc_stream_send_numbered(st, msg, len, flags, stamp, NULL);
}

int rpc_stream_send_numbered(struct rpc_stream *st, const uint8_t *msg, size_t len,
                             unsigned flags, uint64_t stamp, uint32_t *number)
{
    int rc = 0;
    pthread_mutex_lock(&st->mu);
    if (st->dead || st->status_pending)
        rc = -EPIPE; /* over, or about to be: nothing more goes out */
    else if (!(flags & (RPC_SEND_CREDIT | RPC_SEND_BOUNDED)) && st->q_other >= st->q_max)
        rc = -ENOBUFS;
    else
        rc = queue_push(st, msg, len, flags, stamp);
    if (rc == 0 && number)
        *number = st->n_queued;
    /* Never sent, so answered: what it owed is given back. */
    if (rc < 0 && (flags & RPC_SEND_CREDIT))
        atomic_fetch_sub(&st->owed, 1);
    progress(st);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* Whether the message numbered so is among the first *count (wrapping). */
static bool reached(struct rpc_stream *st, const uint32_t *count, uint32_t number)
{
    pthread_mutex_lock(&st->mu);
    bool r = (int32_t)(*count - number) >= 0;
    pthread_mutex_unlock(&st->mu);
    return r;
}

bool rpc_stream_sent(struct rpc_stream *st, uint32_t number)
{
    return reached(st, &st->n_sent, number);
}

bool rpc_stream_begun(struct rpc_stream *st, uint32_t number)
{
    return reached(st, &st->n_begun, number);
}

void rpc_stream_credit(struct rpc_stream *st, int n)
{
    pthread_mutex_lock(&st->mu);
    atomic_fetch_sub(&st->owed, n);
    progress(st);
    pthread_mutex_unlock(&st->mu);
}

void rpc_stream_pause(struct rpc_stream *st, int n)
{
    pthread_mutex_lock(&st->mu);
    st->paused += n;
    pthread_mutex_unlock(&st->mu);
}

void rpc_stream_resume(struct rpc_stream *st)
{
    pthread_mutex_lock(&st->mu);
    st->paused--;
    progress(st);
    pthread_mutex_unlock(&st->mu);
}

void rpc_stream_end(struct rpc_stream *st, enum rpc_code code, const char *msg)
{
    pthread_mutex_lock(&st->mu);
    st->read_closed = true;
    set_final(st, code, msg);
    progress(st);
    pthread_mutex_unlock(&st->mu);
}

void rpc_stream_cancel(struct rpc_stream *st, enum rpc_code code, const char *msg)
{
    rpc_call_cancel(st->call, code, msg);
}

void rpc_stream_poke(struct rpc_stream *st) { lock_progress_unlock(st); }
