/*
 * test_sink_file.c - the sink-file plugin, loaded from the build tree and run
 * against the fake host: files and names, rotation by size and age, fsync per
 * batch, reopen, and full or failing disks (RETRY, no torn line, recovery).
 * The executable exports fdatasync (ENABLE_EXPORTS) so the dlopened plugin
 * binds to the counting, failure-injecting one below.
 */
#include "sink_test.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <regex.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* --------------------------------------------- fdatasync interposition */

static atomic_int fdatasync_calls;
static atomic_int fdatasync_fail; /* next calls fail with EIO while > 0 */

int fdatasync(int fd)
{
    atomic_fetch_add(&fdatasync_calls, 1);
    if (atomic_load(&fdatasync_fail) > 0) {
        atomic_fetch_sub(&fdatasync_fail, 1);
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fdatasync, fd);
}

/* ------------------------------------------------------------ fixture */

static char tmpdir[64];
static const aero_plugin_descriptor *desc;
static const aero_sink_vtable *vt;

static int rm_entry(const char *p, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    return remove(p);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/aero-sinkfile-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    desc = sink_test_load("sink-file");
    vt = desc->vtable;
    atomic_store(&fdatasync_calls, 0);
    atomic_store(&fdatasync_fail, 0);
}

static void teardown(void)
{
    sink_test_unload();
    umount2(tmpdir, MNT_DETACH); /* the tmpfs test's, if any */
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(sink_file, .init = setup, .fini = teardown);

/* Frames whose seq is their index; `pad` bytes of field value each. */
struct frames {
    aero_frame f[512];
    const aero_frame *p[512];
    aero_kv kv[512][2];
    char pad[16384];
};

static struct frames *frames_new(size_t pad)
{
    struct frames *fr = calloc(1, sizeof(*fr));
    cr_assert_not_null(fr);
    cr_assert_leq(pad, sizeof(fr->pad));
    memset(fr->pad, 'p', pad);
    for (size_t i = 0; i < 512; i++) {
        fr->kv[i][0] = (aero_kv){{"pad", 3}, {fr->pad, pad}};
        fr->kv[i][1] = (aero_kv){{"quote\"", 6}, {"line\nbreak\xff", 11}};
        fr->f[i] = (aero_frame){
            .size = sizeof(aero_frame),
            .agent_id = {"drone-1", 7},
            .session_id = {"sess-1", 6},
            .seq = i,
            .sent_at_unix_ns = 1700000000000000000 + (int64_t)i,
            .device_timestamp_sec = 1700000000.25,
            .raw_mavlink = {"\xfd\x09\x00", 3},
            .dialect = {"common", 6},
            .msg_id = 0,
            .msg_name = {"HEARTBEAT", 9},
            .fields = fr->kv[i],
            .n_fields = 2,
            .flight_id = {"f-1", 3},
            .received_unix_ns = 1700000000000000000,
        };
        fr->p[i] = &fr->f[i];
    }
    return fr;
}

/* Writes frames [from, from+n) and returns how many came back AERO_OK; the
 * others must all be AERO_RETRY. */
static size_t write_frames(void *inst, struct frames *fr, size_t from, size_t n)
{
    aero_result res[512];
    memset(res, 0x7f, sizeof(res));
    vt->write_batch(inst, fr->p + from, n, res);
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(res[i] == AERO_OK || res[i] == AERO_RETRY, "result %d", res[i]);
        ok += res[i] == AERO_OK;
    }
    cr_assert(ok == 0 || ok == n, "a file batch is all or nothing");
    return ok;
}

/* Sorted names of the .jsonl files in dir; returns the count. */
static size_t list_files(const char *dir, char names[][256], size_t max)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "opendir %s", dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 6 && strcmp(e->d_name + len - 6, ".jsonl") == 0) {
            cr_assert_lt(n, max);
            snprintf(names[n++], 256, "%s", e->d_name);
        }
    }
    closedir(d);
    qsort(names, n, 256, (int (*)(const void *, const void *))strcmp);
    return n;
}

/*
 * Checks every .jsonl file in dir: only whole lines, each a JSON envelope
 * (python3's strict parser), and together exactly the seqs marked in
 * want[0..n) once each. Returns the number of files.
 */
static size_t check_dir(const char *dir, const unsigned char *want, size_t n)
{
    static char names[256][256];
    size_t nf = list_files(dir, names, 256);
    unsigned char *seen = calloc(n ? n : 1, 1);
    for (size_t k = 0; k < nf; k++) {
        char path[600];
        snprintf(path, sizeof(path), "%s/%s", dir, names[k]);
        size_t len;
        char *buf = sink_test_slurp(path, &len);
        cr_assert(len == 0 || buf[len - 1] == '\n', "%s ends in a partial line", path);
        for (char *line = buf; line < buf + len;) {
            char *nl = memchr(line, '\n', (size_t)(buf + len - line));
            cr_assert_not_null(nl);
            cr_assert(strncmp(line, "{\"agent_id\":\"drone-1\"", 21) == 0, "%.40s", line);
            char *sq = strstr(line, "\"seq\":");
            cr_assert(sq && sq < nl);
            unsigned long long seq = strtoull(sq + 6, NULL, 10);
            cr_assert_lt(seq, n);
            cr_assert(want[seq], "seq %llu should not be there", seq);
            cr_assert(!seen[seq], "seq %llu twice", seq);
            seen[seq] = 1;
            line = nl + 1;
        }
        free(buf);
    }
    for (size_t i = 0; i < n; i++)
        cr_assert(!want[i] || seen[i], "seq %zu missing", i);
    free(seen);

    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "%s -c 'import json,sys,glob\n"
             "for p in glob.glob(sys.argv[1]+\"/*.jsonl\"):\n"
             "  for l in open(p,\"rb\").read().decode(\"utf-8\").splitlines():\n"
             "    d=json.loads(l)\n"
             "    assert d[\"fields\"][\"quote\\\"\"]==\"line\\nbreak\\ufffd\"' %s",
             sink_test_python(), dir);
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "python3 rejected a line");
    return nf;
}

static off_t file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    return st.st_size;
}

/* -------------------------------------------------------------- tests */

Test(sink_file, directory_created_and_name_format)
{
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/a/b/c", tmpdir);
    const char *const cfg[] = {"path", dir, "prefix", "telemetry", NULL};
    fake_host *fh;
    void *inst = sink_test_instance("archive", cfg, NULL, 0, &fh);
    struct stat st;
    cr_assert_eq(stat(dir, &st), 0, "directory not created");
    cr_assert(S_ISDIR(st.st_mode));

    struct frames *fr = frames_new(10);
    cr_assert_eq(write_frames(inst, fr, 0, 10), 10);
    unsigned char want[10];
    memset(want, 1, sizeof(want));
    cr_assert_eq(check_dir(dir, want, 10), 1);

    char names[4][256];
    cr_assert_eq(list_files(dir, names, 4), 1);
    regex_t re;
    cr_assert_eq(regcomp(&re, "^telemetry-[0-9]{8}T[0-9]{6}Z\\.jsonl$",
                         REG_EXTENDED | REG_NOSUB), 0);
    cr_expect_eq(regexec(&re, names[0], 0, NULL, 0), 0, "name %s", names[0]);
    regfree(&re);

    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, names[0]);
    cr_expect_eq(sink_test_metric(fh, "aero_sink_file_written_bytes_total"), file_size(path));
    cr_expect_eq(sink_test_metric(fh, "aero_sink_file_write_errors_total"), 0);
    cr_expect_eq(fake_host_metric_type(fh, "aero_sink_file_rotations_total"),
                 AERO_METRIC_COUNTER);
    cr_expect_eq(atomic_load(&fdatasync_calls), 0, "fsync = none syncs nothing");
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_file, rotation_by_size)
{
    const char *const cfg[] = {"path", tmpdir, "rotate_bytes", "3072", NULL};
    fake_host *fh;
    void *inst = sink_test_instance("archive", cfg, NULL, 0, &fh);
    struct frames *fr = frames_new(60); /* ~430 bytes a line */

    size_t next = 0;
    for (size_t b = 0; next < 200; b++) {
        size_t n = 1 + b % 5; /* at most ~2150 bytes: always fits a file */
        if (next + n > 200)
            n = 200 - next;
        cr_assert_eq(write_frames(inst, fr, next, n), n);
        next += n;
    }
    unsigned char want[200];
    memset(want, 1, sizeof(want));
    size_t nf = check_dir(tmpdir, want, 200);
    cr_expect_geq(nf, 20, "only %zu files", nf);

    char names[256][256];
    list_files(tmpdir, names, 256);
    for (size_t k = 0; k < nf; k++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%.255s", tmpdir, names[k]);
        cr_expect_leq(file_size(path), 3072, "%s", names[k]);
    }
    int64_t rot = sink_test_metric(fh, "aero_sink_file_rotations_total");
    cr_expect(rot == (int64_t)nf - 1 || rot == (int64_t)nf, "rotations %lld, files %zu",
              (long long)rot, nf);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_file, batch_larger_than_rotate_bytes_gets_own_file)
{
    const char *const cfg[] = {"path", tmpdir, "rotate_bytes", "1024", NULL};
    fake_host *fh;
    void *inst = sink_test_instance("archive", cfg, NULL, 0, &fh);
    struct frames *fr = frames_new(600);
    cr_assert_eq(write_frames(inst, fr, 0, 4), 4);  /* ~3 KB, one file */
    cr_assert_eq(write_frames(inst, fr, 4, 1), 1);  /* the next file */
    unsigned char want[5] = {1, 1, 1, 1, 1};
    cr_expect_eq(check_dir(tmpdir, want, 5), 2);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_file, rotation_by_interval)
{
    const char *const cfg[] = {"path", tmpdir, "rotate_interval_s", "1", NULL};
    fake_host *fh;
    void *inst = sink_test_instance("archive", cfg, NULL, 0, &fh);
    struct frames *fr = frames_new(10);

    /* Poll: write a frame every 20 ms until a second file appears. */
    struct timespec t0, now, pause = {0, 20 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t next = 0;
    char names[8][256];
    do {
        cr_assert_lt(next, 512);
        cr_assert_eq(write_frames(inst, fr, next, 1), 1);
        next++;
        nanosleep(&pause, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
        cr_assert_lt(now.tv_sec - t0.tv_sec, 10, "no rotation within 10 s");
    } while (list_files(tmpdir, names, 8) < 2);
    double waited = (double)(now.tv_sec - t0.tv_sec) +
                    (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
    cr_expect_geq(waited, 0.95, "rotated after %.3f s", waited);
    cr_expect_eq(sink_test_metric(fh, "aero_sink_file_rotations_total"), 1);

    unsigned char want[512] = {0};
    memset(want, 1, next);
    cr_expect_eq(check_dir(tmpdir, want, next), 2);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_file, fsync_batch_syncs_once_per_batch)
{
    const char *const cfg[] = {"path", tmpdir, "fsync", "batch", NULL};
    fake_host *fh;
    void *inst = sink_test_instance("archive", cfg, NULL, 0, &fh);
    struct frames *fr = frames_new(20);
    char names[4][256], path[512];
    cr_assert_eq(list_files(tmpdir, names, 4), 1);
    snprintf(path, sizeof(path), "%s/%s", tmpdir, names[0]);

    size_t next = 0;
    for (int b = 0; b < 5; b++) {
        int before = atomic_load(&fdatasync_calls);
        cr_assert_eq(write_frames(inst, fr, next, 7), 7);
        next += 7;
        cr_expect_eq(atomic_load(&fdatasync_calls) - before, 1);
        /* On disk (in the file) as soon as the OK is reported. */
        size_t len;
        char *buf = sink_test_slurp(path, &len);
        size_t lines = 0;
        for (size_t i = 0; i < len; i++)
            lines += buf[i] == '\n';
        cr_expect_eq(lines, next);
        free(buf);
    }
    cr_expect_eq(vt->flush(inst), 0);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_file, failed_fsync_retries_and_starts_new_file)
{
    const char *const cfg[] = {"path", tmpdir, "fsync", "batch", NULL};
    fake_host *fh;
    void *inst = sink_test_instance("archive", cfg, NULL, 0, &fh);
    struct frames *fr = frames_new(20);
    cr_assert_eq(write_frames(inst, fr, 0, 5), 5);
    atomic_store(&fdatasync_fail, 1);
    cr_assert_eq(write_frames(inst, fr, 5, 5), 0);
    cr_expect(fake_host_log_contains(fh, "Input/output error"));
    cr_expect_eq(sink_test_metric(fh, "aero_sink_file_write_errors_total"), 1);
    cr_assert_eq(write_frames(inst, fr, 10, 5), 5);

    unsigned char want[15] = {1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1};
    cr_expect_eq(check_dir(tmpdir, want, 15), 2, "a new file after a failed sync");
    sink_test_destroy(inst);
    free(fr);
}

/* The first file's lines survive, then a limit on file size (EFBIG) makes
 * batches fail; after the limit is raised the same instance goes on. */
static void full_disk_cycle(fake_host *fh, void *inst, struct frames *fr,
                            void (*make_full)(const char *path),
                            void (*make_room)(void))
{
    cr_assert_eq(write_frames(inst, fr, 0, 10), 10);
    char names[4][256], path[512];
    cr_assert_eq(list_files(tmpdir, names, 4), 1);
    snprintf(path, sizeof(path), "%s/%s", tmpdir, names[0]);
    off_t good = file_size(path);

    make_full(path);
    cr_assert_eq(write_frames(inst, fr, 10, 10), 0, "full disk must RETRY");
    cr_expect_eq(file_size(path), good, "the failed batch was not cut off");
    cr_assert_eq(write_frames(inst, fr, 20, 10), 0);
    cr_expect_eq(file_size(path), good);
    cr_expect_eq(sink_test_metric(fh, "aero_sink_file_write_errors_total"), 2);
    /* Two failures within a second: one warning. */
    cr_expect_eq(fake_host_log_count(fh, AERO_LOG_WARN), 1);

    make_room();
    cr_assert_eq(write_frames(inst, fr, 30, 10), 10, "no recovery");
    unsigned char want[40] = {0};
    memset(want, 1, 10);
    memset(want + 30, 1, 10);
    cr_expect_eq(check_dir(tmpdir, want, 40), 1);
}

static rlim_t saved_fsize;

static void limit_file_size(const char *path)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    saved_fsize = rl.rlim_cur;
    /* Room for part of the next batch: the write is cut short, then EFBIG. */
    rl.rlim_cur = (rlim_t)file_size(path) + 100;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void unlimit_file_size(void)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = saved_fsize;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

Test(sink_file, file_too_large_retries_then_recovers)
{
    signal(SIGXFSZ, SIG_IGN); /* EFBIG instead of death; this process only */
    const char *const cfg[] = {"path", tmpdir, NULL};
    fake_host *fh;
    void *inst = sink_test_instance("archive", cfg, NULL, 0, &fh);
    struct frames *fr = frames_new(100);
    full_disk_cycle(fh, inst, fr, limit_file_size, unlimit_file_size);
    sink_test_destroy(inst);
    free(fr);
}

static char filler[600];

static void fill_tmpfs(const char *path)
{
    /* Take all the space left, whole pages, so the next batch hits ENOSPC. */
    snprintf(filler, sizeof(filler), "%s/filler", tmpdir);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    char block[4096];
    memset(block, 'x', sizeof(block));
    while (write(fd, block, sizeof(block)) > 0)
        ;
    cr_assert_eq(errno, ENOSPC);
    close(fd); /* the sink's last page keeps some room: a short write */
}

static void free_tmpfs(void)
{
    cr_assert_eq(unlink(filler), 0);
}

/* A real ENOSPC on a 128 KiB tmpfs, in a private mount namespace so nothing
 * outlives the test process. Needs CAP_SYS_ADMIN; without it the test
 * falls back to the EFBIG path so the recovery cycle still runs. */
Test(sink_file, disk_full_retries_then_recovers)
{
    int mounted = unshare(CLONE_NEWNS) == 0 &&
                  mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
                  mount("tmpfs", tmpdir, "tmpfs", 0, "size=128k") == 0;
    if (!mounted) {
        cr_log_warn("cannot mount a tmpfs (%s): testing EFBIG instead of ENOSPC",
                    strerror(errno));
        signal(SIGXFSZ, SIG_IGN);
    }
    const char *const cfg[] = {"path", tmpdir, NULL};
    fake_host *fh;
    void *inst = sink_test_instance("archive", cfg, NULL, 0, &fh);
    struct frames *fr = frames_new(3000); /* ~3.4 KB a line, 34 KB a batch */
    if (mounted) {
        full_disk_cycle(fh, inst, fr, fill_tmpfs, free_tmpfs);
        cr_expect(fake_host_log_contains(fh, "No space left on device"));
    } else {
        full_disk_cycle(fh, inst, fr, limit_file_size, unlimit_file_size);
    }
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_file, unwritable_path_retries_then_recovers)
{
    char blocker[128], dir[160];
    snprintf(blocker, sizeof(blocker), "%s/blocker", tmpdir);
    snprintf(dir, sizeof(dir), "%s/sub", blocker);
    int fd = open(blocker, O_WRONLY | O_CREAT, 0600); /* a file, not a dir */
    cr_assert_geq(fd, 0);
    close(fd);

    const char *const cfg[] = {"path", dir, NULL};
    fake_host *fh;
    void *inst = sink_test_instance("archive", cfg, NULL, 0, &fh); /* not fatal at start */
    cr_expect(fake_host_log_contains(fh, "Not a directory"));
    struct frames *fr = frames_new(10);
    cr_assert_eq(write_frames(inst, fr, 0, 3), 0);
    cr_expect_eq(sink_test_metric(fh, "aero_sink_file_write_errors_total"), 1);

    cr_assert_eq(unlink(blocker), 0);
    cr_assert_eq(write_frames(inst, fr, 3, 3), 3);
    unsigned char want[6] = {0, 0, 0, 1, 1, 1};
    cr_expect_eq(check_dir(dir, want, 6), 1);
    sink_test_destroy(inst);
    free(fr);
}

Test(sink_file, reopen_starts_new_file)
{
    const char *const cfg[] = {"path", tmpdir, "prefix", "tlm", NULL};
    fake_host *fh;
    void *inst = sink_test_instance("archive", cfg, NULL, 0, &fh);
    struct frames *fr = frames_new(10);
    cr_assert_eq(write_frames(inst, fr, 0, 4), 4);

    /* logrotate: move the file away, then SIGHUP. */
    char names[4][256], from[512], to[512];
    cr_assert_eq(list_files(tmpdir, names, 4), 1);
    snprintf(from, sizeof(from), "%s/%s", tmpdir, names[0]);
    snprintf(to, sizeof(to), "%s/rotated.old", tmpdir);
    cr_assert_eq(rename(from, to), 0);
    cr_assert_eq(vt->reopen(inst), 0);
    cr_assert_eq(write_frames(inst, fr, 4, 4), 4);

    unsigned char want[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    cr_expect_eq(check_dir(tmpdir, want, 8), 1);
    size_t len;
    char *old = sink_test_slurp(to, &len);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += old[i] == '\n';
    cr_expect_eq(lines, 4, "the moved file was written after reopen");
    free(old);
    sink_test_destroy(inst);
    free(fr);
}

/* Names already taken (by another relay, or an earlier rotation in the same
 * second) are never appended to: the sink picks a -N suffix. */
Test(sink_file, never_appends_to_existing_file)
{
    time_t t = time(NULL);
    for (int k = 0; k < 3; k++) {
        time_t tk = t + k;
        struct tm tm;
        gmtime_r(&tk, &tm);
        char stamp[32], path[512];
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
        snprintf(path, sizeof(path), "%s/telemetry-%s.jsonl", tmpdir, stamp);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs("old\n", f);
        fclose(f);
    }
    const char *const cfg[] = {"path", tmpdir, NULL};
    fake_host *fh;
    void *inst = sink_test_instance("archive", cfg, NULL, 0, &fh);
    struct frames *fr = frames_new(10);
    cr_assert_eq(write_frames(inst, fr, 0, 3), 3);

    char names[8][256];
    size_t nf = list_files(tmpdir, names, 8);
    cr_assert_eq(nf, 4);
    size_t with_old = 0;
    for (size_t k = 0; k < nf; k++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%.255s", tmpdir, names[k]);
        size_t len;
        char *buf = sink_test_slurp(path, &len);
        if (strcmp(buf, "old\n") == 0)
            with_old++;
        else
            cr_expect(strstr(names[k], "Z-1.jsonl") != NULL, "%s", names[k]);
        free(buf);
    }
    cr_expect_eq(with_old, 3);
    sink_test_destroy(inst);
    free(fr);
}

/* A batch bigger than the sink's 4 MiB write chunk goes out in pieces, but
 * fails and is cut back as a whole. */
Test(sink_file, batch_over_chunk_size_is_all_or_nothing)
{
    signal(SIGXFSZ, SIG_IGN);
    const char *const cfg[] = {"path", tmpdir, NULL};
    fake_host *fh;
    void *inst = sink_test_instance("archive", cfg, NULL, 0, &fh);
    struct frames *fr = frames_new(9500); /* 510 lines of ~9.7 KB: 4.9 MB */
    cr_assert_eq(write_frames(inst, fr, 0, 2), 2);
    char names[4][256], path[512];
    cr_assert_eq(list_files(tmpdir, names, 4), 1);
    snprintf(path, sizeof(path), "%s/%s", tmpdir, names[0]);
    off_t good = file_size(path);

    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rlim_t saved = rl.rlim_cur;
    rl.rlim_cur = (rlim_t)good + 4608 * 1024; /* the first chunk fits */
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    cr_assert_eq(write_frames(inst, fr, 2, 510), 0);
    cr_expect_eq(file_size(path), good);

    rl.rlim_cur = saved;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    cr_assert_eq(write_frames(inst, fr, 2, 510), 510);
    cr_expect_gt(file_size(path), 4 * 1024 * 1024);
    cr_expect_eq(sink_test_metric(fh, "aero_sink_file_written_bytes_total"), file_size(path));
    unsigned char want[512];
    memset(want, 1, sizeof(want));
    cr_expect_eq(check_dir(tmpdir, want, 512), 1);
    sink_test_destroy(inst);
    free(fr);
}

/* check reports each problem with its relay.ini line (section on line 1,
 * pair i of the config on line 2 + i), a path it could not create or write
 * included, and creates nothing. */
Test(sink_file, check_reports_every_problem_with_file_and_line)
{
    char blocker[128], under_file[200], fresh[200], want[1024];
    snprintf(blocker, sizeof(blocker), "%s/blocker", tmpdir);
    snprintf(under_file, sizeof(under_file), "%s/sub/deeper", blocker);
    snprintf(fresh, sizeof(fresh), "%s/new/a/b", tmpdir);
    int fd = open(blocker, O_WRONLY | O_CREAT, 0600); /* a file, not a dir */
    cr_assert_geq(fd, 0);
    close(fd);

    const char *const under[] = {"path", under_file, NULL};
    snprintf(want, sizeof(want),
             "relay.ini:2: [sink:archive] path: cannot create or write \"%s\" (%s: Not a "
             "directory)\n", under_file, blocker);
    sink_test_check("archive", under, want, false);

    const char *const is_file[] = {"fsync", "batch", "path", blocker, NULL};
    snprintf(want, sizeof(want),
             "relay.ini:3: [sink:archive] path: cannot create or write \"%s\" (%s: Not a "
             "directory)\n", blocker, blocker);
    sink_test_check("archive", is_file, want, false);

    const char *const devnull[] = {"prefix", "x", "path", "/dev/null/data/", NULL};
    sink_test_check("archive", devnull,
                    "relay.ini:3: [sink:archive] path: cannot create or write "
                    "\"/dev/null/data/\" (/dev/null: Not a directory)\n", false);

    const char *const prefix[] = {"path", tmpdir, "prefix", "a/b", NULL};
    sink_test_check("archive", prefix,
                    "relay.ini:3: [sink:archive] prefix: \"a/b\" must not contain '/'\n", true);

    const char *const empty[] = {"path", "", "prefix", "", NULL};
    sink_test_check("archive", empty,
                    "relay.ini:2: [sink:archive] path: must not be empty\n"
                    "relay.ini:3: [sink:archive] prefix: must not be empty\n", true);

    /* A directory that does not exist yet but can be made passes, and
     * check() does not make it. */
    const char *const ok[] = {"path", fresh, "fsync", "batch", "rotate_bytes", "0", NULL};
    sink_test_check("archive", ok, "", false);
    struct stat st;
    cr_expect_neq(stat(fresh, &st), 0, "check() created %s", fresh);
    cr_expect_eq(errno, ENOENT);
}

Test(sink_file, bad_config_and_half_built_destroy)
{
    const char *const cfg[] = {"path", tmpdir, "prefix", "a/b", NULL};
    fake_host *fh = fake_host_new(desc, "archive", cfg);
    cr_assert_not_null(fh);
    void *inst = NULL;
    cr_expect_eq(vt->create(fake_host_api(fh), &inst), -EINVAL);
    cr_expect_eq(fake_host_config_error_count(fh), 1);
    vt->destroy(inst); /* half-built: must not crash or leak */
    vt->destroy(NULL);
    fake_host_free(fh);

    const char *const bad_enum[] = {"fsync", "sometimes", NULL};
    cr_expect_null(fake_host_new(desc, "archive", bad_enum));
    const char *const bad_int[] = {"rotate_bytes", "-1", NULL};
    cr_expect_null(fake_host_new(desc, "archive", bad_int));
    const char *const unknown[] = {"colour", "blue", NULL};
    cr_expect_null(fake_host_new(desc, "archive", unknown));
    const char *const core_keys[] = {"plugin", "sink-file", "queue", "16",
                                     "on_full", "reject", NULL};
    fh = fake_host_new(desc, "archive", core_keys);
    cr_expect_not_null(fh);
    fake_host_free(fh);
}

Test(sink_file, descriptor)
{
    cr_expect_eq(desc->abi_major, AERO_ABI_MAJOR);
    cr_expect_eq(desc->kind, AERO_PLUGIN_SINK);
    cr_expect_str_eq(desc->name, "sink-file");
    cr_expect_eq(vt->n_keys, 5);
    cr_expect_eq(vt->key_size, sizeof(aero_config_key));
}
