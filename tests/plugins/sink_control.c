/*
 * test-sink-control: a sink the tests steer through files, to make a sink
 * slow, stuck or failing on demand without touching the relay:
 *   hold_file   while this file exists, write_batch waits (polls every 5 ms)
 *   fail_file   while this file exists, every frame gets `fail_result`
 *   count_file  after each batch, the number of frames seen so far is
 *               written here (tests read it to see what reached the sink)
 */
#include <aeroarc/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const aero_config_key keys[] = {
    {.name = "hold_file", .type = AERO_KEY_STRING, .default_value = "", .help = "block while it exists"},
    {.name = "fail_file", .type = AERO_KEY_STRING, .default_value = "", .help = "fail while it exists"},
    {.name = "fail_result", .type = AERO_KEY_ENUM, .default_value = "retry",
     .choices = "retry|backoff|reject", .help = "result reported while failing"},
    {.name = "count_file", .type = AERO_KEY_STRING, .default_value = "", .help = "frames seen"},
};

struct control {
    const aero_host *host;
    const char *hold_file, *fail_file, *count_file;
    aero_result fail_result;
    unsigned long long seen;
};

static int exists(const char *path) { return *path && access(path, F_OK) == 0; }

static int control_create(const aero_host *host, void **instance)
{
    struct control *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->host = host;
    c->hold_file = host->config_get(host, "hold_file");
    c->fail_file = host->config_get(host, "fail_file");
    c->count_file = host->config_get(host, "count_file");
    const char *r = host->config_get(host, "fail_result");
    c->fail_result = strcmp(r, "backoff") == 0  ? AERO_BACKOFF
                     : strcmp(r, "reject") == 0 ? AERO_REJECT
                                                : AERO_RETRY;
    *instance = c;
    return 0;
}

static void write_count(struct control *c)
{
    if (!*c->count_file)
        return;
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", c->count_file);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "%llu\n", c->seen);
    fclose(f);
    rename(tmp, c->count_file); /* readers never see a half-written number */
}

static void control_write_batch(void *instance, const aero_frame *const *frames, size_t n,
                                aero_result *results)
{
    struct control *c = instance;
    const struct timespec pause = {0, 5000000};
    (void)frames;
    while (exists(c->hold_file))
        nanosleep(&pause, NULL);
    aero_result r = exists(c->fail_file) ? c->fail_result : AERO_OK;
    for (size_t i = 0; i < n; i++)
        results[i] = r;
    c->seen += n;
    write_count(c);
}

static void control_destroy(void *instance) { free(instance); }

static const aero_sink_vtable vtable = {
    .size = sizeof(aero_sink_vtable),
    AERO_KEYS(keys),
    .create = control_create,
    .write_batch = control_write_batch,
    .destroy = control_destroy,
};

static const aero_plugin_descriptor descriptor = {
    AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_SINK),
    .name = "test-sink-control",
    .description = "a sink steered by files, for tests",
    .vtable = &vtable,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void) { return &descriptor; }
