/*
 * influx3_http.h - one sink-influxdb3 instance's HTTP client: a persistent
 * libcurl handle (HTTP/1.1 keep-alive, TLS) that POSTs line protocol to
 * InfluxDB 3's /api/v3/write_lp or /api/v2/write, gzipped (zlib) from
 * gzip_threshold bytes on. Sink thread only; created and destroyed on the
 * main thread. Never retries: the caller decides.
 */
#ifndef AERO_INFLUX3_HTTP_H
#define AERO_INFLUX3_HTTP_H

#include <aeroarc/plugin.h>
#include <stddef.h>

struct influx3_http;

struct influx3_http_opts {
    const char *host;            /* http(s)://host[:port][/prefix] */
    const char *database;
    const char *auth_scheme;     /* "Token" or "Bearer" */
    const char *token;           /* never logged */
    int api_v2;                  /* 1: /api/v2/write?bucket=&precision=ns */
    int no_sync;                 /* v3: &no_sync=true */
    size_t gzip_threshold;       /* bodies of this many bytes or more are gzipped; 0: never */
    const char *ca_file;         /* "": the system's CAs */
    const char *tls_server_name; /* "": the host's name */
};

/* One POST's answer. */
struct influx3_reply {
    long status;       /* HTTP status; 0 when no response came */
    char detail[320];  /* SPEC 13.5: "HTTP <code>: <first 200 bytes of body>" or curl's reason */
};

/* 0, or -errno after logging why. *out is set even on failure (destroy it). */
int influx3_http_create(const aero_host *host, const struct influx3_http_opts *o,
                        struct influx3_http **out);

/* The write URL (no token in it), for messages. */
const char *influx3_http_url(const struct influx3_http *c);

/* POST body[0..len) with at most timeout_ms for the whole request. */
void influx3_http_post(struct influx3_http *c, const char *body, size_t len, long timeout_ms,
                       struct influx3_reply *r);

void influx3_http_destroy(struct influx3_http *c);

#endif
