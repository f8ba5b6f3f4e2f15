/*
 * http_client.c - see http_client.h. Plain sockets and poll(2) with a
 * deadline; the answer is read to EOF (we ask for Connection: close).
 */
#include "http_client.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for fd to be ready for `events` before the deadline. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* Copy header `name`'s value (case-insensitive name) out of the head. */
static void header_value(const char *head, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    out[0] = '\0';
    for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r\n");
            if (len >= outlen)
                len = outlen - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return;
        }
    }
}

static int parse_reply(char *buf, size_t len, struct http_reply *out)
{
    char *end = strstr(buf, "\r\n\r\n");
    int major, minor, status;
    if (!end || sscanf(buf, "HTTP/%d.%d %d", &major, &minor, &status) != 3)
        return -EPROTO;
    *end = '\0';
    out->status = status;
    header_value(buf, "Content-Type", out->content_type, sizeof(out->content_type));
    header_value(buf, "Allow", out->allow, sizeof(out->allow));
    size_t head = (size_t)(end + 4 - buf);
    out->body_len = len - head;
    out->body = malloc(out->body_len + 1);
    if (!out->body)
        return -ENOMEM;
    memcpy(out->body, buf + head, out->body_len);
    out->body[out->body_len] = '\0';
    return 0;
}

int http_request(int port, const char *method, const char *path, int timeout_ms,
                 struct http_reply *out)
{
    long long deadline = now_ms() + timeout_ms;
    char req[512];
    int rc = 0;
    size_t cap = 65536, len = 0;
    char *buf = NULL;
    memset(out, 0, sizeof(*out));

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        if (errno != EINPROGRESS) {
            rc = -errno;
            goto out;
        }
        int err = 0;
        socklen_t el = sizeof(err);
        if ((rc = wait_fd(fd, POLLOUT, deadline)) < 0)
            goto out;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            rc = -err;
            goto out;
        }
    }
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", method,
                     path, port);
    for (int sent = 0; sent < n;) {
        if ((rc = wait_fd(fd, POLLOUT, deadline)) < 0)
            goto out;
        ssize_t w = send(fd, req + sent, (size_t)(n - sent), MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            rc = -errno;
            goto out;
        }
        if (w > 0)
            sent += (int)w;
    }
    buf = malloc(cap + 1);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        if ((rc = wait_fd(fd, POLLIN, deadline)) < 0)
            goto out;
        if (len == cap) {
            char *bigger = realloc(buf, cap * 2 + 1);
            if (!bigger) {
                rc = -ENOMEM;
                goto out;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t r = recv(fd, buf + len, cap - len, 0);
        if (r == 0)
            break;
        if (r < 0 && errno != EAGAIN && errno != EINTR) {
            rc = -errno;
            goto out;
        }
        if (r > 0)
            len += (size_t)r;
    }
    buf[len] = '\0';
    rc = parse_reply(buf, len, out);
out:
    free(buf);
    close(fd);
    return rc;
}

int http_get_status(int port, const char *path, int timeout_ms)
{
    struct http_reply r;
    int rc = http_request(port, "GET", path, timeout_ms, &r);
    if (rc < 0)
        return rc;
    http_reply_free(&r);
    return r.status;
}

void http_reply_free(struct http_reply *r)
{
    free(r->body);
    r->body = NULL;
}

int http_promtool_check(const char *body, size_t len, char *out, size_t outlen)
{
    char path[] = "/tmp/aeroarc-metrics-XXXXXX";
    int in = mkstemp(path);
    if (in < 0)
        return -errno;
    unlink(path);
    if (write(in, body, len) != (ssize_t)len || lseek(in, 0, SEEK_SET) < 0) {
        close(in);
        return -EIO;
    }
    int p[2];
    if (pipe(p) < 0) {
        close(in);
        return -errno;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in, 0);
        dup2(p[1], 1);
        dup2(p[1], 2);
        execlp("promtool", "promtool", "check", "metrics", (char *)NULL);
        _exit(127);
    }
    close(in);
    close(p[1]);
    size_t o = 0;
    ssize_t r;
    char sink[4096];
    while ((r = read(p[0], o + 1 < outlen ? out + o : sink,
                     o + 1 < outlen ? outlen - 1 - o : sizeof(sink))) > 0)
        if (o + 1 < outlen)
            o += (size_t)r;
    out[o] = '\0';
    close(p[0]);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -ECHILD;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

double http_metric_value(const char *body, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = body; line && *line;) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -1;
}
