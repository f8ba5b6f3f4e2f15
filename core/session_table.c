/*
 * session_table.c - the live sessions: 64 shards, each a mutex and a chained
 * hash of agent id -> session (SipHash-2-4 under a per-table random key),
 * and an optional cap on their number (one atomic count across shards). Entered from every gRPC worker and the expiry
 * timer at once; a call holds at most one shard lock, and never calls out
 * (callbacks, owner drops) while holding one.
 */
#include "session_table.h"

#include "random_bytes.h"
#include "siphash.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHARD_BITS 6
#define SHARDS (1u << SHARD_BITS)
#define INITIAL_BUCKETS 8 /* per shard, a power of two */

/*
 * What the table keeps of a session: session_info's fields with each
 * string as long as it is (session_fill makes the session_info), since
 * 100,000 sessions each carrying the fixed-size arrays would cost 500 bytes
 * apiece, four times what they use (issue 19: the relay's own memory per
 * open stream).
 */
struct session {
    struct session *next;
    uint64_t hash;
    uint64_t gen;    /* changes on Register and on every attach */
    void *owner;     /* the attached stream's reference, if attached */
    void *ext;       /* the session's own data (command table); ext_release drops it */
    int64_t connected_at_unix_ns, last_heartbeat_unix_ns, last_message_unix_ns;
    struct session_caps *caps; /* NULL: none */
    char *flight;    /* NULL, or "<flight_id>\0<intent_id>\0" (malloc'ed) */
    uint32_t intent_version;
    bool stream_attached;
    uint8_t once; /* enum session_once bits already asked (session_table_once) */
    uint8_t agent_len;
    char session_id[SESSION_ID_LEN + 1];
    char agent_id[]; /* agent_len + 1 bytes */
};

/* A session_info from what the table keeps. Shard lock held. */
static void session_fill(const struct session *e, struct session_info *out)
{
    memcpy(out->agent_id, e->agent_id, (size_t)e->agent_len + 1);
    memcpy(out->session_id, e->session_id, sizeof(out->session_id));
    out->connected_at_unix_ns = e->connected_at_unix_ns;
    out->last_heartbeat_unix_ns = e->last_heartbeat_unix_ns;
    out->last_message_unix_ns = e->last_message_unix_ns;
    const char *flight = e->flight ? e->flight : "";
    const char *intent = e->flight ? flight + strlen(flight) + 1 : "";
    memcpy(out->flight_id, flight, strlen(flight) + 1);
    memcpy(out->intent_id, intent, strlen(intent) + 1);
    out->intent_version = e->intent_version;
    out->caps = e->caps;
    out->stream_attached = e->stream_attached;
}

static void session_free(struct session *e)
{
    if (e != NULL)
        free(e->flight);
    free(e);
}

struct shard {
    pthread_mutex_t lock;
    struct session **buckets;
    size_t n_buckets;
    size_t n;
};

struct session_table {
    struct shard shards[SHARDS];
    _Atomic uint64_t next_gen;
    _Atomic size_t count; /* sessions linked, plus slots reserved by register */
    size_t max;           /* 0: no cap; set once before the table is shared */
    uint8_t hash_key[SIPHASH_KEY_BYTES]; /* random, per table (so per process) */
    void (*ext_release)(void *ext); /* set once before the table is shared */
};

static void ext_drop(struct session_table *t, void *ext)
{
    if (ext != NULL && t->ext_release != NULL)
        t->ext_release(ext);
}

void session_table_set_ext_release(struct session_table *t, void (*release)(void *ext))
{
    t->ext_release = release;
}

bool session_agent_id_valid(const char *id, size_t len)
{
    if (id == NULL || len == 0 || len > SESSION_AGENT_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == ':';
        if (!ok)
            return false;
    }
    return true;
}

void session_id_generate(char out[SESSION_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t bytes[16];

    random_bytes(bytes, sizeof(bytes));
    memcpy(out, "sess-", 5);
    for (size_t i = 0; i < sizeof(bytes); i++) {
        out[5 + 2 * i] = hex[bytes[i] >> 4];
        out[5 + 2 * i + 1] = hex[bytes[i] & 15];
    }
    out[SESSION_ID_LEN] = '\0';
}

/* SipHash-2-4 under the table's random key: agent ids are chosen by
 * clients, and with an unkeyed hash (FNV) they could be chosen to land in
 * one shard and one bucket, making every lookup a walk of them all. The
 * low bits pick the shard, the rest the bucket. */
static uint64_t hash_id(const struct session_table *t, const char *id, size_t len)
{
    return siphash24(t->hash_key, id, len);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);

    if (p == NULL) {
        /* Register has no error path (SPEC: it always succeeds for a
         * valid id); a relay out of memory cannot serve anyway. */
        fputs("aeroarc-relay: out of memory in session table\n", stderr);
        abort();
    }
    return p;
}

struct session_table *session_table_create(void)
{
    struct session_table *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    for (size_t i = 0; i < SHARDS; i++) {
        struct shard *s = &t->shards[i];
        s->buckets = calloc(INITIAL_BUCKETS, sizeof(*s->buckets));
        if (s->buckets == NULL)
            goto fail;
        s->n_buckets = INITIAL_BUCKETS;
        pthread_mutex_init(&s->lock, NULL);
    }
    random_bytes(t->hash_key, sizeof(t->hash_key));
    atomic_init(&t->next_gen, 1);
    atomic_init(&t->count, 0);
    return t;

fail:
    for (size_t i = 0; i < SHARDS; i++)
        free(t->shards[i].buckets);
    free(t);
    return NULL;
}

void session_table_destroy(struct session_table *t, void (*drop_owner)(void *owner))
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < SHARDS; i++) {
        struct shard *s = &t->shards[i];
        for (size_t b = 0; b < s->n_buckets; b++) {
            struct session *e = s->buckets[b];
            while (e != NULL) {
                struct session *next = e->next;
                if (e->stream_attached && drop_owner != NULL)
                    drop_owner(e->owner);
                ext_drop(t, e->ext);
                session_caps_release(e->caps);
                session_free(e);
                e = next;
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(t);
}

/* ------------------------------------------------------- shard internals */

struct key {
    const char *id;
    size_t len;
    uint64_t hash;
};

/* False for ids no session can have (too long), so lookups just miss. */
static bool key_make(const struct session_table *t, const char *id, struct key *k)
{
    if (id == NULL)
        return false;
    k->id = id;
    k->len = strnlen(id, SESSION_AGENT_MAX + 1);
    if (k->len == 0 || k->len > SESSION_AGENT_MAX)
        return false;
    k->hash = hash_id(t, id, k->len);
    return true;
}

static struct shard *shard_of(struct session_table *t, const struct key *k)
{
    return &t->shards[k->hash & (SHARDS - 1)];
}

static struct session **bucket_of(struct shard *s, uint64_t hash)
{
    return &s->buckets[(hash >> SHARD_BITS) & (s->n_buckets - 1)];
}

/* The link pointing at the session of k (for unlinking), or at the NULL
 * ending its bucket when there is none. Shard lock held. */
static struct session **shard_find(struct shard *s, const struct key *k)
{
    struct session **link = bucket_of(s, k->hash);

    while (*link != NULL) {
        struct session *e = *link;
        if (e->hash == k->hash && e->agent_len == k->len && memcmp(e->agent_id, k->id, k->len) == 0)
            return link;
        link = &e->next;
    }
    return link;
}

/* Lock agent_id's shard into *shard and find its session (shard_find's
 * link). NULL, with nothing locked, when agent_id cannot be a key. */
static struct session **lock_find(struct session_table *t, const char *agent_id,
                                  struct shard **shard)
{
    struct key k;
    if (!key_make(t, agent_id, &k))
        return NULL;
    *shard = shard_of(t, &k);
    pthread_mutex_lock(&(*shard)->lock);
    return shard_find(*shard, &k);
}

/* Keep chains short: double when the shard averages two per bucket. A
 * failed allocation only leaves chains longer. Shard lock held. */
static void shard_grow(struct shard *s)
{
    size_t n = s->n_buckets * 2;
    struct session **nb;

    if (s->n < 2 * s->n_buckets || (nb = calloc(n, sizeof(*nb))) == NULL)
        return;
    for (size_t b = 0; b < s->n_buckets; b++) {
        struct session *e = s->buckets[b];
        while (e != NULL) {
            struct session *next = e->next;
            struct session **head = &nb[(e->hash >> SHARD_BITS) & (n - 1)];
            e->next = *head;
            *head = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = nb;
    s->n_buckets = n;
}

static void shard_unlink(struct session_table *t, struct shard *s, struct session **link)
{
    *link = (*link)->next;
    s->n--;
    atomic_fetch_sub(&t->count, 1);
}

static uint64_t next_gen(struct session_table *t)
{
    return atomic_fetch_add(&t->next_gen, 1);
}

static void set_out(void **out, void *value)
{
    if (out != NULL)
        *out = value;
}

/* ------------------------------------------------------------ operations */

void session_table_set_max(struct session_table *t, size_t max_sessions)
{
    t->max = max_sessions;
}

/* Take one slot of the cap for a new session; false when the table is
 * full. The count is global and each register holds only its own shard
 * lock, so the slot is reserved atomically: the cap is exact under races. */
static bool reserve_slot(struct session_table *t)
{
    if (t->max == 0) {
        atomic_fetch_add(&t->count, 1);
        return true;
    }
    size_t n = atomic_load(&t->count);
    do {
        if (n >= t->max)
            return false;
    } while (!atomic_compare_exchange_weak(&t->count, &n, n + 1));
    return true;
}

/* An id over SESSION_AGENT_MAX bytes is a caller bug (Register validates
 * first); it registers nothing and yields an empty session id. */
struct session_caps *session_caps_create(char *const *v, size_t n, bool *invalid)
{
    size_t bytes = 0;

    *invalid = n > SESSION_CAPS_MAX;
    for (size_t i = 0; i < n && !*invalid; i++) {
        size_t len = strlen(v[i]);
        *invalid = len > SESSION_CAP_BYTES;
        bytes += len + 1;
    }
    if (n == 0 || *invalid)
        return NULL;
    struct session_caps *c = malloc(sizeof(*c) + n * sizeof(char *) + bytes);
    if (c == NULL)
        return NULL;
    atomic_init(&c->refs, 1);
    c->n = n;
    char *at = (char *)&c->v[n];
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(v[i]) + 1;
        c->v[i] = memcpy(at, v[i], len);
        at += len;
    }
    return c;
}

static struct session_caps *caps_ref(struct session_caps *c)
{
    if (c != NULL)
        atomic_fetch_add(&c->refs, 1);
    return c;
}

void session_caps_release(struct session_caps *c)
{
    if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1)
        free(c);
}

void session_info_release(struct session_info *info)
{
    session_caps_release(info->caps);
    info->caps = NULL;
}

void session_infos_free(struct session_info *infos, size_t n)
{
    for (size_t i = 0; i < n; i++)
        session_info_release(&infos[i]);
    free(infos);
}

int session_table_register(struct session_table *t, const char *agent_id, int64_t now_ns,
                           char session_id_out[SESSION_ID_LEN + 1], void **displaced)
{
    return session_table_register_caps(t, agent_id, now_ns, NULL, session_id_out, displaced);
}

int session_table_register_caps(struct session_table *t, const char *agent_id, int64_t now_ns,
                                struct session_caps *caps,
                                char session_id_out[SESSION_ID_LEN + 1], void **displaced)
{
    struct session_caps *old_caps = NULL;
    void *old_ext = NULL;
    char *old_flight = NULL;
    struct session *fresh = NULL;
    struct key k;

    set_out(displaced, NULL);
    session_id_out[0] = '\0';
    if (!key_make(t, agent_id, &k))
        return -EINVAL;
    char sid[SESSION_ID_LEN + 1];
    session_id_generate(sid); /* outside the lock: a syscall */
    struct shard *s = shard_of(t, &k);
    pthread_mutex_lock(&s->lock);
    struct session **link = shard_find(s, &k);
    struct session *e = *link;
    if (e == NULL) {
        if (!reserve_slot(t)) {
            pthread_mutex_unlock(&s->lock);
            return -ENOSPC;
        }
        /* allocate under the lock: rare (new agent), and it keeps one path */
        e = fresh = xcalloc(1, sizeof(*e) + k.len + 1);
        e->hash = k.hash;
        e->agent_len = (uint8_t)k.len; /* key_make: at most SESSION_AGENT_MAX */
        memcpy(e->agent_id, agent_id, k.len + 1);
    } else if (e->stream_attached) {
        set_out(displaced, e->owner);
    }
    e->gen = next_gen(t);
    e->owner = NULL;
    memcpy(session_id_out, sid, SESSION_ID_LEN + 1);
    memcpy(e->session_id, sid, SESSION_ID_LEN + 1);
    e->connected_at_unix_ns = now_ns;
    e->last_heartbeat_unix_ns = now_ns;
    e->last_message_unix_ns = 0; /* Register is no stream message */
    old_flight = e->flight;
    e->flight = NULL;
    e->intent_version = 0;
    old_caps = e->caps;
    old_ext = e->ext; /* a new session: its own commands */
    e->ext = NULL;
    e->caps = caps_ref(caps);
    e->stream_attached = false;
    e->once = 0;
    if (fresh != NULL) {
        *link = fresh; /* its slot in count was reserved above */
        s->n++;
        shard_grow(s);
    }
    pthread_mutex_unlock(&s->lock);
    session_caps_release(old_caps);
    free(old_flight);
    ext_drop(t, old_ext);
    return 0;
}

int session_table_attach(struct session_table *t, const char *agent_id, void *owner,
                         uint64_t *gen, char session_id_out[SESSION_ID_LEN + 1],
                         void **displaced)
{
    return session_table_attach_session(t, agent_id, NULL, owner, gen, session_id_out, displaced);
}

int session_table_attach_session(struct session_table *t, const char *agent_id,
                                 const char *expect, void *owner, uint64_t *gen,
                                 char session_id_out[SESSION_ID_LEN + 1], void **displaced)
{
    struct shard *s;
    int rc = -ENOENT;

    set_out(displaced, NULL);
    struct session **link = lock_find(t, agent_id, &s);
    if (!link)
        return -ENOENT;
    struct session *e = *link;
    if (e != NULL && expect != NULL && strcmp(e->session_id, expect) != 0) {
        rc = -ESTALE;
    } else if (e != NULL) {
        if (e->stream_attached)
            set_out(displaced, e->owner);
        e->gen = next_gen(t);
        e->owner = owner;
        e->stream_attached = true;
        *gen = e->gen;
        memcpy(session_id_out, e->session_id, SESSION_ID_LEN + 1);
        rc = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

bool session_table_detach(struct session_table *t, const char *agent_id, uint64_t gen,
                          void **owner)
{
    struct session *gone = NULL;
    struct shard *s;

    set_out(owner, NULL);
    struct session **link = lock_find(t, agent_id, &s);
    if (!link)
        return false;
    struct session *e = *link;
    if (e != NULL && e->gen == gen && e->stream_attached) {
        set_out(owner, e->owner);
        shard_unlink(t, s, link);
        gone = e;
    }
    pthread_mutex_unlock(&s->lock);
    if (gone != NULL) {
        session_caps_release(gone->caps);
        ext_drop(t, gone->ext);
    }
    session_free(gone);
    return gone != NULL;
}

/* At most SESSION_FLIGHT_MAX bytes of src, backing off to a UTF-8
 * sequence start so a valid id never becomes invalid UTF-8 (DroneStatus is
 * a proto string, which Go clients refuse when it is not UTF-8). */
static aero_str flight_cut(aero_str src)
{
    if (src.len > SESSION_FLIGHT_MAX) {
        src.len = SESSION_FLIGHT_MAX;
        while (src.len > 0 && ((uint8_t)src.ptr[src.len] & 0xC0) == 0x80)
            src.len--;
    }
    return src;
}

static bool str_is(const char *have, aero_str want)
{
    return strlen(have) == want.len && memcmp(have, want.ptr, want.len) == 0;
}

/* Set the session's flight and/or intent id (ptr NULL: keep that one).
 * Frames repeat the same ids: only a change allocates. Shard lock held. */
static void set_flight(struct session *e, aero_str flight, aero_str intent)
{
    const char *old_f = e->flight ? e->flight : "";
    const char *old_i = e->flight ? old_f + strlen(old_f) + 1 : "";
    if (flight.ptr == NULL)
        flight = (aero_str){old_f, strlen(old_f)};
    if (intent.ptr == NULL)
        intent = (aero_str){old_i, strlen(old_i)};
    flight = flight_cut(flight);
    intent = flight_cut(intent);
    if (str_is(old_f, flight) && str_is(old_i, intent))
        return;
    char *blob = malloc(flight.len + intent.len + 2);
    if (blob == NULL)
        return; /* the last ids stay: only a status shows them */
    memcpy(blob, flight.ptr, flight.len);
    blob[flight.len] = '\0';
    memcpy(blob + flight.len + 1, intent.ptr, intent.len);
    blob[flight.len + 1 + intent.len] = '\0';
    free(e->flight);
    e->flight = blob;
}

void session_table_touch(struct session_table *t, const char *agent_id, uint64_t gen,
                         int64_t now_ns, aero_str flight_id)
{
    aero_frame f = {.size = sizeof(f), .flight_id = flight_id};
    session_table_touch_frame(t, agent_id, gen, now_ns, &f);
}

bool session_table_touch_frame(struct session_table *t, const char *agent_id, uint64_t gen,
                               int64_t now_ns, const aero_frame *frame)
{
    struct shard *s;
    bool current = false;

    struct session **link = lock_find(t, agent_id, &s);
    if (!link)
        return false;
    struct session *e = *link;
    if (e != NULL && e->gen == gen) {
        current = true;
        e->last_heartbeat_unix_ns = e->last_message_unix_ns = now_ns;
        aero_str none = {NULL, 0};
        bool f = frame != NULL && frame->flight_id.len > 0 && frame->flight_id.ptr != NULL;
        bool i = frame != NULL && frame->intent_id.len > 0 && frame->intent_id.ptr != NULL;
        if (f || i)
            set_flight(e, f ? frame->flight_id : none, i ? frame->intent_id : none);
        if (i)
            e->intent_version = frame->intent_version;
    }
    pthread_mutex_unlock(&s->lock);
    return current;
}

bool session_table_once(struct session_table *t, const char *agent_id, uint64_t gen,
                        enum session_once what)
{
    struct shard *s;
    struct session **link = lock_find(t, agent_id, &s);
    if (!link)
        return false;
    struct session *e = *link;
    bool first = e != NULL && e->gen == gen && !(e->once & what);
    if (first)
        e->once |= (uint8_t)what;
    pthread_mutex_unlock(&s->lock);
    return first;
}

void session_table_touch_message(struct session_table *t, const char *agent_id, uint64_t gen,
                                 int64_t now_ns)
{
    struct shard *s;
    struct session **link = lock_find(t, agent_id, &s);
    if (!link)
        return;
    struct session *e = *link;
    if (e != NULL && e->gen == gen)
        e->last_message_unix_ns = now_ns;
    pthread_mutex_unlock(&s->lock);
}

/* Unlink this shard's expired sessions onto *dead. Shard lock held. */
static size_t shard_expire(struct session_table *t, struct shard *s, int64_t now_ns,
                           int64_t ttl_ns, struct session **dead)
{
    size_t n = 0;

    for (size_t b = 0; b < s->n_buckets; b++) {
        struct session **link = &s->buckets[b];
        while (*link != NULL) {
            struct session *e = *link;
            if (e->stream_attached || now_ns - e->connected_at_unix_ns <= ttl_ns) {
                link = &e->next;
                continue;
            }
            shard_unlink(t, s, link);
            e->next = *dead;
            *dead = e;
            n++;
        }
    }
    return n;
}

size_t session_table_expire(struct session_table *t, int64_t now_ns, int64_t ttl_ns,
                            void (*expired)(void *arg, const char *agent_id,
                                            const char *session_id),
                            void *arg)
{
    size_t total = 0;

    for (size_t i = 0; i < SHARDS; i++) {
        struct shard *s = &t->shards[i];
        struct session *dead = NULL;

        pthread_mutex_lock(&s->lock);
        total += shard_expire(t, s, now_ns, ttl_ns, &dead);
        pthread_mutex_unlock(&s->lock);
        while (dead != NULL) {
            struct session *next = dead->next;
            if (expired != NULL)
                expired(arg, dead->agent_id, dead->session_id);
            ext_drop(t, dead->ext);
            session_caps_release(dead->caps);
            session_free(dead);
            dead = next;
        }
    }
    return total;
}

int session_table_visit(struct session_table *t, const char *agent_id,
                        void (*fn)(void *arg, struct session_visit *v), void *arg)
{
    struct shard *s;
    struct session **link = lock_find(t, agent_id, &s);
    if (!link)
        return -ENOENT;
    struct session *e = *link;
    if (e != NULL) {
        struct session_visit v = {e->session_id, e->gen, e->owner, e->stream_attached,
                                  &e->ext};
        fn(arg, &v);
    }
    pthread_mutex_unlock(&s->lock);
    return e != NULL ? 0 : -ENOENT;
}

int session_table_get(struct session_table *t, const char *agent_id, struct session_info *out)
{
    struct shard *s;
    int rc = -ENOENT;

    struct session **link = lock_find(t, agent_id, &s);
    if (!link)
        return -ENOENT;
    struct session *e = *link;
    if (e != NULL) {
        session_fill(e, out);
        caps_ref(out->caps);
        rc = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Make room for `more` entries; false when out of memory. */
static bool list_reserve(struct session_info **arr, size_t *cap, size_t used, size_t more)
{
    if (used + more <= *cap)
        return true;
    size_t n = *cap ? *cap : 16;
    while (n < used + more)
        n *= 2;
    struct session_info *grown = realloc(*arr, n * sizeof(**arr));
    if (grown == NULL)
        return false;
    *arr = grown;
    *cap = n;
    return true;
}

/* Copy one shard's sessions, each whole under the shard lock. */
static bool shard_list(struct shard *s, struct session_info **arr, size_t *cap, size_t *used)
{
    bool ok;

    pthread_mutex_lock(&s->lock);
    ok = list_reserve(arr, cap, *used, s->n);
    for (size_t b = 0; ok && b < s->n_buckets; b++)
        for (struct session *e = s->buckets[b]; e != NULL; e = e->next) {
            session_fill(e, &(*arr)[(*used)++]);
            caps_ref(e->caps);
        }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

/* Shards are copied one after the other, so the list is not one instant
 * of the whole table, but every entry is one consistent session. On
 * allocation failure *out is NULL and the count 0. */
size_t session_table_list(struct session_table *t, struct session_info **out)
{
    struct session_info *arr = NULL;
    size_t cap = 0, used = 0;

    for (size_t i = 0; i < SHARDS; i++) {
        if (!shard_list(&t->shards[i], &arr, &cap, &used))
            goto fail;
    }
    *out = arr;
    return used;

fail:
    session_infos_free(arr, used);
    *out = NULL;
    return 0;
}

size_t session_table_count(struct session_table *t)
{
    return atomic_load(&t->count);
}
