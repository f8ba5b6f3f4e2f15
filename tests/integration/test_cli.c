/*
 * test_cli.c - the command line an operator meets first: --version,
 * --check on the shipped relay.ini, and the one-line message (file:line,
 * section, key, reason) with a non-zero exit for every kind of bad
 * configuration or plugin, before anything is started.
 */
#include "harness.h"

#include <aeroarc/plugin.h>

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>

static char out[8192];

static int run(const char *a, const char *b, const char *c)
{
    const char *args[] = {a, b, c, NULL};
    return relay_run_cli(args, out, sizeof(out));
}

/* Appended to configurations that test something else: one sink, so the
 * "no sink" rule does not refuse them (lines above it keep their numbers). */
#define SINK "[sink:s]\nplugin = sink-stdout\n"

/* Write text and SINK to a config in a fresh scratch dir and run --check
 * on it. */
static int check_config(struct relay_proc *r, const char *text)
{
    harness_prepare(r);
    FILE *f = fopen(r->config, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s" SINK, text); /* the plugins next to the binary */
    fclose(f);
    return run("-c", r->config, "--check");
}

Test(cli, version_names_the_release_and_the_plugin_abi)
{
    cr_assert_eq(run("--version", NULL, NULL), 0);
    char want[128];
    snprintf(want, sizeof(want), "aeroarc-relay %s (plugin ABI %d.%d)\n", AERO_VERSION,
             AERO_ABI_MAJOR, AERO_ABI_MINOR);
    cr_assert_str_eq(out, want);
}

Test(cli, help_lists_every_option)
{
    cr_assert_eq(run("--help", NULL, NULL), 0);
    cr_assert(strstr(out, "--check") && strstr(out, "--version") && strstr(out, "-c, --config"),
              "%s", out);
}

Test(cli, the_shipped_relay_ini_checks_out)
{
    cr_assert_eq(run("-c", AERO_SOURCE_DIR "/relay.ini", "--check"), 0, "%s", out);
    cr_assert(strstr(out, "configuration OK"), "%s", out);
}

struct bad_case {
    const char *config;  /* written to <dir>/relay.ini; %s = plugin dir */
    const char *message; /* expected after "aeroarc-relay: <path>", on every line */
};

/* "aeroarc-relay: <path>" before each line of message. */
static void prefix_lines(char *want, size_t cap, const char *path, const char *message)
{
    size_t o = 0;
    while (*message && o < cap) {
        size_t n = strcspn(message, "\n") + 1;
        o += (size_t)snprintf(want + o, cap - o, "aeroarc-relay: %s%.*s", path, (int)n, message);
        message += n - (message[n - 1] == '\0');
    }
}

Test(cli, each_bad_configuration_names_file_line_key_and_reason)
{
    const struct bad_case cases[] = {
        {"[relay]\nlisten = 127.0.0.1:1\n\n[sink:a]\nplugin = sink-file\nfsync = sometimes\n",
         ":6: [sink:a] fsync: invalid value \"sometimes\" (expected none | batch)\n"},
        {"[sink:a]\nplugin = sink-file\ncolour = blue\n",
         ":3: [sink:a] colour: unknown key (valid: plugin, queue, on_full, match, exclude, path, prefix, "
         "rotate_bytes, rotate_interval_s, fsync)\n"},
        {"[relay]\nworkers = -1\n", ":2: [relay] workers: value \"-1\" out of range (expected 0 to 256)\n"},
        {"[bogus]\n", ":1: [bogus] unknown section (valid: relay, http, route, route:<name>, "
                      "sink:<name>, tls, auth, control, log)\n"},
        {"[sink:a]\nqueue = 10\n", ":1: [sink:a] plugin: missing required key (the sink plugin to load, e.g. sink-file)\n"},
        /* [control] (SPEC.md section 10) */
        {"[control]\nclient_ca_file = /nonexistent/ca.pem\nallowed_identities = api\n",
         ":2: [control] client_ca_file: set without [tls] cert_file and key_file (control "
         "clients authenticate with TLS certificates)\n"},
        {"[tls]\ncert_file = /a\nkey_file = /b\n[control]\nclient_ca_file = /c\n"
         "allowed_identities = api, Aero Arc API, ://no-scheme\n",
         ":6: [control] allowed_identities: invalid identity \"://no-scheme\" (expected a "
         "certificate CN, DNS name or URI such as spiffe://aero-arc/api, comma-separated)\n"},
        /* every file the configuration names is checked, each error listed */
        {"[tls]\ncert_file = /a\nkey_file = /b\n[control]\nclient_ca_file = /nonexistent/ca.pem\n"
         "allowed_identities = api\n",
         ":2: [tls] cert_file: /a: cannot read: No such file or directory\n"
         ":3: [tls] key_file: /b: cannot read: No such file or directory\n"
         ":5: [control] client_ca_file: /nonexistent/ca.pem: cannot read: No such file or "
         "directory\n"},
        {"[control]\nagent_mappings_file = /nonexistent/map\n",
         ":2: [control] agent_mappings_file: /nonexistent/map: cannot read: No such file or "
         "directory\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct relay_proc r;
        int rc = check_config(&r, cases[i].config);
        char want[2048];
        prefix_lines(want, sizeof(want), r.config, cases[i].message);
        cr_expect_eq(rc, 2, "case %zu exit %d", i, rc);
        cr_expect_str_eq(out, want, "case %zu", i);
    }
}

Test(cli, a_missing_plugin_says_where_it_looked)
{
    struct relay_proc r;
    harness_prepare(&r);
    char text[1024];
    snprintf(text, sizeof(text), "[relay]\nplugin_dir = %s/plugins\n[sink:a]\nplugin = sink-nope\n",
             r.dir);
    FILE *f = fopen(r.config, "w");
    fputs(text, f);
    fclose(f);
    cr_assert_eq(run("-c", r.config, "--check"), 2);
    char want[1024];
    snprintf(want, sizeof(want),
             "aeroarc-relay: %s:4: [sink:a] plugin: plugin \"sink-nope\" not found (looked for "
             "sink-nope.so in %s/plugins)\n",
             r.config, r.dir);
    cr_assert_str_eq(out, want);
}

Test(cli, a_plugin_of_another_abi_major_is_refused_by_name)
{
    struct relay_proc r;
    harness_prepare(&r);
    char text[1024];
    snprintf(text, sizeof(text),
             "[relay]\nplugin_dir = %s/plugins\n[route]\nplugin = test-bad-abi\n" SINK, r.dir);
    FILE *f = fopen(r.config, "w");
    fputs(text, f);
    fclose(f);
    cr_assert_eq(run("-c", r.config, "--check"), 2);
    char want[1024];
    snprintf(want, sizeof(want),
             "aeroarc-relay: %s:4: [route] plugin: plugin \"test-bad-abi\" "
             "(%s/plugins/test-bad-abi.so) was built for plugin ABI 2.x, this relay speaks ABI "
             "1.x (rebuild it against aeroarc 1 headers)\n",
             r.config, r.dir);
    cr_assert_str_eq(out, want);
}

Test(cli, a_shared_object_without_the_entry_symbol_is_refused)
{
    struct relay_proc r;
    harness_prepare(&r);
    char text[1024];
    snprintf(text, sizeof(text),
             "[relay]\nplugin_dir = %s/plugins\n[sink:x]\nplugin = test-no-entry\n", r.dir);
    FILE *f = fopen(r.config, "w");
    fputs(text, f);
    fclose(f);
    cr_assert_eq(run("-c", r.config, "--check"), 2);
    cr_assert(strstr(out, ":4: [sink:x] plugin: plugin \"test-no-entry\"") &&
                  strstr(out, "has no aeroarc_plugin_entry symbol"),
              "%s", out);
}

Test(cli, a_missing_config_file_is_an_error)
{
    cr_assert_eq(run("-c", "/nonexistent/relay.ini", NULL), 2);
    cr_assert_str_eq(out, "aeroarc-relay: /nonexistent/relay.ini: cannot read: No such file or "
                          "directory\n");
}

Test(cli, an_address_in_use_fails_the_start_with_a_clear_message)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, 1), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    struct relay_proc r;
    harness_prepare(&r);
    FILE *f = fopen(r.config, "w");
    fprintf(f,
            "[relay]\nlisten = 127.0.0.1:%d\nplugin_dir = %s/plugins\nallow_no_sinks = true\n"
            "[http]\nlisten =\n",
            ntohs(a.sin_port), r.dir);
    fclose(f);
    cr_assert_eq(run("-c", r.config, NULL), 1);
    cr_assert(strstr(out, "cannot listen on 127.0.0.1:"), "%s", out);
    close(fd);
}

/* A loopback port bound, as a socket of another test running beside this
 * one holds it (not listening: a connection to it is refused at once). */
static int occupy(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* The test harness: ports are picked free and bound by the relay later.
 * One taken in between (here by the test itself) moves to another free
 * port instead of failing the test that started the relay; the failed
 * start's lines leave the log. */
Test(cli, the_harness_moves_a_port_taken_before_the_relay_binds_it)
{
    struct relay_proc r;
    harness_prepare(&r);
    r.http = true;
    harness_write_config(&r, NULL, NULL);
    int grpc = r.port, http = r.http_port;
    int fds[] = {occupy(grpc), occupy(http)};
    relay_start(&r);
    cr_assert_neq(r.port, grpc);
    cr_assert_neq(r.http_port, http);
    char want[80];
    snprintf(want, sizeof(want), "listen = 127.0.0.1:%d\n", r.port);
    char *ini = harness_read_file(r.config, NULL);
    cr_assert_not_null(strstr(ini, want), "%s", ini);
    free(ini);
    cr_assert_eq(harness_log_count(&r, "cannot listen", NULL), 0, "a failed start's lines stayed");
    struct rc_channel *ch = harness_channel(&r);
    harness_register(ch, "moved-1", NULL, 0); /* it serves on the port it says */
    harness_finish(&r, &ch);
    close(fds[0]);
    close(fds[1]);
}

/* The same when the port was taken by another relay, serving: the harness
 * waits for its own relay's READY=1 (NOTIFY_SOCKET) before asking the
 * port, or it would take the other relay's answers for its own. */
Test(cli, the_harness_is_not_fooled_by_another_relay_on_its_port)
{
    struct relay_proc a, b;
    harness_prepare(&a);
    harness_write_config(&a, NULL, NULL);
    relay_start(&a);
    harness_prepare(&b);
    harness_write_config(&b, NULL, NULL);
    cr_assert(harness_move_port(&b, &b.port, a.port));
    relay_start(&b);
    cr_assert_neq(b.port, a.port, "the harness took the other relay for its own");
    cr_assert_neq(b.pid, 0);
    struct rc_channel *cb = harness_channel(&b), *ca = harness_channel(&a);
    harness_finish(&b, &cb);
    harness_finish(&a, &ca);
}

/* Write a config (with "%s" for the plugin dir) into a fresh scratch dir. */
static void write_config(struct relay_proc *r, const char *fmt)
{
    harness_prepare(r);
    FILE *f = fopen(r->config, "w");
    cr_assert_not_null(f);
    fprintf(f, fmt, r->dir);
    fclose(f);
}

/* An OK ack from a relay with no sink is a frame thrown away: refused by
 * --check and at start alike, unless [relay] allow_no_sinks says so. */
Test(cli, no_sink_is_refused_at_check_and_start_unless_allowed)
{
    struct relay_proc r;
    write_config(&r, "[relay]\nplugin_dir = %s/plugins\n[http]\nlisten =\n");
    char want[1024];
    snprintf(want, sizeof(want),
             "aeroarc-relay: %s: no [sink:<name>] section: every frame would be acked OK and "
             "thrown away (add a sink, or set [relay] allow_no_sinks = true if that is what you "
             "want)\n",
             r.config);
    cr_assert_eq(run("-c", r.config, "--check"), 2, "%s", out);
    cr_expect_str_eq(out, want);
    cr_assert_eq(run("-c", r.config, NULL), 2, "%s", out);
    cr_expect_str_eq(out, want);

    write_config(&r, "[relay]\nplugin_dir = %s/plugins\nallow_no_sinks = true\n");
    cr_assert_eq(run("-c", r.config, "--check"), 0, "%s", out);
    cr_expect(strstr(out, "configuration OK (route route-none, 0 sink(s))"), "%s", out);
}

/* Run cmd in dir; fails the test unless it exits 0. */
static void sh_in(const char *dir, const char *cmd)
{
    char line[2048];
    snprintf(line, sizeof(line), "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
    cr_assert_eq(system(line), 0, "%s", line);
}

/* The TLS files are read at --check (and at every start): a certificate
 * and its key, a key of another certificate, a control CA that is a leaf,
 * a client CA file with no certificate: each named on its own line. */
Test(cli, check_reads_the_tls_files_and_lists_each_problem)
{
    struct relay_proc r;
    harness_prepare(&r);
    sh_in(r.dir, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 1 "
                 "-subj /CN=ca && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key "
                 "-out server.csr -subj /CN=localhost && openssl x509 -req -in server.csr "
                 "-CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1");
    static const char *const fmt =
        "[relay]\nplugin_dir = %1$s/plugins\nallow_no_sinks = true\n" /* 1-3 */
        "[tls]\ncert_file = %1$s/server.pem\nkey_file = %1$s/%2$s\n"  /* 4-6 */
        "client_ca_file = %1$s/%3$s\n"                                 /* 7 */
        "[control]\nclient_ca_file = %1$s/%4$s\nallowed_identities = api\n"; /* 8-10 */
    FILE *f = fopen(r.config, "w");
    fprintf(f, fmt, r.dir, "server.key", "ca.pem", "ca.pem");
    fclose(f);
    cr_assert_eq(run("-c", r.config, "--check"), 0, "%s", out);

    f = fopen(r.config, "w");
    fprintf(f, fmt, r.dir, "ca.key", "ca.key", "server.pem");
    fclose(f);
    cr_assert_eq(run("-c", r.config, "--check"), 2, "%s", out);
    char want[4096];
    snprintf(want, sizeof(want),
             "aeroarc-relay: %1$s:6: [tls] key_file: %2$s/ca.key: not the private key of "
             "cert_file %2$s/server.pem (their public keys differ)\n"
             "aeroarc-relay: %1$s:7: [tls] client_ca_file: %2$s/ca.key: holds no PEM "
             "certificate\n"
             "aeroarc-relay: %1$s:9: [control] client_ca_file: %2$s/server.pem: certificate 1 "
             "(/CN=localhost) is not a CA certificate (no basicConstraints CA:TRUE): no client "
             "certificate can chain to it\n",
             r.config, r.dir);
    cr_expect_str_eq(out, want);
    /* the start refuses the same file the same way */
    cr_assert_eq(run("-c", r.config, NULL), 2, "%s", out);
    cr_expect_str_eq(out, want);
}

/* Plugin checks (ABI 1.1) run under --check: every problem of every
 * section, each with its file and line, then exit 2. */
static const char *const PLUGIN_ERRORS_INI =
    "[relay]\n"                                  /* 1 */
    "plugin_dir = %s/plugins\n"                  /* 2 */
    "[sink:bus]\n"                               /* 3 */
    "plugin = sink-mqtt\n"                       /* 4 */
    "topic = t/#\n"                              /* 5 */
    "tls = On\n"                                 /* 6 */
    "ca_file = /nonexistent/ca.pem\n"            /* 7 */
    "[sink:nats]\n"                              /* 8 */
    "plugin = sink-nats\n"                       /* 9 */
    "subject = telemetry.*\n"                    /* 10 */
    "create_stream = yes\n"                      /* 11 */
    "[sink:tsdb]\n"                              /* 12 */
    "plugin = sink-influxdb\n"                   /* 13 */
    "database = t\n"                             /* 14 */
    "url = https://db.example:8086\n"            /* 15 */
    "tls_ca_file = /nonexistent/influx.pem\n"    /* 16 */
    "[sink:files]\n"                             /* 17 */
    "plugin = sink-file\n"                       /* 18 */
    "path = /dev/null/data\n";                   /* 19 */

static void expect_plugin_errors(const char *config)
{
    char want[4096];
    snprintf(want, sizeof(want),
             "aeroarc-relay: %1$s:7: [sink:bus] ca_file: cannot read \"/nonexistent/ca.pem\": No "
             "such file or directory\n"
             "aeroarc-relay: %1$s:5: [sink:bus] topic: '+' and '#' are subscription wildcards "
             "and cannot appear in a published topic\n"
             "aeroarc-relay: %1$s:10: [sink:nats] subject: wildcard '*' not allowed in a subject "
             "to publish to at byte 11 of \"telemetry.*\"\n"
             "aeroarc-relay: %1$s:11: [sink:nats] create_stream: create_stream = true needs "
             "stream (the name of the stream to create)\n"
             "aeroarc-relay: %1$s:16: [sink:tsdb] tls_ca_file: cannot read "
             "\"/nonexistent/influx.pem\": No such file or directory\n"
             "aeroarc-relay: %1$s:19: [sink:files] path: cannot create or write "
             "\"/dev/null/data\" (/dev/null: Not a directory)\n",
             config);
    cr_expect_str_eq(out, want);
}

Test(cli, check_lists_every_plugin_level_error_with_file_and_line)
{
    struct relay_proc r;
    write_config(&r, PLUGIN_ERRORS_INI);
    cr_assert_eq(run("-c", r.config, "--check"), 2, "%s", out);
    expect_plugin_errors(r.config);
}

/* Start runs the same checks before any create(): it refuses what
 * --check refuses, with the same lines, before serving anything. */
Test(cli, start_refuses_what_check_refuses)
{
    struct relay_proc r;
    write_config(&r, PLUGIN_ERRORS_INI);
    cr_assert_eq(run("-c", r.config, NULL), 2, "%s", out);
    expect_plugin_errors(r.config);
}

/* One boolean parser: "On" is true for sink-mqtt as for the core, so
 * ca_file (which needs tls) is accepted, and so is every other spelling. */
Test(cli, tls_on_in_any_case_is_true_for_the_plugin_too)
{
    static const char *const spellings[] = {"On", "TRUE", "yes", "1"};
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        struct relay_proc r;
        harness_prepare(&r);
        FILE *f = fopen(r.config, "w");
        cr_assert_not_null(f);
        fprintf(f,
                "[relay]\nplugin_dir = %s/plugins\n[sink:bus]\nplugin = sink-mqtt\n"
                "tls = %s\nca_file = %s/relay.ini\n",
                r.dir, spellings[i], AERO_SOURCE_DIR);
        fclose(f);
        cr_expect_eq(run("-c", r.config, "--check"), 0, "tls = %s: %s", spellings[i], out);
    }
    struct relay_proc r;
    harness_prepare(&r);
    FILE *f = fopen(r.config, "w");
    fprintf(f, "[relay]\nplugin_dir = %s/plugins\n[sink:bus]\nplugin = sink-mqtt\n"
               "tls = Off\nca_file = %s/relay.ini\n", r.dir, AERO_SOURCE_DIR);
    fclose(f);
    cr_assert_eq(run("-c", r.config, "--check"), 2);
    char want[1024];
    snprintf(want, sizeof(want),
             "aeroarc-relay: %s:6: [sink:bus] ca_file: set but tls is off (set tls = true)\n",
             r.config);
    cr_assert_str_eq(out, want);
}

/* A key error in one section does not hide another section's errors. */
Test(cli, errors_of_several_sections_are_all_reported)
{
    struct relay_proc r;
    write_config(&r, "[relay]\nplugin_dir = %s/plugins\n"
                     "[sink:a]\nplugin = sink-file\nfsync = sometimes\n"
                     "[sink:b]\nplugin = sink-file\nprefix = a/b\n");
    cr_assert_eq(run("-c", r.config, "--check"), 2);
    char want[1024];
    snprintf(want, sizeof(want),
             "aeroarc-relay: %1$s:5: [sink:a] fsync: invalid value \"sometimes\" (expected none | "
             "batch)\n"
             "aeroarc-relay: %1$s:8: [sink:b] prefix: \"a/b\" must not contain '/'\n",
             r.config);
    cr_assert_str_eq(out, want);
}

Test(cli, a_plugin_named_other_than_its_file_is_refused)
{
    struct relay_proc r;
    write_config(&r, "[relay]\nplugin_dir = %s/plugins\n[sink:x]\nplugin = test-wrong-name\n");
    cr_assert_eq(run("-c", r.config, "--check"), 2);
    char want[1024];
    snprintf(want, sizeof(want),
             "aeroarc-relay: %s:4: [sink:x] plugin: plugin \"test-wrong-name\" "
             "(%s/plugins/test-wrong-name.so): its descriptor is named \"test-other-name\", not "
             "\"test-wrong-name\" as its file name says (a plugin's name must equal its file name "
             "without .so)\n",
             r.config, r.dir);
    cr_assert_str_eq(out, want);
}

/* A 1.0 plugin (no check slot) still passes --check. */
Test(cli, a_1_0_plugin_without_check_still_loads)
{
    struct relay_proc r;
    write_config(&r, "[relay]\nplugin_dir = %s/plugins\n[sink:old]\nplugin = test-old-minor\n");
    cr_assert_eq(run("-c", r.config, "--check"), 0, "%s", out);
    cr_assert(strstr(out, "configuration OK"), "%s", out);
}

/* route-redis checks its address without connecting, from relay.ini or,
 * when set, from REDIS_ADDR (reported against redis_addr's line, or the
 * section's when the file does not set it). */
Test(cli, route_redis_check_names_a_bad_address)
{
    unsetenv("REDIS_ADDR");
    unsetenv("REDIS_DB");
    struct relay_proc r;
    write_config(&r, "[relay]\nplugin_dir = %s/plugins\n[route]\nplugin = route-redis\n"
                     "redis_addr = host:99999\n" SINK);
    cr_assert_eq(run("-c", r.config, "--check"), 2);
    char want[1024];
    snprintf(want, sizeof(want),
             "aeroarc-relay: %s:5: [route] redis_addr: invalid address \"host:99999\" (expected "
             "host:port, [ipv6]:port, host or unix:/path)\n",
             r.config);
    cr_expect_str_eq(out, want);

    write_config(&r, "[relay]\nplugin_dir = %s/plugins\n[route]\nplugin = route-redis\n" SINK);
    setenv("REDIS_ADDR", "a b:1", 1);
    setenv("REDIS_DB", "x", 1);
    int rc = run("-c", r.config, "--check");
    unsetenv("REDIS_ADDR");
    unsetenv("REDIS_DB");
    cr_assert_eq(rc, 2);
    snprintf(want, sizeof(want),
             "aeroarc-relay: %1$s:3: [route] redis_db: REDIS_DB: invalid value \"x\" (expected "
             "an integer from 0 to 1000000)\n"
             "aeroarc-relay: %1$s:3: [route] redis_addr: REDIS_ADDR: invalid address \"a b:1\" "
             "(expected host:port, [ipv6]:port, host or unix:/path)\n",
             r.config);
    cr_expect_str_eq(out, want);
}

/* The relay as it starts on cfg's listen address; returns its log. */
static char *start_log(const char *listen_host, const char *extra, const char *body)
{
    struct relay_proc r;
    harness_prepare(&r);
    harness_write_config(&r, extra, body);
    char *text = harness_read_file(r.config, NULL);
    cr_assert_not_null(text);
    char *at = strstr(text, "listen = 127.0.0.1:");
    cr_assert_not_null(at);
    FILE *f = fopen(r.config, "w");
    cr_assert_not_null(f);
    fprintf(f, "%.*slisten = %s:%s", (int)(at - text), text, listen_host,
            at + strlen("listen = 127.0.0.1:"));
    fclose(f);
    free(text);
    relay_start(&r);
    cr_assert_eq(relay_stop(&r, 15000), 0);
    return harness_read_file(r.stderr_path, NULL);
}

Test(cli, serving_beyond_loopback_unprotected_is_said_once_at_start)
{
    char *log = start_log("0.0.0.0", NULL, NULL);
    cr_assert_not_null(log);
    const char *w = strstr(log, "gRPC listens on 0.0.0.0:");
    cr_assert_not_null(w, "no warning in:\n%s", log);
    cr_expect(strstr(w, "without TLS and without [auth]"), "%.200s", w);
    cr_expect_null(strstr(w + 1, "gRPC listens on 0.0.0.0:"), "said more than once");
    free(log);

    log = start_log("127.0.0.1", NULL, NULL);
    cr_assert_not_null(log);
    cr_expect_null(strstr(log, "gRPC listens on"), "loopback needs no warning:\n%s", log);
    free(log);
}

/* REDIS_ADDR with route-none (an installed core package's relay.ini until
 * route-redis is installed): said at start, not silently ignored. */
Test(cli, redis_addr_with_route_none_is_warned)
{
    struct relay_proc r;
    harness_prepare(&r);
    harness_setenv(&r, "REDIS_ADDR", "127.0.0.1:1");
    harness_write_config(&r, NULL, "[route]\nplugin = route-none\n");
    relay_start(&r);
    cr_assert_eq(relay_stop(&r, 15000), 0);
    char *log = harness_read_file(r.stderr_path, NULL);
    cr_assert_not_null(log);
    cr_expect(strstr(log, "REDIS_ADDR is set but [route] plugin = route-none publishes nothing"),
              "no warning in:\n%s", log);
    free(log);
}

/* "listen = :<port>" (the Go relay's form) binds every interface: the
 * relay serves on loopback and warns as for 0.0.0.0. */
Test(cli, an_empty_listen_host_serves_every_interface)
{
    char *log = start_log("", NULL, NULL);
    cr_assert_not_null(log);
    cr_expect(strstr(log, "gRPC listens on 0.0.0.0:"), "no warning in:\n%s", log);
    free(log);
}

/* The next datagram on fd that starts with `want` (others skipped), within
 * timeout_ms; the whole datagram into got. */
static bool recv_notify(int fd, const char *want, char *got, size_t cap, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (int64_t left; (left = deadline - harness_now_ms()) > 0;) {
        struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ssize_t n = recv(fd, got, cap - 1, 0);
        if (n < 0)
            return false;
        got[n] = '\0';
        if (strncmp(got, want, strlen(want)) == 0)
            return true;
    }
    return false;
}

/* Under systemd (Type=notify): READY=1 once the relay serves, WATCHDOG=1
 * every half WATCHDOG_USEC, STOPPING=1 when SIGTERM starts the drain. The
 * test owns the NOTIFY_SOCKET datagram socket, as systemd would. */
Test(cli, systemd_hears_ready_watchdog_and_stopping, .timeout = 60)
{
    struct relay_proc r;
    harness_prepare(&r);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int len = snprintf(a.sun_path, sizeof(a.sun_path), "%s/notify.sock", r.dir);
    cr_assert(len > 0 && (size_t)len < sizeof(a.sun_path), "scratch dir path too long");
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", a.sun_path);
    harness_setenv(&r, "NOTIFY_SOCKET", a.sun_path);
    harness_setenv(&r, "WATCHDOG_USEC", "400000");
    harness_write_config(&r, NULL, NULL);
    relay_start(&r);
    char got[512], want[128];
    cr_assert(recv_notify(fd, "READY=1", got, sizeof(got), 5000), "no READY=1");
    snprintf(want, sizeof(want), "READY=1\nSTATUS=serving gRPC on 127.0.0.1:%d (port %d)",
             r.port, r.port);
    cr_expect_str_eq(got, want);
    int64_t t0 = harness_now_ms();
    cr_assert(recv_notify(fd, "WATCHDOG=1", got, sizeof(got), 2000), "no WATCHDOG=1");
    cr_assert(recv_notify(fd, "WATCHDOG=1", got, sizeof(got), 2000), "one WATCHDOG=1 only");
    cr_expect_lt(harness_now_ms() - t0, 1500, "two pings of a 400 ms watchdog took %lld ms",
                 (long long)(harness_now_ms() - t0));
    cr_assert_eq(relay_stop(&r, 15000), 0);
    cr_assert(recv_notify(fd, "STOPPING=1", got, sizeof(got), 2000), "no STOPPING=1");
    close(fd);

    /* a usable socket: nothing to warn about */
    char *log = harness_read_file(r.stderr_path, NULL);
    cr_assert_not_null(log);
    cr_expect_null(strstr(log, "NOTIFY_SOCKET"), "%s", log);
    free(log);

    /* an unusable NOTIFY_SOCKET is said once; the relay serves anyway */
    harness_setenv(&r, "NOTIFY_SOCKET", "relative/path");
    harness_write_config(&r, NULL, NULL);
    relay_start(&r);
    cr_assert_eq(relay_stop(&r, 15000), 0);
    log = harness_read_file(r.stderr_path, NULL);
    cr_assert_not_null(log);
    cr_expect(strstr(log, "NOTIFY_SOCKET \"relative/path\" is no unix socket path or @name: "
                          "systemd will not hear that the relay is ready"),
              "%s", log);
    free(log);
}
