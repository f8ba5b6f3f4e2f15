/*
 * fuzz_keys_file.c - libFuzzer target for the [auth] keys file parser
 * (core/auth.c, auth_parse_string) and the checks every RPC makes. Whatever
 * the bytes: no crash or leak, an error is one non-empty line naming the
 * file; when the text is accepted, every key it lists authenticates (as
 * "Bearer <key>", any case of the scheme) with the rights its line gives,
 * and a header built from the input's bytes is checked without harm.
 */
#include "auth.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* Every line of an accepted file, tokenised as the keys file format says:
 * '#' starts a comment, fields split on blanks, "<key> <agents> [admin]". */
static void check_every_key(const struct auth *a, const char *text)
{
    char *copy = strdup(text);
    check(copy != NULL);
    size_t keys = 0;
    for (char *line = copy, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *save = NULL, *key = strtok_r(line, " \t\r", &save);
        if (!key)
            continue;
        char *agents = strtok_r(NULL, " \t\r", &save);
        bool admin = strtok_r(NULL, " \t\r", &save) != NULL;
        check(agents != NULL);
        keys++;
        char hdr[600];
        int n = snprintf(hdr, sizeof(hdr), "%s %s", keys % 2 ? "Bearer" : "bEARER", key);
        check(n > 0 && (size_t)n < sizeof(hdr));
        check(auth_check_admin(a, hdr, (size_t)n) == (admin ? AUTH_OK : AUTH_PERMISSION_DENIED));
        enum auth_result r = auth_check_agent(a, hdr, (size_t)n, "drone-1");
        if (strcmp(agents, "*") == 0)
            check(r == AUTH_OK);
        else if (strcmp(agents, "-") == 0)
            check(r == AUTH_PERMISSION_DENIED);
        else
            check(r == AUTH_OK || r == AUTH_PERMISSION_DENIED);
    }
    check(keys == auth_key_count(a));
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    char err[512] = "";
    struct auth *a = NULL;

    check(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    if (auth_parse_string("keys.txt", text, &a, err, sizeof(err)) < 0) {
        check(a == NULL && err[0] != '\0' && strchr(err, '\n') == NULL);
        check(strncmp(err, "keys.txt", 8) == 0);
        free(text);
        return 0;
    }
    check(a != NULL && auth_key_count(a) > 0);
    check_every_key(a, text);
    /* Arbitrary header bytes (not NUL-terminated, any length): no key is
     * shorter than 16, so a header of 22 bytes or less never passes. */
    check(auth_check_agent(a, (const char *)data, size, "drone-1") != AUTH_OK || size > 22);
    auth_check_admin(a, (const char *)data, size);
    auth_check_agent(a, NULL, 0, "drone-1");
    auth_free(a);
    free(text);
    return 0;
}
