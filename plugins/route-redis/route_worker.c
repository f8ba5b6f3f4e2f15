/*
 * route_worker.c - the route-redis thread. It turns the shared route_state
 * into pipelined Redis commands: queued SETs and deletes first, the periodic
 * refresh every ttl_s/2, a full resync after every (re)connect, reconnects
 * with capped, jittered backoff, and the last deletes at shutdown.
 * The mutex is held only to read or update the state, never across I/O, so
 * session_up/session_down never wait on Redis.
 */
#include "route_worker.h"

#include "report_state.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_FIRST_MS 100
#define DIRTY_CHUNK 4096       /* ops taken from the queue per round trip batch */
#define WARN_EVERY_MS 60000    /* "still unreachable" at most this often */
#define ENOMEM_RETRY_MS 100

enum round { ROUND_DIRTY, ROUND_REFRESH, ROUND_RESYNC };

/* The worker's own bookkeeping (thread-local by construction). */
struct worker {
    struct route_redis *rr;
    struct route_batch batch;
    bool connected, resync;
    int backoff_ms;
    int64_t next_attempt_ms, next_refresh_ms;
    int64_t outage_start_ms, last_warn_ms;
    int64_t last_refused_log_ms; /* rate limit of "Redis refused" */
    unsigned attempts; /* failed connects in this outage */
    unsigned seed;     /* jitter */
    int state;         /* aero_state last reported, -1: none yet */
};

/* Tell the relay (its /readyz component list) when the state changes; the
 * reason of a repeated state is not worth the relay's lock each round. */
static void set_state(struct worker *w, aero_state state, const char *reason)
{
    if (w->state == (int)state)
        return;
    w->state = (int)state;
    report_state(w->rr->host, state, "%s", reason);
}

/* Wait on rr->wake until woken or until t (CLOCK_MONOTONIC ms). mu held. */
static void wait_until(struct route_redis *rr, int64_t t)
{
    struct timespec ts = {.tv_sec = t / 1000, .tv_nsec = (t % 1000) * 1000000};
    pthread_cond_timedwait(&rr->wake, &rr->mu, &ts);
}

static int refresh_interval_ms(const struct route_redis *rr)
{
    int ms = rr->ttl_s * 1000 / 2;
    return ms > 0 ? ms : 500;
}

/* Full jitter on the upper half: [backoff/2, backoff]. */
static int jittered(struct worker *w, int backoff_ms)
{
    int half = backoff_ms / 2;
    return half + (half > 0 ? rand_r(&w->seed) % (half + 1) : 0);
}

static void set_gauges(struct route_redis *rr)
{
    const aero_host *h = rr->host;
    h->metric_set(rr->m.sessions, (int64_t)route_state_active(rr->state));
    h->metric_set(rr->m.pending_deletes, (int64_t)route_state_dead(rr->state));
}

/* Close the link and plan the reconnect. mu held (io_fd is cleared before
 * the descriptor can be reused). Logging is the caller's, outside mu. */
static void drop_connection(struct worker *w)
{
    struct route_redis *rr = w->rr;
    const aero_host *h = rr->host;
    int64_t now = redis_link_now_ms();
    rr->io_fd = -1;
    redis_link_close(&rr->link);
    w->connected = false;
    w->resync = true;
    w->backoff_ms = 0;
    w->attempts = 0;
    w->next_attempt_ms = now; /* the first retry is immediate */
    w->outage_start_ms = w->last_warn_ms = now;
    h->metric_add(rr->m.errors, 1);
    h->metric_set(rr->m.connected, 0);
}

/* One connection attempt. mu NOT held on entry or exit; the log lines are
 * written outside it, so a slow log never holds up session_up. */
static void try_connect(struct worker *w)
{
    struct route_redis *rr = w->rr;
    const aero_host *h = rr->host;
    char err[256];
    int rc = redis_link_open(&rr->link, &rr->opts, err, sizeof(err));
    int64_t now = redis_link_now_ms();
    double outage_s = (double)(now - w->outage_start_ms) / 1000.0;
    size_t active = 0;
    bool warn = false;

    pthread_mutex_lock(&rr->mu);
    if (rc == 0) {
        rr->io_fd = redis_link_fd(&rr->link);
        w->connected = true;
        w->resync = true;
        w->attempts = 0;
        w->backoff_ms = 0;
        active = route_state_active(rr->state);
        h->metric_set(rr->m.connected, 1);
        h->metric_add(rr->m.reconnects, 1);
    } else {
        w->attempts++;
        w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : BACKOFF_FIRST_MS;
        if (w->backoff_ms > rr->reconnect_max_ms)
            w->backoff_ms = rr->reconnect_max_ms;
        w->next_attempt_ms = now + jittered(w, w->backoff_ms);
        warn = now - w->last_warn_ms >= WARN_EVERY_MS;
        if (warn)
            w->last_warn_ms = now;
        h->metric_add(rr->m.errors, 1);
    }
    pthread_mutex_unlock(&rr->mu);

    char why[320];
    if (rc == 0)
        snprintf(why, sizeof(why), "connected to Redis at %.120s", rr->addr);
    else
        snprintf(why, sizeof(why), "not connected to Redis at %.120s: %.120s", rr->addr, err);
    set_state(w, rc == 0 ? AERO_STATE_OK : AERO_STATE_FAILING, why);
    if (rc == 0)
        h->log(h, AERO_LOG_INFO,
               "connected to Redis at %s after %.1f s unreachable; republishing %zu route(s)",
               rr->addr, outage_s, active);
    else if (warn)
        h->log(h, AERO_LOG_WARN, "Redis at %s still unreachable after %.0f s (%u attempts; last: %s)",
               rr->addr, outage_s, w->attempts, err);
    else
        h->log(h, AERO_LOG_DEBUG, "Redis at %s: connect attempt %u failed: %s; next in %lld ms",
               rr->addr, w->attempts, err, (long long)(w->next_attempt_ms - now));
}

/* Count what a batch achieved. */
static void count(struct worker *w, const char *first_error)
{
    struct route_redis *rr = w->rr;
    const aero_host *h = rr->host;
    uint64_t pub = 0, ref = 0, held = 0, del = 0, err = 0;
    for (size_t i = 0; i < w->batch.n; i++) {
        const struct route_op *op = &w->batch.ops[i];
        if (op->result == ROUTE_RES_ERROR || op->result == ROUTE_RES_NOSCRIPT) {
            err++;
            continue;
        }
        if (op->result != ROUTE_RES_OK)
            continue;
        if (op->kind == ROUTE_OP_SET)
            pub++;
        else if (op->kind == ROUTE_OP_REFRESH && op->value)
            ref++;
        else if (op->kind == ROUTE_OP_REFRESH)
            held++;
        else
            del += op->value > 0 ? (uint64_t)op->value : 0;
    }
    h->metric_add(rr->m.publishes, pub);
    h->metric_add(rr->m.refreshes, ref);
    h->metric_add(rr->m.held_elsewhere, held);
    h->metric_add(rr->m.deletes, del);
    h->metric_add(rr->m.errors, err);
    /* The same refusal (a key of the wrong type, say) comes back at every
     * refresh: say it once a minute; the counter has the rest. */
    int64_t now = redis_link_now_ms();
    if (err && first_error[0] &&
        (!w->last_refused_log_ms || now - w->last_refused_log_ms >= WARN_EVERY_MS)) {
        w->last_refused_log_ms = now;
        h->log(h, AERO_LOG_WARN, "Redis refused %llu route command(s): %s",
               (unsigned long long)err, first_error);
    }
}

static bool any_noscript(const struct route_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->ops[i].result == ROUTE_RES_NOSCRIPT)
            return true;
    return false;
}

/* Take the next round of work, or say when to look again. mu held.
 * Returns the ops taken (>= 0), -EAGAIN with *wait_until_ms set, or -ENOMEM. */
static int take_round(struct worker *w, enum round *kind, int64_t *wait_until_ms)
{
    struct route_redis *rr = w->rr;
    int64_t now = redis_link_now_ms();
    if (w->resync) {
        *kind = ROUND_RESYNC;
        return route_state_take_resync(rr->state, &w->batch);
    }
    /* A due refresh goes before queued work: a steady stream of Registers
     * must not starve it (keys would expire). */
    if (now >= w->next_refresh_ms) {
        *kind = ROUND_REFRESH;
        w->next_refresh_ms = now + refresh_interval_ms(rr);
        return route_state_take_refresh(rr->state, &w->batch);
    }
    if (route_state_has_dirty(rr->state)) {
        *kind = ROUND_DIRTY;
        return route_state_take_dirty(rr->state, &w->batch, DIRTY_CHUNK);
    }
    *wait_until_ms = w->next_refresh_ms;
    return -EAGAIN;
}

/* Connected: do one round (or wait for one to be due). mu NOT held on
 * entry or exit; taken to read and update the state, never across I/O. */
static void run_round(struct worker *w)
{
    struct route_redis *rr = w->rr;
    const aero_host *h = rr->host;
    enum round kind = ROUND_DIRTY;
    int64_t until = 0;
    char err[256] = "", first_error[256] = "";

    pthread_mutex_lock(&rr->mu);
    int n = take_round(w, &kind, &until);
    if (n == -EAGAIN && !rr->stopping)
        wait_until(rr, until);
    if (n == -ENOMEM)
        wait_until(rr, redis_link_now_ms() + ENOMEM_RETRY_MS);
    if (n < 0) {
        pthread_mutex_unlock(&rr->mu);
        route_state_batch_clear(&w->batch);
        if (n == -ENOMEM)
            h->log(h, AERO_LOG_ERROR, "out of memory building Redis commands; retrying");
        return;
    }
    if (kind == ROUND_RESYNC)
        w->next_refresh_ms = redis_link_now_ms() + refresh_interval_ms(rr);
    pthread_mutex_unlock(&rr->mu);

    int rc = 0;
    if (w->batch.n)
        rc = redis_link_run(&rr->link, w->batch.ops, w->batch.n, rr->relay_id, rr->ttl_s, 0, err,
                            sizeof(err), first_error, sizeof(first_error));
    else if (kind == ROUND_REFRESH)
        rc = redis_link_ping(&rr->link, err, sizeof(err)); /* idle: notice a dead link early */
    count(w, first_error);
    /* SCRIPT FLUSH on the server: reconnecting reloads the scripts, and the
     * resync that follows redoes what failed. */
    bool noscript = rc == 0 && any_noscript(&w->batch);
    char why[320];
    if (rc < 0 || noscript) {
        h->log(h, AERO_LOG_WARN,
               "lost the Redis connection to %s (%s): reconnecting with backoff; every active "
               "route is republished when it returns",
               rr->addr, noscript ? "Redis forgot the route scripts (SCRIPT FLUSH?)" : err);
        snprintf(why, sizeof(why), "not connected to Redis at %.120s: connection lost (%.120s)",
                 rr->addr, noscript ? "scripts flushed" : err);
        set_state(w, AERO_STATE_FAILING, why);
    } else if (first_error[0]) {
        /* connected, but Redis refused some commands: routes may be stale */
        snprintf(why, sizeof(why), "Redis at %.120s refuses commands: %.120s", rr->addr,
                 first_error);
        w->state = -1; /* the newest error is the one to show */
        set_state(w, AERO_STATE_DEGRADED, why);
    } else if (w->batch.n > 0 || kind == ROUND_REFRESH) {
        snprintf(why, sizeof(why), "connected to Redis at %.120s", rr->addr);
        set_state(w, AERO_STATE_OK, why);
    }

    pthread_mutex_lock(&rr->mu);
    route_state_apply(rr->state, &w->batch);
    set_gauges(rr);
    if (rc < 0 || noscript)
        drop_connection(w);
    else if (kind == ROUND_RESYNC)
        w->resync = false;
    pthread_mutex_unlock(&rr->mu);
    route_state_batch_clear(&w->batch);
}

/* Shutdown: compare-and-delete every key this relay may have written,
 * before the deadline route_worker_stop set. mu NOT held. */
static void final_deletes(struct worker *w)
{
    struct route_redis *rr = w->rr;
    const aero_host *h = rr->host;
    char err[256] = "not connected", first_error[256] = "";

    pthread_mutex_lock(&rr->mu);
    int64_t deadline = rr->stop_deadline_ms;
    bool cut = rr->io_cut;
    int n = route_state_take_final(rr->state, &w->batch);
    pthread_mutex_unlock(&rr->mu);
    int left = (int)(deadline - redis_link_now_ms());
    if (n < 0) {
        snprintf(err, sizeof(err), "out of memory");
    } else if (n > 0 && (cut || left <= 0)) {
        snprintf(err, sizeof(err), "no time left: Redis did not answer");
    } else if (n > 0) {
        if (!w->connected) {
            struct redis_link_opts o = rr->opts;
            if (o.connect_timeout_ms > left / 2)
                o.connect_timeout_ms = left / 2 > 1 ? left / 2 : 1;
            if (redis_link_open(&rr->link, &o, err, sizeof(err)) == 0) {
                pthread_mutex_lock(&rr->mu);
                rr->io_fd = redis_link_fd(&rr->link);
                pthread_mutex_unlock(&rr->mu);
                w->connected = true;
            }
        }
        if (w->connected) {
            left = (int)(deadline - redis_link_now_ms());
            if (left < rr->opts.command_timeout_ms)
                redis_link_set_timeout(&rr->link, left > 1 ? left : 1);
            if (redis_link_run(&rr->link, w->batch.ops, w->batch.n, rr->relay_id, rr->ttl_s,
                               deadline, err, sizeof(err), first_error,
                               sizeof(first_error)) == 0)
                err[0] = '\0';
            count(w, first_error);
        }
    }
    if (n != 0 && err[0])
        h->log(h, AERO_LOG_WARN,
               "shutdown: could not delete the route keys of %d drone(s) (%s); they expire "
               "within %d s",
               n, err, rr->ttl_s);
    else if (n > 0)
        h->log(h, AERO_LOG_INFO, "shutdown: route keys of %d drone(s) deleted", n);
    route_state_batch_clear(&w->batch);
    pthread_mutex_lock(&rr->mu);
    rr->io_fd = -1;
    pthread_mutex_unlock(&rr->mu);
    redis_link_close(&rr->link);
    h->metric_set(rr->m.connected, 0);
}

static void *worker_main(void *arg)
{
    struct route_redis *rr = arg;
    struct worker w = {.rr = rr};
    int64_t now = redis_link_now_ms();

    route_state_batch_init(&w.batch);
    w.seed = (unsigned)now ^ (unsigned)(uintptr_t)rr ^ (unsigned)getpid();
    w.connected = rr->link.c != NULL; /* create()'s startup connection */
    w.state = w.connected ? AERO_STATE_OK : AERO_STATE_FAILING; /* create() reported it */
    w.resync = true;
    w.outage_start_ms = w.last_warn_ms = now;
    w.backoff_ms = BACKOFF_FIRST_MS;
    w.next_attempt_ms = now + jittered(&w, w.backoff_ms);

    pthread_mutex_lock(&rr->mu);
    rr->io_fd = redis_link_fd(&rr->link);
    pthread_mutex_unlock(&rr->mu);
    for (;;) {
        pthread_mutex_lock(&rr->mu);
        if (!rr->stopping && !w.connected && redis_link_now_ms() < w.next_attempt_ms)
            wait_until(rr, w.next_attempt_ms); /* backoff; session_up/stop wake it */
        bool stop = rr->stopping;
        bool attempt = !w.connected && redis_link_now_ms() >= w.next_attempt_ms;
        pthread_mutex_unlock(&rr->mu);
        if (stop)
            break;
        if (w.connected)
            run_round(&w);
        else if (attempt)
            try_connect(&w);
    }

    final_deletes(&w);

    pthread_mutex_lock(&rr->mu);
    rr->worker_done = true;
    pthread_cond_broadcast(&rr->done);
    pthread_mutex_unlock(&rr->mu);
    return NULL;
}

int route_worker_start(struct route_redis *rr)
{
    int rc = pthread_create(&rr->thread, NULL, worker_main, rr);
    if (rc != 0)
        return -rc;
    rr->thread_started = true;
    return 0;
}

void route_worker_stop(struct route_redis *rr)
{
    if (!rr->thread_started)
        return;
    /* The worker finishes what it is doing and deletes what it can within
     * the budget. Past it (plus a little for the worker to notice), Redis
     * hangs: shut the socket down under the blocked read and move on. A
     * connect in progress is bounded by connect_timeout_ms on its own. */
    int64_t deadline = redis_link_now_ms() + ROUTE_WORKER_FINAL_MS;
    int64_t cut_at = deadline + 250;
    struct timespec ts = {.tv_sec = cut_at / 1000, .tv_nsec = (cut_at % 1000) * 1000000};

    pthread_mutex_lock(&rr->mu);
    rr->stopping = true;
    rr->stop_deadline_ms = deadline;
    pthread_cond_signal(&rr->wake);
    while (!rr->worker_done) {
        if (pthread_cond_timedwait(&rr->done, &rr->mu, &ts) == ETIMEDOUT) {
            rr->io_cut = true;
            if (rr->io_fd >= 0)
                shutdown(rr->io_fd, SHUT_RDWR);
            break;
        }
    }
    pthread_mutex_unlock(&rr->mu);
    pthread_join(rr->thread, NULL);
    rr->thread_started = false;
}
