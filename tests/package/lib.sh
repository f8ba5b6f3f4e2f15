# lib.sh - shared by the packaging test scripts (sourced, not run): facts
# read from the source tree, assertions, and running a relay in the
# background with deadlines (never a bare sleep as synchronisation).
# Each script sets SRC and OUT first; the helpers set RELAY_PID/RELAY_PORT.
# AERO_KEEP_TMP=1 keeps the scratch dir for a look after a failure.

TMP=$(mktemp -d /tmp/aero-pkg-test.XXXXXX)
RELAY_PID=""
cleanup() {
    if [ -n "$RELAY_PID" ] && kill -0 "$RELAY_PID" 2>/dev/null; then
        kill -KILL "$RELAY_PID" 2>/dev/null || true
    fi
    if [ -n "${AERO_KEEP_TMP:-}" ]; then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
    [ "$2" = "$3" ] || fail "$1: expected \"$2\", got \"$3\""
}

# expect_same_lines WHAT EXPECTED_FILE ACTUAL_FILE: same sorted line sets.
expect_same_lines() {
    if ! diff <(sort "$2") <(sort "$3") >"$TMP/diff.txt"; then
        cat "$TMP/diff.txt" >&2
        fail "$1 differ (< expected, > actual)"
    fi
}

# expect_grep WHAT PATTERN FILE (fixed string, whole line with -x via GREP_X=1)
expect_line() {
    grep -qxF -- "$2" "$3" || fail "$1: no line \"$2\" in $3"
}

# Facts from the source tree, so the tests follow the code.
BUILD="$OUT/build"
DEBS="$OUT/debs"
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
DEB_ARCH=$(dpkg --print-architecture)
VERSION=$(sed -n 's/^project(aeroarc-relay VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
ABI_MAJOR=$(sed -n 's/^#define AERO_ABI_MAJOR \([0-9]*\).*/\1/p' "$SRC/include/aeroarc/plugin.h")
ABI_MINOR=$(sed -n 's/^#define AERO_ABI_MINOR \([0-9]*\).*/\1/p' "$SRC/include/aeroarc/plugin.h")
[ -n "$VERSION" ] && [ -n "$ABI_MAJOR" ] && [ -n "$ABI_MINOR" ] || fail "cannot read version/ABI"
PLUGIN_DIR="/usr/lib/$MULTIARCH/aeroarc/plugins"

# Every plugin the build makes: aero_add_plugin(<name> ...) in each folder
# plugins/CMakeLists.txt adds.
plugin_names() {
    local d
    sed -n 's/^ *add_subdirectory( *\([A-Za-z0-9_.-]*\) *).*/\1/p' "$SRC/plugins/CMakeLists.txt" |
        while read -r d; do
            sed -n 's/^ *aero_add_plugin( *\([A-Za-z0-9_.-]*\).*/\1/p' "$SRC/plugins/$d/CMakeLists.txt"
        done | sort
}
# The plugins the core package ships (set(AERO_CORE_PLUGINS ...) in
# CMakeLists.txt); every other plugin (PLUGINS) is a package of its own.
CORE_PLUGINS=$(sed -n 's/^set(AERO_CORE_PLUGINS \([^)]*\)).*/\1/p' "$SRC/CMakeLists.txt" | tr ' ' '\n' | sort)
ALL_PLUGINS=$(plugin_names)
PLUGINS=$(comm -23 <(echo "$ALL_PLUGINS") <(echo "$CORE_PLUGINS"))
[ -n "$CORE_PLUGINS" ] || fail "no AERO_CORE_PLUGINS in $SRC/CMakeLists.txt"
[ -z "$(comm -13 <(echo "$ALL_PLUGINS") <(echo "$CORE_PLUGINS"))" ] || fail "AERO_CORE_PLUGINS names no plugin"
[ -n "$PLUGINS" ] || fail "no plugins found in $SRC/plugins"
HEADERS=$(cd "$SRC/include" && ls aeroarc/*.h)
# "section plugin" for each plugin the shipped relay.ini loads.
ini_plugins() {
    awk '/^\[/ {sec = $1} /^plugin *=/ {sub(/^plugin *= */, ""); print sec, $1}' "$1"
}
SHIPPED_PLUGINS=$(ini_plugins "$SRC/relay.ini" | awk '{print $2}')
[ -n "$SHIPPED_PLUGINS" ] || fail "the shipped relay.ini names no plugin"
# Hermetic: the relay and route-redis read these.
unset RELAY_ID REDIS_ADDR REDIS_PASSWORD REDIS_DB

# Files (not directories) under a tree, as ./relative/paths.
tree_files() {
    (cd "$1" && find . ! -type d | sort)
}

# write_test_config FILE PLUGIN_DIR BODY: a relay.ini on a free port (port 0:
# the relay picks one and logs it), no HTTP, text logs, then BODY.
write_test_config() {
    cat >"$1" <<INI
[relay]
listen = 127.0.0.1:0
plugin_dir = $2
shutdown_grace_s = 5

[http]
listen =

[log]
level = info
format = text

$3
INI
}

# start_relay BINARY CONFIG LOG: runs it in the background (stdout to
# LOG.out), waits up to 15 s for the "serving gRPC" line and sets RELAY_PORT.
start_relay() {
    # Created here, not by the background job's redirection: the first
    # sed below may run before that job has opened the file, and a sed
    # that cannot read it ends the script (set -e).
    : >"$3"
    : >"$3.out"
    "$1" -c "$2" >"$3.out" 2>"$3" &
    RELAY_PID=$!
    RELAY_PORT=""
    local deadline=$((SECONDS + 15))
    while [ -z "$RELAY_PORT" ]; do
        RELAY_PORT=$(sed -n 's/.*serving gRPC on [^ ]* (port \([0-9]*\)).*/\1/p' "$3")
        [ -n "$RELAY_PORT" ] && break
        kill -0 "$RELAY_PID" 2>/dev/null || { cat "$3" >&2; fail "relay exited at start"; }
        [ "$SECONDS" -lt "$deadline" ] || { cat "$3" >&2; fail "relay not serving after 15 s"; }
        sleep 0.05
    done
}

# stop_relay [SIGNAL]: SIGTERM (or SIGNAL), wait up to 15 s, expect exit
# status 0.
stop_relay() {
    kill -"${1:-TERM}" "$RELAY_PID"
    local deadline=$((SECONDS + 15))
    while kill -0 "$RELAY_PID" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || fail "relay still running 15 s after SIGTERM"
        sleep 0.05
    done
    local rc=0
    wait "$RELAY_PID" || rc=$?
    RELAY_PID=""
    expect_eq "relay exit status after SIGTERM" 0 "$rc"
}

# stream CLIENT AGENT N MSG_NAME: N frames, each must be acked OK.
stream() {
    "$1" --target "127.0.0.1:$RELAY_PORT" stream --agent "$2" --frames "$3" --msg-name "$4" \
        >"$TMP/stream.out" 2>&1 || { cat "$TMP/stream.out" >&2; fail "streaming to the relay failed"; }
    local acked
    acked=$(grep -c '^ack seq=.* status=STATUS_OK ' "$TMP/stream.out" || true)
    expect_eq "OK acks for $2" "$3" "$acked"
}

# exported_symbols SO: the dynamic symbols a shared object defines.
exported_symbols() {
    nm -D --defined-only "$1" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort
}

# What each package (install component) holds, as ./paths. The install tree
# is their union. Every package has Debian's copyright and changelog.
files_debian_doc() { # files_debian_doc PACKAGE
    printf '%s\n' "./usr/share/doc/$1/copyright" "./usr/share/doc/$1/changelog.Debian.gz"
}
files_core() {
    local doc
    files_debian_doc aeroarc-relay
    printf '%s\n' ./etc/aeroarc/relay.ini ./usr/bin/aeroarc-relay \
        ./usr/lib/systemd/system/aeroarc-relay.service \
        ./usr/share/doc/aeroarc-relay/configuration.md \
        ./usr/share/man/man1/aeroarc-relay.1.gz \
        ./usr/share/aeroarc-relay/monitoring/aeroarc-relay-alerts.yml \
        ./usr/share/aeroarc-relay/monitoring/aeroarc-relay-dashboard.json \
        ./usr/share/aeroarc-relay/edge/haproxy.cfg
    for p in $CORE_PLUGINS; do echo ".$PLUGIN_DIR/$p.so"; done
    # the other operator documents, as far as they are written yet
    for doc in operations security routing envelope failure-semantics limits commands \
        sink-influxdb3; do
        [ ! -f "$SRC/docs/$doc.md" ] || echo "./usr/share/doc/aeroarc-relay/$doc.md"
    done
    for doc in "$SRC"/docs/sinks/*.md; do echo "./usr/share/doc/aeroarc-relay/sinks/${doc##*/}"; done
}
files_dev() {
    local h f
    files_debian_doc aeroarc-dev
    for h in $HEADERS; do echo "./usr/include/$h"; done
    printf '%s\n' "./usr/lib/$MULTIARCH/pkgconfig/aeroarc-plugin.pc" \
        "./usr/lib/$MULTIARCH/cmake/aeroarc/aeroarc-config.cmake" \
        "./usr/lib/$MULTIARCH/cmake/aeroarc/aeroarc-config-version.cmake" \
        ./usr/share/doc/aeroarc-dev/plugin-guide.md
    for f in CMakeLists.txt Makefile README.md sink_count.c debian/copyright debian/changelog; do
        echo "./usr/share/doc/aeroarc-dev/examples/sink-count/$f"
    done
}
files_tools() {
    files_debian_doc aeroarc-tools
    printf '%s\n' ./usr/bin/aeroarc-client ./usr/bin/aeroarc-bench \
        ./usr/share/man/man1/aeroarc-client.1.gz ./usr/share/man/man1/aeroarc-bench.1.gz
}
files_plugin() {
    files_debian_doc "aeroarc-plugin-$1"
    echo ".$PLUGIN_DIR/$1.so"
}
files_all() {
    local p
    files_core
    files_dev
    files_tools
    for p in $PLUGINS; do files_plugin "$p"; done
}

# install_tree DIR: `cmake --install` of the package build into DESTDIR=DIR.
install_tree() {
    DESTDIR="$1" cmake --install "$BUILD" >"$TMP/install.log" 2>&1 ||
        { cat "$TMP/install.log" >&2; fail "cmake --install failed"; }
}
