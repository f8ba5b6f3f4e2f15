#!/usr/bin/env bash
# build_packages.sh SRC OUT CC: the packaging tests' fixture. Configures the
# project as the packages are built (prefix /usr, no tests, Debian's
# hardening flags: cmake/deb_buildflags.cmake) in OUT/build, builds it and runs cpack -G DEB into OUT/debs (emptied first, so no stale
# package survives). Output only on failure.
set -euo pipefail
src=$1 out=$2 cc=$3
mkdir -p "$out"
log="$out/build.log"
: >"$log"

run() {
    if ! "$@" >>"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "FAIL: $*" >&2
        exit 1
    fi
}

# A build dir configured from another source tree cannot be reused.
if [ -f "$out/build/CMakeCache.txt" ] &&
   ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$src" "$out/build/CMakeCache.txt"; then
    rm -rf "$out/build"
fi
run cmake -S "$src" -B "$out/build" -DCMAKE_INSTALL_PREFIX=/usr -DAERO_TESTS=OFF \
    -DAERO_SANITIZE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" -DAERO_DEB_BUILDFLAGS=ON
run cmake --build "$out/build" -j2
rm -rf "$out/debs"
cd "$out/build"
run cpack --config CPackConfig.cmake -G DEB -B "$out/debs"
ls "$out"/debs/*.deb
