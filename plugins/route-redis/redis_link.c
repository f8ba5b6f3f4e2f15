/*
 * redis_link.c - route-redis's hiredis connection: connect and handshake,
 * the two Lua scripts (the atomic conditional refresh and compare-and-delete)
 * and pipelined execution of route_op batches. Blocking I/O bounded by
 * SO_RCVTIMEO/SO_SNDTIMEO timeouts; one thread at a time; no plugin state.
 */
#include "redis_link.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* Ops appended before their replies are read: big enough that 10,000
 * sessions take a handful of round trips, small enough to bound the
 * buffers hiredis and Redis hold for one connection. */
#define PIPELINE_CHUNK 1000

/*
 * Refresh: KEYS[1] = drone:<id>, ARGV = value, ttl, session id. Recreate the
 * key if Redis lost it, rewrite it (new TTL) if it holds this session, leave
 * it alone if it holds another session (or anything we cannot read): the
 * drone moved. The session id is compared inside the JSON value, so a value
 * written by another relay version with other fields still compares right.
 * Returns 1 written, 0 left alone.
 */
static const char refresh_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v then\n"
    "  local ok, t = pcall(cjson.decode, v)\n"
    "  if not ok or type(t) ~= 'table' or t.session_id ~= ARGV[3] then return 0 end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n"
    "return 1\n";

/*
 * Compare-and-delete: KEYS[1] = drone:<id>, ARGV = session ids of this
 * relay that ended. Deletes the key only if it holds one of them, so a
 * reconnect elsewhere is never erased. Returns the number of keys deleted.
 */
static const char delete_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return 0 end\n"
    "local ok, t = pcall(cjson.decode, v)\n"
    "if not ok or type(t) ~= 'table' then return 0 end\n"
    "for i = 1, #ARGV do\n"
    "  if t.session_id == ARGV[i] then return redis.call('DEL', KEYS[1]) end\n"
    "end\n"
    "return 0\n";

int64_t redis_link_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval ms_tv(int ms)
{
    if (ms < 1)
        ms = 1;
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

int redis_link_parse_addr(const char *addr, struct redis_link_opts *o, char *err, size_t errlen)
{
    const char *host = addr, *colon = NULL;
    size_t hlen;

    if (strncmp(addr, "unix:", 5) == 0) {
        if (!addr[5] || strlen(addr + 5) >= 108) {
            snprintf(err, errlen, "invalid address \"%s\" (expected unix:/path/to/socket)", addr);
            return -EINVAL;
        }
        snprintf(o->host, sizeof(o->host), "%s", addr + 5);
        o->port = 0;
        return 0;
    }
    if (addr[0] == '[') { /* [v6]:port */
        const char *close = strchr(addr, ']');
        if (!close || (close[1] && close[1] != ':'))
            goto bad;
        host = addr + 1;
        hlen = (size_t)(close - host);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strrchr(addr, ':');
        if (colon && strchr(addr, ':') != colon)
            goto bad; /* a bare IPv6 address: needs brackets */
        hlen = colon ? (size_t)(colon - addr) : strlen(addr);
    }
    if (hlen == 0 || hlen >= sizeof(o->host))
        goto bad;
    for (size_t i = 0; i < hlen; i++)
        if (host[i] == ' ' || host[i] == '\t' || host[i] == '/')
            goto bad;
    memcpy(o->host, host, hlen);
    o->host[hlen] = '\0';
    o->port = 6379;
    if (colon) {
        char *end;
        errno = 0;
        long p = strtol(colon + 1, &end, 10);
        if (!colon[1] || *end || errno || p < 1 || p > 65535 || colon[1] == '+' ||
            colon[1] == '-')
            goto bad;
        o->port = (int)p;
    }
    return 0;
bad:
    snprintf(err, errlen,
             "invalid address \"%s\" (expected host:port, [ipv6]:port, host or unix:/path)", addr);
    return -EINVAL;
}

/* ---------------------------------------------------------- handshake */

/* Run one command; 0 with *out set (caller frees), -EIO on a connection
 * failure, -EPROTO on an error reply (err says which, for `what`). */
static int command(redisContext *c, redisReply **out, char *err, size_t errlen,
                   const char *what, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    *out = NULL;
    if (!r) {
        snprintf(err, errlen, "%s: %s", what, c->errstr[0] ? c->errstr : "connection lost");
        return -EIO;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s: %.*s", what, (int)r->len, r->str);
        freeReplyObject(r);
        return -EPROTO;
    }
    *out = r;
    return 0;
}

static int load_script(redisContext *c, const char *body, char sha[41], char *err, size_t errlen)
{
    const char *argv[] = {"SCRIPT", "LOAD", body};
    redisReply *r;
    int rc = command(c, &r, err, errlen, "SCRIPT LOAD", 3, argv);
    if (rc < 0)
        return rc;
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        snprintf(err, errlen, "SCRIPT LOAD: unexpected reply");
        freeReplyObject(r);
        return -EPROTO;
    }
    memcpy(sha, r->str, 40);
    sha[40] = '\0';
    freeReplyObject(r);
    return 0;
}

int redis_link_open(struct redis_link *l, const struct redis_link_opts *o, char *err,
                    size_t errlen)
{
    struct timeval ctv = ms_tv(o->connect_timeout_ms);
    redisReply *r = NULL;
    int rc;
    char db[24];

    redis_link_close(l);
    redisContext *c = o->port ? redisConnectWithTimeout(o->host, o->port, ctv)
                              : redisConnectUnixWithTimeout(o->host, ctv);
    if (!c) {
        snprintf(err, errlen, "connect: out of memory");
        return -ENOMEM;
    }
    if (c->err) {
        snprintf(err, errlen, "connect: %s", c->errstr);
        rc = -ECONNREFUSED;
        goto fail;
    }
    /* The handshake is the startup PING: as short as the connect. */
    redisSetTimeout(c, ctv);
    redisEnableKeepAlive(c);
    if (o->password && o->password[0]) {
        const char *argv[] = {"AUTH", o->password};
        if ((rc = command(c, &r, err, errlen, "AUTH", 2, argv)) < 0)
            goto fail;
        freeReplyObject(r);
    }
    if (o->db != 0) {
        snprintf(db, sizeof(db), "%lld", o->db);
        const char *argv[] = {"SELECT", db};
        if ((rc = command(c, &r, err, errlen, "SELECT", 2, argv)) < 0)
            goto fail;
        freeReplyObject(r);
    }
    const char *ping[] = {"PING"};
    if ((rc = command(c, &r, err, errlen, "PING", 1, ping)) < 0)
        goto fail;
    freeReplyObject(r);
    if ((rc = load_script(c, refresh_lua, l->sha_refresh, err, errlen)) < 0 ||
        (rc = load_script(c, delete_lua, l->sha_delete, err, errlen)) < 0)
        goto fail;
    redisSetTimeout(c, ms_tv(o->command_timeout_ms));
    l->c = c;
    return 0;
fail:
    redisFree(c);
    return rc;
}

void redis_link_close(struct redis_link *l)
{
    if (l->c)
        redisFree(l->c);
    l->c = NULL;
}

int redis_link_ping(struct redis_link *l, char *err, size_t errlen)
{
    const char *argv[] = {"PING"};
    redisReply *r;
    if (!l->c) {
        snprintf(err, errlen, "not connected");
        return -EIO;
    }
    /* An error reply (e.g. a password changed under us) is as bad as a
     * dead link: reconnecting says what is wrong. */
    if (command(l->c, &r, err, errlen, "PING", 1, argv) < 0)
        return -EIO;
    freeReplyObject(r);
    return 0;
}

int redis_link_fd(const struct redis_link *l) { return l->c ? l->c->fd : -1; }

void redis_link_set_timeout(struct redis_link *l, int ms)
{
    if (l->c)
        redisSetTimeout(l->c, ms_tv(ms));
}

/* ---------------------------------------------------------- pipeline */

/* JSON string body of s (no quotes) into buf at *o, counting past cap. */
static void json_escape(char *buf, size_t cap, size_t *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[7];
        size_t n = 0;
        if (*p == '"' || *p == '\\') {
            esc[n++] = '\\';
            esc[n++] = (char)*p;
        } else if (*p < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            n = 6;
        } else {
            esc[n++] = (char)*p;
        }
        for (size_t i = 0; i < n; i++, (*o)++)
            if (*o < cap)
                buf[*o] = esc[i];
    }
}

static void put(char *buf, size_t cap, size_t *o, const char *s)
{
    for (; *s; s++, (*o)++)
        if (*o < cap)
            buf[*o] = *s;
}

size_t redis_link_value(char *buf, size_t cap, const char *relay_id, const char *session_id)
{
    size_t o = 0;
    put(buf, cap, &o, "{\"relay_id\":\"");
    json_escape(buf, cap, &o, relay_id);
    put(buf, cap, &o, "\",\"session_id\":\"");
    json_escape(buf, cap, &o, session_id);
    put(buf, cap, &o, "\"}");
    if (cap)
        buf[o < cap ? o : cap - 1] = '\0';
    return o;
}

/* A buffer that grows to what is asked; freed by the caller. */
static char *scratch(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return *buf;
    char *b = realloc(*buf, need);
    if (!b)
        return NULL;
    *buf = b;
    *cap = need;
    return b;
}

static int append_op(struct redis_link *l, const struct route_op *op, const char *relay_id,
                     const char *ttl, char **kbuf, size_t *kcap, char **vbuf, size_t *vcap)
{
    size_t klen = strlen(op->drone_id) + 6;
    if (!scratch(kbuf, kcap, klen + 1))
        return -ENOMEM;
    snprintf(*kbuf, klen + 1, "drone:%s", op->drone_id);

    const char *argv[4 + ROUTE_OP_MAX_IDS];
    size_t argvlen[4 + ROUTE_OP_MAX_IDS];
    int argc = 0;
    if (op->kind == ROUTE_OP_DELETE) {
        argv[argc++] = "EVALSHA";
        argv[argc++] = l->sha_delete;
        argv[argc++] = "1";
        argv[argc++] = *kbuf;
        for (unsigned i = 0; i < op->n_sessions; i++)
            argv[argc++] = op->session_ids[i];
    } else {
        size_t vlen = redis_link_value(NULL, 0, relay_id, op->session_ids[0]);
        if (!scratch(vbuf, vcap, vlen + 1))
            return -ENOMEM;
        redis_link_value(*vbuf, vlen + 1, relay_id, op->session_ids[0]);
        if (op->kind == ROUTE_OP_SET) {
            argv[argc++] = "SET";
            argv[argc++] = *kbuf;
            argv[argc++] = *vbuf;
            argv[argc++] = "EX";
            argv[argc++] = ttl;
        } else {
            argv[argc++] = "EVALSHA";
            argv[argc++] = l->sha_refresh;
            argv[argc++] = "1";
            argv[argc++] = *kbuf;
            argv[argc++] = *vbuf;
            argv[argc++] = ttl;
            argv[argc++] = op->session_ids[0];
        }
    }
    for (int i = 0; i < argc; i++)
        argvlen[i] = strlen(argv[i]);
    return redisAppendCommandArgv(l->c, argc, argv, argvlen) == REDIS_OK ? 0 : -ENOMEM;
}

static void take_reply(struct route_op *op, const redisReply *r, char *first_error, size_t fel)
{
    op->value = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        bool noscript = r->len >= 8 && strncmp(r->str, "NOSCRIPT", 8) == 0;
        op->result = noscript ? ROUTE_RES_NOSCRIPT : ROUTE_RES_ERROR;
        if (first_error && fel && !first_error[0])
            snprintf(first_error, fel, "%.*s", (int)r->len, r->str);
    } else if (op->kind == ROUTE_OP_SET) {
        op->result = r->type == REDIS_REPLY_STATUS ? ROUTE_RES_OK : ROUTE_RES_ERROR;
        op->value = 1;
    } else if (r->type == REDIS_REPLY_INTEGER) {
        op->result = ROUTE_RES_OK;
        op->value = r->integer;
    } else {
        op->result = ROUTE_RES_ERROR;
        if (first_error && fel && !first_error[0])
            snprintf(first_error, fel, "unexpected reply type %d", r->type);
    }
}

int redis_link_run(struct redis_link *l, struct route_op *ops, size_t n, const char *relay_id,
                   int ttl_s, int64_t deadline_ms, char *err, size_t errlen, char *first_error,
                   size_t first_error_len)
{
    char ttl[24], *kbuf = NULL, *vbuf = NULL;
    size_t kcap = 0, vcap = 0;
    int rc = 0;

    if (!l->c) {
        snprintf(err, errlen, "not connected");
        return -EIO;
    }
    snprintf(ttl, sizeof(ttl), "%d", ttl_s);
    for (size_t start = 0; start < n && rc == 0; start += PIPELINE_CHUNK) {
        size_t end = n - start > PIPELINE_CHUNK ? start + PIPELINE_CHUNK : n;
        if (deadline_ms && redis_link_now_ms() >= deadline_ms) {
            snprintf(err, errlen, "deadline passed");
            rc = -ETIMEDOUT;
            break;
        }
        for (size_t i = start; i < end; i++) {
            if (append_op(l, &ops[i], relay_id, ttl, &kbuf, &kcap, &vbuf, &vcap) < 0) {
                /* Half a pipeline may sit in the output buffer: the
                 * connection is no longer usable. */
                snprintf(err, errlen, "out of memory");
                rc = -EIO;
                goto out;
            }
        }
        for (size_t i = start; i < end; i++) {
            void *reply = NULL;
            if (redisGetReply(l->c, &reply) != REDIS_OK || !reply) {
                snprintf(err, errlen, "%s", l->c->errstr[0] ? l->c->errstr : "connection lost");
                rc = -EIO;
                goto out;
            }
            take_reply(&ops[i], reply, first_error, first_error_len);
            freeReplyObject(reply);
        }
    }
out:
    free(kbuf);
    free(vbuf);
    return rc;
}
