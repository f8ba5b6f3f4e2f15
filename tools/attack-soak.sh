#!/bin/sh
# attack-soak.sh - each attack of tests/integration/test_e2e_attacks.c run
# (tests/integration/attack_soak.c, built with the tests, not run by ctest)
# for a minute against a built relay, with a latency probe streaming
# throughout (docs/security.md, "Soak"). Not part of CI: it takes
# attacks × (seconds + ~15 s) and loads the host, so timing figures are
# only as quiet as the machine.
#
# usage: tools/attack-soak.sh [-e] [-b BUILD_DIR] [-s SECONDS] [-k RELAY_KEYS] [ATTACK...]
#   -e, --edge  through HAProxy on the shipped examples/edge/haproxy.cfg
#               (as test_e2e_edge runs it): attacker, probe and new agents
#               connect to it over TLS, the relay listens on loopback
#   BUILD_DIR   a tree built with -DAERO_TESTS=ON (default build-test)
#   SECONDS     per attack (default 60)
#   RELAY_KEYS  [relay] lines for the relay, e.g. 'memory_limit_mb = 256'
#   ATTACK      rapid_reset stream_flood short_connections idle_fds (default:
#               these four), huge_header continuation (one 19 MB header
#               value; 32 MB of CONTINUATION never ended: default with -e
#               too; nothing in-process stops them, so without -e a minute
#               of either stalls the relay or grows it by gigabytes)
# Prints one markdown row per attack: peak RSS (VmHWM, reset when the
# attack starts), the probe's p99 ack latency quiet / under attack / after,
# the longest a new agent took to register and get an ack during the
# attack (one try a second; failures: none within 5 s), and after it: how
# long the probe waited for its next acks (what the attack left queued)
# and how long a new agent then took (-1: not within 60 s / 5 s); the
# attacker's connections refused, and with -e HAProxy's own peak RSS and
# the attack's calls it passed on to the relay.
set -eu

build=build-test
seconds=60
keys=
edge=0
for arg; do # -e / --edge anywhere (getopts knows no long options)
    shift
    case $arg in
    -e | --edge) edge=1 ;;
    *) set -- "$@" "$arg" ;;
    esac
done
while getopts eb:s:k: opt; do
    case $opt in
    e) edge=1 ;;
    b) build=$OPTARG ;;
    s) seconds=$OPTARG ;;
    k) keys=$OPTARG ;;
    *) sed -n '2,/^set -eu$/{/^set/!p}' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ $# -eq 0 ]; then
    set -- rapid_reset stream_flood short_connections idle_fds
    [ $edge = 1 ] && set -- "$@" huge_header continuation
fi

bin=$build/tests/attack_soak
[ -x "$bin" ] || { echo "attack-soak: $bin not built (cmake --build $build)" >&2; exit 2; }
if [ $edge = 1 ]; then
    PATH=/usr/sbin:/sbin:$PATH # Debian's haproxy
    command -v haproxy >/dev/null || { echo "attack-soak: -e needs haproxy" >&2; exit 2; }
fi

# "key=value" of a soak: line.
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

echo "| attack | seconds | rounds | peak RSS MB | probe p99 quiet / attack / after (ms) | new agent during: worst ms (failed/tries) | probe resumed / new agent after (ms) | closed call_flood / memory_limit | probe | attacker refused | HAProxy peak RSS MB / calls passed |"
echo "|---|---:|---:|---:|---|---|---:|---|---|---:|---|"
for attack in "$@"; do
    out=$(AERO_SOAK_ATTACK=$attack AERO_SOAK_SECONDS=$seconds AERO_SOAK_RELAY=$keys \
        AERO_SOAK_EDGE=$edge \
        "$bin" 2>&1) || true
    line=$(printf '%s\n' "$out" | grep '^soak:' || true)
    if [ -z "$line" ]; then
        echo "| $attack | failed: $(printf '%s\n' "$out" | grep -m1 -E 'FAIL|assert|stalled' | tr '|' '/') |"
        continue
    fi
    ms() { awk -v v="$1" 'BEGIN { printf (v < 0 ? "-" : "%.1f"), v / 1000 }'; }
    edge_cols=-
    [ $edge = 1 ] && edge_cols="$(awk -v k="$(field "$line" edge_peak_rss_kb)" \
        'BEGIN { printf "%.0f", k / 1024 }') / $(field "$line" edge_calls)"
    printf '| %s | %s | %s | %s | %s / %s / %s | %s (%s) | %s | %s / %s | %s | %s | %s |\n' \
        "$attack" "$(field "$line" seconds)" "$(field "$line" rounds)" \
        "$(awk -v k="$(field "$line" peak_rss_kb)" 'BEGIN { printf "%.0f", k / 1024 }')" \
        "$(ms "$(field "$line" probe_p99_quiet_us)")" "$(ms "$(field "$line" probe_p99_attack_us)")" \
        "$(ms "$(field "$line" probe_p99_after_us)")" \
        "$(field "$line" connect_during_worst_ms)" "$(field "$line" connect_during_failed)" \
        "$(field "$line" probe_resume_ms) / $(field "$line" connect_after_ms)" \
        "$(field "$line" closed_call_flood)" "$(field "$line" closed_memory_limit)" \
        "$(field "$line" probe | tr '_|' ' /')" "$(field "$line" refused)" "$edge_cols"
done
