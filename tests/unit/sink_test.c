/*
 * sink_test.c - what the sink plugins' unit tests share (see sink_test.h).
 * Test threads only.
 */
#include "sink_test.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAX_INSTANCES = 32, MAX_KV = 64, MAX_BATCH = 4096 };

static void *dl;
static const aero_plugin_descriptor *desc;
static const aero_sink_vtable *vt;

/* Every instance a test made, so teardown cleans up after a failed one. */
static struct {
    fake_host *fh;
    void *inst;
} made[MAX_INSTANCES];
static size_t n_made;

const aero_plugin_descriptor *sink_test_load(const char *plugin)
{
    n_made = 0;
    desc = fake_host_load(plugin, &dl);
    cr_assert_not_null(desc, "%s.so not built in %s", plugin, AERO_PLUGIN_BUILD_DIR);
    vt = desc->vtable;
    return desc;
}

void sink_test_unload(void)
{
    for (size_t i = 0; i < n_made; i++) {
        if (made[i].inst != NULL)
            vt->destroy(made[i].inst);
        fake_host_free(made[i].fh);
    }
    n_made = 0;
    fake_host_unload(dl);
    dl = NULL;
}

static size_t append_kv(const char **kv, size_t n, const char *const *pairs)
{
    for (size_t i = 0; pairs && pairs[i]; i++) {
        cr_assert_lt(n, MAX_KV - 1, "too many config keys");
        kv[n++] = pairs[i];
    }
    return n;
}

void *sink_test_instance(const char *name, const char *const *base, const char *const *extra,
                         int want_rc, fake_host **fh)
{
    const char *kv[MAX_KV];
    size_t n = append_kv(kv, append_kv(kv, 0, base), extra);
    kv[n] = NULL;
    fake_host *host = fake_host_new(desc, name, kv);
    cr_assert_not_null(host);
    void *inst = NULL;
    int rc = vt->create(fake_host_api(host), &inst);
    cr_assert_lt(n_made, MAX_INSTANCES);
    made[n_made].fh = host;
    made[n_made].inst = inst;
    n_made++;
    cr_assert_eq(rc, want_rc, "create returned %d", rc);
    if (fh)
        *fh = host;
    return inst;
}

fake_host *sink_test_check(const char *name, const char *const *kv, const char *want,
                           bool create_too)
{
    fake_host *fh = fake_host_new(desc, name, kv);
    cr_assert_not_null(fh, "the host refused the config (see stderr)");
    cr_assert_lt(n_made, MAX_INSTANCES);
    made[n_made].fh = fh;
    made[n_made].inst = NULL;
    n_made++;
    int rc = fake_host_check(desc, fh);
    char *got = fake_host_config_errors(fh);
    cr_expect_str_eq(got, want);
    free(got);
    if (*want)
        cr_expect_neq(rc, 0, "check reported errors but returned 0");
    else
        cr_expect_eq(rc, 0, "check returned %d without an error", rc);
    if (!create_too)
        return fh;
    fake_host_config_errors_clear(fh);
    void *inst = NULL;
    rc = vt->create(fake_host_api(fh), &inst);
    vt->destroy(inst);
    if (*want) {
        cr_expect_eq(rc, -EINVAL, "create returned %d", rc);
        cr_expect_gt(fake_host_config_error_count(fh), 0, "create said nothing");
    } else {
        cr_expect_eq(rc, 0, "create returned %d", rc);
    }
    return fh;
}

void sink_test_destroy(void *inst)
{
    for (size_t i = 0; i < n_made; i++) {
        if (made[i].inst == inst) {
            made[i].inst = NULL;
            break;
        }
    }
    vt->destroy(inst);
}

size_t sink_test_write(void *inst, const aero_frame *const *frames, size_t n, aero_result want,
                       aero_result *res)
{
    aero_result local[MAX_BATCH];
    cr_assert_leq(n, MAX_BATCH);
    if (res == NULL)
        res = local;
    memset(res, 0x7f, n * sizeof(*res));
    vt->write_batch(inst, frames, n, res);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(res[i] <= AERO_REJECT, "result %d not set", (int)res[i]);
        k += res[i] == want;
    }
    return k;
}

int64_t sink_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool sink_test_until_all(void *inst, const aero_frame *const *frames, size_t n, aero_result want,
                         int timeout_ms)
{
    int64_t deadline = sink_test_now_ms() + timeout_ms;
    const struct timespec step = {0, 10 * 1000000};
    for (;;) {
        if (sink_test_write(inst, frames, n, want, NULL) == n)
            return true;
        if (sink_test_now_ms() > deadline)
            return false;
        nanosleep(&step, NULL);
    }
}

int64_t sink_test_metric(fake_host *fh, const char *name)
{
    int64_t v = -1;
    cr_assert_eq(fake_host_metric(fh, name, &v), 0, "no metric %s", name);
    return v;
}

char *sink_test_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

const char *sink_test_python(void)
{
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}
