/*
 * mem_guard.c - see mem_guard.h. One thread of its own, so a main loop
 * busy walking 100,000 sessions cannot delay a look at memory; it only
 * reads /proc/self/statm, calls malloc_trim and, while over, asks the
 * conn_guard to shed a connection. It holds no lock of anyone else's.
 */
#include "mem_guard.h"

#include "conn_guard.h"
#include "log.h"
#include "mono_clock.h"
#include "process_metrics.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct mem_guard {
    long high_kb, low_kb, limit_kb;
    struct conn_guard *guard; /* borrowed */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;              /* under mu */
    atomic_bool over;
    atomic_long rss_kb;     /* last sample */
    int64_t next_act_ns;    /* thread only: no trim or shed before this */
    int quick_left;         /* thread only: retries at the next look left in this episode */
    long shed_kb;           /* thread only: RSS when the last connection was shed */
    int64_t log_window_s;   /* thread only: the second logged in */
    unsigned suppressed;    /* thread only: sheds not logged since */
};

static long sample_kb(void)
{
    long long b = process_metrics_resident_bytes();
    return b > 0 ? (long)(b / 1024) : 0;
}

/* At most one line a second; the ones left out are counted in the next. */
static void log_shed(struct mem_guard *g, long rss_kb, int how, const char *peer, long weight)
{
    int64_t now_s = mono_ns() / 1000000000;
    if (g->log_window_s == now_s) {
        g->suppressed++;
        return;
    }
    g->log_window_s = now_s;
    if (how < 0)
        log_warn("resident memory %ld MiB over the high-water mark %ld MiB of memory_limit_mb "
                 "%ld: heap trimmed, busy connections' new calls refused, no connection to "
                 "shed (%u more lines suppressed)",
                 rss_kb / 1024, g->high_kb / 1024, g->limit_kb / 1024, g->suppressed);
    else
        log_warn("resident memory %ld MiB over the high-water mark %ld MiB of memory_limit_mb "
                 "%ld: closed the connection from %s (%ld %s), busy connections' new calls "
                 "refused (%u more lines suppressed)",
                 rss_kb / 1024, g->high_kb / 1024, g->limit_kb / 1024, peer, weight,
                 how == 0 ? "calls" : "bytes unread", g->suppressed);
    g->suppressed = 0;
}

/* One look: trim and shed while over the high-water mark. */
static void look(struct mem_guard *g)
{
    long kb = sample_kb();
    atomic_store(&g->rss_kb, kb);
    bool over = atomic_load(&g->over);
    if (kb == 0 || (!over && kb < g->high_kb))
        return;
    if (over && kb < g->low_kb) {
        atomic_store(&g->over, false);
        conn_guard_set_refusing(g->guard, false);
        log_info("resident memory %ld MiB, back under %ld MiB: all new calls accepted again",
                 kb / 1024, g->low_kb / 1024);
        return;
    }
    if (kb < g->high_kb)
        return; /* between the marks, coming down: wait */
    /* Looks are frequent so a flood is seen early; acting is paced, so the
     * effect of one shed (gRPC freeing a connection's calls) shows before
     * the next connection goes; unless RSS grew since (by more than 1/32
     * of the limit, not the noise of normal work): a flood that reconnects
     * at once (measured: a minute of rapid reset against 256 MiB peaked
     * at 477 MB with the pacing alone) is shed at the next look. */
    int64_t now = mono_ns();
    if (now < g->next_act_ns && kb <= g->shed_kb + g->limit_kb / 32)
        return;
    /* Freed memory glibc still holds (a flood's calls just ended) is the
     * cheapest to give back: measured 900 MB -> 45 MB after a reset flood. */
    malloc_trim(0);
    kb = sample_kb();
    atomic_store(&g->rss_kb, kb);
    if (kb < g->high_kb)
        return;
    if (!over) {
        atomic_store(&g->over, true);
        conn_guard_set_refusing(g->guard, true);
        g->quick_left = MEM_GUARD_QUICK_TRIES;
    }
    char peer[80] = "";
    long weight = 0;
    int how = conn_guard_shed_heaviest(g->guard, now, peer, sizeof(peer), &weight);
    /* Nothing to shed yet (the flood's calls not seen, its socket read
     * empty): try again at the next look, the calls show within ms; but
     * only a few times, so a relay over its limit with nothing to shed
     * does not trim and scan descriptors 40 times a second. */
    if (how >= 0) {
        g->quick_left = MEM_GUARD_QUICK_TRIES;
        g->shed_kb = kb;
    }
    if (how >= 0 || g->quick_left-- <= 0)
        g->next_act_ns = now + MEM_GUARD_ACT_MS * INT64_C(1000000);
    log_shed(g, kb, how, peer, weight);
}

static void *run(void *arg)
{
    struct mem_guard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        pthread_mutex_unlock(&g->mu);
        look(g);
        pthread_mutex_lock(&g->mu);
        struct timespec until =
            clock_after_ns(CLOCK_MONOTONIC, MEM_GUARD_PERIOD_MS * INT64_C(1000000));
        while (!g->stop && pthread_cond_timedwait(&g->cv, &g->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

struct mem_guard *mem_guard_start(int64_t limit_mb, struct conn_guard *guard)
{
    struct mem_guard *g = calloc(1, sizeof(*g));
    if (!g) {
        log_error("memory_limit_mb: out of memory: the relay runs without its memory guard");
        return NULL;
    }
    g->limit_kb = (long)(limit_mb * 1024);
    g->high_kb = g->limit_kb / 100 * MEM_GUARD_HIGH_PCT;
    g->low_kb = g->limit_kb / 100 * MEM_GUARD_LOW_PCT;
    g->guard = guard;
    g->log_window_s = -1;
    atomic_init(&g->over, false);
    atomic_init(&g->rss_kb, 0);
    if (mono_cond_init(&g->cv) != 0) {
        log_error("memory_limit_mb: no condition variable: the relay runs without its memory "
                  "guard");
        free(g);
        return NULL;
    }
    pthread_mutex_init(&g->mu, NULL);
    if (pthread_create(&g->thread, NULL, run, g) != 0) {
        log_error("memory_limit_mb: cannot start the memory guard's thread: the relay runs "
                  "without it");
        pthread_cond_destroy(&g->cv);
        pthread_mutex_destroy(&g->mu);
        free(g);
        return NULL;
    }
    return g;
}

void mem_guard_stop(struct mem_guard *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    conn_guard_set_refusing(g->guard, false);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

bool mem_guard_over(const struct mem_guard *g, long *rss_kb)
{
    if (!g)
        return false;
    if (rss_kb)
        *rss_kb = atomic_load(&g->rss_kb);
    return atomic_load(&g->over);
}
