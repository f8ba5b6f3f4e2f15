#!/usr/bin/env bash
# test_example_sink.sh SRC OUT: examples/sink-count, copied out of the tree,
# builds against the `cmake --install` tree alone: with its Makefile
# (pkg-config) and with its CMakeLists.txt (find_package). The installed
# relay loads it, frames stream in with aeroarc-client, and its per-interval
# and final summaries in the relay's log add up to exactly what was sent.
# Its Debian package template (SINK_COUNT_DEB=ON) builds a .deb that depends
# on the relay's ABI virtual package.
set -euo pipefail
SRC=$1 OUT=$2
. "$(dirname "$0")/lib.sh"

D="$TMP/root"
install_tree "$D"
RELAY="$D/usr/bin/aeroarc-relay"
CLIENT="$D/usr/bin/aeroarc-client"
cp -r "$SRC/examples/sink-count" "$TMP/sink-count"

# --- pkg-config build, installed into the staged plugin dir by `make install`
export PKG_CONFIG_PATH="$D/usr/lib/$MULTIARCH/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$D"
make -C "$TMP/sink-count" CFLAGS="-O2 -Werror" install >"$TMP/make.log" 2>&1 ||
    { cat "$TMP/make.log" >&2; fail "make install of the example"; }
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
so="$D$PLUGIN_DIR/sink-count.so"
[ -f "$so" ] || fail "make install did not put sink-count.so in $D$PLUGIN_DIR"
expect_eq "symbols sink-count.so exports" "aeroarc_plugin_entry" "$(exported_symbols "$so")"
# Only the staged headers were used: the source tree's include dir is not
# on the command line.
grep -q -- "-I$D/usr/include" "$TMP/make.log" || fail "make did not use the staged headers"
if grep -q -- "-I$SRC/include" "$TMP/make.log"; then fail "make used the source tree"; fi

# --- CMake build (find_package); checked by --check from its build dir
cmake -S "$TMP/sink-count" -B "$TMP/cmake-build" -DCMAKE_PREFIX_PATH="$D/usr" \
    -DCMAKE_C_FLAGS="-Werror" >"$TMP/cmake.log" 2>&1 &&
    cmake --build "$TMP/cmake-build" >>"$TMP/cmake.log" 2>&1 ||
    { cat "$TMP/cmake.log" >&2; fail "CMake build of the example"; }
mkdir "$TMP/cmake-plugins"
cp "$TMP/cmake-build/sink-count.so" "$D$PLUGIN_DIR/route-none.so" "$TMP/cmake-plugins/"
write_test_config "$TMP/cmake.ini" "$TMP/cmake-plugins" '[sink:count]
plugin = sink-count
interval_s = 0'
out=$("$RELAY" -c "$TMP/cmake.ini" --check 2>&1) || fail "--check (CMake-built example): $out"
expect_eq "--check" "$TMP/cmake.ini: configuration OK (route route-none, 1 sink(s))" "$out"

# The relay validates the example's declared key before any plugin code runs.
write_test_config "$TMP/bad.ini" "$D$PLUGIN_DIR" '[sink:count]
plugin = sink-count
interval_s = soon'
out=$("$RELAY" -c "$TMP/bad.ini" --check 2>&1) && fail "--check accepted interval_s = soon"
[[ $out == *'[sink:count] interval_s: invalid value "soon"'* ]] || fail "bad interval_s: $out"

# --- the example's Debian package template (SINK_COUNT_DEB=ON, cpack) from
# the installed tree: its Depends, exact contents and control, lintian
# errors, and the relay loads the .so it unpacks to.
cmake -S "$TMP/sink-count" -B "$TMP/deb-build" -DCMAKE_PREFIX_PATH="$D/usr" -DSINK_COUNT_DEB=ON \
    -DCMAKE_C_FLAGS="-Werror" >"$TMP/deb.log" 2>&1 &&
    cmake --build "$TMP/deb-build" >>"$TMP/deb.log" 2>&1 &&
    (cd "$TMP/deb-build" && cpack -G DEB) >>"$TMP/deb.log" 2>&1 ||
    { cat "$TMP/deb.log" >&2; fail "Debian package of the example"; }
ver=$(sed -n 's/^project(sink-count VERSION \([0-9.]*\).*/\1/p' "$SRC/examples/sink-count/CMakeLists.txt")
deb="$TMP/deb-build/aeroarc-plugin-sink-count_$ver-1_$DEB_ARCH.deb"
[ -f "$deb" ] || { ls "$TMP/deb-build" >&2; fail "no $deb"; }
depends=$(dpkg-deb -f "$deb" Depends)
[[ $depends == "aeroarc-relay-abi-$ABI_MAJOR, "* ]] ||
    fail "example package Depends does not start with aeroarc-relay-abi-$ABI_MAJOR: $depends"
[[ $depends == *"libc6 ("* ]] || fail "example package Depends has no shlibs: $depends"
[[ $depends != *aeroarc-relay\ * && $depends != *"aeroarc-relay,"* ]] ||
    fail "example package depends on the relay package, not its ABI: $depends"
expect_eq "example package Section" net "$(dpkg-deb -f "$deb" Section)"
printf '%s\n' ".$PLUGIN_DIR/sink-count.so" ./usr/share/doc/aeroarc-plugin-sink-count/copyright \
    ./usr/share/doc/aeroarc-plugin-sink-count/changelog.Debian.gz | sort >"$TMP/deb-want.txt"
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sort >"$TMP/deb-got.txt"
expect_same_lines "files of the example package" "$TMP/deb-want.txt" "$TMP/deb-got.txt"
expect_eq "example changelog version = package version" "$ver-1" \
    "$(dpkg-parsechangelog -l "$SRC/examples/sink-count/debian/changelog" -S Version)"
if command -v lintian >/dev/null; then
    lintian "$deb" >"$TMP/deb-lintian.txt" 2>&1 || true
    if grep '^E: ' "$TMP/deb-lintian.txt"; then fail "lintian errors on the example package"; fi
fi
dpkg-deb -x "$deb" "$TMP/deb-root"
mkdir "$TMP/deb-plugins"
cp "$TMP/deb-root$PLUGIN_DIR/sink-count.so" "$D$PLUGIN_DIR/route-none.so" "$TMP/deb-plugins/"
write_test_config "$TMP/deb.ini" "$TMP/deb-plugins" '[sink:count]
plugin = sink-count'
out=$("$RELAY" -c "$TMP/deb.ini" --check 2>&1) || fail "--check (packaged example): $out"
expect_eq "--check" "$TMP/deb.ini: configuration OK (route route-none, 1 sink(s))" "$out"

# --- run: the pkg-config-built plugin, next to the installed ones
write_test_config "$TMP/relay.ini" "$D$PLUGIN_DIR" "[sink:count]
plugin = sink-count
interval_s = 1

[sink:archive]
plugin = sink-file
path = $TMP/data"
log="$TMP/relay.log"
start_relay "$RELAY" "$TMP/relay.ini" "$log"
grep -q 'sink:count: sink-count: counting frames per msg_name' "$log" ||
    fail "sink-count's create() did not log"
stream "$CLIENT" drone-a 3 HEARTBEAT
stream "$CLIENT" drone-b 2 ATTITUDE
sent=5
# A summary is due once interval_s has passed and a batch arrives: keep
# sending one frame at a time until it shows up (deadline 15 s).
deadline=$((SECONDS + 15))
until grep -q 'sink-count: last interval: ' "$log"; do
    [ "$SECONDS" -lt "$deadline" ] || { cat "$log" >&2; fail "no interval summary in 15 s"; }
    sleep 0.2
    stream "$CLIENT" drone-c 1 SYS_STATUS
    sent=$((sent + 1))
done
stop_relay
grep -q 'sink-count: final: ' "$log" || { cat "$log" >&2; fail "no final summary at destroy"; }

# Per-name counts over all summaries add up to what was sent, and the
# final line's total is the number of frames.
sum_of() {
    grep -o 'sink-count: [a-z ]*: .*' "$log" | grep -oE " $1=[0-9]+" | cut -d= -f2 |
        awk '{s += $1} END {print s + 0}'
}
expect_eq "HEARTBEAT frames counted" 3 "$(sum_of HEARTBEAT)"
expect_eq "ATTITUDE frames counted" 2 "$(sum_of ATTITUDE)"
expect_eq "SYS_STATUS frames counted" $((sent - 5)) "$(sum_of SYS_STATUS)"
final=$(grep 'sink-count: final: ' "$log")
[[ $final == *"($sent in total)" ]] || fail "final summary total: $final (sent $sent)"
# The frames also reached the other sink: sink-count did not hold them up.
expect_eq "frames in sink-file output" "$sent" "$(cat "$TMP"/data/*.jsonl | wc -l)"
echo "example sink OK ($sent frames)"
