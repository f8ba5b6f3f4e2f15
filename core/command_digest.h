/*
 * command_digest.h - the canonical command digest and mission-plan digest
 * of SPEC.md section 12.3 (canonical v1), with the validation that comes
 * before them, and the per-item mission rules of section 14.3 rule 4 that
 * DeployMission shares. Pure functions of the decoded messages: no state,
 * no locks, any thread. Nothing here logs or knows about gRPC.
 */
#ifndef AERO_COMMAND_DIGEST_H
#define AERO_COMMAND_DIGEST_H

#include "aeroarc/agent/v1/agent.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COMMAND_DIGEST_HEX_LEN 64

/*
 * SPEC 12.3 validation, then the digest as 64 lowercase hex chars + NUL in
 * hex[65]. 0: valid. -1: invalid (hex[0] is then NUL); *why (may be NULL) =
 * a static English text naming the failed rule (for logs and tests, never
 * sent to clients). Comparing the result with c->command_digest, and the
 * other identity checks of 12.2 rule 4, are the caller's. An allocation
 * failure inside libcrypto also returns -1, with its own text.
 */
int command_digest_durable(const Aeroarc__Agent__V1__DurableCommand *c, char hex[65],
                           const char **why);

/* The plan rules of 12.3 (no unknown fields, schema_version 1, 1 to 200
 * items, the item rules with the int32 altitude range), then the plan
 * digest. Returns and fills as command_digest_durable. */
int command_digest_plan(const Aeroarc__Agent__V1__MissionPlan *p, char hex[65], const char **why);

/* Canonical bytes (malloc'ed, caller frees; NULL on OOM) without
 * validation: for tests and the layout check. Absent sub-messages encode
 * as their zero values. */
uint8_t *command_digest_canonical(const Aeroarc__Agent__V1__DurableCommand *c, size_t *len);
uint8_t *command_digest_plan_canonical(const Aeroarc__Agent__V1__MissionPlan *p, size_t *len);

/* Valid UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
bool command_digest_utf8(const char *s, size_t len);

/*
 * SPEC 14.3 rule 4, per item, shared by DeployMission (issue 22) and the
 * 12.3 plan rules: one implementation with two callers. Writes the first
 * failing 14.3 item text ("mission item %d ...") into text (cap bytes,
 * truncated if short) and returns -1, or returns 0. `deploy_range`: true =
 * 14.3's altitude range p in [-8388608, 8388607]; false = 12.3's int32
 * range (-2147483648 <= p < 2147483648 compared as exact values, 12.7
 * item 7). Checks only the items: schema_version and the item count are
 * the caller's (their 14.3 texts come before these). A NULL plan has no
 * items.
 */
int command_digest_plan_items(const Aeroarc__Agent__V1__MissionPlan *p, bool deploy_range,
                              char *text, size_t cap);

/*
 * SPEC 14.3 in order, for DeployMission: rules 1-3, the items (rule 4,
 * command_digest_plan_items with the deploy range) and the plan digest
 * against binding.mission_digest (rule 5). 0: valid. -1: the first
 * failing check's text (the one sent to the caller) in text (cap bytes).
 */
int command_digest_deploy_check(const Aeroarc__Agent__V1__DeployMissionCommand *d, char *text,
                                size_t cap);

/*
 * SPEC 14.2 rule 4 (read with 14.6 reading 7), for a command that passed
 * command_digest_deploy_check: the agent's mapping as stored (NULL: no
 * entry) against the binding. NULL: it matches; else the text the caller
 * sends with FAILED_PRECONDITION. Blank = empty after the rule-2 trim;
 * the comparison is byte-exact.
 */
const char *command_digest_deploy_target(const Aeroarc__Agent__V1__MissionBinding *b,
                                         const char *operator_id, const char *aircraft_id);

/* s (len bytes, valid UTF-8) without leading and trailing white space as
 * Go's strings.TrimSpace sees it (ASCII \t\n\v\f\r and space, U+0085,
 * U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000):
 * *start and *n are the kept bytes. */
void command_digest_trim_space(const char *s, size_t len, size_t *start, size_t *n);

#endif
