/*
 * influx_http.h - one sink-influxdb instance's HTTP client: a persistent
 * libcurl handle (keep-alive) that POSTs line protocol to /write. Used on
 * the sink thread only; created and destroyed on the main thread.
 */
#ifndef AERO_INFLUX_HTTP_H
#define AERO_INFLUX_HTTP_H

#include <aeroarc/plugin.h>
#include <stddef.h>

struct influx_http;

struct influx_http_opts {
    const char *url;        /* http(s)://host:port[/prefix] */
    const char *database;
    const char *retention_policy; /* "" or NULL: the database's default */
    const char *username;   /* "" or NULL: no authentication */
    const char *password;
    int timeout_ms;         /* whole request, connection included */
    const char *ca_file;    /* "" or NULL: the system's CAs */
    int insecure;           /* skip TLS certificate and host checks */
};

/* Result of one POST. */
struct influx_reply {
    long status;        /* HTTP status; 0 when no response came */
    int timed_out;      /* no response within timeout_ms */
    char message[512];  /* the server's error body, or curl's reason */
};

/* 0, or -errno after logging why (bad URL, out of memory). *out is set
 * even on failure (destroy it). */
int influx_http_create(const aero_host *host, const struct influx_http_opts *o,
                       struct influx_http **out);

/* The URL writes go to (for messages). */
const char *influx_http_url(const struct influx_http *c);

/* POST body[0..len) to /write; fills *r. Never retries by itself. */
void influx_http_write(struct influx_http *c, const char *body, size_t len,
                       struct influx_reply *r);

void influx_http_destroy(struct influx_http *c);

#endif
