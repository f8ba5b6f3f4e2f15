/*
 * route_state.c - the drone map of route-redis and the batches built from it
 * (see route_state.h for the rules). Callers hold the plugin's mutex; nothing
 * here blocks, sleeps or does I/O, so session_up/session_down stay O(1).
 */
#include "route_state.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct entry *hnext; /* bucket chain */
    struct entry *qnext; /* dirty FIFO */
    char *drone_id;
    char *active;        /* the drone's session here, or NULL */
    char *dead[ROUTE_DEAD_PER_DRONE]; /* ended sessions Redis may still hold, oldest first */
    unsigned n_dead;
    bool active_sent; /* a write of `active` went to Redis: it may hold it */
    bool set_pending; /* Register's unconditional SET is still owed */
    bool queued;      /* on the dirty FIFO */
};

struct route_state {
    struct entry **buckets;
    size_t n_buckets, n_entries;
    struct entry *qhead, *qtail;
    size_t n_active, n_dead, max_dead;
};

/* ------------------------------------------------------------ batches */

#define ARENA_BLOCK 16384

struct route_arena_block {
    struct route_arena_block *next;
    size_t used, cap;
    char data[];
};

void route_state_batch_init(struct route_batch *b) { memset(b, 0, sizeof(*b)); }

void route_state_batch_clear(struct route_batch *b)
{
    while (b->blocks) {
        struct route_arena_block *next = b->blocks->next;
        free(b->blocks);
        b->blocks = next;
    }
    free(b->ops);
    route_state_batch_init(b);
}

/* A copy of s that lives as long as the batch; blocks never move, so
 * pointers handed out stay valid while more are added. */
static const char *batch_dup(struct route_batch *b, const char *s)
{
    size_t len = strlen(s) + 1;
    struct route_arena_block *blk = b->blocks;
    if (!blk || blk->cap - blk->used < len) {
        size_t cap = len > ARENA_BLOCK ? len : ARENA_BLOCK;
        blk = malloc(sizeof(*blk) + cap);
        if (!blk)
            return NULL;
        blk->used = 0;
        blk->cap = cap;
        blk->next = b->blocks;
        b->blocks = blk;
    }
    char *out = blk->data + blk->used;
    memcpy(out, s, len);
    blk->used += len;
    return out;
}

/* Append an op naming drone and ids[0..n); NULL on ENOMEM (batch unchanged
 * but for unused arena bytes). */
static struct route_op *batch_push(struct route_batch *b, enum route_op_kind kind,
                                   const char *drone_id, char *const *ids, unsigned n)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct route_op *ops = realloc(b->ops, cap * sizeof(*ops));
        if (!ops)
            return NULL;
        b->ops = ops;
        b->cap = cap;
    }
    struct route_op op = {.kind = kind, .n_sessions = n};
    if (!(op.drone_id = batch_dup(b, drone_id)))
        return NULL;
    for (unsigned i = 0; i < n; i++)
        if (!(op.session_ids[i] = batch_dup(b, ids[i])))
            return NULL;
    b->ops[b->n] = op;
    return &b->ops[b->n++];
}

/* ---------------------------------------------------------------- map */

static size_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

struct route_state *route_state_new(size_t max_dead)
{
    struct route_state *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->n_buckets = 64;
    st->buckets = calloc(st->n_buckets, sizeof(*st->buckets));
    if (!st->buckets) {
        free(st);
        return NULL;
    }
    st->max_dead = max_dead;
    return st;
}

static void entry_free(struct entry *e)
{
    free(e->drone_id);
    free(e->active);
    for (unsigned i = 0; i < e->n_dead; i++)
        free(e->dead[i]);
    free(e);
}

void route_state_free(struct route_state *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_buckets; i++) {
        struct entry *e = st->buckets[i];
        while (e) {
            struct entry *next = e->hnext;
            entry_free(e);
            e = next;
        }
    }
    free(st->buckets);
    free(st);
}

static struct entry *find(const struct route_state *st, const char *drone_id)
{
    struct entry *e = st->buckets[hash(drone_id) & (st->n_buckets - 1)];
    while (e && strcmp(e->drone_id, drone_id) != 0)
        e = e->hnext;
    return e;
}

/* Double the table once it holds more entries than buckets. Failure to
 * grow only makes chains longer. */
static void maybe_grow(struct route_state *st)
{
    if (st->n_entries <= st->n_buckets)
        return;
    size_t n = st->n_buckets * 2;
    struct entry **b = calloc(n, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < st->n_buckets; i++) {
        struct entry *e = st->buckets[i];
        while (e) {
            struct entry *next = e->hnext;
            size_t k = hash(e->drone_id) & (n - 1);
            e->hnext = b[k];
            b[k] = e;
            e = next;
        }
    }
    free(st->buckets);
    st->buckets = b;
    st->n_buckets = n;
}

static struct entry *insert(struct route_state *st, const char *drone_id)
{
    struct entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->drone_id = strdup(drone_id))) {
        free(e);
        return NULL;
    }
    size_t k = hash(drone_id) & (st->n_buckets - 1);
    e->hnext = st->buckets[k];
    st->buckets[k] = e;
    st->n_entries++;
    maybe_grow(st);
    return e;
}

/* An entry with nothing left to do leaves the map (never while queued:
 * the FIFO still points at it). */
static void maybe_drop(struct route_state *st, struct entry *e)
{
    if (e->active || e->n_dead || e->queued)
        return;
    struct entry **p = &st->buckets[hash(e->drone_id) & (st->n_buckets - 1)];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    st->n_entries--;
    entry_free(e);
}

static void enqueue(struct route_state *st, struct entry *e)
{
    if (e->queued)
        return;
    e->queued = true;
    e->qnext = NULL;
    if (st->qtail)
        st->qtail->qnext = e;
    else
        st->qhead = e;
    st->qtail = e;
}

static struct entry *dequeue(struct route_state *st)
{
    struct entry *e = st->qhead;
    if (!e)
        return NULL;
    st->qhead = e->qnext;
    if (!st->qhead)
        st->qtail = NULL;
    e->queued = false;
    e->qnext = NULL;
    return e;
}

/* Take ownership of sid as a dead session of e. Returns 1 when something
 * had to be forgotten (sid itself at the global limit, else e's oldest). */
static int add_dead(struct route_state *st, struct entry *e, char *sid)
{
    if (st->n_dead >= st->max_dead) {
        free(sid);
        return 1;
    }
    int dropped = 0;
    if (e->n_dead == ROUTE_DEAD_PER_DRONE) {
        free(e->dead[0]);
        memmove(&e->dead[0], &e->dead[1], (ROUTE_DEAD_PER_DRONE - 1) * sizeof(e->dead[0]));
        e->n_dead--;
        st->n_dead--;
        dropped = 1;
    }
    e->dead[e->n_dead++] = sid;
    st->n_dead++;
    return dropped;
}

/* ------------------------------------------------------- up and down */

int route_state_up(struct route_state *st, const char *drone_id, const char *session_id)
{
    struct entry *e = find(st, drone_id);
    bool created = false;
    if (!e) {
        if (!(e = insert(st, drone_id)))
            return -ENOMEM;
        created = true;
    }
    if (e->active && strcmp(e->active, session_id) == 0) {
        e->set_pending = true; /* a repeated call: write it again */
        enqueue(st, e);
        return 0;
    }
    char *copy = strdup(session_id);
    if (!copy) {
        if (created)
            maybe_drop(st, e);
        return -ENOMEM;
    }
    int rc = 0;
    if (e->active) {
        /* Superseded without a session_down (or before it arrives): the
         * newer SET overwrites the key, but if that SET never makes it the
         * old session must still not linger. */
        if (e->active_sent)
            rc = add_dead(st, e, e->active);
        else
            free(e->active);
        st->n_active--;
    }
    e->active = copy;
    e->active_sent = false;
    e->set_pending = true;
    st->n_active++;
    enqueue(st, e);
    return rc;
}

int route_state_down(struct route_state *st, const char *drone_id, const char *session_id)
{
    struct entry *e = find(st, drone_id);
    if (!e || !e->active || strcmp(e->active, session_id) != 0)
        return 0;
    char *old = e->active;
    int rc = 0;
    e->active = NULL;
    e->set_pending = false;
    st->n_active--;
    if (e->active_sent) {
        rc = add_dead(st, e, old);
        if (e->n_dead)
            enqueue(st, e);
    } else {
        free(old); /* never sent: Redis cannot hold it */
    }
    e->active_sent = false;
    maybe_drop(st, e);
    return rc;
}

size_t route_state_active(const struct route_state *st) { return st->n_active; }
size_t route_state_dead(const struct route_state *st) { return st->n_dead; }
bool route_state_has_dirty(const struct route_state *st) { return st->qhead != NULL; }

/* ------------------------------------------------------------ batches */

static int push_delete(struct route_batch *b, const struct entry *e, bool with_active)
{
    char *ids[ROUTE_OP_MAX_IDS];
    unsigned n = 0;
    for (unsigned i = 0; i < e->n_dead; i++)
        ids[n++] = e->dead[i];
    if (with_active && e->active && e->active_sent)
        ids[n++] = e->active;
    if (n == 0)
        return 0;
    return batch_push(b, ROUTE_OP_DELETE, e->drone_id, ids, n) ? 1 : -ENOMEM;
}

static int push_write(struct route_batch *b, struct entry *e, enum route_op_kind kind)
{
    if (!batch_push(b, kind, e->drone_id, &e->active, 1))
        return -ENOMEM;
    e->active_sent = true;
    return 1;
}

int route_state_take_dirty(struct route_state *st, struct route_batch *b, size_t max_ops)
{
    int added = 0, rc;
    while (st->qhead && (size_t)added < max_ops) {
        struct entry *e = st->qhead;
        if ((rc = push_delete(b, e, false)) < 0)
            return rc;
        added += rc;
        if (e->active && e->set_pending) {
            if ((rc = push_write(b, e, ROUTE_OP_SET)) < 0)
                return rc;
            added += rc;
            e->set_pending = false;
        }
        dequeue(st);
        maybe_drop(st, e);
    }
    return added;
}

int route_state_take_refresh(struct route_state *st, struct route_batch *b)
{
    int added = 0;
    for (size_t i = 0; i < st->n_buckets; i++)
        for (struct entry *e = st->buckets[i]; e; e = e->hnext) {
            if (!e->active)
                continue;
            if (push_write(b, e, ROUTE_OP_REFRESH) < 0)
                return -ENOMEM;
            added++;
        }
    return added;
}

int route_state_take_resync(struct route_state *st, struct route_batch *b)
{
    int added = 0, rc;
    for (size_t i = 0; i < st->n_buckets; i++)
        for (struct entry *e = st->buckets[i]; e; e = e->hnext) {
            if ((rc = push_delete(b, e, false)) < 0)
                return rc;
            added += rc;
            if (e->active) {
                if ((rc = push_write(b, e, ROUTE_OP_REFRESH)) < 0)
                    return rc;
                added += rc;
                e->set_pending = false;
            }
        }
    /* Everything queued is covered above. */
    struct entry *e;
    while ((e = dequeue(st)))
        maybe_drop(st, e);
    return added;
}

int route_state_take_final(struct route_state *st, struct route_batch *b)
{
    int added = 0, rc;
    for (size_t i = 0; i < st->n_buckets; i++)
        for (struct entry *e = st->buckets[i]; e; e = e->hnext) {
            if ((rc = push_delete(b, e, true)) < 0)
                return rc;
            added += rc;
        }
    return added;
}

/* Forget sid from e's dead sessions, if it is there. */
static void settle_dead(struct route_state *st, struct entry *e, const char *sid)
{
    for (unsigned i = 0; i < e->n_dead; i++) {
        if (strcmp(e->dead[i], sid) != 0)
            continue;
        free(e->dead[i]);
        memmove(&e->dead[i], &e->dead[i + 1], (e->n_dead - i - 1) * sizeof(e->dead[0]));
        e->n_dead--;
        st->n_dead--;
        return;
    }
}

void route_state_apply(struct route_state *st, const struct route_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const struct route_op *op = &b->ops[i];
        if (op->kind != ROUTE_OP_DELETE ||
            (op->result != ROUTE_RES_OK && op->result != ROUTE_RES_ERROR))
            continue;
        struct entry *e = find(st, op->drone_id);
        if (!e)
            continue;
        for (unsigned k = 0; k < op->n_sessions; k++)
            settle_dead(st, e, op->session_ids[k]);
        maybe_drop(st, e);
    }
}
