/*
 * test_server.c - runs a real server as a child process for tests (see
 * test_server.h). Test threads only; every wait is a poll with a deadline.
 */
#include "test_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
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

int test_server_mkdtemp(char *dir, size_t size, const char *parent, const char *prefix)
{
    if (parent != NULL && mkdir(parent, 0755) != 0 && errno != EEXIST)
        return -errno;
    int n = snprintf(dir, size, "%s/%sXXXXXX", parent ? parent : "/tmp", prefix);
    if (n < 0 || (size_t)n >= size) {
        dir[0] = '\0';
        return -ENAMETOOLONG;
    }
    if (mkdtemp(dir) == NULL) {
        int err = errno;
        dir[0] = '\0';
        return -err;
    }
    return 0;
}

/* Whether `port` (0: any) can be bound on loopback now; the port bound. */
static int try_bind(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), got = 0;

    if (fd < 0)
        return 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        got = ntohs(a.sin_port);
    close(fd);
    return got;
}

/*
 * A port from below the kernel's ephemeral range, picked at random and
 * checked free: a port the kernel hands out for bind(0) is also what it
 * hands out next for an outgoing connection, so a server started on it a
 * moment later could find it taken ("Address already in use", seen with
 * tests running two at a time). Falls back to bind(0).
 */
int test_server_free_port(void)
{
    static atomic_uint calls; /* each call its own sequence, from any thread */
    unsigned seed = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL) ^
                    atomic_fetch_add(&calls, 1) * 40503u;
    int low = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d", &low) != 1)
            low = 32768;
        fclose(f);
    }
    for (int i = 0; low > 12000 && i < 64; i++) {
        int port = 10000 + (int)(rand_r(&seed) % (unsigned)(low - 10000));
        if (try_bind(port) == port)
            return port;
    }
    return try_bind(0);
}

bool test_server_port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static bool is_ready(const struct test_server_spec *spec)
{
    for (size_t i = 0; i < sizeof(spec->ports) / sizeof(spec->ports[0]); i++)
        if (spec->ports[i] != 0 && !test_server_port_accepts(spec->ports[i]))
            return false;
    return spec->ready == NULL || spec->ready(spec->arg);
}

static _Noreturn void exec_child(const struct test_server_spec *spec, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
    if (getppid() != parent) /* it died before prctl took effect */
        _exit(1);
    int fd = open(spec->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
    }
    if (spec->programs == NULL) {
        execvp(spec->argv[0], (char *const *)spec->argv);
    } else {
        for (size_t i = 0; spec->programs[i] != NULL; i++)
            execvp(spec->programs[i], (char *const *)spec->argv);
    }
    fprintf(stderr, "exec %s: %s\n", spec->argv[0], strerror(errno));
    _exit(127);
}

int test_server_start(pid_t *pid, const struct test_server_spec *spec)
{
    if (*pid != 0)
        return -EALREADY;
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0)
        return -errno;
    if (child == 0)
        exec_child(spec, parent);
    *pid = child;
    long long deadline = mono_ms() + spec->timeout_ms;
    for (;;) {
        int status;
        if (waitpid(child, &status, WNOHANG) == child) {
            *pid = 0;
            return -ECHILD;
        }
        if (is_ready(spec))
            return 0;
        if (mono_ms() > deadline)
            return -ETIMEDOUT;
        pause_ms(10);
    }
}

const char *test_server_strerror(int rc)
{
    switch (rc) {
    case -ECHILD:
        return "it exited";
    case -ETIMEDOUT:
        return "timeout";
    default:
        return strerror(-rc);
    }
}

int test_server_stop(pid_t *pid, int sig, int grace_ms)
{
    if (*pid == 0)
        return -ESRCH;
    kill(*pid, SIGCONT);
    if (kill(*pid, sig) != 0)
        return -errno;
    int status;
    bool reaped = false;
    if (sig != SIGKILL) {
        long long deadline = mono_ms() + grace_ms;
        while (!(reaped = waitpid(*pid, &status, WNOHANG) != 0) && mono_ms() <= deadline)
            pause_ms(5);
        if (!reaped)
            kill(*pid, SIGKILL);
    }
    if (!reaped)
        waitpid(*pid, &status, 0);
    *pid = 0;
    return 0;
}

int test_server_pause(pid_t pid)
{
    return kill(pid, SIGSTOP) == 0 ? 0 : -errno;
}

int test_server_resume(pid_t pid)
{
    return kill(pid, SIGCONT) == 0 ? 0 : -errno;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

void test_server_cleanup(pid_t *pid, char *dir)
{
    if (*pid != 0)
        test_server_stop(pid, SIGKILL, 0);
    if (dir[0] != '\0')
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    dir[0] = '\0';
}
