/*
 * agent_mappings.h - [control] agent_mappings_file (SPEC.md section 10):
 * lines "<agent_id> <operator_id> <aircraft_id>", '#' comments, giving
 * the envelope's operator_id / aircraft_id. Loaded once at start-up (main
 * thread), read-only afterwards: lookups from any thread.
 */
#ifndef AERO_AGENT_MAPPINGS_H
#define AERO_AGENT_MAPPINGS_H

#include <stddef.h>

struct agent_mappings;

/* Parse `path` (a regular file, not writable by others). Returns 0, or -1
 * with "<path>:<line>: <what>" in err. */
int agent_mappings_load(const char *path, struct agent_mappings **out, char *err, size_t errlen);
void agent_mappings_free(struct agent_mappings *m);

/* A reload: m takes from's mappings; the ones it had stay allocated (a
 * stream may hold their strings) until agent_mappings_free(m). */
void agent_mappings_adopt(struct agent_mappings *m, struct agent_mappings *from);

/* Agents mapped now. */
size_t agent_mappings_count(struct agent_mappings *m);

/* The agent's operator and aircraft ids, or 0 with both NULL. */
int agent_mappings_find(const struct agent_mappings *m, const char *agent_id,
                        const char **operator_id, const char **aircraft_id);

#endif
