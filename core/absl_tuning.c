/*
 * absl_tuning.c - Debian builds Abseil without NDEBUG, which leaves Mutex
 * deadlock detection on: every lock of every gRPC mutex also updates a
 * process-wide lock-order graph under one global lock. Under load that is
 * about 3% of the relay's CPU (docs/benchmarks.md) and a point of
 * contention between workers. Release builds of Abseil never run it.
 *
 * Abseil has no C API, so absl::SetMutexDeadlockDetectionMode is looked up
 * by its mangled name. The name holds the inline namespace the installed
 * Abseil was built with, which its options.h (plain macros) records.
 */
#include "absl_tuning.h"

#include <absl/base/options.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#define AERO_STR(x) #x
#define AERO_XSTR(x) AERO_STR(x)

bool absl_tuning_deadlock_detection_off(void)
{
    char name[160];
#if ABSL_OPTION_USE_INLINE_NAMESPACE
    const char *ns = AERO_XSTR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
    /* absl::<ns>::SetMutexDeadlockDetectionMode(absl::<ns>::OnDeadlockCycle) */
    snprintf(name, sizeof(name),
             "_ZN4absl%zu%s29SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE", strlen(ns),
             ns);
#else
    snprintf(name, sizeof(name), "_ZN4absl29SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE");
#endif
    void *sym = dlsym(RTLD_DEFAULT, name);
    if (!sym)
        return false;
    /* enum class OnDeadlockCycle { kIgnore, kReport, kAbort }: an int. */
    void (*set_mode)(int);
    memcpy(&set_mode, &sym, sizeof(set_mode));
    set_mode(0);
    return true;
}
