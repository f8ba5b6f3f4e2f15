/*
 * edge_proxy.c - see edge_proxy.h. Moved out of test_e2e_edge.c so that
 * the attack soak runs HAProxy exactly as the edge tests do.
 */
#include "edge_proxy.h"

#include "h2_raw.h"
#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- HAProxy with the shipped configuration ----------------------------- */

/* Replace every occurrence of from in *cfg by to; fail if there is none. */
static void subst(char **cfg, const char *from, const char *to)
{
    cr_assert_not_null(strstr(*cfg, from), "examples/edge/haproxy.cfg no longer has \"%s\"", from);
    size_t fl = strlen(from), tl = strlen(to);
    char *at;
    while ((at = strstr(*cfg, from))) {
        size_t head = (size_t)(at - *cfg), len = strlen(*cfg);
        char *out = malloc(len - fl + tl + 1);
        cr_assert_not_null(out);
        memcpy(out, *cfg, head);
        memcpy(out + head, to, tl);
        memcpy(out + head + tl, at + fl, len - head - fl + 1);
        free(*cfg);
        *cfg = out;
        if (strstr(to, from)) /* "to" contains "from": one pass only */
            break;
    }
}

struct edge_wait {
    struct edge_proxy *e;
    bool exited;
};

static bool edge_accepts(void *arg)
{
    struct edge_wait *w = arg;
    int status;
    if (waitpid(w->e->pid, &status, WNOHANG) == w->e->pid) {
        w->exited = true; /* its log says why */
        w->e->pid = -1;
        return true;
    }
    int fd = edge_tcp_connect(w->e->port, NULL);
    if (fd >= 0)
        close(fd);
    return fd >= 0;
}

static void make_cert(struct edge_proxy *e, const char *dir)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout edge.key -out edge.crt -days 2 -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost >/dev/null 2>&1 && cat edge.crt edge.key > "
             "edge.pem",
             dir);
    cr_assert_eq(system(cmd), 0, "openssl could not make a certificate");
    snprintf(e->cert_path, sizeof(e->cert_path), "%s/edge.pem", dir);
}

/* The shipped file with only what must differ here rewritten, written to
 * path. */
static void write_cfg(struct edge_proxy *e, const char *path, const char *relay_target,
                      const char *const *more)
{
    char *cfg = harness_read_file(AERO_SOURCE_DIR "/examples/edge/haproxy.cfg", NULL);
    cr_assert_not_null(cfg);
    char bind[64];
    snprintf(bind, sizeof(bind), "bind 127.0.0.1:%d ", e->port);
    subst(&cfg, "bind :443 ", bind);
    subst(&cfg, "127.0.0.1:50051", relay_target);
    subst(&cfg, "/etc/haproxy/certs/relay.pem", e->cert_path);
    subst(&cfg, "log /dev/log local0", "log stderr format short local0");
    if (geteuid() != 0) { /* no privilege to drop */
        subst(&cfg, "    chroot /var/lib/haproxy\n", "");
        subst(&cfg, "    user haproxy\n", "");
        subst(&cfg, "    group haproxy\n", "");
    }
    for (size_t i = 0; more && more[i]; i += 2)
        subst(&cfg, more[i], more[i + 1]);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(cfg, f);
    fclose(f);
    free(cfg);
}

void edge_start(struct edge_proxy *e, const char *dir, const char *relay_target,
                const char *const *more)
{
    e->pid = -1;
    e->port = harness_free_port();
    snprintf(e->target, sizeof(e->target), "127.0.0.1:%d", e->port);
    snprintf(e->log_path, sizeof(e->log_path), "%s/haproxy.log", dir);
    make_cert(e, dir);
    char path[300];
    snprintf(path, sizeof(path), "%s/haproxy.cfg", dir);
    write_cfg(e, path, relay_target, more);

    e->pid = fork();
    cr_assert_geq(e->pid, 0);
    if (e->pid == 0) {
        FILE *log = freopen(e->log_path, "w", stderr);
        (void)log;
        dup2(2, 1);
        execlp("haproxy", "haproxy", "-db", "-f", path, (char *)NULL);
        _exit(127);
    }
    struct edge_wait w = {e, false};
    if (!harness_wait_for(edge_accepts, &w, 10000) || w.exited) {
        char *log = harness_read_file(e->log_path, NULL);
        cr_assert_fail("HAProxy %s:\n%s", w.exited ? "exited" : "did not listen within 10 s",
                       log ? log : "");
    }
    /* Through it to the relay: Health/Check over TLS + HTTP/2. */
    struct rc_channel *c = edge_channel(e, 0);
    struct rc_status st;
    int serving = 0, rc = rc_health_check(c, "", &serving, &st, 5000);
    rc_close(c);
    cr_assert_eq(rc, 0, "Health/Check through HAProxy: %s", st.message);
    cr_assert_eq(serving, RC_HEALTH_SERVING);
}

void edge_stop(struct edge_proxy *e)
{
    if (e->pid <= 0)
        return;
    kill(e->pid, SIGTERM);
    int64_t deadline = harness_now_ms() + 5000;
    int status;
    while (waitpid(e->pid, &status, WNOHANG) == 0) {
        if (harness_now_ms() > deadline) {
            kill(e->pid, SIGKILL);
            waitpid(e->pid, &status, 0);
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000}; /* reaping, not synchronisation */
        nanosleep(&ts, NULL);
    }
    e->pid = -1;
}

struct rc_opts edge_agent_opts(const struct edge_proxy *e, int keepalive_ms)
{
    return (struct rc_opts){.root_cert_file = e->cert_path, .server_name_override = "localhost",
                            .keepalive_time_ms = keepalive_ms};
}

struct rc_channel *edge_channel(const struct edge_proxy *e, int keepalive_ms)
{
    struct rc_opts o = edge_agent_opts(e, keepalive_ms);
    struct rc_status st;
    struct rc_channel *c = rc_connect_opts(e->target, &o, &st);
    cr_assert_not_null(c, "TLS channel to HAProxy: %s", st.message);
    return c;
}

int edge_log_count(const struct edge_proxy *e, const char *a, const char *b)
{
    char *log = harness_read_file(e->log_path, NULL);
    int n = 0;
    for (char *line = log ? strtok(log, "\n") : NULL; line; line = strtok(NULL, "\n"))
        n += strstr(line, a) && strstr(line, b);
    free(log);
    return n;
}

/* ---- a rude HTTP/2 client over TLS (h2_raw through OpenSSL) ------------- */

struct tls_conn {
    SSL_CTX *ctx;
    SSL *ssl;
};

static ssize_t tls_send(void *c, const void *p, size_t n)
{
    struct tls_conn *t = c;
    ERR_clear_error();
    int r = SSL_write(t->ssl, p, n > 1 << 30 ? 1 << 30 : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(t->ssl, r);
    errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EPIPE;
    return -1;
}

static ssize_t tls_recv(void *c, void *p, size_t n)
{
    struct tls_conn *t = c;
    ERR_clear_error();
    int r = SSL_read(t->ssl, p, n > 1 << 30 ? 1 << 30 : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
        return 0;
    errno = ECONNRESET;
    return -1;
}

static size_t tls_pending(void *c) { return (size_t)SSL_pending(((struct tls_conn *)c)->ssl); }

static void tls_close(void *c)
{
    struct tls_conn *t = c;
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    free(t);
}

int edge_tcp_connect(int port, const char *source)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    if (source) {
        struct sockaddr_in s = {.sin_family = AF_INET};
        cr_assert_eq(inet_pton(AF_INET, source, &s.sin_addr), 1, "source address %s", source);
        cr_assert_eq(bind(fd, (struct sockaddr *)&s, sizeof(s)), 0, "bind to %s: %s", source,
                     strerror(errno));
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

struct h2_raw *edge_h2_connect(int port, bool tls, const char *source)
{
    int fd = edge_tcp_connect(port, source);
    if (fd < 0)
        return NULL;
    if (!tls)
        return h2_raw_connect_io(fd, 65535, NULL);
    struct timeval tv = {5, 0}; /* the handshake is blocking: bound it */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct tls_conn *t = calloc(1, sizeof(*t));
    cr_assert_not_null(t);
    t->ctx = SSL_CTX_new(TLS_client_method());
    cr_assert_not_null(t->ctx);
    static const unsigned char alpn[] = "\x02h2";
    SSL_CTX_set_alpn_protos(t->ctx, alpn, sizeof(alpn) - 1);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    t->ssl = SSL_new(t->ctx);
    SSL_set_fd(t->ssl, fd);
    SSL_set_tlsext_host_name(t->ssl, "localhost");
    if (SSL_connect(t->ssl) != 1) {
        tls_close(t);
        close(fd);
        return NULL;
    }
    struct h2_raw_io io = {tls_send, tls_recv, tls_pending, tls_close, t};
    return h2_raw_connect_io(fd, 65535, &io);
}
