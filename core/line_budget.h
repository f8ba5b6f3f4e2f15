/*
 * line_budget.h - at most LINE_BUDGET lines in any one second, however
 * they bunch: a sliding window over the times the last LINE_BUDGET lines
 * went out. (Counting per whole second of a clock lets LINE_BUDGET lines
 * end one such second and LINE_BUDGET more begin the next: twice the
 * budget within one second of the log's stamps.) Not locked: its owner
 * serializes the calls.
 */
#ifndef AERO_LINE_BUDGET_H
#define AERO_LINE_BUDGET_H

#include <stdbool.h>
#include <stdint.h>

#define LINE_BUDGET 20

struct line_budget {
    int64_t sent_ns[LINE_BUDGET]; /* ring: when the last lines went out */
    unsigned next;                /* the oldest of them, once all are used */
    unsigned used;                /* how many of sent_ns hold a time */
};

/* Whether a line may go out at `now_ns` (any monotonic nanoseconds). */
bool line_budget_room(const struct line_budget *b, int64_t now_ns);

/* Records that a line went out at `at_ns`. Read the clock after writing
 * the line, so the stamps the line carries, not only the decisions, are a
 * second apart. */
void line_budget_spend(struct line_budget *b, int64_t at_ns);

#endif
