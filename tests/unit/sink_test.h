/*
 * sink_test.h - the scaffolding the sink plugins' unit tests share around
 * tests/fake_host.h: the plugin under test loaded for each test, instances
 * made on a fake host from a base config plus the test's own keys (and
 * destroyed in teardown even when the test fails half-way), batches written
 * with every result checked to be set, polls with a deadline until a batch
 * goes through, metrics, and reading back what a sink wrote. Criterion
 * tests only: every helper fails the test on error. One plugin at a time.
 */
#ifndef AERO_TEST_SINK_TEST_H
#define AERO_TEST_SINK_TEST_H

#include "fake_host.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* dlopen the built sink `plugin` ("sink-file"); fails the test when it is
 * not there. For setup. */
const aero_plugin_descriptor *sink_test_load(const char *plugin);

/* Destroy the instances still alive, free every host sink_test_instance
 * made and dlclose the plugin. For teardown. */
void sink_test_unload(void);

/* An instance named `name` (section "sink:<name>") configured with `base`
 * then `extra` (NULL-terminated key, value pairs; either may be NULL).
 * Fails the test unless the host accepts the config and create() returns
 * want_rc. *fh (when fh is not NULL) is its host, valid until teardown. */
void *sink_test_instance(const char *name, const char *const *base, const char *const *extra,
                         int want_rc, fake_host **fh);

/*
 * The plugin's check slot (ABI 1.1) on a host for section "sink:<name>"
 * configured with kv (pair i on line 2 + i of "relay.ini"; see
 * fake_host_new). Fails the test unless the configuration errors it
 * reported are exactly `want` (each line ending in "\n"; "" for none) and
 * it returned nonzero exactly when there were some. Then the same through
 * create() when create_too: it must fail (-EINVAL) when want is not "" and
 * succeed otherwise (the instance is destroyed at once). Returns the host,
 * valid until teardown.
 */
fake_host *sink_test_check(const char *name, const char *const *kv, const char *want,
                           bool create_too);

/* Destroy an instance now (destroy's own effects are under test); its host
 * stays readable until teardown. */
void sink_test_destroy(void *inst);

/* write_batch of n frames, every result preset to a value no sink uses:
 * fails the test unless each one is set. Returns how many are `want`;
 * res (n entries, may be NULL) gets them all. */
size_t sink_test_write(void *inst, const aero_frame *const *frames, size_t n, aero_result want,
                       aero_result *res);

/* Write the batch again every 10 ms until it all comes back `want`, for at
 * most timeout_ms. */
bool sink_test_until_all(void *inst, const aero_frame *const *frames, size_t n, aero_result want,
                         int timeout_ms);

/* The metric registered as `name`; fails the test when there is none. */
int64_t sink_test_metric(fake_host *fh, const char *name);

/* CLOCK_MONOTONIC in milliseconds, for timing a call. */
int64_t sink_test_now_ms(void);

/* A whole file (malloc'd, NUL-terminated, length in *len). */
char *sink_test_slurp(const char *path, size_t *len);

/* Debian's python3 directly: a pyenv shim first in PATH costs ~2 s a run. */
const char *sink_test_python(void);

#endif
