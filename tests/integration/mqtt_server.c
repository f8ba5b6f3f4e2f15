/*
 * mqtt_server.c - runs a real mosquitto for the sink-mqtt tests (the
 * process plumbing is test_server.c) and subscribes to it with libmosquitto
 * (see mqtt_server.h). Test threads and the subscriber's libmosquitto
 * thread; every wait is a poll with a deadline.
 */
#include "mqtt_server.h"

#include "harness.h"
#include "test_server.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <mosquitto.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --------------------------------------------------------------- broker */

static void spawn(struct mqtt_server *m)
{
    char conf[300], out[300];
    snprintf(conf, sizeof(conf), "%s/mosquitto.conf", m->dir);
    snprintf(out, sizeof(out), "%s/mosquitto.log", m->dir);
    const char *argv[] = {"mosquitto", "-c", conf, NULL};
    const char *programs[] = {"/usr/sbin/mosquitto", "mosquitto", NULL};
    struct test_server_spec spec = {.argv = argv, .programs = programs, .log = out,
                                    .ports = {m->port, m->plain_port}, .timeout_ms = 10000};
    int rc = test_server_start(&m->pid, &spec);
    if (rc != 0) {
        char *log = harness_read_file(out, NULL);
        mqtt_server_stop(m);
        cr_assert_fail("mosquitto on port %d did not start (%s); log:\n%s", m->port,
                       test_server_strerror(rc), log ? log : "(none)");
    }
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

void mqtt_server_start(struct mqtt_server *m, int port, const char *user,
                       const char *password)
{
    memset(m, 0, sizeof(*m));
    cr_assert_eq(test_server_mkdtemp(m->dir, sizeof(m->dir), NULL, "aeroarc-mqtt-"), 0);
    m->port = port ? port : harness_free_port();
    /* As root mosquitto would switch to user "mosquitto", who cannot read
     * our scratch dir: stay who we are. */
    struct passwd *pw = getpwuid(getuid());
    char conf[2048], path[300];
    int n = snprintf(conf, sizeof(conf),
                     "listener %d 127.0.0.1\npersistence false\nuser %s\n"
                     "log_dest stderr\nlog_type error\nlog_type warning\n"
                     "log_type notice\n",
                     m->port, pw ? pw->pw_name : "root");
    if (user != NULL) {
        snprintf(m->user, sizeof(m->user), "%s", user);
        snprintf(path, sizeof(path), "%s/passwd", m->dir);
        write_file(path, "", 0600);
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "mosquitto_passwd -b '%s' '%s' '%s' 2>&1", path, user,
                 password);
        cr_assert_eq(system(cmd), 0, "mosquitto_passwd failed");
        snprintf(conf + n, sizeof(conf) - (size_t)n,
                 "allow_anonymous false\npassword_file %s\n", path);
    } else {
        snprintf(conf + n, sizeof(conf) - (size_t)n, "allow_anonymous true\n");
    }
    snprintf(path, sizeof(path), "%s/mosquitto.conf", m->dir);
    write_file(path, conf, 0644);
    spawn(m);
}

void mqtt_server_start_tls(struct mqtt_server *m)
{
    memset(m, 0, sizeof(*m));
    cr_assert_eq(test_server_mkdtemp(m->dir, sizeof(m->dir), NULL, "aeroarc-mqtt-"), 0);
    m->port = harness_free_port();
    m->plain_port = harness_free_port();
    snprintf(m->ca_file, sizeof(m->ca_file), "%s/cert.pem", m->dir);
    char cmd[1024], path[300], conf[2048];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost "
             "-keyout '%s/key.pem' -out '%s' >'%s/openssl.log' 2>&1",
             m->dir, m->ca_file, m->dir);
    cr_assert_eq(system(cmd), 0, "openssl could not make a certificate");
    struct passwd *pw = getpwuid(getuid());
    snprintf(conf, sizeof(conf),
             "per_listener_settings false\nallow_anonymous true\npersistence false\n"
             "user %s\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
             "listener %d 127.0.0.1\ncertfile %s\nkeyfile %s/key.pem\n"
             "listener %d 127.0.0.1\n",
             pw ? pw->pw_name : "root", m->port, m->ca_file, m->dir, m->plain_port);
    snprintf(path, sizeof(path), "%s/mosquitto.conf", m->dir);
    write_file(path, conf, 0644);
    spawn(m);
}

void mqtt_server_restart(struct mqtt_server *m)
{
    cr_assert_eq(m->pid, 0, "mosquitto still running");
    spawn(m);
}

void mqtt_server_stop(struct mqtt_server *m)
{
    test_server_stop(&m->pid, SIGKILL, 0);
}

void mqtt_server_pause(struct mqtt_server *m) { cr_assert_eq(test_server_pause(m->pid), 0); }
void mqtt_server_resume(struct mqtt_server *m) { cr_assert_eq(test_server_resume(m->pid), 0); }

void mqtt_server_cleanup(struct mqtt_server *m)
{
    test_server_cleanup(&m->pid, m->dir);
}

/* ----------------------------------------------------------- subscriber */

struct sub_msg {
    char *topic;
    char *payload;
    size_t len;
};

struct mqtt_server_sub {
    struct mosquitto *mosq;
    pthread_mutex_t lock;
    struct sub_msg *msgs;
    size_t n, cap;
    int subscribed;
    int connect_rc; /* -1 until CONNACK */
};

static void sub_on_message(struct mosquitto *mosq, void *arg,
                           const struct mosquitto_message *msg)
{
    struct mqtt_server_sub *s = arg;
    pthread_mutex_lock(&s->lock);
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->msgs = realloc(s->msgs, s->cap * sizeof(*s->msgs));
    }
    struct sub_msg *m = &s->msgs[s->n++];
    m->topic = strdup(msg->topic);
    m->len = (size_t)msg->payloadlen;
    m->payload = malloc(m->len + 1);
    memcpy(m->payload, msg->payload, m->len);
    m->payload[m->len] = '\0';
    pthread_mutex_unlock(&s->lock);
}

static void sub_on_subscribe(struct mosquitto *mosq, void *arg, int mid, int n,
                             const int *granted)
{
    struct mqtt_server_sub *s = arg;
    pthread_mutex_lock(&s->lock);
    s->subscribed = 1;
    pthread_mutex_unlock(&s->lock);
}

static void sub_on_connect(struct mosquitto *mosq, void *arg, int rc)
{
    struct mqtt_server_sub *s = arg;
    pthread_mutex_lock(&s->lock);
    s->connect_rc = rc;
    pthread_mutex_unlock(&s->lock);
}

static bool sub_ready(void *arg)
{
    struct mqtt_server_sub *s = arg;
    pthread_mutex_lock(&s->lock);
    bool ok = s->subscribed || (s->connect_rc > 0);
    pthread_mutex_unlock(&s->lock);
    return ok;
}

struct mqtt_server_sub *mqtt_server_sub_start(int port, const char *filter, const char *user,
                                const char *password)
{
    struct mqtt_server_sub *s = calloc(1, sizeof(*s));
    cr_assert_not_null(s);
    pthread_mutex_init(&s->lock, NULL);
    s->connect_rc = -1;
    mosquitto_lib_init();
    s->mosq = mosquitto_new(NULL, true, s);
    cr_assert_not_null(s->mosq);
    mosquitto_message_callback_set(s->mosq, sub_on_message);
    mosquitto_subscribe_callback_set(s->mosq, sub_on_subscribe);
    mosquitto_connect_callback_set(s->mosq, sub_on_connect);
    if (user)
        mosquitto_username_pw_set(s->mosq, user, password);
    cr_assert_eq(mosquitto_connect(s->mosq, "127.0.0.1", port, 30), MOSQ_ERR_SUCCESS,
                 "subscriber cannot connect to port %d", port);
    /* Queued now, sent right after the CONNECT by the loop thread. */
    cr_assert_eq(mosquitto_subscribe(s->mosq, NULL, filter, 1), MOSQ_ERR_SUCCESS);
    cr_assert_eq(mosquitto_loop_start(s->mosq), MOSQ_ERR_SUCCESS);
    cr_assert(harness_wait_for(sub_ready, s, 10000), "no SUBACK from port %d", port);
    cr_assert_eq(s->connect_rc, 0, "subscriber refused: %s",
                 mosquitto_connack_string(s->connect_rc));
    return s;
}

size_t mqtt_server_sub_count(struct mqtt_server_sub *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->n;
    pthread_mutex_unlock(&s->lock);
    return n;
}

struct wait_arg {
    struct mqtt_server_sub *s;
    size_t n;
};

static bool has_n(void *arg)
{
    struct wait_arg *w = arg;
    return mqtt_server_sub_count(w->s) >= w->n;
}

bool mqtt_server_sub_wait(struct mqtt_server_sub *s, size_t n, int timeout_ms)
{
    struct wait_arg w = {s, n};
    return harness_wait_for(has_n, &w, timeout_ms);
}

const char *mqtt_server_sub_topic(struct mqtt_server_sub *s, size_t i)
{
    pthread_mutex_lock(&s->lock);
    cr_assert_lt(i, s->n);
    const char *t = s->msgs[i].topic;
    pthread_mutex_unlock(&s->lock);
    return t;
}

const char *mqtt_server_sub_payload(struct mqtt_server_sub *s, size_t i, size_t *len)
{
    pthread_mutex_lock(&s->lock);
    cr_assert_lt(i, s->n);
    const char *p = s->msgs[i].payload;
    if (len)
        *len = s->msgs[i].len;
    pthread_mutex_unlock(&s->lock);
    return p;
}

void mqtt_server_sub_stop(struct mqtt_server_sub *s)
{
    if (s == NULL)
        return;
    mosquitto_disconnect(s->mosq);
    mosquitto_loop_stop(s->mosq, false);
    mosquitto_destroy(s->mosq);
    mosquitto_lib_cleanup();
    for (size_t i = 0; i < s->n; i++) {
        free(s->msgs[i].topic);
        free(s->msgs[i].payload);
    }
    free(s->msgs);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
