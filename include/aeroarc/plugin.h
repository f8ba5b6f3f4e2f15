/*
 * aeroarc/plugin.h - the stable C ABI between aeroarc-relay and its plugins,
 * and the plugin author's manual: what follows is everything a sink or route
 * may rely on. docs/plugin-guide.md walks through it with an example.
 *
 * A plugin is a shared object exporting exactly one function,
 * aeroarc_plugin_entry(), which returns a pointer to a static, constant
 * descriptor. Everything else a plugin needs from the relay reaches it
 * through the aero_host passed to check() and create(); a plugin links no
 * core symbol.
 *
 * Versioning rules (see docs/plugin-guide.md):
 *   - AERO_ABI_MAJOR changes only when an existing field or signature
 *     changes. The relay refuses a plugin of another major.
 *   - AERO_ABI_MINOR grows when fields are appended to a struct. Every struct
 *     crossing the boundary starts with `uint32_t size`, set by whoever
 *     produced it; readers test for a field with AERO_HAS() before using it.
 *     Fields are never reordered, retyped or removed; enums never renumbered.
 *     Each field says the minor it appeared in ("Since 1.1"); fields without
 *     a note are 1.0. A plugin built against 1.1 headers that must also run
 *     on a 1.0 relay tests AERO_HAS(host, aero_host, config_error) first
 *     (against 1.2 headers on an older relay: AERO_HAS(host, aero_host,
 *     listen_address) and the other 1.2 functions it uses; 1.3:
 *     AERO_HAS(host, aero_host, metric_register_labels); 1.4:
 *     AERO_HAS(host, aero_host, histogram_observe); 1.5:
 *     AERO_HAS(host, aero_host, report_state); 1.6:
 *     AERO_HAS(host, aero_host, count_queue_full)).
 *
 * Naming: the descriptor's `name` must equal the shared object's file name
 * without ".so" (sink-file.so says "sink-file"); the relay refuses it
 * otherwise.
 *
 * Call order, per instance (one [sink:*] section, or [route] or one
 * [route:<name>]: each is an instance of its own):
 *   check (if set; also under --check, where nothing else is called)
 *   -> create -> write_batch ... (reopen on each SIGHUP, between batches)
 *   -> flush (at shutdown, after the last write_batch) -> destroy.
 * If check fails, nothing else is called. If create fails, destroy is still
 * called (with whatever create stored in *instance, possibly NULL). Routes:
 * check -> create -> session_up / stream_opened / session_down ... -> destroy.
 *
 * Threads (the one rule; docs/plugin-guide.md and examples/sink-count say
 * the same): check, create and destroy run on the relay's main thread.
 * write_batch, flush and reopen of one sink instance are never called
 * concurrently with each other, nor with create or destroy; they come from
 * a relay-owned thread: the instance's own, or, while its write_batch calls
 * return quickly (well under 100 us), one of the relay's gRPC threads. So
 * an instance needs no lock for its own state, but must keep no
 * thread-local state between calls. Different instances (two [sink:*]
 * sections on one plugin) run concurrently: no plugin globals. Route calls
 * may come from any relay thread at once and must return at once.
 */
#ifndef AEROARC_PLUGIN_H
#define AEROARC_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AERO_ABI_MAJOR 1
#define AERO_ABI_MINOR 6

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
 * (protobuf strings are not UTF-8-validated on the way in). `ptr` is never
 * NULL, even for an empty string (len 0): the relay points empty strings at
 * a valid byte, so memcpy(dst, s.ptr, s.len) and fwrite need no NULL check.
 * Never read ptr[len]. Since 1.0. */
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
    const aero_kv *fields;        /* TelemetryFrame.fields, n_fields entries
                                     (do not dereference when n_fields is 0) */
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
 * every key of the section against this list before check() and create()
 * and fills in defaults, so both only see valid values (read them with
 * config_bool/int/enum, never by hand). Arrays of keys are read with the
 * stride the vtable gives
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
typedef struct aero_histogram aero_histogram; /* opaque, owned by the relay (1.4) */

/* A route instance's health as it reports it (aero_host.report_state,
 * 1.5), shown per component in /readyz's body. */
typedef enum aero_state {
    AERO_STATE_OK = 0,       /* doing its job */
    AERO_STATE_DEGRADED = 1, /* doing part of it (some calls fail, retried) */
    AERO_STATE_FAILING = 2   /* not doing it (e.g. not connected to Redis) */
} aero_state;

typedef enum aero_metric_type {
    AERO_METRIC_COUNTER = 1, /* only goes up: aero_host.metric_add */
    AERO_METRIC_GAUGE = 2    /* any value: aero_host.metric_set */
} aero_metric_type;

/*
 * What the relay offers a plugin instance. One aero_host per instance; the
 * one create() gets stays valid until destroy() returns; the one check()
 * gets only during that call (do not keep it). Every function may be called
 * from any thread unless its comment says otherwise.
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
     *   <name>{sink="<instance>",plugin="<plugin>"} (sinks: `plugin` is the
     *   section's plugin = key, added by the relay) or <name>{route="<instance>"}.
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

    /* ---- Since 1.1: typed configuration and configuration errors. ----
     *
     * The relay has one parser per key type, the same one it validates
     * declared keys with, so a value means the same to --check, to the core
     * and to every plugin. Use these instead of parsing config_get() text:
     * no strcmp(v, "true"), atoi or strtol on config values.
     *
     * Return convention of the three readers: 0 with *out set; -ENOENT when
     * the key has no value (not set and no default) or is not the plugin's
     * or the core's key of this section: *out is left untouched, so preset
     * it to your default; -EINVAL (not of the type, not one of `choices`) or
     * -ERANGE (an integer outside [min, max]): the relay has ALREADY
     * reported the error through config_error with the offending line and
     * the values allowed, and *out is untouched. A plugin just returns a
     * nonzero value from check() (or create()).
     * Main thread, during check() and create() (the only calls where an
     * error can still stop the relay); they only read, so calling them later
     * is harmless but pointless.
     */

    /* The value as a boolean: true|false|yes|no|on|off|1|0 in any case
     * ("On", "TRUE", "yes" and "1" all mean 1). Since 1.1. */
    int (*config_bool)(const aero_host *host, const char *key, int *out);

    /* The value as a decimal integer (optional sign, no blanks, no 0x)
     * within [min, max] inclusive. Since 1.1. */
    int (*config_int)(const aero_host *host, const char *key, int64_t min,
                      int64_t max, int64_t *out);

    /* The index in `choices` ("none|batch": none is 0, batch 1) of the
     * value, compared exactly (case matters, as for AERO_KEY_ENUM).
     * Since 1.1. */
    int (*config_enum)(const aero_host *host, const char *key,
                       const char *choices, int *index_out);

    /*
     * Report a configuration error about `key` of this instance's section
     * (NULL: about the section as a whole). The relay writes it as
     *   <file>:<line>: [<section>] <key>: <message>
     * e.g. relay.ini:12: [sink:bus] topic: "a/#/b": '#' is a wildcard
     * (for key NULL: <file>:<line>: [<section>]: <message>)
     * where <line> is the line setting `key` in relay.ini (the [section]
     * line if the key is not set there, or for key NULL), and the relay
     * then refuses to start (--check exits 2). Do not add the file, line,
     * section, key or the plugin's name yourself; do not end with a
     * newline. Call it for every problem found, then return nonzero from
     * check() (or create()). Returns -EINVAL, so a one-problem check can
     * `return host->config_error(...)`. Main thread, during check() and
     * create(). Since 1.1.
     */
    int (*config_error)(const aero_host *host, const char *key, const char *fmt,
                        ...) AERO_PRINTF(3, 4);

    /* ---- Since 1.2: the relay's address, its sessions, /readyz. ---- */

    /* [relay] listen as configured: "0.0.0.0:50051", "127.0.0.1:0",
     * "[::]:50051" or "unix:/path". NUL-terminated, owned by the relay,
     * valid as long as the host. Any thread; also in check(). Since 1.2. */
    const char *(*listen_address)(const aero_host *host);

    /* The TCP port the relay's gRPC server is bound to: 0 until it is
     * bound (during check() and create(), which run before that) and for a
     * unix: address. A plugin that advertises the relay polls it from its
     * own thread. Any thread. Since 1.2. */
    int (*listen_port)(const aero_host *host);

    /*
     * When the stream of drone_id's session session_id (NUL-terminated)
     * last delivered a message here (a frame or any other stream message):
     * CLOCK_REALTIME in ns. 0 before its first message (Register and the
     * stream opening are not messages; older relays answered the Register
     * time there, and counted only frames), and when drone_id has no
     * session on this relay or it is another session (the drone registered
     * again, here or elsewhere, or the session ended). For rules like
     * "re-claim the drone only if it is demonstrably here" (SPEC.md
     * section 11). A lookup in the session table: cheap, but do not call
     * it per drone per second. Any thread, route plugins only (sinks get
     * 0). Since 1.2.
     */
    int64_t (*session_last_message_unix_ns)(const aero_host *host, const char *drone_id,
                                            const char *session_id);

    /*
     * Add a detail to /readyz's JSON body while the relay is ready, e.g.
     * ready_detail(host, "registry", "unavailable") gives
     *   200 {"status":"ok","registry":"unavailable"}
     * and value NULL removes it again. A detail never makes the relay
     * unready: it tells an operator what works less well. key: 1-32 of
     * a-z 0-9 _ (not "status"); value: 1-32 of a-z 0-9 _ - . ; one key
     * belongs to the first instance that set it. Returns 0, -EINVAL (bad
     * key or value), -EEXIST (another instance's key) or -ENOSPC (16
     * details already). The relay drops an instance's details after its
     * destroy(). Any thread, after create() began (not in check()).
     * Since 1.2.
     */
    int (*ready_detail)(const aero_host *host, const char *key, const char *value);

    /* ---- Since 1.3: metrics with labels of the plugin's own. ---- */

    /*
     * metric_register with more labels after the instance's own:
     *   <name>{sink="<instance>",plugin="<plugin>",<labels>}
     * `labels` is the rendered label set without braces, one or more
     * k="v" joined by ',' (k: [a-z_][a-z0-9_]*, not "sink", "route" or "plugin";
     * v: 0-64 of A-Z a-z 0-9 _ - . :), e.g. outcome="ok",message_name="heartbeat".
     * Each distinct label set is a series of its own: register every one a
     * plugin will use during create() (there is no lookup per update).
     * NULL for an invalid name or label set, as metric_register. Since 1.3.
     */
    aero_metric *(*metric_register_labels)(const aero_host *host, aero_metric_type type,
                                           const char *name, const char *help,
                                           const char *labels);

    /*
     * A histogram of values (durations in seconds, sizes in units): one
     * bucket per upper bound in `bounds` (n_bounds of them, strictly
     * increasing, each > 0 and < 1e9; +Inf is added), rendered
     *   <name>_bucket{sink="<instance>",plugin="<plugin>",<labels>,le="<bound>"},
     *   _sum, _count.
     * `labels` as for metric_register_labels, or NULL for none. The name
     * must not end in _total, _bucket, _sum or _count. Register during
     * create(); NULL on bad arguments. Since 1.4.
     */
    aero_histogram *(*histogram_register)(const aero_host *host, const char *name,
                                          const char *help, const char *labels,
                                          const double *bounds, size_t n_bounds);
    /* Record one value; any thread, lock-free. NULL h: nothing. Since 1.4. */
    void (*histogram_observe)(aero_histogram *h, double value);

    /* ---- Since 1.5: a route's own state. ---- */

    /*
     * Say how this route instance is doing, with the reason an operator
     * reads first ("not connected to Redis at 10.0.0.5:6379"; NULL or ""
     * for none). /readyz lists every sink and route with its latest state
     * (docs/operations.md); a route that never reports is "ok". A route's
     * state never makes the relay unready: routes publish hints, and no
     * frame depends on them. Call on every change, not per event: it
     * takes a lock. The reason is copied (at most 160 bytes; bytes outside
     * printable ASCII, '"' and '\\' become '_'). Returns 0, or -EINVAL
     * (state out of range, a check() host, or a sink's host: a sink's
     * state is what the relay sees of its results and result_text). Any
     * thread, after create() began. Since 1.5.
     */
    int (*report_state)(const aero_host *host, aero_state state, const char *reason);

    /* ---- Since 1.6: the relay's queue-full refusals in a sink's metric. ---- */

    /*
     * Have the relay also add 1 to `counter`, a counter this sink instance
     * registered, for every frame it refuses for this sink because the
     * sink's queue is full: with on_full = reject, a frame refused at once
     * (TEMPORARY_ERROR; the frames of aero_sink_rejected_total), and a
     * generation-2 frame refused RETRY_WITH_BACKOFF "relay sink queue is
     * full" (SPEC section 9: held for a full `reject` sink past gen2_hold_s,
     * or at once when it is 0 or max_inflight frames are held), counted
     * against each `reject` sink that takes the frame's msg_name and is
     * full at that moment. A sink whose contract names these refusals
     * under a metric of its own uses it (sink-influxdb3:
     * aero_telemetry_writer_dropped_total{reason="queue_full"}); the plugin
     * never sees the frames. One counter per instance: a later call
     * replaces it, NULL stops it. Returns 0, or -EINVAL (a route's or a
     * check() host, or a gauge). Main thread, during create(). Since 1.6.
     */
    int (*count_queue_full)(const aero_host *host, aero_metric *counter);
};

/* ----------------------------------------------------------------- sinks */

/*
 * A sink instance receives every accepted frame. Since 1.0 (check: 1.1).
 * Read the vtable's slots only after AERO_HAS (the relay does the same), so
 * plugins built before a slot existed keep loading.
 *
 * check (optional, Since 1.1): validate the section beyond what the key
 *   table can say: values the relay cannot judge (a topic's syntax, a CA
 *   file that must exist, keys that only make sense together). Report EVERY
 *   problem through host->config_error (so --check lists them all, each with
 *   its relay.ini line), then return 0 if there was none, else nonzero (a
 *   negative errno, -EINVAL). Runs on the main thread before create(), both
 *   under --check and at every start, so the two agree; under --check it is
 *   the only plugin code that runs. It must have no effect: no threads, no
 *   connections, no files or directories created, no memory kept, no
 *   metric_register (it returns NULL here). The relay has already validated
 *   the declared keys and filled in defaults.
 * create: allocate an instance for the section host describes; store it in
 *   *instance. Return 0, or a negative errno after logging why through
 *   host->log (config problems through host->config_error). destroy() is
 *   called on a half-built instance too, so create() may leave cleanup to
 *   it. Main thread.
 * write_batch: write n frames, 1 <= n <= 1024 (the relay's sink thread
 *   takes at most 1024 frames from the queue per call; inline writes from a
 *   gRPC thread at most 256), and set results[i] for each. results[] arrives
 *   filled with AERO_RETRY, so a frame the sink never got to is retried, not
 *   lost; still set every entry you handle. frames[] and every pointer
 *   inside them are valid only during the call. May block (it is the sink's
 *   durability point): a sink that blocks is then called only from its own
 *   thread, with batches that grow under load. Never retry, sleep-to-retry
 *   or drop: report AERO_RETRY and the relay acks TEMPORARY_ERROR so the
 *   agent resends.
 * flush (optional): make everything written so far durable; called once at
 *   shutdown after the last write_batch. Return 0, or a negative errno: the
 *   relay logs a warning ("flush at shutdown failed") and carries on
 *   stopping; acks already sent are not taken back, which is why AERO_OK
 *   must already mean durable. NULL: nothing to flush.
 * reopen (optional): reopen output files (SIGHUP, log rotation), between
 *   two write_batch calls. Return 0, or a negative errno: the relay logs a
 *   warning and keeps the instance, so the next write_batch must try again
 *   and report AERO_RETRY while it cannot write. NULL: nothing to reopen.
 * destroy: free everything; instance may be NULL. Main thread.
 * result_text (optional, Since 1.3): the ack's error text for frames[i] of
 *   the write_batch call that just returned, when results[i] is not
 *   AERO_OK; NULL: the relay's own text ("sink ... did not accept the
 *   frame ..."). NUL-terminated valid UTF-8, owned by the plugin and valid
 *   until the next write_batch on the instance; the relay copies at most
 *   512 bytes (cut at a character boundary) right after write_batch
 *   returns, on the same thread. The ack carries it when this sink's
 *   result is the one that decides the ack.
 */
typedef struct aero_sink_vtable {
    uint32_t size;               /* sizeof(aero_sink_vtable) as compiled */
    const aero_config_key *keys; /* the keys this sink accepts */
    uint32_t n_keys;
    uint32_t key_size;           /* sizeof(aero_config_key) as compiled */
    int (*create)(const aero_host *host, void **instance);
    void (*write_batch)(void *instance, const aero_frame *const *frames,
                        size_t n, aero_result *results);
    int (*flush)(void *instance);
    int (*reopen)(void *instance);
    void (*destroy)(void *instance);
    int (*check)(const aero_host *host); /* Since 1.1; NULL: nothing to check */
    const char *(*result_text)(void *instance, size_t i); /* Since 1.3; NULL: the relay's text */
} aero_sink_vtable;

/* ---------------------------------------------------------------- routes */

/*
 * A route publisher tells the world which relay holds which drone. Since 1.0
 * (check: 1.1, stream_opened: 1.2). check, create and destroy: as for sinks.
 * A relay runs several at once ([route] and each [route:<name>]): each gets
 * every call below, one after the other on the calling thread, so one that
 * does not return at once delays ingest and every other route.
 * session_up/session_down get NUL-terminated ids (validated charset, no NUL
 * inside), may be called from any thread concurrently, and must return at
 * once: do I/O on a thread of your own. session_down is only called by the
 * owner of the session, but the plugin must still compare-and-delete.
 *
 * session_up: Register made session_id the drone's session (no stream yet).
 * stream_opened (optional, Since 1.2): a TelemetryStream (either protocol
 *   generation) attached to the session, after session_up; again on every
 *   reconnect of a stream to the same session. NULL: not interested.
 * session_down: the session ended (its stream closed, it expired without
 *   one, it was replaced, or the relay stops).
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
    int (*check)(const aero_host *host); /* Since 1.1: as the sink's check */
    void (*stream_opened)(void *instance, const char *drone_id,
                          const char *session_id); /* Since 1.2; NULL: not needed */
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
    const char *name;        /* "sink-file": must equal the .so file name
                                without ".so", or the relay refuses it */
    const char *description; /* one line */
    const void *vtable;      /* aero_sink_vtable or aero_route_vtable */
} aero_plugin_descriptor;

#define AERO_PLUGIN_ENTRY_SYMBOL "aeroarc_plugin_entry"

/* The one symbol a plugin exports. */
AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void);

/* Fill the fixed header of a descriptor (size, ABI version, kind):
 *   static const aero_plugin_descriptor d = {
 *       AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_SINK), .name = "sink-x", ...}; */
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
