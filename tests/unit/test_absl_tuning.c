/*
 * absl_tuning_deadlock_detection_off: the switch is found in the installed Abseil
 * and does turn detection off. Detection is observable: in Debian's build
 * (no NDEBUG) locking two gRPC mutexes in both orders, even from one thread
 * and with no deadlock possible, makes Abseil abort the process.
 */
#include "absl_tuning.h"

#include <criterion/criterion.h>
#include <grpc/support/sync.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

/* In a child: lock a then b, then b then a. Returns the child's wait status. */
static int lock_in_both_orders(void)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        /* Abseil's cycle report: expected before the switch, not worth showing. */
        freopen("/dev/null", "w", stderr);
        gpr_mu a, b;
        gpr_mu_init(&a);
        gpr_mu_init(&b);
        gpr_mu_lock(&a);
        gpr_mu_lock(&b);
        gpr_mu_unlock(&b);
        gpr_mu_unlock(&a);
        gpr_mu_lock(&b);
        gpr_mu_lock(&a);
        gpr_mu_unlock(&a);
        gpr_mu_unlock(&b);
        _exit(0);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return status;
}

Test(absl_tuning, turns_off_deadlock_detection)
{
    int before = lock_in_both_orders();
    cr_log_info("lock-order inversion before: %s",
                WIFSIGNALED(before) ? "process aborted (detection on)" : "no report");
    cr_assert(absl_tuning_deadlock_detection_off(), "no SetMutexDeadlockDetectionMode in this Abseil");
    int after = lock_in_both_orders();
    cr_assert(WIFEXITED(after) && WEXITSTATUS(after) == 0,
              "inverted lock order still aborts after the switch (status %#x)", after);
}
