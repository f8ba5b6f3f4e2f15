# bench-lib.sh - sourced by the bench scripts (not run): free loopback
# ports and waiting for a server to accept, with deadlines.
PY=/usr/bin/python3

free_port() { $PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

wait_port() { # port: until something accepts on it (10 s)
  for _ in $(seq 1 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listening on $1" >&2; return 1
}

# bench_ini <grpc port> <http listen> <data dir> [sed args...]: the shipped
# relay.ini on stdout with its listeners moved, sink-file writing to <data
# dir> and its commented console sink turned on (sink-stdout, the scripts
# send stdout to /dev/null): the relay docs/benchmarks.md measured, whose
# two JSON sinks share one encoding. Extra sed arguments adjust it further.
# Fails when the shipped file's lines changed under these patterns.
bench_ini() {
  local port=$1 http=$2 data=$3; shift 3
  local out
  grep -qx ';\[sink:console\]' relay.ini && grep -qx ';plugin = sink-stdout' relay.ini ||
    { echo "bench_ini: relay.ini's commented console sink changed" >&2; return 1; }
  out=$(sed -e "s|^listen = [0-9.]*:50051 .*|listen = 127.0.0.1:$port|" \
            -e "s|^listen = [0-9.]*:2112 .*|listen = $http|" \
            -e "s|^path = ./data\$|path = $data|" \
            -e 's|^;\[sink:console\]$|[sink:console]|' \
            -e 's|^;plugin = sink-stdout$|plugin = sink-stdout|' "$@" relay.ini) || return 1
  for want in "listen = 127.0.0.1:$port" "listen = $http" "path = $data"; do
    grep -qxF -- "$want" <<<"$out" || { echo "bench_ini: relay.ini changed ($want)" >&2; return 1; }
  done
  printf '%s\n' "$out"
}
