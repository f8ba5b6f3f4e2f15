#!/usr/bin/env bash
# test_packages.sh SRC OUT: the Debian packages package_build made. Exactly
# one package per component with exactly the expected files and control
# fields; then, as on a clean system but without touching it, every .deb
# unpacked with dpkg -x into a scratch root: the relay from that root checks
# and runs its own installed config (plugin_dir pointed into the root), a
# sink built from the unpacked aeroarc-dev loads next to the packaged ones,
# and frames streamed with the packaged aeroarc-client reach every sink.
set -euo pipefail
SRC=$1 OUT=$2
. "$(dirname "$0")/lib.sh"

deb_of() { echo "$DEBS/${1}_$VERSION-1_$DEB_ARCH.deb"; }

# --- the set of packages
{
    echo aeroarc-relay
    echo aeroarc-dev
    echo aeroarc-tools
    for p in $PLUGINS; do echo "aeroarc-plugin-$p"; done
} >"$TMP/packages.txt"
while read -r pkg; do basename "$(deb_of "$pkg")"; done <"$TMP/packages.txt" >"$TMP/expected_debs.txt"
(cd "$DEBS" && ls -1 -- *.deb) >"$TMP/actual_debs.txt"
expect_same_lines ".deb files" "$TMP/expected_debs.txt" "$TMP/actual_debs.txt"

# --- contents (dpkg-deb -c): files exactly, directories aside
contents() { dpkg-deb -c "$1" | awk '$1 !~ /^d/ {print $6}' | sort; }
check_contents() { # check_contents PACKAGE FILES_FUNCTION [ARG]
    local pkg=$1
    shift
    "$@" | sort >"$TMP/want.txt"
    contents "$(deb_of "$pkg")" >"$TMP/got.txt"
    expect_same_lines "files of $pkg" "$TMP/want.txt" "$TMP/got.txt"
}
check_contents aeroarc-relay files_core
check_contents aeroarc-dev files_dev
check_contents aeroarc-tools files_tools
for p in $PLUGINS; do check_contents "aeroarc-plugin-$p" files_plugin "$p"; done
# Modes: programs executable, the rest not.
dpkg-deb -c "$(deb_of aeroarc-relay)" >"$TMP/core-listing.txt"
grep -q '^-rwxr-xr-x root/root .* \./usr/bin/aeroarc-relay$' "$TMP/core-listing.txt" ||
    fail "aeroarc-relay is not installed 0755 root/root"
grep -q '^-rw-r--r-- root/root .* \./etc/aeroarc/relay.ini$' "$TMP/core-listing.txt" ||
    fail "relay.ini is not installed 0644 root/root"

# --- control fields (dpkg-deb -I / -f)
while read -r pkg; do dpkg-deb -f "$(deb_of "$pkg")" >"$TMP/fields-$pkg"; done <"$TMP/packages.txt"
field() { # field PACKAGE NAME: a one-line control field
    sed -n "s/^$2: //p" "$TMP/fields-$1"
}
abi="aeroarc-relay-abi-$ABI_MAJOR"
while read -r pkg; do
    expect_eq "$pkg Package" "$pkg" "$(field "$pkg" Package)"
    expect_eq "$pkg Version" "$VERSION-1" "$(field "$pkg" Version)"
    expect_eq "$pkg Architecture" "$DEB_ARCH" "$(field "$pkg" Architecture)"
    [ -n "$(field "$pkg" Maintainer)" ] || fail "$pkg has no Maintainer"
    [ -n "$(field "$pkg" Description)" ] || fail "$pkg has no Description"
done <"$TMP/packages.txt"
core_plugin_pkgs=$(for p in $CORE_PLUGINS; do printf ', aeroarc-plugin-%s' "$p"; done)
expect_eq "aeroarc-relay Provides" "$abi$core_plugin_pkgs" "$(field aeroarc-relay Provides)"
expect_eq "aeroarc-relay Conflicts" "${core_plugin_pkgs#, }" "$(field aeroarc-relay Conflicts)"
expect_eq "aeroarc-relay Replaces" "${core_plugin_pkgs#, }" "$(field aeroarc-relay Replaces)"
depends=$(field aeroarc-relay Depends)
for lib in libc6 libgrpc libprotobuf-c libinih libltdl; do
    [[ $depends == *"$lib"* ]] || fail "aeroarc-relay Depends lacks $lib: $depends"
done
[[ $depends != *aeroarc* ]] || fail "the core must not depend on plugins: $depends"
for p in $PLUGINS; do
    pd=$(field "aeroarc-plugin-$p" Depends)
    # the ABI first, then what dpkg-shlibdeps found (at least libc)
    [[ $pd == "$abi, "* ]] || fail "aeroarc-plugin-$p Depends does not start with $abi: $pd"
    [[ $pd == *"libc6 ("* ]] || fail "aeroarc-plugin-$p Depends has no shlibs: $pd"
    [ -z "$(field "aeroarc-plugin-$p" Provides)" ] || fail "aeroarc-plugin-$p provides something"
done
for p in $SHIPPED_PLUGINS; do
    grep -qx -- "$p" <<<"$CORE_PLUGINS" && continue
    [[ $(field aeroarc-relay Recommends) == *"aeroarc-plugin-$p"* ]] ||
        fail "aeroarc-relay does not recommend aeroarc-plugin-$p (named by the shipped relay.ini)"
done
[[ $(field aeroarc-tools Depends) == *libgrpc* ]] || fail "aeroarc-tools Depends lacks libgrpc"
# The core's control archive: conffile, maintainer scripts.
dpkg-deb -e "$(deb_of aeroarc-relay)" "$TMP/control"
expect_eq "aeroarc-relay conffiles" "/etc/aeroarc/relay.ini" "$(cat "$TMP/control/conffiles")"
for s in postinst prerm postrm; do
    [ -x "$TMP/control/$s" ] || fail "aeroarc-relay $s missing or not executable"
    sh -n "$TMP/control/$s" || fail "aeroarc-relay $s: syntax error"
done
# The maintainer scripts, run against stubs of deb-systemd-helper,
# deb-systemd-invoke and systemctl that log their arguments: what each dpkg
# action asks of systemd. They call systemctl for daemon-reload only (the
# rest through the helpers), and only where /run/systemd/system says systemd
# runs, so the expected lines depend on this machine. ENABLED=1: the unit
# was installed and enabled before (deb-systemd-helper's state says so).
mkdir -p "$TMP/stubs"
for tool in deb-systemd-helper deb-systemd-invoke systemctl; do
    cat >"$TMP/stubs/$tool" <<STUB
#!/bin/sh
echo "$tool \$*" >>"$TMP/calls.txt"
case "\$*" in
"debian-installed "* | "--quiet was-enabled "*) [ -n "\${ENABLED:-}" ] ;;
esac
STUB
    chmod +x "$TMP/stubs/$tool"
done
systemd_runs=""
[ ! -d /run/systemd/system ] || systemd_runs=1
script_calls() { # script_calls SCRIPT ARGS...: the stubs' log, one line per call
    : >"$TMP/calls.txt"
    PATH="$TMP/stubs:$PATH" sh "$TMP/control/$1" "${@:2}" || fail "$1 $* failed"
    cat "$TMP/calls.txt"
}
u=aeroarc-relay.service
reload=""
[ -z "$systemd_runs" ] || reload="systemctl --system daemon-reload"
# fresh install: recorded, not enabled, not started
expect_eq "postinst configure (install)" "$(printf '%s\n' \
    "deb-systemd-helper debian-installed $u" "deb-systemd-helper update-state $u" $reload)" \
    "$(script_calls postinst configure '' | sed '/^$/d')"
# upgrade of an enabled relay: stays enabled, restarted if it runs
expect_eq "postinst configure (upgrade)" "$(printf '%s\n' "deb-systemd-helper debian-installed $u" \
    "deb-systemd-helper --quiet was-enabled $u" "deb-systemd-helper enable $u" \
    "deb-systemd-helper update-state $u" $reload \
    ${systemd_runs:+"deb-systemd-invoke try-restart $u"})" \
    "$(ENABLED=1 script_calls postinst configure 0.0.1-1)"
expect_eq "prerm remove" "${systemd_runs:+deb-systemd-invoke stop $u}" "$(script_calls prerm remove)"
expect_eq "prerm upgrade" "" "$(script_calls prerm upgrade "$VERSION-2")"
expect_eq "postrm remove" "$reload" "$(script_calls postrm remove)"
expect_eq "postrm purge" "$(printf '%s\n' "deb-systemd-helper purge $u" $reload)" \
    "$(script_calls postrm purge)"
dpkg-deb -I "$(deb_of aeroarc-relay)" >"$TMP/info.txt"
grep -q '^ Provides: aeroarc-relay-abi-' "$TMP/info.txt" || fail "dpkg-deb -I shows no Provides"
for p in $PLUGINS; do
    dpkg-deb -e "$(deb_of "aeroarc-plugin-$p")" "$TMP/control-$p"
    [ ! -e "$TMP/control-$p/conffiles" ] || fail "aeroarc-plugin-$p has conffiles"
done

# --- lintian: no error, and no warning but those listed here, each with why
# it stays:
#   initial-upload-closes-no-bugs  these packages are built from the source
#       tree, not uploaded to Debian: there is no ITP bug to close.
# Informational tags are not checked except hardening-* (the package build
# uses Debian's hardening flags: cmake/deb_buildflags.cmake); the ELF checks
# below test the same without lintian.
command -v lintian >/dev/null || fail "lintian is not installed (scripts/deps.sh test)"
lintian -I --tag-display-limit 0 "$DEBS"/*.deb >"$TMP/lintian.txt" 2>&1 || true
grep -E '^(E|W): ' "$TMP/lintian.txt" | grep -vE '^W: [^ ]+ initial-upload-closes-no-bugs' \
    >"$TMP/lintian-bad.txt" || true
grep -E '^I: .* hardening-' "$TMP/lintian.txt" >>"$TMP/lintian-bad.txt" || true
[ ! -s "$TMP/lintian-bad.txt" ] || { cat "$TMP/lintian-bad.txt" >&2; fail "lintian"; }
grep -qE '^W: aeroarc-relay: initial-upload-closes-no-bugs' "$TMP/lintian.txt" ||
    { cat "$TMP/lintian.txt" >&2; fail "lintian did not run on the packages"; }

# --- the core package alone (its Depends are system libraries only):
# unpacked by itself, its installed relay.ini passes --check (what the
# unit's ExecStartPre runs) and the relay starts on it and archives frames
# with sink-file, through route-none (both in the core package).
C="$TMP/core-only"
dpkg-deb -x "$(deb_of aeroarc-relay)" "$C"
sed -e 's|^listen = 127\.0\.0\.1:50051 |listen = 127.0.0.1:0 |' \
    -e 's|^listen = 127\.0\.0\.1:2112 .*|listen =|' \
    -e "s|^plugin_dir = .*|plugin_dir = $C$PLUGIN_DIR|" \
    -e "s|^path = /var/lib/aeroarc/data\$|path = $TMP/core-data|" "$C/etc/aeroarc/relay.ini" >"$TMP/core.ini"
grep -qx "plugin_dir = $C$PLUGIN_DIR" "$TMP/core.ini" || fail "could not set plugin_dir in the core's relay.ini"
out=$("$C/usr/bin/aeroarc-relay" -c "$TMP/core.ini" --check 2>&1) ||
    fail "--check of the core package's relay.ini, core package alone: $out"
expect_eq "--check, core package alone" "$TMP/core.ini: configuration OK (route route-none, 1 sink(s))" "$out"
start_relay "$C/usr/bin/aeroarc-relay" "$TMP/core.ini" "$TMP/core.log"
tools_root="$TMP/tools-only"
dpkg-deb -x "$(deb_of aeroarc-tools)" "$tools_root"
stream "$tools_root/usr/bin/aeroarc-client" drone-core 3 HEARTBEAT
stop_relay
expect_eq "frames archived by the core package alone" 3 "$(cat "$TMP"/core-data/*.jsonl | wc -l)"

# --- unpack everything into a scratch root, as a clean system would hold it
R="$TMP/root"
while read -r pkg; do dpkg-deb -x "$(deb_of "$pkg")" "$R"; done <"$TMP/packages.txt"
RELAY="$R/usr/bin/aeroarc-relay"
CLIENT="$R/usr/bin/aeroarc-client"

# --- hardening and stripping of every ELF file the packages hold: full
# RELRO (GNU_RELRO + BIND_NOW), PIE programs, no symbol table (stripped).
find "$R" -type f -exec sh -c 'head -c 4 "$1" | grep -q "^.ELF"' sh {} \; -print | sort >"$TMP/elfs.txt"
[ "$(wc -l <"$TMP/elfs.txt")" -ge 3 ] || fail "too few ELF files in the packages"
while read -r elf; do
    readelf -lW "$elf" | grep -q GNU_RELRO || fail "$elf: no RELRO"
    readelf -dW "$elf" | grep -qE 'BIND_NOW|FLAGS_1.* NOW' || fail "$elf: no BIND_NOW"
    readelf -SW "$elf" | grep -q ' \.symtab ' && fail "$elf: not stripped"
    case "$elf" in
    */usr/bin/*) readelf -hW "$elf" | grep -q 'Type: *DYN' || fail "$elf: not PIE" ;;
    esac
done <"$TMP/elfs.txt"

# --- every package's copyright (DEP-5, LICENSE's holder and text) and
# changelog (a parseable entry for this version); lintian checks more below.
holder=$(sed -n 's/^Copyright (c) //p' "$SRC/LICENSE")
sed -n '/^Copyright (c) /,$p' "$SRC/LICENSE" | tail -n +2 | sed '/./,$!d' >"$TMP/license.txt"
while read -r pkg; do
    doc="$R/usr/share/doc/$pkg"
    cr="$doc/copyright"
    expect_eq "$pkg copyright Format" \
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/" "$(head -n 1 "$cr")"
    expect_line "$pkg copyright holder" "Copyright: $holder" "$cr"
    # the stand-alone License paragraph's body, unindented, is LICENSE's text
    awk '/^License: Expat$/ {n++; next} n == 2 && /^ / {print}' "$cr" |
        sed 's/^ //; s/^\.$//' >"$TMP/copyright-text.txt"
    cmp -s "$TMP/license.txt" "$TMP/copyright-text.txt" ||
        { diff "$TMP/license.txt" "$TMP/copyright-text.txt" >&2; fail "$pkg copyright: not LICENSE's text"; }
    zcat "$doc/changelog.Debian.gz" >"$TMP/changelog" || fail "$pkg: changelog.Debian.gz is no gzip"
    expect_eq "$pkg changelog version" "$VERSION-1" "$(dpkg-parsechangelog -l "$TMP/changelog" -S Version)"
    expect_eq "$pkg changelog source" aeroarc-relay "$(dpkg-parsechangelog -l "$TMP/changelog" -S Source)"
    [ -n "$(dpkg-parsechangelog -l "$TMP/changelog" -S Changes | grep '^  \* ')" ] ||
        fail "$pkg changelog has no entry"
done <"$TMP/packages.txt"
expect_eq "packaged --version" "aeroarc-relay $VERSION (plugin ABI $ABI_MAJOR.$ABI_MINOR)" \
    "$("$RELAY" --version)"
# The compiled-in plugin dir is the multiarch one (it is not in this root,
# so the relay says where it looked).
printf '[relay]\nallow_no_sinks = true\n[route]\nplugin = route-not-installed\n' >"$TMP/default-dir.ini"
out=$("$RELAY" -c "$TMP/default-dir.ini" --check 2>&1) && fail "--check found route-not-installed"
[[ $out == *"looked for route-not-installed.so in $PLUGIN_DIR)" ]] ||
    fail "compiled-in plugin dir is not $PLUGIN_DIR: $out"

# A sink built from the unpacked aeroarc-dev alone (pkg-config), installed
# into the root's plugin dir next to the packaged plugins.
cp -r "$R/usr/share/doc/aeroarc-dev/examples/sink-count" "$TMP/sink-count"
PKG_CONFIG_PATH="$R/usr/lib/$MULTIARCH/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$R" \
    make -C "$TMP/sink-count" CFLAGS="-O2 -Werror" install >"$TMP/make.log" 2>&1 ||
    { cat "$TMP/make.log" >&2; fail "example against the unpacked aeroarc-dev"; }
[ -f "$R$PLUGIN_DIR/sink-count.so" ] || fail "sink-count.so not installed into the root"

# The installed relay.ini itself, with what a test must change: free port,
# no HTTP, plugins and data inside the root, text logs; plus sink-count.
ini="$TMP/relay.ini"
sed -e 's|^listen = 127\.0\.0\.1:50051 |listen = 127.0.0.1:0 |' \
    -e 's|^listen = 127\.0\.0\.1:2112 .*|listen =|' \
    -e "s|^plugin_dir = .*|plugin_dir = $R$PLUGIN_DIR|" \
    -e "s|^path = /var/lib/aeroarc/data\$|path = $TMP/data|" \
    -e 's|^format = json .*|format = text|' "$R/etc/aeroarc/relay.ini" >"$ini"
for want in 'listen = 127.0.0.1:0 ' "plugin_dir = $R$PLUGIN_DIR" "path = $TMP/data" 'format = text'; do
    grep -qF -- "$want" "$ini" || fail "could not adapt the installed relay.ini ($want)"
done
grep -qx 'listen =' "$ini" || fail "could not turn HTTP off in the installed relay.ini"
printf '\n[sink:count]\nplugin = sink-count\ninterval_s = 0\n' >>"$ini"
route=$(ini_plugins "$ini" | awk '$1 == "[route]" {print $2}')
sinks=$(grep -c '^\[sink:' "$ini")
out=$("$RELAY" -c "$ini" --check 2>&1) || fail "--check of the installed config: $out"
expect_eq "--check" "$ini: configuration OK (route ${route:-route-none}, $sinks sink(s))" "$out"

# The packaged unit is one systemd accepts (binary paths pointed into the root).
sed "s|/usr/bin/aeroarc-relay|$RELAY|g" "$R/usr/lib/systemd/system/aeroarc-relay.service" \
    >"$TMP/aeroarc-relay.service"
systemd-analyze verify --man=no "$TMP/aeroarc-relay.service" >"$TMP/verify.txt" 2>&1 &&
    [ ! -s "$TMP/verify.txt" ] || { cat "$TMP/verify.txt" >&2; fail "systemd-analyze verify"; }

# --- run it: frames in, JSON lines out of sink-file; none on stdout (the
# journal under systemd), where the installed config keeps no console sink
log="$TMP/relay.log"
start_relay "$RELAY" "$ini" "$log"
stream "$CLIENT" drone-pkg 5 HEARTBEAT
stop_relay
cat "$TMP"/data/*.jsonl >"$TMP/archive.jsonl" 2>/dev/null || fail "sink-file wrote nothing"
expect_eq "lines in sink-file output" 5 "$(wc -l <"$TMP/archive.jsonl")"
for seq in 1 2 3 4 5; do
    grep -q "^{\"agent_id\":\"drone-pkg\",.*\"seq\":$seq," "$TMP/archive.jsonl" ||
        fail "sink-file output lacks drone-pkg seq $seq"
done
expect_eq "frames on stdout" 0 "$(grep -c '"agent_id":"drone-pkg"' "$log.out" || true)"
grep -q '^;plugin = sink-stdout$' "$R/etc/aeroarc/relay.ini" ||
    fail "the installed relay.ini does not show how to turn the console sink on"
grep -qF 'sink:count: sink-count: final: 5 frame(s): HEARTBEAT=5 (5 in total)' "$log" ||
    { cat "$log" >&2; fail "sink-count's summary is not in the relay's log"; }
echo "packages OK: $(wc -l <"$TMP/packages.txt") packages"
