/*
 * redis_link.h - one blocking hiredis connection of route-redis: address
 * parsing, connect with AUTH/SELECT/PING and the two Lua scripts loaded,
 * and pipelined execution of route_op batches. Every read and write is
 * bounded by a timeout, so a hung Redis costs the caller at most that.
 * Used by one thread at a time (the plugin's worker; create() before the
 * worker starts). Knows nothing of the plugin's state or metrics.
 */
#ifndef REDIS_LINK_H
#define REDIS_LINK_H

#include "route_state.h"

#include <stddef.h>
#include <stdint.h>

struct redisContext;

struct redis_link_opts {
    char host[256];        /* TCP host, or the socket path when port == 0 */
    int port;              /* 0: unix socket */
    const char *password;  /* "" or NULL: no AUTH */
    long long db;          /* SELECT when not 0 */
    int connect_timeout_ms;
    int command_timeout_ms;
};

struct redis_link {
    struct redisContext *c; /* NULL while closed */
    char sha_refresh[41];
    char sha_delete[41];
};

/*
 * Parse "host:port", "[v6addr]:port", "host" (port 6379) or "unix:/path"
 * into o->host / o->port. Returns 0 or -EINVAL with a reason in err.
 */
int redis_link_parse_addr(const char *addr, struct redis_link_opts *o, char *err, size_t errlen);

/*
 * Connect, AUTH (if a password is set), SELECT (db != 0), PING and load the
 * scripts. On failure the link stays closed and err says why (never the
 * password). Returns 0 or a negative errno.
 */
int redis_link_open(struct redis_link *l, const struct redis_link_opts *o, char *err,
                    size_t errlen);
void redis_link_close(struct redis_link *l);
/* The socket (for shutdown(2) from another thread to cut a hang short), or -1. */
int redis_link_fd(const struct redis_link *l);
/* Change the per-read/per-write timeout. */
void redis_link_set_timeout(struct redis_link *l, int ms);

/*
 * Execute ops[0..n) pipelined, in chunks (appends a chunk, then reads its
 * replies): sets each op's result and value. Key "drone:<id>", value
 * {"relay_id":...,"session_id":...}, TTL ttl_s. Stops between chunks once
 * `deadline_ms` (CLOCK_MONOTONIC ms; 0 = none) has passed.
 * Returns 0 when every op got a reply; -EIO when the connection failed (err
 * says why; the link must be closed; ops without a reply keep
 * ROUTE_RES_NONE); -ETIMEDOUT at the deadline; -ENOMEM.
 * The first error reply's text (if any) is copied into first_error.
 */
int redis_link_run(struct redis_link *l, struct route_op *ops, size_t n, const char *relay_id,
                   int ttl_s, int64_t deadline_ms, char *err, size_t errlen, char *first_error,
                   size_t first_error_len);

/* PING on an open link: 0, or -EIO (close the link; err says why). */
int redis_link_ping(struct redis_link *l, char *err, size_t errlen);

/*
 * The key's value: {"relay_id":"<relay_id>","session_id":"<session_id>"},
 * JSON-escaped. Works like snprintf (returns the length needed).
 */
size_t redis_link_value(char *buf, size_t cap, const char *relay_id, const char *session_id);

/* CLOCK_MONOTONIC in ms. */
int64_t redis_link_now_ms(void);

#endif
