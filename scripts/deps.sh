#!/usr/bin/env bash
# Installs the Debian packages aeroarc-relay needs, only those missing.
#   scripts/deps.sh          build and run
#   scripts/deps.sh test     also what the tests need
#   scripts/deps.sh bench    also what tools/bench-compare.sh needs
set -euo pipefail

pkgs=(cmake make gcc pkg-config
      libgrpc-dev libprotobuf-c-dev protobuf-c-compiler
      libinih-dev libltdl-dev libhiredis-dev libmicrohttpd-dev libssl-dev
      libmosquitto-dev libcurl4-openssl-dev zlib1g-dev)  # zlib: sink-influxdb3 gzip
pkgs+=(libnats-dev)  # sink-nats (libnats, NATS JetStream client)
if [ "${1:-}" = test ]; then
  pkgs+=(nats-server)  # sink-nats tests start their own JetStream server
  pkgs+=(prometheus libcriterion-dev redis-server clang valgrind python3 openssl mosquitto influxdb)
  pkgs+=(dpkg-dev file groff-base systemd procps)  # tests/package: cpack -G DEB, dpkg-shlibdeps, man page and unit checks
  pkgs+=(lintian)  # tests/package/test_packages.sh: no lintian error on the .debs
  pkgs+=(python3-grpcio python3-protobuf protobuf-compiler)  # tests/integration/gen2_client.py: a second, Python generation-2 client
  pkgs+=(haproxy)  # tests/integration/test_e2e_edge.c: examples/edge/haproxy.cfg in front of the relay
fi
if [ "${1:-}" = bench ]; then
  pkgs+=(g++ libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler redis-server python3)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
