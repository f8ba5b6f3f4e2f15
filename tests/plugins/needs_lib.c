/* A plugin linked against a library that is not where the dynamic loader
 * looks (libaero-test-gone.so, built into a directory of its own, no
 * rpath): loading it must say which library is missing, not "file not
 * found" (issue 18). It never gets as far as its entry. */
#include <aeroarc/plugin.h>

int aero_test_gone(void); /* in libaero-test-gone.so */

AERO_EXPORT int aeroarc_needs_lib_probe(void);
AERO_EXPORT int aeroarc_needs_lib_probe(void) { return aero_test_gone(); }
