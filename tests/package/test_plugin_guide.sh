#!/usr/bin/env bash
# test_plugin_guide.sh SRC OUT: part 1 of docs/plugin-guide.md, done the way
# a newcomer would, against the `cmake --install` tree on PATH: the files
# the guide says to write (its "<!-- file: NAME -->" blocks) are written
# verbatim, built with make and with CMake, loaded from a private plugin dir
# with --check and for real; the outputs the guide quotes must be what the
# relay prints.
set -euo pipefail
SRC=$1 OUT=$2
. "$(dirname "$0")/lib.sh"
GUIDE="$SRC/docs/plugin-guide.md"

D="$TMP/root"
install_tree "$D"
export PATH="$D/usr/bin:$PATH"
export PKG_CONFIG_PATH="$D/usr/lib/$MULTIARCH/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$D"

# extract NAME: the fenced block after "<!-- file: NAME -->" in the guide.
extract() {
    awk -v want="<!-- file: $1 -->" '
        $0 == want {armed = 1; next}
        armed && /^```/ {if (inside) exit; inside = 1; next}
        inside {print}' "$GUIDE"
}
# quoted TEXT: the guide shows TEXT somewhere (as output or a comment).
quoted() {
    grep -qF -- "$1" "$GUIDE" || fail "the guide no longer shows: $1"
}

# "mkdir sink-hello && cd sink-hello", then the files.
mkdir "$TMP/sink-hello"
cd "$TMP/sink-hello"
for f in sink_hello.c Makefile CMakeLists.txt hello.ini; do
    extract "$f" >"$f"
    [ -s "$f" ] || fail "the guide has no <!-- file: $f --> block"
done
grep -q $'^\t\\$(CC)' Makefile || fail "the guide's Makefile lost its tab"

# 1. what the guide says to check after installing
expect_eq "aeroarc-relay --version" "aeroarc-relay $VERSION (plugin ABI $ABI_MAJOR.$ABI_MINOR)" \
    "$(aeroarc-relay --version)"
quoted "# aeroarc-relay $VERSION (plugin ABI $ABI_MAJOR.$ABI_MINOR)"
quoted "# $VERSION"
quoted "# $PLUGIN_DIR"
quoted "# $ABI_MAJOR"

# 3. make; nm shows exactly the entry
make CFLAGS="-O2 -Werror" >"$TMP/make.log" 2>&1 || { cat "$TMP/make.log" >&2; fail "make"; }
expect_eq "symbols sink-hello.so exports" "aeroarc_plugin_entry" "$(exported_symbols sink-hello.so)"
quoted "# exactly one line: T aeroarc_plugin_entry"
# ... and the CMake variant builds the same plugin
cmake -S . -B build -DCMAKE_PREFIX_PATH="$D/usr" -DCMAKE_C_FLAGS="-Werror" >"$TMP/cmake.log" 2>&1 &&
    cmake --build build >>"$TMP/cmake.log" 2>&1 || { cat "$TMP/cmake.log" >&2; fail "cmake"; }
expect_eq "symbols of the CMake-built sink-hello.so" "aeroarc_plugin_entry" \
    "$(exported_symbols build/sink-hello.so)"

# 4. a private plugin dir, exactly as the guide's commands make it
mkdir plugins
ln -s "$(pkg-config --variable=plugindir aeroarc-plugin)"/*.so plugins/
cp sink-hello.so plugins/
[ -e plugins/route-none.so ] || fail "the links in plugins/ do not reach the installed plugins"
# Same config, but on a free port.
sed 's/^listen = 127\.0\.0\.1:50051$/listen = 127.0.0.1:0/' hello.ini >test.ini
grep -qx 'listen = 127.0.0.1:0' test.ini || fail "hello.ini no longer listens on 127.0.0.1:50051"
cp test.ini hello.ini
out=$(aeroarc-relay -c hello.ini --check 2>&1) || fail "--check: $out"
expect_eq "--check" "hello.ini: configuration OK (route route-none, 1 sink(s))" "$out"
quoted "# $out"
# The typo the guide shows, and the exact line it says the relay prints.
sed 's/^greeting = /greting = /' hello.ini >typo.ini
mv typo.ini hello.ini
out=$(aeroarc-relay -c hello.ini --check 2>&1) && fail "--check accepted greting"
quoted "$out"
cp test.ini hello.ini

# Run, stream 5 frames, Ctrl-C: the log lines the guide shows.
start_relay aeroarc-relay hello.ini "$TMP/relay.log"
stream aeroarc-client drone-1 5 HEARTBEAT
stop_relay INT
for line in "sink:hello: sink-hello: hello from my first sink" "sink:hello: sink-hello: saw 5 frame(s)" \
    "core: signal SIGINT: shutting down" "core: stopped cleanly"; do
    grep -qF "INFO  $line" "$TMP/relay.log" || { cat "$TMP/relay.log" >&2; fail "log lacks: $line"; }
    quoted "$line"
done

# 5. make install puts it in the plugindir
make install >"$TMP/install.log" 2>&1 || { cat "$TMP/install.log" >&2; fail "make install"; }
[ -f "$D$PLUGIN_DIR/sink-hello.so" ] || fail "make install did not reach $D$PLUGIN_DIR"
echo "plugin guide OK"
