/*
 * agent_mappings.c - the mappings file parsed into one sorted array
 * (bsearch by agent id). Ids use the agent-id alphabet (SPEC.md section 2)
 * so they go into the envelope unescaped and unambiguous.
 */
#include "agent_mappings.h"

#include "session_table.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct mapping {
    char *agent, *operator_id, *aircraft;
};

struct agent_mappings {
    pthread_rwlock_t lock; /* n and v, swapped by a reload */
    size_t n;
    struct mapping *v;
    /* Generations a reload replaced: streams keep pointers to their
     * strings (the envelope's operator and aircraft), so they stay until
     * the relay stops. A few KB per reload. */
    struct agent_mappings *retired;
};

static int fail(char *err, size_t errlen, const char *path, int line, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(err, errlen, "%s:%d: %s", path, line, what);
    else
        snprintf(err, errlen, "%s: %s", path, what);
    return -1;
}

void agent_mappings_free(struct agent_mappings *m)
{
    while (m) {
        struct agent_mappings *next = m->retired;
        for (size_t i = 0; i < m->n; i++)
            free(m->v[i].agent); /* one allocation holds all three */
        free(m->v);
        pthread_rwlock_destroy(&m->lock);
        free(m);
        m = next;
    }
}

void agent_mappings_adopt(struct agent_mappings *m, struct agent_mappings *from)
{
    pthread_rwlock_wrlock(&m->lock);
    size_t n = m->n;
    struct mapping *v = m->v;
    m->n = from->n;
    m->v = from->v;
    from->n = n;
    from->v = v;
    from->retired = m->retired;
    m->retired = from;
    pthread_rwlock_unlock(&m->lock);
}

size_t agent_mappings_count(struct agent_mappings *m)
{
    if (!m)
        return 0;
    pthread_rwlock_rdlock(&m->lock);
    size_t n = m->n;
    pthread_rwlock_unlock(&m->lock);
    return n;
}

static int by_agent(const void *a, const void *b)
{
    return strcmp(((const struct mapping *)a)->agent, ((const struct mapping *)b)->agent);
}

/* One line: 0, 1 when it holds a mapping (filled), -1 with err set. */
static int parse_line(char *line, struct mapping *out, const char *path, int n, char *err,
                      size_t errlen)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash = '\0';
    char *f[4] = {0};
    int k = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t\r\n", &save); t;
         t = strtok_r(NULL, " \t\r\n", &save))
        f[k < 4 ? k++ : 3] = t;
    if (k == 0)
        return 0;
    if (k != 3)
        return fail(err, errlen, path, n,
                    "expected 3 fields: <agent_id> <operator_id> <aircraft_id>, found %d", k);
    for (int i = 0; i < 3; i++)
        if (!session_agent_id_valid(f[i], strlen(f[i])))
            return fail(err, errlen, path, n,
                        "invalid %s \"%s\" (expected 1-128 of A-Z a-z 0-9 . _ - :)",
                        i == 0 ? "agent_id" : i == 1 ? "operator_id" : "aircraft_id", f[i]);
    size_t l0 = strlen(f[0]) + 1, l1 = strlen(f[1]) + 1, l2 = strlen(f[2]) + 1;
    char *mem = malloc(l0 + l1 + l2);
    if (!mem)
        return fail(err, errlen, path, n, "out of memory");
    out->agent = memcpy(mem, f[0], l0);
    out->operator_id = memcpy(mem + l0, f[1], l1);
    out->aircraft = memcpy(mem + l0 + l1, f[2], l2);
    return 1;
}

int agent_mappings_load(const char *path, struct agent_mappings **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    struct stat st;
    if (!f)
        return fail(err, errlen, path, 0, "cannot read: %s", strerror(errno));
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return fail(err, errlen, path, 0, "not a regular file");
    }
    if (st.st_mode & S_IWOTH) {
        fclose(f);
        return fail(err, errlen, path, 0, "writable by others (mode %03o): chmod o-w it",
                    (unsigned)(st.st_mode & 0777));
    }
    struct agent_mappings *m = calloc(1, sizeof(*m));
    if (m)
        pthread_rwlock_init(&m->lock, NULL);
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    int n = 0, rc = m ? 0 : fail(err, errlen, path, 0, "out of memory");
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        n++;
        struct mapping one;
        int r = parse_line(line, &one, path, n, err, errlen);
        if (r < 0) {
            rc = -1;
        } else if (r > 0) {
            if (m->n == alloc) {
                alloc = alloc ? alloc * 2 : 16;
                struct mapping *v = realloc(m->v, alloc * sizeof(*v));
                if (!v) {
                    free(one.agent);
                    rc = fail(err, errlen, path, n, "out of memory");
                    break;
                }
                m->v = v;
            }
            m->v[m->n++] = one;
        }
    }
    free(line);
    fclose(f);
    if (rc < 0) {
        agent_mappings_free(m);
        return -1;
    }
    qsort(m->v, m->n, sizeof(*m->v), by_agent);
    for (size_t i = 1; i < m->n; i++)
        if (strcmp(m->v[i - 1].agent, m->v[i].agent) == 0) {
            fail(err, errlen, path, 0, "agent_id \"%s\" is mapped twice", m->v[i].agent);
            agent_mappings_free(m);
            return -1;
        }
    *out = m;
    return 0;
}

int agent_mappings_find(const struct agent_mappings *m, const char *agent_id,
                        const char **operator_id, const char **aircraft_id)
{
    *operator_id = *aircraft_id = NULL;
    if (!m)
        return 0;
    struct agent_mappings *lm = (struct agent_mappings *)m; /* the lock only */
    pthread_rwlock_rdlock(&lm->lock);
    struct mapping key = {.agent = (char *)agent_id};
    const struct mapping *hit = m->n ? bsearch(&key, m->v, m->n, sizeof(*m->v), by_agent) : NULL;
    if (hit) { /* the strings outlive a reload: kept in `retired` */
        *operator_id = hit->operator_id;
        *aircraft_id = hit->aircraft;
    }
    pthread_rwlock_unlock(&lm->lock);
    return hit != NULL;
}
