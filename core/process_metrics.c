/*
 * process_metrics.c - process_cpu_seconds_total, process_resident_memory_bytes,
 * process_open_fds, process_max_fds and process_start_time_seconds, named
 * and defined as the Prometheus client libraries do, so dashboards and
 * alert rules written for any exporter work here. Read from /proc by a
 * metrics collector, i.e. only when /metrics is scraped.
 */
#include "process_metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct process_metrics {
    aero_metric *cpu, *rss, *open_fds, *max_fds, *start;
};

static struct process_metrics pm; /* one relay per process */

/* Open descriptors: the entries of /proc/self/fd, less the one reading it. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

long long process_metrics_resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long long size = 0, resident = 0;
    if (!f)
        return -1;
    int ok = fscanf(f, "%lld %lld", &size, &resident) == 2;
    fclose(f);
    return ok ? resident * sysconf(_SC_PAGESIZE) : -1;
}

/* Boot time (/proc/stat btime) plus the process's start in clock ticks
 * after boot (/proc/self/stat field 22), in ns since the epoch. */
static long long start_time_ns(void)
{
    char buf[1024];
    long long btime = -1, ticks = -1;
    FILE *f = fopen("/proc/stat", "r");
    while (f && fgets(buf, sizeof(buf), f))
        if (sscanf(buf, "btime %lld", &btime) == 1)
            break;
    if (f)
        fclose(f);
    f = fopen("/proc/self/stat", "r");
    if (f && fgets(buf, sizeof(buf), f)) {
        /* The command name may hold spaces: count fields after its ')'. */
        char *p = strrchr(buf, ')');
        for (int field = 2; p && field < 22; field++)
            p = strchr(p + 1, ' ');
        if (p)
            ticks = strtoll(p + 1, NULL, 10);
    }
    if (f)
        fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (btime < 0 || ticks < 0 || hz <= 0)
        return -1;
    return btime * 1000000000LL + ticks * (1000000000LL / hz);
}

static void collect(void *arg)
{
    (void)arg;
    struct timespec cpu;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu) == 0)
        metrics_set(pm.cpu, (int64_t)cpu.tv_sec * 1000000000 + cpu.tv_nsec);
    long long rss = process_metrics_resident_bytes();
    if (rss >= 0)
        metrics_set(pm.rss, rss);
    long fds = open_fds();
    if (fds >= 0)
        metrics_set(pm.open_fds, fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        metrics_set(pm.max_fds, rl.rlim_cur == RLIM_INFINITY ? -1 : (int64_t)rl.rlim_cur);
}

int process_metrics_register(struct metrics *m, const char *version, int abi_major,
                             int abi_minor)
{
    pm.cpu = metrics_register_seconds(m, AERO_METRIC_COUNTER, "process_cpu_seconds_total",
                                      "Total user and system CPU time spent in seconds.", NULL);
    pm.rss = metrics_register(m, AERO_METRIC_GAUGE, "process_resident_memory_bytes",
                              "Resident memory size in bytes.", NULL);
    pm.open_fds = metrics_register(m, AERO_METRIC_GAUGE, "process_open_fds",
                                   "Number of open file descriptors.", NULL);
    pm.max_fds = metrics_register(m, AERO_METRIC_GAUGE, "process_max_fds",
                                  "Maximum number of open file descriptors.", NULL);
    pm.start = metrics_register_seconds(m, AERO_METRIC_GAUGE, "process_start_time_seconds",
                                        "Start time of the process since unix epoch in seconds.",
                                        NULL);
    char labels[160];
    snprintf(labels, sizeof(labels), "version=\"%s\",abi=\"%d.%d\"", version, abi_major,
             abi_minor);
    aero_metric *info = metrics_register(m, AERO_METRIC_GAUGE, "aero_relay_build_info",
                                         "The relay's version and plugin ABI; always 1.", labels);
    if (!pm.cpu || !pm.rss || !pm.open_fds || !pm.max_fds || !pm.start || !info)
        return -1;
    metrics_set(info, 1);
    long long start = start_time_ns();
    metrics_set(pm.start, start > 0 ? start : 0);
    return metrics_add_collector(m, collect, NULL);
}
