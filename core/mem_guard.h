/*
 * mem_guard.h - keeps the relay's resident memory under [relay]
 * memory_limit_mb. A thread samples VmRSS (/proc/self/statm) every
 * MEM_GUARD_PERIOD_MS; above the high-water mark it trims the heap, and
 * while still above it sheds the heaviest client connection (one each
 * MEM_GUARD_ACT_MS, conn_guard_shed_heaviest: counted reason="memory_limit", logged
 * at most once a second), refuses new calls RESOURCE_EXHAUSTED and reports
 * itself over (main.c turns /readyz 503) until RSS is back under the
 * low-water mark. Shedding a connection loses only its unacked frames:
 * acked ones are in the sinks already, and agents resend the rest.
 */
#ifndef AERO_MEM_GUARD_H
#define AERO_MEM_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mem_guard;
struct conn_guard;

/* Sampling period: a flood grows RSS by up to ~80 MB in 100 ms (measured,
 * 20,000 reset streams on one connection), so a slower look overshoots. */
#define MEM_GUARD_PERIOD_MS 25
/* After a shed, the next no sooner than this unless RSS grew meanwhile:
 * one connection per look would empty a relay legitimately at its limit
 * at 40 agents a second. */
#define MEM_GUARD_ACT_MS 100
/* With nothing to shed, retry at the next look this many times (100 ms). */
#define MEM_GUARD_QUICK_TRIES 4
/* Act above this share of the limit, stand down below the low one (%). */
#define MEM_GUARD_HIGH_PCT 75
#define MEM_GUARD_LOW_PCT 60

/*
 * Start the watchdog thread for limit_mb (> 0) over `guard` (the gRPC
 * server's, borrowed: it must outlive mem_guard_stop). NULL when the
 * thread cannot start (logged; the relay runs unguarded). Main thread.
 */
struct mem_guard *mem_guard_start(int64_t limit_mb, struct conn_guard *guard);
/* Stop and join the thread, clear the guard's refusal, free. NULL: no-op. */
void mem_guard_stop(struct mem_guard *g);

/* Over the high-water mark (and not yet back under the low one); the
 * resident set last sampled, KiB, into *rss_kb. Any thread. */
bool mem_guard_over(const struct mem_guard *g, long *rss_kb);

#endif
