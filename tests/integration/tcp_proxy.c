/*
 * tcp_proxy.c - the fault tests' loopback proxy (see tcp_proxy.h). One
 * thread polls the listening socket, a wake-up pipe and every connection
 * pair; each direction has one buffer, and a side is read only once the
 * previous chunk was written to the other, so it never buffers more than
 * one chunk per direction. Commands from the test thread are applied by the
 * proxy thread, which acknowledges each (no sleeps anywhere).
 */
#include "tcp_proxy.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PAIRS 256
#define CHUNK 65536

struct direction {
    int from, to;
    char buf[CHUNK];
    size_t len, off; /* bytes in buf not yet written: buf[off..len) */
};

struct pair {
    struct direction up, down; /* client -> relay, relay -> client */
    int client, server;
};

enum command { CMD_NONE, CMD_FREEZE, CMD_CUT, CMD_STOP };

struct tcp_proxy {
    int listen_fd, wake[2], upstream_port;
    char target[64];
    pthread_t thread;
    struct pair *pairs[MAX_PAIRS];
    size_t n_pairs;
    bool frozen;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum command cmd;   /* set by the test thread, cleared when applied */
    int accepted;
};

static void close_rst(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd);
}

static void pair_close(struct pair *p, bool rst)
{
    if (rst) {
        close_rst(p->client);
        close_rst(p->server);
    } else {
        close(p->client);
        close(p->server);
    }
    free(p);
}

static int connect_upstream(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void accept_one(struct tcp_proxy *p)
{
    int c = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0)
        return;
    int s = connect_upstream(p->upstream_port);
    struct pair *pr = s >= 0 && p->n_pairs < MAX_PAIRS ? calloc(1, sizeof(*pr)) : NULL;
    if (!pr) {
        close(c);
        if (s >= 0)
            close(s);
        return;
    }
    pr->client = c;
    pr->server = s;
    pr->up.from = c;
    pr->up.to = s;
    pr->down.from = s;
    pr->down.to = c;
    p->pairs[p->n_pairs++] = pr;
    pthread_mutex_lock(&p->mu);
    p->accepted++;
    pthread_mutex_unlock(&p->mu);
}

/* Move bytes one step. Returns false when the pair is finished. */
static bool pump(struct direction *d, short from_ev, short to_ev)
{
    if (d->off < d->len && (to_ev & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t n = write(d->to, d->buf + d->off, d->len - d->off);
        if (n < 0 && errno != EAGAIN)
            return false;
        if (n > 0)
            d->off += (size_t)n;
    }
    if (d->off == d->len && (from_ev & (POLLIN | POLLERR | POLLHUP))) {
        ssize_t n = read(d->from, d->buf, sizeof(d->buf));
        if (n == 0 || (n < 0 && errno != EAGAIN))
            return false;
        if (n > 0) {
            d->len = (size_t)n;
            d->off = 0;
        }
    }
    return true;
}

static short wanted(const struct direction *d, int fd)
{
    if (fd == d->from && d->off == d->len)
        return POLLIN;
    if (fd == d->to && d->off < d->len)
        return POLLOUT;
    return 0;
}

static void apply(struct tcp_proxy *p, enum command cmd)
{
    if (cmd == CMD_FREEZE)
        p->frozen = true;
    if (cmd == CMD_CUT || cmd == CMD_STOP) {
        for (size_t i = 0; i < p->n_pairs; i++)
            pair_close(p->pairs[i], true);
        p->n_pairs = 0;
    }
}

static void *proxy_main(void *arg)
{
    struct tcp_proxy *p = arg;
    struct pollfd fds[2 + 2 * MAX_PAIRS];
    for (;;) {
        size_t n = 0;
        fds[n++] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = p->listen_fd, .events = p->frozen ? 0 : POLLIN};
        for (size_t i = 0; i < p->n_pairs; i++) {
            struct pair *pr = p->pairs[i];
            short ce = 0, se = 0;
            if (!p->frozen) {
                ce = wanted(&pr->up, pr->client) | wanted(&pr->down, pr->client);
                se = wanted(&pr->up, pr->server) | wanted(&pr->down, pr->server);
            }
            /* frozen: a negative fd is skipped by poll, so not even a
             * hang-up is noticed (and no busy loop on one) */
            fds[n++] = (struct pollfd){.fd = p->frozen ? -1 : pr->client, .events = ce};
            fds[n++] = (struct pollfd){.fd = p->frozen ? -1 : pr->server, .events = se};
        }
        if (poll(fds, n, -1) < 0 && errno != EINTR)
            break;
        if (fds[0].revents & POLLIN) {
            char c;
            (void)!read(p->wake[0], &c, 1);
            pthread_mutex_lock(&p->mu);
            enum command cmd = p->cmd;
            apply(p, cmd);
            p->cmd = CMD_NONE;
            pthread_cond_broadcast(&p->cv);
            pthread_mutex_unlock(&p->mu);
            if (cmd == CMD_STOP)
                break;
            continue; /* pairs may have changed: fds are stale */
        }
        if (fds[1].revents & POLLIN)
            accept_one(p);
        if (p->frozen)
            continue;
        for (size_t i = 0, k = 2; i < p->n_pairs; k += 2) {
            struct pair *pr = p->pairs[i];
            short ce = fds[k].revents, se = fds[k + 1].revents;
            if (pump(&pr->up, ce, se) && pump(&pr->down, se, ce)) {
                i++;
                continue;
            }
            pair_close(pr, false); /* one side ended: end the other the same way */
            p->pairs[i] = p->pairs[--p->n_pairs];
            /* the moved pair's revents are for another slot: skip it this round */
            break;
        }
    }
    return NULL;
}

struct tcp_proxy *tcp_proxy_start(int upstream_port)
{
    struct tcp_proxy *p = calloc(1, sizeof(*p));
    cr_assert_not_null(p);
    p->upstream_port = upstream_port;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    cr_assert_eq(pipe2(p->wake, O_CLOEXEC), 0);
    p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(p->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(p->listen_fd, 64), 0);
    cr_assert_eq(getsockname(p->listen_fd, (struct sockaddr *)&a, &len), 0);
    snprintf(p->target, sizeof(p->target), "127.0.0.1:%d", ntohs(a.sin_port));
    cr_assert_eq(pthread_create(&p->thread, NULL, proxy_main, p), 0);
    return p;
}

const char *tcp_proxy_target(const struct tcp_proxy *p) { return p->target; }

int tcp_proxy_accepted(struct tcp_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->accepted;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* Hand cmd to the proxy thread and wait until it has been applied. */
static void command(struct tcp_proxy *p, enum command cmd)
{
    pthread_mutex_lock(&p->mu);
    p->cmd = cmd;
    cr_assert_eq(write(p->wake[1], "x", 1), 1);
    while (p->cmd != CMD_NONE)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void tcp_proxy_freeze(struct tcp_proxy *p) { command(p, CMD_FREEZE); }

void tcp_proxy_cut(struct tcp_proxy *p) { command(p, CMD_CUT); }

void tcp_proxy_stop(struct tcp_proxy *p)
{
    if (!p)
        return;
    command(p, CMD_STOP);
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
