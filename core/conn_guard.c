/*
 * conn_guard.c - see conn_guard.h. Per-peer counts live in a direct-mapped
 * table under one mutex (a call costs a hash and a compare when it opens
 * and when it ends); a peer evicted by a colliding one starts counting
 * again, so counts can only be low, never high. The descriptor scan
 * runs only when a connection is to be closed.
 */
#include "conn_guard.h"

#include "log.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define SLOTS 4096
#define PEER_MAX 64
#define SCAN_MAX (1 << 20) /* descriptors looked at, at most */

struct slot {
    char peer[PEER_MAX];
    int64_t window_s;   /* the second counted */
    uint32_t cancelled; /* calls that failed in that second (cancelled, refused) */
    uint32_t cancelled_before; /* ... and in the second before it */
    uint32_t open;      /* calls open now */
    uint32_t opened;    /* calls opened in that second (mem_guard's "heaviest") */
    uint32_t opened_before; /* ... and in the second before it */
    bool closed;        /* shut down in this window already */
};

struct conn_guard {
    atomic_int refs; /* the server's, and one per call it counts */
    atomic_bool refusing; /* conn_guard_set_refusing: memory over its limit */
    int64_t max_cancels_per_s, max_open;
    int listen_port;
    aero_metric *closed, *closed_memory;
    pthread_mutex_t mu;
    int64_t log_window_s;
    unsigned logged, suppressed;
    struct slot slots[SLOTS];
};

static const char CLOSED_HELP[] =
    "Client connections the relay shut down, by reason: call_flood = thousands of calls "
    "cancelled or refused in a second (HTTP/2 rapid reset) or more calls open at once than "
    "twice max_streams_per_connection (streams opened before ACKing SETTINGS); memory_limit = "
    "the heaviest connection while the relay's resident memory was over [relay] "
    "memory_limit_mb's high-water mark.";

struct conn_guard *conn_guard_create(int64_t max_streams, int listen_port,
                                     struct metrics *metrics)
{
    struct conn_guard *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    /* A client may cancel a stream now and then (a deadline, a shutdown),
     * all its open streams when it goes away, and be refused now and then;
     * thousands of failed calls a second is an attack. Open calls past twice the advertised limit can only be a
     * client that ignored SETTINGS. */
    g->max_cancels_per_s = max_streams * 2 > 2000 ? max_streams * 2 : 2000;
    g->max_open = max_streams > 0 ? max_streams * 2 : INT64_MAX; /* 0: gRPC's default, no limit */
    atomic_init(&g->refs, 1);
    g->listen_port = listen_port;
    pthread_mutex_init(&g->mu, NULL);
    if (metrics) {
        g->closed = metrics_register(metrics, AERO_METRIC_COUNTER,
                                     "aero_relay_connections_closed_total", CLOSED_HELP,
                                     "reason=\"call_flood\"");
        g->closed_memory = metrics_register(metrics, AERO_METRIC_COUNTER,
                                            "aero_relay_connections_closed_total", CLOSED_HELP,
                                            "reason=\"memory_limit\"");
    }
    return g;
}

struct conn_guard *conn_guard_ref(struct conn_guard *g)
{
    if (g)
        atomic_fetch_add(&g->refs, 1);
    return g;
}

void conn_guard_unref(struct conn_guard *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&g->mu);
    free(g);
}

/* gRPC's peer string as a socket address; false for anything else (unix:). */
static bool parse_peer(const char *peer, struct sockaddr_storage *ss)
{
    char host[PEER_MAX];
    const char *colon = strrchr(peer, ':');
    if (!colon)
        return false;
    int port = atoi(colon + 1);
    if (strncmp(peer, "ipv4:", 5) == 0) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        snprintf(host, sizeof(host), "%.*s", (int)(colon - peer - 5), peer + 5);
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        return inet_pton(AF_INET, host, &a->sin_addr) == 1;
    }
    if (strncmp(peer, "ipv6:[", 6) == 0 && colon > peer + 7 && colon[-1] == ']') {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        snprintf(host, sizeof(host), "%.*s", (int)(colon - peer - 7), peer + 6);
        char *pct = strchr(host, '%'); /* a zone id: not compared */
        if (pct)
            *pct = '\0';
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        return inet_pton(AF_INET6, host, &a->sin6_addr) == 1;
    }
    return false;
}

/* A v4-mapped IPv6 address (gRPC's listeners are dual-stack sockets even
 * for 127.0.0.1) as the IPv4 one gRPC names in the peer string. */
static void unmap_v4(struct sockaddr_storage *ss)
{
    const struct sockaddr_in6 *a6 = (const void *)ss;
    if (ss->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
        return;
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = a6->sin6_port};
    memcpy(&a4.sin_addr, &a6->sin6_addr.s6_addr[12], 4);
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &a4, sizeof(a4));
}

static bool same_addr(struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    unmap_v4(a);
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

static int local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    return ss.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
           : ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                      : -1;
}

/* The highest descriptor worth looking at. */
static int scan_max(void)
{
    struct rlimit rl;
    return getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < SCAN_MAX ? (int)rl.rlim_cur
                                                                         : SCAN_MAX;
}

/* fd is a socket accepted on the relay's port (any port when unknown). */
static bool on_our_port(const struct conn_guard *g, int fd)
{
    return g->listen_port <= 0 || local_port(fd) == g->listen_port;
}

/*
 * Shut down the accepted socket whose peer is `peer` (local port: the
 * relay's): gRPC sees the connection end, fails its calls and closes the
 * descriptor itself. shutdown, never close: the descriptor stays gRPC's.
 */
static bool shut_peer(const struct conn_guard *g, const char *peer)
{
    struct sockaddr_storage want = {0};
    if (!parse_peer(peer, &want))
        return false;
    int max = scan_max();
    for (int fd = 0; fd < max; fd++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0 || !same_addr(&ss, &want))
            continue;
        if (!on_our_port(g, fd))
            continue;
        return shutdown(fd, SHUT_RDWR) == 0;
    }
    return false;
}

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Under g->mu: the peer's slot, taken over (counts zeroed) if another
 * peer had it; its window moved to now_s. */
static struct slot *slot_of(struct conn_guard *g, const char *peer, int64_t now_s)
{
    struct slot *sl = &g->slots[hash(peer) % SLOTS];
    if (strcmp(sl->peer, peer) != 0) {
        snprintf(sl->peer, sizeof(sl->peer), "%s", peer);
        sl->open = 0;
        sl->window_s = 0;
    }
    if (sl->window_s != now_s) {
        bool next = sl->window_s == now_s - 1;
        sl->opened_before = next ? sl->opened : 0;
        sl->cancelled_before = next ? sl->cancelled : 0;
        sl->window_s = now_s;
        sl->opened = 0;
        sl->cancelled = 0;
        sl->closed = false;
    }
    return sl;
}

/* Under g->mu: the calls that failed in the second up to now_ns, taking
 * the previous whole second's count as spread evenly over it. Counting
 * whole seconds alone let a burst of twice the bound pass when it began
 * late in one second and ended early in the next. */
static uint64_t failed_last_second(const struct slot *sl, int64_t now_ns)
{
    uint64_t into = (uint64_t)(now_ns % 1000000000);
    return sl->cancelled + sl->cancelled_before * (1000000000 - into) / 1000000000;
}

/* The counts of one event; shuts the connection when a bound is passed. */
static bool account(struct conn_guard *g, const char *peer, int64_t now_ns, bool opened,
                    bool cancelled)
{
    if (!g || !peer || strlen(peer) >= PEER_MAX)
        return false;
    int64_t now_s = now_ns / 1000000000;
    pthread_mutex_lock(&g->mu);
    struct slot *sl = slot_of(g, peer, now_s);
    if (opened) {
        sl->open++;
        sl->opened++;
    }
    else if (sl->open > 0) /* 0: another peer took the slot meanwhile */
        sl->open--;
    sl->cancelled += cancelled;
    bool over = !sl->closed && (failed_last_second(sl, now_ns) > (uint64_t)g->max_cancels_per_s ||
                                sl->open > (uint64_t)g->max_open);
    if (over) {
        sl->closed = true;
        /* Closing again takes a bound's worth of failures again, as it
         * did within one whole second: the calls gRPC still has queued
         * from the shut connection fail after it. */
        sl->cancelled = sl->cancelled_before = 0;
    }
    bool log_it = false;
    unsigned suppressed = 0;
    if (over) {
        if (g->log_window_s != now_s) {
            g->log_window_s = now_s;
            g->logged = 0;
            suppressed = g->suppressed;
            g->suppressed = 0;
        }
        log_it = g->logged++ < 5;
        g->suppressed += !log_it;
    }
    pthread_mutex_unlock(&g->mu);
    if (!over)
        return false;
    bool shut = shut_peer(g, peer);
    if (shut)
        metrics_inc(g->closed);
    if (suppressed)
        log_warn("%u more connections closed for call floods (log lines suppressed)", suppressed);
    if (log_it)
        log_warn("connection from %s %s: more than %lld calls cancelled or refused in a second or %lld "
                 "open at once (HTTP/2 rapid reset or stream flood)",
                 peer, shut ? "closed" : "could not be closed (socket not found)",
                 (long long)g->max_cancels_per_s, (long long)g->max_open);
    return shut;
}

bool conn_guard_call_opened(struct conn_guard *g, const char *peer, int64_t now_ns)
{
    return account(g, peer, now_ns, true, false);
}

void conn_guard_call_closed(struct conn_guard *g, const char *peer, bool failed,
                            int64_t now_ns)
{
    account(g, peer, now_ns, false, failed);
}

void conn_guard_set_refusing(struct conn_guard *g, bool refusing)
{
    if (g)
        atomic_store(&g->refusing, refusing);
}

/* Under g->mu: the calls open now or those opened in this second and the
 * one before, whichever is more (a stream flood keeps its calls open, a
 * rapid reset's end at once). */
static uint32_t recent_calls(const struct slot *sl, int64_t now_s)
{
    uint32_t recent = sl->window_s == now_s       ? sl->opened + sl->opened_before
                      : sl->window_s == now_s - 1 ? sl->opened
                                                  : 0;
    return sl->open > recent ? sl->open : recent;
}

bool conn_guard_refuses(struct conn_guard *g, const char *peer, int64_t now_ns)
{
    if (!g || !atomic_load(&g->refusing) || !peer || strlen(peer) >= PEER_MAX)
        return false;
    pthread_mutex_lock(&g->mu);
    const struct slot *sl = &g->slots[hash(peer) % SLOTS];
    bool heavy = strcmp(sl->peer, peer) == 0 &&
                 recent_calls(sl, now_ns / 1000000000) >= CONN_GUARD_SHED_MIN_CALLS;
    pthread_mutex_unlock(&g->mu);
    return heavy;
}

/* Under g->mu: the peer with the most calls open now or opened in this
 * second and the one before; its score in *calls. */
static const struct slot *heaviest_slot(const struct conn_guard *g, int64_t now_s,
                                        uint32_t *calls)
{
    const struct slot *best = NULL;
    *calls = 0;
    for (size_t i = 0; i < SLOTS; i++) {
        const struct slot *sl = &g->slots[i];
        if (!sl->peer[0])
            continue;
        uint32_t score = recent_calls(sl, now_s);
        if (score > *calls) {
            *calls = score;
            best = sl;
        }
    }
    return best;
}

/* The accepted socket on our port with the most bytes the kernel holds
 * unread (SIOCINQ): the connection gRPC is furthest behind on. -1: none
 * has any. Its peer into peer[0..cap). */
static int most_unread_socket(const struct conn_guard *g, long *unread, char *peer, size_t cap)
{
    int best = -1;
    *unread = 0;
    /* The open descriptors only: the limit is raised to the hard one at
     * start (a million on some hosts), and this runs while memory is short. */
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int queued = 0;
        if (fd == dirfd(d) || getpeername(fd, (struct sockaddr *)&ss, &len) != 0 ||
            !on_our_port(g, fd) || ioctl(fd, SIOCINQ, &queued) != 0 || queued <= *unread)
            continue;
        *unread = queued;
        best = fd;
        unmap_v4(&ss);
        char host[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
        snprintf(peer, cap, "%s:%d", host,
                 ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                               : ((struct sockaddr_in6 *)&ss)->sin6_port));
    }
    if (d)
        closedir(d);
    return best;
}

int conn_guard_shed_heaviest(struct conn_guard *g, int64_t now_ns, char *peer, size_t cap,
                             long *weight)
{
    if (!g)
        return -1;
    int64_t now_s = now_ns / 1000000000;
    char victim[PEER_MAX] = "";
    uint32_t calls = 0;
    pthread_mutex_lock(&g->mu);
    const struct slot *sl = heaviest_slot(g, now_s, &calls);
    if (sl && calls >= CONN_GUARD_SHED_MIN_CALLS)
        snprintf(victim, sizeof(victim), "%s", sl->peer);
    pthread_mutex_unlock(&g->mu);
    if (victim[0] && shut_peer(g, victim)) {
        snprintf(peer, cap, "%s", victim);
        *weight = calls;
        metrics_inc(g->closed_memory);
        return 0;
    }
    long unread = 0;
    int fd = most_unread_socket(g, &unread, peer, cap);
    if (fd < 0 || unread < CONN_GUARD_SHED_MIN_UNREAD || shutdown(fd, SHUT_RDWR) != 0)
        return -1;
    *weight = unread;
    metrics_inc(g->closed_memory);
    return 1;
}
