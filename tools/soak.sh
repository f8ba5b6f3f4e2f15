#!/usr/bin/env bash
# Soak (issue 19; not in CI): the relay under a steady fleet for a long
# time while its Redis and NATS are restarted, to show that no OK-acked
# frame is lost and that memory and descriptors stay flat.
#
#   tools/soak.sh [minutes (30)] [agents (2000)] [restart every minutes (5)]
#
# Starts redis-server and nats-server (JetStream) on free loopback ports, the relay
# (this checkout's build-release, or AERO_BENCH_BUILD) with route-redis,
# sink-file (the record the loss check reads) and sink-nats, and
# aeroarc-bench with that many agents at 1 frame/s each (--rate 1, window
# 10, 100 agents per connection) and --acked-log. Every restart period
# Redis and NATS are stopped, left down 5 s, and started again on the
# same ports. The relay's RSS and open descriptors are sampled every 10 s.
# At the end: every "agent seq" the bench saw acked OK must be in the
# archive (loss = 0), and RSS and descriptors at the end against their
# values after the first restart period (growth < 5%). Prints one summary
# and leaves everything under $OUT (default /tmp/aeroarc-soak).
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-30}
AGENTS=${2:-2000}
EVERY=${3:-5}
OUT=${AERO_SOAK_OUT:-/tmp/aeroarc-soak}
BUILD=${AERO_BENCH_BUILD:-$PWD/build-release}
PY=${PY:-python3}
. tools/bench-lib.sh

if [ -z "${AERO_BENCH_BUILD:-}" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" >/dev/null
fi
rm -rf "$OUT"; mkdir -p "$OUT/data"
redis_port=$(free_port); nats_port=$(free_port); port=$(free_port); http_port=$(free_port)

REDIS_PID=""; NATS_PID=""; RELAY_PID=""
start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    >>"$OUT/redis.log" 2>&1 &
  REDIS_PID=$!
}
start_nats() {
  # JetStream on disk, as sink-nats needs: what it stored survives the restarts.
  nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$OUT/jetstream" >>"$OUT/nats.log" 2>&1 &
  NATS_PID=$!
}
stop_pid() { [ -n "$1" ] && kill "$1" 2>/dev/null && wait "$1" 2>/dev/null || true; }
trap 'stop_pid "$RELAY_PID"; stop_pid "$REDIS_PID"; stop_pid "$NATS_PID"; pkill -P $$ 2>/dev/null || true' EXIT

start_redis; start_nats
wait_port "$redis_port"; wait_port "$nats_port"
cat >"$OUT/relay.ini" <<EOF
[relay]
listen = 127.0.0.1:$port
[http]
listen = 127.0.0.1:$http_port
[log]
level = info
[route]
plugin = route-redis
redis_addr = 127.0.0.1:$redis_port
[sink:archive]
plugin = sink-file
path = $OUT/data
[sink:bus]
plugin = sink-nats
url = nats://127.0.0.1:$nats_port
stream = SOAK
create_stream = true
EOF
env -u REDIS_ADDR "$BUILD/aeroarc-relay" -c "$OUT/relay.ini" >/dev/null 2>"$OUT/relay.log" &
RELAY_PID=$!
wait_port "$port"

frames=$((MINUTES * 60))
"$BUILD/aeroarc-bench" --target "127.0.0.1:$port" --agents "$AGENTS" --channels $(((AGENTS + 99) / 100)) \
  --frames "$frames" --window 10 --rate 1 --acked-log "$OUT/acked.log" >"$OUT/bench.json" \
  2>"$OUT/bench.err" &
bench=$!

# Samples and restarts until the bench is done.
start=$SECONDS; next_restart=$((EVERY * 60)); restarts=0
echo "t_s rss_kb fds" >"$OUT/samples.txt"
while kill -0 "$bench" 2>/dev/null; do
  t=$((SECONDS - start))
  echo "$t $(awk '/VmRSS/{print $2}' /proc/$RELAY_PID/status) $(ls /proc/$RELAY_PID/fd | wc -l)" \
    >>"$OUT/samples.txt"
  if [ "$t" -ge "$next_restart" ]; then
    stop_pid "$REDIS_PID"; stop_pid "$NATS_PID"
    sleep 5 # down for a while: the relay must notice, hold and recover
    start_redis; start_nats
    restarts=$((restarts + 1)); next_restart=$((next_restart + EVERY * 60))
  fi
  sleep 10
done
wait "$bench" || true
stop_pid "$RELAY_PID"; RELAY_PID=""

$PY - "$OUT" "$EVERY" "$restarts" <<'PYEOF'
import glob, json, sys
out, every, restarts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
acked = set()
for line in open(f"{out}/acked.log"):
    a, s = line.split()
    acked.add((a, int(s)))
stored = set()
for path in glob.glob(f"{out}/data/*.jsonl"):
    for line in open(path):
        e = json.loads(line)
        stored.add((e["agent_id"], int(e["seq"])))
lost = acked - stored
samples = [l.split() for l in open(f"{out}/samples.txt")][1:]
samples = [(int(t), int(r), int(f)) for t, r, f in samples if r.isdigit()]
after = [s for s in samples if s[0] >= every * 60] or samples
first, last = after[0], samples[-1]
grow = lambda a, b: (b - a) * 100.0 / a if a else 0.0
bench = json.load(open(f"{out}/bench.json")) if open(f"{out}/bench.json").read().strip() else {}
print(json.dumps({
    "minutes": round(samples[-1][0] / 60, 1), "restarts": restarts,
    "acked_ok": len(acked), "stored": len(stored), "lost": len(lost),
    "acks": {k: bench.get(k) for k in ("ok", "retry", "temporary", "permanent")},
    "stream_errors": bench.get("stream_errors"),
    "rss_kb": {"after_first_period": first[1], "end": last[1], "peak": max(s[1] for s in samples),
               "growth_pct": round(grow(first[1], last[1]), 1)},
    "fds": {"after_first_period": first[2], "end": last[2], "growth_pct": round(grow(first[2], last[2]), 1)},
}))
sys.exit(1 if lost else 0)
PYEOF
