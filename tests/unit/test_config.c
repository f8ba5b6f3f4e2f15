/*
 * test_config.c - relay.ini parsing and key validation (core/config.c):
 * the exact one-line message for every kind of bad input, what good input
 * parses to, defaults, and reading key tables of other ABI minors with
 * their own stride and never past key_size (a guard page proves it).
 */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

struct bad_case {
    const char *name;
    const char *text;
    const char *expect;
};

static void expect_parse_error(const struct bad_case *c)
{
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "";

    cr_expect_eq(config_parse_string("relay.ini", c->text, &f, err, sizeof err), -1,
                 "case %s: parsed", c->name);
    cr_expect_str_eq(err, c->expect, "case %s", c->name);
    cr_expect_eq(f.n_sections, 0, "case %s: failed parse leaves sections", c->name);
}

/* ----------------------------------------------------------------- parse */

Test(config_parse, errors_have_exact_messages)
{
    static char long_line[512];
    static const struct bad_case cases[] = {
        {"unclosed section", "[relay\nlisten = x\n",
         "relay.ini:1: syntax error: \"[relay\" (missing \"]\")"},
        {"bracket after comment", "[relay ;]\n",
         "relay.ini:1: syntax error: \"[relay ;]\" (missing \"]\")"},
        {"no equals", "[relay]\nlisten 0.0.0.0\n",
         "relay.ini:2: syntax error: \"listen 0.0.0.0\" has no '=' (expected key = value)"},
        /* inih alone would split this at ':' into key "listen 127.0.0.1". */
        {"no equals but a colon", "[relay]\nlisten 127.0.0.1:5\n",
         "relay.ini:2: syntax error: \"listen 127.0.0.1:5\" has no '=' (expected key = value)"},
        {"duplicate section", "[a]\nx = 1\n[b]\ny = 2\n[a]\nz = 3\n",
         "relay.ini:5: [a] duplicate section (first on line 1)"},
        {"duplicate empty section", "[a]\n[a]\n", "relay.ini:2: [a] duplicate section (first on line 1)"},
        {"duplicate key", "[a]\nx = 1\n; c\nx = 2\n",
         "relay.ini:4: [a] x: duplicate key (first set on line 2)"},
        {"key outside section", "\nx = 1\n[a]\n",
         "relay.ini:2: x: key outside any section (add a [section] line above it)"},
        {"empty key", "[a]\n= 5\n", "relay.ini:2: [a] syntax error: empty key name"},
        {"every error, in file order", "[a]\nbad line\nx = 1\nx = 2\nlisten 1:2\n",
         "relay.ini:2: syntax error: \"bad line\" has no '=' (expected key = value)\n"
         "relay.ini:4: [a] x: duplicate key (first set on line 3)\n"
         "relay.ini:5: syntax error: \"listen 1:2\" has no '=' (expected key = value)"},
        /* a refused [header]'s keys are not blamed on the section before */
        {"keys of a refused section are skipped", "[a]\nx = 1\n[a]\nx = 2\n[b\ny = 1\n[c]\n= 1\n",
         "relay.ini:3: [a] duplicate section (first on line 1)\n"
         "relay.ini:5: syntax error: \"[b\" (missing \"]\")\n"
         "relay.ini:8: [c] syntax error: empty key name"},
        {"long section line", long_line, "relay.ini:2: line too long (max 199 bytes)"},
        {"control bytes quoted", "[a]\nbad\tline\x01\n",
         "relay.ini:2: syntax error: \"bad\\x09line\\x01\" has no '=' (expected key = value)"},
    };

    snprintf(long_line, sizeof long_line, "[a]\n[b%0200d]\n", 7);
    for (size_t i = 0; i < N_ELEMS(cases); i++)
        expect_parse_error(&cases[i]);
}

Test(config_parse, good_input_sections_keys_and_lines)
{
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "";
    const char *text = "\xEF\xBB\xBF; a comment\r\n"
                       "[a]\r\n"
                       "  x = 1 ; note\r\n"
                       "\ty = two words\r\n"
                       "# hash comment\n"
                       "z = a # not a comment\n"
                       "colon: v\n"
                       "empty =\n"
                       "[ b ]\n"
                       "[sink:a-very-long-instance-name-of-sixty-characters-0123456789]\n"
                       "q = \"quoted\"";
    const struct config_section *a, *b, *c;

    cr_assert_eq(config_parse_string("relay.ini", text, &f, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(f.path, "relay.ini");
    cr_assert_eq(f.n_sections, 3);
    a = config_find(&f, "a");
    b = config_find(&f, "b");
    c = config_find(&f, "sink:a-very-long-instance-name-of-sixty-characters-0123456789");
    cr_assert(a && b && c);
    cr_expect_eq(a->line, 2);
    cr_expect_eq(b->line, 9);
    cr_expect_eq(b->n_kv, 0);
    cr_expect_eq(c->line, 10);
    cr_assert_eq(a->n_kv, 5);
    /* indented keys are keys, not continuations of the previous value */
    cr_expect_str_eq(config_get(a, "x"), "1");
    cr_expect_eq(config_get_kv(a, "x")->line, 3);
    cr_expect_str_eq(config_get(a, "y"), "two words");
    cr_expect_eq(config_get_kv(a, "y")->line, 4);
    cr_expect_str_eq(config_get(a, "z"), "a # not a comment");
    cr_expect_str_eq(config_get(a, "colon"), "v");
    cr_expect_str_eq(config_get(a, "empty"), "");
    cr_expect_eq(config_get_kv(a, "empty")->line, 8);
    cr_expect_str_eq(config_get(c, "q"), "\"quoted\"");
    cr_expect_null(config_get(a, "nope"));
    cr_expect_null(config_find(&f, "nope"));
    config_free(&f);
    cr_expect_eq(f.n_sections, 0);
}

Test(config_parse, long_comment_lines_are_fine)
{
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "", text[1024];

    snprintf(text, sizeof text, "; %0500d\n[a]\nx = 1 \n  # %0400d\n", 1, 2);
    cr_assert_eq(config_parse_string("relay.ini", text, &f, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(config_get(config_find(&f, "a"), "x"), "1");
    config_free(&f);
}

/* Longer than inih's 200-byte line: a NATS url list of 32 servers. */
Test(config_parse, long_key_value_lines_are_read_whole)
{
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "", text[4096], want[3000] = "";
    for (int i = 0; i < 32; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%snats://10.0.0.%d:4222",
                 i ? "," : "", i);
    snprintf(text, sizeof text, "[sink:bus]\n  url =   %s   ; 32 servers\nsubject = x\n", want);
    cr_assert_eq(config_parse_string("relay.ini", text, &f, err, sizeof err), 0, "%s", err);
    const struct config_section *s = config_find(&f, "sink:bus");
    cr_expect_str_eq(config_get(s, "url"), want);
    cr_expect_eq(config_get_kv(s, "url")->line, 2);
    cr_expect_str_eq(config_get(s, "subject"), "x");
    config_free(&f);

    snprintf(text, sizeof text, "[a]\nx = 1\nx = %0300d\n", 5);
    cr_assert_eq(config_parse_string("relay.ini", text, &f, err, sizeof err), -1);
    cr_expect_str_eq(err, "relay.ini:3: [a] x: duplicate key (first set on line 2)",
                     "a long line is checked like any other");
}

Test(config_parse, empty_text)
{
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "";

    cr_assert_eq(config_parse_string("relay.ini", "", &f, err, sizeof err), 0);
    cr_expect_eq(f.n_sections, 0);
    config_free(&f);
}

static char *write_temp(const void *data, size_t len)
{
    static char path[64];
    int fd;

    snprintf(path, sizeof path, "/tmp/test_config_XXXXXX");
    fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

Test(config_parse, from_file)
{
    const char text[] = "[relay]\nlisten = 127.0.0.1:1\n";
    char *path = write_temp(text, sizeof text - 1);
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "";

    cr_assert_eq(config_parse(path, &f, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(f.path, path);
    cr_expect_str_eq(config_get(config_find(&f, "relay"), "listen"), "127.0.0.1:1");
    config_free(&f);
    unlink(path);
}

Test(config_parse, file_errors)
{
    const char text[] = "[relay]\nlisten = a\0b\n";
    char *path = write_temp(text, sizeof text - 1), expect[128];
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "";

    cr_expect_eq(config_parse(path, &f, err, sizeof err), -1);
    snprintf(expect, sizeof expect, "%s:2: NUL byte in line (is this a text file?)", path);
    cr_expect_str_eq(err, expect);
    unlink(path);

    cr_expect_eq(config_parse("/nonexistent/relay.ini", &f, err, sizeof err), -1);
    cr_expect_str_eq(err, "/nonexistent/relay.ini: cannot read: No such file or directory");
}

/* -------------------------------------------------------------- helpers */

Test(config_errorf, drops_missing_parts)
{
    char err[CONFIG_ERR_LEN];

    cr_expect_eq(config_errorf(err, sizeof err, "relay.ini", 42, "sink:archive", "fsync",
                               "invalid value %s (expected %s)", "\"sometimes\"", "none | batch"),
                 -1);
    cr_expect_str_eq(err,
                     "relay.ini:42: [sink:archive] fsync: invalid value \"sometimes\" (expected none | batch)");
    config_errorf(err, sizeof err, "relay.ini", 0, "s", "k", "r");
    cr_expect_str_eq(err, "relay.ini: [s] k: r");
    config_errorf(err, sizeof err, "relay.ini", 3, NULL, "k", "r");
    cr_expect_str_eq(err, "relay.ini:3: k: r");
    config_errorf(err, sizeof err, "relay.ini", 3, "s", NULL, "r");
    cr_expect_str_eq(err, "relay.ini:3: [s] r");
    config_errorf(err, 10, "relay.ini", 3, "s", NULL, "long reason");
    cr_expect_str_eq(err, "relay.ini");
    cr_expect_eq(config_errorf(NULL, 0, "x", 1, NULL, NULL, "r"), -1);
}

Test(config_quote, escapes_and_cuts)
{
    char q[CONFIG_ERR_LEN], long_value[200];

    cr_expect_str_eq(config_quote(q, sizeof q, "plain"), "\"plain\"");
    cr_expect_str_eq(config_quote(q, sizeof q, "a\"b\\c\x1b"), "\"a\\\"b\\\\c\\x1b\"");
    memset(long_value, 'v', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    config_quote(q, sizeof q, long_value);
    cr_expect_eq(strlen(q), 1 + 80 + 3 + 1);
    cr_expect_str_eq(q + 81, "...\"");
}

Test(config_parse_int, strict_decimal)
{
    long long v = 0;

    cr_expect_eq(config_parse_int("42", &v), 0);
    cr_expect_eq(v, 42);
    cr_expect_eq(config_parse_int("-7", &v), 0);
    cr_expect_eq(v, -7);
    cr_expect_eq(config_parse_int("+3", &v), 0);
    cr_expect_eq(v, 3);
    cr_expect_eq(config_parse_int("9223372036854775807", &v), 0);
    cr_expect_eq(v, INT64_MAX);
    cr_expect_eq(config_parse_int("9223372036854775808", &v), -ERANGE);
    cr_expect_eq(config_parse_int("-9223372036854775809", &v), -ERANGE);
    const char *bad[] = {"", " 1", "1 ", "0x10", "1e3", "ten", "-", "+", "1.5", NULL};
    for (size_t i = 0; bad[i]; i++)
        cr_expect_eq(config_parse_int(bad[i], &v), -EINVAL, "\"%s\"", bad[i]);
    cr_expect_eq(config_parse_int(NULL, &v), -EINVAL);
}

Test(config_parse_bool, words)
{
    const char *yes[] = {"true", "yes", "on", "1", "TRUE", "Yes"};
    const char *no[] = {"false", "no", "off", "0", "OFF"};
    int v;

    for (size_t i = 0; i < N_ELEMS(yes); i++) {
        v = -1;
        cr_expect_eq(config_parse_bool(yes[i], &v), 0);
        cr_expect_eq(v, 1, "%s", yes[i]);
    }
    for (size_t i = 0; i < N_ELEMS(no); i++) {
        v = -1;
        cr_expect_eq(config_parse_bool(no[i], &v), 0);
        cr_expect_eq(v, 0, "%s", no[i]);
    }
    cr_expect_eq(config_parse_bool("2", &v), -EINVAL);
    cr_expect_eq(config_parse_bool("", &v), -EINVAL);
    cr_expect_eq(config_parse_bool("y", &v), -EINVAL);
}

/* ------------------------------------------------------------- validate */

static const aero_config_key test_keys[] = {
    {.name = "count", .type = AERO_KEY_INT, .default_value = "5", .min = 1, .max = 10},
    {.name = "flag", .type = AERO_KEY_BOOL, .default_value = "false"},
    {.name = "fsync", .type = AERO_KEY_ENUM, .default_value = "none", .choices = "none|batch"},
    {.name = "path", .type = AERO_KEY_STRING, .default_value = "./data"},
    {.name = "must", .type = AERO_KEY_STRING, .required = 1, .help = "a thing you must set"},
    {.name = "opt", .type = AERO_KEY_STRING},
    {.name = "big", .type = AERO_KEY_INT, .min = INT64_MIN, .max = INT64_MAX},
};
static const struct config_keys test_table = {test_keys, N_ELEMS(test_keys), sizeof(aero_config_key)};

/* Parse `text`, validate its first section against tables. */
static int validate_text(const char *text, const struct config_keys *tables, size_t n,
                         unsigned flags, struct config_file *f, char *err)
{
    cr_assert_eq(config_parse_string("relay.ini", text, f, err, CONFIG_ERR_LEN), 0, "%s", err);
    cr_assert(f->n_sections >= 1);
    return config_validate_section_flags(f, &f->sections[0], tables, n, flags, err,
                                         CONFIG_ERR_LEN);
}

Test(config_validate, errors_have_exact_messages)
{
    static const struct bad_case cases[] = {
        {"bad int", "[sink:archive]\nmust = x\ncount = ten\n",
         "relay.ini:3: [sink:archive] count: invalid value \"ten\" (expected an integer from 1 to 10)"},
        {"empty int", "[sink:archive]\nmust = x\ncount =\n",
         "relay.ini:3: [sink:archive] count: invalid value \"\" (expected an integer from 1 to 10)"},
        {"int junk", "[sink:archive]\nmust = x\ncount = 5x\n",
         "relay.ini:3: [sink:archive] count: invalid value \"5x\" (expected an integer from 1 to 10)"},
        {"int too big", "[sink:archive]\nmust = x\ncount = 11\n",
         "relay.ini:3: [sink:archive] count: value \"11\" out of range (expected 1 to 10)"},
        {"int too small", "[sink:archive]\nmust = x\ncount = 0\n",
         "relay.ini:3: [sink:archive] count: value \"0\" out of range (expected 1 to 10)"},
        {"int overflow", "[sink:archive]\nmust = x\ncount = 99999999999999999999\n",
         "relay.ini:3: [sink:archive] count: value \"99999999999999999999\" out of range (expected 1 to 10)"},
        {"unbounded int", "[sink:archive]\nmust = x\nbig = many\n",
         "relay.ini:3: [sink:archive] big: invalid value \"many\" (expected an integer)"},
        {"bad bool", "[sink:archive]\nmust = x\nflag = maybe\n",
         "relay.ini:3: [sink:archive] flag: invalid value \"maybe\" (expected true | false | yes | no | on | off | 1 | 0)"},
        {"bad enum", "[sink:archive]\nmust = x\nfsync = sometimes\n",
         "relay.ini:3: [sink:archive] fsync: invalid value \"sometimes\" (expected none | batch)"},
        {"enum is case-sensitive", "[sink:archive]\nmust = x\nfsync = Batch\n",
         "relay.ini:3: [sink:archive] fsync: invalid value \"Batch\" (expected none | batch)"},
        {"unknown key", "[sink:archive]\nmust = x\nbogus = 1\n",
         "relay.ini:3: [sink:archive] bogus: unknown key (valid: count, flag, fsync, path, must, opt, big)"},
        {"missing required", "[sink:archive]\ncount = 2\n",
         "relay.ini:1: [sink:archive] must: missing required key (a thing you must set)"},
        {"every bad key, then each missing one", "[sink:archive]\nfsync = x\ncount = y\nz = 1\n",
         "relay.ini:2: [sink:archive] fsync: invalid value \"x\" (expected none | batch)\n"
         "relay.ini:3: [sink:archive] count: invalid value \"y\" (expected an integer from 1 to 10)\n"
         "relay.ini:4: [sink:archive] z: unknown key (valid: count, flag, fsync, path, must, opt, big)\n"
         "relay.ini:1: [sink:archive] must: missing required key (a thing you must set)"},
    };

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        struct config_file f;
        char err[CONFIG_ERR_LEN] = "";
        cr_expect_eq(validate_text(cases[i].text, &test_table, 1, 0, &f, err), -1, "case %s",
                     cases[i].name);
        cr_expect_str_eq(err, cases[i].expect, "case %s", cases[i].name);
        config_free(&f);
    }
}

Test(config_validate, fills_defaults_with_line_zero)
{
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "";
    const struct config_section *s;

    cr_assert_eq(validate_text("[x]\nmust = yes\nflag = on\ncount = 7\n", &test_table, 1, 0, &f,
                               err),
                 0, "%s", err);
    s = &f.sections[0];
    cr_expect_str_eq(config_get(s, "count"), "7");
    cr_expect_eq(config_get_kv(s, "count")->line, 4);
    cr_expect_eq(config_get_int(s, "count", -1), 7);
    cr_expect_eq(config_get_bool(s, "flag", -1), 1);
    cr_expect_str_eq(config_get(s, "fsync"), "none");
    cr_expect_eq(config_get_kv(s, "fsync")->line, 0);
    cr_expect_str_eq(config_get(s, "path"), "./data");
    cr_expect_eq(config_get_kv(s, "path")->line, 0);
    cr_expect_null(config_get(s, "opt"), "no default, not set: no value");
    cr_expect_eq(config_get_int(s, "opt", -1), -1);
    cr_expect_eq(config_get_bool(s, "path", 5), 5, "not a bool: the fallback");
    cr_expect_eq(s->n_kv, 5);

    /* validating again changes nothing (plugin sections are validated twice) */
    cr_expect_eq(config_validate_section(&f, &f.sections[0], &test_table, 1, err, sizeof err), 0,
                 "%s", err);
    cr_expect_eq(f.sections[0].n_kv, 5);
    config_free(&f);
}

Test(config_validate, allow_unknown_still_checks_declared_keys)
{
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "";

    cr_expect_eq(validate_text("[x]\nmust = 1\nbogus = 1\n", &test_table, 1, CONFIG_ALLOW_UNKNOWN,
                               &f, err),
                 0, "%s", err);
    cr_expect_str_eq(config_get(&f.sections[0], "bogus"), "1");
    cr_expect_str_eq(config_get(&f.sections[0], "count"), "5");
    config_free(&f);
    cr_expect_eq(validate_text("[x]\nmust = 1\nbogus = 1\ncount = 0\n", &test_table, 1,
                               CONFIG_ALLOW_UNKNOWN, &f, err),
                 -1);
    cr_expect_str_eq(err, "relay.ini:4: [x] count: value \"0\" out of range (expected 1 to 10)");
    config_free(&f);
}

Test(config_validate, union_of_tables_lists_each_name_once)
{
    static const aero_config_key core[] = {
        {.name = "plugin", .type = AERO_KEY_STRING, .required = 1},
        {.name = "queue", .type = AERO_KEY_INT, .default_value = "4096", .min = 1, .max = 100},
    };
    static const aero_config_key plugin[] = {
        {.name = "queue", .type = AERO_KEY_STRING, .default_value = "ignored"},
        {.name = "path", .type = AERO_KEY_STRING, .default_value = "./data"},
    };
    const struct config_keys tables[] = {{core, 2, sizeof(aero_config_key)},
                                         {plugin, 2, sizeof(aero_config_key)}};
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "";

    cr_expect_eq(validate_text("[sink:a]\nplugin = p\npth = x\n", tables, 2, 0, &f, err), -1);
    cr_expect_str_eq(err, "relay.ini:3: [sink:a] pth: unknown key (valid: plugin, queue, path)");
    config_free(&f);
    /* the first declaration of a name wins: core's INT range applies */
    cr_expect_eq(validate_text("[sink:a]\nplugin = p\nqueue = abc\n", tables, 2, 0, &f, err), -1);
    cr_expect_str_eq(err, "relay.ini:3: [sink:a] queue: invalid value \"abc\" (expected an integer from 1 to 100)");
    config_free(&f);
    cr_expect_eq(validate_text("[sink:a]\nplugin = p\n", tables, 2, 0, &f, err), 0, "%s", err);
    cr_expect_str_eq(config_get(&f.sections[0], "queue"), "4096");
    cr_expect_str_eq(config_get(&f.sections[0], "path"), "./data");
    config_free(&f);
}

/* A plugin's own default for a common key replaces the core's default,
 * never a value the file set. */
Test(config_validate, a_plugin_table_may_prefer_its_own_default)
{
    static const aero_config_key core[] = {
        {.name = "queue", .type = AERO_KEY_INT, .default_value = "4096", .min = 1, .max = 10000},
    };
    static const aero_config_key plugin[] = {
        {.name = "queue", .type = AERO_KEY_INT, .default_value = "1000", .min = 1, .max = 10000},
        {.name = "path", .type = AERO_KEY_STRING, .default_value = "./data"},
    };
    const struct config_keys tables[] = {{core, 1, sizeof(aero_config_key)},
                                         {plugin, 2, sizeof(aero_config_key)}};
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "";
    cr_assert_eq(validate_text("[sink:a]\n", tables, 2, 0, &f, err), 0, "%s", err);
    cr_expect_str_eq(config_get(&f.sections[0], "queue"), "4096");
    cr_expect_eq(config_prefer_defaults(&f.sections[0], &tables[1]), 0);
    cr_expect_str_eq(config_get(&f.sections[0], "queue"), "1000");
    cr_expect_str_eq(config_get(&f.sections[0], "path"), "./data");
    config_free(&f);
    cr_assert_eq(validate_text("[sink:a]\nqueue = 4096\n", tables, 2, 0, &f, err), 0, "%s", err);
    cr_expect_eq(config_prefer_defaults(&f.sections[0], &tables[1]), 0);
    cr_expect_str_eq(config_get(&f.sections[0], "queue"), "4096", "the file's value was replaced");
    config_free(&f);
}

Test(config_validate, no_keys_declared)
{
    const struct config_keys none = {NULL, 0, sizeof(aero_config_key)};
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "";

    cr_expect_eq(validate_text("[route]\nx = 1\n", &none, 1, 0, &f, err), -1);
    cr_expect_str_eq(err, "relay.ini:2: [route] x: unknown key (this section takes no keys)");
    config_free(&f);
    cr_expect_eq(validate_text("[route]\n", &none, 1, 0, &f, err), 0);
    config_free(&f);
}

/* ------------------------------------------------- other ABI minors' tables */

/* Copy len bytes so that they end exactly where an inaccessible page
 * starts: reading one byte past them faults. */
static void *guarded_copy(const void *src, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t span = (len + page - 1) / page * page;
    char *m = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    cr_assert(m != MAP_FAILED);
    cr_assert_eq(mprotect(m + span, page, PROT_NONE), 0);
    memcpy(m + span - len, src, len);
    return m + span - len;
}

/* An aero_config_key as an imagined older minor had it: no choices, no
 * bounds, no `required`. */
struct old_key {
    const char *name;
    aero_key_type type;
    const char *default_value;
    const char *help;
};

Test(config_validate, older_smaller_key_table_read_within_key_size)
{
    static const struct old_key old[] = {
        {"path", AERO_KEY_STRING, "./data", "where"},
        {"level", AERO_KEY_ENUM, "x", "no choices known: anything goes"},
        {"count", AERO_KEY_INT, "3", "no bounds known"},
    };
    struct config_keys t = {guarded_copy(old, sizeof old), N_ELEMS(old), sizeof(struct old_key)};
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "";

    cr_assert_lt(sizeof(struct old_key), sizeof(aero_config_key));
    cr_expect_eq(validate_text("[sink:a]\ncount = many\n", &t, 1, 0, &f, err), -1);
    cr_expect_str_eq(err, "relay.ini:2: [sink:a] count: invalid value \"many\" (expected an integer)");
    config_free(&f);
    cr_expect_eq(validate_text("[sink:a]\nnope = 1\n", &t, 1, 0, &f, err), -1);
    cr_expect_str_eq(err, "relay.ini:2: [sink:a] nope: unknown key (valid: path, level, count)");
    config_free(&f);
    cr_expect_eq(validate_text("[sink:a]\nlevel = whatever\ncount = -99999999999\n", &t, 1, 0, &f,
                               err),
                 0, "%s", err);
    cr_expect_str_eq(config_get(&f.sections[0], "path"), "./data");
    cr_expect_eq(config_get_kv(&f.sections[0], "path")->line, 0);
    config_free(&f);
}

Test(config_validate, key_size_cutting_through_a_field)
{
    static const aero_config_key keys[] = {
        {.name = "n", .type = AERO_KEY_INT, .default_value = "1", .min = 1, .max = 10, .required = 1},
    };
    /* covers min but not max (nor required) */
    size_t size = offsetof(aero_config_key, max) + 3;
    struct config_keys t = {guarded_copy(keys, size), 1, size};
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "";

    cr_expect_eq(validate_text("[s]\nn = 0\n", &t, 1, 0, &f, err), -1);
    cr_expect_str_eq(err, "relay.ini:2: [s] n: value \"0\" out of range (expected 1 to 9223372036854775807)");
    config_free(&f);
    cr_expect_eq(validate_text("[s]\nn = 1000\n", &t, 1, 0, &f, err), 0, "%s", err);
    config_free(&f);
    cr_expect_eq(validate_text("[s]\n", &t, 1, 0, &f, err), 0, "required is beyond key_size: %s", err);
    config_free(&f);

    /* too small to hold even a name: nothing is declared */
    t.key_size = 4;
    t.keys = guarded_copy(keys, 4);
    cr_expect_eq(validate_text("[s]\nn = 1\n", &t, 1, 0, &f, err), -1);
    cr_expect_str_eq(err, "relay.ini:2: [s] n: unknown key (this section takes no keys)");
    config_free(&f);
}

/* A newer minor appended fields: entries are read with its larger stride. */
struct new_key {
    aero_config_key base;
    const char *added_in_a_later_minor;
    int64_t another;
};

Test(config_validate, newer_larger_key_table_read_with_its_stride)
{
    static const struct new_key newer[] = {
        {{.name = "a", .type = AERO_KEY_INT, .default_value = "1", .min = 0, .max = 5}, "x", 1},
        {{.name = "b", .type = AERO_KEY_ENUM, .default_value = "p", .choices = "p|q"}, "y", 2},
    };
    struct config_keys t = {(const aero_config_key *)guarded_copy(newer, sizeof newer),
                            N_ELEMS(newer), sizeof(struct new_key)};
    struct config_file f;
    char err[CONFIG_ERR_LEN] = "";

    cr_expect_eq(validate_text("[s]\nb = r\n", &t, 1, 0, &f, err), -1);
    cr_expect_str_eq(err, "relay.ini:2: [s] b: invalid value \"r\" (expected p | q)");
    config_free(&f);
    cr_expect_eq(validate_text("[s]\nb = q\n", &t, 1, 0, &f, err), 0, "%s", err);
    cr_expect_str_eq(config_get(&f.sections[0], "a"), "1");
    config_free(&f);
}

/* Every error goes in one buffer, a line each; a full buffer says so in
 * its last line rather than cut one in the middle. */
Test(config_errors, lines_are_added_whole_and_a_full_list_says_it_is_cut)
{
    char err[96] = "";
    config_error_add(err, sizeof err, "a.ini:1: one");
    config_error_add(err, sizeof err, "a.ini:2: two\na.ini:3: three");
    cr_assert_str_eq(err, "a.ini:1: one\na.ini:2: two\na.ini:3: three");
    config_error_add(err, sizeof err, "a.ini:4: a line too long to fit in what is left");
    cr_assert_str_eq(err, "a.ini:1: one\na.ini:2: two\na.ini:3: three\n"
                          "... (more errors: this list is cut)");
    config_error_add(err, sizeof err, "a.ini:5: x");
    cr_assert_str_eq(err, "a.ini:1: one\na.ini:2: two\na.ini:3: three\n"
                          "... (more errors: this list is cut)", "nothing after the cut");
    char small[48] = "";
    config_error_add(small, sizeof small, "a.ini:1: a first line that does not fit at all");
    cr_assert_str_eq(small, "... (more errors: this list is cut)");
}

/* A reload keeps a sink whose section is equal: keys and values, in any
 * order and on any line; a value or a key more or less makes it differ. */
Test(config_sections, equal_ignores_order_and_lines_not_values)
{
    static const char text[] =
        "[sink:a]\nplugin = sink-file\npath = /x\n\n"
        "[sink:b]\n\npath = /x\nplugin = sink-file\n\n"
        "[sink:c]\nplugin = sink-file\npath = /y\n\n"
        "[sink:d]\nplugin = sink-file\npath = /x\nfsync = batch\n";
    struct config_file f;
    char err[CONFIG_ERR_LEN];
    cr_assert_eq(config_parse_string("relay.ini", text, &f, err, sizeof err), 0, "%s", err);
    struct config_section *a = config_find(&f, "sink:a"), *b = config_find(&f, "sink:b");
    struct config_section *c = config_find(&f, "sink:c"), *d = config_find(&f, "sink:d");
    /* Same keys under another name: a different instance. */
    cr_expect_not(config_section_equal(a, b));
    free(b->name);
    b->name = strdup("sink:a");
    cr_expect(config_section_equal(a, b));
    cr_expect(config_section_equal(b, a));
    c->name[5] = 'a';
    cr_expect_not(config_section_equal(a, c), "another value");
    d->name[5] = 'a';
    cr_expect_not(config_section_equal(a, d), "a key more");
    cr_expect_not(config_section_equal(d, a), "a key less");
    config_free(&f);
}
