/*
 * test_auth.c - the keys file and the bearer checks: which key covers which
 * agent, admin-only keys, the reason of each refusal, every parse error, and
 * the file permission rule.
 */
#include "auth.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char err[512];

static const char *keys_text =
    "# fleet keys\n"
    "fleet-key-0123456789 drone-*\n"
    "\n"
    "one-drone-key-012345 drone-7   # just this one\n"
    "admin-key-0123456789 - admin\n"
    "all-agents-key-01234 * admin\n";

static struct auth *load(void)
{
    struct auth *a = NULL;
    cr_assert_eq(auth_parse_string("keys.txt", keys_text, &a, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(auth_key_count(a), 4);
    return a;
}

static enum auth_result agent(struct auth *a, const char *hdr, const char *id)
{
    return auth_check_agent(a, hdr, hdr ? strlen(hdr) : 0, id);
}

Test(auth, keys_cover_the_agents_their_pattern_names)
{
    struct auth *a = load();
    cr_assert_eq(agent(a, "Bearer fleet-key-0123456789", "drone-1"), AUTH_OK);
    cr_assert_eq(agent(a, "Bearer fleet-key-0123456789", "rover-1"), AUTH_PERMISSION_DENIED);
    cr_assert_eq(agent(a, "Bearer one-drone-key-012345", "drone-7"), AUTH_OK);
    cr_assert_eq(agent(a, "Bearer one-drone-key-012345", "drone-8"), AUTH_PERMISSION_DENIED);
    cr_assert_eq(agent(a, "Bearer all-agents-key-01234", "anything:at.all"), AUTH_OK);
    cr_assert_eq(agent(a, "Bearer admin-key-0123456789", "drone-1"), AUTH_PERMISSION_DENIED,
                 "an admin-only key (-) covers no agent");
    auth_free(a);
}

Test(auth, missing_malformed_or_unknown_keys_are_unauthenticated)
{
    struct auth *a = load();
    cr_assert_eq(agent(a, NULL, "drone-1"), AUTH_UNAUTHENTICATED);
    cr_assert_eq(agent(a, "", "drone-1"), AUTH_UNAUTHENTICATED);
    cr_assert_eq(agent(a, "Bearer ", "drone-1"), AUTH_UNAUTHENTICATED);
    cr_assert_eq(agent(a, "Basic fleet-key-0123456789", "drone-1"), AUTH_UNAUTHENTICATED);
    cr_assert_eq(agent(a, "fleet-key-0123456789", "drone-1"), AUTH_UNAUTHENTICATED);
    cr_assert_eq(agent(a, "Bearer fleet-key-012345678", "drone-1"), AUTH_UNAUTHENTICATED,
                 "a prefix of a key is not the key");
    cr_assert_eq(agent(a, "Bearer fleet-key-01234567890", "drone-1"), AUTH_UNAUTHENTICATED);
    cr_assert_eq(agent(a, "bearer fleet-key-0123456789", "drone-1"), AUTH_OK,
                 "the scheme is case-insensitive (RFC 7235)");
    auth_free(a);
}

Test(auth, control_calls_need_an_admin_key)
{
    struct auth *a = load();
    const char *admin = "Bearer admin-key-0123456789", *fleet = "Bearer fleet-key-0123456789";
    cr_assert_eq(auth_check_admin(a, admin, strlen(admin)), AUTH_OK);
    cr_assert_eq(auth_check_admin(a, fleet, strlen(fleet)), AUTH_PERMISSION_DENIED);
    cr_assert_eq(auth_check_admin(a, "Bearer nope-nope-nope-nope", 26), AUTH_UNAUTHENTICATED);
    auth_free(a);
}

/* The reason each refusal is counted under (aero_relay_auth_failures_total). */
static enum auth_refusal why(struct auth *a, const char *hdr, const char *id)
{
    enum auth_refusal r = AUTH_REFUSALS;
    cr_assert_neq(auth_check(a, hdr, hdr ? strlen(hdr) : 0, id, &r), AUTH_OK, "%s", hdr);
    return r;
}

Test(auth, each_refusal_has_one_reason)
{
    struct auth *a = load();
    cr_assert_eq(why(a, NULL, "drone-1"), AUTH_REFUSED_MISSING);
    cr_assert_eq(why(a, "", "drone-1"), AUTH_REFUSED_MISSING);
    cr_assert_eq(why(a, "Bearer ", "drone-1"), AUTH_REFUSED_MALFORMED);
    cr_assert_eq(why(a, "Basic fleet-key-0123456789", "drone-1"), AUTH_REFUSED_MALFORMED);
    cr_assert_eq(why(a, "fleet-key-0123456789", NULL), AUTH_REFUSED_MALFORMED);
    cr_assert_eq(why(a, "Bearer fleet-key-012345678", "drone-1"), AUTH_REFUSED_UNKNOWN_KEY);
    cr_assert_eq(why(a, "Bearer nope-nope-nope-nope", NULL), AUTH_REFUSED_UNKNOWN_KEY);
    cr_assert_eq(why(a, "Bearer fleet-key-0123456789", "rover-1"), AUTH_REFUSED_NOT_COVERED);
    cr_assert_eq(why(a, "Bearer admin-key-0123456789", "drone-1"), AUTH_REFUSED_NOT_COVERED);
    cr_assert_eq(why(a, "Bearer fleet-key-0123456789", NULL), AUTH_REFUSED_NOT_ADMIN);
    const char *names[AUTH_REFUSALS] = {"missing", "malformed", "unknown_key", "not_covered",
                                        "not_admin"};
    for (int i = 0; i < AUTH_REFUSALS; i++)
        cr_assert_str_eq(auth_refusal_name((enum auth_refusal)i), names[i]);
    enum auth_refusal r = AUTH_REFUSALS;
    cr_assert_eq(auth_check(a, "Bearer admin-key-0123456789", 27, NULL, &r), AUTH_OK);
    auth_free(a);
}

Test(auth, each_bad_line_is_reported_with_its_line)
{
    const struct {
        const char *text, *message;
    } cases[] = {
        {"short drone-*\n", "k:1: key too short (at least 16 characters)"},
        {"# c\nlonely-key-0123456789\n", "k:2: expected \"<key> <agents> [admin]\""},
        {"good-key-0123456789a drone/x\n",
         "k:1: agents must be *, - or a glob of agent-id characters (got \"drone/x\")"},
        {"good-key-0123456789a * root\n", "k:1: unknown flag \"root\" (expected admin)"},
        {"good-key-0123456789a * admin extra\n", "k:1: unexpected text after the flag"},
        {"good-key-0123456789a -\n", "k:1: a key for no agent (-) must be admin"},
        {"good-key-0123456789a *\ngood-key-0123456789a drone-1\n", "k:2: duplicate key"},
        {"# nothing but comments\n", "k: no keys: every call would be refused"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct auth *a = (struct auth *)1;
        cr_expect_eq(auth_parse_string("k", cases[i].text, &a, err, sizeof(err)), -1, "case %zu", i);
        cr_expect_null(a);
        cr_expect_str_eq(err, cases[i].message, "case %zu", i);
    }
}

Test(auth, a_keys_file_readable_by_others_or_writable_by_its_group_is_refused)
{
    char path[] = "/tmp/aeroarc-keys-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, keys_text, strlen(keys_text)), (ssize_t)strlen(keys_text));
    close(fd);
    struct auth *a = NULL;
    cr_assert_eq(chmod(path, 0644), 0);
    cr_assert_eq(auth_load(path, &a, err, sizeof(err)), -1);
    char want[256];
    snprintf(want, sizeof(want), "%s: readable or writable by others (mode 644): chmod o-rwx it",
             path);
    cr_assert_str_eq(err, want);
    cr_assert_eq(chmod(path, 0604), 0);
    cr_assert_eq(auth_load(path, &a, err, sizeof(err)), -1, "readable by others, not group");
    cr_assert_eq(chmod(path, 0602), 0);
    cr_assert_eq(auth_load(path, &a, err, sizeof(err)), -1, "writable by others");
    cr_assert_eq(chmod(path, 0660), 0);
    cr_assert_eq(auth_load(path, &a, err, sizeof(err)), -1);
    snprintf(want, sizeof(want),
             "%s: writable by its group (mode 660): anyone in it could add a key; chmod g-w it",
             path);
    cr_assert_str_eq(err, want);
    cr_assert_eq(chmod(path, 0620), 0);
    cr_assert_eq(auth_load(path, &a, err, sizeof(err)), -1, "group-writable, not readable");
    cr_assert_eq(chmod(path, 0640), 0);
    cr_assert_eq(auth_load(path, &a, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(auth_key_count(a), 4);
    auth_free(a);
    unlink(path);
    cr_assert_eq(auth_load(path, &a, err, sizeof(err)), -1);
    cr_assert(strstr(err, "cannot read: No such file or directory"), "%s", err);
}
