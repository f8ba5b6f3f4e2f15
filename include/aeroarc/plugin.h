/*
 * aeroarc/plugin.h - the stable C ABI between aeroarc-relay and its plugins.
 *
 * A plugin is a shared object exporting exactly one function,
 * aeroarc_plugin_entry(), which returns a pointer to a static, constant
 * descriptor. Everything else a plugin needs from the relay reaches it
 * through the aero_host passed to create(); a plugin links no core symbol.
 *
 * Versioning rules (see docs/plugin-guide.md):
 *   - AERO_ABI_MAJOR changes only when an existing field or signature
 *     changes. The relay refuses a plugin of another major.
 *   - AERO_ABI_MINOR grows when fields are appended to a struct. Every struct
 *     crossing the boundary starts with `uint32_t size`, set by whoever
 *     produced it; readers test for a field with AERO_HAS() before using it.
 *     Fields are never reordered, retyped or removed; enums never renumbered.
 *
 * Threads: create/destroy run on the main thread. write_batch, flush and
 * reopen of one sink instance are never called concurrently with each
 * other, always from a relay-owned thread: the instance's own, or, while
 * its write_batch calls return quickly (well under 100 us), one of the
 * relay's gRPC threads. Keep no thread-local state between calls. Route calls may come from any relay thread at once and must
 * return at once.
 */
#ifndef AEROARC_PLUGIN_H
#define AEROARC_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AERO_ABI_MAJOR 1
#define AERO_ABI_MINOR 0

/* True when struct `p` (whose producer set p->size) contains `field`. */
#define AERO_HAS(p, type, field)                                              \
    ((p) != NULL && offsetof(type, field) + sizeof(((type *)0)->field) <=     \
                        (size_t)(p)->size)

#if defined(__GNUC__)
#define AERO_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define AERO_EXPORT __attribute__((visibility("default")))
#else
#define AERO_PRINTF(fmt, args)
#define AERO_EXPORT
#endif

/* ---------------------------------------------------------------- frames */

/* A byte string that is NOT NUL-terminated and may hold any bytes
 * (protobuf strings are not UTF-8-validated on the way in). Since 1.0. */
typedef struct aero_str {
    const char *ptr;
    size_t len;
} aero_str;

/* One entry of TelemetryFrame.fields. Keys are unique within a frame. */
typedef struct aero_kv {
    aero_str key;
    aero_str value;
} aero_kv;

/* The stream protocol generation a frame came by (SPEC.md section 9).
 * Since 1.1. */
typedef enum aero_protocol {
    AERO_PROTOCOL_SEED = 1,        /* generation 1: TelemetryFrame / TelemetryAck */
    AERO_PROTOCOL_MULTIPLEXED = 2  /* generation 2: AgentStreamMessage envelopes */
} aero_protocol;

/*
 * A read-only view of one accepted TelemetryFrame. Every pointer is owned by
 * the relay and valid only during the write_batch call that received it:
 * copy what you keep. Since 1.0.
 */
typedef struct aero_frame {
    uint32_t size;                /* sizeof(aero_frame) as the relay built it */
    aero_str agent_id;            /* the stream's agent (authoritative) */
    aero_str session_id;          /* the stream's session (a frame's own may be stale) */
    uint64_t seq;                 /* TelemetryFrame.seq, monotonic per agent */
    int64_t sent_at_unix_ns;      /* TelemetryFrame.sent_at_unix_ns */
    double device_timestamp_sec;  /* TelemetryFrame.device_timestamp_sec (may be NaN) */
    aero_str raw_mavlink;         /* TelemetryFrame.raw_mavlink, raw bytes */
    aero_str dialect;             /* TelemetryFrame.dialect */
    uint32_t msg_id;              /* TelemetryFrame.msg_id */
    aero_str msg_name;            /* TelemetryFrame.msg_name */
    const aero_kv *fields;        /* TelemetryFrame.fields, n_fields entries */
    size_t n_fields;
    aero_str flight_id;           /* TelemetryFrame.flight_id */
    int64_t received_unix_ns;     /* relay receive time, CLOCK_REALTIME */
    aero_str protobuf;            /* the frame's original protobuf encoding */

    /* Since 1.1: test with AERO_HAS(frame, aero_frame, <field>). */
    aero_protocol protocol;       /* which generation of the stream protocol carried it */
    aero_str wal_id;              /* TelemetryFrame.wal_id, canonical lowercase
                                   * 8-4-4-4-12, or empty (agents before July 2026) */
    aero_str intent_id;           /* TelemetryFrame.intent_id */
    uint32_t intent_version;      /* TelemetryFrame.intent_version */
    aero_str relay_id;            /* the relay that received it */
    aero_str operator_id;         /* the agent's operator (agent mappings), or empty */
    aero_str aircraft_id;         /* the agent's aircraft (agent mappings), or empty */
} aero_frame;

/* Per-frame outcome a sink reports in write_batch's results[]. Since 1.0.
 * The relay acks OK only if every sink said AERO_OK; otherwise the worst
 * result wins (REJECT > BACKOFF > RETRY). Unknown values count as RETRY. */
typedef enum aero_result {
    AERO_OK = 0,      /* accepted: the sink's durability promise holds */
    AERO_RETRY = 1,   /* transient (EIO, ENOSPC, reconnecting): STATUS_TEMPORARY_ERROR */
    AERO_BACKOFF = 2, /* downstream full or slow: STATUS_RETRY_WITH_BACKOFF */
    AERO_REJECT = 3   /* never acceptable here: STATUS_PERMANENT_ERROR */
} aero_result;

/* ---------------------------------------------------------------- config */

typedef enum aero_key_type {
    AERO_KEY_STRING = 1, /* any text; empty allowed */
    AERO_KEY_INT = 2,    /* signed decimal integer within [min, max] */
    AERO_KEY_BOOL = 3,   /* true|false|yes|no|on|off|1|0 */
    AERO_KEY_ENUM = 4    /* one of `choices`, written "a|b|c" */
} aero_key_type;

/*
 * A configuration key a plugin accepts in its section. The relay validates
 * every key of the section against this list before create() and fills in
 * defaults, so --check runs no plugin code and create() only sees valid
 * values. Arrays of keys are read with the stride the vtable gives
 * (key_size), so this struct may grow. Since 1.0.
 */
typedef struct aero_config_key {
    const char *name;
    aero_key_type type;
    const char *default_value; /* NULL: no default (see `required`) */
    const char *help;          /* one line, shown in errors and docs */
    const char *choices;       /* AERO_KEY_ENUM: "none|batch" */
    int64_t min, max;          /* AERO_KEY_INT: inclusive bounds */
    int required;              /* nonzero: the section must set it */
} aero_config_key;

/* ------------------------------------------------------------------ host */

typedef enum aero_log_level {
    AERO_LOG_DEBUG = 0,
    AERO_LOG_INFO = 1,
    AERO_LOG_WARN = 2,
    AERO_LOG_ERROR = 3
} aero_log_level;

typedef struct aero_metric aero_metric; /* opaque, owned by the relay */

typedef enum aero_metric_type {
    AERO_METRIC_COUNTER = 1, /* only goes up: aero_host.metric_add */
    AERO_METRIC_GAUGE = 2    /* any value: aero_host.metric_set */
} aero_metric_type;

/*
 * What the relay offers a plugin instance. One aero_host per instance; it
 * stays valid until destroy() returns. Every function may be called from any
 * thread unless its comment says otherwise.
 */
typedef struct aero_host aero_host;
struct aero_host {
    uint32_t size;

    /* Log a line. The relay adds time, level and "sink:<name>:" (or
     * "route:<plugin>:"). Never log keys, tokens or per-frame lines at info. */
    void (*log)(const aero_host *host, aero_log_level level, const char *fmt,
                ...) AERO_PRINTF(3, 4);

    /* Value of `key` in this instance's section after validation, defaults
     * applied: NUL-terminated, owned by the relay, valid until destroy().
     * Covers the plugin's declared keys and the core's keys of the section
     * (sinks: plugin, queue, on_full; route: plugin, ttl_s). NULL for any
     * other key. */
    const char *(*config_get)(const aero_host *host, const char *key);

    /* The section's name as written in relay.ini ("sink:archive", "route"),
     * and the instance name ("archive"; the plugin name for the route). */
    const char *(*section)(const aero_host *host);
    const char *(*instance_name)(const aero_host *host);

    /* The relay's id (relay.ini relay_id, RELAY_ID, hostname or "relay"). */
    const char *(*relay_id)(const aero_host *host);

    /*
     * Encode `frame` as the envelope's one-line JSON object (no trailing
     * newline) into buf[0..cap). Works like snprintf: returns the length
     * the full encoding needs; if that is >= cap the buffer holds nothing
     * useful and the caller retries with a larger one. Never fails.
     */
    size_t (*envelope_json)(const aero_host *host, const aero_frame *frame,
                            char *buf, size_t cap);

    /*
     * Register a metric shown on /metrics as
     *   <name>{sink="<instance>"} (sinks) or <name>{route="<plugin>"}.
     * `name` must be lower case [a-z_][a-z0-9_]* (what `promtool check
     * metrics` accepts): counters end in _total, gauges do not, and no name
     * ends in _bucket, _sum or _count. Call during create() only.
     * Returns a handle owned by the relay (NULL if the name is invalid);
     * updates are lock-free and safe from any thread.
     */
    aero_metric *(*metric_register)(const aero_host *host, aero_metric_type type,
                                    const char *name, const char *help);
    void (*metric_add)(aero_metric *metric, uint64_t delta);
    void (*metric_set)(aero_metric *metric, int64_t value);
};

/* ----------------------------------------------------------------- sinks */

/*
 * A sink instance receives every accepted frame. Since 1.0.
 *
 * create: allocate an instance for the section host describes; store it in
 *   *instance. Return 0, or a negative errno after logging why through
 *   host->log. destroy() is called on a half-built instance too, so create()
 *   may leave cleanup to it. Main thread.
 * write_batch: write n frames (n >= 1) and set results[i] for each. May
 *   block (it is the sink's durability point): a sink that blocks is then
 *   called only from its own thread, with batches that grow under load.
 *   Never retry, sleep-to-retry or drop: report AERO_RETRY and the relay acks
 *   TEMPORARY_ERROR so the agent resends.
 * flush: make everything written so far durable (on shutdown). Optional.
 * reopen: reopen output files (SIGHUP, log rotation). Optional.
 * destroy: free everything; instance may be NULL. Main thread.
 */
typedef struct aero_sink_vtable {
    uint32_t size;
    const aero_config_key *keys; /* the keys this sink accepts */
    uint32_t n_keys;
    uint32_t key_size;           /* sizeof(aero_config_key) as compiled */
    int (*create)(const aero_host *host, void **instance);
    void (*write_batch)(void *instance, const aero_frame *const *frames,
                        size_t n, aero_result *results);
    int (*flush)(void *instance);
    int (*reopen)(void *instance);
    void (*destroy)(void *instance);
} aero_sink_vtable;

/* ---------------------------------------------------------------- routes */

/*
 * A route publisher tells the world which relay holds which drone. Since 1.0.
 * session_up/session_down get NUL-terminated ids (validated charset, no NUL
 * inside), may be called from any thread concurrently, and must return at
 * once: do I/O on a thread of your own. session_down is only called by the
 * owner of the session, but the plugin must still compare-and-delete.
 */
typedef struct aero_route_vtable {
    uint32_t size;
    const aero_config_key *keys;
    uint32_t n_keys;
    uint32_t key_size;
    int (*create)(const aero_host *host, void **instance);
    void (*session_up)(void *instance, const char *drone_id,
                       const char *session_id);
    void (*session_down)(void *instance, const char *drone_id,
                         const char *session_id);
    void (*destroy)(void *instance);
} aero_route_vtable;

/* ------------------------------------------------------------ descriptor */

typedef enum aero_plugin_kind {
    AERO_PLUGIN_SINK = 1,
    AERO_PLUGIN_ROUTE = 2
} aero_plugin_kind;

/* What aeroarc_plugin_entry() returns: static, constant, no work done to
 * produce it (--check loads every plugin). Since 1.0. */
typedef struct aero_plugin_descriptor {
    uint32_t size;
    uint16_t abi_major;      /* AERO_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;      /* AERO_ABI_MINOR the plugin was built with */
    aero_plugin_kind kind;
    const char *name;        /* "sink-file": matches the .so name */
    const char *description; /* one line */
    const void *vtable;      /* aero_sink_vtable or aero_route_vtable */
} aero_plugin_descriptor;

#define AERO_PLUGIN_ENTRY_SYMBOL "aeroarc_plugin_entry"

/* The one symbol a plugin exports. */
AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void);

/* Fill the fixed header of a descriptor: AERO_DESCRIPTOR(AERO_PLUGIN_SINK). */
#define AERO_DESCRIPTOR_HEADER(kind_)                                         \
    .size = sizeof(aero_plugin_descriptor), .abi_major = AERO_ABI_MAJOR,      \
    .abi_minor = AERO_ABI_MINOR, .kind = (kind_)

/* Fill the key table of a vtable from a static array. */
#define AERO_KEYS(array)                                                      \
    .keys = (array), .n_keys = sizeof(array) / sizeof((array)[0]),            \
    .key_size = sizeof(aero_config_key)

#ifdef __cplusplus
}
#endif

#endif /* AEROARC_PLUGIN_H */
