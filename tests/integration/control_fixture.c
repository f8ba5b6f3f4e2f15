/*
 * control_fixture.c - certificates, channels and threaded control calls
 * for the RelayControl tests (control_fixture.h).
 */
#include "control_fixture.h"

#include "http_client.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void fixture_sh(const struct relay_proc *relay, const char *cmd)
{
    char full[4096];
    snprintf(full, sizeof(full), "cd %s && (%s) >/dev/null 2>&1", relay->dir, cmd);
    cr_assert_eq(system(full), 0, "%s", full);
}

/* Every key: EC P-256, made in milliseconds where RSA 2048 took ~0.2 s
 * (a dozen per relay started, in every control test). */
#define KEY "ec -pkeyopt ec_paramgen_curve:P-256"

/* A client certificate `name` signed by CA `by` with subject CN and an
 * optional subjectAltName line. */
static void client_cert(const struct relay_proc *relay, const char *name, const char *by,
                        const char *cn, const char *san)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "openssl req -newkey " KEY " -nodes -keyout %s.key -out %s.csr -subj /CN=%s && "
             "printf 'extendedKeyUsage=clientAuth\\n%s%s\\n' > %s.ext && "
             "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial -out %s.pem "
             "-days 1 -extfile %s.ext",
             name, name, cn, san ? "subjectAltName=" : "", san ? san : "", name, name, by, by,
             name, name);
    fixture_sh(relay, cmd);
}

void fixture_pki(const struct relay_proc *relay)
{
    fixture_sh(relay, "openssl req -x509 -newkey " KEY " -nodes -keyout ca.key -out ca.pem "
                      "-days 1 -subj /CN=agents-ca");
    fixture_sh(relay,
               "openssl req -newkey " KEY " -nodes -keyout server.key -out server.csr "
               "-subj /CN=localhost && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > "
               "san.ext && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
               "-CAcreateserial -out server.pem -days 1 -extfile san.ext");
    fixture_sh(relay, "openssl req -x509 -newkey " KEY " -nodes -keyout cca.key -out cca.pem "
                      "-days 1 -subj /CN=control-ca");
    fixture_sh(relay, "openssl req -x509 -newkey " KEY " -nodes -keyout oca.key -out oca.pem "
                      "-days 1 -subj /CN=other-ca");
    client_cert(relay, "uri", "cca", "api-by-uri", "URI:spiffe://aero-arc/api");
    client_cert(relay, "dns", "cca", "api-by-dns", "DNS:api.aero.test");
    client_cert(relay, "cn", "cca", "aero-api", NULL);
    client_cert(relay, "denied", "cca", "intruder",
                "URI:spiffe://aero-arc/other,DNS:evil.aero.test");
    client_cert(relay, "foreign", "oca", "aero-api", "URI:spiffe://aero-arc/api");
    /* An API certificate from an intermediate of the control CA, sent with
     * its chain (chained.pem: the leaf, then the intermediate). */
    fixture_sh(relay, "openssl req -newkey " KEY " -nodes -keyout ccai.key -out ccai.csr "
                      "-subj /CN=control-intermediate && printf 'basicConstraints=critical,"
                      "CA:TRUE\\nkeyUsage=keyCertSign,cRLSign\\n' > ccai.ext && openssl x509 "
                      "-req -in ccai.csr -CA cca.pem -CAkey cca.key -CAcreateserial -out "
                      "ccai.pem -days 1 -extfile ccai.ext");
    client_cert(relay, "leaf", "ccai", "api-by-intermediate", "URI:spiffe://aero-arc/api");
    fixture_sh(relay, "cat leaf.pem ccai.pem > chained.pem && cp leaf.key chained.key");
    /* gRPC 1.51 hands the relay the peer's leaf only (no
     * x509_pem_cert_chain), so the control bundle carries the
     * intermediate, as docs/commands.md tells operators to do. */
    fixture_sh(relay, "cat cca.pem ccai.pem > cca-bundle.pem");
}

const char *fixture_bearer_keys(const struct relay_proc *relay, const char *token)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/keys.txt", relay->dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s *\n", token);
    fclose(f);
    cr_assert_eq(chmod(path, 0600), 0);
    return "[auth]\nmode = bearer\nkeys_file = %DIR%/keys.txt\n";
}

struct rc_channel *fixture_channel(const struct relay_proc *relay, const char *cert,
                                   const char *token)
{
    char ca[400], c[400], k[400];
    snprintf(ca, sizeof(ca), "%s/ca.pem", relay->dir);
    snprintf(c, sizeof(c), "%s/%s.pem", relay->dir, cert ? cert : "");
    snprintf(k, sizeof(k), "%s/%s.key", relay->dir, cert ? cert : "");
    struct rc_opts o = {.root_cert_file = ca, .client_cert_file = cert ? c : NULL,
                        .client_key_file = cert ? k : NULL, .server_name_override = "localhost",
                        .bearer_token = cert ? NULL : token};
    struct rc_status st;
    struct rc_channel *ch = rc_connect_opts(relay->target, &o, &st);
    cr_assert_not_null(ch, "%s", st.message);
    return ch;
}

struct rc_channel *fixture_slow_channel(const struct relay_proc *relay, const char *token,
                                        int window_bytes)
{
    char ca[400];
    snprintf(ca, sizeof(ca), "%s/ca.pem", relay->dir);
    struct rc_opts o = {.root_cert_file = ca, .server_name_override = "localhost",
                        .bearer_token = token, .recv_window_bytes = window_bytes};
    struct rc_status st;
    struct rc_channel *ch = rc_connect_opts(relay->target, &o, &st);
    cr_assert_not_null(ch, "%s", st.message);
    return ch;
}

void fixture_fill_window(struct rc_stream *s, const char *agent, const char *session)
{
    uint64_t seq = 0;
    int rc = 0;
    while (seq < 100000 && rc == 0) {
        struct rc_frame f = *harness_frame(agent, ++seq);
        f.session_id = session;
        rc = rc_stream_send_gen2_frame(s, &f, 500);
    }
    cr_assert_eq(rc, -ETIMEDOUT, "frame %llu: %d", (unsigned long long)seq, rc);
}

double fixture_metric(const struct relay_proc *relay, const char *series)
{
    struct http_reply r;
    cr_assert_eq(http_request(relay->http_port, "GET", "/metrics", 5000, &r), 0);
    double v = http_metric_value(r.body, series);
    http_reply_free(&r);
    return v < 0 ? 0 : v;
}

struct metric_wait {
    const struct relay_proc *relay;
    const char *series;
    double at_least;
};

static bool metric_reached(void *arg)
{
    const struct metric_wait *w = arg;
    return fixture_metric(w->relay, w->series) >= w->at_least;
}

bool fixture_metric_reaches(const struct relay_proc *relay, const char *series, double at_least,
                            int timeout_ms)
{
    struct metric_wait w = {relay, series, at_least};
    return harness_wait_for(metric_reached, &w, timeout_ms);
}

struct rc_stream *fixture_open_gen2(const struct relay_proc *relay, struct rc_channel *ch,
                                    const char *agent, const char *session)
{
    static const char opened[] = "aero_relay_streams_opened_total";
    double before = fixture_metric(relay, opened);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open_gen2(ch, agent, session, NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    cr_assert(fixture_metric_reaches(relay, opened, before + 1, 10000),
              "the relay never attached %s's stream", agent);
    return s;
}

void fixture_stop(struct relay_proc *relay, struct rc_channel **api, struct rc_channel **agents)
{
    if (*api)
        rc_close(*api);
    if (*agents)
        rc_close(*agents);
    *api = *agents = NULL;
    int status = relay_stop(relay, 20000);
    cr_expect_eq(status, 0, "relay exit status %d", status);
}

static void *call_main(void *arg)
{
    struct call *c = arg;
    if (rc_unary(c->ch, c->method, c->req, c->req_len, NULL, 0, &c->resp, &c->resp_len, &c->st,
                 c->timeout_ms) < 0 &&
        c->st.code == 0)
        c->st.code = -1;
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

struct call *call_start_raw(struct rc_channel *ch, const char *method, const uint8_t *req,
                            size_t len, int timeout_ms)
{
    struct call *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    c->ch = ch;
    c->method = method;
    c->timeout_ms = timeout_ms;
    c->req_len = len;
    c->req = malloc(len + 1);
    memcpy(c->req, req, len);
    cr_assert_eq(pthread_create(&c->thread, NULL, call_main, c), 0);
    return c;
}

struct call *call_start(struct rc_channel *ch, const char *method, const ProtobufCMessage *req,
                        int timeout_ms)
{
    size_t n = protobuf_c_message_get_packed_size(req);
    uint8_t *b = malloc(n + 1);
    protobuf_c_message_pack(req, b);
    struct call *c = call_start_raw(ch, method, b, n, timeout_ms);
    free(b);
    return c;
}

void call_join(struct call *c) { pthread_join(c->thread, NULL); }

void call_free(struct call *c)
{
    free(c->req);
    free(c->resp);
    free(c);
}

void expect_status(struct call *c, int code, const char *text)
{
    call_join(c);
    cr_assert_eq(c->st.code, code, "%s: got %s \"%s\", want %s", c->method,
                 rc_status_code_name(c->st.code), c->st.message, rc_status_code_name(code));
    if (text)
        cr_assert_str_eq(c->st.message, text);
    call_free(c);
}
