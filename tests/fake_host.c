/*
 * fake_host.c - the relay's side of the plugin ABI, faked for unit tests
 * (collectd's plugin_mock.c idea): dlopen a plugin, validate and serve its
 * config, capture its logs and metrics for assertions. Host functions may be
 * called from any thread (a mutex guards logs, metrics are atomics).
 */
#include "fake_host.h"

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
    char *section;
    char *instance;
    char *relay;
    const aero_config_key *keys; /* the plugin's table, read with key_size */
    uint32_t n_keys;
    uint32_t key_size;
    char *values[FAKE_MAX_KEYS]; /* per declared key: value or NULL */

    pthread_mutex_t lock; /* logs, metric registration */
    char *log;
    size_t log_len, log_cap;
    size_t log_counts[4];
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
    size_t len = strlen(line);

    pthread_mutex_lock(&fh->lock);
    if (fh->log_len + len + 1 > fh->log_cap) {
        size_t cap = (fh->log_cap + len + 1) * 2;
        char *p = realloc(fh->log, cap);
        if (p != NULL) {
            fh->log = p;
            fh->log_cap = cap;
        }
    }
    if (fh->log_len + len + 1 <= fh->log_cap) {
        memcpy(fh->log + fh->log_len, line, len + 1);
        fh->log_len += len;
    }
    fh->log_counts[lvl]++;
    pthread_mutex_unlock(&fh->lock);
    fprintf(stderr, "[fake_host %s] %s", fh->section, line);
}

static const aero_config_key *key_at(const fake_host *fh, uint32_t i)
{
    return (const aero_config_key *)((const char *)fh->keys +
                                     (size_t)i * fh->key_size);
}

static const char *fake_config_get(const aero_host *host, const char *key)
{
    fake_host *fh = from_api(host);
    for (uint32_t i = 0; i < fh->n_keys; i++) {
        if (strcmp(key_at(fh, i)->name, key) == 0)
            return fh->values[i];
    }
    return NULL;
}

static const char *fake_section(const aero_host *host)
{
    return from_api(host)->section;
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

/* ------------------------------------------------------- validation */

static int bool_valid(const char *v)
{
    static const char *const ok[] = {"true", "false", "yes", "no",
                                     "on",   "off",   "1",   "0"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strcmp(v, ok[i]) == 0)
            return 1;
    }
    return 0;
}

static int enum_valid(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

static int value_valid(const aero_config_key *k, const char *v)
{
    char *end;
    switch (k->type) {
    case AERO_KEY_STRING:
        return 1;
    case AERO_KEY_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        return *v && !*end && !errno && x >= k->min && x <= k->max;
    }
    case AERO_KEY_BOOL:
        return bool_valid(v);
    case AERO_KEY_ENUM:
        return enum_valid(k->choices, v);
    }
    return 0;
}

static int core_key(const fake_host *fh, const char *key)
{
    return strncmp(fh->section, "sink:", 5) == 0 &&
           (strcmp(key, "plugin") == 0 || strcmp(key, "queue") == 0 ||
            strcmp(key, "on_full") == 0);
}

/* Sets fh->values[] from kv and the defaults; 0 or -EINVAL (printed). */
static int fill_config(fake_host *fh, const char *const *kv)
{
    for (size_t i = 0; kv && kv[i]; i += 2) {
        if (kv[i + 1] == NULL) {
            fprintf(stderr, "fake_host: key %s has no value\n", kv[i]);
            return -EINVAL;
        }
        uint32_t k = 0;
        while (k < fh->n_keys && strcmp(key_at(fh, k)->name, kv[i]) != 0)
            k++;
        if (k == fh->n_keys) {
            if (core_key(fh, kv[i]))
                continue;
            fprintf(stderr, "fake_host: [%s] unknown key %s\n", fh->section, kv[i]);
            return -EINVAL;
        }
        if (!value_valid(key_at(fh, k), kv[i + 1])) {
            fprintf(stderr, "fake_host: [%s] %s: invalid value \"%s\"\n",
                    fh->section, kv[i], kv[i + 1]);
            return -EINVAL;
        }
        free(fh->values[k]);
        fh->values[k] = strdup(kv[i + 1]);
    }
    for (uint32_t k = 0; k < fh->n_keys; k++) {
        const aero_config_key *key = key_at(fh, k);
        if (fh->values[k] == NULL && key->required) {
            fprintf(stderr, "fake_host: [%s] %s is required\n", fh->section,
                    key->name);
            return -EINVAL;
        }
        if (fh->values[k] == NULL && key->default_value != NULL)
            fh->values[k] = strdup(key->default_value);
    }
    return 0;
}

/* ------------------------------------------------------------ public */

/* The key table of either vtable kind. */
static void plugin_keys(const aero_plugin_descriptor *d, fake_host *fh)
{
    if (d->kind == AERO_PLUGIN_SINK) {
        const aero_sink_vtable *vt = d->vtable;
        fh->keys = vt->keys;
        fh->n_keys = vt->n_keys;
        fh->key_size = vt->key_size;
    } else {
        const aero_route_vtable *vt = d->vtable;
        fh->keys = vt->keys;
        fh->n_keys = vt->n_keys;
        fh->key_size = vt->key_size;
    }
}

fake_host *fake_host_new(const aero_plugin_descriptor *d, const char *instance,
                         const char *const *kv)
{
    fake_host *fh = calloc(1, sizeof(*fh));
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
    };
    int sink = d->kind == AERO_PLUGIN_SINK;
    size_t slen = strlen(instance) + 6;
    fh->section = malloc(slen);
    fh->instance = strdup(sink ? instance : d->name);
    fh->relay = strdup("relay-test");
    if (fh->section == NULL || fh->instance == NULL || fh->relay == NULL)
        goto fail;
    snprintf(fh->section, slen, "%s%s", sink ? "sink:" : "route",
             sink ? instance : "");
    plugin_keys(d, fh);
    if (fh->n_keys > FAKE_MAX_KEYS || (fh->n_keys && fh->key_size == 0)) {
        fprintf(stderr, "fake_host: key table too large or no key_size\n");
        goto fail;
    }
    if (fill_config(fh, kv) != 0)
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
    for (uint32_t k = 0; k < FAKE_MAX_KEYS; k++)
        free(fh->values[k]);
    free(fh->section);
    free(fh->instance);
    free(fh->relay);
    free(fh->log);
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
