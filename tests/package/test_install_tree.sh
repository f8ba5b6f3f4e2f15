#!/usr/bin/env bash
# test_install_tree.sh SRC OUT: `cmake --install` of the /usr-prefixed
# package build into a DESTDIR lays out exactly the conventional tree; the
# installed config, unit and man page say what the binary does; pkg-config
# and find_package(aeroarc) work from the staged tree.
set -euo pipefail
SRC=$1 OUT=$2
. "$(dirname "$0")/lib.sh"

D="$TMP/root"
install_tree "$D"

# --- exact layout
files_all >"$TMP/expected.txt"
tree_files "$D" >"$TMP/actual.txt"
expect_same_lines "installed files" "$TMP/expected.txt" "$TMP/actual.txt"
[ -x "$D/usr/bin/aeroarc-relay" ] || fail "aeroarc-relay not executable"

# --- installed documents link only to what is installed: every relative
# Markdown link of every installed .md resolves inside the staged tree
# (a link to ../examples/... or a developer's page would be dead on a
# machine with the packages only).
dead=""
while IFS= read -r md; do
    while IFS= read -r target; do
        case $target in http://* | https://* | mailto:* | '#'*) continue ;; esac
        path=${target%%#*}
        [ -e "$(dirname "$md")/$path" ] || dead+="  ${md#"$D"}: $target"$'\n'
    done < <(grep -oE '\]\([^) ]+\)' "$md" | sed -E 's/^\]\((.*)\)$/\1/')
done < <(find "$D/usr/share/doc" -name '*.md')
[ -z "$dead" ] || fail "installed documents link to files that are not installed:"$'\n'"$dead"
[ "$(find "$D/usr/share/doc" -name '*.md' | wc -l)" -ge 10 ] || fail "too few installed documents"

# --- installed relay.ini: the shipped one (loopback listeners, the console
# sink only as a comment: stdout is the journal under systemd), sink-file
# writing to the state dir, and [route] on route-none (in the core package)
# with route-redis's lines as comments
grep -qx 'path = ./data' "$SRC/relay.ini" || fail "shipped relay.ini has no 'path = ./data'"
! grep -q '^\[sink:console\]' "$SRC/relay.ini" || fail "shipped relay.ini prints every frame"
grep -qx ';plugin = sink-stdout' "$SRC/relay.ini" || fail "shipped relay.ini lost the console sink's comment"
sed -e 's|^path = \./data$|path = /var/lib/aeroarc/data|' \
    -e 's|^plugin = route-redis .*|plugin = route-none           ; publishes no routes. Redis routing (docs/routing.md): install\
;                             ; aeroarc-plugin-route-redis, then use these lines instead:\
;plugin = route-redis|' \
    -e 's|^redis_[a-z]* =|;&|' "$SRC/relay.ini" >"$TMP/relay.ini.expected"
cmp -s "$TMP/relay.ini.expected" "$D/etc/aeroarc/relay.ini" ||
    { diff "$TMP/relay.ini.expected" "$D/etc/aeroarc/relay.ini" >&2; fail "installed relay.ini"; }

# --- systemd unit: the lines operators and the brief rely on, and systemd
# itself accepts the file (paths pointed into the staged tree).
unit="$D/usr/lib/systemd/system/aeroarc-relay.service"
for line in 'Type=notify' 'WatchdogSec=30s' 'Restart=on-failure' 'DynamicUser=yes' 'StateDirectory=aeroarc' \
    'WorkingDirectory=%S/aeroarc' 'ExecStart=/usr/bin/aeroarc-relay -c /etc/aeroarc/relay.ini' \
    'ExecReload=/bin/kill -HUP $MAINPID' 'WantedBy=multi-user.target'; do
    expect_line "unit" "$line" "$unit"
done
sed "s|/usr/bin/aeroarc-relay|$D/usr/bin/aeroarc-relay|g" "$unit" >"$TMP/aeroarc-relay.service"
systemd-analyze verify --man=no "$TMP/aeroarc-relay.service" >"$TMP/verify.txt" 2>&1 ||
    { cat "$TMP/verify.txt" >&2; fail "systemd-analyze verify"; }
[ ! -s "$TMP/verify.txt" ] || { cat "$TMP/verify.txt" >&2; fail "systemd-analyze verify warns"; }

# --- man page: clean roff, and the same options as --help
man="$D/usr/share/man/man1/aeroarc-relay.1.gz"
zcat "$man" | groff -man -ww -z 2>"$TMP/groff.txt" || fail "groff failed"
[ ! -s "$TMP/groff.txt" ] || { cat "$TMP/groff.txt" >&2; fail "man page has roff warnings"; }
zcat "$man" | groff -man -Tascii -P-c -P-b -P-u 2>/dev/null >"$TMP/man.txt"
section() { # section NAME: the rendered man page section NAME
    awk -v s="$1" '$0 == s {f = 1; next} /^[A-Z]/ {f = 0} f' "$TMP/man.txt"
}
options_in() { grep -oE -- '(^|[][ ,|])--?[a-z][a-z-]*' | sed 's/^[][ ,|]//' | sort -u; }
"$D/usr/bin/aeroarc-relay" --help >"$TMP/help.txt"
options_in <"$TMP/help.txt" >"$TMP/help_opts.txt"
section OPTIONS | grep -E '^ {7}-' | options_in >"$TMP/man_opts.txt"
[ "$(wc -l <"$TMP/help_opts.txt")" -ge 4 ] || fail "too few options parsed from --help"
expect_same_lines "options (--help vs man OPTIONS)" "$TMP/help_opts.txt" "$TMP/man_opts.txt"
# SYNOPSIS: at least the usage line's options, and nothing --help lacks.
section SYNOPSIS | options_in >"$TMP/syn_opts.txt"
grep '^usage:' "$TMP/help.txt" | options_in >"$TMP/usage_opts.txt"
missing=$(comm -23 "$TMP/usage_opts.txt" "$TMP/syn_opts.txt" | tr '\n' ' ')
extra=$(comm -13 "$TMP/help_opts.txt" "$TMP/syn_opts.txt" | tr '\n' ' ')
[ -z "$missing$extra" ] || fail "man SYNOPSIS: missing [$missing], not in --help [$extra]"
for sig in $(grep -oE 'SIG[A-Z]+' "$TMP/help.txt"); do
    section SIGNALS | grep -q "$sig" || fail "man SIGNALS lacks $sig (named by --help)"
done
flat=$(tr -s ' \n' '  ' <"$TMP/man.txt")
version=$("$D/usr/bin/aeroarc-relay" --version)
expect_eq "--version" "aeroarc-relay $VERSION (plugin ABI $ABI_MAJOR.$ABI_MINOR)" "$version"
case "$flat" in *"$version"*) ;; *) fail "man page does not show \"$version\"" ;; esac
case "$flat" in *"$PLUGIN_DIR"*) ;; *) fail "man page does not name $PLUGIN_DIR" ;; esac
# Every section of the operator's guide, every key the binary accepts in the
# core's sections and in the sections of the shipped relay.ini (its
# "unknown key" message lists them) are in the man page, and so is each
# plugin the shipped relay.ini loads.
config_section=$(section CONFIGURATION | tr -s ' \n' '  ')
grep -oE '^## \[[^]]*\]' "$SRC/docs/configuration.md" | sed 's/^## //; s/&lt;//; s/&gt;//' |
    while read -r s; do
        case "$config_section" in *"$s"*) ;; *) fail "man CONFIGURATION lacks $s" ;; esac
    done
for p in $SHIPPED_PLUGINS; do
    section DESCRIPTION | tr -s ' \n' '  ' | grep -q "$p" || fail "man DESCRIPTION lacks $p"
done
keys=""
{
    printf '%s\n' relay http tls auth control log route sink:x
    ini_plugins "$SRC/relay.ini"
} >"$TMP/key_sources.txt"
while read -r sec plugin; do
    sec=${sec#[}
    sec=${sec%]}
    {
        printf '[relay]\nplugin_dir = %s\nallow_no_sinks = true\n' "$D$PLUGIN_DIR"
        [ "$sec" = relay ] || printf '[%s]\n' "$sec"
        [ -z "$plugin" ] || printf 'plugin = %s\n' "$plugin"
        [ "$sec" != sink:x ] || [ -n "$plugin" ] || printf 'plugin = sink-stdout\n'
        printf 'no_such_key = 1\n'
    } >"$TMP/bad.ini"
    msg=$("$D/usr/bin/aeroarc-relay" -c "$TMP/bad.ini" --check 2>&1 || true)
    [[ $msg == *"no_such_key: unknown key (valid: "* ]] || fail "no list of valid keys: $msg"
    keys="$keys $(sed 's/.*(valid: \(.*\))$/\1/' <<<"$msg" | tr -d ',')"
done <"$TMP/key_sources.txt"
for k in $keys; do
    [[ $config_section =~ (^|[^a-z_])$k([^a-z_]|$) ]] || fail "man CONFIGURATION lacks key $k"
done

# --- every program in /usr/bin has a man page; aeroarc-client's and
# aeroarc-bench's are clean roff and name exactly the options --help names.
for prog in "$D"/usr/bin/*; do
    [ -f "$D/usr/share/man/man1/${prog##*/}.1.gz" ] || fail "no man page for ${prog##*/}"
done
for tool in aeroarc-client aeroarc-bench; do
    man="$D/usr/share/man/man1/$tool.1.gz"
    zcat "$man" | groff -man -ww -z 2>"$TMP/groff.txt" || fail "groff failed on $tool.1"
    [ ! -s "$TMP/groff.txt" ] || { cat "$TMP/groff.txt" >&2; fail "$tool.1 has roff warnings"; }
    zcat "$man" | groff -man -Tascii -P-c -P-b -P-u 2>/dev/null | options_in >"$TMP/man_opts.txt"
    "$D/usr/bin/$tool" --help | options_in >"$TMP/help_opts.txt"
    [ "$(wc -l <"$TMP/help_opts.txt")" -ge 10 ] || fail "too few options parsed from $tool --help"
    expect_same_lines "options ($tool --help vs man page)" "$TMP/help_opts.txt" "$TMP/man_opts.txt"
done

# --- pkg-config, staged: PKG_CONFIG_SYSROOT_DIR maps the /usr paths into D.
export PKG_CONFIG_PATH="$D/usr/lib/$MULTIARCH/pkgconfig"
pc() { PKG_CONFIG_SYSROOT_DIR="$D" pkg-config "$@" aeroarc-plugin; }
expect_eq "pkg-config --cflags" "-I$D/usr/include" "$(pc --cflags | sed 's/ *$//')"
expect_eq "pkg-config plugindir" "$D$PLUGIN_DIR" "$(pc --variable=plugindir)"
expect_eq "pkg-config abi_major" "$ABI_MAJOR" "$(pc --variable=abi_major)"
expect_eq "pkg-config abi_minor" "$ABI_MINOR" "$(pc --variable=abi_minor)"
expect_eq "pkg-config version" "$VERSION" "$(pc --modversion)"
expect_eq "pkg-config --libs" "" "$(pc --libs | sed 's/ *$//')"
# Unstaged, plugindir is the relay's compiled-in default.
expect_eq "pkg-config plugindir (installed)" "$PLUGIN_DIR" \
    "$(pkg-config --variable=plugindir aeroarc-plugin)"
unset PKG_CONFIG_PATH

# --- find_package(aeroarc) from a consumer project
mkdir -p "$TMP/consumer"
cat >"$TMP/consumer/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.18)
project(consumer LANGUAGES C)
find_package(aeroarc REQUIRED)
get_target_property(inc aeroarc::plugin INTERFACE_INCLUDE_DIRECTORIES)
file(WRITE "${CMAKE_BINARY_DIR}/vars.txt"
  "plugin_dir=${AEROARC_PLUGIN_DIR}\ninclude=${inc}\nabi=${AEROARC_ABI_MAJOR}.${AEROARC_ABI_MINOR}\nversion=${aeroarc_VERSION}\n")
aeroarc_add_plugin(sink-tiny tiny.c)
# A plugin that calls into the relay must fail to link, not to load.
aeroarc_add_plugin(sink-binds-core binds_core.c)
set_target_properties(sink-binds-core PROPERTIES EXCLUDE_FROM_ALL ON)
CMAKE
cat >"$TMP/consumer/tiny.c" <<'C'
#include <aeroarc/plugin.h>
static int tiny_create(const aero_host *host, void **instance) { (void)host; *instance = 0; return 0; }
static void tiny_write(void *instance, const aero_frame *const *frames, size_t n, aero_result *results)
{
    (void)instance; (void)frames;
    for (size_t i = 0; i < n; i++) results[i] = AERO_OK;
}
static void tiny_destroy(void *instance) { (void)instance; }
static int helper_not_exported(void) { return 0; }
int also_not_exported(void) { return helper_not_exported(); }
static const aero_sink_vtable vt = {.size = sizeof(vt), .key_size = sizeof(aero_config_key),
    .create = tiny_create, .write_batch = tiny_write, .destroy = tiny_destroy};
static const aero_plugin_descriptor desc = {AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_SINK),
    .name = "sink-tiny", .description = "tiny", .vtable = &vt};
AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void) { return &desc; }
C
cat >"$TMP/consumer/binds_core.c" <<'C'
#include <aeroarc/plugin.h>
void log_msg(int level, const char *component, const char *fmt, ...);
AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void)
{
    log_msg(1, "x", "y");
    return 0;
}
C
cmake -S "$TMP/consumer" -B "$TMP/consumer/build" -DCMAKE_PREFIX_PATH="$D/usr" \
    -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >"$TMP/consumer.log" 2>&1 ||
    { cat "$TMP/consumer.log" >&2; fail "find_package(aeroarc) consumer did not configure"; }
cmake --build "$TMP/consumer/build" >>"$TMP/consumer.log" 2>&1 ||
    { cat "$TMP/consumer.log" >&2; fail "find_package(aeroarc) consumer did not build"; }
vars="$TMP/consumer/build/vars.txt"
expect_line "AEROARC_PLUGIN_DIR" "plugin_dir=$D$PLUGIN_DIR" "$vars"
expect_line "aeroarc::plugin include dir" "include=$D/usr/include" "$vars"
expect_line "AEROARC_ABI" "abi=$ABI_MAJOR.$ABI_MINOR" "$vars"
expect_line "aeroarc_VERSION" "version=$VERSION" "$vars"
[ -f "$TMP/consumer/build/sink-tiny.so" ] || fail "aeroarc_add_plugin did not make sink-tiny.so"
expect_eq "symbols sink-tiny.so exports" "aeroarc_plugin_entry" \
    "$(exported_symbols "$TMP/consumer/build/sink-tiny.so")"
if cmake --build "$TMP/consumer/build" --target sink-binds-core >"$TMP/binds.log" 2>&1; then
    fail "a plugin calling a relay symbol linked"
fi
grep -q "undefined reference to .log_msg" "$TMP/binds.log" ||
    { cat "$TMP/binds.log" >&2; fail "expected an undefined reference to log_msg"; }
# The relay loads what the consumer built.
mkdir "$TMP/tiny-plugins"
cp "$TMP/consumer/build/sink-tiny.so" "$D$PLUGIN_DIR/route-none.so" "$TMP/tiny-plugins/"
write_test_config "$TMP/tiny.ini" "$TMP/tiny-plugins" '[sink:t]
plugin = sink-tiny'
out=$("$D/usr/bin/aeroarc-relay" -c "$TMP/tiny.ini" --check 2>&1) || fail "--check: $out"
expect_eq "--check with sink-tiny" "$TMP/tiny.ini: configuration OK (route route-none, 1 sink(s))" "$out"
echo "install tree OK"
