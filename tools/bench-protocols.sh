#!/usr/bin/env bash
# The two stream generations against one relay, same load, same run:
# aeroarc-bench --protocol seed and --protocol multiplexed alternated on
# the throughput, many-agents and light-load scenarios, N rounds, a fresh
# relay (the shipped relay.ini, bench-adjusted) for every run. Prints a
# Markdown table of medians and the multiplexed / seed ratios
# (docs/benchmarks.md).
#
#   tools/bench-protocols.sh [rounds] [scenario...]
#   scenarios: throughput many light (default: all three)
#
# Loopback only; figures are from one machine at one time: compare ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
shift || true
SCENARIOS=${*:-throughput many light}
OUT=${AERO_BENCH_OUT:-/tmp/aeroarc-bench-protocols}
. tools/bench-lib.sh # the scripts cd to the checkout first
mkdir -p "$OUT"

cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DAERO_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" >/dev/null
RELAY=$PWD/build-release/aeroarc-relay
BENCH=$PWD/build-release/aeroarc-bench

trap 'pkill -P $$ 2>/dev/null || true' EXIT

# run_one <protocol> <scenario>: one measured run, one JSON line.
run_one() {
  local port; port=$(free_port)
  local dir=$OUT/relay-run
  rm -rf "$dir"; mkdir -p "$dir"
  bench_ini "$port" "" "$dir/data" >"$dir/relay.ini" || exit 1
  env -u REDIS_ADDR "$RELAY" -c "$dir/relay.ini" >/dev/null 2>"$OUT/relay.log" &
  local pid=$!
  wait_port "$port"
  local line
  line=$("$BENCH" --target "127.0.0.1:$port" --scenario "$2" --protocol "$1" \
           --server-pid "$pid" || true)
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  $PY - "$1" "$2" "$line" <<'PYEOF'
import json, sys
proto, scenario, line = sys.argv[1:4]
r = json.loads(line) if line.strip() else {"acked": 0, "acked_per_s": 0, "stream_errors": -1}
r.update(protocol=proto, scenario=scenario)
print(json.dumps(r))
PYEOF
}

RESULTS=$OUT/results.jsonl
: >"$RESULTS"
for scenario in $SCENARIOS; do
  for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="seed multiplexed"; else order="multiplexed seed"; fi
    for proto in $order; do
      run_one "$proto" "$scenario" | tee -a "$RESULTS" >&2
    done
  done
done

$PY - "$RESULTS" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(scn, proto, key):
    v = [r.get(key) for r in rows if r["scenario"] == scn and r["protocol"] == proto and r.get(key) is not None]
    return statistics.median(v) if v else None
def fmt(x, d=0):
    return "-" if x is None else f"{x:,.{d}f}"
def ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}x"
print("| scenario | protocol | acked/s | p50 µs | p99 µs | relay CPU s /100k frames | errors |")
print("|---|---|---:|---:|---:|---:|---:|")
for scn in dict.fromkeys(r["scenario"] for r in rows):
    for proto in ("seed", "multiplexed"):
        n = [r for r in rows if r["scenario"] == scn and r["protocol"] == proto]
        errs = sum(r.get("stream_errors", 0) + r.get("register_errors", 0) for r in n)
        print(f"| {scn} | {proto} | {fmt(med(scn, proto, 'acked_per_s'))} | {fmt(med(scn, proto, 'p50_us'))} "
              f"| {fmt(med(scn, proto, 'p99_us'))} | {fmt(med(scn, proto, 'server_cpu_s_per_100k'), 2)} | {errs} |")
print()
print("| scenario | multiplexed / seed acked/s | p50 | p99 | CPU per frame |")
print("|---|---:|---:|---:|---:|")
for scn in dict.fromkeys(r["scenario"] for r in rows):
    print(f"| {scn} | {ratio(med(scn, 'multiplexed', 'acked_per_s'), med(scn, 'seed', 'acked_per_s'))} "
          f"| {ratio(med(scn, 'multiplexed', 'p50_us'), med(scn, 'seed', 'p50_us'))} "
          f"| {ratio(med(scn, 'multiplexed', 'p99_us'), med(scn, 'seed', 'p99_us'))} "
          f"| {ratio(med(scn, 'multiplexed', 'server_cpu_s_per_100k'), med(scn, 'seed', 'server_cpu_s_per_100k'))} |")
print()
print(f"rounds: {len(rows) // max(1, 2 * len(set(r['scenario'] for r in rows)))}; raw results: {sys.argv[1]}")
PYEOF
