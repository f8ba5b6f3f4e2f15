/*
 * route_worker.h - the thread of a route-redis instance: every Redis
 * round trip after create()'s startup PING happens on it.
 */
#ifndef ROUTE_WORKER_H
#define ROUTE_WORKER_H

#include "route_redis.h"

/* Start the worker (rr fully built; rr->link may hold create()'s
 * connection, which the worker takes over). 0 or -errno. Main thread. */
int route_worker_start(struct route_redis *rr);

/*
 * Stop it: the worker deletes the keys of every session it may have written
 * (compare-and-delete, best effort, about ROUTE_WORKER_FINAL_MS at most) and
 * exits. If Redis hangs past that, the socket is shut down under it. Returns
 * once the thread is joined. Main thread.
 */
void route_worker_stop(struct route_redis *rr);

/* Shutdown budget for the last deletes. */
#define ROUTE_WORKER_FINAL_MS 2000

#endif
