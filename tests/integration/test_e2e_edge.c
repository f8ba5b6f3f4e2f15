/*
 * test_e2e_edge.c - examples/edge/haproxy.cfg in front of the real relay:
 * HAProxy (Debian's 2.6) terminates TLS on a free loopback port and
 * forwards HTTP/2 to the relay on loopback, with the shipped file adapted
 * only in its addresses, ports and certificate path (and, when not root,
 * without the privilege drop). Agents of both generations stream through
 * it; then the attacks that gRPC 1.51 cannot survive in-process are run
 * through it, each while a probe agent streams straight to the relay, and
 * the relay's RSS (from /proc) and the probe's longest wait for an ack are
 * measured and printed (docs/security.md, "Behind an edge proxy", quotes
 * them).
 *
 * AERO_EDGE_DIRECT=1 aims the attacks at the relay itself instead of
 * HAProxy: those tests must then fail (that is how their bounds were
 * chosen). Waits are deadlines, never sleeps.
 */
#include "h2_raw.h"
#include "harness.h"
#include "steady_agent.h"

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

#define TELEMETRY_PATH "/aeroarc.agent.v1.AgentGateway/TelemetryStream"

static struct relay_proc relay;
static struct rc_channel *ch;
static struct steady_agent *probe;
static pid_t haproxy = -1;
static int edge_port;
static char edge_target[64], cert_path[300], haproxy_log[300];

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

static bool edge_accepts(void *arg)
{
    int status;
    if (waitpid(haproxy, &status, WNOHANG) == haproxy) {
        *(bool *)arg = true; /* exited: its log says why */
        haproxy = -1;
        return true;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)edge_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* A TLS channel to HAProxy (the certificate is its own CA). */
static struct rc_channel *edge_channel(int keepalive_ms)
{
    struct rc_opts o = {.root_cert_file = cert_path, .server_name_override = "localhost",
                        .keepalive_time_ms = keepalive_ms};
    struct rc_status st;
    struct rc_channel *c = rc_connect_opts(edge_target, &o, &st);
    cr_assert_not_null(c, "TLS channel to HAProxy: %s", st.message);
    return c;
}

/* Start HAProxy on examples/edge/haproxy.cfg; `more` holds further
 * (from, to) pairs, NULL-terminated (shorter timeouts for one test). */
static void start_edge(const char *const *more)
{
    char *cfg = harness_read_file(AERO_SOURCE_DIR "/examples/edge/haproxy.cfg", NULL);
    cr_assert_not_null(cfg);
    char bind[64];
    edge_port = harness_free_port();
    snprintf(bind, sizeof(bind), "bind 127.0.0.1:%d ", edge_port);
    snprintf(edge_target, sizeof(edge_target), "127.0.0.1:%d", edge_port);
    subst(&cfg, "bind :443 ", bind);
    subst(&cfg, "127.0.0.1:50051", relay.target);
    subst(&cfg, "/etc/haproxy/certs/relay.pem", cert_path);
    subst(&cfg, "log /dev/log local0", "log stderr format short local0");
    if (geteuid() != 0) { /* no privilege to drop */
        subst(&cfg, "    chroot /var/lib/haproxy\n", "");
        subst(&cfg, "    user haproxy\n", "");
        subst(&cfg, "    group haproxy\n", "");
    }
    for (size_t i = 0; more && more[i]; i += 2)
        subst(&cfg, more[i], more[i + 1]);
    char path[300];
    snprintf(path, sizeof(path), "%s/haproxy.cfg", relay.dir);
    snprintf(haproxy_log, sizeof(haproxy_log), "%s/haproxy.log", relay.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(cfg, f);
    fclose(f);
    free(cfg);

    haproxy = fork();
    cr_assert_geq(haproxy, 0);
    if (haproxy == 0) {
        FILE *log = freopen(haproxy_log, "w", stderr);
        (void)log;
        dup2(2, 1);
        execlp("haproxy", "haproxy", "-db", "-f", path, (char *)NULL);
        _exit(127);
    }
    bool exited = false;
    if (!harness_wait_for(edge_accepts, &exited, 10000) || exited) {
        char *log = harness_read_file(haproxy_log, NULL);
        cr_assert_fail("HAProxy %s:\n%s", exited ? "exited" : "did not listen within 10 s",
                       log ? log : "");
    }
    /* Through it to the relay: Health/Check over TLS + HTTP/2. */
    struct rc_channel *c = edge_channel(0);
    struct rc_status st;
    int serving = 0, rc = rc_health_check(c, "", &serving, &st, 5000);
    rc_close(c);
    cr_assert_eq(rc, 0, "Health/Check through HAProxy: %s", st.message);
    cr_assert_eq(serving, RC_HEALTH_SERVING);
}

static void stop_edge(void)
{
    if (haproxy <= 0)
        return;
    kill(haproxy, SIGTERM);
    int64_t deadline = harness_now_ms() + 5000;
    int status;
    while (waitpid(haproxy, &status, WNOHANG) == 0) {
        if (harness_now_ms() > deadline) {
            kill(haproxy, SIGKILL);
            waitpid(haproxy, &status, 0);
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000}; /* reaping, not synchronisation */
        nanosleep(&ts, NULL);
    }
    haproxy = -1;
}

/* The relay (sink-file, [http] for metrics), a certificate for HAProxy
 * ("localhost", EC P-256), HAProxy; and a probe agent streaming straight
 * to the relay unless no_probe. */
static void start(const char *const *more, bool with_probe)
{
    signal(SIGPIPE, SIG_IGN); /* OpenSSL writes with write(2): a reset peer is EPIPE */
    harness_prepare(&relay);
    rss_measurable(&relay);
    relay.http = true;
    ch = harness_start(&relay, "", "[sink:archive]\nplugin = sink-file\npath = %DIR%/data\n");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout edge.key -out edge.crt -days 2 -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost >/dev/null 2>&1 && cat edge.crt edge.key > "
             "edge.pem",
             relay.dir);
    cr_assert_eq(system(cmd), 0, "openssl could not make a certificate");
    snprintf(cert_path, sizeof(cert_path), "%s/edge.pem", relay.dir);
    start_edge(more);
    if (with_probe)
        probe = steady_agent_start(relay.target, "drone-probe");
}

static void stop(void)
{
    if (probe)
        steady_agent_stop(probe);
    probe = NULL;
    stop_edge();
    harness_finish(&relay, &ch);
}

TestSuite(edge, .fini = stop, .timeout = 60);

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

/* An HTTP/2 connection to port: over TLS (ALPN h2, the certificate not
 * checked: this is the attacker) to HAProxy, or plain to the relay. NULL
 * when the TCP connect or the handshake is refused (HAProxy rejecting the
 * source). */
static struct h2_raw *attacker_connect(int port, bool tls)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_geq(fd, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return NULL;
    }
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

/* Where the attacks go: HAProxy, or with AERO_EDGE_DIRECT=1 the relay. */
static bool direct(void)
{
    const char *d = getenv("AERO_EDGE_DIRECT");
    return d && *d == '1';
}

static struct h2_raw *attack_connect(void)
{
    return direct() ? attacker_connect(relay.port, false) : attacker_connect(edge_port, true);
}

static const char *where(void) { return direct() ? "direct" : "through HAProxy"; }

/* Lines of HAProxy's log with both a and b (its request log: one line per
 * call, " relay/relay " when it went to the relay). */
static int haproxy_log_count(const char *a, const char *b)
{
    char *log = harness_read_file(haproxy_log, NULL);
    int n = 0;
    for (char *line = log ? strtok(log, "\n") : NULL; line; line = strtok(NULL, "\n"))
        n += strstr(line, a) && strstr(line, b);
    free(log);
    return n;
}

/* The relay's RSS now and the largest seen, sampled by the caller. */
struct rss {
    long before, peak;
};

static void rss_sample(struct rss *r)
{
    long kb = proc_rss_kb(relay.pid);
    if (kb > r->peak)
        r->peak = kb;
}

/* ---- (a) agents of both generations through HAProxy --------------------- */

/* n generation-2 frames from seq first, each acked OK in order. */
static void g2_stream_frames(struct rc_stream *s, const char *agent, const char *session,
                             uint64_t first, int n)
{
    for (int i = 0; i < n; i++) {
        const struct rc_frame *f = harness_g2_frame(agent, session, first + (uint64_t)i);
        cr_assert_eq(rc_stream_send_gen2_frame(s, f, 5000), 0);
    }
    for (int i = 0; i < n; i++) {
        struct rc_relay_msg m;
        int rc = rc_stream_recv_gen2(s, &m, 10000);
        cr_assert_eq(rc, 1, "generation-2 ack %d of %d: rc %d", i + 1, n, rc);
        cr_assert_eq(m.arm, RC_RELAY_TELEMETRY_ACK);
        cr_assert_eq(m.ack.seq, first + (uint64_t)i);
        cr_assert_eq(m.ack.status, RC_ACK_OK, "seq %llu: %s", (unsigned long long)m.ack.seq,
                     m.ack.error);
    }
}

static void g1_stream_frames(struct rc_stream *s, const char *agent, uint64_t first, int n)
{
    size_t counts[4] = {0};
    char err[256] = "";
    harness_stream_frames(s, agent, first, (size_t)n, counts, err, sizeof(err));
    cr_assert_eq(counts[RC_ACK_OK], (size_t)n, "%zu of %d acked OK: %s", counts[RC_ACK_OK], n,
                 err);
}

struct closed_wait {
    struct h2_raw *h;
};

static bool raw_closed(void *arg)
{
    struct closed_wait *w = arg;
    h2_raw_pump(w->h, 20);
    return h2_raw_closed(w->h);
}

/* Every short timeout of the shipped file shrunk to 1 s (the long stream
 * timeouts, 24 h, are left as shipped), so that a quiet period of 2.5 s
 * outlasts all of them and the test stays short. */
static const char *const short_timeouts[] = {
    "timeout connect 5s", "timeout connect 1s",
    "timeout http-request 5s", "timeout http-request 1s",
    "timeout http-keep-alive 30s", "timeout http-keep-alive 1s",
    "timeout client-fin 30s", "timeout client-fin 1s",
    "timeout server-fin 30s", "timeout server-fin 1s",
    NULL};
#define QUIET_MS 2500

Test(edge, agents_of_both_generations_stream_through_haproxy_and_survive_quiet_periods)
{
    start(short_timeouts, false);
    /* Agents ping every second while quiet, as a mobile agent would. */
    struct rc_channel *c1 = edge_channel(1000), *c2 = edge_channel(1000);
    struct rc_status st;
    harness_register(c1, "drone-g1", NULL, 0);
    struct rc_stream *s1 = rc_stream_open(c1, "drone-g1", NULL, 0, &st);
    cr_assert_not_null(s1, "%s", st.message);
    char session[64];
    harness_register(c2, "drone-g2", session, sizeof(session));
    struct rc_stream *s2 = rc_stream_open_gen2(c2, "drone-g2", session, NULL, 0, &st);
    cr_assert_not_null(s2, "%s", st.message);
    g1_stream_frames(s1, "drone-g1", 1, 200);
    g2_stream_frames(s2, "drone-g2", session, 1, 200);

    /* A slowloris client meanwhile: a header block begun and never
     * finished. timeout http-request (1 s here) must close it while the
     * quiet streams stay up. */
    struct h2_raw *slow = attacker_connect(edge_port, true);
    cr_assert_not_null(slow);
    h2_raw_continuation_flood(slow, 1, TELEMETRY_PATH, 0); /* HEADERS only */
    int64_t t0 = harness_now_ms();
    struct closed_wait w = {slow};
    cr_assert(harness_wait_for(raw_closed, &w, QUIET_MS), "a slowloris header stayed open %d ms",
              QUIET_MS);
    int64_t slow_ms = harness_now_ms() - t0;
    h2_raw_close(slow);
    cr_assert_geq(slow_ms, 900, "the unfinished header block was closed after %lld ms, before "
                  "timeout http-request (1 s): for another reason", (long long)slow_ms);
    /* The rest of the quiet period: nothing on either stream. Its length
     * is what is tested here, not a wait for something to happen. */
    int64_t left = t0 + QUIET_MS - harness_now_ms();
    if (left > 0) {
        struct timespec ts = {left / 1000, (left % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    g1_stream_frames(s1, "drone-g1", 201, 200);
    g2_stream_frames(s2, "drone-g2", session, 201, 200);

    struct rc_status fin;
    cr_assert_eq(rc_stream_close_send(s1, 5000), 0);
    cr_assert_eq(rc_stream_finish(s1, &fin, 5000), 0);
    cr_assert_eq(fin.code, 0, "generation-1 stream ended %s %s", rc_status_code_name(fin.code),
                 fin.message);
    cr_assert_eq(rc_stream_close_send(s2, 5000), 0);
    cr_assert_eq(rc_stream_finish(s2, &fin, 5000), 0);
    cr_assert_eq(fin.code, 0, "generation-2 stream ended %s %s", rc_status_code_name(fin.code),
                 fin.message);
    rc_stream_free(s1);
    rc_stream_free(s2);
    rc_close(c1);
    rc_close(c2);
    printf("edge: both generations through HAProxy, 400 frames each acked OK across a %d ms "
           "quiet period; a slowloris header block closed after %lld ms\n",
           QUIET_MS, (long long)slow_ms);
}

/* ---- (b) one huge header value over CONTINUATION ------------------------ */

#if defined(__SANITIZE_ADDRESS__)
#define RSS_SLACK_KB (64 * 1024)
#else
#define RSS_SLACK_KB (20 * 1024)
#endif
/* The probe's longest wait for an ack while an attack runs. Quiet, it is a
 * few ms; the direct huge-header attack stalls it for seconds. */
#define PROBE_GAP_MS 400

/* 19 MB of one header value: straight to the relay, gRPC 1.51's HPACK
 * parser works on it for ~10 s with every agent's acks stalled. HAProxy
 * refuses the header block once it outgrows one buffer (tune.bufsize). */
Test(edge, huge_header_over_continuation_is_refused_by_haproxy)
{
    start(NULL, true);
    struct rss rss = {proc_rss_kb(relay.pid), 0};
    rss.peak = rss.before;
    steady_agent_expect_progress(probe, 50, 5000);
    steady_agent_max_gap_us(probe, true);
    struct h2_raw *h = attack_connect();
    cr_assert_not_null(h);
    int64_t t0 = harness_now_ms();
    size_t sent = h2_raw_huge_header(h, 1, TELEMETRY_PATH, 19u << 20);
    struct closed_wait w = {h};
    bool closed = harness_wait_for(raw_closed, &w, 3000);
    int64_t took = harness_now_ms() - t0;
    h2_raw_close(h);
    /* The probe keeps being served through and after it. */
    steady_agent_expect_progress(probe, 50, 5000);
    rss_sample(&rss);
    long long gap_ms = steady_agent_max_gap_us(probe, false) / 1000;
    printf("edge: huge header %s: %zu of %u value bytes taken, connection %s after %lld ms; "
           "relay RSS %ld -> %ld KiB; probe's longest ack wait %lld ms\n",
           where(), sent, 19u << 20, closed ? "closed" : "still open", (long long)took,
           rss.before, rss.peak, gap_ms);
    cr_assert(closed, "the connection carrying a 19 MB header is still open");
    cr_assert_lt(gap_ms, PROBE_GAP_MS, "the probe waited %lld ms for an ack", gap_ms);
    cr_assert_lt(rss.peak - rss.before, RSS_SLACK_KB, "relay RSS grew %ld KiB",
                 rss.peak - rss.before);
}

/* ---- (d) CONTINUATION frames without END_HEADERS ------------------------ */

/* 32 MB of one header value over CONTINUATION frames, never END_HEADERS:
 * straight to the relay, its RSS grows with the bytes sent; HAProxy
 * refuses the block once it outgrows one buffer. */
Test(edge, continuation_flood_is_refused_by_haproxy)
{
    start(NULL, true);
    struct rss rss = {proc_rss_kb(relay.pid), 0};
    rss.peak = rss.before;
    steady_agent_max_gap_us(probe, true);
    struct h2_raw *h = attack_connect();
    cr_assert_not_null(h);
    int64_t t0 = harness_now_ms();
    size_t want = 32u << 20, sent = h2_raw_continuation_flood(h, 1, TELEMETRY_PATH, want);
    struct closed_wait w = {h};
    bool closed = harness_wait_for(raw_closed, &w, 3000);
    int64_t took = harness_now_ms() - t0;
    h2_raw_close(h);
    steady_agent_expect_progress(probe, 50, 5000);
    rss_sample(&rss);
    long long gap_ms = steady_agent_max_gap_us(probe, false) / 1000;
    printf("edge: CONTINUATION flood %s: %zu of %zu bytes taken, connection %s after %lld ms; "
           "relay RSS %ld -> %ld KiB; probe's longest ack wait %lld ms\n",
           where(), sent, want, closed ? "closed" : "still open", (long long)took, rss.before,
           rss.peak, gap_ms);
    cr_assert(closed, "the connection is still open after %zu bytes of CONTINUATION", sent);
    cr_assert_lt(sent, want, "all %zu bytes of CONTINUATION were taken", want);
    cr_assert_lt(gap_ms, PROBE_GAP_MS, "the probe waited %lld ms for an ack", gap_ms);
    cr_assert_lt(rss.peak - rss.before, RSS_SLACK_KB, "relay RSS grew %ld KiB",
                 rss.peak - rss.before);
}

/* ---- (c) rapid reset over many short connections ------------------------ */

#if defined(__SANITIZE_ADDRESS__)
#define RR_CONNECTIONS 10
#define RR_STREAMS 1000
#define RR_GROWTH_KB (50 * 1024)
#else
#define RR_CONNECTIONS 6
#define RR_STREAMS 10000
#define RR_GROWTH_KB (50 * 1024)
#endif

/* Each connection: HEADERS + RST_STREAM RR_STREAMS times, then closed by
 * the attacker itself before the relay's guard can see its calls. Straight
 * to the relay, RSS grows by hundreds of MB; through HAProxy the source
 * is cut off after 200 calls in 10 s and hardly any reach the relay. */
Test(edge, rapid_reset_over_short_connections_keeps_relay_memory_bounded)
{
    start(NULL, true);
    struct rss rss = {proc_rss_kb(relay.pid), 0};
    rss.peak = rss.before;
    steady_agent_max_gap_us(probe, true);
    int refused = 0, streams = 0;
    int64_t t0 = harness_now_ms();
    for (int i = 0; i < RR_CONNECTIONS; i++) {
        struct h2_raw *h = attack_connect();
        if (!h) {
            refused++;
            continue;
        }
        streams += h2_raw_rapid_reset(h, 1, RR_STREAMS, TELEMETRY_PATH);
        /* Read what came back before closing, so the close is a FIN and
         * the peer reads every frame sent (a close with unread data would
         * be a TCP reset, and the kernel would drop them). */
        h2_raw_pump(h, 50);
        h2_raw_close(h);
        rss_sample(&rss);
    }
    int64_t took = harness_now_ms() - t0;
    /* What the relay still has to work through after the attacker left:
     * sample its RSS until the probe has had 100 more acks. */
    steady_agent_expect_progress(probe, 100, 10000);
    rss_sample(&rss);
    long long gap_ms = steady_agent_max_gap_us(probe, false) / 1000;
    printf("edge: rapid reset %s: %d connections (%d refused at connect), %d streams written "
           "in %lld ms; calls HAProxy passed to the relay: %d; relay RSS %ld -> %ld KiB; probe's "
           "longest ack wait %lld ms\n",
           where(), RR_CONNECTIONS, refused, streams, (long long)took,
           direct() ? -1 : haproxy_log_count(" relay/relay ", "TelemetryStream"), rss.before,
           rss.peak, gap_ms);
    cr_assert_lt(rss.peak - rss.before, RR_GROWTH_KB, "relay RSS grew %ld KiB",
                 rss.peak - rss.before);
    cr_assert_lt(gap_ms, PROBE_GAP_MS, "the probe waited %lld ms for an ack", gap_ms);
}

/* ---- (e) streams opened before ACKing SETTINGS, one connection ---------- */

#if defined(__SANITIZE_ADDRESS__)
#define FLOOD_STREAMS 6000
#else
#define FLOOD_STREAMS 50000
#endif

/* One connection never ACKs the server's SETTINGS and opens FLOOD_STREAMS
 * streams (HEADERS only). Straight to the relay, gRPC 1.51 takes every one
 * (826 MB peak for 50,000) until the call-flood guard closes the
 * connection; through HAProxy the per-source request rate cuts it off
 * after 200 calls (measured: 199 reached the relay). The relay's
 * peak RSS (VmHWM) is compared before and after. */
Test(edge, stream_flood_before_acking_settings_is_cut_by_haproxy)
{
    start(NULL, true);
    long hwm_before = proc_peak_rss_kb(relay.pid);
    steady_agent_expect_progress(probe, 50, 5000);
    steady_agent_max_gap_us(probe, true);
    struct h2_raw *h = attack_connect();
    cr_assert_not_null(h);
    int64_t t0 = harness_now_ms();
    int sent = h2_raw_stream_flood(h, 1, FLOOD_STREAMS, TELEMETRY_PATH);
    struct closed_wait w = {h};
    bool closed = harness_wait_for(raw_closed, &w, 3000);
    int64_t took = harness_now_ms() - t0;
    h2_raw_close(h);
    steady_agent_expect_progress(probe, 50, 5000);
    long hwm_after = proc_peak_rss_kb(relay.pid);
    long long gap_ms = steady_agent_max_gap_us(probe, false) / 1000;
    printf("edge: stream flood before the SETTINGS ACK %s: %d of %d streams written, "
           "connection %s after %lld ms; calls HAProxy passed to the relay: %d; relay peak RSS "
           "%ld -> %ld KiB; probe's longest ack wait %lld ms\n",
           where(), sent, FLOOD_STREAMS, closed ? "closed" : "still open", (long long)took,
           direct() ? -1 : haproxy_log_count(" relay/relay ", "TelemetryStream"), hwm_before,
           hwm_after, gap_ms);
    /* Closed once the source passed 200 calls in 10 s; fewer streams (the
     * ASan build's 6,000: 53 calls passed) leave it open but stopped. */
    if (!direct())
        cr_assert(closed || haproxy_log_count(" relay/relay ", "TelemetryStream") <= 200,
                  "the flooding connection is still open after %lld ms", (long long)took);
    cr_assert_lt(hwm_after - hwm_before, RSS_SLACK_KB, "relay peak RSS grew %ld KiB",
                 hwm_after - hwm_before);
    cr_assert_lt(gap_ms, PROBE_GAP_MS, "the probe waited %lld ms for an ack", gap_ms);
}
