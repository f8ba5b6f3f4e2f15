/* server_probe.h - what a benchmark run cost the server under test: its
 * CPU seconds (utime + stime from /proc/PID/stat) between start and stop,
 * and its peak resident memory (VmRSS from /proc/PID/status, sampled every
 * 200 ms by a thread of its own while the run lasts). Linux only.
 */
#ifndef AERO_SERVER_PROBE_H
#define AERO_SERVER_PROBE_H

#include <stddef.h>
#include <sys/types.h>

struct server_probe;

struct server_cost {
	double cpu_s;      /* utime + stime spent between start and stop */
	long peak_rss_kb;  /* largest VmRSS seen, start and stop included */
};

/* NAME server_probe_start
 * Reads pid's CPU time now and starts sampling its RSS.
 * RETURN the probe, or NULL with err filled (no such process, /proc
 * unreadable, out of memory). */
struct server_probe *server_probe_start(pid_t pid, char *err, size_t errlen);

/* NAME server_probe_stop
 * Stops sampling, reads the CPU time again, frees the probe.
 * RETURN 0 with *out filled, or -ESRCH if the process is gone (then *out
 * holds what was seen until it went). */
int server_probe_stop(struct server_probe *p, struct server_cost *out);

#endif
