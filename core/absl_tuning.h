/*
 * absl_tuning.h - run the Abseil under gRPC as a release build would.
 */
#ifndef AERO_ABSL_TUNING_H
#define AERO_ABSL_TUNING_H

#include <stdbool.h>

/*
 * Turn off Abseil's Mutex deadlock detection (a debugging aid Debian's
 * build leaves on). Call before gRPC starts. Returns false if the running
 * Abseil has no such switch under the name expected (nothing changed).
 */
bool absl_tuning_deadlock_detection_off(void);

#endif
