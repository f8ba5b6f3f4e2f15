/*
 * test_line_budget.c - at most LINE_BUDGET lines in any second
 * (core/line_budget.c), on a clock the test sets.
 */
#include "line_budget.h"

#include <criterion/criterion.h>

#define MS 1000000LL

/* Offers a line at `now`; spends the budget when it goes out. */
static bool offer(struct line_budget *b, int64_t now)
{
    if (!line_budget_room(b, now))
        return false;
    line_budget_spend(b, now);
    return true;
}

/* The bunch that broke the old per-whole-second count: 20 lines just before
 * a second of the clock turns, 20 more just after. Only the first 20 go
 * out; the next goes out a second after the first did. */
Test(line_budget, a_burst_across_a_second_boundary_gets_the_budget_once)
{
    struct line_budget b = {0};
    int out = 0;
    for (int i = 0; i < 20; i++)
        out += offer(&b, 5950 * MS + i * MS);
    cr_assert_eq(out, 20);
    for (int i = 0; i < 20; i++)
        cr_assert_not(offer(&b, 6050 * MS + i * MS), "line %d after the turn went out", i);
    cr_assert_not(offer(&b, 6949 * MS), "a line 999 ms after the first went out");
    cr_assert(offer(&b, 6950 * MS), "no line a second after the first");
    cr_assert_not(offer(&b, 6950 * MS + MS / 2), "the second of the burst had not aged");
    cr_assert(offer(&b, 6951 * MS));
}

/* A flood of a line every millisecond for ten seconds: no window of one
 * second holds more than 20, and the budget is used (about 20 a second). */
Test(line_budget, a_flood_keeps_every_second_at_the_budget)
{
    struct line_budget b = {0};
    static int64_t sent[1000];
    int n = 0;
    for (int64_t t = 123 * MS; t < 10123 * MS; t += MS)
        if (offer(&b, t)) {
            cr_assert_lt(n, 1000);
            sent[n++] = t;
        }
    for (int i = LINE_BUDGET; i < n; i++)
        cr_assert_geq(sent[i] - sent[i - LINE_BUDGET], 1000 * MS,
                      "lines %d and %d within a second", i - LINE_BUDGET, i);
    cr_assert_geq(n, 200, "only %d lines in ten seconds", n);
    cr_assert_leq(n, 200, "%d lines in ten seconds", n);
}

/* A quiet start: the first lines need no history (the clock may read any
 * value, even a small one). */
Test(line_budget, the_first_lines_go_out_at_any_clock)
{
    struct line_budget b = {0};
    for (int i = 0; i < LINE_BUDGET; i++)
        cr_assert(offer(&b, i), "line %d", i);
    cr_assert_not(offer(&b, LINE_BUDGET));
}
