# cmake/deb_buildflags.cmake - with -DAERO_DEB_BUILDFLAGS=ON (the Debian
# package build: tests/package/build_packages.sh, docs/operations.md), every
# target is compiled and linked with the flags dpkg-buildpackage would use,
# hardening included (DEB_BUILD_MAINT_OPTIONS=hardening=+all: fortify, stack
# protector, relro, bindnow; PIE is gcc's default on Debian). Appended to
# the build type's flags, so they win over them. Included from the top-level
# CMakeLists.txt before any target.
option(AERO_DEB_BUILDFLAGS "Compile and link with dpkg-buildflags (hardening=+all)" OFF)
if(AERO_DEB_BUILDFLAGS)
  find_program(DPKG_BUILDFLAGS dpkg-buildflags REQUIRED)
  foreach(v CFLAGS CPPFLAGS LDFLAGS)
    # From the source dir: -ffile-prefix-map then maps it to ".".
    execute_process(
      COMMAND ${CMAKE_COMMAND} -E env DEB_BUILD_MAINT_OPTIONS=hardening=+all
              ${DPKG_BUILDFLAGS} --get ${v}
      WORKING_DIRECTORY "${CMAKE_SOURCE_DIR}"
      OUTPUT_VARIABLE _aero_deb_${v} OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE _aero_rc)
    if(NOT _aero_rc EQUAL 0)
      message(FATAL_ERROR "dpkg-buildflags --get ${v} failed")
    endif()
  endforeach()
  string(APPEND CMAKE_C_FLAGS " ${_aero_deb_CPPFLAGS} ${_aero_deb_CFLAGS}")
  foreach(kind EXE SHARED MODULE)
    string(APPEND CMAKE_${kind}_LINKER_FLAGS " ${_aero_deb_LDFLAGS}")
  endforeach()
  message(STATUS "dpkg-buildflags: ${_aero_deb_CPPFLAGS} ${_aero_deb_CFLAGS} / ${_aero_deb_LDFLAGS}")
endif()
