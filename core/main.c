/*
 * main.c - aeroarc-relay's entry: command line, configuration and plugins,
 * then the parts started in order and stopped in reverse. The main thread
 * owns every signal (blocked everywhere else) and does the periodic work.
 */
#include "absl_tuning.h"
#include "agent_gateway.h"
#include "agent_mappings.h"
#include "auth.h"
#include "call_auth.h"
#include "command_durable.h"
#include "command_mission.h"
#include "command_table.h"
#include "config_reload.h"
#include "control_auth.h"
#include "health_service.h"
#include "host_api.h"
#include "http_server.h"
#include "log.h"
#include "mem_guard.h"
#include "metrics.h"
#include "mono_clock.h"
#include "plugin_loader.h"
#include "plugin_sections.h"
#include "process_metrics.h"
#include "readiness.h"
#include "relay.h"
#include "relay_control.h"
#include "route.h"
#include "rpc_server.h"
#include "service_notify.h"
#include "session_table.h"
#include "settings.h"
#include "sink_pipeline.h"
#include "summary.h"
#include "tls_cert.h"
#include "worker_ctx.h"

#include <errno.h>
#include <stdbool.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef AERO_VERSION
#define AERO_VERSION "0.0.0"
#endif

struct options {
    const char *config;
    int check;
};

/* Everything loaded before start: plugins belong to main until the end. */
struct loaded {
    struct auth *auth; /* [auth] mode = bearer: the keys */
    struct control_auth *control; /* [control] client_ca_file set */
    struct agent_mappings *mappings; /* [control] agent_mappings_file set */
    struct plugin **routes; /* [route], then [route:<name>] in file order */
    size_t n_routes;
    struct plugin **sinks;
    size_t n_sinks;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: aeroarc-relay [-c FILE] [--check] [--version]\n"
            "  -c, --config FILE  relay.ini to use (default: relay.ini)\n"
            "      --check        validate the configuration, load every plugin and run its\n"
            "                     checks (every error is listed), then exit\n"
            "      --version      print the version and plugin ABI, then exit\n"
            "  -h, --help         this text\n"
            "Signals: SIGTERM/SIGINT drain and stop; SIGHUP reopens sink output files and\n"
            "reloads the configuration (what a restart needs is logged).\n");
}

static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},      {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    o->config = "relay.ini";
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o->config = optarg; break;
        case 'k': o->check = 1; break;
        case 'V':
            printf("aeroarc-relay %s (plugin ABI %d.%d)\n", AERO_VERSION, AERO_ABI_MAJOR,
                   AERO_ABI_MINOR);
            exit(0);
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "aeroarc-relay: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* Configuration errors (one or more lines: config_error_add), printed the
 * way every one is (the plugins' too). */
static void print_config_error(void *arg, const char *lines)
{
    (void)arg;
    while (*lines) {
        size_t n = strcspn(lines, "\n");
        fprintf(stderr, "aeroarc-relay: %.*s\n", (int)n, lines);
        lines += n + (lines[n] == '\n');
    }
}

/* A key's line in relay.ini (0 when the file does not set it). */
static int key_line(const struct settings *st, const char *section, const char *key)
{
    const struct config_section *sec = config_find(&st->file, section);
    const struct config_kv *kv = sec ? config_get_kv(sec, key) : NULL;
    return kv ? kv->line : 0;
}

/* A problem with the file a key names, on that key's line. */
static void print_file_error(const struct settings *st, const char *section, const char *key,
                             const char *reason)
{
    char line[CONFIG_ERR_LEN + 1024];
    config_errorf(line, sizeof(line), st->file.path, key_line(st, section, key), section, key,
                  "%s", reason);
    print_config_error(NULL, line);
}

/* [tls]: the server certificate and key (readable, PEM, a pair) and the
 * client CA bundle, so --check catches what would fail the gRPC start, and
 * names relay.ini's line. Prints every error; returns 0 or -1. */
static int check_tls_files(const struct settings *st)
{
    char cert_err[1024], key_err[1024], ca_err[1024];
    int failed = 0;
    if (st->tls_cert_file[0] &&
        tls_cert_check_pair(st->tls_cert_file, st->tls_key_file, cert_err, key_err,
                            sizeof(cert_err)) < 0) {
        if (cert_err[0])
            print_file_error(st, "tls", "cert_file", cert_err);
        if (key_err[0])
            print_file_error(st, "tls", "key_file", key_err);
        failed = 1;
    }
    if (st->tls_client_ca_file[0] &&
        tls_cert_check_ca_file(st->tls_client_ca_file, false, ca_err, sizeof(ca_err)) < 0) {
        print_file_error(st, "tls", "client_ca_file", ca_err);
        failed = 1;
    }
    return failed ? -1 : 0;
}

/*
 * Every plugin section ([route], each [route:<name>], then each [sink:*] in
 * file order): load its plugin, validate its keys, run its check. An error
 * stops that section only, so one run lists every section's problems.
 * Returns 0 when all are good, else -1 (each error printed).
 */
static int load_plugins(struct settings *st, struct loaded *l)
{
    int failed = 0;
    l->routes = calloc(st->n_routes, sizeof(*l->routes));
    l->sinks = calloc(st->n_sinks ? st->n_sinks : 1, sizeof(*l->sinks));
    if (!l->routes || !l->sinks) {
        print_config_error(NULL, "out of memory");
        return -1;
    }
    l->n_routes = st->n_routes;
    for (size_t i = 0; i < st->n_routes; i++)
        if (plugin_sections_prepare(st, st->routes[i].section, st->routes[i].plugin,
                                    AERO_PLUGIN_ROUTE, route_instance_name(&st->routes[i]),
                                    &l->routes[i], print_config_error, NULL) < 0)
            failed = 1;
    l->n_sinks = st->n_sinks;
    for (size_t i = 0; i < st->n_sinks; i++)
        if (plugin_sections_prepare(st, st->sinks[i].section, st->sinks[i].plugin,
                                    AERO_PLUGIN_SINK, st->sinks[i].name, &l->sinks[i],
                                    print_config_error, NULL) < 0)
            failed = 1;
    return failed ? -1 : 0;
}

/* [auth] mode = bearer: load and check the keys file now, so --check
 * catches a bad one and the relay never serves without its keys. */
static int load_keys(struct settings *st, struct loaded *l, char *err, size_t errlen)
{
    if (strcmp(st->auth_mode, "bearer") != 0)
        return 0;
    char reason[1024];
    if (auth_load(st->auth_keys_file, &l->auth, reason, sizeof(reason)) == 0)
        return 0;
    struct config_section *sec = config_find(&st->file, "auth");
    const struct config_kv *kv = sec ? config_get_kv(sec, "keys_file") : NULL;
    return config_errorf(err, errlen, st->file.path, kv ? kv->line : 0, "auth", "keys_file", "%s",
                         reason);
}

/* [control]: the CA and identities now, so --check catches a bad CA file. */
static int load_control(struct settings *st, struct loaded *l, char *err, size_t errlen)
{
    /* SPEC.md section 10: an empty client_ca_file is control disabled,
     * whatever else [control] says; either half alone is worth a word. */
    if (!st->control_client_ca_file[0]) {
        if (st->control_allowed_identities[0])
            log_warn("[control] allowed_identities is set but client_ca_file is empty: "
                     "control is disabled (commands answer UNIMPLEMENTED)");
        return 0;
    }
    if (!st->control_allowed_identities[0])
        log_warn("[control] client_ca_file is set but allowed_identities is empty: every "
                 "control call is refused PERMISSION_DENIED");
    char reason[1024];
    if (tls_cert_check_ca_file(st->control_client_ca_file, true, reason, sizeof(reason)) == 0 &&
        control_auth_load(st->control_client_ca_file, st->control_allowed_identities,
                          &l->control, reason, sizeof(reason)) == 0)
        return 0;
    struct config_section *sec = config_find(&st->file, "control");
    const struct config_kv *kv = sec ? config_get_kv(sec, "client_ca_file") : NULL;
    return config_errorf(err, errlen, st->file.path, kv ? kv->line : 0, "control",
                         "client_ca_file", "%s", reason);
}

/* [control] agent_mappings_file: syntax and permissions, with its line. */
static int load_mappings(struct settings *st, struct loaded *l, char *err, size_t errlen)
{
    if (!st->control_agent_mappings_file[0])
        return 0;
    char reason[1024];
    if (agent_mappings_load(st->control_agent_mappings_file, &l->mappings, reason,
                            sizeof(reason)) == 0)
        return 0;
    struct config_section *sec = config_find(&st->file, "control");
    const struct config_kv *kv = sec ? config_get_kv(sec, "agent_mappings_file") : NULL;
    return config_errorf(err, errlen, st->file.path, kv ? kv->line : 0, "control",
                         "agent_mappings_file", "%s", reason);
}

static void unload_plugins(struct loaded *l)
{
    agent_mappings_free(l->mappings);
    auth_free(l->auth);
    control_auth_free(l->control);
    for (size_t i = 0; i < l->n_sinks; i++)
        plugin_unload(l->sinks[i]);
    free(l->sinks);
    for (size_t i = 0; l->routes && i < l->n_routes; i++)
        plugin_unload(l->routes[i]);
    free(l->routes);
}

/* Signals are taken synchronously by the main thread only; every thread
 * started later inherits this mask. SIGPIPE is ignored: a closed stdout
 * must surface as EPIPE to sink-stdout, not kill the relay. */
static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/*
 * Every connection is a file descriptor: the soft limit (often 1024) would
 * let a few thousand idle connections take the gRPC listener down. Raise it
 * to the hard limit, and say when even that cannot hold max_sessions
 * agents.
 */
static void raise_fd_limit(const struct settings *st)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t was = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = was;
    }
    if (rl.rlim_cur != was)
        log_info("file descriptor limit raised from %llu to %llu (the hard limit)",
                 (unsigned long long)was, (unsigned long long)rl.rlim_cur);
    if (rl.rlim_cur != RLIM_INFINITY && (int64_t)rl.rlim_cur < st->max_sessions + 64)
        log_warn("file descriptor limit %llu is below max_sessions (%lld) + 64: the gRPC "
                 "port stops accepting before the session table is full (raise LimitNOFILE)",
                 (unsigned long long)rl.rlim_cur, (long long)st->max_sessions);
}

/*
 * The gRPC listener's health, each tick: when gRPC's accept loop gave up
 * (out of descriptors), /readyz answers 503 and a new listener is tried
 * every 200 ms; ready again once one accepted without failing for a tick.
 */
struct listener_watch {
    bool down;            /* not accepting: /readyz 503 */
    bool restarted;       /* a new listener is up; ready after a clean tick */
    int64_t next_try_ms;
    unsigned failures;    /* restarts that failed in this episode */
};

static void watch_listener(struct relay *r, struct rpc_server *server, struct listener_watch *lw)
{
    int64_t now_ms = mono_ns() / 1000000;
    if (rpc_server_listener_failed(server)) {
        if (!lw->down)
            log_error("gRPC listener stopped accepting connections (see gRPC's line above: "
                      "out of file descriptors?); /readyz answers 503 until a new one runs");
        lw->down = true;
        lw->restarted = false;
        atomic_store(&r->ready, false);
    }
    if (!lw->down)
        return;
    if (lw->restarted) { /* and no failure since: a clean tick */
        log_info("gRPC listener accepting again (open streams kept); /readyz answers 200");
        *lw = (struct listener_watch){0};
        if (!atomic_load(&r->shutting_down))
            atomic_store(&r->ready, true);
        return;
    }
    if (now_ms < lw->next_try_ms)
        return;
    /* The old listener's socket is closed only once its connections still
     * in their handshake are gone (handshake_timeout_s at most): until
     * then the port is taken and this fails. */
    char err[256];
    lw->next_try_ms = now_ms + 200;
    if (rpc_server_listener_restart(server, err, sizeof(err)) == 0)
        lw->restarted = true;
    else if (lw->failures++ % 10 == 0)
        log_warn("gRPC listener restart failed: %s (retrying every 200 ms)", err);
}

/*
 * A sink that refused every frame for [http] unready_after_s makes /readyz
 * answer 503 naming it and its reason (an orchestrator stops sending
 * agents here); ready again once it takes frames. Logged on each change.
 */
/* Every sink's state for /readyz's component list: at start, before the
 * relay says it is ready, then fresh every turn of the main loop. */
static void list_sinks(struct relay *r)
{
    struct readiness_component states[READINESS_COMPONENTS_MAX]; /* 16 KiB, main thread */
    size_t n = sink_pipeline_states(r->sinks, mono_ns(), states, READINESS_COMPONENTS_MAX);
    readiness_set_sinks(r->readiness, states, n);
}

static void watch_sinks(struct relay *r, bool *failing)
{
    list_sinks(r);
    char name[SINK_REASON_MAX], why[SINK_REASON_MAX];
    bool now = sink_pipeline_failing(r->sinks, mono_ns(),
                                     r->settings->http_unready_after_s * INT64_C(1000000000),
                                     name, why, sizeof(name));
    if (now) {
        char component[SINK_REASON_MAX + 8];
        snprintf(component, sizeof(component), "sink:%s", name);
        readiness_set_unready(r->readiness, component, why);
    }
    if (now == *failing)
        return;
    *failing = now;
    if (now) {
        log_error("sink %s has refused every frame for %lld s (%s): /readyz answers 503", name,
                  (long long)r->settings->http_unready_after_s, why);
    } else {
        readiness_set_unready(r->readiness, NULL, NULL);
        log_info("sinks take frames again: /readyz answers 200");
    }
}

/*
 * [relay] memory_limit_mb: /readyz answers 503 naming "memory" while the
 * guard is over its high-water mark (it refuses new calls meanwhile), 200
 * once it is back under, unless a sink still holds the 503 (watch_sinks
 * runs first and sets its own each tick).
 */
static void watch_memory(struct relay *r, bool *over, bool sinks_failing)
{
    long kb = 0;
    bool now = mem_guard_over(r->memory, &kb);
    if (now) {
        char why[128];
        snprintf(why, sizeof(why), "resident %ld MiB, over memory_limit_mb %lld's high-water mark",
                 kb / 1024, (long long)r->settings->memory_limit_mb);
        readiness_set_unready(r->readiness, "memory", why);
    } else if (*over && !sinks_failing) {
        readiness_set_unready(r->readiness, NULL, NULL);
    }
    if (now != *over) /* the guard's own lines say why; this one says what a probe sees */
        log_info("/readyz answers %s (memory_limit_mb)", now ? "503" : "200 again");
    *over = now;
}

/* Resident set in KiB (0 if unknown). */
static long rss_kb(void)
{
    long long b = process_metrics_resident_bytes();
    return b > 0 ? (long)(b / 1024) : 0;
}

/*
 * A burst of calls (a stream flood, a client that opened thousands and
 * left) leaves glibc holding the freed memory: measured 900 MB resident
 * after a 60,000-stream rapid reset whose calls were all freed, 45 MB
 * after malloc_trim. Looked at every second: trims when the resident set
 * grew by TRIM_GROWTH_KB since the last trim, and every 10th look while it
 * stays that far above the lowest seen (memory freed since a trim made
 * while it was still in use).
 */
#define TRIM_GROWTH_KB (32 * 1024)
struct heap_trim {
    long after_kb; /* resident after the last trim */
    long floor_kb; /* lowest seen, from start-up on */
    unsigned looks;
};

static void trim_heap(struct heap_trim *t)
{
    long now = rss_kb();
    if (now == 0)
        return;
    if (now < t->floor_kb)
        t->floor_kb = now;
    if (now < t->after_kb)
        t->after_kb = now;
    bool grew = now >= t->after_kb + TRIM_GROWTH_KB;
    bool stays_high = ++t->looks % 10 == 0 && now >= t->floor_kb + TRIM_GROWTH_KB;
    if (!grew && !stays_high)
        return;
    malloc_trim(0);
    t->after_kb = rss_kb();
    log_debug("heap trimmed: resident %ld MiB -> %ld MiB", now / 1024, t->after_kb / 1024);
}

/* Wait for SIGTERM/SIGINT, doing periodic work, SIGHUP reopens and reloads. */
/* Held frames are looked at every tick, sessions every tenth (a walk of
 * the whole table), and so is the summary line's clock. */
static void run_until_signal(struct relay *r, struct gateway *gw, struct rpc_server *server,
                             const sigset_t *set, struct service_notify *notify,
                             struct config_reload *cr, const struct config_reload_targets *reload)
{
    struct listener_watch lw = {0};
    bool sinks_failing = false, memory_over = false;
    struct summary *summary = summary_create(r->settings, r->metrics, mono_ns());
    long start_kb = rss_kb();
    struct heap_trim trim = {.after_kb = start_kb, .floor_kb = start_kb};
    const struct timespec tick = {0, 100 * 1000000};
    for (unsigned n = 1;; n++) {
        int sig = sigtimedwait(set, NULL, &tick);
        if (sig == SIGINT || sig == SIGTERM) {
            log_info("signal %s: shutting down (grace %llds)", sig == SIGINT ? "SIGINT" : "SIGTERM",
                     (long long)r->settings->shutdown_grace_s);
            summary_destroy(summary);
            return;
        }
        if (sig == SIGHUP) {
            /* Logged once every sink has been told: anything written after
             * this line goes to the reopened files. */
            sink_pipeline_reopen(r->sinks);
            log_info("SIGHUP: sink outputs reopen before their next write");
            const struct settings *sinks_were = config_reload_sinks(cr);
            if (cr && config_reload_run(cr, reload, r->settings->file.path) == 0 &&
                config_reload_sinks(cr) != sinks_were)
                summary_set_sinks(summary, config_reload_sinks(cr), mono_ns());
        }
        service_notify_watchdog(notify, mono_ns()); /* this loop turns: the relay lives */
        watch_listener(r, server, &lw);
        watch_sinks(r, &sinks_failing);
        sink_pipeline_tick(r->sinks); /* sinks a reload retired: drained, then freed */
        watch_memory(r, &memory_over, sinks_failing);
        agent_gateway_tick_held(gw);
        command_hub_tick(r->commands, mono_ns());
        if (n % 10 == 0) {
            agent_gateway_tick(gw, agent_gateway_now_ns(), rpc_server_lag_ns(server));
            trim_heap(&trim);
            summary_tick(summary, mono_ns(), session_table_count(r->sessions),
                         agent_gateway_open_streams(gw));
        }
    }
}

/* Give open streams until the grace period ends to send the acks they owe
 * and their UNAVAILABLE status. Returns the grace left, in ms. Timed on the
 * monotonic clock: a wall-clock step must not cut or stretch the grace. */
static int64_t drain_streams(struct gateway *gw, int64_t grace_ms)
{
    const struct timespec step = {0, 10 * 1000000};
    int64_t start = mono_ns() / 1000000;
    while (agent_gateway_open_streams(gw) > 0 && mono_ns() / 1000000 - start < grace_ms)
        nanosleep(&step, NULL);
    int64_t left = grace_ms - (mono_ns() / 1000000 - start);
    return left > 0 ? left : 0;
}

/* rpc_server's after_burst: write what the burst's frames deferred. */
static void flush_sinks(void *sinks, struct worker_ctx *w)
{
    sink_pipeline_flush(sinks, &w->owed);
}

/* Sessions that never opened a stream still hold routes: take them down. */
static void drop_remaining_routes(struct relay *r)
{
    struct session_info *infos = NULL;
    size_t n = session_table_list(r->sessions, &infos);
    for (size_t i = 0; i < n; i++)
        route_down(r->route, infos[i].agent_id, infos[i].session_id);
    session_infos_free(infos, n);
}

/* Everything serve() starts; stop_running takes down what is set. */
struct running {
    struct relay relay;
    struct host_relay host_relay; /* what plugin hosts answer about the relay */
    _Atomic int grpc_port;        /* 0 until bound */
    struct sink_instance_spec *specs;
    struct route_spec *route_specs;
    struct gateway *gw;
    struct rpc_server *server;
    struct http_server *http;
    char http_addr[300]; /* "off" or "on <addr> (port N)" */
    int port;
};

/* A listen address only this host can reach: a unix socket, 127.0.0.0/8,
 * ::1 or localhost. */
static bool listen_is_local(const char *listen)
{
    if (strncmp(listen, "unix:", 5) == 0 || strncmp(listen, "127.", 4) == 0 ||
        strncmp(listen, "localhost:", 10) == 0 || strncmp(listen, "[::1]:", 6) == 0)
        return true;
    return false;
}

/* One line at start when the gRPC port is reachable from other hosts and
 * something protects nothing there: operators expose relays by accident. */
static void warn_unprotected(const struct settings *st)
{
    bool tls = st->tls_cert_file[0] != '\0';
    bool auth = strcmp(st->auth_mode, "bearer") == 0;
    if (listen_is_local(st->listen) || (tls && auth))
        return;
    log_warn("gRPC listens on %s, beyond this host, %s%s%s: %s", st->listen,
             tls ? "" : "without TLS", !tls && !auth ? " and " : "", auth ? "" : "without [auth]",
             !tls && !auth ? "frames travel in clear text and anyone who reaches the port can "
                             "register any agent id"
             : !tls      ? "frames and API keys travel in clear text"
                         : "anyone who reaches the port can register any agent id");
}

static int start_grpc(struct running *r, const struct settings *st)
{
    char err[1024];
    struct rpc_server_options opt = {
        .listen = st->listen,
        .workers = st->workers,
        .max_message_bytes = st->max_message_bytes,
        .max_streams_per_connection = st->max_streams_per_connection,
        .keepalive_time_s = st->keepalive_time_s,
        .keepalive_timeout_s = st->keepalive_timeout_s,
        .handshake_timeout_s = st->handshake_timeout_s,
        .tls_cert_file = st->tls_cert_file,
        .tls_key_file = st->tls_key_file,
        .tls_client_ca_file = st->tls_client_ca_file,
        .control_client_ca_file = st->control_client_ca_file,
        .after_burst = flush_sinks,
        .after_burst_arg = r->relay.sinks,
        .metrics = r->relay.metrics,
    };
    r->gw = agent_gateway_create(&r->relay);
    r->relay.gateway = r->gw;
    r->server = r->gw ? rpc_server_create(&opt, err, sizeof(err)) : NULL;
    if (!r->server || agent_gateway_add_methods(r->gw, r->server) < 0 ||
        health_service_add(&r->relay, r->server) < 0 ||
        relay_control_add(&r->relay, r->server) < 0 ||
        command_durable_add(&r->relay, r->server) < 0 ||
        command_mission_add(&r->relay, r->server) < 0) {
        log_error("cannot set up the gRPC server: %s",
                  r->server ? "method registration failed" : r->gw ? err : "out of memory");
        return -1;
    }
    r->port = rpc_server_start(r->server, err, sizeof(err));
    if (r->port < 0) {
        log_error("gRPC: %s", err);
        return -1;
    }
    warn_unprotected(st);
    /* After the start: the guard sheds through the server's conn_guard. */
    r->relay.memory = mem_guard_start(st->memory_limit_mb, rpc_server_conn_guard(r->server));
    atomic_store(&r->grpc_port, r->port); /* route plugins may advertise it now */
    return 0;
}

/* HTTP, sinks, route, then gRPC: when this returns 0 the relay is ready. */
static int start_running(struct running *r, struct settings *st, struct loaded *l)
{
    char err[1024];
    r->relay.metrics = metrics_create();
    r->relay.sessions = session_table_create();
    r->relay.auth = r->relay.metrics ? call_auth_create(l->auth, r->relay.metrics) : NULL;
    r->relay.commands =
        command_hub_create(r->relay.metrics, st->control_command_timeout_s * INT64_C(1000000000));
    r->relay.readiness = readiness_create();
    if (r->relay.metrics &&
        process_metrics_register(r->relay.metrics, AERO_VERSION, AERO_ABI_MAJOR, AERO_ABI_MINOR) < 0)
        log_warn("process metrics are not available");
    r->specs = calloc(st->n_sinks ? st->n_sinks : 1, sizeof(*r->specs));
    r->route_specs = calloc(st->n_routes, sizeof(*r->route_specs));
    if (!r->specs || !r->route_specs || !r->relay.metrics || !r->relay.sessions ||
        !r->relay.auth || !r->relay.commands || !r->relay.readiness) {
        log_error("out of memory at start-up");
        return -1;
    }
    if (st->tls_cert_file && st->tls_cert_file[0])
        tls_cert_check(st->tls_cert_file, r->relay.metrics);
    /* HTTP first, answering /readyz 503, so probes and scrapes work while
     * plugins start; a port that cannot be bound stops the relay here. */
    snprintf(r->http_addr, sizeof(r->http_addr), "off");
    if (st->http_listen[0]) {
        if (http_server_start(&r->http, st->http_listen, &r->relay, err, sizeof(err)) < 0) {
            log_error("%s", err);
            return -1;
        }
        snprintf(r->http_addr, sizeof(r->http_addr), "on %s (port %d)", st->http_listen,
                 http_server_port(r->http));
    }
    for (size_t i = 0; i < st->n_sinks; i++)
        r->specs[i] = (struct sink_instance_spec){&st->sinks[i], l->sinks[i]};
    for (size_t i = 0; i < st->n_routes; i++)
        r->route_specs[i] = (struct route_spec){&st->routes[i], l->routes[i]};
    r->host_relay = (struct host_relay){.listen = st->listen,
                                        .grpc_port = &r->grpc_port,
                                        .sessions = r->relay.sessions,
                                        .readiness = r->relay.readiness};
    /* One gRPC worker always stays free of inline sink writes. */
    if (sink_pipeline_start(&r->relay.sinks, r->specs, st->n_sinks, st->workers - 1,
                            st->relay_id, r->relay.metrics, err, sizeof(err)) < 0 ||
        route_start(&r->relay.route, r->route_specs, st->n_routes, st->relay_id,
                    r->relay.metrics, &r->host_relay, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return -1;
    }
    sink_pipeline_set_unmatched_ack(r->relay.sinks, st->unmatched_ack);
    return start_grpc(r, st);
}

/* Take down what start_running set up, within what is left of the grace.
 * Returns rc, or exits at once when a sink would not stop. */
static int stop_running(struct running *r, int64_t grace_left_ms, int rc)
{
    atomic_store(&r->relay.ready, false);
    atomic_store(&r->relay.shutting_down, true);
    /* Streams are drained: unary calls need little more. */
    int64_t stop_start_ms = mono_ns() / 1000000;
    command_hub_shutdown(r->relay.commands); /* callers still waiting: UNAVAILABLE */
    mem_guard_stop(r->relay.memory); /* before the server: it borrows the server's conn_guard */
    r->relay.memory = NULL;
    rpc_server_shutdown(r->server, grace_left_ms < 1000 ? grace_left_ms : 1000);
    grace_left_ms -= mono_ns() / 1000000 - stop_start_ms;
    /* Flushes: acks already sent stay true. A sink stuck in write_batch
     * (its frames were never acked OK) must not keep the relay up past the
     * grace: leave without freeing what its thread may still touch. */
    if (!sink_pipeline_stop(r->relay.sinks, grace_left_ms > 200 ? grace_left_ms : 200)) {
        log_error("shutdown: a sink did not stop in time; exiting without its flush");
        _exit(rc);
    }
    if (r->relay.sessions)
        drop_remaining_routes(&r->relay);
    route_stop(r->relay.route);
    agent_gateway_destroy(r->gw);
    session_table_destroy(r->relay.sessions, agent_gateway_drop_owner);
    call_auth_destroy(r->relay.auth);
    command_hub_destroy(r->relay.commands);
    /* Last: /metrics stays scrapeable through the drain and the flush. */
    http_server_stop(r->http);
    readiness_destroy(r->relay.readiness);
    metrics_destroy(r->relay.metrics);
    free(r->specs);
    free(r->route_specs);
    return rc;
}

/* "route-none" or "route-redis, route:registry route-registry": for the
 * start-up line and --check. */
static void describe_routes(const struct settings *st, char *buf, size_t len)
{
    size_t used = (size_t)snprintf(buf, len, "%s", st->routes[0].plugin);
    for (size_t i = 1; i < st->n_routes && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, ", route:%s %s", st->routes[i].name,
                                 st->routes[i].plugin);
}

static int serve(struct settings *st, struct loaded *l)
{
    sigset_t set;
    int rc = 1;
    int64_t grace_left_ms = 0;
    struct config_reload *cr = NULL; /* SIGHUP's, once serving */
    struct running r = {.relay = {.settings = st, .control = l->control,
                                  .mappings = l->mappings}};
    struct service_notify notify;
    char notify_err[256];

    block_signals(&set);
    if (service_notify_open(&notify, mono_ns(), notify_err, sizeof(notify_err)) < 0)
        log_warn("%s: systemd will not hear that the relay is ready", notify_err);
    raise_fd_limit(st);
    if (!absl_tuning_deadlock_detection_off())
        log_debug("Abseil's Mutex deadlock detection left as built (no switch found)");
    if (start_running(&r, st, l) == 0) {
        char routes[512];
        describe_routes(st, routes, sizeof(routes));
        list_sinks(&r.relay);
        atomic_store(&r.relay.ready, true); /* port bound, every plugin created */
        log_info("aeroarc-relay %s serving gRPC on %s (port %d), HTTP %s, relay_id %s, "
                 "%zu sink(s), route %s, %d worker(s), memory limit %lld MiB",
                 AERO_VERSION, st->listen, r.port, r.http_addr, st->relay_id, st->n_sinks,
                 routes, st->workers, (long long)st->memory_limit_mb);
        char status[512];
        snprintf(status, sizeof(status), "READY=1\nSTATUS=serving gRPC on %s (port %d)",
                 st->listen, r.port);
        service_notify_send(&notify, status);
        struct config_reload_targets reload = {.running = st, .call_auth = r.relay.auth,
                                               .keys = &l->auth, .control = l->control,
                                               .mappings = l->mappings, .server = r.server,
                                               .sinks = r.relay.sinks, .routes = r.relay.route,
                                               .sessions = r.relay.sessions};
        cr = config_reload_create(r.relay.metrics);
        run_until_signal(&r.relay, r.gw, r.server, &set, &notify, cr, &reload);
        /* Not ready first: load balancers stop sending before streams drain. */
        service_notify_send(&notify, "STOPPING=1\nSTATUS=draining streams, then stopping");
        atomic_store(&r.relay.ready, false);
        atomic_store(&r.relay.shutting_down, true);
        agent_gateway_begin_shutdown(r.gw);
        grace_left_ms = drain_streams(r.gw, st->shutdown_grace_s * 1000);
        rc = 0;
    }
    rc = stop_running(&r, grace_left_ms, rc);
    config_reload_destroy(cr); /* after the sinks it started have stopped */
    service_notify_close(&notify);
    if (rc == 0)
        log_info("stopped cleanly");
    return rc;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    struct settings st;
    struct loaded l = {0};
    char err[16384];

    if (parse_args(argc, argv, &o) < 0)
        return 2;
    /* Every error is printed, not just the first: the file's own (syntax,
     * then each section's keys), and once those are right the files it
     * names (TLS, keys, control), then each plugin section (keys
     * validated, then the plugin's own check). */
    if (settings_load(o.config, &st, err, sizeof(err)) < 0) {
        print_config_error(NULL, err);
        return 2;
    }
    log_configure(st.log_level, st.log_format);
    int failed = 0;
    if (check_tls_files(&st) < 0)
        failed = 1;
    if (load_keys(&st, &l, err, sizeof(err)) < 0) {
        fprintf(stderr, "aeroarc-relay: %s\n", err);
        failed = 1;
    }
    if (load_control(&st, &l, err, sizeof(err)) < 0) {
        fprintf(stderr, "aeroarc-relay: %s\n", err);
        failed = 1;
    }
    if (load_mappings(&st, &l, err, sizeof(err)) < 0) {
        fprintf(stderr, "aeroarc-relay: %s\n", err);
        failed = 1;
    }
    if (load_plugins(&st, &l) != 0)
        failed = 1;
    if (failed) {
        unload_plugins(&l);
        settings_free(&st);
        return 2;
    }
    int rc = 0;
    if (o.check) {
        char routes[512];
        describe_routes(&st, routes, sizeof(routes));
        printf("%s: configuration OK (route %s, %zu sink(s))\n", o.config, routes, st.n_sinks);
    }
    else
        rc = serve(&st, &l);
    unload_plugins(&l);
    settings_free(&st);
    return rc;
}
