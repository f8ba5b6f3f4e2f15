/*
 * settings.h - the core's own relay.ini keys (SPEC.md section 6): their
 * declarations (so the validator, --check and the docs agree) and the typed
 * result the rest of the core reads. Plugin keys are validated by the
 * plugin's own table (see plugin_loader.h); settings.c validates the core
 * keys of each section and knows which sections exist.
 */
#ifndef AERO_SETTINGS_H
#define AERO_SETTINGS_H

#include "config.h"
#include "log.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum on_full { ON_FULL_BLOCK = 0, ON_FULL_REJECT = 1 };

struct sink_settings {
    char *name;                     /* "archive" from [sink:archive] */
    char *plugin;                   /* "sink-file" */
    size_t queue;                   /* frames, >= 1 */
    enum on_full on_full;
    const char *match, *exclude;    /* msg_name pattern lists ("" = none), the file's */
    struct config_section *section; /* owned by the config_file */
};

/* One route publisher: [route] (name "") or [route:<name>]. */
struct route_settings {
    char *name;                     /* "registry" from [route:registry]; "" for [route] */
    char *plugin;                   /* "route-registry" */
    struct config_section *section; /* owned by the config_file */
};

/* [relay] stream_protocol: how a TelemetryStream's generation is chosen. */
enum stream_protocol {
    STREAM_PROTOCOL_AUTO,       /* the aero-arc-session-id header, else the first message */
    STREAM_PROTOCOL_SEED,       /* every stream is generation 1; the header is ignored */
    STREAM_PROTOCOL_MULTIPLEXED /* every stream is generation 2; the header checked if sent */
};

struct settings {
    struct config_file file;

    /* [relay] */
    char *listen;                   /* "0.0.0.0:50051" */
    char *relay_id;                 /* resolved: key, RELAY_ID, hostname, "relay" */
    bool relay_id_stable;           /* from the key or RELAY_ID, not a fallback (SPEC 12.2 rule 3) */
    int64_t max_inflight;           /* default 100 */
    int workers;                    /* resolved: 0 -> number of cores */
    char *plugin_dir;               /* as configured; "" = default search */
    int64_t max_message_bytes;      /* default 65536 */
    int64_t shutdown_grace_s;       /* default 10 */
    int64_t max_sessions;           /* default 100000 (docs/limits.md) */
    int64_t max_streams_per_connection; /* default 1000 */
    int64_t keepalive_time_s;       /* default 30; 0 = the relay never pings */
    int64_t keepalive_timeout_s;    /* default 10 */
    int64_t handshake_timeout_s;    /* default 20 */
    enum stream_protocol stream_protocol; /* default auto (SPEC.md section 9) */
    int64_t gen2_hold_s;            /* default 10 */
    int64_t max_raw_bytes;          /* default 16384, never over max_message_bytes */
    int64_t memory_limit_mb;        /* resolved: 0 -> settings_default_memory_limit_mb */
    bool allow_no_sinks;            /* default false: no [sink:*] is a configuration error */
    bool unmatched_ack;             /* a frame no sink takes is acked OK (default: refused) */

    /* [http] */
    char *http_listen;              /* "" = no HTTP server */
    int64_t http_unready_after_s;   /* default 30; 0 = a failing sink never makes it unready */

    /* [route] */
    char *route_plugin;             /* default "route-none" */
    int64_t route_ttl_s;            /* default 45 */
    struct config_section *route_section; /* never NULL after settings_load */

    /* [route] (routes[0], always) then [route:<name>] in file order */
    struct route_settings *routes;
    size_t n_routes;                /* >= 1 after settings_load */

    /* [sink:*] in file order */
    struct sink_settings *sinks;
    size_t n_sinks;

    /* [tls] */
    char *tls_cert_file, *tls_key_file, *tls_client_ca_file;

    /* [auth] */
    char *auth_mode;                /* "none" | "bearer" */
    char *auth_keys_file;

    /* [control] (SPEC.md section 10); client_ca_file "" = control disabled */
    char *control_client_ca_file;
    char *control_allowed_identities; /* as written: comma-separated */
    int64_t control_command_timeout_s; /* default 60 */
    char *control_agent_mappings_file;

    /* [log] */
    aero_log_level log_level;
    enum log_format log_format;
    int64_t log_summary_interval_s; /* default 60; 0 = no summary line */
};

/*
 * Parse `path`, validate the core keys of every section, reject unknown
 * sections and a file with no sink (unless [relay] allow_no_sinks), and
 * fill `out`. Plugin keys in [route*] and [sink:*] are left for
 * settings_validate_plugin_section (called once plugins are loaded).
 * Returns 0, or -1 with every error in err, one formatted line each (the
 * syntax errors alone when there are any: config_parse).
 */
int settings_load(const char *path, struct settings *out, char *err, size_t errlen);
int settings_load_string(const char *path, const char *text, struct settings *out,
                         char *err, size_t errlen);

/* Validate a [sink:*]/[route] section against the core keys of that kind of
 * section plus the plugin's `keys`; fills the plugin's defaults. */
int settings_validate_plugin_section(struct settings *s, struct config_section *sec,
                                     const struct config_keys *plugin_keys,
                                     char *err, size_t errlen);

void settings_free(struct settings *s);

/*
 * [relay] memory_limit_mb when unset (0): 128 MiB for the process, its
 * sink queues and gRPC's own pools, plus 32 KiB per session of
 * max_sessions. Measured: 10,000 held streams cost 141.5 MB in all
 * (docs/benchmarks.md, scale: gRPC's 11.6 kB call arenas twice per agent,
 * the relay's ~1.4 kB); the rest is room for their frames in flight.
 */
int64_t settings_default_memory_limit_mb(int64_t max_sessions);
#define SETTINGS_MEMORY_LIMIT_MIN_MB 32

/* The core key tables (for docs and tests). */
extern const struct config_keys settings_sink_core_keys;
extern const struct config_keys settings_route_core_keys;
extern const struct config_keys settings_named_route_core_keys;

/* How many CPUs this process may run on (its affinity mask; the host's
 * count if that cannot be read): what workers = 0 follows (at least 2). */
long settings_usable_cpus(void);

#endif
