/*
 * A sink as an older minor of ABI 1 lays it out: its key table uses a
 * shorter aero_config_key (no `required` field, so a smaller key_size
 * stride), its vtable has no flush/reopen, and its descriptor and vtable
 * sizes stop at their last 1.0 field. The relay must load it, read its keys
 * with the plugin's own stride, and treat the missing slots as absent.
 */
#include <aeroarc/plugin.h>

#include <stddef.h>
#include <stdlib.h>

struct old_key {
    const char *name;
    aero_key_type type;
    const char *default_value;
    const char *help;
    const char *choices;
    int64_t min, max;
};

static const struct old_key keys[] = {
    {"greeting", AERO_KEY_STRING, "hello", "a key from an older minor", NULL, 0, 0},
};

static int old_create(const aero_host *host, void **instance)
{
    *instance = malloc(1);
    host->log(host, AERO_LOG_INFO, "old minor sink says %s", host->config_get(host, "greeting"));
    return *instance ? 0 : -12;
}

static void old_write_batch(void *instance, const aero_frame *const *frames, size_t n,
                            aero_result *results)
{
    (void)instance;
    (void)frames;
    for (size_t i = 0; i < n; i++)
        results[i] = AERO_OK;
}

static void old_destroy(void *instance) { free(instance); }

static const aero_sink_vtable vtable = {
    .size = offsetof(aero_sink_vtable, destroy) + sizeof(void (*)(void *)),
    .keys = (const aero_config_key *)(const void *)keys,
    .n_keys = 1,
    .key_size = sizeof(struct old_key),
    .create = old_create,
    .write_batch = old_write_batch,
    .destroy = old_destroy,
};

static const aero_plugin_descriptor descriptor = {
    .size = offsetof(aero_plugin_descriptor, vtable) + sizeof(const void *),
    .abi_major = AERO_ABI_MAJOR,
    .abi_minor = 0,
    .kind = AERO_PLUGIN_SINK,
    .name = "test-old-minor",
    .description = "a sink from an older minor",
    .vtable = &vtable,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void) { return &descriptor; }
