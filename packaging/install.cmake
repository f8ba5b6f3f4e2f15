# packaging/install.cmake - everything `cmake --install` lays out besides the
# binaries and plugins (whose install() rules sit next to their targets): the
# public headers, the operator's config, systemd unit, man page and docs (core
# component), and what out-of-tree plugin authors build against: pkg-config
# file, CMake package, guide and example (dev component). Included once from
# the top-level CMakeLists.txt; defines no targets but the man page's.
include(CMakePackageConfigHelpers)

# The ABI version comes from the one place that defines it.
file(STRINGS "${CMAKE_SOURCE_DIR}/include/aeroarc/plugin.h" _aero_abi
     REGEX "^#define AERO_ABI_(MAJOR|MINOR) +[0-9]+")
string(REGEX REPLACE ".*AERO_ABI_MAJOR +([0-9]+).*" "\\1" AERO_ABI_MAJOR "${_aero_abi}")
string(REGEX REPLACE ".*AERO_ABI_MINOR +([0-9]+).*" "\\1" AERO_ABI_MINOR "${_aero_abi}")
if(NOT AERO_ABI_MAJOR MATCHES "^[0-9]+$" OR NOT AERO_ABI_MINOR MATCHES "^[0-9]+$")
  message(FATAL_ERROR "cannot read AERO_ABI_MAJOR/MINOR from include/aeroarc/plugin.h")
endif()

# Absolute paths the installed files name (with prefix /usr: /etc/aeroarc,
# /usr/bin, ...). The state dir is systemd's StateDirectory=aeroarc, which is
# always under /var/lib whatever the prefix.
set(AERO_SYSCONF_DIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/aeroarc")
set(AERO_STATE_DIR "/var/lib/aeroarc")
set(AERO_CORE_DOC_RELDIR "${CMAKE_INSTALL_DATADIR}/doc/aeroarc-relay")
set(AERO_DEV_DOC_RELDIR "${CMAKE_INSTALL_DATADIR}/doc/aeroarc-dev")
set(AERO_CORE_DOC_DIR "${CMAKE_INSTALL_PREFIX}/${AERO_CORE_DOC_RELDIR}")
set(AERO_DEV_DOC_DIR "${CMAKE_INSTALL_PREFIX}/${AERO_DEV_DOC_RELDIR}")
set(AERO_SYSTEMD_UNIT_RELDIR "lib/systemd/system")
set(AERO_PKG_DIR "${CMAKE_BINARY_DIR}/packaging")
# pkg-config and the CMake package describe paths relative to their prefix,
# so a staged tree (DESTDIR, a sysroot) resolves to itself.
foreach(d INCLUDEDIR LIBDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${d}}")
    set(AERO_PC_${d} "${CMAKE_INSTALL_${d}}")
  else()
    set(AERO_PC_${d} "\${prefix}/${CMAKE_INSTALL_${d}}")
  endif()
endforeach()

# --- core: the default config. The shipped relay.ini writes sink-file output
# to ./data (right for a checkout); installed, the relay runs from the unit's
# state dir, so the archive goes to an absolute path there.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${CMAKE_SOURCE_DIR}/relay.ini")
file(READ "${CMAKE_SOURCE_DIR}/relay.ini" _aero_ini)
string(REGEX REPLACE "\npath = \\./data" "\npath = ${AERO_STATE_DIR}/data" _aero_ini_installed
       "${_aero_ini}")
if(_aero_ini_installed STREQUAL _aero_ini)
  message(FATAL_ERROR "relay.ini no longer has \"path = ./data\": update packaging/install.cmake")
endif()
# Under systemd stdout is the journal: a console sink there would log every
# frame (thousands a second) into it. The shipped relay.ini keeps it only as
# a comment, for debugging; the installed copy must not gain one.
if(_aero_ini MATCHES "\n\\[sink:console\\]")
  message(FATAL_ERROR "relay.ini has a [sink:console] again: keep it a comment (see install.cmake)")
endif()
# The core package alone must start with its config (its unit runs --check
# first), so the installed [route] uses route-none, which the core ships
# (AERO_CORE_PLUGINS); route-redis, its own package, stays as comments.
string(REGEX REPLACE "\nplugin = route-redis[^\n]*\n"
       "\nplugin = route-none           ; publishes no routes. Redis routing (docs/routing.md): install\n;                             ; aeroarc-plugin-route-redis, then use these lines instead:\n;plugin = route-redis\n"
       _aero_ini_route "${_aero_ini_installed}")
string(REGEX REPLACE "\n(redis_[a-z]+ =)" "\n;\\1" _aero_ini_route "${_aero_ini_route}")
if(_aero_ini_route STREQUAL _aero_ini_installed OR NOT _aero_ini_route MATCHES "\n;redis_addr =")
  message(FATAL_ERROR "relay.ini's [route] changed: update packaging/install.cmake")
endif()
file(WRITE "${AERO_PKG_DIR}/relay.ini" "${_aero_ini_route}")
install(FILES "${AERO_PKG_DIR}/relay.ini" DESTINATION "${AERO_SYSCONF_DIR}" COMPONENT core)

configure_file(packaging/aeroarc-relay.service.in "${AERO_PKG_DIR}/aeroarc-relay.service" @ONLY)
install(FILES "${AERO_PKG_DIR}/aeroarc-relay.service" DESTINATION "${AERO_SYSTEMD_UNIT_RELDIR}"
        COMPONENT core)

# The man pages are written by hand; only installed paths are filled in.
# Compressed as Debian installs man pages, without a timestamp (-n) so
# packages build reproducibly. One per program in /usr/bin, in the
# program's component.
set(_aero_manpages)
foreach(page aeroarc-relay:core aeroarc-client:tools aeroarc-bench:tools)
  string(REGEX REPLACE ":.*" "" _prog "${page}")
  string(REGEX REPLACE ".*:" "" _comp "${page}")
  configure_file(packaging/${_prog}.1.in "${AERO_PKG_DIR}/${_prog}.1" @ONLY)
  add_custom_command(
    OUTPUT "${AERO_PKG_DIR}/${_prog}.1.gz"
    COMMAND gzip -9n -c "${AERO_PKG_DIR}/${_prog}.1" > "${AERO_PKG_DIR}/${_prog}.1.gz"
    DEPENDS "${AERO_PKG_DIR}/${_prog}.1"
    COMMENT "gzip ${_prog}.1")
  list(APPEND _aero_manpages "${AERO_PKG_DIR}/${_prog}.1.gz")
  install(FILES "${AERO_PKG_DIR}/${_prog}.1.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man1"
          COMPONENT ${_comp})
endforeach()
add_custom_target(aeroarc-manpage ALL DEPENDS ${_aero_manpages})
# The operator's documents (design notes and the plugin guide are not),
# with the sinks' pages they link to, in the same relative places, so every
# link between them works installed too (tests/package/test_install_tree.sh
# follows each one).
foreach(doc configuration operations security routing envelope failure-semantics limits commands
            sink-influxdb3)
  if(EXISTS "${CMAKE_SOURCE_DIR}/docs/${doc}.md")
    install(FILES docs/${doc}.md DESTINATION "${AERO_CORE_DOC_RELDIR}" COMPONENT core)
  endif()
endforeach()
file(GLOB _aero_sink_docs "${CMAKE_SOURCE_DIR}/docs/sinks/*.md")
install(FILES ${_aero_sink_docs} DESTINATION "${AERO_CORE_DOC_RELDIR}/sinks" COMPONENT core)

# Prometheus alert rules and the Grafana dashboard (docs/operations.md, "Dashboards and alerts").
install(FILES packaging/monitoring/aeroarc-relay-alerts.yml
              packaging/monitoring/aeroarc-relay-dashboard.json
        DESTINATION "${CMAKE_INSTALL_DATADIR}/aeroarc-relay/monitoring" COMPONENT core)
# The tested edge proxy for an exposed gRPC port (docs/security.md, "Behind an edge proxy").
install(FILES examples/edge/haproxy.cfg
        DESTINATION "${CMAKE_INSTALL_DATADIR}/aeroarc-relay/edge" COMPONENT core)

# --- dev: headers, pkg-config, CMake package, guide and example.
install(DIRECTORY include/aeroarc DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev
        FILES_MATCHING PATTERN "*.h")

configure_file(packaging/aeroarc-plugin.pc.in "${AERO_PKG_DIR}/aeroarc-plugin.pc" @ONLY)
install(FILES "${AERO_PKG_DIR}/aeroarc-plugin.pc" DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig"
        COMPONENT dev)

set(AERO_CMAKE_RELDIR "${CMAKE_INSTALL_LIBDIR}/cmake/aeroarc")
configure_package_config_file(packaging/aeroarc-config.cmake.in
  "${AERO_PKG_DIR}/aeroarc-config.cmake"
  INSTALL_DESTINATION "${AERO_CMAKE_RELDIR}"
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR AERO_PLUGIN_INSTALL_RELDIR)
# The package version is the release; plugins care about the ABI, which the
# config file publishes as AEROARC_ABI_MAJOR/MINOR.
write_basic_package_version_file("${AERO_PKG_DIR}/aeroarc-config-version.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES "${AERO_PKG_DIR}/aeroarc-config.cmake" "${AERO_PKG_DIR}/aeroarc-config-version.cmake"
        DESTINATION "${AERO_CMAKE_RELDIR}" COMPONENT dev)

install(FILES docs/plugin-guide.md DESTINATION "${AERO_DEV_DOC_RELDIR}" COMPONENT dev)
install(FILES examples/sink-count/sink_count.c examples/sink-count/Makefile
              examples/sink-count/CMakeLists.txt examples/sink-count/README.md
        DESTINATION "${AERO_DEV_DOC_RELDIR}/examples/sink-count" COMPONENT dev)
install(FILES examples/sink-count/debian/copyright examples/sink-count/debian/changelog
        DESTINATION "${AERO_DEV_DOC_RELDIR}/examples/sink-count/debian" COMPONENT dev)
