#!/usr/bin/env bash
# Builds every libFuzzer target in tests/fuzz/ with clang (ASan + UBSan) and
# runs each for a fixed number of inputs, starting from its seed corpus.
#   scripts/fuzz.sh [RUNS] [TARGET...]   RUNS default 20000; TARGET e.g. config
# Environment:
#   FUZZ_OUT   build and working directory (default: build-fuzz/)
#   FUZZ_ARGS  extra libFuzzer flags, e.g. "-max_total_time=3600 -jobs=2"
# New interesting inputs go to $FUZZ_OUT/corpus/<target>/ (the seeds in
# tests/fuzz/corpus/ are only read); a crash leaves $FUZZ_OUT/crash-<target>-*
# and this script exits non-zero. See docs/fuzzing.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-20000}
[ $# -gt 0 ] && shift
out=${FUZZ_OUT:-$root/build-fuzz}
cc=${FUZZ_CC:-clang}
mkdir -p "$out/gen/proto/aeroarc/agent/v1"

# protobuf-c code for the frame decoder's cross-check, as the main build
# makes it: from a copy of agent.proto without its service block.
proto=aeroarc/agent/v1/agent
if [ ! -f "$out/gen/$proto.pb-c.c" ] || [ "$root/proto/$proto.proto" -nt "$out/gen/$proto.pb-c.c" ]; then
  cmake -DIN="$root/proto/$proto.proto" -DOUT="$out/gen/proto/$proto.proto" \
    -P "$root/cmake/strip_services.cmake"
  protoc-c -I "$out/gen/proto" --c_out="$out/gen" "$out/gen/proto/$proto.proto"
fi

# shellcheck disable=SC2054 # the commas belong to -fsanitize=
cflags=(-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
        -I "$root/core" -I "$root/include" -I "$out/gen")

# target: the core sources it exercises, then the libraries it needs.
sources_of() {
  case $1 in
    frame_decoder) echo "core/frame_codec.c core/siphash.c core/wire_prepare.c core/wire_record.c $out/gen/$proto.pb-c.c" ;;
    envelope_json) echo "core/envelope_json.c" ;;
    config)        echo "core/config.c core/settings.c core/log.c" ;;
    keys_file)     echo "core/auth.c" ;;
  esac
}
libs_of() {
  case $1 in
    frame_decoder) pkg-config --libs libprotobuf-c ;;
    config)        pkg-config --libs inih ;;
    keys_file)     pkg-config --libs libcrypto ;;
  esac
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$root"/tests/fuzz/fuzz_*.c; do
    t=$(basename "$f" .c)
    targets+=("${t#fuzz_}")
  done
fi

failed=()
for t in "${targets[@]}"; do
  src="$root/tests/fuzz/fuzz_$t.c"
  [ -f "$src" ] || { echo "fuzz.sh: no target $t ($src)" >&2; exit 2; }
  bin="$out/fuzz_$t"
  deps=("$src")
  for s in $(sources_of "$t"); do
    case $s in /*) deps+=("$s") ;; *) deps+=("$root/$s") ;; esac
  done
  rebuild=0
  [ -x "$bin" ] || rebuild=1
  for d in "${deps[@]}" "$root"/core/*.h "$root"/include/aeroarc/*.h; do
    [ "$d" -nt "$bin" ] && rebuild=1
  done
  if [ $rebuild = 1 ]; then
    # shellcheck disable=SC2046
    "$cc" "${cflags[@]}" -o "$bin" "${deps[@]}" $(libs_of "$t")
  fi
  mkdir -p "$out/corpus/$t"
  seeds="$root/tests/fuzz/corpus/$t"
  echo "fuzz.sh: $t: $runs runs" >&2
  # shellcheck disable=SC2086
  if ! "$bin" -runs="$runs" -artifact_prefix="$out/crash-$t-" -print_final_stats=0 \
      ${FUZZ_ARGS:-} "$out/corpus/$t" "$seeds" >"$out/$t.log" 2>&1; then
    tail -n 40 "$out/$t.log" >&2
    echo "fuzz.sh: $t FAILED; reproduce with: $bin $out/crash-$t-*" >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failing targets: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${targets[*]}: OK" >&2
