/*
 * steady_agent.h - a well-behaved agent on a thread of its own, streaming
 * to the relay (its own connection, a window of frames in flight) while a
 * test abuses the relay some other way; the test then checks that every
 * one of its frames was acked OK and that acks kept coming throughout.
 * Also: the relay's resident memory, for "memory stays bounded" checks,
 * and one series of its /metrics.
 */
#ifndef AERO_TEST_STEADY_AGENT_H
#define AERO_TEST_STEADY_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct steady_agent;

/* Register agent_id on target and start streaming. Fails the test on error. */
struct steady_agent *steady_agent_start(const char *target, const char *agent_id);
/* The same with at most `window` frames in flight (1..16): 1 makes each
 * ack's latency the relay's own, for a latency probe. */
struct steady_agent *steady_agent_start_window(const char *target, const char *agent_id,
                                               int window);
/* The same over a channel made with opts (TLS to an edge proxy, say);
 * NULL opts: plaintext, as above. */
struct rc_opts;
struct steady_agent *steady_agent_start_opts(const char *target, const struct rc_opts *opts,
                                             const char *agent_id, int window);
/* The 99th percentile of send-to-ack latency (µs) since the start or the
 * last reset, -1 with no ack; reset: start afresh. Not exact across a
 * reset racing an ack: for measurement, not for assertions. */
long long steady_agent_p99_us(struct steady_agent *a, bool reset);
/* OK acks so far (any thread). */
long steady_agent_acked(struct steady_agent *a);
/* The longest wait between two consecutive acks (µs) since the start or
 * the last reset; reset: start measuring afresh from now. */
long long steady_agent_max_gap_us(struct steady_agent *a, bool reset);
/* Wait until at least `more` further OK acks arrived (fails the test after
 * timeout_ms): proof the agent is still being served right now. */
void steady_agent_expect_progress(struct steady_agent *a, long more, int timeout_ms);
/* The same without asserting: whether they came in time. */
bool steady_agent_wait_progress(struct steady_agent *a, long more, int timeout_ms);
/* Half-close, drain, join; fails the test unless every ack was OK, none
 * went missing and the stream ended with OK. Returns how many frames it
 * sent: seq 1 to that, each acked OK. */
long steady_agent_stop(struct steady_agent *a);
/* The same without asserting: false with what went wrong in problem
 * (for measurements, and for teardown that must go on to stop the relay). */
bool steady_agent_finish(struct steady_agent *a, char *problem, size_t cap);

/* VmRSS of pid in KiB (fails the test if unreadable). */
long proc_rss_kb(pid_t pid);
/* The highest VmRSS pid has had (VmHWM): a peak no sampling can miss. */
long proc_peak_rss_kb(pid_t pid);

struct relay_proc;
/* Before relay_start: make the relay's RSS meaningful when it is an ASan
 * build (the sanitizer build of the suite). ASan keeps freed memory in a
 * 256 MB quarantine, so RSS grows with allocations, not with what is held;
 * a small quarantine keeps use-after-free detection for recent frees. No
 * effect on a normal build. */
void rss_measurable(struct relay_proc *r);

/* GET /metrics from 127.0.0.1:http_port and return the value of the first
 * sample whose line starts with `series` (a name, or name{labels}) followed
 * by a blank; -1 when there is none. Fails the test if the scrape fails. */
double relay_metric(int http_port, const char *series);
/* Poll relay_metric until the series is at least want; false after timeout_ms. */
bool relay_metric_reaches(int http_port, const char *series, double want, int timeout_ms);

#endif
