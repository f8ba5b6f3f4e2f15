#!/usr/bin/env bash
# Installs what is missing, builds everything and runs every test, twice:
#   1. the normal build (build-test/): the whole suite, including the short
#      fuzz run (fuzz_short) and the relay under valgrind (test_e2e_valgrind);
#   2. the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer
#      (build-asan/, -DAERO_SANITIZE=ON): every test binary, plugin and the
#      relay the integration tests start are instrumented, and LeakSanitizer
#      makes a leaking relay exit non-zero, which the tests check.
# Arguments go to both ctest runs (e.g. -R test_e2e). AERO_TEST_ASAN=0 skips
# the second pass for a quick local run; CI (.ci/run) always runs both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
jobs=$(nproc)
t0=$SECONDS

cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAERO_TESTS=ON >/dev/null
cmake --build build-test -j"$jobs"
ctest --test-dir build-test --output-on-failure --timeout 600 "$@"
echo "test.sh: normal build and suite: $((SECONDS - t0)) s" >&2

if [ "${AERO_TEST_ASAN:-1}" = 0 ]; then
  exit 0
fi
t1=$SECONDS
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAERO_TESTS=ON -DAERO_SANITIZE=ON \
  >/dev/null
cmake --build build-asan -j"$jobs"
# Not run here, and why:
#  - the packaging tests (package_build and the four that read its output)
#    configure and build the project a second time with the flags packages
#    ship with, never with the sanitizers: here they would only repeat the
#    first pass at the cost of a full rebuild;
#  - fuzz_short and test_e2e_valgrind are not even defined in this build
#    (the fuzz targets carry ASan themselves; valgrind cannot run an ASan
#    binary).
# Tests run two at a time: most of them wait on sockets and child
# processes, and the sanitizer pass would otherwise dominate CI time.
skip='^(package_build|test_install_tree|test_example_sink|test_plugin_guide|test_packages)$'
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:check_initialization_order=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
  ctest --test-dir build-asan --output-on-failure --timeout 600 -j2 -E "$skip" "$@"
echo "test.sh: sanitizer build and suite: $((SECONDS - t1)) s (total $((SECONDS - t0)) s)" >&2
