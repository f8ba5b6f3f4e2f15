/*
 * line_budget.c - at most LINE_BUDGET lines in any second (line_budget.h).
 */
#include "line_budget.h"

#define SECOND_NS 1000000000

bool line_budget_room(const struct line_budget *b, int64_t now_ns)
{
    return b->used < LINE_BUDGET || now_ns - b->sent_ns[b->next] >= SECOND_NS;
}

void line_budget_spend(struct line_budget *b, int64_t at_ns)
{
    b->sent_ns[b->next] = at_ns;
    b->next = (b->next + 1) % LINE_BUDGET;
    if (b->used < LINE_BUDGET)
        b->used++;
}
