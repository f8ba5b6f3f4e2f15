#!/usr/bin/env bash
# Installs what is missing, builds, and runs the relay on the shipped
# relay.ini (gRPC :50051, HTTP :2112, sink-stdout + sink-file to ./data).
# Extra arguments go to aeroarc-relay (e.g. --check).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAERO_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
exec build/aeroarc-relay -c relay.ini "$@"
