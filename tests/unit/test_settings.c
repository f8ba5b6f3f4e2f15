/*
 * test_settings.c - the core's relay.ini keys (core/settings.c): the SPEC
 * example and the shipped relay.ini load, defaults, the exact message for
 * each bad input, relay_id resolution, and plugin-section validation with
 * fake plugin key tables (one from an older ABI minor, behind a guard page).
 */
#include "settings.h"

#include <criterion/criterion.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
/* Appended to configurations that test something else: one sink, so the
 * "no sink" rule does not refuse them. */
#define SINK "\n[sink:t]\nplugin = sink-stdout\n"

/* SPEC.md section 6, with route-none instead of route-redis (and so no
 * redis_* keys: route-none declares none). */
static const char spec_example[] =
    "[relay]\n"
    "listen = 0.0.0.0:50051        ; gRPC address\n"
    "relay_id =                    ; empty: RELAY_ID env, else hostname, else \"relay\"\n"
    "max_inflight = 100            ; returned by Register\n"
    "workers = 0                   ; gRPC threads; 0 = number of cores\n"
    "plugin_dir =                  ; empty: the installed plugin dir (and the build tree's, when run from it)\n"
    "max_message_bytes = 65536\n"
    "shutdown_grace_s = 10\n"
    "\n"
    "[http]\n"
    "listen = 0.0.0.0:2112         ; empty: no HTTP server\n"
    "\n"
    "[route]\n"
    "plugin = route-none           ; route-none never publishes\n"
    "ttl_s = 45\n"
    "\n"
    "[sink:console]                ; one section per sink instance: [sink:<name>]\n"
    "plugin = sink-stdout\n"
    "\n"
    "[sink:archive]\n"
    "plugin = sink-file\n"
    "path = ./data\n"
    "prefix = telemetry\n"
    "rotate_bytes = 67108864\n"
    "rotate_interval_s = 3600\n"
    "fsync = none                  ; none | batch\n"
    "queue = 4096                  ; frames; every sink instance takes queue and on_full\n"
    "on_full = block               ; block | reject\n"
    "\n"
    "[tls]\n"
    "cert_file =\n"
    "key_file =\n"
    "client_ca_file =\n"
    "\n"
    "[auth]\n"
    "mode = none                   ; none | bearer\n"
    "keys_file =                   ; lines: <key> <agents: * | glob | -> [admin] (section 7)\n"
    "\n"
    "[log]\n"
    "level = info                  ; debug | info | warn | error\n"
    "format = json                 ; json | text\n";

/* What sink-file declares (the real table lives in the plugin). */
static const aero_config_key file_keys[] = {
    {.name = "path", .type = AERO_KEY_STRING, .default_value = "./data"},
    {.name = "prefix", .type = AERO_KEY_STRING, .default_value = "telemetry"},
    {.name = "rotate_bytes", .type = AERO_KEY_INT, .default_value = "67108864", .min = 4096,
     .max = INT64_MAX},
    {.name = "rotate_interval_s", .type = AERO_KEY_INT, .default_value = "3600", .min = 0,
     .max = 604800},
    {.name = "fsync", .type = AERO_KEY_ENUM, .default_value = "none", .choices = "none|batch"},
};
static const struct config_keys file_table = {file_keys, N_ELEMS(file_keys), sizeof(aero_config_key)};

static const aero_config_key redis_keys[] = {
    {.name = "redis_addr", .type = AERO_KEY_STRING, .default_value = ""},
    {.name = "redis_password", .type = AERO_KEY_STRING, .default_value = ""},
    {.name = "redis_db", .type = AERO_KEY_INT, .default_value = "0", .min = 0, .max = 15},
};
static const struct config_keys redis_table = {redis_keys, N_ELEMS(redis_keys), sizeof(aero_config_key)};

static char *this_hostname(void)
{
    static char host[256];

    cr_assert_eq(gethostname(host, sizeof host - 1), 0);
    cr_assert(host[0] != '\0');
    return host;
}

/* The parts of the SPEC example that the shipped relay.ini shares: all but
 * the listen addresses and the console sink (spec_listeners_and_sinks). */
static void expect_spec_values(const struct settings *s)
{
    cr_expect_eq(s->max_inflight, 100);
    cpu_set_t cpus; /* 0: the CPUs the process may run on (taskset, cpusets) */
    cr_assert_eq(sched_getaffinity(0, sizeof(cpus), &cpus), 0);
    cr_expect_eq(s->workers, CPU_COUNT(&cpus) < 2 ? 2 : CPU_COUNT(&cpus));
    cr_expect_str_eq(s->plugin_dir, "");
    cr_expect_eq(s->max_message_bytes, 65536);
    cr_expect_eq(s->shutdown_grace_s, 10);
    cr_expect_eq(s->route_ttl_s, 45);
    cr_assert_not_null(s->route_section);
    cr_expect_str_eq(s->route_section->name, "route");
    cr_assert_geq(s->n_sinks, 1);
    const struct sink_settings *archive = &s->sinks[s->n_sinks - 1];
    cr_expect_str_eq(archive->name, "archive");
    cr_expect_str_eq(archive->plugin, "sink-file");
    cr_expect_eq(archive->queue, 4096);
    cr_expect_eq(archive->on_full, ON_FULL_BLOCK);
    /* plugin keys are kept, unchecked, for the plugin's table */
    cr_expect_str_eq(config_get(archive->section, "path"), "./data");
    cr_expect_str_eq(config_get(archive->section, "fsync"), "none");
    cr_expect_str_eq(s->tls_cert_file, "");
    cr_expect_str_eq(s->tls_key_file, "");
    cr_expect_str_eq(s->tls_client_ca_file, "");
    cr_expect_str_eq(s->auth_mode, "none");
    cr_expect_str_eq(s->auth_keys_file, "");
    cr_expect_eq(s->log_level, AERO_LOG_INFO);
    cr_expect_eq(s->log_format, LOG_FORMAT_JSON);
}

/* SPEC's example serves every interface and prints every frame. */
static void spec_listeners_and_sinks(const struct settings *s)
{
    cr_expect_str_eq(s->listen, "0.0.0.0:50051");
    cr_expect_str_eq(s->http_listen, "0.0.0.0:2112");
    cr_assert_eq(s->n_sinks, 2);
    cr_expect_str_eq(s->sinks[0].name, "console");
    cr_expect_str_eq(s->sinks[0].plugin, "sink-stdout");
    cr_expect_eq(s->sinks[0].queue, 4096);
    cr_expect_eq(s->sinks[0].on_full, ON_FULL_BLOCK);
    cr_expect_str_eq(s->sinks[0].section->name, "sink:console");
}

Test(settings, spec_example_loads)
{
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";

    unsetenv("RELAY_ID");
    cr_assert_eq(settings_load_string("relay.ini", spec_example, &s, err, sizeof err), 0, "%s",
                 err);
    expect_spec_values(&s);
    spec_listeners_and_sinks(&s);
    cr_expect_str_eq(s.route_plugin, "route-none");
    cr_expect_str_eq(s.relay_id, this_hostname());
    cr_expect_eq(settings_validate_plugin_section(&s, s.sinks[1].section, &file_table, err,
                                                  sizeof err),
                 0, "%s", err);
    cr_expect_eq(settings_validate_plugin_section(&s, s.route_section, NULL, err, sizeof err), 0,
                 "%s", err);
    settings_free(&s);
}

/* The quick start's file: SPEC's values, but both listeners on loopback
 * (nothing unprotected is reachable from elsewhere until the operator says
 * so) and sink-file alone (frames are not printed to the terminal). */
Test(settings, shipped_relay_ini_loads)
{
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";

    unsetenv("RELAY_ID");
    cr_assert_eq(settings_load(AERO_SOURCE_DIR "/relay.ini", &s, err, sizeof err), 0, "%s", err);
    expect_spec_values(&s);
    cr_expect_str_eq(s.listen, "127.0.0.1:50051");
    cr_expect_str_eq(s.http_listen, "127.0.0.1:2112");
    cr_expect_eq(s.n_sinks, 1, "only the archive: the console sink is a comment");
    cr_expect_str_eq(s.route_plugin, "route-redis"); /* idle without a Redis address */
    cr_expect_str_eq(s.file.path, AERO_SOURCE_DIR "/relay.ini");
    cr_expect_eq(settings_validate_plugin_section(&s, s.sinks[0].section, &file_table, err,
                                                  sizeof err),
                 0, "%s", err);
    cr_expect_eq(settings_validate_plugin_section(&s, s.route_section, &redis_table, err,
                                                  sizeof err),
                 0, "%s", err);
    settings_free(&s);
}

Test(settings, empty_file_means_defaults)
{
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";

    unsetenv("RELAY_ID");
    cr_assert_eq(settings_load_string("relay.ini", "[relay]\nallow_no_sinks = On\n", &s, err,
                                      sizeof err),
                 0, "%s", err);
    cr_expect(s.allow_no_sinks);
    cr_expect_str_eq(s.listen, "0.0.0.0:50051");
    cr_expect_eq(s.max_inflight, 100);
    cr_expect_eq(s.max_message_bytes, 65536);
    cr_expect_eq(s.shutdown_grace_s, 10);
    cr_expect_eq(s.max_sessions, 100000);
    cr_expect_eq(s.max_streams_per_connection, 1000);
    cr_expect_eq(s.keepalive_time_s, 30);
    cr_expect_eq(s.keepalive_timeout_s, 10);
    cr_expect_eq(s.handshake_timeout_s, 20);
    cr_expect_str_eq(s.http_listen, "0.0.0.0:2112");
    cr_expect_str_eq(s.route_plugin, "route-none");
    cr_expect_eq(s.route_ttl_s, 45);
    cr_assert_not_null(s.route_section);
    cr_expect_eq(s.route_section->line, 0);
    cr_expect_str_eq(config_get(s.route_section, "plugin"), "route-none");
    cr_expect_eq(config_get_int(s.route_section, "ttl_s", 0), 45);
    cr_expect_eq(s.n_sinks, 0);
    cr_expect_str_eq(s.auth_mode, "none");
    cr_expect_eq(s.log_level, AERO_LOG_INFO);
    cr_expect_eq(s.log_format, LOG_FORMAT_JSON);
    cr_expect_eq(s.log_summary_interval_s, 60);
    /* defaults are visible through config_get too, marked line 0 */
    cr_expect_str_eq(config_get(config_find(&s.file, "relay"), "max_inflight"), "100");
    cr_expect_eq(config_get_kv(config_find(&s.file, "relay"), "max_inflight")->line, 0);
    cr_expect_str_eq(config_get(config_find(&s.file, "log"), "format"), "json");
    settings_free(&s);
}

/* Go's relay and its examples write ":50051" for every interface. */
Test(settings, an_empty_listen_host_is_every_interface)
{
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";

    cr_assert_eq(settings_load_string("relay.ini",
                                      "[relay]\nlisten = :50051\n[http]\nlisten = :2112\n" SINK,
                                      &s, err, sizeof err),
                 0, "%s", err);
    cr_expect_str_eq(s.listen, "0.0.0.0:50051");
    cr_expect_str_eq(s.http_listen, "0.0.0.0:2112");
    settings_free(&s);
}

Test(settings, every_value_read)
{
    const char *text = "[relay]\nlisten = unix:/run/relay.sock\nrelay_id = relay-eu-1\n"
                       "max_inflight = 7\nworkers = 3\nplugin_dir = /opt/p\n"
                       "max_message_bytes = 1024\nshutdown_grace_s = 0\n"
                       "max_sessions = 1\nmax_streams_per_connection = 1000000\n"
                       "keepalive_time_s = 0\nkeepalive_timeout_s = 3600\n"
                       "handshake_timeout_s = 600\n"
                       "[http]\nlisten =\n"
                       "[route]\nplugin = route-redis\nttl_s = 86400\nredis_addr = r:6379\n"
                       "[sink:b.2_x-y]\nplugin = sink-stdout\non_full = reject\nqueue = 10000000\n"
                       "[tls]\ncert_file = /c.pem\nkey_file = /k.pem\nclient_ca_file = /ca.pem\n"
                       "[auth]\nmode = bearer\nkeys_file = /etc/keys\n"
                       "[log]\nlevel = debug\nformat = text\n";
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";

    cr_assert_eq(settings_load_string("relay.ini", text, &s, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(s.listen, "unix:/run/relay.sock");
    cr_expect_str_eq(s.relay_id, "relay-eu-1");
    cr_expect_eq(s.max_inflight, 7);
    cr_expect_eq(s.workers, 3);
    cr_expect_str_eq(s.plugin_dir, "/opt/p");
    cr_expect_eq(s.max_message_bytes, 1024);
    cr_expect_eq(s.shutdown_grace_s, 0);
    cr_expect_eq(s.max_sessions, 1);
    cr_expect_eq(s.max_streams_per_connection, 1000000);
    cr_expect_eq(s.keepalive_time_s, 0);
    cr_expect_eq(s.keepalive_timeout_s, 3600);
    cr_expect_eq(s.handshake_timeout_s, 600);
    cr_expect_str_eq(s.http_listen, "");
    cr_expect_str_eq(s.route_plugin, "route-redis");
    cr_expect_eq(s.route_ttl_s, 86400);
    cr_expect_str_eq(config_get(s.route_section, "redis_addr"), "r:6379");
    cr_assert_eq(s.n_sinks, 1);
    cr_expect_str_eq(s.sinks[0].name, "b.2_x-y");
    cr_expect_eq(s.sinks[0].queue, 10000000);
    cr_expect_eq(s.sinks[0].on_full, ON_FULL_REJECT);
    cr_expect_str_eq(s.tls_cert_file, "/c.pem");
    cr_expect_str_eq(s.tls_key_file, "/k.pem");
    cr_expect_str_eq(s.tls_client_ca_file, "/ca.pem");
    cr_expect_str_eq(s.auth_mode, "bearer");
    cr_expect_str_eq(s.auth_keys_file, "/etc/keys");
    cr_expect_eq(s.log_level, AERO_LOG_DEBUG);
    cr_expect_eq(s.log_format, LOG_FORMAT_TEXT);
    cr_expect_eq(settings_validate_plugin_section(&s, s.route_section, &redis_table, err,
                                                  sizeof err),
                 0, "%s", err);
    cr_expect_str_eq(config_get(s.route_section, "redis_db"), "0");
    settings_free(&s);
}

struct bad_case {
    const char *name;
    const char *text;
    const char *expect;
};

/* [route] is always routes[0] (route-none by default); each [route:<name>]
 * follows in file order with its own plugin and section. */
Test(settings, named_routes_follow_route_in_file_order)
{
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";
    cr_assert_eq(settings_load_string("relay.ini",
                                      "[route:registry]\nplugin = route-registry\naddress = r:1\n"
                                      "[route]\nplugin = route-redis\n"
                                      "[route:b]\nplugin = route-none\n" SINK,
                                      &s, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(s.n_routes, 3);
    cr_expect_str_eq(s.routes[0].name, "");
    cr_expect_str_eq(s.routes[0].plugin, "route-redis");
    cr_expect_eq(s.routes[0].section, s.route_section);
    cr_expect_str_eq(s.routes[1].name, "registry");
    cr_expect_str_eq(s.routes[1].plugin, "route-registry");
    cr_expect_str_eq(s.routes[1].section->name, "route:registry");
    cr_expect_str_eq(config_get(s.routes[1].section, "address"), "r:1"); /* the plugin's key */
    cr_expect_str_eq(s.routes[2].name, "b");
    settings_free(&s);

    cr_assert_eq(settings_load_string("relay.ini", SINK, &s, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s.n_routes, 1);
    cr_expect_str_eq(s.routes[0].plugin, "route-none");
    settings_free(&s);
}

Test(settings, errors_have_exact_messages)
{
    static char long_sink[128];
    static const struct bad_case cases[] = {
        {"every error in file order, then the file's own", "[relay]\nworkers = 999\nlisten = x\n"
         "[bogus]\n[log]\nlevel = loud\n[tls]\ncert_file = /c\n",
         "relay.ini:2: [relay] workers: value \"999\" out of range (expected 0 to 256)\n"
         "relay.ini:4: [bogus] unknown section (valid: relay, http, route, route:<name>, sink:<name>, tls, auth, control, log)\n"
         "relay.ini:6: [log] level: invalid value \"loud\" (expected debug | info | warn | error)\n"
         "relay.ini:8: [tls] cert_file: set without key_file (set both or neither)\n"
         "relay.ini: no [sink:<name>] section: every frame would be acked OK and thrown away (add a sink, or set [relay] allow_no_sinks = true if that is what you want)"},
        {"unknown section", "[relay]\n[relays]\n",
         "relay.ini:2: [relays] unknown section (valid: relay, http, route, route:<name>, sink:<name>, tls, auth, control, log)"},
        {"bad route name", "[route:a/b]\nplugin = route-registry\n",
         "relay.ini:1: [route:a/b] invalid route name \"a/b\" (expected 1-64 of A-Z a-z 0-9 _ . -)"},
        {"named route without plugin", "[route:r]\nttl_s = 5\n",
         "relay.ini:1: [route:r] plugin: missing required key (the route plugin to load, e.g. route-registry)"},
        {"named route clashing with [route]'s plugin",
         "[route]\nplugin = route-redis\n[route:route-redis]\nplugin = route-registry\n",
         "relay.ini:3: [route:route-redis] name clashes with [route]'s plugin \"route-redis\" (both would log and count as route=\"route-redis\"): choose another name"},
        {"empty sink name", "[sink:]\nplugin = sink-stdout\n",
         "relay.ini:1: [sink:] invalid sink name \"\" (expected 1-64 of A-Z a-z 0-9 _ . -)"},
        {"bad sink name", "[sink:a/b]\nplugin = sink-stdout\n",
         "relay.ini:1: [sink:a/b] invalid sink name \"a/b\" (expected 1-64 of A-Z a-z 0-9 _ . -)"},
        {"sink name too long", long_sink, NULL /* built below */},
        {"duplicate sink", "[sink:a]\nplugin = sink-stdout\n[sink:a]\nplugin = sink-file\n",
         "relay.ini:3: [sink:a] duplicate section (first on line 1)"},
        {"bad match pattern", "[sink:a]\nplugin = sink-stdout\nmatch = HEARTBEAT, GPS/RAW\n",
         "relay.ini:3: [sink:a] match: invalid value \"HEARTBEAT, GPS/RAW\" (expected msg_name patterns, comma-separated, each 1-64 of A-Z a-z 0-9 _ and the wildcards * ?)"},
        {"empty exclude pattern", "[sink:a]\nplugin = sink-stdout\nexclude = A,,B\n",
         "relay.ini:3: [sink:a] exclude: invalid value \"A,,B\" (expected msg_name patterns, comma-separated, each 1-64 of A-Z a-z 0-9 _ and the wildcards * ?)"},
        {"bad unmatched", "[relay]\nunmatched = drop\n",
         "relay.ini:2: [relay] unmatched: invalid value \"drop\" (expected reject | ack)"},
        {"syntax error", "[relay]\nlisten\n",
         "relay.ini:2: syntax error: \"listen\" has no '=' (expected key = value)"},
        {"unknown relay key", "[relay]\nlisten = 0.0.0.0:50051\nlistne = x\n",
         "relay.ini:3: [relay] listne: unknown key (valid: listen, relay_id, max_inflight, workers, plugin_dir, max_message_bytes, shutdown_grace_s, max_sessions, max_streams_per_connection, keepalive_time_s, keepalive_timeout_s, handshake_timeout_s, stream_protocol, gen2_hold_s, max_raw_bytes, memory_limit_mb, allow_no_sinks, unmatched)"},
        {"unknown http key", "[http]\nport = 1\n", "relay.ini:2: [http] port: unknown key (valid: listen, unready_after_s)"},
        {"unknown log key", "[log]\ncolor = on\n", "relay.ini:2: [log] color: unknown key (valid: level, format, summary_interval_s)"},
        {"bad int", "[relay]\nmax_inflight = lots\n",
         "relay.ini:2: [relay] max_inflight: invalid value \"lots\" (expected an integer from 1 to 100000)"},
        {"max_inflight 0", "[relay]\nmax_inflight = 0\n",
         "relay.ini:2: [relay] max_inflight: value \"0\" out of range (expected 1 to 100000)"},
        {"workers range", "[relay]\nworkers = 257\n",
         "relay.ini:2: [relay] workers: value \"257\" out of range (expected 0 to 256)"},
        {"max_message_bytes range", "[relay]\nmax_message_bytes = 1023\n",
         "relay.ini:2: [relay] max_message_bytes: value \"1023\" out of range (expected 1024 to 67108864)"},
        {"max_raw_bytes range", "[relay]\nmax_raw_bytes = 0\n",
         "relay.ini:2: [relay] max_raw_bytes: value \"0\" out of range (expected 1 to 67108864)"},
        {"max_raw_bytes over max_message_bytes", "[relay]\nmax_raw_bytes = 16384\nmax_message_bytes = 8192\n",
         "relay.ini:2: [relay] max_raw_bytes: value \"16384\" over max_message_bytes (8192): a frame's raw_mavlink must fit in its message"},
        {"memory_limit_mb under the relay at rest", "[relay]\nmemory_limit_mb = 31\n",
         "relay.ini:2: [relay] memory_limit_mb: value \"31\" under 32: the relay alone takes about 16 MiB at rest (0: the default, sized for max_sessions)"},
        {"memory_limit_mb negative", "[relay]\nmemory_limit_mb = -1\n",
         "relay.ini:2: [relay] memory_limit_mb: value \"-1\" out of range (expected 0 to 16777216)"},
        {"max_raw_bytes over the default max_message_bytes", "[relay]\nmax_raw_bytes = 65537\n",
         "relay.ini:2: [relay] max_raw_bytes: value \"65537\" over max_message_bytes (65536): a frame's raw_mavlink must fit in its message"},
        {"grace range", "[relay]\nshutdown_grace_s = -1\n",
         "relay.ini:2: [relay] shutdown_grace_s: value \"-1\" out of range (expected 0 to 3600)"},
        {"max_sessions range", "[relay]\nmax_sessions = 0\n",
         "relay.ini:2: [relay] max_sessions: value \"0\" out of range (expected 1 to 10000000)"},
        {"max_streams range", "[relay]\nmax_streams_per_connection = 0\n",
         "relay.ini:2: [relay] max_streams_per_connection: value \"0\" out of range (expected 1 to 1000000)"},
        {"keepalive_time range", "[relay]\nkeepalive_time_s = 86401\n",
         "relay.ini:2: [relay] keepalive_time_s: value \"86401\" out of range (expected 0 to 86400)"},
        {"keepalive_timeout range", "[relay]\nkeepalive_timeout_s = 0\n",
         "relay.ini:2: [relay] keepalive_timeout_s: value \"0\" out of range (expected 1 to 3600)"},
        {"bad listen", "[relay]\nlisten = 50051\n",
         "relay.ini:2: [relay] listen: invalid value \"50051\" (expected host:port or unix:path, e.g. 0.0.0.0:50051)"},
        {"bad port", "[relay]\nlisten = 0.0.0.0:70000\n",
         "relay.ini:2: [relay] listen: invalid value \"0.0.0.0:70000\" (expected host:port or unix:path, e.g. 0.0.0.0:50051)"},
        {"empty listen", "[relay]\nlisten =\n",
         "relay.ini:2: [relay] listen: invalid value \"\" (expected host:port or unix:path, e.g. 0.0.0.0:50051)"},
        {"bad relay_id", "[relay]\nrelay_id = relay one\n",
         "relay.ini:2: [relay] relay_id: invalid value \"relay one\" (expected empty or 1-128 of A-Z a-z 0-9 . _ - :)"},
        {"bad http listen", "[http]\nlisten = localhost\n",
         "relay.ini:2: [http] listen: invalid value \"localhost\" (expected host:port, or empty for no HTTP server)"},
        {"ttl range", "[route]\nttl_s = 0\n",
         "relay.ini:2: [route] ttl_s: value \"0\" out of range (expected 1 to 86400)"},
        {"route plugin path", "[route]\nplugin = ../evil\n",
         "relay.ini:2: [route] plugin: invalid value \"../evil\" (expected a plugin name: 1-64 of A-Z a-z 0-9 _ . -, not starting with .)"},
        {"route plugin hidden file", "[route]\nplugin = .hidden\n",
         "relay.ini:2: [route] plugin: invalid value \".hidden\" (expected a plugin name: 1-64 of A-Z a-z 0-9 _ . -, not starting with .)"},
        {"route plugin empty", "[route]\nplugin =\n",
         "relay.ini:2: [route] plugin: invalid value \"\" (expected a plugin name: 1-64 of A-Z a-z 0-9 _ . -, not starting with .)"},
        {"sink without plugin", "[sink:a]\nqueue = 5\n",
         "relay.ini:1: [sink:a] plugin: missing required key (the sink plugin to load, e.g. sink-file)"},
        {"sink queue range", "[sink:a]\nplugin = sink-stdout\nqueue = 0\n",
         "relay.ini:3: [sink:a] queue: value \"0\" out of range (expected 1 to 10000000)"},
        {"sink on_full", "[sink:a]\nplugin = sink-stdout\non_full = drop\n",
         "relay.ini:3: [sink:a] on_full: invalid value \"drop\" (expected block | reject)"},
        {"log level", "[log]\nlevel = verbose\n",
         "relay.ini:2: [log] level: invalid value \"verbose\" (expected debug | info | warn | error)"},
        {"summary interval range", "[log]\nsummary_interval_s = -1\n",
         "relay.ini:2: [log] summary_interval_s: value \"-1\" out of range (expected 0 to 86400)"},
        {"log format", "[log]\nformat = xml\n",
         "relay.ini:2: [log] format: invalid value \"xml\" (expected json | text)"},
        {"auth mode", "[auth]\nmode = Bearer\n",
         "relay.ini:2: [auth] mode: invalid value \"Bearer\" (expected none | bearer)"},
        {"bearer without keys", "[auth]\nkeys_file =\nmode = bearer\n",
         "relay.ini:3: [auth] mode: bearer requires keys_file"},
        {"cert without key", "[tls]\ncert_file = /c.pem\n",
         "relay.ini:2: [tls] cert_file: set without key_file (set both or neither)"},
        {"key without cert", "[tls]\ncert_file =\nkey_file = /k.pem\n",
         "relay.ini:3: [tls] key_file: set without cert_file (set both or neither)"},
        {"client ca without tls", "[tls]\nclient_ca_file = /ca.pem\n",
         "relay.ini:2: [tls] client_ca_file: set without cert_file and key_file (client certificates need TLS)"},
        {"unknown tls key", "[tls]\ncert = x\n",
         "relay.ini:2: [tls] cert: unknown key (valid: cert_file, key_file, client_ca_file)"},
    };
    char long_expect[256];

    snprintf(long_sink, sizeof long_sink, "[sink:%065d]\nplugin = sink-stdout\n", 0);
    snprintf(long_expect, sizeof long_expect,
             "relay.ini:1: [sink:%065d] invalid sink name \"%065d\" (expected 1-64 of A-Z a-z 0-9 _ . -)",
             0, 0);
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        struct settings s;
        char err[4 * CONFIG_ERR_LEN] = "", text[512];
        const char *expect = cases[i].expect ? cases[i].expect : long_expect;
        /* a sink after the case, but for the case that shows the rule */
        snprintf(text, sizeof text, "%s%s", cases[i].text,
                 strstr(cases[i].expect ? cases[i].expect : "", "no [sink:") ? "" : SINK);
        cr_expect_eq(settings_load_string("relay.ini", text, &s, err, sizeof err), -1,
                     "case %s: loaded", cases[i].name);
        cr_expect_str_eq(err, expect, "case %s", cases[i].name);
        cr_expect_null(s.sinks, "case %s: freed", cases[i].name);
    }
}

/* An OK ack from a relay with no sink is a frame thrown away: refused
 * unless [relay] allow_no_sinks says the operator means it. */
Test(settings, no_sink_is_refused_unless_allowed)
{
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";

    cr_expect_eq(settings_load_string("relay.ini", "[relay]\nworkers = 1\n", &s, err, sizeof err),
                 -1);
    cr_expect_str_eq(err, "relay.ini: no [sink:<name>] section: every frame would be acked OK "
                          "and thrown away (add a sink, or set [relay] allow_no_sinks = true if "
                          "that is what you want)");
    cr_expect_eq(settings_load_string("relay.ini", "[relay]\nallow_no_sinks = false\n", &s, err,
                                      sizeof err),
                 -1);
    cr_expect_eq(settings_load_string("relay.ini", "[relay]\nallow_no_sinks = maybe\n", &s, err,
                                      sizeof err),
                 -1);
    cr_expect_str_eq(err, "relay.ini:2: [relay] allow_no_sinks: invalid value \"maybe\" (expected "
                          "true | false | yes | no | on | off | 1 | 0)\n"
                          "relay.ini: no [sink:<name>] section: every frame would be acked OK "
                          "and thrown away (add a sink, or set [relay] allow_no_sinks = true if "
                          "that is what you want)");
    cr_assert_eq(settings_load_string("relay.ini", "[relay]\nallow_no_sinks = yes\n", &s, err,
                                      sizeof err),
                 0, "%s", err);
    cr_expect_eq(s.n_sinks, 0);
    settings_free(&s);
    cr_assert_eq(settings_load_string("relay.ini", SINK, &s, err, sizeof err), 0, "%s", err);
    cr_expect_not(s.allow_no_sinks);
    settings_free(&s);
}

Test(settings, longest_sink_name_is_fine)
{
    char text[128];
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";

    snprintf(text, sizeof text, "[sink:%064d]\nplugin = sink-stdout\n", 0);
    cr_assert_eq(settings_load_string("relay.ini", text, &s, err, sizeof err), 0, "%s", err);
    cr_expect_eq(strlen(s.sinks[0].name), 64);
    settings_free(&s);
}

Test(settings, missing_file)
{
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";

    cr_expect_eq(settings_load("/nonexistent/relay.ini", &s, err, sizeof err), -1);
    cr_expect_str_eq(err, "/nonexistent/relay.ini: cannot read: No such file or directory");
}

Test(settings, plugin_keys_wait_for_the_plugin)
{
    const char *text = "[route]\nplugin = route-redis\nredis_addr = r:1\n"
                       "[sink:archive]\nplugin = sink-file\npath = /x\nfsync = sometimes\n";
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";

    cr_assert_eq(settings_load_string("relay.ini", text, &s, err, sizeof err), 0, "%s", err);
    cr_expect_eq(settings_validate_plugin_section(&s, s.sinks[0].section, &file_table, err,
                                                  sizeof err),
                 -1);
    cr_expect_str_eq(err,
                     "relay.ini:7: [sink:archive] fsync: invalid value \"sometimes\" (expected none | batch)");
    settings_free(&s);
}

static void expect_plugin_error(const char *text, int sink, const struct config_keys *keys,
                                const char *expect)
{
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";
    struct config_section *sec;
    char with_sink[512];

    snprintf(with_sink, sizeof with_sink, "%s" SINK, text);
    cr_assert_eq(settings_load_string("relay.ini", with_sink, &s, err, sizeof err), 0, "%s", err);
    sec = sink ? s.sinks[0].section : s.route_section;
    cr_expect_eq(settings_validate_plugin_section(&s, sec, keys, err, sizeof err), -1, "%s", text);
    cr_expect_str_eq(err, expect);
    settings_free(&s);
}

Test(settings, plugin_section_errors)
{
    expect_plugin_error("[sink:archive]\nplugin = sink-file\npth = /x\n", 1, &file_table,
                        "relay.ini:3: [sink:archive] pth: unknown key (valid: plugin, queue, on_full, match, exclude, path, prefix, rotate_bytes, rotate_interval_s, fsync)");
    expect_plugin_error("[sink:archive]\nplugin = sink-file\nrotate_bytes = 10\n", 1, &file_table,
                        "relay.ini:3: [sink:archive] rotate_bytes: value \"10\" out of range (expected 4096 to 9223372036854775807)");
    expect_plugin_error("[sink:c]\nplugin = sink-stdout\npath = /x\n", 1, NULL,
                        "relay.ini:3: [sink:c] path: unknown key (valid: plugin, queue, on_full, match, exclude)");
    expect_plugin_error("[route]\nplugin = route-redis\nredis_host = x\n", 0, &redis_table,
                        "relay.ini:3: [route] redis_host: unknown key (valid: plugin, ttl_s, redis_addr, redis_password, redis_db)");
    expect_plugin_error("[route]\nplugin = route-redis\nredis_db = 16\n", 0, &redis_table,
                        "relay.ini:3: [route] redis_db: value \"16\" out of range (expected 0 to 15)");
    /* route-none with leftover redis keys: they would silently do nothing */
    expect_plugin_error("[route]\nredis_addr = x\n", 0, NULL,
                        "relay.ini:2: [route] redis_addr: unknown key (valid: plugin, ttl_s)");
}

Test(settings, plugin_section_defaults_filled)
{
    const char *text = "[sink:archive]\nplugin = sink-file\nfsync = batch\n";
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";
    const struct config_section *sec;

    cr_assert_eq(settings_load_string("relay.ini", text, &s, err, sizeof err), 0, "%s", err);
    cr_assert_eq(settings_validate_plugin_section(&s, s.sinks[0].section, &file_table, err,
                                                  sizeof err),
                 0, "%s", err);
    sec = s.sinks[0].section;
    cr_expect_str_eq(config_get(sec, "fsync"), "batch");
    cr_expect_str_eq(config_get(sec, "prefix"), "telemetry");
    cr_expect_eq(config_get_kv(sec, "prefix")->line, 0);
    cr_expect_eq(config_get_int(sec, "rotate_interval_s", -1), 3600);
    cr_expect_str_eq(config_get(sec, "queue"), "4096");
    settings_free(&s);
}

Test(settings, not_a_plugin_section)
{
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";

    cr_assert_eq(settings_load_string("relay.ini", "[relay]\n" SINK, &s, err, sizeof err), 0,
                 "%s", err);
    cr_expect_eq(settings_validate_plugin_section(&s, config_find(&s.file, "relay"), NULL, err,
                                                  sizeof err),
                 -1);
    cr_expect_str_eq(err, "relay.ini:1: [relay] not a plugin section");
    settings_free(&s);
}

/* Copy len bytes to end exactly at an inaccessible page. */
static void *guarded_copy(const void *src, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t span = (len + page - 1) / page * page;
    char *m = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    cr_assert(m != MAP_FAILED);
    cr_assert_eq(mprotect(m + span, page, PROT_NONE), 0);
    memcpy(m + span - len, src, len);
    return m + span - len;
}

/* A key as an imagined older minor declared it (no choices/bounds/required). */
struct old_key {
    const char *name;
    aero_key_type type;
    const char *default_value;
    const char *help;
};

Test(settings, older_plugin_table_read_within_key_size)
{
    static const struct old_key old[] = {
        {"path", AERO_KEY_STRING, "./old", "where"},
        {"count", AERO_KEY_INT, "3", "how many"},
    };
    struct config_keys t = {guarded_copy(old, sizeof old), N_ELEMS(old), sizeof(struct old_key)};
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";

    cr_assert_lt(sizeof(struct old_key), sizeof(aero_config_key));
    cr_assert_eq(settings_load_string("relay.ini", "[sink:o]\nplugin = sink-old\ncount = 9\n", &s,
                                      err, sizeof err),
                 0, "%s", err);
    cr_expect_eq(settings_validate_plugin_section(&s, s.sinks[0].section, &t, err, sizeof err), 0,
                 "%s", err);
    cr_expect_str_eq(config_get(s.sinks[0].section, "path"), "./old");
    cr_expect_str_eq(config_get(s.sinks[0].section, "count"), "9");
    settings_free(&s);

    expect_plugin_error("[sink:o]\nplugin = sink-old\ncount = x\n", 1, &t,
                        "relay.ini:3: [sink:o] count: invalid value \"x\" (expected an integer)");
    expect_plugin_error("[sink:o]\nplugin = sink-old\ncolor = x\n", 1, &t,
                        "relay.ini:3: [sink:o] color: unknown key (valid: plugin, queue, on_full, match, exclude, path, count)");
}

/* ------------------------------------------------------------ relay_id */

static char *load_relay_id(const char *text)
{
    static char id[256];
    struct settings s;
    char err[CONFIG_ERR_LEN] = "", with_sink[512];

    snprintf(with_sink, sizeof with_sink, "%s" SINK, text);
    cr_assert_eq(settings_load_string("relay.ini", with_sink, &s, err, sizeof err), 0, "%s", err);
    snprintf(id, sizeof id, "%s", s.relay_id);
    settings_free(&s);
    return id;
}

Test(settings, relay_id_key_wins_over_env)
{
    setenv("RELAY_ID", "from-env", 1);
    cr_expect_str_eq(load_relay_id("[relay]\nrelay_id = from-key\n"), "from-key");
}

Test(settings, relay_id_from_env)
{
    setenv("RELAY_ID", "from-env:1", 1);
    cr_expect_str_eq(load_relay_id("[relay]\nrelay_id =\n"), "from-env:1");
    cr_expect_str_eq(load_relay_id(""), "from-env:1");
}

Test(settings, relay_id_from_hostname)
{
    unsetenv("RELAY_ID");
    cr_expect_str_eq(load_relay_id(""), this_hostname());
    setenv("RELAY_ID", "", 1);
    cr_expect_str_eq(load_relay_id(""), this_hostname(), "empty RELAY_ID counts as unset");
}

Test(settings, relay_id_env_invalid)
{
    struct settings s;
    char err[CONFIG_ERR_LEN] = "";

    setenv("RELAY_ID", "bad id", 1);
    cr_expect_eq(settings_load_string("relay.ini", SINK, &s, err, sizeof err), -1);
    cr_expect_str_eq(err, "relay.ini: [relay] relay_id: RELAY_ID environment value \"bad id\" is invalid (expected 1-128 of A-Z a-z 0-9 . _ - :)");
}

Test(settings, core_tables_exported)
{
    cr_expect_eq(settings_sink_core_keys.n_keys, 5);
    cr_expect_eq(settings_sink_core_keys.key_size, sizeof(aero_config_key));
    cr_expect_str_eq(settings_sink_core_keys.keys[0].name, "plugin");
    cr_expect(settings_sink_core_keys.keys[0].required);
    cr_expect_eq(settings_route_core_keys.n_keys, 2);
    cr_expect_str_eq(settings_route_core_keys.keys[0].default_value, "route-none");
}

/* [relay] max_raw_bytes: 16384 unless set; a smaller max_message_bytes
 * lowers the default with it, while a set value must fit (bad_values). */
Test(settings, max_raw_bytes_default_set_and_within_max_message_bytes)
{
    static const struct {
        const char *text;
        int64_t want;
    } cases[] = {
        {SINK, 16384},
        {"[relay]\nmax_raw_bytes = 1\n" SINK, 1},
        {"[relay]\nmax_raw_bytes = 65536\n" SINK, 65536},
        {"[relay]\nmax_message_bytes = 8192\n" SINK, 8192},
        {"[relay]\nmax_message_bytes = 8192\nmax_raw_bytes = 8192\n" SINK, 8192},
        {"[relay]\nmax_message_bytes = 1048576\nmax_raw_bytes = 1048576\n" SINK, 1048576},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct settings s;
        char err[CONFIG_ERR_LEN] = "";
        cr_assert_eq(settings_load_string("relay.ini", cases[i].text, &s, err, sizeof err), 0,
                     "case %zu: %s", i, err);
        cr_expect_eq(s.max_raw_bytes, cases[i].want, "case %zu", i);
        settings_free(&s);
    }
}

/* [relay] memory_limit_mb: unset or 0 is sized for max_sessions (128 MiB
 * plus 32 KiB a session); a set value is taken as is (bad_values). */
Test(settings, memory_limit_mb_defaults_to_max_sessions_and_takes_a_set_value)
{
    static const struct {
        const char *text;
        int64_t want;
    } cases[] = {
        {SINK, 3253},
        {"[relay]\nmemory_limit_mb = 0\n" SINK, 3253},
        {"[relay]\nmax_sessions = 1000\n" SINK, 159},
        {"[relay]\nmax_sessions = 10000000\n" SINK, 312628},
        {"[relay]\nmemory_limit_mb = 32\n" SINK, 32},
        {"[relay]\nmemory_limit_mb = 512\nmax_sessions = 1000\n" SINK, 512},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct settings s;
        char err[CONFIG_ERR_LEN] = "";
        cr_assert_eq(settings_load_string("relay.ini", cases[i].text, &s, err, sizeof err), 0,
                     "case %zu: %s", i, err);
        cr_expect_eq(s.memory_limit_mb, cases[i].want, "case %zu: %lld", i,
                     (long long)s.memory_limit_mb);
        settings_free(&s);
    }
}
