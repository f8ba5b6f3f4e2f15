/*
 * config_reload.c - SIGHUP (config_reload.h). Everything the new file
 * needs is read and checked first (the file, the routes' and sinks'
 * plugins and checks, the keys, the control CA, the mappings); only when
 * all of it is good is anything applied: the new routes and sinks first
 * (starting them are the steps that can still fail), then each other piece
 * swapped under its owner's lock, so a check in flight finishes with the
 * old value and the next one sees the new.
 */
#include "config_reload.h"

#include "agent_mappings.h"
#include "auth.h"
#include "call_auth.h"
#include "control_auth.h"
#include "log.h"
#include "plugin_loader.h"
#include "route_reload.h"
#include "rpc_server.h"
#include "sink_reload.h"
#include "tls_cert.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A reload that started routes or sinks: the settings they run on and
 * the plugins loaded for them, kept until the relay exits. */
struct kept_config {
    struct kept_config *next;
    struct settings settings;
    struct plugin **plugins;
    size_t n_plugins;
};

struct config_reload {
    struct metrics *m;
    aero_metric *ok, *error;
    struct kept_config *kept;
    const struct settings *sinks_from; /* the last reload that changed the sinks */
};

struct config_reload *config_reload_create(struct metrics *m)
{
    struct config_reload *cr = calloc(1, sizeof(*cr));
    if (!cr)
        return NULL;
    cr->m = m;
    static const char help[] =
        "SIGHUP reloads of relay.ini: ok (applied; keys that need a restart are logged) or "
        "error (refused whole, the running configuration kept).";
    cr->ok = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_config_reloads_total", help,
                              "result=\"ok\"");
    cr->error = metrics_register(m, AERO_METRIC_COUNTER, "aero_relay_config_reloads_total", help,
                                 "result=\"error\"");
    return cr;
}

void config_reload_destroy(struct config_reload *cr)
{
    if (!cr)
        return;
    while (cr->kept) {
        struct kept_config *k = cr->kept;
        cr->kept = k->next;
        for (size_t i = 0; i < k->n_plugins; i++)
            plugin_unload(k->plugins[i]);
        free(k->plugins);
        settings_free(&k->settings);
        free(k);
    }
    free(cr);
}

const struct settings *config_reload_sinks(const struct config_reload *cr)
{
    return cr ? cr->sinks_from : NULL;
}

static bool on(const char *s) { return s && *s; }

/* Keys a reload applies, given what the running relay has on. */
static bool reloadable(const struct settings *run, const struct settings *next,
                       const char *section, const char *key)
{
    if (strncmp(section, "sink:", 5) == 0) /* sink_reload.c */
        return true;
    if (strcmp(section, "route") == 0 || strncmp(section, "route:", 6) == 0)
        return true; /* route_reload.c */
    if (strcmp(section, "log") == 0)
        return strcmp(key, "level") == 0 || strcmp(key, "format") == 0;
    if (strcmp(section, "auth") == 0) /* the keys, not the mode */
        return strcmp(key, "keys_file") == 0 && strcmp(run->auth_mode, "bearer") == 0 &&
               strcmp(next->auth_mode, "bearer") == 0;
    if (strcmp(section, "control") != 0)
        return false;
    bool control = on(run->control_client_ca_file) && on(next->control_client_ca_file);
    if (strcmp(key, "client_ca_file") == 0 || strcmp(key, "allowed_identities") == 0)
        return control;
    return strcmp(key, "agent_mappings_file") == 0 && on(run->control_agent_mappings_file) &&
           on(next->control_agent_mappings_file);
}

/* Append "[section] key" to list (comma-separated) once. */
static void add_name(char *list, size_t cap, const char *section, const char *key)
{
    char item[160];
    snprintf(item, sizeof(item), "[%s] %s", section, key);
    if (strstr(list, item))
        return;
    size_t len = strlen(list);
    snprintf(list + len, cap - len, "%s%s", len ? ", " : "", item);
}

/* Every key of a's sections that b lacks or has with another value. */
static void diff_into(const struct settings *run, const struct settings *next,
                      const struct config_file *a, const struct config_file *b, char *list,
                      size_t cap)
{
    for (size_t i = 0; i < a->n_sections; i++) {
        const struct config_section *s = &a->sections[i];
        const struct config_section *t = config_find(b, s->name);
        for (size_t k = 0; k < s->n_kv; k++) {
            const char *other = t ? config_get(t, s->kv[k].key) : NULL;
            if ((!other || strcmp(other, s->kv[k].value) != 0) &&
                !reloadable(run, next, s->name, s->kv[k].key))
                add_name(list, cap, s->name, s->kv[k].key);
        }
        if (!t && !reloadable(run, next, s->name, ""))
            add_name(list, cap, s->name, "(section)");
    }
}

/* The new objects a reload installs, made and checked before any is. */
struct staged {
    struct auth *keys;
    struct control_auth *control;
    struct agent_mappings *mappings;
    struct route_stage routes;
    struct sink_stage sinks;
};

static void staged_free(struct staged *s)
{
    auth_free(s->keys);
    control_auth_free(s->control);
    agent_mappings_free(s->mappings);
    route_reload_unstage(&s->routes);
    sink_reload_unstage(&s->sinks);
}

/* The TLS files the running relay uses (their paths need a restart to
 * change), as they are now: what the next handshakes would read. */
static int check_tls(const struct settings *run, char *err, size_t errlen)
{
    char cert_err[512] = "", key_err[512] = "", ca_err[512] = "";
    if (tls_cert_check_pair(run->tls_cert_file, run->tls_key_file, cert_err, key_err,
                            sizeof(cert_err)) < 0) {
        snprintf(err, errlen, "[tls] %s%s%s", cert_err, cert_err[0] && key_err[0] ? "; " : "",
                 key_err);
        return -1;
    }
    if ((on(run->tls_client_ca_file) &&
         tls_cert_check_ca_file(run->tls_client_ca_file, false, ca_err, sizeof(ca_err)) < 0) ||
        (on(run->control_client_ca_file) &&
         tls_cert_check_ca_file(run->control_client_ca_file, true, ca_err, sizeof(ca_err)) < 0)) {
        snprintf(err, errlen, "client CA file: %s", ca_err);
        return -1;
    }
    return 0;
}

static int stage(const struct config_reload_targets *t, struct settings *next,
                 struct staged *s, char *err, size_t errlen)
{
    char reason[1024];
    if (t->routes && route_reload_stage(t->routes, next, &s->routes, err, errlen) < 0)
        return -1;
    if (t->sinks && sink_reload_stage(t->sinks, next, &s->sinks, err, errlen) < 0)
        return -1;
    if (on(t->running->tls_cert_file) && check_tls(t->running, err, errlen) < 0)
        return -1;
    if (*t->keys && strcmp(next->auth_mode, "bearer") == 0 &&
        auth_load(next->auth_keys_file, &s->keys, reason, sizeof(reason)) < 0) {
        snprintf(err, errlen, "[auth] keys_file: %s", reason);
        return -1;
    }
    if (t->control && on(next->control_client_ca_file) &&
        control_auth_load(next->control_client_ca_file, next->control_allowed_identities,
                          &s->control, reason, sizeof(reason)) < 0) {
        snprintf(err, errlen, "[control] client_ca_file: %s", reason);
        return -1;
    }
    if (t->mappings && on(next->control_agent_mappings_file) &&
        agent_mappings_load(next->control_agent_mappings_file, &s->mappings, reason,
                            sizeof(reason)) < 0) {
        snprintf(err, errlen, "[control] agent_mappings_file: %s", reason);
        return -1;
    }
    return 0;
}

/* The running configuration stays: say why, count it. */
static int refuse(struct config_reload *cr, const char *path, const char *err)
{
    log_error("SIGHUP: %s not reloaded, the running configuration stays: %s", path, err);
    metrics_inc(cr->error);
    return -1;
}

/* Keep `next` and the plugins of the instances the applied stages
 * started (taken out of the stages) for as long as the relay runs. */
static int keep(struct config_reload *cr, struct settings *next, struct staged *s, bool routes,
                bool sinks)
{
    struct kept_config *k = calloc(1, sizeof(*k));
    size_t n = s->routes.n + s->sinks.n;
    if (!k || !(k->plugins = calloc(n ? n : 1, sizeof(*k->plugins)))) {
        free(k);
        return -1;
    }
    for (size_t i = 0; routes && i < s->routes.n; i++)
        if (s->routes.fresh[i]) {
            k->plugins[k->n_plugins++] = s->routes.specs[i].plugin;
            s->routes.specs[i].plugin = NULL;
        }
    for (size_t i = 0; sinks && i < s->sinks.n; i++)
        if (s->sinks.fresh[i]) {
            k->plugins[k->n_plugins++] = s->sinks.specs[i].plugin;
            s->sinks.specs[i].plugin = NULL;
        }
    k->settings = *next; /* the routes and sinks point into its arrays, not at it */
    k->next = cr->kept;
    cr->kept = k;
    if (sinks)
        cr->sinks_from = &k->settings;
    return 0;
}

/*
 * Swap the staged routes, then sinks, in: the steps that can still fail
 * (an instance's create), before anything else is applied. Describes what
 * changed into `what`; *kept: `next` is kept (new instances run on it).
 * Should the sinks fail after the routes changed, the routes stay changed
 * (their old instances are gone) and the error says so.
 */
static int apply_instances(struct config_reload *cr, const struct config_reload_targets *t,
                           struct settings *next, struct staged *s, bool *kept, char *what,
                           size_t cap, char *err, size_t errlen)
{
    struct route_swap_counts rc = {0};
    struct sink_swap_counts sc = {0};
    bool routes = t->routes && s->routes.changed, sinks = t->sinks && s->sinks.changed;
    int result = 0;
    *kept = false;
    if (routes && route_reload_apply(t->routes, &s->routes, t->sessions, &rc, err, errlen) < 0)
        return -1;
    if (sinks && sink_reload_apply(t->sinks, &s->sinks, &sc, err, errlen) < 0) {
        if (!routes)
            return -1;
        size_t len = strlen(err);
        snprintf(err + len, errlen - len,
                 " (the routes were reloaded: %zu kept, %zu started, %zu stopped)", rc.kept,
                 rc.started, rc.stopped);
        sinks = false;
        result = -1;
    }
    if (routes || sinks) {
        if (keep(cr, next, s, routes, sinks) < 0)
            log_error("SIGHUP: out of memory keeping the new routes' and sinks' configuration");
        else
            *kept = true;
    }
    int used = sinks ? snprintf(what, cap, "sinks: %zu kept, %zu started, %zu draining to stop",
                                sc.kept, sc.started, sc.retired)
                     : snprintf(what, cap, "sinks unchanged");
    if (used >= 0 && (size_t)used < cap) {
        if (routes)
            snprintf(what + used, cap - (size_t)used, ", routes: %zu kept, %zu started, %zu stopped",
                     rc.kept, rc.started, rc.stopped);
        else
            snprintf(what + used, cap - (size_t)used, ", routes unchanged");
    }
    return result;
}

int config_reload_run(struct config_reload *cr, const struct config_reload_targets *t,
                      const char *path)
{
    struct settings next;
    struct staged s = {0};
    char err[4096], sinks[256];
    bool kept = false;
    int loaded = settings_load(path, &next, err, sizeof(err)); /* frees itself on failure */
    if (loaded < 0 || stage(t, &next, &s, err, sizeof(err)) < 0 ||
        apply_instances(cr, t, &next, &s, &kept, sinks, sizeof(sinks), err, sizeof(err)) < 0) {
        staged_free(&s);
        if (loaded == 0 && !kept)
            settings_free(&next);
        return refuse(cr, path, err);
    }
    char restart[2048] = "";
    diff_into(t->running, &next, &t->running->file, &next.file, restart, sizeof(restart));
    diff_into(t->running, &next, &next.file, &t->running->file, restart, sizeof(restart));

    log_configure(next.log_level, next.log_format);
    bool tls = on(t->running->tls_cert_file) && t->server;
    if (tls) {
        rpc_server_tls_reload(t->server);
        tls_cert_check(t->running->tls_cert_file, cr->m); /* expiry gauge and warning */
    }
    bool keys = s.keys, control = s.control, mappings = s.mappings;
    if (keys) { /* each adopter takes its object over */
        auth_free((struct auth *)call_auth_swap_keys(t->call_auth, s.keys));
        *t->keys = s.keys;
    }
    if (control)
        control_auth_adopt(t->control, s.control);
    if (mappings)
        agent_mappings_adopt(t->mappings, s.mappings);
    s.keys = NULL;
    s.control = NULL;
    s.mappings = NULL;
    log_info("SIGHUP: %s reloaded: log %s, %s, %s, %s, %s, %s", path,
             log_level_name(next.log_level),
             tls ? "TLS files read again for new connections" : "no TLS",
             keys ? "agent keys read again" : "no agent keys",
             control ? "control CA and identities read again" : "control off",
             mappings ? "agent mappings read again" : "no agent mappings", sinks);
    if (restart[0])
        log_warn("SIGHUP: these changed and need a restart, left as they were: %s", restart);
    metrics_inc(cr->ok);
    staged_free(&s);
    if (!kept)
        settings_free(&next);
    return 0;
}
