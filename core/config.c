/*
 * config.c - relay.ini as data: inih splits lines into key = value, this file
 * tracks sections and line numbers itself, validates sections against
 * declared key tables and formats every error the one way operators see it.
 * Main thread only. Never logs or exits: errors go back in err, one line
 * each (config_error_add), so one run lists every problem of a file.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A relay.ini is a few kilobytes; refuse anything absurd before reading it. */
#define CONFIG_MAX_FILE (1024 * 1024)
/* Values quoted in messages are cut to this many input bytes. */
#define CONFIG_QUOTE_MAX 80

/* st->cur after a [header] that was refused: its keys are skipped
 * unchecked (they would be blamed on the section before). */
#define SKIP_SECTION (-2L)

/* Parser state shared by the line reader and the key handler. Sections are
 * tracked here, not from inih's `section` argument: inih reports no empty
 * section, cannot tell "[a] [a]" from one section, and cuts long names. */
struct parse_state {
    struct config_file *f;
    const char *pos, *end; /* the rest of the text */
    int line;              /* number of the line last handed to inih */
    long cur;              /* index of the current section, -1 before any,
                              SKIP_SECTION after a refused [header] */
    unsigned n_errors;     /* recorded so far: parsing goes on past line errors */
    char *err;
    size_t errlen;
};

int config_errorf(char *err, size_t errlen, const char *file, int line,
                  const char *section, const char *key, const char *fmt, ...)
{
    char reason[CONFIG_ERR_LEN];
    char where[32] = "";
    va_list ap;

    if (!err || errlen == 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(where, sizeof where, ":%d", line);
    snprintf(err, errlen, "%s%s: %s%s%s%s%s%s", file ? file : "relay.ini", where,
             section ? "[" : "", section ? section : "", section ? "] " : "",
             key ? key : "", key ? ": " : "", reason);
    return -1;
}

int config_error_add(char *err, size_t errlen, const char *lines)
{
    static const char more[] = "... (more errors: this list is cut)";
    size_t used;

    if (!err || errlen == 0)
        return -1;
    used = strnlen(err, errlen - 1);
    err[used] = '\0';
    if (used >= sizeof more - 1 && strcmp(err + used - (sizeof more - 1), more) == 0)
        return -1; /* already cut */
    while (*lines) {
        size_t n = strcspn(lines, "\n"), sep = used ? 1 : 0;
        /* each line keeps room after it for the marker: "\n" + more */
        if (used + sep + n + 1 + sizeof more > errlen) {
            if (used + sep + sizeof more <= errlen) {
                if (sep)
                    err[used++] = '\n';
                memcpy(err + used, more, sizeof more);
            }
            return -1;
        }
        if (sep)
            err[used++] = '\n';
        memcpy(err + used, lines, n);
        used += n;
        err[used] = '\0';
        lines += n + (lines[n] == '\n');
    }
    return -1;
}

const char *config_quote(char *buf, size_t cap, const char *s)
{
    size_t o = 0, i;

    if (cap < 8) {
        if (cap)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (i = 0; s[i] && i < CONFIG_QUOTE_MAX && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    if (s[i]) { /* cut: say so rather than pretend it was the whole value */
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* ------------------------------------------------------------ data model */

struct config_section *config_add_section(struct config_file *f, const char *name, int line)
{
    struct config_section *grown, *s;
    char *copy = strdup(name);

    if (!copy)
        return NULL;
    grown = realloc(f->sections, (f->n_sections + 1) * sizeof *grown);
    if (!grown) {
        free(copy);
        return NULL;
    }
    f->sections = grown;
    s = &f->sections[f->n_sections++];
    memset(s, 0, sizeof *s);
    s->name = copy;
    s->file = f->path;
    s->line = line;
    return s;
}

int config_add_kv(struct config_section *s, const char *key, const char *value, int line)
{
    struct config_kv *kv;
    char *k = strdup(key), *v = strdup(value);

    if (!k || !v)
        goto fail;
    if (s->n_kv == s->cap_kv) {
        size_t cap = s->cap_kv ? s->cap_kv * 2 : 8;
        struct config_kv *grown = realloc(s->kv, cap * sizeof *grown);
        if (!grown)
            goto fail;
        s->kv = grown;
        s->cap_kv = cap;
    }
    kv = &s->kv[s->n_kv++];
    kv->key = k;
    kv->value = v;
    kv->line = line;
    return 0;
fail:
    free(v);
    free(k);
    return -ENOMEM;
}

void config_free(struct config_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_sections; i++) {
        struct config_section *s = &f->sections[i];
        for (size_t j = 0; j < s->n_kv; j++) {
            free(s->kv[j].key);
            free(s->kv[j].value);
        }
        free(s->kv);
        free(s->name);
    }
    free(f->sections);
    free(f->path);
    memset(f, 0, sizeof *f);
}

struct config_section *config_find(const struct config_file *f, const char *name)
{
    for (size_t i = 0; f && i < f->n_sections; i++)
        if (strcmp(f->sections[i].name, name) == 0)
            return &f->sections[i];
    return NULL;
}

const struct config_kv *config_get_kv(const struct config_section *s, const char *key)
{
    for (size_t i = 0; s && i < s->n_kv; i++)
        if (strcmp(s->kv[i].key, key) == 0)
            return &s->kv[i];
    return NULL;
}

const char *config_get(const struct config_section *s, const char *key)
{
    const struct config_kv *kv = config_get_kv(s, key);
    return kv ? kv->value : NULL;
}

bool config_section_equal(const struct config_section *a, const struct config_section *b)
{
    if (a->n_kv != b->n_kv || strcmp(a->name, b->name) != 0)
        return false;
    for (size_t i = 0; i < a->n_kv; i++) {
        const char *v = config_get(b, a->kv[i].key);
        if (!v || strcmp(v, a->kv[i].value) != 0)
            return false;
    }
    return true;
}

int config_parse_int(const char *s, long long *out)
{
    char *end;
    long long v;

    /* strtoll would skip blanks and accept "0x"/"" edge cases: be strict */
    if (!s || !(isdigit((unsigned char)s[0]) ||
                ((s[0] == '-' || s[0] == '+') && isdigit((unsigned char)s[1]))))
        return -EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (*end != '\0')
        return -EINVAL;
    if (errno == ERANGE)
        return -ERANGE;
    *out = v;
    return 0;
}

int config_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};

    for (size_t i = 0; s && i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -EINVAL;
}

long long config_get_int(const struct config_section *s, const char *key, long long dflt)
{
    long long v;
    return config_parse_int(config_get(s, key), &v) == 0 ? v : dflt;
}

int config_get_bool(const struct config_section *s, const char *key, int dflt)
{
    int v;
    return config_parse_bool(config_get(s, key), &v) == 0 ? v : dflt;
}

/* ----------------------------------------------------------------- parse */

/* Record an error at the current line, after those already recorded. */
static int parse_fail(struct parse_state *st, const char *section, const char *key,
                      const char *fmt, ...) AERO_PRINTF(4, 5);
static int parse_fail(struct parse_state *st, const char *section, const char *key,
                      const char *fmt, ...)
{
    char reason[CONFIG_ERR_LEN];
    va_list ap;

    char line[CONFIG_ERR_LEN];

    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    st->n_errors++;
    config_errorf(line, sizeof line, st->f->path, st->line, section, key, "%s", reason);
    return config_error_add(st->err, st->errlen, line);
}

/* Where inih's section scan stops: at `c`, at an inline ";" comment (one
 * preceded by a blank, as inih counts it), or at the end. */
static const char *scan_to(const char *p, const char *end, char c)
{
    bool was_space = false;

    for (; p < end && *p != c && !(was_space && *p == ';'); p++)
        was_space = isspace((unsigned char)*p);
    return p;
}

static void trim(const char **b, const char **e)
{
    while (*b < *e && isspace((unsigned char)**b))
        (*b)++;
    while (*e > *b && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

/* A "[name]" line: open a new current section, refusing a repeated one
 * (then its keys are skipped: SKIP_SECTION). */
static int begin_section(struct parse_state *st, const char *p, size_t len)
{
    st->cur = SKIP_SECTION; /* until the header is accepted */
    const char *close = scan_to(p + 1, p + len, ']'), *b = p + 1, *e = close;
    char name[CONFIG_ERR_LEN], q[CONFIG_ERR_LEN];
    const struct config_section *dup;

    if (close == p + len || *close != ']') {
        snprintf(name, sizeof name, "%.*s", (int)len, p);
        return parse_fail(st, NULL, NULL, "syntax error: %s (missing \"]\")",
                          config_quote(q, sizeof q, name));
    }
    trim(&b, &e);
    if ((size_t)(e - b) >= sizeof name)
        return parse_fail(st, NULL, NULL, "section name too long");
    snprintf(name, sizeof name, "%.*s", (int)(e - b), b);
    dup = config_find(st->f, name);
    if (dup)
        return parse_fail(st, name, NULL, "duplicate section (first on line %d)", dup->line);
    if (!config_add_section(st->f, name, st->line))
        return parse_fail(st, name, NULL, "out of memory");
    st->cur = (long)st->f->n_sections - 1;
    return 0;
}

static int handle_kv(void *user, const char *section, const char *name, const char *value);

/*
 * A "key = value" line longer than inih's line buffer (Debian builds it
 * with 200 bytes: a NATS url list of 32 servers is longer), split here as
 * inih splits: at the first '=' or ':', blanks trimmed, an inline
 * "; comment" (after a blank) dropped. The caller made sure there is one.
 * Returns 0, or -1 with the error recorded.
 */
static int long_kv(struct parse_state *st, const char *p, size_t len)
{
    const char *end = p + len, *eq = p;
    while (eq < end && *eq != '=' && *eq != ':')
        eq++;
    if (eq == end)
        return parse_fail(st, NULL, NULL, "syntax error: no '=' (expected key = value)");
    const char *kb = p, *ke = eq, *vb = eq + 1, *ve = scan_to(eq + 1, end, '\0');
    trim(&kb, &ke);
    trim(&vb, &ve);
    char *key = strndup(kb, (size_t)(ke - kb)), *value = strndup(vb, (size_t)(ve - vb));
    int rc = key && value ? (handle_kv(st, NULL, key, value) ? 0 : -1)
                          : parse_fail(st, NULL, NULL, "out of memory");
    free(key);
    free(value);
    return rc;
}

/* "key: value", which inih also takes: a key of one word before the ':'.
 * "listen 127.0.0.1:5" is not one (a forgotten '='). */
static bool colon_kv(const char *p, size_t len)
{
    const char *colon = memchr(p, ':', len), *b = p, *e = colon;
    if (!colon)
        return false;
    trim(&b, &e);
    for (const char *c = b; c < e; c++)
        if (isspace((unsigned char)*c))
            return false;
    return b < e;
}

/*
 * inih's fgets-style reader, one whole line per call, so inih's line count
 * and ours agree. Leading blanks are dropped: inih would otherwise take an
 * indented "key = value" for a continuation of the previous value. A line
 * that is no section, comment, "key = value" or "key: value" is refused
 * here, with the reason: inih would take "listen 127.0.0.1:5" for key
 * "listen 127.0.0.1" (it splits at ':' too).
 */
static char *read_line(char *buf, int num, void *stream)
{
    struct parse_state *st = stream;
    const char *p, *nl;
    size_t len;

    if (st->pos >= st->end)
        return NULL;
    p = st->pos;
    nl = memchr(p, '\n', (size_t)(st->end - p));
    len = (size_t)((nl ? nl : st->end) - p);
    st->pos = nl ? nl + 1 : st->end;
    st->line++;
    if (len && p[len - 1] == '\r')
        len--;
    if (st->line == 1 && len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
        p += 3;
        len -= 3;
    }
    while (len && (*p == ' ' || *p == '\t' || *p == '\f' || *p == '\v')) {
        p++;
        len--;
    }
    if (len && (*p == ';' || *p == '#'))
        len = 0; /* a comment may be any length: hand inih an empty line */
    if (len && *p != '[' && !memchr(p, '=', len) && !colon_kv(p, len)) {
        char raw[CONFIG_ERR_LEN], q[CONFIG_ERR_LEN];
        snprintf(raw, sizeof raw, "%.*s", (int)len, p);
        parse_fail(st, NULL, NULL, "syntax error: %s has no '=' (expected key = value)",
                   config_quote(q, sizeof q, raw));
        len = 0; /* recorded: inih sees an empty line, the next line is read */
    }
    if (len && *p != '[' && num >= 2 && len > (size_t)num - 1) {
        long_kv(st, p, len); /* an error is recorded there */
        len = 0; /* handled: inih sees an empty line */
    }
    if (num < 2 || len > (size_t)num - 1) {
        parse_fail(st, NULL, NULL, "line too long (max %d bytes)", num - 1);
        st->cur = SKIP_SECTION; /* a [header]: its keys are not the last section's */
        len = 0;
    }
    if (len && *p == '[') {
        begin_section(st, p, len); /* an error is recorded there */
        len = 0; /* sections are tracked here, not by inih (struct parse_state) */
    }
    memcpy(buf, p, len);
    buf[len] = '\0';
    return buf;
}

/* inih's callback for each "key = value": returns 1 (go on) even after an
 * error, which is recorded, so the rest of the file is checked too. */
static int handle_kv(void *user, const char *section, const char *name, const char *value)
{
    struct parse_state *st = user;
    struct config_section *s;
    const struct config_kv *dup;

    (void)section; /* see struct parse_state */
    if (st->cur == SKIP_SECTION)
        return 1;
    if (st->cur < 0) {
        parse_fail(st, NULL, name, "key outside any section (add a [section] line above it)");
        return 1;
    }
    s = &st->f->sections[st->cur];
    if (!*name) {
        parse_fail(st, s->name, NULL, "syntax error: empty key name");
        return 1;
    }
    dup = config_get_kv(s, name);
    if (dup) {
        parse_fail(st, s->name, name, "duplicate key (first set on line %d)", dup->line);
        return 1;
    }
    if (config_add_kv(s, name, value, st->line) < 0)
        parse_fail(st, s->name, name, "out of memory");
    return 1;
}

/* The text of line `n` (1-based), blanks trimmed, for a syntax error. */
static void line_at(const char *text, const char *end, int n, char *out, size_t cap)
{
    const char *b = text, *e;

    for (int i = 1; i < n && b < end; i++) {
        const char *nl = memchr(b, '\n', (size_t)(end - b));
        b = nl ? nl + 1 : end;
    }
    e = memchr(b, '\n', (size_t)(end - b));
    e = e ? e : end;
    trim(&b, &e);
    snprintf(out, cap, "%.*s", (int)(e - b), b);
}

static int parse_text(const char *path, const char *text, size_t len, struct config_file *out,
                      char *err, size_t errlen)
{
    struct parse_state st = {.f = out, .pos = text, .end = text + len, .cur = -1,
                             .err = err, .errlen = errlen};
    const char *nul = memchr(text, '\0', len);
    char raw[CONFIG_ERR_LEN], q[CONFIG_ERR_LEN], line[CONFIG_ERR_LEN];
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (nul) {
        st.line = 1;
        for (const char *p = text; p < nul; p++)
            st.line += *p == '\n';
        return parse_fail(&st, NULL, NULL, "NUL byte in line (is this a text file?)");
    }
    rc = ini_parse_stream(read_line, &st, handle_kv, &st);
    if (rc > 0) {
        /* inih's own complaint (handle_kv never fails): a line that is no
         * key, section or comment; inih names only the first */
        line_at(text, text + len, rc, raw, sizeof raw);
        config_errorf(line, sizeof line, out->path, rc, NULL, NULL,
                      "syntax error: %s (expected key = value, [section] or ; comment)",
                      config_quote(q, sizeof q, raw));
        return config_error_add(err, errlen, line);
    }
    if (st.n_errors)
        return -1;
    if (rc < 0)
        return config_errorf(err, errlen, out->path, 0, NULL, NULL, "out of memory");
    return 0;
}

int config_parse_string(const char *path, const char *text, struct config_file *out,
                        char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->path = strdup(path ? path : "relay.ini");
    if (!out->path)
        return config_errorf(err, errlen, path, 0, NULL, NULL, "out of memory");
    if (parse_text(out->path, text, strlen(text), out, err, errlen) < 0) {
        config_free(out);
        return -1;
    }
    return 0;
}

/* Whole file into memory (NUL-terminated), at most CONFIG_MAX_FILE bytes. */
static int slurp(const char *path, char **text, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, got;
    int rc = 0;

    if (!fp)
        return -errno;
    buf = malloc(CONFIG_MAX_FILE + 2);
    if (!buf) {
        rc = -ENOMEM;
        goto fail;
    }
    while ((got = fread(buf + n, 1, CONFIG_MAX_FILE + 1 - n, fp)) > 0)
        n += got;
    if (ferror(fp)) {
        rc = errno ? -errno : -EIO;
        goto fail;
    }
    if (n > CONFIG_MAX_FILE) {
        rc = -EFBIG;
        goto fail;
    }
    buf[n] = '\0';
    fclose(fp);
    *text = buf;
    *len = n;
    return 0;
fail:
    free(buf);
    fclose(fp);
    return rc;
}

int config_parse(const char *path, struct config_file *out, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    memset(out, 0, sizeof *out);
    rc = slurp(path, &text, &len);
    if (rc == -EFBIG)
        return config_errorf(err, errlen, path, 0, NULL, NULL,
                             "cannot read: file larger than %d bytes", CONFIG_MAX_FILE);
    if (rc < 0)
        return config_errorf(err, errlen, path, 0, NULL, NULL, "cannot read: %s", strerror(-rc));
    out->path = strdup(path);
    rc = out->path ? parse_text(out->path, text, len, out, err, errlen)
                   : config_errorf(err, errlen, path, 0, NULL, NULL, "out of memory");
    free(text);
    if (rc < 0)
        config_free(out);
    return rc;
}

/* -------------------------------------------------------------- validate */

/* A field of a key table entry is there only if the producer's key_size
 * covers it (the table may come from an older ABI minor). */
#define KEY_HAS(size, field)                                                  \
    (offsetof(aero_config_key, field) + sizeof(((aero_config_key *)0)->field) <= (size))
#define KEY_COPY(out, base, size, field)                                      \
    do {                                                                      \
        if (KEY_HAS(size, field))                                             \
            memcpy(&(out)->field, (base) + offsetof(aero_config_key, field),  \
                   sizeof((out)->field));                                     \
    } while (0)

/* Entry i of table t, read with t's stride and only as far as key_size
 * reaches; absent fields get neutral values. Returns 0 if the entry has no
 * usable name (skipped). */
static int key_at(const struct config_keys *t, size_t i, aero_config_key *out)
{
    const char *base = (const char *)t->keys + i * t->key_size;

    memset(out, 0, sizeof *out);
    out->type = AERO_KEY_STRING;
    out->min = INT64_MIN;
    out->max = INT64_MAX;
    KEY_COPY(out, base, t->key_size, name);
    KEY_COPY(out, base, t->key_size, type);
    KEY_COPY(out, base, t->key_size, default_value);
    KEY_COPY(out, base, t->key_size, help);
    KEY_COPY(out, base, t->key_size, choices);
    KEY_COPY(out, base, t->key_size, min);
    KEY_COPY(out, base, t->key_size, max);
    KEY_COPY(out, base, t->key_size, required);
    return out->name != NULL && out->name[0] != '\0';
}

static size_t table_len(const struct config_keys *t)
{
    return t && t->keys && t->key_size ? t->n_keys : 0;
}

static int find_decl(const struct config_keys *tables, size_t n_tables, const char *name,
                     aero_config_key *out)
{
    for (size_t t = 0; t < n_tables; t++)
        for (size_t i = 0; i < table_len(&tables[t]); i++)
            if (key_at(&tables[t], i, out) && strcmp(out->name, name) == 0)
                return 1;
    return 0;
}

/* Does an entry before (t, i) declare `name`? (core and plugin may overlap) */
static int declared_before(const struct config_keys *tables, size_t t, size_t i,
                           const char *name)
{
    aero_config_key k;

    for (size_t tt = 0; tt <= t; tt++)
        for (size_t ii = 0; ii < (tt == t ? i : table_len(&tables[tt])); ii++)
            if (key_at(&tables[tt], ii, &k) && strcmp(k.name, name) == 0)
                return 1;
    return 0;
}

/* "a, b, c": every declared name once, in declaration order. */
static void list_names(const struct config_keys *tables, size_t n_tables, char *out, size_t cap)
{
    size_t o = 0;
    aero_config_key k;

    out[0] = '\0';
    for (size_t t = 0; t < n_tables; t++) {
        for (size_t i = 0; i < table_len(&tables[t]); i++) {
            if (!key_at(&tables[t], i, &k) || declared_before(tables, t, i, k.name))
                continue;
            o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, "%s%s", o ? ", " : "", k.name);
        }
    }
}

/* "none|batch" written as "none | batch". */
static void list_choices(const char *choices, char *out, size_t cap)
{
    size_t o = 0;
    const char *p = choices ? choices : "";

    out[0] = '\0';
    while (*p && o + 1 < cap) {
        const char *bar = strchr(p, '|'), *e = bar ? bar : p + strlen(p), *b = p;
        trim(&b, &e);
        o += (size_t)snprintf(out + o, cap - o, "%s%.*s", o ? " | " : "", (int)(e - b), b);
        if (!bar)
            break;
        p = bar + 1;
    }
    if (o >= cap)
        out[cap - 1] = '\0';
}

/* Index of v among "a|b|c" (blanks around a choice ignored), or -1. */
static int choice_index(const char *choices, const char *v)
{
    const char *p = choices;
    size_t vl = strlen(v);

    for (int i = 0; p; i++) {
        const char *bar = strchr(p, '|'), *e = bar ? bar : p + strlen(p), *b = p;
        trim(&b, &e);
        if ((size_t)(e - b) == vl && memcmp(b, v, vl) == 0)
            return i;
        p = bar ? bar + 1 : NULL;
    }
    return -1;
}

static int is_choice(const char *choices, const char *v) { return choice_index(choices, v) >= 0; }

/* One value against its declaration; err filled on failure. Returns 0,
 * -EINVAL or -ERANGE. */
static int check_value_at(const char *path, int line, const struct config_section *s,
                          const struct config_kv *kv, const aero_config_key *k, char *err,
                          size_t errlen)
{
    char q[CONFIG_ERR_LEN], what[CONFIG_ERR_LEN];
    long long v;
    int b, rc;

    config_quote(q, sizeof q, kv->value);
    switch (k->type) {
    case AERO_KEY_INT:
        rc = config_parse_int(kv->value, &v);
        if (rc == -EINVAL) {
            if (k->min == INT64_MIN && k->max == INT64_MAX)
                snprintf(what, sizeof what, "an integer");
            else
                snprintf(what, sizeof what, "an integer from %lld to %lld", (long long)k->min,
                         (long long)k->max);
            config_errorf(err, errlen, path, line, s->name, kv->key,
                          "invalid value %s (expected %s)", q, what);
            return -EINVAL;
        }
        if (rc == -ERANGE || v < k->min || v > k->max) {
            config_errorf(err, errlen, path, line, s->name, kv->key,
                          "value %s out of range (expected %lld to %lld)", q,
                          (long long)k->min, (long long)k->max);
            return -ERANGE;
        }
        return 0;
    case AERO_KEY_BOOL:
        if (config_parse_bool(kv->value, &b) == 0)
            return 0;
        config_errorf(err, errlen, path, line, s->name, kv->key,
                      "invalid value %s (expected true | false | yes | no | on | off | 1 | 0)", q);
        return -EINVAL;
    case AERO_KEY_ENUM:
        if (!k->choices || is_choice(k->choices, kv->value))
            return 0;
        list_choices(k->choices, what, sizeof what);
        config_errorf(err, errlen, path, line, s->name, kv->key, "invalid value %s (expected %s)",
                      q, what);
        return -EINVAL;
    default:
        return 0; /* strings, and types of a newer minor we cannot check */
    }
}

static int check_value(const struct config_file *f, const struct config_section *s,
                       const struct config_kv *kv, const aero_config_key *k, char *err,
                       size_t errlen)
{
    return check_value_at(f->path, kv->line, s, kv, k, err, errlen) < 0 ? -1 : 0;
}

/* Every key of s, each error added to err. Returns how many. */
static unsigned check_keys(const struct config_file *f, const struct config_section *s,
                           const struct config_keys *tables, size_t n_tables, unsigned flags,
                           char *err, size_t errlen)
{
    char names[CONFIG_ERR_LEN], line[CONFIG_ERR_LEN];
    aero_config_key k;
    unsigned failed = 0;

    for (size_t i = 0; i < s->n_kv; i++) {
        const struct config_kv *kv = &s->kv[i];
        line[0] = '\0';
        if (!find_decl(tables, n_tables, kv->key, &k)) {
            if (flags & CONFIG_ALLOW_UNKNOWN)
                continue;
            list_names(tables, n_tables, names, sizeof names);
            if (!names[0])
                config_errorf(line, sizeof line, f->path, kv->line, s->name, kv->key,
                              "unknown key (this section takes no keys)");
            else
                config_errorf(line, sizeof line, f->path, kv->line, s->name, kv->key,
                              "unknown key (valid: %s)", names);
        } else if (check_value(f, s, kv, &k, line, sizeof line) == 0) {
            continue;
        }
        config_error_add(err, errlen, line);
        failed++;
    }
    return failed;
}

/* Missing required keys fail (each added to err); others not set get
 * their default (line 0). Returns how many failed. */
static unsigned fill_defaults(const struct config_file *f, struct config_section *s,
                              const struct config_keys *tables, size_t n_tables, char *err,
                              size_t errlen)
{
    char line[CONFIG_ERR_LEN];
    aero_config_key k;
    unsigned failed = 0;

    for (size_t t = 0; t < n_tables; t++) {
        for (size_t i = 0; i < table_len(&tables[t]); i++) {
            if (!key_at(&tables[t], i, &k) || config_get_kv(s, k.name))
                continue;
            if (k.required && k.help && k.help[0])
                config_errorf(line, sizeof line, f->path, s->line, s->name, k.name,
                              "missing required key (%s)", k.help);
            else if (k.required)
                config_errorf(line, sizeof line, f->path, s->line, s->name, k.name,
                              "missing required key");
            else if (k.default_value && config_add_kv(s, k.name, k.default_value, 0) < 0)
                config_errorf(line, sizeof line, f->path, s->line, s->name, k.name,
                              "out of memory");
            else
                continue;
            config_error_add(err, errlen, line);
            failed++;
        }
    }
    return failed;
}

int config_validate_section_flags(const struct config_file *f, struct config_section *s,
                                  const struct config_keys *tables, size_t n_tables,
                                  unsigned flags, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    unsigned failed = check_keys(f, s, tables, n_tables, flags, err, errlen);
    failed += fill_defaults(f, s, tables, n_tables, err, errlen);
    return failed ? -1 : 0;
}

int config_prefer_defaults(struct config_section *s, const struct config_keys *table)
{
    aero_config_key k;
    for (size_t i = 0; i < table_len(table); i++) {
        struct config_kv *kv =
            key_at(table, i, &k) ? (struct config_kv *)config_get_kv(s, k.name) : NULL;
        if (!kv || kv->line != 0 || !k.default_value || strcmp(kv->value, k.default_value) == 0)
            continue;
        char *v = strdup(k.default_value);
        if (!v)
            return -ENOMEM;
        free(kv->value);
        kv->value = v;
    }
    return 0;
}

int config_validate_section(const struct config_file *f, struct config_section *s,
                            const struct config_keys *tables, size_t n_tables, char *err,
                            size_t errlen)
{
    return config_validate_section_flags(f, s, tables, n_tables, 0, err, errlen);
}

/* ------------------------------------------------------- typed reads */

int config_line_of(const struct config_section *s, const char *key)
{
    const struct config_kv *kv = key ? config_get_kv(s, key) : NULL;
    return kv && kv->line > 0 ? kv->line : s->line;
}

/* Check key's value as declaration k would (the validator's messages). */
static int read_checked(const struct config_section *s, const char *key,
                        const aero_config_key *k, const struct config_kv **kv_out, char *err,
                        size_t errlen)
{
    const struct config_kv *kv = config_get_kv(s, key);

    if (!kv)
        return -ENOENT;
    *kv_out = kv;
    return check_value_at(s->file, config_line_of(s, key), s, kv, k, err, errlen);
}

int config_read_bool(const struct config_section *s, const char *key, int *out, char *err,
                     size_t errlen)
{
    const aero_config_key k = {.name = key, .type = AERO_KEY_BOOL};
    const struct config_kv *kv = NULL;
    int rc = read_checked(s, key, &k, &kv, err, errlen);

    return rc < 0 ? rc : config_parse_bool(kv->value, out);
}

int config_read_int(const struct config_section *s, const char *key, long long min,
                    long long max, long long *out, char *err, size_t errlen)
{
    const aero_config_key k = {.name = key, .type = AERO_KEY_INT, .min = min, .max = max};
    const struct config_kv *kv = NULL;
    int rc = read_checked(s, key, &k, &kv, err, errlen);

    return rc < 0 ? rc : config_parse_int(kv->value, out);
}

int config_read_enum(const struct config_section *s, const char *key, const char *choices,
                     int *index, char *err, size_t errlen)
{
    const aero_config_key k = {.name = key, .type = AERO_KEY_ENUM,
                               .choices = choices ? choices : ""};
    const struct config_kv *kv = NULL;
    int rc = read_checked(s, key, &k, &kv, err, errlen);

    if (rc < 0)
        return rc;
    *index = choice_index(k.choices, kv->value);
    return 0;
}
