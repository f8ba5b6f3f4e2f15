/*
 * service_notify.c - sd_notify(3)'s protocol without libsystemd: one
 * datagram of "KEY=value" lines to the unix socket $NOTIFY_SOCKET names.
 * Main thread only; never blocks (MSG_DONTWAIT) and never fails the relay.
 */
#include "service_notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int service_notify_open(struct service_notify *n, int64_t now_ns, char *err, size_t errlen)
{
    const char *path = getenv("NOTIFY_SOCKET");
    memset(n, 0, sizeof(*n));
    n->fd = -1;
    if (!path || !path[0])
        return 0;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(n->addr.sun_path)) {
        snprintf(err, errlen, "NOTIFY_SOCKET \"%.100s\" is no unix socket path or @name", path);
        return -EINVAL;
    }
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, path, len);
    if (path[0] == '@')
        n->addr.sun_path[0] = '\0'; /* abstract: no terminating NUL counted */
    n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (n->fd < 0) {
        int e = errno;
        snprintf(err, errlen, "NOTIFY_SOCKET: socket: %s", strerror(e));
        return -e;
    }
    /* WATCHDOG_PID, when set, names the process the watchdog is for. */
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    long long us = usec ? atoll(usec) : 0;
    if (us > 0 && (!pid || atoll(pid) == (long long)getpid())) {
        n->watchdog_ns = us * 1000;
        n->next_ping_ns = now_ns + n->watchdog_ns / 2;
    }
    return 0;
}

int service_notify_send(struct service_notify *n, const char *state)
{
    if (n->fd < 0)
        return 0;
    ssize_t sent = sendto(n->fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT,
                          (const struct sockaddr *)&n->addr, n->addr_len);
    return sent < 0 ? -errno : 0;
}

void service_notify_watchdog(struct service_notify *n, int64_t now_ns)
{
    if (n->fd < 0 || n->watchdog_ns == 0 || now_ns < n->next_ping_ns)
        return;
    service_notify_send(n, "WATCHDOG=1");
    n->next_ping_ns = now_ns + n->watchdog_ns / 2;
}

void service_notify_close(struct service_notify *n)
{
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
}
