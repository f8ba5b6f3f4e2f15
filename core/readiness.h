/*
 * readiness.h - details plugins add to /readyz's body while the relay stays
 * ready (SPEC.md section 3: {"status":"ok","registry":"unavailable"} while
 * route-registry cannot reach its registry), and every sink's and route's
 * state (ok, degraded, failing, with a reason) for /readyz?verbose and a
 * 503 body. Small fixed tables under one mutex: set from plugin threads
 * and main's tick, read by the HTTP thread. Details and states never make
 * the relay unready; readiness_set_unready does.
 */
#ifndef AERO_READINESS_H
#define AERO_READINESS_H

#include <aeroarc/plugin.h>
#include <stdbool.h>
#include <stddef.h>

#define READINESS_MAX 16       /* details at once */
#define READINESS_TEXT_MAX 32  /* bytes of a key or value */

struct readiness;

struct readiness *readiness_create(void);
void readiness_destroy(struct readiness *r);

/* True when `s` may be a key (value: also '-' and '.'): 1-32 of a-z 0-9 _
 * (so the JSON needs no escaping), key not "status". */
int readiness_key_valid(const char *key);
int readiness_value_valid(const char *value);

/*
 * Set `key` to `value` for `owner` (an opaque pointer: one owner cannot
 * clear another's detail), or clear it (value NULL). The newest value of a
 * key wins. Returns 0, -EINVAL (invalid key or value), -EEXIST (another
 * owner holds the key) or -ENOSPC (table full). Any thread.
 */
int readiness_set(struct readiness *r, const void *owner, const char *key, const char *value);

/* Drop every detail of `owner` (its instance is going away). */
void readiness_clear_owner(struct readiness *r, const void *owner);

/*
 * The details as JSON members, each `,"key":"value"` (in table order),
 * into buf[0..cap) (NUL-terminated; whole members only when short). Returns the length written. Any thread.
 */
size_t readiness_render(struct readiness *r, char *buf, size_t cap);

/*
 * A component makes the relay unready ([http] unready_after_s: a sink
 * that refused every frame that long): /readyz answers 503
 * {"status":"not ready","component":"sink:bus","reason":"..."} until it
 * is cleared (component NULL). Text outside printable ASCII, '"' and '\\'
 * becomes '_'. Set by the main thread's tick; any thread reads.
 */
#define READINESS_BODY_MAX 320
void readiness_set_unready(struct readiness *r, const char *component, const char *reason);
/* The 503 body into body[0..cap) and true, or false while ready. */
bool readiness_unready(struct readiness *r, char *body, size_t cap);

/*
 * Components: each sink and route, its state and why. A route's entry is
 * its host's (owner): added at create() as ok, set by the plugin
 * (aero_host.report_state), dropped by readiness_clear_owner. Sinks are
 * replaced all at once by main's tick (their state is what the pipeline
 * saw of their results; a reload may change the set), in relay.ini order.
 * Names are "sink:<name>" / "route:<name>"; reasons are cut at
 * READINESS_REASON_MAX bytes and made plain (see readiness_set_unready).
 */
#define READINESS_COMPONENTS_MAX 64 /* sinks; routes: READINESS_MAX */
#define READINESS_NAME_MAX 80
#define READINESS_REASON_MAX 160
struct readiness_component {
    char name[READINESS_NAME_MAX];
    aero_state state;
    char reason[READINESS_REASON_MAX];
};
/* 0, -EINVAL (state out of range, no name) or -ENOSPC (table full). */
int readiness_route_state(struct readiness *r, const void *owner, const char *name,
                          aero_state state, const char *reason);
/* The sinks' states now (n > READINESS_COMPONENTS_MAX: the rest are
 * counted in the body as "components_omitted"). Main thread. */
void readiness_set_sinks(struct readiness *r, const struct readiness_component *sinks, size_t n);
/* "ok", "degraded" or "failing". */
const char *readiness_state_name(aero_state state);
/*
 * The JSON member listing them, sinks first:
 *   ,"components":{"sink:archive":{"state":"ok"},
 *                  "route:route-redis":{"state":"failing","reason":"..."}}
 * (a reason only when there is one). malloc'd, NULL when out of memory.
 * Any thread.
 */
char *readiness_render_components(struct readiness *r);

#endif
