/*
 * config.h - relay.ini as data: parse (inih) into sections of key = value
 * with the line of each, validate a section against declared keys
 * (aero_config_key tables: the core's and a plugin's), and format every
 * error the one way operators see it:
 *   relay.ini:42: [sink:archive] fsync: invalid value "sometimes" (expected none | batch)
 * Main thread only; the result is read-only afterwards and shared freely.
 */
#ifndef AERO_CONFIG_H
#define AERO_CONFIG_H

#include <aeroarc/plugin.h>
#include <stdbool.h>
#include <stddef.h>

struct config_kv {
    char *key;
    char *value;
    int line;        /* 0: a default filled in by config_validate_section */
};

struct config_section {
    char *name;      /* as written: "relay", "sink:archive" */
    const char *file; /* the config_file's path (for messages); owned by it */
    int line;        /* line of the [header] */
    struct config_kv *kv;
    size_t n_kv, cap_kv;
};

struct config_file {
    char *path;      /* as given on the command line */
    struct config_section *sections;
    size_t n_sections;
};

/* A table of declared keys, read with stride `key_size` (plugin tables may
 * have been compiled against an older or newer aero_config_key). */
struct config_keys {
    const aero_config_key *keys;
    size_t n_keys;
    size_t key_size;
};

#define CONFIG_ERR_LEN 512

/*
 * Parse `path`. Syntax errors, a duplicate section or a duplicate key in a
 * section fail with the formatted messages in err: every such error of the
 * file, one line each in file order (a refused [section]'s keys are
 * skipped unchecked). Section names are not
 * checked here (settings.c knows which exist). Returns 0 or -1 (then *out
 * holds nothing to free). Rules beyond inih's: leading blanks are ignored
 * (no multi-line values), a key before any [section] is an error, lines are
 * at most 199 bytes (comments excepted), the file at most 1 MiB.
 */
int config_parse(const char *path, struct config_file *out, char *err, size_t errlen);
/* Same, from a string (tests, fuzzing); `path` is only used in messages. */
int config_parse_string(const char *path, const char *text, struct config_file *out,
                        char *err, size_t errlen);
void config_free(struct config_file *f);

struct config_section *config_find(const struct config_file *f, const char *name);
/* Value of key in the section (after validation: defaults included), or NULL. */
const char *config_get(const struct config_section *s, const char *key);
const struct config_kv *config_get_kv(const struct config_section *s, const char *key);
/* Same name and the same keys with the same values, in any order (lines
 * aside): a reload keeps an instance whose section is equal. */
bool config_section_equal(const struct config_section *a, const struct config_section *b);

/*
 * Check every key of `s` against the union of `tables` (n_tables of them):
 * unknown keys (the message lists the valid ones), bad values per type
 * (int range, bool, enum choices), missing required keys; then append the
 * defaults of keys not set. Returns 0, or -1 with err holding every
 * error of the section, one line each.
 */
int config_validate_section(const struct config_file *f, struct config_section *s,
                            const struct config_keys *tables, size_t n_tables,
                            char *err, size_t errlen);

/* After validation: a key the section got its default for (line 0) takes
 * the default `table` declares for it instead, so a plugin that lists a
 * common key ([sink:*] queue) in its own table sets that key's default for
 * its sections. Returns 0, or -ENOMEM. */
int config_prefer_defaults(struct config_section *s, const struct config_keys *table);

/* Flags of config_validate_section_flags. */
#define CONFIG_ALLOW_UNKNOWN 1u /* skip keys no table declares (checked later) */

/* config_validate_section with flags; config_validate_section passes 0.
 * settings.c uses CONFIG_ALLOW_UNKNOWN to check the core keys of [route]
 * and [sink:*] before the plugin (which declares the rest) is loaded. */
int config_validate_section_flags(const struct config_file *f, struct config_section *s,
                                  const struct config_keys *tables, size_t n_tables,
                                  unsigned flags, char *err, size_t errlen);

/*
 * Append an empty section (line 0: not in the file) or a key to a section.
 * For settings.c (sections every relay has, even when the file omits them).
 * config_add_section moves f->sections: pointers to sections taken before
 * are invalid afterwards. Return the section / 0, or NULL / -ENOMEM.
 */
struct config_section *config_add_section(struct config_file *f, const char *name, int line);
int config_add_kv(struct config_section *s, const char *key, const char *value, int line);

/*
 * Write `s` into buf as a double-quoted string for a message: '"' and '\'
 * backslashed, control bytes as \xNN, cut after 80 bytes with "...".
 * Returns buf. cap of CONFIG_ERR_LEN always suffices.
 */
const char *config_quote(char *buf, size_t cap, const char *s);

/*
 * Typed reads for plugins (aero_host config_bool/int/enum), with the key
 * validator's own parsers and messages. Return 0 with *out set; -ENOENT when
 * the key has no value (err untouched); -EINVAL (not of the type, not a
 * choice) or -ERANGE (outside [min, max]) with err filled as
 *   <file>:<line>: [<section>] <key>: invalid value "x" (expected ...)
 * where <line> is the key's line, or the section's for a default value.
 * *out is untouched on failure. `choices` is "a|b|c"; the index counts from 0.
 */
int config_read_bool(const struct config_section *s, const char *key, int *out, char *err,
                     size_t errlen);
int config_read_int(const struct config_section *s, const char *key, long long min,
                    long long max, long long *out, char *err, size_t errlen);
int config_read_enum(const struct config_section *s, const char *key, const char *choices,
                     int *index, char *err, size_t errlen);

/* The line a message about `key` points at: the key's own line when the
 * file sets it, else the section's (0 if neither is in the file). */
int config_line_of(const struct config_section *s, const char *key);

/* Typed reads of validated values (dflt when the key is unset or invalid). */
long long config_get_int(const struct config_section *s, const char *key, long long dflt);
int config_get_bool(const struct config_section *s, const char *key, int dflt);

/*
 * Add `lines` (formatted errors, "\n" between) to the lines already in
 * err, "\n" between: how every error of a file is collected for one
 * report. When err is full, its last line is "... (more errors: this list
 * is cut)" and nothing more is added. err must hold a string ("" for none
 * yet). Returns -1.
 */
int config_error_add(char *err, size_t errlen, const char *lines);

/*
 * The one error formatter: "<file>:<line>: [<section>] <key>: <reason>".
 * line <= 0 drops ":<line>", section NULL drops "[...]", key NULL drops
 * "<key>: ". Returns -1 so callers can `return config_errorf(...)`.
 */
int config_errorf(char *err, size_t errlen, const char *file, int line,
                  const char *section, const char *key, const char *fmt, ...)
    AERO_PRINTF(7, 8);

/* Parsers shared with the key validator: return 0 on success, else -EINVAL
 * (or -ERANGE for an integer beyond long long). Integers are plain decimal;
 * booleans true|false|yes|no|on|off|1|0, any case. */
int config_parse_int(const char *s, long long *out);
int config_parse_bool(const char *s, int *out);

#endif
