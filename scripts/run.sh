#!/usr/bin/env bash
# Installs what is missing, builds, and runs the relay on the shipped
# relay.ini (gRPC 127.0.0.1:50051, HTTP 127.0.0.1:2112, frames to
# ./data/telemetry-*.jsonl). Extra arguments go to aeroarc-relay (e.g.
# --check). Each step says what it does on stderr: a first build takes
# minutes, and a silent terminal looks hung.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'run.sh: %s\n' "$*" >&2; }

say "checking the Debian packages the build needs (scripts/deps.sh; may ask for sudo)"
scripts/deps.sh
say "configuring the build in build/ (cmake, RelWithDebInfo)"
log=build/run-build.log
mkdir -p build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAERO_TESTS=OFF >"$log" 2>&1 ||
  { cat "$log" >&2; say "configuring failed (above; also in $log)"; exit 1; }
say "building with $(nproc) job(s) (a first build takes a few minutes; output in $log)"
cmake --build build -j"$(nproc)" >>"$log" 2>&1 ||
  { tail -n 40 "$log" >&2; say "the build failed (the end of $log is above)"; exit 1; }
say "starting build/aeroarc-relay -c relay.ini $*"
[ $# -gt 0 ] || say "gRPC on 127.0.0.1:50051, /metrics /healthz /readyz on 127.0.0.1:2112, frames to ./data/telemetry-*.jsonl; Ctrl-C stops it"
exec build/aeroarc-relay -c relay.ini "$@"
