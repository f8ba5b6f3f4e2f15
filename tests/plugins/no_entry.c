/* A shared object without aeroarc_plugin_entry: not a plugin at all. */
#include <aeroarc/plugin.h>

AERO_EXPORT int not_the_entry(void);
AERO_EXPORT int not_the_entry(void) { return 42; }
