/*
 * influx_server.c - runs a real influxd for the sink-influxdb tests (the
 * process plumbing is test_server.c) and queries it over HTTP with libcurl
 * (see influx_server.h). Test threads only; every wait is a poll with a
 * deadline.
 */
#include "influx_server.h"

#include "harness.h"
#include "test_server.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct body {
    char *p;
    size_t len;
};

static size_t collect(char *data, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t n = size * nmemb;
    char *p = realloc(b->p, b->len + n + 1);
    if (p == NULL)
        return 0;
    memcpy(p + b->len, data, n);
    b->p = p;
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

/* GET/POST url (post_fields NULL: GET). Returns the HTTP status (0: no
 * answer); *out gets the body (malloc'd) when out is not NULL. */
static long http(const char *url, const char *post_fields, char **out, long timeout_ms)
{
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    struct body b = {NULL, 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (post_fields)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post_fields);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (out)
        *out = b.p ? b.p : strdup("");
    else
        free(b.p);
    return status;
}

static bool pings(void *arg)
{
    struct influx_server *s = arg;
    char url[128];
    snprintf(url, sizeof(url), "%s/ping", s->url);
    return http(url, NULL, NULL, 500) == 204;
}

static void spawn(struct influx_server *s)
{
    char conf[300], out[300];
    snprintf(conf, sizeof(conf), "%s/influxdb.conf", s->dir);
    snprintf(out, sizeof(out), "%s/influxd.log", s->dir);
    const char *argv[] = {"influxd", "-config", conf, NULL};
    const char *programs[] = {"/usr/bin/influxd", "influxd", NULL};
    struct test_server_spec spec = {.argv = argv, .programs = programs, .log = out,
                                    .ready = pings, .arg = s, .timeout_ms = 15000};
    int rc = test_server_start(&s->pid, &spec);
    if (rc != 0) {
        char *log = harness_read_file(out, NULL);
        influx_server_stop(s);
        cr_assert_fail("influxd on port %d did not start (%s); log:\n%s", s->port,
                       test_server_strerror(rc), log ? log : "(none)");
    }
}

void influx_server_start(struct influx_server *s, int port)
{
    memset(s, 0, sizeof(*s));
    cr_assert_eq(test_server_mkdtemp(s->dir, sizeof(s->dir), NULL, "aeroarc-influx-"), 0);
    s->port = port ? port : harness_free_port();
    s->rpc_port = harness_free_port();
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
    /* Only what the tests need, and nothing that phones home, listens
     * elsewhere or works in the background. */
    char conf[2048], path[300];
    snprintf(conf, sizeof(conf),
             "reporting-disabled = true\n"
             "bind-address = \"127.0.0.1:%d\"\n"
             "[meta]\n  dir = \"%s/meta\"\n"
             "[data]\n  dir = \"%s/data\"\n  wal-dir = \"%s/wal\"\n"
             "  query-log-enabled = false\n"
             "[monitor]\n  store-enabled = false\n"
             "[http]\n  enabled = true\n  bind-address = \"127.0.0.1:%d\"\n"
             "  log-enabled = false\n"
             "[admin]\n  enabled = false\n"
             "[continuous_queries]\n  enabled = false\n"
             "[subscriber]\n  enabled = false\n"
             "[[graphite]]\n  enabled = false\n"
             "[[collectd]]\n  enabled = false\n"
             "[[opentsdb]]\n  enabled = false\n"
             "[[udp]]\n  enabled = false\n"
             "[logging]\n  level = \"warn\"\n",
             s->rpc_port, s->dir, s->dir, s->dir, s->port);
    snprintf(path, sizeof(path), "%s/influxdb.conf", s->dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(conf, f);
    fclose(f);
    spawn(s);
}

void influx_server_restart(struct influx_server *s)
{
    cr_assert_eq(s->pid, 0, "influxd still running");
    spawn(s);
}

void influx_server_stop(struct influx_server *s)
{
    test_server_stop(&s->pid, SIGKILL, 0);
}

void influx_server_pause(struct influx_server *s) { cr_assert_eq(test_server_pause(s->pid), 0); }
void influx_server_resume(struct influx_server *s) { cr_assert_eq(test_server_resume(s->pid), 0); }

void influx_server_cleanup(struct influx_server *s)
{
    test_server_cleanup(&s->pid, s->dir);
}

char *influx_server_query(struct influx_server *s, const char *db, const char *q)
{
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    char *eq = curl_easy_escape(c, q, 0);
    char *edb = db ? curl_easy_escape(c, db, 0) : NULL;
    curl_easy_cleanup(c);
    size_t len = strlen(eq) + (edb ? strlen(edb) : 0) + 16;
    char *fields = malloc(len);
    snprintf(fields, len, "q=%s%s%s", eq, edb ? "&db=" : "", edb ? edb : "");
    curl_free(eq);
    curl_free(edb);
    char url[128], *out = NULL;
    snprintf(url, sizeof(url), "%s/query", s->url);
    long status = http(url, fields, &out, 10000);
    free(fields);
    cr_assert_eq(status, 200, "query \"%s\": HTTP %ld: %s", q, status, out);
    return out;
}

void influx_server_create_db(struct influx_server *s, const char *db)
{
    char q[256];
    snprintf(q, sizeof(q), "CREATE DATABASE \"%s\"", db);
    free(influx_server_query(s, NULL, q));
}

long long influx_server_query_number(struct influx_server *s, const char *db, const char *q)
{
    char *json = influx_server_query(s, db, q);
    /* {"results":[{"statement_id":0,"series":[{...,"values":[["<time>",N]]}]}]} */
    const char *v = strstr(json, "\"values\":[[");
    long long n = -1;
    if (v != NULL) {
        const char *end = strstr(v, "]]");
        const char *comma = end;
        while (comma > v && *comma != ',')
            comma--;
        cr_assert(end && comma > v, "unexpected answer: %s", json);
        n = strtoll(comma + 1, NULL, 10);
    }
    free(json);
    return n;
}
