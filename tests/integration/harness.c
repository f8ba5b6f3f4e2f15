/*
 * harness.c - runs the real relay binary for black-box tests. Each relay
 * gets its own scratch directory and free ports; readiness is a real gRPC
 * health check polled with a deadline.
 */
#include "harness.h"
#include "test_server.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool harness_wait_for(bool (*cond)(void *arg), void *arg, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    const struct timespec step = {0, 10 * 1000000};
    for (;;) {
        if (cond(arg))
            return true;
        if (harness_now_ms() > deadline)
            return false;
        nanosleep(&step, NULL);
    }
}

int harness_free_port(void)
{
    int port = test_server_free_port();
    cr_assert_gt(port, 0, "no free loopback port");
    return port;
}

static void link_plugins_from(const char *from, const char *to)
{
    DIR *d = opendir(from);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".so") != 0)
            continue;
        char src[1024], dst[1024];
        snprintf(src, sizeof(src), "%s/%s", from, e->d_name);
        snprintf(dst, sizeof(dst), "%s/%s", to, e->d_name);
        cr_assert_eq(symlink(src, dst), 0, "symlink %s: %s", dst, strerror(errno));
    }
    closedir(d);
}

void harness_prepare(struct relay_proc *r)
{
    memset(r, 0, sizeof(*r));
    /* Under the build tree, so one cleanup (ctest's scratch_cleanup) removes
     * every test's files and a failed run leaves them there to inspect. */
    mkdir(AERO_BINARY_DIR "/test-scratch", 0755);
    snprintf(r->dir, sizeof(r->dir), "%s/test-scratch/aeroarc-test-XXXXXX", AERO_BINARY_DIR);
    cr_assert_not_null(mkdtemp(r->dir));
    char plugins[300];
    snprintf(plugins, sizeof(plugins), "%s/plugins", r->dir);
    cr_assert_eq(mkdir(plugins, 0755), 0);
    link_plugins_from(AERO_PLUGIN_BUILD_DIR, plugins);
    link_plugins_from(AERO_TEST_PLUGIN_DIR, plugins);
    snprintf(r->config, sizeof(r->config), "%s/relay.ini", r->dir);
    snprintf(r->stdout_path, sizeof(r->stdout_path), "%s/stdout.jsonl", r->dir);
    snprintf(r->stderr_path, sizeof(r->stderr_path), "%s/relay.log", r->dir);
}

/* Replace every %DIR% in text with dir. */
static char *expand_dir(const char *text, const char *dir)
{
    size_t cap = strlen(text) * 2 + 4096, o = 0;
    char *out = malloc(cap);
    cr_assert_not_null(out);
    for (const char *p = text; *p;) {
        if (strncmp(p, "%DIR%", 5) == 0) {
            o += (size_t)snprintf(out + o, cap - o, "%s", dir);
            p += 5;
        } else {
            out[o++] = *p++;
        }
        cr_assert_lt(o, cap - 1);
    }
    out[o] = '\0';
    return out;
}

const char *harness_write_config(struct relay_proc *r, const char *relay_extra, const char *body)
{
    r->port = harness_free_port();
    snprintf(r->target, sizeof(r->target), "127.0.0.1:%d", r->port);
    FILE *f = fopen(r->config, "w");
    cr_assert_not_null(f);
    char *extra = expand_dir(relay_extra ? relay_extra : "", r->dir);
    char *rest = expand_dir(body ? body : "", r->dir);
    char http[64] = "";
    if (r->http) {
        do
            r->http_port = harness_free_port();
        while (r->http_port == r->port);
        snprintf(http, sizeof(http), "127.0.0.1:%d", r->http_port);
    }
    fprintf(f,
            "[relay]\nlisten = 127.0.0.1:%d\nplugin_dir = %s/plugins\nworkers = 2\n"
            "allow_no_sinks = true\n%s\n"
            "[http]\nlisten = %s\n%s\n[log]\n%s\n\n%s\n",
            r->port, r->dir, extra, http, r->http_keys ? r->http_keys : "",
            r->log_keys ? r->log_keys : "level = debug\nformat = text", rest);
    fclose(f);
    free(extra);
    free(rest);
    return r->config;
}

void harness_setenv(struct relay_proc *r, const char *name, const char *value)
{
    size_t n = strlen(name), i = 0;
    for (; i < 8 && r->env[i]; i++)
        if (strncmp(r->env[i], name, n) == 0 && r->env[i][n] == '=')
            break;
    cr_assert_lt(i, 8, "too many environment variables");
    free((char *)r->env[i]);
    char *kv = NULL;
    cr_assert_geq(asprintf(&kv, "%s=%s", name, value ? value : ""), 0);
    r->env[i] = kv;
    if (!value) { /* an empty value: the relay treats it as unset */
        free(kv);
        r->env[i] = NULL;
        for (; i + 1 < 8 && r->env[i + 1]; i++)
            r->env[i] = r->env[i + 1];
        r->env[i] = NULL;
    }
}

/* wrapper: NULL, or blank-separated words run before the relay (valgrind). */
static void exec_relay(const char *wrapper, const char *const *args, const char *const *env,
                       int out_fd, int err_fd)
{
    for (size_t i = 0; env && env[i]; i++)
        putenv((char *)env[i]);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    const char *argv[48];
    size_t n = 0;
    char *words = wrapper ? strdup(wrapper) : NULL, *save = NULL;
    for (char *w = words ? strtok_r(words, " ", &save) : NULL; w && n < 32;
         w = strtok_r(NULL, " ", &save))
        argv[n++] = w;
    argv[n++] = AERO_BINARY_DIR "/aeroarc-relay";
    for (size_t i = 0; args && args[i] && n < 47; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    execvp(argv[0], (char *const *)argv);
    _exit(127);
}

struct ready_check {
    struct relay_proc *r;
    struct rc_channel *ch;
    bool exited;
    int notify_fd;  /* the relay's NOTIFY_SOCKET, ours; -1: the test set its own */
    bool notified;  /* READY=1 came on it */
};

/* Whether a READY=1 datagram waits on fd (every waiting one is read). */
static bool ready_notified(int fd)
{
    char msg[512];
    bool ready = false;
    ssize_t n;
    while ((n = recv(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT)) >= 0) {
        msg[n] = '\0';
        ready |= strncmp(msg, "READY=1", 7) == 0 || strstr(msg, "\nREADY=1") != NULL;
    }
    return ready;
}

static bool relay_ready(void *arg)
{
    struct ready_check *c = arg;
    int status;
    if (waitpid(c->r->pid, &status, WNOHANG) == c->r->pid) {
        c->exited = true;
        c->r->pid = 0;
        return true;
    }
    /* Our relay says it serves before anything is asked of the port: a
     * relay of a test running beside this one that took the port would
     * answer the checks below while ours fails to bind it. */
    if (c->notify_fd >= 0 && !(c->notified = c->notified || ready_notified(c->notify_fd)))
        return false;
    /* A plain TCP connect first: a gRPC channel that failed to connect
     * waits out its reconnect backoff (a second or more) before trying
     * again. */
    if (!test_server_port_accepts(c->r->port))
        return false;
    if (!c->ch)
        c->ch = harness_channel(c->r);
    struct rc_status st;
    int serving = 0;
    return rc_health_check(c->ch, "", &serving, &st, 500) == 0 && serving == RC_HEALTH_SERVING;
}

/* A datagram socket for the relay's sd_notify messages (an abstract name,
 * so no path length or file to remove), its NOTIFY_SOCKET setting into
 * kv; -1 when the test set NOTIFY_SOCKET itself. */
static int notify_socket(const struct relay_proc *r, char *kv, size_t cap)
{
    for (size_t i = 0; i < 8 && r->env[i]; i++)
        if (strncmp(r->env[i], "NOTIFY_SOCKET=", 14) == 0)
            return -1;
    static atomic_uint n;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int len = snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "aeroarc-harness-%d-%u",
                       (int)getpid(), atomic_fetch_add(&n, 1));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a,
                      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len)),
                 0, "notify socket: %s", strerror(errno));
    snprintf(kv, cap, "NOTIFY_SOCKET=@%s", a.sun_path + 1);
    return fd;
}

/* Starts r's relay and waits until it serves, or exits, or 15 s (60 s
 * under a wrapper) pass: whether it serves. */
static bool spawn_ready(struct relay_proc *r, bool *exited)
{
    char notify_kv[128];
    int notify_fd = notify_socket(r, notify_kv, sizeof(notify_kv));
    const char *env[10] = {0};
    size_t n_env = 0;
    for (; n_env < 8 && r->env[n_env]; n_env++)
        env[n_env] = r->env[n_env];
    if (notify_fd >= 0)
        env[n_env] = notify_kv;
    int out = open(r->stdout_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int err = open(r->stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    cr_assert(out >= 0 && err >= 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        const char *args[] = {"-c", r->config, NULL};
        exec_relay(r->wrapper, args, env, out, err);
    }
    close(out);
    close(err);
    r->pid = pid;
    struct ready_check c = {r, NULL, false, notify_fd, false};
    bool ok = harness_wait_for(relay_ready, &c, r->wrapper ? 60000 : 15000);
    if (c.ch)
        rc_close(c.ch);
    if (notify_fd >= 0)
        close(notify_fd); /* the relay's later messages go nowhere, unlogged */
    *exited = c.exited;
    return ok && !c.exited;
}

bool harness_move_port(struct relay_proc *r, int *which, int port)
{
    char *text = harness_read_file(r->config, NULL);
    char old[64];
    snprintf(old, sizeof(old), "listen = 127.0.0.1:%d\n", *which);
    char *at = text ? strstr(text, old) : NULL;
    if (!at) {
        free(text);
        return false;
    }
    FILE *f = fopen(r->config, "w");
    cr_assert_not_null(f);
    fprintf(f, "%.*slisten = 127.0.0.1:%d\n%s", (int)(at - text), text, port, at + strlen(old));
    fclose(f);
    free(text);
    *which = port;
    snprintf(r->target, sizeof(r->target), "127.0.0.1:%d", r->port);
    return true;
}

/*
 * Ports are picked free and bound by the relay later: a test running
 * beside this one may take one in between. When the log (from this start
 * on) says a port harness_write_config picked was taken, that listener
 * moves to another free port; false when it says nothing of the kind, or
 * the port is not in relay.ini as harness_write_config wrote it.
 */
static bool move_taken_port(struct relay_proc *r, const char *log)
{
    char grpc[80], http[80];
    snprintf(grpc, sizeof(grpc), "cannot listen on 127.0.0.1:%d ", r->port);
    snprintf(http, sizeof(http), "cannot listen for HTTP on 127.0.0.1:%d: Address already in use",
             r->http_port);
    int *taken = strstr(log, grpc) ? &r->port : r->http && strstr(log, http) ? &r->http_port : NULL;
    if (!taken)
        return false;
    int port;
    do
        port = harness_free_port();
    while (port == r->port || port == r->http_port);
    return harness_move_port(r, taken, port);
}

void relay_start(struct relay_proc *r)
{
    for (int tries = 1;; tries++) {
        struct stat st;
        off_t log_at = stat(r->stderr_path, &st) == 0 ? st.st_size : 0;
        bool exited;
        if (spawn_ready(r, &exited))
            return;
        char *log = harness_read_file(r->stderr_path, NULL);
        const char *this_start = log && (off_t)strlen(log) >= log_at ? log + log_at : "";
        if (exited && tries < 3 && move_taken_port(r, this_start)) {
            free(log);
            cr_assert_eq(truncate(r->stderr_path, log_at), 0); /* this start's lines go */
            continue;
        }
        if (r->pid)
            relay_kill(r);
        cr_assert_fail("relay did not become ready (%s); log:\n%s", exited ? "it exited" : "timeout",
                       log ? log : "");
    }
}

int relay_run_cli(const char *const *args, char *out, size_t outlen)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        exec_relay(NULL, args, NULL, fds[1], fds[1]);
    }
    close(fds[1]);
    size_t o = 0;
    ssize_t n;
    while ((n = read(fds[0], out + o, outlen - 1 - o)) > 0)
        o += (size_t)n;
    out[o] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct exit_check {
    struct relay_proc *r;
    int status;
};

static bool relay_exited(void *arg)
{
    struct exit_check *c = arg;
    return waitpid(c->r->pid, &c->status, WNOHANG) == c->r->pid;
}

int relay_stop(struct relay_proc *r, int timeout_ms)
{
    if (!r->pid)
        return r->exit_status;
    kill(r->pid, SIGTERM);
    struct exit_check c = {r, 0};
    if (!harness_wait_for(relay_exited, &c, timeout_ms)) {
        relay_kill(r);
        cr_assert_fail("relay did not exit within %d ms of SIGTERM", timeout_ms);
    }
    r->pid = 0;
    r->exit_status = WIFEXITED(c.status) ? WEXITSTATUS(c.status) : 128 + WTERMSIG(c.status);
    return r->exit_status;
}

void relay_kill(struct relay_proc *r)
{
    if (!r->pid)
        return;
    kill(r->pid, SIGKILL);
    int status;
    waitpid(r->pid, &status, 0);
    r->pid = 0;
    r->exit_status = 128 + SIGKILL;
}

struct rc_channel *harness_start(struct relay_proc *r, const char *relay_extra, const char *body)
{
    harness_write_config(r, relay_extra, body);
    relay_start(r);
    return rc_connect(r->target);
}

void harness_finish(struct relay_proc *r, struct rc_channel **ch)
{
    if (*ch)
        rc_close(*ch);
    *ch = NULL;
    if (!r->pid)
        return;
    int status = relay_stop(r, 20000);
    cr_expect_eq(status, 0, "relay exit status %d (a crash is 128+signal)", status);
}

void harness_kill(struct relay_proc *r, struct rc_channel **ch)
{
    if (ch && *ch) {
        rc_close(*ch);
        *ch = NULL;
    }
    relay_kill(r);
}

void harness_stream_frames(struct rc_stream *s, const char *agent, uint64_t first, size_t n,
                           size_t counts[4], char *err, size_t errlen)
{
    memset(counts, 0, 4 * sizeof(size_t));
    if (err)
        err[0] = '\0';
    for (uint64_t seq = first; seq < first + n; seq++)
        cr_assert_eq(rc_stream_send_frame(s, harness_frame(agent, seq), 5000), 0);
    for (size_t i = 0; i < n; i++) {
        struct rc_ack ack;
        cr_assert_eq(rc_stream_recv_ack(s, &ack, 10000), 1, "ack %zu missing", i);
        cr_assert(ack.status >= 0 && ack.status < 4);
        counts[ack.status]++;
        if (ack.status != RC_ACK_OK && err && !err[0])
            snprintf(err, errlen, "%s", ack.error ? ack.error : "");
    }
}

struct rc_channel *harness_channel(const struct relay_proc *r)
{
    if (!r->tls_ca)
        return rc_connect(r->target);
    struct rc_opts o = {.root_cert_file = r->tls_ca, .client_cert_file = r->tls_cert,
                        .client_key_file = r->tls_key, .server_name_override = "localhost"};
    struct rc_status st;
    struct rc_channel *ch = rc_connect_opts(r->target, &o, &st);
    cr_assert_not_null(ch, "TLS channel: %s", st.message);
    return ch;
}

int harness_config_line(const struct relay_proc *r, const char *key)
{
    char *text = harness_read_file(r->config, NULL);
    cr_assert_not_null(text);
    int line = 1, found = 0;
    size_t klen = strlen(key);
    for (char *p = text; *p && !found; line++) {
        char *end = strchr(p, '\n');
        if (strncmp(p, key, klen) == 0 && (p[klen] == ' ' || p[klen] == '='))
            found = line;
        if (!end)
            break;
        p = end + 1;
    }
    free(text);
    cr_assert_gt(found, 0, "%s not in %s", key, r->config);
    return found;
}

void harness_register(struct rc_channel *ch, const char *agent, char *session, size_t len)
{
    struct rc_register_result res;
    struct rc_status st;
    int rc = rc_register(ch, agent, "test/1.0", "linux/amd64", &res, &st, 5000);
    cr_assert_eq(rc, 0, "register %s: %s %s", agent, rc_status_code_name(st.code), st.message);
    if (session)
        snprintf(session, len, "%s", res.session_id);
}

const struct rc_frame *harness_frame(const char *agent, uint64_t seq)
{
    static _Thread_local struct rc_frame f;
    static _Thread_local struct rc_field fields[3];
    static _Thread_local uint8_t raw[17];
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (uint8_t)(0xfd - i);
    fields[0] = (struct rc_field){"lat", "473977418"};
    fields[1] = (struct rc_field){"lon", "85455939"};
    fields[2] = (struct rc_field){"alt", "488"};
    f = (struct rc_frame){
        .session_id = "sess-stale",
        .agent_id = agent,
        .seq = seq,
        .sent_at_unix_ns = 1764262646000000000LL + (int64_t)seq,
        .device_timestamp_sec = 12.5,
        .raw_mavlink = raw,
        .raw_mavlink_len = sizeof(raw),
        .dialect = "common",
        .msg_id = 33,
        .msg_name = "GLOBAL_POSITION_INT",
        .fields = fields,
        .n_fields = 3,
        .flight_id = "flight-7",
    };
    return &f;
}

const struct rc_frame *harness_g2_frame(const char *agent, const char *session, uint64_t seq)
{
    static _Thread_local struct rc_frame f;
    f = *harness_frame(agent, seq);
    f.session_id = session;
    f.wal_id = HARNESS_WAL_A;
    f.intent_id = "intent-9";
    f.intent_version = 4;
    return &f;
}

char *harness_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0;
    FILE *mem = open_memstream(&buf, &n);
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, k, mem);
    fclose(f);
    fclose(mem);
    if (len)
        *len = n;
    return buf;
}

int harness_log_count(const struct relay_proc *r, ...)
{
    char *log = harness_read_file(r->stderr_path, NULL);
    cr_assert_not_null(log, "%s", r->stderr_path);
    int n = 0;
    for (char *line = log, *eol; *line; line = eol + 1) {
        if (!(eol = strchr(line, '\n')))
            break; /* a line still being written */
        *eol = '\0';
        va_list ap;
        va_start(ap, r);
        const char *needle;
        while ((needle = va_arg(ap, const char *)) && strstr(line, needle))
            ;
        va_end(ap);
        n += needle == NULL;
    }
    free(log);
    return n;
}

char *harness_read_jsonl_dir(const char *dir, size_t *n_files)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *mem = open_memstream(&buf, &n);
    DIR *d = opendir(dir);
    size_t files = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 7 || strcmp(e->d_name + l - 6, ".jsonl") != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        size_t flen;
        char *content = harness_read_file(path, &flen);
        if (content) {
            fwrite(content, 1, flen, mem);
            free(content);
        }
        files++;
    }
    if (d)
        closedir(d);
    fclose(mem);
    if (n_files)
        *n_files = files;
    return buf;
}

/* Call fn(arg, agent_id, seq) for every line of every .jsonl file in dir
 * (an envelope starts {"agent_id":"..." and carries "seq":N). A last line
 * without its newline fails the test unless torn_ok: after a kill -9 the
 * file being written may end in the cut-off, never acked, tail of a batch.
 * Returns the number of such torn lines. */
int harness_for_each_envelope(const char *dir, bool torn_ok,
                              void (*fn)(void *arg, const char *agent, uint64_t seq), void *arg)
{
    static const char head[] = "{\"agent_id\":\"";
    int torn = 0, files = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    cr_assert_not_null(d, "no %s", dir);
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 7 || strcmp(e->d_name + n - 6, ".jsonl") != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        char *all = harness_read_file(path, NULL);
        cr_assert_not_null(all);
        files++;
        for (char *line = all; *line;) {
            char *end = strchr(line, '\n');
            if (!end) {
                cr_assert(torn_ok, "a half-written line in %s: %.80s", path, line);
                torn++;
                break;
            }
            *end = '\0';
            cr_assert_eq(strncmp(line, head, sizeof(head) - 1), 0, "not an envelope: %.80s",
                         line);
            char *agent = line + sizeof(head) - 1, *quote = strchr(agent, '"');
            const char *seq = strstr(line, "\"seq\":");
            cr_assert(quote && seq, "no agent_id or seq in %.120s", line);
            *quote = '\0';
            fn(arg, agent, strtoull(seq + 6, NULL, 10));
            line = end + 1;
        }
        free(all);
    }
    closedir(d);
    cr_assert_gt(files, 0, "no .jsonl file in %s", dir);
    return torn;
}
