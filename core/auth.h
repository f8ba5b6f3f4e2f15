/*
 * auth.h - [auth] mode = bearer: the keys file and the checks every RPC
 * makes (SPEC.md section 7). Keys are kept only as SHA-256 digests and
 * compared in constant time; no function here logs a key. Loaded once on
 * the main thread; checks are read-only and safe from any thread.
 */
#ifndef AERO_AUTH_H
#define AERO_AUTH_H

#include <stddef.h>

struct auth;

enum auth_result {
    AUTH_OK = 0,
    AUTH_UNAUTHENTICATED = 1,    /* no, malformed or unknown key */
    AUTH_PERMISSION_DENIED = 2   /* a known key that does not cover this */
};

/*
 * Load a keys file: lines "<key> <agents> [admin]" where <agents> is "*",
 * a glob ("drone-*") or "-" (no agent: admin only); '#' starts a comment.
 * The file must not be readable or writable by others. Errors are one line:
 * "keys.txt:3: <reason>". Returns 0 or -1.
 */
int auth_load(const char *path, struct auth **out, char *err, size_t errlen);
/* The same from text (tests, fuzzing); `path` only names it in messages. */
int auth_parse_string(const char *path, const char *text, struct auth **out, char *err,
                      size_t errlen);
void auth_free(struct auth *a);
size_t auth_key_count(const struct auth *a);

/*
 * `authorization` is the request's metadata value (not NUL-terminated,
 * may be NULL): "Bearer <key>". agent_check: the key must cover agent_id;
 * admin_check: the key must carry "admin".
 */
enum auth_result auth_check_agent(const struct auth *a, const char *authorization, size_t len,
                                  const char *agent_id);
enum auth_result auth_check_admin(const struct auth *a, const char *authorization, size_t len);

#endif
