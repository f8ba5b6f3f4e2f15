/*
 * settings.c - the core's relay.ini keys (SPEC.md section 6): which sections
 * exist, the keys each takes, the checks that span keys, and the typed
 * struct settings the rest of the core reads. Main thread, at start-up only.
 * Reads only RELAY_ID from the environment; plugin keys are not its business.
 */
#include "settings.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEYS(array) {(array), sizeof(array) / sizeof((array)[0]), sizeof(aero_config_key)}

#define ID_CHARS "A-Z a-z 0-9 . _ - :"

static const aero_config_key relay_keys[] = {
    {.name = "listen", .type = AERO_KEY_STRING, .default_value = "0.0.0.0:50051",
     .help = "gRPC listen address, host:port or unix:path"},
    {.name = "relay_id", .type = AERO_KEY_STRING, .default_value = "",
     .help = "this relay's id; empty: RELAY_ID env, else hostname, else \"relay\""},
    {.name = "max_inflight", .type = AERO_KEY_INT, .default_value = "100",
     .help = "unacked frames per agent, returned by Register", .min = 1, .max = 100000},
    {.name = "workers", .type = AERO_KEY_INT, .default_value = "0",
     .help = "gRPC threads; 0 = the CPUs the relay may run on", .min = 0, .max = 256},
    {.name = "plugin_dir", .type = AERO_KEY_STRING, .default_value = "",
     .help = "where plugins are loaded from; empty: the installed plugin dir"},
    {.name = "max_message_bytes", .type = AERO_KEY_INT, .default_value = "65536",
     .help = "largest gRPC message accepted", .min = 1024, .max = 67108864},
    {.name = "shutdown_grace_s", .type = AERO_KEY_INT, .default_value = "10",
     .help = "seconds streams get to finish on SIGTERM", .min = 0, .max = 3600},
    {.name = "max_sessions", .type = AERO_KEY_INT, .default_value = "100000",
     .help = "sessions in the table; Register of one more agent gets RESOURCE_EXHAUSTED",
     .min = 1, .max = 10000000},
    {.name = "max_streams_per_connection", .type = AERO_KEY_INT, .default_value = "1000",
     .help = "concurrent calls on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS)",
     .min = 1, .max = 1000000},
    {.name = "keepalive_time_s", .type = AERO_KEY_INT, .default_value = "30",
     .help = "seconds between the relay's HTTP/2 pings to each agent; 0 = never ping",
     .min = 0, .max = 86400},
    {.name = "keepalive_timeout_s", .type = AERO_KEY_INT, .default_value = "10",
     .help = "seconds a ping may go unanswered before the connection is dropped",
     .min = 1, .max = 3600},
    {.name = "handshake_timeout_s", .type = AERO_KEY_INT, .default_value = "20",
     .help = "seconds a new connection gets to finish TLS and the HTTP/2 preface",
     .min = 1, .max = 600},
    {.name = "stream_protocol", .type = AERO_KEY_ENUM, .default_value = "auto",
     .help = "TelemetryStream generation: auto (header, else first message), seed, multiplexed",
     .choices = "auto|seed|multiplexed"},
    {.name = "gen2_hold_s", .type = AERO_KEY_INT, .default_value = "10",
     .help = "longest a generation-2 frame's ack is held for a passing condition; 0 = refuse at once",
     .min = 0, .max = 600},
    {.name = "max_raw_bytes", .type = AERO_KEY_INT, .default_value = "16384",
     .help = "largest raw_mavlink of a frame (bytes), at most max_message_bytes; unset: 16384, "
             "or max_message_bytes if smaller",
     .min = 1, .max = 67108864},
    {.name = "memory_limit_mb", .type = AERO_KEY_INT, .default_value = "0",
     .help = "resident memory (MiB) the relay keeps under by trimming its heap and shedding the "
             "heaviest connection; 0: 128 + 32 KiB per max_sessions (3253 for 100000)",
     .min = 0, .max = 16777216},
    {.name = "allow_no_sinks", .type = AERO_KEY_BOOL, .default_value = "false",
     .help = "start with no [sink:*] section (every frame acked OK and thrown away)"},
    {.name = "unmatched", .type = AERO_KEY_ENUM, .default_value = "reject",
     .help = "a frame no sink's match/exclude takes: reject (PERMANENT_ERROR) or ack (OK, "
             "thrown away)",
     .choices = "reject|ack"},
};

static const aero_config_key http_keys[] = {
    {.name = "listen", .type = AERO_KEY_STRING, .default_value = "0.0.0.0:2112",
     .help = "metrics and health address, host:port; empty: no HTTP server"},
    {.name = "unready_after_s", .type = AERO_KEY_INT, .default_value = "30",
     .help = "/readyz answers 503 once a sink has refused every frame this long; 0 = never",
     .min = 0, .max = 86400},
};

static const aero_config_key route_keys[] = {
    {.name = "plugin", .type = AERO_KEY_STRING, .default_value = "route-none",
     .help = "route publisher plugin: route-none, route-redis or route-registry"},
    {.name = "ttl_s", .type = AERO_KEY_INT, .default_value = "45",
     .help = "route key lifetime in seconds", .min = 1, .max = 86400},
};

/* [route:<name>]: one more route publisher beside [route]; its plugin must
 * be named (no default: a second route-none would be pointless). */
static const aero_config_key named_route_keys[] = {
    {.name = "plugin", .type = AERO_KEY_STRING, .default_value = NULL,
     .help = "the route plugin to load, e.g. route-registry", .required = 1},
    {.name = "ttl_s", .type = AERO_KEY_INT, .default_value = "45",
     .help = "route key lifetime in seconds (the plugin's; sessions expire by [route]'s)",
     .min = 1, .max = 86400},
};

static const aero_config_key sink_keys[] = {
    {.name = "plugin", .type = AERO_KEY_STRING, .default_value = NULL,
     .help = "the sink plugin to load, e.g. sink-file", .required = 1},
    {.name = "queue", .type = AERO_KEY_INT, .default_value = "4096",
     .help = "frames queued for this sink", .min = 1, .max = 10000000},
    {.name = "on_full", .type = AERO_KEY_ENUM, .default_value = "block",
     .help = "when the queue is full: block the stream or reject the frame",
     .choices = "block|reject"},
    {.name = "match", .type = AERO_KEY_STRING, .default_value = "",
     .help = "msg_name patterns (* and ?, any case, comma-separated) this sink takes; "
             "empty: every frame"},
    {.name = "exclude", .type = AERO_KEY_STRING, .default_value = "",
     .help = "msg_name patterns this sink never takes (applied after match)"},
};

static const aero_config_key tls_keys[] = {
    {.name = "cert_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "PEM server certificate chain; with key_file turns TLS on"},
    {.name = "key_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "PEM private key of cert_file"},
    {.name = "client_ca_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "PEM CA bundle; set: clients must present a certificate it signed"},
};

static const aero_config_key auth_keys[] = {
    {.name = "mode", .type = AERO_KEY_ENUM, .default_value = "none",
     .help = "none, or bearer: API keys from keys_file", .choices = "none|bearer"},
    {.name = "keys_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "lines: <key> <agents: * | glob | -> [admin]"},
};

static const aero_config_key control_keys[] = {
    {.name = "client_ca_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "PEM CA that signs control-plane clients; empty: control disabled (needs [tls])"},
    {.name = "allowed_identities", .type = AERO_KEY_STRING, .default_value = "",
     .help = "comma-separated: certificate CN, DNS SAN or URI SAN (e.g. spiffe://aero-arc/api)"},
    {.name = "command_timeout_s", .type = AERO_KEY_INT, .default_value = "60",
     .help = "longest wait for an agent's result when the caller sets no shorter deadline",
     .min = 1, .max = 3600},
    {.name = "agent_mappings_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "lines: <agent_id> <operator_id> <aircraft_id>; '#' comments"},
};

static const aero_config_key log_keys[] = {
    {.name = "level", .type = AERO_KEY_ENUM, .default_value = "info",
     .help = "lowest level logged", .choices = "debug|info|warn|error"},
    {.name = "format", .type = AERO_KEY_ENUM, .default_value = "json",
     .help = "json: one object per line; text: for humans", .choices = "json|text"},
    {.name = "summary_interval_s", .type = AERO_KEY_INT, .default_value = "60",
     .help = "seconds between summary lines at info (sessions, frames/s, acks, sinks); 0 = none",
     .min = 0, .max = 86400},
};

const struct config_keys settings_sink_core_keys = KEYS(sink_keys);
const struct config_keys settings_route_core_keys = KEYS(route_keys);
const struct config_keys settings_named_route_core_keys = KEYS(named_route_keys);

/* SEC_NAMED_ROUTE and SEC_SINK are prefixes ("route:", "sink:"). */
enum section_kind { SEC_PLAIN, SEC_ROUTE, SEC_NAMED_ROUTE, SEC_SINK };

struct section_def {
    const char *name;
    enum section_kind kind;
    struct config_keys keys;
};

/* In the order the "valid sections" message lists them. */
static const struct section_def section_defs[] = {
    {"relay", SEC_PLAIN, KEYS(relay_keys)},
    {"http", SEC_PLAIN, KEYS(http_keys)},
    {"route", SEC_ROUTE, KEYS(route_keys)},
    {"route:", SEC_NAMED_ROUTE, KEYS(named_route_keys)},
    {"sink:", SEC_SINK, KEYS(sink_keys)},
    {"tls", SEC_PLAIN, KEYS(tls_keys)},
    {"auth", SEC_PLAIN, KEYS(auth_keys)},
    {"control", SEC_PLAIN, KEYS(control_keys)},
    {"log", SEC_PLAIN, KEYS(log_keys)},
};
#define N_SECTION_DEFS (sizeof section_defs / sizeof section_defs[0])

static const struct section_def *section_def_of(const char *name)
{
    for (size_t i = 0; i < N_SECTION_DEFS; i++) {
        const struct section_def *d = &section_defs[i];
        bool prefix = d->kind == SEC_SINK || d->kind == SEC_NAMED_ROUTE;
        if (prefix ? strncmp(name, d->name, strlen(d->name)) == 0 : strcmp(name, d->name) == 0)
            return d;
    }
    return NULL;
}

/* ----------------------------------------------------------- value checks */

static int in_set(char c, const char *extra)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr(extra, c));
}

static int valid_name(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!in_set(s[i], extra))
            return 0;
    return 1;
}

/* relay_id shares the agent-id alphabet: it lands in Redis values and
 * DroneStatus, where operators match it against agent ids. */
static int valid_relay_id(const char *s)
{
    return valid_name(s, 128, "._-:");
}

/* "host:port" with a port of 0..65535 (0: any free port, for tests); an
 * empty host (":50051", as the Go relay's configurations write it) is
 * every interface. */
static int valid_host_port(const char *s)
{
    const char *colon = strrchr(s, ':');
    size_t digits;

    if (!colon)
        return 0;
    digits = strlen(colon + 1);
    if (digits == 0 || digits > 5 || strspn(colon + 1, "0123456789") != digits)
        return 0;
    return atoi(colon + 1) <= 65535;
}

static int fail_value(const struct config_file *f, const struct config_section *s,
                      const char *key, const char *expected, char *err, size_t errlen)
{
    const struct config_kv *kv = config_get_kv(s, key);
    char q[CONFIG_ERR_LEN];

    return config_errorf(err, errlen, f->path, kv && kv->line ? kv->line : s->line, s->name,
                         key, "invalid value %s (expected %s)",
                         config_quote(q, sizeof q, kv ? kv->value : ""), expected);
}

static int line_of(const struct config_section *s, const char *key)
{
    const struct config_kv *kv = config_get_kv(s, key);
    return kv && kv->line ? kv->line : s->line;
}

static int is_set(const struct config_section *s, const char *key)
{
    const char *v = config_get(s, key);
    return v && v[0];
}

int64_t settings_default_memory_limit_mb(int64_t max_sessions)
{
    return 128 + max_sessions * 32 / 1024;
}

static int check_relay(const struct config_file *f, const struct config_section *s, char *err,
                       size_t errlen)
{
    const char *listen = config_get(s, "listen"), *id = config_get(s, "relay_id");

    if (strncmp(listen, "unix:", 5) == 0 ? listen[5] == '\0' : !valid_host_port(listen))
        return fail_value(f, s, "listen", "host:port or unix:path, e.g. 0.0.0.0:50051", err,
                          errlen);
    if (id[0] && !valid_relay_id(id))
        return fail_value(f, s, "relay_id", "empty or 1-128 of " ID_CHARS, err, errlen);
    /* A set max_raw_bytes must fit in a message; the default shrinks to it. */
    const struct config_kv *raw = config_get_kv(s, "max_raw_bytes");
    long long max_msg = config_get_int(s, "max_message_bytes", 65536);
    char q[CONFIG_ERR_LEN];
    if (raw && raw->line && config_get_int(s, "max_raw_bytes", 16384) > max_msg)
        return config_errorf(err, errlen, f->path, raw->line, s->name, "max_raw_bytes",
                             "value %s over max_message_bytes (%lld): a frame's raw_mavlink "
                             "must fit in its message",
                             config_quote(q, sizeof q, raw->value), max_msg);
    /* The relay takes ~16 MiB at rest: a smaller limit would shed agents
     * from the first one on. */
    const struct config_kv *mem = config_get_kv(s, "memory_limit_mb");
    long long mem_mb = config_get_int(s, "memory_limit_mb", 0);
    if (mem && mem->line && mem_mb > 0 && mem_mb < SETTINGS_MEMORY_LIMIT_MIN_MB)
        return config_errorf(err, errlen, f->path, mem->line, s->name, "memory_limit_mb",
                             "value %s under %d: the relay alone takes about 16 MiB at rest "
                             "(0: the default, sized for max_sessions)",
                             config_quote(q, sizeof q, mem->value),
                             SETTINGS_MEMORY_LIMIT_MIN_MB);
    return 0;
}

static int check_http(const struct config_file *f, const struct config_section *s, char *err,
                      size_t errlen)
{
    const char *listen = config_get(s, "listen");

    if (listen[0] && !valid_host_port(listen))
        return fail_value(f, s, "listen", "host:port, or empty for no HTTP server", err,
                          errlen);
    return 0;
}

/* Plugin names become file names in plugin_dir: no "/", no leading "."
 * (the same rule as plugin_loader.c, caught here so --check names the line). */
static int check_plugin_name(const struct config_file *f, const struct config_section *s,
                             char *err, size_t errlen)
{
    const char *v = config_get(s, "plugin");

    if (!valid_name(v, 64, "_.-") || v[0] == '.')
        return fail_value(f, s, "plugin",
                          "a plugin name: 1-64 of A-Z a-z 0-9 _ . -, not starting with .", err,
                          errlen);
    return 0;
}

/* A match/exclude list: comma-separated msg_name patterns, each 1-64 of
 * A-Z a-z 0-9 _ * ? (spaces around commas allowed); empty: none. */
static bool patterns_valid(const char *v)
{
    while (*v) {
        v += strspn(v, " \t");
        size_t n = strcspn(v, ",");
        size_t k = n;
        while (k > 0 && (v[k - 1] == ' ' || v[k - 1] == '\t'))
            k--;
        if (k == 0 || k > 64 || strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                          "0123456789_*?") != k)
            return false;
        v += n + (v[n] == ',');
    }
    return true;
}

static int check_sink(const struct config_file *f, const struct config_section *s, char *err,
                      size_t errlen)
{
    static const char *const lists[] = {"match", "exclude"};
    if (check_plugin_name(f, s, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < 2; i++)
        if (!patterns_valid(config_get(s, lists[i])))
            return fail_value(f, s, lists[i],
                              "msg_name patterns, comma-separated, each 1-64 of A-Z a-z 0-9 _ "
                              "and the wildcards * ?",
                              err, errlen);
    return 0;
}

static int check_tls(const struct config_file *f, const struct config_section *s, char *err,
                     size_t errlen)
{
    int cert = is_set(s, "cert_file"), key = is_set(s, "key_file");

    if (cert && !key)
        return config_errorf(err, errlen, f->path, line_of(s, "cert_file"), s->name,
                             "cert_file", "set without key_file (set both or neither)");
    if (key && !cert)
        return config_errorf(err, errlen, f->path, line_of(s, "key_file"), s->name, "key_file",
                             "set without cert_file (set both or neither)");
    if (is_set(s, "client_ca_file") && !cert)
        return config_errorf(err, errlen, f->path, line_of(s, "client_ca_file"), s->name,
                             "client_ca_file",
                             "set without cert_file and key_file (client certificates need TLS)");
    return 0;
}

static int check_auth(const struct config_file *f, const struct config_section *s, char *err,
                      size_t errlen)
{
    if (strcmp(config_get(s, "mode"), "bearer") == 0 && !is_set(s, "keys_file"))
        return config_errorf(err, errlen, f->path, line_of(s, "mode"), s->name, "mode",
                             "bearer requires keys_file");
    return 0;
}

/* One allowed identity: a CN or DNS name (no control characters or
 * commas; a CN may hold spaces and non-ASCII, "Aero Arc API") or a URI
 * (scheme "://" rest). */
static int valid_identity(const char *p, size_t n)
{
    if (n == 0 || n > 1024)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] == 0x7f || p[i] == ',')
            return 0;
    const char *sep = NULL;
    for (size_t i = 0; i + 3 <= n && !sep; i++)
        if (memcmp(p + i, "://", 3) == 0)
            sep = p + i;
    if (!sep)
        return 1; /* a CN or DNS name */
    if (sep == p || !((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z')))
        return 0;
    for (const char *c = p; c < sep; c++)
        if (!in_set(*c, "+.-"))
            return 0;
    return (size_t)(p + n - sep) > 3; /* something after "://" */
}

static int check_control(const struct config_file *f, const struct config_section *s, char *err,
                         size_t errlen)
{
    const struct config_section *tls = config_find(f, "tls");
    int ca = is_set(s, "client_ca_file");
    char q[CONFIG_ERR_LEN];

    if (ca && !(tls && is_set(tls, "cert_file")))
        return config_errorf(err, errlen, f->path, line_of(s, "client_ca_file"), s->name,
                             "client_ca_file",
                             "set without [tls] cert_file and key_file (control clients "
                             "authenticate with TLS certificates)");
    /* Either half alone starts (SPEC.md section 10: no CA is control
     * disabled; no identity allows nobody); main.c warns. */
    const char *v = config_get(s, "allowed_identities");
    while (v && *v) {
        size_t n = strcspn(v, ",");
        const char *a = v, *b = v + n;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (!valid_identity(a, (size_t)(b - a))) {
            char item[CONFIG_ERR_LEN];
            size_t len = (size_t)(b - a) < sizeof item - 1 ? (size_t)(b - a) : sizeof item - 1;
            memcpy(item, a, len);
            item[len] = '\0';
            return config_errorf(err, errlen, f->path, line_of(s, "allowed_identities"), s->name,
                                 "allowed_identities",
                                 "invalid identity %s (expected a certificate CN, DNS name or "
                                 "URI such as spiffe://aero-arc/api, comma-separated)",
                                 config_quote(q, sizeof q, item));
        }
        v += n + (v[n] == ',');
    }
    return 0;
}

/* Checks beyond one key's type; run after defaults are filled. */
static int check_section(const struct config_file *f, const struct config_section *s,
                         const struct section_def *d, char *err, size_t errlen)
{
    if (d->kind == SEC_SINK)
        return check_sink(f, s, err, errlen);
    if (d->kind != SEC_PLAIN)
        return check_plugin_name(f, s, err, errlen);
    if (strcmp(d->name, "relay") == 0)
        return check_relay(f, s, err, errlen);
    if (strcmp(d->name, "http") == 0)
        return check_http(f, s, err, errlen);
    if (strcmp(d->name, "tls") == 0)
        return check_tls(f, s, err, errlen);
    if (strcmp(d->name, "auth") == 0)
        return check_auth(f, s, err, errlen);
    if (strcmp(d->name, "control") == 0)
        return check_control(f, s, err, errlen);
    return 0;
}

/* ------------------------------------------------------------- sections */

static int check_section_name(const struct config_file *f, const struct config_section *s,
                              char *err, size_t errlen)
{
    const struct section_def *d = section_def_of(s->name);
    char q[CONFIG_ERR_LEN];

    if (!d)
        return config_errorf(err, errlen, f->path, s->line, s->name, NULL,
                             "unknown section (valid: relay, http, route, route:<name>, "
                             "sink:<name>, tls, auth, control, log)");
    if (d->kind == SEC_SINK && !valid_name(s->name + 5, 64, "_.-"))
        return config_errorf(err, errlen, f->path, s->line, s->name, NULL,
                             "invalid sink name %s (expected 1-64 of A-Z a-z 0-9 _ . -)",
                             config_quote(q, sizeof q, s->name + 5));
    if (d->kind == SEC_NAMED_ROUTE && !valid_name(s->name + 6, 64, "_.-"))
        return config_errorf(err, errlen, f->path, s->line, s->name, NULL,
                             "invalid route name %s (expected 1-64 of A-Z a-z 0-9 _ . -)",
                             config_quote(q, sizeof q, s->name + 6));
    return 0;
}

/* Sections [from, to) in file order, every error added to err (so they
 * are listed in file order): a section's name, then each of its keys, then
 * the checks across its keys (only once those keys are valid: they read
 * the values). Keys of [route]/[sink:*] that the core does not declare are
 * the plugin's: checked once it is loaded (settings_validate_plugin_section).
 * Returns how many sections failed. */
static unsigned validate_sections(struct config_file *f, size_t from, size_t to, char *err,
                                  size_t errlen)
{
    char *msg = malloc(errlen > CONFIG_ERR_LEN ? errlen : CONFIG_ERR_LEN);
    size_t cap = errlen > CONFIG_ERR_LEN ? errlen : CONFIG_ERR_LEN;
    unsigned failed = 0;

    if (!msg) {
        config_error_add(err, errlen, "out of memory");
        return 1;
    }
    for (size_t i = from; i < to; i++) {
        struct config_section *s = &f->sections[i];
        const struct section_def *d = section_def_of(s->name);
        if (check_section_name(f, s, msg, cap) < 0 ||
            config_validate_section_flags(f, s, &d->keys, 1,
                                          d->kind == SEC_PLAIN ? 0 : CONFIG_ALLOW_UNKNOWN, msg,
                                          cap) < 0 ||
            check_section(f, s, d, msg, cap) < 0) {
            config_error_add(err, errlen, msg);
            failed++;
        }
    }
    free(msg);
    return failed;
}

/* An OK ack says a sink has the frame: with none, every ack would be a lie.
 * Counts [sink:*] headers, valid or not, so it holds with other errors. */
static int check_some_sink(const struct config_file *f, char *err, size_t errlen)
{
    const struct config_section *relay = config_find(f, "relay");
    int allowed = 0;

    for (size_t i = 0; i < f->n_sections; i++)
        if (strncmp(f->sections[i].name, "sink:", 5) == 0)
            return 0;
    if (relay && config_parse_bool(config_get(relay, "allow_no_sinks"), &allowed) == 0 &&
        allowed)
        return 0;
    return config_errorf(err, errlen, f->path, 0, NULL, NULL,
                         "no [sink:<name>] section: every frame would be acked OK and thrown "
                         "away (add a sink, or set [relay] allow_no_sinks = true if that is "
                         "what you want)");
}

/* Every section but [sink:*] and [route:*] exists afterwards, so defaults
 * land somewhere and route_section is never NULL. */
static int add_missing_sections(struct config_file *f, char *err, size_t errlen)
{
    for (size_t i = 0; i < N_SECTION_DEFS; i++) {
        const struct section_def *d = &section_defs[i];
        if (d->kind == SEC_SINK || d->kind == SEC_NAMED_ROUTE || config_find(f, d->name))
            continue;
        if (!config_add_section(f, d->name, 0))
            return config_errorf(err, errlen, f->path, 0, d->name, NULL, "out of memory");
    }
    return 0;
}

/* ---------------------------------------------------------- typed values */

static char *dup_value(const struct config_file *f, const char *section, const char *key)
{
    return strdup(config_get(config_find(f, section), key));
}

/* A listen address as the relay binds and logs it: ":port" (Go's form for
 * every interface) becomes "0.0.0.0:port", the default's form (gRPC binds
 * it on every IPv4 and IPv6 address, the HTTP server on every IPv4 one). */
static char *dup_listen(const struct config_file *f, const char *section)
{
    const char *v = config_get(config_find(f, section), "listen");
    if (v[0] != ':')
        return strdup(v);
    size_t n = strlen(v) + sizeof("0.0.0.0");
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "0.0.0.0%s", v);
    return s;
}

/* Key if set, else RELAY_ID, else the hostname, else "relay". 0 or -1. */
static int resolve_relay_id(struct settings *out, char *err, size_t errlen)
{
    const struct config_section *s = config_find(&out->file, "relay");
    const char *id = config_get(s, "relay_id"), *env = getenv("RELAY_ID");
    char host[256] = "", q[CONFIG_ERR_LEN];

    if (!id[0] && env && env[0]) {
        if (!valid_relay_id(env))
            return config_errorf(err, errlen, out->file.path, 0, "relay", "relay_id",
                                 "RELAY_ID environment value %s is invalid (expected 1-128 of "
                                 ID_CHARS ")", config_quote(q, sizeof q, env));
        id = env;
    }
    out->relay_id_stable = id[0] != '\0';
    if (!id[0] && gethostname(host, sizeof host - 1) == 0 && valid_relay_id(host))
        id = host;
    out->relay_id = strdup(id[0] ? id : "relay");
    if (!out->relay_id)
        return config_errorf(err, errlen, out->file.path, 0, NULL, NULL, "out of memory");
    return 0;
}

static int resolve_workers(const struct config_section *relay)
{
    long w = (long)config_get_int(relay, "workers", 0);

    /* 0: one per CPU it may run on, and at least two: the second, parked
     * until needed, is what lets a worker write a fast sink inline (at
     * most workers - 1 do). Measured on one core (relay pinned, 3 runs,
     * medians): light load 22% more acks/s and 43% less CPU per frame
     * with two; throughput 10% less (docs/benchmarks.md). */
    if (w == 0) {
        long cpus = settings_usable_cpus();
        w = cpus < 2 ? 2 : cpus;
    }
    return w < 1 ? 1 : (int)w;
}

long settings_usable_cpus(void)
{
    /* The CPUs this process may run on (taskset, a container's cpuset),
     * not every CPU of the host: 64 workers in a 4-CPU container would be
     * 60 threads that can never run at once. */
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    return sysconf(_SC_NPROCESSORS_ONLN);
}

static aero_log_level level_of(const char *v)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};

    for (int i = 0; i < 4; i++)
        if (strcmp(v, names[i]) == 0)
            return (aero_log_level)i;
    return AERO_LOG_INFO;
}

/* The common keys of a [sink:*] section, as validation left them (a
 * plugin's own defaults included: settings_validate_plugin_section). */
static void sink_settings_read(struct sink_settings *k, struct config_section *s)
{
    k->queue = (size_t)config_get_int(s, "queue", 4096);
    k->on_full = strcmp(config_get(s, "on_full"), "reject") == 0 ? ON_FULL_REJECT : ON_FULL_BLOCK;
    k->match = config_get(s, "match");
    k->exclude = config_get(s, "exclude");
    k->section = s;
}

static int fill_sinks(struct settings *out)
{
    struct config_file *f = &out->file;
    size_t n = 0;

    for (size_t i = 0; i < f->n_sections; i++)
        n += section_def_of(f->sections[i].name)->kind == SEC_SINK;
    out->sinks = n ? calloc(n, sizeof *out->sinks) : NULL;
    if (n && !out->sinks)
        return -ENOMEM;
    for (size_t i = 0; i < f->n_sections; i++) {
        struct config_section *s = &f->sections[i];
        struct sink_settings *k;
        if (section_def_of(s->name)->kind != SEC_SINK)
            continue;
        k = &out->sinks[out->n_sinks++];
        k->name = strdup(s->name + 5);
        k->plugin = strdup(config_get(s, "plugin"));
        sink_settings_read(k, s);
        if (!k->name || !k->plugin)
            return -ENOMEM;
    }
    return 0;
}

/* [route] first (always there), then each [route:<name>] in file order. */
static int fill_routes(struct settings *out)
{
    struct config_file *f = &out->file;
    size_t n = 1;

    for (size_t i = 0; i < f->n_sections; i++)
        n += section_def_of(f->sections[i].name)->kind == SEC_NAMED_ROUTE;
    out->routes = calloc(n, sizeof *out->routes);
    if (!out->routes)
        return -ENOMEM;
    out->n_routes = n; /* entries not filled yet stay NULL: settings_free copes */
    size_t next = 1;
    for (size_t i = 0; i < f->n_sections; i++) {
        struct config_section *s = &f->sections[i];
        enum section_kind kind = section_def_of(s->name)->kind;
        struct route_settings *r;
        if (kind == SEC_ROUTE)
            r = &out->routes[0];
        else if (kind == SEC_NAMED_ROUTE)
            r = &out->routes[next++];
        else
            continue;
        r->name = strdup(kind == SEC_ROUTE ? "" : s->name + 6);
        r->plugin = strdup(config_get(s, "plugin"));
        r->section = s;
        if (!r->name || !r->plugin)
            return -ENOMEM;
    }
    return 0;
}

static int fill_typed(struct settings *out, char *err, size_t errlen)
{
    const struct config_file *f = &out->file;
    const struct config_section *relay = config_find(f, "relay"), *route = config_find(f, "route");
    const struct config_section *log = config_find(f, "log");

    if (resolve_relay_id(out, err, errlen) < 0)
        return -1;
    out->listen = dup_listen(f, "relay");
    out->max_inflight = config_get_int(relay, "max_inflight", 100);
    out->workers = resolve_workers(relay);
    out->plugin_dir = dup_value(f, "relay", "plugin_dir");
    out->max_message_bytes = config_get_int(relay, "max_message_bytes", 65536);
    out->shutdown_grace_s = config_get_int(relay, "shutdown_grace_s", 10);
    out->max_sessions = config_get_int(relay, "max_sessions", 100000);
    out->max_streams_per_connection = config_get_int(relay, "max_streams_per_connection", 1000);
    out->keepalive_time_s = config_get_int(relay, "keepalive_time_s", 30);
    out->keepalive_timeout_s = config_get_int(relay, "keepalive_timeout_s", 10);
    out->handshake_timeout_s = config_get_int(relay, "handshake_timeout_s", 20);
    const char *proto = config_get(relay, "stream_protocol");
    out->stream_protocol = !proto || strcmp(proto, "auto") == 0 ? STREAM_PROTOCOL_AUTO
                           : strcmp(proto, "seed") == 0         ? STREAM_PROTOCOL_SEED
                                                                : STREAM_PROTOCOL_MULTIPLEXED;
    out->gen2_hold_s = config_get_int(relay, "gen2_hold_s", 10);
    out->max_raw_bytes = config_get_int(relay, "max_raw_bytes", 16384);
    out->memory_limit_mb = config_get_int(relay, "memory_limit_mb", 0);
    if (out->memory_limit_mb == 0)
        out->memory_limit_mb = settings_default_memory_limit_mb(out->max_sessions);
    out->allow_no_sinks = config_get_bool(relay, "allow_no_sinks", 0);
    out->unmatched_ack = strcmp(config_get(relay, "unmatched"), "ack") == 0;
    if (out->max_raw_bytes > out->max_message_bytes) /* the default (check_relay) */
        out->max_raw_bytes = out->max_message_bytes;
    out->http_listen = dup_listen(f, "http");
    out->http_unready_after_s = config_get_int(config_find(f, "http"), "unready_after_s", 30);
    out->route_plugin = dup_value(f, "route", "plugin");
    out->route_ttl_s = config_get_int(route, "ttl_s", 45);
    out->route_section = config_find(f, "route");
    out->tls_cert_file = dup_value(f, "tls", "cert_file");
    out->tls_key_file = dup_value(f, "tls", "key_file");
    out->tls_client_ca_file = dup_value(f, "tls", "client_ca_file");
    out->auth_mode = dup_value(f, "auth", "mode");
    out->auth_keys_file = dup_value(f, "auth", "keys_file");
    out->control_client_ca_file = dup_value(f, "control", "client_ca_file");
    out->control_allowed_identities = dup_value(f, "control", "allowed_identities");
    out->control_command_timeout_s =
        config_get_int(config_find(f, "control"), "command_timeout_s", 60);
    out->control_agent_mappings_file = dup_value(f, "control", "agent_mappings_file");
    out->log_level = level_of(config_get(log, "level"));
    out->log_summary_interval_s = config_get_int(log, "summary_interval_s", 60);
    out->log_format = strcmp(config_get(log, "format"), "text") == 0 ? LOG_FORMAT_TEXT
                                                                     : LOG_FORMAT_JSON;
    if (fill_sinks(out) < 0 || fill_routes(out) < 0 || !out->listen || !out->plugin_dir ||
        !out->http_listen ||
        !out->route_plugin || !out->tls_cert_file || !out->tls_key_file ||
        !out->tls_client_ca_file || !out->auth_mode || !out->auth_keys_file ||
        !out->control_client_ca_file || !out->control_allowed_identities ||
        !out->control_agent_mappings_file)
        return config_errorf(err, errlen, f->path, 0, NULL, NULL, "out of memory");
    return 0;
}

/* Everything after parsing; `out->file` is filled. Every error of the
 * file's sections is listed in err; the typed values are read only when
 * there was none. */
static int settings_build(struct settings *out, char *err, size_t errlen)
{
    struct config_file *f = &out->file;
    size_t in_file = f->n_sections;
    char msg[CONFIG_ERR_LEN];
    unsigned failed = validate_sections(f, 0, in_file, err, errlen);

    if (check_some_sink(f, msg, sizeof msg) < 0) {
        config_error_add(err, errlen, msg);
        failed++;
    }
    if (failed)
        return -1;
    if (add_missing_sections(f, err, errlen) < 0 ||
        validate_sections(f, in_file, f->n_sections, err, errlen) > 0)
        return -1;
    /* section pointers are taken only now: adding sections moves them */
    if (fill_typed(out, err, errlen) < 0)
        return -1;
    /* [route]'s instance is named after its plugin: a [route:<name>] of that
     * name would share its log prefix and metric label. */
    for (size_t i = 1; i < out->n_routes; i++)
        if (strcmp(out->routes[i].name, out->routes[0].plugin) == 0)
            return config_errorf(err, errlen, f->path, out->routes[i].section->line,
                                 out->routes[i].section->name, NULL,
                                 "name clashes with [route]'s plugin \"%s\" (both would log and "
                                 "count as route=\"%s\"): choose another name",
                                 out->routes[0].plugin, out->routes[0].plugin);
    return 0;
}

/* After parsing (parsed: config_parse's result, its errors in err): build
 * or free all. A file with syntax errors is not validated further: its
 * sections may have lost keys. */
static int settings_finish(struct settings *out, int parsed, char *err, size_t errlen)
{
    if (parsed < 0 || settings_build(out, err, errlen) < 0) {
        settings_free(out);
        return -1;
    }
    return 0;
}

int settings_load_string(const char *path, const char *text, struct settings *out, char *err,
                         size_t errlen)
{
    memset(out, 0, sizeof *out);
    return settings_finish(out, config_parse_string(path, text, &out->file, err, errlen), err,
                           errlen);
}

int settings_load(const char *path, struct settings *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    return settings_finish(out, config_parse(path, &out->file, err, errlen), err, errlen);
}

int settings_validate_plugin_section(struct settings *s, struct config_section *sec,
                                     const struct config_keys *plugin_keys, char *err,
                                     size_t errlen)
{
    const struct section_def *d = section_def_of(sec->name);
    struct config_keys tables[2];
    size_t n = 0;

    if (!d || d->kind == SEC_PLAIN)
        return config_errorf(err, errlen, s->file.path, sec->line, sec->name, NULL,
                             "not a plugin section");
    tables[n++] = d->keys;
    if (plugin_keys)
        tables[n++] = *plugin_keys;
    if (config_validate_section(&s->file, sec, tables, n, err, errlen) < 0)
        return -1;
    /* A plugin's own default for a common key (sink-influxdb3's queue):
     * applied, and read again where settings_finish read the core's. */
    if (plugin_keys && config_prefer_defaults(sec, plugin_keys) < 0)
        return config_errorf(err, errlen, s->file.path, sec->line, sec->name, NULL,
                             "out of memory");
    for (size_t i = 0; i < s->n_sinks; i++)
        if (s->sinks[i].section == sec)
            sink_settings_read(&s->sinks[i], sec);
    return 0;
}

void settings_free(struct settings *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_sinks; i++) {
        free(s->sinks[i].name);
        free(s->sinks[i].plugin);
    }
    free(s->sinks);
    for (size_t i = 0; s->routes && i < s->n_routes; i++) {
        free(s->routes[i].name);
        free(s->routes[i].plugin);
    }
    free(s->routes);
    free(s->listen);
    free(s->relay_id);
    free(s->plugin_dir);
    free(s->http_listen);
    free(s->route_plugin);
    free(s->tls_cert_file);
    free(s->tls_key_file);
    free(s->tls_client_ca_file);
    free(s->auth_mode);
    free(s->auth_keys_file);
    free(s->control_client_ca_file);
    free(s->control_allowed_identities);
    free(s->control_agent_mappings_file);
    config_free(&s->file);
    memset(s, 0, sizeof *s);
}
