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
#include <netinet/in.h>
#include <unistd.h>

static char out[8192];

static int run(const char *a, const char *b, const char *c)
{
    const char *args[] = {a, b, c, NULL};
    return relay_run_cli(args, out, sizeof(out));
}

/* Write text to a config in a fresh scratch dir and run --check on it. */
static int check_config(struct relay_proc *r, const char *text)
{
    harness_prepare(r);
    FILE *f = fopen(r->config, "w");
    cr_assert_not_null(f);
    fputs(text, f);
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
    const char *message; /* expected after "aeroarc-relay: <path>" */
};

Test(cli, each_bad_configuration_names_file_line_key_and_reason)
{
    const struct bad_case cases[] = {
        {"[relay]\nlisten = 127.0.0.1:1\n\n[sink:a]\nplugin = sink-file\nfsync = sometimes\n",
         ":6: [sink:a] fsync: invalid value \"sometimes\" (expected none | batch)\n"},
        {"[sink:a]\nplugin = sink-file\ncolour = blue\n",
         ":3: [sink:a] colour: unknown key (valid: plugin, queue, on_full, path, prefix, "
         "rotate_bytes, rotate_interval_s, fsync)\n"},
        {"[relay]\nworkers = -1\n", ":2: [relay] workers: value \"-1\" out of range (expected 0 to 256)\n"},
        {"[bogus]\n", ":1: [bogus] unknown section (valid: relay, http, route, sink:<name>, tls, "
                      "auth, log)\n"},
        {"[sink:a]\nqueue = 10\n", ":1: [sink:a] plugin: missing required key (the sink plugin to load, e.g. sink-file)\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct relay_proc r;
        int rc = check_config(&r, cases[i].config);
        char want[1024];
        snprintf(want, sizeof(want), "aeroarc-relay: %s%s", r.config, cases[i].message);
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
    snprintf(text, sizeof(text), "[relay]\nplugin_dir = %s/plugins\n[route]\nplugin = test-bad-abi\n",
             r.dir);
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
    fprintf(f, "[relay]\nlisten = 127.0.0.1:%d\nplugin_dir = %s/plugins\n[http]\nlisten =\n",
            ntohs(a.sin_port), r.dir);
    fclose(f);
    cr_assert_eq(run("-c", r.config, NULL), 1);
    cr_assert(strstr(out, "cannot listen on 127.0.0.1:"), "%s", out);
    close(fd);
}
