/*
 * nats_server.c - starts and stops a real nats-server for tests (see
 * nats_server.h) on top of test_server.c. Runs on the test's thread; polls
 * the server's log with a deadline to know it is ready, never sleeps
 * blindly.
 */
#include "nats_server.h"

#include "test_server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int nats_server_free_port(void)
{
    return test_server_free_port();
}

int nats_server_init(struct nats_server *ns)
{
    memset(ns, 0, sizeof(*ns));
    int rc = test_server_mkdtemp(ns->dir, sizeof(ns->dir), NULL, "aero-nats-");
    if (rc != 0)
        return rc;
    snprintf(ns->store, sizeof(ns->store), "%s/store", ns->dir);
    if (mkdir(ns->store, 0755) != 0)
        return -errno;
    ns->port = nats_server_free_port();
    if (ns->port == 0)
        return -EADDRNOTAVAIL;
    snprintf(ns->url, sizeof(ns->url), "nats://127.0.0.1:%d", ns->port);
    return 0;
}

/* True once the log of this run says the server accepts clients (with
 * JetStream enabled: it is logged after JetStream started). */
static bool log_says_ready(void *arg)
{
    const char *path = arg;
    char buf[65536];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, "Server is ready") != NULL;
}

static void print_log(const char *path)
{
    char buf[4096];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    fprintf(stderr, "nats-server log %s:\n%s\n", path, buf);
}

int nats_server_start(struct nats_server *ns, int timeout_ms)
{
    char port[16];

    if (ns->pid != 0)
        return -EALREADY;
    ns->starts++;
    snprintf(ns->log, sizeof(ns->log), "%s/nats-%d.log", ns->dir, ns->starts);
    snprintf(port, sizeof(port), "%d", ns->port);
    const char *argv[] = {"nats-server", "-a", "127.0.0.1", "-p", port,
                          "-js", "-sd", ns->store, "-n", "aero-test", NULL};
    /* Debian installs it in /usr/sbin, which may not be on PATH. */
    const char *programs[] = {"nats-server", "/usr/sbin/nats-server", NULL};
    struct test_server_spec spec = {.argv = argv, .programs = programs, .log = ns->log,
                                    .ready = log_says_ready, .arg = ns->log,
                                    .timeout_ms = timeout_ms};
    int rc = test_server_start(&ns->pid, &spec);
    if (rc == -ECHILD || rc == -ETIMEDOUT)
        print_log(ns->log);
    return rc;
}

int nats_server_stop(struct nats_server *ns, int sig)
{
    /* A clean stop flushes the store; give it 10 s, then kill. */
    return test_server_stop(&ns->pid, sig, 10000);
}

void nats_server_cleanup(struct nats_server *ns)
{
    test_server_cleanup(&ns->pid, ns->dir);
}
