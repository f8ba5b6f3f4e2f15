/*
 * A sink from a newer minor of ABI 1: its descriptor and vtable carry
 * fields this relay does not know (appended, as minors may), so their
 * sizes are larger than the relay's structs. The relay must load it and
 * ignore what it does not know.
 */
#include <aeroarc/plugin.h>

#include <stdlib.h>

struct newer_vtable {
    aero_sink_vtable v1_0;
    int (*future_slot)(void *instance);
};

struct newer_descriptor {
    aero_plugin_descriptor v1_0;
    const char *future_field;
};

static int new_create(const aero_host *host, void **instance)
{
    (void)host;
    *instance = malloc(1);
    return *instance ? 0 : -12;
}

static void new_write_batch(void *instance, const aero_frame *const *frames, size_t n,
                            aero_result *results)
{
    (void)instance;
    (void)frames;
    for (size_t i = 0; i < n; i++)
        results[i] = AERO_OK;
}

static void new_destroy(void *instance) { free(instance); }
static int future(void *instance) { (void)instance; return 0; }

static const struct newer_vtable vtable = {
    .v1_0 = {.size = sizeof(struct newer_vtable),
             .key_size = sizeof(aero_config_key),
             .create = new_create,
             .write_batch = new_write_batch,
             .destroy = new_destroy},
    .future_slot = future,
};

static const struct newer_descriptor descriptor = {
    .v1_0 = {.size = sizeof(struct newer_descriptor),
             .abi_major = AERO_ABI_MAJOR,
             .abi_minor = AERO_ABI_MINOR + 1,
             .kind = AERO_PLUGIN_SINK,
             .name = "test-new-minor",
             .description = "a sink from a newer minor",
             .vtable = &vtable},
    .future_field = "unknown to this relay",
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void) { return &descriptor.v1_0; }
