/* A sink that claims plugin ABI 2: the relay must refuse it by name. */
#include <aeroarc/plugin.h>

static const aero_plugin_descriptor descriptor = {
    .size = sizeof(aero_plugin_descriptor),
    .abi_major = AERO_ABI_MAJOR + 1,
    .abi_minor = 0,
    .kind = AERO_PLUGIN_SINK,
    .name = "test-bad-abi",
    .description = "built for another ABI major",
    .vtable = 0,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void) { return &descriptor; }
