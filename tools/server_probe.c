/* server_probe.c - see server_probe.h. The sampler sleeps on a condition
 * variable with a deadline, so stop() ends it at once instead of waiting
 * out a tick.
 */
#include "server_probe.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SAMPLE_MS 200

struct server_probe {
	pid_t pid;
	double cpu0;
	long peak_rss_kb;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
};

/* utime + stime of pid in seconds, or -1. Fields 14 and 15 of stat come
 * after the command name in parentheses, which may itself hold spaces. */
static double cpu_seconds(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long utime, stime;
	FILE *f;
	size_t n;
	char *p;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")))
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	if (!(p = strrchr(buf, ')')) ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
		   &stime) != 2)
		return -1;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* VmRSS of pid in kB, or -1. */
static long rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static void sample(struct server_probe *p)
{
	long kb = rss_kb(p->pid);

	if (kb > p->peak_rss_kb)
		p->peak_rss_kb = kb;
}

static void *sampler(void *arg)
{
	struct server_probe *p = arg;
	struct timespec next;

	clock_gettime(CLOCK_MONOTONIC, &next);
	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		sample(p);
		next.tv_nsec += SAMPLE_MS * 1000000L;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000L;
		}
		while (!p->stop && pthread_cond_timedwait(&p->cv, &p->mu, &next) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct server_probe *server_probe_start(pid_t pid, char *err, size_t errlen)
{
	struct server_probe *p = calloc(1, sizeof *p);
	pthread_condattr_t ca;

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->pid = pid;
	p->peak_rss_kb = -1;
	if ((p->cpu0 = cpu_seconds(pid)) < 0 || rss_kb(pid) < 0) {
		snprintf(err, errlen, "no process %d to measure (/proc/%d unreadable)", (int)pid,
			 (int)pid);
		free(p);
		return NULL;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&p->thread, NULL, sampler, p)) {
		snprintf(err, errlen, "cannot start the sampling thread");
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		free(p);
		return NULL;
	}
	return p;
}

int server_probe_stop(struct server_probe *p, struct server_cost *out)
{
	double cpu1;

	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	sample(p);
	cpu1 = cpu_seconds(p->pid);
	out->cpu_s = cpu1 >= 0 ? cpu1 - p->cpu0 : 0;
	out->peak_rss_kb = p->peak_rss_kb;
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
	return cpu1 >= 0 ? 0 : -ESRCH;
}
