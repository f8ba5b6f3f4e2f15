#!/usr/bin/env bash
# Runs the issue-5 comparison: aeroarc-relay against the bare C++ ackserver
# from ../shared/bench, same loadgen line, servers alternated, N rounds, and
# prints a Markdown table of medians and ratios (docs/benchmarks.md).
#
#   tools/bench-compare.sh [rounds] [scenario...]
#   scenarios: throughput many durable light scale redis influx3 commands
#   (default: all but commands), and scale1k scale30k scale60k scale100k
#   (growth = scale1k scale scale30k scale60k scale100k: memory per open
#   stream from 1,000 to 100,000 streams, 100 per connection)
#
# influx3 is not a comparison with the ackserver: the relay with sink-file
# alone against the relay with sink-file plus sink-influxdb3 writing to
# tests/integration/influx3_server.py --discard (answers 204 at once), both
# driven by aeroarc-bench --protocol multiplexed --field-names go (seed
# frames and snake-case fields would not be written), servers alternated;
# target: >= 0.8x the sink-file-alone acked/s (docs/benchmarks.md).
#
# commands is not a comparison with the ackserver either (issues 21 and 24,
# SPEC sections 10 and 12): a throwaway PKI made with openssl, the relay
# with [tls], [auth] mode = bearer, relay_id and agent mappings, with and
# without [control], driven by aeroarc-bench --protocol multiplexed, whose
# agents answer commands. Per round, in alternating order: round trips of
# SendAircraftCommand and ExchangeCommand (50/s each, one run) over 500
# idle agents (cmd-idle) and under 500 streaming agents (cmd-many); then
# AERO_BENCH_TP_GROUPS (default 3) groups of three back-to-back runs of the
# throughput load, order rotated: control off (tp-off), control on and idle
# (tp-idle), control on with 100 ExchangeCommand/s to the streaming agents
# (tp-cmd). The throughput ratios are taken within each group (runs seconds
# apart) and their median reported, so that a shared machine's drift
# between groups cancels. Targets: ExchangeCommand p50 <= 1.2x
# SendAircraftCommand's; tp-cmd and tp-idle >= 0.97x tp-off
# (docs/benchmarks.md).
#
# For commands: AERO_BENCH_TP_GROUPS (3), AERO_BENCH_CMD_SECONDS (10: the
# idle run), AERO_BENCH_CMD_FRAMES (1500 per agent: the loaded run),
# AERO_BENCH_CMD_LATENCY=0 (throughput groups only), AERO_BENCH_TP_FRAMES
# (frames per agent in the throughput groups; default the scenario's
# 20,000), AERO_BENCH_RELAY_CPUS
# and AERO_BENCH_CLIENT_CPUS (taskset -c lists: pin the relay and
# aeroarc-bench apart, so the relay's own CPU bounds throughput).
#
# AERO_BENCH_RELAY_CPUS / AERO_BENCH_CLIENT_CPUS pin every scenario's
# servers (relay, baseline and ackserver alike) and its load generator
# (taskset -c lists), e.g. RELAY_CPUS=0 for one core, 0,1 for two; the
# relay's workers = 0 follows its affinity.
#
# AERO_BENCH_SERVER_QUOTA=P caps every server (relay, baseline,
# ackserver) at P% of one CPU (cgroup cpu controller, root): with the
# relay capped under what the load generator can send, throughput ratios
# are the relay's, not the load generator's (issue 21's commands run on a
# two-core host).
#
# AERO_BENCH_SCHED=1 samples the server's threads during each loadgen run
# (tools/sched-sample.py: CPU and run-queue wait per thread name, whole run
# and busiest second) into its JSON line as "sched".
#
# AERO_BENCH_REPORT=<results.jsonl> prints the tables of an earlier run
# and runs nothing.
#
# AERO_BENCH_INFLUX3_KEYS adds keys to that [sink:telemetry] (e.g.
# "gzip_threshold = 0").
#
# AERO_BENCH_BUILD=<build dir> uses that build tree as it is instead of
# configuring and building build-release.
#
# AERO_BENCH_BASELINE=/path/to/aeroarc-relay adds a third server, another
# build of the relay (its plugins beside it, as in a build tree), to every
# round, and a table of this build against it: before/after figures from
# one sitting, the servers alternated so drift hits all alike.
#
# Needs the yardstick's build deps (scripts/deps.sh bench) and, for the
# redis scenario, redis-server. Everything runs on loopback; numbers are
# from one machine at one time: compare ratios, not absolute values.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${1:-3}
shift || true
SCENARIOS=${*:-throughput many durable light scale redis influx3}
# growth: the scale scenario at 1k, 10k, 30k, 60k and 100k open streams.
SCENARIOS=${SCENARIOS//growth/scale1k scale scale30k scale60k scale100k}
if [ -n "${AERO_BENCH_REPORT:-}" ]; then # tables only: nothing to build or run
  SCENARIOS=""; AERO_BENCH_BUILD=${AERO_BENCH_BUILD:-none}
fi
SHARED=${AERO_SHARED:-$ROOT/../shared}
OUT=${AERO_BENCH_OUT:-/tmp/aeroarc-bench-compare}
. tools/bench-lib.sh # the scripts cd to the checkout first
mkdir -p "$OUT"

need_yardstick=false # influx3 alone needs no loadgen or ackserver
for s in $SCENARIOS; do [ "$s" != influx3 ] && [ "$s" != commands ] && need_yardstick=true; done
if $need_yardstick; then
  scripts/deps.sh bench
  make -s -C "$SHARED/bench" OUT="$OUT/yardstick" >/dev/null
fi
BUILD=${AERO_BENCH_BUILD:-}
if [ -z "$BUILD" ]; then
  BUILD=$ROOT/build-release
  cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DAERO_TESTS=OFF >/dev/null
  cmake --build build-release -j"$(nproc)" >/dev/null
fi
LOADGEN=$OUT/yardstick/loadgen
ACKSERVER=$OUT/yardstick/ackserver
RELAY=$BUILD/aeroarc-relay
BENCH=$BUILD/aeroarc-bench
BASELINE=${AERO_BENCH_BASELINE:-}



cpu_seconds() { # pid -> utime+stime in seconds
  awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"
}

rss_sampler() { # pid file: max VmRSS (kB) every 0.2 s until the pid is gone
  local max=0 v
  while v=$(awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null) && [ -n "$v" ]; do
    [ "$v" -gt "$max" ] && max=$v && echo "$max" >"$2"
    sleep 0.2
  done
}

REDIS_PID=""
start_redis() {
  local port; port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
  REDIS_PID=$!
  wait_port "$port"
  REDIS_ADDR=127.0.0.1:$port
}
stop_redis() { [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null; REDIS_PID=""; }
trap 'stop_redis; pkill -P $$ 2>/dev/null || true' EXIT

# relay_config <port> <fsync>: the shipped relay.ini, bench-adjusted. Its
# route-redis stays idle unless REDIS_ADDR is set (the redis scenario).
relay_config() {
  local dir=$OUT/relay-run
  rm -rf "$dir"; mkdir -p "$dir"
  bench_ini "$1" "127.0.0.1:$(free_port)" "$dir/data" -e "s|^fsync = none.*|fsync = $2|" \
      >"$dir/relay.ini" || exit 1
  echo "$dir/relay.ini"
}

# run_one <server> <scenario> <loadgen args...>: one measured run, one JSON line.
run_one() {
  local server=$1 scenario=$2; shift 2
  local port; port=$(free_port)
  local fsync=none
  [ "$scenario" = durable ] && fsync=batch
  if [ "$server" = ackserver ]; then
    ${RELAY_PIN:+taskset -c "$RELAY_PIN"} "$ACKSERVER" "127.0.0.1:$port" >/dev/null \
      2>"$OUT/ackserver.log" &
  else
    local bin=$RELAY
    [ "$server" = baseline ] && bin=$BASELINE
    local cfg; cfg=$(relay_config "$port" "$fsync")
    if [ "$scenario" = redis ]; then
      ${RELAY_PIN:+taskset -c "$RELAY_PIN"} env REDIS_ADDR="$REDIS_ADDR" "$bin" -c "$cfg" \
        >/dev/null 2>"$OUT/$server.log" &
    else
      ${RELAY_PIN:+taskset -c "$RELAY_PIN"} env -u REDIS_ADDR "$bin" -c "$cfg" >/dev/null \
        2>"$OUT/$server.log" &
    fi
  fi
  local pid=$!
  wait_port "$port"
  cap_server "$pid"
  rm -f "$OUT/rss"
  rss_sampler "$pid" "$OUT/rss" &
  local sampler=$!
  local cpu0; cpu0=$(cpu_seconds "$pid")
  local sched=""
  echo '{}' >"$OUT/sched.json"
  if [ -n "${AERO_BENCH_SCHED:-}" ]; then
    $PY tools/sched-sample.py "$pid" >"$OUT/sched.json" &
    sched=$!
  fi
  local result
  result=$(${CLIENT_PIN:+taskset -c "$CLIENT_PIN"} "$LOADGEN" --target "127.0.0.1:$port" "$@" || true)
  local cpu1; cpu1=$(cpu_seconds "$pid")
  if [ -n "$sched" ]; then kill -INT "$sched"; wait "$sched" 2>/dev/null || true; fi
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  local rss; rss=$(cat "$OUT/rss" 2>/dev/null || echo 0)
  $PY - "$server" "$scenario" "$cpu0" "$cpu1" "$rss" "$result" "$OUT/sched.json" <<'EOF'
import json, sys
server, scenario, cpu0, cpu1, rss, line, sched = sys.argv[1:8]
r = json.loads(line) if line.strip() else {"acked": 0, "acked_per_s": 0, "stream_errors": -1}
r.update(server=server, scenario=scenario, cpu_s=float(cpu1) - float(cpu0), rss_kb=int(rss))
with open(sched) as f:
    s = f.read().strip()
if s and s != "{}":
    r["sched"] = json.loads(s)
print(json.dumps(r))
EOF
}

# run_influx3 <variant>: the relay with sink-file alone (file) or with
# sink-file and sink-influxdb3 (file+influx3) under aeroarc-bench's
# throughput load over generation 2; one JSON line.
run_influx3() {
  local variant=$1 port; port=$(free_port)
  local dir=$OUT/relay-run
  rm -rf "$dir"; mkdir -p "$dir"
  # The shipped relay.ini without its stdout sink: sink-file is the baseline.
  bench_ini "$port" "" "$dir/data" -e '/^\[sink:console\]/,/^$/d' >"$dir/relay.ini" || exit 1
  local wpid=""
  if [ "$variant" = file+influx3 ]; then
    local wport; wport=$(free_port)
    $PY tests/integration/influx3_server.py --port "$wport" --token bench-token \
      --ready "$dir/influx3.ready" --discard &
    wpid=$!
    wait_port "$wport"
    printf '\n[sink:telemetry]\nplugin = sink-influxdb3\nhost = http://127.0.0.1:%s\n%s\n' \
      "$wport" "database = bench
token = bench-token
relay_id = bench-relay
${AERO_BENCH_INFLUX3_KEYS:-}" >>"$dir/relay.ini"
  fi
  env -u REDIS_ADDR "$RELAY" -c "$dir/relay.ini" >/dev/null 2>"$OUT/$variant.log" &
  local pid=$!
  wait_port "$port"
  local line
  line=$("$BENCH" --target "127.0.0.1:$port" --scenario throughput --protocol multiplexed \
           --field-names go --server-pid "$pid" || true)
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  if [ -n "$wpid" ]; then kill "$wpid"; wait "$wpid" 2>/dev/null || true; fi
  $PY - "$variant" "$line" <<'PYEOF'
import json, sys
variant, line = sys.argv[1:3]
r = json.loads(line) if line.strip() else {"acked": 0, "acked_per_s": 0, "stream_errors": -1}
r.update(server=variant, scenario="influx3", cpu_s=r.get("server_cpu_s", 0),
         rss_kb=r.get("server_peak_rss_kb", 0))
print(json.dumps(r))
PYEOF
}

# commands_pki <dir>: agents' CA with a server certificate for localhost,
# a control CA with the API's client certificate (spiffe://aero-arc/api).
commands_pki() {
  local d=$1
  [ -f "$d/api.pem" ] && return 0
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-agents-ca
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
    openssl req -x509 -newkey rsa:2048 -nodes -keyout cca.key -out cca.pem -days 2 -subj /CN=bench-control-ca
    openssl req -newkey rsa:2048 -nodes -keyout api.key -out api.csr -subj /CN=bench-api
    printf 'extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://aero-arc/api\n' >api.ext
    openssl x509 -req -in api.csr -CA cca.pem -CAkey cca.key -CAcreateserial -out api.pem -days 2 -extfile api.ext
  ) >"$OUT/pki.log" 2>&1
}

# run_commands <variant>: one aeroarc-bench run against a fresh relay with
# [tls] + bearer agents + relay_id + mappings (and [control] unless tp-off);
# one JSON line.
CMD_AGENTS=500
run_commands() {
  local variant=$1 group=${2:-} port; port=$(free_port)
  local pki=$OUT/pki cfg dir=$OUT/relay-run
  cfg=$(relay_config "$port" none)
  printf 'bench-agents-key-0123456789 *\n' >"$dir/keys.txt"
  for i in $(seq 0 $((CMD_AGENTS - 1))); do echo "bench-agent-$i bench-operator bench-agent-$i"; done >"$dir/agents.map"
  chmod 600 "$dir/keys.txt" "$dir/agents.map"
  sed -i -e "s|^relay_id = .*|relay_id = bench-relay|" \
      -e "s|^cert_file =.*|cert_file = $pki/server.pem|" -e "s|^key_file =.*|key_file = $pki/server.key|" \
      -e "s|^mode = none.*|mode = bearer|" -e "s|^keys_file =.*|keys_file = $dir/keys.txt|" "$cfg"
  if [ "$variant" != tp-off ]; then
    printf '\n[control]\nclient_ca_file = %s\nallowed_identities = spiffe://aero-arc/api\nagent_mappings_file = %s\n' \
      "$pki/cca.pem" "$dir/agents.map" >>"$cfg"
  fi
  ${RELAY_PIN:+taskset -c "$RELAY_PIN"} env -u REDIS_ADDR -u RELAY_ID "$RELAY" -c "$cfg" >/dev/null 2>"$OUT/$variant.log" &
  local pid=$!
  wait_port "$port"
  cap_server "$pid"
  local common=(--target "127.0.0.1:$port" --protocol multiplexed --ca "$pki/ca.pem"
                --server-name localhost --token bench-agents-key-0123456789 --server-pid "$pid")
  # The callers in a process of their own, as the API is (aeroarc-bench
  # --help: gRPC's poller is process-wide).
  local ctl=(--cert "$pki/api.pem" --key "$pki/api.key" --command-process)
  local args
  case $variant in
    cmd-idle) args=(--agents "$CMD_AGENTS" --channels 50 --frames 1 --window 1 "${ctl[@]}"
                    --commands 100 --command-seconds "${AERO_BENCH_CMD_SECONDS:-10}") ;;
    # Calls are synchronous: under this load a round trip takes ~0.1-0.4 s,
    # so 100/s needs tens of callers.
    cmd-many) args=(--agents "$CMD_AGENTS" --channels 50 --window 50 --frames "${AERO_BENCH_CMD_FRAMES:-1500}"
                    "${ctl[@]}" --commands 100 --command-threads 64) ;;
    tp-off)   args=(--scenario throughput --open-first) ;;
    tp-idle)  args=(--scenario throughput "${ctl[@]}" --reconcile) ;;
    tp-cmd)   args=(--scenario throughput "${ctl[@]}" --commands 100 --command-kinds durable
                    --command-threads 8) ;;
  esac
  # Longer throughput runs (the scenario's 20,000 frames per agent last
  # about 2 s, 200 commands): less noise per group.
  case $variant in tp-*) args+=(${AERO_BENCH_TP_FRAMES:+--frames "$AERO_BENCH_TP_FRAMES"}) ;; esac
  local line
  line=$(${CLIENT_PIN:+taskset -c "$CLIENT_PIN"} "$BENCH" "${common[@]}" "${args[@]}" || true)
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  $PY - "$variant" "$group" "$line" <<'PYEOF'
import json, sys
variant, group, line = sys.argv[1:4]
r = json.loads(line) if line.strip() else {"acked": 0, "acked_per_s": 0, "stream_errors": -1}
r.update(server=variant, scenario="commands", group=group, cpu_s=r.get("server_cpu_s", 0),
         rss_kb=r.get("server_peak_rss_kb", 0))
print(json.dumps(r))
PYEOF
}

declare -A ARGS=(
  [throughput]="--agents 10 --frames 20000 --window 100"
  [many]="--agents 500 --channels 50 --frames 400 --window 50"
  [durable]="--agents 10 --frames 20000 --window 100"
  [light]="--agents 1 --frames 5000 --window 1"
  [scale]="--agents 10000 --channels 100 --frames 2 --window 1 --hold 10"
  # Issue 19: the growth table (memory per open stream as streams grow)
  # and 100,000 agents on 1,000 connections held for 60 s.
  [scale1k]="--agents 1000 --channels 10 --frames 2 --window 1 --hold 5"
  [scale30k]="--agents 30000 --channels 300 --frames 2 --window 1 --hold 5"
  [scale60k]="--agents 60000 --channels 600 --frames 2 --window 1 --hold 5"
  [scale100k]="--agents 100000 --channels 1000 --frames 2 --window 1 --hold 60"
  [redis]="--agents 10 --frames 20000 --window 100"
)

# cap_server <pid>: AERO_BENCH_SERVER_QUOTA percent of one CPU for the
# server, by the cgroup cpu controller (v1 cpu.cfs_quota_us or v2 cpu.max;
# needs root), so that the server, not the load generator, bounds
# throughput on a host with too few cores to give the load generator more.
cap_server() {
  local q=${AERO_BENCH_SERVER_QUOTA:-} cg
  [ -n "$q" ] || return 0
  if [ -d /sys/fs/cgroup/cpu ]; then
    cg=/sys/fs/cgroup/cpu/aero-bench-server
    mkdir -p "$cg" && echo 100000 >"$cg/cpu.cfs_period_us" && echo $((q * 1000)) >"$cg/cpu.cfs_quota_us"
  else
    cg=/sys/fs/cgroup/aero-bench-server
    mkdir -p "$cg" && echo "$((q * 1000)) 100000" >"$cg/cpu.max"
  fi || { echo "bench-compare: cannot cap the server's CPU (cgroup $cg)" >&2; exit 2; }
  echo "$1" >"$cg/cgroup.procs"
}

RESULTS=$OUT/results.jsonl
RELAY_PIN=${AERO_BENCH_RELAY_CPUS:-}
CLIENT_PIN=${AERO_BENCH_CLIENT_CPUS:-}
if [ -n "${AERO_BENCH_REPORT:-}" ]; then RESULTS=$AERO_BENCH_REPORT; SCENARIOS=""; else : >"$RESULTS"; fi
for scenario in $SCENARIOS; do
  if [ "$scenario" = commands ]; then
    commands_pki "$OUT/pki"
    tp=(tp-off tp-idle tp-cmd)
    for round in $(seq 1 "$ROUNDS"); do
      if [ $((round % 2)) -eq 1 ]; then order="cmd-idle cmd-many"; else order="cmd-many cmd-idle"; fi
      [ "${AERO_BENCH_CMD_LATENCY:-1}" = 0 ] && order=""
      for variant in $order; do run_commands "$variant" | tee -a "$RESULTS" >&2; done
      for g in $(seq 1 "${AERO_BENCH_TP_GROUPS:-3}"); do
        # Rotate the order in every group so drift hits the three alike.
        for k in 0 1 2; do
          run_commands "${tp[$(((k + g + round) % 3))]}" "$round.$g" | tee -a "$RESULTS" >&2
        done
      done
    done
    continue
  fi
  if [ "$scenario" = influx3 ]; then
    for round in $(seq 1 "$ROUNDS"); do
      if [ $((round % 2)) -eq 1 ]; then order="file file+influx3"; else order="file+influx3 file"; fi
      for variant in $order; do
        run_influx3 "$variant" | tee -a "$RESULTS" >&2
      done
    done
    continue
  fi
  [ "$scenario" = redis ] && start_redis
  for round in $(seq 1 "$ROUNDS"); do
    # Alternate which server goes first so drift hits both alike.
    if [ -n "$BASELINE" ]; then
      case $((round % 3)) in
        1) order="ackserver relay baseline" ;;
        2) order="relay baseline ackserver" ;;
        0) order="baseline ackserver relay" ;;
      esac
    elif [ $((round % 2)) -eq 1 ]; then order="ackserver relay"; else order="relay ackserver"; fi
    for server in $order; do
      # shellcheck disable=SC2086
      run_one "$server" "$scenario" ${ARGS[$scenario]} | tee -a "$RESULTS" >&2
    done
    # The redis scenario compares the relay with Redis on and off.
    if [ "$scenario" = redis ]; then
      # shellcheck disable=SC2086
      run_one relay throughput ${ARGS[throughput]} | sed 's/"scenario": "throughput"/"scenario": "redis-off"/' | tee -a "$RESULTS" >&2
    fi
  done
  [ "$scenario" = redis ] && stop_redis
done

$PY - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(scn, srv, key):
    v = [r.get(key, 0) for r in rows if r["scenario"] == scn and r["server"] == srv]
    return statistics.median(v) if v else None
def per100k(scn, srv):
    v = [r["cpu_s"] / (r["acked"] / 1e5) for r in rows
         if r["scenario"] == scn and r["server"] == srv and r.get("acked")]
    return statistics.median(v) if v else None
def fmt(x, d=0):
    return "-" if x is None else f"{x:,.{d}f}"
def ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}x"
if any(r["scenario"] != "commands" for r in rows):
    print("| scenario | server | acked/s | p50 µs | p99 µs | CPU s /100k frames | peak RSS MB | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for scn in dict.fromkeys(r["scenario"] for r in rows):
        for srv in ("ackserver", "relay", "baseline", "file", "file+influx3"):
            n = [r for r in rows if r["scenario"] == scn and r["server"] == srv]
            if not n:
                continue
            errs = sum(r.get("stream_errors", 0) + r.get("register_errors", 0) for r in n)
            print(f"| {scn} | {srv} | {fmt(med(scn, srv, 'acked_per_s'))} | {fmt(med(scn, srv, 'p50_us'))} "
                  f"| {fmt(med(scn, srv, 'p99_us'))} | {fmt(per100k(scn, srv), 2)} "
                  f"| {fmt(med(scn, srv, 'rss_kb') / 1024 if med(scn, srv, 'rss_kb') else None, 1)} | {errs} |")
    print()
    print("| scenario | relay / ackserver acked/s | p50 | p99 | CPU per frame | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    for scn in dict.fromkeys(r["scenario"] for r in rows):
        if scn in ("redis-off", "influx3", "commands"):
            continue
        base = "ackserver" if scn != "redis" else None
        if base is None:
            print(f"| redis on / off (relay) | {ratio(med('redis', 'relay', 'acked_per_s'), med('redis-off', 'relay', 'acked_per_s'))} | | | | |")
            continue
        print(f"| {scn} | {ratio(med(scn, 'relay', 'acked_per_s'), med(scn, base, 'acked_per_s'))} "
              f"| {ratio(med(scn, 'relay', 'p50_us'), med(scn, base, 'p50_us'))} "
              f"| {ratio(med(scn, 'relay', 'p99_us'), med(scn, base, 'p99_us'))} "
              f"| {ratio(per100k(scn, 'relay'), per100k(scn, base))} "
              f"| {ratio(med(scn, 'relay', 'rss_kb'), med(scn, base, 'rss_kb'))} |")
if any(r["scenario"] == "influx3" for r in rows):
    print()
    print("| influx3 | file+influx3 / file alone acked/s (target >= 0.8x) | p50 | p99 | CPU per frame | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    s = "influx3"
    print(f"| generation 2, throughput load | {ratio(med(s, 'file+influx3', 'acked_per_s'), med(s, 'file', 'acked_per_s'))} "
          f"| {ratio(med(s, 'file+influx3', 'p50_us'), med(s, 'file', 'p50_us'))} "
          f"| {ratio(med(s, 'file+influx3', 'p99_us'), med(s, 'file', 'p99_us'))} "
          f"| {ratio(per100k(s, 'file+influx3'), per100k(s, 'file'))} "
          f"| {ratio(med(s, 'file+influx3', 'rss_kb'), med(s, 'file', 'rss_kb'))} |")
if any(r["scenario"] == "commands" for r in rows):
    s = "commands"
    def cmed(v, key):
        x = [r[key] for r in rows if r["scenario"] == s and r["server"] == v and key in r]
        return statistics.median(x) if x else None
    def csum(v, key):
        return sum(r.get(key, 0) for r in rows if r["scenario"] == s and r["server"] == v)
    print()
    def rate(v, kinds):
        n = sum(csum(v, f"cmd_{k}_n") + csum(v, f"cmd_{k}_errors") for k in kinds)
        t = csum(v, "commands_s")
        return n / t if t else None
    def per_run_ratio(v, a, b):
        x = [r[a] / r[b] for r in rows if r["scenario"] == s and r["server"] == v and r.get(a) and r.get(b)]
        return (statistics.median(x), min(x), max(x)) if x else None
    def rng(t):
        return "-" if t is None else f"{t[0]:.2f}x ({t[1]:.2f}-{t[2]:.2f})"
    if any(r["server"].startswith("cmd-") for r in rows):
      print("| commands (medians of runs) | SendAircraftCommand p50 µs | p99 µs | ExchangeCommand p50 µs | p99 µs "
          "| Exchange/Send p50, per run: median (min-max) (target <= 1.2x) | calls/s asked / done | calls (send/exchange) | frame ack p50 µs | errors |")
      print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v, what in (("cmd-idle", "500 idle agents"), ("cmd-many", "500 streaming agents")):
        if cmed(v, "cmd_aircraft_p50_us") is None:
            continue
        errs = csum(v, "cmd_aircraft_errors") + csum(v, "cmd_durable_errors") + csum(v, "stream_errors")
        print(f"| {what} | {fmt(cmed(v, 'cmd_aircraft_p50_us'))} | {fmt(cmed(v, 'cmd_aircraft_p99_us'))} "
              f"| {fmt(cmed(v, 'cmd_durable_p50_us'))} | {fmt(cmed(v, 'cmd_durable_p99_us'))} "
              f"| {rng(per_run_ratio(v, 'cmd_durable_p50_us', 'cmd_aircraft_p50_us'))} "
              f"| 100 / {fmt(rate(v, ('aircraft', 'durable')))} "
              f"| {csum(v, 'cmd_aircraft_n')}/{csum(v, 'cmd_durable_n')} "
              f"| {fmt(cmed(v, 'p50_us')) if v == 'cmd-many' else '-'} | {errs} |")
    print()
    def group_ratio(v, key):
        by = {}
        for r in rows:
            if r["scenario"] == s and r.get("group") and r.get(key):
                by.setdefault(r["group"], {})[r["server"]] = r[key]
        x = [g[v] / g["tp-off"] for g in by.values() if v in g and "tp-off" in g]
        return (statistics.median(x), min(x), max(x), len(x)) if x else None
    def grng(t):
        return "-" if t is None else f"{t[0]:.3f}x ({t[1]:.2f}-{t[2]:.2f}, {t[3]} groups)"
    print("| throughput load (10 agents, gen 2, TLS, bearer) | acked/s (median) | / control off, per group: median (min-max) (target >= 0.97x) "
          "| relay CPU s /100k frames | / control off, per group | frame p50 µs | p99 µs | ExchangeCommand p50 µs | p99 µs | ExchangeCommand/s done | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v, what in (("tp-off", "control off"), ("tp-idle", "control on, no commands"),
                    ("tp-cmd", "control on, 100 ExchangeCommand/s")):
        if cmed(v, "acked_per_s") is None:
            continue
        errs = csum(v, "stream_errors") + csum(v, "register_errors") + csum(v, "cmd_durable_errors") + csum(v, "reconcile_errors")
        print(f"| {what} | {fmt(cmed(v, 'acked_per_s'))} | {grng(group_ratio(v, 'acked_per_s')) if v != 'tp-off' else '1'} "
              f"| {fmt(per100k(s, v), 2)} | {grng(group_ratio(v, 'server_cpu_s_per_100k')) if v != 'tp-off' else '1'} "
              f"| {fmt(cmed(v, 'p50_us'))} | {fmt(cmed(v, 'p99_us'))} "
              f"| {fmt(cmed(v, 'cmd_durable_p50_us'))} | {fmt(cmed(v, 'cmd_durable_p99_us'))} "
              f"| {fmt(rate(v, ('durable',))) if v == 'tp-cmd' else '-'} | {errs} |")
if any(r["server"] == "baseline" for r in rows):
    print()
    print("| scenario | this build / baseline acked/s | p50 | p99 | CPU per frame | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    for scn in dict.fromkeys(r["scenario"] for r in rows):
        if not med(scn, "baseline", "acked_per_s"):
            continue
        print(f"| {scn} | {ratio(med(scn, 'relay', 'acked_per_s'), med(scn, 'baseline', 'acked_per_s'))} "
              f"| {ratio(med(scn, 'relay', 'p50_us'), med(scn, 'baseline', 'p50_us'))} "
              f"| {ratio(med(scn, 'relay', 'p99_us'), med(scn, 'baseline', 'p99_us'))} "
              f"| {ratio(per100k(scn, 'relay'), per100k(scn, 'baseline'))} "
              f"| {ratio(med(scn, 'relay', 'rss_kb'), med(scn, 'baseline', 'rss_kb'))} |")
print()
print(f"rounds: {max(1, len([r for r in rows if r['server'] in ('relay', 'file', 'cmd-idle')]) // max(1, len(set(r['scenario'] for r in rows))), len({r['group'].split('.')[0] for r in rows if r.get('group')}))}; "
      f"raw results: {sys.argv[1]}")
EOF
