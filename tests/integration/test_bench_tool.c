/*
 * test_bench_tool.c - aeroarc-bench against the real relay: a named
 * scenario (with an option after it overriding it) and --server-pid, which
 * adds what the run cost the relay (CPU seconds, peak RSS) to the JSON line;
 * bad values are refused with exit 2 and a message; --commands against a
 * relay with [control] (SPEC sections 10 and 12): its agents answer, both
 * kinds of call succeed and every frame is still acked.
 */
#include "control_fixture.h"
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static struct relay_proc relay;

static void stop(void)
{
    if (relay.pid)
        relay_stop(&relay, 20000);
}

TestSuite(bench_tool, .fini = stop, .timeout = 120);

/* Runs aeroarc-bench with args (stderr joined to stdout); returns its exit
 * code and its output in out. */
static int bench(const char *args, char *out, size_t outlen)
{
    char cmd[3072];
    snprintf(cmd, sizeof(cmd), "%s/aeroarc-bench %s 2>&1", AERO_BINARY_DIR, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    cr_assert(WIFEXITED(status), "aeroarc-bench died: %#x", status);
    return WEXITSTATUS(status);
}

/* The number after "key": in a JSON line, or -1 if the key is missing. */
static double json_number(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *p = strstr(json, k);
    return p ? strtod(p + strlen(k), NULL) : -1;
}

Test(bench_tool, a_scenario_with_server_pid_reports_the_relays_cost)
{
    harness_prepare(&relay);
    harness_write_config(&relay, NULL,
                         "[sink:archive]\nplugin = sink-file\npath = %DIR%/data\n");
    relay_start(&relay);

    char args[256], out[4096];
    snprintf(args, sizeof(args), "--target %s --scenario light --frames 2000 --window 20 "
             "--server-pid %d", relay.target, (int)relay.pid);
    cr_assert_eq(bench(args, out, sizeof(out)), 0, "%s", out);
    cr_assert_not_null(strstr(out, "\"scenario\":\"light\""), "%s", out);
    cr_assert_eq(json_number(out, "agents"), 1, "the scenario's agents: %s", out);
    cr_assert_eq(json_number(out, "window"), 20, "--window after --scenario wins: %s", out);
    cr_assert_eq(json_number(out, "ok"), 2000, "%s", out);
    cr_assert_eq(json_number(out, "server_pid"), relay.pid, "%s", out);
    cr_assert_gt(json_number(out, "server_cpu_s"), 0, "2,000 frames cost the relay no CPU? %s",
                 out);
    cr_assert_gt(json_number(out, "server_cpu_s_per_100k"), 0, "%s", out);
    /* A running relay with gRPC and its plugins holds several MB. */
    cr_assert_gt(json_number(out, "server_peak_rss_kb"), 4096, "%s", out);
}

Test(bench_tool, bad_values_are_refused_with_a_reason)
{
    char out[4096];
    cr_assert_eq(bench("--scenario nope", out, sizeof(out)), 2);
    cr_assert_not_null(strstr(out, "unknown \"nope\" (throughput, durable, redis, many, light, "
                                   "scale)"), "%s", out);

    /* A pid that is not running: refused before any frame is sent. */
    harness_prepare(&relay);
    harness_write_config(&relay, NULL, "");
    relay_start(&relay);
    char args[256];
    snprintf(args, sizeof(args), "--target %s --agents 1 --frames 1 --server-pid 2147483646",
             relay.target);
    cr_assert_eq(bench(args, out, sizeof(out)), 2, "%s", out);
    cr_assert_not_null(strstr(out, "--server-pid: no process 2147483646"), "%s", out);
}

Test(bench_tool, commands_need_a_control_certificate)
{
    char out[4096];
    cr_assert_eq(bench("--protocol multiplexed --commands 10", out, sizeof(out)), 2);
    cr_assert_not_null(strstr(out, "need --cert, --key and --protocol multiplexed"), "%s", out);
    cr_assert_eq(bench("--command-kinds aircraft,nope", out, sizeof(out)), 2);
    cr_assert_not_null(strstr(out, "\"nope\" is neither aircraft nor durable"), "%s", out);
}

/* Three agents stream over TLS with the bearer key while 40 commands a
 * second (both kinds in turn) go to them; [control] holds their frames
 * until --reconcile's Clear, so "ok" proves that as well. */
Test(bench_tool, commands_run_beside_the_frames)
{
    harness_prepare(&relay);
    fixture_pki(&relay);
    fixture_sh(&relay, "for i in 0 1 2; do echo \"bench-agent-$i bench-operator bench-agent-$i\"; "
                       "done > agents.map && chmod 600 agents.map");
    char body[1024];
    snprintf(body, sizeof(body),
             "%sagent_mappings_file = %%DIR%%/agents.map\n"
             "[sink:archive]\nplugin = sink-file\npath = %%DIR%%/data\n%s",
             FIXTURE_TLS_CONTROL, fixture_bearer_keys(&relay, "bench-agents-key-0123456789"));
    harness_write_config(&relay, "relay_id = relay-b\n", body);
    static char ca[400];
    snprintf(ca, sizeof(ca), "%s/ca.pem", relay.dir);
    relay.tls_ca = ca; /* relay_start's readiness probe speaks TLS */
    relay_start(&relay);

    char args[2048], out[4096];
    snprintf(args, sizeof(args),
             "--target %s --protocol multiplexed --agents 3 --frames 300 --window 10 "
             "--ca %s/ca.pem --server-name localhost --token bench-agents-key-0123456789 "
             "--cert %s/uri.pem --key %s/uri.key --commands 40 --command-seconds 1",
             relay.target, relay.dir, relay.dir, relay.dir);
    cr_assert_eq(bench(args, out, sizeof(out)), 0, "%s", out);
    cr_assert_eq(json_number(out, "ok"), 900, "%s", out);
    cr_assert_eq(json_number(out, "reconcile_errors"), 0, "%s", out);
    cr_assert_gt(json_number(out, "cmd_aircraft_n"), 5, "%s", out);
    cr_assert_gt(json_number(out, "cmd_durable_n"), 5, "%s", out);
    cr_assert_eq(json_number(out, "cmd_aircraft_errors"), 0, "%s", out);
    cr_assert_eq(json_number(out, "cmd_durable_errors"), 0, "%s", out);
    cr_assert_gt(json_number(out, "cmd_durable_p50_us"), 0, "%s", out);
    cr_assert_gt(json_number(out, "commands_s"), 0.9, "--command-seconds 1: %s", out);
}
