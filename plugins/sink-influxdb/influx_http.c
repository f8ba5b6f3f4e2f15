/*
 * influx_http.c - owns the libcurl easy handle of one sink-influxdb
 * instance: the write URL, authentication, TLS and timeouts, set once; the
 * handle is reused so the TCP/TLS connection is kept alive between batches
 * (curl reconnects by itself when the server closed it). Sink thread only,
 * create/destroy on the main thread. Never retries: the caller decides.
 */
#include "influx_http.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { URL_MAX = 2048 };

struct influx_http {
    const aero_host *host;
    CURL *curl;
    int global_init;           /* curl_global_init succeeded */
    struct curl_slist *headers;
    char url[URL_MAX];
    char errbuf[CURL_ERROR_SIZE];
    struct influx_reply *reply; /* the current request's, for the callback */
    size_t body_len;
};

/* Keeps the start of the response body (error messages are short). */
static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct influx_http *c = arg;
    size_t n = size * nmemb;
    char *m = c->reply->message;
    size_t room = sizeof(c->reply->message) - 1 - c->body_len;
    size_t take = n < room ? n : room;

    for (size_t i = 0; i < take; i++) {
        unsigned char ch = (unsigned char)data[i];
        m[c->body_len++] = ch >= 0x20 && ch < 0x7F ? (char)ch : ' ';
    }
    m[c->body_len] = '\0';
    return n;
}

/* Appends "&name=<escaped value>" to c->url: 0 or -ENAMETOOLONG/-ENOMEM. */
static int add_param(struct influx_http *c, const char *sep, const char *name,
                     const char *value)
{
    char *esc = curl_easy_escape(c->curl, value, 0);
    if (esc == NULL)
        return -ENOMEM;
    size_t used = strlen(c->url);
    int n = snprintf(c->url + used, sizeof(c->url) - used, "%s%s=%s", sep,
                     name, esc);
    curl_free(esc);
    return n < 0 || (size_t)n >= sizeof(c->url) - used ? -ENAMETOOLONG : 0;
}

static int build_url(struct influx_http *c, const struct influx_http_opts *o)
{
    size_t base = strlen(o->url);
    while (base > 0 && o->url[base - 1] == '/')
        base--;
    if (base + 7 >= sizeof(c->url))
        return -ENAMETOOLONG;
    memcpy(c->url, o->url, base);
    memcpy(c->url + base, "/write", 7);
    int rc = add_param(c, "?", "db", o->database);
    if (rc == 0 && o->retention_policy && *o->retention_policy)
        rc = add_param(c, "&", "rp", o->retention_policy);
    if (rc == 0)
        rc = add_param(c, "&", "precision", "ns");
    return rc;
}

static int setopts(struct influx_http *c, const struct influx_http_opts *o)
{
    CURL *h = c->curl;
    CURLcode e = CURLE_OK;

#define SET(opt, val) \
    do { if (e == CURLE_OK) e = curl_easy_setopt(h, opt, val); } while (0)
    SET(CURLOPT_URL, c->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);          /* threads: no SIGALRM timeouts */
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)o->timeout_ms);
    SET(CURLOPT_HTTPHEADER, c->headers);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, c);
    SET(CURLOPT_ERRORBUFFER, c->errbuf);
    if (o->username && *o->username) {
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SET(CURLOPT_USERNAME, o->username);
        SET(CURLOPT_PASSWORD, o->password ? o->password : "");
    }
    if (o->ca_file && *o->ca_file)
        SET(CURLOPT_CAINFO, o->ca_file);
    if (o->insecure) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    }
#undef SET
    if (e != CURLE_OK) {
        c->host->log(c->host, AERO_LOG_ERROR, "sink-influxdb: libcurl: %s",
                     curl_easy_strerror(e));
        return -EINVAL;
    }
    return 0;
}

int influx_http_create(const aero_host *host, const struct influx_http_opts *o,
                       struct influx_http **out)
{
    int rc = -ENOMEM;
    struct influx_http *c = calloc(1, sizeof(*c));

    *out = c;
    if (c == NULL)
        goto fail;
    c->host = host;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        rc = -EIO;
        goto fail;
    }
    c->global_init = 1;
    if ((c->curl = curl_easy_init()) == NULL)
        goto fail;
    /* "Expect: 100-continue" would cost a round trip on large bodies. */
    struct curl_slist *l1 = curl_slist_append(NULL, "Content-Type: text/plain; charset=utf-8");
    struct curl_slist *l2 = l1 ? curl_slist_append(l1, "Expect:") : NULL;
    if (l2 == NULL) {
        curl_slist_free_all(l1);
        goto fail;
    }
    c->headers = l2;
    if ((rc = build_url(c, o)) != 0) {
        host->log(host, AERO_LOG_ERROR, "sink-influxdb: url or database too long");
        return rc;
    }
    return setopts(c, o);
fail:
    host->log(host, AERO_LOG_ERROR, "sink-influxdb: cannot set up libcurl: %s",
              strerror(-rc));
    return rc;
}

const char *influx_http_url(const struct influx_http *c)
{
    return c->url;
}

void influx_http_write(struct influx_http *c, const char *body, size_t len,
                       struct influx_reply *r)
{
    memset(r, 0, sizeof(*r));
    c->reply = r;
    c->body_len = 0;
    c->errbuf[0] = '\0';
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    CURLcode e = curl_easy_perform(c->curl);
    c->reply = NULL;
    if (e != CURLE_OK) {
        r->status = 0;
        r->timed_out = e == CURLE_OPERATION_TIMEDOUT;
        snprintf(r->message, sizeof(r->message), "%s",
                 c->errbuf[0] ? c->errbuf : curl_easy_strerror(e));
        return;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
}

void influx_http_destroy(struct influx_http *c)
{
    if (c == NULL)
        return;
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    if (c->global_init)
        curl_global_cleanup();
    free(c);
}
