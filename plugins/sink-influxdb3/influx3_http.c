/*
 * influx3_http.c - owns the libcurl easy handle of one sink-influxdb3
 * instance: write URL, headers (the token only ever goes into the
 * Authorization header), TLS, set once; the handle is reused so the
 * connection stays open between requests. Bodies from gzip_threshold bytes
 * on are gzipped with zlib into a buffer kept for the next request. Sink
 * thread only; create/destroy on the main thread.
 */
#include "influx3_http.h"

#include "line_proto.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum { BODY_DETAIL_MAX = 200 }; /* SPEC 13.5: the first 200 bytes of the body */

struct influx3_http {
    const aero_host *host;
    CURL *curl;
    int global_init;
    struct curl_slist *plain, *gzipped; /* header lists without / with Content-Encoding */
    struct curl_slist *connect_to;      /* tls_server_name: name:port -> host:port */
    char *url;
    size_t gzip_threshold;
    struct lp_buf gz;                   /* the last gzipped body */
    char errbuf[CURL_ERROR_SIZE];
    char body[BODY_DETAIL_MAX + 4];     /* start of the answer's body */
    size_t body_len;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct influx3_http *c = arg;
    size_t n = size * nmemb, room = sizeof(c->body) - c->body_len;
    size_t take = n < room ? n : room;
    memcpy(c->body + c->body_len, data, take);
    c->body_len += take;
    return n;
}

/* "HTTP <code>: <body>" with at most 200 bytes of the body, cut at a
 * character boundary, invalid UTF-8 as U+FFFD (SPEC 13.9 rule 2). */
static void status_detail(struct influx3_http *c, struct influx3_reply *r)
{
    int n = snprintf(r->detail, sizeof(r->detail), "HTTP %ld: ", r->status);
    size_t at = (size_t)n, in = 0;
    const unsigned char *p = (const unsigned char *)c->body;
    size_t len = c->body_len;
    while (in < len && in < BODY_DETAIL_MAX) {
        size_t k = lp_utf8_len(p + in, len - in);
        if (k > 0 && in + k > BODY_DETAIL_MAX)
            break;
        const char *out = k ? (const char *)p + in : "\xEF\xBF\xBD";
        size_t outn = k ? k : 3;
        if (at + outn >= sizeof(r->detail))
            break;
        memcpy(r->detail + at, out, outn);
        at += outn;
        in += k ? k : 1;
    }
    r->detail[at] = '\0';
}

/* The write URL of SPEC 13.5 rule 1 (database escaped). */
static int build_url(struct influx3_http *c, const struct influx3_http_opts *o)
{
    size_t base = strlen(o->host);
    while (base > 0 && o->host[base - 1] == '/')
        base--;
    char *db = curl_easy_escape(c->curl, o->database, 0);
    if (!db)
        return -ENOMEM;
    int n = o->api_v2
                ? asprintf(&c->url, "%.*s/api/v2/write?bucket=%s&precision=ns", (int)base, o->host, db)
                : asprintf(&c->url, "%.*s/api/v3/write_lp?db=%s&precision=nanosecond&accept_partial=false%s",
                           (int)base, o->host, db, o->no_sync ? "&no_sync=true" : "");
    curl_free(db);
    if (n < 0) {
        c->url = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* tls_server_name: the URL names that host (SNI, certificate check) and
 * CONNECT_TO sends the connection to the configured one. */
static int server_name(struct influx3_http *c, const char *name)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *url = NULL, *entry = NULL;
    int rc = -EINVAL;
    if (!u || curl_url_set(u, CURLUPART_URL, c->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_HOST, name, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK)
        goto out;
    if (asprintf(&entry, "%s:%s:%s:%s", name, port, host, port) < 0) {
        entry = NULL;
        goto out;
    }
    struct curl_slist *l = curl_slist_append(NULL, entry);
    if (!l)
        goto out;
    c->connect_to = l;
    free(c->url);
    c->url = strdup(url);
    rc = c->url ? 0 : -ENOMEM;
out:
    free(entry);
    curl_free(url);
    curl_free(port);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

static struct curl_slist *headers(const struct influx3_http_opts *o, int gzip)
{
    char *auth = NULL;
    if (asprintf(&auth, "Authorization: %s %s", o->auth_scheme, o->token) < 0)
        return NULL;
    const char *lines[] = {auth, "Content-Type: text/plain; charset=utf-8",
                           "Expect:", /* no 100-continue round trip */
                           gzip ? "Content-Encoding: gzip" : NULL};
    struct curl_slist *l = NULL;
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]) && lines[i]; i++) {
        struct curl_slist *n = curl_slist_append(l, lines[i]);
        if (!n) {
            curl_slist_free_all(l);
            l = NULL;
            break;
        }
        l = n;
    }
    memset(auth, 0, strlen(auth));
    free(auth);
    return l;
}

static int setopts(struct influx3_http *c, const struct influx3_http_opts *o)
{
    CURL *h = c->curl;
    CURLcode e = CURLE_OK;
#define SET(opt, val) \
    do { if (e == CURLE_OK) e = curl_easy_setopt(h, opt, val); } while (0)
    SET(CURLOPT_URL, c->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    /* SPEC 13.5: HTTP/1.1 keep-alive, also over https (a libcurl built
     * with nghttp2 would otherwise offer HTTP/2 by ALPN). */
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, c);
    SET(CURLOPT_ERRORBUFFER, c->errbuf);
    if (*o->ca_file)
        SET(CURLOPT_CAINFO, o->ca_file);
    if (c->connect_to)
        SET(CURLOPT_CONNECT_TO, c->connect_to);
#undef SET
    if (e != CURLE_OK) {
        c->host->log(c->host, AERO_LOG_ERROR, "libcurl: %s", curl_easy_strerror(e));
        return -EINVAL;
    }
    return 0;
}

int influx3_http_create(const aero_host *host, const struct influx3_http_opts *o,
                        struct influx3_http **out)
{
    struct influx3_http *c = calloc(1, sizeof(*c));
    int rc = -ENOMEM;
    *out = c;
    if (!c)
        goto fail;
    c->host = host;
    c->gzip_threshold = o->gzip_threshold;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        rc = -EIO;
        goto fail;
    }
    c->global_init = 1;
    if (!(c->curl = curl_easy_init()) || !(c->plain = headers(o, 0)) ||
        !(c->gzipped = headers(o, 1)) || (rc = build_url(c, o)) != 0)
        goto fail;
    if (*o->tls_server_name && (rc = server_name(c, o->tls_server_name)) != 0) {
        host->log(host, AERO_LOG_ERROR, "tls_server_name: cannot rewrite the host URL for it");
        return rc;
    }
    return setopts(c, o);
fail:
    host->log(host, AERO_LOG_ERROR, "cannot set up libcurl: %s", strerror(-rc));
    return rc;
}

const char *influx3_http_url(const struct influx3_http *c)
{
    return c->url;
}

/* gzip body[0..len) into c->gz: 0 or -ENOMEM / -EIO. */
static int gzip_body(struct influx3_http *c, const char *body, size_t len)
{
    z_stream z = {0};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    c->gz.len = 0;
    if (lp_reserve(&c->gz, deflateBound(&z, (uLong)len)) != 0) {
        deflateEnd(&z);
        return -ENOMEM;
    }
    z.next_in = (Bytef *)(uintptr_t)body;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)c->gz.p;
    z.avail_out = (uInt)c->gz.cap;
    int zr = deflate(&z, Z_FINISH);
    c->gz.len = z.total_out;
    deflateEnd(&z);
    return zr == Z_STREAM_END ? 0 : -EIO;
}

void influx3_http_post(struct influx3_http *c, const char *body, size_t len, long timeout_ms,
                       struct influx3_reply *r)
{
    memset(r, 0, sizeof(*r));
    c->body_len = 0;
    c->errbuf[0] = '\0';
    int gz = c->gzip_threshold > 0 && len >= c->gzip_threshold && len <= UINT32_MAX;
    if (gz && gzip_body(c, body, len) != 0) {
        snprintf(r->detail, sizeof(r->detail), "gzip failed");
        return;
    }
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, gz ? c->gzipped : c->plain);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, gz ? c->gz.p : body);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(gz ? c->gz.len : len));
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
    CURLcode e = curl_easy_perform(c->curl);
    if (e != CURLE_OK) {
        snprintf(r->detail, sizeof(r->detail), "%s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(e));
        return;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
    status_detail(c, r);
}

void influx3_http_destroy(struct influx3_http *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->plain);
    curl_slist_free_all(c->gzipped);
    curl_slist_free_all(c->connect_to);
    if (c->global_init)
        curl_global_cleanup();
    free(c->url);
    free(c->gz.p);
    free(c);
}
