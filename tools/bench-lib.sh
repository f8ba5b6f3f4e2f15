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
