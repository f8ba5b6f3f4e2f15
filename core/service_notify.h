/*
 * service_notify.h - tells systemd how the relay is doing (Type=notify):
 * READY=1 once the gRPC port is bound and every plugin is up, STOPPING=1
 * when shutdown begins, WATCHDOG=1 every half WatchdogSec. sd_notify(3)'s
 * datagrams to $NOTIFY_SOCKET, written here (a few lines; no libsystemd).
 * Main thread only. Without NOTIFY_SOCKET every call does nothing.
 */
#ifndef AERO_SERVICE_NOTIFY_H
#define AERO_SERVICE_NOTIFY_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

struct service_notify {
    int fd;                   /* -1: not under a notify-aware manager */
    struct sockaddr_un addr;
    socklen_t addr_len;
    int64_t watchdog_ns;      /* 0: no watchdog (WATCHDOG_USEC unset or not ours) */
    int64_t next_ping_ns;
};

/*
 * Read NOTIFY_SOCKET (a path, or "@name" for the abstract namespace) and
 * WATCHDOG_USEC / WATCHDOG_PID from the environment. Returns 0 (also when
 * NOTIFY_SOCKET is unset: n->fd = -1), or -errno with the reason in err
 * when it is set but unusable (logged by the caller; the relay runs on).
 */
int service_notify_open(struct service_notify *n, int64_t now_ns, char *err, size_t errlen);

/* Send `state` ("READY=1\nSTATUS=..."): 0, or -errno. */
int service_notify_send(struct service_notify *n, const char *state);

/* WATCHDOG=1 when half the watchdog interval has passed since the last. */
void service_notify_watchdog(struct service_notify *n, int64_t now_ns);

void service_notify_close(struct service_notify *n);

#endif
