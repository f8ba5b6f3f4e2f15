/*
 * readiness.c - see readiness.h. One mutex; nothing is held across a call
 * out of this file.
 */
#include "readiness.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct detail {
    const void *owner; /* NULL: free slot */
    char key[READINESS_TEXT_MAX + 1];
    char value[READINESS_TEXT_MAX + 1];
};

struct route_entry {
    const void *owner; /* NULL: free slot */
    struct readiness_component c;
};

struct readiness {
    pthread_mutex_t mu;
    struct detail d[READINESS_MAX];
    char unready[READINESS_BODY_MAX]; /* the 503 body's members, "" while none */
    struct route_entry routes[READINESS_MAX];
    struct readiness_component sinks[READINESS_COMPONENTS_MAX];
    size_t n_sinks, sinks_omitted;
};

struct readiness *readiness_create(void)
{
    struct readiness *r = calloc(1, sizeof(*r));
    if (r)
        pthread_mutex_init(&r->mu, NULL);
    return r;
}

void readiness_destroy(struct readiness *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static int text_valid(const char *s, const char *extra)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > READINESS_TEXT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              strchr(extra, s[i])))
            return 0;
    return 1;
}

int readiness_key_valid(const char *key)
{
    return text_valid(key, "") && strcmp(key, "status") != 0;
}

int readiness_value_valid(const char *value) { return text_valid(value, "-."); }

int readiness_set(struct readiness *r, const void *owner, const char *key, const char *value)
{
    if (!r || !owner || !readiness_key_valid(key) || (value && !readiness_value_valid(value)))
        return -EINVAL;
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    struct detail *slot = NULL, *free_slot = NULL;
    for (size_t i = 0; i < READINESS_MAX && !slot; i++) {
        if (r->d[i].owner && strcmp(r->d[i].key, key) == 0)
            slot = &r->d[i];
        else if (!r->d[i].owner && !free_slot)
            free_slot = &r->d[i];
    }
    if (slot && slot->owner != owner)
        rc = -EEXIST;
    else if (!value) {
        if (slot)
            memset(slot, 0, sizeof(*slot));
    } else {
        if (!slot && !free_slot)
            rc = -ENOSPC;
        else {
            if (!slot) {
                slot = free_slot;
                slot->owner = owner;
                snprintf(slot->key, sizeof(slot->key), "%s", key);
            }
            snprintf(slot->value, sizeof(slot->value), "%s", value);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void readiness_clear_owner(struct readiness *r, const void *owner)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < READINESS_MAX; i++) {
        if (r->d[i].owner == owner)
            memset(&r->d[i], 0, sizeof(r->d[i]));
        if (r->routes[i].owner == owner)
            memset(&r->routes[i], 0, sizeof(r->routes[i]));
    }
    pthread_mutex_unlock(&r->mu);
}

size_t readiness_render(struct readiness *r, char *buf, size_t cap)
{
    size_t len = 0;
    if (cap)
        buf[0] = '\0';
    if (!r || !cap)
        return 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < READINESS_MAX; i++) {
        if (!r->d[i].owner)
            continue;
        int n = snprintf(buf + len, cap - len, ",\"%s\":\"%s\"", r->d[i].key, r->d[i].value);
        if (n < 0 || (size_t)n >= cap - len) {
            buf[len] = '\0'; /* whole members only */
            break;
        }
        len += (size_t)n;
    }
    pthread_mutex_unlock(&r->mu);
    return len;
}

/* Printable ASCII but '"' and '\\' (JSON needs no escaping then); any
 * other byte becomes '_'. */
static void plain(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    for (; src && *src && n + 1 < cap; src++)
        dst[n++] = *src >= 0x20 && *src < 0x7f && *src != '"' && *src != '\\' ? *src : '_';
    dst[n] = '\0';
}

const char *readiness_state_name(aero_state state)
{
    return state == AERO_STATE_FAILING    ? "failing"
           : state == AERO_STATE_DEGRADED ? "degraded"
                                          : "ok";
}

static bool state_valid(aero_state state)
{
    return state == AERO_STATE_OK || state == AERO_STATE_DEGRADED || state == AERO_STATE_FAILING;
}

int readiness_route_state(struct readiness *r, const void *owner, const char *name,
                          aero_state state, const char *reason)
{
    if (!r || !owner || !name || !*name || !state_valid(state))
        return -EINVAL;
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    struct route_entry *slot = NULL;
    for (size_t i = 0; i < READINESS_MAX && !slot; i++)
        if (r->routes[i].owner == owner)
            slot = &r->routes[i];
    for (size_t i = 0; i < READINESS_MAX && !slot; i++)
        if (!r->routes[i].owner)
            slot = &r->routes[i];
    if (!slot) {
        rc = -ENOSPC;
    } else {
        slot->owner = owner;
        plain(slot->c.name, sizeof(slot->c.name), name);
        slot->c.state = state;
        plain(slot->c.reason, sizeof(slot->c.reason), reason);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void readiness_set_sinks(struct readiness *r, const struct readiness_component *sinks, size_t n)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->n_sinks = n < READINESS_COMPONENTS_MAX ? n : READINESS_COMPONENTS_MAX;
    r->sinks_omitted = n - r->n_sinks;
    for (size_t i = 0; i < r->n_sinks; i++) {
        struct readiness_component *c = &r->sinks[i];
        plain(c->name, sizeof(c->name), sinks[i].name);
        c->state = state_valid(sinks[i].state) ? sinks[i].state : AERO_STATE_FAILING;
        plain(c->reason, sizeof(c->reason), sinks[i].reason);
    }
    pthread_mutex_unlock(&r->mu);
}

/* One `"name":{"state":"...","reason":"..."}` (names and reasons are
 * plain already: no escaping needed). */
static void render_one(FILE *f, const struct readiness_component *c, bool *first)
{
    fprintf(f, "%s\"%s\":{\"state\":\"%s\"", *first ? "" : ",", c->name,
            readiness_state_name(c->state));
    if (c->reason[0])
        fprintf(f, ",\"reason\":\"%s\"", c->reason);
    fputc('}', f);
    *first = false;
}

char *readiness_render_components(struct readiness *r)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f)
        return NULL;
    bool first = true;
    fputs(",\"components\":{", f);
    if (r) {
        pthread_mutex_lock(&r->mu);
        for (size_t i = 0; i < r->n_sinks; i++)
            render_one(f, &r->sinks[i], &first);
        for (size_t i = 0; i < READINESS_MAX; i++)
            if (r->routes[i].owner)
                render_one(f, &r->routes[i].c, &first);
        size_t omitted = r->sinks_omitted;
        pthread_mutex_unlock(&r->mu);
        fputc('}', f);
        if (omitted)
            fprintf(f, ",\"components_omitted\":%zu", omitted);
    } else {
        fputc('}', f);
    }
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

void readiness_set_unready(struct readiness *r, const char *component, const char *reason)
{
    char c[READINESS_TEXT_MAX * 2], why[READINESS_BODY_MAX / 2];
    plain(c, sizeof(c), component);
    plain(why, sizeof(why), reason);
    pthread_mutex_lock(&r->mu);
    if (component)
        snprintf(r->unready, sizeof(r->unready), ",\"component\":\"%s\",\"reason\":\"%s\"", c,
                 why);
    else
        r->unready[0] = '\0';
    pthread_mutex_unlock(&r->mu);
}

bool readiness_unready(struct readiness *r, char *body, size_t cap)
{
    if (!r)
        return false;
    pthread_mutex_lock(&r->mu);
    bool unready = r->unready[0] != '\0';
    if (unready)
        snprintf(body, cap, "{\"status\":\"not ready\"%s}", r->unready);
    pthread_mutex_unlock(&r->mu);
    return unready;
}
