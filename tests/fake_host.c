/*
 * fake_host.c - the relay's side of the plugin ABI, faked for unit tests
 * (collectd's plugin_mock.c idea): dlopen a plugin, validate and serve its
 * config, capture its logs, configuration errors and metrics for assertions.
 * The config is held and validated by the core's own config.c (the section
 * as if written in relay.ini, one key per line), so values, typed reads and
 * error lines are exactly the relay's. Host functions may be called from
 * any thread (a mutex guards logs and errors, metrics are atomics).
 */
#include "fake_host.h"

#include "config.h"
#include "envelope_json.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { FAKE_MAX_METRICS = 64, FAKE_MAX_KEYS = 64 };

struct aero_metric {
    char name[128];
    aero_metric_type type;
    _Atomic int64_t value;
};

struct fake_host {
    aero_host api; /* first: callbacks get back to fake_host by a cast */
    char *instance;
    char *relay;
    struct config_file file;        /* "relay.ini" holding one section */
    struct config_section *sec;     /* file.sections[0] */

    pthread_mutex_t lock; /* logs, config errors, metric registration */
    char *log;
    size_t log_len, log_cap;
    size_t log_counts[4];
    char *errors;         /* config errors, one per line */
    size_t errors_len, errors_cap, n_errors;
    struct aero_metric metrics[FAKE_MAX_METRICS];
    size_t n_metrics;
};

static const char *const LEVEL_NAMES[4] = {"debug", "info", "warn", "error"};

/* ---------------------------------------------------------- loading */

const aero_plugin_descriptor *fake_host_load_path(const char *path,
                                                  void **handle)
{
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (*handle == NULL) {
        fprintf(stderr, "fake_host: dlopen %s: %s\n", path, dlerror());
        return NULL;
    }
    const aero_plugin_descriptor *(*entry)(void);
    void *sym = dlsym(*handle, AERO_PLUGIN_ENTRY_SYMBOL);
    memcpy(&entry, &sym, sizeof(entry)); /* object -> function pointer */
    if (entry == NULL) {
        fprintf(stderr, "fake_host: %s: no %s\n", path, AERO_PLUGIN_ENTRY_SYMBOL);
        dlclose(*handle);
        *handle = NULL;
        return NULL;
    }
    return entry();
}

const aero_plugin_descriptor *fake_host_load(const char *name, void **handle)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s.so", AERO_PLUGIN_BUILD_DIR, name);
    return fake_host_load_path(path, handle);
}

void fake_host_unload(void *handle)
{
    if (handle != NULL)
        dlclose(handle);
}

/* -------------------------------------------------- host functions */

static fake_host *from_api(const aero_host *host)
{
    return (fake_host *)host; /* api is the first member */
}

/* Append line to a growing buffer; lock held. */
static void append(char **buf, size_t *len, size_t *cap, const char *line)
{
    size_t n = strlen(line);
    if (*len + n + 1 > *cap) {
        size_t c = (*cap + n + 1) * 2;
        char *p = realloc(*buf, c);
        if (p == NULL)
            return;
        *buf = p;
        *cap = c;
    }
    memcpy(*buf + *len, line, n + 1);
    *len += n;
}

static void fake_log(const aero_host *host, aero_log_level level,
                     const char *fmt, ...)
{
    fake_host *fh = from_api(host);
    char line[1024];
    int lvl = (level >= AERO_LOG_DEBUG && level <= AERO_LOG_ERROR) ? (int)level : 3;
    int n = snprintf(line, sizeof(line), "%s ", LEVEL_NAMES[lvl]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    strcat(line, "\n");

    pthread_mutex_lock(&fh->lock);
    append(&fh->log, &fh->log_len, &fh->log_cap, line);
    fh->log_counts[lvl]++;
    pthread_mutex_unlock(&fh->lock);
    fprintf(stderr, "[fake_host %s] %s", fh->sec->name, line);
}

static const char *fake_config_get(const aero_host *host, const char *key)
{
    return config_get(from_api(host)->sec, key);
}

static const char *fake_section(const aero_host *host)
{
    return from_api(host)->sec->name;
}

static const char *fake_instance_name(const aero_host *host)
{
    return from_api(host)->instance;
}

static const char *fake_relay_id(const aero_host *host)
{
    return from_api(host)->relay;
}

static size_t fake_envelope_json(const aero_host *host, const aero_frame *frame,
                                 char *buf, size_t cap)
{
    return envelope_json_encode(frame, buf, cap);
}

static int metric_name_valid(const char *s)
{
    if (s == NULL || !(*s == '_' || *s == ':' || (*s >= 'a' && *s <= 'z') ||
                       (*s >= 'A' && *s <= 'Z')))
        return 0;
    for (; *s; s++) {
        if (!(*s == '_' || *s == ':' || (*s >= 'a' && *s <= 'z') ||
              (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
            return 0;
    }
    return 1;
}

static aero_metric *fake_metric_register(const aero_host *host,
                                         aero_metric_type type,
                                         const char *name, const char *help)
{
    fake_host *fh = from_api(host);
    aero_metric *m = NULL;

    if (!metric_name_valid(name) || strlen(name) >= sizeof(m->name) ||
        (type != AERO_METRIC_COUNTER && type != AERO_METRIC_GAUGE))
        return NULL;
    pthread_mutex_lock(&fh->lock);
    for (size_t i = 0; i < fh->n_metrics; i++) {
        if (strcmp(fh->metrics[i].name, name) == 0)
            goto out; /* a duplicate is the plugin's bug: NULL */
    }
    if (fh->n_metrics < FAKE_MAX_METRICS) {
        m = &fh->metrics[fh->n_metrics++];
        snprintf(m->name, sizeof(m->name), "%s", name);
        m->type = type;
        atomic_store(&m->value, 0);
    }
out:
    pthread_mutex_unlock(&fh->lock);
    return m;
}

static void fake_metric_add(aero_metric *m, uint64_t delta)
{
    if (m != NULL)
        atomic_fetch_add(&m->value, (int64_t)delta);
}

static void fake_metric_set(aero_metric *m, int64_t value)
{
    if (m != NULL)
        atomic_store(&m->value, value);
}

/* ----------------------------------------------- typed config (1.1) */

static void record_error(fake_host *fh, const char *line)
{
    pthread_mutex_lock(&fh->lock);
    append(&fh->errors, &fh->errors_len, &fh->errors_cap, line);
    append(&fh->errors, &fh->errors_len, &fh->errors_cap, "\n");
    fh->n_errors++;
    pthread_mutex_unlock(&fh->lock);
    fprintf(stderr, "[fake_host config error] %s\n", line);
}

static int read_result(fake_host *fh, int rc, const char *err)
{
    if (rc < 0 && rc != -ENOENT)
        record_error(fh, err);
    return rc;
}

static int fake_config_bool(const aero_host *host, const char *key, int *out)
{
    fake_host *fh = from_api(host);
    char err[CONFIG_ERR_LEN];
    return read_result(fh, config_read_bool(fh->sec, key, out, err, sizeof(err)), err);
}

static int fake_config_int(const aero_host *host, const char *key, int64_t min,
                           int64_t max, int64_t *out)
{
    fake_host *fh = from_api(host);
    char err[CONFIG_ERR_LEN];
    long long v = 0;
    int rc = read_result(fh, config_read_int(fh->sec, key, min, max, &v, err, sizeof(err)),
                         err);
    if (rc == 0)
        *out = v;
    return rc;
}

static int fake_config_enum(const aero_host *host, const char *key,
                            const char *choices, int *index_out)
{
    fake_host *fh = from_api(host);
    char err[CONFIG_ERR_LEN];
    return read_result(fh, config_read_enum(fh->sec, key, choices, index_out, err,
                                            sizeof(err)), err);
}

static int fake_config_error(const aero_host *host, const char *key,
                             const char *fmt, ...)
{
    fake_host *fh = from_api(host);
    char msg[CONFIG_ERR_LEN], line[CONFIG_ERR_LEN + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    config_errorf(line, sizeof(line), fh->file.path, config_line_of(fh->sec, key),
                  fh->sec->name, key, "%s", msg);
    record_error(fh, line);
    return -EINVAL;
}

/* ------------------------------------------------------- validation */

/* The core's keys of each plugin section (settings.c declares them for
 * the relay); plugin is not required here, tests rarely name it. */
static const aero_config_key SINK_CORE_KEYS[] = {
    {.name = "plugin", .type = AERO_KEY_STRING, .help = "the sink plugin"},
    {.name = "queue", .type = AERO_KEY_INT, .default_value = "4096",
     .help = "frames queued", .min = 1, .max = 10000000},
    {.name = "on_full", .type = AERO_KEY_ENUM, .default_value = "block",
     .help = "when the queue is full", .choices = "block|reject"},
};
static const aero_config_key ROUTE_CORE_KEYS[] = {
    {.name = "plugin", .type = AERO_KEY_STRING, .help = "the route plugin"},
    {.name = "ttl_s", .type = AERO_KEY_INT, .default_value = "45",
     .help = "route key lifetime in seconds", .min = 1, .max = 86400},
};

/* The section as if relay.ini said "[section]" on line 1 and kv's pairs
 * one per line from line 2 (a key given twice: the later value wins, on
 * its own line), validated as the relay does. 0 or -EINVAL (printed). */
static int fill_config(fake_host *fh, const aero_plugin_descriptor *d,
                       const char *section, const char *const *kv)
{
    char err[CONFIG_ERR_LEN];
    struct config_keys tables[2];
    int sink = d->kind == AERO_PLUGIN_SINK;

    fh->file.path = strdup("relay.ini");
    if (fh->file.path == NULL || !(fh->sec = config_add_section(&fh->file, section, 1)))
        return -ENOMEM;
    for (size_t i = 0; kv && kv[i]; i += 2) {
        int line = 2 + (int)(i / 2);
        if (kv[i + 1] == NULL) {
            fprintf(stderr, "fake_host: key %s has no value\n", kv[i]);
            return -EINVAL;
        }
        struct config_kv *old = (struct config_kv *)config_get_kv(fh->sec, kv[i]);
        if (old != NULL) {
            char *v = strdup(kv[i + 1]);
            if (v == NULL)
                return -ENOMEM;
            free(old->value);
            old->value = v;
            old->line = line;
        } else if (config_add_kv(fh->sec, kv[i], kv[i + 1], line) != 0) {
            return -ENOMEM;
        }
    }
    if (sink)
        tables[0] = (struct config_keys){SINK_CORE_KEYS, 3, sizeof(aero_config_key)};
    else
        tables[0] = (struct config_keys){ROUTE_CORE_KEYS, 2, sizeof(aero_config_key)};
    if (sink) {
        const aero_sink_vtable *vt = d->vtable;
        tables[1] = (struct config_keys){vt->keys, vt->n_keys, vt->key_size};
    } else {
        const aero_route_vtable *vt = d->vtable;
        tables[1] = (struct config_keys){vt->keys, vt->n_keys, vt->key_size};
    }
    if (config_validate_section(&fh->file, fh->sec, tables, 2, err, sizeof(err)) != 0) {
        fprintf(stderr, "fake_host: %s\n", err);
        return -EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------ public */

fake_host *fake_host_new(const aero_plugin_descriptor *d, const char *instance,
                         const char *const *kv)
{
    fake_host *fh = calloc(1, sizeof(*fh));
    char section[256];
    if (fh == NULL)
        return NULL;
    pthread_mutex_init(&fh->lock, NULL);
    fh->api = (aero_host){
        .size = sizeof(aero_host),
        .log = fake_log,
        .config_get = fake_config_get,
        .section = fake_section,
        .instance_name = fake_instance_name,
        .relay_id = fake_relay_id,
        .envelope_json = fake_envelope_json,
        .metric_register = fake_metric_register,
        .metric_add = fake_metric_add,
        .metric_set = fake_metric_set,
        .config_bool = fake_config_bool,
        .config_int = fake_config_int,
        .config_enum = fake_config_enum,
        .config_error = fake_config_error,
    };
    int sink = d->kind == AERO_PLUGIN_SINK;
    snprintf(section, sizeof(section), "%s%s", sink ? "sink:" : "route",
             sink ? instance : "");
    fh->instance = strdup(sink ? instance : d->name);
    fh->relay = strdup("relay-test");
    if (fh->instance == NULL || fh->relay == NULL)
        goto fail;
    if (fill_config(fh, d, section, kv) != 0)
        goto fail;
    return fh;
fail:
    fake_host_free(fh);
    return NULL;
}

void fake_host_free(fake_host *fh)
{
    if (fh == NULL)
        return;
    config_free(&fh->file);
    free(fh->instance);
    free(fh->relay);
    free(fh->log);
    free(fh->errors);
    pthread_mutex_destroy(&fh->lock);
    free(fh);
}

const aero_host *fake_host_api(fake_host *fh)
{
    return &fh->api;
}

size_t fake_host_log_count(fake_host *fh, aero_log_level level)
{
    if (level < AERO_LOG_DEBUG || level > AERO_LOG_ERROR)
        return 0;
    pthread_mutex_lock(&fh->lock);
    size_t n = fh->log_counts[level];
    pthread_mutex_unlock(&fh->lock);
    return n;
}

int fake_host_log_contains(fake_host *fh, const char *needle)
{
    pthread_mutex_lock(&fh->lock);
    int found = fh->log != NULL && strstr(fh->log, needle) != NULL;
    pthread_mutex_unlock(&fh->lock);
    return found;
}

char *fake_host_log_dup(fake_host *fh)
{
    pthread_mutex_lock(&fh->lock);
    char *copy = strdup(fh->log ? fh->log : "");
    pthread_mutex_unlock(&fh->lock);
    return copy;
}

void fake_host_log_clear(fake_host *fh)
{
    pthread_mutex_lock(&fh->lock);
    fh->log_len = 0;
    if (fh->log)
        fh->log[0] = '\0';
    memset(fh->log_counts, 0, sizeof(fh->log_counts));
    pthread_mutex_unlock(&fh->lock);
}

static struct aero_metric *find_metric(fake_host *fh, const char *name)
{
    for (size_t i = 0; i < fh->n_metrics; i++) {
        if (strcmp(fh->metrics[i].name, name) == 0)
            return &fh->metrics[i];
    }
    return NULL;
}

int fake_host_metric(fake_host *fh, const char *name, int64_t *value)
{
    pthread_mutex_lock(&fh->lock);
    struct aero_metric *m = find_metric(fh, name);
    if (m != NULL)
        *value = atomic_load(&m->value);
    pthread_mutex_unlock(&fh->lock);
    return m ? 0 : -ENOENT;
}

aero_metric_type fake_host_metric_type(fake_host *fh, const char *name)
{
    pthread_mutex_lock(&fh->lock);
    struct aero_metric *m = find_metric(fh, name);
    aero_metric_type t = m ? m->type : (aero_metric_type)0;
    pthread_mutex_unlock(&fh->lock);
    return t;
}

size_t fake_host_config_error_count(fake_host *fh)
{
    pthread_mutex_lock(&fh->lock);
    size_t n = fh->n_errors;
    pthread_mutex_unlock(&fh->lock);
    return n;
}

char *fake_host_config_errors(fake_host *fh)
{
    pthread_mutex_lock(&fh->lock);
    char *copy = strdup(fh->errors ? fh->errors : "");
    pthread_mutex_unlock(&fh->lock);
    return copy;
}

void fake_host_config_errors_clear(fake_host *fh)
{
    pthread_mutex_lock(&fh->lock);
    fh->errors_len = 0;
    fh->n_errors = 0;
    if (fh->errors)
        fh->errors[0] = '\0';
    pthread_mutex_unlock(&fh->lock);
}

int fake_host_check(const aero_plugin_descriptor *d, fake_host *fh)
{
    int (*check)(const aero_host *) = NULL;
    if (d->kind == AERO_PLUGIN_SINK) {
        const aero_sink_vtable *vt = d->vtable;
        check = AERO_HAS(vt, aero_sink_vtable, check) ? vt->check : NULL;
    } else {
        const aero_route_vtable *vt = d->vtable;
        check = AERO_HAS(vt, aero_route_vtable, check) ? vt->check : NULL;
    }
    return check ? check(&fh->api) : 0;
}
