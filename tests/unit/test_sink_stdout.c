/*
 * test_sink_stdout.c - the sink-stdout plugin against the fake host, with
 * fd 1 of the test process swapped for a file, a pipe or /dev/full:
 * lines out, big batches through a pipe, write errors as RETRY (rate-limited
 * warnings), a torn line ended before the next batch.
 */
#include "sink_test.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const aero_plugin_descriptor *desc;
static const aero_sink_vtable *vt;
static int saved_stdout = -1;
static char tmpfile_path[64];

static void setup(void)
{
    desc = sink_test_load("sink-stdout");
    vt = desc->vtable;
    fflush(stdout);
    saved_stdout = dup(1);
    cr_assert_geq(saved_stdout, 0);
    tmpfile_path[0] = '\0';
}

static void teardown(void)
{
    sink_test_unload();
    dup2(saved_stdout, 1);
    close(saved_stdout);
    if (tmpfile_path[0])
        unlink(tmpfile_path);
}

TestSuite(sink_stdout, .init = setup, .fini = teardown);

/* fd 1 becomes a fresh temporary file; returns its path. */
static const char *stdout_to_file(void)
{
    snprintf(tmpfile_path, sizeof(tmpfile_path), "/tmp/aero-stdout-XXXXXX");
    int fd = mkstemp(tmpfile_path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(dup2(fd, 1), 1);
    close(fd);
    return tmpfile_path;
}

struct frames {
    aero_frame f[4096];
    const aero_frame *p[4096];
    aero_kv kv[4096];
    char pad[2048];
};

static struct frames *frames_new(size_t pad)
{
    struct frames *fr = calloc(1, sizeof(*fr));
    cr_assert_not_null(fr);
    memset(fr->pad, 'q', pad);
    for (size_t i = 0; i < 4096; i++) {
        fr->kv[i] = (aero_kv){{"text", 4}, {fr->pad, pad}};
        fr->f[i] = (aero_frame){
            .size = sizeof(aero_frame),
            .agent_id = {"drone-9", 7},
            .session_id = {"sess-9", 6},
            .seq = i,
            .sent_at_unix_ns = -5,
            .device_timestamp_sec = 3.75,
            .raw_mavlink = {"\x01\x02", 2},
            .dialect = {"common", 6},
            .msg_id = 30,
            .msg_name = {"ATTITUDE\n", 9},
            .fields = &fr->kv[i],
            .n_fields = 1,
            .flight_id = {"", 0},
            .received_unix_ns = 0,
        };
        fr->p[i] = &fr->f[i];
    }
    return fr;
}

/* An instance "console" with the core's keys only (it has none of its own). */
static void *instance(fake_host **fh)
{
    const char *const cfg[] = {"plugin", "sink-stdout", "queue", "64", NULL};
    return sink_test_instance("console", cfg, NULL, 0, fh);
}

static void write_batch(void *inst, struct frames *fr, size_t from, size_t n,
                        aero_result *res)
{
    memset(res, 0x7f, n * sizeof(*res));
    vt->write_batch(inst, fr->p + from, n, res);
}

/* Every line of buf[0..len) is a JSON envelope; their seqs, in order, are
 * first, first+1, ... (count lines). Checked by python3's strict parser. */
static void check_lines(const char *buf, size_t len, size_t first, size_t count)
{
    char path[] = "/tmp/aero-stdout-lines-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, buf, len), (ssize_t)len);
    close(fd);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "%s -c 'import json,sys\n"
             "raw=open(sys.argv[1],\"rb\").read()\n"
             "assert raw.endswith(b\"\\n\")\n"
             "seqs=[json.loads(l)[\"seq\"] for l in raw.decode(\"utf-8\").splitlines()]\n"
             "assert seqs==list(range(%zu,%zu)), seqs' %s",
             sink_test_python(), first, first + count, path);
    int st = system(cmd);
    unlink(path);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "bad lines on stdout");
}

Test(sink_stdout, lines_to_a_file)
{
    const char *path = stdout_to_file();
    fake_host *fh;
    void *inst = instance(&fh);
    struct frames *fr = frames_new(40);
    aero_result res[4096];

    write_batch(inst, fr, 0, 50, res);
    for (size_t i = 0; i < 50; i++)
        cr_assert_eq(res[i], AERO_OK);
    write_batch(inst, fr, 50, 1, res);
    cr_assert_eq(res[0], AERO_OK);

    size_t len;
    char *buf = sink_test_slurp(path, &len);
    check_lines(buf, len, 0, 51);
    cr_expect(strstr(buf, "\"msg_name\":\"ATTITUDE\\n\"") != NULL);
    free(buf);
    cr_expect_eq(vt->flush(inst), 0);
    cr_expect_eq(fake_host_log_count(fh, AERO_LOG_WARN), 0);
    sink_test_destroy(inst);
    free(fr);
}

struct drain {
    int fd;
    char *buf;
    size_t len, cap;
};

static void *drain_pipe(void *arg)
{
    struct drain *d = arg;
    for (;;) {
        if (d->cap - d->len < 65536) {
            d->cap = d->cap * 2 + 65536;
            d->buf = realloc(d->buf, d->cap);
        }
        ssize_t r = read(d->fd, d->buf + d->len, d->cap - d->len);
        if (r <= 0)
            break;
        d->len += (size_t)r;
    }
    return NULL;
}

/* A batch far bigger than a pipe's buffer: many partial writes. */
Test(sink_stdout, big_batch_through_a_pipe)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(dup2(p[1], 1), 1);
    close(p[1]);
    struct drain d = {.fd = p[0]};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, drain_pipe, &d), 0);

    void *inst = instance(NULL);
    struct frames *fr = frames_new(1500); /* 4096 lines: ~7 MB, two chunks */
    aero_result res[4096];
    write_batch(inst, fr, 0, 4096, res);
    for (size_t i = 0; i < 4096; i++)
        cr_assert_eq(res[i], AERO_OK, "frame %zu", i);

    dup2(saved_stdout, 1); /* closes the last write end: EOF for the reader */
    pthread_join(th, NULL);
    close(p[0]);
    cr_assert_gt(d.len, 4 * 1024 * 1024);
    check_lines(d.buf, d.len, 0, 4096);
    free(d.buf);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_stdout, dev_full_is_retry_with_rate_limited_warning)
{
    int fd = open("/dev/full", O_WRONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(dup2(fd, 1), 1);
    close(fd);
    fake_host *fh;
    void *inst = instance(&fh);
    struct frames *fr = frames_new(10);
    aero_result res[16];

    for (int b = 0; b < 3; b++) {
        write_batch(inst, fr, 0, 16, res);
        for (size_t i = 0; i < 16; i++)
            cr_assert_eq(res[i], AERO_RETRY);
    }
    cr_expect_eq(fake_host_log_count(fh, AERO_LOG_WARN), 1, "not rate-limited");
    cr_expect(fake_host_log_contains(fh, "No space left on device"));
    sink_test_destroy(inst);
    free(fr);
}

/* A write cut short (here by RLIMIT_FSIZE on a file) leaves half a line:
 * frames wholly out are OK, the rest RETRY, and the next batch first ends
 * the torn line so its own lines stay parseable. */
Test(sink_stdout, partial_write_ok_prefix_and_torn_line_ended)
{
    signal(SIGXFSZ, SIG_IGN);
    const char *path = stdout_to_file();
    fake_host *fh;
    void *inst = instance(&fh);
    struct frames *fr = frames_new(100);
    aero_result res[8];

    write_batch(inst, fr, 0, 1, res);
    cr_assert_eq(res[0], AERO_OK);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    off_t line = st.st_size;

    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rlim_t saved = rl.rlim_cur;
    rl.rlim_cur = (rlim_t)(line * 3 + line / 2); /* 2.5 more lines fit */
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    write_batch(inst, fr, 1, 5, res);
    cr_expect_eq(res[0], AERO_OK);
    cr_expect_eq(res[1], AERO_OK);
    for (size_t i = 2; i < 5; i++)
        cr_expect_eq(res[i], AERO_RETRY, "frame %zu", i);
    cr_expect(fake_host_log_contains(fh, "File too large"));

    rl.rlim_cur = saved;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    write_batch(inst, fr, 3, 3, res);
    for (size_t i = 0; i < 3; i++)
        cr_expect_eq(res[i], AERO_OK);

    /* Lines: seq 0, 1, 2, the torn half of 3, then 3, 4, 5 whole. */
    size_t len;
    char *buf = sink_test_slurp(path, &len);
    char *torn = buf;
    for (int k = 0; k < 3; k++)
        torn = strchr(torn, '\n') + 1;
    char *after = strchr(torn, '\n');
    cr_assert_not_null(after);
    cr_expect_lt(after - torn, line - 1, "the torn line is shorter");
    check_lines(buf, (size_t)(torn - buf), 0, 3);
    after++;
    check_lines(after, len - (size_t)(after - buf), 3, 3);
    free(buf);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_stdout, descriptor_and_no_keys)
{
    cr_expect_eq(desc->abi_major, AERO_ABI_MAJOR);
    cr_expect_eq(desc->kind, AERO_PLUGIN_SINK);
    cr_expect_str_eq(desc->name, "sink-stdout");
    cr_expect_eq(vt->n_keys, 0);
    const char *const unknown[] = {"path", "/tmp", NULL};
    cr_expect_null(fake_host_new(desc, "console", unknown));
    vt->destroy(NULL);
}
