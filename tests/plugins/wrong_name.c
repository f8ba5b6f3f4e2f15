/* A sink whose descriptor names another plugin than its file (built as
 * test-wrong-name.so, says "test-other-name"): the relay must refuse it. */
#include <aeroarc/plugin.h>

#include <stdlib.h>

static int wn_create(const aero_host *host, void **instance)
{
    (void)host;
    *instance = malloc(1);
    return *instance ? 0 : -12;
}

static void wn_write_batch(void *instance, const aero_frame *const *frames, size_t n,
                           aero_result *results)
{
    (void)instance;
    (void)frames;
    for (size_t i = 0; i < n; i++)
        results[i] = AERO_OK;
}

static void wn_destroy(void *instance) { free(instance); }

static const aero_sink_vtable vtable = {
    .size = sizeof(aero_sink_vtable),
    .key_size = sizeof(aero_config_key),
    .create = wn_create,
    .write_batch = wn_write_batch,
    .destroy = wn_destroy,
};

static const aero_plugin_descriptor descriptor = {
    AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_SINK),
    .name = "test-other-name",
    .description = "a sink whose name is not its file name",
    .vtable = &vtable,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void) { return &descriptor; }
