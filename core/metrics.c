/*
 * metrics.c - the metric registry. Registration (start-up, any thread, and a
 * vec's first sight of a label value) takes the registry lock; updates are
 * relaxed atomics and never lock, so the frame path never waits on a scrape.
 * Rendering takes only the registry lock. Everything lives until
 * metrics_destroy.
 */
#include "metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Core-only kind next to the ABI's counter and gauge. */
#define KIND_HISTOGRAM 100

struct aero_metric {
    struct aero_metric *next;
    char *name, *help, *labels;
    int kind; /* AERO_METRIC_COUNTER, AERO_METRIC_GAUGE or KIND_HISTOGRAM */
    _Atomic int64_t value;
    bool ns_as_seconds;            /* value in ns, rendered in seconds */
    struct metric_histogram *hist; /* KIND_HISTOGRAM only; owned */
};

struct metric_histogram {
    size_t n;                 /* finite bounds; buckets[n] is +Inf */
    double *bounds_s;         /* as registered: rendered in le="" */
    int64_t *bounds_ns;       /* compared on observe */
    _Atomic uint64_t *buckets; /* per bucket, not cumulative */
    _Atomic uint64_t sum_ns;
};

/* One known label value of a vec; immutable once published. */
struct vec_entry {
    uint64_t hash;
    size_t len;
    aero_metric *series;
    char key[];
};

struct metric_vec {
    struct metric_vec *next; /* m->vecs */
    struct metrics *m;
    char *name, *help, *prefix; /* prefix: `fixed,label=` or `label=` */
    size_t max_values;
    atomic_size_t n_values;
    aero_metric *overflow;
    pthread_mutex_t mu; /* inserts only; lookups never take it */
    size_t mask;        /* slots - 1; slots >= 2 * max_values, a power of two */
    _Atomic(struct vec_entry *) slots[];
};

#define MAX_COLLECTORS 4

struct metrics {
    pthread_mutex_t mu;
    struct aero_metric *head, *tail; /* registration order: groups stay stable */
    struct metric_vec *vecs;
    size_t n_collectors;
    struct {
        void (*fn)(void *arg);
        void *arg;
    } collectors[MAX_COLLECTORS];
};

struct metrics *metrics_create(void)
{
    struct metrics *m = calloc(1, sizeof(*m));
    if (m)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

static void histogram_free(struct metric_histogram *h)
{
    if (!h)
        return;
    free(h->bounds_s);
    free(h->bounds_ns);
    free((void *)h->buckets);
    free(h);
}

static void series_free(struct aero_metric *s)
{
    free(s->name);
    free(s->help);
    free(s->labels);
    histogram_free(s->hist);
    free(s);
}

static void vec_free(struct metric_vec *v)
{
    for (size_t i = 0; i <= v->mask; i++)
        free(atomic_load_explicit(&v->slots[i], memory_order_relaxed));
    free(v->name);
    free(v->help);
    free(v->prefix);
    pthread_mutex_destroy(&v->mu);
    free(v);
}

void metrics_destroy(struct metrics *m)
{
    if (!m)
        return;
    for (struct aero_metric *s = m->head, *next; s; s = next) {
        next = s->next;
        series_free(s);
    }
    for (struct metric_vec *v = m->vecs, *next; v; v = next) {
        next = v->next;
        vec_free(v);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

int metrics_name_valid(const char *name)
{
    if (!name || !*name || (*name >= '0' && *name <= '9'))
        return 0;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == ':'))
            return 0;
    }
    return 1;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/*
 * The naming rules `promtool check metrics` enforces (it fails on any of
 * them): counters end in _total and nothing else does, _bucket/_sum/_count
 * belong to histograms, no upper case, no ':'. Refusing such a name at
 * registration keeps /metrics valid whatever a plugin registers.
 */
static bool name_lint_ok(const char *name, int kind)
{
    for (const char *p = name; *p; p++)
        if ((*p >= 'A' && *p <= 'Z') || *p == ':')
            return false;
    if ((kind == AERO_METRIC_COUNTER) != ends_with(name, "_total"))
        return false;
    if (ends_with(name, "_bucket") || ends_with(name, "_sum") || ends_with(name, "_count"))
        return false;
    return true;
}

/* True when `line_name` is one of histogram `hist`'s sample names. */
static bool is_histogram_line(const char *hist, const char *line_name)
{
    size_t n = strlen(hist);
    if (strncmp(hist, line_name, n) != 0)
        return false;
    const char *rest = line_name + n;
    return strcmp(rest, "_bucket") == 0 || strcmp(rest, "_sum") == 0 ||
           strcmp(rest, "_count") == 0;
}

static int same_labels(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Keep series of one name together: insert after the last one. m->mu held. */
static void insert_series(struct metrics *m, struct aero_metric *s)
{
    struct aero_metric *after = NULL;
    for (struct aero_metric *t = m->head; t; t = t->next)
        if (strcmp(t->name, s->name) == 0)
            after = t;
    if (after) {
        s->next = after->next;
        after->next = s;
        if (m->tail == after)
            m->tail = s;
    } else if (m->tail) {
        m->tail->next = s;
        m->tail = s;
    } else {
        m->head = m->tail = s;
    }
}

/*
 * Find (name, labels) or say why it cannot be added: another kind under
 * this name, or a clash with a histogram's sample names. m->mu held.
 * Returns 1 found (*out set), 0 free to add, -1 refused.
 */
static int lookup_locked(struct metrics *m, int kind, const char *name, const char *labels,
                         struct aero_metric **out)
{
    for (struct aero_metric *s = m->head; s; s = s->next) {
        if (strcmp(s->name, name) == 0) {
            if (s->kind != kind)
                return -1;
            if (same_labels(s->labels, labels)) {
                *out = s;
                return 1;
            }
        } else if ((s->kind == KIND_HISTOGRAM && is_histogram_line(s->name, name)) ||
                   (kind == KIND_HISTOGRAM && is_histogram_line(name, s->name))) {
            return -1;
        }
    }
    return 0;
}

static struct aero_metric *series_new(int kind, const char *name, const char *help,
                                      const char *labels)
{
    struct aero_metric *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->kind = kind;
    s->name = strdup(name);
    s->help = strdup(help ? help : "");
    s->labels = labels && *labels ? strdup(labels) : NULL;
    if (!s->name || !s->help || (labels && *labels && !s->labels)) {
        series_free(s);
        return NULL;
    }
    return s;
}

int metrics_sink_labels(char *buf, size_t cap, const char *sink, const char *plugin)
{
    return snprintf(buf, cap, "sink=\"%s\",plugin=\"%s\"", sink, plugin ? plugin : "");
}

aero_metric *metrics_register(struct metrics *m, aero_metric_type type, const char *name,
                              const char *help, const char *labels)
{
    if (!m || !metrics_name_valid(name) ||
        (type != AERO_METRIC_COUNTER && type != AERO_METRIC_GAUGE) ||
        !name_lint_ok(name, (int)type))
        return NULL;
    pthread_mutex_lock(&m->mu);
    struct aero_metric *found = NULL;
    int rc = lookup_locked(m, (int)type, name, labels, &found);
    if (rc == 0) {
        found = series_new((int)type, name, help, labels);
        if (found)
            insert_series(m, found);
    }
    pthread_mutex_unlock(&m->mu);
    return rc < 0 ? NULL : found;
}

aero_metric *metrics_register_seconds(struct metrics *m, aero_metric_type type, const char *name,
                                      const char *help, const char *labels)
{
    aero_metric *s = metrics_register(m, type, name, help, labels);
    if (s)
        s->ns_as_seconds = true;
    return s;
}

int metrics_add_collector(struct metrics *m, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&m->mu);
    int rc = -1;
    if (m->n_collectors < MAX_COLLECTORS) {
        m->collectors[m->n_collectors].fn = fn;
        m->collectors[m->n_collectors].arg = arg;
        m->n_collectors++;
        rc = 0;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

void metrics_add(aero_metric *s, uint64_t delta)
{
    if (s)
        atomic_fetch_add_explicit(&s->value, (int64_t)delta, memory_order_relaxed);
}

void metrics_set(aero_metric *s, int64_t value)
{
    if (s)
        atomic_store_explicit(&s->value, value, memory_order_relaxed);
}

int64_t metrics_value(const aero_metric *s)
{
    return s ? atomic_load_explicit(&s->value, memory_order_relaxed) : 0;
}

bool metrics_is_counter(const aero_metric *s) { return s && s->kind == AERO_METRIC_COUNTER; }

/* ------------------------------------------------------------ histograms */

struct metric_histogram *metrics_histogram_register(struct metrics *m, const char *name,
                                                    const char *help, const double *bounds_s,
                                                    size_t n_bounds)
{
    return metrics_histogram_register_labeled(m, name, help, NULL, bounds_s, n_bounds);
}

struct metric_histogram *metrics_histogram_register_labeled(struct metrics *m, const char *name,
                                                            const char *help, const char *labels,
                                                            const double *bounds_s,
                                                            size_t n_bounds)
{
    if (!m || !metrics_name_valid(name) || !name_lint_ok(name, KIND_HISTOGRAM) || !bounds_s ||
        n_bounds == 0)
        return NULL;
    for (size_t i = 0; i < n_bounds; i++)
        if (!(bounds_s[i] > 0 && bounds_s[i] < 1e9) || (i > 0 && bounds_s[i] <= bounds_s[i - 1]))
            return NULL;

    struct metric_histogram *h = calloc(1, sizeof(*h));
    struct aero_metric *s = series_new(KIND_HISTOGRAM, name, help, labels);
    if (!h || !s)
        goto fail;
    h->n = n_bounds;
    h->bounds_s = malloc(n_bounds * sizeof(*h->bounds_s));
    h->bounds_ns = malloc(n_bounds * sizeof(*h->bounds_ns));
    h->buckets = malloc((n_bounds + 1) * sizeof(*h->buckets));
    if (!h->bounds_s || !h->bounds_ns || !h->buckets)
        goto fail;
    for (size_t i = 0; i < n_bounds; i++) {
        h->bounds_s[i] = bounds_s[i];
        h->bounds_ns[i] = (int64_t)(bounds_s[i] * 1e9 + 0.5);
    }
    for (size_t i = 0; i <= n_bounds; i++)
        atomic_init(&h->buckets[i], 0);
    atomic_init(&h->sum_ns, 0);
    s->hist = h;

    pthread_mutex_lock(&m->mu);
    struct aero_metric *found = NULL;
    int rc = lookup_locked(m, KIND_HISTOGRAM, name, labels, &found);
    if (rc == 0)
        insert_series(m, s);
    pthread_mutex_unlock(&m->mu);
    if (rc != 0) { /* a second histogram of one series is a bug, not a share */
        series_free(s);
        return NULL;
    }
    return h;

fail:
    if (s)
        series_free(s);
    histogram_free(h);
    return NULL;
}

void metrics_histogram_observe_ns(struct metric_histogram *h, int64_t ns)
{
    if (!h)
        return;
    if (ns < 0)
        ns = 0;
    size_t i = 0;
    while (i < h->n && ns > h->bounds_ns[i]) /* le: a bound counts what equals it */
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)ns, memory_order_relaxed);
}

uint64_t metrics_histogram_count(const struct metric_histogram *h)
{
    uint64_t n = 0;
    for (size_t i = 0; h && i <= h->n; i++)
        n += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    return n;
}

uint64_t metrics_histogram_sum_ns(const struct metric_histogram *h)
{
    return h ? atomic_load_explicit(&h->sum_ns, memory_order_relaxed) : 0;
}

/* ------------------------------------------------------------------ vecs */

size_t metrics_label_escape(const char *value, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        bool esc = c == '\\' || c == '"';
        if (o + (esc ? 2 : 1) > cap - 1)
            break;
        if (esc)
            out[o++] = '\\';
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '_';
    }
    out[o] = '\0';
    return o;
}

/* FNV-1a: short keys, no need for anything stronger (values come from
 * agents, but the table is bounded and probing stays short at load 1/2). */
static uint64_t hash_bytes(const char *p, size_t len)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Label values longer than this are cut (msg_name is at most 128 bytes). */
#define VEC_VALUE_MAX 256

/* Registers the series of one label value (vec's lock held). */
static aero_metric *vec_series(struct metric_vec *v, const char *value, size_t len)
{
    char escaped[VEC_VALUE_MAX * 2 + 1];
    char *labels = NULL;
    metrics_label_escape(value, len < VEC_VALUE_MAX ? len : VEC_VALUE_MAX, escaped,
                         sizeof(escaped));
    if (asprintf(&labels, "%s\"%s\"", v->prefix, escaped) < 0)
        return NULL;
    aero_metric *s = metrics_register(v->m, AERO_METRIC_COUNTER, v->name, v->help, labels);
    free(labels);
    return s;
}

struct metric_vec *metrics_vec_register(struct metrics *m, const char *name, const char *help,
                                        const char *fixed, const char *label, size_t max_values,
                                        const char *overflow)
{
    if (!m || !metrics_name_valid(name) || !metrics_name_valid(label) || max_values == 0 ||
        max_values > 65536 || !overflow)
        return NULL;
    size_t slots = 2;
    while (slots < 2 * max_values)
        slots *= 2;
    struct metric_vec *v = calloc(1, sizeof(*v) + slots * sizeof(v->slots[0]));
    if (!v)
        return NULL;
    v->m = m;
    v->max_values = max_values;
    v->mask = slots - 1;
    atomic_init(&v->n_values, 0);
    for (size_t i = 0; i < slots; i++)
        atomic_init(&v->slots[i], NULL);
    pthread_mutex_init(&v->mu, NULL);
    v->name = strdup(name);
    v->help = strdup(help ? help : "");
    if (asprintf(&v->prefix, "%s%s%s=", fixed && *fixed ? fixed : "", fixed && *fixed ? "," : "",
                 label) < 0)
        v->prefix = NULL;
    if (!v->name || !v->help || !v->prefix)
        goto fail;
    /* Registered up front so the family shows (at 0) before any frame. */
    v->overflow = vec_series(v, overflow, strlen(overflow));
    if (!v->overflow)
        goto fail;
    pthread_mutex_lock(&m->mu);
    v->next = m->vecs;
    m->vecs = v;
    pthread_mutex_unlock(&m->mu);
    return v;

fail:
    vec_free(v);
    return NULL;
}

/* Probe for key; lock-free (entries are published with release stores and
 * never change or move until metrics_destroy). */
static aero_metric *vec_find(struct metric_vec *v, uint64_t hash, const char *key, size_t len)
{
    for (size_t i = hash & v->mask;; i = (i + 1) & v->mask) {
        struct vec_entry *e = atomic_load_explicit(&v->slots[i], memory_order_acquire);
        if (!e)
            return NULL;
        if (e->hash == hash && e->len == len && memcmp(e->key, key, len) == 0)
            return e->series;
    }
}

aero_metric *metrics_vec_get(struct metric_vec *v, const char *value, size_t len)
{
    uint64_t hash = hash_bytes(value, len);
    aero_metric *s = vec_find(v, hash, value, len);
    if (s)
        return s;
    /* Full: never lock again for new values, they all go to overflow. */
    if (atomic_load_explicit(&v->n_values, memory_order_acquire) >= v->max_values)
        return v->overflow;

    pthread_mutex_lock(&v->mu);
    s = vec_find(v, hash, value, len);
    if (!s && atomic_load_explicit(&v->n_values, memory_order_relaxed) < v->max_values) {
        struct vec_entry *e = malloc(sizeof(*e) + len);
        aero_metric *series = e ? vec_series(v, value, len) : NULL;
        if (series) {
            e->hash = hash;
            e->len = len;
            e->series = series;
            memcpy(e->key, value, len);
            size_t i = hash & v->mask;
            while (atomic_load_explicit(&v->slots[i], memory_order_relaxed))
                i = (i + 1) & v->mask;
            atomic_store_explicit(&v->slots[i], e, memory_order_release);
            atomic_fetch_add_explicit(&v->n_values, 1, memory_order_release);
            s = series;
        } else {
            free(e);
        }
    }
    pthread_mutex_unlock(&v->mu);
    return s ? s : v->overflow;
}

/* --------------------------------------------------------------- render */

/* HELP text escapes backslash and newline (exposition format 0.0.4). */
static void put_help(FILE *f, const char *help)
{
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", f);
        else if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
}

static const char *type_name(int kind)
{
    return kind == AERO_METRIC_COUNTER ? "counter"
           : kind == AERO_METRIC_GAUGE ? "gauge"
                                       : "histogram";
}

/* Buckets are read once each; +Inf and _count are their sum, so the two
 * always agree even while observations land. */
static void render_histogram(FILE *f, const struct aero_metric *s)
{
    const struct metric_histogram *h = s->hist;
    const char *l = s->labels ? s->labels : "", *comma = s->labels ? "," : "";
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= h->n; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->n)
            fprintf(f, "%s_bucket{%s%sle=\"%.9g\"} %llu\n", s->name, l, comma, h->bounds_s[i],
                    (unsigned long long)cumulative);
        else
            fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", s->name, l, comma,
                    (unsigned long long)cumulative);
    }
    uint64_t sum = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
    const char *open = s->labels ? "{" : "", *close = s->labels ? "}" : "";
    fprintf(f, "%s_sum%s%s%s %llu.%09llu\n", s->name, open, l, close,
            (unsigned long long)(sum / 1000000000ULL), (unsigned long long)(sum % 1000000000ULL));
    fprintf(f, "%s_count%s%s%s %llu\n", s->name, open, l, close,
            (unsigned long long)cumulative);
}

int metrics_render(struct metrics *m, char **out, size_t *len)
{
    /* Collectors refresh what is read from the system (process_*), with
     * no lock held: they set series like any other writer. */
    pthread_mutex_lock(&m->mu);
    size_t nc = m->n_collectors;
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < nc; i++)
        m->collectors[i].fn(m->collectors[i].arg);
    FILE *f = open_memstream(out, len);
    if (!f)
        return -errno;
    pthread_mutex_lock(&m->mu);
    const char *prev = NULL;
    for (struct aero_metric *s = m->head; s; s = s->next) {
        if (!prev || strcmp(prev, s->name) != 0) {
            fprintf(f, "# HELP %s ", s->name);
            put_help(f, s->help);
            fprintf(f, "\n# TYPE %s %s\n", s->name, type_name(s->kind));
            prev = s->name;
        }
        if (s->kind == KIND_HISTOGRAM) {
            render_histogram(f, s);
            continue;
        }
        long long v = (long long)atomic_load_explicit(&s->value, memory_order_relaxed);
        const char *open = s->labels ? "{" : "", *close = s->labels ? "}" : "";
        fprintf(f, "%s%s%s%s ", s->name, open, s->labels ? s->labels : "", close);
        if (s->ns_as_seconds)
            fprintf(f, "%s%lld.%09lld\n", v < 0 ? "-" : "", llabs(v) / 1000000000LL,
                    llabs(v) % 1000000000LL);
        else
            fprintf(f, "%lld\n", v);
    }
    pthread_mutex_unlock(&m->mu);
    return fclose(f) == 0 ? 0 : -EIO;
}
