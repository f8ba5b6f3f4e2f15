# packaging/cpack.cmake - Debian packages, one per install component: the
# core (aeroarc-relay, with the plugins of AERO_CORE_PLUGINS), the plugin
# headers (aeroarc-dev), the tools (aeroarc-tools) and one package per
# other plugin (aeroarc-plugin-<name>).
# Plugins depend on the virtual package aeroarc-relay-abi-<major> that the
# core provides, so a core of another ABI major cannot be installed under
# them. Build with a /usr prefix so the compiled-in plugin dir is right:
#   cmake -S . -B build-deb -DCMAKE_INSTALL_PREFIX=/usr -DAERO_TESTS=OFF -DAERO_DEB_BUILDFLAGS=ON
#   cmake --build build-deb -j2 && (cd build-deb && cpack -G DEB)
# Included last from the top-level CMakeLists.txt, after every plugin.
get_property(AERO_PLUGIN_COMPONENTS GLOBAL PROPERTY AERO_PLUGIN_COMPONENTS)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME aeroarc)
set(CPACK_PACKAGE_VENDOR "aeroarc")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# Placeholder: set the real maintainer address before publishing packages.
set(CPACK_PACKAGE_CONTACT "aeroarc maintainers <maintainers@aeroarc.invalid>")
# No CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPack would put it above every
# component's own description. Each description's first line is its synopsis.
set(CPACK_COMPONENTS_ALL core dev tools ${AERO_PLUGIN_COMPONENTS})
# Install rules with absolute destinations (/etc/aeroarc) must land in the
# staging tree, not on the build machine.
set(CPACK_SET_DESTDIR ON)
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_STRIP_FILES ON)

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(AERO_ABI_PROVIDES "aeroarc-relay-abi-${AERO_ABI_MAJOR}")
set(AERO_DEB_VERSION "${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")

# --- /usr/share/doc/<package>/copyright and changelog.Debian.gz, which
# Debian policy wants in every package: made once here, installed into each
# component's doc dir by the loop below (plugins included, whatever
# aero_add_plugin declared). The copyright file is DEP-5 with LICENSE's
# holder and text, so the two cannot drift apart.
file(STRINGS "${CMAKE_SOURCE_DIR}/LICENSE" _aero_license_lines)
list(GET _aero_license_lines 0 _aero_license_title)
if(NOT _aero_license_title STREQUAL "MIT License")
  message(FATAL_ERROR "LICENSE is no longer \"MIT License\": update packaging/cpack.cmake")
endif()
file(READ "${CMAKE_SOURCE_DIR}/LICENSE" _aero_license)
string(REGEX MATCH "\nCopyright \\(c\\) ([^\n]+)\n" _aero_m "${_aero_license}")
set(AERO_COPYRIGHT "${CMAKE_MATCH_1}")
if(AERO_COPYRIGHT STREQUAL "")
  message(FATAL_ERROR "no \"Copyright (c) ...\" line in LICENSE: update packaging/cpack.cmake")
endif()
# The licence text after the copyright line, as a DEP-5 field body: every
# line indented by one space, an empty line written " .".
string(REGEX REPLACE "^.*\nCopyright \\(c\\) [^\n]+\n\n*" "" _aero_license_text "${_aero_license}")
string(REGEX REPLACE "\n+$" "" _aero_license_text "${_aero_license_text}")
string(REPLACE "\n\n" "\n.\n" _aero_license_text "${_aero_license_text}")
string(REPLACE "\n" "\n " AERO_LICENSE_TEXT " ${_aero_license_text}")
configure_file(packaging/debian/copyright.in "${AERO_PKG_DIR}/debian/copyright" @ONLY)
configure_file(packaging/debian/changelog.in "${AERO_PKG_DIR}/debian/changelog.Debian" @ONLY)
# gzip -n: no name or timestamp, so the package builds reproducibly.
add_custom_command(
  OUTPUT "${AERO_PKG_DIR}/debian/changelog.Debian.gz"
  COMMAND gzip -9n -c "${AERO_PKG_DIR}/debian/changelog.Debian"
          > "${AERO_PKG_DIR}/debian/changelog.Debian.gz"
  DEPENDS "${AERO_PKG_DIR}/debian/changelog.Debian"
  COMMENT "gzip changelog.Debian")
add_custom_target(aeroarc-deb-changelog ALL DEPENDS "${AERO_PKG_DIR}/debian/changelog.Debian.gz")

# component -> package name, the same map as the CPACK_DEBIAN_*_PACKAGE_NAME below
set(_aero_component_packages core:aeroarc-relay dev:aeroarc-dev tools:aeroarc-tools)
foreach(p ${AERO_PLUGIN_COMPONENTS})
  list(APPEND _aero_component_packages "${p}:aeroarc-plugin-${p}")
endforeach()
foreach(cp ${_aero_component_packages})
  string(REGEX REPLACE ":.*" "" _c "${cp}")
  string(REGEX REPLACE ".*:" "" _p "${cp}")
  install(FILES "${AERO_PKG_DIR}/debian/copyright" "${AERO_PKG_DIR}/debian/changelog.Debian.gz"
          DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/${_p}" COMPONENT ${_c})
endforeach()

# core, with the plugins of AERO_CORE_PLUGINS (CMakeLists.txt): it provides
# their package names and takes their files over from packages of that name
# built before.
set(CPACK_DEBIAN_CORE_PACKAGE_NAME aeroarc-relay)
set(_aero_core_plugin_packages)
foreach(p ${AERO_CORE_PLUGINS})
  list(APPEND _aero_core_plugin_packages "aeroarc-plugin-${p}")
endforeach()
string(REPLACE ";" ", " _aero_core_plugin_packages "${_aero_core_plugin_packages}")
set(CPACK_DEBIAN_CORE_PACKAGE_PROVIDES "${AERO_ABI_PROVIDES}, ${_aero_core_plugin_packages}")
set(CPACK_DEBIAN_CORE_PACKAGE_CONFLICTS "${_aero_core_plugin_packages}")
set(CPACK_DEBIAN_CORE_PACKAGE_REPLACES "${_aero_core_plugin_packages}")
# The shipped relay.ini names plugins the packaged one only shows as
# comments (route-redis): recommend their packages. Those the shipped file
# itself has only as comments (sink-stdout, route-registry) are not.
file(STRINGS "${CMAKE_SOURCE_DIR}/relay.ini" _aero_ini_plugins REGEX "^plugin *= *[A-Za-z0-9_.-]+")
set(_aero_recommends)
foreach(line ${_aero_ini_plugins})
  string(REGEX REPLACE "^plugin *= *([A-Za-z0-9_.-]+).*" "\\1" p "${line}")
  if(p IN_LIST AERO_PLUGIN_COMPONENTS AND NOT "aeroarc-plugin-${p}" IN_LIST _aero_recommends)
    list(APPEND _aero_recommends "aeroarc-plugin-${p}")
  endif()
endforeach()
string(REPLACE ";" ", " CPACK_DEBIAN_CORE_PACKAGE_RECOMMENDS "${_aero_recommends}")
set(CPACK_DEBIAN_CORE_DESCRIPTION
  "drone telemetry relay (core)
aeroarc-relay is the cloud-side ingest point of a drone telemetry stack:
agents register over gRPC and stream MAVLink telemetry frames; the relay
acknowledges each frame, hands it to its sink plugins and publishes routing
hints through a route plugin. This package holds the relay, its default
configuration (sink-file archiving to /var/lib/aeroarc/data, route-none), a
systemd unit and the man page; the other sinks and route publishers come in
aeroarc-plugin-* packages.")
configure_file(packaging/debian/conffiles.in "${AERO_PKG_DIR}/debian/conffiles" @ONLY)
set(CPACK_DEBIAN_CORE_PACKAGE_CONTROL_EXTRA
  "${AERO_PKG_DIR}/debian/conffiles"
  "${CMAKE_SOURCE_DIR}/packaging/debian/postinst"
  "${CMAKE_SOURCE_DIR}/packaging/debian/prerm"
  "${CMAKE_SOURCE_DIR}/packaging/debian/postrm")

# dev: headers only, but arch-specific (its .pc and CMake files name the
# multiarch plugin dir).
set(CPACK_DEBIAN_DEV_PACKAGE_NAME aeroarc-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_DEV_PACKAGE_RECOMMENDS "aeroarc-relay, pkg-config")
set(CPACK_DEBIAN_DEV_DESCRIPTION
  "headers to build aeroarc-relay plugins
The stable plugin ABI of aeroarc-relay (aeroarc/plugin.h), a pkg-config file
(aeroarc-plugin) and a CMake package (find_package(aeroarc)) to build sink
and route plugins out of tree, the plugin author's guide and an example
sink (sink-count).")

# tools
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME aeroarc-tools)
set(CPACK_DEBIAN_TOOLS_DESCRIPTION
  "command-line client and load generator for aeroarc-relay
aeroarc-client registers, streams test frames, checks health and lists
drones; aeroarc-bench measures a relay's throughput and ack latency.")

# one package per plugin; component names are upper-cased in CPack variables
foreach(p ${AERO_PLUGIN_COMPONENTS})
  string(TOUPPER "${p}" P)
  set(CPACK_DEBIAN_${P}_PACKAGE_NAME "aeroarc-plugin-${p}")
  set(CPACK_DEBIAN_${P}_PACKAGE_DEPENDS "${AERO_ABI_PROVIDES}")
  set(CPACK_DEBIAN_${P}_DESCRIPTION
    "${p} plugin for aeroarc-relay
The ${p} plugin of aeroarc-relay, built for plugin ABI ${AERO_ABI_MAJOR}.${AERO_ABI_MINOR}.
Name it in relay.ini to use it.")
endforeach()

include(CPack)
