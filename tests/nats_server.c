/*
 * nats_server.c - starts and stops a real nats-server for tests (see
 * nats_server.h). Runs on the test's thread; polls the server's log with a
 * deadline to know it is ready, never sleeps blindly.
 */
#include "nats_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int nats_server_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

    if (fd < 0)
        return 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

int nats_server_init(struct nats_server *ns)
{
    memset(ns, 0, sizeof(*ns));
    snprintf(ns->dir, sizeof(ns->dir), "/tmp/aero-nats-XXXXXX");
    if (mkdtemp(ns->dir) == NULL)
        return -errno;
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
static int log_says_ready(const char *path)
{
    char buf[65536];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
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
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int out = open(ns->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (out >= 0) {
            dup2(out, STDOUT_FILENO);
            dup2(out, STDERR_FILENO);
        }
        char *const argv[] = {"nats-server", "-a", "127.0.0.1", "-p", port,
                              "-js", "-sd", ns->store, "-n", "aero-test", NULL};
        execvp("nats-server", argv);
        execv("/usr/sbin/nats-server", argv); /* Debian installs it here */
        fprintf(stderr, "exec nats-server: %s\n", strerror(errno));
        _exit(127);
    }
    ns->pid = pid;
    long long deadline = mono_ms() + timeout_ms;
    while (mono_ms() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            ns->pid = 0;
            print_log(ns->log);
            return -ECHILD;
        }
        if (log_says_ready(ns->log))
            return 0;
        pause_ms(10);
    }
    print_log(ns->log);
    return -ETIMEDOUT;
}

int nats_server_stop(struct nats_server *ns, int sig)
{
    if (ns->pid == 0)
        return -ESRCH;
    if (kill(ns->pid, sig) != 0)
        return -errno;
    /* A clean stop flushes the store; give it 10 s, then kill. */
    long long deadline = mono_ms() + 10000;
    int status;
    while (waitpid(ns->pid, &status, WNOHANG) == 0) {
        if (mono_ms() > deadline) {
            kill(ns->pid, SIGKILL);
            waitpid(ns->pid, &status, 0);
            break;
        }
        pause_ms(5);
    }
    ns->pid = 0;
    return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    return remove(p);
}

void nats_server_cleanup(struct nats_server *ns)
{
    if (ns->pid != 0)
        nats_server_stop(ns, SIGKILL);
    if (ns->dir[0] != '\0')
        nftw(ns->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    ns->dir[0] = '\0';
}
