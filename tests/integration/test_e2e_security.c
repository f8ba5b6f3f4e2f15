/*
 * test_e2e_security.c - TLS on the gRPC port (server auth and client
 * certificates, with certificates the test makes with openssl) and bearer
 * keys, through the real relay and a real client. Keys must never reach
 * the log.
 */
#include "harness.h"
#include "http_client.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct relay_proc relay;

static void stop(void)
{
    int status = relay_stop(&relay, 20000);
    cr_expect_eq(status, 0, "relay exit status %d", status);
}

TestSuite(security, .fini = stop, .timeout = 120);

static void sh(const char *fmt, const char *dir)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), fmt, dir, dir, dir, dir, dir, dir, dir, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* A CA, a server certificate for localhost/127.0.0.1 and a client one. */
static void make_certs(const char *dir)
{
    sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem "
       "-days 1 -subj /CN=aeroarc-test-ca >/dev/null 2>&1",
       dir);
    sh("cd %s && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr "
       "-subj /CN=localhost >/dev/null 2>&1 && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' "
       "> san.ext && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
       "-out server.pem -days 1 -extfile san.ext >/dev/null 2>&1",
       dir);
    sh("cd %s && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr "
       "-subj /CN=drone-client >/dev/null 2>&1 && openssl x509 -req -in client.csr -CA ca.pem "
       "-CAkey ca.key -CAcreateserial -out client.pem -days 1 >/dev/null 2>&1",
       dir);
}

static struct rc_channel *tls_channel(const char *ca, const char *cert, const char *key)
{
    struct rc_opts o = {.root_cert_file = ca, .client_cert_file = cert, .client_key_file = key,
                        .server_name_override = "localhost"};
    struct rc_status st;
    struct rc_channel *ch = rc_connect_opts(relay.target, &o, &st);
    cr_assert_not_null(ch, "%s", st.message);
    return ch;
}

static int try_register(struct rc_channel *ch, const char *agent, struct rc_status *st)
{
    return rc_register(ch, agent, "1", "x", NULL, st, 5000);
}

/* One frame through a stream on ch; returns the stream's final status code. */
static int stream_one(struct rc_channel *ch, const char *agent)
{
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, agent, NULL, 0, &st);
    cr_assert_not_null(s);
    if (rc_stream_send_frame(s, harness_frame(agent, 1), 5000) == 0) {
        struct rc_ack ack;
        if (rc_stream_recv_ack(s, &ack, 5000) == 1)
            cr_assert_eq(ack.status, RC_ACK_OK);
        rc_stream_close_send(s, 5000);
    }
    rc_stream_finish(s, &st, 10000);
    rc_stream_free(s);
    return st.code;
}

Test(security, tls_serves_tls_clients_and_refuses_plaintext)
{
    harness_prepare(&relay);
    make_certs(relay.dir);
    harness_write_config(&relay, NULL,
                         "[tls]\ncert_file = %DIR%/server.pem\nkey_file = %DIR%/server.key\n");
    char ca[400];
    snprintf(ca, sizeof(ca), "%s/ca.pem", relay.dir);
    relay.tls_ca = ca;
    relay_start(&relay);

    struct rc_channel *ch = tls_channel(ca, NULL, NULL);
    struct rc_status st;
    cr_assert_eq(try_register(ch, "drone-tls", &st), 0, "%s", st.message);
    cr_assert_eq(stream_one(ch, "drone-tls"), 0);
    rc_close(ch);

    struct rc_channel *plain = rc_connect(relay.target);
    cr_assert_eq(try_register(plain, "drone-tls", &st), -EIO);
    cr_assert_eq(st.code, 14, "plaintext against TLS: %s", rc_status_code_name(st.code));
    rc_close(plain);
}

/* A TCP client that speaks HTTP/1.1 to the TLS port: its handshake fails.
 * Waits (2 s at most) for the relay to close the connection. */
static void failed_handshake(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)(sizeof(req) - 1));
    char buf[256];
    int64_t until = harness_now_ms() + 2000;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (harness_now_ms() < until && poll(&p, 1, 100) >= 0)
        if ((p.revents & (POLLIN | POLLHUP)) && read(fd, buf, sizeof(buf)) <= 0)
            break;
    close(fd);
}

/* Issue 18: gRPC's own log lines go through the relay's logger (JSON like
 * every other line, component "grpc"), at most 20 a second: with gRPC at
 * its most talkative (GRPC_VERBOSITY=DEBUG: dozens of lines in its first
 * millisecond) and 50 failed TLS handshakes, stderr holds nothing raw and
 * no second holds more than 20 gRPC lines plus the one counting the rest. */
Test(security, grpc_lines_are_the_relays_json_and_at_most_20_a_second)
{
    harness_prepare(&relay);
    make_certs(relay.dir);
    relay.log_keys = "level = debug\nformat = json";
    harness_setenv(&relay, "GRPC_VERBOSITY", "DEBUG");
    harness_write_config(&relay, NULL,
                         "[tls]\ncert_file = %DIR%/server.pem\nkey_file = %DIR%/server.key\n");
    char ca[400];
    snprintf(ca, sizeof(ca), "%s/ca.pem", relay.dir);
    relay.tls_ca = ca; /* how relay_start sees it serve */
    relay_start(&relay);
    for (int i = 0; i < 50; i++)
        failed_handshake(relay.port);
    struct rc_channel *none = NULL;
    harness_finish(&relay, &none);

    char *log = harness_read_file(relay.stderr_path, NULL);
    cr_assert_not_null(log);
    char second[20] = "";
    int in_second = 0, grpc_lines = 0, most = 0;
    for (char *line = log, *eol; *line; line = eol + 1) {
        eol = strchr(line, '\n');
        cr_assert_not_null(eol, "a line without its newline");
        *eol = '\0';
        cr_assert(line[0] == '{' && eol[-1] == '}', "not the relay's JSON: %s", line);
        if (!strstr(line, "\"component\":\"grpc\""))
            continue;
        grpc_lines++;
        const char *ts = strstr(line, "\"ts\":\"");
        cr_assert_not_null(ts, "%s", line);
        if (strncmp(second, ts + 6, 19) != 0) { /* YYYY-MM-DDTHH:MM:SS */
            snprintf(second, sizeof(second), "%.19s", ts + 6);
            in_second = 0;
        }
        if (++in_second > most)
            most = in_second;
    }
    free(log);
    cr_assert_gt(grpc_lines, 0, "no gRPC line reached the relay's log");
    cr_assert_leq(most, 21, "%d gRPC lines in one second", most);
}

Test(security, client_certificates_are_required_when_client_ca_file_is_set)
{
    harness_prepare(&relay);
    make_certs(relay.dir);
    harness_write_config(&relay, NULL,
                         "[tls]\ncert_file = %DIR%/server.pem\nkey_file = %DIR%/server.key\n"
                         "client_ca_file = %DIR%/ca.pem\n");
    char ca[400], cert[400], key[400];
    snprintf(ca, sizeof(ca), "%s/ca.pem", relay.dir);
    snprintf(cert, sizeof(cert), "%s/client.pem", relay.dir);
    snprintf(key, sizeof(key), "%s/client.key", relay.dir);
    relay.tls_ca = ca;
    relay.tls_cert = cert;
    relay.tls_key = key;
    relay_start(&relay);

    struct rc_status st;
    struct rc_channel *no_cert = tls_channel(ca, NULL, NULL);
    cr_assert_eq(try_register(no_cert, "drone-mtls", &st), -EIO);
    cr_assert_eq(st.code, 14, "no client certificate: %s", rc_status_code_name(st.code));
    rc_close(no_cert);

    struct rc_channel *with_cert = tls_channel(ca, cert, key);
    cr_assert_eq(try_register(with_cert, "drone-mtls", &st), 0, "%s", st.message);
    cr_assert_eq(stream_one(with_cert, "drone-mtls"), 0);
    rc_close(with_cert);
}

#define FLEET_KEY "fleet-key-0123456789abcdef"
#define ADMIN_KEY "admin-key-0123456789abcdef"

static void start_with_keys(void)
{
    harness_prepare(&relay);
    char path[400];
    snprintf(path, sizeof(path), "%s/keys.txt", relay.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("# test keys\n" FLEET_KEY " drone-*\n" ADMIN_KEY " - admin\n", f);
    fclose(f);
    cr_assert_eq(chmod(path, 0600), 0);
    relay.http = true; /* aero_relay_auth_failures_total */
    harness_write_config(&relay, NULL, "[auth]\nmode = bearer\nkeys_file = %DIR%/keys.txt\n");
    relay_start(&relay);
}

/* One series of the relay's /metrics; -1 when absent. */
static double metric(const char *series)
{
    struct http_reply r;
    cr_assert_eq(http_request(relay.http_port, "GET", "/metrics", 5000, &r), 0);
    double v = http_metric_value(r.body, series);
    http_reply_free(&r);
    return v;
}

static struct rc_channel *with_token(const char *token)
{
    struct rc_opts o = {.bearer_token = token};
    struct rc_status st;
    struct rc_channel *ch = rc_connect_opts(relay.target, &o, &st);
    cr_assert_not_null(ch, "%s", st.message);
    return ch;
}

Test(security, bearer_keys_guard_agent_calls)
{
    start_with_keys();
    struct rc_status st;
    struct rc_channel *none = rc_connect(relay.target);
    cr_assert_eq(try_register(none, "drone-1", &st), -EIO);
    cr_assert_eq(st.code, 16, "no key: %s", rc_status_code_name(st.code));

    struct rc_channel *wrong = with_token("not-a-key-0123456789abcdef");
    cr_assert_eq(try_register(wrong, "drone-1", &st), -EIO);
    cr_assert_eq(st.code, 16, "unknown key: %s", rc_status_code_name(st.code));
    /* A missing or unknown key is said first, before a bad agent id. */
    cr_assert_eq(try_register(none, "", &st), -EIO);
    cr_assert_eq(st.code, 16, "no key, no agent id: %s", rc_status_code_name(st.code));
    cr_assert_eq(stream_one(wrong, ""), 16, "unknown key, no agent id header");

    struct rc_channel *fleet = with_token(FLEET_KEY);
    cr_assert_eq(try_register(fleet, "rover-1", &st), -EIO);
    cr_assert_eq(st.code, 7, "key not covering the agent: %s", rc_status_code_name(st.code));
    cr_assert_eq(try_register(fleet, "drone-1", &st), 0, "%s", st.message);
    cr_assert_eq(stream_one(fleet, "drone-1"), 0);
    cr_assert_eq(try_register(fleet, "", &st), -EIO);
    cr_assert_eq(st.code, 3, "a known key, no agent id: %s", rc_status_code_name(st.code));

    /* The stream is guarded on its own, not only through Register. */
    cr_assert_eq(stream_one(none, "drone-1"), 16);
    harness_register(fleet, "drone-2", NULL, 0);
    struct rc_channel *admin = with_token(ADMIN_KEY);
    cr_assert_eq(stream_one(admin, "drone-2"), 7, "an admin-only key covers no agent");

    int serving = 0;
    cr_assert_eq(rc_health_check(none, "", &serving, &st, 5000), 0, "health needs no key");
    rc_close(none);
    rc_close(wrong);
    rc_close(fleet);
    rc_close(admin);
}

Test(security, relay_control_needs_an_admin_key_and_keys_never_reach_the_log)
{
    start_with_keys();
    struct rc_status st;
    Aeroarc__Relay__V1__ListActiveDronesResponse *list = NULL;
    struct rc_channel *fleet = with_token(FLEET_KEY);
    cr_assert_eq(rc_list_active_drones(fleet, &list, &st, 5000), -EIO);
    cr_assert_eq(st.code, 7, "%s", rc_status_code_name(st.code));
    struct rc_channel *admin = with_token(ADMIN_KEY);
    cr_assert_eq(rc_list_active_drones(admin, &list, &st, 5000), 0, "%s", st.message);
    aeroarc__relay__v1__list_active_drones_response__free_unpacked(list, NULL);
    struct rc_channel *none = rc_connect(relay.target);
    cr_assert_eq(rc_list_active_drones(none, &list, &st, 5000), -EIO);
    cr_assert_eq(st.code, 16);
    rc_close(fleet);
    rc_close(admin);
    rc_close(none);

    stop();
    char *log = harness_read_file(relay.stderr_path, NULL);
    cr_assert_not_null(log);
    cr_assert_null(strstr(log, FLEET_KEY));
    cr_assert_null(strstr(log, ADMIN_KEY));
    cr_assert_null(strstr(log, "0123456789abcdef"), "no part of a key is logged");
    free(log);
}

Test(security, a_keys_file_others_can_read_stops_the_start)
{
    harness_prepare(&relay);
    char path[400];
    snprintf(path, sizeof(path), "%s/keys.txt", relay.dir);
    FILE *f = fopen(path, "w");
    fputs(FLEET_KEY " *\n", f);
    fclose(f);
    cr_assert_eq(chmod(path, 0644), 0);
    harness_write_config(&relay, NULL, "[auth]\nmode = bearer\nkeys_file = %DIR%/keys.txt\n");
    char out[2048];
    const char *args[] = {"-c", relay.config, "--check", NULL};
    cr_assert_eq(relay_run_cli(args, out, sizeof(out)), 2);
    char want[1200];
    snprintf(want, sizeof(want),
             "aeroarc-relay: %s:%d: [auth] keys_file: %s: readable or writable by others "
             "(mode 644): chmod o-rwx it\n",
             relay.config, harness_config_line(&relay, "keys_file"), path);
    cr_assert_str_eq(out, want);
}

/* How many times needle occurs in hay. */
static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/*
 * Every refused key is counted by reason; an agent retrying a wrong key
 * shows in the log by its id, at most one line a second, never the key.
 */
Test(security, refused_keys_are_counted_and_logged_rate_limited_by_agent)
{
    start_with_keys();
    struct rc_status st;
    struct rc_channel *wrong = with_token("wrong-key-0123456789abcdef");
    int64_t t0 = harness_now_ms();
    for (int i = 0; i < 40; i++) {
        cr_assert_eq(try_register(wrong, "drone-retrying", &st), -EIO);
        cr_assert_eq(st.code, 16);
    }
    int64_t burst_ms = harness_now_ms() - t0;
    struct rc_channel *none = rc_connect(relay.target);
    cr_assert_eq(try_register(none, "drone-1", &st), -EIO);
    /* Register(agent_id "drone-1") with a header that is no bearer key */
    static const uint8_t reg[] = {0x0a, 7, 'd', 'r', 'o', 'n', 'e', '-', '1'};
    struct rc_md basic = {"authorization", "Basic ZHJvbmU6cGFzcw=="};
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    cr_assert_eq(rc_unary(none, "/aeroarc.agent.v1.AgentGateway/Register", reg, sizeof(reg),
                          &basic, 1, &resp, &resp_len, &st, 5000),
                 -EIO);
    cr_assert_eq(st.code, 16, "%s", st.message);
    struct rc_channel *fleet = with_token(FLEET_KEY);
    cr_assert_eq(try_register(fleet, "rover-1", &st), -EIO);
    cr_assert_eq(st.code, 7);
    Aeroarc__Relay__V1__ListActiveDronesResponse *list = NULL;
    cr_assert_eq(rc_list_active_drones(fleet, &list, &st, 5000), -EIO);
    cr_assert_eq(st.code, 7);
    cr_assert_eq(try_register(fleet, "drone-1", &st), 0, "%s", st.message);

    cr_assert_eq(metric("aero_relay_auth_failures_total{reason=\"unknown_key\"}"), 40);
    cr_assert_eq(metric("aero_relay_auth_failures_total{reason=\"missing\"}"), 1);
    cr_assert_eq(metric("aero_relay_auth_failures_total{reason=\"malformed\"}"), 1);
    cr_assert_eq(metric("aero_relay_auth_failures_total{reason=\"not_covered\"}"), 1);
    cr_assert_eq(metric("aero_relay_auth_failures_total{reason=\"not_admin\"}"), 1);
    rc_close(wrong);
    rc_close(none);
    rc_close(fleet);

    stop();
    char *log = harness_read_file(relay.stderr_path, NULL);
    cr_assert_not_null(log);
    cr_assert(strstr(log, "auth: refused a call for agent drone-retrying: unknown_key"),
              "the retrying agent is named:\n%s", log);
    /* One line a second at most: the burst of 40 fits in a few. */
    size_t lines = count_of(log, "auth: refused");
    cr_assert_geq(lines, 1);
    cr_assert_leq(lines, (size_t)(burst_ms / 1000) + 2, "%zu lines for 40 refusals in %lld ms",
                  lines, (long long)burst_ms);
    cr_assert_null(strstr(log, "wrong-key-0123456789abcdef"), "the key is never logged");
    cr_assert_null(strstr(log, FLEET_KEY));
    free(log);
}

Test(security, a_keys_file_its_group_can_write_stops_check_and_start)
{
    harness_prepare(&relay);
    char path[400];
    snprintf(path, sizeof(path), "%s/keys.txt", relay.dir);
    FILE *f = fopen(path, "w");
    fputs(FLEET_KEY " *\n", f);
    fclose(f);
    cr_assert_eq(chmod(path, 0660), 0);
    harness_write_config(&relay, NULL, "[auth]\nmode = bearer\nkeys_file = %DIR%/keys.txt\n");
    char want[1200];
    snprintf(want, sizeof(want),
             "aeroarc-relay: %s:%d: [auth] keys_file: %s: writable by its group (mode 660): "
             "anyone in it could add a key; chmod g-w it\n",
             relay.config, harness_config_line(&relay, "keys_file"), path);
    char out[2048];
    const char *check[] = {"-c", relay.config, "--check", NULL};
    cr_assert_eq(relay_run_cli(check, out, sizeof(out)), 2);
    cr_assert_str_eq(out, want);
    /* Without --check it does not start either (the same message, exit 2). */
    const char *start[] = {"-c", relay.config, NULL};
    cr_assert_eq(relay_run_cli(start, out, sizeof(out)), 2);
    cr_assert_str_eq(out, want);
}

/* A self-signed server certificate for localhost valid `days` days, made
 * the way an operator would (openssl req -x509 -days N). */
static void make_server_cert(const char *dir, const char *name, int days)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s.key -out %s.pem "
             "-days %d -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
             ">/dev/null 2>&1",
             dir, name, name, days);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* Start a TLS relay on dir/name.pem; the gauge's value once it serves. */
static double start_tls_with(const char *name)
{
    static char ca[400];
    relay.http = true;
    char body[400];
    snprintf(body, sizeof(body), "[tls]\ncert_file = %%DIR%%/%s.pem\nkey_file = %%DIR%%/%s.key\n",
             name, name);
    harness_write_config(&relay, NULL, body);
    snprintf(ca, sizeof(ca), "%s/%s.pem", relay.dir, name);
    relay.tls_ca = ca;
    relay_start(&relay);
    return metric("aero_relay_tls_cert_expiry_timestamp_seconds");
}

Test(security, a_certificate_expiring_within_14_days_is_warned_about_and_exposed)
{
    harness_prepare(&relay);
    make_server_cert(relay.dir, "soon", 5);
    int64_t now = (int64_t)time(NULL);
    double expiry = start_tls_with("soon");
    /* openssl counts the days from the second it signs */
    cr_assert(expiry >= (double)(now + 5 * 86400 - 60) && expiry <= (double)(now + 5 * 86400 + 60),
              "gauge %.0f, now %lld", expiry, (long long)now);
    struct rc_channel *ch = harness_channel(&relay);
    struct rc_status st;
    cr_assert_eq(try_register(ch, "drone-tls", &st), 0, "%s", st.message);
    rc_close(ch);
    stop();
    char *log = harness_read_file(relay.stderr_path, NULL);
    cr_assert_not_null(log);
    char want[600];
    snprintf(want, sizeof(want), "TLS certificate %s/soon.pem expires at ", relay.dir);
    cr_assert(strstr(log, want), "no warning in:\n%s", log);
    cr_assert(strstr(log, "in 4 days 23 hours: renew it") ||
                  strstr(log, "in 5 days 0 hours: renew it"),
              "%s", log);
    cr_assert_eq(count_of(log, "TLS certificate"), 1, "one line");
    free(log);
}

Test(security, a_certificate_valid_for_longer_is_exposed_without_a_warning)
{
    harness_prepare(&relay);
    make_server_cert(relay.dir, "later", 30);
    int64_t now = (int64_t)time(NULL);
    double expiry = start_tls_with("later");
    cr_assert(expiry >= (double)(now + 30 * 86400 - 60) &&
                  expiry <= (double)(now + 30 * 86400 + 60),
              "gauge %.0f, now %lld", expiry, (long long)now);
    stop();
    char *log = harness_read_file(relay.stderr_path, NULL);
    cr_assert_not_null(log);
    cr_assert_null(strstr(log, "TLS certificate"), "%s", log);
    free(log);
}

/* ---- SIGHUP reloads relay.ini ------------------------------------------ */

struct metric_at_least {
    const char *series;
    double want;
};

static bool metric_reached(void *arg)
{
    struct metric_at_least *m = arg;
    return metric(m->series) >= m->want;
}

static void write_keys(const char *text)
{
    char path[400], tmp[420];
    snprintf(path, sizeof(path), "%s/keys.txt", relay.dir);
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(chmod(tmp, 0600), 0);
    cr_assert_eq(rename(tmp, path), 0);
}

/* SIGHUP, then wait until the relay counted the reload's outcome. */
static void reload(const char *result, double before)
{
    char series[80];
    snprintf(series, sizeof(series), "aero_relay_config_reloads_total{result=\"%s\"}", result);
    struct metric_at_least m = {series, before + 1};
    cr_assert_eq(kill(relay.pid, SIGHUP), 0);
    cr_assert(harness_wait_for(metric_reached, &m, 10000), "no %s reload counted", result);
}

/*
 * A new keys file takes effect on SIGHUP while a stream keeps going; a file
 * with an error is refused whole (the old keys stay, the error is logged
 * with its line); a changed listen address is named as needing a restart.
 */
Test(security, sighup_reloads_keys_refuses_a_bad_file_and_names_restart_keys)
{
    start_with_keys();
    struct rc_status st;
    struct rc_channel *fleet = with_token(FLEET_KEY);
    harness_register(fleet, "drone-7", NULL, 0);
    struct rc_stream *s = rc_stream_open(fleet, "drone-7", NULL, 0, &st);
    cr_assert_not_null(s);
    struct rc_ack ack;
    cr_assert_eq(rc_stream_send_frame(s, harness_frame("drone-7", 1), 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1);

    /* The fleet key is replaced by another. */
    write_keys("# rotated\nnew-fleet-key-0123456789abcdef drone-*\n" ADMIN_KEY " - admin\n");
    reload("ok", 0);
    cr_assert_eq(try_register(fleet, "drone-8", &st), -EIO, "the old key still works");
    cr_assert_eq(st.code, 16);
    struct rc_channel *rotated = with_token("new-fleet-key-0123456789abcdef");
    cr_assert_eq(try_register(rotated, "drone-8", &st), 0, "%s", st.message);
    /* The stream opened with the old key goes on: nothing was dropped. */
    cr_assert_eq(rc_stream_send_frame(s, harness_frame("drone-7", 2), 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1);
    cr_assert_eq(ack.status, RC_ACK_OK, "%s", ack.error);

    /* A relay.ini with an error: refused whole, the rotated key still works. */
    char *cfg = harness_read_file(relay.config, NULL);
    cr_assert_not_null(cfg);
    char *bad = strstr(cfg, "workers = 2\n");
    cr_assert_not_null(bad);
    FILE *f = fopen(relay.config, "w");
    fprintf(f, "%.*sworkers = lots\n%s", (int)(bad - cfg), cfg, bad + strlen("workers = 2\n"));
    fclose(f);
    reload("error", 0);
    char *log = harness_read_file(relay.stderr_path, NULL);
    cr_assert_not_null(strstr(log, "not reloaded, the running configuration stays"), "%s", log);
    cr_assert_not_null(strstr(log, "workers: invalid value \"lots\""), "%s", log);
    free(log);
    cr_assert_eq(try_register(rotated, "drone-9", &st), 0, "%s", st.message);

    /* Back to a good file, with another listen address: named, not applied. */
    char *moved = malloc(strlen(cfg) + 1);
    strcpy(moved, cfg);
    char *l = strstr(moved, "listen = 127.0.0.1:");
    cr_assert_not_null(l);
    l[strlen("listen = 127.0.0.")] = '2'; /* 127.0.0.1 -> 127.0.0.2 */
    f = fopen(relay.config, "w");
    fputs(moved, f);
    fclose(f);
    reload("ok", 1);
    log = harness_read_file(relay.stderr_path, NULL);
    cr_assert_not_null(strstr(log, "need a restart, left as they were: [relay] listen"), "%s",
                       log);
    free(log);
    cr_assert_eq(try_register(rotated, "drone-10", &st), 0, "still serving where it was: %s",
                 st.message);
    free(moved);
    free(cfg);
    rc_stream_cancel(s);
    rc_stream_free(s);
    rc_close(rotated);
    rc_close(fleet);
}

/* The certificate a new TLS connection to the relay is served: its
 * notAfter line as openssl prints it. */
static void served_not_after(char *out, size_t len)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd),
             "openssl s_client -connect %s -servername localhost </dev/null 2>/dev/null | "
             "openssl x509 -noout -enddate",
             relay.target);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    out[0] = '\0';
    if (!fgets(out, (int)len, p))
        out[0] = '\0';
    pclose(p);
}

struct served_wait {
    const char *want;
    char got[128];
};

static bool served_is(void *arg)
{
    struct served_wait *w = arg;
    served_not_after(w->got, sizeof(w->got));
    return strcmp(w->got, w->want) == 0;
}

/* A renewed certificate in the same files is served to new connections
 * after SIGHUP, while a stream opened on the old one goes on. */
Test(security, sighup_serves_a_renewed_certificate_to_new_connections)
{
    harness_prepare(&relay);
    make_server_cert(relay.dir, "tls", 3);
    start_tls_with("tls");
    char before[128], renewed[128];
    served_not_after(before, sizeof(before));
    cr_assert(strncmp(before, "notAfter=", 9) == 0, "no certificate served: %s", before);
    struct rc_channel *old = tls_channel(relay.tls_ca, NULL, NULL);
    harness_register(old, "drone-tls", NULL, 0);
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(old, "drone-tls", NULL, 0, &st);
    struct rc_ack ack;
    cr_assert_eq(rc_stream_send_frame(s, harness_frame("drone-tls", 1), 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1);

    /* Renewed: 30 days instead of 3, written over the same files. */
    make_server_cert(relay.dir, "renewed", 30);
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "cd %s && openssl x509 -in renewed.pem -noout -enddate && "
                               "cp renewed.key tls.key && cp renewed.pem tls.pem",
             relay.dir);
    FILE *p = popen(cmd, "r");
    cr_assert(p && fgets(renewed, sizeof(renewed), p));
    pclose(p);
    cr_assert_str_neq(before, renewed);
    struct metric_at_least m = {"aero_relay_config_reloads_total{result=\"ok\"}", 1};
    cr_assert_eq(kill(relay.pid, SIGHUP), 0);
    cr_assert(harness_wait_for(metric_reached, &m, 10000), "no reload counted");
    struct served_wait w = {.want = renewed};
    cr_assert(harness_wait_for(served_is, &w, 10000), "still served %s, want %s", w.got, renewed);
    /* The expiry gauge follows: 30 days now, not 3. */
    double expiry = metric("aero_relay_tls_cert_expiry_timestamp_seconds");
    cr_assert_gt(expiry, (double)time(NULL) + 20 * 86400, "expiry gauge not read again: %f", expiry);

    cr_assert_eq(rc_stream_send_frame(s, harness_frame("drone-tls", 2), 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1);
    cr_assert_eq(ack.status, RC_ACK_OK, "%s", ack.error);
    rc_stream_cancel(s);
    rc_stream_free(s);
    rc_close(old);
}
