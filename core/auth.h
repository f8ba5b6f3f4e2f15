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

/* Why a key was refused: the reason label of
 * aero_relay_auth_failures_total (docs/operations.md). A fixed set. */
enum auth_refusal {
    AUTH_REFUSED_MISSING = 0,     /* no authorization metadata (UNAUTHENTICATED) */
    AUTH_REFUSED_MALFORMED = 1,   /* not "Bearer <key>" (UNAUTHENTICATED) */
    AUTH_REFUSED_UNKNOWN_KEY = 2, /* no such key (UNAUTHENTICATED) */
    AUTH_REFUSED_NOT_COVERED = 3, /* a known key, not for this agent (PERMISSION_DENIED) */
    AUTH_REFUSED_NOT_ADMIN = 4,   /* a known key without admin (PERMISSION_DENIED) */
    AUTH_REFUSALS = 5
};

/* "missing", "malformed", "unknown_key", "not_covered", "not_admin". */
const char *auth_refusal_name(enum auth_refusal r);

/*
 * Load a keys file: lines "<key> <agents> [admin]" where <agents> is "*",
 * a glob ("drone-*") or "-" (no agent: admin only); '#' starts a comment.
 * The file must not be readable or writable by others, nor writable by its
 * group (whoever can write it can grant keys). Errors are one line:
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
/* Either check (agent_id NULL: the admin one), with why it refused in *why
 * when the result is not AUTH_OK. */
enum auth_result auth_check(const struct auth *a, const char *authorization, size_t len,
                            const char *agent_id, enum auth_refusal *why);

#endif
