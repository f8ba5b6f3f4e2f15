/*
 * auth.c - bearer keys. A presented key is hashed once and its digest
 * compared with every stored digest without early exit, so neither which
 * key matched nor how much of it matched shows in the timing. Key material
 * is wiped from parse buffers; only digests stay in memory.
 */
#include "auth.h"

#include <errno.h>
#include <fnmatch.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define DIGEST_LEN 32
#define MAX_KEY_FILE (1 << 20)

struct auth_key {
    unsigned char digest[DIGEST_LEN];
    char *agents; /* "*", a glob, or NULL for "-" */
    bool admin;
};

struct auth {
    struct auth_key *keys;
    size_t n, cap;
};

static int errorf(char *err, size_t errlen, const char *path, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int errorf(char *err, size_t errlen, const char *path, int line, const char *fmt, ...)
{
    va_list ap;
    int n = line > 0 ? snprintf(err, errlen, "%s:%d: ", path, line) : snprintf(err, errlen, "%s: ", path);
    if (n < 0 || (size_t)n >= errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static void digest(const char *key, size_t len, unsigned char out[DIGEST_LEN])
{
    unsigned int n = DIGEST_LEN;
    EVP_Digest(key, len, out, &n, EVP_sha256(), NULL);
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->keys[i].agents);
    OPENSSL_cleanse(a->keys, a->cap * sizeof(*a->keys));
    free(a->keys);
    free(a);
}

size_t auth_key_count(const struct auth *a) { return a ? a->n : 0; }

/* Keys are what a shell and an HTTP header carry safely: printable ASCII
 * without blanks. Short keys are guessable: refuse them. */
static const char *key_problem(const char *key, size_t len)
{
    if (len < 16)
        return "key too short (at least 16 characters)";
    if (len > 512)
        return "key too long (at most 512 characters)";
    for (size_t i = 0; i < len; i++)
        if (key[i] <= 0x20 || key[i] >= 0x7f)
            return "key has a character outside printable ASCII";
    return NULL;
}

/* A copy of s fit to quote in a message: at most 64 bytes, anything not
 * printable ASCII as '?' (a keys file must not put control bytes in logs). */
static const char *quotable(const char *s, char out[65])
{
    size_t i = 0;
    for (; s[i] && i < 64; i++)
        out[i] = (s[i] > 0x20 && s[i] < 0x7f) ? s[i] : '?';
    out[i] = '\0';
    return out;
}

static const char *agents_problem(const char *agents)
{
    if (strcmp(agents, "-") == 0 || strcmp(agents, "*") == 0)
        return NULL;
    for (const char *p = agents; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._-:*?[]!", c)))
            return "agents must be *, - or a glob of agent-id characters";
    }
    return NULL;
}

static int add_key(struct auth *a, const char *key, size_t klen, const char *agents, bool admin)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        struct auth_key *k = calloc(cap, sizeof(*k));
        if (!k)
            return -ENOMEM;
        if (a->n)
            memcpy(k, a->keys, a->n * sizeof(*k));
        OPENSSL_cleanse(a->keys, a->cap * sizeof(*a->keys));
        free(a->keys);
        a->keys = k;
        a->cap = cap;
    }
    struct auth_key *k = &a->keys[a->n];
    digest(key, klen, k->digest);
    k->agents = strcmp(agents, "-") == 0 ? NULL : strdup(agents);
    k->admin = admin;
    if (strcmp(agents, "-") != 0 && !k->agents)
        return -ENOMEM;
    for (size_t i = 0; i < a->n; i++)
        if (CRYPTO_memcmp(a->keys[i].digest, k->digest, DIGEST_LEN) == 0) {
            free(k->agents);
            return -EEXIST;
        }
    a->n++;
    return 0;
}

/* One line, already without its comment: "<key> <agents> [admin]". */
static int parse_line(struct auth *a, char *line, const char *path, int lineno, char *err,
                      size_t errlen)
{
    char *save = NULL;
    char *key = strtok_r(line, " \t\r", &save);
    if (!key)
        return 0; /* blank */
    char *agents = strtok_r(NULL, " \t\r", &save);
    char *flag = strtok_r(NULL, " \t\r", &save);
    char *extra = strtok_r(NULL, " \t\r", &save);
    const char *why;
    if (!agents)
        return errorf(err, errlen, path, lineno, "expected \"<key> <agents> [admin]\"");
    if ((why = key_problem(key, strlen(key))))
        return errorf(err, errlen, path, lineno, "%s", why);
    char q[65];
    if ((why = agents_problem(agents)))
        return errorf(err, errlen, path, lineno, "%s (got \"%s\")", why, quotable(agents, q));
    if (flag && strcmp(flag, "admin") != 0)
        return errorf(err, errlen, path, lineno, "unknown flag \"%.32s\" (expected admin)",
                      quotable(flag, q));
    if (extra)
        return errorf(err, errlen, path, lineno, "unexpected text after the flag");
    if (strcmp(agents, "-") == 0 && !flag)
        return errorf(err, errlen, path, lineno, "a key for no agent (-) must be admin");
    int rc = add_key(a, key, strlen(key), agents, flag != NULL);
    OPENSSL_cleanse(key, strlen(key));
    if (rc == -EEXIST)
        return errorf(err, errlen, path, lineno, "duplicate key");
    if (rc < 0)
        return errorf(err, errlen, path, lineno, "out of memory");
    return 0;
}

int auth_parse_string(const char *path, const char *text, struct auth **out, char *err,
                      size_t errlen)
{
    struct auth *a = calloc(1, sizeof(*a));
    char *copy = strdup(text);
    int rc = 0, lineno = 0;
    *out = NULL;
    if (!a || !copy) {
        rc = errorf(err, errlen, path, 0, "out of memory");
        goto done;
    }
    for (char *line = copy, *next; line && rc == 0; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        rc = parse_line(a, line, path, lineno, err, errlen);
    }
    if (rc == 0 && a->n == 0)
        rc = errorf(err, errlen, path, 0, "no keys: every call would be refused");
done:
    if (copy) {
        OPENSSL_cleanse(copy, strlen(text));
        free(copy);
    }
    if (rc < 0) {
        auth_free(a);
        return -1;
    }
    *out = a;
    return 0;
}

int auth_load(const char *path, struct auth **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    struct stat st;
    *out = NULL;
    if (!f)
        return errorf(err, errlen, path, 0, "cannot read: %s", strerror(errno));
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return errorf(err, errlen, path, 0, "not a regular file");
    }
    if (st.st_mode & (S_IROTH | S_IWOTH)) {
        fclose(f);
        return errorf(err, errlen, path, 0,
                      "readable or writable by others (mode %03o): chmod o-rwx it",
                      (unsigned)(st.st_mode & 0777));
    }
    if (st.st_mode & S_IWGRP) {
        fclose(f);
        return errorf(err, errlen, path, 0,
                      "writable by its group (mode %03o): anyone in it could add a key; "
                      "chmod g-w it",
                      (unsigned)(st.st_mode & 0777));
    }
    if (st.st_size > MAX_KEY_FILE) {
        fclose(f);
        return errorf(err, errlen, path, 0, "larger than 1 MiB");
    }
    char *text = calloc(1, (size_t)st.st_size + 1);
    size_t n = text ? fread(text, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!text)
        return errorf(err, errlen, path, 0, "out of memory");
    text[n] = '\0';
    int rc = auth_parse_string(path, text, out, err, errlen);
    OPENSSL_cleanse(text, n);
    free(text);
    return rc;
}

const char *auth_refusal_name(enum auth_refusal r)
{
    static const char *const names[AUTH_REFUSALS] = {"missing", "malformed", "unknown_key",
                                                     "not_covered", "not_admin"};
    return (unsigned)r < AUTH_REFUSALS ? names[r] : "unknown";
}

/* The stored key matching "Bearer <key>", or NULL (*why says which way it
 * failed). Visits every key. */
static const struct auth_key *find_key(const struct auth *a, const char *hdr, size_t len,
                                       enum auth_refusal *why)
{
    static const char scheme[] = "Bearer ";
    const size_t slen = sizeof(scheme) - 1;
    if (!hdr || len == 0) {
        *why = AUTH_REFUSED_MISSING;
        return NULL;
    }
    *why = AUTH_REFUSED_MALFORMED;
    if (!a || len <= slen || strncasecmp(hdr, scheme, slen) != 0)
        return NULL;
    *why = AUTH_REFUSED_UNKNOWN_KEY;
    unsigned char d[DIGEST_LEN];
    digest(hdr + slen, len - slen, d);
    const struct auth_key *found = NULL;
    for (size_t i = 0; i < a->n; i++) {
        int same = CRYPTO_memcmp(a->keys[i].digest, d, DIGEST_LEN) == 0;
        if (same)
            found = &a->keys[i];
    }
    return found;
}

enum auth_result auth_check(const struct auth *a, const char *authorization, size_t len,
                            const char *agent_id, enum auth_refusal *why)
{
    enum auth_refusal unused;
    if (!why)
        why = &unused;
    const struct auth_key *k = find_key(a, authorization, len, why);
    if (!k)
        return AUTH_UNAUTHENTICATED;
    if (agent_id == NULL) {
        *why = AUTH_REFUSED_NOT_ADMIN;
        return k->admin ? AUTH_OK : AUTH_PERMISSION_DENIED;
    }
    *why = AUTH_REFUSED_NOT_COVERED;
    if (!k->agents || fnmatch(k->agents, agent_id, 0) != 0)
        return AUTH_PERMISSION_DENIED;
    return AUTH_OK;
}

enum auth_result auth_check_agent(const struct auth *a, const char *authorization, size_t len,
                                  const char *agent_id)
{
    return auth_check(a, authorization, len, agent_id ? agent_id : "", NULL);
}

enum auth_result auth_check_admin(const struct auth *a, const char *authorization, size_t len)
{
    return auth_check(a, authorization, len, NULL, NULL);
}
